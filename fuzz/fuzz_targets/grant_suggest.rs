//! Denial hints (`weft_manifest::grant::suggest`): what `weft dev` prints for a capability a
//! guest was denied. The request's names and hosts come from the guest, so they are untrusted.
//!
//! Input: the first byte picks the kind of request, the next two the port, the rest is the
//! name, host or interface (UTF-8). Invariants: `suggest` and its text never panic; a
//! suggested grant, applied to the manifest, makes the same decision function allow the
//! denied use (the socket rules, the lookup rules, or `allowedHosts`); the printed lines
//! re-parse when pasted into a manifest (every grant's YAML is one or two lines, no control
//! characters).
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use libfuzzer_sys::fuzz_target;
use weft_manifest::grant::{GrantRequest, http_allowed, socket_rules, suggest};
use weft_policy::allow::{AllowedHosts, Scheme};
use weft_policy::sockets::{self, LookupVerdict, Protocol, SocketUse};

const MANIFEST: &str = "apiVersion: weft.dev/v1alpha1\nkind: Workload\nmetadata:\n  name: fz\nspec:\n  components:\n    - name: api\n      image: ./api.wasm\n      localResources:\n        sockets: [ { port: 1 } ]\n  hostInterfaces:\n    - namespace: wasi\n      package: http\n      interfaces: [incoming-handler]\n      config: { host: fz.localhost, path: / }\n";

/// The manifest every request is suggested against, parsed once.
fn base() -> &'static weft_manifest::Manifest {
    static BASE: std::sync::OnceLock<weft_manifest::Manifest> = std::sync::OnceLock::new();
    BASE.get_or_init(|| {
        weft_manifest::parse_str(MANIFEST, std::path::Path::new("fz.yaml"))
            .ok()
            .and_then(|mut m| m.pop())
            .expect("the base manifest parses")
    })
}

fuzz_target!(|data: &[u8]| {
    let [kind, p0, p1, rest @ ..] = data else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let port = u16::from_be_bytes([*p0, *p1]);
    let ip = match kind / 8 % 4 {
        0 => IpAddr::V4(Ipv4Addr::LOCALHOST),
        1 => IpAddr::V6(Ipv6Addr::LOCALHOST),
        2 => IpAddr::V4(Ipv4Addr::new(10, 0, 0, 5)),
        _ => IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)),
    };
    let protocol = if kind & 1 == 0 {
        Protocol::Tcp
    } else {
        Protocol::Udp
    };
    let request = match kind / 2 % 4 {
        0 => GrantRequest::SocketConnect {
            addr: SocketAddr::new(ip, port),
            protocol,
        },
        1 => GrantRequest::lookup(text),
        2 => GrantRequest::outgoing_http(
            if kind & 1 == 0 {
                Scheme::Http
            } else {
                Scheme::Https
            },
            text,
            port,
        ),
        _ => GrantRequest::import(text),
    };
    let mut manifest = base().clone();
    let s = suggest(&request, "api", &manifest);
    let shown = s.to_string();
    assert!(shown.starts_with("component api was denied "), "{shown}");
    let Some(grant) = &s.grant else {
        return;
    };
    assert!(grant.yaml.lines().count() <= 2, "{grant:?}");
    assert!(
        !grant.yaml.chars().any(|c| c.is_control() && c != '\n'),
        "control characters in {grant:?}"
    );
    assert!(s.apply(&mut manifest), "a grant applies: {grant:?}");
    let res = &manifest.spec.components[0].local_resources;
    match &request {
        GrantRequest::SocketConnect { addr, protocol } => {
            let rules = socket_rules(res).expect("granted rules are valid");
            let u = match protocol {
                Protocol::Tcp => SocketUse::TcpConnect,
                Protocol::Udp => SocketUse::UdpSend,
            };
            assert!(sockets::decide(&rules, u, *addr).is_allow(), "{request:?}");
        }
        GrantRequest::NameLookup { name } => {
            let rules = socket_rules(res).expect("granted rules are valid");
            assert_eq!(
                sockets::decide_lookup(&rules, name),
                LookupVerdict::Allow,
                "{name:?}"
            );
        }
        GrantRequest::OutgoingHttp { scheme, host, port } => {
            let allowed = AllowedHosts::parse(&res.allowed_hosts).expect("granted rules parse");
            assert!(http_allowed(&allowed, *scheme, host, *port), "{request:?}");
        }
        _ => {}
    }
});
