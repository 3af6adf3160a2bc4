// redblack dashboard: renders the state the server pushes over
// Server-Sent Events (/api/stream); no polling. Buttons post to
// /api/action with the viewer's creds, kept in this tab only.
"use strict";
const $ = (sel, el = document) => el.querySelector(sel);
const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
const pct = (x) => (100 * x).toFixed(2) + " %";
const ms = (x) => (x >= 100 ? x.toFixed(0) : x.toFixed(1)) + " ms";
let state = null;
// an error of the page is shown on it (and read by the browser test)
window.addEventListener("error", (e) => { document.body.dataset.error = String(e.message); });

function dur(a, b) {
  const s = (new Date(b) - new Date(a)) / 1000;
  return s < 60 ? s.toFixed(1) + " s" : (s / 60).toFixed(1) + " min";
}

function cdf(rel) {
  const lines = [["baseline", rel.baseline], ["canary", rel.canary]].filter(([, f]) => f && f.cdf && f.cdf.length);
  if (!lines.length) return '<p class="muted">no latency samples yet</p>';
  const all = lines.flatMap(([, f]) => f.cdf.map((p) => p[0]));
  const lo = Math.log10(Math.max(0.05, Math.min(...all))), hi = Math.log10(Math.max(...all) * 1.1);
  const W = 360, H = 140, x = (v) => 30 + (W - 40) * (Math.log10(Math.max(v, 0.05)) - lo) / Math.max(hi - lo, 0.1), y = (q) => H - 20 - (H - 30) * q;
  const poly = lines.map(([cls, f]) => `<polyline class="${cls}" points="${f.cdf.map((p) => x(p[0]).toFixed(1) + "," + y(p[1]).toFixed(1)).join(" ")}"><title>${cls}</title></polyline>`).join("");
  const ticks = [0.1, 1, 10, 100, 1000, 10000].filter((v) => Math.log10(v) >= lo && Math.log10(v) <= hi)
    .map((v) => `<text x="${x(v)}" y="${H - 5}" font-size="9">${v} ms</text>`).join("");
  return `<svg class="cdf" width="${W}" height="${H}" data-lines="${lines.length}"><text x="2" y="12" font-size="9">CDF of latency — <tspan fill="#222">baseline</tspan> / <tspan fill="#c62828">canary</tspan></text>${poly}${ticks}</svg>`;
}

function canaryPanel(rel) {
  if (!rel.baseline && !rel.canary && !rel.report) return "";
  const row = (name, f) => f ? `<tr><td>${name}</td><td>${f.requests}</td><td>${f.errors}</td><td>${pct(f.error_rate)}</td><td>${ms(f.p50_ms)}</td><td>${ms(f.p99_ms)}</td></tr>` : "";
  let rep = "";
  if (rel.report) {
    rep = `<p class="verdict">score ${rel.report.score.toFixed(0)} · ${rel.report.looks || 0} looks${rel.report.reason ? ` · <span class="${(rel.report.metrics || []).every((m) => m.classification === "Pass") ? "good" : "reason"}">${esc(rel.report.reason)}</span>` : ""}</p>` +
      `<table><tr><th>metric</th><th>baseline</th><th>canary</th><th>confidence sequence</th><th>verdict</th></tr>` +
      (rel.report.metrics || []).map((m) => `<tr><td>${esc(m.name)}</td><td>${m.baseline_median.toFixed(4)}</td><td>${m.canary_median.toFixed(4)}</td><td>[${m.low.toFixed(4)}, ${m.high.toFixed(4)}]</td><td class="${m.classification === "Pass" ? "good" : "bad"}">${esc(m.classification)}</td></tr>`).join("") + `</table>`;
  }
  return `<div class="canary"><h3>canary</h3><table><tr><th>group</th><th>requests</th><th>errors</th><th>error rate</th><th>p50</th><th>p99</th></tr>${row("baseline", rel.baseline)}${row("canary", rel.canary)}</table>${cdf(rel)}${rep}</div>`;
}

function bakePanel(rel) {
  const b = rel.bake;
  if (!b) return "";
  const errBad = b.live.error_rate > b.max_error_rate, latBad = b.p99_limit_ms > 0 && b.live.p99_ms > b.p99_limit_ms;
  return `<div class="bake"><h3>bake (last 10 s)</h3><table>
    <tr><th></th><th>live</th><th>limit</th></tr>
    <tr><td>error rate</td><td class="${errBad ? "bad" : "good"}" data-figure="bake-error-rate">${pct(b.live.error_rate)}</td><td>${pct(b.max_error_rate)}</td></tr>
    <tr><td>p99</td><td class="${latBad ? "bad" : "good"}">${ms(b.live.p99_ms)}</td><td>${b.p99_limit_ms ? ms(b.p99_limit_ms) + ` (${b.max_latency_ratio}× old ${ms(b.old_p99_ms)})` : "—"}</td></tr>
    <tr><td>requests</td><td>${b.live.requests}</td><td></td></tr></table></div>`;
}

function timeline(rel) {
  const h = rel.history || [];
  return `<ol class="timeline">` + h.map((t, i) => {
    const end = i + 1 < h.length ? h[i + 1].at : (rel.final ? null : state.at);
    return `<li data-phase="${esc(t.phase)}" class="${i === h.length - 1 ? "now" : ""}">${esc(t.phase)}${end ? " · " + dur(t.at, end) : ""}</li>`;
  }).join("") + `</ol>`;
}

function service(s) {
  const total = s.groups.reduce((a, g) => a + g.weight, 0) || 1;
  const bar = s.groups.filter((g) => g.weight > 0).map((g) =>
    `<div data-group="${esc(g.name)}" data-weight="${g.weight}" style="width:${(100 * g.weight / total).toFixed(1)}%">${esc(g.name)} ${(g.weight / 10).toFixed(0)}%</div>`).join("");
  const groups = s.groups.map((g) => `<tr data-group="${esc(g.name)}"><td>${esc(g.name)}</td><td>${esc(g.version)}</td><td>${(g.weight / 10).toFixed(1)} %</td>
    <td>${(g.instances || []).map((i) => `<span class="inst" data-state="${esc(i.state)}" title="${esc(i.id)} ${esc(i.state)} ${esc(i.address)}"></span>`).join("")} ${(g.instances || []).filter((i) => i.state === "up").length}/${(g.instances || []).length}</td>
    <td>${g.live ? `${g.live.requests} req · ${pct(g.live.error_rate)} err · p99 ${ms(g.live.p99_ms)}` : ""}</td></tr>`).join("");
  const cur = s.current;
  const current = cur ? `<div class="current" data-release="${esc(cur.id)}" data-phase="${esc(cur.phase)}">
      <h3>release ${esc(cur.version)} → ${esc(cur.group)} <small class="muted">${esc(cur.id)} by ${esc(cur.requested_by || "?")}</small> <a href="#audit/${esc(s.name)}/${esc(cur.id)}">events</a></h3>
      ${timeline(cur)}${cur.reason ? `<p class="reason">${esc(cur.reason)}</p>` : ""}${canaryPanel(cur)}${bakePanel(cur)}</div>` : `<p class="muted">no release yet</p>`;
  const rollbacks = s.releases.filter((r) => r.phase === "rolled_back" || r.phase === "aborted" || r.phase === "rolling_back");
  const rb = rollbacks.length ? `<h3>rollbacks</h3><ul class="rollbacks">${rollbacks.map((r) => `<li data-release="${esc(r.id)}">${esc(r.version)} ${esc(r.phase)}: <span class="reason">${esc(r.reason)}</span> <a href="#audit/${esc(s.name)}/${esc(r.id)}">events</a></li>`).join("")}</ul>` : "";
  const kills = s.kills.length ? `<h3>Chaos Monkey</h3><ul class="kills">${s.kills.slice().reverse().map((k) => { let d = {}; try { d = k.data || {}; } catch (e) {} return `<li>${new Date(k.time).toLocaleTimeString()} killed ${esc(d.instance)} of ${esc(d.group)}</li>`; }).join("")}</ul>` : "";
  const inflight = cur && !cur.final;
  return `<article class="service" data-service="${esc(s.name)}">
    <h2>${esc(s.name)} <small>owner ${esc(s.owner)} · capacity ${s.capacity} · active ${esc(s.active || "—")}</small></h2>
    <div class="weights" title="traffic by group">${bar}</div>
    <table class="groups"><tr><th>group</th><th>version</th><th>weight</th><th>instances</th><th>live (10 s)</th></tr>${groups}</table>
    ${current}${rb}${kills}
    <p class="actions"><button data-verb="rollback" ${cur ? "" : "disabled"}>rollback…</button><button data-verb="abort" ${inflight ? "" : "disabled"}>abort…</button></p>
  </article>`;
}

function render() {
  if (!state) return;
  const main = $("#services");
  main.innerHTML = state.services.length ? state.services.map(service).join("") : '<p class="muted">no services yet: <code>redblack service apply -f spec.yaml</code></p>';
  const sel = $("#auditsvc"), cur = sel.value;
  sel.innerHTML = state.services.map((s) => `<option>${esc(s.name)}</option>`).join("");
  if (cur) sel.value = cur;
}

async function act(verb, svc) {
  const s = state.services.find((x) => x.name === svc);
  const creds = sessionStorage.getItem("redblack-creds");
  if (!creds) { toast("sign in first: paste your creds (top right)"); $("#signin").open = true; return; }
  const what = verb === "rollback" ? `Roll back ${svc}${s.current && !s.current.final ? " (release " + s.current.version + " in flight)" : ""}?` : `Abort release ${s.current.version} of ${svc}?`;
  const reason = prompt(what + "\nReason, for the audit trail:");
  if (reason === null || !confirm(`${what}\nReason: ${reason}\nThis acts as you.`)) return;
  const res = await fetch("/api/action", { method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ verb, service: svc, reason, release: s.current ? s.current.id : "", creds }) });
  const body = await res.json().catch(() => ({}));
  toast(res.ok ? `${verb} of ${body.release} requested by ${body.by}` : `${verb} refused: ${body.error || res.status}`);
}

function toast(msg) { const t = $("#toast"); t.textContent = msg; clearTimeout(toast.t); toast.t = setTimeout(() => (t.textContent = ""), 8000); }

async function audit(svc, rel, kind) {
  const q = new URLSearchParams({ service: svc });
  if (rel) q.set("release", rel);
  if (kind) q.set("kind", kind);
  $("#auditservice").textContent = svc + (rel ? " · release " + rel : "");
  const res = await fetch("/api/audit?" + q);
  const rows = await res.json();
  $("#auditrows").innerHTML = (Array.isArray(rows) ? rows : []).map((e) => `<tr data-kind="${esc(e.kind)}"><td>${new Date(e.time).toLocaleTimeString()}</td><td>${esc(e.kind)}</td>
    <td>${e.release ? `<a href="#audit/${esc(e.service)}/${esc(e.release)}">${esc(e.release)}</a>` : ""}</td><td>${esc(e.source)}</td><td><code>${esc(JSON.stringify(e.data)).slice(0, 200)}</code></td></tr>`).join("");
}

function route() {
  const parts = location.hash.slice(1).split("/");
  const inAudit = parts[0] === "audit";
  $("#services").hidden = inAudit;
  $("#audit").hidden = !inAudit;
  if (inAudit) {
    const svc = parts[1] || (state && state.services[0] && state.services[0].name);
    if (svc) { $("#auditsvc").value = svc; $("#auditrelease").value = parts[2] || ""; audit(svc, parts[2] || "", $("#auditkind").value); }
  }
}

document.addEventListener("click", (e) => {
  const b = e.target.closest("button[data-verb]");
  if (b) act(b.dataset.verb, b.closest("[data-service]").dataset.service);
});
$("#savecreds").addEventListener("click", () => {
  const c = $("#creds").value.trim();
  const m = c.match(/-----BEGIN NATS USER JWT-----\s*([^\s-]+)/);
  if (!m) { toast("that is not a creds file"); return; }
  sessionStorage.setItem("redblack-creds", c);
  try { $("#who").textContent = "acting as " + JSON.parse(atob(m[1].split(".")[1].replace(/-/g, "+").replace(/_/g, "/"))).name; } catch (e) { $("#who").textContent = "signed in"; }
  $("#creds").value = ""; $("#signin").open = false;
});
$("#auditfilter").addEventListener("submit", (e) => { e.preventDefault(); audit($("#auditsvc").value, $("#auditrelease").value.trim(), $("#auditkind").value.trim()); });
window.addEventListener("hashchange", route);

const es = new EventSource("/api/stream");
es.addEventListener("state", (e) => { state = JSON.parse(e.data); $("#conn").dataset.state = "live"; $("#conn").textContent = "live"; if ($("#audit").hidden) render(); });
es.onerror = () => { $("#conn").dataset.state = "down"; $("#conn").textContent = "reconnecting…"; };
route();
