//! HTTP/2 to clients [H2] from outside: real clients (`curl`, `nghttp`) against the
//! real binary, with prior knowledge on the plain listener and ALPN `h2` over TLS;
//! uploads, large downloads, trailers, many streams on one connection, the access
//! log's protocol, and hostile clients (rapid reset, floods, an endless header
//! block) written with the frame codec, each closed with GOAWAY while another
//! client is served. `.ci/run` installs curl and nghttp2-client.

mod common;
use common::*;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use hawkey::front::h2::conn::PREFACE;
use hawkey::front::h2::frame::{
    Code, HEADER_LEN, Header, headers::Headers, kind, rst_stream, settings,
};
use hawkey::front::h2::hpack::Encoder;
use serde_json::{Value, json};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Whether `program` can be run. A missing one fails the test when
/// `HAWKEY_TOOLS_REQUIRED` is set (as `.ci/run` does); elsewhere the test says so
/// and passes, so that `cargo test` runs on a machine without them.
fn have(program: &str) -> bool {
    let found = Command::new(program).arg("--version").output().is_ok();
    if !found {
        assert!(
            std::env::var_os("HAWKEY_TOOLS_REQUIRED").is_none(),
            "{program} is not installed (.ci/run installs it)"
        );
        eprintln!("{program} is not installed: this test is skipped");
    }
    found
}

/// Runs a client tool; panics if it cannot start.
fn tool(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} must be installed (.ci/run installs it): {e}"))
}

/// `curl -s` with `args`, `-w` giving `%{http_code} %{http_version}` on the last
/// line: (status, version, body).
fn curl(args: &[&str]) -> (u16, String, Vec<u8>) {
    let mut all = vec![
        "-s",
        "--max-time",
        "20",
        "-w",
        "\n%{http_code} %{http_version}",
    ];
    all.extend_from_slice(args);
    let out = tool("curl", &all);
    let text = out.stdout;
    let split = text
        .iter()
        .rposition(|&b| b == b'\n')
        .expect("curl's -w line");
    let tail = String::from_utf8_lossy(&text[split + 1..]).into_owned();
    let (code, version) = tail.split_once(' ').expect("code and version");
    (
        code.parse().unwrap_or(0),
        version.to_string(),
        text[..split].to_vec(),
    )
}

fn url(addr: SocketAddr, path: &str) -> String {
    format!("http://{addr}{path}")
}

/// A site: `/static/` files, `/echo` (answers with what it was sent, and its head),
/// `/big` (8 MiB), `/trailers` (a chunked answer with a trailer), `/api` (fixed).
struct Site {
    hawkey: Hawkey,
    echo: Backend,
    _big: Backend,
    _www: TempDir,
}

const BIG: usize = 8 * 1024 * 1024;

fn big_body() -> Vec<u8> {
    let mut body = vec![0u8; BIG];
    XorShift(7).fill(&mut body);
    body
}

fn site(extra: Value) -> Site {
    let www = TempDir::new();
    www.write("static/a.txt", b"a static file\n");
    let echo = Backend::start(|req| {
        let head = format!(
            "method={} target={} host={} cookie={} proto={} te={} len={}",
            req.method,
            req.target,
            req.header("host").unwrap_or("-"),
            req.header("cookie").unwrap_or("-"),
            req.header("x-forwarded-proto").unwrap_or("-"),
            req.header("transfer-encoding").unwrap_or("-"),
            req.body.len()
        );
        if req.target == "/echo/trailers" {
            let body = format!("{head}\n");
            let reply = format!(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: x-checksum\r\n\r\n{:x}\r\n{body}\r\n0\r\nx-checksum: 1234\r\n\r\n",
                body.len()
            );
            return Reply::Bytes(reply.into_bytes());
        }
        ok(&head)
    });
    let body = big_body();
    let big = Backend::start(move |_| {
        let mut reply = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {BIG}\r\n\r\n"
        )
        .into_bytes();
        reply.extend_from_slice(&body);
        Reply::Bytes(reply)
    });
    let mut config = json!({
        "serverRoot": www.path().display().to_string(),
        "staticDir": "static",
        "accessLog": "access.log",
        "proxy": [
            { "pathRegExp": "^/echo", "authority": echo.authority() },
            { "pathRegExp": "^/big", "authority": big.authority() },
        ],
    });
    for (k, v) in extra.as_object().unwrap() {
        config[k] = v.clone();
    }
    Site {
        hawkey: Hawkey::start(config),
        echo,
        _big: big,
        _www: www,
    }
}

#[test]
fn h2_prior_knowledge_serves_static_files_and_proxies() {
    if !have("curl") {
        return;
    }
    let s = site(json!({}));
    let addr = s.hawkey.addr;
    let (status, version, body) = curl(&["--http2-prior-knowledge", &url(addr, "/static/a.txt")]);
    assert_eq!(
        (status, version.as_str(), &body[..]),
        (200, "2", &b"a static file\n"[..])
    );
    let (status, version, body) = curl(&[
        "--http2-prior-knowledge",
        "-H",
        "Cookie: a=1; b=2",
        &url(addr, "/echo/x?q=1"),
    ]);
    assert_eq!((status, version.as_str()), (200, "2"));
    let text = String::from_utf8_lossy(&body);
    assert!(
        text.starts_with("method=GET target=/echo/x?q=1 host=127.0.0.1:"),
        "{text}"
    );
    assert!(text.contains("proto=http te=-"), "{text}");
    assert!(text.contains("cookie=a=1; b=2 "), "{text}");
    let (status, _, body) = curl(&["--http2-prior-knowledge", &url(addr, "/nothing")]);
    assert_eq!((status, &body[..]), (404, &b"404 Not Found\n"[..]));
    let (status, _, body) = curl(&["--http2-prior-knowledge", "-I", &url(addr, "/static/a.txt")]);
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&body).contains("content-length: 14"));
}

#[test]
fn h2_uploads_reach_the_backend_whole() {
    if !have("curl") {
        return;
    }
    let s = site(json!({}));
    let dir = TempDir::new();
    let mut upload = vec![0u8; 3 * 1024 * 1024 + 17];
    XorShift(3).fill(&mut upload);
    let file = dir.write("upload.bin", &upload);
    let data = format!("@{}", file.display());
    let (status, _, body) = curl(&[
        "--http2-prior-knowledge",
        "--data-binary",
        &data,
        &url(s.hawkey.addr, "/echo/up"),
    ]);
    assert_eq!(status, 200);
    let text = String::from_utf8_lossy(&body);
    assert!(text.starts_with("method=POST target=/echo/up"), "{text}");
    assert!(text.ends_with(&format!("len={}", upload.len())), "{text}");
    let got = &s.echo.requests()[0];
    assert_eq!(got.body, upload, "the backend got the upload byte for byte");
    assert_eq!(
        got.header("content-length"),
        Some(upload.len().to_string().as_str())
    );
    // Without a length, the body goes to the backend chunked.
    let (status, _, body) = curl(&[
        "--http2-prior-knowledge",
        "--data-binary",
        &data,
        "-H",
        "Content-Length:",
        &url(s.hawkey.addr, "/echo/chunked"),
    ]);
    assert_eq!(status, 200);
    let text = String::from_utf8_lossy(&body);
    assert!(
        text.contains(&format!("te=chunked len={}", upload.len())),
        "{text}"
    );
}

#[test]
fn h2_large_download_and_trailers() {
    if !have("curl") || !have("nghttp") {
        return;
    }
    let s = site(json!({}));
    let (status, _, body) = curl(&["--http2-prior-knowledge", &url(s.hawkey.addr, "/big")]);
    assert_eq!(status, 200);
    assert!(
        body == big_body(),
        "8 MiB came back byte for byte ({} bytes)",
        body.len()
    );
    // curl gives trailers with the headers it dumps.
    let dir = TempDir::new();
    let dumped = dir.path().join("headers");
    let dump = dumped.display().to_string();
    let (status, _, body) = curl(&[
        "--http2-prior-knowledge",
        "-D",
        &dump,
        &url(s.hawkey.addr, "/echo/trailers"),
    ]);
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&body).starts_with("method=GET target=/echo/trailers"));
    let headers = std::fs::read_to_string(&dumped).unwrap();
    assert!(headers.starts_with("HTTP/2 200"), "{headers}");
    assert!(
        headers.contains("x-checksum: 1234"),
        "the trailer reached curl: {headers}"
    );
    let out = tool("nghttp", &["-nv", &url(s.hawkey.addr, "/echo/trailers")]);
    let log = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{log}");
    let trailer_at = log
        .find("x-checksum: 1234")
        .expect("the trailer reached the client");
    let data_at = log.find("recv DATA frame").expect("a DATA frame");
    assert!(
        data_at < trailer_at,
        "the trailer comes after the body: {log}"
    );
}

#[test]
fn h2_many_streams_share_one_connection_and_the_log_says_http2() {
    if !have("curl") || !have("nghttp") {
        return;
    }
    let s = site(json!({}));
    let addr = s.hawkey.addr;
    let targets: Vec<String> = (0..20)
        .map(|i| match i % 2 {
            0 => url(addr, &format!("/static/a.txt?{i}")),
            _ => url(addr, &format!("/echo/{i}")),
        })
        .collect();
    let mut args = vec!["-n", "-s", "-m", "1"];
    args.extend(targets.iter().map(String::as_str));
    let out = tool("nghttp", &args);
    let stats = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stats}");
    assert_eq!(stats.matches(" 200 ").count(), 20, "{stats}");
    let log = s.hawkey.dir.path().join("access.log");
    let ok = poll_until(Instant::now() + Duration::from_secs(3), || {
        std::fs::read_to_string(&log).is_ok_and(|l| l.matches("HTTP/2.0\" 200").count() == 20)
    });
    assert!(ok, "{:?}", std::fs::read_to_string(&log));
}

#[test]
fn h2_over_tls_is_chosen_by_alpn() {
    if !have("curl") {
        return;
    }
    let s = site(json!({
        "pems": { "key": fixture("rsa-pkcs8.key"), "cert": fixture("rsa-pkcs8.chain.pem") },
    }));
    let port = s.hawkey.addr.port();
    let ca = fixture("ca.pem").display().to_string();
    let https = format!("https://localhost:{port}/echo/tls");
    let (status, version, body) = curl(&["--http2", "--cacert", &ca, &https]);
    assert_eq!((status, version.as_str()), (200, "2"));
    assert!(String::from_utf8_lossy(&body).contains("proto=https"));
    let (status, version, _) = curl(&["--http1.1", "--cacert", &ca, &https]);
    assert_eq!(
        (status, version.as_str()),
        (200, "1.1"),
        "http/1.1 is still offered"
    );
}

// ------------------------------------------------------------- hostile clients

/// A raw HTTP/2 client: preface and SETTINGS sent.
fn h2_client(addr: SocketAddr) -> TcpStream {
    let mut s = connect(addr);
    let mut hello = PREFACE.to_vec();
    settings::write(&[], &mut hello);
    send(&mut s, &hello);
    s
}

/// A request's header block: `method` on `path` of `http://h`, then `extra` fields.
fn request_block(
    hpack: &mut Encoder,
    method: &[u8],
    path: &[u8],
    extra: &[(&[u8], &[u8])],
) -> Vec<u8> {
    let mut fields: Vec<(&[u8], &[u8])> = vec![
        (b":method", method),
        (b":scheme", b"http"),
        (b":path", path),
        (b":authority", b"h"),
    ];
    fields.extend_from_slice(extra);
    let mut block = Vec::new();
    hpack.encode(fields, &mut block);
    block
}

/// A GET of `/echo/slow`.
fn get_block(hpack: &mut Encoder) -> Vec<u8> {
    request_block(hpack, b"GET", b"/echo/slow", &[])
}

/// Reads frames until stream `id` ends (END_STREAM on a HEADERS or DATA frame).
fn answered(s: &mut TcpStream, id: u32) -> bool {
    let mut frames = Frames::new(s.try_clone().unwrap());
    std::iter::from_fn(|| frames.next()).any(|(k, flags, stream, _)| {
        stream == id && matches!(k, kind::HEADERS | kind::DATA) && flags & 1 != 0
    })
}

/// Reads frames until a GOAWAY (its error code) or the end.
fn read_goaway(s: &mut TcpStream) -> Option<u32> {
    let mut frames = Frames::new(s.try_clone().unwrap());
    std::iter::from_fn(|| frames.next())
        .find(|(k, ..)| *k == kind::GOAWAY)
        .map(|(_, _, _, p)| u32::from_be_bytes([p[4], p[5], p[6], p[7]]))
}

/// `attack` is written by a client; it must end with GOAWAY `code`, and a fresh
/// client is served meanwhile.
fn assert_goaway(attack: &[u8], code: Code, what: &str) {
    assert_goaway_with(json!({}), attack, code, what);
}

fn assert_goaway_with(config: Value, attack: &[u8], code: Code, what: &str) {
    let s = site(config);
    let mut c = h2_client(s.hawkey.addr);
    let _ = c.write_all(attack);
    assert_eq!(read_goaway(&mut c), Some(code.value()), "{what}");
    let mut fresh = h2_client(s.hawkey.addr);
    let mut get = Vec::new();
    Headers::write(1, &get_block(&mut Encoder::default()), true, &mut get);
    send(&mut fresh, &get);
    assert!(
        answered(&mut fresh, 1),
        "another client is served after {what}"
    );
    assert!(s.hawkey.stderr().lines().all(|l| !l.contains("panicked")));
}

#[test]
fn h2_rapid_reset_is_calmed() {
    let mut hpack = Encoder::default();
    let mut attack = Vec::new();
    for i in 0..1000u32 {
        let id = 2 * i + 1;
        Headers::write(id, &get_block(&mut hpack), true, &mut attack);
        rst_stream::write(id, Code::Cancel, &mut attack);
    }
    assert_goaway(&attack, Code::EnhanceYourCalm, "CVE-2023-44487");
}

#[test]
fn h2_floods_and_endless_header_blocks_are_calmed() {
    let mut ping = Vec::new();
    for _ in 0..5000 {
        hawkey::front::h2::frame::ping::write([1; 8], false, &mut ping);
    }
    assert_goaway(&ping, Code::EnhanceYourCalm, "a PING flood");
    let mut settings_flood = Vec::new();
    for _ in 0..5000 {
        settings::write(&[(settings::ENABLE_PUSH, 0)], &mut settings_flood);
    }
    assert_goaway(&settings_flood, Code::EnhanceYourCalm, "a SETTINGS flood");
    let mut endless = Vec::new();
    Header::write(kind::HEADERS, 0, 1, 1, &mut endless);
    endless.push(0x82);
    for _ in 0..100 {
        Header::write(kind::CONTINUATION, 0, 1, 1000, &mut endless);
        endless.extend_from_slice(&[0x82; 1000]);
    }
    assert_goaway(&endless, Code::EnhanceYourCalm, "a CONTINUATION flood");
    // An HPACK bomb: one large entry, then thousands of one-byte references to it.
    let mut bomb_block = vec![0x40, 5];
    bomb_block.extend_from_slice(b"x-big");
    bomb_block.extend_from_slice(&[0x7f, 0x81, 0x1e]); // a 3 968-byte value
    bomb_block.extend(std::iter::repeat_n(b'a', 3968));
    bomb_block.extend(std::iter::repeat_n(0xbe, 5000));
    let mut bomb = Vec::new();
    Headers::write(1, &bomb_block, true, &mut bomb);
    assert_goaway(&bomb, Code::EnhanceYourCalm, "an HPACK bomb");
}

#[test]
fn h2_empty_data_and_tiny_window_update_floods_are_calmed() {
    let mut hpack = Encoder::default();
    let mut empty = Vec::new();
    let block = request_block(&mut hpack, b"POST", b"/echo/flood", &[]);
    Headers::write(1, &block, false, &mut empty);
    for _ in 0..5000 {
        hawkey::front::h2::frame::data::Data::write_header(1, 0, false, &mut empty);
    }
    assert_goaway(&empty, Code::EnhanceYourCalm, "a flood of empty DATA");
    let mut tiny = Vec::new();
    for _ in 0..5000 {
        hawkey::front::h2::frame::window_update::write(0, 1, &mut tiny);
    }
    assert_goaway(
        &tiny,
        Code::EnhanceYourCalm,
        "a flood of one-byte WINDOW_UPDATEs",
    );
}

#[test]
fn h2_a_window_held_shut_ends_the_connection_at_upstream_ms() {
    // The stream may take 1 MiB, but the connection's window is never opened.
    let mut attack = Vec::new();
    settings::write(&[(settings::INITIAL_WINDOW_SIZE, 1 << 20)], &mut attack);
    let block = request_block(&mut Encoder::default(), b"GET", b"/big", &[]);
    Headers::write(1, &block, true, &mut attack);
    let config = json!({ "timeouts": { "upstreamMs": 1000 } });
    let started = Instant::now();
    assert_goaway_with(config, &attack, Code::EnhanceYourCalm, "a zero window held");
    assert!(started.elapsed() >= Duration::from_millis(1000));
}

/// A stream whose client opens no window holds back only itself: another stream
/// on the same connection is answered meanwhile.
#[test]
fn h2_a_stalled_stream_does_not_stall_the_others() {
    let s = site(json!({}));
    let c = connect(s.hawkey.addr);
    let mut out = PREFACE.to_vec();
    settings::write(&[(settings::INITIAL_WINDOW_SIZE, 1000)], &mut out);
    hawkey::front::h2::frame::window_update::write(0, 1 << 30, &mut out);
    let mut hpack = Encoder::default();
    for (id, path) in [(1u32, &b"/big"[..]), (3, b"/static/a.txt")] {
        let block = request_block(&mut hpack, b"GET", path, &[]);
        Headers::write(id, &block, true, &mut out);
    }
    let mut frames = Frames::new(c);
    frames.s.write_all(&out).unwrap();
    let (mut big, mut small) = (0usize, Vec::new());
    let small_done = std::iter::from_fn(|| frames.next()).any(|(k, flags, stream, payload)| {
        if k == kind::DATA && stream == 1 {
            big += payload.len();
        }
        if k == kind::DATA && stream == 3 {
            small.extend_from_slice(&payload);
        }
        stream == 3 && k == kind::DATA && flags & 1 != 0
    });
    assert!(small_done, "stream 3 is answered");
    assert_eq!(small, b"a static file\n");
    assert!(big <= 1000, "stream 1 sent no more than its window: {big}");
}

#[test]
fn h2_more_streams_than_allowed_are_refused() {
    let s = site(json!({}));
    let mut c = h2_client(s.hawkey.addr);
    let mut hpack = Encoder::default();
    let mut opens = Vec::new();
    for i in 0..129u32 {
        // Uploads whose bodies never come: each stream stays open.
        let block = request_block(&mut hpack, b"POST", b"/echo/held", &[]);
        Headers::write(2 * i + 1, &block, false, &mut opens);
    }
    send(&mut c, &opens);
    let mut frames = Frames::new(c.try_clone().unwrap());
    let refused = std::iter::from_fn(|| frames.next()).find(|(k, ..)| *k == kind::RST_STREAM);
    let (_, _, stream, payload) = refused.expect("a stream is refused");
    assert_eq!(stream, 257, "the 129th");
    assert_eq!(
        u32::from_be_bytes(payload[..4].try_into().unwrap()),
        Code::RefusedStream.value()
    );
    let mut fresh = h2_client(s.hawkey.addr);
    let mut get = Vec::new();
    Headers::write(1, &get_block(&mut Encoder::default()), true, &mut get);
    send(&mut fresh, &get);
    assert!(answered(&mut fresh, 1), "another client is served");
}

#[test]
fn h2_a_stream_id_going_backwards_ends_the_connection() {
    let mut hpack = Encoder::default();
    let mut attack = Vec::new();
    Headers::write(5, &get_block(&mut hpack), true, &mut attack);
    Headers::write(3, &get_block(&mut hpack), true, &mut attack);
    let s = site(json!({}));
    let mut c = h2_client(s.hawkey.addr);
    send(&mut c, &attack);
    let code = read_goaway(&mut c);
    assert!(
        code == Some(Code::Protocol.value()) || code == Some(Code::StreamClosed.value()),
        "{code:?}"
    );
}

/// The conformance suite of httpwg-cli (`cargo install --locked httpwg-cli`) against
/// the plain listener with prior knowledge: every case passes.
#[test]
fn h2_conformance_every_httpwg_case_passes() {
    if !have("httpwg") {
        return;
    }
    let backend = Backend::fixed("conformance");
    let hawkey = Hawkey::start(
        json!({ "proxy": [{ "pathRegExp": "^/", "authority": backend.authority() }] }),
    );
    let addr = hawkey.addr.to_string();
    // Its waits are 250 ms by default, too short for a loaded test machine.
    let out = tool(
        "httpwg",
        &[
            "-a",
            &addr,
            "--frame-timeout",
            "3000",
            "--connect-timeout",
            "3000",
        ],
    );
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let plain: String = strip_colours(&text);
    let summary = plain
        .lines()
        .find(|l| l.contains("Passed "))
        .unwrap_or_else(|| panic!("no summary from httpwg: {plain}"));
    let counts = summary
        .split_whitespace()
        .find(|w| w.contains('/'))
        .expect("passed/total");
    let (passed, total) = counts.split_once('/').unwrap();
    let failed: Vec<&str> = plain
        .lines()
        .filter(|l| l.contains("Test failed"))
        .collect();
    assert!(total.parse::<u32>().unwrap() >= 100, "{summary}");
    assert_eq!(passed, total, "{summary}\n{}", failed.join("\n"));
    assert!(hawkey.stderr().lines().all(|l| !l.contains("panicked")));
}

/// `text` without its ANSI colour sequences.
fn strip_colours(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

// ------------------------------------------------------------- WebSocket over HTTP/2

/// A backend that answers an upgrade with 101 (checking the key HTTP/1.1 needs), then
/// echoes every byte until the client's EOF, which it passes back.
fn websocket_echo() -> Backend {
    Backend::raw(|mut s, conn| {
        let Some(req) = read_request(&mut s, conn) else {
            return;
        };
        let key_ok = req
            .header("sec-websocket-key")
            .is_some_and(|k| k.len() == 24);
        let upgrade = req.header("upgrade") == Some("websocket") && req.method == "GET";
        if !(key_ok && upgrade) {
            let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
            return;
        }
        let head = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: x\r\n\r\n";
        if s.write_all(head.as_bytes()).is_err() {
            return;
        }
        let mut reader = s.try_clone().unwrap();
        let _ = std::io::copy(&mut reader, &mut s);
        let _ = s.shutdown(std::net::Shutdown::Write);
    })
}

/// The frames of a raw HTTP/2 connection, read as they come.
struct Frames {
    s: TcpStream,
    buf: Vec<u8>,
}

impl Frames {
    fn new(s: TcpStream) -> Frames {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        Frames { s, buf: Vec::new() }
    }

    /// The next frame: (type, flags, stream, payload); `None` at the end.
    fn next(&mut self) -> Option<(u8, u8, u32, Vec<u8>)> {
        let mut chunk = [0u8; 65536];
        loop {
            if let Some(h) = Header::parse(&self.buf)
                && self.buf.len() >= HEADER_LEN + h.len
            {
                let payload = self.buf[HEADER_LEN..HEADER_LEN + h.len].to_vec();
                self.buf.drain(..HEADER_LEN + h.len);
                return Some((h.kind, h.flags, h.stream, payload));
            }
            match self.s.read(&mut chunk) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }
}

#[test]
fn h2_websocket_rides_an_extended_connect() {
    let backend = websocket_echo();
    let hawkey = Hawkey::start(
        json!({ "proxy": [{ "pathRegExp": "^/ws", "authority": backend.authority() }] }),
    );
    let mut frames = Frames::new(h2_client(hawkey.addr));
    // The server's SETTINGS say extended CONNECT is on (RFC 8441 §3).
    let (kind0, _, _, payload) = frames.next().unwrap();
    assert_eq!(kind0, kind::SETTINGS);
    let enabled = payload.chunks(6).any(|p| {
        u16::from_be_bytes([p[0], p[1]]) == settings::ENABLE_CONNECT_PROTOCOL && p[5] == 1
    });
    assert!(enabled, "SETTINGS_ENABLE_CONNECT_PROTOCOL = 1");
    let mut block = Vec::new();
    let fields: [(&[u8], &[u8]); 6] = [
        (b":method", b"CONNECT"),
        (b":protocol", b"websocket"),
        (b":scheme", b"http"),
        (b":path", b"/ws/chat"),
        (b":authority", b"h"),
        (b"sec-websocket-version", b"13"),
    ];
    Encoder::default().encode(fields, &mut block);
    let mut out = Vec::new();
    Headers::write(1, &block, false, &mut out);
    hawkey::front::h2::frame::data::Data::write_header(1, 5, false, &mut out);
    out.extend_from_slice(b"hello");
    frames.s.write_all(&out).unwrap();
    // A 200 HEADERS without END_STREAM, then the echo in DATA.
    let mut status = None;
    let mut echoed = Vec::new();
    while echoed.len() < 5 {
        let (k, flags, stream, payload) = frames.next().expect("the tunnel answers");
        match k {
            kind::HEADERS if stream == 1 => {
                let mut d = hawkey::front::h2::hpack::Decoder::default();
                let mut fields = Vec::new();
                d.decode(&payload, 1 << 16, 100, &mut |n, v| {
                    fields.push((n.to_vec(), v.to_vec()))
                })
                .unwrap();
                status = Some(fields[0].1.clone());
                assert_eq!(flags & 1, 0, "the stream stays open");
            }
            kind::DATA if stream == 1 => echoed.extend_from_slice(&payload),
            kind::RST_STREAM | kind::GOAWAY => panic!("stream ended: {k} {payload:?}"),
            _ => {}
        }
    }
    assert_eq!(status.as_deref(), Some(&b"200"[..]));
    assert_eq!(echoed, b"hello");
    // The client ends its side: the backend's EOF comes back as END_STREAM.
    let mut end = Vec::new();
    hawkey::front::h2::frame::data::Data::write_header(1, 0, true, &mut end);
    frames.s.write_all(&end).unwrap();
    let ended = std::iter::from_fn(|| frames.next())
        .any(|(k, flags, stream, _)| k == kind::DATA && stream == 1 && flags & 1 != 0);
    assert!(ended, "END_STREAM after the backend's EOF");
}

/// Python's httpx with its HTTP/2 support (the `h2` package): GET and POST over TLS,
/// both on HTTP/2.
#[test]
fn h2_python_httpx_speaks_http2_over_tls() {
    let has_httpx = Command::new("python3")
        .args(["-c", "import httpx, h2"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_httpx {
        assert!(
            std::env::var_os("HAWKEY_TOOLS_REQUIRED").is_none(),
            "python3 with httpx[http2] is not installed (.ci/run installs it)"
        );
        eprintln!("httpx[http2] is not installed: this test is skipped");
        return;
    }
    let s = site(json!({
        "pems": { "key": fixture("rsa-pkcs8.key"), "cert": fixture("rsa-pkcs8.chain.pem") },
    }));
    let script = r#"
import sys, httpx
base, ca = sys.argv[1], sys.argv[2]
with httpx.Client(http2=True, verify=ca) as c:
    r = c.get(base + "/static/a.txt")
    print(r.http_version, r.status_code, repr(r.text))
    r = c.post(base + "/echo/py", content=b"x" * 100000)
    print(r.http_version, r.status_code, r.text)
"#;
    let base = format!("https://localhost:{}", s.hawkey.addr.port());
    let ca = fixture("ca.pem").display().to_string();
    let out = tool("python3", &["-c", script, &base, &ca]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "HTTP/2 200 'a static file\\n'");
    assert!(
        lines[1].starts_with("HTTP/2 200 method=POST target=/echo/py"),
        "{text}"
    );
    assert!(lines[1].ends_with("len=100000"), "{text}");
}

/// SIGTERM: GOAWAY `NO_ERROR` naming the last stream, the open stream still answered,
/// then the close and the exit.
#[test]
fn h2_sigterm_sends_goaway_and_finishes_open_streams() {
    let slow = Backend::start(|_| {
        std::thread::sleep(Duration::from_millis(800));
        ok("late but whole")
    });
    let mut hawkey =
        Hawkey::start(json!({ "proxy": [{ "pathRegExp": "^/", "authority": slow.authority() }] }));
    let mut frames = Frames::new(h2_client(hawkey.addr));
    let mut get = Vec::new();
    Headers::write(1, &get_block(&mut Encoder::default()), true, &mut get);
    frames.s.write_all(&get).unwrap();
    std::thread::sleep(Duration::from_millis(200)); // the request is at the backend
    // SAFETY: kill(2) with our child's pid and a signal number.
    assert_eq!(unsafe { libc::kill(hawkey.pid() as i32, libc::SIGTERM) }, 0);
    let (mut goaway, mut body) = (None, Vec::new());
    while let Some((k, flags, stream, payload)) = frames.next() {
        match k {
            kind::GOAWAY => {
                let last = u32::from_be_bytes(payload[..4].try_into().unwrap());
                let code = u32::from_be_bytes(payload[4..8].try_into().unwrap());
                goaway = Some((last, code));
            }
            kind::DATA if stream == 1 => {
                body.extend_from_slice(&payload);
                if flags & 1 != 0 {
                    break;
                }
            }
            _ => {}
        }
    }
    assert_eq!(goaway, Some((1, 0)), "GOAWAY NO_ERROR, last stream 1");
    assert_eq!(body, b"late but whole");
    assert!(frames.next().is_none(), "then the connection closes");
    let exited = poll_until(Instant::now() + Duration::from_secs(5), || {
        hawkey.child.try_wait().unwrap().is_some()
    });
    assert!(exited, "hawkey exits once the stream is answered");
}

// ------------------------------------------------------------- a browser

/// A WebSocket backend: the handshake (RFC 6455), then each client frame (masked)
/// answered with an unmasked text frame `echo:` and its payload, until a close.
fn websocket_server() -> Backend {
    Backend::raw(|mut s, conn| {
        let Some(req) = read_request(&mut s, conn) else {
            return;
        };
        let head =
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n";
        let accept = req
            .header("sec-websocket-key")
            .map(websocket_accept)
            .unwrap_or_default();
        if s.write_all(format!("{head}Sec-WebSocket-Accept: {accept}\r\n\r\n").as_bytes())
            .is_err()
        {
            return;
        }
        loop {
            let mut h = [0u8; 2];
            if s.read_exact(&mut h).is_err() {
                return;
            }
            let (opcode, len) = (h[0] & 0x0f, usize::from(h[1] & 0x7f));
            let len = match len {
                126 => {
                    let mut l = [0u8; 2];
                    s.read_exact(&mut l).unwrap();
                    usize::from(u16::from_be_bytes(l))
                }
                _ => len,
            };
            let mut mask = [0u8; 4];
            let mut payload = vec![0u8; len];
            if s.read_exact(&mut mask).is_err() || s.read_exact(&mut payload).is_err() {
                return;
            }
            for (i, b) in payload.iter_mut().enumerate() {
                *b ^= mask[i % 4];
            }
            if opcode == 8 {
                let _ = s.write_all(&[0x88, 0]);
                return;
            }
            let text = [b"echo:".as_slice(), &payload].concat();
            let mut frame = vec![0x81, u8::try_from(text.len()).unwrap()];
            frame.extend_from_slice(&text);
            if s.write_all(&frame).is_err() {
                return;
            }
        }
    })
}

/// `Sec-WebSocket-Accept` for `key` (RFC 6455 §4.2.2): base64 of SHA-1 of the key and
/// the protocol's GUID. The SHA-1 here is a plain one for this test.
fn websocket_accept(key: &str) -> String {
    let digest = sha1(format!("{key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11").as_bytes());
    let digits = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for group in digest.chunks(3) {
        let b = [
            group[0],
            *group.get(1).unwrap_or(&0),
            *group.get(2).unwrap_or(&0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            match i <= group.len() {
                true => out.push(char::from(digits[((n >> (18 - 6 * i)) & 63) as usize])),
                false => out.push('='),
            }
        }
    }
    out
}

fn sha1(data: &[u8]) -> [u8; 20] {
    let mut h: [u32; 5] = [0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0];
    let mut msg = data.to_vec();
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&((data.len() as u64) * 8).to_be_bytes());
    for block in msg.chunks(64) {
        let mut w = [0u32; 80];
        for i in 0..16 {
            w[i] = u32::from_be_bytes(block[4 * i..4 * i + 4].try_into().unwrap());
        }
        for i in 16..80 {
            w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
        }
        let [mut a, mut b, mut c, mut d, mut e] = h;
        for (i, wi) in w.iter().enumerate() {
            let (f, k) = match i {
                0..=19 => ((b & c) | (!b & d), 0x5A827999),
                20..=39 => (b ^ c ^ d, 0x6ED9EBA1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1BBCDC),
                _ => (b ^ c ^ d, 0xCA62C1D6),
            };
            let t = a
                .rotate_left(5)
                .wrapping_add(f)
                .wrapping_add(e)
                .wrapping_add(k)
                .wrapping_add(*wi);
            (e, d, c, b, a) = (d, c, b.rotate_left(30), a, t);
        }
        for (x, y) in h.iter_mut().zip([a, b, c, d, e]) {
            *x = x.wrapping_add(y);
        }
    }
    let mut out = [0u8; 20];
    for (i, x) in h.iter().enumerate() {
        out[4 * i..4 * i + 4].copy_from_slice(&x.to_be_bytes());
    }
    out
}

/// The page: 25 static images, 25 proxied ones and a WebSocket; once the socket
/// answers, it reports what `performance` saw to `/api/report`.
fn browser_page() -> String {
    let mut assets = String::new();
    for i in 0..25 {
        assets += &format!("<img src=\"/static/a{i}.svg\"><img src=\"/api/img{i}.svg\">");
    }
    format!(
        "<!doctype html><html><head><title>h2</title></head><body>{assets}<script>
window.addEventListener('load', () => {{
  const ws = new WebSocket('wss://' + location.host + '/ws');
  ws.onopen = () => ws.send('ping');
  ws.onmessage = (e) => {{
    const all = performance.getEntriesByType('resource');
    const entries = all.filter(r => /^\\/(static\\/a|api\\/img)\\d+\\.svg$/.test(new URL(r.name).pathname));
    const others = all.filter(r => !entries.includes(r)).map(r => new URL(r.name).pathname + ':' + r.nextHopProtocol);
    const h2 = entries.filter(r => r.nextHopProtocol === 'h2').length;
    const nav = performance.getEntriesByType('navigation')[0].nextHopProtocol;
    fetch('/api/report?assets=' + entries.length + '&h2=' + h2 + '&nav=' + nav + '&ws=' + e.data + '&others=' + others.join(','))
      .then(() => ws.close());
  }};
  ws.onerror = () => fetch('/api/report?ws=error');
}});
</script></body></html>"
    )
}

/// Headless Chromium loads a page over https from hawkey: 50 assets (static and
/// proxied) and a WebSocket, all over HTTP/2, on one connection (Chromium's net log
/// has one HTTP/2 session, and every access-log line says HTTP/2.0).
#[test]
fn h2_chromium_loads_a_page_and_a_websocket_on_one_connection() {
    let Some(chromium) = ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|b| Command::new(b).arg("--version").output().is_ok())
    else {
        assert!(
            std::env::var_os("HAWKEY_TOOLS_REQUIRED").is_none(),
            "chromium is not installed (.ci/run installs it)"
        );
        eprintln!("chromium is not installed: this test is skipped");
        return;
    };
    let www = TempDir::new();
    www.write("static/index.html", browser_page().as_bytes());
    let svg = b"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"4\" height=\"4\"><rect width=\"4\" height=\"4\"/></svg>";
    for i in 0..25 {
        www.write(&format!("static/a{i}.svg"), svg);
    }
    let api = Backend::start(move |req| {
        let svg = String::from_utf8_lossy(svg).into_owned();
        match req.target.starts_with("/api/img") {
            true => Reply::Bytes(
                format!("HTTP/1.1 200 OK\r\nContent-Type: image/svg+xml\r\nContent-Length: {}\r\n\r\n{svg}", svg.len())
                    .into_bytes(),
            ),
            false => ok("noted"),
        }
    });
    let ws = websocket_server();
    let hawkey = Hawkey::start(json!({
        "serverRoot": www.path().display().to_string(),
        "staticDir": "static",
        "accessLog": "access.log",
        "pems": { "key": fixture("rsa-pkcs8.key"), "cert": fixture("rsa-pkcs8.chain.pem") },
        "proxy": [
            { "pathRegExp": "^/api/", "authority": api.authority() },
            { "pathRegExp": "^/ws", "authority": ws.authority() },
        ],
    }));
    let profile = TempDir::new();
    let netlog = profile.path().join("netlog.json");
    let url = format!("https://localhost:{}/static/index.html", hawkey.addr.port());
    let mut browser = Command::new(chromium)
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--ignore-certificate-errors",
            "--no-first-run",
            &format!("--user-data-dir={}", profile.path().display()),
            &format!("--log-net-log={}", netlog.display()),
            &url,
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("chromium starts");
    let reported = poll_until(Instant::now() + Duration::from_secs(60), || {
        api.requests()
            .iter()
            .any(|r| r.target.starts_with("/api/report"))
    });
    // A clean exit writes the net log out whole.
    // SAFETY: kill(2) with our child's pid and a signal number.
    unsafe { libc::kill(browser.id() as i32, libc::SIGTERM) };
    let _ = poll_until(Instant::now() + Duration::from_secs(20), || {
        browser.try_wait().ok().flatten().is_some()
    });
    let _ = browser.kill();
    let _ = browser.wait();
    assert!(reported, "the page reported back: {:?}", api.requests());
    let report = api
        .requests()
        .into_iter()
        .find(|r| r.target.starts_with("/api/report"))
        .unwrap()
        .target;
    // The WebSocket's line is written when it closes, the log flushed within a second.
    let path = hawkey.dir.path().join("access.log");
    let read_log = || std::fs::read_to_string(&path).unwrap_or_default();
    poll_until(Instant::now() + Duration::from_secs(5), || {
        read_log().lines().count() >= 53 && read_log().contains("GET /ws ")
    });
    let log = read_log();
    let lines: Vec<&str> = log.lines().collect();
    // Resources other than the 50 assets are reported as `path:protocol`; with the
    // requests that came more than once, for the message.
    let (seen, others) = report.split_once("&others=").unwrap_or((&report, ""));
    let request = |l: &&str| l.split('"').nth(1).unwrap_or_default().to_string();
    let mut counts = std::collections::BTreeMap::new();
    for r in lines.iter().map(request) {
        *counts.entry(r).or_insert(0) += 1;
    }
    let twice: Vec<&String> = counts
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(r, _)| r)
        .collect();
    assert_eq!(
        seen, "/api/report?assets=50&h2=50&nav=h2&ws=echo:ping",
        "what the page saw; other resources: {others:?}; requested more than once: {twice:?}"
    );
    assert!(
        lines.len() >= 53,
        "the page, 50 assets, the WebSocket, the report: {log}"
    );
    assert!(lines.iter().all(|l| l.contains(" HTTP/2.0\" ")), "{log}");
    assert!(
        lines.iter().any(|l| l.contains("GET /ws HTTP/2.0\" 200")),
        "the WebSocket rode HTTP/2: {log}"
    );
    let sessions = http2_sessions(&std::fs::read_to_string(&netlog).unwrap_or_default());
    assert_eq!(
        sessions,
        Some(1),
        "one HTTP/2 session in Chromium's net log"
    );
}

/// How many HTTP/2 sessions a Chromium net log shows (`None`: not readable). The log
/// is read a line at a time (its constants, then one event a line), so a log cut
/// short by the browser's exit still counts what it holds.
fn http2_sessions(netlog: &str) -> Option<usize> {
    let mut lines = netlog.lines();
    let first = lines.next()?.trim_end().trim_end_matches(',');
    let head: Value = serde_json::from_str(&format!("{first}}}")).ok()?;
    let kind = head["constants"]["logSourceType"]["HTTP2_SESSION"].as_u64()?;
    let mut ids: Vec<u64> = lines
        .filter_map(|line| {
            serde_json::from_str::<Value>(line.trim_end().trim_end_matches(',')).ok()
        })
        .filter(|e| e["source"]["type"].as_u64() == Some(kind))
        .filter_map(|e| e["source"]["id"].as_u64())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    Some(ids.len())
}

/// Request trailers reach the backend (the body goes chunked, the trailer after it).
#[test]
fn h2_request_trailers_reach_the_backend() {
    let s = site(json!({}));
    let mut c = h2_client(s.hawkey.addr);
    let mut hpack = Encoder::default();
    let mut out = Vec::new();
    let block = request_block(
        &mut hpack,
        b"POST",
        b"/echo/trailers-in",
        &[(b"te", b"trailers")],
    );
    Headers::write(1, &block, false, &mut out);
    hawkey::front::h2::frame::data::Data::write_header(1, 3, false, &mut out);
    out.extend_from_slice(b"abc");
    let mut trailer = Vec::new();
    hpack.encode([(&b"x-sum"[..], &b"42"[..])], &mut trailer);
    Headers::write(1, &trailer, true, &mut out);
    send(&mut c, &out);
    assert!(answered(&mut c, 1), "the upload is answered");
    let got = &s.echo.requests()[0];
    assert_eq!(got.body, b"abc");
    assert_eq!(got.trailers, [("x-sum".to_string(), "42".to_string())]);
}
