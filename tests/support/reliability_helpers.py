"""Shared helpers for the reliability suites: a ledger of what was sent, tree checks."""

from __future__ import annotations

import collections
import json
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

from posthog_callbacks import FinishedSpan, PosthogExporter, SpanKind
from posthog_callbacks.events import _event_uuid

T0 = 1_700_000_000.0


def make_span(
    i: int = 0, *, trace_id: str | None = None, parent_id: str | None = None, **fields: Any
) -> FinishedSpan:
    """A finished child span with a fresh uuid span id (which becomes the event's uuid)."""
    tid = trace_id or str(uuid.uuid4())
    return FinishedSpan(
        trace_id=tid,
        span_id=str(uuid.uuid4()),
        parent_id=parent_id or tid,
        kind=fields.pop("kind", SpanKind.SPAN),
        name=f"step-{i}",
        start_time=T0 + i,
        end_time=T0 + i + 0.5,
        input={"i": i},
        output={"ok": True},
        **fields,
    )


class Ledger:
    """What the program recorded, as the event uuids that must arrive."""

    def __init__(self) -> None:
        self.uuids: list[str] = []

    def spans(self, exporter: PosthogExporter, n: int) -> list[str]:
        """Submit ``n`` finished spans; returns their uuids."""
        out = []
        for i in range(n):
            span = make_span(i)
            exporter.submit(span)
            out.append(span.span_id)
        self.uuids.extend(out)
        return out

    def trace(self, exporter: PosthogExporter, name: str = "answer") -> list[str]:
        """Record a manual trace (root, span, generation); returns the three event uuids."""
        with exporter.trace(name, input={"q": name}, distinct_id="u1") as trace:
            with trace.span("retrieve", input=name) as span:
                span.update(output=["doc"])
            with trace.generation(
                "chat",
                model="gpt-4o-mini",
                provider="openai",
                input=[{"role": "user", "content": name}],
            ) as gen:
                gen.update(
                    output=[{"role": "assistant", "content": "yo"}],
                    usage={"input_tokens": 3, "output_tokens": 1},
                )
        root = trace._span.finish(trace._span.start_time)
        out = [span.span_id, gen.span_id, _event_uuid(root)]
        self.uuids.extend(out)
        return out


def arrived_uuids(events: Iterable[dict[str, Any]]) -> list[str]:
    return [str(e["uuid"]) for e in events]


def assert_exactly_once(sent: Sequence[str], arrived: Sequence[str]) -> None:
    """Everything sent arrived, nothing else did, nothing twice (stated in the message)."""
    counts = collections.Counter(arrived)
    missing = [u for u in sent if u not in counts]
    twice = [u for u, n in counts.items() if n > 1]
    expected = set(sent)
    extra = [u for u in counts if u not in expected]
    summary = (
        f"sent {len(sent)}, arrived {len(arrived)} ({len(counts)} distinct): "
        f"missing {len(missing)}, duplicated {len(twice)}, unexpected {len(extra)}"
    )
    assert not missing and not twice and not extra and len(sent) == len(expected), summary


def encoded_size(event: dict[str, Any]) -> int:
    return len(json.dumps(event, allow_nan=False, ensure_ascii=False).encode())


def span_key(event: dict[str, Any]) -> str:
    props = event["properties"]
    return str(props.get("$ai_span_id") or props["$ai_trace_id"])


def group_by_trace(events: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    traces: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    for event in events:
        traces[event["properties"]["$ai_trace_id"]].append(event)
    return dict(traces)


def check_tree(group: Sequence[dict[str, Any]], trace_id: str) -> dict[str, dict[str, Any]]:
    """One root whose id is the trace id; every parent resolves inside this trace.

    Returns:
        The events keyed by span name (names must be unique within the trace).
    """
    ids = [span_key(e) for e in group]
    assert len(ids) == len(set(ids)), f"duplicate span ids in {trace_id}"
    roots = [e for e in group if "$ai_parent_id" not in e["properties"]]
    assert len(roots) == 1, [e["properties"]["$ai_span_name"] for e in roots]
    assert span_key(roots[0]) == trace_id
    for event in group:
        assert event["properties"]["$ai_trace_id"] == trace_id
        parent = event["properties"].get("$ai_parent_id")
        assert parent is None or parent in ids, (event["properties"]["$ai_span_name"], parent)
    by_name = {e["properties"]["$ai_span_name"]: e for e in group}
    assert len(by_name) == len(group), sorted(e["properties"]["$ai_span_name"] for e in group)
    return by_name
