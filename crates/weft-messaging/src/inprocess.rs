//! The in-process bus: a table of subscriptions, matched linearly with the policy crate's
//! matcher, each with a bounded queue. A publish waits for room in every queue it delivers to,
//! so a flood slows its publisher instead of growing memory or losing messages.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::{Stream, StreamExt};
use tokio::sync::mpsc;

use crate::{Bus, BusError, Message, Subscription, check_subject};

/// Messages one subscription holds before publishers wait.
pub const DEFAULT_QUEUE_CAPACITY: usize = 256;

struct Sub {
    id: u64,
    pattern: String,
    queue_group: Option<String>,
    tx: mpsc::Sender<Message>,
}

#[derive(Default)]
struct Table {
    subs: Vec<Sub>,
}

struct Inner {
    table: RwLock<Table>,
    next_id: AtomicU64,
    /// Round-robin counter for queue groups.
    turn: AtomicU64,
    capacity: usize,
}

/// The embedded bus of one host (docs/messaging.md, "Backends").
#[derive(Clone)]
pub struct InProcessBus {
    inner: Arc<Inner>,
}

impl Default for InProcessBus {
    fn default() -> Self {
        InProcessBus::new(DEFAULT_QUEUE_CAPACITY)
    }
}

impl InProcessBus {
    /// A bus whose subscriptions each hold up to `capacity` messages (at least 1).
    pub fn new(capacity: usize) -> Self {
        InProcessBus {
            inner: Arc::new(Inner {
                table: RwLock::new(Table::default()),
                next_id: AtomicU64::new(1),
                turn: AtomicU64::new(0),
                capacity: capacity.max(1),
            }),
        }
    }

    /// Subscriptions open now.
    pub fn subscriptions(&self) -> usize {
        self.read().subs.len()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Table> {
        match self.inner.table.read() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// The queues `subject` is delivered to: every plain subscription that matches, and one
    /// member of each queue group with a matching member (round robin).
    fn targets(&self, subject: &str) -> Vec<mpsc::Sender<Message>> {
        let table = self.read();
        let mut plain = Vec::new();
        let mut groups: BTreeMap<&str, Vec<&mpsc::Sender<Message>>> = BTreeMap::new();
        for s in &table.subs {
            if !weft_policy::messaging::pattern_matches(&s.pattern, subject) {
                continue;
            }
            match &s.queue_group {
                None => plain.push(s.tx.clone()),
                Some(g) => groups.entry(g.as_str()).or_default().push(&s.tx),
            }
        }
        if !groups.is_empty() {
            let turn = self.inner.turn.fetch_add(1, Ordering::Relaxed);
            for members in groups.values() {
                // Prefer a member with room, starting at this turn's position.
                let n = members.len();
                let start = (turn % n as u64) as usize;
                let pick = (0..n)
                    .map(|i| members[(start + i) % n])
                    .find(|tx| tx.capacity() > 0)
                    .unwrap_or(members[start]);
                plain.push(pick.clone());
            }
        }
        plain
    }

    /// Delivers `msg`; returns how many subscriptions took it.
    async fn deliver(&self, msg: Message) -> usize {
        let targets = self.targets(&msg.subject);
        let mut delivered = 0;
        let n = targets.len();
        for (i, tx) in targets.into_iter().enumerate() {
            let m = if i + 1 == n {
                // The last one takes the message itself (no clone).
                return delivered + usize::from(tx.send(msg).await.is_ok());
            } else {
                msg.clone()
            };
            // A closed receiver is a subscription being dropped: skip it.
            if tx.send(m).await.is_ok() {
                delivered += 1;
            }
        }
        delivered
    }

    fn add(&self, pattern: &str, queue_group: Option<&str>, capacity: usize) -> InProcessSub {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let mut table = match self.inner.table.write() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        table.subs.push(Sub {
            id,
            pattern: pattern.to_string(),
            queue_group: queue_group.map(str::to_string),
            tx,
        });
        InProcessSub {
            rx,
            bus: Arc::downgrade(&self.inner),
            id,
        }
    }
}

/// A subscription's receiving end; removes itself from the table when dropped.
struct InProcessSub {
    rx: mpsc::Receiver<Message>,
    bus: Weak<Inner>,
    id: u64,
}

impl Stream for InProcessSub {
    type Item = Message;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Message>> {
        self.rx.poll_recv(cx)
    }
}

impl Drop for InProcessSub {
    fn drop(&mut self) {
        if let Some(inner) = self.bus.upgrade() {
            let mut table = match inner.table.write() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
            table.subs.retain(|s| s.id != self.id);
        }
    }
}

#[async_trait::async_trait]
impl Bus for InProcessBus {
    fn kind(&self) -> &'static str {
        "in-process"
    }

    async fn publish(&self, msg: Message) -> Result<(), BusError> {
        check_subject(&msg.subject)?;
        if let Some(reply) = &msg.reply_to {
            check_subject(reply)?;
        }
        self.deliver(msg).await;
        Ok(())
    }

    async fn request(&self, mut msg: Message, timeout: Duration) -> Result<Message, BusError> {
        check_subject(&msg.subject)?;
        let inbox = format!(
            "_INBOX.weft.{}",
            self.inner.next_id.fetch_add(1, Ordering::Relaxed)
        );
        let mut replies = self.add(&inbox, None, 1);
        msg.reply_to = Some(inbox);
        let subject = msg.subject.clone();
        let wait = async {
            if self.deliver(msg).await == 0 {
                return Err(BusError::NoResponders(subject));
            }
            replies
                .next()
                .await
                .ok_or_else(|| BusError::Unavailable("the bus was dropped".into()))
        };
        tokio::time::timeout(timeout, wait)
            .await
            .map_err(|_| BusError::Timeout(timeout))?
    }

    async fn subscribe(
        &self,
        pattern: &str,
        queue_group: Option<&str>,
    ) -> Result<Subscription, BusError> {
        check_pattern(pattern)?;
        Ok(Box::pin(self.add(
            pattern,
            queue_group,
            self.inner.capacity,
        )))
    }
}

/// A subscription pattern must be shape-valid (wildcards allowed; reserved subjects are fine
/// for the host's own inboxes).
pub(crate) fn check_pattern(pattern: &str) -> Result<(), BusError> {
    weft_policy::messaging::check_pattern_shape(pattern).map_err(|e| BusError::InvalidSubject {
        subject: pattern.chars().take(120).collect(),
        reason: e.to_string(),
    })
}
