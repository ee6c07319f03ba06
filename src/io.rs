//! The bounded buffers of the sans-I/O machines [R4]: `Input`, what a peer sent and
//! was not taken yet, and `Output`, what is to be sent to it. Memory per connection
//! is these buffers, whatever the body size.

/// A read buffer starts this small and doubles when a read fills it: most request
/// heads fit (nginx's `client_header_buffer_size` is the same), and a new buffer
/// costs little to allocate and clear.
const FIRST_READ_BUF: usize = 1024;

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
