//! `{{name}}`: a `wasi:http/service` 0.3 component (WASI P3, component-model async).
//! `GET /` answers `Hello from {{name}}!`; anything else is 404.

use wasip3::http::types::{ErrorCode, Fields, Method, Request, Response};
use wasip3::{wit_future, wit_stream};

wasip3::http::service::export!(Component);

struct Component;

impl wasip3::exports::http::handler::Guest for Component {
    async fn handle(request: Request) -> Result<Response, ErrorCode> {
        let path = request.get_path_with_query().unwrap_or_else(|| "/".to_string());
        let path = path.split('?').next().unwrap_or("/");
        Ok(match (request.get_method(), path) {
            (Method::Get, "/") => respond(200, b"Hello from {{name}}!\n".to_vec()),
            _ => respond(404, b"not found\n".to_vec()),
        })
    }
}

/// A `text/plain` response whose body is written by a task after `handle` returns.
fn respond(status: u16, body: Vec<u8>) -> Response {
    let headers = Fields::new();
    let _ = headers.set("content-type", &[b"text/plain".to_vec()]);
    let (mut body_tx, body_rx) = wit_stream::new::<u8>();
    let (trailers_tx, trailers_rx) = wit_future::new(|| Ok(None));
    let (response, _sent) = Response::new(headers, Some(body_rx), trailers_rx);
    let _ = response.set_status_code(status);
    wasip3::spawn(async move {
        let _ = body_tx.write_all(body).await;
        drop(body_tx);
        let _ = trailers_tx.write(Ok(None)).await;
    });
    response
}
