#!/usr/bin/env python3
"""Measure native llama.cpp (llama-cpp-python) on a GGUF file, the reference row of the browser benchmark.

For each thread count, the script loads the model once and measures:

- prefill: wall time of one `Llama.eval` call over each prompt, from an empty KV cache;
- decode: greedy tokens (top-k 1, every penalty off) after the decode prompt, counted after the
  first token over the time from the first to the last generated token, as prunechat counts them.

The prompts are rendered with the GGUF file's own chat template (`tokenizer.chat_template`) and
its default system prompt, as the browser engines render them, so the token counts match theirs.
Prints one JSON object on stdout:

    {"llama_cpp_python": VERSION, "system_info": "...", "model": PATH,
     "runs": [{"threads", "short_tokens", "short_prefill_ms", "short_prefill", "long_tokens", ...,
               "decode_prompt", "decode_tokens", "decode_rate", "load_ms"}]}

Usage: python3 benches/llama-cpp-bench.py --model FILE --prompts FILE [--threads 1,2] [--decode-tokens 128]
--prompts names a JSON file {"short": TEXT, "long": TEXT or null, "decode": [TEXT, ...]}; the decode
prompts are tried in order until a reply has at least 16 tokens. Needs llama-cpp-python
(`make llama-cpp-python` installs the version pinned in the Makefile).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import sys
import time
from pathlib import Path

# Same context as the browser runs (benches/common.mjs MAX_CONTEXT). A batch of 512 tokens fits the
# ~512-token prompt, so its prefill is one llama_decode call.
N_CTX = 2048
N_BATCH = 512
MIN_DECODE_TOKENS = 16


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--model", required=True, type=Path, help="GGUF file to load")
    parser.add_argument("--prompts", required=True, type=Path, help="JSON file with the short, long and decode prompts")
    parser.add_argument("--threads", default="1,2", help="comma-separated thread counts (default 1,2)")
    parser.add_argument("--decode-tokens", type=int, default=128, help="greedy tokens to generate (default 128)")
    args = parser.parse_args()
    try:
        args.threads = [int(value) for value in args.threads.split(",")]
    except ValueError:
        parser.error(f"--threads must be comma-separated integers, got {args.threads!r}")
    if any(threads < 1 for threads in args.threads):
        parser.error(f"--threads must be positive, got {args.threads}")
    return args


def render_prompt(llm, text: str) -> list[int]:
    """Render one user message with the model's chat template and tokenize it, special tokens parsed."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    template = llm.metadata.get("tokenizer.chat_template")
    if template is None:
        raise SystemExit(f"{llm.model_path}: the GGUF file has no tokenizer.chat_template")
    vocab_token = lambda token_id: llm._model.token_get_text(token_id) if token_id >= 0 else ""  # noqa: E731
    formatter = Jinja2ChatFormatter(
        template=template,
        eos_token=vocab_token(llm.token_eos()),
        bos_token=vocab_token(llm.token_bos()),
        add_generation_prompt=True,
    )
    prompt = formatter(messages=[{"role": "user", "content": text}]).prompt
    return llm.tokenize(prompt.encode("utf-8"), add_bos=False, special=True)


def measure_prefill(llm, tokens: list[int]) -> dict:
    # Llama.eval removes the KV cache entries from n_tokens on, so reset() empties the cache.
    llm.reset()
    started = time.perf_counter()
    llm.eval(tokens)
    elapsed = time.perf_counter() - started
    return {"tokens": len(tokens), "ms": elapsed * 1000, "rate": len(tokens) / elapsed}


def measure_decode(llm, tokens: list[int], max_tokens: int) -> dict:
    """Generate greedily; the rate counts the tokens after the first over the time since the first."""
    stop_tokens = {llm.token_eos()}
    end_of_turn = llm.tokenize(b"<|im_end|>", add_bos=False, special=True)
    if len(end_of_turn) == 1:
        stop_tokens.add(end_of_turn[0])
    arrivals = []
    generator = llm.generate(tokens, top_k=1, top_p=1.0, min_p=0.0, temp=0.0, repeat_penalty=1.0, reset=True)
    for token in generator:
        arrivals.append(time.perf_counter())
        if token in stop_tokens or len(arrivals) >= max_tokens:
            break
    generator.close()
    rate = (len(arrivals) - 1) / (arrivals[-1] - arrivals[0]) if len(arrivals) >= 2 else None
    return {"tokens": len(arrivals), "rate": rate}


def measure(model: Path, prompts: dict, threads: int, decode_tokens: int) -> dict:
    from llama_cpp import Llama

    # NOTE: the pip build of llama.cpp uses OpenMP, whose threads spin while they wait. On a 2-core
    # machine that also runs other work, the 2-thread figures then drop far below the 1-thread ones.
    started = time.perf_counter()
    llm = Llama(
        model_path=str(model),
        n_ctx=N_CTX,
        n_batch=N_BATCH,
        n_ubatch=N_BATCH,
        n_threads=threads,
        n_threads_batch=threads,
        n_gpu_layers=0,
        seed=1,
        verbose=False,
    )
    load_ms = (time.perf_counter() - started) * 1000
    result = {"threads": threads, "load_ms": load_ms}
    try:
        for name in ("short", "long"):
            if prompts.get(name) is None:
                continue
            prefill = measure_prefill(llm, render_prompt(llm, prompts[name]))
            result[f"{name}_tokens"] = prefill["tokens"]
            result[f"{name}_prefill_ms"] = prefill["ms"]
            result[f"{name}_prefill"] = prefill["rate"]

        decode = None
        for prompt in prompts["decode"]:
            decode = measure_decode(llm, render_prompt(llm, prompt), decode_tokens)
            result["decode_prompt"] = prompt
            if decode["tokens"] >= MIN_DECODE_TOKENS:
                break
        result["decode_tokens"] = decode["tokens"]
        result["decode_rate"] = decode["rate"]
    finally:
        llm.close()
    return result


def main() -> None:
    args = parse_args()
    try:
        import llama_cpp
    except ImportError:
        sys.exit("llama-cpp-python is not installed; run `make llama-cpp-python` first.")
    if not args.model.is_file():
        sys.exit(f"{args.model}: model file not found")
    prompts = json.loads(args.prompts.read_text(encoding="utf-8"))

    runs = [measure(args.model, prompts, threads, args.decode_tokens) for threads in args.threads]
    print(
        json.dumps(
            {
                "llama_cpp_python": importlib.metadata.version("llama-cpp-python"),
                "system_info": llama_cpp.llama_print_system_info().decode("utf-8", "replace").strip(),
                "model": str(args.model),
                "runs": runs,
            }
        )
    )


if __name__ == "__main__":
    main()
