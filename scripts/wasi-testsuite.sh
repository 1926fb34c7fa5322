#!/usr/bin/env bash
# Runs the official WASI test suite (WebAssembly/wasi-testsuite, branch prod/testsuite-base,
# which carries the prebuilt test binaries) against weft, with the suite's own runner and
# our adapter (tests/wasi-testsuite/weft.py). Prints one line per failing test and then
# `N/TOTAL` passed. CI does not run this (it cannot fetch the suite); docs/conformance.md
# records the last result and explains every failure.
#
#   bash scripts/wasi-testsuite.sh DIR                 # weft (release build of this tree)
#   WEFT=/tmp/weft bash scripts/wasi-testsuite.sh DIR  # a given weft binary, no build
#   RUNTIME=wasmtime WASMTIME=~/.cache/weft/wasmtime-48.0.8/bin/wasmtime \
#     bash scripts/wasi-testsuite.sh DIR               # the suite's wasmtime adapter, for comparison
#   FILTER=http-service bash scripts/wasi-testsuite.sh DIR   # only tests whose name contains it
#   JSON=out.json ...                                  # keep the runner's JSON results
#
# DIR is a checkout or `git archive` of prod/testsuite-base. The runner needs Python >= 3.12
# with `requests` and `colorama`: the script makes a virtualenv for it under
# ~/.cache/weft/wasi-testsuite-venv (from the first python3.12+/python3.13 it finds, pyenv's
# included) and installs them from PyPI once.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
suite="${1:?usage: scripts/wasi-testsuite.sh DIR (a checkout of wasi-testsuite prod/testsuite-base)}"
suite="$(cd "$suite" && pwd)"
[ -x "$suite/run-tests" ] || { echo "$suite: no run-tests here; pass a checkout of wasi-testsuite's prod/testsuite-base branch" >&2; exit 2; }
cache_root="${XDG_CACHE_HOME:-$HOME/.cache}/weft"
RUNTIME="${RUNTIME:-weft}"

# A Python the runner accepts (it uses Path.walk, new in 3.12).
find_python() {
  local c
  for c in python3 python3.13 python3.12; do
    if command -v "$c" >/dev/null && "$c" -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then
      command -v "$c"; return
    fi
  done
  if command -v pyenv >/dev/null; then
    for v in $(pyenv versions --bare 2>/dev/null | grep -E '^3\.(1[2-9])' | sort -rV); do
      c="$(pyenv root)/versions/$v/bin/python3"
      [ -x "$c" ] && { echo "$c"; return; }
    done
  fi
  return 1
}
venv="$cache_root/wasi-testsuite-venv"
if ! "$venv/bin/python" -c 'import requests, colorama' 2>/dev/null; then
  py="$(find_python)" || { echo "the suite's runner needs Python >= 3.12 (apt-get install python3.12, or pyenv)" >&2; exit 2; }
  echo "making $venv with $py" >&2
  "$py" -m venv "$venv"
  "$venv/bin/python" -m pip install -q requests colorama >&2
fi

case "$RUNTIME" in
  weft)
    adapter="$repo/tests/wasi-testsuite/weft.py"
    if [ -z "${WEFT:-}" ]; then
      export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$cache_root/target}"
      (cd "$repo" && cargo build --release --locked -p weft >&2)
      export WEFT="$CARGO_TARGET_DIR/release/weft"
    fi
    # A cache of our own: the first run compiles every test, later runs load artifacts.
    export WEFT_CACHE_DIR="${WEFT_CACHE_DIR:-$cache_root/wasi-testsuite-cache}"
    ;;
  wasmtime)
    adapter="$suite/adapters/wasmtime.py"
    export WASMTIME="${WASMTIME:-wasmtime}"
    ;;
  *) echo "RUNTIME must be weft or wasmtime (got $RUNTIME)" >&2; exit 2 ;;
esac

json="${JSON:-$(mktemp /tmp/wasi-testsuite.XXXXXX.json)}"
expect_args=()
if [ -n "${FILTER:-}" ]; then
  # The runner has no name filter: skip everything else through an expectations file.
  filt="$(mktemp /tmp/wasi-testsuite-filter.XXXXXX.toml)"
  "$venv/bin/python" - "$suite" "$FILTER" >"$filt" <<'EOF'
import json, pathlib, sys
root, keep = pathlib.Path(sys.argv[1]) / "tests", sys.argv[2]
print("version = 1")
for manifest in sorted(root.rglob("manifest.json")):
    name = json.loads(manifest.read_text()).get("name", str(manifest.parent))
    print(f'[[suite]]\nname = {json.dumps(name)}')
    for wasm in sorted(manifest.parent.glob("*.wasm")):
        if keep not in wasm.stem:
            print(f'[[suite.test]]\nname = {json.dumps(wasm.stem)}\naction = "skip"')
EOF
  expect_args=(--expectations "$filt")
fi

cd "$suite"
"$venv/bin/python" ./run-tests --runtime-adapter "$adapter" --disable-colors \
  --json-output-location "$json" "${expect_args[@]}" >"${LOG:-/dev/null}" || true

"$venv/bin/python" - "$json" <<'EOF'
import json, sys
results = json.load(open(sys.argv[1]))["results"]
passed = total = 0
for suite in results:
    for test in suite["tests"]:
        if not test["executed"]:
            continue
        total += 1
        if test["outcome"] == "pass":
            passed += 1
            continue
        first = next((l for m in test["failures"] for l in m.splitlines() if l.strip()), "")
        print(f"FAIL {suite['name']} {test['name']}: {first[:200]}")
print(f"{passed}/{total}")
EOF
