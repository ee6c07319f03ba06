//! A socket with a read buffer and a small write buffer (`BufStream`): what every
//! other module reads heads and bodies through. Memory per connection is these two
//! buffers, whatever the body size [R4].

use std::io::{self, Read, Write};

/// Size of each read buffer (bodies move through it in pieces of at most this).
pub const READ_BUF: usize = 32 * 1024;
/// A read buffer starts this small and doubles when a read fills it: most request
/// heads fit (nginx's `client_header_buffer_size` is the same), and a new buffer
/// costs little to allocate and clear.
const FIRST_READ_BUF: usize = 1024;
/// An idle pooled stream keeps buffers up to this size (one response head's worth).
const IDLE_BUF: usize = 4 * 1024;
/// Writes smaller than this are gathered before they reach the socket.
const WRITE_BUF: usize = 16 * 1024;

/// A stream with a read buffer (`data()`, `consume()`, `fill()`) and a write buffer
/// (`put()`, `flush()`).
#[derive(Debug)]
pub struct BufStream<S> {
    pub stream: S,
    buf: Vec<u8>, // read buffer; its length is its capacity, bytes live in start..end
    start: usize, // first unread byte
    end: usize,   // one past the last read byte
    out: Vec<u8>, // bytes put but not yet written
    /// The last read filled all the room there was: more may wait in the socket.
    filled: bool,
    /// The socket is registered in the parker's epoll set (`park.rs`).
    pub watched: bool,
}

impl<S: Read + Write> BufStream<S> {
    pub fn new(stream: S) -> Self {
        BufStream {
            stream,
            buf: Vec::new(),
            start: 0,
            end: 0,
            out: Vec::new(),
            filled: false,
            watched: false,
        }
    }

    /// Whether the last read filled the buffer, so that the stream may hold more
    /// than was read (a read that returned less took all there was).
    pub fn last_read_filled(&self) -> bool {
        self.filled
    }

    /// The buffered, unread bytes.
    pub fn data(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    pub fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.end);
        if self.start == self.end {
            (self.start, self.end) = (0, 0);
        }
    }

    /// Shrinks the buffers to what they hold while the stream waits idle: nothing
    /// between requests, a partial head at most.
    pub fn shrink(&mut self) {
        self.buf.copy_within(self.start..self.end, 0);
        self.buf.truncate(self.end - self.start);
        self.buf.shrink_to_fit();
        (self.start, self.end) = (0, self.buf.len());
        self.out = Vec::new();
    }

    /// Readies a stream with nothing buffered for the pool: its buffers stay for the
    /// next exchange, cut down to `IDLE_BUF`.
    pub fn trim(&mut self) {
        (self.start, self.end) = (0, 0);
        if self.buf.len() > IDLE_BUF {
            self.buf.truncate(IDLE_BUF);
            self.buf.shrink_to_fit();
        }
        if self.out.capacity() > IDLE_BUF {
            self.out = Vec::new();
        }
    }

    /// Reads once from the stream into the buffer, which may grow up to `limit`
    /// bytes. Returns the number of bytes read: 0 at end of stream, or when the
    /// buffer already holds `limit` bytes. Pending output is flushed first, since
    /// the peer may be waiting for it before it sends more.
    pub fn fill_to(&mut self, limit: usize) -> io::Result<usize> {
        self.flush()?;
        if self.start > 0 && self.end == self.buf.len() {
            self.buf.copy_within(self.start..self.end, 0);
            (self.start, self.end) = (0, self.end - self.start);
        }
        if self.end == self.buf.len() {
            let grown = (self.buf.len() * 2).clamp(FIRST_READ_BUF, limit.max(FIRST_READ_BUF));
            if grown <= self.buf.len() {
                return Ok(0);
            }
            self.buf.resize(grown, 0);
        }
        let room = self.buf.len() - self.end;
        let n = self.stream.read(&mut self.buf[self.end..])?;
        self.end += n;
        self.filled = n == room;
        Ok(n)
    }

    /// Grows the read buffer to `size` bytes if it is smaller (before a body: bodies
    /// move in reads of up to `READ_BUF`, heads fit in the first few KiB).
    pub fn reserve(&mut self, size: usize) {
        if self.buf.len() < size {
            self.buf.resize(size, 0);
        }
    }

    /// `fill_to` with the default buffer size.
    pub fn fill(&mut self) -> io::Result<usize> {
        self.fill_to(READ_BUF)
    }

    /// Queues `bytes` for writing; large writes go straight through.
    pub fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        if self.out.len() + bytes.len() <= WRITE_BUF {
            self.out.extend_from_slice(bytes);
            return Ok(());
        }
        self.flush()?;
        if bytes.len() < WRITE_BUF {
            self.out.extend_from_slice(bytes);
            Ok(())
        } else {
            self.stream.write_all(bytes)
        }
    }

    pub fn flush(&mut self) -> io::Result<()> {
        if !self.out.is_empty() {
            let result = self.stream.write_all(&self.out);
            self.out.clear();
            result?;
        }
        Ok(())
    }
}

/// Bytes received from a peer and not yet taken, for the sans-I/O machines
/// (`front/h1.rs`, `backend/answer.rs`): whoever drives one reads into `space`, and
/// the machine looks at `data` and takes what it used. Its memory is bounded by the
/// `cap` each read is given.
#[derive(Debug, Default)]
pub struct Input {
    buf: Vec<u8>, // its length is its capacity; bytes live in start..end
    start: usize,
    end: usize,
    /// The peer has closed its side.
    pub eof: bool,
}

impl Input {
    /// Where to read the next bytes, growing the buffer (from `FIRST_READ_BUF`, by
    /// doubling) up to `cap`; empty when it holds `cap` bytes.
    pub fn space(&mut self, cap: usize) -> &mut [u8] {
        if self.start == self.end {
            (self.start, self.end) = (0, 0);
        }
        if self.end == self.buf.len() && self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            (self.start, self.end) = (0, self.end - self.start);
        }
        let cap = cap.max(self.end);
        if self.end == self.buf.len() && self.buf.len() < cap {
            let grown = (self.buf.len() * 2).clamp(FIRST_READ_BUF, cap);
            self.buf.resize(grown, 0);
        }
        &mut self.buf[self.end..]
    }

    /// `n` bytes were read into `space`.
    pub fn received(&mut self, n: usize) {
        self.end = (self.end + n).min(self.buf.len());
    }

    pub fn data(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    pub fn len(&self) -> usize {
        self.end - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    pub fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.end);
    }

    /// Takes `used` bytes and returns `piece` of the data as it was (the bytes stay
    /// valid until the next `space`).
    pub fn take(&mut self, piece: std::ops::Range<usize>, used: usize) -> &[u8] {
        let base = self.start;
        self.consume(used);
        &self.buf[base + piece.start..base + piece.end]
    }
}

/// Bytes to send to a peer, for the sans-I/O machines: appended at the end, written
/// from the front. What was written is dropped by moving a start mark; the rest is
/// moved to the front only once the written part is the larger, so a slow reader
/// does not cost a copy of the buffer per write.
#[derive(Debug, Default)]
pub struct Output {
    buf: Vec<u8>,
    start: usize,
}

impl Output {
    pub fn data(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    pub fn len(&self) -> usize {
        self.buf.len() - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.start == self.buf.len()
    }

    /// `n` bytes of `data` were written.
    pub fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.buf.len());
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
    }

    /// The buffer to append to.
    pub fn vec(&mut self) -> &mut Vec<u8> {
        if self.start > 0 && self.start >= self.buf.len() / 2 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        &mut self.buf
    }

    /// Takes what is left to write.
    pub fn take(&mut self) -> Vec<u8> {
        let mut buf = std::mem::take(&mut self.buf);
        buf.drain(..self.start);
        self.start = 0;
        buf
    }
}
