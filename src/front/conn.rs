//! One client connection on its event loop [R8]: the socket (`transport.rs`, TLS
//! or not), the HTTP/1 machine (`h1.rs`) that turns its bytes into requests, the
//! exchange answering the current request (`exchange/`), and after a 101 its tunnel.
//! Each wake-up moves bytes in steps (read the client, hand request events to the
//! exchange, let the exchange work, write the client) until nothing moves or the
//! step budget is spent; then the loop waits on what is left: a socket, or the
//! nearest deadline of the machines.
//!
//! Every wait has a deadline: `headerMs`/`keepAliveMs` (`h1.rs`), the exchange's
//! `connectMs`/`upstreamMs`, `upstreamMs` for a client that does not read what it is
//! sent, `tunnelIdleMs`, and `LINGER` while a closing connection's last bytes are
//! read off.

use std::net::{IpAddr, SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use rustls::ServerConnection;

use crate::access_log::Entry;
use crate::body::BodyLength;
use crate::error::HeadError;
use crate::event::{Connection, Side, SocketId, Woke, next_serial};
use crate::exchange::{self, Exchange, Respond};
use crate::front::h1::{Event, H1, Limits};
use crate::front::h2::conn::PREFACE;
use crate::front::h2::session::Session;
use crate::front::transport::{ClientSocket, Transport};
use crate::front::tunnel::{Pumped, Tunnel};
use crate::head::{RequestHead, ResponseHead};
use crate::shared::{Runtime, Shared, Slot};

/// Most answer bytes queued for the client before the exchange waits for room.
const OUT_CAP: usize = 64 * 1024;
/// Steps per wake-up before the connection lets the others on its loop go first.
const STEPS: usize = 4;
/// How long a closing connection's bytes are read off, at most.
const LINGER: Duration = Duration::from_secs(1);

enum Phase {
    Http,
    /// The client speaks HTTP/2 (ALPN `h2`, or the preface on the plain listener).
    H2(Box<Session>),
    Tunnel(Box<Tunnelled>),
    /// Our side is shut; what the client still sends is read off until `until`, so
    /// that closing with unread bytes does not reset the answer away.
    Closing {
        until: Instant,
    },
    Done,
}

struct Tunnelled {
    tunnel: Tunnel,
    /// Written when the tunnel closes [L].
    entry: Option<Entry>,
    opened: Instant,
}

pub struct Conn {
    shared: Arc<Shared>,
    sock: ClientSocket,
    client: exchange::Client,
    h1: H1,
    exchange: Option<Exchange>,
    phase: Phase,
    /// No request has started yet: an HTTP/2 preface may come.
    first: bool,
    /// `upstreamMs`: how long a client may take nothing of its answer.
    send_timeout: Duration,
    /// The runtime of the last request (or of the accept), and its generation: a
    /// request takes the newer one after a reload.
    rt: Arc<Runtime>,
    generation: u64,
    /// Read off what the client sends before closing (not after an idle close).
    linger: bool,
    /// The step budget ran out with work left: wake again at once.
    again: bool,
    _slot: Slot,
}

fn limits(rt: &Runtime) -> Limits {
    Limits {
        max_header_bytes: rt.max_header_bytes,
        header: rt.timeouts.header(),
        keep_alive: rt.timeouts.keep_alive(),
    }
}

/// The answer's way to the client: the HTTP/1 machine, and for a plain client its
/// socket, which body bytes are written to at once when nothing waits before them.
struct Sink<'a> {
    h1: &'a mut H1,
    now: Instant,
    /// The plain client's socket while it is writable.
    direct: Option<&'a TcpStream>,
    /// Set when the socket took no more (it waits for the loop to say writable).
    full: bool,
    /// Bytes written to `direct`.
    wrote: usize,
}

impl<'a> Sink<'a> {
    fn new(h1: &'a mut H1, now: Instant, direct: Option<&'a TcpStream>) -> Sink<'a> {
        Sink {
            h1,
            now,
            direct,
            full: false,
            wrote: 0,
        }
    }
}

impl Respond for Sink<'_> {
    fn room(&self) -> usize {
        OUT_CAP.saturating_sub(H1::output(self.h1).len())
    }
    fn interim(&mut self, head: &ResponseHead) {
        self.h1.send_interim(head);
    }
    fn head(&mut self, head: &ResponseHead, length: BodyLength, keep_alive: bool) {
        self.h1.send_head(head, length, keep_alive);
    }
    fn local(&mut self, status: u16, extra: &[(&str, &str)]) {
        self.h1.send_local(status, extra, self.now);
    }
    fn data(&mut self, bytes: &[u8]) {
        let queued = self.full || self.h1.wants_write();
        let Some(mut socket) = self.direct.filter(|_| !queued) else {
            return self.h1.send_data(bytes);
        };
        match self.h1.send_data_via(bytes, &mut socket) {
            Ok(n) => {
                self.wrote += n;
                self.full = self.h1.wants_write(); // a short write: its buffer is full
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => self.full = true,
            // Queued: the write of the output that follows meets the error again.
            Err(_) => self.direct = None,
        }
    }
    fn end(&mut self, trailers: &[u8]) {
        self.h1.send_end(trailers, self.now);
    }
    fn abort(&mut self) {
        self.h1.abort();
    }
}

impl Conn {
    /// A connection accepted at `now`, TLS when `pems` is set (not on the redirect
    /// listener).
    pub fn new(
        shared: Arc<Shared>,
        stream: TcpStream,
        ip: IpAddr,
        redirect_to: Option<SocketAddr>,
        (slot, home): (Slot, usize),
        now: Instant,
    ) -> Option<Conn> {
        let io = match (&shared.tls, redirect_to) {
            (Some(config), None) => match ServerConnection::new(Arc::clone(config)) {
                Ok(tls) => Transport::Tls(Box::new((tls, stream))),
                Err(e) => {
                    crate::error!("TLS: cannot start a connection: {e}");
                    return None;
                }
            },
            _ => Transport::Plain(stream),
        };
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        let generation = shared.generation();
        let rt = shared.runtime();
        let h1 = H1::new(limits(&rt), now);
        let send_timeout = rt.timeouts.upstream();
        Some(Conn {
            client: exchange::Client {
                ip,
                tls: io.is_tls(),
                redirect_to,
                home,
            },
            shared,
            sock: ClientSocket::new(io, next_serial()),
            h1,
            exchange: None,
            phase: Phase::Http,
            first: true,
            send_timeout,
            rt,
            generation,
            linger: true,
            again: false,
            _slot: slot,
        })
    }

    /// One step: whether anything moved.
    fn step(&mut self, now: Instant) -> bool {
        match self.phase {
            Phase::Http => self.step_http(now),
            Phase::H2(_) => self.step_h2(now),
            Phase::Tunnel(_) => self.step_tunnel(now),
            Phase::Closing { .. } => self.step_closing(),
            Phase::Done => false,
        }
    }

    fn step_http(&mut self, now: Instant) -> bool {
        let mut moved = match self.sock.read_into(&mut self.h1, now) {
            Ok(moved) => moved,
            Err(e) => {
                crate::debug!("client {}: {e}", self.client.ip);
                self.linger = false;
                true
            }
        };
        if self.first && self.speaks_h2() {
            return self.begin_h2(now);
        }
        moved |= self.take_events(now);
        if let Some(x) = &mut self.exchange {
            let direct = match &self.sock.io {
                Transport::Plain(socket) if self.sock.writable => Some(socket),
                _ => None,
            };
            let mut sink = Sink::new(&mut self.h1, now, direct);
            moved |= x.run(&mut sink, now);
            if sink.wrote > 0 {
                self.sock.stalled_since = None;
            }
            self.sock.writable &= !sink.full;
            moved |= self.after_exchange(now);
        }
        moved |= self.write_client(now);
        if matches!(self.phase, Phase::Http) && self.h1.is_finished() && !self.sock.io.wants_flush()
        {
            self.begin_close(now);
            moved = true;
        }
        moved
    }

    /// Whether the client speaks HTTP/2: it chose `h2` in its TLS handshake, or (on
    /// the plain listener) its first bytes are the preface's request line [H2].
    fn speaks_h2(&self) -> bool {
        if self.client.redirect_to.is_some() {
            return false;
        }
        match &self.sock.io {
            Transport::Tls(t) => t.0.alpn_protocol() == Some(b"h2"),
            Transport::Plain(_) => self.h1.pending_input().starts_with(&PREFACE[..18]),
        }
    }

    /// From here on the connection speaks HTTP/2.
    fn begin_h2(&mut self, now: Instant) -> bool {
        self.first = false;
        let input = self.h1.take_input();
        let rt = (Arc::clone(&self.rt), self.generation);
        let session = Session::new(Arc::clone(&self.shared), rt, self.client, input, now);
        self.phase = Phase::H2(Box::new(session));
        true
    }

    fn step_h2(&mut self, now: Instant) -> bool {
        let Phase::H2(s) = &mut self.phase else {
            return false;
        };
        let mut moved = match self.sock.read_into(&mut s.h2, now) {
            Ok(moved) => moved,
            Err(e) => {
                crate::debug!("client {}: {e}", self.client.ip);
                self.linger = false;
                true
            }
        };
        moved |= s.work(now);
        match self.sock.write_from(&mut s.h2, now) {
            Ok(wrote) => moved |= wrote,
            Err(e) => {
                crate::debug!("client {}: {e}", self.client.ip);
                s.close();
                self.phase = Phase::Done;
                return true;
            }
        }
        let flushed = !s.h2.wants_write() && !self.sock.io.wants_flush();
        if (s.is_finished() || s.h2.client_closed()) && flushed {
            let client_closed = s.h2.client_closed();
            s.close();
            self.linger &= !client_closed;
            self.begin_close(now);
            moved = true;
        }
        moved
    }

    /// Hands what the client sent to the exchange, as far as it has room.
    fn take_events(&mut self, now: Instant) -> bool {
        let mut moved = false;
        loop {
            let room = self.exchange.as_ref().map_or(0, Exchange::body_room);
            match self.h1.next_event(room) {
                Event::NeedData | Event::Full | Event::Paused => return moved,
                Event::Request(head, body) => self.start_exchange(head, body, now),
                Event::Data(bytes) => {
                    if let Some(x) = &mut self.exchange {
                        x.client_data(bytes);
                    }
                }
                Event::End(trailers) => {
                    if let Some(x) = &mut self.exchange {
                        x.client_end(trailers);
                    }
                }
                Event::Refused(e) => {
                    crate::debug!("client {}: {e}", self.client.ip);
                    match self.exchange.take() {
                        Some(mut x) => {
                            x.client_gone(Some(e.status()));
                            self.log_exchange(&x);
                        }
                        None => self.log_refused(e),
                    }
                    return true;
                }
                Event::Closed { .. } => {
                    if let Some(mut x) = self.exchange.take() {
                        x.client_gone(None);
                        self.log_exchange(&x);
                    }
                    self.linger = false;
                    return true;
                }
            }
            moved = true;
        }
    }

    fn start_exchange(&mut self, head: RequestHead, body: BodyLength, now: Instant) {
        self.first = false;
        if let Some(newer) = self.shared.newer_runtime(&mut self.generation) {
            self.h1.set_limits(limits(&newer));
            self.send_timeout = newer.timeouts.upstream();
            self.rt = newer;
        }
        let rt = Arc::clone(&self.rt);
        if self.shared.is_stopping() {
            self.h1.close_after_answer();
        }
        self.exchange = Some(Exchange::start(rt, head, body, self.client, now));
    }

    /// After the exchange moved: a finished one is logged, an upgraded one becomes
    /// a tunnel.
    fn after_exchange(&mut self, now: Instant) -> bool {
        let Some(x) = &mut self.exchange else {
            return false;
        };
        if let Some((backend, early)) = x.take_tunnel() {
            let x = self.exchange.take();
            let entry = x.as_ref().and_then(|x| self.entry_for(x));
            let head = self.h1.take_output();
            let idle = self.rt.timeouts.tunnel_idle();
            let tunnel = Tunnel::new(backend, self.h1.take_input(), head, &early, idle, now);
            self.phase = Phase::Tunnel(Box::new(Tunnelled {
                tunnel,
                entry,
                opened: now,
            }));
            return true;
        }
        if !x.is_finished() {
            return false;
        }
        if let Some(x) = self.exchange.take() {
            self.log_exchange(&x);
        }
        true
    }

    fn write_client(&mut self, now: Instant) -> bool {
        match self.sock.write_from(&mut self.h1, now) {
            Ok(moved) => moved,
            Err(e) => {
                crate::debug!("client {}: {e}", self.client.ip);
                self.client_gone();
                true
            }
        }
    }

    /// The client cannot be written to any more: whatever was under way ends.
    fn client_gone(&mut self) {
        if let Some(mut x) = self.exchange.take() {
            x.client_gone(None);
            self.log_exchange(&x);
        }
        self.phase = Phase::Done;
    }

    /// Nothing more to read or write: close. When the client may still be sending
    /// (a request cut short, bytes unread), our side is shut first and its bytes
    /// are read off for up to `LINGER`, so that closing with unread data does not
    /// turn into a reset that destroys the answer before the client reads it (what
    /// nginx's `lingering_close on` does) [R8].
    fn begin_close(&mut self, now: Instant) {
        // Bytes that came after our last read: only when the socket may hold more.
        let fd = self.sock.io.tcp().as_raw_fd();
        let unread = self.h1.left_unread()
            || (self.sock.readable && crate::sys::peek(fd) == crate::sys::Peek::Data);
        let linger =
            self.linger && unread && !self.h1.client_closed() && !self.shared.is_stopping();
        if linger {
            self.sock.io.shutdown_write(); // TLS: a close_notify first
        } else if self.linger && self.sock.io.is_tls() {
            self.sock.io.close_notify();
        }
        self.phase = match linger {
            true => Phase::Closing {
                until: now + LINGER,
            },
            false => Phase::Done,
        };
    }

    fn step_closing(&mut self) -> bool {
        let mut sink = [0u8; 4096];
        for _ in 0..16 {
            match std::io::Read::read(&mut self.sock.io.tcp(), &mut sink) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
                Err(_) => break,
            }
        }
        self.phase = Phase::Done; // the client closed too, or reset, or sends on
        true
    }

    fn step_tunnel(&mut self, now: Instant) -> bool {
        let Phase::Tunnel(t) = &mut self.phase else {
            return false;
        };
        match t.tunnel.pump(&mut self.sock.io, now) {
            Pumped::Wait => false,
            Pumped::More => true,
            Pumped::Over => {
                self.close_tunnel();
                true
            }
        }
    }

    /// Closes the tunnel and writes its log line.
    fn close_tunnel(&mut self) {
        let Phase::Tunnel(t) = std::mem::replace(&mut self.phase, Phase::Done) else {
            return;
        };
        crate::debug!(
            "tunnel for {} closed after {} bytes to the client",
            self.client.ip,
            t.tunnel.to_client
        );
        if let Some(mut entry) = t.entry {
            entry.body_bytes = t.tunnel.to_client;
            entry.elapsed = t.opened.elapsed();
            self.shared.log.write(&entry);
        }
    }

    /// Deadlines that passed by `now`.
    fn expire(&mut self, now: Instant) {
        let passed = |at: Option<Instant>| at.is_some_and(|at| at <= now);
        let stalled = passed(self.sock.stalled_since.map(|at| at + self.send_timeout));
        match &mut self.phase {
            Phase::Http => {}
            Phase::H2(s) => {
                s.expire(now);
                if stalled {
                    crate::debug!("client {}: took nothing for upstreamMs", self.client.ip);
                    s.close();
                    self.phase = Phase::Done;
                }
                return;
            }
            Phase::Tunnel(t) => {
                if t.tunnel.deadline() <= now {
                    self.close_tunnel();
                }
                return;
            }
            Phase::Closing { until } => {
                if *until <= now {
                    self.phase = Phase::Done;
                }
                return;
            }
            Phase::Done => return,
        }
        if passed(self.h1.deadline()) {
            let idle = self.h1.is_idle();
            match self.h1.expire(now) {
                Some(e) => self.log_refused(e),
                None => self.linger &= !idle,
            }
        }
        if let Some(x) = &mut self.exchange
            && passed(x.deadline())
        {
            // Only queued: the step that follows writes it.
            let mut sink = Sink::new(&mut self.h1, now, None);
            x.expire(&mut sink, now);
            self.after_exchange(now);
        }
        if stalled {
            crate::debug!("client {}: took nothing for upstreamMs", self.client.ip);
            self.client_gone();
        }
    }

    /// SIGTERM: an idle connection closes now, the others after their answer.
    fn stop(&mut self) {
        match &mut self.phase {
            Phase::Http if self.exchange.is_none() && self.h1.is_idle() => {
                self.phase = Phase::Done;
            }
            Phase::Http => self.h1.close_after_answer(),
            Phase::H2(s) => s.h2.stop(),
            Phase::Closing { .. } => self.phase = Phase::Done,
            Phase::Tunnel(_) | Phase::Done => {}
        }
    }

    // ------------------------------------------------------------------ the log

    fn log_exchange(&self, x: &Exchange) {
        let req = &x.req;
        crate::debug!(
            "client {}: {} {} -> {} via {}",
            self.client.ip,
            req.method,
            req.target,
            x.outcome.status,
            x.upstream().map_or("-", |a| a.text.as_str())
        );
        if let Some(entry) = self.entry_for(x) {
            self.shared.log.write(&entry);
        }
    }

    fn entry_for(&self, x: &Exchange) -> Option<Entry> {
        // A request line of any other version was refused (505) before routing.
        let version = match x.req.minor {
            0 => "HTTP/1.0",
            _ => "HTTP/1.1",
        };
        let started = self.h1.request_started();
        self.shared
            .log
            .is_on()
            .then(|| x.log_entry(self.client.ip, version, started))
    }

    /// The line for a head we refused (400, 408, 431, …), with its first line if a
    /// whole one came.
    fn log_refused(&self, e: HeadError) {
        let input = self.h1.pending_input();
        let head_only = crate::head::starts_head_request(input);
        let body_bytes = match head_only {
            true => 0,
            false => crate::headers::local_body(e.status()).len() as u64,
        };
        let elapsed = self.h1.request_started().elapsed();
        let now = SystemTime::now();
        self.shared.log.write(&Entry {
            client: self.client.ip,
            started: now.checked_sub(elapsed).unwrap_or(now),
            request_line: first_line(input),
            status: e.status(),
            body_bytes,
            referer: None,
            user_agent: None,
            elapsed,
            upstream: None,
        });
    }
}

/// The first line of a head we could not parse, as read, if a whole one came.
fn first_line(buf: &[u8]) -> Option<String> {
    let end = buf.windows(2).position(|w| w == b"\r\n")?;
    Some(String::from_utf8_lossy(&buf[..end]).into_owned())
}

impl Connection for Conn {
    fn sockets(&self, each: &mut dyn FnMut(Side, SocketId)) {
        each(
            Side::Client,
            (self.sock.io.tcp().as_raw_fd(), self.sock.serial),
        );
        let backend = match &self.phase {
            Phase::H2(s) => return s.sockets(each),
            Phase::Tunnel(t) => Some(t.tunnel.socket()),
            _ => self.exchange.as_ref().and_then(Exchange::backend_socket),
        };
        if let Some(id) = backend {
            each(Side::Backend(0), id);
        }
    }

    fn run(&mut self, woke: Woke, now: Instant) {
        self.again = false;
        match woke {
            Woke::Arrived | Woke::Deadline => {}
            Woke::Socket(Side::Client, r) => {
                self.sock.readable |= r.readable;
                self.sock.writable |= r.writable;
                self.sock.hup |= r.hup;
            }
            Woke::Socket(Side::Backend(id), r) => match &mut self.phase {
                Phase::H2(s) => s.backend_ready(id, r),
                _ => {
                    if let Some(x) = &mut self.exchange {
                        x.backend_ready(r);
                    }
                }
            },
        }
        if self.shared.is_closing() {
            if let Phase::H2(s) = &mut self.phase {
                s.close();
            }
            self.close_tunnel();
            self.phase = Phase::Done;
            return;
        }
        if self.shared.is_stopping() {
            self.stop();
        }
        self.expire(now);
        for _ in 0..STEPS {
            if !self.step(now) {
                match &mut self.phase {
                    Phase::H2(s) if s.h2.is_idle() => s.h2.shrink_idle(),
                    _ if self.exchange.is_none() => self.h1.shrink_idle(),
                    _ => {}
                }
                return;
            }
        }
        self.again = !matches!(self.phase, Phase::Done);
    }

    fn deadline(&self) -> Option<Instant> {
        if self.again {
            return Some(Instant::now());
        }
        let earliest = |a: Option<Instant>, b: Option<Instant>| match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        match &self.phase {
            Phase::Http => {
                let stalled = self.sock.stalled_since.map(|s| s + self.send_timeout);
                let at = earliest(self.h1.deadline(), stalled);
                earliest(at, self.exchange.as_ref().and_then(Exchange::deadline))
            }
            Phase::H2(s) => {
                let stalled = self.sock.stalled_since.map(|s| s + self.send_timeout);
                earliest(s.deadline(), stalled)
            }
            Phase::Tunnel(t) => Some(t.tunnel.deadline()),
            Phase::Closing { until } => Some(*until),
            Phase::Done => None,
        }
    }

    fn is_done(&self) -> bool {
        matches!(self.phase, Phase::Done)
    }
}
