// End-to-end tests of the compare view: prepared models from
// models/manifest.json (scripts/prepare-variants.py), one worker per model,
// the real wasm engine in headless Chromium.
//
// Run through `make test` (scripts/test.sh), which prepares the models,
// starts scripts/serve.py and sets PRUNECHAT_URL. By hand:
//   python3 scripts/prepare-variants.py
//   PORT=8080 python3 scripts/serve.py &
//   PRUNECHAT_URL=http://127.0.0.1:8080 node --test tests/e2e/compare.test.mjs
//
// Every test fails on a console error or an uncaught exception in the page or
// its workers.

import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { CHROMIUM_ARGS, CHROMIUM_PATH } from '../../benches/common.mjs';

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const BASE_URL = (process.env.PRUNECHAT_URL ?? '').replace(/\/$/, '');
const MANIFEST_PATH = path.join(REPO_ROOT, 'models', 'manifest.json');

// Two models load and run side by side on a shared 2-core machine, so the
// waits are generous. A healthy run finishes each step in well under a minute.
const LOAD_TIMEOUT_MS = 180_000;
const REPLY_TIMEOUT_MS = 240_000;
const TEST_TIMEOUT_MS = 600_000;

// Greedy decoding without a repetition penalty: the reference model's reply is
// then its own top-1 choice at every position.
const GREEDY = { temperature: 0, 'repeat-penalty': 1, 'max-new-tokens': 24, seed: 7 };
const PROMPT = 'What is the capital of France?';

// The browser evaluates with the Q8_0 weights as stored, the CLI with weights
// dequantized to F32 (docs/evaluation.md), so the perplexities differ slightly
// (by 0.2% on the Wanda 50% model in one run).
const PERPLEXITY_TOLERANCE = 0.01;

let browser;
let manifest;

before(async () => {
  if (BASE_URL === '') {
    throw new Error('PRUNECHAT_URL is not set. Run the e2e tests with `make test`, or start scripts/serve.py and set PRUNECHAT_URL.');
  }
  assert.ok(existsSync(MANIFEST_PATH), `${MANIFEST_PATH} is missing: run python3 scripts/prepare-variants.py (make test does)`);
  manifest = JSON.parse(readFileSync(MANIFEST_PATH, 'utf8'));
  browser = await chromium.launch({ executablePath: CHROMIUM_PATH, args: CHROMIUM_ARGS });
});

after(async () => {
  await browser?.close();
});

// ---------------------------------------------------------------------------
// Helpers

/**
 * Opens the compare view (the page address ends in `query`) in a fresh context and records page
 * errors; `close()` asserts there were none.
 */
async function openCompare(query = '?view=compare') {
  const context = await browser.newContext({ viewport: { width: 1400, height: 1000 } });
  const problems = [];
  context.on('console', (message) => {
    if (message.type() === 'error') {
      problems.push(`console error: ${message.text()}`);
    }
  });
  context.on('weberror', (error) => problems.push(`uncaught: ${error.error().message}`));
  // Keeps every Worker the page starts in window.__workers, in creation order.
  await context.addInitScript(() => {
    const NativeWorker = window.Worker;
    window.__workers = [];
    window.Worker = class extends NativeWorker {
      constructor(...args) {
        super(...args);
        window.__workers.push(this);
      }
    };
  });
  const page = await context.newPage();
  page.on('pageerror', (error) => problems.push(`pageerror: ${error.message}`));
  page.on('crash', () => problems.push('page crashed'));
  await page.goto(`${BASE_URL}/${query}`);
  await page.waitForSelector('[data-testid=compare-choice]', { timeout: 30_000 });
  for (const [testId, value] of Object.entries(GREEDY)) {
    await page.fill(`[data-testid=${testId}]`, String(value));
  }
  return {
    page,
    async close() {
      await context.close();
      assert.deepEqual(problems, [], 'the page logged errors');
    },
  };
}

/** Ticks exactly the manifest models named in `names`. */
async function selectModels(page, names) {
  for (const box of await page.locator('[data-testid=compare-choice]').all()) {
    const name = await box.getAttribute('data-name');
    await box.setChecked(names.includes(name));
  }
}

function column(page, index) {
  return page.locator('[data-testid=compare-column]').nth(index);
}

async function waitForColumnStates(page, states, timeout) {
  await page.waitForFunction(
    (expected) => {
      const columns = [...document.querySelectorAll('[data-testid=compare-column]')];
      return columns.length === expected.length && columns.every((element, i) => element.dataset.state === expected[i]);
    },
    states,
    { timeout, polling: 100 },
  );
}

/** Sends `prompt` to the two loaded models and waits until both have replied and scored. */
async function sendToBoth(page, prompt) {
  await page.fill('[data-testid=compare-prompt]', prompt);
  await page.click('[data-testid=compare-send]');
  await page.waitForFunction(
    () => [...document.querySelectorAll('[data-testid=column-agreement]')].every((element) => element.dataset.value !== undefined),
    null,
    { timeout: REPLY_TIMEOUT_MS, polling: 100 },
  );
  await waitForColumnStates(page, ['ready', 'ready'], REPLY_TIMEOUT_MS);
}

/** Returns the numeric `data-value` of a figure in a column, or null when it has none. */
async function figure(page, index, name) {
  const value = await column(page, index).locator(`[data-testid=column-${name}]`).getAttribute('data-value');
  return value === null ? null : Number(value);
}

function entry(name) {
  const found = manifest.models.find((model) => model.name === name);
  assert.ok(found, `models/manifest.json has no model named ${name}`);
  return found;
}

// ---------------------------------------------------------------------------
// Tests

describe('compare view', { timeout: TEST_TIMEOUT_MS }, () => {
  test('manifest lists the dense model and variants', () => {
    assert.equal(manifest.models[0].name, manifest.reference);
    assert.ok(manifest.models.length >= 3, `only ${manifest.models.length} models`);
    for (const model of manifest.models) {
      assert.ok(existsSync(path.join(REPO_ROOT, model.file)), `${model.file} is missing`);
      assert.ok(model.sparsity >= 0, `${model.name}: sparsity ${model.sparsity}`);
      assert.ok(model.sparsity < 1, `${model.name}: sparsity ${model.sparsity}`);
      assert.ok(model.eval.perplexity > 1, `${model.name}: perplexity ${model.eval.perplexity}`);
    }
    assert.equal(entry(manifest.reference).eval.top1_agreement, 1);
    assert.ok(entry('wanda-50').sparsity > 0.45, `wanda-50 sparsity ${entry('wanda-50').sparsity}`);
    assert.ok(existsSync(path.join(REPO_ROOT, manifest.eval.windows)), `${manifest.eval.windows} is missing`);
  });

  test('two models reply, score and evaluate', async () => {
    const session = await openCompare();
    const { page } = session;
    const dense = entry(manifest.reference);
    const pruned = entry('wanda-50');

    await selectModels(page, [dense.name, pruned.name]);
    await page.click('[data-testid=compare-load]');
    await waitForColumnStates(page, ['ready', 'ready'], LOAD_TIMEOUT_MS);

    assert.equal(await column(page, 0).locator('[data-testid=column-title]').textContent(), dense.label);
    assert.equal(await column(page, 1).locator('[data-testid=column-title]').textContent(), pruned.label);
    assert.ok(await column(page, 0).locator('[data-testid=column-badge]').isVisible(), 'the first column is not marked as the reference');
    assert.equal(await figure(page, 0, 'size'), dense.bytes);
    assert.equal(await figure(page, 1, 'size'), pruned.bytes);
    assert.equal(await figure(page, 1, 'params'), pruned.parameters);
    // The page counts decoder weights from the engine's layer sizes, the manifest from the CLI's report.
    assert.ok(Math.abs((await figure(page, 0, 'sparsity')) - dense.sparsity * 100) < 0.05, 'dense sparsity differs from the manifest');
    assert.ok(Math.abs((await figure(page, 1, 'sparsity')) - pruned.sparsity * 100) < 0.05, 'pruned sparsity differs from the manifest');

    await sendToBoth(page, PROMPT);

    for (const index of [0, 1]) {
      const reply = await column(page, index).locator('[data-testid=column-reply]').textContent();
      assert.ok(reply.trim().length > 0, `column ${index}: empty reply`);
      assert.equal(await column(page, index).locator('[data-testid=column-error]').isVisible(), false);
      for (const name of ['ttft', 'prefill', 'decode']) {
        const text = await column(page, index).locator(`[data-testid=column-${name}]`).textContent();
        assert.match(text, /\d/, `column ${index}: ${name} is "${text}"`);
      }
      assert.ok((await figure(page, index, 'decode')) > 0, `column ${index}: no decode speed`);
      assert.ok((await figure(page, index, 'memory')) > pruned.bytes, `column ${index}: wasm memory below the model size`);
    }
    const denseAgreement = await figure(page, 0, 'agreement');
    const prunedAgreement = await figure(page, 1, 'agreement');
    assert.equal(denseAgreement, 100);
    assert.ok(prunedAgreement >= 0, `pruned agreement ${prunedAgreement}`);
    assert.ok(prunedAgreement <= 100, `pruned agreement ${prunedAgreement}`);
    assert.match(await column(page, 0).locator('[data-testid=column-agreement]').textContent(), /^100\.0 % \((\d+)\/\1\)$/);
    assert.equal(await page.getAttribute('[data-testid=chart-decode]', 'data-count'), '2');

    await column(page, 1).locator('[data-testid=column-evaluate]').click();
    await page.waitForFunction(
      () => document.querySelectorAll('[data-testid=compare-column]')[1].querySelector('[data-testid=column-perplexity]').dataset.value !== undefined,
      null,
      { timeout: REPLY_TIMEOUT_MS, polling: 100 },
    );
    const perplexity = await figure(page, 1, 'perplexity');
    const relative = Math.abs(perplexity - pruned.eval.perplexity) / pruned.eval.perplexity;
    assert.ok(relative < PERPLEXITY_TOLERANCE, `browser perplexity ${perplexity}, CLI ${pruned.eval.perplexity}`);
    assert.match(
      await column(page, 1).locator('[data-testid=column-eval-text]').textContent(),
      new RegExp(`^${manifest.eval.max_windows} windows`),
    );
    assert.equal(await page.getAttribute('[data-testid=chart-perplexity]', 'data-count'), '1');

    await page.click('[data-testid=lang-zh]');
    assert.equal(await page.textContent('[data-testid=tab-compare]'), '对比');
    assert.equal(await page.textContent('[data-testid=compare-send]'), '发送给全部');
    assert.equal(await column(page, 0).locator('[data-testid=column-badge]').textContent(), '参考模型');
    assert.equal(await column(page, 1).locator('[data-testid=column-evaluate]').textContent(), '评估困惑度');
    assert.match(await column(page, 1).locator('.column-facts').textContent(), /Top-1 一致率/);
    assert.match(await page.textContent('[data-testid=chart-perplexity]'), /困惑度/);
    await page.click('[data-testid=lang-en]');
    assert.equal(await page.textContent('[data-testid=compare-send]'), 'Send to all');
    await session.close();
  });

  test('a crashed worker reloads its model and the other model keeps working', async () => {
    const session = await openCompare();
    const { page } = session;
    const dense = entry(manifest.reference);
    const tiny = manifest.small_models[0];
    await selectModels(page, [dense.name]);
    await page.click('[data-testid=compare-load]');
    await waitForColumnStates(page, ['ready'], LOAD_TIMEOUT_MS);
    await page.setInputFiles('[data-testid=compare-file]', path.join(REPO_ROOT, tiny.file));
    await waitForColumnStates(page, ['ready', 'ready'], LOAD_TIMEOUT_MS);

    // The tiny model's worker is the last one started. An `error` event on the Worker object is
    // the event the page gets when a worker dies of an uncaught error or runs out of memory.
    await page.evaluate(() => {
      window.__workers.at(-1).dispatchEvent(new ErrorEvent('error', { message: 'simulated crash', cancelable: true }));
    });
    await waitForColumnStates(page, ['ready', 'broken'], 10_000);
    assert.equal(await column(page, 1).locator('[data-testid=column-error]').getAttribute('data-i18n'), 'compare.error.crashed');
    assert.match(await column(page, 1).locator('[data-testid=column-error]').textContent(), /simulated crash/);
    assert.ok(await column(page, 1).locator('[data-testid=column-reload]').isVisible(), 'no reload button on the crashed column');
    assert.equal(await column(page, 0).locator('[data-testid=column-reload]').isVisible(), false);

    // The other model still replies.
    await page.fill('[data-testid=compare-prompt]', PROMPT);
    await page.click('[data-testid=compare-send]');
    await page.waitForFunction(
      () => document.querySelector('[data-testid=compare-column] [data-testid=column-decode]').dataset.value !== undefined,
      null,
      { timeout: REPLY_TIMEOUT_MS, polling: 100 },
    );
    await waitForColumnStates(page, ['ready', 'broken'], REPLY_TIMEOUT_MS);
    assert.ok((await column(page, 0).locator('[data-testid=column-reply]').textContent()).trim().length > 0);

    // Reload brings the crashed model back in a new worker, from the file kept in memory.
    const workers = await page.evaluate(() => window.__workers.length);
    await column(page, 1).locator('[data-testid=column-reload]').click();
    await waitForColumnStates(page, ['ready', 'ready'], LOAD_TIMEOUT_MS);
    assert.equal(await page.evaluate(() => window.__workers.length), workers + 1);
    assert.equal(await column(page, 1).locator('[data-testid=column-error]').isVisible(), false);
    assert.equal(await figure(page, 1, 'params'), tiny.parameters);
    await session.close();
  });

  test('models replying at once share the threads', async () => {
    const session = await openCompare('?view=compare&threads=2');
    const { page } = session;
    await selectModels(page, [manifest.reference, 'wanda-50']);
    await page.click('[data-testid=compare-load]');
    await waitForColumnStates(page, ['ready', 'ready'], LOAD_TIMEOUT_MS);
    for (const index of [0, 1]) {
      assert.equal(await figure(page, index, 'threads'), 2, `column ${index} did not load with 2 threads`);
    }

    // Returns each column's thread figure after one round.
    const round = async (sequential) => {
      await page.locator('[data-testid=compare-sequential]').setChecked(sequential);
      await sendToBoth(page, PROMPT);
      const figures = [];
      for (const index of [0, 1]) {
        figures.push({
          value: await figure(page, index, 'threads'),
          text: await column(page, index).locator('[data-testid=column-threads]').textContent(),
        });
      }
      return figures;
    };

    // At once, two models on two threads get one thread each.
    for (const [index, shown] of (await round(false)).entries()) {
      assert.equal(shown.value, 1, `column ${index}, at once`);
      assert.match(shown.text, /^1 of 2 /, `column ${index}, at once`);
    }
    // One at a time, each model has both threads again.
    for (const [index, shown] of (await round(true)).entries()) {
      assert.equal(shown.value, 2, `column ${index}, one at a time`);
      assert.equal(shown.text, '2', `column ${index}, one at a time`);
    }
    await session.close();
  });

  test('non-GGUF file fails in its own column', async () => {
    const session = await openCompare();
    const { page } = session;
    await selectModels(page, [manifest.reference]);
    await page.click('[data-testid=compare-load]');
    await page.setInputFiles('[data-testid=compare-file]', {
      name: 'notes.gguf',
      mimeType: 'application/octet-stream',
      buffer: Buffer.from('These are notes, not a model.\n'),
    });
    await waitForColumnStates(page, ['ready', 'failed'], LOAD_TIMEOUT_MS);

    const error = await column(page, 1).locator('[data-testid=column-error]').textContent();
    assert.match(error, /“notes\.gguf” is not a GGUF model file/);
    assert.equal(await column(page, 0).locator('[data-testid=column-error]').isVisible(), false);

    await page.fill('[data-testid=compare-prompt]', 'What is 2+2?');
    await page.click('[data-testid=compare-send]');
    await page.waitForFunction(
      () => document.querySelector('[data-testid=column-agreement]').dataset.value !== undefined,
      null,
      { timeout: REPLY_TIMEOUT_MS, polling: 100 },
    );
    const reply = await column(page, 0).locator('[data-testid=column-reply]').textContent();
    assert.match(reply, /4/);
    assert.equal(await figure(page, 0, 'agreement'), 100);
    assert.equal(await column(page, 1).locator('[data-testid=column-reply]').textContent(), '');
    await session.close();
  });

  test('empty prompt and no models are rejected', async () => {
    const session = await openCompare();
    const { page } = session;
    await page.evaluate(() => {
      document.querySelector('[data-testid=compare-send]').disabled = false;
    });
    await page.fill('[data-testid=compare-prompt]', PROMPT);
    await page.click('[data-testid=compare-send]');
    assert.equal(await page.getAttribute('[data-testid=compare-message]', 'data-key'), 'compare.error.no_models');

    await selectModels(page, []);
    await page.click('[data-testid=compare-load]');
    assert.equal(await page.getAttribute('[data-testid=compare-message]', 'data-key'), 'compare.error.none_selected');
    await session.close();
  });
});
