//! The bounded buffers of the sans-I/O machines [R4]: `Input`, what a peer sent and
//! was not taken yet, and `Output`, what is to be sent to it. Memory per connection
//! is these buffers, whatever the body size.

/// A read buffer starts this small and doubles when a read fills it (the peer has
/// more to send): most request heads fit (nginx's `client_header_buffer_size` is the
/// same), and a new buffer costs little to allocate and clear.
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
    /// The last read filled the whole space: the next one gets a larger buffer, even
    /// if the bytes were taken meanwhile, so a body streams in reads of `cap`.
    filled: bool,
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
        if (self.end == self.buf.len() || self.filled) && self.buf.len() < cap {
            let grown = (self.buf.len() * 2).clamp(FIRST_READ_BUF, cap);
            self.buf.resize(grown, 0);
        }
        self.filled = false;
        &mut self.buf[self.end..]
    }

    /// `n` bytes were read into `space`.
    pub fn received(&mut self, n: usize) {
        self.end = (self.end + n).min(self.buf.len());
        self.filled = n > 0 && self.end == self.buf.len();
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads that fill the space grow the buffer up to the cap, even when every read
    /// is taken before the next; a short read does not grow it.
    #[test]
    fn full_reads_grow_the_buffer_to_its_cap() {
        let mut input = Input::default();
        let mut sizes = Vec::new();
        for _ in 0..8 {
            let n = input.space(8192).len();
            sizes.push(n);
            input.received(n);
            input.consume(n);
        }
        assert_eq!(sizes, [1024, 2048, 4096, 8192, 8192, 8192, 8192, 8192]);
        let n = input.space(65536).len();
        assert_eq!(n, 16384, "the last full read asks for more");
        input.received(n - 1);
        input.consume(n - 1);
        assert_eq!(input.space(65536).len(), 16384, "a short read does not");
    }

    /// Bytes kept across a growth stay in order.
    #[test]
    fn growth_keeps_the_bytes() {
        let mut input = Input::default();
        let space = input.space(4096);
        space.fill(b'a');
        let n = space.len();
        input.received(n);
        input.consume(n - 3);
        let space = input.space(4096);
        assert_eq!(space.len(), 1024 * 2 - 3);
        space[0] = b'b';
        input.received(1);
        assert_eq!(input.data(), b"aaab");
    }
}
