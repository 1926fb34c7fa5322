//! The plan of changes between two versions of a workload, for atomic updates.
//!
//! Pure: compares the manifests only. Components, volumes and host interfaces are matched by
//! name (`namespace:package` for host interfaces), so reordering a list is not a change. A
//! changed image *file* under an unchanged `image` path is invisible here: pin a `digest` to
//! make content changes show up.

use std::fmt;

use crate::model::*;

/// One difference between an old and a new manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// `kind`, `metadata.name` or `metadata.namespace` differ: this is another workload, not an
    /// update of the same one.
    IdentityChanged {
        field: &'static str,
        from: String,
        to: String,
    },
    /// `metadata.labels` differ.
    LabelsChanged,
    /// `spec.compose` differs.
    ComposeChanged { from: Compose, to: Compose },
    /// The number of replicas ([`Manifest::replicas`]) differs.
    ReplicasChanged { from: u32, to: u32 },
    /// `spec.hostSelector` differs.
    HostSelectorChanged,
    /// `spec.spreadBy` differs.
    SpreadByChanged {
        from: Option<String>,
        to: Option<String>,
    },
    /// A component only in the new manifest.
    ComponentAdded { name: String },
    /// A component only in the old manifest.
    ComponentRemoved { name: String },
    /// A component in both, with these fields changed (`image`, `localResources.config`, ...).
    ComponentChanged { name: String, fields: Vec<String> },
    /// A service only in the new manifest (or renamed: removed + added).
    ServiceAdded { name: String },
    /// A service only in the old manifest.
    ServiceRemoved { name: String },
    /// The service, same name, with these fields changed.
    ServiceChanged { name: String, fields: Vec<String> },
    /// A host interface grant (`namespace:package`) only in the new manifest.
    HostInterfaceAdded { id: String },
    /// A host interface grant only in the old manifest.
    HostInterfaceRemoved { id: String },
    /// A grant in both whose `interfaces` and/or `config` differ.
    HostInterfaceChanged { id: String, fields: Vec<String> },
    /// A volume only in the new manifest.
    VolumeAdded { name: String },
    /// A volume only in the old manifest.
    VolumeRemoved { name: String },
    /// A volume in both whose host path differs.
    VolumeChanged { name: String, fields: Vec<String> },
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::IdentityChanged { field, from, to } => write!(f, "~ {field}: {from} -> {to}"),
            Change::LabelsChanged => write!(f, "~ metadata.labels"),
            Change::ComposeChanged { from, to } => {
                write!(f, "~ compose: {} -> {}", from.as_str(), to.as_str())
            }
            Change::ReplicasChanged { from, to } => write!(f, "~ replicas: {from} -> {to}"),
            Change::HostSelectorChanged => write!(f, "~ hostSelector"),
            Change::SpreadByChanged { from, to } => write!(
                f,
                "~ spreadBy: {} -> {}",
                from.as_deref().unwrap_or("(none)"),
                to.as_deref().unwrap_or("(none)")
            ),
            Change::ComponentAdded { name } => write!(f, "+ component {name}"),
            Change::ComponentRemoved { name } => write!(f, "- component {name}"),
            Change::ComponentChanged { name, fields } => {
                write!(f, "~ component {name} ({})", fields.join(", "))
            }
            Change::ServiceAdded { name } => write!(f, "+ service {name}"),
            Change::ServiceRemoved { name } => write!(f, "- service {name}"),
            Change::ServiceChanged { name, fields } => {
                write!(f, "~ service {name} ({})", fields.join(", "))
            }
            Change::HostInterfaceAdded { id } => write!(f, "+ host interface {id}"),
            Change::HostInterfaceRemoved { id } => write!(f, "- host interface {id}"),
            Change::HostInterfaceChanged { id, fields } => {
                write!(f, "~ host interface {id} ({})", fields.join(", "))
            }
            Change::VolumeAdded { name } => write!(f, "+ volume {name}"),
            Change::VolumeRemoved { name } => write!(f, "- volume {name}"),
            Change::VolumeChanged { name, fields } => {
                write!(f, "~ volume {name} ({})", fields.join(", "))
            }
        }
    }
}

/// The changes that turn `old` into `new`, in a stable order: identity, metadata and spec-level
/// settings, then components (removed in old order, then added and changed in new order), the
/// service, host interfaces and volumes. Empty when the two describe the same workload
/// (ignoring `origin` and list order).
pub fn diff(old: &Manifest, new: &Manifest) -> Vec<Change> {
    let mut out = Vec::new();
    let ident = [
        ("kind", old.kind.as_str(), new.kind.as_str()),
        ("metadata.name", &old.metadata.name, &new.metadata.name),
        (
            "metadata.namespace",
            &old.metadata.namespace,
            &new.metadata.namespace,
        ),
    ];
    for (field, from, to) in ident {
        if from != to {
            out.push(Change::IdentityChanged {
                field,
                from: from.to_string(),
                to: to.to_string(),
            });
        }
    }
    if old.metadata.labels != new.metadata.labels {
        out.push(Change::LabelsChanged);
    }
    if old.spec.compose != new.spec.compose {
        out.push(Change::ComposeChanged {
            from: old.spec.compose,
            to: new.spec.compose,
        });
    }
    if old.replicas() != new.replicas() {
        out.push(Change::ReplicasChanged {
            from: old.replicas(),
            to: new.replicas(),
        });
    }
    let empty = Default::default();
    if old.spec.host_selector.as_ref().unwrap_or(&empty)
        != new.spec.host_selector.as_ref().unwrap_or(&empty)
    {
        out.push(Change::HostSelectorChanged);
    }
    if old.spec.spread_by != new.spec.spread_by {
        out.push(Change::SpreadByChanged {
            from: old.spec.spread_by.clone(),
            to: new.spec.spread_by.clone(),
        });
    }

    // Components.
    let find = |list: &'_ [Component], name: &str| -> Option<usize> {
        list.iter().position(|c| c.name == name)
    };
    for (i, c) in old.spec.components.iter().enumerate() {
        if find(&new.spec.components, &c.name).is_none() && first_of(&old.spec.components, i) {
            out.push(Change::ComponentRemoved {
                name: c.name.clone(),
            });
        }
    }
    for (i, c) in new.spec.components.iter().enumerate() {
        if !first_of(&new.spec.components, i) {
            continue;
        }
        match old.spec.components.iter().find(|o| o.name == c.name) {
            None => out.push(Change::ComponentAdded {
                name: c.name.clone(),
            }),
            Some(o) => {
                let fields = component_fields(o, c);
                if !fields.is_empty() {
                    out.push(Change::ComponentChanged {
                        name: c.name.clone(),
                        fields,
                    });
                }
            }
        }
    }

    // Service.
    match (&old.spec.service, &new.spec.service) {
        (None, None) => {}
        (Some(o), None) => out.push(Change::ServiceRemoved {
            name: o.name.clone(),
        }),
        (None, Some(n)) => out.push(Change::ServiceAdded {
            name: n.name.clone(),
        }),
        (Some(o), Some(n)) if o.name != n.name => {
            out.push(Change::ServiceRemoved {
                name: o.name.clone(),
            });
            out.push(Change::ServiceAdded {
                name: n.name.clone(),
            });
        }
        (Some(o), Some(n)) => {
            let mut fields = component_fields(&o.to_component(), &n.to_component());
            if o.serve_http != n.serve_http {
                fields.push("serveHttp".into());
            }
            if o.max_restarts != n.max_restarts {
                fields.push("maxRestarts".into());
            }
            if !fields.is_empty() {
                out.push(Change::ServiceChanged {
                    name: n.name.clone(),
                    fields,
                });
            }
        }
    }

    // Host interfaces.
    let same_hi =
        |a: &HostInterface, b: &HostInterface| a.namespace == b.namespace && a.package == b.package;
    for (i, h) in old.spec.host_interfaces.iter().enumerate() {
        let dup = old.spec.host_interfaces[..i].iter().any(|x| same_hi(x, h));
        if !dup && !new.spec.host_interfaces.iter().any(|x| same_hi(x, h)) {
            out.push(Change::HostInterfaceRemoved { id: h.id() });
        }
    }
    for (i, h) in new.spec.host_interfaces.iter().enumerate() {
        if new.spec.host_interfaces[..i].iter().any(|x| same_hi(x, h)) {
            continue;
        }
        match old.spec.host_interfaces.iter().find(|x| same_hi(x, h)) {
            None => out.push(Change::HostInterfaceAdded { id: h.id() }),
            Some(o) => {
                let mut fields = Vec::new();
                let mut a = o.interfaces.clone();
                let mut b = h.interfaces.clone();
                a.sort();
                a.dedup();
                b.sort();
                b.dedup();
                if a != b {
                    fields.push("interfaces".to_string());
                }
                if o.config != h.config {
                    fields.push("config".to_string());
                }
                if !fields.is_empty() {
                    out.push(Change::HostInterfaceChanged { id: h.id(), fields });
                }
            }
        }
    }

    // Volumes.
    for (i, v) in old.spec.volumes.iter().enumerate() {
        let dup = old.spec.volumes[..i].iter().any(|x| x.name == v.name);
        if !dup && !new.spec.volumes.iter().any(|x| x.name == v.name) {
            out.push(Change::VolumeRemoved {
                name: v.name.clone(),
            });
        }
    }
    for (i, v) in new.spec.volumes.iter().enumerate() {
        if new.spec.volumes[..i].iter().any(|x| x.name == v.name) {
            continue;
        }
        match old.spec.volumes.iter().find(|x| x.name == v.name) {
            None => out.push(Change::VolumeAdded {
                name: v.name.clone(),
            }),
            Some(o) if o.host_path != v.host_path => out.push(Change::VolumeChanged {
                name: v.name.clone(),
                fields: vec!["hostPath.localPath".into()],
            }),
            Some(_) => {}
        }
    }
    out
}

/// Whether `list[i]` is the first component with its name (later duplicates are ignored).
fn first_of(list: &[Component], i: usize) -> bool {
    list.get(i)
        .is_some_and(|c| !list[..i].iter().any(|x| x.name == c.name))
}

/// The names of the fields that differ between two versions of a component.
fn component_fields(a: &Component, b: &Component) -> Vec<String> {
    let mut f: Vec<String> = Vec::new();
    let mut check = |name: &str, differs: bool| {
        if differs {
            f.push(name.to_string());
        }
    };
    check("image", a.image != b.image);
    check("digest", a.digest != b.digest);
    check("poolSize", a.pool_size != b.pool_size);
    check("maxInvocations", a.max_invocations != b.max_invocations);
    check("maxConcurrency", a.max_concurrency != b.max_concurrency);
    check("links", a.links != b.links);
    check("build", a.build != b.build);
    let (x, y) = (&a.local_resources, &b.local_resources);
    check(
        "localResources.memoryLimitMb",
        x.memory_limit_mb != y.memory_limit_mb,
    );
    check("localResources.timeoutMs", x.timeout_ms != y.timeout_ms);
    check("localResources.config", x.config != y.config);
    check("localResources.environment", x.environment != y.environment);
    check(
        "localResources.volumeMounts",
        x.volume_mounts != y.volume_mounts,
    );
    check(
        "localResources.allowedHosts",
        x.allowed_hosts != y.allowed_hosts,
    );
    check("localResources.sockets", x.sockets != y.sockets);
    check(
        "localResources.allowedIpNameLookups",
        x.allowed_ip_name_lookups != y.allowed_ip_name_lookups,
    );
    f
}
