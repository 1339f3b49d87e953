// One column of the compare view: one model in its own worker (www/worker.js,
// protocol in docs/worker-protocol.md), its streamed reply, figures and
// perplexity. CompareView (compare.js) owns the columns and runs the rounds.

import { formatMs, formatParams, formatRate, renderThreads } from './format.js';
import { ERROR_CODES, formatBytes, formatNumber, setText, t } from './i18n.js';

// Figures shown under each reply: row key, label key and optional help key.
const FIGURES = [
  ['size', 'model.size'],
  ['params', 'model.params'],
  ['sparsity', 'compare.sparsity', 'compare.sparsity_help'],
  ['ttft', 'stats.ttft'],
  ['prefill', 'stats.prefill'],
  ['decode', 'stats.decode'],
  ['memory', 'stats.memory'],
  ['threads', 'model.threads', 'model.threads_help'],
  ['agreement', 'compare.agreement', 'compare.agreement_help'],
  ['perplexity', 'compare.perplexity', 'compare.perplexity_help'],
];

let nextColumnId = 1;

/**
 * Returns the weights of the decoder layers' seven projection matrices, from
 * the per-layer sizes in engine.info().
 */
export function decoderWeights(info) {
  const hidden = info.hidden_size;
  const headDim = info.head_dim;
  let total = 0;
  for (let l = 0; l < info.n_layers; l += 1) {
    const query = info.n_heads[l] * headDim;
    const keyValue = info.n_kv_heads[l] * headDim;
    // attn_q and attn_output, attn_k and attn_v, then ffn_gate, ffn_up and ffn_down.
    total += 2 * hidden * query + 2 * hidden * keyValue + 3 * hidden * info.ffn_dim[l];
  }
  return total;
}

function element(tag, className, attributes = {}) {
  const node = document.createElement(tag);
  if (className) {
    node.className = className;
  }
  for (const [key, value] of Object.entries(attributes)) {
    node.setAttribute(key, value);
  }
  return node;
}

export class CompareColumn {
  /**
   * @param {object} options
   * @param {string} options.label      name shown in the header
   * @param {string|null} options.url   model URL relative to the page, or null for a file
   * @param {File|null} options.file    a local file, or null for a URL
   * @param {object|null} options.entry the manifest entry, when the model comes from it
   * @param {number} options.maxContext context length for the engine
   * @param {number} options.threads    threads that the worker requests on its first load
   * @param {object} options.listener   CompareView callbacks: onChange(column), onReplyFinished(column), onRemove(column)
   */
  constructor({ label, url = null, file = null, entry = null, maxContext, threads = 1, listener }) {
    this.id = nextColumnId;
    nextColumnId += 1;
    this.label = label;
    this.url = url;
    this.file = file;
    this.entry = entry;
    this.maxContext = maxContext;
    this.threads = threads;
    this.listener = listener;

    // 'loading', 'ready', 'generating', 'scoring', 'evaluating', 'failed'
    // (no model loaded) or 'broken' (the worker or engine stopped).
    this.state = 'loading';
    this.info = null;
    this.lastStats = null;
    this.lastTokens = null; // {prompt, reply} of the last reply, when requested
    this.agreement = null;
    this.perplexity = null;
    this.sparsity = null;
    this.replyText = null;

    this.build();
    this.startWorker();
  }

  // -------------------------------------------------------------------------
  // DOM

  build() {
    const root = element('article', 'compare-column', { 'data-testid': 'compare-column' });
    root.dataset.columnId = String(this.id);
    root.dataset.state = this.state;

    const header = element('header', 'column-header');
    const title = element('h3', 'column-title', { 'data-testid': 'column-title' });
    title.textContent = this.label;
    title.title = this.url ?? this.file?.name ?? '';
    this.badge = element('span', 'column-badge', { 'data-testid': 'column-badge' });
    setText(this.badge, 'compare.reference');
    this.badge.hidden = true;
    const remove = element('button', 'button button-ghost small column-remove', { type: 'button', 'data-testid': 'column-remove', 'data-i18n-aria-label': 'compare.remove' });
    remove.textContent = '×';
    remove.setAttribute('aria-label', t('compare.remove'));
    remove.addEventListener('click', () => this.listener.onRemove(this));
    header.append(title, this.badge, remove);

    this.status = element('p', 'column-status muted small', { 'data-testid': 'column-status', role: 'status' });
    this.progress = element('progress', 'progress', { max: '1', 'data-testid': 'column-progress' });
    this.error = element('p', 'column-error', { 'data-testid': 'column-error', role: 'alert' });
    this.error.hidden = true;
    this.reloadButton = element('button', 'button button-secondary small', { type: 'button', 'data-testid': 'column-reload' });
    setText(this.reloadButton, 'compare.reload');
    this.reloadButton.hidden = true;
    this.reloadButton.addEventListener('click', () => this.reload());

    this.reply = element('div', 'column-reply', { 'data-testid': 'column-reply', 'aria-live': 'polite' });
    this.replyNote = element('p', 'column-note muted small', { 'data-testid': 'column-note' });

    const facts = element('dl', 'facts column-facts');
    this.figures = {};
    for (const [key, labelKey, helpKey] of FIGURES) {
      const row = element('div');
      const term = element('dt');
      setText(term, labelKey);
      if (helpKey) {
        term.dataset.i18nTitle = helpKey;
        term.title = t(helpKey);
      }
      const value = element('dd', '', { 'data-testid': `column-${key}` });
      value.textContent = '—';
      row.append(term, value);
      facts.append(row);
      this.figures[key] = value;
    }

    const evaluate = element('div', 'column-evaluate');
    this.evaluateButton = element('button', 'button button-secondary small', { type: 'button', 'data-testid': 'column-evaluate' });
    setText(this.evaluateButton, 'compare.evaluate');
    this.evaluateButton.addEventListener('click', () => this.listener.onEvaluate(this));
    this.evalProgress = element('progress', 'progress', { max: '1', 'data-testid': 'column-eval-progress' });
    this.evalProgress.hidden = true;
    this.evalText = element('p', 'muted small', { 'data-testid': 'column-eval-text' });
    evaluate.append(this.evaluateButton, this.evalProgress, this.evalText);

    root.append(header, this.status, this.progress, this.error, this.reloadButton, this.reply, this.replyNote, facts, evaluate);
    this.root = root;
    this.renderState();
  }

  renderState() {
    this.root.dataset.state = this.state;
    const busy = ['loading', 'generating', 'scoring', 'evaluating'].includes(this.state);
    this.root.setAttribute('aria-busy', String(busy));
    this.evaluateButton.disabled = this.state !== 'ready';
    this.reloadButton.hidden = this.state !== 'broken';
    if (this.state !== 'loading') {
      this.progress.hidden = true;
    }
    const statusKey = {
      loading: null,
      ready: 'status.ready',
      generating: 'status.generating',
      scoring: 'compare.status.scoring',
      evaluating: 'compare.status.evaluating',
      failed: 'compare.status.failed',
      broken: 'status.broken',
    }[this.state];
    if (statusKey) {
      setText(this.status, statusKey);
    }
    this.listener.onChange(this);
  }

  setReference(isReference) {
    this.badge.hidden = !isReference;
    this.root.classList.toggle('column-reference', isReference);
  }

  showError(key, params = {}) {
    setText(this.error, key, params);
    this.error.dataset.key = key;
    this.error.hidden = false;
  }

  hideError() {
    this.error.hidden = true;
    this.error.replaceChildren();
    delete this.error.dataset.key;
  }

  /** Shows the sparsity relative to the reference model's decoder weights. */
  renderSparsity(reference) {
    if (this.info === null || reference?.info == null) {
      this.sparsity = null;
      this.figures.sparsity.textContent = '—';
      return;
    }
    // Zero or removed weights of the decoder layers, relative to the
    // reference model's decoder layers. decoder_sparsity is null for types
    // whose zeros cannot be counted from the stored bytes; those count as 0.
    const nonzero = decoderWeights(this.info) * (1 - (this.info.decoder_sparsity ?? 0));
    const referenceWeights = decoderWeights(reference.info);
    this.sparsity = Math.max(0, 1 - nonzero / referenceWeights);
    this.figures.sparsity.textContent = `${formatNumber(this.sparsity * 100, 1)} %`;
    this.figures.sparsity.dataset.value = String(this.sparsity * 100);
  }

  // -------------------------------------------------------------------------
  // Worker

  startWorker() {
    this.worker = new Worker(new URL('./worker.js', import.meta.url), { type: 'module' });
    this.worker.onmessage = (event) => this.onMessage(event.data);
    this.worker.onerror = (event) => {
      // A script error the worker did not catch; the worker is unusable.
      event.preventDefault();
      this.showError('compare.error.crashed', { detail: event.message || 'unknown error' });
      this.setState('broken');
      this.listener.onReplyFinished(this);
    };
    this.load();
  }

  async load() {
    setText(this.status, 'progress.load');
    if (this.url !== null) {
      const absoluteUrl = new URL(this.url, location.href).href;
      this.worker.postMessage({ type: 'load', url: absoluteUrl, maxContext: this.maxContext, threads: this.threads });
      return;
    }
    let buffer;
    try {
      buffer = await this.file.arrayBuffer();
    } catch (error) {
      console.warn(`prunechat compare: reading ${this.file.name} failed:`, error);
      this.showError('error.file_read', { name: this.file.name, detail: error.message });
      this.setState('failed');
      return;
    }
    this.worker.postMessage(
      { type: 'load', bytes: buffer, name: this.file.name, maxContext: this.maxContext, threads: this.threads },
      [buffer],
    );
  }

  /**
   * Starts a new worker for this column after its worker or engine stopped,
   * and loads the model again (a URL from the browser cache, a file from the
   * File kept in memory). The other columns are not touched.
   */
  reload() {
    this.worker?.terminate();
    this.hideError();
    this.info = null;
    this.progress.hidden = false;
    this.setState('loading');
    this.startWorker();
  }

  setState(state) {
    this.state = state;
    this.renderState();
  }

  terminate() {
    this.worker.terminate();
    this.root.remove();
  }

  onMessage(message) {
    switch (message?.type) {
      case 'progress':
        this.onProgress(message);
        break;
      case 'loaded':
        this.onLoaded(message);
        break;
      case 'turn-start':
        break;
      case 'token':
        this.appendText(message.text);
        break;
      case 'done':
        this.onDone(message);
        break;
      case 'reset-done':
        break;
      case 'scored':
        this.onScored(message);
        break;
      case 'eval-progress':
        this.onEvalProgress(message);
        break;
      case 'evaluated':
        this.onEvaluated(message);
        break;
      case 'error':
        this.onWorkerError(message);
        break;
      default:
        console.warn('prunechat compare: ignoring a worker message with an unknown type:', message);
    }
  }

  onProgress(message) {
    if (message.phase === 'download' && message.total) {
      this.progress.max = message.total;
      this.progress.value = message.loaded;
      setText(this.status, 'progress.download', {
        name: this.label,
        loaded: formatBytes(message.loaded),
        total: formatBytes(message.total),
      });
    } else {
      this.progress.removeAttribute('value');
      setText(this.status, 'progress.load');
    }
  }

  onLoaded(message) {
    this.info = message.info;
    this.figures.size.textContent = formatBytes(message.info.file_bytes);
    this.figures.size.dataset.value = String(message.info.file_bytes);
    this.figures.params.textContent = formatParams(message.info.n_params);
    this.figures.params.dataset.value = String(message.info.n_params);
    this.renderMemory(message.wasm_memory_bytes);
    this.loadedMessage = message;
    renderThreads(this.figures.threads, message);
    this.hideError();
    this.setState('ready');
  }

  renderMemory(bytes) {
    if (Number.isFinite(bytes) && bytes > 0) {
      this.figures.memory.textContent = formatBytes(bytes);
      this.figures.memory.dataset.value = String(bytes);
    }
  }

  // -------------------------------------------------------------------------
  // Rounds: reply, agreement, evaluation

  /** Clears the last reply and its figures before a new prompt. */
  clearReply() {
    this.replyText = null;
    this.lastStats = null;
    this.lastTokens = null;
    this.agreement = null;
    this.reply.replaceChildren();
    this.replyNote.replaceChildren();
    delete this.replyNote.dataset.i18n;
    for (const key of ['ttft', 'agreement']) {
      this.figures[key].textContent = '—';
      delete this.figures[key].dataset.value;
      delete this.figures[key].dataset.i18n;
    }
    formatRate(this.figures.prefill, NaN);
    formatRate(this.figures.decode, NaN);
    delete this.figures.decode.dataset.value;
    if (this.state !== 'broken' && this.state !== 'failed') {
      this.hideError();
    }
  }

  /** Sends one prompt; the reply starts from an empty history. */
  /** Sends a prompt; `threads`, when given, is the most threads the reply may use. */
  send(text, system, sampling, returnTokens, threads = null) {
    const placeholder = element('span', 'message-placeholder');
    setText(placeholder, 'chat.thinking');
    this.reply.replaceChildren(placeholder);
    this.setState('generating');
    this.worker.postMessage({ type: 'reset' });
    const message = { type: 'send', text, system, sampling, return_tokens: returnTokens };
    if (threads !== null) {
      message.threads = threads;
    }
    this.worker.postMessage(message);
  }

  stop() {
    if (this.state === 'generating' || this.state === 'evaluating') {
      this.worker.postMessage({ type: 'stop' });
    }
  }

  appendText(text) {
    if (this.replyText === null) {
      this.replyText = document.createTextNode('');
      this.reply.replaceChildren(this.replyText);
    }
    this.replyText.appendData(text);
  }

  onDone(message) {
    const stats = message.stats ?? {};
    this.lastStats = stats;
    this.lastTokens = message.tokens ?? null;
    if (this.replyText === null) {
      this.reply.replaceChildren();
    }
    this.figures.ttft.textContent = formatMs(stats.ttft_ms);
    formatRate(this.figures.prefill, stats.prefill_tokens_per_s);
    formatRate(this.figures.decode, stats.decode_tokens_per_s);
    if (Number.isFinite(stats.decode_tokens_per_s)) {
      this.figures.decode.dataset.value = String(stats.decode_tokens_per_s);
    }
    this.renderMemory(stats.wasm_memory_bytes);
    this.renderReplyThreads(stats.threads);
    setText(this.replyNote, `compare.reply_meta.${message.reason}`, {
      count: stats.n_generated ?? 0,
      tokens: formatNumber(stats.n_generated ?? 0),
    });
    this.setState('ready');
    this.listener.onReplyFinished(this);
  }

  /** Shows the threads of the last reply where it ran on fewer than the worker has. */
  renderReplyThreads(used) {
    const count = this.loadedMessage?.threads ?? 1;
    if (Number.isInteger(used) && used < count) {
      setText(this.figures.threads, 'compare.threads_shared', { used, count });
      this.figures.threads.dataset.value = String(used);
    } else if (this.loadedMessage) {
      renderThreads(this.figures.threads, this.loadedMessage);
    }
  }

  /** Scores the reference's reply tokens with this model. */
  score(tokens) {
    setText(this.figures.agreement, 'compare.agreement_pending');
    this.setState('scoring');
    this.worker.postMessage({ type: 'score', prompt: tokens.prompt, reply: tokens.reply });
  }

  onScored(message) {
    this.agreement = message.agreement;
    setText(this.figures.agreement, 'compare.agreement_value', {
      percent: formatNumber(message.agreement * 100, 1),
      agree: message.n_agree,
      scored: message.n_scored,
    });
    this.figures.agreement.dataset.value = String(message.agreement * 100);
    this.renderMemory(message.wasm_memory_bytes);
    this.setState('ready');
  }

  /** Shows why the agreement is missing, for example when the reference reply failed. */
  showAgreementUnavailable(key) {
    setText(this.figures.agreement, key);
    delete this.figures.agreement.dataset.value;
  }

  evaluate(windows) {
    this.evalProgress.hidden = false;
    this.evalProgress.max = windows.length;
    this.evalProgress.value = 0;
    setText(this.evalText, 'compare.eval_progress', { done: 0, total: windows.length });
    this.setState('evaluating');
    this.worker.postMessage({ type: 'evaluate', windows });
  }

  onEvalProgress(message) {
    this.evalProgress.max = message.total;
    this.evalProgress.value = message.done;
    setText(this.evalText, 'compare.eval_progress', { done: message.done, total: message.total });
  }

  onEvaluated(message) {
    this.evalProgress.hidden = true;
    if (Number.isFinite(message.perplexity)) {
      this.perplexity = message.perplexity;
      this.figures.perplexity.textContent = formatNumber(message.perplexity, 2);
      this.figures.perplexity.dataset.value = String(message.perplexity);
    }
    const key = message.complete ? 'compare.eval_done' : 'compare.eval_stopped';
    setText(this.evalText, key, {
      windows: message.n_windows,
      tokens: formatNumber(message.n_predicted),
      time: formatMs(message.eval_ms),
    });
    this.renderMemory(message.wasm_memory_bytes);
    this.setState('ready');
  }

  onWorkerError(message) {
    console.warn(`prunechat compare: ${this.label} reported an error (${message.context}):`, message.message);
    const params = { ...(message.params ?? {}), detail: message.message };
    let key;
    if (message.code === 'wasm_trap' || message.code === 'engine_broken') {
      key = 'compare.error.crashed';
    } else if (ERROR_CODES.has(message.code)) {
      key = `error.${message.code}`;
    } else if (['load', 'send', 'generate', 'score', 'evaluate'].includes(message.context)) {
      key = `compare.error.${message.context}`;
    } else {
      key = 'error.context.other';
    }
    this.showError(key, params);

    const previous = this.state;
    if (message.fatal) {
      this.setState('broken');
    } else if (this.info === null) {
      this.setState('failed');
    } else {
      this.setState('ready');
    }
    if (['send', 'generate'].includes(message.context) || (previous === 'generating' && message.fatal)) {
      if (this.replyText === null) {
        this.reply.replaceChildren();
      }
      this.listener.onReplyFinished(this);
    }
    if (message.context === 'score') {
      this.showAgreementUnavailable('compare.agreement_failed');
    }
    if (message.context === 'evaluate') {
      this.evalProgress.hidden = true;
      this.evalText.replaceChildren();
      delete this.evalText.dataset.i18n;
    }
  }

  /** Decode speed of the last reply in tokens/s, or NaN. */
  decodeRate() {
    return this.lastStats?.decode_tokens_per_s ?? NaN;
  }
}
