//! Static files under `/<staticDir>/` [S] through the real binary, on real files: type,
//! length, dates and validators, HEAD, 304, single ranges and 416, index.html, 405,
//! and every way a target might climb out of `serverRoot/staticDir` [R1][K].
//! Not here: the access log lines for static answers (tests/logs.rs).

mod common;
use common::*;

use std::fs::{self, File};
use std::io::Read;
use std::net::TcpStream;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use serde_json::json;

/// Next to the static dir (`serverRoot/secret.txt`): must never be served.
const SECRET: &[u8] = b"SECRET-next-to-static-7f3a";
/// Outside `serverRoot` altogether: must never be served.
const OUTSIDE: &[u8] = b"SECRET-outside-server-root-91c2";

/// The files of the site, under `www/static/`, with their expected `Content-Type`.
const TYPED: &[(&str, &str)] = &[
    ("index.html", "text/html; charset=utf-8"),
    ("a.css", "text/css; charset=utf-8"),
    ("app.js", "text/javascript; charset=utf-8"),
    ("data.json", "application/json; charset=utf-8"),
    ("img.png", "image/png"),
    ("pic.svg", "image/svg+xml; charset=utf-8"),
    ("blob.xyz", "application/octet-stream"),
    ("noext", "application/octet-stream"),
];

/// A thousand pseudo-random bytes for the range tests.
fn range_bytes() -> Vec<u8> {
    let mut data = vec![0u8; 1000];
    XorShift(0x5eed).fill(&mut data);
    data
}

/// The body written for `name` in the site.
fn contents(name: &str) -> Vec<u8> {
    match name {
        "img.png" => b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR binary \xff\x00\xfe".to_vec(),
        "r.bin" => range_bytes(),
        _ => format!("contents of {name}\n").into_bytes(),
    }
}

/// Starts hawkey on a site in a fresh directory, `extra` merged into the config:
///
/// ```text
/// outside.txt                 OUTSIDE
/// server-config.json          serverRoot "www" (relative), staticDir "static"
/// www/secret.txt              SECRET
/// www/static/…                TYPED files, r.bin, sub/index.html, sub/page.txt, empty/
/// www/static/link-in.css      -> a.css            (inside: followed)
/// www/static/link-sub         -> sub              (inside: followed)
/// www/static/link-up.txt      -> ../secret.txt    (outside: 404)
/// www/static/link-out.txt     -> /…/outside.txt   (outside: 404)
/// www/static/link-dir         -> ..               (outside: 404)
/// ```
fn site_with(extra: serde_json::Value) -> Hawkey {
    let dir = TempDir::new();
    dir.write("outside.txt", OUTSIDE);
    dir.write("www/secret.txt", SECRET);
    for (name, _) in TYPED {
        dir.write(&format!("www/static/{name}"), &contents(name));
    }
    dir.write("www/static/r.bin", &contents("r.bin"));
    dir.write("www/static/sub/index.html", b"sub index\n");
    dir.write("www/static/sub/page.txt", b"sub page\n");
    let st = dir.path().join("www/static");
    fs::create_dir_all(st.join("empty")).unwrap();
    symlink("a.css", st.join("link-in.css")).unwrap();
    symlink("sub", st.join("link-sub")).unwrap();
    symlink("../secret.txt", st.join("link-up.txt")).unwrap();
    symlink(dir.path().join("outside.txt"), st.join("link-out.txt")).unwrap();
    symlink("..", st.join("link-dir")).unwrap();
    let mut config = json!({
        "port": 0, "host": "127.0.0.1", "serverRoot": "www", "staticDir": "static",
    });
    for (k, v) in extra.as_object().unwrap() {
        config[k] = v.clone();
    }
    let path = dir.write("server-config.json", config.to_string().as_bytes());
    Hawkey::start_file(dir, &path)
}

fn site() -> Hawkey {
    site_with(json!({}))
}

/// The path of `name` under the site's static dir.
fn on_disk(hawkey: &Hawkey, name: &str) -> PathBuf {
    hawkey.dir.path().join("www/static").join(name)
}

/// A request head; `close` adds `Connection: close`.
fn request_head(method: &str, target: &str, fields: &[(&str, &str)], close: bool) -> String {
    let mut head = format!("{method} {target} HTTP/1.1\r\nHost: test\r\n");
    for (name, value) in fields {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if close {
        head.push_str("Connection: close\r\n");
    }
    head + "\r\n"
}

/// One request on a new connection, the target sent as written (no normalisation).
fn request(hawkey: &Hawkey, method: &str, target: &str, fields: &[(&str, &str)]) -> Response {
    let mut s = hawkey.connect();
    send(
        &mut s,
        request_head(method, target, fields, true).as_bytes(),
    );
    read_response(&mut s, method == "HEAD")
}

fn get(hawkey: &Hawkey, target: &str, fields: &[(&str, &str)]) -> Response {
    request(hawkey, "GET", target, fields)
}

/// Sends a keep-alive request on `s` and reads its answer.
fn keep_alive(s: &mut TcpStream, method: &str, target: &str, fields: &[(&str, &str)]) -> Response {
    send(s, request_head(method, target, fields, false).as_bytes());
    read_response(s, method == "HEAD")
}

/// Whether the peer has closed `s` (end of stream or reset) rather than sent a byte.
fn is_closed(s: &mut TcpStream) -> bool {
    match s.read(&mut [0u8; 1]) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
    }
}

/// A present header, or a panic that shows the head.
fn field<'a>(res: &'a Response, name: &str) -> &'a str {
    res.header(name)
        .unwrap_or_else(|| panic!("no {name} in {}", res.head))
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (month + if month > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Seconds since the epoch of an IMF-fixdate (`Thu, 29 Feb 2024 12:34:56 GMT`, RFC 9110
/// §5.6.7), checking its exact shape and that the weekday is the right one.
fn parse_imf_fixdate(s: &str) -> Option<u64> {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    let p: Vec<&str> = s.split(' ').collect();
    let ok_shape = s.len() == 29 && p.len() == 6 && p[5] == "GMT" && p[1].len() == 2;
    if !ok_shape || p[4].len() != 8 || !p[0].ends_with(',') {
        return None;
    }
    let month = MONTHS.iter().position(|m| *m == p[2])? as i64 + 1;
    let num = |t: &str| t.parse::<i64>().ok();
    let days = days_from_civil(num(p[3])?, month, num(p[1])?);
    let hms: Vec<i64> = p[4].split(':').map(num).collect::<Option<_>>()?;
    let weekday_ok = WEEKDAYS[days.rem_euclid(7) as usize] == &p[0][..3];
    (weekday_ok && hms.len() == 3)
        .then(|| (days * 86_400 + hms[0] * 3600 + hms[1] * 60 + hms[2]) as u64)
}

/// A strong entity tag: quoted, not `W/`.
fn assert_strong_etag(etag: &str) {
    assert!(
        etag.len() >= 2 && etag.starts_with('"') && etag.ends_with('"'),
        "not a quoted entity tag: {etag}"
    );
    assert!(!etag.starts_with("W/"), "weak: {etag}");
}

/// Sets `path`'s mtime to 2024-02-29 12:34:56.5 UTC, so `Last-Modified` is known.
fn set_known_mtime(path: &Path) {
    let t = UNIX_EPOCH + Duration::from_millis(1_709_210_096_500);
    File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(t)
        .unwrap();
}
const KNOWN_DATE: &str = "Thu, 29 Feb 2024 12:34:56 GMT";

// ---------------------------------------------------------------- the 200 answer

#[test]
fn s_content_type_length_and_body_follow_the_file() {
    let hawkey = site();
    for (name, content_type) in TYPED {
        let res = get(&hawkey, &format!("/static/{name}"), &[]);
        assert_eq!(res.status, 200, "{name}: {}", res.head);
        assert_eq!(field(&res, "content-type"), *content_type, "{name}");
        let size = fs::metadata(on_disk(&hawkey, name)).unwrap().len();
        assert_eq!(field(&res, "content-length"), size.to_string(), "{name}");
        assert_eq!(field(&res, "accept-ranges"), "bytes", "{name}");
        assert_strong_etag(field(&res, "etag"));
        assert!(res.header("content-range").is_none(), "{name}");
        assert_eq!(res.body, contents(name), "{name}");
    }
}

#[test]
fn s_last_modified_is_the_file_mtime_as_imf_fixdate() {
    let hawkey = site();
    // A file as written just now: the header parses and names its mtime to the second.
    let res = get(&hawkey, "/static/a.css", &[]);
    let header = field(&res, "last-modified");
    let mtime = fs::metadata(on_disk(&hawkey, "a.css"))
        .unwrap()
        .modified()
        .unwrap();
    let secs = mtime.duration_since(UNIX_EPOCH).unwrap().as_secs();
    assert_eq!(parse_imf_fixdate(header), Some(secs), "{header}");
    // A known mtime with a fraction of a second: the exact text, fraction dropped.
    set_known_mtime(&on_disk(&hawkey, "app.js"));
    let res = get(&hawkey, "/static/app.js", &[]);
    assert_eq!(field(&res, "last-modified"), KNOWN_DATE);
}

#[test]
fn s_etag_is_strong_and_changes_with_the_file() {
    let hawkey = site();
    let first = get(&hawkey, "/static/a.css", &[]);
    let old = field(&first, "etag").to_string();
    assert_strong_etag(&old);
    assert_eq!(field(&get(&hawkey, "/static/a.css", &[]), "etag"), old);
    fs::write(on_disk(&hawkey, "a.css"), b"body { color: red }\n").unwrap();
    let res = get(&hawkey, "/static/a.css", &[("If-None-Match", &old)]);
    assert_eq!(res.status, 200, "an old ETag still matched: {}", res.head);
    assert_ne!(field(&res, "etag"), old);
    assert_eq!(res.body, b"body { color: red }\n");
}

#[test]
fn s_five_mib_binary_file_arrives_byte_exact() {
    let hawkey = site();
    let mut data = vec![0u8; 5 << 20];
    XorShift(0xb16).fill(&mut data);
    fs::write(on_disk(&hawkey, "big.bin"), &data).unwrap();
    let res = get(&hawkey, "/static/big.bin", &[]);
    assert_eq!(res.status, 200, "{}", res.head);
    assert_eq!(field(&res, "content-type"), "application/octet-stream");
    assert_eq!(field(&res, "content-length"), (5u64 << 20).to_string());
    assert!(res.body == data, "5 MiB body differs");
    // A range deep inside it: the seek lands on the right byte.
    let res = get(
        &hawkey,
        "/static/big.bin",
        &[("Range", "bytes=4194304-4194403")],
    );
    assert_eq!(res.status, 206, "{}", res.head);
    assert_eq!(res.body, &data[4_194_304..4_194_404]);
}

// ---------------------------------------------------------------- HEAD

#[test]
fn s_head_has_the_get_headers_and_no_body() {
    let hawkey = site();
    let mut s = hawkey.connect();
    for (name, _) in TYPED {
        let target = format!("/static/{name}");
        let got = keep_alive(&mut s, "GET", &target, &[]);
        let head = keep_alive(&mut s, "HEAD", &target, &[]);
        assert_eq!(head.status, 200, "{name}");
        assert_eq!(head.headers, got.headers, "{name}");
    }
    // Had a HEAD carried a body, these bytes would not start with a status line.
    let next = keep_alive(&mut s, "GET", "/static/data.json", &[]);
    assert_eq!(next.status, 200, "{}", next.head);
    assert_eq!(next.body, contents("data.json"));
}

#[test]
fn s_head_of_a_missing_file_is_404_without_body() {
    let hawkey = site();
    let mut s = hawkey.connect();
    let res = keep_alive(&mut s, "HEAD", "/static/missing.txt", &[]);
    assert_eq!(res.status, 404, "{}", res.head);
    // RFC 9110 §9.3.2: no content in a response to HEAD. The next answer must start
    // right after this head.
    send(
        &mut s,
        request_head("GET", "/static/a.css", &[], true).as_bytes(),
    );
    let next = read_head_bytes(&mut s).expect("an answer to the GET");
    assert!(
        next.starts_with(b"HTTP/1.1 200 "),
        "a body followed the HEAD answer: {:?}",
        String::from_utf8_lossy(&next)
    );
}

// ---------------------------------------------------------------- 304

#[test]
fn s_if_none_match_with_the_etag_is_304() {
    let hawkey = site();
    let etag = field(&get(&hawkey, "/static/a.css", &[]), "etag").to_string();
    let list = format!("\"nope\", {etag}, \"other\"");
    let mut s = hawkey.connect();
    for inm in [etag.as_str(), list.as_str(), "*"] {
        let res = keep_alive(&mut s, "GET", "/static/a.css", &[("If-None-Match", inm)]);
        assert_eq!(res.status, 304, "If-None-Match: {inm}: {}", res.head);
        assert_eq!(field(&res, "etag"), etag);
        assert!(res.header("last-modified").is_some(), "{}", res.head);
    }
    // No body followed any 304: the next answer starts with its own status line.
    let next = keep_alive(&mut s, "GET", "/static/app.js", &[]);
    assert_eq!((next.status, next.body), (200, contents("app.js")));
}

#[test]
fn s_if_modified_since_at_or_after_last_modified_is_304() {
    let hawkey = site();
    set_known_mtime(&on_disk(&hawkey, "a.css"));
    for since in [
        KNOWN_DATE,
        "Thu, 29 Feb 2024 12:34:57 GMT",
        "Sat, 01 Jan 2050 00:00:00 GMT",
    ] {
        let res = get(&hawkey, "/static/a.css", &[("If-Modified-Since", since)]);
        assert_eq!(res.status, 304, "If-Modified-Since: {since}: {}", res.head);
        assert!(res.body.is_empty());
    }
}

#[test]
fn s_if_modified_since_before_last_modified_is_200() {
    let hawkey = site();
    set_known_mtime(&on_disk(&hawkey, "a.css"));
    for since in [
        "Thu, 29 Feb 2024 12:34:55 GMT",
        "Mon, 01 Jan 2001 00:00:00 GMT",
    ] {
        let res = get(&hawkey, "/static/a.css", &[("If-Modified-Since", since)]);
        assert_eq!(res.status, 200, "If-Modified-Since: {since}: {}", res.head);
        assert_eq!(res.body, contents("a.css"));
    }
}

#[test]
fn s_absurd_if_modified_since_dates_are_ignored() {
    let hawkey = site();
    set_known_mtime(&on_disk(&hawkey, "a.css"));
    for since in [
        "Tue, 24 Nov 99999999999999 10:00:00 GMT",
        "Tue, 24 Nov 9223372036854775807 10:00:00 GMT",
        "Tue, 24 Nov -9223372036854775808 10:00:00 GMT",
        "Tue, 24 Nov 292277026596 10:00:00 GMT",
        "Tue, 99 Nov 2026 10:00:00 GMT",
        "Tue, 24 Nov 02026 10:00:00 GMT",
    ] {
        let res = get(&hawkey, "/static/a.css", &[("If-Modified-Since", since)]);
        assert_eq!(res.status, 200, "If-Modified-Since: {since}: {}", res.head);
        assert_eq!(res.body, contents("a.css"));
    }
}

/// [P]: offsets and lengths past 4 GiB (a sparse file of 4 GiB and a few bytes): a
/// range that starts there, and one longer than 2^32 bytes, are served in full.
#[test]
fn p_ranges_past_4_gib_are_served() {
    const FOUR_GIB: u64 = 1 << 32;
    let hawkey = site();
    let path = on_disk(&hawkey, "huge.bin");
    let file = File::create(&path).unwrap();
    file.set_len(FOUR_GIB).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&file, b"tail", FOUR_GIB).unwrap();
    drop(file);
    let last = FOUR_GIB + 3;
    let res = get(
        &hawkey,
        "/static/huge.bin",
        &[("Range", &format!("bytes={FOUR_GIB}-"))],
    );
    assert_eq!(res.status, 206, "{}", res.head);
    assert_eq!(
        field(&res, "content-range"),
        format!("bytes {FOUR_GIB}-{last}/{}", last + 1)
    );
    assert_eq!(res.body, b"tail");

    // 2^32 + 1 bytes from offset 3: the first MiB arrives (and more would follow).
    let mut s = hawkey.connect();
    let head = request_head(
        "GET",
        "/static/huge.bin",
        &[("Range", "bytes=3-4294967299")],
        true,
    );
    send(&mut s, head.as_bytes());
    let head = String::from_utf8(read_head_bytes(&mut s).unwrap()).unwrap();
    assert!(head.starts_with("HTTP/1.1 206 "), "{head}");
    assert!(head.contains("Content-Length: 4294967297\r\n"), "{head}");
    let mut first = vec![1u8; 1 << 20];
    s.read_exact(&mut first).unwrap();
    assert!(
        first.iter().all(|&b| b == 0),
        "a sparse file reads as zeros"
    );
}

#[test]
fn s_if_none_match_that_fails_wins_over_if_modified_since() {
    let hawkey = site();
    set_known_mtime(&on_disk(&hawkey, "a.css"));
    // RFC 9110 §13.1.3: If-Modified-Since is ignored when If-None-Match is present.
    let res = get(
        &hawkey,
        "/static/a.css",
        &[
            ("If-None-Match", "\"not-this-one\""),
            ("If-Modified-Since", KNOWN_DATE),
        ],
    );
    assert_eq!(res.status, 200, "{}", res.head);
    assert_eq!(res.body, contents("a.css"));
}

// ---------------------------------------------------------------- ranges

#[test]
fn s_single_ranges_are_206_with_content_range() {
    let hawkey = site();
    let data = range_bytes();
    let cases = [
        ("bytes=0-9", 0, 9),
        ("bytes=-10", 990, 999),
        ("bytes=10-", 10, 999),
        ("bytes=990-5000", 990, 999), // an end past the file is clamped
        ("bytes=5-5", 5, 5),
    ];
    let mut s = hawkey.connect();
    for (range, first, last) in cases {
        let res = keep_alive(&mut s, "GET", "/static/r.bin", &[("Range", range)]);
        assert_eq!(res.status, 206, "{range}: {}", res.head);
        assert_eq!(
            field(&res, "content-range"),
            format!("bytes {first}-{last}/1000"),
            "{range}"
        );
        let len = last - first + 1;
        assert_eq!(field(&res, "content-length"), len.to_string(), "{range}");
        assert_eq!(res.body, &data[first..=last], "{range}");
        assert_eq!(field(&res, "content-type"), "application/octet-stream");
    }
}

#[test]
fn s_range_starting_at_the_size_is_416() {
    let hawkey = site();
    let mut s = hawkey.connect();
    let res = keep_alive(&mut s, "GET", "/static/r.bin", &[("Range", "bytes=1000-")]);
    assert_eq!(res.status, 416, "{}", res.head);
    assert_eq!(field(&res, "content-range"), "bytes */1000");
    assert!(!res.body.windows(10).any(|w| range_bytes().starts_with(w)));
    let next = keep_alive(&mut s, "GET", "/static/a.css", &[]);
    assert_eq!((next.status, next.body), (200, contents("a.css")));
}

#[test]
fn s_several_ranges_get_the_whole_file() {
    let hawkey = site();
    let res = get(&hawkey, "/static/r.bin", &[("Range", "bytes=0-1,5-6")]);
    assert_eq!(res.status, 200, "{}", res.head);
    assert!(res.header("content-range").is_none(), "{}", res.head);
    assert_eq!(res.body, range_bytes());
}

#[test]
fn s_if_range_with_a_stale_validator_gets_the_whole_file() {
    let hawkey = site();
    set_known_mtime(&on_disk(&hawkey, "r.bin"));
    let etag = field(&get(&hawkey, "/static/r.bin", &[]), "etag").to_string();
    let range = ("Range", "bytes=0-9");
    // The current validators: the range applies.
    for fresh in [etag.as_str(), KNOWN_DATE] {
        let res = get(&hawkey, "/static/r.bin", &[range, ("If-Range", fresh)]);
        assert_eq!(res.status, 206, "If-Range: {fresh}: {}", res.head);
        assert_eq!(res.body, &range_bytes()[..10]);
    }
    // Stale ones: the whole, current file.
    for stale in ["\"stale-etag\"", "Mon, 01 Jan 2001 00:00:00 GMT"] {
        let res = get(&hawkey, "/static/r.bin", &[range, ("If-Range", stale)]);
        assert_eq!(res.status, 200, "If-Range: {stale}: {}", res.head);
        assert!(res.header("content-range").is_none());
        assert_eq!(res.body, range_bytes());
    }
}

// ---------------------------------------------------------------- directories

#[test]
fn s_directory_serves_its_index_html() {
    let hawkey = site();
    let res = get(&hawkey, "/static/", &[]);
    assert_eq!(res.status, 200, "{}", res.head);
    assert_eq!(field(&res, "content-type"), "text/html; charset=utf-8");
    assert_eq!(res.body, contents("index.html"));
    let res = get(&hawkey, "/static/sub/", &[]);
    assert_eq!(res.status, 200, "{}", res.head);
    assert_eq!(field(&res, "content-type"), "text/html; charset=utf-8");
    assert_eq!(res.body, b"sub index\n");
}

#[test]
fn s_directory_without_index_html_is_404() {
    let hawkey = site();
    for target in ["/static/empty/", "/static/empty"] {
        let res = get(&hawkey, target, &[]);
        assert_eq!(res.status, 404, "{target}: {}", res.head);
    }
}

#[test]
fn s_prefix_without_slash_and_no_route_is_404() {
    let hawkey = site();
    let res = get(&hawkey, "/static", &[]);
    assert_eq!(res.status, 404, "{}", res.head);
    assert_ne!(res.body, contents("index.html"));
}

#[test]
fn s_prefix_without_slash_goes_to_a_matching_route() {
    let backend = Backend::fixed("from the backend");
    let route = json!([{ "pathRegExp": "^/static", "authority": [backend.authority()] }]);
    let hawkey = site_with(json!({ "proxy": route }));
    let res = get(&hawkey, "/static", &[]);
    assert_eq!((res.status, res.text().as_str()), (200, "from the backend"));
    assert_eq!(backend.requests()[0].target, "/static");
    // Under the prefix the static files come first, though the route matches too [R1].
    let res = get(&hawkey, "/static/a.css", &[]);
    assert_eq!((res.status, res.body), (200, contents("a.css")));
    assert_eq!(backend.requests().len(), 1, "{:#?}", backend.requests());
}

// ---------------------------------------------------------------- no escape

/// `target` is 404 and its answer holds neither secret.
fn assert_no_escape(hawkey: &Hawkey, target: &str) {
    let res = get(hawkey, target, &[]);
    assert_eq!(res.status, 404, "{target}: {}", res.head);
    for secret in [SECRET, OUTSIDE, b"root:".as_slice()] {
        let leaked = res.body.windows(secret.len()).any(|w| w == secret);
        assert!(
            !leaked,
            "{target} leaked {:?}",
            String::from_utf8_lossy(secret)
        );
    }
}

#[test]
fn s_dot_dot_segments_never_escape() {
    let hawkey = site();
    for target in [
        "/static/../secret.txt",
        "/static/sub/../../secret.txt",
        "/static/../../outside.txt",
        "/static/./../secret.txt",
    ] {
        assert_no_escape(&hawkey, target);
    }
}

#[test]
fn s_percent_encoded_dots_never_escape() {
    let hawkey = site();
    for target in [
        "/static/%2e%2e/secret.txt",
        "/static/%2E%2E/secret.txt",
        "/static/.%2e/secret.txt",
        "/static/%2e./secret.txt",
        "/static/sub/%2e%2e/%2e%2e/secret.txt",
        "/static/%2e%2e/%2e%2e/outside.txt",
    ] {
        assert_no_escape(&hawkey, target);
    }
}

#[test]
fn s_encoded_separators_never_escape() {
    let hawkey = site();
    for target in [
        "/static/..%2fsecret.txt",
        "/static/..%2Fsecret.txt",
        "/static/..%5csecret.txt",
        "/static/%2e%2e%2fsecret.txt",
        "/static/%2e%2e%5csecret.txt",
        "/static/%2e%2e%2f%2e%2e%2foutside.txt",
    ] {
        assert_no_escape(&hawkey, target);
    }
}

#[test]
fn s_nul_and_double_slash_never_escape() {
    let hawkey = site();
    for target in [
        "/static/a%00b",
        "/static/a.css%00.png", // a C-style cut at the NUL would serve a.css
        "/static//etc/passwd",
        "/static///etc/passwd",
    ] {
        assert_no_escape(&hawkey, target);
    }
}

#[test]
fn s_symlinks_that_point_outside_are_404() {
    let hawkey = site();
    for target in [
        "/static/link-up.txt",
        "/static/link-out.txt",
        "/static/link-dir/secret.txt",
    ] {
        assert_no_escape(&hawkey, target);
    }
}

#[test]
fn s_symlinks_that_stay_inside_are_followed() {
    let hawkey = site();
    let res = get(&hawkey, "/static/link-in.css", &[]);
    assert_eq!(res.status, 200, "{}", res.head);
    assert_eq!(res.body, contents("a.css"));
    let res = get(&hawkey, "/static/link-sub/page.txt", &[]);
    assert_eq!((res.status, res.body), (200, b"sub page\n".to_vec()));
    let res = get(&hawkey, "/static/link-sub/", &[]);
    assert_eq!((res.status, res.body), (200, b"sub index\n".to_vec()));
}

// ---------------------------------------------------------------- methods

#[test]
fn s_other_methods_are_405_with_allow_and_touch_nothing() {
    let hawkey = site();
    for method in ["POST", "PUT", "DELETE"] {
        for target in ["/static/a.css", "/static/", "/static/missing"] {
            let mut s = hawkey.connect();
            let head = request_head(method, target, &[("Content-Length", "5")], true);
            send(&mut s, format!("{head}XXXXX").as_bytes());
            let res = read_response(&mut s, false);
            assert_eq!(res.status, 405, "{method} {target}: {}", res.head);
            assert_eq!(field(&res, "allow"), "GET, HEAD", "{method} {target}");
        }
    }
    assert_eq!(
        fs::read(on_disk(&hawkey, "a.css")).unwrap(),
        contents("a.css")
    );
    assert!(!on_disk(&hawkey, "missing").exists());
}

#[test]
fn s_post_body_is_not_taken_for_the_next_request() {
    let hawkey = site();
    let mut s = hawkey.connect();
    // A body that is itself a request: if hawkey read it as one, an app.js answer
    // would come before the data.json one.
    let smuggled = request_head("GET", "/static/app.js", &[], false);
    let length = smuggled.len().to_string();
    let post = request_head(
        "POST",
        "/static/a.css",
        &[("Content-Length", &length)],
        false,
    );
    send(&mut s, format!("{post}{smuggled}").as_bytes());
    let res = read_response(&mut s, false);
    assert_eq!(res.status, 405, "{}", res.head);
    send(
        &mut s,
        request_head("GET", "/static/data.json", &[], true).as_bytes(),
    );
    let next = read_response(&mut s, false);
    assert_eq!(next.status, 200, "{}", next.head);
    assert_eq!(next.body, contents("data.json"));
    assert!(is_closed(&mut s), "a third answer followed");
}

// ---------------------------------------------------------------- targets and connections

#[test]
fn s_query_string_is_ignored_for_the_lookup() {
    let hawkey = site();
    for target in ["/static/a.css?v=3", "/static/a.css?x=../../secret.txt"] {
        let res = get(&hawkey, target, &[]);
        assert_eq!(res.status, 200, "{target}: {}", res.head);
        assert_eq!(res.body, contents("a.css"), "{target}");
    }
    let res = get(&hawkey, "/static/?page=2", &[]);
    assert_eq!((res.status, res.body), (200, contents("index.html")));
}

#[test]
fn s_keep_alive_serves_several_files_on_one_connection() {
    let hawkey = site();
    let mut s = hawkey.connect();
    for (name, _) in TYPED {
        let res = keep_alive(&mut s, "GET", &format!("/static/{name}"), &[]);
        assert_eq!((res.status, &res.body), (200, &contents(name)), "{name}");
    }
    let res = keep_alive(&mut s, "GET", "/static/missing", &[]);
    assert_eq!(res.status, 404, "{}", res.head);
    let res = keep_alive(&mut s, "GET", "/static/r.bin", &[("Range", "bytes=-3")]);
    assert_eq!((res.status, res.body), (206, range_bytes()[997..].to_vec()));
    // Pipelined: three requests in one write, three answers in order [R8].
    let mut burst = String::new();
    for name in ["a.css", "app.js", "sub/page.txt"] {
        burst += &request_head("GET", &format!("/static/{name}"), &[], false);
    }
    send(&mut s, burst.as_bytes());
    for body in [
        contents("a.css"),
        contents("app.js"),
        b"sub page\n".to_vec(),
    ] {
        let res = read_response(&mut s, false);
        assert_eq!((res.status, res.body), (200, body));
    }
}

/// Copies the directory tree `from` to `to`.
fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[test]
fn s_shipped_config_serves_public_static_index() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = TempDir::new();
    let shipped = fs::read_to_string(repo.join("server-config.json")).unwrap();
    let mut config: serde_json::Value = serde_json::from_str(&shipped).unwrap();
    config["port"] = 0.into();
    config["host"] = "127.0.0.1".into();
    let root = config["serverRoot"].as_str().unwrap().to_string();
    let static_dir = config["staticDir"].as_str().unwrap().to_string();
    copy_tree(&repo.join(&root), &dir.path().join(&root));
    let index = fs::read(repo.join(&root).join(&static_dir).join("index.html")).unwrap();
    let path = dir.write("server-config.json", config.to_string().as_bytes());
    let hawkey = Hawkey::start_file(dir, &path);
    assert_eq!(static_dir, "static");
    let res = get(&hawkey, "/static/", &[]);
    assert_eq!(res.status, 200, "{}", res.head);
    assert_eq!(field(&res, "content-type"), "text/html; charset=utf-8");
    assert_eq!(res.body, index);
}
