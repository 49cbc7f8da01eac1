"""Traces grouped by session or by user, with totals per group."""

from __future__ import annotations

import html
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from .model import Totals
from .render import fmt_cost, fmt_seconds, fmt_time
from .text import one_line
from .trace import Trace
from .tracelist import TraceList

__all__ = ["Group", "GroupList", "sessions", "users"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Group:
    """The traces of one session (or one user) and their combined totals.

    Attributes:
        key: The session id or distinct id (``None``: traces without one).
        by: ``session`` or ``user``.
        traces: The group's traces, in start order.
        totals: Tokens, cost, errors and spans summed over the traces; ``latency`` is the
            sum of the traces' latencies and ``traces`` their number.
        users: Distinct ids seen in the group (for a session: usually one).
    """

    key: str | None
    by: Literal["session", "user"]
    traces: TraceList
    totals: Totals
    users: tuple[str, ...]

    @property
    def start(self) -> float | None:
        """The first trace's start."""
        starts = [t.start for t in self.traces if t.start is not None]
        return min(starts) if starts else None

    @property
    def end(self) -> float | None:
        """The last span's end."""
        ends = [s.end for t in self.traces for s in t.spans if s.end is not None]
        return max(ends) if ends else None

    def __str__(self) -> str:
        t = self.totals
        tokens = (
            "" if t.total_tokens is None else f"{t.input_tokens or 0}→{t.output_tokens or 0} tok"
        )
        parts = [
            f"{self.by} {one_line(self.key or '(none)', 60)}",
            f"{t.traces} trace{'' if t.traces == 1 else 's'}",
            tokens,
            fmt_cost(t.cost_usd, t.cost_estimated),
            f"{t.errors} error(s)" if t.errors else "",
        ]
        if self.by == "session" and self.users:
            parts.append("user " + ", ".join(one_line(u, 40) for u in self.users))
        return " · ".join(p for p in parts if p)


class GroupList(list[Group]):
    """Groups of traces; renders as a table in Jupyter and one line per group in text."""

    def _repr_html_(self) -> str:
        rows = []
        for group in self:
            t = group.totals
            rows.append(
                f"<tr><td>{html.escape(one_line(group.key or '(none)', 80))}</td>"
                f"<td>{html.escape(', '.join(one_line(u, 40) for u in group.users))}</td>"
                f"<td>{fmt_time(group.start)}</td><td>{t.traces}</td>"
                f"<td>{'' if t.input_tokens is None else t.input_tokens}</td>"
                f"<td>{'' if t.output_tokens is None else t.output_tokens}</td>"
                f"<td>{html.escape(fmt_cost(t.cost_usd, t.cost_estimated))}</td>"
                f"<td>{fmt_seconds(t.latency)}</td><td>{t.errors}</td></tr>"
            )
        by = self[0].by if self else "session"
        head = (
            f"<tr><th>{by}</th><th>users</th><th>first start (UTC)</th><th>traces</th>"
            "<th>input tok</th><th>output tok</th><th>cost</th><th>total latency</th>"
            "<th>errors</th></tr>"
        )
        return f'<table class="phc-groups">{head}{"".join(rows)}</table>'

    def __str__(self) -> str:
        return "\n".join(str(g) for g in self)


def _group(traces: Iterable[Trace], by: Literal["session", "user"]) -> GroupList:
    buckets: dict[str | None, list[Trace]] = {}
    for trace in traces:
        key = trace.session_id if by == "session" else trace.user
        buckets.setdefault(key, []).append(trace)
    groups = []
    for key, members in buckets.items():
        users = tuple(dict.fromkeys(t.user for t in members if t.user))
        groups.append(
            Group(
                key=key,
                by=by,
                traces=TraceList(members),
                totals=Totals.combine(t.totals for t in members),
                users=users,
            )
        )
    groups.sort(key=lambda g: (g.start is None, g.start or 0.0))
    return GroupList(groups)


def sessions(traces: Iterable[Trace]) -> GroupList:
    """Group traces by ``$ai_session_id`` (traces without one form a ``None`` group).

    Returns:
        A :class:`GroupList` in order of each session's first trace; each :class:`Group`
        has the session's traces, its users and totals (tokens, cost, errors, latency).
    """
    return _group(traces, "session")


def users(traces: Iterable[Trace]) -> GroupList:
    """Group traces by distinct id, with totals per user (see :func:`sessions`)."""
    return _group(traces, "user")
