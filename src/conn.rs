//! One client connection on a worker [R8]: read a head, dispatch it, answer, and then
//! serve pipelined bytes already read or park the connection in `park.rs` until its
//! next request, so it holds no worker while it waits. A request sent to a backend
//! waits there too (`Waiting`), and `resume` takes it up again.
//!
//! One request at a time per connection, and bytes left after a message carry into
//! the next head, so pipelined requests are answered in order by construction.

use std::io::{Read, Seek, SeekFrom};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use crate::access_log::Entry;
use crate::backend::authority::Authority;
use crate::body::{BodyLength, request_body_length};
use crate::error::HeadError;
use crate::head::{Fields, HeadScan, RequestHead, parse_request_resumed};
use crate::headers::{local_response, response_head};
use crate::io::BufStream;
use crate::proxy::{Forwarded, Pending};
use crate::relay::discard_body;
use crate::route::{self, Target};
use crate::server::{Runtime, Shared};
use crate::static_files::{Answer as StaticAnswer, FilePart};
use crate::stream::ClientStream;
use crate::sys::Peek;
use crate::tunnel::Tunnel;
use crate::workers::Job;

/// Most bytes of an unwanted request body read and dropped to keep the connection.
const DISCARD_LIMIT: u64 = 1024 * 1024;

/// Holds one place in `maxConnections` until dropped.
#[derive(Debug)]
pub struct Slot(pub Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[derive(Debug)]
pub struct Client {
    pub io: BufStream<ClientStream>,
    /// The peer's address (IPv4-mapped IPv6 shown as IPv4).
    pub ip: IpAddr,
    /// The connection came in over TLS.
    pub tls: bool,
    /// HTTP minor version of the request being answered.
    pub minor: u8,
    /// The request being answered is a HEAD: answers carry no body.
    pub head_request: bool,
    /// When the wait for the current head began, if it began before this worker took
    /// the connection: the accept of a new connection, or the first byte of a head
    /// that was parked half-read.
    pub head_started: Option<Instant>,
    /// When the connection went idle between requests: `keepAliveMs` runs from then,
    /// however often it wakes with bytes that bring no request byte (a TLS record
    /// sent a byte at a time). `None` from the first byte of a head.
    idle_since: Option<Instant>,
    /// How far the head being read has been scanned (each byte once).
    head_scan: HeadScan,
    /// Set on the redirect listener: every request is answered with a 301 to the TLS
    /// listener at this address [K].
    pub redirect_to: Option<SocketAddr>,
    /// The socket was just reported readable (by epoll): the next read need not ask.
    pub readable: bool,
    /// Closing now could drop unread request bytes: read them off before closing so
    /// the client sees our answer instead of a reset.
    pub linger: bool,
    _slot: Slot,
}

/// How one request ended, for the access log and the keep-alive decision.
#[derive(Debug)]
pub struct Outcome {
    /// The status sent, 0 when none could be.
    pub status: u16,
    pub keep_alive: bool,
    pub body_bytes: u64,
    pub upstream: Option<Arc<Authority>>,
    /// After a 101: the backend connection to tunnel to [R7].
    pub tunnel: Option<BufStream<TcpStream>>,
}

impl Client {
    pub fn new(stream: ClientStream, ip: IpAddr, slot: Slot, accepted: Instant) -> Client {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        Client {
            tls: stream.is_tls(),
            io: BufStream::new(stream),
            ip,
            minor: 1,
            head_request: false,
            head_started: Some(accepted),
            idle_since: None,
            head_scan: HeadScan::default(),
            redirect_to: None,
            readable: false,
            linger: false,
            _slot: slot,
        }
    }

    /// Whether bytes of a next request may be here already [R8]: read by us, held by
    /// rustls, or still in the socket after a read that filled our buffer. Over TLS,
    /// bytes of a record rustls has not read yet may wait in the socket too, which
    /// one non-blocking poll tells.
    fn input_may_wait(&mut self) -> bool {
        !self.io.data().is_empty()
            || self.io.last_read_filled()
            || self.io.stream.has_buffered()
            || (self.tls
                && crate::sys::wait_readable(self.io.stream.tcp().as_raw_fd(), Duration::ZERO))
    }

    /// Answers with a status of our own [E]; closes afterwards unless `keep_alive`.
    pub fn answer_error(&mut self, status: u16, keep_alive: bool) -> Outcome {
        self.answer(status, &[], keep_alive, self.head_request)
    }

    pub fn answer(
        &mut self,
        status: u16,
        extra: &[(&str, &str)],
        keep_alive: bool,
        head_only: bool,
    ) -> Outcome {
        let response = local_response(status, extra, keep_alive, self.minor, head_only);
        let sent = self.io.put(&response).and_then(|_| self.io.flush()).is_ok();
        self.linger |= !keep_alive;
        let body_bytes = if head_only {
            0
        } else {
            crate::headers::local_body(status).len() as u64
        };
        Outcome {
            status,
            keep_alive: keep_alive && sent,
            body_bytes,
            upstream: None,
            tunnel: None,
        }
    }

    /// Answers a request hawkey handles itself, after `drain_body`.
    fn answer_local(
        &mut self,
        rt: &Runtime,
        req: &RequestHead,
        body: BodyLength,
        status: u16,
        extra: &[(&str, &str)],
        keep_alive: bool,
    ) -> Outcome {
        let drained = self.drain_body(rt, req, body);
        self.answer(status, extra, keep_alive && drained, self.head_request)
    }

    /// Reads and drops the body of a request hawkey answers itself (up to
    /// `DISCARD_LIMIT`), so it is never taken for the next request. False when it
    /// could not be: the connection must close after the answer [R8].
    fn drain_body(&mut self, rt: &Runtime, req: &RequestHead, body: BodyLength) -> bool {
        match body {
            BodyLength::Empty | BodyLength::Exact(0) => true,
            // The client waits for a 100 we will not send; don't wait for its body.
            _ if req.has_token("expect", "100-continue") => false,
            _ => {
                let _ = self
                    .io
                    .stream
                    .tcp()
                    .set_read_timeout(Some(rt.timeouts.header()));
                discard_body(&mut self.io, body, DISCARD_LIMIT)
            }
        }
    }
}

/// Serves `client` until it closes, times out, or waits (parked, or its request at
/// a backend).
pub fn serve(shared: &Shared, mut client: Client) {
    loop {
        let rt = shared.runtime();
        // [R8]: headerMs runs from the accept (or the first byte of a later request).
        let started = client.head_started.unwrap_or_else(Instant::now);
        let (req, len) = match read_head(&rt, &mut client, started) {
            Ok(HeadRead::Complete(req, len)) => (req, len),
            Ok(HeadRead::Closed) => return,
            Ok(HeadRead::Waiting) => match park(shared, &rt, client, started) {
                Some(more) => {
                    client = more; // bytes came as it was being parked
                    continue;
                }
                None => return,
            },
            Err(e) => {
                crate::debug!("client {}: {e}", client.ip);
                // The answer follows this request's method, not the last one's: a
                // HEAD's error carries no body, any other's does.
                client.head_request = crate::head::starts_head_request(client.io.data());
                let outcome = client.answer_error(e.status(), false);
                let line = first_line(client.io.data());
                shared
                    .log
                    .write(&log_entry(&client, None, line, &outcome, started));
                return close(shared, client);
            }
        };
        (client.head_started, client.idle_since) = (None, None);
        client.head_scan = HeadScan::default();
        client.io.consume(len);
        client.minor = req.minor;
        client.head_request = req.method == "HEAD";
        let next = match dispatch(&rt, &mut client, &req, !shared.is_stopping()) {
            Forwarded::Done(outcome) => after_request(shared, &rt, client, &req, outcome, started),
            Forwarded::Waiting(pending) => {
                let waiting = Waiting {
                    client,
                    req,
                    pending,
                    started,
                    rt,
                };
                match shared.parker.park_exchange(Box::new(waiting)) {
                    Some(answered) => finish(shared, answered, false), // already answering
                    None => return,
                }
            }
        };
        match next {
            Some(next) => client = next,
            None => return,
        }
    }
}

/// A request sent to a backend that has not answered yet, with its connection.
pub struct Waiting {
    pub client: Client,
    req: RequestHead,
    pub pending: Pending,
    started: Instant,
    /// The config the request started with; it finishes on it.
    rt: Arc<Runtime>,
}

/// Picks up an exchange whose backend answered (or stayed silent until its deadline,
/// `timed_out`), then goes on serving the connection.
pub fn resume(shared: &Shared, waiting: Box<Waiting>, timed_out: bool) {
    if let Some(client) = finish(shared, waiting, timed_out) {
        serve(shared, client);
    }
}

/// Relays the answer of a waiting exchange; `after_request` says what comes next.
fn finish(shared: &Shared, waiting: Box<Waiting>, timed_out: bool) -> Option<Client> {
    let Waiting {
        mut client,
        req,
        pending,
        started,
        rt,
    } = *waiting;
    let outcome = crate::proxy::resume(&rt, &mut client, &req, pending, timed_out);
    after_request(shared, &rt, client, &req, outcome, started)
}

/// Logs a finished request and decides what the connection does next: `Some` when
/// this worker should read its next request now.
fn after_request(
    shared: &Shared,
    rt: &Runtime,
    mut client: Client,
    req: &RequestHead,
    outcome: Outcome,
    started: Instant,
) -> Option<Client> {
    crate::debug!(
        "client {}: {} {} -> {} via {}",
        client.ip,
        req.method,
        req.target,
        outcome.status,
        outcome.upstream.as_ref().map_or("-", |a| a.text.as_str())
    );
    let entry = shared.log.is_on().then(|| {
        let line = format!("{} {} HTTP/1.{}", req.method, req.target, req.minor);
        log_entry(&client, Some(req), Some(line), &outcome, started)
    });
    if let Some(backend) = outcome.tunnel {
        open_tunnel(shared, rt, client, backend, entry, started);
        return None;
    }
    if let Some(entry) = &entry {
        shared.log.write(entry);
    }
    if !outcome.keep_alive {
        close(shared, client);
        return None;
    }
    // Between requests the connection waits in the epoll set, which reports only
    // bytes that arrive from now on. Pipelined bytes already here are served now,
    // unless other connections wait for a worker (fairness).
    if !client.input_may_wait() {
        return park(shared, rt, client, Instant::now());
    }
    if shared.queue.waiting() > 0 {
        shared.queue.push(Job::Ready(client));
        return None;
    }
    Some(client)
}

/// The access-log line for one request [L]. `started`: when its head began.
fn log_entry(
    client: &Client,
    req: Option<&RequestHead>,
    request_line: Option<String>,
    outcome: &Outcome,
    started: Instant,
) -> Entry {
    let elapsed = started.elapsed();
    let now = SystemTime::now();
    Entry {
        client: client.ip,
        started: now.checked_sub(elapsed).unwrap_or(now),
        request_line,
        status: outcome.status,
        body_bytes: outcome.body_bytes,
        referer: req.and_then(|r| r.first("referer")).map(<[u8]>::to_vec),
        user_agent: req.and_then(|r| r.first("user-agent")).map(<[u8]>::to_vec),
        elapsed,
        upstream: outcome.upstream.as_ref().map(|a| a.text.clone()),
    }
}

/// The first line of a head we could not parse, as read, if a whole one came.
fn first_line(buf: &[u8]) -> Option<String> {
    let end = buf.windows(2).position(|w| w == b"\r\n")?;
    Some(String::from_utf8_lossy(&buf[..end]).into_owned())
}

/// Hands an upgraded connection pair to the tunnel thread, with the bytes each side
/// sent behind its head [R7]. Its log line is written when it closes.
fn open_tunnel(
    shared: &Shared,
    rt: &Runtime,
    mut client: Client,
    backend: BufStream<TcpStream>,
    entry: Option<Entry>,
    started: Instant,
) {
    let client_early = client.io.data().to_vec();
    client.io.consume(client_early.len());
    client.io.shrink();
    // The tunnel thread polls both sockets itself.
    for (watched, fd) in [
        (client.io.watched, client.io.stream.tcp().as_raw_fd()),
        (backend.watched, backend.stream.as_raw_fd()),
    ] {
        if watched {
            shared.parker.forget(fd);
        }
    }
    let early = (client_early, backend.data().to_vec());
    let idle = rt.timeouts.tunnel_idle();
    shared.tunnels.open(Tunnel::new(
        client,
        backend.stream,
        early,
        idle,
        entry,
        started,
    ));
}

/// [K] `httpPort`: `https://<Host without its port, else the TLS listener's
/// address>[:<TLS port> unless 443]<path and query>`.
fn https_location(req: &RequestHead, tls_addr: SocketAddr) -> String {
    let host = req
        .first("host")
        .and_then(|h| std::str::from_utf8(h).ok())
        .and_then(host_without_port);
    let host = match host {
        Some(host) => host.to_string(),
        None if tls_addr.is_ipv6() => format!("[{}]", tls_addr.ip()),
        None => tls_addr.ip().to_string(),
    };
    let port = match tls_addr.port() {
        443 => String::new(),
        port => format!(":{port}"),
    };
    let target = if req.target.starts_with('/') {
        req.target.as_str()
    } else {
        "/"
    };
    format!("https://{host}{port}{target}")
}

/// The host part of a Host field (`example.com`, `[::1]`), if it is a plain name or
/// address; anything odd falls back to the listening address.
fn host_without_port(host: &str) -> Option<&str> {
    let name = match host.strip_prefix('[') {
        Some(rest) => &host[..rest.find(']')? + 2],
        None => host.split(':').next()?,
    };
    let plain = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-.[]:".contains(&b));
    (plain && !name.is_empty()).then_some(name)
}

/// Parks a waiting connection in the epoll set (`park.rs`). Between requests it may wait
/// `keepAliveMs` for a first byte; a new connection, or one with part of a head,
/// keeps the deadline of that head (`started` + `headerMs`). Returns it when its
/// bytes came meanwhile.
fn park(shared: &Shared, rt: &Runtime, mut client: Client, started: Instant) -> Option<Client> {
    let between_requests = client.head_started.is_none() && client.io.data().is_empty();
    let deadline = if between_requests {
        *client.idle_since.get_or_insert_with(Instant::now) + rt.timeouts.keep_alive()
    } else {
        client.idle_since = None;
        client.head_started = Some(started);
        started + rt.timeouts.header()
    };
    if between_requests && deadline <= Instant::now() {
        return None; // idle past keepAliveMs: what came since brought no request byte
    }
    client.io.shrink();
    shared.park(client, deadline)
}

/// Routes one request and answers it [R1].
/// `allow_keep_alive` is false while shutting down.
fn dispatch(
    rt: &Runtime,
    client: &mut Client,
    req: &RequestHead,
    allow_keep_alive: bool,
) -> Forwarded {
    // RFC 9112 §6.1: an HTTP/1.0 message with Transfer-Encoding is taken to have
    // faulty framing; it is answered and the connection closed.
    let keep_alive = allow_keep_alive
        && match req.minor {
            1 => !req.has_token("connection", "close"),
            _ => {
                req.has_token("connection", "keep-alive")
                    && req.first("transfer-encoding").is_none()
            }
        };
    let body = match request_body_length(req) {
        Ok(body) => body,
        Err(e) => {
            crate::debug!("client {}: {e}", client.ip);
            return Forwarded::Done(client.answer_error(e.status(), false));
        }
    };
    let outcome = if let Some(tls_addr) = client.redirect_to {
        let location = https_location(req, tls_addr);
        client.answer_local(rt, req, body, 301, &[("Location", &location)], keep_alive)
    } else {
        match route::choose(rt.static_prefix.as_deref(), &rt.routes, &req.target) {
            Target::Proxy(i) => {
                return crate::proxy::forward(rt, &rt.routes[i], client, req, body, keep_alive);
            }
            Target::Static(_) if req.method != "GET" && req.method != "HEAD" => {
                client.answer_local(rt, req, body, 405, &[("Allow", "GET, HEAD")], keep_alive)
            }
            Target::Static(rest) => {
                let keep_alive = client.drain_body(rt, req, body) && keep_alive;
                serve_static(rt.static_root.as_deref(), client, req, rest, keep_alive)
            }
            Target::NoRoute => client.answer_local(rt, req, body, 404, &[], keep_alive),
        }
    };
    Forwarded::Done(outcome)
}

/// Answers a GET or HEAD for `rest` on an HTTP/1 connection. `keep_alive`: the
/// request allows the connection to stay open.
fn serve_static(
    root: Option<&Path>,
    client: &mut Client,
    req: &RequestHead,
    rest: &str,
    keep_alive: bool,
) -> Outcome {
    match crate::static_files::answer(root, req, rest) {
        StaticAnswer::Local(status, fields) => {
            let fields: Vec<(&str, &str)> = fields.iter().map(|(n, v)| (*n, v.as_str())).collect();
            client.answer(status, &fields, keep_alive, req.method == "HEAD")
        }
        StaticAnswer::File {
            status,
            fields,
            body,
        } => send_file(client, status, &fields, keep_alive, body),
    }
}

/// Writes the head and, when given, the part of the file.
fn send_file(
    client: &mut Client,
    status: u16,
    fields: &[(&str, String)],
    keep_alive: bool,
    body: Option<FilePart>,
) -> Outcome {
    let fields: Vec<(&str, &str)> = fields.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let head = response_head(status, &fields, keep_alive, client.minor);
    let mut outcome = Outcome {
        status,
        keep_alive,
        body_bytes: 0,
        upstream: None,
        tunnel: None,
    };
    let sent = client.io.put(&head).and_then(|_| match body {
        Some(part) => copy_file(client, part, &mut outcome.body_bytes),
        None => Ok(()),
    });
    if sent.and_then(|_| client.io.flush()).is_err() {
        outcome.keep_alive = false;
    }
    outcome
}

/// Streams part of a file through a fixed buffer. A file that shrank underneath us
/// ends the connection early rather than send a wrong length.
fn copy_file(client: &mut Client, part: FilePart, sent: &mut u64) -> std::io::Result<()> {
    let FilePart {
        mut file,
        first,
        len,
    } = part;
    file.seek(SeekFrom::Start(first))?;
    let mut buf = vec![0u8; 64 * 1024];
    while *sent < len {
        let want = usize::try_from(len - *sent).map_or(buf.len(), |left| left.min(buf.len()));
        let n = file.read(&mut buf[..want])?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        client.io.put(&buf[..n])?;
        *sent += n as u64;
    }
    Ok(())
}

/// What `read_head` found.
enum HeadRead {
    /// A whole head, and how many buffered bytes it took.
    Complete(RequestHead, usize),
    /// Nothing more arrived for a moment: park the connection.
    Waiting,
    /// The client closed, or sent nothing before its deadline: nothing to answer.
    Closed,
}

/// Reads until a whole request head is buffered. It never blocks: when the socket
/// has nothing more to read the connection is to be parked, so a client that is slow
/// to send holds no worker [R8].
fn read_head(rt: &Runtime, client: &mut Client, started: Instant) -> Result<HeadRead, HeadError> {
    // [E]: one deadline for the whole head, not one per read, so a client that drips
    // a byte at a time is still cut at headerMs.
    let deadline = started + rt.timeouts.header();
    let fd = client.io.stream.tcp().as_raw_fd();
    loop {
        if let Some((req, len)) = parse_request_resumed(client.io.data(), &mut client.head_scan)? {
            // A whole head that came in one read can be longer than the limit.
            if len > rt.max_header_bytes {
                return Err(HeadError::TooLarge);
            }
            return Ok(HeadRead::Complete(req, len));
        }
        if client.io.data().len() >= rt.max_header_bytes {
            return Err(HeadError::TooLarge);
        }
        // Bytes already here are read even past the deadline: they came in time and
        // waited in our queue.
        let left = deadline.saturating_duration_since(Instant::now());
        let ready = std::mem::take(&mut client.readable)
            || client.io.stream.has_buffered()
            || crate::sys::wait_readable(fd, Duration::ZERO);
        if !ready {
            if !left.is_zero() {
                return Ok(HeadRead::Waiting);
            }
            return match client.io.data().is_empty() {
                true => Ok(HeadRead::Closed),
                false => Err(HeadError::Timeout),
            };
        }
        // TLS: records that bring no request bytes yet (the handshake) are handled
        // here, one readable socket at a time, so a client that stalls mid-handshake
        // is parked like any other instead of holding this worker.
        if client.io.stream.is_tls() && !client.io.stream.has_buffered() {
            if !matches!(client.io.stream.pump_tls(), Ok(true)) {
                return Ok(HeadRead::Closed);
            }
            if !client.io.stream.has_buffered() {
                continue;
            }
        }
        match client.io.fill_to(rt.max_header_bytes) {
            Ok(0) | Err(_) => return Ok(HeadRead::Closed),
            Ok(_) => {}
        }
    }
}

/// Closes the connection. When the client may still be sending (an answer of ours
/// left its body unread, or bytes are waiting), our side is shut first and its bytes
/// are read off for up to `LINGER`, so that closing with unread data does not turn
/// into a reset that destroys the answer before the client reads it. Meanwhile the
/// connection waits in the epoll set, not on a worker: a client that never closes
/// holds nothing but its socket.
fn close(shared: &Shared, mut client: Client) {
    let _ = client.io.flush();
    let lingering = match crate::sys::peek(client.io.stream.tcp().as_raw_fd()) {
        Peek::Closed => return, // nothing unread, nobody left to read our side
        Peek::Data => true,
        Peek::Quiet => client.linger,
    };
    if lingering || client.io.stream.is_tls() {
        client.io.stream.shutdown_write();
    }
    if lingering && client.io.stream.tcp().set_nonblocking(true).is_ok() {
        linger(shared, client, Instant::now() + LINGER);
    }
}

/// How long a closing connection's bytes are read off, at most.
const LINGER: Duration = Duration::from_secs(1);

/// Reads off what a closing connection sent (without blocking: its socket is
/// non-blocking now) and parks it again until `until`, or lets it close when the
/// client has closed too.
pub fn linger(shared: &Shared, mut client: Client, until: Instant) {
    let mut sink = [0u8; 4096];
    loop {
        for _ in 0..64 {
            match client.io.stream.tcp().read(&mut sink) {
                Ok(0) => return, // the client closed too
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(_) => return, // reset
            }
        }
        // Nothing more for now, or much more: the rest is read on the next turn.
        if shared.is_stopping() || Instant::now() >= until {
            return;
        }
        match shared.parker.park_closing(client, until) {
            Some(more) => client = more,
            None => return,
        }
    }
}
