//! One exchange with a backend [R2–R5]: borrow a connection, send the head, stream the
//! request body, read the response head, relay it and its body, then return the
//! connection to the pool or close it. A request that failed on a reused connection
//! before any response byte is retried once on a fresh one when that is safe.
//!
//! The request body is sent in full before the response is read (except with
//! `Expect: 100-continue`, where the backend may answer first). A route's authorities
//! are tried in turn, moving on when one cannot be connected to [R6]. A 101 to an
//! upgrade hands both connections to `tunnel.rs` [R7].
//!
//! While the backend thinks, no worker waits: once the request is sent, `forward`
//! returns a `Pending` exchange that waits in the epoll set (`park.rs`) on the backend
//! socket, and `resume` picks it up when the answer starts to arrive.

use std::io;
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Instant;

use crate::backend::authority::Authority;
use crate::backend::fault::{BackendFault, ProxyError, status_for};
use crate::body::{BodyLength, ChunkedDecoder, response_body_length};
use crate::config::HttpVersion;
use crate::conn::{Client, Outcome};
use crate::error::HeadError;
use crate::head::{Fields, RequestHead, ResponseHead, keep_alive_hint, list_items, parse_response};
use crate::headers::{ClientFraming, Forwarding, backend_request_head, client_response_head};
use crate::io::BufStream;
use crate::relay::{RelayError, relay_body_with};
use crate::route::Route;
use crate::server::Runtime;

/// The request being forwarded and what we know about it (the request itself is
/// passed alongside, since a `Pending` exchange outlives the worker's borrow).
struct Exchange {
    body: BodyLength,
    /// The client's HTTP minor version.
    minor: u8,
    /// A HEAD request: the response has no body.
    head_request: bool,
    /// The client wants its connection kept after this exchange.
    keep_alive: bool,
    /// The client asks for a protocol upgrade [R7].
    upgrade: bool,
    /// Idempotent with no body: may be sent again after a stale connection [R5].
    retryable: bool,
    /// The head to send to the backend, built once for every attempt.
    backend_head: Vec<u8>,
    /// The request body has been read from the client in full.
    body_done: bool,
    /// Response bytes have been written to the client: errors can only close now.
    response_started: bool,
    /// The status of the response head sent, for the access log.
    status_sent: Option<u16>,
    /// Interim heads (100 Continue, 103) received so far.
    interim: usize,
}

/// What `forward` did.
pub enum Forwarded {
    /// The exchange is over.
    Done(Outcome),
    /// The request is sent and the backend has not answered yet: call `resume` when
    /// `backend_fd` is readable, or at `deadline` (`upstreamMs`).
    Waiting(Pending),
}

/// An exchange waiting for its backend's answer.
pub struct Pending {
    x: Exchange,
    be: Backend,
    /// This attempt is the retry already.
    fresh: bool,
    pub deadline: Instant,
}

impl Pending {
    pub fn backend_fd(&self) -> std::os::fd::RawFd {
        self.be.io.stream.as_raw_fd()
    }

    /// Whether the backend socket is registered in the parker's epoll set.
    pub fn watched(&mut self) -> &mut bool {
        &mut self.be.io.watched
    }
}

/// Forwards `req` to a backend of `route` and relays the answer to `client`, or
/// leaves the exchange waiting for the backend.
pub fn forward(
    rt: &Runtime,
    route: &Route,
    client: &mut Client,
    req: &RequestHead,
    body: BodyLength,
    keep_alive: bool,
) -> Forwarded {
    let http10_backend = route.http_version == HttpVersion::Http10;
    if http10_backend && body == BodyLength::Chunked {
        let err = HeadError::LengthRequired; // an HTTP/1.0 backend cannot read chunked
        crate::debug!("client {}: {err}", client.ip);
        return Forwarded::Done(client.answer_error(err.status(), false));
    }
    let body_done = matches!(body, BodyLength::Empty | BodyLength::Exact(0));
    let mut x = Exchange {
        body,
        minor: req.minor,
        head_request: req.method == "HEAD",
        keep_alive,
        upgrade: asks_upgrade(req),
        // [R5]: only a request that can be sent again unchanged is retried.
        retryable: body_done
            && matches!(
                req.method.as_str(),
                "GET" | "HEAD" | "OPTIONS" | "TRACE" | "PUT" | "DELETE"
            ),
        backend_head: Vec::with_capacity(1024),
        body_done,
        response_started: false,
        status_sent: None,
        interim: 0,
    };
    let forwarding = Forwarding {
        authority: "",
        preserve_host: route.preserve_host,
        http10_backend,
        client_ip: client.ip,
        client_trusted: rt.trusted_proxies.iter().any(|c| c.contains(client.ip)),
        tls: client.tls,
        body,
        upgrade: x.upgrade,
    };
    // [R6]: round robin over the authorities not marked down; if every one is, all
    // are tried, so a route never fails without trying.
    let now = Instant::now();
    let (up, down): (Vec<&Arc<Authority>>, Vec<&Arc<Authority>>) =
        route.in_turn().partition(|a| !rt.pools.get(a).is_down(now));
    let candidates = if up.is_empty() { down } else { up };
    let mut refused = Vec::new();
    for authority in candidates {
        x.backend_head.clear();
        let forwarding = Forwarding {
            authority: &authority.text,
            ..forwarding
        };
        backend_request_head(req, &forwarding, &mut x.backend_head);
        match try_authority(rt, authority, client, req, &mut x, false) {
            Ok(Sent::Done(outcome)) => return Forwarded::Done(outcome),
            Ok(Sent::Waiting(be)) => {
                let deadline = Instant::now() + rt.timeouts.upstream();
                return Forwarded::Waiting(Pending {
                    x,
                    be,
                    fresh: false,
                    deadline,
                });
            }
            Err(
                err @ ProxyError::Backend {
                    fault: BackendFault::Connect(_),
                    ..
                },
            ) => {
                crate::debug!("{err}; not tried again for 10 s");
                rt.pools.get(authority).mark_down(Instant::now());
                refused.push((authority, err));
            }
            Err(err) => return Forwarded::Done(fail(client, req, &x, err, authority)),
        }
    }
    let tried: Vec<&str> = refused.iter().map(|(a, _)| a.text.as_str()).collect();
    crate::debug!(
        "{} {}: no backend could be reached (tried {})",
        req.method,
        req.target,
        tried.join(", ")
    );
    // A route has at least one authority (config), so at least one was refused here.
    let (authority, err) = refused.pop().expect("at least one authority was tried");
    Forwarded::Done(fail(client, req, &x, err, authority))
}

/// Finishes an exchange `forward` left waiting: reads the answer and relays it.
/// `timed_out`: the backend said nothing within `upstreamMs`.
pub fn resume(
    rt: &Runtime,
    client: &mut Client,
    req: &RequestHead,
    pending: Pending,
    timed_out: bool,
) -> Outcome {
    let Pending {
        mut x, be, fresh, ..
    } = pending;
    let authority = Arc::clone(&be.authority);
    let result = match timed_out {
        true => Err(be.fault(BackendFault::Timeout, false)),
        false => receive(rt, client, &mut x, be, None),
    };
    let result = match result {
        Err(e) if may_retry(&e, &x, fresh) => {
            crate::debug!(
                "backend {authority}: reused connection failed before answering; retrying on a fresh one"
            );
            try_authority(rt, &authority, client, req, &mut x, true).map(|sent| match sent {
                Sent::Done(outcome) => outcome,
                Sent::Waiting(_) => unreachable!("a retry is finished synchronously"),
            })
        }
        result => result,
    };
    result.unwrap_or_else(|err| fail(client, req, &x, err, &authority))
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

/// What `try_authority` got to.
enum Sent {
    Done(Outcome),
    /// Sent; waiting for the backend's first byte.
    Waiting(Backend),
}

/// Forwards to one authority, retrying once on a fresh connection when a reused one
/// failed before any response byte and the request can be sent again [R5]. `fresh`:
/// start with a new connection, and finish here (this is the retry).
fn try_authority(
    rt: &Runtime,
    authority: &Arc<Authority>,
    client: &mut Client,
    req: &RequestHead,
    x: &mut Exchange,
    mut fresh: bool,
) -> Result<Sent, ProxyError> {
    loop {
        let result = match send(rt, authority, client, req, x, fresh) {
            Ok((be, None)) if !fresh && be.io.data().is_empty() => return Ok(Sent::Waiting(be)),
            Ok((be, early)) => receive(rt, client, x, be, early),
            Err(e) => Err(e),
        };
        match result {
            Err(e) if may_retry(&e, x, fresh) => {
                crate::debug!(
                    "backend {authority}: reused connection failed before answering; retrying on a fresh one"
                );
                fresh = true;
            }
            result => return result.map(Sent::Done),
        }
    }
}

/// The retry rule [R5]. A stale connection shows as a reset or an early close, not
/// as silence: a timeout is not retried, or a silent backend would cost 2 × upstreamMs.
fn may_retry(err: &ProxyError, x: &Exchange, fresh: bool) -> bool {
    match err {
        ProxyError::Backend {
            reused: true,
            response_byte_seen: false,
            fault,
            ..
        } => x.retryable && !fresh && x.interim == 0 && !matches!(fault, BackendFault::Timeout),
        _ => false,
    }
}

/// Turns an error into the answer the client gets, if it can still get one.
fn fail(
    client: &mut Client,
    req: &RequestHead,
    x: &Exchange,
    err: ProxyError,
    authority: &Arc<Authority>,
) -> Outcome {
    match &err {
        ProxyError::ClientGone(_) => crate::debug!("{err}"),
        _ => crate::warn!("{} {}: {err}", req.method, req.target),
    }
    let upstream = Some(Arc::clone(authority));
    match status_for(&err) {
        Some(status) if !x.response_started => {
            let keep = x.keep_alive && x.body_done && !matches!(err, ProxyError::Head(_));
            Outcome {
                upstream,
                ..client.answer_error(status, keep)
            }
        }
        // Nothing more can be said: the status already sent, or nginx's 499 for a
        // client that went away before any answer.
        _ => Outcome {
            status: x.status_sent.unwrap_or(499),
            keep_alive: false,
            body_bytes: 0,
            upstream,
            tunnel: None,
        },
    }
}

/// The backend side of one attempt.
struct Backend {
    authority: Arc<Authority>,
    io: BufStream<TcpStream>,
    /// Borrowed from the pool rather than newly connected [R5].
    reused: bool,
    /// The largest response head accepted (`maxHeaderBytes`).
    max_head: usize,
}

impl Backend {
    /// A fault of this backend, with what the retry rule needs to know.
    fn fault(&self, fault: BackendFault, response_byte_seen: bool) -> ProxyError {
        ProxyError::Backend {
            authority: self.authority.clone(),
            fault,
            reused: self.reused,
            response_byte_seen,
        }
    }

    /// Reads one response head (left in the buffer; the length says how much it took).
    fn read_head(&mut self) -> Result<(ResponseHead, usize), ProxyError> {
        loop {
            let seen = !self.io.data().is_empty();
            match parse_response(self.io.data()) {
                Ok(Some(parsed)) => return Ok(parsed),
                Ok(None) if self.io.data().len() >= self.max_head => {
                    return Err(self.fault(BackendFault::Invalid("response head too large"), true));
                }
                Ok(None) => {}
                Err(why) => return Err(self.fault(BackendFault::Invalid(why), true)),
            }
            match self.io.fill_to(self.max_head) {
                Ok(0) => {
                    let eof =
                        io::Error::new(io::ErrorKind::UnexpectedEof, "closed before a response");
                    return Err(self.fault(BackendFault::Read(eof), seen));
                }
                Ok(_) => {}
                Err(e) => return Err(self.fault(read_fault(e), seen)),
            }
        }
    }
}

/// An I/O error reading from a backend: a timeout is a 504, anything else a 502.
fn read_fault(e: io::Error) -> BackendFault {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => BackendFault::Timeout,
        _ => BackendFault::Read(e),
    }
}

/// One try, first half: borrow or connect, send the head and the body. Returns the
/// backend, and its final answer if it came before the body (`Expect`).
fn send(
    rt: &Runtime,
    authority: &Arc<Authority>,
    client: &mut Client,
    req: &RequestHead,
    x: &mut Exchange,
    fresh: bool,
) -> Result<(Backend, Option<(ResponseHead, usize)>), ProxyError> {
    let pooled = if fresh {
        None
    } else {
        rt.pools.get(authority).checkout(Instant::now())
    };
    let reused = pooled.is_some();
    let io = match pooled {
        Some(io) => io,
        None => BufStream::new(connect(rt, authority)?),
    };
    crate::debug!(
        "backend {authority}: {} connection",
        if reused { "reused" } else { "new" }
    );
    let mut be = Backend {
        authority: Arc::clone(authority),
        io,
        reused,
        max_head: rt.max_header_bytes,
    };
    let sent = be.io.put(&x.backend_head).and_then(|_| be.io.flush());
    sent.map_err(|e| be.fault(BackendFault::Write(e), false))?;
    let early = send_body(rt, client, req, &mut be, x)?;
    Ok((be, early))
}

/// One try, second half: read the answer (unless it came `early`), relay it, and
/// return the connection to the pool or close it.
fn receive(
    rt: &Runtime,
    client: &mut Client,
    x: &mut Exchange,
    mut be: Backend,
    early: Option<(ResponseHead, usize)>,
) -> Result<Outcome, ProxyError> {
    let (res, head_len) = match early {
        Some(parsed) => parsed,
        None => read_final_head(client, &mut be, x)?,
    };
    be.io.consume(head_len);
    if res.status == 101 {
        return switch_protocols(client, x, be, &res);
    }
    let length = response_body_length(&res, x.head_request)
        .map_err(|why| be.fault(BackendFault::Invalid(why), true))?;

    // Framing for the client [R3]: Content-Length kept; chunked (or close-delimited,
    // re-chunked) for HTTP/1.1 clients; close-delimited for HTTP/1.0 clients.
    // An upgrade the backend declined: the client may already speak the new
    // protocol, so its connection closes after this answer [R7].
    let mut keep_alive = x.keep_alive && x.body_done && !x.upgrade;
    let framing = match length {
        BodyLength::Empty => ClientFraming::NoBody,
        BodyLength::Exact(n) => ClientFraming::Length(n),
        BodyLength::Chunked | BodyLength::UntilClose if x.minor == 1 => ClientFraming::Chunked,
        BodyLength::Chunked | BodyLength::UntilClose => {
            keep_alive = false;
            ClientFraming::Close
        }
    };
    let mut head = Vec::with_capacity(512);
    client_response_head(&res, framing, keep_alive, x.minor, &mut head);
    client.io.put(&head).map_err(ProxyError::ClientGone)?;
    x.response_started = true;
    x.status_sent = Some(res.status);
    let chunked_out = framing == ClientFraming::Chunked;
    let named: Vec<&[u8]> = res.values("connection").flat_map(list_items).collect();
    let dec = ChunkedDecoder::dropping(&named);
    let relayed = relay_body_with(&mut be.io, &mut client.io, length, chunked_out, dec);
    let body_bytes = relayed.map_err(|e| match e {
        RelayError::Write(e) => ProxyError::ClientGone(e),
        RelayError::Read(e) => be.fault(read_fault(e), true),
        RelayError::Truncated => be.fault(
            BackendFault::Invalid("closed before the end of the body"),
            true,
        ),
        RelayError::Chunk(c) => be.fault(BackendFault::Invalid(c.0), true),
    })?;

    if backend_keeps_alive(&res, length) && x.body_done && be.io.data().is_empty() {
        let hint = res.first("keep-alive").and_then(keep_alive_hint);
        crate::debug!("backend {}: connection returned to the pool", be.authority);
        rt.pools
            .get(&be.authority)
            .checkin(be.io, hint, Instant::now());
    }
    // The end of the answer goes out once the connection is back in the pool, so
    // the client's next request finds it there.
    let flushed = client.io.flush().is_ok();
    Ok(Outcome {
        status: res.status,
        keep_alive: keep_alive && flushed,
        body_bytes,
        upstream: Some(be.authority),
        tunnel: None,
    })
}

/// The backend agreed to an upgrade: relay its 101 head and hand its connection, with
/// any bytes it sent behind the head, to the caller for tunnelling. It never goes
/// back to the pool.
fn switch_protocols(
    client: &mut Client,
    x: &mut Exchange,
    be: Backend,
    res: &ResponseHead,
) -> Result<Outcome, ProxyError> {
    let mut head = Vec::with_capacity(512);
    client_response_head(res, ClientFraming::NoBody, false, 1, &mut head);
    x.response_started = true;
    client
        .io
        .put(&head)
        .and_then(|_| client.io.flush())
        .map_err(ProxyError::ClientGone)?;
    Ok(Outcome {
        status: 101,
        keep_alive: false,
        body_bytes: 0,
        upstream: Some(be.authority),
        tunnel: Some(be.io),
    })
}

/// A new connection, with `upstreamMs` as the limit on every read and write.
fn connect(rt: &Runtime, authority: &Arc<Authority>) -> Result<TcpStream, ProxyError> {
    let timeout = Some(rt.timeouts.upstream());
    let connected = authority.connect(rt.timeouts.connect()).and_then(|stream| {
        stream.set_read_timeout(timeout)?;
        stream.set_write_timeout(timeout)?;
        Ok(stream)
    });
    connected.map_err(|e| ProxyError::Backend {
        authority: Arc::clone(authority),
        fault: BackendFault::Connect(e),
        reused: false,
        response_byte_seen: false,
    })
}

/// Whether the backend lets us reuse the connection after this response [R5].
fn backend_keeps_alive(res: &ResponseHead, length: BodyLength) -> bool {
    let persistent = match res.minor {
        1 => !res.has_token("connection", "close"),
        _ => res.has_token("connection", "keep-alive"),
    };
    persistent && length != BodyLength::UntilClose
}

/// Streams the request body to the backend. With `Expect: 100-continue` the backend
/// may answer before the body: if its final answer comes first, it is returned and
/// the body is not sent (the client connection then closes).
fn send_body(
    rt: &Runtime,
    client: &mut Client,
    req: &RequestHead,
    be: &mut Backend,
    x: &mut Exchange,
) -> Result<Option<(ResponseHead, usize)>, ProxyError> {
    if x.body_done {
        return Ok(None);
    }
    let client_sent = !client.io.data().is_empty() || client.io.stream.has_buffered();
    if req.has_token("expect", "100-continue") && !client_sent {
        let (c, b) = (client.io.stream.tcp().as_raw_fd(), be.io.stream.as_raw_fd());
        // Until the backend's 100 (or the client's body) comes: other interim heads
        // (a 103) are relayed on the way; a final answer comes before the body.
        loop {
            let backend_spoke = !be.io.data().is_empty()
                || crate::sys::wait_either(b, c, rt.timeouts.upstream()) == Some(b);
            if !backend_spoke {
                break;
            }
            let (res, len) = be.read_head()?;
            if res.status >= 200 || (res.status == 101 && x.upgrade) {
                return Ok(Some((res, len))); // the body stays unread
            }
            if res.status == 101 {
                let why = "101 to a request that asked no upgrade";
                return Err(be.fault(BackendFault::Invalid(why), true));
            }
            be.io.consume(len);
            relay_interim(client, be, x, &res)?;
            if res.status == 100 {
                break;
            }
        }
    }
    client
        .io
        .stream
        .tcp()
        .set_read_timeout(Some(rt.timeouts.upstream()))
        .map_err(ProxyError::ClientGone)?;
    let chunked_out = x.body == BodyLength::Chunked;
    let named: Vec<&[u8]> = req.values("connection").flat_map(list_items).collect();
    let dec = ChunkedDecoder::dropping(&named);
    let relayed = relay_body_with(&mut client.io, &mut be.io, x.body, chunked_out, dec)
        .and_then(|moved| be.io.flush().map(|_| moved).map_err(RelayError::Write));
    match relayed {
        Ok(_) => {
            x.body_done = true;
            Ok(None)
        }
        Err(RelayError::Read(e)) => Err(ProxyError::ClientGone(e)),
        Err(RelayError::Truncated) => {
            Err(ProxyError::ClientGone(io::ErrorKind::UnexpectedEof.into()))
        }
        Err(RelayError::Chunk(_)) => {
            Err(ProxyError::Head(HeadError::Malformed("bad chunked body")))
        }
        // [R3]: a backend that answered before reading the whole body (a 413, a 401)
        // and closed makes our writes fail; its answer is relayed, not a 502.
        Err(RelayError::Write(e)) => match read_final_head(client, be, x) {
            Ok(answer) => Ok(Some(answer)),
            Err(_) => Err(be.fault(BackendFault::Write(e), false)),
        },
    }
}

/// Reads response heads until a final one, relaying interim (1xx) heads on the way.
fn read_final_head(
    client: &mut Client,
    be: &mut Backend,
    x: &mut Exchange,
) -> Result<(ResponseHead, usize), ProxyError> {
    loop {
        let (res, len) = be.read_head()?;
        if res.status >= 200 || (res.status == 101 && x.upgrade) {
            return Ok((res, len));
        }
        if res.status == 101 {
            let why = "101 to a request that asked no upgrade";
            return Err(be.fault(BackendFault::Invalid(why), true));
        }
        be.io.consume(len);
        relay_interim(client, be, x, &res)?;
    }
}

/// Most interim heads a backend may send before its final one [R3]: a backend that
/// sends a 103 every few seconds must not hold an exchange without limit.
const MAX_INTERIM: usize = 16;

/// Passes a 1xx head to HTTP/1.1 clients; HTTP/1.0 clients never see one [R3].
/// One past `MAX_INTERIM` is a fault of the backend.
fn relay_interim(
    client: &mut Client,
    be: &Backend,
    x: &mut Exchange,
    res: &ResponseHead,
) -> Result<(), ProxyError> {
    x.interim += 1;
    if x.interim > MAX_INTERIM {
        let why = "more than 16 interim responses";
        return Err(be.fault(BackendFault::Invalid(why), true));
    }
    if x.minor == 0 {
        return Ok(());
    }
    let mut head = Vec::with_capacity(256);
    client_response_head(res, ClientFraming::NoBody, true, 1, &mut head);
    client
        .io
        .put(&head)
        .and_then(|_| client.io.flush())
        .map_err(ProxyError::ClientGone)
}
