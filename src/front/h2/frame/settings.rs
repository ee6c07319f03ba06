//! SETTINGS (§6.5): the peer's parameters, each checked as §6.5.2 says; an ACK is
//! empty. Unknown settings are ignored.

use super::{Code, FrameError, Header, connection_error, flag, kind};

pub const HEADER_TABLE_SIZE: u16 = 0x1;
pub const ENABLE_PUSH: u16 = 0x2;
pub const MAX_CONCURRENT_STREAMS: u16 = 0x3;
pub const INITIAL_WINDOW_SIZE: u16 = 0x4;
pub const MAX_FRAME_SIZE: u16 = 0x5;
pub const MAX_HEADER_LIST_SIZE: u16 = 0x6;
pub const ENABLE_CONNECT_PROTOCOL: u16 = 0x8;

/// A SETTINGS frame: its ACK flag, or its parameters in order.
#[derive(Debug, PartialEq, Eq)]
pub enum Settings {
    Ack,
    Values(Vec<(u16, u32)>),
}

/// `MAX_FRAME` as the setting's type.
const MAX_FRAME_MIN: u32 = 16_384;

pub fn decode(header: &Header, payload: &[u8]) -> Result<Settings, FrameError> {
    if header.stream != 0 {
        return Err(connection_error(Code::Protocol, "SETTINGS on a stream"));
    }
    if header.has(flag::ACK) {
        return match payload.is_empty() {
            true => Ok(Settings::Ack),
            false => Err(connection_error(
                Code::FrameSize,
                "a SETTINGS ACK with a payload",
            )),
        };
    }
    if !payload.len().is_multiple_of(6) {
        return Err(connection_error(
            Code::FrameSize,
            "SETTINGS not a multiple of 6 bytes",
        ));
    }
    let mut values = Vec::with_capacity(payload.len() / 6);
    for p in payload.chunks_exact(6) {
        let id = u16::from_be_bytes([p[0], p[1]]);
        let value = u32::from_be_bytes([p[2], p[3], p[4], p[5]]);
        check(id, value)?;
        values.push((id, value));
    }
    Ok(Settings::Values(values))
}

fn check(id: u16, value: u32) -> Result<(), FrameError> {
    match id {
        ENABLE_PUSH | ENABLE_CONNECT_PROTOCOL if value > 1 => Err(connection_error(
            Code::Protocol,
            "a boolean setting neither 0 nor 1",
        )),
        INITIAL_WINDOW_SIZE if value > 0x7fff_ffff => Err(connection_error(
            Code::FlowControl,
            "SETTINGS_INITIAL_WINDOW_SIZE past 2^31-1",
        )),
        MAX_FRAME_SIZE if !(MAX_FRAME_MIN..=0x00ff_ffff).contains(&value) => Err(connection_error(
            Code::Protocol,
            "SETTINGS_MAX_FRAME_SIZE out of range",
        )),
        _ => Ok(()),
    }
}

pub fn write(values: &[(u16, u32)], out: &mut Vec<u8>) {
    Header::write(kind::SETTINGS, 0, 0, 6 * values.len(), out);
    for (id, value) in values {
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(&value.to_be_bytes());
    }
}

pub fn write_ack(out: &mut Vec<u8>) {
    Header::write(kind::SETTINGS, flag::ACK, 0, 0, out);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(len: usize, flags: u8) -> Header {
        Header {
            len,
            kind: kind::SETTINGS,
            flags,
            stream: 0,
        }
    }

    #[test]
    fn round_trip_and_checks() {
        let mut out = Vec::new();
        write(&[(MAX_CONCURRENT_STREAMS, 128), (0x99, 7)], &mut out);
        let h = Header::parse(&out).unwrap();
        assert_eq!(
            decode(&h, &out[9..]),
            Ok(Settings::Values(vec![
                (MAX_CONCURRENT_STREAMS, 128),
                (0x99, 7)
            ]))
        );
        assert!(decode(&header(5, 0), &out[9..14]).is_err());
        let mut ack = Vec::new();
        write_ack(&mut ack);
        assert_eq!(
            decode(&Header::parse(&ack).unwrap(), &[]),
            Ok(Settings::Ack)
        );
        assert!(decode(&header(6, flag::ACK), &[0; 6]).is_err());
        let bad: [(u16, u32, Code); 4] = [
            (ENABLE_PUSH, 2, Code::Protocol),
            (INITIAL_WINDOW_SIZE, 0x8000_0000, Code::FlowControl),
            (MAX_FRAME_SIZE, 16_383, Code::Protocol),
            (MAX_FRAME_SIZE, 0x0100_0000, Code::Protocol),
        ];
        for (id, value, code) in bad {
            let mut p = id.to_be_bytes().to_vec();
            p.extend_from_slice(&value.to_be_bytes());
            assert_eq!(decode(&header(6, 0), &p).unwrap_err().code, code);
        }
    }
}
