//! Properties of `reconcile` (docs/lattice.md, "The scheduler"), over random fleets, labels,
//! selectors, spreads, starting placements and host timings. A small simulator applies the
//! commands (as the leader's KV writes would) and lets hosts act on their placements (as the
//! host agents would), in random order, until nothing changes.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use weft_scheduler::{
    Command, Deployment, Failure, Host, HostStatus, Labels, Placement, Running, State, reconcile,
    status,
};

const V1: &str = "000000000001";
const V2: &str = "000000000002";
const BAD: &str = "00000000dead";
const MAX_ROUNDS: usize = 400;

/// A tiny deterministic PRNG for host timings (which hosts act in a round).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn coin(&mut self) -> bool {
        self.next().is_multiple_of(2)
    }
}

/// One host agent acting on its placements. Good versions deploy and become ready in one act
/// (an in-place update swaps atomically: the old version serves until then); bad versions fail
/// and leave what ran. Returns whether anything changed.
fn host_act(state: &mut State, host: &str, bad: &BTreeSet<String>) -> bool {
    if state
        .hosts
        .get(host)
        .is_none_or(|h| h.status == HostStatus::Lost)
    {
        return false;
    }
    let mut report = state.reports.get(host).cloned().unwrap_or_default();
    let before = report.clone();
    let placed: BTreeMap<String, String> = state
        .placements
        .values()
        .filter(|p| p.host == host)
        .map(|p| (p.workload.clone(), p.version.clone()))
        .collect();
    report.running.retain(|w, _| placed.contains_key(w));
    // Failures are kept while that version is desired.
    report.failures.retain(|w, f| {
        state
            .deployments
            .get(w)
            .is_some_and(|d| d.version == f.version)
    });
    for (w, v) in &placed {
        if report.running.get(w).is_some_and(|r| &r.version == v) {
            continue;
        }
        if report.failures.get(w).is_some_and(|f| &f.version == v) {
            continue;
        }
        if bad.contains(v) {
            report.failures.insert(
                w.clone(),
                Failure {
                    version: v.clone(),
                    error: "trap".into(),
                },
            );
        } else {
            report.running.insert(
                w.clone(),
                Running {
                    version: v.clone(),
                    ready: true,
                },
            );
        }
    }
    let changed = report != before;
    state.reports.insert(host.to_string(), report);
    changed
}

/// Replicas of `d` that serve: placed on a ready host that reports some version ready.
fn serving(state: &State, d: &str) -> usize {
    state
        .placements
        .values()
        .filter(|p| p.workload == d)
        .filter(|p| {
            state
                .hosts
                .get(&p.host)
                .is_some_and(|h| h.status == HostStatus::Ready)
        })
        .filter(|p| {
            state
                .reports
                .get(&p.host)
                .and_then(|r| r.running.get(d))
                .is_some_and(|r| r.ready)
        })
        .count()
}

/// The test's own statement of eligibility (independent of the crate's `eligible`).
fn may_run(h: &Host, d: &Deployment) -> bool {
    let selected = d.selector.iter().all(|(k, v)| h.labels.get(k) == Some(v));
    let spreadable = match &d.spread_by {
        Some(k) => h.labels.contains_key(k),
        None => true,
    };
    h.status == HostStatus::Ready && selected && spreadable
}

fn want(state: &State, d: &Deployment) -> usize {
    (d.replicas as usize).min(state.hosts.values().filter(|h| may_run(h, d)).count())
}

/// Runs rounds until `reconcile` returns nothing and no host has work; checks `each` after
/// every round. Returns the rounds taken, or panics if it does not converge.
fn converge(
    state: &mut State,
    bad: &BTreeSet<String>,
    rng: &mut Rng,
    mut each: impl FnMut(&State, &[Command]),
) -> usize {
    let hosts: Vec<String> = state.hosts.keys().cloned().collect();
    for round in 0..MAX_ROUNDS {
        let commands = reconcile(state);
        // Every new placement goes to an eligible host, at the desired version.
        for c in &commands {
            if let Command::Place {
                workload,
                host,
                version,
            } = c
            {
                let d = &state.deployments[workload];
                assert!(may_run(&state.hosts[host], d), "{c} on an ineligible host");
                assert_eq!(version, &d.version, "{c}");
                assert!(
                    !state
                        .placements
                        .contains_key(&(workload.clone(), host.clone())),
                    "{c}: already placed"
                );
            }
        }
        state.apply(&commands);
        let mut acted = false;
        for h in &hosts {
            // Hosts act at random times, but all of them act when the leader is quiet.
            if commands.is_empty() || rng.coin() {
                acted |= host_act(state, h, bad);
            }
        }
        each(state, &commands);
        if commands.is_empty() && !acted {
            return round;
        }
    }
    panic!(
        "no convergence in {MAX_ROUNDS} rounds; last commands: {:?}",
        reconcile(state)
    );
}

/// The properties of a converged state.
fn check_converged(state: &State) {
    assert!(
        reconcile(state).is_empty(),
        "stable: no commands once converged"
    );
    let st = status(state);
    for d in state.deployments.values() {
        let mine: Vec<&Placement> = state
            .placements
            .values()
            .filter(|p| p.workload == d.name)
            .collect();
        assert!(
            mine.len() <= d.replicas as usize,
            "{}: {} placements, {} desired",
            d.name,
            mine.len(),
            d.replicas
        );
        for p in &mine {
            let h = &state.hosts[&p.host];
            assert!(may_run(h, d), "{} on ineligible host {}", d.name, h.name);
        }
        let halted = st[&d.name].failed.is_some();
        if !halted {
            assert_eq!(mine.len(), want(state, d), "{}: count", d.name);
            for p in &mine {
                assert_eq!(p.version, d.version, "{}: outdated once converged", d.name);
                assert!(state.is_ready(&d.name, &p.host, &d.version));
            }
        }
        // Spread: counts per group differ by at most one, unless the smaller group is full.
        if !halted {
            let mut cap: BTreeMap<String, usize> = BTreeMap::new();
            let mut cnt: BTreeMap<String, usize> = BTreeMap::new();
            for h in state.hosts.values().filter(|h| may_run(h, d)) {
                let g = d
                    .spread_by
                    .as_ref()
                    .and_then(|k| h.labels.get(k))
                    .cloned()
                    .unwrap_or_default();
                *cap.entry(g.clone()).or_default() += 1;
                cnt.entry(g).or_default();
            }
            for p in &mine {
                let h = &state.hosts[&p.host];
                let g = d
                    .spread_by
                    .as_ref()
                    .and_then(|k| h.labels.get(k))
                    .cloned()
                    .unwrap_or_default();
                *cnt.entry(g).or_default() += 1;
            }
            for (a, ca) in &cnt {
                for (b, cb) in &cnt {
                    assert!(
                        *ca <= cb + 1 || *cb == cap[b],
                        "{}: spread uneven: {a}={ca}, {b}={cb} (cap {})",
                        d.name,
                        cap[b]
                    );
                }
            }
        }
    }
    for p in state.placements.values() {
        assert!(
            state.deployments.contains_key(&p.workload),
            "placement of deleted {}",
            p.workload
        );
        assert_eq!(state.hosts[&p.host].status, HostStatus::Ready);
    }
}

fn arb_labels() -> impl Strategy<Value = Labels> {
    (
        proptest::option::weighted(0.85, prop_oneof![Just("a"), Just("b"), Just("c")]),
        prop_oneof![Just("web"), Just("db")],
    )
        .prop_map(|(zone, tier)| {
            let mut l = Labels::new();
            if let Some(z) = zone {
                l.insert("zone".into(), z.into());
            }
            l.insert("tier".into(), tier.into());
            l
        })
}

fn arb_hosts() -> impl Strategy<Value = Vec<Host>> {
    proptest::collection::vec((arb_labels(), proptest::bool::weighted(0.85)), 1..7).prop_map(
        |hosts| {
            hosts
                .into_iter()
                .enumerate()
                .map(|(i, (labels, ready))| Host {
                    name: format!("h{i}"),
                    labels,
                    status: if ready {
                        HostStatus::Ready
                    } else {
                        HostStatus::Lost
                    },
                })
                .collect()
        },
    )
}

fn arb_deployments() -> impl Strategy<Value = Vec<Deployment>> {
    proptest::collection::vec(
        (
            0u32..6,
            proptest::option::weighted(0.3, prop_oneof![Just("web"), Just("db")]),
            proptest::bool::ANY,
        ),
        1..5,
    )
    .prop_map(|ds| {
        ds.into_iter()
            .enumerate()
            .map(|(i, (replicas, tier, spread))| Deployment {
                name: format!("d{i}"),
                version: V1.into(),
                replicas,
                selector: tier
                    .map(|t| [("tier".to_string(), t.to_string())].into())
                    .unwrap_or_default(),
                spread_by: spread.then(|| "zone".to_string()),
            })
            .collect()
    })
}

/// Arbitrary starting placements: some of deleted workloads, some outdated, some on lost or
/// ineligible hosts, some with reports.
fn arb_start() -> impl Strategy<Value = Vec<(usize, usize, bool, bool)>> {
    proptest::collection::vec(
        (
            0usize..6,
            0usize..7,
            proptest::bool::ANY,
            proptest::bool::ANY,
        ),
        0..12,
    )
}

fn build(
    hosts: Vec<Host>,
    deployments: Vec<Deployment>,
    start: &[(usize, usize, bool, bool)],
) -> State {
    let mut state = State::from_parts(deployments.clone(), hosts.clone(), [], []);
    for &(d, h, old, reported) in start {
        let workload = deployments
            .get(d)
            .map(|d| d.name.clone())
            .unwrap_or_else(|| "ghost".into());
        let Some(host) = hosts.get(h % hosts.len()) else {
            continue;
        };
        let version = if old { V2 } else { V1 }.to_string();
        state.placements.insert(
            (workload.clone(), host.name.clone()),
            Placement {
                workload: workload.clone(),
                host: host.name.clone(),
                version: version.clone(),
            },
        );
        if reported {
            state
                .reports
                .entry(host.name.clone())
                .or_default()
                .running
                .insert(
                    workload,
                    Running {
                        version,
                        ready: true,
                    },
                );
        }
    }
    state
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    /// From any start: converges; then never more than desired, only eligible hosts, at most
    /// one per host, counts even over hosts and spread values, stable.
    #[test]
    fn converges_to_a_valid_placement(
        hosts in arb_hosts(),
        deployments in arb_deployments(),
        start in arb_start(),
        seed in 1u64..,
    ) {
        let mut state = build(hosts, deployments, &start);
        let mut rng = Rng(seed);
        converge(&mut state, &BTreeSet::new(), &mut rng, |_, _| {});
        check_converged(&state);
    }

    /// The same state, however it was assembled, gives the same commands.
    #[test]
    fn deterministic(
        hosts in arb_hosts(),
        deployments in arb_deployments(),
        start in arb_start(),
    ) {
        let state = build(hosts.clone(), deployments.clone(), &start);
        let mut rev_hosts = hosts;
        rev_hosts.reverse();
        let mut rev_deployments = deployments;
        rev_deployments.reverse();
        let again = State::from_parts(
            rev_deployments,
            rev_hosts,
            state.placements.values().rev().cloned().collect::<Vec<_>>(),
            state.reports.clone().into_iter().rev().collect::<Vec<_>>(),
        );
        prop_assert_eq!(&again, &state);
        prop_assert_eq!(reconcile(&state), reconcile(&again));
        prop_assert_eq!(reconcile(&state), reconcile(&state));
    }

    /// Hosts lost after convergence: their replicas move, the result is valid again, and the
    /// hosts that stayed keep their replicas (no needless moves) unless the spread needs one.
    #[test]
    fn host_loss_moves_only_what_was_lost(
        hosts in arb_hosts(),
        deployments in arb_deployments(),
        lose in proptest::collection::vec(0usize..7, 1..3),
        seed in 1u64..,
    ) {
        let hosts: Vec<Host> = hosts
            .into_iter()
            .map(|mut h| { h.status = HostStatus::Ready; h })
            .collect();
        let mut state = build(hosts, deployments.clone(), &[]);
        let mut rng = Rng(seed);
        converge(&mut state, &BTreeSet::new(), &mut rng, |_, _| {});
        let before = state.placements.clone();
        let names: Vec<String> = state.hosts.keys().cloned().collect();
        for i in lose {
            let name = &names[i % names.len()];
            if let Some(h) = state.hosts.get_mut(name) {
                h.status = HostStatus::Lost;
            }
        }
        converge(&mut state, &BTreeSet::new(), &mut rng, |_, _| {});
        check_converged(&state);
        // Without a spread rule, a replica on a surviving host never moves.
        for ((w, h), _) in before.iter() {
            let d = &state.deployments[w];
            if d.spread_by.is_none() && state.hosts[h].status == HostStatus::Ready {
                prop_assert!(state.placements.contains_key(&(w.clone(), h.clone())), "{w} moved off surviving {h}");
            }
        }
    }

    /// A rolling update: never more than `want + 1` placements, never fewer than `want`
    /// serving; a good version ends everywhere, a bad one halts with the old version serving.
    #[test]
    fn rolling_update_surge_one_unavailable_zero(
        hosts in arb_hosts(),
        replicas in 1u32..6,
        spread in proptest::bool::ANY,
        good in proptest::bool::ANY,
        seed in 1u64..,
    ) {
        let hosts: Vec<Host> = hosts
            .into_iter()
            .map(|mut h| { h.status = HostStatus::Ready; h })
            .collect();
        let d = Deployment {
            name: "web".into(),
            version: V1.into(),
            replicas,
            selector: Labels::new(),
            spread_by: spread.then(|| "zone".into()),
        };
        let mut state = build(hosts, vec![d], &[]);
        let mut rng = Rng(seed);
        let bad: BTreeSet<String> = [BAD.to_string()].into();
        converge(&mut state, &bad, &mut rng, |_, _| {});
        check_converged(&state);
        let w = want(&state, &state.deployments["web"]);
        prop_assert_eq!(serving(&state, "web"), w);

        let next = if good { V2 } else { BAD };
        if let Some(d) = state.deployments.get_mut("web") {
            d.version = next.into();
        }
        converge(&mut state, &bad, &mut rng, |s, _| {
            let placed = s.placements.values().filter(|p| p.workload == "web").count();
            assert!(placed <= w + 1, "surge: {placed} placements, want {w}");
            assert!(serving(s, "web") >= w, "unavailable: {} serving, want {w}", serving(s, "web"));
        });
        check_converged(&state);
        let st = &status(&state)["web"];
        if good {
            prop_assert!(st.failed.is_none());
            prop_assert_eq!(st.ready, w);
        } else if w > 0 {
            prop_assert!(st.failed.is_some(), "a failing version is reported");
            for p in state.placements.values() {
                prop_assert_eq!(&p.version, V1, "old replicas keep serving");
            }
            prop_assert_eq!(serving(&state, "web"), w);
        }
    }
}

#[test]
fn a_deleted_deployment_is_removed_everywhere() {
    let hosts = vec![
        Host {
            name: "h0".into(),
            labels: Labels::new(),
            status: HostStatus::Ready,
        },
        Host {
            name: "h1".into(),
            labels: Labels::new(),
            status: HostStatus::Ready,
        },
    ];
    let d = Deployment {
        name: "web".into(),
        version: V1.into(),
        replicas: 2,
        selector: Labels::new(),
        spread_by: None,
    };
    let mut state = build(hosts, vec![d], &[]);
    converge(&mut state, &BTreeSet::new(), &mut Rng(7), |_, _| {});
    assert_eq!(state.placements.len(), 2);
    state.deployments.clear();
    let commands = reconcile(&state);
    assert_eq!(commands.len(), 2);
    assert!(commands.iter().all(|c| matches!(c, Command::Remove { .. })));
    state.apply(&commands);
    assert!(state.placements.is_empty());
}

#[test]
fn more_replicas_than_hosts_is_unschedulable_not_stacked() {
    let hosts = vec![Host {
        name: "h0".into(),
        labels: Labels::new(),
        status: HostStatus::Ready,
    }];
    let d = Deployment {
        name: "web".into(),
        version: V1.into(),
        replicas: 3,
        selector: Labels::new(),
        spread_by: None,
    };
    let mut state = build(hosts, vec![d], &[]);
    converge(&mut state, &BTreeSet::new(), &mut Rng(3), |_, _| {});
    assert_eq!(state.placements.len(), 1);
    let (label, reason) = status(&state)["web"].summary();
    assert_eq!(label, "Unschedulable");
    assert!(
        reason
            .unwrap_or_default()
            .contains("3 replicas wanted, 1 eligible")
    );
}

/// Found by the `lattice_reconcile` fuzz target: scaling to zero a placement whose desired
/// version failed on its host while an older version still runs there gave two commands for
/// one placement (a rollback `Update`, then a `Remove`). The removal wins, alone.
#[test]
fn scale_to_zero_of_a_failed_placement_is_one_remove() {
    let v3 = "000000000003";
    let mut report = weft_scheduler::Report::default();
    report.running.insert(
        "w3".into(),
        Running {
            version: v3.into(),
            ready: true,
        },
    );
    report.failures.insert(
        "w3".into(),
        Failure {
            version: V1.into(),
            error: "e".into(),
        },
    );
    let state = State::from_parts(
        [Deployment {
            name: "w3".into(),
            version: V1.into(),
            replicas: 0,
            selector: Labels::new(),
            spread_by: None,
        }],
        [Host {
            name: "h7".into(),
            labels: Labels::new(),
            status: HostStatus::Ready,
        }],
        [Placement {
            workload: "w3".into(),
            host: "h7".into(),
            version: V1.into(),
        }],
        [("h7".to_string(), report)],
    );
    let commands = reconcile(&state);
    assert_eq!(commands.len(), 1, "{commands:?}");
    assert!(
        matches!(&commands[0], Command::Remove { workload, host, .. } if workload == "w3" && host == "h7"),
        "{commands:?}"
    );
}
