//! weft-manifest: the Weft workload manifest (`apiVersion: weft.dev/v1alpha1`, kinds `Workload`
//! and `WorkloadDeployment`).
//!
//! Pure: parsing YAML or JSON into a typed [`Manifest`] with defaults filled in, validation that
//! collects every problem with its field path and a hint ([`ManifestError`]), printing back
//! ([`to_yaml`], [`to_json`]) so that parsing the output gives the same value, a JSON Schema for
//! editors ([`json_schema`]) and a plan of changes between two versions ([`diff`]). The only I/O
//! is in [`load_file`] and in [`validate`] given a base directory: reading the manifest, checking
//! that images and volume directories exist, and hashing images with a pinned digest.
//!
//! ```
//! use std::path::Path;
//! let text = r#"
//! apiVersion: weft.dev/v1alpha1
//! kind: Workload
//! metadata: { name: hello }
//! spec:
//!   components:
//!     - { name: api, image: ./api.wasm }
//! "#;
//! let manifests = weft_manifest::parse_str(text, Path::new("hello.yaml")).unwrap();
//! assert_eq!(manifests[0].spec.components[0].max_invocations, 1); // default filled
//!
//! let bad = text.replace("image:", "imag:");
//! let errors = weft_manifest::parse_str(&bad, Path::new("hello.yaml")).unwrap_err();
//! assert_eq!(
//!     errors.to_string(),
//!     "hello.yaml: spec.components[0].imag: unknown field (hint: did you mean `image`?)"
//! );
//! ```
//!
//! The reference for the format is `docs/manifest.md`.

#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

mod diff;
mod error;
mod fieldpath;
pub mod grant;
mod hostif;
mod model;
mod node;
mod parse;
mod print;
pub mod rules;
mod schema;
mod suggest;
mod validate;

pub use diff::{Change, diff};
pub use error::{ErrorKind, ManifestError, ManifestErrors, PrintError};
pub use hostif::{
    DEFAULT_MAX_MESSAGE_BYTES, DEFAULT_MESSAGING_MAX_IN_FLIGHT, HttpIncomingConfig, InternalCalls,
    KNOWN_HOST_INTERFACES, KeyValueBackend, KeyValueConfig, KnownHostInterface,
    MAX_BUCKET_NAME_BYTES, MAX_MAX_MESSAGE_BYTES, MAX_MESSAGING_MAX_IN_FLIGHT, MessagingConfig,
    known_host_interface, parse_bounded,
};
pub use model::{
    API_VERSION, ApiVersion, Build, Component, Compose, HostInterface, HostPath, Kind,
    LocalResources, Manifest, Metadata, Origin, Protocol, Service, Socket, Spec, Volume,
    VolumeMount,
};
pub use parse::{load_file, looks_like_json, parse_str, parse_with_base};
pub use print::{to_json, to_json_value, to_yaml, to_yaml_all};
pub use rules::{ImageRef, ImageRefError, resolve_image};
pub use schema::json_schema;
pub use suggest::{did_you_mean, edit_distance};
pub use validate::validate;

#[cfg(test)]
mod tests;
