//! Planning a workload: loading its components (read, digest check, compile through the
//! cache) and asking the pure planner in `weft-inspect` who satisfies each import
//! ([`plan_manifest`]). Composition (`compose.rs`), run-time linking (`link.rs`), deployment
//! (`workload.rs`) and `weft run MANIFEST --invoke` (`invoke.rs`) all start from here.

use std::collections::BTreeMap;
use std::path::PathBuf;

use wasmtime::Engine;
use wasmtime::component::Component;
use weft_inspect::{LinkPlan, PlanComponent, PlanError, PlanService, Provider};
use weft_manifest::Manifest;

use weft_engine::cache::CompileCache;
use weft_engine::engine::WeftEngine;
use weft_engine::load::{self, Compiled};
use weft_engine::world::{self, WorldKind};

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

/// Why a workload's components could not be loaded or its service read. Each message names
/// the manifest field and the fix (a deployment reports the same text, see `DeployError`).
#[derive(Debug, thiserror::Error)]
pub enum PlanningError {
    /// A component's image could not be read, checked against its digest pin, or compiled.
    #[error("spec.components[{index}] ({component}): {message}")]
    Component {
        index: usize,
        component: String,
        message: String,
    },
    /// The service's image could not be read or inspected (the message names `spec.service`).
    #[error("{0}")]
    Service(String),
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

/// A workload's components, compiled, with the facts the link planner needs.
pub struct LoadedComponents {
    pub infos: Vec<ComponentInfo>,
    pub compiled: Vec<wasmtime::component::Component>,
    pub plan_components: Vec<weft_inspect::PlanComponent>,
}

/// Reads, checks (digest pins) and compiles every component of `manifest`, in manifest order.
pub fn load_components(
    engine: &WeftEngine,
    cache: Option<&CompileCache>,
    manifest: &Manifest,
) -> Result<LoadedComponents, PlanningError> {
    let spec = &manifest.spec;
    let base_dir = manifest.base_dir();
    let mut components = Vec::new();
    let mut compiled = Vec::new();
    let mut plan_components = Vec::new();
    for (index, c) in spec.components.iter().enumerate() {
        let err = |message: String| PlanningError::Component {
            index,
            component: c.name.clone(),
            message,
        };
        let path = weft_manifest::resolve_image(&c.image, &base_dir)
            .map_err(|e| err(format!("image `{}`: {e}", c.image)))?;
        let loaded = load::load(engine, &path, cache).map_err(|e| err(e.to_string()))?;
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
        let ifaces = world::interfaces(engine.engine(), component);
        let kind = world::classify(ifaces.exports.iter().map(String::as_str));
        plan_components.push(weft_inspect::PlanComponent {
            name: c.name.clone(),
            imports: ifaces.imports,
            exports: ifaces.exports,
        });
        compiled.push(component.clone());
        components.push(ComponentInfo {
            name: c.name.clone(),
            image: path,
            sha256: loaded.sha256.clone(),
            kind,
            size: loaded.size,
            cache_hit: loaded.cache_hit,
        });
    }

    Ok(LoadedComponents {
        infos: components,
        compiled,
        plan_components,
    })
}

/// The host interfaces a manifest's components may import: the base WASI set, `wasi:http`
/// when granted, and every interface `spec.hostInterfaces` grants.
pub fn host_prefixes(manifest: &Manifest) -> Vec<String> {
    let mut out: Vec<String> = BASE_INTERFACES.iter().map(|s| s.to_string()).collect();
    for h in &manifest.spec.host_interfaces {
        if h.namespace == "wasi" && h.package == "http" {
            out.push("wasi:http".into());
        }
        for iface in &h.interfaces {
            out.push(format!("{}:{}/{}", h.namespace, h.package, iface));
        }
        if h.namespace == "wasmcloud" && h.package == "messaging" {
            // The record types of wasmcloud:messaging come with either interface.
            out.push("wasmcloud:messaging/types".into());
        }
    }
    out
}

/// Plans a manifest's components from their import and export names; `service` is the
/// planner's view of `spec.service` (its exports may satisfy components' imports).
pub fn plan_manifest(
    manifest: &Manifest,
    components: &[PlanComponent],
    service: Option<&PlanService>,
) -> Result<LinkPlan, PlanError> {
    let mut links = BTreeMap::new();
    for c in &manifest.spec.components {
        if !c.links.is_empty() {
            links.insert(c.name.clone(), c.links.clone());
        }
    }
    weft_inspect::plan_with_service(components, service, &host_prefixes(manifest), &links)
}

/// The planner's view of `spec.service`, read from its image (no compilation): its name and
/// exports. `None` without a service.
pub fn service_from_image(manifest: &Manifest) -> Result<Option<PlanService>, PlanningError> {
    let Some(svc) = &manifest.spec.service else {
        return Ok(None);
    };
    let service = |message: String| PlanningError::Service(message);
    let path = weft_manifest::resolve_image(&svc.image, &manifest.base_dir()).map_err(|e| {
        service(format!(
            "spec.service ({}): image `{}`: {e}",
            svc.name, svc.image
        ))
    })?;
    let bytes = weft_engine::load::read_wasm(&path)
        .map_err(|e| service(format!("spec.service ({}): {e}", svc.name)))?;
    let info = weft_inspect::inspect(&bytes).map_err(|e| {
        service(format!(
            "spec.service ({}): {}: {e}",
            svc.name,
            path.display()
        ))
    })?;
    Ok(Some(PlanService {
        name: svc.name.clone(),
        exports: info.export_names(),
    }))
}

/// The plan's view of a compiled component.
pub fn plan_component(engine: &Engine, name: &str, component: &Component) -> PlanComponent {
    let ifaces = weft_engine::world::interfaces(engine, component);
    PlanComponent {
        name: name.to_string(),
        imports: ifaces.imports,
        exports: ifaces.exports,
    }
}

/// The components `root` needs, directly or through others, in instantiation order (root last).
pub fn needed_by(plan: &LinkPlan, root: usize) -> Vec<usize> {
    let mut needed = vec![false; plan.resolutions.len()];
    let mut stack = vec![root];
    while let Some(i) = stack.pop() {
        if std::mem::replace(&mut needed[i], true) {
            continue;
        }
        for r in &plan.resolutions[i] {
            if let Provider::Component { index, .. } = &r.provider {
                stack.push(*index);
            }
        }
    }
    plan.order.iter().copied().filter(|&i| needed[i]).collect()
}
