//! `wasi:logging/logging@0.1.0-draft`: guest log records go to `tracing` (tagged with the
//! workload and component) and to the workload's log buffer (`weft logs`).

use std::sync::Arc;

use wasmtime::component::{HasData, Linker};

use super::{BindContext, Binding, HostPlugin, PluginError, PluginInstances, PluginView};
use weft_engine::logs::LogSink;

mod bindings {
    wasmtime::component::bindgen!({
        path: "wit/logging",
        world: "wasi:logging/imports",
    });
}

use bindings::wasi::logging::logging::{Host, Level};

pub struct LoggingPlugin;

/// Per-instance state: where this component's records go.
#[derive(Clone)]
pub struct Instance {
    sink: LogSink,
    component: Arc<str>,
}

struct Bound {
    sink: LogSink,
}

impl<T: PluginView + 'static> HostPlugin<T> for LoggingPlugin {
    fn package(&self) -> &'static str {
        "wasi:logging"
    }
    fn interfaces(&self) -> &'static [&'static str] {
        &["wasi:logging/logging"]
    }
    fn bind(&self, ctx: &BindContext<'_>) -> Result<Arc<dyn Binding<T>>, PluginError> {
        Ok(Arc::new(Bound {
            sink: ctx.logs.clone(),
        }))
    }
}

struct Logging;

impl HasData for Logging {
    type Data<'a> = LoggingView<'a>;
}

pub struct LoggingView<'a>(Option<&'a Instance>);

impl Host for LoggingView<'_> {
    fn log(&mut self, level: Level, context: String, message: String) {
        let Some(inst) = self.0 else { return };
        let level = match level {
            Level::Trace => "trace",
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
            Level::Critical => "critical",
        };
        let stream = if context.is_empty() {
            level.to_string()
        } else {
            // Bound the context too: it is guest-controlled.
            let ctx: String = context.chars().take(64).collect();
            format!("{level} [{ctx}]")
        };
        inst.sink.push(&inst.component, &stream, &message);
    }
}

impl<T: PluginView + 'static> Binding<T> for Bound {
    fn add_to_linker(&self, linker: &mut Linker<T>) -> wasmtime::Result<()> {
        bindings::wasi::logging::logging::add_to_linker::<T, Logging>(linker, |h| {
            LoggingView(h.plugins().instances.logging.as_ref())
        })
    }
    fn instance(&self, component: &str, instances: &mut PluginInstances) {
        instances.logging = Some(Instance {
            sink: self.sink.clone(),
            component: component.into(),
        });
    }
}
