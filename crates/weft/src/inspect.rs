//! `weft inspect` and `weft compose`: what a component or a workload's link graph looks like.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;
use weft_inspect::{ComponentInfo, PlanComponent, Provider};
use weft_manifest::Manifest;

/// Whether `path` names a manifest (by extension) rather than a Wasm file.
pub fn is_manifest(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "yaml" | "yml" | "json"))
}

/// Loads exactly one manifest from `path`.
pub fn load_one(path: &Path) -> anyhow::Result<Manifest> {
    let mut list = weft_manifest::load_file(path).map_err(|e| anyhow::anyhow!("{e}"))?;
    match list.len() {
        1 => Ok(list.remove(0)),
        n => anyhow::bail!(
            "{}: holds {n} workloads; this command takes a file with one",
            path.display()
        ),
    }
}

fn human_size(bytes: usize) -> String {
    if bytes >= 1 << 20 {
        format!(
            "{:.1} MiB ({bytes} bytes)",
            bytes as f64 / (1u64 << 20) as f64
        )
    } else if bytes >= 1 << 10 {
        format!("{:.1} KiB ({bytes} bytes)", bytes as f64 / 1024.0)
    } else {
        format!("{bytes} bytes")
    }
}

/// The text `weft inspect FILE` prints for one Wasm binary.
pub fn render_component(file: &Path, info: &ComponentInfo) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "file:     {}", file.display());
    let _ = writeln!(out, "kind:     {}", info.kind);
    if matches!(info.kind, weft_inspect::WasmKind::Component) {
        let _ = write!(out, "{}", render_worlds(&info.export_names()));
    }
    let _ = writeln!(out, "size:     {}", human_size(info.size));
    if info.producers.is_empty() {
        let _ = writeln!(out, "producers: none recorded");
    } else {
        let _ = writeln!(out, "producers:");
        for p in &info.producers {
            let _ = writeln!(out, "  {}: {} {}", p.field, p.name, p.version);
        }
    }
    for (title, items) in [("imports", &info.imports), ("exports", &info.exports)] {
        let _ = writeln!(
            out,
            "{title}:{}",
            if items.is_empty() { " none" } else { "" }
        );
        for item in items {
            let _ = writeln!(out, "  {:<9} {}", item.kind.as_str(), item.name);
        }
    }
    if !info.wit.is_empty() {
        let _ = writeln!(out, "world:");
        for line in info.wit.lines() {
            let _ = writeln!(out, "  {line}");
        }
    }
    out
}

/// Which export `weft run` and `weft serve` use (WASI 0.3 over 0.2, an HTTP handler over an
/// incidental `run` for serve), and the runnable exports neither uses.
pub fn render_worlds(exports: &[String]) -> String {
    use weft_runtime::world::Worlds;
    let worlds = Worlds::of(exports.iter().map(String::as_str));
    let mut out = String::new();
    for (runner, chosen) in [("weft run", &worlds.run), ("weft serve", &worlds.serve)] {
        match chosen {
            Some((kind, name)) => {
                let _ = writeln!(out, "{runner:<10} {name} ({kind})");
            }
            None => {
                let _ = writeln!(out, "{runner:<10} nothing to {}", &runner[5..]);
            }
        }
    }
    if !worlds.unused.is_empty() {
        let _ = writeln!(
            out,
            "not used:  {} (a newer or more fitting export is preferred)",
            worlds.unused.join(", ")
        );
    }
    out
}

fn host_label(import: &str) -> String {
    let (base, _) = weft_inspect::split_version(import);
    let pkg = base.split('/').next().unwrap_or(base);
    let plugins = weft_runtime::plugins::registry::<weft_runtime::state::HostState>();
    if plugins.iter().any(|p| p.package() == pkg) {
        format!("host plugin {pkg}")
    } else if pkg == "wasi:http" {
        "host (wasi:http grant)".into()
    } else {
        format!("host ({pkg})")
    }
}

/// The text `weft inspect MANIFEST` prints: each component, who satisfies each import, the
/// instantiation order and whether the workload will be composed.
pub fn render_manifest(manifest: &Manifest) -> anyhow::Result<String> {
    let base_dir = manifest.base_dir();
    let mut out = String::new();
    let spec = &manifest.spec;
    let _ = writeln!(
        out,
        "workload: {}/{} ({} component{}, compose: {})",
        manifest.metadata.namespace,
        manifest.metadata.name,
        spec.components.len(),
        if spec.components.len() == 1 { "" } else { "s" },
        spec.compose.as_str()
    );
    let mut names = Vec::new();
    let mut bytes = Vec::new();
    let mut parts = Vec::new();
    let mut infos = Vec::new();
    for c in &spec.components {
        let path = weft_manifest::resolve_image(&c.image, &base_dir)
            .map_err(|e| anyhow::anyhow!("component `{}`: image `{}`: {e}", c.name, c.image))?;
        let b = weft_runtime::load::read_wasm(&path)?;
        let info = weft_inspect::inspect(&b)
            .with_context(|| format!("component `{}` ({})", c.name, path.display()))?;
        parts.push(PlanComponent {
            name: c.name.clone(),
            imports: info.import_names(),
            exports: info.export_names(),
        });
        names.push(c.name.clone());
        bytes.push(b);
        infos.push((path, info));
    }
    let plan_service =
        weft_runtime::link::service_from_image(manifest).map_err(|e| anyhow::anyhow!("{e}"))?;
    if let Some(service) = &spec.service {
        let _ = writeln!(
            out,
            "service: {} (long-lived wasi:cli/run, started first; reached over the workload's \
             virtual loopback, and through the interfaces it exports: see docs/service.md)",
            service.name
        );
        if let Some(ps) = &plan_service {
            for e in ps.offered() {
                let _ = writeln!(out, "  exports for components: {e}");
            }
        }
        if service.serve_http {
            let _ = writeln!(
                out,
                "  front door: the service's wasi:http/handler@0.3 serves the workload's HTTP \
                 route (serveHttp)"
            );
        }
    }
    let plan = match weft_runtime::link::plan_manifest(manifest, &parts, plan_service.as_ref()) {
        Ok(plan) => plan,
        Err(e) => {
            for (i, (path, info)) in infos.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "component {} ({}, {})",
                    names[i],
                    path.display(),
                    human_size(info.size)
                );
            }
            let _ = writeln!(out, "links: REFUSED: {e}");
            return Ok(out);
        }
    };
    for (i, (path, info)) in infos.iter().enumerate() {
        let _ = writeln!(
            out,
            "component {} ({}, {})",
            names[i],
            path.display(),
            human_size(info.size)
        );
        let _ = writeln!(
            out,
            "  imports:{}",
            if plan.resolutions[i].is_empty() {
                " none"
            } else {
                ""
            }
        );
        for r in &plan.resolutions[i] {
            let from = match &r.provider {
                Provider::Component { index, export } => format!(
                    "component {}{}{}",
                    names[*index],
                    if *export != r.import {
                        format!(" ({export})")
                    } else {
                        String::new()
                    },
                    if r.explicit { " [links]" } else { "" }
                ),
                Provider::Service { export } => format!(
                    "service {}{}{}",
                    plan_service
                        .as_ref()
                        .map(|s| s.name.as_str())
                        .unwrap_or_default(),
                    if *export != r.import {
                        format!(" ({export})")
                    } else {
                        String::new()
                    },
                    if r.explicit { " [links]" } else { "" }
                ),
                Provider::Host => host_label(&r.import),
            };
            let _ = writeln!(out, "    {:<44} <- {from}", r.import);
        }
        let _ = writeln!(
            out,
            "  exports:{}",
            if info.exports.is_empty() { " none" } else { "" }
        );
        for e in &info.exports {
            let _ = writeln!(out, "    {}", e.name);
        }
    }
    let order: Vec<&str> = plan.order.iter().map(|&i| names[i].as_str()).collect();
    let _ = writeln!(out, "instantiation order: {}", order.join(", "));
    for group in plan.groups() {
        if group.len() < 2 {
            continue;
        }
        let Some(&root) = group.iter().find(|&&i| !plan.is_consumed(i)) else {
            continue;
        };
        let members: Vec<&str> = group.iter().map(|&i| names[i].as_str()).collect();
        let verdict = match spec.compose {
            weft_manifest::Compose::Never => "linked at run time (compose: never)".to_string(),
            mode => match weft_runtime::compose::compose_bytes(&names, &bytes, &plan, root) {
                Ok(b) => format!("composed into one component ({})", human_size(b.len())),
                Err(e) if mode == weft_manifest::Compose::Always => {
                    format!("DEPLOYMENT FAILS (compose: always): {e}")
                }
                Err(e) => format!("linked at run time (composition failed: {e})"),
            },
        };
        let _ = writeln!(
            out,
            "group {} (root {}): {verdict}",
            members.join(" + "),
            names[root]
        );
    }
    let groups = plan.groups();
    for (i, name) in names.iter().enumerate() {
        if groups.iter().any(|g| g.len() == 1 && g[0] == i) {
            let _ = writeln!(out, "component {name} links to no other component");
        }
    }
    Ok(out)
}
