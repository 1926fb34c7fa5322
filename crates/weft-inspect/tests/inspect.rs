// Test code: a failed unwrap is a test failure with a location (docs/lints.md).
#![allow(clippy::unwrap_used)]
use weft_inspect::{InspectError, ItemKind, WasmKind, inspect};

const CALC: &str = r#"(component
  (core module $m
    (func (export "add") (param i32 i32) (result i32) local.get 0 local.get 1 i32.add))
  (core instance $i (instantiate $m))
  (type $f (func (param "a" u32) (param "b" u32) (result u32)))
  (func $add (type $f) (canon lift (core func $i "add")))
  (instance $ops (export "add" (func $add)))
  (export "example:calc/ops@1.0.0" (instance $ops))
  (export "add" (func $add))
)"#;

#[test]
fn inspects_a_component_world() {
    let bytes = wat::parse_str(CALC).unwrap();
    let info = inspect(&bytes).unwrap();
    assert_eq!(info.kind, WasmKind::Component);
    assert_eq!(info.size, bytes.len());
    assert!(info.imports.is_empty());
    let names: Vec<(&str, ItemKind)> = info
        .exports
        .iter()
        .map(|e| (e.name.as_str(), e.kind))
        .collect();
    assert_eq!(
        names,
        vec![
            ("example:calc/ops@1.0.0", ItemKind::Interface),
            ("add", ItemKind::Func)
        ]
    );
    assert_eq!(info.exports[0].base(), "example:calc/ops");
    assert_eq!(info.exports[0].version(), Some("1.0.0"));
    assert!(info.wit.contains("world root"), "{}", info.wit);
    assert!(
        info.wit.contains("export example:calc/ops@1.0.0;"),
        "{}",
        info.wit
    );
    assert!(
        info.wit
            .contains("export add: func(a: u32, b: u32) -> u32;"),
        "{}",
        info.wit
    );
}

#[test]
fn inspects_a_core_module_and_its_producers() {
    let bytes = wat::parse_str(
        r#"(module (import "env" "f" (func)) (func (export "g"))
           (@producers (language "wat" "1.0") (processed-by "weft-test" "0.1")))"#,
    )
    .unwrap();
    let info = inspect(&bytes).unwrap();
    assert_eq!(info.kind, WasmKind::Module);
    assert_eq!(info.import_names(), vec!["env::f"]);
    assert_eq!(info.export_names(), vec!["g"]);
    let p: Vec<String> = info
        .producers
        .iter()
        .map(|p| format!("{} {} {}", p.field, p.name, p.version))
        .collect();
    assert_eq!(p, vec!["language wat 1.0", "processed-by weft-test 0.1"]);
}

#[test]
fn refuses_what_is_not_wasm() {
    assert!(matches!(inspect(b"hello"), Err(InspectError::NotWasm)));
    assert!(inspect(b"\0asm\x0d\0\x01\0\xff").is_err());
}
