//! What the CLI does against a lattice, talking to NATS directly (docs/lattice.md, "Status").

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use weft_manifest::Manifest;
use weft_scheduler::HostStatus;

use crate::connect::{Lattice, LatticeError};
use crate::images;
use crate::view::{BadValues, View};

/// What `deploy` stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deployed {
    pub name: String,
    pub version: String,
    pub replicas: u32,
    /// Digests of the images uploaded now (those already stored are not listed).
    pub images: Vec<String>,
}

/// Milliseconds since the Unix epoch (for display only; never compared across machines).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Stores `manifest` as the desired state of its workload: each local image's bytes go to the
/// object store under their sha256 and the digest is pinned in the stored manifest, so no host
/// needs the deployer's files. A pinned digest the file does not match is refused.
/// `oci://` images are pinned with `puller` (the deployer's registry options and store).
pub async fn deploy(
    lattice: &Lattice,
    mut manifest: Manifest,
    puller: &weft_oci::Puller,
) -> Result<Deployed, LatticeError> {
    let name = manifest.metadata.name.clone();
    // `oci://` images: the tag is resolved to its digest here, once, and the pinned reference
    // is what the desired state keeps; every host pulls that digest itself
    // (docs/distribution.md). Pulling (not only resolving) checks the artifact before any
    // host is asked to run it.
    if weft_oci::has_oci_images(&manifest) {
        puller
            .pin(&mut manifest)
            .await
            .map_err(|e| lattice.op_err(format!("{name}: pin oci images"), e))?;
    }
    let base = manifest.base_dir();
    let mut uploaded = Vec::new();
    let mut slots: Vec<(String, &mut String, &mut Option<String>)> = Vec::new();
    for (i, c) in manifest.spec.components.iter_mut().enumerate() {
        slots.push((format!("spec.components[{i}]"), &mut c.image, &mut c.digest));
    }
    if let Some(s) = manifest.spec.service.as_mut() {
        slots.push(("spec.service".to_string(), &mut s.image, &mut s.digest));
    }
    for (what, image, digest) in slots {
        if image.trim_start().starts_with("oci://") {
            continue;
        }
        let path = weft_manifest::resolve_image(image, &base)
            .map_err(|e| lattice.op_err(format!("{name}: {what}.image `{image}`"), e))?;
        let bytes = tokio::fs::read(&path).await.map_err(|e| {
            lattice.op_err(
                format!("{name}: {what}.image"),
                format!("cannot read {}: {e}", path.display()),
            )
        })?;
        let got = images::digest_of(&bytes);
        if let Some(want) = digest.as_deref()
            && want != got
        {
            return Err(lattice.op_err(
                format!("{name}: {what}.digest"),
                format!(
                    "{} hashes to {got}, but the manifest pins {want} (hint: update the digest or the image)",
                    path.display()
                ),
            ));
        }
        let existed = lattice.images.info(&got).await.is_ok();
        images::upload(lattice, &bytes).await?;
        if !existed {
            uploaded.push(got.clone());
        }
        *digest = Some(got);
    }
    let bytes = weft_scheduler::records::encode_desired(&manifest, now_ms())
        .map_err(|e| lattice.op_err(format!("{name}: encode"), e))?;
    let version = weft_scheduler::version_of(&manifest)
        .map_err(|e| lattice.op_err(format!("{name}: version"), e))?;
    lattice
        .desired
        .put(name.as_str(), bytes.into())
        .await
        .map_err(|e| lattice.op_err(format!("store the desired state of {name}"), e))?;
    Ok(Deployed {
        name,
        version,
        replicas: manifest.replicas(),
        images: uploaded,
    })
}

/// Deletes a workload's desired state; its replicas stop as the leader removes the
/// placements. Returns whether it existed.
pub async fn delete(lattice: &Lattice, name: &str) -> Result<bool, LatticeError> {
    let existed = lattice
        .desired
        .get(name)
        .await
        .map_err(|e| lattice.op_err(format!("read {name}"), e))?
        .is_some();
    if existed {
        lattice
            .desired
            .delete(name)
            .await
            .map_err(|e| lattice.op_err(format!("delete {name}"), e))?;
    }
    Ok(existed)
}

/// The hosts as a JSON array: `{name, labels, status, replicas: {WORKLOAD: COUNT}, leader,
/// httpAddr}`; `replicas` counts what the host reports running.
pub async fn hosts(lattice: &Lattice) -> Result<Value, LatticeError> {
    let view = View::read(lattice, &BadValues::default())
        .await
        .map_err(|e| lattice.op_err("read the lattice", e))?;
    let mut out = Vec::new();
    for (name, (host, record, _)) in &view.hosts {
        let mut replicas = serde_json::Map::new();
        if host.status == HostStatus::Ready
            && let Some((report, r)) = view.reports.get(name)
            && r.id == record.id
        {
            for w in report.running.keys() {
                replicas.insert(w.clone(), json!(1));
            }
        }
        let leader = view.lease.as_ref().is_some_and(|(l, _)| &l.holder == name);
        out.push(json!({
            "name": name,
            "labels": host.labels,
            "status": host.status.as_str(),
            "replicas": replicas,
            "leader": leader,
            "httpAddr": record.http_addr,
        }));
    }
    Ok(Value::Array(out))
}

/// The deployments as a JSON array: `{name, version, replicas (desired), running, hosts,
/// failures}`; `running` counts ready hosts reporting the current version; `failures` lists
/// `{host, version, error}` for the current version.
pub async fn workloads(lattice: &Lattice) -> Result<Value, LatticeError> {
    let view = View::read(lattice, &BadValues::default())
        .await
        .map_err(|e| lattice.op_err("read the lattice", e))?;
    let state = view.state();
    let mut out = Vec::new();
    for (name, d) in &view.desired {
        let running: Vec<&String> = state
            .hosts
            .values()
            .filter(|h| h.status == HostStatus::Ready)
            .filter(|h| state.is_ready(name, &h.name, &d.deployment.version))
            .map(|h| &h.name)
            .collect();
        // Hosts that report this deployment's current version failed there.
        let failures: Vec<Value> = view
            .reports
            .iter()
            .filter_map(|(host, (report, _))| {
                let f = report.failures.get(name)?;
                (f.version == d.deployment.version)
                    .then(|| json!({"host": host, "version": f.version, "error": f.error}))
            })
            .collect();
        out.push(json!({
            "name": name,
            "kind": format!("{:?}", d.manifest.kind),
            "version": d.deployment.version,
            "replicas": d.deployment.replicas,
            "running": running.len(),
            "hosts": running,
            "failures": failures,
        }));
    }
    Ok(Value::Array(out))
}

/// `weft logs NAME --lattice`: the recent lines of workload `name` from every ready host that
/// answers within 2 s, each prefixed with `[HOST] `, in time order (lines start with their
/// RFC 3339 time). Hosts that do not run it contribute nothing.
pub async fn logs(lattice: &Lattice, name: &str) -> Result<Vec<String>, LatticeError> {
    let view = View::read(lattice, &BadValues::default())
        .await
        .map_err(|e| lattice.op_err("read the lattice", e))?;
    let mut out = Vec::new();
    for (host, (h, _, _)) in &view.hosts {
        if h.status != HostStatus::Ready {
            continue;
        }
        let subject = crate::connect::logs_subject(&lattice.name, host);
        let request = async_nats::Request::new()
            .payload(name.to_string().into())
            .timeout(Some(std::time::Duration::from_secs(2)));
        let Ok(reply) = lattice.client.send_request(subject, request).await else {
            continue;
        };
        let lines: Vec<String> = serde_json::from_slice(&reply.payload).unwrap_or_default();
        out.extend(lines.into_iter().map(|l| format!("[{host}] {l}")));
    }
    // `[HOST] TIME ...`: order by the time, then the host.
    out.sort_by(|a, b| {
        let time = |l: &str| {
            l.split_once("] ")
                .map(|(_, r)| r.to_string())
                .unwrap_or_default()
        };
        time(a).cmp(&time(b)).then_with(|| a.cmp(b))
    });
    Ok(out)
}
