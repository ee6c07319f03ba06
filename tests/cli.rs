//! The command line [C] and the config file [K] from outside: the real binary run with
//! `std::process::Command` in a fresh directory, its exit status, stdout and stderr.
//! A config error must stop hawkey before anything starts: exit 1, the error on
//! stderr naming the file, and no listening line.

mod common;
use common::*;

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;

const LISTENING: &str = "hawkey listening on ";

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `--check` on `path` prints exactly `config OK` and exits 0.
fn assert_check_ok(dir: &Path, path: &Path) {
    let out = run(
        dir,
        &[OsStr::new("--check"), OsStr::new("-c"), path.as_os_str()],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "config OK\n");
}

/// Writes `config` as `name` in a fresh directory; both `hawkey --check -c` and
/// `hawkey -c` on it exit 1 with nothing on stdout, an error naming the file on
/// stderr, and no listening line. Returns the error text.
fn config_error(name: &str, config: &str) -> String {
    let dir = TempDir::new();
    let path = dir.write(name, config.as_bytes());
    let mut message = String::new();
    for check in [true, false] {
        let mut args = vec![OsStr::new("-c"), path.as_os_str()];
        if check {
            args.insert(0, OsStr::new("--check"));
        }
        let out = run(dir.path(), &args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "check={check}: {err}");
        assert_eq!(stdout(&out), "", "check={check}");
        assert!(!err.contains(LISTENING), "half-started: {err}");
        assert!(
            err.contains(&path.display().to_string()),
            "the error does not name the file: {err}"
        );
        message = err;
    }
    message
}

/// A hawkey started with `args` in `dir`; killed on drop.
struct Running {
    child: Child,
    /// Its listening line.
    listening_line: String,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Running {
    fn start<S: AsRef<OsStr>>(dir: &Path, args: &[S]) -> Running {
        let mut child = Command::new(hawkey_bin())
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("hawkey runs");
        let mut lines = BufReader::new(child.stderr.take().unwrap());
        let (tx, rx) = mpsc::channel();
        // Keep draining stderr after the listening line, so hawkey never blocks on it.
        std::thread::spawn(move || {
            let mut line = String::new();
            while lines.read_line(&mut line).unwrap_or(0) > 0 {
                if line.starts_with(LISTENING) {
                    let _ = tx.send(line.clone());
                }
                line.clear();
            }
        });
        let mut running = Running {
            child,
            listening_line: String::new(),
        };
        running.listening_line = rx
            .recv_timeout(TIMEOUT)
            .expect("hawkey wrote a listening line to stderr");
        running
    }

    /// The address in the listening line, which must have the form
    /// `hawkey listening on http://{host}:PORT` with a real port.
    fn listening_on(&self, host: &str) -> SocketAddr {
        let line = self.listening_line.trim_end();
        let rest = line
            .strip_prefix(&format!("{LISTENING}http://{host}:"))
            .unwrap_or_else(|| panic!("unexpected listening line {line:?}"));
        let port: u16 = rest
            .parse()
            .unwrap_or_else(|_| panic!("no port in {line:?}"));
        assert_ne!(port, 0, "{line:?}");
        format!("{host}:{port}").parse().unwrap()
    }
}

/// A request to `addr` is answered (404: no routes).
fn assert_answers(addr: SocketAddr) {
    let mut s = connect(addr);
    send(
        &mut s,
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(read_response(&mut s, false).status, 404);
}

#[test]
fn c_help_prints_usage_to_stdout_and_exits_0() {
    let dir = TempDir::new();
    for args in [
        &["--help"][..],
        &["-h"],
        &["-c", "x", "--help"],
        &["--help", "-c", "x"],
        &["--check", "--help"],
    ] {
        let out = run(dir.path(), args);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
        assert!(stdout(&out).contains("Usage: hawkey"), "{args:?}");
        assert!(stdout(&out).contains("--config"), "{args:?}");
        assert_eq!(stderr(&out), "", "{args:?}");
    }
}

#[test]
fn c_version_prints_to_stdout_and_exits_0() {
    let dir = TempDir::new();
    let want = format!("hawkey {}\n", env!("CARGO_PKG_VERSION"));
    for args in [
        &["--version"][..],
        &["-V"],
        &["-c", "x", "--version"],
        &["--version", "--check"],
    ] {
        let out = run(dir.path(), args);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
        assert_eq!(stdout(&out), want, "{args:?}");
        assert_eq!(stderr(&out), "", "{args:?}");
    }
}

#[test]
fn c_bad_flag_prints_usage_to_stderr_and_exits_2() {
    let dir = TempDir::new();
    for args in [&["--bogus"][..], &["-x"], &["-c"], &["--check", "extra"]] {
        let out = run(dir.path(), args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(stderr(&out).contains("Usage: hawkey"), "{args:?}");
        assert_eq!(stdout(&out), "", "{args:?}");
    }
}

#[test]
fn c_check_prints_config_ok_and_exits_0() {
    let dir = TempDir::new();
    let path = dir.write(
        "conf.json",
        br#"{"port": 0, "proxy": [{"pathRegExp": "^/api/", "authority": ["127.0.0.1:7999"]}]}"#,
    );
    assert_check_ok(dir.path(), &path);
}

#[test]
fn c_check_on_a_bad_config_exits_1_with_the_error_on_stderr() {
    let err = config_error("conf.json", r#"{"port": "eighty"}"#);
    assert!(
        err.contains("port") || err.contains("invalid type"),
        "{err}"
    );
}

#[test]
fn c_default_config_is_server_config_json_in_the_working_directory() {
    let dir = TempDir::new();
    // Absent: the error names the default file.
    let out = run(dir.path(), &["--check"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("server-config.json"),
        "{}",
        stderr(&out)
    );
    // Present: it is the one loaded, by --check and by a plain run.
    dir.write("server-config.json", br#"{"port": 0, "host": "127.0.0.1"}"#);
    let out = run(dir.path(), &["--check"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "config OK\n");
    let hawkey = Running::start(dir.path(), &[] as &[&str]);
    assert_answers(hawkey.listening_on("127.0.0.1"));
}

#[test]
fn k_relative_paths_resolve_against_the_config_directory() {
    let dir = TempDir::new();
    // `site/static` exists next to the config in `sub/`, not in the working directory.
    std::fs::create_dir_all(dir.path().join("sub/site/static")).unwrap();
    let path = dir.write(
        "sub/conf.json",
        br#"{"port": 0, "serverRoot": "site", "staticDir": "static"}"#,
    );
    assert_check_ok(dir.path(), Path::new("sub/conf.json"));
    assert_check_ok(dir.path(), &path);
    // A directory that exists only relative to the working directory is not found.
    std::fs::create_dir_all(dir.path().join("cwd-only/static")).unwrap();
    dir.write(
        "sub/other.json",
        br#"{"port": 0, "serverRoot": "cwd-only", "staticDir": "static"}"#,
    );
    let out = run(dir.path(), &["--check", "-c", "sub/other.json"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "resolved against the working directory"
    );
    assert!(stderr(&out).contains("sub/other.json"), "{}", stderr(&out));
}

#[test]
fn c_json_error_names_the_file_line_and_column() {
    let err = config_error(
        "broken.json",
        "{\n  \"port\": 0,\n  \"host\": \"127.0.0.1\"\n  \"proxy\": []\n}\n",
    );
    assert!(err.contains("line 4 column 3"), "{err}");
}

#[test]
fn k_unknown_key_names_the_key_and_the_allowed_keys() {
    let err = config_error("conf.json", "{\n  \"port\": 0,\n  \"prot\": 1\n}\n");
    assert!(err.contains("`prot`"), "{err}");
    for allowed in ["`port`", "`host`", "`proxy`", "`timeouts`", "`httpPort`"] {
        assert!(err.contains(allowed), "{allowed} missing: {err}");
    }
    assert!(err.contains("line 3"), "{err}");
    // Nested objects too.
    let err = config_error("conf.json", r#"{"timeouts": {"headerMS": 5}}"#);
    assert!(err.contains("`headerMS`"), "{err}");
    assert!(err.contains("`headerMs`"), "{err}");
    let err = config_error(
        "conf.json",
        r#"{"proxy": [{"pathRegExp": "/", "authority": "a:1", "path": "/"}]}"#,
    );
    assert!(
        err.contains("`path`") && err.contains("`pathRegExp`"),
        "{err}"
    );
}

#[test]
fn k_look_around_in_path_reg_exp_quotes_the_pattern() {
    let err = config_error(
        "conf.json",
        r#"{"proxy": [{"pathRegExp": "^/(?!api)", "authority": ["127.0.0.1:1"]}]}"#,
    );
    assert!(err.contains(r#""^/(?!api)""#), "{err}");
    assert!(err.contains("look-around"), "{err}");
}

#[test]
fn k_http_version_2_says_http2_backends_are_not_supported() {
    let err = config_error(
        "conf.json",
        r#"{"proxy": [{"pathRegExp": "/", "authority": "127.0.0.1:1", "httpVersion": "2"}]}"#,
    );
    assert!(err.contains("HTTP/2 backends are not supported"), "{err}");
}

#[test]
fn k_env_other_than_development_or_production_is_an_error() {
    let err = config_error("conf.json", r#"{"env": "staging"}"#);
    assert!(err.contains("staging"), "{err}");
    assert!(
        err.contains("development") && err.contains("production"),
        "{err}"
    );
    let dir = TempDir::new();
    for env in ["development", "production"] {
        let path = dir.write("conf.json", format!(r#"{{"env": "{env}"}}"#).as_bytes());
        assert_check_ok(dir.path(), &path);
    }
}

#[test]
fn k_server_root_and_static_dir_come_together() {
    let err = config_error("conf.json", r#"{"serverRoot": "."}"#);
    assert!(err.contains("staticDir"), "{err}");
    let err = config_error("conf.json", r#"{"staticDir": "static"}"#);
    assert!(err.contains("serverRoot"), "{err}");
}

#[test]
fn k_static_dir_is_one_path_segment() {
    let dir_text = r#"{"serverRoot": ".", "staticDir": "a/b"}"#;
    let err = config_error("conf.json", dir_text);
    assert!(err.contains("staticDir") && err.contains("a/b"), "{err}");
}

#[test]
fn k_http_port_without_pems_is_an_error() {
    let err = config_error("conf.json", r#"{"httpPort": 0}"#);
    assert!(err.contains("httpPort") && err.contains("pems"), "{err}");
}

/// [K]: every number is range-checked, and the error names the key and its line.
#[test]
fn k_every_number_is_range_checked_and_the_error_names_the_key() {
    let nested = |outer: &str, key: &str, value: &str| {
        format!("{{\n  \"port\": 0,\n  \"{outer}\": {{\n    \"{key}\": {value}\n  }}\n}}\n")
    };
    let top = |key: &str, value: &str| format!("{{\n  \"port\": 0,\n  \"{key}\": {value}\n}}\n");
    let mut cases = Vec::new();
    for key in [
        "connectMs",
        "headerMs",
        "keepAliveMs",
        "upstreamMs",
        "tunnelIdleMs",
        "shutdownMs",
    ] {
        for value in ["0", "-1", "1.5", "2147483648", "1e300", "\"5\""] {
            cases.push((key, nested("timeouts", key, value), 4));
        }
    }
    for value in ["0", "-5", "2147483648"] {
        cases.push((
            "idleTimeoutMs",
            nested("upstreamPool", "idleTimeoutMs", value),
            4,
        ));
    }
    for value in ["-1", "1000000000000", "0.5"] {
        cases.push((
            "maxIdlePerAuthority",
            nested("upstreamPool", "maxIdlePerAuthority", value),
            4,
        ));
    }
    for (key, values) in [
        ("maxConnections", &["0", "-1", "1000000000000"][..]),
        ("maxHeaderBytes", &["0", "1023", "1000000000000"][..]),
        ("workers", &["-1", "100000", "2.5"][..]),
        ("port", &["-1", "65536", "8e3"][..]),
    ] {
        for value in values {
            cases.push((key, top(key, value), 3));
        }
    }
    for (key, config, line) in &cases {
        let err = config_error("conf.json", config);
        assert!(
            err.contains(key),
            "{key} not named: {err}\nconfig: {config}"
        );
        assert!(
            err.contains(&format!("line {line}")),
            "no line: {err}\nconfig: {config}"
        );
    }
    // The edges of each range are fine.
    let dir = TempDir::new();
    for config in [
        nested("timeouts", "upstreamMs", "1"),
        nested("timeouts", "tunnelIdleMs", "2147483647"),
        nested("upstreamPool", "maxIdlePerAuthority", "0"),
        top("workers", "0"),
        top("maxHeaderBytes", "1024"),
        top("maxConnections", "1"),
    ] {
        let path = dir.write("conf.json", config.as_bytes());
        assert_check_ok(dir.path(), &path);
    }
}

#[test]
fn c_port_in_use_exits_1_with_a_message() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let dir = TempDir::new();
    let config = format!(r#"{{"port": {port}, "host": "127.0.0.1"}}"#);
    dir.write("server-config.json", config.as_bytes());
    let out = run(dir.path(), &[] as &[&str]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&port.to_string()),
        "the message names no port: {err}"
    );
    assert!(!err.contains(LISTENING), "half-started: {err}");
    drop(taken);
}

#[test]
fn c_listening_line_for_localhost_is_127_0_0_1() {
    let dir = TempDir::new();
    let path = dir.write("conf.json", br#"{"port": 0, "host": "localhost"}"#);
    let hawkey = Running::start(dir.path(), &[OsStr::new("-c"), path.as_os_str()]);
    assert_answers(hawkey.listening_on("127.0.0.1"));
}

#[test]
fn c_listening_line_for_ipv6_loopback_is_bracketed() {
    if TcpListener::bind("[::1]:0").is_err() {
        eprintln!("skipped: no IPv6 loopback here");
        return;
    }
    let dir = TempDir::new();
    let path = dir.write("conf.json", br#"{"port": 0, "host": "::1"}"#);
    let hawkey = Running::start(dir.path(), &[OsStr::new("-c"), path.as_os_str()]);
    assert_answers(hawkey.listening_on("[::1]"));
}

#[test]
fn c_listening_line_for_the_default_host_is_0_0_0_0() {
    let dir = TempDir::new();
    let path = dir.write("conf.json", br#"{"port": 0}"#);
    let hawkey = Running::start(dir.path(), &[OsStr::new("-c"), path.as_os_str()]);
    let addr = hawkey.listening_on("0.0.0.0");
    assert_answers(SocketAddr::from(([127, 0, 0, 1], addr.port())));
}

#[test]
fn k_port_0_picks_a_free_port() {
    let dir = TempDir::new();
    let path = dir.write("conf.json", br#"{"port": 0, "host": "127.0.0.1"}"#);
    let args = [OsStr::new("-c"), path.as_os_str()];
    let first = Running::start(dir.path(), &args);
    let second = Running::start(dir.path(), &args);
    let (a, b) = (
        first.listening_on("127.0.0.1"),
        second.listening_on("127.0.0.1"),
    );
    assert_ne!(a.port(), b.port());
    assert_answers(a);
    assert_answers(b);
}

#[test]
fn c_shipped_server_config_passes_check() {
    let shipped = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("server-config.json");
    let dir = TempDir::new();
    assert_check_ok(dir.path(), &shipped);
}
