//! Soak: a mixed load against the real binary for `HAWKEY_SOAK_SECS` (60 here;
//! `bench/soak.sh` runs it for 30 minutes): keep-alive and one-request connections,
//! small and large bodies (Content-Length and chunked), uploads, upgrades, static
//! files, bad requests, and a backend that restarts twice on the way. Every body is
//! checked by hash. RSS, open descriptors and threads are sampled every
//! `HAWKEY_SOAK_SAMPLE_SECS` (10) into `HAWKEY_SOAK_CSV` if set; the test fails if any
//! answer is wrong or if a sample series climbs after warm-up.

mod common;
use common::*;

use std::collections::HashMap;
use std::io::{BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn env_secs(name: &str, default: u64) -> Duration {
    let secs = std::env::var(name).ok().and_then(|v| v.parse().ok());
    Duration::from_secs(secs.unwrap_or(default))
}

/// FNV-1a, 64 bits: the hash bodies are checked by.
fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The body `/data/SEED/LEN` has: LEN bytes of the xorshift stream of SEED.
fn data(seed: u64, len: usize) -> Vec<u8> {
    let mut body = vec![0; len];
    XorShift(seed | 1).fill(&mut body);
    body
}

/// The backend, on one fixed port so that it can restart: `/data/SEED/LEN` (chunked
/// for odd seeds), `/upload` (answers `LEN HASH` of the body it read), and `/ws`
/// (a 101, then echoes bytes).
struct SoakBackend {
    addr: SocketAddr,
    conns: Arc<Mutex<HashMap<u64, TcpStream>>>, // open ones, to cut at a restart
    stop: Arc<AtomicBool>,
}

impl SoakBackend {
    fn start(addr: SocketAddr) -> SoakBackend {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let listener = (0..100)
            .find_map(|_| {
                TcpListener::bind(addr)
                    .map_err(|_| std::thread::sleep(Duration::from_millis(50)))
                    .ok()
            })
            .expect("the backend's port is free again");
        let addr = listener.local_addr().unwrap();
        let conns = Arc::new(Mutex::new(HashMap::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (kept, stopping) = (Arc::clone(&conns), Arc::clone(&stop));
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    return; // the listener closes here
                }
                let Ok(stream) = stream else { continue };
                let id = NEXT.fetch_add(1, Ordering::Relaxed);
                kept.lock().unwrap().insert(id, stream.try_clone().unwrap());
                let open = Arc::clone(&kept);
                std::thread::spawn(move || {
                    serve_backend(stream);
                    open.lock().unwrap().remove(&id);
                });
            }
        });
        SoakBackend { addr, conns, stop }
    }

    /// Closes the listener and every connection, as a restarting server does.
    fn stop(self) -> SocketAddr {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr); // wakes the accept loop
        for (_, conn) in self.conns.lock().unwrap().drain() {
            let _ = conn.shutdown(Shutdown::Both);
        }
        self.addr
    }
}

fn serve_backend(stream: TcpStream) {
    let mut out = stream.try_clone().unwrap();
    let mut input = BufReader::new(stream);
    // A request cut short by a client gone away ends this connection, quietly.
    while let Ok(Some(req)) =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| read_request(&mut input, 0)))
    {
        let parts: Vec<&str> = req.target.split('/').collect();
        let sent = match parts.as_slice() {
            ["", "data", seed, len] => {
                let seed: u64 = seed.parse().unwrap();
                let body = data(seed, len.parse().unwrap());
                if seed % 2 == 1 {
                    let mut wire =
                        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
                    for piece in body.chunks(16 * 1024) {
                        wire.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
                        wire.extend_from_slice(piece);
                        wire.extend_from_slice(b"\r\n");
                    }
                    wire.extend_from_slice(b"0\r\n\r\n");
                    out.write_all(&wire)
                } else {
                    let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
                    out.write_all(head.as_bytes())
                        .and_then(|_| out.write_all(&body))
                }
            }
            ["", "upload"] => {
                let answer = format!("{} {:x}", req.body.len(), fnv(&req.body));
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
                    answer.len()
                );
                out.write_all(head.as_bytes())
                    .and_then(|_| out.write_all(answer.as_bytes()))
            }
            ["", "ws"] => {
                let head = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";
                if out.write_all(head.as_bytes()).is_ok() {
                    let _ = std::io::copy(&mut input, &mut out);
                }
                return;
            }
            _ => out.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"),
        };
        if sent.is_err() {
            return;
        }
    }
}

const WRONG_BODY: &str = "wrong body";

/// What the clients saw.
#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    /// Failures while the backend was restarting (a 502, a cut response): expected.
    /// A wrong body never is.
    during_restart: AtomicU64,
    wrong: Mutex<Vec<String>>,
    /// True from a backend restart until shortly after it is back.
    restarting: AtomicBool,
}

impl Tally {
    /// Counts one exchange; a failure is wrong unless the backend was restarting.
    fn record(&self, what: &str, result: Result<(), String>) {
        match result {
            Ok(()) => {
                self.ok.fetch_add(1, Ordering::Relaxed);
            }
            // A complete answer with the wrong body is never excused.
            Err(e) if self.restarting.load(Ordering::SeqCst) && !e.starts_with(WRONG_BODY) => {
                self.during_restart.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => self.wrong.lock().unwrap().push(format!("{what}: {e}")),
        }
    }
}

/// Reads one response, or says why not.
fn response(s: &mut impl Read, head_request: bool) -> Result<Response, String> {
    try_read_response(s, head_request).ok_or_else(|| "no complete response".to_string())
}

fn expect_body(res: &Response, status: u16, body: &[u8]) -> Result<(), String> {
    if res.status != status {
        return Err(format!("status {} instead of {status}", res.status));
    }
    if res.body.len() != body.len() || fnv(&res.body) != fnv(body) {
        return Err(format!(
            "{WRONG_BODY}: {} bytes instead of the {} expected",
            res.body.len(),
            body.len()
        ));
    }
    Ok(())
}

/// One client's loop until `until`, each pass one exchange.
fn client_loop(
    until: Instant,
    tally: &Tally,
    what: &str,
    mut step: impl FnMut(u64) -> Result<(), String>,
) {
    let mut i = 0u64;
    while Instant::now() < until {
        i += 1;
        tally.record(what, step(i));
    }
}

fn get(s: &mut TcpStream, target: &str, close: bool) -> Result<Response, String> {
    let connection = if close { "Connection: close\r\n" } else { "" };
    let req = format!("GET {target} HTTP/1.1\r\nHost: soak\r\n{connection}\r\n");
    s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
    response(s, false)
}

/// A sample of hawkey's resources.
struct Sample {
    at: Duration,
    rss_kib: u64,
    fds: u64,
    threads: u64,
}

/// Fails if `series`, after warm-up, ends above where it began by more than `slack`:
/// the lowest of the last third against the highest of the first third.
fn assert_flat(name: &str, series: &[u64], slack: u64) {
    let warm = (series.len() / 5).max(1);
    let rest = &series[warm.min(series.len())..];
    if rest.len() < 3 {
        return;
    }
    let third = rest.len() / 3;
    let early = rest[..third.max(1)].iter().max().unwrap();
    let late = rest[rest.len() - third.max(1)..].iter().min().unwrap();
    assert!(
        *late <= early + slack,
        "{name} climbs after warm-up: {series:?} (late low {late} > early high {early} + {slack})"
    );
}

#[test]
fn soak_mixed_load_keeps_resources_flat_and_every_answer_right() {
    let duration = env_secs("HAWKEY_SOAK_SECS", 60);
    let every = env_secs("HAWKEY_SOAK_SAMPLE_SECS", 10);
    let mut backend = SoakBackend::start("127.0.0.1:0".parse().unwrap());
    let root = TempDir::new();
    let blob = data(7, 256 * 1024);
    root.write("static/blob.bin", &blob);
    root.write("static/small.txt", b"small static file\n");
    let config = serde_json::json!({
        "workers": 16,
        "serverRoot": root.path(),
        "staticDir": "static",
        "timeouts": { "headerMs": 2000 },
        "proxy": [{ "pathRegExp": "^/", "authority": [backend.addr.to_string()] }]
    });
    let hawkey = Hawkey::start(config);
    assert_eq!(hawkey.get("/static/small.txt").status, 200);
    let fds_at_start = hawkey.open_fds() as u64;

    let tally = Tally::default();
    let started = Instant::now();
    let until = started + duration;
    let mut samples = Vec::new();
    std::thread::scope(|scope| {
        let (hawkey, tally) = (&hawkey, &tally);
        // Keep-alive clients: small bodies, now and then 1 MiB; reconnect after a failure.
        for t in 0..3u64 {
            scope.spawn(move || {
                let mut conn: Option<TcpStream> = None;
                client_loop(until, tally, "keep-alive GET", |i| {
                    let s = conn.get_or_insert_with(|| hawkey.connect());
                    let seed = t << 40 | i;
                    let len = if i % 50 == 0 {
                        1 << 20
                    } else {
                        (i * 37 % 4096) as usize
                    };
                    let result = get(s, &format!("/data/{seed}/{len}"), false)
                        .and_then(|res| expect_body(&res, 200, &data(seed, len)));
                    if result.is_err() {
                        conn = None;
                    }
                    result
                });
            });
        }
        // A new connection per request.
        scope.spawn(move || {
            client_loop(until, tally, "one-request GET", |i| {
                let seed = 1 << 41 | i;
                let mut s = hawkey.connect();
                get(&mut s, &format!("/data/{seed}/1000"), true)
                    .and_then(|res| expect_body(&res, 200, &data(seed, 1000)))
            });
        });
        // Uploads up to 1 MiB, Content-Length and chunked.
        scope.spawn(move || {
            client_loop(until, tally, "upload", |i| {
                let body = data(1 << 42 | i, (i * 7919 % (1 << 20)) as usize);
                let mut s = hawkey.connect();
                let framing = if i % 2 == 0 {
                    format!("Content-Length: {}", body.len())
                } else {
                    "Transfer-Encoding: chunked".to_string()
                };
                let head = format!("POST /upload HTTP/1.1\r\nHost: soak\r\n{framing}\r\n\r\n");
                let mut wire = head.into_bytes();
                if i % 2 == 0 {
                    wire.extend_from_slice(&body);
                } else {
                    for piece in body.chunks(30_000) {
                        wire.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
                        wire.extend_from_slice(piece);
                        wire.extend_from_slice(b"\r\n");
                    }
                    wire.extend_from_slice(b"0\r\n\r\n");
                }
                s.write_all(&wire).map_err(|e| e.to_string())?;
                let expected = format!("{} {:x}", body.len(), fnv(&body));
                response(&mut s, false).and_then(|res| expect_body(&res, 200, expected.as_bytes()))
            });
        });
        // Upgrades: 64 KiB echoed through a tunnel.
        scope.spawn(move || {
            client_loop(until, tally, "upgrade", |i| {
                let mut s = hawkey.connect();
                let req = "GET /ws HTTP/1.1\r\nHost: soak\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n";
                s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
                let head = read_head_bytes(&mut s).ok_or("no 101")?;
                if !head.starts_with(b"HTTP/1.1 101") {
                    return Err(format!("{:?}", String::from_utf8_lossy(&head)));
                }
                let bytes = data(1 << 43 | i, 64 * 1024);
                s.write_all(&bytes).map_err(|e| e.to_string())?;
                let mut echo = vec![0; bytes.len()];
                s.read_exact(&mut echo).map_err(|e| e.to_string())?;
                (echo == bytes).then_some(()).ok_or_else(|| "the echo differs".to_string())
            });
        });
        // Static files, served by hawkey itself (never affected by the backend).
        scope.spawn(move || {
            let mut s = hawkey.connect();
            client_loop(until, tally, "static", |i| {
                let (target, body): (&str, &[u8]) = match i % 4 {
                    0 => ("/static/blob.bin", &blob),
                    _ => ("/static/small.txt", b"small static file\n"),
                };
                get(&mut s, target, false).and_then(|res| expect_body(&res, 200, body))
            });
        });
        // Bad requests: garbage (400) and an oversized head (431); both close.
        scope.spawn(move || {
            client_loop(until, tally, "bad request", |i| {
                let mut s = hawkey.connect();
                let (wire, status) = if i % 2 == 0 {
                    (b"BLAH\x01 / HTTP/1.1\r\n\r\n".to_vec(), 400)
                } else {
                    let big = format!(
                        "GET / HTTP/1.1\r\nHost: soak\r\nX-Big: {}\r\n\r\n",
                        "a".repeat(70_000)
                    );
                    (big.into_bytes(), 431)
                };
                let _ = s.write_all(&wire); // hawkey may answer and close before all of it is sent
                let res = response(&mut s, false)?;
                (res.status == status)
                    .then_some(())
                    .ok_or_else(|| format!("status {} instead of {status}", res.status))
            });
        });
        // The backend restarts at a third and two thirds of the run; the sampler.
        let mut restarts = vec![started + duration / 3, started + duration * 2 / 3];
        let mut next_sample = started + every;
        while Instant::now() < until {
            std::thread::sleep(Duration::from_millis(100));
            if restarts.first().is_some_and(|&at| Instant::now() >= at) {
                restarts.remove(0);
                tally.restarting.store(true, Ordering::SeqCst);
                let addr = backend.stop();
                std::thread::sleep(Duration::from_millis(300));
                backend = SoakBackend::start(addr);
                std::thread::sleep(Duration::from_secs(2)); // answers in flight settle
                tally.restarting.store(false, Ordering::SeqCst);
            }
            if Instant::now() >= next_sample {
                next_sample += every;
                // Connections come and go under load: the lowest of a few readings
                // is the floor that a leak would raise.
                let fds = (0..10)
                    .map(|_| {
                        std::thread::sleep(Duration::from_millis(50));
                        hawkey.open_fds() as u64
                    })
                    .min();
                samples.push(Sample {
                    at: started.elapsed(),
                    rss_kib: hawkey.proc_status("VmRSS"),
                    fds: fds.unwrap_or_default(),
                    threads: hawkey.proc_status("Threads"),
                });
            }
        }
    });

    let ok = tally.ok.load(Ordering::Relaxed);
    let csv: String = std::iter::once("seconds,rss_kib,open_fds,threads\n".to_string())
        .chain(
            samples
                .iter()
                .map(|s| format!("{},{},{},{}\n", s.at.as_secs(), s.rss_kib, s.fds, s.threads)),
        )
        .collect();
    eprintln!(
        "soak {duration:?}: {ok} exchanges right, {} failed while the backend restarted\n{csv}",
        tally.during_restart.load(Ordering::Relaxed)
    );
    if let Ok(path) = std::env::var("HAWKEY_SOAK_CSV") {
        std::fs::write(&path, &csv).unwrap();
    }
    let wrong = tally.wrong.lock().unwrap();
    assert!(
        wrong.is_empty(),
        "{} wrong answers, first: {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(5)]
    );
    assert!(ok > 1000, "only {ok} exchanges in {duration:?}");
    assert!(hawkey.stderr().lines().all(|l| !l.contains("panicked")));

    assert_flat(
        "RSS (KiB)",
        &samples.iter().map(|s| s.rss_kib).collect::<Vec<_>>(),
        4096,
    );
    assert_flat(
        "open descriptors",
        &samples.iter().map(|s| s.fds).collect::<Vec<_>>(),
        16,
    );
    assert_flat(
        "threads",
        &samples.iter().map(|s| s.threads).collect::<Vec<_>>(),
        0,
    );
    // Once the load stops, descriptors fall back to the start-up count plus the pool.
    let settled = poll_until(Instant::now() + Duration::from_secs(10), || {
        hawkey.open_fds() as u64 <= fds_at_start + 32
    });
    assert!(
        settled,
        "{} descriptors open after the load, {fds_at_start} at start",
        hawkey.open_fds()
    );
}
