//! PING (§6.7): 8 opaque bytes, answered with the same bytes and ACK.

use super::{Code, FrameError, Header, connection_error, flag, kind};

/// The 8 bytes of a PING frame, and whether it is an answer (ACK).
pub fn decode(header: &Header, payload: &[u8]) -> Result<([u8; 8], bool), FrameError> {
    if header.stream != 0 {
        return Err(connection_error(Code::Protocol, "PING on a stream"));
    }
    let data: [u8; 8] = payload
        .try_into()
        .map_err(|_| connection_error(Code::FrameSize, "PING is not 8 bytes"))?;
    Ok((data, header.has(flag::ACK)))
}

pub fn write(data: [u8; 8], ack: bool, out: &mut Vec<u8>) {
    let flags = if ack { flag::ACK } else { 0 };
    Header::write(kind::PING, flags, 0, 8, out);
    out.extend_from_slice(&data);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut out = Vec::new();
        write(*b"12345678", true, &mut out);
        let h = Header::parse(&out).unwrap();
        assert_eq!(decode(&h, &out[9..]), Ok((*b"12345678", true)));
        assert_eq!(decode(&h, &out[9..16]).unwrap_err().code, Code::FrameSize);
        assert_eq!(
            decode(&Header { stream: 1, ..h }, &out[9..])
                .unwrap_err()
                .code,
            Code::Protocol
        );
    }
}
