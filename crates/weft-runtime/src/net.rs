//! `wasi:sockets` under the workload's socket rules ([`weft_policy::sockets`]).
//!
//! Two layers, both driven by the same pure [`decide`]:
//! - every socket operation of P2 and P3 guests passes wasmtime-wasi's address check, which
//!   allows an address only when `decide` allows it *unchanged*, or when this store's connect
//!   override approved it a moment earlier (a redirect target);
//! - for WASI 0.2 guests, `tcp-socket.start-connect` and `ip-name-lookup.resolve-addresses` are
//!   shadowed in the linker: the connect address is rewritten to the rule's host port (a
//!   redirect), and names are checked against `allowedIpNameLookups` before any DNS query.
//!
//! WASI 0.3 guests get the first layer only: a redirect rule's guest port is refused for them
//! (they must use the host port directly, which a rule without `hostPort` grants), and they may
//! resolve names only with `allowedIpNameLookups: ["*"]` (deploy refuses other lookup grants
//! for them, see `workload.rs`).
//!
//! Every refusal is logged once per component and reason (with the fix) to `tracing` and to the
//! workload's log buffer, and the guest sees `access-denied`.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use wasmtime::component::{Linker, Resource};
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::p2::SocketError;
use wasmtime_wasi::p2::bindings::sockets::ip_name_lookup::{Host as _, ResolveAddressStream};
use wasmtime_wasi::p2::bindings::sockets::network::{ErrorCode, IpSocketAddress, Network};
use wasmtime_wasi::p2::bindings::sockets::tcp::{HostTcpSocket as _, TcpSocket};
use wasmtime_wasi::sockets::{SocketAddrUse, WasiSocketsView};
use weft_policy::sockets::{
    Denial, DenyReason, LookupVerdict, SocketRules, SocketUse, Verdict, decide, decide_lookup,
};

use crate::logs::LogSink;
use crate::state::HostState;

/// The `wasi:sockets` package version wasmtime-wasi 48 defines (guests' 0.2.x imports match it).
const P2_SOCKETS: &str = "0.2.12";

/// One component's socket policy, shared by all its stores.
pub struct NetPolicy {
    rules: SocketRules,
    /// Whether wasmtime-wasi's resolver is enabled at all. For a component that imports the
    /// WASI 0.3 resolver (which the overrides do not cover) only with `allowedIpNameLookups: ["*"]`.
    resolver: bool,
    component: String,
    logs: Option<LogSink>,
    logged: Mutex<HashSet<(SocketUse, DenyReason, u16)>>,
    logged_names: Mutex<HashSet<String>>,
}

impl std::fmt::Debug for NetPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetPolicy")
            .field("component", &self.component)
            .field("rules", &self.rules)
            .finish_non_exhaustive()
    }
}

/// Bound on distinct "denied" log lines per component, so a guest cannot grow the set forever.
const MAX_LOGGED: usize = 256;

impl NetPolicy {
    /// `p3_resolver`: the component imports `wasi:sockets/ip-name-lookup@0.3`.
    pub fn new(
        rules: SocketRules,
        component: &str,
        logs: Option<LogSink>,
        p3_resolver: bool,
    ) -> Arc<Self> {
        let resolver = if p3_resolver {
            rules.grants_any_name()
        } else {
            rules.grants_lookup()
        };
        Arc::new(NetPolicy {
            rules,
            resolver,
            component: component.to_string(),
            logs,
            logged: Mutex::new(HashSet::new()),
            logged_names: Mutex::new(HashSet::new()),
        })
    }

    pub fn rules(&self) -> &SocketRules {
        &self.rules
    }

    fn emit(&self, message: &str) {
        tracing::warn!(component = %self.component, "{message}");
        if let Some(logs) = &self.logs {
            logs.push(&self.component, "warn", message);
        }
    }

    fn report(&self, denial: &Denial) {
        let first = {
            let mut logged = self.logged.lock().unwrap_or_else(|e| e.into_inner());
            logged.len() < MAX_LOGGED && logged.insert(denial.log_key())
        };
        if first {
            self.emit(&format!("wasi:sockets {denial}"));
        }
    }

    fn report_lookup(&self, name: &str, hint: &str) {
        let first = {
            let mut logged = self.logged_names.lock().unwrap_or_else(|e| e.into_inner());
            logged.len() < MAX_LOGGED && logged.insert(name.to_string())
        };
        if first {
            let shown: String = name.chars().take(80).collect();
            self.emit(&format!(
                "wasi:sockets name lookup `{shown}` denied (hint: {hint})"
            ));
        }
    }

    /// Installs the address check on a store's WASI builder; returns the store's half.
    pub fn install(self: &Arc<Self>, builder: &mut WasiCtxBuilder) -> NetStore {
        use weft_policy::sockets::Protocol;
        builder.allow_tcp(self.rules.grants(Protocol::Tcp));
        builder.allow_udp(self.rules.grants(Protocol::Udp));
        builder.allow_ip_name_lookup(self.resolver);
        let approved: Arc<Mutex<Vec<SocketAddr>>> = Arc::default();
        let policy = Arc::clone(self);
        let approvals = Arc::clone(&approved);
        builder.socket_addr_check(move |addr, addr_use| {
            let allowed = policy.check(addr, addr_use, &approvals);
            Box::pin(async move { allowed })
        });
        NetStore {
            policy: Some(Arc::clone(self)),
            approved,
        }
    }

    fn check(
        &self,
        addr: SocketAddr,
        addr_use: SocketAddrUse,
        approved: &Mutex<Vec<SocketAddr>>,
    ) -> bool {
        let socket_use = match addr_use {
            SocketAddrUse::TcpBind => SocketUse::TcpBind,
            SocketAddrUse::TcpListen => SocketUse::TcpListen,
            SocketAddrUse::TcpAccept => SocketUse::TcpAccept,
            SocketAddrUse::TcpConnect => SocketUse::TcpConnect,
            SocketAddrUse::UdpBind => SocketUse::UdpBind,
            SocketAddrUse::UdpSend => SocketUse::UdpSend,
            SocketAddrUse::UdpReceive => SocketUse::UdpReceive,
        };
        match decide(&self.rules, socket_use, addr) {
            Verdict::Allow { target } if target == addr => true,
            verdict => {
                if socket_use == SocketUse::TcpConnect {
                    let mut list = approved.lock().unwrap_or_else(|e| e.into_inner());
                    if let Some(i) = list.iter().position(|a| *a == addr) {
                        list.swap_remove(i);
                        return true;
                    }
                }
                if let Verdict::Deny(d) = verdict {
                    self.report(&d);
                } else {
                    // A redirect rule's guest port reached the check without the P2 override
                    // (a WASI 0.3 guest): refuse, and say how to reach it.
                    self.emit(&format!(
                        "wasi:sockets tcp connect {addr} denied: redirect rules apply to WASI 0.2 \
                         guests only (hint: connect to the rule's hostPort, or grant the port \
                         without hostPort)"
                    ));
                }
                false
            }
        }
    }
}

/// The per-store half: the policy and the redirect targets the connect override approved.
#[derive(Default, Clone)]
pub struct NetStore {
    policy: Option<Arc<NetPolicy>>,
    approved: Arc<Mutex<Vec<SocketAddr>>>,
}

impl NetStore {
    /// No policy: the store's WASI builder decides alone (deny all, or `--inherit-network`).
    pub fn unrestricted() -> Self {
        NetStore::default()
    }
}

fn error_code(err: SocketError) -> wasmtime::Result<Result<(), ErrorCode>> {
    Ok(Err(err.downcast()?))
}

/// Shadows `start-connect` and `resolve-addresses` of `wasi:sockets@0.2` with the rule-checking
/// versions. Call after `wasmtime_wasi::p2::add_to_linker_async`.
pub fn add_p2_overrides(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let mut tcp = linker.instance(&format!("wasi:sockets/tcp@{P2_SOCKETS}"))?;
    tcp.func_wrap(
        "[method]tcp-socket.start-connect",
        |mut store: wasmtime::StoreContextMut<'_, HostState>,
         (this, network, remote): (Resource<TcpSocket>, Resource<Network>, IpSocketAddress)|
         -> wasmtime::Result<(Result<(), ErrorCode>,)> {
            let state = store.data_mut();
            let addr: SocketAddr = remote.into();
            let mut target = addr;
            if let Some(policy) = state.net.policy.clone() {
                match decide(&policy.rules, SocketUse::TcpConnect, addr) {
                    Verdict::Allow { target: t } => {
                        target = t;
                        if t != addr {
                            state
                                .net
                                .approved
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .push(t);
                        }
                    }
                    Verdict::Deny(d) => {
                        policy.report(&d);
                        // Still validate the handles, as the real call would.
                        let view = state.sockets();
                        view.table.get(&network)?;
                        view.table.get(&this)?;
                        return Ok((Err(ErrorCode::AccessDenied),));
                    }
                }
            }
            let result = state.sockets().start_connect(this, network, target.into());
            if result.is_err() && target != addr {
                // The connect never reached the check: drop the approval.
                let mut list = state.net.approved.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(i) = list.iter().position(|a| *a == target) {
                    list.swap_remove(i);
                }
            }
            Ok((match result {
                Ok(()) => Ok(()),
                Err(e) => error_code(e)?,
            },))
        },
    )?;
    let mut lookup = linker.instance(&format!("wasi:sockets/ip-name-lookup@{P2_SOCKETS}"))?;
    lookup.func_wrap(
        "resolve-addresses",
        |mut store: wasmtime::StoreContextMut<'_, HostState>,
         (network, name): (Resource<Network>, String)|
         -> wasmtime::Result<(Result<Resource<ResolveAddressStream>, ErrorCode>,)> {
            let state = store.data_mut();
            if let Some(policy) = state.net.policy.clone()
                && let LookupVerdict::Deny { hint } = decide_lookup(&policy.rules, &name)
            {
                policy.report_lookup(&name, &hint);
                state.sockets().table.get(&network)?;
                return Ok((Err(ErrorCode::AccessDenied),));
            }
            Ok((match state.sockets().resolve_addresses(network, name) {
                Ok(stream) => Ok(stream),
                Err(e) => Err(e.downcast()?),
            },))
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}
