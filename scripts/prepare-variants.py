#!/usr/bin/env python3
"""Prune SmolLM2-135M-Instruct four ways for the page's compare view and write models/manifest.json.

The variants, all calibrated on a few samples of the calibration split of the English
chatterbot corpus (the `prunechat prune` default data):

- wanda-50: Wanda, 50 % of the weights of every decoder matrix set to zero (unstructured);
- wanda-2-4: Wanda, 2 of every 4 consecutive inputs kept (2:4);
- ffn-25: FFN neurons removed by Wanda score until 75 % of the parameters remain;
- layers-4: four decoder layers removed by block influence.

It also trains a tiny chat model from scratch (`prunechat train --preset tiny`, a few minutes),
which the page's prune and fine-tune view offers as a fast model to work on, and lists the
English chatterbot files the page uses as its bundled dialogue set.

A variant whose file exists is not pruned again. Each file is written under a temporary name
and renamed when complete, so an interrupted run leaves no partial model behind. Then
`prunechat eval` scores the dense model and every variant on a few held-out windows of the same
corpus, with the dense model as the reference, and saves those windows to
models/eval-windows.json for the page's perplexity button. The manifest lists, per model, its
file (a URL relative to index.html), method, sparsity, parameters, bytes and the evaluation.
When the manifest is newer than every model file and the windows file exists, nothing runs.

    python3 scripts/prepare-variants.py [--force] [--prunechat PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DENSE_NAME = "smollm2-135m-instruct-q8_0"
DENSE = Path("models") / f"{DENSE_NAME}.gguf"
VARIANT_DIR = Path("models") / "variants"
MANIFEST = Path("models") / "manifest.json"
EVAL_WINDOWS = Path("models") / "eval-windows.json"
CORPUS = Path("data") / "chatterbot-corpus" / "english"
MANIFEST_VERSION = 1

# Calibration: few short samples keep the four prune runs to a few minutes on two cores.
CALIBRATION = ["--n-samples", "8", "--seq-len", "128", "--seed", "0"]
# Evaluation: 4 held-out windows of 128 tokens (508 scored tokens), small enough for the
# browser's perplexity button to finish in seconds.
EVAL_WINDOW = 128
EVAL_MAX_WINDOWS = 4

LAYERS_REMOVED = 4

# The tiny model: trained from scratch on the whole English corpus, one thread (candle's pool
# only adds overhead at this size).
TINY_NAME = "tiny-chat"
TINY = VARIANT_DIR / f"{TINY_NAME}.gguf"
TINY_TRAINING = ["--preset", "tiny", "--steps", "600", "--batch-size", "16", "--seq-len", "128",
                 "--eval-fraction", "0", "--threads", "1", "--seed", "0", "--to", "q8_0"]


def variants(layer_target: float | None) -> list[dict]:
    """Returns the variants: name, label, method text and `prunechat prune` options.

    `layer_target` is the --target-params value of the layers variant; None leaves its options
    incomplete, which is enough when its file exists.
    """
    return [
        {
            "name": "wanda-50",
            "label": "Wanda 50%",
            "method": "Wanda, unstructured 50%",
            "options": ["--method", "wanda", "--sparsity", "0.5"],
        },
        {
            "name": "wanda-2-4",
            "label": "Wanda 2:4",
            "method": "Wanda, 2:4",
            "options": ["--method", "wanda", "--pattern", "2:4"],
        },
        {
            "name": "ffn-25",
            "label": "FFN −25% params",
            "method": "FFN neurons, Wanda score, 75% of parameters kept",
            "options": ["--structure", "ffn", "--score", "wanda", "--target-params", "0.75"],
        },
        {
            "name": f"layers-{LAYERS_REMOVED}",
            "label": f"−{LAYERS_REMOVED} layers",
            "method": f"{LAYERS_REMOVED} decoder layers removed, block influence",
            "options": ["--structure", "layers", "--score", "block-influence", "--target-params", f"{layer_target}"],
        },
    ]


def log(message: str) -> None:
    print(f"prepare-variants: {message}", file=sys.stderr, flush=True)


def run(command: list, **kwargs) -> subprocess.CompletedProcess:
    log("+ " + " ".join(str(c) for c in command))
    return subprocess.run([str(c) for c in command], check=True, cwd=REPO_ROOT, **kwargs)


def layer_target(binary: Path) -> float:
    """Returns the --target-params fraction that removes exactly LAYERS_REMOVED layers.

    Layers are removed one at a time until the parameters are at most the target, so a target
    half a layer above LAYERS_REMOVED layers' worth stops after that many. The layer size comes
    from the seven weight matrices of the dense model's first decoder layer. Its two norm vectors
    are left out because they are far smaller than half a layer.
    """
    report = evaluate(binary, [DENSE], reference=None, max_windows=1, save_windows=None)[0]
    return target_fraction(report["sparsity"]["n_params"], report["sparsity"]["layers"][0]["n_weights"], LAYERS_REMOVED)


def target_fraction(n_params: int, layer_weights: int, layers_removed: int) -> float:
    """Returns the fraction of `n_params` half a layer above `layers_removed` layers removed."""
    return (n_params - (layers_removed - 0.5) * layer_weights) / n_params


def prune_variant(binary: Path, variant: dict) -> float | None:
    """Writes models/variants/NAME.gguf unless it exists; returns the seconds taken, or None."""
    out = VARIANT_DIR / f"{variant['name']}.gguf"
    if (REPO_ROOT / out).exists():
        log(f"{out} present, not pruned again")
        return None
    partial = VARIANT_DIR / f".{variant['name']}.partial.gguf"
    (REPO_ROOT / partial).unlink(missing_ok=True)
    started = time.monotonic()
    try:
        run([binary, "prune", DENSE, *variant["options"], *CALIBRATION, "--out", partial], stdout=subprocess.DEVNULL)
    except BaseException:
        (REPO_ROOT / partial).unlink(missing_ok=True)
        raise
    os.replace(REPO_ROOT / partial, REPO_ROOT / out)
    seconds = time.monotonic() - started
    log(f"{out} written in {seconds:.1f} s")
    return seconds


def train_tiny(binary: Path) -> float | None:
    """Writes the tiny model unless it exists; returns the seconds taken, or None."""
    if (REPO_ROOT / TINY).exists():
        log(f"{TINY} present, not trained again")
        return None
    partial = VARIANT_DIR / f".{TINY_NAME}.partial.gguf"
    (REPO_ROOT / partial).unlink(missing_ok=True)
    started = time.monotonic()
    try:
        run([binary, "train", "--data", CORPUS, *TINY_TRAINING, "--out", partial], stdout=subprocess.DEVNULL)
    except BaseException:
        (REPO_ROOT / partial).unlink(missing_ok=True)
        raise
    os.replace(REPO_ROOT / partial, REPO_ROOT / TINY)
    seconds = time.monotonic() - started
    log(f"{TINY} written in {seconds:.1f} s")
    return seconds


def tiny_entry(binary: Path, train_seconds) -> dict:
    """Builds the manifest entry of the tiny model. Its perplexity is on its own tokenizer's
    tokens, so it is not comparable with the SmolLM2 models' and is left out."""
    report = evaluate(binary, [TINY], reference=None, max_windows=1, save_windows=None)[0]
    return {
        "name": TINY_NAME,
        "label": "Tiny chat model (from scratch)",
        "file": TINY.as_posix(),
        "method": "tiny preset trained from scratch: " + " ".join(TINY_TRAINING),
        "parameters": report["sparsity"]["n_params"],
        "layers": len(report["sparsity"]["layers"]),
        "bytes": report["sparsity"]["file_bytes"],
        "train_seconds": train_seconds,
    }


def dialogue_files() -> list[str]:
    """Returns the bundled dialogue set: the English chatterbot files, as URLs relative to index.html."""
    return sorted(p.relative_to(REPO_ROOT).as_posix() for p in (REPO_ROOT / CORPUS).glob("*.yml"))


def evaluate(binary: Path, models: list[Path], reference: Path | None, max_windows: int, save_windows: Path | None) -> list[dict]:
    """Runs `prunechat eval --json` on the held-out split and returns one report per model."""
    command = [binary, "eval", *models, "--data", CORPUS, "--window", EVAL_WINDOW, "--max-windows", max_windows, "--json"]
    if reference is not None:
        command += ["--reference", reference]
    if save_windows is not None:
        command += ["--save-windows", save_windows]
    result = run(command, stdout=subprocess.PIPE, text=True)
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def nonzero_decoder_weights(report: dict) -> int:
    return sum(layer["n_weights"] - layer["n_zeros"] for layer in report["sparsity"]["layers"])


def manifest_entry(name: str, label: str, method: str, file: Path, report: dict, dense_weights: int, prune_seconds) -> dict:
    """Builds one manifest entry from a `prunechat eval --json` report."""
    perplexity = report["perplexity"]
    return {
        "name": name,
        "label": label,
        "file": file.as_posix(),
        "method": method,
        # Decoder-layer weights that are zero or removed, relative to the dense model's.
        "sparsity": 1 - nonzero_decoder_weights(report) / dense_weights,
        "parameters": report["sparsity"]["n_params"],
        "nonzero_parameters": report["sparsity"]["n_nonzero_params"],
        "layers": len(report["sparsity"]["layers"]),
        "bytes": report["sparsity"]["file_bytes"],
        "prune_seconds": prune_seconds,
        "eval": {
            "perplexity": perplexity["perplexity"],
            "mean_nll": perplexity["mean_nll"],
            "top1_agreement": perplexity["top1_agreement"],
            "n_windows": perplexity["n_windows"],
            "n_predicted": perplexity["n_predicted"],
        },
    }


def up_to_date(files: list[Path]) -> bool:
    manifest = REPO_ROOT / MANIFEST
    if not manifest.exists() or not (REPO_ROOT / EVAL_WINDOWS).exists():
        return False
    newest = max((REPO_ROOT / f).stat().st_mtime for f in files)
    return manifest.stat().st_mtime > newest


def previous_prune_seconds() -> dict:
    """Returns name → prune_seconds from the existing manifest, so reused files keep their time."""
    try:
        manifest = json.loads((REPO_ROOT / MANIFEST).read_text())
        times = {entry["name"]: entry.get("prune_seconds") for entry in manifest["models"]}
        times.update({entry["name"]: entry.get("train_seconds") for entry in manifest.get("small_models", [])})
        return times
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def write_atomically(path: Path, text: str) -> None:
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text)
    os.replace(partial, path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--prunechat",
        type=Path,
        default=Path(os.environ.get("PRUNECHAT", REPO_ROOT / "target" / "release" / "prunechat")),
        help="the prunechat binary (default: $PRUNECHAT or target/release/prunechat)",
    )
    parser.add_argument("--force", action="store_true", help="prune and evaluate again even when the files exist")
    args = parser.parse_args()

    binary = args.prunechat.resolve()
    if not binary.exists():
        log(f"{binary} not found; run 'cargo build --release' first or pass --prunechat PATH")
        return 1
    for required in (DENSE, CORPUS):
        if not (REPO_ROOT / required).exists():
            log(f"{required} not found; run scripts/fetch-model.sh first")
            return 1

    started = time.monotonic()
    (REPO_ROOT / VARIANT_DIR).mkdir(parents=True, exist_ok=True)
    if args.force:
        for path in (REPO_ROOT / VARIANT_DIR).glob("*.gguf"):
            path.unlink()
        (REPO_ROOT / MANIFEST).unlink(missing_ok=True)

    # The layer target only matters when the layers variant is pruned, so it is computed then.
    chosen = variants(layer_target=None)
    files = [DENSE] + [VARIANT_DIR / f"{v['name']}.gguf" for v in chosen]
    if all((REPO_ROOT / f).exists() for f in files + [TINY]) and up_to_date(files + [TINY]):
        log(f"{MANIFEST} is newer than every model file; nothing to do")
        return 0
    if not (REPO_ROOT / files[-1]).exists():
        chosen = variants(layer_target(binary))

    seconds = previous_prune_seconds()
    for variant in chosen:
        taken = prune_variant(binary, variant)
        if taken is not None:
            seconds[variant["name"]] = taken
    taken = train_tiny(binary)
    if taken is not None:
        seconds[TINY_NAME] = taken

    reports = evaluate(binary, files, reference=DENSE, max_windows=EVAL_MAX_WINDOWS, save_windows=EVAL_WINDOWS)
    if len(reports) != len(files):
        log(f"prunechat eval printed {len(reports)} reports for {len(files)} models")
        return 1
    dense_weights = sum(layer["n_weights"] for layer in reports[0]["sparsity"]["layers"])

    entries = [manifest_entry(DENSE_NAME, "Dense Q8_0", "none (dense)", DENSE, reports[0], dense_weights, None)]
    for variant, file, report in zip(chosen, files[1:], reports[1:]):
        entries.append(
            manifest_entry(variant["name"], variant["label"], variant["method"], file, report, dense_weights, seconds.get(variant["name"]))
        )
    expected_layers = entries[0]["layers"] - LAYERS_REMOVED
    if entries[-1]["layers"] != expected_layers:
        log(f"{files[-1]} has {entries[-1]['layers']} layers, expected {expected_layers}; delete it and run again")
        return 1

    manifest = {
        "version": MANIFEST_VERSION,
        "reference": DENSE_NAME,
        "eval": {
            "data": CORPUS.as_posix(),
            "split": "held-out",
            "window": EVAL_WINDOW,
            "max_windows": EVAL_MAX_WINDOWS,
            "windows": EVAL_WINDOWS.as_posix(),
        },
        "calibration": " ".join(CALIBRATION),
        "models": entries,
        "small_models": [tiny_entry(binary, seconds.get(TINY_NAME))],
        "dialogue": {"label": "chatterbot-corpus, English", "files": dialogue_files()},
    }
    write_atomically(REPO_ROOT / MANIFEST, json.dumps(manifest, indent=2) + "\n")
    log(f"{MANIFEST} written with {len(entries)} models in {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
