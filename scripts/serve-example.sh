#!/usr/bin/env bash
# The main job on embedded defaults: builds weft and the hello guest, then serves it with
# `weft serve` on http://127.0.0.1:8080/ (override with WEFT_ADDR). Ctrl-C stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
cache_root="${XDG_CACHE_HOME:-$HOME/.cache}/weft"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$cache_root/target}"
guests="${WEFT_GUESTS_DIR:-$cache_root/guests}"
bash tests/fixtures/build-guests.sh "$guests"
cargo build --release --locked -p weft
exec "$CARGO_TARGET_DIR/release/weft" serve --addr "${WEFT_ADDR:-127.0.0.1:8080}" "$guests/http-hello.wasm"
