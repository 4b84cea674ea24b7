// A task's detail: its pictures full size (arrow keys and swipe move between them), everything
// known about how it was made, the tree of tasks it came from and led to, download, and
// "use this prompt". Another tenant's task, or an unknown id, is the API's 404.
import { $, api, bind, h, ready, shortId, when } from "./lib.js";
import { card, origin, statusText, templateText } from "./cards.js";

const root = $("#task");
const taskId = root.dataset.taskId;
let pictures = [];
let at = 0;

function facts(t) {
  const tpl = t.template;
  const rows = [
    ["status", statusText(t)],
    ["prompt", t.prompt],
    ["final prompt", t.final_prompt],
    ["seed", t.seed ?? "—"],
    ["engine", t.engine],
    ["cost", `${t.quota} unit${t.quota === 1 ? "" : "s"}${t.status === "FAILURE" || t.status === "CANCEL" ? " (refunded)" : ""}`],
    ["template", tpl ? templateText(tpl) : "—"],
    ["release and side", tpl ? [tpl.release ?? "pinned", tpl.rollout].filter(Boolean).join(", ") : "—"],
    ["template hash", tpl?.content_hash ?? "—"],
    ["lane", `${t.lane}, priority ${t.priority}`],
    ["submitted", when(t.submit_time)],
    ["finished", when(t.finish_time) || "—"],
    ["task id", t.task_id],
  ];
  if (t.fail_reason) rows.push(["reason", t.fail_reason]);
  const provenance = t.renditions[at]?.metadata;
  return h("dl", { class: "facts" },
    rows.flatMap(([k, v]) => [h("dt", {}, k), h("dd", { dataset: { fact: k } }, String(v ?? ""))]),
    h("dt", {}, "provenance"),
    h("dd", { dataset: { fact: "provenance" } }, provenance ? h("a", { href: provenance }, "record of how it was made") : "made after it finished"),
  );
}

function showPicture() {
  const img = $(".viewer img");
  if (!img || !pictures.length) return;
  img.src = pictures[at];
  $(".viewer .count").textContent = `${at + 1} / ${pictures.length}`;
  $("#download").href = pictures[at];
}

function step(by) {
  if (pictures.length < 2) return;
  at = (at + by + pictures.length) % pictures.length;
  showPicture();
}

async function lineage(t) {
  const above = [];
  for (let id = t.parent_task_id; id && above.length < 10;) {
    const parent = await api(`/v1/midjourney/${encodeURIComponent(id)}`);
    above.unshift(parent);
    id = parent.parent_task_id;
  }
  const below = (await api(`/v1/tasks?parent=${encodeURIComponent(t.task_id)}&limit=50`)).data;
  const item = (x, here = false) => h("li", { class: here ? "here" : null },
    here ? `${x.action} (this task)` : h("a", { href: `/console/tasks/${encodeURIComponent(x.task_id)}` }, `${x.action} ${shortId(x.task_id)}`),
    ` · ${statusText(x)}`);
  let tree = h("ul", { class: "tree" }, item(t, true), below.length ? h("ul", { class: "tree" }, below.map((c) => item(c))) : null);
  for (const a of above.reverse()) tree = h("ul", { class: "tree" }, item(a), tree);
  tree.id = "lineage";
  return tree;
}

async function main() {
  let t;
  try {
    t = await api(`/v1/midjourney/${encodeURIComponent(taskId)}`);
  } catch (e) {
    root.replaceChildren(h("h1", {}, "No such task"), h("p", {}, e.text ?? String(e)));
    return;
  }
  pictures = t.image_urls.length ? t.image_urls : [t.grid_image_url ?? t.preview_url].filter(Boolean);
  const viewer = h("section", { class: "viewer" },
    pictures.length ? h("img", { alt: t.prompt }) : h("p", { class: "muted" }, "No picture yet."),
    h("div", { class: "nav" },
      h("button", { type: "button", class: "quiet", onclick: () => step(-1), "aria-label": "Previous picture" }, "←"),
      h("span", { class: "count" }),
      h("button", { type: "button", class: "quiet", onclick: () => step(1), "aria-label": "Next picture" }, "→")),
  );
  // Swipe: a horizontal drag of 40 px or more moves to the next or previous picture.
  let from = null;
  viewer.addEventListener("pointerdown", (e) => { from = e.clientX; });
  viewer.addEventListener("pointerup", (e) => {
    if (from !== null && Math.abs(e.clientX - from) >= 40) step(e.clientX < from ? 1 : -1);
    from = null;
  });
  const use = `/console?prompt=${encodeURIComponent(t.prompt)}`;
  root.replaceChildren(
    h("h1", {}, `${t.action} `, h("span", { class: "muted" }, origin(t) ?? "")),
    h("div", { class: "detail" },
      viewer,
      h("aside", {},
        h("div", { class: "row" },
          h("a", { id: "download", download: "", href: pictures[0] ?? "#", class: "button" }, "Download"),
          h("a", { href: use, id: "use-prompt" }, "Use this prompt")),
        facts(t),
        h("h2", {}, "Lineage"),
        await lineage(t),
        h("h2", {}, "Buttons"),
        card(t, { onPress: (task, b) => press(task, b), onCancel: cancel, onModal: () => location.assign("/console") }),
      )),
  );
  showPicture();
  bind("ArrowRight", "Next picture", () => step(1));
  bind("ArrowLeft", "Previous picture", () => step(-1));
  bind("d", "Download", () => $("#download").click());
  bind("u", "Use this prompt on Create", () => location.assign(use));
}

// A button pressed here makes the task on Create, where it renders live.
async function press(t, b) {
  await api("/v1/midjourney/generations/action", { method: "POST", body: { task_id: t.task_id, custom_id: b.custom_id } });
  location.assign("/console");
}

async function cancel(t) {
  await api(`/v1/midjourney/${encodeURIComponent(t.task_id)}/cancel`, { method: "POST" });
  location.reload();
}

await main();
ready();
