// Prune and fine-tune view. Each job runs in a worker of its own (www/worker.js,
// messages `prune` and `finetune`, docs/worker-protocol.md) that is terminated
// when the job ends or is cancelled. So a job does not hold up the workers of
// the chat and compare views, and its wasm memory is returned when it ends. Results are kept as File objects: they join the compare
// list, can start the next job, and can be saved as .gguf files.

import { drawLineChart } from './charts.js';
import { formatMs, formatParams } from './format.js';
import { ERROR_CODES, formatBytes, formatNumber, hideMessage, setText, showMessage, t } from './i18n.js';

const $ = (id) => document.getElementById(id);

// The seven projection matrices of a decoder layer, as src/model/dense.rs names them.
const LORA_TARGETS = ['attn_q', 'attn_k', 'attn_v', 'attn_output', 'ffn_gate', 'ffn_up', 'ffn_down'];
const SEQ_LEN = 128;
// Default amount (percent) per method: weights set to zero, or parameters removed.
const DEFAULT_AMOUNT = { magnitude: 50, wanda: 50, sparsegpt: 50, ffn: 25, heads: 10, layers: 15 };
const STRUCTURES = { ffn: 'wanda', heads: 'wanda', layers: 'block-influence' };
// Models with fewer parameters than this default to full fine-tuning.
const SMALL_MODEL_PARAMS = 20e6;
// Sources with at least this fraction of zero weights are treated as pruned: fine-tuning keeps
// their zeros by default. A dense Q8_0 file has under 1% zeros from rounding.
const PRUNED_SPARSITY = 0.05;

/** An input value that is out of range, with what the message needs. */
class FormError extends Error {
  constructor(key, params, input) {
    super(key);
    this.key = key;
    this.params = params;
    this.input = input;
  }
}

/** Reads a number input; throws a FormError naming its label and range. */
function readNumber(input, labelKey, { integer = false } = {}) {
  const value = Number(input.value);
  const min = Number(input.min);
  const max = Number(input.max);
  const valid = input.value.trim() !== '' && Number.isFinite(value) && value >= min && value <= max && (!integer || Number.isInteger(value));
  if (!valid) {
    throw new FormError('error.invalid_setting', { field: t(labelKey), min, max }, input);
  }
  return value;
}

/**
 * Turns pasted question/answer pairs into chat JSONL, or returns null when the
 * text has none. A line starting with "Q:" (or "问：") opens a user message.
 * A line starting with "A:" (or "答：") opens an assistant message. Other lines
 * continue the message above, and a blank line ends the conversation.
 */
export function pairsToJsonl(text) {
  const question = /^\s*(?:q|question|问|问题)\s*[:：]\s?/i;
  const answer = /^\s*(?:a|answer|答|回答)\s*[:：]\s?/i;
  const conversations = [];
  let messages = [];
  const flush = () => {
    if (messages.some((m) => m.role === 'assistant')) {
      conversations.push(messages);
    }
    messages = [];
  };
  for (const line of text.split(/\r?\n/)) {
    if (line.trim() === '') {
      flush();
    } else if (question.test(line)) {
      messages.push({ role: 'user', content: line.replace(question, '') });
    } else if (answer.test(line)) {
      messages.push({ role: 'assistant', content: line.replace(answer, '') });
    } else if (messages.length > 0) {
      messages[messages.length - 1].content += `\n${line}`;
    }
  }
  flush();
  if (conversations.length === 0) {
    return null;
  }
  return conversations.map((m) => JSON.stringify({ messages: m })).join('\n');
}

export class LabView {
  /**
   * @param {CompareView} compare  results join its model list
   * @param {(view: string) => void} showView  switches the page's view
   */
  constructor(compare, showView) {
    this.compare = compare;
    this.showView = showView;
    this.sources = []; // {label, url, file, params}
    this.results = [];
    this.dialogueFiles = null; // [{name, url}] from the manifest
    this.job = null; // {kind, worker, started}
    this.loss = { steps: [], evals: [] };
    this.activated = false;

    this.elements = {
      source: $('lab-source'),
      file: $('lab-file'),
      sourceNote: $('lab-source-note'),
      message: $('lab-message'),
      results: $('lab-results'),
      resultsEmpty: $('lab-results-empty'),
      prune: {
        form: $('prune-form'),
        method: $('prune-method'),
        patternField: $('prune-pattern-field'),
        pattern: $('prune-pattern'),
        amount: $('prune-amount'),
        amountLabel: $('prune-amount-label'),
        samples: $('prune-samples'),
        data: $('prune-data'),
        text: $('prune-text'),
        start: $('prune-start'),
        cancel: $('prune-cancel'),
        progress: $('prune-progress'),
        status: $('prune-status'),
      },
      finetune: {
        form: $('finetune-form'),
        mode: $('finetune-mode'),
        rank: $('finetune-rank'),
        steps: $('finetune-steps'),
        lr: $('finetune-lr'),
        batch: $('finetune-batch'),
        keepZeros: $('finetune-keep-zeros'),
        data: $('finetune-data'),
        text: $('finetune-text'),
        start: $('finetune-start'),
        finish: $('finetune-finish'),
        cancel: $('finetune-cancel'),
        progress: $('finetune-progress'),
        status: $('finetune-status'),
        chart: $('finetune-chart'),
      },
    };
    this.wireEvents();
    this.renderPruneFields();
    this.renderFinetuneFields();
    this.renderControls();
    this.renderChart();
  }

  wireEvents() {
    const { prune, finetune } = this.elements;
    this.elements.file.addEventListener('change', () => {
      const file = this.elements.file.files?.[0];
      this.elements.file.value = '';
      if (file) {
        this.addSource({ label: file.name, file }, true);
      }
    });
    this.elements.source.addEventListener('change', () => this.onSourceChange());
    prune.method.addEventListener('change', () => {
      prune.amount.value = String(DEFAULT_AMOUNT[prune.method.value]);
      this.renderPruneFields();
    });
    prune.pattern.addEventListener('change', () => this.renderPruneFields());
    prune.data.addEventListener('change', () => this.renderPruneFields());
    prune.form.addEventListener('submit', (event) => {
      event.preventDefault();
      this.startPrune();
    });
    prune.cancel.addEventListener('click', () => this.cancel('prune'));
    finetune.mode.addEventListener('change', () => this.renderFinetuneFields());
    finetune.data.addEventListener('change', () => this.renderFinetuneFields());
    finetune.form.addEventListener('submit', (event) => {
      event.preventDefault();
      this.startFinetune();
    });
    finetune.finish.addEventListener('click', () => this.finishEarly());
    finetune.cancel.addEventListener('click', () => this.cancel('finetune'));
    document.addEventListener('languagechange', () => this.renderChart());
  }

  /** Lists the models the first time the view is shown. */
  async activate() {
    if (this.activated) {
      return;
    }
    this.activated = true;
    setText(this.elements.sourceNote, 'compare.manifest_loading');
    let manifest = null;
    try {
      manifest = await this.compare.fetchManifest();
    } catch (error) {
      console.warn('prunechat lab: reading the manifest failed:', error);
      setText(this.elements.sourceNote, 'lab.manifest_missing', { detail: error.message });
    }
    const listed = [...(manifest?.models ?? []), ...(manifest?.small_models ?? [])].map((entry) => ({
      label: entry.label ?? entry.name,
      url: entry.file,
      params: entry.parameters ?? null,
      // Zero weights among all parameters; the manifest's `sparsity` also counts removed ones.
      sparsity: entry.nonzero_parameters > 0 ? 1 - entry.nonzero_parameters / entry.parameters : null,
    }));
    // Sources added before the manifest arrived (local files, results) stay after the listed ones.
    this.sources = [...listed, ...this.sources];
    if (Array.isArray(manifest?.dialogue?.files)) {
      // Absolute URLs: the worker resolves relative ones against www/worker.js.
      this.dialogueFiles = manifest.dialogue.files.map((url) => ({ name: url.split('/').pop(), url: new URL(url, location.href).href }));
    }
    if (manifest !== null) {
      this.elements.sourceNote.replaceChildren();
      delete this.elements.sourceNote.dataset.i18n;
    }
    this.renderSources(0);
  }

  // -------------------------------------------------------------------------
  // Sources and results

  addSource(source, select) {
    this.sources.push(source);
    this.renderSources(select ? this.sources.length - 1 : Number(this.elements.source.value || 0));
  }

  renderSources(selected) {
    const options = this.sources.map((source, i) => {
      const option = document.createElement('option');
      option.value = String(i);
      option.textContent = source.params ? `${source.label} (${formatParams(source.params)})` : source.label;
      return option;
    });
    this.elements.source.replaceChildren(...options);
    if (options.length > 0) {
      this.elements.source.value = String(Math.min(Math.max(selected, 0), options.length - 1));
    }
    this.onSourceChange();
  }

  selectedSource() {
    return this.sources[Number(this.elements.source.value)] ?? null;
  }

  onSourceChange() {
    const source = this.selectedSource();
    // Unknown sparsity (a local file): keep zeros, the safe choice for a pruned file.
    this.elements.finetune.keepZeros.checked = !(Number.isFinite(source?.sparsity) && source.sparsity < PRUNED_SPARSITY);
    if (source?.params) {
      const small = source.params < SMALL_MODEL_PARAMS;
      this.elements.finetune.mode.value = small ? 'full' : 'lora';
      this.elements.finetune.lr.value = small ? '0.0005' : '0.001';
      this.elements.finetune.batch.value = small ? '16' : '4';
      this.renderFinetuneFields();
    }
    this.renderControls();
  }

  addResult(result) {
    this.results.push(result);
    this.addSource({ label: result.file.name, file: result.file, params: result.params, sparsity: result.sparsity }, false);
    this.compare.addChoice({ label: result.file.name, file: result.file });

    const item = document.createElement('li');
    item.className = 'lab-result';
    item.dataset.testid = 'lab-result';
    item.dataset.name = result.file.name;
    const name = document.createElement('span');
    name.className = 'lab-result-name';
    name.textContent = result.file.name;
    const meta = document.createElement('span');
    meta.className = 'lab-result-meta muted small';
    meta.dataset.testid = 'lab-result-meta';
    setText(meta, result.summaryKey, result.summaryParams);

    const actions = document.createElement('span');
    actions.className = 'lab-result-actions';
    const save = document.createElement('a');
    save.className = 'button button-secondary';
    save.dataset.testid = 'result-save';
    save.href = URL.createObjectURL(result.file);
    save.download = result.file.name;
    setText(save, 'lab.save');
    const compareNow = document.createElement('button');
    compareNow.type = 'button';
    compareNow.className = 'button button-primary';
    compareNow.dataset.testid = 'result-compare';
    setText(compareNow, 'lab.compare');
    compareNow.addEventListener('click', () => {
      this.compare.addColumn({ label: result.file.name, file: result.file });
      this.showView('compare');
    });
    const reuse = document.createElement('button');
    reuse.type = 'button';
    reuse.className = 'button button-ghost';
    reuse.dataset.testid = 'result-use';
    setText(reuse, 'lab.use');
    reuse.addEventListener('click', () => {
      const index = this.sources.findIndex((source) => source.file === result.file);
      this.renderSources(index);
    });
    actions.append(compareNow, save, reuse);
    item.append(name, meta, actions);
    this.elements.results.append(item);
    this.elements.resultsEmpty.hidden = true;
  }

  // -------------------------------------------------------------------------
  // Forms

  renderPruneFields() {
    const { prune } = this.elements;
    const structured = Object.hasOwn(STRUCTURES, prune.method.value);
    prune.patternField.hidden = structured;
    const fixedPattern = !structured && prune.pattern.value !== 'unstructured';
    prune.amount.disabled = fixedPattern;
    if (fixedPattern) {
      const [n, m] = prune.pattern.value.split(':').map(Number);
      prune.amount.value = String(Math.round((1 - n / m) * 100));
    }
    setText(prune.amountLabel, structured ? 'prune.removed' : 'prune.sparsity');
    prune.text.hidden = prune.data.value !== 'pasted';
  }

  renderFinetuneFields() {
    const { finetune } = this.elements;
    finetune.rank.disabled = finetune.mode.value !== 'lora';
    finetune.text.hidden = finetune.data.value !== 'pasted';
  }

  renderControls() {
    const busy = this.job !== null;
    const hasSource = this.selectedSource() !== null;
    const { prune, finetune } = this.elements;
    prune.start.disabled = busy || !hasSource;
    finetune.start.disabled = busy || !hasSource;
    prune.cancel.disabled = this.job?.kind !== 'prune';
    finetune.cancel.disabled = this.job?.kind !== 'finetune';
    finetune.finish.disabled = this.job?.kind !== 'finetune' || this.job.finishing === true;
    this.elements.source.disabled = busy;
    this.elements.file.disabled = busy;
  }

  showMessage(key, params = {}) {
    showMessage(this.elements.message, key, params);
  }

  hideMessage() {
    hideMessage(this.elements.message);
  }

  /** Returns the job's data files as [{name, text}] or [{name, url}]; throws a FormError. */
  jobData(select, textarea, { pairs }) {
    if (select.value === 'bundled') {
      if (this.dialogueFiles === null || this.dialogueFiles.length === 0) {
        throw new FormError('lab.error.no_dialogue', {}, select);
      }
      return this.dialogueFiles;
    }
    const text = textarea.value;
    if (text.trim() === '') {
      throw new FormError('lab.error.empty_text', {}, textarea);
    }
    const jsonl = pairs ? pairsToJsonl(text) : null;
    // "pasted" has no extension, so the engine picks the format from the content.
    return [jsonl === null ? { name: 'pasted', text } : { name: 'pasted.jsonl', text: jsonl }];
  }

  pruneSettings() {
    const { prune } = this.elements;
    const method = prune.method.value;
    const amount = readNumber(prune.amount, Object.hasOwn(STRUCTURES, method) ? 'prune.removed' : 'prune.sparsity');
    const common = { n_samples: readNumber(prune.samples, 'prune.samples', { integer: true }), seq_len: SEQ_LEN, seed: 0 };
    if (Object.hasOwn(STRUCTURES, method)) {
      return {
        settings: { structure: method, score: STRUCTURES[method], target_params: 1 - amount / 100, ...common },
        suffix: `${method}-${Math.round(amount)}`,
      };
    }
    if (prune.pattern.value !== 'unstructured') {
      return {
        settings: { method, pattern: prune.pattern.value, ...common },
        suffix: `${method}-${prune.pattern.value.replace(':', 'of')}`,
      };
    }
    return {
      settings: { method, sparsity: amount / 100, ...common },
      suffix: `${method}-${Math.round(amount)}`,
    };
  }

  finetuneConfig() {
    const { finetune } = this.elements;
    const steps = readNumber(finetune.steps, 'finetune.steps', { integer: true });
    const batch = readNumber(finetune.batch, 'finetune.batch', { integer: true });
    // On a large model the activations of a whole batch do not fit next to the weights in
    // 4 GiB of wasm memory, so its sequences go one at a time with summed gradients: the
    // same update, less memory.
    const small = (this.selectedSource().params ?? Infinity) < SMALL_MODEL_PARAMS;
    const config = {
      steps,
      batch_size: small ? batch : 1,
      grad_accum: small ? 1 : batch,
      seq_len: SEQ_LEN,
      lr: readNumber(finetune.lr, 'finetune.lr'),
      warmup_steps: Math.min(10, Math.floor(steps / 10)),
      eval_every: steps,
      keep_zeros: finetune.keepZeros.checked,
    };
    if (finetune.mode.value === 'lora') {
      const rank = readNumber(finetune.rank, 'finetune.rank', { integer: true });
      config.lora = { rank, alpha: 2 * rank, targets: LORA_TARGETS };
    }
    return config;
  }

  // -------------------------------------------------------------------------
  // Jobs

  /** Returns the `source` field of a job message and the buffers to transfer. */
  async jobSource() {
    const source = this.selectedSource();
    if (source.url) {
      return { source: { url: new URL(source.url, location.href).href }, transfer: [] };
    }
    const bytes = await source.file.arrayBuffer();
    return { source: { bytes, name: source.file.name }, transfer: [bytes] };
  }

  async startPrune() {
    const { prune } = this.elements;
    let job;
    let corpus;
    try {
      job = this.pruneSettings();
      corpus = job.settings.method === 'magnitude' ? [] : this.jobData(prune.data, prune.text, { pairs: false });
    } catch (error) {
      this.rejectForm(error);
      return;
    }
    await this.run('prune', { type: 'prune', settings: job.settings, corpus, suffix: job.suffix });
  }

  async startFinetune() {
    const { finetune } = this.elements;
    let config;
    let data;
    try {
      config = this.finetuneConfig();
      data = this.jobData(finetune.data, finetune.text, { pairs: true });
    } catch (error) {
      this.rejectForm(error);
      return;
    }
    const source = this.selectedSource();
    // The fine-tuned model has the source's shape, and its sparsity when zeros are kept.
    this.loss = {
      steps: [],
      evals: [],
      mode: finetune.mode.value,
      params: source.params ?? null,
      sparsity: config.keep_zeros ? (source.sparsity ?? null) : null,
    };
    this.renderChart();
    // The held-out loss is computed before the first and after the last step. On a large model
    // a smaller held-out part keeps those passes short: a 3-step LoRA job on SmolLM2 took 73 s.
    const small = (this.selectedSource().params ?? Infinity) < SMALL_MODEL_PARAMS;
    const evalFraction = small ? 0.1 : 0.02;
    await this.run('finetune', { type: 'finetune', config, data, evalFraction, suffix: `${finetune.mode.value}-${config.steps}` });
  }

  rejectForm(error) {
    if (!(error instanceof FormError)) {
      throw error;
    }
    this.showMessage(error.key, error.params);
    error.input.focus();
  }

  async run(kind, message) {
    if (this.job !== null) {
      return;
    }
    this.hideMessage();
    const form = this.elements[kind];
    const job = { kind, worker: null, started: performance.now(), finishing: false };
    this.job = job;
    this.renderControls();
    form.progress.hidden = false;
    form.progress.removeAttribute('value');
    setText(form.status, 'job.status.starting');

    let source;
    try {
      source = await this.jobSource();
    } catch (error) {
      this.endJob(kind);
      this.showMessage('error.file_read', { name: this.selectedSource().label, detail: error.message });
      return;
    }
    if (this.job !== job) {
      return; // cancelled while the file was read
    }
    const worker = new Worker(new URL('./worker.js', import.meta.url), { type: 'module' });
    job.worker = worker;
    worker.onmessage = (event) => this.onJobMessage(job, event.data);
    worker.onerror = (event) => {
      // A script error the worker did not catch, or the worker ran out of memory.
      event.preventDefault();
      this.failJob(job, { code: null, context: kind, message: event.message || 'the worker stopped', params: {} });
    };
    worker.postMessage({ ...message, source: source.source }, source.transfer);
  }

  cancel(kind) {
    if (this.job?.kind !== kind) {
      return;
    }
    this.endJob(kind);
    setText(this.elements[kind].status, 'job.status.cancelled');
  }

  /** Ends fine-tuning after the current step and keeps what it has learned. */
  finishEarly() {
    if (this.job?.kind !== 'finetune' || this.job.worker === null) {
      return;
    }
    this.job.finishing = true;
    this.job.worker.postMessage({ type: 'stop' });
    setText(this.elements.finetune.status, 'finetune.status.finishing');
    this.renderControls();
  }

  endJob(kind) {
    if (this.job?.kind === kind) {
      this.job.worker?.terminate();
      this.job = null;
    }
    const form = this.elements[kind];
    form.progress.hidden = true;
    this.renderControls();
  }

  failJob(job, message) {
    if (this.job !== job) {
      return;
    }
    this.endJob(job.kind);
    console.warn(`prunechat lab: ${job.kind} failed:`, message.message);
    const params = { ...(message.params ?? {}), detail: message.message };
    let key;
    if (message.code === 'wasm_trap' || message.code === 'engine_broken') {
      // The job's worker is gone with the job; usually the trap is a failed allocation.
      key = /unreachable|memory/i.test(message.message) ? 'lab.error.out_of_memory' : `lab.error.${job.kind}`;
    } else {
      key = ERROR_CODES.has(message.code) ? `error.${message.code}` : `lab.error.${job.kind}`;
    }
    this.showMessage(key, params);
    setText(this.elements[job.kind].status, 'job.status.failed');
  }

  onJobMessage(job, message) {
    if (this.job !== job) {
      return; // a message that was in flight when the job was cancelled
    }
    const form = this.elements[job.kind];
    switch (message.type) {
      case 'progress':
        this.setProgress(form, message.loaded, message.total);
        setText(form.status, 'job.status.download', { loaded: formatBytes(message.loaded), total: formatBytes(message.total ?? NaN) });
        break;
      case 'job-progress':
        this.onJobProgress(form, message);
        break;
      case 'pruned':
        this.onPruned(job, message);
        break;
      case 'train-start':
        setText(form.status, 'finetune.status.start', {
          samples: message.info.train_data?.n_samples ?? 0,
          params: formatParams(message.info.n_trained_params),
        });
        this.setProgress(form, 0, message.info.steps);
        break;
      case 'train-step':
        this.onTrainStep(form, message);
        break;
      case 'train-eval':
        this.loss.evals.push({ x: message.step, y: message.loss });
        this.renderChart();
        break;
      case 'finetuned':
        this.onFinetuned(job, message);
        break;
      case 'error':
        this.failJob(job, message);
        break;
      default:
        break;
    }
  }

  setProgress(form, done, total) {
    if (Number.isFinite(total) && total > 0) {
      form.progress.max = total;
      form.progress.value = Math.min(done, total);
    } else {
      form.progress.removeAttribute('value');
    }
  }

  onJobProgress(form, message) {
    switch (message.phase) {
      case 'prepare':
        form.progress.removeAttribute('value');
        setText(form.status, `job.status.prepare_${message.stage === 'calibration' ? 'calibration' : 'model'}`);
        break;
      case 'layers':
        this.setProgress(form, message.done, message.total);
        setText(form.status, 'prune.status.layers', { done: message.done, total: message.total });
        break;
      case 'scoring':
        this.setProgress(form, message.done, message.total);
        setText(form.status, 'prune.status.scoring', { step: message.step + 1, done: message.done, total: message.total });
        break;
      case 'step':
        setText(form.status, 'prune.status.step', {
          step: message.step,
          params: formatParams(message.params),
          size: formatBytes(message.file_bytes),
        });
        break;
      case 'export':
        form.progress.removeAttribute('value');
        setText(form.status, 'job.status.export');
        break;
      default:
        break;
    }
  }

  onPruned(job, message) {
    const report = message.report;
    const file = new File([message.bytes], message.name, { type: 'application/octet-stream' });
    this.endJob('prune');
    const structured = report.kind === 'structured';
    const summaryKey = structured ? 'lab.result.structured' : 'lab.result.pruned';
    const summaryParams = {
      method: structured ? `${report.structure} (${report.score})` : `${report.method} ${report.pattern}`,
      percent: formatNumber((structured ? report.kept_fraction : report.sparsity) * 100, 1),
      params: formatParams(report.n_params),
      size: formatBytes(report.file_bytes),
      time: formatMs(message.job_ms),
    };
    setText(this.elements.prune.status, 'prune.status.done', summaryParams);
    // Structured pruning removes weights instead of zeroing them, so its file is dense.
    this.addResult({ file, params: report.n_params, sparsity: structured ? 0 : report.sparsity, summaryKey, summaryParams });
  }

  onTrainStep(form, message) {
    this.setProgress(form, message.step, message.total_steps);
    this.loss.steps.push({ x: message.step, y: message.loss });
    const rate = message.step_ms > 0 ? (message.n_tokens / message.step_ms) * 1000 : NaN;
    if (!this.job?.finishing) {
      setText(form.status, 'finetune.status.step', {
        step: message.step,
        total: message.total_steps,
        loss: formatNumber(message.loss, 3),
        rate: formatNumber(rate, 0),
      });
    }
    this.renderChart();
  }

  onFinetuned(job, message) {
    const file = new File([message.bytes], message.name, { type: 'application/octet-stream' });
    this.endJob('finetune');
    const evals = this.loss.evals;
    const summaryParams = {
      steps: message.steps,
      before: evals.length > 0 ? formatNumber(evals[0].y, 3) : '—',
      after: evals.length > 1 ? formatNumber(evals[evals.length - 1].y, 3) : '—',
      size: formatBytes(file.size),
      time: formatMs(message.job_ms),
    };
    setText(this.elements.finetune.status, message.complete ? 'finetune.status.done' : 'finetune.status.done_early', summaryParams);
    const summaryKey = `lab.result.finetuned_${this.loss.mode}`;
    this.addResult({ file, params: this.loss.params, sparsity: this.loss.sparsity, summaryKey, summaryParams });
  }

  renderChart() {
    drawLineChart(
      this.elements.finetune.chart,
      [
        { label: t('finetune.chart_train'), points: this.loss.steps, className: 'loss-train' },
        { label: t('finetune.chart_eval'), points: this.loss.evals, className: 'loss-eval' },
      ],
      {
        xLabel: t('finetune.chart_step'),
        yLabel: t('finetune.chart_loss'),
        emptyMessage: t('finetune.chart_empty'),
        formatX: (x) => formatNumber(x, 0),
        formatY: (y) => formatNumber(y, y < 10 ? 1 : 0),
      },
    );
  }
}
