// Sampling settings, system prompt and context length: defaults, validation
// and persistence in localStorage.

import { t } from './i18n.js';

const STORAGE_KEY = 'prunechat.settings';

// Temperature and top-p follow the SmolLM2-Instruct model card's example
// (temperature 0.2, top_p 0.9); the other values are common llama.cpp-style
// defaults.
export const DEFAULT_SAMPLING = Object.freeze({
  temperature: 0.2,
  top_k: 40,
  top_p: 0.9,
  repeat_penalty: 1.1,
  seed: null,
  max_new_tokens: 256,
});
export const DEFAULT_MAX_CONTEXT = 2048;
const MAX_SEED = 0xffffffff;

// Input id, sampling field, label key, range, and whether it must be an integer.
const FIELDS = [
  { id: 'temperature', field: 'temperature', label: 'sampling.temperature', min: 0, max: 2, integer: false },
  { id: 'top-k', field: 'top_k', label: 'sampling.top_k', min: 0, max: 1000, integer: true },
  // The engine requires 0 < top_p <= 1.
  { id: 'top-p', field: 'top_p', label: 'sampling.top_p', min: 0.01, max: 1, integer: false },
  { id: 'repeat-penalty', field: 'repeat_penalty', label: 'sampling.repeat_penalty', min: 1, max: 2, integer: false },
  { id: 'seed', field: 'seed', label: 'sampling.seed', min: 0, max: MAX_SEED, integer: true, optional: true },
  { id: 'max-new-tokens', field: 'max_new_tokens', label: 'sampling.max_new_tokens', min: 1, max: 4096, integer: true },
];
// Default thread count of the chat and compare workers: one per logical core,
// at most this many.
const MAX_DEFAULT_THREADS = 8;
// Largest `threads` value that www/worker.js accepts.
const MAX_THREADS = 64;
const MAX_CONTEXT_FIELD = { id: 'max-context', label: 'model.max_context', min: 128, max: 32768, integer: true };

/** Error for a setting outside its range; `params` fill the 'error.invalid_setting' string. */
export class SettingError extends Error {
  constructor(params, input) {
    super(`${params.field} must be a number between ${params.min} and ${params.max}.`);
    this.params = params;
    this.input = input;
  }
}

function loadStored() {
  try {
    return JSON.parse(localStorage.getItem(STORAGE_KEY) ?? '{}') ?? {};
  } catch {
    // Missing, corrupt or blocked storage: use the defaults.
    return {};
  }
}

function parseField(spec, input) {
  const raw = input.value.trim();
  if (raw === '' && spec.optional) {
    return null;
  }
  const value = Number(raw);
  const valid =
    raw !== '' &&
    Number.isFinite(value) &&
    value >= spec.min &&
    value <= spec.max &&
    (!spec.integer || Number.isInteger(value));
  if (!valid) {
    throw new SettingError({ field: t(spec.label), min: spec.min, max: spec.max }, input);
  }
  return value;
}

export class SettingsForm {
  constructor(root) {
    this.root = root;
    this.systemPrompt = root.getElementById('system-prompt');
    this.maxContext = root.getElementById(MAX_CONTEXT_FIELD.id);
    this.inputs = new Map(FIELDS.map((spec) => [spec.field, root.getElementById(spec.id)]));
  }

  /** Fills the inputs from localStorage, falling back to the defaults. */
  restore() {
    const stored = loadStored();
    this.fill({ ...DEFAULT_SAMPLING, ...(stored.sampling ?? {}) });
    this.systemPrompt.value = typeof stored.system === 'string' ? stored.system : '';
    // A saved context length outside the allowed range would block every model
    // load on page open, so it falls back to the default.
    const context = stored.maxContext;
    const valid = Number.isInteger(context) && context >= MAX_CONTEXT_FIELD.min && context <= MAX_CONTEXT_FIELD.max;
    this.maxContext.value = String(valid ? context : DEFAULT_MAX_CONTEXT);
  }

  fill(sampling) {
    for (const spec of FIELDS) {
      const value = sampling[spec.field];
      this.inputs.get(spec.field).value = value === null || value === undefined ? '' : String(value);
    }
  }

  resetSampling() {
    this.fill(DEFAULT_SAMPLING);
    this.save();
  }

  /** Stores the current inputs; invalid values are stored as typed and rejected on send. */
  save() {
    const sampling = {};
    for (const spec of FIELDS) {
      const raw = this.inputs.get(spec.field).value.trim();
      sampling[spec.field] = raw === '' ? null : Number(raw);
    }
    const stored = { sampling, system: this.systemPrompt.value, maxContext: Number(this.maxContext.value) || null };
    try {
      localStorage.setItem(STORAGE_KEY, JSON.stringify(stored));
    } catch {
      // Storage blocked or full: the settings still apply to this page view.
    }
  }

  /**
   * Returns the sampling parameters for one turn. An empty seed becomes a new
   * random 32-bit seed. Throws SettingError for a value outside its range.
   */
  readSampling() {
    const sampling = {};
    for (const spec of FIELDS) {
      sampling[spec.field] = parseField(spec, this.inputs.get(spec.field));
    }
    if (sampling.seed === null) {
      sampling.seed = crypto.getRandomValues(new Uint32Array(1))[0];
    }
    return sampling;
  }

  readSystemPrompt() {
    return this.systemPrompt.value.trim();
  }

  /** Returns the context length for the next load. Throws SettingError when out of range. */
  readMaxContext() {
    return parseField(MAX_CONTEXT_FIELD, this.maxContext);
  }
}

/**
 * Returns the thread count for the chat and compare workers: the `threads`
 * query parameter when it is an integer from 1 to MAX_THREADS, else
 * navigator.hardwareConcurrency capped at MAX_DEFAULT_THREADS.
 */
export function requestedThreads(search = location.search) {
  const raw = new URLSearchParams(search).get('threads');
  if (raw !== null) {
    const value = Number(raw);
    if (Number.isInteger(value) && value >= 1 && value <= MAX_THREADS) {
      return value;
    }
    console.warn(`prunechat: ignoring ?threads=${raw}; expected an integer from 1 to ${MAX_THREADS}`);
  }
  return Math.min(Math.max(navigator.hardwareConcurrency || 1, 1), MAX_DEFAULT_THREADS);
}
