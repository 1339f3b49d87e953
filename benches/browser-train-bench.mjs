#!/usr/bin/env node
// Training benchmark of the wasm `FineTuner` in headless Chromium.
//
// Runs optimizer steps of the wasm build (pkg/) on the page's main thread and
// measures tokens/s (input tokens without padding, as the native CLI counts
// them), seconds per step and wasm memory, for:
//   - the tiny preset (3.7 M parameters), full fine-tuning, batch 16: the
//     model is made by `prunechat train --preset tiny --steps 1`;
//   - SmolLM2-135M-Instruct (Q8_0 file), LoRA rank 8, batch 4, once with the
//     file's zeros kept at zero (the masked adapter path) and once without.
// Both use sequences of at most 128 tokens from the chatterbot-corpus file
// data/chatterbot-corpus/english/ai.yml. The first step is reported apart,
// because it includes warm-up costs. A run that fails (for example by
// running out of wasm memory) is reported in the table with its error. The
// table replaces the training section of docs/benchmarks.md.
//
// Usage: node benches/browser-train-bench.mjs [--steps N] [--no-write]
// With PRUNECHAT_URL set it uses that server, else it starts scripts/serve.py
// on a free port of 127.0.0.1 and stops it at the end.

import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { chromium } from 'playwright-core';

import {
  CHROMIUM_ARGS,
  CHROMIUM_PATH,
  gitRevision,
  machineDescription,
  packageBuildDescription,
  replaceSection,
  ROOT,
  startServer,
  withTimeout,
} from './common.mjs';

const BENCHMARKS_DOC = join(ROOT, 'docs', 'benchmarks.md');
const SECTION_START = '<!-- browser-train-bench:start -->';
const SECTION_END = '<!-- browser-train-bench:end -->';
const DATA_PATH = 'data/chatterbot-corpus/english/ai.yml';
const TINY_MODEL_PATH = 'target/bench/tiny-preset.gguf';
const SMOLLM2_PATH = 'models/smollm2-135m-instruct-q8_0.gguf';
const RUN_TIMEOUT_MS = 1_800_000;
const LORA_TARGETS = ['attn_q', 'attn_k', 'attn_v', 'attn_output', 'ffn_gate', 'ffn_up', 'ffn_down'];

const USAGE = `Usage: node benches/browser-train-bench.mjs [--steps N] [--no-write]
  --steps N    measured optimizer steps per run after the first (default 4)
  --no-write   print the table without updating docs/benchmarks.md
Set PRUNECHAT_URL to use a running server; otherwise scripts/serve.py is started on 127.0.0.1.`;

function parseOptions() {
  const { values } = parseArgs({
    options: {
      steps: { type: 'string', default: '4' },
      'no-write': { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    console.log(USAGE);
    process.exit(0);
  }
  const steps = Number(values.steps);
  if (!Number.isInteger(steps) || steps < 1) {
    throw new Error(`--steps must be a positive integer, got "${values.steps}".`);
  }
  return { steps, write: !values['no-write'] };
}

/** Trains the tiny preset for one step with the native CLI, so the page has a model to fine-tune. */
function makeTinyModel() {
  const binary = join(ROOT, 'target', 'release', 'prunechat');
  if (!existsSync(binary)) {
    throw new Error(`${binary} is missing: run \`cargo build --release\` first`);
  }
  mkdirSync(join(ROOT, 'target', 'bench'), { recursive: true });
  execFileSync(
    binary,
    ['train', '--preset', 'tiny', '--steps', '1', '--data', join(ROOT, 'data', 'chatterbot-corpus', 'english'),
      '--out', join(ROOT, TINY_MODEL_PATH)],
    { stdio: ['ignore', 'ignore', 'inherit'] },
  );
}

/**
 * Page side: loads pkg/prunechat.js, builds a FineTuner and runs `steps + 1`
 * optimizer steps, timing each. Returns the per-step figures and the wasm
 * memory size at the end (wasm memory only grows, so this is its peak).
 */
async function trainInPage({ modelUrl, dataUrl, dataName, config, steps }) {
  const module = await import('/pkg/prunechat.js');
  const wasm = await module.default();
  const model = new Uint8Array(await (await fetch(modelUrl)).arrayBuffer());
  const data = await (await fetch(dataUrl)).text();
  const started = performance.now();
  let tuner;
  try {
    tuner = new module.FineTuner(model, data, dataName, JSON.stringify({ ...config, steps: steps + 1 }), 0, new Uint8Array());
  } catch (error) {
    return { error: `setup failed: ${error.message}`, memory: wasm.memory.buffer.byteLength };
  }
  const setupMs = performance.now() - started;
  const info = JSON.parse(tuner.info());
  const records = [];
  try {
    for (let step = 0; step <= steps; step += 1) {
      const before = performance.now();
      const report = JSON.parse(tuner.step());
      records.push({ ms: performance.now() - before, tokens: report.n_tokens, loss: report.loss });
    }
  } catch (error) {
    return { error: `step ${records.length + 1} failed: ${error.message}`, memory: wasm.memory.buffer.byteLength };
  }
  return { setupMs, trainedParams: info.n_trained_params, records, memory: wasm.memory.buffer.byteLength };
}

async function measure(browser, baseUrl, run, steps) {
  const context = await browser.newContext();
  try {
    const page = await context.newPage();
    await page.goto(`${baseUrl}/benches/bench.html`);
    const result = await withTimeout(
      page.evaluate(trainInPage, {
        modelUrl: `/${run.model}`,
        dataUrl: `/${DATA_PATH}`,
        dataName: 'ai.yml',
        config: run.config,
        steps,
      }),
      RUN_TIMEOUT_MS,
      run.name,
    );
    return result;
  } catch (error) {
    // A trap or an out-of-memory crash ends the page; the table reports it.
    return { error: error.message.split('\n')[0], memory: null };
  } finally {
    await context.close();
  }
}

function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

function row(run, result) {
  const memory = result.memory === null ? '—' : `${(result.memory / 2 ** 20).toFixed(0)} MiB`;
  if (result.error) {
    return `| ${run.name} | — | — | — | ${memory} | ${result.error} |`;
  }
  const [first, ...rest] = result.records;
  const rate = median(rest.map((record) => record.tokens / (record.ms / 1000)));
  const seconds = median(rest.map((record) => record.ms / 1000));
  const losses = result.records.map((record) => record.loss.toFixed(3)).join(' → ');
  return `| ${run.name} | ${rate.toFixed(0)} | ${seconds.toFixed(2)} | ${(first.ms / 1000).toFixed(2)} | ${memory} | loss ${losses} |`;
}

async function main() {
  const options = parseOptions();
  makeTinyModel();
  let server = null;
  let baseUrl = (process.env.PRUNECHAT_URL ?? '').replace(/\/$/, '');
  if (baseUrl === '') {
    server = await startServer();
    baseUrl = server.url;
  }
  const runs = [
    {
      name: 'tiny preset, full fine-tuning, batch 16',
      model: TINY_MODEL_PATH,
      config: { batch_size: 16, seq_len: 128, lr: 0.002, warmup_steps: 0 },
    },
    {
      name: 'SmolLM2-135M, LoRA rank 8, batch 4, zeros kept',
      model: SMOLLM2_PATH,
      config: { batch_size: 4, seq_len: 128, lr: 0.001, warmup_steps: 0, lora: { rank: 8, alpha: 16, targets: LORA_TARGETS } },
    },
    {
      name: 'SmolLM2-135M, LoRA rank 8, batch 4, `keep_zeros: false`',
      model: SMOLLM2_PATH,
      config: {
        batch_size: 4,
        seq_len: 128,
        lr: 0.001,
        warmup_steps: 0,
        lora: { rank: 8, alpha: 16, targets: LORA_TARGETS },
        keep_zeros: false,
      },
    },
  ];

  const browser = await chromium.launch({ executablePath: CHROMIUM_PATH, args: CHROMIUM_ARGS });
  const rows = [];
  try {
    for (const run of runs) {
      console.error(`train-bench: ${run.name}`);
      const result = await measure(browser, baseUrl, run, options.steps);
      console.error(`train-bench: ${run.name}: ${JSON.stringify(result)}`);
      rows.push(row(run, result));
    }
    const date = new Date().toISOString().slice(0, 10);
    const section = [
      SECTION_START,
      '## Browser: training in headless Chromium',
      '',
      `Measured by \`node benches/browser-train-bench.mjs\` on ${date}: ${options.steps} steps after the first, on the page's main thread.`,
      '',
      `- Machine: ${machineDescription()}`,
      `- Browser: Chromium ${browser.version()}, headless`,
      `- prunechat: ${gitRevision()}, ${packageBuildDescription()}`,
      `- Data: \`${DATA_PATH}\`, sequences of at most 128 tokens, padded to the longest in each micro-batch`,
      '',
      '| Run | tokens/s | s/step | first step (s) | wasm memory | notes |',
      '| --- | ---: | ---: | ---: | ---: | --- |',
      ...rows,
      '',
      'Tokens/s counts input tokens without padding (median over the steps after the first), as the',
      'native figures in docs/training-results.md do. By default the FineTuner keeps the zeros of the',
      'model file at zero, so LoRA on a file with zeros uses the masked adapter path, which forms each',
      'full-size update; the dense Q8_0 SmolLM2 file has 0.79% zeros from rounding. `keep_zeros: false`',
      'uses the factored path. wasm32 memory ends at 4 GiB, and an allocation beyond it traps',
      '("unreachable").',
      SECTION_END,
    ].join('\n');
    console.log(section);
    if (options.write) {
      replaceSection(BENCHMARKS_DOC, SECTION_START, SECTION_END, section);
      console.error(`train-bench: updated ${BENCHMARKS_DOC}`);
    }
  } finally {
    await browser.close();
    server?.stop();
  }
}

main().catch((error) => {
  console.error(`train-bench: ${error.stack ?? error}`);
  process.exitCode = 1;
});
