//! The workload host behind `weft up`: desired state (redb), deployed workload versions,
//! the route table, and the operations the admin API exposes. Updates are atomic: a new
//! version is compiled, linked and pre-instantiated before it replaces the old one in the
//! route table; requests already inside the old version finish there.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use weft_manifest::Manifest;
use weft_runtime::WasiBody;
use weft_runtime::cache::CompileCache;
use weft_runtime::engine::WeftEngine;
use weft_runtime::logs::LogSink;
use weft_runtime::outbound::{CALLER_HEADER, InternalDirectory, InternalRefusal, InternalResponse};
use weft_runtime::workload::{DeployContext, Workload, WorkloadDefaults};
use weft_stats::{HostStats, WorkloadStats};

use crate::front::{Failures, RequestId};
use crate::router::{Route, RouteTable};
use crate::store::{DesiredState, StoredWorkload};

/// Why an admin operation failed; the message is shown to the user as is.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Deploy(String),
    #[error("no workload named `{0}` (see `weft get workloads`)")]
    NotFound(String),
    #[error("{0}")]
    Store(String),
}

impl HostError {
    pub fn status(&self) -> http::StatusCode {
        match self {
            HostError::Invalid(_) | HostError::Deploy(_) => http::StatusCode::UNPROCESSABLE_ENTITY,
            HostError::NotFound(_) => http::StatusCode::NOT_FOUND,
            HostError::Store(_) => http::StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

struct Entry {
    current: Option<Arc<Workload>>,
    manifest: Manifest,
    version: u64,
    error: Option<String>,
    /// The last refused update of a workload whose running version kept serving.
    last_refused: Option<String>,
    logs: LogSink,
    /// Counters for this workload name, kept across versions (docs/observability.md).
    stats: Arc<WorkloadStats>,
}

/// One workload's counters and what the exporter labels them with.
#[derive(Debug, Clone)]
pub struct WorkloadStatsView {
    pub name: String,
    /// `Running` or `Failed`.
    pub status: &'static str,
    pub version: u64,
    /// Restarts of the running version's service, if it has one.
    pub service_restarts: Option<u64>,
    pub stats: Arc<WorkloadStats>,
}

/// Deploy attempts kept for the dashboard.
pub const DEPLOY_EVENTS: usize = 50;

/// One deploy attempt (of one manifest file's text), for the dashboard.
#[derive(Debug, Clone)]
pub struct DeployEvent {
    pub time: SystemTime,
    /// The manifest file the text came from.
    pub path: PathBuf,
    /// Workloads deployed (on success) or the one refused.
    pub workloads: Vec<String>,
    /// `None` if it was deployed; the error shown to the user if refused.
    pub error: Option<String>,
}

#[derive(Default)]
struct State {
    workloads: BTreeMap<String, Entry>,
    routes: Arc<RouteTable>,
}

/// One host process's workloads.
pub struct Host {
    engine: WeftEngine,
    cache: Option<CompileCache>,
    defaults: WorkloadDefaults,
    data_dir: PathBuf,
    store: DesiredState,
    state: RwLock<State>,
    deploys: tokio::sync::Mutex<()>,
    failures: Failures,
    stats: HostStats,
    events: Mutex<VecDeque<DeployEvent>>,
    started: SystemTime,
    /// The directory other workloads' in-memory calls go through (`NAME.weft.internal`).
    internal: Arc<dyn InternalDirectory>,
    /// Where requests that no workload here routes may go instead (the lattice).
    fallback: std::sync::OnceLock<Arc<dyn Fallback>>,
    /// Pulls and pins `oci://` images (docs/distribution.md); the default options unless
    /// [`Host::set_puller`] gave others before the first OCI deploy.
    puller: std::sync::OnceLock<Arc<weft_oci::Puller>>,
    /// Deploy tickets, in arrival order, and the last one deployed per workload.
    tickets: std::sync::atomic::AtomicU64,
    last_ticket: Mutex<std::collections::HashMap<String, u64>>,
}

/// How long a lattice replica's readiness probe may take.
pub const PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

fn empty_body() -> WasiBody {
    use http_body_util::BodyExt as _;
    http_body_util::Empty::<bytes::Bytes>::new()
        .map_err(|never: std::convert::Infallible| match never {})
        .boxed_unsync()
}

/// Marks the host's own `421 Misdirected Request` to a forwarded request (a response
/// extension, never sent to a client): only this one makes the forwarder try another host.
#[derive(Debug, Clone, Copy)]
pub struct Misdirected;

/// Set on a request another lattice host forwarded here (docs/lattice.md, "Forwarded
/// ingress"): it is served here or refused, never forwarded again.
pub const FORWARDED_HEADER: &str = "weft-forwarded";

/// The future of a forwarded request: the response, or the status and detail of the failure.
pub type FallbackFuture<'a> = std::pin::Pin<
    Box<
        dyn std::future::Future<
                Output = Result<http::Response<WasiBody>, (http::StatusCode, String)>,
            > + Send
            + 'a,
    >,
>;

/// Where a request goes when no workload on this host routes it: `weft up --lattice` forwards
/// it to a host that runs the deployment.
pub trait Fallback: Send + Sync {
    /// The deployment a request with this (canonical) host and path is for, if any.
    fn target(&self, host: Option<&str>, path: &str) -> Option<String>;
    /// Serves `request` elsewhere.
    fn forward(&self, target: String, request: http::Request<WasiBody>) -> FallbackFuture<'_>;
}

/// In-memory calls between this host's workloads (docs/messaging.md): a call to
/// `NAME.weft.internal` is served by workload `NAME`'s current version, with the same
/// accounting and error pages as a request through the ingress.
struct Directory {
    host: Weak<Host>,
}

impl InternalDirectory for Directory {
    fn call(
        &self,
        target: &str,
        request: http::Request<WasiBody>,
    ) -> Result<InternalResponse, InternalRefusal> {
        let host = self.host.upgrade().ok_or(InternalRefusal::NoSuchWorkload)?;
        let (workload, logs, stats) = {
            let state = host.read();
            let entry = state
                .workloads
                .get(target)
                .ok_or(InternalRefusal::NoSuchWorkload)?;
            let workload = entry
                .current
                .clone()
                .ok_or(InternalRefusal::NoSuchWorkload)?;
            if !workload.accepts_internal_calls() {
                return Err(InternalRefusal::NotAccepted);
            }
            (workload, entry.logs.clone(), entry.stats.clone())
        };
        // The caller's `http.client` span wrote the request's traceparent: the target's
        // `workload.handle` span continues that trace (docs/observability.md).
        let mut request = request;
        let span = crate::trace::enabled().then(|| {
            let cx = crate::trace::internal_call_span(&request, workload.name());
            request
                .extensions_mut()
                .insert(crate::trace::HandleTracer::for_request(&cx));
            cx
        });
        Ok(Box::pin(async move {
            let id = RequestId::of(&request);
            let response = host
                .serve(&id, Instant::now(), &workload, &logs, &stats, request)
                .await;
            if let Some(cx) = span {
                crate::trace::end_with_status(&cx, response.status().as_u16());
            }
            response
        }))
    }
}

impl Host {
    /// Opens the host's state in `data_dir` (created if needed), with the default limits.
    pub fn open(
        engine: WeftEngine,
        cache: Option<CompileCache>,
        data_dir: &Path,
    ) -> Result<Arc<Host>, HostError> {
        Host::open_with_defaults(engine, cache, data_dir, WorkloadDefaults::default())
    }

    /// [`Host::open`] with host-wide defaults for what manifests leave unset.
    pub fn open_with_defaults(
        engine: WeftEngine,
        cache: Option<CompileCache>,
        data_dir: &Path,
        defaults: WorkloadDefaults,
    ) -> Result<Arc<Host>, HostError> {
        std::fs::create_dir_all(data_dir).map_err(|e| {
            HostError::Store(format!(
                "cannot create data dir {}: {e}",
                data_dir.display()
            ))
        })?;
        let store = DesiredState::open(&data_dir.join("state.redb"))
            .map_err(|e| HostError::Store(e.to_string()))?;
        Ok(Arc::new_cyclic(|host| Host {
            engine,
            cache,
            defaults,
            data_dir: data_dir.to_path_buf(),
            store,
            state: RwLock::new(State::default()),
            deploys: tokio::sync::Mutex::new(()),
            failures: Failures::default(),
            stats: HostStats::default(),
            events: Mutex::new(VecDeque::with_capacity(DEPLOY_EVENTS)),
            started: SystemTime::now(),
            internal: Arc::new(Directory { host: host.clone() }),
            fallback: std::sync::OnceLock::new(),
            puller: std::sync::OnceLock::new(),
            tickets: std::sync::atomic::AtomicU64::new(0),
            last_ticket: Mutex::new(std::collections::HashMap::new()),
        }))
    }

    /// Sets where requests no workload here routes go (once; later calls are ignored).
    pub fn set_fallback(&self, fallback: Arc<dyn Fallback>) {
        let _ = self.fallback.set(fallback);
    }

    /// Sets how `oci://` images are pulled (once, before the first OCI deploy; later calls are
    /// ignored).
    pub fn set_puller(&self, puller: Arc<weft_oci::Puller>) {
        let _ = self.puller.set(puller);
    }

    /// The host's puller: the one set, or the default options with the store in the data dir
    /// (`DATA_DIR/oci`, beside the desired state that names its digests; no progress bar).
    pub fn puller(&self) -> Arc<weft_oci::Puller> {
        self.puller
            .get_or_init(|| {
                Arc::new(weft_oci::Puller::new(weft_oci::PullOptions {
                    store_dir: self.data_dir.join("oci"),
                    progress: false,
                    ..weft_oci::PullOptions::default()
                }))
            })
            .clone()
    }

    /// Pins every `oci://` image of `manifest` to its digests (pulling what the store lacks;
    /// an already pinned image needs no network) and returns the pinned manifest, which is
    /// what the desired state keeps, with the copy the runtime loads (images mapped to the
    /// verified files of the store).
    async fn pin(&self, mut manifest: Manifest) -> Result<(Manifest, Manifest), HostError> {
        if !weft_oci::has_oci_images(&manifest) {
            let local = manifest.clone();
            return Ok((manifest, local));
        }
        let puller = self.puller();
        let origin = manifest.origin.path.display().to_string();
        let pinned = puller
            .pin(&mut manifest)
            .await
            .map_err(|e| HostError::Deploy(format!("{origin}: {e}")))?;
        for p in &pinned {
            tracing::info!(
                workload = %manifest.metadata.name,
                component = %p.name,
                image = %p.written,
                pinned = %p.reference,
                from_store = p.from_store,
                "oci image pinned"
            );
        }
        let local = weft_oci::localize(&manifest, puller.store())
            .map_err(|e| HostError::Deploy(format!("{origin}: {e}")))?;
        Ok((manifest, local))
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        match self.state.read() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        match self.state.write() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Redeploys everything in the desired state (at start-up). Failures are recorded as the
    /// workload's status and logged; the others still start.
    pub async fn restore(&self) {
        let stored = match self.store.list() {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot read desired state");
                return;
            }
        };
        for (name, w) in stored {
            if let Err(e) = self.apply_text(&w.path, &w.manifest, false).await {
                tracing::error!(workload = %name, error = %e, "could not restore workload");
            }
        }
    }

    /// Validates and deploys every workload in a manifest file's text, then records it as
    /// desired state. Returns the workloads' info.
    pub async fn apply(&self, path: &Path, text: &str) -> Result<Vec<Value>, HostError> {
        let result = self.apply_text(path, text, true).await;
        let (workloads, error) = match &result {
            Ok(list) => (
                list.iter()
                    .filter_map(|w| w["name"].as_str().map(str::to_string))
                    .collect(),
                None,
            ),
            Err(e) => (Vec::new(), Some(e.to_string())),
        };
        match &result {
            Ok(list) => self.stats.deploys_ok.add(list.len() as u64),
            Err(_) => self.stats.deploys_refused.inc(),
        }
        let mut events = match self.events.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if events.len() == DEPLOY_EVENTS {
            events.pop_front();
        }
        events.push_back(DeployEvent {
            time: SystemTime::now(),
            path: path.to_path_buf(),
            workloads,
            error,
        });
        result
    }

    /// The last [`DEPLOY_EVENTS`] deploy attempts through [`Host::apply`], oldest first.
    pub fn deploy_events(&self) -> Vec<DeployEvent> {
        match self.events.lock() {
            Ok(g) => g.iter().cloned().collect(),
            Err(p) => p.into_inner().iter().cloned().collect(),
        }
    }

    /// Host-wide counters.
    pub fn stats(&self) -> &HostStats {
        &self.stats
    }

    /// When this host started.
    pub fn started(&self) -> SystemTime {
        self.started
    }

    /// Every workload's counters, for the metrics exporter and the dashboard.
    pub fn workload_stats(&self) -> Vec<WorkloadStatsView> {
        let state = self.read();
        state
            .workloads
            .iter()
            .map(|(name, e)| WorkloadStatsView {
                name: name.clone(),
                status: status_of(e),
                version: e.version,
                service_restarts: e
                    .current
                    .as_ref()
                    .and_then(|w| w.service())
                    .map(|s| u64::from(s.status().restarts())),
                stats: e.stats.clone(),
            })
            .collect()
    }

    async fn apply_text(
        &self,
        path: &Path,
        text: &str,
        persist: bool,
    ) -> Result<Vec<Value>, HostError> {
        let base = path.parent().map(Path::to_path_buf);
        let manifests = weft_manifest::parse_with_base(text, path, base.as_deref())
            .map_err(|e| HostError::Invalid(e.to_string()))?;
        // Images are pulled before the deploy lock: a slow registry holds up only this deploy.
        // The ticket, taken before pulling, keeps a slow deploy from replacing a newer one
        // of the same workload that finished first.
        let ticket = self
            .tickets
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut pinned = Vec::with_capacity(manifests.len());
        for manifest in manifests {
            match self.pin(manifest.clone()).await {
                Ok(p) => pinned.push(p),
                Err(e) => {
                    if !persist {
                        // Restoring: remember it as Failed so `weft get` shows why and
                        // `weft delete` can remove it.
                        self.record_restore_failure(manifest, e.to_string());
                    }
                    return Err(e);
                }
            }
        }
        let _serial = self.deploys.lock().await;
        let mut out = Vec::new();
        for (manifest, local) in pinned {
            let name = manifest.metadata.name.clone();
            {
                let mut last = self.last_ticket.lock().unwrap_or_else(|e| e.into_inner());
                if last.get(&name).is_some_and(|t| *t > ticket) {
                    return Err(HostError::Deploy(format!(
                        "{}: a newer deploy of `{name}` finished while this one was pulling \
                         its images; this one is dropped (hint: deploy again to make it the \
                         latest)",
                        manifest.origin.path.display()
                    )));
                }
                last.insert(name, ticket);
            }
            out.push(self.deploy_one(manifest, local, persist).await?);
        }
        Ok(out)
    }

    /// Records a workload restored at start-up whose images could not be pinned as Failed
    /// (unless it is already known).
    fn record_restore_failure(&self, manifest: Manifest, error: String) {
        let name = manifest.metadata.name.clone();
        let mut state = self.write();
        state
            .workloads
            .entry(name.clone())
            .or_insert_with(|| Entry {
                current: None,
                manifest,
                version: 0,
                error: Some(error),
                last_refused: None,
                logs: LogSink::new(&name),
                stats: Arc::default(),
            });
    }

    /// Deploys `manifest` (as pinned: what is stored and shown) by running `local` (the same
    /// with `oci://` images mapped to files of the blob store).
    async fn deploy_one(
        &self,
        manifest: Manifest,
        local: Manifest,
        persist: bool,
    ) -> Result<Value, HostError> {
        let name = manifest.metadata.name.clone();
        let (logs, stats) = {
            let state = self.read();
            if let Some(existing) = state.workloads.get(&name)
                && existing.manifest.metadata.namespace != manifest.metadata.namespace
            {
                return Err(HostError::Invalid(format!(
                    "metadata.name: a workload named `{name}` already exists in namespace `{}` \
                     (hint: workload names are unique per host; rename one)",
                    existing.manifest.metadata.namespace
                )));
            }
            match state.workloads.get(&name) {
                Some(e) => (e.logs.clone(), e.stats.clone()),
                None => (LogSink::new(&name), Arc::default()),
            }
        };
        let engine = self.engine.clone();
        let cache = self.cache.clone();
        let defaults = self.defaults;
        let data_dir = self.data_dir.clone();
        let internal = self.internal.clone();
        let m = local;
        let deploy_logs = logs.clone();
        let deploy_stats = stats.clone();
        let result = tokio::task::spawn_blocking(move || {
            let ctx = DeployContext {
                defaults,
                engine: &engine,
                cache: cache.as_ref(),
                data_dir,
                logs: deploy_logs,
                internal: Some(internal),
                stats: Some(deploy_stats),
                traces: Some(std::sync::Arc::new(crate::trace::Roots)),
            };
            Workload::deploy(&ctx, &m)
        })
        .await
        .map_err(|e| HostError::Deploy(format!("deployment task failed: {e}")))?;

        let workload = match result {
            Ok(w) => Arc::new(w),
            Err(e) => {
                let msg = format!("{}: {e}", manifest.origin.path.display());
                let mut state = self.write();
                match state.workloads.get_mut(&name) {
                    // A running version keeps serving; report the failure.
                    Some(entry) if entry.current.is_some() => {
                        tracing::warn!(workload = %name, error = %msg, "update refused; the running version keeps serving");
                        entry.last_refused = Some(msg.clone());
                    }
                    Some(entry) => entry.error = Some(msg.clone()),
                    None if !persist => {
                        // Restoring: remember it as Failed so `weft get` shows why.
                        state.workloads.insert(
                            name.clone(),
                            Entry {
                                current: None,
                                manifest,
                                version: 0,
                                error: Some(msg.clone()),
                                last_refused: None,
                                logs,
                                stats,
                            },
                        );
                    }
                    None => {}
                }
                return Err(HostError::Deploy(msg));
            }
        };

        // A new version: its denials are reported afresh (`weft dev` shows them again).
        logs.reset_denials();
        // Swap in atomically, with a route table that includes the new version.
        let info = {
            let mut state = self.write();
            let mut routes: Vec<Route> = routes_except(&state.routes, &name);
            for r in workload.routes() {
                routes.push(Route {
                    host: r.host.clone(),
                    path: r.path.clone(),
                    target: name.clone(),
                });
            }
            let table = RouteTable::new(routes).map_err(|e| {
                HostError::Deploy(format!(
                    "spec.hostInterfaces (wasi:http config): {e} (hint: give this workload another host or path)"
                ))
            })?;
            let version = state
                .workloads
                .get(&name)
                .map(|e| e.version + 1)
                .unwrap_or(1);
            state.routes = Arc::new(table);
            state.workloads.insert(
                name.clone(),
                Entry {
                    current: Some(workload.clone()),
                    manifest: manifest.clone(),
                    version,
                    error: None,
                    last_refused: None,
                    logs,
                    stats,
                },
            );
            info_json(&name, &state.workloads[&name])
        };
        if persist {
            let text = weft_manifest::to_yaml(&manifest)
                .map_err(|e| HostError::Store(format!("cannot serialise the manifest: {e}")))?;
            self.store
                .put(
                    &name,
                    &StoredWorkload {
                        path: manifest.origin.path.clone(),
                        manifest: text,
                    },
                )
                .map_err(|e| HostError::Store(e.to_string()))?;
        }
        tracing::info!(workload = %name, "deployed");
        Ok(info)
    }

    /// Deploys one already-parsed manifest without recording it in this host's desired state:
    /// the lattice agent's replicas (docs/lattice.md), whose desired state lives in NATS.
    /// Refuses a name held by a workload deployed on this host directly.
    /// Whether lattice replica `name` answers (docs/lattice.md: readiness): an in-process
    /// `GET` of its route's path with `weft-probe: readiness` gets a response, whatever its
    /// status, within 5 s; a trap, an error or a timeout is not an answer. A workload without
    /// an HTTP route answers by being deployed.
    pub async fn probe_replica(&self, name: &str) -> Result<(), String> {
        let workload = {
            let state = self.read();
            state.workloads.get(name).and_then(|e| e.current.clone())
        };
        let Some(workload) = workload else {
            return Err(format!("`{name}` is not running on this host"));
        };
        let Some(route) = workload.routes().first() else {
            return Ok(());
        };
        let authority = route.host.as_deref().unwrap_or("localhost");
        let request = http::Request::builder()
            .method("GET")
            .uri(format!("http://{authority}{}", route.path))
            .header("host", authority)
            .header("weft-probe", "readiness")
            .body(empty_body())
            .map_err(|e| format!("cannot build the readiness probe: {e}"))?;
        match tokio::time::timeout(PROBE_TIMEOUT, workload.handle(request)).await {
            Err(_) => Err(format!(
                "GET {} did not answer within {PROBE_TIMEOUT:?}",
                route.path
            )),
            Ok(Err(e)) => Err(format!("GET {} failed: {e}", route.path)),
            Ok(Ok(_)) => Ok(()),
        }
    }

    pub async fn deploy_replica(&self, manifest: Manifest) -> Result<Value, HostError> {
        let name = manifest.metadata.name.clone();
        if self
            .store
            .get(&name)
            .map_err(|e| HostError::Store(e.to_string()))?
            .is_some()
        {
            return Err(HostError::Invalid(format!(
                "metadata.name: `{name}` is a workload deployed on this host directly \
                 (hint: delete it, or rename the lattice deployment)"
            )));
        }
        let (manifest, local) = self.pin(manifest).await?;
        let _serial = self.deploys.lock().await;
        self.deploy_one(manifest, local, false).await
    }

    /// Stops a lattice replica deployed with [`Host::deploy_replica`] (routes first; in-flight
    /// requests finish). Leaves workloads deployed on this host directly alone.
    pub fn remove_replica(&self, name: &str) -> Result<(), HostError> {
        if self
            .store
            .get(name)
            .map_err(|e| HostError::Store(e.to_string()))?
            .is_some()
        {
            return Ok(());
        }
        let mut state = self.write();
        if state.workloads.remove(name).is_some() {
            let routes: Vec<Route> = routes_except(&state.routes, name);
            if let Ok(table) = RouteTable::new(routes) {
                state.routes = Arc::new(table);
            }
            tracing::info!(workload = %name, "replica stopped");
        }
        Ok(())
    }

    /// Removes a workload: routes first, so new requests stop; in-flight ones finish.
    pub fn delete(&self, name: &str) -> Result<Value, HostError> {
        let entry = {
            let mut state = self.write();
            let entry = state
                .workloads
                .remove(name)
                .ok_or_else(|| HostError::NotFound(name.to_string()))?;
            let routes: Vec<Route> = routes_except(&state.routes, name);
            // Removing routes cannot create a conflict.
            if let Ok(table) = RouteTable::new(routes) {
                state.routes = Arc::new(table);
            }
            entry
        };
        self.store
            .delete(name)
            .map_err(|e| HostError::Store(e.to_string()))?;
        tracing::info!(workload = %name, "deleted");
        Ok(json!({ "deleted": name, "version": entry.version }))
    }

    pub fn list(&self) -> Value {
        let state = self.read();
        let list: Vec<Value> = state
            .workloads
            .iter()
            .map(|(name, e)| info_json(name, e))
            .collect();
        json!({ "workloads": list })
    }

    pub fn get(&self, name: &str) -> Result<Value, HostError> {
        let state = self.read();
        state
            .workloads
            .get(name)
            .map(|e| info_json(name, e))
            .ok_or_else(|| HostError::NotFound(name.to_string()))
    }

    pub fn logs(&self, name: &str) -> Result<LogSink, HostError> {
        let state = self.read();
        state
            .workloads
            .get(name)
            .map(|e| e.logs.clone())
            .ok_or_else(|| HostError::NotFound(name.to_string()))
    }

    /// The recorded failures of ingress requests (for the admin API).
    pub fn failures(&self) -> &Failures {
        &self.failures
    }

    /// Routes an ingress request to its workload: RFC 9112 first (`crate::front::admit`), then
    /// the route table. Errors get short, generic bodies with the request id; the details go
    /// to the log, the workload's logs and the admin API.
    pub async fn handle(&self, request: http::Request<WasiBody>) -> http::Response<WasiBody> {
        let mut request = request;
        // Only the host writes it, on in-memory calls between workloads; a client cannot.
        request.headers_mut().remove(CALLER_HEADER);
        let id = RequestId::of(&request);
        let start = Instant::now();
        let admitted = match crate::front::admit(&request) {
            Ok(a) => a,
            Err(refusal) => {
                tracing::info!(request_id = %id, reason = %refusal, "request refused");
                self.stats.unrouted.inc();
                return crate::front::refusal_response(&refusal, &id);
            }
        };
        let host = admitted.authority.as_ref().map(|a| a.canonical());
        let (target, workload, routes) = {
            let state = self.read();
            let target = state
                .routes
                .route(host.as_deref(), &admitted.path)
                .map(str::to_string);
            let workload = target
                .as_deref()
                .and_then(|t| state.workloads.get(t))
                .and_then(|e| Some((e.current.clone()?, e.logs.clone(), e.stats.clone())));
            (target, workload, state.routes.clone())
        };
        // A lattice deployment this host does not run: the lattice's own route table decides
        // (a longer local prefix of another workload must not capture it), and a host that
        // does run it serves it.
        let elsewhere = self.fallback.get().and_then(|f| {
            let deployment = f.target(host.as_deref(), &admitted.path)?;
            let here = self.read().workloads.contains_key(&deployment);
            (!here && target.as_deref() != Some(deployment.as_str())).then_some((f, deployment))
        });
        let workload = if elsewhere.is_some() { None } else { workload };
        // Spans only when an OTLP endpoint is configured (docs/observability.md).
        let trace = crate::trace::enabled().then(|| {
            let ingress = crate::trace::ingress_span(&request, host.as_deref());
            let handle = workload.as_ref().map(|(w, _, _)| {
                use opentelemetry::trace::TraceContextExt;
                ingress.span().set_attribute(opentelemetry::KeyValue::new(
                    "weft.workload",
                    w.name().to_string(),
                ));
                let cx = crate::trace::child_span(
                    &ingress,
                    "workload.handle",
                    opentelemetry::trace::SpanKind::Internal,
                );
                request
                    .extensions_mut()
                    .insert(crate::trace::HandleTracer::for_request(&cx));
                cx
            });
            (ingress, handle)
        });
        let Some((workload, logs, stats)) = workload else {
            let forwarded = request.headers().contains_key(FORWARDED_HEADER);
            if let Some((_, deployment)) = &elsewhere
                && forwarded
            {
                // Forwarded here for a replica this host no longer runs (the forwarder's view
                // was a tick old): 421 tells it to try another host.
                let status = http::StatusCode::MISDIRECTED_REQUEST;
                let detail = format!("forwarded for `{deployment}`, which this host does not run");
                tracing::info!(request_id = %id, "{detail}");
                self.failures.record(&id, status, Some(deployment), &detail);
                let mut response = crate::front::generic_error(status, &id);
                // The host's own 421 (a workload's 421 must not make the forwarder retry).
                response.extensions_mut().insert(Misdirected);
                if let Some((ingress, _)) = trace {
                    crate::trace::end_with_status(&ingress, response.status().as_u16());
                }
                return response;
            }
            if let Some((fallback, deployment)) = elsewhere {
                let response = match fallback.forward(deployment.clone(), request).await {
                    Ok(response) => response,
                    Err((status, detail)) => {
                        let detail = format!("forwarding to `{deployment}`: {detail}");
                        tracing::warn!(request_id = %id, status = status.as_u16(), "{detail}");
                        self.failures
                            .record(&id, status, Some(&deployment), &detail);
                        crate::front::generic_error(status, &id)
                    }
                };
                if let Some((ingress, _)) = trace {
                    crate::trace::end_with_status(&ingress, response.status().as_u16());
                }
                return response;
            }
            self.stats.unrouted.inc();
            let detail =
                not_found_detail(host.as_deref(), &admitted.path, target.as_deref(), &routes);
            tracing::info!(request_id = %id, "{detail}");
            self.failures
                .record(&id, http::StatusCode::NOT_FOUND, target.as_deref(), &detail);
            let response = crate::front::generic_error(http::StatusCode::NOT_FOUND, &id);
            if let Some((ingress, _)) = trace {
                crate::trace::end_with_status(&ingress, response.status().as_u16());
            }
            return response;
        };
        let response = self
            .serve(&id, start, &workload, &logs, &stats, request)
            .await;
        let status = response.status().as_u16();
        if let Some((ingress, handle)) = trace {
            if let Some(handle) = handle {
                crate::trace::end_with_status(&handle, status);
            }
            crate::trace::end_with_status(&ingress, status);
        }
        response
    }

    /// Serves a routed request (from the ingress, or in memory from another workload) with
    /// `workload`: its errors become short generic pages with the request id, the details go
    /// to the logs and the admin API; the workload's counters are updated.
    async fn serve(
        &self,
        id: &RequestId,
        start: Instant,
        workload: &Workload,
        logs: &LogSink,
        stats: &WorkloadStats,
        request: http::Request<WasiBody>,
    ) -> http::Response<WasiBody> {
        let response = {
            let _in_flight = stats.in_flight.track();
            match workload.handle(request).await {
                Ok(r) => r,
                Err(err) => {
                    let status = err.status();
                    tracing::warn!(request_id = %id, workload = %workload.name(), status = status.as_u16(), error = %err, "request failed");
                    let detail = format!("{err}");
                    logs.push(
                        "weft",
                        "error",
                        &format!("request {id}: {} {detail}", status.as_u16()),
                    );
                    self.failures
                        .record(id, status, Some(workload.name()), &detail);
                    crate::server::error_response(&err, id)
                }
            }
        };
        stats.requests.inc(response.status().as_u16());
        stats.latency.observe(start.elapsed());
        response
    }
}

/// Every route of `table` except those of workload `name`.
fn routes_except(table: &RouteTable, name: &str) -> Vec<Route> {
    table
        .routes()
        .iter()
        .filter(|r| r.target != name)
        .cloned()
        .collect()
}

/// Why nothing served a request: for the log and the admin API, never for the client.
fn not_found_detail(
    host: Option<&str>,
    path: &str,
    target: Option<&str>,
    routes: &RouteTable,
) -> String {
    let mut detail = match target {
        Some(t) => format!(
            "no route served host `{}` path `{path}`: route target `{t}` is not running",
            host.unwrap_or("(none)")
        ),
        None => format!(
            "no route serves host `{}` path `{path}`",
            host.unwrap_or("(none)")
        ),
    };
    if routes.routes().is_empty() {
        detail.push_str("; no workloads are deployed (`weft deploy MANIFEST`)");
    } else {
        detail.push_str("; routes on this host: ");
        let list: Vec<String> = routes
            .routes()
            .iter()
            .map(|r| {
                format!(
                    "{}{} -> {}",
                    r.host.as_deref().unwrap_or("*"),
                    r.path,
                    r.target
                )
            })
            .collect();
        detail.push_str(&list.join(", "));
    }
    detail
}

/// `Running` or `Failed`, as `info_json` reports it.
fn status_of(e: &Entry) -> &'static str {
    let service_failed = e
        .current
        .as_ref()
        .and_then(|w| w.service())
        .is_some_and(|s| {
            matches!(
                s.status(),
                weft_runtime::service::ServiceStatus::Failed { .. }
            )
        });
    if e.current.is_none() || service_failed {
        "Failed"
    } else {
        "Running"
    }
}

fn info_json(name: &str, e: &Entry) -> Value {
    let service = e.current.as_ref().and_then(|w| w.service()).map(|s| {
        let st = s.status();
        json!({
            "name": s.name(),
            "status": st.label(),
            "restarts": st.restarts(),
            "lastError": st.last_error(),
            "ports": s.ports(),
            "serveHttp": s.serves_http(),
        })
    });
    let service_failed =
        e.current
            .as_ref()
            .and_then(|w| w.service())
            .and_then(|s| match s.status() {
                weft_runtime::service::ServiceStatus::Failed { last_error, .. } => {
                    Some(format!("service {}: {last_error}", s.name()))
                }
                _ => None,
            });
    let (status, components, routes, deployed_at) = match &e.current {
        Some(w) => (
            "Running",
            w.components()
                .iter()
                .map(|c| {
                    // An `oci://` image as pinned in the desired state (the runtime loads
                    // its verified file from the blob store, shown as `image`).
                    let reference = e
                        .manifest
                        .spec
                        .components
                        .iter()
                        .map(|m| (&m.name, &m.image))
                        .chain(e.manifest.spec.service.iter().map(|s| (&s.name, &s.image)))
                        .find(|(name, _)| **name == c.name)
                        .map(|(_, image)| image.as_str())
                        .filter(|i| i.starts_with("oci://"));
                    json!({
                        "name": c.name,
                        "reference": reference,
                        "image": c.image.display().to_string(),
                        "sha256": c.sha256,
                        "world": c.kind.describe(),
                        "sizeBytes": c.size,
                    })
                })
                .collect::<Vec<_>>(),
            w.routes()
                .iter()
                .map(|r| json!({ "host": r.host, "path": r.path }))
                .collect::<Vec<_>>(),
            w.deployed_at()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
        ),
        None => ("Failed", Vec::new(), Vec::new(), 0),
    };
    // A failed service fails the workload's status (its components keep serving).
    let status = if service_failed.is_some() {
        "Failed"
    } else {
        status
    };
    json!({
        "name": name,
        "namespace": e.manifest.metadata.namespace,
        "status": status,
        "version": e.version,
        "deployedAt": deployed_at,
        "routes": routes,
        "components": components,
        "hostInterfaces": e.manifest.spec.host_interfaces.iter().map(|h| h.id()).collect::<Vec<_>>(),
        "error": service_failed.or_else(|| e.error.clone()),
        "service": service,
        "manifestPath": e.manifest.origin.path.display().to_string(),
        "lastRefusedUpdate": e.last_refused,
    })
}
