//! Calls from a component into the workload's service (docs/linking.md, "The service as a
//! provider"): what one forwarded call costs.
//!
//! - `forwarded`: `svc-get-loop.wat`'s `get-n(1000)`: 1000 calls of the imported
//!   `example:svc/counter@0.1.0#get`, each a host function in the caller's store that sends the
//!   call over the service's channel and awaits the reply, while the service (`svc-store.wasm`,
//!   a real WASI 0.3 service, in its own store) runs it as a concurrent task;
//! - `host`: 1000 calls of the same function straight from the host (`ServiceCalls::call`), so
//!   the difference is the caller's side (lowering, the host function, lifting).
//!
//! Needs the guest fixtures (`bash tests/fixtures/build-guests.sh DIR`, `WEFT_GUESTS_DIR=DIR`):
//!
//! ```sh
//! WEFT_GUESTS_DIR=$HOME/.cache/weft/guests \
//!   cargo bench -p weft-runtime --bench service_calls -- --warm-up-time 2 --measurement-time 5
//! ```
//!
//! Results: docs/linking.md ("Cost").

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use wasmtime::component::{Component, Val};
use weft_runtime::engine::{EngineOptions, WeftEngine};
use weft_runtime::service::{ServiceHandle, ServiceSpec};
use weft_runtime::svccall::ServiceImports;

const CALLS: u32 = 1000;
const COUNTER: &str = "example:svc/counter@0.1.0";

fn bench(c: &mut Criterion) {
    let guests = std::env::var_os("WEFT_GUESTS_DIR")
        .map(PathBuf::from)
        .expect("set WEFT_GUESTS_DIR to the built guest fixtures (tests/fixtures/build-guests.sh)");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let _guard = rt.enter();
    let engine = WeftEngine::new(&EngineOptions::default()).expect("engine");
    let e = engine.engine();
    let service = Component::from_file(e, guests.join("svc-store.wasm")).expect("svc-store");
    let spec = ServiceSpec {
        name: "store".into(),
        grants: Default::default(),
        outgoing: weft_runtime::state::OutgoingHttp::new(
            weft_runtime::allow::AllowedHosts::deny_all(),
        ),
        plugins: Default::default(),
        logs: weft_runtime::logs::LogSink::new("bench"),
        max_restarts: 0,
        max_resources: weft_runtime::limit::DEFAULT_MAX_RESOURCES,
        front: None,
        max_concurrency: 1,
        workload: "default/bench".into(),
        traces: None,
    };
    let handle = ServiceHandle::start(e, &service, spec, weft_runtime::net::VirtualNet::new())
        .expect("start service");
    rt.block_on(handle.ready()).expect("service ready");
    let calls = Arc::clone(handle.calls());

    let caller_path = std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
    )
    .join("../../tests/fixtures/wat/svc-get-loop.wat");
    let caller = Component::from_file(e, caller_path).expect("caller");
    let mut linker = weft_runtime::link::base_linker(e).expect("linker");
    ServiceImports {
        calls: Arc::clone(&calls),
        imports: vec![(COUNTER.into(), COUNTER.into())],
        timeout: Duration::from_secs(10),
        logs: None,
    }
    .add_to_linker(e, &mut linker, &caller, "caller")
    .expect("forwarders");
    let pre = linker.instantiate_pre(&caller).expect("pre");
    let mut store = weft_runtime::link::plain_store(e);
    let instance = rt
        .block_on(pre.instantiate_async(&mut store))
        .expect("instantiate");
    let get_n = instance.get_func(&mut store, "get-n").expect("get-n");
    let slot = calls.slot(COUNTER, "get").expect("slot");

    let mut group = c.benchmark_group("service-call");
    group.throughput(Throughput::Elements(u64::from(CALLS)));
    group.bench_function("forwarded", |b| {
        b.iter(|| {
            let mut results = [Val::Bool(false)];
            rt.block_on(get_n.call_async(&mut store, &[Val::U32(CALLS)], &mut results))
                .expect("get-n");
        })
    });
    group.bench_function("host", |b| {
        b.iter(|| {
            rt.block_on(async {
                for _ in 0..CALLS {
                    calls
                        .call(slot, Vec::new(), Duration::from_secs(10))
                        .await
                        .expect("get");
                }
            })
        })
    });
    group.finish();
    handle.stop();
}

criterion_group!(benches, bench);
criterion_main!(benches);
