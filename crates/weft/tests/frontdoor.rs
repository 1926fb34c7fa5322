//! The front door, over real loopback sockets against real `weft serve` and `weft up`
//! processes: RFC 9112 routing decisions, generic error bodies with request ids, honest
//! truncation (a trap mid-body aborts the connection), deadlines under instance reuse (the
//! `p3-unruly` guest), and a corpus of hostile requests.
// Test code: a failed unwrap is a test failure with a location (docs/lints.md).
#![allow(clippy::unwrap_used)]

mod common;
use common::up::Up;
use common::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

/// Sends `raw` as is and reads until the server closes the connection (or 15 s pass).
/// Returns what was read and whether the server closed the connection.
fn raw_exchange(addr: SocketAddr, raw: &[u8]) -> (Vec<u8>, bool) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .expect("timeout");
    // The server may close before it reads everything (a refused head): ignore write errors.
    let _ = stream.write_all(raw);
    let mut out = Vec::new();
    let mut buf = [0u8; 16 << 10];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return (out, true),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            // A reset is a closed connection too.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return (out, true),
            Err(_) => return (out, false),
        }
    }
}

fn status_of(raw: &[u8]) -> Option<u16> {
    let line = raw.split(|b| *b == b'\r').next()?;
    std::str::from_utf8(line)
        .ok()?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn manifest(name: &str, image: &Path, host: &str, extra_resources: &str) -> String {
    format!(
        "apiVersion: weft.dev/v1alpha1\nkind: Workload\nmetadata:\n  name: {name}\nspec:\n  components:\n    - name: app\n      image: {}\n{extra_resources}  hostInterfaces:\n    - namespace: wasi\n      package: http\n      interfaces: [incoming-handler]\n      config: {{ host: {host}, path: / }}\n",
        image.display()
    )
}

fn up_with_two_tenants(dir: &Path) -> Up {
    let up = Up::start(&dir.join("data"));
    let hello = write(
        dir,
        "hello.yaml",
        &manifest("hello", &guest("http-hello.wasm"), "hello.localhost", ""),
    );
    let counter = write(
        dir,
        "counter.yaml",
        &manifest(
            "counter",
            &guest("p3-unruly.wasm"),
            "counter.localhost",
            "      localResources:\n        timeoutMs: 1000\n",
        ),
    );
    up.deploy_ok(&hello);
    up.deploy_ok(&counter);
    up
}

/// RFC 9112 section 3.2 / 3.2.2 decisions and the request id, as a client sees them.
fn check_rfc9112(addr: SocketAddr, host: &str, other_host: Option<&str>) {
    // Two Host headers: 400, whatever they say.
    let raw =
        format!("GET / HTTP/1.1\r\nHost: {host}\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    let (resp, _) = raw_exchange(addr, raw.as_bytes());
    assert_eq!(
        status_of(&resp),
        Some(400),
        "{}",
        String::from_utf8_lossy(&resp)
    );
    let text = String::from_utf8_lossy(&resp).to_lowercase();
    assert!(text.contains("x-request-id:"), "{text}");
    // No Host on HTTP/1.1: 400.
    let (resp, _) = raw_exchange(addr, b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n");
    assert_eq!(
        status_of(&resp),
        Some(400),
        "{}",
        String::from_utf8_lossy(&resp)
    );
    // An absolute-form target whose authority the Host header contradicts: refused.
    if let Some(other) = other_host {
        let raw =
            format!("GET http://{other}/ HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        let (resp, _) = raw_exchange(addr, raw.as_bytes());
        assert_eq!(
            status_of(&resp),
            Some(400),
            "{}",
            String::from_utf8_lossy(&resp)
        );
        // The same target with a Host that agrees is served by the target's tenant.
        let raw = format!(
            "GET http://{other}/count HTTP/1.1\r\nHost: {other}\r\nConnection: close\r\n\r\n"
        );
        let (resp, _) = raw_exchange(addr, raw.as_bytes());
        let r = parse_response(&resp);
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(
            r.text().starts_with("count "),
            "routed to {other}: {}",
            r.text()
        );
    }
    // An incoming request id is kept and returned; an insane one is replaced.
    let r = request(
        addr,
        "GET",
        "/",
        &[("Host", host), ("x-request-id", "abc-123")],
        b"",
    );
    assert_eq!(r.header("x-request-id"), Some("abc-123"));
    let r = request(
        addr,
        "GET",
        "/",
        &[("Host", host), ("x-request-id", "<script>")],
        b"",
    );
    let id = r.header("x-request-id").expect("x-request-id");
    assert!(id != "<script>" && id.len() == 16, "{id}");
}

#[test]
fn frontdoor_serve_rfc9112_and_generic_errors() {
    let server = Server::start(&guest("http-hello.wasm"), &[]);
    check_rfc9112(server.addr, "example.com", None);
    // A trap: a generic 500 with the request id, no internals.
    let r = request(
        server.addr,
        "GET",
        "/trap",
        &[("x-request-id", "trap-1")],
        b"",
    );
    assert_eq!(r.status, 500);
    assert_eq!(r.text(), "500 Internal Server Error\nrequest id: trap-1\n");
    assert_eq!(r.header("x-request-id"), Some("trap-1"));
    // The details are in the log line with that id.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut found = false;
    while Instant::now() < deadline && !found {
        if let Ok(line) = server.stderr_lines.recv_timeout(Duration::from_millis(500)) {
            found = line.contains("trap-1") && line.contains("request failed");
        }
    }
    assert!(found, "the failure is logged with its request id");
}

#[test]
fn frontdoor_up_rfc9112_routing_and_no_tenant_list() {
    let dir = tempfile::tempdir().unwrap();
    let up = up_with_two_tenants(dir.path());
    check_rfc9112(up.http, "hello.localhost", Some("counter.localhost"));
    // The absolute-form target's authority is the host (no Host contradiction: HTTP/1.0
    // without Host).
    let (resp, _) = raw_exchange(
        up.http,
        b"GET http://counter.localhost/count HTTP/1.0\r\n\r\n",
    );
    let r = parse_response(&resp);
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().starts_with("count "), "{}", r.text());
    // A 404 names no tenant.
    let r = up.get("nowhere.localhost", "/");
    assert_eq!(r.status, 404);
    let id = r.header("x-request-id").unwrap().to_string();
    assert_eq!(r.text(), format!("404 Not Found\nrequest id: {id}\n"));
    for tenant in ["hello", "counter", "localhost"] {
        assert!(!r.text().contains(tenant), "{}", r.text());
    }
    // The admin API has the details under that id.
    let detail = up.admin(&format!("/v1/requests/{id}"));
    assert_eq!(detail.status, 200, "{}", detail.text());
    assert!(
        detail.text().contains("counter.localhost"),
        "{}",
        detail.text()
    );
}

/// Asserts a response to `/body-then-trap` read raw: a 200 head, chunked, some of the body,
/// and the connection closed without the terminating chunk.
fn assert_truncated(addr: SocketAddr, host: &str) {
    let raw = format!("GET /body-then-trap HTTP/1.1\r\nHost: {host}\r\n\r\n");
    let (resp, closed) = raw_exchange(addr, raw.as_bytes());
    let text = String::from_utf8_lossy(&resp[..resp.len().min(400)]).to_string();
    assert!(closed, "the connection is closed after a broken body");
    // hyper may not have flushed the head and the first chunk when the body fails: then the
    // client gets nothing at all, which is as visibly broken. What must never arrive is a
    // whole-looking response.
    if !resp.is_empty() {
        assert_eq!(status_of(&resp), Some(200), "{text}");
        assert!(
            text.to_lowercase().contains("transfer-encoding: chunked"),
            "{text}"
        );
        assert!(
            !resp.ends_with(b"0\r\n\r\n"),
            "no terminating chunk after a trap mid-body"
        );
    }
    // And curl, as a client, sees the response as incomplete.
    let out = std::process::Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-H", &format!("Host: {host}")])
        .arg(format!("http://{addr}/body-then-trap"))
        .output()
        .expect("curl must be installed (scripts/test.sh installs it)");
    assert!(
        !out.status.success(),
        "curl exits non-zero on a truncated body: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn frontdoor_trap_mid_body_aborts_the_connection() {
    let server = Server::start(&guest("p3-unruly.wasm"), &[]);
    assert_truncated(server.addr, "example.com");
    // The event is logged with the request id.
    let r = raw_exchange(
        server.addr,
        b"GET /body-then-trap HTTP/1.1\r\nHost: x\r\nx-request-id: cut-1\r\n\r\n",
    );
    assert!(r.1);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut found = false;
    while Instant::now() < deadline && !found {
        if let Ok(line) = server.stderr_lines.recv_timeout(Duration::from_millis(500)) {
            found = line.contains("cut-1") && line.contains("aborted");
        }
    }
    assert!(found, "the aborted response is logged with its request id");
    // A whole body still ends properly.
    let r = server.get("/empty-writes?n=10");
    assert_eq!((r.status, r.text().as_str()), (200, "done\n"));

    let dir = tempfile::tempdir().unwrap();
    let up = up_with_two_tenants(dir.path());
    assert_truncated(up.http, "counter.localhost");
}

/// Sends `/count` and returns (its N, how long it took).
fn count(addr: SocketAddr, host: &str) -> (u64, Duration) {
    let start = Instant::now();
    let r = request(addr, "GET", "/count", &[("Host", host)], b"");
    let took = start.elapsed();
    assert_eq!(r.status, 200, "{}", r.text());
    let n = r
        .text()
        .trim()
        .strip_prefix("count ")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("bad /count body {:?}", r.text()));
    (n, took)
}

/// A request that runs into the deadline (`path`: `/hang` or `/spin`) is cut at the deadline,
/// and the instance that ran it takes no request after that: the next `/count` is served by a
/// fresh instance (its count starts again at 1) and fast.
fn check_deadline(addr: SocketAddr, host: &str, path: &'static str, timeout: Duration) {
    // Warm one instance and see it reused.
    count(addr, host);
    let host_owned = host.to_string();
    let start = Instant::now();
    let slow = std::thread::spawn(move || {
        let r = request(addr, "GET", path, &[("Host", &host_owned)], b"");
        (r.status, Instant::now())
    });
    // Neighbours while the runaway request is in flight are served promptly.
    std::thread::sleep(Duration::from_millis(100));
    for _ in 0..5 {
        let (_, took) = count(addr, host);
        assert!(took < Duration::from_millis(500), "neighbour took {took:?}");
    }
    let (status, at) = slow.join().unwrap();
    let cut = at - start;
    assert_eq!(status, 504, "{path}");
    assert!(
        cut >= timeout - Duration::from_millis(50) && cut <= timeout + Duration::from_millis(300),
        "{path} cut at {cut:?}, deadline {timeout:?}"
    );
    // Right after the deadline: every request is fast and none goes to the retired instance
    // (which had counted past 1); fresh instances count from 1 again.
    for i in 0..20 {
        let (_, took) = count(addr, host);
        assert!(
            took < Duration::from_millis(300),
            "request {i} after the deadline took {took:?}"
        );
    }
}

/// One serving thread, a guest spinning on it: the connections that share the thread are still
/// accepted and answered within a few epoch ticks, not after tokio's 61-poll I/O interval (a
/// guest's epoch yield goes through `tokio::task::yield_now`, which lets the runtime poll its
/// I/O driver first: `weft_runtime::state::yield_at_every_tick`). With wasmtime's own yield
/// each neighbour waited about 0.5 s.
#[test]
fn frontdoor_a_spinning_guest_does_not_stall_its_thread() {
    let server = Server::start(
        &guest("p3-unruly.wasm"),
        &["--timeout", "2s", "--threads", "1"],
    );
    let addr = server.addr;
    count(addr, "example.com");
    let spin = std::thread::spawn(move || {
        request(addr, "GET", "/spin", &[("Host", "example.com")], b"").status
    });
    std::thread::sleep(Duration::from_millis(100));
    let mut slowest = Duration::ZERO;
    for _ in 0..10 {
        let (_, took) = count(addr, "example.com");
        slowest = slowest.max(took);
    }
    assert_eq!(spin.join().unwrap(), 504);
    assert!(
        slowest < Duration::from_millis(250),
        "a neighbour of the spinning request took {slowest:?}"
    );
}

#[test]
fn frontdoor_deadline_retires_the_instance_under_reuse() {
    let timeout = Duration::from_secs(1);
    let server = Server::start(&guest("p3-unruly.wasm"), &["--timeout", "1s"]);
    check_deadline(server.addr, "example.com", "/hang", timeout);
    check_deadline(server.addr, "example.com", "/spin", timeout);
    // Each runaway request retired its instance at once (not at the next expiration).
    let retired = server
        .drain_stderr()
        .iter()
        .filter(|l| l.contains("handler instance retired"))
        .count();
    assert!(
        retired >= 2,
        "two instances retired at their deadline, saw {retired}"
    );

    let dir = tempfile::tempdir().unwrap();
    let up = up_with_two_tenants(dir.path());
    check_deadline(up.http, "counter.localhost", "/hang", timeout);
    check_deadline(up.http, "counter.localhost", "/spin", timeout);
}

/// The hostile corpus: each request gets a 4xx or a closed connection, never a crash, and a
/// neighbour keeps being served.
fn hostile_corpus(host: &str) -> Vec<(&'static str, Vec<u8>)> {
    let mut many = format!("GET / HTTP/1.1\r\nHost: {host}\r\n");
    for i in 0..500 {
        many.push_str(&format!("x-h{i}: v\r\n"));
    }
    many.push_str("\r\n");
    let huge = format!(
        "GET / HTTP/1.1\r\nHost: {host}\r\nx-big: {}\r\n\r\n",
        "a".repeat(200 << 10)
    );
    vec![
        (
            "CL+TE",
            format!("POST / HTTP/1.1\r\nHost: {host}\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: {host}\r\n\r\n").into_bytes(),
        ),
        (
            "conflicting Content-Length",
            format!("POST / HTTP/1.1\r\nHost: {host}\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!").into_bytes(),
        ),
        (
            "duplicate Content-Length in one line",
            format!("POST / HTTP/1.1\r\nHost: {host}\r\nContent-Length: 5, 6\r\n\r\nhello!").into_bytes(),
        ),
        (
            "obs-fold",
            format!("GET / HTTP/1.1\r\nHost: {host}\r\nx-a: one\r\n two\r\n\r\n").into_bytes(),
        ),
        (
            "NUL in a header",
            format!("GET / HTTP/1.1\r\nHost: {host}\r\nx-a: a\0b\r\n\r\n").into_bytes(),
        ),
        ("NUL in the target", format!("GET /a\0b HTTP/1.1\r\nHost: {host}\r\n\r\n").into_bytes()),
        ("huge header", huge.into_bytes()),
        ("many headers", many.into_bytes()),
        (
            "bad chunk size",
            format!("POST / HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n").into_bytes(),
        ),
        ("two Hosts", format!("GET / HTTP/1.1\r\nHost: {host}\r\nHost: evil\r\n\r\n").into_bytes()),
        ("garbage", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03".to_vec()),
    ]
}

fn run_corpus(addr: SocketAddr, host: &str, neighbour: &dyn Fn() -> u16) -> Vec<String> {
    let mut results = Vec::new();
    for (name, raw) in hostile_corpus(host) {
        let (resp, closed) = raw_exchange(addr, &raw);
        let status = status_of(&resp);
        let text = String::from_utf8_lossy(&resp[..resp.len().min(300)]).to_string();
        assert!(
            !text.contains("smuggled"),
            "{name}: a second request was smuggled through: {text}"
        );
        let responses = resp.windows(9).filter(|w| w == b"HTTP/1.1 ").count();
        match status {
            // RFC 9112 section 6.1 lets a server process CL+TE by Transfer-Encoding alone if
            // it closes the connection after responding (hyper does): one response, then EOF.
            // A body error after a handler that never reads its body has answered: the
            // response stands, the connection is closed and nothing after it is parsed.
            Some(200) if name == "CL+TE" || name == "bad chunk size" => assert!(
                closed && responses == 1,
                "{name}: answered {responses} times, closed: {closed}: {text}"
            ),
            Some(s) => assert!((400..500).contains(&s), "{name}: got {s}: {text}"),
            None => assert!(
                closed && resp.is_empty(),
                "{name}: neither a 4xx nor a closed connection: {text}"
            ),
        }
        results.push(format!(
            "{name}: {}",
            status.map_or("connection closed".to_string(), |s| s.to_string())
        ));
        assert_eq!(neighbour(), 200, "the neighbour is served after {name}");
    }
    // Slow headers: a head that never ends is cut at the header read timeout.
    let mut slow = TcpStream::connect(addr).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    slow.write_all(format!("GET / HTTP/1.1\r\nHost: {host}\r\nx-a: ").as_bytes())
        .unwrap();
    let start = Instant::now();
    assert_eq!(
        neighbour(),
        200,
        "the neighbour is served during a slow head"
    );
    let mut buf = Vec::new();
    let _ = slow.read_to_end(&mut buf);
    let took = start.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "a slow head is cut at the header read timeout, took {took:?}"
    );
    let s = status_of(&buf);
    assert!(
        s.is_none_or(|s| (400..500).contains(&s)),
        "slow headers: {s:?}"
    );
    results.push(format!(
        "slow headers: {}",
        s.map_or("connection closed".to_string(), |s| s.to_string())
    ));
    results
}

#[test]
fn frontdoor_hostile_corpus_serve_and_up() {
    let server = Server::start(&guest("http-hello.wasm"), &["--header-read-timeout", "1s"]);
    let addr = server.addr;
    let results = run_corpus(addr, "example.com", &|| server.get("/").status);
    eprintln!("weft serve: {results:#?}");

    let dir = tempfile::tempdir().unwrap();
    let up = Up::start_with(
        &dir.path().join("data"),
        &[],
        &["--header-read-timeout", "1s"],
    );
    let hello = write(
        dir.path(),
        "hello.yaml",
        &manifest("hello", &guest("http-hello.wasm"), "hello.localhost", ""),
    );
    up.deploy_ok(&hello);
    let results = run_corpus(up.http, "hello.localhost", &|| {
        up.get("hello.localhost", "/").status
    });
    eprintln!("weft up: {results:#?}");
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS")
}

/// The shape of GHSA-5m8g-xhq4-4h93 (unbounded host memory from empty stream writes): a guest
/// writing empty chunks, a bounded number then forever. The bounded one finishes, the endless
/// one is cut at the deadline (the connection aborted), host memory stays bounded, nothing
/// panics, and a neighbour is served.
#[test]
fn frontdoor_advisory_empty_stream_writes() {
    let server = Server::start(&guest("p3-unruly.wasm"), &["--timeout", "1s"]);
    let pid = server.child.id();
    assert_eq!(server.get("/count").status, 200);
    let before = rss_kib(pid);
    let r = server.get("/empty-writes?n=20000");
    assert_eq!((r.status, r.text().as_str()), (200, "done\n"));
    let start = Instant::now();
    let (resp, closed) = raw_exchange(
        server.addr,
        b"GET /empty-writes-forever HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    let took = start.elapsed();
    assert!(closed, "the endless body is cut");
    assert!(took < Duration::from_secs(5), "cut after {took:?}");
    assert!(
        !resp.ends_with(b"0\r\n\r\n"),
        "not presented as a whole body"
    );
    let after = rss_kib(pid);
    assert!(
        after < before + 64 * 1024,
        "host memory grew from {before} KiB to {after} KiB"
    );
    assert_eq!(server.get("/count").status, 200, "a neighbour is served");
    let panicked = server
        .drain_stderr()
        .iter()
        .any(|l| l.contains("panicked") && !l.contains("stderr ["));
    assert!(!panicked, "the host did not panic");
}

/// A well-behaved request sharing a reused instance with a runaway one: when the runaway one
/// passes its deadline the instance is retired, and the co-tenant still in it gets a clear 503
/// with `Retry-After` (`HandleError::Retired`, docs/security.md) at that moment, not a hang
/// and not a 504 of its own; the next request goes to a fresh instance.
fn check_co_tenant(addr: SocketAddr, host: &str, timeout: Duration) {
    // One warm instance, so both requests below are dispatched to it.
    count(addr, host);
    let start = Instant::now();
    let runaway = {
        let host = host.to_string();
        std::thread::spawn(move || request(addr, "GET", "/hang", &[("Host", &host)], b"").status)
    };
    std::thread::sleep(timeout / 2);
    // Its own deadline is half a timeout after the runaway's; it would answer after 0.8 of one.
    let sleep_ms = (timeout.as_millis() * 4 / 5).to_string();
    let co_tenant = request(
        addr,
        "GET",
        &format!("/sleep?ms={sleep_ms}"),
        &[("Host", host)],
        b"",
    );
    let at = start.elapsed();
    assert_eq!(co_tenant.status, 503, "{}", co_tenant.text());
    assert_eq!(co_tenant.header("retry-after"), Some("1"));
    assert!(co_tenant.header("x-request-id").is_some());
    assert!(
        at >= timeout - Duration::from_millis(50) && at <= timeout + Duration::from_millis(300),
        "the co-tenant was answered at {at:?}, the runaway's deadline is {timeout:?}"
    );
    // The body says nothing about the other request or the instance.
    let text = co_tenant.text();
    assert!(
        !text.contains("hang") && !text.contains("retired"),
        "{text}"
    );
    assert_eq!(runaway.join().unwrap(), 504);
    let (n, _) = count(addr, host);
    assert_eq!(n, 1, "a fresh instance after the retirement");
}

#[test]
fn frontdoor_deadline_co_tenants_get_503() {
    let timeout = Duration::from_secs(1);
    // One serving thread: with more, the co-tenant's connection would go to a thread with no
    // open connection, whose instances are its own (`weft serve --threads`).
    let server = Server::start(
        &guest("p3-unruly.wasm"),
        &["--timeout", "1s", "--threads", "1"],
    );
    check_co_tenant(server.addr, "example.com", timeout);
    let retired = server
        .drain_stderr()
        .iter()
        .any(|l| l.contains("handler instance retired"));
    assert!(retired, "the instance was retired at the deadline");

    // `weft up` serves one request per instance unless the manifest asks for reuse.
    let dir = tempfile::tempdir().unwrap();
    let up = up_with_two_tenants(dir.path());
    let reused = write(
        dir.path(),
        "reused.yaml",
        &manifest(
            "reused",
            &guest("p3-unruly.wasm"),
            "reused.localhost",
            "      maxInvocations: 100\n      maxConcurrency: 8\n      localResources:\n        timeoutMs: 1000\n",
        ),
    );
    up.deploy_ok(&reused);
    check_co_tenant(up.http, "reused.localhost", timeout);
}

/// The exact shape of GHSA-xrvr-8678-5wp8 (a host panic on stream cancel): with a copy in
/// progress, the guest cancels through the wrong end's handle (`stream.cancel-write` on a read
/// end, `stream.cancel-read` on a write end). wasmtime 48.0.10 traps the guest instead of
/// panicking: the request gets a generic 500, the host does not panic, the instance is gone
/// (the trap poisons it) and the next request is served by a fresh one.
#[test]
fn frontdoor_advisory_cancel_through_the_wrong_end() {
    // One serving thread: the test follows one instance's fate across connections (with more,
    // a connection opened right after another closed may go to the next thread's instances).
    let server = Server::start(
        &guest("p3-unruly.wasm"),
        &["--timeout", "5s", "--threads", "1"],
    );
    assert_eq!(server.get("/count").status, 200);
    for end in ["read", "write"] {
        let mut stream = TcpStream::connect(server.addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        // The head only (end=read): the body read is still pending when it is cancelled.
        stream
            .write_all(
                format!("POST /cancel-wrong-end?end={end} HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            )
            .unwrap();
        let mut out = Vec::new();
        let _ = stream.read_to_end(&mut out);
        let text = String::from_utf8_lossy(&out).into_owned();
        assert_eq!(status_of(&out), Some(500), "end={end}: {text}");
        assert!(!text.contains("wrong-end cancel pass"), "end={end}: {text}");
        assert!(text.contains("request id:"), "a generic body: {text}");
        let r = server.get("/count");
        assert_eq!(
            (r.status, r.text().as_str()),
            (200, "count 1\n"),
            "end={end}: a fresh instance serves the next request"
        );
    }
    let lines = server.drain_stderr();
    let panicked = lines
        .iter()
        .any(|l| l.contains(" panicked at ") && !l.contains("stderr ["));
    assert!(!panicked, "the host did not panic: {lines:#?}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("cancel-write") || l.contains("cancel-read")),
        "the trap names the refused intrinsic: {lines:#?}"
    );
}

/// The neighbouring shape of GHSA-xrvr-8678-5wp8 (a panic on stream/future cancel): a guest that cancels
/// pending reads of the request body (`stream.cancel-read`), of its trailers
/// (`future.cancel-read`) and a pending write of its response body (`stream.cancel-write`),
/// while the client holds its body back. Nothing panics, the request is answered, the client's
/// late body is harmless, and neighbours are served; repeated on one reused instance.
#[test]
fn frontdoor_advisory_stream_future_cancel() {
    let server = Server::start(&guest("p3-unruly.wasm"), &["--timeout", "5s"]);
    assert_eq!(server.get("/count").status, 200);
    for round in 0..5 {
        let mut stream = TcpStream::connect(server.addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        // The head only: the body comes after the response.
        stream
            .write_all(
                b"POST /cancel?n=200 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\n",
            )
            .unwrap();
        let mut out = Vec::new();
        let mut buf = [0u8; 16 << 10];
        let deadline = Instant::now() + Duration::from_secs(10);
        while !String::from_utf8_lossy(&out).contains("reads\n") {
            assert!(
                Instant::now() < deadline,
                "round {round}: no answer: {out:?}"
            );
            match stream.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) => panic!("round {round}: {e}: {:?}", String::from_utf8_lossy(&out)),
            }
        }
        let text = String::from_utf8_lossy(&out).into_owned();
        assert_eq!(status_of(&out), Some(200), "round {round}: {text}");
        // Every read was still pending when cancelled (the body had not been sent).
        assert!(
            text.contains("cancelled 200 reads\n"),
            "round {round}: {text}"
        );
        // The late body: the server may take it or close; neither is a failure.
        let _ = stream.write_all(b"hello");
        drop(stream);
        assert_eq!(
            server.get("/count").status,
            200,
            "round {round}: a neighbour"
        );
    }
    let lines = server.drain_stderr();
    let panicked = lines
        .iter()
        .any(|l| l.contains(" panicked at ") && !l.contains("stderr ["));
    assert!(!panicked, "the host did not panic: {lines:#?}");
}

/// A small response whose body the guest writes after returning it (P3 and P2) leaves with an
/// exact `Content-Length`, head and body together (`weft_host::gather`); a large streamed one
/// stays chunked and whole; a HEAD response is not given a length its guest did not set.
#[test]
fn frontdoor_small_responses_leave_whole_with_a_length() {
    for (wasm, body) in [
        ("p3-service.wasm", "Hello from weft p3!\n"),
        ("http-hello.wasm", "Hello from weft!\n"),
    ] {
        let server = Server::start(&guest(wasm), &[]);
        // Gathering gives the guest two scheduler turns, no more: on a loaded machine a body
        // may miss them and go out chunked, which is still correct. Every response must be
        // whole; most, and at least one, must carry the exact length.
        let mut with_length = 0;
        for _ in 0..10 {
            let (raw, closed) = raw_exchange(
                server.addr,
                b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            );
            assert!(closed, "{wasm}");
            let r = parse_response(&raw);
            assert_eq!(r.status, 200, "{wasm}: {:?}", r.headers);
            if r.header("transfer-encoding") == Some("chunked") {
                assert_eq!(r.header("content-length"), None, "{wasm}: {:?}", r.headers);
                assert!(raw.ends_with(b"0\r\n\r\n"), "{wasm}: the last chunk");
            } else {
                let length = body.len().to_string();
                assert_eq!(r.header("content-length"), Some(length.as_str()), "{wasm}");
                with_length += 1;
            }
            assert_eq!(r.text(), body, "{wasm}");
        }
        assert!(with_length > 0, "{wasm}: no response was gathered");

        // HEAD (the guest answers it with a streamed 404): no body, and no length made up.
        let (raw, _) = raw_exchange(
            server.addr,
            b"HEAD / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        );
        let r = parse_response(&raw);
        assert!(r.body.is_empty(), "{wasm}: a HEAD response has no body");
        assert_eq!(r.header("content-length"), None, "{wasm}: {:?}", r.headers);
    }

    // Larger than the gathering cap: streamed, chunked, every byte there.
    let server = Server::start(&guest("p3-service.wasm"), &[]);
    let (raw, _) = raw_exchange(
        server.addr,
        b"GET /stream?n=3 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    let r = parse_response(&raw);
    assert_eq!(r.status, 200, "{:?}", r.headers);
    assert_eq!(
        r.header("transfer-encoding"),
        Some("chunked"),
        "{:?}",
        r.headers
    );
    assert!(raw.ends_with(b"0\r\n\r\n"), "the stream ends properly");
    let expected: Vec<u8> = (0..3u8)
        .flat_map(|k| std::iter::repeat_n(b'a' + k, 64 * 1024))
        .collect();
    assert!(
        r.body == expected,
        "all three 64 KiB chunks, in order ({} bytes)",
        r.body.len()
    );
}
