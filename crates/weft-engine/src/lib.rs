//! The bottom layer of Weft's runtime (`docs/architecture.md`): the wasmtime engine and its
//! epoch ticker, the compile cache, loading and classifying Wasm, world helpers, limits (body
//! limits, rate meters, the store limiter), per-workload log buffers and the compile spinner.
//!
//! Nothing here knows a host interface or a store type: `weft-interfaces` and `weft-runtime`
//! build on it, never the other way round.

pub mod cache;
pub mod engine;
pub mod limit;
pub mod load;
pub mod logs;
pub mod progress;
pub mod world;
