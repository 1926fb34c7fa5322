//! The store: the per-store host state of each kind of run, and the one place that knows what
//! it is made of. Every host interface is written against a small view trait (wasmtime-wasi's
//! `WasiView`, wasmtime-wasi-http's `WasiHttpView`, [`NetView`], [`PluginView`],
//! [`LinkView`]); the store types here implement the views, so no capability module names a
//! store type (the hand-written equivalent of Spin's `RuntimeFactors`). Adding a host
//! interface adds a field here and, when it needs one, a view impl.

use wasmtime::component::ResourceTable;
use wasmtime::{Engine, Store, StoreLimits};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use weft_engine::limit::Limiter;
use weft_interfaces::link_slots::{LinkSlots, LinkView};
use weft_interfaces::net::{NetStore, NetView};
pub use weft_interfaces::outbound::OutgoingHttp;
use weft_interfaces::p3client::HasOutgoing;
use weft_interfaces::plugins::{PluginCtx, PluginInstances, PluginView};
use weft_interfaces::wasi::WasiGrants;
use weft_policy::allow::AllowedHosts;

/// Store data for `weft run`: WASI for components (preview 1 modules run as components through
/// the preview 1 adapter, see `load.rs`), plus outgoing wasi:http behind the allow-list.
pub struct CliRunState {
    pub wasi: WasiCtx,
    pub table: ResourceTable,
    pub http: WasiHttpCtx,
    pub hooks: OutgoingHttp,
    pub limits: StoreLimits,
}

impl WasiView for CliRunState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for CliRunState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            hooks: &mut self.hooks,
            table: &mut self.table,
            ctx: &mut self.http,
        }
    }
}

/// Store data for HTTP handlers, workload components and the service: WASI, wasi:http,
/// limits, and one field per host interface.
pub struct HostState {
    pub table: ResourceTable,
    pub wasi: WasiCtx,
    pub http: WasiHttpCtx,
    pub hooks: OutgoingHttp,
    pub limits: Limiter,
    /// The bound plugins' per-instance state (`plugins/`).
    pub plugins: PluginInstances,
    /// This store's half of the socket policy (see `net/`).
    pub net: NetStore,
    /// Functions of other components of the workload that this store's imports forward to.
    pub links: LinkSlots,
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for HostState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            hooks: &mut self.hooks,
            table: &mut self.table,
            ctx: &mut self.http,
        }
    }
}

impl HasOutgoing for HostState {
    fn outgoing(&self) -> &OutgoingHttp {
        &self.hooks
    }
}

impl HasOutgoing for CliRunState {
    fn outgoing(&self) -> &OutgoingHttp {
        &self.hooks
    }
}

impl NetView for HostState {
    fn net(&self) -> &NetStore {
        &self.net
    }
}

impl PluginView for HostState {
    fn plugins(&mut self) -> PluginCtx<'_> {
        PluginCtx {
            instances: &self.plugins,
            table: &mut self.table,
            tracer: self.hooks.tracer.as_ref(),
            stats: self.limits.stats(),
        }
    }
}

impl LinkView for HostState {
    fn links(&mut self) -> &mut LinkSlots {
        &mut self.links
    }
}

impl HostState {
    /// A store for one workload or served instance: the grants applied to `builder` (which
    /// already has its stdio), a resource table capped at `max_resources`, the grants' store
    /// limits, and epoch yielding (the deadline is the caller's).
    pub fn new_store(
        engine: &Engine,
        mut builder: WasiCtxBuilder,
        grants: &WasiGrants,
        hooks: OutgoingHttp,
        plugins: PluginInstances,
        max_resources: usize,
    ) -> wasmtime::Result<Store<HostState>> {
        let net = grants.apply(&mut builder)?;
        let mut table = ResourceTable::new();
        table.set_max_capacity(max_resources);
        let state = HostState {
            table,
            wasi: builder.build(),
            http: WasiHttpCtx::new(),
            hooks,
            limits: grants.limiter(),
            plugins,
            net,
            links: Default::default(),
        };
        let mut store = Store::new(engine, state);
        store.limiter_async(|s| &mut s.limits);
        yield_at_every_tick(&mut store);
        Ok(store)
    }
}

/// A store for calling a workload's functions outside HTTP (`weft run MANIFEST --invoke`, the
/// benchmarks): no grants beyond the base WASI handles, stdio inherited, no plugins.
pub fn plain_store(engine: &Engine) -> Store<HostState> {
    let mut builder = WasiCtxBuilder::new();
    builder.inherit_stdout().inherit_stderr();
    let state = HostState {
        table: ResourceTable::new(),
        wasi: builder.build(),
        http: WasiHttpCtx::new(),
        hooks: OutgoingHttp::new(AllowedHosts::deny_all()),
        limits: Limiter::new(StoreLimits::default(), None),
        plugins: Default::default(),
        net: NetStore::unrestricted(),
        links: LinkSlots::default(),
    };
    let mut store = Store::new(engine, state);
    yield_at_every_tick(&mut store);
    store
}

/// Makes `store` yield to the executor at every epoch tick (`weft_engine::EPOCH_TICK`), through
/// tokio's `yield_now`. That one wakes the task only after the runtime has polled its I/O
/// driver and timers; wasmtime's plain yield wakes it at once, and a single-threaded runtime
/// (`weft serve`'s serving threads) then polls its driver only every 61 task polls: a spinning
/// guest would keep the connections on its thread from being read, and new ones from being
/// accepted, for 0.6 s at a time. Needs the async entry points (as every call here uses).
pub fn yield_at_every_tick<T: 'static>(store: &mut Store<T>) {
    // Marks the store async-only; the callback below replaces its yield.
    store.epoch_deadline_async_yield_and_update(1);
    store.epoch_deadline_callback(|_| {
        Ok(wasmtime::UpdateDeadline::YieldCustom(
            1,
            Box::pin(tokio::task::yield_now()),
        ))
    });
}
