// End-to-end tests of the threaded wasm build (pkg-threads/) on the real
// SmolLM2-135M-Instruct Q8_0 model in headless Chromium:
// - a worker loaded with threads: 2 runs a pool of 2 threads, and its greedy
//   replies are token for token those of a worker with threads: 1 (pkg/),
//   also for a reply held to one thread by the send's `threads`;
// - the chat page shows the thread count;
// - a page that is not cross-origin isolated (scripts/serve.py
//   --no-isolation, started here on a free port) requests 2 threads, gets 1
//   with the reason, and still chats;
// - a page whose pkg-threads/ requests fail with 404 does the same.
//
// Run through `make test` (scripts/test.sh), which builds pkg/ and
// pkg-threads/, fetches the model, starts scripts/serve.py and sets
// PRUNECHAT_URL. By hand:
//   PORT=8080 python3 scripts/serve.py &
//   PRUNECHAT_URL=http://127.0.0.1:8080 node --test tests/e2e/threads.test.mjs

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import {
  GREEDY,
  LOAD_TIMEOUT_MS,
  MODEL_FILE,
  REPO_ROOT,
  TEST_TIMEOUT_MS,
  ask,
  closeBrowser,
  launchBrowser,
  openChat,
  setSampling,
  waitForModel,
  workerMessages,
} from './helpers.mjs';

const PROMPTS = [
  'Write a short story about a robot who learns to paint.',
  'Explain how a bicycle works.',
  'List five fruits and describe each one.',
];
const SAMPLING = { temperature: 0, top_k: 0, top_p: 1, repeat_penalty: 1, seed: 1, max_new_tokens: 64 };
// Two workers load the model and generate 3 × 64 tokens each; on a shared
// 2-core machine that takes a few minutes at most.
const COMPARISON_TIMEOUT_MS = 600_000;

let plainServer = null;
let plainOrigin = null;

/** Starts scripts/serve.py --no-isolation on a free port and returns its origin. */
function startPlainServer() {
  return new Promise((resolve, reject) => {
    const server = spawn(
      'python3',
      [path.join(REPO_ROOT, 'scripts', 'serve.py'), '--port', '0', '--root', REPO_ROOT, '--no-isolation'],
      { stdio: ['ignore', 'pipe', 'ignore'] },
    );
    plainServer = server;
    let output = '';
    const timer = setTimeout(() => reject(new Error('scripts/serve.py --no-isolation printed no URL within 15 s')), 15_000);
    server.stdout.setEncoding('utf8');
    server.stdout.on('data', (chunk) => {
      output += chunk;
      const newline = output.indexOf('\n');
      if (newline >= 0) {
        clearTimeout(timer);
        resolve(output.slice(0, newline).trim().replace(/\/$/, ''));
      }
    });
    server.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`scripts/serve.py --no-isolation exited with status ${code} before it printed its URL`));
    });
  });
}

before(async () => {
  for (const file of ['pkg/prunechat.js', 'pkg-threads/prunechat.js', `models/${MODEL_FILE}`]) {
    assert.ok(
      existsSync(path.join(REPO_ROOT, file)),
      `${file} is missing: run wasm-pack, scripts/build-wasm-threads.sh and scripts/fetch-model.sh (make test does)`,
    );
  }
  await launchBrowser();
  plainOrigin = await startPlainServer();
});

after(async () => {
  await closeBrowser();
  plainServer?.kill();
});

/**
 * Runs in the page (page.evaluate): starts a worker of its own, loads the
 * model with `threads`, and sends each prompt after a reset, with
 * `return_tokens` and `sendThreads[i]` as the send's `threads` where it is
 * not null. Then sends `threads: 0`, which must fail. Returns the `loaded`
 * message's thread fields, each reply's token ids and threads, and the
 * error of the last send.
 */
async function greedyReplies({ modelUrl, threads, prompts, sampling, sendThreads = [] }) {
  const worker = new Worker('/www/worker.js', { type: 'module' });
  const request = (message, until) =>
    new Promise((resolve, reject) => {
      const onMessage = (event) => {
        const reply = event.data;
        if (reply.type === 'error') {
          worker.removeEventListener('message', onMessage);
          reject(new Error(`worker error (${reply.context}): ${reply.message}`));
        } else if (reply.type === until) {
          worker.removeEventListener('message', onMessage);
          resolve(reply);
        }
      };
      worker.addEventListener('message', onMessage);
      worker.postMessage(message);
    });
  try {
    const loaded = await request({ type: 'load', url: modelUrl, maxContext: 2048, threads }, 'loaded');
    const replies = [];
    for (const [i, text] of prompts.entries()) {
      await request({ type: 'reset' }, 'reset-done');
      const send = { type: 'send', text, system: '', sampling, return_tokens: true };
      if ((sendThreads[i] ?? null) !== null) {
        send.threads = sendThreads[i];
      }
      const done = await request(send, 'done');
      replies.push({ tokens: done.tokens.reply, decodeTokensPerS: done.stats.decode_tokens_per_s, threads: done.stats.threads });
    }
    const badThreadsError = await request({ type: 'send', text: 'Hi', system: '', sampling, threads: 0 }, 'done').then(
      () => null,
      (error) => error.message,
    );
    return {
      badThreadsError,
      threads: loaded.threads,
      infoThreads: loaded.info.threads,
      threadsRequested: loaded.threads_requested,
      threadsFallback: loaded.threads_fallback,
      replies,
    };
  } finally {
    worker.terminate();
  }
}

/** Asks the chat page "What is 2+2?" with greedy sampling and checks that the reply has a 4. */
async function assertAnswersArithmetic(page) {
  await setSampling(page, GREEDY);
  const reply = await ask(page, 'What is 2+2?');
  assert.deepEqual(reply.errors, []);
  assert.match(reply.replyText, /4/, `reply without "4": ${JSON.stringify(reply.replyText)}`);
}

describe('threaded wasm build', () => {
  test('two threads reply as one thread does', { timeout: COMPARISON_TIMEOUT_MS }, async () => {
    const session = await openChat({ path: '/?view=lab' });
    const { page } = session;
    assert.equal(await page.evaluate(() => crossOriginIsolated), true, 'the page is not cross-origin isolated');
    const modelUrl = new URL(`/models/${MODEL_FILE}`, page.url()).href;

    const oneThread = await page.evaluate(greedyReplies, { modelUrl, threads: 1, prompts: PROMPTS, sampling: SAMPLING });
    // The second prompt runs on one thread of the two.
    const twoThreads = await page.evaluate(greedyReplies, { modelUrl, threads: 2, prompts: PROMPTS, sampling: SAMPLING, sendThreads: [null, 1, null] });

    assert.equal(oneThread.threads, 1);
    assert.equal(oneThread.threadsFallback, null);
    assert.equal(twoThreads.threadsFallback, null, `threads: 2 fell back: ${JSON.stringify(twoThreads.threadsFallback)}`);
    assert.equal(twoThreads.threadsRequested, 2);
    assert.equal(twoThreads.threads, 2, 'the loaded message reports the wrong thread count');
    assert.equal(twoThreads.infoThreads, 2, "the engine's info reports the wrong thread count");
    assert.deepEqual(oneThread.replies.map((reply) => reply.threads), [1, 1, 1]);
    assert.deepEqual(twoThreads.replies.map((reply) => reply.threads), [2, 1, 2], 'threads of each 2-thread reply');
    for (const run of [oneThread, twoThreads]) {
      assert.match(run.badThreadsError ?? '', /threads must be an integer from 1 to \d+, got 0/);
    }
    for (const [i, prompt] of PROMPTS.entries()) {
      const expected = oneThread.replies[i].tokens;
      const actual = twoThreads.replies[i].tokens;
      console.log(
        `"${prompt}": ${expected.length} tokens; decode ${oneThread.replies[i].decodeTokensPerS?.toFixed(1)} tokens/s on 1 thread, ` +
          `${twoThreads.replies[i].decodeTokensPerS?.toFixed(1)} on 2`,
      );
      // A reply that ends early leaves few tokens to compare.
      assert.ok(expected.length >= 16, `the 1-thread reply to "${prompt}" has only ${expected.length} tokens`);
      assert.deepEqual(actual, expected, `the 2-thread reply to "${prompt}" differs`);
    }
    await session.close();
  });

  test('chat page shows its thread count', { timeout: TEST_TIMEOUT_MS }, async () => {
    const session = await openChat({ path: '/?threads=2' });
    const { page } = session;
    await waitForModel(page);
    assert.equal(await page.textContent('[data-testid=fact-threads]'), '2');

    await assertAnswersArithmetic(page);
    await session.close();
  });

  test('page without isolation falls back to one thread', { timeout: TEST_TIMEOUT_MS }, async () => {
    const session = await openChat({ origin: plainOrigin, path: '/?threads=2' });
    const { page } = session;
    assert.equal(await page.evaluate(() => crossOriginIsolated), false, '--no-isolation left the page isolated');
    await page.waitForSelector('[data-testid=model-status][data-state=ready]', { timeout: LOAD_TIMEOUT_MS });

    const loaded = (await workerMessages(page)).find((message) => message.type === 'loaded');
    assert.equal(loaded.threads, 1);
    assert.equal(loaded.info.threads, 1);
    assert.equal(loaded.threads_requested, 2);
    assert.equal(loaded.threads_fallback?.reason, 'not_isolated');
    assert.match(loaded.threads_fallback.message, /cross-origin isolated/);
    assert.equal(
      await page.textContent('[data-testid=fact-threads]'),
      '1 (2 requested; the page is not cross-origin isolated)',
    );

    await assertAnswersArithmetic(page);
    await session.close();
  });

  test('missing threaded build falls back to one thread', { timeout: TEST_TIMEOUT_MS }, async () => {
    const session = await openChat({
      path: '/?threads=2',
      // Chromium logs the failed module request of the worker as a console error.
      expectedConsoleErrors: [/404/],
      onContext: (context) => context.route('**/pkg-threads/**', (route) => route.fulfill({ status: 404, body: 'not found' })),
    });
    const { page } = session;
    await waitForModel(page);

    const loaded = (await workerMessages(page)).find((message) => message.type === 'loaded');
    assert.equal(loaded.threads, 1);
    assert.equal(loaded.threads_fallback?.reason, 'module_failed');
    assert.match(loaded.threads_fallback.message, /pkg-threads\/prunechat\.js/);
    assert.equal(await page.textContent('[data-testid=fact-threads]'), '1 (2 requested; pkg-threads/ could not be loaded)');

    await assertAnswersArithmetic(page);
    await session.close();
  });
});
