//! Reading a component's world, producers and size.

use std::fmt;

use wasmparser::{KnownCustom, Parser, Payload};
use wit_parser::decoding::DecodedWasm;
use wit_parser::{Resolve, WorldItem, WorldKey};

/// Whether the bytes are a component or a core module.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WasmKind {
    Component,
    Module,
}

/// What an import or export is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemKind {
    /// A named interface (`ns:pkg/iface@version`) or an inline instance.
    Interface,
    /// A function imported or exported directly by the world.
    Func,
    /// A type imported or exported directly by the world.
    Type,
    /// A core module's import or export (name is `module::field` for imports).
    Core,
}

impl ItemKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ItemKind::Interface => "interface",
            ItemKind::Func => "func",
            ItemKind::Type => "type",
            ItemKind::Core => "core",
        }
    }
}

/// One import or export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// The full name, e.g. `wasi:http/incoming-handler@0.2.6` or `add`.
    pub name: String,
    pub kind: ItemKind,
}

impl Item {
    /// The name without its `@version`.
    pub fn base(&self) -> &str {
        crate::plan::split_version(&self.name).0
    }

    /// The version after `@`, if any.
    pub fn version(&self) -> Option<&str> {
        crate::plan::split_version(&self.name).1
    }
}

/// One entry of a `producers` section: e.g. field `language`, name `Rust`, version `1.96`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Producer {
    pub field: String,
    pub name: String,
    pub version: String,
}

/// What [`inspect`] learns about a Wasm binary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentInfo {
    pub kind: WasmKind,
    /// Size of the binary in bytes.
    pub size: usize,
    pub imports: Vec<Item>,
    pub exports: Vec<Item>,
    /// The component's world printed as WIT (empty for a core module).
    pub wit: String,
    /// All producers entries found in the binary and in its nested modules, sorted, deduplicated.
    pub producers: Vec<Producer>,
}

impl ComponentInfo {
    /// Names of the imports.
    pub fn import_names(&self) -> Vec<String> {
        self.imports.iter().map(|i| i.name.clone()).collect()
    }

    /// Names of the exports.
    pub fn export_names(&self) -> Vec<String> {
        self.exports.iter().map(|i| i.name.clone()).collect()
    }
}

/// Why a binary could not be inspected.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error("not a WebAssembly binary (it does not start with the `\\0asm` magic)")]
    NotWasm,
    #[error("invalid WebAssembly: {0}")]
    Invalid(String),
    #[error("cannot read the component's world: {0}")]
    World(String),
}

impl fmt::Display for WasmKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WasmKind::Component => "component",
            WasmKind::Module => "core module",
        })
    }
}

/// Inspects a component or core module. The bytes must be binary Wasm (not WAT).
pub fn inspect(bytes: &[u8]) -> Result<ComponentInfo, InspectError> {
    if !bytes.starts_with(b"\0asm") {
        return Err(InspectError::NotWasm);
    }
    let producers = producers(bytes)?;
    if Parser::is_core_wasm(bytes) {
        let (imports, exports) = module_items(bytes)?;
        return Ok(ComponentInfo {
            kind: WasmKind::Module,
            size: bytes.len(),
            imports,
            exports,
            wit: String::new(),
            producers,
        });
    }
    let decoded =
        wit_parser::decoding::decode(bytes).map_err(|e| InspectError::World(format!("{e:#}")))?;
    let DecodedWasm::Component(resolve, world) = &decoded else {
        return Err(InspectError::World(
            "the binary is an encoded WIT package, not a component".into(),
        ));
    };
    let w = &resolve.worlds[*world];
    let imports = w
        .imports
        .iter()
        .filter_map(|(k, v)| item(resolve, k, v))
        .collect();
    let exports = w
        .exports
        .iter()
        .filter_map(|(k, v)| item(resolve, k, v))
        .collect();
    let mut printer = wit_component::WitPrinter::default();
    printer.emit_docs(false);
    // Define the component's own (non-WASI) interfaces inline; WASI ones are well known and
    // long, so they are only named.
    let main = decoded.package();
    let nested: Vec<_> = resolve
        .packages
        .iter()
        .filter(|(id, p)| *id != main && p.name.namespace != "wasi")
        .map(|(id, _)| id)
        .collect();
    printer
        .print(resolve, main, &nested)
        .map_err(|e| InspectError::World(format!("printing WIT: {e:#}")))?;
    Ok(ComponentInfo {
        kind: WasmKind::Component,
        size: bytes.len(),
        imports,
        exports,
        wit: printer.output.to_string(),
        producers,
    })
}

fn item(resolve: &Resolve, key: &WorldKey, item: &WorldItem) -> Option<Item> {
    let kind = match item {
        WorldItem::Interface { .. } => ItemKind::Interface,
        WorldItem::Function(_) => ItemKind::Func,
        WorldItem::Type { .. } => ItemKind::Type,
    };
    let name = match key {
        WorldKey::Name(n) => n.clone(),
        WorldKey::Interface(id) => resolve.id_of(*id)?,
    };
    Some(Item { name, kind })
}

fn module_items(bytes: &[u8]) -> Result<(Vec<Item>, Vec<Item>), InspectError> {
    let mut imports = Vec::new();
    let mut exports = Vec::new();
    for payload in Parser::new(0).parse_all(bytes) {
        match payload.map_err(|e| InspectError::Invalid(e.to_string()))? {
            Payload::ImportSection(reader) => {
                for imp in reader.into_imports() {
                    let imp = imp.map_err(|e| InspectError::Invalid(e.to_string()))?;
                    imports.push(Item {
                        name: format!("{}::{}", imp.module, imp.name),
                        kind: ItemKind::Core,
                    });
                }
            }
            Payload::ExportSection(reader) => {
                for exp in reader {
                    let exp = exp.map_err(|e| InspectError::Invalid(e.to_string()))?;
                    exports.push(Item {
                        name: exp.name.to_string(),
                        kind: ItemKind::Core,
                    });
                }
            }
            _ => {}
        }
    }
    Ok((imports, exports))
}

fn producers(bytes: &[u8]) -> Result<Vec<Producer>, InspectError> {
    let mut out = Vec::new();
    for payload in Parser::new(0).parse_all(bytes) {
        let payload = payload.map_err(|e| InspectError::Invalid(e.to_string()))?;
        let Payload::CustomSection(section) = payload else {
            continue;
        };
        let KnownCustom::Producers(reader) = section.as_known() else {
            continue;
        };
        // A malformed producers section is not worth failing the inspection for.
        for field in reader.into_iter().flatten() {
            for value in field.values.into_iter().flatten() {
                out.push(Producer {
                    field: field.name.to_string(),
                    name: value.name.to_string(),
                    version: value.version.to_string(),
                });
            }
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}
