"""``PosthogExporter``: the one way out for every front door.

The exporter holds the options, chooses the sink, owns the open-run registry (TTL sweep,
shutdown) and implements :class:`~posthog_callbacks.tracing.Recorder` for the front doors.
The caller's thread only appends a finished span to a bounded queue (a few microseconds,
never blocking, never raising); its :class:`~posthog_callbacks.batching.BatchProcessor`
translates spans into PostHog events on a worker thread, cuts size-bounded batches and
hands them to the sink, which retries. Modelled on OpenTelemetry's ``BatchSpanProcessor``:
``force_flush`` is :meth:`flush`, :meth:`shutdown` is bounded in time and also runs at
interpreter exit.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from .batching import DEFAULT_MAX_QUEUE_BYTES, BatchProcessor, ExporterStats
from .events import (
    DEFAULT_MAX_EVENT_BYTES,
    EventConfig,
    _span_to_event_sized,
    feedback_event,
    metric_event,
)
from .manual import ManualTracer, TraceHandle
from .pricing import parse_prices
from .serialize import Serializer
from .sinks import DEFAULT_HOST, JsonlSink, PosthogSink, Sink
from .spans import FinishedSpan, OpenSpan
from .tracing import DEFAULT_MAX_OPEN_RUN_BYTES, Recorder, RunRegistry, RunTable, WarnOnce

__all__ = ["ExporterStats", "PosthogExporter", "as_exporter", "is_client"]

log = logging.getLogger(__name__)


def is_client(obj: Any) -> bool:
    """Whether ``obj`` is used as a ``posthog.Posthog`` client (it has a ``capture`` method).

    Checked before anything else, so a ``unittest.mock.MagicMock()`` standing in for a
    client is a client, never a file path (it has ``__fspath__``) or a sink.
    """
    return not isinstance(obj, (str, bytes)) and callable(getattr(obj, "capture", None))


class _CaptureSink:
    """Delivers events through a client's own ``capture()`` (a client without a real API
    key: a ``unittest.mock`` stand-in or a test double)."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def send(self, events: Sequence[dict[str, Any]], deadline: float | None = None) -> None:
        for event in events:
            self.client.capture(
                distinct_id=event["distinct_id"],
                event=event["event"],
                properties=event["properties"],
                timestamp=event.get("timestamp"),
                uuid=event.get("uuid"),
            )

    def close(self) -> None:
        """The client belongs to the caller: it is not shut down here."""

    def __repr__(self) -> str:
        return f"_CaptureSink({type(self.client).__name__})"


def _positive(name: str, value: Any, kind: type) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    return kind(value)


class PosthogExporter:
    """Batches finished spans and events to PostHog (or a local sink), off the hot path.

    Args:
        api_key: Project API key; defaults to ``POSTHOG_API_KEY``.
        host: Ingestion host; defaults to ``POSTHOG_HOST``, else ``https://us.i.posthog.com``.
            Use ``https://eu.i.posthog.com`` for the EU cloud, or your own URL.
        flush_at: Queued events that trigger a send (20; 10 with ``serverless``). Under load a
            batch carries up to ``max_batch_size`` events, and while events keep coming a batch
            goes at most every 0.5 s (or ``flush_interval``, if shorter) unless it is full
            (few large requests rather than many small ones, as the posthog SDK sends).
        flush_interval: Seconds after which queued events are sent anyway (10; 2 serverless).
        serverless: Preset for short-lived processes: smaller, more frequent batches.
        default_distinct_id: Distinct id when no user id is known; ``None`` sends personless
            events (the trace id is used as their distinct id).
        privacy_mode: Send no inputs or outputs at all (model calls, spans and traces).
        service_name: Sent as ``$ai_service_name`` on every event.
        properties: Added to every event.
        groups: PostHog group analytics, e.g. ``{"company": "acme"}``.
        sink: ``MemorySink()``, ``JsonlSink(path)``, a path string, a ``posthog.Posthog``
            client, or any object with ``send(events, deadline)`` and ``close()``. Anything
            with a ``capture`` method is taken as a client (also a ``MagicMock``: events
            then go through its ``capture()``); a client's ``privacy_mode=True`` turns on
            ``privacy_mode`` here.
        sample_rate: Fraction of traces kept, decided once per trace id (whole traces).
        mask: Called with every input and output (JSON-safe) before it leaves the process;
            returns the value to send.
        prices: Custom prices for models PostHog does not price (or prices differently):
            ``{"my-azure-deployment": {"input": 2.5e-6, "output": 1e-5}}`` in USD **per
            token** (PostHog's unit; ``ModelPrice.per_million(2.5, 10)`` converts), with
            optional ``cache_read`` / ``cache_write``. Sent as ``$ai_*_token_price``.
        max_queue_size: Bound on queued spans; beyond it spans are dropped and counted.
        max_queue_bytes: Bound on the bytes queued spans hold (estimated from their content:
            128 MiB by default, room for a burst of 80,000 short chat spans); beyond it
            spans are dropped, counted as ``dropped_queue_full`` and logged once.
        max_batch_size: Most events per request.
        request_timeout: Seconds per HTTP request.
        max_retries: Retries per batch on 408/429/5xx and network errors.
        capture_exceptions: Send failed LLM calls, chains and tools to Error Tracking as
            ``$exception`` events linked by ``$exception_event_id`` (``None``: follow a
            wrapped client's ``enable_exception_autocapture``). Never in privacy mode.
        shutdown_timeout: Bound, in seconds, on :meth:`shutdown` (also at exit).
        open_run_ttl: Seconds after which a run that never ended is closed as an error.
        max_open_run_bytes: Bound on the bytes runs still open hold (estimated from their
            inputs, metadata and tools: 256 MiB by default, for all front doors together);
            beyond it the oldest open runs are closed as errors
            (``"evicted: open runs over the memory budget"``), sent and counted as
            ``closed_orphans``.
        enabled: ``False`` makes every call a no-op.

    Raises:
        ValueError: An option is out of range.
        TypeError: ``sink`` or ``mask`` is not usable.
    """

    def __init__(
        self,
        api_key: str | None = None,
        host: str | None = None,
        *,
        flush_at: int | None = None,
        flush_interval: float | None = None,
        serverless: bool = False,
        default_distinct_id: str | None = None,
        privacy_mode: bool = False,
        service_name: str | None = None,
        properties: Mapping[str, Any] | None = None,
        groups: Mapping[str, Any] | None = None,
        sink: Any = None,
        sample_rate: float = 1.0,
        mask: Callable[[Any], Any] | None = None,
        prices: Mapping[str, Any] | None = None,
        max_queue_size: int = 100_000,
        max_queue_bytes: int = DEFAULT_MAX_QUEUE_BYTES,
        max_batch_size: int = 1000,
        request_timeout: float = 10.0,
        max_retries: int = 6,
        capture_exceptions: bool | None = None,
        shutdown_timeout: float = 10.0,
        open_run_ttl: float = 900.0,
        max_open_run_bytes: int = DEFAULT_MAX_OPEN_RUN_BYTES,
        enabled: bool = True,
    ) -> None:
        self._warn = WarnOnce(log)
        self.flush_at = int(
            _positive(
                "flush_at", flush_at if flush_at is not None else (10 if serverless else 20), int
            )
        )
        self.flush_interval = _positive(
            "flush_interval",
            flush_interval if flush_interval is not None else (2.0 if serverless else 10.0),
            float,
        )
        self.max_queue_size = _positive("max_queue_size", max_queue_size, int)
        self.max_queue_bytes = _positive("max_queue_bytes", max_queue_bytes, int)
        self.max_batch_size = _positive("max_batch_size", max_batch_size, int)
        self.shutdown_timeout = _positive("shutdown_timeout", shutdown_timeout, float)
        self.open_run_ttl = _positive("open_run_ttl", open_run_ttl, float)
        self.max_open_run_bytes = _positive("max_open_run_bytes", max_open_run_bytes, int)
        if (
            isinstance(sample_rate, bool)
            or not isinstance(sample_rate, (int, float))
            or not (0.0 <= sample_rate <= 1.0)
        ):
            raise ValueError(f"sample_rate must be between 0 and 1, got {sample_rate!r}")
        if mask is not None and not callable(mask):
            raise TypeError(
                "mask must be a callable taking a value and returning the value to send"
            )
        parsed_prices = parse_prices(prices)
        self.serverless = serverless
        self.sample_rate = float(sample_rate)
        self.default_distinct_id = default_distinct_id

        api_key = (api_key or os.environ.get("POSTHOG_API_KEY") or "").strip() or None
        host = (host or os.environ.get("POSTHOG_HOST") or "").strip() or None
        self.sink: Sink | None = self._resolve_sink(
            sink,
            api_key,
            host,
            request_timeout=_positive("request_timeout", request_timeout, float),
            max_retries=max_retries,
        )
        self.enabled = bool(enabled) and self.sink is not None
        if getattr(sink, "privacy_mode", False) is True and is_client(sink):
            privacy_mode = True  # the wrapped client's privacy mode counts as ours
        self.privacy_mode = privacy_mode
        if isinstance(self.sink, PosthogSink):
            if capture_exceptions is not None:
                self.sink.capture_exceptions = bool(capture_exceptions)
            if privacy_mode:  # an $exception carries the message: never in privacy mode
                self.sink.capture_exceptions = False
        max_event = getattr(self.sink, "max_event_bytes", DEFAULT_MAX_EVENT_BYTES)
        secrets = tuple(
            s for s in (api_key, getattr(self.sink, "api_key", None)) if isinstance(s, str) and s
        )
        self._config = EventConfig(
            privacy_mode=privacy_mode,
            default_distinct_id=default_distinct_id,
            properties=Serializer(secrets).convert(dict(properties or {})),
            groups=Serializer(secrets).convert(dict(groups)) if groups else None,
            service_name=service_name,
            mask=mask,
            max_event_bytes=int(max_event)
            if isinstance(max_event, int)
            else DEFAULT_MAX_EVENT_BYTES,
            secrets=secrets,
            prices=parsed_prices,
        )

        self._registry = RunRegistry(self.max_open_run_bytes)
        self._manual = ManualTracer(self, self.submit)
        self._registry.register(self._manual.runs)
        config = self._config
        self._batcher = BatchProcessor(
            self.sink,
            functools.partial(_span_to_event_sized, cfg=config),  # no Python frame per span
            flush_at=self.flush_at,
            flush_interval=self.flush_interval,
            max_queue_size=self.max_queue_size,
            max_queue_bytes=self.max_queue_bytes,
            max_batch_size=self.max_batch_size,
            shutdown_timeout=self.shutdown_timeout,
            tick=self._sweep,
            tick_interval=float(min(30.0, self.open_run_ttl / 4)),
            before_shutdown=self._close_all_runs,
            enabled=self.enabled,
        )

    # -- configuration -------------------------------------------------------------------

    def _resolve_sink(
        self,
        sink: Any,
        api_key: str | None,
        host: str | None,
        *,
        request_timeout: float,
        max_retries: int,
    ) -> Sink | None:
        if sink is None:
            if not api_key:
                self._warn(
                    "no-key",
                    "posthog_callbacks: no PostHog API key (pass api_key=... or set "
                    "POSTHOG_API_KEY) and no sink: nothing will be sent",
                )
                return None
            if host is None:
                log.info(
                    "posthog_callbacks: sending to %s (PostHog US cloud); for the EU "
                    "cloud pass host='https://eu.i.posthog.com' or set POSTHOG_HOST, "
                    "self-hosted: your instance's URL",
                    DEFAULT_HOST,
                )
            return PosthogSink(api_key, host, timeout=request_timeout, max_retries=max_retries)
        if is_client(sink):
            key = getattr(sink, "api_key", None)
            if isinstance(key, str) and key.strip():
                return PosthogSink(client=sink, max_retries=max_retries)
            if not key:
                self._warn(
                    "no-key",
                    "posthog_callbacks: the posthog client has no API key: nothing will be sent",
                )
                return None
            # A stand-in client (unittest.mock, a test double): hand it every event through
            # its own capture(), as PostHog's handler would.
            return _CaptureSink(sink)
        if isinstance(sink, (str, os.PathLike)):
            return JsonlSink(sink)
        if callable(getattr(sink, "send", None)) and callable(getattr(sink, "close", None)):
            return sink  # type: ignore[no-any-return]
        raise TypeError(
            f"sink must be MemorySink(), JsonlSink(path), a file path, a posthog.Posthog "
            f"client, or an object with send(events, deadline) and close(); got {sink!r}"
        )

    # -- handler-facing API ----------------------------------------------------------------

    def is_sampled(self, trace_id: str) -> bool:
        """Whether the trace ``trace_id`` is kept; the same answer every time for one id."""
        rate = self.sample_rate
        if rate >= 1.0:
            return True
        if rate <= 0.0:
            return False
        return zlib.crc32(str(trace_id).encode()) / 4294967296.0 < rate

    def submit(self, span: FinishedSpan, size: int | None = None) -> None:
        """Queue a finished span for export. Never blocks, never raises.

        Args:
            span: The finished span.
            size: ``sizing.estimate_bytes(span)`` when the caller already has it (the
                front doors keep the estimate they made for the open-run budget); the
                queue measures the span when ``None``.
        """
        try:
            if self.sample_rate < 1.0 and not self.is_sampled(span.trace_id):
                self._batcher.count("not_sampled")
                return
            self._batcher.enqueue(span, size)
        except Exception:  # pragma: no cover - defensive
            self._warn("submit", "posthog_callbacks: failed to record a span", exc_info=True)

    def close_runs(self, spans: Iterable[OpenSpan], reason: str) -> None:
        """Finish runs that never ended as errors (``reason``) and queue them."""
        for span in spans:
            try:
                if span.error is None:
                    span.error = reason
                self._batcher.count("closed_orphans")
                self.submit(span.finish())
            except Exception:  # pragma: no cover - defensive
                self._warn("close", "posthog_callbacks: failed to close a run", exc_info=True)

    def register_runs(self, table: RunTable[Any]) -> None:
        """Let the exporter sweep ``table`` (TTL) and drain it at shutdown.

        The table is held weakly; if its owner (a per-call handler) is garbage-collected
        while runs are open, those runs stay with the exporter and are still closed as
        errors (``closed_orphans``) by the sweep or at shutdown.
        """
        self._registry.register(table)
        self._batcher.start()  # sweeps run even before the first span is submitted

    def _sweep(self) -> None:
        """Close runs that outlived ``open_run_ttl`` (on the worker, periodically)."""
        expired = self._registry.expired(self.open_run_ttl)
        if expired:
            self.close_runs(expired, f"run never ended (closed after {self.open_run_ttl:g}s)")

    def _close_all_runs(self) -> None:
        self.close_runs(self._registry.drain(), "run still open at shutdown")

    # -- manual tracing, feedback --------------------------------------------------------

    @property
    def manual_runs(self) -> RunTable[str]:
        """Open spans of the manual API (for tests and diagnostics)."""
        return self._manual.runs

    def trace(
        self,
        name: str,
        *,
        input: Any = None,
        distinct_id: str | None = None,
        session_id: str | None = None,
        trace_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        tags: Iterable[str] | None = None,
        properties: Mapping[str, Any] | None = None,
    ) -> TraceHandle:
        """Start a trace; use it as a (async) context manager or call ``end()``.

        Exceptions inside mark the span and its trace as errors and re-raise. Never raises
        for bad arguments: an unusable one is skipped (warned once) and the rest recorded.

        Several traces may share one ``trace_id`` at once (e.g. one conversation served by
        several workers): the first active one is the trace's root (``$ai_trace``), the
        others started while it is active are recorded as ``$ai_span`` children of it,
        each with a span id of its own; each handle ends only its own children.
        """
        return self._manual.trace(
            name,
            input=input,
            distinct_id=distinct_id,
            session_id=session_id,
            trace_id=trace_id,
            metadata=metadata,
            tags=tags,
            properties=properties,
        )

    def capture_feedback(
        self,
        trace_id: str,
        text: str | None = None,
        *,
        score: Any = None,
        distinct_id: str | None = None,
        properties: Mapping[str, Any] | None = None,
    ) -> None:
        """Record user feedback on a trace as ``$ai_feedback``."""
        self._event(
            feedback_event,
            trace_id,
            text=text,
            score=score,
            distinct_id=distinct_id,
            properties=properties,
        )

    def capture_metric(
        self,
        trace_id: str,
        name: str,
        value: Any,
        *,
        distinct_id: str | None = None,
        properties: Mapping[str, Any] | None = None,
    ) -> None:
        """Record a named score on a trace as ``$ai_metric``."""
        self._event(
            metric_event,
            trace_id,
            name=name,
            value=value,
            distinct_id=distinct_id,
            properties=properties,
        )

    def _event(self, build: Callable[..., dict[str, Any]], trace_id: str, **kw: Any) -> None:
        try:
            self._batcher.enqueue(
                build(str(trace_id), cfg=self._config, timestamp=time.time(), **kw)
            )
        except Exception:
            self._warn("event", "posthog_callbacks: failed to record an event", exc_info=True)

    # -- flush, shutdown, stats ------------------------------------------------------------

    def flush(self, timeout: float | None = 30.0) -> bool:
        """Block until everything recorded so far reached the sink (or ``timeout`` passed).

        Returns:
            True when everything was processed (sent, or counted as dropped) in time.
        """
        return self._batcher.flush(timeout)

    @property
    def is_shut_down(self) -> bool:
        """Whether :meth:`shutdown` has run (later spans are dropped and counted)."""
        return self._batcher.is_shut_down

    def shutdown(self, timeout: float | None = None) -> None:
        """Close open runs, deliver what is queued within ``timeout``, stop the worker.

        Bounded by ``timeout`` (default ``shutdown_timeout``); also runs at interpreter
        exit. Safe to call more than once; later spans are dropped and counted.
        """
        self._batcher.shutdown(timeout)

    def stats(self) -> ExporterStats:
        """Counters: what was recorded, sent, dropped (by reason), still queued or open."""
        return self._batcher.stats(self._registry.open_runs())

    def __enter__(self) -> PosthogExporter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()


_client_exporters: dict[int, tuple[Any, PosthogExporter]] = {}
_env_exporters: dict[tuple[str | None, str | None], PosthogExporter] = {}
_client_lock = threading.Lock()


def as_exporter(target: Any = None) -> Recorder:
    """The exporter a front door records into, from whatever the user passed.

    Every front door (LangChain, both LlamaIndex doors) calls this with its ``exporter``
    argument, so all accept the same things.

    Args:
        target: A :class:`PosthogExporter` (used as is); a ``posthog.Posthog`` client (or
            anything with ``capture``, such as a ``MagicMock``), wrapped once as
            ``PosthogExporter(sink=client)`` and reused for later calls with the same
            client; ``None`` for the exporter configured from ``POSTHOG_API_KEY`` /
            ``POSTHOG_HOST`` (one per configuration, made again after its shutdown); or an
            exporter-like object with ``submit``, ``close_runs``, ``is_sampled`` and
            ``register_runs`` (a test double, a wrapper).

    Raises:
        TypeError: ``target`` is none of these.
    """
    if isinstance(target, PosthogExporter):
        return target
    if target is None:
        # One exporter per environment configuration, like the posthog SDK's default client:
        # a handler built per call (``CallbackHandler()``) must not start threads each time.
        key = (os.environ.get("POSTHOG_API_KEY"), os.environ.get("POSTHOG_HOST"))
        with _client_lock:
            default = _env_exporters.get(key)
            if default is None or default.is_shut_down:
                default = _env_exporters[key] = PosthogExporter()
            return default
    if is_client(target):
        with _client_lock:
            known = _client_exporters.get(id(target))
            if known is not None and known[0] is target:
                return known[1]
            exporter = PosthogExporter(sink=target)
            # Holds the client: a per-call handler given the same client reuses one
            # exporter (and its threads) instead of starting new ones each call.
            _client_exporters[id(target)] = (target, exporter)
            return exporter
    if isinstance(target, Recorder):
        return target
    raise TypeError(
        "expected a PosthogExporter, a posthog.Posthog client, None (an exporter configured "
        "from POSTHOG_API_KEY) or an object with submit(), close_runs(), is_sampled() and "
        f"register_runs(); got {type(target).__name__}"
    )
