//! `weft up --otlp-endpoint`: spans exported over OTLP/HTTP (protobuf) with the `opentelemetry`
//! crates, and W3C trace-context propagation. When no endpoint is given, nothing here runs on
//! the request path: [`enabled`] is false and no span is created. Spans and attributes:
//! docs/observability.md ("Traces").

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{SpanKind, Status, TraceContextExt, Tracer};
use opentelemetry::{Context, KeyValue, global};
use opentelemetry_http::{HeaderExtractor, HeaderInjector, HttpClient, HttpError};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;

static ENABLED: AtomicBool = AtomicBool::new(false);

/// The instrumentation scope of every span Weft makes.
pub const TRACER: &str = "weft";

/// True once [`Tracing::start`] has installed an exporter.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Why tracing could not start; each names the flag.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error(
        "--otlp-endpoint `{0}`: expected an http:// URL such as http://127.0.0.1:4318 (OTLP over \
         HTTP; there is no TLS client: run a collector on loopback)"
    )]
    Endpoint(String),
    #[error("--otlp-endpoint: cannot build the OTLP exporter: {0}")]
    Exporter(String),
}

/// The installed exporter; [`Tracing::shutdown`] flushes what is buffered.
pub struct Tracing {
    provider: SdkTracerProvider,
}

impl Tracing {
    /// Exports spans to `{endpoint}/v1/traces` in batches, from a background thread whose
    /// requests run on `runtime`; sets the global tracer provider and the W3C trace-context
    /// propagator. The batch delay is the SDK's (`OTEL_BSP_SCHEDULE_DELAY`, default 5 s).
    pub fn start(
        endpoint: &str,
        service_name: &str,
        runtime: tokio::runtime::Handle,
    ) -> Result<Tracing, TraceError> {
        let base = endpoint.trim_end_matches('/');
        let uri: http::Uri = base
            .parse()
            .map_err(|_| TraceError::Endpoint(endpoint.to_string()))?;
        if uri.scheme_str() != Some("http") || uri.host().is_none() {
            return Err(TraceError::Endpoint(endpoint.to_string()));
        }
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .with_endpoint(format!("{base}/v1/traces"))
            .with_timeout(Duration::from_secs(10))
            .with_http_client(OtlpClient::new(runtime))
            .build()
            .map_err(|e| TraceError::Exporter(e.to_string()))?;
        let resource = opentelemetry_sdk::Resource::builder()
            .with_service_name(service_name.to_string())
            .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
            .build();
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource)
            .build();
        global::set_tracer_provider(provider.clone());
        global::set_text_map_propagator(TraceContextPropagator::new());
        ENABLED.store(true, Ordering::Relaxed);
        Ok(Tracing { provider })
    }

    /// Exports what is buffered and stops the exporter.
    pub fn shutdown(self) {
        ENABLED.store(false, Ordering::Relaxed);
        if let Err(e) = self.provider.shutdown() {
            tracing::warn!(error = %e, "could not flush the last spans to the OTLP endpoint");
        }
    }
}

/// The spans of the outgoing requests a guest makes while handling one ingress request: children
/// of that request's `workload.handle` span. The runtime gets it through the request's
/// extensions ([`weft_runtime::outbound::RequestTracer`]).
pub struct HandleTracer(pub Context);

impl HandleTracer {
    /// The extension to put into the ingress request handed to the workload.
    pub fn for_request(cx: &Context) -> weft_runtime::outbound::RequestTracer {
        weft_runtime::outbound::RequestTracer(std::sync::Arc::new(HandleTracer(cx.clone())))
    }
}

impl weft_runtime::outbound::OutgoingTracer for HandleTracer {
    fn start(
        &self,
        request: &mut http::Request<weft_runtime::WasiBody>,
    ) -> Box<dyn weft_runtime::outbound::OutgoingSpan> {
        client_span(&self.0, request, Vec::new())
    }

    fn span(
        &self,
        name: &'static str,
        attributes: &[(&'static str, &str)],
    ) -> Box<dyn weft_runtime::outbound::HostSpan> {
        let attributes = attributes
            .iter()
            .map(|(k, v)| KeyValue::new(*k, v.to_string()))
            .collect();
        internal_span(&self.0, name, attributes)
    }

    fn message(
        &self,
        name: &'static str,
        subject: &str,
        headers: &mut Vec<(String, String)>,
    ) -> Box<dyn weft_runtime::outbound::HostSpan> {
        let tracer = global::tracer(TRACER);
        let span = tracer
            .span_builder(name)
            .with_kind(SpanKind::Producer)
            .with_attributes([
                KeyValue::new("messaging.destination.name", subject.to_string()),
                KeyValue::new("messaging.operation.type", "send"),
            ])
            .start_with_context(&tracer, &self.0);
        let cx = self.0.with_span(span);
        // The guest's own trace headers are replaced: the consumer's parent is this span.
        headers.retain(|(k, _)| {
            !k.eq_ignore_ascii_case("traceparent") && !k.eq_ignore_ascii_case("tracestate")
        });
        TraceContextPropagator::new().inject_context(&cx, &mut MessageHeaders(headers));
        Box::new(InternalSpan(cx))
    }
}

/// The `http.client` span of an outgoing request under `parent` (a new trace's root when
/// `parent` has no span), with `extra` attributes; writes its `traceparent` into the request.
fn client_span(
    parent: &Context,
    request: &mut http::Request<weft_runtime::WasiBody>,
    mut attributes: Vec<KeyValue>,
) -> Box<dyn weft_runtime::outbound::OutgoingSpan> {
    let tracer = global::tracer(TRACER);
    let uri = request.uri();
    attributes.extend([
        KeyValue::new("http.request.method", request.method().as_str().to_string()),
        KeyValue::new("server.address", uri.host().unwrap_or("").to_string()),
        // Scheme, authority and path; the query is left out (it may carry secrets).
        KeyValue::new(
            "url.full",
            format!(
                "{}://{}{}",
                uri.scheme_str().unwrap_or("https"),
                uri.authority().map(|a| a.as_str()).unwrap_or(""),
                uri.path()
            ),
        ),
    ]);
    if let Some(port) = uri.port_u16() {
        attributes.push(KeyValue::new("server.port", i64::from(port)));
    }
    let span = tracer
        .span_builder("http.client")
        .with_kind(SpanKind::Client)
        .with_attributes(attributes)
        .start_with_context(&tracer, parent);
    let cx = parent.with_span(span);
    // The guest's own trace headers are replaced: the next hop's parent is this span.
    request.headers_mut().remove("traceparent");
    request.headers_mut().remove("tracestate");
    inject(&cx, request.headers_mut());
    Box::new(ClientSpan(cx))
}

/// The tracer of a service's own work: every outgoing request or host call is the root of a
/// new trace, tagged with the workload and the service.
struct ServiceTracer {
    workload: String,
    service: String,
}

impl ServiceTracer {
    fn attributes(&self) -> Vec<KeyValue> {
        vec![
            KeyValue::new("weft.workload", self.workload.clone()),
            KeyValue::new("weft.service", self.service.clone()),
        ]
    }
}

impl weft_runtime::outbound::OutgoingTracer for ServiceTracer {
    fn start(
        &self,
        request: &mut http::Request<weft_runtime::WasiBody>,
    ) -> Box<dyn weft_runtime::outbound::OutgoingSpan> {
        client_span(&Context::new(), request, self.attributes())
    }

    fn span(
        &self,
        name: &'static str,
        attributes: &[(&'static str, &str)],
    ) -> Box<dyn weft_runtime::outbound::HostSpan> {
        let mut all = self.attributes();
        all.extend(
            attributes
                .iter()
                .map(|(k, v)| KeyValue::new(*k, v.to_string())),
        );
        internal_span(&Context::new(), name, all)
    }

    fn message(
        &self,
        name: &'static str,
        subject: &str,
        headers: &mut Vec<(String, String)>,
    ) -> Box<dyn weft_runtime::outbound::HostSpan> {
        HandleTracer(Context::new()).message(name, subject, headers)
    }
}

/// A message's headers as a trace-context carrier (written).
struct MessageHeaders<'a>(&'a mut Vec<(String, String)>);

impl opentelemetry::propagation::Injector for MessageHeaders<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.push((key.to_string(), value));
    }
}

/// A message's headers as a trace-context carrier (read; names compared without case).
struct ReadHeaders<'a>(&'a [(String, String)]);

impl opentelemetry::propagation::Extractor for ReadHeaders<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(k, _)| k.as_str()).collect()
    }
}

/// Starts the traces of work no ingress request started: each message delivered to a
/// workload's handler, and a long-lived service's own work.
pub struct Roots;

impl weft_runtime::outbound::TraceRoots for Roots {
    fn service(
        &self,
        workload: &str,
        service: &str,
    ) -> Option<std::sync::Arc<dyn weft_runtime::outbound::OutgoingTracer>> {
        enabled().then(|| {
            std::sync::Arc::new(ServiceTracer {
                workload: workload.to_string(),
                service: service.to_string(),
            }) as std::sync::Arc<dyn weft_runtime::outbound::OutgoingTracer>
        })
    }

    fn message(
        &self,
        workload: &str,
        subject: &str,
        headers: &[(String, String)],
    ) -> Option<(
        std::sync::Arc<dyn weft_runtime::outbound::OutgoingTracer>,
        Box<dyn weft_runtime::outbound::HostSpan>,
    )> {
        if !enabled() {
            return None;
        }
        let parent = TraceContextPropagator::new().extract(&ReadHeaders(headers));
        let tracer = global::tracer(TRACER);
        let span = tracer
            .span_builder("messaging.process")
            .with_kind(SpanKind::Consumer)
            .with_attributes([
                KeyValue::new("messaging.destination.name", subject.to_string()),
                KeyValue::new("messaging.operation.type", "process"),
                KeyValue::new("weft.workload", workload.to_string()),
            ])
            .start_with_context(&tracer, &parent);
        let cx = parent.with_span(span);
        Some((
            std::sync::Arc::new(HandleTracer(cx.clone())),
            Box::new(InternalSpan(cx)),
        ))
    }
}

/// An internal span `name` under `parent` (a new trace's root when `parent` has no span).
fn internal_span(
    parent: &Context,
    name: &'static str,
    attributes: Vec<KeyValue>,
) -> Box<dyn weft_runtime::outbound::HostSpan> {
    let tracer = global::tracer(TRACER);
    let span = tracer
        .span_builder(name)
        .with_kind(SpanKind::Internal)
        .with_attributes(attributes)
        .start_with_context(&tracer, parent);
    Box::new(InternalSpan(parent.with_span(span)))
}

/// A host-interface call's span (`keyvalue.get`, ...).
struct InternalSpan(Context);

impl weft_runtime::outbound::HostSpan for InternalSpan {
    fn end(self: Box<Self>, error: Option<String>) {
        let span = self.0.span();
        if let Some(error) = error {
            span.set_attribute(KeyValue::new("error.type", error.clone()));
            span.set_status(Status::error(error));
        }
        span.end();
    }
}

struct ClientSpan(Context);

impl weft_runtime::outbound::OutgoingSpan for ClientSpan {
    fn end(self: Box<Self>, outcome: Result<u16, String>) {
        match outcome {
            Ok(status) => end_with_status(&self.0, status),
            Err(code) => {
                let span = self.0.span();
                span.set_attribute(KeyValue::new("error.type", code.clone()));
                span.set_status(Status::error(code));
                span.end();
            }
        }
    }
}

/// The `ingress` server span of one request: its parent comes from the request's
/// `traceparent`/`tracestate` headers, if any.
pub fn ingress_span(
    request: &http::Request<weft_runtime::WasiBody>,
    host: Option<&str>,
) -> Context {
    let parent = TraceContextPropagator::new().extract(&HeaderExtractor(request.headers()));
    let tracer = global::tracer(TRACER);
    let span = tracer
        .span_builder("ingress")
        .with_kind(SpanKind::Server)
        .with_attributes([
            KeyValue::new("http.request.method", request.method().as_str().to_string()),
            KeyValue::new("url.path", request.uri().path().to_string()),
            KeyValue::new("server.address", host.unwrap_or("").to_string()),
        ])
        .start_with_context(&tracer, &parent);
    parent.with_span(span)
}

/// The `workload.handle` span of an in-memory call from another workload
/// (`NAME.weft.internal`): a server span whose parent is the caller's `http.client` span, read
/// from the `traceparent` the caller's tracer wrote into the request.
pub fn internal_call_span(
    request: &http::Request<weft_runtime::WasiBody>,
    workload: &str,
) -> Context {
    let parent = TraceContextPropagator::new().extract(&HeaderExtractor(request.headers()));
    let tracer = global::tracer(TRACER);
    let caller = request
        .headers()
        .get(weft_runtime::outbound::CALLER_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let span = tracer
        .span_builder("workload.handle")
        .with_kind(SpanKind::Server)
        .with_attributes([
            KeyValue::new("http.request.method", request.method().as_str().to_string()),
            KeyValue::new("url.path", request.uri().path().to_string()),
            KeyValue::new("weft.workload", workload.to_string()),
            KeyValue::new("weft.caller", caller),
        ])
        .start_with_context(&tracer, &parent);
    parent.with_span(span)
}

/// A child span of `parent` named `name`.
pub fn child_span(parent: &Context, name: &'static str, kind: SpanKind) -> Context {
    let tracer = global::tracer(TRACER);
    let span = tracer
        .span_builder(name)
        .with_kind(kind)
        .start_with_context(&tracer, parent);
    parent.with_span(span)
}

/// Records the response status on the span of `cx` (an error status for 5xx) and ends it.
pub fn end_with_status(cx: &Context, status: u16) {
    let span = cx.span();
    span.set_attribute(KeyValue::new(
        "http.response.status_code",
        i64::from(status),
    ));
    if status >= 500 {
        span.set_status(Status::error(format!("HTTP {status}")));
    }
    span.end();
}

/// Writes `traceparent` (and `tracestate`) for the span of `cx` into `headers`.
pub fn inject(cx: &Context, headers: &mut http::HeaderMap) {
    TraceContextPropagator::new().inject_context(cx, &mut HeaderInjector(headers));
}

/// The exporter's HTTP client: hyper on the host's tokio runtime. The SDK's batch processor
/// calls it from its own thread (outside any runtime), so each request is spawned onto
/// `runtime` and awaited through its join handle.
#[derive(Debug, Clone)]
struct OtlpClient {
    runtime: tokio::runtime::Handle,
    client: hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        Full<Bytes>,
    >,
}

/// Largest collector response read.
const MAX_RESPONSE: usize = 1 << 20;

impl OtlpClient {
    fn new(runtime: tokio::runtime::Handle) -> Self {
        let _guard = runtime.enter();
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http();
        Self { runtime, client }
    }
}

#[async_trait::async_trait]
impl HttpClient for OtlpClient {
    async fn send_bytes(
        &self,
        request: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, HttpError> {
        let client = self.client.clone();
        let task = self.runtime.spawn(async move {
            let response = tokio::time::timeout(
                Duration::from_secs(10),
                client.request(request.map(Full::new)),
            )
            .await
            .map_err(|_| HttpError::from("the OTLP endpoint did not answer within 10 s"))??;
            let (parts, body) = response.into_parts();
            let body = Limited::new(body, MAX_RESPONSE)
                .collect()
                .await
                .map_err(|e| HttpError::from(e.to_string()))?
                .to_bytes();
            Ok::<_, HttpError>(http::Response::from_parts(parts, body))
        });
        task.await.map_err(|e| HttpError::from(e.to_string()))?
    }
}
