"""Cost of one span in USD: PostHog's figure when the event has it, else an estimate.

Events loaded from PostHog carry ``$ai_total_cost_usd`` (computed at ingestion). Local
files do not, so the cost of a model call is estimated from its token properties with the
`genai-prices <https://github.com/pydantic/genai-prices>`_ library (prices per provider and
model, cache reads and writes, price changes over time), read the way PostHog's cost engine
reads them:

* ``$ai_input_tokens`` includes cache reads and writes, except when the call is priced as
  Anthropic (provider ``anthropic`` or a Claude model) where it is the uncached input only;
  ``$ai_cache_reporting_exclusive`` (a boolean) overrides either way.
* ``$ai_output_tokens`` includes reasoning tokens, except for Gemini 2.5 / 3 models whose
  ``$ai_reasoning_tokens`` PostHog adds back (they are billed as output).
* Anthropic cache writes are split into 5-minute and 1-hour writes when the event says so.
* Custom prices on the event (``$ai_input_token_price`` and ``$ai_output_token_price``, USD
  per token, e.g. free for a local Ollama model) are used instead of the price list, with
  PostHog's fallbacks for cache reads and writes.

genai-prices comes with the ``[notebooks]`` extra; without it, local costs are ``None``
(except for calls with custom prices).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from datetime import date, datetime, time, timezone
from functools import lru_cache
from typing import Any

from .. import schema as S
from ..usage import is_anthropic, posthog_adds_reasoning

__all__ = ["Cost", "span_cost"]

log = logging.getLogger(__name__)

Cost = tuple[float, bool]
"""``(usd, estimated)``."""

# PostHog provider names (``$ai_provider``) whose genai-prices provider id differs.
_PROVIDER_IDS = {
    "bedrock": "aws",
    "vertex_ai": "google",
    "gemini": "google",
    "xai": "x-ai",
}


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                return None
        else:
            return None
    number = float(value)
    return number if math.isfinite(number) and number >= 0 else None


def _tokens(props: Mapping[str, Any], key: str) -> int:
    value = _number(props.get(key))
    return int(value) if value is not None else 0


@lru_cache(maxsize=1)
def _genai_prices() -> Any:
    try:
        import genai_prices
    except ImportError:
        log.info(
            "posthog_callbacks.explore: install genai-prices (the [notebooks] extra) "
            "to estimate the cost of local traces"
        )
        return None
    return genai_prices


@lru_cache(maxsize=4096)
def _unpriced(model: str, provider: str | None) -> bool:
    """Whether genai-prices knows no price for this model (remembered per pair)."""
    prices = _genai_prices()
    if prices is None:
        return True
    try:
        prices.calc_price(prices.Usage(input_tokens=1), model_ref=model, provider_id=provider)
    except LookupError:
        return True
    except Exception:  # a price that cannot be computed is as good as none
        log.debug("genai-prices failed for %r / %r", model, provider, exc_info=True)
        return True
    return False


def _exclusive(props: Mapping[str, Any], model: str) -> bool:
    """Whether ``$ai_input_tokens`` leaves the cached tokens out (PostHog's rule)."""
    explicit = props.get(S.CACHE_REPORTING_EXCLUSIVE)
    if isinstance(explicit, bool):
        return explicit
    provider = props.get(S.PROVIDER)
    if is_anthropic(provider if isinstance(provider, str) else None, model):
        return True
    cached = _tokens(props, S.CACHE_READ_INPUT_TOKENS) + _tokens(
        props, S.CACHE_CREATION_INPUT_TOKENS
    )
    return _tokens(props, S.INPUT_TOKENS) < cached


def _billed_output(props: Mapping[str, Any], model: str) -> int:
    output = _tokens(props, S.OUTPUT_TOKENS)
    if posthog_adds_reasoning(model):
        output += _tokens(props, S.REASONING_TOKENS)
    return output


def _custom_cost(props: Mapping[str, Any], model: str) -> float | None:
    """The cost from the event's own per-token prices, as PostHog computes it."""
    input_price = _number(props.get(S.INPUT_TOKEN_PRICE))
    output_price = _number(props.get(S.OUTPUT_TOKEN_PRICE))
    if input_price is None or output_price is None:
        return None
    provider = props.get(S.PROVIDER)
    anthropic = is_anthropic(provider if isinstance(provider, str) else None, model)
    read_price = _number(props.get(S.CACHE_READ_TOKEN_PRICE))
    write_price = _number(props.get(S.CACHE_WRITE_TOKEN_PRICE))
    if read_price is None:
        read_price = input_price * (0.1 if anthropic else 0.5)
    if write_price is None:
        write_price = input_price * (1.25 if anthropic else 1.0)
    tokens = _tokens(props, S.INPUT_TOKENS)
    cache_read = _tokens(props, S.CACHE_READ_INPUT_TOKENS)
    cache_write = _tokens(props, S.CACHE_CREATION_INPUT_TOKENS)
    uncached = tokens if _exclusive(props, model) else tokens - cache_read - cache_write
    return (
        input_price * uncached
        + read_price * cache_read
        + write_price * cache_write
        + output_price * _billed_output(props, model)
    )


def _provider_id(provider: Any) -> str | None:
    if not isinstance(provider, str) or not provider:
        return None
    key = provider.lower()
    return _PROVIDER_IDS.get(key, key)


def estimate_cost(props: Mapping[str, Any], kind: str, at: float | None = None) -> float | None:
    """Estimate a model call's cost in USD from its token properties with genai-prices.

    Args:
        props: The event's properties.
        kind: ``generation`` or ``embedding`` (other kinds cost nothing by themselves).
        at: The call's time (epoch seconds), so the price of that day applies.

    Returns:
        USD, or ``None`` when the model, the provider or the token counts are unknown.
    """
    if kind not in ("generation", "embedding"):
        return None
    model = props.get(S.MODEL)
    if not isinstance(model, str) or not model:
        return None
    if _number(props.get(S.INPUT_TOKENS)) is None and _number(props.get(S.OUTPUT_TOKENS)) is None:
        return None
    custom = _custom_cost(props, model)
    if custom is not None:
        return custom
    provider = _provider_id(props.get(S.PROVIDER))
    if _unpriced(model, provider):
        return None
    input_tokens = _tokens(props, S.INPUT_TOKENS)
    cache_read = _tokens(props, S.CACHE_READ_INPUT_TOKENS)
    cache_write = _tokens(props, S.CACHE_CREATION_INPUT_TOKENS)
    # genai-prices wants the whole prompt, cached parts included.
    exclusive = _exclusive(props, model)
    total_input = input_tokens + cache_read + cache_write if exclusive else input_tokens
    output = _billed_output(props, model)
    usage: dict[str, int] = {"input_tokens": max(total_input, cache_read + cache_write)}
    if output:
        usage["output_tokens"] = output
    if cache_read:
        usage["cache_read_tokens"] = cache_read
    if cache_write:
        usage["cache_write_tokens"] = cache_write
        write_5m = _tokens(props, S.CACHE_CREATION_5M_INPUT_TOKENS)
        write_1h = _tokens(props, S.CACHE_CREATION_1H_INPUT_TOKENS)
        if write_1h and write_5m + write_1h <= cache_write:
            usage["cache_write_1h_tokens"] = write_1h
            usage["cache_write_5m_tokens"] = cache_write - write_1h
    day = datetime.fromtimestamp(at, tz=timezone.utc).date() if at is not None else None
    return _priced(model, provider, day, tuple(sorted(usage.items())))


@lru_cache(maxsize=65536)
def _priced(
    model: str, provider: str | None, day: date | None, usage: tuple[tuple[str, int], ...]
) -> float | None:
    """genai-prices' total for one call (prices change by the day; calls repeat)."""
    prices = _genai_prices()
    when = datetime.combine(day, time(12), tzinfo=timezone.utc) if day is not None else None
    try:
        result = prices.calc_price(
            prices.Usage(**dict(usage)),
            model_ref=model,
            provider_id=provider,
            genai_request_timestamp=when,
        )
    except Exception:
        log.debug("genai-prices could not price %r %r", model, usage, exc_info=True)
        return None
    return float(result.total_price)


def span_cost(props: Mapping[str, Any], kind: str, at: float | None = None) -> Cost | None:
    """A span's cost: ``$ai_total_cost_usd`` when present, else :func:`estimate_cost`.

    Returns:
        ``(usd, estimated)``, or ``None`` when neither is known.
    """
    reported = _number(props.get(S.TOTAL_COST_USD))
    if reported is not None:
        return reported, False
    estimate = estimate_cost(props, kind, at)
    return (estimate, True) if estimate is not None else None
