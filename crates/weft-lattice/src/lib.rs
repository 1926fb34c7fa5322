//! weft-lattice: the live part of Weft's lattice (docs/lattice.md), over a real NATS server
//! with JetStream. No wasmtime: the agent drives the local workload host through
//! [`agent::LocalHost`].
//!
//! - [`mod@connect`]: options (auth, TLS), the server version and JetStream checks, the buckets and
//!   the object store of one lattice ([`connect::Lattice`]), and bucket snapshots.
//! - [`images`]: component bytes in the object store, keyed and verified by sha256.
//! - [`ops`]: what the CLI does against a lattice (deploy, delete, list hosts and workloads).
//! - [`agent`]: a member host: heartbeats from their own thread, liveness judged on this
//!   process's monotonic clock, the leader lease, the scheduler loop (leader only) and the
//!   replicas placed on this host.
//! - [`forward`]: forwarded ingress: any host answers for every deployment, forwarding over
//!   NATS request/reply to a host with a ready replica.

#![forbid(unsafe_code)]

pub mod agent;
pub mod connect;
pub mod forward;
pub mod images;
pub mod ops;
pub mod view;

pub use connect::{Lattice, LatticeError, NatsAuth, connect};
