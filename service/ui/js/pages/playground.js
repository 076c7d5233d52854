// Query playground: build a cue, pick β and the number of steps, and watch the completion
// step by step (one query per step count: steps = 1..n), with the weights and the energy.

import { api, enc, supportsStepsZero } from "../api.js";
import { barChart, fmt, lineChart } from "../charts.js";
import { cueBuilder, picture } from "../cue.js";
import { busy, errorBox, h, showIn } from "../dom.js";

const TOP_K = 8;

export async function render(slot, name, current) {
  const n = enc(name);
  slot.append(h("h1", {}, `Query playground · ${name}`));
  let info;
  let cue;
  try {
    info = await api(`/v1/banks/${n}`);
    cue = await cueBuilder(n, info);
  } catch (err) {
    slot.append(errorBox(err));
    return;
  }
  if (!current()) return;

  // β on a log scale: the interesting range spans decades (β_min can be 100× the bank's β).
  const logBeta = h("input", { id: "beta", type: "range", min: -2, max: 4, step: 0.05, value: Math.log10(info.beta).toFixed(2) });
  const betaOut = h("output", { for: "beta", id: "beta-value" });
  const steps = h("input", { id: "steps", type: "range", min: 1, max: 20, step: 1, value: 5 });
  const stepsOut = h("output", { for: "steps", id: "steps-value" });
  // Until the slider moves, β is the bank's own value exactly (the log slider rounds it).
  let touched = false;
  logBeta.addEventListener("input", () => { touched = true; }, { once: true });
  const beta = () => (touched ? Number((10 ** Number(logBeta.value)).toPrecision(3)) : info.beta);
  const sync = () => {
    betaOut.textContent = String(beta());
    stepsOut.textContent = steps.value;
  };
  logBeta.addEventListener("input", sync);
  steps.addEventListener("input", sync);
  sync();
  const runBtn = h("button", { type: "button", id: "run-query", class: "primary" }, "Run query");
  const scoreBtn = h("button", { type: "button", id: "score-cue" }, "Score at the cue");
  const controls = h("fieldset", { class: "card" }, h("legend", {}, "Retrieval"),
    h("div", { class: "grid" },
      h("div", { class: "field" }, h("label", { for: "beta" }, "β (log scale)"), logBeta, betaOut),
      h("div", { class: "field" }, h("label", { for: "steps" }, "Steps"), steps, stepsOut)),
    h("div", { class: "row" }, runBtn, scoreBtn));
  const out = h("section", { class: "card", id: "result", "aria-live": "polite" }, h("p", { class: "hint" }, "Run a query to see the completion."));
  // Cue on the left; the knobs above the result on the right, so both fit one laptop screen.
  slot.append(h("div", { class: "columns" }, cue.box, h("div", {}, controls, out)));

  const query = (c, k) => api(`/v1/banks/${n}/query`, { method: "POST",
    body: { queries: [c.vector], mask: c.mask ? [c.mask] : null, beta: beta(), steps: k, top_k: TOP_K } });

  runBtn.addEventListener("click", () => busy(runBtn, async () => {
    const c = await cue.get();
    if (!c) return;
    const total = Number(steps.value);
    const trail = h("div", { class: "steps", id: "step-images" });
    const summary = h("div");
    showIn(out, h("h2", {}, "Completion"), trail, summary);
    const results = [];
    trail.append(h("figure", {}, picture(c.vector, c.side, "cue", { hidden: c.hidden, size: 72 }), h("figcaption", {}, "cue")));
    try {
      // "After each step": the state after k steps is a query with steps = k, drawn as it arrives.
      for (let k = 1; k <= total; k += 1) {
        const r = (await query(c, k)).results[0];
        if (!current()) return;
        results.push(r);
        trail.append(h("figure", { dataset: { step: String(k) } }, picture(r.state, c.side, `state after ${k} steps`, { size: 72 }),
          h("figcaption", {}, `step ${r.steps}${r.converged ? " ✓" : ""}`)));
        if (r.converged && r.steps < k) break; // converged earlier: more steps give the same state
      }
      showIn(summary, ...finalView(results, c, info));
    } catch (err) {
      showIn(summary, errorBox(err));
    }
  }));

  scoreBtn.addEventListener("click", () => busy(scoreBtn, async () => {
    const c = await cue.get();
    if (!c) return;
    const zero = await supportsStepsZero();
    try {
      const r = (await query(c, zero ? 0 : 1)).results[0];
      const note = zero ? "Scored at the cue (steps 0): weights p = softmax(βΞv) and energy at the cue."
        : "This server does not take steps 0 yet (422): these are the weights after one step (steps 1).";
      showIn(out, h("h2", {}, "Scores at the cue"), h("p", { class: "hint", id: "score-note" }, note), ...finalView([r], c, info));
    } catch (err) {
      showIn(out, errorBox(err));
    }
  }));
}

function finalView(results, c, info) {
  const last = results[results.length - 1];
  const labelOf = (m) => {
    const tag = m.payload?.label ?? m.payload?.name;
    return tag === undefined ? m.id : `${m.id} · ${tag}`;
  };
  const completed = picture(last.state, c.side, "completed state", { size: 160 });
  completed.id = "completed";
  const weights = barChart({ labels: last.matches.map(labelOf), values: last.matches.map((m) => m.weight), max: 1,
    label: "Softmax weights p_μ of the top memories at the returned state" });
  weights.id = "weights";
  const parts = [h("div", { class: "split" }, h("div", {},
    h("div", { class: "row" },
      h("figure", {}, completed, h("figcaption", {}, `completed (${last.steps} step${last.steps === 1 ? "" : "s"}${last.converged ? ", converged" : ""})`)),
      h("dl", { class: "facts" },
        h("dt", {}, "energy E(v)"), h("dd", { id: "energy-value" }, fmt(last.energy, 4)),
        h("dt", {}, "top match"), h("dd", { id: "top-match" }, last.matches[0] ? labelOf(last.matches[0]) : "—"),
        h("dt", {}, "cue from"), h("dd", {}, c.id),
        h("dt", {}, "features hidden"), h("dd", {}, `${c.hidden.filter(Boolean).length} of ${info.dim}`)))),
  h("div", {}, h("h3", {}, "Weights p_μ (top memories)"), weights))];
  if (results.length > 1) {
    const energy = lineChart({ xs: results.map((r) => r.steps), ys: results.map((r) => r.energy),
      label: "Energy after each step", xLabel: "steps", yLabel: "E" });
    energy.id = "query-energy";
    parts.push(h("h3", {}, "Energy after each step"), energy);
  }
  return parts;
}
