//! The workload service (`spec.service`): a long-lived `wasi:cli/run` instance that keeps its
//! state, listens on the workload's virtual loopback (reachable by the workload's components
//! only), and is restarted with backoff up to `maxRestarts`. Real `weft up`, the real
//! `svc-counter` service and `net-probe` component guests, real loopback TCP.
// Test code: a failed unwrap is a test failure with a location (docs/lints.md).
#![allow(clippy::unwrap_used)]

mod common;
use common::up::Up;
use common::*;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

fn manifest(name: &str, env: &str, max_restarts: u32) -> String {
    format!(
        "apiVersion: weft.dev/v1alpha1\nkind: Workload\nmetadata:\n  name: {name}\nspec:\n  components:\n    - name: probe\n      image: {probe}\n  service:\n    name: counter\n    image: {svc}\n    maxRestarts: {max_restarts}\n    localResources:\n      environment: {{ {env} }}\n  hostInterfaces:\n    - {{ namespace: wasi, package: http, interfaces: [incoming-handler], config: {{ host: {name}.localhost, path: / }} }}\n",
        probe = guest("net-probe.wasm").display(),
        svc = guest("svc-counter.wasm").display(),
    )
}

fn get_json(up: &Up, name: &str) -> serde_json::Value {
    let out = up.cli(&["get", "workload", name, "-o", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_str(&stdout(&out)).expect("json")
}

#[test]
fn service_keeps_state_and_only_its_workload_reaches_it() {
    let dir = tempfile::tempdir().unwrap();
    let up = Up::start(&dir.path().join("data"));
    let before = listening_ports(up.child.id());
    up.deploy_ok(&write(
        dir.path(),
        "svc",
        &manifest("svc", "MODE: hostport", 3),
    ));
    // A neighbour without a service, granted port 7000 by a socket rule: it reaches the host's
    // 127.0.0.1:7000 (nothing there), never the other workload's service.
    let neighbour = format!(
        "apiVersion: weft.dev/v1alpha1\nkind: Workload\nmetadata:\n  name: other\nspec:\n  components:\n    - name: probe\n      image: {}\n      localResources:\n        sockets: [ {{ port: 7000 }} ]\n  hostInterfaces:\n    - {{ namespace: wasi, package: http, interfaces: [incoming-handler], config: {{ host: other.localhost, path: / }} }}\n",
        guest("net-probe.wasm").display()
    );
    up.deploy_ok(&write(dir.path(), "other", &neighbour));

    // Components reach the service at the workload's 127.0.0.1:7000; its count survives the
    // components' per-request instances.
    assert_eq!(
        probe(&up, "svc", "/tcp?addr=127.0.0.1:7000&msg=a"),
        "ok: count=1 a"
    );
    assert_eq!(
        probe(&up, "svc", "/tcp?addr=127.0.0.1:7000&msg=b"),
        "ok: count=2 b"
    );

    let other = probe(&up, "other", "/tcp?addr=127.0.0.1:7000&msg=x");
    assert!(
        other.starts_with("error: "),
        "the neighbour reached the service: {other}"
    );

    // The host process listens on the service's ephemeral port; a client outside the workload
    // that connects there is dropped before the service sees it.
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
        !String::from_utf8_lossy(&buf).contains("count="),
        "an outside client got an answer from the service: {}",
        String::from_utf8_lossy(&buf)
    );
    assert_eq!(
        probe(&up, "svc", "/tcp?addr=127.0.0.1:7000&msg=c"),
        "ok: count=3 c"
    );

    // Listening on a host port is refused; the service said so in the workload's logs.
    let logs = stdout(&up.cli(&["logs", "svc"]));
    assert!(
        logs.contains("listen on 0.0.0.0:7000: bind: access-denied"),
        "{logs}"
    );
    assert!(
        logs.contains("virtual loopback: dropped a connection"),
        "{logs}"
    );

    let info = get_json(&up, "svc");
    assert_eq!(info["status"], "Running", "{info}");
    assert_eq!(info["service"]["status"], "Running", "{info}");
    assert_eq!(
        info["service"]["ports"],
        serde_json::json!([7000]),
        "{info}"
    );
}

#[test]
fn service_restarts_with_backoff_then_fails_the_workload() {
    let dir = tempfile::tempdir().unwrap();
    let up = Up::start(&dir.path().join("data"));
    // Exits with an error after each answered line; two restarts allowed.
    up.deploy_ok(&write(
        dir.path(),
        "flaky",
        &manifest("flaky", "MODE: serve, EXIT_AFTER: \"1\"", 2),
    ));
    let mut answers = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    // Each start answers once (count=1: a restart starts from fresh state), then exits.
    while answers.len() < 3 && Instant::now() < deadline {
        let got = probe(&up, "flaky", "/tcp?addr=127.0.0.1:7000&msg=hi");
        if got.starts_with("ok: ") {
            answers.push(got);
        } else {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    assert_eq!(answers, vec!["ok: count=1 hi"; 3], "one answer per start");
    // After the third exit (two restarts used), the workload is Failed with the last error.
    let deadline = Instant::now() + Duration::from_secs(15);
    let info = loop {
        let info = get_json(&up, "flaky");
        if info["status"] == "Failed" || Instant::now() > deadline {
            break info;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(info["status"], "Failed", "{info}");
    assert_eq!(info["service"]["restarts"], 2, "{info}");
    assert!(
        info["error"]
            .as_str()
            .unwrap_or("")
            .contains("service counter: the service exited with status 1"),
        "{info}"
    );
    assert_eq!(info["service"]["ports"], serde_json::json!([]), "{info}");
    let logs = stdout(&up.cli(&["logs", "flaky"]));
    assert!(logs.contains("restarting in 100ms (1/2)"), "{logs}");
    assert!(logs.contains("restarting in 200ms (2/2)"), "{logs}");
    assert!(logs.contains("giving up after 2 restarts"), "{logs}");
}

#[test]
fn a_service_that_cannot_start_fails_the_deploy_and_keeps_the_old_version() {
    let dir = tempfile::tempdir().unwrap();
    let up = Up::start(&dir.path().join("data"));
    up.deploy_ok(&write(
        dir.path(),
        "keep",
        &manifest("keep", "MODE: serve", 1),
    ));
    assert_eq!(
        probe(&up, "keep", "/tcp?addr=127.0.0.1:7000&msg=a"),
        "ok: count=1 a"
    );
    let bad = write(dir.path(), "keep-bad", &manifest("keep", "MODE: crash", 1));
    let out = up.cli(&["deploy", bad.to_str().unwrap()]);
    assert!(!out.status.success(), "a crashing service deployed");
    let err = format!("{}{}", stdout(&out), stderr(&out));
    assert!(
        err.contains("spec.service (counter)") && err.contains("failed before it was ready"),
        "{err}"
    );
    // The running version and its service state are untouched.
    assert_eq!(
        probe(&up, "keep", "/tcp?addr=127.0.0.1:7000&msg=b"),
        "ok: count=2 b"
    );
}
