// Checkout: card form -> one-time password -> result, over the gateway's JSON API.
// The browser only hints at formats; the server's validation decides and its field
// errors are shown next to each field. Card data is never stored or logged here.
import { $, api, clock, minutesSeconds } from "./common.js";

const LABELS = { card_number: "Card number", expiry: "Expiry", cvv: "CVV", amount: "Amount", otp: "Code" };

const steps = [...document.querySelectorAll(".step")];
const order = $("order-amount");
const cardForm = $("card-form");
const otpForm = $("otp-form");
let lastCard = null; // the last card body sent, kept in memory only, for "Try again"
let failedPaymentId = null; // the payment whose OTP step just failed: "Try again" names it (X-Retry-Of)
let retryHold = null; // the countdown of a loud failure's Retry-After
let payment = null; // {payment_id, otp} of the payment awaiting its OTP
let countdown = null;

const announce = (text) => { $("status").textContent = text; };

function money(amount, currency) {
  try {
    return new Intl.NumberFormat("en-US", { style: "currency", currency }).format(Number(amount));
  } catch {
    return `${amount} ${currency}`;
  }
}

/** Show one step and move keyboard focus into it (its heading, or a given field). */
function show(id, focusTarget) {
  for (const step of steps) step.hidden = step.id !== id;
  const target = focusTarget || $(id).querySelector("h2");
  if (target) target.focus();
}

/** Run `work` with the button disabled and showing `label`, then put it back. */
async function busy(button, label, work) {
  const idle = button.textContent;
  button.textContent = label;
  button.disabled = true;
  button.setAttribute("aria-busy", "true");
  try {
    return await work();
  } finally {
    button.textContent = idle;
    button.disabled = false;
    button.removeAttribute("aria-busy");
  }
}

function clearErrors(form) {
  for (const el of form.querySelectorAll(".field-error, .form-error")) {
    el.hidden = true;
    el.textContent = "";
  }
  for (const el of form.querySelectorAll("[aria-invalid]")) el.removeAttribute("aria-invalid");
}

/** The server's `fields` map -> a message under each field; focus the first bad one. */
function showFieldErrors(fields, fallbackId) {
  let first = null;
  const unplaced = [];
  for (const [name, problem] of Object.entries(fields)) {
    const message = `${LABELS[name] || name} ${problem}.`;
    const errorEl = $(`${name}-error`);
    if (!errorEl) {
      unplaced.push(message);
      continue;
    }
    errorEl.textContent = message;
    errorEl.hidden = false;
    const input = $(name);
    if (input) {
      input.setAttribute("aria-invalid", "true");
      first = first || input;
    }
  }
  if (unplaced.length && fallbackId) {
    $(fallbackId).textContent = unplaced.join(" ");
    $(fallbackId).hidden = false;
  }
  announce("Please check the highlighted fields.");
  if (first) first.focus();
}

function showError(data, status) {
  $("error-detail").textContent =
    `${data.message || "The payment service answered unexpectedly."} (${data.error || `HTTP ${status}`})`;
  show("result-error");
}

/** An answer no step expects: the service is unavailable (503, or no answer at all), or something else. */
function showTrouble(status, data) {
  if (status !== 503 && status !== 0) {
    showError(data, status);
    return;
  }
  $("unavailable-detail").textContent = data.message ? `${data.message} (${data.error || ""})` : "";
  show("result-unavailable");
  announce("The payment service is unavailable.");
}

// -- step 1: the card ----------------------------------------------------------

function cardBody() {
  return {
    card_number: $("card_number").value.trim(),
    expiry: $("expiry").value.trim(),
    cvv: $("cvv").value.trim(),
    amount: order.dataset.amount,
    currency: order.dataset.currency,
  };
}

/** The Server-Timing header's metrics, name → duration in ms ("ready;dur=412.3, deadline;dur=400"). */
function serverTiming(header) {
  const timings = {};
  for (const metric of (header || "").split(",")) {
    const [name, ...params] = metric.split(";").map((part) => part.trim());
    const dur = params.map((p) => /^dur=([0-9.]+)$/.exec(p)).find(Boolean);
    if (name && dur) timings[name] = Number(dur[1]);
  }
  return timings;
}

const ms = (value) => `${Math.round(value)} ms`;

/** " against a 400 ms deadline", or nothing when the answer did not say. */
const againstDeadline = (timings) => (timings.deadline === undefined ? "" : ` against a ${ms(timings.deadline)} deadline`);

/**
 * The failed checkout's "details for support": its reference, how long it waited against the
 * deadline (the server's own measure, Server-Timing, else the time this page waited), when, and
 * once the facilitator reveals traces, a link to its trace.
 */
function showSupportDetails(data, headers, elapsedMs) {
  const timings = serverTiming(headers && headers.get("Server-Timing"));
  $("support-reference").textContent = data.payment_id || "none";
  $("support-waited").textContent = ms(timings.ready === undefined ? elapsedMs : timings.ready);
  $("support-deadline").textContent = againstDeadline(timings);
  $("support-time").textContent = clock(Date.now() / 1000);
  const link = $("support-trace");
  link.hidden = true;
  const traceId = headers && headers.get("X-Trace-Id");
  if (!traceId) return;
  api("GET", `/board/trace-link?trace_id=${encodeURIComponent(traceId)}`, { timeoutMs: 3000 }).then(({ status, data: answer }) => {
    // Only for the failure still on screen: a late answer for an earlier one is dropped.
    if (status !== 200 || !answer.trace_url || $("support-reference").textContent !== data.payment_id) return;
    link.href = answer.trace_url;
    link.hidden = false;
  });
}

/**
 * A loud failure (503) says when to come back (Retry-After, seconds): "Try again" waits that
 * long, counting down, so a shopper's retry does not feed the pile-up it just met.
 */
function holdRetry(seconds) {
  const button = $("retry-button");
  clearInterval(retryHold);
  retryHold = null;
  const until = Date.now() + seconds * 1000;
  const tick = () => {
    const left = Math.ceil((until - Date.now()) / 1000);
    button.disabled = left > 0;
    button.textContent = left > 0 ? `Try again in ${left} s` : "Try again";
    if (left <= 0) { clearInterval(retryHold); retryHold = null; }
  };
  tick();
  if (seconds > 0) retryHold = setInterval(tick, 250);
}

async function initiate(body, retryOf = null) {
  lastCard = body;
  failedPaymentId = null;
  clearErrors(cardForm);
  announce("Processing your payment…");
  // A retry says which failed payment it retries: the board counts retries, the trace links the tries.
  const extraHeaders = retryOf ? { "X-Retry-Of": retryOf } : {};
  const started = performance.now();
  const { status, data, headers } = await busy($("pay-button"), "Processing…",
    () => api("POST", "/payment/initiate", { body, extraHeaders }));
  const elapsedMs = performance.now() - started;
  if (status === 200 && data.status === "awaiting_otp") {
    startOtp(data, serverTiming(headers && headers.get("Server-Timing")));
  } else if (data.status === "otp_unavailable" || data.error === "otp_unavailable") {
    // 200 when failures are silent, 503 when they are loud: the participant reads the
    // same words, the server's own (the message is written once, in app/errors.py).
    $("otp-unavailable-message").textContent = data.message;
    failedPaymentId = data.payment_id || null;
    showSupportDetails(data, headers, elapsedMs);
    const retryAfter = Number(headers && headers.get("Retry-After"));
    holdRetry(Number.isFinite(retryAfter) && retryAfter > 0 ? Math.min(retryAfter, 60) : 0);
    show("result-otp-unavailable");
    announce(`${data.message} Reference ${data.payment_id || "none"}.`);
  } else if (status === 400 && data.error === "validation_error") {
    show("step-card", $("card_number"));
    showFieldErrors(data.fields || {}, "form-error");
  } else {
    showTrouble(status, data);
  }
}

cardForm.addEventListener("submit", (event) => {
  event.preventDefault();
  initiate(cardBody());
});

// Gentle formatting as a hint only: groups of four, and the slash in MM/YY.
$("card_number").addEventListener("blur", (event) => {
  const digits = event.target.value.replace(/[\s-]/g, "");
  if (/^[0-9]{12,19}$/.test(digits)) event.target.value = digits.replace(/(.{4})(?=.)/g, "$1 ");
});
$("expiry").addEventListener("input", (event) => {
  if (event.inputType === "insertText" && /^[0-9]{2}$/.test(event.target.value)) event.target.value += "/";
});

// -- step 2: the one-time password ---------------------------------------------

function startOtp(data, timings) {
  payment = { payment_id: data.payment_id, otp: data.otp, ready_ms: data.ready_ms, timings };
  $("demo-otp").textContent = data.otp;
  $("otp").value = "";
  clearErrors(otpForm);
  startCountdown(data.otp_expires_in);
  show("step-otp", $("otp"));
  announce(`Enter the one-time password. Demo code: ${data.otp.split("").join(" ")}`);
}

function startCountdown(seconds) {
  const until = Date.now() + seconds * 1000;
  stopCountdown();
  const tick = () => {
    $("otp-expires").textContent = minutesSeconds(Math.max(0, Math.round((until - Date.now()) / 1000)));
  };
  tick();
  countdown = setInterval(tick, 1000);
}

function stopCountdown() {
  clearInterval(countdown);
  countdown = null;
}

$("use-demo-otp").addEventListener("click", () => {
  $("otp").value = payment ? payment.otp : "";
  $("otp").focus();
});

/** What the shopper reads after a verify answer other than success. */
function verifyFailed(status, data) {
  if (status === 400 && data.error === "invalid_otp") {
    const left = data.attempts_left;
    const attempts = typeof left === "number" ? `: ${left} ${left === 1 ? "attempt" : "attempts"} left` : "";
    showFieldErrors({ otp: `is wrong${attempts}` });
  } else if (status === 400 && data.error === "validation_error") {
    showFieldErrors({ otp: "must be the 6 digits you received" });
  } else if (status === 423 || status === 410) {
    stopCountdown();
    show(status === 423 ? "result-locked" : "result-expired");
    announce(status === 423 ? "Payment locked." : "The code has expired.");
  } else {
    showTrouble(status, data);
  }
}

otpForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  clearErrors(otpForm);
  announce("Confirming your payment…");
  const body = { payment_id: payment.payment_id, otp: $("otp").value.trim() };
  const { status, data } = await busy($("verify-button"), "Confirming…",
    () => api("POST", "/payment/verify-otp", { body }));
  if (status !== 200 || data.status !== "succeeded") {
    verifyFailed(status, data);
    return;
  }
  stopCountdown();
  $("success-amount").textContent = money(data.amount, data.currency);
  $("success-id").textContent = data.payment_id;
  $("success-ready-line").hidden = typeof payment.ready_ms !== "number";
  $("success-ready").textContent = ms(payment.ready_ms || 0);
  $("success-deadline").textContent = againstDeadline(payment.timings);
  show("result-success");
  announce("Payment successful.");
});

// -- result screens ----------------------------------------------------------------

document.addEventListener("click", (event) => {
  const action = event.target.closest("[data-action]");
  if (!action) return;
  if (action.dataset.action === "retry" && lastCard) {
    show("step-card", $("pay-button"));
    initiate(lastCard, failedPaymentId);
  } else if (action.dataset.action === "restart") {
    stopCountdown();
    payment = null;
    clearErrors(cardForm);
    show("step-card", $("card_number"));
    announce("");
  }
});
