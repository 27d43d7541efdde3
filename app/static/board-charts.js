// The board's charts: one SVG per row, drawn in pixels to fit its box (so text keeps its size on
// any projector), all on one time axis; mode changes marked through every row and named in a strip
// above them, in lanes, so no two names ever overlap. No libraries, no inline code (strict CSP).
import { $ } from "./common.js";

const SVG = "http://www.w3.org/2000/svg";
const LANES = 2;  // rows of mode-change names in the strip; a name that fits in none is left out

export function el(name, attrs, text) {
  const node = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

const rem = () => parseFloat(getComputedStyle(document.documentElement).fontSize);

/** A new SVG filling the box `id`, in its own pixels. */
function canvas(id) {
  const box = $(id);
  const W = Math.max(1, box.clientWidth), H = Math.max(1, box.clientHeight);
  const svg = el("svg", { width: W, height: H, viewBox: `0 0 ${W} ${H}`, "aria-hidden": "true" });
  box.replaceChildren(svg);
  return { svg, W, H, r: rem() };
}

/** The shared time axis: the same left and right margins in every row, so the rows line up. */
function timeAxis(data, W) {
  const r = rem(), left = 3.8 * r, right = 0.8 * r;
  const t1 = data.now, t0 = t1 - data.history_seconds;
  return { t0, t1, left, right: W - right, x: (t) => left + ((Math.min(t, t1) - t0) / (t1 - t0)) * (W - left - right) };
}

/** The smallest of 1, 2, 2.5, 5 × 10^k at or above v. */
export function niceMax(v) {
  const power = 10 ** Math.floor(Math.log10(v));
  return [1, 2, 2.5, 5, 10].map((m) => m * power).find((m) => m >= v - 1e-9);
}

function runs(points, key) {
  const out = [];
  let run = [];
  for (const p of points) {
    if (p[key] === null || p[key] === undefined) { if (run.length) out.push(run); run = []; } else run.push(p);
  }
  if (run.length) out.push(run);
  return out;
}

// One line per run of points that have a value: gaps (no traffic) stay gaps.
function lineData(points, key, x, y) {
  return runs(points, key).map((run) => run.map((p, i) => (i ? "L" : "M") + x(p.t).toFixed(1) + "," + y(p[key]).toFixed(1)).join("")).join("");
}

function areaData(points, key, x, y, base) {
  return runs(points, key).map((run) => "M" + x(run[0].t).toFixed(1) + "," + base
    + run.map((p) => "L" + x(p.t).toFixed(1) + "," + y(p[key]).toFixed(1)).join("")
    + "L" + x(run[run.length - 1].t).toFixed(1) + "," + base + "Z").join("");
}

/**
 * One row's chart: y from 0 to yMax, its series, dashed guides with their labels, the mode
 * changes as vertical lines. Values above yMax are drawn on the top edge (clamped) with a ▲ per
 * step and the peak in words (offScale): the scale never stretches to a spike, so a guide such as
 * the 400 ms deadline, or the level of now, stays readable.
 */
function panel(id, data, points, { yMax, yLabel, series, guides = [], legend = [], offScale = null }) {
  const { svg, W, H, r } = canvas(id);
  const axis = timeAxis(data, W);
  const top = 0.5 * r, bottom = H - 0.45 * r;
  const y = (v) => bottom - (Math.min(Math.max(v, 0), yMax) / yMax) * (bottom - top);
  svg.append(el("line", { class: "axis", x1: axis.left, x2: axis.right, y1: bottom, y2: bottom }));
  svg.append(el("line", { class: "axis", x1: axis.left, x2: axis.left, y1: top, y2: bottom }));
  svg.append(el("text", { x: axis.left - 0.4 * r, y: top + 0.7 * r, "text-anchor": "end" }, yLabel));
  svg.append(el("text", { x: axis.left - 0.4 * r, y: bottom, "text-anchor": "end" }, "0"));
  for (const change of data.mode_changes) {
    if (change.at < axis.t0) continue;
    const cx = axis.x(change.at);
    svg.append(el("line", { class: "flip", x1: cx, x2: cx, y1: 0, y2: H }));
  }
  for (const g of guides) {
    svg.append(el("line", { class: "target", x1: axis.left, x2: axis.right, y1: y(g.value), y2: y(g.value) }));
    const below = y(g.value) - top < 1.2 * r;  // no room above the line: write under it
    svg.append(el("text", { class: "target-label", x: axis.left + 0.5 * r,
      y: below ? y(g.value) + 1.05 * r : y(g.value) - 0.35 * r }, g.label));
  }
  for (const s of series) {
    svg.append(el("path", { class: s.className, d: s.area ? areaData(points, s.key, axis.x, y, bottom) : lineData(points, s.key, axis.x, y) }));
  }
  const off = offScale ? points.filter((p) => p[offScale.key] !== null && p[offScale.key] > yMax) : [];
  for (const p of off) {
    const cx = axis.x(p.t);
    svg.append(el("path", { class: "off-scale " + offScale.className,
      d: `M${cx - 0.35 * r},${top + 0.6 * r}L${cx},${top}L${cx + 0.35 * r},${top + 0.6 * r}Z` }));
  }
  if (off.length) {
    const peak = off.reduce((a, b) => (b[offScale.key] > a[offScale.key] ? b : a));
    legend = [{ className: "off-scale-label " + offScale.className, label: "▲ off the scale, peak " + offScale.text(peak) }, ...legend];
  }
  let lx = axis.right;
  for (const item of legend.slice().reverse()) {  // right-aligned, top: out of the way of the guides' labels
    const text = el("text", { class: item.className, x: lx, y: top + 0.8 * r, "text-anchor": "end" }, item.label);
    svg.append(text);
    const width = text.getComputedTextLength();
    // On a backing of the panel's colour: readable over the lines and ▲s it may cover.
    text.before(el("rect", { class: "legend-bg", x: lx - width - 0.3 * r, y: top - 0.15 * r, width: width + 0.6 * r, height: 1.25 * r, rx: 0.2 * r }));
    lx -= width + 1.2 * r;
  }
}

/** The strip above the rows: each mode change's name at its line, in the first lane where it
 * overlaps no other name. Newest first, so the change that made the current mode is always named. */
function markers(data) {
  const { svg, W, H, r } = canvas("chart-markers");
  const axis = timeAxis(data, W);
  const laneH = H / LANES;
  const placed = Array.from({ length: LANES }, () => []);
  const gap = 0.5 * r;
  for (const change of data.mode_changes.slice().reverse()) {
    if (change.at < axis.t0) continue;
    const cx = axis.x(change.at);
    svg.append(el("line", { class: "flip", x1: cx, x2: cx, y1: 0, y2: H }));
    const label = el("text", { class: "flip-label", x: cx + 0.3 * r, y: 0 }, "◆ " + change.to);
    svg.append(label);
    const width = label.getComputedTextLength();
    const toLeft = cx + 0.3 * r + width > W;  // near "now": write it to the left of its line
    const x0 = toLeft ? cx - 0.3 * r - width : cx + 0.3 * r;
    const lane = placed.findIndex((boxes) => boxes.every(([a, b]) => x0 + width + gap <= a || b + gap <= x0));
    if (lane < 0) { label.remove(); continue; }
    placed[lane].push([x0, x0 + width]);
    label.setAttribute("x", x0);
    label.setAttribute("y", (lane + 1) * laneH - 0.25 * 0.95 * r);  // baseline above the descenders: the box stays in its lane
  }
}

function timeLabels(data) {
  const { svg, W, H } = canvas("chart-axis");
  const axis = timeAxis(data, W);
  for (const ago of [300, 240, 180, 120, 60, 0]) {
    svg.append(el("text", { x: axis.x(axis.t1 - ago), y: H * 0.75, "text-anchor": ago === 300 ? "start" : ago === 0 ? "end" : "middle" },
      ago === 0 ? "now" : "−" + ago / 60 + " min"));
  }
}

/** Every chart of the board for one /board/data answer. */
export function renderCharts(data, { percent, readyText }) {
  const step = data.history.step_seconds;
  const points = data.history.points.map((p) => ({ ...p, t: p.t + step / 2 }));
  const target = data.success_target;
  panel("chart-success", data, points, {
    yMax: 1, yLabel: "100 %",
    series: [{ key: "otp_success_rate", className: "success" }],
    guides: [{ value: target, label: percent(target) + " % target" }],
  });
  // Ready times on a fixed scale, 2.5 × the deadline: the deadline line never moves.
  const deadline = data.otp_timeout_ms;
  panel("chart-ready", data, points, {
    yMax: 2.5 * deadline, yLabel: readyText(2.5 * deadline, false),
    series: [{ key: "ready_p95_ms", className: "ready" }],
    guides: [{ value: deadline, label: deadline + " ms OTP deadline" }],
    offScale: { key: "ready_p95_ms", className: "ready-off", text: (p) => readyText(p.ready_p95_ms, p.ready_p95_beyond_top) },
  });
  // Writes in flight scaled to now (twice the last 10 s): while a rush's hundreds drain, "still 9"
  // must show; what was higher is marked off the scale with its peak.
  const recent = [data.current.inflight_mean, ...points.slice(-2).map((p) => p.inflight_mean)];
  const inflightMax = niceMax(Math.max(3, 2 * Math.max(...recent.map((v) => v || 0))));
  panel("chart-inflight", data, points, {
    yMax: inflightMax, yLabel: String(inflightMax),
    series: [{ key: "inflight_mean", className: "inflight", area: true }],
    offScale: { key: "inflight_mean", className: "inflight-off", text: (p) => String(Math.round(p.inflight_mean)) },
  });
  const loadMax = niceMax(Math.max(2, ...points.map((p) => Math.max(p.checkouts_per_s, p.retries_per_s))));
  panel("chart-load", data, points, {
    yMax: loadMax, yLabel: loadMax + "/s",
    series: [{ key: "checkouts_per_s", className: "load", area: true }, { key: "retries_per_s", className: "retries" }],
    legend: [{ className: "legend-load", label: "■ checkouts/s" }, { className: "legend-retries", label: "╌ retries/s" }],
  });
  markers(data);
  timeLabels(data);
}
