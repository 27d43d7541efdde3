"""Configuration from the environment, checked once at start (fail fast)."""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, fields
from typing import Any
from urllib.parse import unquote, unquote_plus, urlsplit

# The persistence modes, each with the console's one-line description: the one list that
# validation, OpenAPI, the console and the write policies (app/store/modes.py) follow.
MODES = {
    "original": "Fast: two writes on the critical path",
    "audit": "Two delayed audit writes on the critical path: the chaos",
    "audit-async": "The fix: audit records written off the critical path",
}


@dataclass(frozen=True)
class Knob:
    """A knob a facilitator can turn at runtime: its default and, for numbers, its limits."""

    default: int | bool
    low: int | None = None
    high: int | None = None


# Limits keep a typo in the console from freezing the room (a 60 s delay).
# The one table of knobs: validation, OpenAPI, /admin/knobs and the console follow it.
KNOBS = {
    "write_latency_ms": Knob(15, 0, 1000),
    "audit_delay_ms": Knob(100, 0, 2000),
    "contention_ms_per_write": Knob(50, 0, 1000),
    "otp_timeout_ms": Knob(400, 50, 10000),
    "silent_failures": Knob(True),
    # Trace links on participants' pages (board, checkout): hidden until the facilitator's hint.
    "reveal_traces": Knob(False),
}
KNOB_DEFAULTS = {name: knob.default for name, knob in KNOBS.items()}
KNOB_LIMITS = {name: (knob.low, knob.high) for name, knob in KNOBS.items() if knob.low is not None}


class ConfigError(ValueError):
    """A configuration value is missing or malformed."""


@dataclass(frozen=True)
class Settings:
    """Effective settings of one app instance."""

    mongo_url: str | None = None
    mongo_db: str = "paygate"
    # Where phones in the room open the checkout (the board's QR code); by default this machine's LAN address.
    public_url: str | None = None
    # The embedded store, used when no MONGO_URL is set; shared by every worker on this machine.
    sqlite_path: str = ".cache/paygate.sqlite3"
    redis_url: str | None = None
    # The Locust web UI the console's load phases drive (GET/PUT /admin/load); unset: no load control.
    locust_url: str | None = None
    admin_token: str = ""
    secret_key: str = ""
    key_prefix: str = "paygate:"
    otp_ttl_seconds: int = 300
    max_body_bytes: int = 16 * 1024
    # How long a store call may wait for the database (MongoDB or the SQLite file) before a 503.
    store_timeout_ms: int = 1000
    redis_timeout_ms: int = 500
    # OpenTelemetry: off installs nothing; on without an endpoint keeps the spans (and X-Trace-Id), exports none.
    tracing: bool = True
    zipkin_endpoint: str | None = None
    service_name: str = "paygate"
    # The trace UI the room opens (Zipkin's, ending in /zipkin/): the base of the pages' trace links.
    traces_ui_url: str | None = None
    # Writes outlive their requests in `audit`; enough threads that they pile up
    # in the contention model (the lesson) rather than in a queue.
    write_threads: int = 1024

    @property
    def embedded(self) -> bool:
        """True when the payment store is the embedded SQLite file (no MONGO_URL)."""
        return not self.mongo_url

    def redacted(self) -> dict:
        """The settings with secrets and URL passwords hidden, for /debug/config."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in ("admin_token", "secret_key"):
                value = "***" if value else ""
            elif f.name.endswith("_url") and value:
                value = redact_url(value)
            out[f.name] = value
        return out


# Query options that hold a secret: password=, ssl_password=, tlsCertificateKeyFilePassword=,
# token=, ... (a key *file* is a path, not a secret).
_SECRET_NAME = re.compile(r"pass|pwd|secret|token|credential|key(?!file)|signature|^auth$|^sig$", re.I)
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):(//)?")


def redact_url(url: str) -> str:
    """Hide every credential in a URL: the password of its user, secret query options.

    Takes any form the kit's clients accept (several MongoDB hosts, IPv6, Redis
    over a unix socket, secrets in the query) and never raises: what it cannot
    read with certainty it hides whole.
    """
    try:
        return _redact(url)
    except Exception:  # /debug/config must answer; an unreadable URL shows nothing
        return "***"


def _redact(url: str) -> str:
    if not url:
        return url
    match = _SCHEME.match(url)
    if not match:
        return "***"  # not a URL: nothing tells which part of it is secret
    head, rest = match.group(0), url[match.end():]
    # The authority (after //) ends at the first / ? or #; the user's part at its last @.
    authority = min((i for i in map(rest.find, "/?#") if i >= 0), default=len(rest)) if match.group(2) else 0
    last_at = rest.rfind("@")
    if last_at >= authority and ":" in rest[:last_at]:
        # An @ past the authority with a colon before it: a password holding an unescaped
        # / ? or #, or an @ in an option. Clients disagree on which; show none of it.
        return head + "***"
    at = rest.rfind("@", 0, authority)
    if at >= 0:
        user, colon, _ = rest[:at].partition(":")
        head += (user + ":***" if colon else rest[:at]) + "@"  # a user name alone is no secret
        rest = rest[at + 1:]
    cut = min((i for i in map(rest.find, "?#") if i >= 0), default=len(rest))
    return head + rest[:cut + 1] + _redact_options(rest[cut + 1:])


def _redact_options(query: str) -> str:
    """name=value options, separated by & or ; (MongoDB takes both), with secret values hidden."""
    parts = re.split(r"([&;])", query)
    for i in range(0, len(parts), 2):
        name, eq, value = parts[i].partition("=")
        key = unquote_plus(name)
        if eq and _SECRET_NAME.search(key):
            parts[i] = f"{name}=***"
        elif eq and key.lower() == "authmechanismproperties":
            # NAME:value pairs, e.g. SERVICE_NAME:mongodb,AWS_SESSION_TOKEN:<secret>
            props = [prop.partition(":") for prop in unquote(value).split(",")]
            parts[i] = f"{name}=" + ",".join(f"{k}:***" if c and _SECRET_NAME.search(k) else k + c + v
                                             for k, c, v in props)
    return "".join(parts)


def _int(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = env.get(name)
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if not low <= value <= high:
        raise ConfigError(f"{name} must be between {low} and {high}, got {value}")
    return value


def _url(env: Mapping[str, str], name: str, schemes: tuple[str, ...]) -> str | None:
    raw = env.get(name) or None
    if raw and urlsplit(raw).scheme not in schemes:
        raise ConfigError(f"{name} must start with {' or '.join(s + '://' for s in schemes)}")
    return raw


def _switch(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = (env.get(name) or "").strip().lower()
    if not raw:
        return default
    if raw in ("on", "true", "1", "yes"):
        return True
    if raw in ("off", "false", "0", "no"):
        return False
    raise ConfigError(f"{name} must be on or off, got {raw!r}")


def ensure_shared_secrets(env: MutableMapping[str, str] = os.environ) -> None:
    """Generate ADMIN_TOKEN and PAYGATE_SECRET_KEY once if unset.

    Called in the gunicorn master before it forks, so every worker shares the
    same token (admin calls work on any worker) and the same key (an OTP issued
    by one worker verifies on another).
    """
    if not env.get("ADMIN_TOKEN"):
        env["ADMIN_TOKEN"] = secrets.token_urlsafe(18)
    if not env.get("PAYGATE_SECRET_KEY"):
        env["PAYGATE_SECRET_KEY"] = secrets.token_urlsafe(32)


def load_settings(env: Mapping[str, str] | None = None, overrides: dict[str, Any] | None = None) -> Settings:
    """Read settings from the environment, raising ConfigError on bad values."""
    env = dict(os.environ if env is None else env)
    values: dict[str, Any] = dict(
        mongo_url=_url(env, "MONGO_URL", ("mongodb", "mongodb+srv")),
        mongo_db=env.get("MONGO_DB") or "paygate",
        sqlite_path=env.get("PAYGATE_SQLITE_PATH") or ".cache/paygate.sqlite3",
        public_url=_url(env, "PUBLIC_URL", ("http", "https")),
        redis_url=_url(env, "REDIS_URL", ("redis", "rediss", "unix")),
        locust_url=_url(env, "LOCUST_URL", ("http", "https")),
        admin_token=env.get("ADMIN_TOKEN") or "",
        secret_key=env.get("PAYGATE_SECRET_KEY") or "",
        key_prefix=env.get("PAYGATE_KEY_PREFIX") or "paygate:",
        store_timeout_ms=_int(env, "STORE_TIMEOUT_MS", 1000, 100, 10000),
        redis_timeout_ms=_int(env, "REDIS_TIMEOUT_MS", 500, 50, 10000),
        write_threads=_int(env, "WRITE_THREADS", 1024, 4, 4096),
        tracing=_switch(env, "TRACING", True),
        zipkin_endpoint=_url(env, "OTEL_EXPORTER_ZIPKIN_ENDPOINT", ("http", "https")),
        service_name=env.get("OTEL_SERVICE_NAME") or "paygate",
        traces_ui_url=_url(env, "TRACES_UI_URL", ("http", "https")),
    )
    values.update(overrides or {})
    if not values["admin_token"]:
        values["admin_token"] = secrets.token_urlsafe(18)
    if not values["secret_key"]:
        values["secret_key"] = secrets.token_urlsafe(32)
    return Settings(**values)
