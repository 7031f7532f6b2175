// Tiny SVG charts for the admin console: line charts and stacked bars, no dependencies.
"use strict";

const Charts = (() => {
  const NS = "http://www.w3.org/2000/svg";
  const PALETTE = ["#2563eb", "#f97316", "#16a34a", "#9333ea", "#dc2626", "#0891b2", "#ca8a04"];

  function el(name, attrs, parent) {
    const node = document.createElementNS(NS, name);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (parent) parent.appendChild(node);
    return node;
  }

  function niceMax(value) {
    if (!(value > 0)) return 1;
    const power = Math.pow(10, Math.floor(Math.log10(value)));
    for (const step of [1, 2, 2.5, 5, 10]) if (step * power >= value) return step * power;
    return 10 * power;
  }

  function frame(container, labels, minY, maxY, format) {
    container.replaceChildren();
    const width = 520, height = 220, pad = { l: 64, r: 12, t: 10, b: 34 };
    const svg = el("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", class: "chart-svg" }, container);
    const plotW = width - pad.l - pad.r, plotH = height - pad.t - pad.b;
    const y = (v) => pad.t + plotH - ((v - minY) / (maxY - minY || 1)) * plotH;
    const x = (i) => pad.l + (labels.length <= 1 ? plotW / 2 : (i * plotW) / (labels.length - 1));
    for (let k = 0; k <= 4; k++) {
      const v = minY + ((maxY - minY) * k) / 4;
      el("line", { x1: pad.l, x2: width - pad.r, y1: y(v), y2: y(v), class: "grid-line" }, svg);
      el("text", { x: pad.l - 6, y: y(v) + 4, "text-anchor": "end", class: "axis" }, svg).textContent = format(v);
    }
    const every = Math.max(1, Math.ceil(labels.length / 6));
    labels.forEach((label, i) => {
      if (i % every === 0 || i === labels.length - 1) {
        el("text", { x: x(i), y: height - 12, "text-anchor": "middle", class: "axis" }, svg).textContent = label;
      }
    });
    return { svg, x, y, plotW, pad, height };
  }

  function legend(container, names) {
    const box = document.createElement("div");
    box.className = "legend";
    names.forEach((name, i) => {
      const item = document.createElement("span");
      const swatch = document.createElement("i");
      swatch.style.background = PALETTE[i % PALETTE.length];
      item.append(swatch, name);
      box.appendChild(item);
    });
    container.appendChild(box);
  }

  function empty(container) {
    container.replaceChildren();
    const p = document.createElement("p");
    p.className = "muted";
    p.textContent = "No traffic in this range.";
    container.appendChild(p);
  }

  // series: [{name, values: [number|null]}], one value per label.
  function line(container, labels, series, format = String) {
    const all = series.flatMap((s) => s.values).filter((v) => v != null);
    if (!labels.length || !all.length) return empty(container);
    const minY = Math.min(0, ...all);
    const f = frame(container, labels, minY, niceMax(Math.max(...all, 0)), format);
    series.forEach((s, n) => {
      const points = s.values.map((v, i) => (v == null ? null : `${f.x(i)},${f.y(v)}`)).filter(Boolean);
      el("polyline", { points: points.join(" "), class: "series", stroke: PALETTE[n % PALETTE.length] }, f.svg);
      s.values.forEach((v, i) => {
        if (v == null || (s.values.length > 48 && !v)) return;
        const dot = el("circle", { cx: f.x(i), cy: f.y(v), r: 2.5, fill: PALETTE[n % PALETTE.length] }, f.svg);
        el("title", {}, dot).textContent = `${s.name} ${labels[i]}: ${format(v)}`;
      });
    });
    legend(container, series.map((s) => s.name));
  }

  // stacks: [{name, values: [number]}]; negative parts are drawn below zero.
  function bars(container, labels, stacks, format = String) {
    if (!labels.length) return empty(container);
    let maxY = 0, minY = 0;
    labels.forEach((_, i) => {
      let pos = 0, neg = 0;
      stacks.forEach((s) => { const v = s.values[i] || 0; if (v >= 0) pos += v; else neg += v; });
      maxY = Math.max(maxY, pos); minY = Math.min(minY, neg);
    });
    const f = frame(container, labels, minY < 0 ? -niceMax(-minY) : 0, niceMax(maxY), format);
    const slot = f.plotW / Math.max(labels.length, 1);
    const width = Math.max(2, Math.min(28, slot * 0.7));
    labels.forEach((label, i) => {
      let pos = 0, neg = 0;
      stacks.forEach((s, n) => {
        const v = s.values[i] || 0;
        if (!v) return;
        const from = v >= 0 ? pos : neg, to = from + v;
        if (v >= 0) pos = to; else neg = to;
        const rect = el("rect", {
          x: f.x(i) - width / 2, y: f.y(Math.max(from, to)), width,
          height: Math.max(1, Math.abs(f.y(from) - f.y(to))), fill: PALETTE[n % PALETTE.length],
        }, f.svg);
        el("title", {}, rect).textContent = `${s.name} ${label}: ${format(v)}`;
      });
    });
    legend(container, stacks.map((s) => s.name));
  }

  // parts: [{name, value}] as one horizontal 100% bar with percentages.
  function share(container, parts) {
    const total = parts.reduce((a, p) => a + p.value, 0);
    if (!total) return empty(container);
    container.replaceChildren();
    const svg = el("svg", { viewBox: "0 0 520 60", class: "chart-svg share", role: "img" }, container);
    let x = 0;
    parts.forEach((p, n) => {
      const w = (p.value / total) * 520;
      const rect = el("rect", { x, y: 8, width: w, height: 36, fill: PALETTE[n % PALETTE.length] }, svg);
      el("title", {}, rect).textContent = `${p.name}: ${p.value}`;
      if (w > 60) {
        el("text", { x: x + w / 2, y: 31, "text-anchor": "middle", class: "on-bar" }, svg).textContent =
          `${p.name} ${((100 * p.value) / total).toFixed(1)}%`;
      }
      x += w;
    });
    legend(container, parts.map((p) => `${p.name} (${((100 * p.value) / total).toFixed(1)}%)`));
  }

  return { line, bars, share };
})();
