//! Structure-aware: builds 1-3 valid components whose imports and exports are interface names
//! chosen by the fuzzer (WASI-like and made-up `ns:pkg/iface@version`s, plain names), encodes
//! them with wasm-encoder, reads them back with `weft_inspect::inspect`, and resolves the
//! workload against a fuzzer-chosen set of granted host interfaces with `weft_inspect::plan`.
//!
//! Invariants:
//! - every generated component validates (wasmparser) and `inspect` reads exactly the import
//!   and export names it was built with, each as an interface;
//! - `plan` agrees with a reference resolver written from its documentation: an explicit link
//!   wins, else the only other exporter, else the host if a granted prefix covers the import;
//!   two exporters are ambiguous, nothing is unsatisfied; the order is the manifest-order
//!   topological order, and a cycle is an error;
//! - an import is provided by the host only if a granted prefix covers it (no grant, no host).
#![no_main]

use std::collections::BTreeMap;

use arbitrary::{Arbitrary, Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use wasm_encoder::{
    Component, ComponentExportKind, ComponentExportSection, ComponentImportSection,
    ComponentInstanceSection, ComponentTypeRef, ComponentTypeSection, ComponentValType,
    InstanceType, PrimitiveValType,
};
use weft_inspect::{ItemKind, PlanComponent, PlanError, Provider, WasmKind, inspect, plan};

const NAMESPACES: &[&str] = &["wasi", "example", "weft", "a"];
const PACKAGES: &[&str] = &[
    "cli", "http", "keyvalue", "config", "calc", "clocks", "io", "b",
];
const INTERFACES: &[&str] = &[
    "run",
    "stdout",
    "incoming-handler",
    "handler",
    "store",
    "atomics",
    "ops",
    "types",
    "c",
];
const VERSIONS: &[Option<&str>] = &[
    None,
    Some("0.2.0"),
    Some("0.2.6"),
    Some("0.3.0-rc-2025-09-16"),
    Some("1.0.0"),
    Some("1.2.3"),
    Some("0.0.1"),
    Some("0.2.0-draft"),
];
const PLAIN: &[&str] = &["add", "run", "handle", "x-y"];

fn interface_name(u: &mut Unstructured) -> Result<String> {
    if u.ratio(1, 8)? {
        return Ok(u.choose(PLAIN)?.to_string());
    }
    let mut s = format!(
        "{}:{}/{}",
        u.choose(NAMESPACES)?,
        u.choose(PACKAGES)?,
        u.choose(INTERFACES)?
    );
    if let Some(v) = u.choose(VERSIONS)? {
        s.push('@');
        s.push_str(v);
    }
    Ok(s)
}

/// Up to `max` names whose unversioned parts differ (a component may not import two versions of
/// one interface).
fn names(u: &mut Unstructured, max: usize) -> Result<Vec<String>> {
    let n = u.int_in_range(0..=max)?;
    let mut out: Vec<String> = Vec::new();
    for _ in 0..n {
        let name = interface_name(u)?;
        let base = |s: &str| s.split('@').next().unwrap_or_default().to_string();
        if !out.iter().any(|o| base(o) == base(&name)) {
            out.push(name);
        }
    }
    Ok(out)
}

/// A component importing `imports` (each an instance, some with a function) and exporting an
/// empty instance under each of `exports`.
fn encode(imports: &[String], exports: &[String], with_func: &[bool]) -> Vec<u8> {
    let mut c = Component::new();
    let mut types = ComponentTypeSection::new();
    types.instance(&InstanceType::new());
    let mut func = InstanceType::new();
    func.ty()
        .function()
        .params([("x", ComponentValType::Primitive(PrimitiveValType::U32))])
        .result(Some(ComponentValType::Primitive(PrimitiveValType::String)));
    func.export("f", ComponentTypeRef::Func(0));
    types.instance(&func);
    c.section(&types);
    if !imports.is_empty() {
        let mut section = ComponentImportSection::new();
        for (i, name) in imports.iter().enumerate() {
            let ty = u32::from(with_func.get(i).copied().unwrap_or(false));
            section.import(name.as_str(), ComponentTypeRef::Instance(ty));
        }
        c.section(&section);
    }
    if !exports.is_empty() {
        let mut instances = ComponentInstanceSection::new();
        for _ in exports {
            instances.export_items(Vec::<(&str, ComponentExportKind, u32)>::new());
        }
        c.section(&instances);
        let mut section = ComponentExportSection::new();
        for (i, name) in exports.iter().enumerate() {
            let index = (imports.len() + i) as u32;
            section.export(name.as_str(), ComponentExportKind::Instance, index, None);
        }
        c.section(&section);
    }
    c.finish()
}

#[derive(Debug, PartialEq)]
enum Outcome {
    /// Per component, per import: `Some(exporter)` or `None` for the host; then the order.
    Ok(Vec<Vec<Option<usize>>>, Vec<usize>),
    BadLink,
    Ambiguous,
    Unsatisfied,
    Cycle,
}

fn covers(prefix: &str, import: &str) -> bool {
    let base = import.split('@').next().unwrap_or_default();
    base == prefix
        || base
            .strip_prefix(prefix)
            .is_some_and(|r| r.starts_with('/'))
}

/// Semver compatibility as `interface_matches` documents it.
fn matches(import: &str, export: &str) -> bool {
    if import == export {
        return true;
    }
    let (Some((ib, iv)), Some((eb, ev))) = (import.split_once('@'), export.split_once('@')) else {
        return false;
    };
    if ib != eb {
        return false;
    }
    let parse = |v: &str| -> Option<(u64, u64, u64)> {
        if v.contains(['-', '+']) {
            return None; // pre-releases only match themselves
        }
        let p: Vec<&str> = v.split('.').collect();
        match p[..] {
            [a, b, c] => Some((a.parse().ok()?, b.parse().ok()?, c.parse().ok()?)),
            _ => None,
        }
    };
    match (parse(iv), parse(ev)) {
        (Some((0, 0, ip)), Some(e)) => e == (0, 0, ip),
        (Some((0, im, _)), Some(e)) => e.0 == 0 && e.1 == im,
        (Some((ia, _, _)), Some(e)) => e.0 == ia,
        _ => false,
    }
}

fn reference(cs: &[PlanComponent], host: &[String], links: &[(usize, String, usize)]) -> Outcome {
    let mut res = Vec::new();
    let mut missing = false;
    for (ci, c) in cs.iter().enumerate() {
        let mut r = Vec::new();
        for import in &c.imports {
            if let Some((_, _, t)) = links.iter().find(|(from, i, _)| *from == ci && i == import) {
                if !cs[*t].exports.iter().any(|e| matches(import, e)) {
                    return Outcome::BadLink;
                }
                r.push(Some(*t));
                continue;
            }
            let exporters: Vec<usize> = (0..cs.len())
                .filter(|&o| o != ci && cs[o].exports.iter().any(|e| matches(import, e)))
                .collect();
            match exporters[..] {
                [one] => r.push(Some(one)),
                [] if host.iter().any(|p| covers(p, import)) => r.push(None),
                [] => missing = true,
                _ => return Outcome::Ambiguous,
            }
        }
        res.push(r);
    }
    if missing {
        return Outcome::Unsatisfied;
    }
    // Kahn's algorithm, always taking the first ready component in manifest order.
    let n = cs.len();
    let mut placed = vec![false; n];
    let mut order = Vec::new();
    while order.len() < n {
        let ready = (0..n).find(|&i| !placed[i] && res[i].iter().flatten().all(|&d| placed[d]));
        match ready {
            Some(i) => {
                placed[i] = true;
                order.push(i);
            }
            None => return Outcome::Cycle,
        }
    }
    Outcome::Ok(res, order)
}

fn run(u: &mut Unstructured) -> Result<()> {
    let n = u.int_in_range(1..=3)?;
    let mut components = Vec::new();
    for i in 0..n {
        let imports = names(u, 5)?;
        let exports = names(u, 3)?;
        let with_func: Vec<bool> = imports
            .iter()
            .map(|_| u.arbitrary())
            .collect::<Result<_>>()?;
        let bytes = encode(&imports, &exports, &with_func);
        if let Err(e) = wasmparser::Validator::new().validate_all(&bytes) {
            panic!("generated an invalid component ({e}): imports {imports:?} exports {exports:?}");
        }
        let info = inspect(&bytes).unwrap_or_else(|e| panic!("inspect failed: {e}"));
        assert_eq!(info.kind, WasmKind::Component);
        assert_eq!(info.size, bytes.len());
        let mut got = info.import_names();
        let mut want = imports.clone();
        got.sort();
        want.sort();
        assert_eq!(got, want, "import names");
        let mut got = info.export_names();
        let mut want = exports.clone();
        got.sort();
        want.sort();
        assert_eq!(got, want, "export names");
        assert!(
            info.imports
                .iter()
                .chain(&info.exports)
                .all(|i| i.kind == ItemKind::Interface)
        );
        for item in info.imports.iter().chain(&info.exports) {
            match item.version() {
                Some(v) => assert_eq!(format!("{}@{v}", item.base()), item.name),
                None => assert_eq!(item.base(), item.name),
            }
        }
        components.push(PlanComponent {
            name: format!("c{i}"),
            imports: info.import_names(),
            exports: info.export_names(),
        });
    }

    // Granted host prefixes: package-level (`wasi:cli`) or interface-level grants.
    let mut host = Vec::new();
    for _ in 0..u.int_in_range(0..=4)? {
        let ns = u.choose(NAMESPACES)?;
        let pkg = u.choose(PACKAGES)?;
        host.push(if bool::arbitrary(u)? {
            format!("{ns}:{pkg}")
        } else {
            format!("{ns}:{pkg}/{}", u.choose(INTERFACES)?)
        });
    }
    // Explicit links: an import of one component to another component.
    let mut links: Vec<(usize, String, usize)> = Vec::new();
    let mut link_map: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    if n > 1 && bool::arbitrary(u)? {
        let from = u.choose_index(n)?;
        if !components[from].imports.is_empty() {
            let import = u.choose(&components[from].imports)?.clone();
            let to = (from + 1 + u.choose_index(n - 1)?) % n;
            link_map
                .entry(components[from].name.clone())
                .or_default()
                .insert(import.clone(), components[to].name.clone());
            links.push((from, import, to));
        }
    }

    let expected = reference(&components, &host, &links);
    match plan(&components, &host, &link_map) {
        Ok(p) => {
            let got: Vec<Vec<Option<usize>>> = p
                .resolutions
                .iter()
                .map(|r| {
                    r.iter()
                        .map(|res| match res.provider {
                            Provider::Component { index, .. } => Some(index),
                            // `plan` has no service: never produced here.
                            Provider::Host | Provider::Service { .. } => None,
                        })
                        .collect()
                })
                .collect();
            assert_eq!(
                Outcome::Ok(got, p.order.clone()),
                expected,
                "{components:?} host {host:?}"
            );
            for (ci, r) in p.resolutions.iter().enumerate() {
                for res in r {
                    if res.provider == Provider::Host {
                        assert!(
                            host.iter().any(|h| covers(h, &res.import)),
                            "{} of c{ci} given by the host without a grant",
                            res.import
                        );
                    }
                }
            }
        }
        Err(e) => {
            let kind = match e {
                PlanError::BadLink { .. } => Outcome::BadLink,
                PlanError::Ambiguous { .. } => Outcome::Ambiguous,
                PlanError::Unsatisfied { .. } => Outcome::Unsatisfied,
                PlanError::Cycle { ref path } => {
                    assert!(!path.is_empty(), "a cycle with no steps");
                    Outcome::Cycle
                }
                PlanError::DuplicateName(_) => panic!("names are unique: {e}"),
                PlanError::ServiceNameTaken(_) => panic!("`plan` has no service: {e}"),
            };
            assert_eq!(kind, expected, "{e}");
            let _ = e.to_string();
        }
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = run(&mut Unstructured::new(data));
});
