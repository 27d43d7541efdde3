/* Checkout: card form -> one-time password -> result, over the gateway's JSON API.
 * Plain JavaScript loaded from a file (the Content-Security-Policy forbids inline code).
 * The browser only hints at formats; the server's validation decides and its field
 * errors are shown next to each field. Card data is never stored or logged here. */
(function () {
  "use strict";

  var LABELS = { card_number: "Card number", expiry: "Expiry", cvv: "CVV", amount: "Amount", otp: "Code" };

  function $(id) { return document.getElementById(id); }

  var steps = Array.prototype.slice.call(document.querySelectorAll(".step"));
  var statusEl = $("status");
  var order = $("order-amount");
  var cardForm = $("card-form");
  var otpForm = $("otp-form");
  var lastCard = null;   // the last card body sent, kept in memory only, for "Try again"
  var payment = null;    // {payment_id, otp} of the payment awaiting its OTP
  var countdown = null;

  function announce(text) { statusEl.textContent = text; }

  function money(amount, currency) {
    try {
      return new Intl.NumberFormat("en-US", { style: "currency", currency: currency }).format(Number(amount));
    } catch (e) {
      return amount + " " + currency;
    }
  }

  /* Show one step and move keyboard focus into it (its heading, or a given field). */
  function show(id, focusTarget) {
    steps.forEach(function (step) { step.hidden = step.id !== id; });
    var target = focusTarget || $(id).querySelector("h2");
    if (target) { target.focus(); }
  }

  function setBusy(button, busy, label) {
    if (busy) {
      button.dataset.label = button.textContent;
      button.textContent = label;
      button.disabled = true;
      button.setAttribute("aria-busy", "true");
    } else if (button.dataset.label) {
      button.textContent = button.dataset.label;
      button.disabled = false;
      button.removeAttribute("aria-busy");
    }
  }

  function clearErrors(form) {
    form.querySelectorAll(".field-error, .form-error").forEach(function (el) {
      el.hidden = true;
      el.textContent = "";
    });
    form.querySelectorAll("[aria-invalid]").forEach(function (el) { el.removeAttribute("aria-invalid"); });
  }

  /* The server's `fields` map -> a message under each field; focus the first bad one. */
  function showFieldErrors(form, fields, fallbackId) {
    var first = null;
    var unplaced = [];
    Object.keys(fields).forEach(function (name) {
      var message = (LABELS[name] || name) + " " + fields[name] + ".";
      var errorEl = $(name + "-error");
      if (!errorEl) { unplaced.push(message); return; }
      errorEl.textContent = message;
      errorEl.hidden = false;
      var input = $(name);
      if (input) {
        input.setAttribute("aria-invalid", "true");
        first = first || input;
      }
    });
    if (unplaced.length && fallbackId) {
      $(fallbackId).textContent = unplaced.join(" ");
      $(fallbackId).hidden = false;
    }
    announce("Please check the highlighted fields.");
    if (first) { first.focus(); }
  }

  /* POST JSON; always resolves to {status, data} (status 0 when the network failed). */
  function postJson(url, body) {
    return fetch(url, {
      method: "POST",
      headers: { "Content-Type": "application/json", "Accept": "application/json" },
      body: JSON.stringify(body),
      credentials: "same-origin"
    }).then(function (response) {
      return response.json().catch(function () { return {}; }).then(function (data) {
        return { status: response.status, data: data || {} };
      });
    }, function () {
      return { status: 0, data: { error: "network_error", message: "The payment service could not be reached." } };
    });
  }

  function showError(data, status) {
    $("error-detail").textContent = (data.message || "The payment service answered unexpectedly.") +
      " (" + (data.error || "HTTP " + status) + ")";
    show("result-error");
  }

  function showUnavailable(data) {
    $("unavailable-detail").textContent = data.message ? data.message + " (" + (data.error || "") + ")" : "";
    show("result-unavailable");
    announce("The payment service is unavailable.");
  }

  // -- step 1: the card ------------------------------------------------------

  function cardBody() {
    return {
      card_number: $("card_number").value.trim(),
      expiry: $("expiry").value.trim(),
      cvv: $("cvv").value.trim(),
      amount: order.dataset.amount,
      currency: order.dataset.currency
    };
  }

  function initiate(body) {
    var button = $("pay-button");
    lastCard = body;
    clearErrors(cardForm);
    setBusy(button, true, "Processing…");
    announce("Processing your payment…");
    return postJson("/payment/initiate", body).then(function (res) {
      setBusy(button, false);
      var data = res.data;
      if (res.status === 200 && data.status === "awaiting_otp") {
        startOtp(data);
      } else if (data.status === "otp_unavailable" || data.error === "otp_unavailable") {
        // 200 when failures are silent, 503 when they are loud: the participant reads the
        // same words, the server's own (the message is written once, in app/errors.py).
        $("otp-unavailable-message").textContent = data.message;
        show("result-otp-unavailable");
        announce(data.message);
      } else if (res.status === 400 && data.error === "validation_error") {
        show("step-card", $("card_number"));
        showFieldErrors(cardForm, data.fields || {}, "form-error");
      } else if (res.status === 503 || res.status === 0) {
        showUnavailable(data);
      } else {
        showError(data, res.status);
      }
    });
  }

  cardForm.addEventListener("submit", function (event) {
    event.preventDefault();
    initiate(cardBody());
  });

  // Gentle formatting as a hint only: groups of four, and the slash in MM/YY.
  $("card_number").addEventListener("blur", function (event) {
    var digits = event.target.value.replace(/[\s-]/g, "");
    if (/^[0-9]{12,19}$/.test(digits)) { event.target.value = digits.replace(/(.{4})(?=.)/g, "$1 "); }
  });
  $("expiry").addEventListener("input", function (event) {
    if (event.inputType === "insertText" && /^[0-9]{2}$/.test(event.target.value)) { event.target.value += "/"; }
  });

  // -- step 2: the one-time password ---------------------------------------

  function startOtp(data) {
    payment = { payment_id: data.payment_id, otp: data.otp };
    $("demo-otp").textContent = data.otp;
    $("otp").value = "";
    clearErrors(otpForm);
    startCountdown(data.otp_expires_in);
    show("step-otp", $("otp"));
    announce("Enter the one-time password. Demo code: " + data.otp.split("").join(" "));
  }

  function startCountdown(seconds) {
    var until = Date.now() + seconds * 1000;
    stopCountdown();
    function tick() {
      var left = Math.max(0, Math.round((until - Date.now()) / 1000));
      $("otp-expires").textContent = Math.floor(left / 60) + ":" + String(left % 60).padStart(2, "0");
    }
    tick();
    countdown = window.setInterval(tick, 1000);
  }

  function stopCountdown() {
    if (countdown) { window.clearInterval(countdown); countdown = null; }
  }

  $("use-demo-otp").addEventListener("click", function () {
    $("otp").value = payment ? payment.otp : "";
    $("otp").focus();
  });

  otpForm.addEventListener("submit", function (event) {
    event.preventDefault();
    var button = $("verify-button");
    clearErrors(otpForm);
    setBusy(button, true, "Confirming…");
    announce("Confirming your payment…");
    postJson("/payment/verify-otp", { payment_id: payment.payment_id, otp: $("otp").value.trim() })
      .then(function (res) {
        setBusy(button, false);
        var data = res.data;
        if (res.status === 200 && data.status === "succeeded") {
          stopCountdown();
          $("success-amount").textContent = money(data.amount, data.currency);
          $("success-id").textContent = data.payment_id;
          show("result-success");
          announce("Payment successful.");
        } else if (res.status === 400 && data.error === "invalid_otp") {
          var left = data.attempts_left;
          showFieldErrors(otpForm, {
            otp: "is wrong" + (typeof left === "number" ? ": " + left + (left === 1 ? " attempt" : " attempts") + " left" : "")
          });
        } else if (res.status === 400 && data.error === "validation_error") {
          showFieldErrors(otpForm, { otp: "must be the 6 digits you received" });
        } else if (res.status === 423) {
          stopCountdown();
          show("result-locked");
          announce("Payment locked.");
        } else if (res.status === 410) {
          stopCountdown();
          show("result-expired");
          announce("The code has expired.");
        } else if (res.status === 503 || res.status === 0) {
          showUnavailable(data);
        } else {
          showError(data, res.status);
        }
      });
  });

  // -- result screens --------------------------------------------------------

  document.addEventListener("click", function (event) {
    var action = event.target.closest("[data-action]");
    if (!action) { return; }
    if (action.dataset.action === "retry" && lastCard) {
      show("step-card", $("pay-button"));
      initiate(lastCard);
    } else if (action.dataset.action === "restart") {
      stopCountdown();
      payment = null;
      clearErrors(cardForm);
      show("step-card", $("card_number"));
      announce("");
    }
  });
})();
