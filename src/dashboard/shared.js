// What every section of the dashboard shares: the session and the API client, a small topic
// bus (sections never import each other), text-only DOM helpers, formatting, and form-field
// parsing that refuses what it cannot read.
//
// Safety rule: every value that comes from Redis (types, fields, errors, pool names) reaches
// the document through textContent or createTextNode, never as markup.

export const TOKEN_KEY = "weir.token";

// Who is signed in: the token, and whether it may write (false once a write answered 403).
export const session = {
  token: sessionStorage.getItem(TOKEN_KEY),
  canWrite: true,
};

// ---- topics between sections --------------------------------------------------------
//
// "pools" (names): the configured pools changed; "changed": a write changed the stream or
// the DLQ, refresh what shows them; "unauthorized" (message): the token was refused.

const listeners = new Map();

export function on(topic, fn) {
  if (!listeners.has(topic)) listeners.set(topic, []);
  listeners.get(topic).push(fn);
}

// Calls every listener of `topic`; resolves when the async ones are done.
export function emit(topic, value) {
  return Promise.all((listeners.get(topic) || []).map((fn) => fn(value)));
}

// ---- API ----------------------------------------------------------------------------

export class ApiError extends Error {
  constructor(status, body) {
    const text = body && body.error ? body.error : "HTTP " + status;
    super(body && body.field ? text + " (" + body.field + ")" : text);
    this.status = status;
  }
}

export async function api(method, path, body) {
  const init = { method, headers: { Authorization: "Bearer " + session.token }, cache: "no-store" };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const res = await fetch("/api/v1" + path, init);
  const json = await res.json().catch(() => null);
  if (res.status === 401) {
    emit("unauthorized", "The token was refused (401). Sign in again.");
    throw new ApiError(401, json);
  }
  if (res.status === 403 && method !== "GET") {
    setReadOnly();
  }
  if (!res.ok) throw new ApiError(res.status, json);
  return json;
}

export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== "") q.set(k, v);
  }
  const s = q.toString();
  return s ? "?" + s : "";
}

// Hides and disables every write control under `root` (the whole page by default).
export function hideWrites(root) {
  for (const b of (root || document).querySelectorAll(".write")) {
    b.disabled = true;
    b.hidden = true;
  }
}

export function setReadOnly() {
  session.canWrite = false;
  document.body.classList.add("read-only");
  $("who").textContent = "read-only token: writes are disabled";
  hideWrites();
}

// ---- DOM helpers (text only) --------------------------------------------------------

export const $ = (id) => document.getElementById(id);

export function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (cls) node.className = cls;
  return node;
}

export function setText(node, value) {
  const text = value === undefined || value === null ? "–" : String(value);
  if (node.textContent !== text) node.textContent = text;
}

// A template's `data-cell` elements by name.
export function cells(root) {
  const map = {};
  for (const node of root.querySelectorAll("[data-cell]")) map[node.dataset.cell] = node;
  return map;
}

export function notice(message, isError) {
  const n = $("notice");
  n.textContent = message || "";
  n.classList.toggle("error", !!isError);
}

export function fail(e) {
  if (e && e.status === 401) return;
  notice(e && e.message ? e.message : String(e), true);
}

// Replaces a <select>'s options after the first ("any") with `names`, keeping the choice.
export function fillSelect(select, names) {
  const current = select.value;
  const first = select.options[0];
  select.replaceChildren(first, ...names.map((n) => el("option", n)));
  select.value = names.includes(current) ? current : "";
}

// ---- form fields ----------------------------------------------------------------------

// The message shown under `input` (a `data-test="<field>-error"` element, made on first
// use); "" hides it.
export function fieldError(input, message) {
  const name = input.dataset.test || input.name;
  let box = input.nextElementSibling;
  if (!box || !box.classList.contains("field-error")) {
    if (!message) return;
    box = el("span", null, "field-error");
    box.id = name + "-error";
    box.dataset.test = name + "-error";
    box.setAttribute("role", "alert");
    input.after(box);
    input.setAttribute("aria-describedby", box.id);
    input.addEventListener("input", () => fieldError(input, ""));
  }
  box.textContent = message;
  box.hidden = !message;
  if (message) input.setAttribute("aria-invalid", "true");
  else input.removeAttribute("aria-invalid");
}

// A whole-number field, e.g. a limit or a rate. Empty is "not set" ({ value: undefined });
// digits are the number; anything else ("1,000", "1.5", "ten", "-3") is refused with a
// message at the field naming it and the value, and the answer is null: garbage never
// reaches the API, where a missing number can mean "unlimited".
export function wholeNumber(input, label, { min = 0, empty = "not set" } = {}) {
  const raw = input.value.trim();
  let problem = "";
  if (raw === "") {
    fieldError(input, "");
    return { value: undefined };
  }
  const shown = JSON.stringify(raw.length > 40 ? raw.slice(0, 40) + "…" : raw);
  if (!/^[0-9]+$/.test(raw)) {
    problem =
      label + ": " + shown + " is not a whole number. Type digits only, without separators or a decimal point (e.g. 1000), or leave it empty for " + empty + ".";
  } else if (!Number.isSafeInteger(Number(raw))) {
    problem = label + ": " + shown + " is too large; at most " + Number.MAX_SAFE_INTEGER + ".";
  } else if (Number(raw) < min) {
    problem = label + ": " + shown + " is too small; at least " + min + ", or leave it empty for " + empty + ".";
  }
  fieldError(input, problem);
  return problem ? null : { value: Number(raw) };
}

// ---- formatting -----------------------------------------------------------------------

// Unix milliseconds of a number, numeric text or date text; null for nothing.
export function ms(v) {
  if (v === undefined || v === null || v === "") return null;
  const n = Number(v);
  return Number.isFinite(n) ? n : Date.parse(v);
}

export function when(v) {
  const t = ms(v);
  if (t === null || !Number.isFinite(t)) return v ? String(v) : "–";
  return new Date(t).toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
}

// The time of a stream entry ID ("1796391658546-0", or qualified "1/1796391658546-0").
export function idTime(id) {
  return when(String(id).split("/").pop().split("-")[0]);
}

export function age(seconds) {
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

// Comma-separated text as a list of its non-empty trimmed items.
export function list(text) {
  return String(text || "").split(",").map((s) => s.trim()).filter(Boolean);
}
