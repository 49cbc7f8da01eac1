"""Real provider packages (llama-index-llms-openai / -anthropic, -embeddings-openai) replayed
from hand-written cassettes; ``record_mode="none"`` makes any unexpected request fail."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import vcr
from llama_index.core.base.llms.types import ChatMessage
from llama_index.embeddings.openai import OpenAIEmbedding
from llama_index.llms.anthropic import Anthropic
from llama_index.llms.openai import OpenAI

from posthog_callbacks.llama_index import InstrumentHandle
from support.llama_helpers import Events, props

CASSETTES = Path(__file__).resolve().parent.parent / "cassettes" / "llama_index"
VCR = vcr.VCR(
    cassette_library_dir=str(CASSETTES),
    record_mode="none",
    match_on=["method", "scheme", "host", "port", "path"],
    filter_headers=["authorization", "x-api-key", "api-key"],
)
USER = [ChatMessage(role="user", content="Capital of France?")]


@pytest.fixture(autouse=True)
def _no_provider_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # llama-index-llms-anthropic 0.12 calls anthropic.types.MessageParam(...), which the
    # installed anthropic SDK turned into a Union: build the same TypedDict as a dict.
    import llama_index.llms.anthropic.utils as anthropic_utils

    monkeypatch.setattr(anthropic_utils, "MessageParam", dict)
    for var in ("OPENAI_BASE_URL", "OPENAI_API_BASE", "ANTHROPIC_API_URL", "ANTHROPIC_BASE_URL"):
        monkeypatch.delenv(var, raising=False)


def _only(events: Events, kind: str) -> dict[str, Any]:
    got = events()
    assert [e["event"] for e in got] == [kind]
    return props(got[0])


def test_openai_chat_cached_and_reasoning_tokens(
    instrumented: InstrumentHandle, events: Events
) -> None:
    llm = OpenAI(model="gpt-4o-mini", api_key="sk-test", max_retries=0, temperature=0.1)
    with VCR.use_cassette("openai_chat.yaml"):
        assert llm.chat(USER).message.content == "Paris."
    p = _only(events, "$ai_generation")
    assert p["$ai_model"] == "gpt-4o-mini-2024-07-18"
    assert p["$ai_provider"] == "openai"
    assert p["$ai_input_tokens"] == 1200  # OpenAI: input includes cached tokens
    assert p["$ai_output_tokens"] == 150
    assert p["$ai_cache_read_input_tokens"] == 1024
    assert p["$ai_reasoning_tokens"] == 128
    assert p["$ai_stop_reason"] == "stop"
    assert p["$ai_temperature"] == 0.1
    assert p["$ai_base_url"] == "https://api.openai.com/v1"
    assert p["$ai_input"] == [{"role": "user", "content": "Capital of France?"}]
    assert p["$ai_output_choices"] == [{"role": "assistant", "content": "Paris."}]
    assert "sk-test" not in repr(p)


def test_openai_stream_with_include_usage(instrumented: InstrumentHandle, events: Events) -> None:
    llm = OpenAI(
        model="gpt-4o-mini",
        api_key="sk-test",
        max_retries=0,
        temperature=0.1,
        additional_kwargs={"stream_options": {"include_usage": True}},
    )
    with VCR.use_cassette("openai_stream_usage.yaml"):
        chunks = list(llm.stream_chat([ChatMessage(role="user", content="Say hello")]))
    assert chunks[-1].message.content == "Hello!"
    p = _only(events, "$ai_generation")
    assert p["$ai_model"] == "gpt-4o-mini-2024-07-18"
    assert p["$ai_provider"] == "openai"
    assert (p["$ai_input_tokens"], p["$ai_output_tokens"]) == (9, 2)
    assert p["$ai_stream"] is True
    assert 0 < p["$ai_time_to_first_token"] <= p["$ai_latency"]
    assert p["$ai_output_choices"] == [{"role": "assistant", "content": "Hello!"}]


def test_openai_stream_without_usage_says_why(
    instrumented: InstrumentHandle, events: Events
) -> None:
    llm = OpenAI(model="gpt-4o-mini", api_key="sk-test", max_retries=0, temperature=0.1)
    with VCR.use_cassette("openai_stream_no_usage.yaml"):
        chunks = list(llm.stream_chat([ChatMessage(role="user", content="Say hello")]))
    assert chunks[-1].message.content == "Hello!"
    p = _only(events, "$ai_generation")
    assert "$ai_input_tokens" not in p and "$ai_output_tokens" not in p
    assert "include_usage" in p["$ai_usage_missing_reason"]
    assert p["$ai_provider"] == "openai"


def test_openai_embeddings(instrumented: InstrumentHandle, events: Events) -> None:
    embed = OpenAIEmbedding(model="text-embedding-3-small", api_key="sk-test", max_retries=0)
    with VCR.use_cassette("openai_embeddings.yaml"):
        vector = embed.get_text_embedding("hello world")
    assert len(vector) == 8
    p = _only(events, "$ai_embedding")
    assert p["$ai_model"] == "text-embedding-3-small"
    assert p["$ai_provider"] == "openai"
    assert p["$ai_input"] == "hello world"
    # LlamaIndex drops the embeddings response's usage: no guessed token count
    assert "$ai_input_tokens" not in p
    assert p["$ai_usage_missing_reason"]


def test_anthropic_cache_tokens(instrumented: InstrumentHandle, events: Events) -> None:
    llm = Anthropic(model="claude-opus-4-7", api_key="sk-test", max_retries=0, max_tokens=512)
    with VCR.use_cassette("anthropic_cache.yaml"):
        reply = llm.chat([ChatMessage(role="user", content="Summarise the manual.")])
    assert reply.message.content == "The manual explains setup."
    p = _only(events, "$ai_generation")
    assert p["$ai_model"] == "claude-opus-4-7"
    assert p["$ai_provider"] == "anthropic"
    assert p["$ai_input_tokens"] == 12  # Anthropic: uncached input only
    assert p["$ai_cache_read_input_tokens"] == 5000
    assert p["$ai_cache_creation_input_tokens"] == 2000
    assert p["$ai_output_tokens"] == 30
    assert p["$ai_stop_reason"] == "end_turn"
    assert p["$ai_max_tokens"] == 512


def test_anthropic_stream(instrumented: InstrumentHandle, events: Events) -> None:
    llm = Anthropic(model="claude-opus-4-7", api_key="sk-test", max_retries=0, max_tokens=512)
    with VCR.use_cassette("anthropic_stream.yaml"):
        chunks = list(llm.stream_chat([ChatMessage(role="user", content="Say hi")]))
    assert chunks[-1].message.content == "Hi there!"
    p = _only(events, "$ai_generation")
    assert p["$ai_model"] == "claude-opus-4-7"
    assert p["$ai_provider"] == "anthropic"
    assert p["$ai_input_tokens"] == 20
    assert p["$ai_cache_read_input_tokens"] == 1000
    assert p["$ai_output_tokens"] == 6
    assert p["$ai_stop_reason"] == "end_turn"
    assert 0 < p["$ai_time_to_first_token"] <= p["$ai_latency"]
