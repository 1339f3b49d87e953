#!/usr/bin/env python3
"""Prune SmolLM2-135M-Instruct with every method and write docs/pruning-results.md.

For magnitude, Wanda and SparseGPT at 30%, 50%, 60% and 70% unstructured sparsity and at
2:4 and 4:8, the script runs `prunechat prune`. Each run writes Q8_0 and calibrates on
32 x 256 tokens of the chatterbot-corpus English calibration split. `prunechat eval` then
scores every model on two held-out sets, with the dense Q8_0 model as the reference:

* chat: the held-out split of data/chatterbot-corpus/english (10% of the conversations,
  split seed 0), rendered with the model's chat template;
* text: English prose from the documentation of Flask 3.0.3, taken from its source
  distribution on PyPI, with code blocks, directives and markup removed.

Wanda and SparseGPT at 50%, 2:4, 30% and 4:8 are also calibrated on the calibration split of
the Flask text (paragraphs, 10% held out) and scored on its held-out split.

It also loads the dense model and the SparseGPT 50% model in llama.cpp (llama-cpp-python)
and compares llama.cpp's perplexity on the same text windows with prunechat's.

Intermediate files go to target/pruning-results/; finished runs are reused, so an
interrupted run continues where it stopped (--fresh starts over, --eval-only writes the
page from the finished runs). Run from anywhere:

    python3 scripts/pruning-results.py [--fresh] [--eval-only] [--windows N]
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
MODEL = REPO_ROOT / "models" / "smollm2-135m-instruct-q8_0.gguf"
CHAT_DATA = REPO_ROOT / "data" / "chatterbot-corpus" / "english"
WORK_DIR = REPO_ROOT / "target" / "pruning-results"
OUTPUT = REPO_ROOT / "docs" / "pruning-results.md"

FLASK_VERSION = "3.0.3"
# Reference documentation, change logs and the license are not prose.
FLASK_SKIPPED_DOCS = {"api.rst", "changes.rst", "license.rst", "contributing.rst"}

METHODS = ["magnitude", "wanda", "sparsegpt"]
SETTINGS = [
    ("30%", ["--sparsity", "0.3"]),
    ("50%", ["--sparsity", "0.5"]),
    ("60%", ["--sparsity", "0.6"]),
    ("70%", ["--sparsity", "0.7"]),
    ("2:4", ["--pattern", "2:4"]),
    ("4:8", ["--pattern", "4:8"]),
]
# Runs are made in this order, so that an interrupted run has the most telling settings.
RUN_ORDER = ["50%", "2:4", "30%", "4:8", "60%", "70%"]
# Calibrated on the calibration split of the text itself and scored on its held-out split.
TEXT_METHODS = ["wanda", "sparsegpt"]
TEXT_RUN_ORDER = ["50%", "2:4", "30%", "4:8"]
CALIBRATION = ["--n-samples", "32", "--seq-len", "256", "--seed", "0"]
WINDOW = 512


def run(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    print("+", " ".join(str(c) for c in command), file=sys.stderr, flush=True)
    return subprocess.run([str(c) for c in command], check=True, **kwargs)


def rst_prose(text: str) -> list[str]:
    """Return the plain-prose paragraphs of a reStructuredText file."""
    paragraphs, current = [], []
    lines = text.splitlines()
    for i, line in enumerate(lines):
        underline = i + 1 < len(lines) and re.fullmatch(r"([=\-~^\"'`#*+])\1{2,}\s*", lines[i + 1])
        skip = (
            not line.strip()
            or line[0].isspace()  # literal blocks, directive bodies, nested lists
            or line.startswith("..")
            or re.fullmatch(r"([=\-~^\"'`#*+])\1{2,}\s*", line)
            or underline  # a section title
        )
        if skip:
            if current:
                paragraphs.append(" ".join(current))
                current = []
            continue
        current.append(line.strip())
    if current:
        paragraphs.append(" ".join(current))

    cleaned = []
    for p in paragraphs:
        p = re.sub(r":[a-z:]+:`~?([^`<]*?)\s*(<[^>]*>)?`", r"\1", p)  # :ref:`text <target>`
        p = re.sub(r"`([^`<]*?)\s*<[^>]*>`_+", r"\1", p)  # `text <url>`_
        p = re.sub(r"``([^`]*)``", r"\1", p)
        p = re.sub(r"`([^`]*)`_*", r"\1", p)
        p = p.replace("::", ":").replace("**", "").strip()
        if len(p.split()) >= 8:
            cleaned.append(p)
    return cleaned


def flask_text() -> Path:
    """Download Flask's source distribution once and extract its documentation prose."""
    target = WORK_DIR / f"flask-{FLASK_VERSION}-docs.txt"
    if target.exists():
        return target
    download_dir = WORK_DIR / "pip"
    download_dir.mkdir(parents=True, exist_ok=True)
    run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
         "-d", download_dir, f"flask=={FLASK_VERSION}"])
    archive = download_dir / f"flask-{FLASK_VERSION}.tar.gz"
    paragraphs = []
    with tarfile.open(archive) as tar:
        names = sorted(n for n in tar.getnames() if "/docs/" in n and n.endswith(".rst"))
        for name in names:
            if Path(name).name in FLASK_SKIPPED_DOCS:
                continue
            text = tar.extractfile(name).read().decode("utf-8")
            paragraphs.extend(rst_prose(text))
    target.write_text("\n\n".join(paragraphs) + "\n", encoding="utf-8")
    return target


def prune_runs(binary: Path, fresh: bool, prune: bool, calibration: Path = CHAT_DATA, methods=METHODS,
               labels=RUN_ORDER, prefix: str = "") -> list[dict]:
    """Prune with every method and setting (only collect finished runs when prune is false).

    Calibrates on the calibration split of `calibration`. Returns the runs in table order:
    methods, then settings; a run not finished has "prune" set to None.
    """
    options = dict(SETTINGS)
    for label in labels:
        for method in methods:
            slug = f"{prefix}{method}-{label.replace('%', '').replace(':', 'of')}"
            report = WORK_DIR / f"{slug}.json"
            if prune and (fresh or not report.exists()):
                command = [binary, "prune", MODEL, "--method", method, *options[label], *CALIBRATION,
                           "--calib", calibration, "--out", WORK_DIR / f"{slug}.gguf", "--report", report]
                if label in ("50%", "2:4") and not prefix:
                    command += ["--sparse-out", WORK_DIR / f"{slug}.psparse"]
                run(command, stdout=subprocess.DEVNULL)
    runs = []
    for method in methods:
        for label, _ in SETTINGS:
            if label not in labels:
                continue
            slug = f"{prefix}{method}-{label.replace('%', '').replace(':', 'of')}"
            report = WORK_DIR / f"{slug}.json"
            entry = {"method": method, "setting": label, "gguf": WORK_DIR / f"{slug}.gguf", "prune": None}
            if report.exists():
                entry["prune"] = json.loads(report.read_text())
            runs.append(entry)
    return runs


def evaluate(binary: Path, models: list[Path], data: list[str], name: str, windows: int, fresh: bool) -> dict:
    """Evaluate all models on one data set; returns results keyed by model path."""
    output = WORK_DIR / f"eval-{name}.jsonl"
    cached = output.exists() and {json.loads(l)["model"] for l in output.read_text().splitlines() if l.strip()} == {str(m) for m in models}
    if fresh or not cached:
        command = [binary, "eval", *models, *data, "--reference", MODEL, "--window", WINDOW,
                   "--max-windows", windows, "--json", "--save-windows", WORK_DIR / f"windows-{name}.json"]
        result = run(command, stdout=subprocess.PIPE, text=True)
        output.write_text(result.stdout)
    rows = [json.loads(line) for line in output.read_text().splitlines() if line.strip()]
    return {str(Path(r["model"])): r for r in rows}


def llama_cpp_check(models: list[Path], windows_file: Path) -> list[dict]:
    """Perplexity of each model in llama.cpp on the saved windows."""
    try:
        from llama_cpp import Llama
        import numpy as np
    except ImportError as error:
        print(f"llama.cpp check skipped: {error}", file=sys.stderr)
        return []
    windows = json.loads(windows_file.read_text())
    results = []
    for path in models:
        llm = Llama(model_path=str(path), n_ctx=WINDOW, n_batch=WINDOW, logits_all=True, verbose=False)
        nll, count = 0.0, 0
        for tokens in windows:
            llm.reset()
            llm.eval(tokens)
            logits = np.array(llm.scores[: len(tokens) - 1], dtype=np.float64)
            logits -= logits.max(axis=1, keepdims=True)
            log_probs = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
            nll -= sum(log_probs[t, tokens[t + 1]] for t in range(len(tokens) - 1))
            count += len(tokens) - 1
        import importlib.metadata
        results.append({"model": str(path), "perplexity": float(np.exp(nll / count)), "n_predicted": count,
                        "version": importlib.metadata.version("llama-cpp-python")})
        del llm
    return results


def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import os
    return f"{cpu}, {os.cpu_count()} logical cores, {platform.system()} {platform.release()}"


def write_markdown(runs, chat, text, llama, windows: int, text_file: Path, text_runs, text_held_out) -> None:
    dense = str(MODEL)
    commit = subprocess.run(["git", "-C", REPO_ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    n_text_paragraphs = text_file.read_text().count("\n\n")
    lines = [
        "# Pruning results: SmolLM2-135M-Instruct",
        "",
        f"Written by `scripts/pruning-results.py` on {datetime.date.today().isoformat()} at commit {commit}.",
        f"Machine: {machine()}. The machine was shared with other jobs, so the times are upper bounds.",
        "",
        "Setup:",
        "",
        "- Model: `models/smollm2-135m-instruct-q8_0.gguf`. Pruning starts from its weights dequantized to F32",
        "  and writes Q8_0, in which a pruned weight stays exactly zero.",
        "- Pruned: the seven weight matrices of all 30 decoder layers (106.2 M weights). The token",
        "  embedding (tied to the output head, 28.3 M weights) and the norms stay dense.",
        f"- Calibration: 32 samples × 256 tokens (seed 0) from the calibration split (90% of the conversations,",
        "  split seed 0) of `data/chatterbot-corpus/english`, rendered with the model's chat template.",
        "- Magnitude compares weights within each matrix; Wanda within each output row; SparseGPT uses",
        "  λ = 0.01 and blocks of 128 columns.",
        f"- Evaluation (docs/evaluation.md): the first {windows} non-overlapping windows of {WINDOW} tokens; the first",
        "  token of each window is context only. Weights are dequantized to F32 for evaluation.",
        f"  - chat: the held-out split (10% of the conversations) of `data/chatterbot-corpus/english`,",
        f"    {chat[dense]['n_tokens']} tokens evaluated.",
        f"  - text: English prose from the Flask {FLASK_VERSION} documentation (source distribution on PyPI;",
        f"    {n_text_paragraphs + 1} paragraphs with code blocks, directives and markup removed), used whole,",
        f"    {text[dense]['n_tokens']} tokens evaluated. No calibration data comes from it.",
        "- ×dense is the model's perplexity divided by the dense model's on the same windows. Agreement is",
        "  the fraction of positions where the pruned and the dense model predict the same top-1 token.",
        "",
    ]
    for title, results in (("Held-out English text (Flask documentation)", text), ("Held-out chat (chatterbot-corpus English)", chat)):
        d = results[dense]["perplexity"]["perplexity"]
        lines += [f"## {title}", "", "| method | sparsity | perplexity | ×dense | top-1 agreement | prune time (s) |",
                  "| --- | --- | ---: | ---: | ---: | ---: |",
                  f"| dense | 0% | {d:.2f} | 1.00 | 100.0% | - |"]
        for r in runs:
            if r["prune"] is None:
                lines.append(f"| {r['method']} | {r['setting']} | not run | | | |")
                continue
            e = results[str(r["gguf"])]["perplexity"]
            lines.append(f"| {r['method']} | {r['setting']} | {e['perplexity']:.2f} | {e['perplexity'] / d:.2f} | "
                         f"{e['top1_agreement'] * 100:.1f}% | {r['prune']['report']['ms'] / 1000:.0f} |")
        lines.append("")

    d = text_held_out[dense]["perplexity"]["perplexity"]
    lines += ["## Calibrated on the same kind of text", "",
              "The tables above calibrate on chat. Here the Flask text is split like the chat corpus (paragraphs,",
              "10% held out, split seed 0): Wanda and SparseGPT calibrate on 32 × 256 tokens of its calibration",
              f"split and are scored on its held-out split ({text_held_out[dense]['n_tokens']} tokens evaluated).",
              "This is the usual protocol of the pruning papers, which calibrate on one part of a corpus",
              "and evaluate on another.", "",
              "| method | sparsity | perplexity | ×dense | top-1 agreement | prune time (s) |",
              "| --- | --- | ---: | ---: | ---: | ---: |",
              f"| dense | 0% | {d:.2f} | 1.00 | 100.0% | - |"]
    for r in text_runs:
        if r["prune"] is None:
            lines.append(f"| {r['method']} | {r['setting']} | not run | | | |")
            continue
        e = text_held_out[str(r["gguf"])]["perplexity"]
        lines.append(f"| {r['method']} | {r['setting']} | {e['perplexity']:.2f} | {e['perplexity'] / d:.2f} | "
                     f"{e['top1_agreement'] * 100:.1f}% | {r['prune']['report']['ms'] / 1000:.0f} |")
    lines.append("")

    lines += ["## File sizes", "", "| model | GGUF (Q8_0) | .psparse (F16 values) | decoder sparsity |", "| --- | ---: | ---: | ---: |",
              f"| dense | {MODEL.stat().st_size / 1e6:.1f} MB | - | - |"]
    for r in runs:
        if r["prune"] is None:
            continue
        sparse = r["prune"].get("sparse")
        lines.append(f"| {r['method']} {r['setting']} | {r['prune']['gguf']['bytes'] / 1e6:.1f} MB | "
                     f"{sparse['bytes'] / 1e6:.1f} MB |" if sparse else
                     f"| {r['method']} {r['setting']} | {r['prune']['gguf']['bytes'] / 1e6:.1f} MB | - |")
        lines[-1] += f" {r['prune']['sparsity'] * 100:.1f}% |"
    lines += ["", "A Q8_0 file keeps its size after pruning, because every zero is still stored. The .psparse file",
              "stores one mask bit per weight of a pruned matrix plus the kept values (docs/formats.md).", ""]

    if not llama:
        lines += ["## Cross-check with llama.cpp", "",
                  "Not run: llama-cpp-python is not installed (`make fixtures` installs it).", ""]
    if llama:
        lines += ["## Cross-check with llama.cpp", "",
                  f"llama-cpp-python {llama[0]['version']} loaded the same GGUF files and scored the same text windows",
                  "(its Q8_0 kernels also quantize the activations, so small differences are expected):", "",
                  "| model | prunechat perplexity | llama.cpp perplexity |", "| --- | ---: | ---: |"]
        for entry in llama:
            ours = text[entry["model"]]["perplexity"]["perplexity"]
            lines.append(f"| {Path(entry['model']).name} | {ours:.2f} | {entry['perplexity']:.2f} |")
        lines.append("")
    # scripts/structured-results.py owns the section between its markers; keep it.
    start, end = "<!-- structured-results:start -->", "<!-- structured-results:end -->"
    previous = OUTPUT.read_text() if OUTPUT.exists() else ""
    if start in previous and end in previous:
        lines += [previous[previous.index(start):previous.index(end) + len(end)], ""]
    OUTPUT.write_text("\n".join(lines))
    print(f"wrote {OUTPUT}", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fresh", action="store_true", help="redo every run instead of reusing finished ones")
    parser.add_argument("--windows", type=int, default=12, help="evaluation windows per data set (default 12)")
    parser.add_argument("--eval-only", action="store_true",
                        help="prune nothing: evaluate the finished runs and mark the others as not run")
    args = parser.parse_args()

    for path in (MODEL, CHAT_DATA):
        if not path.exists():
            sys.exit(f"{path} is missing: run scripts/fetch-model.sh (or `make model`) first")
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    built = REPO_ROOT / "target" / "release" / "prunechat"
    if not built.exists():
        sys.exit(f"{built} is missing: run `cargo build --release` (or `make native`) first")
    # A copy, so that rebuilding the crate during a long run does not change the binary.
    binary = WORK_DIR / "prunechat"
    shutil.copy2(built, binary)

    text_file = flask_text()
    runs = prune_runs(binary, args.fresh, prune=not args.eval_only)
    models = [MODEL] + [r["gguf"] for r in runs if r["prune"] is not None]
    chat = evaluate(binary, models, ["--data", CHAT_DATA, "--split", "held-out"], "chat", args.windows, args.fresh)
    text = evaluate(binary, models, ["--data", text_file, "--split", "all"], "text", args.windows, args.fresh)
    checked = [MODEL] + [r["gguf"] for r in runs if r["method"] == "sparsegpt" and r["setting"] == "50%" and r["prune"]]
    llama = llama_cpp_check(checked, WORK_DIR / "windows-text.json")
    text_runs = prune_runs(binary, args.fresh, not args.eval_only, calibration=text_file, methods=TEXT_METHODS,
                           labels=TEXT_RUN_ORDER, prefix="text-")
    held_out_models = [MODEL] + [r["gguf"] for r in text_runs if r["prune"] is not None]
    text_held_out = evaluate(binary, held_out_models, ["--data", text_file, "--split", "held-out"], "text-held-out",
                             args.windows, args.fresh)
    write_markdown(runs, chat, text, llama, args.windows, text_file, text_runs, text_held_out)


if __name__ == "__main__":
    main()
