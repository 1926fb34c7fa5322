//! The `memory` key-value backend: one process-wide map per workload (`<namespace>.<name>`),
//! shared by every instance and by every bound version of the workload; it lives while a
//! version is bound and is lost when the host stops. Holds at most
//! [`MAX_MEMORY_STORE_BYTES`] of keys and values per workload.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound as RangeBound;
use std::sync::{Arc, LazyLock, Mutex, PoisonError, RwLock, Weak};

use super::MAX_MEMORY_STORE_BYTES;
use super::backend::{
    Entries, KvBackend, KvError, ReadBudget, Start, add_counter, lock, parse_counter, to_usize,
};

/// Memory stores by owner (`namespace.name`): alive while some binding or instance holds them.
static MEMORY_STORES: LazyLock<Mutex<HashMap<String, Weak<MemoryStore>>>> =
    LazyLock::new(Default::default);

/// The memory store of `owner`, shared with every other binding of the same owner.
pub(super) fn shared(owner: &str) -> Arc<MemoryStore> {
    let mut reg = lock(&MEMORY_STORES);
    reg.retain(|_, w| w.strong_count() > 0);
    match reg.get(owner).and_then(Weak::upgrade) {
        Some(s) => s,
        None => {
            let s = Arc::new(MemoryStore::default());
            reg.insert(owner.to_string(), Arc::downgrade(&s));
            s
        }
    }
}

/// The memory backend: buckets of sorted maps, and the bytes they hold.
#[derive(Default)]
pub(super) struct MemoryStore {
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
        let mut budget = ReadBudget::new();
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

#[cfg(test)]
impl MemoryStore {
    /// Key + value bytes held, against [`MAX_MEMORY_STORE_BYTES`].
    pub(super) fn used(&self) -> usize {
        self.read().used
    }
}

#[async_trait::async_trait]
impl KvBackend for MemoryStore {
    fn describe(&self) -> String {
        "memory".into()
    }

    async fn get(&self, bucket: &str, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        Ok(MemoryStore::get(self, bucket, key))
    }

    async fn set(&self, bucket: &str, key: &str, value: Vec<u8>) -> Result<(), KvError> {
        MemoryStore::set_many(self, bucket, vec![(key.to_string(), value)])
    }

    async fn delete(&self, bucket: &str, key: &str) -> Result<(), KvError> {
        MemoryStore::delete_many(self, bucket, &[key.to_string()]);
        Ok(())
    }

    async fn exists(&self, bucket: &str, key: &str) -> Result<bool, KvError> {
        Ok(MemoryStore::exists(self, bucket, key))
    }

    async fn list(
        &self,
        bucket: &str,
        start: &Start,
        limit: usize,
    ) -> Result<Vec<String>, KvError> {
        Ok(MemoryStore::list(self, bucket, start, limit))
    }

    async fn increment(&self, bucket: &str, key: &str, delta: u64) -> Result<u64, KvError> {
        MemoryStore::increment(self, bucket, key, delta)
    }

    async fn get_many(&self, bucket: &str, keys: Vec<String>) -> Result<Entries, KvError> {
        MemoryStore::get_many(self, bucket, keys)
    }

    async fn set_many(&self, bucket: &str, entries: Vec<(String, Vec<u8>)>) -> Result<(), KvError> {
        MemoryStore::set_many(self, bucket, entries)
    }

    async fn delete_many(&self, bucket: &str, keys: &[String]) -> Result<(), KvError> {
        MemoryStore::delete_many(self, bucket, keys);
        Ok(())
    }
}
