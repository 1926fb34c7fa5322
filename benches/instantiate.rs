//! Criterion benches of the hot path, each side by side with its baseline:
//! - `instantiate/{pooling,on-demand}`: instantiate a small component from its `InstancePre`,
//!   with the baseline `instantiate/wasmtime-default-pooling` (wasmtime's default pooling
//!   config, no epoch interruption: what `wasmtime serve` uses without `--timeout`);
//! - `handle/hello-p2/{pooling,on-demand}`: one full wasi:http request through `HttpService`
//!   (fresh instance, handler call, body collected) for the P2 hello guest;
//! - `handle/hello-p3/{pooling,on-demand}`: the same for the P3 service guest (instances
//!   reused, so the allocator matters once per 128 requests).
//!
//! The HTTP benches need the guest fixtures: `WEFT_GUESTS_DIR` (see scripts/test.sh).
//!
//! ```sh
//! WEFT_GUESTS_DIR=~/.cache/weft/guests cargo bench -p weft-runtime --bench instantiate \
//!   -- --warm-up-time 1 --measurement-time 5
//! ```
//!
//! Results and how they were taken: docs/benchmarks.md.

use std::path::PathBuf;

use criterion::{Criterion, criterion_group, criterion_main};
use http_body_util::BodyExt;
use weft_runtime::engine::{AllocatorChoice, EngineOptions, WeftEngine};
use weft_runtime::http::{HttpOptions, HttpService};
use weft_runtime::load::{Compiled, load};

fn engine(allocator: AllocatorChoice) -> WeftEngine {
    WeftEngine::new(&EngineOptions {
        allocator,
        ..Default::default()
    })
    .expect("engine")
}

fn bench_instantiate(c: &mut Criterion) {
    let wat = r#"(component
        (core module $m (memory (export "mem") 1) (func (export "f") (result i32) i32.const 7))
        (core instance $i (instantiate $m))
        (func $f (result u32) (canon lift (core func $i "f")))
        (export "f" (func $f)))"#;
    let mut group = c.benchmark_group("instantiate");
    for (name, choice) in [
        ("pooling", AllocatorChoice::Pooling),
        ("on-demand", AllocatorChoice::OnDemand),
    ] {
        let engine = engine(choice);
        let component =
            wasmtime::component::Component::new(engine.engine(), wat).expect("component");
        let linker = wasmtime::component::Linker::<()>::new(engine.engine());
        let pre = linker.instantiate_pre(&component).expect("pre");
        group.bench_function(name, |b| {
            b.iter(|| {
                let mut store = wasmtime::Store::new(engine.engine(), ());
                pre.instantiate(&mut store).expect("instantiate")
            })
        });
    }
    {
        let mut config = wasmtime::Config::new();
        config.wasm_component_model(true);
        config.allocation_strategy(wasmtime::InstanceAllocationStrategy::pooling());
        let engine = wasmtime::Engine::new(&config).expect("engine");
        let component = wasmtime::component::Component::new(&engine, wat).expect("component");
        let linker = wasmtime::component::Linker::<()>::new(&engine);
        let pre = linker.instantiate_pre(&component).expect("pre");
        group.bench_function("wasmtime-default-pooling", |b| {
            b.iter(|| {
                let mut store = wasmtime::Store::new(&engine, ());
                pre.instantiate(&mut store).expect("instantiate")
            })
        });
    }
    group.finish();
}

fn guest(name: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("WEFT_GUESTS_DIR")?;
    let p = PathBuf::from(dir).join(name);
    p.is_file().then_some(p)
}

fn bench_handle(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("handle");
    let cases = [
        (
            "hello-p2/pooling",
            "http-hello.wasm",
            AllocatorChoice::Pooling,
        ),
        (
            "hello-p2/on-demand",
            "http-hello.wasm",
            AllocatorChoice::OnDemand,
        ),
        (
            "hello-p3/pooling",
            "p3-service.wasm",
            AllocatorChoice::Pooling,
        ),
        (
            "hello-p3/on-demand",
            "p3-service.wasm",
            AllocatorChoice::OnDemand,
        ),
    ];
    for (name, file, choice) in cases {
        let Some(path) = guest(file) else {
            eprintln!(
                "handle/{name}: WEFT_GUESTS_DIR has no {file}; build the guests first (scripts/test.sh)"
            );
            continue;
        };
        let engine = engine(choice);
        let loaded = load(&engine, &path, None).expect("load");
        let Compiled::Component(component) = &loaded.compiled else {
            panic!("{file} is not a component");
        };
        let service = {
            let _guard = rt.enter();
            HttpService::new(
                &engine,
                component,
                HttpOptions {
                    log_prefix: false,
                    ..Default::default()
                },
            )
            .expect("service")
        };
        group.bench_function(name, |b| {
            b.to_async(&rt).iter(|| {
                let service = service.clone();
                async move {
                    let req = http::Request::builder()
                        .uri("http://localhost/")
                        .body(
                            http_body_util::Empty::<bytes::Bytes>::new()
                                .map_err(|never| match never {})
                                .boxed_unsync(),
                        )
                        .expect("request");
                    let resp = service.handle(req).await.expect("response");
                    let body = resp.into_body().collect().await.expect("body").to_bytes();
                    assert!(!body.is_empty());
                }
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_instantiate, bench_handle);
criterion_main!(benches);
