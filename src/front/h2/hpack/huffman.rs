//! The static Huffman code of HPACK (RFC 7541 §5.2, Appendix B), both ways.
//!
//! The code of Appendix B is canonical: within one length, codes go up with the
//! symbol, and each length starts where the shorter ones left off. So the 257 code
//! lengths below are the whole table; every code is computed from them at compile
//! time (`CODES`), and the tests hold a sample of them against the appendix.
//!
//! Decoding walks the code a bit at a time (at most 30 steps a symbol, 8 a byte of
//! input): bounded work per byte received, with no tree to build.

/// Bits of each symbol's code: 0–255, then EOS (256). Appendix B, sixteen a row.
#[rustfmt::skip]
const LENGTHS: [u8; 257] = [
    13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, // 0
    28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 28, // 16
     6, 10, 10, 12, 13,  6,  8, 11, 10, 10,  8, 11,  8,  6,  6,  6, // 32 ' '
     5,  5,  5,  6,  6,  6,  6,  6,  6,  6,  7,  8, 15,  6, 12, 10, // 48 '0'
    13,  6,  7,  7,  7,  7,  7,  7,  7,  7,  7,  7,  7,  7,  7,  7, // 64 '@'
     7,  7,  7,  7,  7,  7,  7,  7,  8,  7,  8, 13, 19, 13, 14,  6, // 80 'P'
    15,  5,  6,  5,  6,  5,  6,  6,  6,  5,  7,  7,  6,  6,  6,  5, // 96 '`'
     6,  7,  6,  5,  5,  6,  7,  7,  7,  7,  7, 15, 11, 14, 13, 28, // 112 'p'
    20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23, // 128
    24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24, // 144
    22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23, // 160
    21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23, // 176
    26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25, // 192
    19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27, // 208
    20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23, // 224
    26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26, // 240
    30,                                                             // EOS
];

const EOS: u16 = 256;
const LONGEST: usize = 30;

/// Per length: the first code of that length, how many codes have it, and where
/// its symbols start in `SYMBOLS` (the symbols sorted by length, then value).
struct Canonical {
    first: [u32; LONGEST + 1],
    count: [u16; LONGEST + 1],
    start: [u16; LONGEST + 1],
    symbols: [u16; 257],
    codes: [u32; 257],
}

// In a const fn `try_from` is not available; every cast below is of a value under 257.
#[allow(clippy::cast_possible_truncation)]
const fn canonical() -> Canonical {
    let mut c = Canonical {
        first: [0; LONGEST + 1],
        count: [0; LONGEST + 1],
        start: [0; LONGEST + 1],
        symbols: [0; 257],
        codes: [0; 257],
    };
    let mut s = 0;
    while s < 257 {
        c.count[LENGTHS[s] as usize] += 1;
        s += 1;
    }
    let (mut code, mut at, mut len) = (0u32, 0u16, 1);
    while len <= LONGEST {
        code <<= 1;
        c.first[len] = code;
        c.start[len] = at;
        code += c.count[len] as u32;
        at += c.count[len];
        len += 1;
    }
    // A complete code: the longest codes end exactly at all ones.
    assert!(code == 1 << LONGEST);
    let mut next = c.first;
    let mut filled = c.start;
    let mut s = 0;
    while s < 257 {
        let len = LENGTHS[s] as usize;
        c.codes[s] = next[len];
        next[len] += 1;
        c.symbols[filled[len] as usize] = s as u16;
        filled[len] += 1;
        s += 1;
    }
    c
}

static CODE: Canonical = canonical();

/// The length of `bytes` Huffman-coded, padding included.
pub fn encoded_len(bytes: &[u8]) -> usize {
    let bits: usize = bytes
        .iter()
        .map(|&b| usize::from(LENGTHS[usize::from(b)]))
        .sum();
    bits.div_ceil(8)
}

/// Appends `bytes` Huffman-coded, padded to a byte with the high bits of EOS (ones).
pub fn encode(bytes: &[u8], out: &mut Vec<u8>) {
    let mut acc: u64 = 0;
    let mut held = 0u32; // bits in `acc`
    for &b in bytes {
        let len = u32::from(LENGTHS[usize::from(b)]);
        acc = (acc << len) | u64::from(CODE.codes[usize::from(b)]);
        held += len;
        while held >= 8 {
            held -= 8;
            out.push(low_byte(acc >> held));
        }
    }
    if held > 0 {
        let pad = 8 - held;
        out.push(low_byte((acc << pad) | ((1 << pad) - 1)));
    }
}

fn low_byte(v: u64) -> u8 {
    (v & 0xff) as u8 // the mask makes it exact
}

/// Why a Huffman string was refused (RFC 7541 §5.2: a COMPRESSION_ERROR).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HuffmanError {
    /// The EOS symbol inside the string.
    Eos,
    /// Padding longer than 7 bits, or not the high bits of EOS.
    Padding,
    /// The decoded string would pass the caller's limit.
    TooLong,
}

/// Appends the decoding of `bytes` to `out`, which may not grow past `limit` bytes.
pub fn decode(bytes: &[u8], out: &mut Vec<u8>, limit: usize) -> Result<(), HuffmanError> {
    let (mut code, mut len) = (0u32, 0usize);
    for &b in bytes {
        for shift in (0..8).rev() {
            code = (code << 1) | u32::from((b >> shift) & 1);
            len += 1;
            let offset = code.wrapping_sub(CODE.first[len]);
            if offset >= u32::from(CODE.count[len]) {
                if len == LONGEST {
                    return Err(HuffmanError::Padding); // unreachable: the code is complete
                }
                continue;
            }
            let symbol = CODE.symbols[usize::from(CODE.start[len]) + offset as usize];
            if symbol == EOS {
                return Err(HuffmanError::Eos);
            }
            if out.len() >= limit {
                return Err(HuffmanError::TooLong);
            }
            out.push(low_byte(u64::from(symbol)));
            (code, len) = (0, 0);
        }
    }
    // What is left must be a prefix of EOS (all ones), and shorter than a byte.
    if len > 7 || code != (1 << len) - 1 {
        return Err(HuffmanError::Padding);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::unhex;
    use super::*;

    #[test]
    fn codes_match_appendix_b() {
        // (symbol, code as hex aligned to the LSB), from Appendix B.
        let sample: [(u16, u32); 14] = [
            (0, 0x1ff8),
            (1, 0x7fffd8),
            (10, 0x3ffffffc),
            (b' '.into(), 0x14),
            (b'&'.into(), 0xf8),
            (b'0'.into(), 0x0),
            (b'a'.into(), 0x3),
            (b'z'.into(), 0x7b),
            (b'~'.into(), 0x1ffd),
            (128, 0xfffe6),
            (192, 0x3ffffe0),
            (225, 0xfffff3),
            (255, 0x3ffffee),
            (EOS, 0x3fffffff),
        ];
        for (symbol, code) in sample {
            assert_eq!(CODE.codes[usize::from(symbol)], code, "symbol {symbol}");
        }
    }

    /// The Huffman strings of RFC 7541 Appendix C.4 and C.6.
    const STRINGS: [(&str, &str); 10] = [
        ("f1e3 c2e5 f23a 6ba0 ab90 f4ff", "www.example.com"),
        ("a8eb 1064 9cbf", "no-cache"),
        ("25a8 49e9 5ba9 7d7f", "custom-key"),
        ("25a8 49e9 5bb8 e8b4 bf", "custom-value"),
        ("6402", "302"),
        ("aec3 771a 4b", "private"),
        (
            "d07a be94 1054 d444 a820 0595 040b 8166 e082 a62d 1bff",
            "Mon, 21 Oct 2013 20:13:21 GMT",
        ),
        (
            "9d29 ad17 1863 c78f 0b97 c8e9 ae82 ae43 d3",
            "https://www.example.com",
        ),
        ("9bd9 ab", "gzip"),
        (
            "94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f 9587 3160 65c0 03ed 4ee5 b106 3d50 07",
            "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1",
        ),
    ];

    #[test]
    fn appendix_c_strings_both_ways() {
        for (hex, text) in STRINGS {
            let coded = unhex(hex);
            let mut out = Vec::new();
            decode(&coded, &mut out, usize::MAX).unwrap();
            assert_eq!(out, text.as_bytes());
            let mut again = Vec::new();
            encode(text.as_bytes(), &mut again);
            assert_eq!(again, coded, "{text}");
            assert_eq!(encoded_len(text.as_bytes()), coded.len());
        }
    }

    #[test]
    fn every_byte_round_trips() {
        let all: Vec<u8> = (0..=255).collect();
        let mut coded = Vec::new();
        encode(&all, &mut coded);
        let mut out = Vec::new();
        decode(&coded, &mut out, usize::MAX).unwrap();
        assert_eq!(out, all);
    }

    #[test]
    fn bad_padding_and_eos_are_refused() {
        let mut out = Vec::new();
        // 'a' (00011) padded with zeros instead of ones.
        assert_eq!(
            decode(&[0b0001_1000], &mut out, 99),
            Err(HuffmanError::Padding)
        );
        // A whole byte of padding after 'a'.
        assert_eq!(
            decode(&[0b0001_1111, 0xff], &mut out, 99),
            Err(HuffmanError::Padding)
        );
        // EOS itself: thirty ones, then padding.
        assert_eq!(
            decode(&[0xff, 0xff, 0xff, 0xff], &mut out, 99),
            Err(HuffmanError::Eos)
        );
        // The limit.
        out.clear();
        let mut coded = Vec::new();
        encode(b"hello", &mut coded);
        assert_eq!(decode(&coded, &mut out, 4), Err(HuffmanError::TooLong));
    }
}
