// Hostile input against the chat page, with the real wasm engine and the real
// SmolLM2-135M-Instruct model in headless Chromium. The cases: model files
// whose metadata carries markup or broken chat templates, requests to other
// origins, inline scripts, mixed-script streaming, Stop and Send in quick
// succession, a long session and a 100 000-character paste.
//
// Run it like the other e2e tests (see chat.test.mjs):
//   PORT=8080 python3 scripts/serve.py &
//   PRUNECHAT_URL=http://127.0.0.1:8080 node --test tests/e2e/hostile.test.mjs
//
// Every test fails on a console error or an uncaught exception in the page or
// its worker, except the CSP violation that one test causes on purpose.

import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import { getString, parseGguf, withStrings, writeGguf } from './gguf.mjs';
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

const MODEL_PATH = path.join(REPO_ROOT, 'models', MODEL_FILE);

// Markup that sets window.__injected if the page ever parses it as HTML.
const MARKUP = '<img src=x onerror="window.__injected=1"><script>window.__injected=2</script>';

// ChatML, as src/chat_template.rs defines it, in Jinja.
const CHATML =
  "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}{% endfor %}" +
  "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

before(launchBrowser);
after(closeBrowser);

// ---------------------------------------------------------------------------
// Helpers

/** Waits for the first worker message after index `from` whose type is one of `types`. */
async function waitForOneOf(page, types, from, timeout) {
  const handle = await page.waitForFunction(
    ([wanted, start]) => window.__workerMessages.slice(start).find((message) => wanted.includes(message.type)),
    [types, from],
    { timeout, polling: 50 },
  );
  return handle.jsonValue();
}

/** Picks `filePath` in the page's file input; returns the `loaded` or `error` message. */
async function loadFile(page, filePath) {
  const from = await messageCount(page);
  await page.setInputFiles('[data-testid=file-input]', filePath);
  return waitForOneOf(page, ['loaded', 'error'], from, LOAD_TIMEOUT_MS);
}

/**
 * Returns what injected markup would leave behind: the value of
 * window.__injected, images with src="x", elements with an onerror
 * attribute, inline script elements (the page's own scripts all have a src),
 * and img, script or b elements in the message list.
 */
async function injectionTraces(page) {
  // An <img src=x> fails to load asynchronously: give its onerror time to run.
  await page.waitForTimeout(500);
  return page.evaluate(() => ({
    injected: window.__injected,
    images: document.querySelectorAll('img[src="x"]').length,
    onerror: document.querySelectorAll('[onerror]').length,
    inlineScripts: document.querySelectorAll('script:not([src])').length,
    inMessages: document.querySelectorAll('[data-testid=messages] :is(img, script, b)').length,
  }));
}

const NO_TRACES = { injected: undefined, images: 0, onerror: 0, inlineScripts: 0, inMessages: 0 };

/** Splits a Content-Security-Policy into a Map from directive name to its source list. */
function parsePolicy(policy) {
  const directives = new Map();
  for (const part of policy.split(';')) {
    const [name, ...sources] = part.trim().split(/\s+/);
    if (name) {
      directives.set(name.toLowerCase(), sources);
    }
  }
  return directives;
}

/** Splits the recorded worker messages into turns, each from `turn-start` to `done`. */
function splitTurns(messages) {
  const turns = [];
  for (const message of messages) {
    if (message.type === 'turn-start') {
      turns.push({ start: message, tokens: [], done: null });
    } else if (message.type === 'token') {
      turns.at(-1).tokens.push(message.text);
    } else if (message.type === 'done') {
      turns.at(-1).done = message;
    }
  }
  return turns;
}

/**
 * Installs window.__sendWhenReady(text, {stopAtOnce}): it puts `text` in the
 * composer and clicks Send in the same task in which Send becomes enabled (a
 * MutationObserver on its `disabled` attribute), so no wait comes between the
 * end of one reply and the next Send. With `stopAtOnce` it clicks Stop right
 * after Send, before any token can arrive.
 */
function installSendDriver(page) {
  return page.evaluate(() => {
    const send = document.querySelector('[data-testid=send]');
    const stop = document.querySelector('[data-testid=stop]');
    const prompt = document.querySelector('[data-testid=prompt]');
    // `atFirstToken` ('stop', or 'stop-and-enter' with `early`) acts in the
    // task that renders the reply's first text, so a fast engine cannot end a
    // short reply between the token and the Stop. The outcome goes to
    // window.__firstTokenOutcome.
    const doneCount = () => window.__workerMessages.filter((message) => message.type === 'done').length;
    const armFirstToken = (mode, early) => {
      const donesBefore = doneCount();
      const observer = new MutationObserver(() => {
        // The streaming reply shows a placeholder until its first token.
        const body = document.querySelector('.message-assistant.streaming [data-testid=message-body]');
        if (body && !body.querySelector('.message-placeholder') && body.textContent.length > 0) {
          observer.disconnect();
          const wasEnabled = !stop.disabled;
          stop.click();
          const outcome = { wasEnabled };
          if (mode === 'stop-and-enter') {
            prompt.value = early;
            prompt.dispatchEvent(new KeyboardEvent('keydown', { key: 'Enter', bubbles: true, cancelable: true }));
            outcome.error = document.querySelector('[data-testid=error-text]').textContent;
            outcome.prompt = prompt.value;
          }
          window.__firstTokenOutcome = outcome;
        } else if (doneCount() > donesBefore) {
          observer.disconnect();
          window.__firstTokenOutcome = { wasEnabled: false };
        }
      });
      observer.observe(document.body, { subtree: true, childList: true, characterData: true, attributes: true });
    };
    window.__sendWhenReady = (text, { stopAtOnce = false, atFirstToken = null, early = '' } = {}) => {
      window.__firstTokenOutcome = undefined;
      const fire = () => {
        prompt.value = text;
        send.click();
        if (stopAtOnce) {
          stop.click();
        }
        if (atFirstToken) {
          armFirstToken(atFirstToken, early);
        }
      };
      if (!send.disabled) {
        fire();
        return;
      }
      const observer = new MutationObserver(() => {
        if (!send.disabled) {
          observer.disconnect();
          fire();
        }
      });
      observer.observe(send, { attributes: true, attributeFilter: ['disabled'] });
    };
  });
}

async function assertComposerUsable(page) {
  assert.equal(await page.isEnabled('[data-testid=send]'), true, 'Send is disabled');
  assert.equal(await page.isEnabled('[data-testid=stop]'), false, 'Stop is enabled with no reply in progress');
  assert.equal(await page.getAttribute('[data-testid=model-status]', 'data-state'), 'ready');
}

// ---------------------------------------------------------------------------
// GGUF metadata

describe('hostile GGUF metadata', () => {
  let model;
  let workDir;

  before(() => {
    model = parseGguf(readFileSync(MODEL_PATH));
    workDir = mkdtempSync(path.join(tmpdir(), 'prunechat-hostile-'));
  });

  after(() => {
    if (workDir) {
      rmSync(workDir, { recursive: true, force: true });
    }
  });

  /** Writes the real model with string metadata replaced, under `fileName`; returns its path. */
  function writeVariant(fileName, strings) {
    const filePath = path.join(workDir, fileName);
    writeFileSync(filePath, writeGguf(withStrings(model, strings)));
    return filePath;
  }

  test('GGUF rewrite keeps header and data', { timeout: TEST_TIMEOUT_MS }, async () => {
    // Checks the GGUF writer itself: a copy with one key rewritten to the
    // same value must parse to the same header and the same data.
    const original = getString(model, 'general.name');
    assert.equal(typeof original, 'string', 'the model has no general.name');
    const copy = parseGguf(readFileSync(writeVariant('copy.gguf', { 'general.name': original })));
    assert.equal(copy.tensorCount, model.tensorCount);
    assert.deepEqual(copy.metadata.map((entry) => entry.key), model.metadata.map((entry) => entry.key));
    assert.equal(Buffer.compare(copy.tensorInfos, model.tensorInfos), 0);
    assert.equal(Buffer.compare(copy.data, model.data), 0);
    assert.equal(typeof getString(model, 'tokenizer.chat_template'), 'string', 'the model has no chat template');
  });

  test('model name with markup shows as text', { timeout: TEST_TIMEOUT_MS }, async () => {
    // The file name carries markup too: it becomes the title of the model name.
    const fileName = '<img src=x onerror=window.__injected=3>.gguf';
    const filePath = writeVariant(fileName, { 'general.name': MARKUP });
    const session = await openChat();
    const { page } = session;
    await waitForModel(page);

    const loaded = await loadFile(page, filePath);
    assert.equal(loaded.type, 'loaded', `the load failed: ${loaded.message}`);
    assert.equal(loaded.info.name, MARKUP);
    assert.equal(loaded.name, fileName);
    await waitForModel(page);
    assert.equal(await page.textContent('[data-testid=model-name]'), MARKUP);
    assert.equal(await page.getAttribute('[data-testid=model-name]', 'title'), fileName);
    assert.deepEqual(await injectionTraces(page), NO_TRACES);

    await setSampling(page, { ...GREEDY, 'max-new-tokens': 8 });
    const reply = await ask(page, 'What is 2+2?');
    assert.deepEqual(reply.errors, []);
    assert.deepEqual(await injectionTraces(page), NO_TRACES);
    await session.close();
  });

  test('chat template output with markup stays text', { timeout: TEST_TIMEOUT_MS }, async () => {
    // The model's own template with markup in its default system prompt, so
    // every rendered prompt contains it. The request makes the model reply
    // with an HTML tag of its own.
    const defaultSystem = 'You are a helpful AI assistant named SmolLM, trained by Hugging Face';
    const original = getString(model, 'tokenizer.chat_template');
    assert.ok(original.includes(defaultSystem), 'the default system prompt of the template changed');
    const template = original.replace(defaultSystem, `${defaultSystem}. ${MARKUP}`);
    const filePath = writeVariant('markup-template.gguf', { 'tokenizer.chat_template': template });
    const session = await openChat();
    const { page } = session;
    await waitForModel(page);

    const loaded = await loadFile(page, filePath);
    assert.equal(loaded.type, 'loaded', `the load failed: ${loaded.message}`);
    assert.equal(loaded.info.chat_template, 'gguf', 'the file\'s template was not used');
    await waitForModel(page);

    await setSampling(page, { ...GREEDY, 'max-new-tokens': 32 });
    const reply = await ask(page, 'Write an HTML image tag for the file cat.png.');
    assert.deepEqual(reply.errors, []);
    assert.equal(reply.replyText, reply.tokens.map((token) => token.text).join(''));
    assert.match(reply.replyText, /<img /, `the reply has no markup to test: ${JSON.stringify(reply.replyText)}`);
    assert.deepEqual(await injectionTraces(page), NO_TRACES);
    await session.close();
  });

  test('chat template that fails to load shows an error', { timeout: TEST_TIMEOUT_MS }, async () => {
    const cases = [
      {
        file: 'template-syntax.gguf',
        template: '{% for message in messages %}{{ message.content }}',
        expected: /chat template: tokenizer\.chat_template does not compile/,
      },
      {
        file: 'template-raises.gguf',
        template: "{{ raise_exception('this template rejects every chat') }}",
        expected: /chat template: tokenizer\.chat_template fails on a one-message chat: .*this template rejects every chat/,
      },
      {
        // 10^10 loop steps: the render runs out of minijinja fuel instead of hanging the worker.
        file: 'template-loops.gguf',
        template: '{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}',
        expected: /chat template: .*ran more than 5000000 instructions/,
      },
    ];
    const session = await openChat();
    const { page } = session;
    await waitForModel(page);
    const modelName = await page.textContent('[data-testid=model-name]');

    for (const { file, template, expected } of cases) {
      const error = await loadFile(page, writeVariant(file, { 'tokenizer.chat_template': template }));
      assert.equal(error.type, 'error', `${file} loaded`);
      assert.equal(error.context, 'load');
      assert.equal(error.fatal, false, `the engine trapped on ${file}: ${error.message}`);
      assert.match(error.message, expected);

      await waitForModel(page);
      const errorText = await page.textContent('[data-testid=error-text]');
      assert.match(errorText, /^Loading the model failed: /);
      assert.match(errorText, expected);
      assert.match(errorText, /current model stays loaded/);
      assert.equal(await page.textContent('[data-testid=model-name]'), modelName);
    }

    // The loaded model still replies, and the original file loads again.
    await setSampling(page, { ...GREEDY, 'max-new-tokens': 16 });
    const before = await ask(page, 'What is 2+2?');
    assert.deepEqual(before.errors, []);
    assert.match(before.replyText, /4/);

    const loaded = await loadFile(page, MODEL_PATH);
    assert.equal(loaded.type, 'loaded', `the original model failed to load: ${loaded.message}`);
    await waitForModel(page);
    assert.equal(await page.isHidden('[data-testid=error-area]'), true, 'the error stays after a good load');
    const reply = await ask(page, 'What is 2+2?');
    assert.deepEqual(reply.errors, []);
    assert.equal(reply.replyText, before.replyText, 'the reloaded model answers differently');
    await session.close();
  });

  test('chat template that fails on a later turn', { timeout: TEST_TIMEOUT_MS }, async () => {
    // Renders a one-message chat, so the load succeeds, then raises once the
    // history has a reply in it.
    const template = `{% if messages|length > 1 %}{{ raise_exception('this template takes one message') }}{% endif %}${CHATML}`;
    const filePath = writeVariant('template-one-message.gguf', { 'tokenizer.chat_template': template });
    const session = await openChat();
    const { page } = session;
    await waitForModel(page);
    const loaded = await loadFile(page, filePath);
    assert.equal(loaded.type, 'loaded', `the load failed: ${loaded.message}`);
    await waitForModel(page);
    await setSampling(page, { ...GREEDY, 'max-new-tokens': 16 });

    const first = await ask(page, 'What is 2+2?');
    assert.deepEqual(first.errors, []);

    const from = await messageCount(page);
    await page.fill('[data-testid=prompt]', 'And 3+3?');
    await page.press('[data-testid=prompt]', 'Enter');
    const error = await waitForWorkerMessage(page, 'error', from);
    assert.equal(error.context, 'send');
    assert.equal(error.fatal, false, `the engine trapped: ${error.message}`);
    assert.match(error.message, /chat template: rendering failed: .*this template takes one message/);
    assert.match(await page.textContent('[data-testid=error-text]'), /^Starting the reply failed: chat template: rendering failed/);
    assert.equal(await page.inputValue('[data-testid=prompt]'), 'And 3+3?', 'the prompt was not given back');
    assert.equal(await page.locator('.message-user').count(), 1, 'the failed turn stays in the chat');
    await assertComposerUsable(page);

    // New chat empties the history, so the template renders again.
    const resetFrom = await messageCount(page);
    await page.click('[data-testid=new-chat]');
    await waitForWorkerMessage(page, 'reset-done', resetFrom, 10_000);
    const fresh = await ask(page, 'What is 2+2?');
    assert.deepEqual(fresh.errors, []);
    assert.equal(fresh.replyText, first.replyText);
    await session.close();
  });
});

// ---------------------------------------------------------------------------
// Origin and Content-Security-Policy

describe('origin and CSP', () => {
  test('no request leaves the origin', { timeout: TEST_TIMEOUT_MS }, async () => {
    const origin = new URL(BASE_URL).origin;
    const requests = [];
    // Playwright reports the worker's requests to the context as well.
    const session = await openChat({ onContext: (context) => context.on('request', (request) => requests.push(request.url())) });
    const { page } = session;
    await waitForModel(page);
    await setSampling(page, { ...GREEDY, 'max-new-tokens': 16 });
    const reply = await ask(page, 'What is 2+2?');
    assert.deepEqual(reply.errors, []);
    assert.ok(reply.tokens.length > 0, 'no tokens streamed');

    assert.ok(requests.includes(`${origin}/models/${MODEL_FILE}`), 'the model request was not recorded');
    // pkg-threads/ on a machine with two or more cores, else pkg/ (www/settings.js requestedThreads).
    assert.ok(requests.some((url) => /\/(pkg|pkg-threads)\/prunechat_bg\.wasm$/.test(url)), 'the wasm request was not recorded');
    const foreign = requests.filter((url) => new URL(url).origin !== origin);
    assert.deepEqual(foreign, [], 'requests to other origins');
    await session.close();
  });

  test('CSP allows only same-origin scripts', { timeout: TEST_TIMEOUT_MS }, async () => {
    const session = await openChat({
      // Chromium 148 logs "Executing inline script violates ...", older
      // versions "Refused to execute inline script ...".
      expectedConsoleErrors: [
        /(Refused to execute|Executing) inline script/,
        /(Refused to execute|Executing) inline event handler/,
      ],
    });
    const { page, response } = session;
    const header = response.headers()['content-security-policy'];
    const meta = await page.getAttribute('meta[http-equiv="Content-Security-Policy"]', 'content');
    const allowedSources = new Set(["'self'", "'none'", "'wasm-unsafe-eval'", 'data:', 'blob:']);
    for (const [where, policy] of [['header', header], ['meta', meta]]) {
      assert.equal(typeof policy, 'string', `no CSP in the ${where}`);
      const directives = parsePolicy(policy);
      assert.deepEqual(directives.get('script-src'), ["'self'", "'wasm-unsafe-eval'"], `${where} script-src`);
      for (const name of ['default-src', 'connect-src']) {
        assert.deepEqual(directives.get(name), ["'self'"], `${where} ${name}`);
      }
      // The header also governs the workers, where wasm-bindgen-rayon starts
      // its pool threads from blob: URLs; the page itself starts none.
      const workerSources = where === 'header' ? ["'self'", 'blob:'] : ["'self'"];
      assert.deepEqual(directives.get('worker-src'), workerSources, `${where} worker-src`);
      for (const [name, sources] of directives) {
        const extra = sources.filter((source) => !allowedSources.has(source));
        assert.deepEqual(extra, [], `${where} ${name} allows more than the page's own origin`);
      }
    }

    // The CSP blocks both an inline script and an inline event handler.
    await page.evaluate(() => {
      window.__violations = [];
      document.addEventListener('securitypolicyviolation', (event) => window.__violations.push(event.effectiveDirective));
      const script = document.createElement('script');
      script.textContent = 'window.__inline = 1';
      document.body.append(script);
      const holder = document.createElement('div');
      holder.innerHTML = '<img src="data:," onerror="window.__handler = 1">';
      document.body.append(holder);
    });
    // Chromium enforces the header and the meta policy separately, so each
    // blocked script is reported once for each of them.
    await page.waitForFunction(() => window.__violations.length >= 4, null, { timeout: 10_000 });
    assert.equal(await page.evaluate(() => window.__inline), undefined, 'the inline script ran');
    assert.equal(await page.evaluate(() => window.__handler), undefined, 'the inline event handler ran');
    const violations = await page.evaluate(() => window.__violations);
    assert.deepEqual(violations.sort(), ['script-src-attr', 'script-src-attr', 'script-src-elem', 'script-src-elem']);
    assert.equal(session.expectedErrors.length, 4, `expected four CSP console errors: ${session.expectedErrors}`);
    await session.close();
  });
});

// ---------------------------------------------------------------------------
// Streaming, Stop and Send, long sessions, long prompts

describe('chat under stress', () => {
  test('mixed scripts stream as whole characters', { timeout: TEST_TIMEOUT_MS }, async () => {
    // Chinese, emoji with skin-tone modifiers and ZWJ sequences, and letters
    // with combining accents: byte-level BPE splits these characters over
    // several tokens.
    const text = '你好，世界！👍🏽 👩🏾‍💻 👨‍👩‍👧‍👦 🏳️‍🌈 cafe\u0301 n\u0303o';
    const session = await openChat();
    const { page } = session;
    await waitForModel(page);
    await setSampling(page, { ...GREEDY, 'max-new-tokens': 64 });

    const reply = await ask(page, `Copy this line: ${text}`);
    assert.deepEqual(reply.errors, []);
    const tokens = reply.tokens.map((token) => token.text);
    assert.ok(tokens.length > 1, `expected several tokens, got ${tokens.length}`);
    assert.equal(tokens.join(''), reply.replyText, 'the streamed tokens differ from the reply on the page');
    for (const [index, token] of tokens.entries()) {
      assert.equal(token.includes('\uFFFD'), false, `token ${index} contains U+FFFD: ${JSON.stringify(token)}`);
      assert.equal(token.isWellFormed(), true, `token ${index} has a lone surrogate: ${JSON.stringify(token)}`);
    }
    // The test only means something when the reply repeats multi-byte text.
    assert.match(reply.replyText, /\p{Extended_Pictographic}/u, `no emoji in the reply: ${JSON.stringify(reply.replyText)}`);
    assert.match(reply.replyText, /\p{Script=Han}/u, `no Chinese in the reply: ${JSON.stringify(reply.replyText)}`);
    await session.close();
  });

  test('stop and send in quick succession', { timeout: TEST_TIMEOUT_MS }, async () => {
    const session = await openChat();
    const { page } = session;
    await waitForModel(page);
    // Greedy and long. Counting replies run on until Stop; story replies ended
    // with EOS after one or two tokens once an earlier reply had been stopped.
    await setSampling(page, { ...GREEDY, 'max-new-tokens': 256 });
    await installSendDriver(page);

    // 'first-token': Stop when the first token of the reply arrives.
    // 'enter-while-stopping': the same, and Enter in the task of the Stop
    // click, which the page rejects as busy.
    // 'at-once': Stop in the task of the Send click, before the first token.
    // Every next Send goes out in the task in which the previous reply ends.
    // The rounds that stop at once come last: after an empty reply in the
    // history, this model tends to end its next reply at once with EOS, so a
    // later round would see no token to stop at.
    const rounds = ['first-token', 'first-token', 'enter-while-stopping', 'first-token', 'at-once', 'at-once', 'at-once'];
    const prompts = rounds.map((_, i) => `Count from ${100 * i + 1} to ${100 * i + 400}, separated by commas.`);
    const early = 'This one is sent too early.';
    const atFirstToken = { 'first-token': 'stop', 'enter-while-stopping': 'stop-and-enter', 'at-once': null };
    const sendWhenReady = (i) =>
      page.evaluate(
        ([text, options]) => window.__sendWhenReady(text, options),
        [prompts[i], { stopAtOnce: rounds[i] === 'at-once', atFirstToken: atFirstToken[rounds[i]], early }],
      );

    await sendWhenReady(0);
    for (const [i, mode] of rounds.entries()) {
      if (mode === 'at-once') {
        // Wait until turn i has started in the worker.
        await page.waitForFunction(
          (count) => window.__workerMessages.filter((message) => message.type === 'turn-start').length >= count,
          i + 1,
          { timeout: REPLY_TIMEOUT_MS, polling: 20 },
        );
      } else {
        // The page stopped turn i at its first token, or saw it end first.
        await page.waitForFunction(() => window.__firstTokenOutcome !== undefined, null, {
          timeout: REPLY_TIMEOUT_MS,
          polling: 20,
        });
        const outcome = await page.evaluate(() => window.__firstTokenOutcome);
        assert.equal(outcome.wasEnabled, true, `turn ${i} ended before Stop`);
        if (mode === 'enter-while-stopping') {
          assert.match(outcome.error, /Wait until the current reply has finished/);
          assert.equal(outcome.prompt, early, 'the rejected prompt was cleared');
        }
      }
      if (i + 1 < rounds.length) {
        await sendWhenReady(i + 1);
      }
    }
    await page.waitForFunction(
      (count) => window.__workerMessages.filter((message) => message.type === 'done').length >= count,
      rounds.length,
      { timeout: REPLY_TIMEOUT_MS, polling: 50 },
    );

    const messages = await workerMessages(page);
    const turns = splitTurns(messages);
    assert.deepEqual(messages.filter((message) => message.type === 'error'), []);
    assert.equal(turns.length, rounds.length, 'each Send starts one turn');
    const bodies = await page.locator('.message-assistant [data-testid=message-body]').allTextContents();
    assert.equal(bodies.length, rounds.length, 'each turn has one reply on the page');
    for (const [i, turn] of turns.entries()) {
      assert.notEqual(turn.done, null, `turn ${i} has no done`);
      assert.equal(turn.done.reason, 'stopped', `turn ${i} (${rounds[i]}) ended with ${turn.done.reason}`);
      assert.equal(turn.tokens.join(''), bodies[i], `turn ${i} shows other text than it streamed`);
      if (rounds[i] === 'at-once') {
        assert.equal(turn.done.stats.n_generated, 0, `turn ${i} generated tokens before the Stop`);
      } else {
        assert.ok(turn.tokens.length > 0, `turn ${i} streamed no token`);
      }
    }
    const reasons = await page.locator('.message-assistant').evaluateAll((items) => items.map((item) => item.dataset.reason));
    assert.deepEqual(reasons, rounds.map(() => 'stopped'));
    assert.equal(await page.locator('.message-assistant.streaming').count(), 0, 'a reply is still marked as streaming');
    await assertComposerUsable(page);
    assert.equal(await page.isHidden('[data-testid=error-area]'), true, 'the busy message stays after the next Send');

    // One more turn in the same chat ends on its own, and a new chat works.
    const next = await ask(page, 'What is 2+2?');
    assert.deepEqual(next.errors, []);
    assert.ok(['eos', 'max_tokens'].includes(next.done.reason), `the turn after the stops ended with ${next.done.reason}`);
    const resetFrom = await messageCount(page);
    await page.click('[data-testid=new-chat]');
    await waitForWorkerMessage(page, 'reset-done', resetFrom, 10_000);
    await setSampling(page, { ...GREEDY, 'max-new-tokens': 32 });
    const fresh = await ask(page, 'What is 2+2?');
    assert.deepEqual(fresh.errors, []);
    assert.match(fresh.replyText, /4/);
    await session.close();
  });

  test('long session keeps memory bounded', { timeout: 1_500_000 }, async () => {
    // With a 128-token context and 4-token replies, every second turn drops
    // old turns. A turn took about 0.9 s in CI and 2.6 to 3.7 s on a busy
    // 2-core machine, so 200 turns take 3 to 12 minutes.
    // PRUNECHAT_LONG_SESSION_TURNS sets another count.
    const turns = Number(process.env.PRUNECHAT_LONG_SESSION_TURNS ?? 200);
    const baselineTurn = 30;
    assert.ok(Number.isInteger(turns), `PRUNECHAT_LONG_SESSION_TURNS must be an integer, got ${turns}`);
    assert.ok(turns > baselineTurn, `PRUNECHAT_LONG_SESSION_TURNS must be above ${baselineTurn}, got ${turns}`);
    const maxContext = 128;
    const session = await openChat({ maxContext });
    const { page } = session;
    await waitForModel(page);
    await setSampling(page, { ...GREEDY, 'max-new-tokens': 4 });

    const started = Date.now();
    const memory = [];
    const kvCache = [];
    let droppedAfterBaseline = 0;
    for (let turn = 1; turn <= turns; turn += 1) {
      const reply = await ask(page, `Turn ${turn}: name one color.`);
      assert.deepEqual(reply.errors, [], `turn ${turn} failed`);
      assert.ok(reply.turnStart.prompt_tokens <= maxContext, `turn ${turn} prompt has ${reply.turnStart.prompt_tokens} tokens`);
      if (turn > baselineTurn) {
        droppedAfterBaseline += reply.turnStart.dropped_turns;
      }
      memory.push(reply.done.stats.wasm_memory_bytes);
      kvCache.push(reply.done.stats.kv_cache_bytes);
    }
    const seconds = (Date.now() - started) / 1000;
    console.log(`long session: ${turns} turns in ${seconds.toFixed(0)} s; wasm memory after turn 1, ` +
      `${baselineTurn} and ${turns}: ${memory[0]}, ${memory[baselineTurn - 1]}, ${memory[turns - 1]} bytes`);

    assert.ok(droppedAfterBaseline > 0, `no turn was dropped after turn ${baselineTurn}`);
    // The KV cache reaches its full size (the context length) when the
    // context first fills, and wasm memory never shrinks, so memory that
    // grows after that point is a leak.
    assert.equal(memory[turns - 1], memory[baselineTurn - 1], 'wasm memory grew after the context filled');
    assert.equal(kvCache[turns - 1], kvCache[baselineTurn - 1], 'the KV cache grew after the context filled');
    assert.equal(await page.locator('.message-assistant').count(), turns);
    await assertComposerUsable(page);
    await session.close();
  });

  test('100 000-character prompt is rejected', { timeout: TEST_TIMEOUT_MS }, async () => {
    const session = await openChat();
    const { page } = session;
    await waitForModel(page);
    await setSampling(page, { ...GREEDY, 'max-new-tokens': 8 });

    const cases = [
      ['prose', 'The quick brown fox jumps over the lazy dog, then rests by the river. '.repeat(1500).slice(0, 100_000).trim()],
      ['one word', 'abcdefghij'.repeat(10_000)],
    ];
    for (const [kind, prompt] of cases) {
      const from = await messageCount(page);
      const started = Date.now();
      await page.fill('[data-testid=prompt]', prompt);
      await page.press('[data-testid=prompt]', 'Enter');
      const error = await waitForWorkerMessage(page, 'error', from, 60_000);
      console.log(`${kind} prompt of ${prompt.length} characters rejected after ${Date.now() - started} ms`);
      assert.equal(error.context, 'send', kind);
      assert.equal(error.fatal, false, `the engine trapped on the ${kind} prompt: ${error.message}`);
      assert.match(error.message, /does not fit the context of 2048 tokens/, kind);
      assert.match(await page.textContent('[data-testid=error-text]'), /^Starting the reply failed: .*does not fit the context/);
      assert.equal(await page.inputValue('[data-testid=prompt]'), prompt, `the ${kind} prompt was not given back`);
      assert.equal(await page.locator('[data-testid=messages] > li').count(), 0);
      await assertComposerUsable(page);
      await page.fill('[data-testid=prompt]', '');
    }

    await setSampling(page, { ...GREEDY, 'max-new-tokens': 32 });
    const reply = await ask(page, 'What is 2+2?');
    assert.deepEqual(reply.errors, []);
    assert.match(reply.replyText, /4/);
    await session.close();
  });
});
