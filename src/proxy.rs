//! One exchange with a backend [R2–R5]: borrow a connection, send the head, stream the
//! request body, read the response head, relay it and its body, then return the
//! connection to the pool or close it. A request that failed on a reused connection
//! before any response byte is retried once on a fresh one when that is safe.
//!
//! The request body is sent in full before the response is read (except with
//! `Expect: 100-continue`, where the backend may answer first).

use std::io;
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::time::Instant;

use crate::body::{BodyLength, response_body_length};
use crate::config::HttpVersion;
use crate::conn::{Client, Outcome};
use crate::error::{BackendFault, HeadError, ProxyError, status_for};
use crate::head::{Fields, RequestHead, ResponseHead, parse_response};
use crate::headers::{ClientFraming, Forwarding, backend_request_head, client_response_head};
use crate::relay::{BufStream, RelayError, relay_body};
use crate::route::Route;
use crate::server::Runtime;
use crate::upstream::{Authority, Pool, keep_alive_hint};

/// The request being forwarded and what we know about it.
struct Exchange<'a> {
    req: &'a RequestHead,
    body: BodyLength,
    /// The client wants its connection kept after this exchange.
    keep_alive: bool,
    /// The head to send to the backend, built once for every attempt.
    backend_head: Vec<u8>,
    /// The request body has been read from the client in full.
    body_done: bool,
    /// Response bytes have been written to the client: errors can only close now.
    response_started: bool,
    /// Interim heads (100 Continue) already relayed to the client.
    interim_relayed: bool,
}

/// Forwards `req` to a backend of `route` and relays the answer to `client`.
pub fn forward(
    rt: &Runtime,
    route: &Route,
    client: &mut Client,
    req: &RequestHead,
    body: BodyLength,
    keep_alive: bool,
) -> Outcome {
    let http10_backend = route.http_version == HttpVersion::Http10;
    if http10_backend && body == BodyLength::Chunked {
        return client.answer_error(411, false); // an HTTP/1.0 backend cannot read chunked
    }
    let authority = &route.authorities[0];
    let mut x = Exchange {
        req,
        body,
        keep_alive,
        backend_head: Vec::with_capacity(1024),
        body_done: matches!(body, BodyLength::Empty | BodyLength::Exact(0)),
        response_started: false,
        interim_relayed: false,
    };
    let forwarding = Forwarding {
        authority: &authority.text,
        preserve_host: route.preserve_host,
        http10_backend,
        client_ip: client.ip,
        client_trusted: rt.trusted_proxies.iter().any(|c| c.contains(client.ip)),
        tls: client.tls,
        body,
        upgrade: false,
    };
    backend_request_head(req, &forwarding, &mut x.backend_head);
    // [R5]: only a request that can be sent again unchanged is retried.
    let retryable = matches!(
        req.method.as_str(),
        "GET" | "HEAD" | "OPTIONS" | "TRACE" | "PUT" | "DELETE"
    ) && x.body_done;
    let pool = rt.pools.get(authority);
    let mut fresh = false;
    loop {
        match attempt(rt, authority, pool, client, &mut x, fresh) {
            Ok(outcome) => return outcome,
            // A stale connection shows as a reset or an early close, not as silence:
            // a timeout is not retried, or a silent backend would cost 2 × upstreamMs.
            Err(ProxyError::Backend {
                reused: true,
                response_byte_seen: false,
                fault,
                ..
            }) if retryable
                && !fresh
                && !x.interim_relayed
                && !matches!(fault, BackendFault::Timeout) =>
            {
                crate::debug!(
                    "backend {authority}: reused connection failed before answering; retrying on a fresh one"
                );
                fresh = true;
            }
            Err(err) => return fail(client, &x, err, authority),
        }
    }
}

/// Turns an error into the answer the client gets, if it can still get one.
fn fail(client: &mut Client, x: &Exchange<'_>, err: ProxyError, authority: &Authority) -> Outcome {
    match &err {
        ProxyError::ClientGone(_) => crate::debug!("{err}"),
        _ => crate::warn!("{} {}: {err}", x.req.method, x.req.target),
    }
    let upstream = Some(authority.text.clone());
    match status_for(&err) {
        Some(status) if !x.response_started => {
            let keep = x.keep_alive && x.body_done && !matches!(err, ProxyError::Head(_));
            Outcome {
                upstream,
                ..client.answer_error(status, keep)
            }
        }
        _ => Outcome {
            status: 0,
            keep_alive: false,
            body_bytes: 0,
            upstream,
        },
    }
}

/// The backend side of one attempt.
struct Backend<'a> {
    authority: &'a Authority,
    io: BufStream<TcpStream>,
    /// Borrowed from the pool rather than newly connected [R5].
    reused: bool,
    /// The largest response head accepted (`maxHeaderBytes`).
    max_head: usize,
}

impl Backend<'_> {
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

/// One try: borrow or connect, send, relay, return or close.
fn attempt(
    rt: &Runtime,
    authority: &Authority,
    pool: &Pool,
    client: &mut Client,
    x: &mut Exchange<'_>,
    fresh: bool,
) -> Result<Outcome, ProxyError> {
    let reused_stream = if fresh {
        None
    } else {
        pool.checkout(Instant::now())
    };
    let reused = reused_stream.is_some();
    let stream = match reused_stream {
        Some(s) => s,
        None => connect(rt, authority)?,
    };
    crate::debug!(
        "backend {authority}: {} connection",
        if reused { "reused" } else { "new" }
    );
    let mut be = Backend {
        authority,
        io: BufStream::new(stream),
        reused,
        max_head: rt.max_header_bytes,
    };
    let sent = be.io.put(&x.backend_head).and_then(|_| be.io.flush());
    sent.map_err(|e| be.fault(BackendFault::Write(e), false))?;

    let early = send_body(rt, client, &mut be, x)?;
    let (res, head_len) = match early {
        Some(parsed) => parsed,
        None => read_final_head(client, &mut be, x)?,
    };
    be.io.consume(head_len);
    let length = response_body_length(&res, x.req.method == "HEAD")
        .map_err(|why| be.fault(BackendFault::Invalid(why), true))?;

    // Framing for the client [R3]: Content-Length kept; chunked (or close-delimited,
    // re-chunked) for HTTP/1.1 clients; close-delimited for HTTP/1.0 clients.
    let mut keep_alive = x.keep_alive && x.body_done;
    let framing = match length {
        BodyLength::Empty => ClientFraming::NoBody,
        BodyLength::Exact(n) => ClientFraming::Length(n),
        BodyLength::Chunked | BodyLength::UntilClose if x.req.minor == 1 => ClientFraming::Chunked,
        BodyLength::Chunked | BodyLength::UntilClose => {
            keep_alive = false;
            ClientFraming::Close
        }
    };
    let mut head = Vec::with_capacity(512);
    client_response_head(&res, framing, keep_alive, x.req.minor, &mut head);
    client.io.put(&head).map_err(ProxyError::ClientGone)?;
    x.response_started = true;
    let chunked_out = framing == ClientFraming::Chunked;
    let relayed = relay_body(&mut be.io, &mut client.io, length, chunked_out);
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
        pool.checkin(be.io.stream, hint, Instant::now());
        crate::debug!("backend {authority}: connection returned to the pool");
    }
    Ok(Outcome {
        status: res.status,
        keep_alive,
        body_bytes,
        upstream: Some(authority.text.clone()),
    })
}

/// A new connection, with `upstreamMs` as the limit on every read and write.
fn connect(rt: &Runtime, authority: &Authority) -> Result<TcpStream, ProxyError> {
    let timeout = Some(rt.timeouts.upstream());
    let connected = authority.connect(rt.timeouts.connect()).and_then(|stream| {
        stream.set_read_timeout(timeout)?;
        stream.set_write_timeout(timeout)?;
        Ok(stream)
    });
    connected.map_err(|e| ProxyError::Backend {
        authority: authority.clone(),
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
    be: &mut Backend<'_>,
    x: &mut Exchange<'_>,
) -> Result<Option<(ResponseHead, usize)>, ProxyError> {
    if x.body_done {
        return Ok(None);
    }
    if x.req.has_token("expect", "100-continue") && client.io.data().is_empty() {
        let (c, b) = (client.io.stream.as_raw_fd(), be.io.stream.as_raw_fd());
        if crate::sys::wait_either(b, c, rt.timeouts.upstream()) == Some(b) {
            let (res, len) = be.read_head()?;
            if res.status != 100 {
                return Ok(Some((res, len))); // a final answer before the body: the body stays unread
            }
            be.io.consume(len);
            relay_interim(client, x, &res)?;
        }
    }
    client
        .io
        .stream
        .set_read_timeout(Some(rt.timeouts.upstream()))
        .map_err(ProxyError::ClientGone)?;
    let chunked_out = x.body == BodyLength::Chunked;
    relay_body(&mut client.io, &mut be.io, x.body, chunked_out).map_err(|e| match e {
        RelayError::Read(e) => ProxyError::ClientGone(e),
        RelayError::Truncated => ProxyError::ClientGone(io::ErrorKind::UnexpectedEof.into()),
        RelayError::Chunk(_) => ProxyError::Head(HeadError::Malformed("bad chunked body")),
        RelayError::Write(e) => be.fault(BackendFault::Write(e), false),
    })?;
    x.body_done = true;
    Ok(None)
}

/// Reads response heads until a final one, relaying interim (1xx) heads on the way.
fn read_final_head(
    client: &mut Client,
    be: &mut Backend<'_>,
    x: &mut Exchange<'_>,
) -> Result<(ResponseHead, usize), ProxyError> {
    loop {
        let (res, len) = be.read_head()?;
        if res.status >= 200 {
            return Ok((res, len));
        }
        if res.status == 101 {
            let why = "101 to a request that asked no upgrade";
            return Err(be.fault(BackendFault::Invalid(why), true));
        }
        be.io.consume(len);
        relay_interim(client, x, &res)?;
    }
}

/// Passes a 1xx head to HTTP/1.1 clients; HTTP/1.0 clients never see one [R3].
fn relay_interim(
    client: &mut Client,
    x: &mut Exchange<'_>,
    res: &ResponseHead,
) -> Result<(), ProxyError> {
    x.interim_relayed = true;
    if x.req.minor == 0 {
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
