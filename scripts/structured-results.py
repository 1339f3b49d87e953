#!/usr/bin/env python3
"""Remove neurons, heads and layers from SmolLM2-135M-Instruct and record the results.

Each run is `prunechat prune --structure ...` to a parameter budget, calibrated on 8 x 128
tokens of the calibration split of the Flask documentation prose that
scripts/pruning-results.py extracts (run that script first, or at least its text step).
`prunechat eval` then scores every model on the held-out split of that text and on the
held-out split of the English chatterbot corpus, with the dense Q8_0 model as the reference.
Decode speed comes from benches/decode-bench.mjs: all models in one headless Chromium run,
runs alternated. llama-cpp-python, when installed, loads every file and generates 8 tokens.

The section between the structured-results markers of docs/pruning-results.md is replaced.
Intermediate files go to target/structured-results/; finished runs are reused (--fresh
starts over).

    python3 scripts/structured-results.py [--fresh] [--runs N]
"""

from __future__ import annotations

import argparse
import datetime
import json
import shutil
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
MODEL = REPO_ROOT / "models" / "smollm2-135m-instruct-q8_0.gguf"
CHAT_DATA = REPO_ROOT / "data" / "chatterbot-corpus" / "english"
TEXT = REPO_ROOT / "target" / "pruning-results" / "flask-3.0.3-docs.txt"
WORK_DIR = REPO_ROOT / "target" / "structured-results"
OUTPUT = REPO_ROOT / "docs" / "pruning-results.md"
SECTION_START = "<!-- structured-results:start -->"
SECTION_END = "<!-- structured-results:end -->"
CALIBRATION = ["--n-samples", "8", "--seq-len", "128", "--seed", "0"]
WINDOW = 512
WINDOWS = 12

# (structure, score, fraction of parameters kept, ratio, extra options)
# Every greedy step runs the calibration data through the model, so two steps and 8 × 128
# calibration tokens keep the whole table within about an hour on two cores.
GREEDY = ["--greedy-steps", "2"]
RUNS = [
    ("ffn", "wanda", 0.90, "global", GREEDY),
    ("ffn", "wanda", 0.75, "global", GREEDY),
    ("ffn", "wanda", 0.60, "global", GREEDY),
    ("heads", "wanda", 0.92, "global", GREEDY),
    ("kv-groups", "wanda", 0.90, "global", GREEDY),
    ("layers", "block-influence", 0.90, "global", []),
    ("layers", "block-influence", 0.75, "global", []),
]


def run(command: list, **kwargs) -> subprocess.CompletedProcess:
    print("+", " ".join(str(c) for c in command), file=sys.stderr, flush=True)
    return subprocess.run([str(c) for c in command], check=True, **kwargs)


def slug(structure: str, score: str, keep: float, ratio: str) -> str:
    return f"{structure}-{score}-{round((1 - keep) * 100)}-{ratio}"


def prune_all(binary: Path, fresh: bool) -> list[dict]:
    results = []
    for structure, score, keep, ratio, extra in RUNS:
        name = slug(structure, score, keep, ratio)
        out, report = WORK_DIR / f"{name}.gguf", WORK_DIR / f"{name}.json"
        if fresh or not report.exists():
            options = [*CALIBRATION, *extra]
            run([binary, "prune", MODEL, "--structure", structure, "--score", score, "--target-params", keep,
                 "--ratio", ratio, "--calib", TEXT, *options, "--out", out, "--report", report, "--force"],
                stdout=subprocess.DEVNULL)
        results.append({"name": name, "structure": structure, "score": score, "keep": keep, "ratio": ratio,
                        "gguf": out, "report": json.loads(report.read_text())})
    return results


def evaluate(binary: Path, models: list[Path], data: list, name: str) -> dict:
    result = run([binary, "eval", *models, *data, "--reference", MODEL, "--window", WINDOW,
                  "--max-windows", WINDOWS, "--json"], stdout=subprocess.PIPE, text=True)
    (WORK_DIR / f"eval-{name}.jsonl").write_text(result.stdout)
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    return {str(Path(r["model"])): r for r in rows}


def decode_speeds(models: list[Path], runs: int) -> dict:
    paths = [str(m.relative_to(REPO_ROOT)) for m in models]
    result = run(["node", REPO_ROOT / "benches" / "decode-bench.mjs", "--runs", runs, *paths],
                 stdout=subprocess.PIPE, text=True, cwd=REPO_ROOT)
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    return {str(REPO_ROOT / r["model"]): r for r in rows}


def llama_cpp_loads(models: list[Path]) -> dict:
    """Check that llama.cpp loads each file and generates 8 tokens.

    Returns "yes" or "no (ERROR)" per path, or an empty dict when llama-cpp-python is not installed.
    """
    try:
        from llama_cpp import Llama
    except ImportError:
        return {}
    loads = {}
    for path in models:
        try:
            llm = Llama(model_path=str(path), n_ctx=256, verbose=False)
            llm("The capital of France is", max_tokens=8, temperature=0)
            loads[str(path)] = "yes"
            del llm
        except Exception as error:  # llama-cpp-python raises ValueError and others on load
            loads[str(path)] = f"no ({type(error).__name__})"
    return loads


def describe_dims(report: dict) -> str:
    """Summarize the per-layer dimensions of the structured report's layer table in a few words."""
    layers = report["report"]["layers"]
    kept = [layer["after"] for layer in layers if layer["after"] is not None]
    removed = [str(layer["layer"]) for layer in layers if layer["after"] is None]
    if removed:
        return f"layers {', '.join(removed)} removed"

    def span(key: str) -> str:
        values = sorted({dims[key] for dims in kept})
        return f"{values[0]}" if len(values) == 1 else f"{values[0]}–{values[-1]}"

    return f"FFN {span('ffn_dim')}, heads {span('n_heads')}, KV heads {span('n_kv_heads')}"


def section(results, text, chat, speeds, loads, runs: int) -> str:
    dense = str(MODEL)
    commit = subprocess.run(["git", "-C", REPO_ROOT, "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    chromium = next(iter(speeds.values()), {}).get("chromium", "unknown")
    dense_text = text[dense]["perplexity"]["perplexity"]
    dense_chat = chat[dense]["perplexity"]["perplexity"]
    dense_speed = speeds[dense]["decode_tokens_per_s"]
    lines = [
        SECTION_START,
        "## Structured pruning: neurons, heads and layers removed",
        "",
        f"Written by `scripts/structured-results.py` on {datetime.date.today().isoformat()} at commit {commit}.",
        "",
        "- Each model is `prunechat prune --structure S --score C --target-params F --ratio R`, calibrated on",
        "  8 × 128 tokens of the calibration split of the Flask text, greedy in 2 steps (layers: one per",
        "  step), Q8_0 output. No recovery training. The table has Wanda scores with the global ratio only;",
        "  the magnitude and Taylor scores and the uniform ratio are tested (tests/structured.rs) but not",
        "  measured here. More calibration data and steps (the defaults are 32 × 256 and 8) cost more time",
        "  per run: each step runs the calibration data through the model.",
        f"- Perplexity ×dense on the held-out Flask text ({text[dense]['n_tokens']} tokens; dense {dense_text:.2f}) and",
        f"  on held-out chat ({chat[dense]['n_tokens']} tokens; dense {dense_chat:.2f}); agreement is top-1 agreement",
        "  with the dense model on the text.",
        f"- Decode: tokens/s over up to 128 greedy tokens in headless Chromium {chromium}, one thread, median of",
        f"  {runs} runs per model with the runs alternated between models in one browser session. The prompt",
        "  asks for a count to 200; a model that ends its reply within 16 tokens gets the next prompt of",
        "  benches/decode-bench.mjs. Models whose prompt differs: "
        + (", ".join(f"{Path(p).name} ({s['prompt']!r})" for p, s in speeds.items() if s.get("prompt") != speeds[dense].get("prompt"))
           or "none") + ".",
        "- llama.cpp: llama-cpp-python 0.3.36 loads the file and generates 8 tokens"
        + (" (not installed for this run: `make fixtures` installs it)." if not loads else "."),
        "  Uneven layers are written as the `deci` architecture (docs/formats.md); tests/e2e/structured.test.mjs",
        "  loads uniform and uneven files in wllama, llama.cpp compiled to wasm.",
        "",
        "| structure | score | ratio | params removed | result | text ×dense | chat ×dense | agreement |"
        " file | decode tokens/s | speedup | llama.cpp |",
        "| --- | --- | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
        f"| dense | - | - | 0% | 30 layers, FFN 1536, 9 heads | 1.00 | 1.00 | 100.0% | "
        f"{MODEL.stat().st_size / 1e6:.1f} MB | {dense_speed:.1f} | 1.00 | {loads.get(dense, '-')} |",
    ]
    for r in results:
        path = str(r["gguf"])
        removed = 1 - r["report"]["report"]["params"] / r["report"]["report"]["original_params"]
        t, c = text[path]["perplexity"], chat[path]["perplexity"]
        speed = speeds[path]["decode_tokens_per_s"]
        speed_cells = "— | —" if speed is None else f"{speed:.1f} | {speed / dense_speed:.2f}"
        lines.append(
            f"| {r['structure']} | {r['score']} | {r['ratio']} | {removed * 100:.1f}% | {describe_dims(r['report'])} | "
            f"{t['perplexity'] / dense_text:.2f} | {c['perplexity'] / dense_chat:.2f} | {t['top1_agreement'] * 100:.1f}% | "
            f"{r['gguf'].stat().st_size / 1e6:.1f} MB | {speed_cells} | {loads.get(path, '-')} |")
    lines += ["", SECTION_END]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fresh", action="store_true", help="redo every run instead of reusing finished ones")
    parser.add_argument("--runs", type=int, default=3, help="decode-speed runs per model (default 3)")
    args = parser.parse_args()
    for path in (MODEL, CHAT_DATA, TEXT):
        if not path.exists():
            sys.exit(f"{path} is missing: run scripts/fetch-model.sh and scripts/pruning-results.py first")
    built = REPO_ROOT / "target" / "release" / "prunechat"
    if not built.exists():
        sys.exit(f"{built} is missing: run `cargo build --release` (or `make native`) first")
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    # A copy, so that rebuilding the crate during a long run does not change the binary.
    binary = WORK_DIR / "prunechat"
    shutil.copy2(built, binary)

    results = prune_all(binary, args.fresh)
    models = [MODEL] + [r["gguf"] for r in results]
    text = evaluate(binary, models, ["--data", TEXT, "--split", "held-out"], "text")
    chat = evaluate(binary, models, ["--data", CHAT_DATA, "--split", "held-out"], "chat")
    speeds = decode_speeds(models, args.runs)
    loads = llama_cpp_loads(models)

    block = section(results, text, chat, speeds, loads, args.runs)
    page = OUTPUT.read_text()
    if SECTION_START in page and SECTION_END in page:
        start, end = page.index(SECTION_START), page.index(SECTION_END) + len(SECTION_END)
        page = page[:start] + block + page[end:]
    else:
        page = page.rstrip("\n") + "\n\n" + block + "\n"
    OUTPUT.write_text(page)
    print(f"wrote {OUTPUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
