//! What the request path counts: relaxed atomic counters, gauges and fixed-bucket histograms,
//! grouped per workload ([`WorkloadStats`]) and per host ([`HostStats`]).
//!
//! Updating costs a few uncontended atomic adds and no allocation or lock; reading happens only
//! when something asks (a Prometheus scrape, the dashboard), so exporting is the reader's job
//! (`weft-host` encodes these as Prometheus text). This crate knows nothing of wasmtime, HTTP
//! or Prometheus, so every layer can count into it. See docs/observability.md.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

/// A monotonically increasing count.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down.
#[derive(Debug, Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    pub fn dec(&self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
    pub fn add(&self, n: i64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn set(&self, n: i64) {
        self.0.store(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }

    /// Increments now and decrements when the guard drops (also on unwind or cancellation).
    pub fn track(&self) -> GaugeGuard<'_> {
        self.inc();
        GaugeGuard(self)
    }
}

/// Decrements its gauge when dropped; see [`Gauge::track`].
#[must_use = "the gauge is decremented when the guard drops"]
pub struct GaugeGuard<'a>(&'a Gauge);

impl Drop for GaugeGuard<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Upper bounds (seconds) of the duration histograms' buckets; the last bucket is +Inf.
pub const DURATION_BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Bucket bounds in nanoseconds, for the comparisons on the hot path.
const DURATION_BUCKETS_NS: [u64; 16] = [
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
];

/// A histogram of durations over [`DURATION_BUCKETS`] (plus +Inf), with their sum.
#[derive(Debug, Default)]
pub struct DurationHistogram {
    /// Non-cumulative counts; index 16 is +Inf.
    buckets: [AtomicU64; 17],
    sum_ns: AtomicU64,
}

/// A consistent-enough copy of a histogram (each field read once, relaxed).
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// `(upper bound in seconds, cumulative count)`, the last bound `f64::INFINITY`.
    pub buckets: Vec<(f64, u64)>,
    pub count: u64,
    pub sum_seconds: f64,
}

impl HistogramSnapshot {
    /// The `q` quantile (0..=1) estimated by linear interpolation inside the bucket it falls
    /// in, as Prometheus' `histogram_quantile` does; `None` when empty. Values in the +Inf
    /// bucket are reported as the largest finite bound.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * self.count as f64;
        let mut lower = 0.0;
        let mut below = 0u64;
        for &(upper, cumulative) in &self.buckets {
            if cumulative as f64 >= rank && cumulative > below {
                if upper.is_infinite() {
                    return Some(lower);
                }
                let inside = (cumulative - below) as f64;
                return Some(lower + (upper - lower) * ((rank - below as f64) / inside));
            }
            if upper.is_finite() {
                lower = upper;
            }
            below = cumulative;
        }
        Some(lower)
    }
}

impl DurationHistogram {
    /// Index of the bucket for `ns` nanoseconds: the first bound at or above it.
    fn bucket(ns: u64) -> usize {
        DURATION_BUCKETS_NS.partition_point(|&bound| bound < ns)
    }

    pub fn observe(&self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.buckets[Self::bucket(ns)].fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut cumulative = 0u64;
        let mut buckets = Vec::with_capacity(17);
        for (i, b) in self.buckets.iter().enumerate() {
            cumulative += b.load(Ordering::Relaxed);
            let bound = DURATION_BUCKETS.get(i).copied().unwrap_or(f64::INFINITY);
            buckets.push((bound, cumulative));
        }
        HistogramSnapshot {
            buckets,
            count: cumulative,
            sum_seconds: self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9,
        }
    }
}

/// Requests answered, by HTTP status code (100..=599; a code outside that range, which
/// `http::StatusCode` never holds, is clamped into it).
#[derive(Debug)]
pub struct StatusCounts([AtomicU64; 500]);

impl Default for StatusCounts {
    fn default() -> Self {
        Self(std::array::from_fn(|_| AtomicU64::new(0)))
    }
}

impl StatusCounts {
    pub fn inc(&self, code: u16) {
        let i = usize::from(code.clamp(100, 599) - 100);
        self.0[i].fetch_add(1, Ordering::Relaxed);
    }

    /// `(code, count)` for every code seen at least once, in code order.
    pub fn nonzero(&self) -> Vec<(u16, u64)> {
        self.0
            .iter()
            .enumerate()
            .filter_map(|(i, c)| {
                let n = c.load(Ordering::Relaxed);
                (n > 0).then(|| (i as u16 + 100, n))
            })
            .collect()
    }

    pub fn total(&self) -> u64 {
        self.0.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }
}

/// `wasi:keyvalue` operations, in the order of [`KeyvalueOp::ALL`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyvalueOp {
    Get,
    Set,
    Delete,
    Exists,
    ListKeys,
    Increment,
    GetMany,
    SetMany,
    DeleteMany,
}

impl KeyvalueOp {
    pub const ALL: [KeyvalueOp; 9] = [
        KeyvalueOp::Get,
        KeyvalueOp::Set,
        KeyvalueOp::Delete,
        KeyvalueOp::Exists,
        KeyvalueOp::ListKeys,
        KeyvalueOp::Increment,
        KeyvalueOp::GetMany,
        KeyvalueOp::SetMany,
        KeyvalueOp::DeleteMany,
    ];

    /// The WIT function's name (the `op` label).
    pub fn name(self) -> &'static str {
        match self {
            KeyvalueOp::Get => "get",
            KeyvalueOp::Set => "set",
            KeyvalueOp::Delete => "delete",
            KeyvalueOp::Exists => "exists",
            KeyvalueOp::ListKeys => "list-keys",
            KeyvalueOp::Increment => "increment",
            KeyvalueOp::GetMany => "get-many",
            KeyvalueOp::SetMany => "set-many",
            KeyvalueOp::DeleteMany => "delete-many",
        }
    }
}

/// Everything counted for one workload. Kept by the host per workload name, across versions, so
/// counters only ever grow while the workload exists.
#[derive(Debug, Default)]
pub struct WorkloadStats {
    /// Ingress requests answered, by status.
    pub requests: StatusCounts,
    /// Ingress latency: routing until the response head.
    pub latency: DurationHistogram,
    /// Requests inside the workload now.
    pub in_flight: Gauge,
    /// Component instances (stores) alive now.
    pub instances_alive: Gauge,
    /// Time to instantiate a component (a new store and instance) for requests.
    pub instantiation: DurationHistogram,
    /// Linear memory (bytes) reserved by the workload's live instances.
    pub memory_bytes: Gauge,
    /// `wasi:keyvalue` calls by operation ([`KeyvalueOp::ALL`] order).
    pub keyvalue: [Counter; 9],
    /// Messages published and received (messaging, once it exists).
    pub messages_sent: Counter,
    pub messages_received: Counter,
}

impl WorkloadStats {
    pub fn keyvalue_op(&self, op: KeyvalueOp) {
        self.keyvalue[op as usize].inc();
    }
}

/// Host-wide counts.
#[derive(Debug, Default)]
pub struct HostStats {
    /// Ingress requests no route matched.
    pub unrouted: Counter,
    /// Workloads deployed and deploy attempts refused, through the admin API.
    pub deploys_ok: Counter,
    pub deploys_refused: Counter,
    /// Compile-cache lookups.
    pub cache_hits: Counter,
    pub cache_misses: Counter,
    /// The lattice agent's counts, shared with it (`weft up --lattice`).
    pub lattice: std::sync::Arc<LatticeStats>,
}

/// A lattice member's counts (docs/lattice.md); rendered only once the host joined a lattice.
#[derive(Debug, Default)]
pub struct LatticeStats {
    /// Set when the host joins a lattice.
    pub member: std::sync::atomic::AtomicBool,
    /// Heartbeats written and acknowledged by NATS, and heartbeats that failed.
    pub heartbeats_ok: Counter,
    pub heartbeats_failed: Counter,
    /// Scheduler commands this host applied while it led: place, update, remove a replica.
    pub decisions_place: Counter,
    pub decisions_update: Counter,
    pub decisions_remove: Counter,
    /// Commands that lost a race (another leader's or a host's write came first).
    pub decisions_raced: Counter,
    /// Hosts this host marked lost while it led.
    pub hosts_marked_lost: Counter,
    /// 1 while this host holds the scheduler lease.
    pub leader: Gauge,
    /// Replicas the lattice placed on this host and that it runs.
    pub replicas_running: Gauge,
}

impl LatticeStats {
    pub fn is_member(&self) -> bool {
        self.member.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn bucket_edges_are_inclusive_upper_bounds() {
        assert_eq!(DurationHistogram::bucket(0), 0);
        assert_eq!(DurationHistogram::bucket(100_000), 0);
        assert_eq!(DurationHistogram::bucket(100_001), 1);
        assert_eq!(DurationHistogram::bucket(10_000_000_000), 15);
        assert_eq!(DurationHistogram::bucket(10_000_000_001), 16);
        assert_eq!(DurationHistogram::bucket(u64::MAX), 16);
    }

    #[test]
    fn snapshot_is_cumulative_with_sum() {
        let h = DurationHistogram::default();
        h.observe(Duration::from_micros(50));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(60));
        let s = h.snapshot();
        assert_eq!(s.count, 3);
        assert_eq!(s.buckets.len(), 17);
        assert_eq!(s.buckets[0], (0.0001, 1));
        assert_eq!(s.buckets[5], (0.005, 2));
        assert_eq!(s.buckets[15], (10.0, 2));
        assert_eq!(s.buckets[16].1, 3);
        assert!(s.buckets[16].0.is_infinite());
        assert!((s.sum_seconds - 60.00305).abs() < 1e-9, "{}", s.sum_seconds);
    }

    #[test]
    fn quantile_interpolates_like_prometheus() {
        let h = DurationHistogram::default();
        assert_eq!(h.snapshot().quantile(0.5), None);
        // 100 observations in (1ms, 2.5ms]: the median is in the middle of that bucket.
        for _ in 0..100 {
            h.observe(Duration::from_micros(2000));
        }
        let q = h.snapshot().quantile(0.5).unwrap_or(f64::NAN);
        assert!((q - 0.00175).abs() < 1e-9, "{q}");
        // Only +Inf: reported as the largest finite bound.
        let h = DurationHistogram::default();
        h.observe(Duration::from_secs(100));
        assert_eq!(h.snapshot().quantile(0.99), Some(10.0));
    }

    #[test]
    fn status_counts_and_gauge_guard() {
        let s = StatusCounts::default();
        s.inc(200);
        s.inc(200);
        s.inc(503);
        s.inc(42); // clamped, never panics
        assert_eq!(s.nonzero(), vec![(100, 1), (200, 2), (503, 1)]);
        assert_eq!(s.total(), 4);
        let g = Gauge::default();
        {
            let _a = g.track();
            let _b = g.track();
            assert_eq!(g.get(), 2);
        }
        assert_eq!(g.get(), 0);
    }

    proptest! {
        #[test]
        fn every_observation_lands_in_exactly_one_bucket(ns in proptest::collection::vec(any::<u64>(), 0..64)) {
            let h = DurationHistogram::default();
            for &n in &ns {
                h.observe(Duration::from_nanos(n));
            }
            let s = h.snapshot();
            prop_assert_eq!(s.count, ns.len() as u64);
            prop_assert!(s.buckets.windows(2).all(|w| w[0].1 <= w[1].1 && w[0].0 < w[1].0));
            for &n in &ns {
                let b = DurationHistogram::bucket(n);
                prop_assert!(b == 16 || n <= DURATION_BUCKETS_NS[b]);
                prop_assert!(b == 0 || n > DURATION_BUCKETS_NS[b - 1]);
            }
            if let Some(q) = s.quantile(0.99) {
                prop_assert!((0.0..=10.0).contains(&q));
            }
        }
    }
}
