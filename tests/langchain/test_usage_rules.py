"""LangChain's ``usage_metadata`` rule (issue 10.11): ``input_tokens`` counts every input
type, cache reads and writes live in ``input_token_details``; raw provider usage beside it
is never added on top."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.messages import AIMessage

from support.langchain_fakes import ProviderFake
from support.langchain_helpers import Recorder

# An Anthropic call: 300 uncached input tokens, 1,000 read from the cache, 200 written.
USAGE_METADATA: dict[str, Any] = {
    "input_tokens": 1500,
    "output_tokens": 40,
    "total_tokens": 1540,
    "input_token_details": {"cache_read": 1000, "cache_creation": 200},
}
RAW_ANTHROPIC = {
    "input_tokens": 300,
    "cache_read_input_tokens": 1000,
    "cache_creation_input_tokens": 200,
    "output_tokens": 40,
}


def _generation(rec: Recorder, message: AIMessage, provider: str, model: str) -> dict[str, Any]:
    fake = ProviderFake(responses=[message], provider=provider, model=model)
    fake.invoke("hi", config={"callbacks": [rec.handler()]})
    (event,) = rec.events()
    props: dict[str, Any] = event["properties"]
    return props


@pytest.mark.parametrize(
    ("provider", "model", "expected_input"),
    [
        ("anthropic", "claude-sonnet-4-5", 300),  # PostHog: Anthropic input is uncached only
        ("openai", "gpt-4o", 1500),  # everyone else: input includes cached tokens
    ],
)
def test_raw_provider_usage_beside_usage_metadata_is_not_added(
    rec: Recorder, provider: str, model: str, expected_input: int
) -> None:
    message = AIMessage(
        "ok",
        usage_metadata=USAGE_METADATA,  # type: ignore[arg-type]
        response_metadata={"usage": RAW_ANTHROPIC, "token_usage": {"prompt_tokens": 1500}},
    )
    p = _generation(rec, message, provider, model)
    assert p["$ai_input_tokens"] == expected_input
    assert p["$ai_output_tokens"] == 40
    assert p["$ai_cache_read_input_tokens"] == 1000
    assert p["$ai_cache_creation_input_tokens"] == 200


def test_raw_keys_copied_into_usage_metadata_keep_langchains_meaning(rec: Recorder) -> None:
    # an integration that copies the provider's keys into usage_metadata itself
    um = {**USAGE_METADATA, "cache_read_input_tokens": 1000, "prompt_tokens": 1500}
    message = AIMessage("ok", usage_metadata=um)  # type: ignore[arg-type]
    p = _generation(rec, message, "openai", "gpt-4o")
    assert p["$ai_input_tokens"] == 1500
    assert p["$ai_cache_read_input_tokens"] == 1000
    assert p["$ai_cache_creation_input_tokens"] == 200
    assert p["$ai_output_tokens"] == 40


def test_raw_cache_keys_in_usage_metadata_without_details_are_not_added(rec: Recorder) -> None:
    um = {"input_tokens": 1500, "output_tokens": 40, "total_tokens": 1540}
    um |= {"cache_read_input_tokens": 1000, "cache_creation_input_tokens": 200}
    message = AIMessage("ok", usage_metadata=um)  # type: ignore[arg-type]
    p = _generation(rec, message, "openai", "gpt-4o")
    assert p["$ai_input_tokens"] == 1500  # not 2,700
    assert "$ai_cache_read_input_tokens" not in p


def test_usage_metadata_without_details_has_no_cache_tokens(rec: Recorder) -> None:
    message = AIMessage(
        "ok",
        usage_metadata={"input_tokens": 1500, "output_tokens": 40, "total_tokens": 1540},
        response_metadata={"usage": RAW_ANTHROPIC},
    )
    p = _generation(rec, message, "anthropic", "claude-sonnet-4-5")
    assert p["$ai_input_tokens"] == 1500
    assert "$ai_cache_read_input_tokens" not in p
    assert "$ai_cache_creation_input_tokens" not in p
