//! A throwaway PostgreSQL server for the tests, from Debian's `postgresql` package
//! (`scripts/test.sh` installs it when missing).
//!
//! `initdb` and `pg_ctl` from the newest /usr/lib/postgresql/*/bin run into a temporary
//! directory, listening only on 127.0.0.1:PORT (a free port) and on a Unix socket in that
//! directory. As root they run as the `postgres` user through `runuser` (PostgreSQL refuses
//! to run as root). It fails loudly when PostgreSQL cannot be started: it never skips.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Output};

/// A PostgreSQL server in a temporary directory, stopped on drop.
pub struct Postgres {
    bin: PathBuf,
    dir: tempfile::TempDir,
    as_user: Option<&'static str>,
    pub port: u16,
    running: bool,
}

/// How TCP clients log in.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// Anyone, no password (the escape test's minimal client).
    Trust,
    /// SCRAM-SHA-256 with a password (Debian's default for TCP).
    Scram,
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

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
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

    /// A server whose TCP clients need no password.
    pub fn start() -> Postgres {
        Postgres::init(Auth::Trust)
    }

    /// A server whose TCP clients log in with SCRAM-SHA-256, with a login role `role`
    /// (password `password`) that owns a database of the same name.
    pub fn start_with_role(role: &str, password: &str) -> Postgres {
        let pg = Postgres::init(Auth::Scram);
        pg.psql(&format!(
            "CREATE ROLE \"{role}\" LOGIN PASSWORD '{}'",
            password.replace('\'', "''")
        ));
        pg.psql(&format!("CREATE DATABASE \"{role}\" OWNER \"{role}\""));
        pg
    }

    fn init(auth: Auth) -> Postgres {
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
            running: false,
        };
        let host_auth = match auth {
            Auth::Trust => "trust",
            Auth::Scram => "scram-sha-256",
        };
        let out = pg
            .command("initdb")
            .args(["--auth-local=trust", "-U", "postgres", "--no-sync", "-D"])
            .arg(pg.data())
            .arg(format!("--auth-host={host_auth}"))
            .output()
            .expect("run initdb");
        assert!(out.status.success(), "initdb failed: {}", text(&out));
        // A free port can be taken between the probe and the start: try a few.
        for _ in 0..5 {
            pg.port = free_port();
            match pg.try_start() {
                Ok(()) => return pg,
                Err(log) if log.contains("in use") => continue,
                Err(log) => panic!("pg_ctl start failed:\n{log}"),
            }
        }
        panic!("PostgreSQL could not get a free port in 5 tries");
    }

    fn try_start(&mut self) -> Result<(), String> {
        let opts = format!(
            "-h 127.0.0.1 -p {} -k {} -c fsync=off -c max_connections=100",
            self.port,
            self.dir.path().display()
        );
        let out = self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .arg("-o")
            .arg(&opts)
            .arg("-l")
            .arg(self.dir.path().join("log"))
            .args(["-w", "-t", "60", "start"])
            .output()
            .expect("run pg_ctl start");
        if out.status.success() {
            self.running = true;
            return Ok(());
        }
        let log = std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default();
        Err(format!("{}\nlog:\n{log}", text(&out)))
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Stops the server (`-m fast`: sessions are told to end, as in a real restart).
    pub fn stop(&mut self) {
        let out = self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .args(["-m", "fast", "-w", "-t", "60", "stop"])
            .output()
            .expect("run pg_ctl stop");
        assert!(out.status.success(), "pg_ctl stop failed: {}", text(&out));
        self.running = false;
    }

    /// Starts the stopped server again on the same port and data.
    pub fn start_again(&mut self) {
        if let Err(log) = self.try_start() {
            panic!("pg_ctl start (again) failed:\n{log}");
        }
    }

    /// Runs SQL as the superuser over the Unix socket; the unaligned, tuples-only output.
    pub fn psql(&self, sql: &str) -> String {
        self.psql_in("postgres", sql)
    }

    /// [`Postgres::psql`] in database `db`.
    pub fn psql_in(&self, db: &str, sql: &str) -> String {
        let out = self
            .command("psql")
            .arg("-h")
            .arg(self.dir.path())
            .args(["-p", &self.port.to_string()])
            .args([
                "-U",
                "postgres",
                "-d",
                db,
                "-v",
                "ON_ERROR_STOP=1",
                "-At",
                "-c",
            ])
            .arg(sql)
            .output()
            .expect("run psql");
        assert!(out.status.success(), "psql {sql:?} failed: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if self.running {
            let _ = self
                .command("pg_ctl")
                .arg("-D")
                .arg(self.data())
                .args(["-m", "immediate", "-w", "stop"])
                .output();
        }
    }
}
