"""The store interface: the domain verbs the payment service needs."""

from __future__ import annotations

from typing import Protocol


class PaymentStore(Protocol):
    """Persistence of payment intents. One implementation per persistence mode.

    `create_intent` and `mark_awaiting_otp` are the write path whose timing the
    modes differ in; the other verbs behave the same in every mode.
    """

    mode: str

    def create_intent(self, intent: dict) -> None:
        """Insert a new intent with status `created`."""

    def mark_awaiting_otp(self, payment_id: str) -> None:
        """Move a created intent to `awaiting_otp`."""

    def find_payment(self, payment_id: str) -> dict | None:
        """The intent document, or None."""

    def attach_otp(self, payment_id: str, otp_hash: str, expires_at: float) -> bool:
        """Store an OTP's hash on a ready intent that has none yet; False if it could not."""

    def claim_attempt(self, payment_id: str, max_attempts: int) -> int | None:
        """Use up one of the OTP attempts (1..max_attempts); None when all are used."""

    def lock(self, payment_id: str) -> None:
        """Lock a payment whose attempts are used up."""

    def charge_once(self, payment: dict, now: float) -> dict:
        """Charge the payment exactly once, mark it `succeeded`; returns the charge."""

    def ping(self) -> None:
        """Raise StoreUnavailable unless the database answers."""
