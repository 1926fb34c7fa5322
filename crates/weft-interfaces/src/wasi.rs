//! What a guest is granted: environment, preopened directories, network, memory and time.
//! Nothing is granted by default: no host environment, no directories, no network (a socket may
//! be created, as under `wasmtime run`, but no address can be used). And the
//! WASI interfaces every served or workload component may import ([`add_to_linker`]).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::Linker;
use wasmtime::{StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

use crate::net::{DEFAULT_SOCKET_RATE, NetPolicy, NetStore, NetView, SocketBudget};
use crate::p3client::HasOutgoing;

/// Adds what HTTP handlers and workload components may import to `linker`: WASI 0.2 and 0.3
/// (with the `wasi:sockets` overrides that enforce the socket rules) and `wasi:http` 0.2 and
/// 0.3 (outgoing requests go through the store's `WasiHttpView` hooks, see `outbound.rs`).
pub fn add_to_linker<T: NetView + HasOutgoing>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    wasmtime_wasi::p2::add_to_linker_async(linker)?;
    crate::net::add_p2_overrides(linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(linker)?;
    wasmtime_wasi::p3::add_to_linker(linker)?;
    wasmtime_wasi_http::p3::add_to_linker(linker)?;
    crate::p3client::add_p3_client_override(linker)?;
    crate::net::add_p3_overrides(linker)?;
    Ok(())
}

/// A host directory made visible to the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirGrant {
    pub host: PathBuf,
    pub guest: String,
    pub read_only: bool,
}

impl DirGrant {
    /// Parses `HOST[::GUEST]` as `wasmtime run --dir` does (GUEST defaults to HOST).
    /// A `:ro` suffix on the whole argument makes the mount read-only.
    pub fn parse(arg: &str) -> Result<Self, String> {
        let (arg, read_only) = match arg.strip_suffix(":ro") {
            Some(rest) => (rest, true),
            None => (arg, false),
        };
        let (host, guest) = match arg.split_once("::") {
            Some((h, g)) => (h, g),
            None => (arg, arg),
        };
        if host.is_empty() || guest.is_empty() {
            return Err(format!(
                "invalid --dir `{arg}`: expected HOST[::GUEST], e.g. `./data::/data`"
            ));
        }
        Ok(DirGrant {
            host: PathBuf::from(host),
            guest: guest.to_string(),
            read_only,
        })
    }
}

/// Sockets one store may hold open without a network grant (`weft serve`; `weft run` links
/// no socket overrides and, like `wasmtime run`, leaves the count to the open-files limit):
/// enough for a guest that probes socket options, too few to spend the host's descriptors.
pub const NO_NETWORK_SOCKETS: usize = 16;
/// Core instances one store may create (a composed component has a few dozen at most).
pub const MAX_INSTANCES: usize = 1000;
/// Tables one store may create.
pub const MAX_TABLES: usize = 1000;
/// Linear memories one store may create.
pub const MAX_MEMORIES: usize = 100;
/// Elements one table may grow to.
pub const MAX_TABLE_ELEMENTS: usize = 1_000_000;

/// The grants shared by `weft run` and `weft serve`.
#[derive(Debug, Clone, Default)]
pub struct WasiGrants {
    /// Environment variables, exactly these (never the host's).
    pub env: Vec<(String, String)>,
    /// Preopened directories.
    pub dirs: Vec<DirGrant>,
    /// Full access to the host's network (sockets and name lookup).
    pub inherit_network: bool,
    /// Per-store cap on linear memory growth, bytes.
    pub max_memory_bytes: Option<u64>,
    /// Wall-clock limit per run (weft run) or per request (weft serve).
    pub timeout: Option<Duration>,
    /// Socket rules (`localResources.sockets`); `None` with `inherit_network` false: no network.
    pub sockets: Option<Arc<NetPolicy>>,
    /// The component's meter on linear-memory growth (`None`: unmetered).
    pub growth: Option<Arc<weft_engine::limit::RateMeter>>,
    /// The workload's counts (`None` outside a host: `weft serve`, `weft run`): every store
    /// built from these grants counts as a live instance with its memory, and its host
    /// functions count their calls (docs/observability.md).
    pub stats: Option<Arc<weft_stats::WorkloadStats>>,
    /// With `inherit_network`: parts of the host's network left out (wasmtime's `-Stcp=n`,
    /// `-Sudp=n`, `-Sallow-ip-name-lookup=n`).
    pub network_off: NetworkOff,
}

/// Parts of an inherited network turned off; by default none is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetworkOff {
    pub tcp: bool,
    pub udp: bool,
    pub name_lookup: bool,
}

impl WasiGrants {
    /// Checks that every granted directory exists, so a typo fails at start-up rather than
    /// on the first request.
    pub fn validate(&self) -> Result<(), String> {
        for dir in &self.dirs {
            if !dir.host.is_dir() {
                return Err(format!(
                    "--dir {}: no such directory on the host",
                    dir.host.display()
                ));
            }
        }
        Ok(())
    }

    /// Applies the grants to a WASI context builder; returns the store's half of the socket
    /// policy (for the linker's `wasi:sockets` overrides).
    pub fn apply(&self, builder: &mut WasiCtxBuilder) -> wasmtime::Result<NetStore> {
        for (k, v) in &self.env {
            builder.env(k, v);
        }
        for dir in &self.dirs {
            let perms = if dir.read_only {
                FsPerms::ReadOnly
            } else {
                FsPerms::ReadWrite
            };
            builder
                .preopened_dir(&dir.host, &dir.guest, perms)
                .map_err(|e| e.context(format!("could not open --dir {}", dir.host.display())))?;
        }
        if self.inherit_network {
            builder.inherit_network();
            builder
                .allow_tcp(!self.network_off.tcp)
                .allow_udp(!self.network_off.udp);
            builder.allow_ip_name_lookup(!self.network_off.name_lookup);
            return Ok(NetStore::unrestricted());
        }
        if let Some(policy) = &self.sockets {
            return Ok(policy.install(builder));
        }
        // No network, as `wasmtime run` without `-Sinherit-network`: a socket may be created
        // (it reaches nothing until it is bound or connected, and every address is refused),
        // counted per store and against the host's socket cap; no name is resolved.
        let budget = SocketBudget::new(NO_NETWORK_SOCKETS, Some(DEFAULT_SOCKET_RATE));
        let store = Arc::new(NetPolicy::no_network(budget)).install(builder);
        // `-Stcp=n` / `-Sudp=n` refuse creation too, as under `wasmtime run`.
        if self.network_off.tcp {
            builder.allow_tcp(false);
        }
        if self.network_off.udp {
            builder.allow_udp(false);
        }
        Ok(store)
    }

    /// The store limiter these grants imply: [`Self::store_limits`] and the growth meter.
    pub fn limiter(&self) -> weft_engine::limit::Limiter {
        weft_engine::limit::Limiter::new(self.store_limits(), self.growth.clone())
            .counted(self.stats.clone())
    }

    /// The store limits these grants imply.
    pub fn store_limits(&self) -> StoreLimits {
        // Caps that hold with the on-demand allocator too (the pooling allocator has its own):
        // a guest cannot create unbounded instances, tables or table elements.
        let mut b = StoreLimitsBuilder::new()
            .instances(MAX_INSTANCES)
            .tables(MAX_TABLES)
            .memories(MAX_MEMORIES)
            .table_elements(MAX_TABLE_ELEMENTS);
        if let Some(max) = self.max_memory_bytes {
            b = b.memory_size(usize::try_from(max).unwrap_or(usize::MAX));
        }
        // A guest that hits the limit sees `memory.grow` fail (and usually traps with an
        // out-of-memory message of its own); the host keeps going.
        b.trap_on_grow_failure(false).build()
    }
}

/// Parses a size such as `64M`, `64MiB`, `1G`, `512k` or a plain number of bytes.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| {
        format!("invalid size `{s}`: expected a number with an optional unit (K, M, G), e.g. 64M")
    })?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        other => {
            return Err(format!(
                "invalid size `{s}`: unknown unit `{other}` (use K, M or G)"
            ));
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("invalid size `{s}`: too large"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn dir_grants() {
        assert_eq!(
            DirGrant::parse("./data::/data").expect("ok"),
            DirGrant {
                host: "./data".into(),
                guest: "/data".into(),
                read_only: false
            }
        );
        assert_eq!(DirGrant::parse("/tmp").expect("ok").guest, "/tmp");
        assert!(DirGrant::parse("/tmp::/x:ro").expect("ok").read_only);
        assert!(DirGrant::parse("::/x").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64M"), Ok(64 << 20));
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("12X").is_err());
        assert!(parse_size("M").is_err());
        assert!(parse_size("99999999999999G").is_err());
    }

    proptest! {
        #[test]
        fn parse_size_never_panics(s in ".{0,24}") { let _ = parse_size(&s); }

        #[test]
        fn parse_size_units(n in 0u64..1_000_000) {
            prop_assert_eq!(parse_size(&format!("{n}K")), Ok(n * 1024));
            prop_assert_eq!(parse_size(&n.to_string()), Ok(n));
        }
    }
}
