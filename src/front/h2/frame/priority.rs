//! PRIORITY (§6.3): parsed for its length and its stream, then ignored (RFC 9113
//! deprecates the priority scheme; hawkey serves streams in turn).

use super::{Code, FrameError, Header, connection_error};

/// Checks a PRIORITY frame; `Ok(depends_on)`.
pub fn decode(header: &Header, payload: &[u8]) -> Result<u32, FrameError> {
    if header.stream == 0 {
        return Err(connection_error(Code::Protocol, "PRIORITY on stream 0"));
    }
    if payload.len() != 5 {
        return Err(FrameError {
            code: Code::FrameSize,
            why: "PRIORITY is not 5 bytes",
            stream: Some(header.stream),
        });
    }
    Ok(super::u31(payload))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_and_stream_are_checked() {
        let h = Header {
            len: 5,
            kind: super::super::kind::PRIORITY,
            flags: 0,
            stream: 3,
        };
        assert_eq!(decode(&h, &[0, 0, 0, 1, 16]), Ok(1));
        assert_eq!(decode(&h, &[0, 0, 0, 1]).unwrap_err().stream, Some(3));
        assert_eq!(
            decode(&Header { stream: 0, ..h }, &[0; 5])
                .unwrap_err()
                .stream,
            None
        );
    }
}
