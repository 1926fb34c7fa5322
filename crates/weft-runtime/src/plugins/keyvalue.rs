//! `wasi:keyvalue@0.2.0-draft` (`store`, `atomics`, `batch`: what Spin and wasmCloud guests
//! import) with two backends, picked by the grant's `config.backend`:
//!
//! - `memory` (the default): one process-wide map per workload (`<namespace>.<name>`), shared by
//!   every instance and by every bound version of the workload; it lives while a version is
//!   bound and is lost when the host stops.
//! - `redb`: one file per workload, `<data_dir>/keyvalue/<namespace>.<name>.redb`, one redb table
//!   per bucket. Opened once at bind and shared by every instance; kept across host restarts. A
//!   process-wide registry (weak references, by path) hands a redeploy the database an older
//!   version still has open, because redb allows one open per file per process.
//!
//! Linking: the granted interfaces, plus `store` whenever `atomics` or `batch` is granted (their
//! functions take `store`'s `bucket`). Every component of the workload gets the same state.
//! After `unbind`, running instances keep their handle (the store closes with the last one);
//! new instances get no state and `open` answers `error::access-denied`.
//!
//! Buckets: a workload owns one bucket, `config.bucket` (default: `metadata.name`).
//! `store.open` accepts `""`, `"default"` or that name, all meaning that bucket; any other
//! identifier is `error::no-such-store`. Stores are per workload, so a workload never reaches
//! another workload's data, whatever its buckets are called.
//!
//! Semantics: `get` of a missing key is `none`; `delete` of a missing key succeeds.
//! `list-keys` returns keys in byte order, at most [`LIST_PAGE_KEYS`] per call; the cursor is
//! the number of keys returned so far (a bucket handle remembers where its last page ended, so
//! following the cursor it handed out resumes after that key without re-scanning). `increment`
//! treats the value as a `u64` in decimal ASCII (as Spin does), a missing key as 0, and stores
//! the result back as decimal text; it is atomic (a write transaction / the write lock). Batch
//! operations run in one transaction (redb) or under one lock (memory).
//!
//! Limits (a guest cannot make the host allocate without bound; exceeding one is
//! `error::other` naming the limit): [`MAX_KEY_BYTES`], [`MAX_VALUE_BYTES`],
//! [`MAX_BATCH_KEYS`] keys per batch call, [`MAX_BATCH_READ_BYTES`] returned by one
//! `get-many`, and [`MAX_MEMORY_STORE_BYTES`] per workload for the memory backend.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::ops::Bound as RangeBound;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex, PoisonError, RwLock, Weak};
use std::time::Duration;

use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use wasmtime::component::{HasData, Linker, Resource, ResourceTable};
use weft_manifest::KeyValueBackend;

use super::{BindContext, Binding, HostPlugin, PluginError, PluginInstances};
use crate::state::HostState;

mod bindings {
    wasmtime::component::bindgen!({
        path: "wit/keyvalue",
        world: "wasi:keyvalue/imports",
        imports: { default: trappable },
        with: {
            "wasi:keyvalue/store.bucket": crate::plugins::keyvalue::Bucket,
        },
    });
}

use bindings::wasi::keyvalue::{atomics, batch, store};

/// Longest key, in bytes (UTF-8).
pub const MAX_KEY_BYTES: usize = 4 * 1024;
/// Largest value, in bytes.
pub const MAX_VALUE_BYTES: usize = 1024 * 1024;
/// Most keys one `list-keys` call returns.
pub const LIST_PAGE_KEYS: usize = 1000;
/// Most keys one `get-many`, `set-many` or `delete-many` call may name.
pub const MAX_BATCH_KEYS: usize = 1000;
/// Most value bytes one `get-many` call may return.
pub const MAX_BATCH_READ_BYTES: usize = 16 * 1024 * 1024;
/// Most key + value bytes the memory backend holds for one workload (all buckets).
pub const MAX_MEMORY_STORE_BYTES: usize = 64 * 1024 * 1024;
/// Page cache of one redb database (redb's default is 1 GiB; a host runs many workloads).
pub const REDB_CACHE_BYTES: usize = 32 * 1024 * 1024;
/// Longest bucket name (`config.bucket`); the manifest validator checks the same limit.
pub const MAX_BUCKET_NAME_BYTES: usize = weft_manifest::MAX_BUCKET_NAME_BYTES;

#[derive(Default)]
pub struct KeyValuePlugin;

// ---------------------------------------------------------------------------------------------
// Errors

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

impl From<KvError> for store::Error {
    fn from(e: KvError) -> Self {
        match e {
            KvError::NoSuchStore => store::Error::NoSuchStore,
            KvError::AccessDenied => store::Error::AccessDenied,
            KvError::Other(m) => store::Error::Other(m),
        }
    }
}

fn storage(e: impl fmt::Display) -> KvError {
    KvError::Other(format!("key-value storage error: {e}"))
}

/// At most 64 characters of a guest-supplied key, for messages.
fn shown(key: &str) -> String {
    let mut s: String = key.chars().take(64).collect();
    if s.len() < key.len() {
        s.push_str("...");
    }
    s
}

fn check_key(key: &str) -> Result<(), KvError> {
    if key.len() > MAX_KEY_BYTES {
        return Err(KvError::Other(format!(
            "key is {} bytes; the limit is {MAX_KEY_BYTES} bytes (MAX_KEY_BYTES, 4 KiB)",
            key.len()
        )));
    }
    Ok(())
}

fn check_value(key: &str, value: &[u8]) -> Result<(), KvError> {
    if value.len() > MAX_VALUE_BYTES {
        return Err(KvError::Other(format!(
            "value for key {:?} is {} bytes; the limit is {MAX_VALUE_BYTES} bytes \
             (MAX_VALUE_BYTES, 1 MiB)",
            shown(key),
            value.len()
        )));
    }
    Ok(())
}

fn check_batch(op: &str, n: usize) -> Result<(), KvError> {
    if n > MAX_BATCH_KEYS {
        return Err(KvError::Other(format!(
            "{op} names {n} keys; the limit is {MAX_BATCH_KEYS} per call (MAX_BATCH_KEYS): \
             split the batch"
        )));
    }
    Ok(())
}

/// Counts the bytes a `get-many` returns and fails once they pass [`MAX_BATCH_READ_BYTES`].
struct ReadBudget(usize);

impl ReadBudget {
    fn take(&mut self, n: usize) -> Result<(), KvError> {
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
fn parse_counter(key: &str, value: &[u8]) -> Result<u64, KvError> {
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

fn add_counter(key: &str, current: u64, delta: u64) -> Result<u64, KvError> {
    current.checked_add(delta).ok_or_else(|| {
        KvError::Other(format!(
            "increment: {current} + {delta} overflows u64 (key {:?})",
            shown(key)
        ))
    })
}

fn to_usize(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

// ---------------------------------------------------------------------------------------------
// Backends

/// Where a listing starts.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Start {
    /// Skip this many keys from the beginning.
    Skip(u64),
    /// Start right after this key.
    After(String),
}

/// One workload's store: all its buckets. Cheap to clone (an `Arc`).
#[derive(Clone)]
pub struct KvStore {
    backend: Backend,
}

#[derive(Clone)]
enum Backend {
    Memory(Arc<MemoryStore>),
    Redb(Arc<RedbStore>),
}

impl fmt::Debug for KvStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.backend {
            Backend::Memory(_) => f.write_str("KvStore(memory)"),
            Backend::Redb(r) => write!(f, "KvStore(redb {})", r.path.display()),
        }
    }
}

/// Memory stores by owner (`namespace.name`): alive while some binding or instance holds them.
static MEMORY_STORES: LazyLock<Mutex<HashMap<String, Weak<MemoryStore>>>> =
    LazyLock::new(Default::default);
/// Open redb databases by path: redb allows one open per file per process.
static REDB_STORES: LazyLock<Mutex<HashMap<PathBuf, Weak<RedbStore>>>> =
    LazyLock::new(Default::default);

impl KvStore {
    /// The memory store of `owner`, shared with every other binding of the same owner.
    pub fn memory(owner: &str) -> Self {
        let mut reg = lock(&MEMORY_STORES);
        reg.retain(|_, w| w.strong_count() > 0);
        let store = match reg.get(owner).and_then(Weak::upgrade) {
            Some(s) => s,
            None => {
                let s = Arc::new(MemoryStore::default());
                reg.insert(owner.to_string(), Arc::downgrade(&s));
                s
            }
        };
        KvStore {
            backend: Backend::Memory(store),
        }
    }

    /// A fresh memory store shared with nobody (tests).
    #[cfg(test)]
    fn memory_unshared() -> Self {
        KvStore {
            backend: Backend::Memory(Arc::new(MemoryStore::default())),
        }
    }

    /// The redb database at `path` (created if missing), or the one this process already has
    /// open there.
    pub fn redb(path: &Path) -> Result<Self, String> {
        let path = std::path::absolute(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut reg = lock(&REDB_STORES);
        reg.retain(|_, w| w.strong_count() > 0);
        if let Some(s) = reg.get(&path).and_then(Weak::upgrade) {
            return Ok(KvStore {
                backend: Backend::Redb(s),
            });
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        // The last holder of an older open may be dropping it on another thread right now:
        // give it a moment before concluding that another process has the file.
        let mut attempts = 0;
        let db = loop {
            let opened = redb::Database::builder()
                .set_cache_size(REDB_CACHE_BYTES)
                // A damaged file fails to open (an error at bind) instead of panicking later.
                .set_check_integrity_on_open(true)
                .create(&path);
            match opened {
                Ok(db) => break db,
                Err(redb::DatabaseError::DatabaseAlreadyOpen) if attempts < 50 => {
                    attempts += 1;
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(redb::DatabaseError::DatabaseAlreadyOpen) => {
                    return Err(format!(
                        "{} is already open (another Weft host using the same data directory?)",
                        path.display()
                    ));
                }
                Err(e) => return Err(format!("{}: {e}", path.display())),
            }
        };
        let store = Arc::new(RedbStore {
            db,
            path: path.clone(),
        });
        reg.insert(path, Arc::downgrade(&store));
        Ok(KvStore {
            backend: Backend::Redb(store),
        })
    }

    fn get(&self, bucket: &str, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        match &self.backend {
            Backend::Memory(m) => Ok(m.get(bucket, key)),
            Backend::Redb(r) => r.get(bucket, key),
        }
    }

    fn set(&self, bucket: &str, key: &str, value: Vec<u8>) -> Result<(), KvError> {
        match &self.backend {
            Backend::Memory(m) => m.set_many(bucket, vec![(key.to_string(), value)]),
            Backend::Redb(r) => r.set_many(bucket, &[(key.to_string(), value)]),
        }
    }

    fn delete(&self, bucket: &str, key: &str) -> Result<(), KvError> {
        match &self.backend {
            Backend::Memory(m) => {
                m.delete_many(bucket, &[key.to_string()]);
                Ok(())
            }
            Backend::Redb(r) => r.delete_many(bucket, &[key.to_string()]),
        }
    }

    fn exists(&self, bucket: &str, key: &str) -> Result<bool, KvError> {
        match &self.backend {
            Backend::Memory(m) => Ok(m.exists(bucket, key)),
            Backend::Redb(r) => r.exists(bucket, key),
        }
    }

    /// Up to `limit` keys in byte order from `start`.
    fn list(&self, bucket: &str, start: &Start, limit: usize) -> Result<Vec<String>, KvError> {
        match &self.backend {
            Backend::Memory(m) => Ok(m.list(bucket, start, limit)),
            Backend::Redb(r) => r.list(bucket, start, limit),
        }
    }

    fn increment(&self, bucket: &str, key: &str, delta: u64) -> Result<u64, KvError> {
        match &self.backend {
            Backend::Memory(m) => m.increment(bucket, key, delta),
            Backend::Redb(r) => r.increment(bucket, key, delta),
        }
    }

    fn get_many(&self, bucket: &str, keys: Vec<String>) -> Result<Entries, KvError> {
        match &self.backend {
            Backend::Memory(m) => m.get_many(bucket, keys),
            Backend::Redb(r) => r.get_many(bucket, keys),
        }
    }

    fn set_many(&self, bucket: &str, entries: Vec<(String, Vec<u8>)>) -> Result<(), KvError> {
        match &self.backend {
            Backend::Memory(m) => m.set_many(bucket, entries),
            Backend::Redb(r) => r.set_many(bucket, &entries),
        }
    }

    fn delete_many(&self, bucket: &str, keys: &[String]) -> Result<(), KvError> {
        match &self.backend {
            Backend::Memory(m) => {
                m.delete_many(bucket, keys);
                Ok(())
            }
            Backend::Redb(r) => r.delete_many(bucket, keys),
        }
    }
}

/// The memory backend: buckets of sorted maps, and the bytes they hold.
#[derive(Default)]
struct MemoryStore {
    inner: RwLock<MemoryInner>,
}

#[derive(Default)]
struct MemoryInner {
    buckets: HashMap<String, BTreeMap<String, Vec<u8>>>,
    /// Key + value bytes held, against [`MAX_MEMORY_STORE_BYTES`].
    used: usize,
}

impl MemoryStore {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, MemoryInner> {
        self.inner.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, MemoryInner> {
        self.inner.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn get(&self, bucket: &str, key: &str) -> Option<Vec<u8>> {
        self.read().buckets.get(bucket)?.get(key).cloned()
    }

    fn exists(&self, bucket: &str, key: &str) -> bool {
        self.read()
            .buckets
            .get(bucket)
            .is_some_and(|m| m.contains_key(key))
    }

    fn list(&self, bucket: &str, start: &Start, limit: usize) -> Vec<String> {
        let inner = self.read();
        let Some(map) = inner.buckets.get(bucket) else {
            return Vec::new();
        };
        match start {
            Start::Skip(n) => map.keys().skip(to_usize(*n)).take(limit).cloned().collect(),
            Start::After(after) => map
                .range::<str, _>((RangeBound::Excluded(after.as_str()), RangeBound::Unbounded))
                .take(limit)
                .map(|(k, _)| k.clone())
                .collect(),
        }
    }

    fn increment(&self, bucket: &str, key: &str, delta: u64) -> Result<u64, KvError> {
        let mut inner = self.write();
        let current = match inner.buckets.get(bucket).and_then(|m| m.get(key)) {
            Some(v) => parse_counter(key, v)?,
            None => 0,
        };
        let new = add_counter(key, current, delta)?;
        inner.insert(bucket, key.to_string(), new.to_string().into_bytes())?;
        Ok(new)
    }

    fn get_many(&self, bucket: &str, keys: Vec<String>) -> Result<Entries, KvError> {
        let inner = self.read();
        let map = inner.buckets.get(bucket);
        let mut budget = ReadBudget(0);
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            match map.and_then(|m| m.get(&key)) {
                Some(v) => {
                    budget.take(v.len())?;
                    out.push(Some((key, v.clone())));
                }
                None => out.push(None),
            }
        }
        Ok(out)
    }

    fn set_many(&self, bucket: &str, entries: Vec<(String, Vec<u8>)>) -> Result<(), KvError> {
        let mut inner = self.write();
        for (key, value) in entries {
            inner.insert(bucket, key, value)?;
        }
        Ok(())
    }

    fn delete_many(&self, bucket: &str, keys: &[String]) {
        let mut inner = self.write();
        let MemoryInner { buckets, used } = &mut *inner;
        let Some(map) = buckets.get_mut(bucket) else {
            return;
        };
        for key in keys {
            if let Some(old) = map.remove(key) {
                *used = used.saturating_sub(key.len() + old.len());
            }
        }
        if map.is_empty() {
            buckets.remove(bucket);
        }
    }
}

impl MemoryInner {
    /// Inserts within [`MAX_MEMORY_STORE_BYTES`].
    fn insert(&mut self, bucket: &str, key: String, value: Vec<u8>) -> Result<(), KvError> {
        let old = self
            .buckets
            .get(bucket)
            .and_then(|m| m.get(&key))
            .map_or(0, |v| key.len() + v.len());
        let used = self
            .used
            .saturating_sub(old)
            .saturating_add(key.len() + value.len());
        if used > MAX_MEMORY_STORE_BYTES {
            return Err(KvError::Other(format!(
                "the memory key-value store is full: it holds at most {MAX_MEMORY_STORE_BYTES} \
                 bytes of keys and values (MAX_MEMORY_STORE_BYTES, 64 MiB); delete keys, or \
                 use config.backend redb"
            )));
        }
        self.used = used;
        self.buckets
            .entry(bucket.to_string())
            .or_default()
            .insert(key, value);
        Ok(())
    }
}

/// The redb backend: one database, one table per bucket (`&str` keys, byte values).
struct RedbStore {
    db: redb::Database,
    path: PathBuf,
}

type RedbTable<'a> = TableDefinition<'a, &'static str, &'static [u8]>;

fn table(bucket: &str) -> RedbTable<'_> {
    TableDefinition::new(bucket)
}

impl RedbStore {
    /// The bucket's table for reading; `None` when nothing was ever written to it.
    fn read_table(
        &self,
        bucket: &str,
    ) -> Result<Option<redb::ReadOnlyTable<&'static str, &'static [u8]>>, KvError> {
        let txn = self.db.begin_read().map_err(storage)?;
        match txn.open_table(table(bucket)) {
            Ok(t) => Ok(Some(t)),
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
            Err(e) => Err(storage(e)),
        }
    }

    fn get(&self, bucket: &str, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        let Some(t) = self.read_table(bucket)? else {
            return Ok(None);
        };
        Ok(t.get(key).map_err(storage)?.map(|v| v.value().to_vec()))
    }

    fn exists(&self, bucket: &str, key: &str) -> Result<bool, KvError> {
        let Some(t) = self.read_table(bucket)? else {
            return Ok(false);
        };
        Ok(t.get(key).map_err(storage)?.is_some())
    }

    fn list(&self, bucket: &str, start: &Start, limit: usize) -> Result<Vec<String>, KvError> {
        let Some(t) = self.read_table(bucket)? else {
            return Ok(Vec::new());
        };
        let (range, skip) = match start {
            Start::Skip(n) => (t.range::<&str>(..), to_usize(*n)),
            Start::After(after) => (
                t.range::<&str>((RangeBound::Excluded(after.as_str()), RangeBound::Unbounded)),
                0,
            ),
        };
        let mut keys = Vec::new();
        for item in range.map_err(storage)?.skip(skip).take(limit) {
            let (k, _) = item.map_err(storage)?;
            keys.push(k.value().to_string());
        }
        Ok(keys)
    }

    fn get_many(&self, bucket: &str, keys: Vec<String>) -> Result<Entries, KvError> {
        let Some(t) = self.read_table(bucket)? else {
            return Ok(keys.iter().map(|_| None).collect());
        };
        let mut budget = ReadBudget(0);
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            let value = match t.get(key.as_str()).map_err(storage)? {
                Some(v) => {
                    let v = v.value();
                    budget.take(v.len())?;
                    Some(v.to_vec())
                }
                None => None,
            };
            out.push(value.map(|v| (key, v)));
        }
        Ok(out)
    }

    fn set_many(&self, bucket: &str, entries: &[(String, Vec<u8>)]) -> Result<(), KvError> {
        let txn = self.db.begin_write().map_err(storage)?;
        {
            let mut t = txn.open_table(table(bucket)).map_err(storage)?;
            for (key, value) in entries {
                t.insert(key.as_str(), value.as_slice()).map_err(storage)?;
            }
        }
        txn.commit().map_err(storage)
    }

    fn delete_many(&self, bucket: &str, keys: &[String]) -> Result<(), KvError> {
        // Nothing to delete in a bucket that was never written: skip the write transaction.
        if self.read_table(bucket)?.is_none() {
            return Ok(());
        }
        let txn = self.db.begin_write().map_err(storage)?;
        {
            let mut t = txn.open_table(table(bucket)).map_err(storage)?;
            for key in keys {
                t.remove(key.as_str()).map_err(storage)?;
            }
        }
        txn.commit().map_err(storage)
    }

    fn increment(&self, bucket: &str, key: &str, delta: u64) -> Result<u64, KvError> {
        let txn = self.db.begin_write().map_err(storage)?;
        let new = {
            let mut t = txn.open_table(table(bucket)).map_err(storage)?;
            let current = match t.get(key).map_err(storage)? {
                Some(v) => parse_counter(key, v.value())?,
                None => 0,
            };
            let new = add_counter(key, current, delta)?;
            t.insert(key, new.to_string().as_bytes()).map_err(storage)?;
            new
        };
        txn.commit().map_err(storage)?;
        Ok(new)
    }
}

// ---------------------------------------------------------------------------------------------
// Per-instance state and the bucket resource

/// Per-instance state: the workload's store and the name of the bucket it owns.
#[derive(Clone, Debug)]
pub struct Instance {
    store: KvStore,
    bucket: Arc<str>,
}

impl Instance {
    pub fn new(store: KvStore, bucket: &str) -> Self {
        Self {
            store,
            bucket: bucket.into(),
        }
    }

    /// The bucket a workload owns.
    pub fn bucket_name(&self) -> &str {
        &self.bucket
    }

    /// `store.open`: `""`, `"default"` and the owned bucket's name open the owned bucket.
    pub fn open(&self, identifier: &str) -> Result<Bucket, KvError> {
        if identifier.is_empty() || identifier == "default" || identifier == &*self.bucket {
            Ok(Bucket {
                store: self.store.clone(),
                name: self.bucket.clone(),
                resume: None,
            })
        } else {
            Err(KvError::NoSuchStore)
        }
    }
}

/// The `bucket` resource (lives in the store's `ResourceTable`).
#[derive(Debug)]
pub struct Bucket {
    store: KvStore,
    name: Arc<str>,
    /// Where the last page ended: (the cursor handed out, the last key returned).
    resume: Option<(u64, String)>,
}

/// What `get-many` returns: per key asked, the key and its value, or `None` when missing.
pub type Entries = Vec<Option<(String, Vec<u8>)>>;

/// One page of `list-keys`: the keys, and the cursor of the next page if there is one.
pub type Page = (Vec<String>, Option<u64>);

impl Bucket {
    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        check_key(key)?;
        self.store.get(&self.name, key)
    }

    pub fn set(&self, key: &str, value: Vec<u8>) -> Result<(), KvError> {
        check_key(key)?;
        check_value(key, &value)?;
        self.store.set(&self.name, key, value)
    }

    pub fn delete(&self, key: &str) -> Result<(), KvError> {
        check_key(key)?;
        self.store.delete(&self.name, key)
    }

    pub fn exists(&self, key: &str) -> Result<bool, KvError> {
        check_key(key)?;
        self.store.exists(&self.name, key)
    }

    pub fn list_keys(&mut self, cursor: Option<u64>) -> Result<Page, KvError> {
        self.list_page(cursor, LIST_PAGE_KEYS)
    }

    fn list_page(&mut self, cursor: Option<u64>, page: usize) -> Result<Page, KvError> {
        let offset = cursor.unwrap_or(0);
        let start = match (&self.resume, cursor) {
            (Some((at, last)), Some(c)) if *at == c => Start::After(last.clone()),
            _ => Start::Skip(offset),
        };
        let mut keys = self
            .store
            .list(&self.name, &start, page.saturating_add(1))?;
        if keys.len() > page {
            keys.truncate(page);
            let next = offset.saturating_add(keys.len() as u64);
            self.resume = keys.last().map(|k| (next, k.clone()));
            Ok((keys, Some(next)))
        } else {
            self.resume = None;
            Ok((keys, None))
        }
    }

    pub fn increment(&self, key: &str, delta: u64) -> Result<u64, KvError> {
        check_key(key)?;
        self.store.increment(&self.name, key, delta)
    }

    pub fn get_many(&self, keys: Vec<String>) -> Result<Entries, KvError> {
        check_batch("get-many", keys.len())?;
        keys.iter().try_for_each(|k| check_key(k))?;
        self.store.get_many(&self.name, keys)
    }

    pub fn set_many(&self, entries: Vec<(String, Vec<u8>)>) -> Result<(), KvError> {
        check_batch("set-many", entries.len())?;
        for (k, v) in &entries {
            check_key(k)?;
            check_value(k, v)?;
        }
        self.store.set_many(&self.name, entries)
    }

    pub fn delete_many(&self, keys: Vec<String>) -> Result<(), KvError> {
        check_batch("delete-many", keys.len())?;
        keys.iter().try_for_each(|k| check_key(k))?;
        self.store.delete_many(&self.name, &keys)
    }
}

// ---------------------------------------------------------------------------------------------
// Host traits

struct KeyValue;

impl HasData for KeyValue {
    type Data<'a> = KeyValueView<'a>;
}

/// What the host functions see: this instance's keyvalue state and the store's resource table.
pub struct KeyValueView<'a> {
    instance: Option<&'a Instance>,
    table: &'a mut ResourceTable,
}

fn view(h: &mut HostState) -> KeyValueView<'_> {
    KeyValueView {
        instance: h.plugins.keyvalue.as_ref(),
        table: &mut h.table,
    }
}

type HostResult<T> = wasmtime::Result<Result<T, store::Error>>;

impl store::Host for KeyValueView<'_> {
    fn open(&mut self, identifier: String) -> HostResult<Resource<Bucket>> {
        // No state: the store was unbound (the workload version is being retired).
        let Some(inst) = self.instance else {
            return Ok(Err(store::Error::AccessDenied));
        };
        match inst.open(&identifier) {
            Ok(bucket) => Ok(Ok(self.table.push(bucket)?)),
            Err(e) => Ok(Err(e.into())),
        }
    }
}

impl store::HostBucket for KeyValueView<'_> {
    fn get(&mut self, bucket: Resource<Bucket>, key: String) -> HostResult<Option<Vec<u8>>> {
        Ok(self.table.get(&bucket)?.get(&key).map_err(Into::into))
    }

    fn set(&mut self, bucket: Resource<Bucket>, key: String, value: Vec<u8>) -> HostResult<()> {
        Ok(self
            .table
            .get(&bucket)?
            .set(&key, value)
            .map_err(Into::into))
    }

    fn delete(&mut self, bucket: Resource<Bucket>, key: String) -> HostResult<()> {
        Ok(self.table.get(&bucket)?.delete(&key).map_err(Into::into))
    }

    fn exists(&mut self, bucket: Resource<Bucket>, key: String) -> HostResult<bool> {
        Ok(self.table.get(&bucket)?.exists(&key).map_err(Into::into))
    }

    fn list_keys(
        &mut self,
        bucket: Resource<Bucket>,
        cursor: Option<u64>,
    ) -> HostResult<store::KeyResponse> {
        Ok(self
            .table
            .get_mut(&bucket)?
            .list_keys(cursor)
            .map(|(keys, cursor)| store::KeyResponse { keys, cursor })
            .map_err(Into::into))
    }

    fn drop(&mut self, bucket: Resource<Bucket>) -> wasmtime::Result<()> {
        self.table.delete(bucket)?;
        Ok(())
    }
}

impl atomics::Host for KeyValueView<'_> {
    fn increment(&mut self, bucket: Resource<Bucket>, key: String, delta: u64) -> HostResult<u64> {
        Ok(self
            .table
            .get(&bucket)?
            .increment(&key, delta)
            .map_err(Into::into))
    }
}

impl batch::Host for KeyValueView<'_> {
    fn get_many(&mut self, bucket: Resource<Bucket>, keys: Vec<String>) -> HostResult<Entries> {
        Ok(self.table.get(&bucket)?.get_many(keys).map_err(Into::into))
    }

    fn set_many(
        &mut self,
        bucket: Resource<Bucket>,
        key_values: Vec<(String, Vec<u8>)>,
    ) -> HostResult<()> {
        Ok(self
            .table
            .get(&bucket)?
            .set_many(key_values)
            .map_err(Into::into))
    }

    fn delete_many(&mut self, bucket: Resource<Bucket>, keys: Vec<String>) -> HostResult<()> {
        Ok(self
            .table
            .get(&bucket)?
            .delete_many(keys)
            .map_err(Into::into))
    }
}

// ---------------------------------------------------------------------------------------------
// Plugin and binding

/// Which interfaces a binding links.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Linked {
    store: bool,
    atomics: bool,
    batch: bool,
}

impl Linked {
    /// The granted interfaces; `store` also when `atomics` or `batch` is granted (they use its
    /// `bucket` resource). No entry: all three.
    fn from_grant(interfaces: Option<&[String]>) -> Self {
        let Some(ifaces) = interfaces else {
            return Linked {
                store: true,
                atomics: true,
                batch: true,
            };
        };
        let has = |name: &str| ifaces.iter().any(|i| i == name);
        let atomics = has("atomics");
        let batch = has("batch");
        Linked {
            store: has("store") || atomics || batch,
            atomics,
            batch,
        }
    }
}

struct Bound {
    /// `None` once unbound.
    store: RwLock<Option<KvStore>>,
    bucket: Arc<str>,
    linked: Linked,
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// `<data_dir>/keyvalue/<namespace>.<name>.redb`
pub fn redb_path(data_dir: &Path, namespace: &str, name: &str) -> PathBuf {
    data_dir
        .join("keyvalue")
        .join(format!("{namespace}.{name}.redb"))
}

impl HostPlugin for KeyValuePlugin {
    fn package(&self) -> &'static str {
        "wasi:keyvalue"
    }
    fn interfaces(&self) -> &'static [&'static str] {
        &[
            "wasi:keyvalue/store",
            "wasi:keyvalue/atomics",
            "wasi:keyvalue/batch",
        ]
    }
    fn bind(&self, ctx: &BindContext<'_>) -> Result<Arc<dyn Binding>, PluginError> {
        let field = match ctx.entry_index {
            Some(i) => format!("spec.hostInterfaces[{i}]"),
            None => "spec.hostInterfaces".to_string(),
        };
        let meta = &ctx.manifest.metadata;
        for (what, value) in [("name", &meta.name), ("namespace", &meta.namespace)] {
            if !is_dns_label(value) {
                return Err(PluginError {
                    field: format!("metadata.{what}"),
                    message: format!("{value:?} is not a DNS label"),
                    hint: "use 1 to 63 of a-z, 0-9 and -, not starting or ending with -".into(),
                });
            }
        }
        // `keyvalue_config` reads an unknown backend as the default: refuse it here instead.
        if let Some(raw) = ctx.entry.and_then(|e| e.config.get("backend"))
            && KeyValueBackend::parse(raw).is_none()
        {
            return Err(PluginError {
                field: format!("{field}.config.backend"),
                message: format!("unknown key-value backend {raw:?}"),
                hint: format!("use one of: {}", KeyValueBackend::NAMES.join(", ")),
            });
        }
        let config = ctx
            .entry
            .and_then(|e| e.keyvalue_config())
            .unwrap_or_default();
        let bucket = config.bucket.unwrap_or_else(|| meta.name.clone());
        if bucket.is_empty() || bucket.len() > MAX_BUCKET_NAME_BYTES {
            return Err(PluginError {
                field: format!("{field}.config.bucket"),
                message: format!(
                    "the bucket name must be 1 to {MAX_BUCKET_NAME_BYTES} bytes, it is {}",
                    bucket.len()
                ),
                hint: "name the bucket, or leave config.bucket out to use metadata.name".into(),
            });
        }
        let store = match config.backend {
            KeyValueBackend::Memory => {
                KvStore::memory(&format!("{}.{}", meta.namespace, meta.name))
            }
            KeyValueBackend::Redb => {
                let path = redb_path(&ctx.data_dir, &meta.namespace, &meta.name);
                KvStore::redb(&path).map_err(|e| PluginError {
                    field: format!("{field}.config.backend"),
                    message: format!("cannot open the redb key-value store: {e}"),
                    hint: "check that the host's data directory is writable and not shared with \
                           another Weft host"
                        .into(),
                })?
            }
        };
        tracing::debug!(
            workload = %meta.name,
            namespace = %meta.namespace,
            %bucket,
            store = ?store,
            "wasi:keyvalue bound"
        );
        Ok(Arc::new(Bound {
            store: RwLock::new(Some(store)),
            bucket: bucket.into(),
            linked: Linked::from_grant(ctx.entry.map(|e| e.interfaces.as_slice())),
        }))
    }
}

impl Binding for Bound {
    fn add_to_linker(&self, linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
        if self.linked.store {
            store::add_to_linker::<HostState, KeyValue>(linker, view)?;
        }
        if self.linked.atomics {
            atomics::add_to_linker::<HostState, KeyValue>(linker, view)?;
        }
        if self.linked.batch {
            batch::add_to_linker::<HostState, KeyValue>(linker, view)?;
        }
        Ok(())
    }

    fn instance(&self, _component: &str, instances: &mut PluginInstances) {
        let store = self.store.read().unwrap_or_else(PoisonError::into_inner);
        instances.keyvalue = store.as_ref().map(|s| Instance {
            store: s.clone(),
            bucket: self.bucket.clone(),
        });
    }

    /// Drops the binding's handle on the store; instances still running keep theirs, and the
    /// store (the redb file) closes when the last one ends.
    fn unbind(&self) {
        self.store
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};
    use weft_manifest::{HostInterface, Manifest};

    use super::*;
    use crate::logs::LogSink;

    /// A name no other test uses (memory stores are process-wide by owner).
    fn unique(prefix: &str) -> String {
        static N: AtomicUsize = AtomicUsize::new(0);
        format!(
            "{prefix}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        )
    }

    #[derive(Debug, Clone, Copy)]
    enum Kind {
        Memory,
        Redb,
    }

    /// A fresh store of `kind`; the tempdir keeps a redb file alive.
    fn fresh(kind: Kind) -> (tempfile::TempDir, KvStore) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = match kind {
            Kind::Memory => KvStore::memory_unshared(),
            Kind::Redb => KvStore::redb(&dir.path().join("kv.redb")).expect("open redb"),
        };
        (dir, store)
    }

    fn open(store: &KvStore, bucket: &str) -> Bucket {
        Instance::new(store.clone(), bucket)
            .open("default")
            .expect("open default")
    }

    fn both(test: impl Fn(Kind, &KvStore)) {
        for kind in [Kind::Memory, Kind::Redb] {
            let (_dir, store) = fresh(kind);
            test(kind, &store);
        }
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn other(e: KvError) -> String {
        match e {
            KvError::Other(m) => m,
            e => panic!("expected error::other, got {e:?}"),
        }
    }

    #[test]
    fn get_set_delete_exists() {
        both(|kind, store| {
            let b = open(store, "todo");
            assert_eq!(b.get("a"), Ok(None), "{kind:?}");
            assert_eq!(b.exists("a"), Ok(false));
            b.set("a", b"one".to_vec()).unwrap();
            assert_eq!(b.get("a"), Ok(Some(b"one".to_vec())));
            assert_eq!(b.exists("a"), Ok(true));
            b.set("a", vec![0, 255, 1]).unwrap();
            assert_eq!(b.get("a"), Ok(Some(vec![0, 255, 1])), "{kind:?}");
            b.set("", Vec::new()).unwrap();
            assert_eq!(b.get(""), Ok(Some(Vec::new())), "empty key and value");
            b.set("ünïcode ✓", b"x".to_vec()).unwrap();
            assert_eq!(b.get("ünïcode ✓"), Ok(Some(b"x".to_vec())));
            b.delete("a").unwrap();
            assert_eq!(b.get("a"), Ok(None));
            assert_eq!(b.exists("a"), Ok(false));
            b.delete("a").unwrap();
            b.delete("never-there").unwrap();
            // Another handle on the same bucket reads the writes.
            assert_eq!(open(store, "todo").get(""), Ok(Some(Vec::new())));
        });
    }

    #[test]
    fn list_keys_pages_in_order() {
        both(|kind, store| {
            let mut b = open(store, "todo");
            assert_eq!(b.list_keys(None), Ok((vec![], None)), "empty bucket");
            let mut all: Vec<String> = (0..2500).map(|i| format!("k{i:05}")).collect();
            // Insert in a scrambled order; listing is sorted.
            all.reverse();
            for chunk in all.chunks(MAX_BATCH_KEYS) {
                b.set_many(
                    chunk
                        .iter()
                        .map(|k| (k.clone(), k.as_bytes().to_vec()))
                        .collect(),
                )
                .unwrap();
            }
            all.sort();
            let (p1, c1) = b.list_keys(None).unwrap();
            assert_eq!((p1.len(), c1), (1000, Some(1000)), "{kind:?}");
            let (p2, c2) = b.list_keys(c1).unwrap();
            assert_eq!((p2.len(), c2), (1000, Some(2000)));
            let (p3, c3) = b.list_keys(c2).unwrap();
            assert_eq!((p3.len(), c3), (500, None));
            let listed: Vec<String> = [p1, p2.clone(), p3].concat();
            assert_eq!(listed, all);
            // A cursor handed to another handle (no remembered position) gives the same page.
            let mut fresh_handle = open(store, "todo");
            assert_eq!(
                fresh_handle.list_keys(Some(1000)).unwrap(),
                (p2, Some(2000))
            );
            // Past the end: empty, no cursor.
            assert_eq!(fresh_handle.list_keys(Some(5000)), Ok((vec![], None)));
            assert_eq!(fresh_handle.list_keys(Some(u64::MAX)), Ok((vec![], None)));
            // Exactly one page: no cursor.
            b.delete_many(all[1000..2000].to_vec()).unwrap();
            b.delete_many(all[2000..].to_vec()).unwrap();
            let (p, c) = b.list_keys(None).unwrap();
            assert_eq!((p.len(), c), (1000, None), "{kind:?}");
        });
    }

    #[test]
    fn list_keys_resumes_after_the_last_key_it_returned() {
        both(|kind, store| {
            let mut b = open(store, "todo");
            for k in ["a", "b", "c", "d", "e", "f"] {
                b.set(k, vec![1]).unwrap();
            }
            let (p1, c1) = b.list_page(None, 3).unwrap();
            assert_eq!((p1, c1), (strings(&["a", "b", "c"]), Some(3)));
            // Keys inserted before the position are not listed again; the rest follow.
            b.set("aa", vec![1]).unwrap();
            b.set("cc", vec![1]).unwrap();
            let (p2, c2) = b.list_page(c1, 3).unwrap();
            assert_eq!((p2, c2), (strings(&["cc", "d", "e"]), Some(6)), "{kind:?}");
            let (p3, c3) = b.list_page(c2, 3).unwrap();
            assert_eq!((p3, c3), (strings(&["f"]), None));
            // A cursor the handle did not just hand out is an offset.
            let (p, c) = b.list_page(Some(2), 3).unwrap();
            assert_eq!((p, c), (strings(&["b", "c", "cc"]), Some(5)));
        });
    }

    #[test]
    fn increment_counts_in_decimal_text() {
        both(|kind, store| {
            let b = open(store, "todo");
            assert_eq!(b.increment("count", 1), Ok(1), "{kind:?}");
            assert_eq!(b.increment("count", 5), Ok(6));
            assert_eq!(b.get("count"), Ok(Some(b"6".to_vec())));
            assert_eq!(b.increment("zero", 0), Ok(0));
            assert_eq!(b.get("zero"), Ok(Some(b"0".to_vec())));
            b.set("text", b"42".to_vec()).unwrap();
            assert_eq!(b.increment("text", 8), Ok(50));
            for bad in [&b"abc"[..], b"", b"-1", b"+1", b" 1", b"1.5", &[0xff, 0x31]] {
                b.set("bad", bad.to_vec()).unwrap();
                let msg = other(b.increment("bad", 1).unwrap_err());
                assert!(msg.contains("not a counter"), "{kind:?} {bad:?}: {msg}");
                assert_eq!(b.get("bad"), Ok(Some(bad.to_vec())), "unchanged on error");
            }
            b.set("max", u64::MAX.to_string().into_bytes()).unwrap();
            let msg = other(b.increment("max", 1).unwrap_err());
            assert!(msg.contains("overflows u64"), "{msg}");
            assert_eq!(b.increment("max", 0), Ok(u64::MAX));
            b.set("big", b"18446744073709551616".to_vec()).unwrap();
            assert!(other(b.increment("big", 1).unwrap_err()).contains("not a counter"));
        });
    }

    #[test]
    fn increment_is_atomic_across_threads() {
        both(|kind, store| {
            let threads: Vec<_> = (0..4)
                .map(|_| {
                    let b = open(store, "todo");
                    std::thread::spawn(move || {
                        for _ in 0..25 {
                            b.increment("n", 1).unwrap();
                        }
                    })
                })
                .collect();
            for t in threads {
                t.join().unwrap();
            }
            assert_eq!(
                open(store, "todo").get("n"),
                Ok(Some(b"100".to_vec())),
                "{kind:?}"
            );
        });
    }

    #[test]
    fn batch_operations() {
        both(|kind, store| {
            let b = open(store, "todo");
            b.set_many(vec![
                ("a".into(), b"1".to_vec()),
                ("b".into(), b"2".to_vec()),
                ("c".into(), b"3".to_vec()),
            ])
            .unwrap();
            assert_eq!(
                b.get_many(vec!["c".into(), "x".into(), "a".into(), "a".into()]),
                Ok(vec![
                    Some(("c".into(), b"3".to_vec())),
                    None,
                    Some(("a".into(), b"1".to_vec())),
                    Some(("a".into(), b"1".to_vec())),
                ]),
                "{kind:?}"
            );
            assert_eq!(b.get_many(vec![]), Ok(vec![]));
            b.set_many(vec![]).unwrap();
            b.delete_many(vec!["a".into(), "missing".into()]).unwrap();
            assert_eq!(b.exists("a"), Ok(false));
            assert_eq!(b.exists("b"), Ok(true));
            b.delete_many(vec![]).unwrap();
            // Later entries win within one set-many.
            b.set_many(vec![
                ("d".into(), b"x".to_vec()),
                ("d".into(), b"y".to_vec()),
            ])
            .unwrap();
            assert_eq!(b.get("d"), Ok(Some(b"y".to_vec())), "{kind:?}");
            // A bucket that was never written.
            let empty = open(store, "empty");
            assert_eq!(empty.get_many(vec!["a".into()]), Ok(vec![None]));
            empty.delete_many(vec!["a".into()]).unwrap();
        });
    }

    #[test]
    fn batch_limits() {
        both(|kind, store| {
            let b = open(store, "todo");
            let too_many: Vec<String> = (0..=MAX_BATCH_KEYS).map(|i| i.to_string()).collect();
            for e in [
                b.get_many(too_many.clone()).unwrap_err(),
                b.delete_many(too_many.clone()).unwrap_err(),
                b.set_many(too_many.iter().map(|k| (k.clone(), vec![])).collect())
                    .unwrap_err(),
            ] {
                assert!(other(e).contains("MAX_BATCH_KEYS"), "{kind:?}");
            }
            // Nothing of a refused batch was written.
            assert_eq!(b.exists("0"), Ok(false));
            // 17 x 1 MiB read back in one call is over the 16 MiB budget.
            b.set("big", vec![7; MAX_VALUE_BYTES]).unwrap();
            let msg = other(b.get_many(vec!["big".into(); 17]).unwrap_err());
            assert!(msg.contains("MAX_BATCH_READ_BYTES"), "{msg}");
            assert_eq!(b.get_many(vec!["big".into(); 16]).unwrap().len(), 16);
        });
    }

    #[test]
    fn key_and_value_limits() {
        both(|kind, store| {
            let mut b = open(store, "todo");
            let max_key = "k".repeat(MAX_KEY_BYTES);
            let long_key = "k".repeat(MAX_KEY_BYTES + 1);
            b.set(&max_key, vec![1]).unwrap();
            assert_eq!(b.get(&max_key), Ok(Some(vec![1])), "{kind:?}");
            let errors = [
                b.get(&long_key).unwrap_err(),
                b.set(&long_key, vec![]).unwrap_err(),
                b.delete(&long_key).unwrap_err(),
                b.exists(&long_key).unwrap_err(),
                b.increment(&long_key, 1).unwrap_err(),
                b.get_many(vec![long_key.clone()]).unwrap_err(),
                b.set_many(vec![(long_key.clone(), vec![])]).unwrap_err(),
                b.delete_many(vec![long_key.clone()]).unwrap_err(),
            ];
            for e in errors {
                let msg = other(e);
                assert!(
                    msg.contains("MAX_KEY_BYTES") && msg.contains("4097"),
                    "{msg}"
                );
            }
            b.set("v", vec![0; MAX_VALUE_BYTES]).unwrap();
            assert_eq!(b.get("v").unwrap().map(|v| v.len()), Some(MAX_VALUE_BYTES));
            for e in [
                b.set("v", vec![0; MAX_VALUE_BYTES + 1]).unwrap_err(),
                b.set_many(vec![
                    ("ok".into(), vec![]),
                    ("v".into(), vec![0; MAX_VALUE_BYTES + 1]),
                ])
                .unwrap_err(),
            ] {
                let msg = other(e);
                assert!(
                    msg.contains("MAX_VALUE_BYTES") && msg.contains("1048577"),
                    "{msg}"
                );
            }
            assert_eq!(
                b.exists("ok"),
                Ok(false),
                "a refused set-many writes nothing"
            );
            assert_eq!(b.list_keys(None).unwrap().0.len(), 2);
        });
    }

    #[test]
    fn memory_store_is_capped() {
        let store = KvStore::memory_unshared();
        let b = open(&store, "todo");
        let value = vec![0; MAX_VALUE_BYTES];
        let fits = MAX_MEMORY_STORE_BYTES / (MAX_VALUE_BYTES + 3);
        for i in 0..fits {
            b.set(&format!("{i:03}"), value.clone()).unwrap();
        }
        // Overwriting in place does not grow it.
        b.set("000", value.clone()).unwrap();
        let msg = other(b.set("full", value.clone()).unwrap_err());
        assert!(msg.contains("MAX_MEMORY_STORE_BYTES"), "{msg}");
        assert!(b.increment("n", 1).is_ok(), "small writes still fit");
        b.delete("001").unwrap();
        b.set("full", value.clone()).unwrap();
        b.delete_many((0..fits).map(|i| format!("{i:03}")).collect())
            .unwrap();
        b.delete("full").unwrap();
        b.delete("n").unwrap();
        let Backend::Memory(m) = &store.backend else {
            unreachable!()
        };
        assert_eq!(m.read().used, 0, "accounting returns to zero");
    }

    #[test]
    fn open_maps_default_names_to_the_owned_bucket_only() {
        both(|kind, store| {
            let inst = Instance::new(store.clone(), "todo");
            assert_eq!(inst.bucket_name(), "todo");
            inst.open("").unwrap().set("k", b"v".to_vec()).unwrap();
            for id in ["", "default", "todo"] {
                assert_eq!(
                    inst.open(id).unwrap().get("k"),
                    Ok(Some(b"v".to_vec())),
                    "{kind:?} {id:?}"
                );
            }
            for id in ["someone-else", "Default", "todo ", "other"] {
                assert_eq!(inst.open(id).unwrap_err(), KvError::NoSuchStore, "{id:?}");
            }
            // Buckets of one store are separate tables / maps.
            let other = Instance::new(store.clone(), "other").open("other").unwrap();
            assert_eq!(other.get("k"), Ok(None), "{kind:?}");
            other.set("k", b"w".to_vec()).unwrap();
            assert_eq!(inst.open("").unwrap().get("k"), Ok(Some(b"v".to_vec())));
        });
    }

    // --- binding ---------------------------------------------------------------------------

    fn manifest(name: &str) -> Manifest {
        let text = format!(
            "apiVersion: weft.dev/v1alpha1\nkind: Workload\nmetadata: {{ name: {name} }}\n\
             spec:\n  components:\n    - name: api\n      image: ./api.wasm\n"
        );
        weft_manifest::parse_str(&text, Path::new("test.yaml"))
            .expect("test manifest")
            .remove(0)
    }

    fn grant(interfaces: &[&str], config: &[(&str, &str)]) -> HostInterface {
        HostInterface {
            namespace: "wasi".into(),
            package: "keyvalue".into(),
            interfaces: interfaces.iter().map(|s| s.to_string()).collect(),
            config: config
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
        }
    }

    fn bind(
        manifest: &Manifest,
        entry: &HostInterface,
        data_dir: &Path,
    ) -> Result<Arc<dyn Binding>, PluginError> {
        KeyValuePlugin.bind(&BindContext {
            manifest,
            entry: Some(entry),
            entry_index: Some(1),
            data_dir: data_dir.to_path_buf(),
            logs: LogSink::new(&manifest.metadata.name),
        })
    }

    fn instance(binding: &Arc<dyn Binding>) -> Option<Instance> {
        let mut instances = PluginInstances::default();
        binding.instance("api", &mut instances);
        instances.keyvalue
    }

    #[test]
    fn memory_binding_is_shared_by_instances_and_versions_of_one_workload() {
        let dir = tempfile::tempdir().unwrap();
        let name = unique("mem");
        let m = manifest(&name);
        let entry = grant(&["store", "atomics"], &[]);
        let v1 = bind(&m, &entry, dir.path()).unwrap();
        let a = instance(&v1).unwrap();
        assert_eq!(a.bucket_name(), name, "default bucket: metadata.name");
        a.open("default").unwrap().set("k", b"v".to_vec()).unwrap();
        let b = instance(&v1).unwrap();
        assert_eq!(b.open(&name).unwrap().get("k"), Ok(Some(b"v".to_vec())));
        // A new version bound while the old one is live shares the data.
        let v2 = bind(&m, &entry, dir.path()).unwrap();
        v1.unbind();
        assert!(instance(&v1).is_none(), "an unbound binding gives no state");
        let c = instance(&v2).unwrap();
        assert_eq!(c.open("").unwrap().get("k"), Ok(Some(b"v".to_vec())));
        // Another workload does not see it, even with the same bucket name.
        let other = bind(
            &manifest(&unique("mem-other")),
            &grant(&["store"], &[("bucket", &name)]),
            dir.path(),
        )
        .unwrap();
        let o = instance(&other).unwrap();
        assert_eq!(o.bucket_name(), name);
        assert_eq!(o.open(&name).unwrap().get("k"), Ok(None));
        assert!(
            !dir.path().join("keyvalue").exists(),
            "memory writes no files"
        );
        // Once every version and instance is gone, the data is too.
        drop((a, b, c, v1, v2));
        let v3 = bind(&m, &entry, dir.path()).unwrap();
        assert_eq!(instance(&v3).unwrap().open("").unwrap().get("k"), Ok(None));
    }

    #[test]
    fn redb_binding_persists_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let name = unique("redb");
        let m = manifest(&name);
        let entry = grant(&["store", "atomics", "batch"], &[("backend", "redb")]);
        let path = dir
            .path()
            .join("keyvalue")
            .join(format!("default.{name}.redb"));
        assert_eq!(redb_path(dir.path(), "default", &name), path);
        {
            let v1 = bind(&m, &entry, dir.path()).unwrap();
            assert!(path.is_file(), "{} created at bind", path.display());
            let b = instance(&v1).unwrap().open("default").unwrap();
            b.set("k", b"v".to_vec()).unwrap();
            assert_eq!(b.increment("count", 3), Ok(3));
            v1.unbind();
            // The bucket handle still works after unbind: the store closes with its last user.
            assert_eq!(b.increment("count", 1), Ok(4));
        }
        let abs = std::path::absolute(&path).unwrap();
        assert!(
            lock(&REDB_STORES)
                .get(&abs)
                .is_none_or(|w| w.strong_count() == 0),
            "the database is closed once nobody holds it"
        );
        // "Restart": open the file again.
        let v2 = bind(&m, &entry, dir.path()).unwrap();
        let b = instance(&v2).unwrap().open(&name).unwrap();
        assert_eq!(b.get("k"), Ok(Some(b"v".to_vec())));
        assert_eq!(b.increment("count", 1), Ok(5));
        // The file really is a redb database with a table named after the bucket.
        drop(b);
        v2.unbind();
        drop(v2);
        let db = redb::Database::open(&path).unwrap();
        let txn = db.begin_read().unwrap();
        let t = txn.open_table(table(&name)).unwrap();
        assert_eq!(t.get("count").unwrap().unwrap().value(), b"5");
    }

    #[test]
    fn redb_redeploy_reuses_the_open_database() {
        let dir = tempfile::tempdir().unwrap();
        let name = unique("redeploy");
        let m = manifest(&name);
        let entry = grant(&["store"], &[("backend", "redb"), ("bucket", "data")]);
        let v1 = bind(&m, &entry, dir.path()).unwrap();
        let old = instance(&v1).unwrap();
        assert_eq!(old.bucket_name(), "data");
        old.open("data").unwrap().set("k", b"1".to_vec()).unwrap();
        // Retire v1 while one of its instances is still running, then deploy v2.
        v1.unbind();
        drop(v1);
        let v2 = bind(&m, &entry, dir.path()).expect("redeploy reopens");
        let new = instance(&v2).unwrap();
        assert_eq!(new.open("").unwrap().get("k"), Ok(Some(b"1".to_vec())));
        new.open("").unwrap().set("k", b"2".to_vec()).unwrap();
        assert_eq!(old.open("").unwrap().get("k"), Ok(Some(b"2".to_vec())));
        // Both bound at once (new version first, then the old one retired) also works.
        let v3 = bind(&m, &entry, dir.path()).unwrap();
        drop((old, new, v2));
        assert_eq!(
            instance(&v3).unwrap().open("").unwrap().get("k"),
            Ok(Some(b"2".to_vec()))
        );
        // Two workloads have two files.
        let w = bind(&manifest(&unique("redeploy-other")), &entry, dir.path()).unwrap();
        assert_eq!(instance(&w).unwrap().open("").unwrap().get("k"), Ok(None));
    }

    #[test]
    fn bind_refuses_bad_config() {
        let dir = tempfile::tempdir().unwrap();
        let m = manifest(&unique("bad"));
        let e = bind(&m, &grant(&["store"], &[("backend", "redis")]), dir.path())
            .err()
            .unwrap();
        assert_eq!(e.field, "spec.hostInterfaces[1].config.backend");
        assert!(
            e.message.contains("redis") && e.hint.contains("memory, redb"),
            "{e}"
        );
        let e = bind(&m, &grant(&["store"], &[("bucket", "")]), dir.path())
            .err()
            .unwrap();
        assert_eq!(e.field, "spec.hostInterfaces[1].config.bucket");
        let long = "b".repeat(MAX_BUCKET_NAME_BYTES + 1);
        assert!(bind(&m, &grant(&["store"], &[("bucket", &long)]), dir.path()).is_err());
        // The data directory cannot be created: a file is in the way.
        let file = dir.path().join("not-a-dir");
        std::fs::write(&file, b"").unwrap();
        let e = bind(&m, &grant(&["store"], &[("backend", "redb")]), &file)
            .err()
            .unwrap();
        assert_eq!(e.field, "spec.hostInterfaces[1].config.backend");
        assert!(e.message.contains("cannot create"), "{e}");
        // A file that is not a redb database is an error at bind, not a panic.
        let name = unique("corrupt");
        let path = redb_path(dir.path(), "default", &name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, vec![0xab; 8192]).unwrap();
        let e = bind(
            &manifest(&name),
            &grant(&["store"], &[("backend", "redb")]),
            dir.path(),
        )
        .err()
        .unwrap();
        assert_eq!(e.field, "spec.hostInterfaces[1].config.backend");
        assert!(e.message.contains(&name), "names the file: {e}");
    }

    #[test]
    fn linked_interfaces_follow_the_grant() {
        let grant_of = |ifaces: &[&str]| {
            Linked::from_grant(Some(
                &ifaces.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            ))
        };
        let l = |store, atomics, batch| Linked {
            store,
            atomics,
            batch,
        };
        assert_eq!(grant_of(&["store"]), l(true, false, false));
        assert_eq!(grant_of(&["store", "atomics"]), l(true, true, false));
        assert_eq!(grant_of(&["batch"]), l(true, false, true));
        assert_eq!(
            grant_of(&["store", "atomics", "batch"]),
            l(true, true, true)
        );
        assert_eq!(Linked::from_grant(None), l(true, true, true));
    }

    #[test]
    fn links_into_a_linker() {
        let engine = wasmtime::Engine::default();
        let dir = tempfile::tempdir().unwrap();
        let m = manifest(&unique("link"));
        let binding = bind(&m, &grant(&["store", "atomics", "batch"], &[]), dir.path()).unwrap();
        let mut linker = Linker::<HostState>::new(&engine);
        binding.add_to_linker(&mut linker).unwrap();
    }

    // --- the host functions, without wasm --------------------------------------------------

    #[test]
    fn host_functions_through_the_resource_table() {
        use atomics::Host as _;
        use batch::Host as _;
        use store::{Host as _, HostBucket as _};

        let inst = Instance::new(KvStore::memory_unshared(), "todo");
        let mut table = ResourceTable::new();
        let mut v = KeyValueView {
            instance: Some(&inst),
            table: &mut table,
        };
        let b = v.open("default".into()).unwrap().unwrap();
        let rep = b.rep();
        let b2 = || Resource::<Bucket>::new_borrow(rep);
        assert!(matches!(
            v.open("someone-else".into()).unwrap(),
            Err(store::Error::NoSuchStore)
        ));
        v.set(b2(), "k".into(), b"v".to_vec()).unwrap().unwrap();
        assert_eq!(
            v.get(b2(), "k".into()).unwrap().unwrap(),
            Some(b"v".to_vec())
        );
        assert!(v.exists(b2(), "k".into()).unwrap().unwrap());
        assert_eq!(v.increment(b2(), "n".into(), 2).unwrap().unwrap(), 2);
        let page = v.list_keys(b2(), None).unwrap().unwrap();
        assert_eq!(
            (page.keys, page.cursor),
            (vec!["k".into(), "n".into()], None)
        );
        assert_eq!(
            v.get_many(b2(), vec!["k".into(), "x".into()])
                .unwrap()
                .unwrap(),
            vec![Some(("k".into(), b"v".to_vec())), None]
        );
        v.set_many(b2(), vec![("x".into(), vec![])])
            .unwrap()
            .unwrap();
        v.delete_many(b2(), vec!["x".into(), "n".into()])
            .unwrap()
            .unwrap();
        v.delete(b2(), "k".into()).unwrap().unwrap();
        assert!(v.list_keys(b2(), None).unwrap().unwrap().keys.is_empty());
        match v
            .set(b2(), "k".into(), vec![0; MAX_VALUE_BYTES + 1])
            .unwrap()
        {
            Err(store::Error::Other(m)) => assert!(m.contains("MAX_VALUE_BYTES")),
            other => panic!("{other:?}"),
        }
        store::HostBucket::drop(&mut v, b).unwrap();
        assert!(v.get(b2(), "k".into()).is_err(), "a dropped bucket traps");

        // No keyvalue state for this instance: open is refused.
        let mut table = ResourceTable::new();
        let mut v = KeyValueView {
            instance: None,
            table: &mut table,
        };
        assert!(matches!(
            v.open("default".into()).unwrap(),
            Err(store::Error::AccessDenied)
        ));
    }

    // --- memory and redb agree ---------------------------------------------------------------

    #[derive(Debug, Clone)]
    enum Op {
        Get(String),
        Set(String, Vec<u8>),
        Delete(String),
        Exists(String),
        Increment(String, u64),
        GetMany(Vec<String>),
        SetMany(Vec<(String, Vec<u8>)>),
        DeleteMany(Vec<String>),
        /// The next page (size 1..4) after the cursor the last `Page` returned.
        Page(usize),
        /// Every key, paging from the start with pages of this size.
        ListAll(usize),
        /// A page (size, then offset) through a new handle: the cursor is an offset.
        PageAt(usize, u64),
    }

    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Out {
        Value(Result<Option<Vec<u8>>, KvError>),
        Unit(Result<(), KvError>),
        Bool(Result<bool, KvError>),
        Count(Result<u64, KvError>),
        Many(Result<Entries, KvError>),
        Page(Result<Page, KvError>),
        All(Result<Vec<Page>, KvError>),
    }

    fn key() -> impl Strategy<Value = String> {
        "[abc]{0,3}"
    }

    fn value() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..6),
            (0u64..100).prop_map(|n| n.to_string().into_bytes()),
            Just(u64::MAX.to_string().into_bytes()),
        ]
    }

    fn op() -> impl Strategy<Value = Op> {
        let keys = || proptest::collection::vec(key(), 0..5);
        prop_oneof![
            key().prop_map(Op::Get),
            (key(), value()).prop_map(|(k, v)| Op::Set(k, v)),
            key().prop_map(Op::Delete),
            key().prop_map(Op::Exists),
            (key(), prop_oneof![0u64..5, Just(u64::MAX)]).prop_map(|(k, d)| Op::Increment(k, d)),
            keys().prop_map(Op::GetMany),
            proptest::collection::vec((key(), value()), 0..5).prop_map(Op::SetMany),
            keys().prop_map(Op::DeleteMany),
            (1usize..4).prop_map(Op::Page),
            (1usize..4).prop_map(Op::ListAll),
            (1usize..4, 0u64..8).prop_map(|(size, at)| Op::PageAt(size, at)),
        ]
    }

    /// Applies `op` to `b`; `cursor` is the state of the `Page` walk.
    fn apply(b: &mut Bucket, cursor: &mut Option<u64>, op: &Op) -> Out {
        match op.clone() {
            Op::Get(k) => Out::Value(b.get(&k)),
            Op::Set(k, v) => Out::Unit(b.set(&k, v)),
            Op::Delete(k) => Out::Unit(b.delete(&k)),
            Op::Exists(k) => Out::Bool(b.exists(&k)),
            Op::Increment(k, d) => Out::Count(b.increment(&k, d)),
            Op::GetMany(ks) => Out::Many(b.get_many(ks)),
            Op::SetMany(kvs) => Out::Unit(b.set_many(kvs)),
            Op::DeleteMany(ks) => Out::Unit(b.delete_many(ks)),
            Op::Page(size) => {
                let r = b.list_page(*cursor, size);
                if let Ok((_, next)) = &r {
                    *cursor = *next;
                }
                Out::Page(r)
            }
            Op::PageAt(size, at) => {
                let mut fresh = Bucket {
                    store: b.store.clone(),
                    name: b.name.clone(),
                    resume: None,
                };
                Out::Page(fresh.list_page(Some(at), size))
            }
            Op::ListAll(size) => {
                let mut pages = Vec::new();
                let mut c = None;
                let all = loop {
                    match b.list_page(c, size) {
                        Ok(page) => {
                            c = page.1;
                            pages.push(page);
                            if c.is_none() {
                                break Ok(pages);
                            }
                        }
                        Err(e) => break Err(e),
                    }
                };
                Out::All(all)
            }
        }
    }

    #[test]
    fn memory_and_redb_agree() {
        let dir = tempfile::tempdir().unwrap();
        let redb = KvStore::redb(&dir.path().join("agree.redb")).unwrap();
        let runs = AtomicUsize::new(0);
        let mut runner = TestRunner::new(Config {
            cases: 64,
            failure_persistence: None,
            ..Config::default()
        });
        runner
            .run(&proptest::collection::vec(op(), 1..40), |ops| {
                // A fresh bucket per run (shrinking re-runs too) in the one redb file.
                let bucket = format!("run{}", runs.fetch_add(1, Ordering::Relaxed));
                let mut mem = open(&KvStore::memory_unshared(), &bucket);
                let mut disk = open(&redb, &bucket);
                let (mut mc, mut dc) = (None, None);
                for (i, op) in ops.iter().enumerate() {
                    let m = apply(&mut mem, &mut mc, op);
                    let d = apply(&mut disk, &mut dc, op);
                    prop_assert_eq!(&m, &d, "op {} {:?} disagrees", i, op);
                }
                // And the final contents are the same.
                let all = Op::ListAll(1000);
                prop_assert_eq!(
                    apply(&mut mem, &mut None, &all),
                    apply(&mut disk, &mut None, &all)
                );
                Ok(())
            })
            .unwrap();
    }

    // --- the kv-counter guest, end to end ----------------------------------------------------

    /// `kv-counter.wasm` from `WEFT_GUESTS_DIR`. Never skipped: without the fixtures the test
    /// fails and says how to build them (scripts/test.sh does).
    fn kv_counter_guest() -> Option<PathBuf> {
        let Some(dir) = std::env::var_os("WEFT_GUESTS_DIR") else {
            panic!(
                "WEFT_GUESTS_DIR is not set: build the guests with tests/fixtures/build-guests.sh \
                 and export WEFT_GUESTS_DIR (scripts/test.sh does both)"
            );
        };
        let path = PathBuf::from(dir).join("kv-counter.wasm");
        assert!(
            path.is_file(),
            "{} is missing: rebuild with tests/fixtures/build-guests.sh",
            path.display()
        );
        Some(path)
    }

    struct Served {
        service: crate::http::HttpService,
        plugins: super::super::BoundPlugins,
    }

    fn serve(
        engine: &crate::engine::WeftEngine,
        component: &wasmtime::component::Component,
        manifest: &Manifest,
        data_dir: &Path,
    ) -> Served {
        let logs = LogSink::new(&manifest.metadata.name);
        let plugins = super::super::BoundPlugins::bind(manifest, data_dir.to_path_buf(), &logs)
            .unwrap_or_else(|e| panic!("bind: {e:?}"));
        let service = crate::http::HttpService::for_workload(
            engine,
            component,
            crate::http::HttpOptions::default(),
            crate::http::WorkloadExtras {
                component: "api".into(),
                plugins: plugins.clone(),
                logs,
                service: None,
            },
        )
        .unwrap_or_else(|e| panic!("serve kv-counter: {e}"));
        Served { service, plugins }
    }

    async fn call(s: &Served, method: &str, path: &str, body: Vec<u8>) -> (u16, String) {
        use http_body_util::BodyExt as _;
        let body = http_body_util::Full::new(bytes::Bytes::from(body))
            .map_err(|never: std::convert::Infallible| match never {})
            .boxed_unsync();
        let request = http::Request::builder()
            .method(method)
            .uri(format!("http://localhost{path}"))
            .header("host", "localhost")
            .body(body)
            .unwrap();
        let response = s.service.handle(request).await.unwrap();
        let status = response.status().as_u16();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }

    fn kv_manifest(name: &str, backend: &str) -> Manifest {
        let text = format!(
            "apiVersion: weft.dev/v1alpha1\nkind: Workload\nmetadata: {{ name: {name} }}\n\
             spec:\n  components:\n    - name: api\n      image: ./kv-counter.wasm\n\
             \x20 hostInterfaces:\n\
             \x20   - {{ namespace: wasi, package: http, interfaces: [incoming-handler] }}\n\
             \x20   - {{ namespace: wasi, package: keyvalue, interfaces: [store, atomics],\n\
             \x20        config: {{ backend: {backend} }} }}\n"
        );
        weft_manifest::parse_str(&text, Path::new("kv.yaml"))
            .expect("kv manifest")
            .remove(0)
    }

    #[test]
    fn kv_counter_guest_end_to_end() {
        let Some(wasm) = kv_counter_guest() else {
            return;
        };
        let engine = crate::engine::WeftEngine::new(&Default::default()).unwrap();
        let loaded = crate::load::load(&engine, &wasm, None).unwrap();
        let crate::load::Compiled::Component(component) = loaded.compiled else {
            panic!("kv-counter.wasm is not a component");
        };
        let dir = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            // memory: every request is a fresh instance; they share the store.
            let s = serve(
                &engine,
                &component,
                &kv_manifest(&unique("kvc"), "memory"),
                dir.path(),
            );
            assert_eq!(
                call(&s, "GET", "/", vec![]).await,
                (200, "count=1\n".into())
            );
            assert_eq!(
                call(&s, "GET", "/", vec![]).await,
                (200, "count=2\n".into())
            );
            assert_eq!(
                call(&s, "PUT", "/set?key=greeting", b"hello".to_vec()).await,
                (204, String::new())
            );
            assert_eq!(
                call(&s, "GET", "/get?key=greeting", vec![]).await,
                (200, "hello".into())
            );
            assert_eq!(
                call(&s, "GET", "/get?key=nope", vec![]).await,
                (404, "not found\n".into())
            );
            assert_eq!(
                call(&s, "GET", "/keys", vec![]).await,
                (200, "count\ngreeting\n".into())
            );
            assert_eq!(
                call(&s, "GET", "/other-bucket", vec![]).await,
                (403, "open(\"someone-else\"): no-such-store\n".into())
            );
            let (status, text) =
                call(&s, "PUT", "/set?key=big", vec![b'x'; MAX_VALUE_BYTES + 1]).await;
            assert_eq!(status, 500, "{text}");
            assert!(text.contains("MAX_VALUE_BYTES"), "{text}");
            s.service.close();
            s.plugins.unbind();

            // redb: the count survives tearing the workload down and binding it again.
            let m = kv_manifest(&unique("kvc-redb"), "redb");
            let s = serve(&engine, &component, &m, dir.path());
            assert_eq!(
                call(&s, "GET", "/", vec![]).await,
                (200, "count=1\n".into())
            );
            assert_eq!(
                call(&s, "GET", "/", vec![]).await,
                (200, "count=2\n".into())
            );
            s.service.close();
            s.plugins.unbind();
            drop(s);
            let s = serve(&engine, &component, &m, dir.path());
            assert_eq!(
                call(&s, "GET", "/", vec![]).await,
                (200, "count=3\n".into())
            );
            s.plugins.unbind();
        });
    }
}
