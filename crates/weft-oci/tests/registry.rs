//! Push, pull, pin and the refusals, against a real registry (Debian's `docker-registry`, the
//! CNCF distribution registry) on a loopback port: anonymous and with htpasswd basic auth.

use std::time::{Duration, Instant};

use weft_oci::testing::{PASSWORD, TestRegistry, USER, push_raw_image};
use weft_oci::{Credentials, OciError, PullOptions, Puller, Reference};
use weft_policy::oci::{ArtifactError, WASM_CONFIG_MEDIA_TYPE, WASM_LAYER_MEDIA_TYPE};

/// A small valid component (what `weft push` reads its config from).
fn component(text: &str) -> Vec<u8> {
    // `(component)` with a custom section carrying `text`, so each call is a distinct blob.
    let mut bytes = vec![0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00];
    let name = b"weft-test";
    let mut payload = vec![name.len() as u8];
    payload.extend_from_slice(name);
    payload.extend_from_slice(text.as_bytes());
    bytes.push(0); // custom section
    bytes.push(payload.len() as u8);
    bytes.extend_from_slice(&payload);
    bytes
}

fn puller(store: &std::path::Path) -> Puller {
    Puller::new(PullOptions {
        store_dir: store.to_path_buf(),
        progress: false,
        credentials: Credentials::Anonymous,
        timeout: Duration::from_secs(20),
        ..PullOptions::default()
    })
}

fn reference(s: &str) -> Reference {
    Reference::parse(s).expect("reference")
}

#[tokio::test]
async fn push_pull_pin_and_serve_from_the_store_with_the_registry_down() {
    let mut reg = TestRegistry::start();
    let store = tempfile::tempdir().unwrap();
    let p = puller(store.path());
    let v1 = component("v1");
    let pushed = p
        .push(&v1, &reference(&reg.reference("hello:1.0")))
        .await
        .expect("push");
    assert_eq!(pushed.layer_digest, weft_oci::digest_of(&v1));

    // A second puller with an empty store pulls from the registry, by tag.
    let store2 = tempfile::tempdir().unwrap();
    let p2 = puller(store2.path());
    let pulled = p2
        .pull(&reference(&reg.reference("hello:1.0")))
        .await
        .expect("pull");
    assert!(!pulled.from_store);
    assert_eq!(pulled.manifest_digest, pushed.manifest_digest);
    assert_eq!(std::fs::read(&pulled.path).unwrap(), v1);
    assert_eq!(pulled.reference.tag(), Some("1.0"));
    assert_eq!(pulled.reference.digest(), Some(&pushed.manifest_digest));

    // Move the tag: pulling by the old digest still gives v1; by tag, v2.
    let v2 = component("v2");
    let pushed2 = p
        .push(&v2, &reference(&reg.reference("hello:1.0")))
        .await
        .expect("push v2");
    assert_ne!(pushed2.manifest_digest, pushed.manifest_digest);
    let by_tag = p2
        .pull(&reference(&reg.reference("hello:1.0")))
        .await
        .unwrap();
    assert_eq!(std::fs::read(&by_tag.path).unwrap(), v2);

    // Registry down: a pinned reference in the store needs no network.
    reg.stop();
    let again = p2.pull(&pulled.reference).await.expect("from the store");
    assert!(again.from_store);
    assert_eq!(std::fs::read(&again.path).unwrap(), v1);
    // A tag needs the registry: a clear error, fast.
    let err = p2
        .pull(&reference(&reg.reference("hello:1.0")))
        .await
        .expect_err("registry down");
    assert!(matches!(err, OciError::Registry { .. }), "{err}");
}

#[tokio::test]
async fn pin_and_localize_a_manifest() {
    let reg = TestRegistry::start();
    let store = tempfile::tempdir().unwrap();
    let p = puller(store.path());
    let wasm = component("pin");
    p.push(&wasm, &reference(&reg.reference("acme/api:2")))
        .await
        .unwrap();
    let text = format!(
        "apiVersion: weft.dev/v1alpha1\nkind: Workload\nmetadata: {{ name: api }}\nspec:\n  components:\n    - name: api\n      image: {}\n    - name: local\n      image: ./local.wasm\n",
        reg.reference("acme/api:2")
    );
    let mut m = weft_manifest::parse_str(&text, std::path::Path::new("/m/weft.yaml"))
        .expect("manifest")
        .remove(0);
    let pinned = p.pin(&mut m).await.expect("pin");
    assert_eq!(pinned.len(), 1);
    let c = &m.spec.components[0];
    assert!(c.image.contains(":2@sha256:"), "{}", c.image);
    assert_eq!(
        c.digest.as_deref(),
        Some(weft_oci::digest_of(&wasm).to_string().as_str())
    );
    assert_eq!(
        m.spec.components[1].image, "./local.wasm",
        "files are left alone"
    );

    let local = weft_oci::localize(&m, p.store()).expect("localize");
    assert_eq!(
        std::fs::read(&local.spec.components[0].image).unwrap(),
        wasm
    );
    assert_eq!(local.spec.components[1].image, "./local.wasm");

    // A digest pin that disagrees with the image is refused, naming the field.
    let mut wrong = weft_manifest::parse_str(&text, std::path::Path::new("/m/weft.yaml"))
        .unwrap()
        .remove(0);
    wrong.spec.components[0].digest = Some(format!("sha256:{}", "0".repeat(64)));
    let err = p.pin(&mut wrong).await.expect_err("digest pin");
    assert!(
        err.to_string().starts_with("spec.components[0].digest:"),
        "{err}"
    );

    // An unknown tag: not found, naming the field.
    let mut missing = weft_manifest::parse_str(
        &text.replace("acme/api:2", "acme/api:nope"),
        std::path::Path::new("/m/weft.yaml"),
    )
    .unwrap()
    .remove(0);
    let err = p.pin(&mut missing).await.expect_err("no such tag");
    assert!(
        err.to_string().starts_with("spec.components[0].image:"),
        "{err}"
    );
    assert!(err.to_string().contains("not found"), "{err}");
}

#[tokio::test]
async fn basic_auth() {
    let reg = TestRegistry::start_with_auth();
    assert!(reg.auth);
    let store = tempfile::tempdir().unwrap();
    let anonymous = puller(store.path());
    let err = anonymous
        .push(&component("a"), &reference(&reg.reference("private:1")))
        .await
        .expect_err("anonymous push is refused");
    assert!(matches!(err, OciError::Unauthorized { .. }), "{err}");
    assert!(err.to_string().contains("WEFT_REGISTRY_USERNAME"), "{err}");

    let with = |user: &str, password: &str| {
        Puller::new(PullOptions {
            store_dir: store.path().to_path_buf(),
            progress: false,
            credentials: Credentials::Basic {
                username: user.into(),
                password: password.into(),
            },
            ..PullOptions::default()
        })
    };
    let wrong = with(USER, "wrong");
    assert!(matches!(
        wrong
            .push(&component("a"), &reference(&reg.reference("private:1")))
            .await,
        Err(OciError::Unauthorized { .. })
    ));
    let ok = with(USER, PASSWORD);
    let pushed = ok
        .push(&component("a"), &reference(&reg.reference("private:1")))
        .await
        .expect("push with credentials");
    let store2 = tempfile::tempdir().unwrap();
    let pull_anon = puller(store2.path());
    assert!(matches!(
        pull_anon
            .pull(&reference(&reg.reference("private:1")))
            .await,
        Err(OciError::Unauthorized { .. })
    ));
    let pulled = ok
        .pull(&reference(&reg.reference("private:1")))
        .await
        .expect("pull with credentials");
    assert_eq!(pulled.manifest_digest, pushed.manifest_digest);
}

#[tokio::test]
async fn a_tampered_layer_is_refused() {
    let reg = TestRegistry::start();
    let store = tempfile::tempdir().unwrap();
    let p = puller(store.path());
    let wasm = component("tamper-me");
    let pushed = p
        .push(&wasm, &reference(&reg.reference("t:1")))
        .await
        .unwrap();
    // The registry's storage is changed under it: same length, one byte flipped.
    let file = reg.blob_file(&pushed.layer_digest);
    let mut bytes = std::fs::read(&file).expect("blob file");
    let last = bytes.len() - 1;
    bytes[last] ^= 0x20;
    std::fs::write(&file, &bytes).unwrap();
    let store2 = tempfile::tempdir().unwrap();
    let err = puller(store2.path())
        .pull(&reference(&reg.reference("t:1")))
        .await
        .expect_err("tampered");
    assert!(
        matches!(
            err,
            OciError::DigestMismatch {
                what: "Wasm layer",
                ..
            }
        ),
        "{err}"
    );
    // Nothing was stored under the layer's digest.
    assert!(
        !store2
            .path()
            .join("blobs/sha256")
            .join(pushed.layer_digest.hex())
            .exists()
    );

    // A blob that grew past its declared size is cut off.
    let mut longer = wasm.clone();
    longer.extend_from_slice(&[0u8; 4096]);
    std::fs::write(&file, &longer).unwrap();
    let store3 = tempfile::tempdir().unwrap();
    let err = puller(store3.path())
        .pull(&reference(&reg.reference("t:1")))
        .await
        .expect_err("longer");
    assert!(
        matches!(
            err,
            OciError::LayerTooLarge { .. } | OciError::DigestMismatch { .. }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn a_tampered_manifest_is_refused_when_pinned() {
    let reg = TestRegistry::start();
    let store = tempfile::tempdir().unwrap();
    let p = puller(store.path());
    let pushed = p
        .push(&component("m"), &reference(&reg.reference("m:1")))
        .await
        .unwrap();
    let file = reg.blob_file(&pushed.manifest_digest);
    let text = std::fs::read_to_string(&file).expect("manifest blob");
    std::fs::write(
        &file,
        text.replacen("schemaVersion\":2", "schemaVersion\":2 ", 1),
    )
    .unwrap();
    let store2 = tempfile::tempdir().unwrap();
    let err = puller(store2.path())
        .pull(&pushed.reference)
        .await
        .expect_err("tampered manifest");
    // Caught while the manifest streams in (oci-client's check or ours, whichever is first),
    // and said as what it is: a digest mismatch, refused.
    assert!(
        matches!(
            err,
            OciError::DigestMismatch {
                what: "image manifest",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("does not match its digest"),
        "{err}"
    );
    assert!(
        !store2.path().join("blobs").exists()
            || std::fs::read_dir(store2.path().join("blobs/sha256"))
                .map(|d| d.count())
                .unwrap_or(0)
                == 0,
        "nothing stored"
    );
}

#[tokio::test]
async fn oversized_layers_are_refused() {
    let reg = TestRegistry::start();
    let store = tempfile::tempdir().unwrap();
    let p = puller(store.path());
    let mut big = component("big");
    big.extend(std::iter::repeat_n(0u8, 0)); // valid as pushed; the cap below is smaller
    p.push(&big, &reference(&reg.reference("big:1")))
        .await
        .unwrap();
    let small = Puller::new(PullOptions {
        store_dir: tempfile::tempdir().unwrap().keep(),
        progress: false,
        credentials: Credentials::Anonymous,
        max_layer_bytes: 16,
        ..PullOptions::default()
    });
    let err = small
        .pull(&reference(&reg.reference("big:1")))
        .await
        .expect_err("over the cap");
    assert!(
        matches!(
            err,
            OciError::Artifact {
                source: ArtifactError::LayerTooLarge { max: 16, .. },
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("--max-layer-size"), "{err}");
    // Pushing over the cap is refused before any upload.
    assert!(matches!(
        small.push(&big, &reference(&reg.reference("big:2"))).await,
        Err(OciError::LayerTooLarge { .. })
    ));
}

#[tokio::test]
async fn foreign_images_are_refused_with_what_they_are() {
    let reg = TestRegistry::start();
    let store = tempfile::tempdir().unwrap();
    let p = puller(store.path());
    let base = format!("{}/", reg.registry());
    // A container image.
    push_raw_image(
        &format!("{base}alpine:3"),
        "application/vnd.oci.image.config.v1+json",
        br#"{"architecture":"amd64","os":"linux"}"#,
        &[(
            "application/vnd.oci.image.layer.v1.tar+gzip",
            b"not really a tarball",
        )],
        None,
    )
    .await;
    let err = p
        .pull(&reference(&reg.reference("alpine:3")))
        .await
        .expect_err("container image");
    assert!(err.to_string().contains("container image"), "{err}");
    // A Wasm artifact carrying precompiled code next to the Wasm.
    push_raw_image(
        &format!("{base}sneaky:1"),
        WASM_CONFIG_MEDIA_TYPE,
        b"{}",
        &[
            (WASM_LAYER_MEDIA_TYPE, &component("x")),
            (
                "application/vnd.wasm.precompiled.v0+cwasm",
                b"\x7fELF native code",
            ),
        ],
        None,
    )
    .await;
    let err = p
        .pull(&reference(&reg.reference("sneaky:1")))
        .await
        .expect_err("precompiled layer");
    assert!(
        err.to_string().contains("precompiled code is never taken"),
        "{err}"
    );
    // A Wasm artifact whose layer is not Wasm.
    push_raw_image(
        &format!("{base}notwasm:1"),
        WASM_CONFIG_MEDIA_TYPE,
        b"{}",
        &[(WASM_LAYER_MEDIA_TYPE, b"\x7fELF pretending")],
        None,
    )
    .await;
    let err = p
        .pull(&reference(&reg.reference("notwasm:1")))
        .await
        .expect_err("not wasm");
    assert!(matches!(err, OciError::NotWasm { .. }), "{err}");
}

#[tokio::test]
async fn a_hanging_registry_times_out() {
    // Accepts connections and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    let store = tempfile::tempdir().unwrap();
    let p = Puller::new(PullOptions {
        store_dir: store.path().to_path_buf(),
        progress: false,
        credentials: Credentials::Anonymous,
        timeout: Duration::from_secs(2),
        ..PullOptions::default()
    });
    let start = Instant::now();
    let err = p
        .pull(&reference(&format!("oci://{addr}/hang:1")))
        .await
        .expect_err("hangs");
    assert!(matches!(err, OciError::Timeout { .. }), "{err}");
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
    hold.abort();
}

#[test]
fn plain_http_only_for_loopback_or_named_registries() {
    let p = Puller::new(PullOptions {
        insecure_registries: vec!["registry.internal:5000".into()],
        ..PullOptions::default()
    });
    assert!(p.plain_http("127.0.0.1:5000"));
    assert!(p.plain_http("localhost:5000"));
    assert!(p.plain_http("[::1]:5000"));
    assert!(p.plain_http("registry.internal:5000"));
    assert!(!p.plain_http("registry.internal"));
    assert!(!p.plain_http("ghcr.io"));
    assert!(!p.plain_http("10.0.0.1:5000"));
}
