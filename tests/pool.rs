//! The per-authority pool of backend connections [R5]: reuse, what is never reused,
//! the retry-once rule for a reused connection that fails, `maxIdlePerAuthority`,
//! and the 502/504 answers for a backend that is down or silent.

mod common;
use common::*;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Condvar, Mutex, mpsc};
use std::time::{Duration, Instant};

use serde_json::json;

/// `(connection number, method, target)` of every request a raw backend read.
type Seen = Arc<Mutex<Vec<(usize, String, String)>>>;

/// A backend whose connection 0 answers its first request, then reads the second
/// and closes without answering; later connections answer everything, unless
/// `later_drop`, in which case they too close without answering.
fn drops_second_on_first_connection(later_drop: bool) -> (Backend, Seen) {
    let seen: Seen = Arc::default();
    let record = Arc::clone(&seen);
    let backend = Backend::raw(move |mut s, conn| {
        let mut served = 0;
        while let Some(req) = read_request(&mut s, conn) {
            record
                .lock()
                .unwrap()
                .push((conn, req.method.clone(), req.target.clone()));
            let answer = if conn == 0 { served == 0 } else { !later_drop };
            if !answer {
                return; // the whole request was read: this is a clean close, not a reset
            }
            served += 1;
            if s.write_all(&ok_bytes(&req.target)).is_err() {
                return;
            }
        }
    });
    (backend, seen)
}

#[test]
fn r5_sequential_keep_alive_requests_reuse_a_handful_of_connections() {
    let backend = Backend::start(|r| ok(&r.target));
    let hawkey = Hawkey::start(route_config("^/", &backend));
    let mut s = hawkey.connect();
    for i in 0..100 {
        let target = format!("/seq/{i}");
        assert_eq!(get_on(&mut s, &target).text(), target);
    }
    // A new client connection each time: the backend connections are still shared.
    for i in 0..100 {
        let target = format!("/new/{i}");
        assert_eq!(hawkey.get(&target).text(), target);
    }
    assert_eq!(backend.requests().len(), 200);
    let accepted = backend.accepted();
    assert!(
        accepted <= 3,
        "200 requests took {accepted} backend connections"
    );
}

#[test]
fn r5_idle_connection_closed_by_the_backend_is_never_used_for_a_request() {
    // Each connection answers one request (keep-alive by its headers) and then closes.
    let backend = Backend::raw(|mut s, conn| {
        if let Some(req) = read_request(&mut s, conn) {
            let _ = s.write_all(&ok_bytes(&req.target));
        }
    });
    let hawkey = Hawkey::start(route_config("^/", &backend));
    for i in 0..20 {
        let target = format!("/stale/{i}");
        let res = hawkey.get(&target);
        assert_eq!((res.status, res.text()), (200, target));
    }
    assert_eq!(backend.accepted(), 20);
}

#[test]
fn r5_backend_closing_idle_connections_after_a_short_delay_is_invisible_to_clients() {
    const BACKEND_IDLE: Duration = Duration::from_millis(30);
    let backend = Backend::raw(|mut s, conn| {
        while let Some(req) = read_request(&mut s, conn) {
            if s.write_all(&ok_bytes(&req.target)).is_err() {
                return;
            }
            // Like Node's keepAliveTimeout: close a connection idle this long.
            s.set_read_timeout(Some(BACKEND_IDLE)).unwrap();
        }
    });
    let hawkey = Hawkey::start(route_config("^/", &backend));
    for i in 0..40u64 {
        let target = format!("/idle/{i}");
        let res = hawkey.get(&target);
        assert_eq!((res.status, res.text()), (200, target));
        // The gap is the behaviour under test: from well inside to well past the
        // backend's idle time, so some requests meet a connection as it closes.
        std::thread::sleep(Duration::from_millis(i % 8 * 8));
    }
    assert!(
        backend.accepted() > 1,
        "the backend's idle timer never fired"
    );
}

#[test]
fn r5_get_failing_on_a_reused_connection_is_retried_once_on_a_fresh_one() {
    let (backend, seen) = drops_second_on_first_connection(false);
    let hawkey = Hawkey::start(route_config("^/", &backend));
    let mut s = hawkey.connect();
    assert_eq!(get_on(&mut s, "/first").status, 200);
    let res = get_on(&mut s, "/second");
    assert_eq!((res.status, res.text().as_str()), (200, "/second"));
    let seen = seen.lock().unwrap().clone();
    let get = |conn: usize, target: &str| (conn, "GET".to_string(), target.to_string());
    assert_eq!(
        seen,
        [get(0, "/first"), get(0, "/second"), get(1, "/second")]
    );
}

#[test]
fn r5_retry_happens_only_once() {
    let (backend, seen) = drops_second_on_first_connection(true);
    let hawkey = Hawkey::start(route_config("^/", &backend));
    let mut s = hawkey.connect();
    assert_eq!(get_on(&mut s, "/first").status, 200);
    assert_eq!(get_on(&mut s, "/second").status, 502);
    let tries = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, _, t)| t == "/second")
        .count();
    assert_eq!(tries, 2, "the reused try and exactly one fresh one");
    assert_eq!(backend.accepted(), 2);
}

#[test]
fn r5_request_with_a_body_or_a_non_idempotent_method_is_never_resent() {
    for (method, body) in [("POST", "payload"), ("PUT", "payload"), ("POST", "")] {
        let (backend, seen) = drops_second_on_first_connection(false);
        let hawkey = Hawkey::start(route_config("^/", &backend));
        let mut s = hawkey.connect();
        assert_eq!(get_on(&mut s, "/first").status, 200);
        let req = format!(
            "{method} /second HTTP/1.1\r\nHost: h\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        send(&mut s, req.as_bytes());
        let res = read_response(&mut s, false);
        assert_eq!(res.status, 502, "{method} with {} body bytes", body.len());
        // A retry would have happened before the 502 was written.
        let tries = seen
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, _, t)| t == "/second")
            .count();
        assert_eq!(
            tries,
            1,
            "{method} with {} body bytes was re-sent",
            body.len()
        );
        assert_eq!(backend.accepted(), 1);
    }
}

/// Two sequential requests on one client connection; the backend connections used.
fn connections_for_two_requests(backend: &Backend, config: serde_json::Value) -> usize {
    let hawkey = Hawkey::start(config);
    let mut s = hawkey.connect();
    assert_eq!(get_on(&mut s, "/1").status, 200);
    assert_eq!(get_on(&mut s, "/2").status, 200);
    assert_eq!(backend.requests().len(), 2);
    backend.accepted()
}

/// A backend answering `reply` and keeping its side of the connection open, so only
/// hawkey's own decision can stop the reuse.
fn answering(reply: &'static str) -> Backend {
    Backend::start(move |_| Reply::Bytes(reply.as_bytes().to_vec()))
}

#[test]
fn r5_connection_close_from_the_backend_is_not_reused() {
    let closing = answering("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok");
    assert_eq!(
        connections_for_two_requests(&closing, route_config("^/", &closing)),
        2
    );
    let keeping = answering("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    assert_eq!(
        connections_for_two_requests(&keeping, route_config("^/", &keeping)),
        1
    );
}

#[test]
fn r5_keep_alive_timeout_1_from_the_backend_means_do_not_pool() {
    let short =
        answering("HTTP/1.1 200 OK\r\nKeep-Alive: timeout=1\r\nContent-Length: 2\r\n\r\nok");
    assert_eq!(
        connections_for_two_requests(&short, route_config("^/", &short)),
        2
    );
    let long = answering("HTTP/1.1 200 OK\r\nKeep-Alive: timeout=5\r\nContent-Length: 2\r\n\r\nok");
    assert_eq!(
        connections_for_two_requests(&long, route_config("^/", &long)),
        1
    );
}

#[test]
fn r5_http10_backend_is_reused_only_when_it_says_keep_alive() {
    let http10 = |b: &Backend| json!({ "proxy": [{ "pathRegExp": "^/", "authority": [b.authority()], "httpVersion": "1.0" }] });
    let plain = answering("HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok");
    assert_eq!(connections_for_two_requests(&plain, http10(&plain)), 2);
    let keeping =
        answering("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok");
    assert_eq!(connections_for_two_requests(&keeping, http10(&keeping)), 1);
}

#[test]
fn r5_idle_timeout_ms_drops_a_pooled_connection() {
    let backend = Backend::start(|r| ok(&r.target));
    let mut config = route_config("^/", &backend);
    config["upstreamPool"] = json!({ "idleTimeoutMs": 400 });
    let hawkey = Hawkey::start(config);
    let mut s = hawkey.connect();
    assert_eq!(get_on(&mut s, "/1").status, 200);
    assert_eq!(get_on(&mut s, "/2").status, 200);
    assert_eq!(backend.accepted(), 1, "reused while fresh");
    // The pool's idle timer is the behaviour under test.
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(get_on(&mut s, "/3").status, 200);
    assert_eq!(backend.accepted(), 2, "reused after idleTimeoutMs");
}

#[test]
fn r5_connection_with_an_unread_response_is_not_reused() {
    let backend = Backend::start(|r| match r.target.as_str() {
        "/big" => Reply::Bytes(ok_bytes(&"x".repeat(4 << 20))),
        _ => ok("small"),
    });
    let hawkey = Hawkey::start(route_config("^/", &backend));
    let mut s = hawkey.connect();
    send(&mut s, b"GET /big HTTP/1.1\r\nHost: h\r\n\r\n");
    let head = String::from_utf8(read_head_bytes(&mut s).unwrap()).unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    drop(s); // gone with most of the body unread
    for _ in 0..5 {
        let res = hawkey.get("/small");
        assert_eq!((res.status, res.text().as_str()), (200, "small"));
    }
}

#[test]
fn r5_idle_connection_holding_stray_bytes_is_not_reused() {
    let (wrote_tx, wrote_rx) = mpsc::channel();
    let backend = Backend::raw(move |mut s, conn| {
        while let Some(req) = read_request(&mut s, conn) {
            if s.write_all(&ok_bytes(&req.target)).is_err() {
                return;
            }
            if conn == 0 {
                // An answer nobody asked for: reusing this connection would hand it
                // to the next request.
                let _ = s.write_all(&ok_bytes("stale"));
                let _ = wrote_tx.send(());
            }
        }
    });
    let hawkey = Hawkey::start(route_config("^/", &backend));
    let mut s = hawkey.connect();
    assert_eq!(get_on(&mut s, "/1").text(), "/1");
    wrote_rx.recv_timeout(TIMEOUT).unwrap();
    let res = get_on(&mut s, "/2");
    assert_eq!((res.status, res.text().as_str()), (200, "/2"));
    assert_eq!(backend.accepted(), 2);
}

/// Holds each caller until `n` callers are inside at once (or `TIMEOUT` passed).
struct Gate {
    inside: Mutex<usize>,
    all_in: Condvar,
    n: usize,
}

impl Gate {
    fn pass(&self) {
        let mut inside = self.inside.lock().unwrap();
        *inside += 1;
        self.all_in.notify_all();
        let _ = self
            .all_in
            .wait_timeout_while(inside, TIMEOUT, |inside| *inside < self.n)
            .unwrap();
    }
}

#[test]
fn r5_max_idle_per_authority_is_honoured() {
    const TOGETHER: usize = 4;
    let gate = Arc::new(Gate {
        inside: Mutex::new(0),
        all_in: Condvar::new(),
        n: TOGETHER,
    });
    let (closed_tx, closed_rx) = mpsc::channel();
    let backend = Backend::raw(move |mut s, conn| {
        while let Some(req) = read_request(&mut s, conn) {
            if req.target.starts_with("/together") {
                gate.pass(); // so that hawkey needs TOGETHER connections at once
            }
            if s.write_all(&ok_bytes(&req.target)).is_err() {
                break;
            }
        }
        let _ = closed_tx.send(conn);
    });
    let mut config = route_config("^/", &backend);
    config["upstreamPool"] = json!({ "maxIdlePerAuthority": 1 });
    let hawkey = Hawkey::start(config);
    let addr = hawkey.addr;
    let clients: Vec<_> = (0..TOGETHER)
        .map(|i| {
            std::thread::spawn(move || {
                let mut s = connect(addr);
                let req =
                    format!("GET /together/{i} HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n");
                send(&mut s, req.as_bytes());
                read_response(&mut s, false).status
            })
        })
        .collect();
    for c in clients {
        assert_eq!(c.join().unwrap(), 200);
    }
    assert_eq!(backend.accepted(), TOGETHER);
    // All but one go back to a pool that holds one: hawkey closes the others.
    for _ in 1..TOGETHER {
        closed_rx
            .recv_timeout(TIMEOUT)
            .expect("hawkey closes the connections the pool has no room for");
    }
    // The one it kept serves what follows.
    let mut s = hawkey.connect();
    for i in 0..5 {
        assert_eq!(get_on(&mut s, &format!("/after/{i}")).status, 200);
    }
    assert_eq!(backend.accepted(), TOGETHER);
}

#[test]
fn r5_backend_not_listening_is_502() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port(); // the listener is closed at the end of this statement
    let hawkey = Hawkey::start(
        json!({ "proxy": [{ "pathRegExp": "^/", "authority": [format!("127.0.0.1:{port}")] }] }),
    );
    let res = hawkey.get("/down");
    assert_eq!(res.status, 502);
    assert_eq!(
        res.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(
        res.header("content-length"),
        Some(res.body.len().to_string().as_str())
    );
}

#[test]
fn r5_backend_that_never_answers_is_504_after_upstream_ms() {
    let backend = Backend::raw(|mut s, conn| {
        if read_request(&mut s, conn).is_some() {
            let _ = s.read(&mut [0u8; 1]); // silent until hawkey gives up and closes
        }
    });
    let mut config = route_config("^/", &backend);
    config["timeouts"] = json!({ "upstreamMs": 500 });
    let hawkey = Hawkey::start(config);
    let started = Instant::now();
    let res = hawkey.get("/silent");
    let took = started.elapsed();
    assert_eq!(res.status, 504);
    assert_eq!(
        res.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert!(
        (Duration::from_millis(450)..Duration::from_secs(5)).contains(&took),
        "504 after {took:?}"
    );
}

#[test]
fn r5_timeout_on_a_reused_connection_is_not_retried() {
    // The first request on a connection is answered, the second meets silence: the
    // GET gets one 504 after upstreamMs, not a second wait on a fresh connection.
    let backend = Backend::raw(|mut s, conn| {
        if read_request(&mut s, conn).is_some() {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        }
        if read_request(&mut s, conn).is_some() {
            let _ = s.read(&mut [0u8; 1]); // silent until hawkey gives up and closes
        }
    });
    let mut config = route_config("^/", &backend);
    config["timeouts"] = json!({ "upstreamMs": 500 });
    let hawkey = Hawkey::start(config);
    assert_eq!(hawkey.get("/first").status, 200);
    let started = Instant::now();
    let res = hawkey.get("/second");
    let took = started.elapsed();
    assert_eq!(res.status, 504);
    assert!(took < Duration::from_millis(950), "504 after {took:?}");
    assert_eq!(
        backend.accepted(),
        1,
        "the GET was sent again on a new connection"
    );
}

#[test]
fn r5_pooled_connections_are_counted_per_authority() {
    let (a, b) = (Backend::fixed("a"), Backend::fixed("b"));
    let hawkey = Hawkey::start(json!({ "proxy": [
        { "pathRegExp": "^/a", "authority": [a.authority()] },
        { "pathRegExp": "^/b", "authority": [b.authority()] },
    ]}));
    let mut s = hawkey.connect();
    for _ in 0..10 {
        assert_eq!(get_on(&mut s, "/a").text(), "a");
        assert_eq!(get_on(&mut s, "/b").text(), "b");
    }
    assert_eq!((a.accepted(), b.accepted()), (1, 1));
}

/// Idle pooled connections past `idleTimeoutMs` are closed by a sweep, not kept until
/// a request happens to look at them: a quiet backend is not left holding them.
#[test]
fn r5_idle_connections_past_their_idle_time_are_closed_without_a_request() {
    let open = Arc::new(Mutex::new(0usize));
    let counted = Arc::clone(&open);
    let backend = Backend::raw(move |mut s, conn| {
        *counted.lock().unwrap() += 1;
        while let Some(req) = read_request(&mut s, conn) {
            std::thread::sleep(Duration::from_millis(300)); // so that requests overlap
            if s.write_all(&ok_bytes(&req.target)).is_err() {
                break;
            }
        }
        *counted.lock().unwrap() -= 1;
    });
    let mut config = route_config("^/", &backend);
    config["upstreamPool"] = json!({ "idleTimeoutMs": 400 });
    let hawkey = Hawkey::start(config);
    let clients: Vec<_> = (0..8)
        .map(|i| {
            let addr = hawkey.addr;
            std::thread::spawn(move || {
                let mut s = connect(addr);
                assert_eq!(get_on(&mut s, &format!("/{i}")).status, 200);
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    let pooled = *open.lock().unwrap();
    assert!(pooled >= 4, "only {pooled} backend connections were opened");
    let idle_since = Instant::now();
    assert!(
        poll_until(idle_since + Duration::from_secs(3), || *open
            .lock()
            .unwrap()
            == 0),
        "{} of {pooled} idle backend connections still open {:?} after the last request",
        open.lock().unwrap(),
        idle_since.elapsed()
    );
    assert!(
        idle_since.elapsed() >= Duration::from_millis(300),
        "closed too early"
    );
}
