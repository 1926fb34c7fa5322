//! The `weft` command line. `main` parses arguments and hands off to the library crates.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use weft_runtime::allow::AllowedHosts;
use weft_runtime::cache::CompileCache;
use weft_runtime::engine::{AllocatorChoice, EngineOptions, WeftEngine};
use weft_runtime::http::{HttpOptions, HttpService};
use weft_runtime::load::{self, Loaded};
use weft_runtime::run::{RunError, RunOptions};
use weft_runtime::wasi::{DirGrant, WasiGrants, parse_size};

#[derive(Parser, Debug)]
#[command(
    name = "weft",
    version,
    about = "Run WebAssembly components with exactly the capabilities they are granted",
    propagate_version = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a WASI command (preview 1 module, P2 or P3 component), or call one export.
    Run(RunArgs),
    /// Serve a wasi:http component (wasi:http/proxy 0.2 or wasi:http/service 0.3).
    Serve(ServeArgs),
}

#[derive(Args, Debug, Clone)]
struct EngineArgs {
    /// Do not read or write the compile cache.
    #[arg(long)]
    no_cache: bool,
    /// Instance allocator: pooling (falls back to on-demand if the reservation fails).
    #[arg(long, value_enum, default_value_t = Allocator::Auto)]
    allocator: Allocator,
    /// Log filter (e.g. `info`, `weft=debug`); also read from WEFT_LOG.
    #[arg(long, env = "WEFT_LOG", default_value = "warn")]
    log: String,
}

#[derive(ValueEnum, Debug, Clone, Copy)]
enum Allocator {
    Auto,
    Pooling,
    OnDemand,
}

#[derive(Args, Debug, Clone)]
struct GrantArgs {
    /// Set an environment variable in the guest: `K=V`, or `K` to pass the host's value.
    #[arg(long = "env", value_name = "K[=V]")]
    env: Vec<String>,
    /// Preopen a host directory: `HOST[::GUEST]` (append `:ro` for read-only).
    #[arg(long = "dir", value_name = "HOST[::GUEST]")]
    dirs: Vec<String>,
    /// Grant the guest the host's network (wasi:sockets and name lookup).
    #[arg(long)]
    inherit_network: bool,
    /// Allow outgoing HTTP to `[SCHEME://]HOST[:PORT]` (repeatable; `*.example.com` allowed).
    #[arg(long = "allow-host", value_name = "HOST[:PORT]")]
    allow_hosts: Vec<String>,
    /// Wall-clock limit: `500ms`, `5s`, `2m`; a bare number is seconds.
    #[arg(long, value_parser = parse_duration)]
    timeout: Option<Duration>,
    /// Linear memory limit per instance: `64M`, `1G`, bytes.
    #[arg(long, value_parser = parse_size)]
    max_memory: Option<u64>,
}

#[derive(Args, Debug)]
struct RunArgs {
    #[command(flatten)]
    engine: EngineArgs,
    #[command(flatten)]
    grants: GrantArgs,
    /// Call this export instead of running the command: WAVE syntax for components
    /// (`add(1, 2)`, `example:calc/ops.add(1, 2)`), a function name for core modules.
    #[arg(long, value_name = "CALL")]
    invoke: Option<String>,
    /// The Wasm file (`.wasm` or `.wat`) and the arguments passed to it.
    #[arg(
        value_name = "FILE",
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    file_and_args: Vec<OsString>,
}

#[derive(Args, Debug)]
struct ServeArgs {
    #[command(flatten)]
    engine: EngineArgs,
    #[command(flatten)]
    grants: GrantArgs,
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    /// Requests per instance before it is retired (default: 1 for P2, 128 for P3).
    #[arg(long)]
    max_instance_reuse_count: Option<usize>,
    /// Concurrent requests per instance (P3; default 16).
    #[arg(long)]
    max_instance_concurrent_reuse_count: Option<usize>,
    /// How long an idle instance is kept for reuse.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    idle_instance_timeout: Duration,
    /// Requests in flight at once; the excess waits, then gets 503.
    #[arg(long, default_value_t = weft_runtime::http::DEFAULT_MAX_CONCURRENT_REQUESTS)]
    max_concurrent_requests: usize,
    /// Client connections open at once.
    #[arg(long, default_value_t = weft_host::server::DEFAULT_MAX_CONNECTIONS)]
    max_concurrent_connections: usize,
    /// Do not prefix guest stdout/stderr lines with the instance id.
    #[arg(long)]
    no_logging_prefix: bool,
    /// The component to serve (`.wasm` or `.wat`).
    #[arg(value_name = "FILE")]
    file: PathBuf,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(s)
        .map_err(|e| format!("invalid duration `{s}`: {e} (examples: 500ms, 5s, 2m)"))
}

fn init_logging(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
}

fn build_engine(
    args: &EngineArgs,
    grants: &GrantArgs,
) -> anyhow::Result<(WeftEngine, Option<CompileCache>)> {
    let engine = WeftEngine::new(&EngineOptions {
        allocator: match args.allocator {
            Allocator::Auto => AllocatorChoice::Auto,
            Allocator::Pooling => AllocatorChoice::Pooling,
            Allocator::OnDemand => AllocatorChoice::OnDemand,
        },
        max_memory_bytes: grants.max_memory,
    })
    .map_err(anyhow::Error::from)
    .context("could not create the wasmtime engine")?;
    tracing::info!(allocator = %engine.allocator(), "engine ready");
    let cache = if args.no_cache {
        None
    } else {
        CompileCache::default_dir().map(CompileCache::new)
    };
    Ok((engine, cache))
}

fn grants(args: &GrantArgs) -> anyhow::Result<(WasiGrants, AllowedHosts)> {
    let mut env = Vec::new();
    for e in &args.env {
        match e.split_once('=') {
            Some((k, v)) if !k.is_empty() => env.push((k.to_string(), v.to_string())),
            Some(_) => bail!("invalid --env `{e}`: expected K=V"),
            None => {
                // `--env K` passes the host's value, as wasmtime does; unset stays unset.
                if let Ok(v) = std::env::var(e) {
                    env.push((e.clone(), v));
                }
            }
        }
    }
    let dirs = args
        .dirs
        .iter()
        .map(|d| DirGrant::parse(d).map_err(anyhow::Error::msg))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let grants = WasiGrants {
        env,
        dirs,
        inherit_network: args.inherit_network,
        max_memory_bytes: args.max_memory,
        timeout: args.timeout,
    };
    grants.validate().map_err(anyhow::Error::msg)?;
    let allowed = AllowedHosts::parse(&args.allow_hosts)?;
    Ok((grants, allowed))
}

fn load_file(
    engine: &WeftEngine,
    path: &std::path::Path,
    cache: Option<&CompileCache>,
) -> anyhow::Result<Loaded> {
    let loaded = load::load(engine, path, cache)?;
    tracing::info!(
        file = %path.display(),
        cache_hit = loaded.cache_hit,
        elapsed_ms = loaded.elapsed.as_millis() as u64,
        "loaded"
    );
    Ok(loaded)
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("could not start the async runtime")
}

fn cmd_run(args: RunArgs) -> anyhow::Result<i32> {
    init_logging(&args.engine.log);
    let (grants, allowed_hosts) = grants(&args.grants)?;
    let (engine, cache) = build_engine(&args.engine, &args.grants)?;
    let file = PathBuf::from(&args.file_and_args[0]);
    let loaded = load_file(&engine, &file, cache.as_ref())?;
    let mut argv = Vec::with_capacity(args.file_and_args.len());
    // argv[0] is the file's base name, as wasmtime passes it (no host path leaks).
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    argv.push(name);
    for a in &args.file_and_args[1..] {
        argv.push(
            a.to_str()
                .with_context(|| format!("argument {a:?} is not valid UTF-8"))?
                .to_string(),
        );
    }
    let options = RunOptions {
        grants,
        allowed_hosts,
        args: argv,
        invoke: args.invoke,
    };
    let rt = runtime()?;
    let result = rt.block_on(weft_runtime::run::run(&engine, &loaded, &options));
    // Don't wait for blocking tasks a guest may have left behind (stdin readers).
    rt.shutdown_background();
    match result {
        Ok(()) => Ok(0),
        Err(RunError::Exit(code)) => Ok(code),
        Err(err @ RunError::Trap(_)) => {
            eprintln!("Error: {err}");
            Ok(err.exit_code())
        }
        Err(RunError::Setup(msg)) => Err(anyhow::anyhow!("{}: {msg}", file.display())),
    }
}

fn cmd_serve(args: ServeArgs) -> anyhow::Result<i32> {
    init_logging(&args.engine.log);
    let (grants, allowed_hosts) = grants(&args.grants)?;
    let (engine, cache) = build_engine(&args.engine, &args.grants)?;
    let loaded = load_file(&engine, &args.file, cache.as_ref())?;
    let weft_runtime::load::Compiled::Component(component) = &loaded.compiled else {
        bail!(
            "{}: this is a core module; `weft serve` needs a wasi:http component (run commands with `weft run`)",
            args.file.display()
        );
    };
    let options = HttpOptions {
        grants,
        allowed_hosts,
        max_instance_reuse_count: args.max_instance_reuse_count,
        max_instance_concurrent_reuse_count: args.max_instance_concurrent_reuse_count,
        idle_instance_timeout: args.idle_instance_timeout,
        max_concurrent_requests: args.max_concurrent_requests,
        log_prefix: !args.no_logging_prefix,
        ..HttpOptions::default()
    };
    let service = HttpService::new(&engine, component, options)
        .with_context(|| format!("{}: cannot serve", args.file.display()))?;
    let rt = runtime()?;
    rt.block_on(async {
        let listener = weft_host::server::bind(args.addr)
            .with_context(|| format!("cannot listen on {}", args.addr))?;
        let local = listener.local_addr()?;
        eprintln!("Serving HTTP on http://{local}/");
        tracing::info!(kind = %service.kind(), allocator = %engine.allocator(), "serving");
        weft_host::server::serve(
            listener,
            service,
            args.max_concurrent_connections,
            weft_host::server::shutdown_signal(),
        )
        .await?;
        anyhow::Ok(())
    })?;
    Ok(0)
}

/// Runs the command line; returns the process exit code.
pub fn main() -> i32 {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => cmd_run(args),
        Command::Serve(args) => cmd_serve(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("Error: {err:#}");
            1
        }
    }
}
