#!/usr/bin/env bash
# Regenerates crates/weft/link-order.txt: the functions of the `weft` binary that run when it
# starts and serves (`weft serve` of the P2 and P3 hello guests under a little load, `weft up`
# with one hello workload, `weft run` of the CLI hello), in the order they first ran. The
# linker (lld's --symbol-ordering-file, crates/weft/build.rs) puts them first in .text, so a
# start touches ~2 MiB of contiguous code instead of ~160 scattered 128 KiB page-cache folios
# (docs/benchmarks.md, "Memory and cold start (issue 14)").
#
# The list is recorded with valgrind's callgrind (exact: every function that ran, not a sample),
# each scenario twice, so the second run loads its compiled guest from the compile cache like a
# real start. Names that no longer exist in a later build are ignored by the linker, so a stale
# list costs memory, never correctness; rerun this after large dependency or code changes.
#
#   bash scripts/link-order.sh                 # builds weft (release), then records
#   WEFT=/path/to/weft bash scripts/link-order.sh
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
cache_root="${XDG_CACHE_HOME:-$HOME/.cache}/weft"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$cache_root/target}"
guests="${WEFT_GUESTS_DIR:-$cache_root/guests}"
command -v valgrind >/dev/null || { apt-get update -qq && apt-get install -y -qq valgrind; }
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
bash tests/fixtures/build-guests.sh "$guests" >&2
if [ -z "${WEFT:-}" ]; then
  cargo build --release --locked -p weft >&2
  WEFT="$CARGO_TARGET_DIR/release/weft"
fi
tmp=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$tmp"' EXIT
# Its own compile cache: under valgrind the CPU looks different, so artifacts differ.
export WEFT_CACHE_DIR="$tmp/cache"
unset RUST_BACKTRACE RUST_LIB_BACKTRACE

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_200() { # url [host]
  for _ in $(seq 1 600); do
    curl -sf -o /dev/null ${2:+-H "Host: $2"} "$1" && return 0
    sleep 0.1
  done
  echo "no 200 from $1" >&2
  return 1
}
n=0
record() { # out-name command... ; the command runs under callgrind
  n=$((n + 1))
  valgrind --tool=callgrind --demangle=no --callgrind-out-file="$tmp/$n-$1.cg" "${@:2}" \
    >/dev/null 2>"$tmp/$n-$1.log" &
  pid=$!
}
stop() {
  kill -INT "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

for case in http-hello p3-service; do
  for round in 1 2; do
    port=$(free_port)
    record "serve-$case-$round" "$WEFT" serve --addr "127.0.0.1:$port" "$guests/$case.wasm"
    wait_200 "http://127.0.0.1:$port/"
    wrk -t1 -c16 -d2s "http://127.0.0.1:$port/" >/dev/null
    stop
  done
done

mkdir -p "$tmp/up"
cp "$guests/http-hello.wasm" "$tmp/up/hello.wasm"
cp examples/hello/weft.yaml "$tmp/up/weft.yaml"
for round in 1 2; do
  port=$(free_port)
  admin=$(free_port)
  record "up-$round" "$WEFT" up --http-addr "127.0.0.1:$port" --admin-addr "127.0.0.1:$admin" \
    --data-dir "$tmp/up/data-$round" "$tmp/up/weft.yaml"
  wait_200 "http://127.0.0.1:$port/" hello.localhost
  wrk -t1 -c16 -d2s -H "Host: hello.localhost" "http://127.0.0.1:$port/" >/dev/null
  stop
done

for round in 1 2; do
  record "run-$round" "$WEFT" run "$guests/cli-hello.wasm"
  wait "$pid"
done

# Valgrind cannot reserve the pooling allocator's address space (weft falls back to on-demand
# allocation under it) and hides CPU features (SHA-NI, AVX2), so the functions only a native
# run uses come from perf samples of native runs: the same serve scenarios, sampled at 20 kHz.
: >"$tmp/native.syms"
if command -v perf >/dev/null; then
  export WEFT_CACHE_DIR="$tmp/native-cache"
  for case in http-hello p3-service; do
    for round in 1 2; do
      port=$(free_port)
      perf record -q -F 20000 -o "$tmp/perf.data" "$WEFT" serve --addr "127.0.0.1:$port" \
        "$guests/$case.wasm" >/dev/null 2>&1 &
      pid=$!
      wait_200 "http://127.0.0.1:$port/"
      wrk -t1 -c16 -d2s "http://127.0.0.1:$port/" >/dev/null
      stop
      [ "$round" = 2 ] && perf script -i "$tmp/perf.data" -F sym --no-demangle 2>/dev/null \
        | sed 's/^ *//' >>"$tmp/native.syms"
    done
  done
else
  echo "perf not found: the list misses what only native runs use (pooling allocator, SIMD)" >&2
fi

# The second round of each scenario first, then what native runs added, then what only a
# first (compiling) round ran.
python3 - "$WEFT" "$root/crates/weft/link-order.txt" "$tmp"/*-2.cg "$tmp/native.syms" "$tmp"/*-1.cg <<'PY'
import os, re, subprocess, sys
binary, out, *files = sys.argv[1:]
binary = os.path.realpath(binary)
defined = set()
for line in subprocess.run(["nm", "--defined-only", binary], capture_output=True, text=True).stdout.splitlines():
    parts = line.split()
    if len(parts) == 3 and parts[1] in "tTwW":
        defined.add(parts[2])
seen, order = set(), []
for path in files:
    if path.endswith(".syms"):
        for line in open(path, errors="replace"):
            fn = line.strip()
            if fn in defined and fn not in seen:
                seen.add(fn)
                order.append(fn)
        continue
    obs, names, ob = {}, {}, None
    for line in open(path, errors="replace"):
        m = re.match(r"(c?ob|c?fn)=\((\d+)\)(?: (.*))?$", line.rstrip("\n"))
        if not m:
            continue
        kind, ident, name = m.groups()
        table = obs if kind.endswith("ob") else names
        if name is not None:
            table[ident] = name
        if kind == "ob":
            ob = obs.get(ident)
        elif kind == "fn" and ob and os.path.realpath(ob) == binary:
            # callgrind marks recursion levels as NAME'2
            fn = re.sub(r"'\d+$", "", names[ident])
            if fn not in seen:
                seen.add(fn)
                order.append(fn)
with open(out, "w") as f:
    f.write("\n".join(order) + "\n")
print(f"{len(order)} functions -> {out}", file=sys.stderr)
PY
