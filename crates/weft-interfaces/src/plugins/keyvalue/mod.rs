//! `wasi:keyvalue@0.2.0-draft` (`store`, `atomics`, `batch`: what Spin and wasmCloud guests
//! import) with two backends, picked by the grant's `config.backend`:
//!
//! - `memory` (the default, `memory.rs`): one process-wide map per workload
//!   (`<namespace>.<name>`), shared by every instance and by every bound version of the
//!   workload; it lives while a version is bound and is lost when the host stops.
//! - `redb` (`redb.rs`): one file per workload, `<data_dir>/keyvalue/<namespace>.<name>.redb`,
//!   one redb table per bucket, kept across host restarts.
//!
//! This file is the interface glue: the bindings, the limits every guest-supplied key, value
//! and batch is checked against, the `bucket` resource, the plugin and its binding. A backend
//! implements [`KvBackend`] (`backend.rs`) and sees only checked input; [`KvStore::from_backend`]
//! takes any backend.
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
//! operations run in one transaction (redb) or under one lock (memory). Host functions are async:
//! a backend may await a server.
//!
//! Limits (a guest cannot make the host allocate without bound; exceeding one is
//! `error::other` naming the limit): [`MAX_KEY_BYTES`], [`MAX_VALUE_BYTES`],
//! [`MAX_BATCH_KEYS`] keys per batch call, [`MAX_BATCH_READ_BYTES`] returned by one
//! `get-many`, and [`MAX_MEMORY_STORE_BYTES`] per workload for the memory backend.

mod backend;
mod memory;
mod redb;
#[cfg(test)]
mod tests;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use wasmtime::component::{HasData, Linker, Resource, ResourceTable};
use weft_manifest::KeyValueBackend;

use self::backend::shown;
pub use self::backend::{
    Entries, KvBackend, KvError, ReadBudget, Start, add_counter, parse_counter, storage,
};
use super::{BindContext, Binding, HostPlugin, PluginError, PluginInstances, PluginView};
use crate::outbound::{HostSpan, OutgoingTracer};

mod bindings {
    wasmtime::component::bindgen!({
        path: "wit/keyvalue",
        world: "wasi:keyvalue/imports",
        imports: { default: async | trappable },
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
// Errors and limits

impl From<KvError> for store::Error {
    fn from(e: KvError) -> Self {
        match e {
            KvError::NoSuchStore => store::Error::NoSuchStore,
            KvError::AccessDenied => store::Error::AccessDenied,
            KvError::Other(m) => store::Error::Other(m),
        }
    }
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

// ---------------------------------------------------------------------------------------------
// The store

/// One workload's store: all its buckets, in some backend. Cheap to clone (an `Arc`).
#[derive(Clone)]
pub struct KvStore {
    backend: Arc<dyn KvBackend>,
}

impl fmt::Debug for KvStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KvStore({})", self.backend.describe())
    }
}

impl KvStore {
    /// The memory store of `owner`, shared with every other binding of the same owner.
    pub fn memory(owner: &str) -> Self {
        KvStore::from_backend(memory::shared(owner))
    }

    /// A fresh memory store shared with nobody (tests).
    #[cfg(test)]
    fn memory_unshared() -> Self {
        KvStore::from_backend(Arc::new(memory::MemoryStore::default()))
    }

    /// The redb database at `path` (created if missing), or the one this process already has
    /// open there.
    pub fn redb(path: &Path) -> Result<Self, String> {
        Ok(KvStore::from_backend(self::redb::open(path)?))
    }

    /// A store in any backend (the lattice's NATS JetStream KV).
    pub fn from_backend(backend: Arc<dyn KvBackend>) -> Self {
        KvStore { backend }
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

/// One page of `list-keys`: the keys, and the cursor of the next page if there is one.
pub type Page = (Vec<String>, Option<u64>);

impl Bucket {
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        check_key(key)?;
        self.store.backend.get(&self.name, key).await
    }

    pub async fn set(&self, key: &str, value: Vec<u8>) -> Result<(), KvError> {
        check_key(key)?;
        check_value(key, &value)?;
        self.store.backend.set(&self.name, key, value).await
    }

    pub async fn delete(&self, key: &str) -> Result<(), KvError> {
        check_key(key)?;
        self.store.backend.delete(&self.name, key).await
    }

    pub async fn exists(&self, key: &str) -> Result<bool, KvError> {
        check_key(key)?;
        self.store.backend.exists(&self.name, key).await
    }

    pub async fn list_keys(&mut self, cursor: Option<u64>) -> Result<Page, KvError> {
        self.list_page(cursor, LIST_PAGE_KEYS).await
    }

    async fn list_page(&mut self, cursor: Option<u64>, page: usize) -> Result<Page, KvError> {
        let offset = cursor.unwrap_or(0);
        let start = match (&self.resume, cursor) {
            (Some((at, last)), Some(c)) if *at == c => Start::After(last.clone()),
            _ => Start::Skip(offset),
        };
        let mut keys = self
            .store
            .backend
            .list(&self.name, &start, page.saturating_add(1))
            .await?;
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

    pub async fn increment(&self, key: &str, delta: u64) -> Result<u64, KvError> {
        check_key(key)?;
        self.store.backend.increment(&self.name, key, delta).await
    }

    pub async fn get_many(&self, keys: Vec<String>) -> Result<Entries, KvError> {
        check_batch("get-many", keys.len())?;
        keys.iter().try_for_each(|k| check_key(k))?;
        self.store.backend.get_many(&self.name, keys).await
    }

    pub async fn set_many(&self, entries: Vec<(String, Vec<u8>)>) -> Result<(), KvError> {
        check_batch("set-many", entries.len())?;
        for (k, v) in &entries {
            check_key(k)?;
            check_value(k, v)?;
        }
        self.store.backend.set_many(&self.name, entries).await
    }

    pub async fn delete_many(&self, keys: Vec<String>) -> Result<(), KvError> {
        check_batch("delete-many", keys.len())?;
        keys.iter().try_for_each(|k| check_key(k))?;
        self.store.backend.delete_many(&self.name, &keys).await
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
    tracer: Option<&'a Arc<dyn OutgoingTracer>>,
    stats: Option<&'a Arc<weft_stats::WorkloadStats>>,
}

fn view<T: PluginView>(h: &mut T) -> KeyValueView<'_> {
    let ctx = h.plugins();
    KeyValueView {
        instance: ctx.instances.keyvalue.as_ref(),
        table: ctx.table,
        tracer: ctx.tracer,
        stats: ctx.stats,
    }
}

/// The span `name` (`keyvalue.OP`) for one bucket operation when the request is traced: the
/// operation and the bucket as attributes, never the keys or values (they may carry secrets).
fn op_span(
    tracer: Option<&Arc<dyn OutgoingTracer>>,
    stats: Option<&Arc<weft_stats::WorkloadStats>>,
    name: &'static str,
    bucket: &Bucket,
) -> Option<Box<dyn HostSpan>> {
    let op = name.trim_start_matches("keyvalue.");
    // Counted whether traced or not (`weft_keyvalue_operations_total`).
    if let Some(stats) = stats
        && let Some(kind) = weft_stats::KeyvalueOp::ALL.iter().find(|k| k.name() == op)
    {
        stats.keyvalue_op(*kind);
    }
    tracer.map(|t| {
        t.span(
            name,
            &[("db.operation.name", op), ("db.namespace", &bucket.name)],
        )
    })
}

/// Ends `span` with the operation's outcome and converts the error for the guest.
fn traced<T>(
    span: Option<Box<dyn HostSpan>>,
    result: Result<T, KvError>,
) -> Result<T, store::Error> {
    if let Some(span) = span {
        span.end(result.as_ref().err().map(|e| e.to_string()));
    }
    result.map_err(Into::into)
}

type HostResult<T> = wasmtime::Result<Result<T, store::Error>>;

impl store::Host for KeyValueView<'_> {
    async fn open(&mut self, identifier: String) -> HostResult<Resource<Bucket>> {
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
    async fn get(&mut self, bucket: Resource<Bucket>, key: String) -> HostResult<Option<Vec<u8>>> {
        let b = self.table.get(&bucket)?;
        let span = op_span(self.tracer, self.stats, "keyvalue.get", b);
        Ok(traced(span, b.get(&key).await))
    }

    async fn set(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        value: Vec<u8>,
    ) -> HostResult<()> {
        let b = self.table.get(&bucket)?;
        let span = op_span(self.tracer, self.stats, "keyvalue.set", b);
        Ok(traced(span, b.set(&key, value).await))
    }

    async fn delete(&mut self, bucket: Resource<Bucket>, key: String) -> HostResult<()> {
        let b = self.table.get(&bucket)?;
        let span = op_span(self.tracer, self.stats, "keyvalue.delete", b);
        Ok(traced(span, b.delete(&key).await))
    }

    async fn exists(&mut self, bucket: Resource<Bucket>, key: String) -> HostResult<bool> {
        let b = self.table.get(&bucket)?;
        let span = op_span(self.tracer, self.stats, "keyvalue.exists", b);
        Ok(traced(span, b.exists(&key).await))
    }

    async fn list_keys(
        &mut self,
        bucket: Resource<Bucket>,
        cursor: Option<u64>,
    ) -> HostResult<store::KeyResponse> {
        let b = self.table.get_mut(&bucket)?;
        let span = op_span(self.tracer, self.stats, "keyvalue.list-keys", b);
        let page = b.list_keys(cursor).await;
        Ok(traced(
            span,
            page.map(|(keys, cursor)| store::KeyResponse { keys, cursor }),
        ))
    }

    async fn drop(&mut self, bucket: Resource<Bucket>) -> wasmtime::Result<()> {
        self.table.delete(bucket)?;
        Ok(())
    }
}

impl atomics::Host for KeyValueView<'_> {
    async fn increment(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        delta: u64,
    ) -> HostResult<u64> {
        let b = self.table.get(&bucket)?;
        let span = op_span(self.tracer, self.stats, "keyvalue.increment", b);
        Ok(traced(span, b.increment(&key, delta).await))
    }
}

impl batch::Host for KeyValueView<'_> {
    async fn get_many(
        &mut self,
        bucket: Resource<Bucket>,
        keys: Vec<String>,
    ) -> HostResult<Entries> {
        let b = self.table.get(&bucket)?;
        let span = op_span(self.tracer, self.stats, "keyvalue.get-many", b);
        Ok(traced(span, b.get_many(keys).await))
    }

    async fn set_many(
        &mut self,
        bucket: Resource<Bucket>,
        key_values: Vec<(String, Vec<u8>)>,
    ) -> HostResult<()> {
        let b = self.table.get(&bucket)?;
        let span = op_span(self.tracer, self.stats, "keyvalue.set-many", b);
        Ok(traced(span, b.set_many(key_values).await))
    }

    async fn delete_many(&mut self, bucket: Resource<Bucket>, keys: Vec<String>) -> HostResult<()> {
        let b = self.table.get(&bucket)?;
        let span = op_span(self.tracer, self.stats, "keyvalue.delete-many", b);
        Ok(traced(span, b.delete_many(keys).await))
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

impl<T: PluginView + 'static> HostPlugin<T> for KeyValuePlugin {
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
    fn bind(&self, ctx: &BindContext<'_>) -> Result<Arc<dyn Binding<T>>, PluginError> {
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

impl<T: PluginView + 'static> Binding<T> for Bound {
    fn add_to_linker(&self, linker: &mut Linker<T>) -> wasmtime::Result<()> {
        if self.linked.store {
            store::add_to_linker::<T, KeyValue>(linker, view::<T>)?;
        }
        if self.linked.atomics {
            atomics::add_to_linker::<T, KeyValue>(linker, view::<T>)?;
        }
        if self.linked.batch {
            batch::add_to_linker::<T, KeyValue>(linker, view::<T>)?;
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
