//! A backend's answer, sans-I/O [R3][R5]: the bytes a backend sends become interim
//! heads, the final head with its body's framing, body bytes and the end (with the
//! trailers of a chunked body). Faults are values: a bad head or chunk, more than
//! `MAX_INTERIM` interim heads, a close before the end. After the end it says
//! whether the connection may go back to the pool. Like `front/h1.rs`, it never
//! touches a socket: its driver reads into `input_space`.
//!
//! Not here: sending the request (the exchange writes it), timeouts (the exchange
//! keeps `upstreamMs`), and the bytes after a 101 (the tunnel takes the input).

use std::time::Duration;

use crate::body::{BodyLength, BodyReader, Piece, response_body_length};
use crate::head::{Fields, ResponseHead, keep_alive_hint, list_items, parse_response};
use crate::io::Input;

/// Most interim heads a backend may send before its final one [R3]: a backend that
/// sends a 103 every few seconds must not hold an exchange without limit.
pub const MAX_INTERIM: usize = 16;
/// The input buffer's size in a body: body bytes come in pieces of at most this.
const BODY_BUF: usize = 32 * 1024;

/// What the backend's bytes say next.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer<'a> {
    /// Nothing more until more bytes come.
    NeedData,
    /// An interim (1xx) head; more heads follow.
    Interim(ResponseHead),
    /// The final head (or the 101 to an upgrade), and how its body is framed.
    Head(ResponseHead, BodyLength),
    /// Body bytes, at most the room given.
    Data(&'a [u8]),
    /// Body bytes wait, but the taker has no room.
    Full,
    /// The body is complete; a chunked body's trailers (filtered, re-serialised).
    End(&'a [u8]),
    /// The answer is broken or cut short. `byte_seen`: some of it had come, so a
    /// request on a reused connection is not retried [R5].
    Failed { why: &'static str, byte_seen: bool },
}

#[derive(Debug)]
enum State {
    Head,
    Body(BodyReader),
    /// The answer is complete (or a 101 handed the connection over).
    Done,
    Failed,
}

/// Reads one answer from one backend connection.
#[derive(Debug)]
pub struct AnswerReader {
    input: Input,
    state: State,
    /// The request was a HEAD: the answer has no body, whatever its fields say.
    head_request: bool,
    /// The request asked for an upgrade: a 101 is its final head [R7].
    upgrade: bool,
    /// The largest head accepted (`maxHeaderBytes`).
    max_head: usize,
    /// Interim heads so far.
    interim: usize,
    /// Trailers of the chunked body just ended, for `Answer::End`.
    trailers: Vec<u8>,
    /// The final head lets the connection be reused (HTTP/1.1 without `close`, or
    /// HTTP/1.0 with `keep-alive`, and a body that does not end with the close).
    persistent: bool,
    /// The backend's `Keep-Alive: timeout=N`.
    hint: Option<Duration>,
}

impl AnswerReader {
    pub fn new(head_request: bool, upgrade: bool, max_head: usize) -> AnswerReader {
        AnswerReader {
            input: Input::default(),
            state: State::Head,
            head_request,
            upgrade,
            max_head,
            interim: 0,
            trailers: Vec::new(),
            persistent: false,
            hint: None,
        }
    }

    /// Where to read the backend's next bytes; empty when nothing more is wanted.
    pub fn input_space(&mut self) -> &mut [u8] {
        let cap = match self.state {
            State::Head => self.max_head,
            State::Body(_) => BODY_BUF,
            State::Done | State::Failed => 0,
        };
        self.input.space(cap)
    }

    pub fn received(&mut self, n: usize) {
        self.input.received(n);
    }

    pub fn received_eof(&mut self) {
        self.input.eof = true;
    }

    /// Whether the backend should be read now.
    pub fn wants_read(&self) -> bool {
        let cap = match self.state {
            State::Head => self.max_head,
            State::Body(_) => BODY_BUF,
            State::Done | State::Failed => return false,
        };
        !self.input.eof && self.input.len() < cap
    }

    /// The bytes received and not taken (after a 101: the new protocol's first).
    pub fn take_input(&mut self) -> Vec<u8> {
        let rest = self.input.data().to_vec();
        self.input.consume(rest.len());
        rest
    }

    /// Interim heads received so far (a retry is safe only before any).
    pub fn interim_count(&self) -> usize {
        self.interim
    }

    fn fail(&mut self, why: &'static str) -> Answer<'static> {
        self.state = State::Failed;
        Answer::Failed {
            why,
            byte_seen: true,
        }
    }

    /// What the backend's bytes say next. `room`: how many body bytes the taker can
    /// accept now.
    pub fn next(&mut self, room: usize) -> Answer<'_> {
        match &mut self.state {
            State::Head => self.next_head(),
            State::Done => Answer::NeedData,
            State::Failed => Answer::Failed {
                why: "the answer already failed",
                byte_seen: true,
            },
            State::Body(body) => match body.next(&mut self.input, room) {
                Piece::Data { piece, used } => Answer::Data(self.input.take(piece, used)),
                Piece::End(trailers) => {
                    self.trailers = trailers;
                    self.state = State::Done;
                    Answer::End(&self.trailers)
                }
                Piece::NeedData => Answer::NeedData,
                Piece::Full => Answer::Full,
                Piece::Cut => self.fail("closed before the end of the body"),
                Piece::Bad(e) => self.fail(e.0),
            },
        }
    }

    fn next_head(&mut self) -> Answer<'_> {
        let parsed = match parse_response(self.input.data()) {
            Err(why) => return self.fail(why),
            Ok(None) if self.input.len() >= self.max_head => {
                return self.fail("response head too large");
            }
            Ok(None) if self.input.eof => {
                let byte_seen = !self.input.is_empty();
                self.state = State::Failed;
                return Answer::Failed {
                    why: "closed before a response",
                    byte_seen,
                };
            }
            Ok(None) => return Answer::NeedData,
            Ok(Some(parsed)) => parsed,
        };
        let (res, len) = parsed;
        self.input.consume(len);
        if res.status == 101 && self.upgrade {
            self.state = State::Done; // the tunnel takes the bytes that follow
            return Answer::Head(res, BodyLength::Empty);
        }
        if res.status == 101 {
            return self.fail("101 to a request that asked no upgrade");
        }
        if res.status < 200 {
            self.interim += 1;
            if self.interim > MAX_INTERIM {
                return self.fail("more than 16 interim responses");
            }
            return Answer::Interim(res);
        }
        let length = match response_body_length(&res, self.head_request) {
            Ok(length) => length,
            Err(why) => return self.fail(why),
        };
        self.persistent = length != BodyLength::UntilClose
            && match res.minor {
                1 => !res.has_token("connection", "close"),
                _ => res.has_token("connection", "keep-alive"),
            };
        self.hint = res.first("keep-alive").and_then(keep_alive_hint);
        let named = res.values("connection").flat_map(list_items);
        self.state = State::Body(BodyReader::dropping(length, named));
        Answer::Head(res, length)
    }

    /// After the end: whether the connection may go back to the pool [R5] (the
    /// backend allows it and sent nothing past the answer), and its keep-alive hint.
    pub fn reusable(&self) -> Option<Option<Duration>> {
        let clean = matches!(self.state, State::Done) && self.input.is_empty() && !self.input.eof;
        (clean && self.persistent).then_some(self.hint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(reader: &mut AnswerReader, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let space = reader.input_space();
            assert!(!space.is_empty(), "input full");
            let n = space.len().min(bytes.len());
            space[..n].copy_from_slice(&bytes[..n]);
            reader.received(n);
            bytes = &bytes[n..];
        }
    }

    /// The answers as text until more data is needed or the answer ended or failed.
    fn drain(reader: &mut AnswerReader, room: usize, out: &mut Vec<String>) {
        loop {
            let text = match reader.next(room) {
                Answer::NeedData | Answer::Full => return,
                Answer::Interim(h) => format!("interim {}", h.status),
                Answer::Head(h, len) => format!("head {} {len:?}", h.status),
                Answer::Data(d) => format!("data {}", String::from_utf8_lossy(d)),
                Answer::End(t) => format!("end {}", String::from_utf8_lossy(t)),
                Answer::Failed { why, byte_seen } => format!("failed {why} {byte_seen}"),
            };
            let stop = text.starts_with("end") || text.starts_with("failed");
            match (out.last_mut(), text.strip_prefix("data ")) {
                (Some(last), Some(more)) if last.starts_with("data ") => last.push_str(more),
                _ => out.push(text),
            }
            if stop {
                return;
            }
        }
    }

    /// `wire` fed in two pieces cut at every offset, with small and large room.
    fn read_cut(wire: &[u8], eof: bool, head_request: bool) -> Vec<String> {
        let mut first: Option<Vec<String>> = None;
        for cut in 0..=wire.len() {
            for room in [1, 7, usize::MAX] {
                let mut reader = AnswerReader::new(head_request, false, 4096);
                let mut seen = Vec::new();
                feed(&mut reader, &wire[..cut]);
                drain(&mut reader, room, &mut seen);
                feed(&mut reader, &wire[cut..]);
                if eof {
                    reader.received_eof();
                }
                if !seen.last().is_some_and(|s| s.starts_with("failed")) {
                    drain(&mut reader, room, &mut seen);
                }
                let first = first.get_or_insert_with(|| seen.clone());
                assert_eq!(&seen, first, "cut at {cut}, room {room}");
            }
        }
        first.unwrap_or_default()
    }

    #[test]
    fn framings_read_the_same_whatever_the_cut() {
        let chunked = b"HTTP/1.1 103 Early\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\n\
            Transfer-Encoding: chunked\r\n\r\n4;x\r\nWiki\r\n5\r\npedia\r\n0\r\nX-T: 1\r\n\r\n";
        assert_eq!(
            read_cut(chunked, false, false),
            [
                "interim 103",
                "head 200 Chunked",
                "data Wikipedia",
                "end X-T: 1\r\n"
            ]
        );
        let exact = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
        assert_eq!(
            read_cut(exact, false, false),
            ["head 200 Exact(5)", "data hello", "end "]
        );
        let until_close = b"HTTP/1.0 200 OK\r\n\r\nto the end";
        assert_eq!(
            read_cut(until_close, true, false),
            ["head 200 UntilClose", "data to the end", "end "]
        );
        let head = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n";
        assert_eq!(read_cut(head, false, true), ["head 200 Empty", "end "]);
    }

    #[test]
    fn faults_are_values() {
        let cut_short = b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nhello";
        assert_eq!(
            read_cut(cut_short, true, false).last().unwrap(),
            "failed closed before the end of the body true"
        );
        let bad_chunk = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n";
        assert!(
            read_cut(bad_chunk, false, false)
                .last()
                .unwrap()
                .starts_with("failed")
        );
        assert_eq!(
            read_cut(b"", true, false),
            ["failed closed before a response false"]
        );
        assert_eq!(
            read_cut(b"HTTP/1.1 20", true, false),
            ["failed closed before a response true"]
        );
        let unasked = b"HTTP/1.1 101 Switching\r\nUpgrade: x\r\n\r\n";
        assert!(read_cut(unasked, false, false)[0].starts_with("failed 101"));
    }

    #[test]
    fn sixteen_interim_heads_pass_and_the_seventeenth_fails() {
        for (n, last) in [
            (16, "head 200 Exact(0)"),
            (17, "failed more than 16 interim responses true"),
        ] {
            let mut wire = b"HTTP/1.1 103 Early\r\n\r\n".repeat(n);
            wire.extend_from_slice(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
            let mut reader = AnswerReader::new(false, false, 4096);
            feed(&mut reader, &wire);
            let mut seen = Vec::new();
            drain(&mut reader, usize::MAX, &mut seen);
            assert_eq!(seen.iter().filter(|s| *s == "interim 103").count(), 16);
            assert_eq!(seen[16], last);
        }
    }

    #[test]
    fn reusable_only_after_a_clean_persistent_answer() {
        let read = |wire: &[u8]| {
            let mut reader = AnswerReader::new(false, false, 4096);
            feed(&mut reader, wire);
            drain(&mut reader, usize::MAX, &mut Vec::new());
            reader.reusable()
        };
        let hinted = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nKeep-Alive: timeout=5\r\n\r\nok";
        assert_eq!(read(hinted), Some(Some(Duration::from_secs(5))));
        assert_eq!(
            read(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA"),
            None
        );
        assert_eq!(
            read(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"),
            None
        );
        assert_eq!(
            read(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok"),
            None
        );
        assert_eq!(
            read(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok"),
            Some(None)
        );
    }

    #[test]
    fn a_101_to_an_upgrade_ends_the_answer_and_leaves_the_rest() {
        let mut reader = AnswerReader::new(false, true, 4096);
        feed(
            &mut reader,
            b"HTTP/1.1 101 Switching\r\nUpgrade: ws\r\n\r\nearly",
        );
        assert!(
            matches!(reader.next(usize::MAX), Answer::Head(h, BodyLength::Empty) if h.status == 101)
        );
        assert!(!reader.wants_read());
        assert_eq!(
            reader.reusable(),
            None,
            "bytes of the new protocol are buffered"
        );
    }
}
