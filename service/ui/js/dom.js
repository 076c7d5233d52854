// DOM helpers: build elements from data (never from HTML strings, so nothing a bank holds
// can inject markup), show errors, and ask for confirmation.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === false || v === null || v === undefined) continue;
    if (k === "on") for (const [ev, fn] of Object.entries(v)) el.addEventListener(ev, fn);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) if (c !== null && c !== undefined && c !== false) el.append(c);
  return el;
}

// An error box with role=alert, so screen readers announce it; status first (401, 403, …).
export function errorBox(err, doing) {
  const what = typeof err?.describe === "function" ? err.describe() : String(err?.message ?? err);
  const text = doing ? `${doing} failed. ${what}` : what;
  return h("p", { class: "error", role: "alert", dataset: { status: String(err?.status ?? "") } }, text);
}

export function showIn(slot, ...nodes) {
  slot.replaceChildren(...nodes);
}

// A labelled field; the label's for= points at the control so clicks and readers find it.
export function field(labelText, control, hint) {
  return h("div", { class: "field" }, h("label", { for: control.id }, labelText), control,
    hint ? h("small", {}, hint) : null);
}

// The shared <dialog> in index.html; resolves true only on an explicit "yes".
export function confirmDialog(title, text, yesLabel = "Delete") {
  const dlg = document.getElementById("confirm-dialog");
  document.getElementById("confirm-title").textContent = title;
  document.getElementById("confirm-text").textContent = text;
  document.getElementById("confirm-yes").textContent = yesLabel;
  dlg.returnValue = "";
  dlg.showModal();
  return new Promise((resolve) => {
    dlg.addEventListener("close", () => resolve(dlg.returnValue === "yes"), { once: true });
  });
}

// Busy state on a button while its request runs, so double clicks do not send twice.
export async function busy(button, fn) {
  button.disabled = true;
  button.setAttribute("aria-busy", "true");
  try {
    return await fn();
  } finally {
    button.disabled = false;
    button.removeAttribute("aria-busy");
  }
}

// A small seeded PRNG (mulberry32) and Gaussian noise, so a cue is reproducible by its seed.
export function gaussian(seed) {
  let a = seed >>> 0;
  const uniform = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return () => Math.sqrt(-2 * Math.log(1 - uniform())) * Math.cos(2 * Math.PI * uniform());
}
