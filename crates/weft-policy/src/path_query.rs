//! `path-with-query` values of WASI 0.3 requests (`wasi:http/types@0.3.0`). wasmtime-wasi-http
//! stores the value as an `http::uri::PathAndQuery`, which must start with `/` or `?`; WASI
//! allows a relative reference too (`a/b/c`, `../..`, wasi-http issue 178). A relative value
//! is stored behind a marker only this process knows and read back without it; the host
//! refuses to send such a request (`weft_interfaces::p3client`). The values come from guests:
//! untrusted.

use http::uri::PathAndQuery;

/// The prefix a relative `path-with-query` is stored behind: a path segment with a random
/// number drawn once per process, which guests never see (the getter removes it, `send`
/// refuses such a request) and a client cannot guess.
fn relative_marker() -> &'static str {
    static MARKER: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    MARKER.get_or_init(|| {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0),
        );
        format!("/.weft-relative-{:016x}/", h.finish())
    })
}

/// What `[method]request.set-path-with-query` stores for `value`, or `None` if it is not a
/// valid path-with-query: as wasmtime-wasi-http for one starting with `/` or `?` (or empty,
/// stored as `/`), and a relative reference (`a/b/c`, `../..`) behind a per-process marker,
/// checked with the same rules (the `http` crate's) as if it were absolute. Unlike
/// wasmtime-wasi-http, a value the `http` crate would shorten (a `#fragment`) is refused.
pub fn parse_path_with_query(value: &str) -> Option<PathAndQuery> {
    let parse = |v: &str| {
        http::uri::Builder::new()
            .path_and_query(v)
            .build()
            .ok()
            .and_then(|uri| uri.path_and_query().cloned())
    };
    if value.is_empty() {
        return parse(value);
    }
    let stored = if value.starts_with('/') || value.starts_with('?') {
        parse(value)?
    } else {
        parse(&format!("{}{value}", relative_marker()))?
    };
    // What is stored must read back as exactly `value`: the `http` crate drops a `#fragment`,
    // and a value that would read back shorter is refused rather than silently changed.
    (path_with_query_text(&stored) == value).then_some(stored)
}

/// The relative reference stored in `pq`, if it is one.
fn relative_part(pq: &PathAndQuery) -> Option<&str> {
    pq.as_str().strip_prefix(relative_marker())
}

/// What `[method]request.get-path-with-query` returns for the stored value.
pub fn path_with_query_text(pq: &PathAndQuery) -> &str {
    relative_part(pq).unwrap_or(pq.as_str())
}

/// Whether `pq` holds a relative reference (stored by [`parse_path_with_query`]).
pub fn is_relative(pq: &PathAndQuery) -> bool {
    relative_part(pq).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_suite_values() {
        for v in [
            "/",
            "/a/b/c",
            "/a/../../bar",
            "/?foo",
            "a/b/c",
            "../..",
            "?foo",
        ] {
            let pq = parse_path_with_query(v).expect(v);
            assert_eq!(path_with_query_text(&pq), v);
        }
        let empty = parse_path_with_query("").expect("empty");
        assert_eq!(path_with_query_text(&empty), "/");
        for bad in ["a b", "/a b", "a\nb", "/a#b", "a#b"] {
            assert!(parse_path_with_query(bad).is_none(), "{bad:?}");
        }
    }

    /// A path from a client that merely looks like a stored relative reference (a wrong
    /// number) reads back unchanged.
    #[test]
    fn a_guessed_marker_is_not_the_marker() {
        let forged = PathAndQuery::from_static("/.weft-relative-0000000000000000/a");
        assert_eq!(path_with_query_text(&forged), forged.as_str());
    }

    proptest! {
        /// Whatever is accepted reads back exactly as given (the empty value as `/`), and a
        /// relative value is accepted exactly when the same value made absolute is: the
        /// marker changes no character rule.
        #[test]
        fn accepted_values_read_back_exactly(v in "[ -~\u{80}-\u{10ffff}]{0,24}") {
            if let Some(pq) = parse_path_with_query(&v) {
                let want = if v.is_empty() { "/" } else { v.as_str() };
                prop_assert_eq!(path_with_query_text(&pq), want);
            }
            if !v.is_empty() && !v.starts_with('/') && !v.starts_with('?') {
                prop_assert_eq!(
                    parse_path_with_query(&v).is_some(),
                    parse_path_with_query(&format!("/{v}")).is_some()
                );
            }
        }
    }
}
