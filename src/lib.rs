//! hawkey, a small reverse proxy. The data path, in order:
//!
//! 1. `server.rs`: poll the listeners and the signal socket; accept, refuse past
//!    `maxConnections`, park the new connection.
//! 2. `park.rs`: connections wait in one epoll set; `workers.rs`: a fixed set of
//!    threads takes the ready ones from it.
//! 3. `conn.rs`: read a request head (`head.rs`; TLS through `stream.rs` and
//!    `front/tls.rs`), frame its body (`body.rs`).
//! 4. `route.rs`: the static prefix (`static_files.rs`), else the first matching
//!    `pathRegExp`.
//! 5. `proxy.rs`: borrow a backend connection (`backend/`), send the rewritten
//!    head (`headers.rs`) and body (`relay.rs` through `io.rs`), park until the
//!    backend answers, relay the response.
//! 6. `conn.rs` again: log the request (`access_log.rs`); keep-alive → park the
//!    connection until its next request; after a 101, `tunnel.rs` relays raw bytes.
//!
//! Support: `config.rs`, `cli.rs`, `error.rs`, `log.rs`, `httpdate.rs`,
//! `signals.rs`, and `sys.rs`, the one module with `unsafe` code.
//!
//! Being built for the event loops, not yet wired to the server: `event/` (a loop
//! per CPU: its epoll set, deadlines, connections), `front/h1.rs` (the HTTP/1 front
//! as a sans-I/O machine: request events in, answer bytes out) and
//! `backend/answer.rs` (a backend's answer read the same way).
#![deny(unsafe_code)]
// [P]: hawkey ships for 32-bit targets too, where `usize` is 32 bits: a length,
// offset or count is converted with `try_from` (or kept in `u64`), never with a
// lossy `as`. The few casts left carry an `allow` with the reason they are exact.
#![deny(
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    clippy::cast_sign_loss
)]
#![warn(clippy::undocumented_unsafe_blocks)]

pub mod access_log;
pub mod backend;
pub mod body;
pub mod cli;
pub mod config;
pub mod error;
pub mod event;
pub mod exchange;
pub mod front;
pub mod head;
pub mod headers;
pub mod httpdate;
pub mod io;
pub mod log;
pub mod route;
pub mod server;
pub mod shared;
pub mod signals;
pub mod static_files;
pub mod sys;
pub mod tunnel;
