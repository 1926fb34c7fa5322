//! The `redb` key-value backend: one file per workload,
//! `<data_dir>/keyvalue/<namespace>.<name>.redb`, one redb table per bucket. Opened once at
//! bind and shared by every instance; kept across host restarts. A process-wide registry (weak
//! references, by path) hands a redeploy the database an older version still has open,
//! because redb allows one open per file per process.

use std::collections::HashMap;
use std::ops::Bound as RangeBound;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex, Weak};
use std::time::Duration;

use redb::{ReadableDatabase, ReadableTable, TableDefinition};

use super::REDB_CACHE_BYTES;
use super::backend::{
    Entries, KvBackend, KvError, ReadBudget, Start, add_counter, lock, parse_counter, storage,
    to_usize,
};

/// Open redb databases by path: redb allows one open per file per process.
pub(super) static REDB_STORES: LazyLock<Mutex<HashMap<PathBuf, Weak<RedbStore>>>> =
    LazyLock::new(Default::default);

/// The redb database at `path` (created if missing), or the one this process already has
/// open there.
pub(super) fn open(path: &Path) -> Result<Arc<RedbStore>, String> {
    let path = std::path::absolute(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut reg = lock(&REDB_STORES);
    reg.retain(|_, w| w.strong_count() > 0);
    if let Some(s) = reg.get(&path).and_then(Weak::upgrade) {
        return Ok(s);
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
    Ok(store)
}

/// The redb backend: one database, one table per bucket (`&str` keys, byte values).
pub(super) struct RedbStore {
    db: redb::Database,
    path: PathBuf,
}

type RedbTable<'a> = TableDefinition<'a, &'static str, &'static [u8]>;

pub(super) fn table(bucket: &str) -> RedbTable<'_> {
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
        let mut budget = ReadBudget::new();
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

#[async_trait::async_trait]
impl KvBackend for RedbStore {
    fn describe(&self) -> String {
        format!("redb {}", self.path.display())
    }

    async fn get(&self, bucket: &str, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        RedbStore::get(self, bucket, key)
    }

    async fn set(&self, bucket: &str, key: &str, value: Vec<u8>) -> Result<(), KvError> {
        RedbStore::set_many(self, bucket, &[(key.to_string(), value)])
    }

    async fn delete(&self, bucket: &str, key: &str) -> Result<(), KvError> {
        RedbStore::delete_many(self, bucket, &[key.to_string()])
    }

    async fn exists(&self, bucket: &str, key: &str) -> Result<bool, KvError> {
        RedbStore::exists(self, bucket, key)
    }

    async fn list(
        &self,
        bucket: &str,
        start: &Start,
        limit: usize,
    ) -> Result<Vec<String>, KvError> {
        RedbStore::list(self, bucket, start, limit)
    }

    async fn increment(&self, bucket: &str, key: &str, delta: u64) -> Result<u64, KvError> {
        RedbStore::increment(self, bucket, key, delta)
    }

    async fn get_many(&self, bucket: &str, keys: Vec<String>) -> Result<Entries, KvError> {
        RedbStore::get_many(self, bucket, keys)
    }

    async fn set_many(&self, bucket: &str, entries: Vec<(String, Vec<u8>)>) -> Result<(), KvError> {
        RedbStore::set_many(self, bucket, &entries)
    }

    async fn delete_many(&self, bucket: &str, keys: &[String]) -> Result<(), KvError> {
        RedbStore::delete_many(self, bucket, keys)
    }
}
