//! Per-store host state: one struct per kind of run, each owning its WASI context and
//! resource table. Plugins (later) add fields here, reached through projection functions.

use std::sync::Arc;

use wasmtime::StoreLimits;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::allow::AllowedHosts;
use crate::outbound::Outbound;

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

/// Store data for HTTP handlers and workload components: WASI, wasi:http, limits, and one
/// typed field per host plugin (`plugins`).
pub struct HostState {
    pub table: ResourceTable,
    pub wasi: WasiCtx,
    pub http: WasiHttpCtx,
    pub hooks: OutgoingHttp,
    pub limits: crate::limit::Limiter,
    pub plugins: crate::plugins::PluginInstances,
    /// This store's half of the socket policy (see `net.rs`).
    pub net: crate::net::NetStore,
    /// Functions of other components of the workload that this store's imports forward to.
    pub links: crate::link::LinkSlots,
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

/// Outgoing HTTP policy: every request a guest sends is checked against the allow-list
/// before any DNS lookup or connection, then sent through the component's pooled client
/// (which checks the resolved addresses too, see `outbound.rs`).
#[derive(Clone)]
pub struct OutgoingHttp {
    pub outbound: Arc<Outbound>,
}

impl OutgoingHttp {
    pub fn new(allowed: AllowedHosts) -> Self {
        OutgoingHttp {
            outbound: Arc::new(Outbound::new(Arc::new(allowed))),
        }
    }
}

impl wasmtime_wasi_http::WasiHttpHooks for OutgoingHttp {
    fn send_request(
        &mut self,
        request: http::Request<wasmtime_wasi_http::WasiBody>,
        options: Option<wasmtime_wasi_http::RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
    ) -> Box<
        dyn Future<
                Output = Result<
                    (
                        http::Response<wasmtime_wasi_http::WasiBody>,
                        Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
                    ),
                    wasmtime_wasi_http::Error,
                >,
            > + Send,
    > {
        drop(fut);
        if !self.outbound.allowed().allows_uri(request.uri()) {
            let uri = request.uri().clone();
            tracing::warn!(
                %uri,
                "outgoing HTTP request denied: no allowed host matches (grant it with --allow-host HOST:PORT)"
            );
            return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) });
        }
        let outbound = Arc::clone(&self.outbound);
        Box::new(async move {
            let response = outbound.send(request, options).await?;
            Ok((
                response,
                Box::new(async { Ok(()) }) as Box<dyn Future<Output = _> + Send>,
            ))
        })
    }
}

impl HostState {
    /// A store for one workload or served instance: the grants applied to `builder` (which
    /// already has its stdio), a resource table capped at `max_resources`, the grants' store
    /// limits, and epoch yielding (the deadline is the caller's).
    pub fn new_store(
        engine: &wasmtime::Engine,
        mut builder: wasmtime_wasi::WasiCtxBuilder,
        grants: &crate::wasi::WasiGrants,
        hooks: OutgoingHttp,
        plugins: crate::plugins::PluginInstances,
        max_resources: usize,
    ) -> wasmtime::Result<wasmtime::Store<HostState>> {
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
        let mut store = wasmtime::Store::new(engine, state);
        store.limiter_async(|s| &mut s.limits);
        store.epoch_deadline_async_yield_and_update(1);
        Ok(store)
    }
}
