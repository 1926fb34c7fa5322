//! The decoders of lattice state: never panic, accept what the encoders write, and name the key
//! and field of what they refuse.

use std::path::Path;

use proptest::prelude::*;
use weft_scheduler::records::{
    self, FailureRecord, HostRecord, LeaseRecord, ReportRecord, RunningRecord, decode_desired,
    decode_host, decode_lease, decode_placement, decode_report, encode_desired, encode_placement,
};
use weft_scheduler::{HostStatus, Placement, version_of};

const DEPLOYMENT: &str = r#"
apiVersion: weft.dev/v1alpha1
kind: WorkloadDeployment
metadata: { name: web, labels: { app: web } }
spec:
  replicas: 3
  hostSelector: { tier: edge }
  spreadBy: zone
  components:
    - name: api
      image: ./api.wasm
      digest: sha256:0000000000000000000000000000000000000000000000000000000000000000
"#;

fn manifest(text: &str) -> weft_manifest::Manifest {
    weft_manifest::parse_str(text, Path::new("web.yaml"))
        .expect("test manifest parses")
        .remove(0)
}

#[test]
fn desired_round_trips_and_reads_the_scheduling_fields() {
    let m = manifest(DEPLOYMENT);
    let bytes = encode_desired(&m, 42).expect("encodes");
    let d = decode_desired("web", &bytes).expect("decodes");
    assert_eq!(d.deployment.replicas, 3);
    assert_eq!(d.deployment.selector["tier"], "edge");
    assert_eq!(d.deployment.spread_by.as_deref(), Some("zone"));
    assert_eq!(d.deployment.version, version_of(&m).expect("prints"));
    assert_eq!(d.deployed_at_ms, 42);
    assert_eq!(d.manifest.spec.components, m.spec.components);

    // The key must be the name.
    let e = decode_desired("api", &bytes).unwrap_err();
    assert_eq!(e.field, "manifest.metadata.name", "{e}");
}

#[test]
fn the_version_ignores_placement_fields_only() {
    let m = manifest(DEPLOYMENT);
    let v = version_of(&m).expect("prints");
    assert_eq!(v.len(), 12);
    let scaled = manifest(
        &DEPLOYMENT
            .replace("replicas: 3", "replicas: 5")
            .replace("spreadBy: zone", "spreadBy: rack")
            .replace("tier: edge", "tier: core")
            .replace("app: web", "app: site"),
    );
    assert_eq!(
        version_of(&scaled).expect("prints"),
        v,
        "placement is not a rollout"
    );
    let changed = manifest(&DEPLOYMENT.replace("- name: api", "- name: api\n      poolSize: 2"));
    assert_ne!(
        version_of(&changed).expect("prints"),
        v,
        "a spec change is a rollout"
    );
}

#[test]
fn a_local_image_must_be_pinned() {
    let m = manifest(&DEPLOYMENT.replace(
        "      digest: sha256:0000000000000000000000000000000000000000000000000000000000000000\n",
        "",
    ));
    let e = encode_desired(&m, 0).unwrap_err();
    assert!(e.contains("spec.components[0].image"), "{e}");
    // A stored value without a pin (written by something else) is refused by name.
    let value = serde_json::json!({
        "manifest": weft_manifest::to_json_value(&m).expect("prints"),
        "version": version_of(&m).expect("prints"),
    });
    let e = decode_desired("web", value.to_string().as_bytes()).unwrap_err();
    assert_eq!(e.bucket, "desired");
    assert_eq!(e.field, "manifest.spec.components[0].image");
}

#[test]
fn a_tampered_version_is_refused() {
    let m = manifest(DEPLOYMENT);
    let mut value: serde_json::Value =
        serde_json::from_slice(&encode_desired(&m, 0).expect("encodes")).expect("json");
    value["version"] = "aaaaaaaaaaaa".into();
    let e = decode_desired("web", value.to_string().as_bytes()).unwrap_err();
    assert_eq!(e.field, "version");
    assert!(e.to_string().starts_with("desired `web`: version: "), "{e}");
}

#[test]
fn hosts_reports_placements_and_lease_round_trip() {
    let host = HostRecord {
        name: "h1".into(),
        id: "a1b2".into(),
        labels: [("zone".to_string(), "a".to_string())].into(),
        status: "lost".into(),
        seq: 9,
        http_addr: Some("127.0.0.1:8080".into()),
        started_at_ms: 1,
        weft_version: "0.1.0".into(),
    };
    let (h, back) = decode_host("h1", &serde_json::to_vec(&host).expect("json")).expect("host");
    assert_eq!(h.status, HostStatus::Lost);
    assert_eq!(back, host);
    assert_eq!(
        decode_host("h2", &serde_json::to_vec(&host).expect("json"))
            .unwrap_err()
            .field,
        "name"
    );

    let report = ReportRecord {
        name: "h1".into(),
        id: "a1b2".into(),
        replicas: [(
            "web".to_string(),
            RunningRecord {
                version: "0123456789ab".into(),
                ready: true,
            },
        )]
        .into(),
        failures: [(
            "api".to_string(),
            FailureRecord {
                version: "ba9876543210".into(),
                error: "x".repeat(10_000),
            },
        )]
        .into(),
    };
    let (r, _) = decode_report("h1", &serde_json::to_vec(&report).expect("json")).expect("report");
    assert!(r.running["web"].ready);
    assert_eq!(
        r.failures["api"].error.len(),
        records::MAX_ERROR_CHARS,
        "long errors are cut"
    );

    let p = Placement {
        workload: "web".into(),
        host: "h1".into(),
        version: "0123456789ab".into(),
    };
    let (back, epoch) = decode_placement("web.h1", &encode_placement(&p, 7)).expect("placement");
    assert_eq!((back, epoch), (p.clone(), 7));
    assert_eq!(
        decode_placement("web.h2", &encode_placement(&p, 7))
            .unwrap_err()
            .field,
        "workload/host"
    );
    assert_eq!(
        decode_placement("web", &encode_placement(&p, 7))
            .unwrap_err()
            .field,
        "key"
    );

    let lease = LeaseRecord {
        holder: "h1".into(),
        id: "a1b2".into(),
        acquired_at_ms: 5,
    };
    assert_eq!(
        decode_lease("leader", &serde_json::to_vec(&lease).expect("json")).expect("lease"),
        lease
    );
    assert_eq!(
        decode_lease("other", &serde_json::to_vec(&lease).expect("json"))
            .unwrap_err()
            .field,
        "key"
    );
}

#[test]
fn errors_name_the_bucket_key_and_field() {
    let e = decode_host("Bad Key", b"{}").unwrap_err();
    assert_eq!(e.field, "key");
    assert!(e.to_string().starts_with("hosts `Bad Key`: key: "), "{e}");
    let e = decode_host("h1", b"not json").unwrap_err();
    assert_eq!(e.field, "value");
    let e = decode_host(
        "h1",
        br#"{"name":"h1","id":"x","status":"ready","labels":{"bad key":"v"}}"#,
    )
    .unwrap_err();
    assert_eq!(e.field, "labels.bad key");
    let e = decode_host("h1", br#"{"name":"h1","id":"x","status":"zombie"}"#).unwrap_err();
    assert_eq!(e.field, "status");
    let e = decode_report(
        "h1",
        br#"{"name":"h1","id":"x","replicas":{"web":{"version":"nothex","ready":true}}}"#,
    )
    .unwrap_err();
    assert_eq!(e.field, "replicas.web.version");
    let huge = vec![b' '; records::MAX_VALUE_BYTES + 1];
    assert!(
        decode_lease("leader", &huge)
            .unwrap_err()
            .problem
            .contains("bytes")
    );
}

proptest! {
    /// No input makes a decoder panic.
    #[test]
    fn decoders_never_panic(key in ".{0,40}", bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = decode_desired(&key, &bytes);
        let _ = decode_host(&key, &bytes);
        let _ = decode_report(&key, &bytes);
        let _ = decode_placement(&key, &bytes);
        let _ = decode_lease(&key, &bytes);
    }

    /// Near-valid JSON (the right shape, random field values) never panics, and what decodes
    /// keeps the key's identity.
    #[test]
    fn structured_values_decode_or_name_a_field(
        name in "[a-z0-9-]{0,6}",
        key in "[a-z0-9.-]{0,8}",
        status in prop_oneof![Just("ready"), Just("lost"), Just(""), Just("x")],
        label_key in "[a-z/ .]{0,6}",
        version in "[0-9a-g]{10,13}",
        ready in any::<bool>(),
    ) {
        let host = serde_json::json!({
            "name": name, "id": "i", "status": status, "labels": { label_key.clone(): "v" },
        });
        match decode_host(&key, host.to_string().as_bytes()) {
            Ok((h, _)) => prop_assert_eq!(&h.name, &key),
            Err(e) => prop_assert!(!e.field.is_empty()),
        }
        let placement = serde_json::json!({ "workload": name, "host": name, "version": version });
        match decode_placement(&key, placement.to_string().as_bytes()) {
            Ok((p, _)) => prop_assert_eq!(&format!("{}.{}", p.workload, p.host), &key),
            Err(e) => prop_assert!(!e.field.is_empty()),
        }
        let report = serde_json::json!({
            "name": name, "id": "i", "replicas": { label_key: { "version": version, "ready": ready } },
        });
        match decode_report(&key, report.to_string().as_bytes()) {
            Ok((r, rec)) => {
                prop_assert_eq!(&rec.name, &key);
                for run in r.running.values() {
                    prop_assert_eq!(run.version.len(), 12);
                }
            }
            Err(e) => prop_assert!(!e.field.is_empty()),
        }
    }
}

/// Inputs in `fuzz/regressions/lattice_decode/` (byte 0 picks the bucket, then KEY, newline,
/// VALUE) replayed through the decoders; `valid-*` files must decode.
#[test]
fn lattice_decode_regressions() {
    let dir = std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
    )
    .join("../../fuzz/regressions/lattice_decode");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("fuzz/regressions/lattice_decode exists")
        .map(|e| e.expect("dir entry").path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} is empty", dir.display());
    for file in files {
        let data = std::fs::read(&file).expect("readable");
        let (&which, rest) = data.split_first().expect("non-empty input");
        let split = rest.iter().position(|b| *b == b'\n').unwrap_or(rest.len());
        let key = String::from_utf8_lossy(&rest[..split]).into_owned();
        let value = rest.get(split + 1..).unwrap_or_default();
        let ok = match which % 5 {
            0 => decode_desired(&key, value).map(|_| ()),
            1 => decode_host(&key, value).map(|_| ()),
            2 => decode_report(&key, value).map(|_| ()),
            3 => decode_placement(&key, value).map(|_| ()),
            _ => decode_lease(&key, value).map(|_| ()),
        };
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name.starts_with("valid-") {
            ok.unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        }
    }
}
