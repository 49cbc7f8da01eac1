"""Event dicts -> span trees: the data model behind ``posthog_callbacks.explore``.

Reads only the PostHog event shape (``event``, ``distinct_id``, ``properties``,
``timestamp``, ``uuid``), so a local JSONL file, a ``MemorySink`` and rows fetched from
PostHog's query API all load the same way.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

__all__ = ["SPAN_EVENTS", "SpanNode", "Totals", "Trace", "build_traces", "normalize_event"]

SPAN_EVENTS = ("$ai_trace", "$ai_span", "$ai_generation", "$ai_embedding")
SCORE_EVENTS = ("$ai_feedback", "$ai_metric")
_KINDS = {
    "$ai_trace": "trace",
    "$ai_span": "span",
    "$ai_generation": "generation",
    "$ai_embedding": "embedding",
}
_TOKEN_KEYS = {
    "input_tokens": "$ai_input_tokens",
    "output_tokens": "$ai_output_tokens",
    "cache_read_tokens": "$ai_cache_read_input_tokens",
    "cache_creation_tokens": "$ai_cache_creation_input_tokens",
    "reasoning_tokens": "$ai_reasoning_tokens",
}


def _parse_time(value: Any) -> float | None:
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
    except (TypeError, ValueError):
        return None


def _float(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
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
        name = event.get("event", "$ai_span")
        trace_id = str(props.get("$ai_trace_id") or "")
        if name == "$ai_trace":
            span_id = trace_id
        else:
            span_id = str(props.get("$ai_span_id") or event.get("uuid") or "")
        parent = props.get("$ai_parent_id")
        return cls(
            event=str(name),
            kind=_KINDS.get(str(name), "span"),
            trace_id=trace_id,
            span_id=span_id,
            parent_id=str(parent) if parent else None,
            name=str(
                props.get("$ai_span_name")
                or props.get("$ai_trace_name")
                or _KINDS.get(str(name), "span")
            ),
            start=_parse_time(event.get("timestamp")),
            latency=_float(props.get("$ai_latency")),
            distinct_id=event.get("distinct_id"),
            properties=props,
            uuid=event.get("uuid"),
        )

    @property
    def end(self) -> float | None:
        """End time, epoch seconds (start + latency), if both are known."""
        if self.start is None:
            return None
        return self.start + (self.latency or 0.0)

    @property
    def model(self) -> str | None:
        """``$ai_model``."""
        return self.properties.get("$ai_model")

    @property
    def provider(self) -> str | None:
        """``$ai_provider``."""
        return self.properties.get("$ai_provider")

    @property
    def is_error(self) -> bool:
        """``$ai_is_error`` (or an ``$ai_error`` being present)."""
        return bool(self.properties.get("$ai_is_error")) or bool(self.properties.get("$ai_error"))

    @property
    def error(self) -> str | None:
        """``$ai_error`` as text."""
        value = self.properties.get("$ai_error")
        if value is None:
            return None
        return value if isinstance(value, str) else json.dumps(value, default=str)

    @property
    def input(self) -> Any:
        """``$ai_input`` for model calls, ``$ai_input_state`` otherwise."""
        props = self.properties
        return props.get("$ai_input", props.get("$ai_input_state"))

    @property
    def output(self) -> Any:
        """``$ai_output_choices`` for model calls, ``$ai_output_state`` otherwise."""
        props = self.properties
        return props.get("$ai_output_choices", props.get("$ai_output_state"))

    @property
    def cost(self) -> float | None:
        """``$ai_total_cost_usd`` (only PostHog computes it; absent in local files)."""
        return _float(self.properties.get("$ai_total_cost_usd"))

    def tokens(self, kind: str) -> int | None:
        """A token count: ``input_tokens``, ``output_tokens``, ``cache_read_tokens``,
        ``cache_creation_tokens`` or ``reasoning_tokens``."""
        return _int(self.properties.get(_TOKEN_KEYS[kind]))

    def walk(self, depth: int = 0) -> Iterator[tuple[int, SpanNode]]:
        """This node and its descendants, depth first, with their depth."""
        yield depth, self
        for child in self.children:
            yield from child.walk(depth + 1)


@dataclass(frozen=True)
class Totals:
    """Sums over a trace's spans.

    Token counts are summed over model calls as PostHog received them (for Anthropic,
    ``input_tokens`` excludes cached tokens); ``None`` when no span reported any.
    ``cost_usd`` is only set when the events carry ``$ai_total_cost_usd`` (PostHog
    adds it at ingestion; local files do not have it).
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

    @property
    def total_tokens(self) -> int | None:
        """Input + output tokens, when either is known."""
        if self.input_tokens is None and self.output_tokens is None:
            return None
        return (self.input_tokens or 0) + (self.output_tokens or 0)


class Trace:
    """One trace: a root span and its tree, plus feedback and metric events.

    The root is the ``$ai_trace`` event, or a lone model call whose span id is the trace id.
    When neither arrived a synthetic root stands in (``root.synthetic``). Spans whose parent
    never arrived hang under the root with ``orphan=True``.
    """

    def __init__(
        self, trace_id: str, root: SpanNode, spans: list[SpanNode], scores: list[dict[str, Any]]
    ) -> None:
        self.trace_id = trace_id
        self.root = root
        self.spans = spans
        self.scores = scores

    @property
    def name(self) -> str:
        """The root span's name."""
        return self.root.name

    @property
    def start(self) -> float | None:
        """Earliest start time (epoch seconds)."""
        starts = [s.start for s in self.spans if s.start is not None]
        return min(starts) if starts else None

    @property
    def distinct_id(self) -> str | None:
        """The trace's distinct id."""
        return self.root.distinct_id or next(
            (s.distinct_id for s in self.spans if s.distinct_id), None
        )

    @property
    def session_id(self) -> str | None:
        """``$ai_session_id`` of any span."""
        return next(
            (
                str(s.properties["$ai_session_id"])
                for s in self.spans
                if s.properties.get("$ai_session_id")
            ),
            None,
        )

    def walk(self) -> Iterator[tuple[int, SpanNode]]:
        """Every span with its depth, depth first from the root."""
        return self.root.walk()

    def find(self, name: str) -> list[SpanNode]:
        """Spans named ``name``."""
        return [s for s in self.spans if s.name == name]

    @property
    def totals(self) -> Totals:
        """Token, latency, error, model and cost totals of this trace."""
        sums: dict[str, int | None] = dict.fromkeys(_TOKEN_KEYS)
        models: dict[str, int] = {}
        cost: float | None = None
        for span in self.spans:
            if span.kind in ("generation", "embedding"):
                for key in _TOKEN_KEYS:
                    value = span.tokens(key)
                    if value is not None:
                        sums[key] = (sums[key] or 0) + value
                if span.model:
                    models[span.model] = models.get(span.model, 0) + 1
            if span.cost is not None:
                cost = (cost or 0.0) + span.cost
        return Totals(
            **sums,
            latency=self._latency(),
            spans=len(self.spans),
            generations=sum(s.kind == "generation" for s in self.spans),
            embeddings=sum(s.kind == "embedding" for s in self.spans),
            errors=sum(s.is_error for s in self.spans),
            orphans=sum(s.orphan for s in self.spans),
            models=models,
            cost_usd=cost,
        )

    def _latency(self) -> float | None:
        if not self.root.synthetic and self.root.latency is not None:
            return self.root.latency
        ends = [s.end for s in self.spans if s.end is not None]
        start = self.start
        return max(ends) - start if ends and start is not None else None

    def __repr__(self) -> str:
        return f"<Trace {self.name!r} id={self.trace_id} spans={len(self.spans)}>"

    def __str__(self) -> str:
        from .render import render_text

        return render_text(self)

    def __rich__(self) -> Any:
        from .render import render_rich

        return render_rich(self)

    def _repr_html_(self) -> str:
        from .render import render_html

        return render_html(self)

    def plot_waterfall(self, ax: Any = None, *, title: str | None = None) -> Any:
        """Draw the spans as a Gantt chart (one bar per span, start to end).

        Args:
            ax: A matplotlib ``Axes`` to draw on; a new figure when omitted.
            title: Chart title (the trace name by default).

        Returns:
            The matplotlib ``Axes``.
        """
        from .render import plot_waterfall

        return plot_waterfall(self, ax=ax, title=title)


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
        root = SpanNode(
            event="$ai_trace",
            kind="trace",
            trace_id=trace_id,
            span_id=trace_id,
            parent_id=None,
            name="(trace event missing)",
            start=None,
            latency=None,
            distinct_id=None,
            properties={},
            synthetic=True,
        )
        starts = [n.start for n in nodes if n.start is not None]
        root.start = min(starts) if starts else None
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
        trace_id = event["properties"].get("$ai_trace_id")
        if not trace_id:
            continue
        if name in SPAN_EVENTS:
            nodes.setdefault(str(trace_id), []).append(SpanNode.from_event(event))
        elif name in SCORE_EVENTS:
            scores.setdefault(str(trace_id), []).append(event)
    traces = [_build_one(tid, group, scores.get(tid, [])) for tid, group in nodes.items()]
    traces.sort(key=lambda t: (t.start if t.start is not None else float("inf"), t.trace_id))
    return traces
