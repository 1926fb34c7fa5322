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
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
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

    /// The same handler with a worker pool of its own, for another serving thread
    /// ([`serve_on_threads`]).
    pub fn replica(&self) -> Self {
        ComponentHandler {
            service: self.service.replica(),
            headers: self.headers.clone(),
        }
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
    while let Some((stream, peer, permit)) =
        accept_next(&listener, &connections, shutdown.as_mut()).await
    {
        spawn_connection(&graceful, stream, peer, service.clone(), limits, permit);
    }
    drop(listener);
    service.close();
    tracing::info!("shutting down: waiting for in-flight requests");
    graceful.shutdown().await;
    Ok(())
}

/// Serves on one thread per handler (`weft serve --threads`; docs/architecture.md, "`weft
/// serve` on threads"): the calling task only accepts, and hands each connection to the thread
/// with the fewest open connections, which keeps it to the end. Each thread runs a
/// single-threaded runtime of its own. So a connection, the requests it carries and the
/// instances that answer them (each handler has its own worker pool:
/// [`weft_runtime::http::HttpService::replica`]) stay on one thread, and a request costs no
/// wake-up of another thread; a busy thread never delays the accepting. The connection cap is
/// shared. On `shutdown` every thread stops taking connections, closes its handler and lets
/// its connections finish; this returns when all have.
pub async fn serve_on_threads<H: Handler>(
    listener: TcpListener,
    handlers: Vec<H>,
    limits: ServerLimits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    if handlers.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "serving needs at least one thread",
        ));
    }
    let loads: Arc<[AtomicUsize]> = handlers.iter().map(|_| AtomicUsize::new(0)).collect();
    let mut lanes = Vec::with_capacity(handlers.len());
    let mut finished = Vec::with_capacity(handlers.len());
    for (index, handler) in handlers.into_iter().enumerate() {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        lanes.push(tx);
        let (done, finish) = tokio::sync::oneshot::channel::<()>();
        finished.push(finish);
        // Should a thread fail to start, returning drops the lanes, and the threads already
        // started end.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        std::thread::Builder::new()
            .name(format!("weft-serve-{index}"))
            .spawn(move || {
                rt.block_on(lane(rx, handler, limits));
                // Blocking work a guest left behind is not waited for (as `weft run`).
                rt.shutdown_background();
                let _ = done.send(());
            })?;
    }
    let connections = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let mut shutdown = std::pin::pin!(shutdown);
    let mut ended = vec![false; lanes.len()];
    let mut result = Ok(());
    'accept: while let Some((stream, peer, permit)) =
        accept_next(&listener, &connections, shutdown.as_mut()).await
    {
        // Moved as a std stream: it is registered with the receiving thread's reactor there.
        let stream = match stream.into_std() {
            Ok(s) => s,
            Err(err) => {
                tracing::warn!(%peer, error = %err, "cannot hand the connection over");
                continue;
            }
        };
        let mut handoff = (stream, peer, permit);
        loop {
            let index = pick_lane(loads.len(), |i| {
                if ended[i] {
                    usize::MAX
                } else {
                    loads[i].load(Ordering::Relaxed)
                }
            });
            if ended[index] {
                result = Err(std::io::Error::other("every serving thread has ended"));
                break 'accept;
            }
            let counted = Counted::new(&loads, index);
            let (stream, peer, permit) = handoff;
            match lanes[index].send((stream, peer, permit, counted)) {
                Ok(()) => break,
                Err(tokio::sync::mpsc::error::SendError((stream, peer, permit, _))) => {
                    // A thread ends only by panicking: take the others.
                    tracing::error!(thread = index, "a serving thread has ended");
                    ended[index] = true;
                    handoff = (stream, peer, permit);
                }
            }
        }
    }
    drop(listener);
    tracing::info!("shutting down: waiting for in-flight requests");
    // Closing the lanes tells each thread to close its handler and drain.
    drop(lanes);
    for finish in finished {
        let _ = finish.await;
    }
    result
}

/// A connection handed to a serving thread, with its place under the connection cap and on its
/// thread's count (both given back when the connection ends).
type Handoff = (
    std::net::TcpStream,
    SocketAddr,
    OwnedSemaphorePermit,
    Counted,
);

/// One open connection on a thread's count.
struct Counted {
    loads: Arc<[AtomicUsize]>,
    index: usize,
}

impl Counted {
    fn new(loads: &Arc<[AtomicUsize]>, index: usize) -> Self {
        loads[index].fetch_add(1, Ordering::Relaxed);
        Counted {
            loads: loads.clone(),
            index,
        }
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.loads[self.index].fetch_sub(1, Ordering::Relaxed);
    }
}

/// One serving thread: serves the connections handed to it until the accept loop closes the
/// lane, then closes its handler and lets its connections finish.
async fn lane<H: Handler>(
    mut handoffs: tokio::sync::mpsc::UnboundedReceiver<Handoff>,
    service: H,
    limits: ServerLimits,
) {
    let graceful = GracefulShutdown::new();
    while let Some((stream, peer, permit, counted)) = handoffs.recv().await {
        match tokio::net::TcpStream::from_std(stream) {
            Ok(stream) => spawn_connection(
                &graceful,
                stream,
                peer,
                service.clone(),
                limits,
                (permit, counted),
            ),
            Err(err) => tracing::warn!(%peer, error = %err, "cannot take the connection over"),
        }
    }
    service.close();
    graceful.shutdown().await;
}

/// The thread for a new connection: the first of those with the fewest open connections. Ties
/// go to the lowest index, so under light load (connections one at a time) the first thread
/// takes almost all of them and its instances stay warm, while the others' idle instances
/// expire. (A connection is counted until its thread has seen it close, so one opened right
/// after another closed may still go to the next thread.)
fn pick_lane(lanes: usize, load: impl Fn(usize) -> usize) -> usize {
    let mut best = 0;
    let mut best_load = load(0);
    for i in 1..lanes {
        let l = load(i);
        if l < best_load {
            best = i;
            best_load = l;
        }
    }
    best
}

/// Waits for a place under the connection cap and the next connection; `None` once `shutdown`
/// resolves (or the cap's semaphore is closed).
async fn accept_next(
    listener: &TcpListener,
    connections: &Arc<Semaphore>,
    mut shutdown: std::pin::Pin<&mut impl Future<Output = ()>>,
) -> Option<(tokio::net::TcpStream, SocketAddr, OwnedSemaphorePermit)> {
    loop {
        let permit = tokio::select! {
            _ = &mut shutdown => return None,
            p = connections.clone().acquire_owned() => p.ok()?,
        };
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => return None,
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
        return Some((stream, peer, permit));
    }
}

/// Serves one connection on the current runtime; `hold` (its permit, its count) is dropped
/// when the connection ends.
fn spawn_connection<H: Handler>(
    graceful: &GracefulShutdown,
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    service: H,
    limits: ServerLimits,
    hold: impl Send + 'static,
) {
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
        drop(hold);
    });
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

    /// Answers with the name of the thread that ran the handler; `/slow` waits 300 ms first.
    #[derive(Clone)]
    struct WhichThread;

    impl Handler for WhichThread {
        async fn handle(&self, request: http::Request<WasiBody>) -> http::Response<WasiBody> {
            if request.uri().path() == "/slow" {
                tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            }
            let name = std::thread::current().name().unwrap_or("").to_string();
            text_response(http::StatusCode::OK, name)
        }
    }

    /// Sends `GET path` on `stream` and reads the response: its status and body.
    async fn get(stream: &mut tokio::net::TcpStream, path: &str) -> (u16, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let request = format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n");
        stream.write_all(request.as_bytes()).await.expect("write");
        let mut buf = Vec::new();
        loop {
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await.expect("read");
            assert!(n > 0, "connection closed before a whole response: {buf:?}");
            buf.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&buf).to_string();
            let Some(end) = text.find("\r\n\r\n") else {
                continue;
            };
            let head = &text[..end];
            let length: usize = head
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse().ok())?
                })
                .expect("a content-length");
            if buf.len() >= end + 4 + length {
                let status = head[9..12].parse().expect("status");
                return (status, text[end + 4..end + 4 + length].to_string());
            }
        }
    }

    /// A current-thread runtime, as `weft serve`'s.
    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    }

    /// Serves `WhichThread` on `threads` threads on a loopback port until the sender is used.
    fn start(
        threads: usize,
        limits: ServerLimits,
    ) -> (
        SocketAddr,
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<std::io::Result<()>>,
    ) {
        let listener = bind("127.0.0.1:0".parse().expect("addr")).expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve_on_threads(
            listener,
            vec![WhichThread; threads],
            limits,
            async move {
                let _ = stopped.await;
            },
        ));
        (addr, stop, server)
    }

    #[test]
    fn connections_are_spread_over_the_threads_and_stay_on_theirs() {
        runtime().block_on(async {
            let (addr, stop, server) = start(3, ServerLimits::default());
            let mut conns = Vec::new();
            let mut names = Vec::new();
            for _ in 0..3 {
                let mut c = tokio::net::TcpStream::connect(addr).await.expect("connect");
                let (status, name) = get(&mut c, "/").await;
                assert_eq!(status, 200);
                names.push(name);
                conns.push(c);
            }
            // Three open connections, three threads: one each.
            assert_eq!(names, ["weft-serve-0", "weft-serve-1", "weft-serve-2"]);
            // Each keeps its thread for its next requests.
            for _ in 0..3 {
                for (c, name) in conns.iter_mut().zip(&names) {
                    assert_eq!(&get(c, "/").await.1, name);
                }
            }
            let _ = stop.send(());
            server.await.expect("join").expect("serve");
        });
    }

    #[test]
    fn shutdown_lets_a_request_in_flight_on_another_thread_finish() {
        runtime().block_on(async {
            let (addr, stop, server) = start(2, ServerLimits::default());
            let mut first = tokio::net::TcpStream::connect(addr).await.expect("connect");
            get(&mut first, "/").await;
            let mut second = tokio::net::TcpStream::connect(addr).await.expect("connect");
            let slow = tokio::spawn(async move { get(&mut second, "/slow").await });
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            let _ = stop.send(());
            let (status, name) = slow.await.expect("join");
            assert_eq!((status, name.as_str()), (200, "weft-serve-1"));
            server.await.expect("join").expect("serve");
            // Stopped: nobody accepts any more.
            assert!(tokio::net::TcpStream::connect(addr).await.is_err());
        });
    }

    #[test]
    fn the_connection_cap_is_shared_by_the_threads() {
        runtime().block_on(async {
            let limits = ServerLimits {
                max_connections: 1,
                ..ServerLimits::default()
            };
            let (addr, stop, server) = start(2, limits);
            let mut first = tokio::net::TcpStream::connect(addr).await.expect("connect");
            assert_eq!(get(&mut first, "/").await.0, 200);
            // The second waits in the backlog while the first is open, though a thread is idle.
            let mut second = tokio::net::TcpStream::connect(addr).await.expect("connect");
            let waiting = tokio::spawn(async move {
                let answer = get(&mut second, "/").await;
                (answer, std::time::Instant::now())
            });
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            assert!(
                !waiting.is_finished(),
                "a second connection was served past the cap"
            );
            let closed = std::time::Instant::now();
            drop(first);
            let ((status, _), answered) = waiting.await.expect("join");
            assert_eq!(status, 200);
            assert!(answered >= closed);
            let _ = stop.send(());
            server.await.expect("join").expect("serve");
        });
    }

    #[test]
    fn serving_needs_a_thread() {
        runtime().block_on(async {
            let listener = bind("127.0.0.1:0".parse().expect("addr")).expect("bind");
            let err = serve_on_threads::<WhichThread>(
                listener,
                Vec::new(),
                ServerLimits::default(),
                async {},
            )
            .await
            .expect_err("no handlers");
            assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
        });
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

        /// The chosen thread is the first of those with the fewest open connections.
        #[test]
        fn a_new_connection_goes_to_the_first_least_loaded_thread(
            loads in prop::collection::vec(0usize..5, 1..9),
        ) {
            let pick = pick_lane(loads.len(), |i| loads[i]);
            prop_assert!(pick < loads.len());
            let least = *loads.iter().min().expect("non-empty");
            prop_assert_eq!(loads[pick], least);
            prop_assert!(loads[..pick].iter().all(|&l| l > least));
        }
    }
}
