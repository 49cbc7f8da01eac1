"""Wire contract: the exact HTTP request the exporter sends for a small manual trace.

``tests/cassettes/contract/manual_trace.yaml`` holds that request (method, URL, headers and
the decoded JSON body) and PostHog's answer; vcrpy replays it with ``record_mode="none"``,
so nothing leaves the machine. Volatile values are normalised before matching: random span
ids become ``<uuid:N>`` (numbered by first appearance, so parent links stay pinned),
timestamps ``<timestamp>``, latencies ``<latency>``, ``sent_at`` ``<sent_at>``, the
library version ``<version>`` and the posthog SDK's version in the user agent
(``posthog-python/<sdk-version>``), each checked for shape first. The headers pinned are
``Content-Type``, ``Content-Encoding`` (the body really is gzip) and ``User-Agent``.
Everything else must match exactly: if the wire format changes, this test fails and the
cassette must be updated on purpose.
"""

from __future__ import annotations

import gzip
import json
import re
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import vcr
from posthog.version import VERSION as SDK_VERSION
from vcr.request import Request

from posthog_callbacks import PosthogExporter, __version__

CASSETTE = Path(__file__).parents[1] / "cassettes" / "contract" / "manual_trace.yaml"
API_KEY = "phc_contractTestKey0123456789abcdef"
TRACE_ID = "contract-trace-0001"
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# Every event uuid is volatile (the root's is derived from the trace id and its start time).
_FIXED_UUIDS: frozenset[str] = frozenset()
WIRE_HEADERS = ("Content-Type", "Content-Encoding", "User-Agent")


def record_trace(exporter: PosthogExporter) -> None:
    """The small manual trace whose request the cassette pins."""
    question = "What is PostHog?"
    with exporter.trace(
        "answer",
        trace_id=TRACE_ID,
        input={"question": question},
        distinct_id="user-42",
        session_id="session-7",
        metadata={"team": "geo"},
        tags=["beta"],
    ) as trace:
        with trace.span("retrieve", input=question) as span:
            span.update(output=["PostHog is an open-source product analytics platform."])
        with trace.generation(
            "chat",
            model="gpt-4o-mini",
            provider="openai",
            input=[
                {"role": "system", "content": "Answer in one sentence."},
                {"role": "user", "content": question},
            ],
            model_parameters={"temperature": 0.0, "max_tokens": 64},
        ) as gen:
            gen.update(
                output=[
                    {"role": "assistant", "content": "PostHog is a product analytics platform."}
                ],
                usage={"input_tokens": 25, "output_tokens": 9, "total_tokens": 34},
                stop_reason="stop",
            )
        trace.update(output={"answer": "PostHog is a product analytics platform."})
    exporter.capture_metric(TRACE_ID, "helpfulness", 0.9, distinct_id="user-42")


def _iso(value: Any) -> bool:
    try:
        datetime.fromisoformat(str(value))
    except ValueError:
        return False
    return True


def normalise(body: dict[str, Any]) -> dict[str, Any]:
    """Replace volatile values by placeholders, checking their shape first."""
    assert _iso(body.get("sent_at")), body.get("sent_at")
    body["sent_at"] = "<sent_at>"
    ids: dict[str, str] = {}

    def walk(value: Any, key: str | None = None) -> Any:
        if isinstance(value, dict):
            return {k: walk(v, k) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v) for v in value]
        if key == "timestamp":
            assert _iso(value), value
            return "<timestamp>"
        if key == "$ai_latency":
            assert isinstance(value, float) and value >= 0, value
            return "<latency>"
        if key == "$ai_lib_version":
            assert value == __version__, value
            return "<version>"
        if isinstance(value, str) and _UUID.fullmatch(value) and value not in _FIXED_UUIDS:
            return ids.setdefault(value, f"<uuid:{len(ids) + 1}>")
        return value

    return walk(body)  # type: ignore[no-any-return]


def _is_normalised(body: Any) -> bool:
    return isinstance(body, dict) and body.get("sent_at") == "<sent_at>"


def normalised_request(request: Request) -> Request:
    """The request as the cassette stores it: gunzipped, normalised, pretty JSON.

    vcrpy applies this hook again to what it returned, hence the marker.
    """
    if getattr(request, "contract_normalised", False):
        return request
    raw = request.body or b""
    if isinstance(raw, str):
        raw = raw.encode()
    data = json.loads(gzip.decompress(raw)) if raw[:2] == b"\x1f\x8b" else json.loads(raw)
    if not _is_normalised(data):  # a request off the wire (the cassette's already is)
        data = normalise(data)
    body = json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False)
    headers = {k: request.headers[k] for k in WIRE_HEADERS if k in request.headers}
    agent = headers.get("User-Agent")
    if agent == f"posthog-python/{SDK_VERSION}":
        headers["User-Agent"] = "posthog-python/<sdk-version>"
    normalised = Request(request.method, request.uri, body, headers)
    normalised.contract_normalised = True  # type: ignore[attr-defined]
    return normalised


def match_wire_headers(r1: Request, r2: Request) -> None:
    for name in WIRE_HEADERS:
        assert r1.headers.get(name) == r2.headers.get(name), name


def match_json_body(r1: Request, r2: Request) -> None:
    assert json.loads(r1.body) == json.loads(r2.body)


@pytest.fixture
def contract_vcr() -> vcr.VCR:
    v = vcr.VCR(
        record_mode="none",
        before_record_request=normalised_request,
        match_on=["method", "scheme", "host", "port", "path", "query", "wire_headers", "json_body"],
    )
    v.register_matcher("wire_headers", match_wire_headers)
    v.register_matcher("json_body", match_json_body)
    return v


def test_manual_trace_request_matches_the_cassette(
    contract_vcr: vcr.VCR, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("POSTHOG_HOST", raising=False)
    sent: list[Request] = []
    original = contract_vcr.before_record_request

    def spy(request: Request) -> Request:
        if getattr(request, "contract_normalised", False):
            return request
        from_wire = isinstance(request.body, bytes) and request.body[:2] == b"\x1f\x8b"
        normalised = original(request)
        if from_wire:
            sent.append(normalised)
        return normalised

    contract_vcr.before_record_request = spy
    with contract_vcr.use_cassette(str(CASSETTE)) as cassette:
        exporter = PosthogExporter(
            api_key=API_KEY,
            service_name="contract-svc",
            properties={"env": "test"},
            groups={"company": "acme"},
        )
        record_trace(exporter)
        assert exporter.flush(timeout=10)
        exporter.shutdown(timeout=2)

    expected = json.loads(cassette.requests[0].body)
    assert len(sent) >= 1
    assert sent[0].headers == {
        "Content-Type": "application/json",
        "Content-Encoding": "gzip",
        "User-Agent": "posthog-python/<sdk-version>",
    }
    # The readable diff when the wire format changed: the normalised body vs the cassette.
    assert json.loads(sent[0].body) == expected
    assert (sent[0].method, sent[0].uri) == ("POST", "https://us.i.posthog.com/i/v0/ai/batch/")
    assert cassette.play_count == 1
    assert cassette.all_played
    stats = exporter.stats()
    assert (stats.sent, stats.dropped) == (4, 0)
