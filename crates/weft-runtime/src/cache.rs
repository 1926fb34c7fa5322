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

use crate::engine::WeftEngine;
use crate::load::{Compiled, sha256_hex};

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

    fn entry_path(&self, engine: &WeftEngine, sha256: &str, component: bool) -> PathBuf {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{AllocatorChoice, EngineOptions};
    use crate::load::load_bytes;

    fn engine() -> WeftEngine {
        WeftEngine::new(&EngineOptions {
            allocator: AllocatorChoice::OnDemand,
            ..Default::default()
        })
        .expect("engine")
    }

    #[test]
    fn second_load_hits_and_corruption_recompiles() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = CompileCache::new(dir.path());
        let engine = engine();
        let wasm = wat::parse_str(r#"(component (core module (func (export "f"))))"#).expect("wat");
        let path = Path::new("t.wasm");
        let first = load_bytes(&engine, path, &wasm, Some(&cache)).expect("first");
        assert!(!first.cache_hit);
        let second = load_bytes(&engine, path, &wasm, Some(&cache)).expect("second");
        assert!(second.cache_hit);

        // Flip a byte of the artifact: the digest check must refuse it.
        let entry = cache.entry_path(&engine, &first.sha256, true);
        let mut bytes = std::fs::read(&entry).expect("entry");
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0xff;
        std::fs::write(&entry, &bytes).expect("write");
        let third = load_bytes(&engine, path, &wasm, Some(&cache)).expect("third");
        assert!(!third.cache_hit, "a corrupt entry must not be used");
        let fourth = load_bytes(&engine, path, &wasm, Some(&cache)).expect("fourth");
        assert!(fourth.cache_hit, "the recompiled entry is written back");
    }

    #[test]
    fn core_modules_are_cached_separately() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = CompileCache::new(dir.path());
        let engine = engine();
        let wasm = wat::parse_str("(module)").expect("wat");
        let path = Path::new("m.wasm");
        assert!(
            !load_bytes(&engine, path, &wasm, Some(&cache))
                .expect("a")
                .cache_hit
        );
        let again = load_bytes(&engine, path, &wasm, Some(&cache)).expect("b");
        assert!(again.cache_hit);
        assert!(matches!(again.compiled, Compiled::Module(_)));
    }
}
