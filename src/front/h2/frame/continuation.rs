//! CONTINUATION (§6.10): more of a header block, on the stream that started it.

use super::{Code, FrameError, Header, connection_error, flag};

#[derive(Debug, PartialEq, Eq)]
pub struct Continuation<'a> {
    pub stream: u32,
    pub fragment: &'a [u8],
    pub end_headers: bool,
}

impl<'a> Continuation<'a> {
    pub fn decode(header: &Header, payload: &'a [u8]) -> Result<Continuation<'a>, FrameError> {
        if header.stream == 0 {
            return Err(connection_error(Code::Protocol, "CONTINUATION on stream 0"));
        }
        Ok(Continuation {
            stream: header.stream,
            fragment: payload,
            end_headers: header.has(flag::END_HEADERS),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_its_fragment() {
        let h = Header {
            len: 2,
            kind: super::super::kind::CONTINUATION,
            flags: flag::END_HEADERS,
            stream: 9,
        };
        let c = Continuation::decode(&h, &[1, 2]).unwrap();
        assert_eq!(
            (c.stream, c.fragment, c.end_headers),
            (9, &[1, 2][..], true)
        );
        assert!(Continuation::decode(&Header { stream: 0, ..h }, &[]).is_err());
    }
}
