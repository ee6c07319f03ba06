//! The access log [L]: one line per request answered, in combined format followed by
//! the request time and the backend address:
//!
//! `1.2.3.4 - - [24/Nov/2026:10:00:00 +0000] "GET /a HTTP/1.1" 200 512 "-" "curl/8" 0.003 127.0.0.1:7999`
//!
//! The loops format the line and hand it to one writer thread over a bounded queue, so
//! no loop ever waits on the disk: when the queue is full (a stalled disk) the line
//! is dropped and counted, and a warning says how many about once a second. The
//! writer buffers, flushes at least once a second and on request (shutdown), and
//! reopens the file on SIGUSR1 (logrotate) or when a reload adds, removes or renames
//! it. If writing fails, serving goes on and one warning says so.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, SyncSender};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
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
/// Lines that may wait for the writer: past this, or past `QUEUE_BYTES`, a stalled
/// disk costs dropped lines, not memory.
const QUEUE_LINES: usize = 4096;
/// Bytes of lines that may wait for the writer (a line with a long, escaped
/// User-Agent can be several times `maxHeaderBytes`).
const QUEUE_BYTES: usize = 1 << 20;
/// Lines dropped are reported at most this often.
const WARN_EVERY: Duration = Duration::from_secs(1);

enum Msg {
    Line(String),
    /// A look at the mailbox (`Writer::control`).
    Wake,
}

/// What the writer is asked to do besides writing lines. These go through a mailbox
/// rather than the bounded queue, so that asking never waits on a stalled disk.
enum Control {
    /// Reopen at this path (or stop logging with `None`).
    Reopen(Option<PathBuf>),
    /// Flush, then answer.
    Flush(Sender<()>),
}

/// The writer thread's end of things.
struct Writer {
    tx: SyncSender<Msg>,
    control: Arc<Mutex<Vec<Control>>>,
}

/// What the writer and those who queue lines share: the bytes queued, and the lines
/// dropped since the last warning about them.
#[derive(Default)]
struct Queue {
    bytes: AtomicUsize,
    dropped: AtomicU64,
    warned: Mutex<Option<Instant>>,
}

impl Queue {
    /// Warns of the lines dropped since the last warning, if any, and if that was a
    /// second ago or more. Called at each drop and by the writer's clock, so that the
    /// count of a burst that ended is still told.
    fn warn_dropped(&self) {
        let mut warned = self.warned.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        if warned.is_some_and(|at| now < at + WARN_EVERY) {
            return;
        }
        let n = self.dropped.swap(0, Ordering::Relaxed);
        if n > 0 {
            *warned = Some(now);
            crate::warn!("access log: {n} lines dropped, the log file is not keeping up");
        }
    }
}

/// The handle the loops write through. Without `accessLog` it drops every line; a
/// reload that names a log starts the writer then.
pub struct AccessLog {
    writer: OnceLock<Writer>,
    /// Lines are wanted: a log path is set.
    on: AtomicBool,
    queue: Arc<Queue>,
}

impl AccessLog {
    /// Opens `path` (creating parent directories) and starts the writer thread.
    pub fn start(path: Option<&Path>) -> Result<AccessLog, String> {
        let log = AccessLog {
            writer: OnceLock::new(),
            on: AtomicBool::new(false),
            queue: Arc::default(),
        };
        if let Some(path) = path {
            let file = open(path).map_err(|e| format!("accessLog {}: {e}", path.display()))?;
            log.spawn(Some((path.to_path_buf(), file)))
                .map_err(|e| format!("cannot start the access log: {e}"))?;
            log.on.store(true, Ordering::Relaxed);
        }
        Ok(log)
    }

    fn spawn(&self, first: Option<(PathBuf, File)>) -> std::io::Result<&Writer> {
        if let Some(writer) = self.writer.get() {
            return Ok(writer);
        }
        let (tx, rx) = mpsc::sync_channel(QUEUE_LINES);
        let control = Arc::new(Mutex::new(Vec::new()));
        let mailbox = Arc::clone(&control);
        let queue = Arc::clone(&self.queue);
        std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || write_lines(rx, &mailbox, &queue, first))?;
        // Only the main thread (start-up, signals) spawns, so this is the one.
        Ok(self.writer.get_or_init(|| Writer { tx, control }))
    }

    pub fn is_on(&self) -> bool {
        self.on.load(Ordering::Relaxed)
    }

    /// Queues a line; if the writer is that far behind, the line is dropped and
    /// counted, and a warning says how many about once a second.
    pub fn write(&self, entry: &Entry) {
        let Some(writer) = self.writer.get().filter(|_| self.is_on()) else {
            return;
        };
        let line = entry.format();
        let len = line.len();
        // Counted before it is sent, so that the writer never takes off more than
        // was put on.
        let queued = self.queue.bytes.fetch_add(len, Ordering::Relaxed);
        let sent = queued.saturating_add(len) <= QUEUE_BYTES
            && writer.tx.try_send(Msg::Line(line)).is_ok();
        if !sent {
            self.queue.bytes.fetch_sub(len, Ordering::Relaxed);
            self.queue.dropped.fetch_add(1, Ordering::Relaxed);
            self.queue.warn_dropped();
        }
    }

    fn ask(&self, writer: &Writer, control: Control) {
        let mut mailbox = writer
            .control
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        mailbox.push(control);
        drop(mailbox);
        // A full queue is fine: the writer looks at the mailbox after every line.
        let _ = writer.tx.try_send(Msg::Wake);
    }

    /// Reopens the file at `path` (SIGUSR1: the same path, after logrotate renamed it;
    /// SIGHUP: a new path, or `None` to stop logging).
    pub fn reopen(&self, path: Option<PathBuf>) {
        self.on.store(path.is_some(), Ordering::Relaxed);
        let writer = match (self.writer.get(), &path) {
            (Some(writer), _) => writer,
            (None, None) => return,
            (None, Some(_)) => match self.spawn(None) {
                Ok(writer) => writer,
                Err(e) => return crate::warn!("cannot start the access log: {e}"),
            },
        };
        self.ask(writer, Control::Reopen(path));
    }

    /// Writes out every line sent so far (shutdown).
    pub fn flush(&self) {
        if let Some(writer) = self.writer.get() {
            let (ack, done) = mpsc::channel();
            self.ask(writer, Control::Flush(ack));
            let _ = done.recv_timeout(Duration::from_secs(5));
        }
    }
}

fn open(path: &Path) -> std::io::Result<File> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    OpenOptions::new().create(true).append(true).open(path)
}

/// The file being written, and whether a failure has been reported (and writing has
/// not recovered since).
struct Output {
    path: PathBuf,
    file: Option<BufWriter<File>>,
    failing: bool,
}

impl Output {
    fn report(&mut self, result: std::io::Result<()>) {
        match result {
            Err(e) if !self.failing => {
                crate::warn!(
                    "access log {}: {e}; lines are being lost",
                    self.path.display()
                );
                self.failing = true;
            }
            Err(_) => {}
            Ok(()) => self.failing = false,
        }
    }

    fn write(&mut self, line: &str) {
        if let Some(w) = &mut self.file {
            let written = w.write_all(line.as_bytes());
            self.report(written);
        }
    }

    fn flush(&mut self) {
        if let Some(w) = &mut self.file {
            let flushed = w.flush();
            self.report(flushed);
        }
    }

    /// Goes on at `path` (`None`: stops). A file that cannot be opened leaves the
    /// one in use, so a bad path in a reload loses no line.
    fn reopen(&mut self, path: Option<PathBuf>) {
        self.flush();
        let Some(path) = path else {
            self.file = None;
            return;
        };
        match open(&path) {
            Ok(file) => {
                self.file = Some(BufWriter::with_capacity(64 * 1024, file));
                self.path = path;
            }
            Err(e) => {
                let keeping = match &self.file {
                    Some(_) => format!("still writing to {}", self.path.display()),
                    None => "lines are being lost".to_string(),
                };
                crate::warn!("access log {}: {e}; {keeping}", path.display());
            }
        }
    }
}

/// The writer thread.
fn write_lines(
    rx: Receiver<Msg>,
    mailbox: &Mutex<Vec<Control>>,
    queue: &Queue,
    first: Option<(PathBuf, File)>,
) {
    let mut out = Output {
        path: PathBuf::new(),
        file: None,
        failing: false,
    };
    if let Some((path, file)) = first {
        out.path = path;
        out.file = Some(BufWriter::with_capacity(64 * 1024, file));
    }
    let mut next_flush = Instant::now() + FLUSH_EVERY;
    loop {
        let msg = rx.recv_timeout(next_flush.saturating_duration_since(Instant::now()));
        let write = |out: &mut Output, line: String| {
            out.write(&line);
            queue.bytes.fetch_sub(line.len(), Ordering::Relaxed);
        };
        match msg {
            Ok(Msg::Line(line)) => write(&mut out, line),
            Ok(Msg::Wake) => {}
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        let asked = std::mem::take(&mut *mailbox.lock().unwrap_or_else(PoisonError::into_inner));
        if !asked.is_empty() && out.file.is_some() {
            // Lines queued before the ask go to the file they were meant for (with
            // no file open, they were meant for the one being opened).
            for msg in rx.try_iter() {
                if let Msg::Line(line) = msg {
                    write(&mut out, line);
                }
            }
        }
        for control in asked {
            match control {
                Control::Reopen(path) => out.reopen(path),
                Control::Flush(ack) => {
                    out.flush();
                    let _ = ack.send(());
                }
            }
        }
        // A busy log is flushed by the buffer filling or by the clock, which does not
        // restart with every line.
        if Instant::now() >= next_flush {
            out.flush();
            queue.warn_dropped(); // what the queue dropped while the file was stuck
            next_flush = Instant::now() + FLUSH_EVERY;
        }
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
