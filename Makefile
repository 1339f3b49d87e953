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

.PHONY: run test setup setup-browser wasm native model variants serve fixtures bench prune-results training-results

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

## fixtures: regenerate tests/fixtures/llama_cpp_reference.json with llama.cpp
fixtures: model
	@if python3 -c 'import importlib.metadata as m, sys; sys.exit(m.version("llama-cpp-python") != "$(LLAMA_CPP_PYTHON_VERSION)")' 2>/dev/null; then \
		echo "fixtures: llama-cpp-python $(LLAMA_CPP_PYTHON_VERSION) already installed"; \
	else \
		echo "fixtures: installing llama-cpp-python $(LLAMA_CPP_PYTHON_VERSION) (compiles llama.cpp, about 5 minutes)"; \
		python3 -m pip install --quiet "llama-cpp-python==$(LLAMA_CPP_PYTHON_VERSION)"; \
	fi
	python3 scripts/make_llama_cpp_fixtures.py

## bench: browser benchmarks: inference against wllama on the same GGUF file, then wasm training
bench: setup-browser wasm model
	node benches/browser-bench.mjs
	node benches/browser-train-bench.mjs

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
