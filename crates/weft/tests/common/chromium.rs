//! Headless Chromium for the page tests: Debian's `chromium` driven through `chromedriver`
//! (package `chromium-driver`) over WebDriver with `fantoccini`. `scripts/test.sh` installs both
//! when missing; a test that cannot find them fails with the install command, never skips.

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// A chromedriver process and one headless Chromium session, both ended on drop.
pub struct Browser {
    pub client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local addr").port()
}

impl Browser {
    /// Starts chromedriver on a free loopback port and opens a headless Chromium with a fresh
    /// profile and no background network traffic.
    pub async fn start() -> Browser {
        for tool in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                std::path::Path::new(tool).exists(),
                "{tool} is missing: install Debian's chromium and chromium-driver \
                 (`apt-get install chromium chromium-driver`; scripts/test.sh does it)"
            );
        }
        let mut last_error = String::new();
        // The port is free when chosen but could be taken before chromedriver binds it: retry.
        for _ in 0..3 {
            let port = free_port();
            let mut driver = Command::new(CHROMEDRIVER)
                .arg(format!("--port={port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                // Its own process group, so that the Chromium processes it starts end with it.
                .process_group(0)
                .spawn()
                .expect("spawn chromedriver");
            let profile = tempfile::tempdir().expect("profile dir");
            let mut caps = serde_json::Map::new();
            caps.insert("browserName".into(), "chrome".into());
            caps.insert(
                "goog:chromeOptions".into(),
                serde_json::json!({
                    "binary": CHROMIUM,
                    "args": [
                        "--headless",
                        "--no-sandbox",
                        "--disable-gpu",
                        "--disable-background-networking",
                        "--disable-component-update",
                        "--disable-sync",
                        "--disable-quic",
                        "--no-first-run",
                        "--disable-dev-shm-usage",
                        "--window-size=1440,1000",
                        format!("--user-data-dir={}", profile.path().display()),
                    ],
                }),
            );
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if let Ok(Some(status)) = driver.try_wait() {
                    last_error = format!("chromedriver exited: {status}");
                    break;
                }
                match ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
                    .capabilities(caps.clone())
                    .connect(&format!("http://127.0.0.1:{port}"))
                    .await
                {
                    Ok(client) => {
                        return Browser {
                            client,
                            driver,
                            _profile: profile,
                        };
                    }
                    Err(e) => {
                        last_error = e.to_string();
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }
            kill_group(&mut driver);
        }
        panic!("could not start headless Chromium through chromedriver: {last_error}");
    }

    /// Waits up to `secs` for `check` to return `Some`, polling every 100 ms.
    pub async fn wait_for<T, F, Fut>(&self, what: &str, secs: u64, mut check: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(v) = check().await {
                return v;
            }
            if Instant::now() > deadline {
                let text = self.text("body").await.unwrap_or_default();
                panic!("timed out after {secs} s waiting for {what}; the page says:\n{text}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The text of the first element matching `css`, if there is one.
    pub async fn text(&self, css: &str) -> Option<String> {
        let e = self.client.find(Locator::Css(css)).await.ok()?;
        e.text().await.ok()
    }

    /// Runs `script` (a function body; `return` a value) in the page.
    pub async fn eval(&self, script: &str) -> serde_json::Value {
        self.client
            .execute(script, vec![])
            .await
            .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    /// Saves a PNG screenshot of the viewport to `name` under the test's temporary directory,
    /// and under `$WEFT_SCREENSHOT_DIR` too when that is set (how docs/ gets its pictures).
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.client.screenshot().await.expect("screenshot");
        assert!(png.starts_with(b"\x89PNG"), "the screenshot is not a PNG");
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
        std::fs::create_dir_all(&dir).expect("screenshot dir");
        let path = dir.join(name);
        std::fs::write(&path, &png).expect("write screenshot");
        if let Some(extra) = std::env::var_os("WEFT_SCREENSHOT_DIR") {
            std::fs::write(PathBuf::from(extra).join(name), &png).expect("write screenshot");
        }
        path
    }

    /// Ends the session and chromedriver.
    pub async fn close(self) {
        let _ = self.client.clone().close().await;
        // Drop ends chromedriver's process group.
    }
}

/// Kills chromedriver and every process of its group (the browser it started), then reaps it.
fn kill_group(driver: &mut Child) {
    if let Some(pid) = rustix::process::Pid::from_raw(driver.id() as i32) {
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
    }
    let _ = driver.kill();
    let _ = driver.wait();
}

impl Drop for Browser {
    fn drop(&mut self) {
        kill_group(&mut self.driver);
    }
}
