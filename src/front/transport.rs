//! The client's bytes, plain or through rustls, on a non-blocking socket [T][R8].
//! rustls is sans-I/O: `read` feeds it what the socket holds and takes the plaintext
//! out, `write` hands it plaintext and sends the records it makes. Neither ever
//! waits: "would block" is an answer, and the event loop says when to try again.
//!
//! Plaintext is taken before the socket is read, so bytes rustls already holds are
//! never left waiting for an event that will not come.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::Instant;

use rustls::ServerConnection;

/// Plaintext handed to rustls per write, so its buffer stays small.
const TLS_WRITE: usize = 16 * 1024;

pub enum Transport {
    Plain(TcpStream),
    Tls(Box<(ServerConnection, TcpStream)>),
}

fn would_block() -> io::Error {
    io::ErrorKind::WouldBlock.into()
}

impl Transport {
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Transport::Plain(s) => s,
            Transport::Tls(t) => &t.1,
        }
    }

    pub fn is_tls(&self) -> bool {
        matches!(self, Transport::Tls(_))
    }

    /// Reads plaintext: `Ok(0)` once the client has closed. For TLS this moves the
    /// handshake along too.
    pub fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let (conn, sock) = match self {
            Transport::Plain(s) => return s.read(buf),
            Transport::Tls(t) => (&mut t.0, &mut t.1),
        };
        loop {
            match conn.reader().read(buf) {
                Ok(n) => return Ok(n), // 0: close_notify
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) => return Err(e),
            }
            if conn.read_tls(sock)? == 0 {
                return Ok(0); // closed without close_notify
            }
            let processed = conn.process_new_packets();
            let _ = flush(conn, sock); // handshake messages, alerts
            if let Err(e) = processed {
                return Err(io::Error::new(io::ErrorKind::InvalidData, e));
            }
        }
    }

    /// Writes plaintext; how much was taken. For TLS, taken means encrypted: the
    /// records go out as far as the socket takes them, and nothing more is taken
    /// until they have.
    pub fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let (conn, sock) = match self {
            Transport::Plain(s) => return s.write(buf),
            Transport::Tls(t) => (&mut t.0, &mut t.1),
        };
        flush(conn, sock)?;
        let n = conn.writer().write(&buf[..buf.len().min(TLS_WRITE)])?;
        match flush(conn, sock) {
            Err(e) if e.kind() != io::ErrorKind::WouldBlock => Err(e),
            _ => Ok(n),
        }
    }

    /// Whether TLS records wait for the socket.
    pub fn wants_flush(&self) -> bool {
        matches!(self, Transport::Tls(t) if t.0.wants_write())
    }

    /// Sends the TLS records waiting, as far as the socket takes them.
    pub fn flush(&mut self) -> io::Result<()> {
        match self {
            Transport::Plain(_) => Ok(()),
            Transport::Tls(t) => flush(&mut t.0, &mut t.1),
        }
    }

    /// A TLS close_notify, sent as far as the socket takes it (before a close).
    pub fn close_notify(&mut self) {
        if let Transport::Tls(t) = self {
            t.0.send_close_notify();
            let _ = flush(&mut t.0, &mut t.1);
        }
    }

    /// Ends our sending side: a TLS close_notify (so a close-delimited body is not
    /// taken for a truncated one), then a TCP half-close.
    pub fn shutdown_write(&mut self) {
        self.close_notify();
        let _ = self.tcp().shutdown(Shutdown::Write);
    }
}

fn flush(conn: &mut ServerConnection, sock: &mut TcpStream) -> io::Result<()> {
    while conn.wants_write() {
        if conn.write_tls(sock)? == 0 {
            return Err(would_block());
        }
    }
    Ok(())
}

/// A protocol machine as the socket sees it: bytes in, bytes out (`h1.rs`, `h2/`).
pub trait Wire {
    fn wants_read(&self) -> bool;
    /// Room to read into; `received` says how much was read.
    fn input_space(&mut self) -> &mut [u8];
    fn received(&mut self, n: usize, now: Instant);
    fn received_eof(&mut self);
    /// Bytes to write; `wrote` says how many were taken.
    fn output(&mut self) -> &[u8];
    fn wrote(&mut self, n: usize);
    fn wants_write(&self) -> bool;
}

/// The client's socket on its loop, with what the loop last said of it.
pub struct ClientSocket {
    pub io: Transport,
    /// The number the loop knows the socket by.
    pub serial: u64,
    /// Reported readable (writable), and no call has said otherwise since.
    pub readable: bool,
    pub writable: bool,
    /// The client closed its side: read on to the end.
    pub hup: bool,
    /// Answer bytes wait and the client has taken none since then.
    pub stalled_since: Option<Instant>,
}

impl ClientSocket {
    pub fn new(io: Transport, serial: u64) -> ClientSocket {
        ClientSocket {
            io,
            serial,
            readable: true,
            writable: true,
            hup: false,
            stalled_since: None,
        }
    }

    /// One read into `wire`, if it wants one and the socket may have bytes: whether
    /// anything happened. An error is the wire's end of input too.
    pub fn read_into(&mut self, wire: &mut dyn Wire, now: Instant) -> io::Result<bool> {
        if !self.readable || !wire.wants_read() {
            return Ok(false);
        }
        let plain = !self.io.is_tls();
        let space = wire.input_space();
        let room = space.len();
        match self.io.read(space) {
            Ok(0) => wire.received_eof(),
            Ok(n) => {
                wire.received(n, now);
                // A short read took all there was; edge-triggered epoll tells of more.
                self.readable = !(plain && n < room && !self.hup);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.readable = false;
                return Ok(false);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                wire.received_eof();
                return Err(e);
            }
        }
        Ok(true)
    }

    /// Writes what `wire` has, as far as the socket takes it: whether anything went.
    /// Keeps `stalled_since` (bytes wait and none were taken).
    pub fn write_from(&mut self, wire: &mut dyn Wire, now: Instant) -> io::Result<bool> {
        let mut moved = false;
        let plain = !self.io.is_tls();
        while self.writable {
            let out = wire.output();
            let len = out.len();
            let result = if out.is_empty() {
                if !self.io.wants_flush() {
                    break;
                }
                self.io.flush().map(|()| 0)
            } else {
                self.io.write(out)
            };
            match result {
                Ok(n) => {
                    wire.wrote(n);
                    moved |= n > 0;
                    if plain && n < len {
                        self.writable = false; // the socket's buffer is full
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.writable = false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        let pending = wire.wants_write() || self.io.wants_flush();
        if moved || !pending {
            self.stalled_since = None;
        }
        if pending && !self.writable && self.stalled_since.is_none() {
            self.stalled_since = Some(now);
        }
        Ok(moved)
    }
}
