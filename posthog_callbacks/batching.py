"""The export pipeline behind ``PosthogExporter``: :class:`BatchProcessor`.

One object owns the queue, the worker and sender threads, the counters, fork re-init and
the exit hook (modelled on OpenTelemetry's ``BatchSpanProcessor``). The caller's thread
only appends to a bounded deque. The worker thread runs a periodic tick (the exporter's
TTL sweep of open runs), translates spans into events and cuts size-bounded batches (under
sustained traffic it lets a batch fill up for up to 0.5 s instead of sending many small
requests); sender threads hand them to the sink (which retries), so translation of the next
batch overlaps the network. With a sink that takes encoded events (``PosthogSink``'s own
HTTP path) the worker encodes every ``_ENCODE_CHUNK`` events as it translates them, so a
batch waiting for a sender or on the wire is bytes, which the garbage collector never
visits, instead of thousands of event dicts that outlived its young generations
(measured: 42-54 us of GC per 4-run LangChain invoke before, 4-5 after; one ``orjson``
call per chunk costs a sixth of one per event, see docs/performance.md). ``flush()``
waits on a processed-count, ``shutdown()`` on a deadline every stage checks.

Locks (the only three; each counter has one owner):

* ``_lock`` guards the queue (and its byte estimate), ``_enqueued``, the caller-side
  counters ``_counts_in``
  (``dropped_queue_full``, ``not_sampled``, ``closed_orphans``: counted on callers'
  threads) and starting the worker.
* ``_done`` (a condition) guards ``_processed`` and the outcome counters ``_counts_out``
  (``sent``, ``batches``, ``dropped_sink_error``, ``dropped_invalid``,
  ``dropped_shutdown``); ``flush()`` waits on it.
* ``_out_cv`` (a condition) guards the outbox of translated batches, ``_sending`` and the
  sender threads.

After ``os.fork()`` the child replaces all three and starts empty: the parent's queue,
threads and counters belong to the parent.

Memory is bounded by bytes, not only by a count: each queued item carries an estimate of
the bytes it holds (the text of its content, from a bounded walk on the caller's thread,
plus a fixed overhead for the Python objects around it), and the queue refuses
items beyond ``max_queue_bytes``. Beyond the queue, at most ``max_senders + 2`` translated
batches of at most 4 MiB of events each are held (one being translated, one waiting in the
outbox, one per sender on the wire).
"""

from __future__ import annotations

import atexit
import collections
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .locks import YieldingLock
from .sinks import EncodedBatch, EncodedEvents, Sink, encode_events
from .sizing import estimate_bytes as estimate_bytes  # re-exported: tests and callers use it
from .spans import FinishedSpan
from .tracing import WarnOnce

__all__ = ["BatchProcessor", "ExporterStats", "Item", "Translate"]

log = logging.getLogger(__name__)

_MAX_REQUEST_BYTES = 4 * 1024 * 1024  # PostHog caps bodies at 20 MiB; the SDK aims for 5
_SETTLE_SECONDS = 0.25
_LINGER_SECONDS = 0.5
"""Under sustained traffic, at most one batch per this interval (or ``flush_interval`` if
shorter) unless it is full (see ``_linger``). The posthog SDK's own cadence."""
_ENCODE_CHUNK = 128
_ENCODE_CHUNK_BYTES = 1024 * 1024
"""With a sink taking encoded events, translated events are encoded together once this
many are waiting, or this many bytes (as estimated)."""
DEFAULT_MAX_QUEUE_BYTES = 128 * 1024 * 1024
"""The queue's default byte budget: an 80,000-event burst of short chat spans (about
1.3 KB each as estimated) fits with room to spare."""
Item = FinishedSpan | dict[str, Any]
Translate = Callable[[FinishedSpan], tuple[dict[str, Any], int]]
"""A finished span -> (PostHog event dict, estimated encoded bytes)."""
_Batch = list[dict[str, Any]] | EncodedEvents  # what a sender hands to the sink


@dataclass(frozen=True)
class ExporterStats:
    """Counters since the exporter started. Every event is in exactly one bucket.

    Attributes:
        recorded: Spans and events accepted onto the queue.
        sent: Events the sink accepted.
        dropped_queue_full: Rejected because the queue was full, by bytes held or by count
            (the sink is too slow or down).
        dropped_sink_error: Lost because the sink failed after its retries.
        dropped_invalid: Could not be translated (a bug: please report it), or could not
            be encoded or was over the endpoint's size limit (that event alone).
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


class BatchProcessor:
    """Queue, worker, senders and counters of one exporter.

    Args:
        sink: Where batches of event dicts go; ``None`` disables the processor.
        translate: Turns a finished span into an event dict and its size estimate; runs on
            the worker. Items that are already event dicts pass through.
        flush_at: Queued items that wake the worker before ``flush_interval``.
        flush_interval: Seconds the worker sleeps between batches when idle.
        max_queue_size: Bound on queued items; beyond it items are dropped and counted.
        max_queue_bytes: Bound on the bytes queued items hold (estimated, see
            :func:`estimate_bytes`); beyond it items are dropped and counted as
            ``dropped_queue_full``.
        max_batch_size: Most items taken off the queue per batch.
        shutdown_timeout: Default bound, in seconds, on :meth:`shutdown`.
        tick: Called on the worker every ``tick_interval`` seconds (the TTL sweep).
        tick_interval: Seconds between ``tick`` calls.
        before_shutdown: Called once at the start of :meth:`shutdown`, before new items
            are refused (closing the open runs, which queues them).
        enabled: ``False`` makes every call a no-op (also when ``sink`` is ``None``).
    """

    def __init__(
        self,
        sink: Sink | None,
        translate: Translate,
        *,
        flush_at: int,
        flush_interval: float,
        max_queue_size: int,
        max_batch_size: int,
        max_queue_bytes: int = DEFAULT_MAX_QUEUE_BYTES,
        shutdown_timeout: float,
        tick: Callable[[], None] | None = None,
        tick_interval: float = 30.0,
        before_shutdown: Callable[[], None] | None = None,
        enabled: bool = True,
    ) -> None:
        self.sink = sink
        self.enabled = bool(enabled) and sink is not None
        self._translate = translate
        self.flush_at = flush_at
        self.flush_interval = flush_interval
        self.max_queue_size = max_queue_size
        self.max_queue_bytes = max_queue_bytes
        self.max_batch_size = max_batch_size
        self.shutdown_timeout = shutdown_timeout
        self._tick = tick
        self._tick_interval = tick_interval
        self._before_shutdown = before_shutdown
        self._warn = WarnOnce(log)
        # PosthogSink sends 2 batches at once: the SDK's gzip (which releases the GIL) and
        # the server's answer for one overlap the SDK's JSON encoding of the other.
        self._max_senders = max(1, int(getattr(sink, "max_concurrent_sends", 1) or 1))
        # A sink taking encoded events (PosthogSink's own HTTP path): see the module.
        send_encoded = getattr(sink, "send_encoded", None)
        self._send_encoded: Callable[[EncodedEvents, float | None], Any] | None = (
            send_encoded
            if callable(send_encoded) and getattr(sink, "accepts_encoded", False) is True
            else None
        )
        self._shutdown = False
        self._deadline: float | None = None
        self._reset()
        _register(self)

    def _reset(self) -> None:
        """Fresh queue, locks, counters and no threads (at construction and after fork)."""
        self._pid = os.getpid()
        self._lock = YieldingLock()  # taken by every thread recording: see locks.py
        self._queue: collections.deque[Item] = collections.deque()
        self._sizes: collections.deque[int] = collections.deque()  # estimate per queued item
        self._queued_bytes = 0
        self._enqueued = 0
        self._counts_in = collections.Counter[str]()
        self._worker: threading.Thread | None = None
        self._done = threading.Condition(threading.Lock())
        self._processed = 0
        self._counts_out = collections.Counter[str]()
        self._wake = threading.Event()
        # Ends the worker's wait for a fuller batch: set by flush() and shutdown() (which
        # also set _flushing: send what is queued without lingering) and by enqueue() when
        # a full batch is queued.
        self._urgent = threading.Event()
        self._flushing = False
        self._last_batch = 0.0  # time.monotonic() when the worker last took a batch
        # Translated batches wait here for a sender thread, so the worker translates the
        # next batch while the previous one is on the wire.
        self._out_cv = threading.Condition(threading.Lock())
        self._outbox: collections.deque[_Batch] = collections.deque()
        self._sending = 0
        self._senders: list[threading.Thread] = []
        self._next_tick = time.monotonic() + self._tick_interval

    def _after_fork(self) -> None:
        # The child starts clean: the parent's queue, worker and counters belong to the
        # parent. Nothing the parent's threads may have held is acquired here.
        if self._pid != os.getpid():
            self._reset()

    # -- callers' side -----------------------------------------------------------------

    def warn_once(self, key: str, message: str, *args: Any, exc_info: bool = False) -> None:
        """One warning per kind of problem: a broken sink must not flood the user's logs."""
        self._warn(key, message, *args, exc_info=exc_info)

    def count(self, bucket: str, n: int = 1) -> None:
        """Add ``n`` to a caller-side counter (``not_sampled``, ``closed_orphans``)."""
        with self._lock:  # called from many threads: += alone can lose counts
            self._counts_in[bucket] += n

    def enqueue(self, item: Item, size: int | None = None) -> None:
        """Queue ``item``; never blocks. Drops (counted) when full or shut down.

        Args:
            item: A finished span or an event dict.
            size: ``estimate_bytes(item)`` when the caller already knows it (the manual
                API keeps the estimate it made for the open-run budget); measured here
                otherwise.
        """
        if not self.enabled:
            return
        if self._shutdown:
            self._count_drop("dropped_shutdown", 1, dequeued=False)
            return
        # No pid check here (a system call per span): a forked child is reset by the
        # at-fork hook before it runs any Python code (os.fork(), and C code that forks
        # and calls PyOS_AfterFork_Child, run it). start(), flush() and shutdown() still
        # check the pid.
        if size is None:
            size = estimate_bytes(item)
        lock = self._lock
        lock.acquire()  # not ``with``: two calls fewer on every span
        try:
            queue = self._queue
            full = len(queue) >= self.max_queue_size
            over = self._queued_bytes + size > self.max_queue_bytes
            if full or over:
                self._counts_in["dropped_queue_full"] += 1
            else:
                queue.append(item)
                self._sizes.append(size)
                self._queued_bytes += size
                self._enqueued += 1
                pending = len(queue)
        finally:
            lock.release()
        if full or over:
            self.warn_once(
                "queue-full",
                "posthog_callbacks: queue full (%d items or ~%d MB, max_queue_size=%d, "
                "max_queue_bytes=%d): dropping spans; the sink is too slow or unreachable "
                "(every drop is counted in exporter.stats())",
                len(self._queue),
                self._queued_bytes // 1_000_000,
                self.max_queue_size,
                self.max_queue_bytes,
            )
            return
        if self._worker is None:
            self.start()
        if pending >= self.flush_at:
            if not self._wake.is_set():
                self._wake.set()
            if pending >= self.max_batch_size and not self._urgent.is_set():
                self._urgent.set()  # a full batch: the worker stops waiting for more

    def start(self) -> None:
        """Start the worker (idempotent; it also runs the tick before anything is queued)."""
        if not self.enabled or self._shutdown:
            return
        if self._pid != os.getpid():
            self._after_fork()
        with self._lock:
            if self._worker is not None:
                return
            self._worker = threading.Thread(
                target=self._run, name="posthog-callbacks-exporter", daemon=True
            )
            self._worker.start()

    def flush(self, timeout: float | None = 30.0) -> bool:
        """Block until everything queued so far was delivered or dropped (or ``timeout``).

        Returns:
            True when everything was processed in time.
        """
        if self._pid != os.getpid():
            self._after_fork()
        if not self.enabled or self._worker is None:
            return True
        with self._lock:
            target = self._enqueued
        deadline = None if timeout is None else time.monotonic() + timeout
        self._flushing = True  # before _urgent: the worker reads it once woken
        self._urgent.set()
        self._wake.set()
        with self._done:
            while self._processed < target:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                if self._worker is None or not self._worker.is_alive():
                    return self._processed >= target
                self._done.wait(0.05 if remaining is None else min(remaining, 0.05))
        return True

    @property
    def is_shut_down(self) -> bool:
        """Whether :meth:`shutdown` has started."""
        return self._shutdown

    def shutdown(self, timeout: float | None = None) -> None:
        """Run ``before_shutdown``, deliver what is queued within ``timeout``, stop.

        Safe to call more than once; items queued later are dropped and counted.
        """
        if self._shutdown:
            return
        if self._pid != os.getpid():
            self._after_fork()
        bound = self.shutdown_timeout if timeout is None else timeout
        if self._before_shutdown is not None:
            try:
                self._before_shutdown()
            except Exception:  # pragma: no cover - defensive
                log.debug("posthog_callbacks: closing open runs failed", exc_info=True)
        self._deadline = time.monotonic() + bound
        self._shutdown = True
        self._flushing = True
        self._urgent.set()
        self._wake.set()
        worker = self._worker
        if worker is not None and worker.is_alive() and worker is not threading.current_thread():
            worker.join(max(0.0, self._deadline - time.monotonic()) + 0.1)
            # Requests' timeouts are cut to the deadline: give the senders a moment to count
            # what timed out there, so the counters are exact when the program exits.
            self._wait_sent(self._deadline + _SETTLE_SECONDS)
        with self._lock:
            leftover = len(self._queue)
            self._queue.clear()
            self._sizes.clear()
            self._queued_bytes = 0
        with self._out_cv:
            leftover += sum(len(batch) for batch in self._outbox)
            self._outbox.clear()
            self._out_cv.notify_all()
        if leftover:
            self._count_drop("dropped_shutdown", leftover)
            self.warn_once(
                "shutdown-left",
                "posthog_callbacks: %d events were still queued when shutdown's %.1fs bound passed",
                leftover,
                bound,
            )
        in_flight = self._enqueued - self._processed
        if in_flight > 0:
            # Requests still on the wire: their outcome is unknown (counted when they end,
            # lost if the process exits now), so say so rather than count them.
            self.warn_once(
                "shutdown-in-flight",
                "posthog_callbacks: %d events were still "
                "being sent when shutdown's %.1fs bound passed",
                in_flight,
                bound,
            )
        try:
            if self.sink is not None:
                self.sink.close()
        except Exception:  # pragma: no cover - defensive
            log.debug("posthog_callbacks: closing the sink failed", exc_info=True)

    def stats(self, open_runs: int) -> ExporterStats:
        """The counters now; ``open_runs`` comes from the exporter's run registry."""
        hooked = getattr(self.sink, "dropped_by_before_send", 0)
        hooked = hooked if isinstance(hooked, int) else 0
        with self._lock:
            counts_in = self._counts_in.copy()
            enqueued = self._enqueued
            queued = len(self._queue)
        with self._done:
            out = self._counts_out.copy()
            processed = self._processed
        return ExporterStats(
            recorded=enqueued,
            sent=out["sent"] - hooked,
            dropped_queue_full=counts_in["dropped_queue_full"],
            dropped_sink_error=out["dropped_sink_error"],
            dropped_invalid=out["dropped_invalid"],
            dropped_shutdown=out["dropped_shutdown"],
            not_sampled=counts_in["not_sampled"],
            queued=queued,
            open_runs=open_runs,
            closed_orphans=counts_in["closed_orphans"],
            batches=out["batches"],
            in_flight=max(0, enqueued - processed - queued),
            dropped_by_hook=hooked,
        )

    # -- worker and senders ------------------------------------------------------------

    def _count_drop(self, bucket: str, n: int, *, dequeued: bool = True) -> None:
        with self._done:
            self._counts_out[bucket] += n
            if dequeued:  # taken off the queue: flush() waiters count it as processed
                self._processed += n
                self._done.notify_all()

    def _run(self) -> None:
        while True:
            try:
                self._wake.wait(self.flush_interval if not self._shutdown else 0.05)
                self._wake.clear()
                self._maybe_tick()
                while self._queue:
                    self._linger()
                    self._process_batch()
                    if (
                        self._shutdown
                        and self._deadline is not None
                        and (time.monotonic() >= self._deadline)
                    ):
                        return
                self._flushing = False  # everything queued so far was taken
                self._urgent.clear()
                if self._shutdown:
                    self._wait_sent(self._deadline)
                    return
            except Exception:  # pragma: no cover - the loop itself must survive anything
                self.warn_once("worker", "posthog_callbacks: exporter worker error", exc_info=True)
                time.sleep(0.1)

    def _maybe_tick(self) -> None:
        now = time.monotonic()
        if self._tick is None or now < self._next_tick:
            return
        self._next_tick = now + self._tick_interval
        self._tick()

    def _linger(self) -> None:
        """Under a burst, let the next batch fill up instead of sending many small ones.

        The worker wakes when ``flush_at`` items are queued; when it keeps up with the
        callers it would send a request per few dozen events, and each request costs
        about as much CPU (HTTP, headers, gzip set-up) as translating dozens of events.
        So a batch that is not full waits until ``_LINGER_SECONDS`` after the previous
        batch was taken: sparse traffic (the previous batch long ago) goes at once, a
        burst goes in batches of up to ``max_batch_size`` at most every 0.5 s (or
        ``flush_interval``, if shorter; a full one at once). ``flush()`` and
        ``shutdown()`` end the wait (``_urgent``).
        """
        until = self._last_batch + min(_LINGER_SECONDS, self.flush_interval)
        urgent = self._urgent
        # One wait, no polling (a timed wait costs ~65 us of CPU here): enqueue() sets
        # _urgent when a full batch is queued.
        while len(self._queue) < self.max_batch_size:
            if urgent.is_set():
                if self._flushing or self._shutdown:
                    return
                urgent.clear()  # set for a full batch that an earlier round took
                if self._flushing:  # flush() came in between: keep its signal
                    return
                continue
            remaining = until - time.monotonic()
            if remaining <= 0:
                return
            urgent.wait(remaining)

    def _process_batch(self) -> None:
        self._last_batch = time.monotonic()
        items: collections.deque[Item] | list[Item]
        with self._lock:
            queue, sizes = self._queue, self._sizes
            if len(queue) <= self.max_batch_size:
                # All of it: take the deques whole (O(1) under the lock callers wait on).
                items = queue
                self._queue = collections.deque()
                self._sizes = collections.deque()
                self._queued_bytes = 0
            else:
                items = []
                freed = 0
                for _ in range(self.max_batch_size):
                    items.append(queue.popleft())
                    freed += sizes.popleft()
                self._queued_bytes -= freed
        if self._send_encoded is not None:
            self._encode_and_send(items)
            return
        batch: list[dict[str, Any]] = []
        size = 0
        failed = 0
        for item in items:
            translated = self._translate_item(item)
            if translated is None:
                failed += 1
                continue
            event, est = translated
            if batch and size + est > _MAX_REQUEST_BYTES:
                self._send(batch)
                batch, size = [], 0
            batch.append(event)
            size += est
        if batch:
            self._send(batch)
        if failed:
            self._count_drop("dropped_invalid", failed)

    def _encode_and_send(self, items: collections.deque[Item] | list[Item]) -> None:
        """``_process_batch`` for a sink taking encoded events: events are encoded a chunk
        at a time as they are translated, and requests are cut on the encoded bytes."""
        batch = EncodedEvents()  # its events left out as invalid are counted on delivery
        chunk: list[dict[str, Any]] = []
        chunk_bytes = 0
        failed = 0
        for n, item in enumerate(items, 1):
            translated = self._translate_item(item)
            if translated is None:
                failed += 1
            else:
                chunk.append(translated[0])
                chunk_bytes += translated[1]
            if chunk and (
                len(chunk) >= _ENCODE_CHUNK or chunk_bytes >= _ENCODE_CHUNK_BYTES or n == len(items)
            ):
                try:
                    encoded = encode_events(chunk)  # a bad event costs only itself
                except Exception:  # encode_events guards each event: a bug, if it happens
                    # never the batch, nor the worker: the chunk is counted as invalid
                    encoded = EncodedBatch(b"[]", 0, len(chunk), True)
                if len(batch) and batch.size + len(encoded.array) > _MAX_REQUEST_BYTES:
                    self._send(batch)
                    batch = EncodedEvents()
                batch.add(encoded)
                chunk, chunk_bytes = [], 0
        if len(batch):
            self._send(batch)
        if failed:
            self._count_drop("dropped_invalid", failed)

    def _translate_item(self, item: Item) -> tuple[dict[str, Any], int] | None:
        """A queued span translated (an event dict queued as it is); None if it failed."""
        try:
            if type(item) is FinishedSpan or isinstance(item, FinishedSpan):
                return self._translate(item)
            return item, 1024
        except Exception:
            self.warn_once(
                "translate",
                "posthog_callbacks: a span could not be translated (please report this)",
                exc_info=True,
            )
            return None

    def _send(self, events: _Batch) -> None:
        """Hand a batch to a sender thread; waits while one batch is already waiting."""
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
        """Wait until the senders delivered every handed-over batch (or ``deadline``)."""
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

    def _deliver(self, events: _Batch) -> None:
        assert self.sink is not None
        invalid = 0
        try:
            if type(events) is EncodedEvents:
                assert self._send_encoded is not None
                result = self._send_encoded(events, self._deadline)
            else:
                result = self.sink.send(events, self._deadline)  # type: ignore[arg-type]
            ok = True
            if isinstance(result, int) and not isinstance(result, bool):
                invalid = min(max(0, result), len(events))
        except Exception as exc:
            ok = False
            self.warn_once(
                "sink",
                "posthog_callbacks: %d events lost: %s (further losses "
                "are counted in exporter.stats())",
                len(events),
                exc,
            )
        if invalid:
            self.warn_once(
                "invalid",
                "posthog_callbacks: %d events could not be encoded and were dropped (each "
                "cost only itself; counted as dropped_invalid in exporter.stats())",
                invalid,
            )
        with self._done:
            self._counts_out["batches"] += 1
            self._counts_out["sent" if ok else "dropped_sink_error"] += len(events) - invalid
            self._counts_out["dropped_invalid"] += invalid
            self._processed += len(events)
            self._done.notify_all()


# -- process-wide hooks: shutdown at exit, clean state in a forked child ---------------------

_live: weakref.WeakSet[BatchProcessor] = weakref.WeakSet()


def _shutdown_all() -> None:
    for processor in list(_live):
        try:
            processor.shutdown()
        except Exception:  # pragma: no cover - never fail interpreter exit
            pass


def _after_fork_all() -> None:
    for processor in list(_live):
        try:
            processor._after_fork()
        except Exception:  # pragma: no cover - never fail a fork
            pass


_hooked = False


def _register(processor: BatchProcessor) -> None:
    # Registered when the first processor is made (not at import), so exit hooks the
    # program registered before creating its exporter run after ours (atexit is LIFO).
    global _hooked
    if not _hooked:
        _hooked = True
        atexit.register(_shutdown_all)
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=_after_fork_all)
    _live.add(processor)
