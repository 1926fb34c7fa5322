//! The dashboard (`/ui` on the admin address) and the Prometheus endpoint, end to end: a real
//! `weft up`, real guests, real loopback HTTP, and the page in headless Chromium (Debian's
//! chromium + chromedriver over WebDriver). See docs/observability.md.
// Test code: a failed unwrap is a test failure with a location (docs/lints.md).
#![allow(clippy::unwrap_used)]

#[path = "common/chromium.rs"]
mod chromium;
mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use chromium::Browser;
use common::*;
use fantoccini::Locator;

fn hello_manifest(dir: &Path, name: &str, image: &Path) -> std::path::PathBuf {
    write(
        dir,
        name,
        &format!(
            "apiVersion: weft.dev/v1alpha1\nkind: Workload\nmetadata:\n  name: {name}\nspec:\n  components:\n    - name: app\n      image: {}\n  hostInterfaces:\n    - namespace: wasi\n      package: http\n      interfaces: [incoming-handler]\n      config: {{ host: {name}.localhost, path: / }}\n",
            image.display()
        ),
    )
}

/// Sends GET requests to `host` for `duration`, at most `max` of them, from a thread.
fn bounded_load(
    addr: SocketAddr,
    host: &'static str,
    duration: Duration,
    max: usize,
) -> std::thread::JoinHandle<usize> {
    std::thread::spawn(move || {
        let end = Instant::now() + duration;
        let mut n = 0;
        while Instant::now() < end && n < max {
            let r = request(addr, "GET", "/", &[("Host", host)], b"");
            assert_eq!(r.status, 200, "{}", r.text());
            n += 1;
            std::thread::sleep(Duration::from_millis(2));
        }
        n
    })
}

/// Prometheus text -> {series (name and labels as written): value}.
fn parse_metrics(text: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("bad line {line}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line}"));
        out.insert(series.to_string(), value);
    }
    out
}

fn metrics(addr: SocketAddr) -> (String, BTreeMap<String, f64>) {
    let r = request(addr, "GET", "/metrics", &[("Host", "metrics")], b"");
    assert_eq!(r.status, 200);
    let text = r.text();
    assert!(
        text.ends_with("# EOF\n"),
        "OpenMetrics text ends with # EOF:\n{text}"
    );
    let parsed = parse_metrics(&text);
    (text, parsed)
}

#[test]
fn metrics_endpoint_counts_requests_by_status_with_a_consistent_histogram() {
    let dir = tempfile::tempdir().unwrap();
    let up = Up::start_with(
        &dir.path().join("data"),
        &[],
        &["--metrics-addr", "127.0.0.1:0"],
    );
    let metrics_addr: SocketAddr = up.metrics_addr();
    up.deploy_ok(&hello_manifest(
        dir.path(),
        "hello",
        &guest("http-hello.wasm"),
    ));

    for _ in 0..7 {
        assert_eq!(up.get("hello.localhost", "/").status, 200);
    }
    assert_eq!(up.get("hello.localhost", "/status/503").status, 503);
    assert_eq!(up.get("nobody.localhost", "/").status, 404);

    let (text, m) = metrics(metrics_addr);
    assert_eq!(
        m[r#"weft_http_requests_total{workload="hello",code="200"}"#], 7.0,
        "{text}"
    );
    assert_eq!(
        m[r#"weft_http_requests_total{workload="hello",code="503"}"#], 1.0,
        "{text}"
    );
    assert_eq!(m["weft_http_unrouted_requests_total"], 1.0, "{text}");
    assert_eq!(m[r#"weft_http_requests_in_flight{workload="hello"}"#], 0.0);
    assert_eq!(m[r#"weft_workloads{status="Running"}"#], 1.0);
    assert_eq!(m[r#"weft_deploys_total{result="ok"}"#], 1.0);
    // The histogram: 8 observations, cumulative buckets that never decrease and end at the
    // count, a positive sum.
    let count = m[r#"weft_http_request_duration_seconds_count{workload="hello"}"#];
    assert_eq!(count, 8.0, "{text}");
    let buckets: Vec<f64> = text
        .lines()
        .filter(|l| l.starts_with("weft_http_request_duration_seconds_bucket{"))
        .map(|l| l.rsplit_once(' ').unwrap().1.parse().unwrap())
        .collect();
    assert_eq!(buckets.len(), 17, "{text}");
    assert!(buckets.windows(2).all(|w| w[0] <= w[1]), "{buckets:?}");
    assert_eq!(buckets.last(), Some(&count));
    assert!(m[r#"weft_http_request_duration_seconds_sum{workload="hello"}"#] > 0.0);

    // Only /metrics, only GET.
    assert_eq!(
        request(metrics_addr, "GET", "/", &[("Host", "m")], b"").status,
        404
    );
    assert_eq!(
        request(metrics_addr, "POST", "/metrics", &[("Host", "m")], b"").status,
        405
    );
}

#[test]
fn dashboard_api_refuses_without_a_session_and_login_needs_the_token_in_a_json_body() {
    let dir = tempfile::tempdir().unwrap();
    let up = Up::start(&dir.path().join("data"));
    let admin = up.admin_addr();
    let token = up.token();
    let host = admin.to_string();
    let h = |extra: &[(&'static str, &str)]| {
        let mut v: Vec<(&str, String)> = vec![("Host", host.clone())];
        v.extend(extra.iter().map(|(k, x)| (*k, x.to_string())));
        v
    };
    let send = |method: &str, path: &str, headers: Vec<(&str, String)>, body: &[u8]| {
        let hs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        request(admin, method, path, &hs, body)
    };

    // The page itself is public (it shows the login form); the data is not.
    let r = send("GET", "/ui", h(&[]), b"");
    assert_eq!(r.status, 200);
    assert!(r.text().contains("login-form"));
    assert_eq!(send("GET", "/ui/api/overview", h(&[]), b"").status, 401);
    assert_eq!(send("GET", "/ui/api/logs", h(&[]), b"").status, 401);
    let forged = h(&[("Cookie", "weft_session=0123456789abcdef")]);
    assert_eq!(send("GET", "/ui/api/overview", forged, b"").status, 401);
    // The bearer token does not open the dashboard API, and a session does not open /v1.
    let bearer = h(&[("Authorization", &format!("Bearer {token}"))]);
    assert_eq!(send("GET", "/ui/api/overview", bearer, b"").status, 401);

    let json = [("Content-Type", "application/json")];
    let r = send("POST", "/ui/login", h(&json), br#"{"token":"wrong"}"#);
    assert_eq!(r.status, 401);
    assert!(r.text().contains("wrong token"), "{}", r.text());
    // Only JSON (a cross-site HTML form cannot send it without a preflight) and only from the
    // page's own origin.
    let form = format!("token={token}");
    let r = send(
        "POST",
        "/ui/login",
        h(&[("Content-Type", "application/x-www-form-urlencoded")]),
        form.as_bytes(),
    );
    assert_eq!(r.status, 415);
    let body = format!(r#"{{"token":"{token}"}}"#);
    let r = send(
        "POST",
        "/ui/login",
        h(&[
            ("Content-Type", "application/json"),
            ("Origin", "http://evil.example"),
        ]),
        body.as_bytes(),
    );
    assert_eq!(r.status, 403);

    let r = send("POST", "/ui/login", h(&json), body.as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    let cookie = r
        .headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))
        .map(|(_, v)| v.clone())
        .expect("a session cookie");
    assert!(cookie.starts_with("weft_session="), "{cookie}");
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/ui"] {
        assert!(cookie.contains(attr), "{attr} missing: {cookie}");
    }
    assert!(!cookie.contains(&token), "the cookie must not be the token");
    let session = cookie.split(';').next().unwrap().to_string();
    let r = send("GET", "/ui/api/overview", h(&[("Cookie", &session)]), b"");
    assert_eq!(r.status, 200);
    let v: serde_json::Value = serde_json::from_str(&r.text()).unwrap();
    assert_eq!(v["hosts"].as_array().map(Vec::len), Some(1));
    // The session does not open the bearer API.
    assert_eq!(
        send("GET", "/v1/workloads", h(&[("Cookie", &session)]), b"").status,
        401
    );
    // Logging out ends the session.
    assert_eq!(
        send("POST", "/ui/logout", h(&[("Cookie", &session)]), b"").status,
        200
    );
    assert_eq!(
        send("GET", "/ui/api/overview", h(&[("Cookie", &session)]), b"").status,
        401
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_in_chromium_login_workload_rate_refused_deploy_logs() {
    let dir = tempfile::tempdir().unwrap();
    let up = Up::start(&dir.path().join("data"));
    up.deploy_ok(&hello_manifest(
        dir.path(),
        "hello",
        &guest("http-hello.wasm"),
    ));
    up.deploy_ok(&hello_manifest(
        dir.path(),
        "p3-hello",
        &guest("p3-service.wasm"),
    ));
    assert_eq!(up.get("hello.localhost", "/stdout").status, 200);
    let admin = up.admin_addr();
    let token = up.token();

    let browser = Browser::start().await;
    let c = &browser.client;
    c.goto(&format!("http://{admin}/ui")).await.unwrap();
    browser
        .wait_for("the login form", 20, || async {
            browser
                .eval("return !document.getElementById('login').hidden")
                .await
                .as_bool()
                .filter(|v| *v)
        })
        .await;
    browser.screenshot("dashboard-login.png").await;

    // A wrong token: an error, still the login form.
    let input = c.find(Locator::Id("token")).await.unwrap();
    input.send_keys("not-the-token").await.unwrap();
    c.find(Locator::Id("login-button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    browser
        .wait_for("the wrong-token error", 20, || async {
            browser
                .text("#login-error")
                .await
                .filter(|t| t.contains("wrong token"))
        })
        .await;

    // The right token: the dashboard, with the workload running.
    input.clear().await.unwrap();
    input.send_keys(&token).await.unwrap();
    c.find(Locator::Id("login-button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    browser
        .wait_for("workload hello in the table", 20, || async {
            browser
                .text("#workloads tr[data-workload='hello'] .status")
                .await
                .filter(|t| t == "Running")
        })
        .await;
    let login_shown = browser
        .eval("return getComputedStyle(document.getElementById('login')).display")
        .await;
    assert_eq!(
        login_shown.as_str(),
        Some("none"),
        "the login form is still shown"
    );
    let url = c.current_url().await.unwrap();
    assert!(
        !url.as_str().contains(&token),
        "the token is in the URL: {url}"
    );
    let cookies = c.get_all_cookies().await.unwrap();
    let session = cookies
        .iter()
        .find(|k| k.name() == "weft_session")
        .expect("the session cookie");
    assert_eq!(session.http_only(), Some(true));
    // fantoccini re-exports the cookie type but not its SameSite enum.
    assert_eq!(format!("{:?}", session.same_site()), "Some(Strict)");
    assert_ne!(session.value(), token);
    // HttpOnly: the page's script cannot read it.
    let visible = browser.eval("return document.cookie").await;
    assert!(
        !visible.as_str().unwrap_or("").contains("weft_session"),
        "{visible}"
    );

    // Under a bounded load, the rate shown rises.
    let load = bounded_load(up.http, "hello.localhost", Duration::from_secs(8), 4000);
    let rate = browser
        .wait_for("a request rate above 20 req/s", 20, || async {
            let t = browser
                .eval(
                    "const e = document.querySelector(\"#workloads tr[data-workload='hello'] .rate\");\
                     return e ? e.getAttribute('data-rate') : null;",
                )
                .await;
            t.as_str()
                .and_then(|s| s.parse::<f64>().ok())
                .filter(|r| *r > 20.0)
        })
        .await;
    assert!(rate > 20.0);

    // A refused deploy: its error shows, and the running workloads keep running.
    let bad = write(
        dir.path(),
        "broken",
        "apiVersion: weft.dev/v1alpha1\nkind: Workload\nmetadata:\n  name: broken\nspec:\n  components:\n    - name: app\n      image: ./no-such-component.wasm\n",
    );
    let out = up.cli(&["deploy", bad.to_str().unwrap()]);
    assert!(!out.status.success(), "the broken manifest was accepted");
    let shown = browser
        .wait_for("the refused deploy's error", 20, || async {
            browser
                .text("#deploys li.refused")
                .await
                .filter(|t| t.contains("broken.yaml") && t.contains("no-such-component.wasm"))
        })
        .await;
    assert!(shown.contains("refused"), "{shown}");

    // Recent logs include the guest's stdout line.
    browser
        .wait_for("the guest's stdout line in the logs", 20, || async {
            browser
                .text("#logs")
                .await
                .filter(|t| t.contains("guest stdout line"))
        })
        .await;
    let sent = load.join().unwrap();
    assert!(sent > 100, "the load sent only {sent} requests");
    // Let the rate sparkline show the load, then take the picture docs/ uses.
    tokio::time::sleep(Duration::from_millis(500)).await;
    browser.screenshot("dashboard.png").await;

    // Logging out returns to the form, and the old session no longer works.
    c.find(Locator::Id("logout"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    browser
        .wait_for("the login form after logout", 20, || async {
            browser
                .eval("return !document.getElementById('login').hidden")
                .await
                .as_bool()
                .filter(|v| *v)
        })
        .await;
    let status = browser
        .eval("return fetch('/ui/api/overview').then((r) => r.status);")
        .await;
    assert_eq!(status.as_u64(), Some(401));
    browser.close().await;
}

/// The per-workload series that the runtime records (not the ingress): live instances and
/// their linear memory (a pooled instance stays alive between requests), instantiation time,
/// and `wasi:keyvalue` operations by kind.
#[test]
fn metrics_count_instances_memory_instantiations_and_keyvalue_operations() {
    let dir = tempfile::tempdir().unwrap();
    let up = Up::start_with(
        &dir.path().join("data"),
        &[],
        &["--metrics-addr", "127.0.0.1:0"],
    );
    let metrics_addr: SocketAddr = up.metrics_addr();
    let manifest = format!(
        "apiVersion: weft.dev/v1alpha1\nkind: Workload\nmetadata:\n  name: kv\nspec:\n  components:\n    - name: counter\n      image: {}\n      maxInvocations: 100\n      poolSize: 1\n  hostInterfaces:\n    - {{ namespace: wasi, package: http, interfaces: [incoming-handler], config: {{ host: kv.localhost, path: / }} }}\n    - {{ namespace: wasi, package: keyvalue, interfaces: [store, atomics], config: {{ backend: memory }} }}\n",
        guest("kv-counter.wasm").display()
    );
    up.deploy_ok(&write(dir.path(), "kv.yaml", &manifest));
    for i in 1..=3 {
        let r = up.get("kv.localhost", "/");
        assert_eq!((r.status, r.text()), (200, format!("count={i}\n")));
    }
    let (text, m) = metrics(metrics_addr);
    let get = |k: &str| {
        m.get(k)
            .copied()
            .unwrap_or_else(|| panic!("no {k} in\n{text}"))
    };
    assert_eq!(
        get(r#"weft_keyvalue_operations_total{workload="kv",op="increment"}"#),
        3.0
    );
    // The pooled instance that served the three requests is alive, with its memory.
    assert!(
        get(r#"weft_instances_alive{workload="kv"}"#) >= 1.0,
        "{text}"
    );
    assert!(
        get(r#"weft_memory_bytes{workload="kv"}"#) >= 65536.0,
        "{text}"
    );
    let instantiations = get(r#"weft_instantiation_duration_seconds_count{workload="kv"}"#);
    assert!(
        (1.0..=3.0).contains(&instantiations),
        "reuse: at most one instantiation per request, {instantiations}\n{text}"
    );
    assert!(get(r#"weft_instantiation_duration_seconds_sum{workload="kv"}"#) > 0.0);
    // Deleting the workload drops its instances: nothing alive, no memory held.
    let out = up.cli(&["delete", "workload", "kv"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let m = metrics(metrics_addr).1;
    for k in [
        r#"weft_instances_alive{workload="kv"}"#,
        r#"weft_memory_bytes{workload="kv"}"#,
    ] {
        assert!(m.get(k).is_none_or(|v| *v == 0.0), "{k}: {:?}", m.get(k));
    }
}
