"""Renderings of a :class:`~posthog_callbacks.explore.Trace`: text, rich, HTML, waterfall."""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .model import SpanNode, Totals, Trace

__all__ = [
    "NOTEBOOKS_EXTRA",
    "plot_waterfall",
    "render_html",
    "render_rich",
    "render_text",
    "require",
]

NOTEBOOKS_EXTRA = 'pip install "posthog-callbacks[notebooks]"'
_HTML_CONTENT_LIMIT = 20_000
_KIND_COLORS = {
    "trace": "#6b7280",
    "span": "#2563eb",
    "generation": "#d97706",
    "embedding": "#059669",
}


def require(module: str) -> Any:
    """Import an optional ``[notebooks]`` dependency, or say how to install it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".")[0]
        raise ImportError(
            f"posthog_callbacks.explore needs {top} for this: {NOTEBOOKS_EXTRA}"
        ) from exc


def fmt_seconds(value: float | None) -> str:
    """``1.23s`` / ``45ms``; empty when unknown."""
    if value is None:
        return ""
    return f"{value:.2f}s" if value >= 1 else f"{value * 1000:.0f}ms"


def fmt_tokens(node: SpanNode) -> str:
    """``120→45 tok (cache 100)``; empty when the span reported no usage."""
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


def node_label_parts(node: SpanNode) -> list[str]:
    """The pieces of one span's one-line summary (name first)."""
    parts = [node.name, f"[{node.kind}]"]
    if node.model:
        parts.append(node.model)
    for piece in (fmt_tokens(node), fmt_seconds(node.latency)):
        if piece:
            parts.append(piece)
    if node.cost is not None:
        parts.append(f"${node.cost:.6f}")
    if node.orphan:
        parts.append("(orphan: parent missing)")
    status = node.properties.get("$ai_span_status")
    if status:
        parts.append(f"({status})")
    if node.is_error:
        parts.append(f"ERROR: {_short(node.error or 'error', 160)}")
    return parts


def totals_line(totals: Totals) -> str:
    """One line of trace totals."""
    parts = [f"{totals.spans} span{'' if totals.spans == 1 else 's'}"]
    if totals.total_tokens is not None:
        parts.append(f"{totals.input_tokens or 0} in / {totals.output_tokens or 0} out tokens")
    if totals.cache_read_tokens:
        parts.append(f"{totals.cache_read_tokens} cache read")
    if totals.reasoning_tokens:
        parts.append(f"{totals.reasoning_tokens} reasoning")
    if totals.latency is not None:
        parts.append(fmt_seconds(totals.latency))
    if totals.models:
        parts.append("models: " + ", ".join(sorted(totals.models)))
    if totals.cost_usd is not None:
        parts.append(f"${totals.cost_usd:.6f}")
    if totals.errors:
        parts.append(f"{totals.errors} error(s)")
    if totals.orphans:
        parts.append(f"{totals.orphans} orphan(s)")
    return " · ".join(parts)


def _short(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _header(trace: Trace) -> str:
    who = [f"trace {trace.trace_id}"]
    if trace.distinct_id and trace.distinct_id != trace.trace_id:
        who.append(f"user {trace.distinct_id}")
    if trace.session_id:
        who.append(f"session {trace.session_id}")
    return " · ".join(who)


def render_text(trace: Trace) -> str:
    """A plain-text tree (no dependency needed)."""
    lines = [_header(trace), totals_line(trace.totals)]

    def visit(node: SpanNode, prefix: str, last: bool, top: bool) -> None:
        branch = "" if top else ("└── " if last else "├── ")
        lines.append(prefix + branch + "  ".join(node_label_parts(node)))
        child_prefix = prefix if top else prefix + ("    " if last else "│   ")
        for i, child in enumerate(node.children):
            visit(child, child_prefix, i == len(node.children) - 1, False)

    visit(trace.root, "", True, True)
    return "\n".join(lines)


def render_rich(trace: Trace) -> Any:
    """A ``rich.tree.Tree`` of the trace (needs the ``[notebooks]`` extra)."""
    tree_mod = require("rich.tree")
    text_mod = require("rich.text")
    Text, Tree = text_mod.Text, tree_mod.Tree

    def label(node: SpanNode) -> Any:
        parts = node_label_parts(node)
        text = Text(parts[0], style="bold red" if node.is_error else "bold")
        for i, part in enumerate(parts[1:]):
            style = _KIND_STYLE.get(node.kind, "dim") if i == 0 else ""
            if part.startswith("ERROR"):
                style = "red"
            elif part.startswith("(orphan"):
                style = "yellow"
            text.append("  " + part, style=style)
        return text

    title = Text(_header(trace), style="dim")
    title.append("\n" + totals_line(trace.totals), style="cyan")
    tree = Tree(title)

    def add(parent: Any, node: SpanNode) -> None:
        branch = parent.add(label(node))
        for child in node.children:
            add(branch, child)

    add(tree, trace.root)
    return tree


_KIND_STYLE = {"trace": "magenta", "span": "blue", "generation": "yellow", "embedding": "green"}


def _content_html(label: str, value: Any) -> str:
    if value is None:
        return ""
    text = (
        value
        if isinstance(value, str)
        else json.dumps(value, indent=2, ensure_ascii=False, default=str)
    )
    if len(text) > _HTML_CONTENT_LIMIT:
        text = text[:_HTML_CONTENT_LIMIT] + f"\n…[{len(text) - _HTML_CONTENT_LIMIT} more chars]"
    return (
        f'<details class="phc-io"><summary>{label}</summary>'
        f'<pre style="white-space:pre-wrap;max-height:24em;overflow:auto;margin:2px 0">'
        f"{html.escape(text)}</pre></details>"
    )


def _node_html(node: SpanNode) -> str:
    color = _KIND_COLORS.get(node.kind, "#6b7280")
    name_style = "font-weight:600" + (";color:#dc2626" if node.is_error else "")
    bits = [
        f'<span style="{name_style}">{html.escape(node.name)}</span>',
        f'<span style="color:{color};font-size:85%">{html.escape(node.kind)}</span>',
    ]
    if node.model:
        bits.append(f"<code>{html.escape(node.model)}</code>")
    tokens = fmt_tokens(node)
    if tokens:
        bits.append(f'<span class="phc-tokens">{html.escape(tokens)}</span>')
    if node.latency is not None:
        bits.append(f'<span class="phc-latency">{fmt_seconds(node.latency)}</span>')
    if node.cost is not None:
        bits.append(f"<span>${node.cost:.6f}</span>")
    if node.orphan:
        bits.append('<span style="color:#b45309">orphan: parent missing</span>')
    if node.is_error:
        bits.append(
            f'<span class="phc-error" style="color:#dc2626">'
            f"{html.escape(_short(node.error or 'error', 300))}</span>"
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


def render_html(trace: Trace) -> str:
    """A collapsible HTML tree (``<details>`` per span), for Jupyter."""
    return (
        f'<div class="phc-trace" style="font-family:sans-serif;font-size:90%">'
        f"<div><b>{html.escape(trace.name)}</b> "
        f'<span style="color:#6b7280">{html.escape(_header(trace))}</span></div>'
        f'<div class="phc-totals">{html.escape(totals_line(trace.totals))}</div>'
        f"{_node_html(trace.root)}</div>"
    )


def render_list_html(traces: Sequence[Trace]) -> str:
    """A summary table of traces, for Jupyter."""
    rows = []
    for i, trace in enumerate(traces):
        t = trace.totals
        rows.append(
            f"<tr><td>{i}</td><td>{html.escape(trace.name)}</td>"
            f"<td><code>{html.escape(trace.trace_id[:13])}</code></td><td>{t.spans}</td>"
            f"<td>{'' if t.input_tokens is None else t.input_tokens}</td>"
            f"<td>{'' if t.output_tokens is None else t.output_tokens}</td>"
            f"<td>{fmt_seconds(t.latency)}</td><td>{t.errors}</td>"
            f"<td>{html.escape(', '.join(sorted(t.models)))}</td></tr>"
        )
    head = (
        "<tr><th>#</th><th>name</th><th>trace id</th><th>spans</th><th>input tok</th>"
        "<th>output tok</th><th>latency</th><th>errors</th><th>models</th></tr>"
    )
    return f"<table>{head}{''.join(rows)}</table>"


def plot_waterfall(trace: Trace, ax: Any = None, *, title: str | None = None) -> Any:
    """Gantt chart of the trace's spans on ``ax`` (a new figure when ``None``)."""
    plt = require("matplotlib.pyplot")
    rows = [
        (depth, node)
        for depth, node in trace.walk()
        if node.start is not None and not node.synthetic
    ]
    if ax is None:
        _, ax = plt.subplots(figsize=(10, max(2.0, 0.35 * len(rows) + 1)))
    origin = trace.start or 0.0
    labels = []
    for y, (depth, node) in enumerate(rows):
        start = (node.start or origin) - origin
        width = max(node.latency or 0.0, 1e-4)
        ax.barh(
            y,
            width,
            left=start,
            color=_KIND_COLORS.get(node.kind, "#6b7280"),
            edgecolor="#dc2626" if node.is_error else "none",
            hatch="//" if node.is_error else None,
            linewidth=1.5,
        )
        model = f" ({node.model})" if node.model and node.model not in node.name else ""
        labels.append("  " * depth + node.name + model)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels(labels)
    ax.invert_yaxis()
    ax.set_xlabel("seconds since trace start")
    ax.set_title(title if title is not None else trace.name)
    kinds = [k for k in _KIND_COLORS if any(node.kind == k for _, node in rows)]
    handles = [plt.Rectangle((0, 0), 1, 1, color=_KIND_COLORS[k]) for k in kinds]
    ax.legend(handles, kinds, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")
    return ax
