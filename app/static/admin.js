// Facilitator console: the mode, the knobs, their history, over the admin JSON API.
// The token lives in sessionStorage (this tab only) and travels in the Authorization
// header, never in a URL. Every action shows the server's answer, errors included.
import { $, api, clock, minutesSeconds } from "./common.js";

const TOKEN_KEY = "paygate.adminToken";
const POLL_MS = 2000;

let revertDeadline = null; // client time (ms) when the mode reverts, from revert_in_seconds
let knobsBuilt = false;

// -- the token -----------------------------------------------------------------

const token = () => sessionStorage.getItem(TOKEN_KEY) || "";

function showTokenState() {
  $("token-state").textContent = token()
    ? "A token is set for this tab. The server checks it on every change."
    : "No token set: you can look, but every change will be refused.";
}

$("token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const value = $("token").value.trim();
  if (value) sessionStorage.setItem(TOKEN_KEY, value);
  $("token").value = "";
  showTokenState();
});

$("forget-token").addEventListener("click", () => {
  sessionStorage.removeItem(TOKEN_KEY);
  showTokenState();
});

// -- talking to the server -------------------------------------------------------

/** A change: sent with the token, and the server's answer shown; resolves to the answer's data, or null. */
async function change(action, method, path, body) {
  const res = await api(method, path, { body, token: token() });
  const ok = report(action, res);
  refreshHistory();
  return ok ? res.data : null;
}

/** Show what the server said about an action, in words and as JSON; true when it was done. */
function report(action, { status, data }) {
  const ok = status >= 200 && status < 300;
  let text;
  if (ok) {
    text = `${action}: done (HTTP ${status}).`;
  } else if (status === 401) {
    text = `${action} refused (HTTP 401): the admin token is wrong or missing. Nothing was changed.`;
  } else if (status === 0) {
    text = `${action} failed: the app could not be reached.`;
  } else {
    text = `${action} refused (HTTP ${status}): ${data.message || data.error || "error"}.`;
  }
  $("answer-title").textContent = text;
  $("answer-title").className = `answer-title ${ok ? "ok" : "bad"}`;
  $("answer").textContent = JSON.stringify(data, null, 2);
  $("answer").className = `answer ${ok ? "answer-ok" : "answer-bad"}`;
  $("answer").hidden = false;
  return ok;
}

/** GET a public admin read; the data, or null when it failed. */
async function read(path) {
  const { status, data } = await api("GET", path);
  return status === 200 ? data : null;
}

// -- the mode ------------------------------------------------------------------

function ago(epochSeconds) {
  const s = Math.max(0, Math.round(Date.now() / 1000 - epochSeconds));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s ago`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min ago`;
}

function renderMode(state) {
  const now = $("mode-now");
  now.textContent = state.mode;
  now.className = `mode-now mode-${state.mode}`;
  $("mode-since").textContent = state.since
    ? `since ${clock(state.since)} (${ago(state.since)}), set by ${state.actor}`
    : "since start-up (default)";
  revertDeadline = state.revert_in_seconds === null ? null : Date.now() + state.revert_in_seconds * 1000;
  renderRevert();
  for (const button of document.querySelectorAll("[data-mode]")) {
    button.setAttribute("aria-pressed", String(button.dataset.mode === state.mode));
  }
}

function renderRevert() {
  if (revertDeadline === null) {
    $("mode-revert").textContent = "No auto-revert.";
    return;
  }
  const left = Math.max(0, Math.round((revertDeadline - Date.now()) / 1000));
  $("mode-revert").textContent = `Reverts to original in ${minutesSeconds(left)}.`;
}

async function refreshMode() {
  const state = await read("/admin/db-mode");
  if (state) renderMode(state);
}

for (const button of document.querySelectorAll("[data-mode]")) {
  button.addEventListener("click", async () => {
    const body = { mode: button.dataset.mode };
    const ttl = $("ttl").value.trim();
    // Sent as typed: the server validates it and says what is wrong.
    if (ttl) body.ttl_seconds = /^[0-9]+$/.test(ttl) ? Number(ttl) : ttl;
    const state = await change(`Switch to ${body.mode}`, "PUT", "/admin/db-mode", body);
    if (state) renderMode(state);
  });
}

// -- the knobs -----------------------------------------------------------------

function knobField(name, info) {
  const field = document.createElement("div");
  field.className = "field";
  const input = document.createElement("input");
  input.id = `knob-${name}`;
  input.dataset.knob = name;
  const label = document.createElement("label");
  label.htmlFor = input.id;
  const hint = document.createElement("p");
  hint.className = "limits";
  hint.id = `${input.id}-limits`;
  input.setAttribute("aria-describedby", hint.id);
  const fallback = info.defaults[name];
  if (typeof fallback === "boolean") {
    input.type = "checkbox";
    label.className = "checkbox";
    label.append(input, name);
    field.append(label);
    hint.textContent = `default ${fallback}`;
  } else {
    const limit = info.limits[name] || {};
    Object.assign(input, { type: "number", inputMode: "numeric", step: "1" });
    if (limit.min !== undefined) input.min = limit.min;
    if (limit.max !== undefined) input.max = limit.max;
    label.textContent = name;
    field.append(label, input);
    hint.textContent = `default ${fallback} · limits ${limit.min}–${limit.max}`;
  }
  field.append(hint);
  return field;
}

function fillKnobs(knobs) {
  for (const input of document.querySelectorAll("[data-knob]")) {
    const value = knobs[input.dataset.knob];
    if (input.type === "checkbox") input.checked = value;
    else input.value = value;
    input.dataset.current = String(value);
  }
}

async function refreshKnobs() {
  const info = await read("/admin/knobs");
  if (!info) return;
  if (!knobsBuilt) {
    $("knobs-fields").replaceChildren(...Object.keys(info.knobs).map((name) => knobField(name, info)));
    knobsBuilt = true;
  }
  fillKnobs(info.knobs);
}

$("knobs-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const changes = {};
  for (const input of document.querySelectorAll("[data-knob]")) {
    const value = input.type === "checkbox" ? input.checked : input.value.trim();
    if (String(value) === input.dataset.current) continue;
    // Whole numbers go as numbers; anything else as typed, for the server to judge.
    changes[input.dataset.knob] = typeof value === "boolean" || !/^-?[0-9]+$/.test(value) ? value : Number(value);
  }
  if (!Object.keys(changes).length) {
    report("Apply knobs", { status: 200, data: { message: "Nothing changed: no request sent." } });
    return;
  }
  const info = await change("Apply knobs", "PATCH", "/admin/knobs", changes);
  if (info) fillKnobs(info.knobs);
});

// -- reset -----------------------------------------------------------------------

$("reset-button").addEventListener("click", async () => {
  if (!confirm("Reset everything: mode original and default knobs?")) return;
  const state = await change("Reset everything", "POST", "/admin/reset");
  if (state) {
    renderMode(state);
    fillKnobs(state.knobs);
  }
});

// -- history -----------------------------------------------------------------------

function describe(value) {
  if (value === null || value === undefined) return "—";
  if (typeof value !== "object") return String(value);
  return Object.entries(value).map(([k, v]) => `${k}=${v}`).join(", ");
}

function renderHistory(events) {
  const body = $("history-body");
  body.textContent = "";
  if (!events.length) {
    const cell = body.insertRow().insertCell();
    cell.colSpan = 4;
    cell.className = "muted";
    cell.textContent = "No changes yet.";
    return;
  }
  for (const e of events) {
    const row = body.insertRow();
    let what = `${describe(e.from)} → ${describe(e.to)}`;
    if (e.ttl_seconds) what += ` (reverts after ${e.ttl_seconds} s)`;
    for (const text of [clock(e.at), e.actor, e.kind, what]) row.insertCell().textContent = text;
  }
}

async function refreshHistory() {
  const history = await read("/admin/history");
  if (history) renderHistory(history.events || []);
}

// -- start -------------------------------------------------------------------------

showTokenState();
refreshMode();
refreshKnobs();
refreshHistory();
setInterval(() => { refreshMode(); refreshHistory(); }, POLL_MS);
setInterval(renderRevert, 1000);
