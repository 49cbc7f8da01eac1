"""The open-run table: run key -> span in flight, with a trace index and a TTL sweep.

Every front door keeps one. Parent links are resolved through it (never through ambient
context), so threads, asyncio tasks and ``batch()`` cannot cross wires. The exporter
sweeps registered tables on its worker, closing runs that outlived the TTL as errors, and
drains them at shutdown: memory stays bounded even when a framework forgets an end
callback.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Hashable
from typing import Generic, TypeVar

from .spans import OpenSpan

__all__ = ["RunTable"]

K = TypeVar("K", bound=Hashable)


class RunTable(Generic[K]):
    """Thread-safe table of open runs.

    Args:
        max_runs: Hard bound on open runs; adding beyond it evicts the oldest run, which
            is returned to the caller to be closed as an error.
    """

    __slots__ = ("__weakref__", "_by_trace", "_lock", "_runs", "max_runs")

    def __init__(self, max_runs: int = 100_000) -> None:
        self._runs: dict[K, OpenSpan] = {}
        self._by_trace: dict[str, set[K]] = {}
        self._lock = threading.Lock()
        self.max_runs = max_runs

    def __len__(self) -> int:
        return len(self._runs)

    def add(self, key: K, span: OpenSpan) -> list[OpenSpan]:
        """Register ``span`` under ``key``.

        Returns:
            Runs evicted to respect ``max_runs`` (usually empty); the caller closes them.
        """
        evicted: list[OpenSpan] = []
        with self._lock:
            while len(self._runs) >= self.max_runs:
                old_key = next(iter(self._runs))
                evicted.append(self._pop_locked(old_key))  # type: ignore[arg-type]
            self._runs[key] = span
            keys = self._by_trace.get(span.trace_id)
            if keys is None:
                self._by_trace[span.trace_id] = {key}
            else:
                keys.add(key)
        return evicted

    def get(self, key: K) -> OpenSpan | None:
        """The open run under ``key``, if any."""
        return self._runs.get(key)

    def pop(self, key: K) -> OpenSpan | None:
        """Remove and return the run under ``key``, if any."""
        with self._lock:
            return self._pop_locked(key)

    def _pop_locked(self, key: K) -> OpenSpan | None:
        span = self._runs.pop(key, None)
        if span is not None:
            keys = self._by_trace.get(span.trace_id)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._by_trace[span.trace_id]
        return span

    def pop_trace(self, trace_id: str) -> list[OpenSpan]:
        """Remove and return every run still open in ``trace_id``."""
        with self._lock:
            keys = self._by_trace.pop(trace_id, None)
            if not keys:
                return []
            return [span for key in keys if (span := self._runs.pop(key, None)) is not None]

    def open_in_trace(self, trace_id: str) -> int:
        """How many runs of ``trace_id`` are still open."""
        keys = self._by_trace.get(trace_id)
        return len(keys) if keys else 0

    def expired(self, ttl: float, now: float | None = None) -> list[OpenSpan]:
        """Remove and return runs started more than ``ttl`` seconds before ``now``."""
        cutoff = (time.time() if now is None else now) - ttl
        with self._lock:
            stale = [key for key, span in self._runs.items() if span.start_time < cutoff]
            return [span for key in stale if (span := self._pop_locked(key)) is not None]

    def drain(self) -> list[OpenSpan]:
        """Remove and return every open run."""
        with self._lock:
            spans = list(self._runs.values())
            self._runs.clear()
            self._by_trace.clear()
            return spans
