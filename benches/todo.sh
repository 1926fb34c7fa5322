#!/usr/bin/env bash
# Bounded load on the todo demo (examples/todo): listing todos through the todo-db service's
# pool vs connecting (and authenticating, SCRAM-SHA-256) for every call.
#
# One throwaway PostgreSQL (scripts/lib/postgres.sh), one `weft up` with the example deployed
# twice from examples/todo/weft.yaml: `pooled` (POOL_SIZE 4, the example's setting) and
# `percall` (POOL_MODE per-call: the same service code, a fresh connection per call). Both
# read the same 50 seeded todos. wrk drives `GET /api/todos?list=bench&status=open` (the
# join over lists and tags) on 127.0.0.1, alternating the two round by round.
# Prints a table of req/s, p50, p99 and per-call/pooled; any non-2xx response fails the run.
#
#   bash benches/todo.sh                   # 3 rounds x 10 s each, 16 connections
#   ROUNDS=1 DURATION=5 bash benches/todo.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cache_root="${XDG_CACHE_HOME:-$HOME/.cache}/weft"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$cache_root/target}"
guests="${WEFT_GUESTS_DIR:-$cache_root/guests}"
ROUNDS="${ROUNDS:-3}"
DURATION="${DURATION:-10}"
CONNECTIONS="${CONNECTIONS:-16}"
THREADS="${THREADS:-1}"
export WEFT_CACHE_DIR="$cache_root/bench-cache"

command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
bash tests/fixtures/build-guests.sh "$guests" >&2
if [ -z "${WEFT:-}" ]; then
  cargo build --release --locked -p weft >&2
  WEFT="$CARGO_TARGET_DIR/release/weft"
fi

# shellcheck source=../scripts/lib/postgres.sh
source scripts/lib/postgres.sh
tmp="$(mktemp -d "${TMPDIR:-/tmp}/weft-todo-bench.XXXXXX")"
chmod 755 "$tmp"
pid=""
cleanup() {
  [ -z "$pid" ] || { kill -INT "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true; }
  pg_stop
  rm -rf "$tmp"
}
trap cleanup EXIT
pg_start "$tmp/pg" todo weft-demo-password

manifest() { # NAME MODE
  sed -e "s|image: ./|image: $guests/|" \
      -e "s|{ port: 5432, hostPort: 5432 }|{ port: 5432, hostPort: $PG_PORT }|" \
      -e "s|^  name: todo$|  name: $1|" \
      -e "s|host: todo.localhost|host: $1.localhost|" \
      -e "s|^\( *\)POOL_SIZE: \"4\"|&\n\1POOL_MODE: $2|" \
      examples/todo/weft.yaml >"$tmp/$1.yaml"
  grep -q "POOL_MODE: $2" "$tmp/$1.yaml" && grep -q "hostPort: $PG_PORT" "$tmp/$1.yaml" ||
    { echo "could not write the $1 manifest from examples/todo/weft.yaml" >&2; exit 1; }
}
manifest pooled pooled
manifest percall per-call

port=18700
"$WEFT" up --data-dir "$tmp/data" --http-addr "127.0.0.1:$port" --admin-addr 127.0.0.1:0 \
  "$tmp/pooled.yaml" "$tmp/percall.yaml" 2>"$tmp/up.log" >/dev/null &
pid=$!
for _ in $(seq 1 600); do grep -q "Admin API on" "$tmp/up.log" && break; sleep 0.1; done
grep -q "Admin API on" "$tmp/up.log" || { echo "weft up did not start:" >&2; cat "$tmp/up.log" >&2; exit 1; }

call() { # HOST METHOD PATH [JSON]
  curl -fsS -H "Host: $1.localhost" -X "$2" ${4:+-H 'Content-Type: application/json' -d "$4"} \
    "http://127.0.0.1:$port$3"
}
for name in pooled percall; do
  for _ in $(seq 1 100); do
    call "$name" GET /api/stats | grep -q '"schemaReady":true' && break
    sleep 0.1
  done
done
for i in $(seq 1 50); do
  call pooled POST /api/todos "{\"title\":\"bench item $i\",\"list\":\"bench\",\"tags\":[\"t$((i % 5))\",\"load\"]}" >/dev/null
done
n=$(call percall GET '/api/todos?list=bench&status=open' | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
[ "$n" = 50 ] || { echo "expected 50 todos through the per-call workload, got $n" >&2; exit 1; }

measure() { # host -> "rps p50 p99"
  local host=$1 out url="http://127.0.0.1:$port/api/todos?list=bench&status=open"
  wrk -t"$THREADS" -c"$CONNECTIONS" -d2s -H "Host: $host.localhost" "$url" >/dev/null 2>&1 || true
  out=$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency -H "Host: $host.localhost" "$url")
  python3 - "$out" <<'PY'
import re, sys
t = sys.argv[1]
def ms(v):
    n, u = re.match(r"([\d.]+)(us|ms|s)", v).groups()
    return float(n) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[u]
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1))
p50 = ms(re.search(r"^\s+50%\s+(\S+)", t, re.M).group(1))
p99 = ms(re.search(r"^\s+99%\s+(\S+)", t, re.M).group(1))
bad = re.search(r"Non-2xx or 3xx responses: (\d+)", t)
if bad:
    sys.exit(f"{bad.group(1)} non-2xx responses:\n{t}")
print(f"{rps:.0f} {p50:.3f} {p99:.3f}")
PY
}

results="$tmp/results"
for round in $(seq 1 "$ROUNDS"); do
  echo "pooled $(measure pooled)" | tee -a "$results" >&2
  echo "percall $(measure percall)" | tee -a "$results" >&2
done
echo "pooled: $(call pooled GET /api/stats)" >&2
echo "percall: $(call percall GET /api/stats)" >&2
echo "server sessions now: $(pg_psql -c "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'weft-todo'")" >&2

python3 - "$results" "$ROUNDS" "$DURATION" "$CONNECTIONS" "$THREADS" <<'PY'
import statistics, sys, collections
path, rounds, dur, conns, threads = sys.argv[1:]
rows = collections.defaultdict(list)
for line in open(path):
    name, rps, p50, p99 = line.split()
    rows[name].append((float(rps), float(p50), float(p99)))
med = {k: tuple(statistics.median(x[i] for x in v) for i in range(3)) for k, v in rows.items()}
print(f"\nwrk -t{threads} -c{conns} -d{dur}s, median of {rounds} alternating rounds, "
      "GET /api/todos?list=bench&status=open (50 todos)\n")
print("| todo-db | req/s | p50 ms | p99 ms | req/s min-max |")
print("|---|---:|---:|---:|---:|")
for k, label in [("pooled", "pooled (4 connections)"), ("percall", "connect per call")]:
    r, v = med[k], rows[k]
    lo, hi = min(x[0] for x in v), max(x[0] for x in v)
    print(f"| {label} | {r[0]:.0f} | {r[1]:.2f} | {r[2]:.2f} | {lo:.0f}-{hi:.0f} |")
print(f"\npooled / per-call: req/s {med['pooled'][0] / med['percall'][0]:.2f}x, "
      f"p99 {med['pooled'][2] / med['percall'][2]:.2f}x")
PY
