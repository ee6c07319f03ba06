//! Files under `/<staticDir>/` [S]: the path resolved without ever leaving
//! `serverRoot/staticDir`, then the file streamed with its type, length, dates and
//! validators, a single byte range, or a 304.
//!
//! Resolution is strict in two steps. Each segment of the raw path is percent-decoded
//! on its own and refused if it decodes to `.`, `..`, or holds `/`, `\` or NUL; so
//! `%2e%2e`, `%2f` and `%5c` cannot climb. Then the joined path is canonicalised
//! (resolving symlinks) and must still lie inside the canonical root: a symlink that
//! points outside is a 404, one that stays inside is followed.
//!
//! `answer` decides what a request gets (a status, fields and a part of a file) with
//! no protocol in it; `conn.rs` writes that on an HTTP/1 connection.

use std::fs::{File, Metadata};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::head::{Fields, RequestHead, list_items};
use crate::httpdate::{http_date, parse_http_date};

/// The relative path segments of a static target (after the `/<staticDir>/` prefix),
/// decoded; `None` when the path is refused.
pub fn segments(rest: &str) -> Option<Vec<Vec<u8>>> {
    let path = rest.split(['?', '#']).next().unwrap_or_default();
    let mut out = Vec::new();
    for raw in path.split('/').filter(|s| !s.is_empty()) {
        let seg = percent_decode(raw)?;
        if seg == b"." || seg == b".." || seg.iter().any(|b| matches!(b, b'/' | b'\\' | 0)) {
            return None;
        }
        out.push(seg);
    }
    Some(out)
}

fn percent_decode(s: &str) -> Option<Vec<u8>> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Some(out)
}

/// The file a static target names inside `root` (canonical), following a directory
/// to its `index.html`; `None` for anything missing, refused, or outside.
pub fn resolve(root: &Path, rest: &str) -> Option<(PathBuf, Metadata)> {
    let mut path = root.to_path_buf();
    for seg in segments(rest)? {
        path.push(std::ffi::OsStr::from_bytes(&seg));
    }
    let inside = |p: &Path| p.canonicalize().ok().filter(|c| c.starts_with(root));
    let mut file = inside(&path)?;
    if file.is_dir() {
        file = inside(&file.join("index.html"))?;
    }
    let meta = std::fs::metadata(&file).ok()?;
    meta.is_file().then_some((file, meta))
}

/// `Content-Type` from the extension; text types say UTF-8.
pub fn content_type(path: &Path) -> &'static str {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    match ext.as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "json" | "map" => "application/json; charset=utf-8",
        "txt" | "md" => "text/plain; charset=utf-8",
        "csv" => "text/csv; charset=utf-8",
        "xml" => "application/xml; charset=utf-8",
        "svg" => "image/svg+xml; charset=utf-8",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "avif" => "image/avif",
        "ico" => "image/x-icon",
        "woff" => "font/woff",
        "woff2" => "font/woff2",
        "ttf" => "font/ttf",
        "otf" => "font/otf",
        "pdf" => "application/pdf",
        "wasm" => "application/wasm",
        "mp4" => "video/mp4",
        "webm" => "video/webm",
        "mp3" => "audio/mpeg",
        "ogg" => "audio/ogg",
        "wav" => "audio/wav",
        "zip" => "application/zip",
        "gz" => "application/gzip",
        _ => "application/octet-stream",
    }
}

/// What a `Range` field asks of a file of `size` bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum Range {
    /// No range, one we ignore (several ranges, bad syntax): the whole file.
    Whole,
    /// Bytes `first..=last`.
    Part(u64, u64),
    /// A range that starts past the end: 416.
    Unsatisfiable,
}

/// RFC 9110 §14.1.2: `bytes=a-b`, `bytes=a-`, `bytes=-n`. Several ranges are answered
/// with the whole file (allowed: a server MAY ignore Range).
pub fn parse_range(value: &str, size: u64) -> Range {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return Range::Whole;
    };
    if spec.contains(',') {
        return Range::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return Range::Whole;
    };
    let number = |s: &str| {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse::<u64>().ok())
            .flatten()
    };
    match (number(first), number(last), last.is_empty()) {
        (None, Some(n), _) if first.is_empty() => match n {
            0 => Range::Unsatisfiable,
            _ if size == 0 => Range::Unsatisfiable,
            _ => Range::Part(size.saturating_sub(n), size - 1),
        },
        (Some(a), _, _) if a >= size => Range::Unsatisfiable,
        (Some(a), None, true) => Range::Part(a, size - 1),
        (Some(a), Some(b), _) if b >= a => Range::Part(a, b.min(size - 1)),
        _ => Range::Whole,
    }
}

/// A strong validator from the file's size and modification time.
fn etag(meta: &Metadata) -> String {
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .unwrap_or_default();
    format!(
        "\"{:x}-{:x}-{:x}\"",
        mtime.as_secs(),
        mtime.subsec_nanos(),
        meta.len()
    )
}

/// RFC 9110 §13.1.2 and §13.1.3: If-None-Match decides when present (weak comparison);
/// otherwise If-Modified-Since, at a resolution of seconds.
fn not_modified(req: &RequestHead, etag: &str, modified: SystemTime) -> bool {
    if let Some(inm) = req.first("if-none-match") {
        let strip = |t: &[u8]| t.strip_prefix(b"W/").unwrap_or(t).to_vec();
        return inm == b"*" || list_items(inm).any(|t| strip(t) == etag.as_bytes());
    }
    let since = req
        .first("if-modified-since")
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(parse_http_date);
    let secs = |t: SystemTime| t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    since.is_some_and(|since| secs(modified) <= secs(since))
}

/// What a static request is answered with [S], whatever the protocol that carries it.
#[derive(Debug)]
pub enum Answer {
    /// An answer of hawkey's own (404, 416) with a short text body, and these fields.
    Local(u16, Vec<(&'static str, String)>),
    /// A 200, 206 or 304 with these fields (`Content-Length` included when a body
    /// follows), and the part of the file to send (none for 304 and HEAD).
    File {
        status: u16,
        fields: Vec<(&'static str, String)>,
        body: Option<FilePart>,
    },
}

/// `len` bytes of `file` from offset `first`.
#[derive(Debug)]
pub struct FilePart {
    pub file: File,
    pub first: u64,
    pub len: u64,
}

/// The answer to a GET or HEAD for `rest` (the target after the prefix).
pub fn answer(root: Option<&Path>, req: &RequestHead, rest: &str) -> Answer {
    let Some((path, meta)) = root.and_then(|root| resolve(root, rest)) else {
        return Answer::Local(404, Vec::new());
    };
    let Ok(file) = File::open(&path) else {
        return Answer::Local(404, Vec::new());
    };
    let size = meta.len();
    let modified = meta.modified().unwrap_or(UNIX_EPOCH);
    let (etag, last_modified) = (etag(&meta), http_date(modified));
    let mut fields = vec![
        ("ETag", etag.clone()),
        ("Last-Modified", last_modified.clone()),
    ];
    if not_modified(req, &etag, modified) {
        return Answer::File {
            status: 304,
            fields,
            body: None,
        };
    }
    // If-Range (RFC 9110 §13.1.5): a range only when the validator still matches.
    let range_applies = req
        .first("if-range")
        .is_none_or(|v| v == etag.as_bytes() || v == last_modified.as_bytes());
    let range = match req.first("range").and_then(|v| std::str::from_utf8(v).ok()) {
        Some(value) if range_applies => parse_range(value, size),
        _ => Range::Whole,
    };
    fields.insert(0, ("Content-Type", content_type(&path).to_string()));
    fields.push(("Accept-Ranges", "bytes".to_string()));
    let (status, first, len) = match range {
        Range::Whole => (200, 0, size),
        Range::Part(a, b) => {
            fields.push(("Content-Range", format!("bytes {a}-{b}/{size}")));
            (206, a, b - a + 1)
        }
        Range::Unsatisfiable => {
            return Answer::Local(416, vec![("Content-Range", format!("bytes */{size}"))]);
        }
    };
    fields.push(("Content-Length", len.to_string()));
    let body = (req.method != "HEAD").then_some(FilePart { file, first, len });
    Answer::File {
        status,
        fields,
        body,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_refuse_every_escape() {
        assert_eq!(
            segments("a/b.css?x=1").unwrap(),
            vec![b"a".to_vec(), b"b.css".to_vec()]
        );
        assert_eq!(segments("a%20b").unwrap(), vec![b"a b".to_vec()]);
        assert_eq!(segments("").unwrap(), Vec::<Vec<u8>>::new());
        for bad in [
            "..", "a/../b", "%2e%2e/x", "%2E%2e", ".%2e", "a%2fb", "a%2Fb", "a%5cb", "a%00b", ".",
            "%zz", "a%2",
        ] {
            assert!(segments(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9", 100), Range::Part(0, 9));
        assert_eq!(parse_range("bytes=90-", 100), Range::Part(90, 99));
        assert_eq!(parse_range("bytes=-10", 100), Range::Part(90, 99));
        assert_eq!(parse_range("bytes=-200", 100), Range::Part(0, 99));
        assert_eq!(parse_range("bytes=50-500", 100), Range::Part(50, 99));
        assert_eq!(parse_range("bytes=100-", 100), Range::Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", 100), Range::Unsatisfiable);
        assert_eq!(parse_range("bytes=0-1,5-6", 100), Range::Whole);
        assert_eq!(parse_range("bytes=9-1", 100), Range::Whole);
        assert_eq!(parse_range("items=0-1", 100), Range::Whole);
        assert_eq!(parse_range("bytes=x-1", 100), Range::Whole);
        assert_eq!(parse_range("bytes=0-", 0), Range::Unsatisfiable);
    }

    #[test]
    fn types() {
        assert_eq!(
            content_type(Path::new("a/index.HTML")),
            "text/html; charset=utf-8"
        );
        assert_eq!(content_type(Path::new("x.png")), "image/png");
        assert_eq!(content_type(Path::new("noext")), "application/octet-stream");
    }
}
