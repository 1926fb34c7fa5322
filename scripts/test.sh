#!/usr/bin/env bash
# Installs everything the tests need on a fresh Debian machine, builds the guest fixtures,
# and runs every check and test. This is the README's test command; .ci/run calls it.
set -euo pipefail
cd "$(dirname "$0")/.."

cache_root="${XDG_CACHE_HOME:-$HOME/.cache}/weft"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$cache_root/target}"
export WEFT_GUESTS_DIR="${WEFT_GUESTS_DIR:-$cache_root/guests}"
# Tests must not share the user's compile cache.
export WEFT_CACHE_DIR="${WEFT_TEST_CACHE_DIR:-$cache_root/test-cache}"
rm -rf "$WEFT_CACHE_DIR"

step() { printf '\n==> %s\n' "$*" >&2; }

step "PostgreSQL for the escape tests (Debian's postgresql, only when missing)"
if ! compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null; then
  SUDO=()
  [ "$(id -u)" = 0 ] || SUDO=(sudo)
  "${SUDO[@]}" apt-get update -qq
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql
fi
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null ||
  { echo "PostgreSQL's initdb is missing after installing postgresql" >&2; exit 1; }

step "guest fixtures (Rust guests via Debian's rustc-web; cached by source hash)"
bash tests/fixtures/build-guests.sh "$WEFT_GUESTS_DIR"

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (all targets, warnings denied)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo test"
cargo test --workspace --locked --no-fail-fast
