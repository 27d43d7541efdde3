"""Domain errors, and the one place where they become HTTP answers."""

from __future__ import annotations

import logging

from flask import jsonify
from werkzeug import exceptions as http

log = logging.getLogger("paygate.errors")


class AppError(Exception):
    """An error a client can act on: a status, a machine-readable code, details."""

    status = 400
    code = "bad_request"
    message = "Bad request."

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


class OtpUnavailable(AppError):
    """The loud variant of the silent failure (knob silent_failures=false); its message is the
    one the shopper reads in both variants, the only place it is written."""

    status, code = 503, "otp_unavailable"
    message = "Unable to generate OTP. Please try again."


def error_response(err: AppError):
    """Turn a domain error into a JSON response with a machine-readable `error`."""
    body = {"error": err.code, "message": err.message, **err.details}
    return jsonify(body), err.status


_HTTP_ERRORS = {http.NotFound: NotFound, http.MethodNotAllowed: MethodNotAllowed,
                http.RequestEntityTooLarge: BodyTooLarge}


def http_error_response(err: http.HTTPException):
    """Werkzeug's own errors (404, 405, 413, ...) in the same JSON shape."""
    mapped = _HTTP_ERRORS.get(type(err))
    if mapped is not None:
        return error_response(mapped())
    code = (err.name or "error").lower().replace(" ", "_")
    return error_response(_generic(err.code or 500, code, err.description or err.name))


def unexpected_error_response(err: Exception):
    """A bug: logged with its traceback, answered as JSON without internals."""
    log.exception("unhandled error", exc_info=err)
    return error_response(_generic(500, "internal_error", "An unexpected error occurred."))


def _generic(status: int, code: str, message: str) -> AppError:
    """An AppError for a status that has no class of its own."""
    err = AppError(message)
    err.status, err.code = status, code
    return err
