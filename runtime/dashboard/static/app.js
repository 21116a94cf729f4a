// loft dashboard: polls /api/runs and /api/metrics, draws SVG line charts. No external assets, no build
// step: the page must work on an offline GPU box behind an SSH tunnel.
"use strict";

const COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22"];
const POLL_MS = Number(new URLSearchParams(location.search).get("interval") || 1000);
const state = { runs: [], data: {} };  // data[id] = {offset, records}

function fmt(v, digits) {
  if (v === null || v === undefined || Number.isNaN(v)) return "–";
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-3 || a >= 1e5)) return v.toExponential(digits === undefined ? 2 : Math.max(0, digits - 1));
  return Number(v.toPrecision(digits === undefined ? 4 : digits)).toString();
}

function duration(s) {
  if (s === null || s === undefined) return "–";
  s = Math.round(s);
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
  return h ? `${h}h${String(m).padStart(2, "0")}m` : m ? `${m}m${String(r).padStart(2, "0")}s` : `${r}s`;
}

function el(tag, attrs, parent) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (parent) parent.appendChild(node);
  return node;
}

// series: [{points: [[x, y]], color, dash, dots}], hlines: [{y, color}]
function draw(svg, series, hlines) {
  const w = svg.clientWidth || 420, h = svg.clientHeight || 220, pad = { l: 48, r: 8, t: 8, b: 20 };
  while (svg.firstChild) svg.removeChild(svg.firstChild);
  svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
  const pts = series.flatMap(s => s.points.concat(s.dots || []));
  const ys = pts.map(p => p[1]).concat((hlines || []).map(l => l.y));
  svg.dataset.points = String(series.reduce((n, s) => n + s.points.length, 0));
  if (!pts.length) { el("text", { x: w / 2 - 20, y: h / 2 }, svg).textContent = "no data yet"; return; }
  let x0 = Math.min(...pts.map(p => p[0])), x1 = Math.max(...pts.map(p => p[0]));
  let y0 = Math.min(...ys), y1 = Math.max(...ys);
  if (x1 === x0) x1 = x0 + 1;
  if (y1 === y0) { y0 -= Math.abs(y0) * 0.1 || 1; y1 += Math.abs(y1) * 0.1 || 1; }
  const sx = x => pad.l + (x - x0) / (x1 - x0) * (w - pad.l - pad.r);
  const sy = y => h - pad.b - (y - y0) / (y1 - y0) * (h - pad.t - pad.b);
  for (let i = 0; i <= 4; i++) {
    const y = y0 + (y1 - y0) * i / 4;
    el("line", { x1: pad.l, x2: w - pad.r, y1: sy(y), y2: sy(y), class: "grid" }, svg);
    el("text", { x: 2, y: sy(y) + 3 }, svg).textContent = fmt(y, 3);
  }
  el("text", { x: pad.l, y: h - 4 }, svg).textContent = `step ${fmt(x0)}`;
  el("text", { x: w - pad.r - 60, y: h - 4 }, svg).textContent = `step ${fmt(x1)}`;
  for (const l of hlines || []) {
    el("line", { x1: pad.l, x2: w - pad.r, y1: sy(l.y), y2: sy(l.y), stroke: l.color, class: "line dash" }, svg);
  }
  for (const s of series) {
    if (s.points.length) {
      const d = s.points.map((p, i) => `${i ? "L" : "M"}${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`).join("");
      el("path", { d, stroke: s.color, class: "line" + (s.dash ? " dash" : "") }, svg);
      if (s.points.length === 1) el("circle", { cx: sx(s.points[0][0]), cy: sy(s.points[0][1]), r: 2.5, fill: s.color }, svg);
    }
    for (const p of s.dots || []) el("circle", { cx: sx(p[0]), cy: sy(p[1]), r: 4, class: "spike" }, svg);
  }
}

function col(records, key) {
  return records.filter(r => typeof r[key] === "number" && typeof r.step === "number").map(r => [r.step, r[key]]);
}

function render() {
  const charts = { loss: [], lr: [], grad: [], tps: [], mem: [], util: [] };
  const lines = { tps: [], mem: [] };
  const cards = document.getElementById("runs");
  while (cards.firstChild) cards.removeChild(cards.firstChild);
  state.runs.forEach((run, i) => {
    const c = COLORS[i % COLORS.length];
    const recs = (state.data[run.id] || { records: [] }).records;
    const train = recs.filter(r => "loss" in r);
    const spikes = train.filter(r => r.spike && typeof r.loss === "number").map(r => [r.step, r.loss]);
    charts.loss.push({ points: col(train, "loss"), color: c, dots: spikes });
    charts.loss.push({ points: col(recs, "eval_loss"), color: c, dash: true });
    charts.lr.push({ points: col(train, "learning_rate"), color: c });
    charts.grad.push({ points: col(train, "grad_norm"), color: c });
    charts.tps.push({ points: col(train, "tokens_per_s"), color: c });
    const gpus = new Map();
    for (const r of train) for (const g of r.gpus || []) {
      if (!gpus.has(g.index)) gpus.set(g.index, { mem: [], util: [] });
      gpus.get(g.index).mem.push([r.step, g.mem_used_gib]);
      gpus.get(g.index).util.push([r.step, g.util_pct]);
    }
    for (const g of gpus.values()) { charts.mem.push({ points: g.mem, color: c }); charts.util.push({ points: g.util, color: c }); }
    charts.mem.push({ points: col(train, "mem_peak_reserved_gib"), color: c, dash: gpus.size > 0 });
    const est = run.estimate || {};
    if (typeof est.total_gib === "number") lines.mem.push({ y: est.total_gib, color: c });
    if (typeof est.tokens_per_s === "number") lines.tps.push({ y: est.tokens_per_s, color: c });
    const last = train[train.length - 1] || {};
    const measured = (run.report || {}).measured || {};
    const eta = last.max_steps && last.step && last.elapsed_s ? (last.max_steps - last.step) * last.elapsed_s / last.step : null;
    const peak = measured.peak_total_gib !== undefined ? measured.peak_total_gib
      : Math.max(...train.map(r => r.mem_peak_reserved_gib || 0), 0) || null;
    const card = document.createElement("div");
    card.className = "run"; card.style.setProperty("--c", c); card.dataset.run = run.id;
    const rows = [["step", `${last.step || 0} / ${last.max_steps || "?"}`], ["epoch", fmt(last.epoch, 3)],
      ["loss", fmt(last.loss)], ["tokens/s", fmt(last.tokens_per_s)], ["ETA", (run.report || {}).status || duration(eta)],
      ["spikes", String(train.filter(r => r.spike).length)],
      ["peak GiB", `${fmt(peak)} (est. ${fmt(est.total_gib)})`]];
    const b = document.createElement("b"); b.textContent = run.label; card.appendChild(b);
    const dl = document.createElement("dl");
    for (const [k, v] of rows) {
      const dt = document.createElement("dt"); dt.textContent = k; dl.appendChild(dt);
      const dd = document.createElement("dd"); dd.textContent = v; dd.dataset.key = k; dl.appendChild(dd);
    }
    card.appendChild(dl); cards.appendChild(card);
  });
  draw(document.getElementById("chart-loss"), charts.loss);
  draw(document.getElementById("chart-lr"), charts.lr);
  draw(document.getElementById("chart-grad"), charts.grad);
  draw(document.getElementById("chart-tps"), charts.tps, lines.tps);
  draw(document.getElementById("chart-mem"), charts.mem, lines.mem);
  draw(document.getElementById("chart-util"), charts.util);
}

async function poll() {
  try {
    state.runs = await (await fetch("/api/runs")).json();
    for (const run of state.runs) {
      const d = state.data[run.id] || (state.data[run.id] = { offset: 0, records: [] });
      const r = await (await fetch(`/api/metrics?run=${encodeURIComponent(run.id)}&offset=${d.offset}`)).json();
      if (r.reset) d.records = [];
      d.records = d.records.concat(r.records || []);
      d.offset = r.offset || 0;
    }
    render();
    document.getElementById("status").textContent = `live · ${state.runs.length} run(s) · ${new Date().toLocaleTimeString()}`;
  } catch (e) {
    document.getElementById("status").textContent = `disconnected (${e})`;
  }
  setTimeout(poll, POLL_MS);
}

poll();
