//! Which handler a request target goes to [R1]: the static prefix first, then the
//! first route whose `pathRegExp` matches anywhere in the target (path and query, not
//! decoded), as the original's `RegExp.test(req.url)` did; else nothing (404).
//! A route also keeps the round-robin turn over its authorities [R6].

use regex::Regex;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::backend::authority::Authority;
use crate::backend::pool::{Pool, Pools};
use crate::config::{HttpVersion, RouteConfig};

/// A backend of a route: its authority and the pool of its idle connections.
pub struct Upstream {
    pub authority: Arc<Authority>,
    pub pool: Arc<Pool>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "Upstream({})", self.authority)
    }
}

#[derive(Debug)]
pub struct Route {
    pub regex: Regex,
    /// One or more backends, as configured.
    pub upstreams: Vec<Upstream>,
    /// The version spoken to the backends.
    pub http_version: HttpVersion,
    /// Forward the client's Host instead of the backend authority.
    pub preserve_host: bool,
    /// Round-robin position, shared by all loops [R6].
    next: AtomicUsize,
}

impl Route {
    pub fn new(config: &RouteConfig, pools: &mut Pools) -> Route {
        let upstream = |a: &Authority| Upstream {
            authority: Arc::new(a.clone()),
            pool: pools.pool_for(a),
        };
        Route {
            regex: config.path_reg_exp.0.clone(),
            upstreams: config.authority.0.iter().map(upstream).collect(),
            http_version: config.http_version,
            preserve_host: config.preserve_host,
            next: AtomicUsize::new(0),
        }
    }

    /// The upstreams (as indices) in the order this request tries them [R6]: each
    /// request starts one further along the list than the one before.
    pub fn in_turn(&self) -> impl Iterator<Item = usize> {
        let n = self.upstreams.len();
        let start = if n == 1 {
            0
        } else {
            self.next.fetch_add(1, Ordering::Relaxed) % n
        };
        (0..n).map(move |k| (start + k) % n)
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Target<'a> {
    /// Under `/<staticDir>/`; the rest of the target after the prefix.
    Static(&'a str),
    /// Routes index.
    Proxy(usize),
    NoRoute,
}

/// `static_prefix` is `/<staticDir>/` when static files are on.
pub fn choose<'a>(static_prefix: Option<&str>, routes: &[Route], target: &'a str) -> Target<'a> {
    if let Some(rest) = static_prefix.and_then(|p| target.strip_prefix(p)) {
        return Target::Static(rest);
    }
    match routes.iter().position(|r| r.regex.is_match(target)) {
        Some(i) => Target::Proxy(i),
        None => Target::NoRoute,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routes(patterns: &[&str]) -> Vec<Route> {
        let json = patterns
            .iter()
            .map(|p| format!(r#"{{"pathRegExp": {p:?}, "authority": "127.0.0.1:1"}}"#))
            .collect::<Vec<_>>()
            .join(",");
        let config = crate::config::Config::parse(&format!(r#"{{"proxy": [{json}]}}"#)).unwrap();
        let mut pools = Pools::new(1, std::time::Duration::from_secs(1));
        config
            .proxy
            .iter()
            .map(|c| Route::new(c, &mut pools))
            .collect()
    }

    #[test]
    fn first_match_wins_and_matches_anywhere() {
        let r = routes(&["^/api/", "api", "\\?debug"]);
        assert_eq!(choose(None, &r, "/api/x"), Target::Proxy(0));
        assert_eq!(choose(None, &r, "/v1/api"), Target::Proxy(1));
        assert_eq!(choose(None, &r, "/x?debug=1"), Target::Proxy(2));
        assert_eq!(choose(None, &r, "/other"), Target::NoRoute);
    }

    #[test]
    fn authorities_rotate_one_step_per_request() {
        let config = crate::config::Config::parse(
            r#"{"proxy": [{"pathRegExp": "/", "authority": ["a:1", "b:1", "c:1"]}]}"#,
        )
        .unwrap();
        let mut pools = Pools::new(1, std::time::Duration::from_secs(1));
        let route = Route::new(&config.proxy[0], &mut pools);
        let order = |r: &Route| {
            r.in_turn()
                .map(|i| r.upstreams[i].authority.host.clone())
                .collect::<Vec<_>>()
                .concat()
        };
        assert_eq!(order(&route), "abc");
        assert_eq!(order(&route), "bca");
        assert_eq!(order(&route), "cab");
        assert_eq!(order(&route), "abc");
    }

    #[test]
    fn target_is_not_decoded() {
        let r = routes(&["^/a b"]);
        assert_eq!(choose(None, &r, "/a%20b"), Target::NoRoute);
    }

    #[test]
    fn static_prefix_needs_its_slash_and_comes_first() {
        let r = routes(&["static"]);
        assert_eq!(
            choose(Some("/static/"), &r, "/static/a.css"),
            Target::Static("a.css")
        );
        assert_eq!(choose(Some("/static/"), &r, "/static"), Target::Proxy(0));
        assert_eq!(choose(Some("/static/"), &r, "/staticx"), Target::Proxy(0));
    }
}
