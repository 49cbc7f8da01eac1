"""Framework-independent core of the LangChain handler: options, run table, span opening.

Kept apart from ``langchain.py`` so the callback methods there stay short; nothing here
imports LangChain.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any
from uuid import UUID

from ..spans import OpenSpan, SpanKind, error_text
from ..tracing import RunTable
from ..usage import normalize_provider, provider_from_class
from .convert import class_name, plain

log = logging.getLogger("posthog_callbacks")

__all__ = ["HandlerCore", "error_outcome", "model_name_from_params", "provider_for"]

_INTERNAL_PREFIXES = ("ls_", "langgraph_", "lc_", "checkpoint_", "__")
_IDENTITY_KEYS = frozenset(
    {"user_id", "userId", "session_id", "sessionId", "posthog_properties", "checkpoint_ns"}
)
_INTERNAL_TAG_PREFIXES = ("seq:step:", "graph:step:", "map:key:", "langsmith:")
_INTERRUPTS = frozenset({"GraphInterrupt", "NodeInterrupt"})
_MAX_SKIPPED = 100_000
_LEFTOVER_REASONS = {
    "cancelled": "cancelled: the trace was cancelled before this run ended",
    "abandoned": "abandoned: the stream was closed before this run ended",
    "interrupted": "interrupted: the graph paused before this run ended",
}


def error_outcome(error: BaseException) -> tuple[str | None, str | None]:
    """``(status, error)`` of a run that ended with ``error``.

    LangGraph interrupts and ``Command`` hand-offs and cancelled or abandoned runs are not
    errors: they get a status and no error text.
    """
    for cls in type(error).__mro__:
        name = cls.__name__
        if name in _INTERRUPTS:
            return "interrupted", None
        if name == "ParentCommand":
            return "command", None
    if isinstance(error, asyncio.CancelledError):
        return "cancelled", None
    if isinstance(error, GeneratorExit):
        return "abandoned", None
    return None, error_text(error)


def model_name_from_params(params: Mapping[str, Any] | None) -> str | None:
    """The requested model from ``invocation_params``."""
    if not params:
        return None
    for key in ("model", "model_name", "model_id", "deployment_name", "azure_deployment"):
        value = params.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def provider_for(ls_provider: Any, serialized: Any) -> str | None:
    """PostHog's provider name from ``ls_provider`` (or a hint), else the model's class."""
    provider = normalize_provider(ls_provider)
    if provider is not None:
        return provider
    return provider_from_class(class_name(serialized))


def _make_exporter(target: Any) -> Any:
    from ..exporter import PosthogExporter

    if target is None:
        return PosthogExporter()
    if isinstance(target, PosthogExporter):
        return target
    if callable(getattr(target, "capture", None)):  # a posthog.Posthog client
        return PosthogExporter(sink=target)
    if callable(getattr(target, "submit", None)) and callable(getattr(target, "flush", None)):
        return target  # an exporter-like object (tests, wrappers)
    raise TypeError(
        "CallbackHandler needs a PosthogExporter or a posthog.Posthog client, "
        f"not {type(target).__name__}"
    )


def _lineage(node: Any) -> Iterator[OpenSpan]:
    """``node`` and its open ancestors, nearest first (at most 1000)."""
    for _ in range(1000):
        if not isinstance(node, OpenSpan):
            return
        yield node
        node = node.extra.get("parent")


class HandlerCore:
    """Options, the run table and span opening shared by the callback methods."""

    def __init__(
        self,
        exporter: Any,
        *,
        distinct_id: Any,
        session_id: Any,
        trace_id: Any,
        trace_name: str | None,
        properties: Mapping[str, Any] | None,
        groups: Mapping[str, Any] | None,
        tags: Sequence[str] | None,
        privacy_mode: bool,
    ) -> None:
        if tags is not None and (
            isinstance(tags, str) or not all(isinstance(t, str) for t in tags)
        ):
            raise TypeError("tags must be a sequence of strings")
        self._exporter = _make_exporter(exporter)
        self._distinct_id = str(distinct_id) if distinct_id is not None else None
        self._session_id = str(session_id) if session_id is not None else None
        self._trace_id = str(trace_id) if trace_id is not None else None
        self._trace_name = trace_name
        self._properties = dict(properties) if properties else None
        self._groups = dict(groups) if groups else None
        self._tags = tuple(tags) if tags else ()
        self._privacy_mode = bool(privacy_mode)
        self._runs: RunTable[UUID] = RunTable()
        # Runs of traces the exporter did not sample: run id -> trace id.
        self._skipped: dict[UUID, str] = {}
        self._failures: set[str] = set()
        self._failure_lock = threading.Lock()
        self.callback_errors = 0
        self.disabled = False
        register = getattr(self._exporter, "register_runs", None)
        if callable(register):
            register(self._runs)

    @property
    def exporter(self) -> Any:
        """The exporter this handler records into."""
        return self._exporter

    def open_runs(self) -> int:
        """How many runs are in flight (for tests and diagnostics)."""
        return len(self._runs)

    def _failed(self, callback: str, exc: BaseException) -> None:
        with self._failure_lock:
            self.callback_errors += 1
            first = callback not in self._failures
            self._failures.add(callback)
        if first:
            log.warning(
                "posthog_callbacks: %s failed; the run is not fully recorded",
                callback,
                exc_info=exc,
            )

    @staticmethod
    def _name(serialized: Any, kwargs: Mapping[str, Any], default: str) -> str:
        name = kwargs.get("name")
        if isinstance(name, str) and name:
            return name
        if isinstance(serialized, dict):
            name = serialized.get("name")
            if isinstance(name, str) and name:
                return name
        cls = class_name(serialized)
        return cls if cls is not None else default

    def _start(
        self,
        run_id: UUID,
        parent_run_id: UUID | None,
        kind: SpanKind,
        name: str,
        input_: Any,
        tags: Sequence[str] | None,
        metadata: Mapping[str, Any] | None,
    ) -> OpenSpan | None:
        if self.disabled:
            return None
        parent = self._runs.get(parent_run_id) if parent_run_id is not None else None
        if parent is not None:
            trace_id, parent_id, span_id = parent.trace_id, parent.span_id, str(run_id)
        else:
            if parent_run_id is not None and parent_run_id in self._skipped:
                self._skip(run_id, self._skipped[parent_run_id])
                return None
            if parent_run_id is None:
                trace_id = self._trace_id or str(run_id)
                parent_id, span_id = None, trace_id
                if self._trace_name:
                    name = self._trace_name
            else:  # the parent is a run this handler never saw: group under its id
                trace_id = self._trace_id or str(parent_run_id)
                parent_id, span_id = trace_id, str(run_id)
            if not self._exporter.is_sampled(trace_id):
                self._skip(run_id, trace_id)
                return None

        distinct_id = session_id = None
        user_md: dict[str, Any] | None = None
        extra_props = None
        if metadata:
            distinct_id = metadata.get("user_id") or metadata.get("userId")
            session_id = (
                metadata.get("session_id") or metadata.get("sessionId") or metadata.get("thread_id")
            )
            extra_props = metadata.get("posthog_properties")
            user_md = {
                k: plain(v)
                for k, v in metadata.items()
                if not (k in _IDENTITY_KEYS or k.startswith(_INTERNAL_PREFIXES))
            }
        if distinct_id is None:
            distinct_id = parent.distinct_id if parent is not None else self._distinct_id
        elif parent is not None and parent.distinct_id != str(distinct_id):
            # a user id set below the root: the trace (open ancestors) belongs to that user
            self._set_user_upwards(parent, str(distinct_id))
        if session_id is None:
            session_id = parent.session_id if parent is not None else self._session_id
        properties = self._properties
        if isinstance(extra_props, dict) and extra_props:
            properties = {**(properties or {}), **extra_props}
        span_tags = self._tags
        if tags:
            span_tags = span_tags + tuple(
                t for t in tags if not t.startswith(_INTERNAL_TAG_PREFIXES) and t not in span_tags
            )
        if kind is SpanKind.SPAN and parent_id is None:
            kind = SpanKind.TRACE
        span = OpenSpan(
            trace_id=trace_id,
            span_id=span_id,
            parent_id=parent_id,
            kind=kind,
            name=name,
            framework="langchain",
            input=input_,
            distinct_id=str(distinct_id) if distinct_id is not None else None,
            session_id=str(session_id) if session_id is not None else None,
            metadata=user_md or None,
            properties=properties,
            groups=self._groups,
            tags=span_tags,
            privacy_mode=self._privacy_mode,
        )
        if parent is not None:
            span.extra["parent"] = parent
        evicted = self._runs.add(run_id, span)
        if evicted:
            self._exporter.close_runs(evicted, "evicted: too many runs open at once")
        return span

    def _skip(self, run_id: UUID, trace_id: str) -> None:
        if len(self._skipped) >= _MAX_SKIPPED:
            self._skipped.clear()
        self._skipped[run_id] = trace_id

    def _set_user_upwards(self, span: OpenSpan, distinct_id: str) -> None:
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

    def _forget(self, run_id: UUID) -> None:
        self._skipped.pop(run_id, None)

    def _submit(self, span: OpenSpan) -> None:
        retries = span.extra.get("retries")
        if retries:
            span.properties = {**(span.properties or {}), "retries": retries}
        self._exporter.submit(span.finish())
        span.extra["sent"] = True
        if span.parent_id is None and self._trace_id is None:
            leftovers = self._runs.pop_trace(span.trace_id)
            if leftovers:
                self._exporter.close_runs(
                    leftovers,
                    _LEFTOVER_REASONS.get(
                        span.status or "", "run never ended: its trace's root run finished first"
                    ),
                )
