"""LlamaIndex -> PostHog: a callback-manager handler and an instrumentation hook.

Two front doors feed the same exporter:

* :class:`CallbackHandler` for LlamaIndex's callback manager
  (``Settings.callback_manager = CallbackManager([CallbackHandler(exporter)])``): query,
  retrieve, synthesize, LLM, embedding, tool and agent-step events.
* :func:`instrument` for the instrumentation module (the root dispatcher): everything
  the callback manager sees plus workflows, agents (``FunctionAgent``, ``ReActAgent``,
  ``AgentWorkflow``), workflow steps and tool calls. Prefer it for new code.

Use one of them per program, not both (each would record the same model calls).
:func:`trace_context` attributes the calls made inside a block to a user or session.

Example:
    >>> from posthog_callbacks import PosthogExporter  # doctest: +SKIP
    >>> from posthog_callbacks.llama_index import instrument, trace_context
    >>> exporter = PosthogExporter()
    >>> handle = instrument(exporter, tags=["rag"])
    >>> with trace_context(user_id="u1", session_id="s1"):
    ...     index.as_query_engine().query("What did the author do?")
    >>> handle.uninstrument()
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

try:
    from llama_index.core.instrumentation import get_dispatcher  # type: ignore[attr-defined]
    from llama_index.core.instrumentation.event_handlers import BaseEventHandler
    from llama_index.core.instrumentation.span import BaseSpan
    from llama_index.core.instrumentation.span_handlers import BaseSpanHandler
except ImportError as exc:  # pragma: no cover - exercised without the extra installed
    raise ImportError(
        "posthog_callbacks.llama_index needs LlamaIndex: "
        'pip install "posthog-callbacks[llama-index]"'
    ) from exc

from .callback import CallbackHandler
from .common import HandlerOptions, check_exporter, log, trace_context
from .dispatcher import InstrumentCore

__all__ = ["CallbackHandler", "InstrumentHandle", "instrument", "trace_context"]

_INSTALL_LOCK = threading.Lock()
_ACTIVE: dict[int, InstrumentHandle] = {}  # id(exporter) -> its active handle


def _bind(handler: Any, core: InstrumentCore) -> None:
    # Kept in the instance __dict__ rather than a pydantic private attribute: those go
    # through BaseModel.__getattr__, measurably slow on a path taken ~50 times a query.
    object.__setattr__(handler, "_core", core)


class _SpanHandler(BaseSpanHandler[BaseSpan]):  # type: ignore[misc]
    """Forwards dispatcher span signals to an :class:`InstrumentCore`; never raises."""

    if TYPE_CHECKING:
        _core: ClassVar[InstrumentCore]

    @classmethod
    def class_name(cls) -> str:
        return "PosthogSpanHandler"

    def span_enter(
        self,
        id_: str,
        bound_args: Any,
        instance: Any = None,
        parent_id: str | None = None,
        tags: Any = None,
        **kwargs: Any,
    ) -> None:
        core = self._core
        try:
            core.span_enter(id_, instance, parent_id, bound_args, tags)
        except Exception:
            core.warn("span_enter")

    def span_exit(
        self, id_: str, bound_args: Any, instance: Any = None, result: Any = None, **kwargs: Any
    ) -> None:
        core = self._core
        try:
            core.span_exit(id_, result)
        except Exception:
            core.warn("span_exit")

    def span_drop(
        self,
        id_: str,
        bound_args: Any,
        instance: Any = None,
        err: BaseException | None = None,
        **kwargs: Any,
    ) -> None:
        core = self._core
        try:
            core.span_drop(id_, err)
        except Exception:
            core.warn("span_drop")

    def new_span(self, *args: Any, **kwargs: Any) -> None:
        return None

    def prepare_to_exit_span(self, *args: Any, **kwargs: Any) -> None:
        return None

    def prepare_to_drop_span(self, *args: Any, **kwargs: Any) -> None:
        return None


class _EventHandler(BaseEventHandler):  # type: ignore[misc]
    """Forwards instrumentation events to an :class:`InstrumentCore`; never raises."""

    if TYPE_CHECKING:
        _core: ClassVar[InstrumentCore]

    @classmethod
    def class_name(cls) -> str:
        return "PosthogEventHandler"

    def handle(self, event: Any, **kwargs: Any) -> None:
        core = self._core
        try:
            core.handle(event)
        except Exception:
            core.warn(f"event {type(event).__name__}")


class InstrumentHandle:
    """What :func:`instrument` returns: the installed handlers and their open runs."""

    def __init__(
        self,
        core: InstrumentCore,
        dispatcher: Any,
        span_handler: _SpanHandler,
        event_handler: _EventHandler,
    ) -> None:
        self._core = core
        self._dispatcher = dispatcher
        self._span_handler = span_handler
        self._event_handler = event_handler
        self.active = True

    @property
    def exporter(self) -> Any:
        """The exporter the handlers record into."""
        return self._core.exporter

    def open_runs(self) -> int:
        """How many LlamaIndex runs are still open (streams included)."""
        return len(self._core.runs)

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
        self._core.close("the LlamaIndex instrumentation was removed while the run was open")
        with _INSTALL_LOCK:
            if _ACTIVE.get(id(self._core.exporter)) is self:
                del _ACTIVE[id(self._core.exporter)]

    def __enter__(self) -> InstrumentHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.uninstrument()


def instrument(
    exporter: Any,
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
    call, streams kept open until their end) and embeddings.

    Args:
        exporter: The :class:`~posthog_callbacks.PosthogExporter` to record into.
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
    check_exporter(exporter)
    options = HandlerOptions.build(
        distinct_id, session_id, trace_id, properties, groups, tags, metadata, privacy_mode
    )
    with _INSTALL_LOCK:
        existing = _ACTIVE.get(id(exporter))
        if existing is not None and existing.active and existing.exporter is exporter:
            # a second pair of handlers would record every run twice
            log.warning(
                "posthog_callbacks: instrument() is already active for this exporter; "
                "returning the existing handle (call uninstrument() first to change "
                "options)"
            )
            return existing
        handle = _install(exporter, options)
        _ACTIVE[id(exporter)] = handle
        return handle


def _install(exporter: Any, options: HandlerOptions) -> InstrumentHandle:
    core = InstrumentCore(exporter, options)
    span_handler = _SpanHandler()
    _bind(span_handler, core)
    event_handler = _EventHandler()
    _bind(event_handler, core)
    dispatcher = get_dispatcher()
    dispatcher.add_span_handler(span_handler)
    dispatcher.add_event_handler(event_handler)
    return InstrumentHandle(core, dispatcher, span_handler, event_handler)
