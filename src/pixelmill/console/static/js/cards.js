// A task as a card: status, queue place, progress and preview while it renders, the result, its
// buttons, cancel, where it came from, and a failure's reason (failures are refunded). The Create
// page and the detail page draw tasks with this one module.
import { h, shortId } from "./lib.js";

const WAITING = new Set(["NOT_START", "SUBMITTED"]);
export const FINAL = new Set(["SUCCESS", "FAILURE", "CANCEL"]);

export function statusText(t) {
  if (WAITING.has(t.status)) return t.queue_position ? `waiting · #${t.queue_position} in the ${t.lane} queue` : "waiting";
  if (t.status === "IN_PROGRESS") return `rendering · ${t.progress}`;
  if (t.status === "MODAL") return "waiting for you";
  if (t.status === "SUCCESS") return "done";
  if (t.status === "FAILURE") return "failed · refunded";
  return "cancelled · refunded";
}

// "U2 of 1a2b3c4d": which button of which task made this one.
export function origin(t) {
  if (!t.parent_task_id) return null;
  const of = { UPSCALE: "U", VARIATION: "V" }[t.action];
  const what = of && t.index ? `${of}${t.index}` : t.action.toLowerCase();
  return [`${what} of `, h("a", { href: `/console/tasks/${encodeURIComponent(t.parent_task_id)}` }, shortId(t.parent_task_id))];
}

export function templateText(tpl) {
  if (!tpl) return null;
  // rollout: "stable" or "candidate", the side of a staged rollout this subject fell on.
  const where = [tpl.release, tpl.rollout].filter(Boolean).join(", ");
  return `template ${tpl.name ?? "?"}${tpl.version ? ` v${tpl.version}` : ""}${where ? ` (${where})` : ""}`;
}

// The picture a card shows now: the live preview while rendering, then the grid or image.
export function picture(t) {
  if (!FINAL.has(t.status)) return t.preview_url;
  return t.grid_image_url ?? t.image_urls[0] ?? null;
}

// What a button does, in words, from its custom id (MJ::JOB::<operation>::<n>::<task>): the
// label alone may be an emoji ("🔄") that a screen reader or a font without emoji cannot say.
function operation(button) {
  const [, , op, n] = button.custom_id.split("::");
  const words = op.replaceAll("_", " ");
  return op === "upsample" || op === "variation" ? button.label : `${words}${Number(n) > 1 ? ` ${n}` : ""}`;
}

export function card(t, { onPress, onCancel, onModal }) {
  const shown = picture(t);
  const live = !FINAL.has(t.status);
  return h("article", { class: `card ${t.status.toLowerCase()}`, dataset: { taskId: t.task_id, status: t.status } },
    h("header", {},
      h("b", {}, t.action),
      h("span", { class: "status", dataset: { role: "status" } }, statusText(t)),
      h("span", { class: "origin muted" }, origin(t)),
    ),
    h("p", { class: "prompt" }, t.prompt || t.final_prompt || t.description),
    live && t.status !== "MODAL" ? h("progress", { max: 100, value: parseInt(t.progress, 10) || 0, "aria-label": "progress" }) : null,
    shown ? h("a", { href: `/console/tasks/${encodeURIComponent(t.task_id)}`, class: "shot" },
      h("img", { src: shown, alt: live ? "preview while it renders" : t.prompt, dataset: { kind: live ? "preview" : "result" }, loading: "lazy" })) : null,
    t.video_urls.length ? h("video", { src: t.video_urls[0], controls: true, loop: true, muted: true, playsinline: true }) : null,
    t.fail_reason && FINAL.has(t.status) && t.status !== "SUCCESS" ? h("p", { class: "error" }, `${t.fail_reason} · refunded`) : null,
    t.fail_reason && t.status === "SUCCESS" ? h("p", { class: "muted" }, t.fail_reason) : null,
    h("p", { class: "meta muted" }, [
      `${t.engine} · ${t.quota} unit${t.quota === 1 ? "" : "s"}`,
      templateText(t.template) ? ` · ${templateText(t.template)}` : "",
      ` · ${shortId(t.task_id)}`,
    ]),
    h("div", { class: "buttons" },
      t.buttons.map((b) => h("button", { type: "button", dataset: { customId: b.custom_id }, title: operation(b), "aria-label": operation(b), onclick: () => onPress(t, b) }, b.label)),
      t.status === "MODAL" ? h("button", { type: "button", class: "primary", onclick: () => onModal(t) }, t.action === "INPAINT" ? "Draw the mask…" : "Set the zoom…") : null,
      live ? h("button", { type: "button", class: "quiet", dataset: { act: "cancel" }, onclick: () => onCancel(t) }, "Cancel") : null,
    ),
  );
}
