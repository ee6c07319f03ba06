//! A backend, named by its `Authority`: `host:port` as written in the config (what
//! the `Host` field carries [R2]), parsed and checked (`dial.rs` connects to it).

use std::fmt;

/// A backend `host:port`, kept as written in the config for the Host field [R2].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Authority {
    /// As written in the config: what `Host` carries.
    pub text: String,
    /// The host part, without brackets for IPv6.
    pub host: String,
    pub port: u16,
}

impl Authority {
    /// `host:port`, `[v6]:port`, or a host alone (port 80).
    pub fn parse(s: &str) -> Result<Authority, &'static str> {
        let (host, port) = if let Some(rest) = s.strip_prefix('[') {
            let (v6, after) = rest
                .split_once(']')
                .ok_or("missing ']' after an IPv6 address")?;
            v6.parse::<std::net::Ipv6Addr>()
                .map_err(|_| "not an IPv6 address inside [ ]")?;
            match after {
                "" => (v6, None),
                _ => (
                    v6,
                    Some(after.strip_prefix(':').ok_or("expected ':' after ']'")?),
                ),
            }
        } else {
            match s.split_once(':') {
                Some(("", _)) => return Err("the host is empty"),
                Some((h, p)) if !p.contains(':') => (h, Some(p)),
                Some(_) => {
                    return Err("an IPv6 address must be written in brackets, as [::1]:8000");
                }
                None => (s, None),
            }
        };
        let valid_host = !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._:".contains(&b));
        if !valid_host {
            return Err("not a host name or address");
        }
        let port = match port {
            None => 80,
            Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => p
                .parse()
                .ok()
                .filter(|&p| p > 0)
                .ok_or("port out of range")?,
            Some(_) => return Err("the port is not a number"),
        };
        Ok(Authority {
            text: s.to_string(),
            host: host.to_string(),
            port,
        })
    }
}

impl fmt::Display for Authority {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorities() {
        let a = Authority::parse("127.0.0.1:7999").unwrap();
        assert_eq!(
            (a.host.as_str(), a.port, a.text.as_str()),
            ("127.0.0.1", 7999, "127.0.0.1:7999")
        );
        let a = Authority::parse("[::1]:8000").unwrap();
        assert_eq!((a.host.as_str(), a.port), ("::1", 8000));
        assert_eq!(Authority::parse("backend").unwrap().port, 80);
        assert_eq!(Authority::parse("[::1]").unwrap().port, 80);
        for bad in [
            "", ":80", "a:", "a:0", "a:65536", "a:x", "::1:80", "[::1", "[zz]:1", "a b:1", "a/b:1",
        ] {
            assert!(Authority::parse(bad).is_err(), "{bad:?}");
        }
    }
}
