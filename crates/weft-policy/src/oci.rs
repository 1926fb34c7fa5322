//! OCI images of Wasm components: the `oci://` reference grammar and the check that a pulled
//! image manifest is a CNCF Wasm artifact (one `application/wasm` layer under an
//! `application/vnd.wasm.config.v0+json` config) and nothing else.
//!
//! Both are pure and total over untrusted input (a manifest field, a registry's response),
//! property-tested below and fuzzed (`fuzz/fuzz_targets/oci.rs`). The network side is the
//! `weft-oci` crate; see docs/distribution.md.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Config media type of a Wasm artifact (CNCF TAG Runtime's Wasm OCI artifact layout).
pub const WASM_CONFIG_MEDIA_TYPE: &str = "application/vnd.wasm.config.v0+json";
/// Media type of the one layer of a Wasm artifact: the component or module bytes.
pub const WASM_LAYER_MEDIA_TYPE: &str = "application/wasm";
/// OCI image manifest.
pub const OCI_MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index (multi-platform).
pub const OCI_INDEX_MEDIA_TYPE: &str = "application/vnd.oci.image.index.v1+json";
/// Docker image manifest v2 schema 2.
pub const DOCKER_MANIFEST_MEDIA_TYPE: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list.
pub const DOCKER_LIST_MEDIA_TYPE: &str =
    "application/vnd.docker.distribution.manifest.list.v2+json";
/// Config media types of container images.
const CONTAINER_CONFIG_MEDIA_TYPES: &[&str] = &[
    "application/vnd.oci.image.config.v1+json",
    "application/vnd.docker.container.image.v1+json",
];
/// Largest image manifest or config accepted (bytes).
pub const MAX_MANIFEST_BYTES: u64 = 4 << 20;
/// Longest reference accepted (characters, without `oci://`).
pub const MAX_REFERENCE_LEN: usize = 512;

/// A `sha256:` digest: 64 lowercase hex digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(String);

impl Digest {
    /// Parses `sha256:HEX` (64 lowercase hex digits).
    pub fn parse(s: &str) -> Result<Digest, DigestError> {
        let Some((algo, hex)) = s.split_once(':') else {
            return Err(DigestError::NoAlgorithm);
        };
        if algo != "sha256" {
            return Err(DigestError::Algorithm(truncate(algo, 20)));
        }
        if hex.len() != 64 {
            return Err(DigestError::Length(hex.len()));
        }
        if !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(DigestError::NotLowerHex);
        }
        Ok(Digest(hex.to_string()))
    }

    /// From 64 lowercase hex digits (what a sha256 hasher prints).
    pub fn from_hex(hex: &str) -> Result<Digest, DigestError> {
        Digest::parse(&format!("sha256:{hex}"))
    }

    /// The 64 hex digits.
    pub fn hex(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.0)
    }
}

/// Why a digest is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    #[error("a digest is `sha256:` and 64 hex digits")]
    NoAlgorithm,
    #[error("only sha256 digests are supported, not `{0}`")]
    Algorithm(String),
    #[error("a sha256 digest has 64 hex digits, this one has {0}")]
    Length(usize),
    #[error("a sha256 digest is lowercase hex (0-9, a-f)")]
    NotLowerHex,
}

/// `oci://REGISTRY/REPOSITORY[:TAG][@sha256:HEX]`, with a tag, a digest or both.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

/// Why an `oci://` reference is not valid. [`ReferenceError::hint`] says how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error("an OCI image reference starts with `oci://`")]
    NotOci,
    #[error("the reference is empty")]
    Empty,
    #[error("the reference is longer than {MAX_REFERENCE_LEN} characters")]
    TooLong,
    #[error("`{0}` has no repository after the registry")]
    NoRepository(String),
    #[error("`{0}` does not start with a registry host")]
    NoRegistry(String),
    #[error("registry `{registry}`: {reason}")]
    BadRegistry { registry: String, reason: String },
    #[error("repository `{repository}`: {reason}")]
    BadRepository { repository: String, reason: String },
    #[error("tag `{0}` is not valid: 1-128 of A-Z a-z 0-9 _ . -, not starting with . or -")]
    BadTag(String),
    #[error("digest `{digest}`: {source}")]
    BadDigest { digest: String, source: DigestError },
    #[error("`{0}` has no tag or digest")]
    NoTagOrDigest(String),
}

impl ReferenceError {
    /// How to fix it.
    pub fn hint(&self) -> String {
        match self {
            ReferenceError::NotOci | ReferenceError::Empty => {
                "write oci://REGISTRY/REPOSITORY:TAG, e.g. `oci://ghcr.io/acme/api:1.0`".into()
            }
            ReferenceError::TooLong => "use a shorter repository or tag".into(),
            ReferenceError::NoRepository(r) => {
                format!("name the repository: `oci://{r}/acme/api:1.0`")
            }
            ReferenceError::NoRegistry(first) => format!(
                "name the registry host first (Weft never guesses one): \
                 `oci://ghcr.io/{first}/...` or `oci://localhost:5000/{first}/...`"
            ),
            ReferenceError::BadRegistry { .. } => {
                "a registry is HOST or HOST:PORT, e.g. `ghcr.io` or `127.0.0.1:5000`".into()
            }
            ReferenceError::BadRepository { .. } => {
                "repository path components are lowercase letters and digits, separated by \
                 `.`, `_`, `__` or `-`, e.g. `acme/hello-api`"
                    .into()
            }
            ReferenceError::BadTag(_) => "e.g. `:1.0.2` or `:latest`".into(),
            ReferenceError::BadDigest { .. } => {
                "write `@sha256:` and the 64 hex digits `weft push` printed".into()
            }
            ReferenceError::NoTagOrDigest(r) => format!(
                "add a tag (`oci://{r}:1.0`) or pin a digest (`oci://{r}@sha256:...`); \
                 there is no implicit `latest`"
            ),
        }
    }
}

impl Reference {
    /// Parses `oci://REGISTRY/REPOSITORY[:TAG][@sha256:HEX]` (the scheme in any case).
    pub fn parse(s: &str) -> Result<Reference, ReferenceError> {
        let s = s.trim();
        let rest = match s.split_once("://") {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("oci") => rest,
            _ => return Err(ReferenceError::NotOci),
        };
        Reference::parse_bare(rest)
    }

    /// Parses a reference with or without the `oci://` scheme (`ghcr.io/acme/api:1.0`), as
    /// `weft push` and `weft pull` take it.
    pub fn parse_lenient(s: &str) -> Result<Reference, ReferenceError> {
        if s.contains("://") {
            Reference::parse(s)
        } else {
            Reference::parse_bare(s.trim())
        }
    }

    fn parse_bare(rest: &str) -> Result<Reference, ReferenceError> {
        if rest.is_empty() {
            return Err(ReferenceError::Empty);
        }
        if rest.len() > MAX_REFERENCE_LEN {
            return Err(ReferenceError::TooLong);
        }
        let (name, digest) = match rest.split_once('@') {
            Some((name, d)) => {
                let digest = Digest::parse(d).map_err(|source| ReferenceError::BadDigest {
                    digest: truncate(d, 80),
                    source,
                })?;
                (name, Some(digest))
            }
            None => (rest, None),
        };
        let Some((registry, path)) = name.split_once('/') else {
            return Err(if looks_like_registry(name) {
                ReferenceError::NoRepository(truncate(name, 80))
            } else {
                ReferenceError::NoRegistry(truncate(name, 80))
            });
        };
        if !looks_like_registry(registry) {
            return Err(ReferenceError::NoRegistry(truncate(registry, 80)));
        }
        check_registry(registry)?;
        // The tag follows the last `:` of the last path component.
        let last_slash = path.rfind('/').map(|i| i + 1).unwrap_or(0);
        let (repository, tag) = match path[last_slash..].rfind(':') {
            Some(i) => {
                let at = last_slash + i;
                (&path[..at], Some(&path[at + 1..]))
            }
            None => (path, None),
        };
        if repository.is_empty() {
            return Err(ReferenceError::NoRepository(truncate(registry, 80)));
        }
        check_repository(repository)?;
        if let Some(t) = tag
            && !valid_tag(t)
        {
            return Err(ReferenceError::BadTag(truncate(t, 140)));
        }
        if tag.is_none() && digest.is_none() {
            return Err(ReferenceError::NoTagOrDigest(format!(
                "{registry}/{repository}"
            )));
        }
        Ok(Reference {
            registry: registry.to_string(),
            repository: repository.to_string(),
            tag: tag.map(str::to_string),
            digest,
        })
    }

    /// `ghcr.io`, `127.0.0.1:5000`.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// `acme/api`.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// The same reference pinned to `digest` (the tag is kept as a label).
    pub fn pinned(&self, digest: Digest) -> Reference {
        Reference {
            digest: Some(digest),
            ..self.clone()
        }
    }

    /// Without `oci://`: `REGISTRY/REPOSITORY[:TAG][@DIGEST]` (what other OCI tools take).
    pub fn bare(&self) -> String {
        let mut s = format!("{}/{}", self.registry, self.repository);
        if let Some(t) = &self.tag {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = &self.digest {
            s.push('@');
            s.push_str(&d.to_string());
        }
        s
    }

    /// Whether the registry is on this machine's loopback (`localhost`, `127.0.0.0/8`,
    /// `[::1]`): the only registries spoken to over plain HTTP without an explicit flag.
    pub fn is_loopback_registry(&self) -> bool {
        is_loopback_registry(&self.registry)
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "oci://{}", self.bare())
    }
}

/// Whether `registry` (HOST or HOST:PORT) is on the loopback.
pub fn is_loopback_registry(registry: &str) -> bool {
    let host = split_host_port(registry).0;
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    match bare.parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) => v4.is_loopback(),
        Ok(IpAddr::V6(v6)) => v6 == Ipv6Addr::LOCALHOST,
        Err(_) => false,
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max).collect();
        t.push('…');
        t
    }
}

/// Docker's rule: the first component is a registry when it has a `.` or a `:`, or is
/// `localhost`.
fn looks_like_registry(first: &str) -> bool {
    first.contains('.') || first.contains(':') || first == "localhost"
}

fn split_host_port(registry: &str) -> (&str, Option<&str>) {
    if registry.starts_with('[') {
        match registry.find(']') {
            Some(end) => {
                let host = &registry[..=end];
                match registry[end + 1..].strip_prefix(':') {
                    Some(port) => (host, Some(port)),
                    None => (host, None),
                }
            }
            None => (registry, None),
        }
    } else {
        match registry.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (registry, None),
        }
    }
}

fn check_registry(registry: &str) -> Result<(), ReferenceError> {
    let bad = |reason: &str| ReferenceError::BadRegistry {
        registry: truncate(registry, 80),
        reason: reason.to_string(),
    };
    let (host, port) = split_host_port(registry);
    if let Some(port) = port {
        match port.parse::<u16>() {
            Ok(p) if p > 0 && !port.starts_with('0') => {}
            _ => return Err(bad("the port is 1 to 65535")),
        }
    }
    if host.starts_with('[') {
        let inner = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .ok_or_else(|| bad("an IPv6 address is written in brackets, `[::1]:5000`"))?;
        return inner
            .parse::<Ipv6Addr>()
            .map(|_| ())
            .map_err(|_| bad("not an IPv6 address"));
    }
    if host.parse::<Ipv4Addr>().is_ok() {
        return Ok(());
    }
    if host.is_empty() || host.len() > 253 {
        return Err(bad("the host name is 1 to 253 characters"));
    }
    for label in host.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err(bad(
                "a host name is dot-separated labels of letters, digits and `-`",
            ));
        }
    }
    Ok(())
}

fn check_repository(repository: &str) -> Result<(), ReferenceError> {
    for component in repository.split('/') {
        if let Err(reason) = check_path_component(component) {
            return Err(ReferenceError::BadRepository {
                repository: truncate(repository, 120),
                reason: reason.to_string(),
            });
        }
    }
    Ok(())
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn check_path_component(c: &str) -> Result<(), &'static str> {
    if c.is_empty() {
        return Err("empty path component (`//` or a trailing `/`)");
    }
    let bytes = c.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if bytes.iter().any(|b| b.is_ascii_uppercase()) {
        return Err("must be lowercase");
    }
    if !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return Err("each path component starts and ends with a letter or digit");
    }
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if alnum(b) {
            i += 1;
            continue;
        }
        // A separator run: `.`, `_`, `__` or one or more `-`.
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|b| b == b'-');
        if !ok {
            return Err("separators are `.`, `_`, `__` or `-` between letters and digits");
        }
    }
    Ok(())
}

fn valid_tag(t: &str) -> bool {
    let bytes = t.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 128
        && (bytes[0].is_ascii_alphanumeric() || bytes[0] == b'_')
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// A content descriptor of an image manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
}

/// A checked Wasm artifact manifest: its config and its one Wasm layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WasmArtifact {
    pub config: Descriptor,
    pub layer: Descriptor,
}

/// Why a pulled image manifest is not a Wasm artifact Weft runs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArtifactError {
    #[error("the image manifest is not valid JSON: {0}")]
    NotJson(String),
    #[error("the image manifest is {0} bytes, more than the {MAX_MANIFEST_BYTES}-byte limit")]
    TooLarge(usize),
    #[error(
        "this is an image index (media type `{0}`), not a Wasm artifact: Weft pulls one \
         component per reference (hint: push the component with `weft push` or `wkg oci push`)"
    )]
    Index(String),
    #[error("unsupported image manifest media type `{0}`")]
    ManifestMediaType(String),
    #[error("unsupported image manifest schemaVersion {0} (expected 2)")]
    SchemaVersion(i64),
    #[error(
        "this is a container image (config media type `{0}`), not a Wasm component \
         (hint: Weft runs Wasm artifacts: config `{WASM_CONFIG_MEDIA_TYPE}`, one \
         `{WASM_LAYER_MEDIA_TYPE}` layer; push one with `weft push FILE REF`)"
    )]
    ContainerImage(String),
    #[error(
        "config media type `{0}` is not a Wasm artifact's (`{WASM_CONFIG_MEDIA_TYPE}`) \
         (hint: push the component with `weft push FILE REF`)"
    )]
    NotWasmArtifact(String),
    #[error(
        "layer {index} has media type `{media_type}`: precompiled code is never taken from a \
         registry, only Wasm bytes, which the host compiles itself (hint: push the .wasm)"
    )]
    Precompiled { index: usize, media_type: String },
    #[error("the artifact has no `{WASM_LAYER_MEDIA_TYPE}` layer")]
    NoWasmLayer,
    #[error(
        "the artifact has {count} layers ({media_types}); a Wasm artifact has exactly one \
         `{WASM_LAYER_MEDIA_TYPE}` layer"
    )]
    Layers { count: usize, media_types: String },
    #[error("{field}: {reason}")]
    BadDescriptor { field: String, reason: String },
    #[error(
        "the Wasm layer is {size} bytes, more than the {max}-byte limit \
         (hint: raise --max-layer-size if this component is expected)"
    )]
    LayerTooLarge { size: u64, max: u64 },
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawManifest {
    schema_version: Option<serde_json::Value>,
    media_type: Option<String>,
    config: Option<RawDescriptor>,
    layers: Option<Vec<RawDescriptor>>,
    manifests: Option<serde_json::Value>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawDescriptor {
    media_type: Option<String>,
    digest: Option<String>,
    size: Option<serde_json::Value>,
}

/// Whether a media type names precompiled native code (as runwasi's precompiled layers do).
fn is_precompiled(media_type: &str) -> bool {
    let m = media_type.to_ascii_lowercase();
    m.contains("precompiled") || m.contains("cwasm")
}

fn descriptor(raw: &RawDescriptor, field: &str) -> Result<Descriptor, ArtifactError> {
    let bad = |reason: String| ArtifactError::BadDescriptor {
        field: field.to_string(),
        reason,
    };
    let media_type = raw
        .media_type
        .clone()
        .ok_or_else(|| bad("no mediaType".into()))?;
    let digest_text = raw
        .digest
        .as_deref()
        .ok_or_else(|| bad("no digest".into()))?;
    let digest = Digest::parse(digest_text).map_err(|e| bad(format!("digest: {e}")))?;
    let size = raw
        .size
        .as_ref()
        .and_then(serde_json::Value::as_u64)
        .ok_or_else(|| bad("size is not a non-negative integer".into()))?;
    Ok(Descriptor {
        media_type,
        digest,
        size,
    })
}

/// Checks that `raw` (an image manifest as the registry served it) is a Wasm artifact:
/// schemaVersion 2, an OCI (or Docker v2) image manifest, config media type
/// [`WASM_CONFIG_MEDIA_TYPE`], exactly one [`WASM_LAYER_MEDIA_TYPE`] layer no larger than
/// `max_layer_bytes`, no precompiled layers, well-formed sha256 digests.
pub fn check_artifact(raw: &[u8], max_layer_bytes: u64) -> Result<WasmArtifact, ArtifactError> {
    if raw.len() as u64 > MAX_MANIFEST_BYTES {
        return Err(ArtifactError::TooLarge(raw.len()));
    }
    let m: RawManifest = serde_json::from_slice(raw)
        .map_err(|e| ArtifactError::NotJson(truncate(&e.to_string(), 200)))?;
    match m.media_type.as_deref() {
        Some(t @ (OCI_INDEX_MEDIA_TYPE | DOCKER_LIST_MEDIA_TYPE)) => {
            return Err(ArtifactError::Index(t.to_string()));
        }
        None if m.manifests.is_some() => {
            return Err(ArtifactError::Index(OCI_INDEX_MEDIA_TYPE.to_string()));
        }
        None | Some(OCI_MANIFEST_MEDIA_TYPE | DOCKER_MANIFEST_MEDIA_TYPE) => {}
        Some(other) => return Err(ArtifactError::ManifestMediaType(truncate(other, 120))),
    }
    match m
        .schema_version
        .as_ref()
        .and_then(serde_json::Value::as_i64)
    {
        Some(2) => {}
        Some(v) => return Err(ArtifactError::SchemaVersion(v)),
        None => return Err(ArtifactError::SchemaVersion(0)),
    }
    let config = m
        .config
        .as_ref()
        .ok_or_else(|| ArtifactError::BadDescriptor {
            field: "config".into(),
            reason: "missing".into(),
        })?;
    let config = descriptor(config, "config")?;
    if CONTAINER_CONFIG_MEDIA_TYPES.contains(&config.media_type.as_str()) {
        return Err(ArtifactError::ContainerImage(config.media_type));
    }
    if config.media_type != WASM_CONFIG_MEDIA_TYPE {
        return Err(ArtifactError::NotWasmArtifact(truncate(
            &config.media_type,
            120,
        )));
    }
    if config.size > MAX_MANIFEST_BYTES {
        return Err(ArtifactError::BadDescriptor {
            field: "config".into(),
            reason: format!(
                "size {} is over the {MAX_MANIFEST_BYTES}-byte limit",
                config.size
            ),
        });
    }
    let raw_layers = m.layers.unwrap_or_default();
    let mut layers = Vec::with_capacity(raw_layers.len());
    for (i, l) in raw_layers.iter().enumerate() {
        layers.push(descriptor(l, &format!("layers[{i}]"))?);
    }
    if let Some((index, l)) = layers
        .iter()
        .enumerate()
        .find(|(_, l)| is_precompiled(&l.media_type))
    {
        return Err(ArtifactError::Precompiled {
            index,
            media_type: truncate(&l.media_type, 120),
        });
    }
    if layers.len() != 1 {
        if !layers.iter().any(|l| l.media_type == WASM_LAYER_MEDIA_TYPE) {
            return Err(ArtifactError::NoWasmLayer);
        }
        let names: Vec<String> = layers
            .iter()
            .take(8)
            .map(|l| truncate(&l.media_type, 60))
            .collect();
        return Err(ArtifactError::Layers {
            count: layers.len(),
            media_types: names.join(", "),
        });
    }
    let layer = layers.remove(0);
    if layer.media_type != WASM_LAYER_MEDIA_TYPE {
        return Err(ArtifactError::NoWasmLayer);
    }
    if layer.size > max_layer_bytes {
        return Err(ArtifactError::LayerTooLarge {
            size: layer.size,
            max: max_layer_bytes,
        });
    }
    Ok(WasmArtifact { config, layer })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn references() {
        let r = Reference::parse("oci://ghcr.io/acme/api:1.0").expect("parse");
        assert_eq!(
            (r.registry(), r.repository(), r.tag(), r.digest()),
            ("ghcr.io", "acme/api", Some("1.0"), None)
        );
        let r = Reference::parse(&format!("oci://127.0.0.1:5000/hello@{D}")).expect("parse");
        assert_eq!(r.registry(), "127.0.0.1:5000");
        assert_eq!(r.tag(), None);
        assert_eq!(r.digest().map(ToString::to_string).as_deref(), Some(D));
        assert!(r.is_loopback_registry());
        let r = Reference::parse(&format!("OCI://localhost:5000/a/b/c:v2@{D}")).expect("parse");
        assert_eq!((r.repository(), r.tag()), ("a/b/c", Some("v2")));
        assert_eq!(r.to_string(), format!("oci://localhost:5000/a/b/c:v2@{D}"));
        assert!(
            Reference::parse("oci://[::1]:5000/x:1")
                .expect("v6")
                .is_loopback_registry()
        );
        assert!(
            !Reference::parse("oci://ghcr.io/x:1")
                .expect("x")
                .is_loopback_registry()
        );
        assert!(Reference::parse_lenient("ghcr.io/acme/api:1").is_ok());
    }

    #[test]
    fn reference_errors() {
        use ReferenceError as E;
        let err = |s: &str| Reference::parse(s).expect_err(s);
        assert_eq!(err("ghcr.io/a:1"), E::NotOci);
        assert_eq!(err("oci://"), E::Empty);
        assert_eq!(err("oci://ghcr.io"), E::NoRepository("ghcr.io".into()));
        assert_eq!(err("oci://ghcr.io/"), E::NoRepository("ghcr.io".into()));
        assert_eq!(err("oci://acme/api:1"), E::NoRegistry("acme".into()));
        assert_eq!(
            err("oci://ghcr.io/acme/api"),
            E::NoTagOrDigest("ghcr.io/acme/api".into())
        );
        assert!(matches!(
            err("oci://ghcr.io/Acme/api:1"),
            E::BadRepository { .. }
        ));
        assert!(matches!(
            err("oci://ghcr.io/a//b:1"),
            E::BadRepository { .. }
        ));
        assert!(matches!(err("oci://ghcr.io/a-:1"), E::BadRepository { .. }));
        assert!(matches!(err("oci://ghcr.io/a:.x"), E::BadTag(_)));
        assert!(matches!(err("oci://ghcr.io:0/a:1"), E::BadRegistry { .. }));
        assert!(matches!(err("oci://gh_cr.io/a:1"), E::BadRegistry { .. }));
        assert!(matches!(
            err("oci://ghcr.io/a@sha512:00"),
            E::BadDigest { .. }
        ));
        assert!(matches!(
            err("oci://ghcr.io/a@sha256:ABC"),
            E::BadDigest { .. }
        ));
        for e in [err("oci://acme/api:1"), err("oci://ghcr.io/acme/api")] {
            assert!(!e.hint().is_empty());
        }
    }

    fn manifest(config_type: &str, layers: &[(&str, u64)]) -> Vec<u8> {
        let layers: Vec<serde_json::Value> = layers
            .iter()
            .map(|(t, size)| serde_json::json!({ "mediaType": t, "digest": D, "size": size }))
            .collect();
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST_MEDIA_TYPE,
            "config": { "mediaType": config_type, "digest": D, "size": 100 },
            "layers": layers,
        }))
        .expect("json")
    }

    #[test]
    fn artifacts() {
        let ok = check_artifact(
            &manifest(WASM_CONFIG_MEDIA_TYPE, &[(WASM_LAYER_MEDIA_TYPE, 10)]),
            100,
        )
        .expect("wasm artifact");
        assert_eq!(ok.layer.size, 10);
        let e = |m: Vec<u8>| check_artifact(&m, 100).expect_err("refused");
        assert!(matches!(
            e(manifest(
                "application/vnd.oci.image.config.v1+json",
                &[("application/vnd.oci.image.layer.v1.tar+gzip", 10)]
            )),
            ArtifactError::ContainerImage(_)
        ));
        assert!(matches!(
            e(manifest(
                WASM_CONFIG_MEDIA_TYPE,
                &[(WASM_LAYER_MEDIA_TYPE, 101)]
            )),
            ArtifactError::LayerTooLarge {
                size: 101,
                max: 100
            }
        ));
        assert!(matches!(
            e(manifest(
                WASM_CONFIG_MEDIA_TYPE,
                &[
                    (WASM_LAYER_MEDIA_TYPE, 1),
                    ("application/vnd.wasm.precompiled.v0", 1)
                ]
            )),
            ArtifactError::Precompiled { index: 1, .. }
        ));
        assert!(matches!(
            e(manifest(
                WASM_CONFIG_MEDIA_TYPE,
                &[(WASM_LAYER_MEDIA_TYPE, 1), (WASM_LAYER_MEDIA_TYPE, 1)]
            )),
            ArtifactError::Layers { count: 2, .. }
        ));
        assert!(matches!(
            e(manifest(WASM_CONFIG_MEDIA_TYPE, &[])),
            ArtifactError::NoWasmLayer
        ));
        assert!(matches!(
            e(manifest(
                "application/vnd.fermyon.spin.application.v1+config",
                &[(WASM_LAYER_MEDIA_TYPE, 1)]
            )),
            ArtifactError::NotWasmArtifact(_)
        ));
        let index = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2, "mediaType": OCI_INDEX_MEDIA_TYPE, "manifests": []
        }))
        .expect("json");
        assert!(matches!(e(index), ArtifactError::Index(_)));
        assert!(matches!(e(b"not json".to_vec()), ArtifactError::NotJson(_)));
        let msg = e(manifest("application/vnd.oci.image.config.v1+json", &[])).to_string();
        assert!(msg.contains("container image"), "{msg}");
    }

    fn component() -> impl Strategy<Value = String> {
        "[a-z0-9]{1,4}([._-][a-z0-9]{1,4}){0,2}"
    }

    fn reference() -> impl Strategy<Value = (String, String, Option<String>, Option<String>)> {
        (
            prop_oneof![
                "[a-z]{1,8}\\.[a-z]{2,4}",
                "[a-z]{1,8}\\.[a-z]{2,4}:[1-9][0-9]{0,3}",
                Just("localhost:5000".to_string()),
                Just("127.0.0.1:5000".to_string()),
                Just("[::1]:5000".to_string()),
            ],
            prop::collection::vec(component(), 1..4).prop_map(|v| v.join("/")),
            prop::option::of("[A-Za-z0-9_][A-Za-z0-9._-]{0,20}"),
            prop::option::of("[0-9a-f]{64}"),
        )
    }

    proptest! {
        /// Valid references parse to their parts and print back to the same text.
        #[test]
        fn references_round_trip((registry, repo, tag, hex) in reference()) {
            let mut text = format!("oci://{registry}/{repo}");
            if let Some(t) = &tag { text.push(':'); text.push_str(t); }
            if let Some(h) = &hex { text.push_str("@sha256:"); text.push_str(h); }
            let parsed = Reference::parse(&text);
            if tag.is_none() && hex.is_none() {
                prop_assert!(matches!(parsed, Err(ReferenceError::NoTagOrDigest(_))));
            } else {
                let r = parsed.expect("valid reference");
                prop_assert_eq!(r.registry(), registry.as_str());
                prop_assert_eq!(r.repository(), repo.as_str());
                prop_assert_eq!(r.tag(), tag.as_deref());
                prop_assert_eq!(r.digest().map(|d| d.hex().to_string()), hex);
                prop_assert_eq!(r.to_string(), text.clone());
                prop_assert_eq!(Reference::parse(&r.to_string()), Ok(r.clone()));
                prop_assert_eq!(Reference::parse_lenient(&r.bare()), Ok(r));
            }
        }

        /// Any text: parsing never panics, and what parses prints back to itself.
        #[test]
        fn any_text(s in "(oci://)?[ -~]{0,80}") {
            if let Ok(r) = Reference::parse(&s) {
                prop_assert_eq!(Reference::parse(&r.to_string()), Ok(r.clone()));
                prop_assert!(r.tag().is_some() || r.digest().is_some());
                prop_assert!(!r.repository().bytes().any(|b| b.is_ascii_uppercase()));
            }
        }

        /// Any JSON-ish bytes: the check never panics, and what it accepts is exactly one Wasm
        /// layer within the cap under a Wasm config.
        #[test]
        fn artifact_check_is_total(
            config in prop_oneof![Just(WASM_CONFIG_MEDIA_TYPE.to_string()), "[a-z./+-]{0,30}"],
            layers in prop::collection::vec((prop_oneof![Just(WASM_LAYER_MEDIA_TYPE.to_string()), "[a-z./+-]{0,30}"], 0u64..300), 0..4),
            cap in 0u64..300,
        ) {
            let ls: Vec<(&str, u64)> = layers.iter().map(|(t, s)| (t.as_str(), *s)).collect();
            let raw = manifest(&config, &ls);
            match check_artifact(&raw, cap) {
                Ok(a) => {
                    prop_assert_eq!(config.as_str(), WASM_CONFIG_MEDIA_TYPE);
                    prop_assert_eq!(layers.len(), 1);
                    prop_assert_eq!(a.layer.media_type.as_str(), WASM_LAYER_MEDIA_TYPE);
                    prop_assert!(a.layer.size <= cap);
                }
                Err(e) => prop_assert!(!e.to_string().is_empty()),
            }
        }

        #[test]
        fn artifact_bytes(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            let _ = check_artifact(&bytes, 1000);
        }
    }
}
