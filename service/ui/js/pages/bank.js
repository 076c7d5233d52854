// One bank: its config, its memories (scroll, payloads, vectors as images on request) and
// the diagnostics: Δᵢ against the fixed-point threshold T(β), β_min, the failing memories.

import { api, enc } from "../api.js";
import { fmt, histogram, imageOf, squareSide, stripOf } from "../charts.js";
import { busy, errorBox, field, h, showIn } from "../dom.js";

const PAGE = 48;

export async function render(slot, name, current) {
  const n = enc(name);
  let info;
  try {
    info = await api(`/v1/banks/${n}`);
  } catch (err) {
    slot.append(h("h1", {}, `Bank ${name}`), errorBox(err));
    return;
  }
  if (!current()) return;
  const side = squareSide(info.dim);
  slot.append(
    h("h1", {}, `Bank ${name}`),
    h("dl", { class: "facts inline", id: "bank-facts" },
      ...[["memories", info.count], ["dim", info.dim + (side ? ` (${side}×${side})` : "")], ["model", info.model],
        ["β", fmt(info.beta)], ["normalize", info.normalize ? "yes" : "no"], ["dtype", info.dtype],
        ["device", info.device], ["prefilter", info.prefilter?.kind ?? "none"], ["created", info.created_at]]
        .map(([k, v]) => h("div", {}, h("dt", {}, k), h("dd", {}, String(v))))),
    h("p", {}, h("a", { href: `#/play/${n}`, class: "button" }, "Open in the playground"), " ",
      h("a", { href: `#/dynamics/${n}`, class: "button" }, "Run the dynamics")),
  );
  const diag = h("section", { class: "card", "aria-labelledby": "diag-title" });
  const mems = h("section", { class: "card", "aria-labelledby": "mem-title" });
  slot.append(diag, mems);
  await Promise.all([diagnostics(diag, n, info, current), memories(mems, n, side, current)]);
}

// ---- memories ----------------------------------------------------------------------------
async function memories(box, n, side, current) {
  const asImages = h("input", { type: "checkbox", id: "as-images", disabled: !side });
  const list = h("ul", { class: "memories", id: "memory-list" });
  const more = h("button", { type: "button", id: "more-memories" }, "Load more");
  const msg = h("div");
  box.append(h("h2", { id: "mem-title" }, "Memories"),
    h("div", { class: "field check" }, asImages, h("label", { for: "as-images" },
      side ? `Show vectors as ${side}×${side} images` : "Show vectors as images (needs a square dimension)")),
    msg, list, more);
  let cursor = null;
  async function page(reset) {
    if (reset) [cursor, list.textContent] = [null, ""];
    // GET /memories is the scroll every server has (POST .../scroll adds filters).
    const q = `limit=${PAGE}&with_vectors=${asImages.checked}${cursor ? `&cursor=${enc(cursor)}` : ""}`;
    try {
      const r = await api(`/v1/banks/${n}/memories?${q}`);
      if (!current()) return;
      for (const m of r.memories) list.append(item(m, side));
      cursor = r.next_cursor;
      more.hidden = !cursor;
      if (!list.children.length) list.append(h("li", {}, "No memories."));
      showIn(msg);
    } catch (err) {
      showIn(msg, errorBox(err));
    }
  }
  asImages.addEventListener("change", () => page(true));
  more.addEventListener("click", () => busy(more, () => page(false)));
  await page(true);
}

function item(m, side) {
  const payload = m.payload && Object.keys(m.payload).length ? JSON.stringify(m.payload) : "no payload";
  const pic = m.vector
    ? side ? imageOf(m.vector, side, { label: `memory ${m.id}`, size: 64 }) : stripOf(m.vector, { label: `memory ${m.id}` })
    : null;
  return h("li", { dataset: { id: m.id } }, pic, h("code", {}, m.id), h("span", { class: "payload" }, payload));
}

// ---- diagnostics -------------------------------------------------------------------------
async function diagnostics(box, n, info, current) {
  const beta = h("input", { id: "diag-beta", type: "number", min: "0", step: "any", value: info.beta });
  const run = h("button", { type: "submit", class: "primary", id: "diag-check" }, "Check");
  const out = h("div", { id: "diag-out", "aria-live": "polite" });
  const form = h("form", { class: "inline" }, field("β", beta), run);
  box.append(h("h2", { id: "diag-title" }, "Diagnostics: is every memory a fixed point?"),
    h("p", { class: "hint" }, "Δᵢ = ξᵢ·ξᵢ − max_{j≠i} ξᵢ·ξⱼ. Memory i is retrievable (Ramsauer et al.) when ",
      "Δᵢ ≥ T(β) = 2/(βN) + β⁻¹ ln(2(N−1)NβM²)."), form, out);
  const check = async () => {
    try {
      showIn(out, h("p", {}, "Computing…"));
      const b = Number(beta.value);
      const d = await api(`/v1/banks/${n}/diagnostics?beta=${enc(b)}&limit=10`);
      if (!current()) return;
      const deltas = await allSeparations(n, d);
      if (!current()) return;
      showIn(out, ...report(d, deltas));
    } catch (err) {
      showIn(out, errorBox(err));
    }
  };
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    busy(run, check);
  });
  if (info.count > 0) await check();
  else showIn(out, h("p", {}, "The bank is empty."));
}

// Every Δᵢ, for the histogram. The API lists Δᵢ only for the memories that fail; below
// β_* = e^{1−2/N} / (2(N−1)NM²) the condition says nothing, so every memory is listed as
// failing there (lam_engine/diagnostics.py): one pass of pages at β_*/2 gives all of them.
const MAX_HIST = 20000;
async function allSeparations(n, d) {
  const N = d.count;
  if (N < 2 || !d.M) return { values: [], partial: false };
  const betaStar = Math.exp(1 - 2 / N) / (2 * (N - 1) * N * d.M * d.M);
  const values = [];
  let offset = 0;
  while (offset !== null && values.length < MAX_HIST) {
    const page = await api(`/v1/banks/${n}/diagnostics?beta=${enc(betaStar / 2)}&limit=1000&offset=${offset}`);
    for (const f of page.failing) values.push(f.delta);
    offset = page.next_offset;
  }
  return { values, partial: offset !== null };
}

function report(d, deltas) {
  const facts = [["β", fmt(d.beta)], ["memories N", d.count], ["M = max‖ξ‖", fmt(d.M)],
    ["threshold T(β)", fmt(d.threshold)], ["meeting the condition", `${d.meeting} of ${d.count}`],
    ["separable (Δᵢ > 0)", d.separable], ["β_min (all separable ones meet it)", fmt(d.beta_min)],
    ["method", d.method]];
  const left = [h("dl", { class: "facts", id: "diag-facts" }, ...facts.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, String(v))]))];
  const right = [];
  if (deltas.values.length) {
    const chart = histogram({ values: deltas.values, marker: d.threshold ?? undefined, markerLabel: `T(β) = ${fmt(d.threshold)}`,
      label: `Histogram of the separations Δᵢ of ${deltas.values.length} memories; the line is T(β)` });
    chart.id = "delta-histogram";
    right.push(h("figure", {}, chart, h("figcaption", {},
      `Δᵢ of ${deltas.values.length} memories${deltas.partial ? ` (the ${MAX_HIST} worst)` : ""}; bars left of the line fail at this β.`)));
  }
  if (d.failing.length) {
    left.push(h("h3", {}, `Failing memories (${d.failing_total}, worst first)`),
      h("div", { class: "scroll-x" }, h("table", { id: "failing" },
        h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "id"), h("th", { scope: "col", class: "num" }, "Δᵢ"),
          h("th", { scope: "col", class: "num" }, "Δᵢ − T(β)"))),
        h("tbody", {}, d.failing.map((f) => h("tr", {}, h("td", {}, h("code", {}, f.id)),
          h("td", { class: "num" }, fmt(f.delta)), h("td", { class: "num" }, fmt(f.margin))))))));
    if (d.failing_total > d.failing.length) left.push(h("p", { class: "hint" }, `…and ${d.failing_total - d.failing.length} more.`));
  } else {
    left.push(h("p", { class: "ok" }, "Every memory meets the fixed-point condition at this β."));
  }
  // Two columns on a wide screen (numbers beside the picture), one on a phone.
  return [h("div", { class: "split" }, h("div", {}, left), h("div", {}, right))];
}
