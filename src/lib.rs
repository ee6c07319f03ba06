//! hawkey, a small reverse proxy. The data path, in order:
//!
//! 1. `event/` and `server.rs`: one loop per CPU, each a thread with its own epoll
//!    set and timers. It accepts on the listeners (a 503 past `maxConnections`; a
//!    loop with more than its share hands a new connection to the least loaded),
//!    owns its connections from accept to close, wakes a connection when one of its
//!    sockets is ready or its deadline passed, and never blocks. The main thread
//!    waits on the signal socket.
//! 3. `front/conn.rs`: a client connection on its loop. It reads the client
//!    (`front/transport.rs`: plain, or rustls driven by the loop) into the HTTP/1
//!    machine `front/h1.rs`, which makes request events (head via `head.rs`, body
//!    framing via `body.rs`), and writes the answer it frames. A client that speaks
//!    HTTP/2 (ALPN `h2`, or the preface) goes to `front/h2/`: `conn.rs` turns frames
//!    (`frame/`, `hpack/`) into streams, `session.rs` makes each stream an exchange
//!    and frames its answer, `tunnel.rs` carries a WebSocket (RFC 8441).
//! 4. `exchange/`: one request, whatever its protocol. `route.rs` picks the static
//!    prefix (`static_files.rs`) or the first matching `pathRegExp`; a local answer,
//!    a file, or `exchange/proxy.rs`, which borrows a backend connection
//!    (`backend/pool.rs`) or connects (`backend/dial.rs`), sends the rewritten head
//!    (`headers.rs`) and the body, reads the answer (`backend/answer.rs`) and hands it
//!    to the front through `exchange::Respond`.
//! 5. `front/conn.rs` again: log the request (`access_log.rs`); read the next one or
//!    close; after a 101, `front/tunnel.rs` relays raw bytes in the same loop.
//!
//! Every wait has a deadline in the loop: `headerMs`/`keepAliveMs` in `front/h1.rs`
//! and `front/h2/conn.rs` (with `upstreamMs` for a window kept shut),
//! `connectMs`/`upstreamMs` in `exchange/proxy.rs`, a client not reading in
//! `front/conn.rs`, `tunnelIdleMs` in `front/tunnel.rs`.
//!
//! Support: `shared.rs` (the `Runtime` a request starts with, the stop flags),
//! `tls.rs` (PEM files to a rustls config),
//! `config.rs`, `cli.rs`, `error.rs`, `log.rs`, `httpdate.rs`, `io.rs` (bounded
//! buffers), `signals.rs`, and `sys.rs`, the one module with `unsafe` code.
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
pub mod tls;
