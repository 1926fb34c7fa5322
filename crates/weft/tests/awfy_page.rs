//! The "are we fast yet" page (`docs/awfy/index.html`) in headless Chromium from a `file://`
//! URL: (1) a history made up *for the test* (three runs in a temporary copy of the page, never
//! published) is drawn completely: a chart per figure with a point per recorded value, the
//! ratio charts, the latest-run table, the change against the previous run; (2) the committed
//! history is drawn (or, while it has no run, the page says so and draws nothing). Also checks
//! that `history.js` (what the page loads) holds exactly the records of `history.jsonl` (what
//! `benches/awfy.sh` appends).
// Test code: a failed unwrap is a test failure with a location (docs/lints.md).
#![allow(clippy::unwrap_used)]

#[path = "common/chromium.rs"]
mod chromium;
mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use chromium::Browser;
use serde_json::{Value, json};

fn history() -> Vec<Value> {
    let path = common::repo_root().join("docs/awfy/history.jsonl");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run bash benches/awfy.sh)", path.display()));
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("{}:{}: {e}", path.display(), i + 1))
        })
        .collect()
}

#[test]
fn history_js_matches_history_jsonl() {
    let path = common::repo_root().join("docs/awfy/history.js");
    let js = std::fs::read_to_string(&path).unwrap();
    let start = js.find("window.AWFY_HISTORY = ").expect("the assignment") + 22;
    let array = js[start..].trim_end().trim_end_matches(';');
    // The generator writes a trailing comma after each record; JSON does not allow the last.
    let array = array.replacen(",\n]", "\n]", 1);
    let from_js: Vec<Value> = serde_json::from_str(&array).unwrap_or_else(|e| {
        panic!(
            "{} is not what benches/awfy_record.py writes ({e}): \
             regenerate it with python3 benches/awfy_record.py --regenerate-js",
            path.display()
        )
    });
    assert_eq!(
        from_js,
        history(),
        "history.js is stale: python3 benches/awfy_record.py --regenerate-js"
    );
}

#[test]
fn history_records_have_the_documented_shape() {
    // Every committed record (none before the first full run; the page test checks that state).
    for r in &history() {
        assert_eq!(r["schema"], 1);
        for key in ["date", "commit", "machine", "settings", "figures", "ratios"] {
            assert!(!r[key].is_null(), "a record without {key}: {r}");
        }
        assert_eq!(r["short"], false, "short runs are never recorded");
        for (name, f) in r["figures"].as_object().unwrap() {
            assert!(
                matches!(f["better"].as_str(), Some("higher" | "lower")),
                "{name}"
            );
            let values = f["values"].as_object().unwrap();
            assert!(!values.is_empty(), "{name} has no values");
            assert!(values.values().all(|v| v.as_f64().is_some_and(|x| x > 0.0)));
        }
    }
}

/// What the page must draw for `records`: points per figure chart, ratio points, the figures
/// of the latest run.
struct Expected {
    points: BTreeMap<String, usize>,
    ratio_points: usize,
    latest_figures: BTreeSet<String>,
    latest_commit: String,
}

fn expected(records: &[Value]) -> Expected {
    let full: Vec<&Value> = records.iter().filter(|r| r["short"] != true).collect();
    let mut points: BTreeMap<String, usize> = BTreeMap::new();
    for r in &full {
        for (name, f) in r["figures"].as_object().unwrap() {
            *points.entry(name.clone()).or_default() += f["values"].as_object().unwrap().len();
        }
    }
    let latest = full.last().expect("a full run");
    Expected {
        points,
        ratio_points: full
            .iter()
            .map(|r| r["ratios"].as_object().unwrap().len())
            .sum(),
        latest_figures: latest["figures"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect(),
        latest_commit: latest["commit"].as_str().unwrap().to_string(),
    }
}

/// Opens `page` from a file:// URL and waits until it has rendered; returns the number of runs
/// it says it drew. The page must report no error.
async fn open(browser: &Browser, page: &Path) -> u64 {
    let page = page.canonicalize().unwrap();
    browser
        .client
        .goto(&format!("file://{}", page.display()))
        .await
        .unwrap();
    let rendered = browser
        .wait_for("the page to render", 20, || async {
            let v = browser
                .eval("return document.body.getAttribute('data-rendered')")
                .await;
            v.as_str().map(str::to_string)
        })
        .await;
    let errors = browser.eval("return window.AWFY_ERRORS").await;
    assert_eq!(errors, json!([]), "the page reported errors");
    rendered.parse().unwrap()
}

/// Checks everything `want` says against the page that is open.
async fn check_drawn(browser: &Browser, want: &Expected) {
    let drawn = browser
        .eval(
            "const out = {};\
             for (const s of document.querySelectorAll('#figures svg[data-chart]'))\
               out[s.getAttribute('data-chart')] = s.querySelectorAll('circle.point').length;\
             return out;",
        )
        .await;
    let drawn: BTreeMap<String, usize> = serde_json::from_value(drawn).unwrap();
    assert_eq!(drawn, want.points, "points drawn per figure chart");
    let drawn_ratios = browser
        .eval(
            "return [...document.querySelectorAll('svg[data-chart^=ratios] circle.point')].length",
        )
        .await;
    assert_eq!(drawn_ratios.as_u64(), Some(want.ratio_points as u64));
    let rows = browser
        .eval(
            "return [...document.querySelectorAll('#latest tbody tr')]\
               .map((tr) => tr.getAttribute('data-figure'))",
        )
        .await;
    let rows: BTreeSet<String> = serde_json::from_value(rows).unwrap();
    assert_eq!(rows, want.latest_figures, "the latest-run table");
    let meta = browser.text("#latest-meta").await.unwrap_or_default();
    assert!(
        meta.contains(&want.latest_commit),
        "the latest run's commit is shown: {meta}"
    );
}

/// A record in the format of benches/awfy_record.py; the numbers are made up for the test.
fn made_up_record(
    date: &str,
    commit: &str,
    short: bool,
    p2: (f64, f64, f64),
    with_calls: bool,
) -> Value {
    let mut figures = json!({
        "http_p2_rps": {"title": "P2 hello", "unit": "req/s", "better": "higher",
            "values": {"weft": p2.0, "wasmtime": p2.1, "native": p2.2}},
        "cold_start_ms": {"title": "Cold start", "unit": "ms", "better": "lower",
            "values": {"weft": 40.0, "weft_cached": 9.0, "wasmtime": 60.0}},
    });
    let mut ratios = json!({
        "http_p2_rps weft/wasmtime": p2.0 / p2.1,
        "http_p2_rps weft/native": p2.0 / p2.2,
        "cold_start_ms weft_cached/weft": 40.0 / 9.0,
    });
    if with_calls {
        figures["call_ns"] = json!({"title": "Call across components", "unit": "ns",
            "better": "lower", "values": {"composed": 20.0, "linked": 95.0}});
        ratios["call_ns composed/linked"] = json!(95.0 / 20.0);
    }
    json!({"schema": 1, "date": date, "commit": commit, "dirty": false, "short": short,
        "machine": {"cpu": "test cpu", "cores": 2, "memory_gib": 8, "kernel": "6",
            "shared": false, "loadavg_start": [0.1, 0.1, 0.1], "loadavg_end": [0.2, 0.2, 0.2]},
        "settings": {"profile": "release", "rounds": 3, "duration_s": 10.0, "connections": 32,
            "wrk_threads": 1, "cold_runs": 7},
        "peers": {"wasmtime": "48.0.10"}, "figures": figures, "ratios": ratios, "note": ""})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn awfy_page_draws_every_figure_and_ratio_of_a_made_up_history() {
    // Three full runs (the last adds a figure), and a short one the page must leave out.
    let records = vec![
        made_up_record(
            "2026-11-01T00:00:00Z",
            "aaaa111",
            false,
            (30000.0, 18000.0, 90000.0),
            false,
        ),
        made_up_record(
            "2026-11-08T00:00:00Z",
            "bbbb222",
            false,
            (33000.0, 18500.0, 91000.0),
            false,
        ),
        made_up_record(
            "2026-11-09T00:00:00Z",
            "short99",
            true,
            (1.0, 1.0, 1.0),
            false,
        ),
        made_up_record(
            "2026-11-15T00:00:00Z",
            "cccc333",
            false,
            (36300.0, 18000.0, 90000.0),
            true,
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        common::repo_root().join("docs/awfy/index.html"),
        dir.path().join("index.html"),
    )
    .unwrap();
    // The format benches/awfy_record.py writes.
    let mut js = String::from("window.AWFY_HISTORY = [\n");
    for r in &records {
        js.push_str(&format!("{r},\n"));
    }
    js.push_str("];\n");
    std::fs::write(dir.path().join("history.js"), js).unwrap();

    let browser = Browser::start().await;
    assert_eq!(open(&browser, &dir.path().join("index.html")).await, 3);
    let want = expected(&records);
    assert_eq!(want.points["http_p2_rps"], 9);
    assert_eq!(want.points["call_ns"], 2);
    check_drawn(&browser, &want).await;
    // The latest run against the one before: P2 weft 33000 -> 36300 is +10.0%.
    let change = browser
        .eval(
            "const tr = document.querySelector(\"#latest tr[data-figure='http_p2_rps']\");\
             return tr.lastElementChild.textContent;",
        )
        .await;
    assert_eq!(change.as_str(), Some("+10.0%"));
    let ratio = browser
        .eval(
            "const tr = document.querySelector(\"#latest tr[data-figure='http_p2_rps']\");\
             return tr.children[6].textContent;",
        )
        .await;
    assert_eq!(
        ratio.as_str(),
        Some("2.02×"),
        "weft / wasmtime of the latest run"
    );
    let empty_hidden = browser
        .eval("return document.getElementById('empty').hidden")
        .await;
    assert_eq!(empty_hidden.as_bool(), Some(true));
    browser.client.set_window_size(1440, 2500).await.unwrap();
    browser.screenshot("awfy-made-up-history.png").await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn awfy_page_renders_the_committed_history() {
    let records = history();
    let full = records.iter().filter(|r| r["short"] != true).count();
    let browser = Browser::start().await;
    let drawn = open(&browser, &common::repo_root().join("docs/awfy/index.html")).await;
    assert_eq!(drawn, full as u64, "runs drawn");
    let empty_hidden = browser
        .eval("return document.getElementById('empty').hidden")
        .await
        .as_bool();
    if full == 0 {
        // No run recorded yet: the page says so and draws no chart.
        assert_eq!(
            empty_hidden,
            Some(false),
            "the page must say there is no run yet"
        );
        let charts = browser
            .eval("return document.querySelectorAll('svg[data-chart]').length")
            .await;
        assert_eq!(charts.as_u64(), Some(0));
    } else {
        assert_eq!(empty_hidden, Some(true));
        check_drawn(&browser, &expected(&records)).await;
    }
    // The whole page, for docs/screenshots.
    browser.client.set_window_size(1440, 2500).await.unwrap();
    browser.screenshot("awfy.png").await;
    browser.close().await;
}
