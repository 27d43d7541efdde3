"""Locust traffic for the workshop: shoppers paying with the demo's test card.

    locust -f loadtest/locustfile.py --config loadtest/locust.conf --host http://127.0.0.1:8000

`make up` starts the web UI on :8089 already pointed at the app, with the
workshop load shapes of loadtest/shapes.py to pick from. A silent OTP failure
(HTTP 200, status `otp_unavailable`) is recorded as a failure named
"OTP unavailable", so the UI's Failures tab shows it apart from HTTP errors.
"""

from __future__ import annotations

import random

from locust import HttpUser, events, task

from loadtest.checkout import card_payload


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
    parser.add_argument("--think-time", type=float, default=1.0, env_var="LOCUST_THINK_TIME",
                        include_in_web_ui=True,
                        help="Mean seconds a shopper waits between checkouts (0 = back to back)")


class CheckoutUser(HttpUser):
    """A shopper: opens the checkout page once, then pays again and again."""

    def wait_time(self) -> float:
        """Think time between checkouts, uniform in 0.5–1.5 × --think-time."""
        options = self.environment.parsed_options
        think = getattr(options, "think_time", 1.0) if options else 1.0
        return random.uniform(0.5, 1.5) * think if think > 0 else 0.0

    def on_start(self) -> None:
        """Load the checkout page, as a browser would before the first payment."""
        self.client.get("/", name="checkout page")

    @task
    def checkout(self) -> None:
        """Initiate with the test card, then type the OTP and check the payment."""
        with self.client.post("/payment/initiate", json=card_payload(), name="/payment/initiate",
                              catch_response=True) as r:
            # Non-2xx answers fail on their own as HTTP errors; only the 200 silent failure needs us.
            if r.status_code != 200:
                return
            body = r.json()
            if body.get("status") == "otp_unavailable":
                r.failure(OtpUnavailable())
                return
        v = self.client.post("/payment/verify-otp", json={"payment_id": body["payment_id"], "otp": body["otp"]},
                             name="/payment/verify-otp")
        if v.status_code != 200:
            return
        # name= groups every payment id under one row in the statistics.
        with self.client.get(f"/payment/{body['payment_id']}", name="/payment/[id]", catch_response=True) as s:
            if s.status_code == 200 and s.json().get("status") != "succeeded":
                s.failure(PaymentNotSucceeded(s.json().get("status")))
