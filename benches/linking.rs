//! Calls across components: one function call from component `sum` into `calc`'s `add`,
//! measured three ways on the WAT fixtures `sum3.wat` + `calc-ops.wat`:
//!
//! - `composed`: the two fused by `weft_runtime::compose` (wac-graph) into one component;
//! - `linked`: linked at run time by `weft_runtime::link` (a forwarding host function per call,
//!   on the linking engine without component-model concurrency);
//! - `single`: `sum3-single.wat`, both core modules inside one component (the baseline).
//!
//! Each iteration calls the export `add-n(10000)`, whose loop makes 10000 calls to `add`; the
//! throughput (elements = calls) gives the cost per call, with the host->guest entry amortised
//! over the 10000 calls.
//!
//! ```sh
//! cargo bench -p weft-runtime --bench linking -- --warm-up-time 1 --measurement-time 5
//! ```
//!
//! Results: docs/benchmarks.md ("Calls across components").

use std::collections::BTreeMap;
use std::path::PathBuf;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use wasmtime::component::{Component, Val};
use weft_runtime::engine::{AllocatorChoice, EngineOptions, WeftEngine};
use weft_runtime::link;

const CALLS: u32 = 10_000;

fn wat(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/wat")
        .join(name);
    wat::parse_file(&path).expect("fixture")
}

fn plan(engine: &wasmtime::Engine, components: &[(String, Component)]) -> weft_inspect::LinkPlan {
    let parts: Vec<_> = components
        .iter()
        .map(|(n, c)| link::plan_component(engine, n, c))
        .collect();
    weft_inspect::plan(&parts, &[], &BTreeMap::new()).expect("plan")
}

fn bench_calls(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let sum = wat("sum3.wat");
    let calc = wat("calc-ops.wat");
    let names = vec!["sum".to_string(), "calc".to_string()];
    let mut group = c.benchmark_group("cross-component-call");
    group.throughput(Throughput::Elements(u64::from(CALLS)));
    let args = [Val::U32(CALLS)];

    // Composed and single: the regular (concurrent) engine, as `weft up` uses.
    let engine = WeftEngine::new(&EngineOptions {
        allocator: AllocatorChoice::OnDemand,
        ..Default::default()
    })
    .expect("engine");
    let e = engine.engine();
    let compiled = vec![
        (names[0].clone(), Component::new(e, &sum).expect("sum")),
        (names[1].clone(), Component::new(e, &calc).expect("calc")),
    ];
    let p = plan(e, &compiled);
    let fused = weft_runtime::compose::compose_bytes(&names, &[sum.clone(), calc.clone()], &p, 0)
        .expect("compose");
    let single = wat("sum3-single.wat");
    for (label, bytes) in [("composed", fused), ("single", single)] {
        let component = Component::new(e, &bytes).expect("component");
        let linker = link::base_linker(e).expect("linker");
        let mut store = link::plain_store(e);
        let instance = rt
            .block_on(linker.instantiate_async(&mut store, &component))
            .expect("instantiate");
        let func = instance.get_func(&mut store, "add-n").expect("add-n");
        group.bench_function(label, |b| {
            b.iter(|| {
                let mut out = [Val::U32(0)];
                rt.block_on(func.call_async(&mut store, &args, &mut out))
                    .expect("call");
                assert_eq!(out[0], Val::U32(CALLS));
            })
        });
    }

    // Linked at run time: the linking engine.
    let engine = link::linking_engine().expect("linking engine");
    let e = engine.engine();
    let components = vec![
        Component::new(e, &sum).expect("sum"),
        Component::new(e, &calc).expect("calc"),
    ];
    let named: Vec<_> = names
        .iter()
        .cloned()
        .zip(components.iter().cloned())
        .collect();
    let p = plan(e, &named);
    let base = link::base_linker_p2(e).expect("linker");
    let wired = link::Wired::new(e, &base, &names, &components, &p, 0).expect("wire");
    let mut store = link::plain_store(e);
    let instance = rt
        .block_on(wired.instantiate(&mut store))
        .expect("instantiate");
    let func = instance.get_func(&mut store, "add-n").expect("add-n");
    group.bench_function("linked", |b| {
        b.iter(|| {
            let mut out = [Val::U32(0)];
            rt.block_on(func.call_async(&mut store, &args, &mut out))
                .expect("call");
            assert_eq!(out[0], Val::U32(CALLS));
        })
    });
    group.finish();
}

criterion_group!(benches, bench_calls);
criterion_main!(benches);
