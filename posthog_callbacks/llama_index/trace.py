"""What a LlamaIndex trace is, for both front doors: options, per-call context, identity.

Nothing here imports ``llama_index``.
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from ..spans import OpenSpan, SpanKind, error_text, new_id
from ..tracing import OWNER_KEYS, Recorder, TraceOwner, trace_owner

__all__ = [
    "FRAMEWORK",
    "HandlerOptions",
    "TraceInfo",
    "TraceOverrides",
    "describe_error",
    "trace_context",
]

FRAMEWORK = "llama_index"


@dataclass(frozen=True)
class TraceOverrides:
    """Per-call identity and labels set with :func:`trace_context`."""

    distinct_id: str | None = None
    session_id: str | None = None
    trace_id: str | None = None
    tags: tuple[str, ...] = ()
    metadata: Mapping[str, Any] | None = None
    properties: Mapping[str, Any] | None = None


_OVERRIDES: ContextVar[TraceOverrides | None] = ContextVar(
    "posthog_callbacks_llama_index_trace", default=None
)


@contextlib.contextmanager
def trace_context(
    *,
    user_id: str | None = None,
    session_id: str | None = None,
    trace_id: str | None = None,
    tags: Sequence[str] | None = None,
    metadata: Mapping[str, Any] | None = None,
    properties: Mapping[str, Any] | None = None,
) -> Iterator[None]:
    """Attribute the LlamaIndex calls made inside the block to a user, session or trace.

    Works for both front doors (:class:`CallbackHandler` and :func:`instrument`) and
    follows asyncio tasks and workflow steps started inside the block. Values given here
    win over the handler's options; nested blocks inherit what they don't set.

    Args:
        user_id: PostHog distinct id for every event of the traces started in the block.
        session_id: ``$ai_session_id`` for those traces.
        trace_id: Put every top-level call of the block into this one trace.
        tags: Extra tags for the traces' roots.
        metadata: Extra metadata for the traces' roots.
        properties: Extra event properties for every event of those traces.

    Example:
        >>> with trace_context(user_id="u1", session_id="s1"):  # doctest: +SKIP
        ...     query_engine.query("What did the author do?")
    """
    outer = _OVERRIDES.get()
    merged = TraceOverrides(
        distinct_id=user_id if user_id is not None else (outer.distinct_id if outer else None),
        session_id=session_id if session_id is not None else (outer.session_id if outer else None),
        trace_id=trace_id if trace_id is not None else (outer.trace_id if outer else None),
        tags=(outer.tags if outer else ()) + tuple(tags or ()),
        metadata={**(outer.metadata or {} if outer else {}), **(metadata or {})} or None,
        properties={**(outer.properties or {} if outer else {}), **(properties or {})} or None,
    )
    token = _OVERRIDES.set(merged)
    try:
        yield
    finally:
        _OVERRIDES.reset(token)


@dataclass
class HandlerOptions:
    """Options shared by :class:`CallbackHandler` and :func:`instrument`."""

    distinct_id: str | None = None
    session_id: str | None = None
    trace_id: str | None = None
    properties: Mapping[str, Any] | None = None
    groups: Mapping[str, Any] | None = None
    tags: tuple[str, ...] = ()
    metadata: Mapping[str, Any] | None = None
    privacy_mode: bool = False
    _claimed: OrderedDict[str, None] = field(default_factory=OrderedDict)
    _owner: TraceOwner | None = None  # the owner from the options alone, made once

    @classmethod
    def build(
        cls,
        distinct_id: str | None,
        session_id: str | None,
        trace_id: str | None,
        properties: Mapping[str, Any] | None,
        groups: Mapping[str, Any] | None,
        tags: Sequence[str] | None,
        metadata: Mapping[str, Any] | None,
        privacy_mode: bool,
    ) -> HandlerOptions:
        """Validate constructor arguments (configuration errors raise here)."""
        for name, value in (
            ("distinct_id", distinct_id),
            ("session_id", session_id),
            ("trace_id", trace_id),
        ):
            if value is not None and not isinstance(value, str):
                raise TypeError(f"{name} must be a string or None, got {value!r}")
        for name, mapping in (
            ("properties", properties),
            ("groups", groups),
            ("metadata", metadata),
        ):
            if mapping is not None and not isinstance(mapping, Mapping):
                raise TypeError(f"{name} must be a mapping or None, got {mapping!r}")
        if isinstance(tags, str):
            raise TypeError("tags must be a sequence of strings, not a string")
        return cls(
            distinct_id=distinct_id,
            session_id=session_id,
            trace_id=trace_id,
            properties=dict(properties) if properties else None,
            groups=dict(groups) if groups else None,
            tags=tuple(tags or ()),
            metadata=dict(metadata) if metadata else None,
            privacy_mode=bool(privacy_mode),
        )

    def new_trace(self, exporter: Recorder, hints: Any = None) -> TraceInfo:
        """Identity of a new top-level call.

        Precedence: :func:`trace_context` > LlamaIndex ``instrument_tags`` (``hints``:
        ``user_id`` / ``userId``, ``session_id`` / ``sessionId``) > handler options > the
        exporter's ``default_distinct_id`` (applied by the exporter).
        """
        over = _OVERRIDES.get()
        if type(hints) is dict and hints and not OWNER_KEYS.isdisjoint(hints):
            owner = trace_owner(hints, distinct_id=self.distinct_id, session_id=self.session_id)
        elif self._owner is not None:  # no tag names an owner (the usual case): the options
            owner = self._owner
        else:
            owner = self._owner = trace_owner(
                None, distinct_id=self.distinct_id, session_id=self.session_id
            )
        wanted = (over.trace_id if over is not None else None) or self.trace_id
        trace_id = wanted or new_id()
        root_span_id = trace_id
        if wanted:
            # A fixed trace id groups several top-level calls: the first one is the root,
            # the others hang under it.
            if wanted in self._claimed:
                root_span_id = new_id()
            else:
                self._claimed[wanted] = None
                if len(self._claimed) > 10_000:
                    self._claimed.popitem(last=False)
        props, meta, tags = self.properties, self.metadata, self.tags
        distinct_id, session_id = owner
        if over is not None:
            if over.properties:
                props = {**(props or {}), **over.properties}
            if over.metadata:
                meta = {**(meta or {}), **over.metadata}
            tags = tags + over.tags
            distinct_id = over.distinct_id or distinct_id
            session_id = over.session_id or session_id
        try:
            sampled = bool(exporter.is_sampled(trace_id))
        except Exception:
            sampled = True
        return TraceInfo(  # positional: one of these per top-level call
            trace_id,
            root_span_id,
            distinct_id,
            session_id,
            tags,
            meta,
            props,
            self.groups,
            self.privacy_mode,
            sampled,
        )


@dataclass(slots=True)
class TraceInfo:
    """What every span of one trace shares."""

    trace_id: str
    root_span_id: str
    distinct_id: str | None
    session_id: str | None
    tags: tuple[str, ...]
    metadata: Mapping[str, Any] | None
    properties: Mapping[str, Any] | None
    groups: Mapping[str, Any] | None
    privacy_mode: bool
    sampled: bool
    root_key: str | None = None

    @property
    def root_parent_id(self) -> str | None:
        """Parent of this call's root span: none, or the trace when it joins a fixed trace id."""
        return None if self.root_span_id == self.trace_id else self.trace_id

    def span(
        self,
        span_id: str,
        parent_id: str | None,
        kind: SpanKind,
        name: str,
        start_time: float | None = None,
        is_root: bool = False,
    ) -> OpenSpan:
        """A new open span of this trace carrying the trace's identity."""
        # The five leading fields by position, the rest assigned only when set: matching
        # eleven keyword arguments against a 31-field dataclass costs more than that.
        span = OpenSpan(self.trace_id, span_id, parent_id, kind, name)
        span.framework = FRAMEWORK
        if self.distinct_id is not None:
            span.distinct_id = self.distinct_id
        if self.session_id is not None:
            span.session_id = self.session_id
        if self.properties is not None:
            span.properties = self.properties
        if self.groups is not None:
            span.groups = self.groups
        if self.privacy_mode:
            span.privacy_mode = True
        if start_time is not None:
            span.start_time = start_time
        if is_root:
            span.tags = self.tags
            span.metadata = self.metadata
        return span


def describe_error(err: BaseException | None) -> str:
    """``Type: message`` for an exception."""
    return "error" if err is None else error_text(err)
