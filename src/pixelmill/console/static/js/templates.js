// Templates: each version's history, a diff of any two versions, release tags and their
// rollouts (slider with confirmation, promote, pause, resume, rollback), and "which version does
// subject X get". Any key reads its templates; changing them needs an admin key (the API says no
// otherwise, and the controls are not shown).
import { $, api, flash, h, ready, when } from "./lib.js";

const admin = document.body.dataset.admin === "true";
let current = null;

// The text a version is compared by: its body, negative prompt, variables, locks and forbidden words.
function lines(spec) {
  const out = [`body: ${spec.body}`];
  if (spec.negative_prompt) out.push(`negative: ${spec.negative_prompt}`);
  for (const [name, v] of Object.entries(spec.variables ?? {})) {
    out.push(`variable ${name}: ${v.type}${v.values ? ` [${v.values.join(", ")}]` : ""}${v.default !== null && v.default !== undefined ? ` = ${v.default}` : ""}`);
  }
  for (const [k, v] of Object.entries(spec.locked ?? {})) out.push(`locked ${k}: ${JSON.stringify(v)}`);
  for (const f of spec.forbidden ?? []) out.push(`forbidden: ${f}`);
  return out;
}

// A line diff by longest common subsequence: fine for texts of a few dozen lines.
function diff(a, b) {
  const n = a.length, m = b.length;
  const table = Array.from({ length: n + 1 }, () => new Array(m + 1).fill(0));
  for (let i = n - 1; i >= 0; i--) for (let j = m - 1; j >= 0; j--) {
    table[i][j] = a[i] === b[j] ? table[i + 1][j + 1] + 1 : Math.max(table[i + 1][j], table[i][j + 1]);
  }
  const out = [];
  let i = 0, j = 0;
  while (i < n || j < m) {
    if (i < n && j < m && a[i] === b[j]) out.push([" ", a[i++]]), j++;
    else if (j < m && (i === n || table[i][j + 1] >= table[i + 1][j])) out.push(["+", b[j++]]);
    else out.push(["-", a[i++]]);
  }
  return out;
}

function showDiff() {
  const [a, b] = ["#diff-a", "#diff-b"].map((s) => current.versions.find((v) => v.version === Number($(s).value)));
  $("#diff").replaceChildren(...diff(lines(a.spec), lines(b.spec)).map(([sign, text]) =>
    h("div", { class: { "+": "added", "-": "removed", " ": "same" }[sign] }, `${sign} ${text}`)));
}

async function change(path, body, what) {
  try {
    await api(`/v1/templates/${encodeURIComponent(current.name)}${path}`, { method: "POST", body });
    flash("");
  } catch (e) {
    flash(`${what}: ${e.text ?? e}`);
  }
  await open(current.name);
}

function releaseView(r, published) {
  const tag = encodeURIComponent(r.tag);
  const rolling = r.candidate !== null && r.candidate !== undefined;
  const text = rolling ? `${r.tag} → v${r.version}, candidate v${r.candidate} at ${r.percent} %${r.paused ? " (paused)" : ""}` : `${r.tag} → v${r.version}`;
  const controls = [];
  if (admin) {
    const slider = h("input", { type: "range", min: 0, max: 100, step: 5, value: rolling ? r.percent : 10, "aria-label": `rollout percent for ${r.tag}`, dataset: { rollout: r.tag } });
    const shown = h("output", {}, `${slider.value} %`);
    slider.addEventListener("input", () => { shown.textContent = `${slider.value} %`; });
    const candidate = h("select", { "aria-label": `candidate version for ${r.tag}`, dataset: { candidate: r.tag } },
      published.filter((v) => v !== r.version).map((v) => h("option", { value: v, selected: v === r.candidate }, `v${v}`)));
    const none = candidate.options.length === 0; // no other published version to roll out
    controls.push(h("div", { class: "row" }, candidate, slider, shown,
      h("button", { type: "button", dataset: { act: "rollout" }, disabled: none, title: none ? "publish another version first" : "", onclick: () => {
        if (confirm(`Send ${slider.value} % of subjects of ${r.tag} to v${candidate.value}?`)) {
          change(`/releases/${tag}/rollout`, { version: Number(candidate.value), percent: Number(slider.value) }, "rollout");
        }
      } }, "Roll out")));
    const blocked = r.promote_blocked ?? null;
    controls.push(h("div", { class: "row" },
      h("button", { type: "button", dataset: { act: "promote" }, disabled: !rolling || blocked !== null, title: blocked ?? "", onclick: () => change(`/releases/${tag}/promote`, undefined, "promote") }, "Promote"),
      h("button", { type: "button", class: "quiet", dataset: { act: r.paused ? "resume" : "pause" }, disabled: !rolling, onclick: () => change(`/releases/${tag}/${r.paused ? "resume" : "pause"}`, undefined, "pause") }, r.paused ? "Resume" : "Pause"),
      h("button", { type: "button", class: "quiet", dataset: { act: "rollback" }, disabled: !rolling && !r.previous_version, onclick: () => {
        if (confirm(`Roll ${r.tag} back?`)) change(`/releases/${tag}/rollback`, undefined, "rollback");
      } }, "Roll back")));
    if (blocked) controls.push(h("p", { class: "muted", dataset: { blocked: r.tag } }, `Promote is off: ${blocked}`));
  }
  return h("li", { dataset: { release: r.tag } }, h("strong", {}, text), h("small", { class: "muted" }, ` · ${when(r.updated_at)}`), ...controls);
}

async function resolve(event) {
  event.preventDefault();
  const params = new URLSearchParams({ release: $("#try-release").value });
  if ($("#try-subject").value) params.set("subject_id", $("#try-subject").value);
  try {
    const r = await api(`/v1/templates/${encodeURIComponent(current.name)}/resolve?${params}`);
    $("#try-answer").textContent = `gets v${r.version} (${r.rollout})`;
  } catch (e) {
    $("#try-answer").textContent = e.text ?? String(e);
  }
}

// A summary in words: how far apart the candidate's pictures are from the baseline's.
function summaryText(e) {
  const s = e.summary;
  if (!s) return e.state === "done" ? "no summary" : "running…";
  if (!s.scored) return `${s.pairs} pairs, none scored`;
  return `${s.pairs} pairs, ${s.scored} scored, ${s.failed} failed; difference mean ${Number(s.mean).toFixed(4)} (0 = same picture)`;
}

// The template's evaluations, newest first; the contact sheet of one opens inside the page. An
// admin starts one: an evaluation set, two published versions, a seed.
async function evaluations(published) {
  const list = await api(`/v1/templates/${encodeURIComponent(current.name)}/evaluations`);
  const sheet = h("div", { id: "sheet" });
  const show = (e) => sheet.replaceChildren(
    e.links.png ? h("img", { src: e.links.png, alt: `contact sheet of v${e.baseline} against v${e.candidate}`, class: "sheet" }) : null,
    h("iframe", { src: e.links.sheet, title: `contact sheet of v${e.baseline} against v${e.candidate}`, class: "sheet", loading: "lazy" }));
  const rows = [...list].sort((a, b) => b.created_at - a.created_at).map((e) => h("li", { dataset: { evaluation: e.id, state: e.state } },
    h("strong", {}, `v${e.baseline} vs v${e.candidate}`), ` · set ${e.set} · ${e.state} · `, summaryText(e), " ",
    h("button", { type: "button", class: "quiet", onclick: () => show(e) }, "Contact sheet")));
  const parts = [rows.length ? h("ul", { class: "stack", id: "evaluations" }, rows) : h("p", { class: "muted" }, "No evaluations yet.")];
  if (admin && published.length >= 2) {
    const pick = (label, chosen) => h("select", { "aria-label": label }, published.map((v) => h("option", { value: v, selected: v === chosen }, `v${v}`)));
    const base = pick("baseline version", published[1]); // newest first: the one before the newest
    const cand = pick("candidate version", published[0]);
    const set = h("input", { placeholder: "evaluation set", maxlength: 64, "aria-label": "evaluation set", required: true });
    const seed = h("input", { type: "number", min: 0, value: 0, "aria-label": "seed" });
    parts.push(h("form", { class: "row", id: "new-evaluation", onsubmit: (ev) => {
      ev.preventDefault();
      change("/evaluations", { set: set.value, baseline: Number(base.value), candidate: Number(cand.value), seed: Number(seed.value) }, "evaluation");
    } }, "Evaluate ", base, " against ", cand, " on ", set, " seed ", seed, h("button", { type: "submit", class: "quiet" }, "Start")));
  }
  return h("div", {}, ...parts, sheet);
}

async function open(name) {
  current = await api(`/v1/templates/${encodeURIComponent(name)}`);
  for (const b of document.querySelectorAll("#template-list button")) b.setAttribute("aria-current", String(b.dataset.name === name));
  const versions = current.versions;
  const published = versions.filter((v) => v.state === "published").map((v) => v.version);
  const pick = (id, chosen) => h("select", { id, onchange: showDiff }, versions.map((v) => h("option", { value: v.version, selected: v.version === chosen }, `v${v.version}`)));
  const releases = Object.values(current.releases);
  $("#template").replaceChildren(...[
    h("h2", {}, current.name, h("small", { class: "muted" }, current.tenant ? ` · tenant ${current.tenant}` : " · shared")),
    current.description ? h("p", {}, current.description) : null,
    h("h3", {}, "Releases"),
    releases.length ? h("ul", { class: "stack", id: "releases" }, releases.map((r) => releaseView(r, published))) : h("p", { class: "muted" }, "No release tags yet."),
    h("form", { class: "row", id: "try", onsubmit: resolve },
      h("label", {}, "Which version does subject ", h("input", { id: "try-subject", placeholder: "your key", maxlength: 128 })),
      h("label", {}, " get from ", h("select", { id: "try-release" }, releases.map((r) => h("option", { value: r.tag }, r.tag)))),
      h("button", { type: "submit", class: "quiet" }, "Ask"), h("output", { id: "try-answer" })),
    h("h3", {}, "Versions"),
    h("ol", { class: "stack", reversed: true, id: "timeline" }, versions.map((v) => h("li", { dataset: { version: v.version } },
      h("strong", {}, `v${v.version}`), ` ${v.state}`, h("small", { class: "muted" }, ` · ${when(v.published_at ?? v.created_at)} · by ${v.author} · ${v.content_hash.slice(0, 12)}`),
      v.note ? h("div", {}, v.note) : null,
      admin && v.state === "draft" ? h("button", { type: "button", class: "quiet", onclick: () => change(`/versions/${v.version}/publish`, undefined, "publish") }, "Publish") : null))),
    h("h3", {}, "Evaluations"),
    await evaluations(published),
    h("h3", {}, "Compare"),
    h("div", { class: "row" }, pick("diff-a", versions[Math.min(1, versions.length - 1)].version), " → ", pick("diff-b", versions[0].version)),
    h("pre", { id: "diff", class: "diff" }),
  ].filter(Boolean));
  showDiff();
}

async function main() {
  const list = await api("/v1/templates");
  $("#no-templates").hidden = list.length > 0;
  $("#template-list").replaceChildren(...list.map((t) => h("li", {}, h("button", { type: "button", dataset: { name: t.name }, onclick: () => open(t.name) },
    t.name, h("small", { class: "muted" }, ` · ${Object.keys(t.releases).join(", ") || "no releases"}`)))));
  const asked = new URLSearchParams(location.search).get("name") ?? list[0]?.name;
  if (asked) await open(asked);
}

await main();
ready();
