// End-to-end tests of the chat page: the real wasm engine and the real
// SmolLM2-135M-Instruct model in headless Chromium.
//
// Run through `make test` (scripts/test.sh), which builds pkg/, fetches the
// model, starts scripts/serve.py and sets PRUNECHAT_URL to its origin. By hand:
//   PORT=8080 python3 scripts/serve.py &
//   PRUNECHAT_URL=http://127.0.0.1:8080 node --test tests/e2e/
//
// Every test fails on a console error or an uncaught exception in the page or
// its worker.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import {
  BASE_URL,
  GREEDY,
  LOAD_TIMEOUT_MS,
  MODEL_FILE,
  REPLY_TIMEOUT_MS,
  REPO_ROOT,
  TEST_TIMEOUT_MS,
  ask,
  closeBrowser,
  launchBrowser,
  messageCount,
  openChat,
  setSampling,
  waitForModel,
  waitForWorkerMessage,
  workerMessages,
} from './helpers.mjs';

before(launchBrowser);
after(closeBrowser);

// ---------------------------------------------------------------------------
// Tests

describe('chat page', { timeout: TEST_TIMEOUT_MS }, () => {
  test('answers 2+2 with a streamed reply', async () => {
    const session = await openChat();
    const { page } = session;
    await waitForModel(page);
    await setSampling(page, GREEDY);

    const reply = await ask(page, 'What is 2+2?');

    assert.deepEqual(reply.errors, []);
    assert.ok(reply.tokens.length > 1, `expected several token messages, got ${reply.tokens.length}`);
    assert.ok(['eos', 'max_tokens'].includes(reply.done.reason), `unexpected done reason ${reply.done.reason}`);
    assert.equal(reply.replyText, reply.tokens.map((token) => token.text).join(''));
    assert.match(reply.replyText, /4/, `reply without "4": ${JSON.stringify(reply.replyText)}`);

    const stats = reply.done.stats;
    assert.ok(stats.n_generated >= reply.tokens.length, `n_generated ${stats.n_generated} < ${reply.tokens.length} tokens`);
    assert.ok(stats.ttft_ms > 0, 'time to first token is missing');
    assert.ok(stats.prefill_tokens_per_s > 0, 'prefill speed is missing');
    assert.ok(stats.decode_tokens_per_s > 0, 'decode speed is missing');
    assert.ok(stats.wasm_memory_bytes > 0, 'wasm memory size is missing');
    for (const testId of ['stat-ttft', 'stat-prefill', 'stat-decode', 'stat-memory', 'fact-size', 'fact-params']) {
      const value = await page.textContent(`[data-testid=${testId}]`);
      assert.notEqual(value.trim(), '—', `${testId} shows no value`);
    }
    await session.close();
  });

  test('stop halts a long reply', async () => {
    const session = await openChat();
    const { page } = session;
    await waitForModel(page);
    await setSampling(page, { temperature: 0.7, 'max-new-tokens': 2000, seed: 7 });

    const from = await messageCount(page);
    await page.fill('[data-testid=prompt]', 'Write a very long story about a dragon who learns to cook. Use at least 800 words.');
    await page.click('[data-testid=send]');
    await page.waitForFunction(
      (start) => window.__workerMessages.slice(start).filter((message) => message.type === 'token').length >= 8,
      from,
      { timeout: REPLY_TIMEOUT_MS, polling: 50 },
    );
    assert.equal(await page.isEnabled('[data-testid=send]'), false, 'Send is enabled during a reply');

    const stopClickedAt = await page.evaluate(() => performance.now());
    await page.click('[data-testid=stop]');
    const done = await waitForWorkerMessage(page, 'done', from, 10_000);
    assert.equal(done.reason, 'stopped');
    const stoppedAt = await page.evaluate(
      (start) => window.__workerMessages.slice(start).find((message) => message.type === 'done').receivedAt,
      from,
    );
    assert.ok(stoppedAt - stopClickedAt < 5_000, `stop took ${Math.round(stoppedAt - stopClickedAt)} ms`);

    const reply = page.locator('.message-assistant').last();
    const textAtStop = await reply.locator('[data-testid=message-body]').textContent();
    assert.ok(textAtStop.length > 0, 'the partial reply was removed');
    assert.equal(await page.isEnabled('[data-testid=send]'), true, 'Send is not enabled right after stop');
    assert.equal(await reply.getAttribute('data-reason'), 'stopped');

    await page.waitForTimeout(1_000);
    assert.equal(await reply.locator('[data-testid=message-body]').textContent(), textAtStop, 'the reply kept growing');

    await setSampling(page, GREEDY);
    const next = await ask(page, 'What is 2+2?');
    assert.deepEqual(next.errors, []);
    assert.ok(next.replyText.length > 0, 'no reply after stop');
    await session.close();
  });

  test('new chat clears history', async () => {
    const session = await openChat();
    const { page } = session;
    await waitForModel(page);
    await setSampling(page, { ...GREEDY, 'max-new-tokens': 16 });

    const first = await ask(page, 'What is the capital of France?');
    const second = await ask(page, 'And of Germany?');
    assert.ok(
      second.turnStart.prompt_tokens > first.turnStart.prompt_tokens,
      'the second turn does not include the first one',
    );
    assert.ok(second.turnStart.reused_tokens > 0, 'the second turn reused no cached tokens');

    const from = await messageCount(page);
    await page.click('[data-testid=new-chat]');
    await waitForWorkerMessage(page, 'reset-done', from, 10_000);
    assert.equal(await page.locator('[data-testid=messages] > li').count(), 0);
    assert.equal(await page.isVisible('[data-testid=empty-state]'), true);
    for (const stat of ['stat-ttft', 'stat-prefill', 'stat-decode', 'stat-generated', 'stat-prompt']) {
      assert.equal(await page.textContent(`[data-testid=${stat}]`), '—', `${stat} still shows the old chat`);
    }

    const fresh = await ask(page, 'What is the capital of France?');
    assert.equal(fresh.turnStart.reused_tokens, 0, 'tokens were reused after New chat');
    assert.equal(fresh.turnStart.prompt_tokens, first.turnStart.prompt_tokens, 'the prompt still contains old turns');
    assert.equal(fresh.replyText, first.replyText, 'greedy reply differs from the first chat');
    await session.close();
  });

  test('empty prompt is rejected', async () => {
    const session = await openChat();
    const { page } = session;
    await waitForModel(page);
    const from = await messageCount(page);

    await page.fill('[data-testid=prompt]', '   \n  ');
    await page.click('[data-testid=send]');
    await page.waitForSelector('[data-testid=error-area]:not([hidden])');
    assert.match(await page.textContent('[data-testid=error-text]'), /message is empty/);

    await page.press('[data-testid=prompt]', 'Enter');
    assert.equal(await page.locator('[data-testid=messages] > li').count(), 0);
    const sent = (await workerMessages(page)).slice(from);
    assert.deepEqual(sent, [], 'the worker received a turn for an empty prompt');
    assert.equal(await page.evaluate(() => document.querySelector('[data-testid=top-p]').validity.valid), true,
      'the default top-p is not a valid step of its input');
    await session.close();
  });

  test('non-GGUF file shows an error', async () => {
    const session = await openChat();
    const { page } = session;
    await waitForModel(page);
    const modelName = await page.textContent('[data-testid=model-name]');

    const from = await messageCount(page);
    await page.setInputFiles('[data-testid=file-input]', {
      name: 'notes.txt',
      mimeType: 'text/plain',
      buffer: Buffer.from('These are notes, not a model.\n'),
    });
    const error = await waitForWorkerMessage(page, 'error', from, 30_000);
    assert.equal(error.code, 'not_gguf');
    assert.equal(error.fatal, false);

    const errorText = await page.textContent('[data-testid=error-text]');
    assert.match(errorText, /notes\.txt/);
    assert.match(errorText, /not a GGUF model file/);
    assert.match(errorText, /current model stays loaded/);
    assert.equal(await page.textContent('[data-testid=model-name]'), modelName);
    await page.waitForSelector('[data-testid=model-status][data-state=ready]');

    await setSampling(page, GREEDY);
    const reply = await ask(page, 'What is 2+2?');
    assert.deepEqual(reply.errors, []);
    assert.match(reply.replyText, /4/);
    await session.close();
  });

  test('truncated GGUF file shows an error', async () => {
    const session = await openChat();
    const { page } = session;
    await waitForModel(page);

    // The first 64 KiB of the real model: a valid header whose tensor data is
    // missing. The engine must reject it with an Error, not trap.
    const truncated = await page.evaluate(async (file) => {
      const response = await fetch(`/models/${file}`, { headers: { range: 'bytes=0-65535' } });
      return [...new Uint8Array(await response.arrayBuffer())];
    }, MODEL_FILE);
    const from = await messageCount(page);
    await page.setInputFiles('[data-testid=file-input]', {
      name: 'truncated.gguf',
      mimeType: 'application/octet-stream',
      buffer: Buffer.from(truncated),
    });
    const error = await waitForWorkerMessage(page, 'error', from, 60_000);
    assert.equal(error.context, 'load');
    assert.equal(error.fatal, false, `the engine trapped: ${error.message}`);
    assert.match(await page.textContent('[data-testid=error-text]'), /Loading the model failed/);

    await setSampling(page, GREEDY);
    const reply = await ask(page, 'What is 2+2?');
    assert.deepEqual(reply.errors, []);
    assert.ok(reply.replyText.length > 0, 'no reply after the failed load');
    await session.close();
  });

  test('markup in replies and file names shows as text', async () => {
    const session = await openChat();
    const { page } = session;
    await waitForModel(page);
    const markup = '<img src=x onerror="window.__injected = true"><b>bold</b>';

    // Drive the same function that handles the worker's messages.
    await page.evaluate(async (text) => {
      const app = await import('/www/app.js');
      app.handleWorkerMessage({ type: 'turn-start', prompt_tokens: 3, prefill_tokens: 3, reused_tokens: 0, dropped_turns: 0 });
      app.handleWorkerMessage({ type: 'token', text: text.slice(0, 10) });
      app.handleWorkerMessage({ type: 'token', text: text.slice(10) });
      app.handleWorkerMessage({
        type: 'done',
        reason: 'eos',
        stats: { ttft_ms: 1, prefill_tokens_per_s: 1, decode_tokens_per_s: 1, n_generated: 2, wasm_memory_bytes: 1 },
      });
      app.handleWorkerMessage({ type: 'error', context: 'load', code: 'not_gguf', params: { name: text }, message: text, fatal: false });
    }, markup);

    const body = page.locator('.message-assistant').last().locator('[data-testid=message-body]');
    assert.equal(await body.textContent(), markup);
    assert.match(await page.textContent('[data-testid=error-text]'), /<img src=x/);
    const injected = '[data-testid=messages] img, [data-testid=messages] b, [data-testid=error-area] img, [data-testid=error-area] b';
    assert.equal(await page.locator(injected).count(), 0);

    // A prompt with markup goes through the real path.
    await setSampling(page, { ...GREEDY, 'max-new-tokens': 8 });
    await ask(page, `Repeat this: ${markup}`);
    const userBody = page.locator('.message-user').last().locator('[data-testid=message-body]');
    assert.equal(await userBody.textContent(), `Repeat this: ${markup}`);
    assert.equal(await page.locator(injected).count(), 0);
    assert.equal(await page.evaluate(() => window.__injected), undefined);
    await session.close();
  });

  test('old turns are dropped when the context fills', async () => {
    // A 256-token context fills after a few turns.
    const session = await openChat({ maxContext: 256 });
    const { page } = session;
    await waitForModel(page);
    assert.match(await page.textContent('[data-testid=fact-context]'), /^256 \//);
    await setSampling(page, { ...GREEDY, 'max-new-tokens': 64 });

    const questions = [
      'Describe the ocean in three sentences.',
      'Describe a forest in three sentences.',
      'Describe a desert in three sentences.',
      'Describe a mountain in three sentences.',
      'Describe a city in three sentences.',
      'Describe a river in three sentences.',
    ];
    let dropped = null;
    for (const question of questions) {
      const reply = await ask(page, question);
      assert.deepEqual(reply.errors, []);
      assert.ok(reply.turnStart.prompt_tokens <= 256, `prompt of ${reply.turnStart.prompt_tokens} tokens exceeds the context`);
      if (reply.turnStart.dropped_turns > 0) {
        dropped = reply.turnStart;
        break;
      }
    }
    assert.notEqual(dropped, null, 'no turn was dropped in six turns with a 256-token context');
    const notice = page.locator('[data-testid=notice-dropped]');
    assert.equal(await notice.count(), 1);
    assert.match(await notice.textContent(), /dropped because the conversation no longer fits/);
    assert.ok((await page.locator('.message.dropped').count()) >= 2, 'dropped turns are not marked');
    await session.close();
  });

  test('prompt longer than the context is rejected', async () => {
    const session = await openChat({ maxContext: 256 });
    const { page } = session;
    await waitForModel(page);
    await setSampling(page, { ...GREEDY, 'max-new-tokens': 64 });

    const longPrompt = `Summarize this text. ${'The cat sat on the mat and looked at the rain. '.repeat(30)}`.trim();
    const from = await messageCount(page);
    await page.fill('[data-testid=prompt]', longPrompt);
    await page.press('[data-testid=prompt]', 'Enter');
    const error = await waitForWorkerMessage(page, 'error', from, 60_000);
    assert.equal(error.context, 'send');
    assert.equal(error.fatal, false);
    assert.match(await page.textContent('[data-testid=error-text]'), /Starting the reply failed/);
    assert.equal(await page.inputValue('[data-testid=prompt]'), longPrompt, 'the prompt was not given back');
    assert.equal(await page.locator('[data-testid=messages] > li').count(), 0);
    assert.equal(await page.isEnabled('[data-testid=send]'), true);

    const reply = await ask(page, 'What is 2+2?');
    assert.deepEqual(reply.errors, []);
    assert.match(reply.replyText, /4/);
    await session.close();
  });

  test('second load comes from the cache', async () => {
    // Playwright reports the worker's requests too, so the first load shows
    // up here.
    const modelRequests = [];
    const session = await openChat({
      onContext: (context) =>
        context.on('request', (request) => {
          if (request.url().endsWith('.gguf')) {
            modelRequests.push(request.url());
          }
        }),
    });
    const { page } = session;
    await waitForModel(page);
    assert.equal(await page.getAttribute('[data-testid=progress-text]', 'data-i18n'), 'model.source.network');
    assert.deepEqual(modelRequests, [`${BASE_URL}/models/${MODEL_FILE}`]);

    await page.reload();
    await waitForModel(page);
    assert.equal(await page.getAttribute('[data-testid=progress-text]', 'data-i18n'), 'model.source.cache');
    assert.equal(modelRequests.length, 1, 'the model was requested from the network again');
    await session.close();
  });

  test('a cached model with a wrong Content-Length still loads whole', async () => {
    const session = await openChat();
    const { page } = session;
    await waitForModel(page);
    const fileBytes = (await workerMessages(page)).find((m) => m.type === 'loaded').info.file_bytes;
    // The worker reads a cached body straight into a buffer of Content-Length bytes. A body
    // longer or shorter than that, or one without a usable length, must still arrive whole.
    for (const declared of [String(fileBytes - 4096), String(fileBytes + 4096), 'unknown']) {
      await page.evaluate(async (length) => {
        const cache = await caches.open('prunechat-models-v1');
        const [request] = await cache.keys();
        const bytes = await (await cache.match(request)).arrayBuffer();
        await cache.put(request, new Response(bytes, { headers: { 'content-length': length } }));
      }, declared);
      await page.reload();
      await waitForModel(page);
      const loaded = (await workerMessages(page)).find((m) => m.type === 'loaded');
      assert.equal(loaded.source.cached, true, `Content-Length ${declared}: not read from the cache`);
      assert.equal(loaded.info.file_bytes, fileBytes, `Content-Length ${declared}`);
    }
    await session.close();
  });

  test('a file the engine rejects is not kept in the cache', async () => {
    // The first 64 KiB of the model, served as if it were the whole file: a download that a
    // proxy cut short.
    const head = readFileSync(path.join(REPO_ROOT, 'models', MODEL_FILE)).subarray(0, 65536);
    const modelPattern = `**/models/${MODEL_FILE}`;
    const cutShort = (route) =>
      route.fulfill({ status: 200, contentType: 'application/octet-stream', body: head });
    const session = await openChat({ onContext: (context) => context.route(modelPattern, cutShort) });
    const { page } = session;
    const cachedUrls = () =>
      page.evaluate(async () => (await (await caches.open('prunechat-models-v1')).keys()).map((request) => request.url));

    const firstError = await waitForWorkerMessage(page, 'error', 0, LOAD_TIMEOUT_MS);
    assert.equal(firstError.context, 'load');
    assert.deepEqual(await cachedUrls(), [], 'the cut-short download was cached');

    // The whole file loads and is cached; then the cache entry is cut short as well.
    await page.context().unroute(modelPattern, cutShort);
    await page.reload();
    await waitForModel(page);
    assert.equal((await cachedUrls()).length, 1, 'the accepted download was not cached');
    await page.evaluate(async (bytes) => {
      const cache = await caches.open('prunechat-models-v1');
      const [request] = await cache.keys();
      await cache.put(request, new Response(new Uint8Array(bytes)));
    }, [...head]);
    await page.reload();
    const cachedError = await waitForWorkerMessage(page, 'error', 0, LOAD_TIMEOUT_MS);
    assert.equal(cachedError.context, 'load');
    assert.deepEqual(await cachedUrls(), [], 'the rejected cache entry was kept');

    // So the next load downloads the file again.
    await page.reload();
    await waitForModel(page);
    assert.equal(await page.getAttribute('[data-testid=progress-text]', 'data-i18n'), 'model.source.network');
    await session.close();
  });

  test('language switch is remembered', async () => {
    const session = await openChat();
    const { page } = session;
    await page.click('[data-testid=lang-zh]');
    assert.equal(await page.textContent('[data-testid=send]'), '发送');
    assert.equal(await page.getAttribute('html', 'lang'), 'zh-CN');

    await page.reload();
    assert.equal(await page.textContent('[data-testid=send]'), '发送');
    assert.equal(await page.getAttribute('[data-testid=lang-zh]', 'aria-pressed'), 'true');

    const missing = await page.evaluate(async () => {
      const i18n = await import('/www/i18n.js');
      const english = new Set(i18n.stringKeys('en'));
      const chinese = new Set(i18n.stringKeys('zh'));
      return {
        chinese: [...english].filter((key) => !chinese.has(key)),
        english: [...chinese].filter((key) => !english.has(key)),
      };
    });
    assert.deepEqual(missing, { chinese: [], english: [] }, 'the string tables differ');

    await page.click('[data-testid=lang-en]');
    assert.equal(await page.textContent('[data-testid=send]'), 'Send');
    await waitForModel(page);
    await session.close();
  });
});

describe('pruned model on the page', { timeout: TEST_TIMEOUT_MS }, () => {
  let workDir;
  let prunedPath;
  let pruneReport;

  before(() => {
    // A real pruned model from the CLI: Wanda at 50% with a small calibration
    // set, which takes about 15 s here.
    const binary = path.join(REPO_ROOT, 'target', 'release', 'prunechat');
    assert.ok(existsSync(binary), `${binary} is missing: run \`cargo build --release\` (make test does)`);
    workDir = mkdtempSync(path.join(tmpdir(), 'prunechat-e2e-'));
    prunedPath = path.join(workDir, 'wanda-50.gguf');
    const reportPath = path.join(workDir, 'wanda-50.json');
    execFileSync(
      binary,
      [
        'prune', path.join(REPO_ROOT, 'models', MODEL_FILE),
        '--method', 'wanda', '--sparsity', '0.5', '--n-samples', '8', '--seq-len', '64',
        '--out', prunedPath, '--report', reportPath,
      ],
      { stdio: ['ignore', 'ignore', 'inherit'], timeout: 240_000 },
    );
    pruneReport = JSON.parse(readFileSync(reportPath, 'utf8'));
  });

  after(() => {
    if (workDir) {
      rmSync(workDir, { recursive: true, force: true });
    }
  });

  test('loads and chats with a Wanda 50% file', async () => {
    const session = await openChat();
    const { page } = session;
    await waitForModel(page);
    assert.match(await page.textContent('[data-testid=fact-sparsity]'), /^0\.\d %$/, 'the dense Q8_0 file has under 1% zeros');

    const from = await messageCount(page);
    await page.setInputFiles('[data-testid=file-input]', prunedPath);
    const loaded = await waitForWorkerMessage(page, 'loaded', from, LOAD_TIMEOUT_MS);
    await waitForModel(page);
    assert.equal(loaded.name, 'wanda-50.gguf');
    assert.equal(loaded.source.kind, 'file');

    // The CLI's report gives the zeros before Q8_0 rounding; rounding only adds zeros.
    const sparsity = loaded.info.decoder_sparsity;
    assert.ok(
      sparsity >= pruneReport.sparsity && sparsity < pruneReport.sparsity + 0.01,
      `page sparsity ${sparsity}, CLI report ${pruneReport.sparsity}`,
    );
    assert.equal(await page.textContent('[data-testid=fact-sparsity]'), `${(sparsity * 100).toFixed(1)} %`);
    assert.equal(loaded.info.n_params, 134_515_008);

    await setSampling(page, GREEDY);
    const reply = await ask(page, 'What is 2+2?');
    assert.deepEqual(reply.errors, []);
    assert.ok(reply.tokens.length > 0, 'no tokens streamed');
    assert.ok(reply.replyText.trim().length > 0, 'the reply is empty');
    await session.close();
  });
});
