"""Exact-property tests for span -> PostHog event translation (events.py)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import uuid
from collections.abc import Iterator
from decimal import Decimal

import pydantic
import pytest

from posthog_callbacks import __version__
from posthog_callbacks.events import EventConfig, feedback_event, metric_event, span_to_event
from posthog_callbacks.spans import FinishedSpan, SpanKind, Usage

TRACE = "11111111-1111-4111-8111-111111111111"
CHILD = "22222222-2222-4222-8222-222222222222"
GEN = "33333333-3333-4333-8333-333333333333"


def span(**kw: object) -> FinishedSpan:
    base: dict[str, object] = dict(
        trace_id=TRACE,
        span_id=GEN,
        parent_id=CHILD,
        kind=SpanKind.GENERATION,
        name="ChatOpenAI",
        start_time=1_700_000_000.0,
        end_time=1_700_000_001.5,
        framework="langchain",
    )
    base.update(kw)
    return FinishedSpan(**base)  # type: ignore[arg-type]


def test_trace_root_event_has_exactly_the_trace_properties() -> None:
    root = span(
        span_id=TRACE,
        parent_id=None,
        kind=SpanKind.TRACE,
        name="answer",
        input={"q": "hi"},
        output={"a": "yo"},
        session_id="s1",
        distinct_id="u1",
        tags=("beta",),
        metadata={"team": "geo"},
        framework="manual",
    )
    event = span_to_event(root)
    assert event["event"] == "$ai_trace"
    assert event["distinct_id"] == "u1"
    assert uuid.UUID(event["uuid"]).version == 5
    again = span_to_event(root._replace(start_time=root.start_time + 60))
    assert again["uuid"] != event["uuid"]  # a reused trace id is not de-duplicated away
    assert event["timestamp"] == "2023-11-14T22:13:20.000000+00:00"
    later = span_to_event(root._replace(start_time=1_700_000_000.25))
    assert later["timestamp"] == "2023-11-14T22:13:20.250000+00:00"
    assert event["properties"] == {
        "team": "geo",
        "$ai_trace_id": TRACE,
        "$ai_lib": "posthog-callbacks",
        "$ai_lib_version": __version__,
        "$ai_framework": "manual",
        "$ai_session_id": "s1",
        "$ai_span_name": "answer",
        "$ai_trace_name": "answer",
        "$ai_latency": 1.5,
        "$ai_is_error": False,
        "beta": True,
        "$ai_tags": ["beta"],
        "$ai_input_state": {"q": "hi"},
        "$ai_output_state": {"a": "yo"},
    }


def test_child_span_points_at_its_parent_and_carries_error() -> None:
    event = span_to_event(
        span(
            span_id=CHILD,
            parent_id=TRACE,
            kind=SpanKind.SPAN,
            name="retrieve",
            input="hi",
            error="ValueError: boom",
        )
    )
    props = event["properties"]
    assert event["event"] == "$ai_span"
    assert props["$ai_span_id"] == CHILD
    assert props["$ai_parent_id"] == TRACE
    assert props["$ai_is_error"] is True
    assert props["$ai_error"] == "ValueError: boom"
    assert props["$ai_input_state"] == "hi"
    assert "$ai_output_state" not in props
    assert "$ai_model" not in props


def test_generation_properties() -> None:
    event = span_to_event(
        span(
            model="gpt-4o-mini-2024-07-18",
            provider="openai",
            input=[{"role": "user", "content": "hi"}],
            output=[{"role": "assistant", "content": "yo"}],
            usage=Usage(
                input_tokens=100,
                output_tokens=20,
                total_tokens=120,
                cache_read_tokens=40,
                reasoning_tokens=5,
            ),
            model_parameters={
                "temperature": 0.2,
                "max_completion_tokens": 64,
                "stream": True,
                "top_p": 1,
            },
            tools=[{"type": "function", "function": {"name": "add"}}],
            time_to_first_token=0.25,
            base_url="https://api.openai.com/v1",
            stop_reason="stop",
        )
    )
    props = event["properties"]
    assert event["event"] == "$ai_generation"
    assert {
        k: props[k]
        for k in (
            "$ai_span_id",
            "$ai_parent_id",
            "$ai_model",
            "$ai_provider",
            "$ai_input",
            "$ai_output_choices",
            "$ai_input_tokens",
            "$ai_output_tokens",
            "$ai_total_tokens",
            "$ai_cache_read_input_tokens",
            "$ai_reasoning_tokens",
            "$ai_temperature",
            "$ai_max_tokens",
            "$ai_stream",
            "$ai_tools",
            "$ai_time_to_first_token",
            "$ai_http_status",
            "$ai_base_url",
            "$ai_stop_reason",
            "$ai_latency",
        )
    } == {
        "$ai_span_id": GEN,
        "$ai_parent_id": CHILD,
        "$ai_model": "gpt-4o-mini-2024-07-18",
        "$ai_provider": "openai",
        "$ai_input": [{"role": "user", "content": "hi"}],
        "$ai_output_choices": [{"role": "assistant", "content": "yo"}],
        "$ai_input_tokens": 100,
        "$ai_output_tokens": 20,
        "$ai_total_tokens": 120,
        "$ai_cache_read_input_tokens": 40,
        "$ai_reasoning_tokens": 5,
        "$ai_temperature": 0.2,
        "$ai_max_tokens": 64,
        "$ai_stream": True,
        "$ai_tools": [{"type": "function", "function": {"name": "add"}}],
        "$ai_time_to_first_token": 0.25,
        "$ai_http_status": 200,
        "$ai_base_url": "https://api.openai.com/v1",
        "$ai_stop_reason": "stop",
        "$ai_latency": 1.5,
    }
    assert props["$ai_model_parameters"] == {
        "temperature": 0.2,
        "max_completion_tokens": 64,
        "stream": True,
        "top_p": 1,
    }
    assert "$ai_cache_creation_input_tokens" not in props
    assert "$ai_usage_missing_reason" not in props


@pytest.mark.parametrize(
    ("provider", "model", "expected_input"),
    [
        ("anthropic", "claude-3-5-sonnet-20241022", 100),  # uncached only
        ("bedrock", "anthropic.claude-3-haiku", 100),  # Claude on another provider
        ("vertex_ai", "claude-sonnet-4@20250514", 100),
        ("openai", "gpt-4o", 175),  # inclusive
    ],
)
def test_anthropic_input_tokens_exclude_cache(
    provider: str, model: str, expected_input: int
) -> None:
    usage = Usage(
        input_tokens=175,
        output_tokens=3,
        cache_read_tokens=50,
        cache_creation_tokens=25,
        cache_creation_5m_tokens=20,
        cache_creation_1h_tokens=5,
    )
    props = span_to_event(span(provider=provider, model=model, usage=usage))["properties"]
    assert props["$ai_input_tokens"] == expected_input
    assert props["$ai_cache_read_input_tokens"] == 50
    assert props["$ai_cache_creation_input_tokens"] == 25
    assert props["$ai_cache_creation_5m_input_tokens"] == 20
    assert props["$ai_cache_creation_1h_input_tokens"] == 5


def test_missing_usage_sends_no_token_counts_and_a_reason() -> None:
    props = span_to_event(span(usage=None, usage_missing_reason="pass stream_usage=True"))[
        "properties"
    ]
    assert not [k for k in props if k.endswith("_tokens")]
    assert props["$ai_usage_missing_reason"] == "pass stream_usage=True"
    props = span_to_event(span(usage=Usage()))["properties"]
    assert props["$ai_usage_missing_reason"] == "the provider reported no token usage"


def test_failed_generation_reports_status_and_no_missing_usage_reason() -> None:
    props = span_to_event(span(error="RateLimitError: slow down", http_status=429))["properties"]
    assert props["$ai_is_error"] is True
    assert props["$ai_http_status"] == 429
    assert "$ai_usage_missing_reason" not in props
    assert span_to_event(span(error="boom"))["properties"]["$ai_http_status"] == 500


def test_root_generation_is_a_generation_without_parent() -> None:
    event = span_to_event(span(span_id=TRACE, parent_id=None))
    assert event["event"] == "$ai_generation"
    assert event["properties"]["$ai_span_id"] == TRACE
    assert "$ai_parent_id" not in event["properties"]


def test_embedding_event() -> None:
    event = span_to_event(
        span(
            kind=SpanKind.EMBEDDING,
            name="OpenAIEmbeddings",
            model="text-embedding-3-small",
            provider="openai",
            input=["a", "b"],
            output=[[0.1, 0.2]],
            usage=Usage(input_tokens=8),
        )
    )
    props = event["properties"]
    assert event["event"] == "$ai_embedding"
    assert props["$ai_input"] == ["a", "b"]
    assert props["$ai_input_tokens"] == 8
    assert "$ai_output_choices" not in props
    assert props["$ai_model"] == "text-embedding-3-small"


def test_distinct_id_precedence_and_personless() -> None:
    cfg = EventConfig(default_distinct_id="fallback")
    assert span_to_event(span(distinct_id="u1"), cfg)["distinct_id"] == "u1"
    assert span_to_event(span(), cfg)["distinct_id"] == "fallback"
    event = span_to_event(span())
    assert event["distinct_id"] == TRACE
    assert event["properties"]["$process_person_profile"] is False
    assert "$process_person_profile" not in span_to_event(span(distinct_id="u"))["properties"]


def test_exporter_properties_groups_and_service_name() -> None:
    cfg = EventConfig(
        properties={"env": "prod", "$ai_trace_id": "spoof"},
        groups={"company": "acme"},
        service_name="checkout",
    )
    props = span_to_event(span(properties={"feature": "x"}, groups={"team": "t1"}), cfg)[
        "properties"
    ]
    assert props["env"] == "prod"
    assert props["feature"] == "x"
    assert props["$ai_trace_id"] == TRACE
    assert props["$groups"] == {"company": "acme", "team": "t1"}
    assert props["$ai_service_name"] == "checkout"


@pytest.mark.parametrize("kind", list(SpanKind))
def test_privacy_mode_drops_all_content(kind: SpanKind) -> None:
    secret_text = "my private diagnosis"
    s = span(
        kind=kind, input=[{"role": "user", "content": secret_text}], output={"text": secret_text}
    )
    for event in (
        span_to_event(s, EventConfig(privacy_mode=True)),
        span_to_event(s._replace(privacy_mode=True)),
    ):
        encoded = json.dumps(event)
        assert secret_text not in encoded
        for key in ("$ai_input", "$ai_output_choices", "$ai_input_state", "$ai_output_state"):
            assert key not in event["properties"]


def test_mask_applies_to_every_content_field_and_failure_never_leaks() -> None:
    cfg = EventConfig(mask=lambda v: "***")
    gen = span_to_event(span(input=[{"role": "user", "content": "x"}], output=["y"]), cfg)
    assert gen["properties"]["$ai_input"] == "***"
    assert gen["properties"]["$ai_output_choices"] == "***"

    def broken(value: object) -> object:
        raise RuntimeError("bad mask")

    event = span_to_event(
        span(kind=SpanKind.SPAN, input="secret-input", output="out"), EventConfig(mask=broken)
    )
    assert event["properties"]["$ai_input_state"] == "[masked: mask function failed]"
    assert "secret-input" not in json.dumps(event)


def test_secrets_are_redacted_but_token_counts_are_not() -> None:
    cfg = EventConfig(secrets=("phc_projectkey1234567890abcdef",))
    event = span_to_event(
        span(
            kind=SpanKind.SPAN,
            input={
                "api_key": "abc",
                "Authorization": "Bearer xyz",
                "password": "hunter2",
                "openai_api_key": {"lc": 1, "type": "secret", "id": ["OPENAI_API_KEY"]},
                "max_tokens": 10,
                "input_tokens": 3,
                "token_usage": {"total_tokens": 9},
                "note": "use sk-abcdefghijklmnopqrstuvwx please",
                "echo": "key phc_projectkey1234567890abcdef",
            },
            metadata={"client_secret": "s3cr3t"},
        ),
        cfg,
    )
    props = event["properties"]
    state = props["$ai_input_state"]
    assert state["api_key"] == "[REDACTED]"
    assert state["Authorization"] == "[REDACTED]"
    assert state["password"] == "[REDACTED]"
    assert state["openai_api_key"] == "[REDACTED]"
    assert state["max_tokens"] == 10
    assert state["input_tokens"] == 3
    assert state["token_usage"] == {"total_tokens": 9}
    assert state["note"] == "use [REDACTED] please"
    assert state["echo"] == "key [REDACTED]"
    assert props["client_secret"] == "[REDACTED]"
    encoded = json.dumps(event)
    for leaked in ("hunter2", "xyz", "s3cr3t", "sk-abcdef", "phc_projectkey"):
        assert leaked not in encoded


def test_base64_media_is_replaced_by_a_sized_placeholder() -> None:
    payload = "A" * 4000
    msg = [
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{payload}"}},
                {"type": "text", "text": "what is this?"},
            ],
        }
    ]
    props = span_to_event(span(input=msg, output=[payload]))["properties"]
    url = props["$ai_input"][0]["content"][0]["image_url"]["url"]
    assert url == "[base64 image/png, 3000 bytes]"
    assert props["$ai_input"][0]["content"][1]["text"] == "what is this?"
    assert props["$ai_output_choices"] == ["[base64 data, 3000 bytes]"]


def test_oversized_event_is_truncated_with_a_marker() -> None:
    limit = 50_000
    event = span_to_event(
        span(input=[{"role": "user", "content": "x " * 100_000}], output=["y"]),
        EventConfig(max_event_bytes=limit),
    )
    encoded = json.dumps(event, ensure_ascii=False).encode()
    assert len(encoded) <= limit
    # the long string is cut in place: the message structure survives
    assert "[truncated" in event["properties"]["$ai_input"][0]["content"]
    assert event["properties"]["$ai_output_choices"] == ["y"]


class Model(pydantic.BaseModel):
    name: str
    score: float


@dataclasses.dataclass
class Point:
    x: int
    y: int


class BadRepr:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")


def test_any_value_becomes_valid_json() -> None:
    cyclic: list[object] = [1]
    cyclic.append(cyclic)
    numpy = pytest.importorskip("numpy")

    def gen() -> Iterator[int]:
        yield 1

    g = gen()
    value = {
        "model": Model(name="a", score=0.5),
        "point": Point(1, 2),
        "bytes": b"\x00\x01",
        "set": {3},
        "when": dt.datetime(2024, 1, 2, tzinfo=dt.timezone.utc),
        "nan": math.nan,
        "inf": math.inf,
        "np": numpy.float32(1.5),
        "arr": numpy.arange(3),
        "dec": Decimal("1.10"),
        "uid": uuid.UUID(int=1),
        "cycle": cyclic,
        7: "int key",
        "bad": BadRepr(),
        "gen": g,
    }
    state = span_to_event(span(kind=SpanKind.SPAN, input=value))["properties"]["$ai_input_state"]
    json.dumps(state, allow_nan=False)
    assert state["model"] == {"name": "a", "score": 0.5}
    assert state["point"] == {"x": 1, "y": 2}
    assert state["bytes"] == "<2 bytes>"
    assert state["set"] == [3]
    assert state["when"] == "2024-01-02T00:00:00+00:00"
    assert state["nan"] == "nan" and state["inf"] == "inf"
    assert state["np"] == 1.5
    assert state["arr"] == [0, 1, 2]
    assert state["dec"] == "1.10"
    assert state["uid"] == str(uuid.UUID(int=1))
    assert state["cycle"] == [1, "<cycle>"]
    assert state["7"] == "int key"
    assert state["bad"] == "<BadRepr>"  # never repr() on the worker
    assert state["gen"] == "<generator>"
    assert next(g) == 1  # the user's generator was not consumed


def test_feedback_and_metric_events() -> None:
    fb = feedback_event(
        TRACE,
        text="great",
        score=1,
        distinct_id="u1",
        properties=None,
        cfg=EventConfig(),
        timestamp=1_700_000_000.0,
    )
    assert fb["event"] == "$ai_feedback"
    assert fb["distinct_id"] == "u1"
    assert fb["properties"]["$ai_trace_id"] == TRACE
    assert fb["properties"]["$ai_feedback_text"] == "great"
    assert fb["properties"]["$ai_feedback_score"] == 1
    metric = metric_event(
        TRACE,
        name="accuracy",
        value=0.9,
        distinct_id=None,
        properties={"judge": "gpt"},
        cfg=EventConfig(),
        timestamp=1_700_000_000.0,
    )
    assert metric["event"] == "$ai_metric"
    assert metric["properties"]["$ai_metric_name"] == "accuracy"
    assert metric["properties"]["$ai_metric_value"] == 0.9
    assert metric["properties"]["judge"] == "gpt"
    assert metric["properties"]["$process_person_profile"] is False
    assert metric["distinct_id"] == TRACE


def test_event_uuid_is_stable_per_span() -> None:
    a = span_to_event(span(span_id="run-7"))
    b = span_to_event(span(span_id="run-7"))
    assert a["uuid"] == b["uuid"]
    assert uuid.UUID(a["uuid"]).version == 5
    assert span_to_event(span())["uuid"] == GEN  # UUID run ids are used as they are
