//! The link planner: who satisfies each import of a workload's components, and in which order
//! the components are instantiated.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// One component as the planner sees it: its name and the names of its imports and exports
/// (`ns:pkg/iface@version` for interfaces, plain names for functions).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PlanComponent {
    pub name: String,
    pub imports: Vec<String>,
    pub exports: Vec<String>,
}

/// The workload's long-lived service as the planner sees it: its name and the names of its
/// exports. Only exports outside the `wasi` namespace are offered to components (its
/// `wasi:cli/run` and `wasi:http/handler` are how the host drives it, not interfaces for
/// components).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PlanService {
    pub name: String,
    pub exports: Vec<String>,
}

impl PlanService {
    /// The service's exports that components may import.
    pub fn offered(&self) -> impl Iterator<Item = &String> {
        self.exports.iter().filter(|e| !e.starts_with("wasi:"))
    }

    fn find(&self, import: &str) -> Option<&String> {
        self.offered().find(|e| interface_matches(import, e))
    }
}

/// What satisfies one import.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Provider {
    /// The export `export` of component `index` (an index into the planned components).
    Component { index: usize, export: String },
    /// The export `export` of the workload's service (calls are forwarded into its instance).
    Service { export: String },
    /// A host interface (base WASI or a granted host interface).
    Host,
}

/// One import of one component and what satisfies it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution {
    pub import: String,
    pub provider: Provider,
    /// True when the manifest's `links` chose the provider.
    pub explicit: bool,
}

/// The result of [`plan`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkPlan {
    /// Instantiation order (indices into the components): every exporter comes before the
    /// components importing from it. Ties keep the manifest order, so the order is deterministic.
    pub order: Vec<usize>,
    /// Per component (same index as the input), its imports in order, each with its provider.
    pub resolutions: Vec<Vec<Resolution>>,
}

/// One link between two components.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edge<'a> {
    pub importer: usize,
    pub import: &'a str,
    pub exporter: usize,
    pub export: &'a str,
}

impl LinkPlan {
    /// Every component-to-component link, by importer then import order.
    pub fn edges(&self) -> Vec<Edge<'_>> {
        let mut out = Vec::new();
        for (importer, res) in self.resolutions.iter().enumerate() {
            for r in res {
                if let Provider::Component { index, export } = &r.provider {
                    out.push(Edge {
                        importer,
                        import: &r.import,
                        exporter: *index,
                        export,
                    });
                }
            }
        }
        out
    }

    /// Whether some other component imports from component `index`.
    pub fn is_consumed(&self, index: usize) -> bool {
        self.edges().iter().any(|e| e.exporter == index)
    }

    /// The groups of components connected by links (weakly connected components of the link
    /// graph), each in instantiation order; groups are ordered by their first component in
    /// instantiation order. A component linked to nothing is a group of one.
    pub fn groups(&self) -> Vec<Vec<usize>> {
        let n = self.resolutions.len();
        let mut parent: Vec<usize> = (0..n).collect();
        fn find(parent: &mut [usize], mut x: usize) -> usize {
            while parent[x] != x {
                parent[x] = parent[parent[x]];
                x = parent[x];
            }
            x
        }
        for e in self.edges() {
            let a = find(&mut parent, e.importer);
            let b = find(&mut parent, e.exporter);
            if a != b {
                parent[a] = b;
            }
        }
        let mut groups: Vec<(usize, Vec<usize>)> = Vec::new();
        for &i in &self.order {
            let root = find(&mut parent, i);
            match groups.iter_mut().find(|(r, _)| *r == root) {
                Some((_, g)) => g.push(i),
                None => groups.push((root, vec![i])),
            }
        }
        groups.into_iter().map(|(_, g)| g).collect()
    }
}

/// Why the components of a workload cannot be linked. Messages name components and interfaces.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("two components are named `{0}`; component names must be unique")]
    DuplicateName(String),
    #[error(
        "the service and a component are both named `{0}`; names must be unique within a \
         workload (hint: rename one, so that `links` can tell them apart)"
    )]
    ServiceNameTaken(String),
    #[error(
        "component `{component}` links `{interface}` to `{target}`, but {problem} \
         (hint: fix or remove the entry in its `links`)"
    )]
    BadLink {
        component: String,
        interface: String,
        target: String,
        problem: String,
    },
    #[error(
        "component `{component}` imports `{import}`, which is exported by {}{}; the link is \
         ambiguous (hint: choose one with `links: {{ \"{import}\": {} }}` on component `{component}`)",
        list(.exporters),
        .service.as_ref().map(|s| format!(" (`{s}` is the workload's service)")).unwrap_or_default(),
        .exporters.first().map(String::as_str).unwrap_or("NAME")
    )]
    Ambiguous {
        component: String,
        import: String,
        /// The exporting components, then the service when it exports it too.
        exporters: Vec<String>,
        /// The service's name, when it is one of the exporters.
        service: Option<String>,
    },
    #[error("{}", unsatisfied(.missing))]
    Unsatisfied {
        /// (component, import) pairs.
        missing: Vec<(String, String)>,
    },
    #[error("the components' links form a cycle: {}", cycle(.path))]
    Cycle {
        /// (importer, import, exporter) steps; the last exporter is the first importer.
        path: Vec<(String, String, String)>,
    },
}

fn list(names: &[String]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
    match quoted.len() {
        0 => String::new(),
        1 => quoted[0].clone(),
        n => format!("{} and {}", quoted[..n - 1].join(", "), quoted[n - 1]),
    }
}

fn unsatisfied(missing: &[(String, String)]) -> String {
    missing
        .iter()
        .map(|(c, i)| {
            format!(
                "component `{c}` imports `{i}`, which no other component of the workload exports \
                 and no granted host interface provides"
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn cycle(path: &[(String, String, String)]) -> String {
    let mut names: Vec<&str> = path.iter().map(|(a, _, _)| a.as_str()).collect();
    if let Some((first, _, _)) = path.first() {
        names.push(first);
    }
    let steps: Vec<String> = path
        .iter()
        .map(|(a, i, b)| format!("`{a}` imports `{i}` from `{b}`"))
        .collect();
    format!("{} ({})", names.join(" -> "), steps.join(", "))
}

/// Splits `ns:pkg/iface@version` into (`ns:pkg/iface`, `version`).
pub fn split_version(name: &str) -> (&str, Option<&str>) {
    match name.split_once('@') {
        Some((base, version)) => (base, Some(version)),
        None => (name, None),
    }
}

/// (major, minor, patch, pre-release) of a semver string, if it is one.
fn semver(v: &str) -> Option<(u64, u64, u64, &str)> {
    let (core, pre) = match v.split_once(['-', '+']) {
        Some((c, _)) => (c, &v[c.len()..]),
        None => (v, ""),
    };
    let mut parts = core.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    let patch = parts.next()?.parse().ok()?;
    if parts.next().is_some() {
        return None;
    }
    Some((major, minor, patch, pre))
}

/// Whether an export named `export` satisfies an import named `import`: the same name, or the
/// same interface at semver-compatible versions (same major; for `0.x` the same minor; for
/// `0.0.x` the same patch; pre-releases only match themselves).
pub fn interface_matches(import: &str, export: &str) -> bool {
    if import == export {
        return true;
    }
    let (ib, iv) = split_version(import);
    let (eb, ev) = split_version(export);
    if ib != eb {
        return false;
    }
    let (Some(iv), Some(ev)) = (iv, ev) else {
        return false;
    };
    let (Some(i), Some(e)) = (semver(iv), semver(ev)) else {
        return false;
    };
    if !i.3.is_empty() || !e.3.is_empty() {
        return false;
    }
    match (i.0, i.1) {
        (0, 0) => e.0 == 0 && e.1 == 0 && e.2 == i.2,
        (0, minor) => e.0 == 0 && e.1 == minor,
        (major, _) => e.0 == major,
    }
}

/// Whether a host prefix (`wasi:cli`, `wasi:keyvalue/store`) covers an import: the import's
/// unversioned name equals it or continues it with `/`.
fn host_covers(prefix: &str, import: &str) -> bool {
    let (base, _) = split_version(import);
    let prefix = split_version(prefix).0;
    base == prefix
        || (base.len() > prefix.len()
            && base.starts_with(prefix)
            && base.as_bytes().get(prefix.len()) == Some(&b'/'))
}

/// Whether a `links` key names an import: the full name or the unversioned name.
fn link_key_matches(key: &str, import: &str) -> bool {
    key == import || key == split_version(import).0
}

/// Plans how a workload's components link.
///
/// * `host`: prefixes of the host interfaces the workload may import (`wasi:cli`,
///   `wasi:http`, `wasi:keyvalue/store`…).
/// * `links`: per component name, `interface -> exporting component` choices from the manifest.
///
/// An import is satisfied by, in this order: the component its `links` entry names; the only
/// other component exporting it; the host. Two or more exporters without a `links` choice is an
/// error, as is an import nothing satisfies and a cycle of links. A component never satisfies its
/// own imports (a middleware imports and exports the same interface).
pub fn plan(
    components: &[PlanComponent],
    host: &[String],
    links: &BTreeMap<String, BTreeMap<String, String>>,
) -> Result<LinkPlan, PlanError> {
    plan_with_service(components, None, host, links)
}

/// [`plan`] for a workload with a service: the service's exports outside the `wasi` namespace
/// ([`PlanService::offered`]) are providers too. An import is satisfied by, in this order: the
/// component or service its `links` entry names (the service by its name); the only exporter
/// among the other components and the service; the host. A component and the service (or two
/// components) exporting the same import without a `links` choice is ambiguous. The service
/// imports nothing from components, so it adds no edge to the instantiation order.
pub fn plan_with_service(
    components: &[PlanComponent],
    service: Option<&PlanService>,
    host: &[String],
    links: &BTreeMap<String, BTreeMap<String, String>>,
) -> Result<LinkPlan, PlanError> {
    let mut seen = BTreeSet::new();
    for c in components {
        if !seen.insert(c.name.as_str()) {
            return Err(PlanError::DuplicateName(c.name.clone()));
        }
    }
    if let Some(svc) = service
        && seen.contains(svc.name.as_str())
    {
        return Err(PlanError::ServiceNameTaken(svc.name.clone()));
    }
    let is_service = |name: &str| service.is_some_and(|s| s.name == name);
    let index_of = |name: &str| components.iter().position(|c| c.name == name);

    // Every links entry must name a component that exports a matching interface, and an
    // import of the linking component.
    for (component, entries) in links {
        let Some(ci) = index_of(component) else {
            if let Some((iface, target)) = entries.iter().next() {
                return Err(PlanError::BadLink {
                    component: component.clone(),
                    interface: iface.clone(),
                    target: target.clone(),
                    problem: format!("there is no component `{component}`"),
                });
            }
            continue;
        };
        for (iface, target) in entries {
            let bad = |problem: String| PlanError::BadLink {
                component: component.clone(),
                interface: iface.clone(),
                target: target.clone(),
                problem,
            };
            if !components[ci]
                .imports
                .iter()
                .any(|i| link_key_matches(iface, i))
            {
                return Err(bad(format!("`{component}` does not import `{iface}`")));
            }
            if is_service(target) {
                continue;
            }
            let Some(ti) = index_of(target) else {
                return Err(bad(match service {
                    Some(_) => format!("there is no component or service `{target}`"),
                    None => format!("there is no component `{target}`"),
                }));
            };
            if ti == ci {
                return Err(bad("a component cannot link to itself".into()));
            }
        }
    }

    let mut resolutions = Vec::with_capacity(components.len());
    let mut missing = Vec::new();
    for (ci, c) in components.iter().enumerate() {
        let chosen = links.get(&c.name);
        let mut res = Vec::with_capacity(c.imports.len());
        for import in &c.imports {
            let explicit = chosen.and_then(|m| {
                m.get(import.as_str())
                    .or_else(|| m.get(split_version(import).0))
            });
            if let Some(target) = explicit {
                if let Some(svc) = service.filter(|s| s.name == *target) {
                    let Some(export) = svc.find(import) else {
                        return Err(PlanError::BadLink {
                            component: c.name.clone(),
                            interface: import.clone(),
                            target: target.clone(),
                            problem: format!(
                                "the service `{target}` does not export it (only its exports \
                                 outside the `wasi` namespace are offered to components)"
                            ),
                        });
                    };
                    res.push(Resolution {
                        import: import.clone(),
                        provider: Provider::Service {
                            export: export.clone(),
                        },
                        explicit: true,
                    });
                    continue;
                }
                let ti = index_of(target).unwrap_or(usize::MAX);
                let export = components
                    .get(ti)
                    .and_then(|t| t.exports.iter().find(|e| interface_matches(import, e)));
                let Some(export) = export else {
                    return Err(PlanError::BadLink {
                        component: c.name.clone(),
                        interface: import.clone(),
                        target: target.clone(),
                        problem: format!("`{target}` does not export it"),
                    });
                };
                res.push(Resolution {
                    import: import.clone(),
                    provider: Provider::Component {
                        index: ti,
                        export: export.clone(),
                    },
                    explicit: true,
                });
                continue;
            }
            let exporters: Vec<(usize, &String)> = components
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != ci)
                .filter_map(|(i, other)| {
                    other
                        .exports
                        .iter()
                        .find(|e| interface_matches(import, e))
                        .map(|e| (i, e))
                })
                .collect();
            let from_service = service.and_then(|s| s.find(import));
            match (exporters.as_slice(), from_service) {
                ([], Some(export)) => res.push(Resolution {
                    import: import.clone(),
                    provider: Provider::Service {
                        export: export.clone(),
                    },
                    explicit: false,
                }),
                ([(index, export)], None) => res.push(Resolution {
                    import: import.clone(),
                    provider: Provider::Component {
                        index: *index,
                        export: (*export).clone(),
                    },
                    explicit: false,
                }),
                ([], None) => {
                    if host.iter().any(|p| host_covers(p, import)) {
                        res.push(Resolution {
                            import: import.clone(),
                            provider: Provider::Host,
                            explicit: false,
                        });
                    } else {
                        missing.push((c.name.clone(), import.clone()));
                    }
                }
                (many, from_service) => {
                    let mut exporters: Vec<String> = many
                        .iter()
                        .map(|(i, _)| components[*i].name.clone())
                        .collect();
                    let service = from_service.and(service).map(|s| s.name.clone());
                    exporters.extend(service.clone());
                    return Err(PlanError::Ambiguous {
                        component: c.name.clone(),
                        import: import.clone(),
                        exporters,
                        service,
                    });
                }
            }
        }
        resolutions.push(res);
    }
    if !missing.is_empty() {
        return Err(PlanError::Unsatisfied { missing });
    }

    // Dependencies: importer -> exporters it needs instantiated first.
    let n = components.len();
    let mut deps: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); n];
    for (importer, res) in resolutions.iter().enumerate() {
        for r in res {
            if let Provider::Component { index, .. } = r.provider {
                deps[importer].insert(index);
            }
        }
    }
    let mut placed = vec![false; n];
    let mut order = Vec::with_capacity(n);
    while order.len() < n {
        let next = (0..n).find(|&i| !placed[i] && deps[i].iter().all(|&d| placed[d]));
        match next {
            Some(i) => {
                placed[i] = true;
                order.push(i);
            }
            None => {
                return Err(PlanError::Cycle {
                    path: find_cycle(components, &resolutions, &placed),
                });
            }
        }
    }
    Ok(LinkPlan { order, resolutions })
}

/// Follows unplaced dependencies from the first unplaced component until one repeats. Every
/// unplaced component has an unplaced dependency, so the walk always closes a cycle.
fn find_cycle(
    components: &[PlanComponent],
    resolutions: &[Vec<Resolution>],
    placed: &[bool],
) -> Vec<(String, String, String)> {
    let step = |i: usize| -> Option<(String, usize)> {
        resolutions[i].iter().find_map(|r| match &r.provider {
            Provider::Component { index, .. } if !placed[*index] => {
                Some((r.import.clone(), *index))
            }
            _ => None,
        })
    };
    let Some(start) = placed.iter().position(|p| !p) else {
        return Vec::new();
    };
    let mut visited: Vec<usize> = Vec::new();
    let mut cur = start;
    while !visited.contains(&cur) {
        visited.push(cur);
        match step(cur) {
            Some((_, next)) => cur = next,
            None => break,
        }
    }
    let from = visited.iter().position(|&v| v == cur).unwrap_or(0);
    visited[from..]
        .iter()
        .filter_map(|&i| {
            step(i).map(|(import, next)| {
                (
                    components[i].name.clone(),
                    import,
                    components[next].name.clone(),
                )
            })
        })
        .collect()
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Provider::Component { index, export } => write!(f, "component #{index} ({export})"),
            Provider::Service { export } => write!(f, "service ({export})"),
            Provider::Host => f.write_str("host"),
        }
    }
}
