"""LangChain objects -> plain Python values, cheaply, on the caller's thread.

Everything here reads attributes and builds small dicts and lists; nothing calls
``repr()``, ``json.dumps`` of LangChain objects or ``model_dump()``. Leaves that are not
recognised are kept by reference and serialised later on the exporter's worker.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from ..spans import error_text

__all__ = [
    "class_name",
    "error_outcome",
    "generations",
    "message_to_dict",
    "messages_input",
    "plain",
    "response_output",
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
            arguments = plain(args)
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
    results keep their ``tool_call_id``. Content lists are copied, not serialised.
    """
    mtype = getattr(message, "type", None)
    role = _ROLES.get(mtype) if isinstance(mtype, str) else None
    if role is None:
        role = getattr(message, "role", None) or (mtype if isinstance(mtype, str) else "unknown")
    content = getattr(message, "content", None)
    if type(content) is list:
        content = plain(content)
    elif content is None:
        content = ""
    result: dict[str, Any] = {"role": role, "content": content}
    name = getattr(message, "name", None)
    if name:
        result["name"] = name
    if role == "assistant":
        calls = getattr(message, "tool_calls", None)
        invalid = getattr(message, "invalid_tool_calls", None)
        if calls or invalid:
            result["tool_calls"] = [_tool_call_to_openai(c) for c in calls or ()] + [
                _invalid_tool_call_to_openai(c) for c in invalid or ()
            ]
        extra = getattr(message, "additional_kwargs", None)
        if extra:
            for key in ("function_call", "refusal", "reasoning_content"):
                value = extra.get(key)
                if value:
                    result[key] = plain(value)
    elif role == "tool":
        call_id = getattr(message, "tool_call_id", None)
        if call_id:
            result["tool_call_id"] = call_id
        status = getattr(message, "status", None)
        if status == "error":
            result["status"] = "error"
    return result


def _document_to_dict(doc: Any) -> dict[str, Any]:
    result: dict[str, Any] = {"page_content": getattr(doc, "page_content", None)}
    metadata = getattr(doc, "metadata", None)
    if metadata:
        result["metadata"] = plain(metadata)
    doc_id = getattr(doc, "id", None)
    if doc_id:
        result["id"] = doc_id
    return result


_LEAF_TYPES = frozenset({str, int, float, bool, type(None), bytes})
_LEAF, _MESSAGE, _DOCUMENT, _PROMPT_VALUE, _STRING_PROMPT = range(5)
_KINDS: dict[type, int] = {}


def _kind_of(t: type, value: Any) -> int:
    """Classify a type once (LangChain message, document, prompt value or opaque leaf)."""
    kind = _KINDS.get(t)
    if kind is None:
        if (
            hasattr(value, "content")
            and hasattr(value, "type")
            and hasattr(value, "response_metadata")
        ):
            kind = _MESSAGE
        elif hasattr(value, "page_content"):
            kind = _DOCUMENT
        elif t.__name__ == "StringPromptValue":
            kind = _STRING_PROMPT
        elif callable(getattr(value, "to_messages", None)):
            kind = _PROMPT_VALUE
        else:
            kind = _LEAF
        if len(_KINDS) < 4096:
            _KINDS[t] = kind
    return kind


def plain(value: Any, _depth: int = 0) -> Any:
    """Copy containers and turn messages, documents and prompt values into plain dicts.

    Bounded in depth and width; unknown objects are kept by reference (the exporter's
    worker serialises them). Never raises.
    """
    try:
        t = type(value)
        if t in _LEAF_TYPES or _depth >= _MAX_DEPTH:
            return value
        if t is dict:
            if len(value) > _MAX_ITEMS:
                return {k: plain(value[k], _depth + 1) for k in list(value)[:_MAX_ITEMS]}
            return {k: plain(v, _depth + 1) for k, v in value.items()}
        if t is list or t is tuple:
            return [plain(v, _depth + 1) for v in value[:_MAX_ITEMS]]
        kind = _kind_of(t, value)
        if kind == _MESSAGE:
            return message_to_dict(value)
        if kind == _DOCUMENT:
            return _document_to_dict(value)
        if kind == _PROMPT_VALUE:
            return [message_to_dict(m) for m in value.to_messages()]
        if kind == _STRING_PROMPT:
            return getattr(value, "text", value)
        return value
    except Exception:
        return value


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


def response_output(gens: Sequence[Any]) -> list[dict[str, Any]]:
    """The choices of a model call (its :func:`generations`) as role/content dicts."""
    out: list[dict[str, Any]] = []
    for gen in gens:
        message = getattr(gen, "message", None)
        if message is not None:
            out.append(message_to_dict(message))
        else:
            out.append({"role": "assistant", "content": getattr(gen, "text", "")})
    return out


def messages_input(messages: Sequence[Sequence[Any]]) -> list[dict[str, Any]]:
    """``on_chat_model_start`` messages (a batch of one prompt) as role/content dicts."""
    return [message_to_dict(m) for row in messages for m in row]


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

    A key that is not a string is kept under its ``str()``; one that cannot print itself
    is dropped.
    """
    out: dict[str, Any] = {}
    for key, value in metadata.items():
        if type(key) is not str:
            try:
                key = str(key)
            except Exception:
                continue
        if key in _IDENTITY_KEYS or key.startswith(_INTERNAL_PREFIXES):
            continue
        out[key] = plain(value)
    return out or None


def user_tags(base: tuple[str, ...], tags: Sequence[Any]) -> tuple[str, ...]:
    """``base`` plus the user's run tags (LangChain's step tags and non-strings dropped)."""
    extra = tuple(
        t
        for t in tags
        if type(t) is str and not t.startswith(_INTERNAL_TAG_PREFIXES) and t not in base
    )
    return base + extra if extra else base


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
