"""Trace assembly shared by every front door (LangChain, both LlamaIndex doors, manual API).

A front door turns framework callbacks into :class:`~posthog_callbacks.spans.OpenSpan`
records and hands finished ones to a :class:`Recorder` (the exporter). Everything it needs
for that, apart from reading its framework's payloads, lives here:

* :class:`Recorder` - the only exporter surface a front door may call (``submit``,
  ``close_runs``, ``is_sampled``, ``register_runs``). Front doors type their exporter as a
  ``Recorder`` and never import ``exporter.py``; ``exporter.as_exporter`` builds one from
  whatever the user passed.
* :class:`RunTable` - the open-run table: run key -> span in flight, indexed by trace,
  bounded by count and, once registered, by the exporter's byte budget (add-with-eviction:
  ``add`` returns the runs to close). Parent links are resolved through it, never through
  ambient context, so threads, asyncio tasks and ``batch()`` cannot cross wires.
* :func:`trace_owner` - who a trace belongs to (distinct id and session), one rule for all
  doors; :func:`child_span` - a child ``OpenSpan`` inheriting its parent's identity.
* :class:`RootCompletion` - "finish the root when it has ended and its last open child
  (or stream) has ended", for doors whose root can end before its children.
* :class:`WarnOnce` - log one warning per kind of failure, count the rest.
* :class:`RunRegistry` - the exporter's side: the tables it sweeps (TTL) and drains at
  shutdown, and their one byte budget (``max_open_run_bytes``; why one per exporter and
  how it is kept without a new lock: see the class). A table whose owner is
  garbage-collected while runs are open hands those runs to the registry, so they are
  still closed as unfinished and counted.

A front door typically does::

    class Handler:
        def __init__(self, exporter: Recorder) -> None:
            self._exporter = exporter
            self._runs: RunTable[UUID] = RunTable()
            exporter.register_runs(self._runs)       # TTL sweep, shutdown, outlives us
            self._warn = WarnOnce(log)

        def on_start(self, run_id, parent_run_id, name, metadata):
            parent = self._runs.get(parent_run_id)
            if parent is not None:
                span = child_span(parent, str(run_id), SpanKind.SPAN, name)
            else:
                trace_id = str(run_id)
                if not self._exporter.is_sampled(trace_id):
                    return
                owner = trace_owner(metadata, distinct_id=self.distinct_id)
                span = OpenSpan(trace_id, trace_id, None, SpanKind.TRACE, name,
                                distinct_id=owner.distinct_id, session_id=owner.session_id)
            evicted = self._runs.add(run_id, span)
            if evicted:
                self._exporter.close_runs(evicted, "evicted: too many runs open at once")

        def on_end(self, run_id, output):
            span = self._runs.pop(run_id)
            if span is not None:
                span.output = output
                self._exporter.submit(span.finish())
"""

from __future__ import annotations

import collections
import itertools
import logging
import os
import threading
import time
import weakref
from collections.abc import Hashable, Iterable, Mapping
from typing import Any, Generic, NamedTuple, Protocol, TypeVar, runtime_checkable

from .locks import YieldingLock
from .sizing import ITEM_OVERHEAD_BYTES, value_bytes
from .spans import FinishedSpan, OpenSpan, SpanKind

__all__ = [
    "DEFAULT_MAX_OPEN_RUN_BYTES",
    "EVICTED_OVER_BUDGET",
    "OWNER_KEYS",
    "Recorder",
    "RootCompletion",
    "RunRegistry",
    "RunTable",
    "TraceOwner",
    "WarnOnce",
    "child_span",
    "open_span_bytes",
    "safe_text",
    "trace_owner",
]

log = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)

DEFAULT_MAX_OPEN_RUN_BYTES = 256 * 1024 * 1024
"""The default byte budget of one exporter's open runs (``max_open_run_bytes``)."""
EVICTED_OVER_BUDGET = "evicted: open runs over the memory budget"
"""The error of a run closed because the open runs held more than their byte budget."""
_NO_KEY = object()
_NOTHING = (0, 0)
_OPENED = itertools.count()  # the order runs were opened in, across tables (next() is atomic)


@runtime_checkable
class Recorder(Protocol):
    """What a front door calls on the exporter (``PosthogExporter`` implements it).

    Every method is safe to call from any thread and never raises.
    """

    def submit(self, span: FinishedSpan, size: int | None = None) -> None:
        """Queue a finished span for export (sampling is applied here too).

        ``size`` is ``sizing.estimate_bytes(span)`` when the caller already knows it (a
        front door that kept the estimate it made for the open-run budget), so the queue
        need not walk the span again; ``None``: the recorder measures it if it needs it.
        A recorder may ignore it; a door calls ``submit(span)`` on one whose ``submit``
        takes no ``size``.
        """

    def close_runs(self, spans: Iterable[OpenSpan], reason: str) -> None:
        """Finish runs that never ended normally as errors with ``reason``, count them
        (``closed_orphans``) and queue them."""

    def is_sampled(self, trace_id: str) -> bool:
        """Whether trace ``trace_id`` is kept; the same answer every time for one id."""

    def register_runs(self, table: RunTable[Any]) -> None:
        """Let the exporter sweep ``table`` (TTL) and drain it at shutdown, also after the
        table's owner is gone."""


# -- warn once --------------------------------------------------------------------------


class WarnOnce:
    """Logs one warning per key; repeats go to debug. Thread-safe, never raises.

    Lock-free (an atomic ``dict.setdefault`` decides who is first), so a fork can never
    copy it in a locked state.

    Args:
        logger: Where warnings go (a ``posthog_callbacks.*`` logger).

    Attributes:
        count: How many times :meth:`__call__` was called (first and repeated failures;
            approximate when threads fail at the same instant).
    """

    __slots__ = ("_logger", "_seen", "count")

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger
        self._seen: dict[str, object] = {}
        self.count = 0

    def __call__(self, key: str, message: str, *args: Any, exc_info: Any = False) -> bool:
        """Warn with ``message % args`` the first time ``key`` is seen.

        Returns:
            True when this call logged the warning (the first one for ``key``).
        """
        self.count += 1
        token = object()
        first = self._seen.setdefault(key, token) is token
        try:
            if first:
                self._logger.warning(message, *args, exc_info=exc_info, stacklevel=2)
            elif exc_info:
                self._logger.debug(message, *args, exc_info=exc_info, stacklevel=2)
        except Exception:  # pragma: no cover - a broken log handler is not our failure
            pass
        return first


# -- identity ---------------------------------------------------------------------------


def safe_text(value: Any) -> str | None:
    """``str(value)`` for an id or label, ``None`` for ``None``, ``""`` or a failing ``__str__``.

    Plain ``str`` values (the usual case) are returned as they are; nothing else's
    ``__str__`` is trusted to succeed.
    """
    if value is None:
        return None
    if type(value) is str:
        return value or None
    try:
        text = str(value)
    except Exception:
        return None
    return text if type(text) is str and text else None


class TraceOwner(NamedTuple):
    """Who a trace belongs to.

    Attributes:
        distinct_id: PostHog distinct id, ``None`` when unknown (the exporter then uses
            its ``default_distinct_id``, else sends personless events).
        session_id: ``$ai_session_id``, ``None`` when unknown.
    """

    distinct_id: str | None
    session_id: str | None


_USER_KEYS = ("user_id", "userId")
_SESSION_KEYS = ("session_id", "sessionId", "thread_id")
OWNER_KEYS = frozenset(_USER_KEYS + _SESSION_KEYS)
"""Run metadata keys :func:`trace_owner` reads (a door may skip the call when none is set)."""


def _first(metadata: Any, keys: tuple[str, ...]) -> str | None:
    if not metadata or not isinstance(metadata, Mapping):
        return None
    for key in keys:
        try:
            text = safe_text(metadata.get(key))
        except Exception:
            return None
        if text is not None:
            return text
    return None


def trace_owner(
    metadata: Mapping[str, Any] | None,
    *,
    distinct_id: Any = None,
    session_id: Any = None,
) -> TraceOwner:
    """The owner of a trace (or of one run within it), one rule for every front door.

    Distinct id: metadata ``user_id`` / ``userId`` > ``distinct_id`` (the handler's option,
    or the parent run's owner) > the exporter's ``default_distinct_id`` > personless (the
    last two applied by the exporter when this returns ``None``).
    Session: metadata ``session_id`` / ``sessionId`` > LangGraph ``thread_id`` >
    ``session_id`` (the handler's option, or the parent's session).

    Never raises: a metadata value or option that cannot be turned into text is skipped.
    """
    return TraceOwner(
        _first(metadata, _USER_KEYS) or safe_text(distinct_id),
        _first(metadata, _SESSION_KEYS) or safe_text(session_id),
    )


def child_span(
    parent: OpenSpan,
    span_id: str,
    kind: SpanKind,
    name: str,
    *,
    start_time: float | None = None,
) -> OpenSpan:
    """A new open span under ``parent``, in its trace, inheriting who and how it is exported.

    Inherited: trace id, distinct id, session, properties, groups, privacy mode and
    framework. Not inherited: tags and metadata (they describe the run they are set on).
    """
    # Fields assigned one by one: the dataclass matches keyword arguments slowly (1.3 us
    # for these, against 0.7 us).
    span = OpenSpan(parent.trace_id, span_id, parent.span_id, kind, name)
    span.framework = parent.framework
    span.distinct_id = parent.distinct_id
    span.session_id = parent.session_id
    span.properties = parent.properties
    span.groups = parent.groups
    span.privacy_mode = parent.privacy_mode
    if start_time is not None:
        span.start_time = start_time
    return span


# -- the open-run table -----------------------------------------------------------------


def open_span_bytes(span: OpenSpan, input_bytes: int = -1) -> int:
    """Estimated bytes an open run holds: its input, output, metadata, model parameters
    and tools (see :mod:`posthog_callbacks.sizing`) plus a fixed overhead.

    Properties and groups are left out: they are shared by every span of a trace (and
    with the exporter's configuration), so counting them per span would count them again
    and again.

    Args:
        span: The run.
        input_bytes: ``sizing.value_bytes(span.input)`` when the caller measured the input
            while copying it; -1: measured here.
    """
    total = ITEM_OVERHEAD_BYTES
    if input_bytes >= 0:
        total += input_bytes
    elif span.input is not None:
        total += value_bytes(span.input)
    for value in (span.output, span.metadata, span.model_parameters, span.tools):
        if value is not None:
            total += value_bytes(value)
    return total


class RunTable(Generic[K]):
    """Thread-safe table of open runs, indexed by trace.

    Once registered with an exporter (:meth:`RunRegistry.register`) the table also counts
    an estimate of the bytes its runs hold, against the exporter's one budget for all its
    tables (``max_open_run_bytes``): see :class:`RunRegistry`.

    Args:
        max_runs: Hard bound on open runs; adding beyond it evicts the oldest run, which
            is returned to the caller to be closed as an error.
        index_traces: Keep the index by trace that makes :meth:`pop_trace` and
            :meth:`open_in_trace` cost one lookup. A front door that never asks for a
            trace's runs (the manual API tracks its handles itself) turns it off and saves
            a set per trace; both methods then scan the table instead.
    """

    __slots__ = (
        "__weakref__",
        "_budget",
        "_by_trace",
        "_bytes",
        "_lock",
        "_runs",
        "_sizes",
        "_unsettled",
        "max_runs",
    )

    def __init__(self, max_runs: int = 100_000, *, index_traces: bool = True) -> None:
        # ``_runs`` is never rebound: RunRegistry keeps a reference to this very dict so the
        # runs outlive the table (see RunRegistry.register).
        self._runs: dict[K, OpenSpan] = {}
        self._by_trace: dict[str, set[K]] | None = {} if index_traces else None
        self._lock = YieldingLock()  # taken by every thread recording: see locks.py
        self.max_runs = max_runs
        # The byte account (all under ``_lock``): estimate per open run and their sum.
        self._budget: RunRegistry | None = None
        self._sizes: dict[K, tuple[int, int]] = {}  # key -> (bytes, order opened)
        self._bytes = 0
        # Runs opened without an input: measured again at the next add, as front doors
        # (LangChain) set the input right after opening the run. A deque: append and
        # popleft need no lock.
        self._unsettled: collections.deque[K] = collections.deque()

    def __len__(self) -> int:
        return len(self._runs)

    @property
    def held_bytes(self) -> int:
        """Estimated bytes the open runs hold (0 until the table is registered)."""
        return self._bytes

    def add(self, key: K, span: OpenSpan, size: int | None = None) -> list[OpenSpan]:
        """Register ``span`` under ``key``.

        Args:
            key: The run's key in this table.
            span: The run.
            size: ``open_span_bytes(span)`` when the caller already measured it (the
                manual API reuses it for the queue's estimate); measured here otherwise.

        Returns:
            Runs evicted to respect ``max_runs`` or the exporter's byte budget (usually
            empty); the caller closes them. A run evicted for bytes already carries its
            error (``"evicted: open runs over the memory budget"``).
        """
        budget = self._budget
        settled: list[tuple[K, OpenSpan, int]] | None = None
        if budget is not None:
            # Measured outside the lock: the walk is bounded but not free.
            if size is None:
                size = open_span_bytes(span)
            unsettled = self._unsettled
            if unsettled:
                settled = []
                for _ in range(len(unsettled)):
                    try:
                        old_key = unsettled.popleft()
                    except IndexError:  # pragma: no cover - another thread took it
                        break
                    old = self._runs.get(old_key)
                    if old is not None:
                        settled.append((old_key, old, open_span_bytes(old)))
        evicted: list[OpenSpan] = []
        runs = self._runs
        lock = self._lock
        lock.acquire()  # not ``with``: two calls fewer on every run's start
        try:
            if settled:
                for old_key, old, old_size in settled:
                    held = self._sizes.get(old_key)
                    if held is not None and runs.get(old_key) is old:
                        self._bytes += old_size - held[0]
                        self._sizes[old_key] = (old_size, held[1])
            while len(runs) >= self.max_runs:
                old = self._pop_locked(next(iter(runs)))
                if old is not None:
                    evicted.append(old)
            runs[key] = span
            if size is not None and budget is not None:
                sizes = self._sizes
                self._bytes += size - sizes.get(key, _NOTHING)[0]
                sizes[key] = (size, next(_OPENED))
            by_trace = self._by_trace
            if by_trace is not None:
                keys = by_trace.get(span.trace_id)
                if keys is None:
                    by_trace[span.trace_id] = {key}
                else:
                    keys.add(key)
        finally:
            lock.release()
        if budget is not None:
            if span.input is None:
                self._unsettled.append(key)
            # A table alone in its budget (an exporter used through the manual API only)
            # is this one: no sum over the budget's tables.
            total = self._bytes if len(budget._members) == 1 else budget.held_bytes()
            if budget.max_bytes < total:
                evicted.extend(budget.evict_over_budget(self, key))
        return evicted

    def get(self, key: K | None) -> OpenSpan | None:
        """The open run under ``key``, if any (``None`` for a ``None`` key)."""
        return None if key is None else self._runs.get(key)

    def pop(self, key: K) -> OpenSpan | None:
        """Remove and return the run under ``key``, if any."""
        lock = self._lock
        lock.acquire()  # not ``with``: two calls fewer on every run's end
        try:
            return self._pop_locked(key)
        finally:
            lock.release()

    def _pop_locked(self, key: K) -> OpenSpan | None:
        span = self._runs.pop(key, None)
        if span is not None:
            self._bytes -= self._sizes.pop(key, _NOTHING)[0]
            by_trace = self._by_trace
            if by_trace is not None:
                keys = by_trace.get(span.trace_id)
                if keys is not None:
                    keys.discard(key)
                    if not keys:
                        del by_trace[span.trace_id]
        return span

    def pop_trace(self, trace_id: str) -> list[OpenSpan]:
        """Remove and return every run still open in ``trace_id``."""
        with self._lock:
            keys: set[K] | None
            if self._by_trace is None:
                keys = {key for key, span in self._runs.items() if span.trace_id == trace_id}
            else:
                keys = self._by_trace.pop(trace_id, None)
            if not keys:
                return []
            spans = []
            for key in keys:
                span = self._runs.pop(key, None)
                if span is not None:
                    self._bytes -= self._sizes.pop(key, _NOTHING)[0]
                    spans.append(span)
            return spans

    def open_in_trace(self, trace_id: str) -> int:
        """How many runs of ``trace_id`` are still open."""
        if self._by_trace is None:
            with self._lock:
                return sum(1 for span in self._runs.values() if span.trace_id == trace_id)
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
            if self._by_trace is not None:
                self._by_trace.clear()
            self._sizes.clear()
            self._bytes = 0
            return spans

    def reset_after_fork(self) -> None:
        """Forget every run without taking the lock (a fork may have copied it held).

        Only for the child of a fork, before any other thread exists: the parent's runs are
        ended by the parent's threads, never by the child.
        """
        self._lock = YieldingLock()
        self._runs.clear()
        if self._by_trace is not None:
            self._by_trace.clear()
        self._sizes.clear()
        self._bytes = 0
        self._unsettled.clear()

    def _oldest(self, keep: Any) -> tuple[int, K, OpenSpan] | None:
        """The first-opened run other than the one under ``keep``, with its opening order."""
        with self._lock:
            for key, span in self._runs.items():
                if key != keep:  # the first one, or the second when ``keep`` is first
                    return self._sizes.get(key, _NOTHING)[1], key, span
            return None

    def _evict(self, key: K, span: OpenSpan) -> bool:
        """Remove ``span`` if it is still open under ``key``."""
        with self._lock:
            if self._runs.get(key) is not span:
                return False
            self._pop_locked(key)
            return True


# -- root completion --------------------------------------------------------------------


class RootCompletion(Generic[K]):
    """Finishes a trace's root only when it has ended and nothing else of its trace is open.

    For front doors whose root can end before its children (a LlamaIndex query returning a
    stream, a tool still running): the root stays in the run table, marked ended, until the
    last open child ends (:meth:`child_ended`) or the last stream is read
    (:meth:`stream_closed`). State lives on the root span (``extra["ended"]``,
    ``extra["streams"]``), so it goes away with the span however that ends (TTL,
    eviction, shutdown).

    Args:
        runs: The front door's run table holding the root and its children.
        recorder: Where the finished root goes.
    """

    __slots__ = ("_lock", "_recorder", "_runs")

    def __init__(self, runs: RunTable[K], recorder: Recorder) -> None:
        self._runs = runs
        self._recorder = recorder
        self._lock = threading.Lock()

    def end_root(self, key: K, root: OpenSpan, when: float | None = None) -> OpenSpan | None:
        """The root's own end: finish it now, or as soon as its trace has nothing else open.

        Returns:
            The root when it was finished and submitted by this call, else ``None``.
        """
        root.extra["ended"] = time.time() if when is None else when
        return self._maybe_finish(key, root)

    def child_ended(self, root_key: K | None) -> OpenSpan | None:
        """Call after a child of the root under ``root_key`` was popped from the table."""
        root = self._runs.get(root_key)
        if root is None or root_key is None:
            return None
        return self._maybe_finish(root_key, root)

    def stream_opened(self, root: OpenSpan) -> None:
        """A stream the root's caller will read keeps the root open until it is closed."""
        with self._lock:
            root.extra["streams"] = root.extra.get("streams", 0) + 1

    def stream_closed(self, key: K, root: OpenSpan) -> OpenSpan | None:
        """A stream opened with :meth:`stream_opened` was read to its end (or abandoned)."""
        with self._lock:
            root.extra["streams"] = max(0, root.extra.get("streams", 1) - 1)
        return self._maybe_finish(key, root)

    def _maybe_finish(self, key: K, root: OpenSpan) -> OpenSpan | None:
        if "ended" not in root.extra or root.extra.get("streams"):
            return None
        if self._runs.open_in_trace(root.trace_id) > 1:
            return None
        if self._runs.pop(key) is not root:  # another thread finished it first
            return None
        self._recorder.submit(root.finish())
        return root


# -- the exporter's side ----------------------------------------------------------------


def _hand_over(adopted: collections.deque[dict[Any, OpenSpan]], runs: dict[Any, OpenSpan]) -> None:
    if runs:  # most tables die empty: keep nothing for them
        adopted.append(runs)


class RunRegistry:
    """The run tables one exporter sweeps and drains, including those whose owner is gone.

    Tables are held weakly, so a per-call handler and its table are freed as usual. When a
    table is collected while runs are still open (a cancelled ``ainvoke``, an abandoned
    stream, a handler made per call), its runs move here and are closed as unfinished by
    the next TTL sweep or at shutdown, like every other open run.

    The registry is also the exporter's one byte budget for open runs (``max_bytes``),
    shared by all its tables: a budget per table would multiply with the tables (one per
    front door and per LlamaIndex handler), and one shared counter would need a lock of its
    own on every run start and end. Instead each table keeps its own sum, under the lock it
    already takes, and :meth:`RunTable.add` compares the sum over the tables (a handful of
    integer reads) with the budget. Beyond it the oldest open runs, of whichever table,
    are evicted and returned to the adding front door, which closes them as errors
    (:data:`EVICTED_OVER_BUDGET`) like count evictions. Only the run being added is never
    evicted, so one run larger than the whole budget is still recorded. Runs adopted from
    a collected table are outside the budget until the next sweep closes them.

    Args:
        max_bytes: Byte budget of the open runs of every registered table.
    """

    __slots__ = (
        "__weakref__",
        "_adopted",
        "_lock",
        "_members",
        "_orphans",
        "_seq",
        "_tables",
        "_warn",
        "max_bytes",
    )

    def __init__(self, max_bytes: int = DEFAULT_MAX_OPEN_RUN_BYTES) -> None:
        self._tables: weakref.WeakSet[RunTable[Any]] = weakref.WeakSet()
        # Filled from weakref finalizers, which may run inside any allocation of any thread
        # (even one holding a RunTable lock): a deque append takes no lock of ours.
        self._adopted: collections.deque[dict[Any, OpenSpan]] = collections.deque()
        self._orphans: RunTable[int] = RunTable(max_runs=1 << 62)
        self._seq = itertools.count()
        self.max_bytes = max_bytes
        # The budgeted tables, read without a lock on every add (an immutable tuple,
        # replaced whole under ``_lock`` when a table registers).
        self._members: tuple[weakref.ref[RunTable[Any]], ...] = ()
        self._lock = threading.Lock()
        self._warn = WarnOnce(log)
        _registries.add(self)

    def register(self, table: RunTable[Any]) -> None:
        """Sweep and drain ``table`` from now on, within this budget (idempotent).

        A table registered with two exporters counts against the first one's budget.
        """
        if table in self._tables:
            return
        self._tables.add(table)
        finalizer = weakref.finalize(table, _hand_over, self._adopted, table._runs)
        finalizer.atexit = False
        if table._budget is None:
            table._budget = self
            with self._lock:
                live = [ref for ref in self._members if ref() is not None]
                self._members = (*live, weakref.ref(table))

    def held_bytes(self) -> int:
        """Estimated bytes held by the open runs of every budgeted table."""
        total = 0
        for ref in self._members:
            table = ref()
            if table is not None:
                total += table._bytes
        return total

    def evict_over_budget(self, adding: RunTable[Any], keep: Any) -> list[OpenSpan]:
        """Evict the oldest open runs until the tables hold at most ``max_bytes``.

        Never evicts the run under ``keep`` in ``adding`` (the one being added). Takes one
        table's lock at a time. Returns the evicted runs, their error set.
        """
        evicted: list[OpenSpan] = []
        while self.held_bytes() > self.max_bytes:
            victim: tuple[int, Any, OpenSpan, RunTable[Any]] | None = None
            for ref in self._members:
                table = ref()
                if table is None:
                    continue
                head = table._oldest(keep if table is adding else _NO_KEY)
                if head is not None and (victim is None or head[0] < victim[0]):
                    victim = (*head, table)
            if victim is None:
                break
            _, key, span, table = victim
            if table._evict(key, span):
                if span.error is None:
                    span.error = EVICTED_OVER_BUDGET
                evicted.append(span)
        if evicted:
            self._warn(
                "over-budget",
                "posthog_callbacks: open runs hold more than max_open_run_bytes=%d (estimated): "
                "the oldest are closed as errors (%r); runs that never end, or a very large "
                "input? (counted as closed_orphans in exporter.stats())",
                self.max_bytes,
                EVICTED_OVER_BUDGET,
            )
        return evicted

    def _adopt(self) -> None:
        while self._adopted:
            try:
                runs = self._adopted.popleft()
            except IndexError:  # pragma: no cover - another thread took it
                return
            while runs:  # popitem is atomic: a table adopted twice yields each run once
                try:
                    _, span = runs.popitem()
                except KeyError:  # pragma: no cover - another registry took the last one
                    break
                self._orphans.add(next(self._seq), span)

    def open_runs(self) -> int:
        """Runs still open in every registered table, their owners alive or not."""
        self._adopt()
        return sum(len(t) for t in list(self._tables)) + len(self._orphans)

    def expired(self, ttl: float) -> list[OpenSpan]:
        """Remove and return every run older than ``ttl`` seconds."""
        self._adopt()
        spans = self._orphans.expired(ttl)
        for table in list(self._tables):
            spans.extend(table.expired(ttl))
        return spans

    def drain(self) -> list[OpenSpan]:
        """Remove and return every open run (shutdown)."""
        self._adopt()
        spans = self._orphans.drain()
        for table in list(self._tables):
            spans.extend(table.drain())
        return spans

    def reset_after_fork(self) -> None:
        """Forget every run in the child of a fork (the parent ends its own runs).

        Runs for every registry right after ``os.fork()`` in the child, before any other
        thread exists, so no lock a parent thread held at fork time is ever waited for.
        """
        self._adopted.clear()
        self._lock = threading.Lock()
        self._orphans.reset_after_fork()
        for table in list(self._tables):
            table.reset_after_fork()


_registries: weakref.WeakSet[RunRegistry] = weakref.WeakSet()


def _reset_registries_after_fork() -> None:
    for registry in list(_registries):
        try:
            registry.reset_after_fork()
        except Exception:  # pragma: no cover - never fail a fork
            pass


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_registries_after_fork)
