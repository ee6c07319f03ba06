//! What can end an exchange with a backend early, by side, and the one function that
//! turns such an error into a status code [E]. Errors say which side failed, because
//! the side decides the answer: a bad client head is a 4xx, a backend fault a
//! 502/504, a vanished client gets nothing.

use std::fmt;
use std::io;
use std::sync::Arc;

use crate::backend::authority::Authority;
use crate::error::HeadError;

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
