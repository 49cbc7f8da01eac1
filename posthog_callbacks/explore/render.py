"""Text, rich and HTML renderings of traces, and the formatting they share.

Works on :class:`~posthog_callbacks.explore.model.SpanNode` and anything shaped like a
trace (:class:`TraceView`), so the ``Trace`` class can call into this module without this
module importing it. Everything printed passes through :func:`~.text.clean`: span names,
models, user ids and errors may hold terminal escape sequences.
"""

from __future__ import annotations

import html
import importlib
import json
import logging
import math
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from typing import Any, Protocol

from .model import SpanNode, Totals
from .text import clean, one_line

__all__ = [
    "NOTEBOOKS_EXTRA",
    "TraceView",
    "fmt_cost",
    "fmt_seconds",
    "fmt_tokens",
    "id_width",
    "render_html",
    "render_list_html",
    "render_rich",
    "render_text",
    "require",
    "summary_line",
]

log = logging.getLogger(__name__)

NOTEBOOKS_EXTRA = 'pip install "posthog-callbacks[notebooks]"'
HTML_CONTENT_LIMIT = 20_000
PREVIEW_CHARS = 120
KIND_COLORS = {
    "trace": "#6b7280",
    "span": "#2563eb",
    "generation": "#d97706",
    "embedding": "#059669",
}
_KIND_STYLE = {"trace": "magenta", "span": "blue", "generation": "yellow", "embedding": "green"}


class TraceView(Protocol):
    """What a rendering needs from a trace."""

    @property
    def trace_id(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def root(self) -> SpanNode: ...
    @property
    def start(self) -> float | None: ...
    @property
    def user(self) -> str | None: ...
    @property
    def session_id(self) -> str | None: ...
    @property
    def totals(self) -> Totals: ...
    def walk(self) -> Iterator[tuple[int, SpanNode]]: ...


def require(module: str) -> Any:
    """Import an optional ``[notebooks]`` dependency, or say how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".")[0]
        raise ImportError(
            f"posthog_callbacks.explore needs {top} for this: {NOTEBOOKS_EXTRA}"
        ) from exc


def fmt_seconds(value: float | None) -> str:
    """``1.23s`` / ``45ms`` / ``0.42ms``; empty when unknown."""
    if value is None:
        return ""
    if value >= 1:
        return f"{value:.2f}s"
    return f"{value * 1000:.0f}ms" if value >= 0.001 or value == 0 else f"{value * 1000:.2f}ms"


def fmt_cost(value: float | None, estimated: bool = False) -> str:
    """``$0.0123`` (three significant digits), ``~`` in front of an estimate; empty when
    unknown."""
    if value is None:
        return ""
    mark = "~" if estimated else ""
    if value == 0:
        return f"{mark}$0"
    if value >= 1:
        return f"{mark}${value:,.2f}"
    if value < 5e-8:
        return f"{mark}<$0.0000001"
    decimals = min(7, max(2, 2 - math.floor(math.log10(value))))
    return f"{mark}${value:.{decimals}f}"


def fmt_tokens(node: SpanNode) -> str:
    """``120→45 tok (cache read 100)``; empty when the span reported no usage."""
    tin, tout = node.tokens("input_tokens"), node.tokens("output_tokens")
    if tin is None and tout is None:
        return ""
    if tout is None and node.kind == "embedding":
        return f"{tin} tok"
    text = f"{tin if tin is not None else '?'}→{tout if tout is not None else '?'} tok"
    extras = [
        f"{label} {value}"
        for label, value in (
            ("cache read", node.tokens("cache_read_tokens")),
            ("cache write", node.tokens("cache_creation_tokens")),
            ("reasoning", node.tokens("reasoning_tokens")),
        )
        if value
    ]
    return f"{text} ({', '.join(extras)})" if extras else text


def model_label(node: SpanNode) -> str:
    """``gpt-4o-mini (openai)``; empty for spans without a model."""
    if not node.model:
        return ""
    return f"{node.model} ({node.provider})" if node.provider else node.model


def node_label_parts(node: SpanNode) -> list[str]:
    """The pieces of one span's one-line summary (name first), safe to print."""
    parts = [one_line(node.name, 200), f"[{node.kind}]"]
    for piece in (
        model_label(node),
        fmt_tokens(node),
        fmt_seconds(node.latency),
        fmt_cost(node.cost, node.cost_estimated),
    ):
        if piece:
            parts.append(one_line(piece, 200))
    if node.orphan:
        parts.append("(orphan: parent missing)")
    if node.status:
        parts.append(f"({one_line(node.status, 40)})")
    if node.is_error:
        parts.append(f"ERROR: {one_line(node.error or 'error', 160)}")
    return parts


def totals_line(totals: Totals) -> str:
    """One line of trace totals."""
    parts = [f"{totals.spans} span{'' if totals.spans == 1 else 's'}"]
    if totals.total_tokens is not None:
        parts.append(f"{totals.input_tokens or 0} in / {totals.output_tokens or 0} out tokens")
    if totals.cache_read_tokens:
        parts.append(f"{totals.cache_read_tokens} cache read")
    if totals.cache_creation_tokens:
        parts.append(f"{totals.cache_creation_tokens} cache write")
    if totals.reasoning_tokens:
        parts.append(f"{totals.reasoning_tokens} reasoning")
    if totals.latency is not None:
        parts.append(fmt_seconds(totals.latency))
    if totals.cost_usd is not None:
        cost = fmt_cost(totals.cost_usd, totals.cost_estimated)
        parts.append(cost + (" (estimated)" if totals.cost_estimated else ""))
    if totals.unpriced:
        parts.append(f"{totals.unpriced} call(s) without a price")
    if totals.models:
        parts.append("models: " + ", ".join(one_line(m, 80) for m in sorted(totals.models)))
    if totals.errors:
        parts.append(f"{totals.errors} error(s)")
    if totals.orphans:
        parts.append(f"{totals.orphans} orphan(s)")
    return " · ".join(parts)


def header(trace: TraceView) -> str:
    """``trace <id> · user <u> · session <s>``, safe to print."""
    who = [f"trace {one_line(trace.trace_id, 100)}"]
    if trace.user:
        who.append(f"user {one_line(trace.user, 100)}")
    if trace.session_id:
        who.append(f"session {one_line(trace.session_id, 100)}")
    return " · ".join(who)


def preview(value: Any, limit: int = PREVIEW_CHARS) -> str | None:
    """A one-line preview of an input or output (the last message's content for chats)."""
    if value is None:
        return None
    if isinstance(value, list) and value and isinstance(value[-1], dict):
        last = value[-1]
        content = last.get("content", last)
        value = content if content not in (None, "") else last
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return one_line(text, limit)


def render_text(trace: TraceView) -> str:
    """A plain-text tree (no dependency needed)."""
    lines = [header(trace), totals_line(trace.totals)]

    def visit(node: SpanNode, prefix: str, last: bool, top: bool) -> None:
        branch = "" if top else ("└── " if last else "├── ")
        lines.append(prefix + branch + "  ".join(node_label_parts(node)))
        child_prefix = prefix if top else prefix + ("    " if last else "│   ")
        for i, child in enumerate(node.children):
            visit(child, child_prefix, i == len(node.children) - 1, False)

    visit(trace.root, "", True, True)
    return "\n".join(lines)


def render_rich(trace: TraceView) -> Any:
    """A ``rich.tree.Tree`` of the trace (needs the ``[notebooks]`` extra)."""
    Text = require("rich.text").Text
    Tree = require("rich.tree").Tree

    def label(node: SpanNode) -> Any:
        parts = node_label_parts(node)
        text = Text(parts[0], style="bold red" if node.is_error else "bold")
        for i, part in enumerate(parts[1:]):
            style = _KIND_STYLE.get(node.kind, "dim") if i == 0 else ""
            if part.startswith("ERROR"):
                style = "red"
            elif part.startswith("(orphan"):
                style = "yellow"
            elif part.startswith(("$", "~$")):
                style = "green"
            text.append("  " + part, style=style)
        return text

    title = Text(header(trace), style="dim")
    title.append("\n" + totals_line(trace.totals), style="cyan")
    tree = Tree(title)

    def add(parent: Any, node: SpanNode) -> None:
        branch = parent.add(label(node))
        for child in node.children:
            add(branch, child)

    add(tree, trace.root)
    return tree


def _content_html(label: str, value: Any) -> str:
    if value is None:
        return ""
    text = (
        value
        if isinstance(value, str)
        else json.dumps(value, indent=2, ensure_ascii=False, default=str)
    )
    if len(text) > HTML_CONTENT_LIMIT:
        text = text[:HTML_CONTENT_LIMIT] + f"\n…[{len(text) - HTML_CONTENT_LIMIT} more chars]"
    return (
        f'<details class="phc-io"><summary>{label}</summary>'
        f'<pre style="white-space:pre-wrap;max-height:24em;overflow:auto;margin:2px 0">'
        f"{html.escape(clean(text))}</pre></details>"
    )


def _node_html(node: SpanNode) -> str:
    color = KIND_COLORS.get(node.kind, "#6b7280")
    name_style = "font-weight:600" + (";color:#dc2626" if node.is_error else "")
    bits = [
        f'<span style="{name_style}">{html.escape(one_line(node.name))}</span>',
        f'<span style="color:{color};font-size:85%">{html.escape(node.kind)}</span>',
    ]
    if node.model:
        bits.append(f"<code>{html.escape(one_line(model_label(node)))}</code>")
    tokens = fmt_tokens(node)
    if tokens:
        bits.append(f'<span class="phc-tokens">{html.escape(tokens)}</span>')
    if node.latency is not None:
        bits.append(f'<span class="phc-latency">{fmt_seconds(node.latency)}</span>')
    if node.cost is not None:
        bits.append(
            f'<span class="phc-cost">{html.escape(fmt_cost(node.cost, node.cost_estimated))}</span>'
        )
    if node.orphan:
        bits.append('<span style="color:#b45309">orphan: parent missing</span>')
    if node.is_error:
        bits.append(
            f'<span class="phc-error" style="color:#dc2626">'
            f"{html.escape(one_line(node.error or 'error', 300))}</span>"
        )
    summary = " · ".join(bits)
    body = _content_html("input", node.input) + _content_html("output", node.output)
    body += "".join(_node_html(child) for child in node.children)
    open_attr = " open" if node.children else ""
    return (
        f'<details class="phc-span" data-kind="{html.escape(node.kind)}"{open_attr} '
        f'style="margin-left:1em;border-left:2px solid {color};padding-left:6px">'
        f"<summary>{summary}</summary>{body}</details>"
    )


def render_html(trace: TraceView) -> str:
    """A collapsible HTML tree (``<details>`` per span), for Jupyter."""
    return (
        f'<div class="phc-trace" style="font-family:sans-serif;font-size:90%">'
        f"<div><b>{html.escape(one_line(trace.name))}</b> "
        f'<span style="color:#6b7280">{html.escape(header(trace))}</span></div>'
        f'<div class="phc-totals">{html.escape(totals_line(trace.totals))}</div>'
        f"{_node_html(trace.root)}</div>"
    )


def id_width(ids: Sequence[str], minimum: int = 8) -> int:
    """The shortest prefix length that tells every id in ``ids`` apart (at least
    ``minimum``; whole ids when two share a longer prefix than that)."""
    width = minimum
    unique = set(ids)
    longest = max((len(i) for i in unique), default=minimum)
    while width < longest and len({i[:width] for i in unique}) < len(unique):
        width += 1
    return width


def fmt_time(start: float | None) -> str:
    """``2026-01-01 00:00:00`` (UTC); empty when unknown."""
    if start is None:
        return ""
    return datetime.fromtimestamp(start, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def summary_line(trace: TraceView, width: int) -> str:
    """One line about a trace, for ``posthog-callbacks show --summary``."""
    t = trace.totals
    tokens = "" if t.total_tokens is None else f"{t.input_tokens or 0}→{t.output_tokens or 0} tok"
    cells = [
        one_line(trace.trace_id)[:width].ljust(width),
        fmt_time(trace.start) or "-".ljust(19),
        fmt_seconds(t.latency).rjust(7),
        tokens.rjust(14),
        fmt_cost(t.cost_usd, t.cost_estimated).rjust(11),
        (f"{t.errors} err" if t.errors else "").rjust(6),
        one_line(trace.name, 40),
    ]
    user = trace.user
    if user:
        cells.append(f"user {one_line(user, 40)}")
    return "  ".join(cells).rstrip()


def render_list_html(traces: Sequence[TraceView]) -> str:
    """A summary table of traces, for Jupyter."""
    width = id_width([t.trace_id for t in traces])
    rows = []
    for i, trace in enumerate(traces):
        t = trace.totals
        user = trace.user
        rows.append(
            f"<tr><td>{i}</td><td>{html.escape(one_line(trace.name, 80))}</td>"
            f"<td><code>{html.escape(one_line(trace.trace_id)[:width])}</code></td>"
            f"<td>{fmt_time(trace.start)}</td><td>{t.spans}</td>"
            f"<td>{'' if t.input_tokens is None else t.input_tokens}</td>"
            f"<td>{'' if t.output_tokens is None else t.output_tokens}</td>"
            f"<td>{fmt_seconds(t.latency)}</td>"
            f"<td>{html.escape(fmt_cost(t.cost_usd, t.cost_estimated))}</td><td>{t.errors}</td>"
            f"<td>{html.escape(one_line(user or '', 60))}</td>"
            f"<td>{html.escape(', '.join(one_line(m, 60) for m in sorted(t.models)))}</td></tr>"
        )
    head = (
        "<tr><th>#</th><th>name</th><th>trace id</th><th>start (UTC)</th><th>spans</th>"
        "<th>input tok</th><th>output tok</th><th>latency</th><th>cost</th><th>errors</th>"
        "<th>user</th><th>models</th></tr>"
    )
    note = (
        '<caption style="caption-side:bottom;text-align:left;color:#6b7280">'
        "~ cost estimated locally with genai-prices</caption>"
        if any(t.totals.cost_estimated for t in traces)
        else ""
    )
    return f'<table class="phc-traces">{note}{head}{"".join(rows)}</table>'
