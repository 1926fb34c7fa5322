//! Weft's engine: wasmtime configuration, the compile cache, loading and classifying Wasm,
//! and the runners for commands (`run`) and HTTP handlers (`http`).
//!
//! This crate quarantines the wasmtime 48 API: the host and the binary talk to the types here.

pub use weft_policy::allow;
pub mod admission;
pub mod cache;
pub mod compose;
pub mod engine;
pub mod http;
pub mod invoke;
pub mod limit;
pub mod link;
pub mod link_slots;
pub mod load;
pub mod logs;
pub mod net;
pub mod outbound;
pub mod p3client;
pub mod plan;
pub mod plugins;
pub mod progress;
pub mod run;
pub mod service;
pub mod state;
pub mod stdio;
pub mod svccall;
pub mod wasi;
pub mod workload;
pub mod world;

pub use wasmtime_wasi_http::WasiBody;
