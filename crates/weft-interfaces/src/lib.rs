//! Weft's host interfaces, the middle layer of the runtime (`docs/architecture.md`): one
//! module per interface a guest may import, each written against a small view trait instead of
//! a store type. This crate does not know the store: `weft-runtime`'s `state.rs` defines it and
//! implements every view.
//!
//! | module | what | the store gives it through |
//! |---|---|---|
//! | [`wasi`] | the grants (env, dirs, network, memory, time); WASI 0.2/0.3 and wasi:http linking | wasmtime-wasi's `WasiView`, wasmtime-wasi-http's `WasiHttpView`, [`NetView`] |
//! | [`stdio`] | guest stdout/stderr, prefixed or into the workload's log buffer | (a `WasiCtxBuilder`) |
//! | [`outbound`] | outgoing HTTP behind the allow-list (WASI 0.2 hooks) | `WasiHttpView` |
//! | [`p3client`] | outgoing HTTP for WASI 0.3 guests, the same allow-list | [`p3client::HasOutgoing`] |
//! | [`net`] | `wasi:sockets` under the socket rules | [`NetView`] |
//! | [`plugins`] | `wasi:config`, `wasi:logging`, `wasi:keyvalue`, messaging | [`PluginView`] |
//! | [`link_slots`] | calls between a workload's components linked at run time | [`LinkView`] |
//!
//! Adding an interface: `docs/extending.md`.

pub mod link_slots;
pub mod net;
pub mod outbound;
pub mod p3client;
pub mod plugins;
pub mod stdio;
pub mod wasi;

pub use link_slots::LinkView;
pub use net::NetView;
pub use plugins::{PluginCtx, PluginView};
