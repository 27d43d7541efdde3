"""PayGate Chaos Kit: a demo payment gateway whose OTP step fails silently under load."""

from __future__ import annotations

import logging

from flask import Flask
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound, RequestEntityTooLarge

__version__ = "1.0.0"


def create_app(config: dict | None = None) -> Flask:
    """Build the app. `config` overrides settings (tests); nothing connects here.

    Keys of `config` are Settings fields (mongo_url, redis_url, key_prefix, ...),
    plus START_BACKGROUND=False to keep the audit drainer thread from starting.
    """
    from . import errors, instrumentation, kit
    from .config import load_settings
    from .views import admin, docs, ops, pages, payments

    config = dict(config or {})
    start_background = config.pop("START_BACKGROUND", True)
    settings = load_settings(overrides=config)

    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.json.sort_keys = False
    logging.getLogger("paygate").setLevel(logging.INFO)

    kit.init_app(app, settings, start_background=start_background)
    instrumentation.init_app(app)
    for module in (payments, ops, admin, docs, pages):
        app.register_blueprint(module.bp)

    app.register_error_handler(errors.AppError, errors.error_response)
    app.register_error_handler(HTTPException, _http_error)
    return app


def _http_error(err: HTTPException):
    """Werkzeug's own errors (404, 405, 413, ...) as the same JSON shape."""
    from . import errors

    mapped = {
        NotFound: errors.NotFound,
        MethodNotAllowed: errors.MethodNotAllowed,
        RequestEntityTooLarge: errors.BodyTooLarge,
    }.get(type(err))
    if mapped is None:
        mapped = type("HttpError", (errors.AppError,), {"status": err.code or 500,
                                                        "code": (err.name or "error").lower().replace(" ", "_"),
                                                        "message": err.description or ""})
    return errors.error_response(mapped())
