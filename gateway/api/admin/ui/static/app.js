// Tiergate admin console: talks to the admin API with the admin key kept in sessionStorage.
"use strict";

const $ = (id) => document.getElementById(id);
const KEY = "tiergate-admin-key";
const ACTOR = "tiergate-actor";

class ApiError extends Error {
  constructor(status, body) {
    super((body && body.error && body.error.message) || `HTTP ${status}`);
    this.status = status;
  }
}

async function api(method, path, body) {
  const headers = {
    authorization: `Bearer ${sessionStorage.getItem(KEY) || ""}`,
    "x-tiergate-actor": sessionStorage.getItem(ACTOR) || "console",
  };
  if (body !== undefined) headers["content-type"] = "application/json";
  const response = await fetch(`/admin${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  if (response.status === 401) { signOut("Your admin key was not accepted."); throw new ApiError(401); }
  const type = response.headers.get("content-type") || "";
  const data = type.includes("json") ? await response.json() : await response.text();
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

// --- small DOM helpers (text only: nothing from the API is parsed as HTML) ----------------------

function table(container, columns, rows) {
  container.replaceChildren();
  if (!rows.length) {
    const p = document.createElement("p");
    p.className = "muted";
    p.textContent = "Nothing yet.";
    container.appendChild(p);
    return;
  }
  const t = document.createElement("table");
  const head = t.createTHead().insertRow();
  columns.forEach(([label]) => { const th = document.createElement("th"); th.textContent = label; head.appendChild(th); });
  const body = t.createTBody();
  rows.forEach((row) => {
    const tr = body.insertRow();
    columns.forEach(([, render]) => {
      const td = tr.insertCell();
      const value = render(row);
      if (value instanceof Node) td.appendChild(value); else td.textContent = value == null ? "–" : String(value);
    });
  });
  container.appendChild(t);
}

function button(label, onClick, className = "small") {
  const b = document.createElement("button");
  b.type = "button";
  b.className = className;
  b.textContent = label;
  b.addEventListener("click", onClick);
  return b;
}

function status(el, message, ok = true) {
  el.textContent = message;
  el.className = ok ? "ok" : "error";
}

const usd = (v) => (v == null ? "–" : `$${Number(v).toLocaleString(undefined, { maximumFractionDigits: 4 })}`);
const usdAxis = (v) => `$${v >= 100 ? v.toFixed(0) : v >= 1 ? v.toFixed(2) : v.toPrecision(2)}`;

// --- sign-in and navigation -------------------------------------------------------------------

function signOut(message) {
  sessionStorage.removeItem(KEY);
  show();
  if (message) $("login-error").textContent = message;
}

function show() {
  const signedIn = Boolean(sessionStorage.getItem(KEY));
  $("login").hidden = signedIn;
  $("nav").hidden = !signedIn;
  $("logout").hidden = !signedIn;
  const page = (location.hash.replace("#/", "") || "overview").split("?")[0];
  document.querySelectorAll(".page").forEach((p) => { p.hidden = !signedIn || p.id !== `page-${page}`; });
  document.querySelectorAll("#nav a").forEach((a) => a.classList.toggle("active", a.dataset.page === page));
  if (signedIn) (PAGES[page] || PAGES.overview)().catch(reportError);
}

function reportError(error) {
  if (error.status === 401) return;
  console.error(error);
  const banner = document.createElement("p");
  banner.className = "error banner";
  banner.textContent = error.message;
  document.querySelector("main").prepend(banner);
  setTimeout(() => banner.remove(), 8000);
}

$("login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  sessionStorage.setItem(KEY, $("admin-key").value);
  sessionStorage.setItem(ACTOR, $("actor").value.trim() || "console");
  $("login-error").textContent = "";
  try {
    await api("GET", "/policies");
    $("admin-key").value = "";
    if (!location.hash) location.hash = "#/overview";
    show();
  } catch (error) {
    if (error.status !== 401) signOut(error.message);
  }
});
$("logout").addEventListener("click", () => signOut());
window.addEventListener("hashchange", show);

// --- overview ---------------------------------------------------------------------------------

function range() {
  const days = Number($("range").value);
  const until = new Date();
  until.setUTCMinutes(0, 0, 0);
  until.setUTCHours(until.getUTCHours() + 1);
  const since = new Date(until.getTime() - days * 86400e3);
  return { since, until, query: `since=${since.toISOString()}&until=${until.toISOString()}` };
}

// Every hour or day of the range, so that quiet periods show as zero rather than disappear.
function timeline(since, until, step) {
  const keys = [];
  const t = new Date(since);
  if (step === "day") t.setUTCHours(0, 0, 0, 0);
  for (; t < until; t.setTime(t.getTime() + (step === "day" ? 86400e3 : 3600e3))) {
    keys.push(step === "day" ? t.toISOString().slice(0, 10) : `${t.toISOString().slice(0, 13)}:00:00Z`);
  }
  return keys;
}

async function download(link, path, filename) {
  const response = await fetch(`/admin${path}`, { headers: { authorization: `Bearer ${sessionStorage.getItem(KEY)}` } });
  const blob = await response.blob();
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = filename;
  a.click();
  setTimeout(() => URL.revokeObjectURL(a.href), 1000);
}

async function overview() {
  const { since, until, query } = range();
  const step = $("step").value;
  const [byTime, byTier, byTeam, byProject] = await Promise.all(
    [step, "tier", "team", "project"].map((g) => api("GET", `/reports/cost?group_by=${g}&${query}`)),
  );
  const total = byTime.total;
  const kpis = [
    ["Actual cost", usd(total.cost_usd)],
    ["Baseline cost", usd(total.baseline_cost_usd)],
    ["Saved", total.savings_pct == null ? usd(total.savings_usd) : `${usd(total.savings_usd)} (${total.savings_pct}%)`],
    ["Requests", total.requests.toLocaleString()],
    ["Cost / 1k queries", total.cost_per_query_usd == null ? "–" : usd(total.cost_per_query_usd * 1000)],
    ["Cache hit rate", total.cache_hit_rate_pct == null ? "–" : `${total.cache_hit_rate_pct}%`],
    ["p50 / p95 latency", `${total.latency_p50_ms ?? "–"} / ${total.latency_p95_ms ?? "–"} ms`],
  ];
  $("kpis").replaceChildren(...kpis.map(([label, value]) => {
    const div = document.createElement("div");
    div.className = "kpi";
    const b = document.createElement("b"); b.textContent = value;
    const s = document.createElement("span"); s.textContent = label;
    div.append(b, s);
    return div;
  }));
  const byKey = new Map(byTime.data.map((r) => [r.group[step], r]));
  const keys = timeline(since, until, step);
  const rows = keys.map((k) => byKey.get(k) || { cost_usd: 0, baseline_cost_usd: 0, savings_by_source_usd: {}, requests: 0 });
  const labels = keys.map((k) => (step === "day" ? k.slice(5) : k.slice(5, 13).replace("T", " ")));
  const num = (field) => rows.map((r) => Number(r[field]));
  Charts.line($("chart-cost"), labels, [
    { name: "actual", values: num("cost_usd") },
    { name: "baseline", values: num("baseline_cost_usd") },
  ], usdAxis);
  const sources = ["routing", "semantic_cache", "prompt_caching", "self_hosting"];
  Charts.bars($("chart-savings"), labels, sources.map((s) => ({
    name: s.replace("_", " "), values: rows.map((r) => Number(r.savings_by_source_usd[s] || 0)),
  })), usdAxis);
  Charts.share($("chart-tiers"), byTier.data.map((r) => ({ name: r.group.tier || "none", value: r.requests })));
  Charts.line($("chart-cache"), labels, [
    { name: "hit rate", values: rows.map((r) => (r.cache_hit_rate_pct == null ? null : Number(r.cache_hit_rate_pct))) },
  ], (v) => `${v.toFixed(0)}%`);
  Charts.line($("chart-cpq"), labels, [
    { name: "$ / 1k queries", values: rows.map((r) => (r.cost_per_query_usd == null ? null : 1000 * Number(r.cost_per_query_usd))) },
  ], usdAxis);
  const top = [
    ["Requests", (r) => r.requests.toLocaleString()],
    ["Actual", (r) => usd(r.cost_usd)],
    ["Baseline", (r) => usd(r.baseline_cost_usd)],
    ["Saved", (r) => (r.savings_pct == null ? "–" : `${r.savings_pct}%`)],
    ["Cache hits", (r) => (r.cache_hit_rate_pct == null ? "–" : `${r.cache_hit_rate_pct}%`)],
  ];
  table($("top-teams"), [["Team", (r) => r.group.team ?? "(none)"], ...top], byTeam.data.slice(0, 10));
  table($("top-projects"), [["Project", (r) => r.group.project ?? "(none)"], ...top], byProject.data.slice(0, 10));
  $("csv-link").onclick = (e) => { e.preventDefault(); download(e.target, `/reports/cost?group_by=team,${step}&format=csv&${query}`, "tiergate-cost.csv"); };
  $("focus-link").onclick = (e) => { e.preventDefault(); download(e.target, `/reports/focus?granularity=${step}&${query}`, "tiergate-focus.csv"); };
}
$("range").addEventListener("change", () => overview().catch(reportError));
$("step").addEventListener("change", () => overview().catch(reportError));

// --- policies ---------------------------------------------------------------------------------

let currentPolicy = null;

function editorDocument() {
  try {
    return JSON.parse($("policy-editor").value);
  } catch (error) {
    throw new ApiError(400, { error: { message: `The editor does not hold valid JSON: ${error.message}` } });
  }
}

async function openPolicy(name, version) {
  const policy = await api("GET", `/policies/${encodeURIComponent(name)}${version ? `?version=${version}` : ""}`);
  currentPolicy = policy.name;
  $("policy-editor").value = JSON.stringify(policy.document, null, 2);
  $("editor-title").textContent = `${policy.name} v${policy.version}${policy.active ? " (active)" : ""}`;
  $("activate-version").value = policy.version;
  $("simulation").replaceChildren();
  $("policy-diff").hidden = true;
}

async function policies() {
  const [list, assignments, audit] = await Promise.all([api("GET", "/policies"), api("GET", "/assignments"), api("GET", "/audit?limit=50")]);
  table($("policy-list"), [
    ["Name", (p) => p.name],
    ["Latest", (p) => `v${p.latest_version}`],
    ["Active", (p) => (p.active_version ? `v${p.active_version}` : "none")],
    ["Assigned to", (p) => p.assigned_to.join(", ") || "–"],
    ["", (p) => button("Edit", () => openPolicy(p.name, p.latest_version).catch(reportError))],
  ], list.data);
  table($("assignment-list"), [
    ["Team", (a) => a.team], ["Project", (a) => a.project], ["Policy", (a) => a.policy],
  ], assignments.data);
  table($("audit-log"), [
    ["When", (e) => e.at.slice(0, 19).replace("T", " ")], ["Who", (e) => e.actor], ["Action", (e) => e.action],
    ["Policy", (e) => e.policy], ["Version", (e) => e.version], ["Detail", (e) => (e.detail ? JSON.stringify(e.detail) : "")],
  ], audit.data);
  if (!$("policy-editor").value) newPolicy();
}

function newPolicy() {
  currentPolicy = null;
  $("editor-title").textContent = "(new)";
  $("policy-editor").value = JSON.stringify({
    name: "my-policy",
    baseline: "gpt-4o",
    bands: [
      { from: 0, to: 0.5, deployment: "gpt-4o-mini" },
      { from: 0.5, to: 1, deployment: "gpt-4o" },
    ],
    fallbacks: { "gpt-4o-mini": ["gpt-4o"] },
  }, null, 2);
}

async function policyAction(work) {
  const out = $("policy-status");
  try {
    status(out, await work());
  } catch (error) {
    if (error.status !== 401) status(out, error.message, false);
  }
}

$("btn-new").addEventListener("click", newPolicy);
$("btn-validate").addEventListener("click", () => policyAction(async () => {
  const result = await api("POST", "/policies/validate", { document: editorDocument() });
  return `Valid policy "${result.name}".`;
}));
$("btn-save").addEventListener("click", () => policyAction(async () => {
  const comment = $("policy-comment").value || null;
  const result = await api("POST", "/policies", { document: editorDocument(), comment });
  await policies();
  await openPolicy(result.name, result.version);
  return `Saved ${result.name} v${result.version} (not active yet).`;
}));
$("btn-simulate").addEventListener("click", () => policyAction(async () => {
  const document_ = editorDocument();
  const result = await api("POST", `/policies/${encodeURIComponent(document_.name)}/simulate`, {
    document: document_, last: Number($("sim-last").value) || 1000,
  });
  const side = (label, s) => ({ label, ...s });
  table($("simulation"), [
    ["", (r) => r.label],
    ["Cost", (r) => usd(r.cost_micros / 1e6)],
    ["Saved vs baseline", (r) => (r.savings_pct == null ? "–" : `${r.savings_pct}%`)],
    ["Tier mix", (r) => Object.entries(r.tier_mix).map(([t, p]) => `${t} ${p}%`).join(", ")],
    ["Unroutable", (r) => r.unroutable],
  ], [side("candidate (editor)", result.candidate), side(`active${result.active.version ? ` v${result.active.version}` : ""}`, result.active)]);
  const delta = result.change_vs_active_micros / 1e6;
  return `Simulated over the last ${result.rows} routed requests: ${delta <= 0 ? "saves" : "costs"} ${usd(Math.abs(delta))} vs the active policy.`;
}));
$("btn-activate").addEventListener("click", () => policyAction(async () => {
  const name = currentPolicy || editorDocument().name;
  const version = Number($("activate-version").value);
  await api("POST", `/policies/${encodeURIComponent(name)}/activate`, { version });
  await policies();
  await openPolicy(name, version);
  return `Activated ${name} v${version}.`;
}));
$("btn-rollback").addEventListener("click", () => policyAction(async () => {
  const name = currentPolicy || editorDocument().name;
  const result = await api("POST", `/policies/${encodeURIComponent(name)}/rollback`);
  await policies();
  await openPolicy(name, result.active_version);
  return `Rolled ${name} back to v${result.active_version}.`;
}));
$("btn-diff").addEventListener("click", () => policyAction(async () => {
  const name = currentPolicy || editorDocument().name;
  const active = (await api("GET", "/policies")).data.find((p) => p.name === name);
  const version = Number($("activate-version").value);
  if (!active || !active.active_version) return `${name} has no active version to compare with.`;
  const result = await api("GET", `/policies/${encodeURIComponent(name)}/diff?from_version=${active.active_version}&to_version=${version}`);
  $("policy-diff").textContent = result.diff || "(no differences)";
  $("policy-diff").hidden = false;
  return `Diff of ${name} v${active.active_version} (active) -> v${version}.`;
}));
$("assign-form").addEventListener("submit", (event) => {
  event.preventDefault();
  policyAction(async () => {
    const body = { team: $("assign-team").value, policy: $("assign-policy").value };
    if ($("assign-project").value) body.project = $("assign-project").value;
    await api("PUT", "/assignments", body);
    await policies();
    return `Assigned ${body.policy} to ${body.team}${body.project ? `/${body.project}` : ""}.`;
  });
});

// --- keys and budgets -------------------------------------------------------------------------

async function keys() {
  const now = new Date();
  const monthStart = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 1)).toISOString();
  const [list, spend, budgets] = await Promise.all([
    api("GET", `/keys?include_revoked=${$("show-revoked").checked}`),
    api("GET", `/reports/cost?group_by=team&since=${monthStart}`),
    api("GET", "/reports/key-spend"),
  ]);
  const used = new Map(budgets.data.map((b) => [b.id, b]));
  const budget = (k, spent, limit, pct) => {
    const b = used.get(k.id);
    if (!b || b[limit] == null) return "–";
    return `${usd(b[spent])} of ${usd(b[limit])} (${b[pct]}%)`;
  };
  table($("team-spend"), [
    ["Team", (r) => r.group.team ?? "(none)"], ["Requests", (r) => r.requests.toLocaleString()],
    ["Actual", (r) => usd(r.cost_usd)], ["Baseline", (r) => usd(r.baseline_cost_usd)],
    ["Saved", (r) => (r.savings_pct == null ? "–" : `${r.savings_pct}%`)],
  ], spend.data);
  table($("key-list"), [
    ["Prefix", (k) => k.key_prefix], ["Team", (k) => k.team], ["Project", (k) => k.project], ["Name", (k) => k.name],
    ["Today / daily budget", (k) => budget(k, "spend_today_usd", "budget_daily_usd", "daily_used_pct")],
    ["Month / monthly budget", (k) => budget(k, "spend_month_usd", "budget_monthly_usd", "monthly_used_pct")],
    ["RPM", (k) => k.rpm_limit], ["Created", (k) => k.created_at.slice(0, 16).replace("T", " ")],
    ["", (k) => (k.revoked_at ? `revoked ${k.revoked_at.slice(0, 10)}` : button("Revoke", async () => {
      if (!confirm(`Revoke key ${k.key_prefix}… of ${k.team}?`)) return;
      await api("DELETE", `/keys/${encodeURIComponent(k.id)}`).catch(reportError);
      keys().catch(reportError);
    }, "small danger"))],
  ], list.data);
}

$("show-revoked").addEventListener("change", () => keys().catch(reportError));
$("key-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const body = { team: $("key-team").value };
  for (const [id, field, parse] of [
    ["key-project", "project", String], ["key-name", "name", String],
    ["key-daily", "budget_daily_usd", String], ["key-monthly", "budget_monthly_usd", String], ["key-rpm", "rpm_limit", Number],
  ]) if ($(id).value) body[field] = parse($(id).value);
  try {
    const created = await api("POST", "/keys", body);
    status($("key-created"), `New key for ${created.team}: ${created.key} (shown once: copy it now)`);
    $("key-form").reset();
    await keys();
  } catch (error) {
    if (error.status !== 401) status($("key-created"), error.message, false);
  }
});

const PAGES = { overview, policies, keys };
show();
