//! The todo app through its JSON API: persistence across a weft restart, filters (joins),
//! bad input, the pool's bound under load, PostgreSQL restarts, and the socket rule.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::common::request;
use crate::{App, Variant};

#[test]
fn add_filter_mark_done_delete_and_survive_a_weft_restart() {
    let mut app = App::start(Variant::default());
    assert_eq!(app.titles(""), Vec::<String>::new());

    let milk = app.add("Buy oat milk", "home", &["shop", "urgent"]);
    assert_eq!(milk["list"], "home");
    assert_eq!(milk["tags"], json!(["shop", "urgent"]));
    assert_eq!(milk["done"], false);
    let demo = app.add("Ship the demo", "work", &["weft", "urgent"]);
    let plumber = app.add("Call the plumber", "home", &[]);
    // No list: the inbox. Tags are trimmed, lowercased, sorted and deduplicated.
    let inbox = app.json(
        "POST",
        "/api/todos",
        Some(&json!({ "title": "  Read the WASI 0.3 notes  ", "tags": [" Reading", "reading"] })),
        201,
    );
    assert_eq!(inbox["list"], "inbox");
    assert_eq!(inbox["title"], "Read the WASI 0.3 notes");
    assert_eq!(inbox["tags"], json!(["reading"]));
    let created = app.call("POST", "/api/todos", Some(&json!({ "title": "x" })));
    assert_eq!(created.status, 201);
    assert!(
        created
            .header("location")
            .is_some_and(|l| l.starts_with("/api/todos/")),
        "{:?}",
        created.headers
    );
    let x: serde_json::Value = serde_json::from_slice(&created.body).unwrap();
    app.json("DELETE", &format!("/api/todos/{}", x["id"]), None, 204);

    // Newest first.
    let all = app.titles("");
    assert_eq!(
        all,
        [
            "Read the WASI 0.3 notes",
            "Call the plumber",
            "Ship the demo",
            "Buy oat milk"
        ]
    );

    // Filters: by list (todos join lists), by tag (join todo_tags, tags), by text, combined.
    assert_eq!(
        app.titles("list=home"),
        ["Call the plumber", "Buy oat milk"]
    );
    assert_eq!(app.titles("tag=urgent"), ["Ship the demo", "Buy oat milk"]);
    assert_eq!(app.titles("tag=URGENT"), ["Ship the demo", "Buy oat milk"]);
    assert_eq!(app.titles("list=home&tag=urgent"), ["Buy oat milk"]);
    assert_eq!(
        app.titles("q=THE"),
        [
            "Read the WASI 0.3 notes",
            "Call the plumber",
            "Ship the demo"
        ]
    );
    assert_eq!(app.titles("q=the+demo"), ["Ship the demo"]);
    assert_eq!(app.titles("list=nowhere"), Vec::<String>::new());

    // Mark done; the status filter sees it.
    let done = app.json(
        "PATCH",
        &format!("/api/todos/{}", demo["id"]),
        Some(&json!({ "done": true })),
        200,
    );
    assert_eq!(done["done"], true);
    assert_eq!(done["tags"], json!(["urgent", "weft"]));
    assert_eq!(app.titles("status=done"), ["Ship the demo"]);
    assert_eq!(
        app.titles("status=open"),
        [
            "Read the WASI 0.3 notes",
            "Call the plumber",
            "Buy oat milk"
        ]
    );
    assert_eq!(app.titles("status=open&tag=urgent"), ["Buy oat milk"]);
    let lists = app.json("GET", "/api/lists", None, 200);
    assert_eq!(
        lists,
        json!([
            { "name": "home", "open": 2, "total": 2 },
            { "name": "inbox", "open": 1, "total": 1 },
            { "name": "work", "open": 0, "total": 1 }
        ])
    );

    // Restart weft: the workload comes back from its stored desired state, the service
    // reconnects, and everything, done flags included, is still there.
    app.restart_weft();
    app.wait_ready();
    assert_eq!(
        app.titles(""),
        [
            "Read the WASI 0.3 notes",
            "Call the plumber",
            "Buy oat milk",
            "Ship the demo"
        ],
        "after the restart (open first, then done)"
    );
    assert_eq!(app.titles("status=done"), ["Ship the demo"]);
    assert_eq!(app.stats()["openedTotal"], 1, "{}", app.stats());

    // Undo, delete, and 404s.
    let undone = app.json(
        "PATCH",
        &format!("/api/todos/{}", demo["id"]),
        Some(&json!({ "done": false })),
        200,
    );
    assert_eq!(undone["done"], false);
    app.json(
        "DELETE",
        &format!("/api/todos/{}", plumber["id"]),
        None,
        204,
    );
    let gone = app.call("DELETE", &format!("/api/todos/{}", plumber["id"]), None);
    assert_eq!(gone.status, 404, "{}", gone.text());
    let gone = app.call("PATCH", "/api/todos/999999", Some(&json!({ "done": true })));
    assert_eq!(gone.status, 404, "{}", gone.text());
    assert_eq!(app.titles("list=home"), ["Buy oat milk"]);
    assert_eq!(
        app.pg.psql_in("todo", "SELECT count(*) FROM todos"),
        "3",
        "the database agrees"
    );

    // The page and its assets, with a strict content security policy.
    let page = app.call("GET", "/", None);
    assert_eq!(page.status, 200);
    assert!(
        page.text().contains("<table id=\"todos\">"),
        "{}",
        page.text()
    );
    assert!(
        page.header("content-security-policy")
            .is_some_and(|c| c.contains("script-src 'self'")),
        "{:?}",
        page.headers
    );
    for asset in ["/app.js", "/app.css"] {
        assert_eq!(app.call("GET", asset, None).status, 200, "{asset}");
    }
}

#[test]
fn bad_input_gets_a_clear_4xx_and_sql_is_never_injected() {
    let app = App::start(Variant {
        name: "bad",
        ..Variant::default()
    });
    app.add("Keep me", "home", &["keep"]);
    let error = |method: &str, path: &str, body: Option<&serde_json::Value>| {
        let r = app.call(method, path, body);
        let text = r.text();
        let v: serde_json::Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {text}"));
        (
            r.status,
            v["error"].as_str().unwrap_or_default().to_string(),
        )
    };

    // Oversized and empty titles; the limit is exactly 200 characters (not bytes).
    let long = "é".repeat(200);
    assert_eq!(app.add(&long, "home", &[])["title"], long.as_str());
    let (status, why) = error(
        "POST",
        "/api/todos",
        Some(&json!({ "title": "a".repeat(201) })),
    );
    assert_eq!(
        (status, why.as_str()),
        (400, "title: 201 characters; at most 200 allowed")
    );
    let (status, why) = error("POST", "/api/todos", Some(&json!({ "title": "   " })));
    assert_eq!((status, why.as_str()), (400, "title: must not be empty"));
    let (status, why) = error("POST", "/api/todos", Some(&json!({ "title": "a\u{0}b" })));
    assert_eq!(
        (status, why.as_str()),
        (400, "title: must not contain control characters")
    );
    let (status, why) = error(
        "POST",
        "/api/todos",
        Some(&json!({ "title": "t", "list": "l".repeat(41) })),
    );
    assert_eq!(
        (status, why.as_str()),
        (400, "list: 41 characters; at most 40 allowed")
    );
    let (status, why) = error(
        "POST",
        "/api/todos",
        Some(&json!({ "title": "t", "tags": ["a b"] })),
    );
    assert_eq!(
        (status, why.as_str()),
        (400, "tag \"a b\": must be 1 to 24 of a-z, 0-9 and -")
    );
    let (status, why) = error(
        "POST",
        "/api/todos",
        Some(&json!({ "title": "t", "tags": ["1","2","3","4","5","6","7","8","9"] })),
    );
    assert_eq!(
        (status, why.as_str()),
        (400, "tags: 9 given; at most 8 allowed")
    );
    // Malformed and unexpected bodies.
    let (status, why) = error(
        "POST",
        "/api/todos",
        Some(&json!({ "title": "t", "owner": "root" })),
    );
    assert_eq!(status, 400);
    assert!(why.contains("unknown field `owner`"), "{why}");
    let (status, why) = error("POST", "/api/todos", Some(&json!({ "tags": [] })));
    assert_eq!(status, 400);
    assert!(why.contains("missing field `title`"), "{why}");
    let big = format!("{{\"title\": \"{}\"}}", "a".repeat(20_000));
    let r = request(
        app.up().http,
        "POST",
        "/api/todos",
        &[
            ("Host", "bad.localhost"),
            ("Content-Type", "application/json"),
        ],
        big.as_bytes(),
    );
    assert_eq!(r.status, 413, "{}", r.text());
    let r = request(
        app.up().http,
        "POST",
        "/api/todos",
        &[
            ("Host", "bad.localhost"),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        b"title=x",
    );
    assert_eq!(r.status, 415, "{}", r.text());
    let (status, why) = error("PUT", "/api/todos", None);
    assert_eq!(
        (status, why.as_str()),
        (405, "use GET or POST on /api/todos")
    );
    let (status, _) = error("GET", "/api/todos/abc", None);
    assert_eq!(status, 404);

    // Filters that carry SQL: a bad status or tag is a 400 naming the parameter; a list name
    // or search text is taken literally (and matches nothing).
    let (status, why) = error("GET", "/api/todos?status=open'%20OR%20'1'='1", None);
    assert_eq!(status, 400);
    assert!(why.starts_with("status \"open' OR '1'='1\""), "{why}");
    let (status, why) = error(
        "GET",
        "/api/todos?tag=x'%3B%20DROP%20TABLE%20todos%3B--",
        None,
    );
    assert_eq!(status, 400);
    assert!(why.contains("must be 1 to 24 of a-z, 0-9 and -"), "{why}");
    let (status, why) = error("GET", "/api/todos?sort=id;DROP", None);
    assert_eq!(status, 400);
    assert!(why.starts_with("unknown query parameter \"sort\""), "{why}");
    for query in [
        "list=home'%20OR%20'1'%3D'1",
        "list=home'%3B%20DELETE%20FROM%20todos%3B--",
        "q=%25",
        "q=%25'%20OR%201%3D1%20--",
        "q=_",
    ] {
        assert_eq!(
            app.titles(query),
            Vec::<String>::new(),
            "?{query} must match nothing"
        );
    }
    // SQL in a title is stored and read back literally.
    let evil = "Robert'); DROP TABLE todos;--";
    app.add(evil, "x' OR '1'='1", &[]);
    assert_eq!(app.titles("list=x'%20OR%20'1'%3D'1"), [evil]);
    assert_eq!(app.titles("q=DROP+TABLE"), [evil]);
    assert_eq!(
        app.pg.psql_in("todo", "SELECT count(*) FROM todos"),
        "3",
        "every row is still there"
    );
    // None of that was a database problem.
    assert_eq!(
        app.stats()["lastError"],
        serde_json::Value::Null,
        "{}",
        app.stats()
    );
}

#[test]
fn the_pool_stays_bounded_under_50_concurrent_requests() {
    const POOL: u32 = 4;
    const CLIENTS: usize = 50;
    const EACH: usize = 8;
    let app = Arc::new(App::start(Variant {
        name: "busy",
        pool_size: POOL,
        ..Variant::default()
    }));
    for i in 0..20 {
        app.add(&format!("seed {i}"), "load", &["seed"]);
    }

    // Sample the server's sessions while the clients run.
    let running = Arc::new(AtomicBool::new(true));
    let peak = Arc::new(AtomicU32::new(0));
    let samples = Arc::new(AtomicU32::new(0));
    let sampler = {
        let (app, running, peak, samples) =
            (app.clone(), running.clone(), peak.clone(), samples.clone());
        std::thread::spawn(move || {
            while running.load(Ordering::Relaxed) {
                let n = app.server_connections();
                peak.fetch_max(n, Ordering::Relaxed);
                samples.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let start = Arc::new(Barrier::new(CLIENTS));
    let started = Instant::now();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (app, start) = (app.clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                for k in 0..EACH {
                    let r = if k % 4 == 3 {
                        app.call(
                            "POST",
                            "/api/todos",
                            Some(
                                &json!({ "title": format!("client {c} item {k}"), "list": "load" }),
                            ),
                        )
                    } else {
                        app.call("GET", "/api/todos?list=load&status=open", None)
                    };
                    assert!(
                        r.status == 200 || r.status == 201,
                        "client {c} request {k}: {} {}",
                        r.status,
                        r.text()
                    );
                }
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    let elapsed = started.elapsed();
    running.store(false, Ordering::Relaxed);
    sampler.join().unwrap();

    let stats = app.stats();
    let peak = peak.load(Ordering::Relaxed);
    println!(
        "{} requests from {CLIENTS} clients in {elapsed:.2?}; server sessions: peak {peak} in {} samples; pool: {stats}",
        CLIENTS * EACH,
        samples.load(Ordering::Relaxed)
    );
    assert!(samples.load(Ordering::Relaxed) >= 3, "too few samples");
    assert!(
        peak <= POOL,
        "{peak} server sessions, more than the pool's {POOL}"
    );
    assert!(
        peak >= 2,
        "the load never needed a second connection (peak {peak})"
    );
    assert!(
        stats["max"] == POOL && stats["open"].as_u64().unwrap() <= u64::from(POOL),
        "{stats}"
    );
    // Connections were reused, not reopened.
    assert!(
        stats["openedTotal"].as_u64().unwrap() <= u64::from(POOL),
        "{stats}"
    );
    assert_eq!(
        app.pg.psql_in(
            "todo",
            "SELECT count(*) FROM todos WHERE title LIKE 'client %'"
        ),
        (CLIENTS * EACH / 4).to_string()
    );
}

#[test]
fn the_service_reconnects_after_postgres_restarts() {
    let mut app = App::start(Variant {
        name: "phoenix",
        ..Variant::default()
    });
    app.add("Survive a restart", "ops", &[]);
    assert_eq!(app.titles(""), ["Survive a restart"]);
    assert_eq!(app.server_connections(), 1);

    // Down: calls fail at once with 503, naming the cause in the guest's own terms.
    app.pg.stop();
    let r = app.call("GET", "/api/todos", None);
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(
        r.text()
            .contains("database unavailable: connect 127.0.0.1:5432: connection-refused"),
        "{}",
        r.text()
    );
    let stats = app.stats();
    assert_eq!(stats["open"], 0, "{stats}");

    // Up again: the next call connects afresh.
    app.pg.start_again();
    assert_eq!(app.titles(""), ["Survive a restart"]);

    // Restarted under an idle pooled connection: the server ends that session; the service
    // notices on first use, drops it and sends the request again on a new connection, so
    // not even the first request after the restart fails.
    app.pg.stop();
    app.pg.start_again();
    let before = app.stats()["discardedTotal"].as_u64().unwrap();
    assert_eq!(app.titles(""), ["Survive a restart"]);
    let stats = app.stats();
    assert!(
        stats["discardedTotal"].as_u64().unwrap() > before,
        "{stats}"
    );
    assert!(
        stats["lastError"]
            .as_str()
            .is_some_and(|e| e.contains("57P01") || e.contains("closed")),
        "{stats}"
    );
    app.add("Written after the restart", "ops", &[]);
    assert_eq!(app.titles("list=ops").len(), 2);
    assert_eq!(app.server_connections(), 1);
}

#[test]
fn the_guest_reaches_the_redirected_port_and_nothing_else() {
    let app = App::start(Variant {
        name: "fenced",
        ..Variant::default()
    });
    // The control: through the redirect (guest 127.0.0.1:5432), it works.
    app.add("Reachable", "home", &[]);
    let admin = app.up().admin;

    // The same service pointed anywhere else: the host refuses the connect.
    for (name, addr) in [
        ("direct", format!("127.0.0.1:{}", app.pg.port)),
        ("admin", format!("127.0.0.1:{}", admin.port())),
        ("other-loopback", "127.0.0.2:5432".to_string()),
        ("other-port", "127.0.0.1:5433".to_string()),
    ] {
        app.deploy(&Variant {
            name,
            pg_addr: Some(addr.clone()),
            ..Variant::default()
        });
        let r = app.call_on(name, "GET", "/api/todos", None);
        assert_eq!(r.status, 503, "{name}: {}", r.text());
        assert!(
            r.text().contains(&format!(
                "database unavailable: connect {addr}: access-denied"
            )),
            "{name}: {}",
            r.text()
        );
        let logs = app.up().cli(&["logs", name]);
        let logs = crate::common::stdout(&logs);
        assert!(logs.contains("access-denied"), "{name} logs:\n{logs}");
    }
    // Nothing reached the server from those workloads.
    assert_eq!(app.server_connections(), 1);
}
