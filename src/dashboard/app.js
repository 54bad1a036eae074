// weir dashboard: a client of the admin API (/api/v1). Native ES modules, no build step;
// the server embeds each file and serves it under /assets/ (src/dashboard/mod.rs).
//
// This module signs in and out and runs the sections. A section is a module whose default
// export is
//   { id,          // the id of its <section> in index.html (its <h2> names the nav link)
//     every,       // optional: ms between refresh() calls while signed in
//     refresh,     // optional async: fetch and render; also run after every write
//     wire,        // optional: once at load, its event listeners
//     start, stop } // optional: at sign-in (after the first refresh is scheduled), at sign-out
// Sections never import each other; they talk through shared.js's topics ("pools",
// "changed"). A new panel: its markup in index.html, one module here, one line in SECTIONS,
// one line in mod.rs's MODULES.
//
// Safety rule: every value that comes from Redis reaches the document as text, never as
// markup; the page loads no third-party code and the Content-Security-Policy forbids inline
// script.

import { $, TOKEN_KEY, api, el, fail, on, session, setReadOnly } from "./shared.js";
import overview from "./overview.js";
import dlq from "./dlq.js";
import replay from "./replay.js";
import events from "./events.js";
import scheduled from "./scheduled.js";
import schedules from "./schedules.js";

const SECTIONS = [overview, dlq, replay, scheduled, schedules, events];

let timers = [];

async function signIn(token) {
  session.token = token;
  try {
    await api("GET", "/status");
  } catch (e) {
    session.token = null;
    $("signin-error").textContent = e.status === 401 ? "That token is not accepted." : "Cannot reach the API: " + e.message;
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
  session.canWrite = true;
  try {
    await api("POST", "/dlq/reprocess", { ids: [], dryRun: true });
  } catch (e) {
    if (e.status === 403) setReadOnly();
  }
  if (session.canWrite) $("who").textContent = "admin";
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
  session.token = null;
  for (const t of timers) clearInterval(t);
  timers = [];
  for (const s of SECTIONS) if (s.stop) s.stop();
  show(false);
  $("signin-error").textContent = message || "";
}

// Runs `fn` now and every `ms`, never twice at once, only while signed in.
function every(ms, fn) {
  let busy = false;
  const tick = async () => {
    if (busy || !session.token) return;
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
  timers.push(setInterval(tick, ms));
}

function start() {
  for (const s of SECTIONS) {
    if (s.every && s.refresh) every(s.every, s.refresh);
    if (s.start) s.start();
  }
}

// After a write: every section shows the new state at once.
function refreshAll() {
  return Promise.all(SECTIONS.filter((s) => s.refresh).map((s) => s.refresh()));
}

function navLinks() {
  return SECTIONS.map((s) => {
    const a = el("a", $(s.id).querySelector("h2").textContent);
    a.href = "#" + s.id;
    return a;
  });
}

function boot() {
  $("nav").replaceChildren(...navLinks());
  $("signin-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const token = $("token").value.trim();
    if (token) signIn(token);
  });
  $("sign-out").addEventListener("click", () => signOut("Signed out."));
  on("unauthorized", signOut);
  on("changed", refreshAll);
  for (const s of SECTIONS) if (s.wire) s.wire();
  if (session.token) signIn(session.token);
  else show(false);
}

boot();
