# prunechat: `make run` builds everything and serves the chat page,
# `make test` builds everything and runs every test suite.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := run
# The steps share one cargo target directory, so running them in parallel only
# makes them wait on cargo's lock.
.NOTPARALLEL:

# rustup and `cargo install` put their tools here; CI shells have no profile.
export PATH := $(or $(CARGO_HOME),$(HOME)/.cargo)/bin:$(PATH)
export CHROMEDRIVER ?= /usr/bin/chromedriver

PORT ?= 8080
LLAMA_CPP_PYTHON_VERSION := 0.3.36

.PHONY: run test setup setup-browser wasm native model variants serve llama-cpp-python fixtures bench bench-models prune-results \
	training-results

## run: set up, build the wasm package and the CLI, fetch the model, prune the compare view's variants, serve on 127.0.0.1:$(PORT)
run: setup wasm native model variants serve

## test: everything `run` builds, then cargo, wasm-bindgen and browser end-to-end tests
test:
	scripts/test.sh

setup:
	scripts/setup.sh

setup-browser:
	scripts/setup.sh --browser

## wasm: pkg/ (one thread) and pkg-threads/ (a thread pool, built with nightly) for the page
wasm: setup
	wasm-pack build --release --target web --out-dir pkg
	scripts/build-wasm-threads.sh

## native: target/release/prunechat
native:
	cargo build --release

## model: models/*.gguf and data/chatterbot-corpus/
model: native
	scripts/fetch-model.sh

## variants: models/variants/*.gguf and models/manifest.json for the compare view (a few minutes on two cores)
variants: model
	python3 scripts/prepare-variants.py

serve:
	@echo "Open the URL below in a browser; Ctrl-C stops the server."
	PORT=$(PORT) python3 scripts/serve.py

## llama-cpp-python: install the pinned llama-cpp-python with pip unless it is installed (compiles llama.cpp, about 5 minutes)
llama-cpp-python:
	@if python3 -c 'import importlib.metadata as m, sys; sys.exit(m.version("llama-cpp-python") != "$(LLAMA_CPP_PYTHON_VERSION)")' 2>/dev/null; then \
		echo "llama-cpp-python $(LLAMA_CPP_PYTHON_VERSION) already installed"; \
	else \
		echo "installing llama-cpp-python $(LLAMA_CPP_PYTHON_VERSION) (compiles llama.cpp, about 5 minutes)"; \
		python3 -m pip install --quiet "llama-cpp-python==$(LLAMA_CPP_PYTHON_VERSION)"; \
	fi

## fixtures: regenerate tests/fixtures/llama_cpp_reference.json with llama.cpp
fixtures: model llama-cpp-python
	python3 scripts/make_llama_cpp_fixtures.py

## bench: browser benchmarks (about 15 minutes on two cores): prunechat on 1 and 2 threads against wllama and
## native llama.cpp on the same GGUF file, pruned variants, targets; then wasm training.
## BENCH_ARGS passes options, for example BENCH_ARGS="--quick --no-native" (see node benches/browser-bench.mjs --help)
bench: setup-browser wasm model bench-models llama-cpp-python
	node benches/browser-bench.mjs $(BENCH_ARGS)
	node benches/browser-train-bench.mjs

# The benchmark's pruned models, written under a hidden temporary name and renamed when complete.
# Calibration as scripts/prepare-variants.py: 8 samples of 128 tokens of the chatterbot corpus.
BENCH_MODELS := models/bench/ffn-25.gguf models/bench/ffn-50.gguf models/bench/wanda-50.gguf
BENCH_DENSE := models/smollm2-135m-instruct-q8_0.gguf
BENCH_CALIBRATION := --n-samples 8 --seq-len 128 --seed 0
PRUNECHAT ?= target/release/prunechat
bench_partial = $(dir $@).$(notdir $(basename $@)).partial.gguf

## bench-models: the pruned models of `make bench` in models/bench/ (a few minutes on two cores)
bench-models: $(BENCH_MODELS)

# FFN neurons removed by Wanda score, all layers competing, until 75% and 50% of the
# parameters (embeddings included) remain.
models/bench/ffn-%.gguf: | native model
	@mkdir -p models/bench
	$(PRUNECHAT) prune $(BENCH_DENSE) --structure ffn --score wanda --ratio global \
		--target-params $$(python3 -c 'print(1 - $*/100)') $(BENCH_CALIBRATION) \
		--report models/bench/ffn-$*.json --out $(bench_partial) >/dev/null
	mv $(bench_partial) $@

# Unstructured Wanda, 50% of every decoder matrix's weights set to zero: same shapes as dense.
models/bench/wanda-50.gguf: | native model
	@mkdir -p models/bench
	$(PRUNECHAT) prune $(BENCH_DENSE) --method wanda --sparsity 0.5 $(BENCH_CALIBRATION) \
		--report models/bench/wanda-50.json --out $(bench_partial) >/dev/null
	mv $(bench_partial) $@

## prune-results: connection pruning at six settings, then structured pruning to parameter budgets; writes docs/pruning-results.md (about two hours on two cores)
prune-results: native model setup-browser wasm
	python3 scripts/pruning-results.py
	python3 scripts/structured-results.py

## training-results: training throughput, a from-scratch run and recovery of the Wanda 50%, Wanda 2:4 and FFN 25% models; writes docs/training-results.md
RECOVERED := target/pruning-results/text-wanda-50.gguf target/pruning-results/text-wanda-2of4.gguf \
	target/structured-results/ffn-wanda-25-global.gguf
training-results: native model
	@for f in $(RECOVERED); do test -f $$f || { echo "$$f is missing: run make prune-results first"; exit 1; }; done
	python3 scripts/training_results.py --pruned $(RECOVERED) \
		--text target/pruning-results/flask-3.0.3-docs.txt
