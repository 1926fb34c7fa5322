//! Link-time layout of the `weft` binary, for a smaller resident set and a faster start
//! (docs/benchmarks.md, "Memory and cold start (issue 14)"):
//!
//! - `--symbol-ordering-file=link-order.txt`: the functions that run when weft starts and
//!   serves (recorded by `scripts/link-order.sh`) go first in `.text`. The kernel maps a
//!   binary's page cache in large folios (128 KiB here, on Linux 6.18 with ext4), so code
//!   scattered over 40 MiB of `.text` kept ~20 MiB resident; packed, ~3 MiB.
//! - `-z pack-relative-relocs` (DT_RELR): the 2.4 MiB table of relative relocations, read
//!   whole by the dynamic loader at every start, becomes a few KiB. Needs glibc 2.36 at run
//!   time, so it is used only when the building machine has it.
//!
//! Both only with the linker Rust uses by default on x86_64 Linux (its bundled lld), and
//! `WEFT_LINK_LAYOUT=0` turns both off. A stale ordering file is harmless: names the build
//! no longer has are skipped.

use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=link-order.txt");
    println!("cargo:rerun-if-env-changed=WEFT_LINK_LAYOUT");
    println!("cargo:rerun-if-env-changed=RUSTC_LINKER");
    println!("cargo:rerun-if-env-changed=CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER");
    if std::env::var("WEFT_LINK_LAYOUT").is_ok_and(|v| v == "0") {
        return;
    }
    let target = std::env::var("TARGET").unwrap_or_default();
    let flags = std::env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    // rustc links x86_64-unknown-linux-gnu with its self-contained lld unless told otherwise.
    let custom_linker = std::env::var_os("RUSTC_LINKER").is_some()
        || std::env::var_os("CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER").is_some()
        || flags.contains("linker");
    if target != "x86_64-unknown-linux-gnu" || custom_linker {
        return;
    }
    let order = Path::new(env!("CARGO_MANIFEST_DIR")).join("link-order.txt");
    if order.exists() {
        println!(
            "cargo:rustc-link-arg-bin=weft=-Wl,--symbol-ordering-file={}",
            order.display()
        );
        println!("cargo:rustc-link-arg-bin=weft=-Wl,--no-warn-symbol-ordering");
    }
    if host_glibc_at_least(2, 36) {
        println!("cargo:rustc-link-arg-bin=weft=-Wl,-z,pack-relative-relocs");
    }
}

/// Whether this machine's glibc (`getconf GNU_LIBC_VERSION`: "glibc 2.36") is at least
/// `major.minor`. Unknown: no.
fn host_glibc_at_least(major: u32, minor: u32) -> bool {
    let Ok(out) = Command::new("getconf").arg("GNU_LIBC_VERSION").output() else {
        return false;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let Some(version) = text.trim().strip_prefix("glibc ") else {
        return false;
    };
    let mut parts = version.split('.').map(|p| p.parse::<u32>().ok());
    match (parts.next().flatten(), parts.next().flatten()) {
        (Some(a), Some(b)) => (a, b) >= (major, minor),
        _ => false,
    }
}
