//! The persistent compile cache: serialized wasmtime artifacts keyed by the Wasm binary's sha256
//! and by a hash of everything in the engine configuration that affects compiled code.
//!
//! Layout: `<dir>/<engine-key>/<sha256>.{cwasm,mwasm}` with a `.sha256` sidecar holding the
//! artifact's own digest. Loading an artifact is `unsafe` in wasmtime (it is native code), so an
//! artifact is only used when its digest matches the sidecar written next to it by this module;
//! a corrupt or tampered entry is deleted and recompiled. Writes go through a temporary file and
//! a rename, so concurrent writers never expose half-written artifacts.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use wasmtime::Module;
use wasmtime::component::Component;

use sha2::{Digest, Sha256};

use crate::engine::WeftEngine;

/// A loaded, compiled piece of Wasm.
#[derive(Clone)]
pub enum Compiled {
    /// A core module (WASI preview 1 programs).
    Module(Module),
    /// A component.
    Component(Component),
}

/// Hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The on-disk cache of compiled artifacts.
#[derive(Debug, Clone)]
pub struct CompileCache {
    dir: PathBuf,
}

impl CompileCache {
    /// A cache rooted at `dir` (created on first write).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The default location: `$WEFT_CACHE_DIR`, else the user's cache dir + `weft/compiled`.
    pub fn default_dir() -> Option<PathBuf> {
        if let Some(dir) = std::env::var_os("WEFT_CACHE_DIR") {
            return Some(PathBuf::from(dir).join("compiled"));
        }
        dirs::cache_dir().map(|d| d.join("weft").join("compiled"))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub(crate) fn entry_path(&self, engine: &WeftEngine, sha256: &str, component: bool) -> PathBuf {
        let ext = if component { "cwasm" } else { "mwasm" };
        self.dir
            .join(engine_key(engine))
            .join(format!("{sha256}.{ext}"))
    }

    /// Returns the cached artifact for `sha256`, if present and intact.
    pub fn get(&self, engine: &WeftEngine, sha256: &str, component: bool) -> Option<Compiled> {
        let path = self.entry_path(engine, sha256, component);
        let bytes = std::fs::read(&path).ok()?;
        let expected = std::fs::read_to_string(sidecar(&path)).ok()?;
        if expected.trim() != sha256_hex(&bytes) {
            tracing::warn!(path = %path.display(), "compile cache entry does not match its digest; recompiling");
            let _ = std::fs::remove_file(&path);
            return None;
        }
        let result = if component {
            // SAFETY: the bytes were produced by `Component::serialize` of this module under this
            // engine configuration (the directory is keyed by the engine's compatibility hash) and
            // their digest matches the sidecar written together with them, so they are a
            // wasmtime artifact we produced. wasmtime additionally checks version and config.
            #[allow(unsafe_code)]
            unsafe { Component::deserialize(engine.engine(), &bytes) }.map(Compiled::Component)
        } else {
            // SAFETY: as above, for a core module artifact.
            #[allow(unsafe_code)]
            unsafe { Module::deserialize(engine.engine(), &bytes) }.map(Compiled::Module)
        };
        match result {
            Ok(compiled) => {
                tracing::debug!(path = %path.display(), "compile cache hit");
                Some(compiled)
            }
            Err(err) => {
                tracing::warn!(path = %path.display(), error = %err, "unusable compile cache entry; recompiling");
                let _ = std::fs::remove_file(&path);
                None
            }
        }
    }

    /// Stores `compiled` under `sha256`. Failures are logged, never fatal: the cache is an
    /// optimisation.
    pub fn put(&self, engine: &WeftEngine, sha256: &str, compiled: &Compiled) {
        let component = matches!(compiled, Compiled::Component(_));
        let path = self.entry_path(engine, sha256, component);
        if let Err(err) = write_entry(&path, compiled) {
            tracing::warn!(path = %path.display(), error = %err, "could not write compile cache entry");
        }
    }
}

fn sidecar(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".sha256");
    PathBuf::from(s)
}

fn write_entry(path: &Path, compiled: &Compiled) -> anyhow::Result<()> {
    let bytes = match compiled {
        Compiled::Component(c) => c.serialize()?,
        Compiled::Module(m) => m.serialize()?,
    };
    let dir = path
        .parent()
        .ok_or_else(|| anyhow::anyhow!("cache entry has no parent directory"))?;
    std::fs::create_dir_all(dir)?;
    let digest = sha256_hex(&bytes);
    // Sidecar first: a reader that sees the artifact without a matching sidecar recompiles.
    let tmp_sidecar = dir.join(format!(
        ".tmp-{}-{}.sha256",
        std::process::id(),
        &digest[..16]
    ));
    std::fs::write(&tmp_sidecar, &digest)?;
    let tmp = dir.join(format!(".tmp-{}-{}", std::process::id(), &digest[..16]));
    std::fs::write(&tmp, &bytes)?;
    std::fs::rename(&tmp_sidecar, sidecar(path))?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// A stable key for everything about `engine` that affects compiled code.
fn engine_key(engine: &WeftEngine) -> String {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    engine
        .engine()
        .precompile_compatibility_hash()
        .hash(&mut hasher);
    env!("CARGO_PKG_VERSION").hash(&mut hasher);
    format!("{:016x}", hasher.finish())
}
