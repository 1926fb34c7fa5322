// The Weft dashboard. Polls /ui/api/overview once a second with the session cookie; computes
// request rates and latency quantiles from the difference between snapshots. Everything
// shown is put into the page with textContent (never innerHTML): workload names, errors and
// guest log lines are untrusted.
"use strict";

const WINDOW_S = 5; // rates and latencies over the last 5 s
const SPARK_POINTS = 60; // one point per poll: the last minute
const samples = new Map(); // workload -> [{t, total, fivexx, count, sum, buckets}]
const sparks = new Map(); // workload -> [rate, ...]
let timer = null;
let logTimer = null;

const $ = (id) => document.getElementById(id);

function el(tag, attrs, parent, text) {
  const svgTags = ["svg", "path", "polyline", "line"];
  const n = svgTags.includes(tag)
    ? document.createElementNS("http://www.w3.org/2000/svg", tag)
    : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) n.setAttribute(k, v);
  if (text !== undefined && text !== null) n.textContent = String(text);
  if (parent) parent.appendChild(n);
  return n;
}

function show(which) {
  $("login").hidden = which !== "login";
  $("dashboard").hidden = which !== "dashboard";
  $("logout").hidden = which !== "dashboard";
}

async function api(path) {
  const r = await fetch(path, { credentials: "same-origin", cache: "no-store" });
  if (r.status === 401) {
    stop();
    show("login");
    return null;
  }
  if (!r.ok) throw new Error(`${path}: HTTP ${r.status}`);
  return r.json();
}

function stop() {
  if (timer) clearInterval(timer);
  if (logTimer) clearInterval(logTimer);
  timer = logTimer = null;
}

function start() {
  show("dashboard");
  poll();
  pollLogs();
  timer = setInterval(poll, 1000);
  logTimer = setInterval(pollLogs, 2000);
}

function clock(unixSeconds) {
  return new Date(unixSeconds * 1000).toLocaleTimeString("en-GB", { hour12: false });
}

function fmtDuration(s) {
  s = Math.floor(s);
  const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60);
  if (d) return `${d}d ${h}h`;
  if (h) return `${h}h ${m}m`;
  if (m) return `${m}m ${s % 60}s`;
  return `${s}s`;
}
function fmtBytes(b) {
  if (b === null || b === undefined) return "";
  const u = ["B", "KiB", "MiB", "GiB"];
  let i = 0;
  while (b >= 1024 && i < u.length - 1) { b /= 1024; i++; }
  return `${b.toFixed(i ? 1 : 0)} ${u[i]}`;
}
function fmtNum(v, digits) {
  if (v === null || v === undefined || Number.isNaN(v)) return "–";
  return v.toFixed(digits);
}

// Prometheus-style quantile over cumulative buckets [[upper|null, count], ...].
function quantile(buckets, q) {
  const total = buckets.length ? buckets[buckets.length - 1][1] : 0;
  if (!total) return null;
  const rank = q * total;
  let lower = 0, below = 0;
  for (const [upper, cum] of buckets) {
    if (cum >= rank && cum > below) {
      if (upper === null) return lower;
      return lower + (upper - lower) * ((rank - below) / (cum - below));
    }
    if (upper !== null) lower = upper;
    below = cum;
  }
  return lower;
}

function windowed(name, now, stats) {
  const list = samples.get(name) || [];
  const fivexx = Object.entries(stats.requests || {}).filter(([c]) => c.startsWith("5")).reduce((a, [, n]) => a + n, 0);
  list.push({ t: now, total: stats.requestsTotal, fivexx, count: stats.latency.count, sum: stats.latency.sumSeconds, buckets: stats.latency.buckets });
  while (list.length > 2 && now - list[0].t > WINDOW_S + 0.5) list.shift();
  samples.set(name, list);
  const first = list[0], last = list[list.length - 1];
  const dt = last.t - first.t;
  if (list.length < 2 || dt <= 0) return { rate: null, mean: null, p99: null, fivexx };
  const dn = last.count - first.count;
  const diff = last.buckets.map(([u, c], i) => [u, c - ((first.buckets[i] || [u, 0])[1])]);
  return {
    rate: (last.total - first.total) / dt,
    mean: dn > 0 ? ((last.sum - first.sum) / dn) * 1000 : null,
    p99: dn > 0 ? quantile(diff, 0.99) * 1000 : null,
    fivexx,
  };
}

function spark(parent, values) {
  const W = 140, H = 28;
  const svg = el("svg", { class: "spark", viewBox: `0 0 ${W} ${H}`, "aria-hidden": "true" }, parent);
  const max = Math.max(1, ...values);
  // Newest point at the right edge; the line grows leftwards over the first minute.
  const step = W / (SPARK_POINTS - 1), offset = W - step * (values.length - 1);
  const pts = values.map((v, i) => `${(offset + step * i).toFixed(1)},${(H - 2 - (H - 4) * v / max).toFixed(1)}`);
  el("line", { x1: 0, x2: W, y1: H - 1, y2: H - 1, stroke: "#d1d9e0" }, svg);
  if (pts.length > 1) el("polyline", { points: pts.join(" "), fill: "none", stroke: "#1f6feb", "stroke-width": 1.5 }, svg);
}

function renderHosts(hosts) {
  const tbody = $("hosts").tBodies[0];
  tbody.replaceChildren();
  for (const h of hosts) {
    const tr = el("tr", { "data-host": h.name }, tbody);
    el("td", {}, tr, `${h.name} (pid ${h.pid})`);
    el("td", {}, tr, h.version);
    el("td", {}, tr, fmtDuration(h.uptimeSeconds));
    el("td", {}, tr, fmtBytes(h.rssBytes));
    el("td", {}, tr, h.workloads);
    el("td", {}, tr, h.ingress || "");
    el("td", {}, tr, h.metrics ? `http://${h.metrics}/metrics` : "off");
    el("td", {}, tr, h.otlpEndpoint || "off");
  }
  const h = hosts[0];
  if (h) $("whoami").textContent = `${h.name} · admin ${h.admin || ""}`;
}

function renderWorkloads(data) {
  const tbody = $("workloads").tBodies[0];
  tbody.replaceChildren();
  $("no-workloads").hidden = data.workloads.length > 0;
  const select = $("log-workload");
  const known = new Set([...select.options].map((o) => o.value));
  for (const w of data.workloads) {
    if (!known.has(w.name)) el("option", { value: w.name }, select, w.name);
    const stats = w.stats || { requests: {}, requestsTotal: 0, inFlight: 0, latency: { count: 0, sumSeconds: 0, buckets: [] } };
    const win = windowed(w.name, data.now, stats);
    const hist = sparks.get(w.name) || [];
    hist.push(win.rate || 0);
    while (hist.length > SPARK_POINTS) hist.shift();
    sparks.set(w.name, hist);

    const tr = el("tr", { "data-workload": w.name }, tbody);
    el("td", { class: "name" }, tr, w.namespace && w.namespace !== "default" ? `${w.namespace}/${w.name}` : w.name);
    el("span", { class: `badge ${w.status}` }, el("td", { class: "status" }, tr), w.status);
    el("td", {}, tr, `v${w.version}`);
    el("td", {}, tr, (w.routes || []).map((r) => `${r.host || "*"}${r.path}`).join(", "));
    el("td", { class: "num rate", "data-rate": win.rate === null ? "" : win.rate.toFixed(2) }, tr, fmtNum(win.rate, 1));
    el("td", { class: "num" }, tr, fmtNum(win.mean, 2));
    el("td", { class: "num" }, tr, fmtNum(win.p99, 2));
    el("td", { class: "num" }, tr, stats.inFlight);
    el("td", { class: "num" }, tr, win.fivexx);
    spark(el("td", {}, tr), hist);
    el("td", { class: "err" }, tr, w.error || (w.lastRefusedUpdate ? `update refused: ${w.lastRefusedUpdate}` : ""));
  }
}

function renderDeploys(deploys) {
  const ul = $("deploys");
  ul.replaceChildren();
  $("no-deploys").hidden = deploys.length > 0;
  for (const d of deploys.slice(0, 12)) {
    const li = el("li", { class: d.ok ? "ok" : "refused" }, ul);
    const when = clock(d.time);
    const file = d.path.split("/").pop();
    el("div", { class: "what" }, li, d.ok ? `deployed ${d.workloads.join(", ")}` : `refused: ${file}`);
    el("div", { class: "muted" }, li, `${when} · ${d.path}`);
    if (!d.ok) el("div", { class: "why" }, li, d.error);
  }
}

async function poll() {
  try {
    const data = await api("/ui/api/overview");
    if (!data) return;
    renderHosts(data.hosts);
    renderWorkloads(data);
    renderDeploys(data.deploys);
    $("updated").textContent = clock(Date.now() / 1000);
  } catch (e) {
    $("updated").textContent = `failed (${e.message})`;
  }
}

async function pollLogs() {
  const w = $("log-workload").value;
  try {
    const data = await api(`/ui/api/logs${w ? `?workload=${encodeURIComponent(w)}` : ""}`);
    if (!data) return;
    const pre = $("logs");
    const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
    pre.replaceChildren();
    for (const l of data.lines) {
      const line = el("div", { class: l.stream }, pre);
      el("span", { class: "t" }, line, clock(l.time) + " ");
      el("span", { class: "w" }, line, `${l.workload}/${l.component} `);
      line.appendChild(document.createTextNode(`${l.stream}: ${l.message}`));
    }
    if (!data.lines.length) pre.textContent = "(no log lines yet)";
    if (atBottom) pre.scrollTop = pre.scrollHeight;
  } catch (e) {
    $("logs").textContent = `could not load logs: ${e.message}`;
  }
}

async function login(ev) {
  ev.preventDefault();
  const input = $("token");
  $("login-error").textContent = "";
  $("login-button").disabled = true;
  try {
    const r = await fetch("/ui/login", {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ token: input.value.trim() }),
    });
    if (r.ok) {
      input.value = "";
      start();
    } else {
      const body = await r.json().catch(() => ({}));
      $("login-error").textContent = body.error || `login failed (HTTP ${r.status})`;
    }
  } catch (e) {
    $("login-error").textContent = `login failed: ${e.message}`;
  } finally {
    $("login-button").disabled = false;
  }
}

async function logout() {
  stop();
  await fetch("/ui/logout", { method: "POST", credentials: "same-origin" }).catch(() => {});
  samples.clear();
  sparks.clear();
  show("login");
}

document.addEventListener("DOMContentLoaded", async () => {
  $("login-form").addEventListener("submit", login);
  $("logout").addEventListener("click", logout);
  $("log-workload").addEventListener("change", pollLogs);
  const r = await fetch("/ui/api/overview", { credentials: "same-origin", cache: "no-store" }).catch(() => null);
  if (r && r.ok) start();
  else show("login");
});
