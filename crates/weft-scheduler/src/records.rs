//! The lattice's stored values (JSON in JetStream KV) and their decoders. A decoder takes the
//! bucket's key and the raw bytes, checks everything the scheduler and the hosts rely on, and
//! returns typed state or a [`DecodeError`] naming the key and the field. Decoders never panic
//! (fuzzed: `fuzz/fuzz_targets/lattice_decode.rs`).

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use weft_manifest::{Kind, Manifest, rules};

use crate::model::{Deployment, Failure, Host, HostStatus, Labels, Placement, Report, Running};

/// The largest value any decoder reads (bigger values are refused before parsing).
pub const MAX_VALUE_BYTES: usize = 1 << 20;
/// The longest error string kept from a host report.
pub const MAX_ERROR_CHARS: usize = 4096;
/// The longest host instance id.
pub const MAX_ID_CHARS: usize = 64;

/// A stored value that cannot be used. Shown as `BUCKET KEY: field: problem`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{bucket} `{key}`: {field}: {problem}")]
pub struct DecodeError {
    /// Which kind of record (`desired`, `hosts`, `status`, `placements`, `lease`).
    pub bucket: &'static str,
    /// The key, shortened to 80 characters and escaped.
    pub key: String,
    /// The field (or `key`, `value`).
    pub field: String,
    /// What is wrong.
    pub problem: String,
}

fn err(bucket: &'static str, key: &str, field: &str, problem: impl Into<String>) -> DecodeError {
    let mut shown: String = key
        .chars()
        .take(80)
        .flat_map(char::escape_default)
        .collect();
    if key.chars().count() > 80 {
        shown.push('…');
    }
    DecodeError {
        bucket,
        key: shown,
        field: field.to_string(),
        problem: problem.into(),
    }
}

fn parse_json<'a, T: Deserialize<'a>>(
    bucket: &'static str,
    key: &str,
    bytes: &'a [u8],
) -> Result<T, DecodeError> {
    if bytes.len() > MAX_VALUE_BYTES {
        return Err(err(
            bucket,
            key,
            "value",
            format!("{} bytes, more than {MAX_VALUE_BYTES}", bytes.len()),
        ));
    }
    serde_json::from_slice(bytes)
        .map_err(|e| err(bucket, key, "value", format!("not the expected JSON: {e}")))
}

/// Checks a host name, a workload name or a lattice name: a DNS label (lowercase `a-z`, `0-9`,
/// `-`, 1 to 63 characters, not starting or ending with `-`), so it is one token of a NATS
/// subject and of a KV key.
pub fn check_name(s: &str) -> Result<(), String> {
    rules::check_dns_label(s).map_err(|r| match r.hint {
        Some(h) => format!("`{}` {} (hint: {h})", s.escape_default(), r.reason),
        None => format!("`{}` {}", s.escape_default(), r.reason),
    })
}

fn check_labels(
    bucket: &'static str,
    key: &str,
    field: &str,
    labels: &Labels,
) -> Result<(), DecodeError> {
    for (k, v) in labels {
        rules::check_label_key(k).map_err(|r| {
            err(
                bucket,
                key,
                &format!("{field}.{}", k.escape_default()),
                r.reason,
            )
        })?;
        rules::check_label_value(v).map_err(|r| {
            err(
                bucket,
                key,
                &format!("{field}.{}", k.escape_default()),
                r.reason,
            )
        })?;
    }
    Ok(())
}

fn check_version(bucket: &'static str, key: &str, field: &str, v: &str) -> Result<(), DecodeError> {
    if v.len() == VERSION_HEX
        && v.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        Ok(())
    } else {
        Err(err(
            bucket,
            key,
            field,
            format!(
                "`{}` is not a version ({VERSION_HEX} lowercase hex digits)",
                v.escape_default()
            ),
        ))
    }
}

/// Hex digits in a version.
pub const VERSION_HEX: usize = 12;

/// The version of a manifest: the first 12 hex digits of the sha256 of its canonical JSON
/// without what only placement reads (`kind`, `metadata.labels`, `spec.replicas`,
/// `spec.hostSelector`, `spec.spreadBy`). Changing those is not a rollout.
pub fn version_of(manifest: &Manifest) -> Result<String, weft_manifest::PrintError> {
    let mut value = weft_manifest::to_json_value(manifest)?;
    if let Some(obj) = value.as_object_mut() {
        obj.remove("kind");
        if let Some(md) = obj.get_mut("metadata").and_then(|m| m.as_object_mut()) {
            md.remove("labels");
        }
        if let Some(spec) = obj.get_mut("spec").and_then(|s| s.as_object_mut()) {
            spec.remove("replicas");
            spec.remove("hostSelector");
            spec.remove("spreadBy");
        }
    }
    let canonical = canonical_json(&value);
    let digest = Sha256::digest(canonical.as_bytes());
    Ok(hex::encode(digest)[..VERSION_HEX].to_string())
}

/// JSON with object keys sorted at every level (independent of serde_json's map order).
fn canonical_json(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Object(map) => {
            let sorted: BTreeMap<&String, String> =
                map.iter().map(|(k, v)| (k, canonical_json(v))).collect();
            let parts: Vec<String> = sorted
                .into_iter()
                .map(|(k, v)| format!("{}:{v}", serde_json::Value::String(k.clone())))
                .collect();
            format!("{{{}}}", parts.join(","))
        }
        serde_json::Value::Array(items) => {
            format!(
                "[{}]",
                items
                    .iter()
                    .map(canonical_json)
                    .collect::<Vec<_>>()
                    .join(",")
            )
        }
        other => other.to_string(),
    }
}

// ---- desired ----

/// A value of the desired-state bucket (key: the workload name).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DesiredRecord {
    /// The normalised manifest, every local image's digest pinned.
    pub manifest: serde_json::Value,
    /// [`version_of`] the manifest.
    pub version: String,
    /// When it was deployed (wall clock of the deployer, milliseconds; informational).
    #[serde(default)]
    pub deployed_at_ms: u64,
}

/// A decoded desired deployment: the manifest and what the scheduler reads of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Desired {
    /// The manifest (images still as the deployer wrote them; digests pinned).
    pub manifest: Manifest,
    /// The scheduler's view.
    pub deployment: Deployment,
    /// When it was deployed (milliseconds since the epoch, deployer's clock).
    pub deployed_at_ms: u64,
}

/// Builds the stored record of a manifest. Every component and the service must pin a digest
/// (or be `oci://`): the caller uploads local images first.
pub fn encode_desired(manifest: &Manifest, deployed_at_ms: u64) -> Result<Vec<u8>, String> {
    check_name(&manifest.metadata.name)?;
    for (what, image, digest) in images(manifest) {
        if digest.is_none() && !image.starts_with("oci://") {
            return Err(format!("{what}: the image `{image}` has no pinned digest"));
        }
    }
    let record = DesiredRecord {
        manifest: weft_manifest::to_json_value(manifest)
            .map_err(|e| format!("cannot print the manifest: {e}"))?,
        version: version_of(manifest).map_err(|e| format!("cannot print the manifest: {e}"))?,
        deployed_at_ms,
    };
    serde_json::to_vec(&record).map_err(|e| format!("cannot encode the desired record: {e}"))
}

/// `(field path, image, digest)` of every component and the service.
pub fn images(manifest: &Manifest) -> Vec<(String, String, Option<String>)> {
    let mut out: Vec<(String, String, Option<String>)> = manifest
        .spec
        .components
        .iter()
        .enumerate()
        .map(|(i, c)| {
            (
                format!("spec.components[{i}].image"),
                c.image.clone(),
                c.digest.clone(),
            )
        })
        .collect();
    if let Some(s) = &manifest.spec.service {
        out.push((
            "spec.service.image".into(),
            s.image.clone(),
            s.digest.clone(),
        ));
    }
    out
}

/// Decodes a desired-state value.
pub fn decode_desired(key: &str, bytes: &[u8]) -> Result<Desired, DecodeError> {
    const B: &str = "desired";
    check_name(key).map_err(|e| err(B, key, "key", e))?;
    let record: DesiredRecord = parse_json(B, key, bytes)?;
    let text = serde_json::to_string(&record.manifest)
        .map_err(|e| err(B, key, "manifest", e.to_string()))?;
    let origin = format!("lattice:desired/{key}");
    let mut manifests = weft_manifest::parse_str(&text, Path::new(&origin))
        .map_err(|e| err(B, key, "manifest", e.to_string()))?;
    if manifests.len() != 1 {
        return Err(err(
            B,
            key,
            "manifest",
            format!("{} documents, expected one", manifests.len()),
        ));
    }
    let manifest = manifests.remove(0);
    if manifest.metadata.name != key {
        return Err(err(
            B,
            key,
            "manifest.metadata.name",
            format!(
                "`{}` is not the key",
                manifest.metadata.name.escape_default()
            ),
        ));
    }
    for (what, image, digest) in images(&manifest) {
        if digest.is_none() && !image.starts_with("oci://") {
            return Err(err(
                B,
                key,
                &format!("manifest.{what}"),
                "a local image without a pinned digest (deploy with `weft deploy --lattice`)",
            ));
        }
    }
    check_version(B, key, "version", &record.version)?;
    let version = version_of(&manifest).map_err(|e| err(B, key, "manifest", e.to_string()))?;
    if version != record.version {
        return Err(err(
            B,
            key,
            "version",
            format!(
                "`{}` does not match the manifest (its version is {version})",
                record.version
            ),
        ));
    }
    let deployment = Deployment {
        name: manifest.metadata.name.clone(),
        version,
        replicas: manifest.replicas(),
        selector: match manifest.kind {
            Kind::Workload => Labels::new(),
            Kind::WorkloadDeployment => manifest.spec.host_selector.clone().unwrap_or_default(),
        },
        spread_by: manifest.spec.spread_by.clone(),
    };
    Ok(Desired {
        manifest,
        deployment,
        deployed_at_ms: record.deployed_at_ms,
    })
}

// ---- hosts ----

/// A value of the hosts bucket (key: the host name): registration and heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HostRecord {
    /// The host's name (= the key).
    pub name: String,
    /// This process's instance id (new at every start and every re-registration).
    pub id: String,
    /// The host's labels.
    #[serde(default)]
    pub labels: Labels,
    /// `ready`, or `lost` once the leader fenced it.
    pub status: String,
    /// Heartbeat counter (informational; liveness is judged on revisions).
    #[serde(default)]
    pub seq: u64,
    /// The host's HTTP ingress address (informational).
    #[serde(default)]
    pub http_addr: Option<String>,
    /// Start time, wall clock milliseconds (informational).
    #[serde(default)]
    pub started_at_ms: u64,
    /// The weft version the host runs.
    #[serde(default)]
    pub weft_version: String,
}

/// Decodes a hosts-bucket value.
pub fn decode_host(key: &str, bytes: &[u8]) -> Result<(Host, HostRecord), DecodeError> {
    const B: &str = "hosts";
    check_name(key).map_err(|e| err(B, key, "key", e))?;
    let record: HostRecord = parse_json(B, key, bytes)?;
    if record.name != key {
        return Err(err(
            B,
            key,
            "name",
            format!("`{}` is not the key", record.name.escape_default()),
        ));
    }
    check_id(B, key, &record.id)?;
    check_labels(B, key, "labels", &record.labels)?;
    let status = match record.status.as_str() {
        "ready" => HostStatus::Ready,
        "lost" => HostStatus::Lost,
        other => {
            return Err(err(
                B,
                key,
                "status",
                format!("`{}`: expected ready or lost", other.escape_default()),
            ));
        }
    };
    Ok((
        Host {
            name: record.name.clone(),
            labels: record.labels.clone(),
            status,
        },
        record,
    ))
}

fn check_id(bucket: &'static str, key: &str, id: &str) -> Result<(), DecodeError> {
    if id.is_empty()
        || id.len() > MAX_ID_CHARS
        || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return Err(err(
            bucket,
            key,
            "id",
            format!(
                "`{}`: 1 to {MAX_ID_CHARS} letters, digits or `-`",
                id.escape_default()
            ),
        ));
    }
    Ok(())
}

// ---- status (host reports) ----

/// A value of the status bucket (key: the host name).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ReportRecord {
    /// The host's name (= the key).
    pub name: String,
    /// The reporting instance.
    pub id: String,
    /// Workload -> what runs.
    #[serde(default)]
    pub replicas: BTreeMap<String, RunningRecord>,
    /// Workload -> the version that failed.
    #[serde(default)]
    pub failures: BTreeMap<String, FailureRecord>,
}

/// What runs of one workload on a host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunningRecord {
    /// The version running.
    pub version: String,
    /// Deployed and answering.
    pub ready: bool,
}

/// A version that failed on a host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailureRecord {
    /// The version.
    pub version: String,
    /// The error.
    pub error: String,
}

/// Decodes a status-bucket value.
pub fn decode_report(key: &str, bytes: &[u8]) -> Result<(Report, ReportRecord), DecodeError> {
    const B: &str = "status";
    check_name(key).map_err(|e| err(B, key, "key", e))?;
    let record: ReportRecord = parse_json(B, key, bytes)?;
    if record.name != key {
        return Err(err(
            B,
            key,
            "name",
            format!("`{}` is not the key", record.name.escape_default()),
        ));
    }
    check_id(B, key, &record.id)?;
    let mut report = Report::default();
    for (w, r) in &record.replicas {
        check_name(w).map_err(|e| err(B, key, "replicas", e))?;
        check_version(B, key, &format!("replicas.{w}.version"), &r.version)?;
        report.running.insert(
            w.clone(),
            Running {
                version: r.version.clone(),
                ready: r.ready,
            },
        );
    }
    for (w, f) in &record.failures {
        check_name(w).map_err(|e| err(B, key, "failures", e))?;
        check_version(B, key, &format!("failures.{w}.version"), &f.version)?;
        report.failures.insert(
            w.clone(),
            Failure {
                version: f.version.clone(),
                error: f.error.chars().take(MAX_ERROR_CHARS).collect(),
            },
        );
    }
    Ok((report, record))
}

// ---- placements ----

/// A value of the placements bucket (key: `WORKLOAD.HOST`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlacementRecord {
    /// The workload (= the key's first token).
    pub workload: String,
    /// The host (= the key's second token).
    pub host: String,
    /// The version to run.
    pub version: String,
    /// The epoch of the leader that wrote it.
    #[serde(default)]
    pub leader_epoch: u64,
}

/// The key of a placement.
pub fn placement_key(workload: &str, host: &str) -> String {
    format!("{workload}.{host}")
}

/// Encodes a placement.
pub fn encode_placement(p: &Placement, leader_epoch: u64) -> Vec<u8> {
    let record = PlacementRecord {
        workload: p.workload.clone(),
        host: p.host.clone(),
        version: p.version.clone(),
        leader_epoch,
    };
    // Serializing plain strings and integers cannot fail.
    serde_json::to_vec(&record).unwrap_or_default()
}

/// Decodes a placements-bucket value.
pub fn decode_placement(key: &str, bytes: &[u8]) -> Result<(Placement, u64), DecodeError> {
    const B: &str = "placements";
    let Some((w, h)) = key.split_once('.') else {
        return Err(err(B, key, "key", "expected WORKLOAD.HOST"));
    };
    check_name(w).map_err(|e| err(B, key, "key", e))?;
    check_name(h).map_err(|e| err(B, key, "key", e))?;
    let record: PlacementRecord = parse_json(B, key, bytes)?;
    if record.workload != w || record.host != h {
        return Err(err(B, key, "workload/host", "do not match the key"));
    }
    check_version(B, key, "version", &record.version)?;
    Ok((
        Placement {
            workload: record.workload,
            host: record.host,
            version: record.version,
        },
        record.leader_epoch,
    ))
}

// ---- lease ----

/// The value of the lease key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LeaseRecord {
    /// The leading host's name.
    pub holder: String,
    /// Its instance id.
    pub id: String,
    /// When it took the lease (wall clock, informational).
    #[serde(default)]
    pub acquired_at_ms: u64,
}

/// The one key of the lease bucket.
pub const LEASE_KEY: &str = "leader";

/// Decodes the lease value.
pub fn decode_lease(key: &str, bytes: &[u8]) -> Result<LeaseRecord, DecodeError> {
    const B: &str = "lease";
    if key != LEASE_KEY {
        return Err(err(B, key, "key", format!("expected `{LEASE_KEY}`")));
    }
    let record: LeaseRecord = parse_json(B, key, bytes)?;
    check_name(&record.holder).map_err(|e| err(B, key, "holder", e))?;
    check_id(B, key, &record.id)?;
    Ok(record)
}
