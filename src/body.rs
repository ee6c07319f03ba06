//! Body framing [R3][R4]: how long a body is (Content-Length, chunked, until close) and
//! the chunked codec. Pure: the copying between sockets is in `relay.rs`.
//!
//! Chunked bodies are decoded and re-encoded, never copied byte for byte, so whatever
//! a peer wrote in a size line or an extension never reaches the other side.

use std::ops::Range;

use crate::error::HeadError;
use crate::head::{Fields, RequestHead, ResponseHead, allowed_in_trailer, list_items};
use crate::io::Input;

/// Longest chunk-size line (size, extensions, CRLF) we read.
const MAX_SIZE_LINE: usize = 4096;
/// Most bytes of trailer fields we keep.
const MAX_TRAILERS: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyLength {
    Empty,
    Exact(u64),
    Chunked,
    UntilClose,
}

/// RFC 9112 §6.3 for requests, with every ambiguity refused [E].
pub fn request_body_length(head: &RequestHead) -> Result<BodyLength, HeadError> {
    let te_present = head.first("transfer-encoding").is_some();
    let mut lengths = head.values("content-length");
    let cl = lengths.next();
    // RFC 9112 §6.3: a message with both Transfer-Encoding and Content-Length "ought to
    // be handled as an error": a peer that honours the other field reads a different
    // body (request smuggling). We answer 400 and close instead of dropping one.
    if te_present && cl.is_some() {
        return Err(HeadError::AmbiguousLength(
            "both Content-Length and Transfer-Encoding",
        ));
    }
    if te_present {
        let codings: Vec<&[u8]> = head
            .values("transfer-encoding")
            .flat_map(list_items)
            .collect();
        let chunked = |c: &&[u8]| c.eq_ignore_ascii_case(b"chunked");
        return match codings.split_last() {
            Some((last, before)) if chunked(last) => {
                if before.iter().any(chunked) {
                    Err(HeadError::AmbiguousLength("chunked applied twice"))
                } else if !before.is_empty() {
                    Err(HeadError::UnsupportedCoding)
                } else {
                    Ok(BodyLength::Chunked)
                }
            }
            _ => Err(HeadError::AmbiguousLength(
                "Transfer-Encoding does not end in chunked",
            )),
        };
    }
    let Some(cl) = cl else {
        return Ok(BodyLength::Empty);
    };
    // Even an equal second value is refused: RFC 9110 §8.6 lets a recipient merge
    // them, but a backend that does not would frame the body differently.
    if lengths.next().is_some() {
        return Err(HeadError::AmbiguousLength("repeated Content-Length"));
    }
    parse_length(cl)
        .map(BodyLength::Exact)
        .ok_or(HeadError::AmbiguousLength("invalid Content-Length"))
}

/// RFC 9112 §6.3 for responses. `head_request`: the request was HEAD.
pub fn response_body_length(
    head: &ResponseHead,
    head_request: bool,
) -> Result<BodyLength, &'static str> {
    if head_request || head.status < 200 || head.status == 204 || head.status == 304 {
        return Ok(BodyLength::Empty);
    }
    if head.first("transfer-encoding").is_some() {
        let last = head.values("transfer-encoding").flat_map(list_items).last();
        return Ok(match last {
            Some(c) if c.eq_ignore_ascii_case(b"chunked") => BodyLength::Chunked,
            _ => BodyLength::UntilClose,
        });
    }
    let mut found = None;
    for value in head.values("content-length") {
        let n = parse_length(value).ok_or("invalid Content-Length")?;
        if found.is_some_and(|f| f != n) {
            return Err("conflicting Content-Length fields");
        }
        found = Some(n);
    }
    Ok(found.map_or(BodyLength::UntilClose, BodyLength::Exact))
}

/// `1*DIGIT`, nothing else, no overflow.
fn parse_length(value: &[u8]) -> Option<u64> {
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(value).ok()?.parse().ok()
}

/// Reads one body, of its framing, out of an `Input` for the sans-I/O machines
/// (`front/h1.rs`, `backend/answer.rs`), handing out at most the room its taker has.
#[derive(Debug)]
pub enum BodyReader {
    /// This many bytes left.
    Exact(u64),
    Chunked(Box<ChunkedDecoder>),
    /// Until the peer closes.
    UntilClose,
    /// The end was handed out.
    Done,
}

/// What `BodyReader::next` found.
#[derive(Debug, PartialEq, Eq)]
pub enum Piece {
    /// Body bytes at `piece` of the input's data; take them with
    /// `Input::take(piece, used)`.
    Data { piece: Range<usize>, used: usize },
    /// The body is complete; a chunked body's trailers (filtered, re-serialised).
    End(Vec<u8>),
    /// Nothing more until more bytes come.
    NeedData,
    /// Body bytes wait, but the taker has no room.
    Full,
    /// The peer closed before the end.
    Cut,
    /// The chunked framing is malformed.
    Bad(ChunkError),
}

impl BodyReader {
    pub fn new(length: BodyLength) -> BodyReader {
        match length {
            BodyLength::Empty => BodyReader::Exact(0),
            BodyLength::Exact(n) => BodyReader::Exact(n),
            BodyLength::Chunked => BodyReader::Chunked(Box::default()),
            BodyLength::UntilClose => BodyReader::UntilClose,
        }
    }

    /// As `new`, with a chunked body's trailers named in `names` (the message's
    /// `Connection` field) dropped too.
    /// A reader for `length`; a chunked body's trailers lose the fields `names`
    /// (the head's `Connection` list), which are only looked at then.
    pub fn dropping<'a>(length: BodyLength, names: impl Iterator<Item = &'a [u8]>) -> BodyReader {
        match length {
            BodyLength::Chunked => BodyReader::Chunked(Box::new(ChunkedDecoder::dropping(names))),
            length => BodyReader::new(length),
        }
    }

    /// The next piece of the body in `input`, at most `room` bytes of it.
    pub fn next(&mut self, input: &mut Input, room: usize) -> Piece {
        let starved = |input: &Input| {
            if input.eof {
                Piece::Cut
            } else {
                Piece::NeedData
            }
        };
        match self {
            BodyReader::Done => Piece::NeedData,
            BodyReader::Exact(0) => {
                *self = BodyReader::Done;
                Piece::End(Vec::new())
            }
            _ if room == 0 && !input.is_empty() => Piece::Full,
            BodyReader::Exact(left) => {
                let available = input.len();
                if available == 0 {
                    return starved(input);
                }
                let n = usize::try_from(*left).map_or(available, |left| left.min(available));
                let n = n.min(room);
                *left -= n as u64;
                Piece::Data {
                    piece: 0..n,
                    used: n,
                }
            }
            BodyReader::UntilClose => match input.len().min(room) {
                0 if input.eof => {
                    *self = BodyReader::Done;
                    Piece::End(Vec::new())
                }
                0 => Piece::NeedData,
                n => Piece::Data {
                    piece: 0..n,
                    used: n,
                },
            },
            BodyReader::Chunked(dec) => match dec.step_at_most(input.data(), room) {
                Err(e) => Piece::Bad(e),
                Ok((used, Step::Data(piece))) => Piece::Data { piece, used },
                Ok((used, Step::Done)) => {
                    input.consume(used);
                    let trailers = dec.trailers().to_vec();
                    *self = BodyReader::Done;
                    Piece::End(trailers)
                }
                Ok((used, Step::Need)) => {
                    input.consume(used);
                    starved(input)
                }
            },
        }
    }
}

/// What one `ChunkedDecoder::step` found.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// All input was consumed; feed more.
    Need,
    /// Body bytes at this range of the input.
    Data(Range<usize>),
    /// The last chunk and the trailers are through; `trailers()` holds them.
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkError(pub &'static str);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum State {
    /// In the hex digits of a size line.
    #[default]
    Size,
    /// Whitespace after the digits (RFC 9112's BWS before ";").
    SizeSpace,
    /// In a chunk extension, which we drop.
    Ext,
    /// Saw the CR that ends the size line.
    SizeLf,
    /// Inside chunk data, this many bytes left.
    Data(u64),
    /// After chunk data, expecting CR then LF.
    DataCr,
    DataLf,
    /// Reading trailer lines (or the final empty line).
    Trailer,
    TrailerLf,
    Done,
}

/// A push decoder for `Transfer-Encoding: chunked` (RFC 9112 §7.1), strict about
/// what httparse would let through: empty or overlong sizes, bare LF, controls in an
/// extension, obs-fold in trailers.
#[derive(Debug, Default)]
pub struct ChunkedDecoder {
    state: State,
    size: u64,             // the size read so far on this line
    digits: usize,         // hex digits seen on this line
    line_len: usize,       // bytes of the current size line
    line: Vec<u8>,         // the trailer line being read
    trailers: Vec<u8>,     // validated trailer fields, each `Name: value\r\n`
    trailer_bytes: usize,  // bytes of trailer lines seen, kept or dropped
    dropped: Vec<Vec<u8>>, // more field names dropped from trailers
}

impl ChunkedDecoder {
    /// A decoder that also drops the trailer fields named in `names` (those the
    /// message's `Connection` field names are hop-by-hop [R2]).
    pub fn dropping<'a>(names: impl Iterator<Item = &'a [u8]>) -> ChunkedDecoder {
        ChunkedDecoder {
            dropped: names.map(<[u8]>::to_ascii_lowercase).collect(),
            ..ChunkedDecoder::default()
        }
    }

    /// Consumes from `input` and says what it found; call again with the rest.
    /// Returns how many bytes of `input` were used.
    pub fn step(&mut self, input: &[u8]) -> Result<(usize, Step), ChunkError> {
        self.step_at_most(input, usize::MAX)
    }

    /// `step`, handing out at most `max` body bytes (at least 1) at a time: the
    /// reader takes only what the other side has room for.
    pub fn step_at_most(&mut self, input: &[u8], max: usize) -> Result<(usize, Step), ChunkError> {
        let mut i = 0;
        while i < input.len() {
            if let State::Data(left) = self.state {
                let available = (input.len() - i).min(max.max(1));
                let n = usize::try_from(left).map_or(available, |left| left.min(available));
                self.state = if n as u64 == left {
                    State::DataCr
                } else {
                    State::Data(left - n as u64)
                };
                return Ok((i + n, Step::Data(i..i + n)));
            }
            self.byte(input[i])?;
            i += 1;
            if self.state == State::Done {
                return Ok((i, Step::Done));
            }
        }
        Ok((i, Step::Need))
    }

    /// Feeds all of `input`, appending body bytes to `out`; true once the body ended.
    pub fn feed(&mut self, mut input: &[u8], out: &mut Vec<u8>) -> Result<bool, ChunkError> {
        loop {
            let (used, step) = self.step(input)?;
            match step {
                Step::Data(r) => out.extend_from_slice(&input[r]),
                Step::Done => return Ok(true),
                Step::Need => return Ok(false),
            }
            input = &input[used..];
        }
    }

    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// The trailer fields that may be passed on (`allowed_in_trailer`), re-serialised
    /// as `Name: value\r\n` each.
    pub fn trailers(&self) -> &[u8] {
        &self.trailers
    }

    fn byte(&mut self, b: u8) -> Result<(), ChunkError> {
        if matches!(
            self.state,
            State::Size | State::SizeSpace | State::Ext | State::SizeLf
        ) {
            self.line_len += 1;
            if self.line_len > MAX_SIZE_LINE {
                return Err(ChunkError("chunk size line too long"));
            }
        }
        self.state = match (self.state, b) {
            (State::Size, _) if b.is_ascii_hexdigit() => {
                self.digits += 1;
                if self.digits > 16 {
                    return Err(ChunkError("chunk size too large"));
                }
                self.size = self.size << 4 | u64::from((b as char).to_digit(16).unwrap_or(0));
                State::Size
            }
            (State::Size, _) if self.digits == 0 => return Err(ChunkError("missing chunk size")),
            (State::Size | State::SizeSpace, b' ' | b'\t') => State::SizeSpace,
            (State::Size | State::SizeSpace | State::Ext, b';') => State::Ext,
            (State::Size | State::SizeSpace | State::Ext, b'\r') => State::SizeLf,
            (State::Size | State::SizeSpace, _) => return Err(ChunkError("bad chunk size")),
            (State::Ext, _) if is_control(b) => {
                return Err(ChunkError("control byte in a chunk extension"));
            }
            (State::Ext, _) => State::Ext,
            (State::SizeLf, b'\n') => self.end_size_line(),
            (State::SizeLf, _) => return Err(ChunkError("chunk size line without CRLF")),
            (State::DataCr, b'\r') => State::DataLf,
            (State::DataLf, b'\n') => State::Size,
            (State::DataCr | State::DataLf, _) => {
                return Err(ChunkError("chunk data without CRLF"));
            }
            (State::Trailer, b'\r') => State::TrailerLf,
            (State::Trailer, b'\n') => return Err(ChunkError("bare LF in trailers")),
            (State::Trailer, _) => {
                self.line.push(b);
                if self.trailer_bytes + self.line.len() > MAX_TRAILERS {
                    return Err(ChunkError("trailers too large"));
                }
                State::Trailer
            }
            (State::TrailerLf, b'\n') => self.end_trailer_line()?,
            (State::TrailerLf, _) => return Err(ChunkError("bare CR in trailers")),
            (State::Data(_) | State::Done, _) => {
                unreachable!("step() handles data and stops at done")
            }
        };
        Ok(())
    }

    fn end_size_line(&mut self) -> State {
        let size = self.size;
        (self.size, self.digits, self.line_len) = (0, 0, 0);
        if size == 0 {
            State::Trailer
        } else {
            State::Data(size)
        }
    }

    fn end_trailer_line(&mut self) -> Result<State, ChunkError> {
        if self.line.is_empty() {
            return Ok(State::Done);
        }
        let line = std::mem::take(&mut self.line);
        self.trailer_bytes += line.len() + 2;
        let (name, value) = match line.iter().position(|&b| b == b':') {
            Some(colon) => (&line[..colon], line[colon + 1..].trim_ascii()),
            None => return Err(ChunkError("trailer line without a colon")),
        };
        if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
            return Err(ChunkError("bad trailer field name"));
        }
        if value.iter().any(|&b| is_control(b)) {
            return Err(ChunkError("control byte in a trailer field"));
        }
        let named = |d: &Vec<u8>| d.eq_ignore_ascii_case(name);
        if !allowed_in_trailer(name) || self.dropped.iter().any(named) {
            return Ok(State::Trailer); // framing, routing, hop-by-hop: dropped [R2]
        }
        self.trailers.extend_from_slice(name);
        self.trailers.extend_from_slice(b": ");
        self.trailers.extend_from_slice(value);
        self.trailers.extend_from_slice(b"\r\n");
        Ok(State::Trailer)
    }
}

/// C0 controls other than HTAB, and DEL.
fn is_control(b: u8) -> bool {
    (b < 0x20 && b != b'\t') || b == 0x7f
}

/// RFC 9110 §5.6.2 token characters.
pub fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Appends the size line of a chunk of `len` bytes (canonical lowercase hex).
pub fn chunk_header(len: usize, out: &mut Vec<u8>) {
    use std::io::Write;
    let _ = write!(out, "{len:x}\r\n"); // writing to a Vec cannot fail
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::head::parse_request;

    fn length_of(fields: &str) -> Result<BodyLength, u16> {
        let wire = format!("POST / HTTP/1.1\r\nHost: x\r\n{fields}\r\n");
        let (head, _) = parse_request(wire.as_bytes())
            .map_err(|e| e.status())?
            .unwrap();
        request_body_length(&head).map_err(|e| e.status())
    }

    #[test]
    fn request_framing() {
        assert_eq!(length_of(""), Ok(BodyLength::Empty));
        assert_eq!(length_of("Content-Length: 5\r\n"), Ok(BodyLength::Exact(5)));
        assert_eq!(
            length_of("Content-Length: 007\r\n"),
            Ok(BodyLength::Exact(7))
        );
        assert_eq!(
            length_of("Transfer-Encoding: chunked\r\n"),
            Ok(BodyLength::Chunked)
        );
        assert_eq!(
            length_of("Transfer-Encoding: Chunked\r\n"),
            Ok(BodyLength::Chunked)
        );
    }

    #[test]
    fn request_framing_refusals() {
        let cases = [
            ("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", 400),
            ("Content-Length: 5\r\nContent-Length: 5\r\n", 400),
            ("Content-Length: 5, 5\r\n", 400),
            ("Content-Length: +5\r\n", 400),
            ("Content-Length: \r\n", 400),
            ("Content-Length: 99999999999999999999999\r\n", 400),
            ("Transfer-Encoding: gzip\r\n", 400),
            ("Transfer-Encoding: chunked, gzip\r\n", 400),
            ("Transfer-Encoding: chunked, identity\r\n", 400),
            ("Transfer-Encoding: chunked, chunked\r\n", 400),
            (
                "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
                400,
            ),
            ("Transfer-Encoding: xchunked\r\n", 400),
            ("Transfer-Encoding: \r\n", 400),
            ("Transfer-Encoding: gzip, chunked\r\n", 501),
            (
                "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n",
                501,
            ),
        ];
        for (fields, status) in cases {
            assert_eq!(length_of(fields), Err(status), "{fields:?}");
        }
    }

    fn response_length(wire: &str, head_request: bool) -> Result<BodyLength, &'static str> {
        let (head, _) = crate::head::parse_response(wire.as_bytes())
            .unwrap()
            .unwrap();
        response_body_length(&head, head_request)
    }

    #[test]
    fn response_framing() {
        assert_eq!(
            response_length("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n", false),
            Ok(BodyLength::Exact(3))
        );
        assert_eq!(
            response_length("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n", true),
            Ok(BodyLength::Empty)
        );
        assert_eq!(
            response_length("HTTP/1.1 204 No\r\n\r\n", false),
            Ok(BodyLength::Empty)
        );
        assert_eq!(
            response_length("HTTP/1.1 304 No\r\n\r\n", false),
            Ok(BodyLength::Empty)
        );
        assert_eq!(
            response_length("HTTP/1.1 100 Continue\r\n\r\n", false),
            Ok(BodyLength::Empty)
        );
        assert_eq!(
            response_length("HTTP/1.1 200 OK\r\n\r\n", false),
            Ok(BodyLength::UntilClose)
        );
        let te_and_cl =
            "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(response_length(te_and_cl, false), Ok(BodyLength::Chunked));
        let gzip = "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n";
        assert_eq!(response_length(gzip, false), Ok(BodyLength::UntilClose));
        let twice = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n";
        assert!(response_length(twice, false).is_err());
    }

    #[test]
    fn chunked_body_decodes_whatever_the_cut() {
        let wire = b"4\r\nWiki\r\n5;ext=\"v\"\r\npedia\r\n0\r\nX-Trailer: 1\r\n\r\n";
        for cut in 0..=wire.len() {
            let mut dec = ChunkedDecoder::default();
            let mut out = Vec::new();
            let done = dec.feed(&wire[..cut], &mut out).unwrap()
                || dec.feed(&wire[cut..], &mut out).unwrap();
            assert!(done, "incomplete when cut at {cut}");
            assert_eq!(out, b"Wikipedia", "cut at {cut}");
            assert_eq!(dec.trailers(), b"X-Trailer: 1\r\n", "cut at {cut}");
        }
    }

    #[test]
    fn trailers_keep_only_fields_allowed_in_a_trailer() {
        let wire = b"0\r\nHost: evil\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\
            X-Forwarded-For: 6.6.6.6\r\nX_Real_IP: 6.6.6.6\r\nConnection: close\r\n\
            Authorization: x\r\nX-Checksum: abc\r\nServer-Timing: db;dur=5\r\n\r\n";
        let mut dec = ChunkedDecoder::default();
        assert!(dec.feed(wire, &mut Vec::new()).unwrap());
        assert_eq!(
            dec.trailers(),
            b"X-Checksum: abc\r\nServer-Timing: db;dur=5\r\n"
        );
    }

    #[test]
    fn fields_named_in_connection_are_dropped_and_dropped_lines_still_count() {
        let mut dec = ChunkedDecoder::dropping([&b"X-Secret"[..]].into_iter());
        assert!(
            dec.feed(b"0\r\nx-secret: s\r\nX-Kept: k\r\n\r\n", &mut Vec::new())
                .unwrap()
        );
        assert_eq!(dec.trailers(), b"X-Kept: k\r\n");
        let mut endless = b"0\r\n".to_vec();
        endless.extend(b"Host: x\r\n".repeat(MAX_TRAILERS / 9 + 1));
        let mut dec = ChunkedDecoder::default();
        assert!(
            dec.feed(&endless, &mut Vec::new()).is_err(),
            "16 KiB of dropped lines"
        );
    }

    #[test]
    fn chunked_stops_at_the_end_and_leaves_the_rest() {
        let wire = b"1\r\na\r\n0\r\n\r\nGET / HTTP/1.1";
        let mut dec = ChunkedDecoder::default();
        let mut used = 0;
        loop {
            let (n, step) = dec.step(&wire[used..]).unwrap();
            used += n;
            if step == Step::Done {
                break;
            }
        }
        assert_eq!(&wire[used..], b"GET / HTTP/1.1");
    }

    #[test]
    fn malformed_chunks_are_errors() {
        let cases: &[&[u8]] = &[
            b"\r\nabc\r\n0\r\n\r\n",  // empty size
            b"x\r\n",                 // not hex
            b"4\nWiki\r\n0\r\n\r\n",  // bare LF after size
            b"4\r\nWiki\n0\r\n\r\n",  // bare LF after data
            b"4\r\nWikiX\r\n",        // data longer than size
            b"4;a=\x01\r\nWiki\r\n",  // control byte in extension
            b"4 x\r\nWiki\r\n",       // junk after size
            b"11111111111111111\r\n", // 17 hex digits
            b"0\r\nA: b\n\r\n",       // bare LF in trailers
            b"0\r\n c\r\n\r\n",       // obs-fold / bad name
            b"0\r\nA b\r\n\r\n",      // trailer without colon
        ];
        for wire in cases {
            let mut dec = ChunkedDecoder::default();
            assert!(
                dec.feed(wire, &mut Vec::new()).is_err(),
                "{:?}",
                String::from_utf8_lossy(wire)
            );
        }
    }

    #[test]
    fn size_line_is_bounded() {
        let mut wire = b"1;".to_vec();
        wire.resize(MAX_SIZE_LINE + 10, b'a');
        assert!(
            ChunkedDecoder::default()
                .feed(&wire, &mut Vec::new())
                .is_err()
        );
    }

    #[test]
    fn chunk_header_is_lowercase_hex() {
        let mut out = Vec::new();
        chunk_header(255, &mut out);
        assert_eq!(out, b"ff\r\n");
    }
}
