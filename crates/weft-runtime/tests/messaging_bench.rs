//! Messaging throughput and latency (docs/benchmarks.md, "Messaging"): the real
//! `msg-transform` guest as a stream transform (orders.* -> upper-case -> out.*) against a
//! native Rust consumer doing the same transform on the same bus. Bounded: a fixed message
//! count, 60 s at most. `cargo test` runs it on the in-process bus (a debug build: a smoke run
//! that checks every message is transformed, nothing failed, and prints the table's figures);
//! the published figures come from a release build, once per bus:
//!
//! ```text
//! cargo test --release -p weft-runtime --test messaging_bench -- --nocapture
//! WEFT_BENCH_BUS=nats cargo test --release -p weft-runtime --test messaging_bench -- --nocapture
//! ```
// Test code: a failed unwrap is a test failure with a location (docs/lints.md).
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use weft_messaging::testing::NatsServer;
use weft_messaging::{Bus, Message};
use weft_runtime::engine::{EngineOptions, WeftEngine};
use weft_runtime::logs::LogSink;
use weft_runtime::plugins::messaging::{host_bus, set_host_bus};
use weft_runtime::workload::{DeployContext, Workload, WorkloadDefaults};

const FLOOD: usize = 20_000;
const PINGS: usize = 2_000;
const WINDOW: usize = 1024;

fn guest(name: &str) -> PathBuf {
    let dir = std::env::var_os("WEFT_GUESTS_DIR").expect("WEFT_GUESTS_DIR (build-guests.sh)");
    PathBuf::from(dir).join(name)
}

async fn deploy() -> Workload {
    let text = format!(
        "apiVersion: weft.dev/v1alpha1\nkind: Workload\nmetadata:\n  name: bench\nspec:\n  components:\n    - name: transform\n      image: {}\n      maxInvocations: {}\n  hostInterfaces:\n    - namespace: wasmcloud\n      package: messaging\n      interfaces: [handler, consumer]\n      config:\n        subscriptions: \"orders.*\"\n        publish: \"out.>\"\n        maxInFlight: \"16\"\n",
        guest("msg-transform.wasm").display(),
        reuse()
    );
    let m = weft_manifest::parse_str(&text, &std::env::temp_dir().join("bench.yaml"))
        .unwrap()
        .remove(0);
    let engine = WeftEngine::new(&EngineOptions::default()).unwrap();
    let data = tempfile::tempdir().unwrap().keep();
    let w = tokio::task::spawn_blocking(move || {
        let ctx = DeployContext {
            defaults: WorkloadDefaults::default(),
            engine: &engine,
            cache: None,
            data_dir: data,
            logs: LogSink::new("bench"),
            internal: None,
            stats: None,
            traces: None,
        };
        Workload::deploy(&ctx, &m)
    })
    .await
    .unwrap()
    .unwrap();
    w.messaging_ready().await.unwrap();
    w
}

/// Messages per instance (`WEFT_BENCH_REUSE`, default 1: a fresh instance per message).
fn reuse() -> u32 {
    std::env::var("WEFT_BENCH_REUSE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
}

/// The native consumer: the same transform as the guest, as a plain tokio task on the bus.
fn native(bus: Arc<dyn Bus>, sub: weft_messaging::Subscription) {
    tokio::spawn(async move {
        let mut sub = sub;
        while let Some(m) = sub.next().await {
            let last = m.subject.rsplit('.').next().unwrap_or("none").to_string();
            let body = m.body.to_ascii_uppercase();
            bus.publish(Message::new(format!("nout.{last}"), body))
                .await
                .unwrap();
        }
    });
}

/// `(messages/s over a flood of FLOOD, p50 and p99 of one-at-a-time round trips)`.
async fn measure(bus: &Arc<dyn Bus>, input: &str, output: &str) -> (f64, Duration, Duration) {
    let mut out = bus.subscribe(&format!("{output}.>"), None).await.unwrap();
    bus.flush().await.unwrap();
    // Latency: one message at a time, publish -> transformed message back.
    let mut lat = Vec::with_capacity(PINGS);
    for i in 0..PINGS {
        let t = Instant::now();
        bus.publish(Message::new(format!("{input}.p"), format!("p{i}")))
            .await
            .unwrap();
        let m = tokio::time::timeout(Duration::from_secs(10), out.next())
            .await
            .unwrap()
            .unwrap();
        lat.push(t.elapsed());
        assert_eq!(m.body, format!("P{i}").as_bytes());
    }
    lat.sort();
    // Throughput: FLOOD messages over 64 subjects, published by one task with at most WINDOW
    // outstanding (core NATS drops past a subscriber's buffer rather than queue), all received.
    let window = Arc::new(tokio::sync::Semaphore::new(WINDOW));
    let publisher = {
        let bus = bus.clone();
        let input = input.to_string();
        let window = window.clone();
        tokio::spawn(async move {
            for i in 0..FLOOD {
                window.acquire().await.unwrap().forget();
                bus.publish(Message::new(format!("{input}.s{}", i % 64), "hello world"))
                    .await
                    .unwrap();
            }
            bus.flush().await.unwrap();
        })
    };
    let t = Instant::now();
    for _ in 0..FLOOD {
        tokio::time::timeout(Duration::from_secs(60), out.next())
            .await
            .expect("the flood drains within 60 s")
            .unwrap();
        window.add_permits(1);
    }
    let rate = FLOOD as f64 / t.elapsed().as_secs_f64();
    publisher.await.unwrap();
    (rate, lat[PINGS / 2], lat[PINGS * 99 / 100])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messaging_transform_throughput() {
    let _server;
    let kind = std::env::var("WEFT_BENCH_BUS").unwrap_or_default();
    if kind == "nats" {
        let server = NatsServer::start();
        let client = weft_messaging::connect(&server.url(), Duration::from_secs(10))
            .await
            .unwrap();
        set_host_bus(Arc::new(weft_messaging::NatsBus::new(client))).unwrap();
        _server = Some(server);
    } else {
        _server = None;
    }
    let bus = host_bus();
    let w = deploy().await;
    let sub = bus.subscribe("native.*", Some("native")).await.unwrap();
    native(bus.clone(), sub);
    let (n_rate, n_p50, n_p99) = measure(&bus, "native", "nout").await;
    let (g_rate, g_p50, g_p99) = measure(&bus, "orders", "out").await;
    println!("bus: {}, maxInvocations {}", bus.kind(), reuse());
    println!("native consumer: {n_rate:.0} msg/s, round trip p50 {n_p50:?} p99 {n_p99:?}");
    println!("wasm transform:  {g_rate:.0} msg/s, round trip p50 {g_p50:?} p99 {g_p99:?}");
    println!("ratio (wasm / native): {:.2}", g_rate / n_rate);
    let s = w.messaging_stats();
    assert_eq!(s.failed(), 0, "{s:?}");
    w.retire();
}
