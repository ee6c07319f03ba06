//! The backend half of an exchange [R2–R7]: pick an authority (round robin, skipping
//! those marked down [R6]), borrow a pooled connection or connect, send the head and
//! stream the body, read the answer (`backend/answer.rs`) and hand it to the front,
//! then return the connection to the pool or close it [R5].
//!
//! Nothing here blocks: each step does what the sockets allow and says what it waits
//! for (`socket`, `deadline`). The body goes to the backend while its answer is read,
//! so a backend that answers early (a 413, a `100 Continue`) is heard at once. Each
//! direction moves only while the other side has room: `body_room` for the request,
//! the front's `room` for the answer.
//!
//! A request that failed on a reused connection before any byte of answer is sent
//! again once on a fresh connection when that is safe; a connect that fails marks
//! the authority down and the next one is tried.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Instant;

use crate::backend::answer::{Answer, AnswerReader};
use crate::backend::authority::Authority;
use crate::backend::dial::{self, Addresses, Lookup};
use crate::backend::fault::{BackendFault, ProxyError, status_for};
use crate::body::{BodyLength, chunk_header};
use crate::config::HttpVersion;
use crate::error::HeadError;
use crate::event::{SocketId, SocketOf, next_serial};
use crate::exchange::{Client, Outcome, Respond};
use crate::head::{Fields, RequestHead, list_items};
use crate::headers::{Forwarding, backend_request_head};
use crate::route::Upstream;
use crate::shared::Runtime;
use crate::sys::Readiness;

/// Most request bytes held for the backend.
const TO_BACKEND: usize = 64 * 1024;

/// The backend connection of this attempt.
enum Link {
    /// Not started, or given up (the next attempt starts it).
    None,
    /// Waiting for the addresses of a name.
    Lookup {
        lookup: Lookup,
        serial: u64,
        until: Instant,
    },
    /// A connect under way; `rest`: the addresses to try after this one.
    Connecting {
        stream: TcpStream,
        serial: u64,
        rest: Vec<SocketAddr>,
        until: Instant,
    },
    Open {
        stream: TcpStream,
        serial: u64,
        /// Borrowed from the pool rather than newly connected [R5].
        reused: bool,
        readable: bool,
        writable: bool,
        /// The backend closed its side: read on to the end.
        hup: bool,
    },
}

pub struct Proxy {
    /// The config the request started with; it finishes on it.
    rt: Arc<Runtime>,
    /// The route's upstreams to try, in turn (indices).
    route: usize,
    candidates: Vec<usize>,
    current: usize,
    forwarding: ForwardingOwned,
    /// Bytes of `to_backend` that are the head for the current authority.
    head_len: usize,
    /// Request bytes (head, then body, framed) not yet written to the backend.
    to_backend: Vec<u8>,
    chunked_out: bool,
    /// The client's body has been read and queued in full.
    body_queued: bool,
    /// Writing to the backend failed: its answer may still come [R3].
    write_failed: Option<io::Error>,
    link: Link,
    answer: AnswerReader,
    /// Idempotent with no body: may be sent again after a stale connection [R5].
    retryable: bool,
    retried: bool,
    upgrade: bool,
    head_request: bool,
    response_started: bool,
    /// Waiting for the client to take the answer (no room): not the backend's wait.
    client_full: bool,
    last_progress: Instant,
    finished: bool,
    /// After a 101: the backend connection and its bytes behind the head.
    tunnel: Option<(SocketOf, Vec<u8>)>,
    /// A refusal answered before anything was sent (an HTTP/1.0 backend and a
    /// chunked body).
    refuse: Option<HeadError>,
}

/// What the backend head is built from, kept for each authority tried.
struct ForwardingOwned {
    preserve_host: bool,
    http10_backend: bool,
    client: Client,
    client_trusted: bool,
    body: BodyLength,
    upgrade: bool,
}

impl Proxy {
    pub fn start(
        rt: &Arc<Runtime>,
        route: usize,
        req: &RequestHead,
        body: BodyLength,
        client: Client,
        now: Instant,
    ) -> Proxy {
        let route_index = route;
        let route = &rt.routes[route];
        let http10_backend = route.http_version == HttpVersion::Http10;
        let upgrade = asks_upgrade(req);
        let body_done = matches!(body, BodyLength::Empty | BodyLength::Exact(0));
        // [R6]: round robin over the authorities not marked down; if every one is,
        // all are tried, so a route never fails without trying.
        let mut candidates = Vec::with_capacity(route.upstreams.len());
        candidates.extend(
            route
                .in_turn()
                .filter(|&i| !route.upstreams[i].pool.is_down(now)),
        );
        if candidates.is_empty() {
            candidates.extend(route.in_turn());
        }
        let mut proxy = Proxy {
            rt: Arc::clone(rt),
            route: route_index,
            candidates,
            current: 0,
            forwarding: ForwardingOwned {
                preserve_host: route.preserve_host,
                http10_backend,
                client,
                client_trusted: rt.trusted_proxies.iter().any(|c| c.contains(client.ip)),
                body,
                upgrade,
            },
            head_len: 0,
            to_backend: Vec::new(),
            chunked_out: body == BodyLength::Chunked,
            body_queued: body_done,
            write_failed: None,
            link: Link::None,
            answer: AnswerReader::new(req.method == "HEAD", upgrade, rt.max_header_bytes),
            // [R5]: only a request that can be sent again unchanged is retried.
            retryable: body_done
                && matches!(
                    req.method.as_str(),
                    "GET" | "HEAD" | "OPTIONS" | "TRACE" | "PUT" | "DELETE"
                ),
            retried: false,
            upgrade,
            head_request: req.method == "HEAD",
            response_started: false,
            client_full: false,
            last_progress: now,
            finished: false,
            tunnel: None,
            // An HTTP/1.0 backend cannot read a chunked body.
            refuse: (http10_backend && body == BodyLength::Chunked)
                .then_some(HeadError::LengthRequired),
        };
        proxy.build_head(req);
        proxy
    }

    fn upstream(&self) -> &Upstream {
        let (route, i) = self.upstream_index();
        &self.rt.routes[route].upstreams[i]
    }

    /// The upstream of this attempt, as (route, upstream) indices for `Outcome`.
    fn upstream_index(&self) -> (usize, usize) {
        let i = self.candidates[self.current.min(self.candidates.len() - 1)];
        (self.route, i)
    }

    fn authority(&self) -> &Arc<Authority> {
        &self.upstream().authority
    }

    /// The backend head for the current authority, queued to be sent first.
    fn build_head(&mut self, req: &RequestHead) {
        let body = std::mem::take(&mut self.to_backend);
        let f = &self.forwarding;
        let forwarding = Forwarding {
            authority: &self.authority().text,
            preserve_host: f.preserve_host,
            http10_backend: f.http10_backend,
            client_ip: f.client.ip,
            client_trusted: f.client_trusted,
            tls: f.client.tls,
            body: f.body,
            upgrade: f.upgrade,
        };
        let mut to_backend = Vec::new();
        backend_request_head(req, &forwarding, &mut to_backend);
        self.head_len = to_backend.len();
        to_backend.extend_from_slice(&body);
        self.to_backend = to_backend;
    }

    pub fn is_finished(&self) -> bool {
        self.finished
    }

    pub fn is_upgraded(&self) -> bool {
        self.tunnel.is_some()
    }

    pub fn take_tunnel(&mut self) -> Option<(SocketOf, Vec<u8>)> {
        self.tunnel.take()
    }

    // ------------------------------------------------------------ the client side

    pub fn body_room(&self) -> usize {
        if self.write_failed.is_some() || self.finished {
            return usize::MAX; // nobody reads it: dropped
        }
        TO_BACKEND.saturating_sub(self.to_backend.len())
    }

    pub fn client_data(&mut self, bytes: &[u8]) {
        if self.write_failed.is_some() || self.finished || bytes.is_empty() {
            return;
        }
        if self.chunked_out {
            chunk_header(bytes.len(), &mut self.to_backend);
            self.to_backend.extend_from_slice(bytes);
            self.to_backend.extend_from_slice(b"\r\n");
        } else {
            self.to_backend.extend_from_slice(bytes);
        }
        self.last_progress = Instant::now();
    }

    pub fn client_end(&mut self, trailers: &[u8]) {
        if self.chunked_out && !self.body_queued {
            self.to_backend.extend_from_slice(b"0\r\n");
            self.to_backend.extend_from_slice(trailers);
            self.to_backend.extend_from_slice(b"\r\n");
        }
        self.body_queued = true;
    }

    /// The client left (`refused`: it sent a body we refuse, answered by the front).
    pub fn client_gone(&mut self, refused: Option<u16>, outcome: &mut Outcome) {
        if outcome.status == 0 {
            outcome.status = match refused {
                Some(status) if !self.response_started => status,
                _ => 499, // nginx's status for a client that left before the answer
            };
        }
        outcome.upstream = Some(self.upstream_index());
        self.link = Link::None;
        self.finished = true;
    }

    // ------------------------------------------------------------ the backend side

    pub fn socket(&self) -> Option<SocketId> {
        match &self.link {
            Link::None => None,
            Link::Lookup { lookup, serial, .. } => Some((lookup.socket.as_raw_fd(), *serial)),
            Link::Connecting { stream, serial, .. } | Link::Open { stream, serial, .. } => {
                Some((stream.as_raw_fd(), *serial))
            }
        }
    }

    pub fn ready(&mut self, readiness: Readiness) {
        if let Link::Open {
            readable,
            writable,
            hup,
            ..
        } = &mut self.link
        {
            *readable |= readiness.readable;
            *writable |= readiness.writable;
            *hup |= readiness.hup;
        }
    }

    /// When waiting ends: the lookup or connect's `connectMs`, or `upstreamMs` after
    /// the last byte moved while it waits on the backend.
    pub fn deadline(&self) -> Option<Instant> {
        match &self.link {
            _ if self.finished => None,
            Link::None => None,
            Link::Lookup { until, .. } | Link::Connecting { until, .. } => Some(*until),
            Link::Open { .. } if self.client_full => None, // the front's wait
            Link::Open { .. } => Some(self.last_progress + self.upstream_ms()),
        }
    }

    fn upstream_ms(&self) -> std::time::Duration {
        self.rt.timeouts.upstream()
    }

    pub fn expire(
        &mut self,
        req: &RequestHead,
        out: &mut dyn Respond,
        outcome: &mut Outcome,
        now: Instant,
    ) {
        if self.deadline().is_none_or(|d| now < d) {
            return;
        }
        let timed_out = io::Error::new(io::ErrorKind::TimedOut, "connectMs passed");
        match std::mem::replace(&mut self.link, Link::None) {
            Link::Lookup { .. } => self.connect_failed(req, timed_out, out, outcome, now),
            Link::Connecting { rest, .. } => {
                self.dial_next(rest, timed_out, req, out, outcome, now);
            }
            Link::Open { reused, .. } => {
                // The client's body stalled, or the backend said nothing.
                let waiting_client = !self.body_queued
                    && self.to_backend.is_empty()
                    && !req.has_token("expect", "100-continue");
                let err = match waiting_client {
                    true => ProxyError::ClientGone(io::ErrorKind::TimedOut.into()),
                    false => self.fault(BackendFault::Timeout, reused),
                };
                self.fail(req, err, out, outcome);
            }
            Link::None => {}
        }
    }

    /// Does what the sockets allow; whether anything moved.
    pub fn run(
        &mut self,
        req: &RequestHead,
        out: &mut dyn Respond,
        outcome: &mut Outcome,
        now: Instant,
    ) -> bool {
        if self.finished {
            return false;
        }
        if let Some(e) = self.refuse.take() {
            crate::debug!("client {}: {e}", self.forwarding.client.ip);
            out.local(e.status(), &[]);
            outcome.status = e.status();
            self.finished = true;
            return true;
        }
        match &mut self.link {
            Link::None => {
                self.begin(req, out, outcome, now);
                true
            }
            Link::Lookup { lookup, .. } => match lookup.answer() {
                None => false,
                Some(Ok(addrs)) => {
                    self.dial(addrs, req, out, outcome, now);
                    true
                }
                Some(Err(e)) => {
                    self.link = Link::None;
                    self.connect_failed(req, e, out, outcome, now);
                    true
                }
            },
            Link::Connecting { stream, .. } => match dial::connected(stream) {
                Ok(false) => false,
                Ok(true) => {
                    let Link::Connecting { stream, serial, .. } =
                        std::mem::replace(&mut self.link, Link::None)
                    else {
                        return false;
                    };
                    crate::debug!("backend {}: new connection", self.authority());
                    self.open(stream, serial, false, now);
                    true
                }
                Err(e) => {
                    let Link::Connecting { rest, .. } =
                        std::mem::replace(&mut self.link, Link::None)
                    else {
                        return false;
                    };
                    self.dial_next(rest, e, req, out, outcome, now);
                    true
                }
            },
            Link::Open { .. } => self.exchange_bytes(req, out, outcome, now),
        }
    }

    /// Borrows a pooled connection, or starts connecting.
    fn begin(
        &mut self,
        req: &RequestHead,
        out: &mut dyn Respond,
        outcome: &mut Outcome,
        now: Instant,
    ) {
        let authority = Arc::clone(self.authority());
        if !self.retried
            && let Some((stream, serial)) =
                (self.upstream().pool).checkout(now, self.forwarding.client.home)
        {
            crate::debug!("backend {authority}: reused connection");
            self.open(stream, serial, true, now);
            return;
        }
        match dial::addresses(&authority) {
            Ok(Addresses::Ready(addrs)) => self.dial(addrs, req, out, outcome, now),
            Ok(Addresses::Pending(lookup)) => {
                self.link = Link::Lookup {
                    lookup,
                    serial: next_serial(),
                    until: now + self.rt.timeouts.connect(),
                };
            }
            Err(e) => self.connect_failed(req, e, out, outcome, now),
        }
    }

    /// A reused connection was found quiet (`Pool::checkout`): it is read when its
    /// loop says bytes came.
    fn open(&mut self, stream: TcpStream, serial: u64, reused: bool, now: Instant) {
        self.link = Link::Open {
            stream,
            serial,
            reused,
            readable: !reused,
            writable: true,
            hup: false,
        };
        self.last_progress = now;
    }

    /// Connects to the first of `addrs`, the rest kept for if it fails.
    fn dial(
        &mut self,
        mut addrs: Vec<SocketAddr>,
        req: &RequestHead,
        out: &mut dyn Respond,
        outcome: &mut Outcome,
        now: Instant,
    ) {
        let no_address = || io::Error::new(io::ErrorKind::NotFound, "no address found");
        let mut last = no_address();
        addrs.reverse(); // taken from the end, in the order given
        while let Some(addr) = addrs.pop() {
            match dial::connect(addr) {
                Ok(stream) => {
                    self.link = Link::Connecting {
                        stream,
                        serial: next_serial(),
                        rest: addrs,
                        until: now + self.rt.timeouts.connect(),
                    };
                    return;
                }
                Err(e) => last = e,
            }
        }
        self.connect_failed(req, last, out, outcome, now);
    }

    /// The connect to one address failed: the next address, or the next authority.
    fn dial_next(
        &mut self,
        mut rest: Vec<SocketAddr>,
        err: io::Error,
        req: &RequestHead,
        out: &mut dyn Respond,
        outcome: &mut Outcome,
        now: Instant,
    ) {
        if rest.is_empty() {
            return self.connect_failed(req, err, out, outcome, now);
        }
        rest.reverse(); // `dial` takes them in order again
        self.dial(rest, req, out, outcome, now);
    }

    /// [R6]: an authority that cannot be connected to is marked down and the next
    /// is tried; when none is left, the client gets a 502.
    fn connect_failed(
        &mut self,
        req: &RequestHead,
        e: io::Error,
        out: &mut dyn Respond,
        outcome: &mut Outcome,
        now: Instant,
    ) {
        let err = self.fault(BackendFault::Connect(e), false);
        crate::debug!("{err}; not tried again for 10 s");
        self.upstream().pool.mark_down(now);
        self.link = Link::None;
        if self.current + 1 < self.candidates.len() {
            self.current += 1;
            self.build_head_again(req);
            self.last_progress = now;
            return;
        }
        let upstreams = &self.rt.routes[self.route].upstreams;
        let tried: Vec<&str> = (self.candidates.iter())
            .map(|&i| upstreams[i].authority.text.as_str())
            .collect();
        crate::debug!(
            "{} {}: no backend could be reached (tried {})",
            req.method,
            req.target,
            tried.join(", ")
        );
        self.fail(req, err, out, outcome);
    }

    fn build_head_again(&mut self, req: &RequestHead) {
        self.to_backend
            .drain(..self.head_len.min(self.to_backend.len()));
        self.build_head(req);
    }

    /// Writes what the backend takes, reads what it sent, hands the answer on.
    fn exchange_bytes(
        &mut self,
        req: &RequestHead,
        out: &mut dyn Respond,
        outcome: &mut Outcome,
        now: Instant,
    ) -> bool {
        let mut moved = self.write_backend(now);
        match self.read_backend(now) {
            Ok(read) => moved |= read,
            Err(e) => {
                let err = self.fault(BackendFault::Read(e), self.answer_seen());
                self.fail_or_retry(req, err, out, outcome, now);
                return true;
            }
        }
        moved | self.relay_answer(req, out, outcome, now)
    }

    fn write_backend(&mut self, now: Instant) -> bool {
        let Link::Open {
            stream, writable, ..
        } = &mut self.link
        else {
            return false;
        };
        let mut moved = false;
        while *writable && !self.to_backend.is_empty() && self.write_failed.is_none() {
            match stream.write(&self.to_backend) {
                Ok(n) => {
                    self.to_backend.drain(..n);
                    moved = true;
                    self.last_progress = now;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => *writable = false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // [R3]: a backend that answered before reading the whole body
                    // (a 413) and closed: its answer is read, not a 502.
                    self.to_backend = Vec::new();
                    self.write_failed = Some(e);
                    moved = true;
                }
            }
        }
        moved
    }

    fn read_backend(&mut self, now: Instant) -> io::Result<bool> {
        let Link::Open {
            stream,
            readable,
            hup,
            ..
        } = &mut self.link
        else {
            return Ok(false);
        };
        let mut moved = false;
        while *readable && self.answer.wants_read() {
            let space = self.answer.input_space();
            let room = space.len();
            match stream.read(space) {
                Ok(0) => {
                    self.answer.received_eof();
                    moved = true;
                }
                Ok(n) => {
                    self.answer.received(n);
                    self.last_progress = now;
                    moved = true;
                    if n < room && !*hup {
                        *readable = false;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => *readable = false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(moved)
    }

    fn answer_seen(&self) -> bool {
        self.response_started || self.answer.interim_count() > 0
    }

    /// Hands on what the answer reader has, as far as the client side has room.
    fn relay_answer(
        &mut self,
        req: &RequestHead,
        out: &mut dyn Respond,
        outcome: &mut Outcome,
        now: Instant,
    ) -> bool {
        let mut moved = false;
        self.client_full = false;
        loop {
            let room = out.room();
            match self.answer.next(room) {
                Answer::NeedData => return moved,
                Answer::Full => {
                    self.client_full = true;
                    return moved;
                }
                Answer::Interim(head) => out.interim(&head),
                Answer::Head(head, _) if head.status == 101 => {
                    out.head(&head, BodyLength::Empty, false);
                    outcome.status = 101;
                    outcome.upstream = Some(self.upstream_index());
                    if let Link::Open { stream, serial, .. } =
                        std::mem::replace(&mut self.link, Link::None)
                    {
                        self.tunnel = Some(((stream, serial), self.answer.take_input()));
                    }
                    self.finished = true;
                    return true;
                }
                Answer::Head(head, length) => {
                    // An upgrade the backend declined: the client may already speak
                    // the new protocol, so its connection closes after this [R7].
                    out.head(&head, length, !self.upgrade);
                    self.response_started = true;
                    outcome.status = head.status;
                    outcome.upstream = Some(self.upstream_index());
                }
                Answer::Data(bytes) => {
                    outcome.body_bytes += bytes.len() as u64;
                    out.data(bytes);
                }
                Answer::End(trailers) => {
                    let trailers = trailers.to_vec();
                    self.end(now);
                    out.end(&trailers);
                    return true;
                }
                Answer::Failed { why, byte_seen } => {
                    let fault = match why {
                        "closed before a response" => match self.write_failed.take() {
                            Some(e) if !byte_seen => BackendFault::Write(e),
                            _ => BackendFault::Read(io::Error::new(
                                io::ErrorKind::UnexpectedEof,
                                why,
                            )),
                        },
                        why => BackendFault::Invalid(why),
                    };
                    let err = self.fault(fault, byte_seen || self.answer_seen());
                    self.fail_or_retry(req, err, out, outcome, now);
                    return true;
                }
            }
            moved = true;
        }
    }

    /// The answer is complete: the connection goes back to the pool when the
    /// backend allows it and the whole request was sent; the end of the answer goes
    /// out after, so the client's next request finds it there.
    fn end(&mut self, now: Instant) {
        self.finished = true;
        let sent_all =
            self.body_queued && self.to_backend.is_empty() && self.write_failed.is_none();
        let link = std::mem::replace(&mut self.link, Link::None);
        if let (Some(hint), true, Link::Open { stream, serial, .. }) =
            (self.answer.reusable(), sent_all, link)
        {
            crate::debug!(
                "backend {}: connection returned to the pool",
                self.authority()
            );
            self.upstream()
                .pool
                .checkin((stream, serial), self.forwarding.client.home, hint, now);
        }
    }

    /// A fault of the current attempt, with what the retry rule needs to know.
    fn fault(&self, fault: BackendFault, response_byte_seen: bool) -> ProxyError {
        let reused = matches!(self.link, Link::Open { reused: true, .. });
        ProxyError::Backend {
            authority: Arc::clone(self.authority()),
            fault,
            reused,
            response_byte_seen,
        }
    }

    /// The retry rule [R5]: a stale connection shows as a reset or an early close,
    /// not as silence: a timeout is not retried, or a silent backend would cost
    /// 2 × upstreamMs.
    fn may_retry(&self, err: &ProxyError) -> bool {
        match err {
            ProxyError::Backend {
                reused: true,
                response_byte_seen: false,
                fault,
                ..
            } => {
                self.retryable
                    && !self.retried
                    && self.answer.interim_count() == 0
                    && !matches!(fault, BackendFault::Timeout)
            }
            _ => false,
        }
    }

    fn fail_or_retry(
        &mut self,
        req: &RequestHead,
        err: ProxyError,
        out: &mut dyn Respond,
        outcome: &mut Outcome,
        now: Instant,
    ) {
        if !self.may_retry(&err) {
            return self.fail(req, err, out, outcome);
        }
        crate::debug!(
            "backend {}: reused connection failed before answering; retrying on a fresh one",
            self.authority()
        );
        self.retried = true;
        self.link = Link::None;
        self.write_failed = None;
        self.to_backend.clear(); // a retried request has no body
        self.build_head(req);
        self.answer = AnswerReader::new(self.head_request, self.upgrade, self.rt.max_header_bytes);
        self.begin(req, out, outcome, now);
    }

    /// Turns an error into the answer the client gets, if it can still get one.
    fn fail(
        &mut self,
        req: &RequestHead,
        err: ProxyError,
        out: &mut dyn Respond,
        outcome: &mut Outcome,
    ) {
        match &err {
            ProxyError::ClientGone(_) => crate::debug!("{err}"),
            _ => crate::warn!("{} {}: {err}", req.method, req.target),
        }
        outcome.upstream = Some(self.upstream_index());
        match status_for(&err) {
            Some(status) if !self.response_started => {
                out.local(status, &[]);
                outcome.status = status;
                if !self.head_request {
                    outcome.body_bytes = crate::headers::local_body(status).len() as u64;
                }
            }
            // Nothing more can be said: the status already sent, or nginx's 499 for
            // a client that went away before any answer.
            _ => {
                if !self.response_started {
                    outcome.status = 499;
                }
                out.abort();
            }
        }
        self.link = Link::None;
        self.finished = true;
    }
}

/// [R7]: an upgrade is asked by an HTTP/1.1 request whose `Connection` holds the token
/// `upgrade` and whose `Upgrade` field does not name h2c.
fn asks_upgrade(req: &RequestHead) -> bool {
    req.minor == 1
        && req.has_token("connection", "upgrade")
        && req.first("upgrade").is_some()
        && !req
            .values("upgrade")
            .flat_map(list_items)
            .any(|p| p.eq_ignore_ascii_case(b"h2c"))
}
