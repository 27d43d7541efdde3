"""Request bodies as pydantic models: every field checked before any query."""

from __future__ import annotations

import re
import unicodedata
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated, Literal, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    ValidationError,
    create_model,
    field_validator,
)
from pydantic.json_schema import WithJsonSchema

from .cards import TEST_CARD, luhn_ok
from .config import KNOBS, MODES

MAX_AMOUNT = Decimal("10000")
PAYMENT_ID_PATTERN = r"^pay_[0-9a-f]{24}$"
Currency = Literal["USD", "EUR", "GBP"]
CURRENCIES = get_args(Currency)


# The one grammar of a text amount, stated in the OpenAPI document as it is checked here: ASCII
# digits with an optional fraction. No sign, exponent, underscore, space or other script's digits
# (Python's Decimal() would take all of those).
AMOUNT_PATTERN = r"^[0-9]+(\.[0-9]+)?$"
_AMOUNT_TEXT = re.compile(AMOUNT_PATTERN, re.ASCII)


def _to_decimal(value):
    # JSON numbers arrive as int/float (json.loads has already checked their grammar);
    # text must match AMOUNT_PATTERN; bools are not amounts.
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError("must be a number")
    if isinstance(value, str) and not _AMOUNT_TEXT.fullmatch(value):
        raise ValueError("must be a number, or a string of ASCII digits with an optional fraction (\"49.99\")")
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise ValueError("must be a number") from None
    if not amount.is_finite():
        raise ValueError("must be a number")
    return amount


Amount = Annotated[Decimal, BeforeValidator(_to_decimal), WithJsonSchema(
    {"anyOf": [{"type": "number"}, {"type": "string", "pattern": AMOUNT_PATTERN}]})]

# Characters that draw nothing although Unicode calls them letters or symbols: the Hangul
# fillers and the blank Braille pattern. Whitespace, controls, format characters (zero-width
# space and joiners, direction marks) and lone combining marks draw nothing either.
_BLANK_LOOKING = {"\u115f", "\u1160", "\u3164", "\uffa0", "\u2800"}
_INVISIBLE_CATEGORIES = ("C", "Z", "M")


def _visible(value: str) -> str:
    if not any(c not in _BLANK_LOOKING and not c.isspace()
               and not unicodedata.category(c).startswith(_INVISIBLE_CATEGORIES) for c in value):
        raise ValueError("must contain a visible character")
    return value


class _Body(BaseModel):
    # strict: an object or array where a string is expected is an error, never a query.
    model_config = ConfigDict(strict=True, extra="forbid")


class InitiateRequest(_Body):
    """POST /payment/initiate."""

    card_number: str = Field(max_length=40, examples=[TEST_CARD])
    expiry: str = Field(max_length=5, examples=["12/30"], description="MM/YY, not in the past")
    cvv: str = Field(max_length=4, examples=["123"])
    amount: Amount = Field(
        default=Decimal("49.99"), description="> 0, at most 10000, at most two decimals: a JSON number, or a string of ASCII digits"
    )
    currency: Currency = "USD"

    @field_validator("card_number")
    @classmethod
    def _card(cls, v: str) -> str:
        digits = re.sub(r"[ -]", "", v)  # spaces and dashes as printed on cards
        if not re.fullmatch(r"[0-9]{12,19}", digits):
            raise ValueError("must be 12 to 19 digits")
        if not luhn_ok(digits):
            raise ValueError("is not a valid card number (Luhn check failed)")
        return digits

    @field_validator("expiry")
    @classmethod
    def _expiry(cls, v: str) -> str:
        m = re.fullmatch(r"(0[1-9]|1[0-2])/([0-9]{2})", v)
        if not m:
            raise ValueError("must be MM/YY")
        now = datetime.now(UTC)
        if (2000 + int(m[2]), int(m[1])) < (now.year, now.month):
            raise ValueError("is in the past")
        return v

    @field_validator("cvv")
    @classmethod
    def _cvv(cls, v: str) -> str:
        if not re.fullmatch(r"[0-9]{3,4}", v):
            raise ValueError("must be 3 or 4 digits")
        return v

    @field_validator("amount")
    @classmethod
    def _amount(cls, v: Decimal) -> Decimal:
        if v <= 0:
            raise ValueError("must be greater than 0")
        if v > MAX_AMOUNT:
            raise ValueError("must be at most 10000")
        if v != v.quantize(Decimal("0.01")):
            raise ValueError("must have at most two decimals")
        return v.quantize(Decimal("0.01"))


class VerifyRequest(_Body):
    """POST /payment/verify-otp."""

    payment_id: str = Field(pattern=PAYMENT_ID_PATTERN, examples=["pay_0123456789abcdef01234567"])
    otp: str = Field(pattern=r"^[0-9]{6}$", examples=["123456"])


# Who made a change, as the history shows it.
Actor = Annotated[str, Field(min_length=1, max_length=40, pattern=r"^[\w .@-]+$"), AfterValidator(_visible)]


class ModeChange(_Body):
    """PUT /admin/db-mode."""

    mode: Literal[tuple(MODES)]  # type: ignore[valid-type]  # made at import from the one list of modes
    ttl_seconds: StrictInt | None = Field(default=None, ge=1, le=86400)
    actor: Actor = "facilitator"


class ResetRequest(_Body):
    """POST /admin/reset."""

    actor: Actor = "facilitator"


class _KnobsBase(ResetRequest):
    def changes(self) -> dict:
        """The knobs this patch sets (actor and unset fields left out)."""
        return {k: v for k, v in self.model_dump(exclude={"actor"}).items() if v is not None}


def _knob_field(knob):
    if isinstance(knob.default, bool):
        return StrictBool | None, None
    return StrictInt | None, Field(default=None, ge=knob.low, le=knob.high)


# PATCH /admin/knobs: any subset of the knobs, each within its limits (from config.KNOBS).
KnobsPatch = create_model("KnobsPatch", __base__=_KnobsBase, __doc__="PATCH /admin/knobs: any subset of the knobs.",
                          **{name: _knob_field(knob) for name, knob in KNOBS.items()})


def is_payment_id(value: str) -> bool:
    """True if `value` has the shape of a payment id."""
    return re.fullmatch(PAYMENT_ID_PATTERN, value) is not None


def field_errors(err: ValidationError) -> dict[str, str]:
    """A pydantic error as {field: what is wrong with it}, the first problem of each field."""
    fields: dict[str, str] = {}
    for e in err.errors(include_url=False, include_input=False):
        name = ".".join(str(p) for p in e["loc"]) or "body"
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "is not an accepted field"
        fields.setdefault(name, msg)
    return fields
