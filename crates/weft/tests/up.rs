//! `weft up` end to end: a real host process, real guests, real loopback HTTP, the admin API
//! through the real CLI.
// Test code: a failed unwrap is a test failure with a location (docs/lints.md).
#![allow(clippy::unwrap_used)]

mod common;
use common::*;
use std::path::{Path, PathBuf};

fn manifest(name: &str, image: &Path, host: &str, path: &str, extra_resources: &str) -> String {
    format!(
        "apiVersion: weft.dev/v1alpha1\nkind: Workload\nmetadata:\n  name: {name}\nspec:\n  components:\n    - name: app\n      image: {}\n      localResources:\n        environment: {{ WHO: {name} }}\n{extra_resources}  hostInterfaces:\n    - namespace: wasi\n      package: http\n      interfaces: [incoming-handler]\n      config: {{ host: {host}, path: {path} }}\n",
        image.display()
    )
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write manifest");
    p
}

fn deploy_ok(up: &Up, file: &Path) {
    up.deploy_ok(file);
}

#[test]
fn routes_by_host_and_path_across_workloads_and_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let up = Up::start(&data);

    let a = write(
        dir.path(),
        "a.yaml",
        &manifest("hello-a", &guest("http-hello.wasm"), "a.localhost", "/", ""),
    );
    let b = write(
        dir.path(),
        "b.yaml",
        &manifest("p3-b", &guest("p3-service.wasm"), "b.localhost", "/", ""),
    );
    let c = write(
        dir.path(),
        "c.yaml",
        &manifest(
            "echo-c",
            &guest("http-echo.wasm"),
            "a.localhost",
            "/echo",
            "",
        ),
    );
    for f in [&a, &b, &c] {
        deploy_ok(&up, f);
    }

    let r = up.get("a.localhost", "/");
    assert_eq!((r.status, r.text().as_str()), (200, "Hello from weft!\n"));
    let r = up.get("A.LOCALHOST:8080", "/");
    assert_eq!(
        r.text(),
        "Hello from weft!\n",
        "host match ignores case and port"
    );
    let r = up.get("b.localhost", "/");
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "Hello from weft p3!\n")
    );
    let r = request(
        up.http,
        "POST",
        "/echo/x",
        &[("Host", "a.localhost")],
        b"routed to echo",
    );
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "routed to echo"),
        "longest prefix wins"
    );
    let r = up.get("a.localhost", "/echoes");
    assert_eq!(
        r.text(),
        "Hello from weft!\n",
        "prefixes match whole segments"
    );
    // A 404 names no tenant: a generic body and the request id; the route table goes to the
    // admin API under that id.
    let r = up.get("nowhere.localhost", "/");
    assert_eq!(r.status, 404);
    let id = r.header("x-request-id").expect("x-request-id").to_string();
    assert_eq!(r.text(), format!("404 Not Found\nrequest id: {id}\n"));
    for tenant in ["a.localhost", "b.localhost", "echo-c", "hello-a", "p3-b"] {
        assert!(!r.text().contains(tenant), "{}", r.text());
    }
    let detail = up.admin(&format!("/v1/requests/{id}"));
    assert_eq!(detail.status, 200, "{}", detail.text());
    assert!(
        detail.text().contains("a.localhost/echo -> echo-c")
            && detail.text().contains("nowhere.localhost"),
        "{}",
        detail.text()
    );

    let out = up.cli(&["get", "workloads", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let names: Vec<&str> = v["workloads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["echo-c", "hello-a", "p3-b"]);
    assert!(
        v["workloads"]
            .as_array()
            .unwrap()
            .iter()
            .all(|w| w["status"] == "Running")
    );
    let table = stdout(&up.cli(&["get", "workloads"]));
    assert!(
        table.contains("NAME") && table.contains("hello-a"),
        "{table}"
    );

    // Restart: desired state comes back from the data dir.
    up.stop();
    let up = Up::start(&data);
    assert_eq!(up.get("a.localhost", "/").text(), "Hello from weft!\n");
    assert_eq!(up.get("b.localhost", "/").text(), "Hello from weft p3!\n");

    // Delete: the route goes away.
    let out = up.cli(&["delete", "workload", "p3-b"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(up.get("b.localhost", "/").status, 404);
}

#[test]
fn admin_api_requires_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let up = Up::start(&dir.path().join("data"));
    let addr = std::fs::read_to_string(up.data_dir.join("admin-addr")).unwrap();
    let addr: std::net::SocketAddr = addr.trim().parse().unwrap();
    let r = request(addr, "GET", "/v1/workloads", &[], b"");
    assert_eq!(r.status, 401);
    let r = request(
        addr,
        "GET",
        "/v1/workloads",
        &[("Authorization", "Bearer wrong")],
        b"",
    );
    assert_eq!(r.status, 401);
    let token = std::fs::read_to_string(up.data_dir.join("admin-token")).unwrap();
    let auth = format!("Bearer {}", token.trim());
    let r = request(
        addr,
        "GET",
        "/v1/workloads",
        &[("Authorization", &auth)],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let r = request(
        addr,
        "DELETE",
        "/v1/workloads",
        &[("Authorization", "Bearer x")],
        b"",
    );
    assert_eq!(r.status, 401);
}

#[test]
fn bad_update_is_refused_and_the_old_version_keeps_serving_without_failed_requests() {
    let dir = tempfile::tempdir().unwrap();
    let up = Up::start(&dir.path().join("data"));
    let hello = guest("http-hello.wasm");
    let good = write(
        dir.path(),
        "w.yaml",
        &manifest("swap", &hello, "swap.localhost", "/", ""),
    );
    deploy_ok(&up, &good);

    // Bounded concurrent load while we update: 4 clients x 150 requests.
    let http = up.http;
    let load: Vec<_> = (0..4)
        .map(|_| {
            std::thread::spawn(move || {
                let mut failures = 0;
                for _ in 0..150 {
                    let r = request(http, "GET", "/", &[("Host", "swap.localhost")], b"");
                    if r.status != 200 {
                        failures += 1;
                    }
                }
                failures
            })
        })
        .collect();

    // A manifest that fails validation.
    let bad = write(
        dir.path(),
        "bad.yaml",
        &manifest(
            "swap",
            &dir.path().join("missing.wasm"),
            "swap.localhost",
            "/",
            "",
        ),
    );
    let out = up.cli(&["deploy", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("missing.wasm"), "{}", stderr(&out));
    // A manifest that is valid but whose component cannot be served (not an HTTP handler).
    let wrong = write(
        dir.path(),
        "wrong.yaml",
        &manifest("swap", &wat_fixture("add.wat"), "swap.localhost", "/", ""),
    );
    let out = up.cli(&["deploy", wrong.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("no component exports a wasi:http handler")
            || stderr(&out).contains("handler"),
        "{}",
        stderr(&out)
    );
    // Good updates swap atomically.
    for i in 0..3 {
        let text = manifest(
            "swap",
            &hello,
            "swap.localhost",
            "/",
            &format!("        config: {{ v: \"{i}\" }}\n"),
        );
        let next = write(dir.path(), "w.yaml", &text);
        deploy_ok(&up, &next);
    }
    let failures: usize = load.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(failures, 0, "no request may fail during updates");
    let v: serde_json::Value =
        serde_json::from_slice(&up.cli(&["get", "workload", "swap", "-o", "json"]).stdout).unwrap();
    assert_eq!(v["version"], 4, "{v}");
    assert_eq!(v["status"], "Running");
}

#[test]
fn looping_guest_is_cut_off_while_others_keep_serving() {
    let dir = tempfile::tempdir().unwrap();
    let up = Up::start(&dir.path().join("data"));
    let hello = guest("http-hello.wasm");
    let slow = write(
        dir.path(),
        "slow.yaml",
        &manifest(
            "looper",
            &hello,
            "loop.localhost",
            "/",
            "        timeoutMs: 500\n",
        ),
    );
    let ok = write(
        dir.path(),
        "ok.yaml",
        &manifest("steady", &hello, "ok.localhost", "/", ""),
    );
    deploy_ok(&up, &slow);
    deploy_ok(&up, &ok);
    let http = up.http;
    let looping = std::thread::spawn(move || {
        request(http, "GET", "/loop", &[("Host", "loop.localhost")], b"")
    });
    for _ in 0..10 {
        assert_eq!(up.get("ok.localhost", "/").status, 200);
    }
    let r = looping.join().unwrap();
    assert_eq!(r.status, 504, "{}", r.text());
    assert_eq!(up.get("loop.localhost", "/").status, 200);
}

#[test]
fn ungranted_import_is_refused_with_the_grant_that_would_allow_it() {
    let dir = tempfile::tempdir().unwrap();
    let up = Up::start(&dir.path().join("data"));
    let m = write(
        dir.path(),
        "kv.yaml",
        &manifest(
            "needs-kv",
            &wat_fixture("needs-kv.wat"),
            "kv.localhost",
            "/",
            "",
        ),
    );
    let out = up.cli(&["deploy", m.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("wasi:keyvalue/store@0.2.0-draft"), "{err}");
    assert!(
        err.contains("namespace: wasi, package: keyvalue, interfaces: [store]"),
        "{err}"
    );
    assert!(err.contains("spec.components[0]"), "{err}");
}

#[test]
fn guest_output_reaches_weft_logs() {
    let dir = tempfile::tempdir().unwrap();
    let up = Up::start(&dir.path().join("data"));
    let m = write(
        dir.path(),
        "l.yaml",
        &manifest(
            "chatty",
            &guest("http-hello.wasm"),
            "chatty.localhost",
            "/",
            "",
        ),
    );
    deploy_ok(&up, &m);
    assert_eq!(up.get("chatty.localhost", "/stdout").status, 200);
    let out = up.cli(&["logs", "chatty"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("guest stdout line"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn weft_logs_follow_streams_new_lines() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let up = Up::start(&dir.path().join("data"));
    let m = write(
        dir.path(),
        "f.yaml",
        &manifest(
            "follow",
            &guest("http-hello.wasm"),
            "follow.localhost",
            "/",
            "",
        ),
    );
    deploy_ok(&up, &m);
    // One line before following: `-f` prints it from the buffer first.
    assert_eq!(up.get("follow.localhost", "/stdout").status, 200);
    let mut child = weft()
        .args(["logs", "follow", "-f", "--data-dir"])
        .arg(&up.data_dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("weft logs -f");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // Lines written after `-f` started must arrive while it runs (the two buffered ones, stdout
    // and stderr, plus at least
    // one new one). Keep asking: the follower may subscribe a moment after it starts.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut count = 0;
    while count < 3 && std::time::Instant::now() < deadline {
        assert_eq!(up.get("follow.localhost", "/stdout").status, 200);
        while let Ok(line) = rx.recv_timeout(std::time::Duration::from_millis(300)) {
            if line.contains("guest stdout line") {
                count += 1;
            }
        }
    }
    let seen = count >= 3;
    let still_running = child.try_wait().expect("try_wait").is_none();
    let _ = child.kill();
    let _ = child.wait();
    assert!(seen, "weft logs -f never printed the new guest line");
    assert!(still_running, "weft logs -f exited instead of following");
}

fn kv_manifest(name: &str, backend: &str) -> String {
    format!(
        "apiVersion: weft.dev/v1alpha1\nkind: Workload\nmetadata:\n  name: {name}\nspec:\n  components:\n    - name: counter\n      image: {}\n  hostInterfaces:\n    - namespace: wasi\n      package: http\n      interfaces: [incoming-handler]\n      config: {{ host: {name}.localhost, path: / }}\n    - namespace: wasi\n      package: keyvalue\n      interfaces: [store, atomics]\n      config: {{ backend: {backend} }}\n",
        guest("kv-counter.wasm").display()
    )
}

#[test]
fn keyvalue_counter_survives_a_restart_with_redb_and_not_with_memory() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let up = Up::start(&data);
    let durable = write(dir.path(), "durable.yaml", &kv_manifest("durable", "redb"));
    let volatile = write(
        dir.path(),
        "volatile.yaml",
        &kv_manifest("volatile", "memory"),
    );
    deploy_ok(&up, &durable);
    deploy_ok(&up, &volatile);
    for i in 1..=3 {
        assert_eq!(
            up.get("durable.localhost", "/").text(),
            format!("count={i}\n")
        );
        assert_eq!(
            up.get("volatile.localhost", "/").text(),
            format!("count={i}\n")
        );
    }
    // A workload can only open its own bucket.
    let r = up.get("durable.localhost", "/other-bucket");
    assert_eq!(r.status, 403, "{}", r.text());

    up.stop();
    let up = Up::start(&data);
    assert_eq!(
        up.get("durable.localhost", "/").text(),
        "count=4\n",
        "redb persists"
    );
    assert_eq!(
        up.get("volatile.localhost", "/").text(),
        "count=1\n",
        "memory does not"
    );
}

#[test]
fn keyvalue_import_without_the_grant_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let up = Up::start(&dir.path().join("data"));
    let m = write(
        dir.path(),
        "nokv.yaml",
        &manifest("nokv", &guest("kv-counter.wasm"), "nokv.localhost", "/", ""),
    );
    let out = up.cli(&["deploy", m.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("wasi:keyvalue/store"), "{err}");
    assert!(err.contains("package: keyvalue"), "{err}");
    assert_eq!(
        up.get("nokv.localhost", "/").status,
        404,
        "nothing was deployed"
    );
}
