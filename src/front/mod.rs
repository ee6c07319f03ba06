//! The client side of a connection: `conn` is a client connection on its loop,
//! `h1` the HTTP/1.x machine it drives (bytes in, exchange events out, and back),
//! `transport` its bytes (plain or TLS), `tunnel` its bytes after a 101.

pub mod conn;
pub mod h1;
pub mod h2;
pub mod transport;
pub mod tunnel;
