//! Loading Wasm from disk: text or binary, core module or component, through the compile cache.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use wasmtime::Module;
use wasmtime::component::Component;

use crate::cache::CompileCache;
pub use crate::cache::{Compiled, sha256_hex};
use crate::engine::WeftEngine;

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
    #[error(
        "{path}: this WASI preview 1 module cannot be adapted to a component: {message} \
         (weft runs preview 1 programs through wasmtime's preview 1 command adapter, which needs \
         a `_start` export and an exported `memory`; build it as a WASI command, or as a component)"
    )]
    Adapt { path: PathBuf, message: String },
    #[error(
        "{path}: this module imports `{module}` (WASI preview 0), which weft does not provide; \
         rebuild it for wasm32-wasip1 or as a component"
    )]
    Preview0 { path: PathBuf, module: String },
}

/// The import module name of WASI preview 1.
const PREVIEW1: &str = "wasi_snapshot_preview1";

/// The import module names a core module uses, in order of first appearance (empty when
/// the bytes do not parse: compilation reports that).
fn core_import_modules(bytes: &[u8]) -> Vec<String> {
    let mut modules: Vec<String> = Vec::new();
    for payload in wasmparser::Parser::new(0).parse_all(bytes) {
        let Ok(payload) = payload else { break };
        if let wasmparser::Payload::ImportSection(reader) = payload {
            for import in reader.into_imports() {
                let Ok(import) = import else { break };
                if !modules.iter().any(|m| m == import.module) {
                    modules.push(import.module.to_owned());
                }
            }
        }
    }
    modules
}

/// The interface that carries a full exit code in WASI 0.2 (`exit-with-code`, stable since
/// `wasi:cli@0.2.12`, which wasmtime-wasi 48 implements).
const EXIT_INTERFACE: &str = "wasi:cli/exit@0.2.12";

/// The world embedded in a preview 1 module whose `proc_exit` is redirected: it imports
/// `exit-with-code` and nothing else (the adapter brings the rest of WASI).
const EXIT_WIT: &str = "
package weft:p1-exit;
world exit-code {
  import wasi:cli/exit@0.2.12;
}
package wasi:cli@0.2.12 {
  interface exit {
    @since(version = 0.2.12)
    exit-with-code: func(status-code: u8);
  }
}
";

/// Rewrites the module's `wasi_snapshot_preview1.proc_exit` import into
/// `wasi:cli/exit@0.2.12#exit-with-code` and embeds the world that declares it.
///
/// The preview 1 command adapter maps `proc_exit(n)` to `wasi:cli/exit.exit(err)` for any
/// `n != 0`, so every failure would exit 1; `wasmtime run` (native preview 1) passes `n`
/// through. Both take one `i32`, so the import is renamed in place and the canonical ABI
/// lowers it to `exit-with-code(n as u8)`. A module without `proc_exit` is returned as is.
fn redirect_proc_exit(bytes: &[u8]) -> anyhow::Result<Vec<u8>> {
    use wasm_encoder::reencode::{Error as ReencodeError, Reencode, RoundtripReencoder, utils};

    struct Redirect {
        found: bool,
    }
    impl Reencode for Redirect {
        type Error = std::convert::Infallible;
        fn parse_import_section(
            &mut self,
            imports: &mut wasm_encoder::ImportSection,
            section: wasmparser::ImportSectionReader<'_>,
        ) -> Result<(), ReencodeError<Self::Error>> {
            for import in section.into_imports() {
                let import = import?;
                let ty = RoundtripReencoder.entity_type(import.ty)?;
                if import.module == PREVIEW1 && import.name == "proc_exit" {
                    self.found = true;
                    imports.import(EXIT_INTERFACE, "exit-with-code", ty);
                } else {
                    imports.import(import.module, import.name, ty);
                }
            }
            Ok(())
        }
    }

    let mut redirect = Redirect { found: false };
    let mut module = wasm_encoder::Module::new();
    utils::parse_core_module(
        &mut redirect,
        &mut module,
        wasmparser::Parser::new(0),
        bytes,
    )
    .map_err(|e| anyhow::anyhow!("cannot re-encode the module: {e}"))?;
    if !redirect.found {
        return Ok(bytes.to_vec());
    }
    let mut out = module.finish();
    let mut resolve = wit_parser::Resolve::default();
    let pkg = resolve.push_str("weft-p1-exit.wit", EXIT_WIT)?;
    let world = resolve.select_world(&[pkg], Some("exit-code"))?;
    wit_component::embed_component_metadata(
        &mut out,
        &resolve,
        world,
        wit_component::StringEncoding::UTF8,
    )?;
    Ok(out)
}

/// Wraps a WASI preview 1 command module into a component with wasmtime 48's preview 1
/// command adapter (the same adapter `wasm-tools component new --adapt` uses), so it runs on
/// WASI 0.2. wasmtime-wasi's native preview 1 is not built in: its `wiggle` dependency pins
/// `wasmtime-environ` to 48.0.8 and would hold wasmtime below its patch releases.
fn adapt_preview1(path: &Path, bytes: &[u8]) -> Result<Vec<u8>, LoadError> {
    use wasi_preview1_component_adapter_provider::{
        WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME, WASI_SNAPSHOT_PREVIEW1_COMMAND_ADAPTER,
    };
    let adapt_err = |err: anyhow::Error| LoadError::Adapt {
        path: path.to_owned(),
        message: format!("{err:#}"),
    };
    let module = redirect_proc_exit(bytes).map_err(adapt_err)?;
    wit_component::ComponentEncoder::default()
        .validate(true)
        .module(&module)
        .map_err(adapt_err)?
        .adapter(
            WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME,
            WASI_SNAPSHOT_PREVIEW1_COMMAND_ADAPTER,
        )
        .map_err(adapt_err)?
        .encode()
        .map_err(adapt_err)
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
    let mut is_component = wasmparser::Parser::is_component(bytes);
    // A preview 1 module runs as a component through the command adapter; its artifact is
    // cached under the module's digest with a suffix naming the adapter.
    let mut adapted: Option<Vec<u8>> = None;
    let mut cache_key = sha256.clone();
    if !is_component {
        let imports = core_import_modules(bytes);
        if let Some(p0) = imports
            .iter()
            .find(|m| m.as_str() == "wasi_unstable" || m.as_str() == "wasi_unstable_preview0")
        {
            return Err(LoadError::Preview0 {
                path: path.to_owned(),
                module: p0.clone(),
            });
        }
        if imports.iter().any(|m| m == PREVIEW1) {
            is_component = true;
            cache_key = format!("{sha256}-p1-adapter-48.0.8");
        }
    }
    let compile_err = |err: wasmtime::Error| LoadError::Compile {
        path: path.to_owned(),
        message: format!("{err:#}"),
    };

    if let Some(cache) = cache
        && let Some(compiled) = cache.get(engine, &cache_key, is_component)
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
    if is_component && !wasmparser::Parser::is_component(bytes) {
        adapted = Some(adapt_preview1(path, bytes)?);
    }
    let compiled = if is_component {
        let component_bytes = adapted.as_deref().unwrap_or(bytes);
        Compiled::Component(Component::new(engine.engine(), component_bytes).map_err(compile_err)?)
    } else {
        Compiled::Module(Module::new(engine.engine(), bytes).map_err(compile_err)?)
    };
    progress.finish();
    if let Some(cache) = cache {
        cache.put(engine, &cache_key, &compiled);
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
    fn import_modules_are_listed_once_in_order() {
        let wasm = wat::parse_str(
            r#"(module
                (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))
                (import "env" "f" (func))
                (import "wasi_snapshot_preview1" "proc_exit" (func (param i32))))"#,
        )
        .expect("wat");
        assert_eq!(
            core_import_modules(&wasm),
            vec!["wasi_snapshot_preview1".to_string(), "env".to_string()]
        );
        assert!(core_import_modules(b"not wasm").is_empty());
    }

    #[test]
    fn proc_exit_is_redirected_to_exit_with_code_and_nothing_else_changes() {
        let wasm = wat::parse_str(
            r#"(module
                (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))
                (import "wasi_snapshot_preview1" "proc_exit" (func (param i32)))
                (memory (export "memory") 1)
                (func (export "_start") (call 1 (i32.const 3))))"#,
        )
        .expect("wat");
        let out = redirect_proc_exit(&wasm).expect("redirect");
        let mut imports = Vec::new();
        for payload in wasmparser::Parser::new(0).parse_all(&out) {
            if let wasmparser::Payload::ImportSection(reader) = payload.expect("parse") {
                for import in reader.into_imports() {
                    let import = import.expect("import");
                    imports.push((import.module.to_string(), import.name.to_string()));
                }
            }
        }
        assert_eq!(
            imports,
            vec![
                ("wasi_snapshot_preview1".into(), "fd_write".into()),
                (EXIT_INTERFACE.into(), "exit-with-code".into()),
            ]
        );
        // A module without proc_exit is left byte for byte.
        let plain = wat::parse_str(r#"(module (func (export "_start")))"#).expect("wat");
        assert_eq!(redirect_proc_exit(&plain).expect("plain"), plain);
    }

    #[test]
    fn preview0_modules_are_refused_by_name() {
        let engine = WeftEngine::new(&crate::engine::EngineOptions::default()).expect("engine");
        let wasm = wat::parse_str(
            r#"(module (import "wasi_unstable" "proc_exit" (func (param i32))) (memory (export "memory") 1))"#,
        )
        .expect("wat");
        let err = load_bytes(&engine, Path::new("old.wasm"), &wasm, None)
            .err()
            .expect("refused");
        let msg = err.to_string();
        assert!(
            msg.contains("wasi_unstable") && msg.contains("old.wasm"),
            "{msg}"
        );
    }

    #[test]
    fn wat_is_translated_and_errors_point_at_text() {
        let (_d, path) = temp_file("ok.wat", b"(module)");
        assert!(read_wasm(&path).expect("wat").starts_with(b"\0asm"));
        let (_d2, bad) = temp_file("bad.wat", b"(module (func (result i32)))) ");
        let err = read_wasm(&bad).expect_err("bad wat");
        assert!(matches!(err, LoadError::Wat { .. }), "{err}");
    }

    /// Loading through the compile cache (`cache.rs`): hits, corruption, modules.
    mod through_the_cache {
        use super::*;
        use crate::engine::{AllocatorChoice, EngineOptions};

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
            let wasm =
                wat::parse_str(r#"(component (core module (func (export "f"))))"#).expect("wat");
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
}
