"""The edge: every error becomes a JSON answer here, through one `error_response`."""

from __future__ import annotations

import logging

from flask import Flask, jsonify
from werkzeug import exceptions as http

from ..errors import AppError, BodyTooLarge, MethodNotAllowed, NotFound, generic
from ..tracing import annotate

log = logging.getLogger("paygate.errors")

_HTTP_ERRORS = {http.NotFound: NotFound, http.MethodNotAllowed: MethodNotAllowed,
                http.RequestEntityTooLarge: BodyTooLarge}


def error_response(err: AppError):
    """Turn a domain error into a JSON response with a machine-readable `error`."""
    body = {"error": err.code, "message": err.message, **err.details}
    annotate(status=err.code)  # the outcome on the request's span: searchable in the trace UI
    headers = {"Retry-After": str(err.retry_after)} if err.retry_after is not None else {}
    return jsonify(body), err.status, headers


def http_error_response(err: http.HTTPException):
    """Werkzeug's own errors (404, 405, 413, ...) in the same JSON shape."""
    mapped = _HTTP_ERRORS.get(type(err))
    if mapped is not None:
        return error_response(mapped())
    code = (err.name or "error").lower().replace(" ", "_")
    return error_response(generic(err.code or 500, code, err.description or err.name))


def unexpected_error_response(err: Exception):
    """A bug: logged with its traceback, answered as JSON without internals."""
    log.exception("unhandled error", exc_info=err)
    return error_response(generic(500, "internal_error", "An unexpected error occurred."))


def init_app(app: Flask) -> None:
    """Register the three handlers: domain errors, Werkzeug's HTTP errors, anything else."""
    app.register_error_handler(AppError, error_response)
    app.register_error_handler(http.HTTPException, http_error_response)
    app.register_error_handler(Exception, unexpected_error_response)
