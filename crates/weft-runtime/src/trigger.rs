//! The message trigger runner (docs/messaging.md, "The trigger runner"): a workload granting
//! `wasmcloud:messaging/handler` subscribes to its `subscriptions` in its queue group, and each
//! message is handed to the component exporting `handler.handle-message`.
//!
//! ```text
//!  subscriptions ──> dispatcher ──hash(subject) % maxInFlight──> lane i ──> handle-message
//! ```
//!
//! Each lane holds one waiting message and handles one at a time (order per subject); a full
//! lane stops the dispatcher reading, so the subscription's bounded buffer is the only queue.
//! A message that is too large, traps, times out or returns `err` fails alone: counted, logged,
//! and published to `deadLetter` when set.

use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::{mpsc, watch};
use wasmtime::component::{Component, Linker};
use wasmtime::{Engine, Store};
use wasmtime_wasi::WasiCtxBuilder;
use weft_messaging::{Bus, Message, Stats};

use crate::state::{HostState, OutgoingHttp};
use weft_engine::logs::LogSink;
use weft_interfaces::plugins::BoundPlugins;
use weft_interfaces::plugins::messaging::BrokerMessage;
use weft_interfaces::plugins::messaging::bindings::{MessagingHandler, MessagingHandlerPre};
use weft_interfaces::stdio::{Output, SinkStream};
use weft_interfaces::wasi::WasiGrants;

/// The exported interface that makes a component a message handler.
pub const HANDLER_EXPORT: &str = "wasmcloud:messaging/handler@0.2.0";

/// Longest `Weft-Error-Detail` header on a dead letter.
const MAX_DETAIL: usize = 512;

/// What one workload version's runner is configured with.
pub struct TriggerSpec {
    /// `NAMESPACE/NAME`, for logs and the `Weft-Workload` header.
    pub workload: String,
    pub component: String,
    pub subscriptions: Vec<String>,
    pub queue_group: String,
    pub dead_letter: Option<String>,
    pub max_in_flight: usize,
    pub max_message_bytes: usize,
    /// Each message's deadline.
    pub timeout: Duration,
    /// Messages one instance handles before it is replaced (the component's
    /// `maxInvocations`; at least 1). A trap or timeout always replaces it.
    pub max_invocations: usize,
    pub grants: WasiGrants,
    pub hooks: OutgoingHttp,
    pub max_resources: usize,
    /// Where each message's `messaging.process` span starts (`None`: traces are off).
    pub traces: Option<Arc<dyn weft_interfaces::outbound::TraceRoots>>,
}

struct Runner {
    engine: Engine,
    pre: MessagingHandlerPre<HostState>,
    spec: TriggerSpec,
    plugins: BoundPlugins<HostState>,
    logs: LogSink,
    bus: Arc<dyn Bus>,
    stats: Arc<Stats>,
}

/// A running trigger; stops reading when dropped or [`Trigger::stop`]ped (messages already in
/// its lanes are finished).
pub struct Trigger {
    dispatcher: tokio::task::JoinHandle<()>,
    ready: watch::Receiver<Option<Result<(), String>>>,
    stats: Arc<Stats>,
}

impl Trigger {
    /// Links the handler component and starts subscribing (on the current tokio runtime).
    pub fn start(
        engine: &Engine,
        component: &Component,
        spec: TriggerSpec,
        plugins: BoundPlugins<HostState>,
        logs: LogSink,
        bus: Arc<dyn Bus>,
    ) -> Result<Trigger, String> {
        let mut linker = Linker::new(engine);
        weft_interfaces::wasi::add_to_linker(&mut linker).map_err(|e| format!("{e:#}"))?;
        plugins
            .add_to_linker(&mut linker)
            .map_err(|e| format!("{e:#}"))?;
        let pre = linker
            .instantiate_pre(component)
            .and_then(MessagingHandlerPre::new)
            .map_err(|e| format!("{e:#}"))?;
        let stats = plugins.messaging_stats().clone();
        let runner = Arc::new(Runner {
            engine: engine.clone(),
            pre,
            spec,
            plugins,
            logs,
            bus,
            stats: stats.clone(),
        });
        let (ready_tx, ready) = watch::channel(None);
        let handle = tokio::runtime::Handle::try_current()
            .map_err(|_| "the message trigger needs a tokio runtime".to_string())?;
        let dispatcher = handle.spawn(runner.dispatch(ready_tx));
        Ok(Trigger {
            dispatcher,
            ready,
            stats,
        })
    }

    /// Waits until every subscription is open (or failed to open).
    pub async fn ready(&self) -> Result<(), String> {
        let mut ready = self.ready.clone();
        loop {
            if let Some(result) = ready.borrow_and_update().clone() {
                return result;
            }
            if ready.changed().await.is_err() {
                return Err("the message trigger stopped before subscribing".into());
            }
        }
    }

    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }

    /// Stops reading the subscriptions (unsubscribes); messages in the lanes finish.
    pub fn stop(&self) {
        self.dispatcher.abort();
    }
}

impl Drop for Trigger {
    fn drop(&mut self) {
        self.dispatcher.abort();
    }
}

impl Runner {
    async fn dispatch(self: Arc<Self>, ready: watch::Sender<Option<Result<(), String>>>) {
        let mut subs = Vec::new();
        for pattern in &self.spec.subscriptions {
            match self
                .bus
                .subscribe(pattern, Some(&self.spec.queue_group))
                .await
            {
                Ok(s) => subs.push(s),
                Err(e) => {
                    let msg = format!("cannot subscribe to `{pattern}`: {e}");
                    self.log(&msg);
                    let _ = ready.send(Some(Err(msg)));
                    return;
                }
            }
        }
        if let Err(e) = self.bus.flush().await {
            self.log(&format!("subscriptions not confirmed by the bus: {e}"));
        }
        let _ = ready.send(Some(Ok(())));
        let lanes: Vec<mpsc::Sender<Message>> = (0..self.spec.max_in_flight.max(1))
            .map(|_| {
                let (tx, rx) = mpsc::channel(1);
                tokio::spawn(self.clone().lane(rx));
                tx
            })
            .collect();
        let mut incoming = futures::stream::select_all(subs);
        while let Some(msg) = incoming.next().await {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            msg.subject.hash(&mut h);
            let lane = (h.finish() % lanes.len() as u64) as usize;
            // A full lane waits here: the dispatcher stops reading (backpressure).
            if lanes[lane].send(msg).await.is_err() {
                return;
            }
        }
    }

    async fn lane(self: Arc<Self>, mut rx: mpsc::Receiver<Message>) {
        let mut cached = None;
        while let Some(msg) = rx.recv().await {
            self.stats.received.fetch_add(1, Relaxed);
            if let Some(stats) = &self.spec.grants.stats {
                stats.messages_received.inc();
            }
            self.stats.in_flight.fetch_add(1, Relaxed);
            let traced = self
                .spec
                .traces
                .as_ref()
                .and_then(|t| t.message(&self.spec.workload, &msg.subject, &msg.headers));
            let (tracer, span) = match traced {
                Some((tracer, span)) => (Some(tracer), Some(span)),
                None => (None, None),
            };
            let outcome = self.handle(&msg, &mut cached, tracer).await;
            if let Some(span) = span {
                span.end(outcome.as_ref().err().map(|(kind, _)| kind.to_string()));
            }
            self.stats.in_flight.fetch_sub(1, Relaxed);
            match outcome {
                Ok(()) => {
                    self.stats.handled.fetch_add(1, Relaxed);
                }
                Err((kind, detail)) => self.fail(msg, kind, &detail).await,
            }
        }
    }

    /// Handles one message on the lane's instance (`cached`: the instance and the messages
    /// it has handled), creating one when there is none; keeps it for the next message
    /// unless it trapped, timed out or reached `max_invocations`.
    async fn handle(
        &self,
        msg: &Message,
        cached: &mut Option<(Store<HostState>, MessagingHandler, usize)>,
        tracer: Option<Arc<dyn weft_interfaces::outbound::OutgoingTracer>>,
    ) -> Result<(), (&'static str, String)> {
        let max = self.spec.max_message_bytes;
        if msg.body.len() > max {
            return Err((
                "too-large",
                format!(
                    "{} bytes, more than config.maxMessageBytes ({max})",
                    msg.body.len()
                ),
            ));
        }
        let broker = BrokerMessage {
            subject: msg.subject.clone(),
            body: msg.body.to_vec(),
            reply_to: msg.reply_to.clone(),
        };
        let reply_to = msg.reply_to.clone();
        let taken = cached.take();
        let call = async {
            let (mut store, instance, uses) = match taken {
                Some((mut store, instance, uses)) => {
                    if let Some(m) = store.data_mut().plugins.messaging.as_mut() {
                        m.allow_reply(reply_to);
                    }
                    (store, instance, uses)
                }
                None => {
                    let mut store = self.new_store(reply_to)?;
                    let instance = self.pre.instantiate_async(&mut store).await?;
                    (store, instance, 0)
                }
            };
            // This message's host calls go under its span (or under none).
            store.data_mut().hooks.tracer = tracer;
            let result = instance
                .wasmcloud_messaging_handler()
                .call_handle_message(&mut store, &broker)
                .await?;
            Ok::<_, wasmtime::Error>((result, (store, instance, uses + 1)))
        };
        match tokio::time::timeout(self.spec.timeout, call).await {
            Err(_) => Err((
                "timeout",
                format!(
                    "handle-message ran past its {:?} deadline",
                    self.spec.timeout
                ),
            )),
            Ok(Err(trap)) => Err(("trap", format!("{trap:#}"))),
            Ok(Ok((result, kept))) => {
                if kept.2 < self.spec.max_invocations.max(1) {
                    *cached = Some(kept);
                }
                result.map_err(|e| ("error", e))
            }
        }
    }

    fn new_store(&self, reply_to: Option<String>) -> wasmtime::Result<Store<HostState>> {
        let component = &self.spec.component;
        let mut builder = WasiCtxBuilder::new();
        builder.stdout(SinkStream::new(
            self.logs.clone(),
            component,
            Output::Stdout,
        ));
        builder.stderr(SinkStream::new(
            self.logs.clone(),
            component,
            Output::Stderr,
        ));
        let mut plugins = self.plugins.instance(component);
        if let Some(m) = plugins.messaging.as_mut() {
            m.allow_reply(reply_to);
        }
        HostState::new_store(
            &self.engine,
            builder,
            &self.spec.grants,
            self.spec.hooks.clone(),
            plugins,
            self.spec.max_resources,
        )
    }

    /// Logs a failed message and dead-letters it, then counts it: once `handled + failed`
    /// reaches `received`, every dead letter has been counted too.
    async fn fail(&self, msg: Message, kind: &'static str, detail: &str) {
        self.report_failure(msg, kind, detail).await;
        let counter = match kind {
            "too-large" => &self.stats.failed_too_large,
            "timeout" => &self.stats.failed_timeout,
            "error" => &self.stats.failed_error,
            _ => &self.stats.failed_trap,
        };
        // Release: whoever sees this count sees the dead letter's count too (`Stats::snapshot`).
        counter.fetch_add(1, std::sync::atomic::Ordering::Release);
    }

    async fn report_failure(&self, msg: Message, kind: &'static str, detail: &str) {
        let mut detail: String = detail.replace(['\r', '\n'], " ");
        if detail.len() > MAX_DETAIL {
            let mut cut = MAX_DETAIL;
            while !detail.is_char_boundary(cut) {
                cut -= 1;
            }
            detail.truncate(cut);
        }
        self.log(&format!(
            "message on `{}` failed ({kind}): {detail}",
            msg.subject
        ));
        let Some(dead_letter) = &self.spec.dead_letter else {
            return;
        };
        if msg.header("Weft-Error").is_some() {
            // Already a dead letter (someone else's, or a loop through a wildcard): never
            // dead-letter it again.
            self.log(&format!(
                "not dead-lettering a message that already is one (from `{}`)",
                msg.subject
            ));
            return;
        }
        let mut out = Message::new(dead_letter.clone(), msg.body)
            .with_header("Weft-Error", kind)
            .with_header("Weft-Error-Detail", detail)
            .with_header("Weft-Subject", msg.subject)
            .with_header("Weft-Workload", self.spec.workload.clone());
        out.headers.extend(msg.headers);
        match self.bus.publish(out).await {
            Ok(()) => {
                self.stats.dead_lettered.fetch_add(1, Relaxed);
            }
            Err(e) => {
                self.stats.dead_letter_failed.fetch_add(1, Relaxed);
                self.log(&format!("dead letter to `{dead_letter}` failed: {e}"));
            }
        }
    }

    fn log(&self, message: &str) {
        tracing::warn!(workload = %self.spec.workload, "{message}");
        self.logs.push(&self.spec.component, "messaging", message);
    }
}
