"""Fast paths of the span -> event translation give exactly the reference's result."""

from __future__ import annotations

import enum
import hashlib
import itertools
import uuid
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from posthog_callbacks import events, serialize
from posthog_callbacks.serialize import Serializer
from posthog_callbacks.spans import FinishedSpan, SpanKind, Usage

COUNTS: list[Any] = [None, 0, 1, 21, -5, 3.5, True]  # hostile values too
MODELS = [
    ("openai", "gpt-4o-mini"),
    ("anthropic", "claude-3-5-sonnet"),
    (None, "us.anthropic.claude-3-haiku"),
    ("google", "gemini-2.5-pro"),
    (None, None),
]


def usages() -> list[Usage]:
    plain = [
        Usage(input_tokens=i, output_tokens=o, total_tokens=t)
        for i, o, t in itertools.product(COUNTS, COUNTS, [None, 23])
    ]
    detailed = [
        Usage(input_tokens=10, cache_read_tokens=4),
        Usage(input_tokens=10, cache_creation_tokens=0),
        Usage(input_tokens=10, output_tokens=7, reasoning_tokens=3),
        Usage(input_tokens=10, output_tokens=7, reasoning_tokens=0),
        Usage(cache_creation_5m_tokens=2),
        Usage(cache_creation_1h_tokens=0),
        Usage(input_tokens=5, web_search_count=2),
        Usage(input_tokens=5, web_search_count=0),
    ]
    return plain + detailed


@pytest.mark.parametrize("provider,model", MODELS)
def test_usage_fast_path_equals_the_general_rule(provider: str | None, model: str | None) -> None:
    for usage in usages():
        fast: dict[str, Any] = {}
        reference: dict[str, Any] = {}
        events._usage_properties(fast, usage, provider, model)
        events._usage_properties_general(reference, usage, provider, model)
        assert list(fast.items()) == list(reference.items()), usage
        assert [type(v) for v in fast.values()] == [type(v) for v in reference.values()]


class Status(enum.IntEnum):
    OK = 200


def reference_http_status(value: Any, is_error: bool) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and 100 <= value <= 599:
        return int.__int__(value)
    if type(value) is str and value.isdigit() and len(value) == 3:
        return int(value)
    return 500 if is_error else 200


@pytest.mark.parametrize(
    "value",
    [None, 200, 404, 99, 100, 599, 600, True, False, "503", "5031", "abc", 429.0, Status.OK],
)
@pytest.mark.parametrize("is_error", [False, True])
def test_http_status_fast_path_equals_the_reference(value: Any, is_error: bool) -> None:
    got = events._http_status(value, is_error)
    assert got == reference_http_status(value, is_error)
    assert type(got) is int


def test_convert_of_a_container_equals_the_walk() -> None:
    value = {"a": [1, {"b": ("c", None)}], "api_key": "sk-xyz", "n": float("inf")}
    for v in (value, [value, value], (value,)):
        direct = Serializer(("sk-xyz",))
        walked = Serializer(("sk-xyz",))
        assert direct.convert(v) == walked._convert(v, 0)
        assert direct.size == walked.size and direct.nodes == walked.nodes


def span(**changes: Any) -> FinishedSpan:
    base = FinishedSpan(
        "3d5f6a7b-8c9d-4e0f-a1b2-c3d4e5f60718", "4e6a7b8c-9d0e-4f1a-b2c3-d4e5f6071829",
        "3d5f6a7b-8c9d-4e0f-a1b2-c3d4e5f60718", SpanKind.GENERATION, "chat", 1_764_470_000.25,
        1_764_470_000.75, input=[{"role": "user", "content": "hi"}], model="gpt-4o-mini",
        provider="openai", usage=Usage(input_tokens=21, output_tokens=2),
    )  # fmt: skip
    return base._replace(**changes)


@pytest.mark.parametrize(
    "start,end,latency",
    [(1.0, 3.5, 2.5), (5.0, 4.0, 0.0), (1.0, 1.0, 0.0), (2.0, float("nan"), 0.0), (1, 3, 2)],
)
def test_latency_is_the_rounded_span_latency(start: float, end: float, latency: float) -> None:
    s = span(start_time=start, end_time=end)
    props = events.span_to_event(s)["properties"]
    assert props["$ai_latency"] == round(s.latency, 6) == latency
    assert type(props["$ai_latency"]) is type(round(s.latency, 6))


def test_every_span_field_reaches_the_translation() -> None:
    # The translation unpacks the span: a field added to FinishedSpan must be added there.
    s = span(
        error="ValueError: boom", status="ERROR", tags=("t",), metadata={"m": 1},
        properties={"p": 2}, groups={"g": "x"}, session_id="s-1", service_tier="flex",
        stop_reason="stop", base_url="https://api.example.com/v1", time_to_first_token=0.25,
        http_status=429, tools=[{"type": "function", "function": {"name": "f"}}],
        model_parameters={"temperature": 0.5}, output=[{"role": "assistant", "content": "x"}],
        distinct_id="u-1", usage=None, usage_missing_reason="none reported",
    )  # fmt: skip
    assert len(FinishedSpan._fields) == 30
    props = events.span_to_event(s)["properties"]
    for key, value in {
        "$ai_error": "ValueError: boom", "$ai_span_status": "ERROR", "t": True, "m": 1, "p": 2,
        "$groups": {"g": "x"}, "$ai_session_id": "s-1", "$ai_service_tier": "flex",
        "$ai_stop_reason": "stop", "$ai_base_url": "https://api.example.com/v1",
        "$ai_time_to_first_token": 0.25, "$ai_http_status": 429, "$ai_is_error": True,
    }.items():  # fmt: skip
        assert props[key] == value, key


def test_uuid5_text_equals_the_standard_library_for_every_variant_digit() -> None:
    seen = set()
    for i in range(2_000):
        name = f"trace-{i}/span-{i}/{1_764_470_000 + i / 7!r}"
        assert events._uuid5(name) == str(uuid.uuid5(events._NAMESPACE, name))
        seen.add(hashlib.sha1(events._NAMESPACE_BYTES + name.encode()).hexdigest()[16])
    assert len(seen) == 16  # every first digit of the clock sequence was rewritten


UUID_TEXT = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"


@settings(max_examples=300, deadline=None)
@given(text=st.from_regex(UUID_TEXT, fullmatch=True), cut=st.integers(0, 30))
def test_a_uuid_id_skips_the_secret_scan_with_the_same_result(text: str, cut: int) -> None:
    secret = text[cut : cut + 6]  # a literal secret inside the id still redacts it
    for secrets in ((), ("phc_someOtherKey",), (secret,)):
        assert Serializer(secrets).ident(text) == serialize._ident(text, secrets)
    assert serialize.scrub(text) == text


@pytest.mark.parametrize(
    "text",
    [
        "ACCAACCA-ACCA-ACCA-ACCA-ACCAACCAACCA",  # an AWS key id's keyword in every group
        "AAAAAAAA-BBBB-CCCC-DDDD-EEEEEEEEEEEE",
        "00000000-0000-0000-0000-000000000000",
        str(uuid.UUID(int=2**128 - 1)).upper(),
    ],
)
def test_uuid_shaped_ids_are_sent_as_they_are(text: str) -> None:
    assert Serializer().ident(text) == text == serialize._ident(text, ())
    assert Serializer((text[9:13],)).ident(text).startswith("[REDACTED ")
