//! Semantic validation of a typed [`Manifest`]: names, uniqueness, references, ranges, host
//! interfaces and (given a base directory) the files it points at.

use std::collections::BTreeMap;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::error::{ErrorKind, ManifestError, Sink};
use crate::fieldpath::{field, index};
use crate::hostif::{
    InternalCalls, KNOWN_HOST_INTERFACES, KeyValueBackend, MAX_BUCKET_NAME_BYTES,
    MAX_MAX_MESSAGE_BYTES, MAX_MESSAGING_MAX_IN_FLIGHT, known_host_interface, parse_bounded,
};
use crate::model::*;
use crate::rules::{self, ImageRefError, Rejection};
use crate::suggest::did_you_mean;

/// Checks a manifest and returns every problem found (empty when it is valid).
///
/// With `base_dir` (the manifest's directory), also checks the filesystem: image files and volume
/// directories must exist, and an image with a `digest` must hash to it. With `None`, nothing
/// outside the manifest is looked at. Errors name `manifest.origin`'s file and document.
pub fn validate(manifest: &Manifest, base_dir: Option<&Path>) -> Vec<ManifestError> {
    let mut sink = Sink::new(manifest.origin.path.clone(), manifest.origin.document);
    validate_into(manifest, base_dir, &mut sink);
    sink.errors
}

pub(crate) fn validate_into(m: &Manifest, base_dir: Option<&Path>, sink: &mut Sink) {
    let mut v = Validator { sink, base_dir };
    v.metadata(&m.metadata);
    v.spec(m);
}

struct Validator<'a> {
    sink: &'a mut Sink,
    base_dir: Option<&'a Path>,
}

impl Validator<'_> {
    fn reject(&mut self, path: &str, value: &str, kind: ErrorKind, r: Rejection) {
        self.sink.push(path, Some(value), kind, r.reason, r.hint);
    }

    fn name(&mut self, path: &str, value: &str) {
        if let Err(r) = rules::check_dns_label(value) {
            self.reject(path, value, ErrorKind::InvalidValue, r);
        }
    }

    fn labels(&mut self, path: &str, labels: &BTreeMap<String, String>) {
        for (k, val) in labels {
            let p = field(path, k);
            if let Err(r) = rules::check_label_key(k) {
                self.sink
                    .push(&p, None, ErrorKind::InvalidValue, r.reason, r.hint);
            }
            if let Err(r) = rules::check_label_value(val) {
                self.reject(&p, val, ErrorKind::InvalidValue, r);
            }
        }
    }

    fn metadata(&mut self, md: &Metadata) {
        self.name("metadata.name", &md.name);
        self.name("metadata.namespace", &md.namespace);
        self.labels("metadata.labels", &md.labels);
    }

    fn spec(&mut self, m: &Manifest) {
        let spec = &m.spec;
        if m.kind == Kind::Workload {
            if let Some(r) = spec.replicas {
                self.sink.push(
                    "spec.replicas",
                    Some(&r.to_string()),
                    ErrorKind::InvalidValue,
                    "replicas only applies to kind WorkloadDeployment",
                    Some("use `kind: WorkloadDeployment`, or remove `replicas`".into()),
                );
            }
            if spec.host_selector.is_some() {
                self.sink.push(
                    "spec.hostSelector",
                    None,
                    ErrorKind::InvalidValue,
                    "hostSelector only applies to kind WorkloadDeployment",
                    Some("use `kind: WorkloadDeployment`, or remove `hostSelector`".into()),
                );
            }
            if spec.spread_by.is_some() {
                self.sink.push(
                    "spec.spreadBy",
                    spec.spread_by.as_deref(),
                    ErrorKind::InvalidValue,
                    "spreadBy only applies to kind WorkloadDeployment",
                    Some("use `kind: WorkloadDeployment`, or remove `spreadBy`".into()),
                );
            }
        }
        if let Some(key) = &spec.spread_by
            && let Err(r) = rules::check_label_key(key)
        {
            self.reject("spec.spreadBy", key, ErrorKind::InvalidValue, r);
        }
        if let Some(sel) = &spec.host_selector {
            self.labels("spec.hostSelector", sel);
        }
        if spec.components.is_empty() && spec.service.is_none() {
            self.sink.push(
                "spec.components",
                None,
                ErrorKind::MissingField,
                "the workload has no components and no service",
                Some(
                    "add an entry under `spec.components`: `- { name: api, image: ./api.wasm }`"
                        .into(),
                ),
            );
        }

        // Volumes first: mounts refer to them.
        let mut volume_names: Vec<&str> = Vec::new();
        for (i, vol) in spec.volumes.iter().enumerate() {
            let p = index("spec.volumes", i);
            let np = field(&p, "name");
            self.name(&np, &vol.name);
            if let Some(first) = volume_names.iter().position(|n| *n == vol.name) {
                self.sink.push(
                    &np,
                    Some(&vol.name),
                    ErrorKind::Duplicate,
                    format!("duplicate volume name; spec.volumes[{first}] has it too"),
                    Some("give each volume its own name".into()),
                );
            }
            volume_names.push(&vol.name);
            self.volume_path(
                &field(&field(&p, "hostPath"), "localPath"),
                &vol.host_path.local_path,
            );
        }

        // Names are unique across components and the service.
        let mut units: Vec<(String, &str)> = Vec::new();
        for (i, c) in spec.components.iter().enumerate() {
            units.push((index("spec.components", i), &c.name));
        }
        if let Some(s) = &spec.service {
            units.push(("spec.service".to_string(), &s.name));
        }
        let component_names: Vec<&str> = spec.components.iter().map(|c| c.name.as_str()).collect();
        for (i, (p, name)) in units.iter().enumerate() {
            if let Some((first, _)) = units[..i].iter().find(|(_, n)| n == name) {
                self.sink.push(
                    &field(p, "name"),
                    Some(name),
                    ErrorKind::Duplicate,
                    format!("duplicate name; {first} has it too"),
                    Some("names must be unique across spec.components and spec.service".into()),
                );
            }
        }

        // A component's `links` may name another component or the service (whose exported
        // interfaces components may import).
        let mut link_targets = component_names.clone();
        if let Some(s) = &spec.service {
            link_targets.push(s.name.as_str());
        }
        for (i, c) in spec.components.iter().enumerate() {
            let p = index("spec.components", i);
            self.unit(
                &p,
                UnitRef {
                    name: &c.name,
                    image: &c.image,
                    digest: c.digest.as_deref(),
                    max_invocations: c.max_invocations,
                    max_concurrency: c.max_concurrency,
                    links: &c.links,
                    local_resources: &c.local_resources,
                    build: c.build.as_ref(),
                },
                &link_targets,
                &volume_names,
            );
        }
        if let Some(s) = &spec.service {
            self.unit(
                "spec.service",
                UnitRef {
                    name: &s.name,
                    image: &s.image,
                    digest: s.digest.as_deref(),
                    max_invocations: s.max_invocations,
                    max_concurrency: s.max_concurrency,
                    links: &s.links,
                    local_resources: &s.local_resources,
                    build: s.build.as_ref(),
                },
                &component_names,
                &volume_names,
            );
        }

        if let Some(s) = &spec.service
            && s.serve_http
            && !spec.host_interfaces.iter().any(|h| {
                h.namespace == "wasi" && h.package == "http" && h.grants("incoming-handler")
            })
        {
            self.sink.push(
                "spec.service.serveHttp",
                Some("true"),
                ErrorKind::InvalidValue,
                "the service is the HTTP front door, but the workload grants no incoming HTTP",
                Some(
                    "add to spec.hostInterfaces: `- { namespace: wasi, package: http, \
                     interfaces: [incoming-handler], config: { host: NAME.localhost, path: / } }`, \
                     or remove `serveHttp`"
                        .into(),
                ),
            );
        }

        let mut seen: Vec<(&str, &str)> = Vec::new();
        for (i, hi) in spec.host_interfaces.iter().enumerate() {
            let p = index("spec.hostInterfaces", i);
            if let Some(first) = seen
                .iter()
                .position(|(ns, pkg)| *ns == hi.namespace && *pkg == hi.package)
            {
                self.sink.push(
                    &p,
                    Some(&hi.id()),
                    ErrorKind::Duplicate,
                    format!(
                        "{} is granted twice; spec.hostInterfaces[{first}] grants it too",
                        hi.id()
                    ),
                    Some("list every interface of a package in one entry's `interfaces`".into()),
                );
            }
            seen.push((&hi.namespace, &hi.package));
            self.host_interface(&p, hi);
        }
    }

    fn volume_path(&mut self, path: &str, local: &str) {
        if local.is_empty() {
            self.sink.push(
                path,
                Some(local),
                ErrorKind::InvalidValue,
                "must not be empty",
                Some("e.g. `localPath: ./data` (relative to the manifest)".into()),
            );
            return;
        }
        let Some(base) = self.base_dir else { return };
        let full = rules::join_clean(base, Path::new(local));
        match std::fs::metadata(&full) {
            Ok(md) if md.is_dir() => {}
            Ok(_) => self.sink.push(
                path,
                Some(local),
                ErrorKind::InvalidValue,
                format!("{} is not a directory", full.display()),
                Some("a volume is a directory on the host".into()),
            ),
            Err(_) => self.sink.push(
                path,
                Some(local),
                ErrorKind::NotFound,
                format!("no such directory ({})", full.display()),
                Some(format!(
                    "paths are relative to the manifest's directory; create it with `mkdir -p {}`",
                    full.display()
                )),
            ),
        }
    }

    fn unit(&mut self, p: &str, u: UnitRef<'_>, components: &[&str], volumes: &[&str]) {
        self.name(&field(p, "name"), u.name);
        if let Some(b) = u.build {
            self.build(&field(p, "build"), b);
        }
        self.image(
            &field(p, "image"),
            u.image,
            u.digest.filter(|d| rules::check_digest(d).is_ok()),
        );
        if let Some(d) = u.digest
            && let Err(r) = rules::check_digest(d)
        {
            self.reject(&field(p, "digest"), d, ErrorKind::InvalidValue, r);
        }
        for (key, value) in [
            ("maxInvocations", u.max_invocations),
            ("maxConcurrency", u.max_concurrency),
        ] {
            if value == 0 {
                self.sink.push(
                    &field(p, key),
                    Some("0"),
                    ErrorKind::OutOfRange,
                    "must be at least 1",
                    Some(format!(
                        "remove it for the default (1), or set `{key}: 1` or more"
                    )),
                );
            }
        }
        let links_path = field(p, "links");
        for (iface, target) in u.links {
            let lp = field(&links_path, iface);
            if let Err(r) = rules::check_interface_name(iface) {
                self.sink
                    .push(&lp, None, ErrorKind::InvalidValue, r.reason, r.hint);
            }
            if target == u.name {
                self.sink.push(
                    &lp,
                    Some(target),
                    ErrorKind::InvalidValue,
                    "a component cannot link to itself",
                    Some("name the other component that exports this interface".into()),
                );
            } else if !components.contains(&target.as_str()) {
                let hint = did_you_mean(target, components)
                    .map(|n| format!("did you mean `{n}`?"))
                    .unwrap_or_else(|| {
                        if components.is_empty() {
                            "links name components listed in spec.components".to_string()
                        } else {
                            format!("components of this workload: {}", components.join(", "))
                        }
                    });
                self.sink.push(
                    &lp,
                    Some(target),
                    ErrorKind::UnknownReference,
                    "no component of this workload has this name",
                    Some(hint),
                );
            }
        }
        self.local_resources(&field(p, "localResources"), u.local_resources, volumes);
    }

    fn build(&mut self, p: &str, b: &Build) {
        if b.command.trim().is_empty() {
            self.sink.push(
                &field(p, "command"),
                Some(&b.command),
                ErrorKind::InvalidValue,
                "the build command is empty",
                Some("e.g. `command: cargo build --release --target wasm32-wasip2`".into()),
            );
        }
        if let Some(w) = &b.workdir {
            let wp = field(p, "workdir");
            if w.trim().is_empty() {
                self.sink.push(
                    &wp,
                    Some(w),
                    ErrorKind::InvalidValue,
                    "the working directory is empty",
                    Some("remove it to build in the manifest's directory, or name one, e.g. `workdir: ./api`".into()),
                );
            } else if let Some(base) = self.base_dir {
                let full = rules::join_clean(base, Path::new(w));
                if !full.is_dir() {
                    self.sink.push(
                        &wp,
                        Some(w),
                        ErrorKind::NotFound,
                        format!("no such directory ({})", full.display()),
                        Some("paths are relative to the manifest's directory".into()),
                    );
                }
            }
        }
        let wp = field(p, "watch");
        for (i, g) in b.watch.iter().enumerate() {
            if let Err(r) = rules::check_watch_glob(g) {
                self.reject(&index(&wp, i), g, ErrorKind::InvalidValue, r);
            }
        }
    }

    fn image(&mut self, path: &str, image: &str, digest: Option<&str>) {
        let base = self.base_dir;
        let file = match rules::parse_image(image) {
            // Pulled and verified by the host at deploy (docs/distribution.md).
            Ok(rules::ImageRef::Oci(_)) => return,
            Ok(rules::ImageRef::File(p)) => match base {
                Some(b) => rules::join_clean(b, &p),
                None => return,
            },
            Err(e) => {
                let kind = match e {
                    ImageRefError::Unsupported { .. } => ErrorKind::Unsupported,
                    _ => ErrorKind::InvalidValue,
                };
                let hint = e.hint();
                self.sink
                    .push(path, Some(image), kind, e.to_string(), Some(hint));
                return;
            }
        };
        match std::fs::metadata(&file) {
            Ok(md) if md.is_file() => {}
            Ok(_) => {
                self.sink.push(
                    path,
                    Some(image),
                    ErrorKind::InvalidValue,
                    format!("{} is not a file", file.display()),
                    Some("point it at the component's .wasm file".into()),
                );
                return;
            }
            Err(_) => {
                self.sink.push(
                    path,
                    Some(image),
                    ErrorKind::NotFound,
                    "no such file",
                    Some(format!(
                        "paths are relative to the manifest's directory (looked for {}); build the component first or fix the path",
                        file.display()
                    )),
                );
                return;
            }
        }
        let Some(want) = digest else { return };
        match std::fs::read(&file) {
            Ok(bytes) => {
                let got = format!("sha256:{}", hex::encode(Sha256::digest(&bytes)));
                if got != want {
                    self.sink.push(
                        path,
                        Some(image),
                        ErrorKind::DigestMismatch,
                        format!("the file's digest is {got}, not the pinned {want}"),
                        Some("rebuild the pinned version, or update `digest` if the change is intended".into()),
                    );
                }
            }
            Err(e) => self.sink.push(
                path,
                Some(image),
                ErrorKind::Read,
                format!("cannot read {}: {e}", file.display()),
                Some("check the file's permissions".into()),
            ),
        }
    }

    fn local_resources(&mut self, p: &str, lr: &LocalResources, volumes: &[&str]) {
        if let Some(mb) = lr.memory_limit_mb
            && !(1..=65536).contains(&mb)
        {
            self.sink.push(
                &field(p, "memoryLimitMb"),
                Some(&mb.to_string()),
                ErrorKind::OutOfRange,
                "must be between 1 and 65536 (MiB)",
                Some("e.g. `memoryLimitMb: 64`".into()),
            );
        }
        if lr.timeout_ms == Some(0) {
            self.sink.push(
                &field(p, "timeoutMs"),
                Some("0"),
                ErrorKind::OutOfRange,
                "must be at least 1",
                Some("e.g. `timeoutMs: 30000`; remove it for the host's default".into()),
            );
        }
        let cp = field(p, "config");
        for key in lr.config.keys() {
            if key.is_empty() {
                self.sink.push(
                    &field(&cp, key),
                    None,
                    ErrorKind::InvalidValue,
                    "config keys must not be empty",
                    Some("give the key a name, e.g. `greeting: hi`".into()),
                );
            }
        }
        let ep = field(p, "environment");
        for key in lr.environment.keys() {
            if !rules::is_env_name(key) {
                self.sink.push(
                    &field(&ep, key),
                    None,
                    ErrorKind::InvalidValue,
                    "is not a valid environment variable name",
                    Some(
                        "use letters, digits and `_`, not starting with a digit, e.g. `LOG_LEVEL`"
                            .into(),
                    ),
                );
            }
        }
        let mut mount_paths: Vec<&str> = Vec::new();
        for (i, vm) in lr.volume_mounts.iter().enumerate() {
            let mp = index(&field(p, "volumeMounts"), i);
            if !volumes.contains(&vm.name.as_str()) {
                let hint = did_you_mean(&vm.name, volumes)
                    .map(|n| format!("did you mean `{n}`?"))
                    .unwrap_or_else(|| {
                        format!(
                            "declare it in spec.volumes: `- {{ name: {}, hostPath: {{ localPath: ./{} }} }}`",
                            if vm.name.is_empty() { "data" } else { &vm.name },
                            if vm.name.is_empty() { "data" } else { &vm.name },
                        )
                    });
                self.sink.push(
                    &field(&mp, "name"),
                    Some(&vm.name),
                    ErrorKind::UnknownReference,
                    "no volume with this name is declared in spec.volumes",
                    Some(hint),
                );
            }
            let pp = field(&mp, "mountPath");
            match rules::check_mount_path(&vm.mount_path) {
                Err(r) => self.reject(&pp, &vm.mount_path, ErrorKind::InvalidValue, r),
                Ok(()) => {
                    let norm = vm.mount_path.trim_end_matches('/');
                    if let Some(first) = mount_paths.iter().position(|m| *m == norm) {
                        self.sink.push(
                            &pp,
                            Some(&vm.mount_path),
                            ErrorKind::Duplicate,
                            format!("volumeMounts[{first}] is mounted here too"),
                            Some("mount each volume at its own path".into()),
                        );
                    }
                    mount_paths.push(norm);
                }
            }
        }
        for (i, rule) in lr.allowed_hosts.iter().enumerate() {
            if let Err(r) = rules::check_allowed_host(rule) {
                self.reject(
                    &index(&field(p, "allowedHosts"), i),
                    rule,
                    ErrorKind::InvalidValue,
                    r,
                );
            }
        }
        let mut socks: Vec<(u16, Protocol)> = Vec::new();
        for (i, s) in lr.sockets.iter().enumerate() {
            let sp = index(&field(p, "sockets"), i);
            if s.port == 0 {
                self.sink.push(
                    &field(&sp, "port"),
                    Some("0"),
                    ErrorKind::OutOfRange,
                    "must be between 1 and 65535",
                    Some("use the port the guest connects to, e.g. `port: 5432`".into()),
                );
            }
            if s.host_port == Some(0) {
                self.sink.push(
                    &field(&sp, "hostPort"),
                    Some("0"),
                    ErrorKind::OutOfRange,
                    "must be between 1 and 65535",
                    Some("remove it to use the same port as `port`".into()),
                );
            }
            if let Some(first) = socks.iter().position(|x| *x == (s.port, s.protocol)) {
                self.sink.push(
                    &field(&sp, "port"),
                    Some(&s.port.to_string()),
                    ErrorKind::Duplicate,
                    format!(
                        "{} port {} is already granted by sockets[{first}]",
                        s.protocol.as_str(),
                        s.port
                    ),
                    Some("grant each port and protocol once".into()),
                );
            }
            if s.protocol == Protocol::Udp && s.host_port.is_some_and(|h| h != s.port) {
                self.sink.push(
                    &field(&sp, "hostPort"),
                    s.host_port.map(|h| h.to_string()).as_deref(),
                    ErrorKind::InvalidValue,
                    "UDP ports cannot be redirected",
                    Some(
                        "remove hostPort (the guest then uses the host's same port), or use tcp"
                            .into(),
                    ),
                );
            }
            socks.push((s.port, s.protocol));
        }
        for (i, name) in lr.allowed_ip_name_lookups.iter().enumerate() {
            if let Err(r) = rules::check_lookup_name(name) {
                self.reject(
                    &index(&field(p, "allowedIpNameLookups"), i),
                    name,
                    ErrorKind::InvalidValue,
                    r,
                );
            }
        }
    }

    fn host_interface(&mut self, p: &str, hi: &HostInterface) {
        let Some(known) = known_host_interface(&hi.namespace, &hi.package) else {
            let ids: Vec<String> = KNOWN_HOST_INTERFACES
                .iter()
                .map(|k| format!("{}:{}", k.namespace, k.package))
                .collect();
            let id_refs: Vec<&str> = ids.iter().map(String::as_str).collect();
            let hint = did_you_mean(&hi.id(), &id_refs)
                .map(|s| format!("did you mean `{s}`?"))
                .unwrap_or_else(|| format!("known: {}", ids.join(", ")));
            self.sink.push(
                p,
                Some(&hi.id()),
                ErrorKind::UnknownHostInterface,
                "unknown host interface",
                Some(hint),
            );
            return;
        };
        let ip = field(p, "interfaces");
        if hi.interfaces.is_empty() {
            self.sink.push(
                &ip,
                None,
                ErrorKind::MissingField,
                format!("grants no interface of {}", hi.id()),
                Some(format!("list some of: {}", known.interfaces.join(", "))),
            );
        }
        for (i, name) in hi.interfaces.iter().enumerate() {
            let np = index(&ip, i);
            if !known.interfaces.contains(&name.as_str()) {
                let hint = did_you_mean(name, known.interfaces)
                    .map(|s| format!("did you mean `{s}`?"))
                    .unwrap_or_else(|| format!("{} has: {}", hi.id(), known.interfaces.join(", ")));
                self.sink.push(
                    &np,
                    Some(name),
                    ErrorKind::UnknownHostInterface,
                    format!("{} has no interface with this name", hi.id()),
                    Some(hint),
                );
            } else if hi.interfaces[..i].contains(name) {
                self.sink.push(
                    &np,
                    Some(name),
                    ErrorKind::Duplicate,
                    "listed twice",
                    Some("list each interface once".into()),
                );
            }
        }
        let cp = field(p, "config");
        for (key, value) in &hi.config {
            let kp = field(&cp, key);
            if !known.config_keys.contains(&key.as_str()) {
                let hint = if known.config_keys.is_empty() {
                    format!("{} takes no config; remove it", hi.id())
                } else {
                    did_you_mean(key, known.config_keys)
                        .map(|s| format!("did you mean `{s}`?"))
                        .unwrap_or_else(|| {
                            format!("{} takes: {}", hi.id(), known.config_keys.join(", "))
                        })
                };
                self.sink.push(
                    &kp,
                    None,
                    ErrorKind::UnknownField,
                    format!("unknown config key for {}", hi.id()),
                    Some(hint),
                );
                continue;
            }
            match (known.package, key.as_str()) {
                ("keyvalue", "backend") if KeyValueBackend::parse(value).is_none() => {
                    let hint = did_you_mean(value, KeyValueBackend::NAMES)
                        .map(|s| format!("did you mean `{s}`?"))
                        .unwrap_or_else(|| "use `memory` (the default) or `redb`".into());
                    self.sink.push(
                        &kp,
                        Some(value),
                        ErrorKind::InvalidValue,
                        "unknown keyvalue backend; expected memory or redb",
                        Some(hint),
                    );
                }
                ("keyvalue", "bucket") if value.is_empty() => self.sink.push(
                    &kp,
                    Some(value),
                    ErrorKind::InvalidValue,
                    "must not be empty",
                    Some("remove it for the default bucket, or name one".into()),
                ),
                // Found by fuzz/fuzz_targets/manifest_parse.rs: the key-value plugin refused
                // what validation let through.
                ("keyvalue", "bucket") if value.len() > MAX_BUCKET_NAME_BYTES => self.sink.push(
                    &kp,
                    Some(value),
                    ErrorKind::InvalidValue,
                    format!(
                        "is {} bytes long; a bucket name is at most {MAX_BUCKET_NAME_BYTES}",
                        value.len()
                    ),
                    Some("use a shorter bucket name".into()),
                ),
                ("http", "internal") if InternalCalls::parse(value).is_none() => {
                    let hint = did_you_mean(value, InternalCalls::NAMES)
                        .map(|s| format!("did you mean `{s}`?"))
                        .unwrap_or_else(|| {
                            "use `allow` (ingress route and in-memory calls), `only` (in-memory \
                             calls only) or `deny` (the default)"
                                .into()
                        });
                    self.sink.push(
                        &kp,
                        Some(value),
                        ErrorKind::InvalidValue,
                        "expected deny, allow or only",
                        Some(hint),
                    );
                }
                ("http", "host" | "path" | "internal") if !hi.grants("incoming-handler") => {
                    self.sink.push(
                        &kp,
                        Some(value),
                        ErrorKind::InvalidValue,
                        format!(
                            "`{key}` routes incoming requests, but incoming-handler is not granted"
                        ),
                        Some("add `incoming-handler` to `interfaces`, or remove it".into()),
                    )
                }
                ("messaging", _) if known.namespace == "wasmcloud" => {
                    self.messaging_key(&kp, hi, key, value);
                }
                ("http", "host") => {
                    if let Err(r) = rules::check_http_host(value) {
                        self.reject(&kp, value, ErrorKind::InvalidValue, r);
                    }
                }
                ("http", "path") => {
                    if let Err(r) = rules::check_http_path(value) {
                        self.reject(&kp, value, ErrorKind::InvalidValue, r);
                    }
                }
                _ => {}
            }
        }
        if known.namespace == "wasmcloud" && known.package == "messaging" {
            self.messaging_grant(p, hi);
        }
    }

    /// One `wasmcloud:messaging` config value (docs/messaging.md).
    fn messaging_key(&mut self, kp: &str, hi: &HostInterface, key: &str, value: &str) {
        use weft_policy::messaging::{check_grant_subject, check_queue_group, split_list};
        let needs =
            |iface: &str| -> Option<String> { (!hi.grants(iface)).then(|| iface.to_string()) };
        let missing = match key {
            "subscriptions" | "queueGroup" | "deadLetter" | "maxInFlight" => needs("handler"),
            "publish" => needs("consumer"),
            _ => (!hi.grants("handler") && !hi.grants("consumer"))
                .then(|| "handler` or `consumer".to_string()),
        };
        if let Some(iface) = missing {
            self.sink.push(
                kp,
                Some(value),
                ErrorKind::InvalidValue,
                format!("`{key}` applies to the `{iface}` interface, which is not granted"),
                Some(format!("add `{iface}` to `interfaces`, or remove `{key}`")),
            );
            return;
        }
        let hint_pattern = "write dot-separated tokens starting with a literal, e.g. `orders.*` or \
                            `audit.>` (`*` is one token, `>` the rest)";
        match key {
            "subscriptions" | "publish" => {
                let items: Vec<&str> = split_list(value).collect();
                if items.is_empty() {
                    self.sink.push(
                        kp,
                        Some(value),
                        ErrorKind::InvalidValue,
                        "lists no subject",
                        Some(format!(
                            "list subject patterns separated by commas, e.g. `orders.*, audit.>`, \
                             or remove `{key}`"
                        )),
                    );
                }
                for (i, item) in items.iter().enumerate() {
                    if let Err(e) = weft_policy::messaging::Pattern::parse(item) {
                        self.sink.push(
                            &index(kp, i),
                            Some(item),
                            ErrorKind::InvalidValue,
                            format!("not a valid subject pattern: {e}"),
                            Some(hint_pattern.into()),
                        );
                    }
                }
            }
            "deadLetter" => {
                if let Err(e) = check_grant_subject(value) {
                    self.sink.push(
                        kp,
                        Some(value),
                        ErrorKind::InvalidValue,
                        format!("not a valid subject: {e}"),
                        Some("name one subject without wildcards, e.g. `orders.failed`".into()),
                    );
                }
            }
            "queueGroup" => {
                if let Err(e) = check_queue_group(value) {
                    self.sink.push(
                        kp,
                        Some(value),
                        ErrorKind::InvalidValue,
                        format!("not a valid queue group: {e}"),
                        Some(
                            "use a plain name such as `orders-enricher`, or remove it for the \
                             default NAMESPACE.NAME"
                                .into(),
                        ),
                    );
                }
            }
            "maxInFlight" if parse_bounded(value, 1, MAX_MESSAGING_MAX_IN_FLIGHT).is_none() => {
                self.sink.push(
                    kp,
                    Some(value),
                    ErrorKind::OutOfRange,
                    format!("must be a whole number from 1 to {MAX_MESSAGING_MAX_IN_FLIGHT}"),
                    Some("quote it: \"16\" (the default)".into()),
                );
            }
            "maxMessageBytes" if parse_bounded(value, 1, MAX_MAX_MESSAGE_BYTES).is_none() => {
                self.sink.push(
                    kp,
                    Some(value),
                    ErrorKind::OutOfRange,
                    format!("must be a whole number of bytes from 1 to {MAX_MAX_MESSAGE_BYTES}"),
                    Some("quote it: \"1048576\" (1 MiB, the default)".into()),
                );
            }
            _ => {}
        }
    }

    /// Checks across a `wasmcloud:messaging` grant's fields.
    fn messaging_grant(&mut self, p: &str, hi: &HostInterface) {
        if hi.grants("handler") && !hi.config.contains_key("subscriptions") {
            self.sink.push(
                &field(&field(p, "config"), "subscriptions"),
                None,
                ErrorKind::MissingField,
                "the `handler` interface is granted, but no subscriptions are",
                Some(
                    "add `config: { subscriptions: \"orders.*\" }` with the subjects to deliver"
                        .into(),
                ),
            );
        }
    }
}

/// The fields components and the service share, borrowed.
struct UnitRef<'a> {
    name: &'a str,
    image: &'a str,
    digest: Option<&'a str>,
    max_invocations: u32,
    max_concurrency: u32,
    links: &'a BTreeMap<String, String>,
    local_resources: &'a LocalResources,
    build: Option<&'a Build>,
}
