//! `weft run`: run a command (WASI preview 1 core module, P2 or P3 component) once, or call
//! one export with WAVE-encoded arguments, with exactly the grants given.

use wasmtime::component::wasm_wave::untyped::UntypedFuncCall;
use wasmtime::component::wasm_wave::wasm::{DisplayFuncResults, WasmFunc};
use wasmtime::component::{Component, Val};
use wasmtime::{Module, Store};
use wasmtime_wasi::WasiCtxBuilder;

use crate::state::{CliRunState, OutgoingHttp};
use weft_engine::engine::WeftEngine;
use weft_engine::load::{Compiled, Loaded};
use weft_engine::world::{self, WorldKind};
/// Moved to `world.rs`; these names stay here for existing callers.
pub use weft_engine::world::{explain_unsatisfied, find_export};
use weft_interfaces::wasi::WasiGrants;
use weft_policy::allow::AllowedHosts;

/// Interfaces `weft run` provides to components (every version it links).
pub const RUN_PROVIDES: &[&str] = &[
    "wasi:cli",
    "wasi:clocks",
    "wasi:filesystem",
    "wasi:io",
    "wasi:random",
    "wasi:sockets",
    "wasi:http",
];

/// How to run.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub grants: WasiGrants,
    /// Outgoing HTTP allow-list (deny by default).
    pub allowed_hosts: AllowedHosts,
    /// argv, starting with the program name.
    pub args: Vec<String>,
    /// Call this export instead of running the command.
    pub invoke: Option<String>,
}

/// Why a run did not complete normally.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The guest called `exit(code)` or its `run` returned an error (code 1).
    #[error("exit with code {0}")]
    Exit(i32),
    /// The guest trapped (or ran past its time limit); the message holds the Wasm backtrace.
    #[error("{0}")]
    Trap(String),
    /// The program could not be started: wrong world, unsatisfied imports, bad --invoke.
    #[error("{0}")]
    Setup(String),
}

impl RunError {
    /// The process exit code matching `wasmtime run`'s: the guest's code for exits, 134
    /// (SIGABRT's) for traps, 1 for everything else.
    pub fn exit_code(&self) -> i32 {
        match self {
            RunError::Exit(code) => *code,
            RunError::Trap(_) => 134,
            RunError::Setup(_) => 1,
        }
    }
}

fn classify_error(err: wasmtime::Error, timeout: Option<std::time::Duration>) -> RunError {
    if let Some(exit) = err.downcast_ref::<wasmtime_wasi::I32Exit>() {
        return RunError::Exit(exit.0);
    }
    if let Some(trap) = err.downcast_ref::<wasmtime::Trap>() {
        if *trap == wasmtime::Trap::Interrupt
            && let Some(t) = timeout
        {
            return RunError::Trap(format!(
                "guest interrupted: it ran past the --timeout of {t:?}\n{err:?}"
            ));
        }
        return RunError::Trap(format!("{err:?}"));
    }
    RunError::Setup(format!("{err:?}"))
}

fn new_store(engine: &WeftEngine, options: &RunOptions) -> Result<Store<CliRunState>, RunError> {
    let mut builder = WasiCtxBuilder::new();
    builder.args(&options.args);
    builder.inherit_stdio();
    // Blocking the current thread is fine for one program, but not when a timeout must fire.
    builder.allow_blocking_current_thread(options.grants.timeout.is_none());
    options
        .grants
        .apply(&mut builder)
        .map_err(|e| RunError::Setup(format!("{e:#}")))?;
    let state = CliRunState {
        wasi: builder.build(),
        table: wasmtime::component::ResourceTable::new(),
        http: wasmtime_wasi_http::WasiHttpCtx::new(),
        hooks: OutgoingHttp::new(options.allowed_hosts.clone()),
        limits: options.grants.store_limits(),
    };
    let mut store = Store::new(engine.engine(), state);
    store.limiter(|s| &mut s.limits);
    // Yield to the executor at every epoch tick: keeps timeouts enforceable for busy guests.
    crate::state::yield_at_every_tick(&mut store);
    Ok(store)
}

/// Runs `loaded` as `weft run` does. `Ok(())` means exit code 0.
pub async fn run(
    engine: &WeftEngine,
    loaded: &Loaded,
    options: &RunOptions,
) -> Result<(), RunError> {
    let timeout = options.grants.timeout;
    let mut store = new_store(engine, options)?;
    let fut = async {
        match &loaded.compiled {
            Compiled::Module(module) => run_module(engine, module, &mut store, options).await,
            Compiled::Component(component) => {
                run_component(engine, component, &mut store, options).await
            }
        }
    };
    let result = match timeout {
        Some(t) => match tokio::time::timeout(t, fut).await {
            Ok(r) => r,
            Err(_) => Err(RunError::Trap(format!(
                "guest interrupted: it ran past the --timeout of {t:?}"
            ))),
        },
        None => fut.await,
    };
    // Flush what the guest wrote before the caller exits the process.
    use std::io::Write;
    let _ = std::io::stdout().flush();
    result
}

async fn run_module(
    engine: &WeftEngine,
    module: &Module,
    store: &mut Store<CliRunState>,
    options: &RunOptions,
) -> Result<(), RunError> {
    let timeout = options.grants.timeout;
    // Modules that import WASI preview 1 were adapted into components when loaded, so a core
    // module here imports nothing from the host: it gets an empty linker.
    let linker = wasmtime::Linker::<CliRunState>::new(engine.engine());
    let instance = linker
        .instantiate_async(&mut *store, module)
        .await
        .map_err(|e| RunError::Setup(format!("cannot instantiate the module: {e:#}")))?;
    if let Some(init) = instance.get_func(&mut *store, "_initialize") {
        init.call_async(&mut *store, &[], &mut [])
            .await
            .map_err(|e| classify_error(e, timeout))?;
    }
    let func = match &options.invoke {
        Some(name) => Some(instance.get_func(&mut *store, name).ok_or_else(|| {
            RunError::Setup(format!("the module has no function export named `{name}`"))
        })?),
        None => instance
            .get_func(&mut *store, "_start")
            .or_else(|| instance.get_func(&mut *store, "")),
    };
    let Some(func) = func else {
        return Err(RunError::Setup(
            "the module exports no `_start`: it is not a WASI command (use --invoke NAME to call one of its functions)".into(),
        ));
    };
    let ty = func.ty(&*store);
    let mut args = options.args.iter().skip(1);
    let mut params = Vec::new();
    for param in ty.params() {
        let Some(arg) = args.next() else {
            return Err(RunError::Setup(format!(
                "not enough arguments: the function takes {} parameters",
                ty.params().len()
            )));
        };
        params.push(parse_core_arg(arg, &param).map_err(RunError::Setup)?);
    }
    let mut results = vec![wasmtime::Val::I32(0); ty.results().len()];
    func.call_async(&mut *store, &params, &mut results)
        .await
        .map_err(|e| classify_error(e, timeout))?;
    for r in results {
        match r {
            wasmtime::Val::I32(v) => println!("{v}"),
            wasmtime::Val::I64(v) => println!("{v}"),
            wasmtime::Val::F32(v) => println!("{}", f32::from_bits(v)),
            wasmtime::Val::F64(v) => println!("{}", f64::from_bits(v)),
            other => println!("{other:?}"),
        }
    }
    Ok(())
}

fn parse_core_arg(arg: &str, ty: &wasmtime::ValType) -> Result<wasmtime::Val, String> {
    let bad = || format!("argument `{arg}` is not a valid {ty}");
    let int = |s: &str| -> Result<i64, String> {
        match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
            Some(hex) => i64::from_str_radix(hex, 16).map_err(|_| bad()),
            None => s.parse::<i64>().map_err(|_| bad()),
        }
    };
    Ok(match ty {
        wasmtime::ValType::I32 => {
            let v = int(arg)?;
            // Accept the signed and the unsigned 32-bit range (hex masks such as 0xffffffff).
            let v = i32::try_from(v)
                .ok()
                .or_else(|| u32::try_from(v).ok().map(|u| u as i32))
                .ok_or_else(bad)?;
            wasmtime::Val::I32(v)
        }
        wasmtime::ValType::I64 => wasmtime::Val::I64(int(arg)?),
        wasmtime::ValType::F32 => {
            wasmtime::Val::F32(arg.parse::<f32>().map_err(|_| bad())?.to_bits())
        }
        wasmtime::ValType::F64 => {
            wasmtime::Val::F64(arg.parse::<f64>().map_err(|_| bad())?.to_bits())
        }
        other => {
            return Err(format!(
                "parameters of type {other} cannot be given on the command line"
            ));
        }
    })
}

/// Builds the component linker for `weft run`: WASI 0.2 and 0.3, and outgoing wasi:http.
pub fn cli_linker(
    engine: &WeftEngine,
) -> wasmtime::Result<wasmtime::component::Linker<CliRunState>> {
    let mut linker = wasmtime::component::Linker::new(engine.engine());
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    wasmtime_wasi::p3::add_to_linker(&mut linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    wasmtime_wasi_http::p3::add_to_linker(&mut linker)?;
    weft_interfaces::p3client::add_p3_client_override(&mut linker)?;
    Ok(linker)
}

async fn run_component(
    engine: &WeftEngine,
    component: &Component,
    store: &mut Store<CliRunState>,
    options: &RunOptions,
) -> Result<(), RunError> {
    let timeout = options.grants.timeout;
    let ifaces = world::interfaces(engine.engine(), component);
    let worlds = world::Worlds::of(ifaces.exports.iter().map(String::as_str));
    // The run export to call: WASI 0.3 over 0.2 (see `world::Worlds`).
    let run_kind = worlds.run_kind();
    if options.invoke.is_none() && run_kind.is_none() {
        let kind = worlds.kind();
        let exports = if ifaces.exports.is_empty() {
            "nothing".to_string()
        } else {
            ifaces.exports.join(", ")
        };
        return Err(RunError::Setup(format!(
            "this is {kind}, not a command: it exports {exports}. Use {} instead.",
            kind.fitting_command()
        )));
    }
    if let Some(msg) = explain_unsatisfied(&ifaces.imports, RUN_PROVIDES, "`weft run`") {
        return Err(RunError::Setup(msg));
    }
    let linker = cli_linker(engine).map_err(|e| RunError::Setup(format!("{e:#}")))?;
    let pre = linker
        .instantiate_pre(component)
        .map_err(|e| RunError::Setup(format!("cannot link the component: {e:#}")))?;

    if let Some(invoke) = &options.invoke {
        return invoke_component(engine, component, &pre, store, invoke, timeout).await;
    }

    let instance = pre
        .instantiate_async(&mut *store)
        .await
        .map_err(|e| classify_error(e, timeout))?;
    let result = if run_kind == Some(WorldKind::CliP3) {
        let command = wasmtime_wasi::p3::bindings::Command::new(&mut *store, &instance)
            .map_err(|e| RunError::Setup(format!("{e:#}")))?;
        store
            .run_concurrent(async |store| command.wasi_cli_run().call_run(store).await)
            .await
            .and_then(|r| r)
    } else {
        let command = wasmtime_wasi::p2::bindings::Command::new(&mut *store, &instance)
            .map_err(|e| RunError::Setup(format!("{e:#}")))?;
        command.wasi_cli_run().call_run(&mut *store).await
    };
    match result {
        Ok(Ok(())) => Ok(()),
        Ok(Err(())) => Err(RunError::Exit(1)),
        Err(e) => Err(classify_error(e, timeout)),
    }
}

async fn invoke_component(
    engine: &WeftEngine,
    component: &Component,
    pre: &wasmtime::component::InstancePre<CliRunState>,
    store: &mut Store<CliRunState>,
    invoke: &str,
    timeout: Option<std::time::Duration>,
) -> Result<(), RunError> {
    let call = UntypedFuncCall::parse(invoke).map_err(|e| {
        RunError::Setup(format!(
            "cannot parse --invoke `{invoke}`: {e}. Write a call in WAVE syntax, e.g. `add(1, 2)` or `example:calc/ops.add(1, 2)`"
        ))
    })?;
    let (index, func_ty) =
        find_export(engine.engine(), component, call.name()).map_err(RunError::Setup)?;
    let param_types = WasmFunc::params(&func_ty).collect::<Vec<_>>();
    let params: Vec<Val> = call
        .to_wasm_params(&param_types)
        .map_err(|e| RunError::Setup(format!("invalid arguments in --invoke `{invoke}`: {e}")))?;
    let instance = pre
        .instantiate_async(&mut *store)
        .await
        .map_err(|e| classify_error(e, timeout))?;
    let func = instance
        .get_func(&mut *store, index)
        .ok_or_else(|| RunError::Setup(format!("export `{}` is not a function", call.name())))?;
    let mut results = vec![Val::Bool(false); func_ty.results().len()];
    store
        .run_concurrent(async |store| func.call_concurrent(store, &params, &mut results).await)
        .await
        .and_then(|r| r)
        .map_err(|e| classify_error(e, timeout))?;
    println!("{}", DisplayFuncResults(&results));
    Ok(())
}
