//! `weft up` workloads get exactly the host interfaces their manifest grants: wasi:config,
//! wasi:logging, wasi:cli/environment (only `localResources.environment`) and wasi:filesystem
//! (only the declared `volumeMounts`, `readOnly` honoured). A real host process, the real
//! `plugins-probe` guest (tests/fixtures/guests/plugins-probe), real loopback HTTP.
// Test code: a failed unwrap is a test failure with a location (docs/lints.md).
#![allow(clippy::unwrap_used)]

mod common;
use common::*;
use std::path::{Path, PathBuf};

/// The name the probe component has in every manifest here.
const COMPONENT: &str = "inspector";

/// What a probe workload is granted besides `wasi:http` (served at `NAME.localhost/`).
struct Grants<'a> {
    /// Lines under the component's `localResources:` (8-space indent).
    resources: &'a str,
    /// Lines under `spec:` after `hostInterfaces` (2-space indent), e.g. `volumes:`.
    spec: &'a str,
    config: bool,
    logging: bool,
}

impl Default for Grants<'_> {
    fn default() -> Self {
        Grants {
            resources: "",
            spec: "",
            config: true,
            logging: true,
        }
    }
}

fn probe_manifest(name: &str, g: &Grants<'_>) -> String {
    let mut m = format!(
        "apiVersion: weft.dev/v1alpha1\nkind: Workload\nmetadata:\n  name: {name}\nspec:\n  components:\n    - name: {COMPONENT}\n      image: {}\n",
        guest("plugins-probe.wasm").display()
    );
    if !g.resources.is_empty() {
        m.push_str("      localResources:\n");
        m.push_str(g.resources);
    }
    m.push_str(&format!(
        "  hostInterfaces:\n    - {{ namespace: wasi, package: http, interfaces: [incoming-handler], config: {{ host: {name}.localhost, path: / }} }}\n"
    ));
    if g.config {
        m.push_str("    - { namespace: wasi, package: config, interfaces: [store] }\n");
    }
    if g.logging {
        m.push_str("    - { namespace: wasi, package: logging, interfaces: [logging] }\n");
    }
    m.push_str(g.spec);
    m
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write manifest");
    p
}

/// Deploys a probe workload `name`.
fn deploy_probe(up: &Up, dir: &Path, name: &str, g: &Grants<'_>) {
    let file = write(dir, &format!("{name}.yaml"), &probe_manifest(name, g));
    up.deploy_ok(&file);
}

/// `(status, body)` of `GET path` on workload `name`.
fn probe(up: &Up, name: &str, path: &str) -> (u16, String) {
    let r = up.get(&format!("{name}.localhost"), path);
    (r.status, r.text())
}

#[test]
fn config_serves_the_components_own_values_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let up = Up::start(&dir.path().join("data"));
    deploy_probe(
        &up,
        dir.path(),
        "cfg-a",
        &Grants {
            resources: "        config: { greeting: hello-a, only_a: secret-a, spaced: \"x y\" }\n",
            ..Grants::default()
        },
    );
    deploy_probe(
        &up,
        dir.path(),
        "cfg-b",
        &Grants {
            resources: "        config: { greeting: hello-b }\n",
            ..Grants::default()
        },
    );

    assert_eq!(
        probe(&up, "cfg-a", "/config?key=greeting"),
        (200, "hello-a".into())
    );
    assert_eq!(
        probe(&up, "cfg-a", "/config?key=only_a"),
        (200, "secret-a".into())
    );
    assert_eq!(
        probe(&up, "cfg-a", "/config?key=spaced"),
        (200, "x y".into())
    );
    assert_eq!(
        probe(&up, "cfg-b", "/config?key=greeting"),
        (200, "hello-b".into())
    );
    // Another workload's key is not visible, neither by name nor in get-all.
    assert_eq!(
        probe(&up, "cfg-b", "/config?key=only_a"),
        (404, "<absent>".into())
    );
    assert_eq!(
        probe(&up, "cfg-b", "/config-all"),
        (200, "greeting=hello-b\n".into())
    );
    assert_eq!(
        probe(&up, "cfg-a", "/config-all"),
        (
            200,
            "greeting=hello-a\nonly_a=secret-a\nspaced=x y\n".into()
        )
    );
    assert_eq!(
        probe(&up, "cfg-a", "/config?key=missing"),
        (404, "<absent>".into())
    );
}

#[test]
fn logging_reaches_weft_logs_tagged_with_the_component() {
    let dir = tempfile::tempdir().unwrap();
    let up = Up::start(&dir.path().join("data"));
    deploy_probe(&up, dir.path(), "logger", &Grants::default());
    assert_eq!(
        probe(&up, "logger", "/log?msg=hello-probe"),
        (200, "logged".into())
    );
    let out = up.cli(&["logs", "logger"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let logs = stdout(&out);
    let line = logs
        .lines()
        .find(|l| l.contains("hello-probe"))
        .unwrap_or_else(|| panic!("no `hello-probe` in weft logs:\n{logs}"));
    assert!(line.contains(COMPONENT), "{line}");
    assert!(line.contains("info"), "{line}");
    assert!(line.contains("probe"), "{line}");
}

#[test]
fn environment_is_the_manifests_and_never_the_hosts() {
    let dir = tempfile::tempdir().unwrap();
    let up = Up::start_with_env(
        &dir.path().join("data"),
        &[("WEFT_PROBE_SECRET", "host-secret-value")],
    );
    deploy_probe(
        &up,
        dir.path(),
        "envy",
        &Grants {
            resources: "        environment: { A: b }\n",
            ..Grants::default()
        },
    );
    deploy_probe(&up, dir.path(), "bare", &Grants::default());

    assert_eq!(probe(&up, "envy", "/env?name=A"), (200, "b".into()));
    for name in ["WEFT_PROBE_SECRET", "PATH", "HOME"] {
        assert_eq!(
            probe(&up, "envy", &format!("/env?name={name}")),
            (404, "<unset>".into()),
            "the host's {name} leaked into the guest"
        );
    }
    assert_eq!(probe(&up, "bare", "/env?name=A"), (404, "<unset>".into()));
    assert_eq!(
        probe(&up, "bare", "/env?name=WEFT_PROBE_SECRET"),
        (404, "<unset>".into())
    );
}

#[test]
fn filesystem_is_only_the_declared_mounts_and_read_only_is_honoured() {
    let dir = tempfile::tempdir().unwrap();
    let up = Up::start(&dir.path().join("data"));
    let rw_dir = dir.path().join("rw-vol");
    let ro_dir = dir.path().join("ro-vol");
    for d in [&rw_dir, &ro_dir] {
        std::fs::create_dir(d).unwrap();
        std::fs::write(d.join("x.txt"), "from the host\n").unwrap();
        std::os::unix::fs::symlink("x.txt", d.join("inner-link")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", d.join("escape-link")).unwrap();
    }
    let volume = |d: &Path| {
        format!(
            "  volumes:\n    - {{ name: data, hostPath: {{ localPath: {} }} }}\n",
            d.display()
        )
    };
    let rw_spec = volume(&rw_dir);
    let ro_spec = volume(&ro_dir);
    deploy_probe(
        &up,
        dir.path(),
        "fs-rw",
        &Grants {
            resources: "        volumeMounts: [ { name: data, mountPath: /data } ]\n",
            spec: &rw_spec,
            ..Grants::default()
        },
    );
    deploy_probe(
        &up,
        dir.path(),
        "fs-ro",
        &Grants {
            resources: "        volumeMounts: [ { name: data, mountPath: /data, readOnly: true } ]\n",
            spec: &ro_spec,
            ..Grants::default()
        },
    );
    deploy_probe(&up, dir.path(), "fs-none", &Grants::default());

    for w in ["fs-rw", "fs-ro"] {
        assert_eq!(probe(&up, w, "/preopens"), (200, "/data\n".into()), "{w}");
        assert_eq!(
            probe(&up, w, "/read?path=/data/x.txt"),
            (200, "from the host\n".into()),
            "{w}"
        );
        assert_eq!(
            probe(&up, w, "/read?path=/data/inner-link"),
            (200, "from the host\n".into()),
            "{w}: a symlink inside the volume"
        );
        assert_eq!(
            probe(&up, w, "/read?path=/data/missing.txt"),
            (404, "no-entry".into()),
            "{w}"
        );
        // Nothing outside the mount: not by absolute path, not by `..`, not by a symlink.
        for path in [
            "/etc/passwd",
            "/data/../../etc/passwd",
            "/data/../etc/passwd",
            "/data/escape-link",
        ] {
            let (status, body) = probe(&up, w, &format!("/read?path={path}"));
            assert_ne!(status, 200, "{w} read {path}: {body}");
            assert!(!body.contains("root:"), "{w} read {path}: {body}");
        }
        assert_eq!(
            probe(&up, w, "/read?path=/etc/passwd"),
            (404, "no-preopen".into()),
            "{w}"
        );
    }

    // Read-write: the file appears on the host, and an existing file can be replaced.
    assert_eq!(
        probe(
            &up,
            "fs-rw",
            "/write?path=/data/y.txt&text=written%20by%20the%20guest"
        ),
        (200, "wrote".into())
    );
    assert_eq!(
        std::fs::read_to_string(rw_dir.join("y.txt")).unwrap(),
        "written by the guest"
    );
    assert_eq!(
        probe(&up, "fs-rw", "/read?path=/data/y.txt"),
        (200, "written by the guest".into())
    );
    let (status, body) = probe(&up, "fs-rw", "/write?path=/data/../outside.txt&text=x");
    assert_eq!(status, 403, "{body}");
    assert!(!dir.path().join("outside.txt").exists());

    // Read-only: writes fail, nothing appears or changes on the host.
    let (status, body) = probe(&up, "fs-ro", "/write?path=/data/y.txt&text=nope");
    assert_eq!(status, 403, "{body}");
    assert!(
        ["read-only", "not-permitted", "access"].contains(&body.as_str()),
        "{body}"
    );
    assert!(
        !ro_dir.join("y.txt").exists(),
        "a read-only mount was written"
    );
    let (status, body) = probe(&up, "fs-ro", "/write?path=/data/x.txt&text=nope");
    assert_eq!(status, 403, "{body}");
    assert_eq!(
        std::fs::read_to_string(ro_dir.join("x.txt")).unwrap(),
        "from the host\n"
    );

    // No volumeMounts: no preopens at all.
    assert_eq!(probe(&up, "fs-none", "/preopens"), (200, String::new()));
    assert_eq!(
        probe(&up, "fs-none", "/read?path=/data/x.txt"),
        (404, "no-preopen".into())
    );
    assert_eq!(
        probe(&up, "fs-none", "/write?path=/data/z.txt&text=x"),
        (403, "no-preopen".into())
    );
}

#[test]
fn ungranted_plugin_imports_are_refused_with_the_entry_to_add() {
    let dir = tempfile::tempdir().unwrap();
    let up = Up::start(&dir.path().join("data"));

    let no_config = write(
        dir.path(),
        "no-config.yaml",
        &probe_manifest(
            "no-config",
            &Grants {
                config: false,
                ..Grants::default()
            },
        ),
    );
    let out = up.cli(&["deploy", no_config.to_str().unwrap()]);
    assert!(
        !out.status.success(),
        "deployed without the wasi:config grant"
    );
    let err = stderr(&out);
    assert!(err.contains("wasi:config/store"), "{err}");
    assert!(
        err.contains("namespace: wasi, package: config, interfaces: [store]"),
        "{err}"
    );
    assert!(err.contains("spec.components[0]"), "{err}");
    assert!(!err.contains("wasi:logging"), "logging was granted: {err}");
    assert_eq!(
        up.get("no-config.localhost", "/").status,
        404,
        "nothing was deployed"
    );

    let no_logging = write(
        dir.path(),
        "no-logging.yaml",
        &probe_manifest(
            "no-logging",
            &Grants {
                logging: false,
                ..Grants::default()
            },
        ),
    );
    let out = up.cli(&["deploy", no_logging.to_str().unwrap()]);
    assert!(
        !out.status.success(),
        "deployed without the wasi:logging grant"
    );
    let err = stderr(&out);
    assert!(err.contains("wasi:logging/logging"), "{err}");
    assert!(
        err.contains("namespace: wasi, package: logging, interfaces: [logging]"),
        "{err}"
    );
    assert!(!err.contains("wasi:config"), "config was granted: {err}");
    assert_eq!(up.get("no-logging.localhost", "/").status, 404);

    // With both grants the same component deploys and serves.
    let full = write(
        dir.path(),
        "full.yaml",
        &probe_manifest("full", &Grants::default()),
    );
    up.deploy_ok(&full);
    assert_eq!(probe(&up, "full", "/nothing"), (404, "not found".into()));
    assert_eq!(
        probe(&up, "full", "/config?key=k"),
        (404, "<absent>".into())
    );
}
