// redblack dashboard: renders the state the server pushes over
// Server-Sent Events (/api/stream); no polling. Buttons post to
// /api/action with the viewer's creds, kept in this tab only.
"use strict";
const $ = (sel, el = document) => el.querySelector(sel);
const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
const pct = (x) => (100 * x).toFixed(2) + " %";
const ms = (x) => (x >= 100 ? x.toFixed(0) : x.toFixed(1)) + " ms";
// an idle figure (no request in its window) is "–", not 0
const DASH = "–";
const idle = (f) => !f || !f.requests;
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
  const W = 380, H = 160, L = 44, B = 30, T = 18;
  const x = (v) => L + (W - L - 10) * (Math.log10(Math.max(v, 0.05)) - lo) / Math.max(hi - lo, 0.1), y = (q) => H - B - (H - B - T) * q;
  const poly = lines.map(([cls, f]) => `<polyline class="${cls}" points="${f.cdf.map((p) => x(p[0]).toFixed(1) + "," + y(p[1]).toFixed(1)).join(" ")}"><title>${cls}</title></polyline>`).join("");
  const xt = [0.1, 0.3, 1, 3, 10, 30, 100, 300, 1000, 3000, 10000].filter((v) => Math.log10(v) >= lo && Math.log10(v) <= hi);
  // two ticks at least: the range's ends when it holds fewer round ones
  const xticks = (xt.length >= 2 ? xt : [Math.pow(10, lo), Math.pow(10, hi)]).map((v) => `<line x1="${x(v)}" x2="${x(v)}" y1="${H - B}" y2="${H - B + 4}"/><text x="${x(v)}" y="${H - B + 14}" text-anchor="middle">${+v.toPrecision(2)}</text>`).join("");
  const yticks = [0, 0.5, 0.9, 1].map((q) => `<line x1="${L - 4}" x2="${L}" y1="${y(q)}" y2="${y(q)}"/><text x="${L - 6}" y="${y(q) + 3}" text-anchor="end">${q}</text>`).join("");
  return `<svg class="cdf" width="${W}" height="${H}" data-lines="${lines.length}">
    <text x="${L}" y="11" class="legend">share of requests at most x — <tspan class="baseline">baseline</tspan> / <tspan class="canary">canary</tspan></text>
    <g class="axis x"><line x1="${L}" x2="${W - 10}" y1="${H - B}" y2="${H - B}"/>${xticks}<text x="${(L + W) / 2}" y="${H - 2}" text-anchor="middle">latency (ms, log scale)</text></g>
    <g class="axis y"><line x1="${L}" x2="${L}" y1="${T}" y2="${H - B}"/>${yticks}</g>${poly}</svg>`;
}

// warmingUp: the judge has not had min_samples requests of each group yet
function warmingUp(rel) {
  const n = Math.min(rel.baseline ? rel.baseline.requests : 0, rel.canary ? rel.canary.requests : 0);
  const metrics = rel.report ? rel.report.metrics || [] : [];
  return !rel.final && rel.phase === "canary" && (n < (rel.min_samples || 0) || (metrics.length > 0 && metrics.every((m) => m.classification === "NoData")));
}

function canaryPanel(rel) {
  if (!rel.baseline && !rel.canary && !rel.report) return "";
  const row = (name, f) => f ? `<tr><td>${name}</td><td>${f.requests}</td><td>${f.errors}</td><td>${idle(f) ? DASH : pct(f.error_rate)}</td><td>${idle(f) ? DASH : ms(f.p50_ms)}</td><td>${idle(f) ? DASH : ms(f.p99_ms)}</td></tr>` : "";
  const warm = warmingUp(rel);
  let rep = "";
  if (warm) {
    const n = Math.min(rel.baseline ? rel.baseline.requests : 0, rel.canary ? rel.canary.requests : 0);
    rep = `<p class="warmup">warming up: ${n} of the ${rel.min_samples} requests per group the judge needs before it judges</p>`;
  } else if (rel.report) {
    const cls = (m) => m.classification === "Pass" ? "good" : m.classification === "NoData" ? "muted" : "bad";
    rep = `<p class="verdict">score ${rel.report.score.toFixed(0)} · ${rel.report.looks || 0} looks${rel.report.reason ? ` · <span class="${(rel.report.metrics || []).every((m) => m.classification === "Pass") ? "good" : "reason"}">${esc(rel.report.reason)}</span>` : ""}</p>` +
      `<table><tr><th>metric</th><th>baseline</th><th>canary</th><th>confidence sequence</th><th>verdict</th></tr>` +
      (rel.report.metrics || []).map((m) => `<tr><td>${esc(m.name)}</td><td>${m.baseline_median.toFixed(4)}</td><td>${m.canary_median.toFixed(4)}</td><td>[${m.low.toFixed(4)}, ${m.high.toFixed(4)}]</td><td class="${cls(m)}">${m.classification === "NoData" ? "no data yet" : esc(m.classification)}</td></tr>`).join("") + `</table>`;
  }
  return `<div class="canary${warm ? " warming" : ""}"><h3>canary</h3><table><tr><th>group</th><th>requests</th><th>errors</th><th>error rate</th><th>p50</th><th>p99</th></tr>${row("baseline", rel.baseline)}${row("canary", rel.canary)}</table>${cdf(rel)}${rep}</div>`;
}

function bakePanel(rel) {
  const b = rel.bake;
  if (!b) return "";
  const errBad = b.live.error_rate > b.max_error_rate, latBad = b.p99_limit_ms > 0 && b.live.p99_ms > b.p99_limit_ms;
  return `<div class="bake"><h3>bake (last 10 s)</h3><table>
    <tr><th></th><th>live</th><th>limit</th></tr>
    <tr><td>error rate</td><td class="${errBad ? "bad" : "good"}" data-figure="bake-error-rate">${idle(b.live) ? DASH : pct(b.live.error_rate)}</td><td>${pct(b.max_error_rate)}</td></tr>
    <tr><td>p99</td><td class="${latBad ? "bad" : "good"}">${idle(b.live) ? DASH : ms(b.live.p99_ms)}</td><td>${b.p99_limit_ms ? ms(b.p99_limit_ms) + ` (${b.max_latency_ratio}× old ${ms(b.old_p99_ms)})` : "—"}</td></tr>
    <tr><td>requests</td><td>${b.live.requests}</td><td></td></tr></table></div>`;
}

function timeline(rel) {
  const h = rel.history || [];
  return `<ol class="timeline">` + h.map((t, i) => {
    const end = i + 1 < h.length ? h[i + 1].at : (rel.final ? null : state.at);
    return `<li data-phase="${esc(t.phase)}" class="${i === h.length - 1 ? "now" : ""}">${esc(t.phase)}${end ? " · " + dur(t.at, end) : ""}</li>`;
  }).join("") + `</ol>`;
}

// short is a group's name without its service's ("v002-baseline")
const short = (s, g) => g.startsWith(s.name + "-") ? g.slice(s.name.length + 1) : g;

function durOf(r) {
  const h = r.history || [];
  return h.length > 1 ? dur(h[0].at, h[h.length - 1].at) : DASH;
}

function history(s) {
  if (!s.releases.length) return "";
  return `<h3>releases</h3><table class="history"><tr><th>version</th><th>outcome</th><th>took</th><th>by</th><th>reason</th><th></th></tr>` +
    s.releases.map((r) => `<tr data-release="${esc(r.id)}" data-phase="${esc(r.phase)}"><td>${esc(r.version)}</td><td class="outcome">${esc(r.final ? r.phase : r.phase + "…")}</td>
      <td>${r.final ? durOf(r) : DASH}</td><td>${esc(r.requested_by || "")}</td><td class="${r.phase === "completed" ? "" : "reason"}">${esc(r.reason || "")}</td>
      <td><a href="#audit/${esc(s.name)}/${esc(r.id)}">events</a></td></tr>`).join("") + `</table>`;
}

function service(s) {
  const total = s.groups.reduce((a, g) => a + g.weight, 0) || 1;
  const bar = s.groups.filter((g) => g.weight > 0).map((g) =>
    `<div data-group="${esc(g.name)}" data-weight="${g.weight}" title="${esc(g.name)} ${(g.weight / 10).toFixed(1)} %" data-label="${esc(short(s, g.name))} ${(g.weight / 10).toFixed(0)}%" data-short="${(g.weight / 10).toFixed(0)}%" style="width:${(100 * g.weight / total).toFixed(1)}%">${esc(short(s, g.name))} ${(g.weight / 10).toFixed(0)}%</div>`).join("");
  const groups = s.groups.map((g) => `<tr data-group="${esc(g.name)}"><td>${esc(g.name)}</td><td>${esc(g.version || DASH)}</td><td>${(g.weight / 10).toFixed(1)} %</td>
    <td>${(g.instances || []).map((i) => `<span class="inst" data-state="${esc(i.state)}" title="${esc(i.id)} ${esc(i.state)} ${esc(i.address)}"></span>`).join("")} ${(g.instances || []).filter((i) => i.state === "up").length}/${(g.instances || []).length}</td>
    <td class="live">${idle(g.live) ? DASH : `${g.live.requests} req · ${pct(g.live.error_rate)} err · p99 ${ms(g.live.p99_ms)}`}</td></tr>`).join("");
  const cur = s.current;
  const by = cur && cur.requested_by ? ` by ${esc(cur.requested_by)}` : "";
  const current = cur ? `<div class="current" data-release="${esc(cur.id)}" data-phase="${esc(cur.phase)}">
      <h3>release ${esc(cur.version)} → ${esc(cur.group)} <small class="muted">${esc(cur.id)}${by}</small> <a href="#audit/${esc(s.name)}/${esc(cur.id)}">events</a></h3>
      ${timeline(cur)}${cur.reason ? `<p class="reason">${esc(cur.reason)}</p>` : ""}${canaryPanel(cur)}${bakePanel(cur)}</div>` : `<p class="muted">no release yet</p>`;
  const rollbacks = s.releases.filter((r) => r.phase === "rolled_back" || r.phase === "aborted" || r.phase === "rolling_back");
  const rb = rollbacks.length ? `<h3>rollbacks</h3><ul class="rollbacks">${rollbacks.map((r) => `<li data-release="${esc(r.id)}">${esc(r.version)} ${esc(r.phase)}: <span class="reason">${esc(r.reason)}</span> <a href="#audit/${esc(s.name)}/${esc(r.id)}">events</a></li>`).join("")}</ul>` : "";
  const kills = s.kills.length ? `<h3>Chaos Monkey</h3><ul class="kills">${s.kills.slice().reverse().map((k) => { const d = k.data || {}; return `<li>${new Date(k.time).toLocaleTimeString()} killed ${esc(d.instance)} of ${esc(d.group)}</li>`; }).join("")}</ul>` : "";
  const inflight = cur && !cur.final;
  // a rollback has a target: the release in flight, or a kept group
  const kept = s.previous && s.groups.some((g) => g.name === s.previous && (g.instances || []).some((i) => i.state === "up"));
  return `<article class="service" id="svc-${esc(s.name)}" data-service="${esc(s.name)}">
    <h2>${esc(s.name)} <small>owner ${esc(s.owner)} · capacity ${s.capacity} · active ${esc(s.active || DASH)}</small></h2>
    <div class="weights" title="traffic by group">${bar}</div>
    <table class="groups"><tr><th>group</th><th>version</th><th>weight</th><th>instances</th><th>live (10 s)</th></tr>${groups}</table>
    ${current}${history(s)}${rb}${kills}
    <p class="actions"><button data-verb="rollback" ${inflight || kept ? "" : "disabled"} title="${inflight || kept ? "" : "nothing to roll back to: no release in flight and no kept group"}">rollback…</button><button data-verb="abort" ${inflight ? "" : "disabled"}>abort…</button></p>
  </article>`;
}

// spark draws a service's request rate (line) and error rate (bars, red)
function spark(s) {
  const pts = s.spark || [];
  if (!pts.length) return "";
  const W = 160, H = 28, n = pts.length, maxRate = Math.max(...pts.map((p) => p.rate), 1);
  const x = (i) => (W - 2) * i / Math.max(n - 1, 1) + 1;
  const line = pts.map((p, i) => `${x(i).toFixed(1)},${(H - 2 - (H - 4) * p.rate / maxRate).toFixed(1)}`).join(" ");
  const errs = pts.map((p, i) => p.error_rate > 0 ? `<rect class="err" x="${(x(i) - 1.5).toFixed(1)}" y="${(H - (H - 2) * Math.min(p.error_rate * 10, 1)).toFixed(1)}" width="3" height="${((H - 2) * Math.min(p.error_rate * 10, 1)).toFixed(1)}"/>` : "").join("");
  const last = pts[n - 1];
  return `<svg class="spark" width="${W}" height="${H}" data-points="${n}" data-max-rate="${maxRate.toFixed(1)}"><title>requests per second over the last ${n * 10} s (max ${maxRate.toFixed(1)}); red: error rate (×10)</title>${errs}<polyline points="${line}"/></svg>
    <span class="rate">${last.rate ? last.rate.toFixed(1) + " req/s" : DASH} · ${last.rate ? pct(last.error_rate) + " err" : DASH}</span>`;
}

function overview() {
  return `<section id="overview"><h2>services</h2><table><tr><th>service</th><th>active</th><th>releasing</th><th>last outcome</th><th>traffic (5 min)</th></tr>` +
    state.services.map((s) => {
      const inflight = s.current && !s.current.final ? s.current : null;
      const last = s.releases.find((r) => r.final);
      return `<tr data-service="${esc(s.name)}"><td><a href="#svc-${esc(s.name)}">${esc(s.name)}</a></td><td>${esc(s.active || DASH)}</td>
        <td class="releasing">${inflight ? `${esc(inflight.version)}: ${esc(inflight.phase)}` : DASH}</td>
        <td class="last" data-outcome="${esc(last ? last.phase : "")}">${last ? `${esc(last.version)} ${esc(last.phase)}` : DASH}</td><td>${spark(s)}</td></tr>`;
    }).join("") + `</table></section>`;
}

// fitLabels shortens the weights bar's labels that do not fit their
// segment: the group and weight, then the weight alone, then nothing (the
// title still names it)
function fitLabels() {
  document.querySelectorAll(".weights div").forEach((d) => {
    if (d.scrollWidth > d.clientWidth) d.textContent = d.dataset.short;
    if (d.scrollWidth > d.clientWidth) d.textContent = "";
  });
}

function render() {
  if (!state) return;
  const main = $("#services");
  main.innerHTML = state.services.length ? overview() + state.services.map(service).join("") : '<p class="muted">no services yet: <code>redblack service apply -f spec.yaml</code></p>';
  fitLabels();
}

// services fills the audit view's service list (whichever view is shown)
function services() {
  if (!state) return;
  const sel = $("#auditsvc"), cur = sel.value || (location.hash.split("/")[1] || "");
  sel.innerHTML = state.services.map((s) => `<option value="${esc(s.name)}">${esc(s.name)}</option>`).join("");
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

let auditPage = 1;

async function audit(svc, rel, kind, page) {
  auditPage = page || 1;
  const q = new URLSearchParams({ service: svc, page: auditPage });
  if (rel) q.set("release", rel);
  if (kind) q.set("kind", kind);
  $("#auditservice").textContent = svc + (rel ? " · release " + rel : "") + (kind ? " · " + kind : "");
  const res = await fetch("/api/audit?" + q);
  const body = await res.json().catch(() => ({}));
  if (!res.ok) { $("#auditrows").innerHTML = ""; $("#auditpage").textContent = body.error || res.status; return; }
  const rows = body.events || [];
  $("#auditrows").innerHTML = rows.map((e) => {
    const json = JSON.stringify(e.data ?? null);
    // cut before escaping: an entity is never cut in two
    const shortJSON = json.length > 160 ? json.slice(0, 160) + "…" : json;
    return `<tr data-kind="${esc(e.kind)}"><td>${new Date(e.time).toLocaleTimeString()}</td><td>${esc(e.kind)}</td>
    <td>${e.release ? `<a href="#audit/${esc(e.service)}/${esc(e.release)}">${esc(e.release)}</a>` : ""}</td><td>${esc(e.source)}</td>
    <td>${json.length > 160 ? `<details><summary><code>${esc(shortJSON)}</code></summary><pre>${esc(JSON.stringify(e.data, null, 2))}</pre></details>` : `<code>${esc(json)}</code>`}</td></tr>`;
  }).join("") || `<tr><td colspan="5" class="muted">no events match</td></tr>`;
  $("#auditpage").textContent = `page ${body.page} of ${body.pages} · ${body.total} events, newest first`;
  $("#auditprev").disabled = body.page <= 1;
  $("#auditnext").disabled = body.page >= body.pages;
}

function route() {
  const parts = location.hash.slice(1).split("/");
  const inAudit = parts[0] === "audit";
  $("#services").hidden = inAudit;
  $("#audit").hidden = !inAudit;
  if (inAudit) {
    const svc = parts[1] || (state && state.services[0] && state.services[0].name);
    if (svc) { services(); $("#auditsvc").value = svc; $("#auditrelease").value = parts[2] || ""; audit(svc, parts[2] || "", $("#auditkind").value, 1); }
  } else {
    render();
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
const auditQuery = () => [$("#auditsvc").value, $("#auditrelease").value.trim(), $("#auditkind").value.trim()];
$("#auditfilter").addEventListener("submit", (e) => { e.preventDefault(); audit(...auditQuery(), 1); });
$("#auditprev").addEventListener("click", () => audit(...auditQuery(), auditPage - 1));
$("#auditnext").addEventListener("click", () => audit(...auditQuery(), auditPage + 1));
window.addEventListener("hashchange", route);

const es = new EventSource("/api/stream");
es.addEventListener("state", (e) => { state = JSON.parse(e.data); $("#conn").dataset.state = "live"; $("#conn").textContent = "live"; services(); if ($("#audit").hidden) render(); });
es.onerror = () => { $("#conn").dataset.state = "down"; $("#conn").textContent = "reconnecting…"; };
route();
