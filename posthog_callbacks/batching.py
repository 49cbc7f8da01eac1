"""The export pipeline behind ``PosthogExporter``: queue, worker, senders, counters.

The caller's thread only appends to a bounded deque. The worker thread sweeps run tables
for runs that outlived their TTL, translates spans into events and cuts size-bounded
batches; sender threads hand them to the sink (which retries), so translation of the next
batch overlaps the network. ``flush()`` waits on a processed-count, ``shutdown()`` on a
deadline every stage checks.
"""

from __future__ import annotations

import atexit
import collections
import logging
import os
import threading
import time
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .events import EventConfig, _span_to_event_sized
from .sinks import Sink
from .spans import FinishedSpan, OpenSpan
from .tracing import RunRegistry, WarnOnce

log = logging.getLogger(__name__)

_MAX_REQUEST_BYTES = 4 * 1024 * 1024  # PostHog caps bodies at 20 MiB; the SDK aims for 5
Item = FinishedSpan | dict[str, Any]


@dataclass(frozen=True)
class ExporterStats:
    """Counters since the exporter started. Every event is in exactly one bucket.

    Attributes:
        recorded: Spans and events accepted onto the queue.
        sent: Events the sink accepted.
        dropped_queue_full: Rejected because the queue was full (the sink is too slow or down).
        dropped_sink_error: Lost because the sink failed after its retries.
        dropped_invalid: Could not be translated (a bug: please report it).
        dropped_shutdown: Recorded after shutdown, or still queued when its deadline passed.
        not_sampled: Skipped by ``sample_rate``.
        queued: Waiting in the queue now.
        open_runs: Runs still open in registered run tables.
        closed_orphans: Runs closed as errors because they never ended (TTL, trace end, shutdown).
        batches: Batches handed to the sink.
        in_flight: Taken off the queue but not yet delivered or dropped (being translated or
            on the wire).
        dropped_by_hook: Discarded by a wrapped ``posthog.Posthog`` client's ``before_send``
            hook (not counted in ``sent``).
    """

    recorded: int
    sent: int
    dropped_queue_full: int
    dropped_sink_error: int
    dropped_invalid: int
    dropped_shutdown: int
    not_sampled: int
    queued: int
    open_runs: int
    closed_orphans: int
    batches: int
    in_flight: int = 0
    dropped_by_hook: int = 0

    @property
    def dropped(self) -> int:
        """All events lost, whatever the reason (a ``before_send`` drop is the user's choice
        and not counted here)."""
        return (
            self.dropped_queue_full
            + self.dropped_sink_error
            + self.dropped_invalid
            + self.dropped_shutdown
        )


class Pipeline:
    """Queue and threads of one exporter (a mixin: ``PosthogExporter`` owns the state)."""

    flush_at: int
    flush_interval: float
    max_queue_size: int
    max_batch_size: int
    open_run_ttl: float
    sink: Sink | None
    _config: EventConfig
    _warn: WarnOnce
    _queue: collections.deque[Item]
    _lock: threading.Lock
    _done: threading.Condition
    _wake: threading.Event
    _enqueued: int
    _processed: int
    _counts: collections.Counter[str]
    _registry: RunRegistry
    _worker: threading.Thread | None
    _outbox: collections.deque[list[dict[str, Any]]]
    _out_cv: threading.Condition
    _sending: int
    _senders: list[threading.Thread]
    _max_senders: int
    _pid: int
    _shutdown: bool
    _deadline: float | None
    _next_sweep: float

    def close_runs(self, spans: Iterable[OpenSpan], reason: str) -> None:
        raise NotImplementedError

    def shutdown(self, timeout: float | None = None) -> None:
        raise NotImplementedError

    def _warn_once(self, key: str, message: str, *args: Any, exc_info: bool = False) -> None:
        # One warning per kind of problem: a broken sink must not flood the user's logs.
        self._warn(key, message, *args, exc_info=exc_info)

    def _sweep_interval(self) -> float:
        return float(min(30.0, self.open_run_ttl / 4))

    def _start_worker(self) -> None:
        with self._lock:
            if self._worker is not None:
                return
            self._worker = threading.Thread(
                target=self._run, name="posthog-callbacks-exporter", daemon=True
            )
            self._worker.start()

    def _after_fork(self) -> None:
        # The child starts clean: the parent's queue, worker, counters and open runs belong
        # to the parent (its threads will end those runs; the child must not close and
        # resend them as errors at exit).
        if self._pid == os.getpid():
            return
        self._pid = os.getpid()
        self._counts = collections.Counter()
        self._registry.reset_after_fork()
        self._warn.reset_after_fork()
        self._lock = threading.Lock()
        self._done = threading.Condition(threading.Lock())
        self._wake = threading.Event()
        self._queue.clear()
        self._enqueued = self._processed = 0
        self._worker = None
        self._outbox = collections.deque()
        self._out_cv = threading.Condition(threading.Lock())
        self._sending = 0
        self._senders = []

    def _count_drop(self, bucket: str, n: int, *, dequeued: bool = True) -> None:
        with self._done:
            self._counts[bucket] += n
            if dequeued:  # taken off the queue: flush() waiters count it as processed
                self._processed += n
                self._done.notify_all()

    def _run(self) -> None:
        while True:
            try:
                self._wake.wait(self.flush_interval if not self._shutdown else 0.05)
                self._wake.clear()
                self._maybe_sweep()
                while self._queue:
                    self._process_batch()
                    if (
                        self._shutdown
                        and self._deadline is not None
                        and (time.monotonic() >= self._deadline)
                    ):
                        return
                if self._shutdown:
                    self._wait_sent(self._deadline)
                    return
            except Exception:  # pragma: no cover - the loop itself must survive anything
                self._warn_once("worker", "posthog_callbacks: exporter worker error", exc_info=True)
                time.sleep(0.1)

    def _maybe_sweep(self) -> None:
        now = time.monotonic()
        if now < self._next_sweep:
            return
        self._next_sweep = now + self._sweep_interval()
        expired = self._registry.expired(self.open_run_ttl)
        if expired:
            self.close_runs(expired, f"run never ended (closed after {self.open_run_ttl:g}s)")

    def _process_batch(self) -> None:
        items: list[Item] = []
        with self._lock:
            for _ in range(min(self.max_batch_size, len(self._queue))):
                items.append(self._queue.popleft())
        events: list[dict[str, Any]] = []
        size = 0
        invalid = 0
        cfg = self._config
        for item in items:
            try:
                if isinstance(item, FinishedSpan):
                    event, est = _span_to_event_sized(item, cfg)
                else:
                    event, est = item, 1024
            except Exception:
                invalid += 1
                self._warn_once(
                    "translate",
                    "posthog_callbacks: a span could not be translated (please report this)",
                    exc_info=True,
                )
                continue
            if events and size + est > _MAX_REQUEST_BYTES:
                self._send(events)
                events, size = [], 0
            events.append(event)
            size += est
        if events:
            self._send(events)
        if invalid:
            self._count_drop("dropped_invalid", invalid)

    def _send(self, events: list[dict[str, Any]]) -> None:
        """Hand a batch to the sender thread; waits while one batch is already waiting."""
        with self._out_cv:
            if len(self._senders) < self._max_senders and self._sending >= len(self._senders):
                sender = threading.Thread(
                    target=self._send_loop, daemon=True, name="posthog-callbacks-sender"
                )
                sender.start()
                self._senders.append(sender)
            while self._outbox:
                if (
                    self._shutdown
                    and self._deadline is not None
                    and (time.monotonic() >= self._deadline)
                ):
                    break  # shutdown() counts what is left in the outbox
                self._out_cv.wait(0.05)
            self._outbox.append(events)
            self._out_cv.notify_all()

    def _wait_sent(self, deadline: float | None) -> None:
        """Wait until the sender has delivered every handed-over batch (or ``deadline``)."""
        with self._out_cv:
            while self._outbox or self._sending:
                if deadline is not None and time.monotonic() >= deadline:
                    return
                self._out_cv.wait(0.05)

    def _send_loop(self) -> None:
        while True:
            with self._out_cv:
                while not self._outbox:
                    worker = self._worker
                    if self._shutdown and (worker is None or not worker.is_alive()):
                        return
                    self._out_cv.wait(0.5)
                events = self._outbox.popleft()
                self._sending += 1
                self._out_cv.notify_all()
            try:
                deadline = self._deadline
                if deadline is not None and time.monotonic() >= deadline:
                    self._count_drop("dropped_shutdown", len(events))  # too late to start
                else:
                    self._deliver(events)
            finally:
                with self._out_cv:
                    self._sending -= 1
                    self._out_cv.notify_all()

    def _deliver(self, events: list[dict[str, Any]]) -> None:
        assert self.sink is not None
        try:
            self.sink.send(events, self._deadline)
            ok = True
        except Exception as exc:
            ok = False
            self._warn_once(
                "sink",
                "posthog_callbacks: %d events lost: %s (further losses "
                "are counted in exporter.stats())",
                len(events),
                exc,
            )
        with self._done:
            self._counts["batches"] += 1
            self._counts["sent" if ok else "dropped_sink_error"] += len(events)
            self._processed += len(events)
            self._done.notify_all()


_live: weakref.WeakSet[Pipeline] = weakref.WeakSet()
_exit_hook = False


def _shutdown_all() -> None:
    for exporter in list(_live):
        try:
            exporter.shutdown()
        except Exception:  # pragma: no cover - never fail interpreter exit
            pass


def _after_fork_all() -> None:
    for exporter in list(_live):
        try:
            exporter._after_fork()
        except Exception:  # pragma: no cover - never fail a fork
            pass


def _register_exit(exporter: Pipeline) -> None:
    global _exit_hook
    if not _exit_hook:
        _exit_hook = True
        atexit.register(_shutdown_all)
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=_after_fork_all)
    _live.add(exporter)
