// The live board: polls /board/data every second and redraws the tiles and the
// 5-minute chart (an inline SVG). No libraries, no inline code (strict CSP).
import { $, api, clock } from "./common.js";

const POLL_MS = 1000;
const SVG = "http://www.w3.org/2000/svg";

// 95 → "95", 0.8123 → "81.2": whole numbers stay whole.
function percent(rate) {
  const value = rate * 100;
  return Number.isInteger(Math.round(value * 10) / 10) ? String(Math.round(value)) : value.toFixed(1);
}

function pct(rate) {
  return percent(rate) + " %";
}

// state: "ok", "bad", or null (no data yet): a coloured edge plus words and a shape.
function setTile(tile, state) {
  tile.classList.toggle("ok", state === "ok");
  tile.classList.toggle("bad", state === "bad");
  tile.classList.toggle("none", state === null);
}

function renderMode(data) {
  const el = $("board-mode");
  if (el.textContent !== data.mode) {
    el.textContent = data.mode;
    el.className = "mode mode-" + data.mode;
    el.dataset.mode = data.mode;
  }
  $("board-mode-since").textContent = data.mode_since ? "since " + clock(data.mode_since) : "";
}

function renderTiles(data) {
  const now = data.current;
  const target = data.success_target;
  const deadline = data.otp_timeout_ms;

  const success = $("tile-success");
  if (now.otp_success_rate === null) {
    $("board-success").textContent = "—";
    $("board-success-verdict").textContent = "no payments in the last " + data.window_seconds + " s";
    setTile(success, null);
  } else {
    const ok = now.otp_success_rate >= target;
    $("board-success").textContent = percent(now.otp_success_rate);
    $("board-success-verdict").textContent = ok ? "✓ at or above " + pct(target) : "▼ BELOW " + pct(target);
    setTile(success, ok ? "ok" : "bad");
  }

  const ready = $("tile-ready");
  if (now.ready_p95_ms === null) {
    $("board-ready").textContent = "—";
    $("board-ready-verdict").textContent = "no writes finished · deadline " + deadline + " ms";
    setTile(ready, null);
  } else {
    const ok = now.ready_p95_ms <= deadline;
    $("board-ready").textContent = now.ready_p95_ms;
    $("board-ready-verdict").textContent = (ok ? "✓ within the " : "▲ OVER the ") + deadline + " ms OTP deadline";
    setTile(ready, ok ? "ok" : "bad");
  }

  $("board-inflight").textContent = now.inflight_writes;
  $("board-ok").textContent = now.otp_success;
  $("board-failed").textContent = now.otp_timeout;
  setTile($("tile-counts"), now.otp_timeout > 0 ? "bad" : now.otp_success > 0 ? "ok" : null);
}

function el(name, attrs, text) {
  const node = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

// One line per run of points that have a value: gaps (no traffic) stay gaps.
function pathData(points, x, y, key) {
  let d = "";
  let pen = false;
  for (const p of points) {
    const v = p[key];
    if (v === null) { pen = false; continue; }
    d += (pen ? "L" : "M") + x(p.t).toFixed(1) + "," + y(v).toFixed(1);
    pen = true;
  }
  return d;
}

function renderChart(data) {
  const W = 1000, H = 380, left = 70, right = 20;
  const panels = { success: { top: 30, bottom: 160 }, ready: { top: 220, bottom: 350 } };
  const step = data.history.step_seconds;
  const points = data.history.points.map((p) => ({ ...p, t: p.t + step / 2 }));
  const t1 = data.now, t0 = t1 - data.history_seconds;
  const x = (t) => left + ((t - t0) / (t1 - t0)) * (W - left - right);
  const deadline = data.otp_timeout_ms;
  const readyMax = Math.max(2 * deadline, ...points.map((p) => p.ready_p95_ms || 0)) * 1.05;
  const ySuccess = (v) => panels.success.bottom - v * (panels.success.bottom - panels.success.top);
  const yReady = (v) => panels.ready.bottom - (Math.min(v, readyMax) / readyMax) * (panels.ready.bottom - panels.ready.top);

  const svg = el("svg", { viewBox: `0 0 ${W} ${H}`, "aria-hidden": "true" });
  for (const [name, p] of Object.entries(panels)) {
    svg.append(el("line", { class: "axis", x1: left, x2: W - right, y1: p.bottom, y2: p.bottom }));
    svg.append(el("line", { class: "axis", x1: left, x2: left, y1: p.top, y2: p.bottom }));
    svg.append(el("text", { class: "panel-title", x: left + 8, y: p.top - 10 },
      name === "success" ? "OTP success rate" : "Ready time p95"));
  }
  // y axes and the dashed targets
  svg.append(el("text", { x: left - 8, y: ySuccess(1) + 5, "text-anchor": "end" }, "100 %"));
  svg.append(el("text", { x: left - 8, y: ySuccess(0) + 5, "text-anchor": "end" }, "0 %"));
  svg.append(el("line", { class: "target", x1: left, x2: W - right, y1: ySuccess(data.success_target), y2: ySuccess(data.success_target) }));
  svg.append(el("text", { class: "target-label", x: left + 8, y: ySuccess(data.success_target) + 18 },
    pct(data.success_target) + " target"));
  svg.append(el("text", { x: left - 8, y: yReady(readyMax) + 5, "text-anchor": "end" }, Math.round(readyMax) + " ms"));
  svg.append(el("text", { x: left - 8, y: yReady(0) + 5, "text-anchor": "end" }, "0"));
  svg.append(el("line", { class: "target", x1: left, x2: W - right, y1: yReady(deadline), y2: yReady(deadline) }));
  svg.append(el("text", { class: "target-label", x: left + 8, y: yReady(deadline) - 8 },
    deadline + " ms OTP deadline"));
  // time axis
  for (const ago of [300, 240, 180, 120, 60, 0]) {
    svg.append(el("text", { x: x(t1 - ago), y: H - 8, "text-anchor": ago === 300 ? "start" : ago === 0 ? "end" : "middle" },
      ago === 0 ? "now" : "−" + ago / 60 + " min"));
  }
  // mode changes: a vertical line through both panels, a diamond and the new mode's name
  for (const change of data.mode_changes) {
    if (change.at < t0) continue;
    const cx = x(change.at);
    svg.append(el("line", { class: "flip", x1: cx, x2: cx, y1: panels.success.top - 4, y2: panels.ready.bottom }));
    const nearRight = cx > W - right - 160;  // keep the label inside the chart
    svg.append(el("text", { class: "flip-label", x: nearRight ? cx - 6 : cx + 6, y: panels.ready.top - 12,
      "text-anchor": nearRight ? "end" : "start" }, "◆ → " + change.to));
  }
  svg.append(el("path", { class: "success", d: pathData(points, x, ySuccess, "otp_success_rate") }));
  svg.append(el("path", { class: "ready", d: pathData(points, x, yReady, "ready_p95_ms") }));

  $("board-chart").replaceChildren(svg);
}

function showStatus(text, stale) {
  const status = $("board-status");
  status.textContent = text;
  status.classList.toggle("stale", stale);
}

async function poll() {
  const { status, data } = await api("GET", "/board/data", { timeoutMs: 3000 });
  if (status === 200) {
    renderMode(data);
    renderTiles(data);
    renderChart(data);
    showStatus("Updated " + clock(data.now) + (data.redis_ok ? "" : " · Redis unreachable: last known mode"), false);
  } else if (status === 0) {
    showStatus("▲ No data from the app (" + data.message + "). Retrying…", true);
  } else {
    if (data.mode) renderMode(data);
    showStatus("▲ Board figures unavailable: " + (data.message || data.error) + " Retrying…", true);
  }
  setTimeout(poll, POLL_MS);
}

poll();
