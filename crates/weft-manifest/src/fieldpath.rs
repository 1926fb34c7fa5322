//! Field paths such as `spec.components[1].localResources.environment.LOG`.

/// `base.key`, or `base["key"]` when `key` is not a plain identifier (map keys with dots,
/// slashes, spaces, ...).
pub(crate) fn field(base: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    match (base.is_empty(), plain) {
        (true, true) => key.to_string(),
        (false, true) => format!("{base}.{key}"),
        (_, false) => format!("{base}[{}]", quote(key)),
    }
}

/// `base[i]`.
pub(crate) fn index(base: &str, i: usize) -> String {
    format!("{base}[{i}]")
}

fn quote(key: &str) -> String {
    let mut out = String::from("\"");
    for c in key.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => out.push_str(&c.escape_unicode().to_string()),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Whether `path` is `prefix` or lies below it (`prefix.x`, `prefix[0]`). The empty prefix
/// (the whole document) covers everything.
pub(crate) fn is_under(path: &str, prefix: &str) -> bool {
    if prefix.is_empty() {
        return true;
    }
    match path.strip_prefix(prefix) {
        Some("") => true,
        Some(rest) => rest.starts_with('.') || rest.starts_with('['),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(field("", "spec"), "spec");
        assert_eq!(field("spec", "components"), "spec.components");
        assert_eq!(index("spec.components", 1), "spec.components[1]");
        assert_eq!(
            field("x.links", "example:calc/ops"),
            "x.links[\"example:calc/ops\"]"
        );
        assert_eq!(field("x", ""), "x[\"\"]");
        assert!(is_under("spec.components[1].name", "spec.components[1]"));
        assert!(is_under("spec.components[1]", "spec.components[1]"));
        assert!(!is_under("spec.components[10]", "spec.components[1]"));
        assert!(!is_under("spec.componentsX", "spec.components"));
        assert!(is_under("anything", ""));
    }
}
