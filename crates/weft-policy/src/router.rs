//! Ingress routing: picks the workload for a request from its `Host` header and path.
//!
//! Rules (see [`RouteTable::route`]):
//! - hosts compare ASCII case-insensitively, and one trailing dot is ignored (`Example.COM.`
//!   is `example.com`);
//! - a route host with a port (`example.com:8080`) matches only that host and port; a route host
//!   without one matches the host with any port or none; a route without a host matches any
//!   request, including one without a `Host` header; ports compare as numbers (`:0080` is
//!   `:80`), a request without a port has none (no default port is assumed);
//! - a matching route with a host beats every route without one; among the matching routes of
//!   the same kind the longest path prefix wins, and on an equal path a route host with a port
//!   beats the same host without one;
//! - path prefixes match whole segments: `/api` matches `/api`, `/api/` and `/api/x`, never
//!   `/apix`; `/` matches every path; trailing slashes on a route path are ignored (`/api/` is
//!   `/api`) and a missing leading slash is added (`api` is `/api`).
//!
//! Everything is normalized once in [`RouteTable::new`]; `route` allocates only when the `Host`
//! header has upper-case letters.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;

/// One ingress route as written in a manifest: requests for `host` (any host if `None`) whose
/// path starts with the segment prefix `path` go to `target`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Route {
    pub host: Option<String>,
    pub path: String,
    pub target: String,
}

/// Two routes claim the same (normalized) host and path for different targets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct RouteConflict {
    /// The normalized host (`name` or `name:port`), `None` for routes without a host.
    pub host: Option<String>,
    /// The normalized path prefix (`/` for the root).
    pub path: String,
    /// The target of the route seen first.
    pub first: String,
    /// The target of the route that conflicts with it.
    pub second: String,
}

impl fmt::Display for RouteConflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = match &self.host {
            Some(h) => format!("host `{h}`"),
            None => "any host".to_string(),
        };
        write!(
            f,
            "route conflict: {host}, path `{}` is claimed by both `{}` and `{}`; \
             change the host or path of one of them",
            self.path, self.first, self.second
        )
    }
}

/// A normalized route host: lower-case name without a trailing dot, and the port if given.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct HostKey {
    name: String,
    port: Option<String>,
}

impl HostKey {
    fn display(&self) -> String {
        match &self.port {
            Some(p) => format!("{}:{p}", self.name),
            None => self.name.clone(),
        }
    }
}

/// A route after normalization, pointing back into `RouteTable::routes`.
#[derive(Debug, Clone)]
struct Entry {
    /// The path prefix without trailing slashes: `""` for the root, else `/seg[/seg...]`.
    prefix: String,
    /// The port a host route requires, if any (always `None` for host-less routes).
    port: Option<String>,
    /// Index into `routes`.
    index: usize,
}

/// An immutable routing table, built once per configuration change and consulted per request.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    routes: Vec<Route>,
    /// Host routes by lower-case host name, each list sorted so the first match wins.
    by_host: HashMap<String, Vec<Entry>>,
    /// Host-less routes, sorted so the first match wins.
    any_host: Vec<Entry>,
}

impl RouteTable {
    /// Builds the table. Duplicate routes (same normalized host, path and target) are allowed;
    /// the same host and path with different targets is a [`RouteConflict`].
    pub fn new(routes: Vec<Route>) -> Result<RouteTable, RouteConflict> {
        let mut seen: HashMap<(Option<HostKey>, String), usize> = HashMap::new();
        let mut by_host: HashMap<String, Vec<Entry>> = HashMap::new();
        let mut any_host = Vec::new();
        for (index, route) in routes.iter().enumerate() {
            let host = route.host.as_deref().and_then(normalize_route_host);
            let prefix = normalize_route_path(&route.path);
            let key = (host.clone(), prefix.clone());
            if let Some(&earlier) = seen.get(&key) {
                let first = &routes[earlier].target;
                if *first != route.target {
                    return Err(RouteConflict {
                        host: host.as_ref().map(HostKey::display),
                        path: if prefix.is_empty() {
                            "/".to_string()
                        } else {
                            prefix
                        },
                        first: first.clone(),
                        second: route.target.clone(),
                    });
                }
                continue;
            }
            seen.insert(key, index);
            match host {
                Some(HostKey { name, port }) => by_host.entry(name).or_default().push(Entry {
                    prefix,
                    port,
                    index,
                }),
                None => any_host.push(Entry {
                    prefix,
                    port: None,
                    index,
                }),
            }
        }
        // Longest prefix first; on an equal prefix, a route with a port before one without.
        let order = |a: &Entry, b: &Entry| {
            b.prefix
                .len()
                .cmp(&a.prefix.len())
                .then_with(|| b.port.is_some().cmp(&a.port.is_some()))
        };
        for entries in by_host.values_mut() {
            entries.sort_by(order);
        }
        any_host.sort_by(order);
        Ok(RouteTable {
            routes,
            by_host,
            any_host,
        })
    }

    /// The target for a request with this `Host` header (or none) and URI path (no query).
    pub fn route(&self, host_header: Option<&str>, path: &str) -> Option<&str> {
        if let Some((name, port)) = host_header.and_then(split_host) {
            let name = lowercase(name);
            let port = port.map(canonical_port);
            if let Some(entries) = self.by_host.get(name.as_ref()) {
                let hit = entries.iter().find(|e| {
                    prefix_matches(&e.prefix, path)
                        && e.port.as_deref().is_none_or(|p| Some(p) == port.as_deref())
                });
                if let Some(e) = hit {
                    return Some(&self.routes[e.index].target);
                }
            }
        }
        self.any_host
            .iter()
            .find(|e| prefix_matches(&e.prefix, path))
            .map(|e| self.routes[e.index].target.as_str())
    }

    /// The routes as given to [`RouteTable::new`], duplicates included.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// The number of routes given to [`RouteTable::new`].
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    /// True if the table routes nothing.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }
}

/// Splits `host[:port]` (or `[v6]:port`) into a name without one trailing dot and a port.
/// An empty port counts as none. Returns `None` for an empty name.
fn split_host(host: &str) -> Option<(&str, Option<&str>)> {
    let host = host.trim_matches(|c: char| c.is_ascii_whitespace());
    let (name, port) = if host.starts_with('[') {
        match host.find(']') {
            Some(end) => {
                let (name, rest) = host.split_at(end + 1);
                (name, rest.strip_prefix(':'))
            }
            None => (host, None),
        }
    } else {
        match host.split_once(':') {
            // Exactly one colon: name and port. More than one: an unbracketed IPv6 address.
            Some((name, port)) if !port.contains(':') => (name, Some(port)),
            _ => (host, None),
        }
    };
    let name = name.strip_suffix('.').unwrap_or(name);
    let port = port.filter(|p| !p.is_empty());
    if name.is_empty() {
        None
    } else {
        Some((name, port))
    }
}

/// A numeric port in decimal without leading zeros (`0080` is `80`); anything else lower-cased,
/// like the name (a host compares without case, its port included: `a.test:Est` is
/// `a.test:est`; the fuzz target `router` found the two disagreeing).
fn canonical_port(port: &str) -> Cow<'_, str> {
    if port.len() > 1 && port.starts_with('0') && port.bytes().all(|b| b.is_ascii_digit()) {
        let digits = port.trim_start_matches('0');
        Cow::Owned(if digits.is_empty() { "0" } else { digits }.to_string())
    } else {
        lowercase(port)
    }
}

fn lowercase(s: &str) -> Cow<'_, str> {
    if s.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(s.to_ascii_lowercase())
    } else {
        Cow::Borrowed(s)
    }
}

/// A route host that normalizes to an empty name (`""`, `"."`, `":80"`) means any host.
fn normalize_route_host(host: &str) -> Option<HostKey> {
    split_host(host).map(|(name, port)| HostKey {
        name: name.to_ascii_lowercase(),
        port: port.map(|p| canonical_port(p).into_owned()),
    })
}

/// `""` for the root, else the path with a leading slash and no trailing slashes.
fn normalize_route_path(path: &str) -> String {
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() {
        String::new()
    } else if trimmed.starts_with('/') {
        trimmed.to_string()
    } else {
        format!("/{trimmed}")
    }
}

fn prefix_matches(prefix: &str, path: &str) -> bool {
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/') || prefix.is_empty(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn r(host: Option<&str>, path: &str, target: &str) -> Route {
        Route {
            host: host.map(str::to_string),
            path: path.to_string(),
            target: target.to_string(),
        }
    }

    #[test]
    fn a_non_numeric_port_compares_without_case_like_the_name() {
        // The fuzz target's crash input, reduced: route `a.t:est`, request `a.t:Est`.
        let t = table(&[(Some("a.t:est"), "/", "any")]);
        assert_eq!(t.route(Some("a.t:Est"), "/0any"), Some("any"));
        assert_eq!(t.route(Some("A.T:EST"), "/"), Some("any"));
        assert_eq!(t.route(Some("a.t:esx"), "/"), None);
    }

    fn table(routes: &[(Option<&str>, &str, &str)]) -> RouteTable {
        let routes = routes.iter().map(|(h, p, t)| r(*h, p, t)).collect();
        match RouteTable::new(routes) {
            Ok(t) => t,
            Err(e) => panic!("unexpected conflict: {e}"),
        }
    }

    /// A host as the reference sees it: (lower-case name without one trailing dot, port or "").
    fn reference_parse(h: &str) -> (String, String) {
        let h = h
            .trim_matches(|c: char| c.is_ascii_whitespace())
            .to_ascii_lowercase();
        let (name, port) = if h.starts_with('[') {
            match h.find(']') {
                Some(i) => (
                    h[..=i].to_string(),
                    h[i + 1..].strip_prefix(':').unwrap_or("").to_string(),
                ),
                None => (h.clone(), String::new()),
            }
        } else if h.matches(':').count() == 1 {
            let i = h.find(':').unwrap_or(0);
            (h[..i].to_string(), h[i + 1..].to_string())
        } else {
            (h.clone(), String::new())
        };
        let name = match name.strip_suffix('.') {
            Some(n) => n.to_string(),
            None => name,
        };
        // Ports compare as numbers: leading zeros of an all-digit port do not count.
        let port = if port.len() > 1 && port.bytes().all(|b| b.is_ascii_digit()) {
            match port.trim_start_matches('0') {
                "" => "0".to_string(),
                digits => digits.to_string(),
            }
        } else {
            port
        };
        (name, port)
    }

    /// A route as the reference sees it: (host if its name is not empty, path without trailing
    /// slashes and with a leading one, or "" for the root).
    fn reference_key(route: &Route) -> (Option<(String, String)>, String) {
        let host = route
            .host
            .as_deref()
            .map(reference_parse)
            .filter(|(name, _)| !name.is_empty());
        let mut path = route.path.clone();
        if !path.starts_with('/') {
            path.insert(0, '/');
        }
        while path.ends_with('/') {
            path.pop();
        }
        (host, path)
    }

    /// The rules written out as plainly as possible, with no precomputation: every route is
    /// checked against the request, and the best match is the maximum of (has a host, path
    /// length, has a port).
    fn reference<'a>(routes: &'a [Route], host: Option<&str>, path: &str) -> Option<&'a str> {
        let mut best: Option<((bool, usize, bool), &str)> = None;
        for route in routes {
            let (route_host, rpath) = reference_key(route);
            let host_ok = match (&route_host, host.map(reference_parse)) {
                (None, _) => true,
                (Some(_), None) => false,
                (Some((rn, rp)), Some((hn, hp))) => *rn == hn && (rp.is_empty() || *rp == hp),
            };
            let path_ok = rpath.is_empty()
                || path == rpath
                || (path.len() > rpath.len()
                    && path.starts_with(&rpath)
                    && path.as_bytes()[rpath.len()] == b'/');
            if host_ok && path_ok {
                let has_port = route_host.as_ref().is_some_and(|(_, p)| !p.is_empty());
                let rank = (route_host.is_some(), rpath.len(), has_port);
                if best.is_none_or(|(b, _)| rank > b) {
                    best = Some((rank, route.target.as_str()));
                }
            }
        }
        best.map(|(_, t)| t)
    }

    /// Whether two routes conflict, by the reference normalization.
    fn reference_conflicts(routes: &[Route]) -> bool {
        routes.iter().enumerate().any(|(i, a)| {
            routes[..i]
                .iter()
                .any(|b| reference_key(a) == reference_key(b) && a.target != b.target)
        })
    }

    #[test]
    fn root_matches_everything() {
        let t = table(&[(None, "/", "root")]);
        for p in ["/", "", "/a", "/a/b?c", "*", "x"] {
            assert_eq!(t.route(None, p), Some("root"), "{p}");
            assert_eq!(t.route(Some("any.example"), p), Some("root"), "{p}");
        }
    }

    #[test]
    fn prefixes_match_on_segment_boundaries() {
        let t = table(&[(None, "/api", "api")]);
        assert_eq!(t.route(None, "/api"), Some("api"));
        assert_eq!(t.route(None, "/api/"), Some("api"));
        assert_eq!(t.route(None, "/api/x/y"), Some("api"));
        assert_eq!(t.route(None, "/apix"), None);
        assert_eq!(t.route(None, "/ap"), None);
        assert_eq!(t.route(None, "/"), None);
        assert_eq!(t.route(None, "/API"), None, "paths are case-sensitive");
    }

    #[test]
    fn trailing_slash_on_route_path_is_ignored() {
        let t = table(&[(None, "/api/", "api")]);
        assert_eq!(t.route(None, "/api"), Some("api"));
        assert_eq!(t.route(None, "/api/x"), Some("api"));
        assert_eq!(t.route(None, "/apix"), None);
        let t = table(&[(None, "api", "api")]);
        assert_eq!(t.route(None, "/api/x"), Some("api"), "leading slash added");
        let t = table(&[(None, "", "root")]);
        assert_eq!(t.route(None, "/x"), Some("root"), "empty path is the root");
    }

    #[test]
    fn longest_prefix_wins() {
        let t = table(&[
            (None, "/", "root"),
            (None, "/api", "api"),
            (None, "/api/v2", "v2"),
        ]);
        assert_eq!(t.route(None, "/"), Some("root"));
        assert_eq!(t.route(None, "/apix"), Some("root"));
        assert_eq!(t.route(None, "/api/v1"), Some("api"));
        assert_eq!(t.route(None, "/api/v2/x"), Some("v2"));
        assert_eq!(t.route(None, "/api/v2x"), Some("api"));
    }

    #[test]
    fn hosts_compare_case_insensitively_and_ignore_a_trailing_dot() {
        let t = table(&[(Some("Hello.Localhost."), "/", "hello")]);
        for h in [
            "hello.localhost",
            "HELLO.localhost",
            "hello.localhost.",
            "Hello.LocalHost.:8080",
            " hello.localhost ",
        ] {
            assert_eq!(t.route(Some(h), "/x"), Some("hello"), "{h}");
        }
        assert_eq!(t.route(Some("other.localhost"), "/x"), None);
        assert_eq!(t.route(Some("hello.localhost.."), "/x"), None);
        assert_eq!(t.route(None, "/x"), None);
    }

    #[test]
    fn route_host_with_port_matches_only_that_port() {
        let t = table(&[(Some("a.test:8080"), "/", "a8080")]);
        assert_eq!(t.route(Some("a.test:8080"), "/"), Some("a8080"));
        assert_eq!(t.route(Some("A.TEST.:8080"), "/"), Some("a8080"));
        assert_eq!(t.route(Some("a.test:8081"), "/"), None);
        assert_eq!(t.route(Some("a.test"), "/"), None);
        assert_eq!(t.route(Some("a.test:"), "/"), None, "empty port is no port");
        assert_eq!(
            t.route(Some("a.test:08080"), "/"),
            Some("a8080"),
            "ports are numbers"
        );
    }

    #[test]
    fn route_host_without_port_matches_any_port() {
        let t = table(&[(Some("a.test"), "/", "a")]);
        for h in ["a.test", "a.test:80", "a.test:8080", "a.test:"] {
            assert_eq!(t.route(Some(h), "/"), Some("a"), "{h}");
        }
    }

    #[test]
    fn port_specific_route_beats_portless_on_equal_path() {
        let t = table(&[
            (Some("a.test"), "/", "any-port"),
            (Some("a.test:8080"), "/", "8080"),
        ]);
        assert_eq!(t.route(Some("a.test:8080"), "/x"), Some("8080"));
        assert_eq!(t.route(Some("a.test:9090"), "/x"), Some("any-port"));
        // ...but a longer path on the port-less host still wins.
        let t = table(&[
            (Some("a.test"), "/api", "api"),
            (Some("a.test:8080"), "/", "8080"),
        ]);
        assert_eq!(t.route(Some("a.test:8080"), "/api/x"), Some("api"));
        assert_eq!(t.route(Some("a.test:8080"), "/other"), Some("8080"));
    }

    #[test]
    fn ipv6_hosts() {
        let t = table(&[
            (Some("[::1]:8080"), "/", "v6port"),
            (Some("[::2]"), "/", "v6"),
        ]);
        assert_eq!(t.route(Some("[::1]:8080"), "/"), Some("v6port"));
        assert_eq!(t.route(Some("[::1]"), "/"), None);
        assert_eq!(t.route(Some("[::2]:1"), "/"), Some("v6"));
        assert_eq!(t.route(Some("[::2]"), "/"), Some("v6"));
        let t = table(&[(Some("::1"), "/", "bare")]);
        assert_eq!(t.route(Some("::1"), "/"), Some("bare"));
    }

    #[test]
    fn host_route_beats_hostless_even_with_shorter_path() {
        let t = table(&[
            (None, "/api/v1/deep", "hostless"),
            (Some("a.test"), "/", "host"),
        ]);
        assert_eq!(t.route(Some("a.test"), "/api/v1/deep/x"), Some("host"));
        assert_eq!(t.route(Some("b.test"), "/api/v1/deep/x"), Some("hostless"));
        assert_eq!(t.route(None, "/api/v1/deep"), Some("hostless"));
    }

    #[test]
    fn falls_back_to_hostless_when_no_host_route_path_matches() {
        let t = table(&[(None, "/", "fallback"), (Some("a.test"), "/api", "api")]);
        assert_eq!(t.route(Some("a.test"), "/api"), Some("api"));
        assert_eq!(t.route(Some("a.test"), "/web"), Some("fallback"));
    }

    #[test]
    fn empty_route_host_means_any_host() {
        let t = table(&[(Some(""), "/", "empty")]);
        assert_eq!(t.route(None, "/"), Some("empty"));
        assert_eq!(t.route(Some("x"), "/"), Some("empty"));
    }

    #[test]
    fn odd_host_headers_do_not_panic() {
        let t = table(&[(Some("a"), "/", "a"), (None, "/z", "z")]);
        for h in [
            "",
            ".",
            ":",
            "[",
            "[]",
            "[::1",
            "]:",
            "a:b:c",
            "\u{e9}:\u{e9}",
            "\u{212a}",
        ] {
            let _ = t.route(Some(h), "/");
            let _ = t.route(Some(h), "/z\u{e9}");
        }
        assert_eq!(t.route(Some(""), "/z"), Some("z"));
    }

    #[test]
    fn conflicts_name_both_targets_host_and_path() {
        let err = RouteTable::new(vec![
            r(Some("Hello.localhost"), "/api/", "one"),
            r(Some("hello.localhost."), "/api", "two"),
        ])
        .err();
        let Some(err) = err else {
            panic!("expected a conflict")
        };
        assert_eq!(err.host.as_deref(), Some("hello.localhost"));
        assert_eq!(err.path, "/api");
        assert_eq!((err.first.as_str(), err.second.as_str()), ("one", "two"));
        let msg = err.to_string();
        for part in ["hello.localhost", "/api", "one", "two"] {
            assert!(msg.contains(part), "{msg}");
        }

        let err = RouteTable::new(vec![r(None, "/", "one"), r(None, "", "two")]).err();
        assert_eq!(err.map(|e| (e.host, e.path)), Some((None, "/".to_string())));
        assert!(
            RouteTable::new(vec![r(Some("a:1"), "/", "x"), r(Some("a"), "/", "y")]).is_ok(),
            "different ports are different hosts"
        );
    }

    #[test]
    fn duplicates_with_the_same_target_are_fine() {
        let t = table(&[(None, "/a", "x"), (None, "/a/", "x")]);
        assert_eq!(t.routes().len(), 2);
        assert_eq!(t.route(None, "/a"), Some("x"));
        assert!(RouteTable::default().route(None, "/").is_none());
    }

    fn host_strategy() -> impl Strategy<Value = Option<String>> {
        prop_oneof![
            Just(None),
            (
                prop::sample::select(vec!["a.test", "A.Test", "b.test", "[::1]", "::1", ""]),
                prop::sample::select(vec!["", ".", ":80", ":8080", ".:80", ":", ":080", ":00"]),
            )
                .prop_map(|(n, s)| Some(format!("{n}{s}"))),
        ]
    }

    fn path_strategy() -> impl Strategy<Value = String> {
        prop::collection::vec(prop::sample::select(vec!["a", "ab", "b", "", "A"]), 0..4)
            .prop_flat_map(|segs| {
                let base = segs.join("/");
                prop::sample::select(vec![
                    format!("/{base}"),
                    format!("/{base}/"),
                    base.clone(),
                    format!("{base}//"),
                ])
            })
    }

    proptest! {
        #[test]
        fn route_equals_reference(
            routes in prop::collection::vec(
                (host_strategy(), path_strategy(), prop::sample::select(vec!["t1", "t2", "t3"])),
                0..8,
            ),
            requests in prop::collection::vec((host_strategy(), path_strategy()), 1..16),
        ) {
            let routes: Vec<Route> = routes
                .into_iter()
                .map(|(host, path, target)| Route { host, path, target: target.to_string() })
                .collect();
            match RouteTable::new(routes.clone()) {
                Err(_) => prop_assert!(reference_conflicts(&routes)),
                Ok(t) => {
                    prop_assert!(!reference_conflicts(&routes));
                    for (host, path) in &requests {
                        prop_assert_eq!(
                            t.route(host.as_deref(), path),
                            reference(&routes, host.as_deref(), path),
                            "host {:?} path {:?}", host, path
                        );
                    }
                }
            }
        }

        #[test]
        fn never_panics(host in any::<Option<String>>(), path in any::<String>(), rhost in any::<Option<String>>(), rpath in any::<String>()) {
            if let Ok(t) = RouteTable::new(vec![Route { host: rhost, path: rpath, target: "t".into() }]) {
                let _ = t.route(host.as_deref(), &path);
            }
        }
    }
}
