// The console's one door to the server: the public /v1 API, same origin, key from the tab.
// Paths resolve against the page (/ui/ → ../v1/...), so a proxy prefix in front still works.

const KEY = "lam.apiKey"; // sessionStorage: the key lives and dies with the tab

export class ApiError extends Error {
  constructor(status, code, message, details) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details;
  }
  // What a person reads: the status first, since 401 and 403 mean different things to do.
  describe() {
    const what = { 401: "unauthorized (no or wrong API key)", 403: "forbidden (this key may not do that)" };
    return `${this.status} ${what[this.status] ?? this.code}: ${this.message}`;
  }
}

export const getKey = () => sessionStorage.getItem(KEY);
export function setKey(key) {
  if (key) sessionStorage.setItem(KEY, key);
  else sessionStorage.removeItem(KEY);
}

// Listeners told about 401s, so the app can open the key prompt wherever the call came from.
const unauthorized = new Set();
export const onUnauthorized = (fn) => unauthorized.add(fn);

export function url(path) {
  return new URL(`..${path}`, document.baseURI).href;
}

export async function api(path, { method = "GET", body } = {}) {
  const headers = { Accept: "application/json" };
  const key = getKey();
  if (key) headers.Authorization = `Bearer ${key}`;
  const init = { method, headers };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(url(path), init);
  } catch (err) {
    throw new ApiError(0, "network_error", `the server did not answer (${err.message})`);
  }
  if (response.status === 204) return null;
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null; // a proxy's HTML error page, say: the status still tells
  }
  if (!response.ok) {
    const e = data?.error ?? {};
    const err = new ApiError(response.status, e.code ?? `http_${response.status}`, e.message ?? response.statusText, e.details);
    if (response.status === 401) unauthorized.forEach((fn) => fn(err));
    throw err;
  }
  return data;
}

export const enc = encodeURIComponent;

// GET /readyz (outside /v1, no key): callers at the same moment share one request.
let readyCall = null;
export function ready() {
  if (!readyCall) {
    readyCall = fetch(url("/readyz"))
      .then((r) => r.ok)
      .finally(() => { readyCall = null; });
  }
  return readyCall;
}

// Whether this server scores at the cue (`steps: 0`, API.md). Read from the OpenAPI document
// instead of sending steps 0 and catching the 422, so no failed request is ever made.
let scoring = null;
export async function supportsStepsZero() {
  if (scoring === null) {
    scoring = (async () => {
      try {
        const r = await fetch(url("/openapi.json"));
        const doc = await r.json();
        const min = doc?.components?.schemas?.QueryRequest?.properties?.steps?.minimum;
        return min === undefined || min <= 0;
      } catch {
        return false;
      }
    })();
  }
  return scoring;
}
