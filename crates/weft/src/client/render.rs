//! How `weft get` and `weft deploy` print workloads from the admin API's JSON: a table (or a
//! wide one), one workload described, or the JSON itself as JSON or YAML. In the table and the
//! description, strings from the server have their control characters escaped.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

/// How `weft get`/`weft deploy` print workloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// NAME NAMESPACE STATUS ROUTES COMPONENTS AGE.
    Table,
    /// The table plus VERSION, IMAGE DIGESTS and HOST INTERFACES.
    Wide,
    /// The server's JSON, pretty-printed.
    Json,
    /// The server's JSON as YAML.
    Yaml,
}

/// Renders `{"workloads": [...]}` (a bare array works too). Ends with a newline.
pub fn render_workloads(list: &Value, format: OutputFormat) -> String {
    render_workloads_at(list, format, now_secs())
}

/// Renders one workload: a readable description for Table/Wide. Ends with a newline.
pub fn render_workload(w: &Value, format: OutputFormat) -> String {
    render_workload_at(w, format, now_secs())
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn render_workloads_at(list: &Value, format: OutputFormat, now: i64) -> String {
    let wide = match format {
        OutputFormat::Json => return to_json(list),
        OutputFormat::Yaml => return to_yaml(list),
        OutputFormat::Table => false,
        OutputFormat::Wide => true,
    };
    let items: &[Value] = match list {
        Value::Array(items) => items,
        _ => list
            .get("workloads")
            .and_then(Value::as_array)
            .map_or(&[], Vec::as_slice),
    };
    let mut header = vec!["NAME", "NAMESPACE", "STATUS", "ROUTES", "COMPONENTS", "AGE"];
    if wide {
        header.extend(["VERSION", "IMAGE DIGESTS", "HOST INTERFACES"]);
    }
    let mut rows: Vec<Vec<String>> = vec![header.into_iter().map(String::from).collect()];
    for w in items {
        let components = w
            .get("components")
            .and_then(Value::as_array)
            .map_or(&[][..], Vec::as_slice);
        let mut row = vec![
            text(w, "name"),
            text(w, "namespace"),
            text(w, "status"),
            or_none(routes(w).join(",")),
            components.len().to_string(),
            w.get("deployedAt")
                .and_then(Value::as_i64)
                .map_or_else(|| "-".to_string(), |t| age(now.saturating_sub(t))),
        ];
        if wide {
            let digests: Vec<String> = components
                .iter()
                .map(|c| {
                    let sha = c.get("sha256").and_then(Value::as_str).unwrap_or("-");
                    sanitize(&sha.chars().take(12).collect::<String>())
                })
                .collect();
            row.extend([
                text(w, "version"),
                or_none(digests.join(",")),
                or_none(strings(w, "hostInterfaces").join(",")),
            ]);
        }
        rows.push(row);
    }
    table(&rows)
}

fn render_workload_at(w: &Value, format: OutputFormat, now: i64) -> String {
    match format {
        OutputFormat::Json => return to_json(w),
        OutputFormat::Yaml => return to_yaml(w),
        OutputFormat::Table | OutputFormat::Wide => {}
    }
    let mut out = String::new();
    let mut field = |label: &str, value: &str| {
        let _ = writeln!(out, "{:<17}{}", format!("{label}:"), indent_rest(value, 17));
    };
    field("Name", &text(w, "name"));
    field("Namespace", &text(w, "namespace"));
    field("Status", &text(w, "status"));
    if let Some(err) = w.get("error").and_then(Value::as_str) {
        field("Error", &sanitize_multiline(err));
    }
    field("Version", &text(w, "version"));
    let deployed = match w.get("deployedAt").and_then(Value::as_i64) {
        Some(t) => {
            let when = u64::try_from(t)
                .ok()
                .and_then(|t| UNIX_EPOCH.checked_add(Duration::from_secs(t)))
                .map_or_else(
                    || t.to_string(),
                    |st| humantime::format_rfc3339_seconds(st).to_string(),
                );
            format!("{when} ({} ago)", age(now.saturating_sub(t)))
        }
        None => "-".to_string(),
    };
    field("Deployed", &deployed);
    field("Manifest", &text(w, "manifestPath"));
    field(
        "Host interfaces",
        &or_none(strings(w, "hostInterfaces").join(", ")),
    );
    let routes = routes(w);
    if routes.is_empty() {
        field("Routes", "<none>");
    } else {
        out.push_str("Routes:\n");
        for r in routes {
            let _ = writeln!(out, "  {r}");
        }
    }
    let components = w
        .get("components")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    if components.is_empty() {
        let _ = writeln!(out, "{:<17}<none>", "Components:");
    } else {
        out.push_str("Components:\n");
        for c in components {
            let _ = writeln!(out, "  {}", text(c, "name"));
            let size = c
                .get("sizeBytes")
                .and_then(Value::as_u64)
                .map_or_else(|| "-".to_string(), size);
            for (label, value) in [
                ("Image", text(c, "image")),
                ("SHA-256", text(c, "sha256")),
                ("World", text(c, "world")),
                ("Size", size),
            ] {
                let _ = writeln!(out, "    {:<13}{value}", format!("{label}:"));
            }
        }
    }
    out
}

fn to_json(v: &Value) -> String {
    match serde_json::to_string_pretty(v) {
        Ok(s) => s + "\n",
        Err(e) => format!("{{\"error\": \"cannot render JSON: {e}\"}}\n"),
    }
}

fn to_yaml(v: &Value) -> String {
    match serde_norway::to_string(v) {
        Ok(s) if s.ends_with('\n') => s,
        Ok(s) => s + "\n",
        Err(e) => format!("error: cannot render YAML: {e}\n"),
    }
}

/// A field as display text: strings as-is (sanitized), numbers and booleans printed, anything
/// else (missing, null, objects) `-`.
fn text(v: &Value, key: &str) -> String {
    match v.get(key) {
        Some(Value::String(s)) if !s.is_empty() => sanitize(s),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::Bool(b)) => b.to_string(),
        _ => "-".to_string(),
    }
}

fn strings(v: &Value, key: &str) -> Vec<String> {
    v.get(key)
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(sanitize).collect())
        .unwrap_or_default()
}

/// `host/path` for each route; a route without a host shows just its path.
fn routes(w: &Value) -> Vec<String> {
    let Some(routes) = w.get("routes").and_then(Value::as_array) else {
        return Vec::new();
    };
    routes
        .iter()
        .map(|r| {
            let host = r.get("host").and_then(Value::as_str).unwrap_or("");
            let path = r.get("path").and_then(Value::as_str).unwrap_or("/");
            sanitize(&format!("{host}{path}"))
        })
        .collect()
}

fn or_none(s: String) -> String {
    if s.is_empty() {
        "<none>".to_string()
    } else {
        s
    }
}

/// Escapes control characters so server-provided text cannot move the cursor or break rows.
fn sanitize(s: &str) -> String {
    if !s.chars().any(char::is_control) {
        return s.to_string();
    }
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

fn sanitize_multiline(s: &str) -> String {
    s.lines().map(sanitize).collect::<Vec<_>>().join("\n")
}

/// Indents every line after the first by `width` spaces.
fn indent_rest(s: &str, width: usize) -> String {
    s.replace('\n', &format!("\n{:width$}", ""))
}

/// `5s`, `3m`, `2h`, `4d`; negative (clock skew) is `0s`.
fn age(secs: i64) -> String {
    let s = secs.max(0);
    if s < 60 {
        format!("{s}s")
    } else if s < 3600 {
        format!("{}m", s / 60)
    } else if s < 86400 {
        format!("{}h", s / 3600)
    } else {
        format!("{}d", s / 86400)
    }
}

fn size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {} ({bytes} bytes)", UNITS[unit])
}

/// Left-aligned columns three spaces apart, no trailing spaces.
fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|c| c.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 < row.len() {
                let pad = widths[i] - cell.chars().count() + 3;
                let _ = write!(line, "{cell}{:pad$}", "");
            } else {
                line.push_str(cell);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: i64 = 1_763_700_000;

    fn hello() -> Value {
        json!({
            "name": "hello", "namespace": "default", "status": "Running", "version": 3,
            "deployedAt": NOW - 7300,
            "routes": [{"host": "hello.localhost", "path": "/"}, {"host": null, "path": "/api"}],
            "components": [
                {"name": "api", "image": "/abs/x.wasm", "sha256": "abcdef0123456789abcdef",
                 "world": "a wasi:http/proxy component (WASI 0.2)", "sizeBytes": 123},
                {"name": "worker", "image": "/abs/w.wasm", "sha256": "00112233445566778899",
                 "world": "a library", "sizeBytes": 5_242_880}
            ],
            "hostInterfaces": ["wasi:http", "wasi:keyvalue"],
            "error": null,
            "manifestPath": "/abs/path.yaml"
        })
    }

    fn broken() -> Value {
        json!({
            "name": "broken-one", "namespace": "team-a", "status": "Failed", "version": 1,
            "deployedAt": NOW - 30, "routes": [], "components": [],
            "hostInterfaces": [], "error": "component `api`: file not found\nsecond line",
            "manifestPath": "/abs/b.yaml"
        })
    }

    #[test]
    fn ages() {
        assert_eq!(age(-5), "0s");
        assert_eq!(age(5), "5s");
        assert_eq!(age(59), "59s");
        assert_eq!(age(60), "1m");
        assert_eq!(age(3 * 60 + 59), "3m");
        assert_eq!(age(2 * 3600 + 1), "2h");
        assert_eq!(age(4 * 86400 + 7), "4d");
    }

    #[test]
    fn table_is_aligned() {
        let list = json!({ "workloads": [hello(), broken()] });
        let out = render_workloads_at(&list, OutputFormat::Table, NOW);
        let expected = "\
NAME         NAMESPACE   STATUS    ROUTES                  COMPONENTS   AGE
hello        default     Running   hello.localhost/,/api   2            2h
broken-one   team-a      Failed    <none>                  0            30s
";
        assert_eq!(out, expected);
    }

    #[test]
    fn wide_adds_version_digests_and_interfaces() {
        let list = json!({ "workloads": [hello(), broken()] });
        let out = render_workloads_at(&list, OutputFormat::Wide, NOW);
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[0].ends_with("AGE   VERSION   IMAGE DIGESTS               HOST INTERFACES"));
        assert!(
            lines[1].contains("   3         abcdef012345,001122334455   wasi:http,wasi:keyvalue")
        );
        assert!(lines[2].ends_with("30s   1         <none>                      <none>"));
        // Every column starts at the same offset in every line.
        let col = lines[0].find("IMAGE DIGESTS");
        assert_eq!(lines[1].find("abcdef012345"), col);
        assert_eq!(lines[2].rfind("<none>   "), col);
        assert!(out.lines().all(|l| l == l.trim_end()));
    }

    #[test]
    fn empty_and_odd_lists() {
        let header = "NAME   NAMESPACE   STATUS   ROUTES   COMPONENTS   AGE\n";
        assert_eq!(
            render_workloads_at(&json!({"workloads": []}), OutputFormat::Table, NOW),
            header
        );
        assert_eq!(
            render_workloads_at(&json!({}), OutputFormat::Table, NOW),
            header
        );
        assert_eq!(
            render_workloads_at(&json!(null), OutputFormat::Table, NOW),
            header
        );
        let out = render_workloads_at(&json!([{"name": "x\u{1b}[2J"}]), OutputFormat::Table, NOW);
        assert!(out.contains("x\\u{1b}[2J"), "{out}");
        assert!(!out.contains('\u{1b}'));
    }

    #[test]
    fn json_and_yaml_are_stable() {
        let list = json!({ "workloads": [hello()] });
        let a = render_workloads(&list, OutputFormat::Json);
        assert_eq!(a, render_workloads(&list, OutputFormat::Json));
        assert!(a.ends_with("}\n"));
        let back: Value = serde_json::from_str(&a).unwrap_or_default();
        assert_eq!(back, list);
        let y = render_workloads(&list, OutputFormat::Yaml);
        assert!(y.contains("name: hello"), "{y}");
        let back: Value = serde_norway::from_str(&y).unwrap_or_default();
        assert_eq!(back, list);
        assert_eq!(
            render_workload(&hello(), OutputFormat::Json),
            to_json(&hello())
        );
    }

    #[test]
    fn describe_one() {
        let out = render_workload_at(&hello(), OutputFormat::Table, NOW);
        for line in [
            "Name:            hello",
            "Status:          Running",
            "Version:         3",
            "Deployed:        2025-11-21T02:38:20Z (2h ago)",
            "Manifest:        /abs/path.yaml",
            "Host interfaces: wasi:http, wasi:keyvalue",
            "  hello.localhost/",
            "  /api",
            "  api",
            "    SHA-256:     abcdef0123456789abcdef",
            "    World:       a wasi:http/proxy component (WASI 0.2)",
            "    Size:        123 B",
            "    Size:        5.0 MiB (5242880 bytes)",
        ] {
            assert!(out.lines().any(|l| l == line), "missing {line:?} in\n{out}");
        }
        assert!(!out.contains("Error:"));
        let out = render_workload_at(&broken(), OutputFormat::Wide, NOW);
        assert!(
            out.contains(
                "Error:           component `api`: file not found\n                 second line\n"
            ),
            "{out}"
        );
        assert!(out.contains("Routes:          <none>\n"), "{out}");
        assert!(out.contains("Components:      <none>\n"), "{out}");
    }
}
