//! A WASI 0.3 service as the workload's HTTP front door (`spec.service.serveHttp`): one
//! long-lived instance runs `wasi:cli/run@0.3` in the background and serves every request of
//! the workload's route concurrently, so its memory is the workload's state; it restarts with
//! backoff after a trap and fails after `maxRestarts`. Real `weft up`, the real `svc-front`
//! guest, real loopback HTTP.
// Test code: a failed unwrap is a test failure with a location (docs/lints.md).
#![allow(clippy::unwrap_used)]

mod common;
use common::up::Up;
use common::*;
use std::io::Write;
use std::time::{Duration, Instant};

fn front(name: &str, max_restarts: u32, extra: &str) -> String {
    format!(
        "apiVersion: weft.dev/v1alpha1\nkind: Workload\nmetadata:\n  name: {name}\nspec:\n  service:\n    name: front\n    image: {svc}\n    serveHttp: true\n    maxConcurrency: 8\n    maxRestarts: {max_restarts}\n    localResources:\n      timeoutMs: 1500\n{extra}  hostInterfaces:\n    - {{ namespace: wasi, package: http, interfaces: [incoming-handler], config: {{ host: {name}.localhost, path: / }} }}\n",
        svc = guest("svc-front.wasm").display(),
    )
}

fn get(up: &Up, name: &str, path: &str) -> Response {
    up.get(&format!("{name}.localhost"), path)
}

fn get_json(up: &Up, name: &str) -> serde_json::Value {
    let out = up.cli(&["get", "workload", name, "-o", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_str(&stdout(&out)).expect("json")
}

/// `count=N ticks=T` -> (N, T).
fn count_ticks(text: &str) -> (u64, u64) {
    let mut n = None;
    let mut t = None;
    for part in text.split_whitespace() {
        if let Some(v) = part.strip_prefix("count=") {
            n = v.parse().ok();
        }
        if let Some(v) = part.strip_prefix("ticks=") {
            t = v.parse().ok();
        }
    }
    (n.expect(text), t.unwrap_or(0))
}

/// Polls `/count` until it answers 200; returns the answer and every other status seen.
fn wait_for_count(up: &Up, name: &str) -> (String, Vec<u16>) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut others = Vec::new();
    loop {
        let r = get(up, name, "/count");
        if r.status == 200 {
            return (r.text(), others);
        }
        others.push(r.status);
        assert!(Instant::now() < deadline, "no 200 in time: {others:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn front_door_keeps_state_across_concurrent_requests_while_run_ticks() {
    let dir = tempfile::tempdir().unwrap();
    let up = Up::start(&dir.path().join("data"));
    up.deploy_ok(&write(dir.path(), "app", &front("app", 3, "")));

    // One instance: the counter persists across requests.
    let first = get(&up, "app", "/count");
    assert_eq!(first.status, 200, "{}", first.text());
    let (n1, t1) = count_ticks(&first.text());
    let (n2, _) = count_ticks(&get(&up, "app", "/count").text());
    assert_eq!((n1, n2), (1, 2));
    // `run` is a task of the same instance, ticking in the background between requests.
    std::thread::sleep(Duration::from_millis(300));
    let (n3, t3) = count_ticks(&get(&up, "app", "/count").text());
    assert_eq!(n3, 3);
    assert!(
        t3 >= t1 + 5,
        "run did not tick between requests: {t1} -> {t3}"
    );

    // Six requests that each wait 600 ms on a timer are served concurrently by that instance.
    let started = Instant::now();
    let workers: Vec<_> = (0..6)
        .map(|_| {
            let addr = up.http;
            std::thread::spawn(move || {
                request(
                    addr,
                    "GET",
                    "/wait?ms=600",
                    &[("Host", "app.localhost")],
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
            count_ticks(&r.text()).0
        })
        .collect();
    let elapsed = started.elapsed();
    counts.sort_unstable();
    assert_eq!(counts, vec![4, 5, 6, 7, 8, 9]);
    assert!(
        elapsed < Duration::from_millis(2500),
        "six 600 ms requests took {elapsed:?}: not concurrent"
    );

    // Bodies stream through the service.
    let echoed = request(
        up.http,
        "POST",
        "/echo",
        &[("Host", "app.localhost")],
        b"hello front door",
    );
    assert_eq!(echoed.status, 200);
    assert_eq!(echoed.text(), "hello front door");

    // A body declared larger than the host accepts is refused before the service sees it.
    let mut s = std::net::TcpStream::connect(up.http).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(
        b"POST /echo HTTP/1.1\r\nHost: app.localhost\r\nConnection: close\r\nContent-Length: 999999999999\r\n\r\n",
    )
    .unwrap();
    assert_eq!(read_response(&mut s).status, 413);

    // A request past its deadline (timeoutMs 1500) gets 504; the instance and its state stay.
    let started = Instant::now();
    let slow = get(&up, "app", "/wait?ms=5000");
    assert_eq!(slow.status, 504, "{}", slow.text());
    assert!(started.elapsed() < Duration::from_secs(4));
    let (n, _) = count_ticks(&get(&up, "app", "/count").text());
    assert_eq!(n, 10, "state was lost after a timeout");

    let info = get_json(&up, "app");
    assert_eq!(info["status"], "Running", "{info}");
    assert_eq!(info["service"]["status"], "Running", "{info}");
    assert_eq!(info["service"]["serveHttp"], true, "{info}");
    assert_eq!(info["service"]["restarts"], 0, "{info}");
    assert_eq!(info["routes"][0]["host"], "app.localhost", "{info}");
}

#[test]
fn front_door_restarts_after_a_trap_then_fails_after_max_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let up = Up::start(&dir.path().join("data"));
    up.deploy_ok(&write(dir.path(), "flaky", &front("flaky", 1, "")));
    assert_eq!(count_ticks(&get(&up, "flaky", "/count").text()).0, 1);
    assert_eq!(count_ticks(&get(&up, "flaky", "/count").text()).0, 2);

    // The trapping request fails alone (the host is fine); the instance restarts fresh.
    let trap = get(&up, "flaky", "/trap");
    assert_eq!(trap.status, 500, "{}", trap.text());
    let (text, others) = wait_for_count(&up, "flaky");
    assert_eq!(count_ticks(&text).0, 1, "a restart starts from fresh state");
    // The backoff is 100 ms: the requests sent meanwhile get 503, never a hang or a 500.
    assert!(
        !others.is_empty() && others.iter().all(|s| *s == 503),
        "requests during the restart: {others:?}"
    );
    let info = get_json(&up, "flaky");
    assert_eq!(info["service"]["restarts"], 1, "{info}");
    assert_eq!(info["service"]["status"], "Running", "{info}");

    // The second trap uses up maxRestarts: Failed with the last error, and 503 from then on.
    assert_eq!(get(&up, "flaky", "/trap").status, 500);
    let deadline = Instant::now() + Duration::from_secs(10);
    let info = loop {
        let info = get_json(&up, "flaky");
        if info["status"] == "Failed" || Instant::now() > deadline {
            break info;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(info["status"], "Failed", "{info}");
    assert_eq!(info["service"]["status"], "Failed", "{info}");
    assert!(
        info["error"]
            .as_str()
            .unwrap_or("")
            .contains("service front: the service trapped"),
        "{info}"
    );
    let after = get(&up, "flaky", "/count");
    assert_eq!(after.status, 503, "{}", after.text());
    // The public body is generic (no error text leaks to clients); the reason is in
    // `weft get` (above) and the logs, tied to the request id.
    assert!(after.text().contains("request id"), "{}", after.text());
    assert!(!after.text().contains("trapped"), "{}", after.text());
    let logs = stdout(&up.cli(&["logs", "flaky"]));
    assert!(logs.contains("restarting in 100ms (1/1)"), "{logs}");
    assert!(logs.contains("giving up after 1 restarts"), "{logs}");
}

#[test]
fn a_request_busy_past_its_deadline_is_cut_off_and_the_instance_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let up = Up::start(&dir.path().join("data"));
    up.deploy_ok(&write(dir.path(), "busy", &front("busy", 3, "")));
    assert_eq!(count_ticks(&get(&up, "busy", "/count").text()).0, 1);
    let started = Instant::now();
    let spin = get(&up, "busy", "/spin");
    let cut = started.elapsed();
    assert_eq!(spin.status, 504, "{}", spin.text());
    // Cut at the deadline (timeoutMs: 1500), not at the watchdog's.
    let deadline = Duration::from_millis(1500);
    assert!(
        cut >= deadline - Duration::from_millis(50) && cut <= deadline + Duration::from_millis(300),
        "cut at {cut:?}"
    );
    // The watchdog stops the instance that would not yield; the next one starts fresh.
    let (text, _) = wait_for_count(&up, "busy");
    assert_eq!(count_ticks(&text).0, 1, "{text}");
    let logs = stdout(&up.cli(&["logs", "busy"]));
    assert!(logs.contains("ran past its timeout"), "{logs}");
    assert_eq!(get_json(&up, "busy")["service"]["restarts"], 1);
}

/// A request that awaits past its deadline (no CPU) is cut at the deadline with 504, and the
/// service's instance is kept: it is the workload's state, and an awaiting task blocks nobody
/// (docs/service.md). Its neighbours are served meanwhile and afterwards, from the same state.
#[test]
fn a_request_awaiting_past_its_deadline_is_cut_off_and_the_instance_kept() {
    let dir = tempfile::tempdir().unwrap();
    let up = Up::start(&dir.path().join("data"));
    up.deploy_ok(&write(dir.path(), "idle", &front("idle", 3, "")));
    assert_eq!(count_ticks(&get(&up, "idle", "/count").text()).0, 1);
    let started = Instant::now();
    let host = up.http;
    let slow = std::thread::spawn(move || {
        let r = request(
            host,
            "GET",
            "/wait?ms=600000",
            &[("Host", "idle.localhost")],
            b"",
        );
        (r.status, started.elapsed())
    });
    std::thread::sleep(Duration::from_millis(300));
    let neighbour = Instant::now();
    assert_eq!(count_ticks(&get(&up, "idle", "/count").text()).0, 2);
    assert!(neighbour.elapsed() < Duration::from_millis(500));
    let (status, cut) = slow.join().unwrap();
    assert_eq!(status, 504);
    let deadline = Duration::from_millis(1500);
    assert!(
        cut >= deadline - Duration::from_millis(50) && cut <= deadline + Duration::from_millis(300),
        "cut at {cut:?}"
    );
    // Past the watchdog's grace too: the instance and its state are kept.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(count_ticks(&get(&up, "idle", "/count").text()).0, 3);
    assert_eq!(get_json(&up, "idle")["service"]["restarts"], 0);
}

#[test]
fn delete_drains_requests_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let up = Up::start(&dir.path().join("data"));
    up.deploy_ok(&write(dir.path(), "drain", &front("drain", 3, "")));
    assert_eq!(get(&up, "drain", "/count").status, 200);
    let addr = up.http;
    // A request still waiting in the instance, and a response whose body is still streaming
    // (its headers came back at once; a line every 150 ms follows).
    let in_flight = std::thread::spawn(move || {
        request(
            addr,
            "GET",
            "/wait?ms=800",
            &[("Host", "drain.localhost")],
            b"",
        )
    });
    let streaming = std::thread::spawn(move || {
        request(
            addr,
            "GET",
            "/drip?n=8&ms=150",
            &[("Host", "drain.localhost")],
            b"",
        )
    });
    std::thread::sleep(Duration::from_millis(250));
    let out = up.cli(&["delete", "workload", "drain"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(get(&up, "drain", "/count").status, 404);
    let r = in_flight.join().unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), "count=2");
    let r = streaming.join().unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let want: String = (0..8).map(|i| format!("chunk {i}\n")).collect();
    assert_eq!(r.text(), want, "the body was cut off by the delete");
}

#[test]
fn deploys_refuse_a_front_door_that_cannot_serve() {
    let dir = tempfile::tempdir().unwrap();
    let up = Up::start(&dir.path().join("data"));
    let deploy_err = |name: &str, text: &str| {
        let out = up.cli(&["deploy", write(dir.path(), name, text).to_str().unwrap()]);
        assert!(!out.status.success(), "{name} deployed");
        format!("{}{}", stdout(&out), stderr(&out))
    };

    // A WASI 0.2 command cannot be the front door.
    let p2 = front("p2", 0, "").replace(
        guest("svc-front.wasm").to_str().unwrap(),
        guest("svc-counter.wasm").to_str().unwrap(),
    );
    let err = deploy_err("p2", &p2);
    assert!(
        err.contains("spec.service.serveHttp: the service must export wasi:http/handler@0.3"),
        "{err}"
    );

    // A P3 handler without run needs serveHttp to have anything to do.
    let handler_only = format!(
        "apiVersion: weft.dev/v1alpha1\nkind: Workload\nmetadata:\n  name: idle\nspec:\n  service:\n    name: svc\n    image: {}\n  hostInterfaces:\n    - {{ namespace: wasi, package: http, interfaces: [outgoing-handler] }}\n",
        guest("p3-service.wasm").display()
    );
    let err = deploy_err("idle", &handler_only);
    assert!(err.contains("set `spec.service.serveHttp: true`"), "{err}");

    // Two handlers for one route are refused, naming both.
    let both = format!(
        "{}  components:\n    - name: web\n      image: {}\n",
        front("both", 0, ""),
        guest("http-hello.wasm").display()
    );
    let err = deploy_err("both", &both);
    assert!(
        err.contains("the service `front` is the workload's HTTP front door")
            && err.contains("component `web`"),
        "{err}"
    );

    // Without serveHttp, svc-front is a WASI 0.3 background service (run@0.3) next to a
    // component that serves the route.
    let background = format!(
        "apiVersion: weft.dev/v1alpha1\nkind: Workload\nmetadata:\n  name: bg\nspec:\n  components:\n    - name: web\n      image: {web}\n  service:\n    name: ticker\n    image: {svc}\n  hostInterfaces:\n    - {{ namespace: wasi, package: http, interfaces: [incoming-handler], config: {{ host: bg.localhost, path: / }} }}\n",
        web = guest("http-hello.wasm").display(),
        svc = guest("svc-front.wasm").display(),
    );
    up.deploy_ok(&write(dir.path(), "bg", &background));
    let r = get(&up, "bg", "/");
    assert_eq!(r.status, 200, "{}", r.text());
    let info = get_json(&up, "bg");
    assert_eq!(info["service"]["status"], "Running", "{info}");
    assert_eq!(info["service"]["serveHttp"], false, "{info}");
}

#[test]
fn an_update_drains_the_old_instance_and_starts_a_fresh_one() {
    let dir = tempfile::tempdir().unwrap();
    let up = Up::start(&dir.path().join("data"));
    up.deploy_ok(&write(dir.path(), "upd", &front("upd", 3, "")));
    assert_eq!(count_ticks(&get(&up, "upd", "/count").text()).0, 1);
    assert_eq!(count_ticks(&get(&up, "upd", "/count").text()).0, 2);
    let addr = up.http;
    let streaming = std::thread::spawn(move || {
        request(
            addr,
            "GET",
            "/drip?n=6&ms=150",
            &[("Host", "upd.localhost")],
            b"",
        )
    });
    std::thread::sleep(Duration::from_millis(200));
    up.deploy_ok(&write(dir.path(), "upd2", &front("upd", 4, "")));
    // The new version has its own instance (fresh state)...
    assert_eq!(count_ticks(&get(&up, "upd", "/count").text()).0, 1);
    assert_eq!(get_json(&up, "upd")["version"], 2);
    // ...while the old one finished the body it was streaming.
    let r = streaming.join().unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let want: String = (0..6).map(|i| format!("chunk {i}\n")).collect();
    assert_eq!(r.text(), want);
}

#[test]
fn max_concurrency_caps_the_requests_in_the_instance() {
    let dir = tempfile::tempdir().unwrap();
    let up = Up::start(&dir.path().join("data"));
    let capped = front("cap", 3, "").replace("maxConcurrency: 8", "maxConcurrency: 2");
    up.deploy_ok(&write(dir.path(), "cap", &capped));
    assert_eq!(get(&up, "cap", "/count").status, 200);
    // Four 500 ms requests, two at a time: two rounds.
    let started = Instant::now();
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let addr = up.http;
            std::thread::spawn(move || {
                request(
                    addr,
                    "GET",
                    "/wait?ms=500",
                    &[("Host", "cap.localhost")],
                    b"",
                )
            })
        })
        .collect();
    for w in workers {
        let r = w.join().unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(1000),
        "four requests with maxConcurrency 2 took only {elapsed:?}"
    );
    assert!(elapsed < Duration::from_millis(1900), "{elapsed:?}");
}
