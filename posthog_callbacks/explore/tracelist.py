"""``TraceList``: a list of traces that filters, sorts and renders as a table."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any, Literal, SupportsIndex, overload

from .model import SpanNode
from .render import render_list_html
from .trace import Trace

__all__ = ["SORT_KEYS", "TraceList"]

log = logging.getLogger(__name__)

SortKey = Literal["latency", "cost", "tokens", "time"]
SORT_KEYS: tuple[str, ...] = ("latency", "cost", "tokens", "time")


def _sort_value(trace: Trace, key: str) -> float | None:
    totals = trace.totals
    if key == "latency":
        return totals.latency
    if key == "cost":
        return totals.cost_usd
    if key == "tokens":
        return totals.total_tokens
    return trace.start


def _text_of(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)


def _span_mentions(span: SpanNode, needle: str) -> bool:
    return any(
        needle in _text_of(value).casefold()
        for value in (span.name, span.error, span.input, span.output)
    )


class TraceList(list[Trace]):
    """A list of :class:`Trace` objects that renders as a summary table in Jupyter.

    ``filter()`` and ``sort_by()`` return new lists, so they chain::

        traces.filter(errors=True, model="gpt-4o").sort_by("cost")[:10]
    """

    @overload
    def __getitem__(self, index: SupportsIndex) -> Trace: ...

    @overload
    def __getitem__(self, index: slice) -> TraceList: ...

    def __getitem__(self, index: SupportsIndex | slice) -> Trace | TraceList:
        if isinstance(index, slice):
            return TraceList(super().__getitem__(index))
        return super().__getitem__(index)

    def matching(self, ref: str) -> list[Trace]:
        """Traces whose id is ``ref``, else whose id starts with it, else whose name is it."""
        tests: tuple[Callable[[Trace], bool], ...] = (
            lambda t: t.trace_id == ref,
            lambda t: t.trace_id.startswith(ref),
            lambda t: t.name == ref,
        )
        for test in tests:
            found = [t for t in self if test(t)]
            if found:
                return found
        return []

    def get(self, trace_id: str) -> Trace:
        """The trace whose id is, or starts with, ``trace_id`` (or whose name it is).

        Raises:
            KeyError: No trace, or more than one, matches.
        """
        matches = self.matching(trace_id)
        if len(matches) != 1:
            raise KeyError(f"{len(matches)} traces match {trace_id!r}")
        return matches[0]

    def filter(
        self,
        *,
        errors: bool | None = None,
        user: str | None = None,
        session: str | None = None,
        model: str | None = None,
        text: str | None = None,
        min_latency: float | None = None,
        where: Callable[[Trace], bool] | None = None,
    ) -> TraceList:
        """The traces that match every criterion given (``None`` means "any").

        Args:
            errors: True: traces with at least one failed span; False: traces without.
            user: The trace's distinct id, exactly.
            session: The trace's ``$ai_session_id``, exactly.
            model: Part of a model name used in the trace, any case
                (``"gpt-4o"`` matches ``gpt-4o-mini-2024-07-18``).
            text: Words to find, any case, in span names, inputs, outputs or errors.
            min_latency: Traces that took at least this many seconds.
            where: Any other test on a :class:`Trace`.

        Returns:
            A new :class:`TraceList`, in the same order.
        """
        model_part = model.casefold() if model else None
        needle = text.casefold() if text else None

        def keep(trace: Trace) -> bool:
            totals = trace.totals
            if errors is not None and (totals.errors > 0) != errors:
                return False
            if user is not None and trace.distinct_id != user:
                return False
            if session is not None and trace.session_id != session:
                return False
            if model_part is not None and not any(
                model_part in m.casefold() for m in totals.models
            ):
                return False
            if min_latency is not None and (totals.latency or 0.0) < min_latency:
                return False
            if needle is not None and not any(_span_mentions(s, needle) for s in trace.spans):
                return False
            return where is None or where(trace)

        return TraceList(t for t in self if keep(t))

    def sort_by(self, key: SortKey | str, *, descending: bool | None = None) -> TraceList:
        """A sorted copy: by ``latency``, ``cost``, ``tokens`` (input + output) or ``time``.

        Args:
            key: What to sort by.
            descending: Largest first; by default True for latency, cost and tokens
                (slowest, dearest, biggest first) and False for time (oldest first).
                Traces without a value come last either way.

        Raises:
            ValueError: An unknown key.
        """
        if key not in SORT_KEYS:
            raise ValueError(f"sort key must be one of {', '.join(SORT_KEYS)}, not {key!r}")
        reverse = key != "time" if descending is None else descending
        known = [t for t in self if _sort_value(t, key) is not None]
        unknown = [t for t in self if _sort_value(t, key) is None]
        known.sort(key=lambda t: _sort_value(t, key) or 0.0, reverse=reverse)
        return TraceList(known + unknown)

    def _repr_html_(self) -> str:
        return render_list_html(self)

    def __str__(self) -> str:
        return "\n\n".join(str(t) for t in self)
