//! Request smuggling, after sozu's `e2e/src/tests/h1_security_tests.rs`: one test per
//! attack. Each sends a request whose framing a lenient parser could read differently,
//! with a second request (`GET /smuggled`) hidden where that misreading would find it.
//! Each then checks that the backend never saw `/smuggled` (neither as a request nor
//! anywhere in the bytes it received), that the client got the status the SPEC's [E]
//! table gives and nothing after it, and that a clean request on a new connection
//! still gets 200.
//!
//! Two "attacks" are valid HTTP and must be accepted as such, with the hidden request
//! delivered as body data, never as a request: a tab after the colon
//! (`Transfer-Encoding:\tchunked`) and whitespace before a chunk extension (`5 ;x`).

mod common;
use common::*;

use std::io::{Read, Write};
use std::net::Shutdown;
use std::sync::{Arc, Mutex};

/// The request a successful attack would make the backend see.
const SMUGGLED: &str = "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n";

/// A reader that copies every byte it reads into `log`.
struct Tee<'a, R> {
    inner: &'a mut R,
    log: &'a Mutex<Vec<u8>>,
}

impl<R: Read> Read for Tee<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.log.lock().unwrap().extend_from_slice(&buf[..n]);
        Ok(n)
    }
}

/// A backend answering `200 fine` that records its requests and every byte it
/// received, so a test can tell whether smuggled bytes got through in any form.
struct Recorder {
    backend: Backend,
    wire: Arc<Mutex<Vec<u8>>>,
}

impl Recorder {
    fn start() -> Recorder {
        let wire = Arc::new(Mutex::new(Vec::new()));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (log, recorded) = (Arc::clone(&wire), Arc::clone(&requests));
        let mut backend = Backend::raw(move |mut s, conn| {
            let mut reader = s.try_clone().unwrap();
            let mut tee = Tee {
                inner: &mut reader,
                log: &log,
            };
            while let Some(req) = read_request(&mut tee, conn) {
                recorded.lock().unwrap().push(req);
                if s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nfine")
                    .is_err()
                {
                    break;
                }
            }
            let _ = s.shutdown(Shutdown::Both);
        });
        backend.requests = requests;
        Recorder { backend, wire }
    }

    fn wire(&self) -> String {
        String::from_utf8_lossy(&self.wire.lock().unwrap()).into_owned()
    }

    /// The backend never saw the smuggled request: not as a request, and not in the
    /// bytes it received (hawkey refused before forwarding anything of the body).
    fn assert_never_saw_smuggled(&self) {
        let targets: Vec<String> = self
            .backend
            .requests()
            .into_iter()
            .map(|r| r.target)
            .collect();
        assert!(
            !targets.iter().any(|t| t.contains("smuggled")),
            "the backend got {targets:?}"
        );
        let wire = self.wire();
        assert!(
            !wire.contains("smuggled"),
            "smuggled bytes reached the backend: {wire:?}"
        );
    }
}

/// Starts hawkey routing `^/ok` to a recording backend.
fn start() -> (Hawkey, Recorder) {
    let recorder = Recorder::start();
    let hawkey = Hawkey::start(route_config("^/ok", &recorder.backend));
    (hawkey, recorder)
}

/// Sends `head` (CRLFs written out), then `body`; expects `status`, then a close with
/// nothing after the answer; then checks the backend and that hawkey still serves.
fn assert_refused(head: &str, body: &str, status: u16) {
    let (mut hawkey, recorder) = start();
    let mut s = hawkey.connect();
    send(&mut s, head.as_bytes());
    send(&mut s, body.as_bytes());
    let res = read_response(&mut s, false);
    assert_eq!(res.status, status, "{}", res.head);
    assert_eq!(
        res.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    let mut after = Vec::new();
    let read = s.read_to_end(&mut after);
    assert!(
        matches!(read, Ok(0)),
        "expected a close after the {status}, got {read:?} {:?}",
        String::from_utf8_lossy(&after)
    );
    recorder.assert_never_saw_smuggled();
    assert_clean_request_still_works(&mut hawkey, &recorder);
}

/// A clean request on a new connection gets 200 from the backend.
fn assert_clean_request_still_works(hawkey: &mut Hawkey, recorder: &Recorder) {
    assert!(hawkey.alive(), "hawkey exited: {}", hawkey.stderr());
    let before = recorder.backend.requests().len();
    let res = hawkey.get("/ok/clean");
    assert_eq!(res.status, 200, "{}", res.head);
    assert_eq!(res.body, b"fine");
    let requests = recorder.backend.requests();
    assert_eq!(requests.len(), before + 1);
    assert_eq!(requests[before].target, "/ok/clean");
}

/// A chunked body holding `SMUGGLED` as its one chunk of data.
fn smuggled_as_chunk() -> String {
    format!("{:x}\r\n{SMUGGLED}\r\n0\r\n\r\n", SMUGGLED.len())
}

// CL.TE / TE.CL: RFC 9112 §6.1 and §6.3 (rule 3): a message with both
// Transfer-Encoding and Content-Length "ought to be handled as an error"; an
// intermediary that honours one while the backend honours the other splits the
// stream differently. hawkey answers 400 and closes.
#[test]
fn s_content_length_and_transfer_encoding_is_400() {
    assert_refused(
        "POST /ok HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
        &format!("0\r\n\r\n{SMUGGLED}"),
        400,
    );
}

#[test]
fn s_transfer_encoding_then_content_length_is_400() {
    let body = format!("0\r\n\r\n{SMUGGLED}");
    assert_refused(
        &format!(
            "POST /ok HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: {}\r\n\r\n",
            body.len()
        ),
        &body,
        400,
    );
}

// TE obfuscation `chunked, identity`: RFC 9112 §6.3 (rule 4): when chunked is not the
// final coding of a request, "the server MUST respond with the 400 (Bad Request)
// status code and then close the connection". A parser that looks for the word
// `chunked` anywhere reads a chunked body; one that takes the last coding does not.
#[test]
fn s_te_chunked_then_identity_is_400() {
    assert_refused(
        "POST /ok HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
        &format!("0\r\n\r\n{SMUGGLED}"),
        400,
    );
}

// TE obfuscation with a space before the colon: RFC 9112 §5.1: "No whitespace is
// allowed between the field name and colon ... A server MUST reject, with a response
// status code of 400 (Bad Request), any received request message that contains
// whitespace between a header field name and colon." A lenient parser would find
// `Transfer-Encoding` where a strict one sees an unknown field.
#[test]
fn s_te_with_space_before_colon_is_400() {
    assert_refused(
        "POST /ok HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding : chunked\r\n\r\n",
        &format!("0\r\n\r\n{SMUGGLED}"),
        400,
    );
}

// TE obfuscation `xchunked`: an unknown coding that a substring match would take for
// chunked. RFC 9112 §6.3 (rule 4): chunked is not the final coding -> 400 and close.
#[test]
fn s_te_xchunked_is_400() {
    assert_refused(
        "POST /ok HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n",
        &format!("0\r\n\r\n{SMUGGLED}"),
        400,
    );
}

// TE in two fields, `chunked` then `identity`: RFC 9110 §5.3: several field lines
// combine into one list, `chunked, identity`; a parser that reads only the first
// field sees chunked. RFC 9112 §6.3 (rule 4): chunked is not final -> 400.
#[test]
fn s_te_in_two_fields_chunked_first_is_400() {
    assert_refused(
        "POST /ok HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n",
        &format!("0\r\n\r\n{SMUGGLED}"),
        400,
    );
}

// TE in two fields, `identity` then `chunked`: combined, `identity, chunked`; a parser
// that reads only the first field sees no chunked body at all. RFC 9112 §6.1: a
// coding hawkey does not implement before chunked; the SPEC's [E] table: 501, close.
#[test]
fn s_te_in_two_fields_chunked_last_is_501() {
    assert_refused(
        "POST /ok HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: identity\r\nTransfer-Encoding: chunked\r\n\r\n",
        &format!("0\r\n\r\n{SMUGGLED}"),
        501,
    );
}

// TE `chunked` twice: RFC 9112 §6.1: "A sender MUST NOT apply the chunked transfer
// coding more than once to a message body". Decoding once or twice splits the stream
// differently. SPEC [E]: 400.
#[test]
fn s_te_chunked_twice_is_400() {
    assert_refused(
        "POST /ok HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
        &format!("0\r\n\r\n{SMUGGLED}"),
        400,
    );
}

// A tab after the colon is NOT an attack: RFC 9112 §5.1: `field-line = field-name ":"
// OWS field-value OWS`, and RFC 9110 §5.6.3: `OWS = *( SP / HTAB )`. So
// `Transfer-Encoding:\tchunked` is chunked. A proxy that ignored it would take the
// chunk below for the next request; hawkey must decode it as the body.
#[test]
fn s_te_with_tab_after_colon_is_valid_chunked() {
    let (mut hawkey, recorder) = start();
    let mut s = hawkey.connect();
    send(
        &mut s,
        b"POST /ok HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:\tchunked\r\nConnection: close\r\n\r\n",
    );
    send(&mut s, smuggled_as_chunk().as_bytes());
    let res = read_response(&mut s, false);
    assert_eq!(res.status, 200, "{}", res.head);
    let mut after = Vec::new();
    s.read_to_end(&mut after).unwrap();
    assert!(after.is_empty(), "a second answer: {after:?}");
    let requests = recorder.backend.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert_eq!(requests[0].target, "/ok");
    assert_eq!(
        requests[0].body,
        SMUGGLED.as_bytes(),
        "the body is the data"
    );
    assert_clean_request_still_works(&mut hawkey, &recorder);
}

// Repeated Content-Length: RFC 9112 §6.3 (rule 5): "If a message is received without
// Transfer-Encoding and with an invalid Content-Length header field, then the message
// framing is invalid ... the server MUST respond with a 400 (Bad Request) status code
// and then close the connection." Two values that differ are invalid.
#[test]
fn s_repeated_content_length_is_400() {
    assert_refused(
        &format!(
            "POST /ok HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: {}\r\n\r\n",
            SMUGGLED.len()
        ),
        SMUGGLED,
        400,
    );
}

// Repeated, equal Content-Length: RFC 9110 §8.6 lets a recipient merge identical
// values, but a backend that does not would still frame differently; SPEC [E] says
// 400 even if equal.
#[test]
fn s_repeated_equal_content_length_is_400() {
    let n = SMUGGLED.len();
    assert_refused(
        &format!(
            "POST /ok HTTP/1.1\r\nHost: x\r\nContent-Length: {n}\r\nContent-Length: {n}\r\n\r\n"
        ),
        SMUGGLED,
        400,
    );
}

// Content-Length as a list in one field: RFC 9110 §8.6 `Content-Length = 1*DIGIT`;
// `0, 34` is not a number, and parsers disagree on which item counts. 400.
#[test]
fn s_content_length_list_is_400() {
    assert_refused(
        &format!(
            "POST /ok HTTP/1.1\r\nHost: x\r\nContent-Length: 0, {}\r\n\r\n",
            SMUGGLED.len()
        ),
        SMUGGLED,
        400,
    );
}

// `Content-Length: +5`: RFC 9110 §8.6 `Content-Length = 1*DIGIT`; a sign is not a
// digit, though `strtol`-style parsers accept it. RFC 9112 §6.3 (rule 5): 400.
#[test]
fn s_content_length_with_plus_sign_is_400() {
    assert_refused(
        "POST /ok HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\n",
        &format!("hello{SMUGGLED}"),
        400,
    );
}

// Bare LF: RFC 9112 §2.2: a recipient MAY recognise a bare LF as a line terminator.
// hawkey does not: a backend that disagrees sees `Content-Length` inside another
// field's value, or the other way round. The head below hides a Content-Length after
// a bare LF.
#[test]
fn s_bare_lf_in_head_is_400() {
    assert_refused(
        &format!(
            "POST /ok HTTP/1.1\r\nHost: x\r\nX-Pad: a\nContent-Length: {}\r\n\r\n",
            SMUGGLED.len()
        ),
        SMUGGLED,
        400,
    );
}

// obs-fold: RFC 9112 §5.2: "A server that receives an obs-fold in a request message
// ... MUST either reject the message by sending a 400 (Bad Request) ... or replace
// each received obs-fold with one or more SP octets". hawkey rejects: a backend that
// reads the continuation as its own line would see `Content-Length`.
#[test]
fn s_obs_fold_is_400() {
    assert_refused(
        &format!(
            "POST /ok HTTP/1.1\r\nHost: x\r\nX-Pad: a\r\n Content-Length: {}\r\n\r\n",
            SMUGGLED.len()
        ),
        SMUGGLED,
        400,
    );
}

// obs-fold continuing Transfer-Encoding: `Transfer-Encoding: identity` folded onto
// ` chunked` reads as `identity chunked` to one parser and chunked to another.
// RFC 9112 §5.2: 400.
#[test]
fn s_obs_fold_in_transfer_encoding_is_400() {
    assert_refused(
        "POST /ok HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: identity\r\n chunked\r\n\r\n",
        &format!("0\r\n\r\n{SMUGGLED}"),
        400,
    );
}

// NUL in Transfer-Encoding: RFC 9110 §5.5: "a recipient of CR, LF, or NUL within a
// field value MUST either reject the message or replace each of those characters
// with SP". A C-string parser stops at the NUL and reads `chunked`. 400.
#[test]
fn s_nul_in_transfer_encoding_is_400() {
    assert_refused(
        "POST /ok HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\0x\r\n\r\n",
        &format!("0\r\n\r\n{SMUGGLED}"),
        400,
    );
}

// Chunk size `0x24`: RFC 9112 §7.1 `chunk-size = 1*HEXDIG`; no `0x` prefix. A parser
// that stops at the `x` reads the last chunk (size 0) and takes what follows for the
// next request. hawkey: 400 and close (SPEC [R3]: "from the client, 400 and close").
#[test]
fn s_chunk_size_with_0x_prefix_is_400() {
    assert_refused(
        "POST /ok HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
        &format!("0x{:x}\r\n{SMUGGLED}\r\n0\r\n\r\n", SMUGGLED.len()),
        400,
    );
}

// Chunk size overflow: RFC 9112 §7.1: "recipients MUST anticipate potentially large
// hexadecimal numerals and prevent parsing errors due to integer conversion overflows
// or precision loss due to integer representation". `1` followed by sixteen hex
// digits wraps to the low 64 bits in a careless parser.
#[test]
fn s_chunk_size_overflow_is_400() {
    assert_refused(
        "POST /ok HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
        &format!("1{:016x}\r\n{SMUGGLED}\r\n0\r\n\r\n", SMUGGLED.len()),
        400,
    );
}

// Negative chunk size: RFC 9112 §7.1 `chunk-size = 1*HEXDIG`; `-1` is not hex, and
// signed parsers differ on it. 400.
#[test]
fn s_negative_chunk_size_is_400() {
    assert_refused(
        "POST /ok HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
        &format!("-1\r\n{SMUGGLED}\r\n0\r\n\r\n"),
        400,
    );
}

// LF-only chunk line terminators: RFC 9112 §7.1 `chunk = chunk-size [ chunk-ext ]
// CRLF chunk-data CRLF`. A parser accepting bare LF and one that does not disagree on
// where the chunk starts and ends. 400.
#[test]
fn s_lf_only_chunk_terminators_are_400() {
    assert_refused(
        "POST /ok HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
        &format!("{:x}\n{SMUGGLED}\n0\n\n", SMUGGLED.len()),
        400,
    );
}

// Chunk data longer than its size: RFC 9112 §7.1: chunk-data is followed by CRLF. A
// parser that skips to the next CRLF instead of checking for it right after the
// declared size reads the excess as data; one that checks sees the next request.
#[test]
fn s_chunk_data_longer_than_its_size_is_400() {
    assert_refused(
        "POST /ok HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
        &format!("2\r\nab{SMUGGLED}\r\n0\r\n\r\n"),
        400,
    );
}

// Whitespace before a chunk extension is NOT an attack: RFC 9112 §7.1.1:
// `chunk-ext = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )`, and
// BWS is optional whitespace. So `24 ;x=1` is a chunk of 0x24 bytes. hawkey must
// decode it as data (and drop the extension: SPEC [R3], chunks are re-encoded).
#[test]
fn s_whitespace_before_chunk_extension_is_valid() {
    let (mut hawkey, recorder) = start();
    let mut s = hawkey.connect();
    send(
        &mut s,
        b"POST /ok HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
    );
    let body = format!("{:x} ;x=1\r\n{SMUGGLED}\r\n0\r\n\r\n", SMUGGLED.len());
    send(&mut s, body.as_bytes());
    let res = read_response(&mut s, false);
    assert_eq!(res.status, 200, "{}", res.head);
    let mut after = Vec::new();
    s.read_to_end(&mut after).unwrap();
    assert!(after.is_empty(), "a second answer: {after:?}");
    let requests = recorder.backend.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert_eq!(requests[0].target, "/ok");
    assert_eq!(
        requests[0].body,
        SMUGGLED.as_bytes(),
        "the body is the data"
    );
    let wire = recorder.wire();
    assert!(
        !wire.contains(";x=1"),
        "the extension was passed on: {wire:?}"
    );
    assert_clean_request_still_works(&mut hawkey, &recorder);
}
