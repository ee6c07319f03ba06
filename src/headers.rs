//! Header rewriting [R2][R3]: the head hawkey sends to a backend and the head it
//! sends back to the client. Pure: heads in, bytes out.
//!
//! Every field is re-serialised as `Name: value` + CRLF; the bytes of a received head
//! are never copied through. Hop-by-hop fields (RFC 9110 §7.6.1) stop here, and so
//! does every field that the `Connection` field names.

use std::io::Write;
use std::net::IpAddr;

use crate::body::BodyLength;
use crate::error::reason;
use crate::head::{
    Fields, HOP_BY_HOP, RequestHead, ResponseHead, SET_ON_REQUEST, is_named_like, list_items,
};

/// What `backend_request_head` needs besides the client's head.
#[derive(Debug, Clone, Copy)]
pub struct Forwarding<'a> {
    /// The authority actually used, as written in the config.
    pub authority: &'a str,
    pub preserve_host: bool,
    pub http10_backend: bool,
    pub client_ip: IpAddr,
    /// The client address is in `trustedProxies`: its X-Forwarded-For is kept.
    pub client_trusted: bool,
    pub tls: bool,
    /// The request body's framing as received.
    pub body: BodyLength,
    /// Forward `Connection: upgrade` and the client's `Upgrade` field [R7].
    pub upgrade: bool,
}

/// Whether a field stops at hawkey: hop-by-hop, or named in one of `connection`'s values.
fn is_hop_by_hop(name: &[u8], connection: &Named<'_>) -> bool {
    HOP_BY_HOP
        .iter()
        .any(|h| name.eq_ignore_ascii_case(h.as_bytes()))
        || connection.contains(name)
}

/// The names a head's `Connection` fields list, the usual few of them held without
/// an allocation.
struct Named<'a> {
    first: [&'a [u8]; 4],
    count: usize,
    more: Vec<&'a [u8]>,
}

impl<'a> Named<'a> {
    fn of(head: &'a impl Fields) -> Named<'a> {
        let mut named = Named {
            first: [&[]; 4],
            count: 0,
            more: Vec::new(),
        };
        for token in head.values("connection").flat_map(list_items) {
            match named.first.get_mut(named.count) {
                Some(slot) => *slot = token,
                None => named.more.push(token),
            }
            named.count += 1;
        }
        named
    }

    fn contains(&self, name: &[u8]) -> bool {
        let first = &self.first[..self.count.min(self.first.len())];
        (first.iter().chain(&self.more)).any(|token| token.eq_ignore_ascii_case(name))
    }
}

/// [R2]: a client's field that hawkey replaces with its own. From a client that is
/// not a trusted proxy, that includes the same names spelt with `_` and `Forwarded`
/// (RFC 7239), so no forged address reaches a backend under another spelling. From
/// any client, a hop-by-hop field spelt with `_` (`Transfer_Encoding`) is dropped
/// too: a backend that reads `_` as `-` would frame the body another way.
fn forged(bytes: &[u8], client_trusted: bool) -> bool {
    if HOP_BY_HOP.iter().any(|h| is_named_like(bytes, h)) {
        return true;
    }
    if client_trusted {
        return SET_ON_REQUEST
            .iter()
            .any(|r| bytes.eq_ignore_ascii_case(r.as_bytes()));
    }
    bytes.eq_ignore_ascii_case(b"forwarded")
        || SET_ON_REQUEST.iter().any(|r| is_named_like(bytes, r))
}

fn put_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Appends the head to send to the backend for `req` [R2].
pub fn backend_request_head(req: &RequestHead, f: &Forwarding<'_>, out: &mut Vec<u8>) {
    let version = if f.http10_backend { "1.0" } else { "1.1" };
    out.reserve(req.target.len() + req.fields.wire_len() + 256);
    let _ = write!(out, "{} {} HTTP/{version}\r\n", req.method, req.target); // Vec writes cannot fail
    let client_host = req.first("host");
    match client_host {
        Some(host) if f.preserve_host => put_field(out, b"Host", host),
        _ => put_field(out, b"Host", f.authority.as_bytes()),
    }
    let connection = Named::of(req);
    for (name, value) in req.fields.iter() {
        if !forged(name, f.client_trusted) && !is_hop_by_hop(name, &connection) {
            put_field(out, name, value);
        }
    }
    let _ = write!(out, "X-Real-IP: {}\r\n", f.client_ip);
    out.extend_from_slice(b"X-Forwarded-For: ");
    if f.client_trusted {
        for value in req.values("x-forwarded-for") {
            out.extend_from_slice(value);
            out.extend_from_slice(b", ");
        }
    }
    let _ = write!(out, "{}\r\n", f.client_ip);
    put_field(
        out,
        b"X-Forwarded-Proto",
        if f.tls { b"https" } else { b"http" },
    );
    if let Some(host) = client_host {
        put_field(out, b"X-Forwarded-Host", host);
    }
    match f.body {
        BodyLength::Exact(n) => {
            let _ = write!(out, "Content-Length: {n}\r\n");
        }
        BodyLength::Chunked => put_field(out, b"Transfer-Encoding", b"chunked"),
        BodyLength::Empty | BodyLength::UntilClose => {}
    }
    if f.upgrade {
        put_field(out, b"Connection", b"upgrade");
        if let Some(upgrade) = req.first("upgrade") {
            put_field(out, b"Upgrade", upgrade);
        }
    } else if f.http10_backend {
        put_field(out, b"Connection", b"keep-alive");
    }
    out.extend_from_slice(b"\r\n");
}

/// The fields of a response that travel on to a client of another protocol (HTTP/2):
/// not hop-by-hop, not named in its `Connection` field, and not `Content-Length`,
/// which the front writes for the framing it uses.
pub fn end_to_end(res: &ResponseHead) -> impl Iterator<Item = (&[u8], &[u8])> {
    let connection = Named::of(res);
    res.fields.iter().filter(move |(name, _)| {
        !name.eq_ignore_ascii_case(b"content-length") && !is_hop_by_hop(name, &connection)
    })
}

/// The backend's `Content-Length` of an answer without a body (HEAD, 304): the size
/// the body would have had, passed on when it is a plain number.
pub fn announced_length(res: &ResponseHead) -> Option<&[u8]> {
    if res.status < 200 || res.status == 204 {
        return None;
    }
    res.first("content-length")
        .filter(|v| !v.is_empty() && v.iter().all(u8::is_ascii_digit))
}

/// How the response body is framed towards the client [R3].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientFraming {
    /// `Content-Length: n`.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Neither; the body ends when the connection closes.
    Close,
    /// No body follows (HEAD, 1xx, 204, 304): for HEAD and 304 the backend's
    /// Content-Length, if any, is passed on as the size the body would have had; 1xx
    /// and 204 carry none (RFC 9110 §8.6).
    NoBody,
}

/// Appends the head to send to the client for the backend's `res`. `keep_alive`
/// says whether the client connection stays open; `client_minor` is the client's
/// HTTP version.
pub fn client_response_head(
    res: &ResponseHead,
    framing: ClientFraming,
    keep_alive: bool,
    client_minor: u8,
    out: &mut Vec<u8>,
) {
    out.reserve(res.reason.len() + res.fields.wire_len() + 64);
    let _ = write!(out, "HTTP/1.1 {} ", res.status);
    out.extend_from_slice(&res.reason);
    out.extend_from_slice(b"\r\n");
    let connection = Named::of(res);
    for (name, value) in res.fields.iter() {
        if !name.eq_ignore_ascii_case(b"content-length") && !is_hop_by_hop(name, &connection) {
            put_field(out, name, value);
        }
    }
    match framing {
        ClientFraming::Length(n) => {
            let _ = write!(out, "Content-Length: {n}\r\n");
        }
        ClientFraming::Chunked => put_field(out, b"Transfer-Encoding", b"chunked"),
        ClientFraming::Close => {}
        ClientFraming::NoBody if res.status < 200 || res.status == 204 => {}
        ClientFraming::NoBody => {
            if let Some(cl) = announced_length(res) {
                put_field(out, b"Content-Length", cl);
            }
        }
    }
    if res.status == 101 {
        put_field(out, b"Connection", b"upgrade");
        if let Some(upgrade) = res.first("upgrade") {
            put_field(out, b"Upgrade", upgrade);
        }
    } else if res.status >= 200 {
        put_connection(out, keep_alive, client_minor);
    }
    out.extend_from_slice(b"\r\n");
}

fn put_connection(out: &mut Vec<u8>, keep_alive: bool, client_minor: u8) {
    if !keep_alive {
        put_field(out, b"Connection", b"close");
    } else if client_minor == 0 {
        put_field(out, b"Connection", b"keep-alive");
    }
}

/// A response hawkey makes itself [E]: a short text body with its length.
/// `extra` fields come after the standard ones; `head_only` leaves the body out.
pub fn local_response(
    status: u16,
    extra: &[(&str, &str)],
    keep_alive: bool,
    client_minor: u8,
    head_only: bool,
) -> Vec<u8> {
    let text = local_body(status);
    let length = text.len().to_string();
    let mut fields = vec![
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Content-Length", length.as_str()),
    ];
    fields.extend_from_slice(extra);
    let mut out = response_head(status, &fields, keep_alive, client_minor);
    if !head_only {
        out.extend_from_slice(text.as_bytes());
    }
    out
}

/// The text body of a response hawkey makes itself: `404 Not Found` and a newline.
pub fn local_body(status: u16) -> String {
    format!("{status} {}\n", reason(status))
}

/// The head of a response hawkey makes itself: status line, `fields` in order, and
/// the `Connection` field the keep-alive decision needs.
pub fn response_head(
    status: u16,
    fields: &[(&str, &str)],
    keep_alive: bool,
    client_minor: u8,
) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status} {}\r\n", reason(status)).into_bytes();
    for (name, value) in fields {
        put_field(&mut out, name.as_bytes(), value.as_bytes());
    }
    put_connection(&mut out, keep_alive, client_minor);
    out.extend_from_slice(b"\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::head::{parse_request, parse_response};

    fn forward(wire: &str, f: Forwarding<'_>) -> String {
        let (req, _) = parse_request(wire.as_bytes()).unwrap().unwrap();
        let mut out = Vec::new();
        backend_request_head(&req, &f, &mut out);
        String::from_utf8(out).unwrap()
    }

    fn plain<'a>() -> Forwarding<'a> {
        Forwarding {
            authority: "127.0.0.1:7999",
            preserve_host: false,
            http10_backend: false,
            client_ip: "10.1.2.3".parse().unwrap(),
            client_trusted: false,
            tls: false,
            body: BodyLength::Empty,
            upgrade: false,
        }
    }

    #[test]
    fn request_head_is_rewritten() {
        let got = forward(
            "GET /a?b HTTP/1.1\r\nHost: example.com\r\nA:  one \r\nConnection: keep-alive, X-Secret\r\n\
             X-Secret: s\r\nKeep-Alive: 5\r\nTE: trailers\r\nA: two\r\nX-Forwarded-For: 6.6.6.6\r\n\
             X-Real-IP: 6.6.6.6\r\nUpgrade: websocket\r\nProxy-Connection: x\r\nTrailer: t\r\n\r\n",
            plain(),
        );
        assert_eq!(
            got,
            "GET /a?b HTTP/1.1\r\nHost: 127.0.0.1:7999\r\nA: one\r\nA: two\r\nX-Real-IP: 10.1.2.3\r\n\
             X-Forwarded-For: 10.1.2.3\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: example.com\r\n\r\n"
        );
    }

    /// Every name a `Connection` field lists is dropped, past the few kept inline
    /// too, and across several `Connection` fields.
    #[test]
    fn every_name_connection_lists_is_dropped() {
        let names = ["N1", "N2", "N3", "N4", "N5", "N6"];
        let fields: String = names.iter().map(|n| format!("{n}: x\r\n")).collect();
        let wire = format!(
            "GET / HTTP/1.1\r\nHost: h\r\nConnection: n1, N2,n3\r\n{fields}\
             Connection: n4 , n5, n6\r\nKept: y\r\n\r\n"
        );
        let got = forward(&wire, plain());
        for name in names {
            assert!(!got.contains(&format!("{name}:")), "{name} in {got}");
        }
        assert!(got.contains("Kept: y\r\n"), "{got}");
    }

    #[test]
    fn underscore_spellings_and_forwarded_are_dropped_unless_trusted() {
        let wire = "GET / HTTP/1.1\r\nHost: h\r\nX_Forwarded_For: 6\r\nX-Real_IP: 6\r\n\
             Forwarded: for=6\r\nContent_Length: 9\r\nX_Other: kept\r\n\r\n";
        let got = forward(wire, plain());
        assert!(
            got.ends_with(
                "Host: 127.0.0.1:7999\r\nX_Other: kept\r\nX-Real-IP: 10.1.2.3\r\n\
             X-Forwarded-For: 10.1.2.3\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: h\r\n\r\n"
            ),
            "{got}"
        );
        let trusted = Forwarding {
            client_trusted: true,
            ..plain()
        };
        let got = forward(wire, trusted);
        assert!(
            got.contains("X_Forwarded_For: 6\r\nX-Real_IP: 6\r\nForwarded: for=6\r\n"),
            "{got}"
        );
    }

    #[test]
    fn trusted_proxy_keeps_and_merges_x_forwarded_for() {
        let f = Forwarding {
            client_trusted: true,
            tls: true,
            ..plain()
        };
        let got = forward(
            "GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 1.1.1.1\r\nX-Forwarded-For: 2.2.2.2, 3.3.3.3\r\n\r\n",
            f,
        );
        assert!(
            got.contains("X-Forwarded-For: 1.1.1.1, 2.2.2.2, 3.3.3.3, 10.1.2.3\r\n"),
            "{got}"
        );
        assert!(got.contains("X-Forwarded-Proto: https\r\n"), "{got}");
    }

    #[test]
    fn http10_backend_preserve_host_and_framing() {
        let f = Forwarding {
            http10_backend: true,
            preserve_host: true,
            body: BodyLength::Exact(3),
            ..plain()
        };
        let got = forward(
            "POST / HTTP/1.1\r\nHost: h:1\r\nContent-Length: 3\r\n\r\n",
            f,
        );
        assert!(got.starts_with("POST / HTTP/1.0\r\nHost: h:1\r\n"), "{got}");
        assert!(
            got.ends_with("Content-Length: 3\r\nConnection: keep-alive\r\n\r\n"),
            "{got}"
        );
        let f = Forwarding {
            body: BodyLength::Chunked,
            ..plain()
        };
        let got = forward(
            "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n",
            f,
        );
        assert_eq!(
            got.matches("Transfer-Encoding: chunked\r\n").count(),
            1,
            "{got}"
        );
    }

    #[test]
    fn http10_client_without_host_gets_no_x_forwarded_host() {
        let got = forward("GET / HTTP/1.0\r\n\r\n", plain());
        assert!(!got.contains("X-Forwarded-Host"), "{got}");
        assert!(got.contains("Host: 127.0.0.1:7999\r\n"), "{got}");
    }

    #[test]
    fn upgrade_passes_only_when_asked() {
        let f = Forwarding {
            upgrade: true,
            ..plain()
        };
        let got = forward(
            "GET / HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
            f,
        );
        assert!(
            got.ends_with("Connection: upgrade\r\nUpgrade: websocket\r\n\r\n"),
            "{got}"
        );
    }

    #[test]
    fn response_head_is_reframed() {
        let wire = b"HTTP/1.1 200 Fine\r\nConnection: close, X-Hop\r\nX-Hop: 1\r\nTransfer-Encoding: chunked\r\nKeep-Alive: timeout=5\r\nA: b\r\n\r\n";
        let (res, _) = parse_response(wire).unwrap().unwrap();
        let mut out = Vec::new();
        client_response_head(&res, ClientFraming::Chunked, true, 1, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 200 Fine\r\nA: b\r\nTransfer-Encoding: chunked\r\n\r\n"
        );
        let mut out = Vec::new();
        client_response_head(&res, ClientFraming::Close, false, 0, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 200 Fine\r\nA: b\r\nConnection: close\r\n\r\n"
        );
    }

    #[test]
    fn head_response_keeps_its_content_length() {
        let (res, _) = parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 42\r\n\r\n")
            .unwrap()
            .unwrap();
        let mut out = Vec::new();
        client_response_head(&res, ClientFraming::NoBody, true, 0, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 200 OK\r\nContent-Length: 42\r\nConnection: keep-alive\r\n\r\n"
        );
    }

    #[test]
    fn local_responses_have_text_and_length() {
        let out = String::from_utf8(local_response(404, &[], true, 1, false)).unwrap();
        assert_eq!(
            out,
            "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 14\r\n\r\n404 Not Found\n"
        );
        let out = String::from_utf8(local_response(
            405,
            &[("Allow", "GET, HEAD")],
            false,
            1,
            true,
        ))
        .unwrap();
        assert!(
            out.ends_with("Allow: GET, HEAD\r\nConnection: close\r\n\r\n"),
            "{out}"
        );
    }
}
