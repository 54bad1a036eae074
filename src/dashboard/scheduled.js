// Delayed events (publish --delay/--at, POST /api/v1/scheduled): how many wait, how late the
// most overdue is, the next ones due with their fields, and cancel for the admin token.

import { $, api, el, emit, fail, hideWrites, notice, session, setText } from "./shared.js";

// How many of the soonest events the table shows.
const SHOWN = 20;

async function refresh() {
  const [status, page] = await Promise.all([
    api("GET", "/status"),
    api("GET", "/scheduled?limit=" + SHOWN),
  ]);
  setText($("scheduled-count"), status.scheduled);
  const late = status.scheduledOverdueSeconds || 0;
  setText($("scheduled-overdue"), late >= 1 ? late.toFixed(1) + " s overdue" : "on time");
  $("scheduled-overdue").classList.toggle("error", late >= 60);
  const entries = page.entries || [];
  const key = JSON.stringify(entries);
  const tbody = $("scheduled-rows");
  if (tbody.dataset.key === key) return;
  tbody.dataset.key = key;
  tbody.replaceChildren(...entries.map(scheduledRow));
  $("scheduled-empty").hidden = entries.length > 0;
}

function scheduledRow(e) {
  const row = el("tr");
  row.dataset.test = "scheduled-row";
  row.dataset.id = e.id;
  const fields = Object.entries(e.fields || {})
    .filter(([k]) => k !== "type" && k !== "id")
    .map(([k, v]) => k + "=" + v)
    .join("  ");
  row.append(
    el("td", e.dueAt, "mono"),
    el("td", e.id || "(no id)", "mono"),
    el("td", e.type, "mono"),
    el("td", fields, "mono clip"),
    actions(e),
  );
  return row;
}

function actions(e) {
  const td = el("td");
  const b = el("button", "Cancel", "write");
  b.type = "button";
  b.dataset.test = "scheduled-cancel";
  // An event added by hand without an id cannot be named: redis-cli ZREM it.
  b.disabled = !e.id;
  b.addEventListener("click", () => cancel(e.id));
  td.append(b);
  if (!session.canWrite) hideWrites(td);
  return td;
}

async function cancel(id) {
  if (!window.confirm("Cancel the delayed event " + id + "? It will not be delivered.")) return;
  try {
    const done = await api("DELETE", "/scheduled/" + encodeURIComponent(id));
    notice("Cancelled " + done.cancelled + " delayed event(s) with id " + id + ".");
    await emit("changed");
  } catch (e) {
    fail(e);
  }
}

export default { id: "scheduled", every: 5000, refresh };
