//! After a 101 [R7]: bytes both ways between client and backend until both sides have
//! closed, a half-close passed on with `shutdown(Write)`. All open tunnels live in one
//! thread that polls their sockets, so an idle tunnel holds no worker, and one thread
//! owns both directions of each connection (which a TLS client will need: its reads
//! and writes share one state).
//!
//! Sockets are non-blocking here. A direction reads only when it has nothing pending,
//! so each direction buffers at most one read; an idle tunnel holds no buffer at all.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::access_log::Entry;
use crate::conn::Client;
use crate::server::Shared;
use crate::stream::ClientStream;
use crate::sys::{self, POLLIN, POLLOUT};

/// Reads per direction per wake-up, so one busy tunnel cannot starve the others.
const READS_PER_TURN: usize = 8;
/// The one buffer every read goes through.
const SCRATCH: usize = 64 * 1024;

/// One direction of a tunnel.
#[derive(Debug, Default)]
struct Half {
    pending: Vec<u8>, // read from the source, not yet written to the destination
    eof: bool,        // the source closed its sending side
    shut: bool,       // the EOF was passed on with shutdown(Write)
}

/// An upgraded connection pair.
pub struct Tunnel {
    client: Client,
    backend: TcpStream,
    up: Half,   // client → backend
    down: Half, // backend → client
    idle_limit: Duration,
    last_active: Instant,
    /// Bytes written to the client after the 101 head, for the access log.
    pub to_client: u64,
    /// The access-log line, finished when the tunnel closes [L]; `None` without a log.
    entry: Option<Entry>,
    opened: Instant,
}

impl Tunnel {
    /// `client_early` and `backend_early` are bytes each side sent behind its head
    /// (already read, not yet relayed).
    pub fn new(
        client: Client,
        backend: TcpStream,
        (client_early, backend_early): (Vec<u8>, Vec<u8>),
        idle_limit: Duration,
        entry: Option<Entry>,
        opened: Instant,
    ) -> Tunnel {
        Tunnel {
            client,
            backend,
            up: Half {
                pending: client_early,
                ..Half::default()
            },
            down: Half {
                pending: backend_early,
                ..Half::default()
            },
            idle_limit,
            last_active: Instant::now(),
            to_client: 0,
            entry,
            opened,
        }
    }

    /// The events to poll for on (client, backend).
    fn interest(&self) -> (i16, i16) {
        let tls_out = if self.client.io.stream.wants_write() {
            POLLOUT
        } else {
            0
        };
        let wants = |reading: &Half, writing: &Half| {
            let mut events = 0;
            if reading.pending.is_empty() && !reading.eof {
                events |= POLLIN;
            }
            if !writing.pending.is_empty() {
                events |= POLLOUT;
            }
            events
        };
        (
            wants(&self.up, &self.down) | tls_out,
            wants(&self.down, &self.up),
        )
    }

    /// Moves whatever can move without blocking. False once the tunnel is over:
    /// both directions closed, or an error on either socket.
    fn pump(&mut self, scratch: &mut [u8]) -> bool {
        let client = &mut self.client.io.stream;
        let up = transfer(client, &mut self.backend, &mut self.up, scratch);
        let down = transfer(&mut self.backend, client, &mut self.down, scratch);
        let flushed = client.flush_tls();
        match (up, down.and_then(|n| flushed.map(|_| n))) {
            (Ok(up), Ok(down)) => {
                if up + down > 0 {
                    self.last_active = Instant::now();
                }
                self.to_client += down;
                !(self.up.shut && self.down.shut)
            }
            (Err(e), _) | (_, Err(e)) => {
                crate::debug!("tunnel for {}: {e}", self.client.ip);
                false
            }
        }
    }

    fn deadline(&self) -> Instant {
        self.last_active + self.idle_limit
    }
}

/// Either end of a tunnel.
trait End: Read + Write {
    /// Passes an EOF on: no more bytes will be written.
    fn shutdown_write(&mut self);
}

impl End for TcpStream {
    fn shutdown_write(&mut self) {
        let _ = self.shutdown(Shutdown::Write); // the peer may be gone already
    }
}

impl End for ClientStream {
    fn shutdown_write(&mut self) {
        ClientStream::shutdown_write(self);
    }
}

/// Moves bytes from `src` to `dst` for one direction; returns the bytes written.
fn transfer(
    src: &mut impl End,
    dst: &mut impl End,
    half: &mut Half,
    scratch: &mut [u8],
) -> io::Result<u64> {
    let mut moved = 0u64;
    let mut reads = 0;
    loop {
        if !half.pending.is_empty() {
            match dst.write(&half.pending) {
                Ok(0) => return Ok(moved), // a TLS client's buffer is full; wait to write
                Ok(n) => {
                    half.pending.drain(..n);
                    moved += n as u64;
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(moved),
                Err(e) => return Err(e),
            }
        }
        if half.eof {
            if !half.shut {
                half.shut = true;
                dst.shutdown_write();
            }
            return Ok(moved);
        }
        if reads == READS_PER_TURN {
            return Ok(moved);
        }
        reads += 1;
        match src.read(scratch) {
            Ok(0) => half.eof = true,
            Ok(n) => half.pending.extend_from_slice(&scratch[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(moved),
            Err(e) => return Err(e),
        }
    }
}

/// The hand-over point between workers and the tunnel thread.
pub struct Tunnels {
    incoming: Mutex<Vec<Tunnel>>, // opened since the thread's last look
    wake: UnixStream,             // a byte here wakes the thread's poll
    count: AtomicUsize,           // tunnels open, incoming included
    closing: AtomicBool,          // shutdown: close every tunnel now
}

impl Tunnels {
    /// The registry, and the other end of its wake-up socket for `run`.
    pub fn new() -> io::Result<(Tunnels, UnixStream)> {
        let (wake, wake_rx) = UnixStream::pair()?;
        wake.set_nonblocking(true)?;
        wake_rx.set_nonblocking(true)?;
        Ok((
            Tunnels {
                incoming: Mutex::new(Vec::new()),
                wake,
                count: AtomicUsize::new(0),
                closing: AtomicBool::new(false),
            },
            wake_rx,
        ))
    }

    /// Hands a tunnel to the tunnel thread.
    pub fn open(&self, tunnel: Tunnel) {
        self.count.fetch_add(1, Ordering::SeqCst);
        // A poisoned lock means a worker panicked mid-push; the list is still valid.
        self.incoming
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(tunnel);
        let _ = (&self.wake).write(&[1]);
    }

    pub fn open_count(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }

    /// Shutdown: has the tunnel thread close every tunnel (logging each), waiting at
    /// most `wait` for it.
    pub fn close_all(&self, wait: Duration) {
        self.closing.store(true, Ordering::SeqCst);
        let _ = (&self.wake).write(&[1]);
        let deadline = Instant::now() + wait;
        while self.open_count() > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5)); // the tunnel thread's turn
        }
    }

    fn take_incoming(&self) -> Vec<Tunnel> {
        std::mem::take(&mut *self.incoming.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// The tunnel thread's loop.
pub fn run(shared: &Shared, mut wake_rx: UnixStream) {
    let tunnels = &shared.tunnels;
    let mut open: Vec<Tunnel> = Vec::new();
    let mut scratch = vec![0u8; SCRATCH];
    let mut fds = Vec::new();
    loop {
        fds.clear();
        fds.push(sys::poll_fd(wake_rx.as_raw_fd(), POLLIN));
        for t in &open {
            let (c, b) = t.interest();
            fds.push(sys::poll_fd(t.client.io.stream.tcp().as_raw_fd(), c));
            fds.push(sys::poll_fd(t.backend.as_raw_fd(), b));
        }
        let now = Instant::now();
        // Bytes rustls already decrypted do not show on the socket: don't sleep on them.
        let buffered: Vec<bool> = open
            .iter_mut()
            .map(|t| t.client.io.stream.has_buffered())
            .collect();
        let timeout = match buffered.contains(&true) {
            true => Some(Duration::ZERO),
            false => open
                .iter()
                .map(|t| t.deadline().saturating_duration_since(now))
                .min(),
        };
        if let Err(e) = sys::poll(&mut fds, timeout) {
            crate::error!("tunnels: poll failed: {e}");
        }
        if fds[0].revents != 0 {
            let mut drain = [0u8; 256];
            while matches!(wake_rx.read(&mut drain), Ok(n) if n > 0) {}
        }
        let now = Instant::now();
        // Backwards, so that swap_remove only moves entries already looked at.
        for i in (0..open.len()).rev() {
            let ready = buffered[i] || fds[1 + 2 * i].revents | fds[2 + 2 * i].revents != 0;
            let alive = !ready || open[i].pump(&mut scratch);
            if !alive || open[i].deadline() <= now || tunnels.closing.load(Ordering::SeqCst) {
                close(shared, open.swap_remove(i));
            }
        }
        for mut t in tunnels.take_incoming() {
            let nonblocking = t
                .client
                .io
                .stream
                .tcp()
                .set_nonblocking(true)
                .and_then(|_| t.backend.set_nonblocking(true));
            if nonblocking.is_ok() && t.pump(&mut scratch) {
                open.push(t);
            } else {
                close(shared, t);
            }
        }
    }
}

/// Closes both sockets (by dropping them) and writes the tunnel's access-log line.
fn close(shared: &Shared, mut tunnel: Tunnel) {
    crate::debug!(
        "tunnel for {} closed after {} bytes to the client",
        tunnel.client.ip,
        tunnel.to_client
    );
    if let Some(entry) = &mut tunnel.entry {
        entry.body_bytes = tunnel.to_client;
        entry.elapsed = tunnel.opened.elapsed();
        shared.log.write(entry);
    }
    shared.tunnels.count.fetch_sub(1, Ordering::SeqCst);
}
