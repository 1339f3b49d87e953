// Module worker that owns the wasm ChatEngine. The message protocol is
// documented in docs/worker-protocol.md; every message in both directions
// carries a `type`.

const MODEL_CACHE_NAME = 'prunechat-models-v1';
const GGUF_MAGIC = [0x47, 0x47, 0x55, 0x46]; // "GGUF"
const DEFAULT_MAX_CONTEXT = 2048;
// Largest `threads` value a `load` accepts; each thread is a Web Worker.
const MAX_THREADS = 64;
// Each pool thread is a nested Web Worker that instantiates the module; on a
// busy machine that can take seconds, but not a minute.
const THREAD_POOL_TIMEOUT_MS = 60_000;

// The wasm-bindgen module, imported on the first `load` so that a missing
// pkg/ is reported as an `error` message instead of a failed worker script.
// It is pkg-threads/ (with a rayon thread pool) or pkg/ (one thread), chosen
// then and kept for the worker's life.
let bindings = null;
let wasm = null;
// Threads that the first `load` requested and that the imported module runs,
// and why a request for more threads fell back to pkg/ ({reason, message},
// or null).
let threadsRequested = 1;
let threadCount = 1;
let threadFallback = null;
let engine = null;
// Set after a WebAssembly.RuntimeError (a trap, for example a Rust panic or a
// failed memory allocation): the wasm instance state can no longer be trusted.
let engineBroken = false;

let generating = false;
let evaluating = false;
// True while a `finetune` job runs its steps; `stop` then ends it after the current step.
let training = false;
let stopRequested = false;
// Commands run one at a time in arrival order. `stop` bypasses the queue, and
// `load`/`reset` also raise the stop flag so that they do not wait for a
// long reply to finish.
let commandQueue = Promise.resolve();

/** Error with a machine-readable `code` that the page translates. */
class WorkerError extends Error {
  constructor(code, message, params = {}) {
    super(message);
    this.code = code;
    this.params = params;
  }
}

function post(message, transfer) {
  self.postMessage(message, transfer ?? []);
}

function wasmMemoryBytes() {
  return wasm ? wasm.memory.buffer.byteLength : 0;
}

function isWasmTrap(error) {
  return error instanceof WebAssembly.RuntimeError;
}

/** Sends an `error` message; a wasm trap also marks the engine unusable. */
function reportError(context, error) {
  const fatal = engineBroken || isWasmTrap(error);
  if (isWasmTrap(error)) {
    engineBroken = true;
  }
  const message = error instanceof Error ? error.message : String(error);
  console.warn(`prunechat worker: ${context} failed:`, error);
  post({
    type: 'error',
    context,
    message,
    code: error?.code ?? (isWasmTrap(error) ? 'wasm_trap' : null),
    params: error?.params ?? {},
    fatal,
  });
}

// Zero-delay yield: a MessageChannel message is a new task, so messages that
// are already queued for this worker (such as `stop`) run before the token
// loop continues. setTimeout(0) would be clamped to 4 ms after a few nested
// calls, which costs more than a decode step of a small model.
const yieldChannel = new MessageChannel();
const yieldResolvers = [];
yieldChannel.port1.onmessage = () => {
  yieldResolvers.shift()?.();
};

function yieldToEventLoop() {
  return new Promise((resolve) => {
    yieldResolvers.push(resolve);
    yieldChannel.port2.postMessage(null);
  });
}

/**
 * Imports and initializes the wasm module on the first call. With `threads`
 * above 1 it tries pkg-threads/ and starts that many pool threads. When that
 * fails, it records the reason in `threadFallback` and uses pkg/. Later calls
 * keep the first call's module, whatever `threads` they pass.
 */
async function ensureWasm(threads = 1) {
  if (wasm !== null) {
    return;
  }
  threadsRequested = threads;
  if (threads > 1) {
    threadFallback = threadsUnavailable() ?? (await startThreadedWasm(threads));
    if (threadFallback === null) {
      return;
    }
    console.warn(`prunechat worker: running on one thread instead of ${threads}: ${threadFallback.message}`);
  }
  try {
    bindings = await import('../pkg/prunechat.js');
  } catch (error) {
    throw new WorkerError(
      'wasm_missing',
      `Loading pkg/prunechat.js failed (${error.message}); build it with wasm-pack first.`,
      { detail: error.message },
    );
  }
  wasm = await bindings.default();
  threadCount = 1;
}

/**
 * Returns {reason, message} when this worker cannot share wasm memory with
 * other workers, or null when it can.
 */
function threadsUnavailable() {
  if (self.crossOriginIsolated !== true) {
    return {
      reason: 'not_isolated',
      message: 'the page is not cross-origin isolated (it needs the COOP and COEP headers of scripts/serve.py)',
    };
  }
  try {
    // The threaded module declares the 4 GiB maximum (65536 pages), so probe with it.
    new WebAssembly.Memory({ initial: 1, maximum: 65536, shared: true });
  } catch (error) {
    return { reason: 'no_shared_memory', message: `this browser cannot create shared WebAssembly memory (${error.message})` };
  }
  return null;
}

/**
 * Imports pkg-threads/, initializes it and starts `threads` pool threads.
 * Sets `bindings` and `wasm` and returns null on success, or returns
 * {reason, message} and leaves them unset.
 */
async function startThreadedWasm(threads) {
  let threaded;
  let instance;
  try {
    threaded = await import('../pkg-threads/prunechat.js');
    instance = await threaded.default();
  } catch (error) {
    return {
      reason: 'module_failed',
      message: `loading pkg-threads/prunechat.js failed (${error.message}); build it with scripts/build-wasm-threads.sh`,
    };
  }
  try {
    await withTimeout(threaded.initThreadPool(threads), THREAD_POOL_TIMEOUT_MS, 'the thread pool did not start');
  } catch (error) {
    // NOTE: the threaded instance and any pool workers that did start stay
    // allocated until this worker ends; pkg/ runs beside them.
    return { reason: 'pool_failed', message: `starting ${threads} threads failed (${error.message})` };
  }
  bindings = threaded;
  wasm = instance;
  threadCount = threads;
  return null;
}

/** Resolves or rejects as `promise` does, or rejects after `ms` milliseconds with `message`. */
function withTimeout(promise, ms, message) {
  let timer;
  const timeout = new Promise((resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`${message} within ${ms / 1000} s`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function assertEngineUsable() {
  if (engineBroken) {
    throw new WorkerError(
      'engine_broken',
      'The engine stopped after an internal error; reload the page to start a new one.',
    );
  }
}

// ---------------------------------------------------------------------------
// Model download with progress and the Cache API

/**
 * Reads a response body into one Uint8Array, posting `progress` messages.
 * Rejects with the abort reason at the next chunk after `signal` aborts.
 */
async function readWithProgress(response, total, signal) {
  const progress = progressPoster(total, signal);
  if (total > 0) {
    let reader = null;
    try {
      reader = response.body.getReader({ mode: 'byob' });
    } catch {
      // Not a byte stream: read its chunks below.
    }
    if (reader !== null) {
      return readInto(reader, total, progress);
    }
  }
  const chunks = [];
  const reader = response.body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) {
      break;
    }
    chunks.push(value);
    progress.add(value.length);
  }
  return progress.done(concatenate(chunks));
}

/**
 * Reads a byte stream of `total` bytes (its Content-Length) straight into one
 * buffer, which in Chromium 148 took about two thirds of the time of copying
 * the chunks (benches/load-steps.mjs). A stream that ends early gives the
 * bytes read, and one that goes on past `total` gives all of its bytes.
 */
async function readInto(reader, total, progress) {
  let buffer = new ArrayBuffer(total);
  let loaded = 0;
  while (loaded < total) {
    const { done, value } = await reader.read(new Uint8Array(buffer, loaded, total - loaded));
    if (value) {
      // The read moves the buffer into `value`; the old one is detached.
      buffer = value.buffer;
      loaded += value.byteLength;
    }
    if (done) {
      return progress.done(new Uint8Array(buffer, 0, loaded));
    }
    progress.add(value.byteLength);
  }
  // Content-Length was too small: collect the rest.
  const chunks = [new Uint8Array(buffer)];
  for (;;) {
    const { done, value } = await reader.read(new Uint8Array(1 << 16));
    if (done) {
      break;
    }
    chunks.push(value);
    progress.add(value.byteLength);
  }
  return progress.done(chunks.length === 1 ? chunks[0] : concatenate(chunks));
}

/**
 * Posts `progress` messages at most every 50 ms while bytes arrive, and once at
 * the end. `add` throws the abort reason once `signal` aborts, so the read stops.
 */
function progressPoster(total, signal) {
  let loaded = 0;
  let lastPost = 0;
  return {
    add(count) {
      signal?.throwIfAborted();
      loaded += count;
      const now = performance.now();
      if (now - lastPost > 50) {
        lastPost = now;
        // A compressed body can exceed its Content-Length: the total is then unknown.
        post({ type: 'progress', phase: 'download', loaded, total: total >= loaded ? total : null });
      }
    },
    done(bytes) {
      post({ type: 'progress', phase: 'download', loaded: bytes.length, total: total || bytes.length });
      return bytes;
    },
  };
}

function concatenate(chunks) {
  const bytes = new Uint8Array(chunks.reduce((sum, chunk) => sum + chunk.length, 0));
  let offset = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, offset);
    offset += chunk.length;
  }
  return bytes;
}

async function openModelCache() {
  try {
    return await caches.open(MODEL_CACHE_NAME);
  } catch (error) {
    // The Cache API is missing outside secure contexts and in some private
    // modes; downloads still work, they are just not kept.
    console.warn('prunechat worker: Cache API unavailable:', error);
    return null;
  }
}

/**
 * Fetches a model file, from the Cache API when an earlier load stored it.
 * Returns {bytes, cached, cache, absoluteUrl}. A download is not stored yet:
 * `storeModel` does that once the engine has accepted the file. Aborting
 * `signal` stops the download.
 */
async function fetchModel(url, signal) {
  const absoluteUrl = new URL(url, self.location.href).href;
  const cache = await openModelCache();

  const name = fileNameFromUrl(url);
  const cachedResponse = cache ? await cache.match(absoluteUrl) : undefined;
  if (cachedResponse) {
    const total = Number(cachedResponse.headers.get('content-length')) || 0;
    const bytes = await readWithProgress(cachedResponse, total, signal);
    try {
      checkGgufMagic(bytes, name);
    } catch (error) {
      // A damaged cache entry would fail every later load: drop it so that
      // the next load downloads the file again.
      await cache.delete(absoluteUrl);
      throw error;
    }
    return { bytes, cached: true, cache, absoluteUrl };
  }

  let response;
  try {
    response = await fetch(absoluteUrl, { signal });
  } catch (error) {
    throw new WorkerError('download_failed', `Download of ${url} failed: ${error.message}`, {
      url,
      detail: error.message,
    });
  }
  if (!response.ok) {
    throw new WorkerError(
      'download_http',
      `Download of ${url} failed: HTTP ${response.status} ${response.statusText}`,
      { url, status: response.status },
    );
  }

  const total = Number(response.headers.get('content-length')) || 0;
  let bytes;
  try {
    bytes = await readWithProgress(response, total, signal);
  } catch (error) {
    if (signal?.aborted) {
      throw error;
    }
    // For example the connection dropped before the end of the body.
    throw new WorkerError('download_failed', `Download of ${url} failed: ${error.message}`, {
      url,
      detail: error.message,
    });
  }
  checkGgufMagic(bytes, name);
  signal?.throwIfAborted();
  return { bytes, cached: false, cache, absoluteUrl };
}

/**
 * Stores a downloaded model in the Cache API. Returns null, or the error
 * message when storing failed; the model stays loaded this time.
 */
async function storeModel(fetched, url) {
  if (fetched.cache === null) {
    return null;
  }
  try {
    const headers = {
      'content-type': 'application/octet-stream',
      'content-length': String(fetched.bytes.length),
    };
    await fetched.cache.put(fetched.absoluteUrl, new Response(fetched.bytes, { headers }));
    return null;
  } catch (error) {
    // Usually a QuotaExceededError.
    console.warn(`prunechat worker: caching ${url} failed:`, error);
    return error.message;
  }
}

function checkGgufMagic(bytes, name) {
  const isGguf = bytes.length >= 4 && GGUF_MAGIC.every((value, i) => bytes[i] === value);
  if (!isGguf) {
    throw new WorkerError(
      'not_gguf',
      `${name} is not a GGUF file: it does not start with the bytes "GGUF".`,
      { name },
    );
  }
}

function fileNameFromUrl(url) {
  const path = new URL(url, self.location.href).pathname;
  return decodeURIComponent(path.slice(path.lastIndexOf('/') + 1)) || url;
}

// ---------------------------------------------------------------------------
// Commands

/** Returns the `threads` field of a load message: 1 when absent, else an integer from 1 to MAX_THREADS. */
function requestedThreads(message) {
  if (message.threads === undefined || message.threads === null) {
    return 1;
  }
  if (!Number.isInteger(message.threads) || message.threads < 1 || message.threads > MAX_THREADS) {
    throw new WorkerError('bad_message', `threads must be an integer from 1 to ${MAX_THREADS}, got ${message.threads}.`, {
      field: 'threads',
    });
  }
  return message.threads;
}

async function handleLoad(message) {
  const maxContext = Number(message.maxContext) || DEFAULT_MAX_CONTEXT;
  const started = performance.now();
  const threads = requestedThreads(message);

  let fetching;
  let name;
  let source;
  const abort = new AbortController();
  if (typeof message.url === 'string' && message.url !== '') {
    name = fileNameFromUrl(message.url);
    fetching = fetchModel(message.url, abort.signal);
  } else if (message.bytes) {
    name = typeof message.name === 'string' && message.name !== '' ? message.name : 'model.gguf';
    const bytes = message.bytes instanceof Uint8Array ? message.bytes : new Uint8Array(message.bytes);
    fetching = Promise.resolve({ bytes, file: true });
    source = { kind: 'file', url: null, cached: false, cache_error: null };
  } else {
    throw new WorkerError('bad_message', 'A load message needs a `url` or `bytes`.');
  }
  // The model is read from the network or the Cache API while the wasm module compiles.
  const compiling = ensureWasm(threads);
  let fetched;
  try {
    [, fetched] = await Promise.all([compiling, fetching]);
  } catch (error) {
    // Stop the download and wait for both to settle, so that no `progress`
    // follows the error and the next load does not start a second module.
    abort.abort();
    await Promise.allSettled([compiling, fetching]);
    throw error;
  }
  const bytes = fetched.bytes;
  const fetchedAt = performance.now();

  checkGgufMagic(bytes, name);
  post({ type: 'progress', phase: 'load', loaded: 0, total: bytes.length });

  // Construct the new engine before freeing the old one, so that a file the
  // engine rejects leaves the current model in place.
  const parseStarted = performance.now();
  let newEngine;
  try {
    newEngine = new bindings.ChatEngine(bytes, maxContext);
  } catch (error) {
    if (fetched.cached) {
      // A cached file that the engine rejects (for example a download that a
      // proxy cut short) would fail every later load. So it is dropped, and
      // the next load downloads the file again.
      await fetched.cache.delete(fetched.absoluteUrl).catch((deleteError) => {
        console.warn(`prunechat worker: dropping the cached ${name} failed:`, deleteError);
      });
    }
    throw error;
  }
  let info;
  try {
    info = JSON.parse(newEngine.info());
  } catch (error) {
    newEngine.free();
    throw error;
  }
  const finished = performance.now();
  if (!fetched.file) {
    // Only a file that the engine accepted is kept.
    const cacheError = fetched.cached ? null : await storeModel(fetched, message.url);
    source = { kind: 'url', url: message.url, cached: fetched.cached, cache_error: cacheError };
  }

  if (engine !== null) {
    engine.free();
  }
  engine = newEngine;

  post({ type: 'progress', phase: 'load', loaded: info.file_bytes ?? 0, total: info.file_bytes ?? 0 });
  post({
    type: 'loaded',
    info,
    name,
    source,
    load_ms: finished - parseStarted,
    fetch_ms: fetchedAt - started,
    total_ms: finished - started,
    wasm_memory_bytes: wasmMemoryBytes(),
    threads: info.threads ?? threadCount,
    threads_requested: threadsRequested,
    threads_fallback: threadFallback,
  });
}

function validateSendMessage(message) {
  if (typeof message.text !== 'string' || message.text.trim() === '') {
    throw new WorkerError('empty_prompt', 'The message is empty; type some text before sending.');
  }
  if (message.threads !== undefined && message.threads !== null
      && (!Number.isInteger(message.threads) || message.threads < 1 || message.threads > MAX_THREADS)) {
    throw new WorkerError('bad_message', `threads must be an integer from 1 to ${MAX_THREADS}, got ${message.threads}.`, {
      field: 'threads',
    });
  }
  if (engine === null) {
    throw new WorkerError('no_model', 'No model is loaded yet; wait for the download or pick a .gguf file.');
  }
}

async function handleSend(message) {
  validateSendMessage(message);
  const system = typeof message.system === 'string' ? message.system : '';
  const sampling = JSON.stringify(message.sampling ?? {});

  // A `threads` below the pool's size limits this reply to fewer threads. The next
  // command uses all of them again.
  const threads = Math.min(message.threads ?? threadCount, threadCount);
  bindings.setThreadLimit(threads);
  stopRequested = false;
  generating = true;
  try {
    await runTurn(message.text, system, sampling, message.return_tokens === true, threads);
  } finally {
    bindings.setThreadLimit(threadCount);
    generating = false;
    stopRequested = false;
  }
}

/**
 * Calls engine.nextToken() and rethrows its errors. After a JS Error it first
 * ends the turn with engine.stop(), so the next `send` starts cleanly. After a
 * wasm trap it leaves the engine alone.
 */
function nextTokenOrStop() {
  try {
    return JSON.parse(engine.nextToken());
  } catch (error) {
    if (!isWasmTrap(error)) {
      try {
        engine.stop();
      } catch (stopError) {
        console.warn('prunechat worker: stop after a failed token failed:', stopError);
      }
    }
    // Reported with context 'generate': unlike a failed startTurn, the turn
    // and its partial reply stay in the engine's history.
    if (error !== null && typeof error === 'object') {
      error.context = 'generate';
    }
    throw error;
  }
}

/**
 * Runs one chat turn: prefill in startTurn, then one nextToken call per token,
 * yielding to the event loop between tokens so that `stop` is seen.
 *
 * Timing: prefill is the startTurn call. Time to first token runs from the
 * start of startTurn to the return of the first nextToken call. Decode speed
 * counts the nextToken calls after the first, over the time spent inside them.
 */
async function runTurn(text, system, sampling, returnTokens, threads) {
  const turnStarted = performance.now();
  const turn = JSON.parse(engine.startTurn(text, system, sampling));
  const prefillEnded = performance.now();
  post({
    type: 'turn-start',
    prompt_tokens: turn.prompt_tokens,
    prefill_tokens: turn.prefill_tokens,
    reused_tokens: turn.reused_tokens,
    dropped_turns: turn.dropped_turns,
  });

  let firstTokenAt = null;
  let decodeMs = 0;
  let decodeCalls = 0;
  let nGenerated = 0;
  let reason = null;
  // Every sampled token id, including a final end-of-turn token.
  const replyTokens = [];

  for (;;) {
    await yieldToEventLoop();
    if (stopRequested) {
      // stop() returns the held-back bytes of an incomplete character, if any.
      const tail = engine.stop();
      if (tail) {
        post({ type: 'token', text: tail });
      }
      reason = 'stopped';
      break;
    }

    const callStarted = performance.now();
    const step = nextTokenOrStop();
    const callEnded = performance.now();
    if (firstTokenAt === null) {
      firstTokenAt = callEnded;
    } else {
      decodeMs += callEnded - callStarted;
      decodeCalls += 1;
    }
    nGenerated = step.n_generated;
    if (Number.isInteger(step.token_id)) {
      replyTokens.push(step.token_id);
    }

    if (step.text !== '') {
      post({ type: 'token', text: step.text });
    }
    if (step.done) {
      reason = step.reason;
      break;
    }
  }

  const prefillMs = prefillEnded - turnStarted;
  post({
    type: 'done',
    reason,
    stats: {
      ttft_ms: firstTokenAt === null ? null : firstTokenAt - turnStarted,
      prefill_ms: prefillMs,
      prefill_tokens: turn.prefill_tokens,
      prefill_tokens_per_s: prefillMs > 0 ? (turn.prefill_tokens / prefillMs) * 1000 : null,
      decode_tokens_per_s: decodeMs > 0 ? (decodeCalls / decodeMs) * 1000 : null,
      n_generated: nGenerated,
      threads,
      total_ms: performance.now() - turnStarted,
      wasm_memory_bytes: wasmMemoryBytes(),
      ...kvCacheStats(),
    },
    ...(returnTokens ? { tokens: { prompt: Array.from(engine.promptTokens()), reply: replyTokens } } : {}),
  });
}

/** Returns {kv_cache_bytes, kv_cache_tokens} from engine.stats(), or {} when it is unavailable. */
function kvCacheStats() {
  if (typeof engine.stats !== 'function') {
    return {};
  }
  const stats = JSON.parse(engine.stats());
  return { kv_cache_bytes: stats.kv_cache_bytes, kv_cache_tokens: stats.kv_cache_tokens };
}

/** Returns `value` as an array of token ids, or throws a `bad_message` error naming `field`. */
function tokenArray(value, field) {
  const valid = Array.isArray(value) && value.every((id) => Number.isInteger(id) && id >= 0 && id <= 0xffffffff);
  if (!valid) {
    throw new WorkerError('bad_message', `${field} must be an array of token ids (integers from 0).`, { field });
  }
  return value;
}

function requireEngine() {
  if (engine === null) {
    throw new WorkerError('no_model', 'No model is loaded yet; wait for the download or pick a .gguf file.');
  }
}

/**
 * Teacher-forces another model's prompt and reply tokens through this model
 * and reports the top-1 agreement (eval::reply_agreement).
 */
function handleScore(message) {
  requireEngine();
  const prompt = tokenArray(message.prompt, 'prompt');
  const reply = tokenArray(message.reply, 'reply');
  const started = performance.now();
  const scores = JSON.parse(engine.scoreReply(Uint32Array.from(prompt), Uint32Array.from(reply)));
  post({
    type: 'scored',
    ...scores,
    score_ms: performance.now() - started,
    wasm_memory_bytes: wasmMemoryBytes(),
  });
}

/**
 * Computes perplexity over `windows` (arrays of token ids), one engine call
 * per window, posting `eval-progress` after each. A `stop` ends it between
 * windows; the result then covers the windows done so far.
 */
async function handleEvaluate(message) {
  requireEngine();
  if (!Array.isArray(message.windows) || message.windows.length === 0) {
    throw new WorkerError('bad_message', 'windows must be a non-empty array of token id arrays.', { field: 'windows' });
  }
  const windows = message.windows.map((window, i) => Uint32Array.from(tokenArray(window, `windows[${i}]`)));

  stopRequested = false;
  evaluating = true;
  const started = performance.now();
  let totals = null;
  try {
    engine.evalReset();
    for (const [i, window] of windows.entries()) {
      await yieldToEventLoop();
      if (stopRequested) {
        break;
      }
      totals = JSON.parse(engine.evalWindow(window));
      post({ type: 'eval-progress', done: i + 1, total: windows.length, perplexity: totals.perplexity });
    }
  } finally {
    evaluating = false;
    stopRequested = false;
  }
  post({
    type: 'evaluated',
    complete: totals !== null && totals.n_windows === windows.length,
    n_windows: totals?.n_windows ?? 0,
    n_predicted: totals?.n_predicted ?? 0,
    mean_nll: totals?.mean_nll ?? null,
    perplexity: totals?.perplexity ?? null,
    eval_ms: performance.now() - started,
    wasm_memory_bytes: wasmMemoryBytes(),
  });
}

// ---------------------------------------------------------------------------
// Jobs: pruning and fine-tuning. The page runs each in a worker of its own and
// terminates that worker to cancel, so a job does not hold up a chat's worker.

/** Returns the bytes and file name of a job's `source`: {url} or {bytes, name}. */
async function jobModel(source) {
  if (typeof source?.url === 'string' && source.url !== '') {
    const { bytes } = await fetchModel(source.url);
    return { bytes, name: fileNameFromUrl(source.url) };
  }
  if (source?.bytes) {
    const bytes = source.bytes instanceof Uint8Array ? source.bytes : new Uint8Array(source.bytes);
    const name = typeof source.name === 'string' && source.name !== '' ? source.name : 'model.gguf';
    checkGgufMagic(bytes, name);
    return { bytes, name };
  }
  throw new WorkerError('bad_message', 'A job needs a `source` with a `url` or `bytes`.', { field: 'source' });
}

/**
 * Returns the corpus files of a job as [{name, text}]. Each entry of `files`
 * has a `name` and either its `text` or a same-origin `url` to fetch.
 */
async function jobFiles(files, field) {
  if (!Array.isArray(files)) {
    throw new WorkerError('bad_message', `${field} must be an array of {name, text} or {name, url}.`, { field });
  }
  const loaded = [];
  for (const file of files) {
    const name = typeof file?.name === 'string' ? file.name : '';
    if (typeof file?.text === 'string') {
      loaded.push({ name: name || 'pasted.txt', text: file.text });
      continue;
    }
    if (typeof file?.url !== 'string') {
      throw new WorkerError('bad_message', `${field} entries need a text or a url.`, { field });
    }
    let response;
    try {
      response = await fetch(new URL(file.url, self.location.href));
    } catch (error) {
      throw new WorkerError('data_download', `Download of ${file.url} failed: ${error.message}`, {
        url: file.url,
        detail: error.message,
      });
    }
    if (!response.ok) {
      throw new WorkerError('data_download', `Download of ${file.url} failed: HTTP ${response.status}`, {
        url: file.url,
        detail: `HTTP ${response.status}`,
      });
    }
    loaded.push({ name: name || fileNameFromUrl(file.url), text: await response.text() });
  }
  return loaded;
}

/** Name of a job's output file: the source name without .gguf, then `suffix`. */
function outputName(sourceName, suffix) {
  return `${sourceName.replace(/\.gguf$/i, '')}-${suffix}.gguf`;
}

/**
 * Prunes a model with `pruneModel` (src/wasm_prune.rs) and returns the GGUF
 * bytes. The call is synchronous: progress messages go out from inside it,
 * and the page cancels by terminating this worker.
 */
async function handlePrune(message) {
  await ensureWasm();
  const started = performance.now();
  const { bytes, name } = await jobModel(message.source);
  const corpus = await jobFiles(message.corpus ?? [], 'corpus');
  const result = bindings.pruneModel(
    bytes,
    JSON.stringify(corpus),
    JSON.stringify(message.settings ?? {}),
    (json) => post({ type: 'job-progress', ...JSON.parse(json) }),
  );
  let output;
  let report;
  try {
    report = JSON.parse(result.report());
    output = result.takeBytes();
  } finally {
    result.free();
  }
  post(
    {
      type: 'pruned',
      name: outputName(name, typeof message.suffix === 'string' ? message.suffix : 'pruned'),
      bytes: output.buffer,
      report,
      job_ms: performance.now() - started,
      wasm_memory_bytes: wasmMemoryBytes(),
    },
    [output.buffer],
  );
}

/**
 * Fine-tunes a model with a FineTuner (src/wasm_train.rs), one optimizer step
 * per call, posting `train-step` after each. A `stop` ends training after the
 * current step and exports what it has.
 */
async function handleFinetune(message) {
  await ensureWasm();
  const started = performance.now();
  const { bytes, name } = await jobModel(message.source);
  const files = await jobFiles(message.data ?? [], 'data');
  const config = message.config ?? {};
  const evalFraction = Number.isFinite(message.evalFraction) ? message.evalFraction : 0.1;
  const tuner = bindings.FineTuner.withFiles(bytes, JSON.stringify(files), JSON.stringify(config), evalFraction, new Uint8Array());

  stopRequested = false;
  training = true;
  let output;
  let complete = false;
  let lastStep = null;
  try {
    const info = JSON.parse(tuner.info());
    post({ type: 'train-start', info, wasm_memory_bytes: wasmMemoryBytes() });
    const firstEval = info.eval_data ? JSON.parse(tuner.evaluate()) : null;
    if (firstEval !== null) {
      post({ type: 'train-eval', ...firstEval });
    }
    while (!tuner.isDone()) {
      await yieldToEventLoop();
      if (stopRequested) {
        break;
      }
      const stepStarted = performance.now();
      lastStep = JSON.parse(tuner.step());
      post({
        type: 'train-step',
        ...lastStep,
        total_steps: info.steps,
        step_ms: performance.now() - stepStarted,
        wasm_memory_bytes: wasmMemoryBytes(),
      });
      if (lastStep.eval) {
        post({ type: 'train-eval', ...lastStep.eval });
      }
    }
    complete = tuner.isDone();

    post({ type: 'job-progress', phase: 'export' });
    output = tuner.export(typeof message.dtype === 'string' ? message.dtype : 'q8_0');
  } finally {
    training = false;
    stopRequested = false;
    try {
      tuner.free();
    } catch (error) {
      // After a trap inside a FineTuner call, free() fails too; the error to report is the first.
      console.warn('prunechat worker: freeing the FineTuner failed:', error);
    }
  }
  post(
    {
      type: 'finetuned',
      name: outputName(name, typeof message.suffix === 'string' ? message.suffix : 'finetuned'),
      bytes: output.buffer,
      complete,
      steps: lastStep?.step ?? 0,
      job_ms: performance.now() - started,
      wasm_memory_bytes: wasmMemoryBytes(),
    },
    [output.buffer],
  );
}

function handleReset() {
  if (engine !== null) {
    engine.reset();
  }
  post({ type: 'reset-done', wasm_memory_bytes: wasmMemoryBytes(), ...(engine === null ? {} : kvCacheStats()) });
}

const handlers = {
  load: handleLoad,
  send: handleSend,
  reset: handleReset,
  score: handleScore,
  evaluate: handleEvaluate,
  prune: handlePrune,
  finetune: handleFinetune,
};

async function runCommand(message) {
  const handler = handlers[message.type];
  try {
    assertEngineUsable();
    await handler(message);
  } catch (error) {
    reportError(error?.context ?? message.type, error);
  }
}

self.onmessage = (event) => {
  const message = event.data;
  const type = message?.type;

  if (type === 'stop') {
    // Takes effect before the next token or evaluation window; a stop with
    // nothing in progress does nothing.
    stopRequested = generating || evaluating || training;
    return;
  }
  if (!Object.hasOwn(handlers, type)) {
    reportError('protocol', new WorkerError('bad_message', `Unknown message type: ${String(type)}`));
    return;
  }
  if ((type === 'load' || type === 'reset') && (generating || evaluating)) {
    stopRequested = true;
  }
  commandQueue = commandQueue.then(() => runCommand(message));
};

self.addEventListener('unhandledrejection', (event) => {
  event.preventDefault();
  reportError('internal', event.reason);
});
