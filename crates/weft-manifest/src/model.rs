//! The typed manifest. Everything here is plain data with defaults filled in; the parser
//! ([`crate::parse_str`]) is the only way text becomes a [`Manifest`], and [`crate::to_yaml`] /
//! [`crate::to_json`] print one back so that parsing the output gives the same value.
//!
//! The `#[serde]` attributes describe the input format (field names, defaults) for the JSON
//! Schema and for printing; the doc comments become the schema's descriptions.

use std::collections::BTreeMap;
use std::path::PathBuf;

use schemars::JsonSchema;
use serde::Serialize;

/// The only `apiVersion` this crate reads.
pub const API_VERSION: &str = "weft.dev/v1alpha1";

/// A Weft workload manifest: one document of a manifest file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(title = "Weft workload manifest")]
pub struct Manifest {
    /// The manifest format version. Always `weft.dev/v1alpha1`.
    pub api_version: ApiVersion,
    /// `Workload` (runs once, on the host it is given to) or `WorkloadDeployment` (a scheduler
    /// places `spec.replicas` copies on hosts matching `spec.hostSelector`).
    pub kind: Kind,
    /// The workload's name, namespace and labels.
    pub metadata: Metadata,
    /// What to run and what it may use.
    pub spec: Spec,
    /// Where this manifest was read from (not part of the printed manifest).
    #[serde(skip)]
    #[schemars(skip)]
    pub origin: Origin,
}

/// Where a [`Manifest`] came from: used to name the file in errors and to resolve relative paths.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Origin {
    /// The manifest file (or the name given to [`crate::parse_str`]).
    pub path: PathBuf,
    /// 0-based index of the document, set only when the file holds several.
    pub document: Option<usize>,
}

/// The manifest format version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, JsonSchema)]
pub enum ApiVersion {
    /// `weft.dev/v1alpha1`
    #[default]
    #[serde(rename = "weft.dev/v1alpha1")]
    V1Alpha1,
}

impl ApiVersion {
    /// The string form, e.g. `weft.dev/v1alpha1`.
    pub fn as_str(self) -> &'static str {
        match self {
            ApiVersion::V1Alpha1 => API_VERSION,
        }
    }
}

/// The kind of manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, JsonSchema)]
pub enum Kind {
    /// A workload run as-is by the host it is handed to.
    #[default]
    Workload,
    /// A workload a scheduler places on hosts: adds `spec.replicas`, `spec.hostSelector` and
    /// `spec.spreadBy`.
    WorkloadDeployment,
}

impl Kind {
    /// The string form: `Workload` or `WorkloadDeployment`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Workload => "Workload",
            Kind::WorkloadDeployment => "WorkloadDeployment",
        }
    }
}

fn default_namespace() -> String {
    "default".to_string()
}

/// Identity of the workload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Metadata {
    /// The workload's name: a DNS label (lowercase `a-z`, `0-9` and `-`, 1 to 63 characters, not
    /// starting or ending with `-`). Unique within its namespace.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,
    /// The namespace: a DNS label. Default `default`.
    #[serde(default = "default_namespace")]
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub namespace: String,
    /// Free-form labels (`key: value`), e.g. `app: todo`. Keys are `[prefix/]name` where name is up
    /// to 63 characters of `A-Z a-z 0-9 - _ .` starting and ending with a letter or digit, and
    /// prefix a DNS name; values are empty or follow the same rule as names.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// Whether linked components are fused into one component before running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Compose {
    /// Compose when the workload's links allow it, otherwise link at runtime. The default.
    #[default]
    Auto,
    /// Always compose; fail the deployment when the components cannot be composed.
    Always,
    /// Never compose; link components at runtime.
    Never,
}

impl Compose {
    /// The string form: `auto`, `always` or `never`.
    pub fn as_str(self) -> &'static str {
        match self {
            Compose::Auto => "auto",
            Compose::Always => "always",
            Compose::Never => "never",
        }
    }
}

/// What to run and what it may use.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Spec {
    /// Whether to fuse linked components into one (`auto`, `always`, `never`). Default `auto`.
    #[serde(default)]
    pub compose: Compose,
    /// The workload's components (invoked per request or call). At least one component or a
    /// service is required. Names are unique across components and the service.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub components: Vec<Component>,
    /// An optional long-lived component (runs `wasi:cli/run`), restarted up to `maxRestarts`
    /// times when it exits with an error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<Service>,
    /// The host capabilities granted to the workload. Each `namespace:package` at most once;
    /// anything not listed is denied.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub host_interfaces: Vec<HostInterface>,
    /// Host directories the workload's components may mount (see `localResources.volumeMounts`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<Volume>,
    /// `WorkloadDeployment` only: how many copies to run. Default 1 (0 stops all copies).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<u32>,
    /// `WorkloadDeployment` only: place copies only on hosts having all these labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_selector: Option<BTreeMap<String, String>>,
    /// `WorkloadDeployment` only: a host label key (e.g. `zone`). Copies are spread evenly over
    /// the values hosts have for it; a host without the label gets no copy. Default: spread
    /// over hosts only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spread_by: Option<String>,
}

fn default_one() -> u32 {
    1
}

fn default_max_restarts() -> u32 {
    3
}

/// A component invoked per request or call.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Component {
    /// The component's name: a DNS label, unique across the workload's components and service.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,
    /// Where the component's Wasm is: a path relative to the manifest's directory (or absolute),
    /// a `file://` URL, or an OCI image `oci://REGISTRY/REPOSITORY:TAG` (or `@sha256:...`)
    /// that the host pulls, verifies and pins to its digest at deploy.
    #[schemars(length(min = 1))]
    pub image: String,
    /// Optional pin: `sha256:` followed by 64 lowercase hex digits. The image file must hash to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^sha256:[0-9a-f]{64}$"))]
    pub digest: Option<String>,
    /// Warm instances kept ready. 0 (the default) creates a fresh instance per invocation.
    #[serde(default)]
    pub pool_size: u32,
    /// Invocations one instance serves before it is retired. At least 1; default 1.
    #[serde(default = "default_one")]
    #[schemars(range(min = 1))]
    pub max_invocations: u32,
    /// Concurrent invocations per instance (WASI 0.3 components). At least 1; default 1.
    #[serde(default = "default_one")]
    #[schemars(range(min = 1))]
    pub max_concurrency: u32,
    /// Explicit wiring of this component's imports: interface (`namespace:package/interface`,
    /// optionally `@version`) -> the name of another component of this workload that exports it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub links: BTreeMap<String, String>,
    /// Limits and per-component grants.
    #[serde(default, skip_serializing_if = "LocalResources::is_empty")]
    pub local_resources: LocalResources,
    /// How to build the component from source (`weft build`, `weft dev`). Optional.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build: Option<Build>,
}

/// How to build a component from source: `weft build` runs `command` in `workdir`; `weft dev`
/// also reruns it when a file matching `watch` changes.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Build {
    /// The build command, run with `sh -c` in `workdir`, e.g.
    /// `cargo build --release --target wasm32-wasip2`. It must leave the component at `image`.
    #[schemars(length(min = 1))]
    pub command: String,
    /// The directory to run it in: relative to the manifest's directory, or absolute. Default:
    /// the manifest's directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub workdir: Option<String>,
    /// Files whose changes trigger a rebuild under `weft dev`: globs relative to `workdir`
    /// (`src/**/*.rs`, `Cargo.toml`). Default: every file under `workdir` except `target/`,
    /// hidden directories and the built image.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub watch: Vec<String>,
}

/// A long-lived component: the same fields as a component plus `maxRestarts`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Service {
    /// The service's name: a DNS label, unique across the workload's components and service.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,
    /// Where the service's Wasm is: a path relative to the manifest's directory (or absolute),
    /// a `file://` URL, or an OCI image `oci://REGISTRY/REPOSITORY:TAG` (or `@sha256:...`)
    /// that the host pulls, verifies and pins to its digest at deploy.
    #[schemars(length(min = 1))]
    pub image: String,
    /// Optional pin: `sha256:` followed by 64 lowercase hex digits. The image file must hash to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^sha256:[0-9a-f]{64}$"))]
    pub digest: Option<String>,
    /// Warm instances kept ready. Default 0.
    #[serde(default)]
    pub pool_size: u32,
    /// Invocations one instance serves before it is retired. At least 1; default 1.
    #[serde(default = "default_one")]
    #[schemars(range(min = 1))]
    pub max_invocations: u32,
    /// Concurrent invocations per instance (WASI 0.3). At least 1; default 1.
    #[serde(default = "default_one")]
    #[schemars(range(min = 1))]
    pub max_concurrency: u32,
    /// Explicit wiring of the service's imports: interface -> component name (see components).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub links: BTreeMap<String, String>,
    /// Limits and per-component grants.
    #[serde(default, skip_serializing_if = "LocalResources::is_empty")]
    pub local_resources: LocalResources,
    /// How many times the service is restarted after it exits with an error or traps before the
    /// workload is marked failed. Default 3; 0 never restarts.
    #[serde(default = "default_max_restarts")]
    pub max_restarts: u32,
    /// Whether the service is the workload's HTTP front door: it exports the WASI 0.3
    /// `wasi:http/handler` and every request the workload's route (`wasi:http`
    /// `incoming-handler` grant) receives is handled by the service's one long-lived instance,
    /// instead of by a component. Default false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub serve_http: bool,
    /// How to build the service from source (`weft build`, `weft dev`). Optional.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build: Option<Build>,
}

impl Service {
    /// The service viewed as a component (every field but `maxRestarts`).
    pub fn to_component(&self) -> Component {
        Component {
            name: self.name.clone(),
            image: self.image.clone(),
            digest: self.digest.clone(),
            pool_size: self.pool_size,
            max_invocations: self.max_invocations,
            max_concurrency: self.max_concurrency,
            links: self.links.clone(),
            local_resources: self.local_resources.clone(),
            build: self.build.clone(),
        }
    }
}

/// Limits and grants for one component. Everything is optional; empty means "nothing granted".
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LocalResources {
    /// Maximum linear memory per instance, in MiB (1 to 65536). Default: the host's limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65536))]
    pub memory_limit_mb: Option<u32>,
    /// Wall-clock limit per invocation, in milliseconds (at least 1). Default: the host's limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub timeout_ms: Option<u64>,
    /// Key/value configuration served through `wasi:config/store`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub config: BTreeMap<String, String>,
    /// Environment variables (`wasi:cli/environment`). Keys match `[A-Za-z_][A-Za-z0-9_]*`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub environment: BTreeMap<String, String>,
    /// Volumes (declared in `spec.volumes`) to mount into the component's filesystem.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volume_mounts: Vec<VolumeMount>,
    /// Outgoing HTTP destinations: `[http://|https://]HOST[:PORT]`. HOST is a DNS name, an IPv4
    /// address, a bracketed IPv6 address, `*.suffix` or `*`; PORT is 1-65535 or `*` (default: the
    /// scheme's port). Empty allows none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_hosts: Vec<String>,
    /// Sockets (`wasi:sockets`) the component may connect to on the host's loopback. Empty allows
    /// none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sockets: Vec<Socket>,
    /// Names the component may resolve through `wasi:sockets/ip-name-lookup`: a DNS name
    /// (`db.internal`), `*.suffix` or `*`. IP literals need no grant, and `localhost` resolves
    /// whenever a socket is granted. Empty: no other name resolves.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_ip_name_lookups: Vec<String>,
}

impl LocalResources {
    /// Whether nothing is set (all defaults).
    pub fn is_empty(&self) -> bool {
        self == &LocalResources::default()
    }
}

/// A volume mounted into a component.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VolumeMount {
    /// The name of a volume declared in `spec.volumes`.
    pub name: String,
    /// Where the guest sees it: an absolute path (starting with `/`) without `.` or `..` parts.
    #[schemars(regex(pattern = r"^/"))]
    pub mount_path: String,
    /// Mount read-only. Default false.
    #[serde(default)]
    pub read_only: bool,
}

/// Transport protocol of a socket grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// TCP (the default).
    #[default]
    Tcp,
    /// UDP.
    Udp,
}

impl Protocol {
    /// `tcp` or `udp`.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

/// A socket grant: the guest may reach `port`, which the host serves from `127.0.0.1:hostPort`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Socket {
    /// The port the guest connects to (1 to 65535).
    #[schemars(range(min = 1, max = 65535))]
    pub port: u16,
    /// The host port it is redirected to (1 to 65535). Default: the same as `port`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub host_port: Option<u16>,
    /// `tcp` (default) or `udp`.
    #[serde(default)]
    pub protocol: Protocol,
}

impl Socket {
    /// The host port: `hostPort`, or `port` when it is not set.
    pub fn effective_host_port(&self) -> u16 {
        self.host_port.unwrap_or(self.port)
    }
}

/// A host capability granted to the workload.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HostInterface {
    /// The WIT namespace, e.g. `wasi`.
    pub namespace: String,
    /// The WIT package, e.g. `http` or `keyvalue`.
    pub package: String,
    /// Which of the package's interfaces to grant, e.g. `[incoming-handler]`. At least one.
    #[schemars(length(min = 1))]
    pub interfaces: Vec<String>,
    /// Interface-specific settings (see the manifest reference): `wasi:http` takes `host`,
    /// `path` and `internal` (`deny`, `allow` or `only`; with `incoming-handler`),
    /// `wasi:keyvalue` takes `backend` (`memory` or `redb`) and `bucket`,
    /// `wasmcloud:messaging` takes `subscriptions`, `queueGroup`, `publish`, `deadLetter`,
    /// `maxInFlight` and `maxMessageBytes` (docs/messaging.md); the others take none.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub config: BTreeMap<String, String>,
}

impl HostInterface {
    /// `namespace:package`, e.g. `wasi:http`.
    pub fn id(&self) -> String {
        format!("{}:{}", self.namespace, self.package)
    }

    /// Whether `interface` is among the granted interfaces.
    pub fn grants(&self, interface: &str) -> bool {
        self.interfaces.iter().any(|i| i == interface)
    }
}

/// A host directory the workload may mount.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Volume {
    /// The volume's name: a DNS label, unique among the workload's volumes.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,
    /// A directory on the host.
    pub host_path: HostPath,
}

/// A directory on the host.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HostPath {
    /// The directory: relative to the manifest's directory, or absolute. It must exist.
    #[schemars(length(min = 1))]
    pub local_path: String,
}

impl Manifest {
    /// The number of copies to run: `spec.replicas` for a `WorkloadDeployment` (default 1), 1 for
    /// a `Workload`.
    pub fn replicas(&self) -> u32 {
        match self.kind {
            Kind::Workload => 1,
            Kind::WorkloadDeployment => self.spec.replicas.unwrap_or(1),
        }
    }

    /// The directory relative paths (images, volumes) are resolved against: the manifest file's
    /// directory, or `.` when it has none.
    pub fn base_dir(&self) -> PathBuf {
        match self.origin.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        }
    }

    /// A component or the service by name.
    pub fn component(&self, name: &str) -> Option<Component> {
        if let Some(c) = self.spec.components.iter().find(|c| c.name == name) {
            return Some(c.clone());
        }
        self.spec
            .service
            .as_ref()
            .filter(|s| s.name == name)
            .map(Service::to_component)
    }

    /// The grant for `namespace:package`, if listed.
    pub fn host_interface(&self, namespace: &str, package: &str) -> Option<&HostInterface> {
        self.spec
            .host_interfaces
            .iter()
            .find(|h| h.namespace == namespace && h.package == package)
    }
}
