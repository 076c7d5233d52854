// Dynamics: integrate the two-layer network from a cue (POST /dynamics) and plot its energy,
// which never increases; the top hidden units are shown at a few times along the way.

import { api, enc } from "../api.js";
import { barChart, fmt, lineChart } from "../charts.js";
import { cueBuilder, picture } from "../cue.js";
import { busy, errorBox, field, h, showIn } from "../dom.js";

const SNAPSHOTS = 4; // hidden units at t_max·k/4: /dynamics reports them only at its end

export async function render(slot, name, current) {
  const n = enc(name);
  slot.append(h("h1", {}, `Dynamics · ${name}`));
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
  const num = (id, value, step) => h("input", { id, type: "number", min: "0", step, value });
  const tMax = num("t-max", 5, "any");
  const dt = num("dt", 0.01, "any");
  const tauH = num("tau-h", 0.1, "any");
  const every = num("record-every", 10, 1);
  const runBtn = h("button", { type: "button", id: "run-dynamics", class: "primary" }, "Run dynamics");
  const controls = h("fieldset", { class: "card" }, h("legend", {}, "Integration"),
    h("div", { class: "grid narrow" }, field("t_max", tMax), field("dt", dt), field("τ_h", tauH), field("record every (steps)", every)),
    runBtn);
  const out = h("section", { class: "card", id: "dyn-result", "aria-live": "polite" },
    h("p", { class: "hint" }, "τ_f dv/dt = Ξᵀf − v, τ_h dh/dt = Ξg − h, f = softmax(βh); the energy never increases."),
    h("p", { class: "hint" }, "/dynamics takes no mask: hidden features start at 0 and evolve freely (no clamping)."));
  slot.append(h("div", { class: "columns" }, cue.box, h("div", {}, controls, out)));

  const labelOf = cue.labelOf;
  const call = (c, t) => api(`/v1/banks/${n}/dynamics`, { method: "POST",
    body: { state: c.vector, t_max: t, dt: Number(dt.value), tau_h: Number(tauH.value), record_every: Number(every.value), top_k: 5 } });

  runBtn.addEventListener("click", () => busy(runBtn, async () => {
    const c = await cue.get();
    if (!c) return;
    try {
      const T = Number(tMax.value);
      const r = await call(c, T);
      if (!current()) return;
      const energy = lineChart({ xs: r.times, ys: r.energy, label: "Two-layer energy along the dynamics", xLabel: "time t", yLabel: "E" });
      energy.id = "dyn-energy";
      const drops = r.energy.every((e, i) => i === 0 || e <= r.energy[i - 1] + 1e-9 * Math.max(1, Math.abs(e)));
      const final = picture(r.state, c.side, "final state v", { size: 96 });
      final.id = "dyn-state";
      const snaps = h("div", { class: "snapshots", id: "hidden-over-time" });
      // The energy beside the cue and the end state: all three on one laptop screen.
      showIn(out, h("h2", {}, "Energy"), h("div", { class: "split chart-first" }, h("div", {}, energy,
        h("p", { id: "dyn-summary" }, `${r.energy.length} points from E = ${fmt(r.energy[0], 4)} to ${fmt(r.energy[r.energy.length - 1], 4)}; `,
          drops ? "never increases" : "INCREASES somewhere", r.converged ? "; converged." : "; not converged by t_max.")),
        h("div", { class: "row" }, h("figure", {}, picture(c.vector, c.side, "cue", { hidden: c.hidden, size: 96 }), h("figcaption", {}, "cue")),
          h("figure", {}, final, h("figcaption", {}, "v at the end")))),
        h("h2", {}, "Top hidden units f_μ over time"), snaps);
      // Earlier times: the same run stopped sooner (the integration is deterministic).
      const times = Array.from({ length: SNAPSHOTS }, (_, k) => (T * (k + 1)) / SNAPSHOTS);
      for (const t of times) {
        const s = t === T ? r : await call(c, t);
        if (!current()) return;
        const chart = barChart({ labels: s.hidden_top.map((u) => labelOf(u.id)), values: s.hidden_top.map((u) => u.value), max: 1,
          label: `Top hidden units at t = ${fmt(t)}`, width: 320, rowHeight: 20 });
        snaps.append(h("figure", {}, chart, h("figcaption", {}, `t = ${fmt(t)}`)));
      }
    } catch (err) {
      showIn(out, errorBox(err));
    }
  }));
}
