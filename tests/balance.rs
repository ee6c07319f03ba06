//! Several authorities in one route [R6]: round robin, an authority whose connect
//! fails skipped for 10 s and then used again, 502 when none can be reached, and a
//! backend that answers garbage failing only its own request.

mod common;
use common::*;

use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

/// How long hawkey skips an authority whose connect failed [R6].
const DOWN_FOR: Duration = Duration::from_secs(10);

/// A config with one route `^/` over `authorities`, in this order.
fn balanced(authorities: &[String]) -> serde_json::Value {
    json!({ "proxy": [{ "pathRegExp": "^/", "authority": authorities }] })
}

/// An address that refuses connections: a port bound, then released.
fn refusing_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// Binds `addr` again, retrying for a while in case the port is briefly held.
fn bind_again(addr: SocketAddr) -> TcpListener {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match TcpListener::bind(addr) {
            Ok(listener) => return listener,
            Err(e) if Instant::now() < deadline => {
                eprintln!("binding {addr} again: {e}; retrying");
                std::thread::park_timeout(Duration::from_millis(100)); // retry interval
            }
            Err(e) => panic!("cannot bind {addr} again: {e}"),
        }
    }
}

/// A backend on `listener` that answers every request `200` with `name` and records
/// when each request arrived.
fn timed_backend(listener: TcpListener, name: &'static str) -> Arc<Mutex<Vec<Instant>>> {
    let arrivals: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let record = Arc::clone(&arrivals);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let record = Arc::clone(&record);
            std::thread::spawn(move || {
                stream.set_read_timeout(Some(TIMEOUT)).unwrap();
                while read_request(&mut stream, 0).is_some() {
                    record.lock().unwrap().push(Instant::now());
                    let answer = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{name}",
                        name.len()
                    );
                    if stream.write_all(answer.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    arrivals
}

/// A GET on a new connection: (status, body).
fn get(hawkey: &Hawkey, target: &str) -> (u16, String) {
    let res = hawkey.get(target);
    (res.status, res.text())
}

#[test]
fn r6_sequential_requests_take_the_authorities_in_turn() {
    let a = Backend::fixed("a");
    let b = Backend::fixed("b");
    let hawkey = Hawkey::start(balanced(&[a.authority(), b.authority()]));
    let mut bodies = String::new();
    for i in 0..10 {
        let (status, body) = get(&hawkey, &format!("/new/{i}"));
        assert_eq!(status, 200);
        bodies += &body;
    }
    // One rotation per route, whatever the client connection: a keep-alive client
    // is not pinned to one backend.
    let mut s = hawkey.connect();
    for i in 0..10 {
        send(
            &mut s,
            format!("GET /same/{i} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes(),
        );
        let res = read_response(&mut s, false);
        assert_eq!(res.status, 200);
        bodies += &res.text();
    }
    let count = |name| bodies.matches(name).count();
    assert_eq!((count("a"), count("b")), (10, 10), "order {bodies}");
    assert_eq!((a.requests().len(), b.requests().len()), (10, 10));
}

#[test]
fn r6_three_authorities_share_the_requests_evenly() {
    let backends = [
        Backend::fixed("a"),
        Backend::fixed("b"),
        Backend::fixed("c"),
    ];
    let authorities: Vec<String> = backends.iter().map(Backend::authority).collect();
    let hawkey = Hawkey::start(balanced(&authorities));
    let mut bodies = String::new();
    for i in 0..9 {
        let (status, body) = get(&hawkey, &format!("/r/{i}"));
        assert_eq!(status, 200);
        bodies += &body;
    }
    for name in ["a", "b", "c"] {
        assert_eq!(bodies.matches(name).count(), 3, "order {bodies}");
    }
}

#[test]
fn r6_dead_authority_is_skipped() {
    let dead = refusing_addr();
    let live = Backend::fixed("live");
    // The dead authority comes first or second in the rotation: one of the first two
    // requests tries it.
    let hawkey = Hawkey::start(balanced(&[dead.to_string(), live.authority()]));
    let started = Instant::now();
    for i in 0..10 {
        assert_eq!(
            get(&hawkey, &format!("/a/{i}")),
            (200, "live".into()),
            "request {i}"
        );
    }
    // The port comes back to life: had hawkey kept trying it after the first
    // refusal, the requests that start there (every other one) would now reach it.
    let revived = timed_backend(bind_again(dead), "revived");
    for i in 10..20 {
        assert_eq!(
            get(&hawkey, &format!("/b/{i}")),
            (200, "live".into()),
            "request {i}"
        );
    }
    let elapsed = started.elapsed();
    eprintln!("20 requests with one dead authority in {elapsed:?}");
    assert!(
        elapsed < DOWN_FOR,
        "the test outlived the down mark ({elapsed:?}); it proves nothing"
    );
    assert_eq!(revived.lock().unwrap().len(), 0, "tried again within 10 s");
    assert_eq!(live.requests().len(), 20);
}

#[test]
fn r6_all_authorities_dead_is_502() {
    let hawkey = Hawkey::start(balanced(&[
        refusing_addr().to_string(),
        refusing_addr().to_string(),
    ]));
    // The second time both are marked down: they are tried anyway, and fail again.
    for attempt in 0..2 {
        let res = hawkey.get("/nobody");
        assert_eq!(res.status, 502, "attempt {attempt}");
        assert_eq!(
            res.header("content-type"),
            Some("text/plain; charset=utf-8"),
            "attempt {attempt}"
        );
        assert!(!res.body.is_empty(), "attempt {attempt}");
    }
}

#[test]
fn r6_dead_authority_is_used_again_after_ten_seconds() {
    let a_addr = refusing_addr();
    let b = Backend::fixed("b");
    let hawkey = Hawkey::start(balanced(&[a_addr.to_string(), b.authority()]));
    // One of the first two requests tries A: refused, A is marked down no earlier
    // than this.
    let first_sent = Instant::now();
    for i in 0..3 {
        assert_eq!(get(&hawkey, &format!("/down/{i}")), (200, "b".into()));
    }
    let a = timed_backend(bind_again(a_addr), "a");

    let mut answers = String::new();
    let deadline = first_sent + Duration::from_secs(15);
    while a.lock().unwrap().is_empty() {
        assert!(
            Instant::now() < deadline,
            "A was not used again within 15 s; answers: {answers}"
        );
        let (status, body) = get(&hawkey, "/probe");
        assert_eq!(status, 200);
        answers += &body;
        std::thread::sleep(Duration::from_millis(500)); // pacing the probes
    }
    let back_after = a.lock().unwrap()[0] - first_sent;
    eprintln!("A used again {back_after:?} after it was marked down; answers: {answers}");
    assert!(
        back_after >= DOWN_FOR - Duration::from_millis(100),
        "A was used again after {back_after:?}, before its 10 s were over"
    );
    assert!(
        answers.len() >= 15,
        "too few probes inside the down window to show it: {answers}"
    );
}

#[test]
fn r6_garbage_answer_is_502_but_does_not_mark_the_backend_down() {
    let garbage = Backend::raw(|mut s, conn| {
        if read_request(&mut s, conn).is_some() {
            let _ = s.write_all(b"this is not HTTP at all\r\n\r\n");
        }
    });
    let good = Backend::fixed("good");
    let hawkey = Hawkey::start(balanced(&[garbage.authority(), good.authority()]));
    let mut statuses = Vec::new();
    for i in 0..10 {
        let res = hawkey.get(&format!("/g/{i}"));
        statuses.push(res.status);
        if res.status == 200 {
            assert_eq!(res.text(), "good");
        }
    }
    // Each request starts one further along the list, and a garbage answer is not a
    // connect failure: the garbage backend keeps its turn.
    assert!(
        statuses.windows(2).all(|w| w[0] != w[1]),
        "statuses {statuses:?}"
    );
    assert_eq!(garbage.accepted(), 5, "the garbage backend was skipped");
    assert_eq!(good.requests().len(), 5);
}
