// Keys (admin): create one (shown once), revoke, and each key's balance, output profile and
// template policy; the price of each price key. Every change is an admin route of the API,
// and creations and revocations are in the audit log.
import { $, api, fillTable, flash, h, ready, when } from "./lib.js";

async function change(path, method, body) {
  try {
    await api(path, { method, body });
    flash("");
  } catch (e) {
    flash(e.text ?? String(e));
  }
  await refresh();
}

function row(k) {
  const path = `/v1/admin/keys/${encodeURIComponent(k.id)}`;
  const live = k.revoked_at === null;
  const balance = h("input", { type: "number", min: 0, value: k.balance ?? "", placeholder: "unlimited", "aria-label": `balance of ${k.id}`, dataset: { balance: k.id } });
  const profile = h("input", { value: k.output_profile ?? "", placeholder: "deployment's", maxlength: 64, "aria-label": `output profile of ${k.id}` });
  const policy = h("input", { type: "checkbox", checked: k.require_template, "aria-label": `${k.id} may only use templates` });
  return h("tr", { dataset: { keyId: k.id, state: live ? "live" : "revoked" } },
    h("td", {}, h("code", {}, `${k.prefix}…`), h("br"), h("small", { class: "muted" }, k.id)),
    h("td", {}, k.tenant_id, k.is_admin ? h("strong", {}, " · admin") : null, h("br"), h("small", { class: "muted" }, k.name)),
    h("td", {}, live ? "live" : `revoked ${when(k.revoked_at)}`, h("br"), h("small", { class: "muted" }, `since ${when(k.created_at)}`)),
    h("td", {}, balance, h("button", { type: "button", class: "quiet", onclick: () => change(`${path}/balance`, "PUT", { balance: balance.value === "" ? null : Number(balance.value) }) }, "Set")),
    h("td", {}, profile, h("button", { type: "button", class: "quiet", onclick: () => change(`${path}/output-profile`, "PUT", { profile: profile.value || null }) }, "Set")),
    h("td", {}, h("label", {}, policy, " templates only"), h("button", { type: "button", class: "quiet", onclick: () => change(`${path}/template-policy`, "PUT", { require_template: policy.checked }) }, "Set")),
    h("td", {}, live ? h("button", { type: "button", class: "quiet", dataset: { act: "revoke" }, onclick: () => {
      if (confirm(`Revoke ${k.prefix}… (${k.tenant_id})? It stops working at once.`)) change(`${path}/revoke`, "POST");
    } }, "Revoke") : null));
}

async function refresh() {
  const [keys, prices] = await Promise.all([api("/v1/admin/keys"), api("/v1/admin/prices")]);
  fillTable($("#key-list"), ["key", "tenant", "state", "balance", "output profile", "template policy", ""], keys.map(row));
  fillTable($("#price-list"), ["price key", "units"], Object.entries(prices).map(([key, units]) => {
    const input = h("input", { type: "number", min: 0, value: units, "aria-label": `units of ${key}` });
    return h("tr", {}, h("td", {}, key), h("td", {}, input, h("button", { type: "button", class: "quiet", onclick: () => change(`/v1/admin/prices/${encodeURIComponent(key)}`, "PUT", { units: Number(input.value) }) }, "Set")));
  }));
}

$("#new-key").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("#key-error").hidden = true;
  try {
    const made = await api("/v1/admin/keys", { method: "POST", body: { tenant: $("#key-tenant").value.trim(), name: $("#key-name").value, admin: $("#key-admin").checked } });
    $("#new-key-value").textContent = made.key;
    $("#new-key-shown").hidden = false;
    await refresh();
  } catch (e) {
    $("#key-error").textContent = e.text ?? String(e);
    $("#key-error").hidden = false;
  }
});
$("#copy-key").addEventListener("click", () => navigator.clipboard?.writeText($("#new-key-value").textContent));
await refresh();
ready();
