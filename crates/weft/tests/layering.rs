//! The house rule (docs/architecture.md): an arrow only points down.
//!
//! Two checks, both over the source text only (nothing here links the crates):
//!
//! - Within a crate, no import cycle between its files. Every `crate::` and `super::` path in a
//!   file is an arrow from the module that file (or an inline module in it) is, to the module
//!   the path names. A module and its own children may point at each other (a parent declares
//!   its children, a child uses its parent's types); every other arrow is compared between the
//!   two siblings it crosses (`crate::net::p3 -> crate::state` is `net -> state`), and a
//!   circle among siblings fails the test, naming the files and the symbols that close it.
//! - Between crates, every path dependency points to a lower layer of [`LAYERS`].

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The workspace's crates, lowest layer first. A crate may depend only on crates of a lower
/// layer; a new crate gets its line here (and its place in docs/architecture.md).
/// (Dev-dependencies are not arrows: `weft-policy`'s tests check it against `weft-manifest`.)
const LAYERS: &[(&str, usize)] = &[
    ("weft-policy", 0),
    ("weft-inspect", 0),
    ("weft-stats", 0),
    ("weft-manifest", 1),
    ("weft-messaging", 1),
    ("weft-engine", 1),
    ("weft-interfaces", 2),
    ("weft-scheduler", 2),
    ("weft-oci", 2),
    ("weft-lattice", 3),
    ("weft-runtime", 3),
    ("weft-host", 4),
    ("weft", 5),
];

/// A module's path from its crate root: `[]` for `lib.rs`, `["net", "p3"]` for `net/p3.rs`.
type ModPath = Vec<String>;

/// One path in a file that names another module.
#[derive(Debug, Clone)]
struct Arrow {
    /// The module the path is written in (a file's module, or an inline module in it).
    from: ModPath,
    /// The module it names (the longest prefix of the path that is a file of the crate).
    to: ModPath,
    /// `file:line`.
    at: String,
    /// The path as written, e.g. `crate::run::explain_unsatisfied`.
    symbol: String,
}

/// An import cycle among the children of one module.
#[derive(Debug)]
struct Cycle {
    /// The sibling modules in the circle.
    members: Vec<String>,
    /// The arrows between them: (from, to, where, symbol).
    arrows: Vec<(String, String, String, String)>,
}

/// Every `.rs` file of a crate's `src/`, by module path.
fn modules(src: &Path) -> BTreeMap<ModPath, PathBuf> {
    let mut out = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path.strip_prefix(src).expect("under src");
            let mut parts: Vec<String> = rel
                .with_extension("")
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if parts == ["lib"] || parts == ["main"] || parts.last().is_some_and(|p| p == "mod") {
                parts.pop();
            }
            out.insert(parts, path);
        }
    }
    out
}

/// `text` with comments, string and char literals blanked out (newlines kept, so line numbers
/// hold): a path in a doc comment or a message is not an import.
fn code_only(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let blank = |s: &[u8], out: &mut String| {
        for &c in s {
            out.push(if c == b'\n' { '\n' } else { ' ' });
        }
    };
    while i < b.len() {
        if b[i..].starts_with(b"//") {
            let end = text[i..].find('\n').map_or(b.len(), |n| i + n);
            blank(&b[i..end], &mut out);
            i = end;
        } else if b[i..].starts_with(b"/*") {
            let end = text[i + 2..].find("*/").map_or(b.len(), |n| i + 2 + n + 2);
            blank(&b[i..end], &mut out);
            i = end;
        } else if let Some(end) = raw_string_end(text, i) {
            blank(&b[i..end], &mut out);
            i = end;
        } else if b[i] == b'"' {
            let mut j = i + 1;
            while j < b.len() && b[j] != b'"' {
                j += if b[j] == b'\\' { 2 } else { 1 };
            }
            let end = (j + 1).min(b.len());
            blank(&b[i..end], &mut out);
            i = end;
        } else if b[i] == b'\'' && b.get(i + 2) == Some(&b'\'') {
            // 'x' (a lifetime has no closing quote)
            blank(&b[i..i + 3], &mut out);
            i += 3;
        } else if b[i] == b'\'' && b.get(i + 1) == Some(&b'\\') {
            // '\n', '\'', '\u{..}'
            let end = text[i + 3..].find('\'').map_or(b.len(), |n| i + 3 + n + 1);
            blank(&b[i..end], &mut out);
            i = end;
        } else {
            let c = text[i..].chars().next().expect("in bounds");
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

/// Where the raw string literal (`r"..."`, `r#"..."#`, `br"..."`) starting at `i` ends.
fn raw_string_end(text: &str, i: usize) -> Option<usize> {
    let b = text.as_bytes();
    if i > 0 && is_ident(b[i - 1]) {
        return None;
    }
    let mut j = i;
    if b.get(j) == Some(&b'b') {
        j += 1;
    }
    if b.get(j) != Some(&b'r') {
        return None;
    }
    j += 1;
    let hashes = b[j..].iter().take_while(|&&c| c == b'#').count();
    j += hashes;
    if b.get(j) != Some(&b'"') {
        return None;
    }
    let close = format!("\"{}", "#".repeat(hashes));
    Some(
        text[j + 1..]
            .find(&close)
            .map_or(b.len(), |n| j + 1 + n + close.len()),
    )
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// The paths a `crate::`/`super::` prefix at `start` introduces: `crate::a::b` is one,
/// `crate::{a::X, b::{Y, Z}}` is `a::X` and `b::...`. Returns each path's segments.
fn expand(code: &str, start: usize) -> Vec<Vec<String>> {
    let b = code.as_bytes();
    let mut segs = Vec::new();
    let mut i = start;
    loop {
        while i < b.len() && b[i] == b' ' {
            i += 1;
        }
        if i < b.len() && b[i] == b'{' {
            // A group: split its top level on commas, expand each item.
            let mut depth = 0;
            let mut item_start = i + 1;
            let mut out = Vec::new();
            let mut j = i;
            while j < b.len() {
                match b[j] {
                    b'{' => depth += 1,
                    b'}' | b',' if depth == 1 => {
                        let item = code[item_start..j].trim();
                        if !item.is_empty() {
                            let sub =
                                code[item_start..j].len() - code[item_start..j].trim_start().len();
                            for tail in expand(code, item_start + sub) {
                                let mut full = segs.clone();
                                full.extend(tail);
                                out.push(full);
                            }
                        }
                        item_start = j + 1;
                        if b[j] == b'}' {
                            break;
                        }
                    }
                    b'}' => depth -= 1,
                    _ => {}
                }
                j += 1;
            }
            return out;
        }
        let s = i;
        while i < b.len() && is_ident(b[i]) {
            i += 1;
        }
        if s == i {
            return vec![segs];
        }
        segs.push(code[s..i].to_string());
        if !b[i..].starts_with(b"::") {
            return vec![segs];
        }
        i += 2;
    }
}

/// The arrows of one file (`module` is its module path).
fn arrows(module: &ModPath, file: &Path, known: &BTreeMap<ModPath, PathBuf>) -> Vec<Arrow> {
    let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let code = code_only(&text);
    let b = code.as_bytes();
    let root = file
        .ancestors()
        .find(|a| a.ends_with("src"))
        .and_then(Path::parent);
    let shown = root
        .and_then(|r| file.strip_prefix(r).ok())
        .unwrap_or(file)
        .display()
        .to_string();
    let mut out = Vec::new();
    // Inline modules (`mod tests { ... }`): (their name, the brace depth inside them).
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    while i < b.len() {
        let word_start = i == 0 || !is_ident(b[i - 1]);
        if b[i] == b'{' {
            depth += 1;
        } else if b[i] == b'}' {
            if inline.last().is_some_and(|(_, d)| *d == depth) {
                inline.pop();
            }
            depth = depth.saturating_sub(1);
        } else if word_start && b[i..].starts_with(b"mod ") {
            let rest = &code[i + 4..];
            let name: String = rest
                .bytes()
                .take_while(|&c| is_ident(c))
                .map(char::from)
                .collect();
            if rest[name.len()..].trim_start().starts_with('{') {
                let brace = i
                    + 4
                    + name.len()
                    + (rest[name.len()..].len() - rest[name.len()..].trim_start().len());
                inline.push((name, depth + 1));
                depth += 1;
                i = brace + 1;
                continue;
            }
        } else if word_start && (b[i..].starts_with(b"crate::") || b[i..].starts_with(b"super::")) {
            let here: ModPath = module
                .iter()
                .cloned()
                .chain(inline.iter().map(|(n, _)| n.clone()))
                .collect();
            let is_crate = b[i..].starts_with(b"crate::");
            let line = code[..i].matches('\n').count() + 1;
            for segs in expand(&code, i + 7) {
                let mut base: ModPath = if is_crate {
                    Vec::new()
                } else {
                    here[..here.len().saturating_sub(1)].to_vec()
                };
                let mut segs = segs.as_slice();
                if segs.last().is_some_and(|s| s == "self") {
                    segs = &segs[..segs.len() - 1];
                }
                while segs.first().is_some_and(|s| s == "super") {
                    base.pop();
                    segs = &segs[1..];
                }
                let full: ModPath = base.iter().cloned().chain(segs.iter().cloned()).collect();
                let to = (0..=full.len())
                    .rev()
                    .map(|n| full[..n].to_vec())
                    .find(|p| known.contains_key(p))
                    .unwrap_or_default();
                let prefix = if is_crate { "crate" } else { "super" };
                out.push(Arrow {
                    from: here.clone(),
                    to,
                    at: format!("{shown}:{line}"),
                    symbol: format!("{prefix}::{}", segs.join("::")),
                });
            }
            i += 7;
            continue;
        }
        i += 1;
    }
    out
}

/// The import cycles of the crate whose sources are in `src`.
fn cycles(src: &Path) -> Vec<Cycle> {
    let known = modules(src);
    // Arrows between siblings, by their parent: parent -> (from child, to child) -> arrows.
    let mut graphs: BTreeMap<ModPath, BTreeMap<(String, String), Vec<Arrow>>> = BTreeMap::new();
    for (module, file) in &known {
        for a in arrows(module, file, &known) {
            let common = a.from.iter().zip(&a.to).take_while(|(x, y)| x == y).count();
            if common == a.from.len() || common == a.to.len() {
                continue; // a module and its own descendants or ancestors
            }
            let parent = a.from[..common].to_vec();
            let edge = (a.from[common].clone(), a.to[common].clone());
            graphs
                .entry(parent)
                .or_default()
                .entry(edge)
                .or_default()
                .push(a);
        }
    }
    let mut out = Vec::new();
    for (parent, edges) in &graphs {
        let next: BTreeMap<&str, BTreeSet<&str>> =
            edges.keys().fold(BTreeMap::new(), |mut m, (f, t)| {
                m.entry(f.as_str()).or_default().insert(t.as_str());
                m
            });
        for scc in strongly_connected(&next) {
            if scc.len() < 2 {
                continue;
            }
            let prefix = |m: &str| {
                parent
                    .iter()
                    .map(String::as_str)
                    .chain([m])
                    .collect::<Vec<_>>()
                    .join("::")
            };
            let mut arrows = Vec::new();
            for ((f, t), list) in edges {
                if scc.contains(&f.as_str()) && scc.contains(&t.as_str()) {
                    for a in list {
                        arrows.push((prefix(f), prefix(t), a.at.clone(), a.symbol.clone()));
                    }
                }
            }
            out.push(Cycle {
                members: scc.iter().map(|m| prefix(m)).collect(),
                arrows,
            });
        }
    }
    out
}

/// Tarjan's strongly connected components of a small graph.
fn strongly_connected<'a>(next: &BTreeMap<&'a str, BTreeSet<&'a str>>) -> Vec<Vec<&'a str>> {
    struct State<'a> {
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        out: Vec<Vec<&'a str>>,
    }
    fn visit<'a>(v: &'a str, next: &BTreeMap<&'a str, BTreeSet<&'a str>>, s: &mut State<'a>) {
        let n = s.index.len();
        s.index.insert(v, n);
        s.low.insert(v, n);
        s.stack.push(v);
        for &w in next.get(v).into_iter().flatten() {
            if !s.index.contains_key(w) {
                visit(w, next, s);
                let lw = s.low[w];
                let lv = s.low.get_mut(v).expect("visited");
                *lv = (*lv).min(lw);
            } else if s.stack.contains(&w) {
                let iw = s.index[w];
                let lv = s.low.get_mut(v).expect("visited");
                *lv = (*lv).min(iw);
            }
        }
        if s.low[v] == s.index[v] {
            let mut scc = Vec::new();
            while let Some(w) = s.stack.pop() {
                scc.push(w);
                if w == v {
                    break;
                }
            }
            scc.sort_unstable();
            s.out.push(scc);
        }
    }
    let mut s = State {
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        out: Vec::new(),
    };
    for &v in next.keys() {
        if !s.index.contains_key(v) {
            visit(v, next, &mut s);
        }
    }
    s.out
}

fn report(krate: &str, found: &[Cycle]) -> String {
    let mut text = String::new();
    for c in found {
        text.push_str(&format!(
            "import cycle in {krate} among {}:\n",
            c.members.join(", ")
        ));
        // One line per arrow between two members: each symbol once, where it first appears.
        let mut lines: BTreeMap<(&str, &str), Vec<String>> = BTreeMap::new();
        for (f, t, at, symbol) in &c.arrows {
            let seen = lines.entry((f, t)).or_default();
            if !seen.iter().any(|s| s.starts_with(&format!("{symbol} ("))) {
                seen.push(format!("{symbol} ({at})"));
            }
        }
        for ((f, t), symbols) in lines {
            text.push_str(&format!("  {f} -> {t}: {}\n", symbols.join(", ")));
        }
    }
    text
}

fn workspace() -> PathBuf {
    std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
    )
    .join("../..")
}

fn crates() -> Vec<(String, PathBuf)> {
    let dir = workspace().join("crates");
    let mut out: Vec<(String, PathBuf)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.join("Cargo.toml").is_file())
        .map(|p| {
            (
                p.file_name().expect("name").to_string_lossy().into_owned(),
                p,
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn no_import_cycle_in_any_crate() {
    let all = crates();
    assert!(
        all.len() >= 6,
        "found only {} crates under crates/",
        all.len()
    );
    let mut problems = String::new();
    for (name, dir) in &all {
        problems.push_str(&report(name, &cycles(&dir.join("src"))));
    }
    assert!(
        problems.is_empty(),
        "an arrow must only point down (docs/architecture.md); move the code to the layer it \
         belongs to, or make the lower module generic over a view trait:\n{problems}"
    );
}

#[test]
fn crates_depend_only_on_lower_layers() {
    let layer = |name: &str| LAYERS.iter().find(|(n, _)| *n == name).map(|(_, l)| *l);
    let mut problems = Vec::new();
    for (name, dir) in crates() {
        let Some(mine) = layer(&name) else {
            problems.push(format!(
                "crate {name} has no layer: add it to LAYERS in {}",
                file!()
            ));
            continue;
        };
        let toml = std::fs::read_to_string(dir.join("Cargo.toml")).expect("Cargo.toml");
        let mut section = "";
        for line in toml.lines() {
            if line.starts_with('[') {
                section = line.trim();
                continue;
            }
            if section != "[dependencies]" {
                continue;
            }
            let Some(rest) = line.split("path = \"../").nth(1) else {
                continue;
            };
            let dep = rest.split('"').next().unwrap_or_default();
            match layer(dep) {
                Some(theirs) if theirs < mine => {}
                Some(theirs) => problems.push(format!(
                    "{name} (layer {mine}) depends on {dep} (layer {theirs}): an arrow only points down"
                )),
                None => problems.push(format!("{name} depends on {dep}, which has no layer in LAYERS")),
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The checker itself, on small crates written to a temporary directory.
mod checker {
    use super::*;

    fn krate(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        for (path, text) in files {
            let p = dir.path().join("src").join(path);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(p, text).expect("write");
        }
        dir
    }

    fn found(files: &[(&str, &str)]) -> String {
        let dir = krate(files);
        report("test", &cycles(&dir.path().join("src")))
    }

    #[test]
    fn a_circle_names_its_files_and_symbols() {
        let text = found(&[
            ("lib.rs", "pub mod a;\npub mod b;\npub mod c;\n"),
            ("a.rs", "use crate::b::Thing;\n"),
            ("b.rs", "pub struct Thing;\nfn f() { crate::c::go(); }\n"),
            ("c.rs", "pub fn go() {}\n\n\nuse crate::a::{self, X};\n"),
        ]);
        assert!(
            text.contains("import cycle in test among a, b, c"),
            "{text}"
        );
        assert!(text.contains("a -> b: crate::b::Thing"), "{text}");
        assert!(text.contains("b -> c: crate::c::go"), "{text}");
        assert!(
            text.contains("c -> a: crate::a (src/c.rs:4), crate::a::X (src/c.rs:4)"),
            "{text}"
        );
    }

    #[test]
    fn parents_and_children_may_point_at_each_other() {
        let text = found(&[
            ("lib.rs", "pub mod plugins;\npub mod logs;\n"),
            (
                "plugins/mod.rs",
                "pub mod kv;\npub struct Ctx;\nuse crate::plugins::kv::Bucket;\n",
            ),
            (
                "plugins/kv.rs",
                "use super::Ctx;\nuse crate::plugins::Ctx as C;\nuse crate::logs::Sink;\n",
            ),
            ("logs.rs", "pub struct Sink;\n"),
        ]);
        assert_eq!(text, "");
    }

    #[test]
    fn a_child_closing_a_circle_counts_for_its_parent() {
        // plugins/kv.rs -> state and state -> plugins: the circle is plugins <-> state.
        let text = found(&[
            ("lib.rs", "pub mod plugins;\npub mod state;\n"),
            ("plugins/mod.rs", "pub mod kv;\n"),
            ("plugins/kv.rs", "use crate::state::HostState;\n"),
            (
                "state.rs",
                "pub struct HostState { p: crate::plugins::Instances }\n",
            ),
        ]);
        assert!(text.contains("among plugins, state"), "{text}");
        assert!(
            text.contains("plugins -> state: crate::state::HostState"),
            "{text}"
        );
    }

    #[test]
    fn circles_among_siblings_deeper_down_and_through_super() {
        let text = found(&[
            ("lib.rs", "pub mod net;\n"),
            ("net/mod.rs", "mod p2;\nmod p3;\n"),
            ("net/p2.rs", "use super::p3::Plan;\n"),
            ("net/p3.rs", "pub struct Plan;\nuse crate::net::p2::x;\n"),
        ]);
        assert!(text.contains("among net::p2, net::p3"), "{text}");
        assert!(
            text.contains("net::p2 -> net::p3: super::p3::Plan"),
            "{text}"
        );
    }

    #[test]
    fn comments_strings_and_test_modules() {
        // Paths in comments and strings are not imports; a test module's imports are its file's.
        let text = found(&[
            ("lib.rs", "pub mod a;\npub mod b;\n"),
            (
                "a.rs",
                "//! see crate::b::X\nconst S: &str = \"crate::b::X\";\n/* crate::b */\n",
            ),
            (
                "b.rs",
                "use crate::a::S;\n#[cfg(test)]\nmod tests {\n    use super::*;\n}\n",
            ),
        ]);
        assert_eq!(text, "");
        let text = found(&[
            ("lib.rs", "pub mod a;\npub mod b;\n"),
            (
                "a.rs",
                "pub fn f() {}\n#[cfg(test)]\nmod tests {\n    use crate::b::helper;\n}\n",
            ),
            ("b.rs", "use crate::a::f;\n"),
        ]);
        assert!(text.contains("a -> b: crate::b::helper"), "{text}");
    }
}
