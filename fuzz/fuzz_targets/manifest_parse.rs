//! Manifest text (YAML or JSON) -> parse + defaults + validate.
//!
//! Invariants on every input that parses:
//! - `validate` on the parsed value finds nothing (parse and validate agree);
//! - printing round-trips: parse(to_yaml(m)) == m, parse(to_json(m)) == m, and the whole stream
//!   through `to_yaml_all`;
//! - the runtime would not reject it for a manifest reason (`weft_fuzz::runtime_rejection`);
//! - `diff(m, m)` is empty.
//!
//! On inputs that do not parse: there is at least one error and every error formats.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weft_fuzz::{parse, runtime_rejection, without_origin};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let manifests = match parse(text) {
        Ok(m) => m,
        Err(errors) => {
            assert!(!errors.is_empty(), "an Err with no errors");
            for e in errors.iter() {
                let _ = e.to_string();
            }
            return;
        }
    };
    assert!(!manifests.is_empty(), "Ok with no manifests");
    for m in &manifests {
        let problems = weft_manifest::validate(m, None);
        assert!(
            problems.is_empty(),
            "parse accepted what validate rejects: {problems:?}"
        );
        if let Some(why) = runtime_rejection(m) {
            panic!("validation accepted a manifest the runtime rejects: {why}\n{m:#?}");
        }
        assert!(weft_manifest::diff(m, m).is_empty(), "diff(m, m) not empty");

        let want = without_origin(m);
        let yaml = weft_manifest::to_yaml(m).expect("to_yaml");
        let back =
            parse(&yaml).unwrap_or_else(|e| panic!("printed YAML does not parse: {e}\n{yaml}"));
        assert_eq!(back.len(), 1);
        assert_eq!(without_origin(&back[0]), want, "YAML round trip\n{yaml}");

        let json = weft_manifest::to_json(m).expect("to_json");
        let back =
            parse(&json).unwrap_or_else(|e| panic!("printed JSON does not parse: {e}\n{json}"));
        assert_eq!(back.len(), 1);
        assert_eq!(without_origin(&back[0]), want, "JSON round trip\n{json}");
    }
    let all = weft_manifest::to_yaml_all(&manifests).expect("to_yaml_all");
    let back = parse(&all).unwrap_or_else(|e| panic!("printed stream does not parse: {e}\n{all}"));
    assert_eq!(
        back, manifests,
        "stream round trip (origins included)\n{all}"
    );
});
