// Operations: readiness per part, queue depth per lane, workers, the seed's four health figures
// with their thresholds, recent failures, and charts of success rate, latency and cost. Polled
// every 5 s (no stream: nothing here needs to be faster).
import { $, api, fillTable, flash, h, ready, shortId, when } from "./lib.js";

const EVERY_MS = 5000;
const SVG = "http://www.w3.org/2000/svg";

function chart(id, points, format) {
  const svg = $(`#${id} svg`);
  const values = points.map((p) => p.value);
  const known = values.filter((v) => v !== null);
  const top = Math.max(...known, 0) || 1;
  const line = document.createElementNS(SVG, "polyline");
  line.setAttribute("points", points.map((p, i) => (p.value === null ? null : `${i * 10},${100 - (p.value / top) * 95}`)).filter(Boolean).join(" "));
  const dots = points.flatMap((p, i) => {
    if (p.value === null) return [];
    const dot = document.createElementNS(SVG, "circle");
    dot.setAttribute("cx", i * 10);
    dot.setAttribute("cy", 100 - (p.value / top) * 95);
    dot.setAttribute("r", 2.5);
    return [dot];
  });
  const title = document.createElementNS(SVG, "title");
  title.textContent = `${$(`#${id} h2`).textContent}: ${known.length ? format(known[known.length - 1]) : "no tasks"}`;
  svg.replaceChildren(title, line, ...dots);
  $(`#${id} p`).textContent = known.length ? `latest ${format(known[known.length - 1])} · peak ${format(Math.max(...known))}` : "no finished tasks in this period";
}

async function refresh() {
  let ops, health;
  try {
    [ops, health] = await Promise.all([api("/v1/admin/operations"), api("/v1/admin/health-report")]);
  } catch (e) {
    flash(e.text ?? String(e));
    return;
  }
  flash("");
  fillTable($("#readiness table"), ["part", "state"], Object.entries(ops.readiness).map(([k, v]) => [k, h("span", { class: v === "ok" ? "verdict-ok" : "state-bad" }, v)]));
  fillTable($("#lanes table"), ["lane", "waiting", "running"], [...ops.lanes.map((l) => [l.lane, l.waiting, l.running]), ["modal (waiting for people)", ops.modal, ""]]);
  fillTable($("#workers table"), ["worker", "tasks"], ops.workers.length ? ops.workers.map((w) => [w.worker, w.running]) : [["none busy", `${ops.workers_per_process} per process`]]);
  fillTable($("#health table"), ["figure", "value", "threshold"], health.figures.map((f) => [
    f.name.replaceAll("_", " "),
    h("span", { class: `verdict-${f.verdict}`, title: f.verdict }, f.value === null ? "—" : typeof f.value === "number" ? String(Number(f.value.toFixed(3))) : String(f.value), f.verdict === "ok" ? "" : ` (${f.verdict})`),
    `${f.rule} ${f.threshold}`]));
  // A task page shows the session's own tenant's tasks: another tenant's failure is named, not linked.
  const own = document.body.dataset.tenant;
  fillTable($("#failures table"), ["when", "task", "tenant", "reason"], ops.failures.map((f) => [
    when(f.finished_at),
    f.tenant_id === own ? h("a", { href: `/console/tasks/${encodeURIComponent(f.task_id)}` }, `${f.action} ${shortId(f.task_id)}`) : `${f.action} ${f.task_id}`,
    f.tenant_id, f.reason ?? ""]));
  chart("chart-success", ops.series.map((p) => ({ value: p.success_rate })), (v) => `${(v * 100).toFixed(1)} %`);
  chart("chart-latency", ops.series.map((p) => ({ value: p.mean_ms })), (v) => `${Math.round(v)} ms`);
  chart("chart-cost", ops.series.map((p) => ({ value: p.finished ? p.cost : 0 })), (v) => `${v}`);
  $("#updated").textContent = `· ${new Date(ops.at).toLocaleTimeString()}`;
  document.body.dataset.loaded = "true";
}

await refresh();
setInterval(refresh, EVERY_MS);
ready();
