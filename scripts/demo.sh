#!/usr/bin/env bash
# The main job on embedded defaults (no other server): builds weft and the example guests, then
#   bash scripts/demo.sh          runs `weft up` with examples/hello, examples/kv-counter,
#                                 examples/auth-middleware, examples/pipeline, examples/in-memory
#                                 and examples/transform (on the host's in-process bus)
#                                 (ingress http://127.0.0.1:8080/, admin API 127.0.0.1:7870)
#   bash scripts/demo.sh serve    runs `weft serve examples/hello/hello.wasm` on :8080
#   bash scripts/demo.sh todo     the flagship demo (examples/todo): starts a throwaway
#                                 PostgreSQL (Debian's postgresql, installed when missing) on a
#                                 free loopback port, runs `weft up` with the todo workload
#                                 redirecting the guest's port 5432 to it, and prints the URL
#                                 (http://todo.localhost:8080/)
# Ctrl-C stops it (and the todo demo's PostgreSQL, whose data is thrown away).
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
cp "$guests/pipe-stage.wasm" examples/pipeline/pipe-stage.wasm
cp "$guests/p3-service.wasm" examples/pipeline/p3-service.wasm
cp "$guests/http-hello.wasm" examples/in-memory/hello.wasm
cp "$guests/msg-transform.wasm" examples/transform/msg-transform.wasm
cp "$guests/todo-db.wasm" examples/todo/todo-db.wasm
cp "$guests/todo-http.wasm" examples/todo/todo-http.wasm
cargo build --release --locked -p weft
weft="$CARGO_TARGET_DIR/release/weft"
case "${1:-up}" in
  serve) exec "$weft" serve --addr "${WEFT_ADDR:-127.0.0.1:8080}" examples/hello/hello.wasm ;;
  up)
    echo "try: curl -H 'Host: hello.localhost' http://127.0.0.1:8080/" >&2
    echo "     curl -H 'Host: counter.localhost' http://127.0.0.1:8080/" >&2
    echo "     curl -i -H 'Host: secure.localhost' http://127.0.0.1:8080/   (401 without the token)" >&2
    echo "     curl -H 'Host: pipeline.localhost' --data-binary abc http://127.0.0.1:8080/echo   (cde)" >&2
    echo "     curl -H 'Host: front.localhost' 'http://127.0.0.1:8080/fetch?url=http://back.weft.internal/headers'   (in memory)" >&2
    exec "$weft" up --http-addr "${WEFT_ADDR:-127.0.0.1:8080}" \
      examples/hello/weft.yaml examples/kv-counter/weft.yaml examples/auth-middleware/weft.yaml \
      examples/pipeline/weft.yaml examples/in-memory/weft.yaml examples/transform/weft.yaml ;;
  todo)
    # shellcheck source=lib/postgres.sh
    source scripts/lib/postgres.sh
    tmp="$(mktemp -d "${TMPDIR:-/tmp}/weft-todo-demo.XXXXXX")"
    chmod 755 "$tmp"
    cleanup() { pg_stop; rm -rf "$tmp"; }
    trap cleanup EXIT
    trap 'exit 130' INT TERM
    echo "starting a throwaway PostgreSQL in $tmp/pg ..." >&2
    # The role and password the manifest's service logs in with.
    pg_start "$tmp/pg" todo weft-demo-password
    # The example's manifest, with its images where they are and the redirect pointed at this
    # server's port: the guest still connects to 127.0.0.1:5432.
    sed -e "s|image: ./|image: $PWD/examples/todo/|" \
        -e "s|{ port: 5432, hostPort: 5432 }|{ port: 5432, hostPort: $PG_PORT }|" \
        examples/todo/weft.yaml >"$tmp/weft.yaml"
    grep -q "hostPort: $PG_PORT" "$tmp/weft.yaml" ||
      { echo "could not set hostPort in the manifest" >&2; exit 1; }
    addr="${WEFT_ADDR:-127.0.0.1:8080}"
    echo >&2
    echo "  PostgreSQL  127.0.0.1:$PG_PORT (role todo; the guest sees it as 127.0.0.1:5432)" >&2
    echo "  Todo app    http://todo.localhost:${addr##*:}/" >&2
    echo "              curl -H 'Host: todo.localhost' http://$addr/api/todos" >&2
    echo "  Ctrl-C stops weft and PostgreSQL (its data is thrown away)." >&2
    echo >&2
    "$weft" up --http-addr "$addr" --admin-addr 127.0.0.1:0 --data-dir "$tmp/weft" "$tmp/weft.yaml" ;;
  *) echo "usage: scripts/demo.sh [up|serve|todo]" >&2; exit 2 ;;
esac
