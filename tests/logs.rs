//! The access log and the stderr log [L]: one combined-format line per request
//! answered (proxied, static, errors, 503 rejections, tunnels at close), each field
//! parsed and checked; flushing within a second, escaping, parent directories, and
//! what `env` lets through to stderr.

mod common;
use common::*;

use std::io::{Read, Write};
use std::net::Shutdown;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use regex::Regex;
use serde_json::json;

/// How long a line may take to reach the file: the once-a-second flush, plus slack
/// for a loaded test machine.
const FLUSH_WAIT: Duration = Duration::from_millis(2500);

/// One access-log line, split into its fields. Quoted fields keep their escapes.
#[derive(Debug, Clone)]
struct LogLine {
    ip: String,
    /// Seconds since the epoch, from `[DD/Mon/YYYY:HH:MM:SS +0000]`.
    time: u64,
    request: String,
    status: u16,
    bytes: u64,
    referer: String,
    user_agent: String,
    /// `SECONDS.mmm`, as written.
    seconds: String,
    upstream: String,
}

/// `IP - - [DD/Mon/YYYY:HH:MM:SS +0000] "REQUEST" STATUS BYTES "REFERER" "UA" S.mmm UPSTREAM`;
/// a quoted field holds no raw `"` (escapes are `\` and one more byte).
fn line_format() -> Regex {
    let quoted = r#""((?:[^"\\]|\\.)*)""#;
    Regex::new(&format!(
        r"^(\S+) - - \[(\d\d)/([A-Z][a-z]{{2}})/(\d{{4}}):(\d\d):(\d\d):(\d\d) \+0000\] {quoted} (\d{{3}}) (\d+) {quoted} {quoted} (\d+\.\d{{3}}) (\S+)$"
    ))
    .unwrap()
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn parse_line(line: &str) -> LogLine {
    let caps = line_format()
        .captures(line)
        .unwrap_or_else(|| panic!("not in the access-log format: {line:?}"));
    let num = |i: usize| caps[i].parse::<i64>().unwrap();
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = MONTHS
        .iter()
        .position(|m| *m == &caps[3])
        .unwrap_or_else(|| panic!("month {:?} in {line:?}", &caps[3])) as i64
        + 1;
    let (day, hour, minute, second) = (num(2), num(5), num(6), num(7));
    assert!(
        (1..=31).contains(&day) && hour < 24 && minute < 60 && second < 61,
        "{line:?}"
    );
    let days = days_from_civil(num(4), month, day);
    LogLine {
        ip: caps[1].to_string(),
        time: (days * 86_400 + hour * 3600 + minute * 60 + second) as u64,
        request: caps[8].to_string(),
        status: caps[9].parse().unwrap(),
        bytes: caps[10].parse().unwrap(),
        referer: caps[11].to_string(),
        user_agent: caps[12].to_string(),
        seconds: caps[13].to_string(),
        upstream: caps[14].to_string(),
    }
}

/// The file's complete lines so far (none if it does not exist yet).
fn lines_in(path: &Path) -> Vec<String> {
    let text = std::fs::read(path).unwrap_or_default();
    let text = String::from_utf8(text).expect("the access log is ASCII");
    let complete = match text.rfind('\n') {
        Some(end) => &text[..=end],
        None => "",
    };
    complete.lines().map(str::to_string).collect()
}

/// Polls `path` until it holds at least `n` lines or `wait` passes; returns them.
fn wait_lines(path: &Path, n: usize, wait: Duration) -> Vec<String> {
    let deadline = Instant::now() + wait;
    loop {
        let lines = lines_in(path);
        if lines.len() >= n || Instant::now() >= deadline {
            return lines;
        }
        std::thread::park_timeout(Duration::from_millis(20)); // a polling interval
    }
}

/// Polls hawkey's stderr until `probe` holds or `wait` passes; returns the stderr.
fn wait_stderr(hawkey: &Hawkey, wait: Duration, probe: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + wait;
    loop {
        let text = hawkey.stderr();
        if probe(&text) || Instant::now() >= deadline {
            return text;
        }
        std::thread::park_timeout(Duration::from_millis(20)); // a polling interval
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Sends `raw` on a new connection and reads the answer (`head`: it was a HEAD).
fn exchange(hawkey: &Hawkey, raw: &[u8], head: bool) -> Response {
    let mut s = hawkey.connect();
    send(&mut s, raw);
    read_response(&mut s, head)
}

/// What one line must say.
struct Expected {
    request: &'static str,
    status: u16,
    bytes: u64,
    referer: &'static str,
    user_agent: &'static str,
    upstream: String,
}

/// Checks every field of `line` against `want`; `sent_at` is when its request went out.
fn assert_line(line: &LogLine, want: &Expected, sent_at: u64) {
    assert_eq!(line.ip, "127.0.0.1", "{line:?}");
    assert!(
        line.time + 60 >= sent_at && line.time <= now_secs() + 1,
        "date not within a minute of now: {line:?}"
    );
    assert_eq!(line.request, want.request, "{line:?}");
    assert_eq!(line.status, want.status, "{line:?}");
    assert_eq!(
        line.bytes, want.bytes,
        "bytes are body bytes sent: {line:?}"
    );
    assert_eq!(line.referer, want.referer, "{line:?}");
    assert_eq!(line.user_agent, want.user_agent, "{line:?}");
    let secs: f64 = line.seconds.parse().unwrap();
    assert!(secs < 10.0, "request time: {line:?}");
    assert_eq!(line.upstream, want.upstream, "{line:?}");
}

/// A site with static files under `/static/`, routes `^/api/` → `backend` and
/// `^/down` → a port nobody listens on, and `accessLog` at `log` (relative to the
/// config's directory).
fn site(backend: &Backend, log: &str, env: &str) -> (Hawkey, PathBuf) {
    let dir = TempDir::new();
    dir.write("www/static/hello.txt", b"a static file\n");
    let config = json!({
        "port": 0, "host": "127.0.0.1", "env": env,
        "serverRoot": "www", "staticDir": "static", "accessLog": log,
        "proxy": [
            { "pathRegExp": "^/api/", "authority": [backend.authority()] },
            { "pathRegExp": "^/down", "authority": ["127.0.0.1:1"] },
        ],
    });
    let path = dir.write("server-config.json", config.to_string().as_bytes());
    let hawkey = Hawkey::start_file(dir, &path);
    let log = hawkey.dir.path().join(log);
    (hawkey, log)
}

#[test]
fn l_each_request_is_one_line_in_combined_format() {
    const BODY: &str = "hello from the backend";
    let backend = Backend::fixed(BODY);
    let (hawkey, log) = site(&backend, "access.log", "production");
    let up = backend.authority();
    let cases: Vec<(&[u8], bool, Expected)> = vec![
        (
            b"GET /api/item?x=1 HTTP/1.1\r\nHost: t\r\nReferer: http://example.com/page\r\n\
              User-Agent: curl/8.0\r\nConnection: close\r\n\r\n",
            false,
            Expected {
                request: "GET /api/item?x=1 HTTP/1.1",
                status: 200,
                bytes: BODY.len() as u64,
                referer: "http://example.com/page",
                user_agent: "curl/8.0",
                upstream: up.clone(),
            },
        ),
        (
            b"GET /api/old HTTP/1.0\r\nUser-Agent: old/1\r\n\r\n",
            false,
            Expected {
                request: "GET /api/old HTTP/1.0",
                status: 200,
                bytes: BODY.len() as u64,
                referer: "-",
                user_agent: "old/1",
                upstream: up.clone(),
            },
        ),
        (
            b"GET /nowhere HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
            false,
            Expected {
                request: "GET /nowhere HTTP/1.1",
                status: 404,
                bytes: "404 Not Found\n".len() as u64,
                referer: "-",
                user_agent: "-",
                upstream: "-".into(),
            },
        ),
        (
            b"GET /static/hello.txt HTTP/1.1\r\nHost: t\r\nUser-Agent: files\r\nConnection: close\r\n\r\n",
            false,
            Expected {
                request: "GET /static/hello.txt HTTP/1.1",
                status: 200,
                bytes: "a static file\n".len() as u64,
                referer: "-",
                user_agent: "files",
                upstream: "-".into(),
            },
        ),
        (
            b"HEAD /static/hello.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
            true,
            Expected {
                request: "HEAD /static/hello.txt HTTP/1.1",
                status: 200,
                bytes: 0,
                referer: "-",
                user_agent: "-",
                upstream: "-".into(),
            },
        ),
        (
            b"GET /static/hello.txt HTTP/1.1\r\nHost: t\r\nRange: bytes=0-4\r\nConnection: close\r\n\r\n",
            false,
            Expected {
                request: "GET /static/hello.txt HTTP/1.1",
                status: 206,
                bytes: 5,
                referer: "-",
                user_agent: "-",
                upstream: "-".into(),
            },
        ),
    ];
    let sent_at = now_secs();
    for (raw, head, want) in &cases {
        let res = exchange(&hawkey, raw, *head);
        assert_eq!(res.status, want.status, "{}", res.head);
        assert_eq!(res.body.len() as u64, want.bytes, "{}", res.head);
    }
    // Malformed: 400, and logged with the line as read or "-".
    let bad = exchange(
        &hawkey,
        b"GET  /two-spaces HTTP/1.1\r\nHost: t\r\n\r\n",
        false,
    );
    assert_eq!(bad.status, 400, "{}", bad.head);
    let answered = Instant::now();

    let n = cases.len() + 1;
    let lines = wait_lines(&log, n, FLUSH_WAIT);
    assert_eq!(
        lines.len(),
        n,
        "lines within {FLUSH_WAIT:?} of the last answer, with no more traffic: {lines:#?}"
    );
    assert!(answered.elapsed() < FLUSH_WAIT + Duration::from_millis(100));
    let mut parsed: Vec<LogLine> = lines.iter().map(|l| parse_line(l)).collect();
    // Workers write lines as they finish, so match by content, not by position.
    for (_, _, want) in &cases {
        let i = parsed
            .iter()
            .position(|l| l.request == want.request && l.status == want.status)
            .unwrap_or_else(|| panic!("no line for {}: {lines:#?}", want.request));
        assert_line(&parsed.remove(i), want, sent_at);
    }
    let malformed = &parsed[0];
    let request = match malformed.request.as_str() {
        "-" => "-",
        _ => "GET  /two-spaces HTTP/1.1",
    };
    let want = Expected {
        request,
        status: 400,
        bytes: bad.body.len() as u64,
        referer: "-",
        user_agent: "-",
        upstream: "-".into(),
    };
    assert_line(malformed, &want, sent_at);
    // Nothing more arrives later: exactly one line per request.
    assert_eq!(wait_lines(&log, n + 1, Duration::from_millis(300)).len(), n);
}

#[test]
fn l_malformed_requests_are_400_with_the_line_as_read_or_a_dash() {
    let backend = Backend::fixed("x");
    let (hawkey, log) = site(&backend, "access.log", "production");
    let requests: [&[u8]; 3] = [
        b"BREW\r\n\r\n",
        b"GET /\r\n\r\n", // HTTP/0.9
        b"GET /a b HTTP/1.1\r\nHost: t\r\n\r\n",
    ];
    let mut bodies = Vec::new();
    for raw in requests {
        let res = exchange(&hawkey, raw, false);
        assert_eq!(
            res.status,
            400,
            "{:?}: {}",
            String::from_utf8_lossy(raw),
            res.head
        );
        bodies.push(res.body.len() as u64);
    }
    let lines = wait_lines(&log, requests.len(), FLUSH_WAIT);
    assert_eq!(lines.len(), requests.len(), "{lines:#?}");
    let parsed: Vec<LogLine> = lines.iter().map(|l| parse_line(l)).collect();
    for (raw, bytes) in requests.iter().zip(bodies) {
        let text = String::from_utf8_lossy(raw);
        let first = text.split("\r\n").next().unwrap();
        assert!(
            parsed
                .iter()
                .any(|l| l.status == 400 && l.bytes == bytes && l.upstream == "-"),
            "no 400 line for {first:?}: {lines:#?}"
        );
    }
    for l in &parsed {
        assert!(
            l.request == "-" || requests.iter().any(|r| r.starts_with(l.request.as_bytes())),
            "neither the line as read nor \"-\": {l:?}"
        );
    }
}

/// A backend that answers an upgrade with 101 and `early` right behind the head, then
/// echoes until the client's EOF, which it passes back.
fn upgrade_backend(early: &'static [u8]) -> Backend {
    Backend::raw(move |mut s, conn| {
        if read_request(&mut s, conn).is_none() {
            return;
        }
        let mut answer =
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: raw\r\nConnection: Upgrade\r\n\r\n"
                .to_vec();
        answer.extend_from_slice(early);
        if s.write_all(&answer).is_err() {
            return;
        }
        let mut reader = s.try_clone().unwrap();
        let _ = std::io::copy(&mut reader, &mut s);
        let _ = s.shutdown(Shutdown::Write);
    })
}

#[test]
fn l_tunnel_line_is_written_at_close_with_the_bytes_sent_after_the_101() {
    let backend = upgrade_backend(b"hi");
    let plain = Backend::fixed("plain");
    let dir = TempDir::new();
    let config = json!({
        "port": 0, "host": "127.0.0.1", "accessLog": "access.log",
        "proxy": [
            { "pathRegExp": "^/plain", "authority": [plain.authority()] },
            { "pathRegExp": "^/", "authority": [backend.authority()] },
        ],
    });
    let path = dir.write("server-config.json", config.to_string().as_bytes());
    let hawkey = Hawkey::start_file(dir, &path);
    let log = hawkey.dir.path().join("access.log");

    let mut s = hawkey.connect();
    send(
        &mut s,
        b"GET /tunnel HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: raw\r\nUser-Agent: ws/1\r\n\r\n",
    );
    let res = read_response(&mut s, false);
    assert_eq!(res.status, 101, "{}", res.head);
    let mut got = [0u8; 2];
    s.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"hi");
    for chunk in [&b"hello"[..], b"world!"] {
        send(&mut s, chunk);
        let mut back = vec![0; chunk.len()];
        s.read_exact(&mut back).unwrap();
        assert_eq!(back, chunk);
    }
    // While the tunnel is open, a later request's line reaches the file alone.
    let res = hawkey.get("/plain");
    assert_eq!(res.status, 200, "{}", res.head);
    let lines = wait_lines(&log, 1, FLUSH_WAIT);
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert_eq!(parse_line(&lines[0]).request, "GET /plain HTTP/1.1");

    s.shutdown(Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "{rest:?}");
    let lines = wait_lines(&log, 2, FLUSH_WAIT);
    assert_eq!(
        lines.len(),
        2,
        "the tunnel's line after it closed: {lines:#?}"
    );
    let tunnel = parse_line(&lines[1]);
    assert_line(
        &tunnel,
        &Expected {
            request: "GET /tunnel HTTP/1.1",
            status: 101,
            bytes: (b"hi".len() + b"hello".len() + b"world!".len()) as u64,
            referer: "-",
            user_agent: "ws/1",
            upstream: backend.authority(),
        },
        now_secs() - 5,
    );
}

/// Whether `field` (as logged, escapes kept) holds only printable ASCII and no
/// raw quote, i.e. cannot end the quoted field or the line early.
fn is_safely_escaped(field: &str) -> bool {
    let mut bytes = field.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'"' => return false,
            b'\\' => {
                if bytes.next().is_none() {
                    return false; // a trailing backslash would escape the closing quote
                }
            }
            0x20..=0x7e => {}
            _ => return false,
        }
    }
    true
}

#[test]
fn l_quotes_and_control_bytes_in_fields_are_escaped() {
    let backend = Backend::fixed("ok");
    let (hawkey, log) = site(&backend, "access.log", "production");
    let mut raw = b"GET /api/x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n".to_vec();
    raw.extend_from_slice(b"User-Agent: evil\" 200 0 \"x\tq\\\"\xc3\xa9\\\r\n");
    raw.extend_from_slice(b"Referer: http://r/\"quoted\"\r\n\r\n");
    let res = exchange(&hawkey, &raw, false);
    assert_eq!(res.status, 200, "{}", res.head);
    let lines = wait_lines(&log, 1, FLUSH_WAIT);
    assert_eq!(lines.len(), 1, "{lines:#?}");
    let text = std::fs::read(&log).unwrap();
    assert!(
        text.iter().all(|b| (0x20..0x7f).contains(b) || *b == b'\n'),
        "raw control or non-ASCII bytes in the log: {:?}",
        String::from_utf8_lossy(&text)
    );
    let line = parse_line(&lines[0]);
    assert_eq!(line.status, 200, "{line:?}");
    assert_eq!(line.upstream, backend.authority(), "{line:?}");
    for field in [&line.user_agent, &line.referer] {
        assert!(is_safely_escaped(field), "{field:?} in {line:?}");
    }
    assert!(
        line.user_agent.starts_with("evil") && line.user_agent.contains(" 200 0 "),
        "{line:?}"
    );
    assert!(
        line.referer.starts_with("http://r/") && line.referer.contains("quoted"),
        "{line:?}"
    );
}

#[test]
fn l_503_past_max_connections_is_logged_without_a_request_line() {
    let backend = Backend::fixed("ok");
    let dir = TempDir::new();
    let config = json!({
        "port": 0, "host": "127.0.0.1", "accessLog": "access.log", "maxConnections": 1,
        "proxy": [{ "pathRegExp": "^/", "authority": [backend.authority()] }],
    });
    let path = dir.write("server-config.json", config.to_string().as_bytes());
    let hawkey = Hawkey::start_file(dir, &path);
    let log = hawkey.dir.path().join("access.log");

    let _held = hawkey.connect();
    let mut refused = hawkey.connect();
    let res = read_response(&mut refused, false);
    assert_eq!(res.status, 503, "{}", res.head);
    let lines = wait_lines(&log, 1, FLUSH_WAIT);
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert_line(
        &parse_line(&lines[0]),
        &Expected {
            request: "-",
            status: 503,
            bytes: res.body.len() as u64,
            referer: "-",
            user_agent: "-",
            upstream: "-".into(),
        },
        now_secs() - 5,
    );
}

/// Two requests on one connection: `GET /api/routed` (200 from `backend`), then
/// `GET /down` (502, which hawkey logs as a warning). A worker finishes one request,
/// its stderr lines included, before it reads the next, so once the warning is on
/// stderr everything the first request logged is there too.
fn routed_then_down(hawkey: &Hawkey) -> String {
    let mut s = hawkey.connect();
    send(&mut s, b"GET /api/routed HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(read_response(&mut s, false).status, 200);
    send(
        &mut s,
        b"GET /down HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(read_response(&mut s, false).status, 502);
    let stderr = wait_stderr(hawkey, TIMEOUT, |e| {
        e.lines().any(|l| l.contains("warn") && l.contains("/down"))
    });
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("warn") && l.contains("/down")),
        "the 502 is a warning in every env: {stderr}"
    );
    stderr
}

#[test]
fn l_development_env_logs_routing_decisions_to_stderr() {
    let backend = Backend::fixed("ok");
    let (hawkey, _log) = site(&backend, "access.log", "development");
    let stderr = routed_then_down(&hawkey);
    assert!(
        stderr.lines().any(|l| l.contains("debug")
            && l.contains("/api/routed")
            && l.contains(&backend.authority())),
        "no debug line naming the request and its backend: {stderr}"
    );
}

#[test]
fn l_production_env_logs_no_debug_lines_for_a_normal_request() {
    let backend = Backend::fixed("ok");
    let (hawkey, _log) = site(&backend, "access.log", "production");
    let stderr = routed_then_down(&hawkey);
    let debug: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.starts_with("hawkey listening on"))
        .filter(|l| !(l.contains("warn") || l.contains("error")))
        .collect();
    assert!(debug.is_empty(), "{debug:#?}");
    assert!(
        !stderr.contains("/api/routed"),
        "the normal request showed on stderr: {stderr}"
    );
}

#[test]
fn l_access_log_parent_directories_are_created() {
    let backend = Backend::fixed("ok");
    let (hawkey, log) = site(&backend, "logs/deep/er/access.log", "production");
    assert!(log.parent().unwrap().is_dir(), "{}", hawkey.stderr());
    assert_eq!(hawkey.get("/api/x").status, 200);
    let lines = wait_lines(&log, 1, FLUSH_WAIT);
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert_eq!(parse_line(&lines[0]).request, "GET /api/x HTTP/1.1");
}

#[test]
fn l_a_busy_log_is_still_flushed_every_second() {
    // Each answer takes 200 ms, so lines keep coming, always less than a second apart,
    // and far too few to fill a write buffer: only a timer that does not restart with
    // every line gets them to the file while the traffic lasts.
    let backend = Backend::start(|_| {
        std::thread::sleep(Duration::from_millis(200));
        ok("slow")
    });
    let (hawkey, log) = site(&backend, "access.log", "production");
    let mut s = hawkey.connect();
    let first_answer = Instant::now();
    let mut answered = 0;
    while lines_in(&log).is_empty() && first_answer.elapsed() < Duration::from_secs(4) {
        send(&mut s, b"GET /api/busy HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_eq!(read_response(&mut s, false).status, 200);
        answered += 1;
    }
    let waited = first_answer.elapsed();
    assert!(
        !lines_in(&log).is_empty() && waited < Duration::from_millis(2600),
        "no line on disk {waited:?} into steady traffic ({answered} requests answered)"
    );
}

/// A log file that stops taking lines (a FIFO nobody reads: writes block once it is
/// full, as on a stalled disk) costs bounded memory: lines past the queue are dropped,
/// counted, and a warning says so about once a second, while requests are answered.
#[test]
fn l_a_stalled_log_drops_lines_past_its_queue_and_warns() {
    let dir = TempDir::new();
    let fifo = dir.path().join("stalled.log");
    let c_path = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path and a mode; no other memory is touched.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
    // The read end is held open (so hawkey's open does not wait) and never read.
    let _reader = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo)
        .unwrap();
    let config = json!({ "port": 0, "host": "127.0.0.1", "accessLog": "stalled.log" });
    let path = dir.write("server-config.json", config.to_string().as_bytes());
    let hawkey = Hawkey::start_file(dir, &path);
    let mut s = hawkey.connect();
    let batch = "GET /nothing HTTP/1.1\r\nHost: t\r\n\r\n".repeat(250);
    let started = Instant::now();
    let rss_after = |n: usize, s: &mut std::net::TcpStream| {
        for _ in 0..n {
            send(s, batch.as_bytes());
            for _ in 0..250 {
                assert_eq!(read_response(s, false).status, 404);
            }
        }
        hawkey.proc_status("VmRSS")
    };
    let early = rss_after(40, &mut s); // 10 000 requests
    let late = rss_after(160, &mut s); // 40 000 more
    let stderr = wait_stderr(&hawkey, Duration::from_secs(3), |e| e.contains("dropped"));
    assert!(stderr.contains("access log"), "{stderr}");
    let warning = stderr
        .lines()
        .find(|l| l.contains("dropped"))
        .unwrap_or_else(|| {
            panic!(
                "no warning about dropped lines {:?} in: {stderr}",
                started.elapsed()
            )
        });
    assert!(
        warning.chars().any(|c| c.is_ascii_digit()),
        "no count: {warning}"
    );
    assert!(
        late < early + 4096,
        "RSS grew from {early} kB to {late} kB while the log was stalled"
    );
}
