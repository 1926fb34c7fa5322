//! Traces end to end: `weft up --otlp-endpoint` exports spans over OTLP/HTTP to a test receiver
//! on loopback, which decodes them with `opentelemetry-proto` and checks names, kinds,
//! attributes and parent links, including a W3C `traceparent` sent on ingress.
// Test code: a failed unwrap is a test failure with a location (docs/lints.md).
#![allow(clippy::unwrap_used)]

mod common;
use common::*;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;

/// A span with the service name of the resource it came with.
#[derive(Clone, Debug)]
struct Received {
    service: String,
    span: Span,
}

/// An OTLP/HTTP receiver: `POST /v1/traces` with a protobuf `ExportTraceServiceRequest`.
struct Receiver {
    addr: SocketAddr,
    spans: Arc<Mutex<Vec<Received>>>,
    errors: Arc<Mutex<Vec<String>>>,
}

/// A request line, its headers (names lowercased) and its body.
type RawRequest = (String, Vec<(String, String)>, Vec<u8>);

fn read_request(stream: &mut TcpStream) -> Result<RawRequest, String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let n = stream.read(&mut chunk).map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("connection closed before the request head".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or("").to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .ok_or("no content-length")?;
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut chunk).map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("connection closed inside the body".into());
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Ok((request_line, headers, body))
}

impl Receiver {
    fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let spans: Arc<Mutex<Vec<Received>>> = Arc::default();
        let errors: Arc<Mutex<Vec<String>>> = Arc::default();
        let (s, e) = (spans.clone(), errors.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                let result = read_request(&mut stream).and_then(|(line, headers, body)| {
                    if !line.starts_with("POST /v1/traces ") {
                        return Err(format!("unexpected request {line}"));
                    }
                    let ct = headers.iter().find(|(k, _)| k == "content-type");
                    if ct.map(|(_, v)| v.as_str()) != Some("application/x-protobuf") {
                        return Err(format!("unexpected content type {ct:?}"));
                    }
                    ExportTraceServiceRequest::decode(body.as_slice()).map_err(|e| e.to_string())
                });
                match result {
                    Ok(export) => {
                        let mut spans = s.lock().unwrap();
                        for rs in export.resource_spans {
                            let service = rs
                                .resource
                                .iter()
                                .flat_map(|r| r.attributes.iter())
                                .find(|kv| kv.key == "service.name")
                                .and_then(|kv| kv.value.as_ref()?.value.clone())
                                .map(|v| match v {
                                    AnyValue::StringValue(s) => s,
                                    other => format!("{other:?}"),
                                })
                                .unwrap_or_default();
                            for ss in rs.scope_spans {
                                for span in ss.spans {
                                    spans.push(Received {
                                        service: service.clone(),
                                        span,
                                    });
                                }
                            }
                        }
                        let _ = stream.write_all(
                            b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                        );
                    }
                    Err(err) => {
                        e.lock().unwrap().push(err);
                        let _ = stream.write_all(
                            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                        );
                    }
                }
            }
        });
        Receiver {
            addr,
            spans,
            errors,
        }
    }

    /// Waits up to 30 s until `pred` holds for the spans received so far.
    fn wait_for(&self, what: &str, pred: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let spans = self.spans.lock().unwrap().clone();
            if pred(&spans) {
                return spans;
            }
            let errors = self.errors.lock().unwrap().clone();
            assert!(
                errors.is_empty(),
                "the receiver refused exports: {errors:?}"
            );
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; received: {:#?}",
                spans.iter().map(|r| &r.span.name).collect::<Vec<_>>()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn attr(span: &Span, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref()?.value.clone())
        .map(|v| match v {
            AnyValue::StringValue(s) => s,
            AnyValue::IntValue(i) => i.to_string(),
            other => format!("{other:?}"),
        })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// An upstream on loopback that records each request's `traceparent` header (or "" when absent)
/// and answers 200; serves up to `n` connections.
fn recording_upstream(n: usize) -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let s = seen.clone();
    std::thread::spawn(move || {
        for _ in 0..n {
            let Ok((mut stream, _)) = listener.accept() else {
                return;
            };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(k) => buf.extend_from_slice(&chunk[..k]),
                }
            }
            let head = String::from_utf8_lossy(&buf).into_owned();
            let traceparent = head
                .split("\r\n")
                .filter_map(|l| l.split_once(':'))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case("traceparent"))
                .map(|(_, v)| v.trim().to_string())
                .unwrap_or_default();
            s.lock().unwrap().push(traceparent);
            let _ = stream.write_all(
                b"HTTP/1.1 200 OK\r\ncontent-length: 17\r\nconnection: close\r\n\r\nupstream says hi\n",
            );
        }
    });
    (addr, seen)
}

const TRACE_ID: &str = "0af7651916cd43dd8448eb211c80319c";
const CALLER_SPAN: &str = "b7ad6b7169203331";

/// `weft up` exporting to `receiver`, with the SDK's batch delay cut to 100 ms.
fn traced_up(receiver: &Receiver, dir: &std::path::Path) -> Up {
    Up::start_with(
        &dir.join("data"),
        &[("OTEL_BSP_SCHEDULE_DELAY", "100")],
        &["--otlp-endpoint", &format!("http://{}", receiver.addr)],
    )
}

/// GET `path` at `host` as a traced caller would send it: `traceparent` names [`CALLER_SPAN`]
/// in [`TRACE_ID`].
fn traced_get(up: &Up, host: &str, path: &str) -> Response {
    let traceparent = format!("00-{TRACE_ID}-{CALLER_SPAN}-01");
    request(
        up.http,
        "GET",
        path,
        &[("Host", host), ("traceparent", &traceparent)],
        b"",
    )
}

#[test]
fn ingress_spans_continue_the_callers_trace_and_parent_the_workload_span() {
    let receiver = Receiver::start();
    let dir = tempfile::tempdir().unwrap();
    let endpoint = format!("http://{}", receiver.addr);
    // A short batch delay so the test does not wait the SDK's default 5 s.
    let up = Up::start_with(
        &dir.path().join("data"),
        &[("OTEL_BSP_SCHEDULE_DELAY", "100")],
        &[
            "--otlp-endpoint",
            &endpoint,
            "--otlp-service-name",
            "weft-under-test",
        ],
    );
    let manifest = write(
        dir.path(),
        "hello",
        &format!(
            "apiVersion: weft.dev/v1alpha1\nkind: Workload\nmetadata:\n  name: hello\nspec:\n  components:\n    - name: app\n      image: {}\n  hostInterfaces:\n    - namespace: wasi\n      package: http\n      interfaces: [incoming-handler]\n      config: {{ host: hello.localhost, path: / }}\n",
            guest("http-hello.wasm").display()
        ),
    );
    up.deploy_ok(&manifest);

    // 1. A caller's traceparent: the ingress span joins that trace as the caller's child.
    let traceparent = format!("00-{TRACE_ID}-{CALLER_SPAN}-01");
    let r = request(
        up.http,
        "GET",
        "/",
        &[("Host", "hello.localhost"), ("traceparent", &traceparent)],
        b"",
    );
    assert_eq!(r.status, 200);
    // 2. No traceparent: a new trace. 3. A failing request: an error status. 4. Unrouted.
    assert_eq!(up.get("hello.localhost", "/other").status, 200);
    assert_eq!(up.get("hello.localhost", "/status/503").status, 503);
    assert_eq!(up.get("nobody.localhost", "/").status, 404);

    let spans = receiver.wait_for("4 ingress and 3 workload.handle spans", |s| {
        s.iter().filter(|r| r.span.name == "ingress").count() >= 4
            && s.iter()
                .filter(|r| r.span.name == "workload.handle")
                .count()
                >= 3
    });
    assert!(spans.iter().all(|r| r.service == "weft-under-test"));
    let ingress: Vec<&Span> = spans
        .iter()
        .map(|r| &r.span)
        .filter(|s| s.name == "ingress")
        .collect();
    let handles: Vec<&Span> = spans
        .iter()
        .map(|r| &r.span)
        .filter(|s| s.name == "workload.handle")
        .collect();

    // The caller's trace.
    let joined = ingress
        .iter()
        .find(|s| hex(&s.trace_id) == TRACE_ID)
        .expect("an ingress span in the caller's trace");
    assert_eq!(
        hex(&joined.parent_span_id),
        CALLER_SPAN,
        "parent = the caller's span"
    );
    assert_eq!(joined.kind, 2, "SPAN_KIND_SERVER");
    assert_eq!(attr(joined, "weft.workload").as_deref(), Some("hello"));
    assert_eq!(attr(joined, "http.request.method").as_deref(), Some("GET"));
    assert_eq!(attr(joined, "url.path").as_deref(), Some("/"));
    assert_eq!(
        attr(joined, "http.response.status_code").as_deref(),
        Some("200")
    );
    let child = handles
        .iter()
        .find(|s| s.parent_span_id == joined.span_id)
        .expect("a workload.handle span whose parent is the ingress span");
    assert_eq!(child.trace_id, joined.trace_id);
    assert!(child.start_time_unix_nano >= joined.start_time_unix_nano);
    assert!(child.end_time_unix_nano <= joined.end_time_unix_nano);

    // A request without traceparent starts its own trace (a root span).
    let root = ingress
        .iter()
        .find(|s| attr(s, "url.path").as_deref() == Some("/other"))
        .expect("the /other span");
    assert!(root.parent_span_id.is_empty(), "a root span");
    assert_ne!(hex(&root.trace_id), TRACE_ID);
    assert!(handles.iter().any(|s| s.parent_span_id == root.span_id));

    // 5xx: an error status on the span.
    let failed = ingress
        .iter()
        .find(|s| attr(s, "http.response.status_code").as_deref() == Some("503"))
        .expect("the 503 span");
    assert_eq!(
        failed.status.as_ref().map(|s| s.code),
        Some(2),
        "STATUS_CODE_ERROR"
    );

    // Unrouted: an ingress span without a workload or a workload.handle child.
    let unrouted = ingress
        .iter()
        .find(|s| attr(s, "http.response.status_code").as_deref() == Some("404"))
        .expect("the 404 span");
    assert_eq!(attr(unrouted, "weft.workload"), None);
    assert!(!handles.iter().any(|s| s.parent_span_id == unrouted.span_id));
    up.stop();
}

#[test]
fn a_bad_otlp_endpoint_is_refused_naming_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    for bad in ["127.0.0.1:4318", "https://collector:4318", "not a url"] {
        let out = weft()
            .args([
                "up",
                "--http-addr",
                "127.0.0.1:0",
                "--admin-addr",
                "127.0.0.1:0",
            ])
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["--otlp-endpoint", bad])
            .output()
            .unwrap();
        assert!(!out.status.success(), "{bad} was accepted");
        let err = stderr(&out);
        assert!(err.contains("--otlp-endpoint"), "{err}");
        assert!(err.contains("http://"), "{err}");
    }
}

#[test]
fn outgoing_requests_get_a_client_span_and_carry_its_traceparent() {
    let receiver = Receiver::start();
    let (upstream, seen) = recording_upstream(2);
    // An allowed address nothing listens on (bound, then closed): the connection is refused.
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let up = traced_up(&receiver, dir.path());
    let manifest = write(
        dir.path(),
        "fetcher",
        &format!(
            "apiVersion: weft.dev/v1alpha1\nkind: Workload\nmetadata:\n  name: fetcher\nspec:\n  components:\n    - name: app\n      image: {}\n      localResources:\n        allowedHosts: [ \"http://{upstream}\", \"http://{closed}\" ]\n  hostInterfaces:\n    - {{ namespace: wasi, package: http, interfaces: [incoming-handler], config: {{ host: fetcher.localhost, path: / }} }}\n",
            guest("http-hello.wasm").display()
        ),
    );
    up.deploy_ok(&manifest);

    // With the caller's traceparent: ingress -> workload.handle -> http.client, one trace, and
    // the upstream gets a traceparent naming the client span.
    let traceparent = format!("00-{TRACE_ID}-{CALLER_SPAN}-01");
    let path = format!("/fetch?url=http://{upstream}/data?secret=1");
    let r = request(
        up.http,
        "GET",
        &path,
        &[("Host", "fetcher.localhost"), ("traceparent", &traceparent)],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("upstream says hi"), "{}", r.text());
    let r = up.get("fetcher.localhost", &format!("/fetch?url=http://{closed}/"));
    assert_eq!(r.status, 502, "{}", r.text());
    let spans = receiver.wait_for("two http.client spans", |s| {
        s.iter().filter(|r| r.span.name == "http.client").count() >= 2
            && s.iter().any(|r| r.span.name == "workload.handle")
            && s.iter().any(|r| r.span.name == "ingress")
    });
    let ingress = spans
        .iter()
        .map(|r| &r.span)
        .find(|s| s.name == "ingress" && hex(&s.trace_id) == TRACE_ID)
        .expect("the ingress span in the caller's trace");
    assert_eq!(hex(&ingress.parent_span_id), CALLER_SPAN);
    let handle = spans
        .iter()
        .map(|r| &r.span)
        .find(|s| s.name == "workload.handle" && s.parent_span_id == ingress.span_id)
        .expect("workload.handle under ingress");
    let client = spans
        .iter()
        .map(|r| &r.span)
        .find(|s| s.name == "http.client" && hex(&s.trace_id) == TRACE_ID)
        .expect("the client span in the caller's trace");
    assert_eq!(
        hex(&client.trace_id),
        TRACE_ID,
        "the client span is in the caller's trace"
    );
    assert_eq!(
        client.parent_span_id, handle.span_id,
        "the client span's parent is workload.handle"
    );
    assert_eq!(client.kind, 3, "SPAN_KIND_CLIENT");
    assert_eq!(attr(client, "http.request.method").as_deref(), Some("GET"));
    assert_eq!(
        attr(client, "url.full"),
        Some(format!("http://{upstream}/data")),
        "scheme, authority and path, no query"
    );
    assert_eq!(
        attr(client, "server.port"),
        Some(upstream.port().to_string())
    );
    assert_eq!(
        attr(client, "http.response.status_code").as_deref(),
        Some("200")
    );
    assert!(client.start_time_unix_nano >= handle.start_time_unix_nano);
    assert!(client.end_time_unix_nano <= handle.end_time_unix_nano);

    // The refused connection: an error span naming the wasi:http error code, no status code.
    let refused = spans
        .iter()
        .map(|r| &r.span)
        .find(|s| s.name == "http.client" && hex(&s.trace_id) != TRACE_ID)
        .expect("the refused request's client span");
    assert_eq!(
        attr(refused, "error.type").as_deref(),
        Some("ConnectionRefused")
    );
    assert_eq!(attr(refused, "http.response.status_code"), None);
    assert_eq!(
        refused.status.as_ref().map(|s| s.code),
        Some(2),
        "STATUS_CODE_ERROR"
    );
    assert!(
        spans
            .iter()
            .any(|r| r.span.name == "workload.handle" && r.span.span_id == refused.parent_span_id),
        "the refused request's client span hangs under its workload.handle span"
    );

    // What the upstream received: the caller's trace, the client span as parent, sampled.
    let got = seen.lock().unwrap().clone();
    assert_eq!(
        got,
        vec![format!("00-{TRACE_ID}-{}-01", hex(&client.span_id))],
        "the upstream's traceparent"
    );
    up.stop();
}

/// An in-memory call between two workloads (`NAME.weft.internal`) stays in one trace: the
/// caller's `http.client` span is the parent of the target's `workload.handle` span.
#[test]
fn in_memory_calls_continue_the_callers_trace() {
    let receiver = Receiver::start();
    let dir = tempfile::tempdir().unwrap();
    let up = traced_up(&receiver, dir.path());
    let hello = guest("http-hello.wasm");
    let workload = |name: &str, allowed: &str, internal: &str| {
        format!(
            "apiVersion: weft.dev/v1alpha1\nkind: Workload\nmetadata:\n  name: {name}\nspec:\n  components:\n    - name: app\n      image: {}\n      localResources:\n        allowedHosts: [{allowed}]\n  hostInterfaces:\n    - {{ namespace: wasi, package: http, interfaces: [incoming-handler, outgoing-handler], config: {{ host: {name}.localhost, path: /, internal: {internal} }} }}\n",
            hello.display()
        )
    };
    up.deploy_ok(&write(
        dir.path(),
        "front",
        &workload("front", "\"*.weft.internal\"", "deny"),
    ));
    up.deploy_ok(&write(dir.path(), "back", &workload("back", "", "allow")));

    let r = traced_get(
        &up,
        "front.localhost",
        "/fetch?url=http://back.weft.internal/",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let spans = receiver.wait_for("both workloads' spans", |s| {
        s.iter()
            .filter(|r| r.span.name == "workload.handle" && hex(&r.span.trace_id) == TRACE_ID)
            .count()
            >= 2
            && s.iter().any(|r| r.span.name == "http.client")
    });
    let in_trace: Vec<&Span> = spans
        .iter()
        .map(|r| &r.span)
        .filter(|s| hex(&s.trace_id) == TRACE_ID)
        .collect();
    let client = in_trace
        .iter()
        .find(|s| s.name == "http.client")
        .expect("the caller's client span in the trace");
    assert_eq!(
        attr(client, "url.full").as_deref(),
        Some("http://back.weft.internal/")
    );
    let back = in_trace
        .iter()
        .find(|s| s.name == "workload.handle" && s.parent_span_id == client.span_id)
        .expect("the target's workload.handle under the caller's http.client span");
    assert_eq!(back.kind, 2, "SPAN_KIND_SERVER");
    assert_eq!(attr(back, "weft.workload").as_deref(), Some("back"));
    assert_eq!(attr(back, "weft.caller").as_deref(), Some("default/front"));
    assert_eq!(
        attr(back, "http.response.status_code").as_deref(),
        Some("200")
    );
    assert!(back.start_time_unix_nano >= client.start_time_unix_nano);
    assert!(back.end_time_unix_nano <= client.end_time_unix_nano);
    up.stop();
}

/// A guest's `wasi:keyvalue` calls are internal spans under its `workload.handle` span, named
/// by operation, with the bucket but never a key or a value.
#[test]
fn keyvalue_calls_are_spans_under_the_workload_span() {
    let receiver = Receiver::start();
    let dir = tempfile::tempdir().unwrap();
    let up = traced_up(&receiver, dir.path());
    up.deploy_ok(&write(
        dir.path(),
        "counter",
        &format!(
            "apiVersion: weft.dev/v1alpha1\nkind: Workload\nmetadata:\n  name: counter\nspec:\n  components:\n    - name: counter\n      image: {}\n  hostInterfaces:\n    - {{ namespace: wasi, package: http, interfaces: [incoming-handler], config: {{ host: counter.localhost, path: / }} }}\n    - {{ namespace: wasi, package: keyvalue, interfaces: [store, atomics], config: {{ backend: memory, bucket: tally }} }}\n",
            guest("kv-counter.wasm").display()
        ),
    ));
    let r = traced_get(&up, "counter.localhost", "/");
    assert_eq!(r.status, 200, "{}", r.text());
    let spans = receiver.wait_for("a keyvalue span in the trace", |s| {
        s.iter()
            .any(|r| r.span.name.starts_with("keyvalue.") && hex(&r.span.trace_id) == TRACE_ID)
            && s.iter().any(|r| r.span.name == "workload.handle")
    });
    let handle = spans
        .iter()
        .map(|r| &r.span)
        .find(|s| s.name == "workload.handle" && hex(&s.trace_id) == TRACE_ID)
        .expect("workload.handle in the trace");
    let kv: Vec<&Span> = spans
        .iter()
        .map(|r| &r.span)
        .filter(|s| s.name.starts_with("keyvalue.") && hex(&s.trace_id) == TRACE_ID)
        .collect();
    for s in &kv {
        assert_eq!(
            s.parent_span_id, handle.span_id,
            "{} under workload.handle",
            s.name
        );
        assert_eq!(s.kind, 1, "SPAN_KIND_INTERNAL");
        assert_eq!(attr(s, "db.namespace").as_deref(), Some("tally"));
        assert_eq!(
            attr(s, "db.operation.name"),
            s.name.strip_prefix("keyvalue.").map(str::to_string)
        );
        assert!(s.start_time_unix_nano >= handle.start_time_unix_nano);
    }
    up.stop();
}

/// A message is traced like a request: a message carrying a `traceparent` (as a traced
/// publisher sends it) starts a `messaging.process` consumer span under the publisher's span
/// in the handler's workload; what the handler publishes is a `messaging.publish` producer
/// span under it, and the published message carries that span's `traceparent`, so the next
/// consumer continues the same trace. The `transform` example over a real nats-server.
#[test]
fn messages_continue_the_publishers_trace() {
    let receiver = Receiver::start();
    let nats = weft_messaging::testing::NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        guest("msg-transform.wasm"),
        dir.path().join("msg-transform.wasm"),
    )
    .unwrap();
    let text = std::fs::read_to_string(repo_root().join("examples/transform/weft.yaml")).unwrap();
    let file = dir.path().join("weft.yaml");
    std::fs::write(&file, text).unwrap();
    let up = Up::start_with(
        &dir.path().join("data"),
        &[("OTEL_BSP_SCHEDULE_DELAY", "100")],
        &[
            "--otlp-endpoint",
            &format!("http://{}", receiver.addr),
            "--nats",
            &nats.url(),
        ],
    );
    up.deploy_ok(&file);
    let traceparent = format!("00-{TRACE_ID}-{CALLER_SPAN}-01");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let out_traceparent = rt.block_on(async {
        use futures::StreamExt;
        let client = nats.client().await;
        let mut out = client.subscribe("out.new").await.unwrap();
        client.flush().await.unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("traceparent", traceparent.as_str());
            client
                .publish_with_headers("orders.new", headers, "hello".into())
                .await
                .unwrap();
            if let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(200), out.next()).await
            {
                assert_eq!(&m.payload[..], b"HELLO");
                break m
                    .headers
                    .as_ref()
                    .and_then(|h| h.get("traceparent"))
                    .map(|v| v.to_string());
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the transform example answered nothing"
            );
        }
    });
    let spans = receiver.wait_for("messaging.process and messaging.publish", |s| {
        s.iter().any(|r| r.span.name == "messaging.publish")
            && s.iter().any(|r| r.span.name == "messaging.process")
    });
    let in_trace: Vec<&Span> = spans
        .iter()
        .map(|r| &r.span)
        .filter(|s| hex(&s.trace_id) == TRACE_ID)
        .collect();
    let process = in_trace
        .iter()
        .find(|s| s.name == "messaging.process" && hex(&s.parent_span_id) == CALLER_SPAN)
        .unwrap_or_else(|| panic!("messaging.process under the publisher's span: {in_trace:#?}"));
    assert_eq!(process.kind, 5, "SPAN_KIND_CONSUMER");
    assert_eq!(
        attr(process, "messaging.destination.name").as_deref(),
        Some("orders.new")
    );
    assert_eq!(
        attr(process, "weft.workload").as_deref(),
        Some("default/transform")
    );
    let publish = in_trace
        .iter()
        .find(|s| s.name == "messaging.publish" && s.parent_span_id == process.span_id)
        .unwrap_or_else(|| panic!("messaging.publish under messaging.process: {in_trace:#?}"));
    assert_eq!(publish.kind, 4, "SPAN_KIND_PRODUCER");
    assert_eq!(
        attr(publish, "messaging.destination.name").as_deref(),
        Some("out.new")
    );
    // The published message names the publish span as its parent.
    let out = out_traceparent.expect("the published message carries a traceparent");
    assert_eq!(
        out,
        format!("00-{TRACE_ID}-{}-01", hex(&publish.span_id)),
        "traceparent of the published message"
    );
    up.stop();
}

/// A long-lived service is traced too: its own work (an outgoing request `run` makes at start)
/// is the root `http.client` span of a trace of its own, tagged with the workload and the
/// service; a request it serves as the workload's front door puts the instance's outgoing
/// requests under that request's `workload.handle` span, and the upstream gets the client
/// span's `traceparent` either way.
#[test]
fn a_services_outgoing_requests_are_traced() {
    let receiver = Receiver::start();
    let (upstream, seen) = recording_upstream(2);
    let dir = tempfile::tempdir().unwrap();
    let up = traced_up(&receiver, dir.path());
    up.deploy_ok(&write(
        dir.path(),
        "front",
        &format!(
            "apiVersion: weft.dev/v1alpha1\nkind: Workload\nmetadata:\n  name: front\nspec:\n  service:\n    name: svc\n    image: {}\n    serveHttp: true\n    maxConcurrency: 4\n    localResources:\n      allowedHosts: [ \"http://{upstream}\" ]\n      environment: {{ FETCH_AT_START: \"{upstream}\" }}\n  hostInterfaces:\n    - {{ namespace: wasi, package: http, interfaces: [incoming-handler], config: {{ host: front.localhost, path: / }} }}\n",
            guest("svc-front.wasm").display()
        ),
    ));
    // `run`'s own request, at start.
    let spans = receiver.wait_for("the service's own http.client span", |s| {
        s.iter().any(|r| {
            r.span.name == "http.client" && attr(&r.span, "weft.service").as_deref() == Some("svc")
        })
    });
    let own = spans
        .iter()
        .map(|r| &r.span)
        .find(|s| s.name == "http.client")
        .unwrap();
    assert!(own.parent_span_id.is_empty(), "a root span: {own:?}");
    assert_ne!(hex(&own.trace_id), TRACE_ID);
    assert_eq!(attr(own, "weft.workload").as_deref(), Some("default/front"));
    assert_eq!(
        attr(own, "http.response.status_code").as_deref(),
        Some("200")
    );

    // A front-door request's outgoing request: under that request's workload.handle span.
    let r = traced_get(&up, "front.localhost", &format!("/fetch?to={upstream}"));
    assert_eq!((r.status, r.text()), (200, "fetched 200".to_string()));
    let spans = receiver.wait_for("the request's http.client span", |s| {
        s.iter()
            .any(|r| r.span.name == "http.client" && hex(&r.span.trace_id) == TRACE_ID)
    });
    let in_trace: Vec<&Span> = spans
        .iter()
        .map(|r| &r.span)
        .filter(|s| hex(&s.trace_id) == TRACE_ID)
        .collect();
    let handle = in_trace
        .iter()
        .find(|s| s.name == "workload.handle")
        .expect("workload.handle");
    let client = in_trace
        .iter()
        .find(|s| s.name == "http.client")
        .expect("http.client");
    assert_eq!(client.parent_span_id, handle.span_id, "{in_trace:#?}");
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        [
            format!("00-{}-{}-01", hex(&own.trace_id), hex(&own.span_id)),
            format!("00-{TRACE_ID}-{}-01", hex(&client.span_id)),
        ],
        "the upstream continues each trace"
    );
    up.stop();
}
