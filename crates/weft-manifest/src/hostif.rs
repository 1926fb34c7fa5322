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
/// `weft-interfaces`).
pub const KNOWN_HOST_INTERFACES: &[KnownHostInterface] = &[
    KnownHostInterface {
        namespace: "wasi",
        package: "http",
        interfaces: &["incoming-handler", "outgoing-handler"],
        config_keys: &["host", "path", "internal"],
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
        namespace: "wasmcloud",
        package: "messaging",
        interfaces: &["handler", "consumer"],
        config_keys: &[
            "subscriptions",
            "queueGroup",
            "publish",
            "deadLetter",
            "maxInFlight",
            "maxMessageBytes",
        ],
        summary: "be triggered by messages (handler) and publish/request (consumer) on granted NATS subjects",
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
    /// `config.internal`: whether other workloads on the host may call this one in memory
    /// (`http://NAME.weft.internal/`), and whether it also has an ingress route.
    pub internal: InternalCalls,
}

/// `wasi:http` `config.internal`: in-memory calls from other workloads (docs/messaging.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InternalCalls {
    /// Only the ingress route (the default).
    #[default]
    Deny,
    /// The ingress route, and in-memory calls to `NAME.weft.internal`.
    Allow,
    /// In-memory calls only; no ingress route.
    Only,
}

impl InternalCalls {
    /// The accepted spellings.
    pub const NAMES: &'static [&'static str] = &["deny", "allow", "only"];

    /// Parses `deny`, `allow` or `only`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "deny" => Some(InternalCalls::Deny),
            "allow" => Some(InternalCalls::Allow),
            "only" => Some(InternalCalls::Only),
            _ => None,
        }
    }

    /// Whether in-memory calls are accepted.
    pub fn accepts(self) -> bool {
        !matches!(self, InternalCalls::Deny)
    }

    /// Whether the workload gets an ingress route.
    pub fn routed(self) -> bool {
        !matches!(self, InternalCalls::Only)
    }
}

/// Default `wasmcloud:messaging` `config.maxInFlight`: messages one replica handles at once.
pub const DEFAULT_MESSAGING_MAX_IN_FLIGHT: u32 = 16;
/// Largest `config.maxInFlight`.
pub const MAX_MESSAGING_MAX_IN_FLIGHT: u32 = 1024;
/// Default `config.maxMessageBytes` (NATS's default `max_payload`).
pub const DEFAULT_MAX_MESSAGE_BYTES: u32 = 1 << 20;
/// Largest `config.maxMessageBytes`.
pub const MAX_MAX_MESSAGE_BYTES: u32 = 8 << 20;

/// The typed config of a `wasmcloud:messaging` grant, defaults applied (docs/messaging.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessagingConfig {
    /// `handler` is granted: the workload is triggered by messages.
    pub handler: bool,
    /// `consumer` is granted: its components may publish and request.
    pub consumer: bool,
    /// `config.subscriptions`.
    pub subscriptions: Vec<weft_policy::messaging::Pattern>,
    /// `config.queueGroup`, default `NAMESPACE.NAME` (filled by the caller, which knows them).
    pub queue_group: Option<String>,
    /// `config.publish`.
    pub publish: weft_policy::messaging::SubjectGrants,
    /// `config.deadLetter`.
    pub dead_letter: Option<String>,
    /// `config.maxInFlight`.
    pub max_in_flight: u32,
    /// `config.maxMessageBytes`.
    pub max_message_bytes: u32,
}

/// Parses a `maxInFlight` or `maxMessageBytes` value: a decimal integer within `min..=max`.
pub fn parse_bounded(s: &str, min: u32, max: u32) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse::<u32>().ok().filter(|n| (min..=max).contains(n))
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
            internal: self
                .config
                .get("internal")
                .and_then(|v| InternalCalls::parse(v))
                .unwrap_or_default(),
        })
    }

    /// The typed `wasmcloud:messaging` config, when this is such a grant. Values that
    /// validation rejects read as their defaults (patterns that do not parse are left out).
    pub fn messaging_config(&self) -> Option<MessagingConfig> {
        use weft_policy::messaging::{Pattern, SubjectGrants, split_list};
        if self.namespace != "wasmcloud" || self.package != "messaging" {
            return None;
        }
        let list = |key: &str| -> Vec<Pattern> {
            self.config
                .get(key)
                .map(|v| {
                    split_list(v)
                        .filter_map(|p| Pattern::parse(p).ok())
                        .collect()
                })
                .unwrap_or_default()
        };
        Some(MessagingConfig {
            handler: self.grants("handler"),
            consumer: self.grants("consumer"),
            subscriptions: list("subscriptions"),
            queue_group: self.config.get("queueGroup").cloned(),
            publish: SubjectGrants::new(list("publish")),
            dead_letter: self.config.get("deadLetter").cloned(),
            max_in_flight: self
                .config
                .get("maxInFlight")
                .and_then(|v| parse_bounded(v, 1, MAX_MESSAGING_MAX_IN_FLIGHT))
                .unwrap_or(DEFAULT_MESSAGING_MAX_IN_FLIGHT),
            max_message_bytes: self
                .config
                .get("maxMessageBytes")
                .and_then(|v| parse_bounded(v, 1, MAX_MAX_MESSAGE_BYTES))
                .unwrap_or(DEFAULT_MAX_MESSAGE_BYTES),
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
                path: "/".into(),
                internal: InternalCalls::Deny,
            })
        );
        assert_eq!(
            hi("wasi", "http", &["outgoing-handler"], &[]).http_incoming_config(),
            None
        );
    }

    #[test]
    fn messaging_config_fills_defaults() {
        assert_eq!(
            hi("wasi", "http", &["incoming-handler"], &[]).messaging_config(),
            None
        );
        let m = hi(
            "wasmcloud",
            "messaging",
            &["consumer"],
            &[("publish", "a.*, b")],
        )
        .messaging_config()
        .unwrap();
        assert!(!m.handler && m.consumer);
        assert!(m.subscriptions.is_empty());
        assert_eq!(m.publish.to_string(), "a.*, b");
        assert_eq!(m.max_in_flight, DEFAULT_MESSAGING_MAX_IN_FLIGHT);
        assert_eq!(m.max_message_bytes, DEFAULT_MAX_MESSAGE_BYTES);
        let m = hi(
            "wasmcloud",
            "messaging",
            &["handler"],
            &[
                ("subscriptions", "in.>"),
                ("queueGroup", "q"),
                ("deadLetter", "dlq"),
                ("maxInFlight", "4"),
                ("maxMessageBytes", "100"),
            ],
        )
        .messaging_config()
        .unwrap();
        assert!(m.handler && !m.consumer);
        assert_eq!(m.subscriptions.len(), 1);
        assert_eq!(m.queue_group.as_deref(), Some("q"));
        assert_eq!(m.dead_letter.as_deref(), Some("dlq"));
        assert_eq!((m.max_in_flight, m.max_message_bytes), (4, 100));
        assert_eq!(parse_bounded("+4", 1, 10), None);
        assert_eq!(parse_bounded("0", 1, 10), None);
        assert_eq!(parse_bounded("11", 1, 10), None);
        assert_eq!(parse_bounded("99999999999", 1, 10), None);
        assert_eq!(parse_bounded("010", 1, 10), Some(10));
        let http = hi(
            "wasi",
            "http",
            &["incoming-handler"],
            &[("internal", "only")],
        );
        let cfg = http.http_incoming_config().unwrap();
        assert_eq!(cfg.internal, InternalCalls::Only);
        assert!(cfg.internal.accepts() && !cfg.internal.routed());
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
