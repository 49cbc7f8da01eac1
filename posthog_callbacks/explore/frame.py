"""``to_dataframe``: one pandas row per span."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from .model import TOKEN_KEYS, SpanNode
from .render import preview, require
from .trace import Trace

__all__ = ["DATAFRAME_COLUMNS", "dataframe_of"]

log = logging.getLogger(__name__)

DATAFRAME_COLUMNS = (
    "name",
    "kind",
    "model",
    "provider",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_creation_tokens",
    "reasoning_tokens",
    "latency_ms",
    "cost_usd",
    "cost_estimated",
    "is_error",
    "error",
    "input_preview",
    "output_preview",
    "start",
    "depth",
    "is_orphan",
    "event",
    "distinct_id",
    "session_id",
    "latency",
    "trace_id",
    "span_id",
    "parent_id",
)
"""The columns of :func:`to_dataframe`, in order: what you read first, ids last."""
_TEXT_COLUMNS = (
    "name",
    "kind",
    "model",
    "provider",
    "error",
    "input_preview",
    "output_preview",
    "event",
    "distinct_id",
    "session_id",
    "trace_id",
    "span_id",
    "parent_id",
)


def _row(trace: Trace, depth: int, node: SpanNode) -> dict[str, Any]:
    start = datetime.fromtimestamp(node.start, tz=timezone.utc) if node.start is not None else None
    return {
        "name": node.name,
        "kind": node.kind,
        "model": node.model,
        "provider": node.provider,
        **{key: node.tokens(key) for key in TOKEN_KEYS},
        "latency_ms": None if node.latency is None else node.latency * 1000.0,
        "cost_usd": node.cost,
        "cost_estimated": node.cost_estimated,
        "is_error": node.is_error,
        "error": node.error,
        "input_preview": preview(node.input),
        "output_preview": preview(node.output),
        "start": start,
        "depth": depth,
        "is_orphan": node.orphan,
        "event": node.event,
        "distinct_id": node.distinct_id,
        "session_id": node.session_id,
        "latency": node.latency,
        "trace_id": trace.trace_id,
        "span_id": node.span_id,
        "parent_id": node.parent_id,
    }


def dataframe_of(traces: list[Trace]) -> Any:
    """The DataFrame of :func:`~posthog_callbacks.explore.to_dataframe` for ``traces``."""
    pd = require("pandas")
    rows = [
        _row(trace, depth, node)
        for trace in traces
        for depth, node in trace.walk()
        if not node.synthetic
    ]
    df = pd.DataFrame(rows, columns=list(DATAFRAME_COLUMNS))
    casts: dict[str, Callable[[Any], Any]] = {
        **{key: lambda c: c.astype("Int64") for key in TOKEN_KEYS},
        "latency_ms": lambda c: c.astype("float64"),
        "latency": lambda c: c.astype("float64"),
        "cost_usd": lambda c: c.astype("float64"),
        "start": lambda c: pd.to_datetime(c, utc=True),
        "is_error": lambda c: c.astype(bool),
        "is_orphan": lambda c: c.astype(bool),
        "cost_estimated": lambda c: c.astype(bool),
        "depth": lambda c: c.astype("int64"),
        # text columns get one dtype whatever they hold (all-missing or not)
        **{key: lambda c: c.astype("string") for key in _TEXT_COLUMNS},
    }
    for column, cast in casts.items():
        df[column] = cast(df[column])
    return df
