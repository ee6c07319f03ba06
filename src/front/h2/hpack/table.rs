//! The indexing tables of HPACK (RFC 7541 §2.3): the static table of Appendix A and
//! a dynamic table, one address space (1–61 static, 62 on dynamic, newest first).

use std::collections::VecDeque;

/// RFC 7541 Appendix A.
#[rustfmt::skip]
pub const STATIC: [(&str, &str); 61] = [
    (":authority", ""), (":method", "GET"), (":method", "POST"), (":path", "/"),
    (":path", "/index.html"), (":scheme", "http"), (":scheme", "https"),
    (":status", "200"), (":status", "204"), (":status", "206"), (":status", "304"),
    (":status", "400"), (":status", "404"), (":status", "500"), ("accept-charset", ""),
    ("accept-encoding", "gzip, deflate"), ("accept-language", ""), ("accept-ranges", ""),
    ("accept", ""), ("access-control-allow-origin", ""), ("age", ""), ("allow", ""),
    ("authorization", ""), ("cache-control", ""), ("content-disposition", ""),
    ("content-encoding", ""), ("content-language", ""), ("content-length", ""),
    ("content-location", ""), ("content-range", ""), ("content-type", ""),
    ("cookie", ""), ("date", ""), ("etag", ""), ("expect", ""), ("expires", ""),
    ("from", ""), ("host", ""), ("if-match", ""), ("if-modified-since", ""),
    ("if-none-match", ""), ("if-range", ""), ("if-unmodified-since", ""),
    ("last-modified", ""), ("link", ""), ("location", ""), ("max-forwards", ""),
    ("proxy-authenticate", ""), ("proxy-authorization", ""), ("range", ""),
    ("referer", ""), ("refresh", ""), ("retry-after", ""), ("server", ""),
    ("set-cookie", ""), ("strict-transport-security", ""), ("transfer-encoding", ""),
    ("user-agent", ""), ("vary", ""), ("via", ""), ("www-authenticate", ""),
];

/// What an entry costs in the table (§4.1): its name, its value and 32.
pub fn entry_size(name: &[u8], value: &[u8]) -> usize {
    name.len() + value.len() + 32
}

/// A name and a value.
type Entry = (Box<[u8]>, Box<[u8]>);

/// A dynamic table: entries newest first, their total size kept within `max`.
#[derive(Debug)]
pub struct Dynamic {
    entries: VecDeque<Entry>,
    size: usize,
    max: usize,
}

impl Dynamic {
    pub fn new(max: usize) -> Dynamic {
        Dynamic {
            entries: VecDeque::new(),
            size: 0,
            max,
        }
    }

    pub fn size(&self) -> usize {
        self.size
    }

    pub fn max(&self) -> usize {
        self.max
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// A new maximum size (a table size update): entries are evicted to fit.
    pub fn set_max(&mut self, max: usize) {
        self.max = max;
        self.evict_to(max);
    }

    /// Adds an entry, evicting the oldest to make room; one larger than the table
    /// leaves it empty (§4.4).
    pub fn insert(&mut self, name: &[u8], value: &[u8]) {
        let size = entry_size(name, value);
        if size > self.max {
            self.evict_to(0);
            return;
        }
        self.evict_to(self.max - size);
        self.entries.push_front((name.into(), value.into()));
        self.size += size;
    }

    fn evict_to(&mut self, max: usize) {
        while self.size > max {
            match self.entries.pop_back() {
                Some((n, v)) => self.size -= entry_size(&n, &v),
                None => self.size = 0,
            }
        }
    }

    /// Entry `index` of the combined address space (1-based), if there is one.
    pub fn get(&self, index: usize) -> Option<(&[u8], &[u8])> {
        match index {
            0 => None,
            1..=61 => {
                let (n, v) = STATIC[index - 1];
                Some((n.as_bytes(), v.as_bytes()))
            }
            _ => {
                let (n, v) = self.entries.get(index - 62)?;
                Some((n, v))
            }
        }
    }

    /// The index of `(name, value)` if the tables hold it, else `Err` with the index
    /// of an entry with that name, if any: static entries first.
    pub fn find(&self, name: &[u8], value: &[u8]) -> Result<usize, Option<usize>> {
        let mut named = None;
        for (i, (n, v)) in STATIC.iter().enumerate() {
            if n.as_bytes() == name {
                if v.as_bytes() == value {
                    return Ok(i + 1);
                }
                named = named.or(Some(i + 1));
            }
        }
        for (i, (n, v)) in self.entries.iter().enumerate() {
            if **n == *name {
                if **v == *value {
                    return Ok(i + 62);
                }
                named = named.or(Some(i + 62));
            }
        }
        Err(named)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_evicted_oldest_first() {
        let mut t = Dynamic::new(100);
        t.insert(b"a", b"1"); // 34
        t.insert(b"b", b"2"); // 68
        assert_eq!((t.len(), t.size()), (2, 68));
        assert_eq!(t.get(62), Some((&b"b"[..], &b"2"[..])));
        t.insert(b"c", b"3"); // 102 > 100: "a" goes
        assert_eq!((t.len(), t.size()), (2, 68));
        assert_eq!(t.get(63), Some((&b"b"[..], &b"2"[..])));
        assert_eq!(t.get(64), None);
        t.set_max(40);
        assert_eq!((t.len(), t.size()), (1, 34));
        t.insert(&[b'x'; 50], b"");
        assert!(t.is_empty());
        assert_eq!(t.size(), 0);
    }

    #[test]
    fn find_prefers_a_full_match_then_static_names() {
        let mut t = Dynamic::new(4096);
        assert_eq!(t.find(b":method", b"GET"), Ok(2));
        assert_eq!(t.find(b":status", b"302"), Err(Some(8)));
        t.insert(b":status", b"302");
        assert_eq!(t.find(b":status", b"302"), Ok(62));
        assert_eq!(t.find(b"x-new", b"1"), Err(None));
        assert_eq!(t.get(0), None);
        assert_eq!(t.get(61), Some((&b"www-authenticate"[..], &b""[..])));
    }
}
