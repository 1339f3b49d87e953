// Helpers shared by the browser benchmarks: the local server, Chromium's
// flags, the machine and build descriptions recorded with every table, and
// replacing one marked section of a Markdown page.

import { execFileSync, spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');

export const CHROMIUM_PATH = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
export const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** Context length the benchmarks load models with, in tokens. */
export const MAX_CONTEXT = 2048;
// Greedy decoding with a fixed seed, so every run generates the same tokens.
export const GREEDY = { temperature: 0, top_k: 0, top_p: 1, repeat_penalty: 1, seed: 1 };

// ---------------------------------------------------------------------------
// Page-side driver, installed with page.evaluate (CDP, so the page CSP does
// not apply to it).

export function installDriver() {
  const worker = new Worker('/www/worker.js', { type: 'module' });
  let pending = null;
  let peakMemory = 0;
  worker.onmessage = (event) => {
    const message = event.data;
    // Arrival time in ms since the page's navigation start (performance.timeOrigin).
    message.page_ms = performance.now();
    const memory = message.wasm_memory_bytes ?? message.stats?.wasm_memory_bytes ?? 0;
    peakMemory = Math.max(peakMemory, memory);
    if (pending === null) {
      return;
    }
    pending.messages.push(message);
    if (message.type === 'error') {
      pending.reject(new Error(`worker error (${message.context}): ${message.message}`));
      pending = null;
    } else if (message.type === pending.until) {
      pending.resolve(pending.messages);
      pending = null;
    }
  };
  worker.onerror = (event) => {
    pending?.reject(new Error(`worker failed: ${event.message}`));
    pending = null;
  };
  // Sends one command and resolves with every message up to the one of type `until`.
  window.benchRequest = (message, until) =>
    new Promise((resolve, reject) => {
      pending = { until, messages: [], resolve, reject };
      worker.postMessage(message);
    });
  window.benchPeakMemory = () => peakMemory;
}

export async function request(page, message, until) {
  return page.evaluate(([body, type]) => window.benchRequest(body, type), [message, until]);
}

/**
 * Sends one command like `request`; returns {sentMs, messages}, where `sentMs` and each
 * message's `page_ms` are page times in ms since navigation start.
 */
export async function timedRequest(page, message, until) {
  return page.evaluate(
    async ([body, type]) => {
      const sentMs = performance.now();
      const messages = await window.benchRequest(body, type);
      return { sentMs, messages };
    },
    [message, until],
  );
}

/**
 * Loads a model and returns the `loaded` message. `threads`, when given, is passed in the
 * `load` message; `loaded.threads` then has the thread count the worker uses.
 */
export async function loadModel(page, modelUrl, maxContext = MAX_CONTEXT, threads = undefined) {
  const message = { type: 'load', url: modelUrl, maxContext };
  if (threads !== undefined) {
    message.threads = threads;
  }
  const messages = await request(page, message, 'loaded');
  return messages.at(-1);
}

/** Runs one turn from an empty history; returns {turnStart, done}. */
export async function runTurn(page, text, maxNewTokens) {
  await request(page, { type: 'reset' }, 'reset-done');
  const sampling = { ...GREEDY, max_new_tokens: maxNewTokens };
  const messages = await request(page, { type: 'send', text, system: '', sampling }, 'done');
  return {
    turnStart: messages.find((message) => message.type === 'turn-start'),
    done: messages.at(-1),
  };
}

// ---------------------------------------------------------------------------

/** Starts scripts/serve.py on a free port; resolves to {url, stop}. */
export function startServer() {
  return new Promise((resolve, reject) => {
    const server = spawn('python3', [join(ROOT, 'scripts', 'serve.py'), '--root', ROOT], {
      env: { ...process.env, PORT: '0' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    server.stderr.on('data', (chunk) => {
      stderr += chunk;
    });
    server.on('exit', (code) => reject(new Error(`scripts/serve.py exited with code ${code}:\n${stderr}`)));
    const timer = setTimeout(() => {
      server.kill('SIGTERM');
      reject(new Error(`scripts/serve.py printed no URL within 15 s:\n${stderr}`));
    }, 15_000);
    server.stdout.once('data', (chunk) => {
      clearTimeout(timer);
      const url = chunk.toString().split('\n')[0].trim().replace(/\/$/, '');
      const stop = () => {
        server.removeAllListeners('exit');
        server.kill('SIGTERM');
      };
      // Also stop the server when this process ends early, for example on Ctrl-C.
      process.once('exit', stop);
      process.once('SIGINT', () => process.exit(130));
      process.once('SIGTERM', () => process.exit(143));
      resolve({ url, stop });
    });
  });
}

export function machineDescription() {
  let model = cpus()[0]?.model ?? 'unknown CPU';
  try {
    const line = execFileSync('lscpu', { encoding: 'utf8' })
      .split('\n')
      .find((row) => row.startsWith('Model name:'));
    if (line) {
      model = line.slice('Model name:'.length).trim();
    }
  } catch {
    // lscpu is missing: keep the model name from os.cpus().
  }
  return `${model}, ${cpus().length} cores`;
}

/** Returns the wasm target features set in .cargo/config.toml, for example "+simd128". */
export function wasmTargetFeatures() {
  try {
    const config = readFileSync(join(ROOT, '.cargo', 'config.toml'), 'utf8');
    return [...config.matchAll(/target-feature=([^"\s]+)/g)].map((match) => match[1]).join(',') || 'none';
  } catch {
    return 'unknown';
  }
}

/** Returns the short commit hash, marked when src/, www/ or the Cargo files differ from it. */
export function gitRevision() {
  const git = (...args) =>
    execFileSync('git', ['-C', ROOT, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  try {
    const revision = git('rev-parse', '--short', 'HEAD');
    const changed = git('status', '--porcelain', '--', 'src', 'www', 'Cargo.toml', 'Cargo.lock');
    return changed === '' ? `commit ${revision}` : `commit ${revision} with uncommitted changes`;
  } catch {
    return 'no commit';
  }
}

/** Describes pkg/ and warns when a file under src/ is newer than the built wasm. */
export function packageBuildDescription() {
  const wasmPath = join(ROOT, 'pkg', 'prunechat_bg.wasm');
  if (!existsSync(wasmPath)) {
    return 'pkg/prunechat_bg.wasm missing';
  }
  const builtAt = statSync(wasmPath).mtimeMs;
  const sources = readdirSync(join(ROOT, 'src'), { recursive: true })
    .filter((file) => file.endsWith('.rs'))
    .map((file) => statSync(join(ROOT, 'src', file)).mtimeMs);
  const stale = sources.some((modifiedAt) => modifiedAt > builtAt);
  const built = new Date(builtAt).toISOString().slice(0, 16).replace('T', ' ');
  return `pkg/ built ${built} UTC${stale ? ', older than the sources in src/' : ''}`;
}

export function withTimeout(promise, ms, label) {
  let timer;
  const timeout = new Promise((resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`${label} timed out after ${ms / 1000} s`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/**
 * Replaces the text between the `start` and `end` marker lines of the
 * Markdown file at `path` (markers included) with `section`, or appends
 * `section` when the markers are missing.
 */
export function replaceSection(path, start, end, section) {
  let document = existsSync(path) ? readFileSync(path, 'utf8') : '# Benchmarks\n';
  const from = document.indexOf(start);
  const to = document.indexOf(end);
  if (from !== -1 && to > from) {
    document = document.slice(0, from) + section + document.slice(to + end.length);
  } else {
    document = `${document.trimEnd()}\n\n${section}\n`;
  }
  writeFileSync(path, document);
}
