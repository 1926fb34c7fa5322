//! A deployed workload version: its manifest, compiled components, bound plugins and the
//! HTTP service of its handler component. Built completely (compile, link, pre-instantiate)
//! before it is swapped in, so a bad version never replaces a good one.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use weft_manifest::Manifest;

use crate::allow::AllowedHosts;
use crate::cache::CompileCache;
use crate::engine::WeftEngine;
use crate::http::{HandleError, HttpOptions, HttpService, WorkloadExtras};
use crate::load::{self, Compiled};
use crate::logs::LogSink;
use crate::net::NetPolicy;
use crate::plugins::BoundPlugins;
use crate::wasi::{DirGrant, WasiGrants};
use crate::world::{self, WorldKind};

/// Interfaces every component may import: their capabilities are handles the host hands out
/// (no preopens unless volumes are mounted, no socket address allowed, only the granted
/// environment), so importing them grants nothing by itself.
pub const BASE_INTERFACES: &[&str] = &[
    "wasi:io",
    "wasi:clocks",
    "wasi:random",
    "wasi:cli",
    "wasi:filesystem",
    "wasi:sockets",
];

/// A route from the `wasi:http` `incoming-handler` grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRoute {
    pub host: Option<String>,
    pub path: String,
}

/// Facts about one deployed component.
#[derive(Debug, Clone)]
pub struct ComponentInfo {
    pub name: String,
    pub image: PathBuf,
    pub sha256: String,
    pub kind: WorldKind,
    pub size: usize,
    pub cache_hit: bool,
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
    Plugins(Vec<crate::plugins::PluginError>),
}

/// Where a deployment gets its engine, cache and storage.
pub struct DeployContext<'a> {
    pub engine: &'a WeftEngine,
    pub cache: Option<&'a CompileCache>,
    pub data_dir: PathBuf,
    /// The workload's log buffer, kept across versions.
    pub logs: LogSink,
}

/// A running workload version.
pub struct Workload {
    manifest: Manifest,
    logs: LogSink,
    plugins: BoundPlugins,
    http: Option<HttpService>,
    routes: Vec<HttpRoute>,
    components: Vec<ComponentInfo>,
    deployed_at: SystemTime,
}

impl Workload {
    /// Compiles, checks grants, binds plugins, links and pre-instantiates. Nothing is served
    /// until the caller swaps the result in.
    pub fn deploy(ctx: &DeployContext<'_>, manifest: &Manifest) -> Result<Workload, DeployError> {
        let spec = &manifest.spec;
        if let Some(service) = &spec.service {
            return Err(DeployError::Invalid(format!(
                "spec.service ({}): long-lived services are not supported by this host yet \
                 (hint: remove spec.service; services arrive with component linking)",
                service.name
            )));
        }
        if spec.components.len() > 1 {
            return Err(DeployError::Invalid(format!(
                "spec.components: this workload has {} components; run-time linking of several \
                 components is not supported by this host yet (hint: deploy each HTTP component \
                 as its own workload)",
                spec.components.len()
            )));
        }
        let plugins = BoundPlugins::bind(manifest, ctx.data_dir.clone(), &ctx.logs)
            .map_err(DeployError::Plugins)?;
        let http_grant = manifest.host_interface("wasi", "http");
        let base_dir = manifest.base_dir();

        let mut components = Vec::new();
        let mut http = None;
        for (index, c) in spec.components.iter().enumerate() {
            let err = |message: String| DeployError::Component {
                index,
                component: c.name.clone(),
                message,
            };
            let path = weft_manifest::resolve_image(&c.image, &base_dir)
                .map_err(|e| err(format!("image `{}`: {e}", c.image)))?;
            let loaded =
                load::load(ctx.engine, &path, ctx.cache).map_err(|e| err(e.to_string()))?;
            if let Some(digest) = &c.digest {
                let want = digest.strip_prefix("sha256:").unwrap_or(digest);
                if !want.eq_ignore_ascii_case(&loaded.sha256) {
                    return Err(err(format!(
                        "image {} has digest sha256:{}, but the manifest pins {digest} \
                         (hint: update spec.components[{index}].digest or the image)",
                        path.display(),
                        loaded.sha256
                    )));
                }
            }
            let Compiled::Component(component) = &loaded.compiled else {
                return Err(err(format!(
                    "image {} is a core module; workloads run components (hint: adapt it with \
                     `wasm-tools component new --adapt`)",
                    path.display()
                )));
            };
            let ifaces = world::interfaces(ctx.engine.engine(), component);
            let kind = world::classify(ifaces.exports.iter().map(String::as_str));
            check_grants(manifest, index, &c.name, &ifaces.imports, &plugins)?;

            if kind.is_http() {
                let Some(grant) = http_grant.filter(|g| g.grants("incoming-handler")) else {
                    return Err(err(
                        "exports a wasi:http handler, but the workload grants no incoming HTTP \
                         (hint: add to spec.hostInterfaces: `- { namespace: wasi, package: http, \
                         interfaces: [incoming-handler], config: { host: NAME.localhost, path: / } }`)"
                            .into(),
                    ));
                };
                let options = http_options(manifest, c, &base_dir, &ctx.logs, &ifaces.imports)
                    .map_err(&err)?;
                let extras = WorkloadExtras {
                    component: c.name.clone(),
                    plugins: plugins.clone(),
                    logs: ctx.logs.clone(),
                };
                let service = HttpService::for_workload(ctx.engine, component, options, extras)
                    .map_err(|e| err(e.to_string()))?;
                let (host, path) = match grant.http_incoming_config() {
                    Some(cfg) => (cfg.host, cfg.path),
                    None => (None, "/".to_string()),
                };
                http = Some((service, HttpRoute { host, path }));
            }
            components.push(ComponentInfo {
                name: c.name.clone(),
                image: path,
                sha256: loaded.sha256.clone(),
                kind,
                size: loaded.size,
                cache_hit: loaded.cache_hit,
            });
        }

        let (http, routes) = match http {
            Some((service, route)) => (Some(service), vec![route]),
            None => {
                if http_grant.is_some_and(|g| g.grants("incoming-handler")) {
                    return Err(DeployError::Invalid(
                        "spec.hostInterfaces: wasi:http incoming-handler is granted, but no \
                         component exports a wasi:http handler (hint: check the images, or drop \
                         the grant)"
                            .into(),
                    ));
                }
                (None, Vec::new())
            }
        };
        Ok(Workload {
            manifest: manifest.clone(),
            logs: ctx.logs.clone(),
            plugins,
            http,
            routes,
            components,
            deployed_at: SystemTime::now(),
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

    /// Handles one incoming HTTP request.
    pub async fn handle(
        &self,
        request: http::Request<crate::WasiBody>,
    ) -> Result<http::Response<crate::WasiBody>, HandleError> {
        match &self.http {
            Some(service) => service.handle(request).await,
            None => Err(HandleError::Guest(
                "this workload has no HTTP handler".into(),
            )),
        }
    }

    /// Stops taking new requests (in-flight ones finish) and releases plugin backends.
    pub fn retire(&self) {
        if let Some(service) = &self.http {
            service.close();
        }
        self.plugins.unbind();
    }
}

/// Refuses imports that neither the base host nor a granted host interface provides.
fn check_grants(
    manifest: &Manifest,
    index: usize,
    component: &str,
    imports: &[String],
    plugins: &BoundPlugins,
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
        let hint = match crate::plugins::grant_for(import) {
            Some((ns, pkg, iface))
                if weft_manifest::known_host_interface(&ns, &pkg).is_some() =>
            {
                match manifest.spec.host_interfaces.iter().position(|h| h.namespace == ns && h.package == pkg) {
                    Some(i) => format!(
                        "add `{iface}` to spec.hostInterfaces[{i}].interfaces"
                    ),
                    None => format!(
                        "add to spec.hostInterfaces: `- {{ namespace: {ns}, package: {pkg}, interfaces: [{iface}] }}`"
                    ),
                }
            }
            _ => "no host interface provides it, and linking to other components is not supported yet".into(),
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

/// The HTTP service options one component's `localResources` imply.
fn http_options(
    manifest: &Manifest,
    c: &weft_manifest::Component,
    base_dir: &std::path::Path,
    logs: &LogSink,
    imports: &[String],
) -> Result<HttpOptions, String> {
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
    let grants = WasiGrants {
        env: res
            .environment
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        dirs,
        inherit_network: false,
        max_memory_bytes: res.memory_limit_mb.map(|mb| u64::from(mb) << 20),
        timeout: res.timeout_ms.map(Duration::from_millis),
        sockets: Some(NetPolicy::new(
            socket_rules(res)?,
            &c.name,
            Some(logs.clone()),
            imports
                .iter()
                .any(|i| i.starts_with("wasi:sockets/ip-name-lookup@0.3")),
        )),
    };
    grants.validate()?;
    if imports
        .iter()
        .any(|i| i.starts_with("wasi:sockets/ip-name-lookup@0.3"))
        && !res.allowed_ip_name_lookups.is_empty()
        && !res.allowed_ip_name_lookups.iter().any(|n| n == "*")
    {
        return Err(
            "localResources.allowedIpNameLookups: this component resolves names through \
             WASI 0.3 sockets, which Weft cannot filter name by name (hint: grant `[\"*\"]`, \
             or connect by IP address and drop the list)"
                .into(),
        );
    }
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
