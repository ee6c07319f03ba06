//! After a 101 [R7]: bytes both ways between client and backend until both sides have
//! closed, a half-close passed on with `shutdown(Write)`, or until neither side has
//! sent anything for `tunnelIdleMs`. The tunnel lives on the loop of its connection:
//! an idle tunnel holds no thread and no buffer.
//!
//! A direction reads only when it has nothing pending, so each direction buffers at
//! most one read; a step reads at most `READS_PER_TURN` times per direction, so one
//! busy tunnel cannot starve its loop.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use crate::event::{SocketId, SocketOf};
use crate::front::transport::Transport;

/// Reads per direction per step.
const READS_PER_TURN: usize = 8;
/// The most one read takes.
const READ_BUF: usize = 16 * 1024;

/// One direction of a tunnel.
#[derive(Debug, Default)]
struct Half {
    pending: Vec<u8>, // read from the source, not yet written to the destination
    eof: bool,        // the source closed its sending side
    shut: bool,       // the EOF was passed on with shutdown(Write)
}

/// An upgraded connection's backend side and both directions' bytes.
pub struct Tunnel {
    backend: TcpStream,
    serial: u64,
    up: Half,   // client → backend
    down: Half, // backend → client
    idle_limit: Duration,
    last_active: Instant,
    /// Bytes written to the client after the 101 head, for the access log.
    pub to_client: u64,
    /// Bytes of the 101 head still to be written, not counted.
    head_left: u64,
}

/// What a step of a tunnel found.
#[derive(Debug, PartialEq, Eq)]
pub enum Pumped {
    /// Wait for the sockets.
    Wait,
    /// Bytes may be left to read: step again soon.
    More,
    /// Both directions are closed, or a socket failed.
    Over,
}

impl Tunnel {
    /// `to_backend` and `to_client` are bytes already read from each side (the
    /// client's after its head, the backend's after its 101); `head` is what is
    /// left to write of the 101 head, sent first.
    pub fn new(
        (backend, serial): SocketOf,
        to_backend: Vec<u8>,
        head: Vec<u8>,
        to_client: &[u8],
        idle_limit: Duration,
        now: Instant,
    ) -> Tunnel {
        Tunnel {
            backend,
            serial,
            up: Half {
                pending: to_backend,
                ..Half::default()
            },
            head_left: head.len() as u64,
            down: Half {
                pending: [&head[..], to_client].concat(),
                ..Half::default()
            },
            idle_limit,
            last_active: now,
            to_client: 0,
        }
    }

    pub fn socket(&self) -> SocketId {
        (self.backend.as_raw_fd(), self.serial)
    }

    pub fn deadline(&self) -> Instant {
        self.last_active + self.idle_limit
    }

    /// Moves whatever can move without blocking.
    pub fn pump(&mut self, client: &mut Transport, now: Instant) -> Pumped {
        let up = transfer(client, &mut self.backend, &mut self.up);
        let down = transfer(&mut self.backend, client, &mut self.down);
        let flushed = match client.flush() {
            Err(e) if e.kind() != io::ErrorKind::WouldBlock => Err(e),
            _ => Ok(()),
        };
        match (up, down, flushed) {
            (Ok((up, more_up)), Ok((down, more_down)), Ok(())) => {
                if up + down > 0 {
                    self.last_active = now;
                }
                let head = down.min(self.head_left);
                self.head_left -= head;
                self.to_client += down - head;
                if self.up.shut && self.down.shut {
                    Pumped::Over
                } else if more_up || more_down {
                    Pumped::More
                } else {
                    Pumped::Wait
                }
            }
            (Err(e), ..) | (_, Err(e), _) | (.., Err(e)) => {
                crate::debug!("tunnel: {e}");
                Pumped::Over
            }
        }
    }
}

/// Either end of a tunnel.
trait End {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize>;
    fn write(&mut self, buf: &[u8]) -> io::Result<usize>;
    /// Passes an EOF on: no more bytes will be written.
    fn shutdown_write(&mut self);
}

impl End for TcpStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        Read::read(self, buf)
    }
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Write::write(self, buf)
    }
    fn shutdown_write(&mut self) {
        let _ = self.shutdown(Shutdown::Write); // the peer may be gone already
    }
}

impl End for Transport {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        Transport::read(self, buf)
    }
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Transport::write(self, buf)
    }
    fn shutdown_write(&mut self) {
        Transport::shutdown_write(self);
    }
}

/// Moves bytes from `src` to `dst` for one direction: the bytes written, and whether
/// it stopped with reads left to do.
fn transfer(src: &mut impl End, dst: &mut impl End, half: &mut Half) -> io::Result<(u64, bool)> {
    let mut moved = 0u64;
    let mut reads = 0;
    loop {
        if !half.pending.is_empty() {
            match dst.write(&half.pending) {
                Ok(0) => return Ok((moved, false)),
                Ok(n) => {
                    half.pending.drain(..n);
                    moved += n as u64;
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok((moved, false)),
                Err(e) => return Err(e),
            }
        }
        if half.eof {
            if !half.shut {
                half.shut = true;
                dst.shutdown_write();
            }
            return Ok((moved, false));
        }
        if reads == READS_PER_TURN {
            return Ok((moved, true));
        }
        reads += 1;
        half.pending.resize(READ_BUF, 0);
        match src.read(&mut half.pending) {
            Ok(0) => {
                half.pending.clear();
                half.eof = true;
            }
            Ok(n) => half.pending.truncate(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                half.pending = Vec::new();
                return Ok((moved, false));
            }
            Err(e) => return Err(e),
        }
    }
}
