#!/usr/bin/env bash
# Fuzz smoke run for CI: builds every fuzz target on the stable toolchain (no sanitizer:
# the parsers are safe Rust, and `-s none` needs no nightly) and runs each one for
# FUZZ_SECONDS (default 20) over the committed corpus. Fails if any target crashes,
# panics, hangs or fails to start. Needs `cargo install --locked cargo-fuzz`.
#
# New inputs the fuzzer finds go to a scratch directory, not to corpus/, so a run leaves
# the work tree clean; a crash is written to fuzz/artifacts/<target>/ (git-ignored).
set -uo pipefail

cd "$(dirname "$0")"
secs="${FUZZ_SECONDS:-20}"
start=$(date +%s)

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "cargo-fuzz is missing: cargo install --locked cargo-fuzz" >&2
    echo "0 passed, 1 failed"
    exit 1
fi

echo "building fuzz targets..."
if ! cargo fuzz build -s none; then
    echo "fuzz build failed" >&2
    echo "0 passed, 1 failed"
    exit 1
fi
built=$(date +%s)
echo "build: $((built - start)) s"

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

passed=0
failed=0
failures=()
for t in $(cargo fuzz list); do
    mkdir -p "$scratch/$t" "corpus/$t"
    log="$scratch/$t.log"
    t0=$(date +%s)
    # -timeout: an input running this long is a hang (the slowest legitimate one, a
    # key-file unwrap at the minimum Argon2 cost, takes tens of milliseconds).
    if cargo fuzz run -s none "$t" "$scratch/$t" "corpus/$t" -- \
        -max_total_time="$secs" -timeout=20 -print_final_stats=1 >"$log" 2>&1; then
        runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$')
        echo "PASS $t ($(( $(date +%s) - t0 )) s, ${runs:-?} execs)"
        passed=$((passed + 1))
    else
        echo "FAIL $t:"
        # The panic (or libFuzzer's own error: timeout, OOM...) and the saved input.
        grep -E -A3 'panicked at|^==[0-9]+== ERROR|^SUMMARY' "$log" | head -n 20 | sed 's/^/    /'
        grep -E -A2 'Failing input|Test unit written' "$log" | head -n 4 | sed 's/^/    /'
        failed=$((failed + 1))
        failures+=("$t")
    fi
done

echo "total: $(( $(date +%s) - start )) s (build $((built - start)) s)"
if [ "$failed" -ne 0 ]; then
    echo "failed targets: ${failures[*]} (reproduce: cargo fuzz run -s none <target> fuzz/artifacts/<target>/<file>)"
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
