"""The open runs of one LlamaIndex front door and how a trace ends.

Both doors share one lifecycle: a trace's root may end before its children (a tool still
running) or before the caller has read the stream it returned, so the root stays open,
marked ended, until the last child or stream of its trace is done. The folded model calls
(``chat()`` -> ``complete()``: one generation) are remembered here too, so the inner
call's usage can reach the outer one.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from ..spans import OpenSpan
from ..tracing import Recorder, RootCompletion, RunTable, WarnOnce
from .stream import record_stream_end, wrap_response_stream

__all__ = ["EVICTED", "ROOT_PREFIX", "DoorRuns", "root_key"]

_MAX_SKIPPED = 10_000
_MAX_ENDED = 10_000
EVICTED = "too many open runs (evicted)"
"""The error of a run closed because its table was full."""


ROOT_PREFIX = "root:"
"""What a trace root's run-table key is: this prefix, then the root's span id."""


def root_key(span_id: str) -> str:
    """Run-table key of the trace root with span id ``span_id``."""
    return ROOT_PREFIX + span_id


class DoorRuns:
    """Open runs of one front door: add, end, finish the root when its trace is done.

    Args:
        exporter: Where finished spans go.
        warn: The door's warn-once logger.
        on_root_finished: Called with a root finished after its own end (by its last
            child or stream), so the door can forget what it kept for it.
    """

    __slots__ = (
        "_ended",
        "_lock",
        "_on_root_finished",
        "_prune_at",
        "_roots",
        "_skipped",
        "exporter",
        "table",
        "warn",
    )

    def __init__(
        self,
        exporter: Recorder,
        warn: WarnOnce,
        on_root_finished: Callable[[OpenSpan], None] | None = None,
    ) -> None:
        self.exporter = exporter
        self.warn = warn
        self.table: RunTable[str] = RunTable()
        self._roots: RootCompletion[str] = RootCompletion(self.table, exporter)
        self._on_root_finished = on_root_finished
        self._skipped: OrderedDict[str, str] = OrderedDict()  # inner model call -> outer key
        # Keys of the roots whose own end came (end_root) and that may still wait for a
        # child: only those can finish when a child ends, so a child of any other root
        # (nearly every child: it ends before its root) skips the root lookup.
        self._ended: set[str] = set()
        self._prune_at = _MAX_ENDED
        self._lock = threading.Lock()
        exporter.register_runs(self.table)

    def __len__(self) -> int:
        return len(self.table)

    def get(self, key: str | None) -> OpenSpan | None:
        """The open run under ``key``."""
        return self.table.get(key)

    def pop(self, key: str) -> OpenSpan | None:
        """Remove and return the open run under ``key``."""
        return self.table.pop(key)

    def add(self, key: str, span: OpenSpan) -> None:
        """Open ``span`` under ``key`` (the oldest run is closed if the table is full)."""
        evicted = self.table.add(key, span)
        if evicted:
            self.exporter.close_runs(evicted, EVICTED)

    def submit(self, span: OpenSpan, end_time: float | None = None) -> None:
        """Export a span already taken from the table; finish its root if it was the last."""
        self.exporter.submit(span.finish(end_time))
        root_key = span.extra.get("root_key")
        if root_key is not None and root_key in self._ended:
            self._finished(self._roots.child_ended(root_key))

    def end_root(self, root: OpenSpan, key: str | None = None) -> bool:
        """The root's own end: export it now, or when its last child or stream is done.

        Args:
            root: The trace's root span.
            key: Its key in the table (``root_key(root.span_id)``) when the caller has it.

        Returns:
            True when the root was exported now.
        """
        key = key or root_key(root.span_id)
        ended = self._ended
        ended.add(key)  # before its end: a child ending meanwhile sees it
        if self._roots.end_root(key, root) is not None:
            ended.discard(key)
            return True
        if len(ended) > self._prune_at:  # roots closed by a sweep, an eviction or a fork
            for old in list(ended):
                if self.table.get(old) is None:
                    ended.discard(old)
            self._prune_at = max(_MAX_ENDED, 2 * len(ended))
        return False

    def wrap_stream(
        self,
        result: Any,
        root: OpenSpan,
        enter: Callable[[], Any],
        leave: Callable[[Any], None],
    ) -> bool:
        """Keep ``root`` open while the stream ``result`` returned is read.

        ``enter`` / ``leave`` put the reader back into the trace around every read, so
        the model call the stream makes lands in it.
        """

        def done(err: BaseException | None, complete: bool, text: str) -> None:
            try:
                record_stream_end(root, err, complete, text)
            except Exception:
                self.warn("stream end", "posthog_callbacks: recording a stream end failed")
            try:
                self._finished(self._roots.stream_closed(root_key(root.span_id), root))
            except Exception:
                self.warn("stream close", "posthog_callbacks: closing a stream's trace failed")

        if not wrap_response_stream(result, enter, leave, done):
            return False
        self._roots.stream_opened(root)
        return True

    def _finished(self, root: OpenSpan | None) -> None:
        if root is None:
            return
        self._ended.discard(root_key(root.span_id))
        if self._on_root_finished is not None:
            self._on_root_finished(root)

    def skip(self, inner: str, outer_key: str) -> None:
        """Remember that the model call ``inner`` is part of the run under ``outer_key``."""
        with self._lock:
            self._skipped[inner] = outer_key
            if len(self._skipped) > _MAX_SKIPPED:
                self._skipped.popitem(last=False)

    def take_skipped(self, inner: str) -> OpenSpan | None:
        """The open outer run of a folded model call that just ended, if any."""
        with self._lock:
            outer_key = self._skipped.pop(inner, None)
        return self.table.get(outer_key)

    def close(self, reason: str) -> None:
        """Close every open run as unfinished with ``reason``."""
        self.exporter.close_runs(self.table.drain(), reason)
        self._ended.clear()
