//! The scheduler's reconcile step (`weft_scheduler::reconcile`) on arbitrary lattice states:
//! hosts with labels, ready or lost; deployments with replicas, selectors and spread keys;
//! placements (also of deleted workloads, on lost or unknown hosts, at any version); host
//! reports of running versions and failures.
//!
//! Invariants: no panic; the same state gives the same commands; every `Place` is on a ready
//! host matching the selector and carrying the spread label, at the desired version, where no
//! placement exists yet, at most one per (workload, host); every `Update` and `Remove` names an
//! existing placement; applying the commands and reconciling again (hosts reporting every
//! placement ready) reaches a fixed point within a bounded number of rounds, where no workload
//! has more placements than desired.
#![no_main]

use std::collections::{BTreeMap, BTreeSet};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use weft_scheduler::{
    Command, Deployment, Failure, Host, HostStatus, Labels, Placement, Report, Running, State,
    reconcile,
};

const VERSIONS: [&str; 3] = ["000000000001", "000000000002", "000000000003"];
const VALUES: [&str; 3] = ["a", "b", "c"];

#[derive(Debug, Arbitrary)]
struct Input {
    hosts: Vec<(u8, u8, bool)>,
    deployments: Vec<(u8, u8, u8, bool)>,
    placements: Vec<(u8, u8, u8)>,
    reports: Vec<(u8, u8, u8, u8)>,
}

fn host_name(i: u8) -> String {
    format!("h{}", i % 8)
}

fn workload_name(i: u8) -> String {
    format!("w{}", i % 6)
}

fn build(input: &Input) -> State {
    let hosts = input.hosts.iter().take(8).map(|&(i, labels, ready)| {
        let mut l = Labels::new();
        if labels & 1 == 1 {
            l.insert("zone".into(), VALUES[usize::from(labels >> 1) % 3].into());
        }
        if labels & 8 == 8 {
            l.insert("tier".into(), VALUES[usize::from(labels >> 4) % 3].into());
        }
        Host {
            name: host_name(i),
            labels: l,
            status: if ready {
                HostStatus::Ready
            } else {
                HostStatus::Lost
            },
        }
    });
    let deployments = input
        .deployments
        .iter()
        .take(6)
        .map(|&(i, replicas, sel, spread)| Deployment {
            name: workload_name(i),
            version: VERSIONS[usize::from(sel >> 4) % 3].into(),
            replicas: u32::from(replicas % 10),
            selector: if sel & 1 == 1 {
                [(
                    "tier".to_string(),
                    VALUES[usize::from(sel >> 1) % 3].to_string(),
                )]
                .into()
            } else {
                Labels::new()
            },
            spread_by: spread.then(|| "zone".to_string()),
        });
    let placements = input
        .placements
        .iter()
        .take(24)
        .map(|&(w, h, v)| Placement {
            workload: workload_name(w),
            host: host_name(h),
            version: VERSIONS[usize::from(v) % 3].into(),
        });
    let mut reports: BTreeMap<String, Report> = BTreeMap::new();
    for &(h, w, v, kind) in input.reports.iter().take(24) {
        let r = reports.entry(host_name(h)).or_default();
        let version = VERSIONS[usize::from(v) % 3].to_string();
        if kind % 3 == 0 {
            r.failures.insert(
                workload_name(w),
                Failure {
                    version,
                    error: "e".into(),
                },
            );
        } else {
            r.running.insert(
                workload_name(w),
                Running {
                    version,
                    ready: kind % 3 == 1,
                },
            );
        }
    }
    State::from_parts(deployments, hosts, placements, reports)
}

fn eligible(h: &Host, d: &Deployment) -> bool {
    h.status == HostStatus::Ready
        && d.selector.iter().all(|(k, v)| h.labels.get(k) == Some(v))
        && d.spread_by
            .as_ref()
            .is_none_or(|k| h.labels.contains_key(k))
}

fn check_commands(state: &State, commands: &[Command]) {
    let mut touched = BTreeSet::new();
    for c in commands {
        let key = (c.workload().to_string(), c.host().to_string());
        assert!(
            touched.insert(key.clone()),
            "two commands for {key:?}: {commands:?}"
        );
        match c {
            Command::Place {
                workload,
                host,
                version,
            } => {
                let d = &state.deployments[workload];
                assert!(eligible(&state.hosts[host], d), "{c}");
                assert_eq!(version, &d.version);
                assert!(!state.placements.contains_key(&key), "{c}: exists");
            }
            Command::Update { from, .. } => {
                assert_eq!(&state.placements[&key].version, from, "{c}");
            }
            Command::Remove { .. } => assert!(state.placements.contains_key(&key), "{c}"),
        }
    }
}

/// Hosts act: every placement on a ready host runs its version, ready, unless that version is
/// reported failed there. Returns whether any report changed.
fn hosts_act(state: &mut State) -> bool {
    let mut changed = false;
    let placed: Vec<Placement> = state.placements.values().cloned().collect();
    for p in placed {
        if state
            .hosts
            .get(&p.host)
            .is_none_or(|h| h.status == HostStatus::Lost)
        {
            continue;
        }
        let report = state.reports.entry(p.host.clone()).or_default();
        if report
            .failures
            .get(&p.workload)
            .is_some_and(|f| f.version == p.version)
        {
            continue;
        }
        let now = Running {
            version: p.version.clone(),
            ready: true,
        };
        if report.running.get(&p.workload) != Some(&now) {
            report.running.insert(p.workload.clone(), now);
            changed = true;
        }
    }
    changed
}

fuzz_target!(|input: Input| {
    let mut state = build(&input);
    let first = reconcile(&state);
    assert_eq!(first, reconcile(&state), "deterministic");
    for _ in 0..100 {
        let commands = reconcile(&state);
        check_commands(&state, &commands);
        state.apply(&commands);
        // No commands may still mean "waiting for hosts" (a placement not yet reported ready):
        // the state is a fixed point only when the hosts have nothing left to report either.
        let changed = hosts_act(&mut state);
        if commands.is_empty() && !changed {
            for d in state.deployments.values() {
                let n = state
                    .placements
                    .values()
                    .filter(|p| p.workload == d.name)
                    .count();
                assert!(n <= d.replicas as usize, "{}: {n} > {}", d.name, d.replicas);
            }
            return;
        }
    }
    panic!("no fixed point in 100 rounds: {:?}", reconcile(&state));
});
