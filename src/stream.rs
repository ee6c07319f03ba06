//! The client's byte stream: plain TCP, or TLS over TCP through rustls [T].
//!
//! rustls may hold decrypted bytes that the socket no longer shows as readable, so
//! whoever waits on the socket (the head reader, the epoll set, the tunnel loop)
//! first asks `has_buffered`. Writes on a non-blocking TLS stream can leave records
//! inside rustls; `wants_write` and `flush_tls` let the tunnel loop finish them.

use std::io::{self, Read, Write};
use std::net::TcpStream;

use rustls::{ServerConnection, StreamOwned};

#[derive(Debug)]
pub enum ClientStream {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ServerConnection, TcpStream>>),
}

impl ClientStream {
    /// The socket underneath, for timeouts, poll and shutdown.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            ClientStream::Plain(s) => s,
            ClientStream::Tls(s) => &s.sock,
        }
    }

    pub fn is_tls(&self) -> bool {
        matches!(self, ClientStream::Tls(_))
    }

    /// Whether decrypted bytes wait inside rustls (never for plain TCP).
    pub fn has_buffered(&mut self) -> bool {
        match self {
            ClientStream::Plain(_) => false,
            ClientStream::Tls(s) => s
                .conn
                .process_new_packets()
                .is_ok_and(|io| io.plaintext_bytes_to_read() > 0),
        }
    }

    /// TLS: reads what the socket holds (one read: call it when the socket is
    /// readable, so it does not block), processes it, and writes any answer
    /// (handshake messages, alerts). False once the peer has closed. Plain: true.
    /// This moves a handshake along without ever waiting for the client inside it.
    pub fn pump_tls(&mut self) -> io::Result<bool> {
        let ClientStream::Tls(s) = self else {
            return Ok(true);
        };
        let n = s.conn.read_tls(&mut s.sock)?;
        let processed = s.conn.process_new_packets();
        while s.conn.wants_write() {
            s.conn.write_tls(&mut s.sock)?;
        }
        processed.map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        Ok(n > 0)
    }

    /// Whether TLS records wait to be written to the socket.
    pub fn wants_write(&self) -> bool {
        match self {
            ClientStream::Plain(_) => false,
            ClientStream::Tls(s) => s.conn.wants_write(),
        }
    }

    /// Writes what rustls holds for the socket, as far as the socket takes it.
    pub fn flush_tls(&mut self) -> io::Result<()> {
        if let ClientStream::Tls(s) = self {
            while s.conn.wants_write() {
                match s.conn.write_tls(&mut s.sock) {
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }

    /// Ends our sending side: a TLS close_notify (so a close-delimited body is not
    /// taken for a truncated one), then a TCP half-close.
    pub fn shutdown_write(&mut self) {
        if let ClientStream::Tls(s) = self {
            s.conn.send_close_notify();
            let _ = self.flush_tls();
        }
        let _ = self.tcp().shutdown(std::net::Shutdown::Write);
    }
}

impl Read for ClientStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            ClientStream::Plain(s) => s.read(buf),
            ClientStream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for ClientStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            ClientStream::Plain(s) => s.write(buf),
            ClientStream::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            ClientStream::Plain(s) => s.flush(),
            ClientStream::Tls(s) => s.flush(),
        }
    }
}
