//! In-memory HTTP between the workloads of one `weft up` host (docs/messaging.md, "In-memory
//! HTTP between workloads"): a real host process, the real `http-hello` guest as caller and as
//! target, real loopback HTTP at the ingress. `NAME.weft.internal` resolves nowhere, so every
//! 200 below was served in memory.
// Test code: a failed unwrap is a test failure with a location (docs/lints.md).
#![allow(clippy::unwrap_used)]

mod common;
use common::*;
use std::path::Path;

/// An `http-hello` workload routed at `NAME.localhost`, with `allowed` hosts for its outgoing
/// HTTP and `internal` (if any) in its `wasi:http` grant.
fn hello(name: &str, allowed: &str, internal: Option<&str>) -> String {
    let internal = internal
        .map(|v| format!(", internal: {v}"))
        .unwrap_or_default();
    format!(
        "apiVersion: weft.dev/v1alpha1\nkind: Workload\nmetadata:\n  name: {name}\nspec:\n  components:\n    - name: app\n      image: {}\n      localResources:\n        allowedHosts: [{allowed}]\n  hostInterfaces:\n    - namespace: wasi\n      package: http\n      interfaces: [incoming-handler, outgoing-handler]\n      config: {{ host: {name}.localhost, path: /{internal} }}\n",
        guest("http-hello.wasm").display()
    )
}

fn deploy(up: &Up, dir: &Path, name: &str, text: &str) {
    up.deploy_ok(&write(dir, name, text));
}

/// `GET /fetch?url=URL` on workload `from`: the guest fetches URL with wasi:http.
fn fetch(up: &Up, from: &str, url: &str) -> Response {
    up.get(&format!("{from}.localhost"), &format!("/fetch?url={url}"))
}

fn logs(up: &Up, name: &str) -> String {
    let out = up.cli(&["logs", name]);
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out)
}

#[test]
fn workloads_call_each_other_in_memory_when_both_opt_in() {
    let dir = tempfile::tempdir().unwrap();
    let up = Up::start(&dir.path().join("data"));
    let d = dir.path();
    deploy(
        &up,
        d,
        "front",
        &hello("front", "\"*.weft.internal\"", None),
    );
    deploy(&up, d, "wild", &hello("wild", "\"*\"", None));
    deploy(&up, d, "back", &hello("back", "", Some("allow")));
    deploy(&up, d, "hidden", &hello("hidden", "", Some("only")));
    deploy(&up, d, "closed", &hello("closed", "", None));

    // The target sees the request as the ingress would deliver it, plus who called.
    let r = fetch(&up, "front", "http://back.weft.internal/headers");
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = r.text().to_ascii_lowercase();
    assert!(seen.contains("weft-caller: default/front"), "{seen}");
    assert!(!seen.contains("connection:"), "{seen}");
    // Any port, https as well: the name never reaches a socket.
    let r = fetch(&up, "front", "https://back.weft.internal/status/418");
    assert_eq!(r.status, 418, "{}", r.text());

    // `internal: only`: reachable in memory, not through the ingress.
    let r = fetch(&up, "front", "http://hidden.weft.internal/");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), "Hello from weft!\n");
    assert_eq!(up.get("hidden.localhost", "/").status, 404);
    // `internal: allow` keeps its ingress route.
    assert_eq!(up.get("back.localhost", "/").status, 200);

    // A target that did not opt in refuses, and the caller's log says how to fix it.
    let r = fetch(&up, "front", "http://closed.weft.internal/");
    assert_eq!(r.status, 502, "{}", r.text());
    let front_logs = logs(&up, "front");
    assert!(
        front_logs.contains("workload `closed` does not accept in-memory calls")
            && front_logs.contains("internal: allow"),
        "{front_logs}"
    );
    // No such workload, or not a workload name: refused in memory, never resolved.
    let r = fetch(&up, "front", "http://nosuch.weft.internal/");
    assert_eq!(r.status, 502, "{}", r.text());
    let r = fetch(&up, "front", "http://a.b.weft.internal/");
    assert_eq!(r.status, 502, "{}", r.text());
    let front_logs = logs(&up, "front");
    assert!(
        front_logs.contains("no workload `nosuch` runs on this host"),
        "{front_logs}"
    );
    assert!(
        front_logs.contains("a.b.weft.internal/ refused: not a workload name"),
        "{front_logs}"
    );

    // The caller's allow-list must name the space: `*` does not reach other workloads.
    let r = fetch(&up, "wild", "http://back.weft.internal/");
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(r.text().contains("HttpRequestDenied"), "{}", r.text());
    let wild_logs = logs(&up, "wild");
    assert!(
        wild_logs.contains("add `back.weft.internal` or `*.weft.internal`"),
        "{wild_logs}"
    );

    // A client at the ingress cannot pretend to be a workload.
    let r = request(
        up.http,
        "GET",
        "/headers",
        &[("Host", "back.localhost"), ("Weft-Caller", "default/front")],
        b"",
    );
    assert_eq!(r.status, 200);
    assert!(
        !r.text().to_ascii_lowercase().contains("weft-caller"),
        "{}",
        r.text()
    );

    // A trap in the target is the target's 500 (generic, with a request id), not the caller's.
    let r = fetch(&up, "front", "http://back.weft.internal/trap");
    assert_eq!(r.status, 500, "{}", r.text());
    assert_eq!(up.get("front.localhost", "/").status, 200);
}

/// `examples/in-memory/weft.yaml` (two workloads in one file) as its README says.
#[test]
fn the_in_memory_example_works_as_documented() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(guest("http-hello.wasm"), dir.path().join("hello.wasm")).unwrap();
    let text = std::fs::read_to_string(repo_root().join("examples/in-memory/weft.yaml")).unwrap();
    let file = dir.path().join("weft.yaml");
    std::fs::write(&file, text).unwrap();
    let up = Up::start(&dir.path().join("data"));
    up.deploy_ok(&file);
    let r = fetch(&up, "front", "http://back.weft.internal/headers");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.text()
            .to_ascii_lowercase()
            .contains("weft-caller: default/front"),
        "{}",
        r.text()
    );
    assert_eq!(up.get("back.localhost", "/").status, 404);
}
