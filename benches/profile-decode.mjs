#!/usr/bin/env node
// Where decode time goes in the browser engine. The script samples the JavaScript and wasm
// stacks of headless Chromium (DevTools protocol profiler) while the page's main thread decodes
// greedy tokens with the single-threaded package (pkg/). Then it prints the functions with the
// largest share of samples, by self time.
//
// Usage: node benches/profile-decode.mjs [--model URL_PATH] [--tokens N] [--top N]
// It starts scripts/serve.py on a free port of 127.0.0.1 and stops it at the end.

import { parseArgs } from 'node:util';
import { chromium } from 'playwright-core';

import { CHROMIUM_ARGS, CHROMIUM_PATH, startServer } from './common.mjs';

const USAGE = `Usage: node benches/profile-decode.mjs [--model URL_PATH] [--tokens N] [--top N]
  --model URL_PATH  model path under the server root (default models/smollm2-135m-instruct-q8_0.gguf)
  --tokens N        tokens decoded while sampling (default 100)
  --top N           functions printed (default 25)`;

const { values } = parseArgs({
  options: {
    model: { type: 'string', default: 'models/smollm2-135m-instruct-q8_0.gguf' },
    tokens: { type: 'string', default: '100' },
    top: { type: 'string', default: '25' },
    help: { type: 'boolean', default: false },
  },
});
if (values.help) {
  console.log(USAGE);
  process.exit(0);
}
const tokens = Number(values.tokens);
const top = Number(values.top);
for (const [name, value] of [['--tokens', tokens], ['--top', top]]) {
  if (!Number.isInteger(value) || value < 1) {
    console.error(`${name} must be a positive integer, got "${values[name.slice(2)]}".\n${USAGE}`);
    process.exit(2);
  }
}

const server = await startServer();
const browser = await chromium.launch({ executablePath: CHROMIUM_PATH, args: CHROMIUM_ARGS });
try {
  const page = await browser.newPage();
  await page.goto(`${server.url}/benches/bench.html`);
  // A reply long enough for the requested tokens, after a few warm-up tokens.
  await page.evaluate(async ({ modelPath, maxTokens }) => {
    const wasm = await import('/pkg/prunechat.js');
    await wasm.default();
    const response = await fetch(`/${modelPath}`);
    if (!response.ok) {
      throw new Error(`GET /${modelPath} returned HTTP ${response.status}; pass a model file under the repository root`);
    }
    const bytes = new Uint8Array(await response.arrayBuffer());
    window.engine = new wasm.ChatEngine(bytes, 2048);
    const sampling = { temperature: 0, top_k: 0, top_p: 1, repeat_penalty: 1, seed: 1, max_new_tokens: maxTokens };
    window.engine.startTurn('Count from 1 to 500, separated by commas.', '', JSON.stringify(sampling));
    for (let i = 0; i < 5; i += 1) window.engine.nextToken();
  }, { modelPath: values.model, maxTokens: tokens + 10 });

  const cdp = await page.context().newCDPSession(page);
  await cdp.send('Profiler.enable');
  await cdp.send('Profiler.setSamplingInterval', { interval: 200 });
  await cdp.send('Profiler.start');
  const elapsedMs = await page.evaluate((count) => {
    const start = performance.now();
    for (let i = 0; i < count; i += 1) window.engine.nextToken();
    return performance.now() - start;
  }, tokens);
  const { profile } = await cdp.send('Profiler.stop');

  const nodes = new Map(profile.nodes.map((node) => [node.id, node]));
  const selfSamples = new Map();
  for (const id of profile.samples) {
    const name = nodes.get(id).callFrame.functionName || '(anonymous)';
    selfSamples.set(name, (selfSamples.get(name) ?? 0) + 1);
  }
  const total = profile.samples.length;
  console.log(`${tokens} tokens in ${elapsedMs.toFixed(0)} ms (${((tokens * 1000) / elapsedMs).toFixed(1)} tokens/s with the profiler on), ${total} samples`);
  console.log('self %  function');
  for (const [name, count] of [...selfSamples.entries()].sort((a, b) => b[1] - a[1]).slice(0, top)) {
    console.log(`${((100 * count) / total).toFixed(1).padStart(6)}  ${name.replace(/::h[0-9a-f]{16}$/, '')}`);
  }
} finally {
  await browser.close();
  server.stop();
}
