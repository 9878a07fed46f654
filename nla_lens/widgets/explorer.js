// NLAExplorer view: a prompt box, token chips coloured by their gain over the mean direction, and a details panel.
// Everything drawn comes from the model's synced traits, so a saved notebook redraws the last
// state without a kernel. No library, no network: the DOM is built by hand and every piece of
// text goes in through textContent (never parsed as HTML).

function h(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text;
  return node;
}

const finite = (v) => typeof v === "number" && Number.isFinite(v);

function fmt(v) {
  return finite(v) ? v.toFixed(3) : "\u2013";
}

// A token's gain over the mean direction (1 - mse / mse of predicting the mean direction):
// red at <= 0 (no better than the mean direction), yellow at 0.5, green at 1; grey when unknown.
// The same ramp as nla_lens.vis.side_by_side.score_colour.
function colour(gain) {
  if (!finite(gain)) return "#eaeef2";
  const hue = 120 * Math.min(1, Math.max(0, gain));
  return `hsl(${Math.round(hue)}, 75%, 82%)`;
}

// Newlines and tabs stay visible inside a one-line chip.
const shown = (token) => String(token ?? "").replace(/\n/g, "\u21b5").replace(/\t/g, "\u2192");

function scoreLine(row) {
  const flag = row.ok === false ? " \u00b7 flagged (missing tag, truncated or non-English)" : "";
  return `gain ${fmt(row.gain)} \u00b7 cosine ${fmt(row.cosine)} \u00b7 mse ${fmt(row.mse)}${flag}`;
}

function legend() {
  const box = h("div", "nla-x-legend");
  box.appendChild(h("span", "", "Gain over the mean direction:"));
  for (const [value, label] of [[0, "\u2264 0: no better than the mean direction"], [0.5, "0.5"], [1, "1: perfect"]]) {
    const sw = h("span", "nla-x-swatch", label);
    sw.style.background = colour(value);
    box.appendChild(sw);
  }
  const grey = h("span", "nla-x-swatch", "not explained");
  grey.style.background = colour(null);
  box.appendChild(grey);
  box.appendChild(h("span", "", "(the raw cosine flatters: the mean direction alone often scores 0.7-0.8). Click a token for details and alternatives."));
  return box;
}

function render({ model, el }) {
  const root = h("div", "nla-explorer");
  const input = h("div", "nla-x-input");
  const area = h("textarea", "nla-x-prompt");
  area.rows = 3;
  area.placeholder = "Type a prompt, then Explain (Ctrl+Enter)";
  area.setAttribute("aria-label", "prompt");
  const controls = h("div", "nla-x-controls");
  const run = h("button", "nla-x-run", "Explain");
  run.type = "button";
  const hookLabel = h("label", "nla-x-hook");
  hookLabel.appendChild(h("span", "", "hook "));
  const select = h("select", "nla-x-select");
  hookLabel.appendChild(select);
  const hookName = h("span", "nla-x-hookname");
  const busy = h("span", "nla-x-busy", "working\u2026");
  controls.append(run, hookLabel, hookName, busy);
  input.append(area, controls);
  const notice = h("div", "nla-x-notice");
  notice.setAttribute("role", "alert");
  const strip = h("div", "nla-x-strip");
  const details = h("div", "nla-x-details");
  root.append(input, notice, strip, legend(), details);
  el.appendChild(root);

  const send = (name, value) => {
    model.set(name, value);
    model.save_changes();
  };
  const explain = () => {
    if (area.value !== model.get("prompt")) send("prompt", area.value);
    else send("run_requested", (model.get("run_requested") || 0) + 1);
  };
  const choose = (position) => send("selected", model.get("selected") === position ? -1 : position);

  const drawPrompt = () => {
    if (area.value !== model.get("prompt")) area.value = model.get("prompt");
  };
  const drawHooks = () => {
    const hooks = model.get("hooks") || [];
    const options = hooks.map((name) => {
      const option = h("option", "", name);
      option.value = name;
      return option;
    });
    select.replaceChildren(...options);
    select.value = model.get("hook");
    hookLabel.style.display = hooks.length > 1 ? "" : "none";
    hookName.style.display = hooks.length > 1 ? "none" : "";
    hookName.textContent = `hook ${model.get("hook")}`;
  };
  const drawNotice = () => {
    const text = model.get("notice") || "";
    notice.textContent = text;
    notice.style.display = text ? "" : "none";
  };
  const drawBusy = () => {
    const on = Boolean(model.get("busy"));
    busy.style.visibility = on ? "visible" : "hidden";
    run.disabled = on;
    select.disabled = on;
    root.classList.toggle("nla-x-is-busy", on);
  };
  const drawStrip = () => {
    const rows = model.get("tokens") || [];
    const selected = model.get("selected");
    const chips = [];
    const first = model.get("first_token");
    if (first) {
      const chip = h("span", "nla-x-tok nla-x-first", shown(first));
      chip.title = "#0 (the first token is not explained)";
      chip.style.background = colour(null);
      chips.push(chip);
    }
    for (const row of rows) {
      const chip = h("span", "nla-x-tok", shown(row.token));
      chip.style.background = colour(row.gain);
      if (row.position === selected) chip.classList.add("nla-x-selected");
      if (row.ok === false) chip.classList.add("nla-x-flagged");
      chip.title = `#${row.position} ${JSON.stringify(row.token)}  ${scoreLine(row)}\n${row.explanation}`;
      chip.tabIndex = 0;
      chip.setAttribute("role", "button");
      chip.setAttribute("aria-pressed", String(row.position === selected));
      chip.addEventListener("click", () => choose(row.position));
      chip.addEventListener("keydown", (event) => {
        if (event.key === "Enter" || event.key === " ") {
          event.preventDefault();
          choose(row.position);
        }
      });
      chips.push(chip);
    }
    if (!chips.length) chips.push(h("span", "nla-x-empty", "No tokens yet: type a prompt above."));
    strip.replaceChildren(...chips);
  };
  const drawDetails = () => {
    const selected = model.get("selected");
    const row = (model.get("tokens") || []).find((r) => r.position === selected);
    if (!row) {
      details.replaceChildren(h("div", "nla-x-empty", "Select a token to see its explanation."));
      return;
    }
    const head = h("div", "nla-x-head");
    const chip = h("span", "nla-x-tok", shown(row.token));
    chip.style.background = colour(row.gain);
    head.append(h("span", "", `#${row.position} `), chip, h("span", "nla-x-score", scoreLine(row)));
    const text = h("div", "nla-x-text", row.explanation || "(empty)");
    const alts = model.get("alternatives") || [];
    const altBox = h("div", "nla-x-alts");
    altBox.appendChild(h("div", "nla-x-subtitle", "Alternative explanations (sampled)"));
    if (!alts.length) {
      altBox.appendChild(h("div", "nla-x-empty", model.get("busy") ? "Sampling\u2026" : "None."));
    } else {
      const list = h("ol", "nla-x-list");
      for (const alt of alts) {
        const item = h("li", alt.ok === false ? "nla-x-flagged" : "");
        const score = h("span", "nla-x-score", scoreLine(alt));
        score.style.background = colour(alt.gain);
        item.append(h("div", "nla-x-text", alt.explanation || "(empty)"), score);
        list.appendChild(item);
      }
      altBox.appendChild(list);
    }
    details.replaceChildren(head, text, altBox);
  };

  run.addEventListener("click", explain);
  area.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      explain();
    }
  });
  select.addEventListener("change", () => send("hook", select.value));

  const handlers = [
    ["change:prompt", drawPrompt],
    ["change:hooks", drawHooks],
    ["change:hook", drawHooks],
    ["change:notice", drawNotice],
    ["change:busy", drawBusy],
    ["change:busy", drawDetails],
    ["change:tokens", drawStrip],
    ["change:first_token", drawStrip],
    ["change:selected", drawStrip],
    ["change:tokens", drawDetails],
    ["change:selected", drawDetails],
    ["change:alternatives", drawDetails],
  ];
  for (const [event, fn] of handlers) model.on(event, fn);
  drawPrompt();
  drawHooks();
  drawNotice();
  drawBusy();
  drawStrip();
  drawDetails();
  return () => { for (const [event, fn] of handlers) model.off(event, fn); };
}

export default { render };
