#!/usr/bin/env node
// Timings of two steps of loading a model on the page, each measured in headless Chromium with
// the single-threaded package (pkg/):
// - reading the model file from the Cache API in three ways: a BYOB reader into one buffer of
//   the response's Content-Length (the worker's way), copying the chunks of a default reader
//   into one buffer, and `Response.arrayBuffer()`;
// - constructing the engine from the file's bytes, the first time on a page (which also grows
//   wasm memory) and again on the same page.
// It prints the time of every run, in milliseconds.
//
// Usage: node benches/load-steps.mjs [--model URL_PATH] [--runs N]
// It starts scripts/serve.py on a free port of 127.0.0.1 and stops it at the end.

import { parseArgs } from 'node:util';
import { chromium } from 'playwright-core';

import { CHROMIUM_ARGS, CHROMIUM_PATH, MAX_CONTEXT, machineDescription, startServer } from './common.mjs';

const USAGE = `Usage: node benches/load-steps.mjs [--model URL_PATH] [--runs N]
  --model URL_PATH  model path under the server root (default models/smollm2-135m-instruct-q8_0.gguf)
  --runs N          runs of each step; construction runs on N pages, 3 times each (default 3)`;

const { values } = parseArgs({
  options: {
    model: { type: 'string', default: 'models/smollm2-135m-instruct-q8_0.gguf' },
    runs: { type: 'string', default: '3' },
    help: { type: 'boolean', default: false },
  },
});
if (values.help) {
  console.log(USAGE);
  process.exit(0);
}
const runs = Number(values.runs);
if (!Number.isInteger(runs) || runs < 1) {
  console.error(`--runs must be a positive integer, got "${values.runs}".\n${USAGE}`);
  process.exit(2);
}

/** Runs in the page: stores the model in a cache of its own, then times each way to read it. */
async function timeCacheReads({ modelPath, runs }) {
  const url = new URL(`/${modelPath}`, location.href).href;
  const cache = await caches.open('load-steps');
  if (!(await cache.match(url))) {
    const response = await fetch(url);
    if (!response.ok) {
      throw new Error(`GET /${modelPath} returned HTTP ${response.status}; pass a model file under the repository root`);
    }
    await cache.put(url, response);
  }
  const ways = {
    async byob(response, total) {
      let buffer = new ArrayBuffer(total);
      let loaded = 0;
      const reader = response.body.getReader({ mode: 'byob' });
      while (loaded < total) {
        const { done, value } = await reader.read(new Uint8Array(buffer, loaded, total - loaded));
        if (done) {
          break;
        }
        buffer = value.buffer;
        loaded += value.byteLength;
      }
      return loaded;
    },
    async chunks(response, total) {
      const buffer = new Uint8Array(total);
      let loaded = 0;
      const reader = response.body.getReader();
      for (;;) {
        const { done, value } = await reader.read();
        if (done) {
          break;
        }
        buffer.set(value, loaded);
        loaded += value.length;
      }
      return loaded;
    },
    async arrayBuffer(response) {
      return (await response.arrayBuffer()).byteLength;
    },
  };
  const times = Object.fromEntries(Object.keys(ways).map((name) => [name, []]));
  for (let run = 0; run < runs; run += 1) {
    for (const [name, read] of Object.entries(ways)) {
      const started = performance.now();
      const response = await cache.match(url);
      const total = Number(response.headers.get('content-length'));
      const loaded = await read(response, total);
      times[name].push(performance.now() - started);
      if (loaded !== total) {
        throw new Error(`${name} read ${loaded} of ${total} bytes`);
      }
    }
  }
  await caches.delete('load-steps');
  return times;
}

/** Runs in the page: constructs the engine three times from the model's bytes. */
async function timeConstruction({ modelPath, maxContext }) {
  const wasm = await import('/pkg/prunechat.js');
  await wasm.default();
  const bytes = new Uint8Array(await (await fetch(`/${modelPath}`)).arrayBuffer());
  const times = [];
  for (let i = 0; i < 3; i += 1) {
    const started = performance.now();
    const engine = new wasm.ChatEngine(bytes, maxContext);
    engine.info();
    times.push(performance.now() - started);
    engine.free();
  }
  return times;
}

const format = (times) => times.map((ms) => ms.toFixed(0)).join(', ');

const server = await startServer();
const browser = await chromium.launch({ executablePath: CHROMIUM_PATH, args: CHROMIUM_ARGS });
try {
  console.log(`${values.model}, ${machineDescription()}, Chromium ${browser.version()}, ${new Date().toISOString()}`);
  const page = await browser.newPage();
  await page.goto(`${server.url}/benches/bench.html`);
  const reads = await page.evaluate(timeCacheReads, { modelPath: values.model, runs });
  for (const [name, times] of Object.entries(reads)) {
    console.log(`cache read, ${name}: ${format(times)} ms`);
  }
  await page.close();

  const first = [];
  const later = [];
  for (let run = 0; run < runs; run += 1) {
    const constructionPage = await browser.newPage();
    await constructionPage.goto(`${server.url}/benches/bench.html`);
    const [firstTime, ...laterTimes] = await constructionPage.evaluate(timeConstruction, {
      modelPath: values.model,
      maxContext: MAX_CONTEXT,
    });
    first.push(firstTime);
    later.push(...laterTimes);
    await constructionPage.close();
  }
  console.log(`engine construction, first on a page: ${format(first)} ms`);
  console.log(`engine construction, again on the page: ${format(later)} ms`);
} finally {
  await browser.close();
  server.stop();
}
