"""Cost as PostHog computes it from our events (issue 10, items 8-14).

Each test builds the event from a provider's own usage report and prices it with a port of
PostHog's ingestion formula (``support.posthog_costs``); the result must equal the bill the
provider's published rules give for that report.
"""

from __future__ import annotations

import pytest

from posthog_callbacks import schema
from posthog_callbacks.events import EventConfig, span_to_event
from posthog_callbacks.pricing import ModelPrice, find_price, parse_prices
from posthog_callbacks.spans import FinishedSpan, SpanKind, Usage
from posthog_callbacks.usage import usage_from_mapping
from support.posthog_costs import Rates, posthog_cost

M = 1e-6  # one dollar per million tokens, per token


def gen(**kw: object) -> FinishedSpan:
    base: dict[str, object] = dict(
        trace_id="t",
        span_id="g",
        parent_id="t",
        kind=SpanKind.GENERATION,
        name="chat",
        start_time=1.0,
        end_time=2.0,
        framework="langchain",
    )
    base.update(kw)
    return FinishedSpan(**base)  # type: ignore[arg-type]


def props_of(span: FinishedSpan, cfg: EventConfig | None = None) -> dict[str, object]:
    props: dict[str, object] = span_to_event(span, cfg)["properties"]
    return props


# --- item 8: Gemini 2.5 / 3 reasoning billed once ----------------------------------------

# Google bills thinking tokens at the output rate: 10 prompt, 20 candidates, 30 thoughts.
GEMINI_RAW = {
    "prompt_token_count": 10,
    "candidates_token_count": 20,
    "thoughts_token_count": 30,
    "total_token_count": 60,
}
GENAI_UM = {  # langchain-google-genai: output includes thoughts
    "input_tokens": 10,
    "output_tokens": 50,
    "total_tokens": 60,
    "input_token_details": {"cache_read": 0},
    "output_token_details": {"reasoning": 30},
}
VERTEX_UM = {  # langchain-google-vertexai: output is the candidates alone
    "input_tokens": 10,
    "output_tokens": 20,
    "total_tokens": 60,
    "input_token_details": {"cache_read": 0},
    "output_token_details": {"reasoning": 30},
}
GEMINI_RATES = Rates(prompt=0.3 * M, completion=2.5 * M)
GEMINI_BILL = 10 * 0.3 * M + 50 * 2.5 * M


@pytest.mark.parametrize("raw", [GEMINI_RAW, GENAI_UM, VERTEX_UM], ids=["raw", "genai", "vertex"])
@pytest.mark.parametrize(
    "model", ["gemini-2.5-flash", "models/gemini-3-pro-preview", "gemini-3.1-pro-preview"]
)
def test_gemini_thinking_models_send_output_without_reasoning(
    raw: dict[str, object], model: str
) -> None:
    usage = usage_from_mapping(raw)
    assert usage is not None and usage.output_tokens == 50  # one convention inside
    props = props_of(gen(model=model, provider="gemini", usage=usage))
    assert props["$ai_output_tokens"] == 20
    assert props["$ai_reasoning_tokens"] == 30
    assert posthog_cost(props, GEMINI_RATES) == pytest.approx(GEMINI_BILL)


@pytest.mark.parametrize("raw", [GEMINI_RAW, GENAI_UM, VERTEX_UM], ids=["raw", "genai", "vertex"])
def test_other_thinking_models_send_output_with_reasoning(raw: dict[str, object]) -> None:
    # PostHog adds reasoning only for Gemini 2.5/3; for the rest output must include it.
    props = props_of(gen(model="gemini-2.0-flash-thinking-exp", usage=usage_from_mapping(raw)))
    assert props["$ai_output_tokens"] == 50
    assert posthog_cost(props, GEMINI_RATES) == pytest.approx(GEMINI_BILL)


def test_openai_reasoning_stays_inside_output() -> None:
    usage = usage_from_mapping(
        {
            "input_tokens": 100,
            "output_tokens": 80,
            "total_tokens": 180,
            "output_token_details": {"reasoning": 64},
        }
    )
    props = props_of(gen(model="o3-mini", provider="openai", usage=usage))
    assert (props["$ai_output_tokens"], props["$ai_reasoning_tokens"]) == (80, 64)


# --- item 9: who is Anthropic -----------------------------------------------------------

ANTHROPIC_RATES = Rates(prompt=3 * M, completion=15 * M)
# 1000 uncached, 3000 read, 500 written (5m): Anthropic's own rule.
ANTHROPIC_BILL = 1000 * 3 * M + 3000 * 0.3 * M + 500 * 3.75 * M + 10 * 15 * M
LC_ANTHROPIC = {
    "input_tokens": 4500,
    "output_tokens": 10,
    "total_tokens": 4510,
    "input_token_details": {"cache_read": 3000, "cache_creation": 500},
}


@pytest.mark.parametrize(
    ("provider", "model", "exclusive", "sent_input"),
    [
        ("anthropic", "claude-sonnet-4-20250514", True, 1000),
        ("bedrock", "us.anthropic.claude-sonnet-4-20250514-v1:0", True, 1000),
        ("vertex_ai", "claude-sonnet-4@20250514", True, 1000),
        # PostHog does not take these for Anthropic: send inclusive input, flagged so.
        ("litellm", "vertex_ai/claude-sonnet-4@20250514", False, 4500),
        ("openrouter", "x-ai/claude-like.claude-3", False, 4500),
    ],
)
def test_cache_semantics_follow_posthogs_anthropic_rule(
    provider: str, model: str, exclusive: bool, sent_input: int
) -> None:
    props = props_of(gen(model=model, provider=provider, usage=usage_from_mapping(LC_ANTHROPIC)))
    assert props["$ai_input_tokens"] == sent_input
    assert props["$ai_cache_reporting_exclusive"] is exclusive
    assert props["$ai_cache_read_input_tokens"] == 3000
    assert props["$ai_cache_creation_input_tokens"] == 500
    if exclusive:
        assert posthog_cost(props, ANTHROPIC_RATES) == pytest.approx(ANTHROPIC_BILL)
    else:  # PostHog's generic path: reads at the table's cache rate, writes at cache_write
        rates = Rates(3 * M, 15 * M, cache_read=0.3 * M, cache_write=3.75 * M)
        assert posthog_cost(props, rates) == pytest.approx(ANTHROPIC_BILL)


def test_no_cache_flag_without_cache_tokens() -> None:
    props = props_of(gen(model="claude-3-haiku", usage=Usage(input_tokens=5, output_tokens=1)))
    assert schema.CACHE_REPORTING_EXCLUSIVE not in props
    props = props_of(
        gen(model="gpt-4o", usage=Usage(input_tokens=5, output_tokens=1, cache_read_tokens=0))
    )
    assert props[schema.CACHE_REPORTING_EXCLUSIVE] is False


# --- item 10: cache-write TTL split -----------------------------------------------------


def test_all_zero_ttl_split_is_dropped_so_writes_are_billed() -> None:
    usage = usage_from_mapping(
        {
            "input_tokens": 4500,
            "output_tokens": 10,
            "input_token_details": {
                "cache_read": 3000,
                "cache_creation": 500,
                "ephemeral_5m_input_tokens": 0,
                "ephemeral_1h_input_tokens": 0,
            },
        }
    )
    assert usage is not None
    assert (usage.cache_creation_5m_tokens, usage.cache_creation_1h_tokens) == (None, None)
    props = props_of(gen(model="claude-sonnet-4", provider="anthropic", usage=usage))
    assert "$ai_cache_creation_5m_input_tokens" not in props
    assert "$ai_cache_creation_1h_input_tokens" not in props
    assert posthog_cost(props, ANTHROPIC_RATES) == pytest.approx(ANTHROPIC_BILL)
    # the same split on a hand-built Usage (manual API) is dropped at translation too
    manual = Usage(4500, 10, None, 3000, 500, 0, 0)
    props = props_of(gen(model="claude-sonnet-4", provider="anthropic", usage=manual))
    assert "$ai_cache_creation_5m_input_tokens" not in props


def test_single_ttl_key_gets_its_pair_and_sums_to_the_aggregate() -> None:
    # langchain-aws reports only the non-zero TTL key and cache_creation=0 beside it.
    usage = usage_from_mapping(
        {
            "input_tokens": 4500,
            "output_tokens": 10,
            "total_tokens": 4510,
            "input_token_details": {
                "cache_read": 3000,
                "cache_creation": 0,
                "ephemeral_1h_input_tokens": 500,
            },
        }
    )
    props = props_of(gen(model="claude-sonnet-4", provider="anthropic", usage=usage))
    assert props["$ai_cache_creation_input_tokens"] == 500
    assert props["$ai_cache_creation_5m_input_tokens"] == 0
    assert props["$ai_cache_creation_1h_input_tokens"] == 500
    assert props["$ai_input_tokens"] == 1000
    bill = 1000 * 3 * M + 3000 * 0.3 * M + 500 * 6 * M + 10 * 15 * M  # 1h writes: 2x
    assert posthog_cost(props, ANTHROPIC_RATES) == pytest.approx(bill)
    manual = Usage(4500, 10, None, 3000, 500, 500, None)
    props = props_of(gen(model="claude-sonnet-4", provider="anthropic", usage=manual))
    assert props["$ai_cache_creation_1h_input_tokens"] == 0


def test_raw_anthropic_usage_with_zero_split() -> None:
    usage = usage_from_mapping(
        {
            "input_tokens": 1000,
            "output_tokens": 10,
            "cache_read_input_tokens": 3000,
            "cache_creation_input_tokens": 500,
            "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
        }
    )
    props = props_of(gen(model="claude-sonnet-4", provider="anthropic", usage=usage))
    assert props["$ai_input_tokens"] == 1000
    assert posthog_cost(props, ANTHROPIC_RATES) == pytest.approx(ANTHROPIC_BILL)


# --- item 11: LangChain usage_metadata is never topped up with raw keys ----------------


def test_usage_metadata_beside_raw_provider_keys_counts_once() -> None:
    usage = usage_from_mapping(
        {
            **LC_ANTHROPIC,
            "cache_read_input_tokens": 3000,
            "cache_creation_input_tokens": 500,
            "prompt_tokens": 1000,
        }
    )
    assert usage == Usage(
        input_tokens=4500,
        output_tokens=10,
        total_tokens=4510,
        cache_read_tokens=3000,
        cache_creation_tokens=500,
    )


# --- item 12: local models are free -----------------------------------------------------


@pytest.mark.parametrize("provider", ["ollama", "lmstudio", "llamacpp", "vllm"])
def test_local_models_are_sent_with_a_zero_price(provider: str) -> None:
    props = props_of(
        gen(
            model="deepseek-r1:8b",
            provider=provider,
            usage=Usage(input_tokens=50, output_tokens=900),
        )
    )
    assert props["$ai_input_token_price"] == 0
    assert props["$ai_output_token_price"] == 0
    assert "$ai_cache_read_token_price" not in props
    assert posthog_cost(props, Rates(0.55 * M, 2.19 * M)) == 0


def test_hosted_models_get_no_price_properties() -> None:
    props = props_of(gen(model="deepseek-reasoner", provider="deepseek", usage=Usage(1, 1)))
    assert not [k for k in props if k.endswith("_price")]


# --- item 13: custom prices -------------------------------------------------------------


def test_exporter_prices_are_sent_per_token() -> None:
    cfg = EventConfig(
        prices=parse_prices(
            {
                "My-Azure-Deployment": {"input": 2.5 * M, "output": 10 * M, "cache_read": 1.25 * M},
                "llama3.2": ModelPrice.per_million(0.1, 0.2),
            }
        )
    )
    usage = Usage(input_tokens=1000, output_tokens=100, cache_read_tokens=400)
    props = props_of(gen(model="my-azure-deployment", provider="azure", usage=usage), cfg)
    assert props["$ai_input_token_price"] == pytest.approx(2.5e-6)
    assert props["$ai_output_token_price"] == pytest.approx(1e-5)
    assert props["$ai_cache_read_token_price"] == pytest.approx(1.25e-6)
    assert "$ai_cache_write_token_price" not in props
    bill = 600 * 2.5 * M + 400 * 1.25 * M + 100 * 10 * M
    assert posthog_cost(props) == pytest.approx(bill)
    # a user's price for a local model wins over "free"
    props = props_of(gen(model="ollama/llama3.2", provider="ollama", usage=usage), cfg)
    assert props["$ai_input_token_price"] == pytest.approx(1e-7)


def test_per_call_prices_from_run_metadata_win() -> None:
    cfg = EventConfig(prices=parse_prices({"m": {"input": 1 * M, "output": 2 * M}}))
    per_call = {"$ai_input_token_price": 5 * M, "$ai_output_token_price": 6 * M}
    props = props_of(gen(model="m", provider="ollama", usage=Usage(1, 1), metadata=per_call), cfg)
    assert props["$ai_input_token_price"] == 5 * M
    assert props["$ai_output_token_price"] == 6 * M


def test_prices_on_exporter_properties_are_left_alone() -> None:
    cfg = EventConfig(properties={"$ai_input_token_price": 0.0, "$ai_output_token_price": 1e-6})
    props = props_of(gen(model="m", provider="ollama", usage=Usage(1, 1)), cfg)
    assert props["$ai_output_token_price"] == 1e-6


def test_prices_are_not_sent_on_spans() -> None:
    cfg = EventConfig(prices=parse_prices({"m": {"input": 1 * M, "output": 2 * M}}))
    span = gen(kind=SpanKind.SPAN, model="m")
    assert not [k for k in props_of(span, cfg) if k.endswith("_price")]


@pytest.mark.parametrize(
    ("prices", "error", "message"),
    [
        ({"m": {"input": 2.5, "output": 10}}, ValueError, "per single token"),
        ({"m": {"input": 1e-6}}, ValueError, "'output'"),
        ({"m": {"input": -1e-6, "output": 1e-6}}, ValueError, ">= 0"),
        ({"m": {"input": 1e-6, "output": 1e-6, "cached": 1e-7}}, ValueError, "unknown keys"),
        ({"m": {"input": "cheap", "output": 1e-6}}, ValueError, "must be a number"),
        ({"m": 2.5e-6}, TypeError, "ModelPrice"),
        ([("m", 1)], TypeError, "dict"),
        ({"": {"input": 1e-6, "output": 1e-6}}, TypeError, "model ids"),
    ],
)
def test_bad_prices_raise_with_the_fix(prices: object, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        parse_prices(prices)  # type: ignore[arg-type]


def test_find_price_matches_case_and_provider_prefix() -> None:
    prices = parse_prices({"Llama3.2": {"input": 0.0, "output": 0.0}})
    assert find_price(prices, "llama3.2") == ModelPrice(0.0, 0.0)
    assert find_price(prices, "ollama/LLAMA3.2") == ModelPrice(0.0, 0.0)
    assert find_price(prices, "llama3.1") is None
    assert find_price(prices, None) is None


# --- item 14: web searches and service tier ---------------------------------------------


def test_web_search_count_and_service_tier() -> None:
    usage = usage_from_mapping(
        {
            "input_tokens": 10,
            "output_tokens": 5,
            "server_tool_use": {"web_search_requests": 3},
        }
    )
    assert usage is not None and usage.web_search_count == 3
    props = props_of(
        gen(model="claude-sonnet-4", provider="anthropic", usage=usage, service_tier="standard")
    )
    assert props["$ai_web_search_count"] == 3
    assert props["$ai_service_tier"] == "standard"
    props = props_of(gen(model="gpt-4o", usage=Usage(input_tokens=1, web_search_count=0)))
    assert "$ai_web_search_count" not in props
    assert "$ai_service_tier" not in props


def test_exporter_option_end_to_end() -> None:
    from posthog_callbacks import MemorySink, ModelPrice, PosthogExporter

    sink = MemorySink()
    exporter = PosthogExporter(sink=sink, prices={"gpt-4o-deploy": ModelPrice.per_million(2.5, 10)})
    with exporter.trace("answer") as trace:
        with trace.generation("chat", model="gpt-4o-deploy", provider="azure") as g:
            g.update(usage={"input_tokens": 1000, "output_tokens": 100})
        with trace.generation("local", model="qwen3:4b", provider="ollama") as g:
            g.update(usage={"input_tokens": 10, "output_tokens": 5})
    exporter.shutdown()
    gens = {
        e["properties"]["$ai_span_name"]: e["properties"]
        for e in sink.events
        if e["event"] == "$ai_generation"
    }
    assert gens["chat"]["$ai_input_token_price"] == pytest.approx(2.5e-6)
    assert posthog_cost(gens["chat"]) == pytest.approx(1000 * 2.5 * M + 100 * 10 * M)
    assert (gens["local"]["$ai_input_token_price"], gens["local"]["$ai_output_token_price"]) == (
        0,
        0,
    )
    with pytest.raises(ValueError, match="per single token"):
        PosthogExporter(sink=MemorySink(), prices={"m": {"input": 2.5, "output": 10}})


def test_custom_anthropic_prices_with_both_cache_write_rates() -> None:
    price = ModelPrice.per_million(3, 15, cache_read=0.3, cache_write=3.75, cache_write_1h=6)
    cfg = EventConfig(prices=parse_prices({"claude-private-deploy": price}))
    usage = Usage(4500, 10, None, 3000, 500, 200, 300)
    props = props_of(gen(model="claude-private-deploy", provider="anthropic", usage=usage), cfg)
    assert props["$ai_cache_write_1h_token_price"] == pytest.approx(6e-6)
    bill = 1000 * 3 * M + 3000 * 0.3 * M + 200 * 3.75 * M + 300 * 6 * M + 10 * 15 * M
    assert posthog_cost(props) == pytest.approx(bill)
