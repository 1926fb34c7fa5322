//! The host fixture of the escape tests: one `weft up`, a neighbour workload, attacker
//! workloads, and measurements of the host process from /proc.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::common::*;

/// The host's default per-invocation timeout in these tests (`weft up --default-timeout`).
pub const DEFAULT_TIMEOUT_FLAG: &str = "3s";
/// The neighbour: `http-hello` at `hello.localhost`.
pub const NEIGHBOUR: &str = "hello";

/// A running host with a neighbour workload.
pub struct Host {
    pub up: Up,
    pub dir: tempfile::TempDir,
}

impl Host {
    /// Starts `weft up` with `env` in its own environment and deploys the neighbour.
    pub fn start(env: &[(&str, &str)]) -> Host {
        // WEFT_ESCAPE_GROWTH_RATE overrides `--memory-growth-rate` (e.g. `0` to compare
        // against an unmetered host); unset: the host's default.
        let mut extra = Vec::new();
        if let Ok(rate) = std::env::var("WEFT_ESCAPE_GROWTH_RATE") {
            eprintln!("WEFT_ESCAPE_GROWTH_RATE={rate}: weft up --memory-growth-rate {rate}");
            extra = vec!["--memory-growth-rate".to_string(), rate];
        }
        // WEFT_ESCAPE_UP_ARGS adds `weft up` flags (whitespace-separated), e.g.
        // `--max-response-rate 1G`, to study a knob against the attacks.
        if let Ok(args) = std::env::var("WEFT_ESCAPE_UP_ARGS") {
            eprintln!("WEFT_ESCAPE_UP_ARGS={args}: weft up {args}");
            extra.extend(args.split_whitespace().map(String::from));
        }
        Host::start_with(env, &extra)
    }

    /// [`Host::start`] with more `weft up` flags.
    pub fn start_with(env: &[(&str, &str)], extra: &[String]) -> Host {
        let dir = tempfile::tempdir().expect("tempdir");
        // A short host default timeout, so that a workload without `timeoutMs` is cut off
        // quickly too.
        let mut args = vec!["--default-timeout", DEFAULT_TIMEOUT_FLAG];
        args.extend(extra.iter().map(String::as_str));
        let up = Up::start_with(&dir.path().join("data"), env, &args);
        let host = Host { up, dir };
        let neighbour = format!(
            "apiVersion: weft.dev/v1alpha1\nkind: Workload\nmetadata:\n  name: {NEIGHBOUR}\nspec:\n  components:\n    - name: app\n      image: {}\n  hostInterfaces:\n    - {{ namespace: wasi, package: http, interfaces: [incoming-handler], config: {{ host: {NEIGHBOUR}.localhost, path: / }} }}\n",
            guest("http-hello.wasm").display()
        );
        host.deploy(NEIGHBOUR, &neighbour);
        let r = host.up.get(&format!("{NEIGHBOUR}.localhost"), "/");
        assert_eq!((r.status, r.text().as_str()), (200, "Hello from weft!\n"));
        host
    }

    pub fn deploy(&self, name: &str, yaml: &str) {
        let file = self.dir.path().join(format!("{name}.yaml"));
        std::fs::write(&file, yaml).expect("write manifest");
        self.up.deploy_ok(&file);
    }

    /// Deploys the `escape` guest as workload `name` at `NAME.localhost`, with `resources`
    /// (lines under `localResources:`, 8-space indent) and `spec` (lines under `spec:` after
    /// `hostInterfaces`, 2-space indent).
    pub fn deploy_escape(&self, name: &str, resources: &str, spec: &str) {
        let mut m = format!(
            "apiVersion: weft.dev/v1alpha1\nkind: Workload\nmetadata:\n  name: {name}\nspec:\n  components:\n    - name: attacker\n      image: {}\n",
            guest("escape.wasm").display()
        );
        if !resources.is_empty() {
            m.push_str("      localResources:\n");
            m.push_str(resources);
        }
        m.push_str(&format!(
            "  hostInterfaces:\n    - {{ namespace: wasi, package: http, interfaces: [incoming-handler], config: {{ host: {name}.localhost, path: / }} }}\n"
        ));
        m.push_str(spec);
        self.deploy(name, &m);
    }

    /// What threads may share: the addresses and the process id.
    pub fn view(&self) -> View {
        View {
            http: self.up.http,
            pid: self.up.child.id(),
        }
    }

    /// `(status, body)` of `GET path` on workload `name`.
    pub fn get(&self, name: &str, path: &str) -> (u16, String) {
        self.view().get(name, path)
    }

    /// Whether the host process is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.up.child.try_wait(), Ok(None))
    }

    /// The admin API's address, as the host wrote it to its data dir.
    pub fn admin_addr(&self) -> SocketAddr {
        let text =
            std::fs::read_to_string(self.up.data_dir.join("admin-addr")).expect("admin-addr");
        text.trim()
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .parse()
            .unwrap_or_else(|e| panic!("admin-addr `{text}`: {e}"))
    }
}

/// The shareable side of a [`Host`]: its ingress address and its process.
#[derive(Clone, Copy)]
pub struct View {
    pub http: SocketAddr,
    pub pid: u32,
}

impl View {
    /// `(status, body)` of `GET path` on workload `name`.
    pub fn get(&self, name: &str, path: &str) -> (u16, String) {
        let r = request(
            self.http,
            "GET",
            path,
            &[("Host", &format!("{name}.localhost"))],
            b"",
        );
        (r.status, r.text())
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Resident memory of the host process, KiB.
    pub fn rss_kib(&self) -> u64 {
        proc_status_kib(self.pid(), "VmRSS:")
    }

    /// Peak resident memory of the host process, KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        proc_status_kib(self.pid(), "VmHWM:")
    }

    /// CPU time (user + system) the host process has used, in clock ticks (100 per second).
    pub fn cpu_ticks(&self) -> u64 {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.pid)).expect("/proc/PID/stat");
        // Fields after the command name (which is in parentheses): utime is the 12th, stime the 13th.
        let rest = stat.rsplit_once(") ").map(|(_, r)| r).unwrap_or("");
        let field = |i: usize| {
            rest.split_whitespace()
                .nth(i)
                .and_then(|x| x.parse::<u64>().ok())
                .unwrap_or(0)
        };
        field(11) + field(12)
    }

    /// Open file descriptors of the host process.
    pub fn fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .expect("/proc/PID/fd")
            .count()
    }

    /// Sequential neighbour requests, at least `n` of them and for at least `time`: their
    /// latencies (see [`View::neighbour_latencies`]).
    pub fn neighbour_for(&self, n: usize, time: Duration) -> Vec<Duration> {
        let start = Instant::now();
        let mut out = self.neighbour_latencies(n);
        while start.elapsed() < time {
            out.extend(self.neighbour_latencies(20));
        }
        out
    }

    /// `n` sequential neighbour requests: their latencies; panics unless every one is 200
    /// with the neighbour's body.
    pub fn neighbour_latencies(&self, n: usize) -> Vec<Duration> {
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            let t = Instant::now();
            let r = request(
                self.http,
                "GET",
                "/",
                &[("Host", &format!("{NEIGHBOUR}.localhost"))],
                b"",
            );
            out.push(t.elapsed());
            assert_eq!(
                (r.status, r.text().as_str()),
                (200, "Hello from weft!\n"),
                "neighbour request {i} of {n}"
            );
        }
        out
    }
}

fn proc_status_kib(pid: u32, key: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc/PID/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {key} in /proc/{pid}/status"))
}

/// Latency summary: p50, p99, max.
pub struct Summary {
    pub n: usize,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
}

impl Summary {
    pub fn of(samples: &[Duration]) -> Summary {
        let mut s = samples.to_vec();
        s.sort();
        let at = |q: f64| s[((s.len() as f64 * q).ceil() as usize).clamp(1, s.len()) - 1];
        Summary {
            n: s.len(),
            p50: at(0.50),
            p99: at(0.99),
            max: s[s.len() - 1],
        }
    }
}

pub fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// A TCP server on 127.0.0.1 standing in for a service on the host: accepts as fast as it
/// can, reads nothing, holds each connection until the peer closes it.
pub struct HostService {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl HostService {
    pub fn start() -> HostService {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let stop = Arc::new(AtomicBool::new(false));
        let st = stop.clone();
        std::thread::spawn(move || {
            let mut held: Vec<TcpStream> = Vec::new();
            for conn in listener.incoming() {
                if st.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                held.push(conn);
                if held.len().is_multiple_of(256) {
                    // Let go of the connections the peer has closed.
                    held.retain(|s| {
                        let _ = s.set_nonblocking(true);
                        let mut b = [0u8; 1];
                        !matches!((&*s).read(&mut b), Ok(0))
                    });
                }
            }
        });
        HostService { addr, stop }
    }
}

impl Drop for HostService {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
    }
}

/// A port on 127.0.0.1 that nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Whether something accepts TCP connections on `addr`.
pub fn accepts(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok()
}

/// What a client that reads a response body as fast as it can sees, up to `cap` bytes or
/// `limit` of time: the status line, body bytes received, how the stream ended, time taken.
pub struct Drain {
    pub status_line: String,
    pub bytes: u64,
    pub ended: String,
    pub elapsed: Duration,
}

pub fn drain(addr: SocketAddr, host: &str, path: &str, cap: u64, limit: Duration) -> Drain {
    let started = Instant::now();
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .expect("write request");
    let mut buf = vec![0u8; 256 * 1024];
    let mut head = Vec::new();
    let mut status_line = String::new();
    let mut bytes = 0u64;
    let ended = loop {
        if started.elapsed() > limit {
            break "client gave up (time)".to_string();
        }
        if bytes > cap {
            break "client gave up (size)".to_string();
        }
        match s.read(&mut buf) {
            Ok(0) => break "closed by server".to_string(),
            Ok(n) => {
                if status_line.is_empty() {
                    head.extend_from_slice(&buf[..n]);
                    if let Some(i) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                        let text = String::from_utf8_lossy(&head[..i]).into_owned();
                        status_line = text.lines().next().unwrap_or("").to_string();
                        bytes += (head.len() - i - 4) as u64;
                    }
                } else {
                    bytes += n as u64;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue;
            }
            Err(e) => break format!("error: {e}"),
        }
    };
    Drain {
        status_line,
        bytes,
        ended,
        elapsed: started.elapsed(),
    }
}

/// A fresh directory for a volume, with `inside.txt`; next to it (outside the volume) a
/// `secret.txt`; inside it a symlink `outside` to the parent and `etc` to `/etc`.
pub fn volume_dir(root: &Path) -> PathBuf {
    let vol = root.join("vol");
    std::fs::create_dir_all(&vol).expect("mkdir vol");
    std::fs::write(vol.join("inside.txt"), "inside the volume").expect("write");
    std::fs::write(root.join("secret.txt"), "SECRET OUTSIDE THE VOLUME").expect("write");
    std::os::unix::fs::symlink(root, vol.join("outside")).expect("symlink");
    std::os::unix::fs::symlink("/etc", vol.join("etc")).expect("symlink");
    vol
}
