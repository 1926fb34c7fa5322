//! `weft push` and `weft pull`, and the registry options `weft up` takes
//! (docs/distribution.md).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use weft_oci::{PullOptions, Puller, Reference};

/// How this process talks to OCI registries.
#[derive(Args, Debug, Clone)]
pub struct RegistryArgs {
    /// A registry (`HOST[:PORT]`) spoken to over plain HTTP although it is not on loopback
    /// (repeatable; also `WEFT_INSECURE_REGISTRIES`, comma-separated). Loopback registries
    /// always use plain HTTP; every other one HTTPS.
    #[arg(long = "insecure-registry", value_name = "HOST[:PORT]")]
    insecure_registries: Vec<String>,
    /// Largest Wasm layer accepted from a registry (e.g. 256M).
    #[arg(long, default_value = "256M", value_parser = weft_runtime::wasi::parse_size)]
    max_layer_size: u64,
    /// Bound on one whole pull or push from a registry.
    #[arg(long, default_value = "60s", value_parser = crate::parse_duration)]
    pull_timeout: Duration,
}

impl RegistryArgs {
    /// The puller these options describe: the store in `store_dir` (a host's data dir) or
    /// the default (`$WEFT_CACHE_DIR/oci`), auth from the environment or the Docker config.
    pub fn puller(&self, progress: bool, store_dir: Option<PathBuf>) -> Puller {
        let mut options = PullOptions {
            max_layer_bytes: self.max_layer_size,
            timeout: self.pull_timeout,
            progress,
            ..PullOptions::default()
        };
        options
            .insecure_registries
            .extend(self.insecure_registries.iter().cloned());
        if let Some(dir) = store_dir {
            options.store_dir = dir;
        }
        Puller::new(options)
    }
}

#[derive(Args, Debug)]
pub struct PushArgs {
    #[command(flatten)]
    registry: RegistryArgs,
    /// The component (or core module) to push.
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// Where: `oci://REGISTRY/REPOSITORY:TAG` (the `oci://` may be left out).
    #[arg(value_name = "REFERENCE")]
    reference: String,
}

#[derive(Args, Debug)]
pub struct PullArgs {
    #[command(flatten)]
    registry: RegistryArgs,
    /// What: `oci://REGISTRY/REPOSITORY:TAG` or `...@sha256:HEX` (the `oci://` may be left out).
    #[arg(value_name = "REFERENCE")]
    reference: String,
    /// Also write the component to this file.
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
}

fn reference(arg: &str) -> anyhow::Result<Reference> {
    Reference::parse_lenient(arg)
        .map_err(|e| anyhow::anyhow!("REFERENCE `{arg}`: {e} (hint: {})", e.hint()))
}

pub fn cmd_push(args: PushArgs) -> anyhow::Result<i32> {
    let reference = reference(&args.reference)?;
    if reference.tag().is_none() {
        anyhow::bail!(
            "REFERENCE `{}`: a push needs a tag (hint: `oci://{}:1.0`)",
            args.reference,
            reference.bare()
        );
    }
    let wasm = std::fs::read(&args.file)
        .with_context(|| format!("FILE {}: cannot read it", args.file.display()))?;
    let puller = args.registry.puller(true, None);
    let rt = crate::runtime()?;
    let pushed = rt
        .block_on(puller.push(&wasm, &reference))
        .with_context(|| format!("cannot push {}", args.file.display()))?;
    println!("Pushed {} ({} bytes)", pushed.reference, pushed.size);
    println!("  manifest {}", pushed.manifest_digest);
    println!("  wasm     {}", pushed.layer_digest);
    println!("Deploy it pinned: `image: {}`", pushed.reference);
    Ok(0)
}

pub fn cmd_pull(args: PullArgs) -> anyhow::Result<i32> {
    let reference = reference(&args.reference)?;
    let puller = args.registry.puller(true, None);
    let rt = crate::runtime()?;
    let pulled = rt.block_on(puller.pull(&reference))?;
    println!(
        "{} {} ({} bytes){}",
        if pulled.from_store { "Found" } else { "Pulled" },
        pulled.reference,
        pulled.size,
        if pulled.from_store {
            ", from the store"
        } else {
            ""
        }
    );
    println!(
        "  wasm {} at {}",
        pulled.layer_digest,
        pulled.path.display()
    );
    if let Some(out) = &args.output {
        std::fs::copy(&pulled.path, out)
            .with_context(|| format!("--output {}: cannot write it", out.display()))?;
        println!("  written to {}", out.display());
    }
    Ok(0)
}
