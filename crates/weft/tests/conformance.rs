//! Regression tests for the root causes found with the official WASI test suite
//! (docs/conformance.md), each with a small fixture of our own, since CI cannot fetch the suite.
// Test code: a failed unwrap is a test failure with a location (docs/lints.md).
#![allow(clippy::unwrap_used)]

mod common;
use common::*;

use std::io::{Read, Write};
use std::sync::mpsc;
use std::time::Duration;

/// wasi-testsuite's WASI 0.3 commands export `wasi:cli/run@0.2` (std's `main`, a stub that
/// traps) next to `wasi:cli/run@0.3`: `weft run` must run the 0.3 one, as wasmtime does.
#[test]
fn a_command_exporting_run_0_2_and_0_3_runs_0_3() {
    let g = guest("p3-two-runs.wasm");
    let g = g.to_str().unwrap();
    let out = run_weft(&["run", g, "one", "two"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "run@0.3\none\ntwo\n");
    assert!(!stderr(&out).contains("main is a stub"), "{}", stderr(&out));
}

/// Exit codes of WASI 0.3 commands: `run` returning `Err` and `exit(err)` are 1, not a trap.
#[test]
fn wasi_0_3_exit_codes_pass_through() {
    let g = guest("p3-two-runs.wasm");
    let g = g.to_str().unwrap();
    for arg in ["fail", "exit"] {
        let out = run_weft(&["run", g, arg]);
        assert_eq!(out.status.code(), Some(1), "{arg}: {}", stderr(&out));
        assert_eq!(stdout(&out), format!("run@0.3\n{arg}\n"), "{arg}");
    }
}

/// `weft inspect` says which export each runner uses.
#[test]
fn inspect_names_the_chosen_worlds() {
    let out = run_weft(&["inspect", guest("p3-two-runs.wasm").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("weft run   wasi:cli/run@0.3.0 ("), "{text}");
    assert!(text.contains("weft serve nothing to serve"), "{text}");
    assert!(text.contains("not used:  wasi:cli/run@0.2."), "{text}");

    let out = run_weft(&["inspect", guest("p3-two-worlds.wasm").to_str().unwrap()]);
    let text = stdout(&out);
    assert!(
        text.contains("weft serve wasi:http/handler@0.3.0 (a wasi:http/service component"),
        "{text}"
    );
    assert!(text.contains("weft run   wasi:cli/run@0.2."), "{text}");
}

/// An HTTP service with an incidental `run@0.2` stub is served, and its handler sees the
/// scheme and authority the client addressed (wasmtime 48 serve leaves both unset).
#[test]
fn a_service_next_to_a_run_stub_is_served_with_scheme_and_authority() {
    let server = Server::start(&guest("p3-two-worlds.wasm"), &[]);
    let r = server.get("/whoami?x=1");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.text(),
        format!("scheme=http authority={} path=/whoami?x=1", server.addr)
    );
    // The authority is the Host header the client sent, not the listening address.
    let r = request(
        server.addr,
        "GET",
        "/whoami",
        &[("Host", "app.example:8443")],
        b"",
    );
    assert_eq!(
        r.text(),
        "scheme=http authority=app.example:8443 path=/whoami"
    );
}

/// A one-shot upstream on loopback that reports the request line it received.
fn recording_upstream() -> (std::net::SocketAddr, mpsc::Receiver<String>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let Ok((mut s, _)) = listener.accept() else {
            return;
        };
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && s.read(&mut byte).unwrap_or(0) == 1 {
            head.push(byte[0]);
        }
        let line = String::from_utf8_lossy(&head)
            .lines()
            .next()
            .unwrap_or_default()
            .to_string();
        let _ = tx.send(line);
        let _ =
            s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\nconnection: close\r\n\r\nroot");
    });
    (addr, rx)
}

/// A WASI 0.3 request with no `path-with-query` goes out as `/` (wasmtime-wasi-http 48 fails it
/// with `HTTP-request-URI-invalid`).
#[test]
fn an_outgoing_request_without_a_path_is_sent_as_root() {
    let (upstream, seen) = recording_upstream();
    let server = Server::start(
        &guest("p3-two-worlds.wasm"),
        &["--allow-host", &format!("http://{upstream}")],
    );
    let r = server.get(&format!("/fetch?to={upstream}"));
    assert_eq!(r.text(), "status=200 body=root");
    assert_eq!(
        seen.recv_timeout(Duration::from_secs(30)).unwrap(),
        "GET / HTTP/1.1"
    );
}

/// A request the allow-list refuses fails `send` with `HTTP-request-denied`, and the
/// transmission future of `request.new` says it was not sent (wasmtime-wasi-http 48 reports
/// success there).
#[test]
fn a_refused_request_reports_that_it_was_not_transmitted() {
    let server = Server::start(&guest("p3-two-worlds.wasm"), &[]);
    let r = server.get("/denied?to=nonexistent.invalid:80");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.text(),
        "send=ErrorCode::HttpRequestDenied sent=ErrorCode::HttpRequestDenied"
    );
}

/// wasi-testsuite's `sockets-tcp-properties` and `sockets-udp-properties` create sockets and set
/// their options without declaring the network. `weft run` without `--inherit-network` lets a
/// socket be created, as `wasmtime run` does (it reaches nothing), and still refuses every
/// address: the connect is `access-denied` and the listener sees no connection.
#[test]
fn without_a_network_a_socket_is_created_but_reaches_nothing() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let g = guest("p3-two-runs.wasm");
    let g = g.to_str().unwrap();

    let out = run_weft(&["run", g, "sockets", &port]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    for line in [
        "tcp create: ok\n",
        "tcp keep-alive: Ok(()) Ok(true)\n",
        "tcp receive-buffer: Ok(())\n",
        "tcp backlog 0: Err(ErrorCode::InvalidArgument)\n",
        "tcp connect: Err(ErrorCode::AccessDenied)\n",
        "udp create: ok\n",
        "udp hop-limit: Ok(()) Ok(42)\n",
    ] {
        assert!(text.contains(line), "missing {line:?} in:\n{text}");
    }
    match listener.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("the refused connect reached the listener: {other:?}"),
    }

    // `-Stcp=n` refuses creating a TCP socket too (UDP still works), as under `wasmtime run`.
    let out = run_weft(&["run", "-S", "tcp=n", g, "sockets", &port]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("tcp create: ErrorCode::AccessDenied\n") && text.contains("udp create: ok\n"),
        "{text}"
    );

    // The control: with the network granted, the same connect goes through.
    let out = run_weft(&["run", "--inherit-network", g, "sockets", &port]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("tcp connect: Ok(())\n"),
        "{}",
        stdout(&out)
    );
}

/// wasi-testsuite's `http-request`: a relative `path-with-query` (`a/b/c`, `../..`; allowed
/// since wasi-http issue 178) is stored and read back as given (wasmtime-wasi-http 48 refuses
/// it); such a request cannot be sent (`HTTP-request-URI-invalid`, nothing reaches the
/// upstream), and the other values behave as before.
#[test]
fn a_relative_path_with_query_is_kept_but_not_sent() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let upstream = listener.local_addr().unwrap();
    let server = Server::start(
        &guest("p3-two-worlds.wasm"),
        &["--allow-host", &format!("http://{upstream}")],
    );
    let r = server.get(&format!("/relative?to={upstream}"));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.text(),
        "a/b/c=ok:a/b/c ../..=ok:../.. ?foo=ok:?foo /x=ok:/x =ok:/ a b=err \
         send=ErrorCode::HttpRequestUriInvalid sent=ErrorCode::HttpRequestUriInvalid"
    );
    match listener.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("a request with a relative path reached the upstream: {other:?}"),
    }
}
