//! Verified blobs by digest: `ROOT/blobs/sha256/HEX`. Written through a temporary file and a
//! rename (a reader never sees half a blob), re-hashed on every read (a corrupted entry is a
//! miss and gets refetched, never used).

use std::io::Write as _;
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};
use weft_policy::oci::Digest;

/// A directory of blobs named by their sha256.
#[derive(Debug, Clone)]
pub struct BlobStore {
    root: PathBuf,
}

/// The sha256 of `bytes` as a [`Digest`].
pub fn digest_of(bytes: &[u8]) -> Digest {
    digest_of_hash(Sha256::digest(bytes).as_slice())
}

/// A finished sha256 hash as a [`Digest`].
pub fn digest_of_hash(hash: &[u8]) -> Digest {
    Digest::from_hex(&hex::encode(hash)).expect("a sha256 hash is 64 lowercase hex digits")
}

impl BlobStore {
    /// A store rooted at `root` (created on first write).
    pub fn new(root: impl Into<PathBuf>) -> BlobStore {
        BlobStore { root: root.into() }
    }

    /// `$WEFT_CACHE_DIR/oci`, else the user cache dir's `weft/oci`.
    pub fn default_root() -> Option<PathBuf> {
        if let Some(d) = std::env::var_os("WEFT_CACHE_DIR").filter(|d| !d.is_empty()) {
            return Some(PathBuf::from(d).join("oci"));
        }
        dirs::cache_dir().map(|d| d.join("weft").join("oci"))
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the blob `digest` is (or would be) stored.
    pub fn path(&self, digest: &Digest) -> PathBuf {
        self.root.join("blobs").join("sha256").join(digest.hex())
    }

    /// The blob's bytes when it is stored and still hashes to `digest`. A corrupted entry is
    /// removed and reported as absent.
    pub fn read_verified(&self, digest: &Digest) -> Option<Vec<u8>> {
        let path = self.path(digest);
        let bytes = std::fs::read(&path).ok()?;
        if &digest_of(&bytes) == digest {
            Some(bytes)
        } else {
            tracing::warn!(path = %path.display(), %digest, "stored blob does not match its digest; refetching");
            let _ = std::fs::remove_file(&path);
            None
        }
    }

    /// Whether the blob is stored and verifies (reads and hashes it).
    pub fn has_verified(&self, digest: &Digest) -> bool {
        self.read_verified(digest).is_some()
    }

    /// Stores `bytes` under `digest` after checking that they hash to it.
    pub fn put(&self, digest: &Digest, bytes: &[u8]) -> std::io::Result<PathBuf> {
        let got = digest_of(bytes);
        if &got != digest {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("blob hashes to {got}, not {digest}"),
            ));
        }
        let path = self.path(digest);
        let dir = path.parent().unwrap_or(&self.root);
        std::fs::create_dir_all(dir)?;
        let mut tmp = tempfile_in(dir)?;
        tmp.1.write_all(bytes)?;
        tmp.1.sync_all()?;
        drop(tmp.1);
        std::fs::rename(&tmp.0, &path).inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp.0);
        })?;
        Ok(path)
    }
}

/// A new temporary file next to where the blob goes (same filesystem, so the rename is atomic).
fn tempfile_in(dir: &Path) -> std::io::Result<(PathBuf, std::fs::File)> {
    for attempt in 0..16u32 {
        let name = format!(
            ".tmp-{}-{}-{attempt}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0)
        );
        let path = dir.join(name);
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(f) => return Ok((path, f)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::other(
        "could not create a temporary file in the blob store",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_read_and_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::new(dir.path());
        let d = digest_of(b"\0asm hello");
        assert!(store.read_verified(&d).is_none());
        let path = store.put(&d, b"\0asm hello").unwrap();
        assert_eq!(
            store.read_verified(&d).as_deref(),
            Some(&b"\0asm hello"[..])
        );
        // Bytes that do not hash to the digest are refused.
        assert!(store.put(&d, b"other").is_err());
        // A corrupted entry is a miss, and is removed.
        std::fs::write(&path, b"tampered").unwrap();
        assert!(store.read_verified(&d).is_none());
        assert!(!path.exists());
    }
}
