//! `weft run` against real Rust guests: a P2 command component, the same program as a
//! preview 1 core module, and a P3 command.
// Test code: a failed unwrap is a test failure with a location (docs/lints.md).
#![allow(clippy::unwrap_used)]

mod common;
use common::*;

fn both_cli_flavours() -> Vec<std::path::PathBuf> {
    vec![guest("cli-hello.wasm"), guest("cli-hello.p1.wasm")]
}

#[test]
fn hello_and_args_pass_through() {
    for g in both_cli_flavours() {
        let g = g.to_str().unwrap();
        let out = run_weft(&["run", g]);
        assert_eq!(out.status.code(), Some(0), "{g}: {}", stderr(&out));
        assert!(
            stdout(&out).contains("hello from weft guest"),
            "{g}: {}",
            stdout(&out)
        );

        let out = run_weft(&["run", g, "args", "one", "--two", "thr ee"]);
        let lines: Vec<String> = stdout(&out).lines().map(str::to_string).collect();
        let name = std::path::Path::new(g)
            .file_name()
            .unwrap()
            .to_str()
            .unwrap();
        assert_eq!(lines, vec![name, "args", "one", "--two", "thr ee"], "{g}");
    }
}

#[test]
fn env_is_only_what_was_granted() {
    // SAFETY-free: set on the child only.
    for g in both_cli_flavours() {
        let out = weft()
            .env("WEFT_TEST_SECRET", "host-secret")
            .args(["run", "--env", "GREETING=hi there"])
            .arg(&g)
            .args(["env", "GREETING"])
            .output()
            .unwrap();
        assert_eq!(stdout(&out).trim(), "hi there", "{}", stderr(&out));
        let out = weft()
            .env("WEFT_TEST_SECRET", "host-secret")
            .arg("run")
            .arg(&g)
            .args(["env", "WEFT_TEST_SECRET"])
            .output()
            .unwrap();
        assert_eq!(
            stdout(&out).trim(),
            "<unset>",
            "the host environment must not leak"
        );
        // `--env NAME` passes the host's value explicitly.
        let out = weft()
            .env("WEFT_TEST_SECRET", "host-secret")
            .args(["run", "--env", "WEFT_TEST_SECRET"])
            .arg(&g)
            .args(["env", "WEFT_TEST_SECRET"])
            .output()
            .unwrap();
        assert_eq!(stdout(&out).trim(), "host-secret");
    }
}

#[test]
fn dirs_are_preopened_and_confined() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("note.txt"), "file content\n").unwrap();
    let grant = format!("{}::/data", dir.path().display());
    // The p1 flavour: wasip2 std programs trap on preopens (see tests/fixtures/guests/README.md).
    let g = guest("cli-hello.p1.wasm");
    let out = run_weft(&[
        "run",
        "--dir",
        &grant,
        g.to_str().unwrap(),
        "cat",
        "/data/note.txt",
    ]);
    assert_eq!(stdout(&out), "file content\n", "{}", stderr(&out));

    let out = run_weft(&[
        "run",
        "--dir",
        &grant,
        g.to_str().unwrap(),
        "write",
        "/data/new.txt",
        "written",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("new.txt"))
            .unwrap()
            .trim(),
        "written"
    );

    // Nothing outside the grant is reachable.
    let out = run_weft(&[
        "run",
        "--dir",
        &grant,
        g.to_str().unwrap(),
        "cat",
        "/etc/passwd",
    ]);
    assert_ne!(out.status.code(), Some(0));
    assert!(!stdout(&out).contains("root:"));
    let out = run_weft(&[
        "run",
        "--dir",
        &grant,
        g.to_str().unwrap(),
        "cat",
        "/data/../../../etc/passwd",
    ]);
    assert_ne!(out.status.code(), Some(0));
    assert!(!stdout(&out).contains("root:"));

    // Read-only grants refuse writes.
    let ro = format!("{}::/data:ro", dir.path().display());
    let out = run_weft(&[
        "run",
        "--dir",
        &ro,
        g.to_str().unwrap(),
        "write",
        "/data/other.txt",
        "x",
    ]);
    assert_ne!(out.status.code(), Some(0));
    assert!(!dir.path().join("other.txt").exists());
}

#[test]
fn exit_codes_and_stderr_pass_through() {
    // A preview 1 module's proc_exit code passes through as is.
    let p1 = guest("cli-hello.p1.wasm");
    let out = run_weft(&["run", p1.to_str().unwrap(), "exit", "42"]);
    assert_eq!(out.status.code(), Some(42), "{}", stderr(&out));
    // The wasmtime 48 command adapter turns any non-zero exit into `exit(err)`: status 1,
    // exactly what `wasmtime run` reports for the same component.
    let p2 = guest("cli-hello.wasm");
    let out = run_weft(&["run", p2.to_str().unwrap(), "exit", "42"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    for g in both_cli_flavours() {
        let out = run_weft(&["run", g.to_str().unwrap(), "stderr", "to the error stream"]);
        assert!(stderr(&out).contains("to the error stream"));
        assert!(!stdout(&out).contains("to the error stream"));
    }
}

#[test]
fn guest_panic_is_a_trap_with_exit_134() {
    let g = guest("cli-hello.wasm");
    let out = run_weft(&["run", g.to_str().unwrap(), "trap"]);
    assert_eq!(out.status.code(), Some(134), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("wasm backtrace") || stderr(&out).contains("unreachable"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn no_network_unless_inherited() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let g = guest("cli-hello.wasm");
    let out = run_weft(&["run", g.to_str().unwrap(), "connect", &addr]);
    assert!(
        stdout(&out).contains("error"),
        "denied by default: {}",
        stdout(&out)
    );
    let out = run_weft(&[
        "run",
        "--inherit-network",
        g.to_str().unwrap(),
        "connect",
        &addr,
    ]);
    assert!(
        stdout(&out).contains("connected"),
        "{} {}",
        stdout(&out),
        stderr(&out)
    );
}

#[test]
fn memory_limit_and_timeout_contain_real_guests() {
    let g = guest("cli-hello.wasm");
    let out = run_weft(&[
        "run",
        "--max-memory",
        "32M",
        g.to_str().unwrap(),
        "alloc",
        "256",
    ]);
    assert_ne!(out.status.code(), Some(0));
    assert!(!stdout(&out).contains("allocated"));
    let out = run_weft(&["run", g.to_str().unwrap(), "alloc", "16"]);
    assert!(stdout(&out).contains("allocated"), "{}", stderr(&out));

    let out = run_weft(&["run", "--timeout", "500ms", g.to_str().unwrap(), "loop"]);
    assert_eq!(out.status.code(), Some(134), "{}", stderr(&out));
}

#[test]
fn p3_command_runs_and_reports_failure() {
    let g = guest("p3-cli.wasm");
    let out = run_weft(&["run", g.to_str().unwrap(), "x", "y"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("hello from p3 cli"), "{text}");
    assert!(text.contains('x') && text.contains('y'), "{text}");
    let out = run_weft(&["run", g.to_str().unwrap(), "fail"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
}

#[test]
fn http_component_under_run_points_to_serve() {
    let g = guest("http-hello.wasm");
    let out = run_weft(&["run", g.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("weft serve"), "{}", stderr(&out));
}
