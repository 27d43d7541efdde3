/* Facilitator console: the mode, the knobs, their history, over the admin JSON API.
 * The token lives in sessionStorage (this tab only) and travels in the Authorization
 * header, never in a URL. Every action shows the server's answer, errors included. */
(function () {
  "use strict";

  var TOKEN_KEY = "paygate.adminToken";
  var POLL_MS = 2000;

  function $(id) { return document.getElementById(id); }

  var revertDeadline = null; // client time (ms) when the mode reverts, from revert_in_seconds
  var knobsBuilt = false;

  // -- the token ---------------------------------------------------------------

  function token() { return window.sessionStorage.getItem(TOKEN_KEY) || ""; }

  function showTokenState() {
    $("token-state").textContent = token()
      ? "A token is set for this tab. The server checks it on every change."
      : "No token set: you can look, but every change will be refused.";
  }

  $("token-form").addEventListener("submit", function (event) {
    event.preventDefault();
    var value = $("token").value.trim();
    if (value) { window.sessionStorage.setItem(TOKEN_KEY, value); }
    $("token").value = "";
    showTokenState();
  });

  $("forget-token").addEventListener("click", function () {
    window.sessionStorage.removeItem(TOKEN_KEY);
    showTokenState();
  });

  // -- talking to the server ---------------------------------------------------

  /* One API call; always resolves to {status, data} (status 0 if the network failed). */
  function api(method, path, body) {
    var headers = { "Accept": "application/json" };
    if (body !== undefined) { headers["Content-Type"] = "application/json"; }
    if (method !== "GET" && token()) { headers.Authorization = "Bearer " + token(); }
    return fetch(path, {
      method: method, headers: headers, credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body)
    }).then(function (response) {
      return response.json().catch(function () { return {}; }).then(function (data) {
        return { status: response.status, data: data };
      });
    }, function () {
      return { status: 0, data: { error: "network_error", message: "The app could not be reached." } };
    });
  }

  /* Show what the server said about an action, in words and as JSON. */
  function report(action, res) {
    var ok = res.status >= 200 && res.status < 300;
    var title = $("answer-title");
    var text;
    if (ok) {
      text = action + ": done (HTTP " + res.status + ").";
    } else if (res.status === 401) {
      text = action + " refused (HTTP 401): the admin token is wrong or missing. Nothing was changed.";
    } else if (res.status === 0) {
      text = action + " failed: the app could not be reached.";
    } else {
      text = action + " refused (HTTP " + res.status + "): " + (res.data.message || res.data.error || "error") + ".";
    }
    title.textContent = text;
    title.className = "answer-title " + (ok ? "ok" : "bad");
    $("answer").textContent = JSON.stringify(res.data, null, 2);
    $("answer").className = "answer " + (ok ? "answer-ok" : "answer-bad");
    $("answer").hidden = false;
    return ok;
  }

  // -- the mode ------------------------------------------------------------------

  function clock(epochSeconds) {
    return new Date(epochSeconds * 1000).toLocaleTimeString([], { hour12: false });
  }

  function ago(epochSeconds) {
    var s = Math.max(0, Math.round(Date.now() / 1000 - epochSeconds));
    if (s < 60) { return s + " s ago"; }
    if (s < 3600) { return Math.floor(s / 60) + " min " + (s % 60) + " s ago"; }
    return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min ago";
  }

  function renderMode(state) {
    var now = $("mode-now");
    now.textContent = state.mode;
    now.className = "mode-now mode-" + state.mode;
    $("mode-since").textContent = state.since
      ? "since " + clock(state.since) + " (" + ago(state.since) + "), set by " + state.actor
      : "since start-up (default)";
    revertDeadline = state.revert_in_seconds === null ? null : Date.now() + state.revert_in_seconds * 1000;
    renderRevert();
    document.querySelectorAll("[data-mode]").forEach(function (button) {
      button.setAttribute("aria-pressed", String(button.dataset.mode === state.mode));
    });
  }

  function renderRevert() {
    var el = $("mode-revert");
    if (revertDeadline === null) {
      el.textContent = "No auto-revert.";
      return;
    }
    var left = Math.max(0, Math.round((revertDeadline - Date.now()) / 1000));
    el.textContent = "Reverts to original in " + Math.floor(left / 60) + ":" + String(left % 60).padStart(2, "0") + ".";
  }

  function refreshMode() {
    return api("GET", "/admin/db-mode").then(function (res) {
      if (res.status === 200) { renderMode(res.data); }
    });
  }

  document.querySelectorAll("[data-mode]").forEach(function (button) {
    button.addEventListener("click", function () {
      var body = { mode: button.dataset.mode };
      var ttl = $("ttl").value.trim();
      // Sent as typed: the server validates it and says what is wrong.
      if (ttl) { body.ttl_seconds = /^[0-9]+$/.test(ttl) ? Number(ttl) : ttl; }
      api("PUT", "/admin/db-mode", body).then(function (res) {
        if (report("Switch to " + body.mode, res)) { renderMode(res.data); }
        refreshHistory();
      });
    });
  });

  // -- the knobs -----------------------------------------------------------------

  function buildKnobs(info) {
    var box = $("knobs-fields");
    box.textContent = "";
    Object.keys(info.knobs).forEach(function (name) {
      var field = document.createElement("div");
      field.className = "field";
      var input = document.createElement("input");
      input.id = "knob-" + name;
      input.dataset.knob = name;
      var label = document.createElement("label");
      label.htmlFor = input.id;
      var hint = document.createElement("p");
      hint.className = "limits";
      hint.id = input.id + "-limits";
      input.setAttribute("aria-describedby", hint.id);
      if (typeof info.defaults[name] === "boolean") {
        input.type = "checkbox";
        label.className = "checkbox";
        label.appendChild(input);
        label.appendChild(document.createTextNode(name));
        field.appendChild(label);
        hint.textContent = "default " + info.defaults[name];
      } else {
        var limit = info.limits[name] || {};
        input.type = "number";
        input.inputMode = "numeric";
        input.step = "1";
        if (limit.min !== undefined) { input.min = limit.min; }
        if (limit.max !== undefined) { input.max = limit.max; }
        label.textContent = name;
        field.appendChild(label);
        field.appendChild(input);
        hint.textContent = "default " + info.defaults[name] + " · limits " + limit.min + "–" + limit.max;
      }
      field.appendChild(hint);
      box.appendChild(field);
    });
    knobsBuilt = true;
  }

  function fillKnobs(knobs) {
    document.querySelectorAll("[data-knob]").forEach(function (input) {
      var value = knobs[input.dataset.knob];
      if (input.type === "checkbox") { input.checked = value; } else { input.value = value; }
      input.dataset.current = String(value);
    });
  }

  function refreshKnobs() {
    return api("GET", "/admin/knobs").then(function (res) {
      if (res.status !== 200) { return; }
      if (!knobsBuilt) { buildKnobs(res.data); }
      fillKnobs(res.data.knobs);
    });
  }

  $("knobs-form").addEventListener("submit", function (event) {
    event.preventDefault();
    var changes = {};
    document.querySelectorAll("[data-knob]").forEach(function (input) {
      var value = input.type === "checkbox" ? input.checked : input.value.trim();
      if (String(value) === input.dataset.current) { return; }
      // Whole numbers go as numbers; anything else as typed, for the server to judge.
      changes[input.dataset.knob] = typeof value === "boolean" || !/^-?[0-9]+$/.test(value) ? value : Number(value);
    });
    if (!Object.keys(changes).length) {
      report("Apply knobs", { status: 200, data: { message: "Nothing changed: no request sent." } });
      return;
    }
    api("PATCH", "/admin/knobs", changes).then(function (res) {
      if (report("Apply knobs", res)) { fillKnobs(res.data.knobs); }
      refreshHistory();
    });
  });

  // -- reset -----------------------------------------------------------------------

  $("reset-button").addEventListener("click", function () {
    if (!window.confirm("Reset everything: mode original and default knobs?")) { return; }
    api("POST", "/admin/reset").then(function (res) {
      if (report("Reset everything", res)) {
        renderMode(res.data);
        fillKnobs(res.data.knobs);
      }
      refreshHistory();
    });
  });

  // -- history -----------------------------------------------------------------------

  function describe(value) {
    if (value === null || value === undefined) { return "—"; }
    if (typeof value !== "object") { return String(value); }
    return Object.keys(value).map(function (k) { return k + "=" + value[k]; }).join(", ");
  }

  function renderHistory(events) {
    var body = $("history-body");
    body.textContent = "";
    if (!events.length) {
      var empty = body.insertRow();
      var cell = empty.insertCell();
      cell.colSpan = 4;
      cell.className = "muted";
      cell.textContent = "No changes yet.";
      return;
    }
    events.forEach(function (e) {
      var row = body.insertRow();
      var change = describe(e.from) + " → " + describe(e.to);
      if (e.ttl_seconds) { change += " (reverts after " + e.ttl_seconds + " s)"; }
      [clock(e.at), e.actor, e.kind, change].forEach(function (text) {
        row.insertCell().textContent = text;
      });
    });
  }

  function refreshHistory() {
    return api("GET", "/admin/history").then(function (res) {
      if (res.status === 200) { renderHistory(res.data.events || []); }
    });
  }

  // -- start -------------------------------------------------------------------------

  showTokenState();
  refreshMode();
  refreshKnobs();
  refreshHistory();
  window.setInterval(function () { refreshMode(); refreshHistory(); }, POLL_MS);
  window.setInterval(renderRevert, 1000);
})();
