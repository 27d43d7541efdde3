"""Hostile values, second round, against the live app (gunicorn, 2 workers, real Redis and FerretDB).

Amounts: exactly the grammar the OpenAPI document states (a JSON number, or ASCII digits with an
optional fraction), never another script's digits or a form only Python reads. Actors: at least one
character a person can see in the history. Each refusal is a 400 that stores and changes nothing.
"""

from __future__ import annotations

import json
import re

import pytest
import requests

from loadtest.checkout import card_payload


def post(url: str, body: dict) -> requests.Response:
    return requests.post(url, json=body, timeout=10)


def refused(r: requests.Response, status: int, error: str) -> dict:
    """Assert a JSON refusal with that status and `error`; the body."""
    assert r.status_code == status, (r.status_code, r.text[:300])
    assert r.headers["Content-Type"].startswith("application/json") and r.json()["error"] == error, r.text[:300]
    return r.json()


def admin_state(url: str) -> tuple:
    """Mode, knobs and history as anyone can read them."""
    return tuple(requests.get(url + p, timeout=10).json() for p in ("/admin/db-mode", "/admin/knobs", "/admin/history"))


@pytest.fixture
def stored(live_db):
    """Asserts at the end of the test that it added no document."""
    def counts() -> dict:
        return {name: live_db[name].count_documents({}) for name in live_db.list_collection_names()}
    before = counts()
    yield before
    assert counts() == before

# -- amounts ----------------------------------------------------------------------

# Text Python's Decimal() reads as a number, but that the OpenAPI pattern (ASCII digits, an optional
# fraction) does not allow: other scripts' digits, Python-only forms, signs, spaces.
NOT_THE_GRAMMAR = [
    "\u0661\u0660\u0660",  # Arabic-Indic 100
    "\u06f1\u06f0\u06f0",  # Extended Arabic-Indic (Persian) 100
    "\u0967\u0966\u0966",  # Devanagari 100
    "\u09e7\u09e6",  # Bengali 10
    "\u0e51\u0e50",  # Thai 10
    "\uff11\uff10\uff10",  # fullwidth 100
    "\U0001d7cf\U0001d7ce",  # mathematical bold 10
    "4\u0669.99",  # one Arabic-Indic digit among ASCII ones
    "\u0665\u066b\u0665",  # Arabic decimal separator
    "1_000", "10_0.5", " 5", "5 ", "\t5", "5\n", "\u00a05", "5\u2003",
    "1e3", "1E2", "5e-1", "+5", "-5", "0x10", "5.", ".5", "5..0", "Infinity", "sNaN", "49.99\u0000",
]


@pytest.mark.usefixtures("stored")
@pytest.mark.parametrize("amount", NOT_THE_GRAMMAR, ids=ascii)
def test_amount_text_outside_the_openapi_grammar_is_400(live, amount):
    body = refused(post(live.url + "/payment/initiate", card_payload(amount=amount)), 400, "validation_error")
    assert "amount" in body["fields"]


def test_the_openapi_document_states_the_amount_grammar_the_app_checks(live):
    schema = requests.get(live.url + "/openapi.json", timeout=10).json()["components"]["schemas"]["InitiateRequest"]
    forms = schema["properties"]["amount"]["anyOf"]
    assert {"type": "number"} in forms
    pattern = next(f["pattern"] for f in forms if f.get("type") == "string")
    # ECMA-262 (JSON Schema's dialect) reads \d as any Unicode digit in some engines: the pattern spells [0-9].
    assert pattern == "^[0-9]+(\\.[0-9]+)?$"
    assert all(re.fullmatch(pattern, a) is None for a in NOT_THE_GRAMMAR)


@pytest.mark.parametrize("amount,stored_as", [("49.99", "49.99"), ("0049.5", "49.50"), ("10000", "10000.00"),
                                              (5, "5.00"), (0.5, "0.50"), (1e3, "1000.00")], ids=str)
def test_amounts_in_the_grammar_are_stored_as_given(live, amount, stored_as):
    r = post(live.url + "/payment/initiate", card_payload(amount=amount))
    assert r.status_code == 200, r.text
    pid = r.json()["payment_id"]
    assert requests.get(f"{live.url}/payment/{pid}", timeout=10).json()["amount"] == stored_as


def test_an_exponent_is_a_json_number_like_any_other(live):
    body = json.dumps(card_payload()).replace('"amount": "49.99"', '"amount": 1.5e2')
    r = requests.post(live.url + "/payment/initiate", data=body, timeout=10, headers={"Content-Type": "application/json"})
    assert r.status_code == 200, r.text
    assert requests.get(f"{live.url}/payment/{r.json()['payment_id']}", timeout=10).json()["amount"] == "150.00"


# -- blank-looking actors ------------------------------------------------------------

# Text that draws nothing in the history's "who" column: spaces, Hangul fillers, zero-width characters,
# joiners and marks without a base, the blank Braille pattern.
BLANK_ACTORS = [" ", "   ", "\u3164", "\u3164\u3164", "\u115f", "\u1160", "\uffa0", "\u200b", "\u200c", "\u200d",
                "\u200c\u200d", " \u200d ", "\u2060", "\ufeff", "\u034f", "\u0301", "\u2800", "\u180e"]


@pytest.mark.parametrize("actor", BLANK_ACTORS, ids=ascii)
def test_an_actor_without_a_visible_character_is_400_and_changes_nothing(live, actor):
    before = admin_state(live.url)
    for method, path, body in (("PUT", "/admin/db-mode", {"mode": "audit"}), ("POST", "/admin/reset", {}),
                               ("PATCH", "/admin/knobs", {"audit_delay_ms": 1500})):
        answer = refused(live.admin(method, path, json={**body, "actor": actor}), 400, "validation_error")
        assert "actor" in answer["fields"], answer
    assert admin_state(live.url) == before


@pytest.mark.parametrize("actor", ["Ana", "a", "_", "ana.b@room-3", "\uc5ec\uc815", "Jos\u00e9", "a\u200db"], ids=ascii)
def test_an_actor_with_a_visible_character_is_recorded(live, actor):
    live.set_mode("audit", actor=actor)
    events = requests.get(live.url + "/admin/history", timeout=10).json()["events"]
    assert any(e.get("actor") == actor for e in events), events
