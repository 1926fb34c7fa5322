//! Errors: every one names the file, the document (when the file has several), the field path,
//! the offending value, what is wrong and how to fix it.

use std::fmt;
use std::path::PathBuf;

/// What kind of problem a [`ManifestError`] reports. Stable enough to match on in tests and tools.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The file could not be read.
    Read,
    /// The text is not valid YAML or JSON.
    Syntax,
    /// The file holds no manifest at all.
    NoDocuments,
    /// A field that this level does not have.
    UnknownField,
    /// A required field is absent (or null).
    MissingField,
    /// The same key appears twice in one mapping.
    DuplicateKey,
    /// A value of the wrong type (a string where a number is expected, ...).
    WrongType,
    /// A value of the right type that is not allowed (bad name, bad enum value, bad shape).
    InvalidValue,
    /// A number outside its allowed range.
    OutOfRange,
    /// Two things that must be unique share a name (components, volumes, mounts, sockets).
    Duplicate,
    /// A reference to something the manifest does not declare (a volume, a link target).
    UnknownReference,
    /// A host interface (`namespace:package`) or interface name Weft does not know.
    UnknownHostInterface,
    /// Something recognised but not implemented yet (e.g. `oci://` images).
    Unsupported,
    /// A referenced file or directory does not exist.
    NotFound,
    /// The image's sha256 differs from the pinned `digest`.
    DigestMismatch,
}

/// One problem in a manifest.
///
/// Displays as `FILE: FIELD.PATH: VALUE: MESSAGE (hint: HINT)`, with ` (document N)` after the
/// file (1-based) when the file holds several documents, and empty parts left out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ManifestError {
    /// The manifest file (or the name given to [`crate::parse_str`]).
    pub file: PathBuf,
    /// 0-based index of the document in the file, set only when the file holds several.
    pub document: Option<usize>,
    /// Field path such as `spec.components[1].localResources.volumeMounts[0].name`; empty for
    /// problems with the whole file or document.
    pub path: String,
    /// The offending value, shortened to one line; `None` when there is no value (a missing field).
    pub value: Option<String>,
    /// The kind of problem.
    pub kind: ErrorKind,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub hint: Option<String>,
}

/// Longest value (in characters) shown in an error before it is cut with `…`.
const MAX_VALUE_CHARS: usize = 60;

/// Renders a value for an error message: one line, at most [`MAX_VALUE_CHARS`] characters,
/// control characters escaped, the empty string shown as `""`.
pub(crate) fn short_value(s: &str) -> String {
    if s.is_empty() {
        return "\"\"".to_string();
    }
    let mut out = String::new();
    for (n, c) in s.chars().enumerate() {
        if n >= MAX_VALUE_CHARS {
            out.push('…');
            break;
        }
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&c.escape_unicode().to_string()),
            c => out.push(c),
        }
    }
    out
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(d) = self.document {
            write!(f, " (document {})", d.saturating_add(1))?;
        }
        if !self.path.is_empty() {
            write!(f, ": {}", self.path)?;
        }
        if let Some(v) = &self.value {
            write!(f, ": {v}")?;
        }
        write!(f, ": {}", self.message)?;
        if let Some(h) = &self.hint {
            write!(f, " (hint: {h})")?;
        }
        Ok(())
    }
}

/// All the problems found in one file (never empty when returned as an error).
#[derive(Debug, Clone, PartialEq, Eq, Default, thiserror::Error)]
pub struct ManifestErrors(pub Vec<ManifestError>);

impl ManifestErrors {
    /// The errors, in the order they were found (document order, then field order).
    pub fn iter(&self) -> std::slice::Iter<'_, ManifestError> {
        self.0.iter()
    }
    /// How many errors.
    pub fn len(&self) -> usize {
        self.0.len()
    }
    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// The first error at exactly this field path, if any (handy in tests and tools).
    pub fn at(&self, path: &str) -> Option<&ManifestError> {
        self.0.iter().find(|e| e.path == path)
    }
}

impl fmt::Display for ManifestErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl IntoIterator for ManifestErrors {
    type Item = ManifestError;
    type IntoIter = std::vec::IntoIter<ManifestError>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a> IntoIterator for &'a ManifestErrors {
    type Item = &'a ManifestError;
    type IntoIter = std::slice::Iter<'a, ManifestError>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl From<Vec<ManifestError>> for ManifestErrors {
    fn from(v: Vec<ManifestError>) -> Self {
        ManifestErrors(v)
    }
}

/// Why [`crate::to_yaml`] / [`crate::to_json`] failed (in practice they do not).
#[derive(Debug, thiserror::Error)]
pub enum PrintError {
    #[error("could not print the manifest as YAML: {0}")]
    Yaml(#[from] serde_norway::Error),
    #[error("could not print the manifest as JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// Builds errors for one document: knows the file and document index, so call sites give only
/// the path, value, kind, message and hint.
#[derive(Debug)]
pub(crate) struct Sink {
    pub file: PathBuf,
    pub document: Option<usize>,
    pub errors: Vec<ManifestError>,
}

impl Sink {
    pub fn new(file: PathBuf, document: Option<usize>) -> Self {
        Sink {
            file,
            document,
            errors: Vec::new(),
        }
    }

    /// Records an error. `value` is rendered with [`short_value`].
    pub fn push(
        &mut self,
        path: &str,
        value: Option<&str>,
        kind: ErrorKind,
        message: impl Into<String>,
        hint: Option<String>,
    ) {
        self.errors.push(ManifestError {
            file: self.file.clone(),
            document: self.document,
            path: path.to_string(),
            value: value.map(short_value),
            kind,
            message: message.into(),
            hint,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_has_all_parts() {
        let e = ManifestError {
            file: PathBuf::from("todo.yaml"),
            document: None,
            path: "spec.components[1].image".into(),
            value: Some("./api.wasm".into()),
            kind: ErrorKind::NotFound,
            message: "no such file".into(),
            hint: Some("paths are relative to the manifest's directory".into()),
        };
        assert_eq!(
            e.to_string(),
            "todo.yaml: spec.components[1].image: ./api.wasm: no such file (hint: paths are relative to the manifest's directory)"
        );
        let e = ManifestError {
            document: Some(1),
            value: None,
            hint: None,
            path: String::new(),
            ..e
        };
        assert_eq!(e.to_string(), "todo.yaml (document 2): no such file");
    }

    #[test]
    fn short_value_is_one_short_line() {
        assert_eq!(short_value(""), "\"\"");
        assert_eq!(short_value("a\nb"), "a\\nb");
        let long = "x".repeat(100);
        let s = short_value(&long);
        assert_eq!(s.chars().count(), MAX_VALUE_CHARS + 1);
        assert!(s.ends_with('…'));
    }
}
