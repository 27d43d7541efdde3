"""Domain errors: what went wrong, with the status a client should see.

No Flask here: the store and the services raise these; `app/views/errors.py`,
the edge, is the one place they become HTTP answers.
"""

from __future__ import annotations

# Set in a request's WSGI environ when its connection must close after the answer: the rest of a
# body that broke its framing must never be read as the next request (app/worker.py honours it).
CLOSE_CONNECTION = "paygate.close_connection"


class AppError(Exception):
    """An error a client can act on: a status, a machine-readable code, details."""

    status = 400
    code = "bad_request"
    message = "Bad request."
    # Seconds a client should wait before trying again (a Retry-After header), where the server can tell.
    retry_after: int | None = None

    def __init__(self, message: str | None = None, **details):
        super().__init__(message or self.message)
        self.message = message or self.message
        self.details = details


class ValidationFailed(AppError):
    code, message = "validation_error", "Some fields are invalid."

    def __init__(self, fields: dict[str, str]):
        super().__init__(fields=fields)


class InvalidJson(AppError):
    code, message = "invalid_json", "The body must be a JSON object."


class MalformedBody(AppError):
    code, message = "malformed_body", "The body does not match its framing (Content-Length or chunked encoding)."


class RequestTimedOut(AppError):
    status, code, message = 408, "request_timeout", "The request was not received in time."


class UnsupportedMediaType(AppError):
    status, code, message = 415, "unsupported_media_type", "Send the body as application/json."


class BodyTooLarge(AppError):
    status, code, message = 413, "body_too_large", "The request body is too large."


class Unauthorized(AppError):
    status, code, message = 401, "unauthorized", "A valid admin bearer token is required."


class PaymentNotFound(AppError):
    status, code, message = 404, "payment_not_found", "No payment with that id."


class NotFound(AppError):
    status, code, message = 404, "not_found", "No such route."


class MethodNotAllowed(AppError):
    status, code, message = 405, "method_not_allowed", "That method is not allowed here."


class InvalidOtp(AppError):
    code, message = "invalid_otp", "The OTP is wrong."


class NoOtpIssued(AppError):
    status, code, message = 409, "no_otp", "No OTP was issued for this payment."


class OtpExpired(AppError):
    status, code, message = 410, "otp_expired", "The OTP has expired."


class PaymentLocked(AppError):
    status, code, message = 423, "locked", "Too many wrong OTPs: the payment is locked."


class StoreUnavailable(AppError):
    status, code, message = 503, "store_unavailable", "The payment store is unavailable."


class StateUnavailable(AppError):
    status, code, message = 503, "state_unavailable", "Redis is unreachable: the mode and knobs cannot change now."


class BoardUnavailable(AppError):
    status, code, message = 503, "board_unavailable", "Redis is unreachable: the board's figures cannot be read now."


class NotReady(AppError):
    status, code, message = 503, "not_ready", "A backend is unavailable."


class OtpUnavailable(AppError):
    """The loud variant of the silent failure (knob silent_failures=false); its message is the
    one the shopper reads in both variants, the only place it is written."""

    status, code = 503, "otp_unavailable"
    message = "Unable to generate OTP. Please try again."


def generic(status: int, code: str, message: str) -> AppError:
    """An AppError for a status that has no class of its own."""
    err = AppError(message)
    err.status, err.code = status, code
    return err
