//! A member host (docs/lattice.md): heartbeats, liveness, the lease, the scheduler loop and the
//! replicas placed here.
//!
//! Three activities, so that none delays another:
//! - the **heartbeat** runs on its own thread and tokio runtime: workload load on the serving
//!   runtime cannot delay it. Each beat is a compare-and-set of this host's record; a beat that
//!   finds the record changed by someone else (the leader marked this host lost) is fenced:
//!   the host drops its replicas and registers again with a new instance id.
//! - the **state loop** re-lists the buckets every tick, judges liveness on this process's
//!   monotonic clock, contends for the lease, and, while it leads, marks silent hosts lost
//!   (compare-and-set) and writes the scheduler's commands as compare-and-set placements.
//! - the **replica applier** starts and stops what is placed on this host through
//!   [`LocalHost`], fetching component images from the object store, and reports what runs.

use std::collections::BTreeMap;
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::kv;
use weft_manifest::Manifest;
use weft_scheduler::liveness::{Freshness, LeaseClock, Liveness};
use weft_scheduler::records::{
    self, FailureRecord, HostRecord, LEASE_KEY, LeaseRecord, ReportRecord, RunningRecord,
};
use weft_scheduler::{Command, HostStatus, Labels, reconcile};

use crate::connect::Lattice;
use crate::images;
use crate::ops::now_ms;
use crate::view::{BadValues, View};

/// The workload host the agent drives (implemented by `weft up` over `weft-host`).
pub trait LocalHost: crate::forward::ServeForwarded {
    /// Deploys (or atomically updates to) this manifest as a lattice replica.
    fn deploy(&self, manifest: Manifest) -> impl Future<Output = Result<(), String>> + Send;
    /// Stops the replica of this name.
    fn remove(&self, name: &str) -> Result<(), String>;
    /// Whether the replica of this name answers (its readiness probe).
    fn probe(&self, name: &str) -> impl Future<Output = Result<(), String>> + Send;
    /// The recent log lines of the workload of this name on this host (rendered, oldest
    /// first), or `None` when it does not run here.
    fn logs(&self, name: &str) -> Option<Vec<String>>;
}

/// Answers `weft logs --lattice`: a request carries a workload name; the reply is a JSON array
/// of this host's recent lines for it (empty when it does not run here), trimmed from the
/// oldest end to fit one message.
async fn serve_logs<H: LocalHost>(lattice: Lattice, me: String, host: Arc<H>) {
    use futures::StreamExt;
    let subject = crate::connect::logs_subject(&lattice.name, &me);
    let mut requests = match lattice.client.subscribe(subject.clone()).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(%subject, error = %e, "cannot serve log requests");
            return;
        }
    };
    while let Some(message) = requests.next().await {
        let Some(reply) = message.reply.clone() else {
            continue;
        };
        let name = String::from_utf8_lossy(&message.payload).into_owned();
        let mut lines = host.logs(&name).unwrap_or_default();
        let budget = lattice
            .client
            .server_info()
            .max_payload
            .saturating_sub(1024);
        let mut size: usize = lines.iter().map(|l| l.len() + 4).sum();
        let mut cut = 0;
        while size > budget && cut < lines.len() {
            size -= lines[cut].len() + 4;
            cut += 1;
        }
        lines.drain(..cut);
        let body = serde_json::to_vec(&lines).unwrap_or_else(|_| b"[]".to_vec());
        if let Err(e) = lattice.client.publish(reply, body.into()).await {
            tracing::debug!(error = %e, "cannot reply to a log request");
        }
    }
}

/// Readiness probes a new replica gets before it is reported ready (one every 500 ms).
pub const PROBE_ATTEMPTS: u32 = 3;

/// How long a host keeps reporting a version that failed on it after its placement is gone:
/// the scheduler places a failed version on no host that reports it, so this is the pause
/// before the host is tried again (without it a broken version would be placed, fail and be
/// removed in a tight loop).
pub const FAILURE_HOLD: Duration = Duration::from_secs(60);

/// How a member host behaves.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// This host's name in the lattice (a DNS label).
    pub host_name: String,
    /// Its labels.
    pub labels: Labels,
    /// Its ingress address, published in its record.
    pub http_addr: Option<String>,
    /// Host record write period.
    pub heartbeat: Duration,
    /// A host whose record has not changed for this long (on the observer's clock) is lost.
    pub host_timeout: Duration,
    /// The leader lease's time to live; renewed every third of it.
    pub lease_ttl: Duration,
    /// How often the state loop re-lists the buckets.
    pub tick: Duration,
    /// Where fetched images are cached.
    pub cache_dir: PathBuf,
    /// Counts for the host's metrics (heartbeats, scheduler decisions, leadership).
    pub stats: Arc<weft_stats::LatticeStats>,
}

/// A random id of 16 hex digits (instance ids, lease ids).
pub fn random_id() -> String {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.write_u32(std::process::id());
    format!("{:016x}", h.finish())
}

/// The default host name: the machine name as a DNS label, `-`, and four hex digits.
pub fn default_host_name() -> String {
    let machine = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
    let mut label: String = machine
        .trim()
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    label = label.trim_matches('-').chars().take(50).collect();
    if label.is_empty() {
        label = "host".into();
    }
    format!("{}-{}", label.trim_end_matches('-'), &random_id()[..4])
}

/// What the heartbeat thread and the state loop share.
struct Shared {
    /// This host's current instance id (a new one after each fencing).
    id: Mutex<String>,
    /// Whether its last acknowledged heartbeat is recent (fencing of local serving).
    fresh: Mutex<Freshness>,
    /// The lattice's routes and ready replicas (forwarded ingress), from the last re-list.
    directory: Arc<std::sync::RwLock<crate::forward::Directory>>,
}

impl Shared {
    fn id(&self) -> String {
        match self.id.lock() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    fn fresh(&self) -> std::sync::MutexGuard<'_, Freshness> {
        match self.fresh.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }
}

/// A running agent; dropping it leaves the tasks running for the life of the process.
pub struct Agent {
    shared: Arc<Shared>,
    forwarder: Arc<crate::forward::Forwarder>,
}

impl Agent {
    /// Whether this host may serve its lattice replicas locally now: its last acknowledged
    /// heartbeat was sent less than half the host timeout ago, or NATS went away while it was
    /// that fresh (docs/lattice.md, "Fencing").
    pub fn may_serve(&self) -> bool {
        self.shared.fresh().may_serve(Instant::now())
    }

    /// Sends ingress requests for lattice deployments this host does not run to a host that
    /// does (docs/lattice.md, "Forwarded ingress").
    pub fn forwarder(&self) -> Arc<crate::forward::Forwarder> {
        Arc::clone(&self.forwarder)
    }
}

/// Joins the lattice: starts the heartbeat thread, the state loop and the replica applier.
pub fn start<H: LocalHost>(lattice: Lattice, config: AgentConfig, host: Arc<H>) -> Agent {
    config
        .stats
        .member
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let shared = Arc::new(Shared {
        id: Mutex::new(random_id()),
        fresh: Mutex::new(Freshness::new(config.host_timeout / 2)),
        directory: Arc::default(),
    });
    let forwarder = Arc::new(crate::forward::Forwarder::new(
        &lattice,
        config.host_name.clone(),
        Arc::clone(&shared.directory),
        crate::forward::FORWARD_TIMEOUT,
    ));
    tokio::spawn(crate::forward::serve(
        lattice.clone(),
        config.host_name.clone(),
        Arc::clone(&host),
    ));
    tokio::spawn(serve_logs(
        lattice.clone(),
        config.host_name.clone(),
        Arc::clone(&host),
    ));
    let (wanted_tx, wanted_rx) = tokio::sync::watch::channel(Wanted::default());
    {
        let lattice = lattice.clone();
        let config = config.clone();
        let shared = shared.clone();
        let spawned = std::thread::Builder::new()
            .name("weft-heartbeat".into())
            .spawn(move || {
                match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt.block_on(heartbeat_loop(lattice, config, shared)),
                    Err(e) => tracing::error!(error = %e, "cannot start the heartbeat runtime"),
                }
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the heartbeat thread");
        }
    }
    tokio::spawn(state_loop(
        lattice.clone(),
        config.clone(),
        shared.clone(),
        wanted_tx,
    ));
    tokio::spawn(applier(lattice, config, host, wanted_rx));
    Agent { shared, forwarder }
}

fn host_record(config: &AgentConfig, id: String, seq: u64, started_at_ms: u64) -> HostRecord {
    HostRecord {
        name: config.host_name.clone(),
        id,
        labels: config.labels.clone(),
        status: HostStatus::Ready.as_str().to_string(),
        seq,
        http_addr: config.http_addr.clone(),
        started_at_ms,
        weft_version: env!("CARGO_PKG_VERSION").to_string(),
    }
}

enum Beat {
    Ok(u64),
    Fenced,
    Failed(String),
}

async fn heartbeat_loop(lattice: Lattice, config: AgentConfig, shared: Arc<Shared>) {
    let mut ticker = tokio::time::interval(config.heartbeat);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let started_at_ms = now_ms();
    let mut seq = 0u64;
    let mut revision: Option<u64> = None;
    let mut failing = false;
    let budget = heartbeat_budget(&config);
    loop {
        // A reconnect heartbeats at once: observers judge a host from the moment they are back
        // themselves, so the first heartbeat after a server restart must not wait for a tick.
        tokio::select! {
            _ = ticker.tick() => {}
            () = lattice.reconnected.notified() => ticker.reset(),
        }
        seq += 1;
        let id = shared.id();
        let record = host_record(&config, id.clone(), seq, started_at_ms);
        let Ok(bytes) = serde_json::to_vec(&record) else {
            continue;
        };
        let sent = Instant::now();
        let key = config.host_name.as_str();
        let attempt = async {
            match revision {
                None => match lattice.hosts.put(key, bytes.into()).await {
                    Ok(r) => Beat::Ok(r),
                    Err(e) => Beat::Failed(e.to_string()),
                },
                Some(rev) => match lattice.hosts.update(key, bytes.into(), rev).await {
                    Ok(r) => Beat::Ok(r),
                    Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                        // Our own write may have landed with its ack lost: then the record is
                        // ours, ready. Anything else (lost, another instance) is a fence.
                        match lattice.hosts.entry(key).await {
                            Ok(Some(entry)) => match records::decode_host(key, &entry.value) {
                                Ok((h, r)) if r.id == id && h.status == HostStatus::Ready => {
                                    Beat::Ok(entry.revision)
                                }
                                _ => Beat::Fenced,
                            },
                            Ok(None) => Beat::Fenced,
                            Err(e) => Beat::Failed(e.to_string()),
                        }
                    }
                    Err(e) => Beat::Failed(e.to_string()),
                },
            }
        };
        let beat = match tokio::time::timeout(budget, attempt).await {
            Ok(b) => b,
            Err(_) => Beat::Failed(format!("no answer within {budget:?}")),
        };
        match beat {
            Beat::Ok(r) => {
                if revision.is_none() {
                    tracing::info!(host = %config.host_name, id = %id, lattice = %lattice.name, "registered in the lattice");
                }
                if failing {
                    tracing::info!("heartbeats acknowledged again");
                    failing = false;
                }
                revision = Some(r);
                shared.fresh().acked(sent);
                config.stats.heartbeats_ok.inc();
            }
            Beat::Fenced => {
                tracing::warn!(
                    host = %config.host_name,
                    "fenced: the lattice marked this host lost; dropping its replicas and registering again"
                );
                shared.fresh().fenced();
                if let Ok(mut g) = shared.id.lock() {
                    *g = random_id();
                }
                revision = None;
            }
            Beat::Failed(e) => {
                config.stats.heartbeats_failed.inc();
                shared.fresh().unreachable(Instant::now());
                if !failing {
                    tracing::warn!(error = %e, "heartbeat failed; serving continues");
                    failing = true;
                }
            }
        }
    }
}

/// What the applier should run: this host's instance id and, per workload, the manifest of the
/// placed version (or `None`: keep whatever version runs, the placed one is not desired now).
#[derive(Debug, Clone, Default, PartialEq)]
struct Wanted {
    id: String,
    replicas: BTreeMap<String, Option<(String, Manifest)>>,
}

struct Leading {
    revision: u64,
    epoch: u64,
    fresh: Freshness,
    last_sent: Instant,
}

async fn state_loop(
    lattice: Lattice,
    config: AgentConfig,
    shared: Arc<Shared>,
    wanted: tokio::sync::watch::Sender<Wanted>,
) {
    let me = config.host_name.clone();
    let lease_id = random_id();
    let bad = BadValues::default();
    let mut liveness = Liveness::new(config.host_timeout);
    let mut lease_clock = LeaseClock::new(config.lease_ttl);
    let mut leading: Option<Leading> = None;
    let mut connects = lattice.connect_count();
    let mut was_reading = true;
    let read_budget = (config.tick * 4).max(Duration::from_secs(2));
    loop {
        tokio::time::sleep(config.tick).await;
        let read = match tokio::time::timeout(read_budget, View::read(&lattice, &bad)).await {
            Ok(r) => r,
            Err(_) => Err(format!("no answer within {read_budget:?}")),
        };
        let view = match read {
            Ok(v) => v,
            Err(e) => {
                if was_reading {
                    tracing::warn!(error = %e, "cannot read the lattice state; serving continues");
                }
                was_reading = false;
                if let Some(l) = &mut leading {
                    l.fresh.unreachable(Instant::now());
                }
                continue;
            }
        };
        // Forwarded ingress routes by what this re-list saw.
        *shared.directory.write().unwrap_or_else(|e| e.into_inner()) =
            crate::forward::Directory::from_view(&view);
        let now = Instant::now();
        // An observer that was cut off judges nobody on that time, nor on the time its peers
        // need to notice the server is back (their reconnect backoff) and get a heartbeat or a
        // renewal through (one heartbeat budget).
        if !was_reading || lattice.connect_count() != connects {
            let back = now.checked_add(reconnect_slack(&config)).unwrap_or(now);
            liveness.grace_all(back);
            lease_clock.grace(back);
            connects = lattice.connect_count();
            was_reading = true;
        }
        let ready: Vec<&str> = view
            .hosts
            .iter()
            .filter(|(_, (h, _, _))| h.status == HostStatus::Ready)
            .map(|(n, _)| n.as_str())
            .collect();
        for name in &ready {
            if let Some((_, _, rev)) = view.hosts.get(*name) {
                liveness.observe(name, *rev, now);
            }
        }
        liveness.retain(&ready);
        lease_clock.observe(view.lease_revision, now);

        // The lease.
        let holder_is_me = view
            .lease
            .as_ref()
            .is_some_and(|(l, _)| l.holder == me && l.id == lease_id);
        if let Some(l) = &leading
            && !holder_is_me
            && view.lease_revision.is_some_and(|rev| rev > l.revision)
        {
            tracing::warn!(host = %me, "lost the lease to another host");
            leading = None;
        }
        let record = LeaseRecord {
            holder: me.clone(),
            id: lease_id.clone(),
            acquired_at_ms: now_ms(),
        };
        let lease_bytes = serde_json::to_vec(&record).unwrap_or_default();
        if let Some(l) = &mut leading {
            if now.duration_since(l.last_sent) >= config.lease_ttl / 3 {
                let sent = Instant::now();
                match lattice
                    .lease
                    .update(LEASE_KEY, lease_bytes.clone().into(), l.revision)
                    .await
                {
                    Ok(r) => {
                        l.revision = r;
                        l.fresh.acked(sent);
                        l.last_sent = sent;
                    }
                    Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                        tracing::warn!(host = %me, "lease renewal refused: another host leads");
                        leading = None;
                    }
                    Err(e) => {
                        l.fresh.unreachable(Instant::now());
                        tracing::warn!(error = %e, "lease renewal failed");
                    }
                }
            }
        } else if let Some(seen) = lease_clock.takeover(now) {
            let sent = Instant::now();
            let result = match seen {
                None => lattice
                    .lease
                    .create(LEASE_KEY, lease_bytes.clone().into())
                    .await
                    .map_err(|e| e.to_string()),
                Some(rev) => lattice
                    .lease
                    .update(LEASE_KEY, lease_bytes.clone().into(), rev)
                    .await
                    .map_err(|e| e.to_string()),
            };
            match result {
                Ok(r) => {
                    tracing::info!(host = %me, epoch = r, "leading the lattice");
                    let mut fresh = Freshness::new(config.lease_ttl / 2);
                    fresh.acked(sent);
                    leading = Some(Leading {
                        revision: r,
                        epoch: r,
                        fresh,
                        last_sent: sent,
                    });
                    lease_clock.observe(Some(r), now);
                }
                Err(e) => tracing::debug!(error = %e, "lease not taken (another host was first)"),
            }
        }

        config.stats.leader.set(i64::from(leading.is_some()));
        // The leader's work.
        if let Some(l) = &leading
            && l.fresh.may_serve(Instant::now())
        {
            send_wanted(&view, &me, &shared, &wanted);
            lead(&lattice, l.epoch, &mut liveness, view, now, &config.stats).await;
        } else {
            send_wanted(&view, &me, &shared, &wanted);
        }
    }
}

/// How much longer than the host timeout an observer waits after its own outage: a peer may
/// reconnect up to [`crate::connect::RECONNECT_DELAY_MAX`] later than the observer did, and its heartbeat sent
/// before that may hang for a whole heartbeat budget (half the host timeout) before the next.
fn reconnect_slack(config: &AgentConfig) -> Duration {
    crate::connect::RECONNECT_DELAY_MAX.saturating_add(heartbeat_budget(config))
}

/// How long one heartbeat may take before it counts as failed and the next is tried.
fn heartbeat_budget(config: &AgentConfig) -> Duration {
    (config.host_timeout / 2).max(Duration::from_millis(200))
}

fn send_wanted(
    view: &View,
    me: &str,
    shared: &Shared,
    wanted: &tokio::sync::watch::Sender<Wanted>,
) {
    let id = shared.id();
    // No record of this host in the re-list (a server that is still recovering after a
    // restart, or a listing cut short): no evidence either way, keep running what runs. Only
    // a record that says lost, or names another instance, fences the replicas.
    let Some((h, r, _)) = view.hosts.get(me) else {
        return;
    };
    let registered = h.status == HostStatus::Ready && r.id == id;
    let mut replicas = BTreeMap::new();
    if registered {
        for ((w, h), (p, _)) in &view.placements {
            if h != me {
                continue;
            }
            let run = view
                .desired
                .get(w)
                .filter(|d| d.deployment.version == p.version)
                .map(|d| (p.version.clone(), d.manifest.clone()));
            replicas.insert(w.clone(), run);
        }
    }
    let next = Wanted { id, replicas };
    wanted.send_if_modified(|cur| {
        if *cur == next {
            false
        } else {
            *cur = next;
            true
        }
    });
}

async fn lead(
    lattice: &Lattice,
    epoch: u64,
    liveness: &mut Liveness,
    mut view: View,
    now: Instant,
    stats: &weft_stats::LatticeStats,
) {
    // Silent hosts: mark lost, compare-and-set at the revision last seen. If the host
    // heartbeated in between the write fails and nothing moves.
    for (host, rev) in liveness.suspects(now) {
        let Some((h, record, seen)) = view.hosts.get_mut(&host) else {
            continue;
        };
        if h.status != HostStatus::Ready || *seen != rev {
            continue;
        }
        let mut lost = record.clone();
        lost.status = HostStatus::Lost.as_str().to_string();
        let Ok(bytes) = serde_json::to_vec(&lost) else {
            continue;
        };
        match lattice.hosts.update(host.as_str(), bytes.into(), rev).await {
            Ok(r) => {
                tracing::warn!(
                    host = %host,
                    silent_ms = liveness.silent_for(&host, now).map(|d| d.as_millis() as u64),
                    "host lost: no heartbeat for the host timeout; its replicas move"
                );
                h.status = HostStatus::Lost;
                stats.hosts_marked_lost.inc();
                *seen = r;
                liveness.forget(&host);
            }
            Err(e) => tracing::debug!(host = %host, error = %e, "not marked lost (it heartbeated)"),
        }
    }
    let state = view.state();
    for command in reconcile(&state) {
        let key = records::placement_key(command.workload(), command.host());
        let revision = view
            .placements
            .get(&(command.workload().to_string(), command.host().to_string()))
            .map(|(_, r)| *r);
        let result = match &command {
            Command::Place {
                workload,
                host,
                version,
            } => {
                let p = weft_scheduler::Placement {
                    workload: workload.clone(),
                    host: host.clone(),
                    version: version.clone(),
                };
                lattice
                    .placements
                    .create(key.as_str(), records::encode_placement(&p, epoch).into())
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
            Command::Update {
                workload, host, to, ..
            } => {
                let p = weft_scheduler::Placement {
                    workload: workload.clone(),
                    host: host.clone(),
                    version: to.clone(),
                };
                match revision {
                    Some(rev) => lattice
                        .placements
                        .update(
                            key.as_str(),
                            records::encode_placement(&p, epoch).into(),
                            rev,
                        )
                        .await
                        .map(|_| ())
                        .map_err(|e| e.to_string()),
                    None => Err("no placement to update".into()),
                }
            }
            Command::Remove { .. } => lattice
                .placements
                .delete_expect_revision(key.as_str(), revision)
                .await
                .map_err(|e| e.to_string()),
        };
        match result {
            Ok(()) => {
                match &command {
                    Command::Place { .. } => stats.decisions_place.inc(),
                    Command::Update { .. } => stats.decisions_update.inc(),
                    Command::Remove { .. } => stats.decisions_remove.inc(),
                }
                tracing::info!(epoch, "{command}")
            }
            Err(e) => {
                stats.decisions_raced.inc();
                tracing::debug!(error = %e, "{command}: lost a race; the next round decides again")
            }
        }
    }
}

async fn applier<H: LocalHost>(
    lattice: Lattice,
    config: AgentConfig,
    host: Arc<H>,
    mut wanted: tokio::sync::watch::Receiver<Wanted>,
) {
    let mut running: BTreeMap<String, String> = BTreeMap::new();
    let mut failures: BTreeMap<String, FailureRecord> = BTreeMap::new();
    let mut failed_at: BTreeMap<String, Instant> = BTreeMap::new();
    let mut reported: Option<(ReportRecord, Instant)> = None;
    loop {
        let target = wanted.borrow_and_update().clone();
        let stale: Vec<String> = running
            .keys()
            .filter(|n| !target.replicas.contains_key(*n))
            .cloned()
            .collect();
        for name in stale {
            match host.remove(&name) {
                Ok(()) => {
                    tracing::info!(workload = %name, "replica stopped (placement removed or host fenced)")
                }
                Err(e) => tracing::warn!(workload = %name, error = %e, "cannot stop the replica"),
            }
            running.remove(&name);
        }
        for (name, run) in &target.replicas {
            let Some((version, manifest)) = run else {
                continue;
            };
            if running.get(name) == Some(version)
                || failures.get(name).is_some_and(|f| &f.version == version)
            {
                continue;
            }
            let started = Instant::now();
            let result = match localize(&lattice, &config, manifest.clone()).await {
                Ok(m) => host.deploy(m).await,
                Err(e) => Err(e),
            };
            // Ready only once it answers: a version that deploys but does not answer is
            // stopped and reported like one that fails to deploy.
            let result = match result {
                Ok(()) => {
                    let mut probed = Err(String::new());
                    for attempt in 0..PROBE_ATTEMPTS {
                        if attempt > 0 {
                            tokio::time::sleep(Duration::from_millis(500)).await;
                        }
                        probed = host.probe(name).await;
                        if probed.is_ok() {
                            break;
                        }
                    }
                    if let Err(e) = &probed {
                        // An in-place update swapped the old version out: nothing of this
                        // workload runs here any more.
                        let _ = host.remove(name);
                        running.remove(name);
                        tracing::warn!(workload = %name, version = %version, error = %e, "replica does not answer its readiness probe; stopped");
                    }
                    probed.map_err(|e| format!("deployed, but does not answer: {e}"))
                }
                Err(e) => Err(e),
            };
            match result {
                Ok(()) => {
                    tracing::info!(workload = %name, version = %version, ms = started.elapsed().as_millis() as u64, "replica running");
                    running.insert(name.clone(), version.clone());
                    failures.remove(name);
                }
                Err(e) => {
                    tracing::warn!(workload = %name, version = %version, error = %e, "replica failed to deploy; reported");
                    failures.insert(
                        name.clone(),
                        FailureRecord {
                            version: version.clone(),
                            error: e,
                        },
                    );
                    failed_at.insert(name.clone(), Instant::now());
                }
            }
        }
        failures.retain(|n, _| {
            target.replicas.contains_key(n)
                || failed_at
                    .get(n)
                    .is_some_and(|at| at.elapsed() < FAILURE_HOLD)
        });
        failed_at.retain(|n, _| failures.contains_key(n));
        config
            .stats
            .replicas_running
            .set(i64::try_from(running.len()).unwrap_or(i64::MAX));
        let report = ReportRecord {
            name: config.host_name.clone(),
            id: target.id.clone(),
            replicas: running
                .iter()
                .map(|(n, v)| {
                    (
                        n.clone(),
                        RunningRecord {
                            version: v.clone(),
                            ready: true,
                        },
                    )
                })
                .collect(),
            failures: failures.clone(),
        };
        let due = reported
            .as_ref()
            .is_none_or(|(r, at)| *r != report || at.elapsed() > Duration::from_secs(10));
        if due && !target.id.is_empty() {
            match serde_json::to_vec(&report) {
                Ok(bytes) => match lattice
                    .status
                    .put(config.host_name.as_str(), bytes.into())
                    .await
                {
                    Ok(_) => reported = Some((report, Instant::now())),
                    Err(e) => tracing::warn!(error = %e, "cannot write this host's report"),
                },
                Err(e) => tracing::warn!(error = %e, "cannot encode this host's report"),
            }
        }
        tokio::select! {
            changed = wanted.changed() => if changed.is_err() { return },
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
    }
}

/// The manifest with every pinned local image replaced by its cached copy, fetched from the
/// object store and verified.
async fn localize(
    lattice: &Lattice,
    config: &AgentConfig,
    mut manifest: Manifest,
) -> Result<Manifest, String> {
    let mut slots: Vec<(&mut String, &Option<String>)> = manifest
        .spec
        .components
        .iter_mut()
        .map(|c| (&mut c.image, &c.digest))
        .collect();
    if let Some(s) = manifest.spec.service.as_mut() {
        slots.push((&mut s.image, &s.digest));
    }
    for (image, digest) in slots {
        if image.trim_start().starts_with("oci://") {
            continue;
        }
        let Some(digest) = digest else {
            return Err(format!("image `{image}` has no pinned digest"));
        };
        let path = images::fetch(lattice, digest, &config.cache_dir)
            .await
            .map_err(|e| e.to_string())?;
        *image = path.to_string_lossy().into_owned();
    }
    Ok(manifest)
}
