"""How many bytes a value holds, estimated cheaply on the caller's thread.

Both memory budgets use it: the export queue's (``max_queue_bytes``, ``batching.py``) and
the open runs' (``max_open_run_bytes``, ``tracing.py``). The estimate is the text a value
carries (string lengths, 8 bytes per other leaf) from a bounded walk that visits a shared
object once and never runs the value's own methods, plus a fixed overhead per span for the
Python objects around it.
"""

from __future__ import annotations

import itertools
import logging
from typing import Any

from .spans import FinishedSpan

__all__ = ["ITEM_OVERHEAD_BYTES", "estimate_bytes", "value_bytes"]

log = logging.getLogger(__name__)

ITEM_OVERHEAD_BYTES = 1024
"""Bytes counted per span on top of its content (the span object, its dicts, ids)."""
_ROUGH_MAX_NODES = 10_000


def estimate_bytes(item: FinishedSpan | dict[str, Any]) -> int:
    """Bytes ``item`` holds while queued: the text it carries plus a fixed overhead.

    Runs on the caller's thread, so its work is bounded: a walk over at most
    ``_ROUGH_MAX_NODES`` values that visits a shared container once (a snapshot may share
    one object many times) and sums string lengths, 8 bytes per other leaf. An object is
    looked into through its instance ``__dict__`` only (never its own methods). About a
    microsecond for a short chat span.
    """
    if type(item) is not FinishedSpan and not isinstance(item, FinishedSpan):
        return ITEM_OVERHEAD_BYTES + _rough_bytes(item)
    total = ITEM_OVERHEAD_BYTES + value_bytes(item.input) + value_bytes(item.output)
    if item.metadata is not None:
        total += value_bytes(item.metadata)
    if item.model_parameters is not None:
        total += value_bytes(item.model_parameters)
    if item.tools is not None:
        total += value_bytes(item.tools)
    if item.properties:
        total += value_bytes(item.properties)
    return total


def _small_bytes(value: Any, depth: int) -> int:
    """The fast path for small, shallow containers (chat messages, parameters); -1 otherwise.

    At most ``depth`` levels of containers (``depth`` >= 1) of at most 32 items each, so
    its work is bounded even when the levels share objects. Leaves are counted inline (no
    call per leaf): a string ``len + 2``, any other scalar 8, a dict key ``len + 3``, a
    list item 1 for its separator.
    """
    kind = type(value)
    total = 0
    if kind is dict:
        if len(value) > 32:
            return -1
        for key, child in value.items():
            if type(key) is not str:
                return -1
            tc = type(child)
            if tc is str:
                total += len(child) + len(key) + 5
            elif child is None or tc is int or tc is float or tc is bool:
                total += len(key) + 11
            elif depth > 1:
                size = _small_bytes(child, depth - 1)
                if size < 0:
                    return -1
                total += size + len(key) + 3
            else:
                return -1
        return total
    if kind is list or kind is tuple:
        if len(value) > 32:
            return -1
        for child in value:
            tc = type(child)
            if tc is str:
                total += len(child) + 3
            elif child is None or tc is int or tc is float or tc is bool:
                total += 9
            elif depth > 1:
                size = _small_bytes(child, depth - 1)
                if size < 0:
                    return -1
                total += size + 1
            else:
                return -1
        return total
    return -1


def _rough_bytes(value: Any) -> int:
    """String lengths (and 8 per other leaf) over at most ``_ROUGH_MAX_NODES`` values.

    Never runs the value's own code: types are read with ``type()`` (never an instance's
    ``__class__``), subclasses of dict, list, tuple, str and bytes through the base type's
    methods, other objects through their instance ``__dict__``. Never raises: a node that
    cannot be read (a dict resized by another thread meanwhile) counts 8 bytes.
    """
    total = 0
    stack = [value]
    seen: set[int] = set()
    budget = _ROUGH_MAX_NODES
    while stack and budget > 0:
        current = stack.pop()
        budget -= 1
        kind = type(current)
        if kind is str or kind is bytes:
            total += len(current) + 2
            continue
        if current is None or kind is int or kind is float or kind is bool:
            total += 8
            continue
        key = id(current)
        if key in seen:
            continue
        seen.add(key)
        try:
            if issubclass(kind, dict):
                for k, v in itertools.islice(dict.items(current), budget):
                    stack.append(k)
                    stack.append(v)
            elif issubclass(kind, list):
                stack.extend(itertools.islice(list.__iter__(current), budget))
            elif issubclass(kind, tuple):
                stack.extend(itertools.islice(tuple.__iter__(current), budget))
            elif issubclass(kind, str):
                total += str.__len__(current) + 2
            elif issubclass(kind, bytes):
                total += bytes.__len__(current) + 2
            else:
                # instance attributes only: no __getattr__ or property of the object runs
                attrs = object.__getattribute__(current, "__dict__")
                if type(attrs) is dict:
                    stack.append(attrs)
                else:
                    total += 8
        except Exception:
            total += 8
    return total


def value_bytes(value: Any) -> int:
    """Bytes ``value`` holds (0 for ``None``): the fast path for small, shallow values,
    else a walk over at most ``_ROUGH_MAX_NODES`` values."""
    kind = type(value)
    if kind is str:
        return len(value) + 2
    if value is None:
        return 0
    if kind is int or kind is float or kind is bool:
        return 8
    size = _small_bytes(value, 2)
    return size if size >= 0 else _rough_bytes(value)
