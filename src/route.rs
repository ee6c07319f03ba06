//! Which handler a request target goes to [R1]: the static prefix first, then the
//! first route whose `pathRegExp` matches anywhere in the target (path and query, not
//! decoded), as the original's `RegExp.test(req.url)` did; else nothing (404).

use regex::Regex;

use crate::config::{HttpVersion, RouteConfig};
use crate::upstream::Authority;

#[derive(Debug)]
pub struct Route {
    pub regex: Regex,
    /// One or more backends, as configured.
    pub authorities: Vec<Authority>,
    /// The version spoken to the backends.
    pub http_version: HttpVersion,
    /// Forward the client's Host instead of the backend authority.
    pub preserve_host: bool,
}

impl Route {
    pub fn new(config: &RouteConfig) -> Route {
        Route {
            regex: config.path_reg_exp.0.clone(),
            authorities: config.authority.0.clone(),
            http_version: config.http_version,
            preserve_host: config.preserve_host,
        }
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
        config.proxy.iter().map(Route::new).collect()
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
