// Batches: start one from a template (or a prompt with {slots}) and a CSV of variables, one task
// per row; watch the counts; download the manifest (JSON or CSV); cancel the rest (refunded).
import { $, api, fillTable, flash, h, ready, shortId, when } from "./lib.js";

const EVERY_MS = 2000;

// RFC 4180: fields separated by commas, quoted with "..." where they hold commas, quotes or line
// breaks ("" is a quote inside). Rows of only empty fields are dropped.
export function parseCsv(text) {
  const rows = [];
  let row = [], field = "", quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') field += '"', i++;
      else if (c === '"') quoted = false;
      else field += c;
    } else if (c === '"') quoted = true;
    else if (c === ",") row.push(field), field = "";
    else if (c === "\n" || c === "\r") {
      if (c === "\r" && text[i + 1] === "\n") i++;
      row.push(field), rows.push(row), row = [], field = "";
    } else field += c;
  }
  row.push(field);
  rows.push(row);
  return rows.filter((r) => r.some((f) => f.trim() !== ""));
}

// The variables of each row, by the header's names; numbers stay numbers.
function variables() {
  const [head, ...rows] = parseCsv($("#batch-csv").value);
  if (!head) return [];
  const names = head.map((n) => n.trim());
  return rows.map((r) => Object.fromEntries(names.map((n, i) => {
    const v = (r[i] ?? "").trim();
    return [n, v !== "" && !Number.isNaN(Number(v)) ? Number(v) : v];
  })));
}

function body() {
  const items = variables();
  const template = $("#batch-template").value;
  if (template) return { requests: items.map((v) => ({ template, variables: v })) };
  return { prompt_template: $("#batch-prompt").value, variables: items };
}

function preview() {
  const n = variables().length;
  $("#batch-preview").textContent = n ? `${n} task${n === 1 ? "" : "s"}, in the batch lane` : "";
}

async function start(event) {
  event.preventDefault();
  const error = $("#batch-error");
  error.hidden = true;
  try {
    const answer = await api("/v1/batches", { method: "POST", body: body() });
    flash(`Batch ${answer.data[0].batch_id} started: ${answer.data[0].total} tasks.`);
    await refresh();
  } catch (e) {
    error.textContent = e.text ?? String(e);
    error.hidden = false;
  }
}

async function cancel(batch) {
  if (!confirm(`Cancel the unfinished tasks of batch ${batch.batch_id}? They are refunded.`)) return;
  await api(`/v1/batches/${encodeURIComponent(batch.batch_id)}/cancel`, { method: "POST" });
  await refresh();
}

function row(b) {
  const manifest = (format) => `/console/api/v1/batches/${encodeURIComponent(b.batch_id)}/manifest?format=${format}`;
  const counts = Object.entries(b.counts).filter(([, n]) => n).map(([s, n]) => `${s.toLowerCase()} ${n}`).join(" · ");
  return h("tr", { dataset: { batchId: b.batch_id, status: b.status } },
    h("td", {}, shortId(b.batch_id), h("br"), h("small", { class: "muted" }, when(b.created_at))),
    h("td", {}, b.status),
    h("td", {}, h("progress", { max: b.total, value: b.done, "aria-label": "done" }), ` ${b.done} / ${b.total}`, h("br"), h("small", { class: "muted" }, counts)),
    h("td", { class: "row" },
      h("a", { href: manifest("json"), download: `${b.batch_id}.json` }, "manifest (JSON)"),
      h("a", { href: manifest("csv"), download: `${b.batch_id}.csv` }, "CSV"),
      b.status === "running" ? h("button", { type: "button", class: "quiet", dataset: { act: "cancel" }, onclick: () => cancel(b) }, "Cancel") : null));
}

async function refresh() {
  const list = await api("/v1/batches?limit=50").catch((e) => (flash(e.text ?? String(e)), null));
  if (!list) return;
  $("#no-batches").hidden = list.length > 0;
  fillTable($("#batch-list"), ["batch", "status", "progress", ""], list.map(row));
}

$("#new-batch").addEventListener("submit", start);
$("#batch-csv").addEventListener("input", preview);
$("#batch-file").addEventListener("change", async (e) => {
  const file = e.target.files[0];
  if (file) $("#batch-csv").value = await file.text();
  preview();
});
for (const t of await api("/v1/templates")) $("#batch-template").append(h("option", { value: t.name }, t.name));
await refresh();
setInterval(refresh, EVERY_MS);
ready();
