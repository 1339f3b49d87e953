#!/usr/bin/env bash
# Build the fuzz targets in fuzz/ and run each one for a bounded time.
#
# Usage: [FUZZ_SANITIZER=none|address] scripts/fuzz.sh [SECONDS] [TARGET...]
#
# SECONDS is the fuzzing time per target (default 60). TARGET defaults to every target:
# gguf, psparse and checkpoint. Needs a nightly toolchain and cargo-fuzz
# (scripts/setup.sh --fuzz installs both).
#
# FUZZ_SANITIZER=none (the default) builds without a sanitizer into
# fuzz/target/sanitizer-none. FUZZ_SANITIZER=address builds with AddressSanitizer into
# fuzz/target, where plain `cargo +nightly fuzz` commands build too. AddressSanitizer
# also catches memory errors in unsafe code and single allocations past 2 GiB that are
# never touched. In one run each on a shared 2-core machine, its build took 10 min
# instead of 4.5, and its targets ran 5 to 6 times fewer inputs per second.
#
# Each target starts from fuzz/corpus/TARGET, which libFuzzer only reads: new inputs go
# to an empty temporary directory listed first, so the repository stays clean. Crash
# inputs go to a temporary directory that is kept and printed when a target fails.
# Prints one result line per target, then "fuzz: N passed, N failed". Exits 1 when a
# target crashed, ran out of memory or timed out.
set -euo pipefail

cd "$(dirname "$0")/.."

export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"

seconds="${1:-60}"
if ! [[ "$seconds" =~ ^[1-9][0-9]*$ ]]; then
    echo "fuzz: invalid SECONDS '$seconds' (expected a positive whole number of seconds)" >&2
    exit 2
fi
shift || true
targets=("$@")

sanitizer="${FUZZ_SANITIZER:-none}"
case "$sanitizer" in
    none) build_options=(--sanitizer none --target-dir "$(pwd)/fuzz/target/sanitizer-none") ;;
    address) build_options=(--sanitizer address) ;;
    *)
        echo "fuzz: invalid FUZZ_SANITIZER '$sanitizer' (expected none or address)" >&2
        exit 2
        ;;
esac
if [ "${#targets[@]}" -eq 0 ]; then
    targets=(gguf psparse checkpoint)
fi

# libFuzzer options: a crash is also an input that takes longer than 10 s or a process
# that grows past 2 GiB of resident memory.
libfuzzer_options=(
    "-max_total_time=$seconds"
    -rss_limit_mb=2048
    -timeout=10
    -print_final_stats=1
)

work_dir="$(mktemp -d "${TMPDIR:-/tmp}/prunechat-fuzz.XXXXXX")"
keep_work_dir=0
cleanup() {
    if [ "$keep_work_dir" -eq 0 ]; then
        rm -rf "$work_dir"
    fi
}
trap cleanup EXIT

echo "fuzz: building ${targets[*]} (cargo +nightly fuzz build ${build_options[*]})"
build_start=$SECONDS
for target in "${targets[@]}"; do
    cargo +nightly fuzz build "${build_options[@]}" "$target"
done
echo "fuzz: build took $((SECONDS - build_start)) s"

passed=0
failed=0
for target in "${targets[@]}"; do
    new_corpus="$work_dir/$target/corpus"
    artifacts="$work_dir/$target/artifacts/"
    log="$work_dir/$target/fuzz.log"
    mkdir -p "$new_corpus" "$artifacts"

    # libFuzzer prints a line for every new input, so its output goes to a log file.
    echo "fuzz: running $target for $seconds s (log: $log)"
    status=0
    cargo +nightly fuzz run "${build_options[@]}" "$target" "$new_corpus" "fuzz/corpus/$target" -- \
        "${libfuzzer_options[@]}" "-artifact_prefix=$artifacts" >"$log" 2>&1 || status=$?

    # -print_final_stats=1 ends a run with lines such as "stat::number_of_executed_units: 12345".
    runs="$(awk '/^stat::number_of_executed_units:/ { print $2 }' "$log")"
    rate="$(awk '/^stat::average_exec_per_sec:/ { print $2 }' "$log")"
    rss="$(awk '/^stat::peak_rss_mb:/ { print $2 }' "$log")"
    found="$(find "$artifacts" -type f | sort)"
    if [ "$status" -eq 0 ] && [ -z "$found" ]; then
        passed=$((passed + 1))
        echo "fuzz: $target passed: ${runs:-?} executions in $seconds s (${rate:-?}/s, peak RSS ${rss:-?} MB), no crash"
    else
        failed=$((failed + 1))
        keep_work_dir=1
        # The first lines of a Rust panic or a sanitizer report name the cause.
        echo "fuzz: $target crash report (full log: $log):"
        grep -E -A1 'panicked at|ERROR: (libFuzzer|AddressSanitizer)|^SUMMARY: ' "$log" | head -n 20 || true
        echo "fuzz: $target FAILED (exit status $status) after ${runs:-?} executions"
        if [ -n "$found" ]; then
            while IFS= read -r input; do
                echo "fuzz: $target reproducer: $input"
                echo "fuzz:   replay with: cargo +nightly fuzz run ${build_options[*]} $target $input"
            done <<<"$found"
        else
            echo "fuzz: $target wrote no reproducer, see $log"
        fi
    fi
done

echo "fuzz: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
