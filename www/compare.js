// Compare view: several models side by side, each in its own worker. One
// prompt goes to every loaded model with the same sampling settings and seed.
// Afterwards every model teacher-forces the first model's reply to measure
// top-1 agreement. Each model can also compute perplexity on the held-out
// windows that scripts/prepare-variants.py writes next to models/manifest.json.

import { drawBarChart, drawScatterChart } from './charts.js';
import { CompareColumn } from './compare-column.js';
import { formatBytes, formatNumber, hideMessage, setText, showMessage, t } from './i18n.js';
import { formatParams } from './format.js';
import { SettingError } from './settings.js';

export const MANIFEST_URL = 'models/manifest.json';
// The worker stores downloaded models in this cache (www/worker.js).
const MODEL_CACHE_NAME = 'prunechat-models-v1';
// Models checked in the picker when the manifest first loads.
const DEFAULT_SELECTION = 2;

const $ = (id) => document.getElementById(id);

export class CompareView {
  /**
   * @param {SettingsForm} settings sampling, system prompt and context length
   *   inputs of the sidebar, shared with the chat view
   * @param {number} threads threads that each column's worker requests
   */
  constructor(settings, threads = 1) {
    this.settings = settings;
    this.threads = threads;
    this.columns = [];
    this.choices = []; // {label, url, file, entry, cached}
    // Models made on this page (www/lab.js), kept when the manifest is read again.
    this.madeChoices = [];
    this.manifest = null;
    this.evalWindows = null;
    this.round = null; // the prompt in progress, see send()
    this.activated = false;

    this.elements = {
      panel: $('compare-panel'),
      choices: $('compare-choices'),
      choicesNote: $('compare-choices-note'),
      load: $('compare-load'),
      file: $('compare-file'),
      sequential: $('compare-sequential'),
      message: $('compare-message'),
      composer: $('compare-composer'),
      prompt: $('compare-prompt'),
      send: $('compare-send'),
      stop: $('compare-stop'),
      columns: $('compare-columns'),
      empty: $('compare-empty'),
      decodeChart: $('chart-decode'),
      perplexityChart: $('chart-perplexity'),
    };
    this.wireEvents();
    this.renderControls();
    this.renderCharts();
  }

  wireEvents() {
    const { elements } = this;
    elements.load.addEventListener('click', () => this.addSelected());
    elements.file.addEventListener('change', () => {
      const files = [...(elements.file.files ?? [])];
      // Clear the input so that picking the same file again fires `change`.
      elements.file.value = '';
      for (const file of files) {
        this.addColumn({ label: file.name, file });
      }
    });
    elements.composer.addEventListener('submit', (event) => {
      event.preventDefault();
      this.send();
    });
    elements.prompt.addEventListener('keydown', (event) => {
      // isComposing: Enter that confirms an IME candidate must not send.
      if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        this.send();
      }
    });
    elements.stop.addEventListener('click', () => this.stop());
    document.addEventListener('languagechange', () => this.renderCharts());
  }

  /** Loads the model choices the first time the view is shown. */
  activate() {
    if (this.activated) {
      return;
    }
    this.activated = true;
    this.loadChoices();
  }

  // -------------------------------------------------------------------------
  // Model choices: the manifest, then other models in the browser cache

  async loadChoices() {
    setText(this.elements.choicesNote, 'compare.manifest_loading');
    try {
      this.manifest = await this.fetchManifest();
    } catch (error) {
      console.warn('prunechat compare: reading the manifest failed:', error);
      this.manifest = null;
      setText(this.elements.choicesNote, 'compare.manifest_missing', { url: MANIFEST_URL, detail: error.message });
    }
    this.choices = (this.manifest?.models ?? []).map((entry) => ({
      label: entry.label ?? entry.name,
      url: entry.file,
      entry,
      cached: false,
    }));
    for (const url of await this.cachedModelUrls()) {
      if (!this.choices.some((choice) => new URL(choice.url, location.href).href === url)) {
        const name = decodeURIComponent(new URL(url).pathname.split('/').pop());
        this.choices.push({ label: name, url, entry: null, cached: true });
      }
    }
    this.choices.push(...this.madeChoices);
    if (this.manifest !== null) {
      setText(this.elements.choicesNote, 'compare.manifest_loaded', { count: this.manifest.models.length });
    }
    this.renderChoices();
  }

  async fetchManifest() {
    const response = await fetch(new URL(MANIFEST_URL, location.href));
    if (!response.ok) {
      throw new Error(`HTTP ${response.status}`);
    }
    const manifest = await response.json();
    if (!Array.isArray(manifest?.models)) {
      throw new Error('it has no "models" array');
    }
    return manifest;
  }

  /** Returns the absolute URLs of the .gguf files in the model cache. */
  async cachedModelUrls() {
    try {
      const cache = await caches.open(MODEL_CACHE_NAME);
      const requests = await cache.keys();
      return requests.map((request) => request.url).filter((url) => url.endsWith('.gguf'));
    } catch (error) {
      // No Cache API (for example outside a secure context): list the manifest only.
      console.warn('prunechat compare: listing the model cache failed:', error);
      return [];
    }
  }

  renderChoices() {
    const items = this.choices.map((choice, i) => {
      const item = document.createElement('li');
      const label = document.createElement('label');
      label.className = 'compare-choice';
      const input = document.createElement('input');
      input.type = 'checkbox';
      input.value = String(i);
      input.checked = choice.tick === true || (i < DEFAULT_SELECTION && !choice.cached && !choice.made);
      input.dataset.testid = 'compare-choice';
      input.dataset.name = choice.entry?.name ?? choice.label;
      const name = document.createElement('span');
      name.className = 'compare-choice-name';
      name.textContent = choice.label;
      const meta = document.createElement('span');
      meta.className = 'compare-choice-meta muted small';
      if (choice.entry) {
        setText(meta, 'compare.choice_meta', {
          method: choice.entry.method,
          sparsity: formatNumber((choice.entry.sparsity ?? 0) * 100, 1),
          params: formatParams(choice.entry.parameters),
          size: formatBytes(choice.entry.bytes),
        });
      } else {
        setText(meta, choice.made ? 'compare.choice_made' : 'compare.choice_cached');
      }
      label.append(input, name, meta);
      item.append(label);
      return item;
    });
    this.elements.choices.replaceChildren(...items);
  }

  addSelected() {
    const inputs = this.elements.choices.querySelectorAll('input[type=checkbox]:checked');
    if (inputs.length === 0) {
      this.showMessage('compare.error.none_selected');
      return;
    }
    for (const input of inputs) {
      const choice = this.choices[Number(input.value)];
      this.addColumn({ label: choice.label, url: choice.url, file: choice.file, entry: choice.entry });
      input.checked = false;
      choice.tick = false;
    }
  }

  /** Adds a model made on this page (a File) to the choices, ticked. */
  addChoice({ label, file }) {
    const choice = { label, url: null, file, entry: null, cached: false, made: true, tick: true };
    this.madeChoices.push(choice);
    if (this.activated && this.choices !== null) {
      this.choices.push(choice);
      this.renderChoices();
    }
  }

  addColumn({ label, url = null, file = null, entry = null }) {
    let maxContext;
    try {
      maxContext = this.settings.readMaxContext();
    } catch (error) {
      if (!(error instanceof SettingError)) {
        throw error;
      }
      this.showMessage('error.invalid_setting', error.params);
      return;
    }
    this.hideMessage();
    const column = new CompareColumn({
      label,
      url,
      file,
      entry,
      maxContext,
      threads: this.threads,
      listener: {
        onChange: () => this.onColumnChange(),
        onReplyFinished: (finished) => this.onReplyFinished(finished),
        onRemove: (removed) => this.removeColumn(removed),
        onEvaluate: (target) => this.evaluate(target),
      },
    });
    this.columns.push(column);
    this.elements.columns.append(column.root);
    this.onColumnChange();
  }

  removeColumn(column) {
    column.terminate();
    this.columns = this.columns.filter((other) => other !== column);
    if (this.round !== null) {
      this.round.pending.delete(column);
      this.round.queue = this.round.queue.filter((other) => other !== column);
      this.finishRoundIfDone();
    }
    this.onColumnChange();
  }

  // -------------------------------------------------------------------------
  // Rendering

  /** Returns the first column with a loaded model, which the other models are compared with. */
  reference() {
    return this.columns.find((column) => column.info !== null) ?? null;
  }

  onColumnChange() {
    const reference = this.round?.reference ?? this.reference();
    for (const column of this.columns) {
      column.setReference(column === reference);
      column.renderSparsity(reference);
    }
    this.elements.empty.hidden = this.columns.length > 0;
    this.renderControls();
    this.renderCharts();
  }

  renderControls() {
    const ready = this.columns.some((column) => column.state === 'ready');
    this.elements.send.disabled = this.round !== null || !ready;
    this.elements.stop.disabled = this.round === null && !this.columns.some((column) => column.state === 'evaluating');
    this.elements.panel.dataset.busy = String(this.round !== null);
  }

  renderCharts() {
    const loaded = this.columns.filter((column) => column.info !== null);
    drawBarChart(
      this.elements.decodeChart,
      loaded.map((column) => ({
        label: column.label,
        value: column.decodeRate(),
        valueText: t('stats.tokens_per_s', { value: formatNumber(column.decodeRate(), 1) }),
      })),
      { emptyMessage: t('compare.chart_decode_empty') },
    );
    drawScatterChart(
      this.elements.perplexityChart,
      loaded.map((column) => ({
        label: column.label,
        x: column.sparsity === null ? NaN : column.sparsity * 100,
        y: column.perplexity ?? NaN,
        xText: `${formatNumber((column.sparsity ?? 0) * 100, 1)} %`,
        yText: formatNumber(column.perplexity ?? NaN, 2),
      })),
      {
        xLabel: t('compare.chart_sparsity_axis'),
        yLabel: t('compare.chart_perplexity_axis'),
        emptyMessage: t('compare.chart_perplexity_empty'),
        formatX: (x) => `${formatNumber(x, Number.isInteger(x) ? 0 : 1)} %`,
        formatY: (y) => formatNumber(y, Number.isInteger(y) ? 0 : 1),
      },
    );
  }

  showMessage(key, params = {}) {
    showMessage(this.elements.message, key, params);
  }

  hideMessage() {
    hideMessage(this.elements.message);
  }

  // -------------------------------------------------------------------------
  // A round: one prompt to every ready model, then agreement scoring

  send() {
    const text = this.elements.prompt.value.trim();
    if (text === '') {
      this.showMessage('error.empty_prompt');
      this.elements.prompt.focus();
      return;
    }
    if (this.round !== null || this.columns.some((column) => ['generating', 'scoring', 'evaluating'].includes(column.state))) {
      this.showMessage('compare.error.busy');
      return;
    }
    const ready = this.columns.filter((column) => column.state === 'ready');
    if (ready.length === 0) {
      this.showMessage(this.columns.length === 0 ? 'compare.error.no_models' : 'error.loading');
      return;
    }

    let sampling;
    try {
      // One call, so that an empty seed becomes one random seed for every model.
      sampling = this.settings.readSampling();
    } catch (error) {
      if (!(error instanceof SettingError)) {
        throw error;
      }
      this.showMessage('error.invalid_setting', error.params);
      error.input.focus();
      return;
    }
    this.settings.save();
    this.hideMessage();

    const reference = ready[0];
    this.round = {
      text,
      system: this.settings.readSystemPrompt(),
      sampling,
      reference,
      pending: new Set(ready),
      // With "one model at a time", the models wait here for their turn.
      queue: this.elements.sequential.checked ? [...ready] : [],
    };
    for (const column of this.columns) {
      column.clearReply();
    }
    this.onColumnChange();
    if (this.round.queue.length > 0) {
      this.sendNext();
    } else {
      // Models that reply at the same time share the threads, so that no
      // more threads compute than the page was given.
      const threads = Math.max(1, Math.floor(this.threads / ready.length));
      for (const column of ready) {
        column.send(text, this.round.system, sampling, column === reference, threads);
      }
    }
    this.renderControls();
  }

  sendNext() {
    const round = this.round;
    const column = round.queue.shift();
    if (column !== undefined) {
      column.send(round.text, round.system, round.sampling, column === round.reference);
    }
  }

  stop() {
    for (const column of this.columns) {
      column.stop();
    }
    if (this.round !== null) {
      // Models still waiting for their turn never get the prompt.
      for (const column of this.round.queue) {
        this.round.pending.delete(column);
      }
      this.round.queue = [];
      this.finishRoundIfDone();
    }
  }

  onReplyFinished(column) {
    const round = this.round;
    if (round === null || !round.pending.has(column)) {
      return;
    }
    round.pending.delete(column);
    if (round.queue.length > 0) {
      this.sendNext();
    }
    this.finishRoundIfDone();
    this.renderCharts();
  }

  /**
   * After the last reply: every model that replied scores the reference's
   * prompt and reply tokens. Scoring waits for all replies so that it does not
   * slow down the decode timings of models still generating.
   */
  finishRoundIfDone() {
    const round = this.round;
    if (round === null || round.pending.size > 0 || round.queue.length > 0) {
      return;
    }
    this.round = null;
    const tokens = round.reference.lastTokens;
    const usable = tokens !== null && tokens.reply.length > 0 && this.columns.includes(round.reference);
    for (const column of this.columns) {
      if (column.lastStats === null) {
        continue;
      }
      if (!usable) {
        column.showAgreementUnavailable('compare.agreement_no_reference');
      } else if (column.state === 'ready') {
        column.score(tokens);
      }
    }
    this.onColumnChange();
    this.elements.prompt.focus();
  }

  // -------------------------------------------------------------------------
  // Perplexity

  async evaluate(column) {
    if (this.round !== null) {
      // A column waiting for its turn in the round would get the prompt mid-evaluation.
      this.showMessage('compare.error.busy');
      return;
    }
    const windows = await this.loadEvalWindows();
    if (windows === null || column.state !== 'ready') {
      return;
    }
    column.hideError();
    column.evaluate(windows);
  }

  /** Returns the held-out windows listed in the manifest, or null after showing why not. */
  async loadEvalWindows() {
    if (this.evalWindows !== null) {
      return this.evalWindows;
    }
    const url = this.manifest?.eval?.windows;
    if (typeof url !== 'string') {
      this.showMessage('compare.error.no_eval_data', { url: MANIFEST_URL });
      return null;
    }
    try {
      const response = await fetch(new URL(url, location.href));
      if (!response.ok) {
        throw new Error(`HTTP ${response.status}`);
      }
      const windows = await response.json();
      if (!Array.isArray(windows) || windows.length === 0) {
        throw new Error('expected a non-empty JSON array of token id arrays');
      }
      this.evalWindows = windows;
      return windows;
    } catch (error) {
      console.warn(`prunechat compare: reading ${url} failed:`, error);
      this.showMessage('compare.error.eval_data', { url, detail: error.message });
      return null;
    }
  }
}
