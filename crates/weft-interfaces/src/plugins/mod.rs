//! Host interfaces as plugins. Each plugin is one module: what it provides, how it binds to a
//! workload (validating its config and opening its backend), how it links into a component's
//! linker, and the per-instance state it puts into [`PluginInstances`].
//!
//! Lifecycle (see `docs/plugins.md`): `bind` once per workload version (deploy time; errors
//! name the manifest field) -> `add_to_linker` once per workload linker -> `instance` per
//! store (cheap: clones of `Arc`s, no parsing) -> `unbind` when the version is retired.
//! Adding a plugin: a new module here, a field in [`PluginInstances`] and one line in
//! [`registry`].
//!
//! Everything here is generic over the store type `T`, which gives the plugins their state and
//! the resource table through [`PluginView`]; no plugin names the store type.

use std::path::PathBuf;
use std::sync::Arc;

use wasmtime::component::{Linker, ResourceTable};
use weft_manifest::{HostInterface, Manifest};

use weft_engine::logs::LogSink;

pub mod config;
pub mod keyvalue;
pub mod logging;
pub mod messaging;

/// A plugin failed to bind: the field path in the manifest, what was wrong, the fix.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{field}: {message} (hint: {hint})")]
pub struct PluginError {
    pub field: String,
    pub message: String,
    pub hint: String,
}

/// What a plugin sees when it binds to a workload.
pub struct BindContext<'a> {
    pub manifest: &'a Manifest,
    /// The workload's `hostInterfaces` entry for this plugin's package, if granted.
    pub entry: Option<&'a HostInterface>,
    /// Index of that entry in `spec.hostInterfaces` (for error paths).
    pub entry_index: Option<usize>,
    /// The host's data directory (persistent backends live under it).
    pub data_dir: PathBuf,
    pub logs: LogSink,
    /// The workload version's messaging counters (shared with the trigger runner).
    pub messaging_stats: Arc<weft_messaging::Stats>,
}

/// Per-instance plugin state: one typed field per plugin, filled by its binding.
#[derive(Default)]
pub struct PluginInstances {
    pub config: Option<config::Instance>,
    pub keyvalue: Option<keyvalue::Instance>,
    pub logging: Option<logging::Instance>,
    pub messaging: Option<messaging::Instance>,
}

/// What the plugins' host functions need from a store: this instance's plugin state and the
/// store's resource table, borrowed together (keyvalue's `open` reads its state and pushes a
/// bucket into the table in one call).
pub struct PluginCtx<'a> {
    pub instances: &'a PluginInstances,
    pub table: &'a mut ResourceTable,
    /// The tracer of the request this store handles now, if traces are exported: host
    /// functions put their calls in spans under it (docs/observability.md).
    pub tracer: Option<&'a Arc<dyn crate::outbound::OutgoingTracer>>,
    /// The workload's counts, when the store is a workload's: host functions count their
    /// calls (`weft_keyvalue_operations_total`, `weft_messages_total`).
    pub stats: Option<&'a Arc<weft_stats::WorkloadStats>>,
}

/// Implemented by the store type: the plugins reach their per-instance state through it.
pub trait PluginView: Send {
    fn plugins(&mut self) -> PluginCtx<'_>;
}

/// A host interface implementation, for stores of type `T`.
pub trait HostPlugin<T>: Send + Sync + 'static {
    /// `namespace:package`, e.g. `wasi:keyvalue`.
    fn package(&self) -> &'static str;
    /// Unversioned interface names it links, e.g. `wasi:keyvalue/store`.
    fn interfaces(&self) -> &'static [&'static str];
    /// Validates the workload's grant and opens the backend. Called only when the workload
    /// grants this package in `spec.hostInterfaces`.
    fn bind(&self, ctx: &BindContext<'_>) -> Result<Arc<dyn Binding<T>>, PluginError>;
}

/// A plugin bound to one workload version.
pub trait Binding<T>: Send + Sync + 'static {
    /// Links the plugin's interfaces (called once per workload linker).
    fn add_to_linker(&self, linker: &mut Linker<T>) -> wasmtime::Result<()>;
    /// Fills this plugin's field of the per-instance state for `component`.
    fn instance(&self, component: &str, instances: &mut PluginInstances);
    /// Releases the backend (flushes, closes files). Default: nothing.
    fn unbind(&self) {}
}

/// Every plugin the host knows.
pub fn registry<T: PluginView + 'static>() -> Vec<Arc<dyn HostPlugin<T>>> {
    vec![
        Arc::new(config::ConfigPlugin),
        Arc::new(logging::LoggingPlugin),
        Arc::new(keyvalue::KeyValuePlugin),
        Arc::new(messaging::MessagingPlugin),
    ]
}

/// The plugins bound to one workload version.
pub struct BoundPlugins<T> {
    bound: Vec<(String, Arc<dyn Binding<T>>)>,
    /// Unversioned interfaces granted (`wasi:keyvalue/store`, ...).
    granted: Vec<String>,
    messaging_stats: Arc<weft_messaging::Stats>,
}

impl<T> std::fmt::Debug for BoundPlugins<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BoundPlugins")
            .field("granted", &self.granted)
            .finish_non_exhaustive()
    }
}

impl<T> Clone for BoundPlugins<T> {
    fn clone(&self) -> Self {
        BoundPlugins {
            bound: self.bound.clone(),
            granted: self.granted.clone(),
            messaging_stats: self.messaging_stats.clone(),
        }
    }
}

impl<T> Default for BoundPlugins<T> {
    fn default() -> Self {
        BoundPlugins {
            bound: Vec::new(),
            granted: Vec::new(),
            messaging_stats: Default::default(),
        }
    }
}

impl<T: PluginView + 'static> BoundPlugins<T> {
    /// Binds every plugin the workload grants.
    pub fn bind(
        manifest: &Manifest,
        data_dir: PathBuf,
        logs: &LogSink,
    ) -> Result<Self, Vec<PluginError>> {
        let mut errors = Vec::new();
        let mut out = BoundPlugins::default();
        let plugins = registry::<T>();
        for (index, entry) in manifest.spec.host_interfaces.iter().enumerate() {
            let package = format!("{}:{}", entry.namespace, entry.package);
            for iface in &entry.interfaces {
                out.granted.push(format!("{package}/{iface}"));
            }
            if package == "wasmcloud:messaging" {
                // Its record types come with either interface.
                out.granted.push("wasmcloud:messaging/types".into());
            }
            let Some(plugin) = plugins.iter().find(|p| p.package() == package) else {
                // Packages served by the base host (wasi:http, wasi:cli, wasi:filesystem,
                // wasi:sockets) have no plugin object; the manifest crate rejects unknown ones.
                continue;
            };
            let ctx = BindContext {
                manifest,
                entry: Some(entry),
                entry_index: Some(index),
                data_dir: data_dir.clone(),
                logs: logs.clone(),
                messaging_stats: out.messaging_stats.clone(),
            };
            match plugin.bind(&ctx) {
                Ok(binding) => out.bound.push((package, binding)),
                Err(e) => errors.push(e),
            }
        }
        if errors.is_empty() {
            Ok(out)
        } else {
            Err(errors)
        }
    }

    /// The messaging counters of this workload version.
    pub fn messaging_stats(&self) -> &Arc<weft_messaging::Stats> {
        &self.messaging_stats
    }

    /// Unversioned interfaces the manifest grants.
    pub fn granted(&self) -> &[String] {
        &self.granted
    }

    pub fn add_to_linker(&self, linker: &mut Linker<T>) -> wasmtime::Result<()> {
        for (_, b) in &self.bound {
            b.add_to_linker(linker)?;
        }
        Ok(())
    }

    pub fn instance(&self, component: &str) -> PluginInstances {
        let mut instances = PluginInstances::default();
        for (_, b) in &self.bound {
            b.instance(component, &mut instances);
        }
        instances
    }

    pub fn unbind(&self) {
        for (_, b) in &self.bound {
            b.unbind();
        }
    }
}

/// The interfaces a plugin-provided import needs granted, by package. Used to explain an
/// ungranted import: `wasi:keyvalue/store@0.2.0-draft` -> (`wasi`, `keyvalue`, `store`).
pub fn grant_for(import: &str) -> Option<(String, String, String)> {
    let (base, _) = weft_engine::world::split_version(import);
    let (pkg, iface) = base.split_once('/')?;
    let (ns, package) = pkg.split_once(':')?;
    Some((ns.to_string(), package.to_string(), iface.to_string()))
}
