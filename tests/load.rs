//! Load on the connection layer [R8]: many idle keep-alive clients parked without
//! holding workers, the keep-alive timeout, parked connections waking for their next
//! request, descriptors given back, and many concurrent keep-alive clients [R4].

mod common;
use common::*;

use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// A backend that answers every request with its target as the body. It reads
/// through a buffer (the common backend reads a head byte by byte, too slow for
/// thousands of requests on two shared cores).
fn echo_backend() -> Backend {
    Backend::raw(|stream, conn| {
        let mut writer = stream.try_clone().unwrap();
        let mut reader = BufReader::new(stream);
        while let Some(req) = read_request(&mut reader, conn) {
            let answer = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{}",
                req.target.len(),
                req.target
            );
            if writer.write_all(answer.as_bytes()).is_err() {
                return;
            }
        }
    })
}

/// A keep-alive client that reads through a buffer.
struct KeepAlive(BufReader<TcpStream>);

impl KeepAlive {
    fn open(hawkey: &Hawkey) -> KeepAlive {
        KeepAlive(BufReader::new(hawkey.connect()))
    }

    fn send_get(&mut self, target: &str) {
        let req = format!("GET {target} HTTP/1.1\r\nHost: test\r\n\r\n");
        send(self.0.get_mut(), req.as_bytes());
    }

    fn read(&mut self) -> Response {
        read_response(&mut self.0, false)
    }

    fn get(&mut self, target: &str) -> Response {
        self.send_get(target);
        self.read()
    }
}

/// How many idle clients the test can hold: 1000, unless the descriptor limits are
/// lower. The test process needs one descriptor per client (plus ~300 for the tests
/// running beside it); hawkey raises its soft limit to the hard one and needs two
/// per connection [K], or it lowers maxConnections and answers 503.
fn idle_clients_that_fit() -> usize {
    let (soft, hard) = open_files_limits();
    let ours = soft.saturating_sub(300);
    let hawkeys = (hard.saturating_sub(64) / 2).saturating_sub(16);
    let n = 1000.min(ours).min(hawkeys) as usize;
    if n < 1000 {
        eprintln!("open-files limit {soft}/{hard}: holding {n} idle clients instead of 1000");
    }
    n
}

#[test]
fn r8_idle_clients_do_not_starve_workers() {
    let backend = echo_backend();
    let mut config = route_config("^/", &backend);
    config["workers"] = 16.into();
    let hawkey = Hawkey::start(config);
    let n = idle_clients_that_fit();

    // All requests first, then all answers: hawkey serves them on its 16 workers
    // while the answers wait in the socket buffers.
    let mut idle: Vec<KeepAlive> = (0..n).map(|_| KeepAlive::open(&hawkey)).collect();
    for (i, client) in idle.iter_mut().enumerate() {
        client.send_get(&format!("/idle/{i}"));
    }
    for (i, client) in idle.iter_mut().enumerate() {
        let res = client.read();
        assert_eq!(res.status, 200, "idle client {i}");
        assert_eq!(res.text(), format!("/idle/{i}"));
    }

    // If each idle connection held a worker, these would wait for keepAliveMs (60 s).
    let mut latencies = Vec::new();
    for sample in 0..5 {
        let started = Instant::now();
        let res = hawkey.get(&format!("/new/{sample}"));
        latencies.push(started.elapsed());
        assert_eq!(res.status, 200);
        assert_eq!(res.text(), format!("/new/{sample}"));
    }
    let threads = hawkey.proc_status("Threads");
    eprintln!(
        "{n} idle keep-alive clients, 16 workers: new client answered in {:?}; hawkey threads {threads}, VmRSS {} kB",
        latencies,
        hawkey.proc_status("VmRSS")
    );
    let slowest = latencies.iter().max().unwrap();
    assert!(
        *slowest < Duration::from_secs(1),
        "a new client waited {slowest:?}"
    );
    assert!(threads < 40, "hawkey runs {threads} threads");

    // The idle connections are still served, not dropped.
    for i in [0, n / 2, n - 1] {
        assert_eq!(idle[i].get("/again").text(), "/again", "idle client {i}");
    }
}

#[test]
fn r8_silent_new_connections_do_not_starve_workers() {
    let backend = echo_backend();
    let mut config = route_config("^/", &backend);
    config["workers"] = 16.into();
    let hawkey = Hawkey::start(config);
    // Twice as many connections as workers, accepted before the next client and then
    // idle: no byte of a request, waiting for headerMs (10 s).
    let silent: Vec<TcpStream> = (0..32).map(|_| hawkey.connect()).collect();

    let started = Instant::now();
    let mut s = hawkey.connect();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    send(
        &mut s,
        b"GET /new HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n",
    );
    let mut answer = Vec::new();
    let read = s.read_to_end(&mut answer);
    let waited = started.elapsed();
    eprintln!("behind 32 silent connections, 16 workers: new client answered in {waited:?}");
    assert!(
        read.is_ok() && answer.starts_with(b"HTTP/1.1 200 "),
        "no answer within 2 s behind {} silent connections: {read:?} {:?}",
        silent.len(),
        String::from_utf8_lossy(&answer)
    );
    assert!(
        waited < Duration::from_secs(1),
        "a new client waited {waited:?}"
    );
}

#[test]
fn r8_idle_connection_is_closed_after_keep_alive_ms() {
    let backend = echo_backend();
    let mut config = route_config("^/", &backend);
    config["timeouts"] = serde_json::json!({ "keepAliveMs": 300 });
    let hawkey = Hawkey::start(config);
    let mut client = KeepAlive::open(&hawkey);
    assert_eq!(client.get("/a").status, 200);
    let answered = Instant::now();

    let mut byte = [0u8];
    let n = client.0.read(&mut byte).expect("closed, not timed out");
    let idle = answered.elapsed();
    assert_eq!(n, 0, "hawkey sent a byte on an idle connection");
    assert!(
        idle >= Duration::from_millis(280) && idle < Duration::from_secs(3),
        "closed after {idle:?}, keepAliveMs is 300"
    );
}

#[test]
fn r8_parked_connection_wakes_for_its_next_request() {
    let backend = echo_backend();
    let hawkey = Hawkey::start(route_config("^/", &backend));
    let mut client = KeepAlive::open(&hawkey);
    for (round, quiet_ms) in [20, 50, 100, 30, 200].into_iter().enumerate() {
        // Idle well past the 2 ms a worker waits before parking the connection.
        assert_quiet(client.0.get_mut(), Duration::from_millis(quiet_ms));
        let target = format!("/round/{round}");
        if round == 3 {
            // The first bytes wake the parked connection; the rest of the head
            // follows after another pause.
            send(client.0.get_mut(), format!("GET {target} HTT").as_bytes());
            assert_quiet(client.0.get_mut(), Duration::from_millis(30));
            send(client.0.get_mut(), b"P/1.1\r\nHost: test\r\n\r\n");
        } else {
            client.send_get(&target);
        }
        let res = client.read();
        assert_eq!(res.status, 200, "round {round}");
        assert_eq!(res.text(), target, "round {round}");
    }
    assert_eq!(backend.accepted(), 1, "the backend connection was pooled");
}

#[test]
fn r8_open_descriptors_return_to_baseline_after_200_connections() {
    let backend = echo_backend();
    let mut config = route_config("^/proxied", &backend);
    // One pooled backend connection at most, so the baseline below already holds it.
    config["upstreamPool"] = serde_json::json!({ "maxIdlePerAuthority": 1 });
    let hawkey = Hawkey::start(config);
    assert_eq!(hawkey.get("/proxied/warm-up").status, 200);
    let baseline = hawkey.open_fds();

    let mut clients: Vec<TcpStream> = (0..200).map(|_| hawkey.connect()).collect();
    for (i, s) in clients.iter_mut().enumerate() {
        // A third proxied, the rest 404 (no route) but one in ten never sends a byte
        // (fewer than the 64 workers: see r8_silent_new_connections_do_not_starve_workers).
        let target = if i % 3 == 0 { "/proxied" } else { "/nowhere" };
        if i % 10 != 9 {
            let close = if i % 2 == 0 {
                "Connection: close\r\n"
            } else {
                ""
            };
            let req = format!("GET {target}/{i} HTTP/1.1\r\nHost: test\r\n{close}\r\n");
            send(s, req.as_bytes());
        }
    }
    for (i, s) in clients.iter_mut().enumerate() {
        if i % 10 != 9 {
            let expected = if i % 3 == 0 { 200 } else { 404 };
            assert_eq!(read_response(s, false).status, expected, "client {i}");
        }
    }
    let peak = hawkey.open_fds();
    assert!(
        peak > baseline,
        "the open connections show in /proc ({peak} vs {baseline})"
    );
    drop(clients);

    let mut last = peak;
    let back = poll_until(Instant::now() + Duration::from_secs(5), || {
        last = hawkey.open_fds();
        last <= baseline
    });
    assert!(
        back,
        "hawkey holds {last} descriptors, {baseline} before the 200 connections (peak {peak})"
    );
}

#[test]
fn many_concurrent_keep_alive_clients() {
    let backend = echo_backend();
    let hawkey = Hawkey::start(route_config("^/", &backend));
    let started = Instant::now();
    std::thread::scope(|scope| {
        for t in 0..50 {
            let hawkey = &hawkey;
            scope.spawn(move || {
                let mut client = KeepAlive::open(hawkey);
                for i in 0..200 {
                    let target = format!("/c{t}/r{i}");
                    let res = client.get(&target);
                    assert_eq!(res.status, 200, "client {t} request {i}");
                    assert_eq!(res.text(), target, "client {t} request {i}");
                }
            });
        }
    });
    eprintln!(
        "50 clients x 200 keep-alive requests in {:?}; {} backend connections",
        started.elapsed(),
        backend.accepted()
    );
}

/// A worker takes the sockets that are ready together; one of them may be a response
/// that streams for seconds. The others it took must not wait behind it: they are
/// passed on to other workers (`workers.rs`). Streams start one after another while
/// keep-alive clients keep sending, so their first events share batches with the
/// clients' requests; a request held behind a stream would take its whole 2 s.
#[test]
fn r8_a_long_response_does_not_hold_up_requests_ready_beside_it() {
    let backend = Backend::raw(|stream, conn| {
        let mut writer = stream.try_clone().unwrap();
        let mut reader = BufReader::new(stream);
        while let Some(req) = read_request(&mut reader, conn) {
            let sent = if req.target == "/stream" {
                let mut ok = writer
                    .write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                    .is_ok();
                for _ in 0..20 {
                    std::thread::sleep(Duration::from_millis(100));
                    ok = ok && writer.write_all(b"1\r\nx\r\n").is_ok();
                }
                ok && writer.write_all(b"0\r\n\r\n").is_ok()
            } else {
                let answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
                writer.write_all(answer).is_ok()
            };
            if !sent {
                return;
            }
        }
    });
    let mut config = route_config("^/", &backend);
    config["workers"] = 16.into();
    let hawkey = Hawkey::start(config);
    let done = std::sync::atomic::AtomicBool::new(false);
    let slowest = std::thread::scope(|scope| {
        let streams: Vec<_> = (0..8)
            .map(|i| {
                let hawkey = &hawkey;
                scope.spawn(move || {
                    std::thread::sleep(Duration::from_millis(100 * i));
                    let res = KeepAlive::open(hawkey).get("/stream");
                    assert_eq!(res.text(), "x".repeat(20));
                })
            })
            .collect();
        let clients: Vec<_> = (0..4)
            .map(|_| {
                let (hawkey, done) = (&hawkey, &done);
                scope.spawn(move || {
                    let mut client = KeepAlive::open(hawkey);
                    let mut slowest = Duration::ZERO;
                    while !done.load(std::sync::atomic::Ordering::Relaxed) {
                        let asked = Instant::now();
                        assert_eq!(client.get("/quick").text(), "ok");
                        slowest = slowest.max(asked.elapsed());
                    }
                    slowest
                })
            })
            .collect();
        for stream in streams {
            stream.join().unwrap();
        }
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        clients
            .into_iter()
            .map(|c| c.join().unwrap())
            .max()
            .unwrap()
    });
    eprintln!("slowest quick request beside 8 streams: {slowest:?}");
    assert!(
        slowest < Duration::from_secs(1),
        "a request waited {slowest:?}"
    );
}
