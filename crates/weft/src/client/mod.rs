//! The CLI side of the admin API: a small blocking HTTP/1.1 client over `std::net::TcpStream`
//! (one connection per request, `Connection: close`). Reading responses (status, framing,
//! bodies) is `wire.rs`; printing workloads is `render.rs`.

mod render;
mod wire;

use std::fmt::Write as _;
use std::io::{BufReader, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use serde_json::Value;

pub use render::{OutputFormat, render_workload, render_workloads};
use wire::{Response, Status};

/// The file in a data directory holding the admin API address (`127.0.0.1:7870`).
pub const ADDR_FILE: &str = "admin-addr";
/// The file in a data directory holding the admin token.
pub const TOKEN_FILE: &str = "admin-token";

const TIMEOUT: Duration = Duration::from_secs(30);

/// A client for one host's admin API.
#[derive(Clone)]
pub struct AdminClient {
    /// `host:port`.
    addr: String,
    token: String,
    /// Why `addr` cannot be used, reported on the first request.
    invalid: Option<String>,
}

impl std::fmt::Debug for AdminClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminClient")
            .field("addr", &self.addr)
            .field("token", &"<redacted>")
            .finish()
    }
}

impl AdminClient {
    /// Finds the host that `weft up --data-dir DATA_DIR` started, from the `admin-addr` and
    /// `admin-token` files it wrote there.
    pub fn discover(data_dir: &Path) -> anyhow::Result<AdminClient> {
        let not_found = || {
            let dir = data_dir.display();
            anyhow!(
                "no weft host found in {dir}: start one with `weft up --data-dir {dir}`, or pass \
                 --admin URL --token-file FILE"
            )
        };
        let read = |name: &str| -> anyhow::Result<String> {
            let file = data_dir.join(name);
            match std::fs::read_to_string(&file) {
                Ok(text) => Ok(text.trim().to_string()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(not_found()),
                Err(e) => Err(e).with_context(|| format!("cannot read {}", file.display())),
            }
        };
        let addr = read(ADDR_FILE)?;
        let token = read(TOKEN_FILE)?;
        if addr.is_empty() || token.is_empty() {
            return Err(not_found());
        }
        let client = AdminClient::new(&addr, token);
        if let Some(problem) = &client.invalid {
            bail!(
                "{} holds `{addr}`, not an admin address: {problem}",
                data_dir.join(ADDR_FILE).display()
            );
        }
        Ok(client)
    }

    /// A client for the admin API at `url_or_addr` (`http://127.0.0.1:7870`, `127.0.0.1:7870`,
    /// `localhost:7870`, `[::1]:7870`). An unusable address is reported by the first request.
    pub fn new(url_or_addr: &str, token: String) -> AdminClient {
        let (addr, mut invalid) = match parse_addr(url_or_addr) {
            Ok(addr) => (addr, None),
            Err(problem) => (url_or_addr.to_string(), Some(problem)),
        };
        if invalid.is_none() && (token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic())) {
            invalid = Some(
                "the admin token is empty or has characters other than printable ASCII".into(),
            );
        }
        AdminClient {
            addr,
            token,
            invalid,
        }
    }

    /// The `host:port` this client talks to.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// `GET /v1/workloads`: `{"workloads": [...]}`.
    pub fn list(&self) -> anyhow::Result<Value> {
        self.json("GET", "/v1/workloads", None)
    }

    /// `GET /v1/workloads/{name}`.
    pub fn get(&self, name: &str) -> anyhow::Result<Value> {
        self.json(
            "GET",
            &format!("/v1/workloads/{}", encode_segment(name)),
            None,
        )
    }

    /// `POST /v1/workloads` with `{"path": ABSOLUTE_PATH, "manifest": TEXT}`; a relative `path`
    /// is made absolute against the current directory.
    pub fn apply(&self, path: &Path, manifest_text: &str) -> anyhow::Result<Value> {
        let path = std::path::absolute(path)
            .with_context(|| format!("{}: cannot make the path absolute", path.display()))?;
        let Some(path_str) = path.to_str() else {
            bail!(
                "{}: the manifest path is not valid UTF-8; move or rename it",
                path.display()
            );
        };
        let body = serde_json::json!({ "path": path_str, "manifest": manifest_text });
        self.json("POST", "/v1/workloads", Some(body.to_string().into_bytes()))
    }

    /// `DELETE /v1/workloads/{name}`.
    pub fn delete(&self, name: &str) -> anyhow::Result<Value> {
        self.json(
            "DELETE",
            &format!("/v1/workloads/{}", encode_segment(name)),
            None,
        )
    }

    /// `GET /v1/workloads/{name}/logs?follow=...`, copying the text to `out` as it arrives
    /// (flushed after every piece). With `follow` this returns when the host ends the stream.
    pub fn logs(&self, name: &str, follow: bool, out: &mut dyn Write) -> anyhow::Result<()> {
        let path = format!(
            "/v1/workloads/{}/logs?follow={follow}",
            encode_segment(name)
        );
        // A followed stream may be quiet for long: no read timeout then.
        let read_timeout = if follow { None } else { Some(TIMEOUT) };
        let mut response = self.send("GET", &path, None, read_timeout)?;
        if !response.status.is_success() {
            let body = response.read_body()?;
            return Err(self.status_error(response.status, &body));
        }
        response.stream_body(&mut |chunk| {
            out.write_all(chunk)?;
            out.flush()
        })?;
        Ok(())
    }

    fn json(&self, method: &str, path: &str, body: Option<Vec<u8>>) -> anyhow::Result<Value> {
        let mut response = self.send(method, path, body, Some(TIMEOUT))?;
        let bytes = response.read_body()?;
        if !response.status.is_success() {
            return Err(self.status_error(response.status, &bytes));
        }
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&bytes).with_context(|| {
            format!(
                "the weft host at {} answered {method} {path} with a body that is not JSON",
                self.addr
            )
        })
    }

    fn status_error(&self, status: Status, body: &[u8]) -> anyhow::Error {
        let message = serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_string))
            .unwrap_or_else(|| {
                let text = String::from_utf8_lossy(body);
                let text = text.trim();
                if text.is_empty() {
                    "(no message)".to_string()
                } else {
                    text.chars().take(500).collect()
                }
            });
        let hint = if status.code == 401 {
            " (the admin token was not accepted: check --token-file or the data directory's \
             admin-token)"
        } else {
            ""
        };
        anyhow!("{message} (HTTP {status}){hint}")
    }

    fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
        read_timeout: Option<Duration>,
    ) -> anyhow::Result<Response> {
        if let Some(problem) = &self.invalid {
            bail!("cannot use the admin address `{}`: {problem}", self.addr);
        }
        let stream = self.connect()?;
        stream.set_read_timeout(read_timeout)?;
        stream.set_write_timeout(Some(TIMEOUT))?;
        let _ = stream.set_nodelay(true);
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\n\
             User-Agent: weft/{}\r\nAccept: application/json, text/plain\r\nConnection: close\r\n",
            self.addr,
            self.token,
            env!("CARGO_PKG_VERSION"),
        );
        let body = body.unwrap_or_default();
        if !body.is_empty() || method == "POST" {
            head.push_str("Content-Type: application/json\r\n");
        }
        let _ = write!(head, "Content-Length: {}\r\n\r\n", body.len());
        let mut writer = &stream;
        writer
            .write_all(head.as_bytes())
            .and_then(|()| writer.write_all(&body))
            .and_then(|()| writer.flush())
            .with_context(|| {
                format!("cannot send the request to the weft host at {}", self.addr)
            })?;
        Response::read_head(BufReader::new(stream))
            .with_context(|| format!("no valid answer from the weft host at {}", self.addr))
    }

    fn connect(&self) -> anyhow::Result<TcpStream> {
        let addrs = self
            .addr
            .to_socket_addrs()
            .with_context(|| format!("cannot resolve the admin address `{}`", self.addr))?;
        let mut last = None;
        for a in addrs {
            match TcpStream::connect_timeout(&a, TIMEOUT) {
                Ok(s) => return Ok(s),
                Err(e) => last = Some(e),
            }
        }
        let why = last.map_or_else(|| "no address".to_string(), |e| e.to_string());
        bail!(
            "cannot connect to the weft host at {}: {why} (is `weft up` running?)",
            self.addr
        )
    }
}

/// `http://host:port[/]` or `host:port` to `host:port` (port 80 if a URL has none).
fn parse_addr(input: &str) -> Result<String, String> {
    let s = input.trim();
    let (rest, is_url) = match s.split_once("://") {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => (rest, true),
        Some((scheme, _)) => {
            return Err(format!(
                "the `{scheme}` scheme is not supported: the admin API speaks plain HTTP \
                 (e.g. http://127.0.0.1:7870)"
            ));
        }
        None => (s, false),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    if !path.is_empty() && path != "/" {
        return Err(format!(
            "a path (`{path}`) is not supported: give just the address, e.g. 127.0.0.1:7870"
        ));
    }
    if authority.is_empty()
        || authority.contains('@')
        || !authority.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err("expected HOST:PORT, e.g. 127.0.0.1:7870".into());
    }
    let has_port = match authority.rfind(']') {
        Some(i) => authority[i..].contains(':'),
        None => authority.contains(':'),
    };
    match (has_port, is_url) {
        (true, _) => Ok(authority.to_string()),
        (false, true) => Ok(format!("{authority}:80")),
        (false, false) => {
            Err("the port is missing: expected HOST:PORT, e.g. 127.0.0.1:7870".into())
        }
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::io::{BufRead, Read};
    use std::net::TcpListener;
    use std::sync::mpsc;

    #[test]
    fn parses_addresses() {
        assert_eq!(parse_addr("127.0.0.1:7870"), Ok("127.0.0.1:7870".into()));
        assert_eq!(
            parse_addr(" http://127.0.0.1:7870/ "),
            Ok("127.0.0.1:7870".into())
        );
        assert_eq!(parse_addr("HTTP://localhost"), Ok("localhost:80".into()));
        assert_eq!(parse_addr("[::1]:7870"), Ok("[::1]:7870".into()));
        assert_eq!(parse_addr("http://[::1]"), Ok("[::1]:80".into()));
        for bad in [
            "https://x:1",
            "x:1/v1",
            "",
            "localhost",
            "[::1]",
            "u@x:1",
            "a b:1",
        ] {
            assert!(parse_addr(bad).is_err(), "{bad}");
        }
        assert_eq!(encode_segment("a-b_c.d~e"), "a-b_c.d~e");
        assert_eq!(encode_segment("a/b c?"), "a%2Fb%20c%3F");
    }

    /// What the test server saw.
    #[derive(Debug)]
    struct Seen {
        head: String,
        body: Vec<u8>,
    }

    /// A one-connection server on loopback: reads one request, answers with `response` (raw
    /// bytes, written in `pieces` with a pause between them), and reports what it saw.
    fn serve_once(pieces: Vec<Vec<u8>>) -> (String, mpsc::Receiver<Seen>) {
        let listener = match TcpListener::bind("127.0.0.1:0") {
            Ok(l) => l,
            Err(e) => panic!("bind: {e}"),
        };
        let addr = match listener.local_addr() {
            Ok(a) => a.to_string(),
            Err(e) => panic!("local_addr: {e}"),
        };
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || -> std::io::Result<()> {
            let (stream, _) = listener.accept()?;
            let mut reader = BufReader::new(stream.try_clone()?);
            let mut head = String::new();
            loop {
                let mut line = String::new();
                reader.read_line(&mut line)?;
                head.push_str(&line);
                if line == "\r\n" || line.is_empty() {
                    break;
                }
            }
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("Content-Length: "))
                .and_then(|n| n.trim().parse::<usize>().ok())
                .unwrap_or(0);
            let mut body = vec![0; len];
            reader.read_exact(&mut body)?;
            let _ = tx.send(Seen { head, body });
            let mut w = &stream;
            for p in pieces {
                w.write_all(&p)?;
                w.flush()?;
                std::thread::sleep(Duration::from_millis(20));
            }
            Ok(())
        });
        (addr, rx)
    }

    fn respond(status: &str, body: &str) -> Vec<Vec<u8>> {
        vec![
            format!(
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .into_bytes(),
        ]
    }

    fn seen(rx: &mpsc::Receiver<Seen>) -> Seen {
        match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(s) => s,
            Err(e) => panic!("server saw nothing: {e}"),
        }
    }

    const TOKEN: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn list_sends_auth_and_parses_json() -> anyhow::Result<()> {
        let (addr, rx) = serve_once(respond("200 OK", r#"{"workloads":[{"name":"a"}]}"#));
        let client = AdminClient::new(&format!("http://{addr}/"), TOKEN.into());
        let v = client.list()?;
        assert_eq!(v, json!({"workloads": [{"name": "a"}]}));
        let s = seen(&rx);
        assert!(
            s.head.starts_with("GET /v1/workloads HTTP/1.1\r\n"),
            "{}",
            s.head
        );
        assert!(
            s.head
                .contains(&format!("\r\nAuthorization: Bearer {TOKEN}\r\n"))
        );
        assert!(s.head.contains("\r\nConnection: close\r\n"));
        assert!(s.head.contains(&format!("\r\nHost: {addr}\r\n")));
        Ok(())
    }

    #[test]
    fn apply_posts_absolute_path_and_text() -> anyhow::Result<()> {
        let (addr, rx) = serve_once(respond("200 OK", r#"{"workloads":[]}"#));
        let client = AdminClient::new(&addr, TOKEN.into());
        let text = "name: hello\n# \"quoted\" \u{e9}\n";
        client.apply(Path::new("rel/hello.yaml"), text)?;
        let s = seen(&rx);
        assert!(s.head.starts_with("POST /v1/workloads HTTP/1.1\r\n"));
        assert!(s.head.contains("\r\nContent-Type: application/json\r\n"));
        let body: Value = serde_json::from_slice(&s.body)?;
        let path = body["path"].as_str().unwrap_or("");
        assert!(
            Path::new(path).is_absolute() && path.ends_with("rel/hello.yaml"),
            "{path}"
        );
        assert_eq!(body["manifest"], text);
        Ok(())
    }

    #[test]
    fn get_and_delete_encode_the_name() -> anyhow::Result<()> {
        let (addr, rx) = serve_once(respond("200 OK", r#"{"name":"a b"}"#));
        AdminClient::new(&addr, TOKEN.into()).get("a b")?;
        assert!(
            seen(&rx)
                .head
                .starts_with("GET /v1/workloads/a%20b HTTP/1.1\r\n")
        );
        let (addr, rx) = serve_once(vec![b"HTTP/1.1 204 No Content\r\n\r\n".to_vec()]);
        assert_eq!(
            AdminClient::new(&addr, TOKEN.into()).delete("hello")?,
            Value::Null
        );
        assert!(
            seen(&rx)
                .head
                .starts_with("DELETE /v1/workloads/hello HTTP/1.1\r\n")
        );
        Ok(())
    }

    #[test]
    fn error_status_carries_the_server_message() {
        let (addr, _rx) = serve_once(respond(
            "404 Not Found",
            r#"{"error":"no workload named `nope`"}"#,
        ));
        let err = AdminClient::new(&addr, TOKEN.into()).get("nope").err();
        let msg = err.map(|e| format!("{e:#}")).unwrap_or_default();
        assert_eq!(msg, "no workload named `nope` (HTTP 404 Not Found)");

        let (addr, _rx) = serve_once(respond("401 Unauthorized", r#"{"error":"bad token"}"#));
        let msg = AdminClient::new(&addr, TOKEN.into())
            .list()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            msg.starts_with("bad token (HTTP 401 Unauthorized)") && msg.contains("admin-token"),
            "{msg}"
        );

        let (addr, _rx) = serve_once(vec![
            b"HTTP/1.1 502 Bad Gateway\r\nConnection: close\r\n\r\nupstream broke".to_vec(),
        ]);
        let msg = AdminClient::new(&addr, TOKEN.into())
            .list()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert_eq!(msg, "upstream broke (HTTP 502 Bad Gateway)");
    }

    #[test]
    fn decodes_chunked_json_split_anywhere() -> anyhow::Result<()> {
        let (addr, _rx) = serve_once(vec![
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n7;ext=1\r\n{\"wor".to_vec(),
            b"kl\r\n".to_vec(),
            b"E\r\noads\":[1,2,3]}\r\n0\r\nX-Trailer: y\r\n\r\n".to_vec(),
        ]);
        let v = AdminClient::new(&addr, TOKEN.into()).list()?;
        assert_eq!(v, json!({"workloads": [1, 2, 3]}));
        Ok(())
    }

    #[test]
    fn logs_stream_as_they_arrive() -> anyhow::Result<()> {
        let (addr, rx) = serve_once(vec![
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
                .to_vec(),
            b"6\r\nline1\n\r\n".to_vec(),
            b"C\r\nline2\nline3\n\r\n".to_vec(),
            b"0\r\n\r\n".to_vec(),
        ]);
        let mut out = Vec::new();
        AdminClient::new(&addr, TOKEN.into()).logs("hello", true, &mut out)?;
        assert_eq!(String::from_utf8_lossy(&out), "line1\nline2\nline3\n");
        assert!(
            seen(&rx)
                .head
                .starts_with("GET /v1/workloads/hello/logs?follow=true HTTP/1.1\r\n")
        );

        let (addr, rx) = serve_once(vec![b"HTTP/1.1 200 OK\r\n\r\nold\nlines\n".to_vec()]);
        let mut out = Vec::new();
        AdminClient::new(&addr, TOKEN.into()).logs("hello", false, &mut out)?;
        assert_eq!(out, b"old\nlines\n");
        assert!(seen(&rx).head.contains("logs?follow=false "));

        let (addr, _rx) = serve_once(respond("404 Not Found", r#"{"error":"no workload `x`"}"#));
        let mut out = Vec::new();
        let err = AdminClient::new(&addr, TOKEN.into())
            .logs("x", false, &mut out)
            .err();
        assert_eq!(
            err.map(|e| e.to_string()).unwrap_or_default(),
            "no workload `x` (HTTP 404 Not Found)"
        );
        assert!(out.is_empty());
        Ok(())
    }

    /// A writer that tells the test when the first line arrives.
    struct Signal(mpsc::Sender<Vec<u8>>);

    impl Write for Signal {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let _ = self.0.send(buf.to_vec());
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn followed_logs_reach_the_writer_before_the_stream_ends() -> anyhow::Result<()> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?.to_string();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let server = std::thread::spawn(move || -> std::io::Result<()> {
            let (stream, _) = listener.accept()?;
            let mut reader = BufReader::new(stream.try_clone()?);
            let mut line = String::new();
            while reader.read_line(&mut line)? > 2 {
                line.clear();
            }
            let mut w = &stream;
            w.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nfirst\n\r\n")?;
            w.flush()?;
            // Hold the stream open until the client has shown the first line.
            let _ = release_rx.recv_timeout(Duration::from_secs(10));
            w.write_all(b"5\r\nlast\n\r\n0\r\n\r\n")?;
            Ok(())
        });
        let (out_tx, out_rx) = mpsc::channel();
        let client = AdminClient::new(&addr, TOKEN.into());
        let reader = std::thread::spawn(move || client.logs("w", true, &mut Signal(out_tx)));
        let first = out_rx.recv_timeout(Duration::from_secs(10))?;
        assert_eq!(first, b"first\n");
        release_tx.send(())?;
        let last = out_rx.recv_timeout(Duration::from_secs(10))?;
        assert_eq!(last, b"last\n");
        match reader.join() {
            Ok(r) => r?,
            Err(_) => bail!("reader panicked"),
        }
        let _ = server.join();
        Ok(())
    }

    #[test]
    fn truncated_body_is_an_error() {
        let (addr, _rx) = serve_once(vec![
            b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"a\":".to_vec(),
        ]);
        let err = AdminClient::new(&addr, TOKEN.into()).list().err();
        assert!(err.is_some());
    }

    #[test]
    fn refused_connection_says_so() {
        // Bind then drop to get a loopback port that is (very likely) closed.
        let addr = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.to_string())
            .unwrap_or_else(|_| "127.0.0.1:9".into());
        let msg = AdminClient::new(&addr, TOKEN.into())
            .list()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            msg.contains("cannot connect") && msg.contains(&addr),
            "{msg}"
        );
        let msg = AdminClient::new("https://x:1", TOKEN.into())
            .list()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(msg.contains("https"), "{msg}");
    }

    #[test]
    fn discover_reads_the_data_dir() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let msg = AdminClient::discover(dir.path())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        let d = dir.path().display();
        assert_eq!(
            msg,
            format!(
                "no weft host found in {d}: start one with `weft up --data-dir {d}`, or pass \
                 --admin URL --token-file FILE"
            )
        );
        std::fs::write(dir.path().join(ADDR_FILE), "127.0.0.1:7870\n")?;
        assert!(
            AdminClient::discover(dir.path()).is_err(),
            "token still missing"
        );
        std::fs::write(dir.path().join(TOKEN_FILE), format!("{TOKEN}\n"))?;
        let c = AdminClient::discover(dir.path())?;
        assert_eq!(c.addr(), "127.0.0.1:7870");
        assert_eq!(c.token, TOKEN);
        assert!(!format!("{c:?}").contains(TOKEN));
        std::fs::write(dir.path().join(ADDR_FILE), "https://nope\n")?;
        assert!(AdminClient::discover(dir.path()).is_err());
        Ok(())
    }
}
