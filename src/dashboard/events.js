// Recent events: the newest 50 entries of the main stream (optionally of one type), and
// counts by type among them (a click filters by that type).

import { $, api, el, fail, idTime, query } from "./shared.js";

async function refresh() {
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
  $("event-types").replaceChildren(...[...counts].sort((a, b) => b[1] - a[1]).map(([t, n]) => typeChip(t, n)));
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
    refresh().catch(fail);
  });
  li.appendChild(b);
  return li;
}

function wire() {
  $("events-filter").addEventListener("submit", (ev) => {
    ev.preventDefault();
    refresh().catch(fail);
  });
}

export default { id: "events", every: 5000, wire, refresh };
