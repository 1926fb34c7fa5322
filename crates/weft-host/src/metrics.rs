//! `weft up --metrics-addr`: the host's counters as Prometheus text (OpenMetrics), encoded by
//! `prometheus-client` at scrape time from the atomics the request path updates
//! (`weft-stats`). Names and labels: docs/observability.md.

use std::sync::Arc;

use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};
use weft_runtime::WasiBody;
use weft_stats::{HistogramSnapshot, KeyvalueOp};

use crate::host::Host;
use crate::server::{Handler, bytes_response, text_response};

/// The content type of the exposition (OpenMetrics text, which Prometheus prefers).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Encodes every metric of `host` as OpenMetrics text (ending in `# EOF`).
pub fn render(host: &Arc<Host>) -> Result<String, std::fmt::Error> {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(HostCollector(host.clone())));
    let mut out = String::with_capacity(4096);
    prometheus_client::encoding::text::encode(&mut out, &registry)?;
    Ok(out)
}

struct HostCollector(Arc<Host>);

impl std::fmt::Debug for HostCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HostCollector")
    }
}

type Labels<'a> = [(&'static str, &'a str)];
/// A per-workload gauge: name, help, and how to read it.
type GaugeSpec = (
    &'static str,
    &'static str,
    fn(&weft_stats::WorkloadStats) -> i64,
);
/// A host-wide counter family: name, help, label name, and the labelled values.
type CounterSpec = (
    &'static str,
    &'static str,
    &'static str,
    [(&'static str, u64); 2],
);

fn histogram(
    encoder: &mut prometheus_client::encoding::MetricEncoder<'_>,
    labels: &Labels<'_>,
    h: &HistogramSnapshot,
) -> std::fmt::Result {
    // prometheus-client takes per-bucket counts and accumulates them itself.
    let mut below = 0;
    let buckets: Vec<(f64, u64)> = h
        .buckets
        .iter()
        .map(|&(bound, cumulative)| {
            let n = cumulative - below;
            below = cumulative;
            (bound, n)
        })
        .collect();
    encoder
        .encode_family(&labels)?
        .encode_histogram::<NoLabelSet>(h.sum_seconds, h.count, &buckets, None)
}

impl prometheus_client::collector::Collector for HostCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let host = &self.0;
        let workloads = host.workload_stats();
        let stats = host.stats();

        let mut e = encoder.encode_descriptor(
            "weft_build_info",
            "Weft's version",
            None,
            MetricType::Gauge,
        )?;
        e.encode_family(&[("version", env!("CARGO_PKG_VERSION"))])?
            .encode_gauge(&1i64)?;

        let mut e = encoder.encode_descriptor(
            "weft_http_requests",
            "Ingress requests answered, by workload and status code",
            None,
            MetricType::Counter,
        )?;
        for w in &workloads {
            for (code, n) in w.stats.requests.nonzero() {
                let code = code.to_string();
                e.encode_family(&[("workload", w.name.as_str()), ("code", code.as_str())])?
                    .encode_counter::<NoLabelSet, _, u64>(&n, None)?;
            }
        }

        let mut e = encoder.encode_descriptor(
            "weft_http_request_duration",
            "Ingress request latency, routing to response head",
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?;
        for w in &workloads {
            histogram(
                &mut e,
                &[("workload", w.name.as_str())],
                &w.stats.latency.snapshot(),
            )?;
        }

        let gauges: [GaugeSpec; 3] = [
            (
                "weft_http_requests_in_flight",
                "Requests inside the workload now",
                |s| s.in_flight.get(),
            ),
            (
                "weft_instances_alive",
                "Component instances (stores) alive now",
                |s| s.instances_alive.get(),
            ),
            (
                "weft_memory_bytes",
                "Linear memory reserved by the workload's live instances",
                |s| s.memory_bytes.get(),
            ),
        ];
        for (name, help, get) in gauges {
            let mut e = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for w in &workloads {
                e.encode_family(&[("workload", w.name.as_str())])?
                    .encode_gauge(&get(&w.stats))?;
            }
        }

        let mut e = encoder.encode_descriptor(
            "weft_instantiation_duration",
            "Time to instantiate a component for requests",
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?;
        for w in &workloads {
            let h = w.stats.instantiation.snapshot();
            if h.count > 0 {
                histogram(&mut e, &[("workload", w.name.as_str())], &h)?;
            }
        }

        let mut e = encoder.encode_descriptor(
            "weft_keyvalue_operations",
            "wasi:keyvalue calls, by workload and operation",
            None,
            MetricType::Counter,
        )?;
        for w in &workloads {
            for op in KeyvalueOp::ALL {
                let n = w.stats.keyvalue[op as usize].get();
                if n > 0 {
                    e.encode_family(&[("workload", w.name.as_str()), ("op", op.name())])?
                        .encode_counter::<NoLabelSet, _, u64>(&n, None)?;
                }
            }
        }

        let mut e = encoder.encode_descriptor(
            "weft_messages",
            "Messages sent and received, by workload and direction",
            None,
            MetricType::Counter,
        )?;
        for w in &workloads {
            for (direction, n) in [
                ("sent", w.stats.messages_sent.get()),
                ("received", w.stats.messages_received.get()),
            ] {
                if n > 0 {
                    e.encode_family(&[("workload", w.name.as_str()), ("direction", direction)])?
                        .encode_counter::<NoLabelSet, _, u64>(&n, None)?;
                }
            }
        }

        let mut e = encoder.encode_descriptor(
            "weft_service_restarts",
            "Restarts of the running version's long-lived service",
            None,
            MetricType::Counter,
        )?;
        for w in &workloads {
            if let Some(n) = w.service_restarts {
                e.encode_family(&[("workload", w.name.as_str())])?
                    .encode_counter::<NoLabelSet, _, u64>(&n, None)?;
            }
        }

        let mut e = encoder.encode_descriptor(
            "weft_workloads",
            "Workloads on this host, by status",
            None,
            MetricType::Gauge,
        )?;
        for status in ["Running", "Failed"] {
            let n = workloads.iter().filter(|w| w.status == status).count() as i64;
            e.encode_family(&[("status", status)])?.encode_gauge(&n)?;
        }

        let counters: [CounterSpec; 2] = [
            (
                "weft_deploys",
                "Deploy attempts through the admin API: workloads deployed, attempts refused",
                "result",
                [
                    ("ok", stats.deploys_ok.get()),
                    ("refused", stats.deploys_refused.get()),
                ],
            ),
            (
                "weft_compile_cache",
                "Compile-cache lookups, by result",
                "result",
                [
                    ("hit", stats.cache_hits.get()),
                    ("miss", stats.cache_misses.get()),
                ],
            ),
        ];
        for (name, help, label, values) in counters {
            let mut e = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (value, n) in values {
                e.encode_family(&[(label, value)])?
                    .encode_counter::<NoLabelSet, _, u64>(&n, None)?;
            }
        }

        let lattice = &stats.lattice;
        if lattice.is_member() {
            let families: [CounterSpec; 2] = [
                (
                    "weft_lattice_heartbeats",
                    "Heartbeats this host wrote to the lattice, by result",
                    "result",
                    [
                        ("ok", lattice.heartbeats_ok.get()),
                        ("failed", lattice.heartbeats_failed.get()),
                    ],
                ),
                (
                    "weft_scheduler_races",
                    "Scheduler commands this host issued while leading, applied or lost to a concurrent write",
                    "result",
                    [
                        (
                            "applied",
                            lattice.decisions_place.get()
                                + lattice.decisions_update.get()
                                + lattice.decisions_remove.get(),
                        ),
                        ("raced", lattice.decisions_raced.get()),
                    ],
                ),
            ];
            for (name, help, label, values) in families {
                let mut e = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
                for (value, n) in values {
                    e.encode_family(&[(label, value)])?
                        .encode_counter::<NoLabelSet, _, u64>(&n, None)?;
                }
            }
            let mut e = encoder.encode_descriptor(
                "weft_scheduler_decisions",
                "Scheduler commands this host applied while leading, by decision",
                None,
                MetricType::Counter,
            )?;
            for (decision, n) in [
                ("place", lattice.decisions_place.get()),
                ("update", lattice.decisions_update.get()),
                ("remove", lattice.decisions_remove.get()),
            ] {
                e.encode_family(&[("decision", decision)])?
                    .encode_counter::<NoLabelSet, _, u64>(&n, None)?;
            }
            let e = encoder.encode_descriptor(
                "weft_lattice_hosts_marked_lost",
                "Hosts this host marked lost while leading",
                None,
                MetricType::Counter,
            )?;
            prometheus_client::metrics::counter::ConstCounter::new(lattice.hosts_marked_lost.get())
                .encode(e)?;
            for (name, help, value) in [
                (
                    "weft_lattice_leader",
                    "1 while this host holds the scheduler lease",
                    lattice.leader.get(),
                ),
                (
                    "weft_lattice_replicas",
                    "Replicas the lattice placed on this host that it runs",
                    lattice.replicas_running.get(),
                ),
            ] {
                let e = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
                prometheus_client::metrics::gauge::ConstGauge::new(value).encode(e)?;
            }
        }

        let e = encoder.encode_descriptor(
            "weft_http_unrouted_requests",
            "Ingress requests no route matched",
            None,
            MetricType::Counter,
        )?;
        prometheus_client::metrics::counter::ConstCounter::new(stats.unrouted.get()).encode(e)?;
        Ok(())
    }
}

/// Serves `GET /metrics`.
#[derive(Clone)]
pub struct MetricsEndpoint(pub Arc<Host>);

impl Handler for MetricsEndpoint {
    async fn handle(&self, request: http::Request<WasiBody>) -> http::Response<WasiBody> {
        if request.uri().path() != "/metrics" {
            return text_response(
                http::StatusCode::NOT_FOUND,
                "404 metrics are at /metrics\n".into(),
            );
        }
        if request.method() != http::Method::GET && request.method() != http::Method::HEAD {
            return text_response(
                http::StatusCode::METHOD_NOT_ALLOWED,
                "405 GET /metrics\n".into(),
            );
        }
        match render(&self.0) {
            Ok(text) => bytes_response(http::StatusCode::OK, CONTENT_TYPE, text),
            Err(_) => text_response(
                http::StatusCode::INTERNAL_SERVER_ERROR,
                "500 could not encode the metrics\n".into(),
            ),
        }
    }
}
