"""Explore recorded traces: span trees, totals and cost, filters, sessions, DataFrames,
waterfalls.

Loads PostHog ``$ai_*`` events from a :class:`~posthog_callbacks.JsonlSink` file, a
:class:`~posthog_callbacks.MemorySink`, a list of event dicts, or PostHog itself (the
HogQL query API), and groups them into :class:`Trace` objects::

    from posthog_callbacks import explore

    traces = explore.load_traces("traces.jsonl")
    traces[0]                        # collapsible tree in Jupyter, text in a terminal
    traces[0].totals.cost_usd        # PostHog's cost, or estimated with genai-prices
    traces.filter(errors=True, model="gpt-4o").sort_by("cost")
    explore.sessions(traces)         # totals per session (explore.users: per user)
    ax = traces[0].plot_waterfall()
    df = explore.to_dataframe(traces)

pandas, matplotlib, rich and genai-prices come with the ``[notebooks]`` extra and are
imported only when needed.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from .frame import DATAFRAME_COLUMNS, dataframe_of
from .load import NotJsonlError, Source, load_events
from .model import SpanNode, Totals
from .posthog import query_events
from .sessions import Group, GroupList, sessions, users
from .trace import Trace, build_traces
from .tracelist import SORT_KEYS, TraceList

__all__ = [
    "DATAFRAME_COLUMNS",
    "SORT_KEYS",
    "Group",
    "GroupList",
    "NotJsonlError",
    "SpanNode",
    "Totals",
    "Trace",
    "TraceList",
    "load_events",
    "load_traces",
    "load_traces_from_posthog",
    "sessions",
    "to_dataframe",
    "users",
]

log = logging.getLogger(__name__)


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


def to_dataframe(source: Any) -> Any:
    """One row per span, for the usual groupby questions (needs pandas).

    Args:
        source: Traces (a :class:`Trace` or a list of them), or anything
            :func:`load_events` takes (a JSONL path, a ``MemorySink``, event dicts).

    Returns:
        A ``pandas.DataFrame`` with the columns in :data:`DATAFRAME_COLUMNS`: name, kind,
        model, provider, token counts (nullable integers, ``<NA>`` where a span reported
        none), ``latency_ms``, ``cost_usd`` and ``cost_estimated`` (True where the cost was
        estimated locally with genai-prices rather than computed by PostHog), errors,
        input/output previews, ``start`` (UTC), depth, orphan flag, user, session,
        ``latency`` in seconds, and the ids last.
    """
    return dataframe_of(_traces_of(source))
