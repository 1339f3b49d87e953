// A load reads the model while the wasm module compiles. These tests check
// what happens when one of the two fails while the other is still running.
//
//   PORT=8080 python3 scripts/serve.py &
//   PRUNECHAT_URL=http://127.0.0.1:8080 node --test tests/e2e/load-overlap.test.mjs

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { BASE_URL, LOAD_TIMEOUT_MS, MODEL_FILE, TEST_TIMEOUT_MS, closeBrowser, launchBrowser, newContext } from './helpers.mjs';

before(launchBrowser);
after(closeBrowser);

/**
 * Starts a worker on a page without the app and posts the load messages of
 * `loads` (paths on the origin) at once. Returns the worker's messages until
 * `count` of them are `loaded` or `error`, and those of `settleMs` ms after.
 */
async function runLoads(page, loads, { count, settleMs }) {
  return page.evaluate(
    async ([loads, count, settleMs, timeoutMs]) => {
      const worker = new Worker('/www/worker.js', { type: 'module' });
      const messages = [];
      worker.onmessage = (event) => messages.push(event.data);
      for (const { path, threads } of loads) {
        worker.postMessage({ type: 'load', url: new URL(path, location.href).href, maxContext: 256, threads });
      }
      const deadline = performance.now() + timeoutMs;
      while (messages.filter((m) => m.type === 'loaded' || m.type === 'error').length < count) {
        if (performance.now() > deadline) {
          break;
        }
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      await new Promise((resolve) => setTimeout(resolve, settleMs));
      worker.terminate();
      return messages;
    },
    [loads, count, settleMs, LOAD_TIMEOUT_MS],
  );
}

describe('load overlap', { timeout: TEST_TIMEOUT_MS }, () => {
  test('missing wasm stops the download', async () => {
    const context = await newContext();
    // Requests of dedicated workers go through the context's routes.
    await context.route('**/pkg/prunechat.js', (route) => route.fulfill({ status: 404, body: '' }));
    const page = await context.newPage();
    await page.goto(`${BASE_URL}/README.md`);

    const messages = await runLoads(page, [{ path: `/models/${MODEL_FILE}`, threads: 1 }], { count: 1, settleMs: 3000 });
    const errorAt = messages.findIndex((m) => m.type === 'error');
    assert.notEqual(errorAt, -1, 'no error message');
    assert.equal(messages[errorAt].code, 'wasm_missing');
    const later = messages.slice(errorAt + 1).map((m) => `${m.type} ${m.loaded ?? ''}`);
    assert.deepEqual(later, [], 'messages after the error');
    const cached = await page.evaluate(async (file) => {
      const cache = await caches.open('prunechat-models-v1');
      return (await cache.keys()).some((request) => request.url.endsWith(file));
    }, MODEL_FILE);
    assert.equal(cached, false, 'the model was cached after the error');
    await context.close();
  });

  test('failed download keeps requested threads', async () => {
    const context = await newContext();
    const page = await context.newPage();
    await page.goto(`${BASE_URL}/README.md`);
    const isolated = await page.evaluate(() => self.crossOriginIsolated);
    assert.equal(isolated, true, 'the server must send the COOP and COEP headers');

    // The first load fails at once while the threaded module still compiles.
    const messages = await runLoads(
      page,
      [
        { path: '/models/no-such-model.gguf', threads: 2 },
        { path: `/models/${MODEL_FILE}`, threads: 2 },
      ],
      { count: 2, settleMs: 0 },
    );
    const error = messages.find((m) => m.type === 'error');
    assert.equal(error?.code, 'download_http');
    const loaded = messages.find((m) => m.type === 'loaded');
    assert.ok(loaded, `no loaded message: ${JSON.stringify(messages.filter((m) => m.type === 'error'))}`);
    assert.equal(loaded.threads_fallback, null, `fell back: ${loaded.threads_fallback?.message}`);
    assert.equal(loaded.threads, 2);
    await context.close();
  });
});
