#!/usr/bin/env bash
# Build everything and run every test suite. `make test` calls this script.
#
# Steps: setup (with the browser and the fuzzing tools), wasm builds (pkg/ and
# the threaded pkg-threads/), native release build, model fetch and
# conversion, the compare view's pruned models, then the five suites:
#   scripts python3 -m unittest discover -s scripts/tests (scripts/serve.py)
#   native  cargo test --release, then the thread pool's tests, which need
#           the feature `threads` (cargo test --release --features threads
#           --lib parallel::pool_tests)
#   wasm    wasm-pack test --headless --chrome --release (Chromium via ChromeDriver)
#   e2e     node --test tests/e2e/ against scripts/serve.py on a free port,
#           whose URL the tests read from PRUNECHAT_URL
#   fuzz    scripts/fuzz.sh: builds the cargo-fuzz targets, then runs each one
#           for FUZZ_SECONDS (default 20) seconds. Each target that ran
#           without a crash counts as one passed test
# A failed build step stops the run at once. A failed suite does not stop the
# other suites, but the script exits 1 after printing the summary. The server
# is stopped on every exit path.
set -euo pipefail

cd "$(dirname "$0")/.."
root="$(pwd)"

export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
export CHROMEDRIVER="${CHROMEDRIVER:-/usr/bin/chromedriver}"

log_dir="$(mktemp -d "${TMPDIR:-/tmp}/prunechat-test.XXXXXX")"
server_pid=""
suite_pid=""

stop_server() {
    if [ -n "$server_pid" ]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
        server_pid=""
    fi
}

cleanup() {
    if [ -n "$suite_pid" ]; then
        pkill -TERM -P "$suite_pid" 2>/dev/null || true
        kill "$suite_pid" 2>/dev/null || true
    fi
    stop_server
    rm -rf "$log_dir"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

banner() {
    printf '\n==> %s\n' "$*"
}

# --- Build ------------------------------------------------------------------
banner "setup"
scripts/setup.sh --browser --fuzz

banner "wasm build: wasm-pack build --release --target web --out-dir pkg"
wasm-pack build --release --target web --out-dir pkg

banner "threaded wasm build: scripts/build-wasm-threads.sh"
scripts/build-wasm-threads.sh

banner "native build: cargo build --release"
cargo build --release

banner "model: scripts/fetch-model.sh"
scripts/fetch-model.sh

banner "compare view models: scripts/prepare-variants.py"
python3 scripts/prepare-variants.py

# --- Suites -------------------------------------------------------------------
failed_suites=()

# Run one suite, keeping its output in $log_dir/NAME.log for the summary.
run_suite() {
    local name="$1"
    shift
    banner "$name tests: $*"
    # The suite runs in the background so that `wait` returns as soon as a
    # signal arrives, and the EXIT trap stops the server at once.
    ("$@" 2>&1 | tee "$log_dir/$name.log") &
    suite_pid=$!
    local status=0
    wait "$suite_pid" || status=$?
    suite_pid=""
    if [ "$status" -ne 0 ]; then
        failed_suites+=("$name")
    fi
}

# Start scripts/serve.py on a free port and set PRUNECHAT_URL to its origin.
start_server() {
    local url_file="$log_dir/server.url" deadline
    PORT=0 python3 scripts/serve.py --root "$root" >"$url_file" 2>"$log_dir/http-server.log" &
    server_pid=$!
    deadline=$((SECONDS + 15))
    while [ ! -s "$url_file" ]; do
        if ! kill -0 "$server_pid" 2>/dev/null; then
            server_pid=""
            echo "test: scripts/serve.py exited before it printed its URL:" >&2
            cat "$log_dir/http-server.log" >&2
            return 1
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            echo "test: scripts/serve.py printed no URL within 15 s" >&2
            return 1
        fi
        sleep 0.1
    done
    # The origin without a trailing slash, for example http://127.0.0.1:40123.
    PRUNECHAT_URL="$(head -n 1 "$url_file")"
    export PRUNECHAT_URL="${PRUNECHAT_URL%/}"
    echo "test: serving $root at $PRUNECHAT_URL (pid $server_pid)"
}

run_suite scripts python3 -m unittest discover -s scripts/tests -v

run_suite native bash -c 'status=0
cargo test --release || status=$?
cargo test --release --features threads --lib parallel::pool_tests || status=$?
exit "$status"'

run_suite wasm wasm-pack test --headless --chrome --release

if start_server; then
    run_suite e2e node --test tests/e2e/
    stop_server
    if [[ " ${failed_suites[*]} " == *" e2e "* ]]; then
        echo "test: server log of the failed e2e run (last 40 lines):"
        tail -n 40 "$log_dir/http-server.log"
    fi
else
    failed_suites+=("e2e")
fi

run_suite fuzz scripts/fuzz.sh "${FUZZ_SECONDS:-20}"

# --- Summary ------------------------------------------------------------------
banner "summary"
total_passed=0
total_failed=0

# Print a suite's counts and the lines of its log that match DETAIL_REGEX, and add
# the counts to the totals. Usage: report_suite NAME PASSED FAILED DETAIL_REGEX
report_suite() {
    local name="$1" passed="$2" failed="$3" detail="$4"
    printf '%-8s %s\n' "$name:" "$passed passed, $failed failed"
    grep -E "$detail" "$log_dir/$name.log" | sed 's/^/         /' || true
    total_passed=$((total_passed + passed))
    total_failed=$((total_failed + failed))
}

# unittest prints "Ran 10 tests in 0.4s", then "OK" or "FAILED (failures=1, errors=2)".
if [ -f "$log_dir/scripts.log" ]; then
    read -r passed failed < <(awk '
        /^Ran [0-9]+ tests? in / { ran = $2 }
        /^(OK|FAILED)/ {
            while (match($0, /(failures|errors|skipped|expected failures)=[0-9]+/)) {
                item = substr($0, RSTART, RLENGTH)
                split(item, pair, "=")
                if (pair[1] == "failures" || pair[1] == "errors") bad += pair[2]
                else skipped += pair[2]
                $0 = substr($0, RSTART + RLENGTH)
            }
        }
        END { print ran - bad - skipped, bad + 0 }
    ' "$log_dir/scripts.log")
    report_suite scripts "$passed" "$failed" '^(Ran [0-9]+ tests? in |OK|FAILED)'
fi

# cargo and wasm-bindgen-test-runner print one line per test binary:
#   test result: ok. 12 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; ...
for name in native wasm; do
    log="$log_dir/$name.log"
    [ -f "$log" ] || continue
    read -r passed failed < <(awk '
        /^test result:/ {
            for (i = 1; i <= NF; i++) {
                if ($(i + 1) ~ /^passed;?$/) p += $i
                if ($(i + 1) ~ /^failed;?$/) f += $i
            }
        }
        END { print p + 0, f + 0 }
    ' "$log")
    report_suite "$name" "$passed" "$failed" '^test result:'
done

# node --test prints TAP totals such as "# pass 3" and "# fail 0".
if [ -f "$log_dir/e2e.log" ]; then
    read -r passed failed < <(awk '
        /^# pass / { p = $3 }
        /^# fail / { f = $3 }
        END { print p + 0, f + 0 }
    ' "$log_dir/e2e.log")
    report_suite e2e "$passed" "$failed" '^# (tests|pass|fail|cancelled|skipped|todo) '
fi

# scripts/fuzz.sh prints a line per target and ends with "fuzz: 3 passed, 0 failed".
if [ -f "$log_dir/fuzz.log" ]; then
    read -r passed failed < <(awk '
        /^fuzz: [0-9]+ passed, [0-9]+ failed$/ { p = $2; f = $4 }
        END { print p + 0, f + 0 }
    ' "$log_dir/fuzz.log")
    report_suite fuzz "$passed" "$failed" '^fuzz: (.* passed: |.* FAILED|.* reproducer: |build took )'
fi

if [ "${#failed_suites[@]}" -gt 0 ]; then
    echo "failed suites: ${failed_suites[*]}"
    echo "total: $total_passed passed, $total_failed failed"
    exit 1
fi
echo "total: $total_passed passed, $total_failed failed"
