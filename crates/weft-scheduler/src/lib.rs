//! weft-scheduler: the pure core of Weft's lattice (docs/lattice.md).
//!
//! - [`model`]: the state the scheduler reads (deployments, hosts, placements, host reports)
//!   and the [`Command`]s it returns.
//! - [`reconcile()`]: desired deployments + live hosts + placements -> commands. No I/O,
//!   deterministic, property-tested (`tests/properties.rs`).
//! - [`liveness`]: judging hosts and the leader lease on the observer's own monotonic clock,
//!   and whether a host may serve its replicas locally (fencing).
//! - [`records`]: the JSON values stored in JetStream KV and their decoders, which never panic
//!   (fuzzed).
//!
//! ```
//! use weft_scheduler::{Command, Deployment, Host, HostStatus, State, reconcile};
//! let host = |name: &str, zone: &str| Host {
//!     name: name.into(),
//!     labels: [("zone".to_string(), zone.to_string())].into(),
//!     status: HostStatus::Ready,
//! };
//! let web = Deployment {
//!     name: "web".into(),
//!     version: "0123456789ab".into(),
//!     replicas: 2,
//!     selector: Default::default(),
//!     spread_by: Some("zone".into()),
//! };
//! let state = State::from_parts([web], [host("a1", "a"), host("a2", "a"), host("b1", "b")], [], []);
//! let commands = reconcile(&state);
//! // One replica per zone.
//! assert_eq!(commands.len(), 2);
//! assert!(commands.iter().all(|c| matches!(c, Command::Place { .. })));
//! assert!(commands.iter().any(|c| c.host() == "b1"));
//! ```

#![forbid(unsafe_code)]

pub mod liveness;
pub mod model;
mod reconcile;
pub mod records;
pub mod wire;

pub use model::{
    Command, Deployment, Failure, Host, HostStatus, Labels, Placement, RemoveReason, Report,
    Running, State,
};
pub use reconcile::{DeploymentStatus, eligible, reconcile, status, targets};
pub use records::{DecodeError, version_of};
