//! `{{name}}`: a `wasi:http/proxy` 0.2 component. `GET /` answers `Hello from {{name}}!`;
//! anything else is 404.

use std::io::Write as _;

use wasip2::http::types::{
    Fields, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

wasip2::http::proxy::export!(Component);

struct Component;

impl wasip2::exports::http::incoming_handler::Guest for Component {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_else(|| "/".to_string());
        let path = path.split('?').next().unwrap_or("/");
        match (request.method(), path) {
            (Method::Get, "/") => respond(response_out, 200, b"Hello from {{name}}!\n"),
            _ => respond(response_out, 404, b"not found\n"),
        }
    }
}

/// Sends a `text/plain` response with a small body.
fn respond(response_out: ResponseOutparam, status: u16, body: &[u8]) {
    let headers = Fields::new();
    let _ = headers.set("content-type", &[b"text/plain".to_vec()]);
    let response = OutgoingResponse::new(headers);
    let _ = response.set_status_code(status);
    let out_body = response.body().expect("response body");
    ResponseOutparam::set(response_out, Ok(response));
    {
        let mut stream = out_body.write().expect("body stream");
        stream.write_all(body).expect("write body");
        stream.blocking_flush().expect("flush body");
    }
    OutgoingBody::finish(out_body, None).expect("finish body");
}
