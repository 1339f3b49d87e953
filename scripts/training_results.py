#!/usr/bin/env python3
"""Measure training and write docs/training-results.md.

Runs target/release/prunechat (build it first with `cargo build --release`):

1. Throughput: tokens/s of short runs of the tiny preset from scratch, of LoRA (rank 8) and
   of full fine-tuning on SmolLM2-135M-Instruct, each with 1 and 2 candle threads.
2. From scratch: `prunechat train --preset tiny` on the English chatterbot corpus for
   --scratch-steps steps, its loss curve and a few greedy replies.
3. Recovery (with --pruned FILE...): fine-tunes each pruned model, masks kept, for
   --recovery-steps steps with each of --recovery-methods (full, lora). With --text FILE (for
   example the Flask documentation prose that scripts/pruning-results.py extracts) it trains on
   that text's calibration split and scores its held-out split. Without it, both use the
   chatterbot corpus.
   It reports the held-out loss before and after, and `prunechat eval` perplexity of the dense,
   pruned and recovered models on the held-out text and held-out chat, as multiples of the
   dense model's.

Tokens/s counts input tokens without padding, per optimizer step, as the CLI's --log records
them; the table gives the median over the steps after the first. `--only SECTION` runs one
section and replaces it in the existing page.

Usage: python3 scripts/training_results.py [--scratch-steps 1200] [--pruned a.gguf b.gguf]
       [--text flask.txt] [--recovery-steps 30] [--recovery-methods full lora]
       [--only throughput|scratch|recovery]
"""

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / "target" / "release" / "prunechat"
MODEL = ROOT / "models" / "smollm2-135m-instruct-q8_0.gguf"
CORPUS = ROOT / "data" / "chatterbot-corpus" / "english"
OUT = ROOT / "docs" / "training-results.md"
# Recovered models and their records; a rerun with the same settings reuses them.
RECOVERY_DIR = ROOT / "target" / "training-results"
PROMPTS = ["Hello", "What is your name?", "Do you like music?", "Tell me a joke."]


def run(args, log=None):
    """Run prunechat with `args`; return (stdout, stderr, step records, eval records)."""
    cmd = [str(BIN)] + [str(a) for a in args]
    if log is not None:
        if log.exists():
            log.unlink()
        cmd += ["--log", str(log)]
    print("+", " ".join(cmd), file=sys.stderr, flush=True)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr}")
    steps, evals = [], []
    if log is not None:
        for line in log.read_text().splitlines():
            record = json.loads(line)
            if "report" in record:
                steps.append(record)
                if record["report"].get("eval"):
                    evals.append(record["report"]["eval"])
            elif "eval" in record:
                evals.append(record["eval"])
    return proc.stdout, proc.stderr, steps, evals


def tokens_per_second(steps):
    """Median tokens/s over the steps after the first (which includes warm-up costs)."""
    rates = [s["report"]["n_tokens"] / s["seconds"] for s in steps[1:]]
    return statistics.median(rates) if rates else float("nan")


def machine():
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    return cpu, os.cpu_count(), load, commit


def throughput(tmp):
    rows = []
    cases = [
        ("tiny preset, from scratch", ["train", "--preset", "tiny", "--data", CORPUS, "--steps", 8, "--batch-size", 16,
                                       "--seq-len", 128, "--eval-fraction", 0, "--out", tmp / "t.gguf"]),
        ("SmolLM2-135M, LoRA rank 8", ["finetune", MODEL, "--data", CORPUS, "--steps", 5, "--lora-rank", 8, "--batch-size", 4,
                                       "--seq-len", 128, "--eval-fraction", 0, "--out", tmp / "l.gguf"]),
        ("SmolLM2-135M, LoRA rank 8, --no-masks", ["finetune", MODEL, "--data", CORPUS, "--steps", 5, "--lora-rank", 8,
                                                   "--no-masks", "--batch-size", 4, "--seq-len", 128, "--eval-fraction", 0,
                                                   "--out", tmp / "n.gguf"]),
        ("SmolLM2-135M, full fine-tuning", ["finetune", MODEL, "--data", CORPUS, "--steps", 4, "--batch-size", 4,
                                            "--seq-len", 128, "--eval-fraction", 0, "--out", tmp / "f.gguf"]),
    ]
    for name, args in cases:
        for threads in (1, 2):
            _, _, steps, _ = run(args + ["--threads", threads], log=tmp / "throughput.jsonl")
            step_seconds = statistics.median(s["seconds"] for s in steps[1:])
            rows.append((name, threads, tokens_per_second(steps), step_seconds))
    return rows


def from_scratch(tmp, n_steps):
    model = tmp / "tiny-scratch.gguf"
    log = tmp / "scratch.jsonl"
    _, stderr, steps, evals = run(["train", "--preset", "tiny", "--data", CORPUS, "--steps", n_steps, "--batch-size", 16,
                                   "--seq-len", 128, "--eval-every", max(n_steps // 10, 1), "--threads", 1,
                                   "--out", model, "--to", "q8_0"], log=log)
    replies = []
    for prompt in PROMPTS:
        stdout, _, _, _ = run(["chat", model, "--prompt", prompt, "--temperature", 0, "--max-new-tokens", 40])
        replies.append((prompt, stdout.strip()))
    setup = [l for l in stderr.splitlines() if l.startswith(("tokenizer:", "model:", "training data:", "held-out data:"))]
    return steps, evals, replies, setup, model.stat().st_size


RECOVERY_HEADING = "## Recovery fine-tuning after pruning"


def perplexities(models, data_args, name, tmp):
    """`prunechat eval` perplexity of each model (first 12 windows of 512 tokens), keyed by path."""
    out = tmp / f"eval-{name}.jsonl"
    stdout, _, _, _ = run(["eval", *models, *data_args, "--window", 512, "--max-windows", 12, "--json"])
    out.write_text(stdout)
    rows = [json.loads(line) for line in stdout.splitlines() if line.strip()]
    return {str(Path(r["model"])): r["perplexity"]["perplexity"] for r in rows}


RECOVERY_METHODS = {
    "full": ("full fine-tuning", ["--lr", "1e-4"]),
    "lora": ("LoRA rank 8", ["--lora-rank", 8, "--lr", "1e-3"]),
}


def recovery(tmp, pruned_models, text, n_steps, methods, train_only=False):
    """Fine-tune each pruned model with each method and return the runs and the perplexity tables.

    With `text`, training uses the text's calibration split and perplexity is measured on its
    held-out split (the same seed-0 split that `prunechat eval --split held-out` uses);
    otherwise both use the chatterbot corpus.
    """
    data = text if text is not None else CORPUS
    RECOVERY_DIR.mkdir(parents=True, exist_ok=True)
    runs = []
    for pruned in pruned_models:
        for method in methods:
            name, extra = RECOVERY_METHODS[method]
            out = RECOVERY_DIR / f"{pruned.stem}-recovered-{method}.gguf"
            record = RECOVERY_DIR / f"{pruned.stem}-recovered-{method}.json"
            # The fine-tuning settings that a finished run must share to be reused.
            key = {"pruned": str(pruned), "pruned_bytes": pruned.stat().st_size, "data": str(data),
                   "steps": n_steps, "method": method}
            if out.exists() and record.exists():
                saved = json.loads(record.read_text())
                if saved["key"] == key:
                    print(f"reusing {out}", file=sys.stderr)
                    runs.append({**saved["run"], "pruned": pruned, "out": out})
                    continue
            _, stderr, steps, evals = run(["finetune", pruned, "--data", data, "--steps", n_steps, "--batch-size", 4,
                                           "--seq-len", 128, "--eval-every", max(n_steps // 3, 1), "--threads", 1,
                                           "--out", out, "--to", "q8_0"] + extra,
                                          log=tmp / f"{pruned.stem}-recovery-{method}.jsonl")
            sparsity = [line.strip() for line in stderr.splitlines() if "sparsity" in line]
            result = {"name": name, "before": evals[0]["loss"], "after": evals[-1]["loss"],
                      "rate": tokens_per_second(steps), "seconds": sum(s["seconds"] for s in steps),
                      "sparsity": sparsity}
            record.write_text(json.dumps({"key": key, "run": result}, indent=1))
            runs.append({**result, "pruned": pruned, "out": out})
    if train_only:
        return None
    models = [MODEL, *pruned_models] + [r["out"] for r in runs]
    tables = []
    if text is not None:
        tables.append((f"held-out text ({text.name})",
                       perplexities(models, ["--data", text, "--split", "held-out"], "text", tmp)))
    tables.append(("held-out chat", perplexities(models, ["--data", CORPUS, "--split", "held-out"], "chat", tmp)))
    return runs, tables


def recovery_lines(pruned_models, text, n_steps, methods, recovered):
    lines = [RECOVERY_HEADING, ""]
    if recovered is None:
        return lines + [
            "Not measured yet: run the script with `--pruned PRUNED.gguf ...` once pruned models exist. It",
            "fine-tunes each and reports held-out loss and perplexity before and after.",
        ]
    runs, tables = recovered
    cpu, cores, load, commit = machine()
    data = f"the calibration split of {text.name}" if text else "the calibration split of the English chatterbot corpus"
    command = ["python3 scripts/training_results.py --only recovery --pruned",
               *[str(p.relative_to(ROOT)) if p.is_relative_to(ROOT) else str(p) for p in pruned_models]]
    if text is not None:
        command += ["--text", str(text.relative_to(ROOT)) if text.is_relative_to(ROOT) else str(text)]
    command += ["--recovery-steps", str(n_steps), "--recovery-methods", *methods]
    lines += [
        "Measured by `" + " ".join(command) + "`",
        f"on {datetime.date.today().isoformat()}, commit {commit}; {cpu}, {cores} cores, load average {load:.1f}.",
        "",
        f"Each pruned model is fine-tuned on {data} for {n_steps} steps (batch 4, sequences of at most",
        "128 tokens, one candle thread). Masks are kept: every weight that is zero in the pruned file stays",
        "exactly zero, so the recovered model has the pruned model's sparsity and shape. The held-out loss",
        "is the mean next-token loss on the held-out split of the training data.",
        "",
        "| Pruned model | Method | held-out loss before | held-out loss after | tokens/s | training time (s) |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for r in runs:
        lines.append(f"| {r['pruned'].name} | {r['name']} | {r['before']:.3f} | {r['after']:.3f} | {r['rate']:.0f} "
                     f"| {r['seconds']:.0f} |")
    lines += ["", "Perplexity (`prunechat eval`, first 12 windows of 512 tokens) and its multiple of the dense model's.",
              "The gap is the multiple minus one; recovery closes the fraction of the pruned model's gap shown in",
              "the last column (first table).", ""]
    first = tables[0][1]
    header = "| model | " + " | ".join(name for name, _ in tables) + " | gap closed |"
    lines += [header, "| --- | " + " | ".join("---:" for _ in tables) + " | ---: |"]
    labels = [(str(MODEL), "dense", None)]
    for pruned in pruned_models:
        labels.append((str(pruned), f"{pruned.name}", None))
        labels += [(str(r["out"]), f"{pruned.name} + {r['name']}", pruned) for r in runs if r["pruned"] == pruned]
    dense = str(MODEL)
    for path, label, source in labels:
        cells = []
        for _, table in tables:
            value = table[path]
            cells.append(f"{value:.2f} ({value / table[dense]:.2f}×)")
        closed = ""
        if source is not None:
            before = first[str(source)] / first[dense] - 1
            after = first[path] / first[dense] - 1
            closed = f"{(1 - after / before) * 100:.0f} %" if before > 0 else "—"
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {closed} |")
    lines.append("")
    for r in runs:
        for line in r["sparsity"]:
            lines.append(f"- {r['pruned'].name}, {r['name']}: {line}")
    return lines


THROUGHPUT_HEADING = "## Throughput, native"
SCRATCH_HEADING = "## From scratch: tiny preset on the English chatterbot corpus"


def throughput_lines(rows, cpu, cores, load, commit):
    lines = [
        THROUGHPUT_HEADING,
        "",
        f"Measured on {datetime.date.today().isoformat()}, commit {commit}; {cpu}, {cores} cores, load average {load:.1f}.",
        "",
        "Tokens/s counts input tokens without padding; median over the steps after the first. Sequences are",
        "at most 128 tokens and padded to the longest in each micro-batch; chatterbot conversations average",
        "about 40 tokens, so most of each batch is padding.",
        "",
        "| Run | candle threads | tokens/s | s/step |",
        "| --- | --- | --- | --- |",
    ]
    for name, threads, rate, step_seconds in rows:
        lines.append(f"| {name} | {threads} | {rate:.0f} | {step_seconds:.2f} |")
    lines += [
        "",
        "Batch size 16 for the tiny preset, 4 for SmolLM2-135M. candle's CPU thread pool spins while it",
        "waits, so on a loaded machine one thread can beat two (`--threads`). The Q8_0 SmolLM2 file has",
        "0.79 % zeros in its projection matrices, which `finetune` keeps at zero by default; with LoRA that",
        "means the masked adapter path, which forms each full-size update. `--no-masks` uses the",
        "factored path.",
        "",
        "Chromium: `node benches/browser-train-bench.mjs` measures the wasm `FineTuner` and records it in",
        "docs/benchmarks.md.",
        "",
    ]
    return lines


def scratch_lines(n_steps, steps, evals, replies, setup, size):
    lines = [
        SCRATCH_HEADING,
        "",
        f"`prunechat train --preset tiny --steps {n_steps} --batch-size 16 --seq-len 128 --threads 1 --to q8_0`",
        "",
        "```",
        *setup,
        "```",
        "",
        f"Output file: {size / 1e6:.1f} MB (Q8_0). Training loss (mean over assistant-reply tokens, nats) and held-out loss:",
        "",
        "| step | training loss (mean since the previous row) | held-out loss |",
        "| --- | --- | --- |",
    ]
    eval_by_step = {e["step"]: e["loss"] for e in evals}
    marks = sorted(set([0] + list(eval_by_step)))
    for previous, mark in zip([-1] + marks, marks):
        window = [s["report"]["loss"] for s in steps if previous < s["report"]["step"] <= mark]
        train = f"{statistics.mean(window):.3f}" if window else "—"
        held = f"{eval_by_step[mark]:.3f}" if mark in eval_by_step else "—"
        lines.append(f"| {mark} | {train} | {held} |")
    lines += [
        "",
        "The held-out loss is the curve to read. Batches are grouped by length, so consecutive steps see",
        "samples of similar length, whose per-token loss differs a lot, and the training loss swings with",
        "the position in the epoch.",
    ]
    lines += ["", "Greedy replies (`prunechat chat MODEL --prompt ... --temperature 0 --max-new-tokens 40`):", ""]
    for prompt, reply in replies:
        lines.append(f"- **{prompt}** → {reply}")
    return lines


def replace_section(page, heading, section):
    """Replace the section that starts at `heading` (up to the next `## ` heading) in `page`."""
    if heading not in page:
        return page.rstrip("\n") + "\n\n" + "\n".join(section) + "\n"
    start = page.index(heading)
    end = page.find("\n## ", start + len(heading))
    rest = "" if end == -1 else page[end:]
    return page[:start] + "\n".join(section).rstrip("\n") + "\n" + rest


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scratch-steps", type=int, default=1200, help="optimizer steps of the from-scratch run")
    parser.add_argument("--pruned", type=Path, nargs="+", help="pruned GGUF models for the recovery section")
    parser.add_argument("--text", type=Path,
                        help="a plain-text file: recovery trains on its calibration split and scores its held-out split")
    parser.add_argument("--recovery-methods", nargs="+", choices=sorted(RECOVERY_METHODS), default=["full"],
                        help="recovery fine-tuning methods (default: full)")
    parser.add_argument("--recovery-steps", type=int, default=30, help="optimizer steps of each recovery run")
    parser.add_argument("--train-only", action="store_true",
                        help="with --only recovery: fine-tune and keep the runs for a later call, write no page")
    parser.add_argument("--only", choices=["throughput", "scratch", "recovery"],
                        help="run one section and replace it in the existing page (recovery needs --pruned)")
    args = parser.parse_args()
    for path in (BIN, MODEL, CORPUS, *(args.pruned or []), *([args.text] if args.text else [])):
        if not path.exists():
            sys.exit(f"{path} is missing: run `cargo build --release` and scripts/fetch-model.sh first")
    if args.only == "recovery" and args.pruned is None:
        sys.exit("--only recovery needs --pruned PRUNED.gguf")

    cpu, cores, load, commit = machine()
    sections = {}
    with tempfile.TemporaryDirectory(prefix="prunechat-results-") as tmp:
        tmp = Path(tmp)
        if args.only in (None, "throughput"):
            sections[THROUGHPUT_HEADING] = throughput_lines(throughput(tmp), cpu, cores, load, commit)
        if args.only in (None, "scratch"):
            sections[SCRATCH_HEADING] = scratch_lines(args.scratch_steps, *from_scratch(tmp, args.scratch_steps))
        if args.only in (None, "recovery"):
            recovered = (recovery(tmp, args.pruned, args.text, args.recovery_steps, args.recovery_methods,
                                  args.train_only)
                         if args.pruned else None)
            if args.train_only:
                print(f"recovery runs kept in {RECOVERY_DIR}", file=sys.stderr)
                return
            sections[RECOVERY_HEADING] = recovery_lines(args.pruned, args.text, args.recovery_steps,
                                                        args.recovery_methods, recovered)

    if args.only is not None:
        page = OUT.read_text()
        for heading, section in sections.items():
            page = replace_section(page, heading, section)
        OUT.write_text(page)
    else:
        lines = [
            "# Training results",
            "",
            f"Written by `python3 scripts/training_results.py` on {datetime.date.today().isoformat()}, commit {commit}.",
            f"Machine: {cpu}, {cores} cores, load average {load:.1f} when the script started"
            " (the machine is shared, so other processes compete for the cores). `--only SECTION`",
            "reruns one section, which then states its own date and commit.",
            "",
        ]
        for section in sections.values():
            lines += section + [""]
        OUT.write_text("\n".join(lines).rstrip("\n") + "\n")
    print(f"wrote {OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
