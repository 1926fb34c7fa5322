//! `weft new` (project templates embedded in the binary) and `weft build` (each component's
//! `build` section), docs/distribution.md.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use clap::Args;
use include_dir::{Dir, include_dir};
use weft_manifest::Manifest;

/// `crates/weft/templates/`: one directory per template.
static TEMPLATES: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/templates");

#[derive(Args, Debug)]
pub struct NewArgs {
    /// List the templates and exit.
    #[arg(long)]
    list: bool,
    /// The template (see `--list`).
    #[arg(value_name = "TEMPLATE", required_unless_present = "list")]
    template: Option<String>,
    /// The project's name: lowercase letters, digits and `-`, starting with a letter (it
    /// becomes the workload, component and crate name).
    #[arg(value_name = "NAME", required_unless_present = "list")]
    name: Option<String>,
    /// The directory to create (default: `./NAME`). It must not exist or be empty.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

/// The templates: `(name, description)`, sorted by name.
pub fn templates() -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = TEMPLATES
        .dirs()
        .filter_map(|d| {
            let name = d.path().file_name()?.to_str()?.to_string();
            let description = d
                .get_file(d.path().join("template.toml"))
                .and_then(|f| f.contents_utf8())
                .and_then(|t| {
                    t.lines().find_map(|l| {
                        let v = l.trim().strip_prefix("description")?.trim_start();
                        let v = v.strip_prefix('=')?.trim();
                        Some(v.trim_matches('"').to_string())
                    })
                })
                .unwrap_or_default();
            Some((name, description))
        })
        .collect();
    out.sort();
    out
}

/// Whether `name` can name a project: a DNS label that is also a crate name.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = (1..=40).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-')
        && !name.contains("--")
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "NAME `{name}`: use 1-40 lowercase letters, digits and single `-`, starting with a \
             letter (hint: e.g. `hello-api`)"
        ))
    }
}

/// A template's text with the project name filled in.
fn fill(text: &str, name: &str) -> String {
    text.replace("{{name_snake}}", &name.replace('-', "_"))
        .replace("{{name}}", name)
}

/// Writes template `template` for project `name` into `dir`; returns the files written.
pub fn generate(template: &str, name: &str, dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    check_name(name).map_err(anyhow::Error::msg)?;
    let known = templates().iter().any(|(n, _)| n == template);
    let Some(root) = TEMPLATES.get_dir(template).filter(|_| known) else {
        let names: Vec<String> = templates().into_iter().map(|(n, _)| n).collect();
        let candidates: Vec<&str> = names.iter().map(String::as_str).collect();
        let hint = weft_manifest::did_you_mean(template, &candidates)
            .map(|s| format!("did you mean `{s}`? "))
            .unwrap_or_default();
        bail!(
            "TEMPLATE `{template}`: no such template ({hint}the templates: {}; `weft new --list`)",
            names.join(", ")
        );
    };
    if dir.exists()
        && std::fs::read_dir(dir)
            .with_context(|| format!("{}: cannot read it", dir.display()))?
            .next()
            .is_some()
    {
        bail!(
            "{}: exists and is not empty (hint: pick another NAME or --dir)",
            dir.display()
        );
    }
    let mut written = Vec::new();
    let mut stack = vec![root];
    while let Some(d) = stack.pop() {
        stack.extend(d.dirs());
        for f in d.files() {
            let rel = f.path().strip_prefix(root.path()).unwrap_or(f.path());
            if rel == Path::new("template.toml") {
                continue;
            }
            let target = dir.join(fill(&rel.to_string_lossy(), name));
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("cannot create {}", parent.display()))?;
            }
            let bytes = match f.contents_utf8() {
                Some(text) => fill(text, name).into_bytes(),
                None => f.contents().to_vec(),
            };
            std::fs::write(&target, bytes)
                .with_context(|| format!("cannot write {}", target.display()))?;
            written.push(target);
        }
    }
    written.sort();
    Ok(written)
}

pub fn cmd_new(args: NewArgs) -> anyhow::Result<i32> {
    if args.list {
        for (name, description) in templates() {
            println!("{name:<22} {description}");
        }
        return Ok(0);
    }
    let (Some(template), Some(name)) = (args.template, args.name) else {
        bail!("give TEMPLATE and NAME (`weft new --list` shows the templates)");
    };
    let dir = args.dir.unwrap_or_else(|| PathBuf::from(&name));
    let files = generate(&template, &name, &dir)?;
    println!(
        "Created {} from `{template}` ({} files).",
        dir.display(),
        files.len()
    );
    println!("Next:\n  cd {}\n  weft dev", dir.display());
    Ok(0)
}

/// One build command of a manifest: the components (and service) sharing it.
#[derive(Debug, Clone)]
pub struct BuildUnit {
    /// `spec.components[0]` or `spec.service`, and the names, of the units it builds.
    pub fields: Vec<String>,
    pub names: Vec<String>,
    pub command: String,
    /// Absolute.
    pub workdir: PathBuf,
    /// `build.watch`, relative to `workdir` (empty: everything but `target/` and hidden dirs).
    pub watch: Vec<String>,
    /// The images it must produce (absolute paths of file images).
    pub images: Vec<PathBuf>,
}

/// Reads a manifest without requiring its images to exist yet (they are what a build makes).
pub fn load_for_build(file: &Path) -> anyhow::Result<(PathBuf, String, Vec<Manifest>)> {
    let path = std::path::absolute(file)
        .with_context(|| format!("{}: cannot resolve the path", file.display()))?;
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "{}: cannot read the manifest (hint: run in a project made by `weft new`, or give MANIFEST)",
            file.display()
        )
    })?;
    let manifests = weft_manifest::parse_str(&text, &path).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok((path, text, manifests))
}

/// The build commands of `manifests`, in order, one per distinct `(command, workdir)`.
pub fn build_units(manifests: &[Manifest]) -> Vec<BuildUnit> {
    let mut units: Vec<BuildUnit> = Vec::new();
    for m in manifests {
        let base = std::path::absolute(m.base_dir()).unwrap_or_else(|_| m.base_dir());
        let mut all: Vec<(String, &weft_manifest::Component)> = m
            .spec
            .components
            .iter()
            .enumerate()
            .map(|(i, c)| (format!("spec.components[{i}]"), c))
            .collect();
        let service = m.spec.service.as_ref().map(|s| s.to_component());
        if let Some(s) = &service {
            all.push(("spec.service".to_string(), s));
        }
        for (field, c) in all {
            let Some(build) = &c.build else { continue };
            let workdir = match &build.workdir {
                Some(w) => base.join(w),
                None => base.clone(),
            };
            let image = weft_manifest::resolve_image(&c.image, &base).ok();
            let name = format!("{}/{}", m.metadata.name, c.name);
            if let Some(u) = units
                .iter_mut()
                .find(|u| u.command == build.command && u.workdir == workdir)
            {
                u.fields.push(field);
                u.names.push(name);
                u.watch.extend(build.watch.iter().cloned());
                u.images.extend(image);
                continue;
            }
            units.push(BuildUnit {
                fields: vec![field],
                names: vec![name],
                command: build.command.clone(),
                workdir,
                watch: build.watch.clone(),
                images: image.into_iter().collect(),
            });
        }
    }
    units
}

/// Runs one unit's command (`sh -c`, in its workdir, output to the terminal); the error names
/// the components, the command and the exit status.
pub fn run_unit(unit: &BuildUnit) -> anyhow::Result<()> {
    eprintln!(
        "Building {} in {}: {}",
        unit.names.join(", "),
        unit.workdir.display(),
        unit.command
    );
    let status = Command::new("sh")
        .arg("-c")
        .arg(&unit.command)
        .current_dir(&unit.workdir)
        .status()
        .with_context(|| {
            format!(
                "{}.build: cannot run `sh -c {}` in {}",
                unit.fields.join(", "),
                unit.command,
                unit.workdir.display()
            )
        })?;
    if !status.success() {
        bail!(
            "{} ({}).build.command `{}` failed ({status})",
            unit.names.join(", "),
            unit.fields.join(", "),
            unit.command
        );
    }
    for image in &unit.images {
        if !image.is_file() {
            bail!(
                "{}: the build succeeded but left no component at {} (hint: make `image` the \
                 file the build command writes)",
                unit.names.join(", "),
                image.display()
            );
        }
    }
    Ok(())
}

#[derive(Args, Debug)]
pub struct BuildArgs {
    /// The manifest (default: ./weft.yaml).
    #[arg(value_name = "MANIFEST", default_value = "weft.yaml")]
    manifest: PathBuf,
}

pub fn cmd_build(args: BuildArgs) -> anyhow::Result<i32> {
    let (_, _, manifests) = load_for_build(&args.manifest)?;
    let units = build_units(&manifests);
    if units.is_empty() {
        eprintln!(
            "{}: no component has a `build` section; nothing to build",
            args.manifest.display()
        );
        return Ok(0);
    }
    let started = std::time::Instant::now();
    for unit in &units {
        run_unit(unit)?;
    }
    let by: BTreeMap<_, _> = units.iter().map(|u| (u.names.join(", "), ())).collect();
    eprintln!(
        "Built {} in {:.1}s",
        by.keys().cloned().collect::<Vec<_>>().join("; "),
        started.elapsed().as_secs_f64()
    );
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn every_template_has_a_description_a_manifest_with_a_build_and_a_readme() {
        let list = templates();
        let names: Vec<&str> = list.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "http-middleware",
                "http-rust",
                "http-rust-p3",
                "kv-counter",
                "messaging-transform",
                "service"
            ]
        );
        for (name, description) in &list {
            assert!(!description.is_empty(), "{name} has no description");
            let dir = tempfile::tempdir().expect("tempdir");
            let out = dir.path().join("proj");
            let files = generate(name, "my-app", &out).expect("generate");
            assert!(out.join("README.md").is_file(), "{name}");
            assert!(!out.join("template.toml").exists(), "{name}");
            let text = std::fs::read_to_string(out.join("weft.yaml")).expect("weft.yaml");
            assert!(!text.contains("{{"), "{name}: unfilled placeholder");
            let manifests = weft_manifest::parse_str(&text, &out.join("weft.yaml"))
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(!build_units(&manifests).is_empty(), "{name}: no build");
            for f in files {
                if let Ok(t) = std::fs::read_to_string(&f) {
                    assert!(!t.contains("{{name"), "{}: unfilled", f.display());
                }
            }
        }
    }

    #[test]
    fn generate_refuses_unknown_templates_bad_names_and_non_empty_dirs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let e = generate("http-rust/src", "x", &dir.path().join("n")).expect_err("nested");
        assert!(e.to_string().contains("no such template"), "{e}");
        let e = generate("http-rsut", "x", &dir.path().join("a")).expect_err("typo");
        assert!(e.to_string().contains("did you mean `http-rust`"), "{e}");
        let e = generate("http-rust", "Bad_Name", &dir.path().join("b")).expect_err("name");
        assert!(e.to_string().contains("NAME `Bad_Name`"), "{e}");
        std::fs::write(dir.path().join("keep"), "x").expect("write");
        let e = generate("http-rust", "ok", dir.path()).expect_err("non-empty");
        assert!(e.to_string().contains("not empty"), "{e}");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("keep")).expect("kept"),
            "x"
        );
    }

    proptest! {
        /// A name `check_name` accepts fills every template into a manifest that parses.
        #[test]
        fn accepted_names_make_valid_manifests(name in "[a-z][a-z0-9-]{0,39}") {
            prop_assume!(check_name(&name).is_ok());
            let text = fill(
                TEMPLATES
                    .get_file("http-rust/weft.yaml")
                    .and_then(|f| f.contents_utf8())
                    .expect("http-rust/weft.yaml"),
                &name,
            );
            let parsed = weft_manifest::parse_str(&text, Path::new("weft.yaml"));
            prop_assert!(parsed.is_ok(), "{name}: {:?}", parsed.err().map(|e| e.to_string()));
        }

        #[test]
        fn check_name_accepts_only_dns_label_crate_names(name in "\\PC{0,45}") {
            if check_name(&name).is_ok() {
                prop_assert!(name.len() <= 40);
                prop_assert!(name.starts_with(|c: char| c.is_ascii_lowercase()));
                prop_assert!(name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'));
                prop_assert!(!name.ends_with('-') && !name.contains("--"));
            }
        }
    }
}
