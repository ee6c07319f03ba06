//! The HTTP/1 front, sans-I/O [R2][R3][R8][E]: the bytes a client sends become
//! request events (a head, body bytes, the end of the body), and the answer (interim
//! heads, a response head, body bytes, its end) becomes the bytes to send back. It
//! never touches a socket and never reads the clock: whoever drives it reads into
//! `input_space`, writes out `output`, passes `now` in, and waits for what
//! `wants_read`, `wants_write` and `deadline` say.
//!
//! One request at a time: a head, then its body; then the reader pauses until the
//! answer is sent, and only then looks at the next request, whose bytes may be here
//! already (pipelining). Keep-alive, `Connection: close`, HTTP/1.0 and the framing of
//! the answer (length, chunked, or until close) are decided here, so what answers a
//! request needs no HTTP/1 framing of its own. A head arriving a byte at a time is
//! scanned once (`HeadScan`); `headerMs` runs from a head's first byte (from the
//! accept for the first), `keepAliveMs` from the end of the last answer.
//!
//! Not here yet: upgrades (the 101 and the bytes after it) and the lingering close.

use std::io::{self, IoSlice, Write};
use std::time::{Duration, Instant};

use crate::body::{BodyLength, BodyReader, Piece, chunk_header, request_body_length};
use crate::error::HeadError;
use crate::front::transport::Wire;
use crate::head::{
    Fields, HeadScan, RequestHead, ResponseHead, list_items, parse_request_resumed,
    starts_head_request,
};
use crate::headers::{ClientFraming, client_response_head, local_response};
use crate::io::{Input, Output};

/// The limits a connection is read with (from the config in force when it started).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_header_bytes: usize,
    /// `headerMs`: from the first byte of a head (or the accept) to its end.
    pub header: Duration,
    /// `keepAliveMs`: from the end of an answer to the first byte of the next head.
    pub keep_alive: Duration,
}

/// The input buffer's size in a body: body bytes are taken in pieces of at most this.
const BODY_BUF: usize = 32 * 1024;

/// What the client's bytes say next.
#[derive(Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// Nothing more until more bytes come (or the deadline passes).
    NeedData,
    /// A request head, and how its body is framed; `Data` and `End` follow.
    Request(RequestHead, BodyLength),
    /// Body bytes, at most the room given; all of them are the taker's.
    Data(&'a [u8]),
    /// Body bytes wait, but the taker has no room.
    Full,
    /// The body is complete; the trailers, if it was chunked (filtered, re-serialised).
    End(&'a [u8]),
    /// The request is read; the next is not looked at before the answer is sent.
    Paused,
    /// A head or body the client sent is refused; its answer is queued (when no
    /// answer had begun) and the connection closes after it.
    Refused(HeadError),
    /// The client closed: between requests, or in the middle of one.
    Closed { mid_message: bool },
}

/// Where reading stands.
#[derive(Debug)]
enum Reading {
    /// Waiting for a head or the rest of one. `started`: its first byte (or the
    /// accept, or the end of the last answer when `idle`).
    Head {
        scan: HeadScan,
        started: Instant,
        idle: bool,
    },
    /// In the request's body.
    Body(BodyReader),
    /// The request is read; waiting for its answer to be sent.
    Paused,
    /// Nothing more is read; the connection closes once the output is written.
    Done,
}

/// Where the answer to the current request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Writing {
    /// Nothing sent yet.
    Nothing,
    /// The head is sent; the body goes out framed so.
    Body(ClientFraming),
}

/// One client connection's HTTP/1 state.
#[derive(Debug)]
pub struct H1 {
    limits: Limits,
    /// What the client sent and was not taken yet.
    input: Input,
    reading: Reading,
    writing: Writing,
    /// Bytes to send, in order.
    out: Output,
    /// Trailers of the chunked body just ended, for `Event::End`.
    trailers: Vec<u8>,
    /// HTTP minor version of the request being answered.
    minor: u8,
    /// The request being answered is a HEAD.
    head_request: bool,
    /// The connection stays open after this answer (so far as we know).
    keep_alive: bool,
    /// When the head of the request being answered began to arrive.
    request_started: Instant,
    /// Reading stopped inside a request (refused, or answered before its body was
    /// read): the client may still be sending.
    cut_short: bool,
}

impl H1 {
    /// A new connection, accepted at `now`.
    pub fn new(limits: Limits, now: Instant) -> H1 {
        H1 {
            limits,
            input: Input::default(),
            reading: Reading::Head {
                scan: HeadScan::default(),
                started: now,
                idle: false,
            },
            writing: Writing::Nothing,
            out: Output::default(),
            trailers: Vec::new(),
            minor: 1,
            head_request: false,
            keep_alive: true,
            request_started: now,
            cut_short: false,
        }
    }

    /// Whether closing now may leave client bytes unread: a request cut short, or
    /// bytes received and not taken.
    pub fn left_unread(&self) -> bool {
        self.cut_short || !self.input.is_empty()
    }

    /// When the head of the request being answered began to arrive (for the log).
    pub fn request_started(&self) -> Instant {
        self.request_started
    }

    /// Between requests with nothing received: closing now loses nothing.
    pub fn is_idle(&self) -> bool {
        matches!(self.reading, Reading::Head { .. }) && self.input.is_empty() && self.out.is_empty()
    }

    /// Between requests, frees the buffers: an idle connection holds none.
    pub fn shrink_idle(&mut self) {
        if self.is_idle() {
            let eof = self.input.eof;
            self.input = Input::default();
            self.input.eof = eof;
            self.out = Output::default();
            self.trailers = Vec::new();
        }
    }

    /// The bytes received and not taken: a refused head's, for the log; after a 101,
    /// the new protocol's first bytes (taken).
    pub fn pending_input(&self) -> &[u8] {
        self.input.data()
    }

    pub fn take_input(&mut self) -> Vec<u8> {
        let rest = self.input.data().to_vec();
        self.input.consume(rest.len());
        rest
    }

    /// Takes the output not yet written (after a 101, the tunnel sends it).
    pub fn take_output(&mut self) -> Vec<u8> {
        self.out.take()
    }

    /// Whether the client has closed its sending side.
    pub fn client_closed(&self) -> bool {
        self.input.eof
    }

    /// The limits for the next request (a reload's).
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    // ------------------------------------------------------------------ input

    /// The most input held at once: a head up to `maxHeaderBytes`, a body's piece.
    fn input_cap(&self) -> usize {
        match self.reading {
            Reading::Head { .. } => self.limits.max_header_bytes,
            _ => BODY_BUF,
        }
    }

    /// Where to read the client's next bytes; empty when the buffer is full.
    pub fn input_space(&mut self) -> &mut [u8] {
        let cap = self.input_cap();
        self.input.space(cap)
    }

    /// `n` bytes were read into `input_space` at `now`.
    pub fn received(&mut self, n: usize, now: Instant) {
        self.input.received(n);
        if let Reading::Head { started, idle, .. } = &mut self.reading
            && *idle
            && n > 0
        {
            (*started, *idle) = (now, false); // headerMs runs from this first byte
        }
    }

    /// The client closed its side.
    pub fn received_eof(&mut self) {
        self.input.eof = true;
    }

    /// Whether the client should be read: a request is being read, there is room,
    /// and it has not closed.
    pub fn wants_read(&self) -> bool {
        let reading = matches!(self.reading, Reading::Head { .. } | Reading::Body(_));
        reading && !self.input.eof && self.input.len() < self.input_cap()
    }

    /// What the client's bytes say next. `room`: how many body bytes the taker can
    /// accept now.
    pub fn next_event(&mut self, room: usize) -> Event<'_> {
        match &mut self.reading {
            Reading::Done => Event::Closed { mid_message: false },
            Reading::Paused => Event::Paused,
            Reading::Head { .. } => self.next_head(),
            Reading::Body(body) => match body.next(&mut self.input, room) {
                Piece::Data { piece, used } => Event::Data(self.input.take(piece, used)),
                Piece::End(trailers) => {
                    self.trailers = trailers;
                    self.reading = Reading::Paused;
                    Event::End(&self.trailers)
                }
                Piece::NeedData => Event::NeedData,
                Piece::Full => Event::Full,
                Piece::Cut => {
                    self.reading = Reading::Done;
                    Event::Closed { mid_message: true }
                }
                Piece::Bad(_) => self.refuse(HeadError::Malformed("bad chunked body")),
            },
        }
    }

    fn next_head(&mut self) -> Event<'_> {
        let Reading::Head { scan, .. } = &mut self.reading else {
            return Event::NeedData;
        };
        let max = self.limits.max_header_bytes;
        let data = self.input.data();
        match parse_request_resumed(data, scan) {
            Err(e) => self.refuse(e),
            // A whole head that came in one read can be longer than the limit.
            Ok(Some((_, len))) if len > max => self.refuse(HeadError::TooLarge),
            Ok(Some((head, len))) => {
                if let Reading::Head { started, .. } = self.reading {
                    self.request_started = started;
                }
                self.input.consume(len);
                self.begin(head)
            }
            Ok(None) if data.len() >= max => self.refuse(HeadError::TooLarge),
            Ok(None) if self.input.eof => {
                let mid_message = !data.is_empty();
                self.reading = Reading::Done;
                Event::Closed { mid_message }
            }
            Ok(None) => Event::NeedData,
        }
    }

    /// A whole head: its framing, keep-alive, and what is read next.
    fn begin(&mut self, head: RequestHead) -> Event<'_> {
        self.minor = head.minor;
        self.head_request = head.method == "HEAD";
        let body = match request_body_length(&head) {
            Ok(body) => body,
            Err(e) => return self.refuse(e),
        };
        // RFC 9112 §6.1: an HTTP/1.0 message with Transfer-Encoding is taken to have
        // faulty framing; it is answered and the connection closed.
        self.keep_alive = match head.minor {
            1 => !head.has_token("connection", "close"),
            _ => {
                head.has_token("connection", "keep-alive")
                    && head.first("transfer-encoding").is_none()
            }
        };
        self.writing = Writing::Nothing;
        // A request's body is never delimited by the close (RFC 9112 §6.3).
        let framing = match body {
            BodyLength::UntilClose => BodyLength::Empty,
            framing => framing,
        };
        let named = head.values("connection").flat_map(list_items);
        self.reading = Reading::Body(BodyReader::dropping(framing, named));
        Event::Request(head, body)
    }

    /// Refuses what the client sent: the error's answer when none has begun, then
    /// the connection closes.
    fn refuse(&mut self, e: HeadError) -> Event<'static> {
        if self.writing == Writing::Nothing {
            // The answer follows this request's method: a HEAD's error has no body.
            // Before its head is whole, that is read from its first bytes.
            let head_only = self.head_request || starts_head_request(self.input.data());
            let minor = self.minor;
            let answer = local_response(e.status(), &[], false, minor, head_only);
            self.out.vec().extend_from_slice(&answer);
        }
        self.reading = Reading::Done;
        self.cut_short = true;
        Event::Refused(e)
    }

    // ------------------------------------------------------------------ output

    /// The request being answered is a HEAD: its answer has no body.
    pub fn is_head_request(&self) -> bool {
        self.head_request
    }

    /// The connection closes after this answer (the request or the front said so).
    pub fn close_after_answer(&mut self) {
        self.keep_alive = false;
    }

    /// Whether the whole request has been read (nothing of its body is left).
    fn request_read(&self) -> bool {
        matches!(
            self.reading,
            Reading::Paused | Reading::Body(BodyReader::Exact(0) | BodyReader::Done)
        )
    }

    /// An interim (1xx) head: relayed to HTTP/1.1 clients, dropped for HTTP/1.0 [R3].
    pub fn send_interim(&mut self, res: &ResponseHead) {
        if self.minor == 1 {
            client_response_head(res, ClientFraming::NoBody, true, 1, self.out.vec());
        }
    }

    /// The head of the answer. `length`: how the backend framed the body (`Empty`
    /// for HEAD, 1xx, 204, 304); the client gets it with a length, chunked (HTTP/1.1),
    /// or until close (HTTP/1.0) [R3]. `keep_alive`: the answerer allows the
    /// connection to stay open.
    pub fn send_head(&mut self, res: &ResponseHead, length: BodyLength, keep_alive: bool) {
        self.keep_alive &= keep_alive && self.request_read();
        let framing = match length {
            BodyLength::Empty => ClientFraming::NoBody,
            BodyLength::Exact(n) => ClientFraming::Length(n),
            BodyLength::Chunked | BodyLength::UntilClose if self.minor == 1 => {
                ClientFraming::Chunked
            }
            BodyLength::Chunked | BodyLength::UntilClose => {
                self.keep_alive = false;
                ClientFraming::Close
            }
        };
        client_response_head(res, framing, self.keep_alive, self.minor, self.out.vec());
        self.writing = Writing::Body(framing);
    }

    /// A whole answer made here (an error, a 404, a redirect), with its text body;
    /// `extra` fields after the standard ones. `now`: when it was queued.
    pub fn send_local(&mut self, status: u16, extra: &[(&str, &str)], now: Instant) {
        self.keep_alive &= self.request_read();
        let answer = local_response(
            status,
            extra,
            self.keep_alive,
            self.minor,
            self.head_request,
        );
        self.out.vec().extend_from_slice(&answer);
        self.finish(now);
    }

    /// Bytes of the answer's body.
    pub fn send_data(&mut self, bytes: &[u8]) {
        if bytes.is_empty() || self.head_request {
            return;
        }
        if self.writing == Writing::Body(ClientFraming::Chunked) {
            chunk_header(bytes.len(), self.out.vec());
            self.out.vec().extend_from_slice(bytes);
            self.out.vec().extend_from_slice(b"\r\n");
        } else {
            self.out.vec().extend_from_slice(bytes);
        }
    }

    /// Bytes of the answer's body, written straight to `to` when nothing is queued
    /// before them (no copy: a large body goes from the backend's read to the
    /// client's socket); what `to` does not take is queued as `send_data` does.
    /// Returns what `to` took, or its error (the bytes are then all queued: the next
    /// write of the output meets the error again).
    pub fn send_data_via(&mut self, bytes: &[u8], to: &mut dyn Write) -> io::Result<usize> {
        if bytes.is_empty() || self.head_request || !self.out.is_empty() {
            self.send_data(bytes);
            return Ok(0);
        }
        let mut header = [0u8; 20]; // a chunk size in hex and CRLF, on the stack
        let mut parts = [&[][..], bytes, &[][..]];
        let chunked = self.writing == Writing::Body(ClientFraming::Chunked);
        if chunked {
            let room = header.len();
            let mut rest = &mut header[..];
            let _ = write!(rest, "{:x}\r\n", bytes.len()); // 16 hex digits at most
            let len = room - rest.len();
            parts = [&header[..len], bytes, b"\r\n"];
        }
        let written = match chunked {
            false => to.write(bytes),
            true => to.write_vectored(&parts.map(IoSlice::new)),
        };
        let mut left = *written.as_ref().unwrap_or(&0);
        for part in parts {
            let skip = left.min(part.len());
            self.out.vec().extend_from_slice(&part[skip..]);
            left -= skip;
        }
        written
    }

    /// The end of the answer's body, with the backend's trailers (chunked only).
    pub fn send_end(&mut self, trailers: &[u8], now: Instant) {
        if self.writing == Writing::Body(ClientFraming::Chunked) {
            self.out.vec().extend_from_slice(b"0\r\n");
            self.out.vec().extend_from_slice(trailers);
            self.out.vec().extend_from_slice(b"\r\n");
        }
        if self.writing == Writing::Body(ClientFraming::Close) {
            self.keep_alive = false;
        }
        self.finish(now);
    }

    /// The answer cannot be completed (the backend failed after its head): what was
    /// queued is sent, then the connection closes, without a clean end.
    pub fn abort(&mut self) {
        self.reading = Reading::Done;
    }

    /// The answer is complete: read the next request, or close.
    fn finish(&mut self, now: Instant) {
        self.writing = Writing::Nothing;
        self.head_request = false; // until the next head says
        self.cut_short |= !self.request_read();
        self.reading = match self.keep_alive && self.request_read() {
            true => Reading::Head {
                scan: HeadScan::default(),
                started: now,
                idle: self.input.is_empty(), // a pipelined head may have begun
            },
            false => Reading::Done,
        };
    }

    /// The bytes to send to the client now.
    pub fn output(&self) -> &[u8] {
        self.out.data()
    }

    /// `n` bytes of `output` were written.
    pub fn wrote(&mut self, n: usize) {
        self.out.consume(n);
    }

    pub fn wants_write(&self) -> bool {
        !self.out.is_empty()
    }

    /// Nothing more will be read or written: close the connection.
    pub fn is_finished(&self) -> bool {
        matches!(self.reading, Reading::Done) && self.out.is_empty()
    }

    // ------------------------------------------------------------------ time

    /// When the wait for a head ends: `headerMs` after its first byte (or the
    /// accept), `keepAliveMs` after the last answer. `None` while a request is
    /// being read or answered: those waits belong to the exchange.
    pub fn deadline(&self) -> Option<Instant> {
        match self.reading {
            Reading::Head {
                started,
                idle: true,
                ..
            } => Some(started + self.limits.keep_alive),
            Reading::Head { started, .. } => Some(started + self.limits.header),
            _ => None,
        }
    }

    /// The deadline passed at `now`: an idle connection closes; one with part of a
    /// head gets a 408 first [E]. Bytes already received are looked at first: a
    /// head that came in time is served.
    pub fn expire(&mut self, now: Instant) -> Option<HeadError> {
        if self.deadline().is_none_or(|d| now < d) {
            return None;
        }
        let Reading::Head { scan, .. } = &self.reading else {
            return None;
        };
        let mut scan = *scan; // looked at, not taken: the next event takes it
        if !matches!(
            parse_request_resumed(self.input.data(), &mut scan),
            Ok(None)
        ) {
            return None; // a whole head, or a refusal: `next_event` says which
        }
        if !self.input.is_empty() {
            self.refuse(HeadError::Timeout);
            return Some(HeadError::Timeout);
        }
        self.reading = Reading::Done;
        None
    }
}

impl Wire for H1 {
    fn wants_read(&self) -> bool {
        H1::wants_read(self)
    }
    fn input_space(&mut self) -> &mut [u8] {
        H1::input_space(self)
    }
    fn received(&mut self, n: usize, now: Instant) {
        H1::received(self, n, now);
    }
    fn received_eof(&mut self) {
        H1::received_eof(self);
    }
    fn output(&mut self) -> &[u8] {
        H1::output(self)
    }
    fn wrote(&mut self, n: usize) {
        H1::wrote(self, n);
    }
    fn wants_write(&self) -> bool {
        H1::wants_write(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_header_bytes: 4096,
        header: Duration::from_secs(10),
        keep_alive: Duration::from_secs(60),
    };

    /// Feeds `bytes` to `h1` as one read.
    fn feed(h1: &mut H1, mut bytes: &[u8], now: Instant) {
        while !bytes.is_empty() {
            let space = h1.input_space();
            assert!(!space.is_empty(), "input full");
            let n = space.len().min(bytes.len());
            space[..n].copy_from_slice(&bytes[..n]);
            h1.received(n, now);
            bytes = &bytes[n..];
        }
    }

    /// What the events say, as text, until the reader needs data or pauses.
    fn drain(h1: &mut H1, room: usize) -> Vec<String> {
        let mut seen = Vec::new();
        loop {
            let event = h1.next_event(room);
            let text = match &event {
                Event::NeedData => return seen,
                Event::Paused => {
                    seen.push("paused".into());
                    return seen;
                }
                Event::Full => return seen,
                Event::Request(head, body) => format!("{} {} {body:?}", head.method, head.target),
                Event::Data(d) => format!("data {}", String::from_utf8_lossy(d)),
                Event::End(t) => format!("end {}", String::from_utf8_lossy(t)),
                Event::Refused(e) => format!("refused {}", e.status()),
                Event::Closed { mid_message } => format!("closed {mid_message}"),
            };
            let stop = matches!(event, Event::Refused(_) | Event::Closed { .. });
            seen.push(text);
            if stop {
                return seen;
            }
        }
    }

    /// Body data events merged, and a pause seen again once, so that where the
    /// input was cut does not change what is compared.
    fn merged(events: Vec<String>) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for e in events {
            match (out.last_mut(), e.strip_prefix("data ")) {
                (Some(last), Some(more)) if last.starts_with("data ") => last.push_str(more),
                (Some(last), None) if *last == e && e == "paused" => {}
                _ => out.push(e),
            }
        }
        out
    }

    const PIPELINED: &[u8] = b"POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello\
        PUT /b HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n0\r\nX-T: 1\r\n\r\n";

    #[test]
    fn requests_cut_at_every_offset_give_the_same_events() {
        let t0 = Instant::now();
        let mut whole = Vec::new();
        for cut in 0..=PIPELINED.len() {
            for room in [1, 3, usize::MAX] {
                let mut h1 = H1::new(LIMITS, t0);
                let mut seen = Vec::new();
                feed(&mut h1, &PIPELINED[..cut], t0);
                seen.extend(drain(&mut h1, room));
                feed(&mut h1, &PIPELINED[cut..], t0);
                seen.extend(drain(&mut h1, room));
                if seen.last().is_some_and(|e| e == "paused") {
                    // Answer the first; the second is read only then (pipelining).
                    h1.send_local(200, &[], t0);
                    seen.extend(drain(&mut h1, room));
                }
                let seen = merged(seen);
                if whole.is_empty() {
                    whole = seen.clone();
                }
                assert_eq!(seen, whole, "cut at {cut}, room {room}");
            }
        }
        assert_eq!(
            whole,
            [
                "POST /a Exact(5)",
                "data hello",
                "end ",
                "paused",
                "PUT /b Chunked",
                "data abc",
                "end X-T: 1\r\n",
                "paused"
            ]
        );
    }

    #[test]
    fn answers_are_framed_for_the_client_and_keep_alive_decided() {
        let t0 = Instant::now();
        let res = |wire: &[u8]| crate::head::parse_response(wire).unwrap().unwrap().0;
        // HTTP/1.1: a body of unknown length is chunked, and the connection stays.
        let mut h1 = H1::new(LIMITS, t0);
        feed(&mut h1, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n", t0);
        assert_eq!(
            drain(&mut h1, usize::MAX),
            ["GET / Empty", "end ", "paused"]
        );
        h1.send_head(
            &res(b"HTTP/1.1 200 OK\r\n\r\n"),
            BodyLength::UntilClose,
            true,
        );
        h1.send_data(b"abc");
        h1.send_end(b"", t0);
        let out = String::from_utf8(h1.output().to_vec()).unwrap();
        assert_eq!(
            out,
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
        );
        assert!(!h1.is_finished());
        assert_eq!(h1.deadline(), Some(t0 + LIMITS.keep_alive));
        // HTTP/1.0: until close, and then the connection closes.
        let mut h1 = H1::new(LIMITS, t0);
        feed(
            &mut h1,
            b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
            t0,
        );
        drain(&mut h1, usize::MAX);
        h1.send_head(
            &res(b"HTTP/1.1 200 OK\r\n\r\n"),
            BodyLength::UntilClose,
            true,
        );
        h1.send_data(b"abc");
        h1.send_end(b"", t0);
        let out = String::from_utf8(h1.output().to_vec()).unwrap();
        assert_eq!(out, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nabc");
        h1.wrote(out.len());
        assert!(h1.is_finished());
    }

    /// A writer that takes at most `limit` bytes, then would block.
    struct Taking {
        taken: Vec<u8>,
        limit: usize,
    }

    impl Write for Taking {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let n = buf.len().min(self.limit - self.taken.len());
            if n == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            self.taken.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            let all: Vec<u8> = bufs.iter().flat_map(|b| b.iter().copied()).collect();
            self.write(&all)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// Body bytes written straight through, with the socket taking any number of
    /// them, give the bytes `send_data` queues: what the socket took, then the
    /// queued rest. Bytes never pass one still queued.
    #[test]
    fn body_bytes_written_through_a_socket_cut_anywhere_keep_their_framing() {
        let t0 = Instant::now();
        let res = crate::head::parse_response(b"HTTP/1.1 200 OK\r\n\r\n")
            .unwrap()
            .unwrap()
            .0;
        for length in [BodyLength::Exact(10), BodyLength::Chunked] {
            let answer = |h1: &mut H1| {
                feed(h1, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n", t0);
                drain(h1, usize::MAX);
                h1.send_head(&res, length, true);
                let head = h1.output().len();
                h1.wrote(head);
            };
            let mut queued = H1::new(LIMITS, t0);
            answer(&mut queued);
            queued.send_data(b"0123456789");
            queued.send_data(b"!");
            let whole = queued.output().to_vec();
            for limit in 0..=whole.len() {
                let mut h1 = H1::new(LIMITS, t0);
                answer(&mut h1);
                let mut socket = Taking {
                    taken: Vec::new(),
                    limit,
                };
                let n = h1.send_data_via(b"0123456789", &mut socket).unwrap_or(0);
                assert_eq!(n, socket.taken.len());
                // When something is queued, the next bytes queue behind it.
                let behind = h1.wants_write();
                let m = h1.send_data_via(b"!", &mut socket).unwrap_or(0);
                assert!(m == 0 || !behind, "passed queued bytes");
                let mut seen = socket.taken.clone();
                seen.extend_from_slice(h1.output());
                assert_eq!(seen, whole, "{length:?}, the socket taking {limit}");
            }
        }
    }

    #[test]
    fn an_answer_before_the_whole_body_closes_the_connection_after_it() {
        let t0 = Instant::now();
        let mut h1 = H1::new(LIMITS, t0);
        feed(
            &mut h1,
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nabc",
            t0,
        );
        assert_eq!(drain(&mut h1, usize::MAX), ["POST / Exact(10)", "data abc"]);
        h1.send_local(404, &[], t0);
        let out = String::from_utf8(h1.output().to_vec()).unwrap();
        assert!(out.contains("Connection: close\r\n"), "{out}");
        h1.wrote(out.len());
        assert!(h1.is_finished());
    }

    #[test]
    fn refusals_are_answered_with_the_method_of_their_own_request() {
        let t0 = Instant::now();
        let mut h1 = H1::new(LIMITS, t0);
        feed(
            &mut h1,
            b"HEAD / HTTP/1.1\r\nHost: h\r\n\r\nGET / HTTP/1.1\r\nBad Field\r\n\r\n",
            t0,
        );
        drain(&mut h1, usize::MAX);
        h1.send_head(
            &crate::head::parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n")
                .unwrap()
                .unwrap()
                .0,
            BodyLength::Empty,
            true,
        );
        h1.send_end(b"", t0);
        let first = h1.output().len();
        assert_eq!(drain(&mut h1, usize::MAX), ["refused 400"]);
        let out = String::from_utf8(h1.output()[first..].to_vec()).unwrap();
        assert!(out.ends_with("\r\n\r\n400 Bad Request\n"), "{out}");
    }

    #[test]
    fn a_refused_head_request_gets_no_body_whatever_was_refused() {
        let t0 = Instant::now();
        for wire in [
            &b"\r\nHEAD / HTTP/1.1\r\nHost: h\r\nBad Field\r\n\r\n"[..],
            b"HEAD / HTTP/1.1\r\nHost: h\r\nContent-Length: x\r\n\r\n",
        ] {
            let mut h1 = H1::new(LIMITS, t0);
            feed(&mut h1, wire, t0);
            assert_eq!(drain(&mut h1, usize::MAX), ["refused 400"]);
            let out = String::from_utf8(h1.output().to_vec()).unwrap();
            assert!(out.ends_with("\r\n\r\n"), "{out}");
        }
    }

    #[test]
    fn deadlines_run_from_the_accept_the_first_byte_and_the_last_answer() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut h1 = H1::new(LIMITS, t0);
        assert_eq!(h1.deadline(), Some(t0 + LIMITS.header));
        feed(&mut h1, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n", t0 + s(1));
        drain(&mut h1, usize::MAX);
        assert_eq!(h1.deadline(), None, "answering");
        h1.send_local(404, &[], t0 + s(2));
        assert_eq!(h1.deadline(), Some(t0 + s(2) + LIMITS.keep_alive));
        h1.wrote(h1.output().len());
        // Bytes of a next head start headerMs; silence until then changes nothing.
        h1.expire(t0 + s(30));
        assert!(!h1.is_finished());
        feed(&mut h1, b"GET", t0 + s(40));
        assert_eq!(h1.deadline(), Some(t0 + s(40) + LIMITS.header));
        h1.expire(t0 + s(50));
        let out = String::from_utf8(h1.output().to_vec()).unwrap();
        assert!(out.starts_with("HTTP/1.1 408 "), "{out}");
        h1.wrote(out.len());
        assert!(h1.is_finished());
        // An idle connection just closes at keepAliveMs.
        let mut h1 = H1::new(LIMITS, t0);
        feed(&mut h1, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n", t0);
        drain(&mut h1, usize::MAX);
        h1.send_local(404, &[], t0);
        h1.wrote(h1.output().len());
        h1.expire(t0 + LIMITS.keep_alive);
        assert!(h1.is_finished() && h1.output().is_empty());
    }

    #[test]
    fn a_head_that_came_in_time_is_served_at_its_deadline() {
        let t0 = Instant::now();
        let mut h1 = H1::new(LIMITS, t0);
        feed(&mut h1, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n", t0);
        h1.expire(t0 + LIMITS.header);
        assert_eq!(drain(&mut h1, usize::MAX)[0], "GET / Empty");
    }

    #[test]
    fn input_is_bounded_by_the_head_limit_and_a_body_piece() {
        let t0 = Instant::now();
        let mut h1 = H1::new(LIMITS, t0);
        let big = vec![b'a'; LIMITS.max_header_bytes];
        feed(&mut h1, &big, t0);
        assert!(!h1.wants_read());
        assert_eq!(drain(&mut h1, usize::MAX), ["refused 431"]);
        // A body the taker has no room for fills the buffer to one piece, no more.
        let mut h1 = H1::new(LIMITS, t0);
        feed(
            &mut h1,
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 100000\r\n\r\n",
            t0,
        );
        assert_eq!(drain(&mut h1, 0), ["POST / Exact(100000)"]);
        feed(&mut h1, &vec![b'b'; BODY_BUF], t0);
        assert!(!h1.wants_read());
        assert_eq!(h1.next_event(0), Event::Full);
        assert!(matches!(h1.next_event(10), Event::Data(d) if d.len() == 10));
        assert!(h1.wants_read());
    }

    #[test]
    fn a_client_closing_mid_request_is_told_apart_from_one_closing_between() {
        let t0 = Instant::now();
        let mut h1 = H1::new(LIMITS, t0);
        feed(
            &mut h1,
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nab",
            t0,
        );
        h1.received_eof();
        assert_eq!(
            drain(&mut h1, usize::MAX),
            ["POST / Exact(5)", "data ab", "closed true"]
        );
        let mut h1 = H1::new(LIMITS, t0);
        h1.received_eof();
        assert_eq!(drain(&mut h1, usize::MAX), ["closed false"]);
    }
}
