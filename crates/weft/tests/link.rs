//! Several components in one workload: run-time linking, composition, the refusals (cycles,
//! ambiguity, unsatisfied imports), `weft inspect`, `weft compose`, `weft run MANIFEST --invoke`.
// Test code: a failed unwrap is a test failure with a location (docs/lints.md).
#![allow(clippy::unwrap_used)]

mod common;
use common::*;
use std::path::{Path, PathBuf};

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write");
    p
}

/// A manifest with `components` (name, image, extra lines) and `compose`.
fn library_manifest(compose: &str, components: &[(&str, PathBuf, &str)]) -> String {
    let mut text = format!(
        "apiVersion: weft.dev/v1alpha1\nkind: Workload\nmetadata: {{ name: lib }}\nspec:\n  compose: {compose}\n  components:\n"
    );
    for (name, image, extra) in components {
        text.push_str(&format!(
            "    - name: {name}\n      image: {}\n{extra}",
            image.display()
        ));
    }
    text
}

fn sum_manifest(dir: &Path, compose: &str) -> PathBuf {
    write(
        dir,
        &format!("sum-{compose}.yaml"),
        &library_manifest(
            compose,
            &[
                ("sum", wat_fixture("sum3.wat"), ""),
                ("calc", wat_fixture("calc-ops.wat"), ""),
            ],
        ),
    )
}

fn invoke(manifest: &Path, call: &str) -> std::process::Output {
    // The form from the docs: the flag after the manifest.
    run_weft(&[
        "run",
        "--no-cache",
        manifest.to_str().unwrap(),
        "--invoke",
        call,
    ])
}

#[test]
fn invoke_across_two_components_linked_and_composed_gives_the_same_result() {
    let dir = tempfile::tempdir().unwrap();
    for compose in ["never", "always", "auto"] {
        let m = sum_manifest(dir.path(), compose);
        let out = invoke(&m, "sum3(1, 2, 3)");
        assert_eq!(
            stdout(&out).trim(),
            "6",
            "compose {compose}: {}",
            stderr(&out)
        );
        let out = invoke(&m, "sum3(4000000000, 200000000, 94967296)");
        // u32 wrap-around happens inside `add`, in the calc component.
        assert_eq!(
            stdout(&out).trim(),
            "0",
            "compose {compose}: {}",
            stderr(&out)
        );
    }
}

#[test]
fn link_cycle_is_refused_with_the_cycle_named() {
    let dir = tempfile::tempdir().unwrap();
    let m = write(
        dir.path(),
        "cycle.yaml",
        &library_manifest(
            "never",
            &[
                ("ping", wat_fixture("ping.wat"), ""),
                ("pong", wat_fixture("pong.wat"), ""),
            ],
        ),
    );
    let out = invoke(&m, "test:ping/f.f()");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(
            "the components' links form a cycle: ping -> pong -> ping (`ping` imports \
             `test:pong/f` from `pong`, `pong` imports `test:ping/f` from `ping`)"
        ),
        "{err}"
    );
    let out = run_weft(&["inspect", m.to_str().unwrap()]);
    assert!(
        stdout(&out).contains("links: REFUSED: the components' links form a cycle"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn ambiguous_exporters_are_refused_unless_links_choose() {
    let dir = tempfile::tempdir().unwrap();
    let calc = wat_fixture("calc-ops.wat");
    let two = [
        ("sum", wat_fixture("sum3.wat"), ""),
        ("calc", calc.clone(), ""),
        ("calc-v2", calc.clone(), ""),
    ];
    let m = write(dir.path(), "amb.yaml", &library_manifest("never", &two));
    let out = invoke(&m, "sum3(1, 1, 1)");
    let err = stderr(&out);
    assert!(
        err.contains(
            "component `sum` imports `example:calc/ops@1.0.0`, which is exported by `calc` and `calc-v2`"
        ),
        "{err}"
    );
    let chosen = [
        (
            "sum",
            wat_fixture("sum3.wat"),
            "      links: { \"example:calc/ops\": calc-v2 }\n",
        ),
        ("calc", calc.clone(), ""),
        ("calc-v2", calc, ""),
    ];
    let m = write(
        dir.path(),
        "chosen.yaml",
        &library_manifest("never", &chosen),
    );
    let out = invoke(&m, "sum3(1, 1, 1)");
    assert_eq!(stdout(&out).trim(), "3", "{}", stderr(&out));
    let out = run_weft(&["inspect", m.to_str().unwrap()]);
    let text = stdout(&out);
    assert!(
        text.contains("example:calc/ops@1.0.0") && text.contains("<- component calc-v2 [links]"),
        "{text}"
    );
}

#[test]
fn import_nobody_satisfies_fails_with_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let m = write(
        dir.path(),
        "alone.yaml",
        &library_manifest("auto", &[("sum", wat_fixture("sum3.wat"), "")]),
    );
    let out = invoke(&m, "sum3(1, 1, 1)");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(
            "component `sum` imports `example:calc/ops@1.0.0`, which no other component of the \
             workload exports and no granted host interface provides"
        ),
        "{err}"
    );
}

#[test]
fn inspect_prints_the_world_and_the_link_graph() {
    let out = run_weft(&["inspect", wat_fixture("sum3.wat").to_str().unwrap()]);
    let text = stdout(&out);
    assert!(text.contains("kind:     component"), "{text}");
    assert!(text.contains("interface example:calc/ops@1.0.0"), "{text}");
    assert!(
        text.contains("export sum3: func(a: u32, b: u32, c: u32) -> u32;"),
        "{text}"
    );
    assert!(text.contains("add: func(a: u32, b: u32) -> u32;"), "{text}");

    let dir = tempfile::tempdir().unwrap();
    let m = sum_manifest(dir.path(), "auto");
    let out = run_weft(&["inspect", m.to_str().unwrap()]);
    let text = stdout(&out);
    assert!(text.contains("<- component calc"), "{text}");
    assert!(text.contains("instantiation order: calc, sum"), "{text}");
    assert!(
        text.contains("group calc + sum (root sum): composed into one component"),
        "{text}"
    );
    let m = sum_manifest(dir.path(), "never");
    let text = stdout(&run_weft(&["inspect", m.to_str().unwrap()]));
    assert!(
        text.contains("linked at run time (compose: never)"),
        "{text}"
    );
}

#[test]
fn compose_writes_one_component_that_runs_alone() {
    let dir = tempfile::tempdir().unwrap();
    let m = sum_manifest(dir.path(), "auto");
    let out_file = dir.path().join("fused.wasm");
    let out = run_weft(&[
        "compose",
        m.to_str().unwrap(),
        "-o",
        out_file.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let info = run_weft(&["inspect", out_file.to_str().unwrap()]);
    assert!(stdout(&info).contains("imports: none"), "{}", stdout(&info));
    let out = run_weft(&[
        "run",
        "--invoke",
        "sum3(10, 20, 30)",
        out_file.to_str().unwrap(),
    ]);
    assert_eq!(stdout(&out).trim(), "60", "{}", stderr(&out));
}

#[test]
fn resources_cross_components_linked_at_run_time_as_when_composed() {
    let dir = tempfile::tempdir().unwrap();
    let parts = [
        ("consumer", wat_fixture("counter-consumer.wat"), ""),
        ("provider", wat_fixture("counter-provider.wat"), ""),
    ];
    // Each call runs in a fresh store; the expected values follow from the fixtures
    // (tests/fixtures/wat/counter-src): a counter made by the provider, used through its handle.
    let calls = [
        // made with 5, bumped twice by 3, dropped
        ("run(5, 3)", "11"),
        // own round trip through `pass`, a borrow (`peek`: 8, the state set before), handed
        // over for good (`finish`: 11, the provider drops it), nothing left alive
        ("handoff(5, 3)", "(8, 11, 0)"),
        // five made and dropped: five destructor runs, none alive
        ("churn(5)", "(5, 0)"),
        // handles inside a list: 10 + 11 + 12, three alive, then none
        ("many(3, 10)", "(33, 3, 0)"),
        // handles inside a result
        ("attempt(7)", "ok(7)"),
        ("attempt(0)", "err(42)"),
    ];
    let mut outputs: Vec<Vec<String>> = Vec::new();
    for compose in ["never", "always", "auto"] {
        let m = write(
            dir.path(),
            &format!("res-{compose}.yaml"),
            &library_manifest(compose, &parts),
        );
        let mut got = Vec::new();
        for (call, want) in calls {
            let out = invoke(&m, call);
            assert_eq!(
                stdout(&out).trim(),
                want,
                "compose {compose}, {call}: {}",
                stderr(&out)
            );
            assert!(out.status.success(), "compose {compose}, {call}");
            got.push(stdout(&out));
        }
        outputs.push(got);
    }
    // Linked at run time and composed print exactly the same.
    assert_eq!(outputs[0], outputs[1]);
    assert_eq!(outputs[1], outputs[2]);
}

#[test]
fn linking_an_exporter_without_the_imported_resource_type_is_refused_precisely() {
    let dir = tempfile::tempdir().unwrap();
    let m = write(
        dir.path(),
        "hollow.yaml",
        &library_manifest(
            "never",
            &[
                ("consumer", wat_fixture("counter-consumer.wat"), ""),
                ("provider", wat_fixture("counter-hollow.wat"), ""),
            ],
        ),
    );
    let out = invoke(&m, "run(5, 3)");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(
            "component `consumer` imports `test:counter/api@1.0.0` from `provider`, which does \
             not export the resource type `counter` in `test:counter/api@1.0.0`"
        ),
        "{err}"
    );
}

#[test]
fn a_resource_type_two_imported_interfaces_share_crosses_linked_as_composed() {
    // `ops` names `types.cell` through `use`: the consumer's imports share one resource type,
    // which linking must define once (as `types.cell`) for both.
    let dir = tempfile::tempdir().unwrap();
    let parts = [
        ("consumer", wat_fixture("shapes-consumer.wat"), ""),
        ("provider", wat_fixture("shapes-provider.wat"), ""),
    ];
    for compose in ["never", "always"] {
        let m = write(
            dir.path(),
            &format!("shapes-{compose}.yaml"),
            &library_manifest(compose, &parts),
        );
        // get(double(cell(7))) + get(cell(7))
        let out = invoke(&m, "go(7)");
        assert_eq!(
            stdout(&out).trim(),
            "21",
            "compose {compose}: {}",
            stderr(&out)
        );
    }
}
