"""explore: cost per span and per trace, against genai-prices' own figures."""

from __future__ import annotations

import sys
from datetime import datetime, timezone
from typing import Any

import genai_prices
import pytest

from posthog_callbacks import MemorySink, PosthogExporter, explore
from posthog_callbacks.explore import cost

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def library_price(model: str, provider: str, **usage: int) -> float:
    """What genai-prices itself says, asked directly."""
    result = genai_prices.calc_price(
        genai_prices.Usage(**usage),
        model_ref=model,
        provider_id=provider,
        genai_request_timestamp=datetime.fromtimestamp(T0, tz=timezone.utc),
    )
    return float(result.total_price)


def generation(**props: Any) -> dict[str, Any]:
    return {
        "event": "$ai_generation",
        "distinct_id": "u",
        "timestamp": T0,
        "properties": {"$ai_trace_id": "t", "$ai_span_id": "t", **props},
    }


def node(**props: Any) -> explore.SpanNode:
    (trace,) = explore.load_traces([generation(**props)])
    return trace.root


def test_a_million_gpt_4o_mini_input_tokens_cost_what_genai_prices_says() -> None:
    span = node(**{"$ai_model": "gpt-4o-mini", "$ai_provider": "openai", "$ai_input_tokens": 10**6})
    expected = library_price("gpt-4o-mini", "openai", input_tokens=10**6)
    assert expected == pytest.approx(0.15)  # the published price, $0.15 per million
    assert span.cost == pytest.approx(expected) and span.cost_estimated


def test_openai_input_includes_cached_tokens() -> None:
    # PostHog: $ai_input_tokens includes the 600 cache reads; reasoning is inside output.
    span = node(
        **{
            "$ai_model": "gpt-4o-mini-2024-07-18",
            "$ai_provider": "openai",
            "$ai_input_tokens": 1000,
            "$ai_cache_read_input_tokens": 600,
            "$ai_output_tokens": 200,
            "$ai_reasoning_tokens": 150,
        }
    )
    expected = library_price(
        "gpt-4o-mini-2024-07-18",
        "openai",
        input_tokens=1000,
        cache_read_tokens=600,
        output_tokens=200,
    )
    assert span.cost == pytest.approx(expected)
    # 400 uncached at 0.15, 600 cached at 0.075, 200 out at 0.60 (per million)
    assert expected == pytest.approx((400 * 0.15 + 600 * 0.075 + 200 * 0.6) / 1e6)


def test_anthropic_input_is_the_uncached_part() -> None:
    props = {
        "$ai_model": "claude-3-5-haiku-20241022",
        "$ai_provider": "anthropic",
        "$ai_input_tokens": 20,
        "$ai_cache_read_input_tokens": 20,
        "$ai_cache_creation_input_tokens": 10,
        "$ai_output_tokens": 7,
    }
    expected = library_price(
        "claude-3-5-haiku-20241022",
        "anthropic",
        input_tokens=50,
        cache_read_tokens=20,
        cache_write_tokens=10,
        output_tokens=7,
    )
    assert node(**props).cost == pytest.approx(expected)
    # a Claude model on Bedrock is counted the Anthropic way too
    bedrock = node(**{**props, "$ai_provider": "bedrock", "$ai_model": "claude-3-5-haiku-20241022"})
    assert bedrock.cost is not None
    # the explicit flag wins: here the 20 input tokens already include the cache
    inclusive = node(**{**props, "$ai_cache_reporting_exclusive": False, "$ai_input_tokens": 50})
    assert inclusive.cost == pytest.approx(expected)


def test_anthropic_one_hour_cache_writes_cost_more() -> None:
    props = {
        "$ai_model": "claude-sonnet-4-5",
        "$ai_provider": "anthropic",
        "$ai_input_tokens": 0,
        "$ai_cache_creation_input_tokens": 1000,
    }
    five_minutes = node(**props).cost
    one_hour = node(**props, **{"$ai_cache_creation_1h_input_tokens": 1000}).cost
    assert five_minutes == pytest.approx(
        library_price("claude-sonnet-4-5", "anthropic", input_tokens=1000, cache_write_tokens=1000)
    )
    assert one_hour == pytest.approx(
        library_price(
            "claude-sonnet-4-5",
            "anthropic",
            input_tokens=1000,
            cache_write_tokens=1000,
            cache_write_1h_tokens=1000,
        )
    )
    assert one_hour is not None and five_minutes is not None and one_hour > five_minutes


def test_gemini_2_5_reasoning_is_billed_as_output() -> None:
    props = {
        "$ai_model": "gemini-2.5-flash",
        "$ai_provider": "gemini",
        "$ai_input_tokens": 100,
        "$ai_output_tokens": 50,
        "$ai_reasoning_tokens": 400,
    }
    assert node(**props).cost == pytest.approx(
        library_price("gemini-2.5-flash", "google", input_tokens=100, output_tokens=450)
    )


def test_posthogs_own_cost_wins_and_is_not_an_estimate() -> None:
    span = node(
        **{
            "$ai_model": "gpt-4o-mini",
            "$ai_provider": "openai",
            "$ai_input_tokens": 10**6,
            "$ai_total_cost_usd": 0.5,
        }
    )
    assert (span.cost, span.cost_estimated) == (0.5, False)


def test_unknown_model_or_no_tokens_has_no_cost() -> None:
    unknown = node(**{"$ai_model": "my-finetune", "$ai_provider": "ollama", "$ai_input_tokens": 5})
    assert (unknown.cost, unknown.cost_estimated) == (None, False)
    no_usage = node(**{"$ai_model": "gpt-4o-mini", "$ai_provider": "openai"})
    assert no_usage.cost is None
    (trace,) = explore.load_traces(
        [generation(**{"$ai_model": "my-finetune", "$ai_input_tokens": 5})]
    )
    assert trace.totals.cost_usd is None and trace.totals.unpriced == 1


def test_trace_total_sums_its_model_calls() -> None:
    sink = MemorySink()
    exporter = PosthogExporter(sink=sink)
    with exporter.trace("answer") as trace:
        for tokens in (1000, 3000):
            with trace.generation("chat", model="gpt-4o-mini", provider="openai") as gen:
                gen.update(usage={"input_tokens": tokens, "output_tokens": 100})
    exporter.shutdown()
    (loaded,) = explore.load_traces(sink)
    each = [
        library_price("gpt-4o-mini", "openai", input_tokens=n, output_tokens=100)
        for n in (1000, 3000)
    ]
    assert loaded.totals.cost_usd == pytest.approx(sum(each))
    assert loaded.totals.cost_estimated
    assert "~$" in str(loaded).splitlines()[1] and "(estimated)" in str(loaded)


def test_without_genai_prices_local_costs_are_unknown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "genai_prices", None)
    cost._genai_prices.cache_clear()
    cost._unpriced.cache_clear()
    try:
        span = node(**{"$ai_model": "gpt-4o-mini", "$ai_provider": "openai", "$ai_input_tokens": 9})
        assert span.cost is None
        reported = node(**{"$ai_total_cost_usd": 0.1, "$ai_model": "x"})
        assert reported.cost == 0.1
    finally:
        cost._genai_prices.cache_clear()
        cost._unpriced.cache_clear()


@pytest.mark.parametrize(
    "props",
    [
        {"$ai_provider": "openai", "$ai_model": "my-finetune"},
        {"$ai_provider": "anthropic", "$ai_model": "claude-custom"},
        {"$ai_provider": "openai", "$ai_model": "x", "$ai_cache_reporting_exclusive": True},
    ],
)
def test_custom_prices_on_the_event_are_used_as_posthog_uses_them(props: dict[str, Any]) -> None:
    from support.posthog_costs import posthog_cost

    props = {
        **props,
        "$ai_input_tokens": 1000,
        "$ai_cache_read_input_tokens": 300,
        "$ai_cache_creation_input_tokens": 100,
        "$ai_output_tokens": 50,
        "$ai_input_token_price": 2e-6,
        "$ai_output_token_price": 8e-6,
    }
    span = node(**props)
    assert span.cost == pytest.approx(posthog_cost(props)) and span.cost_estimated
    with_cache_prices = {
        **props,
        "$ai_cache_read_token_price": 1e-7,
        "$ai_cache_write_token_price": 3e-6,
    }
    assert node(**with_cache_prices).cost == pytest.approx(posthog_cost(with_cache_prices))


def test_a_local_model_priced_free_by_the_exporter_costs_nothing() -> None:
    sink = MemorySink()
    exporter = PosthogExporter(sink=sink)
    with exporter.trace("local") as trace:
        with trace.generation("chat", model="llama3.2", provider="ollama") as gen:
            gen.update(usage={"input_tokens": 500, "output_tokens": 20})
    exporter.shutdown()
    (loaded,) = explore.load_traces(sink)
    assert (loaded.totals.cost_usd, loaded.totals.unpriced) == (0.0, 0)


def test_input_below_the_cache_counts_is_read_as_exclusive() -> None:
    # PostHog's auto-detection: an input count smaller than its cached part cannot include it
    props = {
        "$ai_model": "gpt-4o-mini",
        "$ai_provider": "openai",
        "$ai_input_tokens": 100,
        "$ai_cache_read_input_tokens": 400,
    }
    assert node(**props).cost == pytest.approx(
        library_price("gpt-4o-mini", "openai", input_tokens=500, cache_read_tokens=400)
    )


def test_reasoning_rule_reads_the_bare_model_name() -> None:
    props = {
        "$ai_model": "models/gemini-2.5-flash",
        "$ai_provider": "gemini",
        "$ai_input_tokens": 0,
        "$ai_output_tokens": 10,
        "$ai_reasoning_tokens": 90,
        "$ai_input_token_price": 1e-6,
        "$ai_output_token_price": 2e-6,
    }
    assert node(**props).cost == pytest.approx(100 * 2e-6)  # 10 output + 90 reasoning
    not_gemini = {**props, "$ai_model": "models/gpt-5", "$ai_provider": "openai"}
    assert node(**not_gemini).cost == pytest.approx(10 * 2e-6)  # reasoning already inside
