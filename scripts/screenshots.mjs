#!/usr/bin/env node
// Screenshots of the page's three views for the README, taken in headless
// Chromium with the real engine:
//   docs/chat.png      a greedy reply of the dense model
//   docs/compare.png   the dense and the Wanda 50% model on one prompt, with
//                      agreement and perplexity
//   docs/lab.png       the tiny model pruned (Wanda 50%) and fine-tuned on
//                      the bundled dialogues, with the loss chart
//   docs/lab-zh.png    the same view in Chinese
// The Chinese screenshot needs a CJK font (Debian: fonts-noto-cjk).
//
// Usage: node scripts/screenshots.mjs
// With PRUNECHAT_URL set it uses that server, else it starts scripts/serve.py
// on a free port of 127.0.0.1 and stops it at the end. Needs pkg/ and the
// models of scripts/prepare-variants.py.

import { join } from 'node:path';
import { chromium } from 'playwright-core';

import { CHROMIUM_ARGS, CHROMIUM_PATH, ROOT, startServer } from '../benches/common.mjs';

const WAIT_MS = 600_000;
// Greedy, with the default repetition penalty so that the short replies do not loop.
const SAMPLING = { temperature: '0', 'repeat-penalty': '1.1', 'max-new-tokens': '48', seed: '1' };
const PROMPT = 'Give me two tips for learning a new language.';

async function fillSampling(page) {
  for (const [testId, value] of Object.entries(SAMPLING)) {
    await page.fill(`[data-testid=${testId}]`, value);
  }
}

async function chat(context, base) {
  const page = await context.newPage();
  await page.goto(`${base}/`);
  await page.waitForSelector('[data-testid=model-status][data-state=ready]', { timeout: WAIT_MS });
  await fillSampling(page);
  await page.fill('[data-testid=prompt]', PROMPT);
  await page.press('[data-testid=prompt]', 'Enter');
  await page.waitForFunction(() => !document.querySelector('[data-testid=send]').disabled, null, { timeout: WAIT_MS });
  await page.screenshot({ path: join(ROOT, 'docs', 'chat.png') });
  await page.close();
}

async function compare(context, base) {
  const page = await context.newPage();
  await page.setViewportSize({ width: 1400, height: 1500 });
  await page.goto(`${base}/?view=compare`);
  await page.waitForSelector('[data-testid=compare-choice]', { timeout: WAIT_MS });
  for (const box of await page.locator('[data-testid=compare-choice]').all()) {
    const name = await box.getAttribute('data-name');
    await box.setChecked(['smollm2-135m-instruct-q8_0', 'wanda-50'].includes(name));
  }
  await fillSampling(page);
  await page.click('[data-testid=compare-load]');
  await page.waitForFunction(
    () => [...document.querySelectorAll('[data-testid=compare-column]')].every((c) => c.dataset.state === 'ready'),
    null,
    { timeout: WAIT_MS },
  );
  await page.fill('[data-testid=compare-prompt]', PROMPT);
  await page.click('[data-testid=compare-send]');
  await page.waitForFunction(
    () => [...document.querySelectorAll('[data-testid=column-agreement]')].every((c) => c.dataset.value !== undefined),
    null,
    { timeout: WAIT_MS },
  );
  for (const button of await page.locator('[data-testid=column-evaluate]').all()) {
    await button.click();
    await page.waitForFunction(
      () => [...document.querySelectorAll('[data-testid=compare-column]')].every((c) => c.dataset.state === 'ready'),
      null,
      { timeout: WAIT_MS },
    );
  }
  await page.evaluate(() => document.getElementById('compare-panel').scrollTo(0, 0));
  await page.screenshot({ path: join(ROOT, 'docs', 'compare.png') });
  await page.close();
}

async function lab(context, base) {
  const page = await context.newPage();
  // Tall enough for both job cards and the results below them.
  await page.setViewportSize({ width: 1400, height: 1350 });
  await page.goto(`${base}/?view=lab`);
  await page.waitForFunction(() => [...document.querySelectorAll('[data-testid=lab-source] option')].some((o) => o.textContent.startsWith('Tiny')));
  const tiny = await page.$eval('[data-testid=lab-source]', (select) =>
    [...select.options].find((o) => o.textContent.startsWith('Tiny')).value);
  await page.selectOption('[data-testid=lab-source]', tiny);
  await page.click('[data-testid=prune-start]');
  await page.waitForSelector('[data-testid=lab-result]', { timeout: WAIT_MS });
  await page.selectOption('[data-testid=lab-source]', tiny);
  await page.fill('[data-testid=finetune-steps]', '40');
  await page.click('[data-testid=finetune-start]');
  await page.waitForFunction(() => document.querySelectorAll('[data-testid=lab-result]').length === 2, null, { timeout: WAIT_MS });
  await page.screenshot({ path: join(ROOT, 'docs', 'lab.png') });
  await page.click('[data-testid=lang-zh]');
  await page.screenshot({ path: join(ROOT, 'docs', 'lab-zh.png') });
  await page.click('[data-testid=lang-en]');
  await page.close();
}

async function main() {
  const server = process.env.PRUNECHAT_URL ? null : await startServer();
  const base = (process.env.PRUNECHAT_URL ?? server.url).replace(/\/$/, '');
  const browser = await chromium.launch({ executablePath: CHROMIUM_PATH, args: CHROMIUM_ARGS });
  try {
    const context = await browser.newContext({ viewport: { width: 1400, height: 1000 } });
    await chat(context, base);
    await compare(context, base);
    await lab(context, base);
    console.log('wrote docs/chat.png, docs/compare.png, docs/lab.png and docs/lab-zh.png');
  } finally {
    await browser.close();
    server?.stop();
  }
}

main().catch((error) => {
  console.error(`screenshots: ${error.message}`);
  process.exit(1);
});
