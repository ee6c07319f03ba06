//! The client side of a connection, one module per protocol: bytes in, exchange
//! events out, and back. `h1` is HTTP/1.x; `tls` builds the rustls config.

pub mod h1;
pub mod tls;
