//! `wasmcloud:messaging@0.2.0` (docs/messaging.md): the `consumer` import (publish and
//! request on granted subjects only) and the bindings of the `handler` export, which the
//! trigger runner (`trigger.rs`) calls once per message.
//!
//! The bus is the host's: one `Arc<dyn Bus>` per process ([`host_bus`]), the in-process bus
//! unless `weft up --nats URL` installed a NATS one with [`set_host_bus`] before the first
//! workload was deployed.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use wasmtime::component::{HasData, Linker};
use weft_messaging::{Bus, BusError, InProcessBus, Message, Stats};
use weft_policy::messaging::SubjectGrants;

use super::{BindContext, Binding, HostPlugin, PluginError, PluginInstances, PluginView};
use weft_engine::logs::LogSink;

pub mod bindings {
    wasmtime::component::bindgen!({
        path: "../weft-messaging/wit",
        world: "wasmcloud:messaging/messaging-handler",
        imports: { default: async },
        exports: { default: async },
    });
}

use bindings::wasmcloud::messaging::consumer::Host;
pub use bindings::wasmcloud::messaging::types::BrokerMessage;

static HOST_BUS: OnceLock<Arc<dyn Bus>> = OnceLock::new();

/// The host's bus: the one [`set_host_bus`] installed, else an in-process bus created on first
/// use.
pub fn host_bus() -> Arc<dyn Bus> {
    HOST_BUS
        .get_or_init(|| Arc::new(InProcessBus::default()))
        .clone()
}

/// Installs the host's bus (`weft up --nats URL`). Fails when a bus is already in use.
pub fn set_host_bus(bus: Arc<dyn Bus>) -> Result<(), String> {
    let kind = bus.kind();
    HOST_BUS.set(bus).map_err(|_| {
        format!(
            "the host's message bus is already in use ({}); the {kind} bus must be set before \
             the first workload is deployed",
            host_bus().kind()
        )
    })
}

pub struct MessagingPlugin;

/// What every instance of one workload version shares.
pub struct Shared {
    pub bus: Arc<dyn Bus>,
    pub publish: SubjectGrants,
    pub consumer: bool,
    pub max_message_bytes: usize,
    pub stats: Arc<Stats>,
    pub logs: LogSink,
}

/// Per-instance state: the shared grant, and the reply subject of the message being handled
/// (the instance may publish to it, granted or not).
#[derive(Clone)]
pub struct Instance {
    shared: Arc<Shared>,
    component: Arc<str>,
    reply_to: Option<String>,
}

impl Instance {
    /// Lets this instance publish to `subject` (the `reply-to` of the message it handles).
    pub fn allow_reply(&mut self, subject: Option<String>) {
        self.reply_to = subject;
    }
}

struct Bound {
    shared: Arc<Shared>,
}

impl<T: PluginView + 'static> HostPlugin<T> for MessagingPlugin {
    fn package(&self) -> &'static str {
        "wasmcloud:messaging"
    }
    fn interfaces(&self) -> &'static [&'static str] {
        &[
            "wasmcloud:messaging/consumer",
            "wasmcloud:messaging/handler",
            "wasmcloud:messaging/types",
        ]
    }
    fn bind(&self, ctx: &BindContext<'_>) -> Result<Arc<dyn Binding<T>>, PluginError> {
        let index = ctx.entry_index.unwrap_or_default();
        let Some(config) = ctx.entry.and_then(|e| e.messaging_config()) else {
            return Err(PluginError {
                field: format!("spec.hostInterfaces[{index}]"),
                message: "not a wasmcloud:messaging grant".into(),
                hint: "grant `{ namespace: wasmcloud, package: messaging, interfaces: [handler, \
                       consumer] }`"
                    .into(),
            });
        };
        Ok(Arc::new(Bound {
            shared: Arc::new(Shared {
                bus: host_bus(),
                publish: config.publish,
                consumer: config.consumer,
                max_message_bytes: config.max_message_bytes as usize,
                stats: ctx.messaging_stats.clone(),
                logs: ctx.logs.clone(),
            }),
        }))
    }
}

struct Messaging;

impl HasData for Messaging {
    type Data<'a> = MessagingView<'a>;
}

pub struct MessagingView<'a>(
    Option<&'a Instance>,
    Option<&'a Arc<weft_stats::WorkloadStats>>,
    Option<&'a Arc<dyn crate::outbound::OutgoingTracer>>,
);

impl MessagingView<'_> {
    /// The publish grant decision for `subject`, logged and counted when refused.
    fn check(&self, inst: &Instance, subject: &str, what: &str) -> Result<(), String> {
        if inst.reply_to.as_deref() == Some(subject) {
            return Ok(());
        }
        let denied = if !inst.shared.consumer {
            Some(format!(
                "access denied: wasmcloud:messaging/consumer is not granted ({what} to `{}`)",
                truncate(subject)
            ))
        } else {
            inst.shared
                .publish
                .check(subject)
                .err()
                .map(|e| format!("access denied: {what}: {e}"))
        };
        match denied {
            None => Ok(()),
            Some(message) => {
                inst.shared
                    .stats
                    .publish_denied
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                inst.shared.logs.push(
                    &inst.component,
                    "messaging",
                    &format!(
                        "{message} (hint: add the subject to config.publish of the \
                         wasmcloud:messaging grant)"
                    ),
                );
                Err(message)
            }
        }
    }

    fn check_size(inst: &Instance, len: usize) -> Result<(), String> {
        let max = inst.shared.max_message_bytes;
        if len > max {
            return Err(format!(
                "too large: {len} bytes, this workload sends at most {max} (config.maxMessageBytes)"
            ));
        }
        Ok(())
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(120).collect()
}

fn bus_error(e: BusError) -> String {
    match e {
        BusError::InvalidSubject { .. } => format!("invalid subject: {e}"),
        BusError::Timeout(_) => format!("timeout: {e}"),
        BusError::TooLarge { .. } => format!("too large: {e}"),
        BusError::NoResponders(_) | BusError::Unavailable(_) => format!("unavailable: {e}"),
    }
}

impl bindings::wasmcloud::messaging::types::Host for MessagingView<'_> {}

impl Host for MessagingView<'_> {
    async fn request(
        &mut self,
        subject: String,
        body: Vec<u8>,
        timeout_ms: u32,
    ) -> Result<BrokerMessage, String> {
        let Some(inst) = self.0 else {
            return Err("unavailable: wasmcloud:messaging is not bound to this instance".into());
        };
        self.check(inst, &subject, "request")?;
        Self::check_size(inst, body.len())?;
        let shared = inst.shared.clone();
        shared
            .stats
            .requests
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let timeout = Duration::from_millis(u64::from(timeout_ms.max(1)));
        let mut out = Message::new(subject, body);
        let span = self
            .2
            .map(|t| t.message("messaging.request", &out.subject, &mut out.headers));
        let reply = shared.bus.request(out, timeout).await.map_err(bus_error);
        if let Some(span) = span {
            span.end(reply.as_ref().err().cloned());
        }
        let reply = reply?;
        // Counted once sent, like a publish.
        if let Some(stats) = self.1 {
            stats.messages_sent.inc();
        }
        Ok(BrokerMessage {
            subject: reply.subject,
            body: reply.body.to_vec(),
            reply_to: reply.reply_to,
        })
    }

    async fn publish(&mut self, msg: BrokerMessage) -> Result<(), String> {
        let Some(inst) = self.0 else {
            return Err("unavailable: wasmcloud:messaging is not bound to this instance".into());
        };
        self.check(inst, &msg.subject, "publish")?;
        Self::check_size(inst, msg.body.len())?;
        let shared = inst.shared.clone();
        let mut out = Message::new(msg.subject, msg.body);
        out.reply_to = msg.reply_to;
        let span = self
            .2
            .map(|t| t.message("messaging.publish", &out.subject, &mut out.headers));
        let sent = shared.bus.publish(out).await.map_err(bus_error);
        if let Some(span) = span {
            span.end(sent.as_ref().err().cloned());
        }
        sent?;
        shared
            .stats
            .published
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Some(stats) = self.1 {
            stats.messages_sent.inc();
        }
        Ok(())
    }
}

impl<T: PluginView + 'static> Binding<T> for Bound {
    fn add_to_linker(&self, linker: &mut Linker<T>) -> wasmtime::Result<()> {
        fn view<T: PluginView>(h: &mut T) -> MessagingView<'_> {
            let ctx = h.plugins();
            MessagingView(ctx.instances.messaging.as_ref(), ctx.stats, ctx.tracer)
        }
        bindings::wasmcloud::messaging::types::add_to_linker::<T, Messaging>(linker, view::<T>)?;
        bindings::wasmcloud::messaging::consumer::add_to_linker::<T, Messaging>(linker, view::<T>)
    }
    fn instance(&self, component: &str, instances: &mut PluginInstances) {
        instances.messaging = Some(Instance {
            shared: self.shared.clone(),
            component: component.into(),
            reply_to: None,
        });
    }
}
