//! The workload's long-lived service: one instance for the life of the workload version,
//! restarted with backoff up to `maxRestarts` (see docs/service.md). A WASI 0.2 service is a
//! `wasi:cli/run@0.2` command. A WASI 0.3 service exports `wasi:cli/run@0.3`, the P3
//! `wasi:http/handler`, or both: its `run` task and every HTTP request it serves as the
//! workload's front door (`spec.service.serveHttp`) are concurrent tasks of the same instance,
//! in one store driven by `run_concurrent`, so its memory is the workload's state.

use std::collections::BTreeMap;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use http_body::{Body, Frame, SizeHint};
use tokio::sync::{Semaphore, mpsc, oneshot, watch};
use wasmtime::component::{Component, InstancePre, Linker};
use wasmtime::{AsContextMut, Store};
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::p2::bindings::CommandPre;
use wasmtime_wasi_http::WasiBody;
use wasmtime_wasi_http::handler::{ExpirationError, Prepared, Proxy};

use crate::admission::{self, HandleError};
use crate::state::{HostState, OutgoingHttp};
use crate::svccall::{ServiceCall, ServiceCalls};
use weft_engine::logs::LogSink;
use weft_interfaces::net::VirtualNet;
use weft_interfaces::plugins::BoundPlugins;
use weft_interfaces::stdio::{Output, SinkStream};
use weft_interfaces::wasi::WasiGrants;

/// First restart delay; doubles per restart.
pub const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// Longest restart delay.
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// How long a start must survive to count as ready when the service does not listen.
pub const READY_GRACE: Duration = Duration::from_millis(500);
/// How long a deployment waits for the service to become ready.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long past a request's deadline the host waits for a front-door service to yield
/// before it stops the instance (a request busy in a loop never lets the event loop expire it).
pub const WATCHDOG_GRACE: Duration = Duration::from_millis(500);
/// How long a stopped front-door service may finish the requests and response bodies it has
/// in flight before its instance is dropped.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

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
    pub plugins: BoundPlugins<HostState>,
    pub logs: LogSink,
    pub max_restarts: u32,
    pub max_resources: usize,
    /// Set when the service is the workload's HTTP front door (`serveHttp`).
    pub front: Option<FrontOptions>,
    /// Tasks in the instance at once (`maxConcurrency`): front-door requests and calls from
    /// components together.
    pub max_concurrency: usize,
    /// `NAMESPACE/NAME` of the workload (span attributes).
    pub workload: String,
    /// Where the service's spans start (`None`: traces are off).
    pub traces: Option<Arc<dyn weft_interfaces::outbound::TraceRoots>>,
}

/// Limits of a front-door service's requests.
#[derive(Debug, Clone)]
pub struct FrontOptions {
    /// Each request's deadline (`timeoutMs`); `run` has none.
    pub request_timeout: Duration,
    /// Requests in the instance at once (`maxConcurrency`); more wait up to `queue_timeout`.
    pub max_concurrency: usize,
    pub queue_timeout: Duration,
    pub max_request_body: u64,
    pub max_response_body: u64,
    /// Paces response bodies (see `HttpOptions::response_pace`).
    pub response_pace: Option<Arc<weft_engine::limit::RateMeter>>,
}

impl FrontOptions {
    /// The limits `weft serve` uses by default, with this deadline and concurrency.
    pub fn new(request_timeout: Duration, max_concurrency: usize) -> Self {
        FrontOptions {
            request_timeout,
            max_concurrency: max_concurrency.max(1),
            queue_timeout: admission::DEFAULT_QUEUE_TIMEOUT,
            max_request_body: weft_engine::limit::DEFAULT_MAX_REQUEST_BODY,
            max_response_body: weft_engine::limit::DEFAULT_MAX_RESPONSE_BODY,
            response_pace: None,
        }
    }
}

struct Shared {
    status: Mutex<ServiceStatus>,
    /// Calls from components; told why it is closed when the status changes.
    calls: Arc<ServiceCalls>,
    /// When the current attempt started.
    started: Mutex<Instant>,
    changed: tokio::sync::Notify,
}

/// A running service; stops (drops its instance) when `stop` is called or it is dropped. A
/// front door first drains: requests and response bodies in flight finish (up to
/// [`DRAIN_TIMEOUT`]).
pub struct ServiceHandle {
    name: String,
    shared: Arc<Shared>,
    vnet: Arc<VirtualNet>,
    front: Option<Arc<Front>>,
    calls: Arc<ServiceCalls>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

/// Why a service could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(
        "the service must export wasi:cli/run (a WASI 0.2 or 0.3 command), or the WASI 0.3 \
         wasi:http/handler with `spec.service.serveHttp: true`; it exports {0} (hint: build it \
         as a command, e.g. a Rust `fn main` for wasm32-wasip2)"
    )]
    NotACommand(String),
    #[error(
        "the service exports {0} for the workload's components, but no wasi:cli/run@0.3 and \
         no wasi:http/handler@0.3 with `serveHttp`, so it has no task to run (hint: export \
         wasi:cli/run@0.3.0 with an async `run` that waits forever)"
    )]
    NothingToRun(String),
    #[error(
        "spec.service.serveHttp: the service must export wasi:http/handler@0.3 (a WASI 0.3 \
         HTTP handler) to be the workload's front door; it exports {0} (hint: export the P3 \
         handler, e.g. with wasip3's `http::service::export!`, or remove `serveHttp`)"
    )]
    NotAFrontDoor(String),
    #[error(
        "the service exports wasi:http/handler@0.3 but no wasi:cli/run, so it has nothing to \
         run (hint: set `spec.service.serveHttp: true` to make it the workload's HTTP front \
         door)"
    )]
    NeedsServeHttp,
    #[error("cannot link the service: {0}")]
    Link(String),
    #[error("the service failed before it was ready: {0}")]
    NotReady(String),
}

/// How the service is run.
enum Runner {
    /// A WASI 0.2 command: one `call_async` of `run`.
    P2(CommandPre<HostState>),
    /// A WASI 0.3 service: `run` and/or the HTTP handler, in one `run_concurrent` store.
    P3(P3Runner),
}

struct P3Runner {
    pre: InstancePre<HostState>,
    run: Option<wasmtime_wasi::p3::bindings::CommandIndices>,
    http: Option<wasmtime_wasi_http::p3::bindings::ServiceIndices>,
}

impl Runner {
    /// Picks the runner from the component's exports and whether it is a front door.
    fn choose(
        engine: &wasmtime::Engine,
        component: &Component,
        pre: InstancePre<HostState>,
        front: bool,
    ) -> Result<Runner, ServiceError> {
        let ifaces = weft_engine::world::interfaces(engine, component);
        let has = |prefix: &str| ifaces.exports.iter().any(|e| e.starts_with(prefix));
        let exports = || {
            if ifaces.exports.is_empty() {
                "nothing".to_string()
            } else {
                ifaces.exports.join(", ")
            }
        };
        let (run_p2, run_p3, http_p3) = (
            has("wasi:cli/run@0.2"),
            has("wasi:cli/run@0.3"),
            has("wasi:http/handler@0.3"),
        );
        let link = |e: wasmtime::Error| ServiceError::Link(format!("{e:#}"));
        if front && !http_p3 {
            return Err(ServiceError::NotAFrontDoor(exports()));
        }
        if front || run_p3 {
            let run = if run_p3 {
                Some(wasmtime_wasi::p3::bindings::CommandIndices::new(&pre).map_err(link)?)
            } else {
                None
            };
            let http = if front {
                Some(wasmtime_wasi_http::p3::bindings::ServiceIndices::new(&pre).map_err(link)?)
            } else {
                None
            };
            return Ok(Runner::P3(P3Runner { pre, run, http }));
        }
        if run_p2 {
            return CommandPre::new(pre)
                .map(Runner::P2)
                .map_err(|e| ServiceError::NotACommand(format!("{} ({e:#})", exports())));
        }
        if http_p3 {
            return Err(ServiceError::NeedsServeHttp);
        }
        let offered: Vec<&str> = ifaces
            .exports
            .iter()
            .map(String::as_str)
            .filter(|e| !e.starts_with("wasi:"))
            .collect();
        if !offered.is_empty() {
            return Err(ServiceError::NothingToRun(offered.join(", ")));
        }
        Err(ServiceError::NotACommand(exports()))
    }
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
        weft_interfaces::wasi::add_to_linker(&mut linker)
            .map_err(|e| ServiceError::Link(format!("{e:#}")))?;
        spec.plugins
            .add_to_linker(&mut linker)
            .map_err(|e| ServiceError::Link(format!("{e:#}")))?;
        let pre = linker
            .instantiate_pre(component)
            .map_err(|e| ServiceError::Link(format!("{e:#}")))?;
        let runner = Runner::choose(engine, component, pre, spec.front.is_some())?;
        let in_flight = Arc::new(Semaphore::new(spec.max_concurrency.max(1)));
        let calls = Arc::new(ServiceCalls::new(
            engine,
            &spec.name,
            component,
            Arc::clone(&in_flight),
            spec.max_concurrency,
            admission::DEFAULT_QUEUE_TIMEOUT,
        ));
        let shared = Arc::new(Shared {
            calls: Arc::clone(&calls),
            status: Mutex::new(ServiceStatus::Running { restarts: 0 }),
            started: Mutex::new(Instant::now()),
            changed: tokio::sync::Notify::new(),
        });
        let front = spec
            .front
            .clone()
            .map(|options| Arc::new(Front::new(options, Arc::clone(&in_flight))));
        let (stop, stopped) = watch::channel(false);
        let name = spec.name.clone();
        let task = tokio::spawn(run_loop(
            engine.clone(),
            runner,
            spec,
            Attempt {
                shared: Arc::clone(&shared),
                vnet: Arc::clone(&vnet),
                front: front.clone(),
            },
            stopped,
        ));
        Ok(ServiceHandle {
            name,
            shared,
            vnet,
            front,
            calls,
            stop,
            task,
        })
    }

    /// Where components' calls into the service's instance go.
    pub fn calls(&self) -> &Arc<ServiceCalls> {
        &self.calls
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

    /// Whether the service is the workload's HTTP front door.
    pub fn serves_http(&self) -> bool {
        self.front.is_some()
    }

    /// Waits until the service is ready: it listens on its virtual loopback, it takes HTTP
    /// requests (a front door), or its current attempt has run for [`READY_GRACE`]. Fails
    /// when it gives up, or after [`READY_TIMEOUT`].
    pub async fn ready(&self) -> Result<(), ServiceError> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if !self.vnet.ports().is_empty() || self.front.as_ref().is_some_and(|f| f.is_open()) {
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
                    if started.elapsed() >= READY_GRACE && self.front.is_none() {
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

    /// Handles one HTTP request in the service's instance (a front door only). 503 while the
    /// service restarts or after it failed; the concurrency cap, deadline and body limits of
    /// [`FrontOptions`] hold.
    pub async fn handle(
        &self,
        request: http::Request<WasiBody>,
    ) -> Result<http::Response<WasiBody>, HandleError> {
        let Some(front) = &self.front else {
            return Err(HandleError::Guest(
                "the service is not the workload's HTTP front door".into(),
            ));
        };
        front.handle(request, &self.status()).await
    }

    /// Stops the service. A front door stops taking requests at once and drops its instance
    /// once those in flight have finished (or after [`DRAIN_TIMEOUT`]); any other service is
    /// dropped at once.
    pub fn stop(&self) {
        match &self.front {
            Some(front) => {
                front.in_flight.close();
                front.close();
                let _ = self.stop.send(true);
            }
            None => self.task.abort(),
        }
        self.calls.close("it is stopped".into());
        *self.shared.status.lock().unwrap_or_else(|e| e.into_inner()) = ServiceStatus::Stopped;
    }
}

impl Drop for ServiceHandle {
    fn drop(&mut self) {
        if self.front.is_some() {
            // The run loop drains, then ends (its instance with it).
            let _ = self.stop.send(true);
            if let Some(front) = &self.front {
                front.close();
            }
        } else {
            self.task.abort();
        }
    }
}

fn set(shared: &Shared, status: ServiceStatus) {
    match &status {
        ServiceStatus::Running { .. } => {}
        ServiceStatus::Stopped => shared.calls.close("it is stopped".into()),
        other => shared.calls.close(format!(
            "it is {}{}",
            other.label(),
            other
                .last_error()
                .map(|e| format!(" after: {e}"))
                .unwrap_or_default()
        )),
    }
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
    let mut store = HostState::new_store(
        engine,
        builder,
        &spec.grants,
        spec.outgoing.clone(),
        spec.plugins.instance(&spec.name),
        spec.max_resources,
    )?;
    // Its own work (outside front-door requests) starts traces of its own.
    store.data_mut().hooks.tracer = spec
        .traces
        .as_ref()
        .and_then(|t| t.service(&spec.workload, &spec.name));
    Ok(store)
}

/// What every attempt of the run loop shares with the handle.
struct Attempt {
    shared: Arc<Shared>,
    vnet: Arc<VirtualNet>,
    front: Option<Arc<Front>>,
}

/// How one attempt ended.
enum Ended {
    /// `run` returned `Ok` (a service should run until stopped).
    Returned,
    /// `run` returned `Err`.
    ReturnedError,
    /// A trap, an exit, or a host error.
    Failed(wasmtime::Error),
}

impl Ended {
    fn describe(self) -> String {
        match self {
            Ended::Returned => {
                "the service's run returned (a service should run until stopped)".into()
            }
            Ended::ReturnedError => "the service's run returned an error".into(),
            Ended::Failed(e) => match e.downcast_ref::<wasmtime_wasi::I32Exit>() {
                Some(exit) if exit.0 == 0 => {
                    "the service exited with status 0 (a service should run until stopped)".into()
                }
                Some(exit) => format!("the service exited with status {}", exit.0),
                None => format!("the service trapped: {e:#}"),
            },
        }
    }
}

/// Resolves once a stop was asked for and the front door (if any) has drained.
async fn stopping(stopped: &mut watch::Receiver<bool>, front: Option<&Arc<Front>>) {
    if stopped.wait_for(|s| *s).await.is_err() {
        // The handle is gone without asking: treat as a stop.
    }
    if let Some(front) = front {
        let _ = tokio::time::timeout(DRAIN_TIMEOUT, front.drained()).await;
    }
}

async fn run_loop(
    engine: wasmtime::Engine,
    runner: Runner,
    spec: ServiceSpec,
    attempt: Attempt,
    mut stopped: watch::Receiver<bool>,
) {
    let Attempt {
        shared,
        vnet,
        front,
    } = attempt;
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
            match &runner {
                Runner::P2(pre) => {
                    let outcome = async {
                        let mut store = new_store(&engine, &spec)?;
                        let command = pre.instantiate_async(&mut store).await?;
                        command.wasi_cli_run().call_run(&mut store).await
                    }
                    .await;
                    match outcome {
                        Ok(Ok(())) => Ended::Returned,
                        Ok(Err(())) => Ended::ReturnedError,
                        Err(e) => Ended::Failed(e),
                    }
                }
                Runner::P3(p3) => run_p3(&engine, p3, &spec, front.as_ref(), &shared.calls).await,
            }
        };
        let outcome = tokio::select! {
            outcome = outcome => outcome,
            _ = stopping(&mut stopped, front.as_ref()) => {
                vnet.clear_listeners();
                set(&shared, ServiceStatus::Stopped);
                return;
            }
        };
        // The instance is gone, and with it its listeners, its front door and its calls.
        vnet.clear_listeners();
        shared
            .calls
            .close("its instance ended; it is restarting".into());
        if let Some(front) = &front {
            front.close();
        }
        let error = outcome.describe();
        if *stopped.borrow() {
            // Stopped while it ended: no restart.
            spec.logs
                .push(&spec.name, "info", &format!("service stopped ({error})"));
            set(&shared, ServiceStatus::Stopped);
            return;
        }
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
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stopping(&mut stopped, None) => {
                set(&shared, ServiceStatus::Stopped);
                return;
            }
        }
    }
}

/// One attempt of a WASI 0.3 service: instantiate, then drive `run` (if exported) and every
/// request the front door receives as concurrent tasks of the one instance until `run` ends,
/// the instance traps, or a request overstays its deadline without yielding.
async fn run_p3(
    engine: &wasmtime::Engine,
    p3: &P3Runner,
    spec: &ServiceSpec,
    front: Option<&Arc<Front>>,
    calls: &Arc<ServiceCalls>,
) -> Ended {
    let mut store = match new_store(engine, spec) {
        Ok(store) => store,
        Err(e) => return Ended::Failed(e),
    };
    let loaded = async {
        let instance = p3.pre.instantiate_async(&mut store).await?;
        let command = match &p3.run {
            Some(indices) => Some(indices.load(&mut store, &instance)?),
            None => None,
        };
        let proxy = match &p3.http {
            Some(indices) => Some(Proxy::P3(indices.load(&mut store, &instance)?)),
            None => None,
        };
        // The functions components may call, with their number of results.
        let mut funcs = Vec::new();
        for idx in calls.indices() {
            let func = instance
                .get_func(&mut store, idx)
                .ok_or_else(|| wasmtime::format_err!("a service export is not a function"))?;
            let results = func.ty(&store).results().len();
            funcs.push((func, results));
        }
        wasmtime::Result::Ok((command, proxy, funcs))
    }
    .await;
    let (command, proxy, funcs) = match loaded {
        Ok(parts) => parts,
        Err(e) => return Ended::Failed(e),
    };
    let (door, mut requests) = mpsc::unbounded_channel::<FrontRequest>();
    let timeout = front.map_or(Duration::MAX, |f| f.options.request_timeout);
    let watch = Arc::new(Deadlines::default());
    // Replies of the requests the instance has accepted: failed with the instance's error if
    // it dies before they are answered.
    let accepted: Arc<Mutex<BTreeMap<u64, oneshot::Sender<Reply>>>> = Arc::default();
    match (front, &proxy) {
        (Some(front), Some(_)) => front.open(door),
        _ => drop(door),
    }
    let (call_door, mut call_queue) = mpsc::unbounded_channel::<ServiceCall>();
    calls.open(call_door);
    // Replies of the calls the instance has taken: failed with the instance's error if it
    // dies before they are answered (a trap ends the event loop before the call's future).
    type CallReply = oneshot::Sender<Result<Vec<wasmtime::component::Val>, String>>;
    let pending: Arc<Mutex<BTreeMap<u64, CallReply>>> = Arc::default();

    let root_tracer = store.data().hooks.tracer.clone();
    let inner = store.run_concurrent(async |accessor| -> wasmtime::Result<Ended> {
        let run = async {
            match &command {
                Some(command) => command.wasi_cli_run().call_run(accessor).await,
                None => std::future::pending().await,
            }
        };
        let mut run = pin!(run);
        let mut tasks: FuturesUnordered<Task<'_>> = FuturesUnordered::new();
        let mut open = proxy.is_some();
        let mut calls_open = true;
        loop {
            tokio::select! {
                ran = &mut run => return match ran {
                    Ok(Ok(())) => Ok(Ended::Returned),
                    Ok(Err(())) => Ok(Ended::ReturnedError),
                    Err(e) => Err(e),
                },
                next = requests.recv(), if open => {
                    let Some(FrontRequest { id, request, reply }) = next else {
                        open = false;
                        continue;
                    };
                    let Some(proxy) = &proxy else { continue };
                    let (tx, rx) = futures::channel::oneshot::channel();
                    // The request's own tracer: the instance's outgoing requests and host
                    // calls go under it while it runs (with several requests in the
                    // instance, under the one that started last: wasmtime does not say
                    // which task made a call).
                    let mut request = request;
                    let tracer = request
                        .extensions_mut()
                        .remove::<weft_interfaces::outbound::RequestTracer>()
                        .map(|t| t.0);
                    let mine = tracer.clone();
                    let prepared = accessor.with(|mut store| {
                        if let Some(tracer) = tracer {
                            store.data_mut().hooks.tracer = Some(tracer);
                        }
                        Prepared::new(
                            store.as_context_mut(),
                            proxy,
                            request,
                            wasmtime_wasi_http::WasiHttpView::http,
                            tx,
                        )
                    });
                    let prepared = match prepared {
                        Ok(p) => p,
                        Err(e) => {
                            let _ = reply.send(Err(FrontError::Guest(format!("{e:#}"))));
                            continue;
                        }
                    };
                    accepted.lock().unwrap_or_else(|e| e.into_inner()).insert(id, reply);
                    if let Some(deadline) = Instant::now().checked_add(timeout) {
                        watch.add(id, deadline);
                    }
                    let (watch, accepted) = (Arc::clone(&watch), Arc::clone(&accepted));
                    let root = root_tracer.clone();
                    tasks.push(Box::pin(async move {
                        let ran = prepared.run(accessor, tokio::time::sleep(timeout)).await;
                        watch.remove(id);
                        // Back to the service's own tracer, unless a newer request took over.
                        if let Some(mine) = &mine {
                            accessor.with(|mut store| {
                                let current = &mut store.data_mut().hooks.tracer;
                                if current.as_ref().is_some_and(|c| Arc::ptr_eq(c, mine)) {
                                    *current = root;
                                }
                            });
                        }
                        let result = match ran {
                            Ok(_) => rx.await.unwrap_or_else(|_| {
                                Err(wasmtime::format_err!("the handler sent no response"))
                            }),
                            Err(e) => Err(e),
                        };
                        let reply = accepted.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
                        let (answer, fatal) = match result {
                            Ok(response) => (Ok(response), None),
                            Err(e) if e.is::<ExpirationError>() => (Err(FrontError::Timeout), None),
                            Err(e) if e.is::<wasmtime::Trap>() => {
                                (Err(FrontError::Trap(format!("{e:#}"))), Some(e))
                            }
                            Err(e) => (Err(FrontError::Guest(format!("{e:#}"))), None),
                        };
                        if let Some(reply) = reply {
                            let _ = reply.send(answer);
                        }
                        match fatal {
                            // A trap poisons the instance: end this attempt.
                            Some(e) => Err(e),
                            None => Ok(()),
                        }
                    }));
                },
                next = call_queue.recv(), if calls_open => {
                    let Some(ServiceCall { id, slot, args, deadline, reply }) = next else {
                        calls_open = false;
                        continue;
                    };
                    let Some(&(func, n_results)) = funcs.get(slot) else {
                        let _ = reply.send(Err(format!("no function in slot {slot}")));
                        continue;
                    };
                    watch.add(id, deadline);
                    pending.lock().unwrap_or_else(|e| e.into_inner()).insert(id, reply);
                    let (watch, pending) = (Arc::clone(&watch), Arc::clone(&pending));
                    tasks.push(Box::pin(async move {
                        let mut results = vec![wasmtime::component::Val::Bool(false); n_results];
                        let ran = func.call_concurrent(accessor, &args, &mut results).await;
                        watch.remove(id);
                        let reply = pending.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
                        let Some(reply) = reply else {
                            return ran;
                        };
                        match ran {
                            Ok(()) => {
                                let _ = reply.send(Ok(results));
                                Ok(())
                            }
                            // A trap poisons the instance: the caller gets the error, and the
                            // attempt ends.
                            Err(e) if e.is::<wasmtime::Trap>() => {
                                let _ = reply.send(Err(format!("the service trapped: {e:#}")));
                                Err(e)
                            }
                            Err(e) => {
                                let _ = reply.send(Err(format!("{e:#}")));
                                Ok(())
                            }
                        }
                    }));
                },
                Some(done) = tasks.next(), if !tasks.is_empty() => done?,
                else => return Ok(Ended::Returned),
            }
        }
    });

    // Watchdog, polled outside the event loop: a request busy in a loop keeps the loop from
    // expiring it, so the instance is stopped once a deadline is WATCHDOG_GRACE behind.
    let mut inner = pin!(inner);
    let mut alarm = pin!(tokio::time::sleep(Duration::MAX));
    let ended = std::future::poll_fn(|cx: &mut Context<'_>| {
        if let Poll::Ready(result) = inner.as_mut().poll(cx) {
            return Poll::Ready(match result.and_then(|r| r) {
                Ok(ended) => ended,
                Err(e) => Ended::Failed(e),
            });
        }
        if let Some(fire) = watch.earliest().and_then(|d| d.checked_add(WATCHDOG_GRACE)) {
            if Instant::now() >= fire {
                return Poll::Ready(Ended::Failed(wasmtime::format_err!(
                    "a request ran past its timeout ({timeout:?}) without yielding, so the \
                     instance was stopped"
                )));
            }
            let fire = tokio::time::Instant::from_std(fire);
            if alarm.deadline() != fire {
                alarm.as_mut().reset(fire);
            }
            let _ = alarm.as_mut().poll(cx);
        }
        Poll::Pending
    })
    .await;
    if let Some(front) = front {
        front.close();
    }
    let reason = match &ended {
        Ended::Failed(e) => format!("{e:#}"),
        Ended::Returned | Ended::ReturnedError => "the service's run ended".into(),
    };
    for (_, reply) in std::mem::take(&mut *accepted.lock().unwrap_or_else(|e| e.into_inner())) {
        let _ = reply.send(Err(FrontError::InstanceFailed(reason.clone())));
    }
    for (_, reply) in std::mem::take(&mut *pending.lock().unwrap_or_else(|e| e.into_inner())) {
        let _ = reply.send(Err(format!("its instance failed: {reason}")));
    }
    calls.close(format!("its instance ended ({reason}); it is restarting"));
    ended
}

/// One request or call running in the service's instance.
type Task<'a> = Pin<Box<dyn Future<Output = wasmtime::Result<()>> + Send + 'a>>;

/// Deadlines of the requests in the instance, by request id.
#[derive(Default)]
struct Deadlines(Mutex<BTreeMap<u64, Instant>>);

impl Deadlines {
    fn add(&self, id: u64, deadline: Instant) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, deadline);
    }

    fn remove(&self, id: u64) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
    }

    fn earliest(&self) -> Option<Instant> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .min()
            .copied()
    }
}

/// A request on its way into the service's instance.
struct FrontRequest {
    id: u64,
    request: http::Request<WasiBody>,
    reply: oneshot::Sender<Reply>,
}

type Reply = Result<http::Response<WasiBody>, FrontError>;

/// Why the instance did not answer a request.
enum FrontError {
    Timeout,
    Trap(String),
    Guest(String),
    /// The instance died (trapped elsewhere, or stopped) while the request was in it.
    InstanceFailed(String),
}

/// The front door of a service: where requests enter the current attempt's instance.
struct Front {
    options: FrontOptions,
    /// The current attempt's request channel; `None` while the service is (re)starting,
    /// failed or stopped.
    door: Mutex<Option<mpsc::UnboundedSender<FrontRequest>>>,
    in_flight: Arc<Semaphore>,
    /// Requests and response bodies not finished yet (what a stop waits for).
    open: Arc<OpenCount>,
    next_id: AtomicU64,
}

impl Front {
    fn new(options: FrontOptions, in_flight: Arc<Semaphore>) -> Front {
        Front {
            in_flight,
            options,
            door: Mutex::new(None),
            open: Arc::default(),
            next_id: AtomicU64::new(0),
        }
    }

    fn open(&self, door: mpsc::UnboundedSender<FrontRequest>) {
        *self.door.lock().unwrap_or_else(|e| e.into_inner()) = Some(door);
    }

    fn close(&self) {
        self.door.lock().unwrap_or_else(|e| e.into_inner()).take();
    }

    fn is_open(&self) -> bool {
        self.door
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    async fn drained(&self) {
        self.open.idle().await;
    }

    async fn handle(
        &self,
        request: http::Request<WasiBody>,
        status: &ServiceStatus,
    ) -> Result<http::Response<WasiBody>, HandleError> {
        let unavailable = |status: &ServiceStatus| {
            HandleError::Unavailable(match status {
                ServiceStatus::Running { .. } => "it is starting".to_string(),
                ServiceStatus::Stopped => "it is stopped".to_string(),
                other => format!(
                    "it is {}{}",
                    other.label(),
                    other
                        .last_error()
                        .map(|e| format!(" after: {e}"))
                        .unwrap_or_default()
                ),
            })
        };
        let door = self.door.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let Some(door) = door else {
            return Err(unavailable(status));
        };
        let permit = admission::admit(&self.in_flight, self.options.queue_timeout).await?;
        let request = admission::limit_request(request, self.options.max_request_body)?;
        let guard = OpenGuard::new(&self.open);
        let (reply, answer) = oneshot::channel();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        if door.send(FrontRequest { id, request, reply }).is_err() {
            return Err(unavailable(status));
        }
        let timeout = self.options.request_timeout;
        let answer = match tokio::time::timeout(timeout, answer).await {
            Err(_) => return Err(HandleError::Timeout(timeout)),
            // The attempt ended before the instance took the request.
            Ok(Err(_)) => {
                return Err(HandleError::Unavailable(
                    "its instance stopped before it took the request; it is restarting".into(),
                ));
            }
            Ok(Ok(answer)) => answer,
        };
        drop(permit);
        match answer {
            Ok(response) => {
                let response = admission::limit_response(
                    response,
                    self.options.max_response_body,
                    self.options.response_pace.clone(),
                );
                Ok(response.map(|body| {
                    use http_body_util::BodyExt;
                    Guarded {
                        inner: body,
                        _guard: guard,
                    }
                    .boxed_unsync()
                }))
            }
            Err(FrontError::Timeout) => Err(HandleError::Timeout(timeout)),
            Err(FrontError::Trap(e)) => Err(HandleError::Trap(e)),
            Err(FrontError::Guest(e)) => Err(HandleError::Guest(e)),
            Err(FrontError::InstanceFailed(e)) => Err(HandleError::Trap(format!(
                "the service instance failed while handling the request: {e}"
            ))),
        }
    }
}

/// Counts requests and response bodies still open.
#[derive(Default)]
struct OpenCount {
    count: AtomicUsize,
    idle: tokio::sync::Notify,
}

impl OpenCount {
    async fn idle(&self) {
        loop {
            let notified = self.idle.notified();
            let mut notified = pin!(notified);
            notified.as_mut().enable();
            if self.count.load(Ordering::Acquire) == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// One open request (then its response body); released on drop.
struct OpenGuard(Arc<OpenCount>);

impl OpenGuard {
    fn new(open: &Arc<OpenCount>) -> OpenGuard {
        open.count.fetch_add(1, Ordering::AcqRel);
        OpenGuard(Arc::clone(open))
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// A response body that keeps its request counted as open until it ends or is dropped.
struct Guarded<B> {
    inner: B,
    _guard: OpenGuard,
}

impl<B> Body for Guarded<B>
where
    B: Body + Unpin,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
