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
//! of host resources (wasi:http requests, streams) keep their identity. A resource type defined
//! by an exporting component is defined in each importer's linker as a host resource type of
//! its own ([`ResourceType::host_dynamic`], one payload per exporter, interface and resource),
//! whose rep indexes the store's table of the exporter's handles ([`LinkSlots`]). Forwarders
//! translate in both directions: a proxy handed to its exporter becomes the exporter's handle
//! again (an `own` moves out of the table, a `borrow` leaves it there), and a handle the
//! exporter returns becomes a new proxy, wherever it sits in the value (lists, records,
//! options, results, variants, tuples). Dropping a proxy drops the exporter's handle, so the
//! exporter's destructor runs once.

use std::collections::BTreeMap;

use wasmtime::component::{
    Component, ComponentExportIndex, Func, InstancePre, Linker, LinkerInstance, ResourceAny,
    ResourceDynamic, ResourceType, Val,
    types::{ComponentFunc, ComponentItem, Type},
};
use wasmtime::{Engine, Store, StoreContextMut};
use weft_inspect::{LinkPlan, PlanComponent, PlanError, PlanService, Provider};
use weft_manifest::Manifest;

use crate::state::HostState;
use crate::workload::BASE_INTERFACES;

/// The run-time linking state of one store: the exporters' functions the forwarders call, and
/// the table behind the proxies of component-defined resources.
#[derive(Default)]
pub struct LinkSlots {
    funcs: Vec<Option<Func>>,
    /// Per linked resource type (indexed by its proxy payload): the exporting component and,
    /// once that component is instantiated in this store, the resource's run-time type.
    resources: Vec<(usize, Option<ResourceType>)>,
    /// The exporters' handles; a proxy's rep is its index here.
    handles: Vec<Option<ResourceAny>>,
    /// Free indexes of `handles`, reused before the table grows.
    free: Vec<u32>,
}

impl LinkSlots {
    fn get(&self, slot: usize) -> Option<Func> {
        self.funcs.get(slot).copied().flatten()
    }

    fn set(&mut self, slot: usize, func: Func) {
        if self.funcs.len() <= slot {
            self.funcs.resize(slot + 1, None);
        }
        self.funcs[slot] = Some(func);
    }

    /// Keeps an exporter's handle; returns the rep of its proxy.
    fn insert_handle(&mut self, handle: ResourceAny) -> wasmtime::Result<u32> {
        if let Some(rep) = self.free.pop()
            && let Some(slot) = self.handles.get_mut(rep as usize)
        {
            *slot = Some(handle);
            return Ok(rep);
        }
        let rep = u32::try_from(self.handles.len())
            .map_err(|_| wasmtime::format_err!("too many linked resource handles"))?;
        self.handles.push(Some(handle));
        Ok(rep)
    }

    /// Takes the exporter's handle behind proxy `rep` out of the table.
    fn take_handle(&mut self, rep: u32) -> Option<ResourceAny> {
        let handle = self.handles.get_mut(rep as usize)?.take()?;
        self.free.push(rep);
        Some(handle)
    }

    /// The exporter's handle behind proxy `rep`, left in the table.
    fn handle(&self, rep: u32) -> Option<ResourceAny> {
        self.handles.get(rep as usize).copied().flatten()
    }

    /// The proxy payload of `ty` when it is the proxy type of a resource `exporter` defines.
    fn proxy_of(&self, exporter: usize, ty: ResourceType) -> Option<u32> {
        (0..self.resources.len())
            .filter(|&p| self.resources[p].0 == exporter)
            .filter_map(|p| u32::try_from(p).ok())
            .find(|&p| ResourceType::host_dynamic(p) == ty)
    }

    /// The proxy payload for a handle of type `ty` returned by `exporter`, when `ty` is one of
    /// the resource types it hands across.
    fn exported_as(&self, exporter: usize, ty: ResourceType) -> Option<u32> {
        self.resources
            .iter()
            .position(|&(e, t)| e == exporter && t == Some(ty))
            .and_then(|p| u32::try_from(p).ok())
    }

    /// Proxies alive now (handles of exporters held for importers).
    pub fn live_handles(&self) -> usize {
        self.handles.len() - self.free.len()
    }

    /// The size of the proxy table: the most proxies that were alive at once.
    pub fn handle_capacity(&self) -> usize {
        self.handles.len()
    }
}

/// Why components could not be linked at run time.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("{0}")]
    Plan(#[from] PlanError),
    #[error(
        "component `{importer}` imports `{import}` from `{exporter}`, which does not export the \
         resource type `{resource}` in `{export}`"
    )]
    MissingResource {
        importer: String,
        import: String,
        exporter: String,
        export: String,
        resource: String,
    },
    #[error(
        "component `{importer}` imports `{import}` from `{exporter}` as `{kind}`; run-time \
         linking wires only functions, resource types and instances of them (hint: set \
         spec.compose to `auto` or `always` to fuse the components)"
    )]
    Unsupported {
        importer: String,
        import: String,
        exporter: String,
        kind: &'static str,
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
pub fn service_from_image(manifest: &Manifest) -> Result<Option<PlanService>, String> {
    let Some(svc) = &manifest.spec.service else {
        return Ok(None);
    };
    let path = weft_manifest::resolve_image(&svc.image, &manifest.base_dir())
        .map_err(|e| format!("spec.service ({}): image `{}`: {e}", svc.name, svc.image))?;
    let bytes =
        crate::load::read_wasm(&path).map_err(|e| format!("spec.service ({}): {e}", svc.name))?;
    let info = weft_inspect::inspect(&bytes)
        .map_err(|e| format!("spec.service ({}): {}: {e}", svc.name, path.display()))?;
    Ok(Some(PlanService {
        name: svc.name.clone(),
        exports: info.export_names(),
    }))
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
    /// The component's index in the plan.
    index: usize,
    pre: InstancePre<HostState>,
    /// (slot, export) pairs to fill after instantiating this component.
    fills: Vec<(usize, ComponentExportIndex)>,
    /// (proxy payload, resource type export) pairs to record after instantiating it.
    resources: Vec<(u32, ComponentExportIndex)>,
}

/// The dependencies of one root component, pre-instantiated, and the root's linker.
pub struct Linked {
    parts: Vec<Part>,
    /// The exporting component of each linked resource type, by proxy payload.
    owners: Vec<usize>,
}

/// What the importers' links need from the exporters, gathered while building the linkers.
#[derive(Default)]
struct Wiring {
    /// One function slot per (exporter, interface export, function).
    slots: BTreeMap<(usize, String, String), usize>,
    fills: BTreeMap<usize, Vec<(usize, ComponentExportIndex)>>,
    /// One proxy payload per (exporter, interface export, resource type).
    payloads: BTreeMap<(usize, String, String), u32>,
    owners: Vec<usize>,
    resources: BTreeMap<usize, Vec<(u32, ComponentExportIndex)>>,
}

impl Wiring {
    /// The index of `item` in exporter `j`'s export `export` (`export` itself when `item` is
    /// empty).
    fn export_index(
        component: &Component,
        export: &str,
        item: &str,
    ) -> Option<ComponentExportIndex> {
        let outer = component.get_export_index(None, export)?;
        if item.is_empty() {
            Some(outer)
        } else {
            component.get_export_index(Some(&outer), item)
        }
    }

    fn slot(
        &mut self,
        names: &[String],
        components: &[Component],
        j: usize,
        export: &str,
        func: &str,
    ) -> Result<usize, LinkError> {
        let key = (j, export.to_string(), func.to_string());
        if let Some(s) = self.slots.get(&key) {
            return Ok(*s);
        }
        let idx = Self::export_index(&components[j], export, func).ok_or_else(|| {
            LinkError::Wasmtime {
                component: names[j].clone(),
                message: format!("no export `{export}` `{func}`"),
            }
        })?;
        let next = self.slots.len();
        self.slots.insert(key, next);
        self.fills.entry(j).or_default().push((next, idx));
        Ok(next)
    }

    /// The proxy payload of resource type `resource` of exporter `j`'s export `export`.
    fn payload(
        &mut self,
        names: &[String],
        components: &[Component],
        (i, import): (usize, &str),
        (j, export): (usize, &str),
        resource: &str,
    ) -> Result<u32, LinkError> {
        let key = (j, export.to_string(), resource.to_string());
        if let Some(p) = self.payloads.get(&key) {
            return Ok(*p);
        }
        let idx = Self::export_index(&components[j], export, resource).ok_or_else(|| {
            LinkError::MissingResource {
                importer: names[i].clone(),
                import: import.to_string(),
                exporter: names[j].clone(),
                export: export.to_string(),
                resource: resource.to_string(),
            }
        })?;
        let p = u32::try_from(self.owners.len()).map_err(|_| LinkError::Wasmtime {
            component: names[i].clone(),
            message: "too many linked resource types".into(),
        })?;
        self.payloads.insert(key, p);
        self.owners.push(j);
        self.resources.entry(j).or_default().push((p, idx));
        Ok(p)
    }
}

/// The resource types a component's imported instances introduce, each with the first
/// (import, name) that names it; later names of the same type are `eq` aliases (a `use` of
/// another interface's resource), which the linker need not and must not define again.
fn introduced_resources(
    engine: &Engine,
    component: &Component,
) -> Vec<(String, String, ResourceType)> {
    let mut out: Vec<(String, String, ResourceType)> = Vec::new();
    for (import, item) in component.component_type().imports(engine) {
        let ComponentItem::ComponentInstance(inst) = item.ty else {
            continue;
        };
        for (name, item) in inst.exports(engine) {
            if let ComponentItem::Resource(ty) = item.ty
                && !out.iter().any(|(_, _, t)| *t == ty)
            {
                out.push((import.to_string(), name.to_string(), ty));
            }
        }
    }
    out
}

/// What an import is, for errors.
fn item_kind(item: &ComponentItem) -> &'static str {
    match item {
        ComponentItem::ComponentFunc(_) => "a function",
        ComponentItem::CoreFunc(_) => "a core function",
        ComponentItem::Module(_) => "a core module",
        ComponentItem::Component(_) => "a component",
        ComponentItem::ComponentInstance(_) => "a nested instance",
        ComponentItem::Type(_) => "a type",
        ComponentItem::Resource(_) => "a resource type outside an interface",
    }
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
        let mut wiring = Wiring::default();
        let mut linkers: BTreeMap<usize, Linker<HostState>> = BTreeMap::new();
        for &i in &order {
            let mut linker = base.clone();
            linker.allow_shadowing(true);
            let wasm_err = |message: String| LinkError::Wasmtime {
                component: names[i].clone(),
                message,
            };
            let ty = components[i].component_type();
            let introduced = introduced_resources(engine, &components[i]);
            for r in &plan.resolutions[i] {
                let Provider::Component { index: j, export } = &r.provider else {
                    continue;
                };
                let j = *j;
                let Some(import) = ty.get_import(engine, &r.import) else {
                    continue;
                };
                let unsupported = |item: &ComponentItem| LinkError::Unsupported {
                    importer: names[i].clone(),
                    import: r.import.clone(),
                    exporter: names[j].clone(),
                    kind: item_kind(item),
                };
                match import.ty {
                    ComponentItem::ComponentFunc(f) => {
                        let slot = wiring.slot(names, components, j, export, "")?;
                        forward(&mut linker.root(), &r.import, slot, j, crosses_handles(&f))
                            .map_err(|e| wasm_err(format!("{e:#}")))?;
                    }
                    ComponentItem::ComponentInstance(inst_ty) => {
                        let mut inst = linker
                            .instance(&r.import)
                            .map_err(|e| wasm_err(format!("{e:#}")))?;
                        for (name, item) in inst_ty.exports(engine) {
                            match item.ty {
                                ComponentItem::ComponentFunc(f) => {
                                    let slot = wiring.slot(names, components, j, export, name)?;
                                    forward(&mut inst, name, slot, j, crosses_handles(&f))
                                        .map_err(|e| wasm_err(format!("{e:#}")))?;
                                }
                                ComponentItem::Resource(rty) => {
                                    let first = introduced.iter().find(|(_, _, t)| *t == rty);
                                    if first.is_some_and(|(imp, n, _)| {
                                        (imp.as_str(), n.as_str()) != (r.import.as_str(), name)
                                    }) {
                                        continue;
                                    }
                                    let p = wiring.payload(
                                        names,
                                        components,
                                        (i, &r.import),
                                        (j, export),
                                        name,
                                    )?;
                                    define_proxy(&mut inst, name, p)
                                        .map_err(|e| wasm_err(format!("{e:#}")))?;
                                }
                                ComponentItem::Type(_) => {}
                                other => return Err(unsupported(&other)),
                            }
                        }
                    }
                    ComponentItem::Type(_) => {}
                    other => return Err(unsupported(&other)),
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
                index: i,
                pre,
                fills: wiring.fills.remove(&i).unwrap_or_default(),
                resources: wiring.resources.remove(&i).unwrap_or_default(),
            });
        }
        let root_linker = root_linker.ok_or_else(|| LinkError::Wasmtime {
            component: names.get(root).cloned().unwrap_or_default(),
            message: "the root component is not part of the plan".into(),
        })?;
        Ok((
            Linked {
                parts,
                owners: wiring.owners,
            },
            root_linker,
        ))
    }

    /// Whether the root imports nothing from other components.
    pub fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }

    /// Instantiates the dependencies into `store` and fills its link slots. Call before
    /// instantiating the root.
    pub async fn instantiate(&self, store: &mut Store<HostState>) -> wasmtime::Result<()> {
        store.data_mut().links.resources = self.owners.iter().map(|&j| (j, None)).collect();
        for part in &self.parts {
            let instance = part.pre.instantiate_async(&mut *store).await?;
            for (slot, idx) in &part.fills {
                let func = instance
                    .get_func(&mut *store, idx)
                    .ok_or_else(|| wasmtime::format_err!("linked export is not a function"))?;
                store.data_mut().links.set(*slot, func);
            }
            for (p, idx) in &part.resources {
                let ty = instance
                    .get_resource(&mut *store, idx)
                    .ok_or_else(|| wasmtime::format_err!("linked export is not a resource"))?;
                let entry = store.data_mut().links.resources.get_mut(*p as usize);
                match entry {
                    Some(entry) if entry.0 == part.index => entry.1 = Some(ty),
                    _ => wasmtime::bail!("linked resource {p} is not wired"),
                }
            }
        }
        Ok(())
    }
}

/// Whether values of a function's parameters or results may hold resource handles.
fn crosses_handles(func: &ComponentFunc) -> bool {
    func.params().any(|(_, t)| holds_handles(&t)) || func.results().any(|t| holds_handles(&t))
}

fn holds_handles(ty: &Type) -> bool {
    match ty {
        Type::Own(_) | Type::Borrow(_) => true,
        Type::List(l) => holds_handles(&l.ty()),
        Type::FixedLengthList(l) => holds_handles(&l.ty()),
        Type::Map(m) => holds_handles(&m.key()) || holds_handles(&m.value()),
        Type::Record(r) => r.fields().any(|f| holds_handles(&f.ty)),
        Type::Tuple(t) => t.types().any(|t| holds_handles(&t)),
        Type::Variant(v) => v.cases().any(|c| c.ty.is_some_and(|t| holds_handles(&t))),
        Type::Option(o) => holds_handles(&o.ty()),
        Type::Result(r) => {
            r.ok().is_some_and(|t| holds_handles(&t)) || r.err().is_some_and(|t| holds_handles(&t))
        }
        _ => false,
    }
}

/// Calls `f` on every resource handle in `val`.
fn each_handle(
    val: &mut Val,
    f: &mut dyn FnMut(&mut ResourceAny) -> wasmtime::Result<()>,
) -> wasmtime::Result<()> {
    match val {
        Val::Resource(r) => f(r),
        Val::List(vs) | Val::Tuple(vs) | Val::FixedLengthList(vs) => {
            vs.iter_mut().try_for_each(|v| each_handle(v, f))
        }
        Val::Map(kvs) => kvs.iter_mut().try_for_each(|(k, v)| {
            each_handle(k, f)?;
            each_handle(v, f)
        }),
        Val::Record(fields) => fields.iter_mut().try_for_each(|(_, v)| each_handle(v, f)),
        Val::Variant(_, Some(v))
        | Val::Option(Some(v))
        | Val::Result(Ok(Some(v)) | Err(Some(v))) => each_handle(v, f),
        _ => Ok(()),
    }
}

/// Importer -> exporter: a proxy of a resource `exporter` defines becomes the exporter's handle
/// (an `own` proxy hands the handle over and leaves the table; a `borrow` leaves it there).
fn unwrap_proxy(
    store: &mut StoreContextMut<'_, HostState>,
    exporter: usize,
    handle: &mut ResourceAny,
) -> wasmtime::Result<()> {
    if store.data().links.proxy_of(exporter, handle.ty()).is_none() {
        // A host resource, or a proxy the callee knows by the same type: it crosses as is.
        return Ok(());
    }
    let owned = handle.owned();
    let rep = ResourceDynamic::try_from_resource_any(*handle, &mut *store)?.rep();
    let links = &mut store.data_mut().links;
    let target = if owned {
        links.take_handle(rep)
    } else {
        links.handle(rep)
    };
    *handle = target.ok_or_else(|| {
        wasmtime::format_err!("linked resource handle {rep} was already dropped or handed over")
    })?;
    Ok(())
}

/// Exporter -> importer: an owned handle of a resource type `exporter` hands across becomes a
/// new proxy, whose rep indexes the table holding the handle.
fn wrap_handle(
    store: &mut StoreContextMut<'_, HostState>,
    exporter: usize,
    handle: &mut ResourceAny,
) -> wasmtime::Result<()> {
    if !handle.owned() {
        return Ok(());
    }
    let Some(p) = store.data().links.exported_as(exporter, handle.ty()) else {
        return Ok(());
    };
    let rep = store.data_mut().links.insert_handle(*handle)?;
    *handle = ResourceDynamic::new_own(rep, p).try_into_resource_any(&mut *store)?;
    Ok(())
}

/// Defines resource type `name` in `inst` as the proxy type with payload `p`. Dropping a proxy
/// drops the exporter's handle behind it, which runs the exporter's destructor.
fn define_proxy(
    inst: &mut LinkerInstance<'_, HostState>,
    name: &str,
    p: u32,
) -> wasmtime::Result<()> {
    inst.resource_async(name, ResourceType::host_dynamic(p), |mut store, rep| {
        Box::new(async move {
            let handle = store.data_mut().links.take_handle(rep).ok_or_else(|| {
                wasmtime::format_err!("linked resource handle {rep} was already dropped")
            })?;
            handle.resource_drop_async(&mut store).await
        })
    })
}

/// Defines `name` in `inst` as a function that calls the function in link slot `slot`, which
/// component `exporter` exports; when its values may hold handles (`handles`), proxies are
/// translated on the way in and out.
///
/// The nested `call_async` into the exporting instance is only allowed in stores without
/// component-model concurrency (inside a concurrent store's event loop it would be a recursive
/// `run_concurrent`), so run-time linked components run on an engine built with
/// `EngineOptions::no_concurrency` (see [`linking_engine`]).
fn forward(
    inst: &mut LinkerInstance<'_, HostState>,
    name: &str,
    slot: usize,
    exporter: usize,
    handles: bool,
) -> wasmtime::Result<()> {
    inst.func_new_async(name, move |mut store, _ty, params, results| {
        Box::new(async move {
            let func = store
                .data()
                .links
                .get(slot)
                .ok_or_else(|| wasmtime::format_err!("linked function {slot} is not wired"))?;
            if !handles {
                return func.call_async(&mut store, params, results).await;
            }
            let mut args = params.to_vec();
            for arg in &mut args {
                each_handle(arg, &mut |h| unwrap_proxy(&mut store, exporter, h))?;
            }
            func.call_async(&mut store, &args, results).await?;
            for result in results.iter_mut() {
                each_handle(result, &mut |h| wrap_handle(&mut store, exporter, h))?;
            }
            Ok(())
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
        limits: crate::limit::Limiter::new(wasmtime::StoreLimits::default(), None),
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
    let service = service_from_image(manifest).map_err(setup)?;
    let plan = plan_manifest(manifest, &loaded.plan_components, service.as_ref())
        .map_err(|e| setup(format!("spec.components: {e}")))?;
    let names: Vec<String> = loaded.infos.iter().map(|c| c.name.clone()).collect();
    let e = engine.engine();
    let root = invoke_root(e, &names, &loaded.compiled, &plan, call.name()).map_err(setup)?;
    // The service runs only under `weft up`: a call that needs it cannot be made here.
    for i in needed_by(&plan, root) {
        if let Some(r) = plan.resolutions[i]
            .iter()
            .find(|r| matches!(r.provider, Provider::Service { .. }))
        {
            return Err(setup(format!(
                "component `{}` imports `{}` from the workload's service `{}`, which `weft run \
                 MANIFEST --invoke` does not start (hint: deploy the workload with `weft up` \
                 and call it through a component that serves HTTP)",
                names[i],
                r.import,
                service
                    .as_ref()
                    .map(|s| s.name.as_str())
                    .unwrap_or_default()
            )));
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn fixture(name: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/wat")
            .join(name)
    }

    /// `consumer` linked at run time to `provider` (the counter fixtures), in one fresh store.
    async fn counters() -> (Store<HostState>, wasmtime::component::Instance) {
        let engine = linking_engine().expect("engine");
        let e = engine.engine();
        let names = vec!["consumer".to_string(), "provider".to_string()];
        let components: Vec<Component> = ["counter-consumer.wat", "counter-provider.wat"]
            .iter()
            .map(|f| Component::from_file(e, fixture(f)).expect("fixture"))
            .collect();
        let parts: Vec<_> = names
            .iter()
            .zip(&components)
            .map(|(n, c)| plan_component(e, n, c))
            .collect();
        let plan = weft_inspect::plan(&parts, &[], &BTreeMap::new()).expect("plan");
        let base = base_linker_p2(e).expect("base linker");
        let wired = Wired::new(e, &base, &names, &components, &plan, 0).expect("wire");
        let mut store = plain_store(e);
        let instance = wired.instantiate(&mut store).await.expect("instantiate");
        (store, instance)
    }

    /// Calls export `name` of `instance` with u32 arguments; its results, u32s flattened out
    /// of a tuple or a result.
    async fn call(
        store: &mut Store<HostState>,
        instance: &wasmtime::component::Instance,
        name: &str,
        args: &[u32],
    ) -> Vec<u32> {
        let func = instance.get_func(&mut *store, name).expect(name);
        let params: Vec<Val> = args.iter().map(|&a| Val::U32(a)).collect();
        let mut results = vec![Val::Bool(false)];
        func.call_async(&mut *store, &params, &mut results)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e:?}"));
        let flat = |v: &Val| match v {
            Val::U32(n) => *n,
            other => panic!("{name}: not a u32: {other:?}"),
        };
        match &results[0] {
            Val::Tuple(vs) => vs.iter().map(flat).collect(),
            Val::Result(Ok(Some(v))) => vec![0, flat(v)],
            Val::Result(Err(Some(v))) => vec![1, flat(v)],
            v => vec![flat(v)],
        }
    }

    #[tokio::test]
    async fn provider_resources_cross_by_identity_and_each_drop_runs_the_destructor_once() {
        let (mut store, inst) = counters().await;
        // Made with 5, bumped by 3, handed to the provider and back (own), read through a
        // borrow (8: the state the constructor and the first bump set), bumped again, handed
        // over for good: the provider drops it, nothing stays alive.
        assert_eq!(
            call(&mut store, &inst, "handoff", &[5, 3]).await,
            [8, 11, 0]
        );
        assert_eq!(store.data().links.live_handles(), 0);
        assert_eq!(call(&mut store, &inst, "run", &[5, 3]).await, [11]);
        // Destructor runs so far: finish (1) + run (1), then one per counter churn drops.
        assert_eq!(call(&mut store, &inst, "churn", &[7]).await, [9, 0]);
        // Handles nested in a list and in a result become proxies too.
        assert_eq!(call(&mut store, &inst, "many", &[4, 10]).await, [46, 4, 0]);
        assert_eq!(call(&mut store, &inst, "attempt", &[7]).await, [0, 7]);
        assert_eq!(call(&mut store, &inst, "attempt", &[0]).await, [1, 42]);
        assert_eq!(call(&mut store, &inst, "churn", &[0]).await, [9 + 4 + 1, 0]);
        assert_eq!(store.data().links.live_handles(), 0);
    }

    #[tokio::test]
    async fn dropping_handles_in_a_loop_does_not_grow_the_proxy_table() {
        let (mut store, inst) = counters().await;
        assert_eq!(call(&mut store, &inst, "churn", &[2000]).await, [2000, 0]);
        assert_eq!(store.data().links.handle_capacity(), 1);
        // 50 alive at once need 50 entries, and churning afterwards reuses them.
        assert_eq!(call(&mut store, &inst, "many", &[50, 0]).await[1], 50);
        assert_eq!(store.data().links.handle_capacity(), 50);
        assert_eq!(call(&mut store, &inst, "churn", &[2000]).await, [4050, 0]);
        assert_eq!(store.data().links.handle_capacity(), 50);
        assert_eq!(store.data().links.live_handles(), 0);
    }

    #[test]
    fn proxy_types_are_told_apart_by_exporter_and_resource() {
        // Payloads 0 and 1: two resource types of exporter 1; payload 2: one of exporter 2.
        let slots = LinkSlots {
            resources: vec![(1, None), (1, None), (2, None)],
            ..Default::default()
        };
        assert_eq!(slots.proxy_of(1, ResourceType::host_dynamic(0)), Some(0));
        assert_eq!(slots.proxy_of(1, ResourceType::host_dynamic(1)), Some(1));
        // Exporter 1 is not handed exporter 2's proxies: they cross unchanged.
        assert_eq!(slots.proxy_of(1, ResourceType::host_dynamic(2)), None);
        assert_eq!(slots.proxy_of(2, ResourceType::host_dynamic(2)), Some(2));
        assert_eq!(slots.proxy_of(1, ResourceType::host::<u32>()), None);
        // Not instantiated yet: nothing is taken for an exporter's type.
        assert_eq!(slots.exported_as(1, ResourceType::host::<u32>()), None);
        // Unknown reps are refused, not mistaken for handles.
        let mut slots = slots;
        assert!(slots.take_handle(0).is_none());
        assert!(slots.handle(7).is_none());
        assert_eq!(slots.live_handles(), 0);
    }
}
