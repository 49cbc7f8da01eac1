"""The LangChain callback handler: records runs as parent-linked spans.

Pass ``CallbackHandler(exporter)`` in ``config={"callbacks": [...]}`` of any runnable,
chain, agent or LangGraph graph, or call :func:`~posthog_callbacks.langchain.instrument`
once to attach one handler to every LangChain run in the process.
"""

from __future__ import annotations

import inspect
import logging
import os
import threading
import time
import weakref
from collections.abc import Hashable, Iterator, Mapping, Sequence
from typing import Any, ClassVar
from uuid import UUID

from langchain_core.callbacks.base import BaseCallbackHandler

from ..exporter import as_exporter
from ..sizing import value_bytes
from ..spans import OpenSpan, SpanKind, new_id
from ..tracing import (
    OWNER_KEYS,
    Recorder,
    RunTable,
    WarnOnce,
    child_span,
    open_span_bytes,
    trace_owner,
)
from . import convert as cv
from . import model as lm

__all__ = ["CallbackHandler"]

log = logging.getLogger(__name__)

_MAX_SKIPPED = 100_000
# Enum members read once (a class attribute lookup on an Enum is not free).
_SPAN, _TRACE, _GENERATION = SpanKind.SPAN, SpanKind.TRACE, SpanKind.GENERATION
_LEFTOVER_REASONS = {
    "cancelled": "cancelled: the trace was cancelled before this run ended",
    "abandoned": "abandoned: the stream was closed before this run ended",
    "interrupted": "interrupted: the graph paused before this run ended",
}


class _SharedRuns:
    """The open LangChain runs of one exporter, shared by every handler recording into it.

    Sharing is what makes each run recorded once whichever of our handlers see it (an
    explicit ``CallbackHandler(ex)`` in ``callbacks`` plus :func:`instrument`, the same
    handler class passed twice, a handler per call): the first handler to start a run owns
    it (``span.extra["by"]``) and the others leave it alone, except that an explicit
    handler takes a run over from an ``instrument()`` handler (its options win). The table
    belongs to the exporter, not to a handler, so open runs outlive a per-call handler.
    """

    __slots__ = ("sized", "skipped", "table", "warn")

    def __init__(self, sized: bool) -> None:
        # Whether the exporter's submit() takes a span's byte estimate (Recorder.submit's
        # ``size``): then a run keeps the estimate made when it entered the table
        # (``extra["size"]``) and is queued with it, so its content is walked once.
        self.sized = sized
        # Keyed by _key(run_id).
        self.table: RunTable[Hashable] = RunTable()
        # Runs of traces the exporter did not sample: _key(run id) -> trace id.
        self.skipped: dict[Hashable, str] = {}
        # Advice about how runs are recorded (not failures): once per exporter.
        self.warn = WarnOnce(log)


_shared_lock = threading.Lock()
_shared: weakref.WeakKeyDictionary[Any, _SharedRuns] = weakref.WeakKeyDictionary()


def _reset_after_fork() -> None:
    # The child starts with one thread: a lock another parent thread held stays held.
    global _shared_lock
    _shared_lock = threading.Lock()


os.register_at_fork(after_in_child=_reset_after_fork)


def _runs_of(exporter: Recorder) -> _SharedRuns:
    """The shared runs of ``exporter`` (its own, when it cannot be a weak dict key)."""
    try:
        with _shared_lock:
            runs = _shared.get(exporter)
            if runs is None:
                runs = _shared[exporter] = _SharedRuns(_takes_size(exporter))
                fresh = True
            else:
                fresh = False
    except TypeError:  # not weak-referenceable or not hashable
        runs, fresh = _SharedRuns(_takes_size(exporter)), True
    if fresh:
        exporter.register_runs(runs.table)
    return runs


def _takes_size(exporter: Recorder) -> bool:
    """Whether ``exporter.submit`` accepts a span's byte estimate after the span (an
    exporter-like object written before ``Recorder.submit`` had ``size`` may not)."""
    try:
        inspect.signature(exporter.submit).bind(None, None)
    except Exception:  # no signature, or not one that takes a second argument
        return False
    return True


def _key(run_id: Any) -> Hashable:
    """A run id as a key of the run table: a UUID's integer (hashed in C, where a ``UUID``
    hashes in Python on each of the few lookups a run costs; equal for a UUID subclass, as
    UUID equality is), anything else as it is."""
    return run_id.int if isinstance(run_id, UUID) else run_id


def _lineage(node: Any) -> Iterator[OpenSpan]:
    """``node`` and its open ancestors, nearest first (at most 1000)."""
    for _ in range(1000):
        if not isinstance(node, OpenSpan):
            return
        yield node
        node = node.extra.get("parent")


class CallbackHandler(BaseCallbackHandler):
    """Records LangChain runs (chains, models, tools, retrievers) as PostHog ``$ai_*`` events.

    One instance may serve many concurrent invocations: parent links come only from
    ``run_id`` / ``parent_run_id`` through a thread-safe run table. Callbacks never raise
    into the caller and do only cheap work on its thread; translation and I/O happen on
    the exporter's worker.

    Args:
        exporter: A :class:`~posthog_callbacks.PosthogExporter`, or a ``posthog.Posthog``
            client (wrapped as ``PosthogExporter(sink=client)``). ``None`` builds an
            exporter from the environment (``POSTHOG_API_KEY``).
        client: Alias of ``exporter`` for a ``posthog.Posthog`` client, matching
            ``posthog.ai.langchain.CallbackHandler(client=...)``.
        distinct_id: The user every trace belongs to, unless run metadata says otherwise
            (``user_id`` / ``userId``).
        session_id: Session of every trace, unless run metadata (``session_id`` /
            ``sessionId``) or LangGraph's ``thread_id`` gives one.
        trace_id: A fixed trace id for every run recorded by this handler.
        trace_name: Name of the trace root, instead of the root run's name.
        properties: Extra properties on every event.
        groups: PostHog groups of every event.
        tags: Tags added to every event (``{tag: true}``).
        privacy_mode: Send no inputs or outputs.
    """

    run_inline = True
    raise_error = False
    #: True for the handler :func:`instrument` attaches: an explicit handler of ours on
    #: the same exporter takes over the runs it sees.
    steps_aside: ClassVar[bool] = False

    def __init__(
        self,
        exporter: Any = None,
        *,
        client: Any = None,
        distinct_id: Any = None,
        session_id: Any = None,
        trace_id: Any = None,
        trace_name: str | None = None,
        properties: Mapping[str, Any] | None = None,
        groups: Mapping[str, Any] | None = None,
        tags: Sequence[str] | None = None,
        privacy_mode: bool = False,
    ) -> None:
        super().__init__()
        if tags is not None and (
            isinstance(tags, str) or not all(isinstance(t, str) for t in tags)
        ):
            raise TypeError("tags must be a sequence of strings")
        self._exporter = as_exporter(exporter if exporter is not None else client)
        self._distinct_id = str(distinct_id) if distinct_id is not None else None
        self._session_id = str(session_id) if session_id is not None else None
        self._trace_id = str(trace_id) if trace_id is not None else None
        self._trace_name = trace_name
        self._properties = dict(properties) if properties else None
        self._groups = dict(groups) if groups else None
        self._tags = tuple(tags) if tags else ()
        self._privacy_mode = bool(privacy_mode)
        self._shared = shared = _runs_of(self._exporter)
        self._runs: RunTable[Hashable] = shared.table
        self._skipped: dict[Hashable, str] = shared.skipped
        self._sized = shared.sized
        self._warn = WarnOnce(log)
        self.disabled = False

    @property
    def exporter(self) -> Recorder:
        """The exporter this handler records into."""
        return self._exporter

    @property
    def callback_errors(self) -> int:
        """How many callbacks failed (each kind is logged once)."""
        return self._warn.count

    def open_runs(self) -> int:
        """How many LangChain runs are in flight in this handler's exporter (diagnostics)."""
        return len(self._runs)

    # -- chains -------------------------------------------------------------------

    def on_chain_start(
        self,
        serialized: dict[str, Any] | None,
        inputs: Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """Open a chain span (the trace root when it has no parent)."""
        try:
            span = self._start(
                run_id, parent_run_id, _SPAN, serialized, kwargs, "chain", tags, metadata
            )
            if span is not None:
                size = -1
                try:
                    span.input, size = cv.plain_sized(inputs)
                finally:
                    self._add(run_id, span, size)
        except Exception as exc:
            self._failed("on_chain_start", exc)

    def on_chain_end(
        self, outputs: Any, *, run_id: UUID, parent_run_id: UUID | None = None, **kwargs: Any
    ) -> None:
        """Close a chain span; streaming chains report their real inputs here."""
        self._end_ok("on_chain_end", run_id, outputs, kwargs.get("inputs"))

    def on_chain_error(
        self,
        error: BaseException,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        """Close a chain span as failed (or interrupted / cancelled: not an error)."""
        self._end_error("on_chain_error", run_id, error, kwargs.get("inputs"))

    # -- models -------------------------------------------------------------------

    def on_chat_model_start(
        self,
        serialized: dict[str, Any] | None,
        messages: list[list[Any]],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """Open a generation span for a chat model call."""
        try:
            span = self._start_model(serialized, run_id, parent_run_id, tags, metadata, kwargs)
            if span is not None:
                size = -1
                try:
                    span.input, size = cv.messages_sized(messages)
                finally:
                    self._add(run_id, span, size)
        except Exception as exc:
            self._failed("on_chat_model_start", exc)

    def on_llm_start(
        self,
        serialized: dict[str, Any] | None,
        prompts: list[str],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """Open a generation span for a text-completion model call."""
        try:
            span = self._start_model(serialized, run_id, parent_run_id, tags, metadata, kwargs)
            if span is not None:
                try:
                    span.input = [{"role": "user", "content": p} for p in prompts]
                finally:
                    self._add(run_id, span)
        except Exception as exc:
            self._failed("on_llm_start", exc)

    def _start_model(
        self,
        serialized: dict[str, Any] | None,
        run_id: UUID,
        parent_run_id: UUID | None,
        tags: list[str] | None,
        metadata: dict[str, Any] | None,
        kwargs: dict[str, Any],
    ) -> OpenSpan | None:
        span = self._start(
            run_id,
            parent_run_id,
            _GENERATION,
            serialized,
            kwargs,
            "generation",
            tags,
            metadata,
        )
        if span is not None:
            try:
                lm.start_generation(span, serialized, kwargs.get("invocation_params"), metadata)
            except Exception:
                self._add(run_id, span)  # recorded without its model details
                raise
        return span

    def on_llm_new_token(self, token: Any, *, run_id: UUID, **kwargs: Any) -> None:
        """Record the time of the first streamed token."""
        try:
            span = self._runs.get(_key(run_id))
            if span is not None and span.first_token_time is None:
                span.first_token_time = time.time()
        except Exception as exc:
            self._failed("on_llm_new_token", exc)

    def on_stream_event(self, event: Any, *, run_id: UUID, **kwargs: Any) -> None:
        """``stream_events(version="v3")``: the first content event is the first token."""
        try:
            span = self._runs.get(_key(run_id))
            if (
                span is not None
                and span.first_token_time is None
                and isinstance(event, dict)
                and event.get("event") in ("content-block-start", "content-block-delta")
            ):
                span.first_token_time = time.time()
        except Exception as exc:
            self._failed("on_stream_event", exc)

    def on_llm_end(
        self, response: Any, *, run_id: UUID, parent_run_id: UUID | None = None, **kwargs: Any
    ) -> None:
        """Close a generation span with output, served model, usage and stop reason."""
        span = None
        try:
            span = self._take(run_id)
            if span is None:
                return
            params = span.model_parameters
            output_bytes = lm.finish_generation(span, response)
            if span.model_parameters is not params:  # a stream: {..., "stream": True}
                self._resized(span, params, span.model_parameters)
            self._submit(span, output_bytes)
            if span.usage_missing_reason is lm.OPENAI_STREAM_WITHOUT_USAGE:
                self._shared.warn(
                    "openai-stream-usage",
                    "posthog_callbacks: an OpenAI stream reported no token usage, so PostHog "
                    "prices it at $0. %s",
                    lm.OPENAI_STREAM_WITHOUT_USAGE,
                )
        except Exception as exc:
            self._failed("on_llm_end", exc)
            self._rescue(span)

    def on_llm_error(
        self,
        error: BaseException,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        """Close a generation span as failed, with the provider's HTTP status."""
        try:
            span = self._runs.get(_key(run_id))
            if span is not None:
                span.http_status = lm.http_status(error)
        except Exception as exc:
            self._failed("on_llm_error", exc)
        self._end_error("on_llm_error", run_id, error, None)

    # -- tools and retrievers -------------------------------------------------------

    def on_tool_start(
        self,
        serialized: dict[str, Any] | None,
        input_str: str,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        inputs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """Open a tool span; structured ``inputs`` win over ``input_str``."""
        try:
            span = self._start(
                run_id, parent_run_id, _SPAN, serialized, kwargs, "tool", tags, metadata
            )
            if span is not None:
                size = -1
                try:
                    if inputs is not None:
                        span.input, size = cv.plain_sized(inputs)
                    else:
                        span.input = input_str
                finally:
                    self._add(run_id, span, size)
        except Exception as exc:
            self._failed("on_tool_start", exc)

    def on_tool_end(self, output: Any, *, run_id: UUID, **kwargs: Any) -> None:
        """Close a tool span (a ``ToolMessage`` output becomes a tool message dict)."""
        self._end_ok("on_tool_end", run_id, output)

    def on_tool_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        """Close a tool span as failed."""
        self._end_error("on_tool_error", run_id, error, None)

    def on_retriever_start(
        self,
        serialized: dict[str, Any] | None,
        query: str,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """Open a retriever span."""
        try:
            span = self._start(
                run_id,
                parent_run_id,
                _SPAN,
                serialized,
                kwargs,
                "retriever",
                tags,
                metadata,
            )
            if span is not None:
                span.input = query
                self._add(run_id, span)
        except Exception as exc:
            self._failed("on_retriever_start", exc)

    def on_retriever_end(self, documents: Sequence[Any], *, run_id: UUID, **kwargs: Any) -> None:
        """Close a retriever span with its documents."""
        self._end_ok("on_retriever_end", run_id, documents)

    def on_retriever_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        """Close a retriever span as failed."""
        self._end_error("on_retriever_error", run_id, error, None)

    # -- point events -------------------------------------------------------------------

    def on_custom_event(
        self,
        name: str,
        data: Any,
        *,
        run_id: UUID,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """A ``dispatch_custom_event`` becomes an instant span under the run that sent it."""
        try:
            parent = self._owned(run_id)
            if parent is not None:
                self._point(parent, cv.safe_name(name, "custom_event"), cv.plain(data), None)
        except Exception as exc:
            self._failed("on_custom_event", exc)

    def on_agent_action(self, action: Any, *, run_id: UUID, **kwargs: Any) -> None:
        """An agent's decision to call a tool, as an instant span under the agent run."""
        try:
            parent = self._owned(run_id)
            if parent is not None:
                tool = getattr(action, "tool", None)
                self._point(
                    parent,
                    f"agent_action: {cv.safe_name(tool, '?')}",
                    {
                        "tool": tool,
                        "tool_input": cv.plain(getattr(action, "tool_input", None)),
                        "log": getattr(action, "log", None),
                    },
                    None,
                )
        except Exception as exc:
            self._failed("on_agent_action", exc)

    def on_agent_finish(self, finish: Any, *, run_id: UUID, **kwargs: Any) -> None:
        """An agent's final answer, as an instant span under the agent run."""
        try:
            parent = self._owned(run_id)
            if parent is not None:
                self._point(
                    parent,
                    "agent_finish",
                    getattr(finish, "log", None),
                    cv.plain(getattr(finish, "return_values", None)),
                )
        except Exception as exc:
            self._failed("on_agent_finish", exc)

    def on_retry(self, retry_state: Any, *, run_id: UUID, **kwargs: Any) -> None:
        """Count retries of a run (``retries`` property of its event)."""
        try:
            span = self._owned(run_id)
            if span is not None:
                span.extra["retries"] = span.extra.get("retries", 0) + 1
        except Exception as exc:
            self._failed("on_retry", exc)

    # -- shared endings -----------------------------------------------------------------

    def _owned(self, run_id: UUID) -> OpenSpan | None:
        """The open run ``run_id`` if this handler records it (another of ours may)."""
        span = self._runs.get(_key(run_id))
        if span is None or span.extra.get("by") is not self:
            return None
        return span

    def _take(self, run_id: UUID, inputs: Any = None) -> OpenSpan | None:
        """Remove the ending run from the table; streaming runs report real inputs here."""
        key = _key(run_id)
        span = self._runs.get(key)
        if span is None:
            if self._skipped:
                self._skipped.pop(key, None)  # a run of a trace that was not sampled
            return None
        if span.extra.get("by") is not self:
            return None  # another handler of ours records it
        if self._runs.pop(key) is None:
            return None  # closed meanwhile (TTL sweep, eviction, shutdown)
        if inputs is not None:
            old = span.input
            span.input = cv.plain(inputs)
            self._resized(span, old, span.input)
        return span

    def _end_ok(self, callback: str, run_id: UUID, output: Any, inputs: Any = None) -> None:
        span = None
        try:
            span = self._take(run_id, inputs)
            if span is None:
                return
            span.output, output_bytes = cv.plain_sized(output)
            self._submit(span, output_bytes)
        except Exception as exc:
            self._failed(callback, exc)
            self._rescue(span)

    def _end_error(self, callback: str, run_id: UUID, error: BaseException, inputs: Any) -> None:
        span = None
        try:
            span = self._take(run_id, inputs)
            if span is None:
                return
            span.status, span.error = cv.error_outcome(error)
            if span.status == "interrupted":
                self._mark_ancestors(span, "interrupted")
            self._submit(span)
        except Exception as exc:
            self._failed(callback, exc)
            self._rescue(span)

    def _point(self, parent: OpenSpan, name: str, input_: Any, output: Any) -> None:
        now = time.time()
        span = child_span(parent, new_id(), SpanKind.SPAN, name, start_time=now)
        span.input, span.output = input_, output
        span.metadata, span.tags = parent.metadata, parent.tags
        self._exporter.submit(span.finish(now))

    # -- run table ------------------------------------------------------------------------

    def _failed(self, callback: str, exc: BaseException) -> None:
        self._warn(
            callback,
            "posthog_callbacks: %s failed; the run is not fully recorded",
            callback,
            exc_info=exc,
        )

    def _start(
        self,
        run_id: UUID,
        parent_run_id: UUID | None,
        kind: SpanKind,
        serialized: Any,
        kwargs: Mapping[str, Any],
        default_name: str,
        tags: Sequence[str] | None,
        metadata: Mapping[str, Any] | None,
    ) -> OpenSpan | None:
        """The span of a starting run, unless another handler of ours records it.

        The span is not in the run table yet: the caller fills in its input (and model
        details) first and then calls :meth:`_add`, so the table measures its bytes once,
        whole, instead of again at the next run's start.
        """
        if self.disabled:
            return None
        runs = self._runs
        skipped = self._skipped
        key = _key(run_id)
        claimed = runs.get(key)
        if claimed is not None:
            owner = claimed.extra.get("by")
            if owner is self or self.steps_aside or not getattr(owner, "steps_aside", False):
                return None
            runs.pop(key)  # an explicit handler's options win over instrument()'s
        elif skipped and key in skipped:
            return None
        parent_key = _key(parent_run_id)  # None for no parent
        parent = runs.get(parent_key)
        if type(run_id) is UUID:
            # str(run_id) without UUID.__str__'s call (``key`` is ``run_id.int``)
            h = f"{key:032x}"
            run_text = f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
        else:
            run_text = str(run_id)
        if parent is not None:
            trace_id, parent_id, span_id = parent.trace_id, parent.span_id, run_text
            distinct_id, session_id = parent.distinct_id, parent.session_id
        else:
            if parent_key is not None and skipped and parent_key in skipped:
                self._skip(run_id, skipped[parent_key])
                return None
            if parent_run_id is None:
                trace_id = self._trace_id or run_text
                parent_id, span_id = None, trace_id
            else:  # the parent is a run this handler never saw: group under its id
                trace_id = self._trace_id or str(parent_run_id)
                parent_id, span_id = trace_id, run_text
            if not self._exporter.is_sampled(trace_id):
                self._skip(run_id, trace_id)
                return None
            distinct_id, session_id = self._distinct_id, self._session_id

        properties = self._properties
        user_md = None
        if metadata:
            if not metadata.keys().isdisjoint(OWNER_KEYS):
                owner_ = trace_owner(metadata, distinct_id=distinct_id, session_id=session_id)
                if parent is not None and owner_.distinct_id != distinct_id:
                    # a user id set below the root: the trace (its open ancestors) is theirs
                    self._set_user_upwards(parent, owner_.distinct_id)
                distinct_id, session_id = owner_
            extra_props = metadata.get("posthog_properties")
            if isinstance(extra_props, dict) and extra_props:
                properties = {**(properties or {}), **extra_props}
            user_md = cv.user_metadata(metadata)
        # cv.run_name's first choice, read here: LangChain passes ``name=`` to every run.
        name = kwargs.get("name")
        if type(name) is not str or not name:
            name = cv.run_name(serialized, kwargs, default_name)
        if parent_id is None:
            name = self._trace_name or name
            if kind is _SPAN:
                kind = _TRACE
        # Fields set one by one: a dataclass of 31 fields matches keyword arguments
        # slowly (about 1.4 µs for these nine, against 0.3 µs assigned).
        span = OpenSpan(trace_id, span_id, parent_id, kind, name)
        span.framework = "langchain"
        span.distinct_id = distinct_id
        span.session_id = session_id
        span.metadata = user_md
        span.properties = properties
        span.groups = self._groups
        span.tags = cv.user_tags(self._tags, tags) if tags else self._tags
        span.privacy_mode = self._privacy_mode
        extra = span.extra
        extra["by"] = self
        extra["parent"] = parent
        return span

    def _add(self, run_id: UUID, span: OpenSpan, input_bytes: int = -1) -> None:
        """Put a span made by :meth:`_start` in the run table (closing evicted runs).

        ``input_bytes``: ``sizing.value_bytes(span.input)`` when counted while copying
        the input, else -1.
        """
        key = _key(run_id)
        if self._sized:
            # Measured once for both budgets: the table's, and the queue's at the end
            # (this plus the output and properties, see _submit).
            size = open_span_bytes(span, input_bytes)
            span.extra["size"] = size
            evicted = self._runs.add(key, span, size)
        else:
            evicted = self._runs.add(key, span)
        if evicted:
            self._exporter.close_runs(evicted, "evicted: too many runs open at once")

    def _skip(self, run_id: UUID, trace_id: str) -> None:
        if len(self._skipped) >= _MAX_SKIPPED:
            self._skipped.clear()
        self._skipped[_key(run_id)] = trace_id

    def _set_user_upwards(self, span: OpenSpan, distinct_id: str | None) -> None:
        if distinct_id is None:
            return
        for node in _lineage(span):
            if node.distinct_id is None or node.distinct_id == self._distinct_id:
                node.distinct_id = distinct_id

    @staticmethod
    def _mark_ancestors(span: OpenSpan, status: str) -> None:
        """A LangGraph interrupt pauses the whole graph: its open ancestors share the status."""
        for node in _lineage(span.extra.get("parent")):
            if node.status is None:
                node.status = status

    def _rescue(self, span: OpenSpan | None) -> None:
        """Still export a run whose end callback failed half-way (as recorded so far)."""
        if span is None or span.extra.get("sent"):
            return
        try:
            self._exporter.submit(span.finish())
            span.extra["sent"] = True
        except Exception:  # pragma: no cover - submit never raises
            pass

    @staticmethod
    def _resized(span: OpenSpan, old: Any, new: Any) -> None:
        """A measured field of a run in the table was replaced: its kept estimate follows
        (``sizing.value_bytes`` is 0 for ``None``, as ``open_span_bytes`` counts it)."""
        extra = span.extra
        size = extra.get("size")
        if size is not None:
            extra["size"] = size - value_bytes(old) + value_bytes(new)

    def _submit(self, span: OpenSpan, output_bytes: int = -1) -> None:
        """Queue an ended run; ``output_bytes``: ``sizing.value_bytes(span.output)`` when
        counted while copying the output, else -1."""
        extra = span.extra
        retries = extra.get("retries")
        if retries:
            span.properties = {**(span.properties or {}), "retries": retries}
        finished = span.finish()
        size = extra.get("size")
        if size is None:
            self._exporter.submit(finished)
        else:
            # sizing.estimate_bytes(finished): the estimate made when the run entered the
            # table (kept up to date by _resized) plus what is set at its end.
            size += output_bytes if output_bytes >= 0 else value_bytes(finished.output)
            if finished.properties:
                size += value_bytes(finished.properties)
            self._exporter.submit(finished, size)
        extra["sent"] = True
        if (
            span.parent_id is None
            and self._trace_id is None
            and self._runs.open_in_trace(span.trace_id)
        ):
            leftovers = self._runs.pop_trace(span.trace_id)
            if leftovers:
                self._exporter.close_runs(
                    leftovers,
                    _LEFTOVER_REASONS.get(
                        span.status or "", "run never ended: its trace's root run finished first"
                    ),
                )
