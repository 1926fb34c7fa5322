//! A WASI 0.3 service as a provider: the workload's components import interfaces the service
//! exports (`example:svc/counter@0.1.0`), and each call is forwarded into the service's one
//! long-lived instance. Real `weft up`, the real `svc-store` service and `svc-client` HTTP
//! component, real loopback HTTP.
// Test code: a failed unwrap is a test failure with a location (docs/lints.md).
#![allow(clippy::unwrap_used)]

mod common;
use common::up::Up;
use common::*;
use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

/// A workload: the `store` service, the `web` component (svc-client) on NAME.localhost, and
/// `extra` appended under `spec.components`.
fn workload(name: &str, service_image: &Path, max_restarts: u32, extra: &str) -> String {
    format!(
        "apiVersion: weft.dev/v1alpha1\nkind: Workload\nmetadata:\n  name: {name}\nspec:\n  service:\n    name: store\n    image: {svc}\n    maxConcurrency: 4\n    maxRestarts: {max_restarts}\n  components:\n    - name: web\n      image: {web}\n      localResources:\n        timeoutMs: 5000\n{extra}  hostInterfaces:\n    - {{ namespace: wasi, package: http, interfaces: [incoming-handler], config: {{ host: {name}.localhost, path: / }} }}\n",
        svc = service_image.display(),
        web = guest("svc-client.wasm").display(),
    )
}

fn get(up: &Up, name: &str, path: &str) -> Response {
    up.get(&format!("{name}.localhost"), path)
}

fn ok(up: &Up, name: &str, path: &str) -> String {
    let r = get(up, name, path);
    assert_eq!(r.status, 200, "{path}: {}", r.text());
    r.text()
}

fn count(text: &str) -> u64 {
    text.strip_prefix("count=")
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("not a count: {text:?}"))
}

fn get_json(up: &Up, name: &str) -> serde_json::Value {
    let out = up.cli(&["get", "workload", name, "-o", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_str(&stdout(&out)).expect("json")
}

#[test]
fn components_share_the_services_state_through_its_exported_interface() {
    let dir = tempfile::tempdir().unwrap();
    let up = Up::start(&dir.path().join("data"));
    let manifest = write(
        dir.path(),
        "calls",
        &workload("calls", &guest("svc-store.wasm"), 3, ""),
    );
    up.deploy_ok(&manifest);

    // Every request gets a fresh instance of `web`; the count lives in the service.
    assert_eq!(count(&ok(&up, "calls", "/get")), 0);
    assert_eq!(count(&ok(&up, "calls", "/incr?by=5")), 5);
    assert_eq!(count(&ok(&up, "calls", "/incr")), 6);
    assert_eq!(count(&ok(&up, "calls", "/get")), 6);

    // Strings, lists, records, options and results cross both ways.
    assert_eq!(ok(&up, "calls", "/stats"), "count=6 notes=0 last=-");
    assert_eq!(ok(&up, "calls", "/note?s=hello"), "hello");
    assert_eq!(
        ok(&up, "calls", "/note?s=w%C3%B6rld%20%E2%9C%93"),
        "hello\nwörld ✓"
    );
    let long = "x".repeat(5000);
    let notes = ok(&up, "calls", &format!("/note?s={long}"));
    assert_eq!(notes, format!("hello\nwörld ✓\n{long}"));
    assert_eq!(
        ok(&up, "calls", "/stats"),
        format!("count=6 notes=3 last={long}")
    );
    assert_eq!(ok(&up, "calls", "/check?n=4"), "ok 4");
    assert_eq!(ok(&up, "calls", "/check?n=7"), "err odd: 7");

    // 10 clients, 5 increments each, at once: every increment lands exactly once.
    let workers: Vec<_> = (0..10)
        .map(|_| {
            let addr = up.http;
            std::thread::spawn(move || {
                (0..5)
                    .map(|_| {
                        let r = request(
                            addr,
                            "GET",
                            "/incr?by=1",
                            &[("Host", "calls.localhost")],
                            b"",
                        );
                        assert_eq!(r.status, 200, "{}", r.text());
                        count(&r.text())
                    })
                    .collect::<Vec<u64>>()
            })
        })
        .collect();
    let seen: BTreeSet<u64> = workers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    assert_eq!(seen, (7..=56).collect::<BTreeSet<u64>>());
    assert_eq!(count(&ok(&up, "calls", "/get")), 56);

    let info = get_json(&up, "calls");
    assert_eq!(info["status"], "Running", "{info}");
    assert_eq!(info["service"]["status"], "Running", "{info}");
    assert_eq!(info["service"]["restarts"], 0, "{info}");

    // `weft inspect MANIFEST` names the service as the provider.
    let out = run_weft(&["inspect", manifest.to_str().unwrap()]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}{}", stderr(&out));
    assert!(
        text.lines().any(|l| l.contains("example:svc/counter@0.1.0")
            && l.trim_end().ends_with("<- service store")),
        "{text}"
    );
    assert!(
        text.contains("exports for components: example:svc/counter@0.1.0"),
        "{text}"
    );
}

#[test]
fn a_call_while_the_service_restarts_fails_cleanly_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let up = Up::start(&dir.path().join("data"));
    up.deploy_ok(&write(
        dir.path(),
        "flaky",
        &workload("flaky", &guest("svc-store.wasm"), 2, ""),
    ));
    assert_eq!(count(&ok(&up, "flaky", "/incr?by=3")), 3);

    // The call that traps the service fails its request (500), promptly.
    let started = Instant::now();
    let crash = get(&up, "flaky", "/crash");
    assert_eq!(crash.status, 500, "{}", crash.text());
    assert!(started.elapsed() < Duration::from_secs(3));

    // While it restarts (100 ms backoff), calls fail at once with 500 naming the state; then
    // the fresh instance answers from fresh state.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut failures = Vec::new();
    let recovered = loop {
        let started = Instant::now();
        let r = get(&up, "flaky", "/get");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "a call during the restart waited {:?}",
            started.elapsed()
        );
        if r.status == 200 {
            break r.text();
        }
        failures.push((r.status, r.text()));
        assert!(Instant::now() < deadline, "no recovery: {failures:?}");
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(count(&recovered), 0, "a restart starts from fresh state");
    assert!(!failures.is_empty(), "no call saw the restart");
    for (status, text) in &failures {
        assert_eq!(*status, 500, "{text}");
    }
    // The P2 handler's trap reaches its client as a plain 500; the reason is in the logs.
    let logs = stdout(&up.cli(&["logs", "flaky"]));
    assert!(
        logs.contains("the workload's service `store` failed in `example:svc/counter@0.1.0#crash`: its instance failed: error while executing"),
        "{logs}"
    );
    assert!(
        logs.contains("the workload's service `store` is not serving calls: it is Restarting after: the service trapped"),
        "{logs}"
    );
    assert_eq!(count(&ok(&up, "flaky", "/incr?by=2")), 2);
    let info = get_json(&up, "flaky");
    assert_eq!(info["service"]["restarts"], 1, "{info}");
    assert_eq!(info["service"]["status"], "Running", "{info}");

    // Used up (maxRestarts 2): Failed, and every call fails at once naming it.
    assert_eq!(get(&up, "flaky", "/crash").status, 500);
    std::thread::sleep(Duration::from_millis(600));
    let _ = get(&up, "flaky", "/crash");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let info = get_json(&up, "flaky");
        if info["service"]["status"] == "Failed" {
            break;
        }
        let _ = get(&up, "flaky", "/crash");
        assert!(Instant::now() < deadline, "{info}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let started = Instant::now();
    let r = get(&up, "flaky", "/get");
    assert_eq!(r.status, 500, "{}", r.text());
    assert!(started.elapsed() < Duration::from_secs(3));
    let logs = stdout(&up.cli(&["logs", "flaky"]));
    assert!(
        logs.contains("is not serving calls: it is Failed after: the service trapped"),
        "{logs}"
    );
}

#[test]
fn deploys_refuse_what_the_service_cannot_provide() {
    let dir = tempfile::tempdir().unwrap();
    let up = Up::start(&dir.path().join("data"));
    let deploy_err = |name: &str, text: &str| {
        let out = up.cli(&["deploy", write(dir.path(), name, text).to_str().unwrap()]);
        assert!(!out.status.success(), "{name} deployed");
        format!("{}{}", stdout(&out), stderr(&out))
    };
    let fake = format!(
        "    - name: fake\n      image: {}\n",
        wat_fixture("svc-p2-counter.wat").display()
    );

    // A component and the service both export the counter: ambiguous...
    let err = deploy_err("amb", &workload("amb", &guest("svc-store.wasm"), 0, &fake));
    assert!(
        err.contains(
            "component `web` imports `example:svc/counter@0.1.0`, which is exported by `fake` \
             and `store` (`store` is the workload's service); the link is ambiguous"
        ),
        "{err}"
    );
    // ...unless `links` names one: here the service, by its name.
    let chosen = workload("amb", &guest("svc-store.wasm"), 0, &fake).replace(
        "      localResources:\n        timeoutMs: 5000\n",
        "      localResources:\n        timeoutMs: 5000\n      links: { \"example:svc/counter\": store }\n",
    );
    up.deploy_ok(&write(dir.path(), "amb-links", &chosen));
    assert_eq!(count(&ok(&up, "amb", "/incr?by=4")), 4);

    // A WASI 0.2 service's `run` holds its instance: it cannot serve calls.
    let err = deploy_err(
        "p2svc",
        &workload("p2svc", &wat_fixture("svc-p2-counter.wat"), 0, ""),
    );
    assert!(
        err.contains(
            "component `web` imports `example:svc/counter@0.1.0` from the workload's service \
             `store`, which is a WASI 0.2 command"
        ) && err.contains("hint: build the service for WASI 0.3"),
        "{err}"
    );

    // An interface whose functions carry a resource handle is refused, naming the function
    // and the type.
    let cells = format!(
        "apiVersion: weft.dev/v1alpha1\nkind: Workload\nmetadata:\n  name: cells\nspec:\n  service:\n    name: store\n    image: {}\n  components:\n    - name: cells\n      image: {}\n",
        guest("svc-store.wasm").display(),
        wat_fixture("cells-consumer.wat").display()
    );
    let err = deploy_err("cells", &cells);
    assert!(
        err.contains(
            "component `cells` imports `example:svc/cells@0.1.0` from the workload's service \
             `store`, but its function `make` returns `own<cell>`"
        ),
        "{err}"
    );
    let out = up.cli(&["get", "workloads"]);
    let list = stdout(&out);
    assert!(!list.contains("cells") && !list.contains("p2svc"), "{list}");
}

#[test]
fn invoke_refuses_a_call_that_needs_the_service() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = write(
        dir.path(),
        "loop",
        &format!(
            "apiVersion: weft.dev/v1alpha1\nkind: Workload\nmetadata:\n  name: loop\nspec:\n  service:\n    name: store\n    image: {}\n  components:\n    - name: caller\n      image: {}\n",
            guest("svc-store.wasm").display(),
            wat_fixture("svc-get-loop.wat").display()
        ),
    );
    let out = run_weft(&["run", manifest.to_str().unwrap(), "--invoke", "get-n(3)"]);
    let err = format!("{}{}", stdout(&out), stderr(&out));
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains(
            "component `caller` imports `example:svc/counter@0.1.0` from the workload's service \
             `store`, which `weft run MANIFEST --invoke` does not start"
        ),
        "{err}"
    );
}

#[test]
fn a_p3_handler_calls_the_service_and_max_concurrency_caps_its_calls() {
    let dir = tempfile::tempdir().unwrap();
    let up = Up::start(&dir.path().join("data"));
    let manifest = workload("p3", &guest("svc-store.wasm"), 3, "")
        .replace(
            guest("svc-client.wasm").to_str().unwrap(),
            guest("svc-client-p3.wasm").to_str().unwrap(),
        )
        .replace("maxConcurrency: 4", "maxConcurrency: 2");
    up.deploy_ok(&write(dir.path(), "p3", &manifest));
    assert_eq!(count(&ok(&up, "p3", "/incr?by=2")), 2);
    assert_eq!(count(&ok(&up, "p3", "/get")), 2);

    // `wait` is an `async func`: four 400 ms waits, at most two in the service at once
    // (maxConcurrency 2): two rounds.
    let started = Instant::now();
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let addr = up.http;
            std::thread::spawn(move || {
                request(
                    addr,
                    "GET",
                    "/wait?ms=400",
                    &[("Host", "p3.localhost")],
                    b"",
                )
            })
        })
        .collect();
    let mut counts: Vec<u64> = workers
        .into_iter()
        .map(|w| {
            let r = w.join().unwrap();
            assert_eq!(r.status, 200, "{}", r.text());
            count(&r.text())
        })
        .collect();
    let elapsed = started.elapsed();
    counts.sort_unstable();
    assert_eq!(counts, vec![3, 4, 5, 6]);
    assert!(
        elapsed >= Duration::from_millis(800),
        "four 400 ms calls with maxConcurrency 2 took only {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_millis(2000),
        "not concurrent: {elapsed:?}"
    );
}
