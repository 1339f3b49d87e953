#!/usr/bin/env node
// Browser benchmark of the wasm engine in headless Chromium.
//
// Drives www/worker.js through its message protocol (docs/worker-protocol.md)
// from the empty page benches/bench.html and measures, per run:
//   - model load: first load over HTTP from 127.0.0.1 (download + wasm
//     instantiation + engine construction), the engine construction alone,
//     and a second load from the Cache API after a page reload;
//   - time to first token and prefill speed for a ~32-token and a
//     ~512-token prompt (chat template included);
//   - decode speed over 128 greedy tokens;
//   - peak wasm memory.
// The same prompts then run through wllama (llama.cpp compiled to wasm, the
// npm package in package.json) on the same GGUF file, one thread, as a
// reference. It prints the medians over all runs as a Markdown table and
// replaces the browser section of docs/benchmarks.md. Numbers are printed,
// not checked.
//
// Usage: node benches/browser-bench.mjs [--runs N] [--model URL_PATH] [--no-wllama] [--no-write]
// With PRUNECHAT_URL set it uses that server, else it starts scripts/serve.py
// on a free port of 127.0.0.1 and stops it at the end.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { chromium } from 'playwright-core';

import {
  CHROMIUM_ARGS,
  CHROMIUM_PATH,
  gitRevision,
  installDriver,
  loadModel,
  machineDescription,
  MAX_CONTEXT,
  packageBuildDescription,
  replaceSection,
  ROOT,
  runTurn,
  startServer,
  wasmTargetFeatures,
  withTimeout,
} from './common.mjs';

const BENCHMARKS_DOC = join(ROOT, 'docs', 'benchmarks.md');
const SECTION_START = '<!-- browser-bench:start -->';
const SECTION_END = '<!-- browser-bench:end -->';

const DECODE_TOKENS = 128;
// About 32 tokens once the chat template and SmolLM2's default system prompt
// are added; the table shows the exact count.
const SHORT_PROMPT = 'What is the capital of France?';
const LONG_PROMPT_TOKENS = 512;
// A prompt whose greedy reply is long, so that 128 tokens are decoded before
// the model ends its reply (the table shows the count actually generated).
const DECODE_PROMPT = 'Count from 1 to 200, separated by commas.';
const FILLER_SENTENCE =
  'The quick brown fox jumps over the lazy dog while the farmer counts his sheep in the valley. ';
const STEP_TIMEOUT_MS = 600_000;

const USAGE = `Usage: node benches/browser-bench.mjs [--runs N] [--model URL_PATH] [--no-wllama] [--no-write]
  --runs N          measured runs; medians are reported (default 3)
  --model URL_PATH  model path under the server root (default models/smollm2-135m-instruct-q8_0.gguf)
  --no-wllama       skip the wllama reference runs
  --no-write        print the table without updating docs/benchmarks.md
Set PRUNECHAT_URL to use a running server; otherwise scripts/serve.py is started on 127.0.0.1.`;

function parseOptions() {
  const { values } = parseArgs({
    options: {
      runs: { type: 'string', default: '3' },
      model: { type: 'string', default: 'models/smollm2-135m-instruct-q8_0.gguf' },
      'no-wllama': { type: 'boolean', default: false },
      'no-write': { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    console.log(USAGE);
    process.exit(0);
  }
  const runs = Number(values.runs);
  if (!Number.isInteger(runs) || runs < 1) {
    throw new Error(`--runs must be a positive integer, got "${values.runs}".`);
  }
  return {
    runs,
    model: values.model.replace(/^\//, ''),
    wllama: !values['no-wllama'],
    write: !values['no-write'],
  };
}

// ---------------------------------------------------------------------------
// Server

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

// ---------------------------------------------------------------------------
// One measured run

async function measureRun(browser, baseUrl, modelPath, prompts) {
  const context = await browser.newContext();
  try {
    const page = await context.newPage();
    await page.goto(`${baseUrl}/benches/bench.html`);
    await page.evaluate(installDriver);
    const modelUrl = `${baseUrl}/${modelPath}`;

    const cold = await loadModel(page, modelUrl);
    if (cold.source.cached) {
      throw new Error('the first load of a fresh browser context came from the cache');
    }
    if (prompts === null) {
      prompts = { short: SHORT_PROMPT, long: await calibratePrompt(page, LONG_PROMPT_TOKENS) };
    }

    const short = await runTurn(page, prompts.short, 1);
    const long = await runTurn(page, prompts.long, 1);
    const decode = await runTurn(page, DECODE_PROMPT, DECODE_TOKENS);
    const peakMemory = await page.evaluate(() => window.benchPeakMemory());

    await page.reload();
    await page.evaluate(installDriver);
    const warm = await loadModel(page, modelUrl);
    if (!warm.source.cached) {
      throw new Error('the second load did not come from the Cache API');
    }

    return {
      prompts,
      info: cold.info,
      values: {
        loadColdMs: cold.total_ms,
        engineMs: cold.load_ms,
        loadCachedMs: warm.total_ms,
        shortTokens: short.turnStart.prefill_tokens,
        shortTtftMs: short.done.stats.ttft_ms,
        shortPrefill: short.done.stats.prefill_tokens_per_s,
        longTokens: long.turnStart.prefill_tokens,
        longTtftMs: long.done.stats.ttft_ms,
        longPrefill: long.done.stats.prefill_tokens_per_s,
        decodeTokens: decode.done.stats.n_generated,
        decodeRate: decode.done.stats.decode_tokens_per_s,
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

async function measureLimitsInPage({ bufferBytes, passes, simdIterations }) {
  const wasm = await import('/pkg/prunechat.js');
  await wasm.default();
  const timeOf = (work) => {
    const start = performance.now();
    const checksum = work();
    return { seconds: (performance.now() - start) / 1000, checksum };
  };
  const medianOf = (values) => values.sort((a, b) => a - b)[Math.floor(values.length / 2)];
  const buffer = new wasm.LimitsBuffer(bufferBytes);
  try {
    buffer.readOnce();
    buffer.copyOnce();
    const reads = [];
    const copies = [];
    const simd = [];
    for (let pass = 0; pass < passes; pass += 1) {
      reads.push(buffer.bytes / timeOf(() => buffer.readOnce()).seconds);
      copies.push(buffer.bytes / timeOf(() => buffer.copyOnce()).seconds);
      const flops = simdIterations * wasm.simdMultiplyAddFlopsPerIteration();
      simd.push(flops / timeOf(() => wasm.simdMultiplyAdd(simdIterations)).seconds);
    }
    return { readBytesPerS: medianOf(reads), copyBytesPerS: medianOf(copies), simdFlopsPerS: medianOf(simd) };
  } finally {
    buffer.free();
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
 */
async function runWllamaInPage({ moduleUrl, wasmUrl, modelUrl, maxContext, prompts, decodePrompt, decodeTokens }) {
  const { Wllama } = await import(moduleUrl);
  const wllama = new Wllama({ default: wasmUrl }, { suppressNativeLog: true });

  const loadStarted = performance.now();
  // n_gpu_layers 0: CPU only, as prunechat. Chromium may offer WebGPU
  // through a software adapter even with --disable-gpu.
  await wllama.loadModelFromUrl(modelUrl, { n_ctx: maxContext, n_threads: 1, n_gpu_layers: 0, useCache: false });
  const loadMs = performance.now() - loadStarted;

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
  const long = await complete(prompts.long, 1);
  const decode = await complete(decodePrompt, decodeTokens);
  await wllama.exit();

  return {
    loadColdMs: loadMs,
    engineMs: null,
    loadCachedMs: null,
    shortTokens: short.timings.prompt_n,
    shortTtftMs: short.wallMs,
    shortPrefill: short.timings.prompt_per_second,
    longTokens: long.timings.prompt_n,
    longTtftMs: long.wallMs,
    longPrefill: long.timings.prompt_per_second,
    decodeTokens: decode.timings.predicted_n,
    decodeRate: decode.timings.predicted_per_second,
    peakMemory: null,
  };
}

async function measureWllamaRun(browser, baseUrl, modelPath, prompts) {
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
      prompts,
      decodePrompt: DECODE_PROMPT,
      decodeTokens: DECODE_TOKENS,
    });
  } finally {
    await context.close();
  }
}

// ---------------------------------------------------------------------------
// Report

function median(values) {
  const sorted = values.filter((value) => Number.isFinite(value)).sort((a, b) => a - b);
  if (sorted.length === 0) {
    return null;
  }
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

function medianOfRuns(results) {
  const medians = {};
  for (const key of Object.keys(results[0])) {
    medians[key] = median(results.map((values) => values[key]));
  }
  return medians;
}

function wllamaVersion() {
  try {
    const manifest = join(ROOT, 'node_modules', '@wllama', 'wllama', 'package.json');
    return JSON.parse(readFileSync(manifest, 'utf8')).version;
  } catch {
    return 'unknown';
  }
}

const formatters = {
  ms: (ms) => (ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${Math.round(ms)} ms`),
  rate: (rate) => `${rate.toFixed(1)} tokens/s`,
  mib: (bytes) => `${(bytes / 2 ** 20).toFixed(1)} MiB`,
};

/** Formats one table cell; `tokens` adds the token count the value is based on. */
function cell(value, format, tokens = null) {
  if (value === null || value === undefined) {
    return '—';
  }
  const text = formatters[format](value);
  return tokens === null ? text : `${text} (${Math.round(tokens)} tokens)`;
}

/**
 * Builds the limits section and the decode floor: every weight is read once per generated
 * token, so a token takes at least the model's bytes divided by the read bandwidth.
 */
function limitsLines(limits, info, engines) {
  const gbPerS = (bytesPerS) => `${(bytesPerS / 1e9).toFixed(1)} GB/s`;
  const ceiling = limits.readBytesPerS / info.file_bytes;
  const lines = [
    '### Limits of this machine in the page',
    '',
    `Measured in the same browser by \`src/wasm_limits.rs\` (one thread, median of ${LIMITS_PASSES} passes over`,
    `${LIMITS_BUFFER_BYTES / 2 ** 20} MiB buffers, far larger than the caches):`,
    '',
    `- memory read with 128-bit SIMD loads: ${gbPerS(limits.readBytesPerS)}`,
    `- memory copy (\`memory.copy\`, bytes copied): ${gbPerS(limits.copyBytesPerS)}`,
    `- f32x4 multiply and add, eight independent chains: ${(limits.simdFlopsPerS / 1e9).toFixed(1)} GFLOP/s`,
    '',
    `Decoding one token reads every weight once, so at the read bandwidth the ${formatters.mib(info.file_bytes)} file`,
    `allows at most ${ceiling.toFixed(1)} tokens/s on one thread (the file's bytes are an upper bound of the`,
    'weight bytes: they include the tokenizer, about 2% of the file).',
    '',
    '| Engine | decode tokens/s | fraction of the bandwidth floor |',
    '| --- | ---: | ---: |',
  ];
  for (const [name, medians] of engines) {
    if (medians.decodeRate !== null && medians.decodeRate !== undefined) {
      lines.push(`| ${name} | ${medians.decodeRate.toFixed(1)} | ${((medians.decodeRate / ceiling) * 100).toFixed(0)}% |`);
    }
  }
  return lines;
}

function buildReport({ runs, modelPath, info, prunechat, wllama, wllamaError, chromiumVersion, limits }) {
  const rows = [
    ['Model load, first (HTTP from 127.0.0.1)', 'loadColdMs', 'ms', null],
    ['Model load, engine construction only', 'engineMs', 'ms', null],
    ['Model load, second (Cache API)', 'loadCachedMs', 'ms', null],
    ['Time to first token, short prompt', 'shortTtftMs', 'ms', 'shortTokens'],
    ['Prefill, short prompt', 'shortPrefill', 'rate', 'shortTokens'],
    ['Time to first token, long prompt', 'longTtftMs', 'ms', 'longTokens'],
    ['Prefill, long prompt', 'longPrefill', 'rate', 'longTokens'],
    [`Decode, up to ${DECODE_TOKENS} tokens (greedy)`, 'decodeRate', 'rate', 'decodeTokens'],
    ['Peak wasm memory', 'peakMemory', 'mib', null],
  ];
  const engines = [['prunechat', prunechat]];
  if (wllama !== null) {
    engines.push([`wllama ${wllamaVersion()}, 1 thread`, wllama]);
  }
  const header = `| Measure | ${engines.map(([name]) => name).join(' | ')} |`;
  const separator = `| --- | ${engines.map(() => '---').join(' | ')} |`;
  const tableRows = rows.map(([label, key, format, tokensKey]) => {
    const cells = engines.map(([, medians]) => cell(medians[key], format, tokensKey ? medians[tokensKey] : null));
    return `| ${label} | ${cells.join(' | ')} |`;
  });

  const date = new Date().toISOString().slice(0, 10);
  const lines = [
    SECTION_START,
    '## Browser: headless Chromium',
    '',
    `Measured by \`node benches/browser-bench.mjs\` on ${date}: median of ${runs} runs, each in a fresh browser context,`,
    'prunechat and wllama runs alternated.',
    '',
    `- Machine: ${machineDescription()}`,
    `- Browser: Chromium ${chromiumVersion}, headless, flags ${CHROMIUM_ARGS.join(' ')}`,
    `- Model: \`${modelPath}\` (${info.name}, ${(info.n_params / 1e6).toFixed(1)} M parameters, ${formatters.mib(info.file_bytes)}), context ${MAX_CONTEXT} tokens`,
    `- prunechat: ${gitRevision()}, ${packageBuildDescription()}, wasm target features ${wasmTargetFeatures()}, one worker`,
    '',
    header,
    separator,
    ...tableRows,
    '',
    'Prompt token counts include the chat template and the default system prompt.',
    'Time to first token includes prefill. For prunechat, decode speed counts the',
    'tokens after the first over the time spent inside `nextToken` (see',
    'docs/worker-protocol.md). For wllama, prefill and decode speeds are',
    "llama.cpp's own timings and time to first token is the wall time of a",
    'one-token completion.',
  ];
  if (wllamaError !== null) {
    lines.push('', `wllama did not run: ${wllamaError}`);
  }
  lines.push('', ...limitsLines(limits, info, engines));
  lines.push(SECTION_END);
  return lines.join('\n');
}

// ---------------------------------------------------------------------------

function logRun(engine, run, values) {
  const rounded = JSON.stringify(values, (key, value) => (typeof value === 'number' ? Number(value.toFixed(1)) : value));
  console.error(`bench: ${engine} run ${run}: ${rounded}`);
}

async function main() {
  const options = parseOptions();
  let server = null;
  let baseUrl = (process.env.PRUNECHAT_URL ?? '').replace(/\/$/, '');
  if (baseUrl === '') {
    server = await startServer();
    baseUrl = server.url;
  }
  console.error(`bench: server ${baseUrl}, model ${options.model}, ${options.runs} runs`);

  const browser = await chromium.launch({ executablePath: CHROMIUM_PATH, args: CHROMIUM_ARGS });
  try {
    const limits = await withTimeout(measureLimits(browser, baseUrl), STEP_TIMEOUT_MS, 'limits');
    console.error(`bench: limits ${JSON.stringify(limits)}`);

    // Runs alternate between the engines, so a change in the machine's load during the
    // benchmark affects both. A wllama failure leaves the prunechat numbers usable, so it is
    // reported in the table instead of ending the benchmark.
    let prompts = null;
    let info = null;
    const prunechatResults = [];
    const wllamaResults = [];
    let wllamaError = null;
    for (let run = 1; run <= options.runs; run += 1) {
      const measuring = measureRun(browser, baseUrl, options.model, prompts);
      const result = await withTimeout(measuring, STEP_TIMEOUT_MS, `prunechat run ${run}`);
      prompts = result.prompts;
      info = result.info;
      prunechatResults.push(result.values);
      logRun('prunechat', run, result.values);
      if (options.wllama && wllamaError === null) {
        try {
          const measuringWllama = measureWllamaRun(browser, baseUrl, options.model, prompts);
          const values = await withTimeout(measuringWllama, STEP_TIMEOUT_MS, `wllama run ${run}`);
          wllamaResults.push(values);
          logRun('wllama', run, values);
        } catch (error) {
          wllamaError = error.message.split('\n')[0];
          console.error(`bench: wllama failed: ${error.stack ?? error}`);
        }
      }
    }
    const wllama = wllamaError === null && wllamaResults.length > 0 ? medianOfRuns(wllamaResults) : null;

    const report = buildReport({
      runs: options.runs,
      modelPath: options.model,
      info,
      prunechat: medianOfRuns(prunechatResults),
      wllama,
      wllamaError,
      chromiumVersion: browser.version(),
      limits,
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
