//! One request, whatever protocol carries it [R1][S][E]: routed, then answered by
//! hawkey itself (a 404, a 405, the redirect listener's 301), from a static file, or
//! by a backend (`proxy.rs`). The front that owns the client (`front/h1.rs` today)
//! feeds it what the client sends (`client_data`, `client_end`, `client_gone`) and
//! lends it a `Respond`, where the answer goes as a head, body bytes and an end. It
//! never touches the client's socket, so HTTP/2 can be a second front over it.
//!
//! An answer of hawkey's own to a request with a body waits until that body has been
//! read off (up to `DISCARD_LIMIT`), so the body is never taken for the next request;
//! past that limit, or when the client waits for a `100 Continue`, it answers at once
//! and the front closes the connection after it [R8].

pub mod proxy;

use std::io::{Read, Seek, SeekFrom};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use crate::access_log::Entry;
use crate::backend::authority::Authority;
use crate::body::BodyLength;
use crate::error::reason;
use crate::event::{SocketId, SocketOf};
use crate::head::{Fields, RequestHead, ResponseHead};
use crate::route::{self, Target};
use crate::shared::Runtime;
use crate::static_files::{Answer as StaticAnswer, FilePart};
use crate::sys::Readiness;
use proxy::Proxy;

/// Most bytes of an unwanted request body read and dropped to keep the connection.
const DISCARD_LIMIT: u64 = 1024 * 1024;
/// Most bytes of a file read per step.
const FILE_PIECE: usize = 64 * 1024;

/// Where an exchange puts its answer: the front that carries it to the client.
pub trait Respond {
    /// Body bytes the client side takes now (its buffer's room).
    fn room(&self) -> usize;
    /// An interim (1xx) head.
    fn interim(&mut self, head: &ResponseHead);
    /// The final head, with its body's framing as the answerer has it (`Empty` when
    /// none follows); `keep_alive`: the answerer lets the connection stay open.
    fn head(&mut self, head: &ResponseHead, length: BodyLength, keep_alive: bool);
    /// A whole answer of hawkey's own, with its short text body.
    fn local(&mut self, status: u16, extra: &[(&str, &str)]);
    fn data(&mut self, bytes: &[u8]);
    /// The end of the body, with a chunked body's trailers.
    fn end(&mut self, trailers: &[u8]);
    /// The answer cannot be completed: the connection closes without a clean end.
    fn abort(&mut self);
}

/// Who sent the request.
#[derive(Debug, Clone, Copy)]
pub struct Client {
    pub ip: IpAddr,
    pub tls: bool,
    /// On the redirect listener: every request gets a 301 to this TLS listener [K].
    pub redirect_to: Option<SocketAddr>,
    /// The event loop serving it: backend connections go back to the pool as this
    /// loop's (`Pool::checkout`).
    pub home: usize,
}

/// How the exchange ended, for the access log.
#[derive(Debug, Default)]
pub struct Outcome {
    /// The status sent (499 when the client left before any).
    pub status: u16,
    pub body_bytes: u64,
    /// The backend asked, as (route, upstream) indices (`Exchange::upstream`).
    pub upstream: Option<(usize, usize)>,
}

/// An answer of hawkey's own, or from a static file, given once the body is read.
enum Later {
    Local(u16, Vec<(&'static str, String)>),
    Static(String),
}

enum Kind {
    /// Reading off the request body before answering.
    /// `until`: `headerMs` after the last of its bytes.
    Drain {
        then: Later,
        left: u64,
        until: Instant,
    },
    /// Sending part of a file.
    File {
        part: FilePart,
        sent: u64,
    },
    Proxy(Box<Proxy>),
    Done,
}

pub struct Exchange {
    rt: Arc<Runtime>,
    pub req: RequestHead,
    kind: Kind,
    pub outcome: Outcome,
    /// The client's request body has been read in full.
    body_read: bool,
}

impl Exchange {
    /// Routes `req` and starts answering it.
    pub fn start(
        rt: Arc<Runtime>,
        req: RequestHead,
        body: BodyLength,
        client: Client,
        now: Instant,
    ) -> Exchange {
        let body_read = matches!(body, BodyLength::Empty | BodyLength::Exact(0));
        let until = now + rt.timeouts.header();
        let later = if let Some(tls_addr) = client.redirect_to {
            let location = https_location(&req, tls_addr);
            Later::Local(301, vec![("Location", location)])
        } else {
            match route::choose(rt.static_prefix.as_deref(), &rt.routes, &req.target) {
                Target::Proxy(i) => {
                    let proxy = Proxy::start(&rt, i, &req, body, client, now);
                    return Exchange {
                        rt,
                        req,
                        kind: Kind::Proxy(Box::new(proxy)),
                        outcome: Outcome::default(),
                        body_read,
                    };
                }
                Target::Static(_) if req.method != "GET" && req.method != "HEAD" => {
                    Later::Local(405, vec![("Allow", "GET, HEAD".to_string())])
                }
                Target::Static(rest) => Later::Static(rest.to_string()),
                Target::NoRoute => Later::Local(404, Vec::new()),
            }
        };
        Exchange {
            rt,
            req,
            kind: Kind::Drain {
                then: later,
                left: DISCARD_LIMIT,
                until,
            },
            outcome: Outcome::default(),
            body_read,
        }
    }

    /// Body bytes it takes now.
    pub fn body_room(&self) -> usize {
        match &self.kind {
            Kind::Proxy(p) => p.body_room(),
            _ => usize::MAX,
        }
    }

    pub fn client_data(&mut self, bytes: &[u8]) {
        match &mut self.kind {
            Kind::Proxy(p) => p.client_data(bytes),
            Kind::Drain { left, until, .. } => {
                *left = left.saturating_sub(bytes.len() as u64);
                *until = Instant::now() + self.rt.timeouts.header();
            }
            _ => {}
        }
    }

    /// The request body has been read in full (`client_end` came).
    pub fn body_done(&self) -> bool {
        self.body_read
    }

    pub fn client_end(&mut self, trailers: &[u8]) {
        self.body_read = true;
        if let Kind::Proxy(p) = &mut self.kind {
            p.client_end(trailers);
        }
    }

    /// The client went away, or sent a body we refuse (the front answers that).
    pub fn client_gone(&mut self, refused: Option<u16>) {
        if let Kind::Proxy(p) = &mut self.kind {
            p.client_gone(refused, &mut self.outcome);
        } else if self.outcome.status == 0 {
            self.outcome.status = refused.unwrap_or(499);
        }
        self.kind = Kind::Done;
    }

    /// Does what can be done now; whether anything moved.
    pub fn run(&mut self, out: &mut dyn Respond, now: Instant) -> bool {
        match &mut self.kind {
            Kind::Done => false,
            Kind::Proxy(p) => {
                let moved = p.run(&self.req, out, &mut self.outcome, now);
                if p.is_finished() && !p.is_upgraded() {
                    self.kind = Kind::Done;
                }
                moved
            }
            Kind::Drain { left, .. } => {
                let expecting = self.req.has_token("expect", "100-continue");
                if self.body_read || *left == 0 || expecting {
                    self.answer(out);
                    self.run(out, now); // a file's first bytes go with its head
                    true
                } else {
                    false
                }
            }
            Kind::File { part, sent } => {
                let moved = send_file(part, sent, out);
                self.outcome.body_bytes = *sent;
                match moved {
                    Ok(true) => true,
                    Ok(false) if *sent < part.len => false,
                    Ok(false) => {
                        out.end(&[]);
                        self.kind = Kind::Done;
                        true
                    }
                    Err(e) => {
                        crate::warn!("{}: reading the file failed: {e}", self.req.target);
                        out.abort();
                        self.kind = Kind::Done;
                        true
                    }
                }
            }
        }
    }

    /// Answers a request hawkey answers itself, its body read off (or not wanted).
    fn answer(&mut self, out: &mut dyn Respond) {
        let Kind::Drain { then, .. } = std::mem::replace(&mut self.kind, Kind::Done) else {
            return;
        };
        let (status, fields) = match then {
            Later::Local(status, fields) => (status, fields),
            Later::Static(rest) => {
                match crate::static_files::answer(self.rt.static_root.as_deref(), &self.req, &rest)
                {
                    StaticAnswer::Local(status, fields) => (status, fields),
                    StaticAnswer::File {
                        status,
                        fields,
                        body,
                    } => return self.answer_file(out, status, fields, body),
                }
            }
        };
        let fields: Vec<(&str, &str)> = fields.iter().map(|(n, v)| (*n, v.as_str())).collect();
        out.local(status, &fields);
        self.outcome.status = status;
        if self.req.method != "HEAD" {
            self.outcome.body_bytes = crate::headers::local_body(status).len() as u64;
        }
    }

    fn answer_file(
        &mut self,
        out: &mut dyn Respond,
        status: u16,
        fields: Vec<(&'static str, String)>,
        body: Option<FilePart>,
    ) {
        let head = ResponseHead {
            minor: 1,
            status,
            reason: reason(status).as_bytes().to_vec(),
            fields: fields
                .iter()
                .map(|(name, value)| (*name, value.as_str()))
                .collect(),
        };
        self.outcome.status = status;
        match body {
            Some(mut part) => {
                out.head(&head, BodyLength::Exact(part.len), true);
                match part.file.seek(SeekFrom::Start(part.first)) {
                    Ok(_) => self.kind = Kind::File { part, sent: 0 },
                    Err(_) => out.abort(),
                }
            }
            None => {
                out.head(&head, BodyLength::Empty, true);
                out.end(&[]);
            }
        }
    }

    /// The access-log line of this exchange [L]: its request line ends in `version`
    /// (`HTTP/1.1`, `HTTP/2.0`); `started` is when its head began to arrive.
    pub fn log_entry(&self, client: IpAddr, version: &str, started: Instant) -> Entry {
        let req = &self.req;
        let elapsed = started.elapsed();
        let now = SystemTime::now();
        Entry {
            client,
            started: now.checked_sub(elapsed).unwrap_or(now),
            request_line: Some(format!("{} {} {version}", req.method, req.target)),
            status: self.outcome.status,
            body_bytes: self.outcome.body_bytes,
            referer: req.first("referer").map(<[u8]>::to_vec),
            user_agent: req.first("user-agent").map(<[u8]>::to_vec),
            elapsed,
            upstream: self.upstream().map(|a| a.text.clone()),
        }
    }

    /// The backend the answer came from (or was asked), for the log.
    pub fn upstream(&self) -> Option<&Authority> {
        let (route, i) = self.outcome.upstream?;
        let upstream = self.rt.routes.get(route)?.upstreams.get(i)?;
        Some(&upstream.authority)
    }

    pub fn is_finished(&self) -> bool {
        matches!(self.kind, Kind::Done)
    }

    /// After a 101: the backend connection to tunnel to, and the bytes it sent
    /// behind its head [R7].
    pub fn take_tunnel(&mut self) -> Option<(SocketOf, Vec<u8>)> {
        let Kind::Proxy(p) = &mut self.kind else {
            return None;
        };
        let tunnel = p.take_tunnel()?;
        self.kind = Kind::Done;
        Some(tunnel)
    }

    /// The backend socket it waits on now, if any.
    pub fn backend_socket(&self) -> Option<SocketId> {
        match &self.kind {
            Kind::Proxy(p) => p.socket(),
            _ => None,
        }
    }

    pub fn backend_ready(&mut self, readiness: Readiness) {
        if let Kind::Proxy(p) = &mut self.kind {
            p.ready(readiness);
        }
    }

    /// When it gives up waiting (on a backend, or on the client's body).
    pub fn deadline(&self) -> Option<Instant> {
        match &self.kind {
            Kind::Proxy(p) => p.deadline(),
            Kind::Drain { until, .. } if !self.body_read => Some(*until),
            _ => None,
        }
    }

    /// The deadline passed at `now`.
    pub fn expire(&mut self, out: &mut dyn Respond, now: Instant) {
        match &mut self.kind {
            Kind::Proxy(p) => {
                p.expire(&self.req, out, &mut self.outcome, now);
                if p.is_finished() {
                    self.kind = Kind::Done;
                }
            }
            Kind::Drain { left, .. } => {
                *left = 0; // answer now; the connection closes after it
                self.run(out, now);
            }
            _ => {}
        }
    }
}

/// Sends what the client side has room for; `Ok(true)` when bytes moved. A file that
/// shrank underneath us ends the answer early rather than send a wrong length.
fn send_file(part: &mut FilePart, sent: &mut u64, out: &mut dyn Respond) -> std::io::Result<bool> {
    let left = part.len - *sent;
    let room = out.room().min(FILE_PIECE);
    let want = usize::try_from(left).map_or(room, |left| left.min(room));
    if want == 0 {
        return Ok(false);
    }
    let mut buf = vec![0u8; want];
    let n = part.file.read(&mut buf)?;
    if n == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    out.data(&buf[..n]);
    *sent += n as u64;
    Ok(true)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use std::time::Duration;

    /// Records what an exchange says to its front.
    #[derive(Default)]
    struct Recorder {
        said: Vec<String>,
        room: usize,
    }

    impl Respond for Recorder {
        fn room(&self) -> usize {
            self.room
        }
        fn interim(&mut self, head: &ResponseHead) {
            self.said.push(format!("interim {}", head.status));
        }
        fn head(&mut self, head: &ResponseHead, length: BodyLength, keep_alive: bool) {
            self.said
                .push(format!("head {} {length:?} {keep_alive}", head.status));
        }
        fn local(&mut self, status: u16, extra: &[(&str, &str)]) {
            self.said.push(format!("local {status} {extra:?}"));
        }
        fn data(&mut self, bytes: &[u8]) {
            self.said.push(format!("data {}", bytes.len()));
        }
        fn end(&mut self, _: &[u8]) {
            self.said.push("end".into());
        }
        fn abort(&mut self) {
            self.said.push("abort".into());
        }
    }

    fn runtime() -> Arc<Runtime> {
        let config =
            Config::parse(r#"{"proxy": [{"pathRegExp": "^/api", "authority": "127.0.0.1:1"}]}"#);
        Arc::new(Runtime::new(&config.unwrap()))
    }

    fn request(wire: &str) -> (RequestHead, BodyLength) {
        let (head, _) = crate::head::parse_request(wire.as_bytes())
            .unwrap()
            .unwrap();
        let body = crate::body::request_body_length(&head).unwrap();
        (head, body)
    }

    const CLIENT: Client = Client {
        ip: IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
        tls: false,
        redirect_to: None,
        home: 0,
    };

    fn start(wire: &str, client: Client, t0: Instant) -> Exchange {
        let (head, body) = request(wire);
        Exchange::start(runtime(), head, body, client, t0)
    }

    #[test]
    fn no_route_is_a_404_at_once_without_a_body() {
        let t0 = Instant::now();
        let mut x = start("GET /nothing HTTP/1.1\r\nHost: h\r\n\r\n", CLIENT, t0);
        let mut out = Recorder::default();
        assert!(x.run(&mut out, t0));
        assert_eq!(out.said, ["local 404 []"]);
        assert!(x.is_finished());
        assert_eq!((x.outcome.status, x.outcome.body_bytes), (404, 14));
    }

    #[test]
    fn a_body_is_read_off_before_the_local_answer() {
        let t0 = Instant::now();
        let wire = "POST /nothing HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n";
        let mut x = start(wire, CLIENT, t0);
        let mut out = Recorder::default();
        assert!(!x.run(&mut out, t0), "waits for the body");
        assert_eq!(x.body_room(), usize::MAX);
        x.client_data(b"0123456789");
        assert!(!x.run(&mut out, t0));
        x.client_end(b"");
        assert!(x.run(&mut out, t0));
        assert_eq!(out.said, ["local 404 []"]);
    }

    #[test]
    fn a_client_waiting_for_100_continue_is_answered_at_once() {
        let t0 = Instant::now();
        let wire =
            "POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\nExpect: 100-continue\r\n\r\n";
        let mut x = start(wire, CLIENT, t0);
        let mut out = Recorder::default();
        assert!(x.run(&mut out, t0));
        assert_eq!(out.said, ["local 404 []"]);
    }

    #[test]
    fn a_body_that_stops_coming_is_answered_at_header_ms() {
        let t0 = Instant::now();
        let wire = "POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n";
        let mut x = start(wire, CLIENT, t0);
        let mut out = Recorder::default();
        x.run(&mut out, t0);
        let deadline = x.deadline().expect("waiting for the body has a deadline");
        assert_eq!(deadline, t0 + Duration::from_secs(10)); // headerMs by default
        x.expire(&mut out, deadline);
        assert_eq!(out.said, ["local 404 []"]);
        assert!(x.is_finished());
    }

    #[test]
    fn the_redirect_listener_answers_301_to_the_tls_listener() {
        let t0 = Instant::now();
        let client = Client {
            redirect_to: Some("127.0.0.1:8443".parse().unwrap()),
            ..CLIENT
        };
        let mut x = start(
            "GET /a?b HTTP/1.1\r\nHost: example.com:80\r\n\r\n",
            client,
            t0,
        );
        let mut out = Recorder::default();
        x.run(&mut out, t0);
        assert_eq!(
            out.said,
            [r#"local 301 [("Location", "https://example.com:8443/a?b")]"#]
        );
    }

    #[test]
    fn a_client_gone_before_any_answer_is_499() {
        let t0 = Instant::now();
        let wire = "POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n";
        let mut x = start(wire, CLIENT, t0);
        let mut out = Recorder::default();
        x.run(&mut out, t0);
        x.client_gone(None);
        assert!(x.is_finished());
        assert_eq!(x.outcome.status, 499);
        assert!(out.said.is_empty());
    }
}
