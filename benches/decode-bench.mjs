#!/usr/bin/env node
// Decode and prefill speed of several GGUF files in one headless Chromium run.
//
// Each model is loaded in a fresh browser context through www/worker.js, then
// generates up to 128 greedy tokens for a fixed prompt. Runs alternate between
// the models (A B C A B C ...), so a change in machine load hits them alike,
// and the median per model is reported. Prints one JSON object per model:
//   {"model", "n_params", "file_bytes", "decode_tokens_per_s", "prefill_tokens_per_s",
//    "prompt_tokens", "generated_tokens", "peak_memory_bytes", "runs"}
//
// Usage: node benches/decode-bench.mjs [--runs N] MODEL_PATH...
// MODEL_PATH is a file under the repository root, which the server serves.
// With PRUNECHAT_URL set it uses that server, else it starts scripts/serve.py
// on a free port of 127.0.0.1 and stops it at the end.

import { existsSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { chromium } from 'playwright-core';

import {
  CHROMIUM_ARGS,
  CHROMIUM_PATH,
  installDriver,
  loadModel,
  ROOT,
  runTurn,
  startServer,
  withTimeout,
} from './common.mjs';

const DECODE_TOKENS = 128;
// A prompt whose greedy reply is long on SmolLM2, so that most runs decode all 128 tokens.
// A pruned model may end its reply at once. The prompts are tried in order until a reply has
// at least MIN_DECODE_TOKENS tokens, and the output names the prompt used.
const DECODE_PROMPTS = [
  'Count from 1 to 200, separated by commas.',
  'Write a long story about a dragon who learns to cook.',
  'Explain in detail how a computer runs a program.',
];
const MIN_DECODE_TOKENS = 16;
const RUN_TIMEOUT_MS = 300_000;

function parseOptions() {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: { runs: { type: 'string', default: '3' }, help: { type: 'boolean', default: false } },
  });
  if (values.help || positionals.length === 0) {
    console.log('Usage: node benches/decode-bench.mjs [--runs N] MODEL_PATH...');
    process.exit(values.help ? 0 : 2);
  }
  const runs = Number(values.runs);
  if (!Number.isInteger(runs) || runs < 1) {
    throw new Error(`--runs must be a positive integer, got "${values.runs}".`);
  }
  const models = positionals.map((path) => {
    const absolute = resolve(path);
    const inside = relative(ROOT, absolute);
    if (!existsSync(absolute)) {
      throw new Error(`${path}: file not found`);
    }
    if (inside.startsWith('..') || inside.split('/').some((part) => part.startsWith('.'))) {
      throw new Error(`${path}: the server serves only files under ${ROOT} outside hidden folders; copy the model there`);
    }
    return inside;
  });
  return { runs, models };
}

async function measure(browser, baseUrl, modelPath) {
  const context = await browser.newContext();
  try {
    const page = await context.newPage();
    await page.goto(`${baseUrl}/benches/bench.html`);
    await page.evaluate(installDriver);
    const loaded = await loadModel(page, `${baseUrl}/${modelPath}`);
    let turn = null;
    let prompt = null;
    for (prompt of DECODE_PROMPTS) {
      turn = await runTurn(page, prompt, DECODE_TOKENS);
      if (turn.done.stats.n_generated >= MIN_DECODE_TOKENS && turn.done.stats.decode_tokens_per_s !== null) {
        break;
      }
    }
    return {
      prompt,
      info: loaded.info,
      decode: turn.done.stats.decode_tokens_per_s,
      prefill: turn.done.stats.prefill_tokens_per_s,
      promptTokens: turn.turnStart.prefill_tokens,
      generated: turn.done.stats.n_generated,
      peakMemory: await page.evaluate(() => window.benchPeakMemory()),
    };
  } finally {
    await context.close();
  }
}

function median(values) {
  if (values.length === 0) {
    return null;
  }
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

async function main() {
  const options = parseOptions();
  let server = null;
  let baseUrl = (process.env.PRUNECHAT_URL ?? '').replace(/\/$/, '');
  if (baseUrl === '') {
    server = await startServer();
    baseUrl = server.url;
  }
  const browser = await chromium.launch({ executablePath: CHROMIUM_PATH, args: CHROMIUM_ARGS });
  try {
    const results = new Map(options.models.map((model) => [model, []]));
    for (let run = 1; run <= options.runs; run += 1) {
      for (const model of options.models) {
        const result = await withTimeout(measure(browser, baseUrl, model), RUN_TIMEOUT_MS, `${model} run ${run}`);
        const rate = result.decode === null ? 'no' : result.decode.toFixed(1);
        console.error(`decode-bench: ${model} run ${run}: ${rate} tokens/s decode over ${result.generated} tokens`);
        results.get(model).push(result);
      }
    }
    for (const [model, runs] of results) {
      console.log(
        JSON.stringify({
          model,
          n_params: runs[0].info.n_params,
          file_bytes: runs[0].info.file_bytes,
          decode_tokens_per_s: median(runs.map((r) => r.decode).filter((rate) => rate !== null)),
          prompt: runs[0].prompt,
          prefill_tokens_per_s: median(runs.map((r) => r.prefill)),
          prompt_tokens: runs[0].promptTokens,
          generated_tokens: median(runs.map((r) => r.generated)),
          peak_memory_bytes: Math.max(...runs.map((r) => r.peakMemory)),
          runs: runs.length,
          chromium: browser.version(),
        }),
      );
    }
  } finally {
    await browser.close();
    server?.stop();
  }
}

main().catch((error) => {
  console.error(`decode-bench: ${error.stack ?? error}`);
  process.exitCode = 1;
});
