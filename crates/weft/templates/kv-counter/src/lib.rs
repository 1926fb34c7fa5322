//! `{{name}}`: a `wasi:http/proxy` 0.2 component counting in `wasi:keyvalue`.
//! `GET /` increments the key `count` of the workload's bucket and answers `count=N`;
//! anything else is 404.

use std::io::Write as _;

use wasip2::http::types::{
    Fields, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

mod kv {
    wit_bindgen::generate!({
        path: "wit",
        world: "example:counter/counter",
        // The keyvalue interfaces live in another package (wasi:keyvalue): generate them.
        generate_all,
    });
}

use kv::wasi::keyvalue::{atomics, store};

wasip2::http::proxy::export!(Component);

struct Component;

impl wasip2::exports::http::incoming_handler::Guest for Component {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_else(|| "/".to_string());
        let path = path.split('?').next().unwrap_or("/");
        let (status, body) = match (request.method(), path) {
            (Method::Get, "/") => match count() {
                Ok(n) => (200, format!("count={n}\n")),
                Err(e) => (500, format!("keyvalue: {e}\n")),
            },
            _ => (404, "not found\n".to_string()),
        };
        respond(response_out, status, body.as_bytes());
    }
}

/// Adds one to `count` in the workload's bucket (`"default"`: the bucket the manifest
/// grants) and returns the new value.
fn count() -> Result<u64, String> {
    let bucket = store::open("default").map_err(|e| describe(&e))?;
    atomics::increment(&bucket, "count", 1).map_err(|e| describe(&e))
}

fn describe(e: &store::Error) -> String {
    match e {
        store::Error::NoSuchStore => "no-such-store".to_string(),
        store::Error::AccessDenied => "access-denied".to_string(),
        store::Error::Other(m) => format!("other: {m}"),
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
