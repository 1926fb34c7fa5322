//! The wasmtime engine Weft runs everything on, and the one epoch ticker of the process.
//!
//! Configuration choices (see `docs/architecture.md`):
//! - the pooling instance allocator by default (fast instantiation), with a logged fallback to
//!   on-demand allocation when the virtual-memory reservation for the pool cannot be made;
//! - copy-on-write memory images (`memory_init_cow`);
//! - epoch interruption always on, ticked by one process-wide thread, so every store can yield
//!   to the async executor at each tick and time limits can be enforced;
//! - the component model with its async (P3) extensions.

use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use wasmtime::{
    Config, Engine, EngineWeak, InstanceAllocationStrategy, PoolingAllocationConfig,
    WasmBacktraceDetails,
};

/// How often the process-wide epoch ticker increments every registered engine's epoch.
///
/// Every store yields to the executor at each tick (`weft_runtime::state::yield_at_every_tick`), so
/// this bounds how long a busy guest can hold an executor thread, and is the granularity of
/// `--timeout` enforcement for CPU-bound guests.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Which instance allocator an engine uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllocatorKind {
    /// Pre-reserved slots for instances, memories, tables and stacks.
    Pooling,
    /// mmap per instance (used when the pool cannot be reserved, or on request).
    OnDemand,
}

impl std::fmt::Display for AllocatorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AllocatorKind::Pooling => "pooling",
            AllocatorKind::OnDemand => "on-demand",
        })
    }
}

/// What the caller wants of the allocator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AllocatorChoice {
    /// Pooling, falling back to on-demand when the reservation fails.
    #[default]
    Auto,
    /// Pooling or an error.
    Pooling,
    /// On-demand only.
    OnDemand,
}

/// Options that shape the engine (and so the compile-cache key).
#[derive(Debug, Clone, Default)]
pub struct EngineOptions {
    pub allocator: AllocatorChoice,
    /// Largest linear memory any instance may grow to, in bytes (the per-store limit is applied
    /// on top of this by `weft_interfaces::wasi::WasiGrants::store_limits`). `None`: wasmtime's default
    /// (4 GiB).
    pub max_memory_bytes: Option<u64>,
    /// Build the engine without component-model concurrency (no WASI 0.3, no
    /// `run_concurrent`): what run-time linking of components needs, because its forwarding
    /// host functions call into another instance with `call_async` (see `weft_runtime::link`).
    pub no_concurrency: bool,
    /// Let Cranelift inline across core modules: a call between fused components then goes
    /// through an adapter that is compiled into the caller (see "Calls across components" in
    /// docs/benchmarks.md).
    pub inlining: bool,
}

/// An engine plus the facts about how it was built.
#[derive(Clone)]
pub struct WeftEngine {
    engine: Engine,
    allocator: AllocatorKind,
}

impl WeftEngine {
    /// Builds the engine, registers it with the process-wide epoch ticker, and logs which
    /// allocator is in use.
    pub fn new(options: &EngineOptions) -> wasmtime::Result<Self> {
        let (engine, allocator) = match options.allocator {
            AllocatorChoice::OnDemand => {
                (Engine::new(&base_config(options))?, AllocatorKind::OnDemand)
            }
            AllocatorChoice::Pooling => (
                Engine::new(&pooling_config(options))?,
                AllocatorKind::Pooling,
            ),
            AllocatorChoice::Auto => match Engine::new(&pooling_config(options)) {
                Ok(engine) => (engine, AllocatorKind::Pooling),
                Err(err) => {
                    tracing::warn!(
                        error = %err,
                        "could not reserve virtual memory for the pooling allocator; \
                         falling back to on-demand allocation (slower instantiation)"
                    );
                    (Engine::new(&base_config(options))?, AllocatorKind::OnDemand)
                }
            },
        };
        tracing::debug!(
            allocator = %allocator,
            pagemap_scan = allocator == AllocatorKind::Pooling
                && PoolingAllocationConfig::is_pagemap_scan_available(),
            "wasmtime engine ready"
        );
        register_with_ticker(&engine);
        Ok(Self { engine, allocator })
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn allocator(&self) -> AllocatorKind {
        self.allocator
    }
}

fn base_config(options: &EngineOptions) -> Config {
    let mut config = Config::new();
    config.wasm_component_model(true);
    if options.no_concurrency {
        config.wasm_component_model_async(false);
        config.concurrency_support(false);
    } else {
        config.wasm_component_model_async(true);
    }
    if options.inlining {
        config.compiler_inlining(wasmtime::Inlining::InterModule);
    }
    config.epoch_interruption(true);
    config.memory_init_cow(true);
    config.wasm_backtrace_details(WasmBacktraceDetails::Enable);
    config
}

/// Dirty linear-memory bytes reset in place (kept resident) per instance, with PAGEMAP_SCAN:
/// covers a Rust guest's whole 1 MiB shadow stack.
const KEEP_RESIDENT: usize = 1 << 20;
/// The prefix of each linear memory reset in place when the kernel cannot say which pages
/// are dirty (memset whether touched or not, so it stays small).
const KEEP_RESIDENT_NO_SCAN: usize = 64 << 10;

fn pooling_config(options: &EngineOptions) -> Config {
    let mut pool = PoolingAllocationConfig::default();
    // Components built from Rust/C with the preview1 adapter have 3-4 core instances each.
    pool.total_component_instances(1000);
    pool.total_core_instances(4000);
    pool.total_memories(1000);
    pool.total_tables(2000);
    pool.total_stacks(1000);
    // Realistic components (Python, JS) are large; the defaults refuse them at instantiation.
    pool.max_component_instance_size(4 << 20);
    pool.max_core_instance_size(4 << 20);
    pool.max_memories_per_component(16);
    pool.max_tables_per_component(16);
    // Resetting a linear memory for its next instance: with the PAGEMAP_SCAN ioctl (Linux 6.7+)
    // wasmtime finds the pages the instance dirtied and memsets up to KEEP_RESIDENT of them,
    // so they stay resident and the next instance takes no page fault and no madvise (and the
    // other cores no TLB-shootdown interrupt). Without it, wasmtime memsets the first
    // KEEP_RESIDENT bytes whether dirtied or not, so only a small prefix is kept.
    // docs/benchmarks.md, "Resetting memory between instances": P2 hello 1.6x the requests
    // per second at 0.6x the CPU per request.
    if PoolingAllocationConfig::is_pagemap_scan_available() {
        pool.pagemap_scan(wasmtime::Enabled::Yes);
        pool.linear_memory_keep_resident(KEEP_RESIDENT);
    } else {
        pool.linear_memory_keep_resident(KEEP_RESIDENT_NO_SCAN);
    }
    pool.table_keep_resident(16 << 10);
    if let Some(max) = options.max_memory_bytes {
        pool.max_memory_size(usize::try_from(max).unwrap_or(usize::MAX).min(4 << 30));
    }
    let mut config = base_config(options);
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    config
}

/// Engines ticked by the one epoch thread of this process.
fn ticked_engines() -> &'static Mutex<Vec<EngineWeak>> {
    static ENGINES: OnceLock<Mutex<Vec<EngineWeak>>> = OnceLock::new();
    ENGINES.get_or_init(|| {
        std::thread::Builder::new()
            .name("weft-epoch".into())
            .spawn(|| {
                loop {
                    std::thread::sleep(EPOCH_TICK);
                    let mut engines = match ticked_engines().lock() {
                        Ok(guard) => guard,
                        Err(poisoned) => poisoned.into_inner(),
                    };
                    engines.retain(|weak| match weak.upgrade() {
                        Some(engine) => {
                            engine.increment_epoch();
                            true
                        }
                        None => false,
                    });
                }
            })
            .map(|_| ())
            .unwrap_or_else(|err| {
                tracing::error!(error = %err, "could not start the epoch ticker thread; time limits will not be enforced")
            });
        Mutex::new(Vec::new())
    })
}

fn register_with_ticker(engine: &Engine) {
    let mut engines = match ticked_engines().lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    };
    engines.push(engine.weak());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn on_demand_engine_builds() {
        let engine = WeftEngine::new(&EngineOptions {
            allocator: AllocatorChoice::OnDemand,
            ..Default::default()
        })
        .expect("engine");
        assert_eq!(engine.allocator(), AllocatorKind::OnDemand);
    }

    #[test]
    fn auto_prefers_pooling_on_this_machine() {
        // x86_64 Linux has the address space for the pool; this documents the default.
        let engine = WeftEngine::new(&EngineOptions::default()).expect("engine");
        assert_eq!(engine.allocator(), AllocatorKind::Pooling);
    }

    #[test]
    fn ticker_advances_epochs() {
        let engine = WeftEngine::new(&EngineOptions {
            allocator: AllocatorChoice::OnDemand,
            ..Default::default()
        })
        .expect("engine");
        // A store whose deadline is one tick away traps once the ticker has run.
        let mut store = wasmtime::Store::new(engine.engine(), ());
        store.set_epoch_deadline(1);
        let module = wasmtime::Module::new(
            engine.engine(),
            r#"(module (func (export "spin") (loop br 0)))"#,
        )
        .expect("module");
        let instance = wasmtime::Instance::new(&mut store, &module, &[]).expect("instance");
        let spin = instance
            .get_typed_func::<(), ()>(&mut store, "spin")
            .expect("func");
        let err = spin.call(&mut store, ()).expect_err("interrupted");
        assert_eq!(
            err.downcast_ref::<wasmtime::Trap>(),
            Some(&wasmtime::Trap::Interrupt)
        );
    }
}
