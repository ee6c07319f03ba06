//! Large bodies are streamed [R4]: 256 MiB down and 256 MiB up arrive byte-exact while
//! hawkey's peak resident memory stays under 64 MiB. Neither side of the test holds
//! the body either: it is generated from a seed and checked against the same stream
//! as it arrives.

mod common;
use common::*;

use std::io::{Read, Write};
use std::sync::mpsc;

const BODY_BYTES: u64 = 256 << 20;
const PEAK_LIMIT_KB: u64 = 64 << 10;
/// Generation and check block; a multiple of 8 keeps `XorShift` output one stream.
const BLOCK: usize = 64 << 10;

/// The byte stream `XorShift(seed)` produces, compared with what arrives piece by piece.
struct Expected {
    rng: XorShift,
    block: Vec<u8>,
    pos: usize,
    /// Bytes checked so far.
    seen: u64,
    /// Offset of the first byte that differed.
    mismatch: Option<u64>,
}

impl Expected {
    fn new(seed: u64) -> Expected {
        Expected {
            rng: XorShift(seed),
            block: vec![0; BLOCK],
            pos: BLOCK,
            seen: 0,
            mismatch: None,
        }
    }

    fn check(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            if self.pos == BLOCK {
                self.rng.fill(&mut self.block);
                self.pos = 0;
            }
            let n = data.len().min(BLOCK - self.pos);
            let want = &self.block[self.pos..self.pos + n];
            if self.mismatch.is_none() && data[..n] != *want {
                let at = want.iter().zip(data).position(|(a, b)| a != b).unwrap();
                self.mismatch = Some(self.seen + at as u64);
            }
            (self.pos, self.seen, data) = (self.pos + n, self.seen + n as u64, &data[n..]);
        }
    }
}

/// Writes `len` bytes of `XorShift(seed)` to `w`.
fn write_stream(w: &mut impl Write, seed: u64, len: u64) -> std::io::Result<()> {
    let (mut rng, mut block, mut left) = (XorShift(seed), vec![0; BLOCK], len);
    while left > 0 {
        rng.fill(&mut block);
        let n = left.min(BLOCK as u64) as usize;
        w.write_all(&block[..n])?;
        left -= n as u64;
    }
    Ok(())
}

/// Reads exactly `len` bytes from `r` into `expected`.
fn check_stream(r: &mut impl Read, expected: &mut Expected, len: u64) -> std::io::Result<()> {
    let mut buf = vec![0; BLOCK];
    let mut left = len;
    while left > 0 {
        let want = left.min(BLOCK as u64) as usize;
        let n = r.read(&mut buf[..want])?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        expected.check(&buf[..n]);
        left -= n as u64;
    }
    Ok(())
}

fn content_length(head: &str) -> u64 {
    head.lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().unwrap())
        })
        .expect("a Content-Length")
}

#[test]
fn r4_256_mib_download_arrives_byte_exact_in_flat_memory() {
    let backend = Backend::raw(|mut s, conn| {
        if read_request(&mut s, conn).is_some() {
            let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {BODY_BYTES}\r\n\r\n");
            let _ = s
                .write_all(head.as_bytes())
                .and_then(|_| write_stream(&mut s, 42, BODY_BYTES));
        }
    });
    let hawkey = Hawkey::start(route_config("^/", &backend));
    let mut s = hawkey.connect();
    send(
        &mut s,
        b"GET /big HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    );
    let head = String::from_utf8(read_head_bytes(&mut s).unwrap()).unwrap();
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    assert_eq!(content_length(&head), BODY_BYTES);
    let mut expected = Expected::new(42);
    check_stream(&mut s, &mut expected, BODY_BYTES).unwrap();
    assert_eq!(expected.seen, BODY_BYTES);
    assert_eq!(expected.mismatch, None, "first differing byte");
    let peak_kb = hawkey.proc_status("VmHWM");
    assert!(
        peak_kb < PEAK_LIMIT_KB,
        "hawkey peaked at {peak_kb} kB resident"
    );
}

#[test]
fn r4_256_mib_upload_arrives_byte_exact_in_flat_memory() {
    let (tx, rx) = mpsc::channel();
    let backend = Backend::raw(move |mut s, _| {
        let Some(head) = read_head_bytes(&mut s) else {
            return;
        };
        let len = content_length(&String::from_utf8(head).unwrap());
        let mut expected = Expected::new(7);
        let read = check_stream(&mut s, &mut expected, len);
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        let _ = tx.send((len, read.is_ok(), expected.seen, expected.mismatch));
    });
    let hawkey = Hawkey::start(route_config("^/", &backend));
    let mut s = hawkey.connect();
    let head = format!("POST /up HTTP/1.1\r\nHost: h\r\nContent-Length: {BODY_BYTES}\r\n\r\n");
    send(&mut s, head.as_bytes());
    write_stream(&mut s, 7, BODY_BYTES).unwrap();
    let res = read_response(&mut s, false);
    assert_eq!((res.status, res.text().as_str()), (200, "ok"));
    let (len, complete, seen, mismatch) = rx.recv_timeout(TIMEOUT).unwrap();
    assert_eq!(len, BODY_BYTES, "Content-Length the backend got");
    assert!(complete, "the backend's read ended early");
    assert_eq!(seen, BODY_BYTES);
    assert_eq!(mismatch, None, "first differing byte");
    let peak_kb = hawkey.proc_status("VmHWM");
    assert!(
        peak_kb < PEAK_LIMIT_KB,
        "hawkey peaked at {peak_kb} kB resident"
    );
}

/// hawkey's CPU time so far, user and system, from `/proc/PID/stat`.
fn cpu_time(hawkey: &Hawkey) -> std::time::Duration {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", hawkey.pid())).unwrap();
    // The fields after the command name, which is in parentheses: utime, stime are
    // the 12th and 13th of them.
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<u64> = after
        .split(' ')
        .skip(11)
        .take(2)
        .map(|f| f.parse().unwrap())
        .collect();
    // SAFETY: sysconf only reads a constant.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    std::time::Duration::from_millis((fields[0] + fields[1]) * 1000 / ticks)
}

/// Asserts that hawkey spends well under a core over the next second: nothing loops.
fn assert_not_spinning(hawkey: &Hawkey, what: &str) {
    let before = cpu_time(hawkey);
    std::thread::sleep(std::time::Duration::from_secs(1));
    let spent = cpu_time(hawkey) - before;
    assert!(
        spent < std::time::Duration::from_millis(300),
        "{what}: hawkey used {spent:?} of CPU in one second"
    );
}

/// [P]: a length of 4 GiB (2^32, 0 in a 32-bit `usize`) is relayed as announced:
/// the byte that came is passed on, and when the sender stops short the other side's
/// connection is closed. The same for a response.
#[test]
fn p_lengths_of_4_gib_are_relayed_not_truncated_or_looped_on() {
    const FOUR_GIB: u64 = 1 << 32;
    let (tx, rx) = mpsc::channel();
    let backend = Backend::raw(move |mut s, _| {
        let Some(head) = read_head_bytes(&mut s) else {
            return;
        };
        let head = String::from_utf8(head).unwrap();
        if head.starts_with("GET ") {
            let _ = s.write_all(
                format!("HTTP/1.1 200 OK\r\nContent-Length: {FOUR_GIB}\r\n\r\ny").as_bytes(),
            );
            return; // closes: the body stops short
        }
        let mut body = Vec::new();
        let end = s.read_to_end(&mut body).map(|_| ());
        let _ = tx.send((content_length(&head), body, end.is_ok()));
    });
    let hawkey = Hawkey::start(route_config("^/", &backend));

    let mut s = hawkey.connect();
    let head = format!("POST /up HTTP/1.1\r\nHost: h\r\nContent-Length: {FOUR_GIB}\r\n\r\nx");
    send(&mut s, head.as_bytes());
    assert_not_spinning(&hawkey, "an upload of 2^32 bytes with one byte sent");
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let (length, body, _) = rx
        .recv_timeout(TIMEOUT)
        .expect("the backend saw its connection end");
    assert_eq!(length, FOUR_GIB);
    assert_eq!(body, b"x");

    let mut s = hawkey.connect();
    send(&mut s, b"GET /down HTTP/1.1\r\nHost: h\r\n\r\n");
    let head = String::from_utf8(read_head_bytes(&mut s).unwrap()).unwrap();
    assert_eq!(content_length(&head), FOUR_GIB, "{head}");
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).unwrap();
    assert_eq!(rest, b"y", "the one byte, then the connection closed");
    assert_not_spinning(&hawkey, "a download of 2^32 bytes cut after one byte");
}
