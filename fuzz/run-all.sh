#!/usr/bin/env bash
# Build every fuzz target, then run each for SECONDS (default 15), starting from corpus/<target>
# (kept between runs, gitignored), seeds/<target> and regressions/<target>. Exits non-zero if a target
# crashes (libFuzzer leaves the input under fuzz/artifacts/<target>/) or does not build.
# Usage: fuzz/run-all.sh [SECONDS] [TARGET...]
set -u
cd "$(dirname "$0")"
secs="${1:-15}"
shift || true
case "$secs" in ''|*[!0-9]*) echo "usage: $0 [SECONDS] [TARGET...]" >&2; exit 2 ;; esac

# Stable toolchain: cargo-fuzz passes nightly-only flags (-Z sanitizer, -Cpasses=sancov), which
# RUSTC_BOOTSTRAP=1 unlocks. Override the sanitizer with FUZZ_SANITIZER=none if the ASan runtime
# is missing on a machine.
export RUSTC_BOOTSTRAP=1
san="${FUZZ_SANITIZER:-address}"

if ! command -v cargo-fuzz >/dev/null 2>&1; then
    echo "cargo-fuzz not found: cargo install cargo-fuzz" >&2
    exit 2
fi

if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo fuzz list)
fi

cargo fuzz build -s "$san" || { echo "fuzz build failed" >&2; exit 1; }

failed=()
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t"
    seeds=()
    [ -d "seeds/$t" ] && seeds+=("seeds/$t")
    [ -d "regressions/$t" ] && seeds+=("regressions/$t")
    echo "=== $t: ${secs}s"
    # -timeout: one input taking longer than 10 s counts as a hang; rss_limit bounds memory.
    # timeout(1) is a backstop in case libFuzzer itself wedges.
    if ! timeout --signal=KILL "$((secs + 120))" \
        cargo fuzz run -s "$san" "$t" "corpus/$t" "${seeds[@]}" -- \
        -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1; then
        echo "=== $t: FAILED" >&2
        failed+=("$t")
    fi
done

if [ "${#failed[@]}" -gt 0 ]; then
    echo "fuzz targets that crashed or failed to run: ${failed[*]}" >&2
    exit 1
fi
echo "all ${#targets[@]} fuzz targets ran ${secs}s without a crash"
