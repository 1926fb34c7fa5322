//! `weft run` against in-repo WAT fixtures: fast, no toolchain needed.
// Test code: a failed unwrap is a test failure with a location (docs/lints.md).
#![allow(clippy::unwrap_used)]

mod common;
use common::*;

#[test]
fn p1_module_stdout_and_exit_code_pass_through() {
    let f = wat_fixture("hello-p1.wat");
    let out = run_weft(&["run", f.to_str().unwrap(), "a", "--b", "c"]);
    assert_eq!(stdout(&out), "hello from a p1 module\n");
    // The module exits with argc - 1: three arguments after the file.
    assert_eq!(out.status.code(), Some(3), "stderr: {}", stderr(&out));
}

#[test]
fn trap_prints_backtrace_with_function_names_and_exits_134() {
    let f = wat_fixture("trap-p1.wat");
    let out = run_weft(&["run", f.to_str().unwrap()]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(134), "{err}");
    assert!(err.contains("inner_function_that_traps"), "{err}");
    assert!(err.contains("unreachable"), "{err}");
}

#[test]
fn timeout_interrupts_an_endless_loop() {
    let f = wat_fixture("spin-p1.wat");
    let start = std::time::Instant::now();
    let out = run_weft(&["run", "--timeout", "300ms", f.to_str().unwrap()]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(134), "{err}");
    assert!(err.contains("--timeout"), "{err}");
    assert!(start.elapsed() < std::time::Duration::from_secs(30));
}

#[test]
fn max_memory_makes_growth_fail_inside_the_guest() {
    let f = wat_fixture("grow-p1.wat");
    let ok = run_weft(&["run", f.to_str().unwrap()]);
    assert_eq!(ok.status.code(), Some(0), "{}", stderr(&ok));
    let limited = run_weft(&["run", "--max-memory", "4M", f.to_str().unwrap()]);
    assert_eq!(limited.status.code(), Some(7), "{}", stderr(&limited));
}

#[test]
fn invoke_calls_root_and_interface_exports_with_wave() {
    let f = wat_fixture("add.wat");
    let f = f.to_str().unwrap();
    let out = run_weft(&["run", "--invoke", "add(2, 3)", f]);
    assert_eq!(stdout(&out).trim(), "5", "{}", stderr(&out));
    let out = run_weft(&["run", "--invoke", "example:calc/ops.mul(6, 7)", f]);
    assert_eq!(stdout(&out).trim(), "42", "{}", stderr(&out));
    let out = run_weft(&["run", "--invoke", "example:calc/ops.mul@1.0.0(3, 3)", f]);
    assert_eq!(stdout(&out).trim(), "9", "{}", stderr(&out));
    // `mul` exists only inside the interface: found by search.
    let out = run_weft(&["run", "--invoke", "mul(2, 2)", f]);
    assert_eq!(stdout(&out).trim(), "4", "{}", stderr(&out));
}

#[test]
fn invoke_errors_are_precise() {
    let f = wat_fixture("add.wat");
    let f = f.to_str().unwrap();
    let out = run_weft(&["run", "--invoke", "nope()", f]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("no function `nope`"), "{err}");
    assert!(err.contains("example:calc/ops@1.0.0.mul"), "{err}");
    let out = run_weft(&["run", "--invoke", "add(1, \"x\")", f]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("invalid arguments"),
        "{}",
        stderr(&out)
    );
    let out = run_weft(&["run", "--invoke", "add(1,", f]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("cannot parse --invoke"),
        "{}",
        stderr(&out)
    );
    let out = run_weft(&["run", "--invoke", "trap()", f]);
    assert_eq!(out.status.code(), Some(134), "{}", stderr(&out));
}

#[test]
fn library_component_without_invoke_says_which_command_fits() {
    let f = wat_fixture("add.wat");
    let out = run_weft(&["run", f.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("library component"), "{err}");
    assert!(err.contains("--invoke"), "{err}");
}

#[test]
fn serve_refuses_a_non_http_component_with_the_fitting_command() {
    let f = wat_fixture("add.wat");
    let out = run_weft(&["serve", "--addr", "127.0.0.1:0", f.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("not an HTTP handler"), "{err}");
    assert!(err.contains("weft run --invoke"), "{err}");
}

#[test]
fn unsatisfied_import_is_named() {
    let f = wat_fixture("needs-kv.wat");
    let out = run_weft(&["run", f.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("wasi:keyvalue/store@0.2.0-draft"), "{err}");
    assert!(err.contains("does not provide"), "{err}");
}

#[test]
fn missing_and_non_wasm_files_get_clear_errors() {
    let out = run_weft(&["run", "/definitely/not/here.wasm"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no such file"), "{}", stderr(&out));

    let dir = tempfile::tempdir().unwrap();
    let bogus = dir.path().join("bogus.wasm");
    std::fs::write(&bogus, b"PK\x03\x04 this is a zip").unwrap();
    let out = run_weft(&["run", bogus.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("not a WebAssembly file"), "{err}");
    assert!(!err.contains("panicked"), "{err}");

    let truncated = dir.path().join("truncated.wasm");
    std::fs::write(&truncated, b"\0asm\x01\x00\x00\x00\x01\xff").unwrap();
    let out = run_weft(&["run", truncated.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("invalid or unsupported"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn compile_cache_is_written_and_reused_and_no_cache_bypasses_it() {
    let cache = tempfile::tempdir().unwrap();
    let f = wat_fixture("add.wat");
    let run = |extra: &[&str]| {
        let mut cmd = weft();
        cmd.env("WEFT_CACHE_DIR", cache.path())
            .env("WEFT_LOG", "weft=info,weft_runtime=debug")
            .arg("run")
            .args(extra)
            .args(["--invoke", "add(1, 1)"])
            .arg(&f);
        cmd.output().unwrap()
    };
    let first = run(&[]);
    assert_eq!(stdout(&first).trim(), "2");
    assert!(
        stderr(&first).contains("cache_hit=false"),
        "{}",
        stderr(&first)
    );
    let second = run(&[]);
    assert!(
        stderr(&second).contains("cache_hit=true"),
        "{}",
        stderr(&second)
    );
    let bypass = run(&["--no-cache"]);
    assert!(
        stderr(&bypass).contains("cache_hit=false"),
        "{}",
        stderr(&bypass)
    );
}
