"""PayGate Chaos Kit: a demo payment gateway whose OTP step fails silently under load."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    from flask import Flask


def create_app(config: dict | None = None) -> Flask:
    """Build the app. `config` overrides settings (tests); nothing connects here.

    Keys of `config` are Settings fields (mongo_url, redis_url, key_prefix, ...),
    plus START_BACKGROUND=False to keep the audit drainer thread from starting.
    """
    # Imported here, not at the top: `import app.store` (and the other domain modules) must not need Flask.
    from flask import Flask
    from flask.json.provider import DefaultJSONProvider

    from . import instrumentation, kit, security, tracing
    from .config import load_settings
    from .views import admin, board, docs, errors, ops, pages, payments

    config = dict(config or {})
    start_background = config.pop("START_BACKGROUND", True)
    settings = load_settings(overrides=config)

    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    cast(DefaultJSONProvider, app.json).sort_keys = False  # answers keep the order they are written in
    _init_logging()

    # Before the kit: pymongo's instrumentation must be in place before its client is made.
    tracing.init_app(app, settings)
    kit.init_app(app, settings, start_background=start_background)
    instrumentation.init_app(app)
    security.init_app(app)
    for module in (payments, ops, admin, docs, pages, board):
        app.register_blueprint(module.bp)

    errors.init_app(app)
    return app


def _init_logging() -> None:
    """Give the app's log lines a time and a level (gunicorn configures only its own loggers)."""
    log = logging.getLogger("paygate")
    log.setLevel(logging.INFO)
    if not log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s [%(process)d] %(levelname)s %(name)s: %(message)s"))
        log.addHandler(handler)
