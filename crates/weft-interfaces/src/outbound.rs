//! Outgoing HTTP for guests: the allow-list decides twice, then a pooled keep-alive client sends.
//!
//! 1. Before anything else, the request's `scheme://host:port` must match an allow rule
//!    (`weft_policy::allow`); otherwise the guest gets `HTTP-request-denied` and no DNS query is
//!    made.
//! 2. The host name is resolved by the host, and every address is checked again
//!    ([`AllowedHosts::allows_addr`]): a wildcard rule reaches only public addresses, an exact
//!    name rule anything but cloud metadata endpoints, an IP rule exactly that IP. The connection
//!    goes to an address that passed, so a DNS answer cannot redirect a request into a private
//!    network (`destination-IP-prohibited`).
//! 3. Connections are kept alive in one pool per component (hyper-util's client), so a busy
//!    guest reuses sockets instead of exhausting the host's ephemeral ports.
//!
//! Redirects are not followed by the host: a 3xx goes back to the guest, and a request the guest
//! sends to the new location is checked like any other.
//!
//! A host in the reserved name space `NAME.weft.internal` (`weft_policy::internal`) never
//! reaches DNS or a socket: with an allow rule that names the space, the request is handed in
//! memory to workload `NAME` on this host through the [`InternalDirectory`] the host installed
//! ([`InternalCaller`]); without one, or for a name that is no workload, it fails
//! (docs/messaging.md, "In-memory HTTP between workloads").

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody};

use weft_engine::logs::LogSink;
use weft_policy::allow::{AllowedHosts, Scheme};
use weft_policy::grant::GrantRequest;
use weft_policy::internal::InternalHost;

/// How long a connection may take when the guest sets no timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the response head may take when the guest sets no timeout.
const FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(600);
/// Idle keep-alive connections kept per destination.
const MAX_IDLE_PER_HOST: usize = 32;

/// One component's outgoing HTTP client.
pub struct Outbound {
    allowed: Arc<AllowedHosts>,
    client: Client<Connector, WasiBody>,
}

impl Outbound {
    pub fn new(allowed: Arc<AllowedHosts>) -> Self {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map(|b| {
                b.with_root_certificates(rustls::RootCertStore {
                    roots: webpki_roots::TLS_SERVER_ROOTS.into(),
                })
                .with_no_client_auth()
            })
            .ok()
            .map(Arc::new);
        let connector = Connector {
            allowed: Arc::clone(&allowed),
            tls,
        };
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(MAX_IDLE_PER_HOST)
            .build(connector);
        Outbound { allowed, client }
    }

    pub fn allowed(&self) -> &AllowedHosts {
        &self.allowed
    }

    /// Sends a request the allow-list has already admitted by name.
    pub async fn send(
        &self,
        mut request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
    ) -> Result<http::Response<WasiBody>, Error> {
        if request.uri().scheme().is_none() {
            // wasi:http defaults to https when the guest sets no scheme.
            let mut parts = request.uri().clone().into_parts();
            parts.scheme = Some(http::uri::Scheme::HTTPS);
            *request.uri_mut() =
                Uri::from_parts(parts).map_err(|_| Error::HttpRequestUriInvalid)?;
        }
        let first_byte = options
            .and_then(|o| o.first_byte_timeout)
            .unwrap_or(FIRST_BYTE_TIMEOUT);
        let response = match tokio::time::timeout(first_byte, self.client.request(request)).await {
            Err(_) => return Err(Error::ConnectionReadTimeout),
            Ok(Ok(r)) => r,
            Ok(Err(e)) => return Err(client_error(e)),
        };
        Ok(response.map(|body| body.map_err(Error::from).boxed_unsync()))
    }
}

/// Maps a client failure to the wasi:http error code the guest sees.
fn client_error(err: hyper_util::client::legacy::Error) -> Error {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&err);
    while let Some(e) = source {
        if let Some(c) = e.downcast_ref::<ConnectError>() {
            return match c {
                ConnectError::Prohibited => Error::DestinationIpProhibited,
                ConnectError::NotFound => Error::DestinationNotFound,
                ConnectError::Timeout => Error::ConnectionTimeout,
                ConnectError::Refused => Error::ConnectionRefused,
                ConnectError::Uri => Error::HttpRequestUriInvalid,
                ConnectError::Tls(_) => Error::TlsProtocolError,
                ConnectError::Io(e) => Error::Connect(std::io::Error::new(e.kind(), e.to_string())),
            };
        }
        if let Some(h) = e.downcast_ref::<hyper::Error>() {
            if h.is_timeout() {
                return Error::ConnectionReadTimeout;
            }
            if h.is_incomplete_message() {
                return Error::HttpResponseIncomplete;
            }
            return Error::HttpProtocolError;
        }
        source = e.source();
    }
    Error::HttpProtocolError
}

#[derive(Debug, thiserror::Error)]
enum ConnectError {
    #[error("no resolved address of the destination is allowed")]
    Prohibited,
    #[error("the destination name does not resolve")]
    NotFound,
    #[error("connecting timed out")]
    Timeout,
    #[error("connection refused")]
    Refused,
    #[error("the request URI has no usable host")]
    Uri,
    #[error("TLS: {0}")]
    Tls(std::io::Error),
    #[error("{0}")]
    Io(std::io::Error),
}

/// Resolves, checks every address against the allow-list, connects, and wraps TLS for https.
#[derive(Clone)]
struct Connector {
    allowed: Arc<AllowedHosts>,
    tls: Option<Arc<rustls::ClientConfig>>,
}

trait Stream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Stream for T {}

/// A connected (maybe TLS) stream for hyper.
struct Conn(TokioIo<Box<dyn Stream>>);

impl Connection for Conn {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl hyper::rt::Read for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl tower_service::Service<Uri> for Connector {
    type Response = Conn;
    type Error = ConnectError;
    type Future = Pin<Box<dyn Future<Output = Result<Conn, ConnectError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), ConnectError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { this.connect(uri).await })
    }
}

impl Connector {
    async fn connect(self, uri: Uri) -> Result<Conn, ConnectError> {
        let (scheme, host, port) = destination(&uri).ok_or(ConnectError::Uri)?;
        let host = host.to_string();
        let resolved: Vec<SocketAddr> = match host.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => match tokio::time::timeout(
                CONNECT_TIMEOUT,
                tokio::net::lookup_host((host.as_str(), port)),
            )
            .await
            {
                Err(_) => return Err(ConnectError::Timeout),
                Ok(Err(_)) => return Err(ConnectError::NotFound),
                Ok(Ok(addrs)) => addrs.collect(),
            },
        };
        let admitted: Vec<SocketAddr> = resolved
            .iter()
            .copied()
            .filter(|a| self.allowed.allows_addr(scheme, &host, port, a.ip()))
            .collect();
        if admitted.is_empty() {
            tracing::warn!(
                %host, port, addresses = ?resolved,
                "outgoing HTTP denied: no resolved address is allowed (wildcard rules reach public \
                 addresses only; name the host exactly, or its IP, to reach a private one)"
            );
            return Err(ConnectError::Prohibited);
        }
        let mut last = ConnectError::NotFound;
        let mut stream = None;
        for addr in admitted {
            match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
                Ok(Ok(s)) => {
                    stream = Some(s);
                    break;
                }
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    last = ConnectError::Refused;
                }
                Ok(Err(e)) => last = ConnectError::Io(e),
                Err(_) => last = ConnectError::Timeout,
            }
        }
        let stream = stream.ok_or(last)?;
        let _ = stream.set_nodelay(true);
        match scheme {
            Scheme::Http => Ok(Conn(TokioIo::new(Box::new(stream)))),
            Scheme::Https => {
                let config = self.tls.clone().ok_or_else(|| {
                    ConnectError::Tls(std::io::Error::other("no TLS configuration"))
                })?;
                let name = rustls::pki_types::ServerName::try_from(host)
                    .map_err(|e| ConnectError::Tls(std::io::Error::other(e)))?;
                let tls = tokio_rustls::TlsConnector::from(config)
                    .connect(name, stream)
                    .await
                    .map_err(ConnectError::Tls)?;
                Ok(Conn(TokioIo::new(Box::new(tls))))
            }
        }
    }
}
/// Outgoing HTTP policy, the `wasi:http` hooks of a store: every request a guest sends is
/// checked against the allow-list before any DNS lookup or connection (step 1 above), then sent
/// through the component's pooled [`Outbound`] client (steps 2 and 3). A store hands it to
/// wasmtime-wasi-http through its `WasiHttpView`.
#[derive(Clone)]
pub struct OutgoingHttp {
    pub outbound: Arc<Outbound>,
    /// The tracer of the request this store handles now (set when the request starts; with
    /// concurrent reuse, the most recently started one), if traces are exported.
    pub tracer: Option<Arc<dyn OutgoingTracer>>,
    /// In-memory calls to the host's other workloads; `None` outside `weft up`.
    pub internal: Option<InternalCaller>,
    /// Where refused requests are reported as typed denials; `None` outside a workload.
    pub denials: Option<DenialReport>,
}

/// Where a component's refusals go as typed denials ([`LogSink::denied`]): the workload's log
/// sink, and the component's name.
#[derive(Clone)]
pub struct DenialReport {
    pub logs: LogSink,
    pub component: Arc<str>,
}

impl DenialReport {
    pub fn new(logs: &LogSink, component: &str) -> Self {
        DenialReport {
            logs: logs.clone(),
            component: component.into(),
        }
    }
}

impl std::fmt::Debug for DenialReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DenialReport")
            .field("component", &self.component)
            .finish_non_exhaustive()
    }
}

impl OutgoingHttp {
    pub fn new(allowed: AllowedHosts) -> Self {
        OutgoingHttp {
            outbound: Arc::new(Outbound::new(Arc::new(allowed))),
            tracer: None,
            internal: None,
            denials: None,
        }
    }

    /// With in-memory calls to the host's workloads (`NAME.weft.internal`).
    pub fn with_internal(mut self, internal: Option<InternalCaller>) -> Self {
        self.internal = internal;
        self
    }

    /// The same grants with an outgoing connection pool of its own, for another serving thread:
    /// a pooled connection is driven by the runtime that opened it, so a pool shared by two
    /// threads' runtimes would make one thread's requests wait on the other (and end with it).
    pub fn with_own_pool(&self) -> Self {
        OutgoingHttp {
            outbound: Arc::new(Outbound::new(Arc::clone(&self.outbound.allowed))),
            tracer: self.tracer.clone(),
            internal: self.internal.clone(),
            denials: self.denials.clone(),
        }
    }

    /// Reporting refused requests as typed denials (`weft dev` explains them).
    pub fn with_denials(mut self, denials: Option<DenialReport>) -> Self {
        self.denials = denials;
        self
    }

    /// Reports a request to `uri` the allow-list refused as a typed denial (once per component
    /// and destination; see [`LogSink::denied`]).
    pub fn report_denied(&self, uri: &Uri) {
        if let Some(d) = &self.denials
            && let Some((scheme, host, port)) = destination(uri)
        {
            d.logs.denied(
                &d.component,
                GrantRequest::outgoing_http(scheme, host, port),
            );
        }
    }

    /// Whether the allow-list lets a request to `uri` go out (by name; the connector checks the
    /// resolved addresses again). A `NAME.weft.internal` host needs a rule naming that space.
    pub fn admits(&self, uri: &Uri) -> bool {
        admits(self.outbound.allowed(), uri)
    }
}

/// [`OutgoingHttp::admits`] over an allow-list.
pub fn admits(allowed: &AllowedHosts, uri: &Uri) -> bool {
    match destination(uri) {
        Some((scheme, host, port))
            if weft_policy::internal::classify(host) != InternalHost::External =>
        {
            weft_policy::internal::allows(allowed, scheme, host, port)
        }
        _ => allowed.allows_uri(uri),
    }
}

/// A request URI's scheme (https when absent, as wasi:http), host (without brackets) and port.
fn destination(uri: &Uri) -> Option<(Scheme, &str, u16)> {
    let scheme = match uri.scheme_str() {
        None => Scheme::Https,
        Some(s) => Scheme::parse(s)?,
    };
    let authority = uri.authority()?;
    let host = authority.host();
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let port = authority.port_u16().unwrap_or(match scheme {
        Scheme::Http => 80,
        Scheme::Https => 443,
    });
    Some((scheme, host, port))
}

/// A response on its way from another workload's handler.
pub type InternalResponse = Pin<Box<dyn Future<Output = http::Response<WasiBody>> + Send>>;

/// Why the host did not hand an in-memory call to a workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InternalRefusal {
    /// No workload of that name runs on this host.
    NoSuchWorkload,
    /// The workload runs here but does not accept in-memory calls (`config.internal: deny`).
    NotAccepted,
}

/// The host's directory of workloads for in-memory calls, implemented above this crate
/// (weft-host knows the workloads; this crate only knows the trait).
pub trait InternalDirectory: Send + Sync {
    /// Starts serving `request` (already prepared by [`prepare_internal_request`]) with
    /// workload `target`'s handler. Errors of the handler come back as responses (5xx with a
    /// request id, as through the ingress); only the lookup can refuse.
    fn call(
        &self,
        target: &str,
        request: http::Request<WasiBody>,
    ) -> Result<InternalResponse, InternalRefusal>;
}

/// What a workload's stores need for in-memory calls: the directory, and who is calling.
#[derive(Clone)]
pub struct InternalCaller {
    pub directory: Arc<dyn InternalDirectory>,
    /// `NAMESPACE/NAME` of the calling workload: the `weft-caller` header the target sees.
    pub caller: Arc<str>,
    /// The calling workload's log buffer: refusals are logged there with their fix.
    pub logs: LogSink,
}

impl std::fmt::Debug for InternalCaller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InternalCaller")
            .field("caller", &self.caller)
            .finish_non_exhaustive()
    }
}

/// The header naming the calling workload (`NAMESPACE/NAME`) on an in-memory call. The host
/// sets it; the ingress removes it from external requests, so the target can trust it.
pub const CALLER_HEADER: &str = "weft-caller";

/// Hop-by-hop headers (RFC 9110 §7.6.1), which a proxy does not forward.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Makes `request` look as an HTTP/1.1 client's would after the ingress: the target in origin
/// form (`/PATH?QUERY`), `Host` set to the authority the caller wrote, hop-by-hop headers (and
/// any header `Connection` names) removed, and [`CALLER_HEADER`] set to `caller`, replacing
/// whatever the guest wrote.
pub fn prepare_internal_request(
    mut request: http::Request<WasiBody>,
    caller: &str,
) -> Result<http::Request<WasiBody>, Error> {
    let authority = request
        .uri()
        .authority()
        .cloned()
        .ok_or(Error::HttpRequestUriInvalid)?;
    let path = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    *request.uri_mut() = Uri::try_from(path).map_err(|_| Error::HttpRequestUriInvalid)?;
    let headers = request.headers_mut();
    let named: Vec<String> = headers
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect();
    for name in HOP_BY_HOP
        .iter()
        .copied()
        .chain(named.iter().map(String::as_str))
    {
        headers.remove(name);
    }
    headers.remove(http::header::HOST);
    let host = http::HeaderValue::from_str(authority.as_str())
        .map_err(|_| Error::HttpRequestUriInvalid)?;
    headers.insert(http::header::HOST, host);
    let caller = http::HeaderValue::from_str(caller).map_err(|_| Error::HttpRequestUriInvalid)?;
    headers.insert(CALLER_HEADER, caller);
    Ok(request)
}

/// Traces the outgoing requests made while handling one ingress request: the host implements it
/// (weft-host's `trace`, over OpenTelemetry), so this crate stays free of any tracing backend.
pub trait OutgoingTracer: Send + Sync {
    /// Starts the client span of `request` and writes its trace-context headers
    /// (`traceparent`) into it, replacing any the guest set.
    fn start(&self, request: &mut http::Request<WasiBody>) -> Box<dyn OutgoingSpan>;
    /// Starts an internal span named `name` under the request's span, for a host-interface
    /// call the guest makes while handling it (`keyvalue.get`, ...), with string attributes.
    fn span(&self, name: &'static str, attributes: &[(&'static str, &str)]) -> Box<dyn HostSpan>;
    /// Starts the producer span `name` (`messaging.publish`, `messaging.request`) of a message
    /// the guest sends to `subject`, and writes its trace context (`traceparent`) into the
    /// message's `headers`, replacing any there, so the consumer continues the trace. The
    /// default: an internal span, no header.
    fn message(
        &self,
        name: &'static str,
        subject: &str,
        headers: &mut Vec<(String, String)>,
    ) -> Box<dyn HostSpan> {
        let _ = headers;
        self.span(name, &[("messaging.destination.name", subject)])
    }
}

/// Starts traces for work that does not come from an ingress request: a message delivered to
/// a workload's handler. The host implements it (weft-host's `trace`); `None` from a method:
/// traces are off.
pub trait TraceRoots: Send + Sync {
    /// The consumer span `messaging.process` of a message delivered to `workload` on
    /// `subject`: a child of the span its `traceparent` header names, if any, else a new
    /// trace's root. Returns the tracer the handler's own host calls (publish, keyvalue,
    /// outgoing HTTP) go under, and the span, ended by the caller with the outcome.
    fn message(
        &self,
        workload: &str,
        subject: &str,
        headers: &[(String, String)],
    ) -> Option<(Arc<dyn OutgoingTracer>, Box<dyn HostSpan>)>;

    /// The tracer of a long-lived service's own work (what `run` does, outside any request):
    /// each outgoing request or host call is the root span of a new trace, with
    /// `weft.workload` and `weft.service` attributes.
    fn service(&self, workload: &str, service: &str) -> Option<Arc<dyn OutgoingTracer>>;
}

/// One host-interface call's span, ended with the error the guest gets, if any.
pub trait HostSpan: Send {
    fn end(self: Box<Self>, error: Option<String>);
}

/// One outgoing request's span, ended with the response status or the wasi:http error code
/// the guest gets (its name, e.g. `ConnectionRefused`).
pub trait OutgoingSpan: Send {
    fn end(self: Box<Self>, outcome: Result<u16, String>);
}

/// Carries an ingress request's [`OutgoingTracer`] in the request's extensions to the store
/// that handles it (`http::HttpService::handle` takes it out).
#[derive(Clone)]
pub struct RequestTracer(pub Arc<dyn OutgoingTracer>);

impl wasmtime_wasi_http::WasiHttpHooks for OutgoingHttp {
    fn send_request(
        &mut self,
        request: http::Request<wasmtime_wasi_http::WasiBody>,
        options: Option<wasmtime_wasi_http::RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
    ) -> Box<
        dyn Future<
                Output = Result<
                    (
                        http::Response<wasmtime_wasi_http::WasiBody>,
                        Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
                    ),
                    wasmtime_wasi_http::Error,
                >,
            > + Send,
    > {
        drop(fut);
        if !self.admits(request.uri()) {
            let uri = request.uri().clone();
            tracing::warn!(
                %uri,
                "outgoing HTTP request denied: no allowed host matches (grant it with --allow-host HOST:PORT)"
            );
            if let Some(internal) = &self.internal {
                let hint = match request.uri().host().map(weft_policy::internal::classify) {
                    Some(InternalHost::Workload(name)) => format!(
                        " (hint: add `{name}.weft.internal` or `*.weft.internal` to \
                         localResources.allowedHosts; `*` does not reach other workloads)"
                    ),
                    _ => " (hint: add the host to localResources.allowedHosts)".to_string(),
                };
                internal.logs.push(
                    "weft",
                    "outgoing-http",
                    &format!("request to {uri} denied: no allow rule matches{hint}"),
                );
            }
            self.report_denied(&uri);
            return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) });
        }
        let mut request = request;
        let span = self.tracer.as_ref().map(|t| t.start(&mut request));
        let target = request.uri().host().map(weft_policy::internal::classify);
        if let Some(target) = target.filter(|t| *t != InternalHost::External) {
            let internal = self.internal.clone();
            return Box::new(async move {
                let first_byte = options
                    .and_then(|o| o.first_byte_timeout)
                    .unwrap_or(FIRST_BYTE_TIMEOUT);
                let result = call_internal(internal, target, request, first_byte).await;
                if let Some(span) = span {
                    span.end(match &result {
                        Ok(r) => Ok(r.status().as_u16()),
                        Err(e) => Err(format!("{e:?}")),
                    });
                }
                Ok((
                    result?,
                    Box::new(async { Ok(()) }) as Box<dyn Future<Output = _> + Send>,
                ))
            });
        }
        let outbound = Arc::clone(&self.outbound);
        Box::new(async move {
            let result = outbound.send(request, options).await;
            if let Some(span) = span {
                span.end(match &result {
                    Ok(r) => Ok(r.status().as_u16()),
                    Err(e) => Err(format!("{e:?}")),
                });
            }
            let response = result?;
            Ok((
                response,
                Box::new(async { Ok(()) }) as Box<dyn Future<Output = _> + Send>,
            ))
        })
    }
}

/// Hands a request for `NAME.weft.internal` to the host's directory, logging refusals on the
/// caller's log with their fix.
async fn call_internal(
    internal: Option<InternalCaller>,
    target: InternalHost,
    request: http::Request<WasiBody>,
    first_byte: Duration,
) -> Result<http::Response<WasiBody>, Error> {
    let uri = request.uri().clone();
    let Some(internal) = internal else {
        tracing::warn!(%uri, "in-memory call refused: this process has no workload directory (NAME.weft.internal is served by `weft up`)");
        return Err(Error::DestinationNotFound);
    };
    let refuse = |code: Error, why: &str| {
        internal.logs.push(
            "weft",
            "outgoing-http",
            &format!("in-memory call to {uri} refused: {why}"),
        );
        Err(code)
    };
    let name = match target {
        InternalHost::Workload(name) => name,
        _ => {
            return refuse(
                Error::DestinationNotFound,
                "not a workload name (hint: call http://NAME.weft.internal/ with NAME a \
                 workload's metadata.name)",
            );
        }
    };
    let request = prepare_internal_request(request, &internal.caller)?;
    let response = match internal.directory.call(&name, request) {
        Ok(r) => r,
        Err(InternalRefusal::NoSuchWorkload) => {
            return refuse(
                Error::DestinationNotFound,
                &format!("no workload `{name}` runs on this host (hint: `weft get workloads`)"),
            );
        }
        Err(InternalRefusal::NotAccepted) => {
            return refuse(
                Error::ConnectionRefused,
                &format!(
                    "workload `{name}` does not accept in-memory calls (hint: set `internal: \
                     allow` or `internal: only` in the config of its wasi:http grant)"
                ),
            );
        }
    };
    tokio::time::timeout(first_byte, response)
        .await
        .map_err(|_| Error::ConnectionReadTimeout)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn empty() -> WasiBody {
        http_body_util::Empty::new()
            .map_err(|never| match never {})
            .boxed_unsync()
    }

    #[test]
    fn internal_requests_look_like_ingress_requests() {
        let request = http::Request::builder()
            .uri("http://Orders.weft.internal:8080/a/b?x=1")
            .header("connection", "keep-alive, x-secret")
            .header("x-secret", "drop me")
            .header("keep-alive", "timeout=5")
            .header("transfer-encoding", "chunked")
            .header("weft-caller", "forged/by-guest")
            .header("host", "elsewhere.example")
            .header("x-kept", "yes")
            .body(empty())
            .expect("request");
        let out = prepare_internal_request(request, "default/front").expect("prepared");
        assert_eq!(out.uri(), "/a/b?x=1");
        let h = out.headers();
        assert_eq!(h["host"], "Orders.weft.internal:8080");
        assert_eq!(h["weft-caller"], "default/front");
        assert_eq!(h.get_all("weft-caller").iter().count(), 1);
        assert_eq!(h["x-kept"], "yes");
        for gone in ["connection", "x-secret", "keep-alive", "transfer-encoding"] {
            assert!(h.get(gone).is_none(), "{gone} was forwarded");
        }
        let bare = http::Request::builder()
            .uri("http://b.weft.internal")
            .body(empty())
            .expect("request");
        assert_eq!(
            prepare_internal_request(bare, "ns/a")
                .expect("prepared")
                .uri(),
            "/"
        );
    }

    #[test]
    fn internal_names_need_a_rule_that_names_them() {
        let allowed = |rules: &[&str]| AllowedHosts::parse(rules).expect("rules");
        let uri = |u: &str| u.parse::<Uri>().expect("uri");
        assert!(!admits(&allowed(&["*"]), &uri("http://b.weft.internal/")));
        assert!(admits(&allowed(&["*"]), &uri("http://example.com/")));
        assert!(admits(
            &allowed(&["b.weft.internal"]),
            &uri("http://b.weft.internal/")
        ));
        assert!(admits(
            &allowed(&["*.weft.internal"]),
            &uri("https://b.weft.internal/x")
        ));
        assert!(!admits(
            &allowed(&["*.weft.internal"]),
            &uri("http://b.weft.internal:81/")
        ));
        // Not a workload name: only a rule naming the space admits it (the call is then refused
        // in memory, never resolved).
        assert!(!admits(&allowed(&["*"]), &uri("http://a.b.weft.internal/")));
        assert!(!admits(&allowed(&["*"]), &uri("http://weft.internal/")));
    }
}
