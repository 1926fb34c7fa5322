//! Loading Wasm from disk: text or binary, core module or component, through the compile cache.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use wasmtime::Module;
use wasmtime::component::Component;

use crate::cache::CompileCache;
use crate::engine::WeftEngine;

/// A loaded, compiled piece of Wasm.
#[derive(Clone)]
pub enum Compiled {
    /// A core module (WASI preview 1 programs).
    Module(Module),
    /// A component.
    Component(Component),
}

/// The result of [`load`].
#[derive(Clone)]
pub struct Loaded {
    pub path: PathBuf,
    pub compiled: Compiled,
    /// sha256 of the Wasm binary (after WAT translation), hex.
    pub sha256: String,
    /// Whether the compiled artifact came from the cache (no Cranelift run).
    pub cache_hit: bool,
    /// Wall time spent compiling or loading from the cache.
    pub elapsed: Duration,
    /// Size of the Wasm binary in bytes.
    pub size: usize,
}

/// Why a file could not be loaded. Each message names the file and what to do.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{path}: no such file (check the path; it is relative to the current directory)")]
    NotFound { path: PathBuf },
    #[error("{path}: could not read the file: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path}: not a WebAssembly file (it starts with {found}; a Wasm binary starts with \
         `\\0asm`, and a text file must end in .wat)"
    )]
    NotWasm { path: PathBuf, found: String },
    #[error("{path}: invalid WebAssembly text: {message}")]
    Wat { path: PathBuf, message: String },
    #[error(
        "{path}: this is a precompiled wasmtime artifact (.cwasm); weft compiles and caches \
         artifacts itself, pass the original .wasm file"
    )]
    Precompiled { path: PathBuf },
    #[error("{path}: invalid or unsupported WebAssembly: {message}")]
    Compile { path: PathBuf, message: String },
}

/// Reads `path` (binary or `.wat` text) and returns the Wasm bytes.
pub fn read_wasm(path: &Path) -> Result<Vec<u8>, LoadError> {
    let bytes = std::fs::read(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            LoadError::NotFound {
                path: path.to_owned(),
            }
        } else {
            LoadError::Read {
                path: path.to_owned(),
                source,
            }
        }
    })?;
    if bytes.starts_with(b"\0asm") {
        return Ok(bytes);
    }
    if wasmtime::Engine::detect_precompiled(&bytes).is_some() {
        return Err(LoadError::Precompiled {
            path: path.to_owned(),
        });
    }
    let is_text_name = path
        .extension()
        .is_some_and(|ext| ext.eq_ignore_ascii_case("wat") || ext.eq_ignore_ascii_case("wast"));
    let looks_like_text = std::str::from_utf8(&bytes)
        .map(|s| s.trim_start().starts_with('(') || s.trim_start().starts_with(";;"))
        .unwrap_or(false);
    if is_text_name || looks_like_text {
        return wat::parse_bytes(&bytes)
            .map(|cow| cow.into_owned())
            .map_err(|err| LoadError::Wat {
                path: path.to_owned(),
                message: err.to_string(),
            });
    }
    let found = bytes
        .iter()
        .take(4)
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ");
    Err(LoadError::NotWasm {
        path: path.to_owned(),
        found: if found.is_empty() {
            "nothing (the file is empty)".into()
        } else {
            format!("bytes `{found}`")
        },
    })
}

/// Hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Loads and compiles `path`, through `cache` when given.
pub fn load(
    engine: &WeftEngine,
    path: &Path,
    cache: Option<&CompileCache>,
) -> Result<Loaded, LoadError> {
    let bytes = read_wasm(path)?;
    load_bytes(engine, path, &bytes, cache)
}

/// Compiles Wasm `bytes` (already read from `path`), through `cache` when given.
pub fn load_bytes(
    engine: &WeftEngine,
    path: &Path,
    bytes: &[u8],
    cache: Option<&CompileCache>,
) -> Result<Loaded, LoadError> {
    let start = Instant::now();
    let sha256 = sha256_hex(bytes);
    let is_component = wasmparser::Parser::is_component(bytes);
    let compile_err = |err: wasmtime::Error| LoadError::Compile {
        path: path.to_owned(),
        message: format!("{err:#}"),
    };

    if let Some(cache) = cache
        && let Some(compiled) = cache.get(engine, &sha256, is_component)
    {
        return Ok(Loaded {
            path: path.to_owned(),
            compiled,
            sha256,
            cache_hit: true,
            elapsed: start.elapsed(),
            size: bytes.len(),
        });
    }

    let progress = crate::progress::Spinner::start(format!(
        "compiling {} ({} KiB)",
        path.display(),
        bytes.len().div_ceil(1024)
    ));
    let compiled = if is_component {
        Compiled::Component(Component::new(engine.engine(), bytes).map_err(compile_err)?)
    } else {
        Compiled::Module(Module::new(engine.engine(), bytes).map_err(compile_err)?)
    };
    progress.finish();
    if let Some(cache) = cache {
        cache.put(engine, &sha256, &compiled);
    }
    Ok(Loaded {
        path: path.to_owned(),
        compiled,
        sha256,
        cache_hit: false,
        elapsed: start.elapsed(),
        size: bytes.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn temp_file(name: &str, contents: &[u8]) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(name);
        let mut f = std::fs::File::create(&path).expect("create");
        f.write_all(contents).expect("write");
        (dir, path)
    }

    #[test]
    fn missing_file_is_named() {
        let err = read_wasm(Path::new("/nonexistent/x.wasm")).expect_err("missing");
        assert!(matches!(err, LoadError::NotFound { .. }));
        assert!(err.to_string().contains("/nonexistent/x.wasm"));
    }

    #[test]
    fn non_wasm_says_what_it_found() {
        let (_d, path) = temp_file("x.wasm", b"#!/bin/sh\necho hi\n");
        let err = read_wasm(&path).expect_err("not wasm");
        let msg = err.to_string();
        assert!(msg.contains("not a WebAssembly file"), "{msg}");
        assert!(msg.contains("23 21 2f 62"), "{msg}");
    }

    #[test]
    fn empty_file_is_reported() {
        let (_d, path) = temp_file("x.wasm", b"");
        let msg = read_wasm(&path).expect_err("empty").to_string();
        assert!(msg.contains("empty"), "{msg}");
    }

    #[test]
    fn wat_is_translated_and_errors_point_at_text() {
        let (_d, path) = temp_file("ok.wat", b"(module)");
        assert!(read_wasm(&path).expect("wat").starts_with(b"\0asm"));
        let (_d2, bad) = temp_file("bad.wat", b"(module (func (result i32)))) ");
        let err = read_wasm(&bad).expect_err("bad wat");
        assert!(matches!(err, LoadError::Wat { .. }), "{err}");
    }
}
