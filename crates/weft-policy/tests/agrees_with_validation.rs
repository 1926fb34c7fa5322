//! Property tests across crates: what `weft-manifest` validation accepts, the policy code the
//! runtime builds from it accepts too (and the other way round where the grammars are meant to be
//! the same). The fuzz targets `allow`, `sockets` and `manifest_parse` check the same on
//! arbitrary input; these run in the normal test suite.
#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use weft_manifest::rules::{
    check_allowed_host, check_http_host, check_http_path, check_lookup_name,
};
use weft_policy::allow::HostRule;
use weft_policy::router::{Route, RouteTable};
use weft_policy::sockets::SocketRules;

/// Strings made of the pieces allow rules and host names are made of.
fn rule_like() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop::sample::select(vec![
            "http://",
            "https://",
            "ftp://",
            "*",
            "*.",
            ".",
            ":",
            "::",
            "[",
            "]",
            "::1",
            "1",
            "80",
            "0",
            "65536",
            "a",
            "B",
            "ex-ample",
            "_x",
            "/",
            "?",
            "@",
            " ",
            "1.2.3.4",
            "é",
            "localhost",
            "%",
        ]),
        0..8,
    )
    .prop_map(|parts| parts.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn allowed_host_rules_parse_exactly_when_valid(rule in rule_like()) {
        let runtime = HostRule::parse(&rule);
        let validated = check_allowed_host(&rule);
        prop_assert_eq!(runtime.is_ok(), validated.is_ok(), "{:?}: {:?}", rule, runtime);
    }

    #[test]
    fn lookup_patterns_parse_exactly_when_valid(pattern in rule_like()) {
        let runtime = SocketRules::new(Vec::new(), &[pattern.as_str()]).is_ok();
        prop_assert_eq!(runtime, check_lookup_name(&pattern).is_ok(), "{:?}", pattern);
    }

    #[test]
    fn a_valid_http_route_reaches_its_workload(
        name in "[a-zA-Z0-9_-]{1,8}(\\.[a-zA-Z0-9_-]{1,8}){0,2}",
        port in prop::option::of(1u16..),
        path in "/[a-z/._~-]{0,12}",
    ) {
        let host = match port {
            Some(p) => format!("{name}:{p}"),
            None => name,
        };
        prop_assert!(check_http_host(&host).is_ok(), "{:?}", host);
        prop_assert!(check_http_path(&path).is_ok(), "{:?}", path);
        let table = RouteTable::new(vec![Route {
            host: Some(host.clone()),
            path: path.clone(),
            target: "w".into(),
        }])
        .unwrap();
        prop_assert_eq!(table.route(Some(&host), &path), Some("w"));
        prop_assert_eq!(table.route(Some(&host.to_uppercase()), &format!("{}/x", path.trim_end_matches('/'))), Some("w"));
    }
}
