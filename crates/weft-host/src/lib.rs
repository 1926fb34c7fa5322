//! The process that serves workloads: the HTTP front (`server`), the workload host behind
//! `weft up` (`host`, `ingress`, `router`), its admin API (`admin`, `token`), the dashboard
//! (`ui`), the Prometheus exporter (`metrics`), OTLP traces (`trace`) and desired state (`store`).

pub mod admin;
pub mod front;
pub mod gather;
pub mod host;
pub mod ingress;
pub mod metrics;
pub use weft_policy::router;
pub mod server;
pub mod store;
pub mod token;
pub mod trace;
pub mod ui;
