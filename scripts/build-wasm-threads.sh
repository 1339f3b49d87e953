#!/usr/bin/env bash
# Build the threaded wasm package, pkg-threads/prunechat.js and
# pkg-threads/prunechat_bg.wasm, which the worker imports when a page
# requests more than one thread (docs/worker-protocol.md).
#
# Usage: scripts/build-wasm-threads.sh
#
# Wasm threads need a standard library compiled with atomics, so this build
# uses the nightly toolchain with -Z build-std (scripts/setup.sh installs it
# with rust-src and the wasm32 target). It writes to target/wasm-threads, so
# the stable builds in target/ keep their cache. wasm-opt is not run, as for
# pkg/.
set -euo pipefail

cd "$(dirname "$0")/.."
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"

target_dir=target/wasm-threads
out_dir=pkg-threads

# RUSTFLAGS applies to every crate, the standard library included, and
# replaces the rustflags of .cargo/config.toml, so simd128 and the getrandom
# backend are repeated here.
rustflags=(
    -C target-feature=+atomics,+bulk-memory,+mutable-globals,+simd128
    --cfg 'getrandom_backend="wasm_js"'
)

# Linker flags for the final module only, passed through `cargo rustc` so that
# changing them does not rebuild the dependencies. wasm-bindgen's thread
# support needs a shared memory that the module imports, so the JS glue can
# hand it to each pool worker, and the thread-local storage symbols exported.
# rustc (nightly 2026-10) adds none of these for +atomics by itself. A shared
# memory declares its maximum size up front: 4 GiB, all that wasm32 can
# address, as model switches and fine-tuning need.
link_args=(
    --shared-memory
    --import-memory
    --max-memory=4294967296
    --export=__wasm_init_tls
    --export=__tls_size
    --export=__tls_align
    --export=__tls_base
)
rustc_args=()
for arg in "${link_args[@]}"; do
    rustc_args+=(-C "link-arg=$arg")
done

started=$SECONDS
RUSTFLAGS="${rustflags[*]}" cargo +nightly rustc --lib --release \
    --target wasm32-unknown-unknown --features threads \
    -Z build-std=panic_abort,std \
    --target-dir "$target_dir" \
    -- "${rustc_args[@]}"

wasm-bindgen --target web --out-dir "$out_dir" \
    "$target_dir/wasm32-unknown-unknown/release/prunechat.wasm"
echo "build-wasm-threads: wrote $out_dir/ in $((SECONDS - started)) s"
