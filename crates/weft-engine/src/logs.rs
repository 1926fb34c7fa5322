//! Per-workload log capture: guest stdout/stderr and wasi:logging records go to `tracing`
//! (tagged with workload and component) and into a bounded ring buffer that `weft logs`
//! reads and follows.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use tokio::sync::broadcast;

/// Lines kept per workload.
pub const LOG_CAPACITY: usize = 2000;
/// Longest line kept; longer lines are cut (a guest cannot make the host buffer grow).
pub const MAX_LINE: usize = 8 * 1024;

/// One captured line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub time: SystemTime,
    pub component: String,
    /// `stdout`, `stderr`, or a wasi:logging level (`info`, `warn`, ...).
    pub stream: String,
    pub message: String,
}

impl LogLine {
    /// `2026-11-21T10:00:00Z api info: message`
    pub fn render(&self) -> String {
        let secs = self
            .time
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        format!(
            "{secs:.3} {} {}: {}",
            self.component, self.stream, self.message
        )
    }
}

/// The ring buffer plus live subscribers of one workload.
#[derive(Clone)]
pub struct LogSink {
    workload: Arc<str>,
    inner: Arc<Mutex<VecDeque<LogLine>>>,
    live: broadcast::Sender<LogLine>,
}

impl LogSink {
    pub fn new(workload: &str) -> Self {
        let (live, _) = broadcast::channel(1024);
        Self {
            workload: workload.into(),
            inner: Arc::new(Mutex::new(VecDeque::with_capacity(64))),
            live,
        }
    }

    pub fn workload(&self) -> &str {
        &self.workload
    }

    /// Records one line (cut to [`MAX_LINE`]) and emits it to `tracing`.
    pub fn push(&self, component: &str, stream: &str, message: &str) {
        let mut message = message.trim_end_matches(['\n', '\r']).to_string();
        if message.len() > MAX_LINE {
            let mut cut = MAX_LINE;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push('…');
        }
        tracing::info!(target: "weft::guest", workload = %self.workload, component, stream, "{message}");
        let line = LogLine {
            time: SystemTime::now(),
            component: component.to_string(),
            stream: stream.to_string(),
            message,
        };
        {
            let mut buf = match self.inner.lock() {
                Ok(b) => b,
                Err(p) => p.into_inner(),
            };
            if buf.len() >= LOG_CAPACITY {
                buf.pop_front();
            }
            buf.push_back(line.clone());
        }
        let _ = self.live.send(line);
    }

    /// The buffered lines, oldest first.
    pub fn snapshot(&self) -> Vec<LogLine> {
        let buf = match self.inner.lock() {
            Ok(b) => b,
            Err(p) => p.into_inner(),
        };
        buf.iter().cloned().collect()
    }

    /// New lines from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<LogLine> {
        self.live.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_is_bounded_and_lines_are_cut() {
        let sink = LogSink::new("w");
        for i in 0..LOG_CAPACITY + 10 {
            sink.push("c", "stdout", &format!("line {i}\n"));
        }
        let snap = sink.snapshot();
        assert_eq!(snap.len(), LOG_CAPACITY);
        assert_eq!(snap[0].message, "line 10");
        sink.push("c", "stderr", &"x".repeat(MAX_LINE * 2));
        let last = sink.snapshot().pop().expect("line");
        assert!(last.message.len() <= MAX_LINE + 3);
    }
}
