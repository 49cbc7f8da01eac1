"""Manual, framework-neutral tracing: ``exporter.trace(...)`` and its children.

Handles are explicit objects (no ambient context), so they work the same from threads and
asyncio tasks. Open spans sit in the tracer's run table, registered with the exporter, so
a span that is never ended is still closed as an error after the TTL or at shutdown.

Shared trace ids: several traces may be started with the same ``trace_id=`` at once (one
conversation traced from several workers). The first active one is the trace's root (the
``$ai_trace`` event, span id = trace id); the others started while it is active become
``$ai_span`` events under it, each with a span id of its own. Each handle tracks its own
open children, so ending one of them never closes (or reports as "never ended") the
children of another. Once no trace with that id is active, the next one is a root again.

Tracing calls never raise for bad arguments: a value that cannot be used is dropped (or
turned into text), a warning is logged once per kind of problem, and the span is still
recorded with everything else it was given.
"""

from __future__ import annotations

import logging
import os
import time
import weakref
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, cast

from .locks import YieldingLock
from .sizing import ITEM_OVERHEAD_BYTES, value_bytes
from .spans import (
    FinishedSpan,
    OpenSpan,
    SpanKind,
    Usage,
    error_text,
    new_id,
    snapshot,
    snapshot_sized,
    snapshot_small,
)
from .tracing import Recorder, RunTable, WarnOnce, child_span, open_span_bytes, safe_text
from .usage import normalize_provider, usage_from_mapping

__all__ = ["ManualTracer", "SpanHandle", "TraceHandle"]

log = logging.getLogger(__name__)

_UNSET: Any = object()
# Types are tested with issubclass(type(x), ...), never isinstance(x, ...): isinstance may
# read an instance's __class__, a property on a proxy object that can raise.
_SCALARS = frozenset({str, int, float, bool, type(None)})  # kept as they are by snapshot()


def _sized(value: Any) -> tuple[Any, int]:
    """A snapshot of ``value`` and its byte estimate (``sizing.value_bytes``), one walk
    for the usual small values."""
    copy, size = snapshot_sized(value)
    return copy, size if size >= 0 else value_bytes(copy)


class ManualTracer:
    """The manual API's state within one exporter: open spans and shared trace ids.

    Args:
        recorder: Where finished spans go. The caller registers :attr:`runs` with it (the
            exporter does so without starting its worker).
        submit: Queues a finished span with its byte estimate (``sizing.estimate_bytes``),
            which a handle keeps from the open-run budget's measurement so the span's
            content is walked once; ``None`` submits through ``recorder.submit``.
    """

    __slots__ = ("__weakref__", "_active", "_lock", "recorder", "runs", "submit", "warn")

    def __init__(
        self, recorder: Recorder, submit: Callable[[FinishedSpan, int | None], None] | None = None
    ) -> None:
        self.recorder = recorder
        self.submit: Callable[[FinishedSpan, int | None], None] = submit or (
            lambda span, size: recorder.submit(span)
        )
        """Queue a finished span with its byte estimate (``None``: not known)."""
        # Handles track their own open children (shared trace ids): no index by trace.
        self.runs: RunTable[str] = RunTable(index_traces=False)
        self.warn = WarnOnce(log)
        self._active: dict[str, int] = {}  # trace id -> manual roots active with it
        self._lock = YieldingLock()  # traces started with a trace_id, from any thread
        _tracers.add(self)

    def reset_after_fork(self) -> None:
        """In a forked child: a fresh lock (a parent thread may have held it at the fork)
        and no active shared trace ids (the parent's traces end in the parent)."""
        self._lock = YieldingLock()
        self._active.clear()

    def bad(self, argument: str, value: Any) -> None:
        """Warn (once per argument) that ``value`` was not usable."""
        self.warn(
            "arg:" + argument,
            "posthog_callbacks: ignoring an unusable %s argument of type %s "
            "(the span is still recorded; further cases are not logged)",
            argument,
            type(value).__name__,
        )

    def trace(
        self,
        name: Any,
        *,
        input: Any = None,
        distinct_id: Any = None,
        session_id: Any = None,
        trace_id: Any = None,
        metadata: Any = None,
        tags: Any = None,
        properties: Any = None,
    ) -> TraceHandle:
        """Open a trace (see ``PosthogExporter.trace``); never raises."""
        # Plain strings and None (the usual arguments) skip the cleaning calls.
        tid = None
        if trace_id is not None and not (issubclass(type(trace_id), str) and not trace_id):
            tid = safe_text(trace_id)
            if tid is None:
                self.bad("trace_id", trace_id)
        shared = False
        if tid is None:
            tid = new_id()
            registered = False
        else:
            with self._lock:
                count = self._active.get(tid, 0)
                self._active[tid] = count + 1
                shared = count > 0
            registered = True
        inp, held = _sized(input)
        span = OpenSpan(
            tid,
            new_id() if shared else tid,
            tid if shared else None,
            SpanKind.SPAN if shared else SpanKind.TRACE,
            name if type(name) is str and name else (self.text("name", name) or "trace"),
        )
        # Only what was given is set, one field at a time (the dataclass matches keyword
        # arguments slowly); the rest keeps the span's defaults.
        span.input = inp
        if distinct_id is not None:
            span.distinct_id = (
                distinct_id
                if type(distinct_id) is str and distinct_id
                else self.text("distinct_id", distinct_id)
            )
        if session_id is not None:
            span.session_id = (
                session_id
                if type(session_id) is str and session_id
                else self.text("session_id", session_id)
            )
        held += ITEM_OVERHEAD_BYTES
        if metadata is not None:
            span.metadata, size = self.mapping_sized("metadata", metadata)
            held += size
        if tags is not None:
            span.tags = self.tags(tags)
        if properties is not None:
            span.properties = self.mapping("properties", properties)
        return TraceHandle(self, span, None, registered, held)

    def release(self, trace_id: str) -> None:
        """A root started with an explicit ``trace_id`` ended."""
        with self._lock:
            count = self._active.get(trace_id, 0) - 1
            if count > 0:
                self._active[trace_id] = count
            else:
                self._active.pop(trace_id, None)

    # -- argument cleaning (never raises) ------------------------------------------------

    def text(self, argument: str, value: Any) -> str | None:
        """``value`` as text; ``None`` (with a warning) when it cannot be."""
        if value is None or type(value) is str:
            return value or None
        text = safe_text(value)
        if text is None:
            self.bad(argument, value)
        return text

    def mapping(self, argument: str, value: Any) -> dict[str, Any] | None:
        """A snapshot of a mapping argument with text keys; ``None`` for anything else."""
        if value is None:
            return None
        if type(value) is not dict and not issubclass(type(value), Mapping):
            self.bad(argument, value)
            return None
        try:
            out: dict[str, Any] = {}
            for key, item in list(value.items()):
                name = key if type(key) is str else safe_text(key)
                if name is None:
                    self.bad(argument + " key", key)
                    continue
                out[name] = item if type(item) in _SCALARS else snapshot(item)
            return out or None
        except Exception:
            self.bad(argument, value)
            return None

    def mapping_sized(self, argument: str, value: Any) -> tuple[dict[str, Any] | None, int]:
        """:meth:`mapping` and its byte estimate (``sizing.value_bytes``), one walk for
        the usual small dict with text keys."""
        if type(value) is dict:
            small = snapshot_small(value)  # what mapping() makes of it, and its bytes
            if small is not None:
                return small if small[0] else (None, 0)
        out = self.mapping(argument, value)
        return out, value_bytes(out)

    def tags(self, value: Any) -> tuple[str, ...]:
        """Tags as a tuple of text; a single string is one tag."""
        if value is None:
            return ()
        if issubclass(type(value), str):
            return (value,) if value else ()
        try:
            items = list(value)
        except Exception:
            self.bad("tags", value)
            return ()
        out = []
        for item in items:
            text = safe_text(item)
            if text is None:
                self.bad("tags item", item)
            elif text not in out:
                out.append(text)
        return tuple(out)


_tracers: weakref.WeakSet[ManualTracer] = weakref.WeakSet()


def _reset_tracers_after_fork() -> None:
    for tracer in list(_tracers):
        try:
            tracer.reset_after_fork()
        except Exception:  # pragma: no cover - never fail a fork
            pass


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_tracers_after_fork)


class SpanHandle:
    """One open span of a manual trace. Use as a (async) context manager or call :meth:`end`.

    ``update()`` sets what is known so far; an exception leaving the ``with`` block marks
    the span (and its trace) as errors and propagates.
    """

    __slots__ = ("_ended", "_held", "_out", "_root", "_span", "_tracer")

    def __init__(
        self,
        tracer: ManualTracer,
        span: OpenSpan,
        root: TraceHandle | None,
        held: int | None = None,
    ) -> None:
        self._tracer = tracer
        self._span = span
        self._root = root
        self._ended = False
        # The open-run budget's estimate of the span (``open_span_bytes``: its content but
        # the output), measured while it was copied and kept for the queue's estimate at
        # the end; -1 once input, metadata, model parameters or tools were replaced (the
        # queue then measures the finished span itself). ``_out``: the output's bytes, -1
        # when not known.
        self._held = open_span_bytes(span) if held is None else held
        self._out = 0
        evicted = tracer.runs.add(span.span_id, span, self._held)
        if root is not None:
            root._open.add(span.span_id)
        if evicted:
            tracer.recorder.close_runs(evicted, "evicted: too many spans open at once")

    @property
    def span_id(self) -> str:
        """This span's id (the trace id for the root)."""
        return self._span.span_id

    @property
    def trace_id(self) -> str:
        """The id of the trace this span belongs to."""
        return self._span.trace_id

    def update(
        self,
        *,
        input: Any = _UNSET,
        output: Any = _UNSET,
        name: str | None = None,
        model: str | None = None,
        provider: str | None = None,
        usage: Usage | Mapping[str, Any] | None = None,
        model_parameters: Mapping[str, Any] | None = None,
        tools: Any = None,
        metadata: Mapping[str, Any] | None = None,
        error: str | BaseException | None = None,
        status: str | None = None,
        http_status: int | None = None,
        base_url: str | None = None,
        stop_reason: str | None = None,
    ) -> SpanHandle:
        """Set fields of the span; omitted arguments leave the current value alone.

        ``usage`` takes a :class:`Usage` or any provider's usage mapping (``input_tokens``,
        ``prompt_tokens``, ...; input counts include cached tokens). Never raises: an
        unusable argument is skipped with a warning.
        """
        try:
            s = self._span
            t = self._tracer
            if input is not _UNSET:
                self._held = -1
                s.input = snapshot(input)
            if output is not _UNSET:
                s.output, self._out = snapshot_sized(output)
            if name is not None or model is not None or status is not None:
                self._set_text("name", name)
                self._set_text("model", model)
                self._set_text("status", status)
            if base_url is not None or stop_reason is not None:
                self._set_text("base_url", base_url)
                self._set_text("stop_reason", stop_reason)
            if provider is not None:
                s.provider = normalize_provider(t.text("provider", provider)) or s.provider
            if usage is not None:
                s.usage = self._usage(usage) or s.usage
            if model_parameters is not None:
                self._held = -1
                params = t.mapping("model_parameters", model_parameters)
                if params is not None:
                    s.model_parameters = params
            if tools is not None:
                self._held = -1
                s.tools = snapshot(tools)
            if metadata is not None:
                self._held = -1
                extra = t.mapping("metadata", metadata)
                if extra:
                    s.metadata = {**(s.metadata or {}), **extra}
            if error is not None:
                s.error = (
                    error_text(cast(BaseException, error))
                    if issubclass(type(error), BaseException)
                    else (t.text("error", error) or f"<{type(error).__name__}>")
                )
            if http_status is not None:
                if issubclass(type(http_status), int) and type(http_status) is not bool:
                    s.http_status = int(http_status)
                else:
                    t.bad("http_status", http_status)
        except Exception:  # pragma: no cover - defensive: never raise into the caller
            self._tracer.warn("update", "posthog_callbacks: span update failed", exc_info=True)
        return self

    def _set_text(self, field: str, value: Any) -> None:
        if value is not None:
            text = self._tracer.text(field, value)
            if text is not None:
                setattr(self._span, field, text)

    def _usage(self, usage: Any) -> Usage | None:
        if type(usage) is not dict and issubclass(type(usage), Usage):
            return cast(Usage, usage)
        try:
            parsed = (
                usage_from_mapping(usage)
                if type(usage) is dict or issubclass(type(usage), Mapping)
                else None
            )
        except Exception:
            parsed = None
        if parsed is None:
            self._tracer.bad("usage", usage)
        return parsed

    def mark_first_token(self) -> None:
        """Record now as the time the first streamed token arrived."""
        if self._span.first_token_time is None:
            self._span.first_token_time = time.time()

    def _child(
        self,
        kind: SpanKind,
        name: Any,
        input: Any,
        metadata: Any,
        model: Any = None,
        provider: Any = None,
        model_parameters: Any = None,
        tools: Any = None,
    ) -> SpanHandle:
        t = self._tracer
        if type(name) is not str or not name:
            name = t.text("name", name) or kind.value
        span = child_span(self._span, new_id(), kind, name)
        # Only what was given is set (the rest keeps the span's defaults, all None), and
        # measured on the way for the open-run budget (open_span_bytes).
        held = ITEM_OVERHEAD_BYTES
        if input is not None:
            span.input, size = _sized(input)
            held += size
        if metadata is not None:
            span.metadata, size = t.mapping_sized("metadata", metadata)
            held += size
        if model is not None:
            span.model = model if type(model) is str and model else t.text("model", model)
        if provider is not None:
            span.provider = normalize_provider(t.text("provider", provider))
        if model_parameters is not None:
            span.model_parameters, size = t.mapping_sized("model_parameters", model_parameters)
            held += size
        if tools is not None:
            span.tools, size = _sized(tools)
            held += size
        root = self._root if self._root is not None else self
        return SpanHandle(t, span, root, held)  # type: ignore[arg-type]

    def span(
        self, name: str, *, input: Any = None, metadata: Mapping[str, Any] | None = None
    ) -> SpanHandle:
        """Start a child span (a step, tool call, retrieval, ...)."""
        return self._child(SpanKind.SPAN, name, input, metadata)

    def generation(
        self,
        name: str,
        *,
        model: str | None = None,
        provider: str | None = None,
        input: Any = None,
        model_parameters: Mapping[str, Any] | None = None,
        tools: Any = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> SpanHandle:
        """Start a child model call; ``input`` is a list of role/content messages."""
        return self._child(
            SpanKind.GENERATION, name, input, metadata, model, provider, model_parameters, tools
        )

    def embedding(
        self,
        name: str,
        *,
        model: str | None = None,
        provider: str | None = None,
        input: Any = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> SpanHandle:
        """Start a child embedding call."""
        return self._child(SpanKind.EMBEDDING, name, input, metadata, model, provider)

    def end(self, *, output: Any = _UNSET, error: str | BaseException | None = None) -> None:
        """End the span and queue it for export (idempotent, never raises)."""
        if self._ended:
            return
        self._ended = True
        try:
            self._finish(output, error)
        except Exception:  # pragma: no cover - defensive: never raise into the caller
            self._tracer.warn("end", "posthog_callbacks: ending a span failed", exc_info=True)

    def _finish(self, output: Any, error: Any) -> None:
        s = self._span
        if output is not _UNSET:
            s.output, self._out = snapshot_sized(output)
        if error is not None:
            self.update(error=error)
        root = self._root
        if root is not None:
            root._open.discard(s.span_id)
            if s.error is not None and root._span.error is None:
                root._span.error = f"span {s.name!r} failed: {s.error}"
        if self._tracer.runs.pop(s.span_id) is s:
            held = self._held
            size = None
            if held >= 0:
                # The estimate of a finished span (sizing.estimate_bytes) is the open-run
                # estimate plus its output and properties.
                out = self._out
                size = held + (out if out >= 0 else value_bytes(s.output))
                if s.properties:
                    size += value_bytes(s.properties)
            self._tracer.submit(s.finish(), size)

    def __enter__(self) -> SpanHandle:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.end(error=exc)

    async def __aenter__(self) -> SpanHandle:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.end(error=exc)


class TraceHandle(SpanHandle):
    """The root of a manual trace (an ``$ai_trace`` event when it ends).

    A trace started with the ``trace_id`` of another trace still active becomes a span
    under that trace instead (see the module docstring).
    """

    __slots__ = ("_open", "_shared_id")

    def __init__(
        self, tracer: ManualTracer, span: OpenSpan, root: None, shared_id: bool, held: int
    ) -> None:
        self._open: set[str] = set()
        self._shared_id = shared_id
        super().__init__(tracer, span, root, held)

    def __enter__(self) -> TraceHandle:
        return self

    async def __aenter__(self) -> TraceHandle:
        return self

    def _finish(self, output: Any, error: Any) -> None:
        """End the trace; any child still open is closed as an error first."""
        if self._open:
            runs = self._tracer.runs
            leftovers = [
                span for span_id in self._open.copy() if (span := runs.pop(span_id)) is not None
            ]
            self._open.clear()
            if leftovers:
                self._tracer.recorder.close_runs(
                    leftovers, "span never ended (its trace ended first)"
                )
        try:
            super()._finish(output, error)
        finally:
            if self._shared_id:
                self._tracer.release(self._span.trace_id)
