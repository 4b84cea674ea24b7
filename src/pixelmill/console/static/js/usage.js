// Usage: the key's balance, and what it was charged (net of refunds) per day and per price over
// the last 30 days; the engine time its tenant's tasks used.
import { $, api, fillTable, h, ready } from "./lib.js";

const SVG = "http://www.w3.org/2000/svg";
const DAY = 86_400_000;

function bars(report) {
  const svg = $("#chart-daily svg");
  const days = Math.round((report.until - report.since) / DAY);
  const net = new Map(report.days.map((d) => [Math.round((d.day - report.since) / DAY), d.net]));
  const top = Math.max(1, ...net.values());
  const width = 290 / days;
  const drawn = [];
  for (let i = 0; i < days; i++) {
    const v = net.get(i) ?? 0;
    if (!v) continue;
    const bar = document.createElementNS(SVG, "rect");
    bar.setAttribute("x", i * width);
    bar.setAttribute("width", Math.max(1, width - 1));
    bar.setAttribute("y", 100 - (v / top) * 95);
    bar.setAttribute("height", (v / top) * 95);
    drawn.push(bar);
  }
  svg.replaceChildren(...drawn);
  const total = report.days.reduce((sum, d) => sum + d.net, 0);
  $("#chart-daily p").textContent = `${total} units net over ${days} days · busiest day ${top === 1 && !total ? 0 : top}`;
}

const report = await api("/v1/usage");
$("#balance").textContent = report.balance === null ? "unlimited" : `${report.balance} units left`;
bars(report);
fillTable($("#prices table"), ["price", "tasks", "charged", "refunded", "net"], report.usage.map((u) => [u.price_key ?? "—", u.tasks, u.charged, u.refunded, u.net]));
fillTable($("#engines table"), ["engine", "tasks", "seconds", "estimated cost"], report.engines.map((e) => [e.engine, e.tasks, e.run_seconds.toFixed(1), e.estimated_cost.toFixed(4)]));
ready();
