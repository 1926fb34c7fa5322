//! `weft_inspect::inspect` on arbitrary bytes (seeded with the project's guest components and
//! WAT fixtures), cross-checked against wasmparser.
//!
//! Invariants: no panic; `inspect` never reads a *component* whose structure wasmparser's
//! validator rejects. Function bodies are not part of that: `inspect` reads types and names,
//! and wasmtime validates the code when it loads the component (the first run of this target
//! found a component with an ill-typed function body in a nested module that `inspect` reads
//! fine; that is by design). Core modules are only parsed. The kind agrees with wasmparser's header check and the size with the input; for a component,
//! every import and export `inspect` reports is a top-level import or export name of the binary;
//! for a core module the counts agree with the import and export sections; every error formats.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wasmparser::{Parser, Payload, Validator};
use weft_inspect::{WasmKind, inspect};

/// Top-level import and export names, read straight from the sections.
fn top_level_names(bytes: &[u8]) -> Option<(Vec<String>, Vec<String>)> {
    let mut imports = Vec::new();
    let mut exports = Vec::new();
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(bytes) {
        match payload.ok()? {
            Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => depth += 1,
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentImportSection(s) if depth == 0 => {
                for i in s {
                    imports.push(i.ok()?.name.name.to_string());
                }
            }
            Payload::ComponentExportSection(s) if depth == 0 => {
                for e in s {
                    exports.push(e.ok()?.name.name.to_string());
                }
            }
            Payload::ImportSection(s) if depth == 0 => {
                for i in s.into_imports() {
                    let i = i.ok()?;
                    imports.push(format!("{}::{}", i.module, i.name));
                }
            }
            Payload::ExportSection(s) if depth == 0 => {
                for e in s {
                    exports.push(e.ok()?.name.to_string());
                }
            }
            _ => {}
        }
    }
    Some((imports, exports))
}

/// Validates everything but function bodies.
fn validate_structure(bytes: &[u8]) -> Result<(), wasmparser::BinaryReaderError> {
    let mut validator = Validator::new();
    for payload in Parser::new(0).parse_all(bytes) {
        // `ValidPayload::Func` hands back the body to validate separately; it is dropped.
        validator.payload(&payload?)?;
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let info = match inspect(data) {
        Ok(info) => info,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    assert_eq!(info.size, data.len());
    let is_component = Parser::is_component(data);
    if is_component && let Err(e) = validate_structure(data) {
        panic!("inspect read a component the validator rejects: {e}");
    }
    assert_eq!(info.kind == WasmKind::Component, is_component);
    let (imports, exports) = top_level_names(data).expect("a valid binary parses");
    match info.kind {
        WasmKind::Component => {
            for i in &info.imports {
                assert!(
                    imports.contains(&i.name),
                    "import {} not in {imports:?}",
                    i.name
                );
            }
            for e in &info.exports {
                assert!(
                    exports.contains(&e.name),
                    "export {} not in {exports:?}",
                    e.name
                );
            }
        }
        WasmKind::Module => {
            assert_eq!(info.imports.len(), imports.len());
            assert_eq!(info.exports.len(), exports.len());
            assert!(info.wit.is_empty());
        }
    }
});
