//! The HTTP ingress router (`weft_policy::router`) against a naive reference.
//!
//! Input: lines of text.
//! - `route HOST PATH TARGET` adds a route (`HOST` `-` for none, `~` for the empty string);
//! - `req HOST PATH` is a request (`HOST` `-` for no `Host` header, `~` for an empty one).
//!
//! Ports compare as numbers (`:0080` is `:80`).
//!
//! Invariants: `RouteTable::new` reports a conflict exactly when two routes have the same
//! normalized host and path and different targets; otherwise every request goes where the
//! reference (every route checked, best rank wins, written from the documented rules) sends it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weft_policy::router::{Route, RouteTable};

/// (lower-case name without one trailing dot, port or "") — `None` when the name is empty.
fn host_key(raw: &str) -> Option<(String, String)> {
    let h = raw
        .trim_matches(|c: char| c.is_ascii_whitespace())
        .to_ascii_lowercase();
    let (mut name, port) = if h.starts_with('[') {
        match h.find(']') {
            Some(end) => {
                let rest = &h[end + 1..];
                (
                    h[..=end].to_string(),
                    rest.strip_prefix(':').unwrap_or("").to_string(),
                )
            }
            None => (h.clone(), String::new()),
        }
    } else {
        let parts: Vec<&str> = h.split(':').collect();
        if parts.len() == 2 {
            (parts[0].to_string(), parts[1].to_string())
        } else {
            (h.clone(), String::new())
        }
    };
    if name.ends_with('.') {
        name.pop();
    }
    // Ports compare as numbers: leading zeros of an all-digit port do not count.
    let port = if port.len() > 1 && port.bytes().all(|b| b.is_ascii_digit()) {
        match port.trim_start_matches('0') {
            "" => "0".to_string(),
            digits => digits.to_string(),
        }
    } else {
        port
    };
    if name.is_empty() {
        None
    } else {
        Some((name, port))
    }
}

/// The path prefix without trailing slashes, with a leading one; "" for the root.
fn path_key(raw: &str) -> String {
    let mut p = raw.to_string();
    while p.ends_with('/') {
        p.pop();
    }
    if !p.is_empty() && !p.starts_with('/') {
        p.insert(0, '/');
    }
    p
}

type Key = (Option<(String, String)>, String);

fn key(r: &Route) -> Key {
    (r.host.as_deref().and_then(host_key), path_key(&r.path))
}

fn reference<'a>(routes: &'a [Route], host: Option<&str>, path: &str) -> Option<&'a str> {
    let req = host.and_then(host_key);
    let mut best: Option<((bool, usize, bool), &str)> = None;
    for r in routes {
        let (rh, rp) = key(r);
        let host_ok = match (&rh, &req) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some((rn, rport)), Some((qn, qport))) => {
                rn == qn && (rport.is_empty() || rport == qport)
            }
        };
        let path_ok = rp.is_empty()
            || path == rp
            || path
                .strip_prefix(rp.as_str())
                .is_some_and(|rest| rest.starts_with('/'));
        if host_ok && path_ok {
            let rank = (
                rh.is_some(),
                rp.len(),
                rh.as_ref().is_some_and(|(_, p)| !p.is_empty()),
            );
            match best {
                Some((b, _)) if b >= rank => {}
                _ => best = Some((rank, &r.target)),
            }
        }
    }
    best.map(|(_, t)| t)
}

fn host_field(s: &str) -> Option<String> {
    match s {
        "-" => None,
        "~" => Some(String::new()),
        s => Some(s.to_string()),
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut routes = Vec::new();
    let mut requests = Vec::new();
    for line in text.lines().take(64) {
        let mut f = line.splitn(4, ' ');
        match (f.next(), f.next(), f.next(), f.next()) {
            (Some("route"), Some(h), Some(p), Some(t)) => routes.push(Route {
                host: host_field(h),
                path: p.to_string(),
                target: t.to_string(),
            }),
            (Some("req"), Some(h), Some(p), None) => requests.push((host_field(h), p.to_string())),
            _ => {}
        }
    }
    let conflict = routes.iter().enumerate().any(|(i, a)| {
        routes[..i]
            .iter()
            .any(|b| key(a) == key(b) && a.target != b.target)
    });
    match RouteTable::new(routes.clone()) {
        Err(e) => {
            assert!(
                conflict,
                "conflict reported where the reference sees none: {e}"
            );
            let _ = e.to_string();
        }
        Ok(table) => {
            assert!(!conflict, "conflicting routes accepted: {routes:?}");
            assert_eq!(table.len(), routes.len());
            for (host, path) in &requests {
                assert_eq!(
                    table.route(host.as_deref(), path),
                    reference(&routes, host.as_deref(), path),
                    "host {host:?} path {path:?} routes {routes:?}"
                );
            }
        }
    }
});
