//! HTTP/2 to clients [H2]: `hpack/` (header compression), `frame/` (one file a frame
//! type) and the connection machine over them.

pub mod conn;
pub mod frame;
pub mod hpack;
pub mod session;
pub mod tunnel;
