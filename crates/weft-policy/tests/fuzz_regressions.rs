//! Inputs the fuzz targets once failed on (`fuzz/regressions/{allow,router,sockets}/`),
//! replayed through the same invariants as part of the normal test suite.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use weft_policy::allow::{AllowedHosts, HostRule, Scheme};

fn inputs(target: &str) -> Vec<PathBuf> {
    let dir = std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
    )
    .join("../../fuzz/regressions")
    .join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).collect();
    files.sort();
    files
}

/// `rule TEXT` lines must be accepted by the runtime exactly when the manifest validator
/// accepts them; `req SCHEME HOST PORT` lines must not panic and are allowed only if a rule
/// allows them.
#[test]
fn allow_regressions() {
    let files = inputs("allow");
    assert!(!files.is_empty(), "fuzz/regressions/allow is empty");
    for file in files {
        let text = String::from_utf8_lossy(&std::fs::read(&file).unwrap()).into_owned();
        let mut good = Vec::new();
        for line in text.lines() {
            if let Some(rule) = line.strip_prefix("rule ") {
                let runtime = HostRule::parse(rule);
                let validated = weft_manifest::rules::check_allowed_host(rule);
                assert_eq!(
                    runtime.is_ok(),
                    validated.is_ok(),
                    "{}: rule {rule:?}",
                    file.display()
                );
                if runtime.is_ok() {
                    good.push(rule.to_string());
                }
            }
        }
        let set = AllowedHosts::parse(&good).unwrap();
        for line in text.lines() {
            let f: Vec<&str> = line.split(' ').collect();
            if let ["req", s, host, port] = f[..]
                && let (Some(s), Ok(port)) = (Scheme::parse(s), port.parse::<u16>())
            {
                let allowed = set.allows(s, host, port);
                let by_some_rule = set.rules().iter().any(|r| r.allows(s, host, port));
                assert_eq!(allowed, by_some_rule, "{}: {line}", file.display());
            }
        }
    }
}
