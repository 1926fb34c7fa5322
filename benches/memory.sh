#!/usr/bin/env bash
# Memory: resident set size of the server process (from /proc/PID/status)
#   1. peak (VmHWM) over a start and 3 s of load (wrk -t1 -c16) on the P2 hello, `weft serve`
#      vs `wasmtime serve` 48.0.8, alternating paired rounds, median;
#   2. `weft up` idle (VmRSS) with 0 and with N hello workloads deployed (each its own
#      component copy and route), and the difference per workload.
# Everything stops by itself.
#
#   bash benches/memory.sh                 # 5 rounds, N=100
#   ROUNDS=3 WORKLOADS=50 bash benches/memory.sh
#   WEFT=/tmp/weft WASMTIME=/path/to/wasmtime bash benches/memory.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cache_root="${XDG_CACHE_HOME:-$HOME/.cache}/weft"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$cache_root/target}"
guests="${WEFT_GUESTS_DIR:-$cache_root/guests}"
ROUNDS="${ROUNDS:-5}"
WORKLOADS="${WORKLOADS:-100}"
unset RUST_BACKTRACE RUST_LIB_BACKTRACE
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }

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

python3 - "$WEFT" "$WASMTIME" "$guests" "$ROUNDS" "$WORKLOADS" <<'PY'
import os, shutil, socket, statistics, subprocess, sys, tempfile, time, urllib.request

weft, wasmtime, guests, rounds, n_workloads = sys.argv[1:]
rounds, n_workloads = int(rounds), int(n_workloads)
hello = os.path.join(guests, "http-hello.wasm")

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

def rss_kib(pid, field="VmRSS"):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field}")

def wait_200(url, headers=None, deadline=60):
    end = time.time() + deadline
    while time.time() < end:
        try:
            req = urllib.request.Request(url, headers=headers or {})
            with urllib.request.urlopen(req, timeout=2) as r:
                if r.status == 200:
                    return
        except Exception:
            time.sleep(0.05)
    raise RuntimeError(f"no 200 from {url}")

def stop(proc):
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()

def after_load(server):
    port = free_port()
    addr = f"127.0.0.1:{port}"
    cmd = [weft, "serve", "--addr", addr, hello] if server == "weft" else \
          [wasmtime, "serve", "--addr", addr, hello]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_200(f"http://{addr}/")
        subprocess.run(["wrk", "-t1", "-c16", "-d3s", f"http://{addr}/"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        return rss_kib(proc.pid, "VmHWM")
    finally:
        stop(proc)

loaded = {"weft": [], "wasmtime": []}
for server in ("weft", "wasmtime"):
    after_load(server)  # fills the compile cache
for r in range(rounds):
    for server in (("weft", "wasmtime") if r % 2 == 0 else ("wasmtime", "weft")):
        kib = after_load(server)
        loaded[server].append(kib)
        print(f"load {server} {r + 1} {kib} KiB", file=sys.stderr)

MANIFEST = """apiVersion: weft.dev/v1alpha1
kind: Workload
metadata:
  name: hello-{i}
spec:
  components:
    - name: hello
      image: ./hello-{i}.wasm
  hostInterfaces:
    - namespace: wasi
      package: http
      interfaces: [incoming-handler]
      config: {{ host: hello-{i}.localhost, path: / }}
"""

def idle_up(n):
    tmp = tempfile.mkdtemp(prefix="weft-mem-")
    try:
        manifests = []
        for i in range(n):
            # A distinct copy per workload (one byte of custom section differs), so each is its
            # own component, compiled and cached on its own: no sharing between workloads.
            data = open(hello, "rb").read() + bytes([0, 4, 1, ord("w"), 1, i % 256])
            open(os.path.join(tmp, f"hello-{i}.wasm"), "wb").write(data)
            path = os.path.join(tmp, f"hello-{i}.yaml")
            open(path, "w").write(MANIFEST.format(i=i))
            manifests.append(path)
        http_port, admin_port = free_port(), free_port()
        data_dir = os.path.join(tmp, "data")
        proc = subprocess.Popen(
            [weft, "up", "--http-addr", f"127.0.0.1:{http_port}",
             "--admin-addr", f"127.0.0.1:{admin_port}", "--data-dir", data_dir, *manifests],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            for i in range(n):
                wait_200(f"http://127.0.0.1:{http_port}/", {"Host": f"hello-{i}.localhost"}, 300)
            if n == 0:
                time.sleep(1)
            time.sleep(2)  # idle instances are retired after 1 s
            return rss_kib(proc.pid)
        finally:
            stop(proc)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

idle_up(n_workloads)  # fills the compile cache
base, full = [], []
for r in range(max(1, rounds // 2)):
    base.append(idle_up(0))
    full.append(idle_up(n_workloads))
    print(f"up {r + 1}: 0 workloads {base[-1]} KiB, {n_workloads} workloads {full[-1]} KiB",
          file=sys.stderr)

mib = lambda kib: kib / 1024
lw, lt = statistics.median(loaded["weft"]), statistics.median(loaded["wasmtime"])
b, f = statistics.median(base), statistics.median(full)
print(f"\nRSS: peak (VmHWM) after load, median of {rounds} paired rounds; weft up idle (VmRSS): median of {len(base)} rounds\n")
print("| measurement | weft | wasmtime serve | weft/wasmtime |")
print("|---|---:|---:|---:|")
print(f"| peak RSS (VmHWM), start + 3 s of wrk -t1 -c16, P2 http-hello | {mib(lw):.1f} MiB | {mib(lt):.1f} MiB | {lw / lt:.2f}x |")
print(f"| `weft up` idle, 0 workloads | {mib(b):.1f} MiB | | |")
print(f"| `weft up` idle, {n_workloads} hello workloads | {mib(f):.1f} MiB | | |")
print(f"| per idle workload | {(f - b) / n_workloads:.0f} KiB | | |")
PY
