"""The waterfall chart of a trace: one bar per span, start to end, nested like the tree."""

from __future__ import annotations

import logging
from typing import Any

from .model import SpanNode
from .render import KIND_COLORS, TraceView, fmt_seconds, require
from .text import one_line

__all__ = ["plot_waterfall"]

log = logging.getLogger(__name__)

_ERROR_COLOR = "#dc2626"
_ORPHAN_COLOR = "#b45309"
_MS_AXIS_BELOW = 2.0  # seconds: shorter traces get a millisecond axis
_LABEL_CHARS = 48


def _gutters(trace: TraceView) -> list[tuple[str, SpanNode]]:
    """Each drawable span with its tree gutter (``├─ ``, ``│  └─ `` ...), depth first."""
    rows: list[tuple[str, SpanNode]] = []

    def visit(node: SpanNode, prefix: str, last: bool, top: bool) -> None:
        gutter = "" if top else prefix + ("└─ " if last else "├─ ")
        if node.start is not None and not node.synthetic:
            rows.append((gutter, node))
        child_prefix = "" if top else prefix + ("   " if last else "│  ")
        for i, child in enumerate(node.children):
            visit(child, child_prefix, i == len(node.children) - 1, False)

    visit(trace.root, "", True, True)
    return rows


def _bar_text(node: SpanNode) -> str:
    parts = [fmt_seconds(node.latency)] if node.latency is not None else []
    tin, tout = node.tokens("input_tokens"), node.tokens("output_tokens")
    if node.kind in ("generation", "embedding") and (tin is not None or tout is not None):
        parts.append(f"{tin or 0}→{tout or 0} tok" if tout is not None else f"{tin} tok")
    return " · ".join(parts)


def plot_waterfall(trace: TraceView, ax: Any = None, *, title: str | None = None) -> Any:
    """Gantt chart of the trace's spans on ``ax`` (a new figure when ``None``).

    Labels carry the tree gutter and are left-aligned, so nesting is visible; bars are
    coloured by kind and annotated with the duration (and tokens for model calls); errors
    are outlined in red and hatched, orphans outlined in orange, both in the legend. The
    axis is in milliseconds when the trace is shorter than two seconds.

    Returns:
        The matplotlib ``Axes``.
    """
    plt = require("matplotlib.pyplot")
    rows = _gutters(trace)
    fig = None
    if ax is None:
        fig, ax = plt.subplots(figsize=(11, max(2.0, 0.38 * len(rows) + 1.2)))
    origin = trace.start or 0.0
    span_end = max(
        ((node.start or origin) - origin + (node.latency or 0.0) for _, node in rows), default=0.0
    )
    millis = span_end < _MS_AXIS_BELOW
    scale = 1000.0 if millis else 1.0
    labels = []
    for y, (gutter, node) in enumerate(rows):
        start = ((node.start or origin) - origin) * scale
        width = max((node.latency or 0.0) * scale, span_end * scale * 0.002, 1e-6)
        edge = _ERROR_COLOR if node.is_error else _ORPHAN_COLOR if node.orphan else "none"
        ax.barh(
            y,
            width,
            left=start,
            height=0.6,
            color=KIND_COLORS.get(node.kind, "#6b7280"),
            edgecolor=edge,
            hatch="//" if node.is_error else None,
            linestyle="--" if node.orphan and not node.is_error else "-",
            linewidth=1.5,
        )
        text = _bar_text(node)
        if text:
            ax.text(
                start + width,
                y,
                "  " + text,
                va="center",
                ha="left",
                fontsize="x-small",
                color="#374151",
                clip_on=False,
            )
        name = one_line(node.name, _LABEL_CHARS)
        model = node.model and one_line(node.model, 40)
        labels.append(gutter + name + (f" ({model})" if model and model not in name else ""))
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels(labels, family="monospace", fontsize="small")
    longest = max((len(label) for label in labels), default=0)
    # Left-aligned labels: push them left by the widest one (monospace: ~0.6 em a char).
    ax.tick_params(axis="y", length=0, pad=4 + 0.6 * 9 * longest)
    for tick, (_, node) in zip(ax.get_yticklabels(), rows, strict=True):
        tick.set_horizontalalignment("left")
        if node.is_error:
            tick.set_color(_ERROR_COLOR)
    ax.set_ylim(len(rows) - 0.5, -0.5)
    ax.set_xlim(0, span_end * scale * 1.25 or 1.0)
    ax.set_xlabel("milliseconds since trace start" if millis else "seconds since trace start")
    ax.set_title(one_line(title if title is not None else trace.name, 80), loc="left")
    ax.grid(axis="x", color="#e5e7eb", linewidth=0.8)
    ax.set_axisbelow(True)
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)

    patches = require("matplotlib.patches")
    handles, names = [], []
    for kind, color in KIND_COLORS.items():
        if any(node.kind == kind for _, node in rows):
            handles.append(patches.Patch(facecolor=color))
            names.append(kind)
    if any(node.is_error for _, node in rows):
        handles.append(patches.Patch(facecolor="white", edgecolor=_ERROR_COLOR, hatch="//"))
        names.append("error")
    if any(node.orphan for _, node in rows):
        handles.append(patches.Patch(facecolor="white", edgecolor=_ORPHAN_COLOR, linestyle="--"))
        names.append("orphan (parent missing)")
    ax.legend(handles, names, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")
    if fig is not None:
        fig.tight_layout()
    return ax
