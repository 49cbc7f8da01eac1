"""Token and cost properties of Google, AWS and Ollama calls (issue 10, items 8-12).

The real provider packages (langchain-google-genai, langchain-google-vertexai with its REST
transport, langchain-aws, langchain-ollama) replay hand-written cassettes of their
providers' documented responses (``record_mode="none"``: any other request fails). Each
test asserts the exact token properties sent and prices the event with a port of PostHog's
ingestion formula (``support.posthog_costs``): the result must be the provider's bill.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytest
import vcr
from google.auth.credentials import AnonymousCredentials
from langchain_anthropic import ChatAnthropic
from langchain_aws import ChatBedrockConverse
from langchain_google_genai import ChatGoogleGenerativeAI
from langchain_ollama import ChatOllama

from posthog_callbacks import MemorySink, ModelPrice, PosthogExporter
from posthog_callbacks.langchain import CallbackHandler
from support.langchain_helpers import Recorder
from support.posthog_costs import Rates, posthog_cost

CASSETTES = Path(__file__).resolve().parent.parent / "cassettes" / "langchain"
VCR = vcr.VCR(
    cassette_library_dir=str(CASSETTES),
    record_mode="none",
    match_on=["method", "scheme", "host", "port", "path"],
    filter_headers=["authorization", "x-goog-api-key", "x-amz-security-token"],
)
M = 1e-6  # USD per million tokens, per token

TOKEN_KEYS = (
    "$ai_input_tokens",
    "$ai_output_tokens",
    "$ai_total_tokens",
    "$ai_cache_read_input_tokens",
    "$ai_cache_creation_input_tokens",
    "$ai_cache_creation_5m_input_tokens",
    "$ai_cache_creation_1h_input_tokens",
    "$ai_reasoning_tokens",
    "$ai_cache_reporting_exclusive",
    "$ai_web_search_count",
    "$ai_input_token_price",
    "$ai_output_token_price",
)


@pytest.fixture(autouse=True)
def _no_provider_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in (
        "GOOGLE_API_KEY",
        "GEMINI_API_KEY",
        "GOOGLE_GENAI_USE_VERTEXAI",
        "GOOGLE_CLOUD_PROJECT",
        "ANTHROPIC_API_URL",
        "ANTHROPIC_BASE_URL",
        "AWS_PROFILE",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_BEDROCK_RUNTIME",
        "OLLAMA_HOST",
    ):
        monkeypatch.delenv(var, raising=False)


def _generation(rec: Recorder) -> dict[str, Any]:
    (event,) = rec.events()
    assert event["event"] == "$ai_generation"
    props: dict[str, Any] = event["properties"]
    return props


def _tokens(props: dict[str, Any]) -> dict[str, Any]:
    return {k: props[k] for k in TOKEN_KEYS if k in props}


# Gemini 2.5: 2,012 prompt tokens of which 2,000 cached, 130 thinking, 3 answer tokens.
GEMINI_TOKENS = {
    "$ai_input_tokens": 2012,  # inclusive of the cache, as PostHog expects for Google
    "$ai_output_tokens": 3,  # without thoughts: PostHog adds $ai_reasoning_tokens back
    "$ai_total_tokens": 2145,
    "$ai_cache_read_input_tokens": 2000,
    "$ai_reasoning_tokens": 130,
    "$ai_cache_reporting_exclusive": False,
}


def test_google_genai_gemini_25_reasoning_is_billed_once(rec: Recorder) -> None:
    with VCR.use_cassette("google_genai_thinking_cached.yaml"):
        msg = ChatGoogleGenerativeAI(
            model="gemini-2.5-flash", google_api_key="test-key", max_retries=0
        ).invoke("Capital of France?", config={"callbacks": [rec.handler()]})
    # langchain-google-genai counts the thoughts inside output_tokens
    assert msg.usage_metadata is not None and msg.usage_metadata["output_tokens"] == 133
    p = _generation(rec)
    assert (p["$ai_model"], p["$ai_provider"]) == ("gemini-2.5-flash", "gemini")
    assert _tokens(p) == GEMINI_TOKENS
    # Gemini 2.5 Flash list price: $0.30 in, $0.03 cached, $2.50 out (thinking included)
    bill = 12 * 0.30 * M + 2000 * 0.03 * M + (3 + 130) * 2.50 * M
    assert posthog_cost(p, Rates(0.30 * M, 2.50 * M, cache_read=0.03 * M)) == pytest.approx(bill)


def test_google_vertexai_gemini_25_reasoning_is_billed_once(rec: Recorder) -> None:
    from langchain_google_vertexai import ChatVertexAI

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ChatVertexAI is deprecated in favour of genai
        model = ChatVertexAI(
            model="gemini-2.5-pro",
            project="demo-project",
            location="us-central1",
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
            api_transport="rest",  # the gRPC default cannot be replayed by vcrpy
            max_retries=0,
        )
    with VCR.use_cassette("google_vertexai_thinking_cached.yaml"):
        msg = model.invoke("Capital of France?", config={"callbacks": [rec.handler()]})
    # langchain-google-vertexai counts only the candidates in output_tokens
    assert msg.usage_metadata is not None and msg.usage_metadata["output_tokens"] == 3
    p = _generation(rec)
    assert (p["$ai_model"], p["$ai_provider"]) == ("gemini-2.5-pro", "vertex_ai")
    assert _tokens(p) == GEMINI_TOKENS  # the same bill, whichever package reported it
    bill = 12 * 1.25 * M + 2000 * 0.31 * M + (3 + 130) * 10 * M
    assert posthog_cost(p, Rates(1.25 * M, 10 * M, cache_read=0.31 * M)) == pytest.approx(bill)


def test_bedrock_converse_claude_cache_with_one_ttl(rec: Recorder) -> None:
    with VCR.use_cassette("bedrock_converse_claude_cache.yaml"):
        ChatBedrockConverse(
            model_id="us.anthropic.claude-sonnet-4-20250514-v1:0",
            region_name="us-east-1",
            aws_access_key_id="AKIDEXAMPLE",  # type: ignore[arg-type]
            aws_secret_access_key="example-secret",  # type: ignore[arg-type]
            max_tokens=512,
        ).invoke("Summarise the manual.", config={"callbacks": [rec.handler()]})
    p = _generation(rec)
    assert p["$ai_model"] == "us.anthropic.claude-sonnet-4-20250514-v1:0"
    assert p["$ai_provider"] == "bedrock"
    assert _tokens(p) == {
        "$ai_input_tokens": 12,  # Claude: the uncached input only
        "$ai_output_tokens": 30,
        "$ai_total_tokens": 7042,
        "$ai_cache_read_input_tokens": 5000,
        "$ai_cache_creation_input_tokens": 2000,
        "$ai_cache_creation_5m_input_tokens": 0,  # langchain-aws reported only the 1h key
        "$ai_cache_creation_1h_input_tokens": 2000,
        "$ai_cache_reporting_exclusive": True,
    }
    # Claude Sonnet 4: $3 in, $0.30 cache read, $6 one-hour cache write, $15 out
    bill = 12 * 3 * M + 5000 * 0.30 * M + 2000 * 6 * M + 30 * 15 * M
    assert posthog_cost(p, Rates(3 * M, 15 * M)) == pytest.approx(bill)


def test_ollama_local_model_is_free(rec: Recorder) -> None:
    with VCR.use_cassette("ollama_deepseek_r1.yaml"):
        msg = ChatOllama(model="deepseek-r1:8b", base_url="http://127.0.0.1:11434").invoke(
            "Capital of France?", config={"callbacks": [rec.handler()]}
        )
    assert msg.content == "Paris."
    p = _generation(rec)
    assert (p["$ai_model"], p["$ai_provider"]) == ("deepseek-r1:8b", "ollama")
    assert _tokens(p) == {
        "$ai_input_tokens": 11,
        "$ai_output_tokens": 42,
        "$ai_total_tokens": 53,
        "$ai_input_token_price": 0,
        "$ai_output_token_price": 0,
    }
    # PostHog's table would fuzzily match hosted DeepSeek-R1; the zero custom price wins
    assert posthog_cost(p, Rates(0.55 * M, 2.19 * M)) == 0


def test_ollama_with_a_user_price() -> None:
    sink = MemorySink()
    exporter = PosthogExporter(sink=sink, prices={"deepseek-r1:8b": ModelPrice(1e-7, 2e-7)})
    with VCR.use_cassette("ollama_deepseek_r1.yaml"):
        ChatOllama(model="deepseek-r1:8b", base_url="http://127.0.0.1:11434").invoke(
            "Capital of France?", config={"callbacks": [CallbackHandler(exporter)]}
        )
    exporter.shutdown()
    (event,) = sink.events
    p = event["properties"]
    assert (p["$ai_input_token_price"], p["$ai_output_token_price"]) == (1e-7, 2e-7)
    assert posthog_cost(p) == pytest.approx(11 * 1e-7 + 42 * 2e-7)


def test_anthropic_all_zero_ttl_split_does_not_zero_the_writes(rec: Recorder) -> None:
    with VCR.use_cassette("anthropic_cache_zero_ttl_split.yaml"):
        msg = ChatAnthropic(
            model="claude-sonnet-4-20250514",
            api_key="sk-test",  # type: ignore[arg-type]
            max_tokens=256,
            max_retries=0,
        ).invoke("Summarise the manual.", config={"callbacks": [rec.handler()]})
    # langchain-anthropic passes the zero split on beside cache_creation=500
    details = msg.usage_metadata["input_token_details"]  # type: ignore[index]
    assert details["ephemeral_5m_input_tokens"] == details["ephemeral_1h_input_tokens"] == 0
    p = _generation(rec)
    assert _tokens(p) == {
        "$ai_input_tokens": 1000,
        "$ai_output_tokens": 10,
        "$ai_total_tokens": 4510,
        "$ai_cache_read_input_tokens": 3000,
        "$ai_cache_creation_input_tokens": 500,  # no 5m/1h pair: PostHog bills the 500
        "$ai_cache_reporting_exclusive": True,
    }
    bill = 1000 * 3 * M + 3000 * 0.30 * M + 500 * 3.75 * M + 10 * 15 * M
    assert posthog_cost(p, Rates(3 * M, 15 * M)) == pytest.approx(bill)
