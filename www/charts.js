// Plain SVG charts: a horizontal bar chart and a scatter plot for the compare
// view, a line chart for the training loss. Labels go in through textContent, so model names never parse as markup.

const SVG_NS = 'http://www.w3.org/2000/svg';

function svgElement(name, attributes = {}, text = null) {
  const element = document.createElementNS(SVG_NS, name);
  for (const [key, value] of Object.entries(attributes)) {
    element.setAttribute(key, String(value));
  }
  if (text !== null) {
    element.textContent = text;
  }
  return element;
}

/** Returns a round step (1, 2 or 5 times a power of ten) for about `count` ticks up to `max`. */
function tickStep(max, count) {
  const raw = max / count;
  const power = 10 ** Math.floor(Math.log10(raw));
  const fraction = raw / power;
  for (const nice of [1, 2, 5]) {
    if (fraction <= nice) {
      return nice * power;
    }
  }
  return 10 * power;
}

/** Draws `message` in the middle of an empty chart. */
function drawEmpty(svg, width, height, message) {
  svg.append(svgElement('text', { x: width / 2, y: height / 2, 'text-anchor': 'middle', class: 'chart-empty' }, message));
}

/**
 * Draws both axes from 0 with ticks every `xStep` and `yStep` and the axis
 * titles, and returns the data-to-pixel maps `px` and `py` and `plotWidth`.
 */
function drawAxes(svg, { width, height, margin, xMax, yMax, xStep, yStep, xLabel, yLabel, formatX, formatY }) {
  const plotWidth = width - margin.left - margin.right;
  const plotHeight = height - margin.top - margin.bottom;
  const px = (x) => margin.left + (x / xMax) * plotWidth;
  const py = (y) => margin.top + plotHeight - (y / yMax) * plotHeight;

  const axes = svgElement('g', { class: 'chart-axes' });
  axes.append(
    svgElement('line', { x1: margin.left, y1: py(0), x2: margin.left + plotWidth, y2: py(0) }),
    svgElement('line', { x1: margin.left, y1: margin.top, x2: margin.left, y2: py(0) }),
  );
  for (let x = 0; x <= xMax + 1e-9; x += xStep) {
    axes.append(
      svgElement('line', { x1: px(x), y1: py(0), x2: px(x), y2: py(0) + 4 }),
      svgElement('text', { x: px(x), y: py(0) + 16, 'text-anchor': 'middle', class: 'chart-tick' }, formatX(x)),
    );
  }
  for (let y = 0; y <= yMax + 1e-9; y += yStep) {
    axes.append(
      svgElement('line', { x1: margin.left - 4, y1: py(y), x2: margin.left, y2: py(y) }),
      svgElement('text', { x: margin.left - 8, y: py(y), 'text-anchor': 'end', 'dominant-baseline': 'middle', class: 'chart-tick' }, formatY(y)),
    );
  }
  axes.append(
    svgElement('text', { x: margin.left + plotWidth / 2, y: height - 8, 'text-anchor': 'middle', class: 'chart-axis-title' }, xLabel),
    svgElement('text', { x: 14, y: margin.top + plotHeight / 2, 'text-anchor': 'middle', transform: `rotate(-90 14 ${margin.top + plotHeight / 2})`, class: 'chart-axis-title' }, yLabel),
  );
  svg.append(axes);
  return { px, py, plotWidth };
}

/**
 * Draws one horizontal bar per item into `svg`.
 * `items`: [{label, value, valueText}]; items without a finite value are left out.
 */
export function drawBarChart(svg, items, { emptyMessage }) {
  const bars = items.filter((item) => Number.isFinite(item.value));
  const labelWidth = 170;
  const valueWidth = 110;
  const barHeight = 22;
  const gap = 8;
  const width = 560;
  const height = Math.max(60, bars.length * (barHeight + gap) + gap);
  svg.replaceChildren();
  svg.setAttribute('viewBox', `0 0 ${width} ${height}`);
  svg.dataset.count = String(bars.length);
  if (bars.length === 0) {
    drawEmpty(svg, width, height, emptyMessage);
    return;
  }

  const max = Math.max(...bars.map((item) => item.value), 1e-9);
  const scale = (width - labelWidth - valueWidth) / max;
  bars.forEach((item, i) => {
    const y = gap + i * (barHeight + gap);
    const group = svgElement('g', { class: 'chart-bar', 'data-value': item.value });
    group.append(
      svgElement('text', { x: labelWidth - 8, y: y + barHeight / 2, 'text-anchor': 'end', 'dominant-baseline': 'middle', class: 'chart-label' }, item.label),
      svgElement('rect', { x: labelWidth, y, width: Math.max(1, item.value * scale), height: barHeight, rx: 3, class: `chart-fill chart-fill-${i % 6}` }),
      svgElement('text', { x: labelWidth + item.value * scale + 6, y: y + barHeight / 2, 'dominant-baseline': 'middle', class: 'chart-value' }, item.valueText),
    );
    group.append(svgElement('title', {}, `${item.label}: ${item.valueText}`));
    svg.append(group);
  });
}

/**
 * Draws a scatter plot with labelled points and linear axes starting at 0.
 * `points`: [{label, x, y, xText, yText}]; points without finite x and y are
 * left out. `xLabel`, `yLabel`: axis titles.
 */
export function drawScatterChart(svg, points, { xLabel, yLabel, emptyMessage, formatX, formatY }) {
  const shown = points.filter((point) => Number.isFinite(point.x) && Number.isFinite(point.y));
  const width = 560;
  const height = 300;
  const margin = { left: 64, right: 24, top: 16, bottom: 48 };
  svg.replaceChildren();
  svg.setAttribute('viewBox', `0 0 ${width} ${height}`);
  svg.dataset.count = String(shown.length);
  if (shown.length === 0) {
    drawEmpty(svg, width, height, emptyMessage);
    return;
  }

  const xMax = Math.max(...shown.map((point) => point.x), 0.1) * 1.1;
  const yMax = Math.max(...shown.map((point) => point.y), 1) * 1.15;
  const { px, py, plotWidth } = drawAxes(svg, { width, height, margin, xMax, yMax, xStep: tickStep(xMax, 5), yStep: tickStep(yMax, 5), xLabel, yLabel, formatX, formatY });

  shown.forEach((point, i) => {
    const group = svgElement('g', { class: 'chart-point', 'data-x': point.x, 'data-y': point.y });
    // Labels of points in the right third go to their left, so that they stay inside the chart.
    const labelLeft = px(point.x) > margin.left + (plotWidth * 2) / 3;
    const label = { x: px(point.x) + (labelLeft ? -8 : 8), y: py(point.y) - 8, class: 'chart-label' };
    if (labelLeft) {
      label['text-anchor'] = 'end';
    }
    group.append(
      svgElement('circle', { cx: px(point.x), cy: py(point.y), r: 5, class: `chart-fill chart-fill-${i % 6}` }),
      svgElement('text', label, point.label),
      svgElement('title', {}, `${point.label}: ${point.xText}, ${point.yText}`),
    );
    svg.append(group);
  });
}

/**
 * Draws lines through points, with linear axes: x from 0 and y from 0.
 * `series`: [{label, points: [{x, y}], className}]; points without finite
 * coordinates are left out. Each series' last point carries its value as a
 * `title`, and the series' `data-last` attribute is that last y.
 */
export function drawLineChart(svg, series, { xLabel, yLabel, emptyMessage, formatX, formatY }) {
  const shown = series
    .map((line) => ({ ...line, points: line.points.filter((p) => Number.isFinite(p.x) && Number.isFinite(p.y)) }))
    .filter((line) => line.points.length > 0);
  const width = 560;
  const height = 240;
  const margin = { left: 56, right: 24, top: 16, bottom: 44 };
  svg.replaceChildren();
  svg.setAttribute('viewBox', `0 0 ${width} ${height}`);
  svg.dataset.count = String(shown.reduce((sum, line) => sum + line.points.length, 0));
  if (shown.length === 0) {
    drawEmpty(svg, width, height, emptyMessage);
    return;
  }

  const all = shown.flatMap((line) => line.points);
  const xMax = Math.max(...all.map((p) => p.x), 1);
  const yMax = Math.max(...all.map((p) => p.y), 1e-3) * 1.1;
  const { px, py } = drawAxes(svg, { width, height, margin, xMax, yMax, xStep: Math.max(1, tickStep(xMax, 5)), yStep: tickStep(yMax, 4), xLabel, yLabel, formatX, formatY });

  shown.forEach((line, i) => {
    const last = line.points[line.points.length - 1];
    const group = svgElement('g', { class: `chart-line ${line.className ?? ''}`.trim(), 'data-last': last.y, 'data-count': line.points.length });
    const path = line.points.map((p, j) => `${j === 0 ? 'M' : 'L'}${px(p.x).toFixed(1)},${py(p.y).toFixed(1)}`).join(' ');
    group.append(svgElement('path', { d: path, class: `chart-stroke chart-stroke-${i % 6}` }));
    for (const p of line.points.length <= 60 ? line.points : [last]) {
      group.append(svgElement('circle', { cx: px(p.x), cy: py(p.y), r: 2.5, class: `chart-fill chart-fill-${i % 6}` }));
    }
    group.append(
      svgElement('text', { x: px(last.x) - 6, y: py(last.y) - 8, 'text-anchor': 'end', class: 'chart-label' }, line.label),
      svgElement('title', {}, `${line.label}: ${formatY(last.y)}`),
    );
    svg.append(group);
  });
}
