// Create: the imagine bar and one live card per task. Cards come from the task list, then from
// the tenant's one event stream, which opens with every task still on its way: a reload
// re-attaches to running work. A task this tab sent into MODAL opens its dialog by itself.
import { $, api, bind, flash, ready, taskEvents } from "./lib.js";
import { card, FINAL } from "./cards.js";
import { openMaskEditor } from "./mask.js";
import { countdown } from "./countdown.js";

const feed = $("#feed");
const tasks = new Map(); // task_id -> the last task object drawn
const mine = new Set(); // tasks this tab made: one entering MODAL opens its dialog
const opened = new Set(); // MODAL tasks whose dialog opened already
const modalMs = Number(document.body.dataset.modalSeconds) * 1000;
let cursor = null;

const handlers = { onPress: press, onCancel: cancel, onModal: openModal };

function draw(t, { atTop = true } = {}) {
  const old = tasks.get(t.task_id);
  // An event can overtake a slower answer: never draw a task older than what is shown.
  if (old && FINAL.has(old.status) && !FINAL.has(t.status)) return;
  tasks.set(t.task_id, t);
  const el = card(t, handlers);
  const shown = feed.querySelector(`[data-task-id="${CSS.escape(t.task_id)}"]`);
  if (shown) shown.replaceWith(el);
  else if (atTop) feed.prepend(el);
  else feed.append(el);
  if (t.status === "MODAL" && mine.has(t.task_id) && !opened.has(t.task_id)) {
    opened.add(t.task_id);
    openModal(t);
  }
}

async function show(taskIds) {
  for (const id of taskIds) {
    mine.add(id);
    draw(await api(`/v1/midjourney/${encodeURIComponent(id)}`));
  }
}

function submitted(answer) {
  return answer.data.map((d) => d.task_id);
}

async function imagine(event) {
  event.preventDefault();
  const box = $("#imagine-error");
  box.hidden = true;
  const prompt = $("#prompt").value.trim();
  if (!prompt) return;
  $("#go").disabled = true;
  try {
    await show(submitted(await api("/v1/midjourney/generations/imagine", { method: "POST", body: { prompt } })));
    $("#prompt").value = "";
  } catch (e) {
    box.textContent = e.text ?? String(e);
    box.hidden = false;
  } finally {
    $("#go").disabled = false;
  }
}

async function press(t, button) {
  flash("");
  try {
    await show(submitted(await api("/v1/midjourney/generations/action", { method: "POST", body: { task_id: t.task_id, custom_id: button.custom_id } })));
  } catch (e) {
    flash(e.text ?? String(e));
  }
}

async function cancel(t) {
  try {
    await api(`/v1/midjourney/${encodeURIComponent(t.task_id)}/cancel`, { method: "POST" });
    draw(await api(`/v1/midjourney/${encodeURIComponent(t.task_id)}`));
  } catch (e) {
    flash(e.text ?? String(e));
  }
}

async function parentOf(t) {
  return api(`/v1/midjourney/${encodeURIComponent(t.parent_task_id)}`);
}

// The MODAL dialogs: custom zoom asks for a prompt and a factor, vary region for a mask. Both
// show the time left; closing either cancels the task, and the charge is refunded.
async function openModal(t) {
  const deadline = t.submit_time + modalMs;
  const parent = await parentOf(t);
  if (t.action === "INPAINT") {
    const drawn = await openMaskEditor($("#mask-dialog"), parent.image_urls[0], deadline, async (mask, prompt) => {
      const upload = await api("/v1/uploads", { method: "POST", body: mask });
      await api("/v1/midjourney/generations/modal", { method: "POST", body: { task_id: t.task_id, prompt: prompt || null, mask_url: upload.data[0].url } });
    });
    if (!drawn) await cancel(t);
    return;
  }
  const dialog = $("#zoom-dialog");
  const error = $(".error", dialog);
  $("#zoom-prompt").value = parent.prompt;
  error.hidden = true;
  const stop = countdown($(".countdown", dialog), deadline);
  let sent = false;
  const form = $("form", dialog);
  form.onsubmit = async (event) => {
    event.preventDefault();
    try {
      await api("/v1/midjourney/generations/modal", { method: "POST", body: { task_id: t.task_id, prompt: $("#zoom-prompt").value, zoom: Number($("#zoom-factor").value) } });
      sent = true;
      dialog.close();
    } catch (e) {
      error.textContent = e.text ?? String(e);
      error.hidden = false;
    }
  };
  $("[data-close]", dialog).onclick = () => dialog.close();
  dialog.onclose = () => { stop(); if (!sent) cancel(t); };
  dialog.showModal();
}

async function older() {
  const page = await api(`/v1/tasks?limit=20${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`);
  for (const t of page.data) if (!tasks.has(t.task_id)) draw(t, { atTop: false });
  cursor = page.next_cursor;
  $("#more").hidden = !cursor;
}

$("#imagine").addEventListener("submit", imagine);
$("#prompt").addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey) $("#imagine").requestSubmit(), e.preventDefault();
});
$("#more").addEventListener("click", older);
bind("/", "Write a prompt", () => $("#prompt").focus());
const asked = new URLSearchParams(location.search).get("prompt");
if (asked) $("#prompt").value = asked;

await older();
taskEvents((t) => draw(t));
ready();
