//! WINDOW_UPDATE (§6.9): the peer may send `increment` more bytes on a stream, or
//! (stream 0) on the connection. An increment of 0 is a PROTOCOL_ERROR: of the
//! stream on a stream, of the connection on stream 0.

use super::{Code, FrameError, Header, connection_error, kind};

pub fn decode(header: &Header, payload: &[u8]) -> Result<u32, FrameError> {
    if payload.len() != 4 {
        return Err(connection_error(
            Code::FrameSize,
            "WINDOW_UPDATE is not 4 bytes",
        ));
    }
    match super::u31(payload) {
        0 => Err(FrameError {
            code: Code::Protocol,
            why: "a WINDOW_UPDATE of 0",
            stream: (header.stream != 0).then_some(header.stream),
        }),
        increment => Ok(increment),
    }
}

pub fn write(stream: u32, increment: u32, out: &mut Vec<u8>) {
    Header::write(kind::WINDOW_UPDATE, 0, stream, 4, out);
    out.extend_from_slice(&(increment & 0x7fff_ffff).to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_zero() {
        let mut out = Vec::new();
        write(3, 1000, &mut out);
        let h = Header::parse(&out).unwrap();
        assert_eq!(decode(&h, &out[9..]), Ok(1000));
        assert_eq!(decode(&h, &[0, 0, 0, 0]).unwrap_err().stream, Some(3));
        let conn = Header { stream: 0, ..h };
        assert_eq!(decode(&conn, &[0, 0, 0, 0]).unwrap_err().stream, None);
        assert_eq!(decode(&h, &[0, 0, 1]).unwrap_err().code, Code::FrameSize);
    }
}
