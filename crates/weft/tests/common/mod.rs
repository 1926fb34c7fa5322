//! Shared helpers for the integration tests: the real `weft` binary, guest fixtures, and a
//! tiny blocking HTTP/1.1 client over loopback.
#![allow(dead_code)]

pub mod postgres;
pub mod up;
#[allow(unused_imports)]
pub use up::Up;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The `weft` binary under test: `$WEFT_BIN` when set (a copy taken right after the build,
/// for a target dir that other worktrees share), else the one cargo built for this test.
pub fn weft() -> Command {
    let mut cmd = Command::new(weft_bin());
    cmd.env_remove("WEFT_LOG");
    cmd
}

/// The path of [`weft`]'s binary.
pub fn weft_bin() -> std::ffi::OsString {
    std::env::var_os("WEFT_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_weft").into())
}

pub fn repo_root() -> PathBuf {
    std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
    )
    .join("../..")
}

pub fn wat_fixture(name: &str) -> PathBuf {
    repo_root().join("tests/fixtures/wat").join(name)
}

/// A built Rust guest. Fails loudly when the fixtures were not built: these tests never skip.
pub fn guest(name: &str) -> PathBuf {
    let dir = std::env::var_os("WEFT_GUESTS_DIR").unwrap_or_else(|| {
        panic!(
            "WEFT_GUESTS_DIR is not set: build the guest fixtures with \
             `bash tests/fixtures/build-guests.sh DIR` and export WEFT_GUESTS_DIR=DIR \
             (scripts/test.sh does both)"
        )
    });
    let path = PathBuf::from(dir).join(name);
    assert!(
        path.is_file(),
        "guest fixture {} is missing: rebuild with tests/fixtures/build-guests.sh",
        path.display()
    );
    path
}

pub fn run_weft(args: &[&str]) -> Output {
    weft().args(args).output().expect("spawn weft")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A running `weft serve`, killed on drop.
pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    pub stderr_lines: mpsc::Receiver<String>,
    pub stdout_lines: mpsc::Receiver<String>,
}

impl Server {
    pub fn start(file: &Path, extra: &[&str]) -> Server {
        let mut cmd = weft();
        cmd.arg("serve").arg("--addr").arg("127.0.0.1:0");
        cmd.args(extra).arg(file);
        Server::spawn(cmd)
    }

    /// [`Server::start`] with the open-files limit (soft and hard) set to `open_files`.
    pub fn start_with_open_files(file: &Path, extra: &[&str], open_files: u32) -> Server {
        let mut cmd = Command::new("sh");
        cmd.env_remove("WEFT_LOG");
        cmd.arg("-c")
            .arg("ulimit -n \"$0\" && exec \"$@\"")
            .arg(open_files.to_string())
            .arg(weft_bin())
            .args(["serve", "--addr", "127.0.0.1:0"])
            .args(extra)
            .arg(file);
        Server::spawn(cmd)
    }

    // The child is waited for in `Drop`; clippy cannot see through the move into `Server`.
    #[allow(clippy::zombie_processes)]
    fn spawn(mut cmd: Command) -> Server {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn weft serve");
        let (err_tx, err_rx) = mpsc::channel();
        let (out_tx, out_rx) = mpsc::channel();
        let stderr = child.stderr.take().expect("stderr");
        let stdout = child.stdout.take().expect("stdout");
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if err_tx.send(line).is_err() {
                    break;
                }
            }
        });
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if out_tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match err_rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(rest) = line.split("http://").nth(1) {
                        let addr = rest
                            .trim_end_matches('/')
                            .parse()
                            .unwrap_or_else(|e| panic!("bad address in `{line}`: {e}"));
                        assert!(
                            line.starts_with("Serving HTTP on http://"),
                            "first http:// line must be the banner: {line}"
                        );
                        return Server {
                            child,
                            addr,
                            stderr_lines: err_rx,
                            stdout_lines: out_rx,
                        };
                    }
                    seen.push(line);
                }
                Err(_) => {
                    let _ = child.kill();
                    panic!(
                        "weft serve did not start; stderr so far:\n{}",
                        seen.join("\n")
                    );
                }
            }
        }
    }

    pub fn get(&self, path: &str) -> Response {
        request(self.addr, "GET", path, &[], b"")
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// Waits for exit, up to `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Stderr lines received so far.
    pub fn drain_stderr(&self) -> Vec<String> {
        self.stderr_lines.try_iter().collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 request with `Connection: close`; reads the whole response.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        head.push_str(&format!("Host: {addr}\r\n"));
    }
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).expect("write head");
    stream.write_all(body).expect("write body");
    read_response(&mut stream)
}

pub fn read_response(stream: &mut TcpStream) -> Response {
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read response");
    parse_response(&raw)
}

pub fn parse_response(raw: &[u8]) -> Response {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {:?}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().expect("status line");
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let rest = &raw[split + 4..];
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    let body = if chunked {
        dechunk(rest)
    } else {
        rest.to_vec()
    };
    Response {
        status,
        headers,
        body,
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(pos) = data.windows(2).position(|w| w == b"\r\n") {
        let size_str = String::from_utf8_lossy(&data[..pos]);
        let size = usize::from_str_radix(size_str.split(';').next().unwrap_or("").trim(), 16)
            .unwrap_or_else(|_| panic!("bad chunk size {size_str:?}"));
        data = &data[pos + 2..];
        if size == 0 {
            break;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
    out
}

/// TCP ports the process `pid` listens on (from /proc: its socket inodes in LISTEN state).
pub fn listening_ports(pid: u32) -> Vec<u16> {
    let mut inodes = std::collections::HashSet::new();
    for fd in std::fs::read_dir(format!("/proc/{pid}/fd")).expect("proc fd") {
        let Ok(fd) = fd else { continue };
        if let Ok(target) = std::fs::read_link(fd.path()) {
            let t = target.to_string_lossy().to_string();
            if let Some(inode) = t.strip_prefix("socket:[").and_then(|r| r.strip_suffix(']')) {
                inodes.insert(inode.to_string());
            }
        }
    }
    let mut ports = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            if cols.len() > 9
                && cols[3] == "0A"
                && inodes.contains(cols[9])
                && let Some(port) = cols[1].rsplit(':').next()
            {
                ports.push(u16::from_str_radix(port, 16).expect("hex port"));
            }
        }
    }
    ports
}

// Helpers shared by the socket and service tests.

/// A TCP server answering each line with `TAG:LINE`.
pub fn tcp_echo(bind: &str, tag: &'static str) -> SocketAddr {
    let listener = TcpListener::bind(bind)
        .unwrap_or_else(|e| panic!("cannot listen on {bind} for the socket tests: {e}"));
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            std::thread::spawn(move || {
                let mut line = String::new();
                let mut reader = BufReader::new(conn.try_clone().expect("clone"));
                if reader.read_line(&mut line).is_ok() {
                    let _ = conn.write_all(format!("{tag}:{}\n", line.trim_end()).as_bytes());
                }
            });
        }
    });
    addr
}

/// A UDP server answering each datagram with `TAG:DATA`.
pub fn udp_echo(tag: &'static str) -> SocketAddr {
    let sock = UdpSocket::bind("127.0.0.1:0").expect("udp bind");
    let addr = sock.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        while let Ok((n, from)) = sock.recv_from(&mut buf) {
            let reply = format!("{tag}:{}", String::from_utf8_lossy(&buf[..n]));
            let _ = sock.send_to(reply.as_bytes(), from);
        }
    });
    addr
}

/// Writes `text` to `DIR/NAME.yaml` (a manifest for `weft deploy`).
pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(format!("{name}.yaml"));
    std::fs::write(&p, text).unwrap();
    p
}

/// GET `path` at `NAME.localhost`: the body of a 200 (anything else fails the test).
pub fn probe(up: &Up, name: &str, path: &str) -> String {
    let r = up.get(&format!("{name}.localhost"), path);
    assert_eq!(r.status, 200, "{path}: {}", r.text());
    r.text()
}
