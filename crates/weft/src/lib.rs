//! The `weft` command line. `main` parses arguments and hands off to the library crates.

pub mod client;
pub mod dev;
pub mod inspect;
pub mod oci;
pub mod project;
pub mod wasmtime_flags;

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
    /// Run a workload host on this machine: HTTP ingress, admin API, desired state.
    Up(Box<UpArgs>),
    /// Deploy (or update) the workloads in manifest files on a running host.
    Deploy(DeployArgs),
    /// Show workloads on a running host.
    Get(GetArgs),
    /// Delete a workload from a running host.
    Delete(DeleteArgs),
    /// Print a workload's logs (guest stdout/stderr and wasi:logging).
    Logs(LogsArgs),
    /// Show a component's world (imports, exports as WIT), size and producers, or a
    /// manifest's link graph.
    Inspect(InspectArgs),
    /// Fuse a manifest's linked components into one component.
    Compose(ComposeArgs),
    /// Check manifests or print their JSON Schema.
    #[command(subcommand)]
    Manifest(ManifestCommand),
    /// Push a component to an OCI registry as a Wasm artifact (CNCF layout).
    Push(oci::PushArgs),
    /// Pull a component from an OCI registry into the local store, verified by digest.
    Pull(oci::PullArgs),
    /// Start a project from a template (`weft new --list`).
    New(project::NewArgs),
    /// Run each component's `build` command from a manifest.
    Build(project::BuildArgs),
    /// Build, serve, and rebuild and redeploy on change; explains denied capabilities.
    Dev(Box<dev::DevArgs>),
}

#[derive(Args, Debug, Clone)]
struct DataDirArgs {
    /// The host's data directory (state, admin token, keyvalue files).
    #[arg(long, env = "WEFT_DATA_DIR")]
    data_dir: Option<PathBuf>,
}

impl DataDirArgs {
    fn resolve(&self) -> anyhow::Result<PathBuf> {
        match &self.data_dir {
            Some(d) => Ok(d.clone()),
            None => dirs::data_dir()
                .map(|d| d.join("weft"))
                .context("no user data directory on this system: pass --data-dir"),
        }
    }
}

#[derive(Args, Debug, Clone)]
struct ClientArgs {
    #[command(flatten)]
    data: DataDirArgs,
    /// Admin API address of the host (default: read from the data dir).
    #[arg(long, value_name = "URL")]
    admin: Option<String>,
    /// File holding the admin token (default: the data dir's admin-token).
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
}

impl ClientArgs {
    fn client(&self) -> anyhow::Result<client::AdminClient> {
        match (&self.admin, &self.token_file) {
            (Some(admin), Some(file)) => {
                let token = std::fs::read_to_string(file)
                    .with_context(|| format!("cannot read the token file {}", file.display()))?;
                Ok(client::AdminClient::new(admin, token.trim().to_string()))
            }
            (None, None) => client::AdminClient::discover(&self.data.resolve()?),
            _ => bail!("--admin and --token-file go together"),
        }
    }
}

/// Where a lattice is: its NATS server, name and credentials (docs/lattice.md).
#[derive(Args, Debug, Clone)]
struct LatticeConnArgs {
    /// Work against the lattice on this NATS server (`nats://HOST:PORT`, a nats-server 2.10+
    /// with JetStream) instead of one host's admin API.
    #[arg(long, value_name = "NATS_URL")]
    lattice: Option<String>,
    /// The lattice's name; several lattices can share one NATS.
    #[arg(long, default_value = "default", value_name = "NAME")]
    lattice_name: String,
    /// NATS credentials file (`.creds`).
    #[arg(long, value_name = "FILE")]
    nats_creds: Option<PathBuf>,
    /// NATS token.
    #[arg(
        long,
        env = "WEFT_NATS_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    nats_token: Option<String>,
    /// CA certificates (PEM) for the NATS server's TLS certificate.
    #[arg(long, value_name = "FILE")]
    nats_tls_ca: Option<PathBuf>,
    /// Client certificate (PEM) for NATS TLS.
    #[arg(long, value_name = "FILE")]
    nats_tls_cert: Option<PathBuf>,
    /// Client key (PEM) for NATS TLS.
    #[arg(long, value_name = "FILE")]
    nats_tls_key: Option<PathBuf>,
    /// Refuse a NATS connection without TLS.
    #[arg(long)]
    nats_require_tls: bool,
}

impl LatticeConnArgs {
    async fn connect(&self, url: &str) -> anyhow::Result<weft_lattice::Lattice> {
        let auth = weft_lattice::NatsAuth {
            creds: self.nats_creds.clone(),
            token: self.nats_token.clone(),
            tls_ca: self.nats_tls_ca.clone(),
            tls_cert: self.nats_tls_cert.clone(),
            tls_key: self.nats_tls_key.clone(),
            require_tls: self.nats_require_tls,
        };
        Ok(weft_lattice::connect(url, &self.lattice_name, &auth).await?)
    }
}

/// How a host behaves as a lattice member.
#[derive(Args, Debug, Clone)]
struct MemberArgs {
    /// This host's name in the lattice (default: the machine name and four hex digits).
    #[arg(long, value_name = "NAME")]
    host_name: Option<String>,
    /// A label of this host, for `hostSelector` and `spreadBy` (repeatable).
    #[arg(long = "label", value_name = "K=V")]
    labels: Vec<String>,
    /// Host record write period.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    heartbeat_interval: Duration,
    /// A host silent this long (on the observer's own clock) is lost and its replicas move.
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    host_timeout: Duration,
    /// The leader lease's time to live (renewed every third of it).
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    lease_ttl: Duration,
    /// How often the lattice state is re-listed.
    #[arg(long, default_value = "250ms", value_parser = parse_duration)]
    lattice_tick: Duration,
}

#[derive(Args, Debug)]
struct UpArgs {
    #[command(flatten)]
    engine: EngineArgs,
    #[command(flatten)]
    lattice: LatticeConnArgs,
    #[command(flatten)]
    member: MemberArgs,
    #[command(flatten)]
    data: DataDirArgs,
    #[command(flatten)]
    registry: oci::RegistryArgs,
    /// HTTP ingress address.
    #[arg(long, default_value = "127.0.0.1:8080")]
    http_addr: SocketAddr,
    /// Admin API address (also serves the dashboard at /ui).
    #[arg(long, default_value = "127.0.0.1:7870")]
    admin_addr: SocketAddr,
    /// Serve Prometheus metrics at http://ADDR/metrics (no auth: keep it on loopback or a
    /// scrape network). Off by default.
    #[arg(long, value_name = "ADDR")]
    metrics_addr: Option<SocketAddr>,
    /// Export traces over OTLP/HTTP (protobuf) to this collector, e.g. http://127.0.0.1:4318
    /// (spans go to URL/v1/traces). Off by default.
    #[arg(long, value_name = "URL")]
    otlp_endpoint: Option<String>,
    /// The `service.name` of exported spans.
    #[arg(long, default_value = "weft", value_name = "NAME")]
    otlp_service_name: String,
    /// Wall clock per invocation for workloads that set no `timeoutMs`.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    default_timeout: Duration,
    /// Linear memory per instance for workloads that set no `memoryLimitMb` (e.g. 256M).
    #[arg(long, default_value = "256M", value_parser = parse_size)]
    default_memory: u64,
    /// Guest sockets one workload may hold open at once (`new-socket-limit` past it).
    #[arg(long, default_value_t = weft_runtime::net::DEFAULT_WORKLOAD_SOCKETS)]
    max_sockets_per_workload: usize,
    /// Guest socket creations per second one workload may sustain, after a burst of
    /// `--max-sockets-per-workload` (`0` turns the pacing off). A guest creating sockets
    /// faster waits inside `create-tcp-socket`, so it cannot flood the host's network stack.
    #[arg(long, default_value_t = weft_runtime::net::DEFAULT_SOCKET_RATE)]
    socket_rate: u64,
    /// Response-body bytes per second one workload may send, over all its responses, after a
    /// burst of a quarter second's worth (e.g. 512M; `0`: unpaced). Keeps one workload
    /// streaming to a fast client from taking the host's cores from the others.
    #[arg(long, default_value = "1G", value_parser = parse_size)]
    max_response_rate: u64,
    /// Sustained linear-memory growth per component, per second, past the first 8 MiB each
    /// instance grows (e.g. 512M; `0` turns the meter off). A component growing faster waits
    /// inside `memory.grow`, so it cannot keep a core busy page-faulting.
    #[arg(long, default_value = "512M", value_parser = parse_size)]
    memory_growth_rate: u64,
    /// Carry wasmcloud:messaging over this NATS server (core subjects, e.g.
    /// nats://127.0.0.1:4222) instead of the in-process bus; replicas on other hosts then
    /// share queue groups (docs/messaging.md).
    #[arg(long, value_name = "URL")]
    nats: Option<String>,
    /// Time an ingress client has to send a request head; past it the connection is closed.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    header_read_timeout: Duration,
    /// Manifests to deploy at start (in addition to the stored desired state).
    #[arg(value_name = "MANIFEST")]
    manifests: Vec<PathBuf>,
}

#[derive(Args, Debug)]
struct DeployArgs {
    #[command(flatten)]
    client: ClientArgs,
    #[command(flatten)]
    lattice: LatticeConnArgs,
    /// With `--lattice`: how this deployer resolves `oci://` tags (a host deploy pins on the
    /// host, with the host's options).
    #[command(flatten)]
    registry: oci::RegistryArgs,
    /// Output format of the result.
    #[arg(short, long, value_enum, default_value_t = Format::Table)]
    output: Format,
    #[arg(value_name = "MANIFEST", required = true)]
    files: Vec<PathBuf>,
}

#[derive(Args, Debug)]
struct GetArgs {
    #[command(flatten)]
    client: ClientArgs,
    #[command(flatten)]
    lattice: LatticeConnArgs,
    #[arg(short, long, value_enum, default_value_t = Format::Table)]
    output: Format,
    /// `workloads`, or `workload NAME`.
    #[arg(value_name = "KIND")]
    kind: String,
    name: Option<String>,
}

#[derive(Args, Debug)]
struct DeleteArgs {
    #[command(flatten)]
    client: ClientArgs,
    #[command(flatten)]
    lattice: LatticeConnArgs,
    /// `workload`
    #[arg(value_name = "KIND")]
    kind: String,
    name: String,
}

#[derive(Args, Debug)]
struct LogsArgs {
    #[command(flatten)]
    client: ClientArgs,
    #[command(flatten)]
    lattice: LatticeConnArgs,
    /// Keep printing new lines.
    #[arg(short, long)]
    follow: bool,
    name: String,
}

#[derive(Args, Debug)]
struct InspectArgs {
    /// A component or module (`.wasm`, `.wat`), or a manifest (`.yaml`, `.yml`, `.json`).
    #[arg(value_name = "FILE")]
    file: PathBuf,
}

#[derive(Args, Debug)]
struct ComposeArgs {
    /// The workload manifest whose linked components to fuse.
    #[arg(value_name = "MANIFEST")]
    manifest: PathBuf,
    /// Where to write the composed component.
    #[arg(short, long, value_name = "FILE")]
    output: PathBuf,
}

#[derive(Subcommand, Debug)]
enum ManifestCommand {
    /// Validate manifests without running them.
    Check {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Print the manifest JSON Schema (for editors).
    Schema,
}

#[derive(ValueEnum, Debug, Clone, Copy)]
enum Format {
    Table,
    Wide,
    Json,
    Yaml,
}

impl From<Format> for client::OutputFormat {
    fn from(f: Format) -> Self {
        match f {
            Format::Table => client::OutputFormat::Table,
            Format::Wide => client::OutputFormat::Wide,
            Format::Json => client::OutputFormat::Json,
            Format::Yaml => client::OutputFormat::Yaml,
        }
    }
}

#[derive(Args, Debug, Clone)]
struct EngineArgs {
    /// Do not read or write the compile cache.
    #[arg(long)]
    no_cache: bool,
    /// Instance allocator: pooling (falls back to on-demand if the reservation fails).
    #[arg(long, value_enum, default_value_t = Allocator::Auto)]
    allocator: Allocator,
    /// Let the compiler inline calls across core modules: a call between composed components
    /// then costs less (docs/benchmarks.md, "Calls across components"); first compiles are
    /// slower. Part of the compile-cache key.
    #[arg(long)]
    inline: bool,
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
    /// wasmtime's WASI options, e.g. `-Scli`, `-Sinherit-network`, `-Sconfig-var=K=V`
    /// (`-S help` lists what weft takes; docs/wasmtime-flags.md).
    #[arg(short = 'S', long = "wasi", value_name = "KEY[=VAL[,..]]")]
    wasi_opts: Vec<String>,
    /// wasmtime's Wasm options, e.g. `-Wtimeout=2s`, `-Wmax-memory-size=N`,
    /// `-Wcomponent-model-async` (`-W help`).
    #[arg(short = 'W', long = "wasm", value_name = "KEY[=VAL[,..]]")]
    wasm_opts: Vec<String>,
    /// wasmtime's optimization options: `-Opooling-allocator[=n]` (`-O help`).
    #[arg(short = 'O', long = "optimize", value_name = "KEY[=VAL[,..]]")]
    optimize_opts: Vec<String>,
    /// wasmtime's codegen options: `-Ccache=n`, `-Cinlining` (`-C help`).
    #[arg(short = 'C', long = "codegen", value_name = "KEY[=VAL[,..]]")]
    codegen_opts: Vec<String>,
    /// wasmtime's debug options (weft takes none; each is refused by name).
    #[arg(short = 'D', long = "debug", value_name = "KEY[=VAL[,..]]")]
    debug_opts: Vec<String>,
}

impl GrantArgs {
    /// The wasmtime-style options, parsed (`-X help` prints the table and exits).
    fn wasmtime_flags(
        &self,
        command: wasmtime_flags::Command,
    ) -> anyhow::Result<wasmtime_flags::WasmtimeFlags> {
        let mut values = Vec::new();
        for (group, list) in [
            ('S', &self.wasi_opts),
            ('W', &self.wasm_opts),
            ('O', &self.optimize_opts),
            ('C', &self.codegen_opts),
            ('D', &self.debug_opts),
        ] {
            for v in list {
                if v == "help" || v == "help-long" {
                    print!("{}", wasmtime_flags::help(group));
                    std::process::exit(0);
                }
                values.push((group, v.clone()));
            }
        }
        Ok(wasmtime_flags::parse(&values, command)?)
    }

    /// Folds wasmtime's spellings into weft's: both work, and they must agree when both are
    /// given.
    fn merge(
        &mut self,
        engine: &mut EngineArgs,
        flags: &wasmtime_flags::WasmtimeFlags,
    ) -> anyhow::Result<()> {
        if let Some(t) = flags.timeout {
            match self.timeout {
                Some(mine) if mine != t => bail!(
                    "--timeout {} and -W timeout={} disagree: give one",
                    humantime::format_duration(mine),
                    humantime::format_duration(t)
                ),
                _ => self.timeout = Some(t),
            }
        }
        if let Some(m) = flags.max_memory_size {
            match self.max_memory {
                Some(mine) if mine != m => {
                    bail!("--max-memory {mine} and -W max-memory-size={m} disagree: give one")
                }
                _ => self.max_memory = Some(m),
            }
        }
        match flags.inherit_network {
            Some(true) => self.inherit_network = true,
            Some(false) if self.inherit_network => {
                bail!("--inherit-network and -S inherit-network=n disagree: give one")
            }
            _ => {}
        }
        if let Some(p) = flags.pooling_allocator {
            let wanted = if p {
                Allocator::Pooling
            } else {
                Allocator::OnDemand
            };
            match engine.allocator {
                Allocator::Auto => engine.allocator = wanted,
                mine if std::mem::discriminant(&mine) != std::mem::discriminant(&wanted) => bail!(
                    "--allocator and -O pooling-allocator={} disagree: give one",
                    if p { "y" } else { "n" }
                ),
                _ => {}
            }
        }
        if flags.cache == Some(false) {
            engine.no_cache = true;
        }
        if flags.inlining == Some(true) {
            engine.inline = true;
        }
        if flags.inherit_env == Some(true) {
            // Every host variable first; --env (given later on the line or not) overrides.
            let mut env: Vec<String> = std::env::vars().map(|(k, v)| format!("{k}={v}")).collect();
            env.append(&mut self.env);
            self.env = env;
        }
        Ok(())
    }
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
    /// The guest's `argv[0]` (default: the file's base name), as `wasmtime run --argv0`.
    #[arg(long, value_name = "NAME")]
    argv0: Option<String>,
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
    /// Largest request body passed to the guest (e.g. 256M); larger requests get 413.
    #[arg(long, default_value = "256M", value_parser = parse_size)]
    max_request_body: u64,
    /// Largest response body a guest may send (e.g. 1G); the stream is cut off past it.
    #[arg(long, default_value = "1G", value_parser = parse_size)]
    max_response_body: u64,
    /// Response-body bytes per second over all responses, after a burst of a quarter second's
    /// worth (e.g. 512M; `0`, the default: unpaced).
    #[arg(long, default_value = "0", value_parser = parse_size)]
    max_response_rate: u64,
    /// Replace or add a request header before the component sees the request: `NAME: VALUE`,
    /// or `@FILE` with one such line per line (repeatable; as `wasmtime serve -H`).
    #[arg(short = 'H', long = "header", value_name = "HEADER")]
    headers: Vec<String>,
    /// An address that, when a client connects to it, starts a graceful shutdown (as
    /// `wasmtime serve --shutdown-addr`; SIGINT/SIGTERM also do).
    #[arg(long, value_name = "SOCKADDR")]
    shutdown_addr: Option<SocketAddr>,
    /// Time a client has to send a request head; past it the connection is closed.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    header_read_timeout: Duration,
    /// Serving threads (1-256; default: one per CPU this process may use). A connection, its
    /// requests and the instances that answer them stay on one thread; a new connection goes to
    /// the thread with the fewest open.
    #[arg(long, value_name = "N", value_parser = parse_threads)]
    threads: Option<usize>,
    /// The component to serve (`.wasm` or `.wat`).
    #[arg(value_name = "FILE")]
    file: PathBuf,
}

fn parse_threads(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n @ 1..=256) => Ok(n),
        _ => Err(format!(
            "invalid thread count `{s}`: give a number from 1 to 256"
        )),
    }
}

/// One serving thread per CPU this process may use (its affinity and cgroup quota count).
fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 256)
}

pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
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
    max_memory: Option<u64>,
) -> anyhow::Result<(WeftEngine, Option<CompileCache>)> {
    let engine = WeftEngine::new(&EngineOptions {
        allocator: match args.allocator {
            Allocator::Auto => AllocatorChoice::Auto,
            Allocator::Pooling => AllocatorChoice::Pooling,
            Allocator::OnDemand => AllocatorChoice::OnDemand,
        },
        max_memory_bytes: max_memory,
        no_concurrency: false,
        inlining: args.inline,
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

fn grants(
    args: &GrantArgs,
    flags: &wasmtime_flags::WasmtimeFlags,
) -> anyhow::Result<(WasiGrants, AllowedHosts)> {
    let mut env: Vec<(String, String)> = Vec::new();
    for e in &args.env {
        let (k, v) = match e.split_once('=') {
            Some((k, v)) if !k.is_empty() => (k.to_string(), v.to_string()),
            Some(_) => bail!("invalid --env `{e}`: expected K=V"),
            None => {
                // `--env K` passes the host's value, as wasmtime does; unset stays unset.
                match std::env::var(e) {
                    Ok(v) => (e.clone(), v),
                    Err(_) => continue,
                }
            }
        };
        // A later definition (--env after -Sinherit-env) replaces an earlier one.
        env.retain(|(name, _)| *name != k);
        env.push((k, v));
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
        sockets: None,
        growth: None,
        stats: None,
        network_off: weft_runtime::wasi::NetworkOff {
            tcp: flags.tcp == Some(false),
            udp: flags.udp == Some(false),
            name_lookup: flags.allow_ip_name_lookup == Some(false),
        },
    };
    grants.validate().map_err(anyhow::Error::msg)?;
    let allowed = AllowedHosts::parse(&args.allow_hosts)?;
    Ok((grants, allowed))
}

/// `weft serve`'s host plugins from wasmtime's `-Sconfig`/`-Sconfig-var` and
/// `-Skeyvalue`/`-Skeyvalue-in-memory-data`: bound like a workload's (a manifest is written
/// for them and validated), the in-memory bucket preset with the given keys.
async fn serve_plugins(
    flags: &wasmtime_flags::WasmtimeFlags,
) -> anyhow::Result<Option<weft_runtime::plugins::BoundPlugins<weft_runtime::state::HostState>>> {
    let config = flags.config == Some(true) || !flags.config_vars.is_empty();
    let keyvalue = flags.keyvalue == Some(true) || !flags.keyvalue_data.is_empty();
    if !config && !keyvalue {
        return Ok(None);
    }
    let vars: serde_json::Map<String, serde_json::Value> = flags
        .config_vars
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
        .collect();
    let mut interfaces = Vec::new();
    if config {
        interfaces.push(serde_json::json!({
            "namespace": "wasi", "package": "config", "interfaces": ["store"]
        }));
    }
    if keyvalue {
        interfaces.push(serde_json::json!({
            "namespace": "wasi", "package": "keyvalue",
            "interfaces": ["store", "atomics", "batch"],
            "config": { "backend": "memory" }
        }));
    }
    let manifest = serde_json::json!({
        "apiVersion": "weft.dev/v1alpha1",
        "kind": "Workload",
        "metadata": { "name": "serve" },
        "spec": {
            "components": [{
                "name": weft_runtime::http::SERVE_COMPONENT,
                "image": "./component.wasm",
                "localResources": { "config": vars },
            }],
            "hostInterfaces": interfaces,
        },
    });
    let text = serde_norway::to_string(&manifest).context("cannot write the plugin manifest")?;
    let mut parsed = weft_manifest::parse_str(&text, std::path::Path::new("-S options"))
        .map_err(|e| anyhow::anyhow!("-S config / -S keyvalue: {e}"))?;
    let manifest = parsed.pop().context("no manifest")?;
    let logs = weft_runtime::logs::LogSink::new("serve");
    let plugins = weft_runtime::plugins::BoundPlugins::bind(&manifest, std::env::temp_dir(), &logs)
        .map_err(|errors| {
            let list: Vec<String> = errors.iter().map(ToString::to_string).collect();
            anyhow::anyhow!("-S config / -S keyvalue: {}", list.join("; "))
        })?;
    if !flags.keyvalue_data.is_empty() {
        let instance = plugins.instance(weft_runtime::http::SERVE_COMPONENT);
        let bucket = instance
            .keyvalue
            .as_ref()
            .context("the keyvalue plugin did not bind")?
            .open("")
            .map_err(|e| anyhow::anyhow!("-S keyvalue-in-memory-data: {e}"))?;
        for (k, v) in &flags.keyvalue_data {
            bucket
                .set(k, v.clone().into_bytes())
                .await
                .map_err(|e| anyhow::anyhow!("-S keyvalue-in-memory-data={k}=...: {e}"))?;
        }
    }
    Ok(Some(plugins))
}

fn load_file(
    engine: &WeftEngine,
    path: &std::path::Path,
    cache: Option<&CompileCache>,
) -> anyhow::Result<Loaded> {
    let loaded = load::load(engine, path, cache)?;
    log_loaded(&loaded);
    Ok(loaded)
}

fn log_loaded(loaded: &Loaded) {
    tracing::info!(
        file = %loaded.path.display(),
        cache_hit = loaded.cache_hit,
        elapsed_ms = loaded.elapsed.as_millis() as u64,
        "loaded"
    );
}

/// Raises the soft open-files limit to the hard one (servers need many descriptors), and caps
/// guest sockets host-wide at half of it, keeping the rest for the ingress and the host.
fn raise_open_files_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if let Some(max) = limit.maximum
        && limit.current.is_some_and(|cur| cur < max)
    {
        limit.current = Some(max);
        if let Err(e) = setrlimit(Resource::Nofile, limit) {
            tracing::debug!(error = %e, "could not raise the open-files limit");
        }
    }
    let soft = getrlimit(Resource::Nofile).current.unwrap_or(1 << 20);
    let guest = usize::try_from(soft / 2).unwrap_or(usize::MAX);
    weft_runtime::net::set_host_socket_limit(guest);
    tracing::debug!(
        open_files = soft,
        guest_sockets = guest,
        "file descriptor budget"
    );
}

pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("could not start the async runtime")
}

fn cmd_run(mut args: RunArgs) -> anyhow::Result<i32> {
    init_logging(&args.engine.log);
    let flags = args.grants.wasmtime_flags(wasmtime_flags::Command::Run)?;
    if flags.config.is_some() || !flags.config_vars.is_empty() {
        bail!(
            "-S config: `weft run` does not link wasi:config; serve the component with \
             `weft serve -Sconfig -Sconfig-var=NAME=VALUE`, or grant it in a workload manifest"
        );
    }
    if flags.keyvalue.is_some() || !flags.keyvalue_data.is_empty() {
        bail!(
            "-S keyvalue: `weft run` does not link wasi:keyvalue; serve the component with \
             `weft serve -Skeyvalue`, or grant it in a workload manifest"
        );
    }
    if flags.max_resources.is_some() {
        bail!(
            "-S max-resources: `weft run` keeps wasmtime's resource-table limit; the flag applies to `weft serve`"
        );
    }
    args.grants.merge(&mut args.engine, &flags)?;
    let (grants, allowed_hosts) = grants(&args.grants, &flags)?;
    let (engine, cache) = build_engine(&args.engine, args.grants.max_memory)?;
    let file = PathBuf::from(&args.file_and_args[0]);
    if inspect::is_manifest(&file) {
        // `weft run MANIFEST --invoke CALL`: the flag lands among the trailing arguments.
        let mut invoke = args.invoke.clone();
        let mut rest = args.file_and_args[1..].iter();
        while let Some(a) = rest.next() {
            match a.to_str() {
                Some("--invoke") => invoke = rest.next().map(|v| v.to_string_lossy().into_owned()),
                Some(s) if s.starts_with("--invoke=") => {
                    invoke = Some(s["--invoke=".len()..].to_string())
                }
                _ => bail!(
                    "{}: a manifest takes no program arguments (got {a:?})",
                    file.display()
                ),
            }
        }
        let Some(invoke) = &invoke else {
            bail!(
                "{}: a manifest runs with --invoke 'FUNC(ARGS)' (serve HTTP workloads with `weft up`)",
                file.display()
            );
        };
        let manifest = inspect::load_one(&file)?;
        let rt = runtime()?;
        let result = rt.block_on(weft_runtime::invoke::invoke_workload(
            &engine,
            cache.as_ref(),
            &manifest,
            invoke,
        ));
        rt.shutdown_background();
        return match result {
            Ok(text) => {
                println!("{text}");
                Ok(0)
            }
            Err(err @ RunError::Trap(_)) => {
                eprintln!("Error: {err}");
                Ok(err.exit_code())
            }
            Err(RunError::Exit(code)) => Ok(code),
            Err(RunError::Setup(msg)) => Err(anyhow::anyhow!("{}: {msg}", file.display())),
        };
    }
    let loaded = load_file(&engine, &file, cache.as_ref())?;
    let mut argv = Vec::with_capacity(args.file_and_args.len());
    // argv[0] is the file's base name, as wasmtime passes it (no host path leaks).
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    argv.push(args.argv0.clone().unwrap_or(name));
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

fn cmd_serve(mut args: ServeArgs) -> anyhow::Result<i32> {
    raise_open_files_limit();
    init_logging(&args.engine.log);
    let flags = args.grants.wasmtime_flags(wasmtime_flags::Command::Serve)?;
    args.grants.merge(&mut args.engine, &flags)?;
    let (grants, allowed_hosts) = grants(&args.grants, &flags)?;
    let headers = wasmtime_flags::parse_headers(&args.headers).map_err(anyhow::Error::msg)?;
    // Start-up in two lanes (docs/benchmarks.md, "Cold start: two lanes and an early bind"):
    // the pooling engine reserves its slots and protects 1000 fiber-stack guard pages (~3.5
    // ms) on this thread while a second one reads the component, starts the runtime and binds
    // the address (a client that connects from then on waits in the backlog, also through a
    // first compile, instead of being refused). "Serving HTTP on" is still printed only once
    // the component is ready to serve.
    let (engine, cache, start) = std::thread::scope(|lanes| {
        let start = std::thread::Builder::new()
            .name("weft-start".into())
            // As deep as the main thread's: a `.wat` file is parsed on this one.
            .stack_size(8 << 20)
            .spawn_scoped(lanes, || serve_start(&args, &flags))
            .context("cannot start the start-up thread")?;
        let engine = build_engine(&args.engine, args.grants.max_memory);
        let start = start
            .join()
            .map_err(|_| anyhow::anyhow!("the start-up thread panicked"))?;
        // The file's and the address's errors first: those are the ones a user makes.
        let start = start?;
        let (engine, cache) = engine?;
        anyhow::Ok((engine, cache, start))
    })?;
    let ServeStart {
        plugins,
        rt,
        listener,
        bytes,
    } = start;
    let loaded = load::load_bytes(&engine, &args.file, &bytes, cache.as_ref())?;
    drop(bytes);
    log_loaded(&loaded);
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
        max_request_body: args.max_request_body,
        max_response_body: args.max_response_body,
        response_pace: weft_runtime::limit::response_pace(args.max_response_rate),
        max_resources: flags
            .max_resources
            .unwrap_or(weft_runtime::limit::DEFAULT_MAX_RESOURCES),
        plugins: plugins.clone(),
        ..HttpOptions::default()
    };
    let service = match HttpService::new(&engine, component, options) {
        Ok(s) => s,
        Err(e) => {
            let mut msg = format!("{}: cannot serve: {e}", args.file.display());
            if plugins.is_none() && msg.contains("wasi:config") {
                msg.push_str(
                    "\nhint: -Sconfig links wasi:config (values: -Sconfig-var=NAME=VALUE)",
                );
            }
            if plugins.is_none() && msg.contains("wasi:keyvalue") {
                msg.push_str("\nhint: -Skeyvalue links wasi:keyvalue in memory (preset keys: -Skeyvalue-in-memory-data=KEY=VALUE)");
            }
            bail!(msg);
        }
    };
    rt.block_on(async {
        let local = listener.local_addr()?;
        let shutdown_listener = match args.shutdown_addr {
            Some(addr) => {
                let l = weft_host::server::bind(addr)
                    .with_context(|| format!("cannot listen on {addr} (--shutdown-addr)"))?;
                eprintln!("Listening for shutdown on tcp://{}/", l.local_addr()?);
                Some(l)
            }
            None => None,
        };
        eprintln!("Serving HTTP on http://{local}/");
        let threads = args.threads.unwrap_or_else(default_threads);
        tracing::info!(kind = %service.kind(), allocator = %engine.allocator(), threads, "serving");
        let shutdown = async move {
            match shutdown_listener {
                Some(l) => tokio::select! {
                    _ = weft_host::server::shutdown_signal() => {}
                    _ = l.accept() => {}
                },
                None => weft_host::server::shutdown_signal().await,
            }
        };
        let handler =
            weft_host::server::ComponentHandler::new(service).with_request_headers(headers);
        let mut handlers = Vec::with_capacity(threads);
        for _ in 1..threads {
            handlers.push(handler.replica());
        }
        handlers.insert(0, handler);
        weft_host::server::serve_on_threads(
            listener,
            handlers,
            weft_host::server::ServerLimits {
                max_connections: args.max_concurrent_connections,
                header_read_timeout: args.header_read_timeout,
            },
            shutdown,
        )
        .await?;
        anyhow::Ok(())
    })?;
    Ok(0)
}

/// What `weft serve` sets up while the engine is built on another thread.
struct ServeStart {
    plugins: Option<weft_runtime::plugins::BoundPlugins<weft_runtime::state::HostState>>,
    rt: tokio::runtime::Runtime,
    listener: tokio::net::TcpListener,
    bytes: Vec<u8>,
}

fn serve_start(
    args: &ServeArgs,
    flags: &wasmtime_flags::WasmtimeFlags,
) -> anyhow::Result<ServeStart> {
    // The file before the address: a mistyped path is reported as such even when the port is
    // taken too.
    let bytes = load::read_wasm(&args.file)?;
    let plugins = tokio::runtime::Builder::new_current_thread()
        .build()
        .context("cannot start a runtime for the -S plugins")?
        .block_on(serve_plugins(flags))?;
    // Single-threaded: this runtime only accepts (and waits for the shutdown signal); the
    // serving threads get runtimes of their own (`server::serve_on_threads`).
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("could not start the async runtime")?;
    let listener = {
        let _runtime = rt.enter();
        weft_host::server::bind(args.addr)
            .with_context(|| format!("cannot listen on {}", args.addr))?
    };
    Ok(ServeStart {
        plugins,
        rt,
        listener,
        bytes,
    })
}

fn cmd_up(args: UpArgs) -> anyhow::Result<i32> {
    init_logging(if args.engine.log == "warn" {
        "info"
    } else {
        &args.engine.log
    });
    let data_dir = args.data.resolve()?;
    let (engine, cache) = build_engine(&args.engine, None)?;
    let rt = runtime()?;
    let tracing_export = match &args.otlp_endpoint {
        Some(endpoint) => Some(weft_host::trace::Tracing::start(
            endpoint,
            &args.otlp_service_name,
            rt.handle().clone(),
        )?),
        None => None,
    };
    rt.block_on(async {
        let defaults = weft_runtime::workload::WorkloadDefaults {
            timeout: args.default_timeout,
            memory_bytes: args.default_memory,
            max_sockets: args.max_sockets_per_workload,
            socket_rate: (args.socket_rate > 0).then_some(args.socket_rate),
            response_rate: (args.max_response_rate > 0).then_some(args.max_response_rate),
            memory_growth_rate: (args.memory_growth_rate > 0).then_some(args.memory_growth_rate),
        };
        raise_open_files_limit();
        if let Some(url) = &args.nats {
            let client = weft_messaging::connect(url, Duration::from_secs(10))
                .await
                .with_context(|| format!("--nats {url}: cannot connect to the NATS server"))?;
            weft_runtime::plugins::messaging::set_host_bus(std::sync::Arc::new(
                weft_messaging::NatsBus::new(client),
            ))
            .map_err(|e| anyhow::anyhow!("--nats {url}: {e}"))?;
            eprintln!("Messaging over NATS at {url}");
        }
        let host = weft_host::host::Host::open_with_defaults(engine, cache, &data_dir, defaults)?;
        host.set_puller(std::sync::Arc::new(
            args.registry.puller(false, Some(data_dir.join("oci"))),
        ));
        let token = weft_host::token::load_or_create_token(&data_dir)
            .with_context(|| format!("cannot create the admin token in {}", data_dir.display()))?;
        let ingress = weft_host::server::bind(args.http_addr)
            .with_context(|| format!("cannot listen on {} (--http-addr)", args.http_addr))?;
        let admin = weft_host::server::bind(args.admin_addr)
            .with_context(|| format!("cannot listen on {} (--admin-addr)", args.admin_addr))?;
        let admin_local = admin.local_addr()?;
        let metrics = match args.metrics_addr {
            Some(addr) => Some(
                weft_host::server::bind(addr)
                    .with_context(|| format!("cannot listen on {addr} (--metrics-addr)"))?,
            ),
            None => None,
        };
        let metrics_local = metrics.as_ref().map(|l| l.local_addr()).transpose()?;
        let ingress_local = ingress.local_addr()?;
        std::fs::write(data_dir.join("admin-addr"), format!("{admin_local}\n"))
            .with_context(|| format!("cannot write {}", data_dir.join("admin-addr").display()))?;
        host.restore().await;
        for file in &args.manifests {
            match read_manifest(file) {
                Ok((path, text)) => match host.apply(&path, &text).await {
                    Ok(list) => {
                        for w in list {
                            eprintln!("deployed {}", w["name"].as_str().unwrap_or("?"));
                        }
                    }
                    Err(e) => eprintln!("Error: {e}"),
                },
                Err(e) => eprintln!("Error: {e:#}"),
            }
        }
        let _agent = match &args.lattice.lattice {
            Some(url) => Some(join_lattice(&args, url, &host, ingress_local, &data_dir).await?),
            None => None,
        };
        eprintln!("Serving HTTP on http://{ingress_local}/");
        if let Some(m) = metrics_local {
            eprintln!("Metrics on http://{m}/metrics");
        }
        // Last: tests and scripts take this line as "ready".
        eprintln!(
            "Admin API on {admin_local} (token in {}); dashboard on http://{admin_local}/ui",
            data_dir.join("admin-token").display()
        );
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let wait = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|v| *v).await;
        };
        let ingress_task = tokio::spawn(weft_host::server::serve_with(
            ingress,
            weft_host::ingress::Ingress(host.clone()),
            weft_host::server::ServerLimits {
                max_connections: weft_host::server::DEFAULT_MAX_CONNECTIONS,
                header_read_timeout: args.header_read_timeout,
            },
            wait(stop_rx.clone()),
        ));
        let addrs = weft_host::ui::HostAddrs {
            ingress: Some(ingress_local),
            admin: Some(admin_local),
            metrics: metrics_local,
            otlp_endpoint: args.otlp_endpoint.clone(),
        };
        let admin_task = tokio::spawn(weft_host::server::serve(
            admin,
            weft_host::admin::AdminApi::with_addrs(host.clone(), token, addrs),
            64,
            wait(stop_rx.clone()),
        ));
        let metrics_task = metrics.map(|listener| {
            tokio::spawn(weft_host::server::serve(
                listener,
                weft_host::metrics::MetricsEndpoint(host.clone()),
                64,
                wait(stop_rx),
            ))
        });
        weft_host::server::shutdown_signal().await;
        let _ = stop_tx.send(true);
        let _ = ingress_task.await;
        let _ = admin_task.await;
        if let Some(t) = metrics_task {
            let _ = t.await;
        }
        anyhow::Ok(())
    })?;
    // Flush the last spans while the runtime (which sends them) still runs.
    if let Some(t) = tracing_export {
        t.shutdown();
    }
    Ok(0)
}

/// `weft up --lattice`: the agent drives this host's replicas through `weft-host`.
struct LatticeHost(std::sync::Arc<weft_host::host::Host>);

impl weft_lattice::agent::LocalHost for LatticeHost {
    async fn deploy(&self, manifest: weft_manifest::Manifest) -> Result<(), String> {
        self.0
            .deploy_replica(manifest)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    fn remove(&self, name: &str) -> Result<(), String> {
        self.0.remove_replica(name).map_err(|e| e.to_string())
    }

    async fn probe(&self, name: &str) -> Result<(), String> {
        self.0.probe_replica(name).await
    }

    fn logs(&self, name: &str) -> Option<Vec<String>> {
        let sink = self.0.logs(name).ok()?;
        Some(sink.snapshot().iter().map(|l| l.render()).collect())
    }
}

/// Headers that describe one connection or one message framing, not the request: dropped when
/// a request or response crosses the lattice (the receiving side frames the body itself).
fn hop_by_hop(name: &str) -> bool {
    matches!(
        name.to_ascii_lowercase().as_str(),
        "connection"
            | "keep-alive"
            | "transfer-encoding"
            | "content-length"
            | "te"
            | "trailer"
            | "upgrade"
            | "proxy-connection"
    )
}

fn full_body(bytes: bytes::Bytes) -> weft_runtime::WasiBody {
    use http_body_util::BodyExt as _;
    http_body_util::Full::new(bytes)
        .map_err(|never: std::convert::Infallible| match never {})
        .boxed_unsync()
}

/// How long a forwarding host waits for a request's body before it gives up (408).
const FORWARD_BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

impl weft_lattice::forward::ServeForwarded for LatticeHost {
    async fn serve_forwarded(
        &self,
        head: weft_lattice::forward::RequestHead,
        body: bytes::Bytes,
        max_body: usize,
    ) -> (weft_lattice::forward::ResponseHead, bytes::Bytes) {
        use http_body_util::BodyExt as _;
        use weft_lattice::forward::{ResponseHead, error_head, string_to_value, value_to_string};
        let refused = |status: u16| {
            let reason = http::StatusCode::from_u16(status)
                .ok()
                .and_then(|s| s.canonical_reason())
                .unwrap_or("Error");
            (
                error_head(status),
                bytes::Bytes::from(format!("{status} {reason}\n")),
            )
        };
        let mut builder = http::Request::builder()
            .method(head.method.as_str())
            .uri(head.uri.as_str());
        for (name, value) in &head.headers {
            if hop_by_hop(name) || name.eq_ignore_ascii_case(weft_host::host::FORWARDED_HEADER) {
                continue;
            }
            let Some(value) = string_to_value(value) else {
                return refused(400);
            };
            builder = builder.header(name.as_str(), value);
        }
        let request = builder
            .header(weft_host::host::FORWARDED_HEADER, head.origin.as_str())
            .body(full_body(body));
        let Ok(request) = request else {
            return refused(400);
        };
        let response = self.0.handle(request).await;
        let misdirected = response
            .extensions()
            .get::<weft_host::host::Misdirected>()
            .is_some();
        let (parts, body) = response.into_parts();
        let collected = tokio::time::timeout(
            weft_lattice::forward::FORWARD_TIMEOUT,
            http_body_util::Limited::new(body, max_body).collect(),
        )
        .await;
        let body = match collected {
            Ok(Ok(c)) => c.to_bytes(),
            // Too large for one message, failed mid-body, or too slow: the client must not
            // take a cut body for a whole one.
            _ => return refused(502),
        };
        let headers = parts
            .headers
            .iter()
            .filter(|(name, _)| !hop_by_hop(name.as_str()))
            .map(|(name, value)| (name.as_str().to_string(), value_to_string(value.as_bytes())))
            .collect();
        (
            ResponseHead {
                status: parts.status.as_u16(),
                headers,
                misdirected,
                part: None,
            },
            body,
        )
    }
}

/// The ingress side of forwarding: requests for lattice deployments this host does not run.
struct LatticeIngress(std::sync::Arc<weft_lattice::forward::Forwarder>);

impl weft_host::host::Fallback for LatticeIngress {
    fn target(&self, host: Option<&str>, path: &str) -> Option<String> {
        self.0.target(host, path)
    }

    fn forward(
        &self,
        target: String,
        request: http::Request<weft_runtime::WasiBody>,
    ) -> weft_host::host::FallbackFuture<'_> {
        Box::pin(async move {
            use http::StatusCode;
            use http_body_util::BodyExt as _;
            use weft_lattice::forward::{Forwarded, RequestHead, string_to_value, value_to_string};
            // A slot before the body is buffered: at most MAX_FORWARDING bodies at once.
            let Some(_slot) = self.0.admit() else {
                return Err((
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!(
                        "{} requests are being forwarded already",
                        weft_lattice::forward::MAX_FORWARDING
                    ),
                ));
            };
            let (parts, body) = request.into_parts();
            let limit = self.0.max_body();
            let body = match tokio::time::timeout(
                FORWARD_BODY_TIMEOUT,
                http_body_util::Limited::new(body, limit).collect(),
            )
            .await
            {
                Err(_) => {
                    return Err((
                        StatusCode::REQUEST_TIMEOUT,
                        format!("the request body did not arrive within {FORWARD_BODY_TIMEOUT:?}"),
                    ));
                }
                Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
                    return Err((
                        StatusCode::PAYLOAD_TOO_LARGE,
                        format!("a forwarded request body is limited to {limit} bytes"),
                    ));
                }
                Ok(Err(e)) => {
                    return Err((
                        StatusCode::BAD_REQUEST,
                        format!("the request body failed: {e}"),
                    ));
                }
                Ok(Ok(c)) => c.to_bytes(),
            };
            let mut headers: Vec<(String, String)> = parts
                .headers
                .iter()
                .filter(|(name, _)| !hop_by_hop(name.as_str()))
                .map(|(name, value)| (name.as_str().to_string(), value_to_string(value.as_bytes())))
                .collect();
            // An HTTP/1.0 or absolute-form request may have no Host: the serving host routes
            // by it, so send the authority the ingress routed by.
            if !parts.headers.contains_key(http::header::HOST)
                && let Some(authority) = parts.uri.authority()
            {
                headers.push(("host".to_string(), authority.as_str().to_string()));
            }
            let head = RequestHead {
                method: parts.method.as_str().to_string(),
                uri: parts
                    .uri
                    .path_and_query()
                    .map_or("/", |p| p.as_str())
                    .to_string(),
                headers,
                origin: self.0.me().to_string(),
                part: None,
                more: None,
            };
            match self.0.forward(&target, head, body).await {
                Forwarded::Response(head, body) => {
                    let mut builder = http::Response::builder().status(head.status);
                    for (name, value) in &head.headers {
                        if hop_by_hop(name) {
                            continue;
                        }
                        let Some(value) = string_to_value(value) else {
                            return Err((
                                StatusCode::BAD_GATEWAY,
                                format!("a response header `{name}` does not decode"),
                            ));
                        };
                        builder = builder.header(name.as_str(), value);
                    }
                    builder.body(full_body(body)).map_err(|e| {
                        (
                            StatusCode::BAD_GATEWAY,
                            format!("the response does not build: {e}"),
                        )
                    })
                }
                Forwarded::NoReplica => Err((
                    StatusCode::SERVICE_UNAVAILABLE,
                    "no host runs a ready replica".to_string(),
                )),
                Forwarded::TooLarge { limit } => Err((
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("a forwarded request body is limited to {limit} bytes"),
                )),
                Forwarded::Timeout(detail) => Err((StatusCode::GATEWAY_TIMEOUT, detail)),
                Forwarded::Failed(detail) => Err((StatusCode::BAD_GATEWAY, detail)),
            }
        })
    }
}

fn parse_labels(labels: &[String]) -> anyhow::Result<std::collections::BTreeMap<String, String>> {
    let mut out = std::collections::BTreeMap::new();
    for l in labels {
        let Some((k, v)) = l.split_once('=') else {
            bail!("--label `{l}`: expected K=V");
        };
        weft_manifest::rules::check_label_key(k)
            .map_err(|r| anyhow::anyhow!("--label `{l}`: key {}", r.reason))?;
        weft_manifest::rules::check_label_value(v)
            .map_err(|r| anyhow::anyhow!("--label `{l}`: value {}", r.reason))?;
        out.insert(k.to_string(), v.to_string());
    }
    Ok(out)
}

async fn join_lattice(
    args: &UpArgs,
    url: &str,
    host: &std::sync::Arc<weft_host::host::Host>,
    ingress: SocketAddr,
    data_dir: &std::path::Path,
) -> anyhow::Result<weft_lattice::agent::Agent> {
    let m = &args.member;
    let host_name = m
        .host_name
        .clone()
        .unwrap_or_else(weft_lattice::agent::default_host_name);
    weft_manifest::rules::check_dns_label(&host_name)
        .map_err(|r| anyhow::anyhow!("--host-name `{host_name}`: {}", r.reason))?;
    let labels = parse_labels(&m.labels)?;
    if m.host_timeout < m.heartbeat_interval * 2 {
        bail!(
            "--host-timeout {:?} must be at least twice --heartbeat-interval {:?}",
            m.host_timeout,
            m.heartbeat_interval
        );
    }
    let lattice = args.lattice.connect(url).await?;
    let config = weft_lattice::agent::AgentConfig {
        host_name: host_name.clone(),
        labels,
        http_addr: Some(ingress.to_string()),
        heartbeat: m.heartbeat_interval,
        host_timeout: m.host_timeout,
        lease_ttl: m.lease_ttl,
        tick: m.lattice_tick,
        cache_dir: data_dir.join("lattice").join("images"),
        stats: host.stats().lattice.clone(),
    };
    let agent = weft_lattice::agent::start(
        lattice,
        config,
        std::sync::Arc::new(LatticeHost(host.clone())),
    );
    host.set_fallback(std::sync::Arc::new(LatticeIngress(agent.forwarder())));
    eprintln!(
        "Joined lattice `{}` at {url} as host `{host_name}`",
        args.lattice.lattice_name
    );
    Ok(agent)
}

fn cmd_deploy_lattice(args: &DeployArgs, url: &str) -> anyhow::Result<i32> {
    let rt = runtime()?;
    rt.block_on(async {
        let lattice = args.lattice.connect(url).await?;
        let puller = args.registry.puller(true, None);
        let mut failed = false;
        let mut out = Vec::new();
        for file in &args.files {
            let manifests = match weft_manifest::load_file(file) {
                Ok(m) => m,
                Err(e) => {
                    eprintln!("{e}");
                    failed = true;
                    continue;
                }
            };
            for m in manifests {
                match weft_lattice::ops::deploy(&lattice, m, &puller).await {
                    Ok(d) => {
                        if matches!(args.output, Format::Json) {
                            out.push(serde_json::json!({
                                "name": d.name, "version": d.version,
                                "replicas": d.replicas, "uploaded": d.images,
                            }));
                        } else {
                            println!(
                                "deployed {} version {} ({} replica{}) to lattice `{}`{}",
                                d.name,
                                d.version,
                                d.replicas,
                                if d.replicas == 1 { "" } else { "s" },
                                lattice.name,
                                if d.images.is_empty() {
                                    String::new()
                                } else {
                                    format!("; uploaded {}", d.images.join(", "))
                                }
                            );
                        }
                    }
                    Err(e) => {
                        eprintln!("Error: {e}");
                        failed = true;
                    }
                }
            }
        }
        if matches!(args.output, Format::Json) {
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
        anyhow::Ok(if failed { 1 } else { 0 })
    })
}

fn cmd_get_lattice(args: &GetArgs, url: &str) -> anyhow::Result<i32> {
    let rt = runtime()?;
    rt.block_on(async {
        let lattice = args.lattice.connect(url).await?;
        let list = match args.kind.as_str() {
            "hosts" | "host" => weft_lattice::ops::hosts(&lattice).await?,
            "workloads" | "workload" | "wl" => weft_lattice::ops::workloads(&lattice).await?,
            other => bail!(
                "unknown kind `{other}`: use `weft get hosts --lattice URL` or `weft get workloads --lattice URL`"
            ),
        };
        match args.output {
            Format::Json => println!("{}", serde_json::to_string_pretty(&list)?),
            Format::Yaml => print!("{}", serde_norway::to_string(&list)?),
            Format::Table | Format::Wide => {
                for item in list.as_array().into_iter().flatten() {
                    let fields: Vec<String> = item
                        .as_object()
                        .into_iter()
                        .flatten()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect();
                    println!("{}", fields.join("  "));
                }
            }
        }
        anyhow::Ok(0)
    })
}

fn read_manifest(file: &std::path::Path) -> anyhow::Result<(PathBuf, String)> {
    let path = std::path::absolute(file)
        .with_context(|| format!("{}: cannot resolve the path", file.display()))?;
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("{}: cannot read the manifest", file.display()))?;
    Ok((path, text))
}

fn cmd_deploy(args: DeployArgs) -> anyhow::Result<i32> {
    if let Some(url) = &args.lattice.lattice {
        return cmd_deploy_lattice(&args, url);
    }
    let client = args.client.client()?;
    let mut failed = false;
    for file in &args.files {
        let (path, text) = read_manifest(file)?;
        match client.apply(&path, &text) {
            Ok(result) => {
                let list = result.get("workloads").cloned().unwrap_or_default();
                print!(
                    "{}",
                    client::render_workloads(
                        &serde_json::json!({ "workloads": list }),
                        args.output.into()
                    )
                );
            }
            Err(e) => {
                eprintln!("Error: {e:#}");
                failed = true;
            }
        }
    }
    Ok(if failed { 1 } else { 0 })
}

fn cmd_get(args: GetArgs) -> anyhow::Result<i32> {
    if let Some(url) = &args.lattice.lattice {
        return cmd_get_lattice(&args, url);
    }
    let client = args.client.client()?;
    match (args.kind.as_str(), &args.name) {
        ("workloads" | "workload" | "wl", None) => {
            print!(
                "{}",
                client::render_workloads(&client.list()?, args.output.into())
            );
        }
        ("workload" | "workloads" | "wl", Some(name)) => {
            print!(
                "{}",
                client::render_workload(&client.get(name)?, args.output.into())
            );
        }
        (other, _) => {
            bail!("unknown kind `{other}`: use `weft get workloads` or `weft get workload NAME`")
        }
    }
    Ok(0)
}

fn cmd_delete(args: DeleteArgs) -> anyhow::Result<i32> {
    if !matches!(args.kind.as_str(), "workload" | "workloads" | "wl") {
        bail!(
            "unknown kind `{}`: use `weft delete workload NAME`",
            args.kind
        );
    }
    if let Some(url) = &args.lattice.lattice {
        let rt = runtime()?;
        return rt.block_on(async {
            let lattice = args.lattice.connect(url).await?;
            if weft_lattice::ops::delete(&lattice, &args.name).await? {
                println!(
                    "workload {} deleted from lattice `{}`",
                    args.name, lattice.name
                );
                anyhow::Ok(0)
            } else {
                bail!(
                    "no workload named `{}` in lattice `{}`",
                    args.name,
                    lattice.name
                )
            }
        });
    }
    let client = args.client.client()?;
    client.delete(&args.name)?;
    println!("workload {} deleted", args.name);
    Ok(0)
}

fn cmd_logs(args: LogsArgs) -> anyhow::Result<i32> {
    if let Some(url) = &args.lattice.lattice {
        if args.follow {
            bail!(
                "--follow does not work with --lattice yet (hint: drop --follow, or follow one host's logs with --admin)"
            );
        }
        let rt = runtime()?;
        let lines = rt.block_on(async {
            let lattice = args.lattice.connect(url).await?;
            anyhow::Ok(weft_lattice::ops::logs(&lattice, &args.name).await?)
        })?;
        for line in lines {
            println!("{line}");
        }
        return Ok(0);
    }
    let client = args.client.client()?;
    let mut out = std::io::stdout();
    client.logs(&args.name, args.follow, &mut out)?;
    Ok(0)
}

fn cmd_inspect(args: InspectArgs) -> anyhow::Result<i32> {
    if inspect::is_manifest(&args.file) {
        let manifest = inspect::load_one(&args.file)?;
        print!("{}", inspect::render_manifest(&manifest)?);
        return Ok(0);
    }
    let bytes = load::read_wasm(&args.file)?;
    let info = weft_inspect::inspect(&bytes)
        .with_context(|| format!("{}: cannot inspect", args.file.display()))?;
    print!("{}", inspect::render_component(&args.file, &info));
    Ok(0)
}

fn cmd_compose(args: ComposeArgs) -> anyhow::Result<i32> {
    let manifest = inspect::load_one(&args.manifest)?;
    let (bytes, root) = weft_runtime::compose::compose_manifest(&manifest)
        .with_context(|| format!("{}", args.manifest.display()))?;
    std::fs::write(&args.output, &bytes)
        .with_context(|| format!("cannot write {}", args.output.display()))?;
    eprintln!(
        "wrote {} ({} bytes): `{root}` with the components it imports from",
        args.output.display(),
        bytes.len()
    );
    Ok(0)
}

fn cmd_manifest(cmd: ManifestCommand) -> anyhow::Result<i32> {
    match cmd {
        ManifestCommand::Schema => {
            println!(
                "{}",
                serde_json::to_string_pretty(&weft_manifest::json_schema())?
            );
            Ok(0)
        }
        ManifestCommand::Check { files } => {
            let mut failed = false;
            for f in &files {
                match weft_manifest::load_file(f) {
                    Ok(list) => println!(
                        "ok: {} ({} workload{})",
                        f.display(),
                        list.len(),
                        if list.len() == 1 { "" } else { "s" }
                    ),
                    Err(errors) => {
                        failed = true;
                        eprintln!("{errors}");
                    }
                }
            }
            Ok(if failed { 1 } else { 0 })
        }
    }
}

/// Runs the command line; returns the process exit code.
pub fn main() -> i32 {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => cmd_run(args),
        Command::Serve(args) => cmd_serve(args),
        Command::Up(args) => cmd_up(*args),
        Command::Deploy(args) => cmd_deploy(args),
        Command::Get(args) => cmd_get(args),
        Command::Delete(args) => cmd_delete(args),
        Command::Logs(args) => cmd_logs(args),
        Command::Manifest(cmd) => cmd_manifest(cmd),
        Command::Inspect(args) => cmd_inspect(args),
        Command::Compose(args) => cmd_compose(args),
        Command::Push(args) => oci::cmd_push(args),
        Command::Pull(args) => oci::cmd_pull(args),
        Command::New(args) => project::cmd_new(args),
        Command::Build(args) => project::cmd_build(args),
        Command::Dev(args) => dev::cmd_dev(*args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("Error: {err:#}");
            1
        }
    }
}
