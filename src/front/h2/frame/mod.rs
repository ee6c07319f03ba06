//! HTTP/2 frames (RFC 9113 §4, §6): the 9-byte header here, and one file a frame
//! type that decodes its payload and encodes itself. Pure code: bytes in, values
//! out, and back.
//!
//! A decoded frame borrows its payload from the input. What a frame says about the
//! connection (a stream in the wrong state, a window past 2^31 − 1) is the
//! connection machine's to judge; here only what the frame itself gets wrong is an
//! error, each with the error code the RFC names.

pub mod continuation;
pub mod data;
pub mod goaway;
pub mod headers;
pub mod ping;
pub mod priority;
pub mod rst_stream;
pub mod settings;
pub mod window_update;

/// The length of a frame header.
pub const HEADER_LEN: usize = 9;
/// SETTINGS_MAX_FRAME_SIZE's initial value, which hawkey keeps (§4.2).
pub const MAX_FRAME: usize = 16_384;

/// Frame types (§6).
pub mod kind {
    pub const DATA: u8 = 0x0;
    pub const HEADERS: u8 = 0x1;
    pub const PRIORITY: u8 = 0x2;
    pub const RST_STREAM: u8 = 0x3;
    pub const SETTINGS: u8 = 0x4;
    pub const PUSH_PROMISE: u8 = 0x5;
    pub const PING: u8 = 0x6;
    pub const GOAWAY: u8 = 0x7;
    pub const WINDOW_UPDATE: u8 = 0x8;
    pub const CONTINUATION: u8 = 0x9;
}

/// Flags (§6): one bit, its meaning per frame type.
pub mod flag {
    pub const END_STREAM: u8 = 0x1;
    pub const ACK: u8 = 0x1;
    pub const END_HEADERS: u8 = 0x4;
    pub const PADDED: u8 = 0x8;
    pub const PRIORITY: u8 = 0x20;
}

/// Error codes (§7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    NoError = 0x0,
    Protocol = 0x1,
    Internal = 0x2,
    FlowControl = 0x3,
    SettingsTimeout = 0x4,
    StreamClosed = 0x5,
    FrameSize = 0x6,
    RefusedStream = 0x7,
    Cancel = 0x8,
    Compression = 0x9,
    Connect = 0xa,
    EnhanceYourCalm = 0xb,
    InadequateSecurity = 0xc,
    Http11Required = 0xd,
}

impl Code {
    pub fn value(self) -> u32 {
        self as u32
    }
}

/// A frame the RFC says is wrong on its own, with the code to end the connection
/// with, or (`stream`) only the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameError {
    pub code: Code,
    pub why: &'static str,
    /// Only this stream ends (RST_STREAM); `None`: the connection (GOAWAY).
    pub stream: Option<u32>,
}

pub fn connection_error(code: Code, why: &'static str) -> FrameError {
    FrameError {
        code,
        why,
        stream: None,
    }
}

/// The 9 bytes in front of every frame (§4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub len: usize,
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
}

impl Header {
    /// The header at the start of `buf`, if 9 bytes are there.
    pub fn parse(buf: &[u8]) -> Option<Header> {
        let b: &[u8; HEADER_LEN] = buf.get(..HEADER_LEN)?.try_into().ok()?;
        Some(Header {
            len: usize::from(b[0]) << 16 | usize::from(b[1]) << 8 | usize::from(b[2]),
            kind: b[3],
            flags: b[4],
            stream: u32::from_be_bytes([b[5], b[6], b[7], b[8]]) & 0x7fff_ffff,
        })
    }

    pub fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }

    /// Appends the header of a frame with a `len`-byte payload (at most 2^24 − 1).
    pub fn write(kind: u8, flags: u8, stream: u32, len: usize, out: &mut Vec<u8>) {
        let len = u32::try_from(len).unwrap_or(u32::MAX).min(0x00ff_ffff);
        out.extend_from_slice(&len.to_be_bytes()[1..]);
        out.push(kind);
        out.push(flags);
        out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    }
}

/// A 31-bit value from 4 bytes, the reserved bit dropped.
pub fn u31(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]]) & 0x7fff_ffff
}

/// The payload without its padding (§6.1, §6.2): `PADDED` puts a pad length in the
/// first byte; padding that fills the payload or more is a PROTOCOL_ERROR.
pub fn unpad(header: &Header, payload: &[u8]) -> Result<(usize, usize), FrameError> {
    if !header.has(flag::PADDED) {
        return Ok((0, payload.len()));
    }
    let pad = usize::from(*payload.first().ok_or(connection_error(
        Code::FrameSize,
        "a padded frame without its pad length",
    ))?);
    if pad >= payload.len() {
        return Err(connection_error(
            Code::Protocol,
            "padding as long as the frame",
        ));
    }
    Ok((1, payload.len() - pad))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_round_trips() {
        let mut out = Vec::new();
        Header::write(
            kind::HEADERS,
            flag::END_HEADERS,
            0x8000_0003,
            0x01_0203,
            &mut out,
        );
        assert_eq!(out, [1, 2, 3, 1, 4, 0, 0, 0, 3]);
        let h = Header::parse(&out).unwrap();
        assert_eq!((h.len, h.kind, h.flags, h.stream), (0x01_0203, 1, 4, 3));
        for cut in 0..HEADER_LEN {
            assert_eq!(Header::parse(&out[..cut]), None);
        }
    }

    #[test]
    fn padding_is_checked() {
        let padded = Header {
            len: 4,
            kind: kind::DATA,
            flags: flag::PADDED,
            stream: 1,
        };
        assert_eq!(unpad(&padded, &[2, b'a', 0, 0]), Ok((1, 2)));
        assert_eq!(unpad(&padded, &[3, b'a', 0, 0]), Ok((1, 1)));
        assert!(unpad(&padded, &[4, b'a', 0, 0]).is_err());
        assert!(unpad(&padded, &[]).is_err());
        let plain = Header { flags: 0, ..padded };
        assert_eq!(unpad(&plain, b"abcd"), Ok((0, 4)));
    }
}
