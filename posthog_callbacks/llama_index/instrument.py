"""``instrument()``: install the dispatcher front door on LlamaIndex's root dispatcher.

One span handler and one event handler per exporter forward to a
:class:`~.dispatcher.DispatcherRecorder`. The registry of active handles is also how the
callback-manager door steps aside: when both doors record into one exporter, the
dispatcher door (the richer one) records every model call, embedding, tool and
retrieval, and the callback door records nothing.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from llama_index.core.instrumentation import get_dispatcher  # type: ignore[attr-defined]
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.span import BaseSpan
from llama_index.core.instrumentation.span_handlers import BaseSpanHandler

from ..exporter import as_exporter
from ..tracing import Recorder
from .dispatcher import DispatcherRecorder
from .trace import HandlerOptions

__all__ = ["InstrumentHandle", "instrument", "is_instrumented"]

log = logging.getLogger(__name__)

_INSTALL_LOCK = threading.Lock()
_ACTIVE: dict[int, InstrumentHandle] = {}  # id(exporter) -> its active handle


def is_instrumented(exporter: Any) -> bool:
    """Whether an :func:`instrument` handle is active for ``exporter``."""
    handle = _ACTIVE.get(id(exporter))
    return handle is not None and handle.active and handle.exporter is exporter


def _bind(handler: Any, recorder: DispatcherRecorder, *methods: str) -> None:
    """Make ``recorder``'s methods the handler's own: the dispatcher calls them directly.

    Set in the instance ``__dict__`` (which shadows the class's methods), not as pydantic
    attributes: the dispatcher makes ~40 such calls a query, and a forwarding method in
    between would double their cost. The recorder's methods never raise.
    """
    object.__setattr__(handler, "_recorder", recorder)
    for name in methods:
        object.__setattr__(handler, name, getattr(recorder, name))


class _SpanHandler(BaseSpanHandler[BaseSpan]):  # type: ignore[misc]
    """Dispatcher span signals -> a :class:`DispatcherRecorder` (bound by :func:`_bind`)."""

    if TYPE_CHECKING:
        _recorder: ClassVar[DispatcherRecorder]

    @classmethod
    def class_name(cls) -> str:
        return "PosthogSpanHandler"

    def new_span(self, *args: Any, **kwargs: Any) -> None:
        return None

    def prepare_to_exit_span(self, *args: Any, **kwargs: Any) -> None:
        return None

    def prepare_to_drop_span(self, *args: Any, **kwargs: Any) -> None:
        return None


class _EventHandler(BaseEventHandler):  # type: ignore[misc]
    """Instrumentation events -> a :class:`DispatcherRecorder` (bound by :func:`_bind`)."""

    if TYPE_CHECKING:
        _recorder: ClassVar[DispatcherRecorder]

    @classmethod
    def class_name(cls) -> str:
        return "PosthogEventHandler"

    def handle(self, event: Any, **kwargs: Any) -> None:
        self._recorder.handle(event, **kwargs)  # shadowed by the bound method


class InstrumentHandle:
    """What :func:`instrument` returns: the installed handlers and their open runs."""

    def __init__(
        self,
        recorder: DispatcherRecorder,
        dispatcher: Any,
        span_handler: _SpanHandler,
        event_handler: _EventHandler,
    ) -> None:
        self._recorder = recorder
        self._dispatcher = dispatcher
        self._span_handler = span_handler
        self._event_handler = event_handler
        self.active = True

    @property
    def exporter(self) -> Recorder:
        """The exporter the handlers record into."""
        return self._recorder.exporter

    def open_runs(self) -> int:
        """How many LlamaIndex runs are still open (streams included)."""
        return len(self._recorder.runs)

    def open_nodes(self) -> int:
        """How many dispatcher spans the handlers still track (0 when idle)."""
        return len(self._recorder.nodes)

    def uninstrument(self) -> None:
        """Remove both handlers from the dispatcher and close runs still open as errors.

        Idempotent.
        """
        if not self.active:
            return
        self.active = False
        d = self._dispatcher
        d.span_handlers = [h for h in d.span_handlers if h is not self._span_handler]
        d.event_handlers = [h for h in d.event_handlers if h is not self._event_handler]
        self._recorder.close("the LlamaIndex instrumentation was removed while the run was open")
        with _INSTALL_LOCK:
            if _ACTIVE.get(id(self.exporter)) is self:
                del _ACTIVE[id(self.exporter)]

    def __enter__(self) -> InstrumentHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.uninstrument()


def instrument(
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
) -> InstrumentHandle:
    """Record every LlamaIndex run of this process through the instrumentation module.

    Installs a span handler and an event handler on LlamaIndex's root dispatcher. Each
    top-level call (a query, a chat, a workflow or agent ``run``, a direct model call)
    becomes one trace: workflow run -> steps -> model calls and tool calls, with
    retrievers, synthesizers and rerankers as spans, model calls as generations (one per
    call, streams kept open until their end) and embeddings (one per embedding call).

    A :class:`CallbackHandler` on the same exporter steps aside while this is active, so
    each model call is recorded once.

    Args:
        exporter: A :class:`~posthog_callbacks.PosthogExporter`, a ``posthog.Posthog``
            client (wrapped in an exporter), or ``None`` for an exporter configured from
            the environment (``POSTHOG_API_KEY``).
        distinct_id: PostHog distinct id for every event (a :func:`trace_context`
            ``user_id`` wins).
        session_id: ``$ai_session_id`` for every trace.
        trace_id: Put every top-level call into this one trace.
        properties: Extra properties on every event.
        groups: PostHog groups on every event.
        tags: Tags on every trace.
        metadata: Metadata on every trace.
        privacy_mode: Send no inputs or outputs.

    Returns:
        An :class:`InstrumentHandle`; call ``uninstrument()`` to remove the handlers.

    Raises:
        TypeError: An option has the wrong type, or ``exporter`` is not an exporter.
    """
    recorder = as_exporter(exporter)
    options = HandlerOptions.build(
        distinct_id, session_id, trace_id, properties, groups, tags, metadata, privacy_mode
    )
    with _INSTALL_LOCK:
        existing = _ACTIVE.get(id(recorder))
        if existing is not None and existing.active and existing.exporter is recorder:
            # a second pair of handlers would record every run twice
            log.warning(
                "posthog_callbacks: instrument() is already active for this exporter; "
                "returning the existing handle (call uninstrument() first to change "
                "options)"
            )
            return existing
        handle = _install(recorder, options)
        _ACTIVE[id(recorder)] = handle
        return handle


def _install(exporter: Recorder, options: HandlerOptions) -> InstrumentHandle:
    recorder = DispatcherRecorder(exporter, options)
    span_handler = _SpanHandler()
    _bind(span_handler, recorder, "span_enter", "span_exit", "span_drop")
    event_handler = _EventHandler()
    _bind(event_handler, recorder, "handle")
    dispatcher = get_dispatcher()
    dispatcher.add_span_handler(span_handler)
    dispatcher.add_event_handler(event_handler)
    return InstrumentHandle(recorder, dispatcher, span_handler, event_handler)
