// Recurring schedules ([[schedules]]): one row per schedule with its timetable, last and next
// tick (by Redis's clock) and state; pause and resume for the admin token.

import { $, api, el, fail, hideWrites, notice, session } from "./shared.js";

async function refresh() {
  const page = await api("GET", "/schedules");
  const schedules = page.schedules || [];
  const key = JSON.stringify(schedules);
  const tbody = $("schedule-rows");
  if (tbody.dataset.key === key) return;
  tbody.dataset.key = key;
  tbody.replaceChildren(...schedules.map(scheduleRow));
  $("schedules-empty").hidden = schedules.length > 0;
}

function scheduleRow(s) {
  const row = el("tr");
  row.dataset.test = "schedule-row";
  row.dataset.schedule = s.name;
  const state = el("td", s.paused ? "paused" : "running");
  state.dataset.state = s.paused ? "paused" : "running";
  state.dataset.test = "schedule-state";
  const timetable = s.timetable + (s.timezone && s.timezone !== "UTC" ? " (" + s.timezone + ")" : "");
  row.append(
    el("td", s.name, "mono"),
    el("td", timetable, "mono"),
    el("td", s.type, "mono"),
    el("td", s.lastTick || "never", "mono"),
    el("td", s.nextTick || "–", "mono"),
    state,
    actions(s),
  );
  return row;
}

function actions(s) {
  const td = el("td");
  for (const action of ["pause", "resume"]) {
    const b = el("button", action === "pause" ? "Pause" : "Resume", "write");
    b.type = "button";
    b.dataset.test = "schedule-" + action;
    b.disabled = action === "pause" ? s.paused : !s.paused;
    b.addEventListener("click", () => act(s.name, action));
    td.append(b);
  }
  if (!session.canWrite) hideWrites(td);
  return td;
}

async function act(name, action) {
  try {
    await api("POST", "/schedules/" + encodeURIComponent(name) + "/" + action);
    notice("Schedule " + name + ": " + (action === "pause" ? "paused" : "resumed") + ".");
    await refresh();
  } catch (e) {
    fail(e);
  }
}

export default { id: "schedules", every: 5000, refresh };
