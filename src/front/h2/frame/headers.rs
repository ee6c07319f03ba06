//! HEADERS (§6.2): the start of a stream's header block (or its trailers), with
//! optional padding and priority (parsed and ignored, RFC 9113 §5.3.2).

use super::{Code, FrameError, Header, MAX_FRAME, connection_error, flag, kind, unpad};

#[derive(Debug, PartialEq, Eq)]
pub struct Headers<'a> {
    pub stream: u32,
    pub fragment: &'a [u8],
    pub end_stream: bool,
    pub end_headers: bool,
    /// The stream this one says it depends on, if it says (a stream that depends on
    /// itself is a stream error, §5.3.1).
    pub depends_on: Option<u32>,
}

impl<'a> Headers<'a> {
    pub fn decode(header: &Header, payload: &'a [u8]) -> Result<Headers<'a>, FrameError> {
        if header.stream == 0 {
            return Err(connection_error(Code::Protocol, "HEADERS on stream 0"));
        }
        let (mut start, end) = unpad(header, payload)?;
        let mut depends_on = None;
        if header.has(flag::PRIORITY) {
            if end < start + 5 {
                return Err(connection_error(
                    Code::FrameSize,
                    "HEADERS too short for its priority",
                ));
            }
            depends_on = Some(super::u31(&payload[start..]));
            start += 5;
        }
        Ok(Headers {
            stream: header.stream,
            fragment: &payload[start..end],
            end_stream: header.has(flag::END_STREAM),
            end_headers: header.has(flag::END_HEADERS),
            depends_on,
        })
    }

    /// Appends a header block as HEADERS and as many CONTINUATION frames as it takes.
    pub fn write(stream: u32, block: &[u8], end_stream: bool, out: &mut Vec<u8>) {
        let mut pieces = block.chunks(MAX_FRAME).peekable();
        let first = pieces.next().unwrap_or(&[]);
        let mut flags = if end_stream { flag::END_STREAM } else { 0 };
        if pieces.peek().is_none() {
            flags |= flag::END_HEADERS;
        }
        Header::write(kind::HEADERS, flags, stream, first.len(), out);
        out.extend_from_slice(first);
        while let Some(piece) = pieces.next() {
            let flags = if pieces.peek().is_none() {
                flag::END_HEADERS
            } else {
                0
            };
            Header::write(kind::CONTINUATION, flags, stream, piece.len(), out);
            out.extend_from_slice(piece);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_block_is_split_into_continuations() {
        let block = vec![7u8; MAX_FRAME * 2 + 10];
        let mut out = Vec::new();
        Headers::write(3, &block, true, &mut out);
        let h = Header::parse(&out).unwrap();
        assert_eq!(
            (h.kind, h.len, h.flags),
            (kind::HEADERS, MAX_FRAME, flag::END_STREAM)
        );
        let c1 = Header::parse(&out[9 + MAX_FRAME..]).unwrap();
        assert_eq!((c1.kind, c1.flags), (kind::CONTINUATION, 0));
        let c2 = Header::parse(&out[18 + 2 * MAX_FRAME..]).unwrap();
        assert_eq!(
            (c2.kind, c2.len, c2.flags),
            (kind::CONTINUATION, 10, flag::END_HEADERS)
        );
        assert_eq!(out.len(), 27 + block.len());
    }

    #[test]
    fn priority_and_padding_are_taken_off() {
        let h = Header {
            len: 9,
            kind: kind::HEADERS,
            flags: flag::PRIORITY | flag::PADDED | flag::END_HEADERS,
            stream: 1,
        };
        let payload = [1, 0x80, 0, 0, 3, 16, 0x82, 0x84, 0];
        let d = Headers::decode(&h, &payload).unwrap();
        assert_eq!(
            (d.fragment, d.depends_on, d.end_headers),
            (&[0x82, 0x84][..], Some(3), true)
        );
        assert!(Headers::decode(&h, &[0, 0, 0]).is_err());
    }
}
