//! Typed denials end to end (`LogSink::denied`, what `weft dev` explains): the real
//! `net-probe` and `http-hello` guests (tests/fixtures/guests) deployed as workloads, denied a
//! socket connect, a name lookup and an outgoing HTTP request several times each; each denial
//! reaches the log sink's subscribers exactly once, as the `GrantRequest` whose suggestion
//! (`weft_manifest::grant::suggest`) grants it. Only 127.0.0.1 is contacted, and nothing
//! listens on the denied ports (the guests never get that far).
// Test code: a failed unwrap is a test failure with a location (docs/lints.md).
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::time::Duration;

use http_body_util::BodyExt as _;
use weft_manifest::grant::{Edit, GrantRequest, suggest};
use weft_runtime::allow::Scheme;
use weft_runtime::engine::{EngineOptions, WeftEngine};
use weft_runtime::logs::{Denied, LogSink};
use weft_runtime::workload::{DeployContext, Workload, WorkloadDefaults};

fn guest(name: &str) -> PathBuf {
    let dir = std::env::var_os("WEFT_GUESTS_DIR").unwrap_or_else(|| {
        panic!(
            "WEFT_GUESTS_DIR is not set: build the guest fixtures with \
             `bash tests/fixtures/build-guests.sh DIR` and export WEFT_GUESTS_DIR=DIR \
             (scripts/test.sh does both)"
        )
    });
    let path = PathBuf::from(dir).join(name);
    assert!(
        path.is_file(),
        "guest fixture {} is missing: rebuild with tests/fixtures/build-guests.sh",
        path.display()
    );
    path
}

fn manifest(name: &str, image: &str, resources: &str) -> weft_manifest::Manifest {
    let text = format!(
        "apiVersion: weft.dev/v1alpha1\nkind: Workload\nmetadata:\n  name: {name}\nspec:\n  components:\n    - name: api\n      image: {}\n{resources}  hostInterfaces:\n    - {{ namespace: wasi, package: http, interfaces: [incoming-handler] }}\n",
        guest(image).display()
    );
    let dir = std::env::temp_dir();
    weft_manifest::parse_str(&text, &dir.join(format!("{name}.yaml")))
        .unwrap_or_else(|e| panic!("manifest: {e}"))
        .remove(0)
}

async fn deploy(m: &weft_manifest::Manifest) -> (Workload, LogSink) {
    let engine = WeftEngine::new(&EngineOptions::default()).unwrap();
    let logs = LogSink::new(&m.metadata.name);
    let data = tempfile::tempdir().unwrap();
    let (ctx_logs, data_dir, m) = (logs.clone(), data.path().to_path_buf(), m.clone());
    let w = tokio::task::spawn_blocking(move || {
        let ctx = DeployContext {
            defaults: WorkloadDefaults::default(),
            engine: &engine,
            cache: None,
            data_dir,
            logs: ctx_logs,
            internal: None,
            stats: None,
            traces: None,
        };
        Workload::deploy(&ctx, &m)
    })
    .await
    .unwrap()
    .unwrap_or_else(|e| panic!("deploy: {e}"));
    (w, logs)
}

async fn get(w: &Workload, path: &str) -> String {
    let body = http_body_util::Empty::new()
        .map_err(|never| match never {})
        .boxed_unsync();
    let request = http::Request::builder()
        .uri(format!("http://localhost{path}"))
        .header("host", "localhost")
        .body(body)
        .unwrap();
    let response = tokio::time::timeout(Duration::from_secs(30), w.handle(request))
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("{path}: {e}"));
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Every event the subscriber has now.
fn drain(rx: &mut tokio::sync::broadcast::Receiver<Denied>) -> Vec<Denied> {
    let mut out = Vec::new();
    while let Ok(d) = rx.try_recv() {
        out.push(d);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denied_socket_lookup_and_http_are_each_one_grant_request() {
    // Sockets: port 1 is granted (so TCP and lookups are on), port 9 and db.internal are not.
    let m = manifest(
        "deny-net",
        "net-probe.wasm",
        "      localResources:\n        sockets: [ { port: 1 } ]\n",
    );
    let (w, logs) = deploy(&m).await;
    let mut rx = logs.subscribe_denials();
    for _ in 0..3 {
        assert_eq!(
            get(&w, "/tcp?addr=127.0.0.1:9&msg=hi").await,
            "error: access-denied"
        );
        let lookup = get(&w, "/lookup?name=db.internal").await;
        assert!(!lookup.starts_with("ok"), "{lookup}");
    }
    let events = drain(&mut rx);
    let connect = GrantRequest::SocketConnect {
        addr: "127.0.0.1:9".parse().unwrap(),
        protocol: weft_policy::sockets::Protocol::Tcp,
    };
    let requests: Vec<(&str, &GrantRequest)> = events
        .iter()
        .map(|d| (d.component.as_str(), &d.request))
        .collect();
    assert_eq!(
        requests,
        [
            ("api", &connect),
            ("api", &GrantRequest::lookup("db.internal"))
        ],
        "{events:?}"
    );
    assert_eq!(logs.denials(), events);
    // The old log lines are still written.
    let text: Vec<String> = logs.snapshot().into_iter().map(|l| l.message).collect();
    assert!(
        text.iter()
            .any(|l| l.contains("tcp connect 127.0.0.1:9 denied")),
        "{text:?}"
    );
    let s = suggest(&connect, "api", &m);
    assert_eq!(
        s.grant.as_ref().map(|g| (&g.path[..], &g.edit)),
        Some((
            "spec.components[0].localResources.sockets",
            &Edit::Socket {
                port: 9,
                protocol: weft_manifest::Protocol::Tcp
            }
        )),
        "{s}"
    );

    // Outgoing HTTP: no allowedHosts at all.
    let m = manifest("deny-http", "http-hello.wasm", "");
    let (w, logs) = deploy(&m).await;
    let mut rx = logs.subscribe_denials();
    for _ in 0..3 {
        let body = get(&w, "/fetch?url=http://127.0.0.1:9/x").await;
        assert!(body.contains("HttpRequestDenied"), "{body}");
    }
    let events = drain(&mut rx);
    let http = GrantRequest::outgoing_http(Scheme::Http, "127.0.0.1", 9);
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(
        (events[0].component.as_str(), &events[0].request),
        ("api", &http)
    );
    let s = suggest(&http, "api", &m);
    assert_eq!(
        s.to_string(),
        "component api was denied an outgoing HTTP request to http://127.0.0.1:9; to allow it, \
         add to spec.components[0].localResources:\n  allowedHosts:\n    - \"http://127.0.0.1:9\""
    );
}
