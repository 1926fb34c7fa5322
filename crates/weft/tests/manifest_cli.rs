//! `weft manifest check` and `weft manifest schema`.
// Test code: a failed unwrap is a test failure with a location (docs/lints.md).
#![allow(clippy::unwrap_used)]

mod common;
use common::*;

#[test]
fn check_accepts_the_examples_shape_and_reports_field_paths() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = dir.path().join("app.wasm");
    std::fs::copy(wat_fixture("add.wat"), &wasm).unwrap();
    let good = dir.path().join("good.yaml");
    std::fs::write(
        &good,
        "apiVersion: weft.dev/v1alpha1\nkind: Workload\nmetadata: { name: ok }\nspec:\n  components:\n    - { name: app, image: ./app.wasm }\n",
    )
    .unwrap();
    let out = run_weft(&["manifest", "check", good.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("ok:"), "{}", stdout(&out));

    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "apiVersion: weft.dev/v1alpha1\nkind: Workload\nmetadata: { name: Bad_Name }\nspec:\n  components:\n    - { name: app, imag: ./app.wasm }\n",
    )
    .unwrap();
    let out = run_weft(&["manifest", "check", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("bad.yaml"), "{err}");
    assert!(err.contains("metadata.name"), "{err}");
    assert!(err.contains("spec.components[0]"), "{err}");
    assert!(err.contains("did you mean `image`"), "{err}");
}

#[test]
fn schema_is_json_with_the_top_level_fields() {
    let out = run_weft(&["manifest", "schema"]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("schema is JSON");
    let text = v.to_string();
    for field in ["apiVersion", "metadata", "hostInterfaces", "localResources"] {
        assert!(text.contains(field), "schema lacks {field}");
    }
}
