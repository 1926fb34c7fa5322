#!/usr/bin/env bash
# The main job on embedded defaults (no other server): builds weft and the example guests, then
#   bash scripts/demo.sh          runs `weft up` with examples/hello, examples/kv-counter and
#                                 examples/auth-middleware
#                                 (ingress http://127.0.0.1:8080/, admin API 127.0.0.1:7870)
#   bash scripts/demo.sh serve    runs `weft serve examples/hello/hello.wasm` on :8080
# Ctrl-C stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
cache_root="${XDG_CACHE_HOME:-$HOME/.cache}/weft"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$cache_root/target}"
guests="${WEFT_GUESTS_DIR:-$cache_root/guests}"
bash tests/fixtures/build-guests.sh "$guests"
cp "$guests/http-hello.wasm" examples/hello/hello.wasm
cp "$guests/kv-counter.wasm" examples/kv-counter/kv-counter.wasm
cp "$guests/auth-mw.wasm" examples/auth-middleware/auth-mw.wasm
cp "$guests/http-hello.wasm" examples/auth-middleware/hello.wasm
cargo build --release --locked -p weft
weft="$CARGO_TARGET_DIR/release/weft"
case "${1:-up}" in
  serve) exec "$weft" serve --addr "${WEFT_ADDR:-127.0.0.1:8080}" examples/hello/hello.wasm ;;
  up)
    echo "try: curl -H 'Host: hello.localhost' http://127.0.0.1:8080/" >&2
    echo "     curl -H 'Host: counter.localhost' http://127.0.0.1:8080/" >&2
    echo "     curl -i -H 'Host: secure.localhost' http://127.0.0.1:8080/   (401 without the token)" >&2
    exec "$weft" up --http-addr "${WEFT_ADDR:-127.0.0.1:8080}" \
      examples/hello/weft.yaml examples/kv-counter/weft.yaml examples/auth-middleware/weft.yaml ;;
  *) echo "usage: scripts/demo.sh [up|serve]" >&2; exit 2 ;;
esac
