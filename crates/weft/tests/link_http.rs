//! The auth middleware in front of an unchanged HTTP component (examples/auth-middleware), on a
//! real `weft up`: composed by default, the hosted workload answers exactly as the component
//! `weft compose` writes does when served alone, and `compose: never` is refused with a hint.
// Test code: a failed unwrap is a test failure with a location (docs/lints.md).
#![allow(clippy::unwrap_used)]

mod common;
use common::*;
use std::path::{Path, PathBuf};

fn secure_manifest(dir: &Path, name: &str, compose: &str) -> PathBuf {
    let text = format!(
        "apiVersion: weft.dev/v1alpha1\nkind: Workload\nmetadata: {{ name: {name} }}\nspec:\n  compose: {compose}\n  components:\n    - name: auth\n      image: {}\n    - name: app\n      image: {}\n  hostInterfaces:\n    - namespace: wasi\n      package: http\n      interfaces: [incoming-handler]\n      config: {{ host: {name}.localhost, path: / }}\n",
        guest("auth-mw.wasm").display(),
        guest("http-hello.wasm").display()
    );
    let p = dir.join(format!("{name}.yaml"));
    std::fs::write(&p, text).unwrap();
    p
}

fn get(up: &Up, host: &str, path: &str, token: Option<&str>) -> Response {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("Host", host)];
    if let Some(a) = &auth {
        headers.push(("Authorization", a.as_str()));
    }
    request(up.http, "GET", path, &headers, b"")
}

#[test]
fn middleware_refuses_without_the_token_and_the_business_component_is_never_reached() {
    let dir = tempfile::tempdir().unwrap();
    let up = Up::start(&dir.path().join("data"));
    let m = secure_manifest(dir.path(), "secure", "auto");
    up.deploy_ok(&m);

    let denied = get(&up, "secure.localhost", "/stdout", None);
    assert_eq!(denied.status, 401, "{}", denied.text());
    assert_eq!(denied.text(), "unauthorized\n");
    assert_eq!(denied.header("www-authenticate"), Some("Bearer"));
    let wrong = get(&up, "secure.localhost", "/stdout", Some("guess"));
    assert_eq!(wrong.status, 401);
    // `/stdout` makes the business component print a line: none so far.
    let logs = stdout(&up.cli(&["logs", "secure"]));
    assert!(!logs.contains("guest stdout line"), "{logs}");

    let ok = get(&up, "secure.localhost", "/", Some("weft-demo-token"));
    assert_eq!(ok.status, 200);
    assert_eq!(ok.text(), "Hello from weft!\n");
    let ok = get(
        &up,
        "secure.localhost",
        "/status/418",
        Some("weft-demo-token"),
    );
    assert_eq!(ok.status, 418);
    let ok = get(&up, "secure.localhost", "/stdout", Some("weft-demo-token"));
    assert_eq!(ok.status, 200);
    let logs = stdout(&up.cli(&["logs", "secure"]));
    assert!(logs.contains("guest stdout line"), "{logs}");

    // The same workload composed offline by `weft compose` answers the same, byte for byte,
    // when served alone.
    let fused = dir.path().join("secure.wasm");
    let out = run_weft(&[
        "compose",
        m.to_str().unwrap(),
        "-o",
        fused.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let server = Server::start(&fused, &[]);
    for (path, token) in [
        ("/", None),
        ("/", Some("weft-demo-token")),
        ("/status/418", Some("weft-demo-token")),
    ] {
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut headers = vec![("Host", "secure.localhost")];
        if let Some(a) = &auth {
            headers.push(("Authorization", a.as_str()));
        }
        let alone = request(server.addr, "GET", path, &headers, b"");
        let hosted = get(&up, "secure.localhost", path, token);
        assert_eq!(
            (alone.status, alone.text()),
            (hosted.status, hosted.text()),
            "{path}"
        );
    }
}

#[test]
fn never_composing_an_http_chain_is_refused_with_a_hint() {
    let dir = tempfile::tempdir().unwrap();
    let up = Up::start(&dir.path().join("data"));
    let m = secure_manifest(dir.path(), "plain", "never");
    let out = up.cli(&["deploy", m.to_str().unwrap()]);
    let err = format!("{}{}", stdout(&out), stderr(&out));
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("the HTTP handler `auth` imports from other components (app)"),
        "{err}"
    );
    assert!(
        err.contains("set spec.compose to `auto` or `always`"),
        "{err}"
    );
}
