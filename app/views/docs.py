"""API docs: /openapi.json and a Swagger UI page served from the wheel (no CDN)."""

from __future__ import annotations

from flask import Blueprint, jsonify, send_from_directory
from swagger_ui_bundle import swagger_ui_path

from ..openapi import build_spec

bp = Blueprint("docs", __name__)

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>PayGate API</title>
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
    """Swagger UI's own files, shipped inside the swagger-ui-bundle wheel."""
    return send_from_directory(str(swagger_ui_path), filename)
