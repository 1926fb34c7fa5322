//! Run-time linking of a workload's components (see `docs/linking.md`).
//!
//! The pure planner in `weft-inspect` decides who satisfies each import (`plan.rs` asks it);
//! this module wires the plan into wasmtime. Every component gets its own linker: the
//! workload's host linker plus, for each import another component satisfies, one forwarding
//! host function per function of the imported interface, and one proxy resource type per
//! resource type the exporter hands across (both from `link_slots.rs`, which also says how
//! values and handles cross). All components of one request live in the same `Store`: the
//! exporters are instantiated first (in plan order) and their functions are put into the
//! store's [`LinkSlots`], which the forwarders read to call across.

use std::collections::BTreeMap;

use wasmtime::component::{
    Component, ComponentExportIndex, InstancePre, Linker, ResourceType, types::ComponentItem,
};
use wasmtime::{Engine, Store};
use weft_inspect::{LinkPlan, PlanError, Provider};

use crate::plan::needed_by;
/// Planning moved to `plan.rs`; these names stay here for existing callers.
pub use crate::plan::{host_prefixes, plan_component, plan_manifest, service_from_image};
use crate::state::HostState;
pub use weft_interfaces::link_slots::LinkSlots;
use weft_interfaces::link_slots::{crosses_handles, define_proxy, forward};

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
        store.data_mut().links.expect_resources(&self.owners);
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
                store.data_mut().links.record_resource(*p, part.index, ty)?;
            }
        }
        Ok(())
    }
}

/// An engine for run-time linked components: on-demand allocation, no component-model
/// concurrency (so no WASI 0.3 components).
pub fn linking_engine() -> wasmtime::Result<weft_engine::engine::WeftEngine> {
    weft_engine::engine::WeftEngine::new(&weft_engine::engine::EngineOptions {
        allocator: weft_engine::engine::AllocatorChoice::OnDemand,
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

pub use crate::state::plain_store;

/// A linker with the host interfaces a workload's components may import outside HTTP serving.
pub fn base_linker(engine: &Engine) -> wasmtime::Result<Linker<HostState>> {
    let mut linker = Linker::new(engine);
    weft_interfaces::wasi::add_to_linker(&mut linker)?;
    Ok(linker)
}

/// The WASI 0.2 part of [`base_linker`], for the linking engine (which has no WASI 0.3).
pub fn base_linker_p2(engine: &Engine) -> wasmtime::Result<Linker<HostState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    Ok(linker)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::plan_component;
    use std::path::PathBuf;
    use wasmtime::component::Val;

    fn fixture(name: &str) -> PathBuf {
        std::path::PathBuf::from(
            std::env::var_os("CARGO_MANIFEST_DIR")
                .unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
        )
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
}
