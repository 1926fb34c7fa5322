//! The same behaviour from both buses: the in-process bus and core NATS against a real
//! nats-server (`WEFT_NATS_SERVER`; the test fails, loudly, when it is missing).
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use weft_messaging::testing::NatsServer;
use weft_messaging::{Bus, BusError, InProcessBus, Message, NatsBus, Subscription};

const WAIT: Duration = Duration::from_secs(5);

async fn next(sub: &mut Subscription) -> Message {
    tokio::time::timeout(WAIT, sub.next())
        .await
        .expect("a message within 5 s")
        .expect("the subscription is open")
}

/// Nothing more arrives within a short quiet period.
async fn quiet(sub: &mut Subscription) {
    if let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(200), sub.next()).await {
        panic!("unexpected message {m:?}");
    }
}

async fn conformance(bus: Arc<dyn Bus>) {
    // Wildcards: `*` one token, `>` the rest.
    let mut star = bus.subscribe("orders.*", None).await.unwrap();
    let mut tail = bus.subscribe("orders.>", None).await.unwrap();
    bus.flush().await.unwrap();
    bus.publish(Message::new("orders.created", "a").with_header("K", "v"))
        .await
        .unwrap();
    bus.publish(Message::new("orders.eu.created", "b"))
        .await
        .unwrap();
    bus.publish(Message::new("other.created", "c"))
        .await
        .unwrap();
    bus.flush().await.unwrap();
    let m = next(&mut star).await;
    assert_eq!(
        (m.subject.as_str(), &m.body[..]),
        ("orders.created", &b"a"[..])
    );
    assert_eq!(m.header("K"), Some("v"));
    quiet(&mut star).await;
    assert_eq!(next(&mut tail).await.subject, "orders.created");
    assert_eq!(next(&mut tail).await.subject, "orders.eu.created");
    quiet(&mut tail).await;
    drop(star);
    drop(tail);

    // Order per publisher and subject.
    let mut ordered = bus.subscribe("seq", None).await.unwrap();
    bus.flush().await.unwrap();
    for i in 0..200u32 {
        bus.publish(Message::new("seq", i.to_string()))
            .await
            .unwrap();
    }
    for i in 0..200u32 {
        assert_eq!(next(&mut ordered).await.body, i.to_string().as_bytes());
    }
    drop(ordered);

    // A queue group shares messages (each to one member), a plain subscriber sees them all.
    let mut q1 = bus.subscribe("work.>", Some("workers")).await.unwrap();
    let mut q2 = bus.subscribe("work.>", Some("workers")).await.unwrap();
    let mut all = bus.subscribe("work.>", None).await.unwrap();
    bus.flush().await.unwrap();
    for i in 0..100u32 {
        bus.publish(Message::new(format!("work.{i}"), "x"))
            .await
            .unwrap();
    }
    bus.flush().await.unwrap();
    let mut seen = BTreeSet::new();
    for _ in 0..100 {
        assert!(seen.insert(next(&mut all).await.subject));
    }
    let mut shared = BTreeSet::new();
    let (mut n1, mut n2) = (0, 0);
    while shared.len() < 100 {
        tokio::select! {
            Some(m) = q1.next() => { n1 += 1; assert!(shared.insert(m.subject), "delivered twice"); }
            Some(m) = q2.next() => { n2 += 1; assert!(shared.insert(m.subject), "delivered twice"); }
            _ = tokio::time::sleep(WAIT) => panic!("queue group got {} of 100", shared.len()),
        }
    }
    assert_eq!(shared, seen);
    assert!(n1 > 0 && n2 > 0, "both members get messages: {n1} / {n2}");
    quiet(&mut q1).await;
    quiet(&mut q2).await;
    drop((q1, q2, all));

    // Request/reply, no responders, timeout.
    let mut server = bus.subscribe("svc.echo", None).await.unwrap();
    bus.flush().await.unwrap();
    let responder = {
        let bus = bus.clone();
        tokio::spawn(async move {
            while let Some(m) = server.next().await {
                let reply = m.reply_to.clone().unwrap();
                let body = [&b"re:"[..], &m.body[..]].concat();
                bus.publish(Message::new(reply, body)).await.unwrap();
            }
        })
    };
    let reply = bus
        .request(Message::new("svc.echo", "hi"), WAIT)
        .await
        .unwrap();
    assert_eq!(&reply.body[..], b"re:hi");
    assert_eq!(
        bus.request(Message::new("svc.nobody", "hi"), WAIT).await,
        Err(BusError::NoResponders("svc.nobody".into()))
    );
    let _silent = bus.subscribe("svc.silent", None).await.unwrap();
    bus.flush().await.unwrap();
    let t = Duration::from_millis(300);
    assert_eq!(
        bus.request(Message::new("svc.silent", "hi"), t).await,
        Err(BusError::Timeout(t))
    );
    responder.abort();

    // Bad subjects are refused before anything is sent.
    for bad in ["", "a..b", "a b", "orders.*", "x\r\nPUB y 1"] {
        assert!(
            matches!(
                bus.publish(Message::new(bad, "x")).await,
                Err(BusError::InvalidSubject { .. })
            ),
            "{bad:?}"
        );
    }
    assert!(bus.subscribe("a.>.b", None).await.is_err());

    // Dropping a subscription unsubscribes: a request finds no responder afterwards.
    let sub = bus.subscribe("gone", None).await.unwrap();
    drop(sub);
    bus.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        bus.request(Message::new("gone", ""), Duration::from_secs(2))
            .await,
        Err(BusError::NoResponders("gone".into()))
    );
}

#[tokio::test]
async fn in_process_bus() {
    conformance(Arc::new(InProcessBus::default())).await;
}

#[tokio::test]
async fn nats_bus() {
    let server = NatsServer::start();
    let bus = NatsBus::new(server.client().await);
    conformance(Arc::new(bus)).await;
}

/// In-process: a full queue makes the publisher wait (no loss, no growth), and it resumes as
/// soon as the subscriber reads.
#[tokio::test]
async fn in_process_backpressure() {
    let bus = InProcessBus::new(4);
    let mut sub = bus.subscribe("flood", None).await.unwrap();
    for i in 0..4u32 {
        bus.publish(Message::new("flood", i.to_string()))
            .await
            .unwrap();
    }
    let blocked = tokio::time::timeout(
        Duration::from_millis(200),
        bus.publish(Message::new("flood", "4")),
    )
    .await;
    assert!(blocked.is_err(), "a publish to a full queue waits");
    let publisher = {
        let bus = bus.clone();
        tokio::spawn(async move {
            for i in 4..1000u32 {
                bus.publish(Message::new("flood", i.to_string()))
                    .await
                    .unwrap();
            }
        })
    };
    for i in 0..1000u32 {
        assert_eq!(next(&mut sub).await.body, i.to_string().as_bytes());
    }
    publisher.await.unwrap();
    drop(sub);
    assert_eq!(bus.subscriptions(), 0);
}

/// NATS: the server's max_payload is enforced before sending.
#[tokio::test]
async fn nats_too_large() {
    let server = NatsServer::start_with_config("max_payload: 1024\n");
    let bus = NatsBus::new(server.client().await);
    assert_eq!(bus.max_payload(), Some(1024));
    assert!(matches!(
        bus.publish(Message::new("big", vec![0u8; 2048])).await,
        Err(BusError::TooLarge { max: 1024, .. })
    ));
    bus.publish(Message::new("small", vec![0u8; 512]))
        .await
        .unwrap();
}
