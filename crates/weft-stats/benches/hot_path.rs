//! What one ingress request costs the metrics, weft-stats against prometheus-client's own metric
//! types as the storage (docs/observability.md, "Why a thin atomic layer"). One "record" is what
//! the host does per request: in-flight gauge up and down, the request counted by status code,
//! the latency observed into the 17-bucket histogram.
//!
//! - `weft-stats`: the workload's `WorkloadStats`, resolved when the route is (as the host does).
//! - `prometheus-client, resolved`: the best case for prometheus-client: the workload's histogram
//!   and gauge cloned out of their `Family` once, and a per-workload `Family<code, Counter>`
//!   (the status code is only known after the response, so that lookup stays per request).
//! - `prometheus-client, by labels`: the usual way: one `Family` per metric, labels
//!   `{workload, code}` built per request (the workload name cloned into the label set).
//!
//! Each is timed on one thread and on two threads recording into the same workload at once.
//! Bounded: `cargo bench -p weft-stats --bench hot_path -- --warm-up-time 1 --measurement-time 3`.
// Bench code: a failed unwrap is a bench failure with a location.
#![allow(clippy::unwrap_used)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use weft_stats::{DURATION_BUCKETS, WorkloadStats};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Code {
    code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WorkloadCode {
    workload: String,
    code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WorkloadLabel {
    workload: String,
}

/// prometheus-client with the per-workload handles taken once.
#[derive(Clone)]
struct Resolved {
    requests: Family<Code, Counter>,
    latency: Histogram,
    in_flight: Gauge,
}

/// prometheus-client looked up by labels on every request.
#[derive(Clone)]
struct ByLabels {
    requests: Arc<Family<WorkloadCode, Counter>>,
    latency: Arc<Family<WorkloadLabel, Histogram>>,
    in_flight: Arc<Family<WorkloadLabel, Gauge>>,
    name: String,
}

fn histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}

fn by_labels() -> ByLabels {
    ByLabels {
        requests: Arc::default(),
        latency: Arc::new(Family::new_with_constructor(histogram as fn() -> Histogram)),
        in_flight: Arc::default(),
        name: "hello".to_string(),
    }
}

fn resolved() -> Resolved {
    Resolved {
        requests: Family::default(),
        latency: histogram(),
        in_flight: Gauge::default(),
    }
}

/// A spread of statuses and latencies like a real workload's.
fn sample(i: u64) -> (u16, Duration) {
    let code = if i.is_multiple_of(50) { 503 } else { 200 };
    (code, Duration::from_nanos(50_000 + (i * 7919) % 3_000_000))
}

fn record_weft(s: &WorkloadStats, i: u64) {
    let (code, d) = sample(i);
    let _in_flight = s.in_flight.track();
    s.requests.inc(code);
    s.latency.observe(d);
}

fn record_resolved(r: &Resolved, i: u64) {
    let (code, d) = sample(i);
    r.in_flight.inc();
    r.requests.get_or_create(&Code { code }).inc();
    r.latency.observe(d.as_secs_f64());
    r.in_flight.dec();
}

fn record_by_labels(b: &ByLabels, i: u64) {
    let (code, d) = sample(i);
    let w = WorkloadLabel {
        workload: b.name.clone(),
    };
    b.in_flight.get_or_create(&w).inc();
    b.requests
        .get_or_create(&WorkloadCode {
            workload: b.name.clone(),
            code,
        })
        .inc();
    b.latency.get_or_create(&w).observe(d.as_secs_f64());
    b.in_flight.get_or_create(&w).dec();
}

/// Runs `f` on `threads` threads, `iters` records each, and returns the wall time divided so
/// that criterion reports the time per record per thread.
fn threaded<T: Clone + Send + 'static>(
    threads: u64,
    iters: u64,
    state: &T,
    f: fn(&T, u64),
) -> Duration {
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let s = state.clone();
            std::thread::spawn(move || {
                for i in 0..iters {
                    f(black_box(&s), i);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    start.elapsed()
}

fn bench(c: &mut Criterion) {
    let weft = Arc::new(WorkloadStats::default());
    let res = resolved();
    let lab = by_labels();

    let mut g = c.benchmark_group("record one request, 1 thread");
    g.bench_function("weft-stats", |b| {
        let mut i = 0;
        b.iter(|| {
            i += 1;
            record_weft(black_box(&weft), i)
        })
    });
    g.bench_function("prometheus-client, resolved", |b| {
        let mut i = 0;
        b.iter(|| {
            i += 1;
            record_resolved(black_box(&res), i)
        })
    });
    g.bench_function("prometheus-client, by labels", |b| {
        let mut i = 0;
        b.iter(|| {
            i += 1;
            record_by_labels(black_box(&lab), i)
        })
    });
    g.finish();

    let mut g = c.benchmark_group("record one request, 2 threads on one workload");
    g.bench_function("weft-stats", |b| {
        b.iter_custom(|iters| {
            threaded(2, iters, &weft, |s: &Arc<WorkloadStats>, i| {
                record_weft(s, i)
            })
        })
    });
    g.bench_function("prometheus-client, resolved", |b| {
        b.iter_custom(|iters| threaded(2, iters, &res, record_resolved))
    });
    g.bench_function("prometheus-client, by labels", |b| {
        b.iter_custom(|iters| threaded(2, iters, &lab, record_by_labels))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
