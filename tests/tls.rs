//! TLS [T] from outside: the real binary on the test certificates of
//! `tests/fixtures` (test-only keys), a rustls client that trusts the test CA, ALPN,
//! both protocol versions, every key format, bad key and certificate files [C], the
//! head deadline during and after the handshake [E][R8], bytes that are not TLS, the
//! `httpPort` redirect listener [K], tunnels [R7] and large bodies [R4] over TLS.
//!
//! `common::Hawkey::start` waits for an `http://` listening line, so this file has its
//! own `TlsHawkey`, which also reads the redirect listener's second line.

mod common;
use common::*;

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{
    AlertDescription, ClientConfig, ClientConnection, ProtocolVersion, RootCertStore, StreamOwned,
    SupportedProtocolVersion,
};
use serde_json::{Value, json};

const LISTENING: &str = "hawkey listening on ";

/// The key forms hawkey reads [T]; each has `NAME.key` and `NAME.chain.pem`.
const KEY_FORMATS: [&str; 3] = ["rsa-pkcs8", "rsa-pkcs1", "ec-sec1"];

type TlsStream = StreamOwned<ClientConnection, TcpStream>;

/// A file of `tests/fixtures`.
fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// `pems` for the fixture key `name` and its chain.
fn pems(name: &str) -> Value {
    json!({
        "key": fixture(&format!("{name}.key")),
        "cert": fixture(&format!("{name}.chain.pem")),
    })
}

/// A running hawkey with a TLS listener (and the redirect listener when the config
/// has `httpPort`); killed on drop.
struct TlsHawkey {
    child: Child,
    /// The TLS listener, from the `https://` line.
    https: SocketAddr,
    /// The redirect listener, from the `http://` line that follows.
    http: Option<SocketAddr>,
    _dir: TempDir,
    stderr: Arc<Mutex<String>>,
}

impl TlsHawkey {
    /// Starts hawkey on `config`; `port` 0, `host` 127.0.0.1 and the rsa-pkcs8 pair
    /// are filled in when absent.
    fn start(mut config: Value) -> TlsHawkey {
        let obj = config.as_object_mut().expect("config is a JSON object");
        obj.entry("port").or_insert(0.into());
        obj.entry("host").or_insert("127.0.0.1".into());
        obj.entry("pems").or_insert(pems("rsa-pkcs8"));
        let redirect = obj.contains_key("httpPort");
        let dir = TempDir::new();
        let path = dir.write("server-config.json", config.to_string().as_bytes());
        let mut child = Command::new(hawkey_bin())
            .arg("-c")
            .arg(&path)
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
        // Keep draining stderr after the listening lines, or logging fills the pipe
        // and hawkey blocks.
        std::thread::spawn(move || {
            let mut line = String::new();
            while lines.read_line(&mut line).unwrap_or(0) > 0 {
                if let Some(url) = line.trim().strip_prefix(LISTENING) {
                    let _ = tx.send(url.to_string());
                }
                log.lock().unwrap().push_str(&line);
                line.clear();
            }
        });
        let mut next_line = |scheme: &str| -> SocketAddr {
            let Ok(url) = rx.recv_timeout(TIMEOUT) else {
                let _ = child.kill();
                panic!("hawkey did not start: {}", stderr.lock().unwrap());
            };
            let addr = url.strip_prefix(scheme);
            addr.unwrap_or_else(|| panic!("listening on {url}, wanted {scheme}"))
                .parse()
                .unwrap()
        };
        let https = next_line("https://");
        let http = redirect.then(|| next_line("http://"));
        TlsHawkey {
            child,
            https,
            http,
            _dir: dir,
            stderr,
        }
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// One https request on a new connection, with the default client.
    fn get(&self, target: &str) -> Response {
        https_get(self.https, &client_config(), target)
    }
}

impl Drop for TlsHawkey {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A client trusting the test CA, offering `alpn`, speaking only `versions`.
fn client_config_with(
    alpn: &[&str],
    versions: &[&'static SupportedProtocolVersion],
) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(fixture("ca.pem")).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    Arc::new(config)
}

/// The usual client: TLS 1.2 or 1.3, ALPN `http/1.1`.
fn client_config() -> Arc<ClientConfig> {
    client_config_with(&["http/1.1"], rustls::DEFAULT_VERSIONS)
}

/// Connects and completes the handshake for `localhost`.
fn handshake(addr: SocketAddr, config: &Arc<ClientConfig>) -> std::io::Result<TlsStream> {
    let conn = ClientConnection::new(Arc::clone(config), server_name()).unwrap();
    let mut tls = StreamOwned::new(conn, connect(addr));
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock)?;
    }
    Ok(tls)
}

fn server_name() -> ServerName<'static> {
    ServerName::try_from("localhost").unwrap()
}

/// One GET with `Connection: close` over a new TLS connection, answer read in full.
fn https_get(addr: SocketAddr, config: &Arc<ClientConfig>, target: &str) -> Response {
    let mut tls = handshake(addr, config).expect("TLS handshake");
    let request = format!("GET {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    tls.write_all(request.as_bytes()).unwrap();
    read_response(&mut tls, false)
}

/// The rustls error inside an I/O error, if any.
fn tls_error(e: &std::io::Error) -> Option<&rustls::Error> {
    e.get_ref()?.downcast_ref::<rustls::Error>()
}

/// Whether the peer has closed `s` (EOF or reset); false while it is merely quiet.
fn is_closed(s: &TcpStream) -> bool {
    s.set_nonblocking(true).unwrap();
    let closed = !matches!(s.peek(&mut [0u8; 1]), Err(e) if e.kind() == ErrorKind::WouldBlock);
    s.set_nonblocking(false).unwrap();
    closed
}

/// Reads until hawkey closes `s`; fails if it is still open after `within`. Returns
/// what came before the close.
fn read_until_closed(s: &mut TcpStream, within: Duration) -> Vec<u8> {
    s.set_read_timeout(Some(within)).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                panic!("connection still open after {within:?}; got {got:?}")
            }
            Err(_) => return got, // a reset is a close too
        }
    }
}

/// Writes `config` in `dir`; both `hawkey -c` and `hawkey --check -c` on it exit 1
/// with no listening line and an error on stderr that names `named`.
fn assert_refused(dir: &TempDir, config: Value, named: &Path) {
    let path = dir.write("server-config.json", config.to_string().as_bytes());
    let named = named.display().to_string();
    for check in [false, true] {
        let mut args = vec![OsStr::new("-c"), path.as_os_str()];
        if check {
            args.insert(0, OsStr::new("--check"));
        }
        let out = run(dir.path(), &args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "check={check}: {err}");
        assert!(!err.contains(LISTENING), "check={check}: {err}");
        assert!(
            err.contains(&named),
            "check={check}: {named} not named in {err}"
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout), "", "check={check}");
    }
}

/// A config on 127.0.0.1:0 with the given pair.
fn pems_config(key: &Path, cert: &Path) -> Value {
    json!({ "port": 0, "host": "127.0.0.1", "pems": { "key": key, "cert": cert } })
}

#[test]
fn t_keep_alive_requests_over_tls_reach_backend_as_https() {
    let backend = Backend::fixed("hello");
    let hawkey = TlsHawkey::start(route_config("^/", &backend));
    let mut tls = handshake(hawkey.https, &client_config()).unwrap();
    for i in 0..3 {
        let request = format!("GET /r{i} HTTP/1.1\r\nHost: localhost\r\n\r\n");
        tls.write_all(request.as_bytes()).unwrap();
        let res = read_response(&mut tls, false);
        assert_eq!(
            (res.status, res.text().as_str()),
            (200, "hello"),
            "request {i}"
        );
    }
    let requests = backend.requests();
    assert_eq!(requests.len(), 3);
    for (i, req) in requests.iter().enumerate() {
        assert_eq!(req.target, format!("/r{i}"));
        assert_eq!(
            req.header("x-forwarded-proto"),
            Some("https"),
            "{}",
            req.head
        );
    }
}

// See: issue 12. Over TLS too, a request already sent behind one that ends at a read
// boundary is answered without waiting for more input [R8].
#[test]
fn t_pipelined_requests_over_tls_are_answered_at_once_whatever_the_boundary() {
    let backend = Backend::start(|r| ok(&r.target));
    let mut config = route_config("^/", &backend);
    config["timeouts"] = json!({ "keepAliveMs": 3000 });
    let hawkey = TlsHawkey::start(config);
    for len in [1024, 4096, 16384, 16384 + 4096, 32768] {
        let mut tls = handshake(hawkey.https, &client_config()).unwrap();
        let bare = "GET /first HTTP/1.1\r\nHost: localhost\r\nX-Pad: \r\n\r\n";
        let first = bare.replace(
            "X-Pad: ",
            &format!("X-Pad: {}", "p".repeat(len - bare.len())),
        );
        let both = first + "GET /second HTTP/1.1\r\nHost: localhost\r\n\r\n";
        let sent = Instant::now();
        tls.write_all(both.as_bytes()).unwrap();
        assert_eq!(read_response(&mut tls, false).text(), "/first", "{len}");
        assert_eq!(read_response(&mut tls, false).text(), "/second", "{len}");
        let waited = sent.elapsed();
        assert!(
            waited < Duration::from_secs(1),
            "{len}: both answered after {waited:?}"
        );
    }
}

// See: issue 12. Bytes that never make a whole TLS record bring no request byte: the
// keep-alive wait is not restarted by them, and the connection closes at its deadline.
#[test]
fn t_a_partial_record_dribbled_after_a_request_is_closed_at_keep_alive_ms() {
    let backend = Backend::fixed("hello");
    let mut config = route_config("^/", &backend);
    config["timeouts"] = json!({ "keepAliveMs": 1000 });
    let hawkey = TlsHawkey::start(config);
    let mut tls = handshake(hawkey.https, &client_config()).unwrap();
    tls.write_all(b"GET /r HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut tls, false).text(), "hello");
    let answered = Instant::now();
    // An application-data record header announcing 16 KiB, then a byte at a time.
    let mut raw = tls.sock.try_clone().unwrap();
    let dribbling = std::thread::spawn(move || {
        let _ = raw.write_all(&[0x17, 0x03, 0x03, 0x40, 0x00]);
        for _ in 0..300 {
            std::thread::sleep(Duration::from_millis(20));
            if raw.write_all(b"x").is_err() {
                return;
            }
        }
    });
    read_until_closed(&mut tls.sock, Duration::from_secs(4));
    let open_for = answered.elapsed();
    assert!(
        (Duration::from_millis(900)..Duration::from_millis(2500)).contains(&open_for),
        "closed {open_for:?} after the answer (keepAliveMs 1000)"
    );
    dribbling.join().unwrap();
}

#[test]
fn t_alpn_prefers_h2_and_keeps_http11() {
    let backend = Backend::fixed("hello");
    let hawkey = TlsHawkey::start(route_config("^/", &backend));
    let config = client_config_with(&["http/1.1", "h2"], rustls::DEFAULT_VERSIONS);
    let tls = handshake(hawkey.https, &config).unwrap();
    assert_eq!(
        tls.conn.alpn_protocol(),
        Some(b"h2".as_slice()),
        "hawkey's preference wins"
    );
    let config = client_config_with(&["http/1.1"], rustls::DEFAULT_VERSIONS);
    let mut tls = handshake(hawkey.https, &config).unwrap();
    assert_eq!(tls.conn.alpn_protocol(), Some(b"http/1.1".as_slice()));
    tls.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut tls, false).status, 200);
}

#[test]
fn t_alpn_without_common_protocol_gets_alert() {
    let backend = Backend::fixed("hello");
    let hawkey = TlsHawkey::start(route_config("^/", &backend));
    let config = client_config_with(&["spdy/3.1"], rustls::DEFAULT_VERSIONS);
    let err = handshake(hawkey.https, &config).expect_err("handshake without a common ALPN");
    assert_eq!(
        tls_error(&err),
        Some(&rustls::Error::AlertReceived(
            AlertDescription::NoApplicationProtocol
        )),
        "{err:?}"
    );
    assert_eq!(hawkey.get("/").status, 200, "hawkey serves on afterwards");
}

#[test]
fn t_tls12_and_tls13_both_serve() {
    let backend = Backend::fixed("hello");
    let hawkey = TlsHawkey::start(route_config("^/", &backend));
    let cases = [
        (&rustls::version::TLS12, ProtocolVersion::TLSv1_2),
        (&rustls::version::TLS13, ProtocolVersion::TLSv1_3),
    ];
    for (version, want) in cases {
        let config = client_config_with(&["http/1.1"], &[version]);
        let mut tls = handshake(hawkey.https, &config).unwrap();
        assert_eq!(tls.conn.protocol_version(), Some(want));
        tls.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .unwrap();
        let res = read_response(&mut tls, false);
        assert_eq!(
            (res.status, res.text().as_str()),
            (200, "hello"),
            "{want:?}"
        );
    }
}

#[test]
fn t_each_key_format_serves_its_chain_of_two() {
    let backend = Backend::fixed("hello");
    for name in KEY_FORMATS {
        let mut config = route_config("^/", &backend);
        config["pems"] = pems(name);
        let hawkey = TlsHawkey::start(config);
        for version in [&rustls::version::TLS12, &rustls::version::TLS13] {
            let client = client_config_with(&["http/1.1"], &[version]);
            let mut tls = handshake(hawkey.https, &client)
                .unwrap_or_else(|e| panic!("{name} {:?}: {e}", version.version));
            let chain = tls.conn.peer_certificates().unwrap().len();
            assert_eq!(chain, 2, "{name}: leaf and CA served");
            tls.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                .unwrap();
            assert_eq!(read_response(&mut tls, false).status, 200, "{name}");
        }
    }
}

#[test]
fn t_good_pair_passes_check() {
    let dir = TempDir::new();
    for name in KEY_FORMATS {
        let path = dir.write(
            "server-config.json",
            json!({ "port": 0, "pems": pems(name) })
                .to_string()
                .as_bytes(),
        );
        let out = run(
            dir.path(),
            &[OsStr::new("--check"), OsStr::new("-c"), path.as_os_str()],
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{name}: {err}");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "config OK\n",
            "{name}"
        );
    }
}

#[test]
fn t_missing_key_file_is_refused_naming_it() {
    let dir = TempDir::new();
    let key = dir.path().join("missing.key");
    let config = pems_config(&key, &fixture("rsa-pkcs8.chain.pem"));
    assert_refused(&dir, config, &key);
}

#[test]
fn t_missing_cert_file_is_refused_naming_it() {
    let dir = TempDir::new();
    let cert = dir.path().join("missing.pem");
    let config = pems_config(&fixture("rsa-pkcs8.key"), &cert);
    assert_refused(&dir, config, &cert);
}

#[test]
fn t_cert_file_without_certificate_is_refused_naming_it() {
    let dir = TempDir::new();
    let cert = dir.write("garbage.pem", b"this is not a certificate\n");
    let config = pems_config(&fixture("rsa-pkcs8.key"), &cert);
    assert_refused(&dir, config, &cert);
}

#[test]
fn t_key_file_without_key_is_refused_naming_it() {
    let dir = TempDir::new();
    let not_a_key = fixture("rsa-pkcs8.chain.pem");
    let config = pems_config(&not_a_key, &fixture("rsa-pkcs8.chain.pem"));
    // The same file is both: make sure the message is about the key.
    let path = dir.write("server-config.json", config.to_string().as_bytes());
    let out = run(dir.path(), &[OsStr::new("-c"), path.as_os_str()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("pems.key"), "{err}");
    assert_refused(&dir, config, &not_a_key);
}

#[test]
fn t_key_not_matching_cert_is_refused_naming_it() {
    let dir = TempDir::new();
    let key = fixture("rsa-pkcs8.key");
    let config = pems_config(&key, &fixture("ec-sec1.chain.pem"));
    assert_refused(&dir, config, &key);
}

#[test]
fn t_http_port_without_pems_is_a_config_error() {
    let dir = TempDir::new();
    let config = json!({ "port": 0, "host": "127.0.0.1", "httpPort": 0 });
    let path = dir.write("server-config.json", config.to_string().as_bytes());
    assert_refused(&dir, config, &path);
    let out = run(dir.path(), &[OsStr::new("-c"), path.as_os_str()]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("httpPort"));
}

/// [R8][E]: connections that have sent nothing wait parked, holding no worker; a
/// real request is answered meanwhile, and each silent one is closed at `headerMs`.
#[test]
fn t_silent_tcp_clients_hold_no_worker_and_close_at_header_ms() {
    let header_ms = 1000;
    let backend = Backend::fixed("hello");
    let mut config = route_config("^/", &backend);
    config["workers"] = 2.into();
    config["timeouts"] = json!({ "headerMs": header_ms });
    let hawkey = TlsHawkey::start(config);
    let silent: Vec<(TcpStream, Instant)> = (0..5)
        .map(|_| (connect(hawkey.https), Instant::now()))
        .collect();
    let res = hawkey.get("/");
    assert_eq!(res.status, 200);
    for (i, (s, at)) in silent.iter().enumerate() {
        let open = !is_closed(s);
        assert!(open, "silent client {i} closed after {:?}", at.elapsed());
    }
    for (i, (mut s, at)) in silent.into_iter().enumerate() {
        let got = read_until_closed(&mut s, Duration::from_millis(header_ms + 3000));
        let after = at.elapsed();
        assert!(got.is_empty(), "silent client {i} got {got:?}");
        assert!(
            after >= Duration::from_millis(header_ms * 9 / 10),
            "silent client {i} closed after only {after:?}"
        );
    }
}

/// [R8][E]: a client whose TLS handshake is done but which sends no request is a
/// new connection waiting for its first head, like a plain one that sent nothing
/// (browsers open such connections ahead of need). It must not hold a worker.
#[test]
fn t_silent_tls_clients_after_handshake_hold_no_worker() {
    let header_ms = 1000;
    let backend = Backend::fixed("hello");
    let mut config = route_config("^/", &backend);
    config["workers"] = 2.into();
    config["timeouts"] = json!({ "headerMs": header_ms });
    let hawkey = TlsHawkey::start(config);
    let start = Instant::now();
    let client = client_config();
    let mut silent = Vec::new();
    for i in 0..5 {
        let tls = handshake(hawkey.https, &client).unwrap_or_else(|e| {
            panic!(
                "silent client {i}: handshake failed after {:?} ({e}): earlier silent \
                 clients hold the workers",
                start.elapsed()
            )
        });
        silent.push(tls);
    }
    let res = hawkey.get("/");
    let took = start.elapsed();
    assert_eq!(res.status, 200);
    assert!(
        took < Duration::from_millis(header_ms / 2),
        "5 handshakes and a request took {took:?}: silent TLS clients hold the workers"
    );
    for (i, mut tls) in silent.into_iter().enumerate() {
        let got = read_until_closed(&mut tls.sock, Duration::from_millis(header_ms + 3000));
        let after = start.elapsed();
        assert!(
            after >= Duration::from_millis(header_ms * 9 / 10),
            "silent client {i} closed after only {after:?}"
        );
        // Session tickets or close_notify may come: TLS records, never HTTP.
        assert!(
            got.first()
                .is_none_or(|&b| b == 0x15 || b == 0x16 || b == 0x17)
        );
    }
}

/// The first half of a ClientHello for `localhost`.
fn half_client_hello() -> Vec<u8> {
    let mut hello = Vec::new();
    let mut conn = ClientConnection::new(client_config(), server_name()).unwrap();
    conn.write_tls(&mut hello).unwrap();
    assert!(hello.len() > 100, "a ClientHello: {} bytes", hello.len());
    hello.truncate(hello.len() / 2);
    hello
}

/// [R8][E] slowloris: handshakes that stall halfway are waits for a head like any
/// other and must not hold a worker while they wait.
#[test]
fn t_stalled_handshakes_hold_no_worker() {
    let header_ms = 1000;
    let backend = Backend::fixed("hello");
    let mut config = route_config("^/", &backend);
    config["workers"] = 2.into();
    config["timeouts"] = json!({ "headerMs": header_ms });
    let hawkey = TlsHawkey::start(config);
    let start = Instant::now();
    let stalled: Vec<TcpStream> = (0..5)
        .map(|_| {
            let mut s = connect(hawkey.https);
            send(&mut s, &half_client_hello());
            s
        })
        .collect();
    let res = hawkey.get("/");
    let took = start.elapsed();
    assert_eq!(res.status, 200);
    assert!(
        took < Duration::from_millis(header_ms / 2),
        "a request behind 5 stalled handshakes took {took:?}: they hold the workers"
    );
    for (i, s) in stalled.iter().enumerate() {
        assert!(!is_closed(s), "stalled client {i} closed after {took:?}");
    }
}

/// [E]: the head deadline covers the handshake: half a ClientHello, then nothing,
/// is cut at `headerMs`.
#[test]
fn t_half_client_hello_is_dropped_at_header_ms() {
    let header_ms = 500;
    let backend = Backend::fixed("hello");
    let mut config = route_config("^/", &backend);
    config["timeouts"] = json!({ "headerMs": header_ms });
    let hawkey = TlsHawkey::start(config);
    let mut s = connect(hawkey.https);
    let at = Instant::now();
    send(&mut s, &half_client_hello());
    let got = read_until_closed(&mut s, Duration::from_millis(header_ms + 3000));
    let after = at.elapsed();
    assert!(
        after >= Duration::from_millis(header_ms * 9 / 10),
        "closed after only {after:?}"
    );
    assert!(!String::from_utf8_lossy(&got).contains("HTTP/"), "{got:?}");
    assert_eq!(hawkey.get("/").status, 200, "hawkey serves on afterwards");
}

#[test]
fn t_bytes_that_are_not_tls_close_the_connection_without_http_answer() {
    let backend = Backend::fixed("hello");
    let hawkey = TlsHawkey::start(route_config("^/", &backend));
    let mut garbage = vec![0u8; 512];
    XorShift(7).fill(&mut garbage);
    let inputs: [(&str, &[u8]); 2] = [
        ("garbage", &garbage),
        (
            "plain HTTP",
            b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        ),
    ];
    for (what, bytes) in inputs {
        let mut s = connect(hawkey.https);
        send(&mut s, bytes);
        let got = read_until_closed(&mut s, Duration::from_secs(5));
        let text = String::from_utf8_lossy(&got);
        assert!(
            !text.contains("HTTP/"),
            "{what}: answered in plaintext: {text}"
        );
        assert_eq!(
            hawkey.get("/").status,
            200,
            "{what}: hawkey serves on afterwards"
        );
    }
    assert_eq!(
        backend.requests().len(),
        2,
        "only the two https requests arrived"
    );
}

/// [K] `httpPort`: a 301 to the TLS listener, keeping the Host's name, path and query.
#[test]
fn t_redirect_listener_answers_301_to_https() {
    let backend = Backend::fixed("hello");
    let mut config = route_config("^/", &backend);
    config["httpPort"] = 0.into();
    let hawkey = TlsHawkey::start(config);
    let http = hawkey.http.unwrap();
    let tls_port = hawkey.https.port();
    assert_ne!(http.port(), tls_port);
    let cases = [
        (
            "HTTP/1.1",
            "Host: example.com:8080\r\n",
            format!("https://example.com:{tls_port}/a/b?c=d"),
        ),
        (
            "HTTP/1.1",
            "Host: [::1]:80\r\n",
            format!("https://[::1]:{tls_port}/a/b?c=d"),
        ),
        (
            "HTTP/1.0",
            "",
            format!("https://127.0.0.1:{tls_port}/a/b?c=d"),
        ),
    ];
    for (version, host, want) in cases {
        let mut s = connect(http);
        let request = format!("GET /a/b?c=d {version}\r\n{host}Connection: close\r\n\r\n");
        send(&mut s, request.as_bytes());
        let res = read_response(&mut s, false);
        assert_eq!(res.status, 301, "{request:?}: {}", res.head);
        assert_eq!(res.header("location"), Some(want.as_str()), "{request:?}");
        let content_type = res.header("content-type").unwrap_or("");
        assert!(content_type.starts_with("text/plain"), "{}", res.head);
        let length = res.header("content-length").map(|l| l.parse::<usize>());
        assert_eq!(length, Some(Ok(res.body.len())), "{}", res.head);
        assert!(
            !res.body.is_empty() && res.body.len() < 512,
            "{}",
            res.text()
        );
    }
    assert!(
        backend.requests().is_empty(),
        "redirects never reach a backend"
    );
    assert_eq!(hawkey.get("/").status, 200, "the TLS listener serves");
}

/// [R7] over TLS: after the 101 the client's bytes reach the backend and its answers
/// come back; the backend's half-close reaches the client as EOF, and the client can
/// still send until it closes too.
#[test]
fn t_tunnel_over_tls_relays_both_ways_and_passes_half_close() {
    let (after_tx, after_rx) = mpsc::channel();
    let backend = Backend::raw(move |mut s, conn| {
        let Some(_req) = read_request(&mut s, conn) else {
            return;
        };
        let switching =
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n";
        s.write_all(switching.as_bytes()).unwrap();
        let mut seen = Vec::new();
        let mut buf = [0u8; 1024];
        while !seen.ends_with(b"bye\n") {
            let n = match s.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => panic!("backend read: {e}"),
            };
            seen.extend_from_slice(&buf[..n]);
            s.write_all(&buf[..n].to_ascii_uppercase()).unwrap();
        }
        s.shutdown(Shutdown::Write).unwrap();
        let mut after = Vec::new();
        let _ = after_tx.send(s.read_to_end(&mut after).map(|_| after));
    });
    let hawkey = TlsHawkey::start(route_config("^/", &backend));
    let mut tls = handshake(hawkey.https, &client_config()).unwrap();
    tls.write_all(
        b"GET /ws HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n",
    )
    .unwrap();
    let head = String::from_utf8(read_head_bytes(&mut tls).unwrap()).unwrap();
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    for message in ["hello\n", "tunnel over tls\n", "bye\n"] {
        tls.write_all(message.as_bytes()).unwrap();
        let mut echo = vec![0u8; message.len()];
        tls.read_exact(&mut echo).unwrap();
        assert_eq!(echo, message.to_uppercase().as_bytes());
    }
    let mut buf = [0u8; 16];
    let eof = tls.read(&mut buf);
    assert!(matches!(eof, Ok(0)), "backend's half-close: {eof:?}");
    tls.write_all(b"after\n").unwrap();
    tls.conn.send_close_notify();
    tls.flush().unwrap();
    tls.sock.shutdown(Shutdown::Write).unwrap();
    let after = after_rx
        .recv_timeout(TIMEOUT)
        .expect("backend saw the client's EOF");
    assert_eq!(after.unwrap(), b"after\n");
}

/// [R4] over TLS: 1 MiB each way, byte-exact.
#[test]
fn t_large_bodies_over_tls_arrive_byte_exact() {
    const SIZE: usize = 1024 * 1024;
    let mut download = vec![0u8; SIZE];
    XorShift(0x5eed).fill(&mut download);
    let mut response = format!("HTTP/1.1 200 OK\r\nContent-Length: {SIZE}\r\n\r\n").into_bytes();
    response.extend_from_slice(&download);
    let backend = Backend::start(move |req| match req.method.as_str() {
        "GET" => Reply::Bytes(response.clone()),
        _ => ok("stored"),
    });
    let hawkey = TlsHawkey::start(route_config("^/", &backend));
    let mut tls = handshake(hawkey.https, &client_config()).unwrap();

    tls.write_all(b"GET /big HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let res = read_response(&mut tls, false);
    assert_eq!(res.status, 200);
    assert!(
        res.body == download,
        "download differs ({} bytes)",
        res.body.len()
    );

    let mut upload = vec![0u8; SIZE];
    XorShift(0xfeed).fill(&mut upload);
    let head = format!("POST /up HTTP/1.1\r\nHost: localhost\r\nContent-Length: {SIZE}\r\n\r\n");
    tls.write_all(head.as_bytes()).unwrap();
    tls.write_all(&upload).unwrap();
    let res = read_response(&mut tls, false);
    assert_eq!((res.status, res.text().as_str()), (200, "stored"));
    let requests = backend.requests();
    let got = &requests.last().unwrap().body;
    assert!(*got == upload, "upload differs ({} bytes)", got.len());
    assert!(!hawkey.stderr().contains("panicked"), "{}", hawkey.stderr());
}
