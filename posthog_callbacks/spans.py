"""Framework-neutral span records.

Handlers build an :class:`OpenSpan` while a run is in flight and hand the exporter a
:class:`FinishedSpan` (immutable) when it ends. Nothing here knows about PostHog's event
names: that translation lives in ``events.py``.
"""

from __future__ import annotations

import itertools
import logging
import os
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, NamedTuple

__all__ = [
    "FinishedSpan",
    "OpenSpan",
    "SpanKind",
    "Usage",
    "error_text",
    "new_id",
    "snapshot",
    "snapshot_sized",
    "snapshot_small",
]

log = logging.getLogger(__name__)


# Span and trace ids: random v4 UUIDs as text. ``str(uuid.uuid4())`` costs ~3 us (a system
# call for 16 random bytes, then a UUID object); a Mersenne Twister draw formatted by hand
# costs a third of that. The generator is our own instance, seeded from ``os.urandom``, so
# a program that calls ``random.seed(...)`` for its own reproducibility still gets ids
# unique across runs, and it is reseeded in a forked child (the parent's stream would
# otherwise repeat there). Ids are unique, not secret: nothing relies on them being
# unpredictable.
_rng = random.Random()
_getrandbits = _rng.getrandbits
_V4_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
_V4_SET = (0x4000 << 64) | (0x8000 << 48)  # version 4, RFC 4122 variant


def new_id() -> str:
    """A new random id: a version-4 UUID as text (``"xxxxxxxx-xxxx-4xxx-[89ab]xxx-..."``).

    The same format and randomness (122 random bits) as ``str(uuid.uuid4())``, at a third
    of its cost; thread-safe (one draw under the GIL) and fresh in a forked child.
    """
    h = "%032x" % (_getrandbits(128) & _V4_CLEAR | _V4_SET)
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _reseed_after_fork() -> None:
    _rng.seed(os.urandom(32))


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reseed_after_fork)


class SpanKind(str, Enum):
    """What a span represents; decides the PostHog event it becomes."""

    TRACE = "trace"
    SPAN = "span"
    GENERATION = "generation"
    EMBEDDING = "embedding"


class Usage(NamedTuple):
    """Token usage of one model call, provider-neutral (immutable).

    ``input_tokens`` always *includes* cache reads and writes (LangChain's
    ``usage_metadata`` convention); ``events.py`` converts to PostHog's per-provider
    semantics (Anthropic: uncached input only). ``None`` means "not reported", never 0.

    Attributes:
        input_tokens: Prompt tokens including cached ones.
        output_tokens: Completion tokens (including reasoning tokens).
        total_tokens: As reported by the provider, if it did.
        cache_read_tokens: Prompt tokens served from the provider's cache.
        cache_creation_tokens: Prompt tokens written to the cache (all TTLs).
        cache_creation_5m_tokens: Anthropic 5-minute cache writes, when split out.
        cache_creation_1h_tokens: Anthropic 1-hour cache writes, when split out.
        reasoning_tokens: Hidden reasoning tokens, part of ``output_tokens``.
        web_search_count: Server-side web searches the provider billed for the call.
    """

    input_tokens: int | None = None
    output_tokens: int | None = None
    total_tokens: int | None = None
    cache_read_tokens: int | None = None
    cache_creation_tokens: int | None = None
    cache_creation_5m_tokens: int | None = None
    cache_creation_1h_tokens: int | None = None
    reasoning_tokens: int | None = None
    web_search_count: int | None = None

    def is_empty(self) -> bool:
        """True when no field carries a count."""
        return self == _NO_USAGE

    def __add__(self, other: tuple[Any, ...]) -> Usage:  # type: ignore[override]
        """Field-wise sum; ``None`` + ``None`` stays ``None``."""
        return Usage._make(
            None if a is None and b is None else (a or 0) + (b or 0)
            for a, b in zip(self, other, strict=True)
        )


_NO_USAGE = (None,) * len(Usage._fields)


# A NamedTuple, not a frozen dataclass: it is built once per span on the caller's thread,
# and a frozen dataclass costs ~10 µs to construct against ~1 µs here.
class FinishedSpan(NamedTuple):
    """One ended run, ready for translation into a PostHog event (immutable).

    ``span_id`` of a trace's root equals ``trace_id``; every other span has the
    ``span_id`` of its parent in ``parent_id``. Times are epoch seconds.
    """

    trace_id: str
    span_id: str
    parent_id: str | None
    kind: SpanKind
    name: str
    start_time: float
    end_time: float
    framework: str = "manual"
    input: Any = None
    output: Any = None
    model: str | None = None
    provider: str | None = None
    usage: Usage | None = None
    usage_missing_reason: str | None = None
    model_parameters: Mapping[str, Any] | None = None
    tools: Any = None
    time_to_first_token: float | None = None
    http_status: int | None = None
    base_url: str | None = None
    stop_reason: str | None = None
    error: str | None = None
    status: str | None = None
    metadata: Mapping[str, Any] | None = None
    properties: Mapping[str, Any] | None = None
    groups: Mapping[str, Any] | None = None
    distinct_id: str | None = None
    session_id: str | None = None
    tags: tuple[str, ...] = ()
    privacy_mode: bool = False
    service_tier: str | None = None

    @property
    def is_error(self) -> bool:
        """True when the run failed."""
        return self.error is not None

    @property
    def latency(self) -> float:
        """Duration in seconds (never negative)."""
        return max(0.0, self.end_time - self.start_time)


_new_tuple = tuple.__new__


@dataclass(slots=True)
class OpenSpan:
    """A run in flight: mutable, owned by one handler's run table.

    Fields mirror :class:`FinishedSpan`; ``first_token_time`` (epoch seconds) becomes
    ``time_to_first_token`` when the span is finished.
    """

    trace_id: str
    span_id: str
    parent_id: str | None
    kind: SpanKind
    name: str
    start_time: float = field(default_factory=time.time)
    framework: str = "manual"
    input: Any = None
    output: Any = None
    model: str | None = None
    provider: str | None = None
    usage: Usage | None = None
    usage_missing_reason: str | None = None
    model_parameters: Mapping[str, Any] | None = None
    tools: Any = None
    first_token_time: float | None = None
    http_status: int | None = None
    base_url: str | None = None
    stop_reason: str | None = None
    error: str | None = None
    status: str | None = None
    metadata: Mapping[str, Any] | None = None
    properties: Mapping[str, Any] | None = None
    groups: Mapping[str, Any] | None = None
    distinct_id: str | None = None
    session_id: str | None = None
    tags: tuple[str, ...] = ()
    privacy_mode: bool = False
    service_tier: str | None = None
    """The service tier the provider says it served (``default``, ``flex``, ...)."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Handler-private scratch space (not exported)."""

    def finish(self, end_time: float | None = None) -> FinishedSpan:
        """Freeze this run into a :class:`FinishedSpan` ending at ``end_time`` (now)."""
        end = time.time() if end_time is None else end_time
        first = self.first_token_time
        # tuple.__new__ on the fields in order: FinishedSpan(...) would run the named
        # tuple's Python-level __new__ just to build the same tuple.
        return _new_tuple(
            FinishedSpan,
            (
                self.trace_id,
                self.span_id,
                self.parent_id,
                self.kind,
                self.name,
                self.start_time,
                end,
                self.framework,
                self.input,
                self.output,
                self.model,
                self.provider,
                self.usage,
                self.usage_missing_reason,
                self.model_parameters,
                self.tools,
                None if first is None else max(0.0, first - self.start_time),
                self.http_status,
                self.base_url,
                self.stop_reason,
                self.error,
                self.status,
                self.metadata,
                self.properties,
                self.groups,
                self.distinct_id,
                self.session_id,
                self.tags,
                self.privacy_mode,
                self.service_tier,
            ),
        )


_ERROR_MAX_CHARS = 100_000


def error_text(error: BaseException) -> str:
    """``Type: message`` for an exception (the ``error`` of a span); never raises.

    The message is cut at 100,000 characters (with a marker) so a span does not hold a
    huge message until the worker bounds it to the event's size.
    """
    try:
        text = str(error)
    except Exception:
        text = "<unprintable error>"
    if len(text) > _ERROR_MAX_CHARS:
        text = f"{text[:_ERROR_MAX_CHARS]}…[truncated {len(text) - _ERROR_MAX_CHARS} chars]"
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


_SNAPSHOT_MAX_DEPTH = 12
_SNAPSHOT_MAX_ITEMS = 2000
SNAPSHOT_MAX_NODES = 20_000
"""Containers and items one snapshot may visit in total (the caller's thread pays for it)."""
SNAPSHOT_MAX_CHARS = 16 * 1024 * 1024
"""Characters of text one snapshot keeps; more could not fit in an event anyway."""
_LEAVES = frozenset({str, int, float, bool, type(None), bytes})
_COPIED = frozenset({dict, list, tuple, set, frozenset})


class _Copier:
    """The state of one snapshot: a budget and the copies made so far (by id)."""

    __slots__ = ("chars", "convert", "memo", "nodes")

    def __init__(self, convert: Callable[[Any], Any] | None) -> None:
        self.nodes = 0
        self.chars = 0
        self.convert = convert
        self.memo: dict[int, tuple[Any, Any]] = {}

    def copy(self, value: Any, depth: int) -> Any:
        t = type(value)
        if t is str:
            self.chars += len(value)
            return value
        if t in _LEAVES:
            return value
        if (
            t is not dict
            and t is not list
            and t is not tuple
            and t is not set
            and t is not frozenset
        ):
            convert = self.convert
            if convert is None:
                return value
            converted = convert(value)
            if converted is value:
                return value
            return self.copy(converted, depth)
        if depth >= _SNAPSHOT_MAX_DEPTH:
            return value
        ident = id(value)
        memo = self.memo
        seen = memo.get(ident)
        if seen is not None:
            return seen[1]  # shared (or cyclic): the same copy, visited once
        if self.nodes >= SNAPSHOT_MAX_NODES or self.chars > SNAPSHOT_MAX_CHARS:
            return "<snapshot limit>"
        n = len(value)
        room = SNAPSHOT_MAX_NODES - self.nodes
        if room > _SNAPSHOT_MAX_ITEMS:
            room = _SNAPSHOT_MAX_ITEMS
        self.nodes += (n if n < room else room) + 1
        # A container is registered (by id) before its first child container is copied:
        # only containers can be shared in a way that multiplies work or cycles back, and
        # the common leaf-only dict (a chat message) skips the registration.
        registered = False
        chars = 0
        if t is dict:
            out: dict[Any, Any] = {}
            pairs: Any = value.items() if n <= room else itertools.islice(value.items(), room)
            for k, v in pairs:
                tv = type(v)
                if tv is str:
                    chars += len(v)
                    out[k] = v
                elif tv in _LEAVES:
                    out[k] = v
                else:
                    if not registered:
                        memo[ident] = (value, out)
                        registered = True
                    out[k] = self.copy(v, depth + 1)
            if n > room:
                out["<truncated>"] = f"{n - room} more keys"
            self.chars += chars
            return out
        items: list[Any] = []
        append = items.append
        source: Any = value if n <= room else itertools.islice(value, room)
        for v in source:
            tv = type(v)
            if tv is str:
                chars += len(v)
                append(v)
            elif tv in _LEAVES:
                append(v)
            else:
                if not registered:
                    memo[ident] = (value, items)
                    registered = True
                append(self.copy(v, depth + 1))
        if n > room:
            append(f"<truncated: {n - room} more items>")
        self.chars += chars
        return items


_SMALL_ITEMS = 32


def _copy_small(value: Any) -> tuple[Any, int] | None:
    """The copier's result for a small, shallow container without the copier, and its size.

    Handles a dict or list of at most 32 items that are leaves or dicts, lists or tuples
    of at most 32 leaves (chat messages, parameters, a root's input): the common case on
    the caller's thread. Such inner containers hold no container, so the copier never
    registers them as shared (it copies each occurrence, as here), and no bound of the
    copier can be reached except the text bound, checked as the copier does: before each
    inner container, over the text of the inner containers copied so far.

    Returns:
        ``(copy, bytes)``, where ``bytes`` is ``sizing.value_bytes(copy)`` computed on
        the way (the same formula: a string ``len + 2``, another scalar 8, a dict key
        ``len + 3``, a list item 1 more; tests hold the two equal), or -1 when that
        formula's fast path does not apply (a key that is not a string, bytes); ``None``
        when the value is not such a container.
    """
    if len(value) > _SMALL_ITEMS:
        return None
    size = 0
    exact = True
    inner_chars = 0
    inner: tuple[Any, int, int, bool] | None
    if type(value) is dict:
        out: dict[Any, Any] = {}
        for k, v in value.items():
            if type(k) is str:
                size += len(k) + 3
            else:
                exact = False
            tv = type(v)
            if tv is str:
                size += len(v) + 2
                out[k] = v
                continue
            if tv in _LEAVES:
                if tv is bytes:
                    exact = False
                size += 8
                out[k] = v
                continue
            if tv is not dict and tv is not list and tv is not tuple:
                return None
            if inner_chars > SNAPSHOT_MAX_CHARS:
                return None
            inner = _copy_leaves(v)
            if inner is None:
                return None
            out[k] = inner[0]
            size += inner[1]
            inner_chars += inner[2]
            exact = exact and inner[3]
        return out, size if exact else -1
    items: list[Any] = []
    for v in value:
        tv = type(v)
        if tv is str:
            size += len(v) + 3
            items.append(v)
            continue
        if tv in _LEAVES:
            if tv is bytes:
                exact = False
            size += 9
            items.append(v)
            continue
        if tv is not dict and tv is not list and tv is not tuple:
            return None
        if inner_chars > SNAPSHOT_MAX_CHARS:
            return None
        inner = _copy_leaves(v)
        if inner is None:
            return None
        items.append(inner[0])
        size += inner[1] + 1
        inner_chars += inner[2]
        exact = exact and inner[3]
    return items, size if exact else -1


def _copy_leaves(
    value: dict[Any, Any] | list[Any] | tuple[Any, ...],
) -> tuple[Any, int, int, bool] | None:
    """A copy of a container of at most 32 leaves (a tuple as a list): ``(copy, bytes,
    characters of text, whether bytes is exact)``; ``None`` for anything else."""
    if len(value) > _SMALL_ITEMS:
        return None
    size = 0
    chars = 0
    exact = True
    if type(value) is dict:
        out: dict[Any, Any] = {}
        for k, v in value.items():
            if type(k) is str:
                size += len(k) + 3
            else:
                exact = False
            tv = type(v)
            if tv is str:
                n = len(v)
                chars += n
                size += n + 2
            elif tv not in _LEAVES:
                return None
            else:
                if tv is bytes:
                    exact = False
                size += 8
            out[k] = v
        return out, size, chars, exact
    items: list[Any] = []
    for v in value:
        tv = type(v)
        if tv is str:
            n = len(v)
            chars += n
            size += n + 3
        elif tv not in _LEAVES:
            return None
        else:
            if tv is bytes:
                exact = False
            size += 9
        items.append(v)
    return items, size, chars, exact


def snapshot(value: Any, convert: Callable[[Any], Any] | None = None) -> Any:
    """Copy the containers of ``value`` so later mutation by the caller cannot change it.

    Dicts, lists, tuples and sets are copied (tuples and sets as lists); leaves are kept
    by reference and serialised on the exporter's worker. The total work is bounded
    (:data:`SNAPSHOT_MAX_NODES` containers and items, :data:`SNAPSHOT_MAX_CHARS` of
    text, 2,000 items per container, 12 levels): past a bound the rest becomes a short
    marker. A container reached twice (shared, or inside itself) is copied once and the
    copy is reused, so shared references cost nothing and the copy keeps their shape.

    Args:
        value: Anything.
        convert: Applied to each leaf that is not a plain scalar (a front door turns its
            framework's objects into plain data here); its result is copied within the
            same budget. ``None`` keeps such leaves by reference.

    Never raises.
    """
    t = type(value)
    if t in _LEAVES:
        return value
    try:
        if t is dict or t is list or t is tuple:
            small = _copy_small(value)
            if small is not None:
                return small[0]
        return _Copier(convert).copy(value, 0)
    except Exception:
        return value


def snapshot_small(value: dict[Any, Any] | list[Any] | tuple[Any, ...]) -> tuple[Any, int] | None:
    """:func:`snapshot`'s fast path alone: the copy of a small, shallow container of plain
    values and its exact ``sizing.value_bytes``, or ``None`` when that path does not apply
    (bigger or deeper content, a key that is not a string, bytes). Never raises."""
    try:
        small = _copy_small(value)
    except Exception:
        return None
    return small if small is not None and small[1] >= 0 else None


def snapshot_sized(value: Any, convert: Callable[[Any], Any] | None = None) -> tuple[Any, int]:
    """:func:`snapshot` (with the same ``convert``) and the copy's byte estimate, in one walk.

    The estimate is ``sizing.value_bytes(copy)`` (0 for ``None``) for scalars and the
    small containers :func:`snapshot` copies on its fast path (which hold no value for
    ``convert``), and -1 otherwise: the caller then measures the copy with
    ``sizing.value_bytes``. (This module cannot call ``sizing``, which builds on it.)
    Never raises.
    """
    t = type(value)
    if t is str:
        return value, len(value) + 2
    if value is None:
        return None, 0
    if t is int or t is float or t is bool:
        return value, 8
    if t is dict or t is list or t is tuple:
        try:
            small = _copy_small(value)
        except Exception:
            small = None
        if small is not None:
            return small
    return snapshot(value, convert), -1
