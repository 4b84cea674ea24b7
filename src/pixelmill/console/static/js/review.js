// The review queue: pictures output screening held back, oldest first. Each is blurred and grey
// until revealed (the server sends a blurred thumbnail: the real bytes load only on reveal). The
// reviewer claims the item they open, so no one else decides it; approve or reject opens the next
// one at once, and the decision is sent after 5 s, during which Z undoes it.
import { $, $$, api, bind, flash, h, ready, shortId } from "./lib.js";

const UNDO_MS = 5000;
const REFRESH_MS = 4000;
const REASONS = ["not safe for work", "violent or graphic", "off brand", "low quality", "other"];
let items = [];
let current = null; // the opened item (claimed)
let pending = null; // {item, decision, note, timer}: a decision inside its undo window
const selected = new Set();
const thumbs = new Map(); // review id -> its <img>: a redraw moves it, never loads it again
let opening = 0; // the latest open(): an older claim's answer is let go

function query() {
  const form = new FormData($("#filters"));
  const params = new URLSearchParams({ limit: "500" });
  for (const [k, v] of form) if (v) params.set(k, v);
  return params;
}

function image(item, kind) {
  return `/console/api/v1/admin/reviews/${encodeURIComponent(item.id)}/${kind}`;
}

function age(item) {
  const s = Math.max(0, Math.round((Date.now() - item.created_at) / 1000));
  return s < 90 ? `${s} s` : s < 5400 ? `${Math.round(s / 60)} min` : `${Math.round(s / 3600)} h`;
}

function findings(item) {
  return item.reasons.map((r) => `${r.label} ${Number(r.score).toFixed(2)}`).join(", ");
}

function drawQueue() {
  const shown = items.filter((i) => i.id !== pending?.item.id);
  $("#pending-count").textContent = `· ${shown.length} waiting`;
  const badge = $("#review-count");
  badge.textContent = String(shown.length);
  badge.hidden = !shown.length;
  $("#empty").hidden = shown.length > 0;
  $("#queue").replaceChildren(...shown.map((item) => h("li", {},
    h("input", { type: "checkbox", "aria-label": `select ${item.id}`, checked: selected.has(item.id), dataset: { id: item.id },
      onchange: (e) => { e.target.checked ? selected.add(item.id) : selected.delete(item.id); bulkButtons(); } }),
    h("button", { type: "button", dataset: { reviewId: item.id }, "aria-current": String(current?.id === item.id), onclick: () => open(item) },
      thumb(item),
      h("span", {}, `${item.tenant_id} · ${shortId(item.task_id)} #${item.index}`, h("br"), h("small", { class: "muted" }, `${findings(item)} · ${age(item)}`)),
      item.claimed_by && item.id !== current?.id ? h("small", { class: "muted" }, " (claimed)") : null))));
  bulkButtons();
}

function thumb(item) {
  if (!thumbs.has(item.id)) thumbs.set(item.id, h("img", { src: image(item, "thumbnail"), alt: "" }));
  return thumbs.get(item.id);
}

function bulkButtons() {
  $("#bulk-approve").disabled = $("#bulk-reject").disabled = selected.size === 0;
}

async function refresh() {
  try {
    items = await api(`/v1/admin/reviews?${query()}`);
  } catch (e) {
    flash(e.text ?? String(e));
    return;
  }
  for (const id of [...selected]) if (!items.some((i) => i.id === id)) selected.delete(id);
  for (const id of [...thumbs.keys()]) if (!items.some((i) => i.id === id)) thumbs.delete(id);
  drawQueue();
  if (!current && !pending) openNext();
}

async function release({ leaving = false } = {}) {
  if (!current) return;
  const was = current;
  current = null;
  await api(`/v1/admin/reviews/${encodeURIComponent(was.id)}/claim`, { method: "DELETE", keepalive: leaving }).catch(() => {});
}

async function open(item) {
  if (current?.id === item.id) return;
  const mine = ++opening;
  await release();
  let claimed;
  try {
    claimed = await api(`/v1/admin/reviews/${encodeURIComponent(item.id)}/claim`, { method: "POST" });
  } catch (e) {
    if (mine !== opening) return;
    flash(e.text ?? String(e)); // claimed by another reviewer, or decided meanwhile
    items = items.filter((i) => i.id !== item.id);
    drawQueue();
    return openNext();
  }
  if (mine !== opening) { // another item was opened meanwhile: this claim is let go at once
    api(`/v1/admin/reviews/${encodeURIComponent(item.id)}/claim`, { method: "DELETE" }).catch(() => {});
    return;
  }
  current = claimed;
  flash("");
  drawHeld();
  drawQueue();
}

function openNext(after = null) {
  const shown = items.filter((i) => i.id !== pending?.item.id && i.id !== after?.id && !(i.claimed_by && i.id !== current?.id));
  const next = shown.find((i) => !after || i.created_at >= after.created_at) ?? shown[0];
  if (next) return open(next);
  current = null;
  drawHeld();
}

function drawHeld() {
  const box = $("#held");
  if (!current) {
    box.replaceChildren(h("p", { class: "muted" }, pending ? "That was the last one." : "Nothing to review."));
    return;
  }
  const item = current;
  const reason = h("select", { id: "reject-reason", "aria-label": "Reason for rejecting" },
    REASONS.map((r, i) => h("option", { value: r }, `${i + 1}. ${r}`)));
  box.replaceChildren(
    h("img", { class: "shield", id: "held-image", src: image(item, "thumbnail"), alt: "held picture, hidden until revealed" }),
    h("p", {}, `${item.tenant_id} · task `, h("a", { href: `/console/tasks/${encodeURIComponent(item.task_id)}` }, shortId(item.task_id)), ` · picture ${item.index} · waiting ${age(item)}`),
    h("table", {}, h("tr", {}, h("th", {}, "finding"), h("th", {}, "score")),
      item.reasons.map((r) => h("tr", {}, h("td", {}, r.label), h("td", {}, Number(r.score).toFixed(2))))),
    h("p", { class: "muted" }, `screened by ${item.model}`),
    h("div", { class: "actions" },
      h("button", { type: "button", class: "quiet", id: "reveal", onclick: reveal }, "Reveal (Space)"),
      h("button", { type: "button", class: "primary", id: "approve", onclick: () => decide("approve") }, "Approve (A)"),
      reason,
      h("button", { type: "button", id: "reject", onclick: () => decide("reject") }, "Reject (X)")),
  );
}

function reveal() {
  const img = $("#held-image");
  if (!img || !current) return;
  img.src = image(current, "image");
  img.classList.remove("shield");
  img.alt = "held picture";
}

function decide(decision) {
  if (!current) return;
  commit(); // a decision still in its window is sent before the next one starts its own
  const item = current;
  const note = decision === "reject" ? $("#reject-reason").value : null;
  current = null;
  selected.delete(item.id);
  pending = { item, decision, note, timer: setTimeout(commit, UNDO_MS) };
  const bar = $("#undo");
  $("span", bar).textContent = `${decision === "approve" ? "Approved" : "Rejected"} ${shortId(item.task_id)} #${item.index}`;
  bar.hidden = false;
  drawQueue();
  openNext(item);
}

function undo() {
  if (!pending) return;
  clearTimeout(pending.timer);
  const { item } = pending;
  pending = null;
  $("#undo").hidden = true;
  release().then(() => open(item));
}

function commit({ leaving = false } = {}) {
  if (!pending) return;
  const { item, decision, note, timer } = pending;
  clearTimeout(timer);
  pending = null;
  $("#undo").hidden = true;
  items = items.filter((i) => i.id !== item.id);
  drawQueue();
  const sent = api(`/v1/admin/reviews/${encodeURIComponent(item.id)}/${decision}`, { method: "POST", body: { note }, keepalive: leaving });
  sent.catch((e) => flash(`${shortId(item.task_id)} #${item.index}: ${e.text ?? e}`));
  if (!current && !leaving) sent.then(() => openNext(), () => {});
}

async function bulk(decision) {
  commit(); // a decision in its undo window is sent first: bulk never overrules it
  const ids = [...selected];
  if (!ids.length) return;
  const note = decision === "reject" ? ($("#reject-reason")?.value ?? REASONS[0]) : null;
  if (!confirm(`${decision === "approve" ? "Approve" : "Reject"} ${ids.length} picture${ids.length === 1 ? "" : "s"}?`)) return;
  if (current && ids.includes(current.id)) current = null;
  const outcomes = await api("/v1/admin/reviews/decide", { method: "POST", body: { ids, decision, note } });
  const failed = outcomes.filter((o) => o.error);
  flash(failed.length ? failed.map((o) => `${o.id}: ${o.error}`).join("; ") : "");
  selected.clear();
  $("#select-all").checked = false;
  await refresh();
}

$("#filters").addEventListener("submit", (e) => { e.preventDefault(); release().then(refresh); });
$("#select-all").addEventListener("change", (e) => {
  for (const i of items) {
    if (e.target.checked && i.id !== pending?.item.id) selected.add(i.id);
    else selected.delete(i.id);
  }
  drawQueue();
});
$("#bulk-approve").addEventListener("click", () => bulk("approve"));
$("#bulk-reject").addEventListener("click", () => bulk("reject"));
$("button", $("#undo")).addEventListener("click", undo);
window.addEventListener("pagehide", () => { commit({ leaving: true }); release({ leaving: true }); });

bind("Space", "Reveal the picture", reveal);
bind("a", "Approve, then the next", () => decide("approve"));
bind("x", "Reject with the chosen reason, then the next", () => decide("reject"));
REASONS.forEach((r, i) => bind(String(i + 1), `Reason: ${r}`, () => { const s = $("#reject-reason"); if (s) s.value = r; }));
bind("j", "Next item", () => { const at = items.findIndex((i) => i.id === current?.id); if (items[at + 1]) open(items[at + 1]); });
bind("k", "Previous item", () => { const at = items.findIndex((i) => i.id === current?.id); if (at > 0) open(items[at - 1]); });
bind("z", "Undo the last decision (5 s)", undo);

// A claim lasts 5 minutes: the item open longer is claimed again every 2, so it stays this reviewer's.
async function renew() {
  if (!current) return;
  const held = current;
  try {
    await api(`/v1/admin/reviews/${encodeURIComponent(held.id)}/claim`, { method: "POST" });
  } catch (e) {
    if (current?.id === held.id) flash(`${e.text ?? e}: another reviewer may decide it now.`);
  }
}

await refresh();
setInterval(refresh, REFRESH_MS);
setInterval(renew, 120_000);
ready();
