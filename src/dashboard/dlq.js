// Dead letters: the filter (type, reason, pool, time, text), paging with the API's cursor,
// one row per letter (`data-id` is the API's id, partition-qualified with partitions), the
// detail panel, and reprocess or forget of the selected rows or of everything matching.
// The reason list is the server's: index.html is served with one <option> per
// `vocab::DlqReason`.

import { $, api, cells, el, emit, fail, fillSelect, idTime, list, notice, on, query, session, setText, when } from "./shared.js";

const PAGE = 50;
const MAX_IDS = 10000; // the API's limit per reprocess call

const d = { filter: {}, cursors: [null], page: 0, next: null, rows: new Map(), selected: new Set() };
let detailId = null;
let pendingConfirm = null;

const changed = () => emit("changed").catch(fail);

function readFilter() {
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

async function refresh() {
  const cursor = d.cursors[d.page];
  const page = await api("GET", "/dlq" + query({ ...d.filter, limit: PAGE, cursor }));
  const entries = page.entries || [];
  d.next = page.next || null;
  renderRows(entries);
  $("dlq-empty").hidden = entries.length > 0;
  $("dlq-prev").disabled = d.page === 0;
  $("dlq-first").disabled = d.page === 0;
  $("dlq-next").disabled = !d.next;
  setText($("dlq-page"), "Page " + (d.page + 1) + ", " + entries.length + " shown");
}

function renderRows(entries) {
  const tbody = $("dlq-rows");
  const seen = new Set();
  let previous = null;
  for (const entry of entries) {
    seen.add(entry.id);
    let row = d.rows.get(entry.id);
    if (!row) {
      row = makeRow(entry);
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

function makeRow(entry) {
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
  box.checked = d.selected.has(entry.id);
  box.addEventListener("change", () => {
    if (box.checked) d.selected.add(entry.id);
    else d.selected.delete(entry.id);
    selectionChanged();
  });
  c.id.addEventListener("click", () => openDetail(entry.id));
  return row;
}

function selectionChanged() {
  const n = d.selected.size;
  $("reprocess-selected").disabled = !session.canWrite || n === 0;
  $("forget-selected").disabled = !session.canWrite || n === 0;
  setText($("dlq-count"), n ? n + " selected" : "");
  const shown = d.rows.size;
  $("dlq-all").checked = shown > 0 && n === shown;
}

function applyFilter(resetPage) {
  d.filter = readFilter();
  if (resetPage) {
    d.cursors = [null];
    d.page = 0;
    d.selected.clear();
  }
  return refresh().catch(fail);
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

// Runs `action` on the selected rows (or `only` these IDs), then refreshes what it changed.
async function onSelected(action, only) {
  const ids = only || [...d.selected];
  if (!ids.length) return;
  try {
    await action(ids);
    for (const id of ids) d.selected.delete(id);
    if (ids.includes(detailId)) closeDetail();
  } catch (e) {
    fail(e);
  }
  await changed();
}

// Runs `action` on the letter of the detail panel.
async function onDetail(ids, action) {
  try {
    await action(ids);
    closeDetail();
  } catch (e) {
    fail(e);
  }
  await changed();
}

// The filter as a reprocess body; no filter at all means every dead letter. The API's
// reprocess filter has no text search, so with one the matching IDs are listed first.
async function reprocessBody() {
  const f = d.filter;
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
  pendingConfirm = pending;
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

function cancelConfirm() {
  $("confirm").hidden = true;
  pendingConfirm = null;
}

async function confirmYes() {
  const pending = pendingConfirm;
  cancelConfirm();
  if (!pending) return;
  if (pending.forget) {
    if (pending.fromDetail) await onDetail(pending.forget, forgetIds);
    else await onSelected(forgetIds, pending.forget);
    return;
  }
  try {
    const r = await api("POST", "/dlq/reprocess", pending.body);
    notice("Reprocessed " + r.moved + " dead letter(s) matching the filter.");
  } catch (e) {
    fail(e);
  }
  d.selected.clear();
  await changed();
}

async function openDetail(id) {
  try {
    const letter = await api("GET", "/dlq/" + encodeURIComponent(id));
    detailId = id;
    $("detail-id").textContent = id;
    $("detail-error").textContent = letter.error || "";
    $("detail-data").textContent = pretty((letter.fields || {}).data);
    const items = [];
    for (const [k, v] of Object.entries(letter.fields || {})) items.push(el("dt", k, "mono"), el("dd", v));
    $("detail-fields").replaceChildren(...items);
    $("dlq-detail").hidden = false;
    $("detail-close").focus();
  } catch (e) {
    fail(e);
  }
}

function closeDetail() {
  detailId = null;
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

function wire() {
  on("pools", (names) => fillSelect($("dlq-filter").elements.pool, names));
  $("dlq-filter").addEventListener("submit", (ev) => {
    ev.preventDefault();
    applyFilter(true);
  });
  $("dlq-clear").addEventListener("click", () => {
    $("dlq-filter").reset();
    applyFilter(true);
  });
  $("dlq-next").addEventListener("click", () => {
    if (!d.next) return;
    d.cursors[d.page + 1] = d.next;
    d.page += 1;
    refresh().catch(fail);
  });
  $("dlq-prev").addEventListener("click", () => {
    d.page = Math.max(0, d.page - 1);
    refresh().catch(fail);
  });
  $("dlq-first").addEventListener("click", () => {
    d.page = 0;
    refresh().catch(fail);
  });
  $("dlq-all").addEventListener("change", (ev) => {
    for (const [id, row] of d.rows) {
      row.querySelector('[data-test="dlq-select"]').checked = ev.target.checked;
      if (ev.target.checked) d.selected.add(id);
      else d.selected.delete(id);
    }
    selectionChanged();
  });
  $("reprocess-selected").addEventListener("click", () => onSelected(reprocessIds));
  $("forget-selected").addEventListener("click", () => askForget([...d.selected], false));
  $("reprocess-matching").addEventListener("click", reprocessMatching);
  $("confirm-yes").addEventListener("click", confirmYes);
  $("confirm-no").addEventListener("click", cancelConfirm);
  $("detail-close").addEventListener("click", closeDetail);
  $("detail-reprocess").addEventListener("click", () => {
    if (detailId) onDetail([detailId], reprocessIds);
  });
  $("detail-forget").addEventListener("click", () => {
    if (detailId) askForget([detailId], true);
  });
  document.addEventListener("keydown", (ev) => {
    if (ev.key !== "Escape") return;
    if (!$("confirm").hidden) cancelConfirm();
    else if (!$("dlq-detail").hidden) closeDetail();
  });
}

export default { id: "dlq", every: 5000, wire, refresh };
