//! Printing manifests back as YAML or JSON. Parsing the output gives an equal [`Manifest`]
//! (with the same `origin` when parsed under the same name).

use crate::error::PrintError;
use crate::model::Manifest;

/// The manifest as one YAML document (all defaults written out, empty collections left out).
pub fn to_yaml(manifest: &Manifest) -> Result<String, PrintError> {
    Ok(serde_norway::to_string(manifest)?)
}

/// Several manifests as one YAML stream, documents separated by `---`.
pub fn to_yaml_all(manifests: &[Manifest]) -> Result<String, PrintError> {
    let mut out = String::new();
    for (i, m) in manifests.iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        out.push_str(&to_yaml(m)?);
    }
    Ok(out)
}

/// The manifest as pretty-printed JSON.
pub fn to_json(manifest: &Manifest) -> Result<String, PrintError> {
    Ok(serde_json::to_string_pretty(manifest)?)
}

/// The manifest as a JSON value (e.g. to store it).
pub fn to_json_value(manifest: &Manifest) -> Result<serde_json::Value, PrintError> {
    Ok(serde_json::to_value(manifest)?)
}
