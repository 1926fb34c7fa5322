//! RFC 9112 at the ingress (`weft_policy::ingress`): raw request bytes in, route or refusal out.
//!
//! Input: raw bytes of an HTTP/1.x request head (seeds: well-formed requests to
//! `hello.localhost` / `counter.localhost` / `a.test:8080`, and the hostile corpus's shapes).
//!
//! Invariants, checked against a second, independent reading of the same bytes (`httparse`
//! again, then the rules written out plainly):
//! - never panics;
//! - a request with more than one `Host` line is refused, whatever else it says;
//! - an HTTP/1.1 request without `Host` is refused;
//! - an absolute-form request is routed only by its target's authority: it goes exactly where
//!   an origin-form request with that authority as `Host` goes;
//! - a routed request has exactly one `Host` value (or is HTTP/1.0 with none), and goes where
//!   `RouteTable::route` sends that value's canonical form;
//! - the canonical authority re-parses to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weft_policy::ingress::{self, RawOutcome, Refusal, Version};
use weft_policy::router::{Route, RouteTable};

fn table() -> RouteTable {
    let r = |h: Option<&str>, p: &str, t: &str| Route {
        host: h.map(str::to_string),
        path: p.to_string(),
        target: t.to_string(),
    };
    RouteTable::new(vec![
        r(Some("hello.localhost"), "/", "hello"),
        r(Some("counter.localhost"), "/", "counter"),
        r(Some("counter.localhost"), "/admin", "counter-admin"),
        r(Some("a.test:8080"), "/", "a8080"),
        r(None, "/public", "anyhost"),
    ])
    .expect("the fuzz table has no conflicts")
}

fuzz_target!(|data: &[u8]| {
    let table = table();
    let outcome = ingress::decide_raw(&table, data);

    let mut headers = [httparse::EMPTY_HEADER; ingress::MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let Ok(httparse::Status::Complete(_)) = req.parse(data) else {
        assert!(
            matches!(
                outcome,
                RawOutcome::Incomplete | RawOutcome::Refused(Refusal::Malformed)
            ),
            "an unparsable head was decided: {outcome:?}"
        );
        return;
    };
    let (method, target, minor) = (
        req.method.unwrap_or(""),
        req.path.unwrap_or(""),
        req.version.unwrap_or(1),
    );
    let hosts: Vec<&[u8]> = req
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("host"))
        .map(|h| h.value)
        .collect();
    if hosts.len() > 1 {
        assert_eq!(outcome, RawOutcome::Refused(Refusal::DuplicateHost));
        return;
    }
    if hosts.is_empty() && minor == 1 {
        assert!(
            matches!(outcome, RawOutcome::Refused(_)),
            "HTTP/1.1 without Host was not refused: {outcome:?}"
        );
    }
    let version = if minor == 0 {
        Version::Http10
    } else {
        Version::Http11
    };
    if let RawOutcome::Routed(workload) = &outcome {
        let decision = ingress::decide(method, target, version, &hosts)
            .expect("a routed request is accepted by decide");
        let canonical = decision.authority.as_ref().map(|a| a.canonical());
        if let Some(c) = &canonical {
            let again = ingress::parse_host(c.as_bytes()).expect("canonical re-parses");
            assert_eq!(again.as_ref(), decision.authority.as_ref());
        }
        assert_eq!(
            table.route(canonical.as_deref(), decision.path),
            Some(workload.as_str())
        );
        if target.contains("://") {
            // Absolute form: the same as origin form with the target's authority as Host.
            let origin = ingress::route(
                &table,
                method,
                decision.path,
                Version::Http11,
                &[canonical.as_deref().unwrap_or("").as_bytes()],
            );
            assert_eq!(
                origin,
                Ok(Some(workload.as_str())),
                "absolute form {target}"
            );
        } else {
            assert!(hosts.len() == 1 || (hosts.is_empty() && minor == 0));
        }
    }
});
