//! GOAWAY (§6.8): the connection ends; streams above `last_stream` were not
//! processed and may be retried elsewhere.

use super::{Code, FrameError, Header, connection_error, kind};

/// The last stream and the error code of a GOAWAY frame.
pub fn decode(header: &Header, payload: &[u8]) -> Result<(u32, u32), FrameError> {
    if header.stream != 0 {
        return Err(connection_error(Code::Protocol, "GOAWAY on a stream"));
    }
    if payload.len() < 8 {
        return Err(connection_error(
            Code::FrameSize,
            "GOAWAY shorter than 8 bytes",
        ));
    }
    let code = u32::from_be_bytes([payload[4], payload[5], payload[6], payload[7]]);
    Ok((super::u31(payload), code))
}

pub fn write(last_stream: u32, code: Code, debug: &[u8], out: &mut Vec<u8>) {
    Header::write(kind::GOAWAY, 0, 0, 8 + debug.len(), out);
    out.extend_from_slice(&(last_stream & 0x7fff_ffff).to_be_bytes());
    out.extend_from_slice(&code.value().to_be_bytes());
    out.extend_from_slice(debug);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut out = Vec::new();
        write(5, Code::EnhanceYourCalm, b"calm", &mut out);
        let h = Header::parse(&out).unwrap();
        assert_eq!(h.len, 12);
        assert_eq!(decode(&h, &out[9..]), Ok((5, 0xb)));
        assert!(decode(&h, &out[9..15]).is_err());
    }
}
