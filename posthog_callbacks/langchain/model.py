"""Model-call details from LangChain callbacks: model, usage, parameters, tools, errors.

Reads attributes of ``LLMResult`` / serialized constructors cheaply on the caller's thread;
nothing here serialises LangChain objects.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

from ..spans import OpenSpan, Usage
from ..usage import (
    PROVIDER_ALIASES,
    normalize_provider,
    provider_from_class,
    sum_usage,
    usage_from_mapping,
    web_search_count,
)
from .convert import class_name, generations, plain, response_sized

__all__ = [
    "OPENAI_STREAM_WITHOUT_USAGE",
    "base_url_from_serialized",
    "extract_model_parameters",
    "extract_provider_hint",
    "extract_served_model",
    "extract_service_tier",
    "extract_stop_reason",
    "extract_usage",
    "extract_web_searches",
    "finish_generation",
    "http_status",
    "model_name_from_params",
    "provider_for",
    "start_generation",
    "tools_to_openai",
    "usage_missing_reason",
]

log = logging.getLogger(__name__)

_KNOWN_PROVIDERS = frozenset(PROVIDER_ALIASES.values())


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


def start_generation(
    span: OpenSpan, serialized: Any, params: Any, metadata: Mapping[str, Any] | None
) -> None:
    """Fill a new generation span with the requested model, provider, parameters, tools."""
    if not isinstance(params, dict):
        params = None
    md = metadata or {}
    span.model = md.get("ls_model_name") or model_name_from_params(params)
    span.provider = provider_for(md.get("ls_provider"), serialized)
    span.model_parameters = extract_model_parameters(params, md)
    if params is not None:
        tools = params.get("tools")
        if tools:
            span.tools = tools_to_openai(tools)
    span.base_url = base_url_from_serialized(serialized)


def finish_generation(span: OpenSpan, response: Any) -> int:
    """Fill an ending generation span with output, served model, usage and stop reason.

    Returns:
        ``sizing.value_bytes(span.output)`` when counted while converting it, else -1.
    """
    gens = generations(response)
    # Each generation's message and response metadata, read once for every extractor, in
    # one loop (no comprehension frames).
    messages: list[Any] = []
    metas: list[Any] = []
    for gen in gens:
        message = getattr(gen, "message", None)
        messages.append(message)
        metas.append(getattr(message, "response_metadata", None))
    span.output, output_bytes = response_sized(gens, messages)
    llm_output = getattr(response, "llm_output", None)
    served = _served_model(gens, metas, llm_output)
    if served:
        span.model = served
    if span.provider not in _KNOWN_PROVIDERS:
        # ls_provider defaults to the lowercased class name for integrations that do
        # not set it; the response's model_provider says more.
        hint = normalize_provider(_provider_hint(metas))
        if hint is not None:
            span.provider = hint
    params = span.model_parameters
    if span.first_token_time is not None and (params is None or params.get("stream") is not True):
        # .stream() on a model whose `streaming` field is False still streams
        span.model_parameters = {**(params or {}), "stream": True}
    usage = _usage(gens, messages, metas, llm_output)
    if usage is None:
        span.usage_missing_reason = usage_missing_reason(span)
    else:
        if usage.web_search_count is None:
            searches = _web_searches(messages, metas, llm_output)
            if searches is not None:
                usage = usage._replace(web_search_count=searches)
        span.usage = usage
    if gens:
        span.stop_reason = _stop_reason(gens[-1], metas[-1])
    span.service_tier = _service_tier(metas, llm_output)
    return output_bytes


OPENAI_STREAM_WITHOUT_USAGE = (
    "OpenAI streams report usage only when asked: pass stream_usage=True to "
    "ChatOpenAI (or model_kwargs={'stream_options': {'include_usage': True}})"
)


def usage_missing_reason(span: OpenSpan) -> str:
    """Why a model call has no usage, and how to get it (``$ai_usage_missing_reason``).

    ``OPENAI_STREAM_WITHOUT_USAGE`` for an OpenAI stream that was not asked for usage.
    """
    streaming = bool((span.model_parameters or {}).get("stream"))
    if span.provider == "openai" and streaming:
        return OPENAI_STREAM_WITHOUT_USAGE
    if span.base_url and span.provider in ("openai", "azure") and "openai.com" not in span.base_url:
        return (
            f"the OpenAI-compatible server at {span.base_url} returned no usage; "
            "enable usage reporting on that server, or stream_usage=True"
        )
    if streaming:
        return (
            "the streamed response carried no usage; enable usage reporting for "
            "streams on the model (e.g. stream_usage=True)"
        )
    return "the provider response carried no token usage"


def _function(spec: Mapping[str, Any], parameters: Any) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": spec.get("name"),
            "description": spec.get("description"),
            "parameters": plain(parameters),
        },
    }


def _tool_to_openai(tool: Any) -> Any:
    if not isinstance(tool, dict):
        return tool
    if "function" in tool or tool.get("type") not in (None, "custom"):
        return plain(dict(tool))
    if "input_schema" in tool:  # Anthropic
        return _function(tool, tool.get("input_schema"))
    if "toolSpec" in tool:  # Bedrock Converse
        spec = tool["toolSpec"]
        if not isinstance(spec, dict):
            spec = {}
        schema = spec.get("inputSchema")
        return _function(spec, schema.get("json") if isinstance(schema, dict) else schema)
    if "name" in tool:
        return _function(tool, tool.get("parameters"))
    return plain(dict(tool))


def tools_to_openai(tools: Any) -> list[Any] | None:
    """Tools bound to a model, in OpenAI's ``{"type": "function", "function": ...}`` shape."""
    if not isinstance(tools, (list, tuple)) or not tools:
        return None
    return [_tool_to_openai(tool) for tool in tools]


_PARAM_KEYS = (
    "temperature",
    "max_tokens",
    "max_completion_tokens",
    "max_output_tokens",
    "num_predict",
    "top_p",
    "top_k",
    "frequency_penalty",
    "presence_penalty",
    "stop",
    "stop_sequences",
    "seed",
    "n",
    "reasoning_effort",
    "reasoning",
    "thinking",
    "service_tier",
    "response_format",
    "tool_choice",
    "parallel_tool_calls",
    "logprobs",
    "top_logprobs",
)


_PARAM_ORDER = {key: i for i, key in enumerate(_PARAM_KEYS)}


_LS_PARAMS = (
    ("ls_temperature", "temperature"),
    ("ls_max_tokens", "max_tokens"),
    ("ls_stop", "stop"),
)


def extract_model_parameters(
    params: Mapping[str, Any] | None, metadata: Mapping[str, Any] | None = None
) -> dict[str, Any] | None:
    """The model parameters worth recording from LangChain ``invocation_params``.

    LangChain's ``ls_temperature`` / ``ls_max_tokens`` / ``ls_stop`` metadata fill in what
    a model leaves out of its invocation params (``ChatGroq`` reports none there).
    """
    out: dict[str, Any] = {}
    if params:
        if type(params) is dict and len(params) < len(_PARAM_KEYS):
            # Usually a handful of params: look each one up instead of every known key
            # (the same keys, in the same order).
            found = []
            for key, value in params.items():  # a loop: a comprehension is a call more
                if value is not None and key in _PARAM_ORDER:
                    found.append((_PARAM_ORDER[key], key, value))
            if len(found) > 1:
                found.sort()  # by position in _PARAM_KEYS (unique: nothing else compared)
            for _, key, value in found:
                out[key] = plain(value)
        else:
            for key in _PARAM_KEYS:
                value = params.get(key)
                if value is not None:
                    out[key] = plain(value)
        stream = params.get("stream")
        if stream is None:
            stream = params.get("streaming")
        if isinstance(stream, bool):
            out["stream"] = stream
    if metadata:
        for ls_key, key in _LS_PARAMS:
            if key not in out:
                value = metadata.get(ls_key)
                if value is not None:
                    out[key] = plain(value)
    return out or None


_BASE_URL_KEYS = (
    "openai_api_base",
    "base_url",
    "anthropic_api_url",
    "groq_api_base",
    "azure_endpoint",
    "endpoint_url",
    "api_base",
    "endpoint",
    "service_url",
)
_DEFAULT_BASE_URLS = {
    "ChatOpenAI": ("https://api.openai.com/v1", ("OPENAI_BASE_URL", "OPENAI_API_BASE")),
    "OpenAI": ("https://api.openai.com/v1", ("OPENAI_BASE_URL", "OPENAI_API_BASE")),
    "ChatAnthropic": ("https://api.anthropic.com", ("ANTHROPIC_API_URL", "ANTHROPIC_BASE_URL")),
    "ChatGroq": ("https://api.groq.com", ("GROQ_API_BASE", "GROQ_BASE_URL")),
}


def base_url_from_serialized(serialized: Any) -> str | None:
    """The API base URL of a model, from its serialized constructor kwargs.

    Falls back to the documented default of well-known classes when neither the
    constructor nor the environment changed it.
    """
    if not isinstance(serialized, dict):
        return None
    kwargs = serialized.get("kwargs")
    if isinstance(kwargs, dict):
        for key in _BASE_URL_KEYS:
            value = kwargs.get(key)
            if isinstance(value, str) and value:
                return value
    cls = class_name(serialized)
    default = _DEFAULT_BASE_URLS.get(cls) if cls is not None else None
    if default is not None:
        url, env_vars = default
        for var in env_vars:
            env = os.environ.get(var)
            if env:
                return env
        return url
    return None


def _metas(gens: Sequence[Any]) -> list[Any]:
    """The ``response_metadata`` of each generation's message (``None`` where absent)."""
    return [getattr(getattr(gen, "message", None), "response_metadata", None) for gen in gens]


def extract_served_model(gens: Sequence[Any], llm_output: Any) -> str | None:
    """The model the provider says it served (``response_metadata`` / ``llm_output``)."""
    return _served_model(gens, _metas(gens), llm_output)


# The loops below pair generations with their metadata by index, not zip(..., strict=True):
# the lists are built together (same length), and a zip with a keyword costs ~0.4 µs more
# than walking a one-item list on the caller's thread.


def _served_model(gens: Sequence[Any], metas: Sequence[Any], llm_output: Any) -> str | None:
    for i, meta in enumerate(metas):
        if meta:
            for key in ("model_name", "model", "model_id"):
                value = meta.get(key)
                if isinstance(value, str) and value:
                    return value
        info = getattr(gens[i], "generation_info", None)
        if info:
            for key in ("model_name", "model"):
                value = info.get(key)
                if isinstance(value, str) and value:
                    return value
    if isinstance(llm_output, dict):
        for key in ("model_name", "model", "model_id"):
            value = llm_output.get(key)
            if isinstance(value, str) and value:
                return value
    return None


def extract_service_tier(gens: Sequence[Any], llm_output: Any) -> str | None:
    """The service tier the provider says it served (OpenAI ``service_tier``).

    Taken from the response, not the request: a requested tier can be refused.
    """
    return _service_tier(_metas(gens), llm_output)


def _service_tier(metas: Sequence[Any], llm_output: Any) -> str | None:
    for meta in metas:
        if meta:
            value = meta.get("service_tier")
            if isinstance(value, str) and value:
                return value
    if isinstance(llm_output, dict):
        value = llm_output.get("service_tier")
        if isinstance(value, str) and value:
            return value
    return None


def _web_search_blocks(message: Any) -> int:
    """OpenAI Responses ``web_search_call`` items (content blocks, or ``tool_outputs``
    in ``additional_kwargs``) and LangChain v1 ``server_tool_call`` web searches."""
    content = getattr(message, "content", None)
    extra = getattr(message, "additional_kwargs", None)
    if type(content) is str and (
        extra is None or (type(extra) is dict and "tool_outputs" not in extra)
    ):
        return 0  # a text answer without tool outputs (the usual case)
    outputs = extra.get("tool_outputs") if isinstance(extra, dict) else None
    count = 0
    for blocks in (content, outputs):
        if type(blocks) is not list:
            continue
        for block in blocks:
            if type(block) is not dict:
                continue
            kind = block.get("type")
            if kind == "web_search_call" or (
                kind == "server_tool_call" and block.get("name") == "web_search"
            ):
                count += 1
    return count


def extract_web_searches(gens: Sequence[Any], llm_output: Any) -> int | None:
    """Server-side web searches of a model call (``$ai_web_search_count``), if reported.

    LangChain's ``usage_metadata`` has no field for them: Anthropic reports
    ``server_tool_use.web_search_requests`` in the raw usage (``response_metadata`` /
    ``llm_output``), OpenAI's Responses API one ``web_search_call`` item per search.
    """
    messages = [getattr(gen, "message", None) for gen in gens]
    return _web_searches(
        messages, [getattr(m, "response_metadata", None) for m in messages], llm_output
    )


def _web_searches(messages: Sequence[Any], metas: Sequence[Any], llm_output: Any) -> int | None:
    total: int | None = None
    for i, message in enumerate(messages):
        meta = metas[i]
        raw = meta.get("usage") if isinstance(meta, dict) else None
        found = web_search_count(raw) if raw is not None else None
        if found is None:
            blocks = _web_search_blocks(message)
            found = blocks or None
        if found is not None:
            total = (total or 0) + found
    if total is None and isinstance(llm_output, dict):
        total = web_search_count(llm_output.get("usage"))
    return total


def extract_provider_hint(gens: Sequence[Any]) -> str | None:
    """``response_metadata["model_provider"]`` of the first generation, if any."""
    return _provider_hint(_metas(gens))


def _provider_hint(metas: Sequence[Any]) -> str | None:
    for meta in metas:
        if meta:
            value = meta.get("model_provider")
            if isinstance(value, str) and value:
                return value
    return None


# LangChain's UsageMetadata: input_tokens counts every input type (cached included); cache
# reads and writes live in input_token_details, reasoning in output_token_details.
_USAGE_METADATA_KEYS = frozenset(
    {"input_tokens", "output_tokens", "total_tokens", "input_token_details", "output_token_details"}
)


def _documented(um: Any) -> Any:
    """``usage_metadata`` without keys outside LangChain's ``UsageMetadata``.

    An integration that also copies raw provider keys into it (``cache_read_input_tokens``,
    ``prompt_tokens``) must not have them read with the provider's meaning: they would
    count cached tokens on top of an ``input_tokens`` that already includes them.
    """
    if isinstance(um, dict) and not um.keys() <= _USAGE_METADATA_KEYS:
        return {k: v for k, v in um.items() if k in _USAGE_METADATA_KEYS}
    return um


def extract_usage(gens: Sequence[Any], llm_output: Any) -> Usage | None:
    """Token usage of a model call, summed over all its generations.

    Order: ``usage_metadata`` of each generation's message (read with LangChain's
    meaning only, never combined with raw provider usage), else ``llm_output``
    (``token_usage`` / ``usage``), else per-generation ``response_metadata`` /
    ``generation_info`` usage shapes.
    """
    messages = [getattr(gen, "message", None) for gen in gens]
    return _usage(
        gens, messages, [getattr(m, "response_metadata", None) for m in messages], llm_output
    )


def _usage(
    gens: Sequence[Any], messages: Sequence[Any], metas: Sequence[Any], llm_output: Any
) -> Usage | None:
    total: Usage | None = None
    for message in messages:
        um = getattr(message, "usage_metadata", None)
        if um:
            if type(um) is not dict or not um.keys() <= _USAGE_METADATA_KEYS:
                um = _documented(um)
            usage = usage_from_mapping(um)
            if usage is not None:
                total = usage if total is None else total + usage
    if total is not None:
        return total
    if isinstance(llm_output, dict):
        for key in ("token_usage", "usage"):
            raw = llm_output.get(key)
            if raw:
                found = usage_from_mapping(raw)
                if found is not None:
                    return found
    usages = []
    for gen, meta in zip(gens, metas, strict=True):
        info = getattr(gen, "generation_info", None)
        raw = None
        for source in (info, meta):
            if isinstance(source, dict):
                for key in (
                    "usage_metadata",
                    "usage",
                    "token_usage",
                    "amazon-bedrock-invocationMetrics",
                ):
                    if source.get(key):
                        raw = source[key]
                        break
                if raw is None and "prompt_eval_count" in source:  # Ollama
                    raw = source
            if raw is not None:
                break
        if raw is not None:
            usages.append(usage_from_mapping(raw))
    return sum_usage(usages)


_TERMINAL_STATUSES = ("completed", "incomplete", "failed", "cancelled")


def extract_stop_reason(gens: Sequence[Any]) -> str | None:
    """Why the (last) generation stopped: ``finish_reason`` / ``stop_reason`` / status."""
    if not gens:
        return None
    gen = gens[-1]
    return _stop_reason(gen, getattr(getattr(gen, "message", None), "response_metadata", None))


def _stop_reason(gen: Any, meta: Any) -> str | None:
    info = getattr(gen, "generation_info", None)
    for source in (meta, info):
        if isinstance(source, dict):
            for key in ("finish_reason", "stop_reason", "stopReason", "done_reason"):
                value = source.get(key)
                if value is not None:
                    try:
                        return value if isinstance(value, str) else str(value)
                    except Exception:  # a provider object that cannot print itself
                        return None
    if isinstance(meta, dict):
        status = meta.get("status")
        if isinstance(status, str) and status in _TERMINAL_STATUSES:
            details = meta.get("incomplete_details")
            reason = details.get("reason") if isinstance(details, dict) else None
            if status == "incomplete" and isinstance(reason, str) and reason:
                return reason
            return status
    return None


def http_status(error: BaseException) -> int | None:
    """The HTTP status of a provider error (OpenAI, Anthropic, Google, httpx), if any."""
    for attr in ("status_code", "code", "http_status"):
        value = getattr(error, attr, None)
        if isinstance(value, int) and not isinstance(value, bool) and 100 <= value < 600:
            return value
    response = getattr(error, "response", None)
    value = getattr(response, "status_code", None)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return None
