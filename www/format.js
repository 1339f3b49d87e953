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
