//! The outgoing-HTTP allow-list (`weft_policy::allow`) against a naive reference matcher, and
//! against the manifest validator's copy of the rule grammar.
//!
//! Input: lines of text.
//! - `rule TEXT` adds an allow rule (the rest of the line);
//! - `req SCHEME HOST PORT` asks whether `SCHEME://HOST:PORT` is allowed (SCHEME `http`/`https`);
//! - `uri TEXT` asks whether a request to that URI is allowed.
//!
//! Invariants:
//! - `weft_manifest::rules::check_allowed_host` accepts a rule exactly when
//!   `HostRule::parse` does (validation never accepts what the runtime rejects, and the other
//!   way round);
//! - a parsed rule prints as text that parses back to the same rule;
//! - the set allows a destination exactly when the reference says some rule allows it (so it
//!   never allows what no rule allows); an empty set allows nothing;
//! - `allows_uri` agrees with `allows` on the URI's scheme (https when absent), host and port;
//! - in-memory HTTP (`weft_policy::internal`): `classify` agrees with a naive reference (a
//!   host is in the reserved space exactly when it is `weft.internal` or ends in
//!   `.weft.internal`, case-insensitively, trailing dots ignored; it names a workload exactly
//!   when the rest is one DNS-1123 label); `internal::allows` never allows what `allows`
//!   refuses, and never through a rule that does not name the space (`*`, `*.internal`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use weft_policy::allow::{AllowedHosts, HostRule, Scheme};
use weft_policy::internal::{self, InternalHost};

/// Whether the rule text (already known to parse) allows `scheme://host:port`, by the rules in
/// the module docs, without any precomputation.
fn reference(rule: &str, scheme: Scheme, host: &str, port: u16) -> bool {
    let rule = rule.trim();
    let (rule_scheme, rest) = match rule.split_once("://") {
        Some((s, rest)) => (Scheme::parse(s), rest),
        None => (None, rule),
    };
    if rule_scheme.is_some_and(|s| s != scheme) {
        return false;
    }
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let (rule_host, rule_port) = if let Some(v6) = rest.strip_prefix('[') {
        let (inside, tail) = v6.split_once(']').unwrap_or((v6, ""));
        (inside, tail.strip_prefix(':'))
    } else {
        match rest.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (rest, None),
        }
    };
    let default_port = match scheme {
        Scheme::Http => 80,
        Scheme::Https => 443,
    };
    let port_ok = match rule_port {
        None => port == default_port,
        Some("*") => true,
        Some(p) => p.parse::<u16>().ok() == Some(port),
    };
    if !port_ok {
        return false;
    }
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let rule_host = rule_host.to_ascii_lowercase();
    if rule_host == "*" {
        true
    } else if let Some(suffix) = rule_host.strip_prefix("*.") {
        // A subdomain: at least one character before the dot.
        host.len() > suffix.len() + 1 && host.ends_with(&format!(".{suffix}"))
    } else {
        host == rule_host
    }
}

/// A naive reference for `internal::classify`.
fn internal_reference(host: &str) -> InternalHost {
    let h = host.trim_end_matches('.').to_ascii_lowercase();
    if h == "weft.internal" {
        return InternalHost::Invalid;
    }
    match h.strip_suffix(".weft.internal") {
        None => InternalHost::External,
        Some(label) => {
            let ok = !label.is_empty()
                && label.len() <= 63
                && label
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-');
            if ok {
                InternalHost::Workload(label.to_string())
            } else {
                InternalHost::Invalid
            }
        }
    }
}

fn scheme(s: &str) -> Option<Scheme> {
    match s {
        "http" => Some(Scheme::Http),
        "https" => Some(Scheme::Https),
        _ => None,
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut rules: Vec<String> = Vec::new();
    let mut requests: Vec<(Scheme, String, u16)> = Vec::new();
    let mut uris: Vec<String> = Vec::new();
    for line in text.lines().take(64) {
        if let Some(rule) = line.strip_prefix("rule ") {
            rules.push(rule.to_string());
        } else if let Some(u) = line.strip_prefix("uri ") {
            uris.push(u.to_string());
        } else if let Some(req) = line.strip_prefix("req ") {
            let f: Vec<&str> = req.split(' ').collect();
            if let [s, h, p] = f[..]
                && let (Some(s), Ok(p)) = (scheme(s), p.parse::<u16>())
            {
                requests.push((s, h.to_string(), p));
            }
        }
    }

    let mut good: Vec<&str> = Vec::new();
    for rule in &rules {
        let parsed = HostRule::parse(rule);
        let validated = weft_manifest::rules::check_allowed_host(rule);
        assert_eq!(
            parsed.is_ok(),
            validated.is_ok(),
            "rule {rule:?}: runtime {parsed:?} vs validation {:?}",
            validated.as_ref().err().map(|r| &r.reason)
        );
        if let Ok(r) = parsed {
            let printed = r.to_string();
            assert_eq!(
                HostRule::parse(&printed).as_ref(),
                Ok(&r),
                "{rule:?} printed as {printed:?}"
            );
            good.push(rule);
        }
    }
    let set = AllowedHosts::parse(&rules);
    assert_eq!(set.is_ok(), good.len() == rules.len());
    let set = AllowedHosts::parse(&good).expect("rules that parsed one by one parse together");
    let empty = AllowedHosts::deny_all();

    for (s, host, port) in &requests {
        let allowed = set.allows(*s, host, *port);
        let expected = good.iter().any(|r| reference(r, *s, host, *port));
        if allowed && !expected {
            panic!("allows {s:?}://{host}:{port}, which no rule allows: {good:?}");
        }
        assert_eq!(
            allowed, expected,
            "denies {s:?}://{host}:{port} although a rule allows it: {good:?}"
        );
        assert!(!empty.allows(*s, host, *port));

        let class = internal::classify(host);
        assert_eq!(class, internal_reference(host), "classify({host:?})");
        let internal_ok = internal::allows(&set, *s, host, *port);
        if internal_ok {
            assert!(
                allowed,
                "internal::allows {host:?} which the allow-list refuses"
            );
            assert!(
                set.rules().iter().any(|r| {
                    let h = r.host();
                    (h == "*.weft.internal"
                        || matches!(internal::classify(&h), InternalHost::Workload(_)))
                        && r.allows(*s, host, *port)
                }),
                "internal::allows {host:?} through no rule naming the space: {good:?}"
            );
        }
        let wide = AllowedHosts::parse(&["*", "*.internal"]).expect("rules");
        assert!(!internal::allows(&wide, *s, host, *port));
    }
    for u in &uris {
        let Ok(uri) = u.parse::<http::Uri>() else {
            continue;
        };
        let allowed = set.allows_uri(&uri);
        assert!(!empty.allows_uri(&uri));
        let s = match uri.scheme_str() {
            None => Some(Scheme::Https),
            Some(s) => Scheme::parse(s),
        };
        let expected = match (s, uri.authority()) {
            (Some(s), Some(a)) => {
                let host = a.host();
                let host = host
                    .strip_prefix('[')
                    .and_then(|h| h.strip_suffix(']'))
                    .unwrap_or(host);
                let port = a.port_u16().unwrap_or(match s {
                    Scheme::Http => 80,
                    Scheme::Https => 443,
                });
                good.iter().any(|r| reference(r, s, host, port))
            }
            _ => false,
        };
        assert_eq!(allowed, expected, "uri {u:?} rules {good:?}");
    }
});
