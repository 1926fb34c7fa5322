//! Shared invariants for the fuzz targets in `fuzz_targets/`.
//!
//! The key one is [`runtime_rejection`]: the manifest-derived checks that `weft-runtime`,
//! `weft-interfaces` and `weft-host` make when a workload is deployed, restated here over the
//! pure crates (this crate must not link wasmtime). A manifest that `weft_manifest` validates must pass all of them;
//! if it does not, validation accepted something the runtime later rejects for a manifest
//! reason, and the fuzz target fails.

use std::path::Path;

use weft_manifest::{Component, Manifest};
use weft_policy::allow::AllowedHosts;
use weft_policy::router::{Route, RouteTable};
use weft_policy::sockets::{Protocol, SocketRule, SocketRules};

/// The name fuzz inputs are parsed under.
pub const SOURCE: &str = "fuzz.yaml";

/// The key-value plugin's limit (`weft-interfaces` `plugins::keyvalue::MAX_BUCKET_NAME_BYTES` is
/// defined as this constant).
pub const MAX_BUCKET_NAME_BYTES: usize = weft_manifest::MAX_BUCKET_NAME_BYTES;

/// Parses fuzz input text the way `weft apply`/`weft up` read a file (no filesystem checks).
pub fn parse(text: &str) -> Result<Vec<Manifest>, weft_manifest::ManifestErrors> {
    weft_manifest::parse_str(text, Path::new(SOURCE))
}

/// Every component of the workload, the service included (as the runtime deploys them).
pub fn units(m: &Manifest) -> Vec<Component> {
    let mut all = m.spec.components.clone();
    if let Some(s) = &m.spec.service {
        all.push(s.to_component());
    }
    all
}

/// The first reason the runtime would refuse to deploy `m` for something in the manifest itself
/// (not the images, the filesystem or other workloads), or `None`.
///
/// Mirrors, in order: `workload.rs` `http_options` (volume mounts must name a volume; allowed
/// hosts parse as `weft_policy::allow` rules) and `socket_rules`, the HTTP route a workload adds to the host's
/// `RouteTable` (and that a request for exactly that host and path reaches it), and the
/// key-value plugin's config checks (`plugins/keyvalue.rs`).
pub fn runtime_rejection(m: &Manifest) -> Option<String> {
    for c in units(m) {
        let res = &c.local_resources;
        for mount in &res.volume_mounts {
            if !m.spec.volumes.iter().any(|v| v.name == mount.name) {
                return Some(format!("component {}: no volume `{}`", c.name, mount.name));
            }
        }
        if let Err(e) = AllowedHosts::parse(&res.allowed_hosts) {
            return Some(format!("component {}: allowedHosts: {e}", c.name));
        }
        // workload.rs `socket_rules`.
        let rules = res
            .sockets
            .iter()
            .map(|s| SocketRule {
                port: s.port,
                host_port: s.effective_host_port(),
                protocol: match s.protocol {
                    weft_manifest::Protocol::Tcp => Protocol::Tcp,
                    weft_manifest::Protocol::Udp => Protocol::Udp,
                },
            })
            .collect();
        if let Err(e) = SocketRules::new(rules, &res.allowed_ip_name_lookups) {
            return Some(format!("component {}: sockets: {e}", c.name));
        }
    }

    for grant in &m.spec.host_interfaces {
        if let Some(cfg) = grant.http_incoming_config() {
            let target = m.metadata.name.clone();
            let route = Route {
                host: cfg.host.clone(),
                path: cfg.path.clone(),
                target: target.clone(),
            };
            let table = match RouteTable::new(vec![route]) {
                Ok(t) => t,
                Err(e) => return Some(format!("http route: {e}")),
            };
            if table.route(cfg.host.as_deref(), &cfg.path) != Some(target.as_str()) {
                return Some(format!(
                    "http route host {:?} path {:?} does not reach the workload",
                    cfg.host, cfg.path
                ));
            }
        }
        if grant.namespace == "wasi" && grant.package == "keyvalue" {
            if let Some(raw) = grant.config.get("backend")
                && weft_manifest::KeyValueBackend::parse(raw).is_none()
            {
                return Some(format!("keyvalue: unknown backend {raw:?}"));
            }
            let bucket = grant
                .keyvalue_config()
                .and_then(|c| c.bucket)
                .unwrap_or_else(|| m.metadata.name.clone());
            if bucket.is_empty() || bucket.len() > MAX_BUCKET_NAME_BYTES {
                return Some(format!("keyvalue: bucket name of {} bytes", bucket.len()));
            }
        }
    }
    for (what, value) in [
        ("name", &m.metadata.name),
        ("namespace", &m.metadata.namespace),
    ] {
        if !weft_manifest::rules::is_dns_label(value) {
            return Some(format!("metadata.{what} {value:?} is not a DNS label"));
        }
    }
    None
}

/// `m` with its origin cleared, for comparisons across different parses.
pub fn without_origin(m: &Manifest) -> Manifest {
    let mut m = m.clone();
    m.origin = Default::default();
    m
}

/// A form of `m` in which everything [`weft_manifest::diff`] is documented to ignore (origin,
/// list order, duplicate names after the first, the order and duplicates of a grant's
/// interfaces) is normalized away. Two manifests with an empty diff must be equal in this form.
pub fn canonical(m: &Manifest) -> Manifest {
    let mut m = without_origin(m);
    let spec = &mut m.spec;
    dedup_by_key(&mut spec.components, |c| c.name.clone());
    spec.components.sort_by(|a, b| a.name.cmp(&b.name));
    dedup_by_key(&mut spec.host_interfaces, |h| {
        (h.namespace.clone(), h.package.clone())
    });
    spec.host_interfaces
        .sort_by(|a, b| (&a.namespace, &a.package).cmp(&(&b.namespace, &b.package)));
    for h in &mut spec.host_interfaces {
        h.interfaces.sort();
        h.interfaces.dedup();
    }
    dedup_by_key(&mut spec.volumes, |v| v.name.clone());
    spec.volumes.sort_by(|a, b| a.name.cmp(&b.name));
    if spec.host_selector.as_ref().is_some_and(|s| s.is_empty()) {
        spec.host_selector = None;
    }
    let replicas = m.replicas();
    m.spec.replicas = Some(replicas);
    m
}

/// Keeps the first element for each key, in order.
fn dedup_by_key<T, K: PartialEq>(list: &mut Vec<T>, key: impl Fn(&T) -> K) {
    let mut seen: Vec<K> = Vec::new();
    list.retain(|x| {
        let k = key(x);
        if seen.contains(&k) {
            false
        } else {
            seen.push(k);
            true
        }
    });
}
