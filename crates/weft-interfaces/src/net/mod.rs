//! `wasi:sockets` under the workload's socket rules ([`weft_policy::sockets`]).
//!
//! Two layers, both driven by the same pure [`decide`]:
//! - every socket operation of P2 and P3 guests passes wasmtime-wasi's address check, which
//!   allows an address only when `decide` allows it *unchanged*, or when this store's connect
//!   override approved it a moment earlier (a redirect target, a virtual-loopback bind);
//! - for WASI 0.2 and WASI 0.3 guests alike, socket creation, TCP bind and connect and name
//!   lookup are shadowed in the linker (0.2: [`add_p2_overrides`], 0.3: [`add_p3_overrides`]):
//!   the connect address is rewritten to the rule's host port (a redirect) or to the workload's
//!   virtual loopback, names are checked against `allowedIpNameLookups` before any DNS query,
//!   and every socket is counted against the workload's [`SocketBudget`] until it is dropped.
//!   Both versions share the decisions below (`NetStore::plan_connect`,
//!   `NetPolicy::is_virtual_bind`, `NetPolicy::lookup_allowed`, the budget); only the
//!   calls into wasmtime-wasi differ.
//!
//! Every refusal is logged once per component and reason (with the fix) to `tracing` and to the
//! workload's log buffer, reported as a typed denial (`LogSink::denied`, once per component and
//! request), and the guest sees `access-denied`.

mod p3;

pub use p3::add_p3_overrides;

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use wasmtime::component::{Linker, Resource};
use wasmtime_wasi::p2::SocketError;
use wasmtime_wasi::p2::bindings::sockets::ip_name_lookup::{Host as _, ResolveAddressStream};
use wasmtime_wasi::p2::bindings::sockets::network::{
    ErrorCode, IpAddressFamily, IpSocketAddress, Network,
};
use wasmtime_wasi::p2::bindings::sockets::tcp::{HostTcpSocket as _, TcpSocket};
use wasmtime_wasi::p2::bindings::sockets::tcp_create_socket::Host as TcpCreateHost;
use wasmtime_wasi::p2::bindings::sockets::udp::{self as p2udp, UdpSocket};
use wasmtime_wasi::p2::bindings::sockets::udp_create_socket::Host as UdpCreateHost;
use wasmtime_wasi::sockets::{SocketAddrUse, WasiSocketsView};
use wasmtime_wasi::{WasiCtxBuilder, WasiView};
use weft_policy::grant::GrantRequest;
use weft_policy::sockets::{
    Denial, DenyReason, LookupVerdict, SocketRules, SocketUse, Verdict, decide, decide_lookup,
};

use weft_engine::logs::LogSink;

/// The `wasi:sockets` package version wasmtime-wasi 48 defines (guests' 0.2.x imports match it).
const P2_SOCKETS: &str = "0.2.12";

/// A workload's virtual loopback: the ports its service listens on, mapped to the ephemeral host
/// addresses actually bound, and the host addresses of the component sockets allowed to reach
/// them (see docs/service.md).
#[derive(Default)]
pub struct VirtualNet {
    listeners: Mutex<HashMap<u16, SocketAddr>>,
    members: Mutex<HashSet<SocketAddr>>,
    listening: tokio::sync::Notify,
}

/// Bound on virtual listeners and remembered member sockets per workload.
const MAX_VIRTUAL: usize = 4096;

impl VirtualNet {
    pub fn new() -> Arc<Self> {
        Arc::new(VirtualNet::default())
    }

    /// The host address behind the workload's `127.0.0.1:port`, if the service listens there.
    pub fn listener(&self, port: u16) -> Option<SocketAddr> {
        self.listeners
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&port)
            .copied()
    }

    /// The virtual ports the service has bound.
    pub fn ports(&self) -> Vec<u16> {
        let mut ports: Vec<u16> = self
            .listeners
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .copied()
            .collect();
        ports.sort_unstable();
        ports
    }

    /// Waits until the service binds a first virtual port.
    pub async fn wait_listening(&self) {
        loop {
            let notified = self.listening.notified();
            if !self.ports().is_empty() {
                return;
            }
            notified.await;
        }
    }

    fn register(&self, port: u16, real: SocketAddr) {
        let mut l = self.listeners.lock().unwrap_or_else(|e| e.into_inner());
        if l.len() < MAX_VIRTUAL || l.contains_key(&port) {
            l.insert(port, real);
        }
        drop(l);
        self.listening.notify_waiters();
    }

    /// Forgets every listener (the service instance that owned them is gone).
    pub fn clear_listeners(&self) {
        self.listeners
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    fn is_listener(&self, real: SocketAddr) -> bool {
        self.listeners
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .any(|a| *a == real)
    }

    fn add_member(&self, local: SocketAddr) {
        let mut m = self.members.lock().unwrap_or_else(|e| e.into_inner());
        if m.len() >= MAX_VIRTUAL {
            // Old member sockets are long closed; forget them rather than grow.
            m.clear();
        }
        m.insert(local);
    }

    fn is_member(&self, peer: SocketAddr) -> bool {
        self.members
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&peer)
    }
}

/// Live guest sockets: per workload, and for the whole host (so one workload cannot take the
/// file descriptors the ingress and the other workloads need).
pub struct SocketBudget {
    live: AtomicUsize,
    limit: usize,
    /// Socket creations per second, with a burst of `limit` (`None`: unmetered).
    creations: Option<weft_engine::limit::RateMeter>,
}

static HOST_SOCKETS: AtomicUsize = AtomicUsize::new(0);
static HOST_SOCKET_LIMIT: AtomicUsize = AtomicUsize::new(DEFAULT_HOST_SOCKET_LIMIT);

/// Guest sockets one workload may hold open at once, unless the host says otherwise.
pub const DEFAULT_WORKLOAD_SOCKETS: usize = 256;
/// Guest socket creations per second one workload may sustain, unless the host says
/// otherwise (`weft up --socket-rate`); the burst is the workload's socket budget.
pub const DEFAULT_SOCKET_RATE: u64 = 1000;
/// Guest sockets the whole host may hold before [`set_host_socket_limit`] is called.
pub const DEFAULT_HOST_SOCKET_LIMIT: usize = 512;

/// Sets the host-wide cap on guest sockets (the binary sets it to half the open-files limit,
/// keeping the other half for the ingress, the admin API and the host's own files).
pub fn set_host_socket_limit(limit: usize) {
    HOST_SOCKET_LIMIT.store(limit.max(16), Ordering::Relaxed);
}

impl SocketBudget {
    /// At most `limit` live sockets; with a `rate`, at most `rate` creations per second
    /// sustained after a burst of `limit`.
    pub fn new(limit: usize, rate: Option<u64>) -> Arc<Self> {
        Arc::new(SocketBudget {
            live: AtomicUsize::new(0),
            limit,
            creations: rate.map(|r| {
                weft_engine::limit::RateMeter::new(
                    r,
                    limit.max(1) as u64,
                    std::time::Instant::now(),
                )
            }),
        })
    }

    /// How long a new socket creation must wait for the creation rate (zero when unmetered
    /// or within the burst). Every attempt pays, refused or not.
    fn creation_wait(&self) -> std::time::Duration {
        match &self.creations {
            Some(meter) => meter.charge(1, std::time::Instant::now()),
            None => std::time::Duration::ZERO,
        }
    }

    /// Live sockets of this workload.
    pub fn live(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }

    fn try_acquire(&self) -> bool {
        let host_limit = HOST_SOCKET_LIMIT.load(Ordering::Relaxed);
        if HOST_SOCKETS
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < host_limit).then_some(n + 1)
            })
            .is_err()
        {
            return false;
        }
        if self
            .live
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.limit).then_some(n + 1)
            })
            .is_err()
        {
            HOST_SOCKETS.fetch_sub(1, Ordering::AcqRel);
            return false;
        }
        true
    }

    fn release(&self) {
        let _ = self
            .live
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
        let _ =
            HOST_SOCKETS.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
    }
}

/// Whether a policy belongs to the workload's service or to one of its components.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Component,
    Service,
}

/// One component's socket policy, shared by all its stores.
pub struct NetPolicy {
    /// The workload's virtual loopback, when it has a service.
    vnet: Option<Arc<VirtualNet>>,
    role: Role,
    /// The workload's socket budget (`None`: unlimited, e.g. `weft serve --inherit-network`).
    budget: Option<Arc<SocketBudget>>,
    rules: SocketRules,
    component: String,
    logs: Option<LogSink>,
    logged: Mutex<HashSet<(SocketUse, DenyReason, u16)>>,
    logged_names: Mutex<HashSet<String>>,
    /// Whether "socket budget exhausted" was logged already.
    logged_budget: AtomicBool,
    /// Whether "socket creation slowed" was logged already.
    logged_rate: AtomicBool,
    /// Whether a socket may be created for a protocol no rule grants (`weft run` and `weft
    /// serve` without a network, as `wasmtime run`): creating one reaches nothing, every
    /// address it would use is still checked against the rules.
    create_ungranted: bool,
    /// Whether denials go unlogged (the CLI's no-network policy: its rules are not the
    /// user's, so a hint about `localResources.sockets` would mislead).
    quiet: bool,
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
    /// A component's policy; finish it with [`on_virtual_net`](Self::on_virtual_net) and
    /// [`with_budget`](Self::with_budget), then share it in an `Arc`.
    pub fn new(rules: SocketRules, component: &str, logs: Option<LogSink>) -> Self {
        NetPolicy {
            vnet: None,
            role: Role::Component,
            budget: None,
            rules,
            component: component.to_string(),
            logs,
            logged: Mutex::new(HashSet::new()),
            logged_names: Mutex::new(HashSet::new()),
            logged_budget: AtomicBool::new(false),
            logged_rate: AtomicBool::new(false),
            create_ungranted: false,
            quiet: false,
        }
    }

    /// The policy of `weft run` and `weft serve` without `--inherit-network`, as `wasmtime run`
    /// without `-Sinherit-network`: sockets may be created (up to `budget`; a socket that is
    /// never bound or connected reaches nothing and has only its options to set), every
    /// address is refused, no name is resolved, and nothing is logged.
    pub fn no_network(budget: Arc<SocketBudget>) -> Self {
        NetPolicy {
            create_ungranted: true,
            quiet: true,
            ..NetPolicy::new(SocketRules::default(), "guest", None).with_budget(budget)
        }
    }

    pub fn rules(&self) -> &SocketRules {
        &self.rules
    }

    /// Counts the component's sockets against the workload's budget.
    pub fn with_budget(mut self, budget: Arc<SocketBudget>) -> Self {
        self.budget = Some(budget);
        self
    }

    /// Puts the component on the workload's virtual loopback, in `role`.
    pub fn on_virtual_net(mut self, vnet: Arc<VirtualNet>, role: Role) -> Self {
        self.vnet = Some(vnet);
        self.role = role;
        self
    }

    fn emit(&self, message: &str) {
        if self.quiet {
            return;
        }
        tracing::warn!(component = %self.component, "{message}");
        if let Some(logs) = &self.logs {
            logs.push(&self.component, "warn", message);
        }
    }

    fn report(&self, denial: &Denial) {
        if let Some(logs) = &self.logs {
            logs.denied(
                &self.component,
                GrantRequest::socket(denial.socket_use, denial.addr),
            );
        }
        let first = {
            let mut logged = self.logged.lock().unwrap_or_else(|e| e.into_inner());
            logged.len() < MAX_LOGGED && logged.insert(denial.log_key())
        };
        if first {
            self.emit(&format!("wasi:sockets {denial}"));
        }
    }

    fn report_lookup(&self, name: &str, hint: &str) {
        if let Some(logs) = &self.logs {
            logs.denied(&self.component, GrantRequest::lookup(name));
        }
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
        builder.allow_tcp(
            self.create_ungranted || self.rules.grants(Protocol::Tcp) || self.vnet.is_some(),
        );
        builder.allow_udp(self.create_ungranted || self.rules.grants(Protocol::Udp));
        // Names are checked one by one by the lookup overrides before the resolver runs.
        builder.allow_ip_name_lookup(self.rules.grants_lookup());
        let approved: Arc<Mutex<Vec<(SocketUse, SocketAddr)>>> = Arc::default();
        let policy = Arc::clone(self);
        let approvals = Arc::clone(&approved);
        builder.socket_addr_check(move |addr, addr_use| {
            let allowed = policy.check(addr, addr_use, &approvals);
            Box::pin(async move { allowed })
        });
        NetStore {
            policy: Some(Arc::clone(self)),
            approved,
            counted: Arc::new(Counted {
                reps: Mutex::default(),
                budget: self.budget.clone(),
            }),
        }
    }

    fn check(
        &self,
        addr: SocketAddr,
        addr_use: SocketAddrUse,
        approved: &Mutex<Vec<(SocketUse, SocketAddr)>>,
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
        if take_approval(approved, (socket_use, addr)) {
            return true;
        }
        if let (Some(vnet), Role::Service) = (&self.vnet, self.role) {
            match socket_use {
                SocketUse::TcpListen if vnet.is_listener(addr) => return true,
                SocketUse::TcpAccept => {
                    let member = vnet.is_member(addr);
                    if !member {
                        self.emit(&format!(
                            "virtual loopback: dropped a connection from {addr}, which is not \
                             one of this workload's components"
                        ));
                    }
                    return member;
                }
                _ => {}
            }
        }
        match decide(&self.rules, socket_use, addr) {
            Verdict::Allow { target } if target == addr => true,
            verdict => {
                if let Verdict::Deny(d) = verdict {
                    self.report(&d);
                } else {
                    // A redirect rule's guest port reached the check without going through a
                    // connect override (which would have rewritten it): refuse.
                    self.emit(&format!(
                        "wasi:sockets {} {addr} denied: a redirect rule's guest port is reached \
                         only through the connect override (hint: connect with \
                         wasi:sockets tcp connect)",
                        socket_use.as_str()
                    ));
                }
                false
            }
        }
    }
}

impl NetPolicy {
    /// Whether binding `addr` is this workload's service binding a port of its virtual
    /// loopback (`127.0.0.1:PORT`, `PORT` not 0): the host binds an ephemeral port instead.
    fn is_virtual_bind(&self, addr: SocketAddr) -> bool {
        self.role == Role::Service
            && self.vnet.is_some()
            && addr.ip() == IpAddr::V4(Ipv4Addr::LOCALHOST)
            && addr.port() != 0
    }

    /// Whether the guest may look `name` up (IP literals always; names by the rules). A refusal
    /// is logged once per name.
    fn lookup_allowed(&self, name: &str) -> bool {
        match decide_lookup(&self.rules, name) {
            LookupVerdict::Deny { hint } => {
                self.report_lookup(name, &hint);
                false
            }
            LookupVerdict::Allow | LookupVerdict::Literal(_) => true,
        }
    }
}

/// What a TCP connect to the guest's address becomes ([`NetStore::plan_connect`]).
enum ConnectPlan {
    /// Connect to this address; the address check decides alone (no policy, or the rules allow
    /// the address unchanged).
    Direct(SocketAddr),
    /// A redirect rule: connect to the rule's host port (approved for the address check).
    Redirect(SocketAddr),
    /// The workload's own service: bind the socket to an ephemeral loopback port, record it as
    /// a member, then connect to the service's real address.
    Virtual {
        vnet: Arc<VirtualNet>,
        real: SocketAddr,
    },
    /// Refused by the rules (already logged): `access-denied`.
    Deny,
}

/// The per-store half: the policy and the redirect targets the connect override approved.
#[derive(Default, Clone)]
pub struct NetStore {
    policy: Option<Arc<NetPolicy>>,
    approved: Arc<Mutex<Vec<(SocketUse, SocketAddr)>>>,
    /// This store's sockets that hold a unit of the budget.
    counted: Arc<Counted>,
}

/// Resource reps of one store's sockets that hold a unit of the budget. A guest that drops a
/// socket gives its unit back through the resource destructor; what is still held when the
/// store itself goes (a trap, a deadline, an instance torn down with sockets open: wasmtime
/// runs no resource destructor then, it just closes them) is given back here, so a guest that
/// traps with sockets open cannot spend the host's socket cap for good.
#[derive(Default)]
struct Counted {
    reps: Mutex<HashSet<u32>>,
    budget: Option<Arc<SocketBudget>>,
}

impl Drop for Counted {
    fn drop(&mut self) {
        let held = match self.reps.get_mut() {
            Ok(reps) => reps.len(),
            Err(poisoned) => poisoned.into_inner().len(),
        };
        if let Some(budget) = &self.budget {
            for _ in 0..held {
                budget.release();
            }
        }
    }
}

impl NetStore {
    /// Admits a socket creation: waits for the creation rate, then takes a unit of the budget
    /// (`false`: refused, `new-socket-limit`). Follow with [`settle`](Self::settle).
    async fn admit_creation(&self) -> bool {
        self.pace_creation().await;
        self.acquire()
    }

    /// Waits, when the workload creates sockets faster than its rate, before a creation
    /// attempt (the guest sees a slow `create-*-socket`, never an error).
    async fn pace_creation(&self) {
        let Some(budget) = self.policy.as_ref().and_then(|p| p.budget.as_ref()) else {
            return;
        };
        let wait = budget.creation_wait();
        if !wait.is_zero() {
            if let Some(policy) = &self.policy
                && !policy.logged_rate.swap(true, Ordering::Relaxed)
            {
                policy.emit(
                    "wasi:sockets socket creation slowed: the workload creates sockets faster \
                     than its rate (hint: reuse connections, or raise `weft up --socket-rate`)",
                );
            }
            tokio::time::sleep(wait).await;
        }
    }

    /// Takes a unit of the budget for a new socket; `false` (and a log line) when exhausted.
    fn acquire(&self) -> bool {
        let Some(policy) = &self.policy else {
            return true;
        };
        let Some(budget) = &policy.budget else {
            return true;
        };
        if budget.try_acquire() {
            return true;
        }
        if !policy.logged_budget.swap(true, Ordering::Relaxed) {
            policy.emit(&format!(
                "wasi:sockets socket refused: the workload holds {} sockets, its limit \
                 (new-socket-limit; hint: close sockets, or raise `weft up \
                 --max-sockets-per-workload`)",
                budget.live()
            ));
        }
        false
    }

    /// Finishes a socket creation that [`acquire`](Self::acquire) admitted: counts the new
    /// socket against the budget, or gives the unit back when the creation failed.
    fn settle<T: 'static, E>(&self, created: Result<Resource<T>, E>) -> Result<Resource<T>, E> {
        match &created {
            Ok(socket) => self.counted(socket.rep()),
            Err(_) => {
                if let Some(b) = self.policy.as_ref().and_then(|p| p.budget.as_ref()) {
                    b.release();
                }
            }
        }
        created
    }

    /// Decides a TCP connect to `addr` (the guest's address): the workload's own service on
    /// its virtual loopback, a rule's target (approved for the address check when it is a
    /// redirect), or a refusal (logged).
    fn plan_connect(&self, addr: SocketAddr) -> ConnectPlan {
        let Some(policy) = &self.policy else {
            return ConnectPlan::Direct(addr);
        };
        // The workload's own service on its virtual loopback shadows the rules.
        if addr.ip() == IpAddr::V4(Ipv4Addr::LOCALHOST)
            && let Some(vnet) = &policy.vnet
            && let Some(real) = vnet.listener(addr.port())
        {
            return ConnectPlan::Virtual {
                vnet: Arc::clone(vnet),
                real,
            };
        }
        match decide(&policy.rules, SocketUse::TcpConnect, addr) {
            Verdict::Allow { target } if target == addr => ConnectPlan::Direct(addr),
            Verdict::Allow { target } => {
                self.approve(SocketUse::TcpConnect, target);
                ConnectPlan::Redirect(target)
            }
            Verdict::Deny(d) => {
                policy.report(&d);
                ConnectPlan::Deny
            }
        }
    }

    /// Records that the service's `127.0.0.1:port` is really `real` (see [`VirtualNet`]).
    fn register_virtual(&self, port: u16, real: SocketAddr) {
        if let Some(vnet) = self.policy.as_ref().and_then(|p| p.vnet.as_ref()) {
            vnet.register(port, real);
            tracing::info!(port, %real, "virtual loopback: service listens");
        }
    }

    fn counted(&self, rep: u32) {
        self.counted
            .reps
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(rep);
    }

    fn uncount(&self, rep: u32) {
        let was = self
            .counted
            .reps
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&rep);
        if was && let Some(budget) = self.policy.as_ref().and_then(|p| p.budget.as_ref()) {
            budget.release();
        }
    }

    fn approve(&self, socket_use: SocketUse, addr: SocketAddr) {
        self.approved
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((socket_use, addr));
    }

    fn withdraw(&self, socket_use: SocketUse, addr: SocketAddr) {
        take_approval(&self.approved, (socket_use, addr));
    }
}

impl NetStore {
    /// No policy: the store's WASI builder decides alone (deny all, or `--inherit-network`).
    pub fn unrestricted() -> Self {
        NetStore::default()
    }
}

/// What the `wasi:sockets` overrides need from a store: its WASI context and resource table
/// (through [`WasiView`]) and its half of the socket policy. The store type implements it; the
/// overrides never name the store type.
pub trait NetView: WasiView {
    /// This store's half of the socket policy ([`NetPolicy::install`] made it).
    fn net(&self) -> &NetStore;
}

/// Removes one approval of `key`; whether there was one.
fn take_approval(
    approved: &Mutex<Vec<(SocketUse, SocketAddr)>>,
    key: (SocketUse, SocketAddr),
) -> bool {
    let mut list = approved.lock().unwrap_or_else(|e| e.into_inner());
    match list.iter().position(|a| *a == key) {
        Some(i) => {
            list.swap_remove(i);
            true
        }
        None => false,
    }
}

fn error_code(err: SocketError) -> wasmtime::Result<Result<(), ErrorCode>> {
    Ok(Err(err.downcast()?))
}

fn p2_result<T>(r: Result<T, SocketError>) -> wasmtime::Result<Result<T, ErrorCode>> {
    match r {
        Ok(v) => Ok(Ok(v)),
        Err(e) => Ok(Err(e.downcast()?)),
    }
}

/// Shadows socket creation and drop, `start-bind`, `start-connect` and `resolve-addresses` of
/// `wasi:sockets@0.2` with the rule-checking versions (redirects, virtual loopback, name grants,
/// the socket budget). Call after `wasmtime_wasi::p2::add_to_linker_async`.
pub fn add_p2_overrides<T: NetView + 'static>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let mut tcp = linker.instance(&format!("wasi:sockets/tcp@{P2_SOCKETS}"))?;
    tcp.func_wrap_async(
        "[method]tcp-socket.start-bind",
        |mut store: wasmtime::StoreContextMut<'_, T>,
         (this, network, local): (Resource<TcpSocket>, Resource<Network>, IpSocketAddress)| {
            Box::new(async move {
                let state = store.data_mut();
                let addr: SocketAddr = local.into();
                let net = state.net().clone();
                if !net.policy.as_ref().is_some_and(|p| p.is_virtual_bind(addr)) {
                    let r = state.sockets().start_bind(this, network, local).await;
                    return Ok((p2_result(r)?,));
                }
                // The service binds the workload's 127.0.0.1:PORT: bind an ephemeral host port
                // instead and remember the mapping.
                let ephemeral = SocketAddr::new(addr.ip(), 0);
                net.approve(SocketUse::TcpBind, ephemeral);
                let this_again = Resource::<TcpSocket>::new_borrow(this.rep());
                let r = state.sockets().start_bind(this, network, ephemeral.into()).await;
                net.withdraw(SocketUse::TcpBind, ephemeral);
                if let Err(e) = r {
                    return Ok((error_code(e)?,));
                }
                let real: SocketAddr = match state.sockets().local_address(this_again) {
                    Ok(a) => a.into(),
                    Err(e) => return Ok((error_code(e)?,)),
                };
                net.register_virtual(addr.port(), real);
                Ok((Ok(()),))
            })
        },
    )?;
    tcp.func_wrap_async(
        "[method]tcp-socket.start-connect",
        |mut store: wasmtime::StoreContextMut<'_, T>,
         (this, network, remote): (Resource<TcpSocket>, Resource<Network>, IpSocketAddress)| {
            Box::new(async move {
                let state = store.data_mut();
                let addr: SocketAddr = remote.into();
                let net = state.net().clone();
                let target = match net.plan_connect(addr) {
                    ConnectPlan::Direct(target) | ConnectPlan::Redirect(target) => target,
                    ConnectPlan::Deny => {
                        // Still validate the handles, as the real call would.
                        let view = state.sockets();
                        view.table.get(&network)?;
                        view.table.get(&this)?;
                        return Ok((Err(ErrorCode::AccessDenied),));
                    }
                    ConnectPlan::Virtual { vnet, real } => {
                        // Bind the socket ourselves so its address is known: the service
                        // accepts only these members.
                        let ephemeral = SocketAddr::new(addr.ip(), 0);
                        net.approve(SocketUse::TcpBind, ephemeral);
                        let bind_handle = Resource::<TcpSocket>::new_borrow(this.rep());
                        let net_handle = Resource::<Network>::new_borrow(network.rep());
                        let r = state
                            .sockets()
                            .start_bind(bind_handle, net_handle, ephemeral.into())
                            .await;
                        net.withdraw(SocketUse::TcpBind, ephemeral);
                        if let Err(e) = r {
                            return Ok((error_code(e)?,));
                        }
                        let finish = Resource::<TcpSocket>::new_borrow(this.rep());
                        if let Err(e) = state.sockets().finish_bind(finish) {
                            return Ok((error_code(e)?,));
                        }
                        let local_handle = Resource::<TcpSocket>::new_borrow(this.rep());
                        match state.sockets().local_address(local_handle) {
                            Ok(local) => vnet.add_member(local.into()),
                            Err(e) => return Ok((error_code(e)?,)),
                        }
                        net.approve(SocketUse::TcpConnect, real);
                        real
                    }
                };
                let result = state.sockets().start_connect(this, network, target.into());
                if result.is_err() && target != addr {
                    // The connect never reached the check: drop the approval.
                    net.withdraw(SocketUse::TcpConnect, target);
                }
                Ok((p2_result(result)?,))
            })
        },
    )?;
    // Socket budget: count creations, release on drop.
    tcp.resource(
        "tcp-socket",
        wasmtime::component::ResourceType::host::<TcpSocket>(),
        |mut store, rep| {
            let state = store.data_mut();
            state.net().clone().uncount(rep);
            state.sockets().drop(Resource::new_own(rep))
        },
    )?;
    let mut udp = linker.instance(&format!("wasi:sockets/udp@{P2_SOCKETS}"))?;
    udp.resource(
        "udp-socket",
        wasmtime::component::ResourceType::host::<UdpSocket>(),
        |mut store, rep| {
            let state = store.data_mut();
            state.net().clone().uncount(rep);
            p2udp::HostUdpSocket::drop(&mut state.sockets(), Resource::new_own(rep))
        },
    )?;
    let mut tcp_create =
        linker.instance(&format!("wasi:sockets/tcp-create-socket@{P2_SOCKETS}"))?;
    tcp_create.func_wrap_async(
        "create-tcp-socket",
        |mut store: wasmtime::StoreContextMut<'_, T>, (family,): (IpAddressFamily,)| {
            Box::new(async move {
                let net = store.data().net().clone();
                if !net.admit_creation().await {
                    return Ok((Err(ErrorCode::NewSocketLimit),));
                }
                let state = store.data_mut();
                let created = TcpCreateHost::create_tcp_socket(&mut state.sockets(), family);
                Ok((p2_result(net.settle(created))?,))
            })
        },
    )?;
    let mut udp_create =
        linker.instance(&format!("wasi:sockets/udp-create-socket@{P2_SOCKETS}"))?;
    udp_create.func_wrap_async(
        "create-udp-socket",
        |mut store: wasmtime::StoreContextMut<'_, T>, (family,): (IpAddressFamily,)| {
            Box::new(async move {
                let net = store.data().net().clone();
                if !net.admit_creation().await {
                    return Ok((Err(ErrorCode::NewSocketLimit),));
                }
                let state = store.data_mut();
                let created = UdpCreateHost::create_udp_socket(&mut state.sockets(), family).await;
                Ok((p2_result(net.settle(created))?,))
            })
        },
    )?;
    let mut lookup = linker.instance(&format!("wasi:sockets/ip-name-lookup@{P2_SOCKETS}"))?;
    lookup.func_wrap(
        "resolve-addresses",
        |mut store: wasmtime::StoreContextMut<'_, T>,
         (network, name): (Resource<Network>, String)|
         -> wasmtime::Result<(Result<Resource<ResolveAddressStream>, ErrorCode>,)> {
            let state = store.data_mut();
            if let Some(policy) = state.net().policy.clone()
                && !policy.lookup_allowed(&name)
            {
                state.sockets().table.get(&network)?;
                return Ok((Err(ErrorCode::AccessDenied),));
            }
            Ok((p2_result(state.sockets().resolve_addresses(network, name))?,))
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn creations_are_paced_after_a_burst_of_the_budget() {
        let budget = SocketBudget::new(4, Some(100));
        for i in 0..4 {
            assert_eq!(budget.creation_wait(), Duration::ZERO, "creation {i}");
        }
        // The fifth waits about 1/100 s, the sixth about 2/100 s (the balance goes negative,
        // so creations queue behind each other).
        let fifth = budget.creation_wait();
        let sixth = budget.creation_wait();
        assert!(
            fifth > Duration::from_millis(5) && fifth <= Duration::from_millis(10),
            "{fifth:?}"
        );
        assert!(
            sixth > fifth + Duration::from_millis(5),
            "{sixth:?} after {fifth:?}"
        );
    }

    #[test]
    fn unpaced_budget_never_waits() {
        let budget = SocketBudget::new(1, None);
        for _ in 0..1000 {
            assert_eq!(budget.creation_wait(), Duration::ZERO);
        }
    }
}
