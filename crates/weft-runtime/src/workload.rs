//! A deployed workload version: its manifest, compiled components, bound plugins and the
//! HTTP service of its handler component. Built completely (compile, link, pre-instantiate)
//! before it is swapped in, so a bad version never replaces a good one.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use weft_manifest::Manifest;

use crate::http::{HandleError, HttpOptions, HttpService, WorkloadExtras};
use crate::plan::PlanningError;
/// Component loading moved to `plan.rs`; these names stay here for existing callers.
pub use crate::plan::{BASE_INTERFACES, ComponentInfo, LoadedComponents, load_components};
use crate::service::{FrontOptions, ServiceHandle, ServiceSpec};
use crate::state::{HostState, OutgoingHttp};
use weft_engine::cache::CompileCache;
use weft_engine::engine::WeftEngine;
use weft_engine::load::{self, Compiled};
use weft_engine::logs::LogSink;
use weft_engine::world;
use weft_interfaces::net::{NetPolicy, Role, SocketBudget, VirtualNet};
use weft_interfaces::outbound::{InternalCaller, InternalDirectory};
use weft_interfaces::plugins::BoundPlugins;
use weft_interfaces::wasi::{DirGrant, WasiGrants};
use weft_policy::allow::AllowedHosts;

/// A route from the `wasi:http` `incoming-handler` grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRoute {
    pub host: Option<String>,
    pub path: String,
}

/// Why a workload version could not be deployed. Messages name the manifest field and the fix.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error("{0}")]
    Invalid(String),
    #[error("spec.components[{index}] ({component}): {message}")]
    Component {
        index: usize,
        component: String,
        message: String,
    },
    #[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n"))]
    Plugins(Vec<weft_interfaces::plugins::PluginError>),
}

impl From<PlanningError> for DeployError {
    fn from(e: PlanningError) -> Self {
        match e {
            PlanningError::Component {
                index,
                component,
                message,
            } => DeployError::Component {
                index,
                component,
                message,
            },
            PlanningError::Service(message) => DeployError::Invalid(message),
        }
    }
}

/// Host-wide defaults for what a manifest leaves unset (the `weft up` flags).
#[derive(Debug, Clone, Copy)]
pub struct WorkloadDefaults {
    /// Wall clock per invocation when `timeoutMs` is unset.
    pub timeout: Duration,
    /// Linear memory per instance when `memoryLimitMb` is unset.
    pub memory_bytes: u64,
    /// Guest sockets one workload may hold open at once.
    pub max_sockets: usize,
    /// Guest socket creations per second one workload may sustain, after a burst of
    /// `max_sockets`; `None`: unmetered.
    pub socket_rate: Option<u64>,
    /// Response-body bytes per second one workload may sustain, over all its responses,
    /// after a burst of `limit::response_burst`; `None`: unpaced.
    pub response_rate: Option<u64>,
    /// Sustained linear-memory growth per component, bytes per second, past each instance's
    /// free allowance (`weft_engine::limit::RateMeter`); `None`: unmetered.
    pub memory_growth_rate: Option<u64>,
}

/// 30 s per invocation.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// 256 MiB per instance.
pub const DEFAULT_MEMORY_BYTES: u64 = 256 << 20;

impl Default for WorkloadDefaults {
    fn default() -> Self {
        WorkloadDefaults {
            timeout: DEFAULT_TIMEOUT,
            memory_bytes: DEFAULT_MEMORY_BYTES,
            max_sockets: weft_interfaces::net::DEFAULT_WORKLOAD_SOCKETS,
            socket_rate: Some(weft_interfaces::net::DEFAULT_SOCKET_RATE),
            response_rate: Some(weft_engine::limit::DEFAULT_WORKLOAD_RESPONSE_RATE),
            memory_growth_rate: Some(weft_engine::limit::DEFAULT_GROWTH_RATE),
        }
    }
}

/// Where a deployment gets its engine, cache and storage.
pub struct DeployContext<'a> {
    /// Limits for what the manifest leaves unset.
    pub defaults: WorkloadDefaults,
    pub engine: &'a WeftEngine,
    pub cache: Option<&'a CompileCache>,
    pub data_dir: PathBuf,
    /// The workload's log buffer, kept across versions.
    pub logs: LogSink,
    /// The host's directory of workloads for in-memory calls (`NAME.weft.internal`); `None`
    /// refuses them (docs/messaging.md).
    pub internal: Option<Arc<dyn InternalDirectory>>,
    /// The host's counts for this workload, kept across versions: instances, memory,
    /// instantiation time, keyvalue operations, messages (`None`: not counted).
    pub stats: Option<Arc<weft_stats::WorkloadStats>>,
    /// Where message handling starts its traces (`None`: no spans for messages).
    pub traces: Option<Arc<dyn weft_interfaces::outbound::TraceRoots>>,
}

/// A running workload version.
pub struct Workload {
    manifest: Manifest,
    logs: LogSink,
    /// The long-lived service, if `spec.service` is set.
    service: Option<ServiceHandle>,
    plugins: BoundPlugins<HostState>,
    http: Option<Front>,
    routes: Vec<HttpRoute>,
    components: Vec<ComponentInfo>,
    deployed_at: SystemTime,
    /// The message trigger, when `wasmcloud:messaging/handler` is granted.
    trigger: Option<crate::trigger::Trigger>,
}

impl Workload {
    /// Compiles, checks grants, binds plugins, links and pre-instantiates. Nothing is served
    /// until the caller swaps the result in.
    pub fn deploy(ctx: &DeployContext<'_>, manifest: &Manifest) -> Result<Workload, DeployError> {
        let spec = &manifest.spec;
        let plugins = BoundPlugins::bind(manifest, ctx.data_dir.clone(), &ctx.logs)
            .map_err(DeployError::Plugins)?;
        let http_grant = manifest.host_interface("wasi", "http");
        let base_dir = manifest.base_dir();
        let vnet = spec.service.as_ref().map(|_| VirtualNet::new());
        let meters = WorkloadMeters::new(&ctx.defaults, ctx.stats.clone());

        let loaded = load_components(ctx.engine, ctx.cache, manifest)?;
        let components = loaded.infos.clone();
        let prepared = match (&spec.service, &vnet) {
            (Some(svc), Some(vnet)) => Some(prepare_service(
                ctx, manifest, svc, &plugins, vnet, &meters,
            )?),
            _ => None,
        };
        let plan_service = prepared.as_ref().map(|p| p.plan.clone());
        let plan = match crate::plan::plan_manifest(
            manifest,
            &loaded.plan_components,
            plan_service.as_ref(),
        ) {
            Ok(plan) => plan,
            Err(weft_inspect::PlanError::Unsatisfied { missing }) => {
                // Explain each component's missing imports with the grant that would cover them.
                for (index, c) in spec.components.iter().enumerate() {
                    let imports: Vec<String> = missing
                        .iter()
                        .filter(|(name, _)| *name == c.name)
                        .map(|(_, i)| i.clone())
                        .collect();
                    if !imports.is_empty() {
                        check_grants(manifest, index, &c.name, &imports, &plugins)?;
                    }
                }
                return Err(DeployError::Invalid(
                    "spec.components: some imports are not satisfied".into(),
                ));
            }
            Err(e) => return Err(DeployError::Invalid(format!("spec.components: {e}"))),
        };

        if let Some(prepared) = &prepared {
            check_service_imports(ctx, manifest, &loaded, &plan, prepared)?;
        }
        let service = match prepared {
            Some(prepared) => Some(launch_service(prepared)?),
            None => None,
        };

        // The HTTP handler is the component exporting wasi:http that no other component
        // imports from (a middleware's business component is not served directly).
        let http_roots: Vec<usize> = (0..components.len())
            .filter(|&i| components[i].kind.is_http() && !plan.is_consumed(i))
            .collect();
        if http_roots.len() > 1 {
            return Err(DeployError::Invalid(format!(
                "spec.components: {} each export a wasi:http handler that no other component \
                 imports; a workload serves one handler (hint: deploy them as separate \
                 workloads, or have one import the other's handler)",
                http_roots
                    .iter()
                    .map(|&i| format!("`{}`", components[i].name))
                    .collect::<Vec<_>>()
                    .join(" and ")
            )));
        }
        let front_door = service.as_ref().is_some_and(ServiceHandle::serves_http);
        if front_door && let Some(&root) = http_roots.first() {
            return Err(DeployError::Invalid(format!(
                "spec.service.serveHttp: the service `{}` is the workload's HTTP front door, but \
                 component `{}` also exports a wasi:http handler that no other component \
                 imports; a workload serves one handler (hint: remove `serveHttp`, or deploy \
                 the component as its own workload)",
                spec.service
                    .as_ref()
                    .map(|s| s.name.as_str())
                    .unwrap_or_default(),
                components[root].name
            )));
        }
        let mut http = None;
        if front_door {
            let Some(grant) = http_grant.filter(|g| g.grants("incoming-handler")) else {
                return Err(DeployError::Invalid(
                    "spec.service.serveHttp: the workload grants no incoming HTTP (hint: add to \
                     spec.hostInterfaces: `- { namespace: wasi, package: http, interfaces: \
                     [incoming-handler], config: { host: NAME.localhost, path: / } }`)"
                        .into(),
                ));
            };
            let (host, path) = match grant.http_incoming_config() {
                Some(cfg) => (cfg.host, cfg.path),
                None => (None, "/".to_string()),
            };
            http = Some((Front::Service, HttpRoute { host, path }));
        } else if let Some(&root) = http_roots.first() {
            let c = &spec.components[root];
            let err = |message: String| DeployError::Component {
                index: root,
                component: c.name.clone(),
                message,
            };
            let Some(grant) = http_grant.filter(|g| g.grants("incoming-handler")) else {
                return Err(err(
                    "exports a wasi:http handler, but the workload grants no incoming HTTP \
                     (hint: add to spec.hostInterfaces: `- { namespace: wasi, package: http, \
                     interfaces: [incoming-handler], config: { host: NAME.localhost, path: / } }`)"
                        .into(),
                ));
            };
            let options = http_options(
                manifest,
                c,
                &base_dir,
                &ctx.logs,
                HostSide {
                    vnet: vnet.as_ref().map(|v| (v, Role::Component)),
                    defaults: &ctx.defaults,
                    meters: &meters,
                    internal: internal_caller(ctx, manifest),
                },
            )
            .map_err(&err)?;
            let extras = WorkloadExtras {
                component: c.name.clone(),
                plugins: plugins.clone(),
                logs: ctx.logs.clone(),
                service: service.as_ref().and_then(|s| {
                    service_imports(&plan, root, s, options.grants.timeout).map(|mut imports| {
                        imports.logs = Some((ctx.logs.clone(), c.name.clone()));
                        imports
                    })
                }),
            };
            let service = serve_linked(ctx, manifest, &loaded, &plan, root, options, extras)?;
            let (host, path) = match grant.http_incoming_config() {
                Some(cfg) => (cfg.host, cfg.path),
                None => (None, "/".to_string()),
            };
            http = Some((Front::Components(service), HttpRoute { host, path }));
        }

        // `internal: only`: served to the host's other workloads in memory, no ingress route.
        let routed = http_grant
            .and_then(|g| g.http_incoming_config())
            .is_none_or(|c| c.internal.routed());
        let (http, routes) = match http {
            Some((service, route)) if routed => (Some(service), vec![route]),
            Some((service, _)) => (Some(service), Vec::new()),
            None => {
                if http_grant.is_some_and(|g| g.grants("incoming-handler")) {
                    return Err(DeployError::Invalid(
                        "spec.hostInterfaces: wasi:http incoming-handler is granted, but no \
                         component exports a wasi:http handler (hint: check the images, drop \
                         the grant, or make a WASI 0.3 service the front door with \
                         `spec.service.serveHttp: true`)"
                            .into(),
                    ));
                }
                (None, Vec::new())
            }
        };
        let trigger = start_trigger(ctx, manifest, &loaded, &plan, &plugins, &meters)?;
        Ok(Workload {
            manifest: manifest.clone(),
            logs: ctx.logs.clone(),
            service,
            plugins,
            http,
            routes,
            components,
            deployed_at: SystemTime::now(),
            trigger,
        })
    }

    pub fn name(&self) -> &str {
        &self.manifest.metadata.name
    }

    pub fn namespace(&self) -> &str {
        &self.manifest.metadata.namespace
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    pub fn routes(&self) -> &[HttpRoute] {
        &self.routes
    }

    pub fn components(&self) -> &[ComponentInfo] {
        &self.components
    }

    pub fn deployed_at(&self) -> SystemTime {
        self.deployed_at
    }

    pub fn logs(&self) -> &LogSink {
        &self.logs
    }

    /// The service, if the workload has one.
    pub fn service(&self) -> Option<&ServiceHandle> {
        self.service.as_ref()
    }

    /// Whether other workloads on the host may call this one in memory (`config.internal` of
    /// its `wasi:http` grant is `allow` or `only`).
    pub fn accepts_internal_calls(&self) -> bool {
        self.http.is_some()
            && self
                .manifest
                .host_interface("wasi", "http")
                .and_then(|g| g.http_incoming_config())
                .is_some_and(|c| c.internal.accepts())
    }

    /// Handles one incoming HTTP request.
    pub async fn handle(
        &self,
        request: http::Request<crate::WasiBody>,
    ) -> Result<http::Response<crate::WasiBody>, HandleError> {
        match (&self.http, &self.service) {
            (Some(Front::Components(service)), _) => service.handle(request).await,
            (Some(Front::Service), Some(service)) => service.handle(request).await,
            _ => Err(HandleError::Guest(
                "this workload has no HTTP handler".into(),
            )),
        }
    }

    /// The messaging counters of this version (all zero without a messaging grant).
    pub fn messaging_stats(&self) -> weft_messaging::StatsSnapshot {
        self.plugins.messaging_stats().snapshot()
    }

    /// Waits until the message trigger's subscriptions are open; `Ok` without a trigger.
    pub async fn messaging_ready(&self) -> Result<(), String> {
        match &self.trigger {
            Some(t) => t.ready().await,
            None => Ok(()),
        }
    }

    /// Stops taking new requests (in-flight ones finish) and releases plugin backends.
    pub fn retire(&self) {
        if let Some(trigger) = &self.trigger {
            trigger.stop();
        }
        if let Some(Front::Components(service)) = &self.http {
            service.close();
        }
        if let Some(service) = &self.service {
            service.stop();
        }
        self.plugins.unbind();
    }
}

/// Who handles the workload's HTTP requests.
enum Front {
    /// The handler component (an instance per request, or pooled).
    Components(HttpService),
    /// The service's one long-lived instance (`spec.service.serveHttp`).
    Service,
}

/// Builds the HTTP service of handler `root`, linked at run time to the components it imports
/// from (or plain when it imports from none).
fn serve_linked(
    ctx: &DeployContext<'_>,
    manifest: &Manifest,
    loaded: &LoadedComponents,
    plan: &weft_inspect::LinkPlan,
    root: usize,
    options: HttpOptions,
    extras: WorkloadExtras,
) -> Result<HttpService, DeployError> {
    let spec = &manifest.spec;
    let err = |message: String| DeployError::Component {
        index: root,
        component: spec.components[root].name.clone(),
        message,
    };
    let compiled = &loaded.compiled;
    let needed = crate::plan::needed_by(plan, root);
    match crate::compose::choose(ctx.engine, ctx.cache, manifest, loaded, plan, root)
        .map_err(|e| DeployError::Invalid(format!("spec.compose: {e}")))?
    {
        crate::compose::Strategy::Single => {
            return HttpService::for_workload(ctx.engine, &compiled[root], options, extras)
                .map_err(|e| err(e.to_string()));
        }
        crate::compose::Strategy::Composed(component) => {
            return HttpService::for_workload(ctx.engine, &component, options, extras)
                .map_err(|e| err(e.to_string()));
        }
        crate::compose::Strategy::Linked => {}
    }
    let names: Vec<&str> = needed
        .iter()
        .filter(|&&i| i != root)
        .map(|&i| spec.components[i].name.as_str())
        .collect();
    Err(DeployError::Invalid(format!(
        "spec.compose: the HTTP handler `{}` imports from other components ({}), and this host \
         serves such a handler only composed; run-time linking is available to `weft run \
         MANIFEST --invoke` (hint: set spec.compose to `auto` or `always`, and check `weft \
         inspect MANIFEST` for why composition fails)",
        spec.components[root].name,
        names.join(", ")
    )))
}

/// Starts the message trigger when the workload grants `wasmcloud:messaging/handler`: the
/// one component exporting `handler` is invoked per message (docs/messaging.md).
fn start_trigger(
    ctx: &DeployContext<'_>,
    manifest: &Manifest,
    loaded: &LoadedComponents,
    plan: &weft_inspect::LinkPlan,
    plugins: &BoundPlugins<HostState>,
    meters: &WorkloadMeters,
) -> Result<Option<crate::trigger::Trigger>, DeployError> {
    let Some((index, grant)) = manifest
        .spec
        .host_interfaces
        .iter()
        .enumerate()
        .find(|(_, h)| h.namespace == "wasmcloud" && h.package == "messaging")
    else {
        return Ok(None);
    };
    let Some(config) = grant.messaging_config().filter(|c| c.handler) else {
        return Ok(None);
    };
    let engine = ctx.engine.engine();
    let roots: Vec<usize> = (0..loaded.compiled.len())
        .filter(|&i| {
            world::interfaces(engine, &loaded.compiled[i])
                .exports
                .iter()
                .any(|e| e == crate::trigger::HANDLER_EXPORT)
        })
        .collect();
    let root = match roots.as_slice() {
        [one] => *one,
        [] => {
            return Err(DeployError::Invalid(format!(
                "spec.hostInterfaces[{index}]: wasmcloud:messaging handler is granted, but no \
                 component exports `{}` (hint: check the images, or grant only `consumer`)",
                crate::trigger::HANDLER_EXPORT
            )));
        }
        many => {
            return Err(DeployError::Invalid(format!(
                "spec.components: {} each export `{}`; a workload has one message handler \
                 (hint: deploy them as separate workloads)",
                many.iter()
                    .map(|&i| format!("`{}`", loaded.infos[i].name))
                    .collect::<Vec<_>>()
                    .join(" and "),
                crate::trigger::HANDLER_EXPORT
            )));
        }
    };
    let c = &manifest.spec.components[root];
    let err = |message: String| DeployError::Component {
        index: root,
        component: c.name.clone(),
        message,
    };
    if crate::plan::needed_by(plan, root)
        .iter()
        .any(|&i| i != root)
    {
        return Err(err(
            "the message handler imports from other components of the workload; this host runs \
             a message handler as a single component (hint: compose it before deploying)"
                .into(),
        ));
    }
    let options = http_options(
        manifest,
        c,
        &manifest.base_dir(),
        &ctx.logs,
        HostSide {
            vnet: None,
            defaults: &ctx.defaults,
            meters,
            internal: internal_caller(ctx, manifest),
        },
    )
    .map_err(&err)?;
    let ns = &manifest.metadata.namespace;
    let name = &manifest.metadata.name;
    let spec = crate::trigger::TriggerSpec {
        workload: format!("{ns}/{name}"),
        component: c.name.clone(),
        subscriptions: config.subscriptions.iter().map(|p| p.to_string()).collect(),
        queue_group: config
            .queue_group
            .clone()
            .unwrap_or_else(|| format!("{ns}.{name}")),
        dead_letter: config.dead_letter.clone(),
        max_in_flight: config.max_in_flight as usize,
        max_message_bytes: config.max_message_bytes as usize,
        timeout: options.grants.timeout.unwrap_or(ctx.defaults.timeout),
        max_invocations: c.max_invocations.max(1) as usize,
        hooks: OutgoingHttp::new(options.allowed_hosts.clone())
            .with_internal(options.internal.clone())
            .with_denials(options.denials.clone()),
        max_resources: options.max_resources,
        grants: options.grants,
        traces: ctx.traces.clone(),
    };
    crate::trigger::Trigger::start(
        engine,
        &loaded.compiled[root],
        spec,
        plugins.clone(),
        ctx.logs.clone(),
        weft_interfaces::plugins::messaging::host_bus(),
    )
    .map(Some)
    .map_err(err)
}

/// Refuses imports that neither the base host nor a granted host interface provides.
fn check_grants(
    manifest: &Manifest,
    index: usize,
    component: &str,
    imports: &[String],
    plugins: &BoundPlugins<HostState>,
) -> Result<(), DeployError> {
    let http_granted = manifest.host_interface("wasi", "http").is_some();
    let mut problems = Vec::new();
    for import in imports {
        let (base, _) = world::split_version(import);
        let covered_by_base = BASE_INTERFACES
            .iter()
            .any(|p| base.starts_with(p) && base.as_bytes().get(p.len()) == Some(&b'/'));
        // wasi:http types and outgoing-handler come with any wasi:http grant; outgoing requests
        // are still denied unless `localResources.allowedHosts` names the destination.
        let covered_by_http = http_granted && base.starts_with("wasi:http/");
        let granted = plugins.granted().iter().any(|g| g == base);
        if covered_by_base || covered_by_http || granted {
            continue;
        }
        let hint = match weft_interfaces::plugins::grant_for(import) {
            Some((ns, pkg, iface)) if weft_manifest::known_host_interface(&ns, &pkg).is_some() => {
                match manifest
                    .spec
                    .host_interfaces
                    .iter()
                    .position(|h| h.namespace == ns && h.package == pkg)
                {
                    Some(i) => format!("add `{iface}` to spec.hostInterfaces[{i}].interfaces"),
                    None => format!(
                        "add to spec.hostInterfaces: `- {{ namespace: {ns}, package: {pkg}, interfaces: [{iface}] }}`"
                    ),
                }
            }
            _ => "no host interface provides it and no other component of the workload exports it"
                .into(),
        };
        problems.push(format!(
            "imports `{import}`, which this workload does not grant ({hint})"
        ));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(DeployError::Component {
            index,
            component: component.to_string(),
            message: problems.join("; "),
        })
    }
}

/// What the host adds to a component's own `localResources`.
struct HostSide<'a> {
    /// The workload's virtual loopback and the component's role on it.
    vnet: Option<(&'a Arc<VirtualNet>, Role)>,
    defaults: &'a WorkloadDefaults,
    meters: &'a WorkloadMeters,
    /// In-memory calls to the host's other workloads, if the host offers them.
    internal: Option<InternalCaller>,
}

/// What the workload's outgoing HTTP needs for in-memory calls, if the host offers them.
fn internal_caller(ctx: &DeployContext<'_>, manifest: &Manifest) -> Option<InternalCaller> {
    let directory = ctx.internal.clone()?;
    let m = &manifest.metadata;
    Some(InternalCaller {
        directory,
        caller: format!("{}/{}", m.namespace, m.name).into(),
        logs: ctx.logs.clone(),
    })
}

/// What all of one workload's components (and its service) draw from together.
pub(crate) struct WorkloadMeters {
    /// Live sockets and socket creations.
    budget: Arc<SocketBudget>,
    /// Response-body bytes, when paced (`WorkloadDefaults::response_rate`).
    egress: Option<Arc<weft_engine::limit::RateMeter>>,
    /// The host's counts for this workload (`DeployContext::stats`).
    stats: Option<Arc<weft_stats::WorkloadStats>>,
}

impl WorkloadMeters {
    fn new(defaults: &WorkloadDefaults, stats: Option<Arc<weft_stats::WorkloadStats>>) -> Self {
        WorkloadMeters {
            stats,
            budget: SocketBudget::new(defaults.max_sockets, defaults.socket_rate),
            egress: defaults
                .response_rate
                .and_then(weft_engine::limit::response_pace),
        }
    }
}

/// The HTTP service options one component's `localResources` imply.
fn http_options(
    manifest: &Manifest,
    c: &weft_manifest::Component,
    base_dir: &std::path::Path,
    logs: &LogSink,
    host: HostSide<'_>,
) -> Result<HttpOptions, String> {
    let HostSide {
        vnet,
        defaults,
        meters,
        internal,
    } = host;
    let res = &c.local_resources;
    let mut dirs = Vec::new();
    for (i, mount) in res.volume_mounts.iter().enumerate() {
        let volume = manifest
            .spec
            .volumes
            .iter()
            .find(|v| v.name == mount.name)
            .ok_or_else(|| {
                format!(
                    "localResources.volumeMounts[{i}].name: no volume `{}` in spec.volumes",
                    mount.name
                )
            })?;
        dirs.push(DirGrant {
            host: weft_manifest::rules::join_clean(
                base_dir,
                std::path::Path::new(&volume.host_path.local_path),
            ),
            guest: mount.mount_path.clone(),
            read_only: mount.read_only,
        });
    }
    let max_memory = res
        .memory_limit_mb
        .map(|mb| u64::from(mb) << 20)
        .unwrap_or(defaults.memory_bytes);
    let grants = WasiGrants {
        env: res
            .environment
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        dirs,
        inherit_network: false,
        max_memory_bytes: Some(max_memory),
        timeout: Some(
            res.timeout_ms
                .map(Duration::from_millis)
                .unwrap_or(defaults.timeout),
        ),
        sockets: Some({
            let rules = socket_rules(res)?;
            let policy = NetPolicy::new(rules, &c.name, Some(logs.clone()))
                .with_budget(Arc::clone(&meters.budget));
            Arc::new(match vnet {
                Some((vnet, role)) => policy.on_virtual_net(Arc::clone(vnet), role),
                None => policy,
            })
        }),
        // One meter per component version, shared by all its instances; a full bucket lets
        // one instance grow to its memory limit at once.
        growth: defaults.memory_growth_rate.map(|rate| {
            Arc::new(weft_engine::limit::RateMeter::new(
                rate,
                max_memory,
                std::time::Instant::now(),
            ))
        }),
        network_off: Default::default(),
        stats: meters.stats.clone(),
    };
    grants.validate()?;
    let allowed_hosts = AllowedHosts::parse(&res.allowed_hosts)
        .map_err(|e| format!("localResources.allowedHosts: {e}"))?;
    Ok(HttpOptions {
        grants,
        allowed_hosts,
        max_instance_reuse_count: Some(c.max_invocations.max(1) as usize),
        max_instance_concurrent_reuse_count: Some(c.max_concurrency.max(1) as usize),
        idle_instance_timeout: if c.pool_size > 0 {
            Duration::from_secs(30)
        } else {
            Duration::from_secs(1)
        },
        log_prefix: false,
        response_pace: meters.egress.clone(),
        internal,
        denials: Some(weft_interfaces::outbound::DenialReport::new(logs, &c.name)),
        ..HttpOptions::default()
    })
}

/// The component's socket rules (`localResources.sockets` and `allowedIpNameLookups`).
pub fn socket_rules(
    res: &weft_manifest::LocalResources,
) -> Result<weft_policy::sockets::SocketRules, String> {
    use weft_policy::sockets::{Protocol, SocketRule, SocketRules};
    let rules = res
        .sockets
        .iter()
        .map(|s| SocketRule {
            port: s.port,
            host_port: s.effective_host_port(),
            protocol: match s.protocol {
                weft_manifest::Protocol::Tcp => Protocol::Tcp,
                weft_manifest::Protocol::Udp => Protocol::Udp,
            },
        })
        .collect();
    SocketRules::new(rules, &res.allowed_ip_name_lookups)
        .map_err(|e| format!("localResources.sockets: {e}"))
}

/// The service, compiled and checked, not started yet.
struct PreparedService {
    name: String,
    component: wasmtime::component::Component,
    engine: wasmtime::Engine,
    spec: ServiceSpec,
    vnet: Arc<VirtualNet>,
    /// The planner's view: its name and exports.
    plan: weft_inspect::PlanService,
}

/// Compiles and checks the workload's service (its image, digest and grants).
fn prepare_service(
    ctx: &DeployContext<'_>,
    manifest: &Manifest,
    svc: &weft_manifest::Service,
    plugins: &BoundPlugins<HostState>,
    vnet: &Arc<VirtualNet>,
    meters: &WorkloadMeters,
) -> Result<PreparedService, DeployError> {
    let err =
        |message: String| DeployError::Invalid(format!("spec.service ({}): {message}", svc.name));
    let base_dir = manifest.base_dir();
    let path = weft_manifest::resolve_image(&svc.image, &base_dir)
        .map_err(|e| err(format!("image `{}`: {e}", svc.image)))?;
    let loaded = load::load(ctx.engine, &path, ctx.cache).map_err(|e| err(e.to_string()))?;
    if let Some(digest) = &svc.digest {
        let want = digest.strip_prefix("sha256:").unwrap_or(digest);
        if !want.eq_ignore_ascii_case(&loaded.sha256) {
            return Err(err(format!(
                "image {} has digest sha256:{}, but the manifest pins {digest} \
                 (hint: update spec.service.digest or the image)",
                path.display(),
                loaded.sha256
            )));
        }
    }
    let Compiled::Component(component) = &loaded.compiled else {
        return Err(err(format!(
            "image {} is a core module; a service is a component exporting wasi:cli/run",
            path.display()
        )));
    };
    // What it must export (wasi:cli/run@0.2 or @0.3, and the P3 wasi:http/handler when it
    // is the front door) is checked by `ServiceHandle::start`, which picks how to run it.
    let ifaces = world::interfaces(ctx.engine.engine(), component);
    check_grants(manifest, 0, &svc.name, &ifaces.imports, plugins).map_err(|e| match e {
        DeployError::Component { message, .. } => err(message),
        other => other,
    })?;
    let as_component = svc.to_component();
    let options = http_options(
        manifest,
        &as_component,
        &base_dir,
        &ctx.logs,
        HostSide {
            vnet: Some((vnet, Role::Service)),
            defaults: &ctx.defaults,
            meters,
            internal: internal_caller(ctx, manifest),
        },
    )
    .map_err(&err)?;
    let front = svc.serve_http.then(|| FrontOptions {
        response_pace: meters.egress.clone(),
        ..FrontOptions::new(
            options.grants.timeout.unwrap_or(ctx.defaults.timeout),
            svc.max_concurrency as usize,
        )
    });
    let spec = ServiceSpec {
        name: svc.name.clone(),
        front,
        outgoing: OutgoingHttp::new(options.allowed_hosts.clone())
            .with_internal(options.internal.clone())
            .with_denials(options.denials.clone()),
        grants: options.grants,
        plugins: plugins.clone(),
        logs: ctx.logs.clone(),
        max_restarts: svc.max_restarts,
        max_resources: options.max_resources,
        max_concurrency: svc.max_concurrency as usize,
        workload: format!("{}/{}", manifest.metadata.namespace, manifest.metadata.name),
        traces: ctx.traces.clone(),
    };
    Ok(PreparedService {
        name: svc.name.clone(),
        component: component.clone(),
        engine: ctx.engine.engine().clone(),
        spec,
        vnet: Arc::clone(vnet),
        plan: weft_inspect::PlanService {
            name: svc.name.clone(),
            exports: ifaces.exports,
        },
    })
}

/// Refuses what the service cannot provide to the components that import from it: any
/// import when it is a WASI 0.2 command (its `run` holds the instance), and interfaces whose
/// functions carry handles, streams, futures or error contexts.
fn check_service_imports(
    ctx: &DeployContext<'_>,
    manifest: &Manifest,
    loaded: &LoadedComponents,
    plan: &weft_inspect::LinkPlan,
    prepared: &PreparedService,
) -> Result<(), DeployError> {
    let exports = &prepared.plan.exports;
    let has = |prefix: &str| exports.iter().any(|e| e.starts_with(prefix));
    let p2_only = has("wasi:cli/run@0.2")
        && !has("wasi:cli/run@0.3")
        && !manifest.spec.service.as_ref().is_some_and(|s| s.serve_http);
    for (index, res) in plan.resolutions.iter().enumerate() {
        let name = &manifest.spec.components[index].name;
        for r in res {
            let weft_inspect::Provider::Service { export } = &r.provider else {
                continue;
            };
            let err = |e: crate::svccall::ServiceLinkError| DeployError::Component {
                index,
                component: name.clone(),
                message: e.to_string(),
            };
            if p2_only {
                return Err(err(crate::svccall::ServiceLinkError::P2Service {
                    component: name.clone(),
                    import: r.import.clone(),
                    service: prepared.name.clone(),
                    export: export.clone(),
                }));
            }
            crate::svccall::check_plain(
                ctx.engine.engine(),
                &loaded.compiled[index],
                name,
                &r.import,
                &prepared.name,
            )
            .map_err(err)?;
        }
    }
    Ok(())
}

/// What component `root` (and the components composed into it) import from the service.
fn service_imports(
    plan: &weft_inspect::LinkPlan,
    root: usize,
    service: &ServiceHandle,
    timeout: Option<Duration>,
) -> Option<crate::svccall::ServiceImports> {
    let mut imports = Vec::new();
    for i in crate::plan::needed_by(plan, root) {
        for r in &plan.resolutions[i] {
            if let weft_inspect::Provider::Service { export } = &r.provider
                && !imports.iter().any(|(imp, _)| *imp == r.import)
            {
                imports.push((r.import.clone(), export.clone()));
            }
        }
    }
    if imports.is_empty() {
        return None;
    }
    Some(crate::svccall::ServiceImports {
        calls: Arc::clone(service.calls()),
        imports,
        timeout: timeout.unwrap_or(DEFAULT_TIMEOUT),
        logs: None,
    })
}

/// Starts the prepared service and waits until it is ready.
fn launch_service(prepared: PreparedService) -> Result<ServiceHandle, DeployError> {
    let PreparedService {
        name,
        component,
        engine,
        spec,
        vnet,
        ..
    } = prepared;
    let err = |message: String| DeployError::Invalid(format!("spec.service ({name}): {message}"));
    let runtime = tokio::runtime::Handle::try_current()
        .map_err(|_| err("services need the host's async runtime".into()))?;
    let handle = {
        let _guard = runtime.enter();
        ServiceHandle::start(&engine, &component, spec, vnet).map_err(|e| err(e.to_string()))?
    };
    tokio::task::block_in_place(|| runtime.block_on(handle.ready()))
        .map_err(|e| err(e.to_string()))?;
    Ok(handle)
}
