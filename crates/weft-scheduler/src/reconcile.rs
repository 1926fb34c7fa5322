//! `reconcile(&State) -> Vec<Command>`: the pure core of the scheduler. The rules are in
//! docs/lattice.md ("The scheduler"); the properties they give are tested in
//! `tests/properties.rs`.

use std::cmp::Reverse;
use std::collections::BTreeMap;

use crate::model::{Command, Deployment, Host, HostStatus, Placement, RemoveReason, State};

/// Whether `host` may run a replica of `d`: ready, matching the selector, carrying the spread
/// label if one is set.
pub fn eligible(host: &Host, d: &Deployment) -> bool {
    host.status == HostStatus::Ready
        && d.selector
            .iter()
            .all(|(k, v)| host.labels.get(k) == Some(v))
        && d.spread_by
            .as_ref()
            .is_none_or(|k| host.labels.contains_key(k))
}

/// The spread group of an eligible host: the value of its spread label, or `""` without one.
fn group_of<'a>(host: &'a Host, d: &Deployment) -> &'a str {
    d.spread_by
        .as_ref()
        .and_then(|k| host.labels.get(k))
        .map(String::as_str)
        .unwrap_or("")
}

/// How many replicas each spread group should hold: `want` divided by water-filling over the
/// groups' capacities (eligible hosts), so counts differ by at most one unless a group is full.
/// At equal levels, groups that hold more replicas now go first (fewer moves), then by name.
pub fn targets(
    want: usize,
    capacity: &BTreeMap<&str, usize>,
    current: &BTreeMap<&str, usize>,
) -> BTreeMap<String, usize> {
    let mut target: BTreeMap<&str, usize> = capacity.keys().map(|g| (*g, 0)).collect();
    let mut remaining = want.min(capacity.values().sum());
    while remaining > 0 {
        let pick = target
            .iter()
            .filter(|(g, t)| **t < capacity.get(**g).copied().unwrap_or(0))
            .min_by_key(|(g, t)| (**t, Reverse(current.get(**g).copied().unwrap_or(0)), **g))
            .map(|(g, _)| *g);
        let Some(g) = pick else { break };
        if let Some(t) = target.get_mut(g) {
            *t += 1;
        }
        remaining -= 1;
    }
    target
        .into_iter()
        .map(|(g, t)| (g.to_string(), t))
        .collect()
}

/// A placement of the deployment being planned, on an eligible host.
#[derive(Debug, Clone)]
struct Slot<'a> {
    host: &'a str,
    group: &'a str,
    version: String,
    ready: bool,
    /// The current version, not ready yet, not failed: in transition.
    pending: bool,
}

/// Computes the commands that move `state` toward its desired deployments. Pure and
/// deterministic: the same state gives the same commands, in the same order.
pub fn reconcile(state: &State) -> Vec<Command> {
    let mut out = Vec::new();
    // Placements per host over all deployments, kept up to date as commands are decided, to
    // prefer the least loaded hosts.
    let mut load: BTreeMap<&str, usize> = BTreeMap::new();
    for p in state.placements.values() {
        *load.entry(p.host.as_str()).or_default() += 1;
    }
    for p in state.placements.values() {
        if !state.deployments.contains_key(&p.workload) {
            remove(&mut out, &mut load, p, RemoveReason::Deleted);
        }
    }
    for d in state.deployments.values() {
        plan(state, d, &mut load, &mut out);
    }
    out
}

fn remove<'a>(
    out: &mut Vec<Command>,
    load: &mut BTreeMap<&'a str, usize>,
    p: &'a Placement,
    reason: RemoveReason,
) {
    if let Some(l) = load.get_mut(p.host.as_str()) {
        *l = l.saturating_sub(1);
    }
    out.push(Command::Remove {
        workload: p.workload.clone(),
        host: p.host.clone(),
        reason,
    });
}

fn place<'a>(
    out: &mut Vec<Command>,
    load: &mut BTreeMap<&'a str, usize>,
    d: &Deployment,
    host: &'a str,
) {
    *load.entry(host).or_default() += 1;
    out.push(Command::Place {
        workload: d.name.clone(),
        host: host.to_string(),
        version: d.version.clone(),
    });
}

fn plan<'a>(
    state: &'a State,
    d: &'a Deployment,
    load: &mut BTreeMap<&'a str, usize>,
    out: &mut Vec<Command>,
) {
    let before = out.len();
    let eligible_hosts: Vec<&Host> = state.hosts.values().filter(|h| eligible(h, d)).collect();
    let want = usize::try_from(d.replicas)
        .unwrap_or(usize::MAX)
        .min(eligible_hosts.len());
    // A version reported failed by any ready host halts its rollout.
    let halted = state
        .hosts
        .values()
        .any(|h| h.status == HostStatus::Ready && state.has_failed(&d.name, &h.name, &d.version));

    let mine = state
        .placements
        .range((d.name.clone(), String::new())..)
        .take_while(|((w, _), _)| w == &d.name)
        .map(|(_, p)| p);
    let mut slots: Vec<Slot<'a>> = Vec::new();
    let mut not_eligible: Vec<&Placement> = Vec::new();
    for p in mine {
        let host = match state.hosts.get(&p.host) {
            Some(h) if h.status == HostStatus::Ready => h,
            // Missing or lost: the host is fenced; the replica is gone.
            _ => {
                remove(out, load, p, RemoveReason::HostLost);
                continue;
            }
        };
        if !eligible(host, d) {
            not_eligible.push(p);
            continue;
        }
        let mut version = p.version.clone();
        if p.version == d.version && state.has_failed(&d.name, &p.host, &p.version) {
            // The current version failed here. An in-place update left the old version
            // serving: point the placement back at it. A fresh placement: remove it.
            let running = state
                .reports
                .get(&p.host)
                .and_then(|r| r.running.get(&d.name))
                .filter(|r| r.version != p.version);
            match running {
                Some(r) => {
                    out.push(Command::Update {
                        workload: d.name.clone(),
                        host: p.host.clone(),
                        from: p.version.clone(),
                        to: r.version.clone(),
                    });
                    version = r.version.clone();
                }
                None => {
                    remove(out, load, p, RemoveReason::Failed);
                    continue;
                }
            }
        }
        let ready = state.is_ready(&d.name, &p.host, &version);
        let pending = version == d.version && !ready;
        slots.push(Slot {
            host: &p.host,
            group: group_of(host, d),
            version,
            ready,
            pending,
        });
    }

    let total = slots.len();
    let pending = slots.iter().filter(|s| s.pending).count();
    let mut capacity: BTreeMap<&str, usize> = BTreeMap::new();
    for h in &eligible_hosts {
        *capacity.entry(group_of(h, d)).or_default() += 1;
    }
    let mut current: BTreeMap<&str, usize> = BTreeMap::new();
    for s in &slots {
        *current.entry(s.group).or_default() += 1;
    }
    let target = targets(want, &capacity, &current);
    let target_of = |g: &str| target.get(g).copied().unwrap_or(0);
    let taken: Vec<&str> = slots.iter().map(|s| s.host).collect();
    let free_in = |g: &str, load: &BTreeMap<&str, usize>| -> Option<&'a str> {
        eligible_hosts
            .iter()
            .filter(|h| group_of(h, d) == g)
            .filter(|h| !taken.contains(&h.name.as_str()))
            .filter(|h| !not_eligible.iter().any(|p| p.host == h.name))
            .filter(|h| !state.has_failed(&d.name, &h.name, &d.version))
            .min_by_key(|h| {
                (
                    load.get(h.name.as_str()).copied().unwrap_or(0),
                    h.name.as_str(),
                )
            })
            .map(|h| h.name.as_str())
    };

    // Placements on hosts that stopped being eligible go once nothing is in transition (their
    // replacements, placed below, are ready).
    if pending == 0 {
        for p in &not_eligible {
            remove(out, load, p, RemoveReason::NotEligible);
        }
    }

    // Excess: remove from groups above their share. Replicas in transition count as if ready,
    // so a surge replica waits for readiness before the one it replaces goes.
    if total > want {
        let excess = if pending == 0 {
            total - want
        } else {
            (total - pending).saturating_sub(want)
        };
        let mut surplus: BTreeMap<&str, usize> = current
            .iter()
            .map(|(g, c)| (*g, c.saturating_sub(target_of(g))))
            .collect();
        let any_current_ready = slots.iter().any(|s| s.ready && s.version == d.version);
        let mut candidates: Vec<&Slot> = slots.iter().filter(|s| !s.pending).collect();
        candidates.sort_by_key(|s| {
            (
                s.version == d.version,
                s.ready,
                Reverse(load.get(s.host).copied().unwrap_or(0)),
                s.host,
            )
        });
        let mut removed = 0;
        for s in candidates {
            if removed == excess {
                break;
            }
            let Some(left) = surplus.get_mut(s.group).filter(|l| **l > 0) else {
                continue;
            };
            *left -= 1;
            removed += 1;
            let reason = if s.version != d.version && any_current_ready {
                RemoveReason::Replaced
            } else {
                RemoveReason::ScaleDown
            };
            if let Some(l) = load.get_mut(s.host) {
                *l = l.saturating_sub(1);
            }
            // A removal supersedes this round's rollback of the same placement (one command
            // per placement per round).
            out.retain(|c| !(c.workload() == d.name && c.host() == s.host));
            out.push(Command::Remove {
                workload: d.name.clone(),
                host: s.host.to_string(),
                reason,
            });
        }
    }

    if halted {
        return;
    }

    // Scale up: new replicas in the groups below their share, most missing first.
    if total < want {
        let mut need = want - total;
        let mut deficit: Vec<(&str, usize)> = target
            .iter()
            .map(|(g, t)| {
                let c = current.get(g.as_str()).copied().unwrap_or(0);
                (g.as_str(), t.saturating_sub(c))
            })
            .filter(|(_, missing)| *missing > 0)
            .collect();
        deficit.sort_by_key(|(g, missing)| (Reverse(*missing), *g));
        let mut placed: Vec<&str> = Vec::new();
        for (g, missing) in deficit {
            for _ in 0..missing {
                if need == 0 {
                    break;
                }
                let host = eligible_hosts
                    .iter()
                    .filter(|h| group_of(h, d) == g)
                    .filter(|h| !taken.contains(&h.name.as_str()))
                    .filter(|h| !placed.contains(&h.name.as_str()))
                    .filter(|h| !not_eligible.iter().any(|p| p.host == h.name))
                    .filter(|h| !state.has_failed(&d.name, &h.name, &d.version))
                    .min_by_key(|h| {
                        (
                            load.get(h.name.as_str()).copied().unwrap_or(0),
                            h.name.as_str(),
                        )
                    })
                    .map(|h| h.name.as_str());
                let Some(host) = host else { break };
                placed.push(host);
                place(out, load, d, host);
                need -= 1;
            }
        }
    }

    // One step of a rollout or a spread rebalance, when nothing else happened to this
    // deployment this round and nothing is in transition: surge 1, unavailable 0.
    if out.len() != before || pending > 0 || total > want {
        return;
    }
    let outdated = slots
        .iter()
        .filter(|s| s.version != d.version)
        .min_by_key(|s| {
            (
                s.ready,
                Reverse(load.get(s.host).copied().unwrap_or(0)),
                s.host,
            )
        });
    if let Some(o) = outdated {
        match free_in(o.group, load) {
            Some(host) => place(out, load, d, host),
            None => out.push(Command::Update {
                workload: d.name.clone(),
                host: o.host.to_string(),
                from: o.version.clone(),
                to: d.version.clone(),
            }),
        }
        return;
    }
    let most_missing = target
        .iter()
        .map(|(g, t)| {
            let c = current.get(g.as_str()).copied().unwrap_or(0);
            (g.as_str(), t.saturating_sub(c))
        })
        .filter(|(_, missing)| *missing > 0)
        .min_by_key(|(g, missing)| (Reverse(*missing), *g));
    if let Some((g, _)) = most_missing
        && let Some(host) = free_in(g, load)
    {
        place(out, load, d, host);
    }
}

/// A deployment's state as `weft get workloads` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeploymentStatus {
    /// `spec.replicas`.
    pub desired: u32,
    /// Hosts that may run it.
    pub eligible: usize,
    /// Placements.
    pub placed: usize,
    /// Placements whose host reports the desired version ready.
    pub ready: usize,
    /// Placements whose host reports some version ready (serving).
    pub serving: usize,
    /// The desired version.
    pub version: String,
    /// A host that reported the desired version failed, and its error.
    pub failed: Option<(String, String)>,
}

impl DeploymentStatus {
    /// `Running`, `Progressing`, `Failed` or `Unschedulable`, with a reason when not running.
    pub fn summary(&self) -> (&'static str, Option<String>) {
        if let Some((host, error)) = &self.failed {
            return (
                "Failed",
                Some(format!(
                    "version {} failed on {host}: {error}",
                    self.version
                )),
            );
        }
        let want = usize::try_from(self.desired).unwrap_or(usize::MAX);
        if self.eligible < want {
            return (
                "Unschedulable",
                Some(format!(
                    "{want} replicas wanted, {} eligible hosts (a host runs at most one replica)",
                    self.eligible
                )),
            );
        }
        if self.ready == want && self.placed == want {
            ("Running", None)
        } else {
            ("Progressing", None)
        }
    }
}

/// The status of every desired deployment.
pub fn status(state: &State) -> BTreeMap<String, DeploymentStatus> {
    state
        .deployments
        .values()
        .map(|d| {
            let mine: Vec<&Placement> = state
                .placements
                .values()
                .filter(|p| p.workload == d.name)
                .collect();
            let failed = state
                .hosts
                .values()
                .filter(|h| h.status == HostStatus::Ready)
                .find_map(|h| {
                    state
                        .reports
                        .get(&h.name)
                        .and_then(|r| r.failures.get(&d.name))
                        .filter(|f| f.version == d.version)
                        .map(|f| (h.name.clone(), f.error.clone()))
                });
            let serving = mine
                .iter()
                .filter(|p| {
                    state
                        .reports
                        .get(&p.host)
                        .and_then(|r| r.running.get(&d.name))
                        .is_some_and(|r| r.ready)
                })
                .count();
            (
                d.name.clone(),
                DeploymentStatus {
                    desired: d.replicas,
                    eligible: state.hosts.values().filter(|h| eligible(h, d)).count(),
                    placed: mine.len(),
                    ready: mine
                        .iter()
                        .filter(|p| {
                            p.version == d.version && state.is_ready(&d.name, &p.host, &d.version)
                        })
                        .count(),
                    serving,
                    version: d.version.clone(),
                    failed,
                },
            )
        })
        .collect()
}
