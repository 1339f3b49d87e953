// End-to-end tests of the prune and fine-tune view: jobs run in their own
// worker with the real wasm engine in headless Chromium, on the tiny model and
// on SmolLM2-135M from models/manifest.json (scripts/prepare-variants.py).
// Saved files are checked with the native CLI and with llama.cpp in wasm
// (wllama), and load again in the compare view.
//
// Run through `make test` (scripts/test.sh), which prepares the models,
// starts scripts/serve.py and sets PRUNECHAT_URL. By hand:
//   PORT=8080 python3 scripts/serve.py &
//   PRUNECHAT_URL=http://127.0.0.1:8080 node --test tests/e2e/lab.test.mjs

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import {
  BASE_URL,
  closeBrowser,
  launchBrowser,
  messageCount,
  newContext,
  openChat,
  REPO_ROOT,
  runWllama,
  waitForWorkerMessage,
  WLLAMA_MODULE,
  WLLAMA_WASM,
  workerMessages,
} from './helpers.mjs';

const OUT_DIR = 'target/e2e-lab';
const BINARY = path.join(REPO_ROOT, 'target', 'release', 'prunechat');
const MANIFEST_PATH = path.join(REPO_ROOT, 'models', 'manifest.json');
// Pruning SmolLM2 in wasm on one thread of a shared 2-core machine takes a few
// minutes; the tiny model takes seconds.
const JOB_TIMEOUT_MS = 600_000;
const TEST_TIMEOUT_MS = 900_000;

// Eight short conversations the tiny model has not seen: full fine-tuning on
// them drives the training loss down within a few dozen steps.
const PAIRS = [
  ['What is pruning?', 'Removing weights that a model does not need.'],
  ['What is Wanda?', 'A pruning score: weight magnitude times input norm.'],
  ['What does 2:4 mean?', 'Two of every four weights are kept.'],
  ['What is LoRA?', 'Low-rank adapters trained instead of the weights.'],
  ['What is a GGUF file?', 'The model file format of llama.cpp.'],
  ['What is perplexity?', 'The exponential of the mean next-token loss.'],
  ['What is SparseGPT?', 'Pruning with second-order weight updates.'],
  ['问：什么是剪枝？', '答：去掉模型不需要的权重。'],
];

function pastedPairs() {
  return PAIRS.map(([q, a]) => (q.startsWith('问') ? `${q}\n${a}` : `Q: ${q}\nA: ${a}`)).join('\n\n');
}

let manifest;

before(async () => {
  assert.ok(existsSync(MANIFEST_PATH), `${MANIFEST_PATH} is missing: run python3 scripts/prepare-variants.py (make test does)`);
  manifest = JSON.parse(readFileSync(MANIFEST_PATH, 'utf8'));
  assert.ok(Array.isArray(manifest.small_models), 'the manifest has no small_models list');
  assert.ok(manifest.small_models.length > 0, 'the manifest lists no small model');
  assert.ok(existsSync(BINARY), `${BINARY} is missing: run \`cargo build --release\` (make test does)`);
  mkdirSync(path.join(REPO_ROOT, OUT_DIR), { recursive: true });
  await launchBrowser();
});

after(async () => {
  await closeBrowser();
  rmSync(path.join(REPO_ROOT, OUT_DIR), { recursive: true, force: true });
});

/** Opens the page on the prune and fine-tune view and waits for the model list. */
async function openLab(options = {}) {
  const session = await openChat({ path: '/?view=lab', ...options });
  await session.page.waitForFunction(() => document.querySelectorAll('[data-testid=lab-source] option').length > 0, null, {
    timeout: 30_000,
  });
  return session;
}

/** Selects the source whose label starts with `label`. */
async function selectSource(page, label) {
  const value = await page.evaluate((prefix) => {
    const option = [...document.querySelectorAll('[data-testid=lab-source] option')].find((o) => o.textContent.startsWith(prefix));
    return option?.value ?? null;
  }, label);
  assert.ok(value !== null, `no source option starts with "${label}"`);
  await page.selectOption('[data-testid=lab-source]', value);
}

/**
 * Waits for a job's final message of `type` after message index `from`. When
 * the job reports an error instead, fails at once with the worker's message.
 */
async function waitForJob(page, type, from) {
  const handle = await page.waitForFunction(
    ([expected, start]) => window.__workerMessages.slice(start).find((m) => m.type === expected || m.type === 'error'),
    [type, from],
    { timeout: JOB_TIMEOUT_MS, polling: 100 },
  );
  const message = await handle.jsonValue();
  assert.notEqual(message.type, 'error', `the job failed: ${message.message}`);
  return message;
}

/** Clicks Save on result `index` and stores the download under OUT_DIR; returns its path. */
async function saveResult(page, index) {
  const [download] = await Promise.all([
    page.waitForEvent('download'),
    page.locator('[data-testid=result-save]').nth(index).click(),
  ]);
  const saved = path.join(REPO_ROOT, OUT_DIR, download.suggestedFilename());
  await download.saveAs(saved);
  return saved;
}

/** `prunechat eval FILE --json` on one held-out window: the CLI's view of the file. */
function cliReport(file) {
  const stdout = execFileSync(
    BINARY,
    ['eval', file, '--data', 'data/chatterbot-corpus/english', '--window', '64', '--max-windows', '1', '--json'],
    { cwd: REPO_ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 300_000 },
  );
  return JSON.parse(stdout.trim().split('\n').pop());
}

function decoderSparsity(report) {
  const layers = report.sparsity.layers;
  const zeros = layers.reduce((sum, layer) => sum + layer.n_zeros, 0);
  const weights = layers.reduce((sum, layer) => sum + layer.n_weights, 0);
  return zeros / weights;
}

describe('prune and fine-tune view', { timeout: TEST_TIMEOUT_MS }, () => {
  test('Wanda on the tiny model: progress per layer, save, reload, chat', async () => {
    const session = await openLab();
    const { page } = session;
    const tiny = manifest.small_models[0];
    await selectSource(page, tiny.label);
    await page.selectOption('[data-testid=prune-method]', 'wanda');
    await page.fill('[data-testid=prune-amount]', '50');

    const from = await messageCount(page);
    await page.click('[data-testid=prune-start]');
    const pruned = await waitForJob(page, 'pruned', from);
    const job = (await workerMessages(page)).slice(from);
    assert.deepEqual(job.filter((m) => m.type === 'error'), []);

    // One progress message per finished layer, from 0 to the layer count.
    const layers = job.filter((m) => m.type === 'job-progress' && m.phase === 'layers');
    assert.equal(layers.length, tiny.layers + 1);
    assert.deepEqual(layers.map((m) => m.done), [...Array(tiny.layers + 1).keys()]);
    assert.ok(layers.every((m) => m.total === tiny.layers));

    // Wanda compares weights per row: exactly half of every decoder matrix is zero.
    assert.equal(pruned.report.kind, 'connections');
    assert.equal(pruned.report.method, 'wanda');
    assert.equal(pruned.report.sparsity, 0.5);
    await page.waitForSelector('[data-testid=lab-result]');

    const saved = await saveResult(page, 0);
    assert.equal(statSync(saved).size, pruned.report.file_bytes);
    const cli = cliReport(saved);
    assert.equal(decoderSparsity(cli), 0.5, 'the CLI reads another sparsity from the saved file');
    assert.equal(cli.sparsity.n_params, tiny.parameters);

    // The native CLI, given the same model, data and settings, prunes to the same model: the
    // bundled files are the English corpus directory, and both take its calibration split.
    const native = path.join(REPO_ROOT, OUT_DIR, 'native-wanda-50.gguf');
    execFileSync(
      BINARY,
      ['prune', tiny.file, '--method', 'wanda', '--sparsity', '0.5', '--n-samples', '8', '--seq-len', '128', '--seed', '0',
        '--calib', 'data/chatterbot-corpus/english', '--out', native],
      { cwd: REPO_ROOT, stdio: ['ignore', 'ignore', 'pipe'], timeout: 300_000 },
    );
    assert.equal(pruned.report.calibration.tokens > 0, true);
    const nativePerplexity = cliReport(native).perplexity.perplexity;
    const pagePerplexity = cli.perplexity.perplexity;
    assert.ok(
      Math.abs(pagePerplexity / nativePerplexity - 1) < 0.005,
      `perplexity ${pagePerplexity} of the page's file against ${nativePerplexity} of the CLI's`,
    );

    // The result joins the compare view and chats there; the saved file loads again beside it.
    await page.click('[data-testid=result-compare]');
    await page.waitForSelector('[data-testid=compare-panel]:not([hidden])');
    await page.setInputFiles('[data-testid=compare-file]', saved);
    await page.waitForFunction(
      () => {
        const columns = [...document.querySelectorAll('[data-testid=compare-column]')];
        return columns.length === 2 && columns.every((c) => c.dataset.state === 'ready');
      },
      null,
      { timeout: 120_000 },
    );
    const sparsities = await page.$$eval('[data-testid=column-sparsity]', (cells) => cells.map((c) => c.dataset.value));
    assert.equal(sparsities.length, 2);
    assert.equal(sparsities[0], sparsities[1], 'the reloaded file shows another sparsity');

    await page.fill('[data-testid=temperature]', '0');
    await page.fill('[data-testid=max-new-tokens]', '12');
    await page.fill('[data-testid=compare-prompt]', 'Hello');
    const sent = await messageCount(page);
    await page.click('[data-testid=compare-send]');
    await waitForWorkerMessage(page, 'done', sent, 120_000);
    const replies = (await workerMessages(page)).slice(sent).filter((m) => m.type === 'done');
    assert.ok(replies[0].stats.n_generated > 0, 'the pruned model generated nothing');
    await session.close();
  });

  test('magnitude 2:4 on SmolLM2: llama.cpp loads the saved file', async () => {
    const session = await openLab();
    const { page } = session;
    await selectSource(page, manifest.models[0].label);
    await page.selectOption('[data-testid=prune-method]', 'magnitude');
    await page.selectOption('[data-testid=prune-pattern]', '2:4');
    const from = await messageCount(page);
    await page.click('[data-testid=prune-start]');
    const pruned = await waitForJob(page, 'pruned', from);
    assert.equal(pruned.report.pattern, '2:4');
    // Two of every four weights become zero; a few kept weights were zero in the file already.
    assert.ok(pruned.report.sparsity >= 0.5, `sparsity ${pruned.report.sparsity}`);
    assert.ok(pruned.report.sparsity < 0.5005, `sparsity ${pruned.report.sparsity}`);
    // Magnitude reads no calibration data.
    assert.equal(pruned.report.calibration, null);
    await page.waitForSelector('[data-testid=lab-result]');
    const saved = await saveResult(page, 0);
    await session.close();

    // wllama starts its workers from blob: URLs, which the page CSP rejects.
    const context = await newContext({ bypassCSP: true });
    try {
      const wllamaPage = await context.newPage();
      await wllamaPage.goto(`${BASE_URL}/benches/bench.html`);
      const result = await wllamaPage.evaluate(runWllama, {
        moduleUrl: WLLAMA_MODULE,
        wasmUrl: WLLAMA_WASM,
        modelUrl: `${BASE_URL}/${OUT_DIR}/${path.basename(saved)}`,
      });
      assert.equal(result.architecture, 'llama');
      assert.equal(result.nLayer, 30);
      assert.ok(result.text.length > 0, 'wllama generated no text');
    } finally {
      await context.close();
    }
  });

  test('full fine-tuning of the tiny model on pasted pairs: the loss falls', async () => {
    const session = await openLab();
    const { page } = session;
    await selectSource(page, manifest.small_models[0].label);
    // A small model: the view picks full fine-tuning.
    assert.equal(await page.inputValue('[data-testid=finetune-mode]'), 'full');
    await page.fill('[data-testid=finetune-steps]', '30');
    await page.fill('[data-testid=finetune-batch]', '4');
    await page.fill('[data-testid=finetune-lr]', '0.002');
    await page.selectOption('[data-testid=finetune-data]', 'pasted');
    await page.fill('[data-testid=finetune-text]', pastedPairs());

    const from = await messageCount(page);
    await page.click('[data-testid=finetune-start]');
    const finished = await waitForJob(page, 'finetuned', from);
    const job = (await workerMessages(page)).slice(from);
    const start = job.find((m) => m.type === 'train-start');
    assert.equal(start.info.train_data.n_samples + (start.info.eval_data?.n_samples ?? 0), PAIRS.length);
    const steps = job.filter((m) => m.type === 'train-step');
    assert.deepEqual(steps.map((m) => m.step), [...Array(30).keys()].map((i) => i + 1));
    const mean = (values) => values.reduce((a, b) => a + b, 0) / values.length;
    const first = mean(steps.slice(0, 5).map((m) => m.loss));
    const last = mean(steps.slice(-5).map((m) => m.loss));
    assert.ok(last < 0.5 * first, `training loss fell only from ${first.toFixed(3)} to ${last.toFixed(3)}`);
    assert.equal(finished.complete, true);
    assert.equal(finished.steps, 30);

    // The chart drew every step.
    const drawn = await page.getAttribute('[data-testid=finetune-chart] .loss-train', 'data-count');
    assert.equal(Number(drawn), 30);
    // The result joins the compare list, ticked.
    await page.waitForSelector('[data-testid=lab-result]');
    const saved = await saveResult(page, 0);
    assert.equal(cliReport(saved).sparsity.n_params, manifest.small_models[0].parameters);
    await page.click('[data-testid=tab-compare]');
    await page.waitForSelector(`[data-testid=compare-choice][data-name="${path.basename(saved)}"]:checked`, { timeout: 30_000 });
    await session.close();
  });

  test('Cancel stops a running job and the next job runs', async () => {
    const session = await openLab();
    const { page } = session;
    await selectSource(page, manifest.models[0].label);
    await page.selectOption('[data-testid=prune-method]', 'wanda');
    const from = await messageCount(page);
    await page.click('[data-testid=prune-start]');
    // Cancel in the middle of the layers.
    await page.waitForFunction(
      (start) => window.__workerMessages.slice(start).some((m) => m.type === 'job-progress' && m.phase === 'layers' && m.done >= 1),
      from,
      { timeout: JOB_TIMEOUT_MS, polling: 100 },
    );
    await page.click('[data-testid=prune-cancel]');
    assert.equal(await page.getAttribute('[data-testid=prune-status]', 'data-i18n'), 'job.status.cancelled');
    assert.equal(await page.isDisabled('[data-testid=prune-start]'), false);
    assert.equal(await page.isDisabled('[data-testid=prune-cancel]'), true);
    assert.equal(await page.locator('[data-testid=lab-result]').count(), 0);

    // The page stays usable: a job on the tiny model runs to its end.
    await selectSource(page, manifest.small_models[0].label);
    await page.selectOption('[data-testid=prune-method]', 'ffn');
    const next = await messageCount(page);
    await page.click('[data-testid=prune-start]');
    const pruned = await waitForJob(page, 'pruned', next);
    assert.equal(pruned.report.kind, 'structured');
    assert.ok(pruned.report.kept_fraction <= 0.75, `kept ${pruned.report.kept_fraction} of the parameters`);
    assert.equal(await page.locator('[data-testid=lab-result]').count(), 1);
    await session.close();
  });

  test('bad input gets a message naming the value, and 中文 labels', async () => {
    const session = await openLab({ expectedConsoleErrors: [/not a GGUF/] });
    const { page } = session;
    const message = () => page.getAttribute('[data-testid=lab-message]', 'data-key');

    await page.selectOption('[data-testid=prune-data]', 'pasted');
    await page.fill('[data-testid=prune-text]', '   ');
    await page.click('[data-testid=prune-start]');
    assert.equal(await message(), 'lab.error.empty_text');

    await page.fill('[data-testid=prune-amount]', '150');
    await page.click('[data-testid=prune-start]');
    assert.equal(await message(), 'error.invalid_setting');
    assert.match(await page.textContent('[data-testid=lab-message]'), /Weights set to zero \(%\).*1.*95/);

    // A file that is not GGUF: the job fails with the engine's message and nothing is added.
    await page.setInputFiles('[data-testid=lab-file]', {
      name: 'notes.gguf',
      mimeType: 'application/octet-stream',
      buffer: Buffer.from('this is not a model'),
    });
    await page.fill('[data-testid=prune-amount]', '50');
    await page.selectOption('[data-testid=prune-data]', 'bundled');
    await page.click('[data-testid=prune-start]');
    await page.waitForFunction(() => document.querySelector('[data-testid=lab-message]')?.dataset.key === 'error.not_gguf', null, {
      timeout: 60_000,
    });
    assert.match(await page.textContent('[data-testid=lab-message]'), /notes\.gguf/);
    assert.equal(await page.locator('[data-testid=lab-result]').count(), 0);
    assert.equal(await page.isDisabled('[data-testid=prune-start]'), false);

    await page.click('[data-testid=lang-zh]');
    assert.equal(await page.textContent('[data-testid=tab-lab]'), '剪枝与微调');
    assert.equal(await page.textContent('[data-testid=prune-start]'), '剪枝');
    assert.equal(await page.textContent('[data-testid=finetune-start]'), '微调');
    assert.match(await page.textContent('[data-testid=lab-message]'), /不是 GGUF/);
    await session.close();
  });
});
