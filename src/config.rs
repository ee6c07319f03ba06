//! server-config.json → a validated `Config`; nothing starts before this returns Ok [K].
//!
//! Every value that can be checked alone (a regex, an authority, a version, an address)
//! is checked while serde reads it, so serde_json puts the line and column on the
//! error. Checks that span keys (`serverRoot` with `staticDir`, `httpPort` with `pems`)
//! and checks of the file system come after, naming the keys. Relative paths resolve
//! against the directory that holds the config file.

use regex::Regex;
use serde::Deserialize;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::backend::authority::Authority;
use crate::error::ConfigError;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Config {
    #[serde(default = "default_port", deserialize_with = "port")]
    pub port: u16,
    #[serde(default = "default_host")]
    pub host: ListenHost,
    pub pems: Option<Pems>,
    pub access_log: Option<PathBuf>,
    pub server_root: Option<PathBuf>,
    pub static_dir: Option<StaticDir>,
    #[serde(default)]
    pub proxy: Vec<RouteConfig>,
    #[serde(default)]
    pub env: Env,
    /// Event loops; 0 in the file means one per CPU, resolved by `parse`.
    #[serde(default = "default_workers", deserialize_with = "workers")]
    pub workers: usize,
    #[serde(
        default = "default_max_connections",
        deserialize_with = "max_connections"
    )]
    pub max_connections: usize,
    #[serde(
        default = "default_max_header_bytes",
        deserialize_with = "max_header_bytes"
    )]
    pub max_header_bytes: usize,
    #[serde(default)]
    pub timeouts: Timeouts,
    #[serde(default)]
    pub upstream_pool: UpstreamPool,
    #[serde(default)]
    pub trusted_proxies: Vec<Cidr>,
    #[serde(default, deserialize_with = "http_port")]
    pub http_port: Option<u16>,
}

fn default_port() -> u16 {
    8443
}
fn default_host() -> ListenHost {
    ListenHost(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
}
fn default_workers() -> usize {
    0 // one event loop per CPU [K]
}
fn default_max_connections() -> usize {
    10_000
}
fn default_max_header_bytes() -> usize {
    65_536
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pems {
    pub key: PathBuf,
    pub cert: PathBuf,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Env {
    Development,
    #[default]
    Production,
}

/// All in milliseconds in the file; `Duration` once read.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct Timeouts {
    #[serde(deserialize_with = "connect_ms")]
    pub connect_ms: u64,
    #[serde(deserialize_with = "header_ms")]
    pub header_ms: u64,
    #[serde(deserialize_with = "keep_alive_ms")]
    pub keep_alive_ms: u64,
    #[serde(deserialize_with = "upstream_ms")]
    pub upstream_ms: u64,
    #[serde(deserialize_with = "tunnel_idle_ms")]
    pub tunnel_idle_ms: u64,
    #[serde(deserialize_with = "shutdown_ms")]
    pub shutdown_ms: u64,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect_ms: 3_000,
            header_ms: 10_000,
            keep_alive_ms: 60_000,
            upstream_ms: 60_000,
            tunnel_idle_ms: 3_600_000,
            shutdown_ms: 10_000,
        }
    }
}

impl Timeouts {
    pub fn connect(&self) -> Duration {
        Duration::from_millis(self.connect_ms)
    }
    pub fn header(&self) -> Duration {
        Duration::from_millis(self.header_ms)
    }
    pub fn keep_alive(&self) -> Duration {
        Duration::from_millis(self.keep_alive_ms)
    }
    pub fn upstream(&self) -> Duration {
        Duration::from_millis(self.upstream_ms)
    }
    pub fn tunnel_idle(&self) -> Duration {
        Duration::from_millis(self.tunnel_idle_ms)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct UpstreamPool {
    #[serde(deserialize_with = "max_idle_per_authority")]
    pub max_idle_per_authority: usize,
    #[serde(deserialize_with = "idle_timeout_ms")]
    pub idle_timeout_ms: u64,
}

impl Default for UpstreamPool {
    fn default() -> Self {
        UpstreamPool {
            max_idle_per_authority: 32,
            idle_timeout_ms: 4_000,
        }
    }
}

/// The longest timeout: 2^31 − 1 ms (24.8 days), the most poll(2) and epoll_wait(2)
/// wait at once, and Node's `setTimeout` limit too.
pub const MAX_MS: u64 = i32::MAX as u64;

/// Most open client connections: each may hold two descriptors (its own and a
/// backend's), and descriptor numbers are below 2^31.
const MAX_CONNECTIONS: u64 = (i32::MAX as u64 - 64) / 2;

/// A number of the config with its allowed range [K]. Read through serde, so that
/// serde_json adds the line and column; the message names the key.
struct Ranged {
    key: &'static str,
    min: u64,
    max: u64,
}

impl<'de> Visitor<'de> for Ranged {
    type Value = u64;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "{}: a whole number from {} to {}",
            self.key, self.min, self.max
        )
    }

    fn visit_u64<E: de::Error>(self, n: u64) -> Result<u64, E> {
        if (self.min..=self.max).contains(&n) {
            return Ok(n);
        }
        Err(E::custom(format_args!(
            "{}: {n} is out of range, use a whole number from {} to {}",
            self.key, self.min, self.max
        )))
    }

    fn visit_i64<E: de::Error>(self, n: i64) -> Result<u64, E> {
        match u64::try_from(n) {
            Ok(n) => self.visit_u64(n),
            Err(_) => Err(E::invalid_value(de::Unexpected::Signed(n), &self)),
        }
    }
}

impl Ranged {
    fn read<'de, D: Deserializer<'de>, T: TryFrom<u64>>(self, d: D) -> Result<T, D::Error> {
        let key = self.key;
        let n = d.deserialize_u64(self)?;
        T::try_from(n).map_err(|_| de::Error::custom(format_args!("{key}: {n} is too large here")))
    }
}

/// `deserialize_with` functions, one per number: its key and its range.
macro_rules! ranged {
    ($($name:ident: $type:ty = $key:literal in $min:expr, $max:expr;)*) => {$(
        fn $name<'de, D: Deserializer<'de>>(d: D) -> Result<$type, D::Error> {
            Ranged { key: $key, min: $min, max: $max }.read(d)
        }
    )*};
}

ranged! {
    port: u16 = "port" in 0, 65_535;
    workers: usize = "workers" in 0, 1024;
    max_connections: usize = "maxConnections" in 1, MAX_CONNECTIONS;
    max_header_bytes: usize = "maxHeaderBytes" in 1024, 16 << 20;
    connect_ms: u64 = "timeouts.connectMs" in 1, MAX_MS;
    header_ms: u64 = "timeouts.headerMs" in 1, MAX_MS;
    keep_alive_ms: u64 = "timeouts.keepAliveMs" in 1, MAX_MS;
    upstream_ms: u64 = "timeouts.upstreamMs" in 1, MAX_MS;
    tunnel_idle_ms: u64 = "timeouts.tunnelIdleMs" in 1, MAX_MS;
    shutdown_ms: u64 = "timeouts.shutdownMs" in 1, MAX_MS;
    max_idle_per_authority: usize = "upstreamPool.maxIdlePerAuthority" in 0, 65_536;
    idle_timeout_ms: u64 = "upstreamPool.idleTimeoutMs" in 1, MAX_MS;
}

/// `httpPort`: a port, or null (the default: no redirect listener).
fn http_port<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u16>, D::Error> {
    struct MaybePort;
    impl<'de> Visitor<'de> for MaybePort {
        type Value = Option<u16>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("httpPort: a port from 0 to 65535, or null")
        }
        fn visit_none<E: de::Error>(self) -> Result<Option<u16>, E> {
            Ok(None)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Option<u16>, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Option<u16>, D::Error> {
            let port = Ranged {
                key: "httpPort",
                min: 0,
                max: 65_535,
            };
            port.read(d).map(Some)
        }
    }
    d.deserialize_option(MaybePort)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RouteConfig {
    pub path_reg_exp: PathRegex,
    pub authority: Authorities,
    #[serde(default)]
    pub http_version: HttpVersion,
    #[serde(default)]
    pub preserve_host: bool,
}

/// The version hawkey speaks to a route's backends.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum HttpVersion {
    Http10,
    #[default]
    Http11,
}

impl<'de> Deserialize<'de> for HttpVersion {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match String::deserialize(d)?.as_str() {
            "1.1" => Ok(HttpVersion::Http11),
            "1.0" => Ok(HttpVersion::Http10),
            other => Err(de::Error::custom(format_args!(
                "httpVersion {other:?} is not supported: use \"1.1\" or \"1.0\" (HTTP/2 backends are not supported)"
            ))),
        }
    }
}

/// A compiled `pathRegExp`.
#[derive(Debug, Clone)]
pub struct PathRegex(pub Regex);

impl<'de> Deserialize<'de> for PathRegex {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let pattern = String::deserialize(d)?;
        Regex::new(&pattern).map(PathRegex).map_err(|e| {
            de::Error::custom(format_args!(
                "pathRegExp {pattern:?}: {e}\nhint: the regex crate has no look-around or back-references"
            ))
        })
    }
}

/// `authority`: one `host:port` string or a list of them.
#[derive(Debug, Clone)]
pub struct Authorities(pub Vec<Authority>);

impl<'de> Deserialize<'de> for Authorities {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct OneOrMany;
        impl<'de> Visitor<'de> for OneOrMany {
            type Value = Authorities;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a \"host:port\" string or a list of them")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Authorities, E> {
                Ok(Authorities(vec![parse_authority(s)?]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Authorities, A::Error> {
                let mut all = Vec::new();
                while let Some(s) = seq.next_element::<String>()? {
                    all.push(parse_authority(&s)?);
                }
                if all.is_empty() {
                    return Err(de::Error::custom("authority: the list is empty"));
                }
                Ok(Authorities(all))
            }
        }
        d.deserialize_any(OneOrMany)
    }
}

fn parse_authority<E: de::Error>(s: &str) -> Result<Authority, E> {
    Authority::parse(s).map_err(|why| E::custom(format_args!("authority {s:?}: {why}")))
}

/// `host`: an IP literal or `localhost` (which binds 127.0.0.1).
#[derive(Debug, Clone, Copy)]
pub struct ListenHost(pub IpAddr);

impl<'de> Deserialize<'de> for ListenHost {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s == "localhost" {
            return Ok(ListenHost(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        }
        let literal = s
            .strip_prefix('[')
            .and_then(|r| r.strip_suffix(']'))
            .unwrap_or(&s);
        literal.parse().map(ListenHost).map_err(|_| {
            de::Error::custom(format_args!(
                "host {s:?}: not an IPv4 or IPv6 address (or \"localhost\")"
            ))
        })
    }
}

/// `staticDir`: a single path segment.
#[derive(Debug, Clone)]
pub struct StaticDir(pub String);

impl<'de> Deserialize<'de> for StaticDir {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let one_segment = !s.is_empty() && s != "." && s != ".." && !s.contains(['/', '\\']);
        if !one_segment {
            return Err(de::Error::custom(format_args!(
                "staticDir {s:?}: must be one path segment (no '/')"
            )));
        }
        Ok(StaticDir(s))
    }
}

/// An entry of `trustedProxies`: an address or a CIDR range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Option<Cidr> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr.parse().ok()?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => p.parse().ok()?,
            Some(_) => return None,
            None => max,
        };
        (prefix <= max).then_some(Cidr { addr, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                masked(u32::from(net).into(), 32, self.prefix)
                    == masked(u32::from(ip).into(), 32, self.prefix)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                masked(u128::from(net), 128, self.prefix)
                    == masked(u128::from(ip), 128, self.prefix)
            }
            _ => false,
        }
    }
}

fn masked(bits: u128, width: u8, prefix: u8) -> u128 {
    if prefix == 0 {
        0
    } else {
        bits >> (width - prefix)
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Cidr::parse(&s).ok_or_else(|| {
            de::Error::custom(format_args!(
                "trustedProxies entry {s:?}: not an address or CIDR range such as \"10.0.0.0/8\""
            ))
        })
    }
}

impl Config {
    /// Reads, parses and checks the file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new(path, format!("cannot read: {e}")))?;
        let mut config = Config::parse(&text).map_err(|e| ConfigError::new(path, e))?;
        let base = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        config.resolve_paths(base);
        config
            .check_files()
            .map_err(|e| ConfigError::new(path, e))?;
        Ok(config)
    }

    /// JSON and every check that needs no file system.
    pub fn parse(text: &str) -> Result<Config, String> {
        let mut config: Config = serde_json::from_str(text).map_err(|e| e.to_string())?;
        match (&config.server_root, &config.static_dir) {
            (Some(_), None) => {
                return Err("serverRoot is set but staticDir is not: they go together".into());
            }
            (None, Some(_)) => {
                return Err("staticDir is set but serverRoot is not: they go together".into());
            }
            _ => {}
        }
        if config.http_port.is_some() && config.pems.is_none() {
            return Err("httpPort is set but pems is not: the redirect listener needs a TLS listener to point to".into());
        }
        if config.workers == 0 {
            config.workers = std::thread::available_parallelism().map_or(1, usize::from);
        }
        Ok(config)
    }

    fn resolve_paths(&mut self, base: &Path) {
        let resolve = |p: &mut PathBuf| *p = base.join(&*p);
        if let Some(pems) = &mut self.pems {
            resolve(&mut pems.key);
            resolve(&mut pems.cert);
        }
        self.access_log.as_mut().map(resolve);
        self.server_root.as_mut().map(resolve);
    }

    fn check_files(&self) -> Result<(), String> {
        if let Some(pems) = &self.pems {
            crate::tls::server_config(&pems.key, &pems.cert)?; // read and parsed now, so --check sees a bad PEM
        }
        if let Some(dir) = self.static_root().filter(|d| !d.is_dir()) {
            return Err(format!(
                "serverRoot/staticDir: {} is not a directory",
                dir.display()
            ));
        }
        Ok(())
    }

    /// `serverRoot/staticDir`, when static files are on.
    pub fn static_root(&self) -> Option<PathBuf> {
        Some(
            self.server_root
                .as_ref()?
                .join(&self.static_dir.as_ref()?.0),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv6Addr;

    #[test]
    fn empty_object_takes_every_default() {
        let c = Config::parse("{}").unwrap();
        assert_eq!(c.port, 8443);
        assert_eq!(c.host.0, IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        let cpus = std::thread::available_parallelism().map_or(1, usize::from);
        assert_eq!(c.workers, cpus);
        assert_eq!(c.max_connections, 10_000);
        assert_eq!(c.max_header_bytes, 65_536);
        assert_eq!(c.timeouts.keep_alive_ms, 60_000);
        assert_eq!(c.upstream_pool.idle_timeout_ms, 4_000);
        assert_eq!(c.env, Env::Production);
        assert!(c.proxy.is_empty() && c.http_port.is_none());
    }

    #[test]
    fn partial_timeouts_keep_other_defaults() {
        let c = Config::parse(r#"{"timeouts": {"connectMs": 5}}"#).unwrap();
        assert_eq!(c.timeouts.connect_ms, 5);
        assert_eq!(c.timeouts.header_ms, 10_000);
    }

    #[test]
    fn unknown_key_names_it_and_the_allowed_keys_with_line() {
        let err = Config::parse("{\n  \"port\": 1,\n  \"prot\": 2\n}").unwrap_err();
        assert!(err.contains("unknown field `prot`"), "{err}");
        assert!(
            err.contains("`pathRegExp`") || err.contains("`proxy`"),
            "{err}"
        );
        assert!(err.contains("line 3"), "{err}");
    }

    #[test]
    fn look_around_is_refused_with_pattern_and_hint() {
        let err = Config::parse(
            r#"{"proxy": [{"pathRegExp": "^/(?!api)", "authority": ["127.0.0.1:1"]}]}"#,
        )
        .unwrap_err();
        assert!(err.contains("\"^/(?!api)\""), "{err}");
        assert!(err.contains("look-around"), "{err}");
        assert!(err.contains("line 1"), "{err}");
    }

    #[test]
    fn http2_backend_is_refused() {
        let err = Config::parse(
            r#"{"proxy": [{"pathRegExp": "/", "authority": "a:1", "httpVersion": "2"}]}"#,
        )
        .unwrap_err();
        assert!(err.contains("HTTP/2 backends are not supported"), "{err}");
    }

    #[test]
    fn env_must_be_one_of_two_names() {
        let err = Config::parse(r#"{"env": "staging"}"#).unwrap_err();
        assert!(
            err.contains("development") && err.contains("production"),
            "{err}"
        );
    }

    #[test]
    fn static_keys_come_together_and_static_dir_is_one_segment() {
        assert!(Config::parse(r#"{"serverRoot": "public"}"#).is_err());
        assert!(Config::parse(r#"{"staticDir": "static"}"#).is_err());
        assert!(Config::parse(r#"{"serverRoot": "p", "staticDir": "a/b"}"#).is_err());
        assert!(Config::parse(r#"{"serverRoot": "p", "staticDir": "static"}"#).is_ok());
    }

    #[test]
    fn http_port_needs_pems() {
        let err = Config::parse(r#"{"httpPort": 80}"#).unwrap_err();
        assert!(err.contains("httpPort"), "{err}");
    }

    #[test]
    fn hosts() {
        let c = Config::parse(r#"{"host": "localhost"}"#).unwrap();
        assert_eq!(c.host.0, IpAddr::V4(Ipv4Addr::LOCALHOST));
        let c = Config::parse(r#"{"host": "::1"}"#).unwrap();
        assert_eq!(c.host.0, IpAddr::V6(Ipv6Addr::LOCALHOST));
        assert!(Config::parse(r#"{"host": "example.com"}"#).is_err());
    }

    #[test]
    fn cidr_ranges() {
        let net = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(net.contains("10.1.2.3".parse().unwrap()));
        assert!(!net.contains("11.0.0.1".parse().unwrap()));
        assert!(net.contains("::ffff:10.0.0.1".parse().unwrap()));
        let one = Cidr::parse("::1").unwrap();
        assert!(one.contains("::1".parse().unwrap()));
        assert!(
            Cidr::parse("0.0.0.0/0")
                .unwrap()
                .contains("1.2.3.4".parse().unwrap())
        );
        assert!(Cidr::parse("10.0.0.0/33").is_none());
        assert!(Cidr::parse("10.0.0.0/").is_none());
    }

    #[test]
    fn authority_string_or_list() {
        let c = Config::parse(
            r#"{"proxy": [{"pathRegExp": "/", "authority": "127.0.0.1:7999"},
            {"pathRegExp": "/", "authority": ["[::1]:8000", "backend"]}]}"#,
        )
        .unwrap();
        assert_eq!(c.proxy[0].authority.0.len(), 1);
        assert_eq!(c.proxy[1].authority.0[1].port, 80);
        assert!(Config::parse(r#"{"proxy": [{"pathRegExp": "/", "authority": []}]}"#).is_err());
        assert!(
            Config::parse(r#"{"proxy": [{"pathRegExp": "/", "authority": "a:99999"}]}"#).is_err()
        );
    }
}
