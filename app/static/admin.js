// Facilitator console: the load phases, the mode, the knobs, their history, over the admin JSON API.
// The token lives in sessionStorage (this tab only) and travels in the Authorization
// header, never in a URL. Every action shows the server's answer, errors included.
import { $, api, clock, minutesSeconds } from "./common.js";

const TOKEN_KEY = "paygate.adminToken";
const POLL_MS = 2000;

let revertDeadline = null; // client time (ms) when the mode reverts, from revert_in_seconds
let knobsBuilt = false;

// -- the token -----------------------------------------------------------------

const token = () => sessionStorage.getItem(TOKEN_KEY) || "";

function showTokenState(text, kind) {
  const state = $("token-state");
  state.textContent = text;
  state.className = `token-state small ${kind || ""}`;
}

/** Ask the server whether `value` is the admin token: "valid", "wrong", or "unknown" (no answer). */
async function checkToken(value) {
  const { status } = await api("GET", "/admin/token", { token: value });
  if (status === 200) return "valid";
  return status === 401 ? "wrong" : "unknown";
}

async function verifyStoredToken() {
  if (!token()) {
    showTokenState("No token set: you can look, but every change will be refused.", "bad");
    return;
  }
  const verdict = await checkToken(token());
  if (verdict === "valid") showTokenState("Token accepted by the server: changes are allowed.", "ok");
  else if (verdict === "wrong") showTokenState("The stored token is refused by the server (HTTP 401): paste the current one (make token prints it).", "bad");
  else showTokenState("A token is set, but the server could not check it now.", "");
}

$("token-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const value = $("token").value.trim();
  if (!value) {
    showTokenState("Paste a token first.", "bad");
    return;
  }
  const verdict = await checkToken(value);
  if (verdict === "wrong") {
    showTokenState("Wrong token: the server refused it (HTTP 401). Not kept; the previous one, if any, stays.", "bad");
    return;
  }
  sessionStorage.setItem(TOKEN_KEY, value);
  $("token").value = "";
  if (verdict === "valid") showTokenState("Token accepted by the server: changes are allowed.", "ok");
  else showTokenState("Token kept, but the server could not check it now: the next change will tell.", "");
});

$("forget-token").addEventListener("click", () => {
  sessionStorage.removeItem(TOKEN_KEY);
  verifyStoredToken();
});

// -- talking to the server -------------------------------------------------------

/** A change: sent with the token, and the server's answer shown; resolves to the answer's data, or null. */
async function change(action, method, path, body, timeoutMs) {
  const res = await api(method, path, { body, token: token(), timeoutMs });
  const ok = report(action, res);
  if (res.status === 401) showTokenState("The server refused the token (HTTP 401): paste the current one (make token prints it).", "bad");
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

// -- the load phases -------------------------------------------------------------------

let loadStartedAt = null; // client time (ms) the phase started, from elapsed_seconds
let loadState = null;

const persona = () => document.querySelector('input[name="persona"]:checked').value;
const PERSONA_WORDS = { shopper: "plain shoppers", retrying: "retrying shoppers", backoff: "shoppers retrying with backoff" };

function renderLoad(state) {
  loadState = state;
  $("load-problem").hidden = true;
  const plan = state.plan || {};
  for (const span of document.querySelectorAll("[data-users-of]")) {
    const phase = span.dataset.usersOf;
    const users = (plan.phases || {})[phase];
    // The rush runs at its own contention (the plan's): the label says so, as the knobs card does.
    const contention = phase === "rush" && plan.contention_ms ? ` · ${plan.contention_ms.rush} ms/write` : "";
    span.textContent = phase === "rush" && users ? `${users} → ${plan.quiet_users}${contention}` : users ? `${users} shoppers` : "";
  }
  const running = state.phase && state.phase !== "stop";
  const now = $("load-now");
  now.className = `load-now phase-${state.phase || "none"}`;
  if (!state.phase) now.textContent = "no phase started";
  else if (!running) now.textContent = "stopped";
  else if (state.phase === "rush" && state.stage === "quiet") now.textContent = "rush, now quiet";
  else now.textContent = state.phase;
  loadStartedAt = running && state.elapsed_seconds !== null ? Date.now() - state.elapsed_seconds * 1000 : null;
  renderElapsed();
  const l = state.locust || {};
  const failed = l.requests ? ` · ${(100 * l.failures / l.requests).toFixed(1)} % failed` : "";
  const retries = l.retries ? ` · ${l.retries} retries` : "";
  $("load-locust").textContent = `Locust: ${l.state}, ${l.user_count} users · ${l.requests} requests${failed}${retries}`;
  if (state.matches_locust === false) {
    // Someone pressed Stop, Start or Edit in Locust's own UI, or Locust could not start (no worker, under compose).
    showLoadProblem(`Locust does not run what the console started: it is ${l.state} with ${l.user_count} users. Pick a phase again, or look at Locust's web UI.`);
  }
  for (const button of document.querySelectorAll("[data-phase]")) {
    button.setAttribute("aria-pressed", String(button.dataset.phase === state.phase));
  }
  if (state.persona) {
    const radio = document.querySelector(`input[name="persona"][value="${state.persona}"]`);
    if (radio && !personaTouched) radio.checked = true;
  }
}

function renderElapsed() {
  const state = loadState;
  if (!state) return;
  if (loadStartedAt === null) {
    $("load-detail").textContent = state.phase === "stop" && state.started_at ? `since ${clock(state.started_at)}` : "";
    return;
  }
  const elapsed = Math.max(0, Math.round((Date.now() - loadStartedAt) / 1000));
  let text = `${state.users} ${PERSONA_WORDS[state.persona] || state.persona} · running ${minutesSeconds(elapsed)}`;
  if (state.phase === "rush") {
    const left = state.plan.rush_seconds - elapsed;
    text += left > 0 ? ` · down to ${state.plan.quiet_users} in ${left} s` : ` · rush of ${state.plan.phases.rush} ended ${minutesSeconds(-left)} ago`;
  }
  $("load-detail").textContent = `${text} · ${state.plan.think_seconds} s think time`;
}

function showLoadProblem(text) {
  $("load-problem").textContent = text;
  $("load-problem").hidden = false;
}

let personaTouched = false;
for (const radio of document.querySelectorAll('input[name="persona"]')) {
  radio.addEventListener("change", async () => {
    personaTouched = true;
    if (!loadState || !loadState.phase || loadState.phase === "stop") return; // the next phase's persona
    // A phase runs: its shoppers switch at their next try, with no pause in the load (no restart).
    const state = await change(`Switch the shoppers to ${PERSONA_WORDS[radio.value]}`, "PATCH", "/admin/load",
                               { persona: radio.value }, 15000);
    if (state) {
      personaTouched = false;
      renderLoad(state);
    }
  });
}

async function refreshLoad() {
  const { status, data } = await api("GET", "/admin/load", { timeoutMs: 6000 });
  if (status === 200) renderLoad(data);
  else {
    $("load-now").textContent = "Locust unavailable";
    $("load-now").className = "load-now phase-none";
    $("load-detail").textContent = "";
    $("load-locust").textContent = "";
    showLoadProblem(data.message || `The load could not be read (HTTP ${status}).`);
  }
}

for (const button of document.querySelectorAll("[data-phase]")) {
  button.addEventListener("click", async () => {
    const body = { phase: button.dataset.phase, persona: persona() };
    const what = body.phase === "stop" ? "Stop the load" : `Start ${body.phase} (${PERSONA_WORDS[body.persona]})`;
    const state = await change(what, "PUT", "/admin/load", body, 15000);
    if (state) {
      personaTouched = false;
      renderLoad(state);
      refreshKnobs(); // a phase sets the contention knob to the plan's for it
    }
  });
}

// -- start -------------------------------------------------------------------------

verifyStoredToken();
refreshMode();
refreshKnobs();
refreshHistory();
refreshLoad();
setInterval(() => { refreshMode(); refreshHistory(); refreshLoad(); }, POLL_MS);
setInterval(() => { renderRevert(); renderElapsed(); }, 1000);
