// The mask editor for vary region: paint where the picture should change. Brush, eraser,
// rectangle and lasso; sizes down to 1 px; undo and redo; invert; zoom. Pointer Events, so mouse,
// pen and touch all draw. The mask is kept at the picture's own size and sent as a black and
// white PNG: white = repaint, every other pixel kept.
import { $, $$, bind } from "./lib.js";
import { countdown } from "./countdown.js";

// Undo keeps whole-mask snapshots: at most this many bytes of them (a 1024² mask is 4 MB, so
// 16 steps; a 4096² upscale gets 2 rather than crashing a phone).
const UNDO_BYTES = 64 * 1024 * 1024;
const SCOPE = "mask-dialog";
let ed = null; // the open editor's state

function snapshot() {
  ed.undo.push(ed.ctx.getImageData(0, 0, ed.canvas.width, ed.canvas.height));
  const depth = Math.max(1, Math.floor(UNDO_BYTES / (ed.canvas.width * ed.canvas.height * 4)));
  while (ed.undo.length > depth) ed.undo.shift();
  ed.redo = [];
}

function restore(from, to) {
  if (!from.length) return;
  to.push(ed.ctx.getImageData(0, 0, ed.canvas.width, ed.canvas.height));
  ed.ctx.putImageData(from.pop(), 0, 0);
}

function setTool(tool) {
  ed.tool = tool;
  for (const b of $$("[data-tool]", ed.dialog)) b.setAttribute("aria-pressed", String(b.dataset.tool === tool));
}

function resize(direction, big) {
  const step = (ed.size < 10 ? 1 : ed.size < 50 ? 5 : 10) * (big ? 10 : 1);
  ed.size = Math.min(1024, Math.max(1, ed.size + direction * step));
  $("#mask-size").textContent = `${ed.size} px`;
}

function setZoom(factor) {
  ed.zoom = Math.min(8, Math.max(0.25, ed.zoom * factor));
  const box = $(".mask-canvas", ed.dialog);
  box.style.width = `${Math.round(ed.fit * ed.zoom * ed.canvas.width)}px`;
}

function invert() {
  snapshot();
  const data = ed.ctx.getImageData(0, 0, ed.canvas.width, ed.canvas.height);
  for (let i = 0; i < data.data.length; i += 4) {
    data.data[i] = data.data[i + 1] = data.data[i + 2] = 255;
    data.data[i + 3] = 255 - data.data[i + 3];
  }
  ed.ctx.putImageData(data, 0, 0);
}

function clear() {
  snapshot();
  ed.ctx.clearRect(0, 0, ed.canvas.width, ed.canvas.height);
}

// The point in the picture's own pixels under the pointer, at any zoom.
function at(e) {
  const r = ed.canvas.getBoundingClientRect();
  return [(e.clientX - r.left) * (ed.canvas.width / r.width), (e.clientY - r.top) * (ed.canvas.height / r.height)];
}

function paint(ctx) {
  ctx.globalCompositeOperation = ed.tool === "eraser" ? "destination-out" : "source-over";
  ctx.fillStyle = ctx.strokeStyle = "#fff";
  ctx.lineWidth = ed.size;
  ctx.lineCap = ctx.lineJoin = "round";
}

function down(e) {
  if (!ed || e.button > 0 || !e.isPrimary || ed.stroke) return; // one finger draws; a second is ignored
  e.preventDefault();
  ed.canvas.setPointerCapture(e.pointerId);
  snapshot();
  const [x, y] = at(e);
  ed.stroke = { start: [x, y], last: [x, y], points: [[x, y]], before: ed.undo[ed.undo.length - 1] };
  paint(ed.ctx);
  if (ed.tool === "brush" || ed.tool === "eraser") {
    ed.ctx.beginPath();
    ed.ctx.arc(x, y, ed.size / 2, 0, Math.PI * 2);
    ed.ctx.fill();
  }
}

function move(e) {
  if (!ed?.stroke || !e.isPrimary) return;
  const [x, y] = at(e);
  const s = ed.stroke;
  const ctx = ed.ctx;
  if (ed.tool === "brush" || ed.tool === "eraser") {
    ctx.beginPath();
    ctx.moveTo(...s.last);
    ctx.lineTo(x, y);
    ctx.stroke();
  } else if (ed.tool === "rect") {
    ctx.putImageData(s.before, 0, 0);
    paint(ctx);
    ctx.fillRect(Math.min(s.start[0], x), Math.min(s.start[1], y), Math.abs(x - s.start[0]), Math.abs(y - s.start[1]));
  } else {
    s.points.push([x, y]);
    ctx.putImageData(s.before, 0, 0);
    paint(ctx);
    ctx.lineWidth = Math.max(1, 2 / (ed.fit * ed.zoom));
    ctx.beginPath();
    s.points.forEach(([px, py], i) => (i ? ctx.lineTo(px, py) : ctx.moveTo(px, py)));
    ctx.stroke();
  }
  s.last = [x, y];
}

function up(e) {
  if (!ed?.stroke || (e && !e.isPrimary)) return;
  const s = ed.stroke;
  if (ed.tool === "lasso" && s.points.length <= 2) ed.ctx.putImageData(s.before, 0, 0); // no area: its preview line goes
  if (ed.tool === "lasso" && s.points.length > 2) {
    ed.ctx.putImageData(s.before, 0, 0);
    paint(ed.ctx);
    ed.ctx.beginPath();
    s.points.forEach(([px, py], i) => (i ? ed.ctx.lineTo(px, py) : ed.ctx.moveTo(px, py)));
    ed.ctx.closePath();
    ed.ctx.fill();
  }
  ed.stroke = null;
}

// White wherever the mask is at least half covered, black elsewhere, fully opaque: anti-aliased
// edges do not turn into grey pixels that an engine would half repaint.
function exportMask() {
  const { width, height } = ed.canvas;
  const data = ed.ctx.getImageData(0, 0, width, height);
  for (let i = 0; i < data.data.length; i += 4) {
    const on = data.data[i + 3] >= 128 ? 255 : 0;
    data.data[i] = data.data[i + 1] = data.data[i + 2] = on;
    data.data[i + 3] = 255;
  }
  const out = document.createElement("canvas");
  out.width = width;
  out.height = height;
  out.getContext("2d").putImageData(data, 0, 0);
  return new Promise((resolve) => out.toBlob(resolve, "image/png"));
}

async function submit() {
  const error = $(".error", ed.dialog);
  error.hidden = true;
  try {
    await ed.send(await exportMask(), $("#mask-prompt").value.trim());
    ed.sent = true;
    ed.dialog.close();
  } catch (e) {
    error.textContent = e.text ?? String(e);
    error.hidden = false;
  }
}

const ACTS = {
  smaller: (e) => resize(-1, e.shiftKey), bigger: (e) => resize(1, e.shiftKey),
  undo: () => restore(ed.undo, ed.redo), redo: () => restore(ed.redo, ed.undo),
  invert, clear, "zoom-in": () => setZoom(1.25), "zoom-out": () => setZoom(0.8),
};

bind("b", "Mask: brush", () => setTool("brush"), { scope: SCOPE });
bind("e", "Mask: eraser", () => setTool("eraser"), { scope: SCOPE });
bind("r", "Mask: rectangle", () => setTool("rect"), { scope: SCOPE });
bind("l", "Mask: lasso", () => setTool("lasso"), { scope: SCOPE });
bind("[", "Mask: smaller brush", (e) => resize(-1, false), { scope: SCOPE });
bind("]", "Mask: bigger brush", (e) => resize(1, false), { scope: SCOPE });
bind("{", "Mask: much smaller brush", () => resize(-1, true), { scope: SCOPE });
bind("}", "Mask: much bigger brush", () => resize(1, true), { scope: SCOPE });
bind("i", "Mask: invert", invert, { scope: SCOPE });
bind("Ctrl+z", "Mask: undo", ACTS.undo, { scope: SCOPE });
bind("Ctrl+Shift+z", "Mask: redo", ACTS.redo, { scope: SCOPE });
bind("=", "Mask: zoom in", ACTS["zoom-in"], { scope: SCOPE });
bind("-", "Mask: zoom out", ACTS["zoom-out"], { scope: SCOPE });
bind("Enter", "Mask: submit", () => submit(), { scope: SCOPE });

// Open the editor over `imageUrl`; `send(maskBlob, prompt)` submits. Resolves true once sent,
// false when the person closed it (the caller then cancels the task).
export async function openMaskEditor(dialog, imageUrl, deadline, send) {
  const img = $("img", dialog);
  const canvas = $("canvas", dialog);
  img.src = imageUrl;
  await img.decode();
  canvas.width = img.naturalWidth;
  canvas.height = img.naturalHeight;
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  $("#mask-prompt").value = "";
  $(".error", dialog).hidden = true;
  dialog.showModal();
  const stage = $(".mask-stage", dialog);
  const fit = Math.min(1, (stage.clientWidth - 8) / canvas.width, (stage.clientHeight - 8) / canvas.height);
  ed = { dialog, canvas, ctx, send, tool: "brush", size: 32, zoom: 1, fit, undo: [], redo: [], stroke: null, sent: false };
  setTool("brush");
  resize(0, false);
  setZoom(1);
  const stop = countdown($(".countdown", dialog), deadline);
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => {
      stop();
      const sent = ed.sent;
      ed = null;
      resolve(sent);
    }, { once: true });
  });
}

// Wired once: the dialog is part of the Create page.
{
  const dialog = $("#mask-dialog");
  const canvas = $("canvas", dialog);
  canvas.addEventListener("pointerdown", down);
  canvas.addEventListener("pointermove", move);
  canvas.addEventListener("pointerup", up);
  canvas.addEventListener("pointercancel", up);
  for (const b of $$("[data-tool]", dialog)) b.addEventListener("click", () => setTool(b.dataset.tool));
  for (const b of $$("[data-act]", dialog)) b.addEventListener("click", (e) => ACTS[b.dataset.act](e));
  $("[data-close]", dialog).addEventListener("click", () => dialog.close());
  $("form", dialog).addEventListener("submit", (e) => { e.preventDefault(); submit(); });
}
