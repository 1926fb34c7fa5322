//! The top layer of Weft's runtime (`docs/architecture.md`): the store type that implements
//! every host interface's view (`state`), planning a manifest, composition, run-time linking,
//! service calls, and the runners for commands (`run`), HTTP handlers (`http`), services and
//! message triggers, tied together per workload (`workload`).
//!
//! The layers below are their own crates, so an arrow can only point down: `weft-engine`
//! (engine, cache, loading, limits, logs) and `weft-interfaces` (one module per host
//! interface, generic over view traits). Their modules are re-exported here under their old
//! paths, so `weft_runtime::engine`, `weft_runtime::plugins` and the rest keep working for the
//! crates above (`weft-host`, `weft`).

pub use weft_engine::{cache, engine, limit, load, logs, progress, world};
pub use weft_interfaces::{link_slots, net, outbound, p3client, plugins, stdio, wasi};
pub use weft_policy::allow;

pub mod admission;
pub mod compose;
pub mod http;
pub mod invoke;
pub mod link;
pub mod plan;
pub mod run;
pub mod service;
pub mod state;
pub mod svccall;
pub mod trigger;
pub mod workload;

pub use wasmtime_wasi_http::WasiBody;
