// Overview: stream and DLQ length, health, warnings, and one row per pool (state, pause and
// resume, consumers, in flight, pending, lag, oldest pending, owner, processed and failed
// per minute, a chart of the last 15 minutes). Tells the other sections the pool names.

import { $, api, age, cells, el, emit, fail, hideWrites, ms, notice, session, setText } from "./shared.js";

const pools = new Map(); // name -> {row, cells, chart}
let poolNames = [];

async function refresh() {
  const [status, health, history] = await Promise.all([
    api("GET", "/status"),
    fetch("/healthz", { cache: "no-store" }).then((r) => r.json()).catch(() => null),
    api("GET", "/stats/history").catch(() => null),
  ]);
  setText($("stream-length"), status.streamLength);
  setText($("dlq-length"), status.dlqLength);
  setText($("stream-name"), status.stream);
  setText($("dlq-name"), status.dlq);
  setText($("health"), health ? health.status : "unknown");
  $("health").dataset.status = health ? health.status : "unknown";
  setText($("updated"), new Date().toLocaleTimeString());
  renderWarnings(status.warnings || []);
  const inFlight = new Map(((health && health.pools) || []).map((p) => [p.name, p.inFlight]));
  const series = historyByPool(history);
  const names = [];
  for (const pool of status.pools || []) {
    names.push(pool.name);
    renderPool(pool, inFlight.get(pool.name), series.get(pool.name), history);
  }
  for (const [name, entry] of pools) {
    if (!names.includes(name)) {
      entry.row.remove();
      pools.delete(name);
    }
  }
  if (names.join("\n") !== poolNames.join("\n")) {
    poolNames = names;
    emit("pools", names);
  }
}

function renderWarnings(warnings) {
  const ul = $("warnings");
  const text = warnings.join("\n");
  if (ul.dataset.text === text) return;
  ul.dataset.text = text;
  ul.replaceChildren(...warnings.map((w) => el("li", w)));
}

function poolRow(name) {
  let entry = pools.get(name);
  if (entry) return entry;
  const row = $("pool-row").content.firstElementChild.cloneNode(true);
  row.dataset.pool = name;
  const c = cells(row);
  c.name.textContent = name;
  const chart = sparkline();
  c.chart.appendChild(chart.svg);
  row.querySelector('[data-test="pause"]').addEventListener("click", () => poolAction(name, "pause"));
  row.querySelector('[data-test="resume"]').addEventListener("click", () => poolAction(name, "resume"));
  if (!session.canWrite) hideWrites(row);
  $("pool-rows").appendChild(row);
  entry = { row, cells: c, chart };
  pools.set(name, entry);
  return entry;
}

// "6", or for an adaptive pool "2–16" and each running process's current value: "2–16 (now 4)".
function concurrency(c) {
  if (!c) return null;
  if (!c.adaptive) return String(c.max);
  const now = (c.processes || []).map((p) => p.current);
  const range = c.min + "–" + c.max;
  return now.length ? range + " (now " + now.join(", ") + ")" : range;
}

// A rate-limited pool (contract §14): " · 50/1s per /connectorKey (3 waiting)"; "" without.
function rate(pool) {
  const r = pool.rateLimit;
  if (!r) return "";
  const per = r.perMs % 1000 === 0 ? r.perMs / 1000 + "s" : r.perMs + "ms";
  const key = r.key ? " per " + r.key : "";
  const waiting = typeof pool.rateWaiting === "number" ? " (" + pool.rateWaiting + " waiting)" : "";
  return " · " + r.limit + "/" + per + key + waiting;
}

function renderPool(pool, inFlight, series, history) {
  const { row, cells: c, chart } = poolRow(pool.name);
  const paused = !!pool.paused;
  setText(c.state, paused ? "paused" : "running");
  c.state.dataset.state = paused ? "paused" : "running";
  const limited = rate(pool);
  setText(c.concurrency, limited ? (concurrency(pool.concurrency) || "–") + limited : concurrency(pool.concurrency));
  setText(c.consumers, pool.consumers);
  setText(c.inFlight, pool.inFlight !== undefined ? pool.inFlight : inFlight);
  setText(c.pending, pool.pending);
  setText(c.lag, pool.lag);
  setText(c.oldest, pool.pending ? age(pool.oldestPendingAgeSeconds) : "–");
  setText(c.owner, owner(pool));
  const rates = perMinute(series, history);
  setText(c.processed, rates ? rates.processed : null);
  setText(c.failed, rates ? rates.failed : null);
  c.failed.classList.toggle("bad", !!(rates && rates.failed > 0));
  if (session.canWrite) {
    row.querySelector('[data-test="pause"]').disabled = paused;
    row.querySelector('[data-test="resume"]').disabled = !paused;
  }
  drawSparkline(chart, series || [], pool.name);
}

// Ordered pools (`orderKey` set) list each stream's or partition's lease: owner / epoch,
// "none" while nobody holds it. Unordered pools have no owner.
function owner(pool) {
  if (!pool.orderKey) return "–";
  const owners = pool.owners || [];
  if (!owners.length) return "none";
  return owners
    .map((o) => (o.consumer || "none") + (o.epoch !== undefined && o.epoch !== null ? " / " + o.epoch : ""))
    .join(", ");
}

async function poolAction(name, action) {
  try {
    await api("POST", "/pools/" + encodeURIComponent(name) + "/" + action);
    notice("Pool " + name + ": " + (action === "pause" ? "paused" : "resumed") + ".");
    await refresh();
  } catch (e) {
    fail(e);
  }
}

// ---- history: processed and failed per interval ---------------------------------------

// Reads `GET /stats/history` into name -> [{at, processed, failed}], oldest first.
function historyByPool(history) {
  const out = new Map();
  if (!history) return out;
  const byPool = history.pools || [];
  const entries = Array.isArray(byPool)
    ? byPool.map((p) => [p.name || p.pool, p.points || p.buckets || p.history || p.intervals || []])
    : Object.entries(byPool);
  for (const [name, points] of entries) {
    out.set(
      name,
      (points || []).map((p) => ({
        at: ms(p.at !== undefined ? p.at : p.start !== undefined ? p.start : p.t),
        processed: Number(p.processed || 0),
        failed: Number(p.failed || 0),
      })),
    );
  }
  return out;
}

function intervalSeconds(history) {
  const v = history && (history.intervalSeconds || history.interval_seconds || history.interval);
  return Number(v) > 0 ? Number(v) : 60;
}

// Counts over the last minute: the newest points covering 60 s (the newest one is the
// interval in progress), summed as they are, never extrapolated.
function perMinute(series, history) {
  if (!series) return null;
  const n = Math.max(1, Math.round(60 / intervalSeconds(history)));
  const last = series.slice(-n);
  const sum = (k) => last.reduce((a, p) => a + p[k], 0);
  return { processed: sum("processed"), failed: sum("failed") };
}

const SVG = "http://www.w3.org/2000/svg";
const W = 120;
const H = 40;

function sparkline() {
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", "0 0 " + W + " " + H);
  svg.setAttribute("width", W);
  svg.setAttribute("height", H);
  svg.setAttribute("role", "img");
  svg.setAttribute("class", "spark");
  const title = document.createElementNS(SVG, "title");
  svg.appendChild(title);
  const base = document.createElementNS(SVG, "line");
  base.setAttribute("x1", 0);
  base.setAttribute("x2", W);
  base.setAttribute("y1", H - 0.5);
  base.setAttribute("y2", H - 0.5);
  base.setAttribute("class", "base");
  svg.appendChild(base);
  const processed = document.createElementNS(SVG, "polyline");
  processed.setAttribute("class", "processed");
  const failed = document.createElementNS(SVG, "polyline");
  failed.setAttribute("class", "failed");
  svg.append(processed, failed);
  return { svg, title, processed, failed };
}

function drawSparkline(chart, series, name) {
  const max = Math.max(1, ...series.map((p) => Math.max(p.processed, p.failed)));
  const step = series.length > 1 ? W / (series.length - 1) : W;
  const points = (k) =>
    series
      .map((p, i) => (i * step).toFixed(1) + "," + (H - 2 - (p[k] / max) * (H - 4)).toFixed(1))
      .join(" ");
  const p = points("processed");
  const f = points("failed");
  if (chart.processed.getAttribute("points") !== p) chart.processed.setAttribute("points", p);
  if (chart.failed.getAttribute("points") !== f) chart.failed.setAttribute("points", f);
  const total = (k) => series.reduce((a, x) => a + x[k], 0);
  setText(
    chart.title,
    name + ", last 15 minutes: " + total("processed") + " processed, " + total("failed") + " failed (peak " + max + " per interval)",
  );
}

export default { id: "overview", every: 3000, refresh };
