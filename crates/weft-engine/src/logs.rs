//! Per-workload log capture: guest stdout/stderr and wasi:logging records go to `tracing`
//! (tagged with workload and component) and into a bounded ring buffer that `weft logs`
//! reads and follows.
//!
//! The sink also carries the workload's denials as typed events ([`LogSink::denied`]): each
//! use a guest was refused (a socket connect, a name lookup, an outgoing HTTP request), once per
//! component and request, for `weft dev` to explain with the manifest lines that would grant
//! it (`weft_manifest::grant::suggest`). The refusal's log line is written by its caller, as
//! before.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use tokio::sync::broadcast;
use weft_policy::grant::GrantRequest;

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

/// Distinct denials kept per workload: later ones are dropped (a guest cannot grow the set by
/// trying every port).
pub const MAX_DENIALS: usize = 256;

/// One use a component was denied ([`LogSink::denied`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied {
    pub time: SystemTime,
    pub component: String,
    pub request: GrantRequest,
}

/// The ring buffer plus live subscribers of one workload.
#[derive(Clone)]
pub struct LogSink {
    workload: Arc<str>,
    inner: Arc<Mutex<VecDeque<LogLine>>>,
    live: broadcast::Sender<LogLine>,
    denials: Arc<Mutex<Denials>>,
    denied_live: broadcast::Sender<Denied>,
}

/// The workload's distinct denials, first seen first.
#[derive(Default)]
struct Denials {
    seen: HashSet<(String, GrantRequest)>,
    list: Vec<Denied>,
}

impl LogSink {
    pub fn new(workload: &str) -> Self {
        let (live, _) = broadcast::channel(1024);
        let (denied_live, _) = broadcast::channel(64);
        Self {
            workload: workload.into(),
            inner: Arc::new(Mutex::new(VecDeque::with_capacity(64))),
            live,
            denials: Arc::default(),
            denied_live,
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

    /// Records that `component` was denied `request`: kept and sent to
    /// [`subscribe_denials`](Self::subscribe_denials) the first time only (per component and
    /// request, up to [`MAX_DENIALS`] per workload). Whether it was new. The caller logs the
    /// refusal itself.
    pub fn denied(&self, component: &str, request: GrantRequest) -> bool {
        let event = {
            let mut d = self.denials.lock().unwrap_or_else(|e| e.into_inner());
            let key = (component.to_string(), request);
            if d.list.len() >= MAX_DENIALS || d.seen.contains(&key) {
                return false;
            }
            let event = Denied {
                time: SystemTime::now(),
                component: key.0.clone(),
                request: key.1.clone(),
            };
            d.seen.insert(key);
            d.list.push(event.clone());
            event
        };
        let _ = self.denied_live.send(event);
        true
    }

    /// The denials recorded so far, first seen first.
    pub fn denials(&self) -> Vec<Denied> {
        self.denials
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .list
            .clone()
    }

    /// Forgets the denials recorded so far (a new version of the workload was deployed: what
    /// it is denied is reported afresh, so a grant that did not help is seen again).
    pub fn reset_denials(&self) {
        let mut d = self.denials.lock().unwrap_or_else(|e| e.into_inner());
        d.seen.clear();
        d.list.clear();
    }

    /// New denials from now on (each once; see [`denied`](Self::denied)). Read
    /// [`denials`](Self::denials) after subscribing for the ones before.
    pub fn subscribe_denials(&self) -> broadcast::Receiver<Denied> {
        self.denied_live.subscribe()
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

    #[test]
    fn denials_are_kept_once_per_component_and_request_and_bounded() {
        let sink = LogSink::new("w");
        let mut rx = sink.subscribe_denials();
        let lookup = GrantRequest::lookup("db.internal");
        assert!(sink.denied("api", lookup.clone()));
        assert!(!sink.denied("api", lookup.clone()));
        assert!(sink.denied("web", lookup.clone()));
        let first = rx.try_recv().expect("event");
        assert_eq!((first.component.as_str(), &first.request), ("api", &lookup));
        assert_eq!(rx.try_recv().expect("event").component, "web");
        assert!(rx.try_recv().is_err());
        for i in 0..MAX_DENIALS * 2 {
            sink.denied("api", GrantRequest::lookup(&format!("n{i}.internal")));
        }
        assert_eq!(sink.denials().len(), MAX_DENIALS);
        assert_eq!(sink.denials()[0].request, lookup);
    }
}
