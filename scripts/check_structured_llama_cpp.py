#!/usr/bin/env python3
"""Check that llama.cpp loads and runs structurally pruned SmolLM2 files.

The script prunes models/smollm2-135m-instruct-q8_0.gguf with
target/release/prunechat into a temporary directory, five ways:

* ffn-uniform: FFN 1536 -> 1152 in every layer (scalar GGUF keys, llama);
* kv-uniform: 2 of 3 key/value groups in every layer (scalar keys, llama);
* ffn-global: per-layer FFN widths (array keys, deci);
* heads-global: per-layer query head counts (array keys, deci);
* layers: decoder layers removed down to 92% of the parameters (llama).

Each file is loaded with llama-cpp-python, which must report the expected
architecture and generate text greedily. The script exits with status 1 when
any file fails. Needs `cargo build --release`, the model from
scripts/fetch-model.sh, data/chatterbot-corpus and llama-cpp-python (`make
fixtures` installs the pinned version). Run from anywhere:

    python3 scripts/check_structured_llama_cpp.py [--keep DIR]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import gguf
import llama_cpp

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "models" / "smollm2-135m-instruct-q8_0.gguf"
CALIBRATION = ROOT / "data" / "chatterbot-corpus" / "english"
PRUNECHAT = ROOT / "target" / "release" / "prunechat"
PROMPT = "The capital of France is"

HIDDEN = 576
HEAD_DIM = 64
N_LAYERS = 30


def parameter_count(path: Path) -> int:
    reader = gguf.GGUFReader(str(path))
    return sum(int(t.n_elements) for t in reader.tensors)


def exact_fraction(original: int, removed: int) -> str:
    """Returns a --target-params value that removes exactly `removed` parameters when units
    of that size are removed."""
    return repr((original - removed) / original)


def prune(out: Path, options: list[str]) -> None:
    command = [
        str(PRUNECHAT), "prune", str(MODEL), "--calib", str(CALIBRATION), "--n-samples", "4",
        "--seq-len", "64", "--out", str(out), *options,
    ]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stderr}")


def check(path: Path, architecture: str) -> str:
    reader = gguf.GGUFReader(str(path))
    field = reader.fields["general.architecture"]
    found = bytes(field.parts[field.data[0]]).decode()
    if found != architecture:
        raise RuntimeError(f"{path.name}: general.architecture is {found}, expected {architecture}")
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=256, verbose=False)
    text = llm.create_completion(PROMPT, max_tokens=12, temperature=0.0)["choices"][0]["text"]
    if not text.strip():
        raise RuntimeError(f"{path.name}: llama.cpp generated no text")
    return text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keep", type=Path, help="write the pruned files to this directory and keep them")
    args = parser.parse_args()

    original = parameter_count(MODEL)
    ffn_unit = 3 * HIDDEN  # one FFN neuron
    kv_unit = (2 * 3 + 2) * HIDDEN * HEAD_DIM  # one key/value group with its 3 query heads
    cases = [
        ("ffn-uniform", "llama", ["--structure", "ffn", "--score", "wanda", "--ratio", "uniform",
                                  "--target-params", exact_fraction(original, N_LAYERS * 384 * ffn_unit)]),
        ("kv-uniform", "llama", ["--structure", "kv-groups", "--score", "wanda", "--ratio", "uniform",
                                 "--target-params", exact_fraction(original, N_LAYERS * kv_unit)]),
        ("ffn-global", "deci", ["--structure", "ffn", "--score", "wanda", "--ratio", "global", "--target-params", "0.85"]),
        ("heads-global", "deci", ["--structure", "heads", "--score", "wanda", "--ratio", "global", "--target-params", "0.95"]),
        ("layers", "llama", ["--structure", "layers", "--score", "block-influence", "--target-params", "0.92"]),
    ]
    failures = 0
    with tempfile.TemporaryDirectory() as scratch:
        directory = args.keep or Path(scratch)
        directory.mkdir(parents=True, exist_ok=True)
        for name, architecture, options in cases:
            path = directory / f"{name}.gguf"
            try:
                prune(path, options)
                text = check(path, architecture)
                print(f"{name}: {architecture}, llama.cpp generated {text!r}")
            except RuntimeError as error:
                failures += 1
                print(f"{name}: FAILED: {error}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
