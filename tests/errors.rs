//! Errors and limits [E], from outside: each row of the SPEC's table, with the status,
//! the `text/plain; charset=utf-8` body and its `Content-Length`, and whether the
//! connection is closed after the answer. After every nasty exchange hawkey must still
//! be running and serving a good request (a failure in one connection never kills it).
//! Also the idle timeouts of [R8] (`keepAliveMs`, `headerMs`) and a malformed chunked
//! request body [R3].

mod common;
use common::*;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// hawkey with the route `^/ok` to a backend answering `200 fine`, the routes
/// `extra_routes` (pattern, authority) after it, and the top-level keys of `extra`.
fn start(extra_routes: &[(&str, String)], extra: Value) -> (Hawkey, Backend) {
    let ok = Backend::fixed("fine");
    let mut routes = vec![json!({ "pathRegExp": "^/ok", "authority": [ok.authority()] })];
    for (pattern, authority) in extra_routes {
        routes.push(json!({ "pathRegExp": pattern, "authority": [authority] }));
    }
    let mut config = json!({ "proxy": routes });
    for (key, value) in extra.as_object().expect("extra is an object") {
        config[key] = value.clone();
    }
    (Hawkey::start(config), ok)
}

/// Sends `wire` on a new connection and reads one response.
fn exchange(hawkey: &Hawkey, wire: &[u8]) -> (Response, TcpStream) {
    let mut s = hawkey.connect();
    send(&mut s, wire);
    let res = read_response(&mut s, false);
    (res, s)
}

/// The connection is closed: reading returns end of stream, without any more bytes.
fn assert_closed(s: &mut TcpStream, what: &str) {
    let mut rest = Vec::new();
    match s.read_to_end(&mut rest) {
        Ok(0) => {}
        Ok(n) => panic!(
            "{what}: {n} more bytes instead of a close: {:?}",
            String::from_utf8_lossy(&rest)
        ),
        Err(e) => panic!("{what}: not closed cleanly: {e}"),
    }
}

/// The connection is still usable: a good request on it gets 200.
fn assert_open(s: &mut TcpStream, what: &str) {
    send(s, b"GET /ok HTTP/1.1\r\nHost: test\r\n\r\n");
    let res = try_read_response(s, false)
        .unwrap_or_else(|| panic!("{what}: connection closed, expected keep-alive"));
    assert_eq!(res.status, 200, "{what}: {}", res.head);
}

/// hawkey survived whatever came before and still answers a good request.
fn assert_still_serves(hawkey: &mut Hawkey) {
    assert!(hawkey.alive(), "hawkey exited: {}", hawkey.stderr());
    let res = hawkey.get("/ok");
    assert_eq!(res.status, 200, "{}", res.head);
    assert_eq!(res.body, b"fine");
}

/// Every `(what, wire)` gets `status` and a closed connection; hawkey keeps serving.
fn assert_each_refused(cases: &[(&str, &[u8])], status: u16) {
    let (mut hawkey, backend) = start(&[], json!({}));
    for (what, wire) in cases {
        let (res, mut s) = exchange(&hawkey, wire);
        assert_local(&res, status, what);
        assert_closed(&mut s, what);
        assert_still_serves(&mut hawkey);
    }
    // Only the good requests reached the backend.
    let targets: Vec<String> = backend.requests().into_iter().map(|r| r.target).collect();
    assert!(targets.iter().all(|t| t == "/ok"), "{targets:?}");
    assert_eq!(targets.len(), cases.len());
}

/// A port on 127.0.0.1 where nothing listens (bound, then released).
fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn e_malformed_request_line_is_400_and_close() {
    assert_each_refused(
        &[
            ("HTTP/0.9 line", b"GET /\r\n\r\n"),
            (
                "double space before target",
                b"GET  /ok HTTP/1.1\r\nHost: x\r\n\r\n",
            ),
            (
                "double space before version",
                b"GET /ok  HTTP/1.1\r\nHost: x\r\n\r\n",
            ),
            ("trailing space", b"GET /ok HTTP/1.1 \r\nHost: x\r\n\r\n"),
            ("four parts", b"GET /ok HTTP/1.1 x\r\nHost: x\r\n\r\n"),
            ("no target", b"GET HTTP/1.1\r\nHost: x\r\n\r\n"),
            ("garbage", b"\x16\x03\x01\x02\x00\r\n\r\n"),
            ("lower-case version", b"GET /ok http/1.1\r\nHost: x\r\n\r\n"),
        ],
        400,
    );
}

#[test]
fn e_http09_request_line_alone_is_400_without_waiting_for_headers() {
    // An HTTP/0.9 client sends `GET /` CRLF and nothing more: there is no header
    // section to wait for, so the line alone must be refused [E], not left to run
    // into headerMs (a 408 after 10 s).
    let (mut hawkey, _backend) = start(&[], json!({}));
    let mut s = hawkey.connect();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    send(&mut s, b"GET /\r\n");
    let started = Instant::now();
    let res = try_read_response(&mut s, false)
        .expect("no answer within 3 s to a lone HTTP/0.9 request line");
    assert_local(&res, 400, "GET / alone");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_closed(&mut s, "GET / alone");
    assert_still_serves(&mut hawkey);
}

#[test]
fn e_ambiguous_framing_is_400_and_close() {
    assert_each_refused(
        &[
            (
                "CL and TE",
                b"POST /ok HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            ),
            (
                "TE and CL",
                b"POST /ok HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
            ),
            (
                "repeated CL, different",
                b"POST /ok HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
            ),
            (
                "repeated CL, equal",
                b"POST /ok HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nab",
            ),
            (
                "CL list in one field",
                b"POST /ok HTTP/1.1\r\nHost: x\r\nContent-Length: 2, 2\r\n\r\nab",
            ),
            ("CL +2", b"POST /ok HTTP/1.1\r\nHost: x\r\nContent-Length: +2\r\n\r\nab"),
            ("CL -1", b"POST /ok HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n"),
            ("CL hex", b"POST /ok HTTP/1.1\r\nHost: x\r\nContent-Length: 0x2\r\n\r\nab"),
            ("CL empty", b"POST /ok HTTP/1.1\r\nHost: x\r\nContent-Length:\r\n\r\n"),
            ("CL 2 2", b"POST /ok HTTP/1.1\r\nHost: x\r\nContent-Length: 2 2\r\n\r\nab"),
            (
                "CL overflow",
                b"POST /ok HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n",
            ),
            (
                "TE gzip",
                b"POST /ok HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
            ),
            (
                "TE chunked, gzip",
                b"POST /ok HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n",
            ),
            (
                "TE chunked, chunked",
                b"POST /ok HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n",
            ),
            (
                "TE chunked in two fields",
                b"POST /ok HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            ),
        ],
        400,
    );
}

#[test]
fn e_coding_before_chunked_is_501_and_close() {
    assert_each_refused(
        &[
            (
                "gzip, chunked",
                b"POST /ok HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
            ),
            (
                "gzip then chunked in two fields",
                b"POST /ok HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            ),
        ],
        501,
    );
}

#[test]
fn e_chunked_in_any_case_is_accepted() {
    let (mut hawkey, backend) = start(&[], json!({}));
    for te in ["Chunked", "CHUNKED", "chunked"] {
        let wire = format!(
            "POST /ok HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: {te}\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
        );
        let (res, mut s) = exchange(&hawkey, wire.as_bytes());
        assert_eq!(res.status, 200, "{te}: {}", res.head);
        assert_open(&mut s, te);
    }
    let bodies: Vec<Vec<u8>> = backend
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST")
        .map(|r| r.body)
        .collect();
    assert_eq!(bodies, vec![b"abc".to_vec(); 3]);
    assert_still_serves(&mut hawkey);
}

#[test]
fn e_incomplete_head_over_max_header_bytes_is_431_and_close() {
    let (mut hawkey, backend) = start(&[], json!({ "maxHeaderBytes": 4096 }));
    let mut s = hawkey.connect();
    let mut wire = b"GET /ok HTTP/1.1\r\nHost: x\r\nX-Big: ".to_vec();
    wire.extend_from_slice(&[b'a'; 5000]);
    send(&mut s, &wire); // and no end of head: hawkey must stop reading at the limit
    let res = read_response(&mut s, false);
    assert_local(&res, 431, "head over 4096 bytes");
    assert_closed(&mut s, "431");
    assert_still_serves(&mut hawkey);
    assert_eq!(backend.requests().len(), 1); // only the good request
}

#[test]
fn e_complete_head_over_max_header_bytes_is_431_and_close() {
    // The whole oversized head arrives in one write: it must be refused all the same,
    // not parsed because it happened to be complete in the first read.
    let (mut hawkey, backend) = start(&[], json!({ "maxHeaderBytes": 4096 }));
    let big = "a".repeat(5000);
    let wire = format!("GET /ok HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n");
    let (res, mut s) = exchange(&hawkey, wire.as_bytes());
    assert_local(&res, 431, "complete head over 4096 bytes");
    assert_closed(&mut s, "431");
    assert_still_serves(&mut hawkey);
    assert!(
        backend
            .requests()
            .iter()
            .all(|r| r.header("x-big").is_none()),
        "the oversized head reached the backend"
    );
}

#[test]
fn e_head_under_max_header_bytes_is_served() {
    let (mut hawkey, backend) = start(&[], json!({ "maxHeaderBytes": 4096 }));
    let big = "a".repeat(3000);
    let wire = format!("GET /ok HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n");
    let (res, mut s) = exchange(&hawkey, wire.as_bytes());
    assert_eq!(res.status, 200, "{}", res.head);
    assert_open(&mut s, "3000-byte field");
    assert_eq!(backend.requests()[0].header("x-big"), Some(big.as_str()));
    assert_still_serves(&mut hawkey);
}

#[test]
fn e_dripping_head_is_cut_with_408_at_header_ms() {
    // One deadline for the whole head [E]: a byte every 100 ms would never trip a
    // per-read timeout of 500 ms, so only a whole-head deadline cuts it at ~500 ms.
    let (mut hawkey, _backend) = start(&[], json!({ "timeouts": { "headerMs": 500 } }));
    let started = Instant::now();
    let mut s = hawkey.connect();
    s.set_nodelay(true).unwrap();
    send(&mut s, b"GET /ok HTTP/1.1\r\nHost: x\r\nX-Slow: ");
    let mut writer = s.try_clone().unwrap();
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    let drip = std::thread::spawn(move || {
        // Drips for up to 5 s; per-read timeouts would let it run that long.
        for _ in 0..50 {
            if stop_rx.recv_timeout(Duration::from_millis(100)).is_ok() {
                return;
            }
            if writer.write_all(b"a").is_err() {
                return;
            }
        }
    });
    let res = try_read_response(&mut s, false);
    let elapsed = started.elapsed();
    let _ = stop_tx.send(());
    let res = res.unwrap_or_else(|| panic!("closed after {elapsed:?} without a 408"));
    assert_local(&res, 408, "dripping head");
    assert_closed(&mut s, "408");
    drip.join().unwrap();
    assert!(
        elapsed >= Duration::from_millis(400),
        "cut too early: {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_millis(2000),
        "cut at {elapsed:?}: the deadline is not for the whole head"
    );
    assert_still_serves(&mut hawkey);
}

#[test]
fn e_silent_client_is_closed_at_header_ms_without_a_byte() {
    let (mut hawkey, _backend) = start(&[], json!({ "timeouts": { "headerMs": 500 } }));
    let started = Instant::now();
    let mut s = hawkey.connect();
    let mut got = Vec::new();
    let read = s.read_to_end(&mut got);
    let elapsed = started.elapsed();
    assert!(
        matches!(read, Ok(0)),
        "expected a silent close, got {read:?} {:?}",
        String::from_utf8_lossy(&got)
    );
    assert!(
        elapsed >= Duration::from_millis(400),
        "closed too early: {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_millis(2000),
        "closed late: {elapsed:?}"
    );
    assert_still_serves(&mut hawkey);
}

#[test]
fn e_bad_field_syntax_is_400_and_close() {
    assert_each_refused(
        &[
            ("bare LF everywhere", b"GET /ok HTTP/1.1\nHost: x\n\n"),
            (
                "one bare LF",
                b"GET /ok HTTP/1.1\r\nHost: x\nX-A: b\r\n\r\n",
            ),
            (
                "bare CR",
                b"GET /ok HTTP/1.1\r\nHost: x\r\nX-A: b\rc\r\n\r\n",
            ),
            (
                "obs-fold",
                b"GET /ok HTTP/1.1\r\nHost: x\r\nX-A: b\r\n c\r\n\r\n",
            ),
            (
                "obs-fold with tab",
                b"GET /ok HTTP/1.1\r\nHost: x\r\nX-A: b\r\n\tc\r\n\r\n",
            ),
            (
                "space before colon",
                b"GET /ok HTTP/1.1\r\nHost : x\r\n\r\n",
            ),
            (
                "tab before colon",
                b"GET /ok HTTP/1.1\r\nHost: x\r\nX-A\t: b\r\n\r\n",
            ),
            (
                "NUL in value",
                b"GET /ok HTTP/1.1\r\nHost: x\r\nX-A: b\x00c\r\n\r\n",
            ),
            (
                "SOH in value",
                b"GET /ok HTTP/1.1\r\nHost: x\r\nX-A: b\x01c\r\n\r\n",
            ),
            (
                "ESC in value",
                b"GET /ok HTTP/1.1\r\nHost: x\r\nX-A: b\x1bc\r\n\r\n",
            ),
            (
                "VT in value",
                b"GET /ok HTTP/1.1\r\nHost: x\r\nX-A: b\x0bc\r\n\r\n",
            ),
            (
                "DEL in value",
                b"GET /ok HTTP/1.1\r\nHost: x\r\nX-A: b\x7fc\r\n\r\n",
            ),
            (
                "NUL in name",
                b"GET /ok HTTP/1.1\r\nHost: x\r\nX-\x00A: b\r\n\r\n",
            ),
            ("no colon", b"GET /ok HTTP/1.1\r\nHost: x\r\nX-A b\r\n\r\n"),
        ],
        400,
    );
}

#[test]
fn e_error_answer_uses_the_method_of_the_request_it_answers() {
    let (hawkey, _ok) = start(&[], json!({}));
    // After a HEAD on the same connection, a malformed GET's 400 still has its body.
    let mut s = hawkey.connect();
    send(&mut s, b"HEAD /none HTTP/1.1\r\nHost: h\r\n\r\n");
    let res = read_response(&mut s, true);
    assert_eq!(res.status, 404);
    send(&mut s, b"GET /ok HTTP/1.1\r\nHost: h\r\nBad Field\r\n\r\n");
    let res = read_response(&mut s, false);
    assert_local(&res, 400, "a malformed GET after a HEAD");
    assert_closed(&mut s, "after the 400");
    // And a malformed HEAD gets its 400 without a body.
    let mut s = hawkey.connect();
    send(&mut s, b"GET /none HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_local(&read_response(&mut s, false), 404, "a GET");
    send(&mut s, b"HEAD /ok HTTP/1.1\r\nHost: h\r\nBad Field\r\n\r\n");
    let res = read_response(&mut s, true);
    assert_eq!(res.status, 400, "{}", res.head);
    assert_closed(&mut s, "a malformed HEAD's 400 carries no body");
    // The empty lines a client may send before a request line do not hide the HEAD.
    let mut s = hawkey.connect();
    send(
        &mut s,
        b"\r\nHEAD /ok HTTP/1.1\r\nHost: h\r\nBad Field\r\n\r\n",
    );
    let res = read_response(&mut s, true);
    assert_eq!(res.status, 400, "{}", res.head);
    assert_closed(&mut s, "a malformed HEAD after an empty line");
}

#[test]
fn e_tab_in_a_field_value_is_allowed() {
    let (mut hawkey, backend) = start(&[], json!({}));
    let (res, mut s) = exchange(&hawkey, b"GET /ok HTTP/1.1\r\nHost: x\r\nX-A: b\tc\r\n\r\n");
    assert_eq!(res.status, 200, "{}", res.head);
    assert_open(&mut s, "tab in a value");
    assert_eq!(backend.requests()[0].header("x-a"), Some("b\tc"));
    assert_still_serves(&mut hawkey);
}

#[test]
fn e_http11_without_host_is_400_and_close() {
    assert_each_refused(
        &[
            ("no Host", b"GET /ok HTTP/1.1\r\nAccept: */*\r\n\r\n"),
            ("no fields", b"GET /ok HTTP/1.1\r\n\r\n"),
        ],
        400,
    );
}

#[test]
fn e_http10_without_host_is_served() {
    let (mut hawkey, backend) = start(&[], json!({}));
    let (res, mut s) = exchange(&hawkey, b"GET /ok HTTP/1.0\r\n\r\n");
    assert_eq!(res.status, 200, "{}", res.head);
    assert_closed(&mut s, "HTTP/1.0 without keep-alive");
    assert_eq!(backend.requests().len(), 1);
    assert_still_serves(&mut hawkey);
}

#[test]
fn e_other_http_versions_are_505_and_close() {
    assert_each_refused(
        &[
            ("HTTP/2.0", b"GET /ok HTTP/2.0\r\nHost: x\r\n\r\n"),
            ("HTTP/3.0", b"GET /ok HTTP/3.0\r\nHost: x\r\n\r\n"),
            ("HTTP/0.9", b"GET /ok HTTP/0.9\r\nHost: x\r\n\r\n"),
            ("HTTP/1.2", b"GET /ok HTTP/1.2\r\nHost: x\r\n\r\n"),
        ],
        505,
    );
}

#[test]
fn e_no_route_is_404_and_keeps_the_connection() {
    let (mut hawkey, backend) = start(&[], json!({}));
    let (res, mut s) = exchange(&hawkey, b"GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_local(&res, 404, "no route");
    assert_open(&mut s, "after 404");
    assert_eq!(backend.requests().len(), 1);
    assert_still_serves(&mut hawkey);
}

#[test]
fn e_backend_refused_is_502() {
    let down = format!("127.0.0.1:{}", closed_port());
    let (mut hawkey, _backend) = start(&[("^/down", down)], json!({}));
    let (res, mut s) = exchange(&hawkey, b"GET /down HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_local(&res, 502, "refused");
    assert_open(&mut s, "after 502");
    assert_still_serves(&mut hawkey);
}

#[test]
fn e_backend_answering_garbage_is_502() {
    let answers: [&[u8]; 6] = [
        b"garbage\r\n\r\n",
        b"hello",
        b"HTTP/1.1 200 OK\nContent-Length: 0\n\n",
        b"HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX-A: b\x00c\r\nContent-Length: 0\r\n\r\n",
    ];
    let backends: Vec<Backend> = answers
        .iter()
        .map(|&answer| {
            Backend::raw(move |mut s, conn| {
                if read_request(&mut s, conn).is_some() {
                    let _ = s.write_all(answer);
                }
            })
        })
        .collect();
    let routes: Vec<(String, String)> = backends
        .iter()
        .enumerate()
        .map(|(i, b)| (format!("^/bad{i}$"), b.authority()))
        .collect();
    let routes: Vec<(&str, String)> = routes
        .iter()
        .map(|(p, a)| (p.as_str(), a.clone()))
        .collect();
    let (mut hawkey, _backend) = start(&routes, json!({}));
    for (i, answer) in answers.iter().enumerate() {
        let what = format!("backend answer {:?}", String::from_utf8_lossy(answer));
        let wire = format!("GET /bad{i} HTTP/1.1\r\nHost: x\r\n\r\n");
        let (res, mut s) = exchange(&hawkey, wire.as_bytes());
        assert_local(&res, 502, &what);
        assert_open(&mut s, &what);
        assert_still_serves(&mut hawkey);
    }
}

#[test]
fn e_silent_backend_is_504_at_upstream_ms() {
    let silent = Backend::raw(|mut s, conn| {
        if read_request(&mut s, conn).is_some() {
            let mut sink = Vec::new();
            let _ = s.read_to_end(&mut sink); // never answers; waits for hawkey to hang up
        }
    });
    let (mut hawkey, _backend) = start(
        &[("^/slow", silent.authority())],
        json!({ "timeouts": { "upstreamMs": 500 } }),
    );
    let started = Instant::now();
    let (res, mut s) = exchange(&hawkey, b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n");
    let elapsed = started.elapsed();
    assert_local(&res, 504, "silent backend");
    assert!(
        elapsed >= Duration::from_millis(400),
        "504 too early: {elapsed:?}"
    );
    assert!(elapsed < Duration::from_secs(3), "504 late: {elapsed:?}");
    assert_eq!(silent.accepted(), 1);
    assert_open(&mut s, "after 504");
    assert_still_serves(&mut hawkey);
}

#[test]
fn e_connections_past_max_connections_get_503_at_accept() {
    let (mut hawkey, _backend) = start(&[], json!({ "maxConnections": 2 }));
    let first = hawkey.connect();
    let mut second = hawkey.connect();
    // Both are open and idle; the third is refused before it sends anything.
    let mut third = hawkey.connect();
    let res = read_response(&mut third, false);
    assert_local(&res, 503, "third connection");
    assert_closed(&mut third, "503");
    // The held connections are served.
    assert_open(&mut second, "second connection");
    // Once one closes, its place is free again.
    drop(first);
    let res = get_once_a_slot_is_free(&hawkey);
    assert_eq!(res.status, 200, "{}", res.head);
    drop(second);
    assert!(hawkey.alive(), "hawkey exited: {}", hawkey.stderr());
    assert_eq!(get_once_a_slot_is_free(&hawkey).status, 200);
}

/// `GET /ok` on new connections until one is not refused with 503. hawkey's worker
/// gives a closed connection's slot back shortly after it sees the close, at a moment
/// the client cannot observe; the deadline bounds the wait.
fn get_once_a_slot_is_free(hawkey: &Hawkey) -> Response {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut refused = 0;
    loop {
        let res = hawkey.get("/ok");
        if res.status != 503 {
            return res;
        }
        assert_local(&res, 503, "while the slot is being given back");
        refused += 1;
        assert!(
            Instant::now() < deadline,
            "a closed connection's slot was never given back ({refused} refused)"
        );
    }
}

#[test]
fn r8_idle_keep_alive_connection_is_closed_at_keep_alive_ms() {
    let (mut hawkey, _backend) = start(&[], json!({ "timeouts": { "keepAliveMs": 300 } }));
    let mut s = hawkey.connect();
    send(&mut s, b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\n");
    let res = read_response(&mut s, false);
    assert_eq!(res.status, 200);
    let idle_since = Instant::now();
    assert_closed(&mut s, "idle keep-alive connection");
    let idle = idle_since.elapsed();
    assert!(
        idle >= Duration::from_millis(250),
        "closed too early: {idle:?}"
    );
    assert!(idle < Duration::from_millis(2000), "closed late: {idle:?}");
    assert_still_serves(&mut hawkey);
}

#[test]
fn r3_malformed_chunked_request_body_is_400_and_close() {
    let cases: [(&str, &[u8]); 5] = [
        ("bad size line", b"zz\r\nhello\r\n0\r\n\r\n"),
        ("empty size line", b"\r\nhello\r\n0\r\n\r\n"),
        ("bare LF after size", b"5\nhello\r\n0\r\n\r\n"),
        ("data longer than size", b"3\r\nhello\r\n0\r\n\r\n"),
        (
            "control byte in extension",
            b"5;a=\x01\r\nhello\r\n0\r\n\r\n",
        ),
    ];
    let (mut hawkey, backend) = start(&[], json!({}));
    for (what, body) in cases {
        let mut wire =
            b"POST /ok HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        wire.extend_from_slice(body);
        let (res, mut s) = exchange(&hawkey, &wire);
        assert_local(&res, 400, what);
        assert_closed(&mut s, what);
        assert_still_serves(&mut hawkey);
    }
    // No POST was ever answered by the backend.
    assert!(backend.requests().iter().all(|r| r.method == "GET"));
}
