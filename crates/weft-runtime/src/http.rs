//! Serving `wasi:http` components: the P2 `wasi:http/proxy` and P3 `wasi:http/service`
//! worlds, through wasmtime-wasi-http's `ProxyHandler` worker pool (instance reuse for P3,
//! a fresh instance per request for P2 by default), with the limits in the library:
//! a bounded number of requests in flight (excess gets a typed `Overloaded`), a per-request
//! deadline (typed `Timeout`), and traps that fail their request only.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use wasmtime::component::{Component, GuestTaskId, InstancePre, Linker};
use wasmtime::{Store, StoreContextMut};
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi_http::WasiBody;
use wasmtime_wasi_http::handler::{
    ExpirationError, HandlerState, Instance, InstantiationError, ProxyHandler, ProxyPre,
    ShouldAccept, TrapOrPanicError, WorkerExpiration, WorkerState, WorkerStatus,
};

pub use crate::admission::{DEFAULT_QUEUE_TIMEOUT, HandleError};
use crate::admission::{admit, limit_request, limit_response};
use crate::state::{HostState, OutgoingHttp};
use weft_engine::engine::WeftEngine;
use weft_engine::world::{self, WorldKind};
use weft_interfaces::stdio::{Output, SinkStream, prefixed_stream};
use weft_interfaces::wasi::WasiGrants;
/// Moved to `wasi.rs`; the name stays here for existing callers.
pub use weft_interfaces::wasi::add_to_linker;
use weft_policy::allow::AllowedHosts;

/// wasmtime serve's defaults, kept so users can swap binaries.
pub const DEFAULT_P3_MAX_INSTANCE_REUSE: usize = 128;
pub const DEFAULT_P2_MAX_INSTANCE_REUSE: usize = 1;
pub const DEFAULT_P3_MAX_INSTANCE_CONCURRENT_REUSE: usize = 16;
pub const DEFAULT_IDLE_INSTANCE_TIMEOUT: Duration = Duration::from_secs(1);
pub const DEFAULT_MAX_CONCURRENT_REQUESTS: usize = 1000;

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
    pub response_pace: Option<Arc<weft_engine::limit::RateMeter>>,
    /// Host plugins for `weft serve` (wasmtime's `-Sconfig`, `-Skeyvalue`), bound to the
    /// component named [`SERVE_COMPONENT`]. Workloads bind theirs through `WorkloadExtras`.
    pub plugins: Option<weft_interfaces::plugins::BoundPlugins<HostState>>,
    /// In-memory calls to the host's other workloads (`NAME.weft.internal`); `None` outside
    /// `weft up`.
    pub internal: Option<weft_interfaces::outbound::InternalCaller>,
    /// Where refused outgoing requests are reported as typed denials (the workload's log sink
    /// and the component); `None` outside a workload.
    pub denials: Option<weft_interfaces::outbound::DenialReport>,
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
            max_request_body: weft_engine::limit::DEFAULT_MAX_REQUEST_BODY,
            max_response_body: weft_engine::limit::DEFAULT_MAX_RESPONSE_BODY,
            max_resources: weft_engine::limit::DEFAULT_MAX_RESOURCES,
            response_pace: None,
            plugins: None,
            internal: None,
            denials: None,
        }
    }
}

/// What a workload adds to a served component: its plugins, its name, and where its
/// stdout/stderr go. `weft serve` has none of these.
#[derive(Clone)]
pub struct WorkloadExtras {
    pub component: String,
    pub plugins: weft_interfaces::plugins::BoundPlugins<HostState>,
    pub logs: weft_engine::logs::LogSink,
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

/// A served component: one pre-instance, one worker pool.
#[derive(Clone)]
pub struct HttpService {
    handler: ProxyHandler<ServiceState>,
    kind: WorldKind,
}

/// A service's state, shared by its replicas (see [`HttpService::replica`]) except for the
/// worker pool that wraps it.
#[derive(Clone)]
struct ServiceState {
    engine: wasmtime::Engine,
    extras: Option<WorkloadExtras>,
    pre: Arc<ProxyPre<HostState>>,
    options: HttpOptions,
    hooks: OutgoingHttp,
    reuse: usize,
    concurrent_reuse: usize,
    request_timeout: Duration,
    next_instance_id: Arc<AtomicU64>,
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
        let worlds = world::Worlds::of(ifaces.exports.iter().map(String::as_str));
        // The handler to serve: WASI 0.3 over 0.2; a `run` export next to it is incidental.
        let Some(kind) = worlds.serve_kind() else {
            return Err(ServeError::WrongWorld {
                kind: worlds.kind(),
            });
        };
        if extras.is_none() {
            let granted = options.plugins.as_ref().map(|p| p.granted()).unwrap_or(&[]);
            let provides: Vec<&str> = SERVE_PROVIDES
                .iter()
                .copied()
                .chain(granted.iter().map(String::as_str))
                .collect();
            if let Some(msg) =
                world::explain_unsatisfied(&ifaces.imports, &provides, "`weft serve`")
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
            pre: Arc::new(pre),
            hooks: OutgoingHttp::new(options.allowed_hosts.clone())
                .with_internal(options.internal.clone())
                .with_denials(options.denials.clone()),
            reuse: reuse.max(1),
            concurrent_reuse: concurrent_reuse.max(1),
            request_timeout: options.grants.timeout.unwrap_or(Duration::MAX),
            in_flight: Arc::new(Semaphore::new(options.max_concurrent_requests.max(1))),
            options,
            next_instance_id: Arc::new(AtomicU64::new(0)),
        };
        Ok(Self {
            handler: ProxyHandler::new(state),
            kind,
        })
    }

    pub fn kind(&self) -> WorldKind {
        self.kind
    }

    /// The same service with a worker pool of its own, for another serving thread: it shares
    /// the pre-instance, the limit on requests in flight and the instance numbering, but its
    /// instances (and the requests they take) and its outgoing HTTP connection pool stay with
    /// the thread that uses it, so a request
    /// never waits for a wake-up from another thread (docs/architecture.md, "`weft serve` on threads").
    pub fn replica(&self) -> Self {
        let mut state = self.handler.state().clone();
        // Outgoing connections too: each pool belongs to the runtime that opened them.
        state.hooks = state.hooks.with_own_pool();
        Self {
            handler: ProxyHandler::new(state),
            kind: self.kind,
        }
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
        let mut request = request;
        let tracer = request
            .extensions_mut()
            .remove::<weft_interfaces::outbound::RequestTracer>()
            .map(|t| t.0);
        let fate = FateSlot::default();
        let result = self
            .handler
            .handle((fate.clone(), tracer), request)
            .await
            .map(|response| limit_response(response, max_response, pace))
            .map(|response| response.map(|body| honest(body, fate.clone())));
        drop(permit);
        result.map_err(|err| {
            let retired = fate.get().is_some_and(|f| f.retired_at_deadline());
            // A P2 handler cut off at its deadline surfaces as "never set a response":
            // judge by the clock as well as by the error type.
            if err.is::<ExpirationError>() || started.elapsed() >= timeout {
                HandleError::Timeout(timeout)
            } else if retired {
                // Another request on the same instance ran past its deadline, and the instance
                // was torn down with this one in flight (docs/security.md, "Deadlines").
                HandleError::Retired
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
        let started = Instant::now();
        let mut store = self.new_store(id)?;
        let proxy = self.pre.instantiate_async(&mut store).await?;
        if let Some(stats) = &self.options.grants.stats {
            stats.instantiation.observe(started.elapsed());
        }
        let fate = Arc::new(Fate::default());
        Ok(Instance {
            store,
            proxy,
            view: wasmtime_wasi_http::WasiHttpView::http,
            expiration: Expiration {
                idle_timeout: self.options.idle_instance_timeout,
                request_timeout: self.request_timeout,
                sleep: Box::pin(tokio::time::sleep(Duration::MAX)),
                fate: fate.clone(),
            },
            state: Worker {
                instance_id: id,
                reuse: self.reuse,
                concurrent_reuse: self.concurrent_reuse,
                request_timeout: self.request_timeout,
                fate,
            },
        })
    }
}

/// What became of one instance, shared by its worker, its expiration and the requests it
/// took: the deadlines of the requests in flight on it, whether one of them ran past its
/// deadline (then the instance is torn down at once: [`Expiration`]), and whether it ended in
/// an error (then a response body it was still producing is cut, not ended: [`honest`]).
#[derive(Default)]
pub struct Fate {
    /// Deadlines of the requests in flight that have not produced a response yet, by key.
    deadlines: std::sync::Mutex<std::collections::BTreeMap<u64, tokio::time::Instant>>,
    next_key: AtomicU64,
    /// A request on this instance ran past its deadline.
    expired: std::sync::atomic::AtomicBool,
    /// The instance is gone, torn down by an error (trap, deadline): not a clean exit.
    failed: std::sync::atomic::AtomicBool,
}

impl Fate {
    fn earliest_deadline(&self) -> Option<tokio::time::Instant> {
        let deadlines = match self.deadlines.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        deadlines.values().min().copied()
    }

    fn add_deadline(&self, deadline: tokio::time::Instant) -> u64 {
        let key = self.next_key.fetch_add(1, Ordering::Relaxed);
        let mut deadlines = match self.deadlines.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        deadlines.insert(key, deadline);
        key
    }

    fn remove_deadline(&self, key: u64) {
        let mut deadlines = match self.deadlines.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        deadlines.remove(&key);
    }

    /// The instance was torn down because a request on it ran past its deadline.
    pub fn retired_at_deadline(&self) -> bool {
        self.expired.load(Ordering::Acquire)
    }

    /// The instance ended in an error (trap, deadline, panic).
    pub fn failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }
}

/// Where a request learns which instance took it (set when the instance accepts it).
pub type FateSlot = Arc<std::sync::OnceLock<Arc<Fate>>>;

/// A response body that tells a failed guest from a finished one: wasmtime-wasi-http ends a
/// P3 body cleanly when the instance producing it dies (its trailers channel closes), which
/// would let the front end write a terminating chunk after a trap. When the inner body ends
/// and the instance that produced it ended in an error, this yields an error instead, and the
/// HTTP server aborts the response (HTTP/1.1: no terminating chunk, connection closed).
pub fn honest(body: WasiBody, fate: FateSlot) -> WasiBody {
    use http_body_util::BodyExt;
    Honest { inner: body, fate }.boxed_unsync()
}

struct Honest {
    inner: WasiBody,
    fate: FateSlot,
}

impl http_body::Body for Honest {
    type Data = bytes::Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, BodyError>>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_frame(cx);
        if let std::task::Poll::Ready(None) = polled
            && self.fate.get().is_some_and(|f| f.failed())
        {
            return std::task::Poll::Ready(Some(Err(BodyError::InternalError(Some(
                "the guest failed before its response body ended".into(),
            )))));
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        // A body whose instance failed is never at its end: the next poll reports the failure.
        self.inner.is_end_stream() && !self.fate.get().is_some_and(|f| f.failed())
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Expires a worker when it is idle too long, when its oldest request still waiting for a
/// response is past its deadline, or at once when any request on it ran past its deadline:
/// an instance that let one request run out of time takes no other request and is torn down
/// (its other requests in flight get `HandleError::Retired`, a 503).
pub struct Expiration {
    idle_timeout: Duration,
    request_timeout: Duration,
    sleep: std::pin::Pin<Box<tokio::time::Sleep>>,
    fate: Arc<Fate>,
}

impl WorkerExpiration for Expiration {
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        status: WorkerStatus,
        start: Instant,
    ) -> std::task::Poll<()> {
        if self.fate.retired_at_deadline() {
            return std::task::Poll::Ready(());
        }
        let timeout = match status {
            WorkerStatus::Idle => self.idle_timeout,
            WorkerStatus::Requests | WorkerStatus::PostReturn => self.request_timeout,
        };
        let Some(deadline) = start.checked_add(timeout) else {
            return std::task::Poll::Pending;
        };
        let mut deadline = tokio::time::Instant::from_std(deadline);
        if status != WorkerStatus::Idle
            && let Some(earliest) = self.fate.earliest_deadline()
        {
            // `start` is the newest request's; a guest spinning on the CPU keeps the inner
            // deadline futures from being polled, so the oldest one is enforced here.
            deadline = deadline.min(earliest);
        }
        if deadline <= tokio::time::Instant::now() {
            if status != WorkerStatus::Idle {
                self.fate.expired.store(true, Ordering::Release);
            }
            return std::task::Poll::Ready(());
        }
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
    fate: Arc<Fate>,
}

/// Removes a request's deadline from its instance's [`Fate`] when the request is done with
/// (it produced a response, or the future was dropped).
struct DeadlineGuard {
    fate: Arc<Fate>,
    key: u64,
}

impl Drop for DeadlineGuard {
    fn drop(&mut self) {
        self.fate.remove_deadline(self.key);
    }
}

impl WorkerState for Worker {
    type StoreData = HostState;
    /// The slot that learns the serving instance's fate, and the ingress request's tracer
    /// (for the spans of its outgoing requests).
    type RequestData = (
        FateSlot,
        Option<Arc<dyn weft_interfaces::outbound::OutgoingTracer>>,
    );

    fn should_accept_request(&self, concurrent: usize, total: usize) -> ShouldAccept {
        if self.fate.retired_at_deadline() || total >= self.reuse {
            ShouldAccept::Never
        } else if concurrent >= self.concurrent_reuse {
            ShouldAccept::No
        } else {
            ShouldAccept::Yes
        }
    }

    fn on_request_start(
        &self,
        mut store: StoreContextMut<'_, HostState>,
        (slot, tracer): Self::RequestData,
        _task: GuestTaskId,
    ) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send + Sync>> {
        store.data_mut().hooks.tracer = tracer;
        tracing::trace!(instance = self.instance_id, "request accepted");
        let _ = slot.set(self.fate.clone());
        let Some(deadline) = tokio::time::Instant::now().checked_add(self.request_timeout) else {
            return Box::pin(std::future::pending());
        };
        let guard = DeadlineGuard {
            fate: self.fate.clone(),
            key: self.fate.add_deadline(deadline),
        };
        Box::pin(async move {
            tokio::time::sleep_until(deadline).await;
            // The request ran out of time: the instance takes no more and is torn down as
            // soon as the worker's expiration is polled (right after this future completes).
            guard.fate.expired.store(true, Ordering::Release);
            drop(guard);
        })
    }

    fn drop(&self, store: Store<HostState>, result: wasmtime::Result<()>) {
        if let Err(err) = &result {
            // Set before the store is dropped: a response body still streaming from this
            // instance sees its end only once the store is gone, and must see it as a failure.
            self.fate.failed.store(true, Ordering::Release);
            if self.fate.retired_at_deadline() {
                tracing::warn!(
                    instance = self.instance_id,
                    "handler instance retired: a request on it ran past its deadline"
                );
            } else if !std::thread::panicking() && err.to_string() == WORKER_DROPPED {
                // wasmtime-wasi-http says "worker panicked" for any worker whose future was
                // dropped; without a panic unwinding, that is a shutdown or an undeploy.
                tracing::debug!(
                    instance = self.instance_id,
                    "handler instance dropped with its worker (shutdown or undeploy)"
                );
            } else {
                tracing::warn!(instance = self.instance_id, error = ?err, "handler instance failed");
            }
        }
        drop(store);
    }
}

/// The error wasmtime-wasi-http 48 hands `WorkerState::drop` when a worker's future is dropped
/// before it finished (its `Dropper`), whether by a panic or by cancellation.
const WORKER_DROPPED: &str = "worker panicked";

/// The error type of request and response bodies.
pub type BodyError = wasmtime_wasi_http::Error;

#[cfg(test)]
mod tests {
    //! `wasi:keyvalue` end to end: the kv-counter guest served through this runner with the
    //! workload's bound plugins, on both backends.

    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicUsize, Ordering};

    use weft_manifest::Manifest;

    use super::*;
    use weft_engine::logs::LogSink;
    use weft_interfaces::plugins::BoundPlugins;
    use weft_interfaces::plugins::keyvalue::MAX_VALUE_BYTES;

    /// A name no other test uses (memory stores are process-wide by owner).
    fn unique(prefix: &str) -> String {
        static N: AtomicUsize = AtomicUsize::new(0);
        format!(
            "{prefix}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// `kv-counter.wasm` from `WEFT_GUESTS_DIR`. Never skipped: without the fixtures the test
    /// fails and says how to build them (scripts/test.sh does).
    fn kv_counter_guest() -> Option<PathBuf> {
        let Some(dir) = std::env::var_os("WEFT_GUESTS_DIR") else {
            panic!(
                "WEFT_GUESTS_DIR is not set: build the guests with tests/fixtures/build-guests.sh \
                 and export WEFT_GUESTS_DIR (scripts/test.sh does both)"
            );
        };
        let path = PathBuf::from(dir).join("kv-counter.wasm");
        assert!(
            path.is_file(),
            "{} is missing: rebuild with tests/fixtures/build-guests.sh",
            path.display()
        );
        Some(path)
    }

    struct Served {
        service: HttpService,
        plugins: BoundPlugins<HostState>,
    }

    fn serve(
        engine: &WeftEngine,
        component: &wasmtime::component::Component,
        manifest: &Manifest,
        data_dir: &Path,
    ) -> Served {
        let logs = LogSink::new(&manifest.metadata.name);
        let plugins = BoundPlugins::bind(manifest, data_dir.to_path_buf(), &logs)
            .unwrap_or_else(|e| panic!("bind: {e:?}"));
        let service = HttpService::for_workload(
            engine,
            component,
            HttpOptions::default(),
            WorkloadExtras {
                component: "api".into(),
                plugins: plugins.clone(),
                logs,
                service: None,
            },
        )
        .unwrap_or_else(|e| panic!("serve kv-counter: {e}"));
        Served { service, plugins }
    }

    async fn call(s: &Served, method: &str, path: &str, body: Vec<u8>) -> (u16, String) {
        use http_body_util::BodyExt as _;
        let body = http_body_util::Full::new(bytes::Bytes::from(body))
            .map_err(|never: std::convert::Infallible| match never {})
            .boxed_unsync();
        let request = http::Request::builder()
            .method(method)
            .uri(format!("http://localhost{path}"))
            .header("host", "localhost")
            .body(body)
            .unwrap();
        let response = s.service.handle(request).await.unwrap();
        let status = response.status().as_u16();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }

    fn kv_manifest(name: &str, backend: &str) -> Manifest {
        let text = format!(
            "apiVersion: weft.dev/v1alpha1\nkind: Workload\nmetadata: {{ name: {name} }}\n\
             spec:\n  components:\n    - name: api\n      image: ./kv-counter.wasm\n\
             \x20 hostInterfaces:\n\
             \x20   - {{ namespace: wasi, package: http, interfaces: [incoming-handler] }}\n\
             \x20   - {{ namespace: wasi, package: keyvalue, interfaces: [store, atomics],\n\
             \x20        config: {{ backend: {backend} }} }}\n"
        );
        weft_manifest::parse_str(&text, Path::new("kv.yaml"))
            .expect("kv manifest")
            .remove(0)
    }

    #[test]
    fn kv_counter_guest_end_to_end() {
        let Some(wasm) = kv_counter_guest() else {
            return;
        };
        let engine = WeftEngine::new(&Default::default()).unwrap();
        let loaded = weft_engine::load::load(&engine, &wasm, None).unwrap();
        let weft_engine::load::Compiled::Component(component) = loaded.compiled else {
            panic!("kv-counter.wasm is not a component");
        };
        let dir = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            // memory: every request is a fresh instance; they share the store.
            let s = serve(
                &engine,
                &component,
                &kv_manifest(&unique("kvc"), "memory"),
                dir.path(),
            );
            assert_eq!(
                call(&s, "GET", "/", vec![]).await,
                (200, "count=1\n".into())
            );
            assert_eq!(
                call(&s, "GET", "/", vec![]).await,
                (200, "count=2\n".into())
            );
            assert_eq!(
                call(&s, "PUT", "/set?key=greeting", b"hello".to_vec()).await,
                (204, String::new())
            );
            assert_eq!(
                call(&s, "GET", "/get?key=greeting", vec![]).await,
                (200, "hello".into())
            );
            assert_eq!(
                call(&s, "GET", "/get?key=nope", vec![]).await,
                (404, "not found\n".into())
            );
            assert_eq!(
                call(&s, "GET", "/keys", vec![]).await,
                (200, "count\ngreeting\n".into())
            );
            assert_eq!(
                call(&s, "GET", "/other-bucket", vec![]).await,
                (403, "open(\"someone-else\"): no-such-store\n".into())
            );
            let (status, text) =
                call(&s, "PUT", "/set?key=big", vec![b'x'; MAX_VALUE_BYTES + 1]).await;
            assert_eq!(status, 500, "{text}");
            assert!(text.contains("MAX_VALUE_BYTES"), "{text}");
            s.service.close();
            s.plugins.unbind();

            // redb: the count survives tearing the workload down and binding it again.
            let m = kv_manifest(&unique("kvc-redb"), "redb");
            let s = serve(&engine, &component, &m, dir.path());
            assert_eq!(
                call(&s, "GET", "/", vec![]).await,
                (200, "count=1\n".into())
            );
            assert_eq!(
                call(&s, "GET", "/", vec![]).await,
                (200, "count=2\n".into())
            );
            s.service.close();
            s.plugins.unbind();
            drop(s);
            let s = serve(&engine, &component, &m, dir.path());
            assert_eq!(
                call(&s, "GET", "/", vec![]).await,
                (200, "count=3\n".into())
            );
            s.plugins.unbind();
        });
    }
}
