//! `wasi:sockets` rules: what a guest may bind, connect, send to and look up.
//!
//! Deny by default. A guest gets the network only through `localResources.sockets` rules
//! (`{port: 5432, hostPort: 15432, protocol: tcp}`) and `localResources.allowedIpNameLookups`:
//! - **connect / send / receive** (TCP connect, UDP send and receive): only to the workload's
//!   loopback, `127.0.0.1` or `::1`, on a port a rule grants for that protocol. The host then
//!   uses the rule's `hostPort` on the same address: `127.0.0.1:5432` becomes
//!   `127.0.0.1:15432`. Other loopback addresses (`127.0.0.2`), IPv4-mapped IPv6 addresses,
//!   private, link-local and public addresses are all refused;
//! - **bind**: only the implicit bind of a client socket (port 0 on the unspecified or loopback
//!   address), and only when a rule grants that protocol. Binding a fixed port is refused;
//! - **listen / accept**: never on the host;
//! - **name lookup**: an IP literal is answered without DNS, so it is always allowed (the
//!   connect rules still apply); `localhost` is allowed when any socket rule exists; any other
//!   name only when an `allowedIpNameLookups` pattern (`db.internal`, `*.internal` or `*`)
//!   matches it.
//!
//! [`decide`] and [`decide_lookup`] are pure and total; the runtime calls them for every socket
//! operation, and they are property-tested below and fuzzed in `fuzz/`.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Transport protocol of a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

/// One socket grant: the guest's `port` reaches the host's `host_port` on the same loopback
/// address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SocketRule {
    pub port: u16,
    pub host_port: u16,
    pub protocol: Protocol,
}

/// A name the guest may resolve: exact (`db.internal`), any subdomain (`*.internal`), or any
/// name (`*`).
#[derive(Debug, Clone, PartialEq, Eq)]
enum NamePattern {
    Any,
    Exact(String),
    Suffix(String),
}

impl NamePattern {
    fn matches(&self, name: &str) -> bool {
        match self {
            NamePattern::Any => true,
            NamePattern::Exact(n) => n == name,
            NamePattern::Suffix(s) => {
                name.len() > s.len() + 1
                    && name.ends_with(s.as_str())
                    && name.as_bytes()[name.len() - s.len() - 1] == b'.'
            }
        }
    }
}

/// Why a rule set could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SocketRuleError {
    #[error("port 0 cannot be granted (use 1 to 65535)")]
    PortZero,
    #[error(
        "{protocol} port {port} is granted twice (grant each port and protocol once)",
        protocol = .0.as_str(), port = .1
    )]
    Duplicate(Protocol, u16),
    #[error(
        "udp port {port} is redirected to host port {host_port}; UDP redirects are not \
         supported (use the same port, or TCP)"
    )]
    UdpRedirect { port: u16, host_port: u16 },
    #[error(
        "`{0}` is not a host name pattern (use a DNS name such as `db.internal`, `*.internal`, or `*`)"
    )]
    BadName(String),
}

/// The socket rules of one component. Cheap to clone behind an `Arc`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SocketRules {
    rules: Vec<SocketRule>,
    names: Vec<NamePattern>,
}

impl SocketRules {
    /// No network at all.
    pub fn none() -> Self {
        SocketRules::default()
    }

    /// Builds and checks a rule set: no port 0, no duplicates, no UDP redirects, and name
    /// patterns that are DNS names (`*` and `*.suffix` allowed).
    pub fn new<S: AsRef<str>>(
        rules: Vec<SocketRule>,
        lookups: &[S],
    ) -> Result<Self, SocketRuleError> {
        for (i, r) in rules.iter().enumerate() {
            if r.port == 0 || r.host_port == 0 {
                return Err(SocketRuleError::PortZero);
            }
            if r.protocol == Protocol::Udp && r.port != r.host_port {
                return Err(SocketRuleError::UdpRedirect {
                    port: r.port,
                    host_port: r.host_port,
                });
            }
            if rules[..i]
                .iter()
                .any(|o| o.port == r.port && o.protocol == r.protocol)
            {
                return Err(SocketRuleError::Duplicate(r.protocol, r.port));
            }
        }
        let mut names = Vec::new();
        for raw in lookups {
            names.push(parse_name_pattern(raw.as_ref())?);
        }
        Ok(SocketRules { rules, names })
    }

    pub fn rules(&self) -> &[SocketRule] {
        &self.rules
    }

    /// Whether nothing at all is granted.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty() && self.names.is_empty()
    }

    /// Whether any rule grants `protocol`.
    pub fn grants(&self, protocol: Protocol) -> bool {
        self.rules.iter().any(|r| r.protocol == protocol)
    }

    /// Whether any name lookup can succeed (the runtime enables the resolver only then).
    pub fn grants_lookup(&self) -> bool {
        !self.rules.is_empty() || !self.names.is_empty()
    }

    /// Whether every name may be resolved (`allowedIpNameLookups: ["*"]`).
    pub fn grants_any_name(&self) -> bool {
        self.names.contains(&NamePattern::Any)
    }

    fn rule(&self, protocol: Protocol, port: u16) -> Option<&SocketRule> {
        self.rules
            .iter()
            .find(|r| r.protocol == protocol && r.port == port)
    }
}

/// Why an `allowedIpNameLookups` entry is not a name pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NamePatternError {
    /// An IP address: it needs no lookup grant.
    IpLiteral,
    /// Not a DNS name, `*.suffix` or `*`.
    NotAName,
}

/// Checks one `allowedIpNameLookups` entry (the manifest validator and the runtime share it).
pub fn check_name_pattern(raw: &str) -> Result<(), NamePatternError> {
    name_pattern(raw).map(|_| ())
}

fn name_pattern(raw: &str) -> Result<NamePattern, NamePatternError> {
    if raw == "*" {
        return Ok(NamePattern::Any);
    }
    let (suffix, body) = match raw.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, raw),
    };
    let bare = body.strip_suffix('.').unwrap_or(body);
    if bare.parse::<IpAddr>().is_ok() {
        return Err(NamePatternError::IpLiteral);
    }
    let name = normalize_name(body).ok_or(NamePatternError::NotAName)?;
    Ok(if suffix {
        NamePattern::Suffix(name)
    } else {
        NamePattern::Exact(name)
    })
}

fn parse_name_pattern(raw: &str) -> Result<NamePattern, SocketRuleError> {
    name_pattern(raw).map_err(|_| SocketRuleError::BadName(raw.to_string()))
}

/// Lower-cases a DNS name and drops one trailing dot; `None` unless it is 1-253 characters of
/// dot-separated labels of `a-z 0-9 - _` (1-63 each).
fn normalize_name(name: &str) -> Option<String> {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() || name.len() > 253 {
        return None;
    }
    let ok = name.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    });
    ok.then(|| name.to_ascii_lowercase())
}

/// A socket operation, as wasmtime-wasi reports it to the address check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SocketUse {
    TcpBind,
    TcpListen,
    TcpAccept,
    TcpConnect,
    UdpBind,
    UdpSend,
    UdpReceive,
}

impl SocketUse {
    pub fn protocol(self) -> Protocol {
        match self {
            SocketUse::TcpBind
            | SocketUse::TcpListen
            | SocketUse::TcpAccept
            | SocketUse::TcpConnect => Protocol::Tcp,
            SocketUse::UdpBind | SocketUse::UdpSend | SocketUse::UdpReceive => Protocol::Udp,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SocketUse::TcpBind => "tcp bind",
            SocketUse::TcpListen => "tcp listen",
            SocketUse::TcpAccept => "tcp accept",
            SocketUse::TcpConnect => "tcp connect",
            SocketUse::UdpBind => "udp bind",
            SocketUse::UdpSend => "udp send",
            SocketUse::UdpReceive => "udp receive",
        }
    }
}

/// Why an operation is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DenyReason {
    /// No rule grants this protocol at all.
    ProtocolNotGranted,
    /// The address is loopback, but no rule grants this port.
    PortNotGranted,
    /// A loopback address other than 127.0.0.1 and ::1.
    OtherLoopback,
    /// An IPv4-mapped or IPv4-compatible IPv6 address.
    MappedAddress,
    /// Not loopback: private, link-local (e.g. 169.254.169.254), public or unspecified.
    NotLoopback,
    /// Binding a fixed address or port (only a client's implicit bind is allowed).
    FixedBind,
    /// Listening or accepting on the host.
    Listen,
}

/// A refused operation, with what a person needs to allow it (if it can be allowed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Denial {
    pub socket_use: SocketUse,
    pub addr: SocketAddr,
    pub reason: DenyReason,
}

impl Denial {
    /// The manifest change that would allow the operation, when there is one.
    pub fn hint(&self) -> String {
        let proto = self.socket_use.protocol().as_str();
        match self.reason {
            DenyReason::ProtocolNotGranted | DenyReason::PortNotGranted => {
                let port = self.addr.port();
                if port == 0 {
                    format!(
                        "grant a {proto} port in localResources.sockets, e.g. `- {{ port: 5432, protocol: {proto} }}`"
                    )
                } else {
                    format!(
                        "add `- {{ port: {port}, protocol: {proto} }}` to localResources.sockets"
                    )
                }
            }
            DenyReason::OtherLoopback | DenyReason::MappedAddress => format!(
                "connect to 127.0.0.1:{} or [::1]:{} instead",
                self.addr.port(),
                self.addr.port()
            ),
            DenyReason::NotLoopback => "sockets reach only the host's loopback; \
                 send HTTP to other hosts through wasi:http with localResources.allowedHosts"
                .to_string(),
            DenyReason::FixedBind | DenyReason::Listen => {
                "a component cannot listen on the host; connect to the host's services \
                 through localResources.sockets rules"
                    .to_string()
            }
        }
    }

    /// A stable key for "log once" de-duplication: the same operation, reason and port.
    pub fn log_key(&self) -> (SocketUse, DenyReason, u16) {
        (self.socket_use, self.reason, self.addr.port())
    }
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let why = match self.reason {
            DenyReason::ProtocolNotGranted => "no socket rule grants this protocol",
            DenyReason::PortNotGranted => "no socket rule grants this port",
            DenyReason::OtherLoopback => "only 127.0.0.1 and ::1 are the workload's loopback",
            DenyReason::MappedAddress => "IPv4-mapped IPv6 addresses are not allowed",
            DenyReason::NotLoopback => "the address is outside the host's loopback",
            DenyReason::FixedBind => "binding a fixed address or port is not allowed",
            DenyReason::Listen => "listening on the host is not allowed",
        };
        write!(
            f,
            "{} {} denied: {why} (hint: {})",
            self.socket_use.as_str(),
            self.addr,
            self.hint()
        )
    }
}

/// The outcome of [`decide`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Allowed; the host performs the operation on `target` (differs from the guest's address
    /// only for a redirect rule).
    Allow {
        target: SocketAddr,
    },
    Deny(Denial),
}

impl Verdict {
    pub fn is_allow(&self) -> bool {
        matches!(self, Verdict::Allow { .. })
    }
}

/// Whether `ip` is the workload's loopback: exactly 127.0.0.1 or ::1.
pub fn is_workload_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4 == Ipv4Addr::LOCALHOST,
        IpAddr::V6(v6) => v6 == Ipv6Addr::LOCALHOST,
    }
}

fn is_mapped(ip: IpAddr) -> bool {
    match ip {
        // ::ffff:a.b.c.d (mapped) and ::a.b.c.d (compatible, deprecated); :: and ::1 are not.
        IpAddr::V6(v6) => {
            let s = v6.segments();
            s[..5] == [0; 5] && (s[5] == 0xffff || (s[5] == 0 && (s[6] != 0 || s[7] > 1)))
        }
        IpAddr::V4(_) => false,
    }
}

/// Decides one socket operation. Pure and total.
pub fn decide(rules: &SocketRules, socket_use: SocketUse, addr: SocketAddr) -> Verdict {
    let deny = |reason| {
        Verdict::Deny(Denial {
            socket_use,
            addr,
            reason,
        })
    };
    let protocol = socket_use.protocol();
    match socket_use {
        SocketUse::TcpListen | SocketUse::TcpAccept => deny(DenyReason::Listen),
        SocketUse::TcpBind | SocketUse::UdpBind => {
            if !rules.grants(protocol) {
                return deny(DenyReason::ProtocolNotGranted);
            }
            let ip = addr.ip();
            if addr.port() == 0 && (ip.is_unspecified() || is_workload_loopback(ip)) {
                Verdict::Allow { target: addr }
            } else {
                deny(DenyReason::FixedBind)
            }
        }
        SocketUse::TcpConnect | SocketUse::UdpSend | SocketUse::UdpReceive => {
            let ip = addr.ip();
            if is_mapped(ip) {
                return deny(DenyReason::MappedAddress);
            }
            if !is_workload_loopback(ip) {
                return deny(if ip.is_loopback() {
                    DenyReason::OtherLoopback
                } else {
                    DenyReason::NotLoopback
                });
            }
            if !rules.grants(protocol) {
                return deny(DenyReason::ProtocolNotGranted);
            }
            match rules.rule(protocol, addr.port()) {
                Some(rule) => Verdict::Allow {
                    target: SocketAddr::new(ip, rule.host_port),
                },
                None => deny(DenyReason::PortNotGranted),
            }
        }
    }
}

/// The outcome of [`decide_lookup`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LookupVerdict {
    /// The name is an IP literal: answered without DNS.
    Literal(IpAddr),
    /// The resolver may look the name up.
    Allow,
    /// Refused; the string is the manifest change that would allow it.
    Deny { hint: String },
}

/// Decides a name lookup. Pure and total.
pub fn decide_lookup(rules: &SocketRules, name: &str) -> LookupVerdict {
    let bare = name
        .strip_prefix('[')
        .and_then(|n| n.strip_suffix(']'))
        .unwrap_or(name);
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return LookupVerdict::Literal(ip);
    }
    let Some(norm) = normalize_name(name) else {
        return LookupVerdict::Deny {
            hint: "the name is not a valid DNS name".into(),
        };
    };
    if norm == "localhost" && !rules.rules.is_empty() {
        return LookupVerdict::Allow;
    }
    if rules.names.iter().any(|p| p.matches(&norm)) {
        return LookupVerdict::Allow;
    }
    LookupVerdict::Deny {
        hint: if norm == "localhost" {
            "grant a port in localResources.sockets; `localhost` then resolves".into()
        } else {
            format!("add `{norm}` to localResources.allowedIpNameLookups")
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn tcp(port: u16, host_port: u16) -> SocketRule {
        SocketRule {
            port,
            host_port,
            protocol: Protocol::Tcp,
        }
    }

    fn udp(port: u16) -> SocketRule {
        SocketRule {
            port,
            host_port: port,
            protocol: Protocol::Udp,
        }
    }

    fn set(rules: Vec<SocketRule>, names: &[&str]) -> SocketRules {
        SocketRules::new(rules, names).expect("valid rules")
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("socket address")
    }

    fn reason(v: Verdict) -> Option<DenyReason> {
        match v {
            Verdict::Deny(d) => Some(d.reason),
            Verdict::Allow { .. } => None,
        }
    }

    #[test]
    fn allow_and_redirect() {
        let r = set(vec![tcp(3306, 3306), tcp(5432, 15432)], &[]);
        assert_eq!(
            decide(&r, SocketUse::TcpConnect, addr("127.0.0.1:3306")),
            Verdict::Allow {
                target: addr("127.0.0.1:3306")
            }
        );
        assert_eq!(
            decide(&r, SocketUse::TcpConnect, addr("127.0.0.1:5432")),
            Verdict::Allow {
                target: addr("127.0.0.1:15432")
            }
        );
        assert_eq!(
            decide(&r, SocketUse::TcpConnect, addr("[::1]:5432")),
            Verdict::Allow {
                target: addr("[::1]:15432")
            }
        );
        // The host port itself is not a guest port.
        assert_eq!(
            reason(decide(&r, SocketUse::TcpConnect, addr("127.0.0.1:15432"))),
            Some(DenyReason::PortNotGranted)
        );
    }

    #[test]
    fn deny_everything_else() {
        let r = set(vec![tcp(5432, 15432), udp(53)], &[]);
        let cases = [
            (
                "127.0.0.1:22",
                SocketUse::TcpConnect,
                DenyReason::PortNotGranted,
            ),
            (
                "127.0.0.2:5432",
                SocketUse::TcpConnect,
                DenyReason::OtherLoopback,
            ),
            (
                "169.254.169.254:80",
                SocketUse::TcpConnect,
                DenyReason::NotLoopback,
            ),
            (
                "10.0.0.1:5432",
                SocketUse::TcpConnect,
                DenyReason::NotLoopback,
            ),
            (
                "192.168.1.10:5432",
                SocketUse::TcpConnect,
                DenyReason::NotLoopback,
            ),
            (
                "0.0.0.0:5432",
                SocketUse::TcpConnect,
                DenyReason::NotLoopback,
            ),
            (
                "[fe80::1]:5432",
                SocketUse::TcpConnect,
                DenyReason::NotLoopback,
            ),
            (
                "[2001:db8::1]:5432",
                SocketUse::TcpConnect,
                DenyReason::NotLoopback,
            ),
            (
                "[::ffff:127.0.0.1]:5432",
                SocketUse::TcpConnect,
                DenyReason::MappedAddress,
            ),
            (
                "127.0.0.1:5432",
                SocketUse::UdpSend,
                DenyReason::PortNotGranted,
            ),
            (
                "127.0.0.1:53",
                SocketUse::TcpConnect,
                DenyReason::PortNotGranted,
            ),
            ("127.0.0.1:8080", SocketUse::TcpBind, DenyReason::FixedBind),
            ("0.0.0.0:0", SocketUse::TcpListen, DenyReason::Listen),
            ("127.0.0.1:40000", SocketUse::TcpAccept, DenyReason::Listen),
        ];
        for (a, u, want) in cases {
            assert_eq!(reason(decide(&r, u, addr(a))), Some(want), "{u:?} {a}");
        }
        assert!(decide(&r, SocketUse::UdpSend, addr("127.0.0.1:53")).is_allow());
        assert!(decide(&r, SocketUse::TcpBind, addr("0.0.0.0:0")).is_allow());
        assert!(decide(&r, SocketUse::UdpBind, addr("[::]:0")).is_allow());
    }

    #[test]
    fn no_rules_no_network() {
        let r = SocketRules::none();
        for u in [
            SocketUse::TcpBind,
            SocketUse::TcpConnect,
            SocketUse::UdpBind,
            SocketUse::UdpSend,
        ] {
            assert!(!decide(&r, u, addr("127.0.0.1:0")).is_allow());
            assert!(!decide(&r, u, addr("127.0.0.1:80")).is_allow());
        }
        assert!(matches!(
            decide_lookup(&r, "localhost"),
            LookupVerdict::Deny { .. }
        ));
    }

    #[test]
    fn lookups() {
        let r = set(vec![tcp(5432, 5432)], &["db.internal", "*.svc.local"]);
        assert_eq!(decide_lookup(&r, "localhost"), LookupVerdict::Allow);
        assert_eq!(decide_lookup(&r, "LocalHost."), LookupVerdict::Allow);
        assert_eq!(decide_lookup(&r, "DB.internal"), LookupVerdict::Allow);
        assert_eq!(decide_lookup(&r, "a.svc.local"), LookupVerdict::Allow);
        assert!(matches!(
            decide_lookup(&r, "svc.local"),
            LookupVerdict::Deny { .. }
        ));
        assert!(matches!(
            decide_lookup(&r, "evil.com"),
            LookupVerdict::Deny { .. }
        ));
        assert!(matches!(
            decide_lookup(&r, "x.db.internal"),
            LookupVerdict::Deny { .. }
        ));
        assert_eq!(
            decide_lookup(&r, "127.0.0.1"),
            LookupVerdict::Literal(IpAddr::V4(Ipv4Addr::LOCALHOST))
        );
        assert_eq!(
            decide_lookup(&r, "[::1]"),
            LookupVerdict::Literal(IpAddr::V6(Ipv6Addr::LOCALHOST))
        );
        let any = set(vec![], &["*"]);
        assert_eq!(
            decide_lookup(&any, "anything.example"),
            LookupVerdict::Allow
        );
        assert!(any.grants_any_name());
    }

    #[test]
    fn rule_errors() {
        assert_eq!(
            SocketRules::new::<&str>(vec![tcp(1, 1), tcp(1, 2)], &[]),
            Err(SocketRuleError::Duplicate(Protocol::Tcp, 1))
        );
        assert!(SocketRules::new::<&str>(vec![tcp(1, 1), udp(1)], &[]).is_ok());
        assert_eq!(
            SocketRules::new::<&str>(vec![tcp(0, 1)], &[]),
            Err(SocketRuleError::PortZero)
        );
        assert!(matches!(
            SocketRules::new::<&str>(
                vec![SocketRule {
                    port: 53,
                    host_port: 5353,
                    protocol: Protocol::Udp
                }],
                &[]
            ),
            Err(SocketRuleError::UdpRedirect { .. })
        ));
        for bad in ["", "a..b", "1.2.3.4", "*.", "a b", "*x.com"] {
            assert!(
                SocketRules::new(vec![], &[bad]).is_err(),
                "`{bad}` should be refused"
            );
        }
    }

    #[test]
    fn messages_name_the_fix() {
        let r = set(vec![tcp(5432, 15432)], &[]);
        let Verdict::Deny(d) = decide(&r, SocketUse::TcpConnect, addr("127.0.0.1:6379")) else {
            panic!("should deny");
        };
        assert!(
            d.to_string()
                .contains("add `- { port: 6379, protocol: tcp }` to localResources.sockets"),
            "{d}"
        );
    }

    fn arb_rules() -> impl Strategy<Value = SocketRules> {
        prop::collection::vec((1u16..20, 1u16..20, any::<bool>()), 0..6).prop_map(|raw| {
            let mut rules: Vec<SocketRule> = Vec::new();
            for (port, host_port, is_tcp) in raw {
                let protocol = if is_tcp { Protocol::Tcp } else { Protocol::Udp };
                let host_port = if is_tcp { host_port } else { port };
                if !rules
                    .iter()
                    .any(|r| r.port == port && r.protocol == protocol)
                {
                    rules.push(SocketRule {
                        port,
                        host_port,
                        protocol,
                    });
                }
            }
            SocketRules::new::<&str>(rules, &[]).expect("generated rules are valid")
        })
    }

    fn arb_ip() -> impl Strategy<Value = IpAddr> {
        prop_oneof![
            Just(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            Just(IpAddr::V6(Ipv6Addr::LOCALHOST)),
            Just(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
            Just(IpAddr::V6(Ipv6Addr::UNSPECIFIED)),
            any::<[u8; 4]>().prop_map(|b| IpAddr::V4(Ipv4Addr::from(b))),
            any::<[u16; 8]>().prop_map(|s| IpAddr::V6(Ipv6Addr::from(s))),
            any::<u8>().prop_map(|b| IpAddr::V4(Ipv4Addr::new(127, 0, 0, b))),
        ]
    }

    fn arb_use() -> impl Strategy<Value = SocketUse> {
        prop_oneof![
            Just(SocketUse::TcpBind),
            Just(SocketUse::TcpListen),
            Just(SocketUse::TcpAccept),
            Just(SocketUse::TcpConnect),
            Just(SocketUse::UdpBind),
            Just(SocketUse::UdpSend),
            Just(SocketUse::UdpReceive),
        ]
    }

    /// A naive reference: the allowed set written out by enumeration.
    fn reference_allows(rules: &SocketRules, u: SocketUse, a: SocketAddr) -> Option<SocketAddr> {
        let loopbacks = [
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(Ipv6Addr::LOCALHOST),
        ];
        match u {
            SocketUse::TcpListen | SocketUse::TcpAccept => None,
            SocketUse::TcpBind | SocketUse::UdpBind => {
                let any_rule = rules.rules().iter().any(|r| r.protocol == u.protocol());
                let ok_ip = a.ip().is_unspecified() || loopbacks.contains(&a.ip());
                (any_rule && ok_ip && a.port() == 0).then_some(a)
            }
            _ => {
                if !loopbacks.contains(&a.ip()) {
                    return None;
                }
                rules
                    .rules()
                    .iter()
                    .find(|r| r.protocol == u.protocol() && r.port == a.port())
                    .map(|r| SocketAddr::new(a.ip(), r.host_port))
            }
        }
    }

    proptest! {
        #[test]
        fn decide_matches_reference(rules in arb_rules(), u in arb_use(), ip in arb_ip(), port in 0u16..24) {
            let a = SocketAddr::new(ip, port);
            let got = match decide(&rules, u, a) {
                Verdict::Allow { target } => Some(target),
                Verdict::Deny(_) => None,
            };
            prop_assert_eq!(got, reference_allows(&rules, u, a));
        }

        #[test]
        fn never_allows_without_rules(u in arb_use(), ip in arb_ip(), port in any::<u16>()) {
            prop_assert!(!decide(&SocketRules::none(), u, SocketAddr::new(ip, port)).is_allow());
        }

        #[test]
        fn allowed_targets_stay_on_loopback(rules in arb_rules(), u in arb_use(), ip in arb_ip(), port in 0u16..24) {
            if let Verdict::Allow { target } = decide(&rules, u, SocketAddr::new(ip, port)) {
                prop_assert!(target.ip().is_unspecified() || is_workload_loopback(target.ip()));
                prop_assert_eq!(target.ip(), ip);
            }
        }

        #[test]
        fn lookup_total(names in prop::collection::vec("[a-z*.]{0,12}", 0..3), q in ".{0,40}") {
            if let Ok(r) = SocketRules::new(vec![], &names) {
                let _ = decide_lookup(&r, &q);
            }
        }
    }
}
