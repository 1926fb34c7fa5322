//! `{{name}}`: a `wasi:http/proxy` 0.2 component that calls the workload's service. `GET /`
//! connects to `127.0.0.1:7000` (the service's port on the workload's virtual loopback),
//! sends one line and answers with the service's reply, e.g. `backend says: count=1 hello from
//! {{name}}`; anything else is 404.

use std::io::Write as _;

use wasip2::http::types::{
    Fields, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam,
};
use wasip2::sockets::instance_network::instance_network;
use wasip2::sockets::network::{ErrorCode, IpAddressFamily, IpSocketAddress, Ipv4SocketAddress};
use wasip2::sockets::tcp_create_socket::create_tcp_socket;

/// The service's port on the workload's loopback (see backend/src/main.rs).
const BACKEND_PORT: u16 = 7000;

wasip2::http::proxy::export!(Component);

struct Component;

impl wasip2::exports::http::incoming_handler::Guest for Component {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_else(|| "/".to_string());
        let path = path.split('?').next().unwrap_or("/");
        let (status, body) = match (request.method(), path) {
            (Method::Get, "/") => match call_backend("hello from {{name}}") {
                Ok(reply) => (200, format!("backend says: {reply}\n")),
                Err(e) => (502, format!("backend: {e}\n")),
            },
            _ => (404, "not found\n".to_string()),
        };
        respond(response_out, status, body.as_bytes());
    }
}

/// Sends `line` to the service and returns the line it answers.
fn call_backend(line: &str) -> Result<String, String> {
    let err = |what: &str, e: ErrorCode| format!("{what} 127.0.0.1:{BACKEND_PORT}: {}", e.name());
    let net = instance_network();
    let sock = create_tcp_socket(IpAddressFamily::Ipv4).map_err(|e| err("socket", e))?;
    let addr = IpSocketAddress::Ipv4(Ipv4SocketAddress {
        port: BACKEND_PORT,
        address: (127, 0, 0, 1),
    });
    sock.start_connect(&net, addr).map_err(|e| err("connect", e))?;
    let (input, output) = loop {
        match sock.finish_connect() {
            Ok(streams) => break streams,
            Err(ErrorCode::WouldBlock) => sock.subscribe().block(),
            Err(e) => return Err(err("connect", e)),
        }
    };
    output
        .blocking_write_and_flush(format!("{line}\n").as_bytes())
        .map_err(|e| format!("write: {e:?}"))?;
    let mut reply = Vec::new();
    while !reply.contains(&b'\n') && reply.len() < 4096 {
        match input.blocking_read(256) {
            Ok(chunk) if !chunk.is_empty() => reply.extend_from_slice(&chunk),
            _ => break,
        }
    }
    // The streams are dropped before the socket they belong to (declared after it).
    Ok(String::from_utf8_lossy(&reply).trim_end().to_string())
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
