// weir dashboard: a client of the admin API (/api/v1). Plain JS, no build step.
//
// Safety rule: every value that comes from Redis (types, fields, errors, pool names) reaches
// the document through textContent or createTextNode, never as markup. The page loads no
// third-party code and the server's Content-Security-Policy forbids inline script.
"use strict";

(function () {
  const TOKEN_KEY = "weir.token";
  const JOB_KEY = "weir.replayJob";
  const OVERVIEW_EVERY_MS = 3000;
  const LISTS_EVERY_MS = 5000;
  const REPLAY_EVERY_MS = 700;
  const DLQ_PAGE = 50;
  const MAX_IDS = 10000; // the API's limit per reprocess call

  const $ = (id) => document.getElementById(id);
  const state = {
    token: sessionStorage.getItem(TOKEN_KEY),
    canWrite: true,
    pools: new Map(), // name -> {row, cells, chart}
    poolNames: [],
    dlq: { filter: {}, cursors: [null], page: 0, next: null, rows: new Map(), selected: new Set() },
    detailId: null,
    pendingConfirm: null,
    job: sessionStorage.getItem(JOB_KEY),
    timers: [],
  };

  // ---- API ---------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, body) {
      const text = body && body.error ? body.error : "HTTP " + status;
      super(body && body.field ? text + " (" + body.field + ")" : text);
      this.status = status;
    }
  }

  async function api(method, path, body) {
    const init = { method, headers: { Authorization: "Bearer " + state.token }, cache: "no-store" };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const res = await fetch("/api/v1" + path, init);
    const json = await res.json().catch(() => null);
    if (res.status === 401) {
      signOut("The token was refused (401). Sign in again.");
      throw new ApiError(401, json);
    }
    if (res.status === 403 && method !== "GET") {
      setReadOnly();
    }
    if (!res.ok) throw new ApiError(res.status, json);
    return json;
  }

  function query(params) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) {
      if (v !== undefined && v !== null && v !== "") q.set(k, v);
    }
    const s = q.toString();
    return s ? "?" + s : "";
  }

  // ---- small DOM helpers (text only) ------------------------------------------------

  function el(tag, text, cls) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (cls) node.className = cls;
    return node;
  }

  function setText(node, value) {
    const text = value === undefined || value === null ? "–" : String(value);
    if (node.textContent !== text) node.textContent = text;
  }

  function cells(root) {
    const map = {};
    for (const node of root.querySelectorAll("[data-cell]")) map[node.dataset.cell] = node;
    return map;
  }

  function notice(message, isError) {
    const n = $("notice");
    n.textContent = message || "";
    n.classList.toggle("error", !!isError);
  }

  function fail(e) {
    if (e && e.status === 401) return;
    notice(e && e.message ? e.message : String(e), true);
  }

  function ms(v) {
    if (v === undefined || v === null || v === "") return null;
    const n = Number(v);
    return Number.isFinite(n) ? n : Date.parse(v);
  }

  function when(v) {
    const t = ms(v);
    if (t === null || !Number.isFinite(t)) return v ? String(v) : "–";
    return new Date(t).toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
  }

  function idTime(id) {
    return when(String(id).split("-")[0]);
  }

  function age(seconds) {
    if (seconds === undefined || seconds === null) return "–";
    let s = Math.max(0, Math.round(Number(seconds)));
    const parts = [];
    for (const [unit, size] of [["d", 86400], ["h", 3600], ["m", 60]]) {
      if (s >= size) {
        parts.push(Math.floor(s / size) + unit);
        s %= size;
      }
    }
    if (parts.length < 2) parts.push(s + "s");
    return parts.slice(0, 2).join(" ");
  }

  function list(text) {
    return String(text || "").split(",").map((s) => s.trim()).filter(Boolean);
  }

  // ---- sign-in and access ------------------------------------------------------------

  async function signIn(token) {
    state.token = token;
    try {
      await api("GET", "/status");
    } catch (e) {
      state.token = null;
      $("signin-error").textContent =
        e.status === 401 ? "That token is not accepted." : "Cannot reach the API: " + e.message;
      return;
    }
    sessionStorage.setItem(TOKEN_KEY, token);
    $("signin-error").textContent = "";
    await probeWrite();
    show(true);
    start();
  }

  // The read token is told apart by a write that changes nothing: a dry-run reprocess of no
  // IDs. 403 means read-only; anything else (200, 400) means writes are allowed.
  async function probeWrite() {
    state.canWrite = true;
    try {
      await api("POST", "/dlq/reprocess", { ids: [], dryRun: true });
    } catch (e) {
      if (e.status === 403) setReadOnly();
    }
    if (state.canWrite) $("who").textContent = "admin";
  }

  function setReadOnly() {
    state.canWrite = false;
    document.body.classList.add("read-only");
    $("who").textContent = "read-only token: writes are disabled";
    for (const b of document.querySelectorAll(".write")) {
      b.disabled = true;
      b.hidden = true;
    }
  }

  function show(signedIn) {
    $("signin").hidden = signedIn;
    $("app").hidden = !signedIn;
    $("nav").hidden = !signedIn;
    $("sign-out").hidden = !signedIn;
    if (!signedIn) $("token").focus();
  }

  function signOut(message) {
    sessionStorage.removeItem(TOKEN_KEY);
    state.token = null;
    for (const t of state.timers) clearInterval(t);
    state.timers = [];
    show(false);
    $("signin-error").textContent = message || "";
  }

  function every(ms, fn) {
    let busy = false;
    const tick = async () => {
      if (busy || !state.token) return;
      busy = true;
      try {
        await fn();
      } catch (e) {
        fail(e);
      } finally {
        busy = false;
      }
    };
    tick();
    state.timers.push(setInterval(tick, ms));
  }

  function start() {
    every(OVERVIEW_EVERY_MS, refreshOverview);
    every(LISTS_EVERY_MS, refreshDlq);
    every(LISTS_EVERY_MS, refreshEvents);
    if (state.job) watchJob(state.job);
  }

  // ---- overview ----------------------------------------------------------------------

  async function refreshOverview() {
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
    for (const [name, entry] of state.pools) {
      if (!names.includes(name)) {
        entry.row.remove();
        state.pools.delete(name);
      }
    }
    if (names.join("\n") !== state.poolNames.join("\n")) {
      state.poolNames = names;
      fillPoolSelect($("dlq-filter").elements.pool, names);
      fillPoolSelect($("replay-form").elements.group, names);
    }
  }

  function renderWarnings(warnings) {
    const ul = $("warnings");
    const text = warnings.join("\n");
    if (ul.dataset.text === text) return;
    ul.dataset.text = text;
    ul.replaceChildren(...warnings.map((w) => el("li", w)));
  }

  function fillPoolSelect(select, names) {
    const current = select.value;
    const first = select.options[0];
    select.replaceChildren(first, ...names.map((n) => el("option", n)));
    select.value = names.includes(current) ? current : "";
  }

  function poolRow(name) {
    let entry = state.pools.get(name);
    if (entry) return entry;
    const row = $("pool-row").content.firstElementChild.cloneNode(true);
    row.dataset.pool = name;
    const c = cells(row);
    c.name.textContent = name;
    const chart = sparkline();
    c.chart.appendChild(chart.svg);
    row.querySelector('[data-test="pause"]').addEventListener("click", () => poolAction(name, "pause"));
    row.querySelector('[data-test="resume"]').addEventListener("click", () => poolAction(name, "resume"));
    if (!state.canWrite) {
      for (const b of row.querySelectorAll(".write")) {
        b.disabled = true;
        b.hidden = true;
      }
    }
    $("pool-rows").appendChild(row);
    entry = { row, cells: c, chart };
    state.pools.set(name, entry);
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

  function renderPool(pool, inFlight, series, history) {
    const { row, cells: c, chart } = poolRow(pool.name);
    const paused = !!pool.paused;
    setText(c.state, paused ? "paused" : "running");
    c.state.dataset.state = paused ? "paused" : "running";
    setText(c.concurrency, concurrency(pool.concurrency));
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
    if (state.canWrite) {
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
      await refreshOverview();
    } catch (e) {
      fail(e);
    }
  }

  // ---- history: processed and failed per interval -----------------------------------

  // Reads `GET /stats/history` into name -> [{at, processed, failed}], oldest first.
  function historyByPool(history) {
    const out = new Map();
    if (!history) return out;
    const pools = history.pools || [];
    const entries = Array.isArray(pools)
      ? pools.map((p) => [p.name || p.pool, p.points || p.buckets || p.history || p.intervals || []])
      : Object.entries(pools);
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

  // ---- dead letters ------------------------------------------------------------------

  function dlqFilter() {
    const f = $("dlq-filter").elements;
    return {
      type: list(f.type.value).join(","),
      reason: f.reason.value,
      pool: f.pool.value,
      since: f.since.value.trim(),
      until: f.until.value.trim(),
      grep: f.grep.value,
    };
  }

  async function refreshDlq() {
    const d = state.dlq;
    const cursor = d.cursors[d.page];
    const page = await api("GET", "/dlq" + query({ ...d.filter, limit: DLQ_PAGE, cursor }));
    const entries = page.entries || [];
    d.next = page.next || null;
    renderDlqRows(entries);
    $("dlq-empty").hidden = entries.length > 0;
    $("dlq-prev").disabled = d.page === 0;
    $("dlq-first").disabled = d.page === 0;
    $("dlq-next").disabled = !d.next;
    setText($("dlq-page"), "Page " + (d.page + 1) + ", " + entries.length + " shown");
  }

  function renderDlqRows(entries) {
    const d = state.dlq;
    const tbody = $("dlq-rows");
    const seen = new Set();
    let previous = null;
    for (const entry of entries) {
      seen.add(entry.id);
      let row = d.rows.get(entry.id);
      if (!row) {
        row = dlqRow(entry);
        d.rows.set(entry.id, row);
      }
      const anchor = previous ? previous.nextSibling : tbody.firstChild;
      if (row !== anchor) tbody.insertBefore(row, anchor);
      previous = row;
    }
    for (const [id, row] of d.rows) {
      if (!seen.has(id)) {
        row.remove();
        d.rows.delete(id);
        d.selected.delete(id);
      }
    }
    selectionChanged();
  }

  function dlqRow(entry) {
    const row = $("dlq-row").content.firstElementChild.cloneNode(true);
    row.dataset.id = entry.id;
    const c = cells(row);
    c.id.textContent = entry.id;
    c.failedAt.textContent = entry.failedAt ? when(entry.failedAt) : idTime(entry.id);
    c.type.textContent = entry.type;
    c.reason.textContent = entry.reason;
    c.group.textContent = entry.group;
    c.attempts.textContent = entry.attempts;
    c.error.textContent = entry.error;
    c.error.title = entry.error;
    const box = row.querySelector('[data-test="dlq-select"]');
    box.setAttribute("aria-label", "Select " + entry.id);
    box.checked = state.dlq.selected.has(entry.id);
    box.addEventListener("change", () => {
      if (box.checked) state.dlq.selected.add(entry.id);
      else state.dlq.selected.delete(entry.id);
      selectionChanged();
    });
    c.id.addEventListener("click", () => openDetail(entry.id));
    return row;
  }

  function selectionChanged() {
    const n = state.dlq.selected.size;
    $("reprocess-selected").disabled = !state.canWrite || n === 0;
    $("forget-selected").disabled = !state.canWrite || n === 0;
    setText($("dlq-count"), n ? n + " selected" : "");
    const shown = state.dlq.rows.size;
    $("dlq-all").checked = shown > 0 && n === shown;
  }

  function applyFilter(resetPage) {
    const d = state.dlq;
    d.filter = dlqFilter();
    if (resetPage) {
      d.cursors = [null];
      d.page = 0;
      d.selected.clear();
    }
    return refreshDlq().catch(fail);
  }

  async function reprocessIds(ids) {
    const r = await api("POST", "/dlq/reprocess", { ids });
    notice("Reprocessed " + (r.moved !== undefined ? r.moved : ids.length) + " dead letter(s).");
  }

  async function forgetIds(ids) {
    let done = 0;
    for (const id of ids) {
      await api("DELETE", "/dlq/" + encodeURIComponent(id));
      done += 1;
    }
    notice("Forgot " + done + " dead letter(s).");
  }

  async function onSelected(action, only) {
    const ids = only || [...state.dlq.selected];
    if (!ids.length) return;
    try {
      await action(ids);
      for (const id of ids) state.dlq.selected.delete(id);
      if (ids.includes(state.detailId)) closeDetail();
    } catch (e) {
      fail(e);
    }
    await Promise.all([refreshDlq(), refreshOverview()]).catch(fail);
  }

  // The filter as a reprocess body; no filter at all means every dead letter. The API's
  // reprocess filter has no text search, so with one the matching IDs are listed first.
  async function reprocessBody() {
    const f = state.dlq.filter;
    if (f.grep) return { ids: await matchingIds(f) };
    const body = {};
    if (f.type) body.types = list(f.type);
    for (const k of ["reason", "since", "until", "pool"]) if (f[k]) body[k] = f[k];
    return Object.keys(body).length ? body : { all: true };
  }

  async function matchingIds(filter) {
    const ids = [];
    let cursor = null;
    do {
      const page = await api("GET", "/dlq" + query({ ...filter, limit: 1000, cursor }));
      for (const e of page.entries || []) ids.push(e.id);
      cursor = page.next || null;
    } while (cursor && ids.length < MAX_IDS);
    if (cursor) throw new Error("More than " + MAX_IDS + " dead letters match; narrow the filter.");
    return ids;
  }

  async function reprocessMatching() {
    try {
      const body = await reprocessBody();
      if (body.ids && !body.ids.length) {
        notice("No dead letters match this filter.");
        return;
      }
      const dry = body.ids ? { matched: body.ids.length } : await api("POST", "/dlq/reprocess", { ...body, dryRun: true });
      const n = dry.matched !== undefined ? dry.matched : dry.moved;
      const byType = Object.entries(dry.byType || {})
        .filter(([t]) => t)
        .map(([t, c]) => t + ": " + c)
        .join(", ");
      askConfirm(
        { body },
        n + " dead letter(s) match this filter" + (byType ? " (" + byType + ")" : "") + ". Reprocess them all?",
        "Yes, reprocess them",
        n === 0,
      );
    } catch (e) {
      fail(e);
    }
  }

  // One confirmation step for every irreversible or wide action: `pending` says what runs
  // on "yes" ({ body } reprocesses a filter, { forget, fromDetail } forgets those IDs).
  function askConfirm(pending, text, yes, nothing) {
    state.pendingConfirm = pending;
    $("confirm-text").textContent = text;
    $("confirm-yes").textContent = yes;
    $("confirm-yes").disabled = !!nothing;
    $("confirm").hidden = false;
    $("confirm-no").focus();
  }

  // Forgetting deletes for good: it runs only after the operator confirms.
  function askForget(ids, fromDetail) {
    if (!ids.length) return;
    const named = ids.slice(0, 5).join(", ") + (ids.length > 5 ? ", …" : "");
    askConfirm(
      { forget: ids, fromDetail },
      "Forget " + ids.length + " dead letter(s) for good (" + named + ")? This cannot be undone.",
      "Yes, forget them",
    );
  }

  async function confirmYes() {
    const pending = state.pendingConfirm;
    $("confirm").hidden = true;
    state.pendingConfirm = null;
    if (!pending) return;
    if (pending.forget) {
      if (pending.fromDetail) await onSelectedIds(pending.forget, forgetIds);
      else await onSelected(forgetIds, pending.forget);
      return;
    }
    const body = pending.body;
    try {
      const r = await api("POST", "/dlq/reprocess", body);
      notice("Reprocessed " + r.moved + " dead letter(s) matching the filter.");
    } catch (e) {
      fail(e);
    }
    state.dlq.selected.clear();
    await Promise.all([refreshDlq(), refreshOverview()]).catch(fail);
  }

  async function openDetail(id) {
    try {
      const d = await api("GET", "/dlq/" + encodeURIComponent(id));
      state.detailId = id;
      $("detail-id").textContent = id;
      $("detail-error").textContent = d.error || "";
      $("detail-data").textContent = pretty((d.fields || {}).data);
      const dl = $("detail-fields");
      const items = [];
      for (const [k, v] of Object.entries(d.fields || {})) items.push(el("dt", k, "mono"), el("dd", v));
      dl.replaceChildren(...items);
      $("dlq-detail").hidden = false;
      $("detail-close").focus();
    } catch (e) {
      fail(e);
    }
  }

  function closeDetail() {
    state.detailId = null;
    $("dlq-detail").hidden = true;
  }

  function pretty(data) {
    if (data === undefined) return "(no data field)";
    try {
      return JSON.stringify(JSON.parse(data), null, 2);
    } catch (_) {
      return String(data);
    }
  }

  // ---- replay ------------------------------------------------------------------------

  async function startReplay(form) {
    const f = form.elements;
    // An empty "until" is now by the engine's clock ("-0s"), not the browser's.
    const body = { since: f.since.value.trim(), until: f.until.value.trim() || "-0s" };
    const types = list(f.types.value);
    if (types.length) body.types = types;
    if (f.group.value) body.group = f.group.value;
    if (f.rate.value.trim()) body.rate = Number(f.rate.value);
    if (f.limit.value.trim()) body.limit = Number(f.limit.value);
    if (f.dryRun.checked) body.dryRun = true;
    try {
      const r = await api("POST", "/replay", body);
      notice("Replay " + r.job + " started.");
      watchJob(r.job);
    } catch (e) {
      fail(e);
    }
  }

  function watchJob(job) {
    state.job = job;
    sessionStorage.setItem(JOB_KEY, job);
    $("replay-job").hidden = false;
    $("replay-id").textContent = job;
    if (state.replayTimer) clearInterval(state.replayTimer);
    const tick = async () => {
      try {
        const p = await api("GET", "/replay/" + encodeURIComponent(job));
        renderProgress(p);
        if (p.status !== "running" && state.replayTimer) {
          clearInterval(state.replayTimer);
          state.replayTimer = null;
        }
      } catch (e) {
        if (e.status === 404) forgetJob();
        fail(e);
      }
    };
    tick();
    state.replayTimer = setInterval(tick, REPLAY_EVERY_MS);
    state.timers.push(state.replayTimer);
  }

  function forgetJob() {
    if (state.replayTimer) clearInterval(state.replayTimer);
    state.replayTimer = null;
    state.job = null;
    sessionStorage.removeItem(JOB_KEY);
  }

  function renderProgress(p) {
    const published = Number(p.published || 0);
    const matched = Number(p.matched || 0);
    const done = p.status === "done";
    const bar = $("replay-bar");
    bar.max = Math.max(1, matched);
    bar.value = done ? bar.max : published;
    setText(
      $("replay-progress"),
      (p.status || "unknown") + ": published " + published + " of " + matched + " matched (" + Number(p.scanned || 0) + " scanned)",
    );
    $("replay-progress").dataset.status = p.status || "";
    if (state.canWrite) {
      $("replay-cancel").hidden = p.status !== "running";
      $("replay-resume").hidden = done || p.status === "running";
    }
  }

  async function cancelReplay() {
    if (!state.job) return;
    try {
      await api("DELETE", "/replay/" + encodeURIComponent(state.job));
      notice("Replay " + state.job + " cancelled; it can be resumed.");
      watchJob(state.job);
    } catch (e) {
      fail(e);
    }
  }

  async function resumeReplay() {
    if (!state.job) return;
    try {
      await api("POST", "/replay/" + encodeURIComponent(state.job) + "/resume");
      watchJob(state.job);
    } catch (e) {
      fail(e);
    }
  }

  // ---- recent events -----------------------------------------------------------------

  async function refreshEvents() {
    const type = $("events-filter").elements.type.value.trim();
    const page = await api("GET", "/events" + query({ type, limit: 50 }));
    const entries = page.entries || [];
    const key = entries.map((e) => e.id).join(",");
    const tbody = $("event-rows");
    if (tbody.dataset.key === key) return;
    tbody.dataset.key = key;
    tbody.replaceChildren(...entries.map(eventRow));
    const counts = new Map();
    for (const e of entries) counts.set(e.type, (counts.get(e.type) || 0) + 1);
    $("event-types").replaceChildren(
      ...[...counts].sort((a, b) => b[1] - a[1]).map(([t, n]) => typeChip(t, n)),
    );
  }

  function eventRow(entry) {
    const row = el("tr");
    row.dataset.test = "event-row";
    row.dataset.id = entry.id;
    const fields = Object.entries(entry.fields || {})
      .filter(([k]) => k !== "type")
      .map(([k, v]) => k + "=" + v)
      .join("  ");
    row.append(el("td", entry.id, "mono"), el("td", idTime(entry.id), "mono"), el("td", entry.type, "mono"), el("td", fields, "clip mono"));
    return row;
  }

  function typeChip(type, n) {
    const li = el("li");
    const b = el("button", (type || "(none)") + " · " + n, "chip");
    b.type = "button";
    b.addEventListener("click", () => {
      $("events-filter").elements.type.value = type;
      refreshEvents().catch(fail);
    });
    li.appendChild(b);
    return li;
  }

  // ---- wiring ------------------------------------------------------------------------

  function wire() {
    $("signin-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const token = $("token").value.trim();
      if (token) signIn(token);
    });
    $("sign-out").addEventListener("click", () => signOut("Signed out."));
    $("dlq-filter").addEventListener("submit", (ev) => {
      ev.preventDefault();
      applyFilter(true);
    });
    $("dlq-clear").addEventListener("click", () => {
      $("dlq-filter").reset();
      applyFilter(true);
    });
    $("dlq-next").addEventListener("click", () => {
      const d = state.dlq;
      if (!d.next) return;
      d.cursors[d.page + 1] = d.next;
      d.page += 1;
      refreshDlq().catch(fail);
    });
    $("dlq-prev").addEventListener("click", () => {
      state.dlq.page = Math.max(0, state.dlq.page - 1);
      refreshDlq().catch(fail);
    });
    $("dlq-first").addEventListener("click", () => {
      state.dlq.page = 0;
      refreshDlq().catch(fail);
    });
    $("dlq-all").addEventListener("change", (ev) => {
      for (const [id, row] of state.dlq.rows) {
        row.querySelector('[data-test="dlq-select"]').checked = ev.target.checked;
        if (ev.target.checked) state.dlq.selected.add(id);
        else state.dlq.selected.delete(id);
      }
      selectionChanged();
    });
    $("reprocess-selected").addEventListener("click", () => onSelected(reprocessIds));
    $("forget-selected").addEventListener("click", () => askForget([...state.dlq.selected], false));
    $("reprocess-matching").addEventListener("click", reprocessMatching);
    $("confirm-yes").addEventListener("click", confirmYes);
    $("confirm-no").addEventListener("click", () => {
      $("confirm").hidden = true;
      state.pendingConfirm = null;
    });
    $("detail-close").addEventListener("click", closeDetail);
    $("detail-reprocess").addEventListener("click", () => {
      const id = state.detailId;
      if (id) onSelectedIds([id], reprocessIds);
    });
    $("detail-forget").addEventListener("click", () => {
      const id = state.detailId;
      if (id) askForget([id], true);
    });
    $("replay-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      startReplay(ev.target);
    });
    $("replay-cancel").addEventListener("click", cancelReplay);
    $("replay-resume").addEventListener("click", resumeReplay);
    $("events-filter").addEventListener("submit", (ev) => {
      ev.preventDefault();
      refreshEvents().catch(fail);
    });
    document.addEventListener("keydown", (ev) => {
      if (ev.key === "Escape") {
        if (!$("confirm").hidden) $("confirm-no").click();
        else if (!$("dlq-detail").hidden) closeDetail();
      }
    });
  }

  async function onSelectedIds(ids, action) {
    try {
      await action(ids);
      closeDetail();
    } catch (e) {
      fail(e);
    }
    await Promise.all([refreshDlq(), refreshOverview()]).catch(fail);
  }

  function boot() {
    wire();
    if (state.token) signIn(state.token);
    else show(false);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", boot);
  else boot();
})();
