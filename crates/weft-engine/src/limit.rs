//! Limits that hold under attack:
//!
//! - byte limits on HTTP bodies crossing the host: a guest cannot stream a response forever,
//!   and a client cannot push an endless request into a guest. Bodies stay streamed (never
//!   buffered); the limiter only counts.
//! - the store limiter ([`Limiter`]): wasmtime's `StoreLimits` (memory, tables, instances) plus
//!   a per-component meter on linear-memory growth (a [`RateMeter`]), so a component that
//!   grows and touches hundreds of MiB per request, over and over, cannot keep a core busy
//!   page-faulting and slow its neighbours (docs/security.md, "Memory growth").

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use wasmtime_wasi_http::Error;

/// Default cap on an incoming request body (`--max-request-body`).
pub const DEFAULT_MAX_REQUEST_BODY: u64 = 256 << 20;
/// Default cap on a guest's response body (`--max-response-body`).
pub const DEFAULT_MAX_RESPONSE_BODY: u64 = 1 << 30;
/// Resource handles one store may hold (headers, bodies, streams, sockets...). wasmtime's own
/// default is 1,000,000; each `fields` handle may hold up to 128 KiB of headers, so this also
/// bounds what one instance can make the host allocate through handles.
pub const DEFAULT_MAX_RESOURCES: usize = 4096;

/// Default sustained rate of metered linear-memory growth per component (`--memory-growth-rate`).
pub const DEFAULT_GROWTH_RATE: u64 = 512 << 20;
/// Growth each store may make before the meter counts (instantiation and ordinary requests
/// stay well under it).
pub const FREE_GROWTH_PER_STORE: u64 = 8 << 20;

/// A token bucket: a sustained rate with a burst. Weft meters two things with it, each
/// shared by every instance it covers:
/// - bytes of linear-memory growth, per component version: growth past each store's free
///   allowance takes tokens; a store that finds too few waits (asynchronously, inside
///   `memory.grow`) until the bucket would have them;
/// - socket creations, per workload (`weft_interfaces::net::SocketBudget`): a guest that opens sockets
///   faster than the rate waits inside `create-tcp-socket` / `create-udp-socket`.
///
/// The balance may go negative: later takers queue behind earlier ones, so N concurrent
/// instances get no more than one does.
#[derive(Debug)]
pub struct RateMeter {
    rate: f64,
    burst: f64,
    bucket: Mutex<Bucket>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl RateMeter {
    /// `rate` tokens (bytes, sockets) per second sustained, up to `burst` at once after a quiet
    /// spell. A rate of zero is treated as one per second (use no meter to disable metering).
    pub fn new(rate: u64, burst: u64, now: Instant) -> Self {
        RateMeter {
            rate: (rate.max(1)) as f64,
            burst: burst as f64,
            bucket: Mutex::new(Bucket {
                tokens: burst as f64,
                at: now,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Bucket> {
        match self.bucket.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Takes `bytes` tokens at `now`; returns how long the caller must wait before what they
    /// pay for may happen (zero when the bucket held them).
    pub fn charge(&self, bytes: u64, now: Instant) -> Duration {
        let mut b = self.lock();
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * self.rate).min(self.burst);
        b.at = b.at.max(now);
        b.tokens -= bytes as f64;
        if b.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-b.tokens / self.rate)
        }
    }

    /// Gives back `bytes` tokens taken for something that never happened (the waiting
    /// request was cancelled or timed out).
    pub fn refund(&self, bytes: u64) {
        let mut b = self.lock();
        b.tokens = (b.tokens + bytes as f64).min(self.burst);
    }
}

/// Refunds a charge unless the growth it paid for went ahead.
struct Charge<'a> {
    meter: &'a RateMeter,
    bytes: u64,
    spent: bool,
}

impl Drop for Charge<'_> {
    fn drop(&mut self) {
        if !self.spent {
            self.meter.refund(self.bytes);
        }
    }
}

/// A store's resource limiter: wasmtime's [`wasmtime::StoreLimits`] plus the growth meter,
/// and, for a workload's stores, its share of the workload's counts: one live instance and
/// the linear memory it holds (`weft_instances_alive`, `weft_memory_bytes`), given back when
/// the store (and so its limiter) is dropped.
pub struct Limiter {
    limits: wasmtime::StoreLimits,
    growth: Option<Arc<RateMeter>>,
    free_left: u64,
    stats: Option<Arc<weft_stats::WorkloadStats>>,
    /// Linear-memory bytes this store added to `stats.memory_bytes`.
    held: u64,
}

impl Limiter {
    pub fn new(limits: wasmtime::StoreLimits, growth: Option<Arc<RateMeter>>) -> Self {
        Limiter {
            limits,
            growth,
            free_left: FREE_GROWTH_PER_STORE,
            stats: None,
            held: 0,
        }
    }

    /// Counts this store as a live instance of the workload `stats` belongs to, with its
    /// memory, until it is dropped.
    pub fn counted(mut self, stats: Option<Arc<weft_stats::WorkloadStats>>) -> Self {
        if let Some(s) = &stats {
            s.instances_alive.inc();
        }
        self.stats = stats;
        self
    }

    /// The workload's counts, when this store is one of a workload's.
    pub fn stats(&self) -> Option<&Arc<weft_stats::WorkloadStats>> {
        self.stats.as_ref()
    }

    /// Bytes of `current -> desired` growth the meter must cover, after the free allowance.
    /// A memory's creation (`current == 0`: its declared initial size, at instantiation) is
    /// not metered: with copy-on-write images an instance only faults in the pages it
    /// touches, and metering the declared size would throttle large guests (an interpreter
    /// with tens of MiB of initial memory) on every request. So the meter bounds growth by
    /// `memory.grow`, which is how a guest's allocator asks for more; a guest that declares
    /// a large initial memory and touches it all is bounded only by its memory limit and by
    /// how many instances it may run (docs/security.md).
    fn metered(&mut self, current: usize, desired: usize) -> u64 {
        if current == 0 {
            return 0;
        }
        let delta = desired.saturating_sub(current) as u64;
        let free = delta.min(self.free_left);
        self.free_left -= free;
        delta - free
    }
}

#[async_trait::async_trait]
impl wasmtime::ResourceLimiterAsync for Limiter {
    async fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        use wasmtime::ResourceLimiter as _;
        if !self.limits.memory_growing(current, desired, maximum)? {
            return Ok(false);
        }
        if let Some(stats) = &self.stats {
            let grown = desired.saturating_sub(current) as u64;
            self.held = self.held.saturating_add(grown);
            stats
                .memory_bytes
                .add(i64::try_from(grown).unwrap_or(i64::MAX));
        }
        let bytes = self.metered(current, desired);
        if let (Some(meter), true) = (self.growth.clone(), bytes > 0) {
            let wait = meter.charge(bytes, Instant::now());
            let mut charge = Charge {
                meter: &meter,
                bytes,
                spent: false,
            };
            if !wait.is_zero() {
                tracing::debug!(bytes, ?wait, "memory growth metered: waiting");
                tokio::time::sleep(wait).await;
            }
            charge.spent = true;
        }
        Ok(true)
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        use wasmtime::ResourceLimiter as _;
        self.limits.memory_grow_failed(error)
    }

    async fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        use wasmtime::ResourceLimiter as _;
        self.limits.table_growing(current, desired, maximum)
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        use wasmtime::ResourceLimiter as _;
        self.limits.table_grow_failed(error)
    }

    fn instances(&self) -> usize {
        use wasmtime::ResourceLimiter as _;
        self.limits.instances()
    }

    fn tables(&self) -> usize {
        use wasmtime::ResourceLimiter as _;
        self.limits.tables()
    }

    fn memories(&self) -> usize {
        use wasmtime::ResourceLimiter as _;
        self.limits.memories()
    }
}

/// Which side a body is on: decides the error the reader gets past the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Request,
    Response,
}

impl Drop for Limiter {
    fn drop(&mut self) {
        if let Some(stats) = &self.stats {
            stats.instances_alive.dec();
            stats
                .memory_bytes
                .add(-i64::try_from(self.held).unwrap_or(i64::MAX));
        }
    }
}

/// A body that fails with a size error once more than `limit` bytes have passed, and, when
/// paced, takes its bytes from a [`RateMeter`] shared by every response of one workload: a
/// frame that overdraws the bucket goes out, and the next waits until the bucket would have
/// covered it.
pub struct Limited<B> {
    inner: B,
    seen: u64,
    limit: u64,
    direction: Direction,
    pace: Option<Arc<RateMeter>>,
    wait: Option<Pin<Box<tokio::time::Sleep>>>,
}

/// The burst of a response pace of `rate` bytes per second: a quarter of a second's worth,
/// at least 1 MiB, so ordinary responses never wait.
pub fn response_burst(rate: u64) -> u64 {
    (rate / 4).max(1 << 20)
}

/// The meter one workload's (or `weft serve`'s) response bodies share: `rate` bytes per
/// second after a [`response_burst`]; `None` for a rate of zero (unpaced).
pub fn response_pace(rate: u64) -> Option<Arc<RateMeter>> {
    (rate > 0).then(|| Arc::new(RateMeter::new(rate, response_burst(rate), Instant::now())))
}

/// Default sustained response-body rate per workload under `weft up` (`--max-response-rate`):
/// 1 GiB/s (8 Gbit/s), more than most hosts' network; `weft serve` leaves bodies unpaced.
pub const DEFAULT_WORKLOAD_RESPONSE_RATE: u64 = 1 << 30;

impl<B> Limited<B> {
    pub fn new(inner: B, limit: u64, direction: Direction) -> Self {
        Limited {
            inner,
            seen: 0,
            limit,
            direction,
            pace: None,
            wait: None,
        }
    }

    /// Paces the body's bytes by `meter` (none: unpaced).
    pub fn paced(mut self, meter: Option<Arc<RateMeter>>) -> Self {
        self.pace = meter;
        self
    }

    fn error(&self) -> Error {
        match self.direction {
            Direction::Request => Error::HttpRequestBodySize(Some(self.limit)),
            Direction::Response => Error::HttpResponseBodySize(Some(self.limit)),
        }
    }
}

impl<B> Body for Limited<B>
where
    B: Body<Data = Bytes, Error = Error> + Unpin,
{
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        if self.seen > self.limit {
            return Poll::Ready(None);
        }
        if let Some(wait) = self.wait.as_mut() {
            if wait.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            self.wait = None;
        }
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let len = data.len() as u64;
                    self.seen = self.seen.saturating_add(len);
                    if self.seen > self.limit {
                        let (dir, limit) = (self.direction, self.limit);
                        tracing::warn!(?dir, limit, "HTTP body cut off at its size limit");
                        return Poll::Ready(Some(Err(self.error())));
                    }
                    if let Some(meter) = &self.pace {
                        let wait = meter.charge(len, Instant::now());
                        if !wait.is_zero() {
                            self.wait = Some(Box::pin(tokio::time::sleep(wait)));
                        }
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.seen > self.limit || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, StreamBody};
    use proptest::prelude::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn meter_grants_the_burst_then_the_rate() {
        let t0 = Instant::now();
        let m = RateMeter::new(100 * MIB, 50 * MIB, t0);
        assert_eq!(m.charge(50 * MIB, t0), Duration::ZERO);
        // Empty: 10 MiB more at 100 MiB/s is 0.1 s away.
        let wait = m.charge(10 * MIB, t0);
        assert!((wait.as_secs_f64() - 0.1).abs() < 1e-9, "{wait:?}");
        // A second grower queues behind the first.
        let wait = m.charge(10 * MIB, t0);
        assert!((wait.as_secs_f64() - 0.2).abs() < 1e-9, "{wait:?}");
        // A refund (a cancelled wait) shortens the queue again.
        m.refund(10 * MIB);
        let wait = m.charge(0, t0);
        assert!((wait.as_secs_f64() - 0.1).abs() < 1e-9, "{wait:?}");
        // After a quiet second the bucket is full again, never more than the burst.
        let later = t0 + Duration::from_secs(10);
        assert_eq!(m.charge(50 * MIB, later), Duration::ZERO);
        assert!(m.charge(MIB, later) > Duration::ZERO);
    }

    #[test]
    fn free_allowance_is_per_store() {
        let half = (FREE_GROWTH_PER_STORE / 2) as usize;
        let mut l = Limiter::new(wasmtime::StoreLimits::default(), None);
        // Creating a memory at its initial size is never metered, however large.
        assert_eq!(l.metered(0, 1 << 30), 0);
        assert_eq!(l.metered(64 << 10, (64 << 10) + half), 0);
        assert_eq!(
            l.metered(64 << 10, (64 << 10) + 2 * half),
            FREE_GROWTH_PER_STORE / 2
        );
        assert_eq!(l.metered(10, 5), 0, "shrinking is never metered");
        let mut fresh = Limiter::new(wasmtime::StoreLimits::default(), None);
        assert_eq!(fresh.metered(1, 1 + 2 * half), 0);
    }

    proptest! {
        /// Whatever the sequence of charges and clock steps, the growth the meter lets go
        /// ahead by time t (a charge counts once its wait has passed) is at most
        /// burst + rate * t, and a charge within the available tokens never waits.
        #[test]
        fn meter_never_grants_more_than_burst_plus_rate(
            rate_mib in 1u64..1024,
            burst_mib in 0u64..512,
            steps in proptest::collection::vec((0u64..300, 0u64..200), 1..60),
        ) {
            let t0 = Instant::now();
            let rate = rate_mib * MIB;
            let burst = burst_mib * MIB;
            let m = RateMeter::new(rate, burst, t0);
            let mut now = t0;
            let mut granted: Vec<(Instant, u64)> = Vec::new();
            for (step_ms, mib) in steps {
                now += Duration::from_millis(step_ms);
                let wait = m.charge(mib * MIB, now);
                granted.push((now + wait, mib * MIB));
            }
            for &(at, _) in &granted {
                let total: u64 = granted.iter().filter(|(g, _)| *g <= at).map(|(_, b)| b).sum();
                let allowed = burst as f64
                    + rate as f64 * at.duration_since(t0).as_secs_f64()
                    + 1.0;
                prop_assert!(total as f64 <= allowed, "{total} > {allowed}");
            }
        }
    }

    #[tokio::test]
    async fn cuts_off_past_the_limit() {
        let chunks = (0..10).map(|_| Ok::<_, Error>(Frame::data(Bytes::from(vec![7u8; 100]))));
        let body = StreamBody::new(futures::stream::iter(chunks));
        let mut limited = Limited::new(body, 550, Direction::Response);
        let mut total = 0;
        let mut failed = false;
        while let Some(frame) = limited.frame().await {
            match frame {
                Ok(f) => total += f.data_ref().map_or(0, |d| d.len()),
                Err(e) => {
                    assert!(matches!(e, Error::HttpResponseBodySize(Some(550))), "{e:?}");
                    failed = true;
                }
            }
        }
        assert!(failed);
        assert_eq!(total, 500);
    }

    #[tokio::test]
    async fn passes_bodies_within_the_limit() {
        let chunks = (0..5).map(|_| Ok::<_, Error>(Frame::data(Bytes::from(vec![1u8; 100]))));
        let body = StreamBody::new(futures::stream::iter(chunks));
        let collected = Limited::new(body, 500, Direction::Request)
            .collect()
            .await
            .map(|c| c.to_bytes().len());
        assert_eq!(collected.ok(), Some(500));
    }
}
