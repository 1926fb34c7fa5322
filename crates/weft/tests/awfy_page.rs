//! The "are we fast yet" page (`docs/awfy/index.html`) renders the committed history from a
//! `file://` URL in headless Chromium: a chart per figure with a point per recorded value, the
//! ratio charts, and the latest-run table. Also checks that `history.js` (what the page loads)
//! holds exactly the records of `history.jsonl` (what `benches/awfy.sh` appends).
// Test code: a failed unwrap is a test failure with a location (docs/lints.md).
#![allow(clippy::unwrap_used)]

#[path = "common/chromium.rs"]
mod chromium;
mod common;

use std::collections::{BTreeMap, BTreeSet};

use chromium::Browser;
use serde_json::Value;

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
    let records = history();
    assert!(!records.is_empty(), "no records: run bash benches/awfy.sh");
    for r in &records {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn awfy_page_renders_every_figure_of_the_committed_history() {
    let records = history();
    let full: Vec<&Value> = records.iter().filter(|r| r["short"] != true).collect();
    // What the page must draw: per figure, one point per (run, system) value.
    let mut points: BTreeMap<String, usize> = BTreeMap::new();
    for r in &full {
        for (name, f) in r["figures"].as_object().unwrap() {
            *points.entry(name.clone()).or_default() += f["values"].as_object().unwrap().len();
        }
    }
    let latest = full.last().expect("a full run in the history");
    let latest_figures: BTreeSet<String> = latest["figures"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    let ratio_points: usize = full
        .iter()
        .map(|r| r["ratios"].as_object().unwrap().len())
        .sum();

    let browser = Browser::start().await;
    let page = common::repo_root()
        .join("docs/awfy/index.html")
        .canonicalize()
        .unwrap();
    browser
        .client
        .goto(&format!("file://{}", page.display()))
        .await
        .unwrap();
    browser
        .wait_for("the page to render", 20, || async {
            let v = browser
                .eval("return document.body.getAttribute('data-rendered')")
                .await;
            v.as_str().map(str::to_string)
        })
        .await;
    let errors = browser.eval("return window.AWFY_ERRORS").await;
    assert_eq!(errors, serde_json::json!([]), "the page reported errors");

    let drawn = browser
        .eval(
            "const out = {};\
             for (const s of document.querySelectorAll('#figures svg[data-chart]'))\
               out[s.getAttribute('data-chart')] = s.querySelectorAll('circle.point').length;\
             return out;",
        )
        .await;
    let drawn: BTreeMap<String, usize> = serde_json::from_value(drawn).unwrap();
    assert_eq!(drawn, points, "points drawn per figure chart");

    let drawn_ratios = browser
        .eval(
            "return [...document.querySelectorAll('svg[data-chart^=ratios] circle.point')].length",
        )
        .await;
    assert_eq!(drawn_ratios.as_u64(), Some(ratio_points as u64));

    let rows = browser
        .eval(
            "return [...document.querySelectorAll('#latest tbody tr')]\
               .map((tr) => tr.getAttribute('data-figure'))",
        )
        .await;
    let rows: BTreeSet<String> = serde_json::from_value(rows).unwrap();
    assert_eq!(rows, latest_figures, "the latest-run table");
    let meta = browser.text("#latest-meta").await.unwrap_or_default();
    assert!(
        meta.contains(latest["commit"].as_str().unwrap()),
        "the latest run's commit is shown: {meta}"
    );
    // The whole page, for docs/screenshots.
    browser.client.set_window_size(1440, 2500).await.unwrap();
    browser.screenshot("awfy.png").await;
    browser.close().await;
}
