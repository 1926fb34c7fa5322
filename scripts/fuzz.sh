#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for a bounded time, one after another (one fuzzer
# process at a time: libFuzzer's default single in-process worker; `-jobs=1` would fork a
# child that logs to ./fuzz-0.log), and prints executions, exec/s, coverage, corpus size and
# crashes per target. Exits non-zero if any target crashed or failed to build.
#
#   bash scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]     (default: 60 s, every target)
#
# The working corpus lives outside the clone, in $WEFT_FUZZ_CORPUS/<target> (default
# ~/.cache/weft/fuzz-corpus), so it survives between runs and CI jobs; the checked-in seeds in
# fuzz/corpus/<target> are read on every run but never written. Crash inputs land in
# $WEFT_FUZZ_CORPUS/artifacts/<target>/; turn each one into a regression test (docs/fuzzing.md).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-60}"
shift || true
cache_root="${XDG_CACHE_HOME:-$HOME/.cache}/weft"
corpus_root="${WEFT_FUZZ_CORPUS:-$cache_root/fuzz-corpus}"
# Its own target dir: the fuzz build (nightly, sanitizer flags) shares nothing with the stable one.
export CARGO_TARGET_DIR="${WEFT_FUZZ_TARGET_DIR:-$cache_root/target-fuzz}"

if ! rustup toolchain list | grep '^nightly' >/dev/null; then
    echo "==> installing the nightly toolchain (cargo-fuzz needs -Zsanitizer)" >&2
    rustup toolchain install nightly --profile minimal
fi
if ! command -v cargo-fuzz >/dev/null; then
    echo "==> installing cargo-fuzz into ~/.cargo/bin (once)" >&2
    cargo install --locked cargo-fuzz
fi

if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo +nightly fuzz list --fuzz-dir fuzz)
fi

echo "==> building ${#targets[@]} fuzz targets (nightly, sanitizer=address)" >&2
for t in "${targets[@]}"; do
    if ! cargo +nightly fuzz build --fuzz-dir fuzz "$t"; then
        echo "fuzz build of $t failed" >&2
        exit 1
    fi
done

failed=()
summary=()
for t in "${targets[@]}"; do
    work="$corpus_root/$t"
    artifacts="$corpus_root/artifacts/$t"
    mkdir -p "$work" "$artifacts"
    log="$corpus_root/$t.log"
    before=$(find "$artifacts" -type f | wc -l)
    echo "==> fuzzing $t for ${seconds}s" >&2
    status=0
    cargo +nightly fuzz run --fuzz-dir fuzz "$t" "$work" "fuzz/corpus/$t" -- \
        -max_total_time="$seconds" -print_final_stats=1 \
        -artifact_prefix="$artifacts/" -timeout=10 -rss_limit_mb=2048 \
        >"$log" 2>&1 || status=$?
    after=$(find "$artifacts" -type f | wc -l)
    # A crashed run prints no final stats: every lookup may come back empty.
    stat() { grep -oE "$1" "$log" | grep -oE '[0-9]+$' | tail -n 1 || true; }
    runs=$(stat 'stat::number_of_executed_units: *[0-9]+')
    eps=$(stat 'stat::average_exec_per_sec: *[0-9]+')
    cov=$(stat '(DONE|pulse|NEW|REDUCE|INITED) +cov: [0-9]+')
    ft=$(stat ' ft: [0-9]+')
    corp=$(find "$work" -type f | wc -l)
    crashes=$((after - before))
    line=$(printf '%-16s %10s execs %7s exec/s  cov %6s  ft %6s  corpus %6s  new crashes %s' \
        "$t" "${runs:-?}" "${eps:-?}" "${cov:-?}" "${ft:-?}" "$corp" "$crashes")
    summary+=("$line")
    echo "$line" >&2
    if [ "$status" -ne 0 ] || [ "$crashes" -gt 0 ]; then
        failed+=("$t")
        echo "--- $t failed (exit $status); from $log:" >&2
        grep -E -A4 'panicked at|ERROR: (AddressSanitizer|libFuzzer)|Test unit written' "$log" \
            | head -n 30 >&2 || tail -n 30 "$log" >&2
    fi
done

echo >&2
echo "==> fuzz summary (${seconds}s per target; corpus in $corpus_root)" >&2
printf '%s\n' "${summary[@]}" >&2
if [ "${#failed[@]}" -gt 0 ]; then
    echo "FAILED: ${failed[*]} (crash inputs in $corpus_root/artifacts/)" >&2
    exit 1
fi
