//! Unit tests of parsing and validation through the public API: one test per error kind (field
//! path, kind and hint), a full example, multi-document files, JSON, printing, schema, diff.

use std::path::{Path, PathBuf};

use crate::*;

const FILE: &str = "todo.yaml";

fn parse(text: &str) -> Result<Vec<Manifest>, ManifestErrors> {
    parse_str(text, Path::new(FILE))
}

fn errors(text: &str) -> ManifestErrors {
    match parse(text) {
        Ok(m) => panic!("expected errors, parsed {m:#?}"),
        Err(e) => e,
    }
}

/// Asserts there is an error at `path` of `kind` whose hint contains `hint`; returns it.
#[track_caller]
fn expect(errs: &ManifestErrors, path: &str, kind: ErrorKind, hint: &str) -> ManifestError {
    let at: Vec<&ManifestError> = errs
        .iter()
        .filter(|e| e.path == path && e.kind == kind)
        .collect();
    assert!(!at.is_empty(), "no {kind:?} error at `{path}` in:\n{errs}");
    match at
        .iter()
        .find(|e| e.hint.as_deref().unwrap_or_default().contains(hint))
    {
        Some(e) => (*e).clone(),
        None => panic!(
            "no hint containing {hint:?} among:\n{}",
            at.iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        ),
    }
}

/// A minimal valid workload with `extra` appended to the first component (indented to fit).
fn with_component(extra: &str) -> String {
    let mut s = String::from(
        "apiVersion: weft.dev/v1alpha1\nkind: Workload\nmetadata:\n  name: todo\nspec:\n  components:\n    - name: api\n      image: ./api.wasm\n",
    );
    for line in extra.lines() {
        s.push_str("      ");
        s.push_str(line);
        s.push('\n');
    }
    s
}

/// A minimal valid workload with `extra` appended to `spec` (indented to fit).
fn with_spec(extra: &str) -> String {
    let mut s = with_component("");
    for line in extra.lines() {
        s.push_str("  ");
        s.push_str(line);
        s.push('\n');
    }
    s
}

const FULL: &str = r#"
apiVersion: weft.dev/v1alpha1
kind: Workload
metadata: { name: todo, namespace: default, labels: { app: todo } }
spec:
  compose: auto
  components:
    - name: api
      image: ./api.wasm
      digest: sha256:0000000000000000000000000000000000000000000000000000000000000000
      poolSize: 0
      maxInvocations: 1
      maxConcurrency: 1
      links: { "example:calc/ops": calc-v2 }
      localResources:
        memoryLimitMb: 64
        timeoutMs: 30000
        config: { greeting: hi }
        environment: { LOG: info }
        volumeMounts: [ { name: data, mountPath: /data, readOnly: true } ]
        allowedHosts: [ "api.example.com:443" ]
        sockets:
          - { port: 5432, hostPort: 15432, protocol: tcp }
          - { port: 3306, protocol: tcp }
    - name: calc-v2
      image: file:///opt/calc.wasm
  service:
    name: pool
    image: ./pool.wasm
    maxRestarts: 3
    localResources: { timeoutMs: 1000 }
  hostInterfaces:
    - { namespace: wasi, package: http, interfaces: [incoming-handler],
        config: { host: todo.localhost, path: / } }
    - { namespace: wasi, package: keyvalue, interfaces: [store, atomics],
        config: { backend: redb, bucket: todo } }
  volumes:
    - { name: data, hostPath: { localPath: ./data } }
"#;

#[test]
fn full_example_parses_with_every_field() {
    let ms = parse(FULL).unwrap();
    assert_eq!(ms.len(), 1);
    let m = &ms[0];
    assert_eq!(m.api_version, ApiVersion::V1Alpha1);
    assert_eq!(m.kind, Kind::Workload);
    assert_eq!(m.origin.path, PathBuf::from(FILE));
    assert_eq!(m.origin.document, None);
    assert_eq!(m.metadata.name, "todo");
    assert_eq!(m.metadata.namespace, "default");
    assert_eq!(m.metadata.labels["app"], "todo");
    assert_eq!(m.spec.compose, Compose::Auto);
    assert_eq!(m.spec.components.len(), 2);
    let api = &m.spec.components[0];
    assert_eq!(api.name, "api");
    assert_eq!(api.image, "./api.wasm");
    assert!(api.digest.as_deref().unwrap().starts_with("sha256:0000"));
    assert_eq!(
        (api.pool_size, api.max_invocations, api.max_concurrency),
        (0, 1, 1)
    );
    assert_eq!(api.links["example:calc/ops"], "calc-v2");
    let lr = &api.local_resources;
    assert_eq!(lr.memory_limit_mb, Some(64));
    assert_eq!(lr.timeout_ms, Some(30000));
    assert_eq!(lr.config["greeting"], "hi");
    assert_eq!(lr.environment["LOG"], "info");
    assert_eq!(
        lr.volume_mounts,
        vec![VolumeMount {
            name: "data".into(),
            mount_path: "/data".into(),
            read_only: true
        }]
    );
    assert_eq!(lr.allowed_hosts, vec!["api.example.com:443".to_string()]);
    assert_eq!(
        lr.sockets,
        vec![
            Socket {
                port: 5432,
                host_port: Some(15432),
                protocol: Protocol::Tcp
            },
            Socket {
                port: 3306,
                host_port: None,
                protocol: Protocol::Tcp
            }
        ]
    );
    assert_eq!(lr.sockets[1].effective_host_port(), 3306);
    let calc = &m.spec.components[1];
    assert_eq!(
        (calc.pool_size, calc.max_invocations, calc.max_concurrency),
        (0, 1, 1)
    );
    assert!(calc.local_resources.is_empty());
    let svc = m.spec.service.as_ref().unwrap();
    assert_eq!((svc.name.as_str(), svc.max_restarts), ("pool", 3));
    assert_eq!(svc.local_resources.timeout_ms, Some(1000));
    assert_eq!(m.spec.host_interfaces.len(), 2);
    let http = m.host_interface("wasi", "http").unwrap();
    assert_eq!(
        http.http_incoming_config(),
        Some(HttpIncomingConfig {
            host: Some("todo.localhost".into()),
            path: "/".into(),
            internal: crate::InternalCalls::Deny,
        })
    );
    let kv = m
        .host_interface("wasi", "keyvalue")
        .unwrap()
        .keyvalue_config()
        .unwrap();
    assert_eq!(kv.backend, KeyValueBackend::Redb);
    assert_eq!(kv.bucket.as_deref(), Some("todo"));
    assert_eq!(m.spec.volumes[0].host_path.local_path, "./data");
    assert_eq!(m.spec.replicas, None);
    assert_eq!(m.replicas(), 1);
    assert_eq!(m.component("pool").unwrap().image, "./pool.wasm");
    assert!(validate(m, None).is_empty());
}

#[test]
fn defaults_are_filled() {
    let m = &parse(&with_component("")).unwrap()[0];
    assert_eq!(m.metadata.namespace, "default");
    assert_eq!(m.spec.compose, Compose::Auto);
    let c = &m.spec.components[0];
    assert_eq!(
        (c.pool_size, c.max_invocations, c.max_concurrency),
        (0, 1, 1)
    );
    assert_eq!(c.digest, None);
    let m = &parse(&with_spec("service: { name: svc, image: ./s.wasm }")).unwrap()[0];
    assert_eq!(m.spec.service.as_ref().unwrap().max_restarts, 3);
    let m = &parse(&with_component(
        "localResources:\n  sockets: [ { port: 53 } ]",
    ))
    .unwrap()[0];
    assert_eq!(
        m.spec.components[0].local_resources.sockets[0].protocol,
        Protocol::Tcp
    );
}

#[test]
fn deployment_adds_replicas_and_host_selector() {
    let text = with_component("").replace("kind: Workload", "kind: WorkloadDeployment");
    let m = &parse(&text).unwrap()[0];
    assert_eq!(m.kind, Kind::WorkloadDeployment);
    assert_eq!(m.spec.replicas, Some(1));
    assert_eq!(m.spec.host_selector, Some(Default::default()));
    let text = with_spec("replicas: 3\nhostSelector: { zone: eu-1 }")
        .replace("kind: Workload", "kind: WorkloadDeployment");
    let m = &parse(&text).unwrap()[0];
    assert_eq!(m.replicas(), 3);
    assert_eq!(m.spec.host_selector.as_ref().unwrap()["zone"], "eu-1");

    let errs = errors(&with_spec("replicas: 3\nhostSelector: { zone: eu-1 }"));
    expect(
        &errs,
        "spec.replicas",
        ErrorKind::InvalidValue,
        "kind: WorkloadDeployment",
    );
    expect(
        &errs,
        "spec.hostSelector",
        ErrorKind::InvalidValue,
        "kind: WorkloadDeployment",
    );
}

#[test]
fn deployment_spread_by_is_a_label_key() {
    let text = with_spec("replicas: 4\nspreadBy: zone")
        .replace("kind: Workload", "kind: WorkloadDeployment");
    let m = &parse(&text).unwrap()[0];
    assert_eq!(m.spec.spread_by.as_deref(), Some("zone"));
    let printed = crate::to_yaml(m).unwrap();
    assert!(printed.contains("spreadBy: zone"), "{printed}");

    let bad =
        with_spec("spreadBy: 'no spaces'").replace("kind: Workload", "kind: WorkloadDeployment");
    expect(
        &errors(&bad),
        "spec.spreadBy",
        ErrorKind::InvalidValue,
        "letters, digits",
    );
    expect(
        &errors(&with_spec("spreadBy: zone")),
        "spec.spreadBy",
        ErrorKind::InvalidValue,
        "kind: WorkloadDeployment",
    );
    let mut moved = m.clone();
    moved.spec.spread_by = Some("rack".into());
    assert_eq!(
        crate::diff(m, &moved)
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        vec!["~ spreadBy: zone -> rack".to_string()]
    );
}

// ---- one test per error kind ----

#[test]
fn read_error() {
    let errs = load_file(Path::new("/nonexistent/dir/weft.yaml")).unwrap_err();
    assert_eq!(errs.len(), 1);
    let e = &errs.0[0];
    assert_eq!(e.kind, ErrorKind::Read);
    assert_eq!(e.path, "");
    assert!(e.hint.as_deref().unwrap().contains("check the path"));
    assert!(
        e.to_string()
            .starts_with("/nonexistent/dir/weft.yaml: cannot read the manifest")
    );

    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("bad.yaml");
    std::fs::write(&f, b"kind: \xff\xfe\n").unwrap();
    let errs = load_file(&f).unwrap_err();
    assert_eq!(errs.0[0].kind, ErrorKind::Read);
    assert!(errs.0[0].message.contains("UTF-8"));
}

#[test]
fn syntax_errors() {
    let errs = errors("apiVersion: weft.dev/v1alpha1\nkind: [Workload\n");
    let e = expect(&errs, "", ErrorKind::Syntax, "indentation");
    assert!(e.message.starts_with("invalid YAML"), "{}", e.message);
    assert!(e.message.contains("line"), "{}", e.message);

    let errs = errors("{ \"apiVersion\": \"weft.dev/v1alpha1\", }");
    let e = expect(&errs, "", ErrorKind::Syntax, "JSON object");
    assert!(e.message.contains("line 1"), "{}", e.message);

    let errs = errors("a: b\n\tc: d\n");
    assert_eq!(errs.0[0].kind, ErrorKind::Syntax);
}

#[test]
fn no_documents() {
    for text in [
        "",
        "   \n",
        "# only a comment\n",
        "---\n",
        "---\n---\n",
        "null",
        "[]",
    ] {
        let errs = errors(text);
        assert_eq!(errs.len(), 1, "{text:?}");
        expect(&errs, "", ErrorKind::NoDocuments, "apiVersion");
    }
}

#[test]
fn unknown_fields_suggest_the_right_name() {
    let errs = errors(&with_component(
        "imag: ./x.wasm\npool_size: 2\nmemoryLimitMb: 64\nzzzzzz: 1",
    ));
    let e = expect(
        &errs,
        "spec.components[0].imag",
        ErrorKind::UnknownField,
        "did you mean `image`?",
    );
    assert_eq!(e.value, None);
    assert_eq!(
        e.to_string(),
        "todo.yaml: spec.components[0].imag: unknown field (hint: did you mean `image`?)"
    );
    expect(
        &errs,
        "spec.components[0].pool_size",
        ErrorKind::UnknownField,
        "`poolSize`",
    );
    expect(
        &errs,
        "spec.components[0].memoryLimitMb",
        ErrorKind::UnknownField,
        "belongs under `localResources`",
    );
    expect(
        &errs,
        "spec.components[0].zzzzzz",
        ErrorKind::UnknownField,
        "known fields here: name, image",
    );
    assert_eq!(errs.len(), 4, "{errs}");

    let errs = errors(&with_spec("image: ./x.wasm\nvolume: []"));
    expect(
        &errs,
        "spec.image",
        ErrorKind::UnknownField,
        "spec.components",
    );
    expect(
        &errs,
        "spec.volume",
        ErrorKind::UnknownField,
        "did you mean `volumes`?",
    );

    let errs = errors(&with_component(
        "localResources:\n  memoryLimitMB: 64\n  env: { A: b }",
    ));
    expect(
        &errs,
        "spec.components[0].localResources.memoryLimitMB",
        ErrorKind::UnknownField,
        "did you mean `memoryLimitMb`?",
    );
    expect(
        &errs,
        "spec.components[0].localResources.env",
        ErrorKind::UnknownField,
        "`environment`",
    );

    let errs = errors(&format!("{}metdata: {{}}\n", with_component("")));
    expect(
        &errs,
        "metdata",
        ErrorKind::UnknownField,
        "did you mean `metadata`?",
    );

    // A typo of a required field is one error, not "unknown" plus "missing".
    let errs = errors(&with_component("").replace("image:", "imag:"));
    expect(
        &errs,
        "spec.components[0].imag",
        ErrorKind::UnknownField,
        "did you mean `image`?",
    );
    assert_eq!(errs.len(), 1, "{errs}");

    let errs = errors(
        &format!("{}x: &x {{ a: 1 }}\n", with_spec(""))
            .replace("x: &x { a: 1 }\n", "")
            .replace(
                "    - name: api\n",
                "    - <<: { pool: 1 }\n      name: api\n",
            ),
    );
    expect(
        &errs,
        "spec.components[0][\"<<\"]",
        ErrorKind::UnknownField,
        "merge keys",
    );
}

#[test]
fn missing_fields() {
    let errs =
        errors("kind: Workload\nmetadata: { name: a }\nspec: { components: [ { name: api } ] }\n");
    expect(
        &errs,
        "apiVersion",
        ErrorKind::MissingField,
        "apiVersion: weft.dev/v1alpha1",
    );
    let e = expect(
        &errs,
        "spec.components[0].image",
        ErrorKind::MissingField,
        "image: ./api.wasm",
    );
    assert_eq!(e.message, "missing image");
    assert_eq!(errs.len(), 2, "{errs}");

    let errs = errors("apiVersion: weft.dev/v1alpha1\n");
    expect(&errs, "kind", ErrorKind::MissingField, "kind: Workload");
    expect(&errs, "metadata", ErrorKind::MissingField, "name");
    expect(&errs, "spec", ErrorKind::MissingField, "components");
    assert_eq!(errs.len(), 3, "{errs}");

    let errs = errors(&with_spec("").replace(
        "  components:\n    - name: api\n      image: ./api.wasm\n",
        "  compose: auto\n",
    ));
    expect(
        &errs,
        "spec.components",
        ErrorKind::MissingField,
        "spec.components",
    );

    let errs = errors(&with_spec(
        "volumes: [ { name: data } ]\nhostInterfaces: [ { namespace: wasi, package: http } ]",
    ));
    expect(
        &errs,
        "spec.volumes[0].hostPath",
        ErrorKind::MissingField,
        "localPath",
    );
    expect(
        &errs,
        "spec.hostInterfaces[0].interfaces",
        ErrorKind::MissingField,
        "incoming-handler",
    );

    let errs = errors(&with_component(
        "localResources: { sockets: [ { protocol: udp } ] }",
    ));
    expect(
        &errs,
        "spec.components[0].localResources.sockets[0].port",
        ErrorKind::MissingField,
        "port: 5432",
    );
}

#[test]
fn duplicate_keys() {
    let errs = errors(&with_component("image: ./other.wasm"));
    expect(
        &errs,
        "spec.components[0].image",
        ErrorKind::DuplicateKey,
        "keep one",
    );
    let errs = errors(&with_component(
        "localResources: { environment: { A: x, A: y } }",
    ));
    expect(
        &errs,
        "spec.components[0].localResources.environment.A",
        ErrorKind::DuplicateKey,
        "keep one",
    );
}

#[test]
fn wrong_types_name_the_field() {
    let errs = errors(&with_component(
        "poolSize: \"3\"\nmaxInvocations: many\nlocalResources:\n  config: { port: 8080, on: true }\n  volumeMounts: [ { name: data, mountPath: /d, readOnly: \"true\" } ]\n  timeoutMs: 1.5",
    ));
    let e = expect(
        &errs,
        "spec.components[0].poolSize",
        ErrorKind::WrongType,
        "remove the quotes: 3",
    );
    assert_eq!(e.message, "expected a number, found a string");
    assert_eq!(e.value.as_deref(), Some("3"));
    expect(
        &errs,
        "spec.components[0].maxInvocations",
        ErrorKind::WrongType,
        "",
    );
    let e = expect(
        &errs,
        "spec.components[0].localResources.config.port",
        ErrorKind::WrongType,
        "quote it: \"8080\"",
    );
    assert_eq!(e.message, "expected a string, found a number");
    expect(
        &errs,
        "spec.components[0].localResources.config.on",
        ErrorKind::WrongType,
        "quote it: \"true\"",
    );
    expect(
        &errs,
        "spec.components[0].localResources.volumeMounts[0].readOnly",
        ErrorKind::WrongType,
        "remove the quotes: true",
    );
    expect(
        &errs,
        "spec.components[0].localResources.timeoutMs",
        ErrorKind::WrongType,
        "fraction",
    );

    let errs = errors(
        "apiVersion: weft.dev/v1alpha1\nkind: Workload\nmetadata: { name: a }\nspec:\n  components: { api: { image: ./a.wasm } }\n",
    );
    expect(
        &errs,
        "spec.components",
        ErrorKind::WrongType,
        "start each entry with `- name: ...`",
    );

    let errs = errors(
        "apiVersion: weft.dev/v1alpha1\nkind: Workload\nmetadata: { name: !custom a }\nspec: { components: [ { name: api, image: ./a.wasm } ] }\n",
    );
    expect(
        &errs,
        "metadata.name",
        ErrorKind::WrongType,
        "remove the YAML tag",
    );

    let errs = errors("- just\n- strings\n");
    expect(&errs, "", ErrorKind::WrongType, "apiVersion");
}

#[test]
fn a_bad_entry_is_reported_once() {
    let errs = errors(
        "apiVersion: weft.dev/v1alpha1\nkind: Workload\nmetadata: { name: a }\nspec:\n  components:\n    - api\n    - { name: calc, image: ./c.wasm, links: { \"x:y/z\": api } }\n",
    );
    // components[0] is a string; no follow-up name/image errors below it.
    let at0: Vec<_> = errs
        .iter()
        .filter(|e| e.path.starts_with("spec.components[0]"))
        .collect();
    assert_eq!(at0.len(), 1, "{errs}");
    expect(&errs, "spec.components[0]", ErrorKind::WrongType, "");
}

#[test]
fn invalid_values() {
    let errs = errors(
        &with_spec("compose: sometimes")
            .replace("name: todo", "name: My_Todo")
            .replace("name: api", "name: -api")
            .replace("kind: Workload", "kind: workload"),
    );
    let e = expect(&errs, "metadata.name", ErrorKind::InvalidValue, "`my-todo`");
    assert_eq!(e.message, "must be lowercase");
    expect(
        &errs,
        "spec.components[0].name",
        ErrorKind::InvalidValue,
        "lowercase letters",
    );
    expect(
        &errs,
        "kind",
        ErrorKind::InvalidValue,
        "did you mean `Workload`?",
    );
    expect(
        &errs,
        "spec.compose",
        ErrorKind::InvalidValue,
        "use one of: auto, always, never",
    );

    let errs =
        errors(&with_component("").replace("weft.dev/v1alpha1", "runtime.wasmcloud.dev/v1alpha1"));
    expect(
        &errs,
        "apiVersion",
        ErrorKind::InvalidValue,
        "apiVersion is `weft.dev/v1alpha1`",
    );
    let errs = errors(&with_component("").replace("weft.dev/v1alpha1", "weft.dev/v2"));
    expect(
        &errs,
        "apiVersion",
        ErrorKind::InvalidValue,
        "use `apiVersion: weft.dev/v1alpha1`",
    );

    let errs = errors(
        &(with_component(
            "digest: sha256:abc\nlinks: { \"calc\": api }\nlocalResources:\n  environment: { \"1BAD\": x, \"A-B\": y }\n  allowedHosts: [ \"ftp://x.com\", \"x.com/path\", \"ok.com:*\" ]\n  volumeMounts: [ { name: data, mountPath: data } ]",
        ) + "  volumes: [ { name: data, hostPath: { localPath: ./d } } ]\n"),
    );
    expect(
        &errs,
        "spec.components[0].digest",
        ErrorKind::InvalidValue,
        "sha256sum",
    );
    expect(
        &errs,
        "spec.components[0].links.calc",
        ErrorKind::InvalidValue,
        "namespace:package/interface",
    );
    expect(
        &errs,
        "spec.components[0].links.calc",
        ErrorKind::InvalidValue,
        "other component",
    );
    expect(
        &errs,
        "spec.components[0].localResources.environment.1BAD",
        ErrorKind::InvalidValue,
        "LOG_LEVEL",
    );
    expect(
        &errs,
        "spec.components[0].localResources.environment.A-B",
        ErrorKind::InvalidValue,
        "LOG_LEVEL",
    );
    let e = expect(
        &errs,
        "spec.components[0].localResources.allowedHosts[0]",
        ErrorKind::InvalidValue,
        "api.example.com:443",
    );
    assert_eq!(e.message, "the scheme must be http or https");
    expect(
        &errs,
        "spec.components[0].localResources.allowedHosts[1]",
        ErrorKind::InvalidValue,
        "HOST[:PORT]",
    );
    assert!(
        errs.at("spec.components[0].localResources.allowedHosts[2]")
            .is_none()
    );
    expect(
        &errs,
        "spec.components[0].localResources.volumeMounts[0].mountPath",
        ErrorKind::InvalidValue,
        "`/data`",
    );

    let errs = errors(&with_spec(
        "hostInterfaces:\n  - { namespace: wasi, package: http, interfaces: [incoming-handler], config: { host: \"a b\", path: api } }\n  - { namespace: wasi, package: keyvalue, interfaces: [store], config: { backend: redis } }\n  - { namespace: wasi, package: logging, interfaces: [logging], config: { level: info } }",
    ));
    expect(
        &errs,
        "spec.hostInterfaces[0].config.host",
        ErrorKind::InvalidValue,
        "todo.localhost",
    );
    expect(
        &errs,
        "spec.hostInterfaces[0].config.path",
        ErrorKind::InvalidValue,
        "write `/api`",
    );
    expect(
        &errs,
        "spec.hostInterfaces[1].config.backend",
        ErrorKind::InvalidValue,
        "`redb`",
    );
    expect(
        &errs,
        "spec.hostInterfaces[2].config.level",
        ErrorKind::UnknownField,
        "takes no config",
    );

    let errs = errors(&with_spec(
        "hostInterfaces: [ { namespace: wasi, package: http, interfaces: [outgoing-handler], config: { path: / } } ]",
    ));
    expect(
        &errs,
        "spec.hostInterfaces[0].config.path",
        ErrorKind::InvalidValue,
        "incoming-handler",
    );

    let errs =
        errors(&with_component("image: ftp://x/a.wasm").replace("      image: ./api.wasm\n", ""));
    expect(
        &errs,
        "spec.components[0].image",
        ErrorKind::InvalidValue,
        "file:///",
    );
}

#[test]
fn out_of_range() {
    let errs = errors(&with_component(
        "maxInvocations: 0\nmaxConcurrency: 0\npoolSize: -1\nlocalResources:\n  memoryLimitMb: 70000\n  timeoutMs: 0\n  sockets: [ { port: 70000 }, { port: 0, hostPort: 65536 } ]",
    ));
    expect(
        &errs,
        "spec.components[0].maxInvocations",
        ErrorKind::OutOfRange,
        "setting `maxInvocations: 1`".trim_start_matches("setting "),
    );
    expect(
        &errs,
        "spec.components[0].maxConcurrency",
        ErrorKind::OutOfRange,
        "default (1)",
    );
    let e = expect(
        &errs,
        "spec.components[0].poolSize",
        ErrorKind::OutOfRange,
        "",
    );
    assert_eq!(e.message, "must be between 0 and 4294967295");
    expect(
        &errs,
        "spec.components[0].localResources.memoryLimitMb",
        ErrorKind::OutOfRange,
        "memoryLimitMb: 64",
    );
    expect(
        &errs,
        "spec.components[0].localResources.timeoutMs",
        ErrorKind::OutOfRange,
        "30000",
    );
    let e = expect(
        &errs,
        "spec.components[0].localResources.sockets[0].port",
        ErrorKind::OutOfRange,
        "",
    );
    assert_eq!(e.message, "must be between 1 and 65535");
    assert_eq!(e.value.as_deref(), Some("70000"));
    expect(
        &errs,
        "spec.components[0].localResources.sockets[1].port",
        ErrorKind::OutOfRange,
        "",
    );
    expect(
        &errs,
        "spec.components[0].localResources.sockets[1].hostPort",
        ErrorKind::OutOfRange,
        "",
    );
    assert_eq!(errs.len(), 8, "{errs}");
}

#[test]
fn duplicates() {
    let errs = errors(&with_spec(
        "- { name: api, image: ./b.wasm }\nservice: { name: api, image: ./s.wasm }\nvolumes:\n  - { name: data, hostPath: { localPath: ./a } }\n  - { name: data, hostPath: { localPath: ./b } }\nhostInterfaces:\n  - { namespace: wasi, package: http, interfaces: [incoming-handler, incoming-handler] }\n  - { namespace: wasi, package: http, interfaces: [outgoing-handler] }",
    ).replace("  - { name: api, image: ./b.wasm }\n", "    - { name: api, image: ./b.wasm }\n"));
    let e = expect(
        &errs,
        "spec.components[1].name",
        ErrorKind::Duplicate,
        "unique across spec.components and spec.service",
    );
    assert_eq!(e.message, "duplicate name; spec.components[0] has it too");
    expect(&errs, "spec.service.name", ErrorKind::Duplicate, "unique");
    expect(
        &errs,
        "spec.volumes[1].name",
        ErrorKind::Duplicate,
        "own name",
    );
    expect(
        &errs,
        "spec.hostInterfaces[1]",
        ErrorKind::Duplicate,
        "one entry",
    );
    expect(
        &errs,
        "spec.hostInterfaces[0].interfaces[1]",
        ErrorKind::Duplicate,
        "once",
    );

    let errs = errors(
        &(with_component(
            "localResources:\n  volumeMounts: [ { name: data, mountPath: /d }, { name: data, mountPath: /d/ } ]\n  sockets: [ { port: 80 }, { port: 80, protocol: udp }, { port: 80, protocol: tcp } ]",
        ) + "  volumes: [ { name: data, hostPath: { localPath: ./d } } ]\n"),
    );
    expect(
        &errs,
        "spec.components[0].localResources.volumeMounts[1].mountPath",
        ErrorKind::Duplicate,
        "own path",
    );
    let e = expect(
        &errs,
        "spec.components[0].localResources.sockets[2].port",
        ErrorKind::Duplicate,
        "once",
    );
    assert_eq!(e.message, "tcp port 80 is already granted by sockets[0]");
    assert_eq!(errs.len(), 2, "{errs}");
}

#[test]
fn unknown_references() {
    let errs = errors(&with_component(
        "links: { \"example:calc/ops\": calc-v3 }\nlocalResources:\n  volumeMounts: [ { name: dta, mountPath: /d }, { name: logs, mountPath: /l } ]",
    ).replace("  components:\n", "  volumes: [ { name: data, hostPath: { localPath: ./d } } ]\n  components:\n    - { name: calc-v2, image: ./c.wasm }\n"));
    expect(
        &errs,
        "spec.components[1].links[\"example:calc/ops\"]",
        ErrorKind::UnknownReference,
        "did you mean `calc-v2`?",
    );
    expect(
        &errs,
        "spec.components[1].localResources.volumeMounts[0].name",
        ErrorKind::UnknownReference,
        "did you mean `data`?",
    );
    expect(
        &errs,
        "spec.components[1].localResources.volumeMounts[1].name",
        ErrorKind::UnknownReference,
        "declare it in spec.volumes",
    );
}

#[test]
fn unknown_host_interfaces() {
    let errs = errors(&with_spec(
        "hostInterfaces:\n  - { namespace: wasi, package: htp, interfaces: [incoming-handler] }\n  - { namespace: acme, package: magic, interfaces: [x] }\n  - { namespace: wasi, package: keyvalue, interfaces: [stor, cas] }",
    ));
    let e = expect(
        &errs,
        "spec.hostInterfaces[0]",
        ErrorKind::UnknownHostInterface,
        "did you mean `wasi:http`?",
    );
    assert_eq!(e.value.as_deref(), Some("wasi:htp"));
    expect(
        &errs,
        "spec.hostInterfaces[1]",
        ErrorKind::UnknownHostInterface,
        "known: wasi:http, wasi:keyvalue",
    );
    expect(
        &errs,
        "spec.hostInterfaces[2].interfaces[0]",
        ErrorKind::UnknownHostInterface,
        "did you mean `store`?",
    );
    expect(
        &errs,
        "spec.hostInterfaces[2].interfaces[1]",
        ErrorKind::UnknownHostInterface,
        "store, atomics, batch",
    );
    assert_eq!(errs.len(), 4, "{errs}");
}

#[test]
fn messaging_grants_are_checked() {
    // A good grant parses, with its typed config.
    let ms = parse(&with_spec(
        "hostInterfaces:\n  - namespace: wasmcloud\n    package: messaging\n    interfaces: [handler, consumer]\n    config: { subscriptions: \"orders.*, audit.>\", queueGroup: enrich, publish: \"out.>\", deadLetter: failed.orders, maxInFlight: \"4\", maxMessageBytes: \"65536\" }",
    ))
    .unwrap();
    let cfg = ms[0]
        .host_interface("wasmcloud", "messaging")
        .unwrap()
        .messaging_config()
        .unwrap();
    assert_eq!(cfg.subscriptions.len(), 2);
    assert!(cfg.publish.allows("out.x.y"));
    assert_eq!(cfg.max_in_flight, 4);

    let errs = errors(&with_spec(
        "hostInterfaces:\n  - namespace: wasmcloud\n    package: messaging\n    interfaces: [handler]\n    config: { subscriptions: \"ok.*, >, a..b, x.y*\", publish: \"out.>\", deadLetter: \"dlq.*\", queueGroup: \"a b\", maxInFlight: \"0\", maxMessageBytes: \"9999999999\" }",
    ));
    let e = expect(
        &errs,
        "spec.hostInterfaces[0].config.subscriptions[1]",
        ErrorKind::InvalidValue,
        "`orders.*`",
    );
    assert!(e.message.contains("reserved"), "{e}");
    expect(
        &errs,
        "spec.hostInterfaces[0].config.subscriptions[2]",
        ErrorKind::InvalidValue,
        "`audit.>`",
    );
    let e = expect(
        &errs,
        "spec.hostInterfaces[0].config.subscriptions[3]",
        ErrorKind::InvalidValue,
        "",
    );
    assert!(e.message.contains("whole token"), "{e}");
    expect(
        &errs,
        "spec.hostInterfaces[0].config.publish",
        ErrorKind::InvalidValue,
        "add `consumer` to `interfaces`",
    );
    expect(
        &errs,
        "spec.hostInterfaces[0].config.deadLetter",
        ErrorKind::InvalidValue,
        "without wildcards",
    );
    expect(
        &errs,
        "spec.hostInterfaces[0].config.queueGroup",
        ErrorKind::InvalidValue,
        "plain name",
    );
    expect(
        &errs,
        "spec.hostInterfaces[0].config.maxInFlight",
        ErrorKind::OutOfRange,
        "\"16\"",
    );
    expect(
        &errs,
        "spec.hostInterfaces[0].config.maxMessageBytes",
        ErrorKind::OutOfRange,
        "1 MiB",
    );
    assert_eq!(errs.len(), 8, "{errs}");

    // A dead letter the workload receives itself would loop.
    let errs = errors(&with_spec(
        "hostInterfaces:\n  - { namespace: wasmcloud, package: messaging, interfaces: [handler], config: { subscriptions: \"orders.*\", deadLetter: orders.failed } }",
    ));
    let e = expect(
        &errs,
        "spec.hostInterfaces[0].config.deadLetter",
        ErrorKind::InvalidValue,
        "outside config.subscriptions",
    );
    assert!(e.message.contains("`orders.*`"), "{e}");
    assert_eq!(errs.len(), 1, "{errs}");

    // handler without subscriptions; a reserved dead-letter subject; an unknown key.
    let errs = errors(&with_spec(
        "hostInterfaces:\n  - { namespace: wasmcloud, package: messaging, interfaces: [handler], config: { deadLetter: weft.x, publsh: a } }",
    ));
    expect(
        &errs,
        "spec.hostInterfaces[0].config.subscriptions",
        ErrorKind::MissingField,
        "subscriptions",
    );
    let e = expect(
        &errs,
        "spec.hostInterfaces[0].config.deadLetter",
        ErrorKind::InvalidValue,
        "",
    );
    assert!(e.message.contains("reserved"), "{e}");
    expect(
        &errs,
        "spec.hostInterfaces[0].config.publsh",
        ErrorKind::UnknownField,
        "did you mean `publish`?",
    );
    assert_eq!(errs.len(), 3, "{errs}");

    // An empty list, and the http `internal` key.
    let errs = errors(&with_spec(
        "hostInterfaces:\n  - { namespace: wasmcloud, package: messaging, interfaces: [consumer], config: { publish: \" , \" } }\n  - { namespace: wasi, package: http, interfaces: [incoming-handler], config: { internal: alow } }\n  - { namespace: wasi, package: keyvalue, interfaces: [store] }",
    ));
    expect(
        &errs,
        "spec.hostInterfaces[0].config.publish",
        ErrorKind::InvalidValue,
        "separated by commas",
    );
    expect(
        &errs,
        "spec.hostInterfaces[1].config.internal",
        ErrorKind::InvalidValue,
        "did you mean `allow`?",
    );
    assert_eq!(errs.len(), 2, "{errs}");
    let errs = errors(&with_spec(
        "hostInterfaces:\n  - { namespace: wasi, package: http, interfaces: [outgoing-handler], config: { internal: only } }",
    ));
    expect(
        &errs,
        "spec.hostInterfaces[0].config.internal",
        ErrorKind::InvalidValue,
        "add `incoming-handler`",
    );
}

#[test]
fn oci_images_parse_and_bad_ones_name_the_field() {
    let m = parse(&with_component("").replace("./api.wasm", "oci://ghcr.io/acme/api:1.0"))
        .expect("an oci image with a tag is valid");
    assert_eq!(m[0].spec.components[0].image, "oci://ghcr.io/acme/api:1.0");
    let errs = errors(&with_component("").replace("./api.wasm", "oci://ghcr.io/acme/api"));
    let e = expect(
        &errs,
        "spec.components[0].image",
        ErrorKind::InvalidValue,
        "add a tag",
    );
    assert!(e.message.contains("has no tag or digest"), "{e}");
    let errs = errors(&with_component("").replace("./api.wasm", "oci://ghcr.io"));
    let e = expect(
        &errs,
        "spec.components[0].image",
        ErrorKind::InvalidValue,
        "name the repository",
    );
    assert!(e.message.contains("no repository"), "{e}");
    let errs = errors(&with_component("").replace("./api.wasm", "oci://acme/api:1"));
    expect(
        &errs,
        "spec.components[0].image",
        ErrorKind::InvalidValue,
        "name the registry host",
    );
    let errs = errors(&with_component("").replace("./api.wasm", "https://x/api.wasm"));
    expect(
        &errs,
        "spec.components[0].image",
        ErrorKind::Unsupported,
        "reference the .wasm file",
    );
}

#[test]
fn oci_images_need_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("weft.yaml");
    let text = with_component("").replace("./api.wasm", "oci://127.0.0.1:5000/api:1");
    std::fs::write(&path, &text).unwrap();
    crate::load_file(&path).expect("no filesystem check for an oci image");
}

#[test]
fn build_sections() {
    let m = parse(&with_component(
        "build:\n  command: cargo build --release\n  workdir: .\n  watch: [\"src/**/*.rs\", Cargo.toml]",
    ))
    .expect("valid build section");
    let b = m[0].spec.components[0].build.clone().expect("build");
    assert_eq!(b.command, "cargo build --release");
    assert_eq!(b.workdir.as_deref(), Some("."));
    assert_eq!(b.watch, ["src/**/*.rs", "Cargo.toml"]);
    // Printing and parsing again gives the same manifest.
    let again = parse(&crate::to_yaml(&m[0]).unwrap()).expect("printed");
    assert_eq!(again[0].spec.components[0].build, Some(b));

    let errs = errors(&with_component("build: { workdir: . }"));
    expect(
        &errs,
        "spec.components[0].build.command",
        ErrorKind::MissingField,
        "cargo build",
    );
    let errs = errors(&with_component(
        "build: { command: \"  \", watch: [\"/abs/**\", \"../x\", \"src/[\"], comand: x }",
    ));
    expect(
        &errs,
        "spec.components[0].build.command",
        ErrorKind::InvalidValue,
        "cargo build",
    );
    expect(
        &errs,
        "spec.components[0].build.watch[0]",
        ErrorKind::InvalidValue,
        "abs/**",
    );
    expect(
        &errs,
        "spec.components[0].build.watch[1]",
        ErrorKind::InvalidValue,
        "workdir",
    );
    expect(
        &errs,
        "spec.components[0].build.watch[2]",
        ErrorKind::InvalidValue,
        "src/**/*.rs",
    );
    expect(
        &errs,
        "spec.components[0].build.comand",
        ErrorKind::UnknownField,
        "did you mean `command`",
    );

    // With a base directory, the workdir must exist.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("api.wasm"), b"\0asm").unwrap();
    let path = dir.path().join("weft.yaml");
    std::fs::write(
        &path,
        with_component("build: { command: make, workdir: ./nope }"),
    )
    .unwrap();
    let errs = crate::load_file(&path).expect_err("missing workdir");
    expect(
        &errs,
        "spec.components[0].build.workdir",
        ErrorKind::NotFound,
        "relative to the manifest",
    );
}

#[test]
fn filesystem_checks_relative_to_the_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = b"\0asm\x0d\0\x01\0";
    std::fs::write(dir.path().join("api.wasm"), wasm).unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    std::fs::write(dir.path().join("file"), b"").unwrap();
    let good = {
        use sha2::{Digest, Sha256};
        format!("sha256:{}", hex::encode(Sha256::digest(wasm)))
    };
    let manifest = |digest: &str, image: &str, vol: &str| {
        format!(
            "apiVersion: weft.dev/v1alpha1\nkind: Workload\nmetadata: {{ name: a }}\nspec:\n  components:\n    - {{ name: api, image: {image}, digest: \"{digest}\" }}\n  volumes: [ {{ name: data, hostPath: {{ localPath: {vol} }} }} ]\n"
        )
    };
    let f = dir.path().join("weft.yaml");

    std::fs::write(&f, manifest(&good, "./api.wasm", "./data")).unwrap();
    let ms = load_file(&f).unwrap();
    assert_eq!(ms[0].origin.path, f);
    assert_eq!(ms[0].base_dir(), dir.path());
    assert!(validate(&ms[0], Some(dir.path())).is_empty());
    let abs = format!("file://{}", dir.path().join("api.wasm").display());
    std::fs::write(&f, manifest(&good, &abs, "./data")).unwrap();
    assert!(load_file(&f).is_ok());

    let wrong = format!("sha256:{}", "0".repeat(64));
    std::fs::write(&f, manifest(&wrong, "./api.wasm", "./missing")).unwrap();
    let errs = load_file(&f).unwrap_err();
    let e = expect(
        &errs,
        "spec.components[0].image",
        ErrorKind::DigestMismatch,
        "update `digest`",
    );
    assert!(e.message.contains(&good), "{}", e.message);
    expect(
        &errs,
        "spec.volumes[0].hostPath.localPath",
        ErrorKind::NotFound,
        "mkdir -p",
    );
    assert!(errs.0.iter().all(|e| e.file == f));

    std::fs::write(&f, manifest(&good, "./nope.wasm", "./file")).unwrap();
    let errs = load_file(&f).unwrap_err();
    let e = expect(
        &errs,
        "spec.components[0].image",
        ErrorKind::NotFound,
        "relative to the manifest's directory",
    );
    assert!(
        e.to_string().starts_with(&format!(
            "{}: spec.components[0].image: ./nope.wasm: no such file (hint: paths are relative to the manifest's directory",
            f.display()
        )),
        "{e}"
    );
    expect(
        &errs,
        "spec.volumes[0].hostPath.localPath",
        ErrorKind::InvalidValue,
        "directory",
    );

    // Without a base directory nothing on disk is looked at.
    let ms = parse(&manifest(&wrong, "./nope.wasm", "./missing")).unwrap();
    assert!(validate(&ms[0], None).is_empty());
    assert!(!validate(&ms[0], Some(dir.path())).is_empty());
}

#[test]
fn all_errors_are_collected_across_kinds_and_documents() {
    let text = format!(
        "{}---\n{}",
        with_component("imag: x\nmaxInvocations: 0").replace("name: todo", "name: Todo"),
        with_component("localResources: { sockets: [ { port: 0 } ] }")
            .replace("kind: Workload", "kind: Deployment")
    );
    let errs = errors(&text);
    let e = expect(
        &errs,
        "spec.components[0].imag",
        ErrorKind::UnknownField,
        "image",
    );
    assert_eq!(e.document, Some(0));
    let e = expect(&errs, "metadata.name", ErrorKind::InvalidValue, "todo");
    assert_eq!(e.document, Some(0));
    expect(
        &errs,
        "spec.components[0].maxInvocations",
        ErrorKind::OutOfRange,
        "",
    );
    let e = expect(&errs, "kind", ErrorKind::InvalidValue, "Workload");
    assert_eq!(e.document, Some(1));
    assert!(
        e.to_string()
            .starts_with("todo.yaml (document 2): kind: Deployment: unknown kind"),
        "{e}"
    );
    let e = expect(
        &errs,
        "spec.components[0].localResources.sockets[0].port",
        ErrorKind::OutOfRange,
        "",
    );
    assert_eq!(e.document, Some(1));
    assert_eq!(errs.len(), 5, "{errs}");
    assert_eq!(errs.to_string().lines().count(), 5);
}

#[test]
fn multi_document_files() {
    let one = with_component("");
    let two = with_component("").replace("name: todo", "name: other");
    let text = format!("---\n{one}---\n{two}...\n---\n# empty\n");
    let ms = parse(&text).unwrap();
    assert_eq!(ms.len(), 2);
    assert_eq!(ms[0].metadata.name, "todo");
    assert_eq!(ms[1].metadata.name, "other");
    assert_eq!(ms[0].origin.document, Some(0));
    assert_eq!(ms[1].origin.document, Some(1));
    // A single document has no index.
    assert_eq!(
        parse(&format!("---\n{one}")).unwrap()[0].origin.document,
        None
    );
    // And printing several back round-trips.
    let again = parse(&to_yaml_all(&ms).unwrap()).unwrap();
    assert_eq!(again, ms);
}

#[test]
fn json_input() {
    let json = r#"{"apiVersion":"weft.dev/v1alpha1","kind":"Workload","metadata":{"name":"a"},
        "spec":{"components":[{"name":"api","image":"./a.wasm","poolSize":2,
        "localResources":{"sockets":[{"port":5432,"protocol":"udp"}]}}]}}"#;
    assert!(looks_like_json(json));
    let m = &parse(json).unwrap()[0];
    assert_eq!(m.spec.components[0].pool_size, 2);
    assert_eq!(
        m.spec.components[0].local_resources.sockets[0].protocol,
        Protocol::Udp
    );

    let list = format!("[{json}, {}]", json.replace("\"a\"", "\"b\""));
    let ms = parse(&list).unwrap();
    assert_eq!(ms.len(), 2);
    assert_eq!(ms[1].origin.document, Some(1));
    let stream = format!("{json}\n{}", json.replace("\"a\"", "\"b\""));
    assert_eq!(parse(&stream).unwrap().len(), 2);

    let errs = errors(&json.replace("\"poolSize\":2", "\"poolSize\":\"2\",\"imag\":1"));
    expect(
        &errs,
        "spec.components[0].poolSize",
        ErrorKind::WrongType,
        "remove the quotes",
    );
    expect(
        &errs,
        "spec.components[0].imag",
        ErrorKind::UnknownField,
        "did you mean `image`?",
    );
}

#[test]
fn printing_round_trips() {
    let ms = parse(FULL).unwrap();
    let yaml = to_yaml(&ms[0]).unwrap();
    assert!(
        yaml.starts_with("apiVersion: weft.dev/v1alpha1\nkind: Workload\n"),
        "{yaml}"
    );
    assert_eq!(parse(&yaml).unwrap(), ms, "{yaml}");
    let json = to_json(&ms[0]).unwrap();
    assert_eq!(parse(&json).unwrap(), ms, "{json}");
    let value = to_json_value(&ms[0]).unwrap();
    assert_eq!(value["spec"]["components"][0]["maxInvocations"], 1);
    assert!(value.get("origin").is_none());
}

#[test]
fn schema_describes_every_field_and_matches_the_decoder() {
    let schema = json_schema();
    let text = serde_json::to_string(&schema).unwrap();
    assert!(text.contains("weft.dev/v1alpha1"));
    let defs = schema["$defs"].as_object().expect("$defs");
    // Every object level the decoder knows is in the schema with exactly the same properties.
    for (name, fields) in crate::parse::LEVELS {
        let obj = if *name == "Manifest" {
            &schema
        } else {
            &defs[*name]
        };
        assert_eq!(obj["additionalProperties"], false, "{name}");
        let props = obj["properties"]
            .as_object()
            .unwrap_or_else(|| panic!("{name} has no properties"));
        let mut got: Vec<&str> = props.keys().map(String::as_str).collect();
        let mut want: Vec<&str> = fields.to_vec();
        got.sort_unstable();
        want.sort_unstable();
        assert_eq!(got, want, "{name}");
        for (field, prop) in props {
            assert!(
                prop.get("description")
                    .and_then(|d| d.as_str())
                    .is_some_and(|d| !d.is_empty()),
                "{name}.{field} has no description"
            );
        }
    }
    // Every object schema anywhere forbids unknown fields (maps of strings excepted).
    fn walk(v: &serde_json::Value, at: &str) {
        if let Some(o) = v.as_object() {
            if o.contains_key("properties") {
                assert_eq!(
                    o.get("additionalProperties"),
                    Some(&serde_json::Value::Bool(false)),
                    "{at}"
                );
            }
            for (k, child) in o {
                walk(child, &format!("{at}/{k}"));
            }
        } else if let Some(a) = v.as_array() {
            for (i, child) in a.iter().enumerate() {
                walk(child, &format!("{at}/{i}"));
            }
        }
    }
    walk(&schema, "#");
    assert_eq!(
        defs["Component"]["properties"]["maxInvocations"]["default"],
        1
    );
    assert_eq!(defs["Service"]["properties"]["maxRestarts"]["default"], 3);
    assert_eq!(
        defs["Metadata"]["properties"]["namespace"]["default"],
        "default"
    );
    let required = defs["Component"]["required"].as_array().unwrap();
    let mut required: Vec<&str> = required.iter().filter_map(|v| v.as_str()).collect();
    required.sort_unstable();
    assert_eq!(required, ["image", "name"]);
}

#[test]
fn diff_lists_the_plan() {
    let old = parse(FULL).unwrap().remove(0);
    assert!(diff(&old, &old).is_empty());
    let mut new = old.clone();
    new.origin.path = PathBuf::from("elsewhere.yaml");
    new.spec.components.reverse();
    assert!(
        diff(&old, &new).is_empty(),
        "order and origin are not changes"
    );

    let mut new = old.clone();
    new.spec.components[0].image = "./api-v2.wasm".into();
    new.spec.components[0]
        .local_resources
        .config
        .insert("x".into(), "y".into());
    new.spec.components.remove(1);
    new.spec.components.push(Component {
        name: "web".into(),
        image: "./web.wasm".into(),
        max_invocations: 1,
        max_concurrency: 1,
        ..Component::default()
    });
    new.spec.service.as_mut().unwrap().max_restarts = 5;
    new.spec.host_interfaces.remove(1);
    new.spec.host_interfaces[0]
        .config
        .insert("path".into(), "/v2".into());
    new.spec.host_interfaces.push(HostInterface {
        namespace: "wasi".into(),
        package: "logging".into(),
        interfaces: vec!["logging".into()],
        config: Default::default(),
    });
    new.spec.volumes[0].host_path.local_path = "./data2".into();
    new.spec.compose = Compose::Never;
    let changes = diff(&old, &new);
    let shown: Vec<String> = changes.iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        [
            "~ compose: auto -> never",
            "- component calc-v2",
            "~ component api (image, localResources.config)",
            "+ component web",
            "~ service pool (maxRestarts)",
            "- host interface wasi:keyvalue",
            "~ host interface wasi:http (config)",
            "+ host interface wasi:logging",
            "~ volume data (hostPath.localPath)",
        ]
    );
    // Reversed, adds and removes swap.
    let back: Vec<String> = diff(&new, &old).iter().map(ToString::to_string).collect();
    assert!(back.contains(&"+ component calc-v2".to_string()));
    assert!(back.contains(&"- component web".to_string()));

    let mut renamed = old.clone();
    renamed.metadata.name = "todo2".into();
    renamed.spec.service.as_mut().unwrap().name = "pool2".into();
    renamed.kind = Kind::WorkloadDeployment;
    renamed.spec.replicas = Some(3);
    let shown: Vec<String> = diff(&old, &renamed)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        shown,
        [
            "~ kind: Workload -> WorkloadDeployment",
            "~ metadata.name: todo -> todo2",
            "~ replicas: 1 -> 3",
            "- service pool",
            "+ service pool2",
        ]
    );
}

#[test]
fn alias_bombs_are_refused_quickly() {
    let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..10 {
        let prev = format!("*a{}", i - 1);
        text.push_str(&format!(
            "a{i}: &a{i} [{}]\n",
            [prev.as_str(); 10].join(", ")
        ));
    }
    let start = std::time::Instant::now();
    let errs = errors(&text);
    assert!(start.elapsed() < std::time::Duration::from_secs(5));
    assert_eq!(errs.0[0].kind, ErrorKind::Syntax, "{errs}");
}

#[test]
fn the_reference_doc_covers_every_field_and_host_interface() {
    let doc_path = std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
    )
    .join("../../docs/manifest.md");
    let doc = std::fs::read_to_string(&doc_path).unwrap();
    for (level, fields) in crate::parse::LEVELS {
        for f in *fields {
            assert!(
                doc.contains(&format!("`{f}`")),
                "docs/manifest.md lacks `{f}` ({level})"
            );
        }
    }
    for k in KNOWN_HOST_INTERFACES {
        assert!(doc.contains(&format!("`{}:{}`", k.namespace, k.package)));
        for i in k.interfaces {
            assert!(
                doc.contains(&format!("`{i}`")),
                "docs/manifest.md lacks `{i}`"
            );
        }
        for c in k.config_keys {
            assert!(
                doc.contains(&format!("`{c}`")),
                "docs/manifest.md lacks `{c}`"
            );
        }
    }
}

#[test]
fn socket_rules_and_lookup_names_are_checked() {
    let errs = errors(&with_component(
        "localResources:\n  sockets: [ { port: 53, hostPort: 5353, protocol: udp }, { port: 5432, hostPort: 15432 } ]\n  allowedIpNameLookups: [ \"db.internal\", \"*.svc\", \"*\", \"10.0.0.1\", \"bad name\" ]",
    ));
    expect(
        &errs,
        "spec.components[0].localResources.sockets[0].hostPort",
        ErrorKind::InvalidValue,
        "remove hostPort",
    );
    assert!(
        errs.at("spec.components[0].localResources.sockets[1].hostPort")
            .is_none()
    );
    for ok in 0..3 {
        assert!(
            errs.at(&format!(
                "spec.components[0].localResources.allowedIpNameLookups[{ok}]"
            ))
            .is_none()
        );
    }
    expect(
        &errs,
        "spec.components[0].localResources.allowedIpNameLookups[3]",
        ErrorKind::InvalidValue,
        "grant the port in `sockets`",
    );
    expect(
        &errs,
        "spec.components[0].localResources.allowedIpNameLookups[4]",
        ErrorKind::InvalidValue,
        "db.internal",
    );
}

#[test]
fn keyvalue_bucket_names_are_limited_like_the_runtime_limits_them() {
    // Found by fuzz/fuzz_targets/manifest_parse.rs (the input is in
    // fuzz/regressions/manifest_parse/): validation accepted a bucket name the key-value plugin
    // refuses at deploy time.
    let kv = |bucket: &str| {
        with_spec(&format!(
            "hostInterfaces:\n  - {{ namespace: wasi, package: keyvalue, interfaces: [store], config: {{ bucket: {bucket} }} }}"
        ))
    };
    assert!(parse(&kv(&"b".repeat(MAX_BUCKET_NAME_BYTES))).is_ok());
    let errs = errors(&kv(&"b".repeat(MAX_BUCKET_NAME_BYTES + 1)));
    let e = expect(
        &errs,
        "spec.hostInterfaces[0].config.bucket",
        ErrorKind::InvalidValue,
        "shorter",
    );
    assert!(e.message.contains("256 bytes"), "{}", e.message);
}

#[test]
fn serve_http_needs_the_incoming_handler_grant() {
    let svc = "service:\n  name: front\n  image: ./front.wasm\n  serveHttp: true\n";
    let errs = errors(&with_spec(svc));
    let e = expect(
        &errs,
        "spec.service.serveHttp",
        ErrorKind::InvalidValue,
        "interfaces: [incoming-handler]",
    );
    assert!(e.to_string().contains("grants no incoming HTTP"), "{e}");
    assert!(
        e.hint
            .as_deref()
            .unwrap_or_default()
            .contains("or remove `serveHttp`")
    );

    // An outgoing-only wasi:http grant is not enough.
    let outgoing = format!(
        "{svc}hostInterfaces:\n  - {{ namespace: wasi, package: http, interfaces: [outgoing-handler] }}\n"
    );
    expect(
        &errors(&with_spec(&outgoing)),
        "spec.service.serveHttp",
        ErrorKind::InvalidValue,
        "incoming-handler",
    );

    let granted = format!(
        "{svc}hostInterfaces:\n  - {{ namespace: wasi, package: http, interfaces: [incoming-handler], config: {{ host: todo.localhost, path: / }} }}\n"
    );
    let m = parse(&with_spec(&granted)).unwrap();
    let service = m[0].spec.service.as_ref().unwrap();
    assert!(service.serve_http);
    // Off by default, and printed only when on.
    let plain = parse(&with_spec(
        "service:\n  name: front\n  image: ./front.wasm\n",
    ))
    .unwrap();
    assert!(!plain[0].spec.service.as_ref().unwrap().serve_http);
    assert!(
        !crate::print::to_yaml(&plain[0])
            .unwrap()
            .contains("serveHttp")
    );
    assert!(
        crate::print::to_yaml(&m[0])
            .unwrap()
            .contains("serveHttp: true")
    );

    // On a component it is misplaced, and the hint says where it belongs.
    let errs = errors(&with_component("serveHttp: true"));
    assert!(
        errs.to_string()
            .contains("only `spec.service` has `serveHttp`"),
        "{errs}"
    );
    // A non-boolean is a type error naming the field.
    let errs = errors(&with_spec(
        "service:\n  name: front\n  image: ./front.wasm\n  serveHttp: yes-please\n",
    ));
    assert!(
        errs.iter().any(|e| e.path == "spec.service.serveHttp"),
        "{errs}"
    );
}
