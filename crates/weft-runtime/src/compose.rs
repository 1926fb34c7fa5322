//! Composition: fusing the components of a workload that import from each other into one
//! component with `wac-graph`, so that calls between them are plain Wasm calls inside one
//! instance (see `docs/linking.md`). `spec.compose` chooses: `auto` composes when the graph
//! allows it and links at run time otherwise, `always` fails the deployment when it cannot
//! compose, `never` always links at run time.
//!
//! Composition works on the components' bytes and the link plan only; its result is cached
//! next to the compile cache, keyed by the digests of the parts and the plan's links, and then
//! compiled (and cached) like any component.

use std::path::{Path, PathBuf};

use wac_graph::{CompositionGraph, EncodeOptions, NodeId, types::Package};
use wasmtime::component::Component;
use weft_inspect::{LinkPlan, PlanComponent, Provider};
use weft_manifest::{Compose, Manifest};

use crate::plan::{LoadedComponents, needed_by, plan_manifest, service_from_image};
use weft_engine::cache::CompileCache;
use weft_engine::engine::WeftEngine;
use weft_engine::load::sha256_hex;

/// Why components could not be composed.
#[derive(Debug, thiserror::Error)]
pub enum ComposeError {
    #[error("cannot read component `{component}`: {message}")]
    Read { component: String, message: String },
    #[error("cannot compose: {0}")]
    Graph(String),
    #[error("{0}")]
    Plan(#[from] weft_inspect::PlanError),
    #[error("{0}")]
    Root(String),
    #[error("the composed component does not compile: {0}")]
    Compile(String),
}

/// How a root component and the components it imports from run.
pub enum Strategy {
    /// The root imports from no other component.
    Single,
    /// The components were fused into this component.
    Composed(Component),
    /// The components are linked at run time.
    Linked,
}

/// Composes the components `root` needs (itself included) into one component. `bytes[i]` is
/// component `i`'s binary; `names[i]` its name. The result exports what the root exports and
/// imports what the parts import from the host.
pub fn compose_bytes(
    names: &[String],
    bytes: &[Vec<u8>],
    plan: &LinkPlan,
    root: usize,
) -> Result<Vec<u8>, ComposeError> {
    let g = |e: &dyn std::fmt::Display| ComposeError::Graph(format!("{e:#}"));
    let needed = needed_by(plan, root);
    let mut graph = CompositionGraph::new();
    let mut instances: Vec<Option<NodeId>> = vec![None; names.len()];
    for &i in &needed {
        let package = Package::from_bytes(
            &format!("weft:{}", names[i]),
            None,
            bytes[i].clone(),
            graph.types_mut(),
        )
        .map_err(|e| ComposeError::Graph(format!("component `{}`: {e:#}", names[i])))?;
        let id = graph
            .register_package(package)
            .map_err(|e| g(&anyhow_like(e)))?;
        instances[i] = Some(graph.instantiate(id));
    }
    for &i in &needed {
        let Some(importer) = instances[i] else {
            continue;
        };
        for r in &plan.resolutions[i] {
            let Provider::Component { index, export } = &r.provider else {
                continue;
            };
            let Some(exporter) = instances[*index] else {
                continue;
            };
            let alias = graph
                .alias_instance_export(exporter, export)
                .map_err(|e| g(&anyhow_like(e)))?;
            graph
                .set_instantiation_argument(importer, &r.import, alias)
                .map_err(|e| {
                    ComposeError::Graph(format!(
                        "`{}` imports `{}` from `{}`: {}",
                        names[i],
                        r.import,
                        names[*index],
                        anyhow_like(e)
                    ))
                })?;
        }
    }
    let root_instance = instances[root]
        .ok_or_else(|| ComposeError::Root("the root component is not in the plan".into()))?;
    let root_package = graph[root_instance]
        .package()
        .ok_or_else(|| ComposeError::Root("the root instance has no package".into()))?;
    let export_names: Vec<String> = graph.types()[graph[root_package].ty()]
        .exports
        .keys()
        .cloned()
        .collect();
    for name in export_names {
        let alias = graph
            .alias_instance_export(root_instance, &name)
            .map_err(|e| g(&anyhow_like(e)))?;
        graph.export(alias, &name).map_err(|e| g(&anyhow_like(e)))?;
    }
    graph
        .encode(EncodeOptions::default())
        .map_err(|e| g(&anyhow_like(e)))
}

/// Formats an error with its sources.
fn anyhow_like(e: impl std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// Where composed binaries are cached: next to the compile cache.
fn composed_dir(cache: &CompileCache) -> PathBuf {
    cache.dir().with_file_name("composed")
}

/// The cache key of a composition: the parts' digests and the links between them.
fn composition_key(names: &[String], digests: &[String], plan: &LinkPlan, root: usize) -> String {
    let mut text = String::from("weft-compose-v1\n");
    for i in needed_by(plan, root) {
        text.push_str(&format!("{} {}\n", names[i], digests[i]));
        for r in &plan.resolutions[i] {
            if let Provider::Component { index, export } = &r.provider {
                text.push_str(&format!("  {} <- {} {}\n", r.import, names[*index], export));
            }
        }
    }
    text.push_str(&format!("root {}\n", names[root]));
    sha256_hex(text.as_bytes())
}

/// Composes with the on-disk cache: returns the composed bytes and whether they came from it.
pub fn compose_cached(
    cache: Option<&CompileCache>,
    names: &[String],
    digests: &[String],
    paths: &[PathBuf],
    plan: &LinkPlan,
    root: usize,
) -> Result<(Vec<u8>, bool), ComposeError> {
    let key = composition_key(names, digests, plan, root);
    let cached = cache.map(|c| composed_dir(c).join(format!("{key}.wasm")));
    if let Some(path) = &cached
        && let Ok(bytes) = std::fs::read(path)
        && bytes.starts_with(b"\0asm")
    {
        tracing::debug!(path = %path.display(), "composition cache hit");
        return Ok((bytes, true));
    }
    let mut bytes = vec![Vec::new(); names.len()];
    for i in needed_by(plan, root) {
        bytes[i] = weft_engine::load::read_wasm(&paths[i]).map_err(|e| ComposeError::Read {
            component: names[i].clone(),
            message: e.to_string(),
        })?;
    }
    let out = compose_bytes(names, &bytes, plan, root)?;
    if let Some(path) = &cached {
        write_atomic(path, &out);
    }
    Ok((out, false))
}

fn write_atomic(path: &Path, bytes: &[u8]) {
    let Some(dir) = path.parent() else {
        return;
    };
    if std::fs::create_dir_all(dir).is_err() {
        return;
    }
    let tmp = dir.join(format!(".tmp-{}-{}", std::process::id(), sha256_hex(bytes)));
    if std::fs::write(&tmp, bytes).is_ok() && std::fs::rename(&tmp, path).is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
}

/// Chooses how `root` and the components it needs run, per `spec.compose`, composing (through
/// the caches) when it should.
pub fn choose(
    engine: &WeftEngine,
    cache: Option<&CompileCache>,
    manifest: &Manifest,
    loaded: &LoadedComponents,
    plan: &LinkPlan,
    root: usize,
) -> Result<Strategy, ComposeError> {
    if needed_by(plan, root).len() <= 1 {
        return Ok(Strategy::Single);
    }
    let mode = manifest.spec.compose;
    if mode == Compose::Never {
        return Ok(Strategy::Linked);
    }
    let names: Vec<String> = loaded.infos.iter().map(|c| c.name.clone()).collect();
    let digests: Vec<String> = loaded.infos.iter().map(|c| c.sha256.clone()).collect();
    let paths: Vec<PathBuf> = loaded.infos.iter().map(|c| c.image.clone()).collect();
    let composed =
        compose_cached(cache, &names, &digests, &paths, plan, root).and_then(|(bytes, hit)| {
            let path = PathBuf::from(format!("{}.composed.wasm", names[root]));
            let loaded = weft_engine::load::load_bytes(engine, &path, &bytes, cache)
                .map_err(|e| ComposeError::Compile(e.to_string()))?;
            match loaded.compiled {
                weft_engine::load::Compiled::Component(c) => {
                    tracing::info!(
                        workload = %manifest.metadata.name,
                        root = %names[root],
                        composition_cache_hit = hit,
                        compile_cache_hit = loaded.cache_hit,
                        "composed components"
                    );
                    Ok(c)
                }
                weft_engine::load::Compiled::Module(_) => Err(ComposeError::Compile(
                    "composition produced a core module".into(),
                )),
            }
        });
    match (composed, mode) {
        (Ok(c), _) => Ok(Strategy::Composed(c)),
        (Err(e), Compose::Always) => Err(e),
        (Err(e), _) => {
            tracing::warn!(
                workload = %manifest.metadata.name,
                reason = %e,
                "cannot compose the components; linking them at run time (spec.compose: auto)"
            );
            Ok(Strategy::Linked)
        }
    }
}

/// The component whose group a whole-workload composition fuses: the only component no other
/// component imports from, among those that import from some other component.
pub fn compose_root(names: &[String], plan: &LinkPlan) -> Result<usize, ComposeError> {
    let roots: Vec<usize> = (0..names.len())
        .filter(|&i| !plan.is_consumed(i) && needed_by(plan, i).len() > 1)
        .collect();
    match roots.as_slice() {
        [one] => Ok(*one),
        [] => Err(ComposeError::Root(
            "no component imports from another component; there is nothing to compose".into(),
        )),
        many => Err(ComposeError::Root(format!(
            "the workload has several independent groups of linked components (rooted at {}); \
             compose composes one",
            many.iter()
                .map(|&i| format!("`{}`", names[i]))
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// `weft compose`: fuses a manifest's linked components into one component, from the image
/// files alone (no compilation). Returns the bytes and the root component's name.
pub fn compose_manifest(manifest: &Manifest) -> Result<(Vec<u8>, String), ComposeError> {
    let base_dir = manifest.base_dir();
    let mut names = Vec::new();
    let mut bytes = Vec::new();
    let mut parts = Vec::new();
    for c in &manifest.spec.components {
        let read = |message: String| ComposeError::Read {
            component: c.name.clone(),
            message,
        };
        let path = weft_manifest::resolve_image(&c.image, &base_dir)
            .map_err(|e| read(format!("image `{}`: {e}", c.image)))?;
        let b = weft_engine::load::read_wasm(&path).map_err(|e| read(e.to_string()))?;
        let info = weft_inspect::inspect(&b).map_err(|e| read(e.to_string()))?;
        parts.push(PlanComponent {
            name: c.name.clone(),
            imports: info.import_names(),
            exports: info.export_names(),
        });
        names.push(c.name.clone());
        bytes.push(b);
    }
    let service = service_from_image(manifest).map_err(|e| ComposeError::Read {
        component: manifest
            .spec
            .service
            .as_ref()
            .map(|s| s.name.clone())
            .unwrap_or_default(),
        message: e.to_string(),
    })?;
    let plan = plan_manifest(manifest, &parts, service.as_ref())?;
    let root = compose_root(&names, &plan)?;
    let out = compose_bytes(&names, &bytes, &plan, root)?;
    Ok((out, names[root].clone()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn fixture(name: &str) -> PathBuf {
        std::path::PathBuf::from(
            std::env::var_os("CARGO_MANIFEST_DIR")
                .unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
        )
        .join("../../tests/fixtures/wat")
        .join(name)
    }

    fn setup() -> (Vec<String>, Vec<String>, Vec<PathBuf>, LinkPlan) {
        let names = vec!["sum".to_string(), "calc".to_string()];
        let paths = vec![fixture("sum3.wat"), fixture("calc-ops.wat")];
        let mut digests = Vec::new();
        let mut parts = Vec::new();
        for (name, path) in names.iter().zip(&paths) {
            let bytes = weft_engine::load::read_wasm(path).expect("fixture");
            digests.push(sha256_hex(&bytes));
            let info = weft_inspect::inspect(&bytes).expect("inspect");
            parts.push(PlanComponent {
                name: name.clone(),
                imports: info.import_names(),
                exports: info.export_names(),
            });
        }
        let plan = weft_inspect::plan(&parts, &[], &BTreeMap::new()).expect("plan");
        (names, digests, paths, plan)
    }

    #[test]
    fn composition_is_cached_and_a_bad_entry_is_recomposed() {
        let dir = tempfile::tempdir().unwrap();
        let cache = CompileCache::new(dir.path().join("compiled"));
        let (names, digests, paths, plan) = setup();
        let (first, hit) =
            compose_cached(Some(&cache), &names, &digests, &paths, &plan, 0).expect("compose");
        assert!(!hit);
        let info = weft_inspect::inspect(&first).expect("inspect composed");
        assert!(info.imports.is_empty(), "{:?}", info.imports);
        assert_eq!(info.export_names(), vec!["sum3", "add-via", "add-n"]);
        let (second, hit) =
            compose_cached(Some(&cache), &names, &digests, &paths, &plan, 0).expect("compose");
        assert!(hit);
        assert_eq!(first, second);

        // A different part (digest) is a different key: no false hit.
        let mut other = digests.clone();
        other[1] = "0".repeat(64);
        let (_, hit) =
            compose_cached(Some(&cache), &names, &other, &paths, &plan, 0).expect("compose");
        assert!(!hit);

        // A damaged entry is not used.
        let composed = dir.path().join("composed");
        for entry in std::fs::read_dir(&composed).unwrap() {
            std::fs::write(entry.unwrap().path(), b"garbage").unwrap();
        }
        let (third, hit) =
            compose_cached(Some(&cache), &names, &digests, &paths, &plan, 0).expect("compose");
        assert!(!hit);
        assert_eq!(first, third);
    }

    #[test]
    fn compose_root_is_the_component_nobody_imports_from() {
        let (names, _, _, plan) = setup();
        assert_eq!(compose_root(&names, &plan).expect("root"), 0);
    }
}
