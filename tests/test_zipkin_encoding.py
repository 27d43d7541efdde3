"""The exporter's Zipkin JSON v2: what Zipkin's UI shows a participant, and the store's leaves as spans.

Spans are made by the real SDK (a provider of this module's own) and read back
from an in-memory exporter, then encoded; the same encoding reaches a real
Zipkin in tests/test_tracing.py.
"""

from __future__ import annotations

import json
import time

import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode, use_span

from app import tracing
from app.zipkin import MAX_TAG, encode

pytestmark = pytest.mark.unit


@pytest.fixture
def made():
    """A tracer whose finished spans are kept, and a function that encodes them as Zipkin reads them."""
    provider = TracerProvider(resource=Resource({"service.name": "paygate"}))
    kept = InMemorySpanExporter()
    provider.add_span_processor(tracing.LeafCarrier())  # as the app's provider has, before its exporter
    provider.add_span_processor(SimpleSpanProcessor(kept))

    def encoded() -> list[dict]:
        return json.loads(encode(kept.get_finished_spans(), "paygate"))

    return provider.get_tracer("test"), encoded


def by_name(rows: list[dict]) -> dict[str, dict]:
    return {row["name"]: row for row in rows}


def test_a_span_carries_its_ids_times_kind_tags_and_nothing_the_room_cannot_use(made):
    tracer, encoded = made
    with tracer.start_as_current_span("POST /payment/initiate", kind=SpanKind.SERVER,
                                      attributes={"http.route": "/payment/initiate", "retried": True, "n": 3}) as request:
        with tracer.start_as_current_span("payment.write"):
            time.sleep(0.002)
    rows = by_name(encoded())
    top, write = rows["POST /payment/initiate"], rows["payment.write"]
    ctx = request.get_span_context()
    assert top["traceId"] == f"{ctx.trace_id:032x}" and top["id"] == f"{ctx.span_id:016x}"
    assert write["traceId"] == top["traceId"] and write["parentId"] == top["id"] and "parentId" not in top
    assert top["kind"] == "SERVER" and "kind" not in write  # INTERNAL has no Zipkin kind
    assert top["tags"] == {"http.route": "/payment/initiate", "retried": "true", "n": "3"}
    assert "tags" not in write, "no scope, resource or SDK tags: only the span's own attributes"
    assert top["localEndpoint"] == {"serviceName": "paygate"}
    assert 2000 <= write["duration"] <= top["duration"], (write, top)  # microseconds
    assert top["timestamp"] <= write["timestamp"] <= top["timestamp"] + top["duration"]


def test_an_error_is_a_tag_and_an_event_is_a_sentence_on_the_timeline(made):
    tracer, encoded = made
    with tracer.start_as_current_span("POST /payment/initiate") as request:
        started = time.time_ns()
        tracing.otp_wait(started, 400, cut=True)
    with pytest.raises(ValueError), tracer.start_as_current_span("broken"):
        raise ValueError("x" * 500)
    rows = by_name(encoded())
    wait = rows["otp.wait_ready"]
    assert wait["parentId"] == f"{request.get_span_context().span_id:016x}"
    assert wait["tags"] == {"paygate.deadline_ms": "400", "error": "not ready within 400 ms"}
    [note] = wait["annotations"]
    assert note["value"] == "deadline passed after 400 ms: OTP unavailable, the write goes on"
    assert wait["timestamp"] == started // 1000 and note["timestamp"] == wait["timestamp"] + wait["duration"]
    [raised] = rows["broken"]["annotations"]
    assert raised["value"].startswith("exception: exception.type=ValueError exception.message=xxx")
    assert "Traceback" not in raised["value"], "the stack is for logs"
    assert rows["broken"]["tags"]["error"] == f"ValueError: {'x' * (MAX_TAG - 12)}", "cut to one line of the UI"


def test_the_store_calls_are_leaves_of_the_span_they_ran_in(made):
    tracer, encoded = made

    @tracing.spanned("sqlite.insert_intent")
    def insert():
        time.sleep(0.003)

    @tracing.spanned("sqlite.attach_otp")
    def refused():
        raise KeyError("no such payment")

    insert()  # no span current: nothing is recorded
    with tracer.start_as_current_span("payment.write") as write:
        insert()
        with pytest.raises(KeyError):
            refused()
    rows = encoded()
    assert [row["name"] for row in rows] == ["payment.write", "sqlite.insert_intent", "sqlite.attach_otp"]
    parent, leaf, failed = rows
    assert tracing.LEAVES not in parent.get("tags", {}), "the leaves become spans, not a tag"
    assert {leaf["traceId"], failed["traceId"]} == {parent["traceId"]}
    assert leaf["parentId"] == failed["parentId"] == parent["id"] == f"{write.get_span_context().span_id:016x}"
    assert len({parent["id"], leaf["id"], failed["id"]}) == 3 and all(len(r["id"]) == 16 for r in rows)
    assert 3000 <= leaf["duration"] <= parent["duration"]
    assert parent["timestamp"] <= leaf["timestamp"] <= failed["timestamp"] <= parent["timestamp"] + parent["duration"]
    assert "tags" not in leaf and failed["tags"] == {"error": "KeyError"}


def test_a_leaf_needs_a_recording_span(made):
    tracer, encoded = made
    calls = []
    leaf = tracing.spanned("sqlite.find_payment")(lambda: calls.append(1) or "found")
    span = tracer.start_span("ended")
    span.end()
    with use_span(span):  # an ended span no longer records
        assert leaf() == "found"
    assert calls == [1]
    assert [row["name"] for row in encoded()] == ["ended"]
    assert span.status.status_code is StatusCode.UNSET


def test_a_wait_that_the_deadline_did_not_cut_is_no_error(made):
    tracer, encoded = made
    with tracer.start_as_current_span("POST /payment/initiate"):
        tracing.otp_wait(time.time_ns(), 400, cut=False)
    wait = by_name(encoded())["otp.wait_ready"]
    assert wait["tags"] == {"paygate.deadline_ms": "400"} and "annotations" not in wait


def test_a_status_that_is_not_an_error_adds_no_tag(made):
    tracer, encoded = made
    with tracer.start_as_current_span("fine") as span:
        span.set_status(Status(StatusCode.OK))
    assert "tags" not in encoded()[0]
