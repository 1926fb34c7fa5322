//! Manifest update planning: a stream of manifests (YAML `---` documents or a JSON list) is
//! read as successive versions of a workload, and `weft_manifest::diff` is checked on every
//! ordered pair.
//!
//! Invariants:
//! - diff(a, a) is empty, and diff(a, b) is empty exactly when diff(b, a) is;
//! - an empty diff means the two are the same workload up to what diff is documented to ignore
//!   (origin, list order, later duplicates): `canonical(a) == canonical(b)`;
//! - additions and removals mirror: `+ x` in diff(a, b) iff `- x` in diff(b, a);
//! - every change formats.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weft_fuzz::{canonical, parse};
use weft_manifest::{Change, diff};

fn mirrored(c: &Change) -> Option<Change> {
    Some(match c.clone() {
        Change::ComponentAdded { name } => Change::ComponentRemoved { name },
        Change::ComponentRemoved { name } => Change::ComponentAdded { name },
        Change::HostInterfaceAdded { id } => Change::HostInterfaceRemoved { id },
        Change::HostInterfaceRemoved { id } => Change::HostInterfaceAdded { id },
        Change::VolumeAdded { name } => Change::VolumeRemoved { name },
        Change::VolumeRemoved { name } => Change::VolumeAdded { name },
        Change::ServiceAdded { name } => Change::ServiceRemoved { name },
        Change::ServiceRemoved { name } => Change::ServiceAdded { name },
        _ => return None,
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(versions) = parse(text) else {
        return;
    };
    for a in &versions {
        assert!(diff(a, a).is_empty(), "diff(a, a) not empty");
        for b in &versions {
            let ab = diff(a, b);
            let ba = diff(b, a);
            assert_eq!(ab.is_empty(), ba.is_empty(), "asymmetric: {ab:?} vs {ba:?}");
            if ab.is_empty() {
                assert_eq!(
                    canonical(a),
                    canonical(b),
                    "empty diff between different workloads"
                );
            }
            for c in &ab {
                let _ = c.to_string();
                if let Some(m) = mirrored(c) {
                    assert!(
                        ba.contains(&m),
                        "{c} in diff(a, b) but not {m} in diff(b, a)"
                    );
                }
            }
        }
    }
});
