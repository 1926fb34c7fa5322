//! The HTTP front: an accept loop over hyper with bounded connections and graceful shutdown
//! (stop accepting, let in-flight requests finish, close idle keep-alive connections).

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

/// Default cap on open client connections.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;

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

/// Turns a handler failure into a response with a short plain-text body.
pub fn error_response(err: &HandleError) -> http::Response<WasiBody> {
    let status = err.status();
    text_response(status, format!("{} {}\n", status.as_u16(), err))
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
pub struct ComponentHandler(pub HttpService);

impl Handler for ComponentHandler {
    async fn handle(&self, request: http::Request<WasiBody>) -> http::Response<WasiBody> {
        match self.0.handle(request).await {
            Ok(r) => r,
            Err(err) => {
                tracing::warn!(error = %err, "request failed");
                error_response(&err)
            }
        }
    }
    fn close(&self) {
        self.0.close();
    }
}

/// Converts a hyper request into the body type wasmtime-wasi-http consumes.
pub fn into_wasi_request(req: http::Request<Incoming>) -> http::Request<WasiBody> {
    req.map(|body| body.map_err(wasmtime_wasi_http_error).boxed_unsync())
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
    let connections = Arc::new(Semaphore::new(max_connections.max(1)));
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
            .serve_connection(
                TokioIo::new(stream),
                hyper::service::service_fn(move |req| {
                    let service = service.clone();
                    async move { Ok::<_, Infallible>(service.handle(into_wasi_request(req)).await) }
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
