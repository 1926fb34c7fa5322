//! The host interfaces Weft knows, their interface names and config keys, and typed views of
//! their config with defaults.

use crate::model::HostInterface;

/// One known `namespace:package`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KnownHostInterface {
    /// WIT namespace, e.g. `wasi`.
    pub namespace: &'static str,
    /// WIT package, e.g. `http`.
    pub package: &'static str,
    /// The interface names that may be granted.
    pub interfaces: &'static [&'static str],
    /// The config keys accepted (anything else is an error).
    pub config_keys: &'static [&'static str],
    /// One line for docs and hints.
    pub summary: &'static str,
}

/// Every host interface a manifest may grant. Adding one is one entry here (plus its plugin in
/// `weft-runtime`).
pub const KNOWN_HOST_INTERFACES: &[KnownHostInterface] = &[
    KnownHostInterface {
        namespace: "wasi",
        package: "http",
        interfaces: &["incoming-handler", "outgoing-handler"],
        config_keys: &["host", "path"],
        summary: "serve HTTP requests (incoming-handler) and send them (outgoing-handler, limited by allowedHosts)",
    },
    KnownHostInterface {
        namespace: "wasi",
        package: "keyvalue",
        interfaces: &["store", "atomics", "batch"],
        config_keys: &["backend", "bucket"],
        summary: "a key-value store: backend memory (default) or redb",
    },
    KnownHostInterface {
        namespace: "wasi",
        package: "config",
        interfaces: &["store"],
        config_keys: &[],
        summary: "read the component's localResources.config",
    },
    KnownHostInterface {
        namespace: "wasi",
        package: "logging",
        interfaces: &["logging"],
        config_keys: &[],
        summary: "structured logs to the host",
    },
    KnownHostInterface {
        namespace: "wasi",
        package: "blobstore",
        interfaces: &["blobstore"],
        config_keys: &[],
        summary: "a blob store",
    },
    KnownHostInterface {
        namespace: "wasi",
        package: "messaging",
        interfaces: &["consumer", "producer", "handler"],
        config_keys: &[],
        summary: "publish and receive messages",
    },
    KnownHostInterface {
        namespace: "wasi",
        package: "sockets",
        interfaces: &[
            "tcp",
            "udp",
            "ip-name-lookup",
            "network",
            "instance-network",
            "tcp-create-socket",
            "udp-create-socket",
        ],
        config_keys: &[],
        summary: "TCP/UDP sockets, limited by localResources.sockets",
    },
    KnownHostInterface {
        namespace: "wasi",
        package: "cli",
        interfaces: &["environment"],
        config_keys: &[],
        summary: "environment variables from localResources.environment",
    },
    KnownHostInterface {
        namespace: "wasi",
        package: "filesystem",
        interfaces: &["types", "preopens"],
        config_keys: &[],
        summary: "the volumes mounted by localResources.volumeMounts",
    },
];

/// The entry for `namespace:package`, if Weft knows it.
pub fn known_host_interface(namespace: &str, package: &str) -> Option<&'static KnownHostInterface> {
    KNOWN_HOST_INTERFACES
        .iter()
        .find(|k| k.namespace == namespace && k.package == package)
}

/// `wasi:keyvalue` storage backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeyValueBackend {
    /// In memory, lost when the workload stops (the default).
    #[default]
    Memory,
    /// On disk in an embedded redb database.
    Redb,
}

impl KeyValueBackend {
    /// The accepted spellings.
    pub const NAMES: &'static [&'static str] = &["memory", "redb"];

    /// Parses `memory` or `redb`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "memory" => Some(KeyValueBackend::Memory),
            "redb" => Some(KeyValueBackend::Redb),
            _ => None,
        }
    }
}

/// Longest `wasi:keyvalue` bucket name (`config.bucket`), in bytes. Validation and the runtime's
/// key-value plugin share it.
pub const MAX_BUCKET_NAME_BYTES: usize = 255;

/// The typed config of a `wasi:keyvalue` grant.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KeyValueConfig {
    /// `config.backend`, default memory.
    pub backend: KeyValueBackend,
    /// `config.bucket`, if set.
    pub bucket: Option<String>,
}

/// The typed config of a `wasi:http` `incoming-handler` grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpIncomingConfig {
    /// `config.host`: the `Host` header (hostname, optionally `:port`) routed to this workload;
    /// `None` routes every host.
    pub host: Option<String>,
    /// `config.path`: the path prefix routed to this workload; default `/`.
    pub path: String,
}

impl HostInterface {
    /// The typed `wasi:keyvalue` config, when this is a `wasi:keyvalue` grant. An invalid backend
    /// (rejected by validation) reads as the default.
    pub fn keyvalue_config(&self) -> Option<KeyValueConfig> {
        if self.namespace != "wasi" || self.package != "keyvalue" {
            return None;
        }
        Some(KeyValueConfig {
            backend: self
                .config
                .get("backend")
                .and_then(|b| KeyValueBackend::parse(b))
                .unwrap_or_default(),
            bucket: self.config.get("bucket").cloned(),
        })
    }

    /// The typed HTTP routing config, when this is a `wasi:http` grant including
    /// `incoming-handler`.
    pub fn http_incoming_config(&self) -> Option<HttpIncomingConfig> {
        if self.namespace != "wasi" || self.package != "http" || !self.grants("incoming-handler") {
            return None;
        }
        Some(HttpIncomingConfig {
            host: self.config.get("host").cloned(),
            path: self
                .config
                .get("path")
                .cloned()
                .unwrap_or_else(|| "/".to_string()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn hi(ns: &str, pkg: &str, ifaces: &[&str], cfg: &[(&str, &str)]) -> HostInterface {
        HostInterface {
            namespace: ns.into(),
            package: pkg.into(),
            interfaces: ifaces.iter().map(|s| s.to_string()).collect(),
            config: cfg
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
        }
    }

    #[test]
    fn typed_configs_fill_defaults() {
        let kv = hi("wasi", "keyvalue", &["store"], &[]);
        assert_eq!(kv.keyvalue_config(), Some(KeyValueConfig::default()));
        let kv = hi(
            "wasi",
            "keyvalue",
            &["store"],
            &[("backend", "redb"), ("bucket", "b")],
        );
        assert_eq!(
            kv.keyvalue_config(),
            Some(KeyValueConfig {
                backend: KeyValueBackend::Redb,
                bucket: Some("b".into())
            })
        );
        assert_eq!(kv.http_incoming_config(), None);
        let http = hi(
            "wasi",
            "http",
            &["incoming-handler"],
            &[("host", "a.localhost")],
        );
        assert_eq!(
            http.http_incoming_config(),
            Some(HttpIncomingConfig {
                host: Some("a.localhost".into()),
                path: "/".into()
            })
        );
        assert_eq!(
            hi("wasi", "http", &["outgoing-handler"], &[]).http_incoming_config(),
            None
        );
    }

    #[test]
    fn table_is_consistent() {
        for (i, k) in KNOWN_HOST_INTERFACES.iter().enumerate() {
            assert!(!k.interfaces.is_empty());
            assert!(
                KNOWN_HOST_INTERFACES[..i]
                    .iter()
                    .all(|o| (o.namespace, o.package) != (k.namespace, k.package))
            );
        }
        assert!(known_host_interface("wasi", "http").is_some());
        assert!(known_host_interface("wasi", "nope").is_none());
    }
}
