//! What each fuzz target asserts, shared by the targets in `fuzz_targets/` (run with
//! `cargo fuzz`) and by `tests/fuzz_corpus.rs`, which replays the kept corpus and
//! every input that once failed under plain `cargo test`.
//!
//! Each function takes any bytes and panics only when hawkey breaks a rule.
#![allow(dead_code)] // each includer uses some of the checks

use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path};

use hawkey::body::{ChunkedDecoder, Step, chunk_header, is_tchar};
use hawkey::config::Config;
use hawkey::front::h2::conn::{H2, Limits, PREFACE};
use hawkey::front::h2::frame::{self, HEADER_LEN, Header, kind};
use hawkey::front::h2::hpack::{Decoder, Encoder, HpackError};
use hawkey::head::{Fields, HeadScan, parse_request, parse_request_resumed, parse_response};
use hawkey::static_files::segments;

/// The request-head reader: any bytes give a head, "not yet", or an error; a head is
/// well formed and does not depend on what follows it or on how the bytes arrived.
pub fn request_head(data: &[u8]) {
    let whole = parse_request(data);
    if let Ok(Some((head, len))) = &whole {
        assert!(*len <= data.len() && data[..*len].ends_with(b"\r\n\r\n"));
        assert!(!head.method.is_empty() && head.method.bytes().all(is_tchar));
        assert!(!head.target.is_empty());
        assert!(head.target.bytes().all(|b| b > b' ' && b != 0x7f));
        assert!(head.minor <= 1);
        for (name, value) in head.fields.iter() {
            assert!(!name.is_empty() && name.iter().copied().all(is_tchar));
            assert!(!value.iter().any(|&b| b == b'\r' || b == b'\n' || b == 0));
        }
        if head.minor == 1 {
            assert_eq!(head.values("host").count(), 1, "HTTP/1.1 needs one Host");
        }
        // The head alone parses the same.
        let alone = parse_request(&data[..*len]).expect("the head alone parses");
        assert_eq!(
            alone.map(|(h, l)| (h.target, l)),
            Some((head.target.clone(), *len))
        );
    }
    // Bytes arriving in two reads: a prefix is "not yet" or already decided, never a
    // different head; once refused, refused for good.
    let cut = data.first().map_or(0, |&b| b as usize % (data.len() + 1));
    match (parse_request(&data[..cut]), &whole) {
        (Ok(None), _) => {}
        (Ok(Some((h, l))), Ok(Some((head, len)))) => {
            assert_eq!((h.target, l), (head.target.clone(), *len));
        }
        (Err(_), Err(_)) => {}
        (prefix, whole) => {
            panic!(
                "prefix of {cut} bytes gave {prefix:?}, all {} gave {whole:?}",
                data.len()
            )
        }
    }
    // The same two reads through one resumed scan decide as the whole does.
    let mut scan = HeadScan::default();
    let resumed = match parse_request_resumed(&data[..cut], &mut scan) {
        Ok(None) => parse_request_resumed(data, &mut scan),
        decided => decided,
    };
    match (&resumed, &whole) {
        (Ok(None), Ok(None)) | (Err(_), Err(_)) => {}
        (Ok(Some((h, l))), Ok(Some((head, len)))) => {
            assert_eq!((&h.target, l), (&head.target, len));
        }
        (resumed, whole) => panic!("resumed at {cut} gave {resumed:?}, whole gave {whole:?}"),
    }
}

/// The response-head reader: a head, "not yet" or an error, never a panic; a head
/// has a three-digit status and ends where the first empty line does.
pub fn response_head(data: &[u8]) {
    if let Ok(Some((head, len))) = parse_response(data) {
        assert!((100..=999).contains(&head.status));
        assert!(len <= data.len() && data[..len].ends_with(b"\r\n\r\n"));
        assert!(!data[..len - 2].windows(4).any(|w| w == b"\r\n\r\n"));
        for (name, _) in head.fields.iter() {
            assert!(!name.is_empty() && name.iter().copied().all(is_tchar));
        }
    }
}

/// What decoding a chunked body found.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    /// The body ended after `used` input bytes.
    Complete {
        body: Vec<u8>,
        trailers: Vec<u8>,
        used: usize,
    },
    /// All input is consumed and more is needed.
    Incomplete,
    Invalid,
}

/// hawkey's decoder, fed `input` in pieces whose sizes come from `cuts`.
pub fn decode(input: &[u8], cuts: &[u8]) -> Decoded {
    let mut dec = ChunkedDecoder::default();
    let (mut body, mut used, mut cuts) = (Vec::new(), 0, cuts.iter().cycle());
    while used < input.len() {
        let piece = 1 + cuts.next().map_or(input.len(), |&c| c as usize);
        let end = (used + piece).min(input.len());
        let mut fed = used;
        while fed < end {
            match dec.step(&input[fed..end]) {
                Err(_) => return Decoded::Invalid,
                Ok((n, Step::Data(r))) => {
                    assert!(!r.is_empty() && r.end <= n, "data step must make progress");
                    body.extend_from_slice(&input[fed..end][r]);
                    fed += n;
                }
                Ok((n, Step::Need)) => {
                    assert_eq!(fed + n, end, "Need means all input was used");
                    fed = end;
                }
                Ok((n, Step::Done)) => {
                    let trailers = dec.trailers().to_vec();
                    return Decoded::Complete {
                        body,
                        trailers,
                        used: fed + n,
                    };
                }
            }
        }
        used = end;
    }
    Decoded::Incomplete
}

/// A second, plain reading of RFC 9112 §7.1 with hawkey's limits (4 KiB size lines,
/// 16 hex digits, 16 KiB of trailers, no bare CR or LF, no controls in extensions
/// or trailer values), written for the differential check.
pub fn reference_decode(input: &[u8]) -> Decoded {
    const MAX_LINE: usize = 4096;
    const MAX_TRAILERS: usize = 16 * 1024;
    let control = |b: u8| (b < 0x20 && b != b'\t') || b == 0x7f;
    let (mut i, mut body) = (0, Vec::new());
    loop {
        // The size line: 1-16 hex digits, blanks, an optional extension, CRLF.
        let line_end = input[i..]
            .iter()
            .position(|&b| b == b'\n')
            .map(|p| i + p + 1);
        let line = &input[i..line_end.unwrap_or(input.len())];
        if line.len() > MAX_LINE {
            return Decoded::Invalid;
        }
        let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
        if digits > 16 || (digits == 0 && !line.is_empty()) {
            return Decoded::Invalid;
        }
        let rest = &line[digits..];
        let blanks = rest
            .iter()
            .take_while(|&&b| b == b' ' || b == b'\t')
            .count();
        let mut rest = &rest[blanks..];
        if rest.first() == Some(&b';') {
            let ext = rest.iter().position(|&b| b == b'\r').unwrap_or(rest.len());
            if rest[..ext].iter().any(|&b| control(b)) {
                return Decoded::Invalid;
            }
            rest = &rest[ext..];
        }
        match rest {
            [] | [b'\r'] if line_end.is_none() => return Decoded::Incomplete,
            [b'\r', b'\n'] => {}
            _ => return Decoded::Invalid,
        }
        let hex = std::str::from_utf8(&line[..digits]).unwrap_or("0");
        let size = u64::from_str_radix(hex, 16).unwrap_or(0);
        i += line.len();
        if size == 0 {
            break;
        }
        // The data and its CRLF.
        let left = (input.len() - i) as u64;
        if left < size {
            return Decoded::Incomplete;
        }
        body.extend_from_slice(&input[i..i + size as usize]);
        i += size as usize;
        match &input[i..] {
            [b'\r', b'\n', ..] => i += 2,
            [] | [b'\r'] => return Decoded::Incomplete,
            _ => return Decoded::Invalid,
        }
    }
    // Trailer lines, then the empty line; dropped lines count towards the limit.
    let mut trailers = Vec::new();
    let mut seen = 0;
    loop {
        let end = input[i..].iter().position(|&b| b == b'\r' || b == b'\n');
        let line = &input[i..end.map_or(input.len(), |e| i + e)];
        if seen + line.len() > MAX_TRAILERS {
            return Decoded::Invalid;
        }
        let Some(end) = end.map(|e| i + e) else {
            return Decoded::Incomplete;
        };
        match &input[end..] {
            [b'\r', b'\n', ..] => {}
            [b'\r'] => return Decoded::Incomplete,
            _ => return Decoded::Invalid,
        }
        i = end + 2;
        seen += line.len() + 2;
        if line.is_empty() {
            return Decoded::Complete {
                body,
                trailers,
                used: i,
            };
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            return Decoded::Invalid;
        };
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
        if name.is_empty()
            || !name.iter().all(|&b| is_tchar(b))
            || value.iter().any(|&b| control(b))
        {
            return Decoded::Invalid;
        }
        if !hawkey::head::allowed_in_trailer(name) {
            continue; // dropped, as the decoder does [R2]
        }
        trailers.extend_from_slice(name);
        trailers.extend_from_slice(b": ");
        trailers.extend_from_slice(value);
        trailers.extend_from_slice(b"\r\n");
    }
}

/// The chunked decoder: any input decodes, asks for more or is refused, whatever the
/// pieces it comes in, and agrees with the reference; and a body encoded in chunks of
/// any sizes decodes back to itself.
pub fn chunked(data: &[u8]) {
    // The first bytes choose the read sizes; the rest is the input.
    let (cuts, input) = data.split_at(data.len().min(4));
    let whole = decode(input, &[u8::MAX]);
    assert_eq!(
        decode(input, cuts),
        whole,
        "the result depends on the read sizes"
    );
    assert_eq!(
        whole,
        reference_decode(input),
        "hawkey and the reference disagree"
    );

    // Round trip: `input` as a body, cut into chunks whose sizes come from `cuts`.
    let mut wire = Vec::new();
    let (mut rest, mut sizes) = (input, cuts.iter().cycle());
    while !rest.is_empty() {
        let n = (1 + sizes.next().map_or(rest.len(), |&c| c as usize)).min(rest.len());
        chunk_header(n, &mut wire);
        wire.extend_from_slice(&rest[..n]);
        wire.extend_from_slice(b"\r\n");
        rest = &rest[n..];
    }
    wire.extend_from_slice(b"0\r\n\r\n");
    let expected = Decoded::Complete {
        body: input.to_vec(),
        trailers: Vec::new(),
        used: wire.len(),
    };
    assert_eq!(decode(&wire, cuts), expected);
}

/// The config loader: any text is a config or a clean error, never a panic.
pub fn config(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Err(message) = Config::parse(&text) {
        assert!(!message.trim().is_empty(), "an error says what is wrong");
    }
}

/// The static-file path resolver: any target gives segments that stay inside the
/// root when joined to it, or a refusal.
pub fn static_path(data: &[u8]) {
    let rest = String::from_utf8_lossy(data);
    let Some(segs) = segments(&rest) else {
        return;
    };
    let root = Path::new("/srv/www/static");
    let mut path = root.to_path_buf();
    for seg in &segs {
        assert!(!seg.is_empty() && seg != b"." && seg != b"..");
        assert!(!seg.iter().any(|b| matches!(b, b'/' | b'\\' | 0)));
        path.push(std::ffi::OsStr::from_bytes(seg));
    }
    assert!(path.starts_with(root));
    assert!(
        path.components()
            .skip(root.components().count())
            .all(|c| matches!(c, Component::Normal(_))),
        "{rest:?} leaves the root as {path:?}"
    );
    assert_eq!(
        path.components().count(),
        root.components().count() + segs.len()
    );
}

/// The HTTP/2 connection: after the preface and a SETTINGS, any bytes, however cut,
/// give whole frames out and never a panic; a GOAWAY ends the connection for good.
/// Each frame of the input also decodes by its type alone, and what decodes encodes
/// back to the same payload.
pub fn h2_frames(data: &[u8]) {
    let limits = Limits {
        max_header_bytes: 16 * 1024,
        header: std::time::Duration::from_secs(10),
        keep_alive: std::time::Duration::from_secs(60),
        send: std::time::Duration::from_secs(30),
    };
    let now = std::time::Instant::now();
    let mut h2 = H2::new(limits, Vec::new(), now);
    let mut wire = PREFACE.to_vec();
    frame::settings::write(&[], &mut wire);
    wire.extend_from_slice(data);
    let cut = PREFACE.len() + data.first().map_or(0, |&b| b as usize % (data.len() + 1));
    for piece in [&wire[..cut], &wire[cut..]] {
        let mut at = 0;
        while at < piece.len() {
            let space = h2.input_space();
            let n = space.len().min(piece.len() - at);
            space[..n].copy_from_slice(&piece[at..at + n]);
            h2.received(n);
            at += n;
            while h2.process(now) {}
            for event in h2.take_events() {
                if let hawkey::front::h2::conn::Event::Request { stream, .. } = event {
                    h2.send_head(stream, 200, &[], false);
                    h2.send_data(stream, b"answer");
                    h2.send_end(stream, b"");
                }
            }
        }
    }
    let mut out = Vec::new();
    loop {
        let bytes = h2.output().to_vec();
        if bytes.is_empty() {
            break;
        }
        h2.wrote(bytes.len());
        out.extend_from_slice(&bytes);
    }
    let mut at = 0;
    let mut goaway = false;
    while let Some(h) = Header::parse(&out[at..]) {
        assert!(
            !goaway || h.kind == kind::GOAWAY,
            "nothing after a GOAWAY but another"
        );
        goaway |= h.kind == kind::GOAWAY;
        at += HEADER_LEN + h.len;
        assert!(at <= out.len(), "a frame cut short in the output");
    }
    assert_eq!(at, out.len(), "whole frames only");
    if goaway {
        assert!(h2.is_finished());
    }
    frames_alone(data);
}

/// Each frame of `data` decoded by its type's own code; what decodes, encodes back.
fn frames_alone(data: &[u8]) {
    let mut at = 0;
    while let Some(h) = Header::parse(&data[at..]) {
        let Some(payload) = data.get(at + HEADER_LEN..at + HEADER_LEN + h.len) else {
            return;
        };
        let mut again = Vec::new();
        match h.kind {
            kind::PING => {
                if let Ok((bytes, ack)) = frame::ping::decode(&h, payload) {
                    frame::ping::write(bytes, ack, &mut again);
                }
            }
            kind::WINDOW_UPDATE => {
                if let Ok(increment) = frame::window_update::decode(&h, payload) {
                    frame::window_update::write(h.stream, increment, &mut again);
                }
            }
            kind::SETTINGS => {
                if let Ok(frame::settings::Settings::Values(values)) =
                    frame::settings::decode(&h, payload)
                {
                    frame::settings::write(&values, &mut again);
                }
            }
            kind::DATA => {
                let _ = frame::data::Data::decode(&h, payload);
            }
            kind::HEADERS => {
                let _ = frame::headers::Headers::decode(&h, payload);
            }
            kind::PRIORITY => {
                let _ = frame::priority::decode(&h, payload);
            }
            kind::RST_STREAM => {
                let _ = frame::rst_stream::decode(&h, payload);
            }
            kind::GOAWAY => {
                let _ = frame::goaway::decode(&h, payload);
            }
            _ => {}
        }
        if !again.is_empty() {
            let h2 = Header::parse(&again).unwrap();
            let mut want = payload.to_vec();
            if h.kind == kind::WINDOW_UPDATE {
                want[0] &= 0x7f; // the reserved bit is not kept (§6.9)
            }
            assert_eq!(
                again[HEADER_LEN..],
                want,
                "decode then encode gives the payload"
            );
            assert_eq!((h2.kind, h2.len), (h.kind, h.len));
        }
        at += HEADER_LEN + h.len;
    }
}

/// HPACK: any block decodes to fields within the limits, or is refused; decoded
/// fields encoded again decode to the same fields (decode ∘ encode is the identity),
/// and a table that refused a block is never used again (its connection ends).
pub fn hpack(data: &[u8]) {
    let (max_list, max_fields) = (16 * 1024, 128);
    let mut fields: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    let mut decoder = Decoder::default();
    let result = decoder.decode(data, max_list, max_fields, &mut |n, v| {
        fields.push((n.to_vec(), v.to_vec()));
    });
    let listed: usize = fields.iter().map(|(n, v)| n.len() + v.len() + 32).sum();
    assert!(listed <= max_list && fields.len() <= max_fields);
    if matches!(
        result,
        Err(HpackError::TooLarge | HpackError::Compression(_))
    ) {
        return;
    }
    let mut block = Vec::new();
    let mut encoder = Encoder::default();
    encoder.encode(fields.iter().map(|(n, v)| (&n[..], &v[..])), &mut block);
    let mut again = Vec::new();
    Decoder::default()
        .decode(&block, usize::MAX, usize::MAX, &mut |n, v| {
            again.push((n.to_vec(), v.to_vec()))
        })
        .expect("what we encode decodes");
    assert_eq!(again, fields);
}
