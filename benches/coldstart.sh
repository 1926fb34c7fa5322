#!/usr/bin/env bash
# Cold start: time from exec of the server to the first 200 response, `weft serve` vs
# `wasmtime serve` 48.0.8 on the same guest, compiled code already cached (a warm-up start
# fills each one's cache first), alternating paired rounds. Prints the median and the spread.
# Everything stops by itself.
#
#   bash benches/coldstart.sh                  # P2 http-hello, 21 paired rounds
#   ROUNDS=41 CASES="p2 p3" bash benches/coldstart.sh
#   WEFT=/tmp/weft bash benches/coldstart.sh   # a copy of the binary (others may rebuild)
#   WASMTIME=/path/to/wasmtime ...             # default: the 48.0.8 install benches/load.sh makes
#
# The clock starts just before fork+exec and stops when a GET / has returned 200; the probe
# connects every 0.2 ms, so a result is late by at most that. Raw per-round lines go to stderr.
set -euo pipefail
cd "$(dirname "$0")/.."
cache_root="${XDG_CACHE_HOME:-$HOME/.cache}/weft"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$cache_root/target}"
guests="${WEFT_GUESTS_DIR:-$cache_root/guests}"
ROUNDS="${ROUNDS:-21}"
CASES="${CASES:-p2}"
unset RUST_BACKTRACE RUST_LIB_BACKTRACE

if [ -z "${WASMTIME:-}" ]; then
  for root in "$cache_root/wasmtime-cli" "$cache_root/wasmtime-48.0.8"; do
    if "$root/bin/wasmtime" --version 2>/dev/null | grep -q "48.0.8"; then WASMTIME="$root/bin/wasmtime"; break; fi
  done
fi
if [ -z "${WASMTIME:-}" ]; then
  echo "installing wasmtime-cli 48.0.8 into $cache_root/wasmtime-cli (one-off, several minutes)" >&2
  cargo install wasmtime-cli --version 48.0.8 --locked --root "$cache_root/wasmtime-cli" >&2
  WASMTIME="$cache_root/wasmtime-cli/bin/wasmtime"
fi
if [ -z "${WEFT:-}" ]; then
  bash tests/fixtures/build-guests.sh "$guests" >&2
  [ -n "${NO_BUILD:-}" ] || cargo build --release --locked -p weft >&2
  WEFT="$CARGO_TARGET_DIR/release/weft"
fi
export WEFT_CACHE_DIR="$cache_root/bench-cache"

python3 - "$WEFT" "$WASMTIME" "$guests" "$ROUNDS" $CASES <<'PY'
import os, socket, statistics, subprocess, sys, time

weft, wasmtime, guests, rounds, *cases = sys.argv[1:]
rounds = int(rounds)
guest = {"p2": "http-hello.wasm", "p3": "p3-service.wasm"}

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

def argv(server, case, port):
    comp = os.path.join(guests, guest[case])
    addr = f"127.0.0.1:{port}"
    if server == "weft":
        return [weft, "serve", "--addr", addr, comp]
    p3 = ["-Wcomponent-model-async", "-Sp3,http"] if case == "p3" else []
    return [wasmtime, "serve", *p3, "--addr", addr, comp]

REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"

def first_200(port, deadline):
    while time.perf_counter() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                s.sendall(REQUEST)
                head = s.recv(64)
                if head.startswith(b"HTTP/1.1 200"):
                    return time.perf_counter()
        except OSError:
            time.sleep(0.0002)
    return None

def start(server, case):
    port = free_port()
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv(server, case, port), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        t1 = first_200(port, t0 + 60)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if t1 is None:
        sys.exit(f"{server} never answered 200 on {case}: {' '.join(argv(server, case, port))}")
    return (t1 - t0) * 1000

results = {}
for case in cases:
    for server in ("weft", "wasmtime"):
        start(server, case)  # fills the compile cache
    for r in range(rounds):
        order = ("weft", "wasmtime") if r % 2 == 0 else ("wasmtime", "weft")
        for server in order:
            ms = start(server, case)
            results.setdefault((case, server), []).append(ms)
            print(f"{case} {server} {r + 1} {ms:.2f}", file=sys.stderr)

print(f"\nexec -> first 200, compiled code cached, median of {rounds} paired rounds (alternating order)\n")
print("| guest | server | median ms | p10-p90 ms | weft/wasmtime |")
print("|---|---|---:|---:|---:|")
for case in cases:
    med = {s: statistics.median(results[(case, s)]) for s in ("weft", "wasmtime")}
    for server in ("weft", "wasmtime"):
        vals = sorted(results[(case, server)])
        lo, hi = vals[len(vals) // 10], vals[(len(vals) * 9) // 10]
        ratio = f"{med['weft'] / med['wasmtime']:.2f}x" if server == "weft" else ""
        print(f"| {case} {guest[case]} | {server} | {med[server]:.1f} | {lo:.1f}-{hi:.1f} | {ratio} |")
PY
