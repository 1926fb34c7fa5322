//! Text -> documents -> typed [`Manifest`]s.
//!
//! Parsing goes in two steps. The text is read (as YAML, or as JSON when it starts with `{` or
//! `[`) into a generic tree that keeps every key, then a hand-written decoder walks the tree
//! against the model, filling defaults and recording *every* structural problem (unknown or
//! duplicate fields, wrong types, missing fields, bad enum values) with its field path. Fields
//! that failed get placeholders so the rest of the document is still decoded, and the semantic
//! checks in [`crate::validate`] still run; their errors at or below a path that already failed
//! are dropped so one mistake is reported once.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{ErrorKind, ManifestError, ManifestErrors, Sink};
use crate::fieldpath::{field, index, is_under};
use crate::model::*;
use crate::node::Node;
use crate::suggest::did_you_mean;
use crate::validate::validate_into;

/// Parses every manifest in `text` (YAML, or JSON when the first non-blank character is `{` or
/// `[`; several YAML documents separated by `---`, a JSON stream, or a top-level list of
/// manifests), fills defaults and validates them without touching the filesystem (see
/// [`validate`](crate::validate)). `source` names the file in errors and in
/// [`Manifest::origin`]; relative paths are not resolved.
///
/// Returns all the manifests, or every error found in every document.
pub fn parse_str(text: &str, source: &Path) -> Result<Vec<Manifest>, ManifestErrors> {
    parse_with_base(text, source, None)
}

/// Reads the manifest file at `path`, parses it like [`parse_str`] and validates it including
/// the filesystem: images and volume directories must exist relative to the file's directory,
/// and pinned digests must match the image files.
pub fn load_file(path: &Path) -> Result<Vec<Manifest>, ManifestErrors> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => {
            return Err(ManifestErrors(vec![ManifestError {
                file: path.to_path_buf(),
                document: None,
                path: String::new(),
                value: None,
                kind: ErrorKind::Read,
                message: format!("cannot read the manifest: {e}"),
                hint: Some(match e.kind() {
                    std::io::ErrorKind::NotFound => {
                        "check the path; it is relative to the current directory".to_string()
                    }
                    _ => "check that the file exists and is readable".to_string(),
                }),
            }]));
        }
    };
    let text = match String::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            return Err(ManifestErrors(vec![ManifestError {
                file: path.to_path_buf(),
                document: None,
                path: String::new(),
                value: None,
                kind: ErrorKind::Read,
                message: format!(
                    "not UTF-8 text (invalid byte at offset {})",
                    e.utf8_error().valid_up_to()
                ),
                hint: Some("a manifest is a YAML or JSON text file; save it as UTF-8".into()),
            }]));
        }
    };
    let base = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    parse_with_base(&text, path, Some(&base))
}

/// [`parse_str`], checking the filesystem relative to `base_dir` when it is given.
pub fn parse_with_base(
    text: &str,
    source: &Path,
    base_dir: Option<&Path>,
) -> Result<Vec<Manifest>, ManifestErrors> {
    let docs = match read_documents(text) {
        Ok(d) => d,
        Err((message, hint)) => {
            return Err(ManifestErrors(vec![ManifestError {
                file: source.to_path_buf(),
                document: None,
                path: String::new(),
                value: None,
                kind: ErrorKind::Syntax,
                message,
                hint: Some(hint),
            }]));
        }
    };
    if docs.is_empty() {
        return Err(ManifestErrors(vec![ManifestError {
            file: source.to_path_buf(),
            document: None,
            path: String::new(),
            value: None,
            kind: ErrorKind::NoDocuments,
            message: "the file holds no manifest".into(),
            hint: Some(format!(
                "start with `apiVersion: {API_VERSION}`, `kind: Workload`, `metadata` and `spec`"
            )),
        }]));
    }
    let several = docs.len() > 1;
    let mut manifests = Vec::with_capacity(docs.len());
    let mut errors = Vec::new();
    for (i, node) in docs.iter().enumerate() {
        let origin = Origin {
            path: source.to_path_buf(),
            document: several.then_some(i),
        };
        let mut dec = Decoder {
            sink: Sink::new(origin.path.clone(), origin.document),
            failed: Vec::new(),
            suggested: Vec::new(),
        };
        let manifest = dec.manifest(node, origin);
        let mut sink = dec.sink;
        if let Some(m) = &manifest {
            let mut semantic = Sink::new(sink.file.clone(), sink.document);
            validate_into(m, base_dir, &mut semantic);
            sink.errors.extend(
                semantic
                    .errors
                    .into_iter()
                    .filter(|e| !dec.failed.iter().any(|f| is_under(&e.path, f))),
            );
        }
        if sink.errors.is_empty() {
            if let Some(m) = manifest {
                manifests.push(m);
            }
        } else {
            errors.extend(sink.errors);
        }
    }
    if errors.is_empty() {
        Ok(manifests)
    } else {
        Err(ManifestErrors(errors))
    }
}

/// Whether `text` is read as JSON: its first non-blank character is `{` or `[`.
pub fn looks_like_json(text: &str) -> bool {
    matches!(
        text.trim_start_matches('\u{feff}')
            .trim_start()
            .chars()
            .next(),
        Some('{' | '[')
    )
}

/// Splits the text into document trees (null documents dropped, top-level lists flattened).
/// On a syntax error returns (message, hint).
fn read_documents(text: &str) -> Result<Vec<Node>, (String, String)> {
    let text = text.trim_start_matches('\u{feff}');
    let mut raw = Vec::new();
    if looks_like_json(text) {
        let stream = serde_json::Deserializer::from_str(text).into_iter::<Node>();
        for item in stream {
            match item {
                Ok(n) => raw.push(n),
                Err(e) => {
                    return Err((
                        format!("invalid JSON: {e}"),
                        "a manifest is a JSON object (or a list of them); check brackets, commas and quotes near that line"
                            .to_string(),
                    ));
                }
            }
        }
    } else {
        for doc in serde_norway::Deserializer::from_str(text) {
            match Node::deserialize(doc) {
                Ok(n) => raw.push(n),
                Err(e) => {
                    return Err((
                        format!("invalid YAML: {e}"),
                        "check the indentation (spaces, not tabs) and quoting near that line; separate documents with `---`"
                            .to_string(),
                    ));
                }
            }
        }
    }
    let mut docs = Vec::new();
    for n in raw {
        match n {
            Node::Null => {}
            Node::Seq(items) => docs.extend(items.into_iter().filter(|n| *n != Node::Null)),
            n => docs.push(n),
        }
    }
    Ok(docs)
}

/// The decoder for one document.
struct Decoder {
    sink: Sink,
    /// Paths that already have a structural error (their semantic errors are dropped).
    failed: Vec<String>,
    /// Paths of known fields that an unknown field's "did you mean" pointed at: when such a
    /// field is missing, the unknown-field error already says so.
    suggested: Vec<String>,
}

/// The known (first-seen) fields of one mapping.
struct Fields<'n> {
    path: String,
    entries: Vec<(&'n str, &'n Node)>,
}

impl<'n> Fields<'n> {
    /// The value of `key`, treating null as absent.
    fn get(&self, key: &str) -> Option<&'n Node> {
        self.entries
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| *v)
            .filter(|v| **v != Node::Null)
    }
    fn has(&self, key: &str) -> bool {
        self.get(key).is_some()
    }
    fn path(&self, key: &str) -> String {
        field(&self.path, key)
    }
}

const MANIFEST_FIELDS: &[&str] = &["apiVersion", "kind", "metadata", "spec"];
const METADATA_FIELDS: &[&str] = &["name", "namespace", "labels"];
const SPEC_FIELDS: &[&str] = &[
    "compose",
    "components",
    "service",
    "hostInterfaces",
    "volumes",
    "replicas",
    "hostSelector",
    "spreadBy",
];
const COMPONENT_FIELDS: &[&str] = &[
    "name",
    "image",
    "digest",
    "poolSize",
    "maxInvocations",
    "maxConcurrency",
    "links",
    "localResources",
    "build",
];
const SERVICE_FIELDS: &[&str] = &[
    "name",
    "image",
    "digest",
    "poolSize",
    "maxInvocations",
    "maxConcurrency",
    "links",
    "localResources",
    "maxRestarts",
    "serveHttp",
    "build",
];
const BUILD_FIELDS: &[&str] = &["command", "workdir", "watch"];
const LOCAL_RESOURCES_FIELDS: &[&str] = &[
    "memoryLimitMb",
    "timeoutMs",
    "config",
    "environment",
    "volumeMounts",
    "allowedHosts",
    "sockets",
    "allowedIpNameLookups",
];
const VOLUME_MOUNT_FIELDS: &[&str] = &["name", "mountPath", "readOnly"];
const SOCKET_FIELDS: &[&str] = &["port", "hostPort", "protocol"];
const HOST_INTERFACE_FIELDS: &[&str] = &["namespace", "package", "interfaces", "config"];
const VOLUME_FIELDS: &[&str] = &["name", "hostPath"];
const HOST_PATH_FIELDS: &[&str] = &["localPath"];

/// The known field names of every object level, keyed by the schema's definition names (used
/// by tests to check the decoder and the JSON Schema agree).
#[cfg(test)]
pub(crate) const LEVELS: &[(&str, &[&str])] = &[
    ("Manifest", MANIFEST_FIELDS),
    ("Metadata", METADATA_FIELDS),
    ("Spec", SPEC_FIELDS),
    ("Component", COMPONENT_FIELDS),
    ("Service", SERVICE_FIELDS),
    ("LocalResources", LOCAL_RESOURCES_FIELDS),
    ("VolumeMount", VOLUME_MOUNT_FIELDS),
    ("Socket", SOCKET_FIELDS),
    ("HostInterface", HOST_INTERFACE_FIELDS),
    ("Volume", VOLUME_FIELDS),
    ("HostPath", HOST_PATH_FIELDS),
    ("Build", BUILD_FIELDS),
];

/// A hint for a field that exists, but at another level.
type Misplaced = fn(&str) -> Option<String>;

fn no_misplaced(_: &str) -> Option<String> {
    None
}

fn component_misplaced(key: &str) -> Option<String> {
    if LOCAL_RESOURCES_FIELDS.contains(&key) {
        return Some(format!("`{key}` belongs under `localResources`"));
    }
    match key {
        "maxRestarts" | "serveHttp" => Some(format!("only `spec.service` has `{key}`")),
        "replicas" | "hostSelector" | "spreadBy" => Some(format!(
            "`{key}` belongs in `spec`, with `kind: WorkloadDeployment`"
        )),
        "hostInterfaces" | "interfaces" => {
            Some("grant host interfaces to the workload in `spec.hostInterfaces`".into())
        }
        "volumes" => Some(
            "declare volumes in `spec.volumes` and mount them with `localResources.volumeMounts`"
                .into(),
        ),
        _ => None,
    }
}

fn spec_misplaced(key: &str) -> Option<String> {
    if key == "localResources" || (COMPONENT_FIELDS.contains(&key) && key != "name") {
        return Some(format!(
            "`{key}` belongs to a component: put it in an entry of `spec.components` (or in `spec.service`)"
        ));
    }
    match key {
        "name" | "namespace" | "labels" => Some(format!("`{key}` belongs under `metadata`")),
        _ => None,
    }
}

fn manifest_misplaced(key: &str) -> Option<String> {
    if SPEC_FIELDS.contains(&key) {
        return Some(format!("`{key}` belongs under `spec`"));
    }
    if METADATA_FIELDS.contains(&key) {
        return Some(format!("`{key}` belongs under `metadata`"));
    }
    None
}

fn local_resources_misplaced(key: &str) -> Option<String> {
    match key {
        "volumes" => {
            Some("declare volumes in `spec.volumes`; mount them here with `volumeMounts`".into())
        }
        "env" => Some("environment variables go in `environment`".into()),
        _ => None,
    }
}

/// `"8080"` -> "quote it" style hint for a scalar found where a string was expected.
fn quote_hint(node: &Node) -> Option<String> {
    node.scalar_text().map(|t| format!("quote it: \"{t}\""))
}

impl Decoder {
    fn fail(
        &mut self,
        path: &str,
        value: Option<&str>,
        kind: ErrorKind,
        message: impl Into<String>,
        hint: Option<String>,
    ) {
        self.sink.push(path, value, kind, message, hint);
        self.failed.push(path.to_string());
    }

    fn wrong_type(&mut self, path: &str, node: &Node, expected: &str, hint: Option<String>) {
        let hint = hint.or_else(|| {
            Some(
                match expected {
                    "a number" => "write a whole number without quotes, e.g. `1`",
                    "a string" => "write text, quoted if it looks like a number or boolean",
                    "a mapping" => "write `key: value` pairs (indented below, or in `{ }`)",
                    "a list" => "start each item with `- ` (or write `[a, b]`)",
                    _ => "see docs/manifest.md for this field's type",
                }
                .to_string(),
            )
        });
        let hint = match (node, hint) {
            (Node::Tagged(t, _), _) => Some(format!(
                "remove the YAML tag `{}{t}`",
                if t.starts_with('!') { "" } else { "!" }
            )),
            (_, h) => h,
        };
        self.fail(
            path,
            node.scalar_text().as_deref(),
            ErrorKind::WrongType,
            format!("expected {expected}, found {}", node.type_name()),
            hint,
        );
    }

    /// Checks that `node` is a mapping (null counts as an empty one) with string keys, no
    /// duplicates and only `known` fields, reporting every violation.
    fn object<'n>(
        &mut self,
        node: &'n Node,
        path: &str,
        known: &[&str],
        misplaced: Misplaced,
    ) -> Option<Fields<'n>> {
        let entries = match node {
            Node::Map(e) => e,
            Node::Null => {
                return Some(Fields {
                    path: path.to_string(),
                    entries: Vec::new(),
                });
            }
            other => {
                self.wrong_type(path, other, "a mapping", None);
                return None;
            }
        };
        let mut fields: Vec<(&'n str, &'n Node)> = Vec::new();
        let mut seen: Vec<&'n str> = Vec::new();
        for (k, v) in entries {
            let key = match k {
                Node::Str(s) => s.as_str(),
                other => {
                    let text = other.scalar_text();
                    self.fail(
                        path,
                        text.as_deref(),
                        ErrorKind::WrongType,
                        format!("field names must be strings, found {}", other.type_name()),
                        Some(format!("known fields here: {}", known.join(", "))),
                    );
                    continue;
                }
            };
            let fpath = field(path, key);
            if seen.contains(&key) {
                self.fail(
                    &fpath,
                    None,
                    ErrorKind::DuplicateKey,
                    "this field is given twice",
                    Some("keep one of them".into()),
                );
                continue;
            }
            seen.push(key);
            if known.contains(&key) {
                fields.push((key, v));
                continue;
            }
            let hint = if key == "<<" {
                "YAML merge keys (`<<`) are not supported; write the fields out".to_string()
            } else if let Some(h) = misplaced(key) {
                h
            } else if let Some(s) = did_you_mean(key, known) {
                self.suggested.push(field(path, s));
                format!("did you mean `{s}`?")
            } else {
                format!("known fields here: {}", known.join(", "))
            };
            self.fail(
                &fpath,
                None,
                ErrorKind::UnknownField,
                "unknown field",
                Some(hint),
            );
        }
        Some(Fields {
            path: path.to_string(),
            entries: fields,
        })
    }

    fn missing(&mut self, f: &Fields<'_>, key: &str, what: &str, hint: String) {
        let path = f.path(key);
        if self.suggested.contains(&path) {
            // `imag: x` already got "unknown field (did you mean `image`?)".
            self.failed.push(path);
            return;
        }
        self.fail(
            &path,
            None,
            ErrorKind::MissingField,
            format!("missing {what}"),
            Some(hint),
        );
    }

    fn string(&mut self, node: &Node, path: &str) -> Option<String> {
        match node {
            Node::Str(s) => Some(s.clone()),
            other => {
                let hint = quote_hint(other);
                self.wrong_type(path, other, "a string", hint);
                None
            }
        }
    }

    fn req_string(&mut self, f: &Fields<'_>, key: &str, what: &str, hint: &str) -> String {
        match f.get(key) {
            Some(n) => self.string(n, &f.path(key)).unwrap_or_default(),
            None => {
                self.missing(f, key, what, hint.to_string());
                String::new()
            }
        }
    }

    fn opt_string(&mut self, f: &Fields<'_>, key: &str) -> Option<String> {
        let n = f.get(key)?;
        self.string(n, &f.path(key))
    }

    /// An integer in `min..=max`; `None` (after reporting) when it is not one.
    fn integer(&mut self, node: &Node, path: &str, min: i128, max: i128) -> Option<i128> {
        match node {
            Node::Int(i) if (min..=max).contains(i) => Some(*i),
            Node::Int(i) => {
                self.fail(
                    path,
                    Some(&i.to_string()),
                    ErrorKind::OutOfRange,
                    format!("must be between {min} and {max}"),
                    Some(format!("use a whole number from {min} to {max}")),
                );
                None
            }
            Node::Float(x) => {
                self.fail(
                    path,
                    Some(&x.to_string()),
                    ErrorKind::WrongType,
                    "expected a whole number",
                    Some("drop the fraction".into()),
                );
                None
            }
            Node::Str(s) if s.trim().parse::<i128>().is_ok() => {
                self.wrong_type(
                    path,
                    node,
                    "a number",
                    Some(format!("remove the quotes: {}", s.trim())),
                );
                None
            }
            other => {
                self.wrong_type(path, other, "a number", None);
                None
            }
        }
    }

    fn opt_int(&mut self, f: &Fields<'_>, key: &str, min: i128, max: i128) -> Option<i128> {
        let n = f.get(key)?;
        self.integer(n, &f.path(key), min, max)
    }

    fn u32_or(&mut self, f: &Fields<'_>, key: &str, default: u32) -> u32 {
        self.opt_int(f, key, 0, i128::from(u32::MAX))
            .and_then(|i| u32::try_from(i).ok())
            .unwrap_or(default)
    }

    fn bool_or(&mut self, f: &Fields<'_>, key: &str, default: bool) -> bool {
        let Some(n) = f.get(key) else {
            return default;
        };
        match n {
            Node::Bool(b) => *b,
            Node::Str(s) if matches!(s.as_str(), "true" | "false") => {
                let hint = Some(format!("remove the quotes: {s}"));
                self.wrong_type(&f.path(key), n, "true or false", hint);
                default
            }
            other => {
                self.wrong_type(
                    &f.path(key),
                    other,
                    "true or false",
                    Some("write true or false".into()),
                );
                default
            }
        }
    }

    /// One of `names` (case-sensitive); returns the index.
    fn choice(&mut self, node: &Node, path: &str, names: &[&str]) -> Option<usize> {
        let s = self.string(node, path)?;
        if let Some(i) = names.iter().position(|n| *n == s) {
            return Some(i);
        }
        let hint = did_you_mean(&s, names)
            .map(|n| format!("did you mean `{n}`?"))
            .unwrap_or_else(|| format!("use one of: {}", names.join(", ")));
        self.fail(
            path,
            Some(&s),
            ErrorKind::InvalidValue,
            format!("must be one of: {}", names.join(", ")),
            Some(hint),
        );
        None
    }

    /// A list; null counts as empty. Returns the items with their paths.
    fn list<'n>(&mut self, f: &Fields<'n>, key: &str, hint: &str) -> Vec<(String, &'n Node)> {
        let path = f.path(key);
        match f.get(key) {
            None => Vec::new(),
            Some(Node::Seq(items)) => items
                .iter()
                .enumerate()
                .map(|(i, n)| (index(&path, i), n))
                .collect(),
            Some(other) => {
                self.wrong_type(&path, other, "a list", Some(hint.to_string()));
                Vec::new()
            }
        }
    }

    fn string_list(&mut self, f: &Fields<'_>, key: &str, hint: &str) -> Vec<String> {
        let items = self.list(f, key, hint);
        let mut out = Vec::with_capacity(items.len());
        for (p, n) in items {
            // Keep indices aligned with the document: a bad item becomes "" (its error is
            // already recorded, and semantic errors below it are dropped).
            out.push(self.string(n, &p).unwrap_or_default());
        }
        out
    }

    /// A mapping of strings to strings; null counts as empty.
    fn string_map(&mut self, f: &Fields<'_>, key: &str) -> BTreeMap<String, String> {
        let path = f.path(key);
        let mut out = BTreeMap::new();
        let entries = match f.get(key) {
            None => return out,
            Some(Node::Map(e)) => e,
            Some(other) => {
                self.wrong_type(
                    &path,
                    other,
                    "a mapping of names to strings",
                    Some("write `key: value` pairs, e.g. `{ greeting: hi }`".into()),
                );
                return out;
            }
        };
        for (k, v) in entries {
            let key = match k {
                Node::Str(s) => s.clone(),
                other => {
                    let text = other.scalar_text();
                    let hint = quote_hint(other);
                    self.fail(
                        &path,
                        text.as_deref(),
                        ErrorKind::WrongType,
                        format!("keys must be strings, found {}", other.type_name()),
                        hint,
                    );
                    continue;
                }
            };
            let vpath = field(&path, &key);
            if out.contains_key(&key) {
                self.fail(
                    &vpath,
                    None,
                    ErrorKind::DuplicateKey,
                    "this key is given twice",
                    Some("keep one of them".into()),
                );
                continue;
            }
            let value = match v {
                Node::Str(s) => s.clone(),
                Node::Null => {
                    self.fail(
                        &vpath,
                        None,
                        ErrorKind::WrongType,
                        "expected a string, found null",
                        Some("write an empty string as \"\"".into()),
                    );
                    String::new()
                }
                other => {
                    let hint = quote_hint(other);
                    self.wrong_type(&vpath, other, "a string", hint);
                    String::new()
                }
            };
            out.insert(key, value);
        }
        out
    }

    fn manifest(&mut self, node: &Node, origin: Origin) -> Option<Manifest> {
        let f = match node {
            Node::Map(_) => self.object(node, "", MANIFEST_FIELDS, manifest_misplaced)?,
            other => {
                self.fail(
                    "",
                    other.scalar_text().as_deref(),
                    ErrorKind::WrongType,
                    format!(
                        "expected a manifest (a mapping with apiVersion, kind, metadata and spec), found {}",
                        other.type_name()
                    ),
                    Some(format!(
                        "start the document with `apiVersion: {API_VERSION}` and `kind: Workload`"
                    )),
                );
                return None;
            }
        };

        let api_version = ApiVersion::V1Alpha1;
        match f.get("apiVersion") {
            None => self.missing(
                &f,
                "apiVersion",
                "apiVersion",
                format!("add `apiVersion: {API_VERSION}`"),
            ),
            Some(n) => {
                if let Some(s) = self.string(n, "apiVersion")
                    && s != API_VERSION
                {
                    let hint = if s.contains("wasmcloud") || s.contains("oam.dev") {
                        format!(
                            "this is a Weft manifest: fields follow wasmCloud's workload API, but the apiVersion is `{API_VERSION}`"
                        )
                    } else {
                        format!("use `apiVersion: {API_VERSION}`")
                    };
                    self.fail(
                        "apiVersion",
                        Some(&s),
                        ErrorKind::InvalidValue,
                        format!("unsupported apiVersion; this version of Weft reads {API_VERSION}"),
                        Some(hint),
                    );
                }
            }
        }

        const KINDS: &[&str] = &["Workload", "WorkloadDeployment"];
        // On a bad kind, decode as a deployment so that replicas/hostSelector raise nothing more.
        let mut kind = Kind::WorkloadDeployment;
        match f.get("kind") {
            None => self.missing(
                &f,
                "kind",
                "kind",
                "add `kind: Workload` (or `kind: WorkloadDeployment` for a scheduled deployment)"
                    .into(),
            ),
            Some(n) => {
                if let Some(s) = self.string(n, "kind") {
                    match s.as_str() {
                        "Workload" => kind = Kind::Workload,
                        "WorkloadDeployment" => kind = Kind::WorkloadDeployment,
                        _ => {
                            let hint = did_you_mean(&s, KINDS)
                                .map(|k| format!("did you mean `{k}`?"))
                                .unwrap_or_else(|| {
                                    "use `Workload`, or `WorkloadDeployment` to have a scheduler place replicas"
                                        .into()
                                });
                            self.fail(
                                "kind",
                                Some(&s),
                                ErrorKind::InvalidValue,
                                "unknown kind; expected Workload or WorkloadDeployment",
                                Some(hint),
                            );
                        }
                    }
                }
            }
        }

        let metadata = match f.get("metadata") {
            None => {
                self.missing(
                    &f,
                    "metadata",
                    "metadata",
                    "add `metadata: { name: my-workload }`".into(),
                );
                Metadata {
                    name: String::new(),
                    namespace: "default".into(),
                    labels: BTreeMap::new(),
                }
            }
            Some(n) => self.metadata(n),
        };

        let spec = match f.get("spec") {
            None => {
                self.missing(
                    &f,
                    "spec",
                    "spec",
                    "add a `spec` with at least one entry under `components`".into(),
                );
                Spec::default()
            }
            Some(n) => self.spec(n, kind),
        };

        Some(Manifest {
            api_version,
            kind,
            metadata,
            spec,
            origin,
        })
    }

    fn metadata(&mut self, node: &Node) -> Metadata {
        let Some(f) = self.object(node, "metadata", METADATA_FIELDS, no_misplaced) else {
            return Metadata {
                name: String::new(),
                namespace: "default".into(),
                labels: BTreeMap::new(),
            };
        };
        let name = self.req_string(&f, "name", "name", "name the workload, e.g. `name: todo`");
        let namespace = self
            .opt_string(&f, "namespace")
            .unwrap_or_else(|| "default".into());
        let labels = self.string_map(&f, "labels");
        Metadata {
            name,
            namespace,
            labels,
        }
    }

    fn spec(&mut self, node: &Node, kind: Kind) -> Spec {
        let Some(f) = self.object(node, "spec", SPEC_FIELDS, spec_misplaced) else {
            self.failed.push("spec".into());
            return Spec::default();
        };
        let compose = match f.get("compose") {
            None => Compose::Auto,
            Some(n) => match self.choice(n, &f.path("compose"), &["auto", "always", "never"]) {
                Some(1) => Compose::Always,
                Some(2) => Compose::Never,
                _ => Compose::Auto,
            },
        };
        let mut components = Vec::new();
        for (p, n) in self.list(
            &f,
            "components",
            "`components` is a list: start each entry with `- name: ...`",
        ) {
            components.push(self.component(n, &p));
        }
        let service = f
            .get("service")
            .map(|n| self.service(n, &f.path("service")));
        let mut host_interfaces = Vec::new();
        for (p, n) in self.list(
            &f,
            "hostInterfaces",
            "`hostInterfaces` is a list: `- { namespace: wasi, package: http, interfaces: [incoming-handler] }`",
        ) {
            host_interfaces.push(self.host_interface(n, &p));
        }
        let mut volumes = Vec::new();
        for (p, n) in self.list(
            &f,
            "volumes",
            "`volumes` is a list: `- { name: data, hostPath: { localPath: ./data } }`",
        ) {
            volumes.push(self.volume(n, &p));
        }
        let replicas = match self.opt_int(&f, "replicas", 0, i128::from(u32::MAX)) {
            Some(r) => u32::try_from(r).ok(),
            None if f.has("replicas") => Some(1),
            None => None,
        };
        let host_selector = f
            .has("hostSelector")
            .then(|| self.string_map(&f, "hostSelector"));
        let spread_by = self.opt_string(&f, "spreadBy");
        let (replicas, host_selector) = match kind {
            Kind::WorkloadDeployment => (
                Some(replicas.unwrap_or(1)),
                Some(host_selector.unwrap_or_default()),
            ),
            Kind::Workload => (replicas, host_selector),
        };
        Spec {
            compose,
            components,
            service,
            host_interfaces,
            volumes,
            replicas,
            host_selector,
            spread_by,
        }
    }

    fn component(&mut self, node: &Node, path: &str) -> Component {
        let Some(f) = self.object(node, path, COMPONENT_FIELDS, component_misplaced) else {
            self.failed.push(path.to_string());
            return Component::default();
        };
        self.component_fields(&f)
    }

    fn service(&mut self, node: &Node, path: &str) -> Service {
        let Some(f) = self.object(node, path, SERVICE_FIELDS, component_misplaced) else {
            self.failed.push(path.to_string());
            return Service {
                max_invocations: 1,
                max_concurrency: 1,
                max_restarts: 3,
                ..Service::default()
            };
        };
        let c = self.component_fields(&f);
        let max_restarts = self.u32_or(&f, "maxRestarts", 3);
        let serve_http = self.bool_or(&f, "serveHttp", false);
        Service {
            name: c.name,
            image: c.image,
            digest: c.digest,
            pool_size: c.pool_size,
            max_invocations: c.max_invocations,
            max_concurrency: c.max_concurrency,
            links: c.links,
            local_resources: c.local_resources,
            max_restarts,
            serve_http,
            build: c.build,
        }
    }

    /// The fields components and the service share.
    fn component_fields(&mut self, f: &Fields<'_>) -> Component {
        let name = self.req_string(f, "name", "name", "name it, e.g. `name: api`");
        let image = self.req_string(
            f,
            "image",
            "image",
            "point it at the component's Wasm, e.g. `image: ./api.wasm` (relative to the manifest)",
        );
        let digest = self.opt_string(f, "digest");
        let pool_size = self.u32_or(f, "poolSize", 0);
        let max_invocations = self.u32_or(f, "maxInvocations", 1);
        let max_concurrency = self.u32_or(f, "maxConcurrency", 1);
        let links = self.string_map(f, "links");
        let local_resources = match f.get("localResources") {
            None => LocalResources::default(),
            Some(n) => self.local_resources(n, &f.path("localResources")),
        };
        let build = f.get("build").map(|n| self.build(n, &f.path("build")));
        Component {
            name,
            image,
            digest,
            pool_size,
            max_invocations,
            max_concurrency,
            links,
            local_resources,
            build,
        }
    }

    fn build(&mut self, node: &Node, path: &str) -> Build {
        let Some(f) = self.object(node, path, BUILD_FIELDS, no_misplaced) else {
            self.failed.push(path.to_string());
            return Build::default();
        };
        Build {
            command: self.req_string(
                &f,
                "command",
                "command",
                "give the build command, e.g. `command: cargo build --release --target wasm32-wasip2`",
            ),
            workdir: self.opt_string(&f, "workdir"),
            watch: self.string_list(
                &f,
                "watch",
                "`watch` is a list of globs: `[ \"src/**/*.rs\", Cargo.toml ]`",
            ),
        }
    }

    fn local_resources(&mut self, node: &Node, path: &str) -> LocalResources {
        let Some(f) = self.object(
            node,
            path,
            LOCAL_RESOURCES_FIELDS,
            local_resources_misplaced,
        ) else {
            self.failed.push(path.to_string());
            return LocalResources::default();
        };
        let memory_limit_mb = self
            .opt_int(&f, "memoryLimitMb", 0, i128::from(u32::MAX))
            .and_then(|i| u32::try_from(i).ok());
        let timeout_ms = self
            .opt_int(&f, "timeoutMs", 0, i128::from(u64::MAX))
            .and_then(|i| u64::try_from(i).ok());
        let config = self.string_map(&f, "config");
        let environment = self.string_map(&f, "environment");
        let mut volume_mounts = Vec::new();
        for (p, n) in self.list(
            &f,
            "volumeMounts",
            "`volumeMounts` is a list: `- { name: data, mountPath: /data }`",
        ) {
            volume_mounts.push(self.volume_mount(n, &p));
        }
        let allowed_hosts = self.string_list(
            &f,
            "allowedHosts",
            "`allowedHosts` is a list of strings: `[ \"api.example.com:443\" ]`",
        );
        let mut sockets = Vec::new();
        for (p, n) in self.list(
            &f,
            "sockets",
            "`sockets` is a list: `- { port: 5432, protocol: tcp }`",
        ) {
            sockets.push(self.socket(n, &p));
        }
        let allowed_ip_name_lookups = self.string_list(
            &f,
            "allowedIpNameLookups",
            "`allowedIpNameLookups` is a list of strings: `[ \"db.internal\" ]`",
        );
        LocalResources {
            memory_limit_mb,
            timeout_ms,
            config,
            environment,
            volume_mounts,
            allowed_hosts,
            sockets,
            allowed_ip_name_lookups,
        }
    }

    fn volume_mount(&mut self, node: &Node, path: &str) -> VolumeMount {
        let Some(f) = self.object(node, path, VOLUME_MOUNT_FIELDS, no_misplaced) else {
            self.failed.push(path.to_string());
            return VolumeMount::default();
        };
        VolumeMount {
            name: self.req_string(
                &f,
                "name",
                "name",
                "name a volume declared in `spec.volumes`",
            ),
            mount_path: self.req_string(
                &f,
                "mountPath",
                "mountPath",
                "say where the guest sees it, e.g. `mountPath: /data`",
            ),
            read_only: self.bool_or(&f, "readOnly", false),
        }
    }

    fn socket(&mut self, node: &Node, path: &str) -> Socket {
        let Some(f) = self.object(node, path, SOCKET_FIELDS, no_misplaced) else {
            self.failed.push(path.to_string());
            return Socket::default();
        };
        let port = match f.get("port") {
            None => {
                self.missing(
                    &f,
                    "port",
                    "port",
                    "give the port the guest connects to, e.g. `port: 5432`".into(),
                );
                None
            }
            Some(n) => self.integer(n, &f.path("port"), 1, 65535),
        };
        let host_port = self.opt_int(&f, "hostPort", 1, 65535);
        let protocol = match f.get("protocol") {
            None => Protocol::Tcp,
            Some(n) => match self.choice(n, &f.path("protocol"), &["tcp", "udp"]) {
                Some(1) => Protocol::Udp,
                _ => Protocol::Tcp,
            },
        };
        Socket {
            port: port.and_then(|p| u16::try_from(p).ok()).unwrap_or(1),
            host_port: host_port.and_then(|p| u16::try_from(p).ok()),
            protocol,
        }
    }

    fn host_interface(&mut self, node: &Node, path: &str) -> HostInterface {
        let Some(f) = self.object(node, path, HOST_INTERFACE_FIELDS, no_misplaced) else {
            self.failed.push(path.to_string());
            return HostInterface::default();
        };
        let namespace = self.req_string(&f, "namespace", "namespace", "e.g. `namespace: wasi`");
        let package = self.req_string(&f, "package", "package", "e.g. `package: http`");
        let interfaces = if f.has("interfaces") {
            self.string_list(
                &f,
                "interfaces",
                "`interfaces` is a list of interface names: `[incoming-handler]`",
            )
        } else {
            self.missing(
                &f,
                "interfaces",
                "interfaces",
                "list the interfaces to grant, e.g. `interfaces: [incoming-handler]`".into(),
            );
            Vec::new()
        };
        let config = self.string_map(&f, "config");
        HostInterface {
            namespace,
            package,
            interfaces,
            config,
        }
    }

    fn volume(&mut self, node: &Node, path: &str) -> Volume {
        let Some(f) = self.object(node, path, VOLUME_FIELDS, no_misplaced) else {
            self.failed.push(path.to_string());
            return Volume::default();
        };
        let name = self.req_string(&f, "name", "name", "name it, e.g. `name: data`");
        let host_path = match f.get("hostPath") {
            None => {
                self.missing(
                    &f,
                    "hostPath",
                    "hostPath",
                    "give the host directory: `hostPath: { localPath: ./data }`".into(),
                );
                HostPath::default()
            }
            Some(n) => {
                let p = f.path("hostPath");
                match self.object(n, &p, HOST_PATH_FIELDS, no_misplaced) {
                    Some(hf) => HostPath {
                        local_path: self.req_string(
                            &hf,
                            "localPath",
                            "localPath",
                            "e.g. `localPath: ./data` (relative to the manifest)",
                        ),
                    },
                    None => {
                        self.failed.push(p);
                        HostPath::default()
                    }
                }
            }
        };
        Volume { name, host_path }
    }
}
