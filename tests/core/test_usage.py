"""Usage, model and provider normalisation (usage.py)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from posthog_callbacks import usage as usage_module
from posthog_callbacks.spans import Usage
from posthog_callbacks.usage import (
    is_anthropic,
    is_local_provider,
    normalize_provider,
    posthog_adds_reasoning,
    provider_from_class,
    sum_usage,
    usage_from_mapping,
)


def test_langchain_usage_metadata() -> None:
    usage = usage_from_mapping(
        {
            "input_tokens": 350,
            "output_tokens": 240,
            "total_tokens": 590,
            "input_token_details": {
                "cache_read": 100,
                "cache_creation": 200,
                "ephemeral_5m_input_tokens": 150,
                "ephemeral_1h_input_tokens": 50,
            },
            "output_token_details": {"reasoning": 200},
        }
    )
    assert usage == Usage(
        input_tokens=350,
        output_tokens=240,
        total_tokens=590,
        cache_read_tokens=100,
        cache_creation_tokens=200,
        cache_creation_5m_tokens=150,
        cache_creation_1h_tokens=50,
        reasoning_tokens=200,
    )


def test_openai_raw_usage() -> None:
    usage = usage_from_mapping(
        {
            "prompt_tokens": 1200,
            "completion_tokens": 300,
            "total_tokens": 1500,
            "prompt_tokens_details": {"cached_tokens": 1024, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 128},
        }
    )
    assert usage == Usage(
        input_tokens=1200,
        output_tokens=300,
        total_tokens=1500,
        cache_read_tokens=1024,
        reasoning_tokens=128,
    )


def test_anthropic_raw_usage_is_made_inclusive() -> None:
    usage = usage_from_mapping(
        {
            "input_tokens": 10,
            "output_tokens": 5,
            "cache_read_input_tokens": 100,
            "cache_creation_input_tokens": 30,
            "cache_creation": {"ephemeral_5m_input_tokens": 30, "ephemeral_1h_input_tokens": 0},
        }
    )
    assert usage == Usage(
        input_tokens=140,
        output_tokens=5,
        cache_read_tokens=100,
        cache_creation_tokens=30,
        cache_creation_5m_tokens=30,
        cache_creation_1h_tokens=0,
    )


def test_other_providers() -> None:
    assert usage_from_mapping(
        {"inputTokens": 5, "outputTokens": 7, "totalTokens": 12, "cacheReadInputTokens": 3}
    ) == Usage(input_tokens=8, output_tokens=7, total_tokens=12, cache_read_tokens=3)
    assert usage_from_mapping(
        {
            "prompt_token_count": 9,
            "candidates_token_count": 4,
            "thoughts_token_count": 2,
            "cached_content_token_count": 1,
            "total_token_count": 15,
        }
    ) == Usage(
        input_tokens=9, output_tokens=6, total_tokens=15, cache_read_tokens=1, reasoning_tokens=2
    )
    assert usage_from_mapping({"prompt_eval_count": 11, "eval_count": 22}) == Usage(
        input_tokens=11, output_tokens=22
    )
    assert usage_from_mapping({"billed_units": {"input_tokens": 4, "output_tokens": 6}}) == Usage(
        input_tokens=4, output_tokens=6
    )


class UsageObject:
    def __init__(self) -> None:
        self.prompt_tokens = 3
        self.completion_tokens = 4


@pytest.mark.parametrize(
    "raw",
    [
        None,
        "12",
        12,
        [],
        {},
        {"input_tokens": None},
        {"input_tokens": -4},
        {"input_tokens": "abc"},
        {"input_tokens": float("nan")},
        {"input_tokens": True},
    ],
)
def test_malformed_usage_gives_none(raw: object) -> None:
    assert usage_from_mapping(raw) is None


def test_numeric_strings_and_objects() -> None:
    assert usage_from_mapping({"input_tokens": "7", "output_tokens": 2.0}) == Usage(
        input_tokens=7, output_tokens=2
    )
    assert usage_from_mapping(UsageObject()) == Usage(input_tokens=3, output_tokens=4)


def test_sum_usage_keeps_unknown_as_none() -> None:
    total = sum_usage(
        [Usage(input_tokens=1, output_tokens=2), None, Usage(input_tokens=3, cache_read_tokens=1)]
    )
    assert total == Usage(input_tokens=4, output_tokens=2, cache_read_tokens=1)
    assert sum_usage([None, None]) is None


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("openai", "openai"),
        ("azure_openai", "azure"),
        ("AzureChatOpenAI", "azure"),
        ("anthropic", "anthropic"),
        ("amazon_bedrock", "bedrock"),
        ("bedrock_converse", "bedrock"),
        ("google_vertexai", "vertex_ai"),
        ("google_genai", "gemini"),
        ("ollama", "ollama"),
        ("mistralai", "mistral"),
        ("groq", "groq"),
        ("Some-New-Provider", "some-new-provider"),
        ("", None),
        (None, None),
        (3, None),
    ],
)
def test_normalize_provider(raw: object, expected: str | None) -> None:
    assert normalize_provider(raw) == expected


@pytest.mark.parametrize(
    ("cls", "expected"),
    [
        ("ChatOpenAI", "openai"),
        ("AzureChatOpenAI", "azure"),
        ("ChatAnthropic", "anthropic"),
        ("OpenAI", "openai"),
        ("Anthropic", "anthropic"),
        ("ChatBedrockConverse", "bedrock"),
        ("GoogleGenAI", "gemini"),
        ("Ollama", "ollama"),
        ("MistralAI", "mistral"),
        ("OpenAIEmbedding", "openai"),
        ("MockLLM", None),
        ("", None),
    ],
)
def test_provider_from_class(cls: str, expected: str | None) -> None:
    assert provider_from_class(cls) == expected


def test_is_anthropic() -> None:
    assert is_anthropic("anthropic", None)
    assert is_anthropic("bedrock", "anthropic.claude-3-5-sonnet-20240620-v1:0")
    assert is_anthropic("vertex_ai", "claude-3-haiku@20240307")
    assert not is_anthropic("openai", "gpt-4o")
    assert not is_anthropic(None, None)


def test_is_anthropic_is_posthogs_rule_exactly() -> None:
    # PostHog's matchProvider: provider anthropic, model containing "anthropic", or a
    # model starting with "claude". Wider rules made PostHog subtract the cache twice.
    assert is_anthropic("openrouter", "anthropic/claude-3.5-sonnet")
    assert not is_anthropic("litellm", "vertex_ai/claude-3-5-sonnet@20240620")
    assert not is_anthropic("bedrock", "eu.meta.claude-lookalike")


@pytest.mark.parametrize(
    ("model", "adds"),
    [
        ("gemini-2.5-flash", True),
        ("gemini-2.5-pro-preview-05-06", True),
        ("models/gemini-3-pro-preview", True),
        ("google/gemini-3.1-flash-lite", True),
        ("Gemini-2.5-Flash", True),
        ("gemini-2.0-flash", False),
        ("gemini-3", False),
        ("o3-mini", False),
        (None, False),
    ],
)
def test_posthog_adds_reasoning(model: str | None, adds: bool) -> None:
    assert posthog_adds_reasoning(model) is adds


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("ollama", "ollama"),
        ("LMStudio", "lmstudio"),
        ("llama_cpp", "llamacpp"),
        ("ChatLlamaCpp", "llamacpp"),
        ("vllm", "vllm"),
    ],
)
def test_local_runtimes(raw: str, expected: str) -> None:
    assert normalize_provider(raw) == expected
    assert is_local_provider(normalize_provider(raw))
    assert not is_local_provider("openai") and not is_local_provider(None)


def test_vertex_output_without_thoughts_is_made_inclusive() -> None:
    vertex = {
        "input_tokens": 10,
        "output_tokens": 20,
        "total_tokens": 60,
        "input_token_details": {"cache_read": 0},
        "output_token_details": {"reasoning": 30},
    }
    genai = {**vertex, "output_tokens": 50}
    assert (
        usage_from_mapping(vertex)
        == usage_from_mapping(genai)
        == Usage(10, 50, 60, 0, None, None, None, 30)
    )


def test_web_search_count_from_sdk_objects() -> None:
    class ServerToolUse:
        web_search_requests = 2

    class AnthropicUsage:
        def __init__(self) -> None:
            self.input_tokens = 5
            self.output_tokens = 1
            self.server_tool_use = ServerToolUse()

    usage = usage_from_mapping(AnthropicUsage())
    assert usage is not None and usage.web_search_count == 2


def test_bedrock_raw_cache_details_give_the_ttl_split() -> None:
    usage = usage_from_mapping(
        {
            "inputTokens": 12,
            "outputTokens": 30,
            "totalTokens": 7042,
            "cacheReadInputTokens": 5000,
            "cacheWriteInputTokens": 2000,
            "cacheDetails": [{"ttl": "1h", "inputTokens": 2000}],
        }
    )
    assert usage == Usage(7012, 30, 7042, 5000, 2000, 0, 2000)


def test_output_smaller_than_its_reasoning_excluded_it() -> None:
    # no total to compare with: an output below the reasoning cannot include it
    usage = usage_from_mapping(
        {"input_tokens": 10, "output_tokens": 20, "output_token_details": {"reasoning": 30}}
    )
    assert usage is not None and usage.output_tokens == 50
    usage = usage_from_mapping(
        {"input_tokens": 10, "output_tokens": 50, "output_token_details": {"reasoning": 30}}
    )
    assert usage is not None and usage.output_tokens == 50


class _Name(str):
    """A str subclass (not remembered: its methods may be overridden)."""


@given(
    raw=st.one_of(
        st.none(),
        st.integers(),
        st.sampled_from(["OpenAI", " anthropic ", "azure_openai", "google-genai", "fake", ""]),
        st.sampled_from(["ChatOpenAI", "AzureOpenAI", "Anthropic", "MockLLM", "OpenAILike"]),
        st.text(max_size=6),
        st.text(max_size=6).map(_Name),
    )
)
def test_providers_remembered_per_string_equal_the_rule(raw: Any) -> None:
    expected = usage_module._normalize(raw) if isinstance(raw, str) else None
    by_class = usage_module._from_class(raw) if isinstance(raw, str) else None
    for _ in range(2):  # the first call fills the cache, the second reads it
        assert normalize_provider(raw) == expected
        assert provider_from_class(raw) == by_class
