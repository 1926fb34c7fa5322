//! What a component is, judged from the names of its exports and imports: a CLI command
//! (P2 or P3), an HTTP handler (P2 or P3), or a library of functions. Pure functions over
//! names, so they are cheap to test and to fuzz; plus the runners' shared readers of a
//! component's type: [`explain_unsatisfied`] (imports no runner provides) and [`find_export`]
//! (the function a `--invoke` names).

use std::fmt;

use wasmtime::Engine;
use wasmtime::component::types::{ComponentFunc, ComponentItem};
use wasmtime::component::{Component, ComponentExportIndex};

/// The kind of world a component implements, as far as Weft's runners care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorldKind {
    /// Exports `wasi:cli/run@0.2.x` (`wasi:cli/command`).
    CliP2,
    /// Exports `wasi:cli/run@0.3.x`.
    CliP3,
    /// Exports `wasi:http/incoming-handler@0.2.x` (`wasi:http/proxy`).
    HttpP2,
    /// Exports `wasi:http/handler@0.3.x` (`wasi:http/service`).
    HttpP3,
    /// None of the above: a component exporting plain functions or interfaces.
    Library,
}

impl WorldKind {
    /// A human name for the world.
    pub fn describe(self) -> &'static str {
        match self {
            WorldKind::CliP2 => "a wasi:cli/command component (WASI 0.2)",
            WorldKind::CliP3 => "a wasi:cli/command component (WASI 0.3)",
            WorldKind::HttpP2 => "a wasi:http/proxy component (WASI 0.2)",
            WorldKind::HttpP3 => "a wasi:http/service component (WASI 0.3)",
            WorldKind::Library => "a library component (no wasi:cli/run or wasi:http export)",
        }
    }

    /// The weft command that runs this kind of component.
    pub fn fitting_command(self) -> &'static str {
        match self {
            WorldKind::CliP2 | WorldKind::CliP3 => "`weft run FILE [ARGS...]`",
            WorldKind::HttpP2 | WorldKind::HttpP3 => "`weft serve FILE`",
            WorldKind::Library => "`weft run --invoke 'func(args)' FILE`",
        }
    }

    pub fn is_http(self) -> bool {
        matches!(self, WorldKind::HttpP2 | WorldKind::HttpP3)
    }

    pub fn is_cli(self) -> bool {
        matches!(self, WorldKind::CliP2 | WorldKind::CliP3)
    }
}

impl fmt::Display for WorldKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe())
    }
}

/// Splits `ns:pkg/iface@version` into (`ns:pkg/iface`, `version`).
pub fn split_version(name: &str) -> (&str, Option<&str>) {
    match name.split_once('@') {
        Some((base, version)) => (base, Some(version)),
        None => (name, None),
    }
}

fn major_minor(version: Option<&str>) -> Option<(u64, u64)> {
    let v = version?;
    let mut parts = v.split(['.', '-']);
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// The world one export name stands for, if it is one a runner knows.
pub fn export_kind(name: &str) -> Option<WorldKind> {
    let (base, version) = split_version(name);
    match (base, major_minor(version)) {
        ("wasi:http/incoming-handler", Some((0, 2))) => Some(WorldKind::HttpP2),
        ("wasi:http/handler", Some((0, 3))) => Some(WorldKind::HttpP3),
        ("wasi:cli/run", Some((0, 2))) => Some(WorldKind::CliP2),
        ("wasi:cli/run", Some((0, 3))) => Some(WorldKind::CliP3),
        _ => None,
    }
}

/// What each runner picks from a component's exports, as `wasmtime run` / `wasmtime serve`
/// do with WASI 0.3 enabled: WASI 0.3 over 0.2, whatever the order of the exports.
///
/// A component may export several runnable worlds: wasi-libc's start code exports
/// `wasi:cli/run@0.2` from every binary built for wasm32-wasip2, next to the
/// `wasi:cli/run@0.3` or `wasi:http/handler@0.3` the program means. `weft run` takes the best
/// `run` export, `weft serve` the best HTTP handler; a `run` export next to a handler is
/// incidental to `serve`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Worlds {
    /// What `weft run` runs: the chosen `wasi:cli/run` export and its kind.
    pub run: Option<(WorldKind, String)>,
    /// What `weft serve` serves: the chosen HTTP handler export and its kind.
    pub serve: Option<(WorldKind, String)>,
    /// Runnable exports neither runner picks (a `run@0.2` next to a `run@0.3`, ...).
    pub unused: Vec<String>,
}

impl Worlds {
    /// Reads the runnable exports among `exports`.
    pub fn of<'a>(exports: impl IntoIterator<Item = &'a str>) -> Self {
        let mut worlds = Worlds::default();
        for name in exports {
            let Some(kind) = export_kind(name) else {
                continue;
            };
            let slot = if kind.is_http() {
                &mut worlds.serve
            } else {
                &mut worlds.run
            };
            match slot {
                // WASI 0.3 beats 0.2; between two of the same version the first one stays.
                Some((have, _)) if rank(*have) >= rank(kind) => {
                    worlds.unused.push(name.to_string());
                }
                _ => {
                    if let Some((_, replaced)) = slot.replace((kind, name.to_string())) {
                        worlds.unused.push(replaced);
                    }
                }
            }
        }
        worlds
    }

    /// The component's world as one kind: its HTTP handler if it has one, else its command,
    /// else a library.
    pub fn kind(&self) -> WorldKind {
        self.serve
            .as_ref()
            .or(self.run.as_ref())
            .map(|(kind, _)| *kind)
            .unwrap_or(WorldKind::Library)
    }

    /// What `weft run` runs, if anything.
    pub fn run_kind(&self) -> Option<WorldKind> {
        self.run.as_ref().map(|(kind, _)| *kind)
    }

    /// What `weft serve` serves, if anything.
    pub fn serve_kind(&self) -> Option<WorldKind> {
        self.serve.as_ref().map(|(kind, _)| *kind)
    }
}

/// WASI 0.3 ranks above 0.2 within the same runner.
fn rank(kind: WorldKind) -> u8 {
    match kind {
        WorldKind::CliP3 | WorldKind::HttpP3 => 2,
        WorldKind::CliP2 | WorldKind::HttpP2 => 1,
        WorldKind::Library => 0,
    }
}

/// Classifies a component from its export names (see [`Worlds`]): an HTTP handler wins over
/// a `run` export, and WASI 0.3 over 0.2.
pub fn classify<'a>(exports: impl IntoIterator<Item = &'a str>) -> WorldKind {
    Worlds::of(exports).kind()
}

/// Names of a component's imports and exports.
#[derive(Debug, Clone, Default)]
pub struct Interfaces {
    pub imports: Vec<String>,
    pub exports: Vec<String>,
}

/// Reads a component's import and export names from its type.
pub fn interfaces(engine: &Engine, component: &Component) -> Interfaces {
    let ty = component.component_type();
    Interfaces {
        imports: ty.imports(engine).map(|(n, _)| n.to_string()).collect(),
        exports: ty.exports(engine).map(|(n, _)| n.to_string()).collect(),
    }
}

/// Which imports are not covered by `provided` package prefixes (`wasi:cli`, `wasi:http/types`…).
/// A prefix matches an import when the import's unversioned name equals it or continues it
/// with `/`.
pub fn unsatisfied<'a>(imports: &'a [String], provided: &[&str]) -> Vec<&'a str> {
    imports
        .iter()
        .map(String::as_str)
        .filter(|import| {
            let (base, _) = split_version(import);
            !provided.iter().any(|p| {
                base == *p
                    || (base.len() > p.len()
                        && base.starts_with(p)
                        && base.as_bytes()[p.len()] == b'/')
            })
        })
        .collect()
}

/// Explains imports that `provides` does not cover, or `None` when all are covered.
pub fn explain_unsatisfied(imports: &[String], provides: &[&str], runner: &str) -> Option<String> {
    let missing = unsatisfied(imports, provides);
    if missing.is_empty() {
        return None;
    }
    let list = missing
        .iter()
        .map(|m| format!("  - {m}"))
        .collect::<Vec<_>>()
        .join("\n");
    Some(format!(
        "the component imports {} that {runner} does not provide:\n{list}\n{runner} provides: {}",
        if missing.len() == 1 {
            "an interface"
        } else {
            "interfaces"
        },
        provides.join(", ")
    ))
}

/// Finds the export a `--invoke` name refers to: `func`, `iface.func`, `ns:pkg/iface.func`
/// or `ns:pkg/iface.func@version` (versions compared on the interface name).
pub fn find_export(
    engine: &Engine,
    component: &Component,
    name: &str,
) -> Result<(ComponentExportIndex, ComponentFunc), String> {
    let ty = component.component_type();
    // Split off a trailing @version and the function name.
    let (base, version) = match name.rsplit_once('@') {
        Some((b, v)) if !v.contains('/') => (b, Some(v)),
        _ => (name, None),
    };
    let (iface, func) = match base.rsplit_once('.') {
        Some((i, f)) if i.contains(':') || i.contains('/') => (Some(i), f),
        _ => (None, base),
    };

    if iface.is_none()
        && let Some((ComponentItem::ComponentFunc(f), idx)) = component.get_export(None, func)
    {
        return Ok((idx, f));
    }

    let mut found = Vec::new();
    for (inst_name, item) in ty.exports(engine) {
        let ComponentItem::ComponentInstance(inst) = item.ty else {
            continue;
        };
        let (inst_base, inst_version) = split_version(inst_name);
        if let Some(i) = iface {
            if inst_base != i {
                continue;
            }
            if let (Some(v), Some(iv)) = (version, inst_version)
                && v != iv
            {
                continue;
            }
        }
        for (leaf, item) in inst.exports(engine) {
            if leaf != func {
                continue;
            }
            if let ComponentItem::ComponentFunc(f) = item.ty
                && let Some((_, inst_idx)) = component.get_export(None, inst_name)
                && let Some((_, idx)) = component.get_export(Some(&inst_idx), leaf)
            {
                found.push((idx, f, inst_name.to_string()));
            }
        }
    }
    match found.len() {
        0 => {
            let mut available = Vec::new();
            for (n, item) in ty.exports(engine) {
                match item.ty {
                    ComponentItem::ComponentFunc(_) => available.push(n.to_string()),
                    ComponentItem::ComponentInstance(inst) => {
                        for (leaf, it) in inst.exports(engine) {
                            if matches!(it.ty, ComponentItem::ComponentFunc(_)) {
                                available.push(format!("{n}.{leaf}"));
                            }
                        }
                    }
                    _ => {}
                }
            }
            Err(format!(
                "the component exports no function `{name}`; exported functions: {}",
                if available.is_empty() {
                    "none".into()
                } else {
                    available.join(", ")
                }
            ))
        }
        1 => {
            let (idx, f, _) = found.remove(0);
            Ok((idx, f))
        }
        _ => Err(format!(
            "`{name}` is ambiguous; name the interface: {}",
            found
                .iter()
                .map(|(_, _, i)| format!("`{i}.{func}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn classifies_known_worlds() {
        assert_eq!(classify(["wasi:cli/run@0.2.6"]), WorldKind::CliP2);
        assert_eq!(
            classify(["wasi:cli/run@0.3.0-rc-2025-09-16"]),
            WorldKind::CliP3
        );
        assert_eq!(
            classify(["wasi:http/incoming-handler@0.2.0"]),
            WorldKind::HttpP2
        );
        assert_eq!(
            classify(["wasi:http/handler@0.3.0-rc-2025-09-16"]),
            WorldKind::HttpP3
        );
        assert_eq!(
            classify(["wasi:cli/run@0.2.0", "wasi:http/incoming-handler@0.2.3"]),
            WorldKind::HttpP2
        );
        assert_eq!(
            classify(["add", "example:calc/ops@1.0.0"]),
            WorldKind::Library
        );
        assert_eq!(classify(["wasi:cli/run"]), WorldKind::Library);
        assert_eq!(classify(["wasi:cli/run@1.0.0"]), WorldKind::Library);
    }

    /// Runnable export names of every kind a runner knows, in several versions.
    const RUNNABLE: &[&str] = &[
        "wasi:cli/run@0.2.0",
        "wasi:cli/run@0.2.6",
        "wasi:cli/run@0.3.0",
        "wasi:cli/run@0.3.0-rc-2025-09-16",
        "wasi:http/incoming-handler@0.2.0",
        "wasi:http/incoming-handler@0.2.4",
        "wasi:http/handler@0.3.0",
        "wasi:http/handler@0.3.0-rc-2025-09-16",
    ];

    #[test]
    fn the_suite_components_pick_wasi_0_3() {
        // wasi-testsuite's P3 commands: wasi-libc's run@0.2.0 (a stub that traps) and run@0.3.0.
        let w = Worlds::of(["wasi:cli/run@0.2.0", "wasi:cli/run@0.3.0"]);
        assert_eq!(
            w.run,
            Some((WorldKind::CliP3, "wasi:cli/run@0.3.0".to_string()))
        );
        assert_eq!(w.unused, vec!["wasi:cli/run@0.2.0".to_string()]);
        // The other order too.
        let w = Worlds::of(["wasi:cli/run@0.3.0", "wasi:cli/run@0.2.0"]);
        assert_eq!(w.run_kind(), Some(WorldKind::CliP3));
        // Its HTTP services: the handler is served, the run@0.2.0 stub is incidental.
        let w = Worlds::of(["wasi:cli/run@0.2.0", "wasi:http/handler@0.3.0"]);
        assert_eq!(w.kind(), WorldKind::HttpP3);
        assert_eq!(w.serve_kind(), Some(WorldKind::HttpP3));
        assert_eq!(w.run_kind(), Some(WorldKind::CliP2));
        // Both HTTP versions: 0.3 is served.
        let w = Worlds::of([
            "wasi:http/incoming-handler@0.2.0",
            "wasi:http/handler@0.3.0",
        ]);
        assert_eq!(w.serve_kind(), Some(WorldKind::HttpP3));
        assert_eq!(
            w.unused,
            vec!["wasi:http/incoming-handler@0.2.0".to_string()]
        );
    }

    #[test]
    fn unsatisfied_names_missing_imports() {
        let imports = vec![
            "wasi:cli/stdout@0.2.6".to_string(),
            "wasi:keyvalue/store@0.2.0-draft".to_string(),
            "wasi:clockwork/x@1.0.0".to_string(),
        ];
        assert_eq!(
            unsatisfied(&imports, &["wasi:cli", "wasi:clocks"]),
            vec!["wasi:keyvalue/store@0.2.0-draft", "wasi:clockwork/x@1.0.0"]
        );
    }

    proptest! {
        #[test]
        fn classify_never_panics(names in prop::collection::vec(".{0,40}", 0..6)) {
            let _ = classify(names.iter().map(String::as_str));
        }

        #[test]
        fn http_export_always_wins(before in prop::collection::vec("[a-z:/@.0-9]{0,20}", 0..4), after in prop::collection::vec("[a-z:/@.0-9]{0,20}", 0..4)) {
            let mut names: Vec<String> = before;
            names.push("wasi:http/incoming-handler@0.2.4".into());
            names.extend(after);
            prop_assert!(classify(names.iter().map(String::as_str)).is_http());
        }

        /// Generated export sets (runnable names of every kind and version, noise, in any
        /// order): the choice matches a reference written as plain rules, does not depend on
        /// the order, and accounts for every runnable export.
        #[test]
        fn choice_follows_the_rules_in_any_order(
            picks in prop::collection::vec(0usize..RUNNABLE.len() + 3, 0..8),
            noise in prop::collection::vec("[a-z]{1,6}:[a-z]{1,6}/[a-z]{1,6}@0\\.[0-9]\\.[0-9]", 0..3),
            seed in any::<u64>(),
        ) {
            let names: Vec<String> = picks
                .iter()
                .filter_map(|&i| RUNNABLE.get(i).map(|n| n.to_string()))
                .chain(noise)
                .collect();
            let has = |base: &str, minor: &str| {
                names.iter().any(|n| n.starts_with(&format!("{base}@0.{minor}")))
            };
            let want_serve = if has("wasi:http/handler", "3") {
                Some(WorldKind::HttpP3)
            } else if has("wasi:http/incoming-handler", "2") {
                Some(WorldKind::HttpP2)
            } else {
                None
            };
            let want_run = if has("wasi:cli/run", "3") {
                Some(WorldKind::CliP3)
            } else if has("wasi:cli/run", "2") {
                Some(WorldKind::CliP2)
            } else {
                None
            };
            let want_kind = want_serve.or(want_run).unwrap_or(WorldKind::Library);

            // A deterministic shuffle from the seed.
            let mut shuffled = names.clone();
            let mut state = seed | 1;
            for i in (1..shuffled.len()).rev() {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                shuffled.swap(i, (state % (i as u64 + 1)) as usize);
            }
            for order in [&names, &shuffled] {
                let worlds = Worlds::of(order.iter().map(String::as_str));
                prop_assert_eq!(worlds.serve_kind(), want_serve);
                prop_assert_eq!(worlds.run_kind(), want_run);
                prop_assert_eq!(worlds.kind(), want_kind);
                prop_assert_eq!(classify(order.iter().map(String::as_str)), want_kind);
                for (kind, name) in worlds.run.iter().chain(worlds.serve.iter()) {
                    prop_assert!(order.contains(name), "{name} is not an export");
                    prop_assert_eq!(export_kind(name), Some(*kind));
                }
                let runnable = order.iter().filter(|n| export_kind(n).is_some()).count();
                let chosen = usize::from(worlds.run.is_some()) + usize::from(worlds.serve.is_some());
                prop_assert_eq!(worlds.unused.len() + chosen, runnable);
            }
        }

        #[test]
        fn provided_prefix_covers_its_interfaces(pkg in "[a-z]{1,8}:[a-z]{1,8}", iface in "[a-z]{1,8}") {
            let imports = vec![format!("{pkg}/{iface}@0.2.0")];
            prop_assert!(unsatisfied(&imports, &[pkg.as_str()]).is_empty());
            let longer = format!("{pkg}x");
            prop_assert_eq!(unsatisfied(&imports, &[longer.as_str()]).len(), 1);
        }
    }
}
