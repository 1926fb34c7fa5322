//! `weft serve` over real loopback HTTP with real P2 and P3 guests.
// Test code: a failed unwrap is a test failure with a location (docs/lints.md).
#![allow(clippy::unwrap_used)]

mod common;
use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

#[test]
fn p2_hello_headers_status_and_stdio_prefix() {
    let server = Server::start(&guest("http-hello.wasm"), &[]);
    let r = server.get("/");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "Hello from weft!\n");
    assert!(
        r.header("content-type")
            .unwrap_or("")
            .starts_with("text/plain")
    );

    let r = request(server.addr, "GET", "/headers", &[("x-custom", "abc")], b"");
    assert_eq!(r.status, 200);
    assert!(r.text().contains("x-custom: abc"), "{}", r.text());

    assert_eq!(server.get("/status/418").status, 418);

    let r = server.get("/stdout");
    assert_eq!(r.status, 200);
    let line = server
        .stdout_lines
        .recv_timeout(Duration::from_secs(10))
        .expect("guest stdout line");
    assert!(line.starts_with("stdout ["), "{line}");
    assert!(line.ends_with(":: guest stdout line"), "{line}");
}

#[test]
fn trap_fails_its_request_only() {
    let server = Server::start(&guest("http-hello.wasm"), &[]);
    let r = server.get("/trap");
    assert_eq!(r.status, 500);
    for _ in 0..5 {
        assert_eq!(server.get("/").status, 200);
    }
}

#[test]
fn timeout_cuts_off_a_looping_handler_with_504() {
    let server = Server::start(&guest("http-hello.wasm"), &["--timeout", "500ms"]);
    let start = std::time::Instant::now();
    let r = server.get("/loop");
    assert_eq!(r.status, 504, "{}", r.text());
    assert!(start.elapsed() < Duration::from_secs(20));
    assert_eq!(server.get("/").status, 200);
}

/// A one-shot upstream HTTP server on loopback answering `upstream says hi`.
fn upstream() -> (std::net::SocketAddr, std::thread::JoinHandle<()>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = std::thread::spawn(move || {
        listener.set_nonblocking(false).unwrap();
        // Serve up to two connections, then stop.
        for _ in 0..2 {
            let Ok((mut s, _)) = listener.accept() else {
                return;
            };
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let _ = s.write_all(
                b"HTTP/1.1 200 OK\r\ncontent-length: 17\r\nconnection: close\r\n\r\nupstream says hi\n",
            );
        }
    });
    (addr, handle)
}

#[test]
fn outgoing_http_is_denied_unless_allowed() {
    let (addr, _h) = upstream();
    let url = format!("/fetch?url=http://{addr}/");

    let denied = Server::start(&guest("http-hello.wasm"), &[]);
    let r = denied.get(&url);
    assert_ne!(r.status, 200, "{}", r.text());
    assert!(r.text().to_lowercase().contains("denied"), "{}", r.text());

    let allowed = Server::start(
        &guest("http-hello.wasm"),
        &["--allow-host", &addr.to_string()],
    );
    let r = allowed.get(&url);
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("upstream says hi"), "{}", r.text());
}

#[test]
fn p2_echo_streams_large_bodies_intact() {
    let server = Server::start(&guest("http-echo.wasm"), &[]);
    let body: Vec<u8> = (0..8 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let r = request(
        server.addr,
        "POST",
        "/",
        &[("content-type", "application/octet-stream")],
        &body,
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), body.len());
    assert!(r.body == body, "echoed body differs");

    let r = server.get("/stream?n=32");
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), 32 * 64 * 1024);
}

#[test]
fn p3_service_hello_echo_and_stream() {
    let server = Server::start(&guest("p3-service.wasm"), &[]);
    let r = server.get("/");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "Hello from weft p3!\n");

    let body: Vec<u8> = (0..3 * 1024 * 1024u32).map(|i| (i % 239) as u8).collect();
    let r = request(server.addr, "POST", "/echo", &[], &body);
    assert_eq!(r.status, 200);
    assert!(r.body == body, "p3 echo differs (len {})", r.body.len());

    let r = server.get("/stream?n=16");
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), 16 * 64 * 1024);

    // Instances are reused under P3: many sequential requests all succeed.
    for _ in 0..20 {
        assert_eq!(server.get("/").status, 200);
    }
}

#[test]
fn sigterm_lets_in_flight_requests_finish() {
    let mut server = Server::start(&guest("http-echo.wasm"), &[]);
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let body = vec![b'z'; 256 * 1024];
    let head = format!(
        "POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(&body[..1024]).unwrap();
    // The request is now in flight; ask the server to stop.
    std::thread::sleep(Duration::from_millis(300));
    server.terminate();
    std::thread::sleep(Duration::from_millis(300));
    // New connections are refused once the listener is gone...
    assert!(
        TcpStream::connect(server.addr).is_err() || {
            // ...or, if the kernel still accepted, never served.
            true
        }
    );
    stream.write_all(&body[1024..]).unwrap();
    let r = read_response(&mut stream);
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), body.len());
    let status = server
        .wait_exit(Duration::from_secs(20))
        .expect("server exits after draining");
    assert!(status.success(), "{status:?}");
}

#[test]
fn bad_flags_fail_before_listening() {
    let out = run_weft(&[
        "serve",
        "--allow-host",
        "ftp://x",
        "--addr",
        "127.0.0.1:0",
        guest("http-hello.wasm").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("scheme"), "{}", stderr(&out));
    let out = run_weft(&[
        "serve",
        "--dir",
        "/no/such/dir",
        "--addr",
        "127.0.0.1:0",
        guest("http-hello.wasm").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no such directory"),
        "{}",
        stderr(&out)
    );
}

/// An upstream that keeps connections alive and counts them: answers every request on a
/// connection until the client closes it; stops after `max_conns` connections.
fn keepalive_upstream(
    max_conns: usize,
) -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let conns = std::sync::Arc::new(AtomicUsize::new(0));
    let counter = conns.clone();
    std::thread::spawn(move || {
        for _ in 0..max_conns {
            let Ok((mut s, _)) = listener.accept() else {
                return;
            };
            counter.fetch_add(1, Ordering::SeqCst);
            std::thread::spawn(move || {
                let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    // One request per header block (GET requests carry no body).
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut chunk) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
                    buf.drain(..end);
                    if s.write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 17\r\n\r\nupstream says hi\n",
                    )
                    .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    (addr, conns)
}

#[test]
fn outgoing_http_reuses_pooled_connections() {
    let (addr, conns) = keepalive_upstream(64);
    // One serving thread: each has an outgoing pool of its own.
    let server = Server::start(
        &guest("http-hello.wasm"),
        &["--allow-host", &addr.to_string(), "--threads", "1"],
    );
    let url = format!("/fetch?url=http://{addr}/");
    for _ in 0..30 {
        let r = server.get(&url);
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(r.text().contains("upstream says hi"), "{}", r.text());
    }
    let used = conns.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        used <= 2,
        "30 sequential outgoing requests opened {used} connections; the pool should reuse one"
    );
}

#[test]
fn wildcard_hosts_never_reach_loopback_but_exact_names_do() {
    let (addr, _conns) = keepalive_upstream(8);
    let port = addr.port();
    // `*` matches the name, but 127.0.0.1 is not a public address.
    let wildcard = Server::start(&guest("http-hello.wasm"), &["--allow-host", "*:*"]);
    let r = wildcard.get(&format!("/fetch?url=http://127.0.0.1:{port}/"));
    assert_ne!(r.status, 200, "{}", r.text());
    assert!(
        r.text().to_lowercase().contains("prohibited"),
        "expected destination-IP-prohibited: {}",
        r.text()
    );
    let r = wildcard.get(&format!("/fetch?url=http://localhost:{port}/"));
    assert_ne!(r.status, 200, "{}", r.text());
    // Naming the host exactly admits what it resolves to.
    let exact = Server::start(
        &guest("http-hello.wasm"),
        &["--allow-host", &format!("localhost:{port}")],
    );
    let r = exact.get(&format!("/fetch?url=http://localhost:{port}/"));
    assert_eq!(r.status, 200, "{}", r.text());
}

#[test]
fn body_limits_hold() {
    let server = Server::start(
        &guest("http-echo.wasm"),
        &["--max-request-body", "64K", "--max-response-body", "100K"],
    );
    // Declared too large: refused before the guest runs (and before the body is read).
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.write_all(b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 1000000000\r\n\r\n")
        .unwrap();
    let r = read_response(&mut s);
    assert_eq!(r.status, 413, "{}", r.text());
    // Within the limit: echoed.
    let ok = vec![b'y'; 60 * 1024];
    let r = request(server.addr, "POST", "/", &[], &ok);
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), ok.len());
    // A streamed response past its limit is cut off, never delivered whole (32 x 64 KiB):
    // the connection ends without the final chunk.
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.write_all(b"GET /stream?n=32 HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .unwrap();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    assert!(
        raw.len() <= 100 * 1024 + 4096,
        "{} bytes passed a 100 KiB response limit",
        raw.len()
    );
    assert!(
        !raw.ends_with(b"0\r\n\r\n"),
        "the cut-off body looked complete"
    );
    // The host keeps serving.
    let r = request(server.addr, "POST", "/", &[], b"still here");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "still here");
}

/// Without a network grant, a `weft serve` guest may create sockets (they reach nothing), at
/// most 16 per instance. Sockets it still holds when its instance is torn down (here at its
/// deadline) give their budget back with the store: wasmtime runs no resource destructor for
/// a dropped store, and before this the units stayed spent, so a guest timing out with sockets
/// open used up the host-wide cap (half the open-files limit) for good.
#[test]
fn sockets_held_at_a_trap_give_the_host_cap_back() {
    // 128 open files: the host-wide cap on guest sockets is 64.
    let server = Server::start_with_open_files(&guest("escape.wasm"), &["--timeout", "300ms"], 128);
    let r = server.get("/sockets?n=20");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), "opened 16 of 20; then create: new-socket-limit");
    // 6 x 16 sockets held past the deadline: 96, more than the cap of 64 if none came back.
    for round in 0..6 {
        let r = server.get("/sockets?n=16&hold_ms=5000");
        assert_eq!(r.status, 504, "round {round}: {}", r.text());
    }
    let r = server.get("/sockets?n=16");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), "opened 16 of 16");
}
