"""Locust traffic for the workshop: shoppers paying with the demo's test card.

    locust -f loadtest/locustfile.py --config loadtest/locust.conf --host http://127.0.0.1:8000

`make up` starts the web UI on :8089 already pointed at the app, opening at the
load plan's healthy phase, with the workshop's rush shape (loadtest/shapes.py)
to pick from. The facilitator console (`/admin`) drives it through its REST API.

Three personas, chosen with --persona (a menu under the UI's *Custom parameters*):
`shopper` pays, and after a silent failure goes on to the next checkout after
its think time; `retrying` tries again at once, the way a person who reads
"Please try again" does, until it works (or up to --retry-tries tries in all);
`backoff` tries as often but waits before each retry, exponential backoff with
full jitter (the fix for retries that sustain the failure). The persona can
change while users run (POST /paygate/persona, the console's switch): each
shopper takes it up at its next try, with no pause in the load. Retries carry
`X-Retry-Of: <the failed try's payment_id>` and are counted apart, under
"/payment/initiate [retry]". A silent OTP failure (HTTP 200, status
`otp_unavailable`) is recorded as a failure named "OTP unavailable", so the
Failures tab shows it apart from HTTP errors.
"""

from __future__ import annotations

import math
import random

import gevent
from flask import Response, jsonify, request
from locust import HttpUser, events, task
from locust.runners import MasterRunner, WorkerRunner

from loadtest import plan as plans
from loadtest.checkout import card_payload, retry_after_seconds, retry_pause

PERSONAS = ("shopper", "retrying", "backoff")
INITIATE, RETRY = "/payment/initiate", "/payment/initiate [retry]"
PERSONA_MESSAGE = "paygate_persona"
PLAN = plans.load()


class OtpUnavailable(Exception):
    """The gateway answered but issued no OTP (the silent failure)."""

    def __repr__(self) -> str:
        # Locust shows repr(error) in its Failures tab: keep it the plain name.
        return "OTP unavailable"


class PaymentNotSucceeded(Exception):
    """The OTP was accepted but the payment's status did not become `succeeded`."""

    def __repr__(self) -> str:
        return f"payment not succeeded ({self.args[0] if self.args else '?'})"


@events.init_command_line_parser.add_listener
def _options(parser) -> None:
    parser.add_argument("--think-time", type=float, default=PLAN.think_seconds, env_var="LOCUST_THINK_TIME",
                        include_in_web_ui=True,
                        help="Mean seconds a shopper waits between checkouts (0 = back to back)")
    parser.add_argument("--persona", choices=PERSONAS, default="shopper", env_var="LOCUST_PERSONA",
                        include_in_web_ui=True,
                        help="shopper; retrying: tries again at once after a failed OTP; backoff: tries again "
                             "after exponential backoff with jitter")
    parser.add_argument("--retry-tries", type=int, default=0, env_var="LOCUST_RETRY_TRIES", include_in_web_ui=True,
                        help="Tries in all per checkout for the retrying and backoff personas (0: until it works)")
    # The UI opens at the load plan's healthy phase: pressing Start without typing is safe.
    # A default, not locust.conf: the plan is measured per machine (`make rehearse`).
    parser.set_defaults(num_users=PLAN.healthy_users)


def _option(environment, name: str, default):
    options = environment.parsed_options
    return getattr(options, name, default) if options else default


# Locust's start form keeps custom parameters in a folded section: this opens it once each time the form
# appears, so the think time and the persona are in sight when Start is pressed (folding it again stays).
OPEN_CUSTOM_PARAMETERS_JS = """
const opened = new WeakSet();
function openCustomParameters() {
  for (const summary of document.querySelectorAll('[aria-expanded="false"]')) {
    if (!opened.has(summary) && summary.textContent.trim() === "Custom parameters") {
      opened.add(summary);
      summary.click();
    }
  }
}
new MutationObserver(openCustomParameters).observe(document.body, { childList: true, subtree: true });
openCustomParameters();
"""


@events.init.add_listener
def _web_ui_additions(environment, **_) -> None:
    """The web UI's additions: GET /paygate/plan, the load plan this Locust runs, for the facilitator
    console; and the start form's custom parameters (think time, persona) unfolded.

    The app's image holds no loadtest/ (and `make rehearse` writes the plan beside this file),
    so the console asks the Locust it drives for the shoppers of each phase.
    """
    if environment.web_ui is None:
        return  # a worker, or a headless run

    @environment.web_ui.app.route("/paygate/open-parameters.js")
    def open_parameters_js():
        return Response(OPEN_CUSTOM_PARAMETERS_JS, mimetype="text/javascript")

    @environment.web_ui.app.after_request
    def _with_open_parameters(response):
        if request.path == "/" and response.mimetype == "text/html" and response.status_code == 200:
            page = response.get_data(as_text=True)
            response.set_data(page.replace("</body>", '<script src="/paygate/open-parameters.js"></script></body>', 1))
        return response

    @environment.web_ui.app.route("/paygate/plan")
    def paygate_plan():
        current = plans.load()
        return jsonify(phases={phase: current.users(phase) for phase in (*plans.PHASES, "rush")},
                       contention_ms={phase: current.contention(phase) for phase in (*plans.PHASES, "rush", "stop")},
                       think_seconds=current.think_seconds, rush_seconds=plans.RUSH_SECONDS,
                       quiet_users=current.quiet_users, source=plans.source(), measured=current.measured,
                       personas=list(PERSONAS), retry_tries=_option(environment, "retry_tries", 0))

    @environment.web_ui.app.post("/paygate/persona")
    def paygate_persona():
        persona = request.form.get("persona")
        if persona not in PERSONAS:
            return jsonify(success=False, message=f"persona must be one of {', '.join(PERSONAS)}"), 400
        _set_persona(environment, persona)
        if isinstance(environment.runner, MasterRunner):
            environment.runner.send_message(PERSONA_MESSAGE, persona)  # each worker's users, too
        return jsonify(success=True, persona=persona)


def _set_persona(environment, persona: str) -> None:
    if environment.parsed_options is not None:
        environment.parsed_options.persona = persona


@events.init.add_listener
def _persona_from_master(environment, **_) -> None:
    """A worker takes up a persona changed on the master (compose runs Locust as a master and workers)."""
    if isinstance(environment.runner, WorkerRunner):
        environment.runner.register_message(PERSONA_MESSAGE, lambda msg, **_: _set_persona(environment, msg.data))


class CheckoutUser(HttpUser):
    """A shopper: opens the checkout page once, then pays again and again (its persona says how)."""

    def wait_time(self) -> float:
        """Think time between checkouts, uniform in 0.5–1.5 × --think-time."""
        think = _option(self.environment, "think_time", PLAN.think_seconds)
        return random.uniform(0.5, 1.5) * think if think > 0 else 0.0

    def on_start(self) -> None:
        """Load the checkout page, as a browser would before the first payment; pay within one think time.

        Shoppers spawned together arrive over a think time, not in the same millisecond: their first
        tries all at once would be a rush of their own."""
        self.client.get("/", name="checkout page")
        think = _option(self.environment, "think_time", PLAN.think_seconds)
        if think > 0:
            gevent.sleep(random.uniform(0.0, think))

    @task
    def checkout(self) -> None:
        """Initiate with the test card (again after a failed OTP, for the retrying personas), then type the OTP."""
        body, retry_of, attempt = None, None, 0
        while True:
            body, failed_id, retry_after = self._initiate(retry_of)
            if body is not None or failed_id is None:
                break  # an OTP, or an error a retry cannot mend
            # The persona is read at every try: a switch (to backoff, say) reaches a shopper mid-checkout.
            persona = _option(self.environment, "persona", "shopper")
            limit = int(_option(self.environment, "retry_tries", 0)) or math.inf
            attempt += 1
            if persona == "shopper" or attempt >= limit:
                return
            retry_of = failed_id  # a loud 503's Retry-After is honoured by both retrying personas
            gevent.sleep(retry_pause(attempt - 1, backoff=persona == "backoff", retry_after=retry_after))
        if body is None:
            return
        v = self.client.post("/payment/verify-otp", json={"payment_id": body["payment_id"], "otp": body["otp"]},
                             name="/payment/verify-otp")
        if v.status_code != 200:
            return
        # name= groups every payment id under one row in the statistics.
        with self.client.get(f"/payment/{body['payment_id']}", name="/payment/[id]", catch_response=True) as s:
            if s.status_code == 200 and s.json().get("status") != "succeeded":
                s.failure(PaymentNotSucceeded(s.json().get("status")))

    def _initiate(self, retry_of: str | None) -> tuple[dict | None, str | None, float | None]:
        """One try: (the answer with its OTP, None, None), or (None, the failed payment's id, Retry-After
        seconds) when the OTP was unavailable, silently or loudly; (None, None, None) on any other error."""
        headers = {"X-Retry-Of": retry_of} if retry_of else None
        with self.client.post(INITIATE, json=card_payload(), name=RETRY if retry_of else INITIATE, headers=headers,
                              catch_response=True) as r:
            try:
                body = r.json()
            except ValueError:
                body = {}
            if not isinstance(body, dict):
                body = {}
            if r.status_code == 200 and body.get("status") == "otp_unavailable":
                r.failure(OtpUnavailable())
                return None, body.get("payment_id"), None
            if r.status_code == 503 and body.get("error") == "otp_unavailable":
                # The loud variant (silent_failures=false) already fails as an HTTP error.
                return None, body.get("payment_id"), retry_after_seconds(r.headers.get("Retry-After"))
            # Non-2xx answers fail on their own as HTTP errors.
            return (body, None, None) if r.status_code == 200 and "otp" in body else (None, None, None)

