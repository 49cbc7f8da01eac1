"""The callback-manager front door: ``CBEventType`` start/end pairs -> spans."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from contextvars import ContextVar
from typing import Any

from llama_index.core.callbacks.base_handler import BaseCallbackHandler
from llama_index.core.callbacks.schema import CBEventType, EventPayload
from llama_index.core.instrumentation.dispatcher import (  # type: ignore[attr-defined]
    active_instrument_tags,
)

from ..exporter import as_exporter
from ..spans import OpenSpan, SpanKind, new_id
from ..tracing import WarnOnce
from .extract import (
    fill_generation,
    model_and_provider,
    model_parameters,
    response_fields,
    tools_of,
)
from .instrument import is_instrumented
from .payloads import describe_end, describe_start, last_content
from .runs import DoorRuns
from .runs import root_key as root_key_of
from .trace import HandlerOptions, TraceInfo, describe_error

__all__ = ["CallbackHandler"]

log = logging.getLogger(__name__)

_ROOT = "root"  # LlamaIndex's BASE_TRACE_EVENT: the parent of top-level events


class _Active:
    """The trace running in this task or thread (a ContextVar value).

    ``trace`` is ``None`` when this handler does not record the trace (the
    ``instrument()`` door records it).
    """

    __slots__ = ("depth", "root_key", "trace")

    def __init__(self, trace: TraceInfo | None, root_key: str | None) -> None:
        self.trace = trace
        self.root_key = root_key
        self.depth = 0


class CallbackHandler(BaseCallbackHandler):  # type: ignore[misc]
    """Record LlamaIndex callback-manager events as PostHog traces.

    Each callback-manager trace (``query``, ``chat``, ``index_construction`` ...) becomes
    one PostHog trace; ``LLM`` events become generations (one per model call, streams
    kept open until they end), ``EMBEDDING`` events embeddings, everything else spans
    with their query strings, retrieved nodes, tool arguments and outputs.

    When :func:`~posthog_callbacks.llama_index.instrument` is active for the same
    exporter, this handler steps aside (records nothing new), so each model call is
    recorded once, by the richer instrumentation door.

    Args:
        exporter: A :class:`~posthog_callbacks.PosthogExporter`, a ``posthog.Posthog``
            client (wrapped in an exporter), or ``None`` for an exporter configured from
            the environment (``POSTHOG_API_KEY``).
        distinct_id: PostHog distinct id for every event (a ``trace_context`` ``user_id``
            wins).
        session_id: ``$ai_session_id`` for every trace.
        trace_id: Put every trace of this handler into this one trace.
        properties: Extra properties on every event.
        groups: PostHog groups on every event.
        tags: Tags on every trace.
        metadata: Metadata on every trace.
        privacy_mode: Send no inputs or outputs.
        event_starts_to_ignore: ``CBEventType`` starts not to record.
        event_ends_to_ignore: ``CBEventType`` ends not to record.

    Raises:
        TypeError: An option has the wrong type, or ``exporter`` is not an exporter.

    Example:
        >>> from llama_index.core import Settings  # doctest: +SKIP
        >>> from llama_index.core.callbacks import CallbackManager
        >>> Settings.callback_manager = CallbackManager([CallbackHandler(exporter)])
    """

    def __init__(
        self,
        exporter: Any = None,
        *,
        distinct_id: str | None = None,
        session_id: str | None = None,
        trace_id: str | None = None,
        properties: Mapping[str, Any] | None = None,
        groups: Mapping[str, Any] | None = None,
        tags: Sequence[str] | None = None,
        metadata: Mapping[str, Any] | None = None,
        privacy_mode: bool = False,
        event_starts_to_ignore: Sequence[CBEventType] | None = None,
        event_ends_to_ignore: Sequence[CBEventType] | None = None,
    ) -> None:
        recorder = as_exporter(exporter)
        self.options = HandlerOptions.build(
            distinct_id, session_id, trace_id, properties, groups, tags, metadata, privacy_mode
        )
        super().__init__(list(event_starts_to_ignore or []), list(event_ends_to_ignore or []))
        self.exporter = recorder
        self._warned = WarnOnce(log)
        self.runs = DoorRuns(recorder, self._warned)
        self._active: ContextVar[_Active | None] = ContextVar(
            f"posthog_llama_cb_{id(self)}", default=None
        )
        self._open_llm: ContextVar[str | None] = ContextVar(
            f"posthog_llama_cb_llm_{id(self)}", default=None
        )

    def open_runs(self) -> int:
        """How many callback-manager events are still open (streams included)."""
        return len(self.runs)

    def _warn(self, where: str) -> None:
        self._warned(
            where,
            "posthog_callbacks: LlamaIndex CallbackHandler failed in %s "
            "(further failures there are not logged)",
            where,
            exc_info=True,
        )

    # -- traces ---------------------------------------------------------------------------

    def start_trace(self, trace_id: str | None = None) -> None:
        """Open the root span of a callback-manager trace (``query``, ``chat`` ...)."""
        try:
            active = self._active.get()
            if active is not None:
                active.depth += 1  # a stream's model call re-entering its query's trace
                return
            if is_instrumented(self.exporter):
                self._active.set(_Active(None, None))  # instrument() records this trace
                return
            trace = self.options.new_trace(self.exporter, active_instrument_tags.get())
            root_key = None
            if trace.sampled:
                span_id = trace.root_span_id
                parent = trace.root_parent_id
                span = trace.span(
                    span_id,
                    parent,
                    SpanKind.TRACE if parent is None else SpanKind.SPAN,
                    trace_id or "llama_index",
                    is_root=True,
                )
                root_key = trace.root_key = root_key_of(span_id)
                self.runs.add(root_key, span)
            self._active.set(_Active(trace, root_key))
        except Exception:
            self._warn("start_trace")

    def end_trace(
        self, trace_id: str | None = None, trace_map: dict[str, list[str]] | None = None
    ) -> None:
        """Close the root span (later, if a stream of the trace is still being read)."""
        try:
            active = self._active.get()
            if active is None:
                return
            if active.depth > 0:
                active.depth -= 1
                return
            self._active.set(None)
            root = self.runs.get(active.root_key)
            if root is not None:
                self.runs.end_root(root)
        except Exception:
            self._warn("end_trace")

    # -- events ---------------------------------------------------------------------------

    def on_event_start(
        self,
        event_type: CBEventType,
        payload: dict[str, Any] | None = None,
        event_id: str = "",
        parent_id: str = "",
        **kwargs: Any,
    ) -> str:
        """Open a span for a callback-manager event."""
        try:
            self._start(event_type, payload or {}, event_id, parent_id)
        except Exception:
            self._warn(f"on_event_start({event_type})")
        return event_id

    def _start(
        self, event_type: CBEventType, payload: dict[str, Any], event_id: str, parent_id: str
    ) -> None:
        parent = self.runs.get(parent_id) if parent_id and parent_id != _ROOT else None
        if event_type == CBEventType.EXCEPTION:
            target = parent
            if target is None:
                active = self._active.get()
                target = self.runs.get(active.root_key) if active and active.root_key else None
            if target is not None and target.error is None:
                target.error = describe_error(payload.get(EventPayload.EXCEPTION))
            return
        if event_type == CBEventType.LLM:
            outer = self._open_llm.get()
            if outer is not None and self.runs.get(outer) is not None:
                self.runs.skip(event_id, outer)  # chat() -> complete(): one generation
                return
        trace, span_id, parent_span, root_key, top_level = self._place(parent)
        if trace is None:
            return
        kind, name, value = describe_start(event_type, payload)
        span = trace.span(span_id, parent_span, kind, name, is_root=parent_span is None)
        span.extra["root_key"] = root_key
        span.extra["trace"] = trace
        if parent is not None:
            span.extra["parent_key"] = parent_id
        if kind is SpanKind.GENERATION:
            serialized = payload.get(EventPayload.SERIALIZED)
            span.model, span.provider = model_and_provider(serialized)
            extra = payload.get(EventPayload.ADDITIONAL_KWARGS)
            span.model_parameters = model_parameters(serialized, extra)
            span.tools = tools_of(extra)
            self._open_llm.set(event_id)
        elif kind is SpanKind.EMBEDDING:
            span.model, span.provider = model_and_provider(payload.get(EventPayload.SERIALIZED))
            span.name = f"{span.model or 'embedding'}.embed"
        span.input = value
        if top_level and root_key is not None:
            root = self.runs.get(root_key)
            if root is not None and kind is not SpanKind.EMBEDDING:
                if root.input is None:
                    root.input = last_content(value) if kind is SpanKind.GENERATION else value
                span.extra["feeds_root"] = True
        self.runs.add(event_id, span)

    def _place(
        self, parent: OpenSpan | None
    ) -> tuple[TraceInfo | None, str, str | None, str | None, bool]:
        """Trace, span id, parent span id and root key of a new event's span."""
        if parent is not None:  # every span this handler opened carries its trace
            trace: TraceInfo = parent.extra["trace"]
            return trace, new_id(), parent.span_id, trace.root_key, False
        active = self._active.get()
        if active is not None:
            if active.trace is None or not active.trace.sampled or active.root_key is None:
                return None, "", None, None, False
            return (active.trace, new_id(), active.trace.root_span_id, active.root_key, True)
        if is_instrumented(self.exporter):
            return None, "", None, None, False  # instrument() records this call
        # An event outside any trace (e.g. a direct embedding call) is its own root.
        trace = self.options.new_trace(self.exporter)
        if not trace.sampled:
            return None, "", None, None, False
        return trace, trace.root_span_id, trace.root_parent_id, None, False

    def on_event_end(
        self,
        event_type: CBEventType,
        payload: dict[str, Any] | None = None,
        event_id: str = "",
        **kwargs: Any,
    ) -> None:
        """Close the span of a callback-manager event."""
        try:
            self._end(event_type, payload or {}, event_id)
        except Exception:
            self._warn(f"on_event_end({event_type})")

    def _end(self, event_type: CBEventType, payload: dict[str, Any], event_id: str) -> None:
        span = self.runs.pop(event_id)
        if span is None:
            outer = self.runs.take_skipped(event_id)
            if outer is not None:
                response = payload.get(EventPayload.RESPONSE) or payload.get(
                    EventPayload.COMPLETION
                )
                if response is not None:
                    outer.extra["inner_usage"] = response_fields(response, outer.provider)[0]
            return
        if event_type == CBEventType.LLM and self._open_llm.get() == event_id:
            self._open_llm.set(None)
        try:
            self._fill_end(span, event_type, payload)
        except Exception:
            self._warn(f"on_event_end({event_type})")  # still sent below, with what was read
        if span.error is not None:
            try:
                self._propagate_error(span)
            except Exception:
                self._warn("error propagation")
        self.runs.submit(span)

    def _fill_end(self, span: OpenSpan, event_type: CBEventType, payload: dict[str, Any]) -> None:
        """Record an event's end payload on its span (its output, error or stream)."""
        exc = payload.get(EventPayload.EXCEPTION)
        if exc is not None:
            if isinstance(exc, GeneratorExit):
                span.status = "abandoned"
                span.usage_missing_reason = "the stream was closed before its end"
            else:
                span.error = describe_error(exc)
        elif not payload and span.extra.get("child_error"):
            # LlamaIndex reports an exception once, on the innermost event; the events
            # it then unwinds through end with an empty payload.
            span.error = span.extra["child_error"]
        elif span.kind is SpanKind.GENERATION:
            response = payload.get(EventPayload.RESPONSE)
            is_chat = response is not None
            if response is None:
                response = payload.get(EventPayload.COMPLETION)
            fill_generation(span, response, is_chat)
            if span.extra.get("feeds_root"):
                root = self.runs.get(span.extra["root_key"])
                if root is not None:
                    root.output = last_content(span.output)
        else:
            describe_end(span, event_type, payload)
            if span.extra.get("feeds_root"):
                self._feed_root(span)
            response = payload.get(EventPayload.RESPONSE)
            if response is not None:
                self._wrap_stream(span, response)

    def _propagate_error(self, span: OpenSpan) -> None:
        """Tell the parent that this child failed (the root takes the first error)."""
        parent_key = span.extra.get("parent_key")
        if span.extra.get("feeds_root"):
            parent_key = span.extra.get("root_key")
        parent = self.runs.get(parent_key) if parent_key else None
        if parent is not None:
            parent.extra["child_error"] = span.error
            if parent_key == span.extra.get("root_key") and parent.error is None:
                parent.error = span.error

    def _feed_root(self, span: OpenSpan) -> None:
        """Give the trace root the output of its top-level event."""
        root_key = span.extra.get("root_key")
        root = self.runs.get(root_key) if root_key else None
        if root is not None and span.output is not None:
            root.output = span.output

    def _wrap_stream(self, span: OpenSpan, response: Any) -> None:
        """Keep the trace open while a returned token stream is read (maybe later)."""
        root_key = span.extra.get("root_key")
        root = self.runs.get(root_key)
        active = self._active.get()
        if root is None or active is None or active.root_key != root_key:
            return
        self.runs.wrap_stream(response, root, lambda: self._active.set(active), self._active.reset)
