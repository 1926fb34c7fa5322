//! The decoders of lattice state (`weft_scheduler::records`): values read from JetStream KV,
//! which any NATS client with access to the buckets can write.
//!
//! Input: the first byte picks the bucket (desired, hosts, status, placements, lease); up to the
//! first newline is the key, the rest is the value.
//!
//! Invariants: no decoder panics; an error names a non-empty field and its message starts with
//! `BUCKET `; what decodes keeps the key's identity (a host's name, a placement's
//! `WORKLOAD.HOST`, a desired manifest's name and version), and re-encoding a decoded value
//! decodes to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weft_scheduler::records::{
    decode_desired, decode_host, decode_lease, decode_placement, decode_report, encode_desired,
    encode_placement,
};

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let split = rest.iter().position(|b| *b == b'\n').unwrap_or(rest.len());
    let key = String::from_utf8_lossy(&rest[..split]).into_owned();
    let value = rest.get(split + 1..).unwrap_or_default();
    match which % 5 {
        0 => match decode_desired(&key, value) {
            Ok(d) => {
                assert_eq!(d.manifest.metadata.name, key);
                assert_eq!(d.deployment.name, key);
                assert_eq!(
                    weft_scheduler::version_of(&d.manifest).expect("a decoded manifest prints"),
                    d.deployment.version
                );
                let again = encode_desired(&d.manifest, d.deployed_at_ms)
                    .expect("a decoded manifest re-encodes");
                let back = decode_desired(&key, &again).expect("re-encoded value decodes");
                assert_eq!(back.deployment, d.deployment);
            }
            Err(e) => check(&e, "desired"),
        },
        1 => match decode_host(&key, value) {
            Ok((h, rec)) => {
                assert_eq!(h.name, key);
                let again = serde_json::to_vec(&rec).expect("encodes");
                assert_eq!(decode_host(&key, &again).expect("decodes").0, h);
            }
            Err(e) => check(&e, "hosts"),
        },
        2 => match decode_report(&key, value) {
            Ok((r, rec)) => {
                assert_eq!(rec.name, key);
                for run in r.running.values() {
                    assert_eq!(run.version.len(), weft_scheduler::records::VERSION_HEX);
                }
                let again = serde_json::to_vec(&rec).expect("encodes");
                assert_eq!(decode_report(&key, &again).expect("decodes").0, r);
            }
            Err(e) => check(&e, "status"),
        },
        3 => match decode_placement(&key, value) {
            Ok((p, epoch)) => {
                assert_eq!(format!("{}.{}", p.workload, p.host), key);
                let again = encode_placement(&p, epoch);
                assert_eq!(decode_placement(&key, &again).expect("decodes"), (p, epoch));
            }
            Err(e) => check(&e, "placements"),
        },
        _ => match decode_lease(&key, value) {
            Ok(l) => {
                assert_eq!(key, "leader");
                weft_scheduler::records::check_name(&l.holder).expect("holder is a name");
            }
            Err(e) => check(&e, "lease"),
        },
    }
});

fn check(e: &weft_scheduler::DecodeError, bucket: &str) {
    assert_eq!(e.bucket, bucket);
    assert!(!e.field.is_empty());
    assert!(e.to_string().starts_with(&format!("{bucket} ")));
}
