"""The translation's shortcuts give the same events as the long way.

Cleaned texts, mapping-key facts and identifiers are cached per set of literal secrets;
the secret precheck deletes characters from the encoded text; root-span uuids are built
from SHA-1 directly. Each test compares a cache hit with a miss, or the shortcut with the
standard library.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from posthog_callbacks.events import _NAMESPACE, _uuid5, span_to_event
from posthog_callbacks.serialize import REDACTED, Serializer, scrub
from posthog_callbacks.spans import FinishedSpan, SpanKind

OPENAI_KEY = "sk-proj-abcdefghijklmnopqrstuvwxyz0123"
PROJECT_KEY = "myOwnLiteralSecret42"


@pytest.mark.parametrize(
    "name", ["", "t/t/1.5", "trace-\u00e9\u4e2d/span/1764470000.123456", "x" * 5000]
)
def test_uuid5_matches_the_standard_library(name: str) -> None:
    assert _uuid5(name) == str(uuid.uuid5(_NAMESPACE, name))


def test_root_event_uuid_is_uuid5_of_trace_span_and_start() -> None:
    span = FinishedSpan("trace-1", "trace-1", None, SpanKind.SPAN, "root", 12.5, 13.0)
    expected = str(uuid.uuid5(_NAMESPACE, "trace-1/trace-1/12.5"))
    assert span_to_event(span)["uuid"] == expected


@pytest.mark.parametrize(
    "shape",
    [
        lambda text: text,
        lambda text: {"content": text},
        lambda text: [text],
        lambda text: [{"role": "user", "content": [text]}],
    ],
)
def test_a_secret_is_redacted_on_the_cache_hit_too(shape: Any) -> None:
    text = f"please use {OPENAI_KEY} for the call"
    first = Serializer().convert(shape(text))
    second = Serializer().convert(shape(text))
    assert first == second
    assert OPENAI_KEY not in repr(second) and REDACTED in repr(second)


def test_literal_secrets_are_cached_per_set_of_secrets() -> None:
    text = f"the project key is {PROJECT_KEY}, keep it"
    assert Serializer((PROJECT_KEY,)).convert(text) == f"the project key is {REDACTED}, keep it"
    assert Serializer().convert(text) == text
    assert Serializer((PROJECT_KEY,)).convert(text) == f"the project key is {REDACTED}, keep it"
    key = f"field_{PROJECT_KEY}"
    assert Serializer((PROJECT_KEY,)).convert({key: 1}) == {f"field_{REDACTED}": 1}
    assert Serializer().convert({key: 1}) == {key: 1}
    assert Serializer((PROJECT_KEY,)).convert({key: 1}) == {f"field_{REDACTED}": 1}
    assert Serializer((PROJECT_KEY,)).ident(f"user-{PROJECT_KEY}").startswith("[REDACTED ")
    assert Serializer().ident(f"user-{PROJECT_KEY}") == f"user-{PROJECT_KEY}"


def test_secret_key_names_hide_values_on_the_cache_hit_too() -> None:
    for _ in range(2):
        out = Serializer().convert({"github_token": "ghp-like-but-not-a-format-1", "n": 1})
        assert out == {"github_token": REDACTED, "n": 1}


def test_size_is_counted_the_same_on_hit_and_miss() -> None:
    value = {"system": "You are a helpful assistant. Today is 2026-11-30.", "items": ["a" * 40]}
    first, second = Serializer(), Serializer()
    assert first.convert(value) == second.convert(value)
    assert first.size == second.size > 0


class _HostileStr(str):
    def __hash__(self) -> int:
        raise AssertionError("user __hash__ ran")

    def __eq__(self, other: object) -> bool:
        raise AssertionError("user __eq__ ran")


def test_str_subclasses_never_reach_the_caches() -> None:
    text = _HostileStr(f"a long enough text with {OPENAI_KEY}")
    out = Serializer().convert({"content": text, "list": [text]})
    assert out["content"] == out["list"][0] == f"a long enough text with {REDACTED}"
    assert OPENAI_KEY not in Serializer().ident(text)


@pytest.mark.parametrize("char", list("-_=:/@+0123456789"))
def test_the_precheck_lets_every_marker_character_through(char: str) -> None:
    # A credential needs one of these characters; the precheck must not skip the scan
    # when one is present, in ASCII or non-ASCII text, at the start, middle or end.
    for text in (f"{char}xxxxxxxxx", f"xxxx{char}xxxx", f"xxxxxxxx{char}", f"\u00e9tude {char} ok"):
        assert scrub(text) == text  # harmless text stays
    assert scrub(f"token: \u00e9 {OPENAI_KEY}") == f"token: \u00e9 {REDACTED}"
    assert scrub(f"\ud800 lone surrogate then {OPENAI_KEY}").endswith(REDACTED)


def test_privacy_mode_tool_names_from_plain_dicts_are_scrubbed_and_schemas_dropped() -> None:
    tools: list[Any] = [
        {"type": "function", "function": {"name": OPENAI_KEY, "description": "x"}},
        {"name": "search", "description": "free text", "input_schema": {"type": "object"}},
        {"type": "function", "function": {"description": "no name"}},
    ]
    span = FinishedSpan(
        "t", "s", "t", SpanKind.GENERATION, "chat", 1.0, 2.0, tools=tools, privacy_mode=True
    )
    assert span_to_event(span)["properties"]["$ai_tools"] == [
        {"type": "function", "function": {"name": REDACTED}},
        {"type": "function", "function": {"name": "search"}},
    ]
    marker = {"lc": 1, "type": "secret", "id": ["OPENAI_API_KEY"], "name": "leaked"}
    hidden = span._replace(tools=[marker, {"function": {"name": "ok_tool"}}])
    assert span_to_event(hidden)["properties"]["$ai_tools"] == [
        {"type": "function", "function": {"name": "ok_tool"}}
    ]
