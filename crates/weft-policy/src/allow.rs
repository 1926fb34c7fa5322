//! Outgoing HTTP allow-list: which `scheme://host:port` a guest may send requests to.
//!
//! Deny by default: an empty list allows nothing. A rule is `[SCHEME://]HOST[:PORT]`:
//! - `HOST` is a DNS name, an IPv4 address, a bracketed IPv6 address, `*.suffix` (any subdomain
//!   of `suffix`, not `suffix` itself), or `*` (any host: an explicit opt-in to everything);
//! - `PORT` is a number or `*`; when omitted, the scheme's default port (80 for http, 443 for
//!   https; both when the scheme is omitted too);
//! - `SCHEME` is `http` or `https`; when omitted, both.
//!
//! Matching is a pure function, property-tested below.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// One parsed allow rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRule {
    scheme: Option<Scheme>,
    host: HostPattern,
    port: PortPattern,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    /// 80 for http, 443 for https.
    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }
    /// `http` or `https`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
    /// Parses `http` / `https` (case-insensitive).
    pub fn parse(s: &str) -> Option<Scheme> {
        if s.eq_ignore_ascii_case("http") {
            Some(Scheme::Http)
        } else if s.eq_ignore_ascii_case("https") {
            Some(Scheme::Https)
        } else {
            None
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    Any,
    /// Lower-cased suffix without the leading `*.`.
    Subdomains(String),
    /// Lower-cased exact host (IPv6 without brackets).
    Exact(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PortPattern {
    Any,
    Default,
    Exact(u16),
}

/// Why a rule did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid allowed host `{rule}`: {reason} (expected [http://|https://]HOST[:PORT], e.g. `api.example.com:443` or `*.example.com`)"
)]
pub struct RuleError {
    pub rule: String,
    pub reason: String,
}

impl HostRule {
    /// Parses one rule.
    pub fn parse(rule: &str) -> Result<Self, RuleError> {
        let err = |reason: &str| RuleError {
            rule: rule.to_string(),
            reason: reason.to_string(),
        };
        let trimmed = rule.trim();
        if trimmed.is_empty() {
            return Err(err("the rule is empty"));
        }
        let (scheme, rest) = match trimmed.split_once("://") {
            Some((s, rest)) => (
                Some(Scheme::parse(s).ok_or_else(|| err("the scheme must be http or https"))?),
                rest,
            ),
            None => (None, trimmed),
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains('/') || rest.contains('?') || rest.contains('#') || rest.contains('@') {
            return Err(err("a rule names a host and port only, not a path or user"));
        }
        // `bracketed`: the host was written `[v6]`, and was checked as an IPv6 address.
        let (host, port, bracketed) = if let Some(after) = rest.strip_prefix('[') {
            let (inside, tail) = after
                .split_once(']')
                .ok_or_else(|| err("an IPv6 address needs its closing `]`"))?;
            if inside.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(err("not a valid IPv6 address"));
            }
            let port = match tail {
                "" => None,
                t => Some(
                    t.strip_prefix(':')
                        .ok_or_else(|| err("expected `:PORT` after the IPv6 address"))?,
                ),
            };
            (inside.to_ascii_lowercase(), port, true)
        } else {
            match rest.rsplit_once(':') {
                Some((h, p)) => (h.to_ascii_lowercase(), Some(p), false),
                None => (rest.to_ascii_lowercase(), None, false),
            }
        };
        let port = match port {
            None => PortPattern::Default,
            Some("*") => PortPattern::Any,
            Some(p) => PortPattern::Exact(
                p.parse::<u16>()
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or_else(|| err("the port must be a number from 1 to 65535, or *"))?,
            ),
        };
        let host = if bracketed {
            HostPattern::Exact(host)
        } else if host == "*" {
            HostPattern::Any
        } else if let Some(suffix) = host.strip_prefix("*.") {
            validate_dns_name(suffix).map_err(|r| err(&r))?;
            HostPattern::Subdomains(suffix.to_string())
        } else {
            // An unbracketed IPv6 address is ambiguous (`:::1` could be `[::]:1` or `[::1]`), so
            // it is always an error, as in the manifest validator.
            if host.contains(':') {
                return Err(err("write IPv6 addresses in brackets, e.g. [::1]:8080"));
            }
            validate_dns_name(&host).map_err(|r| err(&r))?;
            HostPattern::Exact(host)
        };
        Ok(HostRule { scheme, host, port })
    }

    /// Whether this rule allows `scheme://host:port`. `host` is compared case-insensitively;
    /// an IPv6 host is given without brackets.
    pub fn allows(&self, scheme: Scheme, host: &str, port: u16) -> bool {
        if let Some(s) = self.scheme
            && s != scheme
        {
            return false;
        }
        let port_ok = match self.port {
            PortPattern::Any => true,
            PortPattern::Exact(p) => p == port,
            PortPattern::Default => port == scheme.default_port(),
        };
        if !port_ok {
            return false;
        }
        let host = host.trim_end_matches('.');
        match &self.host {
            HostPattern::Any => true,
            HostPattern::Exact(h) => h.eq_ignore_ascii_case(host),
            HostPattern::Subdomains(suffix) => {
                // Bytes, not `str` slicing: `host` is untrusted and may split a multi-byte
                // character at the suffix boundary (found by fuzz/fuzz_targets/allow.rs).
                let (host, suffix) = (host.as_bytes(), suffix.as_bytes());
                host.len() > suffix.len() + 1
                    && host[host.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
                    && host[host.len() - suffix.len() - 1] == b'.'
            }
        }
    }
}

impl HostRule {
    /// The host the rule names, as written (lower-cased; `*` for any host, `*.suffix` for
    /// subdomains, an IPv6 address without brackets).
    pub fn host(&self) -> std::borrow::Cow<'_, str> {
        match &self.host {
            HostPattern::Any => "*".into(),
            HostPattern::Subdomains(s) => format!("*.{s}").into(),
            HostPattern::Exact(h) => h.as_str().into(),
        }
    }
}

impl HostRule {
    /// Whether this rule lets a request for a host it [`allows`](Self::allows) go to `ip`, one
    /// of the addresses the host resolved to (checked again at connect time, so DNS cannot
    /// smuggle a request into a private network):
    /// - a rule naming an IP address admits exactly that address;
    /// - a rule naming one DNS name exactly admits what the name resolves to, except cloud
    ///   metadata endpoints and unspecified, multicast or broadcast addresses;
    /// - a wildcard rule (`*`, `*.suffix`) admits only global (public) unicast addresses: never
    ///   loopback, private, link-local, shared or metadata ranges.
    pub fn admits(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        match &self.host {
            HostPattern::Exact(h) => match h.parse::<IpAddr>() {
                Ok(literal) => canonical(literal) == ip,
                Err(_) => !matches!(classify_ip(ip), AddrClass::Metadata | AddrClass::Special),
            },
            HostPattern::Any | HostPattern::Subdomains(_) => classify_ip(ip) == AddrClass::Global,
        }
    }
}

/// What an outgoing request's destination address is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddrClass {
    /// Public unicast.
    Global,
    /// 127.0.0.0/8, ::1.
    Loopback,
    /// 10/8, 172.16/12, 192.168/16, 100.64/10 (shared), 198.18/15 (benchmarking), fc00::/7.
    Private,
    /// 169.254/16 and fe80::/10, except the metadata addresses.
    LinkLocal,
    /// Cloud metadata endpoints: 169.254.169.254, 169.254.170.2, 100.100.100.200,
    /// fd00:ec2::254.
    Metadata,
    /// Unspecified, multicast, broadcast, documentation, reserved and translation ranges.
    Special,
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => ip,
        },
        v4 => v4,
    }
}

/// Classifies an address (IPv4-mapped IPv6 addresses as their IPv4 address). Pure and total.
pub fn classify_ip(ip: IpAddr) -> AddrClass {
    match canonical(ip) {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> AddrClass {
    let o = ip.octets();
    if [
        [169, 254, 169, 254],
        [169, 254, 170, 2],
        [100, 100, 100, 200],
    ]
    .contains(&o)
    {
        return AddrClass::Metadata;
    }
    if ip.is_loopback() {
        AddrClass::Loopback
    } else if ip.is_private()
        || (o[0] == 100 && (o[1] & 0xc0) == 64)
        || (o[0] == 198 && (o[1] & 0xfe) == 18)
    {
        AddrClass::Private
    } else if ip.is_link_local() {
        AddrClass::LinkLocal
    } else if o[0] == 0
        || o[0] >= 224
        || ip.is_documentation()
        || (o[0] == 192 && o[1] == 0 && o[2] == 0)
        || (o[0] == 192 && o[1] == 88 && o[2] == 99)
    {
        AddrClass::Special
    } else {
        AddrClass::Global
    }
}

fn classify_v6(ip: Ipv6Addr) -> AddrClass {
    let s = ip.segments();
    if s == [0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254] {
        return AddrClass::Metadata;
    }
    if ip.is_loopback() {
        AddrClass::Loopback
    } else if (s[0] & 0xfe00) == 0xfc00 {
        AddrClass::Private
    } else if (s[0] & 0xffc0) == 0xfe80 {
        AddrClass::LinkLocal
    } else if ip.is_unspecified()
        || ip.is_multicast()
        // IPv4-compatible (deprecated), NAT64 (64:ff9b::/96, 64:ff9b:1::/48), discard, 6to4 and
        // Teredo can all reach IPv4 ranges: not public for our purposes.
        || s[..6] == [0; 6]
        || (s[0] == 0x64 && s[1] == 0xff9b)
        || s[..4] == [0x100, 0, 0, 0]
        || s[0] == 0x2002
        || (s[0] == 0x2001 && s[1] == 0)
        || (s[0] == 0x2001 && s[1] == 0x0db8)
        || (s[0] & 0xe000) != 0x2000
    {
        AddrClass::Special
    } else {
        AddrClass::Global
    }
}

fn validate_dns_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("the host is empty".into());
    }
    if name.len() > 253 {
        return Err("the host is longer than 253 characters".into());
    }
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(format!("`{name}` has an empty or over-long label"));
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(format!(
                "`{name}` has a character that is not allowed in a host name"
            ));
        }
    }
    Ok(())
}

impl fmt::Display for HostRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.scheme {
            Some(Scheme::Http) => f.write_str("http://")?,
            Some(Scheme::Https) => f.write_str("https://")?,
            None => {}
        }
        match &self.host {
            HostPattern::Any => f.write_str("*")?,
            HostPattern::Subdomains(s) => write!(f, "*.{s}")?,
            HostPattern::Exact(h) if h.contains(':') => write!(f, "[{h}]")?,
            HostPattern::Exact(h) => f.write_str(h)?,
        }
        match self.port {
            PortPattern::Any => f.write_str(":*"),
            PortPattern::Default => Ok(()),
            PortPattern::Exact(p) => write!(f, ":{p}"),
        }
    }
}

/// A set of rules; allows a destination when any rule does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowedHosts {
    rules: Vec<HostRule>,
}

impl AllowedHosts {
    /// Parses every rule, failing on the first bad one.
    pub fn parse<S: AsRef<str>>(rules: &[S]) -> Result<Self, RuleError> {
        let rules = rules
            .iter()
            .map(|r| HostRule::parse(r.as_ref()))
            .collect::<Result<_, _>>()?;
        Ok(Self { rules })
    }

    /// Nothing allowed.
    pub fn deny_all() -> Self {
        Self::default()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    pub fn rules(&self) -> &[HostRule] {
        &self.rules
    }

    /// Whether any rule allows `scheme://host:port`.
    pub fn allows(&self, scheme: Scheme, host: &str, port: u16) -> bool {
        self.rules.iter().any(|r| r.allows(scheme, host, port))
    }

    /// Whether a request for `scheme://host:port` may connect to `ip`, one of the host's
    /// resolved addresses: some rule must both allow the destination and admit the address
    /// (see [`HostRule::admits`]).
    pub fn allows_addr(&self, scheme: Scheme, host: &str, port: u16, ip: IpAddr) -> bool {
        self.rules
            .iter()
            .any(|r| r.allows(scheme, host, port) && r.admits(ip))
    }

    /// Decides for a request URI. `None` scheme means the guest did not say: https is assumed,
    /// as wasi:http does.
    pub fn allows_uri(&self, uri: &http::Uri) -> bool {
        let scheme = match uri.scheme_str() {
            None => Scheme::Https,
            Some(s) => match Scheme::parse(s) {
                Some(s) => s,
                None => return false,
            },
        };
        let Some(authority) = uri.authority() else {
            return false;
        };
        let host = authority.host();
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let port = authority.port_u16().unwrap_or(scheme.default_port());
        self.allows(scheme, host, port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn resolved_addresses_are_checked() {
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        let rules = AllowedHosts::parse(&[
            "*.example.com",
            "db.internal:5432",
            "10.1.2.3:8080",
            "http://localhost:*",
        ])
        .expect("rules");
        // Wildcards reach only public addresses.
        assert!(rules.allows_addr(Scheme::Https, "a.example.com", 443, ip("93.184.216.34")));
        for private in [
            "10.0.0.1",
            "127.0.0.1",
            "169.254.169.254",
            "192.168.0.1",
            "172.16.5.5",
            "100.64.0.1",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:10.0.0.1",
            "64:ff9b::a00:1",
            "0.0.0.0",
        ] {
            assert!(
                !rules.allows_addr(Scheme::Https, "a.example.com", 443, ip(private)),
                "{private}"
            );
        }
        // An exact name admits what it resolves to, but never a metadata endpoint.
        assert!(rules.allows_addr(Scheme::Http, "db.internal", 5432, ip("10.9.9.9")));
        assert!(!rules.allows_addr(Scheme::Http, "db.internal", 5432, ip("169.254.169.254")));
        assert!(!rules.allows_addr(Scheme::Http, "db.internal", 5432, ip("fd00:ec2::254")));
        assert!(rules.allows_addr(Scheme::Http, "localhost", 8080, ip("127.0.0.1")));
        // An IP rule admits exactly that IP.
        assert!(rules.allows_addr(Scheme::Http, "10.1.2.3", 8080, ip("10.1.2.3")));
        assert!(rules.allows_addr(Scheme::Http, "10.1.2.3", 8080, ip("::ffff:10.1.2.3")));
        assert!(!rules.allows_addr(Scheme::Http, "10.1.2.3", 8080, ip("10.1.2.4")));
        // The metadata address is reachable only when named as an IP.
        let meta = AllowedHosts::parse(&["http://169.254.169.254"]).expect("rules");
        assert!(meta.allows_addr(Scheme::Http, "169.254.169.254", 80, ip("169.254.169.254")));
        assert_eq!(classify_ip(ip("169.254.169.254")), AddrClass::Metadata);
        assert_eq!(classify_ip(ip("8.8.8.8")), AddrClass::Global);
        assert_eq!(classify_ip(ip("2606:4700::1111")), AddrClass::Global);
        assert_eq!(classify_ip(ip("224.0.0.1")), AddrClass::Special);
    }

    proptest! {
        /// A wildcard never admits a non-global address, and no rule set admits anything for a
        /// destination none of its rules allows.
        #[test]
        fn admits_is_conservative(octets in any::<[u8; 4]>(), seg in any::<[u16; 8]>(), host in "[a-z]{1,6}\\.example\\.com") {
            let any = AllowedHosts::parse(&["*", "*.example.com"]).expect("rules");
            for ip in [IpAddr::V4(Ipv4Addr::from(octets)), IpAddr::V6(Ipv6Addr::from(seg))] {
                let global = classify_ip(ip) == AddrClass::Global;
                prop_assert_eq!(any.allows_addr(Scheme::Https, &host, 443, ip), global);
                prop_assert!(!AllowedHosts::deny_all().allows_addr(Scheme::Https, &host, 443, ip));
                prop_assert!(!any.allows_addr(Scheme::Https, &host, 444, ip));
            }
        }
    }

    #[test]
    fn examples() {
        let a = AllowedHosts::parse(&[
            "api.example.com:443",
            "http://127.0.0.1:8081",
            "*.svc.local",
        ])
        .expect("parse");
        assert!(a.allows(Scheme::Https, "api.example.com", 443));
        assert!(a.allows(Scheme::Http, "API.Example.com", 443));
        assert!(!a.allows(Scheme::Https, "api.example.com", 444));
        assert!(!a.allows(Scheme::Https, "evil.com", 443));
        assert!(a.allows(Scheme::Http, "127.0.0.1", 8081));
        assert!(!a.allows(Scheme::Https, "127.0.0.1", 8081));
        assert!(a.allows(Scheme::Https, "a.svc.local", 443));
        assert!(a.allows(Scheme::Http, "a.b.svc.local", 80));
        assert!(!a.allows(Scheme::Https, "svc.local", 443));
        assert!(!a.allows(Scheme::Https, "xsvc.local", 443));
        assert!(!a.allows(Scheme::Https, "a.svc.local", 8443));
    }

    #[test]
    fn uri_decisions() {
        let a = AllowedHosts::parse(&["127.0.0.1:9000", "[::1]:9000"]).expect("parse");
        assert!(a.allows_uri(&"http://127.0.0.1:9000/x".parse().expect("uri")));
        assert!(!a.allows_uri(&"http://127.0.0.1:9001/x".parse().expect("uri")));
        assert!(a.allows_uri(&"http://[::1]:9000/".parse().expect("uri")));
        assert!(!a.allows_uri(&"/relative".parse().expect("uri")));
        assert!(!a.allows_uri(&"ftp://127.0.0.1:9000/".parse().expect("uri")));
    }

    #[test]
    fn bad_rules_explain_themselves() {
        for (rule, needle) in [
            ("", "empty"),
            ("ftp://x.com", "scheme"),
            ("x.com:0", "port"),
            ("x.com:99999", "port"),
            ("x.com/path", "path"),
            ("[::1", "closing"),
            ("::1", "brackets"),
            // Found by fuzz/fuzz_targets/allow.rs: parsed as `[::]:1` although unbracketed.
            (":::1", "brackets"),
            ("::ffff:1.2.3.4:80", "brackets"),
            ("bad host.com", "character"),
            ("*.", "empty"),
        ] {
            let err = HostRule::parse(rule).expect_err(rule).to_string();
            assert!(err.contains(needle), "{rule}: {err}");
        }
    }

    #[test]
    fn non_ascii_hosts_do_not_panic() {
        // Found by fuzz/fuzz_targets/allow.rs: the suffix boundary fell inside `ˌ`.
        let a = AllowedHosts::parse(&["*.svc.local"]).expect("parse");
        assert!(!a.allows(Scheme::Https, "a\u{2cc}vc.local", 443));
        assert!(!a.allows(Scheme::Https, "\u{e9}\u{e9}\u{e9}.local", 443));
        assert!(a.allows(Scheme::Https, "\u{e9}.svc.local", 443));
    }

    #[test]
    fn empty_denies_everything() {
        let a = AllowedHosts::deny_all();
        assert!(!a.allows(Scheme::Https, "example.com", 443));
        assert!(!a.allows_uri(&"https://example.com/".parse().expect("uri")));
    }

    fn host_strategy() -> impl Strategy<Value = String> {
        prop::collection::vec("[a-z0-9]{1,8}", 1..4).prop_map(|l| l.join("."))
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in ".{0,64}") {
            let _ = HostRule::parse(&s);
        }

        #[test]
        fn display_round_trips(host in host_strategy(), port in prop::option::of(1u16..), wild in any::<bool>(), scheme in 0u8..3) {
            let mut rule = String::new();
            match scheme { 1 => rule.push_str("http://"), 2 => rule.push_str("https://"), _ => {} }
            if wild { rule.push_str("*."); }
            rule.push_str(&host);
            if let Some(p) = port { rule.push_str(&format!(":{p}")); }
            let parsed = HostRule::parse(&rule).expect("generated rules are valid");
            let reparsed = HostRule::parse(&parsed.to_string()).expect("display is valid");
            prop_assert_eq!(parsed, reparsed);
        }

        #[test]
        fn exact_rule_allows_only_its_host(host in host_strategy(), other in host_strategy(), port in 1u16.., other_port in 1u16..) {
            let a = AllowedHosts::parse(&[format!("{host}:{port}")]).expect("valid");
            prop_assert!(a.allows(Scheme::Https, &host, port));
            prop_assert!(a.allows(Scheme::Http, &host.to_uppercase(), port));
            if other != host { prop_assert!(!a.allows(Scheme::Https, &other, port)); }
            if other_port != port { prop_assert!(!a.allows(Scheme::Https, &host, other_port)); }
        }

        #[test]
        fn wildcard_only_matches_subdomains(suffix in host_strategy(), host in host_strategy()) {
            let a = AllowedHosts::parse(&[format!("*.{suffix}:*")]).expect("valid");
            let allowed = a.allows(Scheme::Https, &host, 443);
            let expected = host.ends_with(&format!(".{suffix}"));
            prop_assert_eq!(allowed, expected);
        }
    }
}
