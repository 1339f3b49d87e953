#!/usr/bin/env node
// Browser benchmark of the wasm engine in headless Chromium, against wllama and native llama.cpp.
//
// Drives www/worker.js through its message protocol (docs/worker-protocol.md) from the empty
// page benches/bench.html and measures, per run and per thread count (1 and 2):
//   - model load: first load over HTTP from 127.0.0.1 (download + wasm instantiation + engine
//     construction), and a second load from the Cache API after a page reload;
//   - after that reload, the time from navigation start and from the `load` message to the
//     first token of the short prompt;
//   - time to first token and prefill speed for a ~32-token and a ~512-token prompt (chat
//     template included);
//   - decode speed over 128 greedy tokens;
//   - peak wasm memory.
// The 2-thread runs send `threads: 2` in the `load` message; when `loaded.threads` reports 1
// (no threaded build, or no cross-origin isolation) the row reads "not available".
// The same prompts run through wllama (llama.cpp compiled to wasm, the npm package in
// package.json) on 1 and 2 threads, and through native llama.cpp (benches/llama-cpp-bench.py,
// llama-cpp-python). The pruned models of `make bench-models` run on prunechat alone.
// It prints one table per model, the bandwidth floor of each file and a targets table, as
// Markdown, and replaces the browser section of docs/benchmarks.md.
//
// Usage: node benches/browser-bench.mjs --help
// With PRUNECHAT_URL set it uses that server, else it starts scripts/serve.py on a free port of
// 127.0.0.1 and stops it at the end.

import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs, promisify } from 'node:util';
import { chromium } from 'playwright-core';

import { buildReport, formatMiB } from './bench-report.mjs';
import {
  CHROMIUM_ARGS,
  CHROMIUM_PATH,
  GREEDY,
  installDriver,
  loadModel,
  MAX_CONTEXT,
  replaceSection,
  ROOT,
  runTurn,
  startServer,
  timedRequest,
  withTimeout,
} from './common.mjs';

const BENCHMARKS_DOC = join(ROOT, 'docs', 'benchmarks.md');
const SECTION_START = '<!-- browser-bench:start -->';
const SECTION_END = '<!-- browser-bench:end -->';

const DENSE_MODEL = 'models/smollm2-135m-instruct-q8_0.gguf';
// The pruned models, made by `make bench-models` with `prunechat prune` (see the Makefile).
const VARIANTS = [
  { id: 'ffn-25', path: 'models/bench/ffn-25.gguf', method: 'FFN neurons removed by Wanda score, all layers competing (`--structure ffn --score wanda --ratio global --target-params 0.75`)' },
  { id: 'ffn-50', path: 'models/bench/ffn-50.gguf', method: 'FFN neurons removed by Wanda score, all layers competing (`--structure ffn --score wanda --ratio global --target-params 0.5`)' },
  { id: 'wanda-50', path: 'models/bench/wanda-50.gguf', method: 'unstructured Wanda, 50% of the weights of every decoder matrix set to zero (`--method wanda --sparsity 0.5`); the shapes, and so the work of the dense kernel, stay those of the dense model' },
];
const THREAD_COUNTS = [1, 2];
const ENGINE_NAMES = { prunechat: 'prunechat', wllama: 'wllama', native: 'llama.cpp native' };

const DECODE_TOKENS = 128;
// About 32 tokens once the chat template and SmolLM2's default system prompt
// are added; the table shows the exact count.
const SHORT_PROMPT = 'What is the capital of France?';
const LONG_PROMPT_TOKENS = 512;
// Prompts whose greedy reply is long on SmolLM2, so that 128 tokens are decoded before the model
// ends its reply. A pruned model may end its reply at once, so the prompts are tried in order
// until a reply has at least MIN_DECODE_TOKENS tokens. The tables name the prompt used and show
// the count actually generated.
const DECODE_PROMPTS = [
  'Count from 1 to 200, separated by commas.',
  'Write a long story about a dragon who learns to cook.',
  'Explain in detail how a computer runs a program.',
];
const MIN_DECODE_TOKENS = 16;
const FILLER_SENTENCE =
  'The quick brown fox jumps over the lazy dog while the farmer counts his sheep in the valley. ';
const STEP_TIMEOUT_MS = 600_000;

const USAGE = `Usage: node benches/browser-bench.mjs [options]
  --runs N          measured runs per engine and model; medians are reported (default 3, 1 with --quick)
  --quick           development run: 1 run unless --runs is given, and wllama and the pruned models
                    skip the ~512-token prompt
  --no-wllama       skip the wllama runs
  --no-native       skip the native llama.cpp runs (benches/llama-cpp-bench.py)
  --no-variants     skip the pruned models of models/bench/
  --no-write        print the report without updating docs/benchmarks.md
Set PRUNECHAT_URL to use a running server; otherwise scripts/serve.py is started on 127.0.0.1.
\`make bench-models\` writes the pruned models; \`make llama-cpp-python\` installs llama-cpp-python.`;

function parseOptions() {
  const { values } = parseArgs({
    options: {
      runs: { type: 'string' },
      quick: { type: 'boolean', default: false },
      'no-wllama': { type: 'boolean', default: false },
      'no-native': { type: 'boolean', default: false },
      'no-variants': { type: 'boolean', default: false },
      'no-write': { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    console.log(USAGE);
    process.exit(0);
  }
  const runsText = values.runs ?? (values.quick ? '1' : '3');
  const runs = Number(runsText);
  if (!Number.isInteger(runs) || runs < 1) {
    throw new Error(`--runs must be a positive integer, got "${runsText}".`);
  }
  return {
    runs,
    quick: values.quick,
    wllama: !values['no-wllama'],
    native: !values['no-native'],
    variants: !values['no-variants'],
    write: !values['no-write'],
  };
}

/** Returns the command line as the report shows it. */
function commandLine() {
  return ['node benches/browser-bench.mjs', ...process.argv.slice(2)].join(' ');
}

// ---------------------------------------------------------------------------
// prunechat runs

/**
 * Builds a prompt of about `target` prompt tokens (chat template included) by
 * repeating a filler sentence, measuring with one-token turns.
 */
async function calibratePrompt(page, target) {
  const question = 'Summarize the text above in one sentence.';
  const build = (repeats) => `${FILLER_SENTENCE.repeat(repeats)}\n\n${question}`;
  const empty = (await runTurn(page, question, 1)).turnStart.prompt_tokens;
  const perSentence = (await runTurn(page, build(4), 1)).turnStart.prompt_tokens - empty;
  const repeats = Math.max(0, Math.round((target - empty) / (perSentence / 4)));
  return build(repeats);
}

/** Runs the decode prompts in order until one reply has MIN_DECODE_TOKENS tokens. */
async function runDecode(page) {
  let turn = null;
  for (const prompt of DECODE_PROMPTS) {
    turn = await runTurn(page, prompt, DECODE_TOKENS);
    const stats = turn.done.stats;
    if (stats.n_generated >= MIN_DECODE_TOKENS && stats.decode_tokens_per_s !== null) {
      return { prompt, turn };
    }
  }
  return { prompt: DECODE_PROMPTS.at(-1), turn };
}

/**
 * Measures one prunechat run on `threads` threads in a fresh browser context. Returns
 * {reportedThreads, info, prompts, decodePrompt, values}; `values` is null when the worker
 * reports a thread count other than the one requested.
 */
async function measurePrunechatRun(browser, baseUrl, modelPath, { threads, prompts, long }) {
  const context = await browser.newContext();
  try {
    const page = await context.newPage();
    await page.goto(`${baseUrl}/benches/bench.html`);
    await page.evaluate(installDriver);
    const modelUrl = `${baseUrl}/${modelPath}`;

    const cold = await loadModel(page, modelUrl, MAX_CONTEXT, threads);
    // A worker without the `threads` field in `loaded` predates the threaded build: 1 thread.
    const reportedThreads = cold.threads ?? 1;
    if (reportedThreads !== threads) {
      return { reportedThreads, info: cold.info, prompts, decodePrompt: null, values: null };
    }
    if (cold.source.cached) {
      throw new Error('the first load of a fresh browser context came from the cache');
    }
    if (prompts === null) {
      prompts = { short: SHORT_PROMPT, long: await calibratePrompt(page, LONG_PROMPT_TOKENS) };
    }

    const short = await runTurn(page, prompts.short, 1);
    const longTurn = long ? await runTurn(page, prompts.long, 1) : null;
    const decode = await runDecode(page);
    const peakMemory = await page.evaluate(() => window.benchPeakMemory());

    // Reload with the model in the Cache API, then time the first token of the short prompt
    // from navigation start (performance.timeOrigin of the reloaded page) and from `load`.
    await page.reload();
    await page.evaluate(installDriver);
    const warm = await timedRequest(page, { type: 'load', url: modelUrl, maxContext: MAX_CONTEXT, threads }, 'loaded');
    const warmLoaded = warm.messages.at(-1);
    if (!warmLoaded.source.cached) {
      throw new Error('the second load did not come from the Cache API');
    }
    const sampling = { ...GREEDY, max_new_tokens: 1 };
    const first = await timedRequest(page, { type: 'send', text: prompts.short, system: '', sampling }, 'done');
    const firstToken = first.messages.find((message) => message.type === 'token') ?? first.messages.at(-1);

    return {
      reportedThreads,
      info: cold.info,
      prompts,
      decodePrompt: decode.prompt,
      values: {
        loadColdMs: cold.total_ms,
        engineMs: cold.load_ms,
        loadCachedMs: warmLoaded.total_ms,
        cachedFirstTokenMs: firstToken.page_ms,
        cachedLoadToFirstTokenMs: firstToken.page_ms - warm.sentMs,
        shortTokens: short.turnStart.prefill_tokens,
        shortTtftMs: short.done.stats.ttft_ms,
        shortPrefill: short.done.stats.prefill_tokens_per_s,
        longTokens: longTurn?.turnStart.prefill_tokens ?? null,
        longTtftMs: longTurn?.done.stats.ttft_ms ?? null,
        longPrefill: longTurn?.done.stats.prefill_tokens_per_s ?? null,
        decodeTokens: decode.turn.done.stats.n_generated,
        decodeRate: decode.turn.done.stats.decode_tokens_per_s,
        peakMemory,
      },
    };
  } finally {
    await context.close();
  }
}

// ---------------------------------------------------------------------------
// Machine limits, measured by src/wasm_limits.rs in the page's main thread

const LIMITS_BUFFER_BYTES = 256 * 2 ** 20;
const LIMITS_PASSES = 5;
const SIMD_ITERATIONS = 20_000_000;
const KERNEL_PROBE_RUNS = 200;

async function measureLimitsInPage({ bufferBytes, passes, simdIterations, kernelRuns }) {
  const wasm = await import('/pkg/prunechat.js');
  await wasm.default();
  const timeOf = (work) => {
    const start = performance.now();
    const checksum = work();
    return { seconds: (performance.now() - start) / 1000, checksum };
  };
  const medianOf = (values) => values.sort((a, b) => a - b)[Math.floor(values.length / 2)];
  const buffer = new wasm.LimitsBuffer(bufferBytes);
  const probe = new wasm.KernelProbe();
  try {
    buffer.readOnce();
    buffer.copyOnce();
    probe.run(kernelRuns);
    const reads = [];
    const copies = [];
    const simd = [];
    const kernel = [];
    for (let pass = 0; pass < passes; pass += 1) {
      reads.push(buffer.bytes / timeOf(() => buffer.readOnce()).seconds);
      copies.push(buffer.bytes / timeOf(() => buffer.copyOnce()).seconds);
      const flops = simdIterations * wasm.simdMultiplyAddFlopsPerIteration();
      simd.push(flops / timeOf(() => wasm.simdMultiplyAdd(simdIterations)).seconds);
      kernel.push((kernelRuns * probe.macsPerRun()) / timeOf(() => probe.run(kernelRuns)).seconds);
    }
    return {
      readBytesPerS: medianOf(reads),
      copyBytesPerS: medianOf(copies),
      simdFlopsPerS: medianOf(simd),
      kernelMacsPerS: medianOf(kernel),
    };
  } finally {
    buffer.free();
    probe.free();
  }
}

async function measureLimits(browser, baseUrl) {
  const context = await browser.newContext();
  try {
    const page = await context.newPage();
    await page.goto(`${baseUrl}/benches/bench.html`);
    return await page.evaluate(measureLimitsInPage, {
      bufferBytes: LIMITS_BUFFER_BYTES,
      passes: LIMITS_PASSES,
      simdIterations: SIMD_ITERATIONS,
      kernelRuns: KERNEL_PROBE_RUNS,
    });
  } finally {
    await context.close();
  }
}

// ---------------------------------------------------------------------------
// wllama reference run

const WLLAMA_MODULE = '/node_modules/@wllama/wllama/esm/index.js';
const WLLAMA_WASM = '/node_modules/@wllama/wllama/esm/wasm/wllama.wasm';

/**
 * Runs the prompts through wllama inside the page. Prefill and decode speeds
 * are llama.cpp's own timings; time to first token is the wall time of a
 * one-token completion. The KV cache is not reused between prompts.
 * wllama runs its pthread build when `threads` > 1 and the page can share memory
 * (cross-origin isolated); `threads` in the result is the count it actually uses.
 */
async function runWllamaInPage({ moduleUrl, wasmUrl, modelUrl, maxContext, threads, prompts, long, decodePrompt, decodeTokens }) {
  const { Wllama } = await import(moduleUrl);
  const wllama = new Wllama({ default: wasmUrl }, { suppressNativeLog: true });

  const loadStarted = performance.now();
  // n_gpu_layers 0: CPU only, as prunechat. Chromium may offer WebGPU
  // through a software adapter even with --disable-gpu.
  await wllama.loadModelFromUrl(modelUrl, { n_ctx: maxContext, n_threads: threads, n_gpu_layers: 0, useCache: false });
  const loadMs = performance.now() - loadStarted;
  const usedThreads = wllama.getNumThreads();
  if (usedThreads !== threads) {
    await wllama.exit();
    return { threads: usedThreads, values: null };
  }

  const complete = async (content, maxTokens) => {
    const started = performance.now();
    const response = await wllama.createChatCompletion({
      messages: [{ role: 'user', content }],
      max_tokens: maxTokens,
      temperature: 0,
      seed: 1,
      cache_prompt: false,
    });
    return { wallMs: performance.now() - started, timings: response.timings };
  };
  const short = await complete(prompts.short, 1);
  const longTurn = long ? await complete(prompts.long, 1) : null;
  const decode = await complete(decodePrompt, decodeTokens);
  await wllama.exit();

  return {
    threads: usedThreads,
    values: {
      loadColdMs: loadMs,
      shortTokens: short.timings.prompt_n,
      shortTtftMs: short.wallMs,
      shortPrefill: short.timings.prompt_per_second,
      longTokens: longTurn?.timings.prompt_n ?? null,
      longTtftMs: longTurn?.wallMs ?? null,
      longPrefill: longTurn?.timings.prompt_per_second ?? null,
      decodeTokens: decode.timings.predicted_n,
      decodeRate: decode.timings.predicted_per_second,
    },
  };
}

async function measureWllamaRun(browser, baseUrl, modelPath, { threads, prompts, long }) {
  // wllama starts its workers from blob: URLs, which the page CSP
  // (worker-src 'self') rejects, so this context bypasses the CSP.
  const context = await browser.newContext({ bypassCSP: true });
  try {
    const page = await context.newPage();
    await page.goto(`${baseUrl}/benches/bench.html`);
    return await page.evaluate(runWllamaInPage, {
      moduleUrl: WLLAMA_MODULE,
      wasmUrl: WLLAMA_WASM,
      modelUrl: `${baseUrl}/${modelPath}`,
      maxContext: MAX_CONTEXT,
      threads,
      prompts,
      long,
      decodePrompt: DECODE_PROMPTS[0],
      decodeTokens: DECODE_TOKENS,
    });
  } finally {
    await context.close();
  }
}

function wllamaVersion() {
  try {
    const manifest = join(ROOT, 'node_modules', '@wllama', 'wllama', 'package.json');
    return JSON.parse(readFileSync(manifest, 'utf8')).version;
  } catch {
    return 'unknown';
  }
}

// ---------------------------------------------------------------------------
// Native llama.cpp runs (benches/llama-cpp-bench.py)

const NATIVE_SCRIPT = join(ROOT, 'benches', 'llama-cpp-bench.py');
const NATIVE_TIMEOUT_MS = 600_000;

/** Runs benches/llama-cpp-bench.py once on all thread counts; returns its parsed JSON output. */
async function measureNativeRun(modelPath, prompts, long) {
  const directory = mkdtempSync(join(tmpdir(), 'prunechat-bench-'));
  try {
    const promptsFile = join(directory, 'prompts.json');
    writeFileSync(promptsFile, JSON.stringify({ short: prompts.short, long: long ? prompts.long : null, decode: DECODE_PROMPTS }));
    const { stdout } = await promisify(execFile)(
      'python3',
      [NATIVE_SCRIPT, '--model', join(ROOT, modelPath), '--prompts', promptsFile,
        '--threads', THREAD_COUNTS.join(','), '--decode-tokens', String(DECODE_TOKENS)],
      { timeout: NATIVE_TIMEOUT_MS, maxBuffer: 16 * 2 ** 20 },
    );
    return JSON.parse(stdout);
  } finally {
    rmSync(directory, { recursive: true, force: true });
  }
}

function nativeValues(run) {
  return {
    loadColdMs: run.load_ms,
    shortTokens: run.short_tokens,
    shortPrefill: run.short_prefill,
    longTokens: run.long_tokens ?? null,
    longPrefill: run.long_prefill ?? null,
    decodeTokens: run.decode_tokens,
    decodeRate: run.decode_rate,
  };
}

// ---------------------------------------------------------------------------
// Orchestration

/** Creates the row of one engine configuration: its runs, or why it has none. */
function newResult(engine, threads) {
  return { engine, threads, runs: [], unavailable: null, error: null };
}

function newModel(id, path, method) {
  return { id, path, method, info: null, fileBytes: null, results: [], decodePrompts: new Set() };
}

function logRun(label, run, values) {
  const rounded = JSON.stringify(values, (key, value) => (typeof value === 'number' ? Number(value.toFixed(1)) : value));
  console.error(`bench: ${label} run ${run}: ${rounded}`);
}

/** Describes a pruned or dense file from the engine's `info`, relative to the dense model. */
function describeModel(model, dense) {
  const info = model.info;
  const ffn = info.ffn_dim;
  const heads = info.n_heads;
  const range = (values) => (Math.min(...values) === Math.max(...values) ? `${values[0]}` : `${Math.min(...values)}–${Math.max(...values)}`);
  const shape = `${info.n_layers} layers, FFN width ${range(ffn)}, ${range(heads)} query heads`;
  const size = `${(info.n_params / 1e6).toFixed(1)} M parameters, ${formatMiB(info.file_bytes)}`;
  // Q8_0 rounding alone leaves a fraction of a percent of the dense weights at zero.
  const zeros = info.decoder_sparsity === null || info.decoder_sparsity === undefined
    ? ''
    : `, ${(info.decoder_sparsity * 100).toFixed(1)}% of the decoder weights zero`;
  if (model.id === 'dense') {
    return `${info.name}, dense, ${shape}${zeros}; ${size}.`;
  }
  let removed = 'no parameters removed (the zeros are stored)';
  if (dense.info && info.n_params < dense.info.n_params) {
    const denseNeurons = dense.info.ffn_dim.reduce((a, b) => a + b, 0);
    const neurons = ffn.reduce((a, b) => a + b, 0);
    const fraction = 1 - info.n_params / dense.info.n_params;
    removed = `${(fraction * 100).toFixed(1)}% of the parameters removed (${denseNeurons - neurons} of ${denseNeurons} FFN neurons)`;
  }
  return `${model.method}. Result: ${removed}, ${shape}${zeros}; ${size}.`;
}

/** Measures one prunechat configuration once, marking it unavailable on a thread-count mismatch. */
async function runPrunechat(browser, baseUrl, model, result, run, prompts, long) {
  const label = `prunechat ${model.id} ${result.threads}t`;
  try {
    const measuring = measurePrunechatRun(browser, baseUrl, model.path, { threads: result.threads, prompts, long });
    const outcome = await withTimeout(measuring, STEP_TIMEOUT_MS, `${label} run ${run}`);
    model.info = outcome.info;
    model.fileBytes = outcome.info.file_bytes;
    if (outcome.values === null) {
      result.unavailable = `not available (reported ${outcome.reportedThreads} thread${outcome.reportedThreads === 1 ? '' : 's'})`;
      console.error(`bench: ${label}: ${result.unavailable}`);
      return outcome.prompts;
    }
    model.decodePrompts.add(outcome.decodePrompt);
    result.runs.push(outcome.values);
    logRun(label, run, outcome.values);
    return outcome.prompts;
  } catch (error) {
    // One failed configuration leaves the other rows usable, so it is reported in its row.
    result.error = error.message.split('\n')[0];
    console.error(`bench: ${label} failed: ${error.stack ?? error}`);
    return prompts;
  }
}

async function runWllama(browser, baseUrl, model, result, run, prompts, long) {
  const label = `wllama ${model.id} ${result.threads}t`;
  try {
    const measuring = measureWllamaRun(browser, baseUrl, model.path, { threads: result.threads, prompts, long });
    const outcome = await withTimeout(measuring, STEP_TIMEOUT_MS, `${label} run ${run}`);
    if (outcome.values === null) {
      result.unavailable = `not available (reported ${outcome.threads} thread${outcome.threads === 1 ? '' : 's'})`;
      console.error(`bench: ${label}: ${result.unavailable}`);
      return;
    }
    result.runs.push(outcome.values);
    logRun(label, run, outcome.values);
  } catch (error) {
    result.error = error.message.split('\n')[0];
    console.error(`bench: ${label} failed: ${error.stack ?? error}`);
  }
}

/** Runs native llama.cpp once; returns its version description, or null after a failure. */
async function runNative(model, results, run, prompts, long) {
  try {
    const output = await measureNativeRun(model.path, prompts, long);
    for (const nativeRun of output.runs) {
      const result = results.find((row) => row.threads === nativeRun.threads);
      result.runs.push(nativeValues(nativeRun));
      logRun(`native ${model.id} ${nativeRun.threads}t`, run, nativeValues(nativeRun));
    }
    return `llama-cpp-python ${output.llama_cpp_python}; ${output.system_info}`;
  } catch (error) {
    const message = (error.stderr?.trim().split('\n').at(-1) || error.message).split('\n')[0];
    for (const result of results) {
      result.error = message;
    }
    console.error(`bench: native llama.cpp failed: ${error.stderr ?? ''}${error.stack ?? error}`);
    return null;
  }
}

async function main() {
  const options = parseOptions();
  let server = null;
  let baseUrl = (process.env.PRUNECHAT_URL ?? '').replace(/\/$/, '');
  if (baseUrl === '') {
    server = await startServer();
    baseUrl = server.url;
  }
  console.error(`bench: server ${baseUrl}, ${options.runs} run(s) per configuration`);

  const dense = newModel('dense', DENSE_MODEL, 'dense');
  const models = [dense];
  const notes = [];
  if (options.variants) {
    for (const variant of VARIANTS) {
      if (existsSync(join(ROOT, variant.path))) {
        models.push(newModel(variant.id, variant.path, variant.method));
      } else {
        notes.push(`\`${variant.path}\` is missing, so it was not measured: \`make bench-models\` writes it.`);
      }
    }
  }
  const prunechatRows = new Map(models.map((model) => [model, THREAD_COUNTS.map((threads) => newResult(ENGINE_NAMES.prunechat, threads))]));
  const wllamaRows = THREAD_COUNTS.map((threads) => newResult(ENGINE_NAMES.wllama, threads));
  const nativeRows = THREAD_COUNTS.map((threads) => newResult(ENGINE_NAMES.native, threads));
  for (const model of models) {
    model.results.push(...prunechatRows.get(model));
  }
  if (options.wllama) {
    dense.results.push(...wllamaRows);
  }
  if (options.native) {
    dense.results.push(...nativeRows);
  }

  const browser = await chromium.launch({ executablePath: CHROMIUM_PATH, args: CHROMIUM_ARGS });
  let nativeVersion = options.native ? 'not run' : 'skipped (--no-native)';
  try {
    const limits = await withTimeout(measureLimits(browser, baseUrl), STEP_TIMEOUT_MS, 'limits');
    console.error(`bench: limits ${JSON.stringify(limits)}`);

    // Runs alternate between engines and models, so a change in the machine's load during the
    // benchmark affects all of them. A configuration that failed or reported another thread count
    // than requested is not run again.
    const runnable = (result) => result.unavailable === null && result.error === null;
    let prompts = null;
    for (let run = 1; run <= options.runs; run += 1) {
      for (const threads of THREAD_COUNTS) {
        const denseRow = prunechatRows.get(dense).find((row) => row.threads === threads);
        const wllamaRow = wllamaRows.find((row) => row.threads === threads);
        if (runnable(denseRow)) {
          prompts = await runPrunechat(browser, baseUrl, dense, denseRow, run, prompts, true);
        }
        if (prompts === null) {
          throw new Error(`the dense model did not run on prunechat: ${denseRow.error ?? denseRow.unavailable}`);
        }
        if (options.wllama && runnable(wllamaRow)) {
          await runWllama(browser, baseUrl, dense, wllamaRow, run, prompts, !options.quick);
        }
      }
      if (options.native && nativeRows.every(runnable)) {
        nativeVersion = (await runNative(dense, nativeRows, run, prompts, true)) ?? nativeVersion;
      }
      for (const model of models.slice(1)) {
        for (const result of prunechatRows.get(model)) {
          if (runnable(result)) {
            await runPrunechat(browser, baseUrl, model, result, run, prompts, !options.quick);
          }
        }
      }
    }

    const measuredModels = models.filter((model) => model.info !== null);
    for (const model of measuredModels) {
      model.title = model.id === 'dense' ? 'SmolLM2-135M-Instruct Q8_0, dense' : `Pruned: ${model.id}`;
      model.description = describeModel(model, dense);
    }
    if (options.quick) {
      notes.push('Quick run (--quick): wllama and the pruned models skipped the long prompt.');
    }
    const report = buildReport({
      sectionStart: SECTION_START,
      sectionEnd: SECTION_END,
      command: commandLine(),
      runs: options.runs,
      models: measuredModels,
      limits,
      limitsSettings: { passes: LIMITS_PASSES, bufferBytes: LIMITS_BUFFER_BYTES },
      versions: {
        chromium: browser.version(),
        wllama: options.wllama ? wllamaVersion() : `${wllamaVersion()}, skipped (--no-wllama)`,
        native: nativeVersion,
      },
      notes,
      engineNames: ENGINE_NAMES,
    });
    console.log(report);
    if (options.write) {
      replaceSection(BENCHMARKS_DOC, SECTION_START, SECTION_END, report);
      console.error(`bench: updated ${BENCHMARKS_DOC}`);
    }
  } finally {
    await browser.close();
    server?.stop();
  }
}

main().catch((error) => {
  console.error(`bench: ${error.stack ?? error}`);
  process.exitCode = 1;
});
