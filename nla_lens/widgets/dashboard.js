// NLADashboard view: SVG line charts, a samples table and a stop button.
// Everything drawn comes from the model's synced traits, so a saved notebook redraws the final
// state without a kernel. No plotting library, no network: the DOM is built by hand and every
// piece of text goes in through textContent (never parsed as HTML).

// The SVG namespace, taken from the HTML parser rather than written out as a URI.
const SVG_NS = new DOMParser().parseFromString("<svg></svg>", "text/html").body.firstChild.namespaceURI;

const W = 300;
const H = 150;
const M = { l: 46, r: 10, t: 8, b: 20 };

const PANELS = [
  { title: "Loss", series: [
    { key: "loss", label: "training loss" },
    { key: "ar_loss", label: "AR reconstruction loss" }] },
  { title: "Held-out fve_nrm", series: [
    { key: "eval_fve_nrm", label: "fve_nrm" },
    { key: "eval_fve_nrm_shuffled", label: "shuffled control", dashed: true }] },
  { title: "Reward", series: [
    { key: "reward_mean", label: "mean \u00b1 std", band: "reward_std" },
    { key: "eval_reward_mean", label: "held-out", dashed: true }] },
  { title: "KL to reference", series: [{ key: "kl", label: "kl" }] },
  { title: "Response length (tokens)", series: [{ key: "response_length", label: "mean length" }] },
];

function h(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text;
  return node;
}

function s(tag, attrs, parent) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (parent) parent.appendChild(node);
  return node;
}

const finite = (v) => typeof v === "number" && Number.isFinite(v);

function fmt(v) {
  if (!finite(v)) return "\u2013";
  const a = Math.abs(v);
  if (a !== 0 && (a >= 1e4 || a < 1e-3)) return v.toExponential(2);
  return String(Number(v.toPrecision(3)));
}

function clock(seconds) {
  if (!finite(seconds)) return "\u2013";
  const t = Math.max(0, Math.round(seconds));
  const hh = Math.floor(t / 3600);
  const mm = Math.floor((t % 3600) / 60);
  const ss = String(t % 60).padStart(2, "0");
  return hh ? `${hh}:${String(mm).padStart(2, "0")}:${ss}` : `${mm}:${ss}`;
}

function points(rows, key) {
  return rows.filter((r) => finite(r.step) && finite(r[key])).map((r) => [r.step, r[key]]);
}

function extent(values) {
  let lo = Math.min(...values);
  let hi = Math.max(...values);
  if (lo === hi) {
    const pad = Math.abs(lo) * 0.1 || 1;
    lo -= pad;
    hi += pad;
  }
  return [lo, hi];
}

function chart(panel, rows) {
  const series = panel.series
    .map((spec, i) => ({ ...spec, i, pts: points(rows, spec.key) }))
    .filter((spec) => spec.pts.length);
  if (!series.length) return null;

  const xs = [];
  const ys = [];
  for (const spec of series) {
    spec.bandPts = [];
    for (const r of spec.band ? rows : []) {
      if (finite(r.step) && finite(r[spec.key]) && finite(r[spec.band])) {
        spec.bandPts.push([r.step, r[spec.key] - r[spec.band], r[spec.key] + r[spec.band]]);
        ys.push(r[spec.key] - r[spec.band], r[spec.key] + r[spec.band]);
      }
    }
    for (const [x, y] of spec.pts) { xs.push(x); ys.push(y); }
  }
  let [x0, x1] = [Math.min(...xs), Math.max(...xs)];
  if (x0 === x1) { x0 -= 1; x1 += 1; }
  let [y0, y1] = extent(ys);
  const pad = (y1 - y0) * 0.05;
  y0 -= pad;
  y1 += pad;
  const sx = (x) => M.l + ((x - x0) / (x1 - x0)) * (W - M.l - M.r);
  const sy = (y) => H - M.b - ((y - y0) / (y1 - y0)) * (H - M.t - M.b);

  const box = h("div", "nla-panel");
  const head = h("div", "nla-panel-title", panel.title);
  box.appendChild(head);
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, class: "nla-chart", role: "img", "aria-label": panel.title }, box);
  for (const y of [y0 + pad, (y0 + y1) / 2, y1 - pad]) {
    s("line", { x1: M.l, x2: W - M.r, y1: sy(y), y2: sy(y), class: "nla-grid" }, svg);
    s("text", { x: M.l - 4, y: sy(y) + 3, class: "nla-tick", "text-anchor": "end" }, svg).textContent = fmt(y);
  }
  s("line", { x1: M.l, x2: M.l, y1: M.t, y2: H - M.b, class: "nla-axis" }, svg);
  s("line", { x1: M.l, x2: W - M.r, y1: H - M.b, y2: H - M.b, class: "nla-axis" }, svg);
  const xt = (x, anchor) => {
    const label = s("text", { x: sx(x), y: H - 6, class: "nla-tick", "text-anchor": anchor }, svg);
    label.textContent = String(Math.round(x));
  };
  xt(Math.min(...xs), "start");
  if (Math.max(...xs) !== Math.min(...xs)) xt(Math.max(...xs), "end");

  const legend = h("div", "nla-legend");
  for (const spec of series) {
    if (spec.bandPts.length > 1) {
      const upper = spec.bandPts.map(([x, , hi]) => `${sx(x)},${sy(hi)}`);
      const lower = spec.bandPts.slice().reverse().map(([x, lo]) => `${sx(x)},${sy(lo)}`);
      s("polygon", { points: upper.concat(lower).join(" "), class: `nla-band nla-c${spec.i}` }, svg);
    }
    const cls = `nla-line nla-c${spec.i}${spec.dashed ? " nla-dashed" : ""}`;
    if (spec.pts.length > 1) {
      s("polyline", { points: spec.pts.map(([x, y]) => `${sx(x)},${sy(y)}`).join(" "), class: cls }, svg);
    }
    if (spec.pts.length <= 60) {
      for (const [x, y] of spec.pts) s("circle", { cx: sx(x), cy: sy(y), r: 2, class: `nla-dot nla-c${spec.i}` }, svg);
    }
    const item = h("span", "nla-legend-item");
    item.appendChild(h("span", `nla-swatch nla-c${spec.i}${spec.dashed ? " nla-dashed" : ""}`));
    item.appendChild(h("span", "", `${spec.label} ${fmt(spec.pts[spec.pts.length - 1][1])}`));
    legend.appendChild(item);
  }
  box.appendChild(legend);
  return box;
}

function samplesTable(samples, step) {
  const wrap = h("div", "nla-samples");
  if (!samples.length) return wrap;
  const table = h("table", "nla-table");
  table.appendChild(h("caption", "", `Latest samples (step ${step})`));
  const head = h("tr");
  for (const name of ["vector", "reward", "explanation"]) head.appendChild(h("th", "", name));
  table.appendChild(h("thead")).appendChild(head);
  const body = table.appendChild(h("tbody"));
  for (const row of samples) {
    const tr = h("tr", row.failed ? "nla-failed" : "");
    tr.appendChild(h("td", "nla-num", row.vector === undefined || row.vector === null ? "" : String(row.vector)));
    tr.appendChild(h("td", "nla-num", row.failed ? `${fmt(row.reward)} (failed)` : fmt(row.reward)));
    tr.appendChild(h("td", "nla-text", String(row.explanation ?? "")));
    body.appendChild(tr);
  }
  wrap.appendChild(table);
  return wrap;
}

function render({ model, el }) {
  const root = h("div", "nla-dash");
  const header = h("div", "nla-header");
  const title = h("span", "nla-title");
  const status = h("span", "nla-status");
  const counter = h("span", "nla-counter");
  const track = h("span", "nla-progress");
  const bar = track.appendChild(h("span", "nla-bar"));
  const times = h("span", "nla-times");
  const stop = h("button", "nla-stop", "Stop");
  stop.type = "button";
  stop.title = "Stop training cleanly after the current step";
  header.append(title, status, counter, track, times, stop);
  const charts = h("div", "nla-charts");
  const samples = h("div");
  root.append(header, charts, samples);
  el.appendChild(root);

  const drawHeader = () => {
    const step = model.get("step");
    const total = model.get("total_steps");
    const state = model.get("status");
    const stopping = state === "stopping" || (state === "running" && model.get("stop_requested"));
    title.textContent = model.get("title");
    status.textContent = stopping ? "stopping" : state;
    status.className = `nla-status nla-status-${stopping ? "stopping" : state}`;
    counter.textContent = total >= step && total > 0 ? `step ${step} / ${total}` : `step ${step}`;
    bar.style.width = total > 0 ? `${Math.min(100, (100 * step) / total)}%` : "0%";
    times.textContent = `elapsed ${clock(model.get("elapsed"))} \u00b7 ETA ${clock(model.get("eta"))}`;
    stop.disabled = state !== "running" || stopping;
    stop.textContent = stopping ? "Stopping\u2026" : "Stop";
  };
  // Before the first step there is nothing to plot and no step time to estimate from, and a first
  // GRPO step on a CPU can take minutes: a clock ticking in the browser shows the kernel is at work.
  let since = Date.now() - 1000 * (model.get("elapsed") || 0);
  const waiting = () => {
    if (model.get("status") !== "running") return "Waiting for the first step\u2026";
    return `Waiting for the first step\u2026 ${clock((Date.now() - since) / 1000)} so far (a first step on a CPU can take minutes)`;
  };
  const drawCharts = () => {
    const rows = model.get("history") || [];
    const panels = PANELS.map((panel) => chart(panel, rows)).filter(Boolean);
    charts.replaceChildren(...(panels.length ? panels : [h("div", "nla-empty", waiting())]));
  };
  const onStatus = () => {
    if (model.get("status") === "running") since = Date.now() - 1000 * (model.get("elapsed") || 0);
    drawCharts();
  };
  const tick = setInterval(() => {
    if (!(model.get("history") || []).length && model.get("status") === "running") drawCharts();
  }, 1000);
  const drawSamples = () => {
    samples.replaceChildren(samplesTable(model.get("samples") || [], model.get("step")));
  };

  stop.addEventListener("click", () => {
    model.set("stop_requested", true);
    model.save_changes();
    drawHeader();
  });

  const handlers = [["change:history", drawCharts], ["change:samples", drawSamples], ["change:status", onStatus]];
  for (const name of ["step", "total_steps", "elapsed", "eta", "status", "title", "stop_requested"]) {
    handlers.push([`change:${name}`, drawHeader]);
  }
  for (const [event, fn] of handlers) model.on(event, fn);
  drawHeader();
  drawCharts();
  drawSamples();
  return () => {
    clearInterval(tick);
    for (const [event, fn] of handlers) model.off(event, fn);
  };
}

export default { render };
