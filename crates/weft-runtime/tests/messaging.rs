//! `wasmcloud:messaging@0.2.0` end to end on the in-process bus: the real `msg-transform`
//! guest (tests/fixtures/guests/msg-transform) deployed as a workload, triggered by messages
//! published on the host's bus. Covers the transform (input subject -> handler -> output
//! subject), replies, refused publishes (ungranted, logged, counted), a trapping handler and
//! a handler error failing only their message (counted, logged, dead-lettered), the size cap,
//! request through the guest, and bounded in-flight under a flood. Instances are reused for up
//! to 8 messages (`maxInvocations`), so a trap also shows that a broken instance is replaced.
// Test code: a failed unwrap is a test failure with a location (docs/lints.md).
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use weft_messaging::{Bus, Message, Subscription};
use weft_runtime::engine::{EngineOptions, WeftEngine};
use weft_runtime::logs::LogSink;
use weft_runtime::plugins::messaging::host_bus;
use weft_runtime::workload::{DeployContext, Workload, WorkloadDefaults};

const WAIT: Duration = Duration::from_secs(10);

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

fn manifest(name: &str, config: &str) -> weft_manifest::Manifest {
    let text = format!(
        "apiVersion: weft.dev/v1alpha1\nkind: Workload\nmetadata:\n  name: {name}\nspec:\n  components:\n    - name: transform\n      image: {}\n      maxInvocations: 8\n  hostInterfaces:\n    - namespace: wasmcloud\n      package: messaging\n      interfaces: [handler, consumer]\n      config:\n{config}",
        guest("msg-transform.wasm").display()
    );
    let dir = std::env::temp_dir();
    weft_manifest::parse_str(&text, &dir.join(format!("{name}.yaml")))
        .unwrap_or_else(|e| panic!("manifest: {e}"))
        .remove(0)
}

async fn deploy(name: &str, config: &str) -> (Workload, LogSink) {
    let engine = WeftEngine::new(&EngineOptions::default()).unwrap();
    let logs = LogSink::new(name);
    let m = manifest(name, config);
    let data = tempfile::tempdir().unwrap();
    let ctx_logs = logs.clone();
    let data_dir = data.path().to_path_buf();
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
    .unwrap_or_else(|e| panic!("deploy {name}: {e}"));
    tokio::time::timeout(WAIT, w.messaging_ready())
        .await
        .unwrap()
        .unwrap();
    (w, logs)
}

async fn next(sub: &mut Subscription) -> Message {
    tokio::time::timeout(WAIT, sub.next())
        .await
        .expect("a message within 10 s")
        .expect("the subscription is open")
}

async fn until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !f() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn log_text(logs: &LogSink) -> String {
    logs.snapshot()
        .iter()
        .map(|l| l.render())
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messaging_transform_on_the_in_process_bus() {
    let bus: Arc<dyn Bus> = host_bus();
    assert_eq!(bus.kind(), "in-process");
    let (w, logs) = deploy(
        "msg-a",
        "        subscriptions: \"orders.*\"\n        publish: \"out.>\"\n        deadLetter: failed.orders\n        maxMessageBytes: \"64\"\n",
    )
    .await;
    let mut out = bus.subscribe("out.>", None).await.unwrap();
    let mut dead = bus.subscribe("failed.orders", None).await.unwrap();

    // The transform: orders.created "hello" -> out.created "HELLO".
    bus.publish(Message::new("orders.created", "hello"))
        .await
        .unwrap();
    let m = next(&mut out).await;
    assert_eq!(
        (m.subject.as_str(), &m.body[..]),
        ("out.created", &b"HELLO"[..])
    );

    // Order per subject: 50 messages on one subject come out in order.
    for i in 0..50 {
        bus.publish(Message::new("orders.seq", format!("m{i}")))
            .await
            .unwrap();
    }
    for i in 0..50 {
        assert_eq!(next(&mut out).await.body, format!("M{i}").as_bytes());
    }

    // Request/reply: the handler may answer on the message's reply subject (not granted).
    let reply = bus
        .request(Message::new("orders.ask", "ping"), WAIT)
        .await
        .unwrap();
    assert_eq!(&reply.body[..], b"PING");
    assert_eq!(next(&mut out).await.subject, "out.ask");

    // An ungranted publish is refused to the guest (its err fails the message), logged and
    // counted; the refused subject never sees the message.
    let mut secret = bus.subscribe("secret.x", None).await.unwrap();
    bus.publish(Message::new("orders.bad", "publish-to:secret.x"))
        .await
        .unwrap();
    let d = next(&mut dead).await;
    assert_eq!(d.header("Weft-Error"), Some("error"));
    assert!(
        d.header("Weft-Error-Detail")
            .unwrap()
            .contains("access denied"),
        "{d:?}"
    );
    assert_eq!(d.header("Weft-Subject"), Some("orders.bad"));
    assert_eq!(d.header("Weft-Workload"), Some("default/msg-a"));
    assert!(
        tokio::time::timeout(Duration::from_millis(200), secret.next())
            .await
            .is_err(),
        "an ungranted publish must not be delivered"
    );
    assert!(
        log_text(&logs).contains("access denied"),
        "{}",
        log_text(&logs)
    );

    // A trap fails that message only; the next one is handled.
    bus.publish(Message::new("orders.t", "trap")).await.unwrap();
    let d = next(&mut dead).await;
    assert_eq!(
        d.header("Weft-Error"),
        Some("trap"),
        "{d:?} {}",
        log_text(&logs)
    );
    assert_eq!(&d.body[..], b"trap");
    bus.publish(Message::new("orders.t", "after"))
        .await
        .unwrap();
    assert_eq!(&next(&mut out).await.body[..], b"AFTER");

    // An err result and an oversized message are dead-lettered too.
    bus.publish(Message::new("orders.e", "error"))
        .await
        .unwrap();
    assert_eq!(next(&mut dead).await.header("Weft-Error"), Some("error"));
    bus.publish(Message::new("orders.big", vec![b'x'; 65]))
        .await
        .unwrap();
    assert_eq!(
        next(&mut dead).await.header("Weft-Error"),
        Some("too-large")
    );

    // Request through the guest's consumer.request: a responder on a granted subject.
    let mut svc = bus.subscribe("out.svc", None).await.unwrap();
    let responder = {
        let bus = bus.clone();
        tokio::spawn(async move {
            while let Some(m) = svc.next().await {
                if let Some(r) = m.reply_to {
                    bus.publish(Message::new(r, "pong")).await.unwrap();
                }
            }
        })
    };
    bus.publish(Message::new("orders.r", "request:out.svc"))
        .await
        .unwrap();
    let mut got_reply = false;
    for _ in 0..3 {
        let m = next(&mut out).await;
        if m.subject == "out.reply" {
            assert_eq!(&m.body[..], b"pong");
            got_reply = true;
            break;
        }
    }
    assert!(got_reply, "the guest's request got the responder's reply");
    responder.abort();

    until("counters settle", || {
        let s = w.messaging_stats();
        s.handled + s.failed() == s.received && s.in_flight == 0
    })
    .await;
    let s = w.messaging_stats();
    assert_eq!(s.failed_trap, 1, "{s:?}");
    assert_eq!(s.failed_error, 2, "{s:?}");
    assert_eq!(s.failed_too_large, 1, "{s:?}");
    assert_eq!(s.dead_lettered, 4, "{s:?}");
    assert!(s.publish_denied >= 1, "{s:?}");
    assert_eq!(s.requests, 1, "{s:?}");

    // Retired: the subscription is dropped, messages are no longer handled.
    w.retire();
    tokio::time::sleep(Duration::from_millis(100)).await;
    bus.publish(Message::new("orders.late", "late"))
        .await
        .unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(300), out.next())
            .await
            .is_err(),
        "a retired workload handles nothing"
    );
}

/// A flood with a slow reader: the runner holds at most maxInFlight x 2 messages, the
/// subscription's bounded queue the rest, and the publisher waits instead of growing memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messaging_backpressure_bounds_in_flight() {
    let bus: Arc<dyn Bus> = host_bus();
    let (w, _logs) = deploy(
        "msg-flood",
        "        subscriptions: \"flood.*\"\n        publish: \"sink.>\"\n        maxInFlight: \"2\"\n",
    )
    .await;
    // Nobody reads sink.> quickly: the handler's publishes are delivered to a subscription
    // that is read slowly, so the handler, then the lanes, then the bus fill up.
    let mut sink = bus.subscribe("sink.>", None).await.unwrap();
    let publisher = {
        let bus = bus.clone();
        tokio::spawn(async move {
            for i in 0..2000u32 {
                // The handler republishes each body to sink.x (granted).
                bus.publish(Message::new(
                    format!("flood.{}", i % 7),
                    "publish-to:sink.x",
                ))
                .await
                .unwrap();
            }
        })
    };
    // Nobody reads sink.> for a while: the handlers' publishes wait for room, the lanes fill,
    // the dispatcher stops reading, the subscription's queue fills and the publisher waits.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let held = w.messaging_stats();
    assert!(!publisher.is_finished(), "the publisher waits: {held:?}");
    // sink's queue (256) + one message blocked in each of the 2 lanes.
    assert!(
        held.received <= 256 + 2,
        "runner took {} messages",
        held.received
    );
    let mut max_in_flight = 0;
    let mut received = 0;
    while received < 2000 {
        tokio::time::sleep(Duration::from_micros(200)).await;
        max_in_flight = max_in_flight.max(w.messaging_stats().in_flight);
        if tokio::time::timeout(Duration::from_secs(5), sink.next())
            .await
            .unwrap()
            .is_some()
        {
            received += 1;
        }
    }
    publisher.await.unwrap();
    assert!(
        max_in_flight <= 2,
        "in flight {max_in_flight} > maxInFlight 2"
    );
    until("all handled", || w.messaging_stats().handled == 2000).await;
    w.retire();
}
