// Structurally pruned SmolLM2 files in headless Chromium: llama.cpp compiled
// to wasm (npm @wllama/wllama) loads them and generates, and the prunechat
// page chats with them.
//
// The files come from `prunechat prune --structure ...` in the `before` hook
// and are written under target/e2e-structured/, which scripts/serve.py serves.
// Run through `make test` (scripts/test.sh), which sets PRUNECHAT_URL.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { CHROMIUM_ARGS, CHROMIUM_PATH } from '../../benches/common.mjs';
import { runWllama, WLLAMA_MODULE, WLLAMA_WASM } from './helpers.mjs';

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const BASE_URL = (process.env.PRUNECHAT_URL ?? '').replace(/\/$/, '');
const MODEL = path.join(REPO_ROOT, 'models', 'smollm2-135m-instruct-q8_0.gguf');
const OUT_DIR = 'target/e2e-structured';
const TEST_TIMEOUT_MS = 600_000;

// SmolLM2-135M: 134,515,008 parameters; one unit of FFN removal is 32 neurons
// (the Q8_0 block), each with a row of gate and up and a column of down.
const SMOLLM2_PARAMS = 134_515_008;
const FFN_UNIT_PARAMS = 32 * 3 * 576;
const N_LAYERS = 30;

/**
 * The models: the prune options, and what the file must contain. Removing
 * exactly four units from each of the 30 layers leaves every layer 1408
 * neurons wide, so the file keeps scalar sizes and the `llama` architecture;
 * a global ratio leaves the layers uneven, which is written as `deci`.
 */
const MODELS = [
  {
    file: 'ffn-uniform.gguf',
    options: ['--structure', 'ffn', '--score', 'magnitude', '--ratio', 'uniform',
      '--target-params', String((SMOLLM2_PARAMS - 4 * N_LAYERS * FFN_UNIT_PARAMS + 0.5) / SMOLLM2_PARAMS)],
    architecture: 'llama',
    layers: 30,
    ffn: new Array(30).fill(1408),
  },
  {
    file: 'layers.gguf',
    options: ['--structure', 'layers', '--score', 'block-influence', '--target-params', '0.95'],
    architecture: 'llama',
    layers: 28,
    ffn: new Array(28).fill(1536),
  },
  {
    file: 'ffn-global.gguf',
    options: ['--structure', 'ffn', '--score', 'wanda', '--ratio', 'global', '--target-params', '0.9'],
    architecture: 'deci',
    layers: 30,
    ffn: null,
  },
];

let browser;

before(async () => {
  if (BASE_URL === '') {
    throw new Error('PRUNECHAT_URL is not set. Run the e2e tests with `make test`.');
  }
  const binary = path.join(REPO_ROOT, 'target', 'release', 'prunechat');
  assert.ok(existsSync(binary), `${binary} is missing: run \`cargo build --release\` (make test does)`);
  mkdirSync(path.join(REPO_ROOT, OUT_DIR), { recursive: true });
  for (const model of MODELS) {
    const out = path.join(REPO_ROOT, OUT_DIR, model.file);
    const report = `${out}.json`;
    execFileSync(
      binary,
      ['prune', MODEL, ...model.options, '--n-samples', '2', '--seq-len', '64', '--out', out, '--report', report],
      { stdio: ['ignore', 'ignore', 'inherit'], timeout: 300_000 },
    );
    model.report = JSON.parse(readFileSync(report, 'utf8'));
  }
  browser = await chromium.launch({ executablePath: CHROMIUM_PATH, args: CHROMIUM_ARGS });
});

after(async () => {
  await browser?.close();
  rmSync(path.join(REPO_ROOT, OUT_DIR), { recursive: true, force: true });
});

describe('structured exports', { timeout: TEST_TIMEOUT_MS }, () => {
  test('report sizes match the files', () => {
    for (const model of MODELS) {
      const layers = model.report.report.layers.filter((layer) => layer.after !== null);
      assert.equal(layers.length, model.layers, model.file);
      if (model.ffn !== null) {
        assert.deepEqual(layers.map((layer) => layer.after.ffn_dim), model.ffn, model.file);
      } else {
        const widths = new Set(layers.map((layer) => layer.after.ffn_dim));
        assert.ok(widths.size > 1, `${model.file}: a global ratio left every layer ${[...widths]} wide`);
      }
    }
  });

  for (const model of MODELS) {
    test(`wllama loads ${model.file}`, async () => {
      // wllama starts its workers from blob: URLs, which the page CSP
      // (worker-src 'self') rejects, so this context bypasses the CSP.
      const context = await browser.newContext({ bypassCSP: true });
      try {
        const page = await context.newPage();
        const problems = [];
        page.on('pageerror', (error) => problems.push(error.message));
        await page.goto(`${BASE_URL}/benches/bench.html`);
        const result = await page.evaluate(runWllama, {
          moduleUrl: WLLAMA_MODULE,
          wasmUrl: WLLAMA_WASM,
          modelUrl: `${BASE_URL}/${OUT_DIR}/${model.file}`,
        });
        assert.equal(result.architecture, model.architecture);
        assert.equal(result.nLayer, model.layers);
        assert.equal(result.nEmbd, 576);
        assert.ok(result.text.length > 0, 'wllama generated no text');
        assert.deepEqual(problems, []);
      } finally {
        await context.close();
      }
    });
  }

  test('the page chats with the layer-removed file', async () => {
    const context = await browser.newContext();
    try {
      const page = await context.newPage();
      const problems = [];
      page.on('pageerror', (error) => problems.push(error.message));
      context.on('console', (message) => {
        if (message.type() === 'error') {
          problems.push(message.text());
        }
      });
      await page.goto(`${BASE_URL}/`);
      await page.waitForSelector('[data-testid=model-status][data-state=ready]', { timeout: 120_000 });
      await page.setInputFiles('[data-testid=file-input]', path.join(REPO_ROOT, OUT_DIR, 'layers.gguf'));
      await page.waitForFunction(
        () => document.querySelector('[data-testid=fact-layers]')?.textContent === '28',
        null,
        { timeout: 120_000 },
      );
      await page.waitForSelector('[data-testid=model-status][data-state=ready]', { timeout: 120_000 });
      const params = Number(MODELS[1].report.report.params);
      assert.equal(await page.textContent('[data-testid=fact-params]'), `${(params / 1e6).toFixed(1)} M`);

      await page.fill('[data-testid=temperature]', '0');
      await page.fill('[data-testid=max-new-tokens]', '16');
      await page.fill('[data-testid=prompt]', 'What is the capital of France?');
      await page.press('[data-testid=prompt]', 'Enter');
      await page.waitForSelector('[data-testid=model-status][data-state=ready]', { timeout: 120_000 });
      await page.waitForFunction(
        () => document.querySelector('[data-testid=send]') && !document.querySelector('[data-testid=send]').disabled,
        null,
        { timeout: 120_000 },
      );
      const reply = await page.locator('.message-assistant').last().locator('[data-testid=message-body]').textContent();
      assert.ok(reply.trim().length > 0, 'the reply is empty');
      assert.deepEqual(problems, []);
    } finally {
      await context.close();
    }
  });
});
