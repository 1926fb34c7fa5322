//! NATS subjects for `wasmcloud:messaging` (`weft_policy::messaging`) against a naive reference,
//! and against the manifest validator.
//!
//! Input: lines of text.
//! - `pat TEXT` adds a pattern (the rest of the line);
//! - `sub TEXT` asks about a subject;
//! - `list TEXT` parses a comma-separated list as `config.publish` does;
//! - `queue TEXT` checks a queue group name.
//!
//! Invariants:
//! - the grammar: a subject is valid exactly when it is 1..=1024 printable-ASCII bytes of
//!   non-empty dot-separated tokens without `*`/`>`; a pattern parses exactly when its shape is
//!   valid, its first token is a literal and it is not reserved;
//! - `pattern_matches` and `Pattern::matches` agree with a recursive reference on every
//!   shape-valid pattern and never match an invalid subject;
//! - `SubjectGrants::allows` is true exactly when the subject is valid, not reserved and some
//!   pattern matches it by the reference (never allows a reserved subject);
//! - `parse_patterns` fails exactly when some item fails, and reports every failing item;
//! - the manifest validator accepts a `wasmcloud:messaging` grant with `publish: TEXT` exactly
//!   when `parse_patterns` accepts a non-empty list, and `queueGroup: TEXT` exactly when
//!   `check_queue_group` does.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weft_policy::messaging::{
    Pattern, SubjectGrants, check_queue_group, check_subject, is_reserved, parse_patterns,
    pattern_matches, split_list,
};

fn reference(pattern: &[&str], subject: &[&str]) -> bool {
    match (pattern.split_first(), subject.split_first()) {
        (None, None) => true,
        (Some((&">", [])), _) => !subject.is_empty(),
        (Some((p, prest)), Some((s, srest))) => (*p == "*" || p == s) && reference(prest, srest),
        _ => false,
    }
}

fn printable(s: &str) -> bool {
    !s.is_empty() && s.len() <= 1024 && s.bytes().all(|b| (b'!'..=b'~').contains(&b))
}

fn shape_ok(s: &str) -> bool {
    let tokens: Vec<&str> = s.split('.').collect();
    printable(s)
        && tokens.iter().enumerate().all(|(i, t)| {
            !t.is_empty()
                && (*t == "*" || (*t == ">" && i + 1 == tokens.len()) || !t.contains(['*', '>']))
        })
}

fn subject_ok(s: &str) -> bool {
    shape_ok(s) && s.split('.').all(|t| t != "*" && t != ">")
}

fn reserved(s: &str) -> bool {
    let first = s.split('.').next().unwrap_or("");
    first == "weft" || first == "_INBOX" || first.starts_with('$')
}

/// The manifest validator's verdict on one wasmcloud:messaging grant with `key: value`.
fn manifest_accepts(key: &str, value: &str) -> bool {
    let yaml = format!(
        "apiVersion: weft.dev/v1alpha1\nkind: Workload\nmetadata: {{ name: m }}\nspec:\n  components: [ {{ name: a, image: ./a.wasm }} ]\n  hostInterfaces:\n    - namespace: wasmcloud\n      package: messaging\n      interfaces: [handler, consumer]\n      config: {{ subscriptions: in.x, {key}: {} }}\n",
        serde_json_string(value)
    );
    weft_manifest::parse_str(&yaml, std::path::Path::new(weft_fuzz::SOURCE)).is_ok()
}

/// A JSON string literal (valid YAML flow scalar) for `s`.
fn serde_json_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\u{:04x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut patterns: Vec<String> = Vec::new();
    let mut subjects: Vec<String> = Vec::new();
    for line in text.lines().take(64) {
        if let Some(p) = line.strip_prefix("pat ") {
            patterns.push(p.to_string());
        } else if let Some(s) = line.strip_prefix("sub ") {
            subjects.push(s.to_string());
        } else if let Some(l) = line.strip_prefix("list ") {
            let items: Vec<&str> = split_list(l).collect();
            let failing = items.iter().filter(|i| Pattern::parse(i).is_err()).count();
            match parse_patterns(l) {
                Ok(ps) => {
                    assert_eq!(failing, 0);
                    assert_eq!(ps.len(), items.len());
                }
                Err(errs) => {
                    assert_eq!(errs.len(), failing, "{l:?}");
                    for e in &errs {
                        assert_eq!(items[e.index], e.item);
                    }
                }
            }
            let valid = failing == 0 && !items.is_empty();
            assert_eq!(manifest_accepts("publish", l), valid, "publish {l:?}");
        } else if let Some(q) = line.strip_prefix("queue ") {
            let ok = check_queue_group(q).is_ok();
            assert_eq!(
                ok,
                printable(q) && q.len() <= 255 && !q.contains(['*', '>']),
                "{q:?}"
            );
            assert_eq!(manifest_accepts("queueGroup", q), ok, "queueGroup {q:?}");
        }
    }

    let mut granted = Vec::new();
    for p in &patterns {
        let parsed = Pattern::parse(p);
        let first = p.split('.').next().unwrap_or("");
        let expected = shape_ok(p) && first != "*" && first != ">" && !reserved(p);
        assert_eq!(parsed.is_ok(), expected, "pattern {p:?}: {parsed:?}");
        if let Ok(parsed) = parsed {
            assert_eq!(parsed.as_str(), p);
            granted.push(parsed);
        }
    }
    let grants = SubjectGrants::new(granted.clone());
    for s in &subjects {
        let valid = subject_ok(s);
        assert_eq!(check_subject(s).is_ok(), valid, "subject {s:?}");
        assert_eq!(is_reserved(s), reserved(s));
        let stoks: Vec<&str> = s.split('.').collect();
        for p in &patterns {
            let expected =
                shape_ok(p) && valid && reference(&p.split('.').collect::<Vec<_>>(), &stoks);
            assert_eq!(pattern_matches(p, s), expected, "{p:?} vs {s:?}");
        }
        let by_reference = valid
            && !reserved(s)
            && granted
                .iter()
                .any(|p| reference(&p.as_str().split('.').collect::<Vec<_>>(), &stoks));
        assert_eq!(
            grants.allows(s),
            by_reference,
            "grants {grants} subject {s:?}"
        );
        for p in &granted {
            assert_eq!(
                p.matches(s),
                valid && reference(&p.as_str().split('.').collect::<Vec<_>>(), &stoks)
            );
        }
    }
});
