// Skein console: polls api/overview every 2 s and renders it. No
// dependencies; the charts are drawn on canvas.
"use strict";

const POLL_MS = 2000;
const HISTORY = 150; // points kept per chart (5 minutes at 2 s)
const history = { t: [], rate: [], urp: [] };
let prev = null;         // the previous overview, for rates
const open = new Set();  // topics whose partitions are shown

const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v; else if (k.startsWith("data-")) e.setAttribute(k, v); else e[k] = v;
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

function fmtBytes(n) {
  if (n < 0) return "unlimited";
  const u = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return (i === 0 ? n : n.toFixed(1)) + " " + u[i];
}

function fmtRetention(ms) {
  if (ms < 0) return "forever";
  const h = ms / 3600000;
  return h >= 24 && h % 24 === 0 ? (h / 24) + "d" : h >= 1 ? h.toFixed(h % 1 ? 1 : 0) + "h" : (ms / 1000) + "s";
}

function fmtRate(r) {
  if (r === null || r === undefined) return "–";
  return r >= 1000 ? (r / 1000).toFixed(1) + "k" : r.toFixed(r < 10 ? 1 : 0);
}

const ids = (a) => (a || []).join(",");

// topicRates returns records/s per topic between two overviews.
function topicRates(cur, old) {
  const rates = {};
  if (!old) return rates;
  const dt = (cur.time_ms - old.time_ms) / 1000;
  if (dt <= 0) return rates;
  const before = Object.fromEntries(old.topics.map((t) => [t.name, t]));
  for (const t of cur.topics) {
    const o = before[t.name];
    if (o && o.described && t.described) rates[t.name] = Math.max(0, (t.records - o.records) / dt);
  }
  return rates;
}

function renderHeader(ov) {
  const who = ov.principal ? ` · signed in as ${ov.principal}` : "";
  $("cluster").textContent = ov.cluster_hidden
    ? `cluster hidden: ${ov.principal} may not describe the cluster`
    : `cluster ${ov.cluster_id || "?"} · controller ${ov.controller_id >= 0 ? "broker " + ov.controller_id : "none elected"} · answered by broker ${ov.answered_by}${who}`;
  const h = $("health");
  const t = ov.totals;
  let cls = "ok", text = "healthy";
  if (ov.cluster_hidden) { cls = "muted"; text = "topics only"; }
  else if (t.leaderless > 0 || ov.controller_id < 0) { cls = "bad"; text = "offline partitions"; }
  else if (t.under_replicated > 0 || t.brokers_down > 0) { cls = "warn"; text = "degraded"; }
  h.className = "badge " + cls;
  h.textContent = text;
  $("status").textContent = "updated " + new Date(ov.time_ms).toLocaleTimeString();
}

function renderCards(ov, rate) {
  const t = ov.totals;
  $("c-brokers").textContent = `${t.brokers - t.brokers_down} / ${t.brokers}`;
  $("c-topics").textContent = t.topics;
  $("c-partitions").textContent = t.partitions;
  $("c-urp").textContent = t.under_replicated;
  $("c-urp").className = "value " + (t.under_replicated ? "warn" : "ok");
  $("c-leaderless").textContent = t.leaderless;
  $("c-leaderless").className = "value " + (t.leaderless ? "bad" : "ok");
  $("c-rate").textContent = fmtRate(rate);
  $("c-size").textContent = fmtBytes(t.size_bytes);
}

function renderBrokers(ov) {
  const body = $("brokers").tBodies[0];
  body.replaceChildren(...ov.brokers.map((b) => el("tr", { "data-broker": b.id },
    b.id, b.addr, b.rack || "–",
    el("span", { class: b.gossip === "alive" ? "ok" : "bad" }, b.gossip),
    el("span", { class: b.fenced ? "bad" : "ok" }, b.fenced ? "fenced" : "ok"),
    (b.quorum || "–") + (b.controller ? " (controller)" : ""), b.leaders, b.replicas,
  ).tap((tr) => wrapCells(tr))));
}

function renderProblems(ov) {
  $("problems-section").hidden = ov.problems.length === 0;
  $("problems").tBodies[0].replaceChildren(...ov.problems.map((p) =>
    el("tr", {}, p.topic, p.partition, p.leader, ids(p.replicas), ids(p.isr), el("span", { class: "warn" }, p.problem)).tap(wrapCells)));
}

function partsTable(t) {
  const rows = (t.parts || []).map((p) => el("tr", { "data-partition": p.partition },
    p.partition, p.leader, p.epoch, ids(p.replicas),
    el("span", { class: (p.isr || []).length < (p.replicas || []).length ? "warn" : "" }, ids(p.isr)),
    p.error ? "–" : p.log_start, p.error ? "–" : p.high_watermark, p.error ? "–" : p.log_end,
    p.error ? p.error : fmtBytes(p.size_bytes)).tap(wrapCells));
  const head = el("tr", {}, ...["Partition", "Leader", "Epoch", "Replicas", "ISR", "Log start", "High watermark", "Log end", "Size"].map((h) => el("th", {}, h)));
  return el("table", { class: "partitions" }, el("thead", {}, head), el("tbody", {}, ...rows));
}

function renderTopics(ov, rates) {
  const body = $("topics").tBodies[0];
  const rows = [];
  for (const t of ov.topics) {
    let health = el("span", { class: "ok" }, "ok");
    if (t.leaderless) health = el("span", { class: "bad" }, `${t.leaderless} offline`);
    else if (t.under_replicated) health = el("span", { class: "warn" }, `${t.under_replicated} under-replicated`);
    else if (!t.described) health = el("span", { class: "muted" }, "not described");
    const tr = el("tr", { class: "topic", "data-topic": t.name },
      t.name, t.partitions, t.replication_factor, t.min_insync, fmtRetention(t.retention_ms),
      t.described ? t.records : "–", fmtRate(rates[t.name]), t.described ? fmtBytes(t.size_bytes) : "–", health).tap(wrapCells);
    tr.addEventListener("click", () => { open.has(t.name) ? open.delete(t.name) : open.add(t.name); render(ov, rates); });
    rows.push(tr);
    if (open.has(t.name)) {
      const td = el("td", {}, partsTable(t));
      td.colSpan = 9;
      rows.push(el("tr", { class: "parts" }, td));
    }
  }
  body.replaceChildren(...rows);
}

// wrapCells turns a row's text children into cells.
function wrapCells(tr) {
  const kids = [...tr.childNodes];
  tr.replaceChildren(...kids.map((k) => el("td", {}, k)));
}
Node.prototype.tap = function (f) { f(this); return this; };

function drawChart(canvas, values, color) {
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth || canvas.width, h = canvas.clientHeight || canvas.height;
  canvas.width = w * dpr; canvas.height = h * dpr;
  const g = canvas.getContext("2d");
  g.scale(dpr, dpr);
  g.clearRect(0, 0, w, h);
  const pad = 28, maxV = Math.max(1, ...values);
  g.strokeStyle = "#e2e5ea"; g.fillStyle = "#6b7385"; g.font = "11px system-ui";
  for (let i = 0; i <= 2; i++) {
    const y = pad / 2 + (h - pad) * i / 2;
    g.beginPath(); g.moveTo(pad, y); g.lineTo(w, y); g.stroke();
    g.fillText(fmtRate(maxV * (1 - i / 2)), 0, y + 4);
  }
  g.strokeStyle = color; g.lineWidth = 2; g.beginPath();
  values.forEach((v, i) => {
    const x = pad + (w - pad) * i / (Math.max(values.length, 30) - 1);
    const y = pad / 2 + (h - pad) * (1 - v / maxV);
    i ? g.lineTo(x, y) : g.moveTo(x, y);
  });
  g.stroke();
  canvas.dataset.points = values.length;
  canvas.dataset.last = values.length ? values[values.length - 1] : "";
}

function render(ov, rates) {
  const total = Object.values(rates).reduce((a, b) => a + b, 0);
  renderHeader(ov);
  renderCards(ov, prev ? total : null);
  renderBrokers(ov);
  renderProblems(ov);
  renderTopics(ov, rates);
}

async function poll() {
  try {
    // From the origin (without any user:password@ of the page's address,
    // which fetch refuses); the browser adds the page's credentials itself.
    const resp = await fetch(new URL("api/overview", location.origin + location.pathname), { cache: "no-store" });
    if (resp.status === 401 || resp.status === 403) throw new Error("not signed in, or no longer allowed: reload the page (" + (await resp.text()).trim() + ")");
    const ov = await resp.json();
    if (!resp.ok) throw new Error(ov.error || resp.statusText);
    const rates = topicRates(ov, prev);
    if (prev) {
      history.rate.push(Object.values(rates).reduce((a, b) => a + b, 0));
      history.urp.push(ov.totals.under_replicated + ov.totals.leaderless);
      for (const k of ["rate", "urp"]) if (history[k].length > HISTORY) history[k].shift();
    }
    render(ov, rates);
    prev = ov;
    drawChart($("chart-throughput"), history.rate, "#2f5bd3");
    drawChart($("chart-urp"), history.urp, "#b36b00");
  } catch (e) {
    $("health").className = "badge bad";
    $("health").textContent = "unreachable";
    $("status").textContent = String(e.message || e);
  } finally {
    setTimeout(poll, POLL_MS);
  }
}

poll();
