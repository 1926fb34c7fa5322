//! The todo page in headless Chromium (Debian's `chromium` and `chromium-driver`, installed
//! by `scripts/test.sh` when missing), driven through chromedriver with `fantoccini`: add,
//! mark done, filter, delete, the live refresh, a title that looks like HTML, and a
//! screenshot.

use std::time::{Duration, Instant};

use fantoccini::{Client, Locator};
use serde_json::{Value, json};

use crate::chromium::Browser;
use crate::{App, Variant};

/// Polls `check` (a JavaScript expression) until it is true, up to `secs` seconds.
async fn wait_js(c: &Client, what: &str, check: &str, secs: u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let script = format!("return Boolean({check});");
    loop {
        if c.execute(&script, vec![]).await.unwrap() == Value::Bool(true) {
            return;
        }
        if Instant::now() >= deadline {
            let rows = c
                .execute(
                    "return [...document.querySelectorAll('#todos tbody tr')].map(r => r.innerText);",
                    vec![],
                )
                .await
                .unwrap();
            let error = c
                .execute("return document.getElementById('error').innerText;", vec![])
                .await
                .unwrap();
            panic!("timed out waiting until {what} ({check}); rows: {rows}; error box: {error}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The visible rows' titles, top to bottom.
async fn titles(c: &Client) -> Vec<String> {
    let v = c
        .execute(
            "return [...document.querySelectorAll('#todos tbody td.title')].map(t => t.textContent);",
            vec![],
        )
        .await
        .unwrap();
    serde_json::from_value(v).unwrap()
}

/// A JavaScript expression: the row whose title is exactly `title`.
fn row_js(title: &str) -> String {
    format!(
        "[...document.querySelectorAll('#todos tbody tr')].find(r => r.querySelector('td.title').textContent === {})",
        json!(title)
    )
}

/// A JavaScript expression: the visible titles are exactly `expected`, in order.
fn shown_js(expected: &[&str]) -> String {
    format!(
        "JSON.stringify([...document.querySelectorAll('#todos tbody td.title')].map(t => t.textContent)) === {}",
        json!(serde_json::to_string(expected).unwrap())
    )
}

async fn add(c: &Client, title: &str, list: &str, tags: &str) {
    let field = |id: &'static str| async move { c.find(Locator::Id(id)).await.unwrap() };
    field("new-title").await.send_keys(title).await.unwrap();
    let list_input = field("new-list").await;
    list_input.clear().await.unwrap();
    list_input.send_keys(list).await.unwrap();
    field("new-tags").await.send_keys(tags).await.unwrap();
    field("add").await.click().await.unwrap();
    wait_js(c, &format!("{title:?} is shown"), &row_js(title), 10).await;
    wait_js(
        c,
        "the form is cleared",
        "document.getElementById('new-title').value === ''",
        10,
    )
    .await;
}

/// Picks `value` in the list filter's dropdown. The page rebuilds the options when the lists
/// change (a live refresh can land between finding an option and clicking it): retry then.
async fn select_list(c: &Client, value: &str) {
    let mut last = None;
    for _ in 0..5 {
        let select = c.find(Locator::Id("filter-list")).await.unwrap();
        match select.select_by_value(value).await {
            Ok(()) => return,
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("could not pick {value:?} in the list filter: {last:?}");
}

async fn click(c: &Client, css: &str) {
    c.find(Locator::Css(css))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

async fn click_in_row(c: &Client, title: &str, css: &str) {
    let done = c
        .execute(
            &format!(
                "const r = {}; if (!r) return false; r.querySelector({}).click(); return true;",
                row_js(title),
                json!(css)
            ),
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        done,
        Value::Bool(true),
        "no row {title:?} to click {css} in"
    );
}

async fn click_through(app: &App, c: &Client, base: &str) {
    c.goto(base).await.unwrap();
    wait_js(
        c,
        "the page loaded",
        "document.getElementById('updated').textContent.includes('shown')",
        20,
    )
    .await;
    assert_eq!(c.title().await.unwrap(), "Todo · Weft");
    assert_eq!(titles(c).await, Vec::<String>::new());

    // Add, through the form.
    add(c, "Buy oat milk", "home", "shop, urgent").await;
    add(c, "Call the plumber", "home", "").await;
    add(c, "Ship the Weft demo", "work", "weft urgent").await;
    add(c, "Review the pool benchmark", "work", "weft").await;
    add(c, "Read the WASI 0.3 notes", "inbox", "reading").await;
    let html = "<img src=x onerror=\"document.title='pwned'\">";
    add(c, html, "inbox", "").await;
    // A title that looks like HTML is shown as text: no element, no script ran.
    assert_eq!(
        c.execute(
            "return document.querySelectorAll('#todos tbody img').length;",
            vec![]
        )
        .await
        .unwrap(),
        json!(0)
    );
    assert_eq!(c.title().await.unwrap(), "Todo · Weft");
    // Delete it, with its row's button.
    click_in_row(c, html, "button.delete").await;
    wait_js(
        c,
        "the deleted row is gone",
        &format!("!{}", row_js(html)),
        10,
    )
    .await;
    assert_eq!(
        titles(c).await,
        [
            "Read the WASI 0.3 notes",
            "Review the pool benchmark",
            "Ship the Weft demo",
            "Call the plumber",
            "Buy oat milk"
        ]
    );

    // Mark done with the checkboxes; the server has it.
    click_in_row(c, "Ship the Weft demo", "input.done").await;
    wait_js(
        c,
        "the row shows done",
        &format!(
            "{}?.classList.contains('is-done')",
            row_js("Ship the Weft demo")
        ),
        10,
    )
    .await;
    click_in_row(c, "Call the plumber", "input.done").await;
    wait_js(
        c,
        "the second row shows done",
        &format!(
            "{}?.classList.contains('is-done')",
            row_js("Call the plumber")
        ),
        10,
    )
    .await;
    assert_eq!(
        app.titles("status=done"),
        ["Ship the Weft demo", "Call the plumber"]
    );

    // Filters: status, list, tag (a chip click), search.
    click(c, ".status button[data-status=open]").await;
    wait_js(
        c,
        "only open todos",
        &shown_js(&[
            "Read the WASI 0.3 notes",
            "Review the pool benchmark",
            "Buy oat milk",
        ]),
        10,
    )
    .await;
    click(c, ".status button[data-status=done]").await;
    wait_js(
        c,
        "only done todos",
        &shown_js(&["Ship the Weft demo", "Call the plumber"]),
        10,
    )
    .await;
    click(c, ".status button[data-status=all]").await;
    wait_js(
        c,
        "the list filter offers `home`",
        "[...document.querySelectorAll('#filter-list option')].some(o => o.value === 'home')",
        10,
    )
    .await;
    select_list(c, "home").await;
    wait_js(
        c,
        "only the home list",
        &shown_js(&["Buy oat milk", "Call the plumber"]),
        10,
    )
    .await;
    select_list(c, "").await;
    click_in_row(c, "Buy oat milk", "button.tag").await; // its first tag: #shop
    wait_js(c, "only #shop", &shown_js(&["Buy oat milk"]), 10).await;
    let tag = c.find(Locator::Id("filter-tag")).await.unwrap();
    tag.clear().await.unwrap();
    tag.send_keys("urgent").await.unwrap();
    wait_js(
        c,
        "only #urgent",
        &shown_js(&["Buy oat milk", "Ship the Weft demo"]),
        10,
    )
    .await;
    tag.clear().await.unwrap();
    // `clear` sends no input event: type and delete a character to refresh.
    tag.send_keys(" ").await.unwrap();
    c.find(Locator::Id("filter-search"))
        .await
        .unwrap()
        .send_keys("the")
        .await
        .unwrap();
    wait_js(
        c,
        "titles with `the`",
        &shown_js(&[
            "Read the WASI 0.3 notes",
            "Review the pool benchmark",
            "Ship the Weft demo",
            "Call the plumber",
        ]),
        10,
    )
    .await;
    // Empty both text filters the way a user's select-all-and-delete would (`clear` sends no
    // input event), so the placeholders show again.
    c.execute(
        "for (const id of ['filter-tag', 'filter-search']) { const e = document.getElementById(id); \
         e.value = ''; e.dispatchEvent(new Event('input', { bubbles: true })); }",
        vec![],
    )
    .await
    .unwrap();
    wait_js(
        c,
        "every todo again",
        "document.querySelectorAll('#todos tbody tr').length === 5",
        10,
    )
    .await;

    // The table refreshes by itself: a todo added elsewhere shows up within a refresh.
    app.add("Added from another tab", "inbox", &["live"]);
    let t0 = Instant::now();
    wait_js(
        c,
        "the live refresh shows the new todo",
        &row_js("Added from another tab"),
        8,
    )
    .await;
    println!(
        "the live table picked up a todo added elsewhere after {:.1?}",
        t0.elapsed()
    );

    // The footer shows the pool.
    wait_js(
        c,
        "the footer shows the pool",
        "/pool: [0-4] of 4 connections open/.test(document.getElementById('pool').textContent)",
        10,
    )
    .await;
}

#[test]
fn chromium_adds_marks_done_filters_and_takes_a_screenshot() {
    let app = App::start(Variant {
        name: "todo",
        ..Variant::default()
    });
    let base = format!("http://todo.localhost:{}/", app.up().http.port());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        // Dropping the browser (also on a panic) ends chromedriver and Chromium.
        let browser = Browser::start().await;
        tokio::time::timeout(
            Duration::from_secs(180),
            click_through(&app, &browser.client, &base),
        )
        .await
        .expect("the browser test finishes within 180 s");
        let path = browser.screenshot("todo.png").await;
        let size = std::fs::metadata(&path).unwrap().len();
        assert!(size > 20_000, "suspiciously small screenshot: {size} bytes");
        println!("screenshot: {} ({size} bytes)", path.display());
        browser.close().await;
    });
}
