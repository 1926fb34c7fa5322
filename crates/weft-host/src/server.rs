//! The HTTP front: an accept loop over hyper with bounded connections and graceful shutdown
//! (stop accepting, let in-flight requests finish, close idle keep-alive connections).
//!
//! Limits on what a client may send before any handler runs ([`ServerLimits`]): a request head
//! must arrive within the header read timeout (slow headers get the connection closed), have at
//! most 100 header lines and 64 KiB (431 past either). hyper refuses the rest of the hostile
//! shapes itself (conflicting `Content-Length`, `Content-Length` with `Transfer-Encoding`,
//! obs-fold, NUL and other control bytes: 400 and the connection closed); the front door then
//! checks RFC 9112's `Host` rules (`crate::front::admit`). Every request gets an
//! `x-request-id` (the client's when sane), passed to the guest and set on the response.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use weft_runtime::WasiBody;
use weft_runtime::http::{HandleError, HttpService};

use crate::front::{REQUEST_ID_HEADER, RequestId};

/// Default cap on open client connections.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// Default time a client has to send a whole request head.
pub const DEFAULT_HEADER_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// Most header lines in a request head (more: 431).
pub const MAX_HEADERS: usize = 100;
/// Largest request head, start line included (larger: 431).
pub const MAX_HEADER_BYTES: usize = 64 << 10;

/// What a client may do to the server before a handler sees its request.
#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    /// Client connections open at once; more wait in the listen backlog.
    pub max_connections: usize,
    /// Time to send a request head; past it the connection is closed.
    pub header_read_timeout: std::time::Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
        }
    }
}

/// Binds `addr` with `SO_REUSEADDR` (so a restarted server can rebind while old connections
/// sit in TIME_WAIT).
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// Turns a handler failure into a short, generic response that carries the request id; the
/// failure itself belongs in the log line with that id.
pub fn error_response(err: &HandleError, id: &RequestId) -> http::Response<WasiBody> {
    let mut response = crate::front::generic_error(err.status(), id);
    if err.status() == http::StatusCode::SERVICE_UNAVAILABLE {
        // Overloaded, draining, or the instance was retired: worth retrying soon.
        response.headers_mut().insert(
            http::header::RETRY_AFTER,
            http::HeaderValue::from_static("1"),
        );
    }
    response
}

/// A response with a body of `bytes` and the given content type.
pub fn bytes_response(
    status: http::StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> http::Response<WasiBody> {
    let mut response = http::Response::new(
        Full::new(body.into())
            .map_err(|never: Infallible| match never {})
            .boxed_unsync(),
    );
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    response
}

/// A plain-text response.
pub fn text_response(status: http::StatusCode, body: String) -> http::Response<WasiBody> {
    bytes_response(status, "text/plain; charset=utf-8", body)
}

/// Something that answers HTTP requests: a served component, the workload host's ingress,
/// the admin API.
pub trait Handler: Clone + Send + Sync + 'static {
    fn handle(
        &self,
        request: http::Request<WasiBody>,
    ) -> impl Future<Output = http::Response<WasiBody>> + Send;
    /// Stop taking new work (called when shutdown starts).
    fn close(&self) {}
}

/// `weft serve`: one component.
#[derive(Clone)]
pub struct ComponentHandler {
    service: HttpService,
    /// Headers set on every request before the component sees it (`--header`).
    headers: Arc<Vec<(http::HeaderName, http::HeaderValue)>>,
}

impl ComponentHandler {
    pub fn new(service: HttpService) -> Self {
        ComponentHandler {
            service,
            headers: Arc::new(Vec::new()),
        }
    }

    /// Replaces (or adds) these request headers on every request, as `wasmtime serve -H`:
    /// the client's values of each name are removed, then every given value appended.
    pub fn with_request_headers(
        mut self,
        headers: Vec<(http::HeaderName, http::HeaderValue)>,
    ) -> Self {
        self.headers = Arc::new(headers);
        self
    }
}

impl Handler for ComponentHandler {
    async fn handle(&self, request: http::Request<WasiBody>) -> http::Response<WasiBody> {
        let id = RequestId::of(&request);
        if let Err(refusal) = crate::front::admit(&request) {
            tracing::info!(request_id = %id, reason = %refusal, "request refused");
            return crate::front::refusal_response(&refusal, &id);
        }
        let mut request = request;
        for (name, _) in self.headers.iter() {
            request.headers_mut().remove(name);
        }
        for (name, value) in self.headers.iter() {
            request.headers_mut().append(name.clone(), value.clone());
        }
        match self.service.handle(request).await {
            Ok(r) => r,
            Err(err) => {
                tracing::warn!(request_id = %id, status = err.status().as_u16(), error = %err, "request failed");
                error_response(&err, &id)
            }
        }
    }
    fn close(&self) {
        self.service.close();
    }
}

/// Converts a hyper request into the body type wasmtime-wasi-http consumes, with the scheme
/// and authority the client addressed (see [`with_origin`]).
pub fn into_wasi_request(req: http::Request<Incoming>) -> http::Request<WasiBody> {
    let mut req = req.map(|body| body.map_err(wasmtime_wasi_http_error).boxed_unsync());
    with_origin(&mut req);
    req
}

/// Completes an origin-form request target (`/path?query`, what HTTP/1.1 clients send) with
/// the scheme and authority the client addressed: `http` (this front end speaks plain HTTP)
/// and the `Host` header. A WASI 0.3 handler reads them from `request.get-scheme` and
/// `get-authority`, which wasmtime-wasi-http takes from the URI alone (a WASI 0.2 handler gets
/// them from the `Host` header either way). An absolute-form target keeps what the client
/// sent; a missing or malformed `Host` leaves the authority unset.
pub fn with_origin<B>(req: &mut http::Request<B>) {
    if req.uri().scheme().is_some() || req.uri().authority().is_some() {
        return;
    }
    let Some(authority) = req
        .headers()
        .get(http::header::HOST)
        .and_then(|h| http::uri::Authority::try_from(h.as_bytes()).ok())
    else {
        return;
    };
    let mut parts = req.uri().clone().into_parts();
    parts.scheme = Some(http::uri::Scheme::HTTP);
    parts.authority = Some(authority);
    if parts.path_and_query.is_none() {
        parts.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
    }
    if let Ok(uri) = http::Uri::from_parts(parts) {
        *req.uri_mut() = uri;
    }
}

fn wasmtime_wasi_http_error(err: hyper::Error) -> weft_runtime::http::BodyError {
    err.into()
}

/// Serves `service` on `listener` until `shutdown` resolves, then drains.
pub async fn serve<H: Handler>(
    listener: TcpListener,
    service: H,
    max_connections: usize,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let limits = ServerLimits {
        max_connections,
        ..ServerLimits::default()
    };
    serve_with(listener, service, limits, shutdown).await
}

/// [`serve`] with every limit given.
pub async fn serve_with<H: Handler>(
    listener: TcpListener,
    service: H,
    limits: ServerLimits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let connections = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            p = connections.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(err) => {
                    // EMFILE and friends: back off briefly rather than spin.
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let service = service.clone();
        let conn = hyper::server::conn::http1::Builder::new()
            .keep_alive(true)
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .max_headers(MAX_HEADERS)
            .max_header_size(MAX_HEADER_BYTES)
            .serve_connection(
                TokioIo::new(stream),
                hyper::service::service_fn(move |req| {
                    let service = service.clone();
                    async move { Ok::<_, Infallible>(handle_one(&service, req).await) }
                }),
            );
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(err) = conn.await {
                tracing::debug!(%peer, error = %err, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    service.close();
    tracing::info!("shutting down: waiting for in-flight requests");
    graceful.shutdown().await;
    Ok(())
}

/// One request: its id in, through the handler, its id out.
async fn handle_one<H: Handler>(
    service: &H,
    request: http::Request<Incoming>,
) -> http::Response<WasiBody> {
    let id = RequestId::for_request(&request);
    // A response to HEAD keeps the guest's own framing headers: no gathering (an exact size
    // would become a `Content-Length` that describes no body).
    let head = request.method() == http::Method::HEAD;
    let mut request = into_wasi_request(request);
    request
        .headers_mut()
        .insert(REQUEST_ID_HEADER, id.header_value());
    request.extensions_mut().insert(id.clone());
    let mut response = service.handle(request).await;
    response
        .headers_mut()
        .insert(REQUEST_ID_HEADER, id.header_value());
    // A body that fails mid-stream (trap, deadline, body limit) aborts the connection (hyper
    // writes no terminating chunk and closes it); the event is logged with the request id.
    let status = response.status().as_u16();
    let (parts, body) = response.into_parts();
    // Nor do statuses that carry no body (1xx, 204, 304): their framing headers stay the
    // guest's.
    let bodiless = parts.status.is_informational()
        || parts.status == http::StatusCode::NO_CONTENT
        || parts.status == http::StatusCode::NOT_MODIFIED;
    let body = if head || bodiless {
        body
    } else {
        crate::gather::gather(body).await
    };
    let body = body
        .map_err(move |e| {
            tracing::warn!(request_id = %id, status, error = %e, "response aborted: its body failed mid-stream");
            e
        })
        .boxed_unsync();
    http::Response::from_parts(parts, body)
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let term = signal(SignalKind::terminate());
        let int = signal(SignalKind::interrupt());
        match (term, int) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {},
                    _ = int.recv() => {},
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn request(target: &str, host: Option<&[u8]>) -> http::Request<()> {
        let mut b = http::Request::builder().uri(target);
        if let Some(h) = host {
            b = b.header(http::header::HOST, h);
        }
        b.body(()).expect("request")
    }

    #[test]
    fn origin_form_gets_scheme_and_authority_from_host() {
        let mut req = request("/whoami?x=1", Some(b"example.com:8080"));
        with_origin(&mut req);
        assert_eq!(req.uri().scheme_str(), Some("http"));
        assert_eq!(
            req.uri().authority().map(|a| a.as_str()),
            Some("example.com:8080")
        );
        assert_eq!(
            req.uri().path_and_query().map(|p| p.as_str()),
            Some("/whoami?x=1")
        );
    }

    #[test]
    fn absolute_form_and_bad_hosts_are_left_alone() {
        let mut req = request("https://a.example/p", Some(b"b.example"));
        with_origin(&mut req);
        assert_eq!(req.uri().to_string(), "https://a.example/p");
        for host in [None, Some(&b""[..]), Some(&b"a b"[..]), Some(&b"x/y"[..])] {
            let mut req = request("/p", host);
            with_origin(&mut req);
            assert_eq!(req.uri().to_string(), "/p", "host {host:?}");
        }
    }

    proptest! {
        /// Any Host header: never panics; the path and query never change; the authority is
        /// the Host header exactly when that parses as one.
        #[test]
        fn origin_keeps_the_target_and_takes_only_a_valid_host(
            path in "/[a-zA-Z0-9/._~%-]{0,20}(\\?[a-z0-9=&]{0,10})?",
            host in prop::collection::vec(any::<u8>(), 0..24),
        ) {
            let Ok(value) = http::HeaderValue::from_bytes(&host) else {
                return Ok(());
            };
            let mut req = request(&path, None);
            req.headers_mut().insert(http::header::HOST, value);
            with_origin(&mut req);
            prop_assert_eq!(req.uri().path_and_query().map(|p| p.as_str()), Some(path.as_str()));
            match http::uri::Authority::try_from(host.as_slice()) {
                Ok(a) => {
                    prop_assert_eq!(req.uri().scheme_str(), Some("http"));
                    prop_assert_eq!(req.uri().authority(), Some(&a));
                }
                Err(_) => prop_assert!(req.uri().authority().is_none()),
            }
        }
    }
}
