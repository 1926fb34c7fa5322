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
//! Both only with the linker rustup's Rust uses by default on x86_64 Linux (its bundled lld,
//! found in the sysroot), and `WEFT_LINK_LAYOUT=0` turns both off (also the way to build a
//! binary for a machine whose glibc is older than 2.36). A stale ordering file is harmless:
//! names the build no longer has are skipped.

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
    // rustup's rustc (1.90+) links x86_64-unknown-linux-gnu with its self-contained lld (the
    // `gcc-ld/ld.lld` shim in its sysroot) unless told otherwise; a distribution's rustc may
    // use the system linker, which knows no `--symbol-ordering-file`.
    let custom_linker = std::env::var_os("RUSTC_LINKER").is_some()
        || std::env::var_os("CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER").is_some()
        || flags.contains("linker")
        || flags.contains("fuse-ld")
        || flags.contains("link-self-contained");
    if target != "x86_64-unknown-linux-gnu" || custom_linker || !self_contained_lld(&target) {
        return;
    }
    // The manifest dir of this build (cargo sets it when it runs the script), not the one the
    // script was compiled in. The list is linked from a copy in OUT_DIR: one target dir may
    // serve several checkouts, and cargo reuses this script's output for a checkout whose
    // list has not changed, so a path into the checkout that ran it would dangle once that
    // checkout is deleted.
    let (Some(dir), Some(out)) = (
        std::env::var_os("CARGO_MANIFEST_DIR"),
        std::env::var_os("OUT_DIR"),
    ) else {
        return;
    };
    let order = Path::new(&dir).join("link-order.txt");
    let copy = Path::new(&out).join("link-order.txt");
    if order.exists() && std::fs::copy(&order, &copy).is_ok() {
        println!(
            "cargo:rustc-link-arg-bin=weft=-Wl,--symbol-ordering-file={}",
            copy.display()
        );
        println!("cargo:rustc-link-arg-bin=weft=-Wl,--no-warn-symbol-ordering");
    }
    if host_glibc_at_least(2, 36) {
        println!("cargo:rustc-link-arg-bin=weft=-Wl,-z,pack-relative-relocs");
    }
}

/// Whether the rustc building us has its self-contained lld for `target` (rustup's toolchains
/// since 1.90 link x86_64 Linux with it by default).
fn self_contained_lld(target: &str) -> bool {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let Ok(out) = Command::new(rustc).args(["--print", "sysroot"]).output() else {
        return false;
    };
    let sysroot = String::from_utf8_lossy(&out.stdout).trim().to_string();
    Path::new(&sysroot)
        .join("lib/rustlib")
        .join(target)
        .join("bin/gcc-ld/ld.lld")
        .exists()
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
