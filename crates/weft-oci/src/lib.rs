//! OCI distribution of Wasm components (docs/distribution.md).
//!
//! - [`Puller::pull`] resolves a reference (a tag to its manifest digest), checks the image
//!   manifest is a Wasm artifact ([`weft_policy::oci::check_artifact`]), streams the one Wasm
//!   layer under a size cap and a timeout, verifies every blob against its digest and keeps it
//!   in a [`BlobStore`] by digest. A pinned reference already in the store needs no network.
//! - [`Puller::push`] uploads a component as a CNCF Wasm artifact.
//! - [`Puller::pin`] rewrites a workload manifest's `oci://` images to their digests (what the
//!   desired state stores and every host runs), and [`localize`] maps pinned images to the
//!   verified store files for the runtime, which never sees `oci://`.
//!
//! Only Wasm bytes are taken from a registry; compiled code is always made on the host.

mod auth;
mod config;
mod pin;
mod progress;
mod store;
#[cfg(feature = "testing")]
pub mod testing;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt as _;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::manifest::OciDescriptor;
use oci_client::{Client, RegistryOperation};
use sha2::{Digest as _, Sha256};
pub use weft_policy::oci::{ArtifactError, Digest, Reference, ReferenceError};
use weft_policy::oci::{
    DOCKER_LIST_MEDIA_TYPE, DOCKER_MANIFEST_MEDIA_TYPE, OCI_INDEX_MEDIA_TYPE,
    OCI_MANIFEST_MEDIA_TYPE, WASM_CONFIG_MEDIA_TYPE, WASM_LAYER_MEDIA_TYPE, check_artifact,
};

pub use auth::{AuthSource, credentials};
pub use pin::{PinError, PinnedImage, has_oci_images, localize};
pub use store::{BlobStore, digest_of};

/// Default cap on a Wasm layer: 256 MiB.
pub const DEFAULT_MAX_LAYER_BYTES: u64 = 256 << 20;
/// Default bound on one pull or push: 60 s.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// Default bound on connecting to a registry: 10 s.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How a [`Puller`] talks to registries and where it keeps blobs.
#[derive(Debug, Clone)]
pub struct PullOptions {
    /// The blob store's directory.
    pub store_dir: PathBuf,
    /// Registries (`HOST[:PORT]`) spoken to over plain HTTP besides loopback ones.
    pub insecure_registries: Vec<String>,
    /// Largest Wasm layer accepted.
    pub max_layer_bytes: u64,
    /// Bound on one whole pull or push.
    pub timeout: Duration,
    /// Bound on connecting.
    pub connect_timeout: Duration,
    /// Show a progress bar on stderr (when it is a terminal).
    pub progress: bool,
    /// Where credentials come from.
    pub credentials: Credentials,
}

/// Where a [`Puller`] gets registry credentials.
#[derive(Clone, Default)]
pub enum Credentials {
    /// `WEFT_REGISTRY_USERNAME` / `WEFT_REGISTRY_PASSWORD`, else the Docker config, else none.
    #[default]
    Auto,
    /// These, for every registry.
    Basic { username: String, password: String },
    /// None.
    Anonymous,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Auto => f.write_str("Auto"),
            Credentials::Basic { username, .. } => write!(f, "Basic({username}, ***)"),
            Credentials::Anonymous => f.write_str("Anonymous"),
        }
    }
}

impl Default for PullOptions {
    /// The default store (`$WEFT_CACHE_DIR/oci`), `WEFT_INSECURE_REGISTRIES` (comma-separated),
    /// the default limits, a progress bar on a terminal.
    fn default() -> Self {
        PullOptions {
            store_dir: BlobStore::default_root()
                .unwrap_or_else(|| std::env::temp_dir().join("weft-oci")),
            insecure_registries: std::env::var("WEFT_INSECURE_REGISTRIES")
                .map(|v| {
                    v.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default(),
            max_layer_bytes: DEFAULT_MAX_LAYER_BYTES,
            timeout: DEFAULT_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            progress: true,
            credentials: Credentials::Auto,
        }
    }
}

/// Why a pull or push failed. Messages name the reference and the fix.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    #[error("{reference}: cannot talk to the registry: {message}")]
    Registry { reference: String, message: String },
    #[error(
        "{reference}: not found in the registry ({message}) (hint: check the repository and tag; `weft push FILE {reference}` uploads one)"
    )]
    NotFound { reference: String, message: String },
    #[error("{reference}: the registry refused access with {source_used} ({message}) (hint: set WEFT_REGISTRY_USERNAME, WEFT_REGISTRY_PASSWORD and WEFT_REGISTRY_HOST={registry}, or `docker login {registry}`)",
        source_used = .source_used.describe())]
    Unauthorized {
        reference: String,
        registry: String,
        source_used: AuthSource,
        message: String,
    },
    #[error("{reference}: {source}")]
    Artifact {
        reference: String,
        source: ArtifactError,
    },
    #[error(
        "{reference}: the {what} does not match its digest (expected {expected}, got {actual}); refused"
    )]
    DigestMismatch {
        reference: String,
        what: &'static str,
        expected: String,
        actual: String,
    },
    #[error(
        "{reference}: the Wasm layer sent more than {limit} bytes; refused (hint: raise --max-layer-size if this component is expected)"
    )]
    LayerTooLarge { reference: String, limit: u64 },
    #[error(
        "{reference}: the layer is not WebAssembly (no `\\0asm` header); refused: only Wasm bytes are taken from a registry"
    )]
    NotWasm { reference: String },
    #[error("{reference}: no answer from the registry within {}s; gave up (hint: check the registry, or raise --pull-timeout)", .timeout.as_secs())]
    Timeout {
        reference: String,
        timeout: Duration,
    },
    #[error("cannot write to the blob store {}: {source}", .path.display())]
    Store {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
}

/// A pulled image: verified and in the store.
#[derive(Debug, Clone)]
pub struct Pulled {
    /// The reference pinned to the manifest digest (the tag kept as a label).
    pub reference: Reference,
    pub manifest_digest: Digest,
    /// The Wasm layer's digest: the sha256 of the component bytes.
    pub layer_digest: Digest,
    /// The verified component in the store.
    pub path: PathBuf,
    pub size: u64,
    /// Served from the store without asking the registry.
    pub from_store: bool,
}

/// A pushed image.
#[derive(Debug, Clone)]
pub struct Pushed {
    /// The reference pinned to the pushed manifest's digest.
    pub reference: Reference,
    pub manifest_digest: Digest,
    pub layer_digest: Digest,
    pub size: u64,
}

/// Pulls, pushes and pins; keeps one HTTP client (and its tokens) per registry.
pub struct Puller {
    options: PullOptions,
    store: BlobStore,
    clients: Mutex<HashMap<String, Arc<Client>>>,
}

impl std::fmt::Debug for Puller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Puller")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// Installs rustls's ring provider as the process default once (reqwest is built without one,
/// to keep aws-lc and OpenSSL out of the build).
fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

const ACCEPTED_MANIFESTS: &[&str] = &[
    OCI_MANIFEST_MEDIA_TYPE,
    DOCKER_MANIFEST_MEDIA_TYPE,
    OCI_INDEX_MEDIA_TYPE,
    DOCKER_LIST_MEDIA_TYPE,
];

impl Puller {
    pub fn new(options: PullOptions) -> Puller {
        install_crypto_provider();
        Puller {
            store: BlobStore::new(options.store_dir.clone()),
            options,
            clients: Mutex::new(HashMap::new()),
        }
    }

    pub fn options(&self) -> &PullOptions {
        &self.options
    }

    pub fn store(&self) -> &BlobStore {
        &self.store
    }

    /// Whether `registry` is spoken to over plain HTTP: loopback, or named insecure.
    pub fn plain_http(&self, registry: &str) -> bool {
        weft_policy::oci::is_loopback_registry(registry)
            || self
                .options
                .insecure_registries
                .iter()
                .any(|r| r.eq_ignore_ascii_case(registry))
    }

    /// The credentials for `registry`. A Docker credential helper is a process that may wait
    /// (for a keychain, a PIN): it runs on a blocking thread, so the caller's timeout holds.
    async fn credentials(&self, registry: &str) -> (oci_client::secrets::RegistryAuth, AuthSource) {
        match &self.options.credentials {
            Credentials::Auto => {
                let registry = registry.to_string();
                tokio::task::spawn_blocking(move || credentials(&registry))
                    .await
                    .unwrap_or((
                        oci_client::secrets::RegistryAuth::Anonymous,
                        AuthSource::Anonymous,
                    ))
            }
            Credentials::Basic { username, password } => (
                oci_client::secrets::RegistryAuth::Basic(username.clone(), password.clone()),
                AuthSource::Configured,
            ),
            Credentials::Anonymous => (
                oci_client::secrets::RegistryAuth::Anonymous,
                AuthSource::Anonymous,
            ),
        }
    }

    fn client(&self, registry: &str) -> Arc<Client> {
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = clients.get(registry) {
            return Arc::clone(c);
        }
        let protocol = if self.plain_http(registry) {
            ClientProtocol::HttpsExcept(vec![registry.to_string()])
        } else {
            ClientProtocol::Https
        };
        let config = ClientConfig {
            protocol,
            connect_timeout: Some(self.options.connect_timeout),
            read_timeout: Some(self.options.timeout),
            // An image index is refused by our own check, with a clear message.
            platform_resolver: None,
            use_monolithic_push: true,
            user_agent: concat!("weft/", env!("CARGO_PKG_VERSION")),
            ..ClientConfig::default()
        };
        let client = Arc::new(Client::new(config));
        clients.insert(registry.to_string(), Arc::clone(&client));
        client
    }

    fn oci_ref(r: &Reference) -> Result<oci_client::Reference, OciError> {
        r.bare()
            .parse::<oci_client::Reference>()
            .map_err(|e| OciError::Invalid(format!("{r}: {e}")))
    }

    /// Pulls `reference` into the store (or finds it there) and returns the verified
    /// component. Bounded by the timeout; every blob is checked against its digest.
    pub async fn pull(&self, reference: &Reference) -> Result<Pulled, OciError> {
        if let Some(found) = self.lookup_store(reference) {
            return Ok(found);
        }
        let timeout = self.options.timeout;
        match tokio::time::timeout(timeout, self.pull_remote(reference)).await {
            Ok(result) => result,
            Err(_) => Err(OciError::Timeout {
                reference: reference.to_string(),
                timeout,
            }),
        }
    }

    /// A pinned reference whose manifest and layer are in the store and verify.
    fn lookup_store(&self, reference: &Reference) -> Option<Pulled> {
        let manifest_digest = reference.digest()?;
        let raw = self.store.read_verified(manifest_digest)?;
        let artifact = check_artifact(&raw, self.options.max_layer_bytes).ok()?;
        let layer = &artifact.layer.digest;
        self.store.has_verified(layer).then(|| Pulled {
            reference: reference.clone(),
            manifest_digest: manifest_digest.clone(),
            layer_digest: layer.clone(),
            path: self.store.path(layer),
            size: artifact.layer.size,
            from_store: true,
        })
    }

    async fn pull_remote(&self, reference: &Reference) -> Result<Pulled, OciError> {
        let shown = reference.to_string();
        let registry = reference.registry();
        let client = self.client(registry);
        let oref = Self::oci_ref(reference)?;
        let (auth, source) = self.credentials(registry).await;
        let (raw, _) = client
            .pull_manifest_raw(&oref, &auth, ACCEPTED_MANIFESTS)
            .await
            .map_err(|e| classify(&shown, registry, source, e))?;
        if raw.len() as u64 > weft_policy::oci::MAX_MANIFEST_BYTES {
            return Err(OciError::Artifact {
                reference: shown,
                source: ArtifactError::TooLarge(raw.len()),
            });
        }
        let manifest_digest = digest_of(&raw);
        if let Some(pinned) = reference.digest()
            && pinned != &manifest_digest
        {
            return Err(OciError::DigestMismatch {
                reference: shown,
                what: "image manifest",
                expected: pinned.to_string(),
                actual: manifest_digest.to_string(),
            });
        }
        let artifact = check_artifact(&raw, self.options.max_layer_bytes).map_err(|source| {
            OciError::Artifact {
                reference: shown.clone(),
                source,
            }
        })?;
        let store_err = |path: PathBuf| move |source| OciError::Store { path, source };
        self.store
            .put(&manifest_digest, &raw)
            .map_err(store_err(self.store.path(&manifest_digest)))?;
        let layer = artifact.layer;
        let pinned = reference.pinned(manifest_digest.clone());
        if self.store.has_verified(&layer.digest) {
            return Ok(Pulled {
                reference: pinned,
                manifest_digest,
                path: self.store.path(&layer.digest),
                layer_digest: layer.digest,
                size: layer.size,
                from_store: false,
            });
        }
        let descriptor = OciDescriptor {
            media_type: layer.media_type.clone(),
            digest: layer.digest.to_string(),
            size: i64::try_from(layer.size).unwrap_or(i64::MAX),
            ..OciDescriptor::default()
        };
        let mut stream = client
            .pull_blob_stream(&oref, &descriptor)
            .await
            .map_err(|e| classify(&shown, registry, source, e))?;
        // The declared size is within the cap (check_artifact); a registry sending more than
        // it declared is cut off there.
        let limit = layer.size;
        let bar = progress::Bar::new(self.options.progress, format!("pull {shown}"), layer.size);
        let mut hasher = Sha256::new();
        let mut bytes: Vec<u8> =
            Vec::with_capacity(usize::try_from(limit.min(64 << 20)).unwrap_or(0));
        while let Some(chunk) = stream.next().await {
            let chunk = match chunk {
                Ok(c) => c,
                // oci-client's own verification reports a mismatch at the end of the stream;
                // report it like ours.
                Err(e) if e.to_string().to_ascii_lowercase().contains("digest") => {
                    return Err(OciError::DigestMismatch {
                        reference: shown,
                        what: "Wasm layer",
                        expected: layer.digest.to_string(),
                        actual: format!("a different blob ({e})"),
                    });
                }
                Err(e) => {
                    return Err(OciError::Registry {
                        reference: shown,
                        message: format!("reading the layer: {e}"),
                    });
                }
            };
            if bytes.len() as u64 + chunk.len() as u64 > limit {
                return Err(OciError::LayerTooLarge {
                    reference: shown,
                    limit,
                });
            }
            hasher.update(&chunk);
            bytes.extend_from_slice(&chunk);
            bar.set(bytes.len() as u64);
        }
        bar.finish();
        let actual = store::digest_of_hash(hasher.finalize().as_slice());
        if actual != layer.digest {
            return Err(OciError::DigestMismatch {
                reference: shown,
                what: "Wasm layer",
                expected: layer.digest.to_string(),
                actual: actual.to_string(),
            });
        }
        if !bytes.starts_with(b"\0asm") {
            return Err(OciError::NotWasm { reference: shown });
        }
        let path = self
            .store
            .put(&layer.digest, &bytes)
            .map_err(store_err(self.store.path(&layer.digest)))?;
        tracing::info!(reference = %pinned, layer = %layer.digest, size = bytes.len(), "pulled");
        Ok(Pulled {
            reference: pinned,
            manifest_digest,
            layer_digest: layer.digest,
            path,
            size: bytes.len() as u64,
            from_store: false,
        })
    }

    /// Resolves `reference` to its manifest digest (a pinned reference answers itself).
    pub async fn resolve(&self, reference: &Reference) -> Result<Digest, OciError> {
        Ok(self.pull(reference).await?.manifest_digest)
    }

    /// Pushes `wasm` (a component or core module) to `reference` (which needs a tag) as a
    /// CNCF Wasm artifact; returns the manifest digest.
    pub async fn push(&self, wasm: &[u8], reference: &Reference) -> Result<Pushed, OciError> {
        let timeout = self.options.timeout;
        match tokio::time::timeout(timeout, self.push_inner(wasm, reference)).await {
            Ok(r) => r,
            Err(_) => Err(OciError::Timeout {
                reference: reference.to_string(),
                timeout,
            }),
        }
    }

    async fn push_inner(&self, wasm: &[u8], reference: &Reference) -> Result<Pushed, OciError> {
        let shown = reference.to_string();
        if reference.tag().is_none() {
            return Err(OciError::Invalid(format!(
                "{shown}: push to a tag (`:1.0`); the digest is what the registry computes"
            )));
        }
        if !wasm.starts_with(b"\0asm") {
            return Err(OciError::Invalid(format!(
                "{shown}: the file is not a WebAssembly binary (no `\\0asm` header)"
            )));
        }
        if wasm.len() as u64 > self.options.max_layer_bytes {
            return Err(OciError::LayerTooLarge {
                reference: shown,
                limit: self.options.max_layer_bytes,
            });
        }
        let config =
            config::wasm_config(wasm).map_err(|e| OciError::Invalid(format!("{shown}: {e}")))?;
        let layer_digest = digest_of(wasm);
        let config_digest = digest_of(&config);
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST_MEDIA_TYPE,
            "config": {
                "mediaType": WASM_CONFIG_MEDIA_TYPE,
                "digest": config_digest.to_string(),
                "size": config.len(),
            },
            "layers": [{
                "mediaType": WASM_LAYER_MEDIA_TYPE,
                "digest": layer_digest.to_string(),
                "size": wasm.len(),
            }],
            "annotations": {
                "org.opencontainers.image.created": humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
            },
        });
        let manifest_bytes = serde_json::to_vec(&manifest)
            .map_err(|e| OciError::Invalid(format!("{shown}: cannot encode the manifest: {e}")))?;
        let manifest_digest = digest_of(&manifest_bytes);

        let registry = reference.registry();
        let client = self.client(registry);
        let oref = Self::oci_ref(reference)?;
        let (auth, source) = self.credentials(registry).await;
        let fail = |e| classify(&shown, registry, source, e);
        client
            .auth(&oref, &auth, RegistryOperation::Push)
            .await
            .map_err(fail)?;
        let bar = progress::Bar::new(
            self.options.progress,
            format!("push {shown}"),
            wasm.len() as u64,
        );
        if !client
            .blob_exists(&oref, &layer_digest.to_string())
            .await
            .map_err(fail)?
        {
            client
                .push_blob(
                    &oref,
                    bytes::Bytes::copy_from_slice(wasm),
                    &layer_digest.to_string(),
                )
                .await
                .map_err(fail)?;
        }
        bar.set(wasm.len() as u64);
        client
            .push_blob(&oref, config.clone(), &config_digest.to_string())
            .await
            .map_err(fail)?;
        let content_type = OCI_MANIFEST_MEDIA_TYPE
            .parse()
            .map_err(|e| OciError::Invalid(format!("{e}")))?;
        client
            .push_manifest_raw(&oref, manifest_bytes.clone(), content_type)
            .await
            .map_err(fail)?;
        bar.finish();
        // What we pushed is what we trust: keep it, so a deploy of the new digest needs no pull.
        let _ = self.store.put(&manifest_digest, &manifest_bytes);
        let _ = self.store.put(&layer_digest, wasm);
        Ok(Pushed {
            reference: reference.pinned(manifest_digest.clone()),
            manifest_digest,
            layer_digest,
            size: wasm.len() as u64,
        })
    }
}

/// An `oci-client` error as ours: not found, unauthorized, or a registry error.
fn classify(
    reference: &str,
    registry: &str,
    source: AuthSource,
    e: oci_client::errors::OciDistributionError,
) -> OciError {
    use oci_client::errors::OciDistributionError as E;
    let message = e.to_string();
    let lower = message.to_ascii_lowercase();
    match &e {
        E::UnauthorizedError { .. } | E::AuthenticationFailure(_) => OciError::Unauthorized {
            reference: reference.to_string(),
            registry: registry.to_string(),
            source_used: source,
            message,
        },
        // oci-client checks what it fetched against the digest asked for (or the one the
        // registry announced) before we see the bytes: a mismatch, refused.
        E::DigestError(oci_client::errors::DigestError::VerificationError { expected, actual }) => {
            OciError::DigestMismatch {
                reference: reference.to_string(),
                what: "image manifest",
                expected: expected.clone(),
                actual: actual.clone(),
            }
        }
        E::ImageManifestNotFoundError(_) => OciError::NotFound {
            reference: reference.to_string(),
            message,
        },
        E::ServerError { code: 404, .. } => OciError::NotFound {
            reference: reference.to_string(),
            message,
        },
        E::RegistryError { envelope, .. }
            if envelope.errors.iter().any(|err| {
                use oci_client::errors::OciErrorCode as C;
                matches!(
                    err.code,
                    C::ManifestUnknown | C::NameUnknown | C::BlobUnknown | C::ManifestBlobUnknown
                )
            }) =>
        {
            OciError::NotFound {
                reference: reference.to_string(),
                message: envelope.to_string(),
            }
        }
        E::RegistryError { envelope, .. }
            if envelope.errors.iter().any(|err| {
                use oci_client::errors::OciErrorCode as C;
                matches!(err.code, C::Unauthorized | C::Denied)
            }) =>
        {
            OciError::Unauthorized {
                reference: reference.to_string(),
                registry: registry.to_string(),
                source_used: source,
                message: envelope.to_string(),
            }
        }
        _ if lower.contains("manifest unknown") || lower.contains("name unknown") => {
            OciError::NotFound {
                reference: reference.to_string(),
                message,
            }
        }
        _ if lower.contains("unauthorized") || lower.contains("denied") => OciError::Unauthorized {
            reference: reference.to_string(),
            registry: registry.to_string(),
            source_used: source,
            message,
        },
        _ => {
            // reqwest's Display hides the cause (connection refused, TLS): show the chain.
            let mut full = message;
            let mut cause = std::error::Error::source(&e);
            while let Some(c) = cause {
                full.push_str(": ");
                full.push_str(&c.to_string());
                cause = c.source();
            }
            OciError::Registry {
                reference: reference.to_string(),
                message: full,
            }
        }
    }
}
