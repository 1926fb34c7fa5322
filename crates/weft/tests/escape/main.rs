//! The escape-test suite: a real `weft up`, the real `escape` guest
//! (tests/fixtures/guests/escape) written to misbehave, and a well-behaved neighbour
//! (`http-hello`) on the same host. Each attempt asserts the host's verdict; the suite also
//! asserts that the neighbour keeps answering 200 while the attacks run, that the host's
//! resident memory and open file descriptors come back down, and prints the neighbour's
//! latency before and during the attacks.
//!
//! Layout: this directory is one cargo integration-test target (`cargo test -p weft --test
//! escape`): `attacks.rs` (filesystem, environment, sockets, memory, time, body, malformed
//! responses), `growth.rs` (the memory-growth meter), `pacing.rs` (socket-creation pacing), `isolation.rs` (no memory left over between requests), `postgres.rs` (a real PostgreSQL reached
//! through a `localResources.sockets` redirect rule), `host.rs` (the host fixture: manifests,
//! /proc measurements, timing).
// Test code: a failed unwrap is a test failure with a location (docs/lints.md).
#![allow(clippy::unwrap_used)]

#[path = "../common/mod.rs"]
mod common;

mod attacks;
mod growth;
mod host;
mod isolation;
mod pacing;
mod postgres;

/// The tests here start hosts and measure latency: run them one at a time.
pub static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
