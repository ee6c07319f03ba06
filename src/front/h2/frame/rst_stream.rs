//! RST_STREAM (§6.4): one stream ends at once, with an error code.

use super::{Code, FrameError, Header, connection_error, kind};

/// The error code of an RST_STREAM frame.
pub fn decode(header: &Header, payload: &[u8]) -> Result<u32, FrameError> {
    if header.stream == 0 {
        return Err(connection_error(Code::Protocol, "RST_STREAM on stream 0"));
    }
    let code: [u8; 4] = payload
        .try_into()
        .map_err(|_| connection_error(Code::FrameSize, "RST_STREAM is not 4 bytes"))?;
    Ok(u32::from_be_bytes(code))
}

pub fn write(stream: u32, code: Code, out: &mut Vec<u8>) {
    Header::write(kind::RST_STREAM, 0, stream, 4, out);
    out.extend_from_slice(&code.value().to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut out = Vec::new();
        write(7, Code::Cancel, &mut out);
        let h = Header::parse(&out).unwrap();
        assert_eq!(decode(&h, &out[9..]), Ok(8));
        assert!(decode(&h, &out[9..12]).is_err());
        assert!(decode(&Header { stream: 0, ..h }, &out[9..]).is_err());
    }
}
