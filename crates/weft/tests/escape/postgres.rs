//! A guest reaches a real PostgreSQL on the host through a redirect rule
//! (`localResources.sockets: [{port: 5432, hostPort: P}]`), and nothing else.
//!
//! PostgreSQL comes from Debian (`scripts/test.sh` installs `postgresql` when it is missing).
//! The test runs `initdb` and `pg_ctl` from /usr/lib/postgresql/*/bin into a temporary
//! directory with trust authentication, listening only on 127.0.0.1:P. As root it runs them
//! as the `postgres` user through `runuser` (PostgreSQL refuses to run as root). It fails
//! loudly when PostgreSQL cannot be started: it never skips.

use std::path::PathBuf;
use std::process::Command;

use crate::host::*;

/// A PostgreSQL server in a temporary directory, stopped on drop.
struct Postgres {
    bin: PathBuf,
    dir: tempfile::TempDir,
    as_user: Option<&'static str>,
    port: u16,
}

/// The newest /usr/lib/postgresql/VERSION/bin that has initdb.
fn pg_bin() -> PathBuf {
    let mut bins: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter_map(|e| {
                    let v: u32 = e.file_name().to_str()?.parse().ok()?;
                    let bin = e.path().join("bin");
                    bin.join("initdb").is_file().then_some((v, bin))
                })
                .collect()
        })
        .unwrap_or_default();
    bins.sort();
    match bins.pop() {
        Some((_, bin)) => bin,
        None => panic!(
            "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb): \
             `apt-get install -y postgresql` (scripts/test.sh does this)"
        ),
    }
}

fn is_root() -> bool {
    let out = Command::new("id").arg("-u").output().expect("id -u");
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}

impl Postgres {
    fn command(&self, program: &str) -> Command {
        let exe = self.bin.join(program);
        match self.as_user {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.arg("-u").arg(user).arg("--").arg(exe);
                c
            }
            None => Command::new(exe),
        }
    }

    fn start() -> Postgres {
        let bin = pg_bin();
        let dir = tempfile::Builder::new()
            .prefix("weft-pg")
            .tempdir()
            .expect("tempdir");
        let as_user = is_root().then_some("postgres");
        if let Some(user) = as_user {
            let status = Command::new("chown")
                .arg(user)
                .arg(dir.path())
                .status()
                .expect("chown");
            assert!(status.success(), "chown {user} {}", dir.path().display());
        }
        let mut pg = Postgres {
            bin,
            dir,
            as_user,
            port: 0,
        };
        let data = pg.dir.path().join("data");
        let out = pg
            .command("initdb")
            .args(["-A", "trust", "-U", "postgres", "--no-sync", "-D"])
            .arg(&data)
            .output()
            .expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        // A free port can be taken between the probe and the start: try a few.
        for _ in 0..5 {
            let port = free_port();
            let opts = format!(
                "-h 127.0.0.1 -p {port} -k {} -c fsync=off",
                pg.dir.path().display()
            );
            let out = pg
                .command("pg_ctl")
                .arg("-D")
                .arg(&data)
                .arg("-o")
                .arg(&opts)
                .arg("-l")
                .arg(pg.dir.path().join("log"))
                .args(["-w", "-t", "60", "start"])
                .output()
                .expect("run pg_ctl start");
            if out.status.success() {
                pg.port = port;
                return pg;
            }
            let log = std::fs::read_to_string(pg.dir.path().join("log")).unwrap_or_default();
            if !log.contains("in use") {
                panic!(
                    "pg_ctl start failed: {}{}\nlog:\n{log}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
        panic!("PostgreSQL could not get a free port in 5 tries");
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if self.port != 0 {
            let _ = self
                .command("pg_ctl")
                .arg("-D")
                .arg(self.data())
                .args(["-m", "immediate", "-w", "stop"])
                .output();
        }
    }
}

fn pg_get(host: &Host, path: &str) -> (u16, String) {
    host.get("pgclient", path)
}

fn deploy_pg_client(host: &Host, host_port: u16) {
    host.deploy_escape(
        "pgclient",
        &format!("        timeoutMs: 20000\n        sockets: [ {{ port: 5432, hostPort: {host_port} }} ]\n"),
        "",
    );
}

#[test]
fn postgres_through_a_redirect_rule_and_nothing_else() {
    let _serial = crate::serial();
    let pg = Postgres::start();
    let host = Host::start(&[]);
    deploy_pg_client(&host, pg.port);

    // The guest asks for 127.0.0.1:5432; the host connects it to 127.0.0.1:<pg port>.
    assert_eq!(
        pg_get(&host, "/pg?addr=127.0.0.1:5432"),
        (200, "pg: 1".to_string()),
        "SELECT 1 through the redirect"
    );
    // The real port is not granted to the guest, nor is another port, nor 5432 on another
    // loopback address.
    for addr in [
        format!("127.0.0.1:{}", pg.port),
        "127.0.0.1:5433".to_string(),
        "127.0.0.2:5432".to_string(),
    ] {
        let (status, body) = pg_get(&host, &format!("/pg?addr={addr}"));
        assert!(
            status == 200 && body.ends_with(": access-denied"),
            "{addr}: expected access-denied, got {status} {body}"
        );
    }
    // And it works again afterwards (the denials did not break the grant).
    assert_eq!(
        pg_get(&host, "/pg?addr=127.0.0.1:5432"),
        (200, "pg: 1".to_string())
    );
}
