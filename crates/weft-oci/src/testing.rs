//! A real registry for tests: Debian's `docker-registry` (the CNCF distribution registry),
//! started on an ephemeral loopback port with its own config and storage directory, with or
//! without htpasswd basic auth. `scripts/test.sh` installs it; a test that cannot start it
//! fails loudly (it never skips).

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use weft_policy::oci::Digest;

/// The user and password of [`TestRegistry::start_with_auth`].
pub const USER: &str = "weft";
pub const PASSWORD: &str = "s3cret-pass";
/// `htpasswd -Bbn weft s3cret-pass` (bcrypt, the only format the registry reads).
const HTPASSWD: &str = "weft:$2y$05$LMntTt2ge3Ke18PxLz2yDeKqZSr9rjH2Zeb0OIVX9v20HoQwixn6O\n";

/// A running `docker-registry`; killed on drop.
pub struct TestRegistry {
    child: Option<Child>,
    addr: SocketAddr,
    dir: tempfile::TempDir,
    /// Whether htpasswd auth is on.
    pub auth: bool,
}

/// The registry binary: `$WEFT_DOCKER_REGISTRY`, else `docker-registry` on PATH.
pub fn binary() -> PathBuf {
    if let Some(p) = std::env::var_os("WEFT_DOCKER_REGISTRY") {
        return PathBuf::from(p);
    }
    for dir in std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()) {
        let p = dir.join("docker-registry");
        if p.is_file() {
            return p;
        }
    }
    panic!(
        "docker-registry is not installed: these tests need a real OCI registry. Install \
         Debian's `docker-registry` package (`apt-get install docker-registry`; scripts/test.sh \
         does it) or set WEFT_DOCKER_REGISTRY to the binary"
    );
}

impl TestRegistry {
    /// An anonymous registry.
    pub fn start() -> TestRegistry {
        Self::spawn(false)
    }

    /// A registry that requires basic auth as [`USER`] / [`PASSWORD`].
    pub fn start_with_auth() -> TestRegistry {
        Self::spawn(true)
    }

    fn spawn(auth: bool) -> TestRegistry {
        let dir = tempfile::tempdir().expect("temp dir");
        let storage = dir.path().join("storage");
        std::fs::create_dir_all(&storage).unwrap();
        let mut config = format!(
            "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:0\n  secret: weft-test-secret\n",
            storage.display()
        );
        if auth {
            let htpasswd = dir.path().join("htpasswd");
            std::fs::write(&htpasswd, HTPASSWD).unwrap();
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: weft-test\n    path: {}\n",
                htpasswd.display()
            ));
        }
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).unwrap();
        let bin = binary();
        let mut child = Command::new(&bin)
            .arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel::<String>();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if std::env::var_os("WEFT_TEST_REGISTRY_LOG").is_some() {
                    eprintln!("[registry] {line}");
                }
                let _ = tx.send(line);
            }
        });
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let mut seen = Vec::new();
        let addr = loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(rest) = line.split("listening on ").nth(1) {
                        let addr = rest.split(['"', ' ']).next().unwrap_or_default();
                        if let Ok(a) = addr.parse::<SocketAddr>() {
                            break a;
                        }
                    }
                    seen.push(line);
                }
                Err(_) => {
                    let _ = child.kill();
                    panic!(
                        "docker-registry did not report its address within 30 s; it said:\n{}",
                        seen.join("\n")
                    );
                }
            }
        };
        // Keep draining its log in the background (the thread above owns the pipe).
        std::thread::spawn(move || while rx.recv().is_ok() {});
        TestRegistry {
            child: Some(child),
            addr,
            dir,
            auth,
        }
    }

    /// `127.0.0.1:PORT`.
    pub fn registry(&self) -> String {
        self.addr.to_string()
    }

    /// `oci://127.0.0.1:PORT/REPO_AND_TAG`.
    pub fn reference(&self, repo_and_tag: &str) -> String {
        format!("oci://{}/{repo_and_tag}", self.addr)
    }

    /// The file the registry serves for blob `digest` (to tamper with it).
    pub fn blob_file(&self, digest: &Digest) -> PathBuf {
        let hex = digest.hex();
        self.dir
            .path()
            .join("storage/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    /// Stops the registry (it stays stopped).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Pushes an image manifest with the given config media type and layers (media type, bytes)
/// to `reference` (`REGISTRY/REPO:TAG`, no scheme), over plain HTTP: for tests of what Weft
/// refuses (container images, precompiled layers).
pub async fn push_raw_image(
    reference: &str,
    config_media_type: &str,
    config: &[u8],
    layers: &[(&str, &[u8])],
    auth: Option<(&str, &str)>,
) -> String {
    use oci_client::client::{ClientConfig, ClientProtocol};
    let oref: oci_client::Reference = reference.parse().expect("reference");
    let client = oci_client::Client::new(ClientConfig {
        protocol: ClientProtocol::Http,
        ..ClientConfig::default()
    });
    let auth = match auth {
        Some((u, p)) => oci_client::secrets::RegistryAuth::Basic(u.into(), p.into()),
        None => oci_client::secrets::RegistryAuth::Anonymous,
    };
    client
        .auth(&oref, &auth, oci_client::RegistryOperation::Push)
        .await
        .expect("auth");
    let mut layer_json = Vec::new();
    for (media_type, bytes) in layers {
        let d = crate::digest_of(bytes).to_string();
        client
            .push_blob(&oref, bytes.to_vec(), &d)
            .await
            .expect("push layer");
        layer_json
            .push(serde_json::json!({ "mediaType": media_type, "digest": d, "size": bytes.len() }));
    }
    let config_digest = crate::digest_of(config).to_string();
    client
        .push_blob(&oref, config.to_vec(), &config_digest)
        .await
        .expect("push config");
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": weft_policy::oci::OCI_MANIFEST_MEDIA_TYPE,
        "config": { "mediaType": config_media_type, "digest": config_digest, "size": config.len() },
        "layers": layer_json,
    }))
    .unwrap();
    client
        .push_manifest_raw(
            &oref,
            manifest.clone(),
            weft_policy::oci::OCI_MANIFEST_MEDIA_TYPE.parse().unwrap(),
        )
        .await
        .expect("push manifest");
    crate::digest_of(&manifest).to_string()
}
