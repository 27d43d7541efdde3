// The live board: polls /board/data every second and redraws the tiles (now: the last 10 s)
// and the charts beside them (the last 5 minutes, board-charts.js). No inline code (strict CSP).
import { $, api, clock } from "./common.js";
import { renderCharts } from "./board-charts.js";

const POLL_MS = 1000;
let latest = null;  // the last answer, redrawn when the window changes size

// 95 → "95", 0.8123 → "81.2": whole numbers stay whole.
function percent(rate) {
  const value = rate * 100;
  return Number.isInteger(Math.round(value * 10) / 10) ? String(Math.round(value)) : value.toFixed(1);
}

/** A ready time as [number, unit]: "420 ms", "2.4 s", or "> 10 s" past the histogram's top bucket. */
function readyParts(ms, beyondTop) {
  if (beyondTop) return ["> " + ms / 1000, " s"];
  if (ms >= 1000) return [(ms / 1000).toFixed(ms % 1000 ? 1 : 0), " s"];
  return [String(ms), " ms"];
}

const readyText = (ms, beyondTop) => readyParts(ms, beyondTop).join("");
const oneDecimal = (v) => (Math.round(v * 10) / 10).toFixed(1);

// state: "ok", "bad", "neutral", or null (no data yet): a coloured edge plus words and a shape.
function setTile(id, state, value, unit, verdict) {
  const tile = $("tile-" + id);
  tile.classList.toggle("ok", state === "ok");
  tile.classList.toggle("bad", state === "bad");
  tile.classList.toggle("none", state === null);
  $("board-" + id).textContent = value;
  if (unit !== undefined) $("board-" + id + "-unit").textContent = unit;
  $("board-" + id + "-verdict").textContent = verdict;
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
  const target = percent(data.success_target) + " %";
  const deadline = data.otp_timeout_ms;

  if (now.otp_success_rate === null) {
    setTile("success", null, "—", undefined, "no payments in " + data.window_seconds + " s");
  } else {
    const ok = now.otp_success_rate >= data.success_target;
    setTile("success", ok ? "ok" : "bad", percent(now.otp_success_rate), undefined,
      ok ? "✓ at or above " + target : "▼ BELOW " + target + " · " + now.otp_timeout + " failed");
  }

  if (now.ready_p95_ms === null) {
    setTile("ready", null, "—", " ms", "deadline " + deadline + " ms");
  } else {
    const ok = now.ready_p95_ms <= deadline;
    const [value, unit] = readyParts(now.ready_p95_ms, now.ready_p95_beyond_top);
    setTile("ready", ok ? "ok" : "bad", value, unit, (ok ? "✓ within " : "▲ OVER ") + deadline + " ms deadline");
  }

  if (now.inflight_mean === null) {
    setTile("inflight", null, "—", undefined, "now " + now.inflight_writes);
  } else {
    setTile("inflight", "neutral", oneDecimal(now.inflight_mean), undefined, "now " + now.inflight_writes + " · all workers");
  }

  const retrying = now.retries_per_s > 0;
  setTile("load", retrying ? "bad" : "neutral", oneDecimal(now.checkouts_per_s), undefined,
    retrying ? "↻ " + oneDecimal(now.retries_per_s) + "/s are retries" : "checkouts/s · no retries");
}

function renderTraces(traces) {
  const nav = $("board-traces");
  nav.hidden = !traces || !traces.revealed;
  if (nav.hidden) return;
  const latestLink = $("board-trace-latest");
  latestLink.hidden = !traces.latest_failed_url;
  if (traces.latest_failed_url) latestLink.href = traces.latest_failed_url;
  $("board-trace-search").href = traces.failed_search_url;
}

function draw(data) {
  renderCharts(data, { percent, readyText });
}

function showStatus(text, stale) {
  const status = $("board-status");
  status.textContent = text;
  status.classList.toggle("stale", stale);
}

async function poll() {
  // A steady cadence from each poll's start, not a pause after it: the fetch and the drawing take
  // their time too, and on a busy machine a pause after them left the board two seconds behind a flip.
  const started = performance.now();
  const { status, data } = await api("GET", "/board/data", { timeoutMs: 3000 });
  if (status === 200) {
    latest = data;
    renderMode(data);
    renderTiles(data);
    renderTraces(data.traces);
    draw(data);
    showStatus("Updated " + clock(data.now) + (data.redis_ok ? "" : " · Redis unreachable: last known mode"), false);
  } else if (status === 0) {
    showStatus("▲ No data from the app (" + data.message + "). Retrying…", true);
  } else {
    if (data.mode) renderMode(data);
    showStatus("▲ Board figures unavailable: " + (data.message || data.error) + " Retrying…", true);
  }
  setTimeout(poll, Math.max(0, POLL_MS - (performance.now() - started)));
}

window.addEventListener("resize", () => { if (latest) draw(latest); });
poll();
