//! The `wasi:sockets` rules (`weft_policy::sockets`) against a naive reference, and against the
//! manifest validator's check of lookup-name patterns.
//!
//! Input: lines of text.
//! - `tcp PORT [HOSTPORT]` / `udp PORT [HOSTPORT]` adds a socket rule;
//! - `name PATTERN` adds an `allowedIpNameLookups` pattern;
//! - `op USE ADDR` decides a socket operation (`USE` one of tcp-bind, tcp-listen, tcp-accept,
//!   tcp-connect, udp-bind, udp-send, udp-receive; `ADDR` like `127.0.0.1:80` or `[::1]:80`);
//! - `lookup NAME` decides a name lookup.
//!
//! Invariants:
//! - `SocketRules::new` fails exactly when a rule has port 0, redirects UDP, or repeats a
//!   protocol and port, or a pattern is refused; a pattern is refused exactly when
//!   `weft_manifest::rules::check_lookup_name` refuses it;
//! - `decide` never allows what no rule allows: it allows exactly what the reference allows,
//!   and an allowed operation's target has the guest's IP address (a redirect changes only the
//!   port, to the rule's host port);
//! - `decide_lookup` answers IP literals without DNS and allows a name exactly when the
//!   reference does (`localhost` with any socket rule, or a matching pattern);
//! - denials format and have a hint.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use libfuzzer_sys::fuzz_target;
use weft_policy::sockets::{
    LookupVerdict, Protocol, SocketRule, SocketRules, SocketUse, Verdict, decide, decide_lookup,
};

fn socket_use(s: &str) -> Option<SocketUse> {
    Some(match s {
        "tcp-bind" => SocketUse::TcpBind,
        "tcp-listen" => SocketUse::TcpListen,
        "tcp-accept" => SocketUse::TcpAccept,
        "tcp-connect" => SocketUse::TcpConnect,
        "udp-bind" => SocketUse::UdpBind,
        "udp-send" => SocketUse::UdpSend,
        "udp-receive" => SocketUse::UdpReceive,
        _ => return None,
    })
}

/// A DNS name as the rules read it: one trailing dot dropped, lower-cased, 1-253 characters of
/// dot-separated 1-63 character labels of letters, digits, `-` and `_`.
fn dns_name(s: &str) -> Option<String> {
    let s = s.strip_suffix('.').unwrap_or(s);
    let ok = !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    ok.then(|| s.to_ascii_lowercase())
}

fn pattern_ok(p: &str) -> bool {
    if p == "*" {
        return true;
    }
    let body = p.strip_prefix("*.").unwrap_or(p);
    dns_name(body).is_some_and(|n| n.parse::<IpAddr>().is_err())
}

fn pattern_matches(p: &str, name: &str) -> bool {
    if p == "*" {
        return true;
    }
    match p.strip_prefix("*.") {
        Some(body) => dns_name(body)
            .is_some_and(|s| name.len() > s.len() + 1 && name.ends_with(&format!(".{s}"))),
        None => dns_name(p).is_some_and(|n| n == name),
    }
}

fn reference_decide(rules: &[SocketRule], u: SocketUse, addr: SocketAddr) -> Option<SocketAddr> {
    let protocol = u.protocol();
    let ip = addr.ip();
    let exact_loopback =
        ip == IpAddr::V4(Ipv4Addr::LOCALHOST) || ip == IpAddr::V6(Ipv6Addr::LOCALHOST);
    match u {
        SocketUse::TcpListen | SocketUse::TcpAccept => None,
        SocketUse::TcpBind | SocketUse::UdpBind => {
            let granted = rules.iter().any(|r| r.protocol == protocol);
            (granted && addr.port() == 0 && (ip.is_unspecified() || exact_loopback)).then_some(addr)
        }
        SocketUse::TcpConnect | SocketUse::UdpSend | SocketUse::UdpReceive => {
            if !exact_loopback {
                return None;
            }
            rules
                .iter()
                .find(|r| r.protocol == protocol && r.port == addr.port())
                .map(|r| SocketAddr::new(ip, r.host_port))
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut rules = Vec::new();
    let mut names: Vec<String> = Vec::new();
    let mut ops = Vec::new();
    let mut lookups = Vec::new();
    for line in text.lines().take(64) {
        let f: Vec<&str> = line.split(' ').collect();
        match f[..] {
            [p @ ("tcp" | "udp"), port, ref rest @ ..] if rest.len() <= 1 => {
                let Ok(port) = port.parse::<u16>() else {
                    continue;
                };
                let host_port = match rest.first() {
                    Some(h) => match h.parse::<u16>() {
                        Ok(h) => h,
                        Err(_) => continue,
                    },
                    None => port,
                };
                let protocol = if p == "tcp" {
                    Protocol::Tcp
                } else {
                    Protocol::Udp
                };
                rules.push(SocketRule {
                    port,
                    host_port,
                    protocol,
                });
            }
            ["op", u, addr] => {
                if let (Some(u), Ok(addr)) = (socket_use(u), addr.parse::<SocketAddr>()) {
                    ops.push((u, addr));
                }
            }
            _ => {
                if let Some(n) = line.strip_prefix("name ") {
                    names.push(n.to_string());
                } else if let Some(n) = line.strip_prefix("lookup ") {
                    lookups.push(n.to_string());
                }
            }
        }
    }

    for n in &names {
        let runtime = SocketRules::new(Vec::new(), std::slice::from_ref(n)).is_ok();
        let validated = weft_manifest::rules::check_lookup_name(n).is_ok();
        assert_eq!(
            runtime, validated,
            "pattern {n:?}: runtime {runtime}, validation {validated}"
        );
        assert_eq!(
            runtime,
            pattern_ok(n),
            "pattern {n:?}: runtime {runtime}, reference"
        );
    }
    let rule_error = rules.iter().enumerate().any(|(i, r)| {
        r.port == 0
            || r.host_port == 0
            || (r.protocol == Protocol::Udp && r.port != r.host_port)
            || rules[..i]
                .iter()
                .any(|o| o.protocol == r.protocol && o.port == r.port)
    });
    let expect_ok = !rule_error && names.iter().all(|n| pattern_ok(n));
    let set = match SocketRules::new(rules.clone(), &names) {
        Ok(s) => {
            assert!(expect_ok, "accepted bad rules {rules:?} {names:?}");
            s
        }
        Err(e) => {
            assert!(!expect_ok, "refused good rules {rules:?} {names:?}: {e}");
            let _ = e.to_string();
            return;
        }
    };
    let none = SocketRules::none();

    for &(u, addr) in &ops {
        let verdict = decide(&set, u, addr);
        let expected = reference_decide(&rules, u, addr);
        match verdict {
            Verdict::Allow { target } => {
                assert_eq!(
                    Some(target),
                    expected,
                    "{u:?} {addr} allowed; rules {rules:?}"
                );
                assert_eq!(target.ip(), addr.ip(), "a rule moved the address");
            }
            Verdict::Deny(d) => {
                assert_eq!(expected, None, "{u:?} {addr} denied ({d}); rules {rules:?}");
                assert!(!d.hint().is_empty());
                let _ = d.to_string();
            }
        }
        assert!(
            !decide(&none, u, addr).is_allow(),
            "no rules, yet {u:?} {addr} allowed"
        );
    }

    for name in &lookups {
        let verdict = decide_lookup(&set, name);
        let bare = name
            .strip_prefix('[')
            .and_then(|n| n.strip_suffix(']'))
            .unwrap_or(name);
        if let Ok(ip) = bare.parse::<IpAddr>() {
            assert_eq!(verdict, LookupVerdict::Literal(ip), "{name:?}");
            continue;
        }
        let allowed = dns_name(name).is_some_and(|norm| {
            (norm == "localhost" && !rules.is_empty())
                || names.iter().any(|p| pattern_matches(p, &norm))
        });
        match verdict {
            LookupVerdict::Allow => assert!(allowed, "lookup {name:?} allowed; names {names:?}"),
            LookupVerdict::Deny { hint } => {
                assert!(!allowed, "lookup {name:?} denied; names {names:?}");
                assert!(!hint.is_empty());
            }
            LookupVerdict::Literal(ip) => panic!("{name:?} answered as literal {ip}"),
        }
        assert!(
            !matches!(decide_lookup(&none, name), LookupVerdict::Allow),
            "no rules, yet lookup {name:?} allowed"
        );
    }
});
