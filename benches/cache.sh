#!/usr/bin/env bash
# Compile-cache benchmark: time from process start to "ready" with an empty compile cache
# (cold: Cranelift runs, the artifact is written) and with a warm one (the artifact is
# deserialized), with hyperfine. "Ready" is:
#   - for a wasi:http component: `weft serve` has printed its "Serving HTTP on" banner
#     (the server is then killed);
#   - for a command component: `weft run FILE` has exited.
# Prints a markdown table with the cold/warm ratio. Each measurement uses its own empty
# WEFT_CACHE_DIR under a temporary directory; nothing else is touched.
#
#   bash benches/cache.sh                  # http-hello.wasm, p3-service.wasm (serve), cli-hello.wasm (run)
#   bash benches/cache.sh path/to/big.wasm                 # any components (serve or run)
#   RUNS=10 NO_BUILD=1 bash benches/cache.sh
#   MODE=run bash benches/cache.sh cli.wasm               # force the mode
set -euo pipefail
cd "$(dirname "$0")/.."
cache_root="${XDG_CACHE_HOME:-$HOME/.cache}/weft"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$cache_root/target}"
guests="${WEFT_GUESTS_DIR:-$cache_root/guests}"
RUNS="${RUNS:-10}"

command -v hyperfine >/dev/null || { apt-get update -qq && apt-get install -y -qq hyperfine; }
# WEFT=/path/to/weft benchmarks that binary (no build); NO_BUILD=1 uses the one in the target dir.
if [ -z "${WEFT:-}" ] && [ -z "${NO_BUILD:-}" ]; then cargo build --release --locked -p weft >&2; fi
weft="${WEFT:-$CARGO_TARGET_DIR/release/weft}"

files=("$@")
[ ${#files[@]} -gt 0 ] || files=("$guests/http-hello.wasm" "$guests/p3-service.wasm" "$guests/cli-hello.wasm")

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# One start until ready, as a standalone script hyperfine can run.
cat >"$tmp/start.sh" <<'SH'
#!/usr/bin/env bash
# start.sh WEFT MODE FILE   (MODE: serve | run)
set -euo pipefail
weft=$1 mode=$2 file=$3
if [ "$mode" = run ]; then
  exec "$weft" run "$file" >/dev/null
fi
# Read weft's stderr line by line until the banner, then stop the server.
exec 3< <(exec "$weft" serve --addr 127.0.0.1:0 "$file" 2>&1 >/dev/null)
pid=$!
while IFS= read -r line <&3; do
  case "$line" in *"Serving HTTP on"*) kill -TERM "$pid"; exec 3<&-; exit 0 ;; esac
done
echo "weft serve exited before its banner" >&2
exit 1
SH
chmod +x "$tmp/start.sh"

mode_of() { # file -> serve | run ($MODE overrides)
  if [ -n "${MODE:-}" ]; then echo "$MODE"; return; fi
  case "$(basename "$1")" in
    cli-*|p3-cli*) echo run ;;
    *) echo serve ;;
  esac
}

echo "| component | size | mode | cold (empty cache) ms | warm (cached) ms | cold/warm |" >"$tmp/table"
echo "|---|---:|---|---:|---:|---:|" >>"$tmp/table"
for file in "${files[@]}"; do
  [ -f "$file" ] || { echo "no such file: $file" >&2; exit 1; }
  mode=$(mode_of "$file")
  name=$(basename "$file")
  export WEFT_CACHE_DIR="$tmp/cache-$name"
  # Cold: the cache directory is emptied before every run.
  hyperfine -N --runs "$RUNS" --prepare "rm -rf $WEFT_CACHE_DIR" \
    --export-json "$tmp/cold.json" "$tmp/start.sh $weft $mode $file" >&2
  # Warm: one run fills the cache, then every run hits it.
  hyperfine -N --runs "$RUNS" --warmup 1 \
    --export-json "$tmp/warm.json" "$tmp/start.sh $weft $mode $file" >&2
  python3 - "$tmp/cold.json" "$tmp/warm.json" "$name" "$(stat -c %s "$file")" "$mode" >>"$tmp/table" <<'PY'
import json, sys
cold, warm, name, size, mode = sys.argv[1:]
c = json.load(open(cold))["results"][0]
w = json.load(open(warm))["results"][0]
def fmt(r):
    return f"{r['median'] * 1000:.0f} (±{r['stddev'] * 1000:.0f})"
size = int(size)
size = f"{size / 1024:.0f} KiB" if size < 1 << 20 else f"{size / (1 << 20):.1f} MiB"
print(f"| {name} | {size} | {mode} | {fmt(c)} | {fmt(w)} | {c['median'] / w['median']:.1f}x |")
PY
done
echo
echo "hyperfine -N --runs $RUNS, median (± stddev); start until ready (serve: banner; run: exit)"
echo
cat "$tmp/table"
