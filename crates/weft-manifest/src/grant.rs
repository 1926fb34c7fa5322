//! Denial hints (`weft dev`, docs/distribution.md): the manifest lines that would grant a use
//! a guest was denied.
//!
//! The runtime reports each denial as a [`GrantRequest`] (`LogSink::denied`); [`suggest`] reads
//! the manifest and returns a [`Suggestion`]: where to add what, in the manifest's own syntax,
//! or why no line can grant it (a socket beyond the host's loopback, a listen, an import no
//! host interface provides). Nothing is granted automatically: [`Suggestion::apply`] exists for
//! tools and tests. The suggestion is decided by the same pure functions the runtime uses
//! (`weft_policy::sockets::decide`, `decide_lookup`, `weft_policy::allow`), and it is the
//! narrowest grant the grammar has: one port of one protocol, one exact name, one
//! `scheme://host:port`, one interface.
//!
//! ```
//! use std::path::Path;
//! use weft_manifest::grant::{GrantRequest, suggest};
//! let text = "apiVersion: weft.dev/v1alpha1\nkind: Workload\nmetadata: { name: todo }\nspec:\n  components:\n    - { name: api, image: ./api.wasm }\n";
//! let m = weft_manifest::parse_str(text, Path::new("todo.yaml")).unwrap().remove(0);
//! let denied = GrantRequest::SocketConnect {
//!     addr: "127.0.0.1:5432".parse().unwrap(),
//!     protocol: weft_policy::sockets::Protocol::Tcp,
//! };
//! assert_eq!(
//!     suggest(&denied, "api", &m).to_string(),
//!     "component api was denied a TCP connect to 127.0.0.1:5432; to allow it, add to \
//!      spec.components[0].localResources:\n  sockets:\n    - { port: 5432, protocol: tcp }"
//! );
//! ```

use std::fmt;

use weft_policy::allow::{AllowedHosts, Scheme};
use weft_policy::internal::InternalHost;
use weft_policy::sockets::{
    self, DenyReason, LookupVerdict, SocketRule, SocketRuleError, SocketRules, SocketUse, Verdict,
};

pub use weft_policy::grant::GrantRequest;

use crate::hostif::known_host_interface;
use crate::model::{HostInterface, LocalResources, Manifest, Protocol, Socket};

/// A typed change to a manifest: what a [`Grant`]'s lines add.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Edit {
    /// One entry of the component's `localResources.sockets`.
    Socket { port: u16, protocol: Protocol },
    /// One entry of the component's `localResources.allowedHosts`.
    AllowedHost(String),
    /// One entry of the component's `localResources.allowedIpNameLookups`.
    NameLookup(String),
    /// One interface of `spec.hostInterfaces` (the `namespace:package` entry is added when
    /// missing).
    HostInterface {
        namespace: String,
        package: String,
        interface: String,
    },
}

/// Where to add what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The manifest field the lines go under, e.g. `spec.components[0].localResources`.
    pub path: String,
    /// The YAML lines, relative to `path` (no indentation of their own, no trailing newline),
    /// e.g. `sockets:\n  - { port: 5432, protocol: tcp }`.
    pub yaml: String,
    /// The same change, typed.
    pub edit: Edit,
}

/// What [`suggest`] says about one denial.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suggestion {
    /// The component (or service) that was denied.
    pub component: String,
    pub request: GrantRequest,
    /// The lines that grant it; `None` when no manifest line can (see `note`).
    pub grant: Option<Grant>,
    /// Why it cannot be granted, or what else to know.
    pub note: Option<String>,
}

impl Suggestion {
    /// Applies the grant to `manifest` (the model, as if the lines had been written).
    /// `false` when there is no grant or the component is not in the manifest.
    pub fn apply(&self, manifest: &mut Manifest) -> bool {
        let Some(grant) = &self.grant else {
            return false;
        };
        if let Edit::HostInterface {
            namespace,
            package,
            interface,
        } = &grant.edit
        {
            let list = &mut manifest.spec.host_interfaces;
            match list
                .iter_mut()
                .find(|h| &h.namespace == namespace && &h.package == package)
            {
                Some(h) => {
                    if !h.grants(interface) {
                        h.interfaces.push(interface.clone());
                    }
                }
                None => list.push(HostInterface {
                    namespace: namespace.clone(),
                    package: package.clone(),
                    interfaces: vec![interface.clone()],
                    config: Default::default(),
                }),
            }
            return true;
        }
        let Some(res) = resources_mut(manifest, &self.component) else {
            return false;
        };
        match &grant.edit {
            Edit::Socket { port, protocol } => res.sockets.push(Socket {
                port: *port,
                host_port: None,
                protocol: *protocol,
            }),
            Edit::AllowedHost(rule) => res.allowed_hosts.push(rule.clone()),
            Edit::NameLookup(name) => res.allowed_ip_name_lookups.push(name.clone()),
            Edit::HostInterface { .. } => return false,
        }
        true
    }
}

impl fmt::Display for Suggestion {
    /// `component api was denied a TCP connect to 127.0.0.1:5432; to allow it, add to
    /// spec.components[0].localResources:` and the lines, indented by two spaces; or `...; no
    /// manifest line can grant it: WHY`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "component {} was denied {}; ",
            self.component, self.request
        )?;
        match &self.grant {
            Some(g) => {
                write!(f, "to allow it, add to {}:", g.path)?;
                for line in g.yaml.lines() {
                    write!(f, "\n  {line}")?;
                }
                if let Some(note) = &self.note {
                    write!(f, "\n({note})")?;
                }
                Ok(())
            }
            None => write!(
                f,
                "no manifest line can grant it: {}",
                self.note.as_deref().unwrap_or("it is not grantable")
            ),
        }
    }
}

/// The socket rules of a component's `localResources` (as the runtime builds them).
pub fn socket_rules(res: &LocalResources) -> Result<SocketRules, SocketRuleError> {
    let rules = res
        .sockets
        .iter()
        .map(|s| SocketRule {
            port: s.port,
            host_port: s.effective_host_port(),
            protocol: policy_protocol(s.protocol),
        })
        .collect();
    SocketRules::new(rules, &res.allowed_ip_name_lookups)
}

fn policy_protocol(p: Protocol) -> sockets::Protocol {
    match p {
        Protocol::Tcp => sockets::Protocol::Tcp,
        Protocol::Udp => sockets::Protocol::Udp,
    }
}

fn manifest_protocol(p: sockets::Protocol) -> Protocol {
    match p {
        sockets::Protocol::Tcp => Protocol::Tcp,
        sockets::Protocol::Udp => Protocol::Udp,
    }
}

/// Whether a component's `allowedHosts` let a request for `scheme://host:port` go out, by name
/// (what the runtime checks before any DNS query): a `NAME.weft.internal` host needs a rule
/// naming that space.
pub fn http_allowed(allowed: &AllowedHosts, scheme: Scheme, host: &str, port: u16) -> bool {
    if weft_policy::internal::classify(host) == InternalHost::External {
        allowed.allows(scheme, host, port)
    } else {
        weft_policy::internal::allows(allowed, scheme, host, port)
    }
}

/// The component's field path (`spec.components[i]` or `spec.service`) and its resources.
fn locate<'a>(manifest: &'a Manifest, component: &str) -> Option<(String, &'a LocalResources)> {
    if let Some((i, c)) = manifest
        .spec
        .components
        .iter()
        .enumerate()
        .find(|(_, c)| c.name == component)
    {
        return Some((format!("spec.components[{i}]"), &c.local_resources));
    }
    manifest
        .spec
        .service
        .as_ref()
        .filter(|s| s.name == component)
        .map(|s| ("spec.service".to_string(), &s.local_resources))
}

fn resources_mut<'a>(
    manifest: &'a mut Manifest,
    component: &str,
) -> Option<&'a mut LocalResources> {
    if let Some(c) = manifest
        .spec
        .components
        .iter_mut()
        .find(|c| c.name == component)
    {
        return Some(&mut c.local_resources);
    }
    manifest
        .spec
        .service
        .as_mut()
        .filter(|s| s.name == component)
        .map(|s| &mut s.local_resources)
}

/// A YAML double-quoted string.
fn quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The lines adding `item` to the list `field` of the mapping at `path`: under the list when
/// it has entries already, else the field with its first entry.
fn list_entry(path: &str, field: &str, has_entries: bool, item: &str) -> (String, String) {
    if has_entries {
        (format!("{path}.{field}"), format!("- {item}"))
    } else {
        (path.to_string(), format!("{field}:\n  - {item}"))
    }
}

/// The manifest lines that would grant `request` to `component` of `manifest`, or why none can.
pub fn suggest(request: &GrantRequest, component: &str, manifest: &Manifest) -> Suggestion {
    let (grant, note) = match request {
        GrantRequest::Import { interface } => suggest_import(interface, manifest),
        _ => match locate(manifest, component) {
            None => (
                None,
                Some(format!(
                    "no component or service named `{component}` is in this manifest"
                )),
            ),
            Some((path, res)) => {
                let path = format!("{path}.localResources");
                suggest_local(request, &path, res)
            }
        },
    };
    Suggestion {
        component: component.to_string(),
        request: request.clone(),
        grant,
        note,
    }
}

type Outcome = (Option<Grant>, Option<String>);

fn no(note: impl Into<String>) -> Outcome {
    (None, Some(note.into()))
}

fn suggest_local(request: &GrantRequest, path: &str, res: &LocalResources) -> Outcome {
    let rules = socket_rules(res).unwrap_or_default();
    match request {
        GrantRequest::Import { .. } => no("imports are granted by spec.hostInterfaces"),
        GrantRequest::SocketConnect { addr, protocol } => {
            let socket_use = match protocol {
                sockets::Protocol::Tcp => SocketUse::TcpConnect,
                sockets::Protocol::Udp => SocketUse::UdpSend,
            };
            let proto = protocol.as_str();
            let port = addr.port();
            let reason = match sockets::decide(&rules, socket_use, *addr) {
                Verdict::Allow { .. } => return no("the manifest allows it already"),
                Verdict::Deny(d) => d.reason,
            };
            match reason {
                DenyReason::ProtocolNotGranted | DenyReason::PortNotGranted if port != 0 => {
                    let item = format!("{{ port: {port}, protocol: {proto} }}");
                    let (path, yaml) = list_entry(path, "sockets", !res.sockets.is_empty(), &item);
                    let grant = Grant {
                        path,
                        yaml,
                        edit: Edit::Socket {
                            port,
                            protocol: manifest_protocol(*protocol),
                        },
                    };
                    (Some(grant), None)
                }
                DenyReason::OtherLoopback | DenyReason::MappedAddress => no(format!(
                    "only 127.0.0.1 and ::1 are the workload's loopback; connect to \
                     127.0.0.1:{port} and grant it in {path}.sockets with \
                     `- {{ port: {port}, protocol: {proto} }}`"
                )),
                DenyReason::NotLoopback => no(format!(
                    "sockets reach only the host's loopback (127.0.0.1 and ::1), never {ip}; \
                     connect to 127.0.0.1:{port} and grant it in {path}.sockets with \
                     `- {{ port: {port}, protocol: {proto} }}` (add `hostPort:` when the host \
                     serves it on another port), or send HTTP through wasi:http with \
                     {path}.allowedHosts",
                    ip = addr.ip()
                )),
                _ => no(format!("port {port} cannot be granted")),
            }
        }
        GrantRequest::SocketBind { addr, protocol } => {
            let socket_use = match protocol {
                sockets::Protocol::Tcp => SocketUse::TcpBind,
                sockets::Protocol::Udp => SocketUse::UdpBind,
            };
            let proto = protocol.as_str();
            match sockets::decide(&rules, socket_use, *addr) {
                Verdict::Allow { .. } => no(
                    "a client socket's implicit bind is allowed already; a component cannot \
                     listen on the host (the workload's service binds 127.0.0.1:PORT on the \
                     workload's virtual loopback, docs/service.md)",
                ),
                Verdict::Deny(d) if d.reason == DenyReason::ProtocolNotGranted => no(format!(
                    "a client socket's implicit bind is allowed once {path}.sockets grants \
                         a {proto} port: grant the port it connects to, e.g. \
                         `- {{ port: 5432, protocol: {proto} }}`"
                )),
                Verdict::Deny(_) => no(
                    "a component cannot bind a fixed address or port, or listen, on the host; \
                     connect to the host's services through localResources.sockets (a \
                     workload's service binds 127.0.0.1:PORT on the workload's virtual \
                     loopback, docs/service.md)",
                ),
            }
        }
        GrantRequest::NameLookup { name } => match sockets::decide_lookup(&rules, name) {
            LookupVerdict::Literal(_) => no("IP addresses need no lookup grant"),
            LookupVerdict::Allow => no("the manifest allows it already"),
            LookupVerdict::Deny { .. } => {
                let bare = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
                let valid = !bare.starts_with('*')
                    && sockets::check_name_pattern(&bare).is_ok()
                    && sockets::decide_lookup(
                        &SocketRules::new(vec![], &[bare.as_str()]).unwrap_or_default(),
                        name,
                    ) == LookupVerdict::Allow;
                if !valid {
                    return no(format!(
                        "`{name}` is not a DNS name (letters, digits, `-` and `_` in \
                         dot-separated labels)"
                    ));
                }
                let (path, yaml) = list_entry(
                    path,
                    "allowedIpNameLookups",
                    !res.allowed_ip_name_lookups.is_empty(),
                    &quoted(&bare),
                );
                let grant = Grant {
                    path,
                    yaml,
                    edit: Edit::NameLookup(bare),
                };
                (Some(grant), None)
            }
        },
        GrantRequest::OutgoingHttp { scheme, host, port } => {
            let allowed = AllowedHosts::parse(&res.allowed_hosts).unwrap_or_default();
            if http_allowed(&allowed, *scheme, host, *port) {
                return no("the manifest allows it already");
            }
            if host.contains('*') {
                return no(format!("`{host}` is not a host name"));
            }
            if weft_policy::internal::classify(host) == InternalHost::Invalid {
                return no(format!(
                    "`{host}` is in the reserved name space weft.internal but names no \
                     workload (call http://NAME.weft.internal/ with NAME a workload's \
                     metadata.name)"
                ));
            }
            let bare = host.trim_end_matches('.').to_ascii_lowercase();
            let host_part = if bare.parse::<std::net::Ipv6Addr>().is_ok() {
                format!("[{bare}]")
            } else {
                bare
            };
            let rule = if *port == scheme.default_port() {
                format!("{}://{host_part}", scheme.as_str())
            } else {
                format!("{}://{host_part}:{port}", scheme.as_str())
            };
            let grants = AllowedHosts::parse(&[rule.as_str()])
                .is_ok_and(|a| http_allowed(&a, *scheme, host, *port));
            if !grants {
                return no(format!(
                    "`{host}` is not a host name or IP address an allowedHosts rule can name"
                ));
            }
            let (path, yaml) = list_entry(
                path,
                "allowedHosts",
                !res.allowed_hosts.is_empty(),
                &quoted(&rule),
            );
            let grant = Grant {
                path,
                yaml,
                edit: Edit::AllowedHost(rule),
            };
            (Some(grant), None)
        }
    }
}

/// `namespace:package/interface[@version]` -> its parts.
fn split_import(import: &str) -> Option<(&str, &str, &str)> {
    let base = import.split_once('@').map_or(import, |(b, _)| b);
    let (pkg, iface) = base.split_once('/')?;
    let (ns, package) = pkg.split_once(':')?;
    Some((ns, package, iface))
}

fn suggest_import(import: &str, manifest: &Manifest) -> Outcome {
    let none = || {
        no(
            "no host interface provides it; export it from another component of the \
             workload (and name it in `links` when two do), or build the component without it",
        )
    };
    let Some((ns, pkg, iface)) = split_import(import) else {
        return none();
    };
    let Some(known) = known_host_interface(ns, pkg) else {
        return none();
    };
    if let Some(h) = manifest.host_interface(ns, pkg)
        && (h.grants(iface) || (ns, pkg) == ("wasi", "http"))
    {
        return no("the manifest grants it already");
    }
    // Any wasi:http grant provides wasi:http's types; outgoing-handler is the smallest grant
    // that needs no routing config.
    let (iface, note) = if known.interfaces.contains(&iface) {
        (iface, None)
    } else if (ns, pkg) == ("wasi", "http") {
        (
            "outgoing-handler",
            Some(format!(
                "any wasi:http grant provides `{iface}`; outgoing requests also need \
                 localResources.allowedHosts"
            )),
        )
    } else {
        return none();
    };
    let entry = format!("{{ namespace: {ns}, package: {pkg}, interfaces: [{iface}] }}");
    let list = &manifest.spec.host_interfaces;
    let (path, yaml) = match list
        .iter()
        .position(|h| h.namespace == ns && h.package == pkg)
    {
        Some(i) => (
            format!("spec.hostInterfaces[{i}].interfaces"),
            format!("- {iface}"),
        ),
        None => list_entry("spec", "hostInterfaces", !list.is_empty(), &entry),
    };
    let grant = Grant {
        path,
        yaml,
        edit: Edit::HostInterface {
            namespace: ns.to_string(),
            package: pkg.to_string(),
            interface: iface.to_string(),
        },
    };
    (Some(grant), note)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{parse_str, to_json_value};
    use proptest::prelude::*;
    use std::net::{IpAddr, SocketAddr};
    use std::path::Path;

    const HEAD: &str =
        "apiVersion: weft.dev/v1alpha1\nkind: Workload\nmetadata: { name: todo }\nspec:\n";

    fn parse(text: &str) -> Manifest {
        parse_str(text, Path::new("todo.yaml"))
            .unwrap_or_else(|e| panic!("{e}\n{text}"))
            .remove(0)
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("socket address")
    }

    fn tcp(a: &str) -> GrantRequest {
        GrantRequest::SocketConnect {
            addr: addr(a),
            protocol: sockets::Protocol::Tcp,
        }
    }

    /// `api` with no grants, `web` with a socket, a lookup and an allowed host; a service.
    fn sample() -> Manifest {
        parse(&format!(
            "{HEAD}  components:\n    - {{ name: web, image: ./web.wasm }}\n    - name: api\n      image: ./api.wasm\n      localResources:\n        sockets: [ {{ port: 6379 }} ]\n        allowedIpNameLookups: [ db.internal ]\n        allowedHosts: [ \"api.example.com:443\" ]\n  service: {{ name: pool, image: ./pool.wasm }}\n  hostInterfaces:\n    - {{ namespace: wasi, package: keyvalue, interfaces: [store] }}\n"
        ))
    }

    fn text(req: &GrantRequest, component: &str) -> String {
        suggest(req, component, &sample()).to_string()
    }

    #[test]
    fn socket_texts() {
        assert_eq!(
            text(&tcp("127.0.0.1:5432"), "web"),
            "component web was denied a TCP connect to 127.0.0.1:5432; to allow it, add to \
             spec.components[0].localResources:\n  sockets:\n    - { port: 5432, protocol: tcp }"
        );
        assert_eq!(
            text(&tcp("[::1]:5432"), "api"),
            "component api was denied a TCP connect to [::1]:5432; to allow it, add to \
             spec.components[1].localResources.sockets:\n  - { port: 5432, protocol: tcp }"
        );
        let udp = GrantRequest::socket(SocketUse::UdpSend, addr("127.0.0.1:53"));
        assert_eq!(
            text(&udp, "pool"),
            "component pool was denied a UDP send to 127.0.0.1:53; to allow it, add to \
             spec.service.localResources:\n  sockets:\n    - { port: 53, protocol: udp }"
        );
        assert_eq!(
            text(&tcp("10.0.0.5:5432"), "web"),
            "component web was denied a TCP connect to 10.0.0.5:5432; no manifest line can \
             grant it: sockets reach only the host's loopback (127.0.0.1 and ::1), never \
             10.0.0.5; connect to 127.0.0.1:5432 and grant it in \
             spec.components[0].localResources.sockets with `- { port: 5432, protocol: tcp }` \
             (add `hostPort:` when the host serves it on another port), or send HTTP through \
             wasi:http with spec.components[0].localResources.allowedHosts"
        );
        assert!(
            text(&tcp("127.0.0.2:5432"), "web")
                .ends_with("only 127.0.0.1 and ::1 are the workload's loopback; connect to 127.0.0.1:5432 and grant it in spec.components[0].localResources.sockets with `- { port: 5432, protocol: tcp }`")
        );
        assert!(text(&tcp("127.0.0.1:6379"), "api").ends_with("the manifest allows it already"));
        let bind = GrantRequest::socket(SocketUse::TcpBind, addr("0.0.0.0:8080"));
        assert_eq!(
            text(&bind, "api"),
            "component api was denied a TCP bind of 0.0.0.0:8080; no manifest line can grant \
             it: a component cannot bind a fixed address or port, or listen, on the host; \
             connect to the host's services through localResources.sockets (a workload's \
             service binds 127.0.0.1:PORT on the workload's virtual loopback, docs/service.md)"
        );
        let implicit = GrantRequest::socket(SocketUse::UdpBind, addr("0.0.0.0:0"));
        assert!(
            text(&implicit, "web").contains(
                "allowed once spec.components[0].localResources.sockets grants a udp port"
            )
        );
        assert!(text(&tcp("127.0.0.1:1"), "nope").ends_with(
            "no manifest line can grant it: no component or service named `nope` is in this manifest"
        ));
    }

    #[test]
    fn lookup_texts() {
        assert_eq!(
            text(&GrantRequest::lookup("Cache.Internal."), "web"),
            "component web was denied a name lookup of `Cache.Internal.`; to allow it, add to \
             spec.components[0].localResources:\n  allowedIpNameLookups:\n    - \"cache.internal\""
        );
        assert_eq!(
            text(&GrantRequest::lookup("x.db.internal"), "api"),
            "component api was denied a name lookup of `x.db.internal`; to allow it, add to \
             spec.components[1].localResources.allowedIpNameLookups:\n  - \"x.db.internal\""
        );
        assert!(text(&GrantRequest::lookup("a b"), "api").contains("is not a DNS name"));
        assert!(text(&GrantRequest::lookup("*.x"), "api").contains("is not a DNS name"));
        assert!(text(&GrantRequest::lookup("10.0.0.1"), "api").ends_with("need no lookup grant"));
    }

    #[test]
    fn http_texts() {
        let get = |s, h: &str, p| GrantRequest::outgoing_http(s, h, p);
        assert_eq!(
            text(&get(Scheme::Https, "API.example.com", 443), "web"),
            "component web was denied an outgoing HTTP request to https://API.example.com:443; \
             to allow it, add to spec.components[0].localResources:\n  allowedHosts:\n    - \
             \"https://api.example.com\""
        );
        assert_eq!(
            text(&get(Scheme::Http, "db.internal", 8080), "api"),
            "component api was denied an outgoing HTTP request to http://db.internal:8080; to \
             allow it, add to spec.components[1].localResources.allowedHosts:\n  - \
             \"http://db.internal:8080\""
        );
        assert!(
            text(&get(Scheme::Http, "[::1]", 8080), "api").ends_with("- \"http://[::1]:8080\"")
        );
        assert!(
            text(&get(Scheme::Http, "orders.weft.internal", 80), "api")
                .ends_with("- \"http://orders.weft.internal\"")
        );
        assert!(
            text(&get(Scheme::Http, "a.b.weft.internal", 80), "api").contains("names no workload")
        );
        assert!(
            text(&get(Scheme::Https, "api.example.com", 443), "api").ends_with("allows it already")
        );
        assert!(text(&get(Scheme::Https, "bad host", 443), "api").contains("no manifest line can"));
    }

    #[test]
    fn import_texts() {
        let imp = |i: &str| text(&GrantRequest::import(i), "api");
        assert_eq!(
            imp("wasi:keyvalue/atomics@0.2.0-draft"),
            "component api was denied the import `wasi:keyvalue/atomics@0.2.0-draft`; to allow \
             it, add to spec.hostInterfaces[0].interfaces:\n  - atomics"
        );
        assert_eq!(
            imp("wasi:config/store@0.2.0-rc.1"),
            "component api was denied the import `wasi:config/store@0.2.0-rc.1`; to allow it, \
             add to spec.hostInterfaces:\n  - { namespace: wasi, package: config, interfaces: \
             [store] }"
        );
        let bare = parse(&format!(
            "{HEAD}  components:\n    - {{ name: api, image: ./api.wasm }}\n"
        ));
        assert_eq!(
            suggest(
                &GrantRequest::import("wasi:http/types@0.2.12"),
                "api",
                &bare
            )
            .to_string(),
            "component api was denied the import `wasi:http/types@0.2.12`; to allow it, add to \
             spec:\n  hostInterfaces:\n    - { namespace: wasi, package: http, interfaces: \
             [outgoing-handler] }\n(any wasi:http grant provides `types`; outgoing requests \
             also need localResources.allowedHosts)"
        );
        assert!(
            imp("example:calc/ops")
                .contains("no manifest line can grant it: no host interface provides it")
        );
        assert!(imp("wasi:keyvalue/nope").contains("no manifest line can grant it"));
        assert!(imp("garbage").contains("no manifest line can grant it"));
    }

    // ---- Applying a suggestion's text to the manifest ----

    /// The manifest with the suggestion's YAML lines merged in at its path, through the real
    /// parser (printed to JSON, the lines parsed as YAML and merged, parsed again).
    fn apply_text(m: &Manifest, g: &Grant) -> Manifest {
        let mut doc = to_json_value(m).expect("print");
        let snippet: serde_json::Value =
            serde_norway::from_str(&g.yaml).unwrap_or_else(|e| panic!("{e}: {}", g.yaml));
        let mut at = &mut doc;
        for seg in g.path.split('.') {
            let (key, index) = match seg.split_once('[') {
                Some((k, rest)) => (
                    k,
                    Some(rest.trim_end_matches(']').parse::<usize>().expect("index")),
                ),
                None => (seg, None),
            };
            let obj = at.as_object_mut().expect("a mapping on the path");
            at = obj.entry(key).or_insert_with(|| serde_json::json!({}));
            if let Some(i) = index {
                at = &mut at[i];
            }
        }
        match (at, snippet) {
            (serde_json::Value::Array(list), serde_json::Value::Array(more)) => list.extend(more),
            (serde_json::Value::Object(map), serde_json::Value::Object(more)) => {
                for (k, v) in more {
                    assert!(!map.contains_key(&k), "`{k}` is set already at {}", g.path);
                    map.insert(k, v);
                }
            }
            (at, snippet) => panic!("cannot merge {snippet} into {at}"),
        }
        let json = serde_json::to_string(&doc).expect("json");
        parse_str(&json, Path::new("todo.json"))
            .unwrap_or_else(|e| panic!("{e}\n{}", g.yaml))
            .remove(0)
    }

    fn res<'a>(m: &'a Manifest, component: &str) -> &'a LocalResources {
        locate(m, component).map(|(_, r)| r).expect("component")
    }

    fn connect_use(p: sockets::Protocol) -> SocketUse {
        match p {
            sockets::Protocol::Tcp => SocketUse::TcpConnect,
            sockets::Protocol::Udp => SocketUse::UdpSend,
        }
    }

    fn allows(rules: &SocketRules, u: SocketUse, a: SocketAddr) -> bool {
        sockets::decide(rules, u, a).is_allow()
    }

    fn arb_manifest() -> impl Strategy<Value = Manifest> {
        let socket = (1u16..12, any::<bool>());
        (
            prop::collection::vec(socket, 0..4),
            prop::sample::subsequence(vec!["db.internal", "*.svc.local", "localhost"], 0..3),
            prop::sample::subsequence(
                vec![
                    "\"api.example.com:443\"",
                    "\"http://*.example.com:*\"",
                    "\"10.0.0.1\"",
                ],
                0..3,
            ),
            any::<bool>(),
            prop::sample::subsequence(vec!["keyvalue", "config", "http"], 0..3),
        )
            .prop_map(|(socks, names, hosts, on_service, ifaces)| {
                let mut seen = std::collections::HashSet::new();
                let socks: Vec<String> = socks
                    .into_iter()
                    .filter(|s| seen.insert(*s))
                    .map(|(p, t)| {
                        format!(
                            "{{ port: {p}, protocol: {} }}",
                            if t { "tcp" } else { "udp" }
                        )
                    })
                    .collect();
                let mut res = String::new();
                if !socks.is_empty() {
                    res.push_str(&format!("        sockets: [ {} ]\n", socks.join(", ")));
                }
                if !names.is_empty() {
                    let q: Vec<String> = names.iter().map(|n| format!("\"{n}\"")).collect();
                    res.push_str(&format!(
                        "        allowedIpNameLookups: [ {} ]\n",
                        q.join(", ")
                    ));
                }
                if !hosts.is_empty() {
                    res.push_str(&format!("        allowedHosts: [ {} ]\n", hosts.join(", ")));
                }
                let body = if res.is_empty() {
                    String::new()
                } else {
                    format!("      localResources:\n{res}")
                };
                let mut text =
                    format!("{HEAD}  components:\n    - {{ name: web, image: ./web.wasm }}\n");
                if on_service {
                    text.push_str(&format!(
                        "  service:\n      name: api\n      image: ./api.wasm\n{body}"
                    ));
                } else {
                    text.push_str(&format!("    - name: api\n      image: ./api.wasm\n{body}"));
                }
                if !ifaces.is_empty() {
                    text.push_str("  hostInterfaces:\n");
                    for i in ifaces {
                        let name = match i {
                            "keyvalue" => "store",
                            "config" => "store",
                            _ => "outgoing-handler",
                        };
                        text.push_str(&format!(
                            "    - {{ namespace: wasi, package: {i}, interfaces: [{name}] }}\n"
                        ));
                    }
                }
                parse(&text)
            })
    }

    fn arb_ip() -> impl Strategy<Value = IpAddr> {
        prop_oneof![
            Just("127.0.0.1"),
            Just("::1"),
            Just("127.0.0.2"),
            Just("10.0.0.5"),
            Just("::ffff:127.0.0.1"),
            Just("0.0.0.0"),
            Just("::"),
            Just("93.184.216.34"),
        ]
        .prop_map(|s| s.parse().expect("ip"))
    }

    fn arb_protocol() -> impl Strategy<Value = sockets::Protocol> {
        prop_oneof![Just(sockets::Protocol::Tcp), Just(sockets::Protocol::Udp)]
    }

    fn arb_name() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z][a-z0-9-]{0,5}(\\.[a-z0-9_]{1,4}){0,2}\\.?",
            "[A-Za-z]{1,4}\\.[A-Za-z]{1,4}",
            Just("localhost".to_string()),
            Just("a.svc.local".to_string()),
            Just("10.1.2.3".to_string()),
            Just("[::1]".to_string()),
            "[ -~]{0,8}",
        ]
    }

    fn arb_scheme() -> impl Strategy<Value = Scheme> {
        prop_oneof![Just(Scheme::Http), Just(Scheme::Https)]
    }

    fn arb_host() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z][a-z0-9-]{0,5}(\\.[a-z]{1,4}){0,2}",
            Just("API.Example.com".to_string()),
            Just("orders.weft.internal".to_string()),
            Just("a.b.weft.internal".to_string()),
            Just("::1".to_string()),
            Just("10.0.0.1".to_string()),
            Just("example.com.".to_string()),
            "[ -~]{0,8}",
        ]
    }

    fn arb_port() -> impl Strategy<Value = u16> {
        prop_oneof![Just(80u16), Just(443u16), Just(8080u16), 1u16..]
    }

    /// The suggestion's text, applied through the parser, equals [`Suggestion::apply`] on the
    /// model; returns the granted manifest.
    fn applied(m: &Manifest, s: &Suggestion) -> Option<Manifest> {
        let g = s.grant.as_ref()?;
        let by_text = apply_text(m, g);
        let mut by_model = m.clone();
        assert!(s.apply(&mut by_model), "apply");
        assert_eq!(by_text.spec, by_model.spec, "text and model disagree: {s}");
        Some(by_model)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn socket_grants_allow_exactly_the_port(
            m in arb_manifest(), ip in arb_ip(), port in 0u16..14, protocol in arb_protocol()
        ) {
            let a = SocketAddr::new(ip, port);
            let req = GrantRequest::SocketConnect { addr: a, protocol };
            let s = suggest(&req, "api", &m);
            let before = socket_rules(res(&m, "api")).expect("rules");
            let u = connect_use(protocol);
            match applied(&m, &s) {
                Some(after_m) => {
                    let after = socket_rules(res(&after_m, "api")).expect("rules after");
                    prop_assert!(!allows(&before, u, a));
                    prop_assert!(allows(&after, u, a), "{s}");
                    // Nothing broader: every other port and the other protocol decide as before,
                    // on every address.
                    for other_ip in ["127.0.0.1", "::1", "127.0.0.2", "10.0.0.5"] {
                        let other_ip: IpAddr = other_ip.parse().expect("ip");
                        for q in 0u16..16 {
                            for p in [sockets::Protocol::Tcp, sockets::Protocol::Udp] {
                                if q == port && p == protocol {
                                    continue;
                                }
                                let b = SocketAddr::new(other_ip, q);
                                prop_assert_eq!(
                                    allows(&before, connect_use(p), b),
                                    allows(&after, connect_use(p), b),
                                    "{} {:?} changed", b, p
                                );
                            }
                        }
                    }
                }
                None => {
                    // Already allowed, or no rule for this port (either protocol) can allow it.
                    if !allows(&before, u, a) && port != 0 {
                        for p in [Protocol::Tcp, Protocol::Udp] {
                            let mut more = m.clone();
                            if let Some(r) = resources_mut(&mut more, "api") {
                                r.sockets.retain(|x| !(x.port == port && x.protocol == p));
                                r.sockets.push(Socket { port, host_port: None, protocol: p });
                            }
                            let rules = socket_rules(res(&more, "api")).expect("rules");
                            prop_assert!(!allows(&rules, u, a), "{s}");
                        }
                    }
                }
            }
        }

        #[test]
        fn lookup_grants_allow_exactly_the_name(m in arb_manifest(), name in arb_name(), other in arb_name()) {
            let s = suggest(&GrantRequest::lookup(&name), "api", &m);
            let before = socket_rules(res(&m, "api")).expect("rules");
            if let Some(after_m) = applied(&m, &s) {
                let after = socket_rules(res(&after_m, "api")).expect("rules after");
                prop_assert!(sockets::decide_lookup(&before, &name) != LookupVerdict::Allow);
                prop_assert_eq!(sockets::decide_lookup(&after, &name), LookupVerdict::Allow, "{}", s);
                let norm = |n: &str| n.strip_suffix('.').unwrap_or(n).to_ascii_lowercase();
                if norm(&other) != norm(&name) {
                    prop_assert_eq!(
                        sockets::decide_lookup(&before, &other) == LookupVerdict::Allow,
                        sockets::decide_lookup(&after, &other) == LookupVerdict::Allow,
                        "{} changed", other
                    );
                }
                // Sockets are untouched.
                for q in 0u16..16 {
                    let b = SocketAddr::new("127.0.0.1".parse().expect("ip"), q);
                    prop_assert_eq!(allows(&before, SocketUse::TcpConnect, b), allows(&after, SocketUse::TcpConnect, b));
                }
            }
        }

        #[test]
        fn http_grants_allow_exactly_the_destination(
            m in arb_manifest(), scheme in arb_scheme(), host in arb_host(), port in arb_port(),
            other_host in arb_host(), other_port in arb_port()
        ) {
            let req = GrantRequest::outgoing_http(scheme, &host, port);
            let s = suggest(&req, "api", &m);
            let hosts = |m: &Manifest| AllowedHosts::parse(&res(m, "api").allowed_hosts).expect("rules");
            let before = hosts(&m);
            if let Some(after_m) = applied(&m, &s) {
                let after = hosts(&after_m);
                prop_assert!(!http_allowed(&before, scheme, &host, port));
                prop_assert!(http_allowed(&after, scheme, &host, port), "{}", s);
                let other_scheme = match scheme { Scheme::Http => Scheme::Https, Scheme::Https => Scheme::Http };
                for (sc, h, p) in [
                    (other_scheme, host.as_str(), port),
                    (scheme, host.as_str(), other_port),
                    (scheme, other_host.as_str(), port),
                ] {
                    let same = sc == scheme
                        && p == port
                        && h.trim_end_matches('.').eq_ignore_ascii_case(host.trim_end_matches('.'));
                    if !same {
                        prop_assert_eq!(
                            http_allowed(&before, sc, h, p),
                            http_allowed(&after, sc, h, p),
                            "{:?}://{}:{} changed", sc, h, p
                        );
                    }
                }
            } else if !http_allowed(&before, scheme, &host, port) {
                // Not grantable: not a name or address a rule can name, or an invalid name in
                // the reserved space.
                let bare = host.trim_end_matches('.');
                let plausible = bare.parse::<std::net::Ipv6Addr>().is_ok()
                    || (!bare.contains(['/', '*', ':']) && AllowedHosts::parse(&[bare]).is_ok());
                prop_assert!(
                    !plausible || weft_policy::internal::classify(&host) == InternalHost::Invalid,
                    "{}", s
                );
            }
        }

        #[test]
        fn import_grants_grant_the_interface(
            m in arb_manifest(),
            import in prop::sample::select(vec![
                "wasi:keyvalue/store@0.2.0-draft", "wasi:keyvalue/batch", "wasi:config/store",
                "wasi:http/types@0.2.12", "wasi:http/outgoing-handler@0.2.12",
                "wasi:logging/logging", "wasmcloud:messaging/consumer@0.2.0",
                "wasi:sockets/tcp@0.2.12", "example:calc/ops", "wasi:keyvalue/nope", "nonsense",
            ])
        ) {
            let s = suggest(&GrantRequest::import(import), "api", &m);
            let base = import.split_once('@').map_or(import, |(b, _)| b);
            if let Some(after) = applied(&m, &s) {
                let (pkg, iface) = base.split_once('/').expect("interface");
                let (ns, package) = pkg.split_once(':').expect("package");
                let grant = after.host_interface(ns, package).expect("entry");
                // The runtime's check: the interface is granted, or (wasi:http) any grant of
                // the package covers it.
                prop_assert!(grant.grants(iface) || (ns, package) == ("wasi", "http"));
                prop_assert_eq!(after.spec.host_interfaces.len() - m.spec.host_interfaces.len(),
                    usize::from(m.host_interface(ns, package).is_none()));
            } else {
                let granted = base
                    .split_once('/')
                    .and_then(|(pkg, iface)| {
                        let (ns, package) = pkg.split_once(':')?;
                        let h = m.host_interface(ns, package)?;
                        Some(h.grants(iface) || (ns, package) == ("wasi", "http"))
                    })
                    .unwrap_or(false);
                prop_assert!(
                    matches!(base, "example:calc/ops" | "wasi:keyvalue/nope" | "nonsense") || granted,
                    "{}", s
                );
            }
        }
    }
}
