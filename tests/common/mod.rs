//! Test support: start the real hawkey binary on a config in a fresh directory, small
//! backends on 127.0.0.1:0 that count their connections, and a raw HTTP client.
//! Every socket has a read timeout so a bug fails a test instead of hanging it.
#![allow(dead_code)] // each test file uses a different part of this module

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const TIMEOUT: Duration = Duration::from_secs(10);

/// A fresh directory under the target dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        let dir = base.join(
            format!("t-{}-{n}-{:?}", std::process::id(), Instant::now())
                .replace([' ', '.', ':'], ""),
        );
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn write(&self, name: &str, contents: &[u8]) -> PathBuf {
        let path = self.0.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&path, contents).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The binary under test: `HAWKEY_BIN` when set (a build for another target, such as
/// `target/i686-unknown-linux-musl/release/hawkey`, or a script that runs one under
/// an emulator), else the one cargo built for these tests.
pub fn hawkey_bin() -> String {
    std::env::var("HAWKEY_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_hawkey").to_string())
}

/// Runs hawkey with `args` in `dir` until it exits (killed, and the test failed, if
/// it has not exited within `TIMEOUT`).
pub fn run<S: AsRef<std::ffi::OsStr>>(dir: &Path, args: &[S]) -> std::process::Output {
    let child = Command::new(hawkey_bin())
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("hawkey runs");
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output()));
    match rx.recv_timeout(TIMEOUT) {
        Ok(output) => output.unwrap(),
        Err(_) => {
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
            let args: Vec<_> = args
                .iter()
                .map(|a| a.as_ref().to_string_lossy().into_owned())
                .collect();
            panic!("hawkey {args:?} did not exit within {TIMEOUT:?}");
        }
    }
}

/// A running hawkey; killed on drop.
pub struct Hawkey {
    pub child: Child,
    pub addr: SocketAddr,
    pub dir: TempDir,
    stderr: Arc<Mutex<String>>,
}

impl Hawkey {
    /// Starts hawkey on `config` (a JSON object); `port` 0 and `host` 127.0.0.1 are
    /// filled in when absent.
    pub fn start(mut config: serde_json::Value) -> Hawkey {
        let obj = config.as_object_mut().expect("config is a JSON object");
        obj.entry("port").or_insert(0.into());
        obj.entry("host").or_insert("127.0.0.1".into());
        let dir = TempDir::new();
        let path = dir.write("server-config.json", config.to_string().as_bytes());
        Hawkey::start_file(dir, &path)
    }

    /// Starts hawkey on a config file already written in `dir`.
    pub fn start_file(dir: TempDir, path: &Path) -> Hawkey {
        let mut child = Command::new(hawkey_bin())
            .arg("-c")
            .arg(path)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("hawkey starts");
        let stderr = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        let mut lines = BufReader::new(child.stderr.take().unwrap());
        let log = Arc::clone(&stderr);
        // Keep draining stderr after the listening line, or debug logging fills the
        // pipe and hawkey blocks.
        std::thread::spawn(move || {
            let mut line = String::new();
            while lines.read_line(&mut line).unwrap_or(0) > 0 {
                let url = line.trim().strip_prefix("hawkey listening on ");
                let addr =
                    url.and_then(|u| u.strip_prefix("http://").or(u.strip_prefix("https://")));
                if let Some(addr) = addr {
                    let _ = tx.send(addr.parse::<SocketAddr>().unwrap());
                }
                log.lock().unwrap().push_str(&line);
                line.clear();
            }
        });
        let addr = match rx.recv_timeout(TIMEOUT) {
            Ok(addr) => addr,
            Err(_) => {
                let _ = child.kill();
                panic!("hawkey did not start: {}", stderr.lock().unwrap());
            }
        };
        Hawkey {
            child,
            addr,
            dir,
            stderr,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything hawkey wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// A line from `/proc/PID/status`, in kB (VmHWM, VmRSS) or as a count (Threads).
    pub fn proc_status(&self, key: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let line = status.lines().find(|l| l.starts_with(key)).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .unwrap()
            .count()
    }

    /// The descriptor count once it has stopped changing (the same over 150 ms): a
    /// connection just answered with `Connection: close` may take a moment to go.
    pub fn settled_fds(&self) -> usize {
        let deadline = Instant::now() + Duration::from_secs(3);
        let mut last = self.open_fds();
        let mut same = 0;
        while same < 3 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
            let now = self.open_fds();
            if now == last {
                same += 1;
            } else {
                (last, same) = (now, 0);
            }
        }
        last
    }

    /// GETs each of `targets` on a new connection (each must be 200), so that
    /// whatever hawkey opens lazily exists and the pooled connections a test expects
    /// are there; then the settled descriptor count.
    pub fn warm_up(&self, targets: &[&str]) -> usize {
        for target in targets {
            let res = self.get(target);
            assert_eq!(res.status, 200, "warm-up {target}: {}", res.head);
        }
        self.settled_fds()
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    pub fn connect(&self) -> TcpStream {
        connect(self.addr)
    }

    /// One request on a new connection, answer read in full.
    pub fn get(&self, target: &str) -> Response {
        let mut s = self.connect();
        send(
            &mut s,
            format!("GET {target} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").as_bytes(),
        );
        read_response(&mut s, false)
    }
}

impl Drop for Hawkey {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    s.set_write_timeout(Some(TIMEOUT)).unwrap();
    s
}

pub fn send(s: &mut TcpStream, bytes: &[u8]) {
    s.write_all(bytes).unwrap();
}

/// A keep-alive GET on an open client connection.
pub fn get_on(s: &mut TcpStream, target: &str) -> Response {
    send(
        s,
        format!("GET {target} HTTP/1.1\r\nHost: h\r\n\r\n").as_bytes(),
    );
    read_response(s, false)
}

/// The bytes of `HTTP/1.1 200 OK` with `Content-Length` and the given body.
pub fn ok_bytes(body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// An answer hawkey made itself [E]: the status, a short text/plain body, and a
/// Content-Length that matches it.
pub fn assert_local(res: &Response, status: u16, what: &str) {
    assert_eq!(res.status, status, "{what}: {}", res.head);
    assert_eq!(
        res.header("content-type"),
        Some("text/plain; charset=utf-8"),
        "{what}: {}",
        res.head
    );
    let length = res.header("content-length");
    assert_eq!(
        length,
        Some(res.body.len().to_string().as_str()),
        "{what}: {}",
        res.head
    );
    assert!(!res.body.is_empty(), "{what}: empty body");
    assert!(!res.chunked, "{what}: a local answer is not chunked");
}

/// A parsed response; header names lower-cased, body decoded from its framing.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub reason: String,
    pub version: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The raw head bytes as received.
    pub head: String,
    /// The body was chunked on the wire.
    pub chunked: bool,
    pub trailers: Vec<(String, String)>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn headers_named(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Reads bytes up to and including the CRLF CRLF that ends a head.
pub fn read_head_bytes(s: &mut impl Read) -> Option<Vec<u8>> {
    let mut head = Vec::new();
    let mut byte = [0u8];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            // A signal to the test process (a child exiting) can interrupt a read.
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            _ => {
                return if head.is_empty() {
                    None
                } else {
                    panic!("truncated head: {:?}", String::from_utf8_lossy(&head))
                };
            }
        }
    }
    Some(head)
}

/// Reads one response. `head_request`: the request was HEAD (no body follows).
pub fn read_response(s: &mut impl Read, head_request: bool) -> Response {
    try_read_response(s, head_request).expect("a response")
}

/// As `read_response`, but `None` when the connection closed before any byte.
pub fn try_read_response(s: &mut impl Read, head_request: bool) -> Option<Response> {
    let head = read_head_bytes(s)?;
    let text = String::from_utf8_lossy(&head).into_owned();
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap().to_string();
    let status: u16 = parts.next().unwrap().parse().unwrap();
    let reason = parts.next().unwrap_or("").to_string();
    let headers: Vec<(String, String)> = lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (n, v) = l.split_once(':').unwrap();
            (n.to_ascii_lowercase(), v.trim().to_string())
        })
        .collect();
    let mut res = Response {
        status,
        reason,
        version,
        headers,
        body: Vec::new(),
        head: text.clone(),
        chunked: false,
        trailers: Vec::new(),
    };
    if head_request || status < 200 || status == 204 || status == 304 {
        return Some(res);
    }
    if res
        .header("transfer-encoding")
        .is_some_and(|te| te.eq_ignore_ascii_case("chunked"))
    {
        res.chunked = true;
        let (body, trailers) = read_chunked(s);
        res.body = body;
        res.trailers = trailers;
    } else if let Some(cl) = res.header("content-length") {
        let mut body = vec![0; cl.parse().unwrap()];
        s.read_exact(&mut body).unwrap();
        res.body = body;
    } else {
        s.read_to_end(&mut res.body).unwrap();
    }
    Some(res)
}

/// A line ending in CRLF, without it.
pub fn read_line(s: &mut impl Read) -> String {
    let mut line = Vec::new();
    let mut byte = [0u8];
    while !line.ends_with(b"\r\n") {
        if let Err(e) = s.read_exact(&mut byte) {
            panic!(
                "connection closed inside a line {:?}: {e}",
                String::from_utf8_lossy(&line)
            );
        }
        line.push(byte[0]);
    }
    line.truncate(line.len() - 2);
    String::from_utf8(line).unwrap()
}

/// A chunked body and its trailers.
pub fn read_chunked(s: &mut impl Read) -> (Vec<u8>, Vec<(String, String)>) {
    let mut body = Vec::new();
    loop {
        let line = read_line(s);
        let size = usize::from_str_radix(line.split(';').next().unwrap().trim(), 16).unwrap();
        if size == 0 {
            break;
        }
        let start = body.len();
        body.resize(start + size, 0);
        s.read_exact(&mut body[start..]).unwrap();
        assert_eq!(read_line(s), "");
    }
    let mut trailers = Vec::new();
    loop {
        let line = read_line(s);
        if line.is_empty() {
            return (body, trailers);
        }
        let (n, v) = line.split_once(':').unwrap();
        trailers.push((n.to_ascii_lowercase(), v.trim().to_string()));
    }
}

/// A request as a test backend received it.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub target: String,
    /// "HTTP/1.1" or "HTTP/1.0".
    pub version: String,
    /// Names as sent (case kept), in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub trailers: Vec<(String, String)>,
    /// The head exactly as received.
    pub head: String,
    /// Which accepted connection (0, 1, …) carried it.
    pub conn: usize,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn headers_named(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// Reads one request (head and body) as a backend; `None` when the peer closed first.
pub fn read_request(s: &mut impl Read, conn: usize) -> Option<Request> {
    let head = read_head_bytes(s)?;
    let text = String::from_utf8_lossy(&head).into_owned();
    let mut lines = text.split("\r\n");
    let mut parts = lines.next().unwrap().split(' ');
    let (method, target, version) = (
        parts.next().unwrap().into(),
        parts.next().unwrap().into(),
        parts.next().unwrap().into(),
    );
    let headers: Vec<(String, String)> = lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (n, v) = l.split_once(':').unwrap();
            (n.to_string(), v.trim().to_string())
        })
        .collect();
    let mut req = Request {
        method,
        target,
        version,
        headers,
        body: Vec::new(),
        trailers: Vec::new(),
        head: text.clone(),
        conn,
    };
    if req.header("transfer-encoding").is_some() {
        let (body, trailers) = read_chunked(s);
        req.body = body;
        req.trailers = trailers;
    } else if let Some(cl) = req.header("content-length") {
        let mut body = vec![0; cl.parse().unwrap()];
        s.read_exact(&mut body).unwrap();
        req.body = body;
    }
    Some(req)
}

/// What a backend handler does with one request.
pub enum Reply {
    /// Write these bytes and keep the connection for the next request.
    Bytes(Vec<u8>),
    /// Write these bytes, then close.
    Close(Vec<u8>),
    /// Close without answering.
    Drop,
}

/// `HTTP/1.1 200 OK` with `Content-Length` and the given body.
pub fn ok(body: &str) -> Reply {
    Reply::Bytes(ok_bytes(body))
}

/// A backend on 127.0.0.1:0; counts accepted connections and records requests.
pub struct Backend {
    pub addr: SocketAddr,
    pub accepted: Arc<AtomicUsize>,
    pub requests: Arc<Mutex<Vec<Request>>>,
}

impl Backend {
    /// A keep-alive HTTP/1.1 backend calling `handler` for each request.
    pub fn start(handler: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> Backend {
        let requests = Arc::new(Mutex::new(Vec::new()));
        let recorded = Arc::clone(&requests);
        let handler = Arc::new(handler);
        Backend::raw(move |mut s, conn| {
            while let Some(req) = read_request(&mut s, conn) {
                recorded.lock().unwrap().push(req.clone());
                match handler(&req) {
                    Reply::Bytes(b) => {
                        if s.write_all(&b).is_err() {
                            return;
                        }
                    }
                    Reply::Close(b) => {
                        let _ = s.write_all(&b);
                        let _ = s.shutdown(Shutdown::Both);
                        return;
                    }
                    Reply::Drop => return,
                }
            }
        })
        .with_requests(requests)
    }

    /// A backend that answers every request `200 OK` with body `body`.
    pub fn fixed(body: &'static str) -> Backend {
        Backend::start(move |_| ok(body))
    }

    /// A backend that hands each accepted connection (and its number) to `serve`,
    /// on its own thread.
    pub fn raw(serve: impl Fn(TcpStream, usize) + Send + Sync + 'static) -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        // The accept queue of a real server (nginx and Node listen with 511), not
        // std's 128: with hundreds of connects at once a short queue drops SYNs and
        // each dropped one waits a second for its retransmission.
        // SAFETY: plain integer arguments on a listening socket we own; listen() on
        // a listening socket only changes its backlog.
        unsafe { libc::listen(std::os::fd::AsRawFd::as_raw_fd(&listener), 1024) };
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&accepted);
        let serve = Arc::new(serve);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
                let n = count.fetch_add(1, Ordering::SeqCst);
                let serve = Arc::clone(&serve);
                std::thread::spawn(move || serve(stream, n));
            }
        });
        Backend {
            addr,
            accepted,
            requests: Arc::new(Mutex::new(Vec::new())),
        }
    }

    fn with_requests(mut self, requests: Arc<Mutex<Vec<Request>>>) -> Backend {
        self.requests = requests;
        self
    }

    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }

    /// `127.0.0.1:PORT`, for a route's authority.
    pub fn authority(&self) -> String {
        self.addr.to_string()
    }
}

/// A config with one route `pattern` → `backend`.
pub fn route_config(pattern: &str, backend: &Backend) -> serde_json::Value {
    serde_json::json!({ "proxy": [{ "pathRegExp": pattern, "authority": [backend.authority()] }] })
}

/// Polls `probe` until it returns true or `deadline` passes; whether it held.
pub fn poll_until(deadline: Instant, mut probe: impl FnMut() -> bool) -> bool {
    loop {
        if probe() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::park_timeout(Duration::from_millis(10)); // a polling interval, not an ordering
    }
}

/// Asserts that nothing arrives on `s` for `quiet` (a read that must time out).
pub fn assert_quiet(s: &mut TcpStream, quiet: Duration) {
    s.set_read_timeout(Some(quiet)).unwrap();
    let mut byte = [0u8];
    match s.read(&mut byte) {
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) => {}
        other => panic!("expected an open, silent connection, got {other:?}"),
    }
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
}

/// The test process's own open-files limits (soft, hard), from /proc/self/limits.
pub fn open_files_limits() -> (u64, u64) {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let mut numbers = line
        .split_whitespace()
        .skip(3)
        .map(|n| n.parse().unwrap_or(u64::MAX));
    (numbers.next().unwrap(), numbers.next().unwrap())
}

/// A deterministic xorshift byte stream, for large bodies checked byte for byte.
pub struct XorShift(pub u64);

impl XorShift {
    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            chunk.copy_from_slice(&self.0.to_le_bytes()[..chunk.len()]);
        }
    }
}
