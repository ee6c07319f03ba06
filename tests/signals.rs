//! Signals on the real binary [L]: SIGTERM/SIGINT shut down gracefully (requests in
//! flight finish, idle connections and then tunnels are closed, the log is flushed,
//! exit 0), a second one exits at once, SIGUSR1 reopens the access log, and SIGHUP
//! reloads the config file, keeping the old one when the new one is bad.

mod common;
use common::*;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::ExitStatus;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// Sends `sig` to hawkey.
fn signal(hawkey: &Hawkey, sig: libc::c_int) {
    let pid = libc::pid_t::try_from(hawkey.pid()).unwrap();
    // SAFETY: kill(2) takes two integers and touches no memory of ours. The child is
    // not reaped before `Hawkey` is dropped, so its pid cannot name another process.
    let rc = unsafe { libc::kill(pid, sig) };
    assert_eq!(rc, 0, "kill: {}", std::io::Error::last_os_error());
}

/// Polls until hawkey exits or `within` passes; the exit status and how long it took.
fn wait_exit(hawkey: &mut Hawkey, within: Duration) -> (ExitStatus, Duration) {
    let start = Instant::now();
    loop {
        if let Some(status) = hawkey.child.try_wait().unwrap() {
            return (status, start.elapsed());
        }
        assert!(
            start.elapsed() < within,
            "hawkey still running {within:?} after the signal: {}",
            hawkey.stderr()
        );
        std::thread::park_timeout(Duration::from_millis(10)); // a polling interval
    }
}

/// Whether a new connection to `addr` is refused, or closed without an answer to
/// `GET /fast`. A connection accepted before the stop is answered; then it is false.
fn new_connection_refused(addr: SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return true;
    };
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    let sent = s.write_all(b"GET /fast HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    let mut first = [0u8; 1];
    match (sent, s.read(&mut first)) {
        (Ok(()), Ok(1)) => {
            let mut rest = Vec::new();
            let _ = s.read_to_end(&mut rest); // the answer of a connection accepted in time
            false
        }
        (_, Ok(_)) => true,
        (_, Err(e)) => {
            assert_ne!(e.kind(), ErrorKind::WouldBlock, "no answer and no close");
            true
        }
    }
}

/// Asserts that new connections are refused within a second (the stop was seen).
fn assert_refusing(hawkey: &Hawkey) {
    let addr = hawkey.addr;
    assert!(
        poll_until(Instant::now() + Duration::from_secs(1), || {
            new_connection_refused(addr)
        }),
        "still accepting and answering after the stop signal: {}",
        hawkey.stderr()
    );
}

/// Writes `config` over hawkey's config file, in place.
fn rewrite_config(hawkey: &Hawkey, config: &Value) {
    hawkey
        .dir
        .write("server-config.json", config.to_string().as_bytes());
}

/// A full config: `^/slow` → `slow`, anything else → `fast`, plus `extra` keys.
fn config(slow: &Backend, fast: &Backend, extra: Value) -> Value {
    let mut config = json!({
        "port": 0, "host": "127.0.0.1",
        "proxy": [
            { "pathRegExp": "^/slow", "authority": [slow.authority()] },
            { "pathRegExp": "^/", "authority": [fast.authority()] },
        ],
    });
    for (key, value) in extra.as_object().unwrap() {
        config[key] = value.clone();
    }
    config
}

/// A backend that reads one request, reports it, and never answers (it holds the
/// connection until hawkey closes it).
fn silent_backend() -> (Backend, Receiver<String>) {
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    let backend = Backend::raw(move |mut s, conn| {
        if let Some(req) = read_request(&mut s, conn) {
            let _ = tx.lock().unwrap().send(req.target);
            let mut sink = Vec::new();
            let _ = s.read_to_end(&mut sink);
        }
    });
    (backend, rx)
}

/// Sends `GET target` (keep-alive) on a new connection and waits until the backend
/// behind `seen` has it: the request is in flight.
fn in_flight(hawkey: &Hawkey, target: &str, seen: &Receiver<String>) -> TcpStream {
    let mut s = hawkey.connect();
    send(
        &mut s,
        format!("GET {target} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes(),
    );
    assert_eq!(seen.recv_timeout(TIMEOUT).unwrap(), target);
    s
}

#[test]
fn l_sigterm_lets_a_request_in_flight_finish_closes_idle_ones_and_refuses_new_ones() {
    let (slow, seen, release) = held_backend("slow answer");
    let fast = Backend::fixed("fast");
    let mut hawkey = Hawkey::start(config(
        &slow,
        &fast,
        json!({ "timeouts": { "shutdownMs": 5000 } }),
    ));
    let mut idle = hawkey.connect();
    send(&mut idle, b"GET /fast HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(read_response(&mut idle, false).status, 200);
    let mut s = in_flight(&hawkey, "/slow/hold", &seen);

    signal(&hawkey, libc::SIGTERM);
    let stopped = Instant::now();
    let mut byte = [0u8];
    let n = idle.read(&mut byte);
    assert!(
        matches!(n, Ok(0)) && stopped.elapsed() < Duration::from_secs(1),
        "idle connection during the graceful wait: {n:?} after {:?}",
        stopped.elapsed()
    );
    assert!(hawkey.alive(), "exited with a request in flight");
    assert_refusing(&hawkey);
    assert!(hawkey.alive(), "exited with a request in flight");

    release.send(()).unwrap();
    let res = read_response(&mut s, false);
    assert_eq!((res.status, res.text().as_str()), (200, "slow answer"));
    let answered = Instant::now();
    let (status, _) = wait_exit(&mut hawkey, Duration::from_secs(2));
    assert_eq!(status.code(), Some(0), "{status}: {}", hawkey.stderr());
    assert!(
        answered.elapsed() < Duration::from_millis(1500),
        "exit {:?} after the last answer; shutdownMs is 5000",
        answered.elapsed()
    );
}

/// With only an idle keep-alive connection open, `sig` closes it at once and hawkey
/// exits 0 quickly.
fn stops_at_once_closing_idle_connections(sig: libc::c_int) {
    let fast = Backend::fixed("fast");
    let mut hawkey = Hawkey::start(config(
        &fast,
        &fast,
        json!({ "timeouts": { "shutdownMs": 5000 } }),
    ));
    let mut idle = hawkey.connect();
    send(&mut idle, b"GET /a HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(read_response(&mut idle, false).status, 200);
    signal(&hawkey, sig);
    let stopped = Instant::now();
    let mut byte = [0u8];
    let n = idle.read(&mut byte);
    assert!(
        matches!(n, Ok(0)) && stopped.elapsed() < Duration::from_secs(1),
        "idle connection after the signal: {n:?} after {:?}",
        stopped.elapsed()
    );
    let (status, took) = wait_exit(&mut hawkey, Duration::from_secs(2));
    assert_eq!(status.code(), Some(0), "{status}: {}", hawkey.stderr());
    assert!(took < Duration::from_secs(2), "{took:?}");
}

#[test]
fn l_sigterm_with_nothing_in_flight_exits_0_at_once_closing_idle_connections() {
    stops_at_once_closing_idle_connections(libc::SIGTERM);
}

#[test]
fn l_sigint_with_nothing_in_flight_exits_0_at_once_closing_idle_connections() {
    stops_at_once_closing_idle_connections(libc::SIGINT);
}

#[test]
fn l_a_request_outliving_shutdown_ms_is_cut_there_and_hawkey_exits_0() {
    let (silent, seen) = silent_backend();
    let fast = Backend::fixed("fast");
    let mut hawkey = Hawkey::start(config(
        &silent,
        &fast,
        json!({ "timeouts": { "shutdownMs": 500 } }),
    ));
    let _waiting = in_flight(&hawkey, "/slow", &seen);
    signal(&hawkey, libc::SIGTERM);
    let (status, took) = wait_exit(&mut hawkey, Duration::from_secs(3));
    assert_eq!(status.code(), Some(0), "{status}: {}", hawkey.stderr());
    assert!(
        took >= Duration::from_millis(450) && took < Duration::from_millis(2000),
        "exit {took:?} after SIGTERM with shutdownMs 500"
    );
}

/// A backend that answers any request with 101, then echoes until EOF.
fn upgrade_backend() -> Backend {
    Backend::raw(|mut s, conn| {
        if read_request(&mut s, conn).is_none() {
            return;
        }
        let head =
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: raw\r\nConnection: Upgrade\r\n\r\n";
        if s.write_all(head).is_err() {
            return;
        }
        let mut reader = s.try_clone().unwrap();
        let _ = std::io::copy(&mut reader, &mut s);
        let _ = s.shutdown(Shutdown::Write);
    })
}

/// The complete lines of `path` (none if it does not exist).
fn lines_in(path: &Path) -> Vec<String> {
    let text = String::from_utf8(std::fs::read(path).unwrap_or_default()).unwrap();
    text.split_inclusive('\n')
        .filter(|l| l.ends_with('\n'))
        .map(|l| l.trim_end().to_string())
        .collect()
}

/// `"REQUEST LINE" STATUS BYTES` out of an access-log line.
fn request_status_bytes(line: &str) -> (String, u16, u64) {
    let (_, rest) = line.split_once(" \"").unwrap();
    let (request, rest) = rest.split_once("\" ").unwrap();
    let mut fields = rest.split(' ');
    let status = fields.next().unwrap().parse().unwrap();
    let bytes = fields.next().unwrap().parse().unwrap();
    (request.to_string(), status, bytes)
}

#[test]
fn l_an_open_tunnel_is_closed_at_shutdown_ms_and_its_line_written() {
    let tunnel = upgrade_backend();
    let fast = Backend::fixed("fast");
    let mut hawkey = Hawkey::start(config(
        &fast,
        &tunnel,
        json!({ "accessLog": "access.log", "timeouts": { "shutdownMs": 500 } }),
    ));
    let mut s = hawkey.connect();
    send(
        &mut s,
        b"GET /ws HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: raw\r\n\r\n",
    );
    assert_eq!(read_response(&mut s, false).status, 101);
    send(&mut s, b"ping");
    let mut back = [0u8; 4];
    s.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"ping");

    signal(&hawkey, libc::SIGTERM);
    let stopped = Instant::now();
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest); // EOF or reset: either way the tunnel is closed
    let closed_after = stopped.elapsed();
    assert!(
        closed_after >= Duration::from_millis(400) && closed_after < Duration::from_millis(2500),
        "tunnel closed {closed_after:?} after SIGTERM with shutdownMs 500"
    );
    let (status, _) = wait_exit(&mut hawkey, Duration::from_secs(3));
    assert_eq!(status.code(), Some(0), "{status}: {}", hawkey.stderr());
    let lines = lines_in(&hawkey.dir.path().join("access.log"));
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert_eq!(
        request_status_bytes(&lines[0]),
        ("GET /ws HTTP/1.1".to_string(), 101, 4),
        "{}",
        lines[0]
    );
}

#[test]
fn l_a_second_sigterm_during_the_graceful_wait_exits_at_once() {
    let (silent, seen) = silent_backend();
    let fast = Backend::fixed("fast");
    let mut hawkey = Hawkey::start(config(
        &silent,
        &fast,
        json!({ "timeouts": { "shutdownMs": 5000 } }),
    ));
    let _waiting = in_flight(&hawkey, "/slow", &seen);
    signal(&hawkey, libc::SIGTERM);
    assert_refusing(&hawkey); // the first stop was taken: the graceful wait is on
    signal(&hawkey, libc::SIGTERM);
    let (status, took) = wait_exit(&mut hawkey, Duration::from_secs(3));
    assert!(
        took < Duration::from_millis(1500),
        "exit {took:?} after the second SIGTERM (shutdownMs 5000)"
    );
    assert!(
        status.code().is_some(),
        "hawkey should exit by itself, not die of the signal: {status}"
    );
}

#[test]
fn l_access_log_is_flushed_at_shutdown() {
    let fast = Backend::fixed("fast");
    let mut hawkey = Hawkey::start(config(&fast, &fast, json!({ "accessLog": "access.log" })));
    let targets: Vec<String> = (0..5).map(|i| format!("/r{i}")).collect();
    for target in &targets {
        assert_eq!(hawkey.get(target).status, 200);
    }
    // At once, well inside the one-second flush timer.
    signal(&hawkey, libc::SIGTERM);
    let (status, _) = wait_exit(&mut hawkey, Duration::from_secs(3));
    assert_eq!(status.code(), Some(0), "{status}: {}", hawkey.stderr());
    let lines = lines_in(&hawkey.dir.path().join("access.log"));
    let mut logged: Vec<String> = lines.iter().map(|l| request_status_bytes(l).0).collect();
    logged.sort();
    let want: Vec<String> = targets
        .iter()
        .map(|t| format!("GET {t} HTTP/1.1"))
        .collect();
    assert_eq!(logged, want, "{lines:#?}");
}

#[test]
fn l_every_line_queued_before_sigterm_reaches_the_log() {
    let mut hawkey = Hawkey::start(json!({ "accessLog": "access.log" }));
    let mut s = hawkey.connect();
    const N: usize = 3000;
    for _ in 0..N / 250 {
        send(
            &mut s,
            "GET /none HTTP/1.1\r\nHost: t\r\n\r\n"
                .repeat(250)
                .as_bytes(),
        );
        for _ in 0..250 {
            assert_eq!(read_response(&mut s, false).status, 404);
        }
    }
    drop(s);
    signal(&hawkey, libc::SIGTERM);
    let (status, _) = wait_exit(&mut hawkey, Duration::from_secs(5));
    assert_eq!(status.code(), Some(0), "{status}: {}", hawkey.stderr());
    let lines = lines_in(&hawkey.dir.path().join("access.log"));
    assert_eq!(lines.len(), N, "{}", hawkey.stderr());
}

#[test]
fn l_a_reload_naming_a_log_that_cannot_be_opened_keeps_the_old_one() {
    let fast = Backend::fixed("fast");
    let hawkey = Hawkey::start(one_route(&fast, json!({ "accessLog": "good.log" })));
    let good = hawkey.dir.path().join("good.log");
    assert_eq!(hawkey.get("/before").status, 200);
    // A directory where the file should be: the open fails.
    std::fs::create_dir_all(hawkey.dir.path().join("blocked.log")).unwrap();
    rewrite_config(
        &hawkey,
        &one_route(&fast, json!({ "accessLog": "blocked.log" })),
    );
    signal(&hawkey, libc::SIGHUP);
    assert!(
        poll_until(Instant::now() + TIMEOUT, || hawkey
            .stderr()
            .contains("blocked.log")),
        "no warning: {}",
        hawkey.stderr()
    );
    assert_eq!(hawkey.get("/after").status, 200);
    assert!(
        poll_until(Instant::now() + TIMEOUT, || lines_in(&good)
            .iter()
            .any(|l| l.contains("GET /after "))),
        "the old log stopped: {:#?} {}",
        lines_in(&good),
        hawkey.stderr()
    );
}

#[test]
fn l_sigusr1_reopens_the_access_log_at_its_path_after_a_rename() {
    let fast = Backend::fixed("fast");
    let hawkey = Hawkey::start(config(&fast, &fast, json!({ "accessLog": "access.log" })));
    let log = hawkey.dir.path().join("access.log");
    let rotated = hawkey.dir.path().join("access.log.1");
    for target in ["/old-1", "/old-2"] {
        assert_eq!(hawkey.get(target).status, 200);
    }
    assert!(
        poll_until(Instant::now() + TIMEOUT, || lines_in(&log).len() == 2),
        "{:#?}",
        lines_in(&log)
    );
    std::fs::rename(&log, &rotated).unwrap();
    signal(&hawkey, libc::SIGUSR1);
    assert!(
        poll_until(Instant::now() + TIMEOUT, || log.exists()),
        "no new file at {} after SIGUSR1: {}",
        log.display(),
        hawkey.stderr()
    );
    for target in ["/new-1", "/new-2", "/new-3"] {
        assert_eq!(hawkey.get(target).status, 200);
    }
    assert!(
        poll_until(Instant::now() + TIMEOUT, || lines_in(&log).len() == 3),
        "{:#?}",
        lines_in(&log)
    );
    let requests = |path: &Path| -> Vec<String> {
        let mut r: Vec<String> = lines_in(path)
            .iter()
            .map(|l| request_status_bytes(l).0)
            .collect();
        r.sort();
        r
    };
    assert_eq!(
        requests(&rotated),
        ["GET /old-1 HTTP/1.1", "GET /old-2 HTTP/1.1"]
    );
    assert_eq!(
        requests(&log),
        [
            "GET /new-1 HTTP/1.1",
            "GET /new-2 HTTP/1.1",
            "GET /new-3 HTTP/1.1"
        ]
    );
}

/// A backend answering `200 body`. A request whose target ends in `/hold` is reported
/// on the returned receiver and answered only once the test sends on the returned
/// sender (or after `TIMEOUT`).
fn held_backend(body: &'static str) -> (Backend, Receiver<String>, Sender<()>) {
    let (seen_tx, seen) = mpsc::channel();
    let (release, release_rx) = mpsc::channel::<()>();
    let seen_tx = Mutex::new(seen_tx);
    let release_rx = Arc::new(Mutex::new(release_rx));
    let backend = Backend::start(move |req| {
        if req.target.ends_with("/hold") {
            let _ = seen_tx.lock().unwrap().send(req.target.clone());
            let _ = release_rx.lock().unwrap().recv_timeout(TIMEOUT);
        }
        ok(body)
    });
    (backend, seen, release)
}

/// Config with the one route `^/` → `backend`.
fn one_route(backend: &Backend, extra: Value) -> Value {
    let mut config = route_config("^/", backend);
    config["port"] = 0.into();
    config["host"] = "127.0.0.1".into();
    for (key, value) in extra.as_object().unwrap() {
        config[key] = value.clone();
    }
    config
}

#[test]
fn l_sighup_sends_new_requests_to_the_new_route_while_one_in_flight_finishes_on_the_old() {
    let (a, seen, release) = held_backend("A");
    let b = Backend::fixed("B");
    let hawkey = Hawkey::start(one_route(&a, json!({})));
    assert_eq!(hawkey.get("/x").text(), "A");
    let mut held = in_flight(&hawkey, "/hold", &seen);

    rewrite_config(&hawkey, &one_route(&b, json!({})));
    signal(&hawkey, libc::SIGHUP);
    assert!(
        poll_until(Instant::now() + TIMEOUT, || hawkey.get("/x").text() == "B"),
        "new requests still go to A after SIGHUP: {}",
        hawkey.stderr()
    );
    release.send(()).unwrap();
    let res = read_response(&mut held, false);
    assert_eq!((res.status, res.text().as_str()), (200, "A"));
    // The next request on that same connection starts under the new config.
    send(&mut held, b"GET /after HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(read_response(&mut held, false).text(), "B");
}

/// The request lines of an access log.
fn logged_requests(path: &Path) -> Vec<String> {
    lines_in(path)
        .iter()
        .map(|l| request_status_bytes(l).0)
        .collect()
}

#[test]
fn l_sighup_adding_renaming_and_removing_the_access_log_takes_effect() {
    let (a, b) = (Backend::fixed("A"), Backend::fixed("B"));
    let hawkey = Hawkey::start(one_route(&a, json!({})));
    assert_eq!(hawkey.get("/before").status, 200);
    let first = hawkey.dir.path().join("first.log");
    let second = hawkey.dir.path().join("logs/second.log");
    let reload_until = |config: Value, what: &str, done: &dyn Fn(usize) -> bool| {
        rewrite_config(&hawkey, &config);
        signal(&hawkey, libc::SIGHUP);
        let mut n = 0;
        let held = poll_until(Instant::now() + TIMEOUT, || {
            n += 1;
            done(n)
        });
        assert!(held, "{what}: no effect after SIGHUP: {}", hawkey.stderr());
    };

    // Added: requests after the reload are logged.
    reload_until(
        one_route(&a, json!({ "accessLog": "first.log" })),
        "added",
        &|n| {
            assert_eq!(hawkey.get(&format!("/first/{n}")).status, 200);
            !lines_in(&first).is_empty()
        },
    );
    // Renamed: later lines go to the new file only.
    reload_until(
        one_route(&a, json!({ "accessLog": "logs/second.log" })),
        "renamed",
        &|n| {
            assert_eq!(hawkey.get(&format!("/second/{n}")).status, 200);
            !lines_in(&second).is_empty()
        },
    );
    assert_eq!(hawkey.get("/only-second").status, 200);
    assert!(poll_until(Instant::now() + TIMEOUT, || {
        logged_requests(&second).contains(&"GET /only-second HTTP/1.1".to_string())
    }));
    // Requests sent while the reload was on its way may be in either file; later
    // ones are in the new file only.
    let in_first = logged_requests(&first);
    assert!(
        !in_first.iter().any(|r| r.contains("/only-second")),
        "{in_first:#?}"
    );
    // Removed: nothing more is written (the route changes too, to see the reload).
    reload_until(one_route(&b, json!({})), "removed", &|_| {
        hawkey.get("/probe").text() == "B"
    });
    for _ in 0..3 {
        assert_eq!(hawkey.get("/after-removal").status, 200);
    }
    std::thread::sleep(Duration::from_millis(1500)); // longer than the flush interval
    let logged = logged_requests(&second);
    assert!(
        !logged.iter().any(|r| r.contains("/after-removal")),
        "{logged:#?}"
    );
    assert!(
        !logged_requests(&first)
            .iter()
            .any(|r| r.contains("/after-removal"))
    );
}

#[test]
fn l_sighup_with_a_broken_config_keeps_serving_and_names_the_file() {
    let a = Backend::fixed("A");
    let hawkey = Hawkey::start(one_route(&a, json!({})));
    let path = hawkey.dir.path().join("server-config.json");
    std::fs::write(&path, b"{ \"proxy\": [ this is not json").unwrap();
    signal(&hawkey, libc::SIGHUP);
    let named = |stderr: &str| {
        stderr
            .lines()
            .any(|l| l.contains("error") && l.contains(&*path.to_string_lossy()))
    };
    assert!(
        poll_until(Instant::now() + TIMEOUT, || named(&hawkey.stderr())),
        "no error naming {} on stderr: {}",
        path.display(),
        hawkey.stderr()
    );
    let res = hawkey.get("/x");
    assert_eq!((res.status, res.text().as_str()), (200, "A"));
}

#[test]
fn l_sighup_changing_port_warns_that_it_needs_a_restart_and_keeps_the_old_port() {
    let a = Backend::fixed("A");
    let hawkey = Hawkey::start(one_route(&a, json!({})));
    let other_port = {
        let probe = TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    rewrite_config(&hawkey, &one_route(&a, json!({ "port": other_port })));
    signal(&hawkey, libc::SIGHUP);
    let warned = |stderr: &str| {
        stderr
            .lines()
            .any(|l| l.contains("port") && l.contains("restart"))
    };
    assert!(
        poll_until(Instant::now() + TIMEOUT, || warned(&hawkey.stderr())),
        "no warning that a port change needs a restart: {}",
        hawkey.stderr()
    );
    let res = hawkey.get("/x");
    assert_eq!((res.status, res.text().as_str()), (200, "A"));
    assert!(
        TcpStream::connect(("127.0.0.1", other_port)).is_err(),
        "hawkey started listening on the new port {other_port}"
    );
}
