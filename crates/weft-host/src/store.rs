//! Desired state: the workloads a host should run, kept in a redb file so they come back after a
//! restart. Keys are workload keys chosen by the host (e.g. `namespace/name`); values are
//! [`StoredWorkload`]s encoded as JSON.
//!
//! The file is locked while open: a second host on the same data directory gets
//! [`StoreError::InUse`]. Every call is a short blocking transaction (`put` and `delete` commit
//! durably); call them from `spawn_blocking` if that matters to the caller.

use std::path::{Path, PathBuf};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

const WORKLOADS: TableDefinition<&str, &str> = TableDefinition::new("workloads");

/// One desired workload: where its manifest came from and the manifest text as applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredWorkload {
    pub path: PathBuf,
    pub manifest: String,
}

/// Errors from the desired-state store; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create the directory for the state file {}: {source}", file.display())]
    CreateDir {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the state file {} is in use by another process (is another `weft up` running with this \
         data directory?): stop it, or use another --data-dir",
        file.display()
    )]
    InUse { file: PathBuf },
    #[error(
        "cannot open the state file {}: {source} (if it is damaged, move it away and `weft up` \
         starts with no workloads)",
        file.display()
    )]
    Open {
        file: PathBuf,
        #[source]
        source: Box<redb::DatabaseError>,
    },
    #[error("cannot {op} in the state file {}: {source}", file.display())]
    Db {
        file: PathBuf,
        op: &'static str,
        #[source]
        source: Box<redb::Error>,
    },
    #[error(
        "cannot store workload `{key}` in {}: {source} (the manifest path must be valid UTF-8)",
        file.display()
    )]
    Encode {
        file: PathBuf,
        key: String,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "workload `{key}` in the state file {} is unreadable: {source}; delete it \
         (`weft delete`) or move the file away",
        file.display()
    )]
    Decode {
        file: PathBuf,
        key: String,
        #[source]
        source: serde_json::Error,
    },
}

/// The desired-state database.
pub struct DesiredState {
    db: Database,
    file: PathBuf,
}

impl std::fmt::Debug for DesiredState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DesiredState")
            .field("file", &self.file)
            .finish_non_exhaustive()
    }
}

impl DesiredState {
    /// Opens (creating if needed, with its parent directories) the state file at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let file = path.to_path_buf();
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|source| StoreError::CreateDir {
                file: file.clone(),
                source,
            })?;
        }
        let db = match Database::create(path) {
            Ok(db) => db,
            Err(redb::DatabaseError::DatabaseAlreadyOpen) => {
                return Err(StoreError::InUse { file });
            }
            Err(source) => {
                return Err(StoreError::Open {
                    file,
                    source: Box::new(source),
                });
            }
        };
        let state = DesiredState { db, file };
        // Create the table up front so readers never see it missing.
        state.write("create the workloads table", |_| Ok(()))?;
        Ok(state)
    }

    /// The state file's path.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// Inserts or replaces the workload under `key`.
    pub fn put(&self, key: &str, w: &StoredWorkload) -> Result<(), StoreError> {
        let json = serde_json::to_string(w).map_err(|source| StoreError::Encode {
            file: self.file.clone(),
            key: key.to_string(),
            source,
        })?;
        self.write("store a workload", |table| {
            table.insert(key, json.as_str())?;
            Ok(())
        })
    }

    /// Removes the workload under `key`; `false` if there was none.
    pub fn delete(&self, key: &str) -> Result<bool, StoreError> {
        let mut removed = false;
        self.write("delete a workload", |table| {
            removed = table.remove(key)?.is_some();
            Ok(())
        })?;
        Ok(removed)
    }

    /// The workload under `key`, if any.
    pub fn get(&self, key: &str) -> Result<Option<StoredWorkload>, StoreError> {
        let op = "read a workload";
        let txn = self.db.begin_read().map_err(|e| self.db_err(op, e))?;
        let table = txn.open_table(WORKLOADS).map_err(|e| self.db_err(op, e))?;
        let Some(value) = table.get(key).map_err(|e| self.db_err(op, e))? else {
            return Ok(None);
        };
        self.decode(key, value.value()).map(Some)
    }

    /// Every stored workload, sorted by key.
    pub fn list(&self) -> Result<Vec<(String, StoredWorkload)>, StoreError> {
        let op = "list workloads";
        let txn = self.db.begin_read().map_err(|e| self.db_err(op, e))?;
        let table = txn.open_table(WORKLOADS).map_err(|e| self.db_err(op, e))?;
        let mut out = Vec::new();
        // redb iterates `&str` keys in byte order, which is the order `String` sorts in.
        for entry in table.iter().map_err(|e| self.db_err(op, e))? {
            let (key, value) = entry.map_err(|e| self.db_err(op, e))?;
            let key = key.value().to_string();
            let workload = self.decode(&key, value.value())?;
            out.push((key, workload));
        }
        Ok(out)
    }

    fn write(
        &self,
        op: &'static str,
        f: impl FnOnce(&mut redb::Table<'_, &'static str, &'static str>) -> Result<(), redb::Error>,
    ) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(|e| self.db_err(op, e))?;
        {
            let mut table = txn.open_table(WORKLOADS).map_err(|e| self.db_err(op, e))?;
            f(&mut table).map_err(|e| self.db_err(op, e))?;
        }
        txn.commit().map_err(|e| self.db_err(op, e))
    }

    fn decode(&self, key: &str, json: &str) -> Result<StoredWorkload, StoreError> {
        serde_json::from_str(json).map_err(|source| StoreError::Decode {
            file: self.file.clone(),
            key: key.to_string(),
            source,
        })
    }

    fn db_err(&self, op: &'static str, e: impl Into<redb::Error>) -> StoreError {
        StoreError::Db {
            file: self.file.clone(),
            op,
            source: Box::new(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(path: &str, manifest: &str) -> StoredWorkload {
        StoredWorkload {
            path: PathBuf::from(path),
            manifest: manifest.to_string(),
        }
    }

    fn tmp() -> tempfile::TempDir {
        match tempfile::tempdir() {
            Ok(d) => d,
            Err(e) => panic!("tempdir: {e}"),
        }
    }

    #[test]
    fn types_are_thread_safe_for_anyhow_and_shared_hosts() {
        fn check<T: Send + Sync + 'static>() {}
        check::<StoreError>();
        check::<DesiredState>();
    }

    #[test]
    fn put_get_list_delete() -> Result<(), StoreError> {
        let dir = tmp();
        let state = DesiredState::open(&dir.path().join("state.redb"))?;
        assert!(state.list()?.is_empty());
        state.put("default/b", &w("/m/b.yaml", "name: b\n"))?;
        state.put("default/a", &w("/m/a.yaml", "name: a\n"))?;
        state.put("other/a", &w("/m/oa.yaml", "name: a\n"))?;
        state.put("default/a", &w("/m/a2.yaml", "name: a # v2\n"))?;
        let keys: Vec<String> = state.list()?.into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["default/a", "default/b", "other/a"]);
        assert_eq!(
            state.get("default/a")?,
            Some(w("/m/a2.yaml", "name: a # v2\n"))
        );
        assert!(state.delete("default/a")?);
        assert!(!state.delete("default/a")?);
        assert_eq!(state.get("default/a")?, None);
        assert_eq!(state.list()?.len(), 2);
        Ok(())
    }

    #[test]
    fn persists_across_reopen_and_creates_parents() -> Result<(), StoreError> {
        let dir = tmp();
        let file = dir.path().join("deep/er/state.redb");
        {
            let state = DesiredState::open(&file)?;
            state.put("x", &w("/m/x.yaml", "unicode: \u{e9}\u{1f600}\n"))?;
            state.put("y", &w("/m/y.yaml", ""))?;
            state.delete("y")?;
        }
        let state = DesiredState::open(&file)?;
        assert_eq!(state.file(), file);
        assert_eq!(
            state.list()?,
            vec![(
                "x".to_string(),
                w("/m/x.yaml", "unicode: \u{e9}\u{1f600}\n")
            )]
        );
        Ok(())
    }

    #[test]
    fn second_open_is_refused_while_in_use() -> Result<(), StoreError> {
        let dir = tmp();
        let file = dir.path().join("state.redb");
        let _first = DesiredState::open(&file)?;
        match DesiredState::open(&file) {
            Err(e @ StoreError::InUse { .. }) => {
                let msg = e.to_string();
                assert!(msg.contains(&file.display().to_string()), "{msg}");
            }
            other => panic!("expected InUse, got {other:?}"),
        }
        Ok(())
    }

    #[test]
    fn not_a_database_names_the_file() -> Result<(), std::io::Error> {
        let dir = tmp();
        let file = dir.path().join("state.redb");
        std::fs::write(&file, b"this is not a redb file, not at all, no no no")?;
        match DesiredState::open(&file) {
            Err(e) => assert!(e.to_string().contains(&file.display().to_string()), "{e}"),
            Ok(_) => panic!("opened garbage"),
        }
        Ok(())
    }

    #[test]
    fn undecodable_value_names_key_and_file() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tmp();
        let file = dir.path().join("state.redb");
        let state = DesiredState::open(&file)?;
        state.write("test", |t| {
            t.insert("bad", "{not json")?;
            Ok(())
        })?;
        let err = match state.list() {
            Err(e) => e,
            Ok(l) => panic!("decoded garbage: {l:?}"),
        };
        let msg = err.to_string();
        assert!(msg.contains("`bad`") && msg.contains("state.redb"), "{msg}");
        // Deleting the bad entry recovers.
        assert!(state.delete("bad")?);
        assert!(state.list()?.is_empty());
        Ok(())
    }

    #[cfg(unix)]
    #[test]
    fn non_utf8_path_is_an_encode_error() -> Result<(), StoreError> {
        use std::os::unix::ffi::OsStrExt;
        let dir = tmp();
        let state = DesiredState::open(&dir.path().join("s.redb"))?;
        let bad = StoredWorkload {
            path: PathBuf::from(std::ffi::OsStr::from_bytes(b"/m/\xff.yaml")),
            manifest: String::new(),
        };
        assert!(matches!(
            state.put("k", &bad),
            Err(StoreError::Encode { .. })
        ));
        Ok(())
    }
}
