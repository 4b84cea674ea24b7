// The gallery: every finished picture of the tenant, newest first, loaded a page at a time as
// the page scrolls. Filters (search, action, status, aspect ratio, template, engine, dates,
// starred), stars, and a selection to download as a zip, delete, or compare two (slider or
// side by side).
import { $, $$, api, bind, flash, h, ready, shortId } from "./lib.js";

const grid = $("#gallery");
const selected = new Map(); // picture id (task:index) -> {task, index, url}
const starredHere = new Map(); // task id -> starred, as this page last set it: a page read earlier does not undo it
let cursor = null;
let loading = false;
let ended = false;
let generation = 0; // the filters' version: an older page's answer is dropped

function query() {
  const form = new FormData($("#gallery-filters"));
  const params = new URLSearchParams({ limit: "48" });
  for (const [k, v] of form) {
    if (!v) continue;
    if (k === "since" || k === "until") params.set(k, String(new Date(`${v}T00:00:00`).getTime() + (k === "until" ? 86_400_000 : 0)));
    else params.set(k, v);
  }
  return params;
}

// A task's pictures as tiles: each image of a grid on its own, with its thumbnail rendition.
function tiles(t) {
  t.starred = starredHere.get(t.task_id) ?? t.starred;
  const urls = t.image_urls.length ? t.image_urls : [t.grid_image_url].filter(Boolean);
  return urls.map((url, i) => {
    const id = `${t.task_id}:${i}`;
    const small = t.renditions[i]?.thumb ?? url;
    const box = h("input", { type: "checkbox", "aria-label": `select picture ${i + 1} of ${shortId(t.task_id)}`, checked: selected.has(id),
      onchange: (e) => { e.target.checked ? selected.set(id, { task: t, index: i, url }) : selected.delete(id); selection(); } });
    const star = h("button", { type: "button", class: `star quiet${t.starred ? " on" : ""}`, "aria-pressed": String(t.starred), "aria-label": t.starred ? "unstar" : "star",
      onclick: () => toggleStar(t, star) }, t.starred ? "★" : "☆");
    return h("figure", { class: "tile", dataset: { taskId: t.task_id, index: i } },
      h("a", { href: `/console/tasks/${encodeURIComponent(t.task_id)}` }, h("img", { src: small, alt: t.prompt, loading: "lazy" })),
      h("figcaption", {}, box, star, h("span", { class: "muted" }, `${t.action.toLowerCase()} · ${shortId(t.task_id)}`)));
  });
}

async function toggleStar(t, button) {
  const on = !t.starred;
  try {
    await api(`/v1/tasks/${encodeURIComponent(t.task_id)}/star`, { method: on ? "PUT" : "DELETE" });
  } catch (e) {
    flash(e.text ?? String(e));
    return;
  }
  t.starred = on;
  starredHere.set(t.task_id, on);
  for (const b of $$(`figure[data-task-id="${CSS.escape(t.task_id)}"] .star`)) {
    b.textContent = on ? "★" : "☆";
    b.classList.toggle("on", on);
    b.setAttribute("aria-pressed", String(on));
    b.setAttribute("aria-label", on ? "unstar" : "star");
  }
}

async function more() {
  if (loading || ended) return;
  loading = true;
  const mine = generation;
  try {
    const params = query();
    if (cursor) params.set("cursor", cursor);
    const page = await api(`/v1/tasks?${params}`);
    if (mine !== generation) return;
    grid.append(...page.data.flatMap(tiles));
    cursor = page.next_cursor;
    ended = !cursor;
    $("#gallery-end").textContent = ended ? (grid.children.length ? "That is all." : "Nothing matches.") : "";
  } catch (e) {
    $("#gallery-end").textContent = e.text ?? String(e);
    ended = true;
  } finally {
    loading = false;
  }
  // A page that does not fill the screen leaves nothing to scroll: ask for the next at once.
  if (!ended && mine === generation && document.documentElement.scrollHeight <= innerHeight + 200) more();
}

let asked = ""; // the filters the grid shows: a change event that changes nothing (a blur) keeps it

function restart() {
  const now = query().toString();
  if (now === asked) return;
  asked = now;
  generation++;
  cursor = null;
  ended = false;
  loading = false;
  grid.replaceChildren();
  $("#gallery-end").textContent = "Loading…";
  more();
}

function selection() {
  $("#selection").hidden = selected.size === 0;
  $("#selected-count").textContent = `${selected.size} selected`;
  $("#compare").disabled = selected.size !== 2;
}

async function zip() {
  const ids = [...new Set([...selected.values()].map((s) => s.task.task_id))];
  const response = await fetch("/console/api/v1/tasks/archive", {
    method: "POST", credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-CSRF-Token": document.querySelector('meta[name="csrf"]').content },
    body: JSON.stringify({ ids }),
  });
  if (!response.ok) {
    flash((await response.json().catch(() => ({}))).description ?? `HTTP ${response.status}`);
    return;
  }
  const link = h("a", { href: URL.createObjectURL(await response.blob()), download: "pixelmill.zip" });
  link.click();
  setTimeout(() => URL.revokeObjectURL(link.href), 10_000);
}

async function remove() {
  const ids = [...new Set([...selected.values()].map((s) => s.task.task_id))];
  if (!confirm(`Delete ${ids.length} task${ids.length === 1 ? "" : "s"} and their pictures? This cannot be undone.`)) return;
  const outcomes = await api("/v1/tasks/delete", { method: "POST", body: { ids } });
  const refused = outcomes.filter((o) => !o.deleted);
  flash(refused.map((o) => `${shortId(o.task_id)}: ${o.error}`).join("; "));
  for (const o of outcomes.filter((x) => x.deleted)) {
    for (const tile of $$(`figure[data-task-id="${CSS.escape(o.task_id)}"]`)) tile.remove();
    for (const [id, s] of selected) if (s.task.task_id === o.task_id) selected.delete(id);
  }
  selection();
}

function compare() {
  const [a, b] = [...selected.values()];
  if (!b) return;
  $("#compare-a").src = a.url;
  $("#compare-b").src = b.url;
  place();
  $("#compare-dialog").showModal();
}

// The slider: the second picture covers the first from the slider's position on.
function place() {
  const at = Number($("#compare-at").value);
  $("#compare-top").style.clipPath = `inset(0 0 0 ${at}%)`;
}

$("#gallery-filters").addEventListener("submit", (e) => { e.preventDefault(); restart(); });
$("#gallery-filters").addEventListener("change", restart);
$("#zip").addEventListener("click", zip);
$("#delete").addEventListener("click", remove);
$("#compare").addEventListener("click", compare);
$("#unselect").addEventListener("click", () => { selected.clear(); for (const b of $$("#gallery input[type=checkbox]")) b.checked = false; selection(); });
$("#compare-at").addEventListener("input", place);
$("[data-close]", $("#compare-dialog")).addEventListener("click", () => $("#compare-dialog").close());
for (const radio of $$('input[name="compare-mode"]')) {
  radio.addEventListener("change", () => {
    const side = radio.value === "side" && radio.checked;
    $("#compare-stage").classList.toggle("slider", !side);
    $("#compare-stage").classList.toggle("side", side);
    $("#compare-at").hidden = side;
  });
}
new IntersectionObserver((entries) => { if (entries.some((e) => e.isIntersecting)) more(); }).observe($("#gallery-end"));
bind("/", "Search the prompts", () => $('#gallery-filters input[name="q"]').focus());
bind("c", "Compare the two selected", compare);

asked = query().toString();
more();
ready();
