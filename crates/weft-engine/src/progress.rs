//! A spinner for work a person waits on (compiling), shown only on a terminal.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// A spinner on stderr that disappears when finished or dropped.
pub struct Spinner(Option<ProgressBar>);

impl Spinner {
    /// Starts a spinner with `message` when stderr is a terminal; logs at debug otherwise.
    pub fn start(message: String) -> Self {
        if !std::io::stderr().is_terminal() {
            tracing::debug!("{message}");
            return Spinner(None);
        }
        let bar = ProgressBar::new_spinner();
        if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} {elapsed}") {
            bar.set_style(style);
        }
        bar.set_message(message);
        bar.enable_steady_tick(Duration::from_millis(100));
        Spinner(Some(bar))
    }

    /// Removes the spinner.
    pub fn finish(self) {}
}

impl Drop for Spinner {
    fn drop(&mut self) {
        if let Some(bar) = self.0.take() {
            bar.finish_and_clear();
        }
    }
}
