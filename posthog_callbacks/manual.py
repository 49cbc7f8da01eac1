"""Manual, framework-neutral tracing: ``exporter.trace(...)`` and its children.

Handles are explicit objects (no ambient context), so they work the same from threads and
asyncio tasks. Open spans sit in the exporter's ``manual_runs`` table, so a span that is
never ended is still closed as an error after the TTL or at shutdown.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any

from .spans import OpenSpan, SpanKind, Usage, error_text, snapshot
from .usage import normalize_provider, usage_from_mapping

if TYPE_CHECKING:
    from .exporter import PosthogExporter

__all__ = ["SpanHandle", "TraceHandle"]

_UNSET: Any = object()


class SpanHandle:
    """One open span of a manual trace. Use as a (async) context manager or call :meth:`end`.

    ``update()`` sets what is known so far; an exception leaving the ``with`` block marks
    the span (and its trace) as errors and propagates.
    """

    __slots__ = ("_ended", "_exporter", "_span", "_trace")

    def __init__(
        self, exporter: PosthogExporter, span: OpenSpan, trace: TraceHandle | None
    ) -> None:
        self._exporter = exporter
        self._span = span
        self._trace = trace
        self._ended = False
        exporter.manual_runs.add(span.span_id, span)

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
        ``prompt_tokens``, ...; input counts include cached tokens).
        """
        s = self._span
        if input is not _UNSET:
            s.input = snapshot(input)
        if output is not _UNSET:
            s.output = snapshot(output)
        if name:
            s.name = name
        if model:
            s.model = model
        if provider:
            s.provider = normalize_provider(provider)
        if usage is not None:
            s.usage = usage if isinstance(usage, Usage) else usage_from_mapping(usage)
        if model_parameters:
            s.model_parameters = dict(model_parameters)
        if tools is not None:
            s.tools = snapshot(tools)
        if metadata:
            s.metadata = {**(s.metadata or {}), **metadata}
        if error is not None:
            s.error = error_text(error) if isinstance(error, BaseException) else str(error)
        if status:
            s.status = status
        if http_status is not None:
            s.http_status = http_status
        if base_url:
            s.base_url = base_url
        if stop_reason:
            s.stop_reason = stop_reason
        return self

    def mark_first_token(self) -> None:
        """Record now as the time the first streamed token arrived."""
        if self._span.first_token_time is None:
            self._span.first_token_time = time.time()

    def _child(
        self,
        kind: SpanKind,
        name: str,
        input: Any,
        metadata: Mapping[str, Any] | None,
        model: str | None = None,
        provider: str | None = None,
        model_parameters: Mapping[str, Any] | None = None,
        tools: Any = None,
    ) -> SpanHandle:
        parent = self._span
        span = OpenSpan(
            trace_id=parent.trace_id,
            span_id=str(uuid.uuid4()),
            parent_id=parent.span_id,
            kind=kind,
            name=name,
            input=snapshot(input),
            metadata=dict(metadata) if metadata else None,
            model=model,
            provider=normalize_provider(provider),
            model_parameters=dict(model_parameters) if model_parameters else None,
            tools=snapshot(tools),
            distinct_id=parent.distinct_id,
            session_id=parent.session_id,
            properties=parent.properties,
        )
        return SpanHandle(self._exporter, span, self._trace or self)  # type: ignore[arg-type]

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
        """End the span and queue it for export (idempotent)."""
        if self._ended:
            return
        self._ended = True
        try:
            if output is not _UNSET:
                self._span.output = snapshot(output)
            if error is not None:
                self.update(error=error)
            if self._span.error is not None and self._trace is not None:
                root = self._trace._span
                if root.error is None:
                    root.error = f"span {self._span.name!r} failed: {self._span.error}"
            self._exporter.manual_runs.pop(self._span.span_id)
            self._exporter.submit(self._span.finish())
        except Exception:  # pragma: no cover - defensive: never raise into the caller
            pass

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
    """The root of a manual trace (an ``$ai_trace`` event when it ends)."""

    __slots__ = ()

    @classmethod
    def start(
        cls,
        exporter: PosthogExporter,
        name: str,
        *,
        input: Any,
        distinct_id: str | None,
        session_id: str | None,
        trace_id: str | None,
        metadata: Mapping[str, Any] | None,
        tags: Iterable[str] | None,
        properties: Mapping[str, Any] | None,
    ) -> TraceHandle:
        """Open the root span of a new trace."""
        tid = str(trace_id) if trace_id else str(uuid.uuid4())
        span = OpenSpan(
            trace_id=tid,
            span_id=tid,
            parent_id=None,
            kind=SpanKind.TRACE,
            name=name,
            input=snapshot(input),
            distinct_id=distinct_id,
            session_id=session_id,
            metadata=dict(metadata) if metadata else None,
            tags=tuple(str(t) for t in tags) if tags else (),
            properties=dict(properties) if properties else None,
        )
        return cls(exporter, span, None)

    def __enter__(self) -> TraceHandle:
        return self

    async def __aenter__(self) -> TraceHandle:
        return self

    def end(self, *, output: Any = _UNSET, error: str | BaseException | None = None) -> None:
        """End the trace; any child still open is closed as an error first."""
        if not self._ended:
            leftovers = [
                s
                for s in self._exporter.manual_runs.pop_trace(self.trace_id)
                if s is not self._span
            ]
            self._exporter.manual_runs.add(self._span.span_id, self._span)
            self._exporter.close_runs(leftovers, "span never ended (its trace ended first)")
        super().end(output=output, error=error)
