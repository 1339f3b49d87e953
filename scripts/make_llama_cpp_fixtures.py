#!/usr/bin/env python3
"""Write llama.cpp reference outputs to tests/fixtures/llama_cpp_reference.json.

The fixture contains two parts that prunechat's tests compare against:

* tokenizer: llama.cpp token ids for edge-case strings (emoji with ZWJ and
  skin tones, combining characters, CJK, digits, code, whitespace runs,
  ChatML special tokens), read from the vocabulary of the Q4_1 model.
* generation: for four chat prompts rendered with the GGUF file's own chat
  template, the prompt string, its token ids and the first greedily generated
  token ids and text, from the Q8_0 model that `prunechat convert` writes.
  Also the five largest logits at the first generated position, for
  comparisons with a tolerance.

Before it records the replies, the script generates them under several
n_threads/n_batch settings and stores whether they agree.

Needs llama-cpp-python (`make fixtures` installs the pinned version) and the
models from scripts/fetch-model.sh. Run from anywhere:

    python3 scripts/make_llama_cpp_fixtures.py [--tokenizer-only]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_Q4_1 = REPO_ROOT / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_Q8_0 = REPO_ROOT / "models" / "smollm2-135m-instruct-q8_0.gguf"
DEFAULT_OUTPUT = REPO_ROOT / "tests" / "fixtures" / "llama_cpp_reference.json"

# Generation settings: greedy decoding with every penalty off.
SAMPLING = {"top_k": 1, "top_p": 1.0, "min_p": 0.0, "temp": 0.0, "repeat_penalty": 1.0}

# (n_threads, n_batch) pairs for the determinism check. The first one produces
# the recorded replies. n_batch=7 splits each prompt into several batches.
RUN_SETTINGS = [(2, 512), (1, 512), (2, 7)]

N_CTX = 1024
TOP_LOGITS = 5

# (name, text, special). special=True parses "<|im_start|>" and the like as
# single special tokens, special=False tokenizes them as plain text.
TOKENIZER_CASES: list[tuple[str, str, bool]] = [
    ("empty", "", True),
    ("single_space", " ", True),
    ("english_sentence", "The quick brown fox jumps over the lazy dog.", True),
    ("english_question", "What is the capital of France?", True),
    ("contractions", "I'm sure they'll say it's fine, isn't it? DON'T we've", True),
    ("leading_space_word", " Hello", True),
    ("leading_spaces", "   three leading spaces", True),
    ("trailing_spaces", "trailing spaces   ", True),
    ("whitespace_runs", "a  b   c    d\t\te \t \tf", True),
    ("spaces_only", "        ", True),
    ("newlines", "line one\nline two\n\n\nline five\n", True),
    ("crlf", "windows\r\nline endings\r\n", True),
    ("newline_space_mix", "  \n  \n\t\n", True),
    ("digits", "12345 3.14159", True),
    ("long_number", "1234567890123 and 007", True),
    ("arithmetic", "2+2=4, 10/3≈3.333, -1e-9", True),
    ("punctuation", "Hello!!! ... ??? --- (a) [b] {c} <d>", True),
    ("url", "https://example.com/path?q=1&r=2#frag", True),
    ("code_rust", 'fn main() {\n    println!("Hello, world!");\n}\n', True),
    ("code_python", "def square(x):\n\treturn x ** 2  # square\n", True),
    ("chinese", "你好，世界！今天天气很好。", True),
    ("chinese_mixed", "我喜欢用 Rust 写代码 and WebAssembly。", True),
    ("japanese", "こんにちは、世界。カタカナ", True),
    ("korean", "안녕하세요 세계", True),
    ("cyrillic", "Привет, мир!", True),
    ("arabic", "مرحبا بالعالم", True),
    ("accented_precomposed", "naïve café résumé Ångström", True),
    ("combining_marks", "cafe\u0301 n\u0303 a\u0308\u0304 \u0915\u093f", True),
    ("zalgo", "Z\u0324\u0354\u0367\u0311a\u0308\u0356\u032dl\u036e\u0312g\u030c\u0317o\u0319\u0314", True),
    ("emoji_simple", "I love pizza 🍕 and 🎉!", True),
    ("emoji_skin_tones", "👍🏽 👋🏿 👌🏻", True),
    ("emoji_zwj_family", "👨\u200d👩\u200d👧\u200d👦", True),
    ("emoji_zwj_skin_tone", "🧑🏽\u200d💻 👩🏻\u200d🔬", True),
    ("emoji_flags", "🇫🇷🇯🇵🏳️\u200d🌈", True),
    ("emoji_variation_selector", "❤️ ☺︎ ✈️", True),
    ("zero_width", "zero\u200bwidth\u200cnon\u200djoiner\ufeff", True),
    ("chatml_turn", "<|im_start|>user\nHi<|im_end|>\n", True),
    ("chatml_turn_as_text", "<|im_start|>user\nHi<|im_end|>\n", False),
    (
        "chatml_prompt",
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
        "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
        True,
    ),
    ("special_adjacent", "<|im_start|><|im_end|><|endoftext|>", True),
    ("special_adjacent_as_text", "<|im_start|><|im_end|><|endoftext|>", False),
    ("special_with_spaces", " <|im_end|> \n<|im_start|> x", True),
    ("special_incomplete", "<|im_start <|im_end| im_start|>", True),
]

CHAT_PROMPTS: list[dict] = [
    {
        "name": "capital_of_france",
        "messages": [{"role": "user", "content": "What is the capital of France?"}],
    },
    {
        "name": "haiku",
        "messages": [{"role": "user", "content": "Write a haiku about the sea."}],
    },
    {
        "name": "system_prompt",
        "messages": [
            {"role": "system", "content": "You are a concise assistant. Answer in one sentence."},
            {"role": "user", "content": "Why is the sky blue?"},
        ],
    },
    {
        "name": "arithmetic",
        "messages": [{"role": "user", "content": "What is 2+2?"}],
    },
    {
        "name": "primary_colors",
        "messages": [{"role": "user", "content": "Name the three primary colors."}],
    },
    {
        "name": "chinese_greeting",
        "messages": [{"role": "user", "content": "你好！请用中文介绍一下你自己。"}],
    },
    {
        "name": "python_function",
        "messages": [{"role": "user", "content": "Write a Python function that returns the square of a number."}],
    },
    {
        "name": "multi_turn",
        "messages": [
            {"role": "user", "content": "Hi! My name is Ana."},
            {"role": "assistant", "content": "Hello Ana! How can I help you today?"},
            {"role": "user", "content": "What is my name?"},
        ],
    },
]


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_model(llama_cpp, path: Path, *, vocab_only: bool, n_threads: int = 2, n_batch: int = 512):
    return llama_cpp.Llama(
        model_path=str(path),
        vocab_only=vocab_only,
        n_ctx=N_CTX,
        n_threads=n_threads,
        n_threads_batch=n_threads,
        n_batch=n_batch,
        seed=0,
        verbose=False,
    )


def token_text(model, token_id: int) -> str:
    """Return the vocabulary entry of a token (byte-level BPE form, e.g. 'Ġthe')."""
    return model._model.token_get_text(token_id)


def decode(model, token_ids: list[int]) -> str:
    """Decode token ids to text, with special tokens written out.

    Invalid UTF-8 (a multi-byte character cut at the end) becomes U+FFFD.
    """
    return model.detokenize(token_ids, special=True).decode("utf-8", errors="replace")


def build_tokenizer_cases(llama_cpp, q4_path: Path) -> list[dict]:
    vocab = load_model(llama_cpp, q4_path, vocab_only=True)
    cases = []
    for name, text, special in TOKENIZER_CASES:
        ids = vocab.tokenize(text.encode("utf-8"), add_bos=False, special=special)
        round_trip = vocab.detokenize(ids, special=True).decode("utf-8", errors="replace")
        cases.append(
            {
                "name": name,
                "text": text,
                "special": special,
                "ids": ids,
                "tokens": [token_text(vocab, token_id) for token_id in ids],
                "decodes_to_text": round_trip == text,
            }
        )
    return cases


def render_chat_template(template: str, messages: list[dict], bos_token: str, eos_token: str) -> str:
    """Render a GGUF chat template as transformers and llama-cpp-python do."""
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    environment = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"]
    )
    return environment.from_string(template).render(
        messages=messages,
        add_generation_prompt=True,
        bos_token=bos_token,
        eos_token=eos_token,
    )


def end_of_generation_ids(model) -> set[int]:
    ids = {model.token_eos()}
    for text in ("<|im_end|>", "<|endoftext|>"):
        pieces = model.tokenize(text.encode(), add_bos=False, special=True)
        if len(pieces) == 1:
            ids.add(pieces[0])
    return ids


def generate_greedy(model, prompt_ids: list[int], max_new_tokens: int, stop_ids: set[int]) -> tuple[list[int], str]:
    generated: list[int] = []
    # reset() drops the cached prefix of the previous prompt, so every prompt
    # is evaluated from position 0 in n_batch-sized batches.
    model.reset()
    for token_id in model.generate(prompt_ids, reset=True, **SAMPLING):
        generated.append(int(token_id))
        if token_id in stop_ids:
            return generated, "end_of_generation_token"
        if len(generated) >= max_new_tokens:
            return generated, "max_new_tokens"
    return generated, "generator_stopped"


def first_step_top_logits(model, prompt_ids: list[int]) -> list[dict]:
    import numpy

    model.reset()
    model.eval(prompt_ids)
    # Without logits_all, llama.cpp keeps one row of logits: the last prompt
    # token's, which predicts the first generated token.
    last_row = numpy.ctypeslib.as_array(model._ctx.get_logits(), shape=(model.n_vocab(),))
    logits = last_row.astype(numpy.float64)
    order = numpy.argsort(-logits, kind="stable")[:TOP_LOGITS]
    return [{"id": int(token_id), "logit": round(float(logits[token_id]), 4)} for token_id in order]


def step_margins(llama_cpp, q8_path: Path, prompt_ids: list[int], generated: list[int]) -> list[float]:
    """Return, for each generated token, the gap between the top two logits at that step.

    A small gap is a near tie: another implementation with slightly different rounding may
    pick the other token there, so tests compare greedy tokens only up to such a step.
    """
    import numpy

    model = llama_cpp.Llama(
        model_path=str(q8_path), n_ctx=N_CTX, n_threads=2, n_batch=512, logits_all=True, verbose=False
    )
    model.eval(prompt_ids + generated[:-1])
    margins = []
    for step in range(len(generated)):
        row = numpy.array(model.scores[len(prompt_ids) - 1 + step], dtype=numpy.float64)
        top = numpy.sort(row)[-2:]
        margins.append(round(float(top[1] - top[0]), 4))
    del model
    return margins


def build_generation(llama_cpp, q8_path: Path, max_new_tokens: int) -> tuple[dict, list[dict]]:
    runs = []
    for n_threads, n_batch in RUN_SETTINGS:
        model = load_model(llama_cpp, q8_path, vocab_only=False, n_threads=n_threads, n_batch=n_batch)
        template = model.metadata.get("tokenizer.chat_template")
        if not template:
            raise SystemExit(f"{q8_path} has no tokenizer.chat_template metadata")
        bos_token = token_text(model, model.token_bos())
        eos_token = token_text(model, model.token_eos())
        stop_ids = end_of_generation_ids(model)

        results = []
        for chat in CHAT_PROMPTS:
            prompt = render_chat_template(template, chat["messages"], bos_token, eos_token)
            prompt_ids = model.tokenize(prompt.encode("utf-8"), add_bos=False, special=True)
            generated, stop_reason = generate_greedy(model, prompt_ids, max_new_tokens, stop_ids)
            results.append(
                {
                    "name": chat["name"],
                    "messages": chat["messages"],
                    "prompt": prompt,
                    "prompt_ids": prompt_ids,
                    "generated_ids": generated,
                    "generated_text": decode(model, generated),
                    "stop_reason": stop_reason,
                    "first_step_top_logits": first_step_top_logits(model, prompt_ids),
                    "step_margins": step_margins(llama_cpp, q8_path, prompt_ids, generated),
                }
            )
        runs.append({"n_threads": n_threads, "n_batch": n_batch, "template": template, "results": results})
        del model

    reference = runs[0]
    differences = []
    for run in runs[1:]:
        for expected, actual in zip(reference["results"], run["results"]):
            if expected["generated_ids"] != actual["generated_ids"]:
                differences.append(
                    {
                        "prompt": expected["name"],
                        "n_threads": run["n_threads"],
                        "n_batch": run["n_batch"],
                        "generated_ids": actual["generated_ids"],
                    }
                )
            for expected_logit, actual_logit in zip(
                expected["first_step_top_logits"], actual["first_step_top_logits"]
            ):
                if expected_logit != actual_logit:
                    differences.append(
                        {
                            "prompt": expected["name"],
                            "n_threads": run["n_threads"],
                            "n_batch": run["n_batch"],
                            "first_step_top_logits": actual["first_step_top_logits"],
                        }
                    )
                    break

    determinism = {
        "settings": [{"n_threads": t, "n_batch": b} for t, b in RUN_SETTINGS],
        "recorded_with": {"n_threads": reference["n_threads"], "n_batch": reference["n_batch"]},
        "generated_ids_identical": not any("generated_ids" in d for d in differences),
        "top_logits_identical": not any("first_step_top_logits" in d for d in differences),
        "differences": differences,
    }
    generation = {
        "model": str(q8_path.relative_to(REPO_ROOT)) if q8_path.is_relative_to(REPO_ROOT) else str(q8_path),
        "model_sha256": sha256_file(q8_path),
        "chat_template": reference["template"],
        "sampling": {**SAMPLING, "max_new_tokens": max_new_tokens, "add_bos": False, "special": True},
        "n_ctx": N_CTX,
        "determinism": determinism,
        "prompts": reference["results"],
    }
    return generation, differences


def to_json(value, indent: int = 0) -> str:
    """Format as indented JSON with each list of scalars on one line."""
    pad = "  " * indent
    inner = "  " * (indent + 1)
    if isinstance(value, dict):
        if not value:
            return "{}"
        items = [f"{inner}{json.dumps(key)}: {to_json(item, indent + 1)}" for key, item in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(value, list):
        if all(not isinstance(item, (dict, list)) for item in value):
            return "[" + ", ".join(json.dumps(item, ensure_ascii=False) for item in value) + "]"
        items = [inner + to_json(item, indent + 1) for item in value]
        return "[\n" + ",\n".join(items) + "\n" + pad + "]"
    return json.dumps(value, ensure_ascii=False)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--q4-model", type=Path, default=DEFAULT_Q4_1, help="Q4_1 GGUF file whose vocabulary is tokenized")
    parser.add_argument("--q8-model", type=Path, default=DEFAULT_Q8_0, help="Q8_0 GGUF file that generates the replies")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="JSON file to write")
    parser.add_argument("--max-new-tokens", type=int, default=32, help="generated tokens recorded per prompt")
    parser.add_argument(
        "--tokenizer-only",
        action="store_true",
        help="write only the tokenizer part (no Q8_0 model needed)",
    )
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    try:
        import llama_cpp
    except ImportError:
        print("error: llama-cpp-python is not installed; run 'make fixtures', which installs it", file=sys.stderr)
        return 1

    for path in [args.q4_model] + ([] if args.tokenizer_only else [args.q8_model]):
        if not path.is_file():
            print(f"error: model not found: {path}; run scripts/fetch-model.sh", file=sys.stderr)
            return 1

    fixture = {
        "generator": "scripts/make_llama_cpp_fixtures.py",
        "llama_cpp_python_version": llama_cpp.__version__,
        "llama_cpp_version": llama_cpp.llama_version().decode(),
        "llama_cpp_system_info": llama_cpp.llama_print_system_info().decode().strip(),
        "python_version": platform.python_version(),
        "machine": platform.machine(),
        "tokenizer": {
            "model": str(args.q4_model.relative_to(REPO_ROOT)) if args.q4_model.is_relative_to(REPO_ROOT) else str(args.q4_model),
            "model_sha256": sha256_file(args.q4_model),
            "call": "Llama(vocab_only=True).tokenize(text.encode('utf-8'), add_bos=False, special=case.special)",
            "cases": build_tokenizer_cases(llama_cpp, args.q4_model),
        },
    }
    print(f"tokenizer: {len(fixture['tokenizer']['cases'])} cases")

    if not args.tokenizer_only:
        generation, differences = build_generation(llama_cpp, args.q8_model, args.max_new_tokens)
        fixture["generation"] = generation
        for prompt in generation["prompts"]:
            print(f"generation: {prompt['name']}: {len(prompt['generated_ids'])} tokens, {prompt['generated_text']!r}")
        if differences:
            print(f"generation: WARNING: {len(differences)} differences between n_threads/n_batch settings", file=sys.stderr)
        else:
            print(f"generation: identical under n_threads/n_batch settings {RUN_SETTINGS}")

    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(to_json(fixture) + "\n", encoding="utf-8")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
