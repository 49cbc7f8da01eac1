"""A trace: its span tree, totals and renderings, and the grouping of events into traces."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime, timezone
from typing import Any

from .. import schema as S
from .model import SpanNode, Totals, normalize_event
from .render import render_html, render_rich, render_text
from .waterfall import plot_waterfall

__all__ = ["Trace", "build_traces"]

log = logging.getLogger(__name__)


class Trace:
    """One trace: a root span and its tree, plus feedback and metric events.

    The root is the ``$ai_trace`` event, or a lone model call whose span id is the trace id.
    When neither arrived a synthetic root stands in (``root.synthetic``). Spans whose parent
    never arrived hang under the root with ``orphan=True``.

    In Jupyter a trace renders as a collapsible tree, in a terminal ``print(trace)`` gives a
    text tree and ``rich.print(trace)`` a coloured one.
    """

    def __init__(
        self, trace_id: str, root: SpanNode, spans: list[SpanNode], scores: list[dict[str, Any]]
    ) -> None:
        self.trace_id = trace_id
        self.root = root
        self.spans = spans
        self.scores = scores
        self._totals: Totals | None = None

    @property
    def name(self) -> str:
        """The root span's name."""
        return self.root.name

    @property
    def start(self) -> float | None:
        """Earliest start time (epoch seconds)."""
        starts = [s.start for s in self.spans if s.start is not None]
        if not starts:
            return self.root.start
        return min(starts)

    @property
    def distinct_id(self) -> str | None:
        """The trace's distinct id."""
        return self.root.distinct_id or next(
            (s.distinct_id for s in self.spans if s.distinct_id), None
        )

    @property
    def user(self) -> str | None:
        """The distinct id, or ``None`` for personless events (whose distinct id is the
        trace id)."""
        distinct_id = self.distinct_id
        return distinct_id if distinct_id != self.trace_id else None

    @property
    def session_id(self) -> str | None:
        """``$ai_session_id`` of any span."""
        return next((s.session_id for s in self.spans if s.session_id), None)

    @property
    def latency(self) -> float | None:
        """The root's ``$ai_latency``, else first start to last end."""
        if not self.root.synthetic and self.root.latency is not None:
            return self.root.latency
        ends = [s.end for s in self.spans if s.end is not None]
        start = self.start
        return max(ends) - start if ends and start is not None else None

    def walk(self) -> Iterator[tuple[int, SpanNode]]:
        """Every span with its depth, depth first from the root."""
        return self.root.walk()

    def find(self, name: str) -> list[SpanNode]:
        """Spans named ``name``."""
        return [s for s in self.spans if s.name == name]

    @property
    def totals(self) -> Totals:
        """Token, latency, error, model and cost totals of this trace."""
        if self._totals is None:
            self._totals = Totals.of_spans(self.spans, self.latency)
        return self._totals

    def to_dict(self) -> dict[str, Any]:
        """The trace as plain JSON-serialisable data (what ``show --json`` prints)."""
        t = self.totals
        return {
            "trace_id": self.trace_id,
            "name": self.name,
            "start": _iso(self.start),
            "distinct_id": self.distinct_id,
            "session_id": self.session_id,
            "totals": {
                "spans": t.spans,
                "generations": t.generations,
                "embeddings": t.embeddings,
                "errors": t.errors,
                "orphans": t.orphans,
                "input_tokens": t.input_tokens,
                "output_tokens": t.output_tokens,
                "cache_read_tokens": t.cache_read_tokens,
                "cache_creation_tokens": t.cache_creation_tokens,
                "reasoning_tokens": t.reasoning_tokens,
                "latency_ms": _ms(t.latency),
                "cost_usd": t.cost_usd,
                "cost_estimated": t.cost_estimated,
                "models": t.models,
            },
            "spans": [
                {
                    "span_id": node.span_id,
                    "parent_id": node.parent_id,
                    "depth": depth,
                    "name": node.name,
                    "kind": node.kind,
                    "model": node.model,
                    "provider": node.provider,
                    "input_tokens": node.tokens("input_tokens"),
                    "output_tokens": node.tokens("output_tokens"),
                    "cache_read_tokens": node.tokens("cache_read_tokens"),
                    "cache_creation_tokens": node.tokens("cache_creation_tokens"),
                    "reasoning_tokens": node.tokens("reasoning_tokens"),
                    "start": _iso(node.start),
                    "latency_ms": _ms(node.latency),
                    "cost_usd": node.cost,
                    "cost_estimated": node.cost_estimated,
                    "is_error": node.is_error,
                    "error": node.error,
                    "orphan": node.orphan,
                    "status": node.status,
                    "input": node.input,
                    "output": node.output,
                }
                for depth, node in self.walk()
                if not node.synthetic
            ],
            "scores": [score.get("properties", {}) for score in self.scores],
        }

    def __repr__(self) -> str:
        return f"<Trace {self.name!r} id={self.trace_id} spans={len(self.spans)}>"

    def __str__(self) -> str:
        return render_text(self)

    def __rich__(self) -> Any:
        return render_rich(self)

    def _repr_html_(self) -> str:
        return render_html(self)

    def plot_waterfall(self, ax: Any = None, *, title: str | None = None) -> Any:
        """Draw the spans as a waterfall (one bar per span, start to end, nested).

        Args:
            ax: A matplotlib ``Axes`` to draw on; a new figure when omitted.
            title: Chart title (the trace name by default).

        Returns:
            The matplotlib ``Axes`` (assign it, ``ax = trace.plot_waterfall()``, so a
            notebook shows the chart without the ``<Axes ...>`` line).
        """
        return plot_waterfall(self, ax=ax, title=title)


def _iso(start: float | None) -> str | None:
    if start is None:
        return None
    return datetime.fromtimestamp(start, tz=timezone.utc).isoformat().replace("+00:00", "Z")


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000.0, 3)


def _sort_key(node: SpanNode) -> tuple[float, str]:
    return (node.start if node.start is not None else float("inf"), node.span_id)


def _build_one(trace_id: str, nodes: list[SpanNode], scores: list[dict[str, Any]]) -> Trace:
    root: SpanNode | None = None
    by_id: dict[str, SpanNode] = {}
    for node in sorted(nodes, key=_sort_key):
        if node.span_id == trace_id and node.parent_id is None and root is None:
            root = node
        elif node.span_id in by_id:
            node.span_id = f"{node.span_id}#{node.uuid or len(by_id)}"  # duplicate id
            by_id[node.span_id] = node
        else:
            by_id.setdefault(node.span_id, node)
    if root is None:
        starts = [n.start for n in nodes if n.start is not None]
        root = SpanNode(
            event=S.TRACE,
            kind="trace",
            trace_id=trace_id,
            span_id=trace_id,
            parent_id=None,
            name="(trace event missing)",
            start=min(starts) if starts else None,
            latency=None,
            distinct_id=None,
            properties={},
            synthetic=True,
        )
    for node in sorted(by_id.values(), key=_sort_key):
        parent_id = node.parent_id
        if parent_id is None or parent_id == trace_id:
            root.children.append(node)
        elif parent_id in by_id and parent_id != node.span_id:
            by_id[parent_id].children.append(node)
        else:
            node.orphan = True
            root.children.append(node)
    # A parent cycle is unreachable from the root: detach those spans as orphans too.
    reached = {id(n) for _, n in root.walk()}
    for node in sorted(by_id.values(), key=_sort_key):
        if id(node) not in reached:
            for other in by_id.values():
                if node in other.children:
                    other.children.remove(node)
            node.orphan = True
            root.children.append(node)
            reached.update(id(n) for _, n in node.walk())
    root.children.sort(key=_sort_key)
    spans = [n for _, n in root.walk() if not n.synthetic]
    return Trace(trace_id, root, spans, scores)


def build_traces(events: Iterable[Mapping[str, Any]]) -> list[Trace]:
    """Group ``$ai_*`` events by ``$ai_trace_id`` into :class:`Trace` objects.

    Other events are ignored. Traces come back in start order.
    """
    nodes: dict[str, list[SpanNode]] = {}
    scores: dict[str, list[dict[str, Any]]] = {}
    for raw in events:
        event = normalize_event(raw)
        name = event.get("event")
        trace_id = event["properties"].get(S.TRACE_ID)
        if not trace_id:
            continue
        if name in S.SPAN_EVENTS:
            nodes.setdefault(str(trace_id), []).append(SpanNode.from_event(event))
        elif name in S.SCORE_EVENTS:
            scores.setdefault(str(trace_id), []).append(event)
    traces = [_build_one(tid, group, scores.get(tid, [])) for tid, group in nodes.items()]
    traces.sort(key=lambda t: (t.start if t.start is not None else float("inf"), t.trace_id))
    return traces
