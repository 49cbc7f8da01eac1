"""Value extraction for the LlamaIndex front doors: messages, nodes, models, usage.

Nothing here imports ``llama_index``: the helpers duck-type LlamaIndex objects
(``ChatMessage``, ``ChatResponse``, ``NodeWithScore``, ...) so they stay cheap and total.
They run on the caller's thread and must not serialise large objects: they pick the few
fields an event needs and leave JSON conversion to ``events.py`` on the worker.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..spans import OpenSpan, Usage, snapshot
from ..usage import provider_from_class, usage_from_mapping

__all__ = [
    "NO_USAGE_HINT",
    "OPENAI_STREAM_USAGE_HINT",
    "base_url_of",
    "chat_output",
    "compact",
    "completion_output",
    "fill_embedding",
    "fill_generation",
    "message_to_dict",
    "messages_to_dicts",
    "model_and_provider",
    "model_parameters",
    "nodes_summary",
    "response_fields",
    "text_of",
    "tools_of",
]

OPENAI_STREAM_USAGE_HINT = (
    "OpenAI streams report no usage unless asked: pass "
    "additional_kwargs={'stream_options': {'include_usage': True}} to the OpenAI LLM"
)
NO_USAGE_HINT = "the model returned no token usage (ChatResponse.raw / additional_kwargs)"


def text_of(value: Any) -> Any:
    """The readable text of a query bundle, response or message; other values unchanged.

    Never consumes a streaming response: one that has not been read yet gives ``None``.
    """
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    query_str = getattr(value, "query_str", None)
    if isinstance(query_str, str):
        return query_str
    if (
        hasattr(value, "response_gen")
        or hasattr(value, "chat_stream")
        or hasattr(value, "achat_stream")
    ):
        text = getattr(value, "response_txt", None) or getattr(value, "response", None)
        return text if isinstance(text, str) and text else None
    response = getattr(value, "response", None)
    if isinstance(response, str):
        return response
    return value


def compact(value: Any) -> Any:
    """A small, readable stand-in for an argument or result of an arbitrary method."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, (list, tuple)):
        head = value[:50]
        if all(isinstance(v, (str, int, float)) for v in head):
            return list(head)
        first = head[0]
        if hasattr(first, "node_id") or hasattr(first, "node"):
            return nodes_summary(head)
        if hasattr(first, "role") and hasattr(first, "blocks"):
            return messages_to_dicts(head)
        return f"<{len(value)} x {type(first).__name__}>"
    text = text_of(value)
    if text is not value:
        return text
    if isinstance(value, dict):
        return snapshot(value)
    return f"<{type(value).__name__}>"


def messages_to_dicts(messages: Any) -> list[dict[str, Any]]:
    """LlamaIndex ``ChatMessage`` objects -> ``{"role", "content"}`` dicts (+ tool calls)."""
    out: list[dict[str, Any]] = []
    if not isinstance(messages, (list, tuple)):
        return out
    for message in messages:
        out.append(message_to_dict(message))
    return out


def message_to_dict(message: Any) -> dict[str, Any]:
    """One ``ChatMessage`` as a ``{"role", "content"}`` dict."""
    if type(message) is dict or isinstance(message, Mapping):
        return dict(message)
    role = getattr(message, "role", "user")
    role = getattr(role, "value", role)
    try:
        content = message.content
    except Exception:
        content = None
    item: dict[str, Any] = {"role": role, "content": content if content is not None else ""}
    calls = []
    for block in getattr(message, "blocks", None) or ():
        if type(block).__name__ == "ToolCallBlock":
            calls.append(
                {
                    "id": getattr(block, "tool_call_id", None),
                    "type": "function",
                    "function": {
                        "name": getattr(block, "tool_name", None),
                        "arguments": snapshot(getattr(block, "tool_kwargs", None)),
                    },
                }
            )
    if calls:
        item["tool_calls"] = calls
    extra = getattr(message, "additional_kwargs", None)
    if type(extra) is dict or (extra is not None and isinstance(extra, Mapping)):
        call_id = extra.get("tool_call_id")
        if call_id:
            item["tool_call_id"] = call_id
    return item


def nodes_summary(nodes: Any, limit: int = 50) -> list[dict[str, Any]]:
    """Retrieved ``NodeWithScore`` list -> ``[{"id", "score", "text"}]`` (first ``limit``)."""
    out: list[dict[str, Any]] = []
    if not isinstance(nodes, (list, tuple)):
        return out
    for item in nodes[:limit]:
        node = getattr(item, "node", item)
        entry: dict[str, Any] = {"id": getattr(node, "node_id", None) or getattr(node, "id_", None)}
        score = getattr(item, "score", None)
        if score is not None:
            entry["score"] = score
        text = getattr(node, "text", None)
        if isinstance(text, str):
            entry["text"] = text
        out.append(entry)
    return out


_MODEL_KEYS = ("model", "model_name", "model_id", "deployment_name", "engine")
_MODEL_KEY_SET = frozenset(_MODEL_KEYS)


def model_and_provider(model_dict: Any, instance: Any = None) -> tuple[str | None, str | None]:
    """Model name and provider from an LLM's ``to_dict()`` payload and/or instance."""
    model = provider = None
    if type(model_dict) is dict or (model_dict is not None and isinstance(model_dict, Mapping)):
        keys: Any = _MODEL_KEYS
        if type(model_dict) is dict:  # only the keys it has, in _MODEL_KEYS' order
            present = _MODEL_KEY_SET.intersection(model_dict)
            if len(present) < 2:
                keys = present
        for key in keys:
            value = model_dict.get(key)
            if isinstance(value, str) and value and value != "unknown":
                model = value
                break
        provider = provider_from_class(model_dict.get("class_name"))
    if instance is not None:
        if model is None and _has_metadata(type(instance)):
            try:
                value = instance.metadata.model_name
                if isinstance(value, str) and value and value != "unknown":
                    model = value
            except Exception:
                pass
        if provider is None:
            provider = provider_from_class(type(instance).__name__)
    return model, provider


_METADATA_CACHE: dict[type, bool] = {}


def _has_metadata(cls: type) -> bool:
    """Whether an LLM class has ``metadata`` (cached: a pydantic class answers "no" slowly)."""
    try:
        return _METADATA_CACHE[cls]
    except KeyError:
        found = hasattr(cls, "metadata")
        if len(_METADATA_CACHE) < 1000:
            _METADATA_CACHE[cls] = found
        return found


_PARAM_KEYS = (
    "temperature",
    "max_tokens",
    "top_p",
    "top_k",
    "frequency_penalty",
    "presence_penalty",
    "seed",
    "stop",
    "max_new_tokens",
    "num_output",
)

_PARAM_KEY_SET = frozenset(_PARAM_KEYS)
_SCALARS = frozenset({int, float, str, bool})


def model_parameters(
    model_dict: Any, call_kwargs: Any, instance: Any = None
) -> dict[str, Any] | None:
    """Sampling parameters from the LLM (payload or instance) and the call kwargs."""
    params: dict[str, Any] = {}
    source: Any = None
    if instance is not None:
        # pydantic keeps fields in __dict__; getattr() on a missing one is slow
        source = getattr(instance, "__dict__", None)
    elif type(model_dict) is dict or (model_dict is not None and isinstance(model_dict, Mapping)):
        source = model_dict
        num_output = model_dict.get("num_output")
        if isinstance(num_output, int) and num_output > 0 and "max_tokens" not in source:
            params["max_tokens"] = num_output
    if type(source) is dict or (source is not None and isinstance(source, Mapping)):
        # One C-level pass finds which parameters the source has (usually few or none);
        # the loop keeps _PARAM_KEYS' order for those.
        present = _PARAM_KEY_SET.intersection(source) if type(source) is dict else _PARAM_KEYS
        if present:
            for key in _PARAM_KEYS:
                if key in present:
                    value = source.get(key)
                    if value is not None and isinstance(value, (int, float, str, list)):
                        params[key] = value if type(value) in _SCALARS else snapshot(value)
        extra = source.get("additional_kwargs")
        if type(extra) is dict or (extra is not None and isinstance(extra, Mapping)):
            for key, value in extra.items():
                if (value is not None and not isinstance(value, (list, dict))) or key in (
                    "stream_options",
                    "stop",
                ):
                    params[key] = snapshot(value)
    if type(call_kwargs) is dict or (call_kwargs is not None and isinstance(call_kwargs, Mapping)):
        for key, value in call_kwargs.items():
            if key in _PARAM_KEYS or key in ("tool_choice", "stream_options"):
                params[key] = snapshot(value)
    return params or None


def base_url_of(instance: Any) -> str | None:
    """The API base URL an LLM instance talks to, when it says."""
    fields = getattr(instance, "__dict__", None)
    if isinstance(fields, dict):  # not getattr(): pydantic raises slowly for a missing one
        for attr in ("api_base", "base_url"):
            value = fields.get(attr)
            if value:
                return str(value)
    return None


def tools_of(call_kwargs: Any) -> list[Any] | None:
    """Tool definitions passed to a model call (OpenAI dicts or LlamaIndex tools)."""
    if not (
        type(call_kwargs) is dict or (call_kwargs is not None and isinstance(call_kwargs, Mapping))
    ):
        return None
    tools = call_kwargs.get("tools")
    if not isinstance(tools, (list, tuple)) or not tools:
        return None
    out: list[Any] = []
    for tool in tools:
        meta = getattr(tool, "metadata", None)
        if meta is not None and hasattr(meta, "name"):
            out.append(
                {
                    "type": "function",
                    "function": {
                        "name": meta.name,
                        "description": getattr(meta, "description", None),
                    },
                }
            )
        else:
            out.append(snapshot(tool))
    return out


def _get(obj: Any, key: str) -> Any:
    try:
        if type(obj) is dict or (obj is not None and isinstance(obj, Mapping)):
            return obj.get(key)
        return getattr(obj, key, None)
    except Exception:  # a provider object whose attributes raise: read nothing from it
        return None


def response_fields(
    response: Any, provider: str | None
) -> tuple[Usage | None, str | None, str | None, str | None]:
    """Usage, reported model, stop reason and a missing-usage reason from a response.

    Reads ``ChatResponse`` / ``CompletionResponse``: ``raw.usage`` (OpenAI objects,
    Anthropic and Bedrock dicts), ``raw.usage_metadata`` (Gemini), a raw dict that is
    itself usage-shaped (Ollama), ``additional_kwargs`` (LlamaIndex's OpenAI token
    counts), and ``message.additional_kwargs["usage"]`` (Anthropic streams).
    """
    if response is None:
        return None, None, None, NO_USAGE_HINT
    # pydantic keeps fields in __dict__: reading it avoids BaseModel.__getattr__ raising
    # for fields a response type lacks (CompletionResponse has no ``message``).
    fields = getattr(response, "__dict__", None)
    if not isinstance(fields, dict):
        fields = {
            name: getattr(response, name, None)
            for name in ("raw", "additional_kwargs", "message", "delta")
        }
    raw = fields.get("raw")
    usage: Usage | None = None
    model = stop = None
    if raw is not None:
        # A plain dict (the usual raw response) is read directly; anything else through _get.
        get = raw.get if type(raw) is dict else lambda key: _get(raw, key)
        usage = usage_from_mapping(get("usage"))
        if usage is None:
            usage = usage_from_mapping(get("usage_metadata"))
        if usage is None and (type(raw) is dict or isinstance(raw, Mapping)):
            usage = usage_from_mapping(raw)
        value = get("model") or get("model_version")
        model = value if isinstance(value, str) and value else None
        stop = get("stop_reason") or get("stopReason") or get("done_reason")
        if stop is None:
            choices = get("choices")
            if isinstance(choices, (list, tuple)) and choices:
                stop = _get(choices[0], "finish_reason")
    extra = fields.get("additional_kwargs")
    if (
        usage is None
        and (type(extra) is dict or (extra is not None and isinstance(extra, Mapping)))
        and extra
    ):
        usage = usage_from_mapping(extra.get("usage")) or usage_from_mapping(extra)
    message = fields.get("message")
    msg_extra = getattr(message, "additional_kwargs", None) if message is not None else None
    if type(msg_extra) is dict or (msg_extra is not None and isinstance(msg_extra, Mapping)):
        if usage is None:
            usage = usage_from_mapping(msg_extra.get("usage"))
        if stop is None:
            stop = msg_extra.get("stop_reason")
    reason = None
    if usage is None:
        is_chunk = raw is not None and type(raw).__name__ == "ChatCompletionChunk"
        reason = (
            OPENAI_STREAM_USAGE_HINT
            if (is_chunk or (provider == "openai" and fields.get("delta") is not None))
            else NO_USAGE_HINT
        )
    return usage, model, stop if isinstance(stop, str) else None, reason


def chat_output(response: Any) -> list[dict[str, Any]] | None:
    """A ``ChatResponse`` as ``$ai_output_choices``."""
    message = getattr(response, "message", None)
    if message is None:
        return None
    return [message_to_dict(message)]


def completion_output(response: Any) -> list[dict[str, Any]] | None:
    """A ``CompletionResponse`` as ``$ai_output_choices``."""
    text = getattr(response, "text", None)
    if text is None:
        return None
    return [{"role": "assistant", "content": text}]


def fill_embedding(span: OpenSpan, chunks: Any) -> None:
    """Input and chunk count of a finished embedding call."""
    if isinstance(chunks, list):
        span.input = chunks[0] if len(chunks) == 1 else list(chunks)
        span.model_parameters = {"chunks": len(chunks)}
    span.usage_missing_reason = "LlamaIndex embedding models do not report token usage"


def fill_generation(span: OpenSpan, response: Any, is_chat: bool) -> None:
    """Output, usage, reported model and stop reason of a finished model call."""
    if response is None:
        span.usage_missing_reason = "the model call returned no response"
        return
    span.output = (
        chat_output(response)
        if is_chat and hasattr(response, "message")
        else completion_output(response)
    )
    usage, model, stop, reason = response_fields(response, span.provider)
    if usage is None:
        usage = span.extra.get("inner_usage")
    span.usage = usage
    span.usage_missing_reason = None if usage is not None else reason
    if model:
        span.model = model
    if stop:
        span.stop_reason = stop
