//! The workload's long-lived service: one `wasi:cli/run@0.2` instance for the life of the
//! workload version, restarted with backoff up to `maxRestarts` (see docs/service.md).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wasmtime::Store;
use wasmtime::component::{Component, Linker};
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::p2::bindings::CommandPre;

use crate::logs::LogSink;
use crate::net::VirtualNet;
use crate::plugins::BoundPlugins;
use crate::state::{HostState, OutgoingHttp};
use crate::stdio::{Output, SinkStream};
use crate::wasi::WasiGrants;

/// First restart delay; doubles per restart.
pub const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// Longest restart delay.
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// How long a start must survive to count as ready when the service does not listen.
pub const READY_GRACE: Duration = Duration::from_millis(500);
/// How long a deployment waits for the service to become ready.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// What the service is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceStatus {
    /// Instantiating or running its `run` export.
    Running { restarts: u32 },
    /// Waiting to restart after a failure.
    Restarting { restarts: u32, last_error: String },
    /// Gave up after `maxRestarts` restarts.
    Failed { restarts: u32, last_error: String },
    /// Stopped by the host (workload deleted or replaced).
    Stopped,
}

impl ServiceStatus {
    pub fn label(&self) -> &'static str {
        match self {
            ServiceStatus::Running { .. } => "Running",
            ServiceStatus::Restarting { .. } => "Restarting",
            ServiceStatus::Failed { .. } => "Failed",
            ServiceStatus::Stopped => "Stopped",
        }
    }

    pub fn restarts(&self) -> u32 {
        match self {
            ServiceStatus::Running { restarts }
            | ServiceStatus::Restarting { restarts, .. }
            | ServiceStatus::Failed { restarts, .. } => *restarts,
            ServiceStatus::Stopped => 0,
        }
    }

    pub fn last_error(&self) -> Option<&str> {
        match self {
            ServiceStatus::Restarting { last_error, .. }
            | ServiceStatus::Failed { last_error, .. } => Some(last_error),
            _ => None,
        }
    }
}

/// What a service needs to run.
pub struct ServiceSpec {
    pub name: String,
    pub grants: WasiGrants,
    pub outgoing: OutgoingHttp,
    pub plugins: BoundPlugins,
    pub logs: LogSink,
    pub max_restarts: u32,
    pub max_resources: usize,
}

struct Shared {
    status: Mutex<ServiceStatus>,
    /// When the current attempt started.
    started: Mutex<Instant>,
    changed: tokio::sync::Notify,
}

/// A running service; stops (drops its instance) when `stop` is called or it is dropped.
pub struct ServiceHandle {
    name: String,
    shared: Arc<Shared>,
    vnet: Arc<VirtualNet>,
    task: tokio::task::JoinHandle<()>,
}

/// Why a service could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(
        "the service must be a wasi:cli command (export wasi:cli/run@0.2): {0} \
         (hint: build it as a command, e.g. a Rust `fn main` for wasm32-wasip2)"
    )]
    NotACommand(String),
    #[error("cannot link the service: {0}")]
    Link(String),
    #[error("the service failed before it was ready: {0}")]
    NotReady(String),
}

impl ServiceHandle {
    /// Links the service, starts it on the current tokio runtime and returns at once.
    pub fn start(
        engine: &wasmtime::Engine,
        component: &Component,
        spec: ServiceSpec,
        vnet: Arc<VirtualNet>,
    ) -> Result<ServiceHandle, ServiceError> {
        let mut linker = Linker::new(engine);
        crate::http::add_to_linker(&mut linker)
            .map_err(|e| ServiceError::Link(format!("{e:#}")))?;
        spec.plugins
            .add_to_linker(&mut linker)
            .map_err(|e| ServiceError::Link(format!("{e:#}")))?;
        let pre = linker
            .instantiate_pre(component)
            .map_err(|e| ServiceError::Link(format!("{e:#}")))?;
        let pre = CommandPre::new(pre).map_err(|e| ServiceError::NotACommand(format!("{e:#}")))?;
        let shared = Arc::new(Shared {
            status: Mutex::new(ServiceStatus::Running { restarts: 0 }),
            started: Mutex::new(Instant::now()),
            changed: tokio::sync::Notify::new(),
        });
        let name = spec.name.clone();
        let task = tokio::spawn(run_loop(
            engine.clone(),
            pre,
            spec,
            Arc::clone(&shared),
            Arc::clone(&vnet),
        ));
        Ok(ServiceHandle {
            name,
            shared,
            vnet,
            task,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn status(&self) -> ServiceStatus {
        self.shared
            .status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The workload ports the service listens on.
    pub fn ports(&self) -> Vec<u16> {
        self.vnet.ports()
    }

    /// Waits until the service is ready: it listens on its virtual loopback, or its current
    /// attempt has run for [`READY_GRACE`]. Fails when it gives up, or after [`READY_TIMEOUT`].
    pub async fn ready(&self) -> Result<(), ServiceError> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if !self.vnet.ports().is_empty() {
                return Ok(());
            }
            let status = self.status();
            match &status {
                ServiceStatus::Failed { last_error, .. } => {
                    return Err(ServiceError::NotReady(last_error.clone()));
                }
                ServiceStatus::Stopped => {
                    return Err(ServiceError::NotReady("stopped".into()));
                }
                ServiceStatus::Running { .. } => {
                    let started = *self
                        .shared
                        .started
                        .lock()
                        .unwrap_or_else(|e| e.into_inner());
                    if started.elapsed() >= READY_GRACE {
                        return Ok(());
                    }
                }
                ServiceStatus::Restarting { .. } => {}
            }
            if Instant::now() >= deadline {
                return Err(ServiceError::NotReady(format!(
                    "not ready within {READY_TIMEOUT:?} (status {}{})",
                    status.label(),
                    status
                        .last_error()
                        .map(|e| format!(", last error: {e}"))
                        .unwrap_or_default()
                )));
            }
            tokio::select! {
                _ = self.vnet.wait_listening() => {}
                _ = self.shared.changed.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
        }
    }

    /// Stops the service: its instance is dropped with its task.
    pub fn stop(&self) {
        self.task.abort();
        *self.shared.status.lock().unwrap_or_else(|e| e.into_inner()) = ServiceStatus::Stopped;
    }
}

impl Drop for ServiceHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn set(shared: &Shared, status: ServiceStatus) {
    *shared.status.lock().unwrap_or_else(|e| e.into_inner()) = status;
    shared.changed.notify_waiters();
}

fn new_store(engine: &wasmtime::Engine, spec: &ServiceSpec) -> wasmtime::Result<Store<HostState>> {
    let mut builder = WasiCtxBuilder::new();
    builder.stdout(SinkStream::new(
        spec.logs.clone(),
        &spec.name,
        Output::Stdout,
    ));
    builder.stderr(SinkStream::new(
        spec.logs.clone(),
        &spec.name,
        Output::Stderr,
    ));
    // Runs forever: the store yields at every epoch tick (set by `new_store`) and has no
    // deadline of its own.
    HostState::new_store(
        engine,
        builder,
        &spec.grants,
        spec.outgoing.clone(),
        spec.plugins.instance(&spec.name),
        spec.max_resources,
    )
}

async fn run_loop(
    engine: wasmtime::Engine,
    pre: CommandPre<HostState>,
    spec: ServiceSpec,
    shared: Arc<Shared>,
    vnet: Arc<VirtualNet>,
) {
    let mut restarts: u32 = 0;
    loop {
        *shared.started.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
        set(&shared, ServiceStatus::Running { restarts });
        spec.logs.push(
            &spec.name,
            "info",
            &format!("service started (restarts so far: {restarts})"),
        );
        let outcome = async {
            let mut store = new_store(&engine, &spec)?;
            let command = pre.instantiate_async(&mut store).await?;
            command.wasi_cli_run().call_run(&mut store).await
        }
        .await;
        // The instance is gone, and with it its listeners.
        vnet.clear_listeners();
        let error = match outcome {
            Ok(Ok(())) => "the service's run returned (a service should run until stopped)".into(),
            Ok(Err(())) => "the service's run returned an error".into(),
            Err(e) => match e.downcast_ref::<wasmtime_wasi::I32Exit>() {
                Some(exit) if exit.0 == 0 => {
                    "the service exited with status 0 (a service should run until stopped)".into()
                }
                Some(exit) => format!("the service exited with status {}", exit.0),
                None => format!("the service trapped: {e:#}"),
            },
        };
        if restarts >= spec.max_restarts {
            spec.logs.push(
                &spec.name,
                "error",
                &format!("{error}; giving up after {restarts} restarts (maxRestarts)"),
            );
            tracing::error!(service = %spec.name, %error, restarts, "service failed");
            set(
                &shared,
                ServiceStatus::Failed {
                    restarts,
                    last_error: error,
                },
            );
            return;
        }
        let backoff = FIRST_BACKOFF
            .saturating_mul(1u32 << restarts.min(16))
            .min(MAX_BACKOFF);
        restarts += 1;
        spec.logs.push(
            &spec.name,
            "warn",
            &format!(
                "{error}; restarting in {backoff:?} ({restarts}/{})",
                spec.max_restarts
            ),
        );
        set(
            &shared,
            ServiceStatus::Restarting {
                restarts,
                last_error: error,
            },
        );
        tokio::time::sleep(backoff).await;
    }
}
