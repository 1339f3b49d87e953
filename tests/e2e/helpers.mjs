// Shared setup of the chat page end-to-end tests: the browser, a page with its
// worker messages recorded, and the steps of a chat turn.
//
// The tests read the origin of scripts/serve.py from PRUNECHAT_URL.

import assert from 'node:assert/strict';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { CHROMIUM_ARGS, CHROMIUM_PATH } from '../../benches/common.mjs';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

export const BASE_URL = (process.env.PRUNECHAT_URL ?? '').replace(/\/$/, '');
export const MODEL_FILE = 'smollm2-135m-instruct-q8_0.gguf';

// Model load and generation run on a shared 2-core machine, so the waits are
// generous; a healthy run finishes each step in a few seconds.
export const LOAD_TIMEOUT_MS = 120_000;
export const REPLY_TIMEOUT_MS = 120_000;
export const TEST_TIMEOUT_MS = 300_000;

export const GREEDY = { temperature: 0, 'repeat-penalty': 1, 'max-new-tokens': 48, seed: 1 };

let browser = null;

/** Launches headless Chromium for openChat; fails when PRUNECHAT_URL is not set. */
export async function launchBrowser() {
  if (BASE_URL === '') {
    throw new Error(
      'PRUNECHAT_URL is not set. Run the e2e tests with `make test`, or start scripts/serve.py ' +
        'and set PRUNECHAT_URL to its origin, for example http://127.0.0.1:8080.',
    );
  }
  browser = await chromium.launch({ executablePath: CHROMIUM_PATH, args: CHROMIUM_ARGS });
  return browser;
}

/** Returns a new context of the browser that launchBrowser started. */
export function newContext(options = {}) {
  return browser.newContext(options);
}

export async function closeBrowser() {
  await browser?.close();
  browser = null;
}

/**
 * Records every worker→page message in window.__workerMessages by wrapping
 * the Worker constructor before the page's scripts run. The app's own
 * onmessage handler is untouched.
 */
function recordWorkerMessages() {
  const NativeWorker = window.Worker;
  window.__workerMessages = [];
  window.Worker = class RecordingWorker extends NativeWorker {
    constructor(...args) {
      super(...args);
      this.addEventListener('message', (event) => {
        window.__workerMessages.push({ ...event.data, receivedAt: performance.now() });
      });
    }
  };
}

/**
 * Opens the chat page in a fresh browser context and collects console errors
 * and uncaught exceptions. Call `session.close()` at the end of the test: it
 * asserts that none occurred.
 *
 * Console errors that match one of `expectedConsoleErrors` (regular
 * expressions) go to `session.expectedErrors` instead, for tests that cause
 * one on purpose. `session.response` is the response to the page request.
 * `origin` defaults to PRUNECHAT_URL.
 */
export async function openChat({
  maxContext = null,
  onContext = null,
  origin = BASE_URL,
  path = '/',
  expectedConsoleErrors = [],
} = {}) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 860 } });
  onContext?.(context);
  const problems = [];
  const expectedErrors = [];
  context.on('console', (message) => {
    if (message.type() !== 'error') {
      return;
    }
    if (expectedConsoleErrors.some((pattern) => pattern.test(message.text()))) {
      expectedErrors.push(message.text());
    } else {
      problems.push(`console error: ${message.text()}`);
    }
  });
  context.on('weberror', (error) => problems.push(`uncaught: ${error.error().message}`));
  await context.addInitScript(recordWorkerMessages);
  if (maxContext !== null) {
    await context.addInitScript(storeMaxContext, maxContext);
  }

  const page = await context.newPage();
  page.on('pageerror', (error) => problems.push(`pageerror: ${error.message}`));
  page.on('crash', () => problems.push('page crashed'));
  const response = await page.goto(`${origin}${path}`);

  return {
    context,
    page,
    response,
    problems,
    expectedErrors,
    async close() {
      await context.close();
      assert.deepEqual(problems, [], 'the page logged errors');
    },
  };
}

/** Stores the context length setting before the page loads its model. */
function storeMaxContext(maxContext) {
  // Init scripts also run in about:blank, where localStorage throws.
  if (location.protocol.startsWith('http')) {
    localStorage.setItem('prunechat.settings', JSON.stringify({ maxContext }));
  }
}

export async function waitForModel(page) {
  await page.waitForSelector('[data-testid=model-status][data-state=ready]', { timeout: LOAD_TIMEOUT_MS });
}

/** Fills sampling inputs by data-testid, for example {temperature: 0, 'max-new-tokens': 32}. */
export async function setSampling(page, values) {
  for (const [testId, value] of Object.entries(values)) {
    await page.fill(`[data-testid=${testId}]`, String(value));
  }
}

export function workerMessages(page) {
  return page.evaluate(() => window.__workerMessages.map(({ receivedAt, ...message }) => message));
}

export async function messageCount(page) {
  return page.evaluate(() => window.__workerMessages.length);
}

/** Waits until the worker sends a message of `type` after index `from`, and returns it. */
export async function waitForWorkerMessage(page, type, from, timeout = REPLY_TIMEOUT_MS) {
  const handle = await page.waitForFunction(
    ([wantedType, start]) => window.__workerMessages.slice(start).find((message) => message.type === wantedType),
    [type, from],
    { timeout, polling: 50 },
  );
  return handle.jsonValue();
}

/**
 * Sends `text` with Enter and waits for the reply to finish. Returns the
 * protocol messages of the turn and the reply text shown on the page.
 */
export async function ask(page, text) {
  const from = await messageCount(page);
  await page.fill('[data-testid=prompt]', text);
  await page.press('[data-testid=prompt]', 'Enter');
  const done = await waitForWorkerMessage(page, 'done', from);
  const turn = (await workerMessages(page)).slice(from);
  const replyText = await page.locator('.message-assistant').last().locator('[data-testid=message-body]').textContent();
  return {
    done,
    turnStart: turn.find((message) => message.type === 'turn-start'),
    tokens: turn.filter((message) => message.type === 'token'),
    errors: turn.filter((message) => message.type === 'error'),
    replyText,
  };
}

/** Same-origin paths of the wllama module and its wasm under node_modules/. */
export const WLLAMA_MODULE = '/node_modules/@wllama/wllama/esm/index.js';
export const WLLAMA_WASM = '/node_modules/@wllama/wllama/esm/wasm/wllama.wasm';

/**
 * Runs in the page (page.evaluate): loads `modelUrl` in wllama (llama.cpp in
 * wasm; one thread, CPU) and returns its metadata and an 8-token greedy
 * completion. wllama starts its workers from blob: URLs, which the page CSP
 * (worker-src 'self') rejects, so call it in a context with `bypassCSP: true`.
 */
export async function runWllama({ moduleUrl, wasmUrl, modelUrl }) {
  const { Wllama } = await import(moduleUrl);
  const wllama = new Wllama({ default: wasmUrl }, { suppressNativeLog: true });
  await wllama.loadModelFromUrl(modelUrl, { n_ctx: 256, n_threads: 1, n_gpu_layers: 0, useCache: false });
  const metadata = wllama.getModelMetadata();
  const completion = await wllama.createCompletion({
    prompt: 'The capital of France is',
    max_tokens: 8,
    temperature: 0,
    seed: 1,
  });
  await wllama.exit();
  return {
    architecture: metadata.meta['general.architecture'],
    nLayer: metadata.hparams.nLayer,
    nEmbd: metadata.hparams.nEmbd,
    text: completion.choices[0].text,
    generated: completion.usage?.completion_tokens ?? null,
  };
}
