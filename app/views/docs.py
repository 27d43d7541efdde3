"""API docs: /openapi.json and a Swagger UI page served from the wheel (no CDN)."""

from __future__ import annotations

from pathlib import Path

import flask_swagger_ui  # type: ignore[import-untyped]  # ships no type information
from flask import Blueprint, jsonify, send_from_directory

from ..openapi import build_spec

bp = Blueprint("docs", __name__)

# Only Swagger UI's built files are used from flask-swagger-ui; its blueprint's
# page has inline script, which our Content-Security-Policy forbids.
SWAGGER_UI_DIST = Path(flask_swagger_ui.__file__).parent / "dist"

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>PayGate API</title>
<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">
<link rel="stylesheet" href="/docs/static/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="/docs/static/swagger-ui-bundle.js"></script>
<script src="/docs/static/docs-init.js"></script>
</body></html>"""

_INIT = "window.ui = SwaggerUIBundle({url: '/openapi.json', dom_id: '#swagger-ui'});\n"


@bp.get("/openapi.json")
def openapi_json():
    """The OpenAPI document."""
    return jsonify(build_spec())


@bp.get("/docs")
def docs_page():
    """Swagger UI for the API."""
    return _PAGE


@bp.get("/docs/static/docs-init.js")
def docs_init():
    """Starts Swagger UI (a file, not inline script, so the CSP can forbid inline code)."""
    return _INIT, 200, {"Content-Type": "text/javascript"}


@bp.get("/docs/static/<path:filename>")
def docs_static(filename: str):
    """Swagger UI's own files, shipped inside the flask-swagger-ui wheel."""
    return send_from_directory(SWAGGER_UI_DIST, filename)
