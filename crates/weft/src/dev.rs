//! `weft dev`: build, serve on an embedded host, rebuild and redeploy on change, and explain
//! every denied capability with the manifest lines that would grant it
//! (docs/distribution.md, "`weft dev`").

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use globset::{Glob, GlobSet, GlobSetBuilder};
use weft_host::host::Host;

use crate::project::{BuildUnit, build_units, load_for_build, run_unit};

/// Quiet time after a change before rebuilding (editors write in bursts).
const DEBOUNCE: Duration = Duration::from_millis(300);

#[derive(Args, Debug)]
pub struct DevArgs {
    #[command(flatten)]
    engine: crate::EngineArgs,
    #[command(flatten)]
    registry: crate::oci::RegistryArgs,
    /// HTTP ingress address.
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    /// The host's data directory (keyvalue files, state). Default: a temporary directory
    /// removed at exit.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// The manifest (default: ./weft.yaml).
    #[arg(value_name = "MANIFEST", default_value = "weft.yaml")]
    manifest: PathBuf,
}

/// What a changed file asks for.
struct Watch {
    manifest: PathBuf,
    units: Vec<(BuildUnit, Option<GlobSet>)>,
}

impl Watch {
    fn new(manifest: PathBuf, units: Vec<BuildUnit>) -> anyhow::Result<Watch> {
        let units = units
            .into_iter()
            .map(|u| {
                let set = if u.watch.is_empty() {
                    None
                } else {
                    let mut b = GlobSetBuilder::new();
                    for g in &u.watch {
                        b.add(Glob::new(g).with_context(|| {
                            format!("{}.build.watch: `{g}` is not a glob", u.fields.join(", "))
                        })?);
                    }
                    Some(b.build()?)
                };
                Ok((u, set))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Watch { manifest, units })
    }

    /// Whether `path` concerns the unit: under its workdir, matching its globs, or (without
    /// globs) anything but `target/`, hidden directories and the built images.
    fn concerns(unit: &BuildUnit, globs: &Option<GlobSet>, path: &Path) -> bool {
        let Ok(rel) = path.strip_prefix(&unit.workdir) else {
            return false;
        };
        if unit.images.iter().any(|i| i == path) {
            return false;
        }
        match globs {
            Some(set) => set.is_match(rel),
            None => !rel.components().any(|c| {
                let s = c.as_os_str().to_string_lossy();
                s == "target" || s.starts_with('.')
            }),
        }
    }

    /// The units to rebuild for these changed paths, and whether the manifest changed.
    fn plan(&self, changed: &HashSet<PathBuf>) -> (Vec<BuildUnit>, bool) {
        let manifest = changed.contains(&self.manifest);
        let units = self
            .units
            .iter()
            .filter(|(u, g)| manifest || changed.iter().any(|p| Self::concerns(u, g, p)))
            .map(|(u, _)| u.clone())
            .collect();
        (units, manifest)
    }
}

/// Builds `units`, one after another, stopping at the first failure (printed). Returns the
/// units not built (the failed one and those after it): they stay due for the next round.
async fn build(units: &[BuildUnit]) -> Vec<BuildUnit> {
    for (i, unit) in units.iter().enumerate() {
        let u = unit.clone();
        let result = tokio::task::spawn_blocking(move || run_unit(&u)).await;
        let err = match result {
            Ok(Ok(())) => continue,
            Ok(Err(e)) => format!("{e:#}"),
            Err(e) => format!("the build task failed: {e}"),
        };
        eprintln!("Build failed: {err}");
        return units[i..].to_vec();
    }
    Vec::new()
}

/// `a` then the units of `b` not in it (a unit is its command and workdir).
fn union(mut a: Vec<BuildUnit>, b: Vec<BuildUnit>) -> Vec<BuildUnit> {
    for u in b {
        if !a
            .iter()
            .any(|x| x.command == u.command && x.workdir == u.workdir)
        {
            a.push(u);
        }
    }
    a
}

/// The directories to watch: the manifest's, and each build workdir outside it.
fn roots(manifest: &Path, watch: &Watch) -> Vec<PathBuf> {
    let mut roots: Vec<PathBuf> =
        vec![manifest.parent().map(Path::to_path_buf).unwrap_or_default()];
    for (u, _) in &watch.units {
        if !roots.iter().any(|r| u.workdir.starts_with(r)) {
            roots.push(u.workdir.clone());
        }
    }
    roots
}

/// Deploys the manifest file; prints the outcome. The host swaps a new version in only once
/// it is compiled, so a failed deploy leaves the old version serving.
async fn deploy(host: &Host, path: &Path, addr: SocketAddr) -> Vec<String> {
    let started = Instant::now();
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("Deploy failed: {}: {e}", path.display());
            return Vec::new();
        }
    };
    match host.apply(path, &text).await {
        Ok(list) => {
            let mut names = Vec::new();
            for w in list {
                let name = w["name"].as_str().unwrap_or("?").to_string();
                eprintln!(
                    "Deployed {name} (version {}) in {} ms",
                    w["version"],
                    started.elapsed().as_millis()
                );
                for r in w["routes"].as_array().into_iter().flatten() {
                    let host = r["host"].as_str().unwrap_or("localhost");
                    let path = r["path"].as_str().unwrap_or("/");
                    eprintln!("  http://{host}:{}{path}", addr.port());
                }
                names.push(name);
            }
            names
        }
        Err(e) => {
            eprintln!("Deploy failed (the running version, if any, keeps serving): {e}");
            Vec::new()
        }
    }
}

/// `text` safe for a terminal: guest-chosen names and output keep their line breaks and tabs,
/// other control characters (escape sequences) are shown escaped.
fn printable(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() && c != '\n' && c != '\t' {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// The manifests `weft dev` runs, as last loaded: the denial hints are worked out against them.
type Current = Arc<std::sync::Mutex<Vec<weft_manifest::Manifest>>>;

/// Prints each workload's guest output and, once per component and request, every denied
/// capability with the manifest lines that would grant it (`weft_manifest::grant::suggest`).
/// Nothing is granted: the developer edits the manifest, and `weft dev` redeploys it.
fn follow(host: &Arc<Host>, name: &str, followed: &mut HashSet<String>, current: &Current) {
    if !followed.insert(name.to_string()) {
        return;
    }
    let Ok(logs) = host.logs(name) else { return };
    let mut rx = logs.subscribe();
    let workload = name.to_string();
    tokio::spawn(async move {
        loop {
            match rx.recv().await {
                // A socket denial's log line: printed below with its grant instead.
                Ok(line)
                    if line.stream == "warn"
                        && line.message.starts_with("wasi:sockets ")
                        && line.message.contains(" denied") => {}
                Ok(line) => eprintln!(
                    "[{workload}/{}] {}",
                    printable(&line.component),
                    printable(&line.message)
                ),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    eprintln!("[{workload}] ({n} log lines skipped)")
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            }
        }
    });
    let mut denials = logs.subscribe_denials();
    let earlier = logs.denials();
    let workload = name.to_string();
    let current = current.clone();
    tokio::spawn(async move {
        let explain = |d: &weft_runtime::logs::Denied| {
            let manifests = current.lock().unwrap_or_else(|e| e.into_inner());
            match manifests.iter().find(|m| m.metadata.name == workload) {
                Some(m) => eprintln!(
                    "Denied [{workload}] {}\n  (nothing was granted; edit the manifest and weft dev redeploys)",
                    printable(
                        &weft_manifest::grant::suggest(&d.request, &d.component, m).to_string()
                    )
                ),
                None => eprintln!("Denied [{workload}/{}] {}", d.component, d.request),
            }
        };
        for d in &earlier {
            explain(d);
        }
        loop {
            match denials.recv().await {
                Ok(d) => explain(&d),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            }
        }
    });
}

pub fn cmd_dev(args: DevArgs) -> anyhow::Result<i32> {
    // The default `warn` would repeat what `weft dev` prints itself (denials with their
    // grants, refused deploys): only errors, unless asked (`--log`, WEFT_LOG).
    crate::init_logging(if args.engine.log == "warn" {
        "error"
    } else {
        &args.engine.log
    });
    let (path, _, manifests) = load_for_build(&args.manifest)?;
    let units = build_units(&manifests);
    let current: Current = Arc::new(std::sync::Mutex::new(manifests));
    let mut watch = Watch::new(path.clone(), units.clone())?;
    let temp;
    let data_dir = match &args.data_dir {
        Some(d) => d.clone(),
        None => {
            temp = tempfile::Builder::new()
                .prefix("weft-dev-")
                .tempdir()
                .context("cannot create a temporary data dir (hint: give --data-dir)")?;
            temp.path().to_path_buf()
        }
    };
    let (engine, cache) = crate::build_engine(&args.engine, None)?;
    let rt = crate::runtime()?;
    rt.block_on(async move {
        let host = Host::open_with_defaults(
            engine,
            cache,
            &data_dir,
            weft_runtime::workload::WorkloadDefaults::default(),
        )?;
        host.set_puller(Arc::new(
            args.registry.puller(true, Some(data_dir.join("oci"))),
        ));
        let listener = weft_host::server::bind(args.addr)
            .with_context(|| format!("cannot listen on {} (--addr)", args.addr))?;
        let addr = listener.local_addr()?;
        let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
        let mut server_stop = stop_rx.clone();
        let server = tokio::spawn(weft_host::server::serve_with(
            listener,
            weft_host::ingress::Ingress(host.clone()),
            weft_host::server::ServerLimits {
                max_connections: weft_host::server::DEFAULT_MAX_CONNECTIONS,
                header_read_timeout: Duration::from_secs(10),
            },
            async move {
                let _ = server_stop.wait_for(|v| *v).await;
            },
        ));

        // Watch first: an edit made during the first build, or right after the URL is
        // printed, is not lost. File events go from notify's thread into this task.
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<PathBuf>();
        let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            if let Ok(event) = res
                && !matches!(event.kind, notify::EventKind::Access(_))
            {
                for p in event.paths {
                    let _ = tx.send(p);
                }
            }
        })
        .context("cannot watch files")?;
        let mut watched = roots(&path, &watch);
        for r in &watched {
            notify::Watcher::watch(&mut watcher, r, notify::RecursiveMode::Recursive)
                .with_context(|| format!("cannot watch {}", r.display()))?;
        }

        let mut followed = HashSet::new();
        // Units whose last build failed or did not run: rebuilt with the next change.
        let mut dirty = build(&units).await;
        if dirty.is_empty() {
            for name in deploy(&host, &path, addr).await {
                follow(&host, &name, &mut followed, &current);
            }
        } else {
            eprintln!("Fix the build; weft dev rebuilds on the next change.");
        }
        eprintln!("Serving HTTP on http://{addr}/");
        eprintln!(
            "Watching {} for changes (Ctrl-C stops)",
            path.parent().unwrap_or(Path::new(".")).display()
        );

        let signal = weft_host::server::shutdown_signal();
        tokio::pin!(signal);
        loop {
            let first = tokio::select! {
                _ = &mut signal => break,
                _ = stop_rx.changed() => break,
                p = rx.recv() => match p { Some(p) => p, None => break },
            };
            let mut changed: HashSet<PathBuf> = HashSet::from([first]);
            // Debounce: collect until the files are quiet.
            while let Ok(Some(p)) = tokio::time::timeout(DEBOUNCE, rx.recv()).await {
                changed.insert(p);
            }
            let (todo, manifest_changed) = watch.plan(&changed);
            if todo.is_empty() && !manifest_changed {
                continue;
            }
            let dirty_before = std::mem::take(&mut dirty);
            if manifest_changed {
                match load_for_build(&path) {
                    Ok((_, _, m)) => match Watch::new(path.clone(), build_units(&m)) {
                        Ok(w) => {
                            watch = w;
                            *current.lock().unwrap_or_else(|e| e.into_inner()) = m;
                            // A workdir the edited manifest added outside the watched ones.
                            for r in roots(&path, &watch) {
                                if !watched.iter().any(|w| r.starts_with(w)) {
                                    match notify::Watcher::watch(
                                        &mut watcher,
                                        &r,
                                        notify::RecursiveMode::Recursive,
                                    ) {
                                        Ok(()) => watched.push(r),
                                        Err(e) => eprintln!("cannot watch {}: {e}", r.display()),
                                    }
                                }
                            }
                        }
                        Err(e) => {
                            eprintln!("{e:#}");
                            dirty = dirty_before;
                            continue;
                        }
                    },
                    Err(e) => {
                        eprintln!("{e:#} (the running version keeps serving)");
                        dirty = dirty_before;
                        continue;
                    }
                }
            }
            let todo = if manifest_changed {
                watch.units.iter().map(|(u, _)| u.clone()).collect()
            } else {
                union(dirty_before, todo)
            };
            eprintln!(
                "Change in {}; {}",
                changed
                    .iter()
                    .take(3)
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                if todo.is_empty() {
                    "redeploying"
                } else {
                    "rebuilding"
                }
            );
            dirty = build(&todo).await;
            if !dirty.is_empty() {
                eprintln!("The running version keeps serving.");
                continue;
            }
            for name in deploy(&host, &path, addr).await {
                follow(&host, &name, &mut followed, &current);
            }
        }
        let _ = stop_tx.send(true);
        let _ = server.await;
        drop(watcher);
        anyhow::Ok(())
    })?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::printable;
    use proptest::prelude::*;

    proptest! {
        /// Nothing a guest names reaches the terminal as a control sequence.
        #[test]
        fn printable_leaves_no_control_characters_but_newlines_and_tabs(s in "\\PC*|[\\x00-\\x1f\\x7f-\\u{9f}a]{0,40}") {
            let p = printable(&s);
            prop_assert!(!p.chars().any(|c| c.is_control() && c != '\n' && c != '\t'), "{p:?}");
            if !s.chars().any(char::is_control) {
                prop_assert_eq!(p, s);
            }
        }
    }
}
