//! Calls across components: one function call from component `sum` into `calc`, measured three
//! ways:
//!
//! - `composed`: the two fused by `weft_runtime::compose` (wac-graph) into one component;
//! - `linked`: linked at run time by `weft_runtime::link` (a forwarding host function per call,
//!   on the linking engine without component-model concurrency);
//! - `single`: both core modules inside one component (the baseline).
//!
//! Two callees:
//!
//! - `add`: `add(a, b) = a + b` (`sum3.wat`, `calc-ops.wat`, `sum3-single.wat`), so the time is
//!   almost all call overhead;
//! - `mix`: the same shapes generated below, with a callee that does 32 rounds of integer
//!   mixing (about 15-20 ns of work), a stand-in for a small real function.
//!
//! Each iteration calls the export `add-n(10000)` once; its loop makes 10000 calls, so the
//! throughput (elements = calls) gives the cost per call with the host->guest entry amortised.
//! Composed and single run on the engine `weft up` uses (component-model concurrency on), once
//! as built by default and once with Cranelift's inter-module inlining (`+inline`), and once on
//! the engine without component-model concurrency (`+nocm`, what run-time linking uses).
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
    let path = PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
    )
    .join("../../tests/fixtures/wat")
    .join(name);
    wat::parse_file(&path).expect("fixture")
}

/// The callee's core body for `mix`: 32 rounds of multiply, rotate and xor over (a, b).
const MIX_BODY: &str = "(local i32)
      block
        loop
          local.get 2 i32.const 32 i32.ge_u br_if 1
          local.get 0 i32.const 0x9e3779b1 i32.mul i32.const 13 i32.rotl
          local.get 1 i32.xor local.set 0
          local.get 2 i32.const 1 i32.add local.set 2
          br 0
        end
      end
      local.get 0";

/// `add-n(n)`: n calls of the callee, feeding each result into the next.
const CALLER_LOOP: &str = r#"(func (export "add-n") (param i32) (result i32) (local i32 i32)
      block
        loop
          local.get 2 local.get 0 i32.ge_u br_if 1
          local.get 1 local.get 2 call $f local.set 1
          local.get 2 i32.const 1 i32.add local.set 2
          br 0
        end
      end
      local.get 1)"#;

/// The `mix` shapes: (caller importing `example:work/ops`, callee exporting it, both in one).
fn mix_wats() -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let callee = format!(
        r#"(component
  (core module $m (func (export "mix") (param i32 i32) (result i32) {MIX_BODY}))
  (core instance $i (instantiate $m))
  (func $mix (param "a" u32) (param "b" u32) (result u32) (canon lift (core func $i "mix")))
  (instance $ops (export "mix" (func $mix)))
  (export "example:work/ops@1.0.0" (instance $ops)))"#
    );
    let caller = format!(
        r#"(component
  (import "example:work/ops@1.0.0" (instance $ops
    (export "mix" (func (param "a" u32) (param "b" u32) (result u32)))))
  (alias export $ops "mix" (func $mix))
  (core func $mix_lowered (canon lower (func $mix)))
  (core module $m
    (import "work" "mix" (func $f (param i32 i32) (result i32)))
    {CALLER_LOOP})
  (core instance $work (export "mix" (func $mix_lowered)))
  (core instance $i (instantiate $m (with "work" (instance $work))))
  (func $add_n (param "n" u32) (result u32) (canon lift (core func $i "add-n")))
  (export "add-n" (func $add_n)))"#
    );
    let single = format!(
        r#"(component
  (core module $w (func (export "mix") (param i32 i32) (result i32) {MIX_BODY}))
  (core instance $c (instantiate $w))
  (core module $m
    (import "work" "mix" (func $f (param i32 i32) (result i32)))
    {CALLER_LOOP})
  (core instance $i (instantiate $m (with "work" (instance $c))))
  (func $add_n (param "n" u32) (result u32) (canon lift (core func $i "add-n")))
  (export "add-n" (func $add_n)))"#
    );
    let parse = |s: &str| wat::parse_str(s).expect("generated WAT");
    (parse(&caller), parse(&callee), parse(&single))
}

fn plan(engine: &wasmtime::Engine, components: &[(String, Component)]) -> weft_inspect::LinkPlan {
    let parts: Vec<_> = components
        .iter()
        .map(|(n, c)| link::plan_component(engine, n, c))
        .collect();
    weft_inspect::plan(&parts, &[], &BTreeMap::new()).expect("plan")
}

/// One callee's three shapes: caller and callee (two components) and both in one component.
struct Case {
    name: &'static str,
    caller: Vec<u8>,
    callee: Vec<u8>,
    single: Vec<u8>,
}

fn bench_calls(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let (mix_caller, mix_callee, mix_single) = mix_wats();
    let cases = [
        Case {
            name: "add",
            caller: wat("sum3.wat"),
            callee: wat("calc-ops.wat"),
            single: wat("sum3-single.wat"),
        },
        Case {
            name: "mix",
            caller: mix_caller,
            callee: mix_callee,
            single: mix_single,
        },
    ];
    let names = vec!["sum".to_string(), "calc".to_string()];
    let args = [Val::U32(CALLS)];

    for case in &cases {
        let mut group = c.benchmark_group(format!("cross-component-call/{}", case.name));
        group.throughput(Throughput::Elements(u64::from(CALLS)));
        let mut expected = None;
        for (suffix, inlining, no_concurrency) in [
            ("", false, false),
            ("+inline", true, false),
            ("+nocm", false, true),
        ] {
            let engine = WeftEngine::new(&EngineOptions {
                allocator: AllocatorChoice::OnDemand,
                inlining,
                no_concurrency,
                ..Default::default()
            })
            .expect("engine");
            let e = engine.engine();
            let compiled = vec![
                (
                    names[0].clone(),
                    Component::new(e, &case.caller).expect("caller"),
                ),
                (
                    names[1].clone(),
                    Component::new(e, &case.callee).expect("callee"),
                ),
            ];
            let p = plan(e, &compiled);
            let fused = weft_runtime::compose::compose_bytes(
                &names,
                &[case.caller.clone(), case.callee.clone()],
                &p,
                0,
            )
            .expect("compose");
            for (label, bytes) in [("composed", &fused), ("single", &case.single)] {
                let component = Component::new(e, bytes).expect("component");
                let linker = if no_concurrency {
                    link::base_linker_p2(e)
                } else {
                    link::base_linker(e)
                }
                .expect("linker");
                let mut store = link::plain_store(e);
                let instance = rt
                    .block_on(linker.instantiate_async(&mut store, &component))
                    .expect("instantiate");
                let func = instance.get_func(&mut store, "add-n").expect("add-n");
                // Every variant must compute the same thing.
                let mut out = [Val::U32(0)];
                rt.block_on(func.call_async(&mut store, &args, &mut out))
                    .expect("call");
                let want = expected.get_or_insert_with(|| out[0].clone()).clone();
                assert_eq!(out[0], want, "{label}{suffix} computed something else");
                group.bench_function(format!("{label}{suffix}"), |b| {
                    b.iter(|| {
                        let mut out = [Val::U32(0)];
                        rt.block_on(func.call_async(&mut store, &args, &mut out))
                            .expect("call");
                        out
                    })
                });
            }
        }

        // Linked at run time: the linking engine.
        let engine = link::linking_engine().expect("linking engine");
        let e = engine.engine();
        let components = vec![
            Component::new(e, &case.caller).expect("caller"),
            Component::new(e, &case.callee).expect("callee"),
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
                out
            })
        });
        group.finish();
    }
}

criterion_group!(benches, bench_calls);
criterion_main!(benches);
