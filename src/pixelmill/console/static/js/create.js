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

// How far a task has come: an answer read earlier can arrive after a later event, and a card
// never goes back. A retry is forward (one more failed attempt), then waiting, rendering, done.
const STAGE = { MODAL: 0, NOT_START: 1, SUBMITTED: 1, IN_PROGRESS: 2, SUCCESS: 3, FAILURE: 3, CANCEL: 3 };

function rank(t) {
  return [t.attempts.length, STAGE[t.status], parseInt(t.progress, 10) || 0];
}

function behind(t, old) {
  if (!old) return false;
  if (FINAL.has(old.status)) return !(FINAL.has(t.status) && t.status === old.status); // final is final
  const [a, b] = [rank(t), rank(old)];
  const i = a.findIndex((x, n) => x !== b[n]);
  return i >= 0 && a[i] < b[i];
}

function draw(t, { atTop = true } = {}) {
  const old = tasks.get(t.task_id);
  if (behind(t, old)) return;
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

let sending = false;

async function imagine(event) {
  event.preventDefault();
  const box = $("#imagine-error");
  const prompt = $("#prompt").value.trim();
  if (!prompt || sending) return; // a second Enter while the first is on its way sends nothing
  box.hidden = true;
  sending = true;
  $("#go").disabled = true;
  try {
    // One key per prompt sent: a retry of the same request (a flaky network) is the same task.
    const headers = { "Idempotency-Key": crypto.randomUUID() };
    await show(submitted(await api("/v1/midjourney/generations/imagine", { method: "POST", body: { prompt }, headers })));
    $("#prompt").value = "";
  } catch (e) {
    box.textContent = e.text ?? String(e);
    box.hidden = false;
  } finally {
    sending = false;
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
  if ($("dialog[open]")) return; // one at a time: the other task's card keeps its button
  let parent;
  try {
    parent = await parentOf(t);
  } catch (e) {
    flash(e.text ?? String(e));
    return;
  }
  if (t.action === "INPAINT") {
    let drawn = false;
    try {
      drawn = await openMaskEditor($("#mask-dialog"), parent.image_urls[0], deadline, async (mask, prompt) => {
        const upload = await api("/v1/uploads", { method: "POST", body: mask });
        await api("/v1/midjourney/generations/modal", { method: "POST", body: { task_id: t.task_id, prompt: prompt || null, mask_url: upload.data[0].url } });
      });
    } catch (e) {
      flash(`The picture to draw on did not load (${e.message ?? e}): the task is cancelled and refunded.`);
    }
    if (!drawn) await cancel(t);
    return;
  }
  const dialog = $("#zoom-dialog");
  const error = $(".error", dialog);
  $("#zoom-prompt").value = parent.prompt;
  error.hidden = true;
  const stop = countdown($(".countdown", dialog), deadline);
  let sent = false;
  let sending = false;
  const form = $("form", dialog);
  form.onsubmit = async (event) => {
    event.preventDefault();
    if (sending) return;
    sending = true;
    try {
      await api("/v1/midjourney/generations/modal", { method: "POST", body: { task_id: t.task_id, prompt: $("#zoom-prompt").value, zoom: Number($("#zoom-factor").value) } });
      sent = true;
      dialog.close();
    } catch (e) {
      error.textContent = e.text ?? String(e);
      error.hidden = false;
    } finally {
      sending = false;
    }
  };
  $("[data-close]", dialog).onclick = () => dialog.close();
  // Escape while the answer is on its way would cancel the task just sent: wait for it.
  dialog.oncancel = (event) => { if (sending) event.preventDefault(); };
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
  if (e.key === "Enter" && !e.shiftKey && !e.isComposing) $("#imagine").requestSubmit(), e.preventDefault();
});
$("#more").addEventListener("click", older);
bind("/", "Write a prompt", () => $("#prompt").focus());
const asked = new URLSearchParams(location.search).get("prompt");
if (asked) $("#prompt").value = asked;

// At each opening of the stream: the cards still on their way, read again (those that finished
// while the tab was hidden or the stream was down are not in its snapshot).
async function resync() {
  const ids = [...tasks.values()].filter((t) => !FINAL.has(t.status)).map((t) => t.task_id);
  for (let i = 0; i < ids.length; i += 100) {
    const answer = await api("/v1/midjourney/list-by-ids", { method: "POST", body: { ids: ids.slice(i, i + 100) } }).catch(() => null);
    for (const t of answer?.data ?? []) draw(t);
  }
}

await older();
taskEvents((t) => draw(t), resync);
ready();
