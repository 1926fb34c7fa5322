//! Pure checks of single values: names, labels, paths, host rules, image references, digests.
//! Each returns `Err(reason)` (and sometimes a hint) for a bad value.

use std::path::{Path, PathBuf};

/// Why a value is rejected: what is wrong and, when there is a clear fix, the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// What is wrong.
    pub reason: String,
    /// How to fix it.
    pub hint: Option<String>,
}

impl Rejection {
    fn new(reason: impl Into<String>, hint: Option<String>) -> Self {
        Rejection {
            reason: reason.into(),
            hint,
        }
    }
}

/// Whether `s` is a DNS label: 1 to 63 characters of lowercase `a-z`, `0-9` and `-`, neither
/// starting nor ending with `-`. Used for workload, namespace, component, service and volume
/// names.
pub fn is_dns_label(s: &str) -> bool {
    check_dns_label(s).is_ok()
}

/// [`is_dns_label`] with the reason and a suggested name.
pub fn check_dns_label(s: &str) -> Result<(), Rejection> {
    let suggest = || {
        let fixed = suggest_dns_label(s);
        if fixed.is_empty() {
            "use lowercase letters, digits and `-`, e.g. `my-api`".to_string()
        } else {
            format!("use lowercase letters, digits and `-`, e.g. `{fixed}`")
        }
    };
    if s.is_empty() {
        return Err(Rejection::new("must not be empty", Some(suggest())));
    }
    if s.len() > 63 {
        return Err(Rejection::new(
            format!("is {} characters long; at most 63 are allowed", s.len()),
            Some(suggest()),
        ));
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        let reason = if c.is_ascii_uppercase() {
            "must be lowercase".to_string()
        } else {
            format!("contains `{}`, which a name cannot have", c.escape_debug())
        };
        return Err(Rejection::new(reason, Some(suggest())));
    }
    if s.starts_with('-') || s.ends_with('-') {
        return Err(Rejection::new(
            "must not start or end with `-`",
            Some(suggest()),
        ));
    }
    Ok(())
}

/// A DNS label close to `s`: lower-cased, other characters replaced by `-`, trimmed, cut to 63.
fn suggest_dns_label(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    let trimmed: String = out.trim_matches('-').chars().take(63).collect();
    trimmed.trim_end_matches('-').to_string()
}

/// Whether `s` is a valid environment variable name: `[A-Za-z_][A-Za-z0-9_]*`.
pub fn is_env_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn is_label_segment(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        && b.first().is_some_and(u8::is_ascii_alphanumeric)
        && b.last().is_some_and(u8::is_ascii_alphanumeric)
}

fn is_dns_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns_label)
}

/// Checks a label (or host selector) key: `[prefix/]name`, `name` up to 63 characters of
/// `A-Z a-z 0-9 - _ .` starting and ending with a letter or digit, `prefix` a DNS name.
pub fn check_label_key(s: &str) -> Result<(), Rejection> {
    let hint = Some(
        "use letters, digits, `-`, `_` and `.` (up to 63), optionally after a DNS prefix and `/`, e.g. `app` or `example.com/tier`"
            .to_string(),
    );
    let (prefix, name) = match s.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, s),
    };
    if let Some(p) = prefix
        && !is_dns_name(p)
    {
        return Err(Rejection::new(
            "the prefix before `/` must be a lowercase DNS name",
            hint,
        ));
    }
    if !is_label_segment(name) {
        return Err(Rejection::new("is not a valid label name", hint));
    }
    Ok(())
}

/// Checks a label value: empty, or up to 63 characters of `A-Z a-z 0-9 - _ .` starting and
/// ending with a letter or digit.
pub fn check_label_value(s: &str) -> Result<(), Rejection> {
    if s.is_empty() || is_label_segment(s) {
        Ok(())
    } else {
        Err(Rejection::new(
            "is not a valid label value",
            Some(
                "use up to 63 letters, digits, `-`, `_` and `.`, starting and ending with a letter or digit"
                    .into(),
            ),
        ))
    }
}

/// Checks a pinned digest: `sha256:` and 64 lowercase hex digits.
pub fn check_digest(s: &str) -> Result<(), Rejection> {
    let example = "e.g. `sha256:` followed by the 64 hex digits `sha256sum` prints";
    let Some((algo, hex)) = s.split_once(':') else {
        return Err(Rejection::new(
            "is not a digest",
            Some(format!("write `sha256:<hex>`, {example}")),
        ));
    };
    if algo != "sha256" {
        return Err(Rejection::new(
            format!("only sha256 digests are supported, not `{algo}`"),
            Some(format!("pin the sha256 instead, {example}")),
        ));
    }
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Rejection::new(
            "a sha256 digest has exactly 64 hex digits",
            Some(example.to_string()),
        ));
    }
    if hex.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(Rejection::new(
            "hex digits must be lowercase",
            Some(format!("write `sha256:{}`", hex.to_ascii_lowercase())),
        ));
    }
    Ok(())
}

/// What an image reference points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageRef {
    /// A local file: as written (relative paths are relative to the manifest's directory).
    File(PathBuf),
    /// An OCI artifact: `oci://REGISTRY/REPOSITORY[:TAG][@sha256:HEX]`, pulled by the host
    /// (docs/distribution.md).
    Oci(weft_policy::oci::Reference),
}

/// Why an image reference cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageRefError {
    #[error("the image is empty")]
    Empty,
    #[error("{scheme}:// images are not supported yet")]
    Unsupported { scheme: String },
    #[error("`{scheme}://` is not an image scheme; use a path or a file:// URL")]
    UnknownScheme { scheme: String },
    #[error("invalid file:// URL: {reason}")]
    BadFileUrl { reason: String },
    #[error("invalid oci:// image: {0}")]
    Oci(weft_policy::oci::ReferenceError),
    #[error("{reference} is an OCI image, not a file: the host pulls it")]
    NotAFile { reference: String },
}

impl ImageRefError {
    /// The fix.
    pub fn hint(&self) -> String {
        match self {
            ImageRefError::Empty => {
                "point it at the component's Wasm, e.g. `image: ./api.wasm`".into()
            }
            ImageRefError::Unsupported { .. } => {
                "build or fetch the component and reference the .wasm file, e.g. `image: ./api.wasm`"
                    .into()
            }
            ImageRefError::UnknownScheme { .. } => {
                "use a path relative to the manifest (`./api.wasm`) or `file:///abs/path/api.wasm`"
                    .into()
            }
            ImageRefError::BadFileUrl { .. } => {
                "write `file:///absolute/path.wasm`, `file://./relative.wasm`, or just the path".into()
            }
            ImageRefError::Oci(e) => e.hint(),
            ImageRefError::NotAFile { .. } => {
                "pin and pull it first (`weft_oci::Puller::pin`, then `weft_oci::localize`)".into()
            }
        }
    }
}

/// Parses an image reference: a path, `file://PATH` (`file://localhost/PATH` too; `%XX`
/// escapes decoded) or `oci://REGISTRY/REPOSITORY[:TAG][@sha256:HEX]`. `http(s)://` are
/// recognised and refused as not supported.
pub fn parse_image(image: &str) -> Result<ImageRef, ImageRefError> {
    let trimmed = image.trim();
    if trimmed.is_empty() {
        return Err(ImageRefError::Empty);
    }
    if let Some((scheme, rest)) = image.split_once("://")
        && !scheme.is_empty()
        && scheme
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '.' | '-'))
    {
        let lower = scheme.to_ascii_lowercase();
        return match lower.as_str() {
            "file" => {
                let rest = rest.strip_prefix("localhost").unwrap_or(rest);
                let decoded = percent_decode(rest).ok_or_else(|| ImageRefError::BadFileUrl {
                    reason: "a `%` escape is not valid UTF-8 hex".into(),
                })?;
                if decoded.is_empty() {
                    return Err(ImageRefError::BadFileUrl {
                        reason: "no path after file://".into(),
                    });
                }
                Ok(ImageRef::File(PathBuf::from(decoded)))
            }
            "oci" => weft_policy::oci::Reference::parse(trimmed)
                .map(ImageRef::Oci)
                .map_err(ImageRefError::Oci),
            "http" | "https" => Err(ImageRefError::Unsupported { scheme: lower }),
            _ => Err(ImageRefError::UnknownScheme { scheme: lower }),
        };
    }
    Ok(ImageRef::File(PathBuf::from(image)))
}

/// The file an image reference names, resolved against `base_dir` (the manifest's directory)
/// when relative. An `oci://` image is no file: [`ImageRefError::NotAFile`] (the host pins,
/// pulls and localizes those before the runtime reads images).
pub fn resolve_image(image: &str, base_dir: &Path) -> Result<PathBuf, ImageRefError> {
    match parse_image(image)? {
        ImageRef::File(p) => Ok(join_clean(base_dir, &p)),
        ImageRef::Oci(r) => Err(ImageRefError::NotAFile {
            reference: r.to_string(),
        }),
    }
}

/// `base.join(rel)` (just `rel` when it is absolute) without `.` components, so
/// `/m` + `./a.wasm` is `/m/a.wasm`. `..` is kept: the filesystem resolves it.
pub fn join_clean(base: &Path, rel: &Path) -> PathBuf {
    base.join(rel)
        .components()
        .filter(|c| !matches!(c, std::path::Component::CurDir))
        .collect()
}

fn percent_decode(s: &str) -> Option<String> {
    if !s.contains('%') {
        return Some(s.to_string());
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Checks a `build.watch` glob: relative to the build's workdir (no leading `/`, no `..`
/// parts), and valid glob syntax (`*`, `**`, `?`, `[...]`, `{a,b}`).
pub fn check_watch_glob(glob: &str) -> Result<(), Rejection> {
    if glob.trim().is_empty() {
        return Err(Rejection::new(
            "a watch glob is empty",
            Some("e.g. `src/**/*.rs`".into()),
        ));
    }
    if glob.starts_with('/') {
        return Err(Rejection::new(
            "watch globs are relative to the build's workdir",
            Some(format!("e.g. `{}`", glob.trim_start_matches('/'))),
        ));
    }
    if glob.split('/').any(|part| part == "..") {
        return Err(Rejection::new(
            "watch globs stay inside the build's workdir (no `..`)",
            Some("set `workdir` to the directory to watch".into()),
        ));
    }
    globset::Glob::new(glob).map(|_| ()).map_err(|e| {
        Rejection::new(
            format!("not a valid glob: {}", e.kind()),
            Some("globs use `*`, `**`, `?`, `[abc]` and `{a,b}`, e.g. `src/**/*.rs`".into()),
        )
    })
}

/// Checks a mount path: absolute, no `.`/`..` parts, no backslashes or NULs.
pub fn check_mount_path(s: &str) -> Result<(), Rejection> {
    if !s.starts_with('/') {
        return Err(Rejection::new(
            "must be an absolute path",
            Some(format!(
                "start it with `/`, e.g. `/{}`",
                s.trim_start_matches("./")
            )),
        ));
    }
    if s.contains('\\') || s.contains('\0') {
        return Err(Rejection::new(
            "must not contain backslashes or NUL",
            Some("use `/` to separate directories".into()),
        ));
    }
    if s.split('/').any(|part| part == "." || part == "..") {
        return Err(Rejection::new(
            "must not contain `.` or `..` parts",
            Some("write the plain absolute path, e.g. `/data`".into()),
        ));
    }
    Ok(())
}

const HOST_RULE_SHAPE: &str =
    "expected [http://|https://]HOST[:PORT], e.g. `api.example.com:443` or `*.example.com`";

/// Checks an outgoing-HTTP allow rule `[SCHEME://]HOST[:PORT]` (the grammar `weft-runtime`'s
/// allow-list parses): SCHEME `http`/`https`; HOST a DNS name, an IPv4 address, a bracketed
/// IPv6 address, `*.suffix` or `*`; PORT 1-65535 or `*`.
/// A name pattern for `allowedIpNameLookups`: a DNS name, `*.suffix` or `*` (no IP literals:
/// those need no lookup).
pub fn check_lookup_name(pattern: &str) -> Result<(), Rejection> {
    use weft_policy::sockets::{NamePatternError, check_name_pattern};
    match check_name_pattern(pattern) {
        Ok(()) => Ok(()),
        Err(NamePatternError::IpLiteral) => Err(Rejection::new(
            "is an IP address, which needs no lookup grant",
            Some("remove it; grant the port in `sockets` instead".into()),
        )),
        Err(NamePatternError::NotAName) => Err(Rejection::new(
            "is not a host name pattern",
            Some(
                "use a DNS name such as `db.internal`, `*.internal` for its subdomains, or `*`"
                    .into(),
            ),
        )),
    }
}

pub fn check_allowed_host(rule: &str) -> Result<(), Rejection> {
    let bad = |reason: &str| Rejection::new(reason, Some(HOST_RULE_SHAPE.to_string()));
    let trimmed = rule.trim();
    if trimmed.is_empty() {
        return Err(bad("the rule is empty"));
    }
    let rest = match trimmed.split_once("://") {
        Some((s, rest)) => {
            if !(s.eq_ignore_ascii_case("http") || s.eq_ignore_ascii_case("https")) {
                return Err(bad("the scheme must be http or https"));
            }
            rest
        }
        None => trimmed,
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains(['/', '?', '#', '@']) {
        return Err(bad("a rule names a host and port only, not a path or user"));
    }
    let (host, port) = if let Some(after) = rest.strip_prefix('[') {
        let Some((inside, tail)) = after.split_once(']') else {
            return Err(bad("an IPv6 address needs its closing `]`"));
        };
        if inside.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(bad("not a valid IPv6 address"));
        }
        let port = match tail {
            "" => None,
            t => match t.strip_prefix(':') {
                Some(p) => Some(p),
                None => return Err(bad("expected `:PORT` after the IPv6 address")),
            },
        };
        (None, port)
    } else {
        match rest.rsplit_once(':') {
            Some((h, p)) => (Some(h.to_ascii_lowercase()), Some(p)),
            None => (Some(rest.to_ascii_lowercase()), None),
        }
    };
    match port {
        None | Some("*") => {}
        Some(p) => {
            if !matches!(p.parse::<u16>(), Ok(n) if n != 0) {
                return Err(bad("the port must be a number from 1 to 65535, or *"));
            }
        }
    }
    if let Some(host) = host {
        if host == "*" {
            return Ok(());
        }
        let name = host.strip_prefix("*.").unwrap_or(&host);
        if name.contains(':') {
            return Err(bad("write IPv6 addresses in brackets, e.g. [::1]:8080"));
        }
        check_host_name(name).map_err(|r| bad(&r))?;
    }
    Ok(())
}

/// A DNS name as `weft-runtime` accepts it in allow rules (labels of letters, digits, `-`, `_`).
fn check_host_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("the host is empty".into());
    }
    if name.len() > 253 {
        return Err("the host is longer than 253 characters".into());
    }
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(format!("`{name}` has an empty or over-long label"));
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(format!(
                "`{name}` has a character that is not allowed in a host name"
            ));
        }
    }
    Ok(())
}

/// Checks a `wasi:http` routing host: a host name, optionally with `:PORT`.
pub fn check_http_host(s: &str) -> Result<(), Rejection> {
    let hint = Some(
        "write a host name, optionally with a port, e.g. `todo.localhost` or `todo.localhost:8080`"
            .to_string(),
    );
    let (host, port) = match s.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (s, None),
    };
    if let Some(p) = port
        && !matches!(p.parse::<u16>(), Ok(n) if n != 0)
    {
        return Err(Rejection::new(
            "the port must be a number from 1 to 65535",
            hint,
        ));
    }
    check_host_name(host).map_err(|r| Rejection::new(r, hint))
}

/// Checks a `wasi:http` routing path prefix: starts with `/`, no spaces, `?` or `#`.
pub fn check_http_path(s: &str) -> Result<(), Rejection> {
    if !s.starts_with('/') {
        return Err(Rejection::new(
            "must start with `/`",
            Some(format!("write `/{}`", s.trim_start_matches('/'))),
        ));
    }
    if s.chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '?' || c == '#')
    {
        return Err(Rejection::new(
            "must be a plain path (no spaces, `?` or `#`)",
            Some("write a path prefix such as `/api`".into()),
        ));
    }
    Ok(())
}

fn is_wit_id(s: &str) -> bool {
    !s.is_empty()
        && s.split('-').all(|w| {
            let mut c = w.chars();
            matches!(c.next(), Some(f) if f.is_ascii_alphabetic())
                && c.all(|c| c.is_ascii_alphanumeric())
        })
}

/// Checks a link key: `namespace:package/interface`, optionally `@version`, e.g.
/// `example:calc/ops` or `wasi:keyvalue/store@0.2.0-draft`.
pub fn check_interface_name(s: &str) -> Result<(), Rejection> {
    let hint = Some(
        "write `namespace:package/interface`, e.g. `example:calc/ops` (optionally `@1.0.0`)"
            .to_string(),
    );
    let (name, version) = match s.split_once('@') {
        Some((n, v)) => (n, Some(v)),
        None => (s, None),
    };
    if let Some(v) = version
        && (v.is_empty()
            || !v
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+')))
    {
        return Err(Rejection::new("the version after `@` is not valid", hint));
    }
    let Some((ns, rest)) = name.split_once(':') else {
        return Err(Rejection::new("is not an interface name", hint));
    };
    let Some((pkg, iface)) = rest.split_once('/') else {
        return Err(Rejection::new("names no interface after `/`", hint));
    };
    if !(is_wit_id(ns) && is_wit_id(pkg) && is_wit_id(iface)) {
        return Err(Rejection::new(
            "namespace, package and interface must be kebab-case identifiers",
            hint,
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_labels() {
        for ok in ["a", "api", "calc-v2", "0", "a".repeat(63).as_str()] {
            assert!(is_dns_label(ok), "{ok}");
        }
        for bad in ["", "-a", "a-", "Api", "a_b", "a.b", "ä", &"a".repeat(64)] {
            assert!(!is_dns_label(bad), "{bad}");
        }
        let r = check_dns_label("My_API").unwrap_err();
        assert_eq!(r.reason, "must be lowercase");
        assert!(r.hint.unwrap().contains("`my-api`"));
    }

    #[test]
    fn env_names() {
        assert!(is_env_name("LOG"));
        assert!(is_env_name("_x1"));
        assert!(!is_env_name("1X"));
        assert!(!is_env_name("A-B"));
        assert!(!is_env_name(""));
    }

    #[test]
    fn labels() {
        assert!(check_label_key("app").is_ok());
        assert!(check_label_key("example.com/tier").is_ok());
        assert!(check_label_key("Example.com/tier").is_err());
        assert!(check_label_key("").is_err());
        assert!(check_label_key("-a").is_err());
        assert!(check_label_value("").is_ok());
        assert!(check_label_value("v1.2_x").is_ok());
        assert!(check_label_value("a b").is_err());
    }

    #[test]
    fn digests() {
        let good = format!("sha256:{}", "ab".repeat(32));
        assert!(check_digest(&good).is_ok());
        assert!(check_digest("sha256:abc").is_err());
        assert!(check_digest(&format!("sha512:{}", "ab".repeat(64))).is_err());
        let upper = check_digest(&format!("sha256:{}", "AB".repeat(32))).unwrap_err();
        assert!(upper.hint.unwrap().contains(&"ab".repeat(32)));
        assert!(check_digest("nope").is_err());
    }

    #[test]
    fn images() {
        let base = Path::new("/m");
        assert_eq!(
            resolve_image("./a.wasm", base),
            Ok(PathBuf::from("/m/a.wasm"))
        );
        assert_eq!(
            resolve_image("../a.wasm", base),
            Ok(PathBuf::from("/m/../a.wasm"))
        );
        assert_eq!(
            join_clean(Path::new("."), Path::new("./a.wasm")),
            PathBuf::from("a.wasm")
        );
        assert_eq!(
            resolve_image("/abs/a.wasm", base),
            Ok(PathBuf::from("/abs/a.wasm"))
        );
        assert_eq!(
            resolve_image("file:///abs/a%20b.wasm", base),
            Ok(PathBuf::from("/abs/a b.wasm"))
        );
        assert_eq!(
            resolve_image("file://./a.wasm", base),
            Ok(PathBuf::from("/m/a.wasm"))
        );
        assert_eq!(
            resolve_image("file://localhost/x.wasm", base),
            Ok(PathBuf::from("/x.wasm"))
        );
        assert!(matches!(
            parse_image("oci://ghcr.io/x:1"),
            Ok(ImageRef::Oci(_))
        ));
        assert!(matches!(
            parse_image("oci://ghcr.io/x"),
            Err(ImageRefError::Oci(_))
        ));
        assert!(matches!(
            resolve_image("oci://ghcr.io/x:1", base),
            Err(ImageRefError::NotAFile { .. })
        ));
        assert!(matches!(
            parse_image("https://x/a.wasm"),
            Err(ImageRefError::Unsupported { .. })
        ));
        assert!(matches!(
            parse_image("ftp://x"),
            Err(ImageRefError::UnknownScheme { .. })
        ));
        assert!(matches!(
            parse_image("file://"),
            Err(ImageRefError::BadFileUrl { .. })
        ));
        assert!(matches!(
            parse_image("file://%zz"),
            Err(ImageRefError::BadFileUrl { .. })
        ));
        assert!(matches!(parse_image("  "), Err(ImageRefError::Empty)));
    }

    #[test]
    fn mount_paths() {
        assert!(check_mount_path("/data").is_ok());
        assert!(check_mount_path("/").is_ok());
        assert!(check_mount_path("data").is_err());
        assert!(check_mount_path("/a/../b").is_err());
        assert!(check_mount_path("/a\\b").is_err());
    }

    #[test]
    fn host_rules() {
        for ok in [
            "api.example.com:443",
            "https://api.example.com",
            "http://localhost:*",
            "*.example.com",
            "*",
            "[::1]:8080",
            "10.0.0.1",
            "HTTPS://Example.COM/",
        ] {
            assert!(check_allowed_host(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "ftp://x",
            "x.com/path",
            "x.com:0",
            "x.com:70000",
            "::1",
            "[::1",
            "a..b",
            "user@x.com",
            "*.",
        ] {
            assert!(check_allowed_host(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn http_config_values() {
        assert!(check_http_host("todo.localhost").is_ok());
        assert!(check_http_host("todo.localhost:8080").is_ok());
        assert!(check_http_host("todo.localhost:0").is_err());
        assert!(check_http_host("").is_err());
        assert!(check_http_host("a b").is_err());
        assert!(check_http_path("/").is_ok());
        assert!(check_http_path("/api/v1").is_ok());
        assert_eq!(
            check_http_path("api").unwrap_err().hint.as_deref(),
            Some("write `/api`")
        );
        assert!(check_http_path("/a?b").is_err());
    }

    #[test]
    fn interface_names() {
        assert!(check_interface_name("example:calc/ops").is_ok());
        assert!(check_interface_name("wasi:keyvalue/store@0.2.0-draft").is_ok());
        assert!(check_interface_name("example:calc").is_err());
        assert!(check_interface_name("calc/ops").is_err());
        assert!(check_interface_name("example:calc/ops@").is_err());
        assert!(check_interface_name("Ex_ample:calc/ops").is_err());
    }
}
