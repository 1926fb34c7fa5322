//! The flagship demo, end to end (`examples/todo`): the `todo-http` component calls the
//! `todo-db` service, which keeps a bounded pool of connections to a real PostgreSQL
//! (SCRAM-SHA-256, started by the test) that the guest reaches only through the manifest's
//! socket redirect (`port: 5432` -> the server's real port). A real `weft up`, real loopback
//! HTTP, the example's own manifest (`examples/todo/weft.yaml`, with the port and image paths
//! filled in), and, in `browser.rs`, headless Chromium.
//!
//! `cargo test -p weft --test todo` (`-- --nocapture` prints what each test saw). The
//! browser test writes its screenshot to `$CARGO_TARGET_TMPDIR/screenshots/todo.png`, and also
//! into `$WEFT_SCREENSHOT_DIR` when set (how `docs/screenshots/todo.png` is made).
// Test code: a failed unwrap is a test failure with a location (docs/lints.md).
#![allow(clippy::unwrap_used)]

#[allow(dead_code)] // the dashboard test uses the rest
#[path = "../common/chromium.rs"]
mod chromium;
#[path = "../common/mod.rs"]
mod common;

mod api;
mod browser;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::postgres::Postgres;
use common::up::Up;
use common::*;
use serde_json::Value;

/// The role, password and database the example's manifest names.
pub const ROLE: &str = "todo";
pub const PASSWORD: &str = "weft-demo-password";

/// What a test changes in the example's manifest.
pub struct Variant<'a> {
    /// `metadata.name`, and the route `NAME.localhost`.
    pub name: &'a str,
    pub pool_size: u32,
    /// `PG_ADDR` as the guest sees it (the example's is `127.0.0.1:5432`).
    pub pg_addr: Option<String>,
}

impl Default for Variant<'_> {
    fn default() -> Self {
        Variant {
            name: "todo",
            pool_size: 4,
            pg_addr: None,
        }
    }
}

fn replace_once(text: &str, from: &str, to: &str) -> String {
    assert_eq!(
        text.matches(from).count(),
        1,
        "examples/todo/weft.yaml should contain `{from}` exactly once"
    );
    text.replace(from, &to.replace('\\', "\\\\"))
}

/// `examples/todo/weft.yaml` with the guests from `WEFT_GUESTS_DIR`, the redirect to
/// `pg_port`, and the variant's changes.
pub fn manifest(dir: &Path, pg_port: u16, v: &Variant<'_>) -> PathBuf {
    let example = repo_root().join("examples/todo/weft.yaml");
    let mut m = std::fs::read_to_string(&example).unwrap();
    m = replace_once(
        &m,
        "image: ./todo-db.wasm",
        &format!("image: {}", guest("todo-db.wasm").display()),
    );
    m = replace_once(
        &m,
        "image: ./todo-http.wasm",
        &format!("image: {}", guest("todo-http.wasm").display()),
    );
    m = replace_once(
        &m,
        "{ port: 5432, hostPort: 5432 }",
        &format!("{{ port: 5432, hostPort: {pg_port} }}"),
    );
    m = replace_once(
        &m,
        "POOL_SIZE: \"4\"",
        &format!("POOL_SIZE: \"{}\"", v.pool_size),
    );
    if let Some(addr) = &v.pg_addr {
        m = replace_once(
            &m,
            "PG_ADDR: \"127.0.0.1:5432\"",
            &format!("PG_ADDR: \"{addr}\""),
        );
    }
    m = replace_once(&m, "name: todo\n", &format!("name: {}\n", v.name));
    m = replace_once(
        &m,
        "host: todo.localhost",
        &format!("host: {}.localhost", v.name),
    );
    write(dir, v.name, &m)
}

/// A PostgreSQL, a `weft up` and the todo workload.
pub struct App {
    pub pg: Postgres,
    pub up: Option<Up>,
    pub dir: tempfile::TempDir,
    pub name: String,
}

impl App {
    pub fn start(v: Variant<'_>) -> App {
        let pg = Postgres::start_with_role(ROLE, PASSWORD);
        let dir = tempfile::tempdir().unwrap();
        let up = Up::start(&dir.path().join("data"));
        up.deploy_ok(&manifest(dir.path(), pg.port, &v));
        let app = App {
            pg,
            up: Some(up),
            dir,
            name: v.name.to_string(),
        };
        app.wait_ready();
        app
    }

    pub fn up(&self) -> &Up {
        self.up.as_ref().expect("weft up is running")
    }

    /// Deploys another variant on the same host and database.
    pub fn deploy(&self, v: &Variant<'_>) {
        self.up()
            .deploy_ok(&manifest(self.dir.path(), self.pg.port, v));
    }

    /// Waits until the service has created (or found) its schema.
    pub fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let stats = self.stats();
            if stats["schemaReady"] == true {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the todo-db service never got its schema ready: {stats}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops `weft up` (SIGTERM) and starts it again on the same data dir.
    pub fn restart_weft(&mut self) {
        self.up.take().expect("weft up is running").stop();
        self.up = Some(Up::start(&self.dir.path().join("data")));
    }

    pub fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Response {
        self.call_on(&self.name, method, path, body)
    }

    pub fn call_on(&self, name: &str, method: &str, path: &str, body: Option<&Value>) -> Response {
        let host = format!("{name}.localhost");
        let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        let mut headers = vec![("Host", host.as_str())];
        if body.is_some() {
            headers.push(("Content-Type", "application/json"));
        }
        request(self.up().http, method, path, &headers, &bytes)
    }

    /// A call that must answer `status`; its JSON body (`null` when empty).
    pub fn json(&self, method: &str, path: &str, body: Option<&Value>, status: u16) -> Value {
        let r = self.call(method, path, body);
        assert_eq!(r.status, status, "{method} {path}: {}", r.text());
        if r.body.is_empty() {
            return Value::Null;
        }
        serde_json::from_slice(&r.body)
            .unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {}", r.text()))
    }

    pub fn add(&self, title: &str, list: &str, tags: &[&str]) -> Value {
        self.json(
            "POST",
            "/api/todos",
            Some(&serde_json::json!({ "title": title, "list": list, "tags": tags })),
            201,
        )
    }

    /// The titles `GET /api/todos?QUERY` lists, in order.
    pub fn titles(&self, query: &str) -> Vec<String> {
        let path = if query.is_empty() {
            "/api/todos".to_string()
        } else {
            format!("/api/todos?{query}")
        };
        self.json("GET", &path, None, 200)
            .as_array()
            .unwrap_or_else(|| panic!("{path}: not a list"))
            .iter()
            .map(|t| t["title"].as_str().unwrap().to_string())
            .collect()
    }

    pub fn stats(&self) -> Value {
        self.json("GET", "/api/stats", None, 200)
    }

    /// Server-side sessions the service holds (`application_name` is `weft-todo`).
    pub fn server_connections(&self) -> u32 {
        self.pg
            .psql("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'weft-todo'")
            .parse()
            .unwrap()
    }
}
