# A throwaway PostgreSQL for the todo demo and benchmark (sourced, not run).
#
#   source scripts/lib/postgres.sh
#   pg_start DIR ROLE PASSWORD     # initdb into DIR, start on a free loopback port, create
#                                  # ROLE (LOGIN, PASSWORD) and its database ROLE;
#                                  # sets PG_PORT, PG_BIN, PG_DIR
#   pg_stop                        # stop it (the caller removes DIR)
#
# Debian's `postgresql` package (installed when missing). `initdb` runs as an unprivileged user:
# as root, as `postgres` through runuser (PostgreSQL refuses to run as root). TCP connections
# authenticate with SCRAM-SHA-256 (Debian's default); the Unix socket in DIR is trusted, for
# setup only. fsync is off: the data is throwaway.

pg_install() {
  if ! compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null; then
    local sudo=()
    [ "$(id -u)" = 0 ] || sudo=(sudo)
    echo "installing Debian's postgresql (once)" >&2
    "${sudo[@]}" apt-get update -qq
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql
  fi
  PG_BIN="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)"
  [ -x "$PG_BIN/initdb" ] || { echo "no initdb under /usr/lib/postgresql/*/bin" >&2; return 1; }
}

pg_as() { # run a PostgreSQL binary as the unprivileged owner of the data dir
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

pg_free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

pg_start() { # DIR ROLE PASSWORD
  local dir="$1" role="$2" password="$3" try
  pg_install
  PG_DIR="$dir"
  mkdir -p "$dir"
  [ "$(id -u)" != 0 ] || chown postgres "$dir"
  pg_as "$PG_BIN/initdb" -D "$dir/data" -U postgres --auth-local=trust \
    --auth-host=scram-sha-256 --no-sync >"$dir/initdb.log" 2>&1 ||
    { cat "$dir/initdb.log" >&2; return 1; }
  for try in 1 2 3 4 5; do
    PG_PORT="$(pg_free_port)"
    if pg_as "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/log" -w -t 60 \
      -o "-h 127.0.0.1 -p $PG_PORT -k $dir -c fsync=off -c max_connections=200" start >/dev/null; then
      break
    fi
    grep -q "in use" "$dir/log" 2>/dev/null || { cat "$dir/log" >&2; return 1; }
    [ "$try" != 5 ] || { echo "PostgreSQL found no free port in 5 tries" >&2; return 1; }
  done
  pg_as "$PG_BIN/psql" -q -h "$dir" -p "$PG_PORT" -U postgres -d postgres -v ON_ERROR_STOP=1 \
    -v role="$role" -v password="$password" >/dev/null <<'SQL'
CREATE ROLE :"role" LOGIN PASSWORD :'password';
CREATE DATABASE :"role" OWNER :"role";
SQL
}

pg_psql() { # SQL...: run as the superuser over the Unix socket
  pg_as "$PG_BIN/psql" -h "$PG_DIR" -p "$PG_PORT" -U postgres -d postgres -At "$@"
}

pg_stop() {
  [ -n "${PG_DIR:-}" ] && [ -d "$PG_DIR/data" ] || return 0
  pg_as "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m fast -w stop >/dev/null 2>&1 || true
}
