//! Structure-aware, with wasm-smith's component generator (`component-model` feature):
//! arbitrary components, kept when wasmparser validates them, are inspected and resolved as a
//! one-component workload against a fuzzer-chosen set of granted host interfaces.
//!
//! wasm-smith's component support lags behind the component model (upstream marks it as such),
//! so many generated components are invalid and skipped; the valid ones still reach
//! `inspect`'s WIT decoding and printing with shapes the hand-written generator in
//! `component_world` never builds (resources, records, variants, nested components...).
//!
//! Invariants: `inspect` does not panic and reads every valid component (or fails with a
//! `World` error for one whose types WIT cannot express); every reported import and export
//! is unique; `plan` of the component alone either resolves every import to the host, through
//! a granted prefix, or reports exactly the imports no grant covers.
#![no_main]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use wasm_smith::{Component, Config};
use weft_inspect::{InspectError, PlanComponent, PlanError, Provider, WasmKind, inspect, plan};

const GRANTS: &[&str] = &[
    "wasi:cli",
    "wasi:http",
    "wasi:keyvalue/store",
    "a",
    "b-c",
    "x",
];

fn covers(prefix: &str, import: &str) -> bool {
    let base = import.split('@').next().unwrap_or_default();
    base == prefix
        || base
            .strip_prefix(prefix)
            .is_some_and(|r| r.starts_with('/'))
}

/// Generated, valid, inspected components; printed every 1000 inputs when `WEFT_FUZZ_STATS` is
/// set, to see how much of wasm-smith's output is usable.
static COUNTS: [AtomicUsize; 3] = [const { AtomicUsize::new(0) }; 3];

fn count(i: usize) {
    let n = COUNTS[i].fetch_add(1, Ordering::Relaxed) + 1;
    if i == 0 && n % 1000 == 0 && std::env::var_os("WEFT_FUZZ_STATS").is_some() {
        let c: Vec<usize> = COUNTS.iter().map(|c| c.load(Ordering::Relaxed)).collect();
        eprintln!(
            "component_smith: generated {} valid {} inspected {}",
            c[0], c[1], c[2]
        );
    }
}

fn run(u: &mut Unstructured) -> Result<()> {
    let mut host: Vec<String> = Vec::new();
    for g in GRANTS {
        if u.arbitrary()? {
            host.push(g.to_string());
        }
    }
    let component = Component::new(Config::default(), u)?;
    let bytes = component.to_bytes();
    count(0);
    if wasmparser::Validator::new().validate_all(&bytes).is_err() {
        return Ok(());
    }
    count(1);
    let info = match inspect(&bytes) {
        Ok(info) => info,
        Err(InspectError::World(_)) => return Ok(()),
        Err(e) => panic!("a valid component was not inspected: {e}"),
    };
    count(2);
    assert_eq!(info.kind, WasmKind::Component);
    let imports = info.import_names();
    let exports = info.export_names();
    for list in [&imports, &exports] {
        let mut sorted = list.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), list.len(), "duplicate names in {list:?}");
    }
    let c = PlanComponent {
        name: "c".into(),
        imports: imports.clone(),
        exports,
    };
    let uncovered: Vec<&String> = imports
        .iter()
        .filter(|i| !host.iter().any(|h| covers(h, i)))
        .collect();
    match plan(std::slice::from_ref(&c), &host, &BTreeMap::new()) {
        Ok(p) => {
            assert!(
                uncovered.is_empty(),
                "{uncovered:?} resolved without a grant ({host:?})"
            );
            assert_eq!(p.order, vec![0]);
            assert!(
                p.resolutions[0]
                    .iter()
                    .all(|r| r.provider == Provider::Host)
            );
        }
        Err(PlanError::Unsatisfied { missing }) => {
            let missing: Vec<&String> = missing.iter().map(|(_, i)| i).collect();
            assert_eq!(missing, uncovered);
        }
        Err(e) => panic!("one component alone: {e}"),
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = run(&mut Unstructured::new(data));
});
