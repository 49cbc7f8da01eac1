"""Span records and their totals: the data behind ``posthog_callbacks.explore``.

Reads only the PostHog event shape (``event``, ``distinct_id``, ``properties``,
``timestamp``, ``uuid``), so a local JSONL file, a ``MemorySink`` and rows fetched from
PostHog's query API all load the same way. Every property name comes from
:mod:`posthog_callbacks.schema`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import cached_property
from typing import Any

from .. import schema as S
from .cost import Cost, span_cost

__all__ = ["SpanNode", "Totals", "normalize_event", "parse_time"]

log = logging.getLogger(__name__)

KINDS = {
    S.TRACE: "trace",
    S.SPAN: "span",
    S.GENERATION: "generation",
    S.EMBEDDING: "embedding",
}
TOKEN_KEYS = {
    "input_tokens": S.INPUT_TOKENS,
    "output_tokens": S.OUTPUT_TOKENS,
    "cache_read_tokens": S.CACHE_READ_INPUT_TOKENS,
    "cache_creation_tokens": S.CACHE_CREATION_INPUT_TOKENS,
    "reasoning_tokens": S.REASONING_TOKENS,
}


def parse_time(value: Any) -> float | None:
    """Epoch seconds from an ISO-8601 string, a datetime or a number (None if unknown)."""
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, datetime):
        dt = value
    else:
        text = str(value).strip().replace("Z", "+00:00")
        try:
            dt = datetime.fromisoformat(text)
        except ValueError:
            return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()


def _int(value: Any) -> int | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        return None


def _float(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError):
        return None


def normalize_event(event: Mapping[str, Any]) -> dict[str, Any]:
    """Return ``event`` with ``properties`` as a dict (the query API may send a JSON string)."""
    out = dict(event)
    props = out.get("properties")
    if isinstance(props, str):
        try:
            props = json.loads(props)
        except ValueError:
            props = {}
    out["properties"] = props if isinstance(props, dict) else {}
    return out


@dataclass(eq=False)
class SpanNode:
    """One span of a trace (an ``$ai_trace``, ``$ai_span``, ``$ai_generation`` or
    ``$ai_embedding`` event), with its children in start order.

    Attributes:
        event: The PostHog event name.
        kind: ``trace``, ``span``, ``generation`` or ``embedding``.
        span_id: ``$ai_span_id`` (the trace id for the root).
        parent_id: ``$ai_parent_id``; ``None`` for the root.
        name: ``$ai_span_name`` (or ``$ai_trace_name``).
        start: Start time, epoch seconds (the event's ``timestamp``).
        latency: Duration in seconds (``$ai_latency``), if sent.
        orphan: True when the parent never arrived; the span is shown under the root.
        properties: Every property of the event.
    """

    event: str
    kind: str
    trace_id: str
    span_id: str
    parent_id: str | None
    name: str
    start: float | None
    latency: float | None
    distinct_id: str | None
    properties: dict[str, Any]
    uuid: str | None = None
    orphan: bool = False
    synthetic: bool = False
    children: list[SpanNode] = field(default_factory=list)

    @classmethod
    def from_event(cls, event: Mapping[str, Any]) -> SpanNode:
        """Build a node from one (normalised) event dict."""
        props: dict[str, Any] = event.get("properties") or {}
        name = str(event.get("event", S.SPAN))
        trace_id = str(props.get(S.TRACE_ID) or "")
        if name == S.TRACE:
            span_id = trace_id
        else:
            span_id = str(props.get(S.SPAN_ID) or event.get("uuid") or "")
        parent = props.get(S.PARENT_ID)
        distinct_id = event.get("distinct_id")
        return cls(
            event=name,
            kind=KINDS.get(name, "span"),
            trace_id=trace_id,
            span_id=span_id,
            parent_id=str(parent) if parent else None,
            name=str(props.get(S.SPAN_NAME) or props.get(S.TRACE_NAME) or KINDS.get(name, "span")),
            start=parse_time(event.get("timestamp")),
            latency=_float(props.get(S.LATENCY)),
            distinct_id=str(distinct_id) if distinct_id is not None else None,
            properties=props,
            uuid=event.get("uuid"),
        )

    @property
    def end(self) -> float | None:
        """End time, epoch seconds (start + latency), if both are known."""
        if self.start is None:
            return None
        return self.start + (self.latency or 0.0)

    def _text(self, key: str) -> str | None:
        value = self.properties.get(key)
        return str(value) if value is not None and value != "" else None

    @property
    def model(self) -> str | None:
        """``$ai_model``."""
        return self._text(S.MODEL)

    @property
    def provider(self) -> str | None:
        """``$ai_provider``."""
        return self._text(S.PROVIDER)

    @property
    def session_id(self) -> str | None:
        """``$ai_session_id``."""
        return self._text(S.SESSION_ID)

    @property
    def status(self) -> str | None:
        """``$ai_span_status`` (``unfinished``, ``interrupted``, ...)."""
        return self._text(S.SPAN_STATUS)

    @property
    def is_error(self) -> bool:
        """``$ai_is_error`` (or an ``$ai_error`` being present)."""
        return bool(self.properties.get(S.IS_ERROR)) or bool(self.properties.get(S.ERROR))

    @property
    def error(self) -> str | None:
        """``$ai_error`` as text."""
        value = self.properties.get(S.ERROR)
        if value is None:
            return None
        return value if isinstance(value, str) else json.dumps(value, default=str)

    @property
    def input(self) -> Any:
        """``$ai_input`` for model calls, ``$ai_input_state`` otherwise."""
        props = self.properties
        return props.get(S.INPUT, props.get(S.INPUT_STATE))

    @property
    def output(self) -> Any:
        """``$ai_output_choices`` for model calls, ``$ai_output_state`` otherwise."""
        props = self.properties
        return props.get(S.OUTPUT_CHOICES, props.get(S.OUTPUT_STATE))

    @cached_property
    def _cost(self) -> Cost | None:
        return span_cost(self.properties, self.kind, self.start)

    @property
    def cost(self) -> float | None:
        """Cost in USD: PostHog's ``$ai_total_cost_usd``, else estimated from the tokens
        with genai-prices (see :attr:`cost_estimated`); ``None`` when unknown."""
        found = self._cost
        return found[0] if found is not None else None

    @property
    def cost_estimated(self) -> bool:
        """True when :attr:`cost` is a local estimate rather than PostHog's figure."""
        found = self._cost
        return found is not None and found[1]

    def tokens(self, kind: str) -> int | None:
        """A token count: ``input_tokens``, ``output_tokens``, ``cache_read_tokens``,
        ``cache_creation_tokens`` or ``reasoning_tokens``."""
        return _int(self.properties.get(TOKEN_KEYS[kind]))

    def walk(self, depth: int = 0) -> Iterator[tuple[int, SpanNode]]:
        """This node and its descendants, depth first, with their depth."""
        yield depth, self
        for child in self.children:
            yield from child.walk(depth + 1)


def _add(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else a + b


@dataclass(frozen=True)
class Totals:
    """Sums over a trace's spans (or over several traces, see :meth:`combine`).

    Token counts are summed over model calls as PostHog received them (for Anthropic,
    ``input_tokens`` excludes cached tokens); ``None`` when no span reported any.
    ``cost_usd`` sums the spans' costs (PostHog's ``$ai_total_cost_usd`` where the events
    carry it, else estimated with genai-prices, then ``cost_estimated`` is True); it is
    ``None`` when no model call could be priced, and ``unpriced`` counts model calls with
    tokens but no price.
    """

    input_tokens: int | None
    output_tokens: int | None
    cache_read_tokens: int | None
    cache_creation_tokens: int | None
    reasoning_tokens: int | None
    latency: float | None
    spans: int
    generations: int
    embeddings: int
    errors: int
    orphans: int
    models: dict[str, int]
    cost_usd: float | None
    cost_estimated: bool = False
    unpriced: int = 0
    traces: int = 1

    @property
    def total_tokens(self) -> int | None:
        """Input + output tokens, when either is known."""
        if self.input_tokens is None and self.output_tokens is None:
            return None
        return (self.input_tokens or 0) + (self.output_tokens or 0)

    @classmethod
    def of_spans(cls, spans: Iterable[SpanNode], latency: float | None) -> Totals:
        """Totals of one trace's spans (``latency`` is the trace's)."""
        sums: dict[str, int | None] = dict.fromkeys(TOKEN_KEYS)
        models: dict[str, int] = {}
        cost: float | None = None
        estimated = False
        counts = {"spans": 0, "generations": 0, "embeddings": 0, "errors": 0, "orphans": 0}
        unpriced = 0
        for span in spans:
            counts["spans"] += 1
            counts["generations"] += span.kind == "generation"
            counts["embeddings"] += span.kind == "embedding"
            counts["errors"] += span.is_error
            counts["orphans"] += span.orphan
            if span.kind in ("generation", "embedding"):
                for key in TOKEN_KEYS:
                    sums[key] = _add(sums[key], span.tokens(key))
                if span.model:
                    models[span.model] = models.get(span.model, 0) + 1
            span_cost_usd = span.cost
            if span_cost_usd is not None:
                cost = (cost or 0.0) + span_cost_usd
                estimated = estimated or span.cost_estimated
            elif span.kind in ("generation", "embedding") and (
                span.tokens("input_tokens") or span.tokens("output_tokens")
            ):
                unpriced += 1
        return cls(
            input_tokens=sums["input_tokens"],
            output_tokens=sums["output_tokens"],
            cache_read_tokens=sums["cache_read_tokens"],
            cache_creation_tokens=sums["cache_creation_tokens"],
            reasoning_tokens=sums["reasoning_tokens"],
            latency=latency,
            spans=counts["spans"],
            generations=counts["generations"],
            embeddings=counts["embeddings"],
            errors=counts["errors"],
            orphans=counts["orphans"],
            models=models,
            cost_usd=cost,
            cost_estimated=estimated,
            unpriced=unpriced,
        )

    @classmethod
    def combine(cls, parts: Iterable[Totals]) -> Totals:
        """Totals of several traces: everything summed (latency too), models merged."""
        items = list(parts)
        models: dict[str, int] = {}
        for part in items:
            for model, n in part.models.items():
                models[model] = models.get(model, 0) + n
        costs = [p.cost_usd for p in items if p.cost_usd is not None]
        latencies = [p.latency for p in items if p.latency is not None]

        def tokens(name: str) -> int | None:
            total: int | None = None
            for part in items:
                total = _add(total, getattr(part, name))
            return total

        return cls(
            input_tokens=tokens("input_tokens"),
            output_tokens=tokens("output_tokens"),
            cache_read_tokens=tokens("cache_read_tokens"),
            cache_creation_tokens=tokens("cache_creation_tokens"),
            reasoning_tokens=tokens("reasoning_tokens"),
            latency=sum(latencies) if latencies else None,
            spans=sum(p.spans for p in items),
            generations=sum(p.generations for p in items),
            embeddings=sum(p.embeddings for p in items),
            errors=sum(p.errors for p in items),
            orphans=sum(p.orphans for p in items),
            models=models,
            cost_usd=sum(costs) if costs else None,
            cost_estimated=any(p.cost_estimated for p in items),
            unpriced=sum(p.unpriced for p in items),
            traces=sum(p.traces for p in items),
        )
