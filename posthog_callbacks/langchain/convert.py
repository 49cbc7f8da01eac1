"""LangChain objects -> plain Python values, cheaply, on the caller's thread.

Everything here reads fields of LangChain's own types (recognised by class, never by
probing attributes of unknown objects) and builds small dicts and lists; nothing calls
``repr()``, ``str()`` or ``model_dump()`` of user objects. Containers are copied by
:func:`~posthog_callbacks.spans.snapshot` (bounded work, shared containers copied once);
leaves that are not recognised are kept by reference and serialised later on the
exporter's worker.

Messages, prompt values and documents are converted here, on the caller's thread, not left
for the worker: they are pydantic models the program can still change after the callback
(a step appending to ``message.content``, LangGraph giving a message an id, the caller
editing the returned ``AIMessage``), so a reference would let the event show a later
state. A conversion costs about a microsecond per message; the worker keeps the cost of
serialising what it produced (``tests/langchain/test_fast_paths.py`` mutates messages
after their callbacks).
"""

from __future__ import annotations

import asyncio
import enum
import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from langchain_core.documents import Document
from langchain_core.messages import BaseMessage
from langchain_core.prompt_values import PromptValue, StringPromptValue

from ..spans import error_text, snapshot, snapshot_sized

__all__ = [
    "class_name",
    "error_outcome",
    "generations",
    "message_to_dict",
    "messages_input",
    "messages_sized",
    "plain",
    "plain_sized",
    "response_output",
    "response_sized",
    "run_name",
    "safe_name",
    "user_metadata",
    "user_tags",
]

log = logging.getLogger(__name__)

_ROLES: dict[str, str] = {
    "human": "user",
    "HumanMessageChunk": "user",
    "ai": "assistant",
    "AIMessageChunk": "assistant",
    "system": "system",
    "SystemMessageChunk": "system",
    "developer": "developer",
    "tool": "tool",
    "ToolMessageChunk": "tool",
    "function": "function",
    "FunctionMessageChunk": "function",
}

_MAX_DEPTH = 10
_MAX_ITEMS = 1000


def _placeholder(value: Any) -> str:
    return f"<{type(value).__name__}>"


def _tool_call_to_openai(call: Any) -> Any:
    if not isinstance(call, dict):
        return call
    args = call.get("args")
    arguments: Any = args
    if not isinstance(args, str):
        try:
            arguments = json.dumps(args, default=_placeholder)
        except Exception:
            arguments = snapshot(args)
    return {
        "type": "function",
        "id": call.get("id"),
        "function": {"name": call.get("name"), "arguments": arguments},
    }


def _invalid_tool_call_to_openai(call: Any) -> Any:
    """An ``InvalidToolCall`` (arguments the model produced that did not parse) as a tool
    call with its raw ``arguments`` string and the parse ``error``."""
    if not isinstance(call, dict):
        return call
    out = {
        "type": "function",
        "id": call.get("id"),
        "function": {"name": call.get("name"), "arguments": call.get("args")},
    }
    error = call.get("error")
    if error is not None:
        out["error"] = error
    return out


def message_to_dict(message: Any) -> dict[str, Any]:
    """Convert a LangChain message into a PostHog role/content dict (OpenAI shape).

    Tool calls become ``tool_calls`` with JSON ``arguments`` (PostHog's handler's shape);
    invalid tool calls follow them with their raw ``arguments`` and an ``error``. Tool
    results keep their ``tool_call_id``. Content lists and other containers are copied
    (bounded, see :func:`~posthog_callbacks.spans.snapshot`).
    """
    return _message_sized(message)[0]


def _leaf_bytes(value: Any) -> int:
    """``sizing``'s estimate of a scalar inside a container: a string ``len + 2``, another
    scalar 8; -1 for anything else (the caller then measures the whole value)."""
    t = type(value)
    if t is str:
        return len(value) + 2
    if value is None or t is int or t is float or t is bool:
        return 8
    return -1


def _message_sized(message: Any) -> tuple[dict[str, Any], int]:
    """:func:`message_to_dict`, and the dict's ``sizing.value_bytes`` as an item of a
    list (the same as on its own): each key ``len + 3`` plus its value's
    :func:`_leaf_bytes`. -1 when a value is not a scalar (content blocks, tool calls):
    the caller then measures the whole value with ``sizing.value_bytes``."""
    mtype = getattr(message, "type", None)
    role = _ROLES.get(mtype) if isinstance(mtype, str) else None
    if role is None:
        role = getattr(message, "role", None) or (mtype if isinstance(mtype, str) else "unknown")
    content = getattr(message, "content", None)
    if content is None:
        content = ""
    if type(content) is str:
        # "role" and "content": 4 + 3 and 7 + 3 for the keys, 2 for the content's quotes
        size = len(content) + 19
        role_bytes = _leaf_bytes(role)
        size = size + role_bytes if role_bytes >= 0 else -1
    else:
        content = snapshot(content, _langchain_leaf)
        size = -1
    result: dict[str, Any] = {"role": role, "content": content}
    name = getattr(message, "name", None)
    if name:
        result["name"] = name
        if size >= 0:
            name_bytes = _leaf_bytes(name)
            size = size + name_bytes + 7 if name_bytes >= 0 else -1
    if role == "assistant":
        calls = getattr(message, "tool_calls", None)
        invalid = getattr(message, "invalid_tool_calls", None)
        if calls or invalid:
            result["tool_calls"] = [_tool_call_to_openai(c) for c in calls or ()] + [
                _invalid_tool_call_to_openai(c) for c in invalid or ()
            ]
            size = -1
        extra = getattr(message, "additional_kwargs", None)
        if extra:
            for key in ("function_call", "refusal", "reasoning_content"):
                value = extra.get(key)
                if value:
                    result[key] = snapshot(value)
                    size = -1
    elif role == "tool":
        call_id = getattr(message, "tool_call_id", None)
        if call_id:
            result["tool_call_id"] = call_id
            if size >= 0:
                id_bytes = _leaf_bytes(call_id)
                size = size + id_bytes + 15 if id_bytes >= 0 else -1
        status = getattr(message, "status", None)
        if status == "error":
            result["status"] = "error"
            if size >= 0:
                size += 16  # "status": 6 + 3, "error": 5 + 2
    return result, size


def _document_to_dict(doc: Any) -> dict[str, Any]:
    result: dict[str, Any] = {"page_content": getattr(doc, "page_content", None)}
    metadata = getattr(doc, "metadata", None)
    if metadata:
        result["metadata"] = snapshot(metadata)
    doc_id = getattr(doc, "id", None)
    if doc_id:
        result["id"] = doc_id
    return result


_OPAQUE, _MESSAGE, _DOCUMENT, _PROMPT_VALUE, _STRING_PROMPT, _TEXT = range(6)
_KINDS: dict[type, int] = {}


def _kind_of(t: type) -> int:
    """Classify a type once: a LangChain message, document, prompt value, text (a ``str``
    subclass, such as the ``TextAccessor`` an output parser returns), or opaque."""
    kind = _KINDS.get(t)
    if kind is None:
        if issubclass(t, str) and not issubclass(t, enum.Enum):  # enums: sent by value
            kind = _TEXT
        elif issubclass(t, BaseMessage):
            kind = _MESSAGE
        elif issubclass(t, Document):
            kind = _DOCUMENT
        elif issubclass(t, StringPromptValue):
            kind = _STRING_PROMPT
        elif issubclass(t, PromptValue):
            kind = _PROMPT_VALUE
        else:
            kind = _OPAQUE
        if len(_KINDS) < 4096:
            _KINDS[t] = kind
    return kind


def _langchain_leaf(value: Any) -> Any:
    """``snapshot``'s converter: LangChain values as plain data, anything else as it is."""
    try:
        t = type(value)
        kind = _KINDS.get(t)  # _kind_of's cache, read here (a call per leaf saved)
        if kind is None:
            kind = _kind_of(t)
        if kind == _OPAQUE:
            return value
        if kind == _MESSAGE:
            return message_to_dict(value)
        if kind == _DOCUMENT:
            return _document_to_dict(value)
        if kind == _PROMPT_VALUE:
            return messages_input([value.to_messages()])
        if kind == _TEXT:
            # Plain text now (str's own method: no subclass code runs), as the worker
            # would send it; it is also measured and serialised as a str from here on.
            return str.__str__(value)
        return value.text
    except Exception:  # a broken subclass: the worker serialises it as an object
        return value


_LEAVES = frozenset({str, int, float, bool, type(None), bytes})
_CONTAINERS = frozenset({dict, list, tuple, set, frozenset})
_MAX_MESSAGES = 2000
_SMALL_ITEMS = 32  # sizing counts a container item by item up to this many items


def plain(value: Any) -> Any:
    """Copy containers and turn messages, documents and prompt values into plain dicts.

    Bounded work (see :func:`~posthog_callbacks.spans.snapshot`); unknown objects are kept
    by reference (the exporter's worker serialises them). Never raises.
    """
    t = type(value)
    if t in _LEAVES:
        return value
    if t in _CONTAINERS:
        return snapshot(value, _langchain_leaf)
    return _langchain_leaf(value)  # a message or prompt value: converted and copied


def plain_sized(value: Any) -> tuple[Any, int]:
    """:func:`plain` (the same copy) and its ``sizing.value_bytes``, counted on the way
    for the usual values (text, small containers of scalars, messages, prompt values);
    -1 when not counted (the caller measures the copy). Never raises."""
    t = type(value)
    if t is str:
        return value, len(value) + 2
    if value is None:
        return None, 0
    if t in _LEAVES:
        return value, 8 if t is not bytes else -1
    if t in _CONTAINERS:
        return snapshot_sized(value, _langchain_leaf)
    try:  # _langchain_leaf, with the size of what it makes
        kind = _KINDS.get(t)
        if kind is None:
            kind = _kind_of(t)
        if kind == _MESSAGE:
            return _message_sized(value)
        if kind == _PROMPT_VALUE:
            return messages_sized([value.to_messages()])
        if kind == _TEXT:
            text = str.__str__(value)
            return text, len(text) + 2
    except Exception:  # a broken subclass: kept as it is, as _langchain_leaf does
        return value, -1
    return _langchain_leaf(value), -1


def messages_input(messages: Sequence[Sequence[Any]]) -> Any:
    """``on_chat_model_start`` messages (a batch of one prompt) as role/content dicts."""
    return messages_sized(messages)[0]


def messages_sized(messages: Sequence[Sequence[Any]]) -> tuple[Any, int]:
    """:func:`messages_input` and its ``sizing.value_bytes`` (-1: not counted)."""
    try:
        out: list[Any] = []
        size = 0
        for row in messages:
            for m in row:
                if len(out) == _MAX_MESSAGES:
                    return out, -1
                item, item_bytes = _item_sized(m)
                out.append(item)
                # a list item: its dict plus 1 for the separator
                size = size + item_bytes + 1 if size >= 0 and item_bytes >= 0 else -1
        # sizing counts items this way only in a list of at most 32
        return out, size if len(out) <= _SMALL_ITEMS else -1
    except Exception:  # not a list of lists of messages
        return plain(messages), -1


def _item_sized(message: Any) -> tuple[Any, int]:
    """A message as a role/content dict and its ``sizing.value_bytes`` (anything else as
    :func:`plain` makes it, -1: not counted)."""
    t = type(message)
    kind = _KINDS.get(t)
    if kind is None:
        kind = _kind_of(t)
    if kind == _MESSAGE:
        return _message_sized(message)
    return plain(message), -1


def class_name(serialized: Any) -> str | None:
    """The class name at the end of a serialized constructor's ``id`` path."""
    if isinstance(serialized, dict):
        ids = serialized.get("id")
        if isinstance(ids, list) and ids and isinstance(ids[-1], str):
            return ids[-1]
    return None


def generations(response: Any) -> list[Any]:
    """All generations of an ``LLMResult``, flattened."""
    gens = getattr(response, "generations", None)
    if not gens:
        return []
    return [g for row in gens for g in row]


def response_output(gens: Sequence[Any], messages: Sequence[Any] | None = None) -> list[Any]:
    """The choices of a model call (its :func:`generations`) as role/content dicts.

    ``messages``: each generation's ``message`` attribute (``None`` where absent), when
    the caller already read them.
    """
    return response_sized(gens, messages)[0]


def response_sized(
    gens: Sequence[Any], messages: Sequence[Any] | None = None
) -> tuple[list[Any], int]:
    """:func:`response_output` and its ``sizing.value_bytes`` (-1: not counted)."""
    if messages is None:
        messages = [getattr(gen, "message", None) for gen in gens[:_MAX_MESSAGES]]
    out: list[Any] = []
    size = 0
    # what zip(gens[:_MAX_MESSAGES], messages) pairs, by index (a zip costs more here)
    limit = len(gens) if len(gens) < _MAX_MESSAGES else _MAX_MESSAGES
    for i, message in enumerate(messages):
        if i == limit:
            break
        if message is None:
            out.append({"role": "assistant", "content": getattr(gens[i], "text", "")})
            size = -1
            continue
        item, item_bytes = _item_sized(message)
        out.append(item)
        size = size + item_bytes + 1 if size >= 0 and item_bytes >= 0 else -1
    return out, size if len(out) <= _SMALL_ITEMS else -1


def safe_name(value: Any, default: str) -> str:
    """``value`` as a name without calling a user ``__str__``.

    A string as it is, a number as text, ``default`` for ``None`` or ``""``, else
    ``<TypeName>``.
    """
    t = type(value)
    if t is str:
        return value or default  # type: ignore[no-any-return]
    if value is None:
        return default
    if t is int or t is float or t is bool:
        return str(value)
    return f"<{t.__name__}>"


def run_name(serialized: Any, kwargs: Mapping[str, Any], default: str) -> str:
    """A run's display name: ``name=`` of the callback, the serialized name, its class."""
    name = kwargs.get("name")
    if isinstance(name, str) and name:
        return name
    if isinstance(serialized, dict):
        name = serialized.get("name")
        if isinstance(name, str) and name:
            return name
    cls = class_name(serialized)
    return cls if cls is not None else default


# Run metadata LangChain / LangGraph / LangSmith add for themselves, and the keys the
# handler reads as identity: none of them are the user's metadata.
_INTERNAL_PREFIXES = ("ls_", "langgraph_", "lc_", "checkpoint_", "__")
_IDENTITY_KEYS = frozenset(
    {"user_id", "userId", "session_id", "sessionId", "posthog_properties", "checkpoint_ns"}
)
_INTERNAL_TAG_PREFIXES = ("seq:step:", "graph:step:", "map:key:", "langsmith:")


def user_metadata(metadata: Mapping[Any, Any]) -> dict[str, Any] | None:
    """The user's part of run metadata (internal and identity keys removed), copied.

    A key that is not a string is kept as text (a number as itself, any other object as
    ``<TypeName>``; no user ``__str__`` runs).
    """
    out: dict[str, Any] = {}
    skipped = _SKIPPED_KEYS
    for key, value in metadata.items():
        if type(key) is not str:
            key = safe_name(key, "None")
        skip = skipped.get(key)
        if skip is None:
            skip = _skipped_key(key)
        if not skip:
            out[key] = value
    return plain(out) if out else None


_SKIPPED_KEYS: dict[str, bool] = {}


def _skipped_key(key: str) -> bool:
    """Whether run metadata ``key`` is internal or identity (not the user's), remembered
    per key (LangChain's keys repeat on every run)."""
    skip = key in _IDENTITY_KEYS or key.startswith(_INTERNAL_PREFIXES)
    if len(_SKIPPED_KEYS) < 4096:
        _SKIPPED_KEYS[key] = skip
    return skip


def user_tags(base: tuple[str, ...], tags: Sequence[Any]) -> tuple[str, ...]:
    """``base`` plus the user's run tags, once each (LangChain's step tags and values that
    are not strings dropped)."""
    # A loop, not a comprehension: most runs carry only LangChain's own step tag.
    extra: list[str] | None = None
    for t in tags:
        if type(t) is str and not t.startswith(_INTERNAL_TAG_PREFIXES) and t not in base:
            if extra is None:
                extra = [t]
            else:
                extra.append(t)
    if extra is None:
        return base
    return base + tuple(dict.fromkeys(extra))


_INTERRUPTS = frozenset({"GraphInterrupt", "NodeInterrupt"})


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
