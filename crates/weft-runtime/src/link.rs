//! Run-time linking of a workload's components (see `docs/linking.md`).
//!
//! The pure planner in `weft-inspect` decides who satisfies each import; this module wires the
//! plan into wasmtime. Every component gets its own linker: the workload's host linker plus, for
//! each import another component satisfies, one forwarding host function per function of the
//! imported interface. All components of one request live in the same `Store`: the exporters
//! are instantiated first (in plan order) and their functions are put into the store's
//! [`LinkSlots`], which the forwarders read to call across.
//!
//! Values cross as `Val`s: plain data is copied out of the caller and into the callee; handles
//! of host resources (wasi:http requests, streams) keep their identity. Resource types defined
//! by a component cannot cross at run time; such workloads must be composed.

use std::collections::BTreeMap;

use wasmtime::component::{
    Component, ComponentExportIndex, Func, InstancePre, Linker, types::ComponentItem,
};
use wasmtime::{Engine, Store};
use weft_inspect::{LinkPlan, PlanComponent, PlanError, Provider};
use weft_manifest::Manifest;

use crate::state::HostState;
use crate::workload::BASE_INTERFACES;

/// Functions of exporting instances, in the store of one request, called by forwarders.
#[derive(Default)]
pub struct LinkSlots(Vec<Option<Func>>);

impl LinkSlots {
    fn get(&self, slot: usize) -> Option<Func> {
        self.0.get(slot).copied().flatten()
    }

    fn set(&mut self, slot: usize, func: Func) {
        if self.0.len() <= slot {
            self.0.resize(slot + 1, None);
        }
        self.0[slot] = Some(func);
    }
}

/// Why components could not be linked at run time.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("{0}")]
    Plan(#[from] PlanError),
    #[error(
        "component `{importer}` imports `{import}` from `{exporter}`, which defines the resource \
         type `{resource}`; run-time linking cannot hand component-defined resources across \
         (hint: set spec.compose to `auto` or `always` to fuse the components)"
    )]
    Resource {
        importer: String,
        import: String,
        exporter: String,
        resource: String,
    },
    #[error("cannot link component `{component}`: {message}")]
    Wasmtime { component: String, message: String },
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
    }
    out
}

/// Plans a manifest's components from their import and export names.
pub fn plan_manifest(
    manifest: &Manifest,
    components: &[PlanComponent],
) -> Result<LinkPlan, PlanError> {
    let mut links = BTreeMap::new();
    for c in &manifest.spec.components {
        if !c.links.is_empty() {
            links.insert(c.name.clone(), c.links.clone());
        }
    }
    weft_inspect::plan(components, &host_prefixes(manifest), &links)
}

/// The plan's view of a compiled component.
pub fn plan_component(engine: &Engine, name: &str, component: &Component) -> PlanComponent {
    let ifaces = crate::world::interfaces(engine, component);
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

struct Part {
    pre: InstancePre<HostState>,
    /// (slot, export) pairs to fill after instantiating this component.
    fills: Vec<(usize, ComponentExportIndex)>,
}

/// The dependencies of one root component, pre-instantiated, and the root's linker.
pub struct Linked {
    parts: Vec<Part>,
}

impl Linked {
    /// Wires `root` and the components it needs. `base` holds the host interfaces; it returns
    /// the dependencies and a linker for the root that includes the forwarders for its imports.
    pub fn build(
        engine: &Engine,
        base: &Linker<HostState>,
        names: &[String],
        components: &[Component],
        plan: &LinkPlan,
        root: usize,
    ) -> Result<(Linked, Linker<HostState>), LinkError> {
        let order = needed_by(plan, root);
        // One slot per (exporter, interface export, function).
        let mut slots: BTreeMap<(usize, String, String), usize> = BTreeMap::new();
        let mut fills: BTreeMap<usize, Vec<(usize, ComponentExportIndex)>> = BTreeMap::new();
        let mut linkers: BTreeMap<usize, Linker<HostState>> = BTreeMap::new();
        for &i in &order {
            let mut linker = base.clone();
            linker.allow_shadowing(true);
            let wasm_err = |message: String| LinkError::Wasmtime {
                component: names[i].clone(),
                message,
            };
            for r in &plan.resolutions[i] {
                let Provider::Component { index: j, export } = &r.provider else {
                    continue;
                };
                let j = *j;
                let ty = components[i].component_type();
                let Some(import) = ty.get_import(engine, &r.import) else {
                    continue;
                };
                let mut slot_for = |func: &str, fills: &mut BTreeMap<_, Vec<_>>| {
                    let next = slots.len();
                    let key = (j, export.clone(), func.to_string());
                    if let Some(s) = slots.get(&key) {
                        return Ok::<_, LinkError>(*s);
                    }
                    let idx = if func.is_empty() {
                        components[j].get_export_index(None, export)
                    } else {
                        components[j]
                            .get_export_index(None, export)
                            .and_then(|inst| components[j].get_export_index(Some(&inst), func))
                    }
                    .ok_or_else(|| LinkError::Wasmtime {
                        component: names[j].clone(),
                        message: format!("no export `{export}` `{func}`"),
                    })?;
                    slots.insert(key, next);
                    fills.entry(j).or_default().push((next, idx));
                    Ok(next)
                };
                match import.ty {
                    ComponentItem::ComponentFunc(_) => {
                        let slot = slot_for("", &mut fills)?;
                        forward(&mut linker.root(), &r.import, slot)
                            .map_err(|e| wasm_err(format!("{e:#}")))?;
                    }
                    ComponentItem::ComponentInstance(inst_ty) => {
                        let mut inst = linker
                            .instance(&r.import)
                            .map_err(|e| wasm_err(format!("{e:#}")))?;
                        for (fname, item) in inst_ty.exports(engine) {
                            match item.ty {
                                ComponentItem::ComponentFunc(_) => {
                                    let slot = slot_for(fname, &mut fills)?;
                                    forward(&mut inst, fname, slot)
                                        .map_err(|e| wasm_err(format!("{e:#}")))?;
                                }
                                ComponentItem::Resource(_) => {
                                    return Err(LinkError::Resource {
                                        importer: names[i].clone(),
                                        import: r.import.clone(),
                                        exporter: names[j].clone(),
                                        resource: fname.to_string(),
                                    });
                                }
                                _ => {}
                            }
                        }
                    }
                    _ => {}
                }
            }
            linkers.insert(i, linker);
        }
        let mut parts = Vec::new();
        let mut root_linker = None;
        for &i in &order {
            let Some(linker) = linkers.remove(&i) else {
                continue;
            };
            if i == root {
                root_linker = Some(linker);
                continue;
            }
            let pre = linker
                .instantiate_pre(&components[i])
                .map_err(|e| LinkError::Wasmtime {
                    component: names[i].clone(),
                    message: format!("{e:#}"),
                })?;
            parts.push(Part {
                pre,
                fills: fills.remove(&i).unwrap_or_default(),
            });
        }
        let root_linker = root_linker.ok_or_else(|| LinkError::Wasmtime {
            component: names.get(root).cloned().unwrap_or_default(),
            message: "the root component is not part of the plan".into(),
        })?;
        Ok((Linked { parts }, root_linker))
    }

    /// Whether the root imports nothing from other components.
    pub fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }

    /// Instantiates the dependencies into `store` and fills its link slots. Call before
    /// instantiating the root.
    pub async fn instantiate(&self, store: &mut Store<HostState>) -> wasmtime::Result<()> {
        for part in &self.parts {
            let instance = part.pre.instantiate_async(&mut *store).await?;
            for (slot, idx) in &part.fills {
                let func = instance
                    .get_func(&mut *store, idx)
                    .ok_or_else(|| wasmtime::format_err!("linked export is not a function"))?;
                store.data_mut().links.set(*slot, func);
            }
        }
        Ok(())
    }
}

/// Defines `name` in `inst` as a function that calls the function in link slot `slot`.
///
/// The nested `call_async` into the exporting instance is only allowed in stores without
/// component-model concurrency (inside a concurrent store's event loop it would be a recursive
/// `run_concurrent`), so run-time linked components run on an engine built with
/// `EngineOptions::no_concurrency` (see [`linking_engine`]).
fn forward(
    inst: &mut wasmtime::component::LinkerInstance<'_, HostState>,
    name: &str,
    slot: usize,
) -> wasmtime::Result<()> {
    inst.func_new_async(name, move |mut store, _ty, params, results| {
        Box::new(async move {
            let func = store
                .data()
                .links
                .get(slot)
                .ok_or_else(|| wasmtime::format_err!("linked function {slot} is not wired"))?;
            func.call_async(&mut store, params, results).await
        })
    })
}

/// An engine for run-time linked components: on-demand allocation, no component-model
/// concurrency (so no WASI 0.3 components).
pub fn linking_engine() -> wasmtime::Result<crate::engine::WeftEngine> {
    crate::engine::WeftEngine::new(&crate::engine::EngineOptions {
        allocator: crate::engine::AllocatorChoice::OnDemand,
        max_memory_bytes: None,
        no_concurrency: true,
        ..Default::default()
    })
}

/// A root component and the components it imports from, ready to instantiate per store.
pub struct Wired {
    linked: Linked,
    root: InstancePre<HostState>,
}

impl Wired {
    /// Links `root` at run time to what it needs (`base` holds the host interfaces).
    pub fn new(
        engine: &Engine,
        base: &Linker<HostState>,
        names: &[String],
        components: &[Component],
        plan: &LinkPlan,
        root: usize,
    ) -> Result<Wired, LinkError> {
        let (linked, linker) = Linked::build(engine, base, names, components, plan, root)?;
        let root_pre =
            linker
                .instantiate_pre(&components[root])
                .map_err(|e| LinkError::Wasmtime {
                    component: names[root].clone(),
                    message: format!("{e:#}"),
                })?;
        Ok(Wired {
            linked,
            root: root_pre,
        })
    }

    /// Instantiates the dependencies, then the root, into `store`.
    pub async fn instantiate(
        &self,
        store: &mut Store<HostState>,
    ) -> wasmtime::Result<wasmtime::component::Instance> {
        self.linked.instantiate(store).await?;
        self.root.instantiate_async(store).await
    }
}

/// A store for calling a workload's functions outside HTTP (`weft run MANIFEST --invoke`, the
/// benchmarks): no grants beyond the base WASI handles, stdio inherited, no plugins.
pub fn plain_store(engine: &Engine) -> Store<HostState> {
    let mut builder = wasmtime_wasi::WasiCtxBuilder::new();
    builder.inherit_stdout().inherit_stderr();
    let state = HostState {
        table: wasmtime::component::ResourceTable::new(),
        wasi: builder.build(),
        http: wasmtime_wasi_http::WasiHttpCtx::new(),
        hooks: crate::state::OutgoingHttp::new(crate::allow::AllowedHosts::deny_all()),
        limits: wasmtime::StoreLimits::default(),
        plugins: Default::default(),
        net: crate::net::NetStore::unrestricted(),
        links: LinkSlots::default(),
    };
    let mut store = Store::new(engine, state);
    store.epoch_deadline_async_yield_and_update(1);
    store
}

/// A linker with the host interfaces a workload's components may import outside HTTP serving.
pub fn base_linker(engine: &Engine) -> wasmtime::Result<Linker<HostState>> {
    let mut linker = Linker::new(engine);
    crate::http::add_to_linker(&mut linker)?;
    Ok(linker)
}

/// The WASI 0.2 part of [`base_linker`], for the linking engine (which has no WASI 0.3).
pub fn base_linker_p2(engine: &Engine) -> wasmtime::Result<Linker<HostState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    Ok(linker)
}

/// Which component of a workload exports the function a `--invoke` call names: the one that no
/// other component imports from when several do.
pub fn invoke_root(
    engine: &Engine,
    names: &[String],
    components: &[Component],
    plan: &LinkPlan,
    func: &str,
) -> Result<usize, String> {
    let found: Vec<usize> = (0..components.len())
        .filter(|&i| crate::run::find_export(engine, &components[i], func).is_ok())
        .collect();
    let roots: Vec<usize> = found
        .iter()
        .copied()
        .filter(|&i| !plan.is_consumed(i))
        .collect();
    match (found.as_slice(), roots.as_slice()) {
        ([], _) => Err(format!(
            "no component of the workload exports a function `{func}` (components: {})",
            names.join(", ")
        )),
        ([only], _) | (_, [only]) => Ok(*only),
        _ => Err(format!(
            "`{func}` is exported by several components ({}); keep one of them",
            found
                .iter()
                .map(|&i| format!("`{}`", names[i]))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// Calls one function of a workload once (`weft run MANIFEST --invoke 'f(1, 2)'`): loads and
/// plans its components, composes them or links them at run time (per `spec.compose`), and
/// returns the results in WAVE syntax.
pub async fn invoke_workload(
    engine: &crate::engine::WeftEngine,
    cache: Option<&crate::cache::CompileCache>,
    manifest: &Manifest,
    invoke: &str,
) -> Result<String, crate::run::RunError> {
    use crate::run::RunError;
    use wasmtime::component::Val;
    use wasmtime::component::wasm_wave::untyped::UntypedFuncCall;
    use wasmtime::component::wasm_wave::wasm::{DisplayFuncResults, WasmFunc};

    let setup = |e: String| RunError::Setup(e);
    let call = UntypedFuncCall::parse(invoke).map_err(|e| {
        setup(format!(
            "cannot parse --invoke `{invoke}`: {e}. Write a call in WAVE syntax, e.g. `add(1, 2)`"
        ))
    })?;
    let loaded = crate::workload::load_components(engine, cache, manifest)
        .map_err(|e| setup(e.to_string()))?;
    let plan = plan_manifest(manifest, &loaded.plan_components)
        .map_err(|e| setup(format!("spec.components: {e}")))?;
    let names: Vec<String> = loaded.infos.iter().map(|c| c.name.clone()).collect();
    let e = engine.engine();
    let root = invoke_root(e, &names, &loaded.compiled, &plan, call.name()).map_err(setup)?;
    let strategy = crate::compose::choose(engine, cache, manifest, &loaded, &plan, root)
        .map_err(|e| setup(e.to_string()))?;
    let component = match &strategy {
        crate::compose::Strategy::Composed(c) => c,
        _ => &loaded.compiled[root],
    };
    let (index, func_ty) = crate::run::find_export(e, component, call.name()).map_err(setup)?;
    let param_types = WasmFunc::params(&func_ty).collect::<Vec<_>>();
    let params: Vec<Val> = call
        .to_wasm_params(&param_types)
        .map_err(|e| setup(format!("invalid arguments in --invoke `{invoke}`: {e}")))?;
    let mut results = vec![Val::Bool(false); func_ty.results().len()];
    if let crate::compose::Strategy::Linked = strategy {
        // Recompile on the linking engine (no concurrency), then link and call with call_async.
        let engine = linking_engine().map_err(|e| setup(format!("{e:#}")))?;
        let e = engine.engine();
        let loaded = crate::workload::load_components(&engine, cache, manifest)
            .map_err(|e| setup(e.to_string()))?;
        let base = base_linker_p2(e).map_err(|e| setup(format!("{e:#}")))?;
        let wired = Wired::new(e, &base, &names, &loaded.compiled, &plan, root)
            .map_err(|e| setup(e.to_string()))?;
        let (index, _) =
            crate::run::find_export(e, &loaded.compiled[root], call.name()).map_err(setup)?;
        let mut store = plain_store(e);
        let instance = wired
            .instantiate(&mut store)
            .await
            .map_err(|e| RunError::Trap(format!("{e:?}")))?;
        let func = instance
            .get_func(&mut store, index)
            .ok_or_else(|| setup(format!("export `{}` is not a function", call.name())))?;
        func.call_async(&mut store, &params, &mut results)
            .await
            .map_err(|e| RunError::Trap(format!("{e:?}")))?;
        return Ok(DisplayFuncResults(&results).to_string());
    }
    let base = base_linker(e).map_err(|e| setup(format!("{e:#}")))?;
    let mut store = plain_store(e);
    let instance = base
        .instantiate_async(&mut store, component)
        .await
        .map_err(|e| RunError::Trap(format!("{e:?}")))?;
    let func = instance
        .get_func(&mut store, index)
        .ok_or_else(|| setup(format!("export `{}` is not a function", call.name())))?;
    store
        .run_concurrent(async |store| func.call_concurrent(store, &params, &mut results).await)
        .await
        .and_then(|r| r)
        .map_err(|e| RunError::Trap(format!("{e:?}")))?;
    Ok(DisplayFuncResults(&results).to_string())
}
