//! Forwarded ingress (docs/lattice.md, "Forwarded ingress"): every host's ingress answers for
//! every deployment of the lattice. A request whose route is a lattice deployment this host
//! does not run is sent over NATS request/reply to a host that reports a ready replica
//! (`weft.L.http.HOST`), which runs it through its own ingress (the workload's limits and logs
//! apply there) and replies with the response.
//!
//! A request and its response cross as sequences of frames (`weft_scheduler::wire`): the body
//! in chunks of 256 KiB, each frame with the head and its place in the sequence, the reply
//! subject being the forwarding host's own inbox. Bodies are at most 16 MiB each way (413 for a
//! larger request at the ingress, 502 for a larger response) and buffered whole on each side.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use weft_policy::router::{Route, RouteTable};
pub use weft_scheduler::wire::{
    ASSEMBLY_TIMEOUT, Assembled, Assembler, CHUNK, FrameError, MAX_ASSEMBLING, MAX_FORWARD_BODY,
    MAX_HEAD, Part, RequestHead, ResponseHead, chunks, decode, encode, string_to_value,
    value_to_string,
};

use crate::connect::Lattice;
use crate::view::View;

/// Set on a request the lattice forwarded to this host (its value: the host it came from).
/// A forwarded request is never forwarded again.
pub const FORWARDED_HEADER: &str = "weft-forwarded";

/// Forwarded requests a host serves at once; more get 503 at once.
pub const MAX_SERVING: usize = 64;

/// Requests a host forwards at once (each may buffer a body of up to 16 MiB each way); more
/// get 503 at the ingress.
pub const MAX_FORWARDING: usize = 32;

/// Frames one forwarded request's inbox holds: a 16 MiB response in 256 KiB chunks, and room.
const INBOX_CAPACITY: usize = MAX_FORWARD_BODY / CHUNK + 8;

/// Refused sequence ids remembered (so their last frame gets the refusal's status).
const REFUSED_MEMORY: usize = 1024;

/// How long the forwarding host waits for the first frame of the serving host's response, and
/// then again for the rest of it (504 past either). The workload's own deadline (`timeoutMs`,
/// 30 s by default) is applied by the serving host.
pub const FORWARD_TIMEOUT: Duration = Duration::from_secs(60);

/// The subject host `host` of lattice `lattice` serves forwarded requests on.
pub fn subject(lattice: &str, host: &str) -> String {
    format!("weft.{lattice}.http.{host}")
}

/// The lattice's ingress routes and where each deployment has ready replicas, rebuilt by the
/// state loop from every re-list.
#[derive(Debug, Default, Clone)]
pub struct Directory {
    routes: RouteTable,
    /// Deployment -> hosts (registered, ready, reporting a ready replica of any version), by
    /// name.
    ready: BTreeMap<String, Vec<String>>,
}

impl Directory {
    /// From a re-list: the routes of every desired manifest with an ingress route (`internal:
    /// only` has none; a route that conflicts with an earlier one is left out and logged), and
    /// the ready replicas (of any version: during a rolling update the old ones still serve)
    /// that hosts in good standing report.
    pub fn from_view(view: &View) -> Directory {
        let mut routes: Vec<Route> = Vec::new();
        let mut table = RouteTable::default();
        for (name, desired) in &view.desired {
            for grant in &desired.manifest.spec.host_interfaces {
                let Some(cfg) = grant.http_incoming_config() else {
                    continue;
                };
                if cfg.internal == weft_manifest::InternalCalls::Only {
                    continue;
                }
                routes.push(Route {
                    host: cfg.host,
                    path: cfg.path,
                    target: name.clone(),
                });
                match RouteTable::new(routes.clone()) {
                    Ok(t) => table = t,
                    Err(conflict) => {
                        tracing::warn!(workload = %name, %conflict, "lattice route left out");
                        routes.pop();
                    }
                }
            }
        }
        let mut ready: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (host, (report, record)) in &view.reports {
            let Some((h, host_record, _)) = view.hosts.get(host) else {
                continue;
            };
            if h.status != weft_scheduler::HostStatus::Ready || host_record.id != record.id {
                continue;
            }
            // Any ready replica of a desired deployment, of whichever version: during a rolling
            // update the old version's replicas serve until the new ones are ready.
            for (workload, running) in &report.running {
                if running.ready && view.desired.contains_key(workload) {
                    ready
                        .entry(workload.clone())
                        .or_default()
                        .push(host.clone());
                }
            }
        }
        Directory {
            routes: table,
            ready,
        }
    }

    /// The deployment a request with this `Host` (canonical) and path is for.
    pub fn target(&self, host: Option<&str>, path: &str) -> Option<&str> {
        self.routes.route(host, path)
    }

    /// A host other than `me` with a ready replica of `workload`, taking turns by `turn`.
    pub fn pick(&self, workload: &str, me: &str, turn: usize) -> Option<&str> {
        let hosts: Vec<&str> = self
            .ready
            .get(workload)?
            .iter()
            .map(String::as_str)
            .filter(|h| *h != me)
            .collect();
        if hosts.is_empty() {
            return None;
        }
        hosts.get(turn % hosts.len()).copied()
    }
}

/// What became of a forwarded request.
#[derive(Debug)]
pub enum Forwarded {
    /// The serving host's response.
    Response(ResponseHead, Bytes),
    /// No host reports a ready replica of the deployment (503).
    NoReplica,
    /// The request body is over [`MAX_FORWARD_BODY`] (413).
    TooLarge { limit: usize },
    /// The serving host did not answer in time (504).
    Timeout(String),
    /// NATS or the serving host failed (502).
    Failed(String),
}

/// Sends requests to the hosts that run their deployment.
pub struct Forwarder {
    client: async_nats::Client,
    lattice: String,
    me: String,
    directory: Arc<RwLock<Directory>>,
    turn: AtomicUsize,
    timeout: Duration,
    /// Replies come back on `PREFIX.N`, one `N` per request, through one subscription on
    /// `PREFIX.*`.
    replies: Replies,
    /// Requests being forwarded ([`MAX_FORWARDING`]).
    in_flight: Arc<tokio::sync::Semaphore>,
}

/// The reply inboxes of requests in flight: one wildcard subscription, demultiplexed by
/// subject to each request's channel.
struct Replies {
    prefix: String,
    next: std::sync::atomic::AtomicU64,
    waiting:
        Arc<std::sync::Mutex<BTreeMap<String, tokio::sync::mpsc::Sender<async_nats::Message>>>>,
    started: tokio::sync::OnceCell<()>,
}

/// One request's inbox; unregistered when dropped.
struct Inbox {
    subject: String,
    messages: tokio::sync::mpsc::Receiver<async_nats::Message>,
    waiting:
        Arc<std::sync::Mutex<BTreeMap<String, tokio::sync::mpsc::Sender<async_nats::Message>>>>,
}

impl Drop for Inbox {
    fn drop(&mut self) {
        self.waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.subject);
    }
}

impl Replies {
    /// A new inbox, subscribing to the prefix on first use.
    async fn inbox(&self, client: &async_nats::Client) -> Result<Inbox, String> {
        self.started
            .get_or_try_init(|| async {
                use futures::StreamExt;
                let mut sub = client
                    .subscribe(format!("{}.*", self.prefix))
                    .await
                    .map_err(|e| e.to_string())?;
                let waiting = Arc::clone(&self.waiting);
                tokio::spawn(async move {
                    while let Some(message) = sub.next().await {
                        let sender = waiting
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .get(message.subject.as_str())
                            .cloned();
                        if let Some(sender) = sender {
                            // A full inbox (more frames than a response can have): dropped; the
                            // request then fails on the missing chunk.
                            let _ = sender.try_send(message);
                        }
                    }
                });
                Ok::<(), String>(())
            })
            .await?;
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let subject = format!("{}.{n}", self.prefix);
        let (tx, messages) = tokio::sync::mpsc::channel(INBOX_CAPACITY);
        self.waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(subject.clone(), tx);
        Ok(Inbox {
            subject,
            messages,
            waiting: Arc::clone(&self.waiting),
        })
    }
}

impl Forwarder {
    pub(crate) fn new(
        lattice: &Lattice,
        me: String,
        directory: Arc<RwLock<Directory>>,
        timeout: Duration,
    ) -> Forwarder {
        Forwarder {
            client: lattice.client.clone(),
            lattice: lattice.name.clone(),
            me,
            directory,
            turn: AtomicUsize::new(0),
            timeout,
            replies: Replies {
                prefix: lattice.client.new_inbox(),
                next: std::sync::atomic::AtomicU64::new(0),
                waiting: Arc::default(),
                started: tokio::sync::OnceCell::new(),
            },
            in_flight: Arc::new(tokio::sync::Semaphore::new(MAX_FORWARDING)),
        }
    }

    /// The lattice deployment a request is for, if any.
    pub fn target(&self, host: Option<&str>, path: &str) -> Option<String> {
        let dir = self.directory.read().unwrap_or_else(|e| e.into_inner());
        dir.target(host, path).map(str::to_string)
    }

    /// A slot to forward one request (take it before buffering the body), or `None` when
    /// [`MAX_FORWARDING`] are in flight.
    pub fn admit(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        Arc::clone(&self.in_flight).try_acquire_owned().ok()
    }

    /// This host's name in the lattice (the `origin` of what it forwards).
    pub fn me(&self) -> &str {
        &self.me
    }

    /// The largest request body forwarded (in chunks of [`CHUNK`]).
    pub fn max_body(&self) -> usize {
        MAX_FORWARD_BODY
    }

    /// Forwards one request to a host with a ready replica of `workload`: the body in chunks
    /// to `weft.L.http.HOST` with this request's own inbox as the reply subject, the response
    /// read back from the inbox in chunks.
    pub async fn forward(&self, workload: &str, head: RequestHead, body: Bytes) -> Forwarded {
        if body.len() > MAX_FORWARD_BODY {
            return Forwarded::TooLarge {
                limit: MAX_FORWARD_BODY,
            };
        }
        // A host that answers 421 no longer runs the deployment (this host's view is a tick
        // old): one more try on another host.
        let mut tried: Option<String> = None;
        loop {
            let target = {
                let dir = self.directory.read().unwrap_or_else(|e| e.into_inner());
                let turn = self.turn.fetch_add(1, Ordering::Relaxed);
                dir.pick(workload, &self.me, turn)
                    .filter(|t| Some(*t) != tried.as_deref())
                    .or_else(|| dir.pick(workload, &self.me, turn + 1))
                    .filter(|t| Some(*t) != tried.as_deref())
                    .map(str::to_string)
            };
            let Some(target) = target else {
                return Forwarded::NoReplica;
            };
            match self.exchange(&target, &head, &body).await {
                Ok((head, _)) if head.misdirected && tried.is_none() => {
                    tracing::debug!(host = %target, %workload, "misdirected; trying another host");
                    tried = Some(target);
                }
                Ok((head, body)) => return Forwarded::Response(head, body),
                Err(failed) => return failed,
            }
        }
    }

    /// One request to `target` and its response, both in chunks.
    async fn exchange(
        &self,
        target: &str,
        head: &RequestHead,
        body: &[u8],
    ) -> Result<(ResponseHead, Bytes), Forwarded> {
        let failed = |e: String| Forwarded::Failed(format!("host `{target}`: {e}"));
        // Chunks of the response after the first come to this request's inbox.
        let mut inbox = self.replies.inbox(&self.client).await.map_err(&failed)?;
        let subject = subject(&self.lattice, target);
        let parts: Vec<(Part, &[u8])> = chunks(&inbox.subject, body).collect();
        let n = parts.len();
        let mut first = None;
        for (i, (part, chunk)) in parts.into_iter().enumerate() {
            let mut head = head.clone();
            head.part = (n > 1).then_some(part);
            head.more = Some(inbox.subject.clone());
            let frame = Bytes::from(
                encode(&head, chunk)
                    .map_err(|e| Forwarded::Failed(format!("cannot forward the request: {e}")))?,
            );
            if i + 1 < n {
                self.client
                    .publish(subject.clone(), frame)
                    .await
                    .map_err(|e| failed(e.to_string()))?;
                continue;
            }
            // The last frame is a request: its reply is the response's first frame (and the
            // server says at once when nobody listens on the host's subject).
            let request = async_nats::Request::new()
                .payload(frame)
                .timeout(Some(self.timeout));
            first = Some(
                match self.client.send_request(subject.clone(), request).await {
                    Ok(m) => m,
                    Err(e) if e.kind() == async_nats::RequestErrorKind::TimedOut => {
                        return Err(Forwarded::Timeout(format!(
                            "host `{target}` did not answer within {:?}",
                            self.timeout
                        )));
                    }
                    Err(e) => return Err(failed(e.to_string())),
                },
            );
        }
        let Some(first) = first else {
            return Err(failed("nothing was sent".into()));
        };
        let mut assembler: Assembler<ResponseHead> =
            Assembler::new(1, MAX_FORWARD_BODY, ASSEMBLY_TIMEOUT);
        let deadline = tokio::time::Instant::now() + self.timeout;
        let mut message = first;
        loop {
            let (head, chunk) = decode::<ResponseHead>(&message.payload)
                .map_err(|e| failed(format!("replied: {e}")))?;
            match assembler.offer(head, chunk, std::time::Instant::now()) {
                Assembled::Pending => {}
                Assembled::Complete(head, body) => return Ok((head, Bytes::from(body))),
                Assembled::Refused(_, why) => return Err(failed(format!("replied: {why}"))),
            }
            message = match tokio::time::timeout_at(deadline, inbox.messages.recv()).await {
                Err(_) => {
                    return Err(Forwarded::Timeout(format!(
                        "host `{target}` did not send the whole response within {:?}",
                        self.timeout
                    )));
                }
                Ok(None) => return Err(failed("the reply subscription ended".into())),
                Ok(Some(m)) => m,
            };
        }
    }
}

/// What the serving side needs from the host: run a forwarded request through its ingress.
pub trait ServeForwarded: Send + Sync + 'static {
    /// The response to `head`/`body`, its body at most `max_body` bytes (else a 502 head).
    fn serve_forwarded(
        &self,
        head: RequestHead,
        body: Bytes,
        max_body: usize,
    ) -> impl std::future::Future<Output = (ResponseHead, Bytes)> + Send;
}

/// A short error response (generic, like the ingress's own).
pub fn error_head(status: u16) -> ResponseHead {
    ResponseHead {
        status,
        headers: vec![("content-type".into(), "text/plain; charset=utf-8".into())],
        misdirected: false,
        part: None,
    }
}

/// Serves the requests other hosts forward to this one, until the subscription ends: frames
/// are put back together ([`Assembler`]: at most [`MAX_ASSEMBLING`] at once, each at most
/// [`MAX_FORWARD_BODY`], dropped after [`ASSEMBLY_TIMEOUT`] without a chunk), each whole
/// request runs through the host (at most [`MAX_SERVING`] at once), and the response goes back
/// to the reply subject in chunks.
pub async fn serve<H: ServeForwarded>(lattice: Lattice, me: String, host: Arc<H>) {
    use futures::StreamExt;
    let subject = subject(&lattice.name, &me);
    let mut requests = match lattice.client.subscribe(subject.clone()).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(%subject, error = %e, "cannot serve forwarded requests");
            return;
        }
    };
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_SERVING));
    let mut assembler: Assembler<RequestHead> =
        Assembler::new(MAX_ASSEMBLING, MAX_FORWARD_BODY, ASSEMBLY_TIMEOUT);
    // Sequences refused before their last frame: that frame (the only one with a reply
    // subject) gets the refusal's status.
    let mut refused: BTreeMap<String, u16> = BTreeMap::new();
    while let Some(message) = requests.next().await {
        let now = std::time::Instant::now();
        let dropped = assembler.expire(now);
        if dropped > 0 {
            tracing::warn!(
                dropped,
                "forwarded requests whose chunks stopped coming, dropped"
            );
        }
        // Chunks before the last come without a reply subject; the last is a request.
        let client = lattice.client.clone();
        let reply = message.reply.clone();
        let (head, body) = match decode::<RequestHead>(&message.payload) {
            Ok((head, chunk)) => {
                let more = head.more.clone().filter(|m| reply_subject_ok(m));
                if let Some(part) = &head.part
                    && let Some(&status) = refused.get(&part.id)
                {
                    if let Some(reply) = reply {
                        refused.remove(&part.id);
                        tokio::spawn(respond(
                            client,
                            reply,
                            more,
                            error_head(status),
                            error_body(status),
                        ));
                    }
                    continue;
                }
                let id = head.part.as_ref().map(|p| p.id.clone());
                match assembler.offer(head, chunk, now) {
                    Assembled::Pending => continue,
                    Assembled::Complete(head, body) => (head, body),
                    Assembled::Refused(status, why) => {
                        tracing::warn!(status, "a forwarded request refused: {why}");
                        match reply {
                            Some(reply) => {
                                let (head, body) = (error_head(status), error_body(status));
                                tokio::spawn(respond(client, reply, more, head, body));
                            }
                            None => {
                                if let Some(id) = id {
                                    if refused.len() >= REFUSED_MEMORY {
                                        refused.clear();
                                    }
                                    refused.insert(id, status);
                                }
                            }
                        }
                        continue;
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "a forwarded request that does not decode");
                if let Some(reply) = reply {
                    let (head, body) = (error_head(400), error_body(400));
                    tokio::spawn(respond(client, reply, None, head, body));
                }
                continue;
            }
        };
        let Some(reply) = reply else {
            tracing::debug!(%subject, "a forwarded request without a reply subject, ignored");
            continue;
        };
        let more = head.more.clone().filter(|m| reply_subject_ok(m));
        // Full: 503 at once (waiting here would stop reading every other request's frames).
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            tokio::spawn(respond(
                client,
                reply,
                more,
                error_head(503),
                error_body(503),
            ));
            continue;
        };
        let host = Arc::clone(&host);
        tokio::spawn(async move {
            let (head, body) = host
                .serve_forwarded(head, Bytes::from(body), MAX_FORWARD_BODY)
                .await;
            respond(client, reply, more, head, body).await;
            drop(slot);
        });
    }
}

/// Where a serving host may send response chunks: a reply inbox (`_INBOX.` and tokens, no
/// wildcard), never an arbitrary subject a client names.
fn reply_subject_ok(subject: &str) -> bool {
    subject.starts_with("_INBOX.")
        && subject.len() <= 256
        && !subject.contains(['*', '>', ' ', '\t', '\r', '\n'])
}

fn error_body(status: u16) -> Bytes {
    let reason = match status {
        400 => "Bad Request",
        413 => "Content Too Large",
        503 => "Service Unavailable",
        _ => "Bad Gateway",
    };
    Bytes::from(format!("{status} {reason}\n"))
}

/// Sends a response: its first frame to `reply` (the reply to the request's last frame), the
/// chunks after it to `more` (the forwarder's inbox). A response of one chunk is one frame
/// without a part; one that needs more but has nowhere to send them is a 502.
async fn respond(
    client: async_nats::Client,
    reply: async_nats::Subject,
    more: Option<String>,
    head: ResponseHead,
    body: Bytes,
) {
    let id = more.clone().unwrap_or_default();
    let parts: Vec<(Part, &[u8])> = chunks(&id, &body).collect();
    let n = parts.len();
    if n > 1 && more.is_none() {
        let frame = encode(&error_head(502), b"502 Bad Gateway\n").unwrap_or_default();
        let _ = client.publish(reply, frame.into()).await;
        return;
    }
    for (i, (part, chunk)) in parts.into_iter().enumerate() {
        let mut head = head.clone();
        head.part = (n > 1).then_some(part);
        let frame = match encode(&head, chunk) {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(error = %e, "cannot encode a forwarded response");
                encode(&error_head(502), b"502 Bad Gateway\n").unwrap_or_default()
            }
        };
        let to = match (i, &more) {
            (0, _) | (_, None) => reply.to_string(),
            (_, Some(more)) => more.clone(),
        };
        if let Err(e) = client.publish(to, frame.into()).await {
            tracing::warn!(error = %e, "cannot reply to a forwarded request");
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pick_takes_turns_and_never_picks_itself() {
        let mut dir = Directory::default();
        dir.ready
            .insert("web".into(), vec!["a".into(), "b".into(), "me".into()]);
        let picks: Vec<&str> = (0..4).filter_map(|t| dir.pick("web", "me", t)).collect();
        assert_eq!(picks, ["a", "b", "a", "b"]);
        assert_eq!(dir.pick("db", "me", 0), None);
        dir.ready.insert("solo".into(), vec!["me".into()]);
        assert_eq!(dir.pick("solo", "me", 0), None);
    }
}
