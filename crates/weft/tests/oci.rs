//! OCI distribution end to end (docs/distribution.md): `weft push` / `weft pull` and `weft up`
//! deploying `oci://` images from a real registry (Debian's `docker-registry`, the CNCF
//! distribution registry, on a loopback port): pinning a tag to its digest at deploy, a moved
//! tag changing nothing until the next deploy, a restart with the registry down still
//! serving, basic auth, and bad references refused with the manifest field named.
// Test code: a failed unwrap is a test failure with a location (docs/lints.md).
#![allow(clippy::unwrap_used)]

mod common;
use common::*;
use std::path::Path;
use weft_oci::testing::{PASSWORD, TestRegistry, USER};

const V1: &str = "Hello from weft!\n"; // http-hello
const V2: &str = "Hello from weft p3!\n"; // p3-service

fn manifest(name: &str, image: &str, host: &str) -> String {
    format!(
        "apiVersion: weft.dev/v1alpha1\nkind: Workload\nmetadata:\n  name: {name}\nspec:\n  components:\n    - name: app\n      image: {image}\n  hostInterfaces:\n    - namespace: wasi\n      package: http\n      interfaces: [incoming-handler]\n      config: {{ host: {host}, path: / }}\n"
    )
}

/// `weft ARGS` with its own blob store and extra environment.
fn weft_with(cache: &Path, env: &[(&str, &str)], args: &[&str]) -> std::process::Output {
    let mut cmd = weft();
    cmd.args(args)
        .env("WEFT_CACHE_DIR", cache)
        .env_remove("WEFT_REGISTRY_USERNAME")
        .env_remove("WEFT_REGISTRY_PASSWORD")
        .env_remove("WEFT_REGISTRY_HOST")
        .env("DOCKER_CONFIG", cache.join("no-docker-config"))
        .envs(env.iter().copied());
    cmd.output().expect("run weft")
}

fn ok(out: &std::process::Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what}: {}{}",
        stdout(out),
        stderr(out)
    );
    stdout(out)
}

/// The `sha256:...` on the line of `weft push`'s output that starts with `label`.
fn digest_line(out: &str, label: &str) -> String {
    out.lines()
        .find_map(|l| l.trim().strip_prefix(label))
        .map(|d| d.trim().to_string())
        .unwrap_or_else(|| panic!("no `{label}` line in {out}"))
}

/// The workload's pinned image as `weft get workloads -o json` shows it.
fn pinned_image(up: &Up, name: &str) -> String {
    let out = up.cli(&["get", "workloads", "-o", "json"]);
    let text = ok(&out, "weft get");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let list = v["workloads"].as_array().cloned().unwrap_or_default();
    let w = list
        .iter()
        .find(|w| w["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {text}"));
    w.to_string()
}

#[test]
fn push_deploy_by_tag_move_the_tag_redeploy_and_restart_with_the_registry_down() {
    let mut reg = TestRegistry::start();
    let dir = tempfile::tempdir().unwrap();
    let cli_cache = dir.path().join("cli-cache");
    let host_cache = dir.path().join("host-cache");
    let data = dir.path().join("data");
    let tag = format!("oci://{}/demo/hello:v1", reg.registry());

    let hello = guest("http-hello.wasm");
    let out = weft_with(&cli_cache, &[], &["push", hello.to_str().unwrap(), &tag]);
    let text = ok(&out, "push v1");
    let m1 = digest_line(&text, "manifest");
    let w1 = digest_line(&text, "wasm");
    assert!(
        m1.starts_with("sha256:") && w1.starts_with("sha256:"),
        "{text}"
    );
    assert!(text.contains(&format!("{tag}@{m1}")), "{text}");

    // `weft pull` into another store, written out: the same bytes.
    let pulled = dir.path().join("pulled.wasm");
    let out = weft_with(
        &dir.path().join("pull-cache"),
        &[],
        &["pull", &tag, "-o", pulled.to_str().unwrap()],
    );
    ok(&out, "pull");
    assert_eq!(
        std::fs::read(&pulled).unwrap(),
        std::fs::read(&hello).unwrap()
    );

    let cache_env = host_cache.to_str().unwrap().to_string();
    let env = [("WEFT_CACHE_DIR", cache_env.as_str())];
    let up = Up::start_with_env(&data, &env);
    let file = write(
        dir.path(),
        "hello",
        &manifest("hello", &tag, "hello.localhost"),
    );
    up.deploy_ok(&file);
    let r = up.get("hello.localhost", "/");
    assert_eq!((r.status, r.text().as_str()), (200, V1));
    // The desired state holds the tag pinned to the manifest digest, and the Wasm digest.
    let shown = pinned_image(&up, "hello");
    assert!(shown.contains(&format!("{tag}@{m1}")), "{shown}");
    let hex = w1.trim_start_matches("sha256:");
    assert!(shown.contains(&format!("\"sha256\":\"{hex}\"")), "{shown}");

    // Move the tag: the running set does not change, not even across a restart.
    let out = weft_with(
        &cli_cache,
        &[],
        &["push", guest("p3-service.wasm").to_str().unwrap(), &tag],
    );
    let m2 = digest_line(&ok(&out, "push v2"), "manifest");
    assert_ne!(m1, m2);
    let r = up.get("hello.localhost", "/");
    assert_eq!(r.text(), V1, "a moved tag changes nothing running");
    up.stop();
    let up = Up::start_with_env(&data, &env);
    let r = up.get("hello.localhost", "/");
    assert_eq!(
        r.text(),
        V1,
        "the restart runs the pinned digest, not the moved tag"
    );

    // Redeploy: the tag resolves again, to the new digest.
    up.deploy_ok(&file);
    let r = up.get("hello.localhost", "/");
    assert_eq!((r.status, r.text().as_str()), (200, V2));
    assert!(pinned_image(&up, "hello").contains(&m2));

    // Registry down: a restart serves from the verified store.
    reg.stop();
    up.stop();
    let up = Up::start_with_env(&data, &env);
    let r = up.get("hello.localhost", "/");
    assert_eq!((r.status, r.text().as_str()), (200, V2));

    // ...and a deploy of a tag now fails with the field named, while the workload serves on.
    let other = write(
        dir.path(),
        "other",
        &manifest("other", &tag, "other.localhost"),
    );
    let out = up.cli(&["deploy", other.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("spec.components[0].image"), "{err}");
    assert!(err.contains("cannot talk to the registry"), "{err}");
    assert_eq!(up.get("hello.localhost", "/").text(), V2);
    up.stop();

    // The host's store is in its data dir. Without it and without the registry, the restored
    // workload is shown Failed with the reason, and can be deleted.
    std::fs::remove_dir_all(data.join("oci")).unwrap();
    let up = Up::start_with_env(&data, &env);
    let shown = pinned_image(&up, "hello");
    assert!(shown.contains("\"status\":\"Failed\""), "{shown}");
    assert!(shown.contains("spec.components[0].image"), "{shown}");
    let out = up.cli(&["delete", "workload", "hello"]);
    assert!(out.status.success(), "delete: {}", stderr(&out));
    up.stop();
}

#[test]
fn basic_auth_from_the_environment_and_refusals_that_name_the_fix() {
    let reg = TestRegistry::start_with_auth();
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let tag = format!("oci://{}/private/hello:1.0", reg.registry());
    let hello = guest("http-hello.wasm");

    // No credentials: refused, with the hint.
    let out = weft_with(&cache, &[], &["push", hello.to_str().unwrap(), &tag]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("refused access"), "{err}");
    assert!(err.contains("WEFT_REGISTRY_USERNAME"), "{err}");

    // Credentials in the environment without WEFT_REGISTRY_HOST naming the registry are
    // not sent to it.
    let registry = reg.registry();
    let unscoped = [
        ("WEFT_REGISTRY_USERNAME", USER),
        ("WEFT_REGISTRY_PASSWORD", PASSWORD),
        ("WEFT_REGISTRY_HOST", "registry.example.com"),
    ];
    let out = weft_with(&cache, &unscoped, &["push", hello.to_str().unwrap(), &tag]);
    assert!(
        !out.status.success(),
        "credentials went to an unnamed registry"
    );
    assert!(
        stderr(&out).contains("refused access with no credentials"),
        "{}",
        stderr(&out)
    );

    let creds = [
        ("WEFT_REGISTRY_USERNAME", USER),
        ("WEFT_REGISTRY_PASSWORD", PASSWORD),
        ("WEFT_REGISTRY_HOST", registry.as_str()),
    ];
    ok(
        &weft_with(&cache, &creds, &["push", hello.to_str().unwrap(), &tag]),
        "push with credentials",
    );

    // A host with the credentials deploys it; one without is refused and says why.
    let host_cache = dir.path().join("host-cache");
    let mut env: Vec<(&str, &str)> = creds.to_vec();
    let hc = host_cache.to_str().unwrap().to_string();
    env.push(("WEFT_CACHE_DIR", hc.as_str()));
    let up = Up::start_with_env(&dir.path().join("data"), &env);
    let file = write(dir.path(), "p", &manifest("private", &tag, "p.localhost"));
    up.deploy_ok(&file);
    assert_eq!(up.get("p.localhost", "/").text(), V1);
    up.stop();

    let anon_cache = dir.path().join("anon-cache");
    let ac = anon_cache.to_str().unwrap().to_string();
    let up = Up::start_with_env(
        &dir.path().join("data2"),
        &[
            ("WEFT_CACHE_DIR", ac.as_str()),
            ("WEFT_REGISTRY_USERNAME", ""),
        ],
    );
    let out = up.cli(&["deploy", file.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("spec.components[0].image") && err.contains("refused access"),
        "{err}"
    );
    up.stop();
}

#[test]
fn bad_references_are_refused_with_the_field_and_running_workloads_keep_serving() {
    let reg = TestRegistry::start();
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let c = cache.to_str().unwrap().to_string();
    let up = Up::start_with_env(&dir.path().join("data"), &[("WEFT_CACHE_DIR", c.as_str())]);
    let good = write(
        dir.path(),
        "good",
        &manifest(
            "good",
            guest("http-hello.wasm").to_str().unwrap(),
            "good.localhost",
        ),
    );
    up.deploy_ok(&good);

    let cases = [
        (
            format!("oci://{}/demo/hello", reg.registry()),
            "has no tag or digest",
        ),
        (format!("oci://{}", reg.registry()), "repository"),
        (
            format!("oci://{}/demo/absent:1.0", reg.registry()),
            "not found in the registry",
        ),
    ];
    for (i, (image, want)) in cases.iter().enumerate() {
        let f = write(
            dir.path(),
            &format!("bad{i}"),
            &manifest(&format!("bad{i}"), image, "bad.localhost"),
        );
        let out = up.cli(&["deploy", f.to_str().unwrap()]);
        assert!(!out.status.success(), "{image} was accepted");
        let err = stderr(&out);
        assert!(err.contains("spec.components[0].image"), "{image}: {err}");
        assert!(err.contains(want), "{image}: want `{want}` in {err}");
    }
    assert_eq!(up.get("good.localhost", "/").text(), V1);

    // `weft push` needs a tag; `weft pull` names what is missing.
    let out = weft_with(
        &cache,
        &[],
        &[
            "push",
            guest("http-hello.wasm").to_str().unwrap(),
            &format!("{}/demo/hello", reg.registry()),
        ],
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("REFERENCE"), "{}", stderr(&out));
    up.stop();
}
