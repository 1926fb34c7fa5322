//! A WASI 0.3 request's `path-with-query` as a guest sets it (`weft_policy::path_query`):
//! untrusted text.
//!
//! Input: UTF-8 text, the value given to `set-path-with-query`.
//!
//! Invariants: nothing panics; an accepted value reads back exactly as given (the empty value
//! as `/`); it is stored as relative exactly when it does not start with `/` or `?`; a relative
//! value is accepted exactly when the same value behind `/` is (unless that one begins with
//! the marker itself, which is refused: it would read back without it); the stored form of a relative
//! value, like any stored value, starts with `/` or `?` (what wasmtime-wasi-http can hold).
#![no_main]

use libfuzzer_sys::fuzz_target;
use weft_policy::path_query::{is_relative, parse_path_with_query, path_with_query_text};

fuzz_target!(|data: &[u8]| {
    let Ok(value) = std::str::from_utf8(data) else {
        return;
    };
    let relative = !value.is_empty() && !value.starts_with('/') && !value.starts_with('?');
    let absolute = format!("/{value}");
    let absolute_accepted = parse_path_with_query(&absolute).is_some();
    let Some(stored) = parse_path_with_query(value) else {
        if relative {
            assert!(!absolute_accepted, "{value:?}");
        }
        return;
    };
    let want = if value.is_empty() { "/" } else { value };
    assert_eq!(path_with_query_text(&stored), want, "{value:?}");
    assert_eq!(is_relative(&stored), relative, "{value:?}");
    let text = stored.as_str();
    assert!(text.starts_with('/') || text.starts_with('?'), "{text:?}");
    if relative {
        // The same value behind `/` is accepted too, unless it begins with the marker itself
        // (it would read back without it, so it is refused).
        let marked =
            http::uri::PathAndQuery::try_from(absolute.as_str()).is_ok_and(|pq| is_relative(&pq));
        assert!(absolute_accepted || marked, "{value:?}");
    }
});
