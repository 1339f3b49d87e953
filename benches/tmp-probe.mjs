import { chromium } from 'playwright-core';
import { CHROMIUM_ARGS, CHROMIUM_PATH, installDriver, loadModel } from './common.mjs';
const browser = await chromium.launch({ executablePath: CHROMIUM_PATH, args: CHROMIUM_ARGS });
const [port, ...prompts] = process.argv.slice(2);
const page = await browser.newPage();
await page.goto(`http://127.0.0.1:${port}/benches/bench.html`);
await page.evaluate(installDriver);
await loadModel(page, `http://127.0.0.1:${port}/models/smollm2-135m-instruct-q8_0.gguf`, 2048, 1);
const text = '你好，世界！👍🏽 👩🏾‍💻 👨‍👩‍👧‍👦 🏳️‍🌈 cafe\u0301 n\u0303o';
for (const p of prompts) {
  const msgs = await page.evaluate(async (t) => {
    await window.benchRequest({ type: 'reset' }, 'reset-done');
    return await window.benchRequest({ type: 'send', text: t, system: '', sampling: { temperature: 0, top_k: 0, top_p: 1, repeat_penalty: 1, seed: 1, max_new_tokens: 64 } }, 'done');
  }, p.replace('TEXT', text));
  console.log(port, JSON.stringify(msgs.filter(m => m.type === 'token').map(m => m.text).join('')));
}
await browser.close();
