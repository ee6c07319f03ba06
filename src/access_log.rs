//! The access log [L]: one line per request answered, in combined format followed by
//! the request time and the backend address:
//!
//! `1.2.3.4 - - [24/Nov/2026:10:00:00 +0000] "GET /a HTTP/1.1" 200 512 "-" "curl/8" 0.003 127.0.0.1:7999`
//!
//! Workers format the line and hand it to one writer thread over a channel, so no
//! worker ever waits on the disk. The writer buffers, flushes at least once a second
//! and on request (shutdown), and reopens the file on SIGUSR1 (logrotate) or when a
//! reload names another path. If writing fails, serving goes on and one warning says so.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant, SystemTime};

/// What one line says.
#[derive(Debug, Clone)]
pub struct Entry {
    pub client: IpAddr,
    /// When the request began (its head started to arrive).
    pub started: SystemTime,
    /// `METHOD target HTTP/1.x` as read; `None` when no request line was read.
    pub request_line: Option<String>,
    pub status: u16,
    /// Body bytes sent to the client (after the 101 head, for a tunnel).
    pub body_bytes: u64,
    pub referer: Option<Vec<u8>>,
    pub user_agent: Option<Vec<u8>>,
    pub elapsed: Duration,
    /// The backend authority, when one was used.
    pub upstream: Option<String>,
}

impl Entry {
    /// The log line, with its newline.
    pub fn format(&self) -> String {
        let quoted = |v: Option<&[u8]>| v.map_or_else(|| "-".to_string(), escape);
        format!(
            "{} - - [{}] \"{}\" {} {} \"{}\" \"{}\" {}.{:03} {}\n",
            self.client,
            crate::httpdate::common_log(self.started),
            quoted(self.request_line.as_deref().map(str::as_bytes)),
            self.status,
            self.body_bytes,
            quoted(self.referer.as_deref()),
            quoted(self.user_agent.as_deref()),
            self.elapsed.as_secs(),
            self.elapsed.subsec_millis(),
            self.upstream.as_deref().unwrap_or("-"),
        )
    }
}

/// Printable ASCII as it is; `"`, `\` and every other byte as `\xHH` (as nginx does),
/// so a field can never end the quoted string or the line early.
fn escape(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\' {
            out.push(b as char);
        } else {
            out.push_str(&format!("\\x{b:02X}"));
        }
    }
    out
}

/// Lines reach the file at most this long after they were written [L].
const FLUSH_EVERY: Duration = Duration::from_secs(1);

enum Msg {
    Line(String),
    /// Reopen at this path (or stop logging with `None`).
    Reopen(Option<PathBuf>),
    /// Flush, then answer.
    Flush(Sender<()>),
}

/// The handle workers write through. Without `accessLog` it drops every line.
pub struct AccessLog {
    tx: Option<Sender<Msg>>,
}

impl AccessLog {
    /// Opens `path` (creating parent directories) and starts the writer thread.
    pub fn start(path: Option<&Path>) -> Result<AccessLog, String> {
        let Some(path) = path else {
            return Ok(AccessLog { tx: None });
        };
        let file = open(path).map_err(|e| format!("accessLog {}: {e}", path.display()))?;
        let (tx, rx) = mpsc::channel();
        let path = path.to_path_buf();
        std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || write_lines(rx, path, file))
            .map_err(|e| format!("cannot start the access log: {e}"))?;
        Ok(AccessLog { tx: Some(tx) })
    }

    pub fn is_on(&self) -> bool {
        self.tx.is_some()
    }

    pub fn write(&self, entry: &Entry) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(Msg::Line(entry.format()));
        }
    }

    /// Reopens the file at `path` (SIGUSR1: the same path, after logrotate renamed it).
    pub fn reopen(&self, path: Option<PathBuf>) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(Msg::Reopen(path));
        }
    }

    /// Writes out every line sent so far (shutdown).
    pub fn flush(&self) {
        if let Some(tx) = &self.tx {
            let (ack, done) = mpsc::channel();
            if tx.send(Msg::Flush(ack)).is_ok() {
                let _ = done.recv_timeout(Duration::from_secs(5));
            }
        }
    }
}

fn open(path: &Path) -> std::io::Result<File> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    OpenOptions::new().create(true).append(true).open(path)
}

/// The writer thread.
fn write_lines(rx: Receiver<Msg>, mut path: PathBuf, file: File) {
    let mut out = Some(BufWriter::with_capacity(64 * 1024, file));
    let mut failing = false; // a warning was given and writing has not recovered
    let mut report = |result: std::io::Result<()>, path: &Path| match result {
        Err(e) if !failing => {
            crate::warn!("access log {}: {e}; lines are being lost", path.display());
            failing = true;
        }
        Err(_) => {}
        Ok(()) => failing = false,
    };
    let mut next_flush = Instant::now() + FLUSH_EVERY;
    loop {
        let msg = rx.recv_timeout(next_flush.saturating_duration_since(Instant::now()));
        match msg {
            Ok(Msg::Line(line)) => {
                if let Some(w) = &mut out {
                    report(w.write_all(line.as_bytes()), &path);
                }
                if Instant::now() < next_flush {
                    continue; // a busy log is flushed by the buffer filling or the clock
                }
                if let Some(w) = &mut out {
                    report(w.flush(), &path);
                }
            }
            Ok(Msg::Reopen(new_path)) => {
                if let Some(mut w) = out.take() {
                    report(w.flush(), &path);
                }
                if let Some(new_path) = new_path {
                    path = new_path;
                    match open(&path) {
                        Ok(file) => out = Some(BufWriter::with_capacity(64 * 1024, file)),
                        Err(e) => report(Err(e), &path),
                    }
                }
            }
            Ok(Msg::Flush(ack)) => {
                if let Some(w) = &mut out {
                    report(w.flush(), &path);
                }
                let _ = ack.send(());
            }
            Err(RecvTimeoutError::Timeout) => {
                if let Some(w) = &mut out {
                    report(w.flush(), &path);
                }
            }
            Err(RecvTimeoutError::Disconnected) => return,
        }
        next_flush = Instant::now() + FLUSH_EVERY;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    fn entry() -> Entry {
        Entry {
            client: "1.2.3.4".parse().unwrap(),
            started: UNIX_EPOCH + Duration::from_secs(1_795_478_400 + 36_000),
            request_line: Some("GET /a HTTP/1.1".into()),
            status: 200,
            body_bytes: 512,
            referer: None,
            user_agent: Some(b"curl/8".to_vec()),
            elapsed: Duration::from_micros(3_400),
            upstream: Some("127.0.0.1:7999".into()),
        }
    }

    #[test]
    fn combined_format_with_time_and_upstream() {
        assert_eq!(
            entry().format(),
            "1.2.3.4 - - [24/Nov/2026:10:00:00 +0000] \"GET /a HTTP/1.1\" 200 512 \"-\" \"curl/8\" 0.003 127.0.0.1:7999\n"
        );
    }

    #[test]
    fn no_request_line_and_no_upstream_are_dashes() {
        let e = Entry {
            request_line: None,
            upstream: None,
            user_agent: None,
            status: 400,
            ..entry()
        };
        assert!(
            e.format().contains("] \"-\" 400 512 \"-\" \"-\" 0.003 -\n"),
            "{}",
            e.format()
        );
    }

    #[test]
    fn quotes_and_controls_are_escaped() {
        let e = Entry {
            user_agent: Some(b"a\"b\\c\nd\xff".to_vec()),
            ..entry()
        };
        assert!(
            e.format().contains("\"a\\x22b\\x5Cc\\x0Ad\\xFF\""),
            "{}",
            e.format()
        );
    }
}
