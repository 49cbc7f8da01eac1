"""Explore recorded traces: span trees, totals, HTML/text rendering, DataFrames, waterfalls.

Loads PostHog ``$ai_*`` events from a :class:`~posthog_callbacks.JsonlSink` file, a
:class:`~posthog_callbacks.MemorySink`, a list of event dicts, or PostHog itself (the
HogQL query API), and groups them into :class:`Trace` objects::

    from posthog_callbacks import explore

    traces = explore.load_traces("traces.jsonl")
    traces[0]                        # collapsible tree in Jupyter, text in a terminal
    traces[0].totals.input_tokens
    traces[0].plot_waterfall()
    df = explore.to_dataframe(traces)
    df.groupby("model")[["input_tokens", "output_tokens", "latency"]].sum()

pandas, matplotlib and rich come with the ``[notebooks]`` extra and are imported only
when needed.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, SupportsIndex, overload

from .model import SpanNode, Totals, Trace, build_traces, normalize_event
from .posthog import query_events
from .render import render_list_html, require

__all__ = [
    "DATAFRAME_COLUMNS",
    "SpanNode",
    "Totals",
    "Trace",
    "TraceList",
    "load_events",
    "load_traces",
    "load_traces_from_posthog",
    "to_dataframe",
]

log = logging.getLogger("posthog_callbacks")

DATAFRAME_COLUMNS = (
    "trace_id",
    "span_id",
    "parent_id",
    "event",
    "kind",
    "name",
    "model",
    "provider",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_creation_tokens",
    "reasoning_tokens",
    "latency",
    "start",
    "is_error",
    "error",
    "distinct_id",
    "session_id",
    "cost",
    "depth",
    "is_orphan",
)

Source = Any  # str | os.PathLike | MemorySink | Iterable[Mapping[str, Any]]


class TraceList(list[Trace]):
    """A list of :class:`Trace` objects that renders as a summary table in Jupyter."""

    @overload
    def __getitem__(self, index: SupportsIndex) -> Trace: ...

    @overload
    def __getitem__(self, index: slice) -> TraceList: ...

    def __getitem__(self, index: SupportsIndex | slice) -> Trace | TraceList:
        if isinstance(index, slice):
            return TraceList(super().__getitem__(index))
        return super().__getitem__(index)

    def get(self, trace_id: str) -> Trace:
        """The trace whose id is, or starts with, ``trace_id``.

        Raises:
            KeyError: No trace, or more than one, matches.
        """
        matches = [t for t in self if t.trace_id == trace_id]
        if not matches:
            matches = [t for t in self if t.trace_id.startswith(trace_id)]
        if len(matches) != 1:
            raise KeyError(f"{len(matches)} traces match {trace_id!r}")
        return matches[0]

    def _repr_html_(self) -> str:
        return render_list_html(self)

    def __str__(self) -> str:
        return "\n\n".join(str(t) for t in self)


def load_events(source: Source) -> list[dict[str, Any]]:
    """Event dicts from a JSONL path, a ``MemorySink`` (anything with ``.events``) or an
    iterable of dicts.

    Lines of a JSONL file that are not JSON objects (e.g. a line cut short by a crash) are
    skipped with a warning on the ``posthog_callbacks`` logger.

    Raises:
        FileNotFoundError: The path does not exist.
        TypeError: ``source`` is none of the above.
    """
    if isinstance(source, (str, os.PathLike)):
        return _read_jsonl(Path(source))
    events = getattr(source, "events", None)
    if isinstance(events, list):
        return [normalize_event(e) for e in list(events)]
    if isinstance(source, Mapping):
        return [normalize_event(source)]
    if isinstance(source, Iterable):
        out = []
        for item in source:
            if isinstance(item, Trace):
                raise TypeError("load_events takes events; pass traces to to_dataframe")
            if not isinstance(item, Mapping):
                raise TypeError(f"expected event dicts, got {type(item).__name__}")
            out.append(normalize_event(item))
        return out
    raise TypeError(
        "source must be a JSONL path, a MemorySink or a list of event dicts, "
        f"not {type(source).__name__}"
    )


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    bad: list[int] = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except ValueError:
                bad.append(lineno)
                continue
            if isinstance(value, dict):
                events.append(normalize_event(value))
            else:
                bad.append(lineno)
    if bad:
        log.warning(
            "posthog_callbacks: skipped %d unreadable line(s) in %s (first: line %d)",
            len(bad),
            path,
            bad[0],
        )
    return events


def load_traces(source: Source) -> TraceList:
    """Group the ``$ai_*`` events of ``source`` into traces, in start order.

    Args:
        source: A JSONL file written by ``JsonlSink``, a ``MemorySink``, or a list of
            PostHog event dicts (``event``, ``distinct_id``, ``properties``, ``timestamp``).

    Returns:
        A :class:`TraceList`; feedback and metric events are attached to their trace.
    """
    return TraceList(build_traces(load_events(source)))


def load_traces_from_posthog(
    project_id: str | int | None = None,
    *,
    personal_api_key: str | None = None,
    host: str | None = None,
    since: datetime | timedelta | str | None = timedelta(days=1),
    trace_id: str | None = None,
    session_id: str | None = None,
    distinct_id: str | None = None,
    max_events: int = 10_000,
    page_size: int = 1000,
    timeout: float = 30.0,
    session: Any = None,
) -> TraceList:
    """Fetch ``$ai_*`` events from PostHog's query API and group them into traces.

    Uses ``POST {host}/api/projects/{project_id}/query/`` with a HogQL query; filter
    values are sent as query placeholders, never pasted into the SQL.

    Args:
        project_id: Numeric project id; defaults to ``POSTHOG_PROJECT_ID``.
        personal_api_key: A personal API key with ``query:read``; defaults to
            ``POSTHOG_PERSONAL_API_KEY``. (The project key ``phc_...`` cannot read.)
        host: ``https://us.posthog.com``, ``https://eu.posthog.com`` or your instance;
            defaults to ``POSTHOG_HOST``. Ingestion hosts (``us.i.posthog.com``) are mapped
            to their app host.
        since: Events at or after this time (a datetime, a timedelta back from now, or a
            ``YYYY-MM-DD HH:MM:SS`` UTC string); ``None`` for no bound. Default: one day.
        trace_id: Only this trace.
        session_id: Only this ``$ai_session_id``.
        distinct_id: Only this user.
        max_events: Stop after this many events.
        page_size: Rows per request.
        timeout: Seconds per request.
        session: A ``requests.Session`` to use (for proxies, tests).

    Raises:
        ValueError: No project id or personal API key.
        RuntimeError: PostHog answered with an error.
    """
    events = query_events(
        project_id=project_id,
        personal_api_key=personal_api_key,
        host=host,
        since=since,
        trace_id=trace_id,
        session_id=session_id,
        distinct_id=distinct_id,
        max_events=max_events,
        page_size=page_size,
        timeout=timeout,
        session=session,
    )
    return TraceList(build_traces(events))


def _traces_of(source: Any) -> list[Trace]:
    if isinstance(source, Trace):
        return [source]
    if isinstance(source, list) and source and all(isinstance(t, Trace) for t in source):
        return list(source)
    return build_traces(load_events(source))


def _row(trace: Trace, depth: int, node: SpanNode) -> dict[str, Any]:
    start = datetime.fromtimestamp(node.start, tz=timezone.utc) if node.start is not None else None
    return {
        "trace_id": trace.trace_id,
        "span_id": node.span_id,
        "parent_id": node.parent_id,
        "event": node.event,
        "kind": node.kind,
        "name": node.name,
        "model": node.model,
        "provider": node.provider,
        "input_tokens": node.tokens("input_tokens"),
        "output_tokens": node.tokens("output_tokens"),
        "cache_read_tokens": node.tokens("cache_read_tokens"),
        "cache_creation_tokens": node.tokens("cache_creation_tokens"),
        "reasoning_tokens": node.tokens("reasoning_tokens"),
        "latency": node.latency,
        "start": start,
        "is_error": node.is_error,
        "error": node.error,
        "distinct_id": node.distinct_id,
        "session_id": node.properties.get("$ai_session_id"),
        "cost": node.cost,
        "depth": depth,
        "is_orphan": node.orphan,
    }


def to_dataframe(source: Any) -> Any:
    """One row per span, for the usual groupby questions (needs pandas).

    Args:
        source: Traces (a :class:`Trace` or a list of them), or anything
            :func:`load_events` takes (a JSONL path, a ``MemorySink``, event dicts).

    Returns:
        A ``pandas.DataFrame`` with the columns in :data:`DATAFRAME_COLUMNS`. Token counts
        are nullable integers (``<NA>`` where a span reported none); ``start`` is a UTC
        timestamp; ``latency`` is in seconds.
    """
    pd = require("pandas")
    rows = [
        _row(trace, depth, node)
        for trace in _traces_of(source)
        for depth, node in trace.walk()
        if not node.synthetic
    ]
    df = pd.DataFrame(rows, columns=list(DATAFRAME_COLUMNS))
    for column in (
        "input_tokens",
        "output_tokens",
        "cache_read_tokens",
        "cache_creation_tokens",
        "reasoning_tokens",
    ):
        df[column] = df[column].astype("Int64")
    df["latency"] = df["latency"].astype("float64")
    df["cost"] = df["cost"].astype("float64")
    df["start"] = pd.to_datetime(df["start"], utc=True)
    df["is_error"] = df["is_error"].astype(bool)
    df["is_orphan"] = df["is_orphan"].astype(bool)
    return df
