//! A running `weft up` for the integration tests.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::*;

/// A running `weft up` on loopback with its own data dir, killed on drop.
pub struct Up {
    pub child: Child,
    pub http: std::net::SocketAddr,
    /// The admin API's address.
    pub admin: std::net::SocketAddr,
    pub data_dir: PathBuf,
    /// The lines `weft up` printed up to and including its "Admin API on" line.
    pub banner: Vec<String>,
    // In a Mutex so that `Up` is `Sync` (tests share it between client threads).
    stderr: std::sync::Mutex<mpsc::Receiver<String>>,
}

impl Up {
    pub fn stop(mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("weft up did not stop on SIGTERM");
    }

    pub fn start(data_dir: &Path) -> Up {
        Up::start_with_env(data_dir, &[])
    }

    /// Starts `weft up` with extra variables in its own environment.
    #[allow(clippy::zombie_processes)] // waited for in Drop
    pub fn start_with_env(data_dir: &Path, env: &[(&str, &str)]) -> Up {
        Up::start_with(data_dir, env, &[])
    }

    /// Starts `weft up` with extra variables in its environment and extra flags.
    #[allow(clippy::zombie_processes)] // waited for in Drop
    pub fn start_with(data_dir: &Path, env: &[(&str, &str)], flags: &[&str]) -> Up {
        let mut cmd = weft();
        cmd.args([
            "up",
            "--http-addr",
            "127.0.0.1:0",
            "--admin-addr",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(data_dir)
        .args(flags)
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn weft up");
        let (tx, rx) = mpsc::channel();
        let stderr = child.stderr.take().expect("stderr");
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut http = None;
        let mut seen = Vec::new();
        while Instant::now() < deadline {
            match rx.recv_timeout(Duration::from_millis(200)) {
                Ok(line) => {
                    if let Some(rest) = line.strip_prefix("Serving HTTP on http://") {
                        http = Some(rest.trim_end_matches('/').parse().expect("addr"));
                    }
                    // `Admin API on ADDR (token in FILE)`
                    let admin = line
                        .strip_prefix("Admin API on ")
                        .and_then(|rest| rest.split_whitespace().next())
                        .map(|a| a.parse().expect("admin addr"));
                    seen.push(line);
                    if let (Some(admin), Some(http)) = (admin, http) {
                        return Up {
                            child,
                            http,
                            admin,
                            data_dir: data_dir.to_path_buf(),
                            banner: seen,
                            stderr: std::sync::Mutex::new(rx),
                        };
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => continue,
                Err(_) => break,
            }
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("weft up did not start:\n{}", seen.join("\n"));
    }

    /// The log lines written since start (or the last call), for a failing test to show.
    #[allow(dead_code)] // not every test binary shows logs
    pub fn drain_log(&self) -> Vec<String> {
        match self.stderr.lock() {
            Ok(rx) => rx.try_iter().collect(),
            Err(_) => Vec::new(),
        }
    }

    /// The metrics endpoint's address (from the banner of `weft up --metrics-addr`).
    pub fn metrics_addr(&self) -> std::net::SocketAddr {
        self.banner
            .iter()
            .find_map(|l| l.strip_prefix("Metrics on http://"))
            .and_then(|a| a.trim_end_matches("/metrics").parse().ok())
            .unwrap_or_else(|| panic!("no metrics banner in {:?}", self.banner))
    }

    /// The admin API's address (what `weft up` wrote to the data dir).
    pub fn admin_addr(&self) -> std::net::SocketAddr {
        let text = std::fs::read_to_string(self.data_dir.join("admin-addr")).expect("admin-addr");
        text.trim().parse().expect("admin-addr holds an address")
    }

    /// The admin token.
    pub fn token(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("admin-token"))
            .expect("admin-token")
            .trim()
            .to_string()
    }

    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        let mut cmd: Command = weft();
        cmd.args(args).arg("--data-dir").arg(&self.data_dir);
        cmd.output().expect("weft cli")
    }

    pub fn get(&self, host: &str, path: &str) -> Response {
        request(self.http, "GET", path, &[("Host", host)], b"")
    }

    /// A GET on the admin API, with the host's bearer token.
    pub fn admin(&self, path: &str) -> Response {
        let addr = std::fs::read_to_string(self.data_dir.join("admin-addr")).expect("admin-addr");
        let token =
            std::fs::read_to_string(self.data_dir.join("admin-token")).expect("admin-token");
        let addr = addr.trim().parse().expect("admin address");
        let auth = format!("Bearer {}", token.trim());
        request(addr, "GET", path, &[("Authorization", &auth)], b"")
    }

    pub fn deploy_ok(&self, file: &Path) {
        let out = self.cli(&["deploy", file.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "deploy {}: {}{}",
            file.display(),
            stdout(&out),
            stderr(&out)
        );
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
