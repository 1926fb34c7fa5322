//! The lattice state the scheduler reads, and the commands it returns. Plain data: every map is
//! a `BTreeMap`, so the same state built in any order is the same value.

use std::collections::BTreeMap;
use std::fmt;

/// Labels of a host, or a selector over them.
pub type Labels = BTreeMap<String, String>;

/// One desired deployment: what the scheduler needs of a `WorkloadDeployment` (or of a plain
/// `Workload`, which is one replica with no selector).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deployment {
    /// The workload's name (unique in the lattice).
    pub name: String,
    /// The template digest of the manifest ([`crate::version_of`]): a change is a rollout.
    pub version: String,
    /// How many replicas to run (at most one per host).
    pub replicas: u32,
    /// Only hosts having all these labels.
    pub selector: Labels,
    /// Spread replicas over the values of this host label; hosts without it are not eligible.
    pub spread_by: Option<String>,
}

/// Whether a host is a member in good standing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HostStatus {
    /// Heartbeating (as far as the lattice knows).
    Ready,
    /// Marked lost by the leader (fenced): its placements are to be removed.
    Lost,
}

impl HostStatus {
    /// `ready` or `lost`.
    pub fn as_str(self) -> &'static str {
        match self {
            HostStatus::Ready => "ready",
            HostStatus::Lost => "lost",
        }
    }
}

/// A member host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// The host's name (unique in the lattice).
    pub name: String,
    /// Its labels (`--label k=v`).
    pub labels: Labels,
    /// Ready or lost.
    pub status: HostStatus,
}

/// A replica assigned to a host: the placement `NAME.HOST`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// The deployment's name.
    pub workload: String,
    /// The host it is placed on.
    pub host: String,
    /// The version the host is to run.
    pub version: String,
}

/// What a host reports running for one workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Running {
    /// The version it runs (during an in-place update: the old one, until the new one is ready).
    pub version: String,
    /// Deployed and answering.
    pub ready: bool,
}

/// A version that failed to deploy on a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The version that failed.
    pub version: String,
    /// Why (the deploy error, as the host saw it).
    pub error: String,
}

/// A host's report: what it runs and what failed there.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Report {
    /// Workload name -> what runs.
    pub running: BTreeMap<String, Running>,
    /// Workload name -> the version that failed (kept while that version is desired).
    pub failures: BTreeMap<String, Failure>,
}

/// Everything the scheduler decides from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct State {
    /// Desired deployments by name.
    pub deployments: BTreeMap<String, Deployment>,
    /// Member hosts by name.
    pub hosts: BTreeMap<String, Host>,
    /// Placements by `(workload, host)`.
    pub placements: BTreeMap<(String, String), Placement>,
    /// Host reports by host name.
    pub reports: BTreeMap<String, Report>,
}

impl State {
    /// Builds a state from lists in any order (later duplicates win).
    pub fn from_parts(
        deployments: impl IntoIterator<Item = Deployment>,
        hosts: impl IntoIterator<Item = Host>,
        placements: impl IntoIterator<Item = Placement>,
        reports: impl IntoIterator<Item = (String, Report)>,
    ) -> State {
        State {
            deployments: deployments
                .into_iter()
                .map(|d| (d.name.clone(), d))
                .collect(),
            hosts: hosts.into_iter().map(|h| (h.name.clone(), h)).collect(),
            placements: placements
                .into_iter()
                .map(|p| ((p.workload.clone(), p.host.clone()), p))
                .collect(),
            reports: reports.into_iter().collect(),
        }
    }

    /// Applies commands as the leader's writes would (placements only).
    pub fn apply(&mut self, commands: &[Command]) {
        for c in commands {
            match c {
                Command::Place {
                    workload,
                    host,
                    version,
                }
                | Command::Update {
                    workload,
                    host,
                    to: version,
                    ..
                } => {
                    self.placements.insert(
                        (workload.clone(), host.clone()),
                        Placement {
                            workload: workload.clone(),
                            host: host.clone(),
                            version: version.clone(),
                        },
                    );
                }
                Command::Remove { workload, host, .. } => {
                    self.placements.remove(&(workload.clone(), host.clone()));
                }
            }
        }
    }

    /// Whether host `host` reports workload `workload` running `version` and ready.
    pub fn is_ready(&self, workload: &str, host: &str, version: &str) -> bool {
        self.reports
            .get(host)
            .and_then(|r| r.running.get(workload))
            .is_some_and(|r| r.ready && r.version == version)
    }

    /// Whether host `host` reports `version` of `workload` failed.
    pub fn has_failed(&self, workload: &str, host: &str, version: &str) -> bool {
        self.reports
            .get(host)
            .and_then(|r| r.failures.get(workload))
            .is_some_and(|f| f.version == version)
    }
}

/// Why a placement is removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RemoveReason {
    /// The deployment was deleted.
    Deleted,
    /// The host was marked lost (its replica is replaced elsewhere).
    HostLost,
    /// The host no longer matches the selector or lacks the spread label.
    NotEligible,
    /// Fewer replicas are wanted, or the spread moved one.
    ScaleDown,
    /// Replaced by a ready replica of the new version (rolling update).
    Replaced,
    /// The version failed on this host.
    Failed,
}

impl RemoveReason {
    /// A short word for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            RemoveReason::Deleted => "deleted",
            RemoveReason::HostLost => "host-lost",
            RemoveReason::NotEligible => "not-eligible",
            RemoveReason::ScaleDown => "scale-down",
            RemoveReason::Replaced => "replaced",
            RemoveReason::Failed => "failed",
        }
    }
}

/// A decision: the leader turns each into one compare-and-set write of a placement.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Command {
    /// Create the placement `workload.host` at `version`.
    Place {
        workload: String,
        host: String,
        version: String,
    },
    /// Change the version of an existing placement in place (the host swaps atomically).
    Update {
        workload: String,
        host: String,
        from: String,
        to: String,
    },
    /// Delete the placement `workload.host`.
    Remove {
        workload: String,
        host: String,
        reason: RemoveReason,
    },
}

impl Command {
    /// The workload the command is about.
    pub fn workload(&self) -> &str {
        match self {
            Command::Place { workload, .. }
            | Command::Update { workload, .. }
            | Command::Remove { workload, .. } => workload,
        }
    }

    /// The host the command is about.
    pub fn host(&self) -> &str {
        match self {
            Command::Place { host, .. }
            | Command::Update { host, .. }
            | Command::Remove { host, .. } => host,
        }
    }

    /// `place`, `update` or `remove` (for logs and metrics).
    pub fn kind(&self) -> &'static str {
        match self {
            Command::Place { .. } => "place",
            Command::Update { .. } => "update",
            Command::Remove { .. } => "remove",
        }
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::Place {
                workload,
                host,
                version,
            } => write!(f, "place {workload}@{version} on {host}"),
            Command::Update {
                workload,
                host,
                from,
                to,
            } => write!(f, "update {workload} on {host}: {from} -> {to}"),
            Command::Remove {
                workload,
                host,
                reason,
            } => write!(f, "remove {workload} from {host} ({})", reason.as_str()),
        }
    }
}
