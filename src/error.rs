//! The errors of the lower layers (a config file, a client head) and the reason
//! phrases of the statuses hawkey makes [E]. The errors of an exchange with a
//! backend, and the one function that turns them into a status, are in
//! `backend/fault.rs`.

use std::fmt;
use std::path::{Path, PathBuf};

/// A start-up failure: the file and what is wrong in it (serde_json adds line and column).
#[derive(Debug)]
pub struct ConfigError {
    pub file: PathBuf,
    pub message: String,
}

impl ConfigError {
    pub fn new(file: &Path, message: impl Into<String>) -> Self {
        ConfigError {
            file: file.to_path_buf(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}: {}", self.file.display(), self.message)
    }
}

/// A client head (or body framing) that we refuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadError {
    /// Malformed request line or field (400).
    Malformed(&'static str),
    /// Framing fields that two parsers could read differently (400).
    AmbiguousLength(&'static str),
    /// A transfer coding other than chunked before chunked (501).
    UnsupportedCoding,
    /// The head grew past `maxHeaderBytes` (431).
    TooLarge,
    /// A version written out that is not 1.0 or 1.1 (505).
    Version,
    /// An HTTP/1.1 request without Host (400).
    MissingHost,
    /// The head did not arrive within `headerMs` after its first byte (408).
    Timeout,
    /// A chunked request body for an HTTP/1.0 backend (411).
    LengthRequired,
}

impl HeadError {
    pub fn status(self) -> u16 {
        match self {
            HeadError::Malformed(_) | HeadError::AmbiguousLength(_) | HeadError::MissingHost => 400,
            HeadError::UnsupportedCoding => 501,
            HeadError::TooLarge => 431,
            HeadError::Version => 505,
            HeadError::Timeout => 408,
            HeadError::LengthRequired => 411,
        }
    }
}

impl fmt::Display for HeadError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            HeadError::Malformed(why) => write!(f, "malformed request: {why}"),
            HeadError::AmbiguousLength(why) => write!(f, "ambiguous body length: {why}"),
            HeadError::UnsupportedCoding => f.write_str("transfer coding other than chunked"),
            HeadError::TooLarge => f.write_str("request head larger than maxHeaderBytes"),
            HeadError::Version => f.write_str("HTTP version not supported"),
            HeadError::MissingHost => f.write_str("HTTP/1.1 request without Host"),
            HeadError::Timeout => f.write_str("request head not complete within headerMs"),
            HeadError::LengthRequired => f.write_str("chunked body for an HTTP/1.0 backend"),
        }
    }
}

/// The reason phrase hawkey writes for the statuses it makes itself.
pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        206 => "Partial Content",
        301 => "Moved Permanently",
        304 => "Not Modified",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        416 => "Range Not Satisfiable",
        431 => "Request Header Fields Too Large",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "Error",
    }
}
