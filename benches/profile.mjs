#!/usr/bin/env node
// Profiler of the browser engine's time. The script samples the JavaScript and wasm stacks
// of headless Chromium (DevTools protocol profiler) while the page's main thread runs one phase
// with the single-threaded package (pkg/). The phase `decode` decodes greedy tokens. The phase
// `load` constructs the engine from the model's bytes (GGUF parsing, weight repacking,
// tokenizer). It prints the
// functions with the largest share of samples, by self time and by total time (the function
// or anything it called).
//
// Usage: node benches/profile.mjs [--phase decode|load] [--model URL_PATH] [--tokens N]
//                                 [--runs N] [--top N]
// It starts scripts/serve.py on a free port of 127.0.0.1 and stops it at the end.

import { parseArgs } from 'node:util';
import { chromium } from 'playwright-core';

import { CHROMIUM_ARGS, CHROMIUM_PATH, startServer } from './common.mjs';

const USAGE = `Usage: node benches/profile.mjs [--phase decode|load] [--model URL_PATH] [--tokens N] [--runs N] [--top N]
  --phase P         decode (default) or load
  --model URL_PATH  model path under the server root (default models/smollm2-135m-instruct-q8_0.gguf)
  --tokens N        tokens decoded while sampling, for --phase decode (default 100)
  --runs N          engines constructed while sampling, for --phase load (default 3)
  --top N           functions printed (default 25)`;

const { values } = parseArgs({
  options: {
    model: { type: 'string', default: 'models/smollm2-135m-instruct-q8_0.gguf' },
    phase: { type: 'string', default: 'decode' },
    tokens: { type: 'string', default: '100' },
    runs: { type: 'string', default: '3' },
    top: { type: 'string', default: '25' },
    help: { type: 'boolean', default: false },
  },
});
if (values.help) {
  console.log(USAGE);
  process.exit(0);
}
if (values.phase !== 'decode' && values.phase !== 'load') {
  console.error(`--phase must be decode or load, got "${values.phase}".\n${USAGE}`);
  process.exit(2);
}
const tokens = Number(values.tokens);
const runs = Number(values.runs);
const top = Number(values.top);
for (const [name, value] of [['--tokens', tokens], ['--runs', runs], ['--top', top]]) {
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
  // The model's bytes stay in the page; for decode, a reply long enough for the requested
  // tokens, after a few warm-up tokens.
  await page.evaluate(async ({ modelPath, maxTokens, decode }) => {
    const wasm = await import('/pkg/prunechat.js');
    await wasm.default();
    const response = await fetch(`/${modelPath}`);
    if (!response.ok) {
      throw new Error(`GET /${modelPath} returned HTTP ${response.status}; pass a model file under the repository root`);
    }
    window.wasm = wasm;
    window.modelBytes = new Uint8Array(await response.arrayBuffer());
    if (decode) {
      window.engine = new wasm.ChatEngine(window.modelBytes, 2048);
      const sampling = { temperature: 0, top_k: 0, top_p: 1, repeat_penalty: 1, seed: 1, max_new_tokens: maxTokens };
      window.engine.startTurn('Count from 1 to 500, separated by commas.', '', JSON.stringify(sampling));
      for (let i = 0; i < 5; i += 1) window.engine.nextToken();
    }
  }, { modelPath: values.model, maxTokens: tokens + 10, decode: values.phase === 'decode' });

  const cdp = await page.context().newCDPSession(page);
  await cdp.send('Profiler.enable');
  await cdp.send('Profiler.setSamplingInterval', { interval: 200 });
  await cdp.send('Profiler.start');
  const elapsedMs = await page.evaluate(({ decode, count }) => {
    const start = performance.now();
    for (let i = 0; i < count; i += 1) {
      if (decode) {
        window.engine.nextToken();
      } else {
        new window.wasm.ChatEngine(window.modelBytes, 2048).free();
      }
    }
    return performance.now() - start;
  }, { decode: values.phase === 'decode', count: values.phase === 'decode' ? tokens : runs });
  const { profile } = await cdp.send('Profiler.stop');

  const nodes = new Map(profile.nodes.map((node) => [node.id, node]));
  const parents = new Map();
  for (const node of profile.nodes) {
    for (const child of node.children ?? []) parents.set(child, node.id);
  }
  const nameOf = (node) => (node.callFrame.functionName || '(anonymous)').replace(/::h[0-9a-f]{16}$/, '');
  const selfSamples = new Map();
  const totalSamples = new Map();
  for (const id of profile.samples) {
    const name = nameOf(nodes.get(id));
    selfSamples.set(name, (selfSamples.get(name) ?? 0) + 1);
    // Each function on the stack counts once, however often it recurs.
    const onStack = new Set();
    for (let at = id; at !== undefined; at = parents.get(at)) onStack.add(nameOf(nodes.get(at)));
    for (const caller of onStack) totalSamples.set(caller, (totalSamples.get(caller) ?? 0) + 1);
  }
  const total = profile.samples.length;
  if (values.phase === 'decode') {
    console.log(`${tokens} tokens in ${elapsedMs.toFixed(0)} ms (${((tokens * 1000) / elapsedMs).toFixed(1)} tokens/s with the profiler on), ${total} samples`);
  } else {
    console.log(`${runs} engines constructed in ${elapsedMs.toFixed(0)} ms (${(elapsedMs / runs).toFixed(0)} ms each with the profiler on), ${total} samples`);
  }
  const print = (title, counts) => {
    console.log(`\n${title}`);
    for (const [name, count] of [...counts.entries()].sort((a, b) => b[1] - a[1]).slice(0, top)) {
      console.log(`${((100 * count) / total).toFixed(1).padStart(6)}  ${name}`);
    }
  };
  print('self %  function', selfSamples);
  print('total % function (with what it called)', totalSamples);
} finally {
  await browser.close();
  server.stop();
}
