//! Component bytes in the lattice's object store, named `sha256:HEX` (docs/lattice.md,
//! "Component bytes"): the deployer uploads, hosts fetch, verify and cache.

use std::path::{Path, PathBuf};

use tokio::io::AsyncReadExt;

use crate::connect::{Lattice, LatticeError};

/// Largest component the lattice carries.
pub const MAX_IMAGE_BYTES: u64 = 512 << 20;

/// `sha256:HEX` of some bytes.
/// The same digest the OCI store names blobs by (`weft_oci::digest_of`), as text.
pub fn digest_of(bytes: &[u8]) -> String {
    weft_oci::digest_of(bytes).to_string()
}

/// Stores `bytes` under their digest unless an object of that name exists; returns the digest.
pub async fn upload(lattice: &Lattice, bytes: &[u8]) -> Result<String, LatticeError> {
    let digest = digest_of(bytes);
    if lattice.images.info(&digest).await.is_ok() {
        return Ok(digest);
    }
    let mut reader = bytes;
    lattice
        .images
        .put(digest.as_str(), &mut reader)
        .await
        .map_err(|e| lattice.op_err(format!("upload {digest} to the object store"), e))?;
    Ok(digest)
}

/// The cached file of `digest` under `cache_dir`, fetched from the object store when it is not
/// cached (or the cached file no longer hashes to it). The bytes are hashed before they are
/// written; a mismatch is an error and nothing is cached.
pub async fn fetch(
    lattice: &Lattice,
    digest: &str,
    cache_dir: &Path,
) -> Result<PathBuf, LatticeError> {
    weft_manifest::rules::check_digest(digest)
        .map_err(|r| lattice.op_err(format!("fetch image `{digest}`"), r.reason))?;
    let hex_part = &digest["sha256:".len()..];
    let path = cache_dir.join(format!("sha256-{hex_part}.wasm"));
    if let Ok(bytes) = tokio::fs::read(&path).await {
        if digest_of(&bytes) == digest {
            return Ok(path);
        }
        tracing::warn!(path = %path.display(), "cached image does not match its digest; fetching again");
    }
    let object = lattice
        .images
        .get(digest)
        .await
        .map_err(|e| lattice.op_err(format!("fetch image {digest}"), e))?;
    let mut bytes = Vec::new();
    object
        .take(MAX_IMAGE_BYTES + 1)
        .read_to_end(&mut bytes)
        .await
        .map_err(|e| lattice.op_err(format!("read image {digest}"), e))?;
    if bytes.len() as u64 > MAX_IMAGE_BYTES {
        return Err(lattice.op_err(
            format!("fetch image {digest}"),
            format!("larger than {MAX_IMAGE_BYTES} bytes"),
        ));
    }
    let got = digest_of(&bytes);
    if got != digest {
        return Err(lattice.op_err(
            format!("fetch image {digest}"),
            format!("the object store returned bytes hashing to {got}; refused"),
        ));
    }
    tokio::fs::create_dir_all(cache_dir)
        .await
        .map_err(|e| lattice.op_err(format!("create {}", cache_dir.display()), e))?;
    let tmp = cache_dir.join(format!("sha256-{hex_part}.{}.tmp", std::process::id()));
    tokio::fs::write(&tmp, &bytes)
        .await
        .map_err(|e| lattice.op_err(format!("write {}", tmp.display()), e))?;
    tokio::fs::rename(&tmp, &path)
        .await
        .map_err(|e| lattice.op_err(format!("rename to {}", path.display()), e))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    #[test]
    fn digests_are_pinnable() {
        let d = super::digest_of(b"abc");
        assert!(weft_manifest::rules::check_digest(&d).is_ok());
        assert_eq!(
            d,
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
