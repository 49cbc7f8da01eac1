"""Usage, model, provider and stop reason from LlamaIndex responses of several providers.

Response shapes follow each LlamaIndex provider package's ``ChatResponse.raw`` /
``additional_kwargs`` (the packages are not installed here; the shapes are).
"""

from __future__ import annotations

from typing import Any

import pytest
from llama_index.core.base.llms.types import ChatMessage, ChatResponse, CompletionResponse

from posthog_callbacks.llama_index.extract import (
    NO_USAGE_HINT,
    OPENAI_STREAM_USAGE_HINT,
    model_and_provider,
    response_fields,
)
from posthog_callbacks.spans import Usage


def chat(raw: Any = None, **extra: Any) -> ChatResponse:
    return ChatResponse(message=ChatMessage(role="assistant", content="ok"), raw=raw, **extra)


def test_ollama_raw_counts() -> None:
    # llama-index-llms-ollama: raw is the /api/chat response
    raw = {
        "model": "llama3.1:8b",
        "done": True,
        "done_reason": "stop",
        "prompt_eval_count": 26,
        "eval_count": 298,
        "message": {"role": "assistant"},
    }
    usage, model, stop, reason = response_fields(chat(raw), "ollama")
    assert usage == Usage(input_tokens=26, output_tokens=298)
    assert (model, stop, reason) == ("llama3.1:8b", "stop", None)


def test_gemini_usage_metadata() -> None:
    # llama-index-llms-google-genai: raw is GenerateContentResponse.model_dump()
    raw = {
        "model_version": "gemini-2.5-flash",
        "usage_metadata": {
            "prompt_token_count": 100,
            "candidates_token_count": 20,
            "thoughts_token_count": 30,
            "cached_content_token_count": 40,
            "total_token_count": 150,
        },
    }
    usage, model, _, _ = response_fields(chat(raw), "gemini")
    assert usage is not None
    assert (
        usage.input_tokens,
        usage.output_tokens,
        usage.reasoning_tokens,
        usage.cache_read_tokens,
    ) == (100, 50, 30, 40)
    assert model == "gemini-2.5-flash"


def test_bedrock_converse_usage() -> None:
    raw = {
        "stopReason": "end_turn",
        "usage": {
            "inputTokens": 12,
            "outputTokens": 7,
            "totalTokens": 19,
            "cacheReadInputTokens": 100,
        },
    }
    usage, _, stop, _ = response_fields(chat(raw), "bedrock")
    assert usage is not None
    assert (usage.input_tokens, usage.output_tokens, usage.cache_read_tokens) == (112, 7, 100)
    assert stop == "end_turn"


def test_openai_token_counts_in_additional_kwargs() -> None:
    # llama-index-llms-openai puts its counts in additional_kwargs (raw is an SDK object)
    response = CompletionResponse(
        text="ok", additional_kwargs={"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}
    )
    usage, _, _, reason = response_fields(response, "openai")
    assert usage == Usage(input_tokens=5, output_tokens=2, total_tokens=7)
    assert reason is None


def test_anthropic_stream_usage_in_message_kwargs() -> None:
    response = ChatResponse(
        message=ChatMessage(
            role="assistant",
            content="hi",
            additional_kwargs={
                "usage": {"input_tokens": 9, "output_tokens": 4},
                "stop_reason": "end_turn",
            },
        ),
        delta="",
    )
    usage, _, stop, _ = response_fields(response, "anthropic")
    assert usage == Usage(input_tokens=9, output_tokens=4)
    assert stop == "end_turn"


@pytest.mark.parametrize(
    ("provider", "delta", "hint"),
    [
        ("openai", "x", OPENAI_STREAM_USAGE_HINT),  # an OpenAI stream chunk without usage
        ("openai", None, NO_USAGE_HINT),
        (None, "x", NO_USAGE_HINT),
    ],
)
def test_missing_usage_says_why(provider: str | None, delta: str | None, hint: str) -> None:
    usage, _, _, reason = response_fields(chat(delta=delta), provider)
    assert usage is None
    assert reason == hint


@pytest.mark.parametrize(
    ("payload", "model", "provider"),
    [
        ({"class_name": "openai_llm", "model_name": "gpt-4o"}, "gpt-4o", "openai"),
        (
            {"class_name": "Anthropic_LLM", "model_name": "claude-opus-4-7"},
            "claude-opus-4-7",
            "anthropic",
        ),
        (
            {"class_name": "GoogleGenAI", "model_name": "gemini-2.5-flash"},
            "gemini-2.5-flash",
            "gemini",
        ),
        ({"class_name": "Ollama", "model_name": "llama3.1"}, "llama3.1", "ollama"),
        ({"class_name": "BedrockConverse", "model_name": "x"}, "x", "bedrock"),
        ({"class_name": "MockLLM", "model_name": "unknown"}, None, None),
    ],
)
def test_model_and_provider_from_payload(
    payload: dict[str, Any], model: str | None, provider: str | None
) -> None:
    assert model_and_provider(payload) == (model, provider)
