//! A byte progress bar on stderr for pulls and pushes (only on a terminal).

use std::io::IsTerminal as _;

use indicatif::{ProgressBar, ProgressStyle};

pub struct Bar(Option<ProgressBar>);

impl Bar {
    pub fn new(enabled: bool, message: String, total: u64) -> Bar {
        if !enabled || !std::io::stderr().is_terminal() {
            tracing::debug!("{message} ({total} bytes)");
            return Bar(None);
        }
        let bar = ProgressBar::new(total);
        if let Ok(style) = ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {elapsed}",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(message);
        Bar(Some(bar))
    }

    pub fn set(&self, done: u64) {
        if let Some(b) = &self.0 {
            b.set_position(done);
        }
    }

    pub fn finish(&self) {
        if let Some(b) = &self.0 {
            b.finish_and_clear();
        }
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        self.finish();
    }
}
