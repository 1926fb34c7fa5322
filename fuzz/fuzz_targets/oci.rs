//! OCI references and artifact manifests (`weft_policy::oci`): the `oci://` grammar a manifest's
//! `image` uses, and the check of an image manifest a registry serves.
//!
//! Input: the first byte picks the mode, the rest is the text or bytes.
//! - even: an image reference. Invariants: parsing never panics; a parsed reference has a tag or
//!   a digest, a lowercase repository, prints as text that parses back to the same reference
//!   (with or without `oci://`), and pinning it keeps registry, repository and tag; the manifest
//!   validator (`weft_manifest::rules::parse_image`) accepts an `oci://` image exactly when
//!   `Reference::parse` does.
//! - odd: an image manifest (bytes), checked with a layer cap from the second byte. Invariants:
//!   the check never panics; an accepted manifest has the Wasm config media type and exactly
//!   one `application/wasm` layer within the cap; a canonical manifest rebuilt from the result
//!   is accepted with the same result.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weft_manifest::rules::{ImageRef, parse_image};
use weft_policy::oci::{
    Digest, OCI_MANIFEST_MEDIA_TYPE, Reference, WASM_CONFIG_MEDIA_TYPE, WASM_LAYER_MEDIA_TYPE,
    check_artifact,
};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        let Ok(text) = std::str::from_utf8(rest) else {
            return;
        };
        let parsed = Reference::parse(text);
        if text
            .get(..6)
            .is_some_and(|p| p.eq_ignore_ascii_case("oci://"))
        {
            let via_manifest = parse_image(text);
            assert_eq!(
                parsed.is_ok(),
                matches!(via_manifest, Ok(ImageRef::Oci(_))),
                "manifest validation and the reference parser disagree on {text:?}"
            );
        }
        if let Ok(r) = parsed {
            assert!(r.tag().is_some() || r.digest().is_some());
            assert!(!r.repository().bytes().any(|b| b.is_ascii_uppercase()));
            assert_eq!(Reference::parse(&r.to_string()).as_ref(), Ok(&r));
            assert_eq!(Reference::parse_lenient(&r.bare()).as_ref(), Ok(&r));
            let pin = Digest::from_hex(&"ab".repeat(32)).expect("valid digest");
            let pinned = r.pinned(pin.clone());
            assert_eq!(pinned.registry(), r.registry());
            assert_eq!(pinned.repository(), r.repository());
            assert_eq!(pinned.tag(), r.tag());
            assert_eq!(pinned.digest(), Some(&pin));
        }
    } else {
        let cap = u64::from(rest.first().copied().unwrap_or(0)) * 1000;
        if let Ok(a) = check_artifact(rest, cap) {
            assert_eq!(a.config.media_type, WASM_CONFIG_MEDIA_TYPE);
            assert_eq!(a.layer.media_type, WASM_LAYER_MEDIA_TYPE);
            assert!(a.layer.size <= cap);
            let canonical = format!(
                r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST_MEDIA_TYPE}","config":{{"mediaType":"{}","digest":"{}","size":{}}},"layers":[{{"mediaType":"{}","digest":"{}","size":{}}}]}}"#,
                a.config.media_type,
                a.config.digest,
                a.config.size,
                a.layer.media_type,
                a.layer.digest,
                a.layer.size
            );
            assert_eq!(check_artifact(canonical.as_bytes(), cap), Ok(a));
        }
    }
});
