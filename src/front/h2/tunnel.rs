//! A WebSocket over HTTP/2 (RFC 8441) after the backend's 101 [R7][H2]: the bytes
//! of one stream's DATA frames go to the backend connection, and what the backend
//! sends goes back as DATA, until both sides have ended (END_STREAM one way, a TCP
//! half-close the other) or neither has sent anything for `tunnelIdleMs`.
//!
//! Backpressure both ways: the client's bytes are taken from the stream only as far
//! as the backend's socket takes them (so the stream's window closes behind them),
//! and the backend is read only while the stream has room for its answer.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use super::conn::{H2, STREAM_OUT};
use crate::event::{SocketId, SocketOf};
use crate::front::tunnel::Pumped;
use crate::sys::Readiness;

/// Reads of the backend per step.
const READS_PER_STEP: usize = 4;

pub struct StreamTunnel {
    backend: TcpStream,
    serial: u64,
    readable: bool,
    writable: bool,
    /// Bytes the backend sent behind its 101, still to go to the client.
    early: Vec<u8>,
    /// The backend closed its sending side; its END_STREAM is queued.
    backend_done: bool,
    /// The client's END_STREAM was passed on with `shutdown(Write)`.
    client_done: bool,
    idle: Duration,
    last_active: Instant,
    /// Bytes relayed to the client, for the access log.
    pub to_client: u64,
}

impl StreamTunnel {
    pub fn new((backend, serial): SocketOf, early: Vec<u8>, idle: Duration, now: Instant) -> Self {
        StreamTunnel {
            backend,
            serial,
            readable: true,
            writable: true,
            early,
            backend_done: false,
            client_done: false,
            idle,
            last_active: now,
            to_client: 0,
        }
    }

    pub fn socket(&self) -> SocketId {
        (self.backend.as_raw_fd(), self.serial)
    }

    pub fn ready(&mut self, r: Readiness) {
        self.readable |= r.readable || r.hup;
        self.writable |= r.writable;
    }

    /// Both sides have ended.
    pub fn is_done(&self) -> bool {
        self.backend_done && self.client_done
    }

    pub fn deadline(&self) -> Instant {
        self.last_active + self.idle
    }

    /// Moves what can move between stream `id` of `h2` and the backend.
    pub fn pump(&mut self, h2: &mut H2, id: u32, now: Instant) -> Pumped {
        match self.move_bytes(h2, id) {
            Ok((moved, more)) => {
                if moved {
                    self.last_active = now;
                }
                if self.backend_done && self.client_done {
                    Pumped::Over
                } else if more {
                    Pumped::More
                } else {
                    Pumped::Wait
                }
            }
            Err(e) => {
                crate::debug!("HTTP/2 tunnel on stream {id}: {e}");
                Pumped::Over
            }
        }
    }

    /// Whether bytes moved, and whether reads are left to do.
    fn move_bytes(&mut self, h2: &mut H2, id: u32) -> io::Result<(bool, bool)> {
        let mut moved = false;
        // Client → backend, as far as the backend's socket takes it.
        while self.writable && !h2.body(id).is_empty() {
            match self.backend.write(h2.body(id)) {
                Ok(n) => {
                    h2.consume(id, n);
                    moved = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.writable = false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if !self.client_done && h2.body_ended(id).is_some() {
            let _ = self.backend.shutdown(Shutdown::Write); // the backend may be gone
            self.client_done = true;
            moved = true;
        }
        if !self.early.is_empty() {
            let n = self.early.len().min(h2.room(id));
            h2.send_data(id, &self.early[..n]);
            self.early.drain(..n);
            self.to_client += n as u64;
            moved |= n > 0;
        }
        // Backend → client, while the stream has room.
        let mut buf = [0u8; 16 * 1024];
        for _ in 0..READS_PER_STEP {
            let room = h2.room(id).min(buf.len()).min(STREAM_OUT);
            if !self.readable || self.backend_done || room == 0 || !self.early.is_empty() {
                return Ok((moved, false));
            }
            match self.backend.read(&mut buf[..room]) {
                Ok(0) => {
                    h2.send_end(id, &[]);
                    self.backend_done = true;
                    moved = true;
                }
                Ok(n) => {
                    h2.send_data(id, &buf[..n]);
                    self.to_client += n as u64;
                    moved = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.readable = false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok((moved, self.readable && !self.backend_done))
    }
}
