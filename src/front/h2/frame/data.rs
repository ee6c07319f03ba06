//! DATA (§6.1): body bytes of one stream, maybe padded, maybe its last.

use super::{Code, FrameError, Header, connection_error, flag, kind, unpad};

#[derive(Debug, PartialEq, Eq)]
pub struct Data<'a> {
    pub stream: u32,
    pub bytes: &'a [u8],
    pub end_stream: bool,
    /// The whole payload's length, padding included: what flow control counts.
    pub flow_len: usize,
}

impl<'a> Data<'a> {
    pub fn decode(header: &Header, payload: &'a [u8]) -> Result<Data<'a>, FrameError> {
        if header.stream == 0 {
            return Err(connection_error(Code::Protocol, "DATA on stream 0"));
        }
        let (start, end) = unpad(header, payload)?;
        Ok(Data {
            stream: header.stream,
            bytes: &payload[start..end],
            end_stream: header.has(flag::END_STREAM),
            flow_len: payload.len(),
        })
    }

    /// Appends the frame header of a DATA frame of `len` bytes (the bytes follow).
    pub fn write_header(stream: u32, len: usize, end_stream: bool, out: &mut Vec<u8>) {
        let flags = if end_stream { flag::END_STREAM } else { 0 };
        Header::write(kind::DATA, flags, stream, len, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_padding() {
        let mut out = Vec::new();
        Data::write_header(5, 3, true, &mut out);
        out.extend_from_slice(b"abc");
        let h = Header::parse(&out).unwrap();
        let d = Data::decode(&h, &out[9..]).unwrap();
        assert_eq!(
            (d.stream, d.bytes, d.end_stream, d.flow_len),
            (5, &b"abc"[..], true, 3)
        );
        let padded = Header {
            len: 5,
            kind: kind::DATA,
            flags: flag::PADDED,
            stream: 1,
        };
        let d = Data::decode(&padded, &[2, b'h', b'i', 0, 0]).unwrap();
        assert_eq!((d.bytes, d.flow_len, d.end_stream), (&b"hi"[..], 5, false));
        let zero = Header { stream: 0, ..h };
        assert_eq!(Data::decode(&zero, b"x").unwrap_err().code, Code::Protocol);
    }
}
