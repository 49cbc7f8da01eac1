"""Custom model prices, sent as PostHog's ``$ai_*_token_price`` properties.

PostHog prices a generation at ingestion from its own table unless the event carries
``$ai_input_token_price`` and ``$ai_output_token_price`` (both, USD per single token);
then it uses those, plus ``$ai_cache_read_token_price`` / ``$ai_cache_write_token_price``
when present (``processCost`` in its cost engine, ``nodejs/src/ingestion/pipelines/ai/
costs/index.ts``). This module validates the exporter's ``prices=`` option and looks a
model's price up; ``events.py`` writes the properties.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from . import schema

__all__ = ["FREE", "ModelPrice", "find_price", "parse_prices"]

log = logging.getLogger(__name__)

# $1,000 per million tokens: no listed model costs more per token; a larger number is
# almost surely a per-million price passed where PostHog expects per-token.
_MAX_PER_TOKEN = 0.001
_PER_MILLION = 1_000_000
_KEYS = ("input", "output", "cache_read", "cache_write", "cache_write_1h")


@dataclass(frozen=True)
class ModelPrice:
    """A model's price in USD **per token** (PostHog's unit).

    Build it from the per-million prices providers publish with :meth:`per_million`.

    Attributes:
        input: USD per input (prompt) token.
        output: USD per output (completion) token.
        cache_read: USD per cache-read token; PostHog falls back to a share of
            ``input`` when omitted.
        cache_write: USD per cache-write token; PostHog falls back to ``input`` (1.25x
            ``input`` for Anthropic-style models) when omitted.
        cache_write_1h: USD per 1-hour cache-write token (Anthropic); PostHog uses
            ``cache_write`` when omitted.
    """

    input: float
    output: float
    cache_read: float | None = None
    cache_write: float | None = None
    cache_write_1h: float | None = None

    @classmethod
    def per_million(
        cls,
        input: float,
        output: float,
        cache_read: float | None = None,
        cache_write: float | None = None,
        cache_write_1h: float | None = None,
    ) -> ModelPrice:
        """A price from USD per million tokens (``per_million(2.5, 10)`` for $2.50/$10)."""

        def per_token(value: float | None) -> float | None:
            return None if value is None else value / _PER_MILLION

        return cls(
            input / _PER_MILLION,
            output / _PER_MILLION,
            per_token(cache_read),
            per_token(cache_write),
            per_token(cache_write_1h),
        )

    def properties(self) -> dict[str, float]:
        """The ``$ai_*_token_price`` properties PostHog reads."""
        props = {
            schema.INPUT_TOKEN_PRICE: self.input,
            schema.OUTPUT_TOKEN_PRICE: self.output,
        }
        if self.cache_read is not None:
            props[schema.CACHE_READ_TOKEN_PRICE] = self.cache_read
        if self.cache_write is not None:
            props[schema.CACHE_WRITE_TOKEN_PRICE] = self.cache_write
        if self.cache_write_1h is not None:
            props[schema.CACHE_WRITE_1H_TOKEN_PRICE] = self.cache_write_1h
        return props


FREE = ModelPrice(0.0, 0.0)
"""The price of a model run on the user's own hardware."""


def _price_value(model: str, key: str, value: Any, required: bool) -> float | None:
    if value is None and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(
            f"prices[{model!r}][{key!r}] must be a number (USD per token), got {value!r}"
        )
    number = float(value)
    if not math.isfinite(number) or number < 0:
        raise ValueError(f"prices[{model!r}][{key!r}] must be a finite number >= 0")
    if number > _MAX_PER_TOKEN:
        raise ValueError(
            f"prices[{model!r}][{key!r}] = {value!r} is USD per token, which no model "
            "costs: PostHog expects prices per single token. For $2.50 per million "
            "tokens pass 2.5e-6, or ModelPrice.per_million(input=2.5, output=10)"
        )
    return number


def parse_prices(prices: Mapping[str, Any] | None) -> dict[str, ModelPrice]:
    """Validate the exporter's ``prices=`` option.

    Args:
        prices: ``{model: ModelPrice | {"input": ..., "output": ..., "cache_read": ...,
            "cache_write": ...}}`` in USD per token. Keys are model ids as sent in
            ``$ai_model`` (case-insensitive; ``provider/model`` ids also match on the part
            after the last ``/``).

    Returns:
        Prices keyed by lowercased model id.

    Raises:
        TypeError: ``prices`` is not a mapping of model ids.
        ValueError: A price is missing, negative, or looks like a per-million price.
    """
    if prices is None:
        return {}
    if not isinstance(prices, Mapping):
        raise TypeError(
            "prices must be a dict like {'my-model': {'input': 2.5e-6, 'output': 1e-5}}"
        )
    parsed: dict[str, ModelPrice] = {}
    for model, price in prices.items():
        if not isinstance(model, str) or not model.strip():
            raise TypeError(f"prices keys must be model ids (strings), got {model!r}")
        if isinstance(price, ModelPrice):
            raw: Mapping[str, Any] = {k: getattr(price, k) for k in _KEYS}
        elif isinstance(price, Mapping):
            unknown = set(price) - set(_KEYS)
            if unknown:
                raise ValueError(
                    f"prices[{model!r}] has unknown keys {sorted(unknown)}; use {list(_KEYS)}"
                )
            raw = price
        else:
            raise TypeError(
                f"prices[{model!r}] must be a ModelPrice or a dict with 'input' and 'output'"
            )
        values = [_price_value(model, k, raw.get(k), k in ("input", "output")) for k in _KEYS]
        parsed[model.strip().lower()] = ModelPrice(
            values[0] or 0.0, values[1] or 0.0, values[2], values[3], values[4]
        )
    return parsed


def find_price(prices: Mapping[str, ModelPrice], model: str | None) -> ModelPrice | None:
    """The configured price of ``model``: exact id, else the id after its last ``/``."""
    if not prices or not model:
        return None
    key = model.lower()
    found = prices.get(key)
    if found is None and "/" in key:
        found = prices.get(key.rsplit("/", 1)[-1])
    return found
