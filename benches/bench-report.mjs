// Report of benches/browser-bench.mjs: medians over the runs, one Markdown table per model, the
// bandwidth floor of each file and the targets table.

import { CHROMIUM_ARGS, gitRevision, machineDescription, packageBuildDescription, wasmTargetFeatures } from './common.mjs';

export function median(values) {
  const sorted = values.filter((value) => Number.isFinite(value)).sort((a, b) => a - b);
  if (sorted.length === 0) {
    return null;
  }
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

/** Returns the median of every numeric field over the runs; a field missing in every run is null. */
export function medianOfRuns(runs) {
  const keys = new Set(runs.flatMap((values) => Object.keys(values)));
  const medians = {};
  for (const key of keys) {
    medians[key] = median(runs.map((values) => values[key]));
  }
  return medians;
}

const THREADS = [1, 2];

const formatters = {
  ms: (ms) => (ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${Math.round(ms)} ms`),
  rate: (rate) => `${rate.toFixed(1)} tokens/s`,
  mib: (bytes) => `${(bytes / 2 ** 20).toFixed(1)} MiB`,
  percent: (fraction) => `${(fraction * 100).toFixed(0)}%`,
};

export const formatMiB = formatters.mib;

/** Formats one table cell; `tokens` adds the token count the value is based on. */
function cell(value, format, tokens = null) {
  if (value === null || value === undefined) {
    return '—';
  }
  const text = formatters[format](value);
  return tokens === null || tokens === undefined ? text : `${text} (${Math.round(tokens)} tokens)`;
}

// Columns of the per-model tables: label, key of the medians, format, key of the token count.
const COLUMNS = [
  ['load, first (HTTP)', 'loadColdMs', 'ms', null],
  ['load, engine construction', 'engineMs', 'ms', null],
  ['load, second (Cache API)', 'loadCachedMs', 'ms', null],
  ['cached page to first token', 'cachedFirstTokenMs', 'ms', null],
  ['TTFT, short prompt', 'shortTtftMs', 'ms', 'shortTokens'],
  ['prefill, short prompt', 'shortPrefill', 'rate', 'shortTokens'],
  ['TTFT, long prompt', 'longTtftMs', 'ms', 'longTokens'],
  ['prefill, long prompt', 'longPrefill', 'rate', 'longTokens'],
  ['decode (greedy)', 'decodeRate', 'rate', 'decodeTokens'],
  ['decode / bandwidth floor', 'floorFraction', 'percent', null],
  ['peak wasm memory', 'peakMemory', 'mib', null],
];

/**
 * Describes one engine configuration's outcome as a table row's cells: the medians, or the
 * reason it has none.
 */
function rowCells(result, floorTokensPerS) {
  if (result.unavailable !== null) {
    return [result.unavailable, ...COLUMNS.slice(1).map(() => '')];
  }
  if (result.error !== null) {
    return [`failed: ${result.error}`, ...COLUMNS.slice(1).map(() => '')];
  }
  if (result.runs.length === 0) {
    return ['not run', ...COLUMNS.slice(1).map(() => '')];
  }
  const medians = { ...medianOfRuns(result.runs) };
  medians.floorFraction = medians.decodeRate === null ? null : medians.decodeRate / floorTokensPerS;
  return COLUMNS.map(([, key, format, tokensKey]) => cell(medians[key], format, tokensKey ? medians[tokensKey] : null));
}

/** Returns the decode floor of a file in tokens/s: every weight is read once per token. */
export function floorTokensPerS(limits, fileBytes) {
  return limits.readBytesPerS / fileBytes;
}

function modelTable(model, dense, limits) {
  const floor = floorTokensPerS(limits, model.fileBytes);
  const lines = [
    `### ${model.title}`,
    '',
    `\`${model.path}\`: ${model.description}`,
    '',
    `| Engine | threads | ${COLUMNS.map(([label]) => label).join(' | ')} |`,
    `| --- | ---: | ${COLUMNS.map(() => '---:').join(' | ')} |`,
  ];
  for (const result of model.results) {
    lines.push(`| ${result.engine} | ${result.threads} | ${rowCells(result, floor).join(' | ')} |`);
  }
  if (model.id !== 'dense') {
    const relative = THREADS.map((threads) => {
      const own = measured(model, 'prunechat', threads, 'decodeRate');
      const base = measured(dense, 'prunechat', threads, 'decodeRate');
      const value = own === null || base === null ? 'no figure' : `${(own / base).toFixed(2)}×`;
      return `${threads} thread${threads === 1 ? '' : 's'} ${value}`;
    });
    lines.push('', `prunechat decode relative to the dense model on the same thread count: ${relative.join(', ')}.`);
  }
  if (model.decodePrompts.size > 0) {
    lines.push('', `Decode prompt: ${[...model.decodePrompts].map((prompt) => `"${prompt}"`).join(', ')}.`);
  }
  return lines;
}

function limitsLines(limits, models, limitsSettings) {
  const gbPerS = (bytesPerS) => `${(bytesPerS / 1e9).toFixed(1)} GB/s`;
  const lines = [
    '### Limits of this machine in the page',
    '',
    `Measured in the same browser by \`src/wasm_limits.rs\` (one thread, median of ${limitsSettings.passes} passes over`,
    `${limitsSettings.bufferBytes / 2 ** 20} MiB buffers, far larger than the caches):`,
    '',
    `- memory read with 128-bit SIMD loads: ${gbPerS(limits.readBytesPerS)}`,
    `- memory copy (\`memory.copy\`, bytes copied): ${gbPerS(limits.copyBytesPerS)}`,
    `- f32x4 multiply and add, eight independent chains: ${(limits.simdFlopsPerS / 1e9).toFixed(1)} GFLOP/s`,
    `- the Q8_0 matmul kernel of the engine (\`KernelProbe\`: 128 × 576 weights, 16 input rows, all in the caches): ${(limits.kernelMacsPerS / 1e9).toFixed(1)} G multiply-adds/s`,
    '',
    'Decoding one token reads every weight once. At this read bandwidth, a file allows at most the',
    "bandwidth floor below. The file's bytes are an upper bound of the weight bytes, because they",
    "include the tokenizer (about 2% of the dense file). The tables' \"decode / bandwidth floor\" column",
    'divides each decode figure by the floor of its file. The floor is for one thread in the page, so',
    'two threads or native code can exceed 100%.',
    '',
    'A token also costs one multiply-add per weight, about one per parameter (the tied output head',
    'reuses the embedding table). At the kernel rate above, that gives the "kernel ceiling" for',
    'decode and for prefill on one thread, before attention and the other per-token work.',
    '',
    '| File | size | bandwidth floor | kernel ceiling |',
    '| --- | ---: | ---: | ---: |',
  ];
  for (const model of models) {
    const floor = floorTokensPerS(limits, model.fileBytes);
    const ceiling = model.info ? `${(limits.kernelMacsPerS / model.info.n_params).toFixed(1)} tokens/s` : '—';
    lines.push(`| \`${model.path}\` | ${formatters.mib(model.fileBytes)} | ${floor.toFixed(1)} tokens/s | ${ceiling} |`);
  }
  return lines;
}

// ---------------------------------------------------------------------------
// Targets

/** Returns the median of `key` for one engine configuration, or null when it has no runs. */
function measured(model, engine, threads, key) {
  const result = model?.results.find((row) => row.engine === engine && row.threads === threads);
  if (!result || result.unavailable !== null || result.error !== null || result.runs.length === 0) {
    return null;
  }
  return median(result.runs.map((values) => values[key]));
}

/**
 * Builds a target row for `numerator / denominator ≥ goal`, two rates in tokens/s named
 * `names`; a missing rate makes the row "not measured".
 */
function ratioTarget(label, goal, [numerator, denominator], names) {
  const missing = names.filter((name, index) => [numerator, denominator][index] === null);
  if (missing.length > 0) {
    return [label, `no figure for ${missing.join(' and ')}`, 'not measured'];
  }
  const ratio = numerator / denominator;
  const detail = `${names[0]} ${numerator.toFixed(1)} vs ${names[1]} ${denominator.toFixed(1)} tokens/s`;
  return [label, `${ratio.toFixed(2)}× (${detail})`, ratio >= goal ? 'met' : 'not met'];
}

/** Builds the rows of the targets table: [target, measured value, met / not met]. */
export function targetRows(models, engineNames) {
  const [dense, ffn25, ffn50] = ['dense', 'ffn-25', 'ffn-50'].map((id) => models.find((model) => model.id === id));
  const { prunechat, wllama, native } = engineNames;
  const decode = (model, engine, threads) => measured(model, engine, threads, 'decodeRate');
  const rows = [];

  const plural = (threads) => `${threads} thread${threads === 1 ? '' : 's'}`;
  rows.push(
    ratioTarget('1-thread decode ≥ 4× wllama 1-thread decode', 4,
      [decode(dense, prunechat, 1), decode(dense, wllama, 1)], ['prunechat', 'wllama']),
  );
  rows.push(
    ratioTarget('1-thread decode ≥ 0.6× native llama.cpp 1-thread decode', 0.6,
      [decode(dense, prunechat, 1), decode(dense, native, 1)], ['prunechat', 'llama.cpp']),
  );

  for (const threads of [1, 2]) {
    const prefill = measured(dense, prunechat, threads, 'longPrefill');
    const tokens = measured(dense, prunechat, threads, 'longTokens');
    const label = `prefill ≥ 300 tokens/s, long prompt, ${plural(threads)}`;
    rows.push(
      prefill === null
        ? [label, `no figure for prunechat on ${plural(threads)}`, 'not measured']
        : [label, `${prefill.toFixed(1)} tokens/s (${Math.round(tokens)} tokens)`, prefill >= 300 ? 'met' : 'not met'],
    );
  }

  for (const [name, model, goal] of [
    ['ffn-25', ffn25, 1.25],
    ['ffn-50', ffn50, 1.7],
  ]) {
    for (const threads of [1, 2]) {
      rows.push(
        ratioTarget(`${name} decode ≥ ${goal}× dense decode, ${plural(threads)}`, goal,
          [decode(model, prunechat, threads), decode(dense, prunechat, threads)], [name, 'dense']),
      );
    }
  }

  for (const [key, what] of [
    ['decodeRate', 'decode'],
    ['longPrefill', 'prefill (long prompt)'],
  ]) {
    rows.push(
      ratioTarget(`2 threads ≥ 1.6× 1 thread, ${what}`, 1.6,
        [measured(dense, prunechat, 2, key), measured(dense, prunechat, 1, key)], ['2 threads', '1 thread']),
    );
  }

  for (const threads of [1, 2]) {
    const fromNavigation = measured(dense, prunechat, threads, 'cachedFirstTokenMs');
    const fromLoad = measured(dense, prunechat, threads, 'cachedLoadToFirstTokenMs');
    const label = `page load to first token < 1 s, model in the Cache API (${plural(threads)})`;
    rows.push(
      fromNavigation === null
        ? [label, `no figure for prunechat on ${plural(threads)}`, 'not measured']
        : [
            label,
            `${Math.round(fromNavigation)} ms from navigation start (${Math.round(fromLoad)} ms from the \`load\` message)`,
            fromNavigation < 1000 ? 'met' : 'not met',
          ],
    );
  }
  return rows;
}

// ---------------------------------------------------------------------------

/** Builds the whole Markdown section, markers included. */
export function buildReport({ sectionStart, sectionEnd, command, runs, models, limits, limitsSettings, versions, notes, engineNames }) {
  const date = new Date().toISOString().slice(0, 10);
  const lines = [
    sectionStart,
    '## Browser: headless Chromium',
    '',
    `Measured by \`${command}\` on ${date}: median of ${runs} run${runs === 1 ? '' : 's'} per row, each in a fresh browser`,
    'context (llama.cpp: a fresh process). Runs alternate between the engines and models, so a change in',
    "the machine's load affects all of them.",
    '',
    `- Machine: ${machineDescription()}`,
    `- Browser: Chromium ${versions.chromium}, headless, flags ${CHROMIUM_ARGS.join(' ')}`,
    `- prunechat: ${gitRevision()}, ${packageBuildDescription()}, wasm target features ${wasmTargetFeatures()}, one worker`,
    `- wllama ${versions.wllama} (llama.cpp compiled to wasm; its one wasm file runs pthreads when the page is cross-origin isolated)`,
    `- llama.cpp native: ${versions.native}`,
    '',
    '### Targets',
    '',
    '| Target | Measured | Result |',
    '| --- | --- | --- |',
    ...targetRows(models, engineNames).map((row) => `| ${row.join(' | ')} |`),
    '',
  ];
  for (const model of models) {
    lines.push(...modelTable(model, models.find((entry) => entry.id === 'dense'), limits), '');
  }
  lines.push(
    'Prompt token counts include the chat template and the default system prompt. The short prompt is',
    '"What is the capital of France?"; the long one repeats a filler sentence. Time to first token',
    '(TTFT) includes prefill. "cached page to first token" reloads the page with the model in the',
    'Cache API and times from navigation start to the first token of the short prompt, wasm',
    'instantiation and model load included. For prunechat, decode speed counts the tokens after the',
    'first over the time spent inside `nextToken` (docs/worker-protocol.md). For wllama, prefill and',
    "decode speeds are llama.cpp's own timings, and TTFT is the wall time of a one-token completion.",
    'For native llama.cpp (llama-cpp-python), prefill is the wall time of one `eval` call over the',
    'prompt, and decode the wall time from the first to the last generated token.',
    'A 2-thread row reads "not available" when the engine reports that it runs on 1 thread, for',
    'example because the page is not cross-origin isolated or the wasm build has no threads.',
  );
  for (const note of notes) {
    lines.push('', note);
  }
  lines.push('', ...limitsLines(limits, models, limitsSettings), sectionEnd);
  return lines.join('\n');
}
