"""Real provider packages (langchain-openai, -anthropic, -groq) replayed from cassettes.

The cassettes under ``tests/cassettes/langchain`` are written by hand from the providers'
documented response formats; ``record_mode="none"`` makes any unexpected request fail.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
import vcr
from langchain_anthropic import ChatAnthropic
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI

from support.langchain_helpers import Recorder

CASSETTES = Path(__file__).resolve().parent.parent / "cassettes" / "langchain"
VCR = vcr.VCR(
    cassette_library_dir=str(CASSETTES),
    record_mode="none",
    match_on=["method", "scheme", "host", "port", "path"],
    filter_headers=["authorization", "x-api-key", "api-key"],
)


@pytest.fixture(autouse=True)
def _no_provider_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in (
        "OPENAI_BASE_URL",
        "OPENAI_API_BASE",
        "ANTHROPIC_API_URL",
        "ANTHROPIC_BASE_URL",
        "GROQ_API_BASE",
        "GROQ_BASE_URL",
    ):
        monkeypatch.delenv(var, raising=False)


def _generation(rec: Recorder) -> dict[str, Any]:
    (event,) = rec.events()
    assert event["event"] == "$ai_generation"
    props: dict[str, Any] = event["properties"]
    return props


def test_openai_chat_with_cached_and_reasoning_tokens(rec: Recorder) -> None:
    with VCR.use_cassette("openai_chat_cached_reasoning.yaml"):
        msg = ChatOpenAI(model="o4-mini", api_key="sk-test", max_retries=0).invoke(
            "Capital of France?", config={"callbacks": [rec.handler()]}
        )
    assert msg.content == "Paris."
    p = _generation(rec)
    assert p["$ai_model"] == "o4-mini-2025-04-16"
    assert p["$ai_provider"] == "openai"
    assert p["$ai_base_url"] == "https://api.openai.com/v1"
    assert p["$ai_input_tokens"] == 1200  # OpenAI: input includes cached tokens
    assert p["$ai_output_tokens"] == 150
    assert p["$ai_cache_read_input_tokens"] == 1024
    assert p["$ai_reasoning_tokens"] == 128
    assert p["$ai_stop_reason"] == "stop"
    assert p["$ai_http_status"] == 200
    assert p["$ai_input"] == [{"role": "user", "content": "Capital of France?"}]
    assert p["$ai_output_choices"] == [{"role": "assistant", "content": "Paris."}]
    assert "$ai_time_to_first_token" not in p
    assert p["$ai_service_tier"] == "default"


def test_openai_served_service_tier(rec: Recorder) -> None:
    with VCR.use_cassette("openai_flex_tier.yaml"):
        ChatOpenAI(model="o4-mini", api_key="sk-test", max_retries=0, service_tier="flex").invoke(
            "Capital of France?", config={"callbacks": [rec.handler()]}
        )
    p = _generation(rec)
    assert p["$ai_service_tier"] == "flex"
    assert p["$ai_model_parameters"]["service_tier"] == "flex"
    assert p["$ai_input_tokens"] == 1200


def test_openai_stream_with_usage(rec: Recorder) -> None:
    with VCR.use_cassette("openai_stream_usage.yaml"):
        chunks = list(
            ChatOpenAI(
                model="gpt-4o-mini", api_key="sk-test", stream_usage=True, max_retries=0
            ).stream("Say hello", config={"callbacks": [rec.handler()]})
        )
    assert "".join(str(c.content) for c in chunks) == "Hello!"
    p = _generation(rec)
    assert p["$ai_model"] == "gpt-4o-mini-2024-07-18"
    assert p["$ai_provider"] == "openai"
    assert (p["$ai_input_tokens"], p["$ai_output_tokens"]) == (9, 2)
    assert p["$ai_cache_read_input_tokens"] == 0
    assert p["$ai_stream"] is True
    assert 0 < p["$ai_time_to_first_token"] <= p["$ai_latency"]
    assert p["$ai_output_choices"] == [{"role": "assistant", "content": "Hello!"}]
    assert p["$ai_stop_reason"] == "stop"
    assert "$ai_usage_missing_reason" not in p


def test_openai_stream_without_usage_says_how_to_enable_it(
    rec: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    handler = rec.handler()
    model = ChatOpenAI(
        model="gpt-4o-mini",
        api_key="sk-test",
        stream_usage=False,
        base_url="http://llm.internal:8080/v1",
        max_retries=0,
    )
    with (
        caplog.at_level(logging.WARNING, "posthog_callbacks"),
        VCR.use_cassette("openai_stream_no_usage.yaml", allow_playback_repeats=True),
    ):
        for _ in range(3):
            list(model.stream("Say hello", config={"callbacks": [handler]}))
    events = rec.events()
    assert len(events) == 3
    for event in events:
        p = event["properties"]
        assert p["$ai_base_url"] == "http://llm.internal:8080/v1"
        assert p["$ai_model"] == "gpt-4o-mini-2024-07-18"
        assert not any(k.endswith("_tokens") for k in p)
        assert "stream_usage=True" in p["$ai_usage_missing_reason"]
    (warning,) = [r.getMessage() for r in caplog.records if "OpenAI stream" in r.getMessage()]
    assert "$0" in warning
    assert "stream_usage=True" in warning
    assert "'include_usage': True" in warning


def test_openai_http_error_status(rec: Recorder) -> None:
    with VCR.use_cassette("openai_rate_limited.yaml"), pytest.raises(Exception) as info:
        ChatOpenAI(model="gpt-4o-mini", api_key="sk-test", max_retries=0).invoke(
            "hi", config={"callbacks": [rec.handler()]}
        )
    assert "429" in str(info.value)
    p = _generation(rec)
    assert p["$ai_is_error"] is True
    assert p["$ai_http_status"] == 429
    assert p["$ai_error"].startswith(type(info.value).__name__ + ": Error code: 429")
    assert p["$ai_model"] == "gpt-4o-mini"  # nothing served: the requested model
    assert "$ai_usage_missing_reason" not in p


@tool
def get_weather(city: str) -> str:
    """Weather for a city."""
    return "sunny"


def test_openai_tool_call_and_tools(rec: Recorder) -> None:
    with VCR.use_cassette("openai_tool_call.yaml"):
        ChatOpenAI(model="gpt-4o-mini", api_key="sk-test", max_retries=0).bind_tools(
            [get_weather]
        ).invoke("Weather in Paris?", config={"callbacks": [rec.handler()]})
    p = _generation(rec)
    assert p["$ai_tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather for a city.",
                "parameters": {
                    "properties": {"city": {"type": "string"}},
                    "required": ["city"],
                    "type": "object",
                },
            },
        }
    ]
    assert p["$ai_output_choices"] == [
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {
                    "type": "function",
                    "id": "call_w1",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        }
    ]
    assert p["$ai_stop_reason"] == "tool_calls"
    assert (p["$ai_input_tokens"], p["$ai_output_tokens"]) == (60, 16)


def test_openai_invalid_tool_call_is_recorded_with_raw_arguments(rec: Recorder) -> None:
    with VCR.use_cassette("openai_invalid_tool_call.yaml"):
        msg = (
            ChatOpenAI(model="gpt-4o-mini", api_key="sk-test", max_retries=0)
            .bind_tools([get_weather])
            .invoke("Weather in Paris?", config={"callbacks": [rec.handler()]})
        )
    (bad,) = msg.invalid_tool_calls  # type: ignore[attr-defined]
    p = _generation(rec)
    assert p["$ai_output_choices"] == [
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {
                    "type": "function",
                    "id": "call_w1",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                },
                {
                    "type": "function",
                    "id": "call_w2",
                    "function": {"name": "get_weather", "arguments": '{"city": "Lyo'},
                    "error": bad["error"],
                },
            ],
        }
    ]
    assert bad["error"]


def test_anthropic_web_search_count(rec: Recorder) -> None:
    with VCR.use_cassette("anthropic_web_search.yaml"):
        ChatAnthropic(
            model="claude-sonnet-4-5", api_key="sk-test", max_tokens=1024, max_retries=0
        ).bind_tools([{"type": "web_search_20250305", "name": "web_search", "max_uses": 3}]).invoke(
            "How does PostHog record LLM calls?", config={"callbacks": [rec.handler()]}
        )
    p = _generation(rec)
    assert p["$ai_web_search_count"] == 2
    assert (p["$ai_input_tokens"], p["$ai_output_tokens"]) == (2100, 95)
    assert "$ai_service_tier" not in p  # Anthropic's tier sits inside usage, as in PostHog's


def test_anthropic_cache_read_and_creation(rec: Recorder) -> None:
    with VCR.use_cassette("anthropic_cache.yaml"):
        ChatAnthropic(
            model="claude-sonnet-4-5", api_key="sk-test", max_tokens=1024, max_retries=0
        ).invoke("Summarise the manual.", config={"callbacks": [rec.handler()]})
    p = _generation(rec)
    assert p["$ai_model"] == "claude-sonnet-4-5-20250929"
    assert p["$ai_provider"] == "anthropic"
    assert p["$ai_base_url"] == "https://api.anthropic.com"
    # Anthropic: $ai_input_tokens is the uncached input only
    assert p["$ai_input_tokens"] == 12
    assert p["$ai_cache_read_input_tokens"] == 5000
    assert p["$ai_cache_creation_input_tokens"] == 2000
    assert p["$ai_cache_creation_5m_input_tokens"] == 1500
    assert p["$ai_cache_creation_1h_input_tokens"] == 500
    assert p["$ai_output_tokens"] == 30
    assert p["$ai_stop_reason"] == "end_turn"
    assert p["$ai_max_tokens"] == 1024
    assert p["$ai_output_choices"] == [
        {"role": "assistant", "content": "The manual explains setup."}
    ]


def test_anthropic_stream_usage_from_final_event(rec: Recorder) -> None:
    with VCR.use_cassette("anthropic_stream.yaml"):
        chunks = list(
            ChatAnthropic(
                model="claude-haiku-4-5", api_key="sk-test", max_tokens=1024, max_retries=0
            ).stream("Hi", config={"callbacks": [rec.handler()]})
        )
    assert "".join(str(c.content) for c in chunks) == "Hello there"
    p = _generation(rec)
    assert p["$ai_model"] == "claude-haiku-4-5-20251001"
    assert p["$ai_provider"] == "anthropic"
    assert p["$ai_input_tokens"] == 25
    assert p["$ai_cache_read_input_tokens"] == 800
    assert p["$ai_cache_creation_input_tokens"] == 0
    assert p["$ai_output_tokens"] == 12
    assert p["$ai_stream"] is True
    assert 0 < p["$ai_time_to_first_token"] <= p["$ai_latency"]
    assert p["$ai_stop_reason"] == "end_turn"


def test_groq_chat(rec: Recorder) -> None:
    chat_groq = pytest.importorskip("langchain_groq").ChatGroq
    with VCR.use_cassette("groq_chat.yaml"):
        msg = chat_groq(
            model="llama-3.3-70b-versatile",
            api_key="gsk-test",
            temperature=0.2,
            max_tokens=16,
            max_retries=0,
        ).invoke("One word for fast?", config={"callbacks": [rec.handler()]})
    assert msg.content == "Swift."
    p = _generation(rec)
    assert p["$ai_model"] == "llama-3.3-70b-versatile"
    assert p["$ai_provider"] == "groq"
    assert p["$ai_base_url"] == "https://api.groq.com"
    assert (p["$ai_input_tokens"], p["$ai_output_tokens"], p["$ai_total_tokens"]) == (41, 3, 44)
    assert "$ai_cache_read_input_tokens" not in p
    # ChatGroq sends no invocation params: temperature / max_tokens come from ls_* metadata
    assert p["$ai_temperature"] == 0.2
    assert p["$ai_max_tokens"] == 16
    assert p["$ai_stop_reason"] == "stop"
