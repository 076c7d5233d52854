// Entry point: hash routes (#/banks, #/bank/NAME, #/play/NAME, #/dynamics/NAME), the
// navigation, the readiness badge and the API-key prompt. Pages render into <main>.

import { getKey, onUnauthorized, ready, setKey } from "./api.js";
import { h } from "./dom.js";
import * as banks from "./pages/banks.js";
import * as bank from "./pages/bank.js";
import * as playground from "./pages/playground.js";
import * as dynamics from "./pages/dynamics.js";

const pages = { banks, bank, play: playground, dynamics };
const view = document.getElementById("view");
const nav = document.getElementById("nav");

function parse() {
  const [, page = "banks", name = ""] = location.hash.split("/");
  return { page: pages[page] ? page : "banks", name: decodeURIComponent(name) };
}

function renderNav({ page, name }) {
  const link = (href, text, current) =>
    h("a", { href, "aria-current": current ? "page" : false }, text);
  const items = [link("#/banks", "Banks", page === "banks")];
  if (name) {
    const n = encodeURIComponent(name);
    items.push(
      link(`#/bank/${n}`, `Bank ${name}`, page === "bank"),
      link(`#/play/${n}`, "Playground", page === "play"),
      link(`#/dynamics/${n}`, "Dynamics", page === "dynamics"),
    );
  }
  nav.replaceChildren(...items);
}

let generation = 0; // a slow page that finishes after the user moved on must not draw
async function route() {
  const where = parse();
  renderNav(where);
  const mine = ++generation;
  const slot = h("div", { class: "page" });
  view.replaceChildren(slot);
  document.title = `LAM console · ${where.page}${where.name ? ` · ${where.name}` : ""}`;
  await pages[where.page].render(slot, where.name, () => mine === generation);
}

async function readiness() {
  const badge = document.getElementById("ready");
  try {
    const ok = await ready();
    badge.textContent = ok ? "server ready" : "server loading";
    badge.className = ok ? "badge ok" : "badge warn";
  } catch {
    badge.textContent = "server unreachable";
    badge.className = "badge bad";
  }
}

// ---- API key -----------------------------------------------------------------------------
const dialog = document.getElementById("key-dialog");
const keyButton = document.getElementById("key-button");

function showKeyState() {
  keyButton.textContent = getKey() ? "API key: set" : "API key";
}

function askKey(reason) {
  if (dialog.open) return;
  document.getElementById("key-reason").textContent = reason ?? "";
  document.getElementById("key-input").value = "";
  dialog.showModal();
}

dialog.addEventListener("close", () => {
  const input = document.getElementById("key-input");
  if (dialog.returnValue === "save" && input.value.trim()) setKey(input.value.trim());
  if (dialog.returnValue === "clear") setKey(null);
  input.value = "";
  showKeyState();
  if (dialog.returnValue === "save" || dialog.returnValue === "clear") route();
});
keyButton.addEventListener("click", () => askKey("Sent as Authorization: Bearer to /v1."));
onUnauthorized((err) => askKey(err.describe()));

// The skip link would change the hash (and so the route): move focus to the content instead.
document.querySelector(".skip").addEventListener("click", (ev) => {
  ev.preventDefault();
  view.focus();
});

window.addEventListener("hashchange", route);
showKeyState();
readiness();
route();
