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
