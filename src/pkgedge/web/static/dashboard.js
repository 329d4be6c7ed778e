// pkgedge dashboard: live charts from the admin API's event stream (uPlot, served locally).
"use strict";

const WINDOW = 300; // seconds on the live charts
const $ = (id) => document.getElementById(id);
let token = sessionStorage.getItem("pkgedge-token") || "";
let charts = {};
let data = null; // {x: [...], name: [...]} for the live charts
let streaming = null;

const SERIES = {
  requests: ["requests", "hits", "misses", "passes", "stale", "synthetic"],
  bytes: ["bytes_to_clients", "bytes_from_origin", "bytes_from_cache"],
  origin: ["origin_fetches", "collapsed", "origin_errors"],
  protection: ["denied", "rate_limited", "penalized", "connections_refused", "origin_busy", "timeouts"],
};
const COLORS = ["#2f6fdf", "#2a9d5c", "#e08a1e", "#8a55c9", "#c8465a", "#6b7a90"];

function human(n, unit = "") {
  if (n === null || n === undefined || Number.isNaN(n)) return "–";
  const prefixes = ["", "k", "M", "G", "T"];
  let i = 0;
  while (Math.abs(n) >= 1000 && i < prefixes.length - 1) { n /= 1000; i++; }
  return (i ? n.toFixed(1) : Math.round(n * 10) / 10) + " " + prefixes[i] + unit;
}

async function api(path) {
  const resp = await fetch(path, { headers: { Authorization: "Bearer " + token } });
  if (!resp.ok) throw new Error(path + ": " + resp.status + " " + (await resp.text()).trim());
  return resp.json();
}

function status(text) { $("status").textContent = text; }

function chart(id, labels, opts = {}) {
  const el = $(id);
  el.textContent = "";
  const series = [{}].concat(labels.map((l, i) => ({
    label: l, stroke: COLORS[i % COLORS.length], width: 1.5, spanGaps: true,
    ...(opts.points ? { points: { show: true, size: 4 } } : {}),
  })));
  return new uPlot({
    width: Math.max(320, el.clientWidth || 480), height: 200, series,
    scales: { x: { time: true }, ...(opts.scales || {}) },
    axes: [{}, { size: 60, values: opts.values }],
    legend: { live: false },
  }, [[]].concat(labels.map(() => [])), el);
}

function hitRatio(i) {
  const r = data.requests[i];
  return r ? Math.round(1000 * data.hits[i] / r) / 10 : null;
}

function redraw() {
  const x = data.x;
  for (const [name, cols] of Object.entries(SERIES)) charts[name].setData([x, ...cols.map((c) => data[c])]);
  charts.hitratio.setData([x, x.map((_, i) => hitRatio(i))]);
  charts.latency.setData([x, data.p50, data.p95, data.p99]);
}

function start(live) {
  // the live view's last value is the current second so far: the stream sends it when done
  const n = live.seconds - 1;
  const first = live.now - live.seconds + 1;
  data = { x: Array.from({ length: n }, (_, i) => first + i) };
  for (const cols of Object.values(SERIES)) for (const c of cols) data[c] = live.series[c].slice(0, n);
  for (const k of ["p50", "p95", "p99"]) data[k] = live.latency_ms[k].slice(0, n);
  charts.requests = chart("c-requests", SERIES.requests);
  charts.hitratio = chart("c-hitratio", ["hit ratio %"]);
  charts.bytes = chart("c-bytes", SERIES.bytes, { values: (u, v) => v.map((b) => human(b, "B")) });
  charts.origin = chart("c-origin", SERIES.origin);
  charts.latency = chart("c-latency", ["p50", "p95", "p99"], { points: true });
  charts.protection = chart("c-protection", SERIES.protection);
  redraw();
}

function onEvent(ev) {
  if (!data || ev.now <= data.x[data.x.length - 1]) return;
  data.x.push(ev.now);
  for (const cols of Object.values(SERIES)) for (const c of cols) data[c].push(ev.second[c]);
  for (const k of ["p50", "p95", "p99"]) data[k].push(ev.latency_ms[k]);
  if (data.x.length > WINDOW) for (const k of Object.keys(data)) data[k].shift();
  redraw();
  const m = ev.minute;
  $("n-rps").textContent = human(ev.second.requests);
  $("n-hit").textContent = m.requests ? (100 * m.hits / m.requests).toFixed(1) + " %" : "–";
  $("n-bps").textContent = human(ev.second.bytes_to_clients, "B");
  $("n-origin").textContent = human(ev.second.origin_fetches);
  $("n-p95").textContent = ev.latency_ms.p95 === null ? "–" : ev.latency_ms.p95.toFixed(1) + " ms";
  $("n-requests").textContent = String(ev.since_start.requests);
  $("n-requests").dataset.value = String(ev.since_start.requests);
}

async function stream() {
  if (streaming) streaming.abort();
  streaming = new AbortController();
  const resp = await fetch("/stats/stream", { headers: { Authorization: "Bearer " + token }, signal: streaming.signal });
  if (!resp.ok) throw new Error("stream: " + resp.status);
  status("live");
  const reader = resp.body.getReader();
  const decoder = new TextDecoder();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buf.indexOf("\n\n")) >= 0) {
      const block = buf.slice(0, cut);
      buf = buf.slice(cut + 2);
      for (const line of block.split("\n")) if (line.startsWith("data: ")) onEvent(JSON.parse(line.slice(6)));
    }
  }
  status("stream ended: reconnecting");
  setTimeout(() => stream().catch((e) => status(String(e))), 2000);
}

function table(id, head, rows) {
  const t = $(id);
  t.textContent = "";
  const tr = t.insertRow();
  for (const h of head) { const th = document.createElement("th"); th.textContent = h; tr.appendChild(th); }
  for (const row of rows) {
    const r = t.insertRow();
    row.forEach((v, i) => {
      const c = r.insertCell();
      c.textContent = v === null || v === undefined ? "" : String(v);
      if (typeof v === "number") c.className = "n";
      if (head[i] === "what protection did" && v) c.className = "note";
    });
  }
}

async function panels() {
  const [sav, top, clients, events] = await Promise.all([
    api("/stats/savings?days=30"), api("/stats/top?days=1"), api("/stats/clients"), api("/stats/events"),
  ]);
  const s = (x) => [human(x.origin_requests_avoided), human(x.origin_bytes_avoided, "B"), x.egress_saved.toFixed(4), human(x.energy_saved_joules, "J")];
  table("savings", ["", "origin requests", "origin bytes", "egress", "energy"], [
    ["last 10 min", ...s(sav.last_10_minutes)], ["since start", ...s(sav.since_start)],
  ]);
  table("savings-days", ["date", "origin requests", "origin bytes", "egress", "energy"], sav.per_day.map((d) => [d.date, ...s(d)]));
  const ul = $("assumptions");
  ul.textContent = "";
  for (const [k, v] of Object.entries(sav.assumptions)) { const li = document.createElement("li"); li.textContent = k + ": " + v; ul.appendChild(li); }
  const m = document.createElement("li");
  m.textContent = "in use: " + JSON.stringify(sav.model);
  ul.appendChild(m);
  table("top-projects", ["project", "downloads"], top.projects.map((p) => [p.project, p.downloads]));
  table("top-files", ["project", "version", "type", "downloads"], top.files.map((f) => [f.project, f.version, f.file_type, f.downloads]));
  table("top-clients", ["client", "requests", "refused", "bytes", "what protection did"], clients.clients.map((c) => [c.client, c.requests, c.refused, human(c.bytes, "B"), c.note]));
  table("events", ["time", "what", "detail"], events.events.map((e) => [
    new Date(e.time * 1000).toLocaleTimeString(), e.kind,
    e.kind === "purge" ? `${e.purged} object(s) ${e.all ? "(all)" : [...e.urls, ...e.keys].join(" ")}${e.soft ? " soft" : ""}` : e.detail || "",
  ]));
}

async function showProject(ev) {
  if (ev) ev.preventDefault();
  const name = $("project").value.trim();
  if (!name) return;
  const days = Number($("project-days").value);
  const d = await api(`/stats/downloads/${encodeURIComponent(name)}?days=${days}&by=installer`);
  $("project-total").textContent = `${d.package}: ${d.total} download(s) in ${d.days} day(s)`;
  const byDay = new Map(d.per_day.map((p) => [p.date, p.downloads]));
  const xs = [], ys = [];
  const today = Math.floor(Date.now() / 86400000) * 86400;
  for (let i = days - 1; i >= 0; i--) {
    const t = today - i * 86400;
    xs.push(t);
    ys.push(byDay.get(new Date(t * 1000).toISOString().slice(0, 10)) || 0);
  }
  const el = $("c-project");
  el.textContent = "";
  charts.project = new uPlot({
    width: Math.max(320, el.clientWidth || 800), height: 220,
    series: [{}, { label: "downloads", stroke: COLORS[0], fill: "#2f6fdf33", paths: uPlot.paths.bars({ size: [0.8] }) }],
    scales: { x: { time: true } }, legend: { live: false },
  }, [xs, ys], el);
  table("project-by", ["installer", "downloads"], Object.entries(d.totals).map(([k, v]) => [k || "(not said)", v]));
}

async function connect(ev) {
  if (ev) ev.preventDefault();
  token = $("token").value || token;
  sessionStorage.setItem("pkgedge-token", token);
  try {
    status("connecting");
    start(await api("/stats/live?seconds=" + WINDOW));
    await panels();
    stream().catch((e) => status(String(e)));
  } catch (e) {
    status(String(e.message || e));
  }
}

$("login").addEventListener("submit", connect);
$("project-form").addEventListener("submit", (ev) => showProject(ev).catch((e) => { $("project-total").textContent = String(e.message || e); }));
setInterval(() => { if (data) panels().catch((e) => status(String(e.message || e))); }, 5000);
if (token) { $("token").value = token; connect(); }
