"""Request bodies at the edge: the raw HTTP body checked, then parsed into a model of app/validation.py."""

from __future__ import annotations

import json

from flask import Request
from pydantic import BaseModel, ValidationError
from werkzeug.exceptions import RequestEntityTooLarge

from ..errors import BodyTooLarge, InvalidJson, UnsupportedMediaType, ValidationFailed
from ..validation import field_errors


def parse_body(request: Request, model: type[BaseModel], allow_empty: bool = False):
    """Parse the JSON body of `request` into `model`, or raise a domain error."""
    try:
        raw = request.get_data(cache=True)
    except RequestEntityTooLarge:
        raise BodyTooLarge() from None
    limit = request.max_content_length
    if limit is not None and request.content_length is None and len(raw) >= limit:
        # A chunked body (no Content-Length) is cut at the limit without an error
        # by Werkzeug; parsing the truncated part would answer a misleading 400.
        raise BodyTooLarge()
    if not raw.strip() and allow_empty:
        data = {}
    else:
        if not request.mimetype or request.mimetype != "application/json":
            raise UnsupportedMediaType()
        try:
            data = json.loads(raw)  # what request.get_json does, without its layers
        except Exception:  # bad JSON, bad UTF-8, nesting too deep
            raise InvalidJson("The body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise InvalidJson()
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise ValidationFailed(field_errors(err)) from None
