//! `weft new`, `weft build` and `weft dev` end to end (docs/distribution.md): every template is
//! generated, built by its own `build` section with the guest toolchain the suite installs
//! (tests/fixtures/template-cargo.sh stands in for a rustup `cargo` with the wasm target), and
//! served by a real `weft up`; `weft dev` rebuilds and redeploys an edited template with no
//! failed request, and keeps the old version serving when the edit does not compile.
// Test code: a failed unwrap is a test failure with a location (docs/lints.md).
#![allow(clippy::unwrap_used)]

mod common;
use common::*;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

/// A directory whose `cargo` is the template shim, to put first on PATH. Fails loudly when
/// the guest toolchain is missing (scripts/test.sh installs it with the guest fixtures).
fn shim_path(dir: &Path) -> String {
    for f in ["/usr/bin/cargo", "/usr/bin/rustc", "/usr/bin/wasm-ld-22"] {
        assert!(
            Path::new(f).exists(),
            "{f} is missing: these tests build templates with Debian's rustc-web; run \
             tests/fixtures/build-guests.sh (scripts/test.sh does) to install it"
        );
    }
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let shim = repo_root().join("tests/fixtures/template-cargo.sh");
    let link = bin.join("cargo");
    if !link.exists() {
        std::os::unix::fs::symlink(&shim, &link).unwrap();
    }
    let path = std::env::var("PATH").unwrap_or_default();
    format!("{}:{path}", bin.display())
}

fn new_project(dir: &Path, template: &str, name: &str) -> PathBuf {
    let out = weft()
        .current_dir(dir)
        .args(["new", template, name])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "weft new {template}: {}",
        stderr(&out)
    );
    assert!(stdout(&out).contains("weft dev"), "{}", stdout(&out));
    dir.join(name)
}

fn build(project: &Path, path: &str) {
    let out = weft()
        .current_dir(project)
        .env("PATH", path)
        .arg("build")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "weft build in {}: {}{}",
        project.display(),
        stdout(&out),
        stderr(&out)
    );
}

#[test]
fn every_template_generates_builds_and_serves() {
    let dir = tempfile::tempdir().unwrap();
    let path = shim_path(dir.path());
    let list = run_weft(&["new", "--list"]);
    let listed = stdout(&list);
    let templates = [
        ("http-rust", "t-http"),
        ("http-rust-p3", "t-p3"),
        ("kv-counter", "t-kv"),
        ("service", "t-svc"),
        ("http-middleware", "t-mw"),
        ("messaging-transform", "t-msg"),
    ];
    let mut projects = Vec::new();
    for (template, name) in templates {
        assert!(listed.contains(template), "{template} not in {listed}");
        let p = new_project(dir.path(), template, name);
        build(&p, &path);
        projects.push((template, name, p));
    }
    let up = Up::start(&dir.path().join("data"));
    for (_, _, p) in &projects {
        up.deploy_ok(&p.join("weft.yaml"));
    }
    let body = |host: &str| {
        let r = up.get(&format!("{host}.localhost"), "/");
        (r.status, r.text().trim().to_string())
    };
    assert_eq!(body("t-http"), (200, "Hello from t-http!".to_string()));
    assert_eq!(body("t-p3"), (200, "Hello from t-p3!".to_string()));
    assert_eq!(body("t-kv"), (200, "count=1".to_string()));
    assert_eq!(body("t-kv"), (200, "count=2".to_string()));
    let (status, text) = body("t-svc");
    assert_eq!(status, 200, "{text}");
    assert!(text.starts_with("backend says: count=1"), "{text}");
    assert!(body("t-svc").1.starts_with("backend says: count=2"));
    assert_eq!(body("t-mw").0, 401);
    let r = request(
        up.http,
        "GET",
        "/",
        &[
            ("Host", "t-mw.localhost"),
            ("Authorization", "Bearer t-mw-token"),
        ],
        b"",
    );
    assert_eq!(
        (r.status, r.text().trim()),
        (200, "Hello from t-mw!"),
        "through the composed middleware"
    );
    // The messaging transform has no HTTP route: it is running, subscribed on the in-process
    // bus (its messages are tested with a real NATS server in tests/messaging.rs).
    let out = up.cli(&["get", "workloads", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let msg = v["workloads"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["name"] == "t-msg")
        .cloned()
        .unwrap();
    assert_eq!(msg["status"], "Running", "{msg}");
    up.stop();
}

/// A running `weft dev`, killed on drop; its stderr lines arrive on `lines`.
struct Dev {
    child: Child,
    addr: std::net::SocketAddr,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Dev {
    fn start(project: &Path, path: &str, manifest: Option<&Path>) -> Dev {
        let mut cmd = weft();
        cmd.current_dir(project)
            .env("PATH", path)
            .args(["dev", "--addr", "127.0.0.1:0"]);
        if let Some(m) = manifest {
            cmd.arg(m);
        }
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, rx) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut dev = Dev {
            child,
            addr: "127.0.0.1:1".parse().unwrap(),
            lines: rx,
            seen: Vec::new(),
        };
        let line = dev.wait_line("Serving HTTP on", Duration::from_secs(300));
        // The watcher is set up before this line; a change from now on is seen.
        dev.wait_line("Watching ", Duration::from_secs(10));
        dev.addr = line
            .trim_start_matches("Serving HTTP on http://")
            .trim_end_matches('/')
            .parse()
            .unwrap();
        dev
    }

    /// The first line from now on containing `needle`.
    fn wait_line(&mut self, needle: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(line) = self.lines.recv_timeout(Duration::from_millis(100)) {
                self.seen.push(line.clone());
                if line.contains(needle) {
                    return line;
                }
            }
        }
        panic!(
            "weft dev printed no `{needle}` within {within:?}:\n{}",
            self.seen.join("\n")
        );
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn dev_rebuilds_on_edit_without_a_failed_request_and_keeps_serving_through_a_broken_build() {
    let dir = tempfile::tempdir().unwrap();
    let path = shim_path(dir.path());
    let project = new_project(dir.path(), "http-rust", "dev-app");
    let mut dev = Dev::start(&project, &path, None);
    let addr = dev.addr;
    let get = move || request(addr, "GET", "/", &[("Host", "dev-app.localhost")], b"");
    assert_eq!(get().text().trim(), "Hello from dev-app!");

    // Clients all along: every request must succeed, before, during and after the swap.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let client = {
        let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(400);
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                let r = get();
                if r.status == 200 && r.text().contains("from dev-app!") {
                    ok.fetch_add(1, Ordering::Relaxed);
                } else {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };

    let src = project.join("src/lib.rs");
    let text = std::fs::read_to_string(&src).unwrap();
    assert!(text.contains("Hello from"), "{text}");
    std::fs::write(&src, text.replace("Hello from", "Howdy from")).unwrap();
    let started = Instant::now();
    let deadline = started + Duration::from_secs(180);
    while get().text().trim() != "Howdy from dev-app!" {
        assert!(
            Instant::now() < deadline,
            "the edit was not served within 180 s:\n{}",
            dev.seen.join("\n")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let swapped_in = started.elapsed();
    dev.wait_line("Deployed dev-app (version 2)", Duration::from_secs(5));

    // An edit that does not compile: the compiler's error is printed, the old version serves.
    std::fs::write(
        &src,
        format!(
            "{}\nfn broken( {{\n",
            text.replace("Hello from", "Howdy from")
        ),
    )
    .unwrap();
    dev.wait_line("Build failed", Duration::from_secs(180));
    assert!(
        dev.seen.iter().any(|l| l.contains("unclosed delimiter")),
        "no compiler error shown:\n{}",
        dev.seen.join("\n")
    );
    dev.wait_line("keeps serving", Duration::from_secs(5));
    assert_eq!(get().text().trim(), "Howdy from dev-app!");

    stop.store(true, Ordering::Relaxed);
    client.join().unwrap();
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    assert!(ok > 10, "only {ok} requests ran");
    assert_eq!(failed, 0, "{failed} of {} requests failed", ok + failed);
    eprintln!("edit served after {swapped_in:?}; {ok} requests, none failed");
}

/// `weft dev` explains a denied capability once, with the manifest lines that grant it; the
/// suggested lines, pasted into the manifest, make the same request succeed after the
/// redeploy `weft dev` does on its own. Nothing is granted before the edit.
#[test]
fn dev_explains_a_denied_connect_and_its_suggested_lines_grant_it() {
    let dir = tempfile::tempdir().unwrap();
    let echo = tcp_echo("127.0.0.1:0", "echo");
    let port = echo.port();
    let manifest = |sockets: &str| {
        format!(
            "apiVersion: weft.dev/v1alpha1\nkind: Workload\nmetadata:\n  name: probe\nspec:\n  components:\n    - name: api\n      image: {}\n      localResources:\n        sockets:\n          - {{ port: 1 }}\n{sockets}  hostInterfaces:\n    - namespace: wasi\n      package: http\n      interfaces: [incoming-handler]\n      config: {{ host: probe.localhost, path: / }}\n",
            guest("net-probe.wasm").display()
        )
    };
    let file = dir.path().join("weft.yaml");
    std::fs::write(&file, manifest("")).unwrap();
    let mut dev = Dev::start(dir.path(), &std::env::var("PATH").unwrap_or_default(), None);
    assert!(
        dev.seen
            .iter()
            .any(|l| l.starts_with("Deployed probe (version 1)")),
        "{:?}",
        dev.seen
    );
    let addr = dev.addr;
    let probe = move || {
        request(
            addr,
            "GET",
            &format!("/tcp?addr=127.0.0.1:{port}&msg=hi"),
            &[("Host", "probe.localhost")],
            b"",
        )
        .text()
    };
    assert_eq!(probe(), "error: access-denied");
    assert_eq!(
        probe(),
        "error: access-denied",
        "nothing is granted automatically"
    );
    let first = dev.wait_line("Denied [probe]", Duration::from_secs(10));
    assert!(
        first.contains(&format!(
            "component api was denied a TCP connect to 127.0.0.1:{port}; to allow it, add to \
             spec.components[0].localResources.sockets:"
        )),
        "{first}"
    );
    let rule = format!("- {{ port: {port}, protocol: tcp }}");
    let next = dev.wait_line("port", Duration::from_secs(5));
    assert_eq!(next.trim(), rule, "the suggested line");
    // Once: the second denial of the same connect printed nothing more.
    std::thread::sleep(Duration::from_millis(300));
    while let Ok(line) = dev.lines.try_recv() {
        assert!(!line.contains("Denied [probe]"), "printed twice: {line}");
        dev.seen.push(line);
    }

    // Paste the suggestion where it says: weft dev redeploys the manifest and the connect works.
    std::fs::write(&file, manifest(&format!("          {rule}\n"))).unwrap();
    dev.wait_line("Deployed probe (version 2)", Duration::from_secs(30));
    assert_eq!(probe(), "ok: echo:hi");
    eprintln!("weft dev output:\n{}", dev.seen.join("\n"));
}
