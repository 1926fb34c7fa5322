//! Link slots: how one component of a workload calls another in the same store at run time
//! (the host side of `docs/linking.md`; the planning and wiring live in `link.rs`).
//!
//! Every function a component imports from another component is a forwarding host function
//! ([`forward`]) that reads the exporter's function from the store's [`LinkSlots`] and calls
//! it. Values cross as `Val`s: plain data is copied out of the caller and into the callee;
//! handles of host resources (wasi:http requests, streams) keep their identity. A resource type
//! an exporter defines is, in each importer's linker, a host resource type of its own
//! ([`ResourceType::host_dynamic`], one payload per exporter, interface and resource:
//! [`define_proxy`]), whose rep indexes the store's table of the exporter's handles. Forwarders
//! translate in both directions: a proxy handed to its exporter becomes the exporter's handle
//! again (an `own` moves out of the table, a `borrow` leaves it there), and a handle the
//! exporter returns becomes a new proxy, wherever it sits in the value (lists, records,
//! options, results, variants, tuples). Dropping a proxy drops the exporter's handle, so the
//! exporter's destructor runs once.
//!
//! The store type implements [`LinkView`]; nothing here names it.

use wasmtime::StoreContextMut;
use wasmtime::component::{
    Func, LinkerInstance, ResourceAny, ResourceDynamic, ResourceType, Val,
    types::{ComponentFunc, Type},
};

/// What the forwarders need from a store: its link slots.
pub trait LinkView: Send {
    fn links(&mut self) -> &mut LinkSlots;
}

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

    /// Puts the exporter's function for link slot `slot` (run-time linking fills the slots
    /// right after instantiating each exporter).
    pub fn set(&mut self, slot: usize, func: Func) {
        if self.funcs.len() <= slot {
            self.funcs.resize(slot + 1, None);
        }
        self.funcs[slot] = Some(func);
    }

    /// Starts a store's wiring: one linked resource type per proxy payload, each exported by the
    /// component at the same index of `owners`, none instantiated yet.
    pub fn expect_resources(&mut self, owners: &[usize]) {
        self.resources = owners.iter().map(|&j| (j, None)).collect();
    }

    /// Records the run-time type of linked resource `payload` once `exporter` is instantiated.
    pub fn record_resource(
        &mut self,
        payload: u32,
        exporter: usize,
        ty: ResourceType,
    ) -> wasmtime::Result<()> {
        match self.resources.get_mut(payload as usize) {
            Some(entry) if entry.0 == exporter => {
                entry.1 = Some(ty);
                Ok(())
            }
            _ => wasmtime::bail!("linked resource {payload} is not wired"),
        }
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

/// Whether values of a function's parameters or results may hold resource handles.
pub fn crosses_handles(func: &ComponentFunc) -> bool {
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
fn unwrap_proxy<T: LinkView>(
    store: &mut StoreContextMut<'_, T>,
    exporter: usize,
    handle: &mut ResourceAny,
) -> wasmtime::Result<()> {
    if store
        .data_mut()
        .links()
        .proxy_of(exporter, handle.ty())
        .is_none()
    {
        // A host resource, or a proxy the callee knows by the same type: it crosses as is.
        return Ok(());
    }
    let owned = handle.owned();
    let rep = ResourceDynamic::try_from_resource_any(*handle, &mut *store)?.rep();
    let links = store.data_mut().links();
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
fn wrap_handle<T: LinkView>(
    store: &mut StoreContextMut<'_, T>,
    exporter: usize,
    handle: &mut ResourceAny,
) -> wasmtime::Result<()> {
    if !handle.owned() {
        return Ok(());
    }
    let Some(p) = store.data_mut().links().exported_as(exporter, handle.ty()) else {
        return Ok(());
    };
    let rep = store.data_mut().links().insert_handle(*handle)?;
    *handle = ResourceDynamic::new_own(rep, p).try_into_resource_any(&mut *store)?;
    Ok(())
}

/// Defines resource type `name` in `inst` as the proxy type with payload `p`. Dropping a proxy
/// drops the exporter's handle behind it, which runs the exporter's destructor.
pub fn define_proxy<T: LinkView + 'static>(
    inst: &mut LinkerInstance<'_, T>,
    name: &str,
    p: u32,
) -> wasmtime::Result<()> {
    inst.resource_async(name, ResourceType::host_dynamic(p), |mut store, rep| {
        Box::new(async move {
            let handle = store.data_mut().links().take_handle(rep).ok_or_else(|| {
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
/// `EngineOptions::no_concurrency` (see `link::linking_engine`).
pub fn forward<T: LinkView + 'static>(
    inst: &mut LinkerInstance<'_, T>,
    name: &str,
    slot: usize,
    exporter: usize,
    handles: bool,
) -> wasmtime::Result<()> {
    inst.func_new_async(name, move |mut store, _ty, params, results| {
        Box::new(async move {
            let func = store
                .data_mut()
                .links()
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

#[cfg(test)]
mod tests {
    use super::*;

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
