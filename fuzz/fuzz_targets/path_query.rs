//! A WASI 0.3 request's `path-with-query` as a guest sets it (`weft_policy::path_query`):
//! untrusted text.
//!
//! Input: UTF-8 text, the value given to `set-path-with-query`.
//!
//! Invariants: nothing panics; an accepted value reads back exactly as given (the empty value
//! as `/`); it is stored as relative exactly when it does not start with `/` or `?`; a relative
//! value is accepted exactly when the same value behind `/` is; the stored form of a relative
//! value is a valid absolute `PathAndQuery` (what wasmtime-wasi-http can hold) and one of an
//! absolute value is what the `http` crate parsed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weft_policy::path_query::{is_relative, parse_path_with_query, path_with_query_text};

fuzz_target!(|data: &[u8]| {
    let Ok(value) = std::str::from_utf8(data) else {
        return;
    };
    let relative = !value.is_empty() && !value.starts_with('/') && !value.starts_with('?');
    let Some(stored) = parse_path_with_query(value) else {
        if relative {
            assert!(parse_path_with_query(&format!("/{value}")).is_none(), "{value:?}");
        }
        return;
    };
    let want = if value.is_empty() { "/" } else { value };
    assert_eq!(path_with_query_text(&stored), want, "{value:?}");
    assert_eq!(is_relative(&stored), relative, "{value:?}");
    assert!(stored.as_str().starts_with('/'), "{:?}", stored.as_str());
    if relative {
        assert!(parse_path_with_query(&format!("/{value}")).is_some(), "{value:?}");
    }
});
