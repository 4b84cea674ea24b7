// What every console page shares: the API through the console's bridge, small DOM helpers,
// keyboard shortcuts (never while typing; listed under "?"), and the ready marker tests wait for.

const csrf = document.querySelector('meta[name="csrf"]')?.content ?? "";

export class ApiError extends Error {
  constructor(status, body, retryAfter) {
    super(body?.description ?? `HTTP ${status}`);
    this.status = status;
    this.code = body?.code ?? status;
    this.retryAfter = retryAfter;
  }

  // The API's own words, with what a person needs to act on them.
  get text() {
    if (this.status === 401) return "Your console session ended: sign in again.";
    if (this.status === 429 && this.retryAfter) return `${this.message} Try again in ${this.retryAfter} s.`;
    if (this.status === 402) return `${this.message} (no quota left on this key)`;
    return this.message;
  }
}

// Call /v1/... as the signed-in session: the bridge adds the session's principal; every change
// carries the CSRF token. JSON in and out, unless `body` is a Blob (uploads).
export async function api(path, { method = "GET", body, headers = {}, keepalive = false } = {}) {
  const init = { method, headers: { ...headers }, credentials: "same-origin", keepalive };
  if (method !== "GET" && method !== "HEAD") init.headers["X-CSRF-Token"] = csrf;
  if (body instanceof Blob) {
    init.body = body;
    init.headers["Content-Type"] = body.type;
  } else if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers["Content-Type"] = "application/json";
  }
  const response = await fetch(`/console/api${path}`, init);
  const type = response.headers.get("content-type") ?? "";
  const data = type.includes("json") ? await response.json() : null;
  if (response.status === 401) location.assign("/console/login");
  if (!response.ok) throw new ApiError(response.status, data, response.headers.get("retry-after"));
  return data;
}

// The combined event stream of the tenant's tasks: one connection per tab (browsers allow six
// per host). Closed while the tab is hidden, reopened (with a fresh snapshot) when it shows; after
// an error that closed it (the server restarting, a 503) it is opened again, 2 s later, then
// slower. `onOpen` runs at each opening: the snapshot holds only tasks still on their way, so
// the page re-reads what finished while it was not listening.
export function taskEvents(onTask, onOpen = () => {}) {
  let source = null;
  let wait = 2000;
  let retry = 0;
  const open = () => {
    if (source) return;
    source = new EventSource("/console/api/v1/tasks/events");
    source.addEventListener("task", (e) => onTask(JSON.parse(e.data)));
    source.addEventListener("open", () => { wait = 2000; onOpen(); });
    source.addEventListener("error", () => {
      if (source?.readyState !== EventSource.CLOSED) return; // the browser reconnects by itself
      source = null;
      clearTimeout(retry);
      retry = setTimeout(() => { if (!document.hidden) open(); }, wait);
      wait = Math.min(wait * 2, 60_000);
    });
  };
  const close = () => { source?.close(); source = null; };
  document.addEventListener("visibilitychange", () => (document.hidden ? close() : open()));
  window.addEventListener("pagehide", close);
  open();
  return { close };
}

// h("button", {class: "x", onclick: f}, "text", child...): an element; strings become text
// (never HTML), null and false children are skipped.
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs ?? {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else if (name === "dataset") Object.assign(el.dataset, value);
    else el.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export const $ = (selector, root = document) => root.querySelector(selector);

// Fill `table` with a header row of `head` and a row per entry of `rows`: cells are elements or
// text, or already-made <tr> rows.
export function fillTable(table, head, rows) {
  const line = (r) => (r instanceof HTMLTableRowElement ? r : h("tr", {}, r.map((x) => h("td", {}, x))));
  table.replaceChildren(h("tr", {}, head.map((x) => h("th", {}, x))), ...rows.map(line));
}
export const $$ = (selector, root = document) => [...root.querySelectorAll(selector)];

export function shortId(id) {
  return String(id).slice(-8);
}

export function when(ms) {
  return ms ? new Date(ms).toLocaleString() : "";
}

// Keyboard shortcuts. `bind("a", "Approve", fn)`; sequences like "g c" work too. A key never fires
// while focus is in a text field, a dialog of its own has focus-trapped keys (`scope`), or with
// Ctrl/Alt/Meta unless the binding names them ("Ctrl+z").
const bindings = [];
let pending = "";
let pendingTimer = 0;

export function bind(keys, label, run, { scope = null } = {}) {
  bindings.push({ keys, label, run, scope });
}

// Fields that take letters: a key there is typing, not a shortcut. A checkbox, a button or a
// <select> is not one (a reviewer who ticked a box still approves with A).
const TEXT_INPUTS = new Set(["text", "search", "email", "url", "tel", "password", "number", "date", "time"]);

function typing(target) {
  if (!(target instanceof HTMLElement)) return false;
  if (target.isContentEditable || target.tagName === "TEXTAREA") return true;
  return target.tagName === "INPUT" && TEXT_INPUTS.has(target.type);
}

function keyName(e) {
  const mods = [e.ctrlKey || e.metaKey ? "Ctrl" : null, e.altKey ? "Alt" : null].filter(Boolean);
  let key = e.key;
  if (key === " ") key = "Space";
  if (mods.length) {
    if (e.shiftKey) mods.push("Shift");
    return [...mods, key.toLowerCase()].join("+");
  }
  return key;
}

document.addEventListener("keydown", (e) => {
  if (typing(e.target) && e.key !== "Escape") return;
  if (e.key === "Enter" && e.target instanceof HTMLElement && e.target.closest("button, a[href]")) return; // it clicks what has focus
  if (e.isComposing) return;
  const open = document.querySelector("dialog[open]");
  const scope = open?.id ?? null;
  const name = keyName(e);
  const sequence = pending ? `${pending} ${name}` : name;
  const live = bindings.filter((b) => b.scope === scope);
  const hit = live.find((b) => b.keys === sequence) ?? (pending ? live.find((b) => b.keys === name) : null);
  clearTimeout(pendingTimer);
  pending = "";
  if (hit) {
    e.preventDefault();
    hit.run(e);
  } else if (live.some((b) => b.keys.startsWith(`${name} `))) {
    pending = name;
    pendingTimer = setTimeout(() => { pending = ""; }, 1200);
  }
});

// "?" lists the keys of the page (and of an open dialog).
function showHelp() {
  const dialog = $("#shortcuts");
  const list = $("dl", dialog);
  list.replaceChildren(...bindings.filter((b) => b.label).flatMap((b) => [h("dt", {}, h("kbd", {}, b.keys)), h("dd", {}, b.label)]));
  dialog.showModal();
}

export function ready() {
  bind("?", "This list of keys", showHelp);
  bind("g c", "Go to Create", () => location.assign("/console"));
  bind("g g", "Go to Gallery", () => location.assign("/console/gallery"));
  bind("g t", "Go to Templates", () => location.assign("/console/templates"));
  bind("g b", "Go to Batches", () => location.assign("/console/batches"));
  bind("g u", "Go to Usage", () => location.assign("/console/usage"));
  if (document.body.dataset.admin === "true") {
    bind("g r", "Go to Review", () => location.assign("/console/review"));
    bind("g o", "Go to Operations", () => location.assign("/console/ops"));
    bind("g k", "Go to Keys", () => location.assign("/console/keys"));
  }
  if (document.body.dataset.admin === "true" && document.body.dataset.page !== "review") reviewBadge();
  $("#help")?.addEventListener("click", showHelp);
  $("#shortcuts button")?.addEventListener("click", () => $("#shortcuts").close());
  document.body.dataset.ready = "true";
}

// An admin's navigation shows how many pictures wait for review (the Review page keeps its own).
function reviewBadge() {
  const count = async () => {
    const held = await api("/v1/admin/reviews?limit=1000").catch(() => null);
    if (!held) return;
    const badge = $("#review-count");
    badge.textContent = String(held.length);
    badge.hidden = !held.length;
  };
  count();
  setInterval(count, 10_000);
}

// Errors nobody caught still show: on the page, not only in the developer console.
window.addEventListener("unhandledrejection", (e) => flash(e.reason?.text ?? String(e.reason)));

export function flash(text) {
  const box = $("#flash");
  if (!box) return;
  box.textContent = text;
  box.hidden = !text;
}
