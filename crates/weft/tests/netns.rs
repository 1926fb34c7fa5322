//! Destinations beyond loopback, end to end, inside a network namespace the test makes itself.
//!
//! Every other test contacts only 127.0.0.0/8 and `::1`. These tests point a real `weft up` and
//! real guests (`net-probe` for `wasi:sockets`, `http-hello` for outgoing HTTP) at private,
//! link-local, metadata and "public" addresses, with live listeners there, so a connection the
//! sandbox wrongly let through would succeed and be recorded. That traffic must not be able to
//! reach a real network, so it only ever happens in a namespace with no way out:
//!
//! - Each test re-runs its own test binary (`--exact NAME`) under
//!   `unshare --net --mount --pid --fork --kill-child --mount-proc`, with
//!   `--user --map-root-user` in front unless it already runs as root.
//!   The child gets a fresh network namespace, whose only interface is a loopback `lo` that
//!   starts down: there is no other device, so no route and no packet can leave it. It also
//!   gets its own mount namespace (for its own `/etc/hosts`) and PID namespace: when the test
//!   (PID 1 there) exits, the kernel kills every process left inside, `weft up` included.
//! - Inside, before anything else, the test checks that its network namespace differs from the
//!   one it was started from, brings `lo` up, adds 10.1.2.3, 169.254.169.254, 192.168.7.7,
//!   203.0.113.5 (TEST-NET-3, standing in for a public address) and fd00::5 to `lo`, and asserts
//!   that `lo` is the only link and that every route (all tables, IPv4 and IPv6) is on `lo`,
//!   none of them a default route. Any failure there fails the test loudly.
//! - Names for those addresses (`db.corp.test`, `metadata.test`, ...) come from an `/etc/hosts`
//!   bind-mounted in the child's mount namespace only.
//! - The parent waits at most [`INNER_TIMEOUT`] and kills the child's process group past it;
//!   every wait inside has its own timeout. The child must report exactly one passed test
//!   (a filter that matched nothing would otherwise pass silently).
//!
//! Needs util-linux's `unshare`, iproute2's `ip` and user namespaces (or root). A machine
//! without them fails these tests; they never skip.
// Test code: a failed unwrap is a test failure with a location (docs/lints.md).
#![allow(clippy::unwrap_used)]

mod common;
use common::up::Up;
use common::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, ToSocketAddrs, UdpSocket};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Set in the child's environment to the name of the test it runs inside the namespace.
const INNER: &str = "WEFT_NETNS_INNER";
/// The parent's network namespace (`net:[inode]`), so the child can check it left it.
const OUTER_NS: &str = "WEFT_NETNS_OUTER";
/// How long the whole child (namespace set-up, `weft up`, every probe) may take.
const INNER_TIMEOUT: Duration = Duration::from_secs(300);

const PRIVATE: &str = "10.1.2.3";
const METADATA: &str = "169.254.169.254";
const HOME_LAN: &str = "192.168.7.7";
/// TEST-NET-3 (RFC 5737): never routed, standing in for a public address.
const PUBLIC: &str = "203.0.113.5";
const ULA: &str = "fd00::5";
const BEYOND: [&str; 5] = [PRIVATE, METADATA, HOME_LAN, PUBLIC, ULA];

/// The port the manifests grant (on loopback), and one they do not.
const GRANTED: u16 = 7000;
const OTHER: u16 = 7001;
/// Where the HTTP listeners are.
const HTTP_PORT: u16 = 7080;

/// `/etc/hosts` names inside the namespace.
const NAMES: [(&str, &str); 5] = [
    ("db.corp.test", PRIVATE),
    ("metadata.test", METADATA),
    ("router.corp.test", HOME_LAN),
    ("public.test", PUBLIC),
    ("v6.corp.test", ULA),
];

fn sock(ip: &str, port: u16) -> SocketAddr {
    SocketAddr::new(ip.parse::<IpAddr>().unwrap(), port)
}

/// `IP:PORT` as a guest writes it (`[v6]:PORT`).
fn host_port(ip: &str, port: u16) -> String {
    sock(ip, port).to_string()
}

// ---------------------------------------------------------------------------------------------
// The namespace.

/// Runs `body` inside a fresh user, network, mount and PID namespace (see the module doc):
/// in the parent, re-runs this test there and checks it passed; in the child, sets the
/// namespace up and runs `body`.
fn in_private_netns(test: &str, body: fn()) {
    if std::env::var(INNER).as_deref() == Ok(test) {
        set_up_namespace();
        body();
        println!("netns: {test} passed inside its namespace");
        return;
    }
    run_in_child(test);
}

fn run_in_child(test: &str) {
    let outer = std::fs::read_link("/proc/self/ns/net").unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut cmd = Command::new("unshare");
    // Root (as in CI) needs no user namespace; anyone else gets one, mapped to root inside.
    if !running_as_root() {
        cmd.args(["--user", "--map-root-user"]);
    }
    cmd.args([
        "--net",
        "--mount",
        "--pid",
        "--fork",
        "--kill-child",
        "--mount-proc",
        "--",
    ])
    .arg(&exe)
    .args(["--exact", test, "--nocapture", "--test-threads=1"])
    .env(INNER, test)
    .env(OUTER_NS, &outer)
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .process_group(0);
    let mut child = cmd.spawn().unwrap_or_else(|e| {
        panic!(
            "cannot run `unshare` ({e}): these tests need util-linux's unshare and iproute2's ip \
             (apt-get install util-linux iproute2)"
        )
    });
    let pid = child.id();
    let out = Arc::new(Mutex::new(String::new()));
    let mut readers = Vec::new();
    for stream in [
        Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
        Box::new(child.stderr.take().unwrap()),
    ] {
        let out = Arc::clone(&out);
        readers.push(std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                let mut o = out.lock().unwrap();
                o.push_str(&line);
                o.push('\n');
            }
        }));
    }
    let deadline = Instant::now() + INNER_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() >= deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    if status.is_none() {
        // The whole group: unshare and the test inside (which takes `weft up` with it).
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{pid}")])
            .status();
        let _ = child.wait();
    }
    // The readers end once every process holding the pipes is gone.
    for r in readers {
        let _ = r.join();
    }
    let output = out.lock().unwrap().clone();
    let Some(status) = status else {
        panic!(
            "{test} did not finish inside its namespace within {INNER_TIMEOUT:?}; killed. \
             Output:\n{output}"
        );
    };
    assert!(
        status.success(),
        "{test} failed inside its namespace ({status}). Output:\n{output}"
    );
    assert!(
        output.contains("test result: ok. 1 passed")
            && output.contains(&format!("netns: {test} passed inside its namespace")),
        "{test} did not run exactly once inside its namespace. Output:\n{output}"
    );
    print!("{output}");
}

/// Whether this process's effective user is root (from `/proc/self/status`).
fn running_as_root() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let uid_line = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .expect("Uid: in /proc/self/status");
    uid_line.split_whitespace().nth(2) == Some("0")
}

/// `ip ARGS`, which must succeed; its stdout.
fn ip(args: &[&str]) -> String {
    let out = Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run `ip` ({e}): install iproute2"));
    assert!(
        out.status.success(),
        "ip {}: {}{}",
        args.join(" "),
        stdout(&out),
        stderr(&out)
    );
    stdout(&out)
}

/// Inside the child: checks the namespace is new and closed, adds the addresses, mounts the
/// hosts file.
fn set_up_namespace() {
    let here = std::fs::read_link("/proc/self/ns/net").unwrap();
    let outer = std::env::var_os(OUTER_NS).expect("the parent passes its namespace");
    assert_ne!(
        here.as_os_str(),
        outer.as_os_str(),
        "still in the parent's network namespace"
    );
    // A new namespace has exactly one link, `lo`, and it is down.
    let links = ip(&["-o", "link", "show"]);
    let names: Vec<&str> = links
        .lines()
        .filter_map(|l| l.split(':').nth(1))
        .map(str::trim)
        .collect();
    assert_eq!(
        names,
        ["lo"],
        "the namespace must have no link but lo:\n{links}"
    );
    let routes_before = ip(&["route", "show", "table", "all"]);
    assert!(
        routes_before.trim().is_empty(),
        "a fresh namespace has no route:\n{routes_before}"
    );
    ip(&["link", "set", "lo", "up"]);
    for a in [PRIVATE, METADATA, HOME_LAN, PUBLIC] {
        ip(&["addr", "add", &format!("{a}/32"), "dev", "lo"]);
    }
    ip(&[
        "-6",
        "addr",
        "add",
        &format!("{ULA}/128"),
        "dev",
        "lo",
        "nodad",
    ]);

    // Nothing leaves: still one link, and every route (all tables, both families) is on lo and
    // none is a default route. The main IPv4 table stays empty.
    let links = ip(&["-o", "link", "show"]);
    assert_eq!(links.lines().count(), 1, "{links}");
    assert!(links.contains(": lo:"), "{links}");
    assert!(
        ip(&["-4", "route", "show"]).trim().is_empty(),
        "the main IPv4 table must be empty"
    );
    for family in ["-4", "-6"] {
        let routes = ip(&[family, "route", "show", "table", "all"]);
        for line in routes.lines().filter(|l| !l.trim().is_empty()) {
            assert!(
                !line.contains("default") && line.contains(" dev lo "),
                "a route that is not on lo, or a default route, in the test namespace: {line}\n{routes}"
            );
        }
    }

    // Names for the addresses, in this mount namespace only.
    let dir = tempfile::tempdir().unwrap();
    let hosts = dir.path().join("hosts");
    let mut text = String::from("127.0.0.1 localhost\n::1 localhost\n");
    for (name, a) in NAMES {
        text.push_str(&format!("{a} {name}\n"));
    }
    std::fs::write(&hosts, text).unwrap();
    let out = Command::new("mount")
        .arg("--bind")
        .arg(&hosts)
        .arg("/etc/hosts")
        .output()
        .expect("run mount");
    assert!(
        out.status.success(),
        "mount --bind over /etc/hosts: {}",
        stderr(&out)
    );
    // The bind mount keeps the file; the directory may go.
    std::mem::forget(dir);
    for (name, a) in NAMES {
        let got: Vec<IpAddr> = (name, 0)
            .to_socket_addrs()
            .unwrap_or_else(|e| panic!("{name} does not resolve in the namespace: {e}"))
            .map(|s| s.ip())
            .collect();
        assert_eq!(got, [a.parse::<IpAddr>().unwrap()], "{name}");
    }
}

// ---------------------------------------------------------------------------------------------
// Listeners that record everything that reaches them.

/// Everything the listeners saw: `PROTO ADDR from PEER`.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<String>>>);

impl Seen {
    fn record(&self, what: String) {
        self.0.lock().unwrap().push(what);
    }
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

/// A TCP listener on `addr` answering each line with `ADDR:LINE` and recording each connection.
fn tcp_listener(addr: SocketAddr, seen: &Seen) {
    let listener =
        TcpListener::bind(addr).unwrap_or_else(|e| panic!("listen on {addr} (tcp): {e}"));
    let seen = seen.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let peer = conn.peer_addr().map(|p| p.to_string()).unwrap_or_default();
            seen.record(format!("tcp {addr} from {peer}"));
            std::thread::spawn(move || {
                let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
                let mut line = String::new();
                let mut reader = BufReader::new(conn.try_clone().expect("clone"));
                if reader.read_line(&mut line).is_ok() {
                    let _ = conn.write_all(format!("{addr}:{}\n", line.trim_end()).as_bytes());
                }
            });
        }
    });
}

/// A UDP socket on `addr` answering each datagram with `ADDR:DATA` and recording it.
fn udp_listener(addr: SocketAddr, seen: &Seen) {
    let sock = UdpSocket::bind(addr).unwrap_or_else(|e| panic!("bind {addr} (udp): {e}"));
    let seen = seen.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        while let Ok((n, from)) = sock.recv_from(&mut buf) {
            seen.record(format!("udp {addr} from {from}"));
            let reply = format!("{addr}:{}", String::from_utf8_lossy(&buf[..n]));
            let _ = sock.send_to(reply.as_bytes(), from);
        }
    });
}

/// An HTTP server on `addr` answering every request with 200 `reached ADDR`, recording each
/// connection.
fn http_listener(addr: SocketAddr, seen: &Seen) {
    let listener =
        TcpListener::bind(addr).unwrap_or_else(|e| panic!("listen on {addr} (http): {e}"));
    let seen = seen.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let peer = conn.peer_addr().map(|p| p.to_string()).unwrap_or_default();
            seen.record(format!("http {addr} from {peer}"));
            std::thread::spawn(move || {
                let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
                let mut head = Vec::new();
                let mut chunk = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut chunk) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&chunk[..n]),
                    }
                }
                let body = format!("reached {addr}\n");
                let _ = conn.write_all(
                    format!(
                        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    )
                    .as_bytes(),
                );
            });
        }
    });
}

/// From the test process itself (not through the sandbox): the TCP listener at `addr` answers.
fn tcp_answers(addr: SocketAddr) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("self-check: connect {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"self\n").unwrap();
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).unwrap();
    assert_eq!(line.trim_end(), format!("{addr}:self"));
}

/// From the test process itself: the UDP listener at `addr` answers.
fn udp_answers(addr: SocketAddr) {
    let local: SocketAddr = if addr.is_ipv4() {
        "0.0.0.0:0".parse().unwrap()
    } else {
        "[::]:0".parse().unwrap()
    };
    let s = UdpSocket::bind(local).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.send_to(b"self", addr).unwrap();
    let mut buf = [0u8; 512];
    let (n, _) = s
        .recv_from(&mut buf)
        .unwrap_or_else(|e| panic!("self-check: udp {addr}: {e}"));
    assert_eq!(&buf[..n], format!("{addr}:self").as_bytes());
}

// ---------------------------------------------------------------------------------------------
// Manifests.

fn workload(dir: &Path, name: &str, image: &str, resources: &str) -> std::path::PathBuf {
    let mut m = format!(
        "apiVersion: weft.dev/v1alpha1\nkind: Workload\nmetadata:\n  name: {name}\nspec:\n  components:\n    - name: app\n      image: {}\n",
        guest(image).display()
    );
    if !resources.is_empty() {
        m.push_str("      localResources:\n");
        m.push_str(resources);
    }
    m.push_str(&format!(
        "  hostInterfaces:\n    - {{ namespace: wasi, package: http, interfaces: [incoming-handler], config: {{ host: {name}.localhost, path: / }} }}\n"
    ));
    let file = dir.join(format!("{name}.yaml"));
    std::fs::write(&file, m).unwrap();
    file
}

fn call(up: &Up, name: &str, path: &str) -> (u16, String) {
    let r = up.get(&format!("{name}.localhost"), path);
    (r.status, r.text())
}

// ---------------------------------------------------------------------------------------------
// wasi:sockets.

#[test]
fn sockets_beyond_loopback_are_refused_in_a_closed_namespace() {
    in_private_netns(
        "sockets_beyond_loopback_are_refused_in_a_closed_namespace",
        sockets_inside,
    );
}

fn sockets_inside() {
    // Loopback listeners on the granted port: the controls.
    let lo = Seen::default();
    tcp_listener(sock("127.0.0.1", GRANTED), &lo);
    tcp_listener(sock("::1", GRANTED), &lo);
    udp_listener(sock("127.0.0.1", GRANTED), &lo);
    // Beyond loopback: TCP and UDP on the granted port number and on another one.
    let beyond = Seen::default();
    for a in BEYOND {
        for port in [GRANTED, OTHER] {
            tcp_listener(sock(a, port), &beyond);
            udp_listener(sock(a, port), &beyond);
        }
    }
    // They are live: anything that got past the sandbox would connect and be recorded.
    for a in BEYOND {
        for port in [GRANTED, OTHER] {
            tcp_answers(sock(a, port));
            udp_answers(sock(a, port));
        }
    }
    assert_eq!(beyond.take().len(), BEYOND.len() * 2 * 2);

    let dir = tempfile::tempdir().unwrap();
    let up = Up::start(&dir.path().join("data"));
    let names: Vec<&str> = NAMES.iter().map(|(n, _)| *n).collect();
    let resources = format!(
        "        sockets:\n          - {{ port: {GRANTED}, protocol: tcp }}\n          - {{ port: {GRANTED}, protocol: udp }}\n        allowedIpNameLookups: [ {} ]\n",
        names.join(", ")
    );
    up.deploy_ok(&workload(dir.path(), "probe", "net-probe.wasm", &resources));
    let probe = |path: String| {
        let (status, text) = call(&up, "probe", &path);
        assert_eq!(status, 200, "{path}: {text}");
        text
    };

    // Controls: the grants work on loopback, and the granted names resolve (so a refusal below
    // is the connect being refused, not the lookup).
    assert_eq!(
        probe(format!("/tcp?addr=127.0.0.1:{GRANTED}&msg=hi")),
        format!("ok: 127.0.0.1:{GRANTED}:hi")
    );
    assert_eq!(
        probe(format!("/tcp?addr=[::1]:{GRANTED}&msg=hi")),
        format!("ok: [::1]:{GRANTED}:hi")
    );
    assert_eq!(
        probe(format!("/udp?addr=127.0.0.1:{GRANTED}&msg=hi")),
        format!("ok: 127.0.0.1:{GRANTED}:hi")
    );
    assert_eq!(lo.take().len(), 3, "the three controls reached loopback");
    for (name, a) in NAMES {
        assert_eq!(probe(format!("/lookup?name={name}")), format!("ok: {a}"));
    }

    // Beyond loopback, by address (TCP and UDP, IPv4 and IPv6, the granted port number and
    // another one) and by name through the lookup grant (the name resolves, the connect is
    // refused). Every attempt runs; then the verdicts and the listeners are checked together.
    let mut targets = Vec::new();
    for a in BEYOND {
        for port in [GRANTED, OTHER] {
            targets.push(host_port(a, port));
        }
    }
    for (name, _) in NAMES {
        targets.push(format!("{name}:{GRANTED}"));
    }
    let mut wrong = Vec::new();
    let mut tried = 0;
    for target in &targets {
        for proto in ["tcp", "udp"] {
            let got = probe(format!("/{proto}?addr={target}&msg=escaped"));
            tried += 1;
            if got != "error: access-denied" {
                wrong.push(format!("{proto} {target}: {got}"));
            }
        }
    }
    assert_eq!(tried, 30);
    let leaked = beyond.take();
    assert!(
        wrong.is_empty() && leaked.is_empty(),
        "the sandbox let traffic beyond loopback through.\nverdicts other than \
         access-denied: {wrong:#?}\nseen by the listeners: {leaked:#?}"
    );
    assert!(lo.take().is_empty());

    // The refusals are logged with the reason.
    let logs = stdout(&up.cli(&["logs", "probe"]));
    for line in [
        format!(
            "tcp connect {PRIVATE}:{GRANTED} denied: the address is outside the host's loopback"
        ),
        format!("udp send {PRIVATE}:{GRANTED} denied: the address is outside the host's loopback"),
        format!("tcp connect {PRIVATE}:{OTHER} denied: the address is outside the host's loopback"),
    ] {
        assert!(logs.contains(&line), "expected `{line}` in:\n{logs}");
    }

    // No rule can grant these addresses: a socket rule names only a port (always on loopback),
    // and a lookup grant cannot be an address. Both are refused at deploy, with the field.
    for (bad, field, message) in [
        (
            format!("        sockets:\n          - {{ port: {GRANTED}, address: {METADATA} }}\n"),
            "spec.components[0].localResources.sockets[0].address",
            "unknown field",
        ),
        (
            format!("        sockets:\n          - {{ port: {GRANTED}, host: {PRIVATE} }}\n"),
            "spec.components[0].localResources.sockets[0].host",
            "unknown field",
        ),
        (
            format!("        allowedIpNameLookups: [ \"{METADATA}\" ]\n"),
            "spec.components[0].localResources.allowedIpNameLookups[0]",
            "is an IP address, which needs no lookup grant",
        ),
    ] {
        let file = workload(dir.path(), "grant", "net-probe.wasm", &bad);
        for args in [
            vec!["manifest", "check", file.to_str().unwrap()],
            vec!["deploy", file.to_str().unwrap()],
        ] {
            let out = if args[0] == "deploy" {
                up.cli(&args)
            } else {
                run_weft(&args)
            };
            let err = stderr(&out);
            assert!(!out.status.success(), "{args:?} accepted:\n{bad}");
            assert!(
                err.contains(field) && err.contains(message),
                "{args:?}: expected `{field}` and `{message}` in:\n{err}"
            );
        }
    }
    let listed = stdout(&up.cli(&["get", "workloads"]));
    assert!(!listed.contains("grant"), "{listed}");
    assert!(beyond.take().is_empty());
    up.stop();
}

// ---------------------------------------------------------------------------------------------
// Outgoing HTTP.

#[test]
fn outgoing_http_beyond_loopback_in_a_closed_namespace() {
    in_private_netns(
        "outgoing_http_beyond_loopback_in_a_closed_namespace",
        outgoing_http_inside,
    );
}

fn outgoing_http_inside() {
    let seen = Seen::default();
    for a in BEYOND {
        http_listener(sock(a, HTTP_PORT), &seen);
    }
    // They are live (from the test process itself).
    for a in BEYOND {
        let r = request(sock(a, HTTP_PORT), "GET", "/", &[], b"");
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), format!("reached {}\n", sock(a, HTTP_PORT)));
    }
    assert_eq!(seen.take().len(), BEYOND.len());

    let dir = tempfile::tempdir().unwrap();
    let up = Up::start(&dir.path().join("data"));
    let hosts = |list: &str| format!("        allowedHosts: [ {list} ]\n");
    up.deploy_ok(&workload(
        dir.path(),
        "wild",
        "http-hello.wasm",
        &hosts("\"http://*:*\""),
    ));
    up.deploy_ok(&workload(
        dir.path(),
        "exact",
        "http-hello.wasm",
        &hosts(&format!("\"http://{METADATA}:{HTTP_PORT}\"")),
    ));
    up.deploy_ok(&workload(
        dir.path(),
        "named",
        "http-hello.wasm",
        &hosts(&format!(
            "\"http://metadata.test:{HTTP_PORT}\", \"http://db.corp.test:{HTTP_PORT}\""
        )),
    ));
    let fetch = |workload: &str, host: &str| {
        let url = format!("http://{host}:{HTTP_PORT}/");
        let (status, text) = call(&up, workload, &format!("/fetch?url={url}"));
        (url, status, text)
    };
    let bracket = |a: &str| {
        if a.contains(':') {
            format!("[{a}]")
        } else {
            a.to_string()
        }
    };

    // A wildcard matches every name and address, but reaches only public addresses: every
    // listener here is private, link-local, metadata or documentation space.
    let (mut wrong, mut tried) = (Vec::new(), 0);
    for host in BEYOND
        .iter()
        .map(|a| bracket(a))
        .chain(NAMES.iter().map(|(n, _)| n.to_string()))
    {
        let (url, status, text) = fetch("wild", &host);
        tried += 1;
        if status == 200 || !text.to_lowercase().contains("prohibited") {
            wrong.push(format!("{url}: {status} {text}"));
        }
    }
    assert_eq!(tried, 10);
    let leaked = seen.take();
    assert!(
        wrong.is_empty() && leaked.is_empty(),
        "a wildcard rule reached a private or metadata address.\nanswers other than \
         destination-IP-prohibited: {wrong:#?}\nseen by the listeners: {leaked:#?}"
    );

    // A rule naming the metadata IP exactly reaches it, and nothing else.
    let (url, status, text) = fetch("exact", METADATA);
    assert_eq!(status, 200, "{url}: {text}");
    assert_eq!(text, format!("reached {METADATA}:{HTTP_PORT}\n"));
    let got = seen.take();
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].starts_with(&format!("http {METADATA}:{HTTP_PORT} from ")));
    for host in [PRIVATE, HOME_LAN, "metadata.test"] {
        let (url, status, text) = fetch("exact", host);
        assert_ne!(status, 200, "{url}: {text}");
        assert!(
            text.to_lowercase().contains("denied"),
            "{url}: expected HTTP-request-denied: {text}"
        );
    }
    assert!(seen.take().is_empty());

    // An exact name admits what it resolves to, except a metadata endpoint.
    let (url, status, text) = fetch("named", "metadata.test");
    assert_ne!(status, 200, "{url}: {text}");
    assert!(text.to_lowercase().contains("prohibited"), "{url}: {text}");
    assert!(seen.take().is_empty());
    let (url, status, text) = fetch("named", "db.corp.test");
    assert_eq!(status, 200, "{url}: {text}");
    assert_eq!(text, format!("reached {PRIVATE}:{HTTP_PORT}\n"));
    let got = seen.take();
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].starts_with(&format!("http {PRIVATE}:{HTTP_PORT} from ")));
    up.stop();
}
