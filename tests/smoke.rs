//! The shortest paths through hawkey, one of each kind: a proxied request, a static
//! file, a TLS handshake and a WebSocket echo. CI runs this file against every
//! target's binary (`HAWKEY_BIN`), the aarch64 one under qemu [P].

mod common;
use common::*;

use std::io::{Read, Write};
use std::net::Shutdown;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use serde_json::json;

#[test]
fn r1_request_reaches_the_backend_and_the_answer_comes_back() {
    let backend = Backend::fixed("hello");
    let hawkey = Hawkey::start(route_config("^/api/", &backend));
    let res = hawkey.get("/api/x?y=1");
    assert_eq!(res.status, 200);
    assert_eq!(res.body, b"hello");
    let reqs = backend.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].target, "/api/x?y=1");
}

#[test]
fn s_a_static_file_is_served() {
    let dir = TempDir::new();
    dir.write("www/static/page.html", b"<p>smoke</p>\n");
    let config =
        json!({ "port": 0, "host": "127.0.0.1", "serverRoot": "www", "staticDir": "static" });
    let path = dir.write("server-config.json", config.to_string().as_bytes());
    let hawkey = Hawkey::start_file(dir, &path);
    let res = hawkey.get("/static/page.html");
    assert_eq!(res.status, 200, "{}", res.head);
    assert_eq!(res.header("content-type"), Some("text/html; charset=utf-8"));
    assert_eq!(res.body, b"<p>smoke</p>\n");
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

#[test]
fn t_a_tls_handshake_and_a_request_over_it() {
    let backend = Backend::fixed("secure");
    let mut config = route_config("^/", &backend);
    config["pems"] = json!({
        "key": fixture("ec-sec1.key"),
        "cert": fixture("ec-sec1.chain.pem"),
    });
    let hawkey = Hawkey::start(config);
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(fixture("ca.pem")).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut client = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    client.alpn_protocols = vec![b"http/1.1".to_vec()];
    let name = ServerName::try_from("localhost").unwrap();
    let conn = ClientConnection::new(Arc::new(client), name).unwrap();
    let mut tls = StreamOwned::new(conn, hawkey.connect());
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock).expect("TLS handshake");
    }
    assert_eq!(tls.conn.alpn_protocol(), Some(&b"http/1.1"[..]));
    tls.write_all(b"GET /s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let res = read_response(&mut tls, false);
    assert_eq!((res.status, res.text().as_str()), (200, "secure"));
    let req = &backend.requests()[0];
    assert_eq!(req.header("x-forwarded-proto"), Some("https"));
}

#[test]
fn r7_a_websocket_echo() {
    let backend = Backend::raw(|mut s, conn| {
        let Some(req) = read_request(&mut s, conn) else {
            return;
        };
        let key = req.header("sec-websocket-key").unwrap_or("").to_string();
        let head = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: for-{key}\r\n\r\n"
        );
        if s.write_all(head.as_bytes()).is_ok() {
            let mut reader = s.try_clone().unwrap();
            let _ = std::io::copy(&mut reader, &mut s);
            let _ = s.shutdown(Shutdown::Write);
        }
    });
    let hawkey = Hawkey::start(route_config("^/ws", &backend));
    let mut s = hawkey.connect();
    send(
        &mut s,
        b"GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
          Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    );
    let res = read_response(&mut s, false);
    assert_eq!(res.status, 101, "{}", res.head);
    assert_eq!(
        res.header("sec-websocket-accept"),
        Some("for-dGhlIHNhbXBsZSBub25jZQ==")
    );
    // A masked text frame "hello", as a browser sends it; the echo backend returns it.
    let mask = [1u8, 2, 3, 4];
    let mut frame = vec![0x81, 0x80 | 5];
    frame.extend_from_slice(&mask);
    frame.extend(b"hello".iter().zip(mask.iter().cycle()).map(|(b, m)| b ^ m));
    send(&mut s, &frame);
    let mut back = vec![0; frame.len()];
    s.read_exact(&mut back).unwrap();
    assert_eq!(back, frame);
    s.shutdown(Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "{rest:?}");
}
