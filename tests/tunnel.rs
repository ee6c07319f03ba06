//! Upgrade tunnelling [R7]: the WebSocket handshake and frames through hawkey, what
//! counts as an upgrade and what does not, bytes both ways (large, early, half-closed),
//! declined upgrades, the tunnel idle timeout, and what open tunnels cost: workers,
//! `maxConnections` places and descriptors.

mod common;
use common::*;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

/// The handshake example of RFC 6455 §1.3: this key must be answered with this accept.
const WS_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const WS_ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// Whether the comma-separated list field `name` of `req` holds `token` (any case).
fn has_token(req: &Request, name: &str, token: &str) -> bool {
    req.headers_named(name)
        .iter()
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Whether `req` asks for an upgrade, as a backend sees it.
fn asks_upgrade(req: &Request) -> bool {
    has_token(req, "connection", "upgrade") && req.header("upgrade").is_some()
}

/// An upgrade request for `protocol` with the given `Connection` value.
fn upgrade_request(target: &str, connection: &str, protocol: &str) -> String {
    format!(
        "GET {target} HTTP/1.1\r\nHost: test\r\nConnection: {connection}\r\nUpgrade: {protocol}\r\n\r\n"
    )
}

/// The 101 a backend answers `protocol` with.
fn switching(protocol: &str) -> String {
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: {protocol}\r\nConnection: Upgrade\r\n\r\n"
    )
}

/// A backend that answers an upgrade request with 101 and then echoes every byte
/// until the client's EOF, which it passes back; other requests get `200 plain`.
/// Every request head it reads goes to the returned channel.
fn echo_backend() -> (Backend, Receiver<Request>) {
    let (tx, rx) = mpsc::channel();
    let backend = Backend::raw(move |mut s, conn| {
        while let Some(req) = read_request(&mut s, conn) {
            let _ = tx.send(req.clone());
            if !asks_upgrade(&req) {
                if s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nplain")
                    .is_err()
                {
                    return;
                }
                continue;
            }
            let protocol = req.header("upgrade").unwrap().to_string();
            if s.write_all(switching(&protocol).as_bytes()).is_err() {
                return;
            }
            let mut reader = s.try_clone().unwrap();
            let _ = std::io::copy(&mut reader, &mut s);
            let _ = s.shutdown(Shutdown::Write);
            return;
        }
    });
    (backend, rx)
}

/// Sends `request` on a new connection and reads the answer's head.
fn open_tunnel(hawkey: &Hawkey, request: &str) -> (TcpStream, Response) {
    let mut s = hawkey.connect();
    send(&mut s, request.as_bytes());
    let res = read_response(&mut s, false);
    (s, res)
}

/// Opens a tunnel with `Upgrade: raw` and checks the 101.
fn open_raw_tunnel(hawkey: &Hawkey, target: &str) -> TcpStream {
    let (s, res) = open_tunnel(hawkey, &upgrade_request(target, "Upgrade", "raw"));
    assert_eq!(res.status, 101, "{target}: {}", res.head);
    s
}

/// Writes `bytes` into a tunnel to an echo backend and reads them back.
fn echo_round(s: &mut TcpStream, bytes: &[u8]) {
    send(s, bytes);
    let mut back = vec![0; bytes.len()];
    s.read_exact(&mut back).unwrap();
    assert_eq!(back, bytes);
}

/// Reads what arrives until EOF; panics on a timeout or reset.
fn read_to_eof(s: &mut TcpStream) -> Vec<u8> {
    let mut all = Vec::new();
    s.read_to_end(&mut all)
        .expect("EOF, not a timeout or reset");
    all
}

/// A masked WebSocket frame (RFC 6455 §5.2) from the client: FIN, `opcode`, a payload
/// under 126 bytes.
fn client_frame(opcode: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    assert!(payload.len() < 126);
    let mut frame = vec![0x80 | opcode, 0x80 | payload.len() as u8];
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

/// Reads one small frame: (FIN and opcode byte, mask if any, unmasked payload).
fn read_frame(s: &mut impl Read) -> Option<(u8, Option<[u8; 4]>, Vec<u8>)> {
    let mut head = [0u8; 2];
    s.read_exact(&mut head).ok()?;
    let len = (head[1] & 0x7f) as usize;
    assert!(len < 126, "test frames are small");
    let mask = if head[1] & 0x80 != 0 {
        let mut m = [0u8; 4];
        s.read_exact(&mut m).ok()?;
        Some(m)
    } else {
        None
    };
    let mut payload = vec![0; len];
    s.read_exact(&mut payload).ok()?;
    if let Some(m) = mask {
        payload
            .iter_mut()
            .enumerate()
            .for_each(|(i, b)| *b ^= m[i % 4]);
    }
    Some((head[0], mask, payload))
}

/// A WebSocket backend: answers the handshake of RFC 6455 §1.3 and echoes each masked
/// client frame as an unmasked server frame. The handshake request goes to the channel.
fn websocket_backend() -> (Backend, Receiver<Request>) {
    let (tx, rx) = mpsc::channel();
    let backend = Backend::raw(move |mut s, conn| {
        let Some(req) = read_request(&mut s, conn) else {
            return;
        };
        let _ = tx.send(req);
        let answer = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {WS_ACCEPT}\r\nSec-WebSocket-Protocol: chat\r\n\r\n"
        );
        if s.write_all(answer.as_bytes()).is_err() {
            return;
        }
        while let Some((fin_opcode, mask, payload)) = read_frame(&mut s) {
            if mask.is_none() {
                return; // RFC 6455 §5.1: a server closes on an unmasked client frame
            }
            let mut frame = vec![fin_opcode, payload.len() as u8];
            frame.extend_from_slice(&payload);
            if s.write_all(&frame).is_err() {
                return;
            }
        }
    });
    (backend, rx)
}

fn websocket_handshake(connection: &str) -> String {
    format!(
        "GET /ws HTTP/1.1\r\nHost: test\r\nConnection: {connection}\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Key: {WS_KEY}\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Protocol: chat\r\n\r\n"
    )
}

/// Runs the handshake with `connection` as the client's Connection value, checks both
/// sides of it, then sends frames and reads their echoes.
fn websocket_session(connection: &str, frames: &[&str]) {
    let (backend, handshakes) = websocket_backend();
    let hawkey = Hawkey::start(route_config("^/ws", &backend));
    let (mut s, res) = open_tunnel(&hawkey, &websocket_handshake(connection));

    let req = handshakes.recv_timeout(TIMEOUT).unwrap();
    assert!(
        has_token(&req, "connection", "upgrade"),
        "backend got no Connection: upgrade:\n{}",
        req.head
    );
    assert_eq!(req.header("upgrade"), Some("websocket"), "{}", req.head);
    assert_eq!(req.header("sec-websocket-key"), Some(WS_KEY));
    assert_eq!(req.header("sec-websocket-version"), Some("13"));

    assert_eq!(
        (res.status, res.reason.as_str()),
        (101, "Switching Protocols")
    );
    assert_eq!(res.header("upgrade"), Some("websocket"), "{}", res.head);
    assert!(
        res.headers_named("connection")
            .iter()
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade")),
        "{}",
        res.head
    );
    assert_eq!(res.header("sec-websocket-accept"), Some(WS_ACCEPT));
    assert_eq!(res.header("sec-websocket-protocol"), Some("chat"));

    for (i, text) in frames.iter().enumerate() {
        let mask = [0x37, 0xfa, 0x21, i as u8];
        send(&mut s, &client_frame(0x1, text.as_bytes(), mask));
        let (fin_opcode, mask, payload) = read_frame(&mut s).expect("an echoed frame");
        assert_eq!(fin_opcode, 0x81, "FIN + text");
        assert_eq!(mask, None, "server frames are not masked");
        assert_eq!(payload, text.as_bytes());
    }
}

#[test]
fn r7_websocket_handshake_and_frames_pass_through() {
    websocket_session(
        "Upgrade",
        &["Hello", "", "a longer frame of text, still < 126"],
    );
}

#[test]
fn r7_firefox_connection_keep_alive_upgrade_is_an_upgrade() {
    websocket_session("keep-alive, Upgrade", &["from firefox"]);
}

/// Compares a byte stream with the XorShift stream of `seed`, whatever the cuts.
struct Expected {
    xs: XorShift,
    block: Vec<u8>,
    pos: usize,
    seen: u64,
}

impl Expected {
    fn new(seed: u64) -> Expected {
        Expected {
            xs: XorShift(seed),
            block: vec![0; 64 * 1024],
            pos: 64 * 1024,
            seen: 0,
        }
    }

    /// Err with the offset of the first wrong byte.
    fn check(&mut self, got: &[u8]) -> Result<(), u64> {
        for &b in got {
            if self.pos == self.block.len() {
                self.xs.fill(&mut self.block);
                self.pos = 0;
            }
            if self.block[self.pos] != b {
                return Err(self.seen);
            }
            self.pos += 1;
            self.seen += 1;
        }
        Ok(())
    }
}

/// Writes `len` bytes (a multiple of 64 KiB) of the XorShift stream of `seed`, then
/// shuts the write side.
fn write_stream(mut s: TcpStream, seed: u64, len: usize) {
    let mut xs = XorShift(seed);
    let mut block = vec![0; 64 * 1024];
    for _ in 0..len / block.len() {
        xs.fill(&mut block);
        s.write_all(&block).unwrap();
    }
    s.shutdown(Shutdown::Write).unwrap();
}

/// Reads to EOF, checking against the XorShift stream of `seed`; the byte count.
fn read_stream(s: &mut TcpStream, seed: u64) -> Result<u64, String> {
    let mut expected = Expected::new(seed);
    let mut buf = vec![0; 64 * 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Ok(expected.seen),
            Ok(n) => expected
                .check(&buf[..n])
                .map_err(|at| format!("wrong byte at offset {at}"))?,
            Err(e) => return Err(format!("after {} bytes: {e}", expected.seen)),
        }
    }
}

#[test]
fn r7_four_mib_each_way_at_once_arrive_byte_exact() {
    const LEN: usize = 4 * 1024 * 1024;
    const UP_SEED: u64 = 0x9e37_79b9_7f4a_7c15;
    const DOWN_SEED: u64 = 0x2545_f491_4f6c_dd1d;
    let (tx, received) = mpsc::channel();
    let backend = Backend::raw(move |mut s, conn| {
        let Some(_) = read_request(&mut s, conn) else {
            return;
        };
        s.write_all(switching("raw-bytes").as_bytes()).unwrap();
        let writer = s.try_clone().unwrap();
        let sending = std::thread::spawn(move || write_stream(writer, DOWN_SEED, LEN));
        let _ = tx.send(read_stream(&mut s, UP_SEED));
        let _ = sending.join();
    });
    let hawkey = Hawkey::start(route_config("^/", &backend));
    let (mut s, res) = open_tunnel(&hawkey, &upgrade_request("/bulk", "Upgrade", "raw-bytes"));
    assert_eq!(res.status, 101);

    let started = Instant::now();
    let writer = s.try_clone().unwrap();
    let sending = std::thread::spawn(move || write_stream(writer, UP_SEED, LEN));
    let down = read_stream(&mut s, DOWN_SEED);
    sending.join().unwrap();
    let up = received.recv_timeout(TIMEOUT).unwrap();
    eprintln!(
        "4 MiB each way through one tunnel in {:?}",
        started.elapsed()
    );
    assert_eq!(down, Ok(LEN as u64), "backend → client");
    assert_eq!(up, Ok(LEN as u64), "client → backend");
}

#[test]
fn r7_half_close_is_passed_on() {
    // The backend reads to EOF, reports what it read, then answers and closes.
    let (tx, received) = mpsc::channel();
    let backend = Backend::raw(move |mut s, conn| {
        let Some(_) = read_request(&mut s, conn) else {
            return;
        };
        s.write_all(switching("raw").as_bytes()).unwrap();
        let mut got = Vec::new();
        let read = s.read_to_end(&mut got).map(|_| got);
        let eof = read.is_ok();
        let _ = tx.send(read.map_err(|e| e.kind()));
        if eof {
            let _ = s.write_all(b"answer after your EOF");
            let _ = s.shutdown(Shutdown::Write);
        }
    });
    let hawkey = Hawkey::start(route_config("^/", &backend));
    let mut s = open_raw_tunnel(&hawkey, "/half");
    send(&mut s, b"everything I have to say");
    s.shutdown(Shutdown::Write).unwrap();

    let backend_read = received.recv_timeout(TIMEOUT).unwrap();
    assert_eq!(
        backend_read.as_deref(),
        Ok(&b"everything I have to say"[..]),
        "the backend did not see the client's bytes and then EOF"
    );
    assert_eq!(read_to_eof(&mut s), b"answer after your EOF");
}

#[test]
fn r7_bytes_behind_either_head_are_relayed() {
    let (tx, received) = mpsc::channel();
    let backend = Backend::raw(move |mut s, conn| {
        let Some(_) = read_request(&mut s, conn) else {
            return;
        };
        // The 101 head and the first bytes of the new protocol in one write.
        let mut answer = switching("raw").into_bytes();
        answer.extend_from_slice(b"backend-early");
        s.write_all(&answer).unwrap();
        let mut early = [0u8; 12];
        let _ = tx.send(
            s.read_exact(&mut early)
                .map(|_| early.to_vec())
                .map_err(|e| e.kind()),
        );
    });
    let hawkey = Hawkey::start(route_config("^/", &backend));
    let mut s = hawkey.connect();
    // The request head and the first bytes of the new protocol in one write.
    let mut request = upgrade_request("/early", "Upgrade", "raw").into_bytes();
    request.extend_from_slice(b"client-early");
    send(&mut s, &request);

    let res = read_response(&mut s, false);
    assert_eq!(res.status, 101, "{}", res.head);
    let mut early = [0u8; 13];
    s.read_exact(&mut early).unwrap();
    assert_eq!(&early, b"backend-early");
    let got = received.recv_timeout(TIMEOUT).unwrap();
    assert_eq!(got.as_deref(), Ok(&b"client-early"[..]));
}

#[test]
fn r7_declined_upgrade_is_a_normal_response_and_then_the_connection_closes() {
    let refuses = Backend::start(|_| {
        Reply::Bytes(
            b"HTTP/1.1 426 Upgrade Required\r\nContent-Length: 12\r\n\r\nnot for you\n".to_vec(),
        )
    });
    let chunked = Backend::start(|_| {
        Reply::Bytes(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nplain\r\n0\r\n\r\n"
                .to_vec(),
        )
    });
    let config = json!({ "proxy": [
        { "pathRegExp": "^/refused", "authority": [refuses.authority()] },
        { "pathRegExp": "^/plain", "authority": [chunked.authority()] },
    ]});
    let hawkey = Hawkey::start(config);
    for (target, status, body) in [("/refused", 426, "not for you\n"), ("/plain", 200, "plain")] {
        let (mut s, res) = open_tunnel(&hawkey, &upgrade_request(target, "Upgrade", "websocket"));
        assert_eq!(
            (res.status, res.text().as_str()),
            (status, body),
            "{target}"
        );
        assert_eq!(
            read_to_eof(&mut s),
            b"",
            "{target}: the connection stays open or carries more bytes"
        );
    }
    // Both backends were asked the upgrade, with both fields.
    for backend in [&refuses, &chunked] {
        let req = &backend.requests()[0];
        assert!(has_token(req, "connection", "upgrade"), "{}", req.head);
        assert_eq!(req.header("upgrade"), Some("websocket"));
    }
}

#[test]
fn r7_not_upgrades_are_forwarded_as_normal_requests_without_the_fields() {
    let backend = Backend::fixed("plain");
    let hawkey = Hawkey::start(route_config("^/", &backend));
    let cases = [
        (
            "Upgrade without the upgrade token in Connection",
            "GET /no-token HTTP/1.1\r\nHost: test\r\nConnection: keep-alive\r\nUpgrade: websocket\r\n\r\n",
        ),
        (
            "an HTTP/1.0 client",
            "GET /http10 HTTP/1.0\r\nHost: test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
        ),
        (
            "h2c",
            "GET /h2c HTTP/1.1\r\nHost: test\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n\
             HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n",
        ),
    ];
    for (i, (case, request)) in cases.iter().enumerate() {
        let mut s = hawkey.connect();
        send(&mut s, request.as_bytes());
        let res = read_response(&mut s, false);
        assert_eq!((res.status, res.text().as_str()), (200, "plain"), "{case}");
        let req = &backend.requests()[i];
        assert_eq!(req.header("upgrade"), None, "{case}: {}", req.head);
        assert!(
            !has_token(req, "connection", "upgrade"),
            "{case}: {}",
            req.head
        );
        assert_eq!(req.header("http2-settings"), None, "{case}: {}", req.head);
        if i == 0 {
            // Still an ordinary keep-alive connection, not a tunnel.
            send(&mut s, b"GET /next HTTP/1.1\r\nHost: test\r\n\r\n");
            assert_eq!(read_response(&mut s, false).text(), "plain", "{case}");
        }
    }
}

#[test]
fn r7_request_body_reaches_the_backend_before_the_101() {
    let (tx, received) = mpsc::channel();
    let backend = Backend::raw(move |mut s, conn| {
        let Some(req) = read_request(&mut s, conn) else {
            return;
        };
        // The whole body has been read: only now does the backend agree.
        let _ = tx.send(req.body);
        s.write_all(switching("raw").as_bytes()).unwrap();
        let mut reader = s.try_clone().unwrap();
        let _ = std::io::copy(&mut reader, &mut s);
    });
    let hawkey = Hawkey::start(route_config("^/", &backend));
    let mut s = hawkey.connect();
    send(
        &mut s,
        b"POST /with-body HTTP/1.1\r\nHost: test\r\nConnection: Upgrade\r\nUpgrade: raw\r\n\
          Content-Length: 11\r\n\r\nhello there",
    );
    let res = read_response(&mut s, false);
    assert_eq!(res.status, 101, "{}", res.head);
    assert_eq!(received.recv_timeout(TIMEOUT).unwrap(), b"hello there");
    echo_round(&mut s, b"after the body");
}

#[test]
fn r7_hundred_concurrent_tunnels_each_echo_their_own_bytes() {
    let (backend, _) = echo_backend();
    let hawkey = Hawkey::start(route_config("^/", &backend));
    std::thread::scope(|scope| {
        for t in 0..100u64 {
            let hawkey = &hawkey;
            scope.spawn(move || {
                let mut s = open_raw_tunnel(hawkey, &format!("/t{t}"));
                let mut xs = XorShift(t + 1);
                for _ in 0..5 {
                    let mut bytes = vec![0; 1024];
                    xs.fill(&mut bytes);
                    echo_round(&mut s, &bytes);
                }
                s.shutdown(Shutdown::Write).unwrap();
                assert_eq!(read_to_eof(&mut s), b"", "tunnel {t}");
            });
        }
    });
    assert_eq!(backend.accepted(), 100);
}

/// How many idle tunnels the test can hold: 500, unless the descriptor limits are
/// lower. The test process holds two descriptors per tunnel (client and backend
/// ends) beside ~300 for the other tests; hawkey two per tunnel plus its spares [K].
fn idle_tunnels_that_fit() -> usize {
    let (soft, hard) = open_files_limits();
    let ours = soft.saturating_sub(300) / 2;
    let hawkeys = (hard.saturating_sub(64) / 2).saturating_sub(16);
    let n = 500.min(ours).min(hawkeys) as usize;
    if n < 500 {
        eprintln!("open-files limit {soft}/{hard}: holding {n} idle tunnels instead of 500");
    }
    n
}

#[test]
fn r7_idle_tunnels_do_not_starve_workers() {
    // The backend keeps each tunnel's socket, by the number in its target, and holds
    // no thread for it.
    let held: Arc<Mutex<HashMap<usize, TcpStream>>> = Arc::default();
    let keep = Arc::clone(&held);
    let backend = Backend::raw(move |mut s, conn| {
        while let Some(req) = read_request(&mut s, conn) {
            if let Some(n) = req.target.strip_prefix("/idle/") {
                keep.lock()
                    .unwrap()
                    .insert(n.parse().unwrap(), s.try_clone().unwrap());
                let _ = s.write_all(switching("raw").as_bytes());
                return;
            }
            if s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nplain")
                .is_err()
            {
                return;
            }
        }
    });
    let mut config = route_config("^/", &backend);
    config["workers"] = 16.into();
    let hawkey = Hawkey::start(config);
    let n = idle_tunnels_that_fit();
    let mut tunnels: Vec<TcpStream> = (0..n)
        .map(|i| open_raw_tunnel(&hawkey, &format!("/idle/{i}")))
        .collect();

    // If each tunnel held a worker, these would wait for tunnelIdleMs (an hour).
    let mut latencies = Vec::new();
    for sample in 0..5 {
        let started = Instant::now();
        let res = hawkey.get(&format!("/new/{sample}"));
        latencies.push(started.elapsed());
        assert_eq!((res.status, res.text().as_str()), (200, "plain"));
    }
    let threads = hawkey.proc_status("Threads");
    eprintln!(
        "{n} idle tunnels, 16 workers: new client answered in {latencies:?}; hawkey threads {threads}, VmRSS {} kB",
        hawkey.proc_status("VmRSS")
    );
    let slowest = latencies.iter().max().unwrap();
    assert!(
        *slowest < Duration::from_secs(1),
        "a new client waited {slowest:?}"
    );
    assert!(threads < 40, "hawkey runs {threads} threads");

    // The idle tunnels still carry bytes both ways.
    for i in [0, n / 2, n - 1] {
        let mut backend_end = held.lock().unwrap()[&i].try_clone().unwrap();
        backend_end.write_all(b"wake").unwrap();
        let mut got = [0u8; 4];
        tunnels[i].read_exact(&mut got).unwrap();
        assert_eq!(&got, b"wake", "tunnel {i}");
        send(&mut tunnels[i], b"back");
        backend_end.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"back", "tunnel {i}");
    }
}

#[test]
fn r7_idle_tunnel_is_closed_after_tunnel_idle_ms() {
    let (tx, backend_saw) = mpsc::channel();
    let backend = Backend::raw(move |mut s, conn| {
        let Some(_) = read_request(&mut s, conn) else {
            return;
        };
        s.write_all(switching("raw").as_bytes()).unwrap();
        let mut byte = [0u8];
        let _ = tx.send(s.read(&mut byte).map_err(|e| e.kind()));
    });
    let mut config = route_config("^/", &backend);
    config["timeouts"] = json!({ "tunnelIdleMs": 300 });
    let hawkey = Hawkey::start(config);
    let mut s = open_raw_tunnel(&hawkey, "/idle");
    let opened = Instant::now();

    let mut byte = [0u8];
    let n = s.read(&mut byte).expect("closed, not timed out");
    let idle = opened.elapsed();
    assert_eq!(n, 0, "a byte arrived on an idle tunnel");
    assert!(
        idle >= Duration::from_millis(280) && idle < Duration::from_secs(3),
        "closed after {idle:?}, tunnelIdleMs is 300"
    );
    assert_eq!(
        backend_saw.recv_timeout(Duration::from_secs(3)),
        Ok(Ok(0)),
        "the backend did not see its end closed"
    );
}

#[test]
fn r7_tunnel_with_traffic_outlives_tunnel_idle_ms() {
    let (backend, _) = echo_backend();
    let mut config = route_config("^/", &backend);
    config["timeouts"] = json!({ "tunnelIdleMs": 300 });
    let hawkey = Hawkey::start(config);
    let mut s = open_raw_tunnel(&hawkey, "/busy");
    let opened = Instant::now();
    for i in 0..12 {
        // Pacing: a message every 100 ms keeps the tunnel active past 300 ms.
        std::thread::sleep(Duration::from_millis(100));
        echo_round(&mut s, format!("tick {i}").as_bytes());
    }
    assert!(opened.elapsed() > Duration::from_millis(1200));
}

#[test]
fn r7_upstream_ms_does_not_close_an_idle_tunnel() {
    let (backend, _) = echo_backend();
    let mut config = route_config("^/", &backend);
    config["timeouts"] = json!({ "upstreamMs": 200 });
    let hawkey = Hawkey::start(config);
    let mut s = open_raw_tunnel(&hawkey, "/quiet");
    echo_round(&mut s, b"before");
    assert_quiet(&mut s, Duration::from_millis(500));
    echo_round(&mut s, b"after 500 ms idle");
}

/// The status line of a GET on a new connection, or what went wrong: a refused
/// connection may be reset before its 503 is read.
fn status_line_of_get(hawkey: &Hawkey) -> String {
    let mut s = hawkey.connect();
    let _ = s.write_all(b"GET /ordinary HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    let mut answer = Vec::new();
    match s.read_to_end(&mut answer) {
        Ok(_) => String::from_utf8_lossy(&answer)
            .lines()
            .next()
            .unwrap_or("")
            .to_string(),
        Err(e) => format!("{e}"),
    }
}

#[test]
fn r7_tunnels_count_against_max_connections() {
    let (backend, _) = echo_backend();
    let mut config = route_config("^/", &backend);
    config["maxConnections"] = 2.into();
    let hawkey = Hawkey::start(config);
    let mut first = open_raw_tunnel(&hawkey, "/one");
    let mut second = open_raw_tunnel(&hawkey, "/two");

    // Refused at accept, before any request is read: send nothing, just read.
    let mut third = hawkey.connect();
    let res = read_response(&mut third, false);
    assert_eq!(res.status, 503, "{}", res.head);

    echo_round(&mut first, b"still open");
    echo_round(&mut second, b"still open");
    drop(first);
    // Once the first tunnel has closed its place is free again.
    let mut last = String::new();
    let freed = poll_until(Instant::now() + Duration::from_secs(5), || {
        last = status_line_of_get(&hawkey);
        last.starts_with("HTTP/1.1 200 ")
    });
    assert!(
        freed,
        "after a tunnel closed, a new connection still got {last:?}"
    );
}

#[test]
fn r7_descriptors_return_to_baseline_after_tunnels_close() {
    let (backend, _) = echo_backend();
    let hawkey = Hawkey::start(route_config("^/", &backend));
    let baseline = hawkey.open_fds();
    let mut tunnels: Vec<TcpStream> = (0..20)
        .map(|i| open_raw_tunnel(&hawkey, &format!("/fd/{i}")))
        .collect();
    for s in &mut tunnels {
        echo_round(s, b"x");
    }
    let peak = hawkey.open_fds();
    // Two per tunnel, give or take: a count of /proc/PID/fd is a snapshot of a busy
    // process (one run in about twenty saw one descriptor fewer than 40).
    assert!(
        peak >= baseline + 38,
        "20 tunnels should hold 40 descriptors ({peak} vs {baseline})"
    );
    // Half end with a half-close first, half with a plain close.
    for (i, mut s) in tunnels.into_iter().enumerate() {
        if i % 2 == 0 {
            s.shutdown(Shutdown::Write).unwrap();
            assert_eq!(read_to_eof(&mut s), b"", "tunnel {i}");
        }
    }
    let mut last = peak;
    let back = poll_until(Instant::now() + Duration::from_secs(5), || {
        last = hawkey.open_fds();
        last <= baseline
    });
    assert!(
        back,
        "hawkey holds {last} descriptors, {baseline} before the tunnels (peak {peak})"
    );
}
