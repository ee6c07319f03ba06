//! The error enums of each layer, their `Display`, and the one function that turns an
//! error into a status code [E].
//!
//! Errors say which side failed, because the side decides the answer: a bad client
//! head is a 4xx, a backend fault a 502/504, a vanished client gets nothing.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use std::sync::Arc;

use crate::backend::authority::Authority;

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

/// What went wrong with a backend.
#[derive(Debug)]
pub enum BackendFault {
    /// Resolving or connecting failed (refused, unreachable, `connectMs`).
    Connect(io::Error),
    /// Writing the request failed.
    Write(io::Error),
    /// Reading the response failed, or the backend closed before a whole response.
    Read(io::Error),
    /// No answer within `upstreamMs`.
    Timeout,
    /// The response head or body framing is not valid HTTP/1.1.
    Invalid(&'static str),
}

impl fmt::Display for BackendFault {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            BackendFault::Connect(e) => write!(f, "connect failed: {e}"),
            BackendFault::Write(e) => write!(f, "write failed: {e}"),
            BackendFault::Read(e) => write!(f, "read failed: {e}"),
            BackendFault::Timeout => f.write_str("no answer within upstreamMs"),
            BackendFault::Invalid(why) => write!(f, "invalid response: {why}"),
        }
    }
}

/// Everything that can end one exchange early.
#[derive(Debug)]
pub enum ProxyError {
    /// The client sent a head or body we refuse; the connection closes after the answer.
    Head(HeadError),
    /// The client went away or stalled; there is nobody to answer.
    ClientGone(io::Error),
    /// Connecting to, writing to or reading from `authority` failed. `reused` and
    /// `response_byte_seen` decide whether the request may be retried [R5].
    Backend {
        authority: Arc<Authority>,
        fault: BackendFault,
        reused: bool,
        response_byte_seen: bool,
    },
}

impl fmt::Display for ProxyError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            ProxyError::Head(e) => write!(f, "client: {e}"),
            ProxyError::ClientGone(e) => write!(f, "client gone: {e}"),
            ProxyError::Backend {
                authority, fault, ..
            } => write!(f, "backend {authority}: {fault}"),
        }
    }
}

/// The only place where an error becomes a status code [E]. `None` means: write
/// nothing, close. Callers also write nothing once the response has started.
pub fn status_for(err: &ProxyError) -> Option<u16> {
    match err {
        ProxyError::Head(e) => Some(e.status()),
        ProxyError::ClientGone(_) => None,
        ProxyError::Backend {
            fault: BackendFault::Timeout,
            ..
        } => Some(504),
        ProxyError::Backend { .. } => Some(502),
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
