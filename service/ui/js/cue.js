// The cue builder shared by the playground and the dynamics page: a stored memory, plus
// Gaussian noise and/or a mask of hidden features (click pixels on image banks).

import { api, enc } from "./api.js";
import { grey, imageOf, squareSide, stripOf } from "./charts.js";
import { errorBox, field, gaussian, h, showIn } from "./dom.js";

const describe = (m) => {
  const p = m.payload ?? {};
  const tag = p.label ?? p.name ?? p.title ?? p.text ?? m.text;
  return tag === undefined ? m.id : `${m.id} (${String(tag).slice(0, 30)})`;
};

export async function cueBuilder(n, info, onChange) {
  const side = squareSide(info.dim);
  const box = h("fieldset", { class: "card cue" }, h("legend", {}, "Cue"));
  const select = h("select", { id: "cue-memory" });
  const noise = h("input", { id: "cue-noise", type: "range", min: 0, max: 1, step: 0.05, value: 0 });
  const noiseOut = h("output", { for: "cue-noise", id: "cue-noise-value" }, "0");
  const seed = h("input", { id: "cue-seed", type: "number", min: 0, step: 1, value: 1 });
  const counter = h("span", { id: "hidden-count", role: "status" });
  const preview = h("div", { class: "cue-preview" });
  const grid = side ? h("div", { class: "pixel-grid", id: "pixel-grid", role: "group", "aria-label": "Pixels: press to hide or show" }) : null;
  const state = { vector: null, hidden: new Array(info.dim).fill(false), id: null };

  const page = await api(`/v1/banks/${n}/memories?limit=1000&with_vectors=false`);
  if (!page.memories.length) {
    box.append(h("p", {}, "The bank is empty: store memories first."));
    return { box, get: () => null, labelOf: (id) => id };
  }
  select.append(...page.memories.map((m) => h("option", { value: m.id }, describe(m))));

  const preset = (label, id, fn) => {
    const b = h("button", { type: "button", id }, label);
    b.addEventListener("click", () => {
      state.hidden = state.hidden.map((_, i) => fn(i));
      redraw();
    });
    return b;
  };
  const rows = side ?? 1;
  const cols = side ?? info.dim;
  const rnd = gaussian(7);
  const presets = h("div", { class: "presets" },
    preset(side ? "Hide bottom half" : "Hide second half", "hide-bottom", (i) => Math.floor(i / cols) >= rows / 2 || (!side && i >= info.dim / 2)),
    side ? preset("Hide right half", "hide-right", (i) => i % cols >= cols / 2) : null,
    preset("Hide random 40%", "hide-random", () => rnd() > 0.25),
    preset("Show all", "hide-none", () => false));

  box.append(field("Stored memory", select), h("div", { class: "grid" },
    h("div", { class: "field" }, h("label", { for: "cue-noise" }, "Noise σ (× max |ξ|)"), noise, noiseOut),
    field("Noise seed", seed)));
  // The pixels beside the mask presets: the whole cue fits on a laptop screen.
  box.append(h("div", { class: "cue-body" }, grid, h("div", {}, presets, counter)), preview);
  if (grid) box.append(h("p", { class: "hint" }, "Press pixels to hide them: hidden = unknown to the query, shown hatched."));

  function cue() {
    if (!state.vector) return null;
    const sigma = Number(noise.value);
    const scale = Math.max(...state.vector.map(Math.abs)) || 1;
    const g = gaussian(Number(seed.value) || 0);
    const vector = state.vector.map((v, i) => (state.hidden[i] ? 0 : v + sigma * scale * g()));
    const anyHidden = state.hidden.some(Boolean);
    return { id: state.id, vector, hidden: [...state.hidden], mask: anyHidden ? state.hidden.map((x) => !x) : null, side };
  }

  function redraw() {
    const c = cue();
    noiseOut.textContent = noise.value;
    const k = state.hidden.filter(Boolean).length;
    counter.textContent = `${k} of ${info.dim} features hidden`;
    if (!c) return;
    if (grid) {
      // One real <button> per pixel: clickable, focusable, announced with its state.
      if (grid.children.length !== info.dim) {
        grid.replaceChildren(...c.vector.map((_, i) => {
          const b = h("button", { type: "button", class: "px", "aria-label": `pixel row ${Math.floor(i / side) + 1} column ${(i % side) + 1}`, dataset: { i: String(i) } });
          b.addEventListener("click", () => {
            state.hidden[i] = !state.hidden[i];
            redraw();
          });
          return b;
        }));
        grid.style.setProperty("--side", String(side)); // CSSOM, allowed by the CSP (no style attribute)
      }
      const lo = Math.min(...c.vector);
      const hi = Math.max(...c.vector);
      [...grid.children].forEach((b, i) => {
        b.setAttribute("aria-pressed", String(state.hidden[i]));
        b.style.backgroundColor = state.hidden[i] ? "" : grey((c.vector[i] - lo) / (hi - lo || 1));
      });
      showIn(preview);
    } else {
      showIn(preview, stripOf(c.vector, { label: "cue" }));
    }
    onChange?.(c);
  }

  async function load() {
    const wanted = select.value;
    try {
      const m = await api(`/v1/banks/${n}/memories/${enc(wanted)}`);
      if (select.value !== wanted) return; // another choice came since: its load wins
      state.vector = m.vector;
      state.id = m.id;
      redraw();
    } catch (err) {
      showIn(preview, errorBox(err));
    }
  }
  // The memory chosen last, once fetched: a query run right after a change must not go out
  // with the previous memory's vector (a fast click, or a slow server, did).
  let loading = Promise.resolve();
  select.addEventListener("change", () => { loading = load(); });
  noise.addEventListener("input", redraw);
  seed.addEventListener("input", redraw);
  loading = load();
  await loading;
  // "id · label" for the memories listed here, so charts can say which digit a unit is.
  const tags = new Map(page.memories.map((m) => [m.id, m.payload?.label ?? m.payload?.name]));
  const labelOf = (id) => (tags.get(id) === undefined ? id : `${id} · ${tags.get(id)}`);
  const get = async () => {
    await loading;
    return cue();
  };
  return { box, get, side, labelOf };
}

// The picture of a state: an image for square dims, a strip otherwise.
export function picture(vec, side, label, opts = {}) {
  return side ? imageOf(vec, side, { label, ...opts }) : stripOf(vec, { label });
}
