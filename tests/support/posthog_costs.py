"""PostHog's ingestion-time cost formula, ported for tests (the oracle for our token semantics).

A line-by-line reading of ``calculateInputCost`` (input-costs.ts), ``calculateOutputCost``
(output-costs.ts) and the custom-price branch of ``processCost`` (index.ts) in
PostHog/posthog ``nodejs/src/ingestion/pipelines/ai/costs/``, without the audio/image
modality terms (none of our events carry them). Tests price our events with it and compare
with the bill computed from the provider's own usage report.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

_REASONING_MODELS = (re.compile(r"^gemini-2\.5-"), re.compile(r"^gemini-3(\.\d+)?-"))


@dataclass(frozen=True)
class Rates:
    """A price-table row in USD per token, as PostHog's ``ResolvedModelCost.cost``."""

    prompt: float
    completion: float
    cache_read: float | None = None
    cache_write: float | None = None
    cache_write_1h: float | None = None
    custom: bool = False


def _num(props: dict[str, Any], key: str) -> float:
    value = props.get(key)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0


def _has(props: dict[str, Any], key: str) -> bool:
    value = props.get(key)
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _match_anthropic(props: dict[str, Any]) -> bool:
    provider = str(props.get("$ai_provider") or "").lower()
    model = str(props.get("$ai_model") or "").lower()
    return provider == "anthropic" or "anthropic" in model or model.startswith("claude")


def _exclusive(props: dict[str, Any]) -> bool:
    explicit = props.get("$ai_cache_reporting_exclusive")
    if isinstance(explicit, bool):
        return explicit
    if _match_anthropic(props):
        return True
    return _num(props, "$ai_input_tokens") < _num(props, "$ai_cache_read_input_tokens") + _num(
        props, "$ai_cache_creation_input_tokens"
    )


def must_add_reasoning(model: str) -> bool:
    bare = model.lower().rsplit("/", 1)[-1]
    return any(p.search(bare) for p in _REASONING_MODELS)


def rates_of(props: dict[str, Any], table: Rates | None) -> Rates | None:
    """The custom price on the event if PostHog would use it, else ``table``."""
    if _has(props, "$ai_input_token_price") and _has(props, "$ai_output_token_price"):
        return Rates(
            _num(props, "$ai_input_token_price"),
            _num(props, "$ai_output_token_price"),
            props.get("$ai_cache_read_token_price"),
            props.get("$ai_cache_write_token_price"),
            props.get("$ai_cache_write_1h_token_price"),
            custom=True,
        )
    return table


def input_cost(props: dict[str, Any], r: Rates) -> float:
    exclusive = _exclusive(props)
    tokens = _num(props, "$ai_input_tokens")
    cache_read = _num(props, "$ai_cache_read_input_tokens")
    if _match_anthropic(props):
        aggregate = _num(props, "$ai_cache_creation_input_tokens")
        w5 = _num(props, "$ai_cache_creation_5m_input_tokens")
        w1 = _num(props, "$ai_cache_creation_1h_input_tokens")
        breakdown = _has(props, "$ai_cache_creation_5m_input_tokens") and _has(
            props, "$ai_cache_creation_1h_input_tokens"
        )
        writes = w5 + w1 if breakdown else aggregate
        rate5 = r.cache_write if r.cache_write is not None else r.prompt * 1.25
        if r.cache_write_1h is not None:
            rate1 = r.cache_write_1h
        elif r.custom and r.cache_write is not None:
            rate1 = r.cache_write
        else:
            rate1 = r.prompt * 2
        write_cost = rate5 * w5 + rate1 * w1 if breakdown else rate5 * writes
        read_rate = r.cache_read if r.cache_read is not None else r.prompt * 0.1
        uncached = tokens if exclusive else tokens - cache_read - writes
        return write_cost + read_rate * cache_read + r.prompt * uncached
    writes = _num(props, "$ai_cache_creation_input_tokens")
    regular = tokens if exclusive else tokens - cache_read - writes
    read_rate = r.cache_read if r.cache_read is not None else r.prompt * 0.5
    write_rate = r.cache_write if r.cache_write is not None else r.prompt
    return read_rate * cache_read + write_rate * writes + r.prompt * regular


def output_cost(props: dict[str, Any], r: Rates) -> float:
    tokens = _num(props, "$ai_output_tokens")
    reasoning = _num(props, "$ai_reasoning_tokens")
    if reasoning and props.get("$ai_model") and must_add_reasoning(str(props["$ai_model"])):
        tokens += reasoning
    return r.completion * tokens


def posthog_cost(props: dict[str, Any], table: Rates | None = None) -> float | None:
    """``$ai_total_cost_usd`` as PostHog would compute it (None: no price found)."""
    r = rates_of(props, table)
    if r is None:
        return None
    return input_cost(props, r) + output_cost(props, r)
