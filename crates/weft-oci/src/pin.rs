//! Pinning a workload manifest's `oci://` images to digests, and mapping pinned images to the
//! verified files in the store for the runtime.

use std::path::PathBuf;

use weft_manifest::Manifest;
use weft_policy::oci::{Reference, check_artifact};

use crate::{BlobStore, OciError, Puller};

/// One image the manifest names by `oci://`, after pinning.
#[derive(Debug, Clone)]
pub struct PinnedImage {
    /// `spec.components[0]` or `spec.service`.
    pub field: String,
    /// The component's name.
    pub name: String,
    /// As written in the manifest before pinning.
    pub written: String,
    /// Pinned to the manifest digest.
    pub reference: Reference,
    pub layer_digest: String,
    /// Served from the store without asking the registry.
    pub from_store: bool,
}

/// Why an image of a manifest could not be pinned or localized; names the manifest field.
#[derive(Debug, thiserror::Error)]
pub enum PinError {
    #[error("{field}.image: {source}")]
    Pull { field: String, source: OciError },
    #[error("{field}.image: {message}")]
    Invalid { field: String, message: String },
    #[error(
        "{field}.digest: the manifest pins the Wasm to {pinned}, but {reference} has {actual} \
         (hint: update `digest`, or point `image` at the intended version)"
    )]
    DigestPin {
        field: String,
        reference: String,
        pinned: String,
        actual: String,
    },
}

/// The `(field path, name, image, digest)` of every unit (components, then the service).
fn units(manifest: &mut Manifest) -> Vec<(String, &mut String, &mut Option<String>, String)> {
    let mut out = Vec::new();
    for (i, c) in manifest.spec.components.iter_mut().enumerate() {
        out.push((
            format!("spec.components[{i}]"),
            &mut c.image,
            &mut c.digest,
            c.name.clone(),
        ));
    }
    if let Some(s) = manifest.spec.service.as_mut() {
        out.push((
            "spec.service".to_string(),
            &mut s.image,
            &mut s.digest,
            s.name.clone(),
        ));
    }
    out
}

/// The image as an OCI reference, when it is one.
fn oci_image(field: &str, image: &str) -> Result<Option<Reference>, PinError> {
    match weft_manifest::rules::parse_image(image) {
        Ok(weft_manifest::ImageRef::Oci(r)) => Ok(Some(r)),
        Ok(weft_manifest::ImageRef::File(_)) => Ok(None),
        Err(e) => Err(PinError::Invalid {
            field: field.to_string(),
            message: format!("{e} (hint: {})", e.hint()),
        }),
    }
}

/// Whether any image of `manifest` is an `oci://` reference.
pub fn has_oci_images(manifest: &Manifest) -> bool {
    manifest
        .spec
        .components
        .iter()
        .map(|c| c.image.as_str())
        .chain(manifest.spec.service.iter().map(|s| s.image.as_str()))
        .any(|i| {
            matches!(
                weft_manifest::rules::parse_image(i),
                Ok(weft_manifest::ImageRef::Oci(_))
            )
        })
}

impl Puller {
    /// Pulls every `oci://` image of `manifest` and pins it: `image` becomes the reference
    /// with its manifest digest (`oci://R/REPO:TAG@sha256:...`) and `digest` the Wasm layer's
    /// digest (a `digest` already set must equal it). Already pinned images in the store need
    /// no network. Returns what was pinned.
    pub async fn pin(&self, manifest: &mut Manifest) -> Result<Vec<PinnedImage>, PinError> {
        let mut pinned = Vec::new();
        for (field, image, digest, name) in units(manifest) {
            let Some(reference) = oci_image(&field, image)? else {
                continue;
            };
            let pulled = self
                .pull(&reference)
                .await
                .map_err(|source| PinError::Pull {
                    field: field.clone(),
                    source,
                })?;
            let layer = pulled.layer_digest.to_string();
            match digest.as_deref() {
                Some(d) if d != layer => {
                    return Err(PinError::DigestPin {
                        field,
                        reference: pulled.reference.to_string(),
                        pinned: d.to_string(),
                        actual: layer,
                    });
                }
                _ => {}
            }
            let written = std::mem::replace(image, pulled.reference.to_string());
            *digest = Some(layer.clone());
            pinned.push(PinnedImage {
                field,
                name,
                written,
                reference: pulled.reference,
                layer_digest: layer,
                from_store: pulled.from_store,
            });
        }
        Ok(pinned)
    }
}

/// A copy of a pinned `manifest` whose `oci://` images are the verified Wasm files in `store`
/// (absolute paths), with `digest` set to the layer digest so the runtime checks the bytes
/// again when it loads them. Fails when an image is not pinned or not in the store (pin first).
pub fn localize(manifest: &Manifest, store: &BlobStore) -> Result<Manifest, PinError> {
    let mut out = manifest.clone();
    for (field, image, digest, _) in units(&mut out) {
        let Some(reference) = oci_image(&field, image)? else {
            continue;
        };
        let Some(manifest_digest) = reference.digest() else {
            return Err(PinError::Invalid {
                field,
                message: format!("{reference} is not pinned to a digest (hint: pin it first)"),
            });
        };
        let missing = || PinError::Invalid {
            field: field.clone(),
            message: format!(
                "{reference} is not in the blob store {} (hint: pull it first)",
                store.root().display()
            ),
        };
        let raw = store.read_verified(manifest_digest).ok_or_else(missing)?;
        let artifact = check_artifact(&raw, u64::MAX).map_err(|e| PinError::Invalid {
            field: field.clone(),
            message: format!("{reference}: {e}"),
        })?;
        let path: PathBuf = store.path(&artifact.layer.digest);
        if !path.is_file() {
            return Err(missing());
        }
        *image = path.display().to_string();
        *digest = Some(artifact.layer.digest.to_string());
    }
    Ok(out)
}
