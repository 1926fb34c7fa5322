//! In-memory HTTP between the workloads of one host (docs/messaging.md, "In-memory HTTP between
//! workloads"): the reserved name space `NAME.weft.internal`, and who may call into it.
//!
//! - A host name in the name space never reaches DNS or a socket: it names a workload, or it is
//!   refused. [`classify`] decides, over the untrusted host a guest wrote in its request.
//! - The caller's allow-list must name the space explicitly, with an exact
//!   `NAME.weft.internal` rule or `*.weft.internal`: a bare `*` (everything public) does not
//!   reach other workloads ([`allows`]).
//!
//! Both are pure and property-tested below; `fuzz/fuzz_targets/allow.rs` checks them too.

use crate::allow::{AllowedHosts, Scheme};

/// The reserved suffix: `NAME.weft.internal`.
pub const SUFFIX: &str = "weft.internal";

/// What a request's host is, for the in-memory path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InternalHost {
    /// Not in the reserved name space: the ordinary outgoing path (DNS, address checks).
    External,
    /// `NAME.weft.internal`: the workload `NAME` (lowercase).
    Workload(String),
    /// In the name space, but not a workload name (`weft.internal` itself, `a.b.weft.internal`,
    /// a label that is not a DNS-1123 name): refused, never resolved.
    Invalid,
}

/// Whether `label` is a workload name as the manifest allows one (`metadata.name`: a DNS-1123
/// label, lowercase letters, digits and `-`, 1 to 63 characters, starting and ending with a
/// letter or digit).
pub fn is_workload_name(label: &str) -> bool {
    let b = label.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b.first().is_some_and(u8::is_ascii_alphanumeric)
        && b.last().is_some_and(u8::is_ascii_alphanumeric)
}

/// Classifies the host of an outgoing request (without brackets or port; compared
/// case-insensitively; trailing dots ignored, as DNS would).
pub fn classify(host: &str) -> InternalHost {
    let host = host.trim_end_matches('.');
    let (hb, sb) = (host.as_bytes(), SUFFIX.as_bytes());
    if hb.len() < sb.len() || !hb[hb.len() - sb.len()..].eq_ignore_ascii_case(sb) {
        return InternalHost::External;
    }
    let head = &hb[..hb.len() - sb.len()];
    if head.is_empty() {
        return InternalHost::Invalid;
    }
    // Something other than a dot before the suffix (`xweft.internal`) is another name.
    let Some(label) = head.strip_suffix(b".") else {
        return InternalHost::External;
    };
    let label = String::from_utf8_lossy(label).to_ascii_lowercase();
    if is_workload_name(&label) {
        InternalHost::Workload(label)
    } else {
        InternalHost::Invalid
    }
}

/// Whether `allowed` lets a caller send `scheme://NAME.weft.internal:port`: some rule must
/// allow the destination and name the reserved space itself (`NAME.weft.internal`, or
/// `*.weft.internal`), so `*` or `*.internal` alone never reach another workload.
pub fn allows(allowed: &AllowedHosts, scheme: Scheme, host: &str, port: u16) -> bool {
    allowed.rules().iter().any(|rule| {
        let rule_host = rule.host();
        let names_space = rule_host == "*.weft.internal"
            || matches!(classify(&rule_host), InternalHost::Workload(_));
        names_space && rule.allows(scheme, host, port)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn examples() {
        assert_eq!(
            classify("b.weft.internal"),
            InternalHost::Workload("b".into())
        );
        assert_eq!(
            classify("Orders-2.WEFT.Internal."),
            InternalHost::Workload("orders-2".into())
        );
        assert_eq!(classify("weft.internal"), InternalHost::Invalid);
        assert_eq!(classify(".weft.internal"), InternalHost::Invalid);
        assert_eq!(classify("a.b.weft.internal"), InternalHost::Invalid);
        assert_eq!(classify("-a.weft.internal"), InternalHost::Invalid);
        assert_eq!(classify("xweft.internal"), InternalHost::External);
        assert_eq!(classify("db.internal"), InternalHost::External);
        assert_eq!(classify("example.com"), InternalHost::External);
        assert_eq!(classify("é.weft.internal"), InternalHost::Invalid);

        let rules = |r: &[&str]| AllowedHosts::parse(r).expect("rules");
        let b = |a: &AllowedHosts| allows(a, Scheme::Http, "b.weft.internal", 80);
        assert!(b(&rules(&["b.weft.internal"])));
        assert!(b(&rules(&["http://*.weft.internal:*"])));
        assert!(b(&rules(&["*.weft.internal"])));
        assert!(!b(&rules(&["*"])));
        assert!(!b(&rules(&["*.internal"])));
        assert!(!b(&rules(&["c.weft.internal"])));
        assert!(!b(&rules(&["https://b.weft.internal"])));
        assert!(!b(&AllowedHosts::deny_all()));
    }

    /// A naive reference for [`classify`].
    fn reference(host: &str) -> InternalHost {
        let h = host.trim_end_matches('.').to_ascii_lowercase();
        if h == SUFFIX {
            return InternalHost::Invalid;
        }
        match h.strip_suffix(".weft.internal") {
            None => InternalHost::External,
            Some(label) if is_workload_name(label) => InternalHost::Workload(label.to_string()),
            Some(_) => InternalHost::Invalid,
        }
    }

    proptest! {
        #[test]
        fn classify_matches_the_reference(host in "[a-zA-Z0-9.é-]{0,20}(\\.weft\\.internal|\\.WEFT\\.internal|weft\\.internal|\\.internal)?\\.?") {
            prop_assert_eq!(classify(&host), reference(&host));
        }

        #[test]
        fn classify_never_panics_and_agrees(host in "\\PC{0,40}") {
            let got = classify(&host);
            prop_assert_eq!(&got, &reference(&host));
            if let InternalHost::Workload(name) = got {
                prop_assert!(is_workload_name(&name));
            }
        }

        /// The in-memory path is never granted by a rule the ordinary path would refuse, and
        /// never by a rule that does not name the reserved space.
        #[test]
        fn allows_is_narrower_than_the_allow_list(
            rule in "(https?://)?(\\*|\\*\\.internal|\\*\\.weft\\.internal|[a-c]\\.weft\\.internal|[a-c]\\.example)(:(\\*|80|443|8080))?",
            name in "[a-c]",
            port in prop_oneof![Just(80u16), Just(443u16), Just(8080u16)],
            https in any::<bool>(),
        ) {
            let set = AllowedHosts::parse(&[rule.as_str()]).expect("the strategy writes valid rules");
            let scheme = if https { Scheme::Https } else { Scheme::Http };
            let host = format!("{name}.weft.internal");
            let got = allows(&set, scheme, &host, port);
            if got {
                prop_assert!(set.allows(scheme, &host, port));
            }
            let without_scheme = rule.split_once("://").map_or(rule.as_str(), |(_, r)| r);
            let host_part = without_scheme.split(':').next().unwrap_or_default();
            let names = host_part == "*.weft.internal" || host_part == host;
            prop_assert_eq!(got, names && set.allows(scheme, &host, port));
        }
    }
}
