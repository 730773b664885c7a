// The live view: draw an FBP graph as layered SVG, run it through the execution server's API
// and paint its events (per-node tick counts, per-edge packet counts, failures) as they come.
"use strict";

const EXAMPLES = {
  "count numbers": {
    processes: {
      gen: { component: "tpl_generator", metadata: { config: { end: 50 } } },
      split: { component: "tpl_flow_split" },
      count: { component: "tpl_flow_counter" },
    },
    connections: [
      { data: true, tgt: { process: "gen", port: "trigger" } },
      { src: { process: "gen", port: "output" }, tgt: { process: "split", port: "in" } },
      { src: { process: "split", port: "out" }, tgt: { process: "count", port: "in" } },
    ],
  },
  "a failing node": {
    processes: {
      gen: { component: "tpl_generator", metadata: { config: { end: 3 } } },
      split: { component: "tpl_flow_split" },
      div: { component: "tpl_math_divide", metadata: { config: { b: 0 } } },
    },
    connections: [
      { data: true, tgt: { process: "gen", port: "trigger" } },
      { src: { process: "gen", port: "output" }, tgt: { process: "split", port: "in" } },
      { src: { process: "split", port: "out" }, tgt: { process: "div", port: "a" } },
    ],
  },
};

const $ = (id) => document.getElementById(id);
const SVG = "http://www.w3.org/2000/svg";
let view = null; // {nodes: {id: {g, count, err}}, edges: {key: label}}

function el(name, attrs, parent, text) {
  const e = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  if (parent) parent.appendChild(e);
  return e;
}

function edgesOf(graph) {
  return (graph.connections || []).filter((c) => c.src && c.tgt);
}

// Layers by longest path from the sources (edges that close a cycle are ignored).
function layers(graph) {
  const ids = Object.keys(graph.processes || {});
  const layer = Object.fromEntries(ids.map((id) => [id, 0]));
  for (let round = 0; round < ids.length; round++) {
    let moved = false;
    for (const c of edgesOf(graph)) {
      const a = c.src.process, b = c.tgt.process;
      if (a in layer && b in layer && layer[b] < layer[a] + 1 && layer[a] + 1 < ids.length) {
        layer[b] = layer[a] + 1;
        moved = true;
      }
    }
    if (!moved) break;
  }
  return layer;
}

function draw(graph) {
  const svg = $("canvas");
  svg.replaceChildren();
  const layer = layers(graph);
  const ports = {};
  for (const id of Object.keys(graph.processes || {})) ports[id] = { in: [], out: [] };
  for (const c of graph.connections || []) {
    if (c.tgt && ports[c.tgt.process] && !ports[c.tgt.process].in.includes(c.tgt.port))
      ports[c.tgt.process].in.push(c.tgt.port);
    if (c.src && ports[c.src.process] && !ports[c.src.process].out.includes(c.src.port))
      ports[c.src.process].out.push(c.src.port);
  }
  const W = 170, H0 = 54, GAPX = 90, GAPY = 40, PORT = 16;
  const rows = {};
  const pos = {};
  for (const [id, l] of Object.entries(layer)) {
    rows[l] = (rows[l] || 0) + 1;
    const h = H0 + PORT * Math.max(ports[id].in.length, ports[id].out.length, 1);
    const y = 20 + Object.values(pos).filter((p) => p.l === l).reduce((s, p) => s + p.h + GAPY, 0);
    pos[id] = { x: 20 + l * (W + GAPX), y, h, l };
  }
  const edgeLayer = el("g", {}, svg);
  view = { nodes: {}, edges: {} };
  let maxX = 0, maxY = 0;
  for (const [id, p] of Object.entries(pos)) {
    const g = el("g", { class: "node", "data-node": id, transform: `translate(${p.x},${p.y})` }, svg);
    el("rect", { width: W, height: p.h, rx: 6 }, g);
    el("text", { x: 8, y: 16, "font-weight": "bold" }, g, id);
    el("text", { x: 8, y: 30 }, g, graph.processes[id].component || "?");
    const count = el("text", { x: 8, y: p.h - 8, class: "node-count" }, g, "ticks: 0");
    const err = el("text", { x: 8, y: p.h + 14, class: "node-error" }, g, "");
    el("title", {}, g, id);
    ports[id].in.forEach((name, i) => {
      el("circle", { class: "port", cx: 0, cy: 40 + i * PORT, r: 4 }, g);
      el("text", { class: "port-label", x: 6, y: 44 + i * PORT }, g, name);
    });
    ports[id].out.forEach((name, i) => {
      el("circle", { class: "port", cx: W, cy: 40 + i * PORT, r: 4 }, g);
      el("text", { class: "port-label", x: W - 6, y: 44 + i * PORT, "text-anchor": "end" }, g, name);
    });
    view.nodes[id] = { g, count, err, ticks: 0, failures: 0 };
    maxX = Math.max(maxX, p.x + W + 40);
    maxY = Math.max(maxY, p.y + p.h + 40);
  }
  for (const c of edgesOf(graph)) {
    const a = pos[c.src.process], b = pos[c.tgt.process];
    if (!a || !b) continue;
    const x1 = a.x + W, y1 = a.y + 40 + PORT * ports[c.src.process].out.indexOf(c.src.port);
    const x2 = b.x, y2 = b.y + 40 + PORT * ports[c.tgt.process].in.indexOf(c.tgt.port);
    const mx = (x1 + x2) / 2;
    const key = `${c.src.process}.${c.src.port}>${c.tgt.process}.${c.tgt.port}`;
    el("path", { class: "edge", d: `M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}`,
                 "data-edge": key }, edgeLayer);
    view.edges[key] = el("text", { class: "edge-count", x: mx, y: (y1 + y2) / 2 - 4,
                                   "data-edge": key }, edgeLayer, "0");
  }
  svg.setAttribute("viewBox", `0 0 ${Math.max(maxX, 400)} ${Math.max(maxY, 200)}`);
}

function setState(state) {
  const s = $("state");
  s.textContent = state;
  s.className = `state ${state}`;
}

function logEvent(ev) {
  const li = document.createElement("li");
  li.className = ev._type;
  const who = ev.actorId || (ev.fromActor ? `${ev.fromActor}.${ev.fromPort} → ${ev.toActor}.${ev.toPort}` : "");
  const extra = ev.error || (ev.count !== undefined ? `lost ${ev.count}` : "") ||
    (ev.state ? `${ev.state} ticks=${ev.ticks} failures=${ev.failures}` : "");
  li.textContent = `${ev._type} ${who} ${extra}`.trim();
  const log = $("log");
  log.appendChild(li);
  while (log.children.length > 500) log.removeChild(log.firstChild);
  log.scrollTop = log.scrollHeight;
}

function showNode(id) {
  const n = view && view.nodes[id];
  if (!n) return null;
  n.count.textContent = `ticks: ${n.ticks}` + (n.failures ? ` · failed: ${n.failures}` : "");
  return n;
}

function failNode(id, error) {
  const n = showNode(id);
  if (!n) return;
  n.g.classList.add("failed");
  n.err.textContent = String(error).slice(0, 60);
  n.g.querySelector("title").textContent = `${id}: ${error}`;
}

function onEvent(ev) {
  let events = Number($("event-count").textContent) + 1;
  $("event-count").textContent = events;
  if (ev._type !== "MessageSent" && ev._type !== "ActorStarted" && ev._type !== "ActorCompleted") {
    logEvent(ev);
  }
  if (ev._type === "ActorCompleted") {
    const n = view.nodes[ev.actorId];
    if (n) { n.ticks += 1; showNode(ev.actorId); }
  } else if (ev._type === "ActorFailed") {
    const n = view.nodes[ev.actorId];
    if (n) { n.failures += 1; failNode(ev.actorId, ev.error); }
  } else if (ev._type === "MessageSent") {
    const key = `${ev.fromActor}.${ev.fromPort}>${ev.toActor}.${ev.toPort}`;
    const label = view.edges[key];
    if (label) label.textContent = String(Number(label.textContent) + 1);
  } else if (["Completed", "Failed", "Cancelled"].includes(ev._type)) {
    setState(ev.state);
  }
}

// After the run: the server's own counts win (this page may have lost events).
function applyCounts(counts) {
  for (const [id, c] of Object.entries(counts.nodes || {})) {
    const n = view.nodes[id];
    if (!n) continue;
    n.ticks = c.ticks; n.failures = c.failures;
    if (c.failures) failNode(id, c.error || "failed"); else showNode(id);
  }
  for (const [key, count] of Object.entries(counts.edges || {})) {
    if (view.edges[key]) view.edges[key].textContent = String(count);
  }
}

function headers() {
  const token = $("token").value.trim();
  return token ? { Authorization: `Bearer ${token}` } : {};
}

async function run() {
  $("error").textContent = "";
  let graph;
  try {
    graph = JSON.parse($("graph").value);
  } catch (e) {
    $("error").textContent = `not JSON: ${e.message}`;
    return;
  }
  draw(graph);
  $("log").replaceChildren();
  $("event-count").textContent = "0";
  const r = await fetch("api/v1/executions", {
    method: "POST",
    headers: { "Content-Type": "application/json", ...headers() },
    body: JSON.stringify({ graph }),
  });
  const body = await r.json();
  if (!r.ok) {
    const e = body.error || {};
    $("error").textContent = `${r.status} ${e.type}: ${e.message}${e.path ? `\nat ${e.path}` : ""}`;
    setState("refused");
    return;
  }
  setState(body.state);
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  const token = encodeURIComponent($("token").value.trim());
  const ws = new WebSocket(`${proto}//${location.host}/api/v1/executions/${body.id}/events?access_token=${token}`);
  ws.onmessage = (m) => onEvent(JSON.parse(m.data));
  ws.onclose = async () => {
    const final = await fetch(`api/v1/executions/${body.id}`, { headers: headers() });
    if (final.ok) {
      const ex = await final.json();
      applyCounts(ex.counts);
      setState(ex.state);
      if (ex.reason) $("error").textContent = ex.reason;
    }
  };
}

function init() {
  const select = $("example");
  for (const name of Object.keys(EXAMPLES)) {
    const o = document.createElement("option");
    o.textContent = name;
    select.appendChild(o);
  }
  const pick = () => {
    $("graph").value = JSON.stringify(EXAMPLES[select.value], null, 2);
    draw(EXAMPLES[select.value]);
  };
  select.addEventListener("change", pick);
  $("graph").addEventListener("change", () => {
    try { draw(JSON.parse($("graph").value)); } catch (e) { /* drawn on Run */ }
  });
  $("token").value = sessionStorage.getItem("reflow-token") || "";
  $("token").addEventListener("change", () => sessionStorage.setItem("reflow-token", $("token").value));
  $("run").addEventListener("click", run);
  pick();
}

init();
