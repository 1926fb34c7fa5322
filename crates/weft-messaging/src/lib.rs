//! Message buses behind `wasmcloud:messaging` (docs/messaging.md): one [`Bus`] per host,
//! shared by every workload on it.
//!
//! - [`InProcessBus`]: the embedded default. Subjects matched in memory with
//!   `weft_policy::messaging`; each subscription has a bounded queue, and a publish to a full
//!   queue waits for room (lossless, backpressure to the publisher).
//! - [`NatsBus`]: core NATS over a shared `async_nats::Client` (the lattice's connection, or
//!   `weft up --nats URL`). At-most-once; queue groups spread messages over replicas on every
//!   host.
//!
//! Nothing here knows about wasmtime or workloads: the host interface (the guest's
//! `consumer.publish`, the trigger runner) sits above and talks to `Arc<dyn Bus>`.

use std::fmt;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use futures::Stream;

mod inprocess;
mod nats;
#[cfg(feature = "test-server")]
pub mod testing;

pub use inprocess::{DEFAULT_QUEUE_CAPACITY, InProcessBus};
pub use nats::{DEFAULT_SUBSCRIPTION_CAPACITY, NatsBus, connect};

/// One message on a bus.
#[derive(Clone, PartialEq, Eq)]
pub struct Message {
    /// A literal subject.
    pub subject: String,
    /// Where a reply goes, if the sender expects one.
    pub reply_to: Option<String>,
    /// Headers (NATS headers on the NATS bus); names are case-sensitive, order is kept.
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

impl Message {
    /// A message with no reply subject and no headers.
    pub fn new(subject: impl Into<String>, body: impl Into<Bytes>) -> Self {
        Message {
            subject: subject.into(),
            reply_to: None,
            headers: Vec::new(),
            body: body.into(),
        }
    }

    /// Sets the reply subject.
    pub fn with_reply(mut self, reply_to: impl Into<String>) -> Self {
        self.reply_to = Some(reply_to.into());
        self
    }

    /// Adds a header.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// The first value of header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message")
            .field("subject", &self.subject)
            .field("reply_to", &self.reply_to)
            .field("headers", &self.headers)
            .field("body_len", &self.body.len())
            .finish()
    }
}

/// Why a bus operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BusError {
    #[error("invalid subject `{subject}`: {reason}")]
    InvalidSubject { subject: String, reason: String },
    #[error("no reply within {0:?}")]
    Timeout(Duration),
    #[error("no subscriber for `{0}`")]
    NoResponders(String),
    #[error("message of {size} bytes is larger than the bus accepts ({max} bytes)")]
    TooLarge { size: usize, max: usize },
    #[error("the bus is unavailable: {0}")]
    Unavailable(String),
}

/// A stream of the messages a subscription receives. Dropping it unsubscribes.
pub type Subscription = Pin<Box<dyn Stream<Item = Message> + Send>>;

/// A message bus: publish, request/reply and (queue) subscriptions on NATS-style subjects.
///
/// Object-safe; every workload of a host shares one `Arc<dyn Bus>`.
#[async_trait::async_trait]
pub trait Bus: Send + Sync + 'static {
    /// `in-process` or `nats`, for logs and `weft get`.
    fn kind(&self) -> &'static str;

    /// Publishes `msg` to everyone subscribed to a matching pattern (one member per queue
    /// group). Waits while the bus applies backpressure; a subject nobody listens on is not an
    /// error.
    async fn publish(&self, msg: Message) -> Result<(), BusError>;

    /// Publishes `msg` on a fresh reply subject and waits up to `timeout` for one reply.
    /// `msg.reply_to` is replaced.
    async fn request(&self, msg: Message, timeout: Duration) -> Result<Message, BusError>;

    /// Subscribes to `pattern` (`*` and `>` wildcards), optionally in a queue group: each
    /// message then goes to one member of the group.
    async fn subscribe(
        &self,
        pattern: &str,
        queue_group: Option<&str>,
    ) -> Result<Subscription, BusError>;

    /// Waits until what was published so far has left this process (NATS: a round trip to
    /// the server). In-process: nothing to wait for.
    async fn flush(&self) -> Result<(), BusError> {
        Ok(())
    }

    /// The largest body this bus carries, if it has a limit (NATS: the server's
    /// `max_payload`).
    fn max_payload(&self) -> Option<usize> {
        None
    }
}

/// Checks a subject a message is sent to (no wildcards).
pub(crate) fn check_subject(subject: &str) -> Result<(), BusError> {
    weft_policy::messaging::check_subject(subject).map_err(|e| BusError::InvalidSubject {
        subject: subject.chars().take(120).collect(),
        reason: e.to_string(),
    })
}

/// Per-workload-version counters of the messaging host interface (docs/messaging.md,
/// "Counters"): plain atomics, read with [`Stats::snapshot`].
#[derive(Debug, Default)]
pub struct Stats {
    pub received: std::sync::atomic::AtomicU64,
    pub handled: std::sync::atomic::AtomicU64,
    pub failed_trap: std::sync::atomic::AtomicU64,
    pub failed_timeout: std::sync::atomic::AtomicU64,
    pub failed_error: std::sync::atomic::AtomicU64,
    pub failed_too_large: std::sync::atomic::AtomicU64,
    pub dead_lettered: std::sync::atomic::AtomicU64,
    pub dead_letter_failed: std::sync::atomic::AtomicU64,
    pub published: std::sync::atomic::AtomicU64,
    pub publish_denied: std::sync::atomic::AtomicU64,
    pub requests: std::sync::atomic::AtomicU64,
    pub in_flight: std::sync::atomic::AtomicU64,
}

/// A copy of [`Stats`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    pub received: u64,
    pub handled: u64,
    pub failed_trap: u64,
    pub failed_timeout: u64,
    pub failed_error: u64,
    pub failed_too_large: u64,
    pub dead_lettered: u64,
    pub dead_letter_failed: u64,
    pub published: u64,
    pub publish_denied: u64,
    pub requests: u64,
    pub in_flight: u64,
}

impl StatsSnapshot {
    /// Messages that failed, for any reason.
    pub fn failed(&self) -> u64 {
        self.failed_trap + self.failed_timeout + self.failed_error + self.failed_too_large
    }
}

impl Stats {
    pub fn snapshot(&self) -> StatsSnapshot {
        // Acquire, in this order: a message counted as failed (a Release increment after its
        // dead letter) is seen with its dead letter counted.
        use std::sync::atomic::Ordering::Acquire;
        StatsSnapshot {
            received: self.received.load(Acquire),
            handled: self.handled.load(Acquire),
            failed_trap: self.failed_trap.load(Acquire),
            failed_timeout: self.failed_timeout.load(Acquire),
            failed_error: self.failed_error.load(Acquire),
            failed_too_large: self.failed_too_large.load(Acquire),
            dead_lettered: self.dead_lettered.load(Acquire),
            dead_letter_failed: self.dead_letter_failed.load(Acquire),
            published: self.published.load(Acquire),
            publish_denied: self.publish_denied.load(Acquire),
            requests: self.requests.load(Acquire),
            in_flight: self.in_flight.load(Acquire),
        }
    }
}
