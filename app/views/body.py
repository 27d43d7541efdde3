"""Request bodies at the edge: the raw HTTP body checked, then parsed into a model of app/validation.py."""

from __future__ import annotations

import json

from flask import Request
from pydantic import BaseModel, ValidationError
from werkzeug.exceptions import RequestEntityTooLarge

from ..errors import CLOSE_CONNECTION, AppError, BodyTooLarge, InvalidJson, MalformedBody, UnsupportedMediaType, ValidationFailed
from ..validation import field_errors


def parse_body(request: Request, model: type[BaseModel], allow_empty: bool = False):
    """Parse the JSON body of `request` into `model`, or raise a domain error."""
    try:
        raw = request.get_data(cache=True)
    except RequestEntityTooLarge:
        raise BodyTooLarge() from None
    except AppError:  # the worker's read deadline passed (app/worker.py): 408
        request.environ[CLOSE_CONNECTION] = True
        raise
    except Exception:
        # The server reads a chunked body as the app asks for it: a bad chunk size, a chunk
        # without its CRLF, a bad or excess trailer field, or the connection closed mid-chunk
        # raises here (gunicorn's ParseException or NoMoreData, or Werkzeug's BadRequest for
        # some). The body is unusable, and what follows it must not be read as a request.
        request.environ[CLOSE_CONNECTION] = True
        raise MalformedBody() from None
    if request.content_length is not None and len(raw) < request.content_length:
        # A client that half-closes before sending all it announced: gunicorn hands over what
        # came, silently shorter. A truncated body is never processed.
        request.environ[CLOSE_CONNECTION] = True
        raise MalformedBody("The body is shorter than its Content-Length.")
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
