// Replay: the form (as `weir replay`'s flags), then the job's live progress, Cancel and
// Resume. The job being watched survives a reload (sessionStorage).

import { $, api, fail, fillSelect, list, notice, on, session, setText, wholeNumber } from "./shared.js";

const JOB_KEY = "weir.replayJob";
const EVERY_MS = 700;

let job = sessionStorage.getItem(JOB_KEY);
let timer = null;

// The form as the API's body, or null when a field is refused (the field says why).
function readForm(form) {
  const f = form.elements;
  // An empty "until" is now by the engine's clock ("-0s"), not the browser's.
  const body = { since: f.since.value.trim(), until: f.until.value.trim() || "-0s" };
  const types = list(f.types.value);
  if (types.length) body.types = types;
  if (f.group.value) body.group = f.group.value;
  const rate = wholeNumber(f.rate, "Rate", { min: 1, empty: "unlimited" });
  const limit = wholeNumber(f.limit, "Limit", { empty: "none" });
  if (!rate || !limit) return null;
  if (rate.value !== undefined) body.rate = rate.value;
  if (limit.value !== undefined) body.limit = limit.value;
  if (f.dryRun.checked) body.dryRun = true;
  return body;
}

async function start(form) {
  const body = readForm(form);
  if (!body) {
    notice("The replay was not started: correct the marked field.", true);
    form.querySelector('[aria-invalid="true"]').focus();
    return;
  }
  try {
    const r = await api("POST", "/replay", body);
    notice("Replay " + r.job + " started.");
    watch(r.job);
  } catch (e) {
    fail(e);
  }
}

function stopTimer() {
  if (timer) clearInterval(timer);
  timer = null;
}

function watch(id) {
  job = id;
  sessionStorage.setItem(JOB_KEY, id);
  $("replay-job").hidden = false;
  $("replay-id").textContent = id;
  stopTimer();
  const tick = async () => {
    try {
      const p = await api("GET", "/replay/" + encodeURIComponent(id));
      render(p);
      if (p.status !== "running") stopTimer();
    } catch (e) {
      if (e.status === 404) forget();
      fail(e);
    }
  };
  tick();
  timer = setInterval(tick, EVERY_MS);
}

function forget() {
  stopTimer();
  job = null;
  sessionStorage.removeItem(JOB_KEY);
}

function render(p) {
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
  if (session.canWrite) {
    $("replay-cancel").hidden = p.status !== "running";
    $("replay-resume").hidden = done || p.status === "running";
  }
}

async function cancel() {
  if (!job) return;
  try {
    await api("DELETE", "/replay/" + encodeURIComponent(job));
    notice("Replay " + job + " cancelled; it can be resumed.");
    watch(job);
  } catch (e) {
    fail(e);
  }
}

async function resume() {
  if (!job) return;
  try {
    await api("POST", "/replay/" + encodeURIComponent(job) + "/resume");
    watch(job);
  } catch (e) {
    fail(e);
  }
}

function wire() {
  on("pools", (names) => fillSelect($("replay-form").elements.group, names));
  $("replay-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    start(ev.target);
  });
  $("replay-cancel").addEventListener("click", cancel);
  $("replay-resume").addEventListener("click", resume);
}

export default {
  id: "replay",
  wire,
  // At sign-in: carry on watching the job of before a reload.
  start: () => job && watch(job),
  stop: stopTimer,
};
