#!/usr/bin/env bash
# Install the tools that building and testing prunechat needs.
#
# Usage: scripts/setup.sh [--browser] [--fuzz]
#
# Without options: the wasm32-unknown-unknown Rust target, wasm-bindgen-cli at
# the exact version that Cargo.lock pins, wasm-pack, and a nightly Rust
# toolchain with rust-src and the wasm32 target, which the threaded wasm
# build (scripts/build-wasm-threads.sh) needs.
# --browser also installs Debian's chromium and chromium-driver (with apt-get)
# and the npm packages in package-lock.json (playwright-core, @wllama/wllama).
# --fuzz also installs cargo-fuzz, which scripts/fuzz.sh needs.
#
# Each step checks first and skips what is already installed, so a second run
# takes a few seconds. Prints one line per step.
set -euo pipefail

cd "$(dirname "$0")/.."

with_browser=0
with_fuzz=0
for arg in "$@"; do
    case "$arg" in
        --browser) with_browser=1 ;;
        --fuzz) with_fuzz=1 ;;
        -h | --help)
            sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'
            exit 0
            ;;
        *)
            echo "setup: unknown option '$arg' (expected --browser or --fuzz)" >&2
            exit 2
            ;;
    esac
done

step() {
    printf 'setup: %-24s %s\n' "$1" "$2"
}

fail() {
    echo "setup: error: $*" >&2
    exit 1
}

# Rust tools that `cargo install` or rustup put in $CARGO_HOME/bin must be
# reachable from non-login shells (CI runs without a profile).
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"

# --- Rust toolchain ----------------------------------------------------------
command -v cargo >/dev/null || fail "cargo not found on PATH; install Rust with rustup (https://rustup.rs) first"
command -v rustup >/dev/null || fail "rustup not found on PATH; the wasm32 target is installed through rustup"
step "rust" "$(rustc --version)"

if rustup target list --installed | grep -qx 'wasm32-unknown-unknown'; then
    step "wasm32 target" "already installed"
else
    rustup target add wasm32-unknown-unknown >/dev/null
    step "wasm32 target" "installed"
fi

# --- wasm-bindgen-cli --------------------------------------------------------
# The CLI must match the wasm-bindgen crate version exactly, or the generated
# JS glue does not fit the compiled module. Cargo.lock is the single source.
wasm_bindgen_version="$(awk '
    $0 == "name = \"wasm-bindgen\"" { found = 1; next }
    found && /^version = / { gsub(/"/, "", $3); print $3; exit }
' Cargo.lock)"
[ -n "$wasm_bindgen_version" ] || fail "no wasm-bindgen package found in Cargo.lock; run 'cargo generate-lockfile' and retry"

installed_wasm_bindgen="$(wasm-bindgen --version 2>/dev/null | awk '{print $2}' || true)"
if [ "$installed_wasm_bindgen" = "$wasm_bindgen_version" ]; then
    step "wasm-bindgen-cli" "$wasm_bindgen_version already installed"
else
    step "wasm-bindgen-cli" "installing $wasm_bindgen_version (replaces '${installed_wasm_bindgen:-none}'; takes a few minutes)"
    # NOTE: no --locked, because the lockfile shipped with wasm-bindgen-cli
    # 0.2.130 pins a yanked webpki-roots release that cargo then rejects.
    cargo install --quiet --force wasm-bindgen-cli --version "$wasm_bindgen_version"
    step "wasm-bindgen-cli" "$(wasm-bindgen --version)"
fi

# --- wasm-pack ---------------------------------------------------------------
# wasm-pack downloads wasm-bindgen and wasm-opt only when they are missing.
# Neither is: wasm-bindgen is on PATH (above) and wasm-opt is off in Cargo.toml.
if command -v wasm-pack >/dev/null; then
    step "wasm-pack" "$(wasm-pack --version) already installed"
else
    step "wasm-pack" "installing (takes a few minutes)"
    cargo install --quiet wasm-pack
    step "wasm-pack" "$(wasm-pack --version)"
fi

# --- Nightly toolchain ---------------------------------------------------------
# The threaded wasm build recompiles the standard library with atomics
# (-Z build-std), which needs nightly and its rust-src component. cargo-fuzz
# builds with sanitizer flags that only a nightly compiler accepts.
if nightly_version="$(rustup run nightly rustc --version 2>/dev/null)"; then
    step "nightly toolchain" "$nightly_version already installed"
else
    step "nightly toolchain" "installing (takes a minute)"
    rustup toolchain install nightly --profile minimal >/dev/null
    step "nightly toolchain" "$(rustup run nightly rustc --version)"
fi

if rustup component list --toolchain nightly --installed | grep -qx 'rust-src'; then
    step "nightly rust-src" "already installed"
else
    rustup component add rust-src --toolchain nightly >/dev/null
    step "nightly rust-src" "installed"
fi

if rustup target list --toolchain nightly --installed | grep -qx 'wasm32-unknown-unknown'; then
    step "nightly wasm32 target" "already installed"
else
    rustup target add wasm32-unknown-unknown --toolchain nightly >/dev/null
    step "nightly wasm32 target" "installed"
fi

# --- Fuzzing tools -------------------------------------------------------------
# libfuzzer-sys compiles libFuzzer from C++ source.
if [ "$with_fuzz" -eq 1 ]; then
    command -v c++ >/dev/null || fail "c++ not found on PATH; libfuzzer-sys compiles libFuzzer with it (Debian: apt-get install g++)"
    cargo_fuzz_version="0.13.2"
    installed_cargo_fuzz="$(cargo fuzz --version 2>/dev/null | awk '{print $2}' || true)"
    if [ "$installed_cargo_fuzz" = "$cargo_fuzz_version" ]; then
        step "cargo-fuzz" "$cargo_fuzz_version already installed"
    else
        step "cargo-fuzz" "installing $cargo_fuzz_version (replaces '${installed_cargo_fuzz:-none}'; takes a minute)"
        cargo install --quiet --locked --force cargo-fuzz --version "$cargo_fuzz_version"
        step "cargo-fuzz" "$(cargo fuzz --version)"
    fi
fi

if [ "$with_browser" -eq 0 ]; then
    exit 0
fi

# --- Chromium and ChromeDriver -----------------------------------------------
# Debian's packages: test tools' own browser downloads do not work offline.
if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
    installed_note=" (already installed)"
else
    installed_note=""
    step "chromium" "installing chromium and chromium-driver with apt-get"
    command -v apt-get >/dev/null || fail "apt-get not found; install Chromium and ChromeDriver as /usr/bin/chromium and /usr/bin/chromedriver by hand"
    sudo_cmd=()
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null || fail "installing chromium needs root or sudo"
        sudo_cmd=(sudo)
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt_install=("${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends chromium chromium-driver)
    # A fresh machine has no package lists yet, so update and retry once.
    if ! "${apt_install[@]}" >/dev/null; then
        "${sudo_cmd[@]}" apt-get update -qq
        "${apt_install[@]}" >/dev/null
    fi
fi
step "chromium" "$(/usr/bin/chromium --version 2>/dev/null | head -n 1)$installed_note"
step "chromedriver" "$(/usr/bin/chromedriver --version | head -n 1 | cut -d' ' -f1-2)$installed_note"

# --- npm packages --------------------------------------------------------------
command -v npm >/dev/null || fail "npm not found on PATH; install Node.js 20 or newer"
# npm writes node_modules/.package-lock.json after every install, so a copy
# newer than both manifests means node_modules matches them.
if [ -f node_modules/.package-lock.json ] &&
    [ node_modules/.package-lock.json -nt package-lock.json ] &&
    [ node_modules/.package-lock.json -nt package.json ]; then
    step "npm packages" "up to date"
elif [ -f package-lock.json ]; then
    npm ci --no-audit --no-fund --loglevel=error >/dev/null
    step "npm packages" "installed from package-lock.json"
else
    npm install --no-audit --no-fund --loglevel=error >/dev/null
    step "npm packages" "installed, wrote package-lock.json"
fi
