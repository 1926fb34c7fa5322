//! Serving `wasi:http` components: the P2 `wasi:http/proxy` and P3 `wasi:http/service`
//! worlds, through wasmtime-wasi-http's `ProxyHandler` worker pool (instance reuse for P3,
//! a fresh instance per request for P2 by default), with the limits in the library:
//! a bounded number of requests in flight (excess gets a typed `Overloaded`), a per-request
//! deadline (typed `Timeout`), and traps that fail their request only.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use http::StatusCode;
use tokio::sync::Semaphore;
use wasmtime::component::{Component, GuestTaskId, InstancePre, Linker};
use wasmtime::{Store, StoreContextMut};
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi_http::WasiBody;
use wasmtime_wasi_http::handler::{
    ExpirationError, HandlerState, Instance, InstantiationError, ProxyHandler, ProxyPre,
    ShouldAccept, TrapOrPanicError, WorkerExpiration, WorkerState, WorkerStatus,
};

use crate::allow::AllowedHosts;
use crate::engine::WeftEngine;
use crate::state::{HostState, OutgoingHttp};
use crate::stdio::{Output, SinkStream, prefixed_stream};
use crate::wasi::WasiGrants;
use crate::world::{self, WorldKind};

/// wasmtime serve's defaults, kept so users can swap binaries.
pub const DEFAULT_P3_MAX_INSTANCE_REUSE: usize = 128;
pub const DEFAULT_P2_MAX_INSTANCE_REUSE: usize = 1;
pub const DEFAULT_P3_MAX_INSTANCE_CONCURRENT_REUSE: usize = 16;
pub const DEFAULT_IDLE_INSTANCE_TIMEOUT: Duration = Duration::from_secs(1);
pub const DEFAULT_MAX_CONCURRENT_REQUESTS: usize = 1000;
pub const DEFAULT_QUEUE_TIMEOUT: Duration = Duration::from_secs(10);

/// Interfaces an HTTP handler may import (as `wasmtime serve` without `-Scli`).
pub const SERVE_PROVIDES: &[&str] = &[
    "wasi:http",
    "wasi:io",
    "wasi:clocks",
    "wasi:random",
    "wasi:cli/stdout",
    "wasi:cli/stderr",
    "wasi:cli/stdin",
    "wasi:cli/environment",
    "wasi:cli/exit",
    "wasi:cli/types",
    "wasi:cli/terminal-input",
    "wasi:cli/terminal-output",
    "wasi:cli/terminal-stdin",
    "wasi:cli/terminal-stdout",
    "wasi:cli/terminal-stderr",
    "wasi:filesystem",
    "wasi:sockets",
];

/// Options of an HTTP service (the `weft serve` flags).
#[derive(Debug, Clone)]
pub struct HttpOptions {
    pub grants: WasiGrants,
    pub allowed_hosts: AllowedHosts,
    /// Requests per instance before it is retired (default: 1 for P2, 128 for P3).
    pub max_instance_reuse_count: Option<usize>,
    /// Concurrent requests per instance (P3 only; default 16).
    pub max_instance_concurrent_reuse_count: Option<usize>,
    /// How long an idle instance is kept for reuse.
    pub idle_instance_timeout: Duration,
    /// Requests in flight at once; more wait up to `queue_timeout`, then get `Overloaded`.
    pub max_concurrent_requests: usize,
    pub queue_timeout: Duration,
    /// Prefix guest stdout/stderr lines with the instance id.
    pub log_prefix: bool,
    /// Largest request body passed to the guest; larger gets 413 (by Content-Length) or a
    /// body error (streamed).
    pub max_request_body: u64,
    /// Largest response body the guest may send; the stream is cut off past it.
    pub max_response_body: u64,
    /// Resource handles per instance (see `limit::DEFAULT_MAX_RESOURCES`).
    pub max_resources: usize,
    /// Paces response bodies (bytes per second, shared by every response of the workload);
    /// `None`: unpaced.
    pub response_pace: Option<Arc<crate::limit::RateMeter>>,
    /// Host plugins for `weft serve` (wasmtime's `-Sconfig`, `-Skeyvalue`), bound to the
    /// component named [`SERVE_COMPONENT`]. Workloads bind theirs through `WorkloadExtras`.
    pub plugins: Option<crate::plugins::BoundPlugins>,
}

/// The component name `weft serve`'s plugins are bound to.
pub const SERVE_COMPONENT: &str = "app";

impl Default for HttpOptions {
    fn default() -> Self {
        Self {
            grants: WasiGrants::default(),
            allowed_hosts: AllowedHosts::deny_all(),
            max_instance_reuse_count: None,
            max_instance_concurrent_reuse_count: None,
            idle_instance_timeout: DEFAULT_IDLE_INSTANCE_TIMEOUT,
            max_concurrent_requests: DEFAULT_MAX_CONCURRENT_REQUESTS,
            queue_timeout: DEFAULT_QUEUE_TIMEOUT,
            log_prefix: true,
            max_request_body: crate::limit::DEFAULT_MAX_REQUEST_BODY,
            max_response_body: crate::limit::DEFAULT_MAX_RESPONSE_BODY,
            max_resources: crate::limit::DEFAULT_MAX_RESOURCES,
            response_pace: None,
            plugins: None,
        }
    }
}

/// What a workload adds to a served component: its plugins, its name, and where its
/// stdout/stderr go. `weft serve` has none of these.
#[derive(Clone)]
pub struct WorkloadExtras {
    pub component: String,
    pub plugins: crate::plugins::BoundPlugins,
    pub logs: crate::logs::LogSink,
    /// The imports the workload's service satisfies (forwarded into its instance).
    pub service: Option<crate::svccall::ServiceImports>,
}

/// Why a component cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("this is {kind}, not an HTTP handler. Use {} instead.", kind.fitting_command())]
    WrongWorld { kind: WorldKind },
    #[error("{0}")]
    Unsatisfied(String),
    #[error("cannot link the component: {0}")]
    Link(String),
}

/// Why one request failed. Each maps to a status code at the edge.
#[derive(Debug, thiserror::Error)]
pub enum HandleError {
    #[error("too many requests in flight; try again later")]
    Overloaded,
    #[error("the handler did not respond within {0:?}")]
    Timeout(Duration),
    #[error("the handler trapped: {0}")]
    Trap(String),
    #[error("could not instantiate the handler: {0}")]
    Instantiate(String),
    #[error("the handler failed: {0}")]
    Guest(String),
    #[error("the service is shutting down")]
    ShuttingDown,
    #[error("the request body is larger than this host accepts ({0} bytes)")]
    TooLarge(u64),
    #[error("the workload's service is not serving: {0}")]
    Unavailable(String),
}

impl HandleError {
    pub fn status(&self) -> StatusCode {
        match self {
            HandleError::Overloaded | HandleError::ShuttingDown | HandleError::Unavailable(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            HandleError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            HandleError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            HandleError::Trap(_) | HandleError::Instantiate(_) | HandleError::Guest(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }
}

/// Adds what HTTP handlers may import to `linker`.
pub fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    wasmtime_wasi::p2::add_to_linker_async(linker)?;
    crate::net::add_p2_overrides(linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(linker)?;
    wasmtime_wasi::p3::add_to_linker(linker)?;
    wasmtime_wasi_http::p3::add_to_linker(linker)?;
    crate::net::add_p3_overrides(linker)?;
    Ok(())
}

/// A served component: one pre-instance, one worker pool.
#[derive(Clone)]
pub struct HttpService {
    handler: ProxyHandler<ServiceState>,
    kind: WorldKind,
}

struct ServiceState {
    engine: wasmtime::Engine,
    extras: Option<WorkloadExtras>,
    pre: ProxyPre<HostState>,
    options: HttpOptions,
    hooks: OutgoingHttp,
    reuse: usize,
    concurrent_reuse: usize,
    request_timeout: Duration,
    next_instance_id: AtomicU64,
    in_flight: Arc<Semaphore>,
}

impl HttpService {
    /// Links and pre-instantiates `component` for serving.
    pub fn new(
        engine: &WeftEngine,
        component: &Component,
        options: HttpOptions,
    ) -> Result<Self, ServeError> {
        Self::build(engine, component, options, None)
    }

    /// Links and pre-instantiates a workload's HTTP component with its plugins.
    pub fn for_workload(
        engine: &WeftEngine,
        component: &Component,
        options: HttpOptions,
        extras: WorkloadExtras,
    ) -> Result<Self, ServeError> {
        Self::build(engine, component, options, Some(extras))
    }

    fn build(
        engine: &WeftEngine,
        component: &Component,
        options: HttpOptions,
        extras: Option<WorkloadExtras>,
    ) -> Result<Self, ServeError> {
        let ifaces = world::interfaces(engine.engine(), component);
        let kind = world::classify(ifaces.exports.iter().map(String::as_str));
        if !kind.is_http() {
            return Err(ServeError::WrongWorld { kind });
        }
        if extras.is_none() {
            let granted = options.plugins.as_ref().map(|p| p.granted()).unwrap_or(&[]);
            let provides: Vec<&str> = SERVE_PROVIDES
                .iter()
                .copied()
                .chain(granted.iter().map(String::as_str))
                .collect();
            if let Some(msg) =
                crate::run::explain_unsatisfied(&ifaces.imports, &provides, "`weft serve`")
            {
                return Err(ServeError::Unsatisfied(msg));
            }
        }
        let mut linker = Linker::new(engine.engine());
        add_to_linker(&mut linker).map_err(|e| ServeError::Link(format!("{e:#}")))?;
        if let (None, Some(plugins)) = (&extras, &options.plugins) {
            plugins
                .add_to_linker(&mut linker)
                .map_err(|e| ServeError::Link(format!("{e:#}")))?;
        }
        if let Some(extras) = &extras {
            extras
                .plugins
                .add_to_linker(&mut linker)
                .map_err(|e| ServeError::Link(format!("{e:#}")))?;
            if let Some(service) = &extras.service {
                service
                    .add_to_linker(engine.engine(), &mut linker, component, &extras.component)
                    .map_err(|e| ServeError::Link(e.to_string()))?;
            }
        }
        let pre: InstancePre<HostState> = linker
            .instantiate_pre(component)
            .map_err(|e| ServeError::Link(format!("{e:#}")))?;
        let pre = if kind == WorldKind::HttpP3 {
            ProxyPre::P3(
                wasmtime_wasi_http::p3::bindings::ServicePre::new(pre)
                    .map_err(|e| ServeError::Link(format!("{e:#}")))?,
            )
        } else {
            ProxyPre::P2(
                wasmtime_wasi_http::p2::bindings::ProxyPre::new(pre)
                    .map_err(|e| ServeError::Link(format!("{e:#}")))?,
            )
        };
        let p3 = kind == WorldKind::HttpP3;
        let reuse = options.max_instance_reuse_count.unwrap_or(if p3 {
            DEFAULT_P3_MAX_INSTANCE_REUSE
        } else {
            DEFAULT_P2_MAX_INSTANCE_REUSE
        });
        let concurrent_reuse = if p3 {
            options
                .max_instance_concurrent_reuse_count
                .unwrap_or(DEFAULT_P3_MAX_INSTANCE_CONCURRENT_REUSE)
        } else {
            1
        };
        let state = ServiceState {
            engine: engine.engine().clone(),
            extras,
            pre,
            hooks: OutgoingHttp::new(options.allowed_hosts.clone()),
            reuse: reuse.max(1),
            concurrent_reuse: concurrent_reuse.max(1),
            request_timeout: options.grants.timeout.unwrap_or(Duration::MAX),
            in_flight: Arc::new(Semaphore::new(options.max_concurrent_requests.max(1))),
            options,
            next_instance_id: AtomicU64::new(0),
        };
        Ok(Self {
            handler: ProxyHandler::new(state),
            kind,
        })
    }

    pub fn kind(&self) -> WorldKind {
        self.kind
    }

    /// Handles one request.
    pub async fn handle(
        &self,
        request: http::Request<WasiBody>,
    ) -> Result<http::Response<WasiBody>, HandleError> {
        let state = self.handler.state();
        let permit = admit(&state.in_flight, state.options.queue_timeout).await?;
        let timeout = state.request_timeout;
        let started = Instant::now();
        let request = limit_request(request, state.options.max_request_body)?;
        let max_response = state.options.max_response_body;
        let pace = state.options.response_pace.clone();
        let result = self
            .handler
            .handle((), request)
            .await
            .map(|response| limit_response(response, max_response, pace));
        drop(permit);
        result.map_err(|err| {
            // A P2 handler cut off at its deadline surfaces as "never set a response":
            // judge by the clock as well as by the error type.
            if err.is::<ExpirationError>() || started.elapsed() >= timeout {
                HandleError::Timeout(timeout)
            } else if err.is::<TrapOrPanicError>() || err.is::<wasmtime::Trap>() {
                HandleError::Trap(format!("{err:?}"))
            } else if let Some(e) = err.downcast_ref::<InstantiationError<()>>() {
                HandleError::Instantiate(format!("{:?}", e.error))
            } else {
                HandleError::Guest(format!("{err:?}"))
            }
        })
    }

    /// Stops accepting requests; those in flight finish.
    pub fn close(&self) {
        self.handler.state().in_flight.close();
    }
}

/// Takes one of the `in_flight` permits, waiting up to `queue_timeout` for one: the cap on
/// requests in flight. A closed semaphore means the handler is draining.
pub(crate) async fn admit(
    in_flight: &Arc<Semaphore>,
    queue_timeout: Duration,
) -> Result<tokio::sync::OwnedSemaphorePermit, HandleError> {
    match in_flight.clone().try_acquire_owned() {
        Ok(p) => Ok(p),
        Err(tokio::sync::TryAcquireError::Closed) => Err(HandleError::ShuttingDown),
        Err(tokio::sync::TryAcquireError::NoPermits) => {
            match tokio::time::timeout(queue_timeout, in_flight.clone().acquire_owned()).await {
                Ok(Ok(p)) => Ok(p),
                Ok(Err(_)) => Err(HandleError::ShuttingDown),
                Err(_) => Err(HandleError::Overloaded),
            }
        }
    }
}

/// Refuses a request whose declared body is over `max` bytes, and cuts off a streamed one
/// that grows past it.
pub(crate) fn limit_request(
    request: http::Request<WasiBody>,
    max: u64,
) -> Result<http::Request<WasiBody>, HandleError> {
    let declared = request
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max) {
        return Err(HandleError::TooLarge(max));
    }
    Ok(request.map(|body| {
        use http_body_util::BodyExt;
        crate::limit::Limited::new(body, max, crate::limit::Direction::Request).boxed_unsync()
    }))
}

/// Cuts off a guest's response body past `max` bytes, and paces it by `pace`.
pub(crate) fn limit_response(
    response: http::Response<WasiBody>,
    max: u64,
    pace: Option<Arc<crate::limit::RateMeter>>,
) -> http::Response<WasiBody> {
    response.map(|body| {
        use http_body_util::BodyExt;
        crate::limit::Limited::new(body, max, crate::limit::Direction::Response)
            .paced(pace)
            .boxed_unsync()
    })
}

impl ServiceState {
    fn new_store(&self, id: u64) -> wasmtime::Result<Store<HostState>> {
        let mut builder = WasiCtxBuilder::new();
        let plugins = match &self.extras {
            Some(extras) => {
                builder.stdout(SinkStream::new(
                    extras.logs.clone(),
                    &extras.component,
                    Output::Stdout,
                ));
                builder.stderr(SinkStream::new(
                    extras.logs.clone(),
                    &extras.component,
                    Output::Stderr,
                ));
                extras.plugins.instance(&extras.component)
            }
            None => {
                if self.options.log_prefix {
                    builder.stdout(prefixed_stream(Output::Stdout, id));
                    builder.stderr(prefixed_stream(Output::Stderr, id));
                } else {
                    builder.inherit_stdout().inherit_stderr();
                }
                match &self.options.plugins {
                    Some(plugins) => plugins.instance(SERVE_COMPONENT),
                    None => Default::default(),
                }
            }
        };
        HostState::new_store(
            &self.engine,
            builder,
            &self.options.grants,
            self.hooks.clone(),
            plugins,
            self.options.max_resources,
        )
    }
}

impl HandlerState for ServiceState {
    type StoreData = HostState;
    type WorkerExpiration = Expiration;
    type WorkerState = Worker;

    async fn instantiate(
        &self,
    ) -> wasmtime::Result<Instance<HostState, Self::WorkerExpiration, Self::WorkerState>> {
        let id = self.next_instance_id.fetch_add(1, Ordering::Relaxed);
        let mut store = self.new_store(id)?;
        let proxy = self.pre.instantiate_async(&mut store).await?;
        Ok(Instance {
            store,
            proxy,
            view: wasmtime_wasi_http::WasiHttpView::http,
            expiration: Expiration {
                idle_timeout: self.options.idle_instance_timeout,
                request_timeout: self.request_timeout,
                sleep: Box::pin(tokio::time::sleep(Duration::MAX)),
            },
            state: Worker {
                instance_id: id,
                reuse: self.reuse,
                concurrent_reuse: self.concurrent_reuse,
                request_timeout: self.request_timeout,
            },
        })
    }
}

/// Expires a worker when it is idle too long, or its newest request is past its deadline.
pub struct Expiration {
    idle_timeout: Duration,
    request_timeout: Duration,
    sleep: std::pin::Pin<Box<tokio::time::Sleep>>,
}

impl WorkerExpiration for Expiration {
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        status: WorkerStatus,
        start: Instant,
    ) -> std::task::Poll<()> {
        let timeout = match status {
            WorkerStatus::Idle => self.idle_timeout,
            WorkerStatus::Requests | WorkerStatus::PostReturn => self.request_timeout,
        };
        let Some(deadline) = start.checked_add(timeout) else {
            return std::task::Poll::Pending;
        };
        let deadline = tokio::time::Instant::from_std(deadline);
        if self.sleep.deadline() != deadline {
            self.sleep.as_mut().reset(deadline);
        }
        self.sleep.as_mut().poll(cx)
    }
}

/// Per-worker policy: how many requests an instance takes, and each request's deadline.
pub struct Worker {
    instance_id: u64,
    reuse: usize,
    concurrent_reuse: usize,
    request_timeout: Duration,
}

impl WorkerState for Worker {
    type StoreData = HostState;
    type RequestData = ();

    fn should_accept_request(&self, concurrent: usize, total: usize) -> ShouldAccept {
        if total >= self.reuse {
            ShouldAccept::Never
        } else if concurrent >= self.concurrent_reuse {
            ShouldAccept::No
        } else {
            ShouldAccept::Yes
        }
    }

    fn on_request_start(
        &self,
        _store: StoreContextMut<'_, HostState>,
        _data: (),
        _task: GuestTaskId,
    ) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send + Sync>> {
        tracing::trace!(instance = self.instance_id, "request accepted");
        if self.request_timeout == Duration::MAX {
            Box::pin(std::future::pending())
        } else {
            Box::pin(tokio::time::sleep(self.request_timeout))
        }
    }

    fn drop(&self, store: Store<HostState>, result: wasmtime::Result<()>) {
        if let Err(err) = result {
            tracing::warn!(instance = self.instance_id, error = ?err, "handler instance failed");
        }
        drop(store);
    }
}

/// The error type of request and response bodies.
pub type BodyError = wasmtime_wasi_http::Error;
