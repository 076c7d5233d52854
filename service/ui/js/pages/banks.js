// Banks: every bank with its size and config, create (a small form) and delete (confirmed).

import { api, enc, ready as serverReady } from "../api.js";
import { fmt } from "../charts.js";
import { busy, confirmDialog, errorBox, field, h, showIn } from "../dom.js";

const bytes = (n) => {
  if (n === null || n === undefined) return "—";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) [n, i] = [n / 1024, i + 1];
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
};

function prefilterState(b) {
  const kind = b.prefilter?.kind ?? "none";
  if (kind === "none") return "none (exact)";
  const built = b.index && b.index.kind && b.index.kind !== "none";
  return `${kind}, k=${b.prefilter.k}${built ? ", index built" : `, exact below ${b.prefilter.min_size}`}`;
}

export async function render(slot, _name, current) {
  const list = h("div", { id: "bank-list", "aria-live": "polite" }, h("p", {}, "Loading banks…"));
  const msg = h("div", { id: "banks-message" });
  slot.append(h("h1", {}, "Banks"), msg, list, createForm(msg, () => load()));

  async function load() {
    let data;
    try {
      data = await api("/v1/banks");
    } catch (err) {
      if (current()) showIn(list, errorBox(err));
      return;
    }
    if (!current()) return;
    let ready = false;
    try {
      ready = await serverReady();
    } catch {
      ready = false;
    }
    showIn(list, table(data.banks, ready, msg, load));
  }
  await load();
}

function table(banks, ready, msg, reload) {
  if (!banks.length) return h("p", { id: "no-banks" }, "No banks yet: create one below.");
  const head = ["Name", "Memories", "Dim", "Model", "β", "Normalize", "Dtype", "Device", "Memory", "Prefilter", "Ready", ""];
  const rows = banks.map((b) => {
    const n = enc(b.name);
    const del = h("button", { type: "button", class: "danger", "aria-label": `Delete bank ${b.name}`,
      dataset: { action: "delete", bank: b.name } }, "Delete");
    del.addEventListener("click", async () => {
      const ok = await confirmDialog(`Delete bank “${b.name}”?`,
        `Its ${b.count} memories are removed for good. This cannot be undone.`);
      if (!ok) return;
      await busy(del, async () => {
        try {
          await api(`/v1/banks/${n}`, { method: "DELETE" });
          showIn(msg, h("p", { class: "ok", role: "status" }, `Deleted bank ${b.name}.`));
          await reload();
        } catch (err) {
          showIn(msg, errorBox(err, `Deleting bank ${b.name}`));
        }
      });
    });
    // data-label repeats the column name, shown beside the value on phones (no table head there).
    const td = (i, content, cls) => h("td", { class: cls, dataset: { label: head[i] } }, content);
    return h("tr", { dataset: { bank: b.name } },
      h("th", { scope: "row" }, h("a", { href: `#/bank/${n}` }, b.name)),
      td(1, String(b.count), "num"), td(2, String(b.dim), "num"), td(3, b.model), td(4, fmt(b.beta), "num"),
      td(5, b.normalize ? "yes" : "no"), td(6, b.dtype), td(7, b.device), td(8, bytes(b.memory_bytes), "num"),
      td(9, prefilterState(b)), td(10, ready ? "ready" : "loading"),
      h("td", { class: "actions" },
        h("a", { href: `#/play/${n}`, class: "button" }, "Query"),
        h("a", { href: `#/dynamics/${n}`, class: "button" }, "Dynamics"),
        del),
    );
  });
  return h("div", { class: "scroll-x" },
    h("table", { class: "banks" },
      h("caption", {}, `${banks.length} bank${banks.length === 1 ? "" : "s"}`),
      h("thead", {}, h("tr", {}, head.map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", {}, rows)));
}

function createForm(msg, reload) {
  const name = h("input", { id: "new-name", name: "name", required: true, pattern: "[a-z0-9][a-z0-9_\\-]{0,63}",
    autocomplete: "off", placeholder: "e.g. digits" });
  const dim = h("input", { id: "new-dim", name: "dim", type: "number", min: 1, max: 65536, value: 64, required: true });
  const model = h("select", { id: "new-model", name: "model" }, ["B", "A", "C"].map((m) => h("option", { value: m }, m)));
  const beta = h("input", { id: "new-beta", name: "beta", type: "number", min: "0", step: "any", value: 8, required: true });
  const dtype = h("select", { id: "new-dtype", name: "dtype" },
    ["float32", "float16", "bfloat16"].map((d) => h("option", { value: d }, d)));
  const normalize = h("input", { id: "new-normalize", name: "normalize", type: "checkbox" });
  const submit = h("button", { type: "submit", class: "primary", id: "create-bank" }, "Create bank");
  const form = h("form", { id: "create-form", class: "card" },
    h("h2", {}, "Create a bank"),
    h("div", { class: "grid" },
      field("Name", name, "lower case, digits, - and _"),
      field("Dimension", dim), field("Model", model), field("β (inverse temperature)", beta),
      field("Dtype", dtype),
      h("div", { class: "field check" }, normalize, h("label", { for: "new-normalize" }, "L2-normalize memories and queries"))),
    submit);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const body = { name: name.value.trim(), dim: Number(dim.value), model: model.value, beta: Number(beta.value),
      dtype: dtype.value, normalize: normalize.checked };
    await busy(submit, async () => {
      try {
        const b = await api("/v1/banks", { method: "POST", body });
        showIn(msg, h("p", { class: "ok", role: "status" }, `Created bank ${b.name}.`));
        form.reset();
        await reload();
      } catch (err) {
        showIn(msg, errorBox(err, `Creating bank ${body.name || "(no name)"}`));
      }
    });
  });
  return form;
}
