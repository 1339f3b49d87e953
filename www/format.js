// Number formats shared by the chat and compare views.

import { formatNumber, setText } from './i18n.js';

export function formatMs(ms) {
  if (!Number.isFinite(ms)) {
    return '—';
  }
  return ms >= 1000 ? `${formatNumber(ms / 1000, 2)} s` : `${formatNumber(ms, 0)} ms`;
}

export function formatRate(element, value) {
  if (Number.isFinite(value)) {
    setText(element, 'stats.tokens_per_s', { value: formatNumber(value, 1) });
  } else {
    delete element.dataset.i18n;
    element.textContent = '—';
  }
}

export function formatParams(count) {
  if (!Number.isFinite(count)) {
    return '—';
  }
  if (count >= 1e9) {
    return `${formatNumber(count / 1e9, 2)} B`;
  }
  return `${formatNumber(count / 1e6, 1)} M`;
}

/**
 * Shows the thread count of a `loaded` message, with the reason when the
 * worker fell back to one thread (docs/worker-protocol.md).
 */
export function renderThreads(element, loaded) {
  const count = Number.isFinite(loaded.threads) ? loaded.threads : 1;
  const fallback = loaded.threads_fallback;
  if (fallback) {
    setText(element, `model.threads_fallback.${fallback.reason}`, { count, requested: loaded.threads_requested });
    element.title = fallback.message;
  } else {
    delete element.dataset.i18n;
    delete element.dataset.i18nParams;
    element.textContent = String(count);
    element.removeAttribute('title');
  }
  element.dataset.value = String(count);
}
