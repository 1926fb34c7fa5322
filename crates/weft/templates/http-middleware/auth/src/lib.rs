//! `{{name}}-auth`: a `wasi:http` middleware. It exports `wasi:http/incoming-handler` and
//! imports the same interface: the handler it protects (`app`), plugged in by composition.
//! A request whose `authorization` header is not exactly `Bearer {{name}}-token` gets 401
//! and never reaches `app`; any other request is handed to `app` unchanged, and `app` writes
//! the response.

use std::io::Write as _;

use wasip2::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

mod next {
    wit_bindgen::generate!({
        path: "wit",
        world: "example:middleware/auth",
        // The imported handler's types are the `wasip2` crate's, so that a request received
        // from the host can be passed on as it is.
        with: {
            "wasi:http/types@0.2.12": wasip2::http::types,
            "wasi:io/error@0.2.12": wasip2::io::error,
            "wasi:io/poll@0.2.12": wasip2::io::poll,
            "wasi:io/streams@0.2.12": wasip2::io::streams,
            "wasi:clocks/monotonic-clock@0.2.12": wasip2::clocks::monotonic_clock,
            "wasi:http/incoming-handler@0.2.12": generate,
        },
    });
}

/// The token this demo accepts: replace it with a real check.
const TOKEN: &[u8] = b"Bearer {{name}}-token";

wasip2::http::proxy::export!(Auth);

struct Auth;

impl wasip2::exports::http::incoming_handler::Guest for Auth {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let authorized = request
            .headers()
            .get("authorization")
            .iter()
            .any(|v| v.as_slice() == TOKEN);
        if authorized {
            next::wasi::http::incoming_handler::handle(request, response_out);
        } else {
            unauthorized(response_out);
        }
    }
}

fn unauthorized(response_out: ResponseOutparam) {
    let headers = Fields::new();
    let _ = headers.set("content-type", &[b"text/plain".to_vec()]);
    let _ = headers.set("www-authenticate", &[b"Bearer".to_vec()]);
    let response = OutgoingResponse::new(headers);
    let _ = response.set_status_code(401);
    let out_body = response.body().expect("response body");
    ResponseOutparam::set(response_out, Ok(response));
    {
        let mut stream = out_body.write().expect("body stream");
        stream.write_all(b"unauthorized\n").expect("write body");
        stream.blocking_flush().expect("flush body");
    }
    OutgoingBody::finish(out_body, None).expect("finish body");
}
