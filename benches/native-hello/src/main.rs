//! The native baseline of `benches/awfy.sh`: answers every request with the same body and
//! content type as the `http-hello` guest (`Hello from weft!\n`, `text/plain`), over hyper
//! HTTP/1.1 with keep-alive and `TCP_NODELAY`, on tokio's multi-threaded runtime: what the
//! WebAssembly servers would cost with no WebAssembly at all.
//!
//! `native-hello [ADDR]` (default `127.0.0.1:0`) prints `Serving HTTP on http://ADDR/` to
//! stderr when it is ready, and stops on SIGINT or SIGTERM.

use std::convert::Infallible;
use std::net::SocketAddr;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::TokioIo;

const BODY: &[u8] = b"Hello from weft!\n";

fn main() -> anyhow::Result<()> {
    let addr: SocketAddr = match std::env::args().nth(1) {
        Some(a) => a
            .parse()
            .with_context(|| format!("`{a}` is not an address like 127.0.0.1:8080"))?,
        None => SocketAddr::from(([127, 0, 0, 1], 0)),
    };
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?
        .block_on(serve(addr))
}

async fn serve(addr: SocketAddr) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    eprintln!("Serving HTTP on http://{}/", listener.local_addr()?);
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    eprintln!("accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = tokio::signal::ctrl_c() => return Ok(()),
            _ = term.recv() => return Ok(()),
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(|_request| async {
                let mut response = http::Response::new(Full::new(Bytes::from_static(BODY)));
                response.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("text/plain"),
                );
                Ok::<_, Infallible>(response)
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
