#!/usr/bin/env bash
# In-memory HTTP between two workloads of one `weft up` host against the same call over
# loopback TCP through the host's ingress (docs/messaging.md, "In-memory HTTP between
# workloads"). Bounded: ROUNDS x 3 cases x DURATION seconds of wrk, then everything stops.
#
#   bash benches/internal_http.sh                 # 3 alternating rounds x 5 s per case
#   ROUNDS=1 DURATION=2 bash benches/internal_http.sh
#   WEFT=/tmp/weft bash benches/internal_http.sh  # a copy of the binary (no build)
#   BACK=p3-service bash benches/internal_http.sh # the target is the WASI 0.3 hello, whose
#                                                 # instances are reused (default: http-hello,
#                                                 # an instance per request)
#
# Workload `front` (the http-hello guest) answers GET /fetch?url=URL by fetching URL with
# wasi:http; workload `back` (http-hello too) serves every host and accepts in-memory calls.
# Cases, each measured at the client of `front` with wrk (one connection, so latency is the
# figure; CONNECTIONS=N for throughput):
#   alone   GET /                                      front answers by itself
#   memory  GET /fetch?url=http://back.weft.internal/  front calls back in memory
#   tcp     GET /fetch?url=http://127.0.0.1:PORT/      front calls back over loopback TCP,
#                                                      through the ingress
# The call's own cost is the case's mean latency minus `alone`'s; the table prints both and
# the tcp/memory ratios. A report, not an assertion.
set -euo pipefail
cd "$(dirname "$0")/.."
cache_root="${XDG_CACHE_HOME:-$HOME/.cache}/weft"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$cache_root/target}"
guests="${WEFT_GUESTS_DIR:-$cache_root/guests}"
ROUNDS="${ROUNDS:-3}"
DURATION="${DURATION:-5}"
CONNECTIONS="${CONNECTIONS:-1}"
BACK="${BACK:-http-hello}"
case "$BACK" in
  http-hello) expect="Hello from weft!" ;;
  p3-service) expect="Hello from weft p3!" ;;
  *) echo "BACK must be http-hello or p3-service" >&2; exit 1 ;;
esac
export WEFT_CACHE_DIR="$cache_root/bench-cache"
unset RUST_BACKTRACE RUST_LIB_BACKTRACE

command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk; }
if [ ! -f "$guests/http-hello.wasm" ] || [ ! -f "$guests/$BACK.wasm" ]; then
  bash tests/fixtures/build-guests.sh "$guests" >&2
fi
if [ -z "${WEFT:-}" ]; then cargo build --release --locked -p weft >&2; fi
weft="${WEFT:-$CARGO_TARGET_DIR/release/weft}"

tmp=$(mktemp -d)
up_pid=""
cleanup() {
  [ -n "$up_pid" ] && kill -TERM "$up_pid" 2>/dev/null && wait "$up_pid" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
data="$tmp/data"
"$weft" up --http-addr "127.0.0.1:$port" --admin-addr 127.0.0.1:0 --data-dir "$data" \
  2>"$tmp/up.log" >/dev/null &
up_pid=$!
for _ in $(seq 1 300); do
  [ -s "$data/admin-addr" ] && break
  kill -0 "$up_pid" 2>/dev/null || { cat "$tmp/up.log" >&2; exit 1; }
  sleep 0.1
done
[ -s "$data/admin-addr" ] || { echo "weft up did not start" >&2; cat "$tmp/up.log" >&2; exit 1; }

workload() { # name host-line allowed internal guest
  cat >"$tmp/$1.yaml" <<EOF
apiVersion: weft.dev/v1alpha1
kind: Workload
metadata:
  name: $1
spec:
  components:
    - name: app
      image: $guests/$5.wasm
      localResources:
        allowedHosts: [$3]
  hostInterfaces:
    - namespace: wasi
      package: http
      interfaces: [incoming-handler, outgoing-handler]
      config: { $2path: /, internal: $4 }
EOF
  "$weft" deploy "$tmp/$1.yaml" --data-dir "$data" >/dev/null
}
workload front "host: front.localhost, " "\"*.weft.internal\", \"http://127.0.0.1:$port\"" deny http-hello
workload back "" "" allow "$BACK"

url() { # case -> path on front
  case "$1" in
    alone) echo "/" ;;
    memory) echo "/fetch?url=http://back.weft.internal/" ;;
    tcp) echo "/fetch?url=http://127.0.0.1:$port/" ;;
  esac
}
# Both calls must answer 200 with back's body before anything is measured.
for c in memory tcp; do
  body=$(curl -sf -H "Host: front.localhost" "http://127.0.0.1:$port$(url "$c")") ||
    { echo "case $c does not answer 200" >&2; cat "$tmp/up.log" >&2; exit 1; }
  [ "$body" = "$expect" ] || { echo "case $c answered: $body" >&2; exit 1; }
done

results="$tmp/results"
for round in $(seq 1 "$ROUNDS"); do
  for c in alone memory tcp; do
    wrk -t1 -c"$CONNECTIONS" -d1s -H "Host: front.localhost" "http://127.0.0.1:$port$(url "$c")" >/dev/null 2>&1 || true
    out=$(wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency -H "Host: front.localhost" "http://127.0.0.1:$port$(url "$c")")
    line=$(python3 - "$out" <<'PY'
import re, sys
text = sys.argv[1]
def ms(v):
    n, u = re.match(r"([\d.]+)(us|ms|s)", v).groups()
    return float(n) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[u]
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
avg = ms(re.search(r"Latency\s+(\S+)", text).group(1))
p50 = ms(re.search(r"^\s+50%\s+(\S+)", text, re.M).group(1))
p99 = ms(re.search(r"^\s+99%\s+(\S+)", text, re.M).group(1))
errs = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
if errs:
    sys.exit(f"{errs.group(1)} non-2xx responses")
print(f"{rps:.0f} {avg:.4f} {p50:.4f} {p99:.4f}")
PY
)
    echo "$c $round $line" | tee -a "$results" >&2
  done
done

python3 - "$results" "$ROUNDS" "$DURATION" "$CONNECTIONS" "$BACK" <<'PY'
import statistics, sys, collections
path, rounds, dur, conns, back = sys.argv[1:]
rows = collections.defaultdict(list)
for line in open(path):
    case, _r, rps, avg, p50, p99 = line.split()
    rows[case].append((float(rps), float(avg), float(p50), float(p99)))
med = {c: tuple(statistics.median(v[i] for v in vals) for i in range(4)) for c, vals in rows.items()}
print(f"\nwrk -t1 -c{conns} -d{dur}s, median of {rounds} alternating rounds, 127.0.0.1; weft up, http-hello -> {back}\n")
print("| case | req/s | mean ms | p50 ms | p99 ms | the call's cost (mean - alone) ms |")
print("|---|---:|---:|---:|---:|---:|")
alone = med["alone"][1]
for c in ["alone", "memory", "tcp"]:
    rps, avg, p50, p99 = med[c]
    cost = "" if c == "alone" else f"{avg - alone:.3f}"
    print(f"| {c} | {rps:.0f} | {avg:.3f} | {p50:.3f} | {p99:.3f} | {cost} |")
m, t = med["memory"], med["tcp"]
mc, tc = m[1] - alone, t[1] - alone
print()
print(f"tcp/memory, end to end: mean {t[1] / m[1]:.2f}x, p50 {t[2] / m[2]:.2f}x, p99 {t[3] / m[3]:.2f}x, req/s memory/tcp {m[0] / t[0]:.2f}x")
if mc > 0:
    print(f"tcp/memory, the call alone (mean minus `alone`): {tc / mc:.2f}x ({tc:.3f} ms vs {mc:.3f} ms)")
else:
    print(f"the in-memory call costs no measurable time over `alone` ({mc:.3f} ms); tcp costs {tc:.3f} ms")
PY
