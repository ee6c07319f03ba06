//! Bytes → `RequestHead` / `ResponseHead` with httparse, plus the strictness httparse
//! leaves to us [E]. Pure: no sockets here; `conn.rs` and `proxy.rs` do the reading.
//!
//! httparse accepts a bare LF as a line ending and is silent on some byte classes;
//! a proxy that is more lenient than the backend behind it can be smuggled through,
//! so every head is checked here before anything is forwarded.

use std::time::Duration;

use crate::error::HeadError;

/// Most fields a head may carry; more is treated like a head over `maxHeaderBytes`.
const MAX_FIELDS: usize = 128;

/// The fields of a head in order, each value without surrounding whitespace; names
/// and values live in one buffer, so a head costs two allocations however many
/// fields it has.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldList {
    bytes: Vec<u8>,
    /// Per field, where its name ends and where its value ends in `bytes`; each
    /// name starts where the field before ended.
    ends: Vec<(u32, u32)>,
}

impl FieldList {
    fn with_capacity(fields: usize, bytes: usize) -> FieldList {
        FieldList {
            bytes: Vec::with_capacity(bytes),
            ends: Vec::with_capacity(fields),
        }
    }

    pub fn push(&mut self, name: &[u8], value: &[u8]) {
        self.bytes.extend_from_slice(name);
        let name_end = self.bytes.len();
        self.bytes.extend_from_slice(value);
        let end = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        self.ends.push((end(name_end), end(self.bytes.len())));
    }

    /// Pushes a field with its name in lower case (as HTTP/2 writes names).
    pub fn push_lower(&mut self, name: &[u8], value: &[u8]) {
        let start = self.bytes.len();
        self.push(name, value);
        self.bytes[start..start + name.len()].make_ascii_lowercase();
    }

    /// `(name, value)` of each field, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        let mut start = 0;
        self.ends.iter().map(move |&(name_end, end)| {
            let (name_end, end) = (name_end as usize, end as usize);
            let field = (&self.bytes[start..name_end], &self.bytes[name_end..end]);
            start = end;
            field
        })
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// The bytes the fields take as `Name: value` lines.
    pub fn wire_len(&self) -> usize {
        self.bytes.len() + 4 * self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }
}

impl<'a> FromIterator<(&'a str, &'a str)> for FieldList {
    fn from_iter<I: IntoIterator<Item = (&'a str, &'a str)>>(fields: I) -> FieldList {
        let mut list = FieldList::default();
        for (name, value) in fields {
            list.push(name.as_bytes(), value.as_bytes());
        }
        list
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    pub method: String,
    /// The request target as received: path and query, not decoded [R1].
    pub target: String,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor: u8,
    pub fields: FieldList,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    pub minor: u8,
    pub status: u16,
    /// The reason phrase as the backend wrote it [R3].
    pub reason: Vec<u8>,
    pub fields: FieldList,
}

/// Lookups shared by both heads.
pub trait Fields {
    fn fields(&self) -> &FieldList;

    /// Every value of the field `name`, in order.
    fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.fields()
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, value)| value)
    }

    fn first(&self, name: &str) -> Option<&[u8]> {
        let name = name.as_bytes();
        let mut fields = self.fields().iter();
        fields
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, value)| value)
    }

    /// Whether the comma-separated list field `name` holds `token` (any case).
    fn has_token(&self, name: &str, token: &str) -> bool {
        self.values(name)
            .flat_map(list_items)
            .any(|item| item.eq_ignore_ascii_case(token.as_bytes()))
    }
}

impl Fields for RequestHead {
    fn fields(&self) -> &FieldList {
        &self.fields
    }
}

impl Fields for ResponseHead {
    fn fields(&self) -> &FieldList {
        &self.fields
    }
}

/// Hop-by-hop fields (RFC 9110 §7.6.1): they stop at hawkey in both directions.
pub const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "http2-settings",
];

/// Fields hawkey writes itself on a forwarded request; the client's copies are dropped [R2].
pub const SET_ON_REQUEST: [&str; 6] = [
    "host",
    "content-length",
    "x-real-ip",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
];

/// Fields RFC 9110 §6.5.1 keeps out of trailers besides the ones above: they route,
/// authenticate, modify or frame the message, and a recipient that merged trailers
/// into the head would act on them.
const NOT_IN_TRAILERS: [&str; 20] = [
    "forwarded",
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "expect",
    "max-forwards",
    "range",
    "if-match",
    "if-none-match",
    "if-modified-since",
    "if-unmodified-since",
    "if-range",
    "cache-control",
    "pragma",
    "content-encoding",
    "content-type",
    "content-range",
    "location",
    "retry-after",
];

/// Whether the field `name` is `known` (lower case) when each `_` is read as `-`:
/// CGI, WSGI and PHP backends see `X_Forwarded_For` and `X-Forwarded-For` alike,
/// as `HTTP_X_FORWARDED_FOR`.
pub fn is_named_like(name: &[u8], known: &str) -> bool {
    name.len() == known.len()
        && name
            .iter()
            .zip(known.bytes())
            .all(|(&a, b)| a.eq_ignore_ascii_case(&b) || (a == b'_' && b == b'-'))
}

/// [R2]: whether a trailer field may be passed on. Framing, `Host`, hop-by-hop
/// fields, the fields hawkey sets and the rest of RFC 9110 §6.5.1's list are
/// dropped, in their underscore spellings too.
pub fn allowed_in_trailer(name: &[u8]) -> bool {
    let known = HOP_BY_HOP
        .iter()
        .chain(&SET_ON_REQUEST)
        .chain(&NOT_IN_TRAILERS);
    !known.into_iter().any(|k| is_named_like(name, k))
}

/// `Keep-Alive: timeout=N` → N seconds.
pub fn keep_alive_hint(value: &[u8]) -> Option<Duration> {
    list_items(value).find_map(|item| {
        let (k, v) = std::str::from_utf8(item).ok()?.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("timeout")
            .then(|| v.trim().parse().ok())
            .flatten()
            .map(Duration::from_secs)
    })
}

/// The items of a comma-separated field value, trimmed, empty ones skipped.
pub fn list_items(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(|item| item.trim_ascii())
        .filter(|item| !item.is_empty())
}

/// How far a partial head has been looked at, so that each byte is scanned once
/// however the head arrives: a 64 KiB head dribbled a byte at a time costs linear
/// time, not a scan of the whole head per byte [E]. A new head starts from
/// `HeadScan::default()`; between calls its buffer may only grow at the end.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct HeadScan {
    /// Bytes scanned so far for the empty line that ends the head.
    scanned: usize,
    /// Where the line being scanned starts.
    line_start: usize,
    /// Just past the first line that is not empty (the request line), once seen.
    first_line_end: Option<usize>,
    /// The request line was checked.
    first_line_checked: bool,
}

impl HeadScan {
    /// Where the head ends (just past the empty line), checking line endings on the
    /// way; resumes where the last call stopped.
    ///
    /// RFC 9112 §2.2: a recipient MAY accept a bare LF as a line terminator. We
    /// don't: a backend that disagrees would see a different set of fields (request
    /// smuggling).
    fn find_end(&mut self, buf: &[u8]) -> Result<Option<usize>, &'static str> {
        let mut prev = match self.scanned {
            0 => 0,
            n => buf[n - 1],
        };
        for (i, &b) in buf.iter().enumerate().skip(self.scanned) {
            if prev == b'\r' && b != b'\n' {
                return Err("bare CR in the head");
            }
            if b == b'\n' {
                if prev != b'\r' {
                    return Err("bare LF line ending");
                }
                if i == self.line_start + 1 && i > 1 {
                    return Ok(Some(i + 1)); // this line was empty: the head ends here
                }
                if i > self.line_start + 1 && self.first_line_end.is_none() {
                    self.first_line_end = Some(i + 1);
                }
                self.line_start = i + 1;
            }
            prev = b;
        }
        self.scanned = buf.len();
        Ok(None)
    }
}

/// Whether the request whose bytes start `buf` is a HEAD (its answers carry no body),
/// read from its first bytes, before or without a whole head; empty lines before
/// the request line are skipped as the parser skips them.
pub fn starts_head_request(buf: &[u8]) -> bool {
    let start = buf
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(buf.len());
    buf[start..].starts_with(b"HEAD ")
}

/// Parses a request head from the start of `buf`. `Ok(None)`: not complete yet.
/// `Ok(Some((head, len)))`: the head took the first `len` bytes.
pub fn parse_request(buf: &[u8]) -> Result<Option<(RequestHead, usize)>, HeadError> {
    parse_request_resumed(buf, &mut HeadScan::default())
}

/// `parse_request` for a head that arrives in pieces: `scan` remembers what earlier
/// calls on the same (grown) buffer looked at.
pub fn parse_request_resumed(
    buf: &[u8],
    scan: &mut HeadScan,
) -> Result<Option<(RequestHead, usize)>, HeadError> {
    let Some(end) = scan.find_end(buf).map_err(HeadError::Malformed)? else {
        // The request line is parsed as soon as it is whole, so that a bad one (an
        // HTTP/0.9 `GET /` that will never be followed by an empty line) is refused
        // at once.
        if let Some(end) = scan.first_line_end.filter(|_| !scan.first_line_checked) {
            scan.first_line_checked = true;
            let line = &buf[..end];
            let mut raw = [httparse::EMPTY_HEADER; 1];
            match httparse::Request::new(&mut raw).parse(line) {
                Ok(_) => {}
                Err(httparse::Error::Version) => return Err(version_error(line)),
                Err(_) => return Err(HeadError::Malformed("bad request line")),
            }
        }
        return Ok(None);
    };
    let mut raw = [httparse::EMPTY_HEADER; MAX_FIELDS];
    let mut req = httparse::Request::new(&mut raw);
    let head = &buf[..end];
    match req.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => {
            return Err(HeadError::Malformed("incomplete request line"));
        }
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
        Err(httparse::Error::Version) => return Err(version_error(head)),
        Err(_) => return Err(HeadError::Malformed("bad request line or header field")),
    }
    let fields = collect_fields(req.headers).map_err(HeadError::Malformed)?;
    let head = RequestHead {
        method: req.method.unwrap_or_default().to_string(),
        target: req.path.unwrap_or_default().to_string(),
        minor: req.version.unwrap_or(1),
        fields,
    };
    if head.minor == 1 && head.first("host").is_none() {
        return Err(HeadError::MissingHost);
    }
    if head.values("host").nth(1).is_some() {
        return Err(HeadError::Malformed("more than one Host field"));
    }
    Ok(Some((head, end)))
}

/// Parses a response head from the start of `buf`, as `parse_request` does.
pub fn parse_response(buf: &[u8]) -> Result<Option<(ResponseHead, usize)>, &'static str> {
    let end = match HeadScan::default().find_end(buf)? {
        Some(end) => end,
        None => return Ok(None),
    };
    let mut raw = [httparse::EMPTY_HEADER; MAX_FIELDS];
    let mut res = httparse::Response::new(&mut raw);
    match res.parse(&buf[..end]) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err("incomplete status line"),
        Err(httparse::Error::TooManyHeaders) => return Err("too many header fields"),
        Err(_) => return Err("bad status line or header field"),
    }
    let fields = collect_fields(res.headers)?;
    let status = res.code.unwrap_or(0);
    if !(100..=999).contains(&status) {
        return Err("bad status code");
    }
    // "HTTP/1.1 200 OK": the reason starts after the second space, if there is one.
    let line = &buf[..buf.iter().position(|&b| b == b'\r').unwrap_or(0)];
    let reason = line.get(13..).unwrap_or_default().to_vec();
    let head = ResponseHead {
        minor: res.version.unwrap_or(1),
        status,
        reason,
        fields,
    };
    Ok(Some((head, end)))
}

/// A version httparse refused: written out like `HTTP/2.0` it is a 505, anything else
/// (an HTTP/0.9 `GET /` line, garbage) a 400.
fn version_error(head: &[u8]) -> HeadError {
    let line = head.split(|&b| b == b'\r').next().unwrap_or_default();
    let version = line.rsplit(|&b| b == b' ').next().unwrap_or_default();
    match version {
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit() =>
        {
            if line.split(|&b| b == b' ').count() == 3 {
                HeadError::Version
            } else {
                HeadError::Malformed("bad request line")
            }
        }
        [b'H', b'T', b'T', b'P', b'/', major] if major.is_ascii_digit() => HeadError::Version,
        _ => HeadError::Malformed("bad request line"),
    }
}

/// Copies httparse's fields out, refusing what RFC 9110 §5.5 forbids in a value:
/// CR, LF and NUL always, and we also refuse the other C0 controls and DEL (HTAB is
/// fine), since a backend may treat them as separators.
fn collect_fields(raw: &[httparse::Header<'_>]) -> Result<FieldList, &'static str> {
    let bytes = raw.iter().map(|h| h.name.len() + h.value.len()).sum();
    let mut fields = FieldList::with_capacity(raw.len(), bytes);
    for h in raw {
        if h.value
            .iter()
            .any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f)
        {
            return Err("control byte in a header field");
        }
        fields.push(h.name.as_bytes(), h.value.trim_ascii());
    }
    Ok(fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(wire: &[u8]) -> Result<Option<(RequestHead, usize)>, HeadError> {
        parse_request(wire)
    }

    #[test]
    fn every_prefix_of_a_good_head_is_partial() {
        let wire = b"GET /a?b=c HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n";
        for cut in 0..wire.len() {
            assert!(req(&wire[..cut]).unwrap().is_none(), "cut at {cut}");
        }
        let (head, len) = req(wire).unwrap().unwrap();
        assert_eq!(len, wire.len());
        assert_eq!(
            (head.method.as_str(), head.target.as_str(), head.minor),
            ("GET", "/a?b=c", 1)
        );
        assert_eq!(head.first("ACCEPT"), Some(&b"*/*"[..]));
    }

    /// Feeds `wire` to one `HeadScan` in pieces ending at `cuts`, then whole.
    fn resumed(wire: &[u8], cuts: &[usize]) -> Result<Option<(RequestHead, usize)>, HeadError> {
        let mut scan = HeadScan::default();
        for &cut in cuts {
            if parse_request_resumed(&wire[..cut], &mut scan)?.is_some() {
                break;
            }
        }
        parse_request_resumed(wire, &mut scan)
    }

    #[test]
    fn a_head_in_pieces_parses_as_it_does_whole() {
        let good = b"\r\nGET /a HTTP/1.1\r\nHost: x\r\nA: b\r\n\r\nrest".as_slice();
        let bad: [&[u8]; 5] = [
            b"GET / HTTP/1.1\r\nHost: x\rA: b\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\nA: b\r\n\r\n",
            b"GET /\r\nHost: x\r\n\r\n",
            b"GET / HTTP/2.0\r\nHost: x\r\n\r\n",
            b"GET / HTTP/1.1\r\nHo st: x\r\n\r\n",
        ];
        for wire in [good].iter().chain(&bad) {
            let outcome = |r: Result<Option<(RequestHead, usize)>, HeadError>| {
                r.map(|h| h.map(|(h, len)| (h.target, len)))
                    .map_err(HeadError::status)
            };
            let whole = outcome(parse_request(wire));
            let every_byte: Vec<usize> = (0..wire.len()).collect();
            for cuts in (0..=wire.len()).map(|c| vec![c]).chain([every_byte]) {
                let got = outcome(resumed(wire, &cuts));
                assert_eq!(
                    got,
                    whole,
                    "{:?} cut at {cuts:?}",
                    String::from_utf8_lossy(wire)
                );
            }
        }
    }

    #[test]
    fn a_bad_request_line_is_refused_before_the_head_ends() {
        assert_eq!(
            parse_request(b"GET /\r\nHost: x\r\n").unwrap_err().status(),
            400
        );
        let mut scan = HeadScan::default();
        assert!(
            parse_request_resumed(b"GET / HTTP/1.1\r", &mut scan)
                .unwrap()
                .is_none()
        );
        assert!(parse_request_resumed(b"GET / HTTP/1.1\rX", &mut scan).is_err());
    }

    #[test]
    fn keep_alive_hints() {
        assert_eq!(
            keep_alive_hint(b"timeout=5, max=100"),
            Some(std::time::Duration::from_secs(5))
        );
        assert_eq!(keep_alive_hint(b"max=100"), None);
    }

    #[test]
    fn bytes_after_the_head_are_left() {
        let wire = b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET /next";
        let (_, len) = req(wire).unwrap().unwrap();
        assert_eq!(&wire[len..], b"GET /next");
    }

    #[test]
    fn refusals() {
        let cases: &[(&[u8], u16)] = &[
            (b"GET / HTTP/1.1\nHost: x\n\n", 400),     // bare LF
            (b"GET / HTTP/1.1\r\nHost: x\n\r\n", 400), // one bare LF
            (b"GET / HTTP/1.1\r\nHost: x\r\nA: b\r\n c\r\n\r\n", 400), // obs-fold
            (b"GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400), // space before colon
            (b"GET / HTTP/1.1\r\nHost: x\r\nA: b\x00c\r\n\r\n", 400), // NUL
            (b"GET / HTTP/1.1\r\nHost: x\r\nA: b\x01c\r\n\r\n", 400), // other C0
            (b"GET / HTTP/1.1\r\nHost: x\r\nA: b\x7fc\r\n\r\n", 400), // DEL
            (b"GET / HTTP/1.1\r\nHost: x\r\nA: b\rc\r\n\r\n", 400), // bare CR
            (b"GET  / HTTP/1.1\r\nHost: x\r\n\r\n", 400), // double space
            (b"GET / HTTP/1.1\r\n\r\n", 400),          // no Host
            (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400), // two Hosts
            (b"GET /\r\n\r\n", 400),                   // HTTP/0.9
            (b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505),
            (b"GET / HTTP/3.0\r\nHost: x\r\n\r\n", 505),
            (b"GET / HTTP/0.9\r\nHost: x\r\n\r\n", 505),
        ];
        for (wire, status) in cases {
            let got = req(wire).map(|_| ()).unwrap_err().status();
            assert_eq!(got, *status, "{:?}", String::from_utf8_lossy(wire));
        }
    }

    #[test]
    fn tab_in_a_value_and_http10_without_host_are_fine() {
        let (head, _) = req(b"GET / HTTP/1.0\r\nA: b\tc\r\n\r\n").unwrap().unwrap();
        assert_eq!(head.minor, 0);
        assert_eq!(head.first("a"), Some(&b"b\tc"[..]));
    }

    #[test]
    fn too_many_fields_is_too_large() {
        let mut wire = b"GET / HTTP/1.1\r\nHost: x\r\n".to_vec();
        for i in 0..MAX_FIELDS {
            wire.extend_from_slice(format!("F{i}: v\r\n").as_bytes());
        }
        wire.extend_from_slice(b"\r\n");
        assert_eq!(req(&wire).unwrap_err(), HeadError::TooLarge);
    }

    #[test]
    fn connection_tokens_any_case() {
        let (head, _) =
            req(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, Upgrade\r\n\r\n")
                .unwrap()
                .unwrap();
        assert!(head.has_token("connection", "upgrade"));
        assert!(!head.has_token("connection", "close"));
    }

    #[test]
    fn response_reason_is_kept_as_written() {
        let wire = b"HTTP/1.1 200 Very Fine\r\nContent-Length: 0\r\n\r\n";
        for cut in 0..wire.len() {
            assert!(
                parse_response(&wire[..cut]).unwrap().is_none(),
                "cut at {cut}"
            );
        }
        let (head, len) = parse_response(wire).unwrap().unwrap();
        assert_eq!(
            (head.status, &head.reason[..], len),
            (200, &b"Very Fine"[..], wire.len())
        );
        let (head, _) = parse_response(b"HTTP/1.0 204\r\n\r\n").unwrap().unwrap();
        assert_eq!((head.minor, head.status, head.reason.len()), (0, 204, 0));
    }

    #[test]
    fn response_refusals() {
        assert!(parse_response(b"HTTP/1.1 200 OK\nA: b\n\n").is_err());
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nA: b\x00\r\n\r\n").is_err());
        assert!(parse_response(b"garbage\r\n\r\n").is_err());
        assert!(parse_response(b"HTTP/1.1 20 OK\r\n\r\n").is_err());
    }
}
