//! Socket rules for WASI 0.3 guests (`wasi:sockets@0.3.0`) end to end: the same matrix as
//! `sockets.rs` (allow, redirect, deny, IPv6, UDP, name lookups, listen) with the real
//! `net-probe-p3` guest, the socket budget, and a WASI 0.3 service on the workload's virtual
//! loopback. A real `weft up` and real TCP/UDP servers on the host's loopback; only 127.0.0.0/8
//! and ::1 are ever contacted.
// Test code: a failed unwrap is a test failure with a location (docs/lints.md).
#![allow(clippy::unwrap_used)]

mod common;
use common::up::Up;
use common::*;
use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

fn route(name: &str) -> String {
    format!(
        "  hostInterfaces:\n    - {{ namespace: wasi, package: http, interfaces: [incoming-handler], config: {{ host: {name}.localhost, path: / }} }}\n"
    )
}

fn manifest(name: &str, resources: &str) -> String {
    let mut m = format!(
        "apiVersion: weft.dev/v1alpha1\nkind: Workload\nmetadata:\n  name: {name}\nspec:\n  components:\n    - name: probe\n      image: {}\n",
        guest("net-probe-p3.wasm").display()
    );
    if !resources.is_empty() {
        m.push_str("      localResources:\n");
        m.push_str(resources);
    }
    m.push_str(&route(name));
    m
}

fn deploy(up: &Up, dir: &Path, name: &str, resources: &str) {
    up.deploy_ok(&write(dir, name, &manifest(name, resources)));
}

#[test]
fn p3_socket_rules_allow_redirect_and_deny() {
    let granted = tcp_echo("127.0.0.1:0", "granted");
    let redirected = tcp_echo("127.0.0.1:0", "redirected");
    let ungranted = tcp_echo("127.0.0.1:0", "ungranted");
    let v6 = tcp_echo("[::1]:0", "v6");
    let udp = udp_echo("udp");
    // The guest's port 15 goes to the `redirected` server's port on the host.
    let resources = format!(
        "        sockets:\n          - {{ port: {}, protocol: tcp }}\n          - {{ port: 15, hostPort: {} }}\n          - {{ port: {}, protocol: tcp }}\n          - {{ port: {}, protocol: udp }}\n",
        granted.port(),
        redirected.port(),
        v6.port(),
        udp.port()
    );
    let dir = tempfile::tempdir().unwrap();
    let up = Up::start(&dir.path().join("data"));
    deploy(&up, dir.path(), "net", &resources);
    deploy(&up, dir.path(), "nonet", "");

    let tcp = |addr: String| probe(&up, "net", &format!("/tcp?addr={addr}&msg=hi"));
    // Allow.
    assert_eq!(
        tcp(format!("127.0.0.1:{}", granted.port())),
        "ok: granted:hi"
    );
    // Redirect: guest 127.0.0.1:15 -> host 127.0.0.1:<redirected>, for a 0.3 guest too.
    assert_eq!(tcp("127.0.0.1:15".into()), "ok: redirected:hi");
    assert_eq!(tcp("127.0.0.1:15".into()), "ok: redirected:hi");
    // IPv6 loopback, same rules.
    assert_eq!(tcp(format!("[::1]:{}", v6.port())), "ok: v6:hi");
    // Deny: the host port of a redirect (also right after the redirect was used: no approval
    // is left behind), an ungranted port with a live server, a granted port through another
    // loopback address, an IPv4-mapped IPv6 address.
    for (addr, why) in [
        (
            format!("127.0.0.1:{}", redirected.port()),
            "redirect host port",
        ),
        (format!("127.0.0.1:{}", ungranted.port()), "ungranted port"),
        (
            format!("127.0.0.2:{}", granted.port()),
            "other loopback address",
        ),
        (
            format!("[::ffff:127.0.0.1]:{}", granted.port()),
            "IPv4-mapped IPv6",
        ),
    ] {
        let got = tcp(addr.clone());
        assert!(
            got == "error: access-denied"
                || (why == "IPv4-mapped IPv6" && got.starts_with("error: ")),
            "{why} ({addr}): {got}"
        );
    }
    // UDP: the granted port answers; UDP to a TCP-only port is refused.
    assert_eq!(
        probe(
            &up,
            "net",
            &format!("/udp?addr=127.0.0.1:{}&msg=hey", udp.port())
        ),
        "ok: udp:hey"
    );
    assert_eq!(
        probe(
            &up,
            "net",
            &format!("/udp?addr=127.0.0.1:{}&msg=hey", granted.port())
        ),
        "error: access-denied"
    );
    // Listening on the host: never (the implicit bind of port 0 passes, the listen does not;
    // a fixed port fails at bind).
    assert_eq!(
        probe(&up, "net", "/bind?addr=127.0.0.1:0"),
        "error: listen: access-denied"
    );
    assert_eq!(
        probe(
            &up,
            "net",
            &format!("/bind?addr=127.0.0.1:{}", granted.port())
        ),
        "error: bind: access-denied"
    );
    // Name lookup: `localhost` resolves when a socket is granted; other names do not.
    let local = probe(&up, "net", "/lookup?name=localhost");
    assert!(
        local.starts_with("ok: ") && local.contains("127.0.0.1"),
        "{local}"
    );
    assert_eq!(
        probe(&up, "net", "/lookup?name=example.com"),
        "error: access-denied"
    );
    // A name that resolves is still connected to under the rules: localhost:15 is redirected.
    assert_eq!(tcp("localhost:15".into()), "ok: redirected:hi");

    // No rules, no network.
    let none = |path: String| probe(&up, "nonet", &path);
    assert_eq!(
        none(format!("/tcp?addr=127.0.0.1:{}&msg=hi", granted.port())),
        "error: access-denied"
    );
    assert_eq!(
        none(format!("/udp?addr=127.0.0.1:{}&msg=hi", udp.port())),
        "error: access-denied"
    );
    assert_eq!(
        none("/lookup?name=localhost".into()),
        "error: access-denied"
    );

    // Each refusal is logged once per component and reason, with the fix.
    let _ = tcp(format!("127.0.0.1:{}", ungranted.port()));
    let out = up.cli(&["logs", "net"]);
    let logs = stdout(&out);
    let line = format!("tcp connect 127.0.0.1:{} denied", ungranted.port());
    assert_eq!(
        logs.matches(&line).count(),
        1,
        "expected one log line for {line}:\n{logs}"
    );
    assert!(
        logs.contains(&format!(
            "add `- {{ port: {}, protocol: tcp }}` to localResources.sockets",
            ungranted.port()
        )),
        "{logs}"
    );
    assert!(logs.contains("name lookup `example.com` denied"), "{logs}");
    assert!(
        !logs.contains("redirect rules apply to WASI 0.2"),
        "a 0.3 redirect was refused:\n{logs}"
    );
}

#[test]
fn p3_lookup_grants_are_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let up = Up::start(&dir.path().join("data"));
    // A name-by-name grant deploys for a 0.3 guest (it used to need `["*"]`). `localhost` is
    // granted here by name alone (no socket rule): it resolves, and connecting still needs a
    // rule.
    deploy(
        &up,
        dir.path(),
        "names",
        "        allowedIpNameLookups: [ localhost, \"*.invalid\" ]\n",
    );
    let got = probe(&up, "names", "/lookup?name=localhost");
    assert!(
        got.starts_with("ok: ") && got.contains("127.0.0.1"),
        "{got}"
    );
    assert_eq!(
        probe(&up, "names", "/lookup?name=other.test"),
        "error: access-denied"
    );
    // IP literals need no grant (and make no DNS query).
    assert_eq!(
        probe(&up, "names", "/lookup?name=127.0.0.1"),
        "ok: 127.0.0.1"
    );
    let logs = stdout(&up.cli(&["logs", "names"]));
    assert!(logs.contains("name lookup `other.test` denied"), "{logs}");
}

#[test]
fn p3_sockets_count_against_the_workload_budget() {
    let dir = tempfile::tempdir().unwrap();
    let up = Up::start_with(
        &dir.path().join("data"),
        &[],
        &["--max-sockets-per-workload", "4"],
    );
    deploy(
        &up,
        dir.path(),
        "budget",
        "        sockets:\n          - { port: 7000 }\n",
    );
    // Four sockets, then the budget is spent; dropping them gives the units back, so the next
    // request gets four again.
    for _ in 0..3 {
        assert_eq!(
            probe(&up, "budget", "/many?n=10"),
            "opened 4; then create: other(new-socket-limit)"
        );
    }
    assert_eq!(probe(&up, "budget", "/many?n=4"), "opened 4");
    let logs = stdout(&up.cli(&["logs", "budget"]));
    assert_eq!(
        logs.matches("socket refused: the workload holds 4 sockets")
            .count(),
        1,
        "{logs}"
    );
}

/// A workload whose service (`MODE: hostport`: it tries a host port first) listens on the
/// virtual loopback's port 7000, with one component that has no socket rules.
fn service_manifest(name: &str, component: &str, service: &str) -> String {
    format!(
        "apiVersion: weft.dev/v1alpha1\nkind: Workload\nmetadata:\n  name: {name}\nspec:\n  components:\n    - name: probe\n      image: {}\n  service:\n    name: svc\n    image: {}\n    localResources:\n      environment: {{ MODE: hostport }}\n{}",
        guest(component).display(),
        guest(service).display(),
        route(name)
    )
}

#[test]
fn p3_service_listens_on_the_virtual_loopback_only() {
    let dir = tempfile::tempdir().unwrap();
    let up = Up::start(&dir.path().join("data"));
    let before = listening_ports(up.child.id());
    // A WASI 0.3 service, reached by a WASI 0.3 component.
    up.deploy_ok(&write(
        dir.path(),
        "p3svc",
        &service_manifest("p3svc", "net-probe-p3.wasm", "net-probe-p3.wasm"),
    ));
    assert_eq!(
        probe(&up, "p3svc", "/tcp?addr=127.0.0.1:7000&msg=a"),
        "ok: p3svc count=1 a"
    );
    assert_eq!(
        probe(&up, "p3svc", "/tcp?addr=127.0.0.1:7000&msg=b"),
        "ok: p3svc count=2 b"
    );
    // The workload's other ports are not virtual: no rule, no connect.
    assert_eq!(
        probe(&up, "p3svc", "/tcp?addr=127.0.0.1:7001&msg=c"),
        "error: access-denied"
    );

    // A neighbour granted port 7000 by a socket rule reaches the host's 127.0.0.1:7000
    // (nothing there), never the other workload's service.
    deploy(
        &up,
        dir.path(),
        "other",
        "        sockets: [ { port: 7000 } ]\n",
    );
    let other = probe(&up, "other", "/tcp?addr=127.0.0.1:7000&msg=x");
    assert!(
        other.starts_with("error: "),
        "the neighbour reached the service: {other}"
    );

    // The host listens on the service's ephemeral port; a client outside the workload that
    // connects there is dropped before the service sees it.
    let after = listening_ports(up.child.id());
    let new: Vec<u16> = after
        .iter()
        .copied()
        .filter(|p| !before.contains(p))
        .collect();
    assert_eq!(
        new.len(),
        1,
        "expected one new listener (the service), got {new:?}"
    );
    let mut outsider = std::net::TcpStream::connect(("127.0.0.1", new[0])).expect("connect");
    outsider
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let _ = outsider.write_all(b"intruder\n");
    let mut buf = Vec::new();
    let _ = outsider.read_to_end(&mut buf);
    assert!(
        !String::from_utf8_lossy(&buf).contains("p3svc"),
        "an outside client got an answer from the service: {}",
        String::from_utf8_lossy(&buf)
    );
    // The outsider did not count: the next member connection is the third.
    assert_eq!(
        probe(&up, "p3svc", "/tcp?addr=127.0.0.1:7000&msg=d"),
        "ok: p3svc count=3 d"
    );

    // Listening on a host port is refused; the service said so in the workload's logs.
    let logs = stdout(&up.cli(&["logs", "p3svc"]));
    assert!(
        logs.contains("listen on 0.0.0.0:7000: bind: access-denied"),
        "{logs}"
    );
    assert!(
        logs.contains("virtual loopback: dropped a connection"),
        "{logs}"
    );
    let out = up.cli(&["get", "workload", "p3svc", "-o", "json"]);
    let info: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("json");
    assert_eq!(info["service"]["status"], "Running", "{info}");
    assert_eq!(
        info["service"]["ports"],
        serde_json::json!([7000]),
        "{info}"
    );
}

#[test]
fn p2_and_p3_share_the_virtual_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let up = Up::start(&dir.path().join("data"));
    // A WASI 0.2 component reaches a WASI 0.3 service...
    up.deploy_ok(&write(
        dir.path(),
        "mixed",
        &service_manifest("mixed", "net-probe.wasm", "net-probe-p3.wasm"),
    ));
    assert_eq!(
        probe(&up, "mixed", "/tcp?addr=127.0.0.1:7000&msg=p2"),
        "ok: p3svc count=1 p2"
    );
    // ...and a WASI 0.3 component reaches a WASI 0.2 service (svc-counter).
    up.deploy_ok(&write(
        dir.path(),
        "mixed2",
        &service_manifest("mixed2", "net-probe-p3.wasm", "svc-counter.wasm"),
    ));
    assert_eq!(
        probe(&up, "mixed2", "/tcp?addr=127.0.0.1:7000&msg=p3"),
        "ok: count=1 p3"
    );
}
