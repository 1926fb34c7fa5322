//! Inputs the fuzz targets once failed on (`fuzz/regressions/manifest_*/`), replayed through
//! the same invariants as part of the normal test suite: parsing does not panic, an accepted
//! manifest validates and prints back to itself, and a `wasi:keyvalue` bucket name is within the
//! runtime's limit.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

fn inputs(target: &str) -> Vec<PathBuf> {
    let dir = std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
    )
    .join("../../fuzz/regressions")
    .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "no regression inputs in {}",
        dir.display()
    );
    files
}

#[test]
fn manifest_parse_regressions() {
    for file in inputs("manifest_parse") {
        let bytes = std::fs::read(&file).unwrap();
        let Ok(text) = String::from_utf8(bytes) else {
            continue;
        };
        let source = Path::new("fuzz.yaml");
        let Ok(manifests) = weft_manifest::parse_str(&text, source) else {
            continue;
        };
        for m in &manifests {
            assert!(
                weft_manifest::validate(m, None).is_empty(),
                "{}",
                file.display()
            );
            let yaml = weft_manifest::to_yaml(m).unwrap();
            let back = weft_manifest::parse_str(&yaml, source).unwrap();
            let mut want = m.clone();
            want.origin = back[0].origin.clone();
            assert_eq!(back[0], want, "{}", file.display());
            for h in &m.spec.host_interfaces {
                if let Some(kv) = h.keyvalue_config() {
                    let bucket = kv.bucket.unwrap_or_else(|| m.metadata.name.clone());
                    assert!(
                        bucket.len() <= weft_manifest::MAX_BUCKET_NAME_BYTES,
                        "{}: bucket of {} bytes accepted",
                        file.display(),
                        bucket.len()
                    );
                }
            }
        }
    }
}
