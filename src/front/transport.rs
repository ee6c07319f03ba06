//! The client's bytes, plain or through rustls, on a non-blocking socket [T][R8].
//! rustls is sans-I/O: `read` feeds it what the socket holds and takes the plaintext
//! out, `write` hands it plaintext and sends the records it makes. Neither ever
//! waits: "would block" is an answer, and the event loop says when to try again.
//!
//! Plaintext is taken before the socket is read, so bytes rustls already holds are
//! never left waiting for an event that will not come.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};

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
