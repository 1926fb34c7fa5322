//! The backend trait every `wasi:keyvalue` store implements, and what backends share.
//!
//! A backend holds one workload's buckets: `memory.rs` (a process-wide map per workload),
//! `redb.rs` (a file per workload); the lattice's NATS JetStream KV is next. The glue in
//! `mod.rs` checks every guest-supplied key, value and batch size against the limits before a
//! backend sees it, so a backend only stores and reads. What each method must do is the
//! contract `mod.rs` documents for guests:
//!
//! - `get` of a missing key is `None`; `delete` of a missing key succeeds;
//! - `list` returns keys in byte order, from a [`Start`], at most `limit` of them;
//! - `increment` reads the value as a `u64` in decimal ASCII ([`parse_counter`]), a missing
//!   key as 0, stores the sum back as decimal text ([`add_counter`]), atomically;
//! - `get_many` fails once the values it returns pass `MAX_BATCH_READ_BYTES` ([`ReadBudget`]);
//!   `set_many` and `delete_many` apply all their entries or none;
//! - failures of the storage itself are `KvError::Other` through [`storage`].
//!
//! The trait is object-safe and async ([`async_trait`]): the store is an
//! `Arc<dyn KvBackend>`, and a backend that talks to a server awaits it inside the guest's
//! host call instead of blocking a thread.

use std::fmt;
use std::sync::{Mutex, PoisonError};

use super::MAX_BATCH_READ_BYTES;

/// What `get-many` returns: per key asked, the key and its value, or `None` when missing.
pub type Entries = Vec<Option<(String, Vec<u8>)>>;

/// One workload's key-value storage: all its buckets. Every method is one guest operation on
/// `bucket` (already checked against the limits); see the module docs for the semantics.
#[async_trait::async_trait]
pub trait KvBackend: Send + Sync + 'static {
    /// The kind of backend and where its data lives, for logs (`memory`, `redb PATH`).
    fn describe(&self) -> String;
    async fn get(&self, bucket: &str, key: &str) -> Result<Option<Vec<u8>>, KvError>;
    async fn set(&self, bucket: &str, key: &str, value: Vec<u8>) -> Result<(), KvError>;
    async fn delete(&self, bucket: &str, key: &str) -> Result<(), KvError>;
    async fn exists(&self, bucket: &str, key: &str) -> Result<bool, KvError>;
    /// Up to `limit` keys in byte order from `start`.
    async fn list(&self, bucket: &str, start: &Start, limit: usize)
    -> Result<Vec<String>, KvError>;
    async fn increment(&self, bucket: &str, key: &str, delta: u64) -> Result<u64, KvError>;
    async fn get_many(&self, bucket: &str, keys: Vec<String>) -> Result<Entries, KvError>;
    async fn set_many(&self, bucket: &str, entries: Vec<(String, Vec<u8>)>) -> Result<(), KvError>;
    async fn delete_many(&self, bucket: &str, keys: &[String]) -> Result<(), KvError>;
}

/// What a keyvalue operation can fail with; maps onto the WIT `error` variant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvError {
    NoSuchStore,
    AccessDenied,
    Other(String),
}

impl fmt::Display for KvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KvError::NoSuchStore => f.write_str("no such store"),
            KvError::AccessDenied => f.write_str("access denied"),
            KvError::Other(m) => f.write_str(m),
        }
    }
}

/// A failure of the storage itself (a redb transaction, a NATS request), as `error::other`.
pub fn storage(e: impl fmt::Display) -> KvError {
    KvError::Other(format!("key-value storage error: {e}"))
}

/// At most 64 characters of a guest-supplied key, for messages.
pub(super) fn shown(key: &str) -> String {
    let mut s: String = key.chars().take(64).collect();
    if s.len() < key.len() {
        s.push_str("...");
    }
    s
}

/// Where a listing starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    /// Skip this many keys from the beginning.
    Skip(u64),
    /// Start right after this key.
    After(String),
}

/// Counts the bytes a `get-many` returns and fails once they pass [`MAX_BATCH_READ_BYTES`].
#[derive(Default)]
pub struct ReadBudget(usize);

impl ReadBudget {
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts `n` more bytes; fails once the total passes the budget.
    pub fn take(&mut self, n: usize) -> Result<(), KvError> {
        self.0 = self.0.saturating_add(n);
        if self.0 > MAX_BATCH_READ_BYTES {
            return Err(KvError::Other(format!(
                "get-many would return more than {MAX_BATCH_READ_BYTES} bytes \
                 (MAX_BATCH_READ_BYTES, 16 MiB): ask for fewer keys per call"
            )));
        }
        Ok(())
    }
}

/// The counter in a value: a `u64` as decimal ASCII digits.
pub fn parse_counter(key: &str, value: &[u8]) -> Result<u64, KvError> {
    std::str::from_utf8(value)
        .ok()
        .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|s| s.parse::<u64>().ok())
        .ok_or_else(|| {
            KvError::Other(format!(
                "increment: the value of key {:?} is not a counter (a u64 in decimal ASCII \
                 digits, e.g. \"42\"); it is {} bytes that are not",
                shown(key),
                value.len()
            ))
        })
}

/// `current + delta`, or the overflow error `increment` returns.
pub fn add_counter(key: &str, current: u64, delta: u64) -> Result<u64, KvError> {
    current.checked_add(delta).ok_or_else(|| {
        KvError::Other(format!(
            "increment: {current} + {delta} overflows u64 (key {:?})",
            shown(key)
        ))
    })
}

pub(super) fn to_usize(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
