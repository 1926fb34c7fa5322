//! RFC 9112 at the ingress: which authority (host and port) an HTTP/1.x request is for, or why
//! it must be refused, before the [router](crate::router) picks a workload.
//!
//! A proxy in front of Weft and Weft itself must send the same request to the same tenant. So
//! the rules follow RFC 9112 (and refuse what a proxy could read differently):
//!
//! - more than one `Host` header line: refused (§3.2, 400);
//! - no `Host` on an HTTP/1.1 request: refused (§3.2, 400); HTTP/1.0 may omit it;
//! - a `Host` value that is not `host[:port]`: refused (§3.2, 400). Weft accepts as a host a DNS
//!   name made of ASCII letters, digits, `-`, `_` and `.` with no empty label (one trailing dot
//!   is allowed and ignored), an IPv4 address, or a bracketed IPv6 literal; no userinfo (`@`),
//!   no percent-encoding, no zone id; a port is 0-65535 in decimal. An empty `Host` (allowed by
//!   the RFC) means "no authority": only routes without a host match it;
//! - absolute-form targets (`GET http://a.test/x HTTP/1.1`): the target's authority is the
//!   request's authority (§3.2.2). A `Host` header that names a different authority is refused
//!   (400) rather than ignored, so that a guest reading `Host` sees the authority it was routed
//!   by; a port equal to the scheme's default (80 for `http`, 443 for `https`) counts as no
//!   port in that comparison. Only `http` and `https` targets are accepted;
//! - `CONNECT` is refused (405: the ingress is not a proxy), `*` only with `OPTIONS`;
//! - paths with a dot segment (`.`, `..`, also percent-encoded as `%2e`) are refused: a proxy
//!   that removes dot segments would route `/x/../admin` to `/admin`, Weft to `/x`.
//!
//! Normalisation of the accepted authority ([`Authority::canonical`]): the name in lower case,
//! one trailing dot removed, the port in decimal without leading zeros (`A.Test.:0080` is
//! `a.test:80`). A request without a port is *not* given a default port: a route with a port
//! (`a.test:8080`) matches only requests that name that port; a route without one matches any.
//!
//! [`decide`] is the decision over a parsed request head, [`decide_raw`] the same over raw
//! request bytes (parsed with `httparse`, the parser hyper uses), for the fuzz target and the
//! property tests.

use std::fmt;
use std::net::Ipv6Addr;

use crate::router::RouteTable;

/// The HTTP version of a request at the ingress (HTTP/1.x only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

/// A request's authority after validation and normalisation.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Authority {
    /// Lower-case DNS name without a trailing dot, an IPv4 address, or `[v6]`.
    name: String,
    port: Option<u16>,
}

impl Authority {
    /// The host: a lower-case name, an IPv4 address or a bracketed IPv6 literal.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The port, when the request named one.
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// `name` or `name:port`, the form the [router](crate::router) takes.
    pub fn canonical(&self) -> String {
        match self.port {
            Some(p) => format!("{}:{p}", self.name),
            None => self.name.clone(),
        }
    }

    /// Equal authorities, where a missing port is the scheme's default port.
    fn same_origin(&self, other: &Authority, default_port: u16) -> bool {
        self.name == other.name
            && self.port.unwrap_or(default_port) == other.port.unwrap_or(default_port)
    }
}

impl fmt::Display for Authority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.canonical())
    }
}

/// Why a host (in a `Host` header or a request target) is not a valid `host[:port]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    #[error("it contains a byte that is not a visible ASCII character")]
    NotVisibleAscii,
    #[error("it contains userinfo (`@`)")]
    Userinfo,
    #[error("it contains `{0}`, which no host name has")]
    BadChar(char),
    #[error("a name has an empty label (`..`, or a leading dot)")]
    EmptyLabel,
    #[error("it has a port but no host")]
    NoHost,
    #[error("the port is not a number from 0 to 65535")]
    BadPort,
    #[error("an IPv6 address must be in brackets, `[::1]:8080`")]
    UnbracketedIpv6,
    #[error("the bracketed IP literal is not an IPv6 address")]
    BadIpLiteral,
    #[error("it is longer than 261 bytes")]
    TooLong,
}

/// Why the ingress refuses a request before routing it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("an HTTP/1.1 request needs a Host header (RFC 9112 section 3.2)")]
    MissingHost,
    #[error("more than one Host header (RFC 9112 section 3.2)")]
    DuplicateHost,
    #[error("invalid Host header: {0}")]
    InvalidHost(HostError),
    #[error("invalid authority in the request target: {0}")]
    InvalidTargetAuthority(HostError),
    #[error(
        "the Host header `{host}` does not name the request target's authority `{target}` \
         (RFC 9112 section 3.2.2)"
    )]
    HostMismatch { host: String, target: String },
    #[error(
        "the request target is neither a path, an http(s) URI, nor `*` with OPTIONS \
         (RFC 9112 section 3.2)"
    )]
    BadTarget,
    #[error("CONNECT is not served here: this is not a proxy")]
    Connect,
    #[error("the path has a dot segment (`.` or `..`), which a proxy would resolve differently")]
    DotSegment,
    #[error("the request is not valid HTTP/1.x")]
    Malformed,
    #[error(
        "the request has both Content-Length and Transfer-Encoding (RFC 9112 section 6.1: \
         a request smuggling shape)"
    )]
    LengthAndEncoding,
}

impl Refusal {
    /// The status code to answer with.
    pub fn status(&self) -> u16 {
        match self {
            Refusal::Connect => 405,
            _ => 400,
        }
    }
}

/// What the ingress decided for a request it accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision<'a> {
    /// The request's authority; `None` for an HTTP/1.0 request without `Host` or an empty
    /// `Host` (only routes without a host match it).
    pub authority: Option<Authority>,
    /// The path the router sees: the target's path without its query (`*` for `OPTIONS *`).
    pub path: &'a str,
}

/// Decides a request's authority and routing path from its method, raw request-target,
/// version and every `Host` header line (in order).
pub fn decide<'a>(
    method: &str,
    target: &'a str,
    version: Version,
    hosts: &[&[u8]],
) -> Result<Decision<'a>, Refusal> {
    if hosts.len() > 1 {
        return Err(Refusal::DuplicateHost);
    }
    if method.eq_ignore_ascii_case("CONNECT") {
        return Err(Refusal::Connect);
    }
    let form = parse_target(method, target)?;
    let host = match hosts.first() {
        Some(value) => Some(parse_host(value).map_err(Refusal::InvalidHost)?),
        None if version == Version::Http11 => return Err(Refusal::MissingHost),
        None => None,
    };
    let (authority, path) = match form {
        Target::Origin(path) => (host.flatten(), path),
        Target::Asterisk => (host.flatten(), "*"),
        Target::Absolute {
            authority,
            default_port,
            path,
        } => {
            if let Some(host) = host {
                let same = host
                    .as_ref()
                    .is_some_and(|h| h.same_origin(&authority, default_port));
                if !same {
                    return Err(Refusal::HostMismatch {
                        host: host.map(|h| h.canonical()).unwrap_or_default(),
                        target: authority.canonical(),
                    });
                }
            }
            (Some(authority), path)
        }
    };
    if has_dot_segment(path) {
        return Err(Refusal::DotSegment);
    }
    Ok(Decision { authority, path })
}

/// The decision and route for a request head: `Ok(Some(target))` when a route matches,
/// `Ok(None)` when none does (404), `Err` when the request is refused.
pub fn route<'t>(
    table: &'t RouteTable,
    method: &str,
    target: &str,
    version: Version,
    hosts: &[&[u8]],
) -> Result<Option<&'t str>, Refusal> {
    let decision = decide(method, target, version, hosts)?;
    let host = decision.authority.as_ref().map(Authority::canonical);
    Ok(table.route(host.as_deref(), decision.path))
}

/// What [`decide_raw`] makes of raw request bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawOutcome {
    /// The bytes end before the request head does.
    Incomplete,
    /// A route matched: the workload (route target).
    Routed(String),
    /// The request is valid but no route matches (404).
    NoRoute,
    /// Refused before routing.
    Refused(Refusal),
}

/// Most header lines [`decide_raw`] reads (hyper's default limit is 100).
pub const MAX_HEADERS: usize = 100;

/// [`route`] over raw request bytes, parsed as hyper parses them (`httparse`).
pub fn decide_raw(table: &RouteTable, bytes: &[u8]) -> RawOutcome {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(bytes) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return RawOutcome::Incomplete,
        Err(_) => return RawOutcome::Refused(Refusal::Malformed),
    }
    let (Some(method), Some(target), Some(minor)) = (request.method, request.path, request.version)
    else {
        return RawOutcome::Incomplete;
    };
    let version = if minor == 0 {
        Version::Http10
    } else {
        Version::Http11
    };
    let hosts: Vec<&[u8]> = request
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("host"))
        .map(|h| h.value)
        .collect();
    match route(table, method, target, version, &hosts) {
        Ok(Some(t)) => RawOutcome::Routed(t.to_string()),
        Ok(None) => RawOutcome::NoRoute,
        Err(refusal) => RawOutcome::Refused(refusal),
    }
}

enum Target<'a> {
    Origin(&'a str),
    Asterisk,
    Absolute {
        authority: Authority,
        default_port: u16,
        path: &'a str,
    },
}

fn parse_target<'a>(method: &str, target: &'a str) -> Result<Target<'a>, Refusal> {
    if target.starts_with('/') {
        return Ok(Target::Origin(strip_query(target)?));
    }
    if target == "*" {
        return if method.eq_ignore_ascii_case("OPTIONS") {
            Ok(Target::Asterisk)
        } else {
            Err(Refusal::BadTarget)
        };
    }
    let (scheme, rest) = target.split_once("://").ok_or(Refusal::BadTarget)?;
    let default_port = if scheme.eq_ignore_ascii_case("http") {
        80
    } else if scheme.eq_ignore_ascii_case("https") {
        443
    } else {
        return Err(Refusal::BadTarget);
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let authority = parse_host(authority.as_bytes())
        .map_err(Refusal::InvalidTargetAuthority)?
        .ok_or(Refusal::InvalidTargetAuthority(HostError::NoHost))?;
    let path = if tail.is_empty() || tail.starts_with('?') {
        "/"
    } else {
        strip_query(tail)?
    };
    Ok(Target::Absolute {
        authority,
        default_port,
        path,
    })
}

/// The path before the query; a fragment is not allowed in a request target.
fn strip_query(target: &str) -> Result<&str, Refusal> {
    if target.contains('#') {
        return Err(Refusal::BadTarget);
    }
    Ok(target.split_once('?').map_or(target, |(p, _)| p))
}

/// True if a `/`-separated segment of `path` is `.` or `..`, also percent-encoded.
fn has_dot_segment(path: &str) -> bool {
    path.split('/').any(|segment| {
        let decoded = segment.replace("%2e", ".").replace("%2E", ".");
        decoded == "." || decoded == ".."
    })
}

/// Parses a `Host` header value or a target's authority: `Ok(None)` for an empty value.
pub fn parse_host(value: &[u8]) -> Result<Option<Authority>, HostError> {
    let value = trim_ows(value);
    if value.iter().any(|b| !(0x21..=0x7e).contains(b)) {
        return Err(HostError::NotVisibleAscii);
    }
    if value.is_empty() {
        return Ok(None);
    }
    if value.len() > 261 {
        return Err(HostError::TooLong);
    }
    // Visible ASCII only, so this cannot fail; stay total anyway.
    let text = std::str::from_utf8(value).map_err(|_| HostError::NotVisibleAscii)?;
    if text.contains('@') {
        return Err(HostError::Userinfo);
    }
    let (name, port) = if let Some(rest) = text.strip_prefix('[') {
        let (literal, after) = rest.split_once(']').ok_or(HostError::BadIpLiteral)?;
        if literal.parse::<Ipv6Addr>().is_err() {
            return Err(HostError::BadIpLiteral);
        }
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or(HostError::BadIpLiteral)?),
        };
        (format!("[{}]", literal.to_ascii_lowercase()), port)
    } else {
        let (name, port) = match text.split_once(':') {
            Some((_, p)) if p.contains(':') => return Err(HostError::UnbracketedIpv6),
            Some((n, p)) => (n, Some(p)),
            None => (text, None),
        };
        if name.is_empty() {
            return Err(HostError::NoHost);
        }
        if let Some(c) = name
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
        {
            return Err(HostError::BadChar(c));
        }
        let name = name.strip_suffix('.').unwrap_or(name);
        if name.is_empty() || name.split('.').any(str::is_empty) {
            return Err(HostError::EmptyLabel);
        }
        (name.to_ascii_lowercase(), port)
    };
    let port = match port {
        None | Some("") => None,
        Some(p) => Some(parse_port(p).ok_or(HostError::BadPort)?),
    };
    Ok(Some(Authority { name, port }))
}

fn parse_port(p: &str) -> Option<u16> {
    if !p.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let digits = p.trim_start_matches('0');
    if digits.is_empty() {
        return Some(0);
    }
    if digits.len() > 5 {
        return None;
    }
    digits.parse().ok()
}

fn trim_ows(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::Route;
    use proptest::prelude::*;

    fn ok(method: &str, target: &str, version: Version, hosts: &[&str]) -> Decision<'static> {
        let hosts: Vec<&[u8]> = hosts.iter().map(|h| h.as_bytes()).collect();
        let target: &'static str = Box::leak(target.to_string().into_boxed_str());
        match decide(method, target, version, &hosts) {
            Ok(d) => d,
            Err(e) => panic!("{method} {target} {hosts:?}: refused: {e}"),
        }
    }

    fn refused(method: &str, target: &str, version: Version, hosts: &[&str]) -> Refusal {
        let hosts: Vec<&[u8]> = hosts.iter().map(|h| h.as_bytes()).collect();
        match decide(method, target, version, &hosts) {
            Ok(d) => panic!("{method} {target} {hosts:?}: accepted: {d:?}"),
            Err(e) => e,
        }
    }

    fn auth(d: &Decision<'_>) -> Option<String> {
        d.authority.as_ref().map(Authority::canonical)
    }

    use Version::{Http10, Http11};

    #[test]
    fn one_host_on_http11_is_required() {
        assert_eq!(refused("GET", "/", Http11, &[]), Refusal::MissingHost);
        assert_eq!(
            refused("GET", "/", Http11, &["a.test", "b.test"]),
            Refusal::DuplicateHost
        );
        assert_eq!(
            refused("GET", "/", Http10, &["a.test", "a.test"]),
            Refusal::DuplicateHost,
            "two Host lines are refused even when equal, and on HTTP/1.0"
        );
        assert_eq!(auth(&ok("GET", "/", Http10, &[])), None);
        assert_eq!(
            auth(&ok("GET", "/x", Http11, &["a.test"])).as_deref(),
            Some("a.test")
        );
        assert_eq!(
            auth(&ok("GET", "/", Http11, &[""])),
            None,
            "empty Host: no authority"
        );
    }

    #[test]
    fn absolute_form_authority_wins_and_a_different_host_is_refused() {
        let d = ok(
            "GET",
            "http://Counter.Localhost/x?q=1",
            Http11,
            &["counter.localhost"],
        );
        assert_eq!(
            (auth(&d).as_deref(), d.path),
            (Some("counter.localhost"), "/x")
        );
        assert_eq!(
            refused(
                "GET",
                "http://counter.localhost/",
                Http11,
                &["hello.localhost"]
            ),
            Refusal::HostMismatch {
                host: "hello.localhost".into(),
                target: "counter.localhost".into()
            }
        );
        // The default port counts as no port; another port does not.
        ok("GET", "http://a.test:80/", Http11, &["a.test"]);
        ok("GET", "https://a.test/", Http11, &["a.test:443"]);
        assert!(matches!(
            refused("GET", "http://a.test:8080/", Http11, &["a.test"]),
            Refusal::HostMismatch { .. }
        ));
        // No path: the root; a query right after the authority.
        assert_eq!(ok("GET", "http://a.test", Http10, &[]).path, "/");
        assert_eq!(ok("GET", "http://a.test?x", Http10, &[]).path, "/");
        assert_eq!(
            auth(&ok("GET", "http://a.test:0080", Http10, &[])).as_deref(),
            Some("a.test:80")
        );
        assert_eq!(
            refused("GET", "ftp://a.test/", Http11, &["a.test"]),
            Refusal::BadTarget
        );
        assert_eq!(
            refused("GET", "http:///x", Http11, &[""]),
            Refusal::InvalidTargetAuthority(HostError::NoHost)
        );
        assert_eq!(
            refused("GET", "http://u@a.test/", Http11, &["a.test"]),
            Refusal::InvalidTargetAuthority(HostError::Userinfo)
        );
    }

    #[test]
    fn other_target_forms() {
        assert_eq!(
            refused("CONNECT", "a.test:443", Http11, &["a.test:443"]),
            Refusal::Connect
        );
        assert_eq!(Refusal::Connect.status(), 405);
        assert_eq!(ok("OPTIONS", "*", Http11, &["a.test"]).path, "*");
        assert_eq!(refused("GET", "*", Http11, &["a.test"]), Refusal::BadTarget);
        assert_eq!(
            refused("GET", "a.test", Http11, &["a.test"]),
            Refusal::BadTarget
        );
        assert_eq!(
            refused("GET", "/a#frag", Http11, &["a.test"]),
            Refusal::BadTarget
        );
    }

    #[test]
    fn dot_segments_are_refused() {
        for p in [
            "/x/../admin",
            "/..",
            "/./a",
            "/a/.",
            "/a/%2e%2E/b",
            "/%2e/x",
        ] {
            assert_eq!(
                refused("GET", p, Http11, &["a"]),
                Refusal::DotSegment,
                "{p}"
            );
        }
        for p in ["/a.b", "/...", "/.well-known/x", "/a/..b", "/%2e%2e%2e"] {
            ok("GET", p, Http11, &["a"]);
        }
        assert_eq!(
            ok("GET", "/a/b?x=/../y", Http11, &["a"]).path,
            "/a/b",
            "a query is not a path"
        );
    }

    #[test]
    fn host_values() {
        let canon = |v: &str| parse_host(v.as_bytes()).map(|a| a.map(|a| a.canonical()));
        assert_eq!(
            canon("Hello.Localhost."),
            Ok(Some("hello.localhost".into()))
        );
        assert_eq!(canon(" a.test:0080\t"), Ok(Some("a.test:80".into())));
        assert_eq!(
            canon("a.test:"),
            Ok(Some("a.test".into())),
            "empty port: none"
        );
        assert_eq!(canon("10.0.0.1:65535"), Ok(Some("10.0.0.1:65535".into())));
        assert_eq!(canon("[::1]:8080"), Ok(Some("[::1]:8080".into())));
        assert_eq!(canon("[FE80::1]"), Ok(Some("[fe80::1]".into())));
        assert_eq!(canon(""), Ok(None));
        assert_eq!(canon("a.test:65536"), Err(HostError::BadPort));
        assert_eq!(canon("a.test:8o"), Err(HostError::BadPort));
        assert_eq!(canon("a.test:-1"), Err(HostError::BadPort));
        assert_eq!(canon("::1"), Err(HostError::UnbracketedIpv6));
        assert_eq!(canon("[::1"), Err(HostError::BadIpLiteral));
        assert_eq!(canon("[x]"), Err(HostError::BadIpLiteral));
        assert_eq!(canon("[::1]x"), Err(HostError::BadIpLiteral));
        assert_eq!(canon("[fe80::1%25eth0]"), Err(HostError::BadIpLiteral));
        assert_eq!(canon("user@a.test"), Err(HostError::Userinfo));
        assert_eq!(canon("a test"), Err(HostError::NotVisibleAscii));
        assert_eq!(canon("a\0b"), Err(HostError::NotVisibleAscii));
        assert_eq!(canon("caf\u{e9}.test"), Err(HostError::NotVisibleAscii));
        assert_eq!(canon("a%2etest"), Err(HostError::BadChar('%')));
        assert_eq!(canon("a/b"), Err(HostError::BadChar('/')));
        assert_eq!(canon("a..test"), Err(HostError::EmptyLabel));
        assert_eq!(canon(".a.test"), Err(HostError::EmptyLabel));
        assert_eq!(canon("a.test.."), Err(HostError::EmptyLabel));
        assert_eq!(canon("."), Err(HostError::EmptyLabel));
        assert_eq!(canon(":80"), Err(HostError::NoHost));
        assert_eq!(canon(&"a".repeat(262)), Err(HostError::TooLong));
    }

    fn table() -> RouteTable {
        let r = |h: Option<&str>, p: &str, t: &str| Route {
            host: h.map(str::to_string),
            path: p.to_string(),
            target: t.to_string(),
        };
        RouteTable::new(vec![
            r(Some("hello.localhost"), "/", "hello"),
            r(Some("counter.localhost"), "/", "counter"),
            r(Some("a.test:8080"), "/", "a8080"),
        ])
        .expect("no conflict")
    }

    #[test]
    fn raw_requests() {
        let t = table();
        let raw = |s: &str| decide_raw(&t, s.as_bytes());
        assert_eq!(
            raw("GET / HTTP/1.1\r\nHost: hello.localhost\r\n\r\n"),
            RawOutcome::Routed("hello".into())
        );
        assert_eq!(
            raw("GET / HTTP/1.1\r\nHost: hello.localhost\r\nHost: counter.localhost\r\n\r\n"),
            RawOutcome::Refused(Refusal::DuplicateHost)
        );
        assert_eq!(
            raw("GET / HTTP/1.1\r\nHOST: hello.localhost\r\nhost: hello.localhost\r\n\r\n"),
            RawOutcome::Refused(Refusal::DuplicateHost),
            "header names are case-insensitive"
        );
        assert_eq!(
            raw("GET http://counter.localhost/ HTTP/1.1\r\nHost: counter.localhost\r\n\r\n"),
            RawOutcome::Routed("counter".into())
        );
        assert!(matches!(
            raw("GET http://counter.localhost/ HTTP/1.1\r\nHost: hello.localhost\r\n\r\n"),
            RawOutcome::Refused(Refusal::HostMismatch { .. })
        ));
        assert_eq!(
            raw("GET / HTTP/1.1\r\n\r\n"),
            RawOutcome::Refused(Refusal::MissingHost)
        );
        assert_eq!(raw("GET / HTTP/1.0\r\n\r\n"), RawOutcome::NoRoute);
        assert_eq!(
            raw("GET / HTTP/1.1\r\nHost: A.TEST:08080\r\n\r\n"),
            RawOutcome::Routed("a8080".into())
        );
        assert_eq!(
            raw("GET / HTTP/1.1\r\nHost: a.test\r\n\r\n"),
            RawOutcome::NoRoute
        );
        assert_eq!(raw("GET / HTTP/1.1\r\nHost: hello"), RawOutcome::Incomplete);
        assert_eq!(
            raw("GET / HTTP/1.1\r\nHost: hel\0lo\r\n\r\n"),
            RawOutcome::Refused(Refusal::Malformed)
        );
        assert_eq!(
            raw("GET / HTTP/1.1\r\nHost: a\r\n b\r\n\r\n"),
            RawOutcome::Refused(Refusal::Malformed),
            "obs-fold"
        );
    }

    /// Host values built from pieces that are valid, invalid, or almost valid.
    fn host_value() -> impl Strategy<Value = String> {
        let name = prop::sample::select(vec![
            "hello.localhost",
            "Counter.LOCALHOST",
            "a.test",
            "a.test.",
            "a..test",
            "10.0.0.1",
            "[::1]",
            "[::1",
            "::1",
            "",
            "a_b",
            "a%2e",
            "u@a.test",
            "a b",
            "\u{e9}",
        ]);
        let port = prop::sample::select(vec!["", ":", ":80", ":0080", ":8080", ":65536", ":x"]);
        (name, port).prop_map(|(n, p)| format!("{n}{p}"))
    }

    proptest! {
        /// The decision agrees with the rules stated plainly: a refusal exactly when the
        /// reference sees a reason, and the route equals the router's for the reference host.
        #[test]
        fn decision_matches_the_rules(
            hosts in prop::collection::vec(host_value(), 0..3),
            absolute in prop::option::of((prop::sample::select(vec!["http", "HTTPS", "ftp"]), host_value())),
            path in prop::sample::select(vec!["/", "/x", "/x/../y", "/a?b=/../c", "/%2E"]),
            http11 in any::<bool>(),
        ) {
            let version = if http11 { Http11 } else { Http10 };
            let target = match &absolute {
                Some((scheme, host)) => format!("{scheme}://{host}{path}"),
                None => path.to_string(),
            };
            let host_bytes: Vec<&[u8]> = hosts.iter().map(|h| h.as_bytes()).collect();
            let got = decide("GET", &target, version, &host_bytes);
            // The reference, rule by rule, in the documented order.
            let expected_refusal = if hosts.len() > 1 {
                Some("duplicate")
            } else if absolute.as_ref().is_some_and(|(s, h)| {
                *s == "ftp" || !matches!(parse_host(h.as_bytes()), Ok(Some(_)))
            }) {
                Some("target")
            } else if hosts.is_empty() && http11 {
                Some("missing")
            } else if hosts.first().is_some_and(|h| parse_host(h.as_bytes()).is_err()) {
                Some("host")
            } else if let (Some((scheme, th)), Some(h)) = (&absolute, hosts.first()) {
                let d = if *scheme == "http" { 80 } else { 443 };
                let t = parse_host(th.as_bytes()).ok().flatten();
                let h = parse_host(h.as_bytes()).ok().flatten();
                let same = match (t, h) {
                    (Some(t), Some(h)) => t.name == h.name && t.port.unwrap_or(d) == h.port.unwrap_or(d),
                    _ => false,
                };
                if same { None } else { Some("mismatch") }
            } else {
                None
            };
            let expected_refusal = expected_refusal.or_else(|| {
                let p = path.split('?').next().unwrap_or("");
                p.split('/').any(|s| s == "." || s == ".." || s.eq_ignore_ascii_case("%2e")).then_some("dot")
            });
            match (&got, expected_refusal) {
                (Err(Refusal::DuplicateHost), Some("duplicate"))
                | (Err(Refusal::BadTarget | Refusal::InvalidTargetAuthority(_)), Some("target"))
                | (Err(Refusal::MissingHost), Some("missing"))
                | (Err(Refusal::InvalidHost(_)), Some("host"))
                | (Err(Refusal::HostMismatch { .. }), Some("mismatch"))
                | (Err(Refusal::DotSegment), Some("dot")) => {}
                (Ok(d), None) => {
                    let expected_authority = match &absolute {
                        Some((_, h)) => parse_host(h.as_bytes()).ok().flatten(),
                        None => hosts.first().and_then(|h| parse_host(h.as_bytes()).ok().flatten()),
                    };
                    prop_assert_eq!(&d.authority, &expected_authority);
                    prop_assert_eq!(d.path, path.split('?').next().unwrap_or(""));
                }
                (got, expected) => prop_assert!(false, "got {:?}, expected {:?}", got, expected),
            }
        }

        /// Accepted authorities are canonical: parsing the canonical form gives it back, and
        /// only letters, digits, `-`, `_`, `.`, `:` and brackets remain, in lower case.
        #[test]
        fn canonical_authorities_round_trip(value in host_value()) {
            if let Ok(Some(a)) = parse_host(value.as_bytes()) {
                let c = a.canonical();
                prop_assert_eq!(parse_host(c.as_bytes()), Ok(Some(a.clone())));
                prop_assert!(c.chars().all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit()
                    || matches!(ch, '-' | '_' | '.' | ':' | '[' | ']')), "{}", c);
                prop_assert!(!a.name().ends_with('.'));
            }
        }

        /// Arbitrary bytes never panic, and a routed request had exactly one valid Host or
        /// an absolute-form target.
        #[test]
        fn raw_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            let t = table();
            let outcome = decide_raw(&t, &bytes);
            if let RawOutcome::Routed(_) = outcome {
                let text = String::from_utf8_lossy(&bytes).to_ascii_lowercase();
                prop_assert!(text.matches("\nhost:").count() == 1 || text.contains("://"));
            }
        }
    }
}
