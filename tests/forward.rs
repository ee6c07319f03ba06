//! Forwarding through a real hawkey to real backends: routing [R1], the request head a
//! backend receives [R2], the response a client receives and its framing [R3], and
//! client keep-alive, pipelining and concurrency [R8].

mod common;
use common::*;

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::json;

/// A backend whose answer names the request: `METHOD TARGET BODY`.
fn echo() -> Backend {
    Backend::start(|r| {
        ok(&format!(
            "{} {} {}",
            r.method,
            r.target,
            String::from_utf8_lossy(&r.body)
        ))
    })
}

/// A backend that answers every request with exactly `bytes`, keeping the connection.
fn replying(bytes: &'static str) -> Backend {
    Backend::start(move |_| Reply::Bytes(bytes.as_bytes().to_vec()))
}

/// A config with one route `^/` → `backend`, and `route` merged into the route object.
fn one_route(backend: &Backend, route: serde_json::Value) -> serde_json::Value {
    let mut r = json!({ "pathRegExp": "^/", "authority": [backend.authority()] });
    for (k, v) in route.as_object().unwrap() {
        r[k] = v.clone();
    }
    json!({ "proxy": [r] })
}

/// Sends `request` on a new connection and reads one answer.
fn exchange(hawkey: &Hawkey, request: &str) -> Response {
    let mut s = hawkey.connect();
    send(&mut s, request.as_bytes());
    read_response(&mut s, request.starts_with("HEAD "))
}

/// The only request `backend` received.
fn only_request(backend: &Backend) -> Request {
    let reqs = backend.requests();
    assert_eq!(reqs.len(), 1, "{reqs:#?}");
    reqs.into_iter().next().unwrap()
}

/// Whether the peer has closed the connection (end of stream or reset).
fn is_closed(s: &mut TcpStream) -> bool {
    match s.read(&mut [0u8; 1]) {
        Ok(0) => true,
        Err(e) => e.kind() == io::ErrorKind::ConnectionReset,
        Ok(_) => false,
    }
}

/// A reader that keeps a copy of every byte it passes on, to check the wire format.
struct Tee<'a, R> {
    inner: &'a mut R,
    seen: Vec<u8>,
}

impl<R: Read> Read for Tee<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.seen.extend_from_slice(&buf[..n]);
        Ok(n)
    }
}

fn tee<R: Read>(inner: &mut R) -> Tee<'_, R> {
    Tee {
        inner,
        seen: Vec::new(),
    }
}

const HOP_BY_HOP: [&str; 7] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

// ---------------------------------------------------------------------------- [R1]

#[test]
fn r1_first_matching_route_wins_and_matches_anywhere_in_the_target() {
    let (a, b, c) = (
        Backend::fixed("a"),
        Backend::fixed("b"),
        Backend::fixed("c"),
    );
    let hawkey = Hawkey::start(json!({ "proxy": [
        { "pathRegExp": "^/api/", "authority": [a.authority()] },
        { "pathRegExp": "api", "authority": [b.authority()] },
        { "pathRegExp": "\\?debug", "authority": [c.authority()] },
    ]}));
    for (target, body) in [
        ("/api/x", "a"),
        ("/api/x?debug=1", "a"), // the third route matches too; the first wins
        ("/v1/api", "b"),        // not anchored: a match anywhere counts
        ("/x?q=api", "b"),       // the query is part of the target
        ("/x?debug=1", "c"),
    ] {
        let res = hawkey.get(target);
        assert_eq!((res.status, res.text().as_str()), (200, body), "{target}");
    }
    assert_eq!(a.requests().len(), 2);
    assert_eq!(b.requests().len(), 2);
    assert_eq!(c.requests()[0].target, "/x?debug=1");
}

#[test]
fn r1_no_route_is_404_with_a_plain_text_body_and_its_length() {
    let backend = Backend::fixed("never");
    let hawkey = Hawkey::start(route_config("^/api/", &backend));
    for target in ["/", "/ap", "/x/api/", "/%61pi/"] {
        let res = hawkey.get(target);
        assert_eq!(res.status, 404, "{target}");
        assert_eq!(
            res.header("content-type"),
            Some("text/plain; charset=utf-8")
        );
        let length: usize = res.header("content-length").unwrap().parse().unwrap();
        assert_eq!(length, res.body.len());
        assert!(!res.body.is_empty());
    }
    assert_eq!(backend.accepted(), 0);
}

// ---------------------------------------------------------------------------- [R2]

#[test]
fn r2_host_is_the_backend_authority_as_written_in_the_config() {
    let backend = Backend::fixed("ok");
    let authority = format!("localhost:{}", backend.addr.port());
    let hawkey =
        Hawkey::start(json!({ "proxy": [{ "pathRegExp": "^/", "authority": [authority] }] }));
    let res = exchange(
        &hawkey,
        "GET /h HTTP/1.1\r\nHost: front.example\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(res.status, 200);
    let req = only_request(&backend);
    assert_eq!(req.headers_named("host"), [authority.as_str()]);
}

#[test]
fn r2_preserve_host_forwards_the_client_host() {
    let backend = Backend::fixed("ok");
    let hawkey = Hawkey::start(one_route(&backend, json!({ "preserveHost": true })));
    let res = exchange(
        &hawkey,
        "GET /h HTTP/1.1\r\nHost: front.example:8080\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(res.status, 200);
    let req = only_request(&backend);
    assert_eq!(req.headers_named("host"), ["front.example:8080"]);
    assert_eq!(
        req.headers_named("x-forwarded-host"),
        ["front.example:8080"]
    );
}

#[test]
fn r2_forged_x_forwarded_for_is_replaced_and_forwarding_fields_are_set() {
    let backend = Backend::fixed("ok");
    let hawkey = Hawkey::start(route_config("^/", &backend));
    let res = exchange(
        &hawkey,
        "GET /f HTTP/1.1\r\nHost: front.example:8080\r\nX-Forwarded-For: 6.6.6.6\r\n\
         X-Real-IP: 6.6.6.6\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: evil\r\n\
         x-forwarded-for: 7.7.7.7\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(res.status, 200);
    let req = only_request(&backend);
    assert_eq!(req.headers_named("x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(req.headers_named("x-real-ip"), ["127.0.0.1"]);
    assert_eq!(req.headers_named("x-forwarded-proto"), ["http"]);
    assert_eq!(
        req.headers_named("x-forwarded-host"),
        ["front.example:8080"]
    );
    assert_eq!(req.headers_named("host"), [backend.authority().as_str()]);
}

#[test]
fn r2_trusted_proxy_x_forwarded_for_is_kept_and_appended_as_one_field() {
    let backend = Backend::fixed("ok");
    for trusted in ["127.0.0.1", "127.0.0.0/8"] {
        let mut config = route_config("^/", &backend);
        config["trustedProxies"] = json!([trusted]);
        let hawkey = Hawkey::start(config);
        let res = exchange(
            &hawkey,
            "GET /t HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 1.1.1.1\r\nA: b\r\n\
             X-Forwarded-For: 2.2.2.2, 3.3.3.3\r\nConnection: close\r\n\r\n",
        );
        assert_eq!(res.status, 200);
        let res = exchange(
            &hawkey,
            "GET /none HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
        );
        assert_eq!(res.status, 200);
    }
    let reqs = backend.requests();
    assert_eq!(reqs.len(), 4);
    for pair in reqs.chunks(2) {
        assert_eq!(
            pair[0].headers_named("x-forwarded-for"),
            ["1.1.1.1, 2.2.2.2, 3.3.3.3, 127.0.0.1"]
        );
        assert_eq!(pair[1].headers_named("x-forwarded-for"), ["127.0.0.1"]);
    }
}

#[test]
fn r2_underscore_forms_and_forwarded_from_an_untrusted_client_are_dropped() {
    let backend = Backend::fixed("ok");
    let forged = "GET /u HTTP/1.1\r\nHost: h\r\nX_Forwarded_For: 6.6.6.6\r\nX_Real_IP: 6.6.6.6\r\n\
         X-Forwarded_Proto: https\r\nx_forwarded_host: evil\r\nForwarded: for=6.6.6.6\r\n\
         X-Other_Name: kept\r\nTransfer_Encoding: chunked\r\nConnection: close\r\n\r\n";
    let hawkey = Hawkey::start(route_config("^/", &backend));
    assert_eq!(exchange(&hawkey, forged).status, 200);
    let req = only_request(&backend);
    for name in [
        "x_forwarded_for",
        "x_real_ip",
        "x-forwarded_proto",
        "x_forwarded_host",
        "forwarded",
        "transfer_encoding",
    ] {
        assert_eq!(
            req.header(name),
            None,
            "{name} reached the backend: {}",
            req.head
        );
    }
    assert_eq!(req.headers_named("x-other_name"), ["kept"]);
    assert_eq!(req.headers_named("x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(req.headers_named("x-forwarded-proto"), ["http"]);
    assert_eq!(req.headers_named("x-forwarded-host"), ["h"]);

    // A trusted proxy's own fields are its to send.
    let backend = Backend::fixed("ok");
    let mut config = route_config("^/", &backend);
    config["trustedProxies"] = json!(["127.0.0.1"]);
    let hawkey = Hawkey::start(config);
    assert_eq!(exchange(&hawkey, forged).status, 200);
    let req = only_request(&backend);
    assert_eq!(req.headers_named("forwarded"), ["for=6.6.6.6"]);
    assert_eq!(req.headers_named("x_forwarded_for"), ["6.6.6.6"]);
    assert_eq!(
        req.header("transfer_encoding"),
        None,
        "framing in any spelling: {}",
        req.head
    );
}

#[test]
fn r2_request_trailers_keep_only_the_fields_allowed_in_a_trailer() {
    let backend = Backend::fixed("ok");
    let hawkey = Hawkey::start(route_config("^/", &backend));
    let res = exchange(
        &hawkey,
        "POST /t HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nConnection: close, X-Secret\r\n\r\n\
         3\r\nabc\r\n0\r\nHost: evil\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\
         X-Forwarded-For: 6.6.6.6\r\nX_Real_IP: 6.6.6.6\r\nConnection: close\r\nKeep-Alive: 1\r\n\
         X-Secret: leaked\r\nX-Checksum: 900150983cd24fb0\r\n\r\n",
    );
    assert_eq!(res.status, 200);
    let req = only_request(&backend);
    assert_eq!(req.body, b"abc");
    assert_eq!(
        req.trailers,
        [("x-checksum".to_string(), "900150983cd24fb0".to_string())]
    );
}

#[test]
fn r2_http10_client_without_host_gets_no_x_forwarded_host() {
    let backend = Backend::fixed("ok");
    let hawkey = Hawkey::start(route_config("^/", &backend));
    assert_eq!(exchange(&hawkey, "GET /a HTTP/1.0\r\n\r\n").status, 200);
    assert_eq!(
        exchange(&hawkey, "GET /b HTTP/1.0\r\nHost: old.example\r\n\r\n").status,
        200
    );
    let reqs = backend.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[0].header("x-forwarded-host"), None, "{}", reqs[0].head);
    assert_eq!(
        reqs[0].headers_named("host"),
        [backend.authority().as_str()]
    );
    assert_eq!(reqs[1].headers_named("x-forwarded-host"), ["old.example"]);
}

#[test]
fn r2_request_line_carries_the_route_http_version() {
    let (old, new) = (Backend::fixed("old"), Backend::fixed("new"));
    let hawkey = Hawkey::start(json!({ "proxy": [
        { "pathRegExp": "^/old", "authority": [old.authority()], "httpVersion": "1.0" },
        { "pathRegExp": "^/new", "authority": [new.authority()] },
    ]}));
    let res = exchange(
        &hawkey,
        "GET /old?x HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    );
    assert_eq!((res.status, res.text().as_str()), (200, "old"));
    let res = exchange(&hawkey, "GET /new?y HTTP/1.0\r\n\r\n");
    assert_eq!((res.status, res.text().as_str()), (200, "new"));
    let req = only_request(&old);
    assert!(
        req.head.starts_with("GET /old?x HTTP/1.0\r\n"),
        "{}",
        req.head
    );
    let req = only_request(&new);
    assert!(
        req.head.starts_with("GET /new?y HTTP/1.1\r\n"),
        "{}",
        req.head
    );
}

#[test]
fn r2_hop_by_hop_request_fields_and_those_named_in_connection_are_removed() {
    let backend = Backend::fixed("ok");
    let hawkey = Hawkey::start(route_config("^/", &backend));
    let res = exchange(
        &hawkey,
        "GET /hop HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, X-Secret\r\n\
         connection: x-other\r\nX-Secret: 1\r\nX-OTHER: 2\r\nKeep-Alive: timeout=5\r\n\
         Proxy-Connection: keep-alive\r\nTE: trailers\r\nTrailer: X-T\r\n\
         Upgrade: websocket\r\nX-Kept: yes\r\n\r\n",
    );
    assert_eq!(res.status, 200);
    let req = only_request(&backend);
    for name in HOP_BY_HOP.iter().chain(&["x-secret", "x-other"]) {
        assert_eq!(
            req.header(name),
            None,
            "{name} reached the backend:\n{}",
            req.head
        );
    }
    assert_eq!(req.headers_named("x-kept"), ["yes"]);
}

#[test]
fn r2_fields_are_kept_in_order_with_duplicates_and_re_serialised() {
    let backend = Backend::fixed("ok");
    let hawkey = Hawkey::start(route_config("^/", &backend));
    let res = exchange(
        &hawkey,
        "GET /d HTTP/1.1\r\nHost: h\r\nA: one\r\nB:two\r\nA:   three  \r\nX-Tab:\tv\t\r\n\
         Connection: close\r\n\r\n",
    );
    assert_eq!(res.status, 200);
    let req = only_request(&backend);
    assert!(
        req.head
            .contains("\r\nA: one\r\nB: two\r\nA: three\r\nX-Tab: v\r\n"),
        "{:?}",
        req.head
    );
}

// ---------------------------------------------------------------------------- [R3]

#[test]
fn r3_hop_by_hop_response_fields_are_removed_and_the_rest_kept_in_order() {
    let backend = replying(
        "HTTP/1.1 200 OK\r\nConnection: X-Secret, keep-alive\r\nX-Secret: 1\r\n\
         Keep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nTE: trailers\r\n\
         Trailer: X-T\r\nUpgrade: h2c\r\nSet-Cookie: a=1\r\nX-Spaced:    v  w   \r\n\
         Set-Cookie: b=2\r\nContent-Length: 2\r\n\r\nok",
    );
    let hawkey = Hawkey::start(route_config("^/", &backend));
    let mut s = hawkey.connect();
    send(&mut s, b"GET /r HTTP/1.1\r\nHost: h\r\n\r\n");
    let res = read_response(&mut s, false);
    assert_eq!((res.status, res.text().as_str()), (200, "ok"));
    for name in HOP_BY_HOP.iter().chain(&["x-secret"]) {
        assert_eq!(
            res.header(name),
            None,
            "{name} reached the client:\n{}",
            res.head
        );
    }
    assert_eq!(res.headers_named("set-cookie"), ["a=1", "b=2"]);
    assert!(
        res.head.contains("\r\nX-Spaced: v  w\r\n"),
        "{:?}",
        res.head
    );
    // The client's connection is still usable.
    send(&mut s, b"GET /r2 HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(read_response(&mut s, false).status, 200);
}

#[test]
fn r3_reason_phrase_is_relayed_as_written() {
    let backend = Backend::start(|r| {
        Reply::Bytes(match r.target.as_str() {
            "/fine" => b"HTTP/1.1 200 Very Fine\r\nContent-Length: 0\r\n\r\n".to_vec(),
            _ => b"HTTP/1.1 404 Nothing Here, Sorry\r\nContent-Length: 0\r\n\r\n".to_vec(),
        })
    });
    let hawkey = Hawkey::start(route_config("^/", &backend));
    let res = hawkey.get("/fine");
    assert_eq!((res.status, res.reason.as_str()), (200, "Very Fine"));
    let res = hawkey.get("/gone");
    assert_eq!(
        (res.status, res.reason.as_str()),
        (404, "Nothing Here, Sorry")
    );
}

#[test]
fn r3_chunked_request_body_with_trailers_is_re_encoded_for_an_http11_backend() {
    let (tx, rx) = mpsc::channel();
    let backend = Backend::raw(move |mut s, _| {
        let head = String::from_utf8(read_head_bytes(&mut s).unwrap()).unwrap();
        let mut wire = tee(&mut s);
        let (body, trailers) = read_chunked(&mut wire);
        let raw = String::from_utf8_lossy(&wire.seen).into_owned();
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        let _ = tx.send((head, raw, body, trailers));
    });
    let hawkey = Hawkey::start(route_config("^/", &backend));
    let res = exchange(
        &hawkey,
        "POST /up HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTrailer: X-Trailer\r\n\
         Connection: close\r\n\r\n4;ext=1\r\nWiki\r\n0005\r\npedia\r\n0000A\r\n0123456789\r\n\
         0\r\nX-Trailer: t1\r\n\r\n",
    );
    assert_eq!(res.status, 200);
    let (head, raw, body, trailers) = rx.recv_timeout(TIMEOUT).unwrap();
    assert!(head.starts_with("POST /up HTTP/1.1\r\n"), "{head}");
    let lower = head.to_ascii_lowercase();
    assert_eq!(
        lower.matches("transfer-encoding: chunked\r\n").count(),
        1,
        "{head}"
    );
    assert!(!lower.contains("content-length"), "{head}");
    assert!(!lower.contains("\r\ntrailer:"), "{head}");
    assert_eq!(body, b"Wikipedia0123456789");
    assert_eq!(trailers, [("x-trailer".to_string(), "t1".to_string())]);
    assert!(
        !raw.contains("ext"),
        "chunk extension passed through: {raw:?}"
    );
    assert!(
        !raw.contains("0005") && !raw.contains("0000A"),
        "sizes copied: {raw:?}"
    );
}

const CHUNKED_REPLY: &str = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-T\r\n\r\n\
     4;name=val\r\nWiki\r\n0005\r\npedia\r\n0\r\nX-T: 1\r\n\r\n";

#[test]
fn r3_chunked_response_is_relayed_chunked_to_an_http11_client_without_extensions() {
    let backend = replying(CHUNKED_REPLY);
    let hawkey = Hawkey::start(route_config("^/", &backend));
    let mut s = hawkey.connect();
    send(&mut s, b"GET /c HTTP/1.1\r\nHost: h\r\n\r\n");
    let mut wire = tee(&mut s);
    let res = read_response(&mut wire, false);
    let raw = String::from_utf8_lossy(&wire.seen).into_owned();
    assert_eq!(res.status, 200);
    assert!(res.chunked, "{raw}");
    assert_eq!(res.headers_named("transfer-encoding"), ["chunked"]);
    assert_eq!(res.body, b"Wikipedia");
    assert_eq!(res.trailers, [("x-t".to_string(), "1".to_string())]);
    assert!(
        !raw.contains("name=val"),
        "chunk extension passed through: {raw:?}"
    );
    assert!(!raw.contains("0005"), "size line copied: {raw:?}");
    // The connection stays usable after the terminating chunk.
    send(
        &mut s,
        b"GET /c2 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(read_response(&mut s, false).body, b"Wikipedia");
}

#[test]
fn r3_chunked_response_is_close_delimited_for_an_http10_client() {
    let backend = replying(CHUNKED_REPLY);
    let hawkey = Hawkey::start(route_config("^/", &backend));
    let mut s = hawkey.connect();
    // Even a keep-alive HTTP/1.0 client: a close-delimited body ends the connection.
    send(&mut s, b"GET /c HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    let res = read_response(&mut s, false); // no length: reads until the close
    assert_eq!(res.status, 200);
    assert_eq!(res.header("transfer-encoding"), None, "{}", res.head);
    assert_eq!(res.header("content-length"), None, "{}", res.head);
    assert_eq!(res.body, b"Wikipedia");
}

#[test]
fn r3_close_delimited_backend_response_arrives_complete() {
    let mut payload = vec![0u8; 100_000];
    XorShift(7).fill(&mut payload);
    let sent = payload.clone();
    let backend = Backend::raw(move |mut s, conn| {
        if read_request(&mut s, conn).is_some() {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nX-Framing: none\r\n\r\n");
            let _ = s.write_all(&sent);
        } // dropped: the close ends the body
    });
    let hawkey = Hawkey::start(route_config("^/", &backend));
    let res = exchange(&hawkey, "GET /c HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(res.status, 200);
    assert!(
        res.body == payload,
        "HTTP/1.1 client: {} bytes",
        res.body.len()
    );
    let res = exchange(&hawkey, "GET /c HTTP/1.0\r\n\r\n");
    assert_eq!(res.status, 200);
    assert_eq!(res.header("transfer-encoding"), None);
    assert!(
        res.body == payload,
        "HTTP/1.0 client: {} bytes",
        res.body.len()
    );
}

#[test]
fn r3_no_body_is_relayed_for_head_204_and_304() {
    let backend = Backend::start(|r| {
        Reply::Bytes(match (r.method.as_str(), r.target.as_str()) {
            ("HEAD", _) => b"HTTP/1.1 200 OK\r\nContent-Length: 42\r\n\r\n".to_vec(),
            (_, "/204") => b"HTTP/1.1 204 No Content\r\n\r\n".to_vec(),
            (_, "/304") => {
                b"HTTP/1.1 304 Not Modified\r\nETag: \"e\"\r\nContent-Length: 5\r\n\r\n".to_vec()
            }
            _ => b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nnext".to_vec(),
        })
    });
    let mut config = route_config("^/", &backend);
    config["timeouts"] = json!({ "upstreamMs": 3000 });
    let hawkey = Hawkey::start(config);
    let mut s = hawkey.connect();
    send(&mut s, b"HEAD /h HTTP/1.1\r\nHost: h\r\n\r\n");
    let res = read_response(&mut s, true);
    assert_eq!(res.status, 200);
    assert_eq!(res.header("content-length"), Some("42"), "{}", res.head);
    assert_eq!(res.header("transfer-encoding"), None, "{}", res.head);
    for target in ["/204", "/304"] {
        send(
            &mut s,
            format!("GET {target} HTTP/1.1\r\nHost: h\r\n\r\n").as_bytes(),
        );
        let res = read_response(&mut s, false);
        assert_eq!(res.status.to_string(), target[1..]);
        assert_eq!(res.header("transfer-encoding"), None, "{}", res.head);
    }
    // Had any body bytes followed those heads, this answer would not parse as "next".
    send(&mut s, b"GET /n HTTP/1.1\r\nHost: h\r\n\r\n");
    let res = read_response(&mut s, false);
    assert_eq!((res.status, res.text().as_str()), (200, "next"));
}

#[test]
fn r3_http10_backend_gets_an_http10_request_line_and_connection_keep_alive() {
    let backend = Backend::fixed("ok");
    let hawkey = Hawkey::start(one_route(&backend, json!({ "httpVersion": "1.0" })));
    let res = exchange(
        &hawkey,
        "POST /ten HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc",
    );
    assert_eq!(res.status, 200);
    let req = only_request(&backend);
    assert_eq!(req.version, "HTTP/1.0");
    assert_eq!(req.headers_named("connection"), ["keep-alive"]);
    assert_eq!(req.headers_named("content-length"), ["3"]);
    assert_eq!(req.body, b"abc");
}

#[test]
fn r3_chunked_request_body_for_an_http10_backend_is_411() {
    let backend = Backend::fixed("never");
    let hawkey = Hawkey::start(one_route(&backend, json!({ "httpVersion": "1.0" })));
    let res = exchange(
        &hawkey,
        "POST /ten HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    );
    assert_eq!(res.status, 411);
    assert_eq!(
        res.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(backend.accepted(), 0);
}

#[test]
fn r3_no_content_length_on_1xx_and_204() {
    let backend = replying(
        "HTTP/1.1 103 Early Hints\r\nContent-Length: 0\r\nLink: </a.css>\r\n\r\n\
         HTTP/1.1 204 No Content\r\nContent-Length: 0\r\nX-A: 1\r\n\r\n",
    );
    let hawkey = Hawkey::start(route_config("^/", &backend));
    let mut s = hawkey.connect();
    send(&mut s, b"DELETE /x HTTP/1.1\r\nHost: h\r\n\r\n");
    let interim = read_response(&mut s, false);
    assert_eq!(interim.status, 103, "{}", interim.head);
    assert_eq!(interim.header("content-length"), None, "{}", interim.head);
    let res = read_response(&mut s, false);
    assert_eq!(res.status, 204, "{}", res.head);
    assert_eq!(res.header("content-length"), None, "{}", res.head);
    assert_eq!(res.header("x-a"), Some("1"));
}

/// A backend that sends `interim` 103 heads, then a 200.
fn hinting(interim: usize) -> Backend {
    Backend::start(move |_| {
        let mut out = "HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n".repeat(interim);
        out.push_str("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        Reply::Bytes(out.into_bytes())
    })
}

#[test]
fn r3_sixteen_interim_responses_pass_and_a_seventeenth_is_a_502() {
    let backend = hinting(16);
    let hawkey = Hawkey::start(route_config("^/", &backend));
    let mut s = hawkey.connect();
    send(&mut s, b"GET /16 HTTP/1.1\r\nHost: h\r\n\r\n");
    for i in 0..16 {
        assert_eq!(read_response(&mut s, false).status, 103, "interim {i}");
    }
    let res = read_response(&mut s, false);
    assert_eq!((res.status, res.text().as_str()), (200, "ok"));

    let backend = hinting(17);
    let hawkey = Hawkey::start(route_config("^/", &backend));
    let mut s = hawkey.connect();
    send(&mut s, b"GET /17 HTTP/1.1\r\nHost: h\r\n\r\n");
    let mut interim = 0;
    let res = loop {
        let res = read_response(&mut s, false);
        if res.status != 103 {
            break res;
        }
        interim += 1;
    };
    assert_eq!(interim, 16);
    assert_local(&res, 502, "the 17th interim response");
}

#[test]
fn r3_endless_interim_responses_end_in_a_502() {
    // A 103 every 50 ms, for ever: the exchange must not be held without limit.
    let backend = Backend::raw(|mut s, _| {
        if read_head_bytes(&mut s).is_none() {
            return;
        }
        while s.write_all(b"HTTP/1.1 103 Early Hints\r\n\r\n").is_ok() {
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    let hawkey = Hawkey::start(route_config("^/", &backend));
    let started = Instant::now();
    let res = exchange(&hawkey, "GET /forever HTTP/1.0\r\n\r\n");
    assert_local(&res, 502, "endless 103s");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn r3_http10_request_with_transfer_encoding_is_answered_and_closed() {
    let backend = echo();
    let hawkey = Hawkey::start(route_config("^/", &backend));
    let mut s = hawkey.connect();
    send(
        &mut s,
        b"POST /te HTTP/1.0\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n\
          3\r\nabc\r\n0\r\n\r\n",
    );
    let res = read_response(&mut s, false);
    assert_eq!((res.status, res.text().as_str()), (200, "POST /te abc"));
    assert_eq!(res.header("connection"), Some("close"), "{}", res.head);
    assert!(is_closed(&mut s), "the connection stayed open");
}

/// A backend that, on a request with `Expect: 100-continue`, sends `100 Continue`
/// (when `send_100`), reports the head on `heads`, then reads the body and echoes it.
fn expecting_backend(send_100: bool, heads: mpsc::Sender<String>) -> Backend {
    Backend::raw(move |mut s, _| {
        let Some(head) = read_head_bytes(&mut s) else {
            return;
        };
        let head = String::from_utf8(head).unwrap();
        let length: usize = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .map(|v| v.trim().parse().unwrap())
            })
            .unwrap();
        if send_100 && s.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").is_err() {
            return;
        }
        let _ = heads.send(head);
        let mut body = vec![0; length];
        if s.read_exact(&mut body).is_ok() {
            let reply = format!("HTTP/1.1 200 OK\r\nContent-Length: {length}\r\n\r\n");
            let _ = s.write_all(reply.as_bytes());
            let _ = s.write_all(&body);
        }
    })
}

const EXPECTING: &str = "Host: h\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n";

#[test]
fn r3_backend_100_continue_is_relayed_to_an_http11_client() {
    let (tx, rx) = mpsc::channel();
    let backend = expecting_backend(true, tx);
    let hawkey = Hawkey::start(route_config("^/", &backend));
    let mut s = hawkey.connect();
    send(&mut s, format!("PUT /e HTTP/1.1\r\n{EXPECTING}").as_bytes());
    // The client waits for the 100 before it sends its body.
    let interim = read_response(&mut s, false);
    assert_eq!((interim.status, interim.reason.as_str()), (100, "Continue"));
    send(&mut s, b"hello");
    let res = read_response(&mut s, false);
    assert_eq!((res.status, res.text().as_str()), (200, "hello"));
    let head = rx.recv_timeout(TIMEOUT).unwrap();
    assert!(head.contains("\r\nExpect: 100-continue\r\n"), "{head}");
}

#[test]
fn r3_interim_heads_before_the_100_continue_are_relayed_and_the_body_still_sent() {
    let backend = Backend::raw(|mut s, _| {
        let Some(head) = read_head_bytes(&mut s) else {
            return;
        };
        assert!(String::from_utf8_lossy(&head).contains("Expect: 100-continue"));
        let _ = s.write_all(b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n");
        let _ = s.write_all(b"HTTP/1.1 100 Continue\r\n\r\n");
        let mut body = [0u8; 5];
        if s.read_exact(&mut body).is_ok() {
            let _ = s.write_all(&ok_bytes(&String::from_utf8_lossy(&body)));
        }
    });
    let hawkey = Hawkey::start(route_config("^/", &backend));
    let mut s = hawkey.connect();
    send(&mut s, format!("PUT /e HTTP/1.1\r\n{EXPECTING}").as_bytes());
    assert_eq!(read_response(&mut s, false).status, 103);
    assert_eq!(read_response(&mut s, false).status, 100);
    send(&mut s, b"hello");
    let res = read_response(&mut s, false);
    assert_eq!((res.status, res.text().as_str()), (200, "hello"));
}

#[test]
fn r3_backend_100_continue_is_not_shown_to_an_http10_client() {
    let (tx, rx) = mpsc::channel();
    let backend = expecting_backend(true, tx);
    let hawkey = Hawkey::start(route_config("^/", &backend));
    let mut s = hawkey.connect();
    send(&mut s, format!("PUT /e HTTP/1.0\r\n{EXPECTING}").as_bytes());
    rx.recv_timeout(TIMEOUT).unwrap(); // the backend has sent its 100
    send(&mut s, b"hello");
    let res = read_response(&mut s, false);
    assert_eq!(
        (res.status, res.text().as_str()),
        (200, "hello"),
        "{}",
        res.head
    );
}

#[test]
fn r3_no_100_continue_is_invented_when_the_backend_sends_none() {
    let (tx, rx) = mpsc::channel();
    let backend = expecting_backend(false, tx);
    let hawkey = Hawkey::start(route_config("^/", &backend));
    let mut s = hawkey.connect();
    send(&mut s, format!("PUT /e HTTP/1.1\r\n{EXPECTING}").as_bytes());
    rx.recv_timeout(TIMEOUT).unwrap(); // the head reached the backend, which sent no 100
    send(&mut s, b"hello");
    let res = read_response(&mut s, false);
    assert_eq!(
        (res.status, res.text().as_str()),
        (200, "hello"),
        "{}",
        res.head
    );
}

#[test]
fn r3_interim_103_is_relayed_to_an_http11_client_and_dropped_for_an_http10_client() {
    let backend = replying(
        "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n\
         HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    );
    let hawkey = Hawkey::start(route_config("^/", &backend));
    let mut s = hawkey.connect();
    send(&mut s, b"GET /hint HTTP/1.1\r\nHost: h\r\n\r\n");
    let interim = read_response(&mut s, false);
    assert_eq!(interim.status, 103, "{}", interim.head);
    assert_eq!(interim.header("link"), Some("</a.css>; rel=preload"));
    let res = read_response(&mut s, false);
    assert_eq!((res.status, res.text().as_str()), (200, "ok"));
    let res = exchange(&hawkey, "GET /hint HTTP/1.0\r\n\r\n");
    assert_eq!(
        (res.status, res.text().as_str()),
        (200, "ok"),
        "{}",
        res.head
    );
}

// ---------------------------------------------------------------------------- [R8]

#[test]
fn r8_pipelined_requests_are_answered_in_order() {
    let backend = echo();
    let hawkey = Hawkey::start(route_config("^/p/", &backend));
    let mut s = hawkey.connect();
    send(
        &mut s,
        b"GET /p/1 HTTP/1.1\r\nHost: h\r\n\r\n\
          POST /p/2 HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello\
          GET /nowhere HTTP/1.1\r\nHost: h\r\n\r\n\
          GET /p/3 HTTP/1.1\r\nHost: h\r\n\r\n\
          GET /p/4 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    );
    let mut got = Vec::new();
    for _ in 0..5 {
        let res = read_response(&mut s, false);
        got.push((res.status, res.text()));
    }
    assert_eq!(
        got[..2],
        [(200, "GET /p/1 ".into()), (200, "POST /p/2 hello".into())]
    );
    assert_eq!(got[2].0, 404);
    assert_eq!(
        got[3..],
        [(200, "GET /p/3 ".into()), (200, "GET /p/4 ".into())]
    );
    assert!(is_closed(&mut s));
}

/// A GET of exactly `len` bytes (padded with a field), for requests that end at a
/// read boundary.
fn get_of_length(target: &str, len: usize) -> String {
    let bare = format!("GET {target} HTTP/1.1\r\nHost: h\r\nX-Pad: \r\n\r\n");
    assert!(bare.len() <= len);
    let pad = "p".repeat(len - bare.len());
    format!("GET {target} HTTP/1.1\r\nHost: h\r\nX-Pad: {pad}\r\n\r\n")
}

// See: issue 12. The first request ends exactly where a read of hawkey's buffer ends;
// the second, already sent, must be answered without waiting for more input [R8].
#[test]
fn r8_a_pipelined_request_behind_one_that_ends_at_a_read_boundary_is_answered_at_once() {
    let backend = echo();
    let mut config = route_config("^/", &backend);
    config["timeouts"] = json!({ "keepAliveMs": 3000 });
    let hawkey = Hawkey::start(config);
    for len in [1024, 2048, 4096, 16384, 32768] {
        let mut s = hawkey.connect();
        let both = get_of_length("/first", len) + "GET /second HTTP/1.1\r\nHost: h\r\n\r\n";
        let sent = Instant::now();
        send(&mut s, both.as_bytes());
        assert_eq!(read_response(&mut s, false).text(), "GET /first ", "{len}");
        assert_eq!(read_response(&mut s, false).text(), "GET /second ", "{len}");
        let waited = sent.elapsed();
        assert!(
            waited < Duration::from_secs(1),
            "{len}: both answered after {waited:?}"
        );
    }
}

#[test]
fn r8_http11_connection_is_persistent_unless_connection_close() {
    let backend = echo();
    let hawkey = Hawkey::start(route_config("^/", &backend));
    let mut s = hawkey.connect();
    for i in 0..3 {
        send(
            &mut s,
            format!("GET /k/{i} HTTP/1.1\r\nHost: h\r\n\r\n").as_bytes(),
        );
        let res = read_response(&mut s, false);
        assert_eq!(res.text(), format!("GET /k/{i} "));
        assert_eq!(res.header("connection"), None, "{}", res.head);
    }
    send(
        &mut s,
        b"GET /last HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    );
    let res = read_response(&mut s, false);
    assert_eq!(res.text(), "GET /last ");
    assert_eq!(res.header("connection"), Some("close"));
    assert!(is_closed(&mut s));
}

#[test]
fn r8_http10_connection_is_persistent_only_with_keep_alive() {
    let backend = echo();
    let hawkey = Hawkey::start(route_config("^/", &backend));
    let mut s = hawkey.connect();
    for i in 0..3 {
        send(
            &mut s,
            format!("GET /k/{i} HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").as_bytes(),
        );
        let res = read_response(&mut s, false);
        assert_eq!(res.text(), format!("GET /k/{i} "));
        assert_eq!(res.header("connection"), Some("keep-alive"), "{}", res.head);
    }
    send(&mut s, b"GET /last HTTP/1.0\r\n\r\n");
    let res = read_response(&mut s, false);
    assert_eq!(res.text(), "GET /last ");
    assert!(is_closed(&mut s));
}

#[test]
fn r8_body_of_a_locally_answered_request_is_not_taken_as_the_next_request() {
    let backend = echo();
    let hawkey = Hawkey::start(route_config("^/api/", &backend));
    let smuggled = "GET /api/smuggled HTTP/1.1\r\nHost: h\r\n\r\n";
    let bodies = [
        format!("Content-Length: {}\r\n\r\n{smuggled}", smuggled.len()),
        format!(
            "Transfer-Encoding: chunked\r\n\r\n{:x}\r\n{smuggled}\r\n0\r\n\r\n",
            smuggled.len()
        ),
    ];
    for body in bodies {
        let mut s = hawkey.connect();
        let wire = format!(
            "POST /nowhere HTTP/1.1\r\nHost: h\r\n{body}\
             GET /api/real HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
        );
        send(&mut s, wire.as_bytes());
        assert_eq!(read_response(&mut s, false).status, 404);
        // Either the proper answer to the second request, or a closed connection.
        if let Some(res) = try_read_response(&mut s, false) {
            assert_eq!((res.status, res.text().as_str()), (200, "GET /api/real "));
        }
    }
    let targets: Vec<String> = backend.requests().into_iter().map(|r| r.target).collect();
    assert!(!targets.iter().any(|t| t == "/api/smuggled"), "{targets:?}");
}

#[test]
fn r8_200_concurrent_clients_each_get_their_own_answers() {
    const CLIENTS: usize = 200;
    const REQUESTS: usize = 20;
    let backend = echo();
    let hawkey = Hawkey::start(route_config("^/c/", &backend));
    let addr = hawkey.addr;
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            std::thread::spawn(move || {
                let mut s = connect(addr);
                for j in 0..REQUESTS {
                    let close = if j + 1 == REQUESTS {
                        "Connection: close\r\n"
                    } else {
                        ""
                    };
                    let req = format!("GET /c/{i}/{j} HTTP/1.1\r\nHost: h\r\n{close}\r\n");
                    send(&mut s, req.as_bytes());
                    let res = read_response(&mut s, false);
                    assert_eq!(res.status, 200, "client {i} request {j}");
                    assert_eq!(
                        res.text(),
                        format!("GET /c/{i}/{j} "),
                        "client {i} request {j}"
                    );
                }
            })
        })
        .collect();
    let failed = clients.into_iter().filter_map(|c| c.join().err()).count();
    assert_eq!(failed, 0, "{failed} clients failed");
    assert_eq!(backend.requests().len(), CLIENTS * REQUESTS);
}

#[test]
fn r8_idle_client_connections_do_not_hold_workers() {
    let backend = echo();
    let mut config = route_config("^/", &backend);
    config["workers"] = json!(2);
    let hawkey = Hawkey::start(config);
    // More idle keep-alive clients than workers, each after one answered request.
    let idle: Vec<TcpStream> = (0..6)
        .map(|i| {
            let mut s = hawkey.connect();
            let res = get_on(&mut s, &format!("/idle/{i}"));
            assert_eq!(res.text(), format!("GET /idle/{i} "));
            s
        })
        .collect();
    let res = hawkey.get("/fresh");
    assert_eq!((res.status, res.text().as_str()), (200, "GET /fresh "));
    // And the idle ones are still served when they speak again.
    for (i, mut s) in idle.into_iter().enumerate() {
        let res = get_on(&mut s, &format!("/again/{i}"));
        assert_eq!(res.text(), format!("GET /again/{i} "));
    }
}

#[test]
fn r8_idle_client_connection_is_closed_after_keep_alive_ms() {
    let backend = echo();
    let mut config = route_config("^/", &backend);
    config["timeouts"] = json!({ "keepAliveMs": 300 });
    let hawkey = Hawkey::start(config);
    let mut s = hawkey.connect();
    assert_eq!(get_on(&mut s, "/k").status, 200);
    let idle_since = Instant::now();
    assert!(is_closed(&mut s), "still open after keepAliveMs");
    let idle = idle_since.elapsed();
    assert!(
        (Duration::from_millis(250)..Duration::from_secs(5)).contains(&idle),
        "closed after {idle:?}"
    );
}
