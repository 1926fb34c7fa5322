//! The JSON Schema of the manifest format, for editors (e.g. the YAML language server's
//! `# yaml-language-server: $schema=...`).

/// The JSON Schema (draft 2020-12) of one manifest document: every field with its description,
/// default and constraints; `additionalProperties: false` on every object.
///
/// The schema checks shapes; some rules (unique names, references between fields, known host
/// interfaces, files on disk) are only checked by [`crate::validate`].
pub fn json_schema() -> serde_json::Value {
    schemars::schema_for!(crate::model::Manifest).to_value()
}
