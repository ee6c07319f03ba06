//! HPACK (RFC 7541): header blocks to fields and back, with the Huffman code
//! (`huffman.rs`) and the indexing tables (`table.rs`). Pure code, tested on the
//! byte-exact examples of Appendix C.
//!
//! Decoding checks the limits of SPEC [H2] as it goes: each field counts its name,
//! its value and 32 bytes towards `max_list` (so a small block that names a large
//! table entry again and again, an HPACK bomb, stops at the limit), and at most
//! `max_fields` fields. The dynamic table of either direction is at most 4 096
//! bytes: we never announce a larger `SETTINGS_HEADER_TABLE_SIZE`, and we use no
//! more of the client's than that.

pub mod huffman;
pub mod table;

use table::Dynamic;

/// The largest dynamic table, both ways [H2].
pub const TABLE_MAX: usize = 4096;

/// Why a header block was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HpackError {
    /// Not valid HPACK (a COMPRESSION_ERROR, RFC 9113 §4.3).
    Compression(&'static str),
    /// Valid, but over `max_list` or `max_fields`.
    TooLarge,
}

/// Reads an integer with an `n`-bit prefix (§5.1) from `buf` at `*at`.
fn read_int(buf: &[u8], at: &mut usize, n: u32) -> Result<usize, HpackError> {
    let truncated = HpackError::Compression("a header block ends inside an integer");
    let mask = (1u32 << n) - 1;
    let first = u32::from(*buf.get(*at).ok_or(truncated)?) & mask;
    *at += 1;
    if first < mask {
        return Ok(first as usize);
    }
    let mut value = u64::from(mask);
    let mut shift = 0;
    loop {
        let b = *buf.get(*at).ok_or(truncated)?;
        *at += 1;
        value += u64::from(b & 0x7f) << shift;
        shift += 7;
        if b & 0x80 == 0 {
            break;
        }
        // Nothing in a block we accept needs more than 28 bits; refuse early.
        if shift > 28 {
            return Err(HpackError::Compression("an integer too large"));
        }
    }
    usize::try_from(value).map_err(|_| HpackError::Compression("an integer too large"))
}

/// Appends `value` with an `n`-bit prefix, the prefix's other bits `flags`.
fn write_int(out: &mut Vec<u8>, flags: u8, n: u32, value: usize) {
    let mask = (1usize << n) - 1;
    if value < mask {
        out.push(flags | low(value));
        return;
    }
    out.push(flags | low(mask));
    let mut rest = value - mask;
    while rest >= 0x80 {
        out.push(low(rest & 0x7f) | 0x80);
        rest >>= 7;
    }
    out.push(low(rest));
}

fn low(v: usize) -> u8 {
    u8::try_from(v & 0xff).unwrap_or(0)
}

/// Reads a string literal (§5.2) into `into`, at most `limit` bytes.
fn read_string(
    buf: &[u8],
    at: &mut usize,
    into: &mut Vec<u8>,
    limit: usize,
) -> Result<(), HpackError> {
    let huffman = buf.get(*at).is_some_and(|b| b & 0x80 != 0);
    let len = read_int(buf, at, 7)?;
    let end =
        at.checked_add(len)
            .filter(|&end| end <= buf.len())
            .ok_or(HpackError::Compression(
                "a string runs past its header block",
            ))?;
    let bytes = &buf[*at..end];
    *at = end;
    if huffman {
        huffman::decode(bytes, into, limit).map_err(|e| match e {
            huffman::HuffmanError::TooLong => HpackError::TooLarge,
            _ => HpackError::Compression("a bad Huffman string"),
        })
    } else if into.len() + bytes.len() > limit {
        Err(HpackError::TooLarge)
    } else {
        into.extend_from_slice(bytes);
        Ok(())
    }
}

/// Appends a string literal, Huffman-coded unless that is longer.
fn write_string(out: &mut Vec<u8>, bytes: &[u8]) {
    let coded = huffman::encoded_len(bytes);
    if coded <= bytes.len() {
        write_int(out, 0x80, 7, coded);
        huffman::encode(bytes, out);
    } else {
        write_int(out, 0, 7, bytes.len());
        out.extend_from_slice(bytes);
    }
}

/// The receiving side: our `SETTINGS_HEADER_TABLE_SIZE` is the default, 4 096.
#[derive(Debug)]
pub struct Decoder {
    table: Dynamic,
    name: Vec<u8>,
    value: Vec<u8>,
}

impl Default for Decoder {
    fn default() -> Decoder {
        Decoder::new(TABLE_MAX)
    }
}

impl Decoder {
    pub fn new(max: usize) -> Decoder {
        Decoder {
            table: Dynamic::new(max),
            name: Vec::new(),
            value: Vec::new(),
        }
    }

    /// Decodes a whole header block, giving each field to `field` in order. Fields
    /// may total at most `max_list` bytes (32 counted per field) and number at most
    /// `max_fields`. After an error the table is not usable: the connection ends.
    pub fn decode(
        &mut self,
        block: &[u8],
        max_list: usize,
        max_fields: usize,
        field: &mut dyn FnMut(&[u8], &[u8]),
    ) -> Result<(), HpackError> {
        let (mut at, mut list, mut fields) = (0, 0usize, 0usize);
        let mut updates_allowed = true;
        while at < block.len() {
            let b = block[at];
            if b & 0xe0 == 0x20 {
                // §6.3: a dynamic table size update, only at the start of a block.
                let max = read_int(block, &mut at, 5)?;
                if !updates_allowed || max > TABLE_MAX {
                    return Err(HpackError::Compression("a bad dynamic table size update"));
                }
                self.table.set_max(max);
                continue;
            }
            updates_allowed = false;
            fields += 1;
            if fields > max_fields {
                return Err(HpackError::TooLarge);
            }
            let room = max_list.saturating_sub(list);
            let (name, value) = if b & 0x80 != 0 {
                // §6.1: an indexed field.
                let index = read_int(block, &mut at, 7)?;
                let (n, v) = self.entry(index)?;
                (n.to_vec(), v.to_vec())
            } else {
                // §6.2: a literal, with incremental indexing (01), or without (0000)
                // or never indexed (0001).
                let (prefix, index_it) = if b & 0xc0 == 0x40 {
                    (6, true)
                } else {
                    (4, false)
                };
                let index = read_int(block, &mut at, prefix)?;
                self.name.clear();
                self.value.clear();
                if index == 0 {
                    read_string(block, &mut at, &mut self.name, room)?;
                } else {
                    let (n, _) = self.entry(index)?;
                    if n.len() > room {
                        return Err(HpackError::TooLarge);
                    }
                    self.name = n.to_vec();
                }
                let room = room.saturating_sub(self.name.len());
                read_string(block, &mut at, &mut self.value, room)?;
                if index_it {
                    self.table.insert(&self.name, &self.value);
                }
                (
                    std::mem::take(&mut self.name),
                    std::mem::take(&mut self.value),
                )
            };
            list += table::entry_size(&name, &value);
            if list > max_list {
                return Err(HpackError::TooLarge);
            }
            field(&name, &value);
            (self.name, self.value) = (name, value); // keep the buffers
        }
        Ok(())
    }

    fn entry(&self, index: usize) -> Result<(&[u8], &[u8]), HpackError> {
        self.table
            .get(index)
            .ok_or(HpackError::Compression("an index past the tables"))
    }
}

/// The sending side, within the client's `SETTINGS_HEADER_TABLE_SIZE` (at most
/// 4 096). Every field is indexed unless it would fill more than half the table.
#[derive(Debug)]
pub struct Encoder {
    table: Dynamic,
    /// Size updates to announce at the start of the next block (§4.2): the
    /// smallest the table went to since the last block, then the size now.
    updates: Option<(usize, usize)>,
}

impl Default for Encoder {
    fn default() -> Encoder {
        Encoder::new(TABLE_MAX)
    }
}

impl Encoder {
    pub fn new(max: usize) -> Encoder {
        Encoder {
            table: Dynamic::new(max.min(TABLE_MAX)),
            updates: None,
        }
    }

    /// The client's `SETTINGS_HEADER_TABLE_SIZE` changed.
    pub fn set_max(&mut self, max: usize) {
        let max = max.min(TABLE_MAX);
        if max == self.table.max() && self.updates.is_none() {
            return;
        }
        let least = self.updates.map_or(max, |(least, _)| least.min(max));
        self.updates = Some((least.min(self.table.max()), max));
        self.table.set_max(max);
    }

    /// Appends the block for `fields` (names in lower case).
    pub fn encode<'a>(
        &mut self,
        fields: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
        out: &mut Vec<u8>,
    ) {
        if let Some((least, now)) = self.updates.take() {
            write_int(out, 0x20, 5, least);
            if now != least {
                write_int(out, 0x20, 5, now);
            }
        }
        for (name, value) in fields {
            self.field(name, value, out);
        }
    }

    fn field(&mut self, name: &[u8], value: &[u8], out: &mut Vec<u8>) {
        let named = match self.table.find(name, value) {
            Ok(index) => return write_int(out, 0x80, 7, index),
            Err(named) => named,
        };
        let index_it = table::entry_size(name, value) <= self.table.max() / 2;
        let (flags, prefix) = if index_it { (0x40, 6) } else { (0x00, 4) };
        match named {
            Some(index) => write_int(out, flags, prefix, index),
            None => {
                write_int(out, flags, prefix, 0);
                write_string(out, name);
            }
        }
        write_string(out, value);
        if index_it {
            self.table.insert(name, value);
        }
    }
}

/// Bytes from the hex of the RFC's examples (`"8286 8441"`).
#[cfg(test)]
fn unhex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(d: &mut Decoder, block: &[u8]) -> Result<Vec<(String, String)>, HpackError> {
        let mut fields = Vec::new();
        d.decode(block, 1 << 20, 1000, &mut |n, v| {
            fields.push((
                String::from_utf8_lossy(n).into_owned(),
                String::from_utf8_lossy(v).into_owned(),
            ));
        })?;
        Ok(fields)
    }

    fn owned(fields: &[(&str, &str)]) -> Vec<(String, String)> {
        fields
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    fn encode(e: &mut Encoder, fields: &[(&str, &str)]) -> Vec<u8> {
        let mut out = Vec::new();
        e.encode(
            fields.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())),
            &mut out,
        );
        out
    }

    #[test]
    fn integers_of_appendix_c1() {
        let mut out = Vec::new();
        write_int(&mut out, 0, 5, 10);
        assert_eq!(out, [10]);
        out.clear();
        write_int(&mut out, 0, 5, 1337);
        assert_eq!(out, [31, 154, 10]);
        out.clear();
        write_int(&mut out, 0, 8, 42);
        assert_eq!(out, [42]);
        let mut at = 0;
        assert_eq!(read_int(&[0xff, 154, 10], &mut at, 5), Ok(1337));
        assert_eq!(at, 3);
        let mut at = 0;
        assert!(read_int(&[31, 154], &mut at, 5).is_err());
        let mut at = 0;
        assert!(read_int(&[31, 0xff, 0xff, 0xff, 0xff, 0xff, 1], &mut at, 5).is_err());
    }

    #[test]
    fn literals_of_appendix_c2() {
        let cases: [(&str, (&str, &str), usize); 4] = [
            (
                "400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572",
                ("custom-key", "custom-header"),
                55,
            ),
            (
                "040c 2f73 616d 706c 652f 7061 7468",
                (":path", "/sample/path"),
                0,
            ),
            (
                "1008 7061 7373 776f 7264 0673 6563 7265 74",
                ("password", "secret"),
                0,
            ),
            ("82", (":method", "GET"), 0),
        ];
        for (hex, field, size) in cases {
            let mut d = Decoder::default();
            assert_eq!(decode(&mut d, &unhex(hex)).unwrap(), owned(&[field]));
            assert_eq!(d.table.size(), size, "{hex}");
        }
    }

    const REQUESTS: [&[(&str, &str)]; 3] = [
        &[
            (":method", "GET"),
            (":scheme", "http"),
            (":path", "/"),
            (":authority", "www.example.com"),
        ],
        &[
            (":method", "GET"),
            (":scheme", "http"),
            (":path", "/"),
            (":authority", "www.example.com"),
            ("cache-control", "no-cache"),
        ],
        &[
            (":method", "GET"),
            (":scheme", "https"),
            (":path", "/index.html"),
            (":authority", "www.example.com"),
            ("custom-key", "custom-value"),
        ],
    ];

    const DATE1: &str = "Mon, 21 Oct 2013 20:13:21 GMT";
    const RESPONSES: [&[(&str, &str)]; 3] = [
        &[
            (":status", "302"),
            ("cache-control", "private"),
            ("date", DATE1),
            ("location", "https://www.example.com"),
        ],
        &[
            (":status", "307"),
            ("cache-control", "private"),
            ("date", DATE1),
            ("location", "https://www.example.com"),
        ],
        &[
            (":status", "200"),
            ("cache-control", "private"),
            ("date", "Mon, 21 Oct 2013 20:13:22 GMT"),
            ("location", "https://www.example.com"),
            ("content-encoding", "gzip"),
            (
                "set-cookie",
                "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1",
            ),
        ],
    ];

    #[test]
    fn requests_of_appendix_c3_without_huffman() {
        let blocks = [
            "8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
            "8286 84be 5808 6e6f 2d63 6163 6865",
            "8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65",
        ];
        let mut d = Decoder::default();
        for (hex, want) in blocks.iter().zip(REQUESTS) {
            assert_eq!(decode(&mut d, &unhex(hex)).unwrap(), owned(want));
        }
        assert_eq!(d.table.size(), 164);
    }

    #[test]
    fn requests_of_appendix_c4_with_huffman_both_ways() {
        let blocks = [
            "8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff",
            "8286 84be 5886 a8eb 1064 9cbf",
            "8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf",
        ];
        let (mut d, mut e) = (Decoder::default(), Encoder::default());
        for (hex, want) in blocks.iter().zip(REQUESTS) {
            assert_eq!(decode(&mut d, &unhex(hex)).unwrap(), owned(want));
            assert_eq!(encode(&mut e, want), unhex(hex));
        }
        assert_eq!((d.table.size(), e.table.size()), (164, 164));
    }

    #[test]
    fn responses_of_appendix_c5_without_huffman() {
        let blocks = [
            "4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3120 474d 546e 1768 7474 7073 3a2f 2f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
            "4803 3330 37c1 c0bf",
            "88c1 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3220 474d 54c0 5a04 677a 6970 7738 666f 6f3d 4153 444a 4b48 514b 425a 584f 5157 454f 5049 5541 5851 5745 4f49 553b 206d 6178 2d61 6765 3d33 3630 303b 2076 6572 7369 6f6e 3d31",
        ];
        let mut d = Decoder::new(256);
        for (hex, want) in blocks.iter().zip(RESPONSES) {
            assert_eq!(decode(&mut d, &unhex(hex)).unwrap(), owned(want));
        }
        assert_eq!(d.table.size(), 215);
    }

    #[test]
    fn responses_of_appendix_c6_with_huffman_both_ways() {
        let blocks = [
            "4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6 2d1b ff6e 919d 29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3",
            "4883 640e ffc1 c0bf",
            "88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a 839b d9ab 77ad 94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f 9587 3160 65c0 03ed 4ee5 b106 3d50 07",
        ];
        let (mut d, mut e) = (Decoder::new(256), Encoder::new(256));
        let sizes = [222, 222, 215];
        for ((hex, want), size) in blocks.iter().zip(RESPONSES).zip(sizes) {
            assert_eq!(decode(&mut d, &unhex(hex)).unwrap(), owned(want));
            assert_eq!(encode(&mut e, want), unhex(hex));
            assert_eq!((d.table.size(), e.table.size()), (size, size));
        }
    }

    #[test]
    fn a_bomb_stops_at_the_list_limit() {
        // One 4000-byte entry, then 1000 one-byte references to it.
        let mut block = vec![0x40];
        write_string(&mut block, b"x-big");
        write_string(&mut block, &[b'a'; 4000]);
        block.extend(std::iter::repeat_n(0xbe, 1000)); // index 62
        let mut d = Decoder::default();
        let mut seen = 0;
        let result = d.decode(&block, 16 * 1024, 128, &mut |_, _| seen += 1);
        assert_eq!(result, Err(HpackError::TooLarge));
        assert_eq!(seen, 4, "four fit in 16 KiB, the fifth is refused");
        let mut d = Decoder::default();
        let many = vec![0x82; 129]; // :method GET, 129 times
        assert_eq!(
            d.decode(&many, 1 << 20, 128, &mut |_, _| {}),
            Err(HpackError::TooLarge)
        );
    }

    #[test]
    fn table_size_updates_are_checked() {
        let mut d = Decoder::default();
        // Past our 4096, and after a field.
        assert!(decode(&mut d, &[0x3f, 0xe2, 0x1f]).is_err()); // 4097
        let mut d = Decoder::default();
        assert!(decode(&mut d, &[0x82, 0x20]).is_err());
        let mut d = Decoder::default();
        assert_eq!(
            decode(&mut d, &[0x20, 0x3f, 0xe1, 0x1f, 0x82])
                .unwrap()
                .len(),
            1
        );
        // The encoder announces a smaller table first.
        let mut e = Encoder::default();
        e.set_max(0);
        e.set_max(100);
        let block = encode(&mut e, &[(":status", "200")]);
        assert_eq!(block, [0x20, 0x3f, 0x45, 0x88]);
        let mut d = Decoder::default();
        assert_eq!(
            decode(&mut d, &block).unwrap(),
            owned(&[(":status", "200")])
        );
    }

    #[test]
    fn every_cut_of_a_bad_block_is_an_error_not_a_panic() {
        let block = unhex("8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf");
        for cut in 1..block.len() {
            let mut d = Decoder::default();
            let _ = decode(&mut d, &block[..cut]);
        }
        let mut d = Decoder::default();
        assert!(decode(&mut d, &[0xff, 0x80]).is_err()); // an index cut short
        assert!(decode(&mut d, &[0xc0]).is_err()); // index 64: past the tables
    }
}
