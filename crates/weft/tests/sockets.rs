//! Socket rules end to end (`localResources.sockets`, `allowedIpNameLookups`): a real `weft up`,
//! the real `net-probe` guest (tests/fixtures/guests/net-probe) and real TCP/UDP servers on the
//! host's loopback. Only 127.0.0.0/8 and ::1 are ever contacted: destinations beyond loopback are
//! covered by the pure decision function's tests (crates/weft-policy/src/sockets.rs) and, end to
//! end, only inside a closed network namespace (netns.rs).
// Test code: a failed unwrap is a test failure with a location (docs/lints.md).
#![allow(clippy::unwrap_used)]

mod common;
use common::up::Up;
use common::*;
use std::path::Path;

fn manifest(name: &str, resources: &str) -> String {
    let mut m = format!(
        "apiVersion: weft.dev/v1alpha1\nkind: Workload\nmetadata:\n  name: {name}\nspec:\n  components:\n    - name: probe\n      image: {}\n",
        guest("net-probe.wasm").display()
    );
    if !resources.is_empty() {
        m.push_str("      localResources:\n");
        m.push_str(resources);
    }
    m.push_str(&format!(
        "  hostInterfaces:\n    - {{ namespace: wasi, package: http, interfaces: [incoming-handler], config: {{ host: {name}.localhost, path: / }} }}\n"
    ));
    m
}

fn deploy(up: &Up, dir: &Path, name: &str, resources: &str) {
    let file = dir.join(format!("{name}.yaml"));
    std::fs::write(&file, manifest(name, resources)).unwrap();
    up.deploy_ok(&file);
}

#[test]
fn socket_rules_allow_redirect_and_deny() {
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
    // Redirect: guest 127.0.0.1:15 -> host 127.0.0.1:<redirected>.
    assert_eq!(tcp("127.0.0.1:15".into()), "ok: redirected:hi");
    // IPv6 loopback, same rules.
    assert_eq!(tcp(format!("[::1]:{}", v6.port())), "ok: v6:hi");
    // Deny: the host port of a redirect is not a guest port; an ungranted port with a live
    // server; a granted port through another loopback address; the IPv4 rule's port over IPv6
    // when nothing listens there still passes the rules (refused by the OS, not by us).
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
        assert_ne!(got, format!("ok: {}:hi", "granted"));
    }
    // UDP: granted port answers; UDP to a TCP-only port is refused.
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
    // Listening on the host: never.
    assert_eq!(
        probe(&up, "net", "/bind?addr=127.0.0.1:0"),
        "error: access-denied"
    );
    assert_eq!(
        probe(
            &up,
            "net",
            &format!("/bind?addr=127.0.0.1:{}", granted.port())
        ),
        "error: access-denied"
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
}

#[test]
fn lookup_grants_are_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let up = Up::start(&dir.path().join("data"));
    // `localhost` is granted here by name alone (no socket rule): it resolves, and connecting
    // still needs a rule.
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
}
