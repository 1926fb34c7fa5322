//! `wasmcloud:messaging` over NATS: two `weft up --nats URL` hosts against a real nats-server
//! (`WEFT_NATS_SERVER`; fails loudly when missing), each running a replica of the real
//! `msg-transform` guest in one queue group. Delivery (each message handled exactly once),
//! queue-group sharing across the two hosts, an ungranted publish refused, dead letters on
//! trap naming the replica that failed.
// Test code: a failed unwrap is a test failure with a location (docs/lints.md).
#![allow(clippy::unwrap_used)]

mod common;
use common::*;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use futures::StreamExt;
use weft_messaging::testing::NatsServer;

fn manifest(name: &str) -> String {
    format!(
        "apiVersion: weft.dev/v1alpha1\nkind: Workload\nmetadata:\n  name: {name}\nspec:\n  components:\n    - name: transform\n      image: {}\n  hostInterfaces:\n    - namespace: wasmcloud\n      package: messaging\n      interfaces: [handler, consumer]\n      config:\n        subscriptions: \"orders.*\"\n        queueGroup: transformers\n        publish: \"out.>\"\n        deadLetter: failed.orders\n",
        guest("msg-transform.wasm").display()
    )
}

#[test]
fn messaging_over_nats_queue_group_across_two_hosts() {
    let nats = NatsServer::start();
    let url = nats.url();
    let dir = tempfile::tempdir().unwrap();
    let a = Up::start_with(&dir.path().join("a"), &[], &["--nats", &url]);
    let b = Up::start_with(&dir.path().join("b"), &[], &["--nats", &url]);
    assert!(
        a.banner.iter().any(|l| l.contains("Messaging over NATS")),
        "{:?}",
        a.banner
    );
    a.deploy_ok(&write(dir.path(), "r1.yaml", &manifest("msg-r1")));
    b.deploy_ok(&write(dir.path(), "r2.yaml", &manifest("msg-r2")));

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = nats.client().await;
        let mut out = client.subscribe("out.>").await.unwrap();
        let mut dead = client.subscribe("failed.orders").await.unwrap();
        let mut secret = client.subscribe("secret.>").await.unwrap();
        client.flush().await.unwrap();
        // The hosts subscribe asynchronously after the deploy returns: wait for a round trip.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            client.publish("orders.warmup", "w".into()).await.unwrap();
            if let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(200), out.next()).await
            {
                assert_eq!(&m.payload[..], b"W");
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no replica answered"
            );
        }
        // Let a second replica's subscription settle, then drain stray warmups.
        tokio::time::sleep(Duration::from_millis(300)).await;
        while tokio::time::timeout(Duration::from_millis(200), out.next())
            .await
            .is_ok()
        {}

        // Delivery: each of 200 messages is transformed exactly once, by one replica.
        for i in 0..200 {
            client
                .publish(format!("orders.n{i}"), format!("m{i}").into())
                .await
                .unwrap();
        }
        client.flush().await.unwrap();
        let mut seen = BTreeSet::new();
        while seen.len() < 200 {
            let m = tokio::time::timeout(Duration::from_secs(10), out.next())
                .await
                .expect("200 transformed messages within 10 s")
                .unwrap();
            let i = m
                .subject
                .as_str()
                .strip_prefix("out.n")
                .unwrap()
                .to_string();
            assert_eq!(m.payload, format!("M{i}").as_bytes());
            assert!(seen.insert(i), "a message was handled twice");
        }
        assert!(
            tokio::time::timeout(Duration::from_millis(300), out.next())
                .await
                .is_err(),
            "nothing is handled twice"
        );

        // Queue-group sharing across hosts: 100 failing messages, each dead-lettered once,
        // by replicas on both hosts (Weft-Workload names the replica).
        for i in 0..100 {
            client
                .publish(format!("orders.t{i}"), "trap".into())
                .await
                .unwrap();
        }
        client.flush().await.unwrap();
        let mut by_replica: BTreeMap<String, usize> = BTreeMap::new();
        let mut failed = BTreeSet::new();
        while failed.len() < 100 {
            let m = tokio::time::timeout(Duration::from_secs(20), dead.next())
                .await
                .expect("100 dead letters within 20 s")
                .unwrap();
            let h = m.headers.as_ref().unwrap();
            assert_eq!(h.get("Weft-Error").unwrap().as_str(), "trap");
            let subject = h.get("Weft-Subject").unwrap().as_str().to_string();
            assert!(failed.insert(subject), "dead-lettered twice");
            *by_replica
                .entry(h.get("Weft-Workload").unwrap().as_str().to_string())
                .or_default() += 1;
        }
        assert_eq!(
            by_replica.len(),
            2,
            "both replicas took messages: {by_replica:?}"
        );

        // An ungranted publish is refused to the guest (and nothing reaches secret.>).
        client
            .publish("orders.bad", "publish-to:secret.x".into())
            .await
            .unwrap();
        let m = tokio::time::timeout(Duration::from_secs(10), dead.next())
            .await
            .unwrap()
            .unwrap();
        let h = m.headers.as_ref().unwrap();
        assert_eq!(h.get("Weft-Error").unwrap().as_str(), "error");
        assert!(
            h.get("Weft-Error-Detail")
                .unwrap()
                .as_str()
                .contains("access denied"),
            "{h:?}"
        );
        assert!(
            tokio::time::timeout(Duration::from_millis(300), secret.next())
                .await
                .is_err(),
            "an ungranted publish must not reach the server"
        );
    });
    a.stop();
    b.stop();
}

/// `examples/transform/weft.yaml` as its README says, on `weft up --nats` with a real
/// nats-server: `hello` on orders.new comes out as `HELLO` on out.new.
#[test]
fn the_transform_example_works_as_documented() {
    let nats = NatsServer::start();
    let url = nats.url();
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
        &[],
        &["--nats", &url, "--metrics-addr", "127.0.0.1:0"],
    );
    up.deploy_ok(&file);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = nats.client().await;
        let mut out = client.subscribe("out.new").await.unwrap();
        client.flush().await.unwrap();
        // The host subscribes after the deploy returns: publish until the transform answers.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            client.publish("orders.new", "hello".into()).await.unwrap();
            if let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(200), out.next()).await
            {
                assert_eq!(&m.payload[..], b"HELLO");
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the transform example answered nothing"
            );
        }
    });
    // The workload's message counts (`weft_messages_total`): what its handler received, and
    // what it published.
    let metrics_addr: std::net::SocketAddr = up.metrics_addr();
    let text = request(metrics_addr, "GET", "/metrics", &[("Host", "m")], b"").text();
    let value = |series: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {series} in\n{text}"))
    };
    assert!(value(r#"weft_messages_total{workload="transform",direction="received"}"#) >= 1.0);
    assert!(value(r#"weft_messages_total{workload="transform",direction="sent"}"#) >= 1.0);
    up.stop();
}
