"""The OpenAPI 3.1 document, built from the same pydantic models that validate requests."""

from __future__ import annotations

from importlib.metadata import version

from pydantic.json_schema import models_json_schema

from .config import MODES
from .loadctl import PHASES, LoadChange, PersonaChange
from .validation import InitiateRequest, KnobsPatch, ModeChange, ResetRequest, VerifyRequest

_MODELS = (InitiateRequest, VerifyRequest, ModeChange, KnobsPatch, ResetRequest, LoadChange, PersonaChange)

_ERROR = {"type": "object", "required": ["error"],
          "properties": {"error": {"type": "string"}, "message": {"type": "string"}},
          "additionalProperties": True}
_OBJECT = {"type": "object", "additionalProperties": True}


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict:
    text = {400: "Invalid input (validation_error, invalid_json)", 401: "Missing or wrong admin token",
            404: "Unknown payment", 409: "No OTP was issued (for PATCH /admin/load: no load phase runs)",
            410: "OTP expired", 413: "Body too large",
            415: "Body is not JSON", 423: "Locked after 3 wrong OTPs",
            503: "A backend is unavailable (or the OTP is unavailable with silent_failures=false; "
                 "for /admin/load: LOCUST_URL is unset or Locust does not answer)"}
    return {str(c): _json(_ERROR, text[c]) for c in codes}


def _op(summary: str, ok: dict, *errors: int, body: str | None = None, auth: bool = False,
        tag: str = "payments") -> dict:
    op = {"summary": summary, "tags": [tag], "responses": {"200": _json(ok, "OK"), **_errors(*errors)}}
    if body:
        op["requestBody"] = {"required": body != "ResetRequest",
                             "content": {"application/json": {"schema": _ref(body)}}}
    if auth:
        op["security"] = [{"bearer": []}]
    return op


def build_spec() -> dict:
    """The whole OpenAPI document."""
    _, defs = models_json_schema([(m, "validation") for m in _MODELS], ref_template="#/components/schemas/{model}")
    schemas = {**defs.get("$defs", {}), "Error": _ERROR}
    initiated = {"type": "object", "required": ["payment_id", "status"], "properties": {
        "payment_id": {"type": "string"}, "status": {"enum": ["awaiting_otp", "otp_unavailable"]},
        "otp": {"type": "string"}, "otp_expires_in": {"type": "integer"}, "ready_ms": {"type": "number"},
        "message": {"type": "string"}}}
    mode_state = {"type": "object", "required": ["mode"], "properties": {
        "mode": {"enum": list(MODES)}}, "additionalProperties": True}
    load_state = {"type": "object", "required": ["phase", "locust", "plan"], "properties": {
        "phase": {"enum": [*PHASES, None]}, "persona": {"type": ["string", "null"]},
        "users": {"type": ["integer", "null"]}, "elapsed_seconds": {"type": ["number", "null"]},
        "locust": _OBJECT, "plan": _OBJECT}, "additionalProperties": True}
    payment_id = {"name": "payment_id", "in": "path", "required": True, "schema": {"type": "string"}}
    admin_write = (400, 401, 413, 415, 503)
    paths = {
        "/payment/initiate": {"post": _op("Create a payment and issue its OTP", initiated,
                                          400, 413, 415, 503, body="InitiateRequest")},
        "/payment/verify-otp": {"post": _op("Verify the OTP and charge once", _OBJECT,
                                            400, 404, 409, 410, 413, 415, 423, 503, body="VerifyRequest")},
        "/payment/{payment_id}": {"get": {**_op("Payment status (never the OTP)", _OBJECT, 404, 503),
                                          "parameters": [payment_id]}},
        "/health": {"get": _op("Liveness (stays green during the silent failure)", _OBJECT, tag="ops")},
        "/ready": {"get": _op("Readiness: the payment store and Redis answer", _OBJECT, 503, tag="ops")},
        "/debug/config": {"get": _op("Effective configuration, secrets redacted", _OBJECT, tag="ops")},
        "/admin/db-mode": {
            "get": _op("The persistence mode in force", mode_state, tag="admin"),
            "put": _op("Flip the persistence mode", mode_state, *admin_write, body="ModeChange", auth=True,
                       tag="admin"),
            "post": _op("Flip the persistence mode (alias of PUT)", mode_state, *admin_write, body="ModeChange",
                        auth=True, tag="admin"),
        },
        "/admin/knobs": {
            "get": _op("The runtime knobs with defaults and limits", _OBJECT, tag="admin"),
            "patch": _op("Change some knobs", _OBJECT, *admin_write, body="KnobsPatch", auth=True, tag="admin"),
        },
        "/admin/reset": {"post": _op("Mode original, default knobs", mode_state, *admin_write,
                                     body="ResetRequest", auth=True, tag="admin")},
        "/admin/history": {"get": _op("The last flips and knob changes", _OBJECT, 503, tag="admin")},
        "/admin/load": {
            "get": _op("The load phase Locust runs now: shoppers, persona, elapsed time, Locust's figures, the plan",
                       load_state, 503, tag="admin"),
            "put": _op("Start a load phase through Locust's REST API with the plan's shoppers (statistics reset), "
                       "or stop; it also sets the contention knob to the plan's for the phase", load_state,
                       *admin_write, body="LoadChange", auth=True, tag="admin"),
            "patch": _op("The running phase's shoppers take up another persona, with no pause in the load",
                         load_state, *admin_write, 409, body="PersonaChange", auth=True, tag="admin"),
        },
        "/admin/token": {"get": _op("Check the bearer token: 200 when it is the admin token", _OBJECT, 401,
                                    auth=True, tag="admin")},
        "/board/data": {"get": _op("Live board figures: mode, OTP success, ready p95, writes in flight, load and "
                                   "retries, 5 minutes of history, trace links once revealed", _OBJECT, 503, tag="board")},
        "/board/trace-link": {"get": {**_op("The link to one checkout's trace (null until the facilitator reveals "
                                            "traces)", _OBJECT, 400, tag="board"),
                                      "parameters": [{"name": "trace_id", "in": "query", "required": True,
                                                      "schema": {"type": "string",
                                                                 "pattern": "^[0-9a-fA-F]{16}([0-9a-fA-F]{16})?$"}}]}},
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "PayGate Chaos Kit", "version": version("paygate-chaos-kit"),
                 "description": "A demo payment gateway whose OTP step fails silently under load."},
        "paths": paths,
        "components": {"schemas": schemas,
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    }
