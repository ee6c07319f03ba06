//! Moving bytes: `relay_body` streams one body from one side to the other through
//! their `BufStream`s (`io.rs`), re-framing it on the way [R3][R4].
//!
//! The write buffer is flushed before every read that may block, so a slow stream
//! (server-sent events, a trickling upload) is passed on as it comes instead of
//! waiting for more.

use std::io::{self, Read, Write};

use crate::body::{BodyLength, ChunkError, ChunkedDecoder, Step, chunk_header};
use crate::io::{BufStream, READ_BUF};

/// How a relay failed, by side.
#[derive(Debug)]
pub enum RelayError {
    /// Reading the source failed.
    Read(io::Error),
    /// The source closed before the body was complete.
    Truncated,
    /// The source's chunked framing is malformed.
    Chunk(ChunkError),
    /// Writing to the destination failed.
    Write(io::Error),
}

/// Streams one body of framing `from` out of `src` into `dst`, chunk-encoding it when
/// `chunked_out` (else writing the bytes as they are). Returns the body bytes moved.
/// Leaves any bytes after the body in `src`'s buffer (the next pipelined message).
pub fn relay_body<A, B>(
    src: &mut BufStream<A>,
    dst: &mut BufStream<B>,
    from: BodyLength,
    chunked_out: bool,
) -> Result<u64, RelayError>
where
    A: Read + Write,
    B: Read + Write,
{
    let moved = relay_body_with(src, dst, from, chunked_out, ChunkedDecoder::default())?;
    dst.flush().map_err(RelayError::Write)?;
    Ok(moved)
}

/// `relay_body`, a chunked body read with `dec` (which may drop more trailer fields),
/// leaving the last bytes in `dst`'s write buffer for the caller to flush: a proxy
/// returns the backend connection to its pool first, so that the client's next
/// request finds it there.
pub fn relay_body_with<A, B>(
    src: &mut BufStream<A>,
    dst: &mut BufStream<B>,
    from: BodyLength,
    chunked_out: bool,
    mut dec: ChunkedDecoder,
) -> Result<u64, RelayError>
where
    A: Read + Write,
    B: Read + Write,
{
    let mut moved = 0u64;
    let more_to_read = match from {
        BodyLength::Empty => false,
        BodyLength::Exact(n) => n > src.data().len() as u64,
        BodyLength::Chunked | BodyLength::UntilClose => true,
    };
    if more_to_read {
        src.reserve(READ_BUF); // read the rest in large pieces
    }
    match from {
        BodyLength::Empty => {}
        BodyLength::Exact(mut left) => {
            while left > 0 {
                let piece = next_piece(src, dst)?.ok_or(RelayError::Truncated)?;
                // `left` may not fit a 32-bit usize; the piece always does [P].
                let n = usize::try_from(left).map_or(piece, |left| piece.min(left));
                put_piece(dst, &src.data()[..n], chunked_out)?;
                src.consume(n);
                (left, moved) = (left - n as u64, moved + n as u64);
            }
        }
        BodyLength::UntilClose => {
            while let Some(n) = next_piece(src, dst)? {
                put_piece(dst, &src.data()[..n], chunked_out)?;
                src.consume(n);
                moved += n as u64;
            }
        }
        BodyLength::Chunked => {
            while !dec.is_done() {
                next_piece(src, dst)?.ok_or(RelayError::Truncated)?;
                let (used, step) = dec.step(src.data()).map_err(RelayError::Chunk)?;
                if let Step::Data(range) = step {
                    put_piece(dst, &src.data()[range.clone()], chunked_out)?;
                    moved += range.len() as u64;
                }
                src.consume(used);
            }
            if chunked_out {
                dst.put(b"0\r\n").map_err(RelayError::Write)?;
                dst.put(dec.trailers()).map_err(RelayError::Write)?;
                dst.put(b"\r\n").map_err(RelayError::Write)?;
            }
            return Ok(moved);
        }
    }
    if chunked_out {
        dst.put(b"0\r\n\r\n").map_err(RelayError::Write)?;
    }
    Ok(moved)
}

/// Makes sure `src` has buffered bytes, flushing `dst` before a read that may block.
/// Returns how many bytes are buffered, or `None` at end of stream.
fn next_piece<A, B>(
    src: &mut BufStream<A>,
    dst: &mut BufStream<B>,
) -> Result<Option<usize>, RelayError>
where
    A: Read + Write,
    B: Read + Write,
{
    if src.data().is_empty() {
        dst.flush().map_err(RelayError::Write)?;
        if src.fill().map_err(RelayError::Read)? == 0 {
            return Ok(None);
        }
    }
    Ok(Some(src.data().len()))
}

fn put_piece<B: Read + Write>(
    dst: &mut BufStream<B>,
    piece: &[u8],
    chunked: bool,
) -> Result<(), RelayError> {
    if piece.is_empty() {
        return Ok(());
    }
    if chunked {
        let mut size = Vec::with_capacity(20);
        chunk_header(piece.len(), &mut size);
        dst.put(&size).map_err(RelayError::Write)?;
        dst.put(piece).map_err(RelayError::Write)?;
        dst.put(b"\r\n").map_err(RelayError::Write)
    } else {
        dst.put(piece).map_err(RelayError::Write)
    }
}

/// Reads and drops one body of framing `from`, up to `limit` bytes. True when the
/// whole body was read, so the next request on the connection starts clean [R8].
pub fn discard_body<A: Read + Write>(src: &mut BufStream<A>, from: BodyLength, limit: u64) -> bool {
    let mut sink = BufStream::new(Discard { left: limit });
    relay_body(src, &mut sink, from, false).is_ok()
}

/// A writer that accepts `left` more bytes, then fails.
struct Discard {
    left: u64,
}

impl Write for Discard {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.left = self
            .left
            .checked_sub(buf.len() as u64)
            .ok_or(io::ErrorKind::FileTooLarge)?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Read for Discard {
    fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
        Ok(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    /// An in-memory stream: reads from `input` in pieces of `step` bytes, writes to `output`.
    struct Mem {
        input: Cursor<Vec<u8>>,
        step: usize,
        output: Vec<u8>,
    }

    impl Read for Mem {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(self.step);
            self.input.read(&mut buf[..n])
        }
    }

    impl Write for Mem {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.output.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn mem(input: &[u8], step: usize) -> BufStream<Mem> {
        BufStream::new(Mem {
            input: Cursor::new(input.to_vec()),
            step,
            output: Vec::new(),
        })
    }

    #[test]
    fn chunked_to_chunked_is_re_encoded_with_trailers_and_leaves_the_rest() {
        for step in [1, 3, 1000] {
            let mut src = mem(
                b"4;x=y\r\nWiki\r\n00005\r\npedia\r\n0\r\nT: 1\r\n\r\nNEXT",
                step,
            );
            let mut dst = mem(b"", 1);
            let n = relay_body(&mut src, &mut dst, BodyLength::Chunked, true).unwrap();
            assert_eq!(n, 9);
            let out = String::from_utf8(dst.stream.output).unwrap();
            assert!(out.ends_with("0\r\nT: 1\r\n\r\n"), "{out:?}");
            assert!(!out.contains("x=y") && !out.contains("00005"), "{out:?}");
            let mut dec = ChunkedDecoder::default();
            let mut body = Vec::new();
            assert!(dec.feed(out.as_bytes(), &mut body).unwrap());
            assert_eq!(body, b"Wikipedia");
            src.fill().unwrap();
            assert!(src.data().starts_with(b"N"), "step {step}");
        }
    }

    #[test]
    fn chunked_to_raw_and_exact_and_until_close() {
        let mut src = mem(b"3\r\nabc\r\n0\r\n\r\n", 2);
        let mut dst = mem(b"", 1);
        relay_body(&mut src, &mut dst, BodyLength::Chunked, false).unwrap();
        assert_eq!(dst.stream.output, b"abc");

        let mut src = mem(b"hello world", 4);
        let mut dst = mem(b"", 1);
        assert_eq!(
            relay_body(&mut src, &mut dst, BodyLength::Exact(5), false).unwrap(),
            5
        );
        assert_eq!(dst.stream.output, b"hello");

        let mut src = mem(b"until close", 4);
        let mut dst = mem(b"", 1);
        relay_body(&mut src, &mut dst, BodyLength::UntilClose, true).unwrap();
        let mut body = Vec::new();
        assert!(
            ChunkedDecoder::default()
                .feed(&dst.stream.output, &mut body)
                .unwrap()
        );
        assert_eq!(body, b"until close");
    }

    #[test]
    fn short_bodies_are_truncated_errors() {
        let mut dst = mem(b"", 1);
        let err =
            relay_body(&mut mem(b"abc", 2), &mut dst, BodyLength::Exact(5), false).unwrap_err();
        assert!(matches!(err, RelayError::Truncated));
        let err =
            relay_body(&mut mem(b"5\r\nab", 2), &mut dst, BodyLength::Chunked, true).unwrap_err();
        assert!(matches!(err, RelayError::Truncated));
        let err = relay_body(
            &mut mem(b"5\nabcde", 2),
            &mut dst,
            BodyLength::Chunked,
            true,
        )
        .unwrap_err();
        assert!(matches!(err, RelayError::Chunk(_)));
    }

    #[test]
    fn discard_reads_whole_bodies_within_the_limit_only() {
        let mut src = mem(b"3\r\nabc\r\n0\r\n\r\nNEXT", 100);
        assert!(discard_body(&mut src, BodyLength::Chunked, 10));
        assert_eq!(src.data(), b"NEXT");
        assert!(!discard_body(
            &mut mem(&[b'x'; 100], 7),
            BodyLength::Exact(100),
            50
        ));
    }

    #[test]
    fn buffer_grows_up_to_the_limit_only() {
        let mut src = mem(&vec![b'a'; 100_000], 100_000);
        let mut total = 0;
        loop {
            let n = src.fill_to(40_000).unwrap();
            if n == 0 {
                break;
            }
            total += n;
        }
        assert!((40_000..READ_BUF * 2).contains(&total), "{total}");
    }
}
