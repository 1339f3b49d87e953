// Page controller: starts the worker, loads the default model, and connects
// the chat view, settings and stats panel to the worker protocol
// (docs/worker-protocol.md).

import { ChatView } from './chat.js';
import { CompareView } from './compare.js';
import { LabView } from './lab.js';
import { formatMs, formatParams, formatRate, renderThreads } from './format.js';
import { applyTranslations, ERROR_CODES, formatBytes, formatNumber, getLanguage, setLanguage, setText } from './i18n.js';
import { requestedThreads, SettingError, SettingsForm } from './settings.js';

export const DEFAULT_MODEL_URL = 'models/smollm2-135m-instruct-q8_0.gguf';

const $ = (id) => document.getElementById(id);

const elements = {
  status: $('model-status'),
  newChat: $('new-chat'),
  errorArea: $('error-area'),
  errorText: $('error-text'),
  errorReload: $('error-reload'),
  errorDismiss: $('error-dismiss'),
  composer: $('composer'),
  prompt: $('prompt'),
  send: $('send'),
  stop: $('stop'),
  modelName: $('model-name'),
  progress: $('progress'),
  progressText: $('progress-text'),
  fileInput: $('file-input'),
  samplingReset: $('sampling-reset'),
  facts: {
    size: $('fact-size'),
    params: $('fact-params'),
    sparsity: $('fact-sparsity'),
    layers: $('fact-layers'),
    context: $('fact-context'),
    quant: $('fact-quant'),
    template: $('fact-template'),
    threads: $('fact-threads'),
  },
  stats: {
    ttft: $('stat-ttft'),
    prefill: $('stat-prefill'),
    decode: $('stat-decode'),
    generated: $('stat-generated'),
    prompt: $('stat-prompt'),
    load: $('stat-load'),
    kvCache: $('stat-kv-cache'),
    memory: $('stat-memory'),
  },
};

const chat = new ChatView($('messages'), $('message-scroller'), $('empty-state'));
const settings = new SettingsForm(document);
// Threads of the chat worker and of each compare column's worker, fixed when
// each worker loads its first model.
const threads = requestedThreads();
const compare = new CompareView(settings, threads);
const lab = new LabView(compare, (view) => showView(view));
const VIEWS = ['chat', 'compare', 'lab'];

const state = {
  modelInfo: null, // engine.info() of the loaded model
  sourceNote: null, // {key, params}: where the loaded model came from
  loading: null, // {name, phase} while a load is in progress
  generating: false,
  stopping: false,
  broken: false,
};

let worker = null;
// The chat model loads when the chat view is first shown, so that a page
// opened on the compare view does not load a model it does not use.
let chatModelRequested = false;

// ---------------------------------------------------------------------------
// Rendering

function renderControls() {
  const canSend = state.modelInfo !== null && state.loading === null && !state.generating && !state.broken;
  elements.send.disabled = !canSend;
  elements.stop.disabled = !state.generating || state.stopping;
  elements.fileInput.disabled = state.broken;

  let status;
  if (state.broken) {
    status = 'broken';
  } else if (state.loading !== null) {
    status = state.loading.phase === 'download' ? 'downloading' : 'loading';
  } else if (state.generating) {
    status = 'generating';
  } else if (state.modelInfo !== null) {
    status = 'ready';
  } else {
    status = 'no_model';
  }
  elements.status.dataset.state = status;
  setText(elements.status, `status.${status}`);
  document.body.dataset.busy = String(state.generating || state.loading !== null);
}

/**
 * Shows the error area. `key` and `params` select the translated sentence;
 * `fatal` adds the reload button.
 */
function showError(key, params = {}, { keepModelNote = false, fatal = false } = {}) {
  const main = document.createElement('span');
  setText(main, key, params);
  const parts = [main];
  if (keepModelNote) {
    const note = document.createElement('span');
    note.className = 'error-note';
    setText(note, 'error.keep_current_model');
    parts.push(' ', note);
  }
  elements.errorText.replaceChildren(...parts);
  elements.errorText.dataset.key = key;
  elements.errorReload.hidden = !fatal;
  elements.errorDismiss.hidden = fatal;
  elements.errorArea.hidden = false;
}

function hideError() {
  elements.errorArea.hidden = true;
  elements.errorText.replaceChildren();
  delete elements.errorText.dataset.key;
}

function formatTensorTypes(types) {
  return Object.entries(types ?? {})
    .sort((a, b) => b[1] - a[1])
    .map(([type, count]) => `${type} × ${count}`)
    .join(', ');
}

function renderModelFacts(info, name) {
  elements.modelName.textContent = info.name || name;
  delete elements.modelName.dataset.i18n;
  elements.modelName.title = name;
  elements.facts.size.textContent = formatBytes(info.file_bytes);
  elements.facts.params.textContent = formatParams(info.n_params);
  elements.facts.sparsity.textContent = Number.isFinite(info.decoder_sparsity)
    ? `${formatNumber(info.decoder_sparsity * 100, 1)} %`
    : '—';
  elements.facts.layers.textContent = String(info.n_layers);
  elements.facts.context.textContent = `${formatNumber(info.max_context)} / ${formatNumber(info.context_length)}`;
  elements.facts.quant.textContent = formatTensorTypes(info.tensor_types) || '—';
  if (info.chat_template === 'gguf' || info.chat_template === 'chatml-fallback') {
    setText(elements.facts.template, `model.template.${info.chat_template}`);
  } else {
    elements.facts.template.textContent = String(info.chat_template ?? '—');
  }
}

/** Shows where the loaded model came from, in place of the progress text. */
function renderSourceNote() {
  elements.progress.hidden = true;
  if (state.sourceNote === null) {
    elements.progressText.textContent = '';
    delete elements.progressText.dataset.i18n;
  } else {
    setText(elements.progressText, state.sourceNote.key, state.sourceNote.params);
  }
}

function renderMemory(bytes) {
  if (Number.isFinite(bytes) && bytes > 0) {
    elements.stats.memory.textContent = formatBytes(bytes);
  }
}

/** Shows the KV cache size from a `done` stats object or a `reset-done` message. */
function renderKvCache({ kv_cache_bytes: bytes, kv_cache_tokens: tokens }) {
  if (Number.isFinite(bytes) && Number.isFinite(tokens)) {
    setText(elements.stats.kvCache, 'stats.kv_cache_value', { size: formatBytes(bytes), tokens: formatNumber(tokens) });
  }
}

function renderProgress(message) {
  const { progress, progressText } = elements;
  progress.hidden = false;
  if (message.phase === 'download') {
    const name = state.loading?.name ?? '';
    if (message.total) {
      progress.max = message.total;
      progress.value = message.loaded;
      setText(progressText, 'progress.download', {
        name,
        loaded: formatBytes(message.loaded),
        total: formatBytes(message.total),
      });
    } else {
      progress.removeAttribute('value');
      setText(progressText, 'progress.download_unknown', { name, loaded: formatBytes(message.loaded) });
    }
  } else {
    // The engine parses the file in one synchronous call, so this phase has
    // no intermediate progress: show an indeterminate bar.
    progress.removeAttribute('value');
    setText(progressText, 'progress.load');
  }
}

// ---------------------------------------------------------------------------
// Worker messages

function onLoaded(message) {
  const hadConversation = state.modelInfo !== null;
  state.modelInfo = message.info;
  state.loading = null;

  const source = message.source ?? {};
  if (source.kind === 'file') {
    state.sourceNote = { key: 'model.source.file', params: {} };
  } else if (source.cached) {
    state.sourceNote = { key: 'model.source.cache', params: {} };
  } else if (source.cache_error) {
    state.sourceNote = { key: 'model.source.network_uncached', params: { detail: source.cache_error } };
  } else {
    state.sourceNote = { key: 'model.source.network', params: {} };
  }
  renderSourceNote();

  renderModelFacts(message.info, message.name);
  renderThreads(elements.facts.threads, message);
  elements.stats.load.textContent = formatMs(message.total_ms);
  elements.stats.load.title = `engine ${formatMs(message.load_ms)}, file ${formatMs(message.fetch_ms)}`;
  renderMemory(message.wasm_memory_bytes);
  // The new engine starts with an empty history, so the old messages are no
  // longer part of the model's context.
  if (hadConversation) {
    chat.clear();
  }
  hideError();
  elements.prompt.focus();
}

function onTurnStart(message) {
  chat.ensureReply();
  setText(elements.stats.prompt, 'stats.prompt_value', {
    prompt: formatNumber(message.prompt_tokens),
    reused: formatNumber(message.reused_tokens),
  });
  if (message.dropped_turns > 0) {
    chat.markDroppedTurns(message.dropped_turns);
    chat.addNotice('dropped', 'chat.dropped_turns', {
      count: message.dropped_turns,
      context: formatNumber(state.modelInfo?.max_context ?? 0),
    });
  }
}

function onDone(message) {
  const stats = message.stats ?? {};
  chat.finishReply(message.reason, stats);
  state.generating = false;
  state.stopping = false;

  elements.stats.ttft.textContent = formatMs(stats.ttft_ms);
  formatRate(elements.stats.prefill, stats.prefill_tokens_per_s);
  formatRate(elements.stats.decode, stats.decode_tokens_per_s);
  elements.stats.generated.textContent = Number.isFinite(stats.n_generated) ? formatNumber(stats.n_generated) : '—';
  renderMemory(stats.wasm_memory_bytes);
  renderKvCache(stats);
  renderControls();
  elements.prompt.focus();
}

function onWorkerError(message) {
  console.warn(`prunechat: worker reported an error (${message.context}):`, message.message);
  const fatal = Boolean(message.fatal);
  if (fatal) {
    state.broken = true;
  }

  if (message.context === 'load') {
    state.loading = null;
    renderSourceNote();
  }
  if (['send', 'generate', 'internal'].includes(message.context) || fatal) {
    const failedBeforeText = chat.finishReply(null, null);
    // The engine keeps no trace of a turn that failed in startTurn (for
    // example a prompt too long for the context), so give the text back for
    // editing.
    if (failedBeforeText && message.context === 'send') {
      const text = chat.removeLastUserMessage();
      if (text !== null && elements.prompt.value === '') {
        elements.prompt.value = text;
      }
    }
    state.generating = false;
    state.stopping = false;
  }

  const params = { ...(message.params ?? {}), detail: message.message };
  let key;
  if (ERROR_CODES.has(message.code)) {
    key = `error.${message.code}`;
  } else if (['load', 'send', 'generate', 'reset'].includes(message.context)) {
    key = `error.context.${message.context}`;
  } else {
    key = 'error.context.other';
  }
  const keepModelNote = message.context === 'load' && state.modelInfo !== null && !fatal;
  showError(key, params, { keepModelNote, fatal });
  renderControls();
}

/**
 * Applies one worker→page message to the page. The worker's onmessage calls
 * this, and tests call it directly to drive the rendering path.
 */
export function handleWorkerMessage(message) {
  switch (message?.type) {
    case 'progress':
      if (state.loading !== null) {
        state.loading.phase = message.phase;
      }
      renderProgress(message);
      renderControls();
      break;
    case 'loaded':
      onLoaded(message);
      renderControls();
      break;
    case 'turn-start':
      onTurnStart(message);
      break;
    case 'token':
      chat.appendToken(message.text);
      break;
    case 'done':
      onDone(message);
      break;
    case 'reset-done':
      renderMemory(message.wasm_memory_bytes);
      renderKvCache(message);
      break;
    case 'error':
      onWorkerError(message);
      break;
    default:
      console.warn('prunechat: ignoring a worker message with an unknown type:', message);
  }
}

// ---------------------------------------------------------------------------
// Commands

function startWorker() {
  worker = new Worker(new URL('./worker.js', import.meta.url), { type: 'module' });
  worker.onmessage = (event) => handleWorkerMessage(event.data);
  worker.onerror = (event) => {
    // A script error that the worker did not catch, for example a syntax
    // error in worker.js; the worker is not usable afterwards.
    event.preventDefault();
    state.broken = true;
    state.loading = null;
    state.generating = false;
    showError('error.worker_failed', { detail: event.message || 'unknown error' }, { fatal: true });
    renderControls();
  };
  worker.onmessageerror = () => {
    showError('error.worker_failed', { detail: 'a message could not be deserialized' });
  };
}

function readMaxContext() {
  try {
    return settings.readMaxContext();
  } catch (error) {
    if (!(error instanceof SettingError)) {
      throw error;
    }
    showError('error.invalid_setting', error.params);
    error.input.focus();
    return null;
  }
}

function loadModelFromUrl(url) {
  const maxContext = readMaxContext();
  if (maxContext === null) {
    return;
  }
  // The worker resolves relative URLs against its own script URL (www/), so
  // send an absolute URL resolved against the page.
  const absoluteUrl = new URL(url, location.href);
  const name = decodeURIComponent(absoluteUrl.pathname.split('/').pop() || url);
  state.loading = { name, phase: 'download' };
  renderProgress({ phase: 'download', loaded: 0, total: 0 });
  renderControls();
  worker.postMessage({ type: 'load', url: absoluteUrl.href, maxContext, threads });
}

async function loadModelFromFile(file) {
  const maxContext = readMaxContext();
  if (maxContext === null) {
    return;
  }
  state.loading = { name: file.name, phase: 'load' };
  renderProgress({ phase: 'load' });
  renderControls();

  let buffer;
  try {
    buffer = await file.arrayBuffer();
  } catch (error) {
    console.warn(`prunechat: reading ${file.name} failed:`, error);
    state.loading = null;
    renderSourceNote();
    showError('error.file_read', { name: file.name, detail: error.message }, { keepModelNote: state.modelInfo !== null });
    renderControls();
    return;
  }
  worker.postMessage({ type: 'load', bytes: buffer, name: file.name, maxContext, threads }, [buffer]);
}

function sendPrompt() {
  const text = elements.prompt.value.trim();
  if (text === '') {
    showError('error.empty_prompt');
    elements.prompt.focus();
    return;
  }
  if (state.generating) {
    showError('error.busy');
    return;
  }
  if (state.loading !== null) {
    showError('error.loading');
    return;
  }
  if (state.modelInfo === null || state.broken) {
    showError(state.broken ? 'error.engine_broken' : 'error.no_model', {}, { fatal: state.broken });
    return;
  }

  let sampling;
  try {
    sampling = settings.readSampling();
  } catch (error) {
    if (!(error instanceof SettingError)) {
      throw error;
    }
    showError('error.invalid_setting', error.params);
    error.input.focus();
    return;
  }

  hideError();
  settings.save();
  chat.addUserMessage(text);
  chat.startReply();
  elements.prompt.value = '';
  state.generating = true;
  renderControls();
  worker.postMessage({ type: 'send', text, system: settings.readSystemPrompt(), sampling });
}

function stopReply() {
  if (!state.generating) {
    return;
  }
  state.stopping = true;
  renderControls();
  worker.postMessage({ type: 'stop' });
}

/** Shows dashes for the figures of the last reply, which a new chat no longer has. */
function clearTurnStats() {
  for (const element of [elements.stats.ttft, elements.stats.generated, elements.stats.prompt]) {
    delete element.dataset.i18n;
    element.textContent = '—';
  }
  formatRate(elements.stats.prefill, NaN);
  formatRate(elements.stats.decode, NaN);
}

function newChat() {
  chat.clear();
  clearTurnStats();
  hideErrorUnlessFatal();
  worker.postMessage({ type: 'reset' });
  elements.prompt.focus();
}

function hideErrorUnlessFatal() {
  if (!state.broken) {
    hideError();
  }
}

// ---------------------------------------------------------------------------
// Event wiring

function wireEvents() {
  elements.composer.addEventListener('submit', (event) => {
    event.preventDefault();
    sendPrompt();
  });
  elements.prompt.addEventListener('keydown', (event) => {
    // isComposing: Enter that confirms an IME candidate (for example pinyin
    // input) must not send the message.
    if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      sendPrompt();
    }
  });
  elements.stop.addEventListener('click', stopReply);
  elements.newChat.addEventListener('click', newChat);
  elements.errorDismiss.addEventListener('click', hideError);
  elements.errorReload.addEventListener('click', () => location.reload());

  elements.fileInput.addEventListener('change', () => {
    const file = elements.fileInput.files?.[0];
    // Clear the input so that picking the same file again fires `change`.
    elements.fileInput.value = '';
    if (file) {
      loadModelFromFile(file);
    }
  });

  for (const input of document.querySelectorAll('.sampling-grid input, #system-prompt, #max-context')) {
    input.addEventListener('change', () => settings.save());
  }
  elements.samplingReset.addEventListener('click', () => settings.resetSampling());

  for (const button of document.querySelectorAll('.lang-option')) {
    button.addEventListener('click', () => {
      setLanguage(button.dataset.lang);
      renderLanguageSwitch();
    });
  }
}

function renderLanguageSwitch() {
  for (const button of document.querySelectorAll('.lang-option')) {
    button.setAttribute('aria-pressed', String(button.dataset.lang === getLanguage()));
  }
}

/** Shows the chat, compare or prune and fine-tune view and marks its tab as selected. */
function showView(view) {
  document.body.dataset.view = view;
  $('chat-panel').hidden = view !== 'chat';
  $('compare-panel').hidden = view !== 'compare';
  $('lab-panel').hidden = view !== 'lab';
  for (const tab of document.querySelectorAll('.view-tab')) {
    tab.setAttribute('aria-selected', String(tab.dataset.view === view));
  }
  if (view === 'compare') {
    compare.activate();
  } else if (view === 'lab') {
    lab.activate();
  } else if (!chatModelRequested) {
    chatModelRequested = true;
    loadModelFromUrl(modelUrlFromQuery());
  }
}

/** Returns the view named by the `view` query parameter, or 'chat'. */
function viewFromQuery() {
  const requested = new URLSearchParams(location.search).get('view');
  return VIEWS.includes(requested) ? requested : 'chat';
}

/** Returns the model URL from the `model` query parameter, or the default. */
function modelUrlFromQuery() {
  const requested = new URLSearchParams(location.search).get('model');
  if (requested === null || requested === '') {
    return DEFAULT_MODEL_URL;
  }
  return requested;
}

function main() {
  applyTranslations();
  renderLanguageSwitch();
  settings.restore();
  wireEvents();
  renderControls();
  startWorker();
  for (const tab of document.querySelectorAll('.view-tab')) {
    tab.addEventListener('click', () => showView(tab.dataset.view));
  }
  showView(viewFromQuery());
}

main();
