"""Span records -> PostHog ``$ai_*`` event dicts.

The only module that spells PostHog's property names. Applies, in order: the distinct id
and session rules, token semantics, privacy mode, the user's mask, secret redaction, base64
placeholders and the per-event size limit.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from . import schema
from ._version import __version__
from .pricing import FREE, ModelPrice, find_price
from .serialize import (
    REDACTED,
    UUID_TEXT,
    Serializer,
    is_secret_key,
    truncate_to_bytes,
    wire_size,
)
from .spans import FinishedSpan, SpanKind, Usage
from .usage import is_anthropic, is_local_provider, posthog_adds_reasoning

__all__ = [
    "DEFAULT_MAX_EVENT_BYTES",
    "LIB_NAME",
    "EventConfig",
    "feedback_event",
    "metric_event",
    "span_to_event",
]

LIB_NAME = "posthog-callbacks"
# PostHog's AI capture endpoint takes 8 MiB per event; keep headroom for the envelope.
DEFAULT_MAX_EVENT_BYTES = 8 * 1024 * 1024 - 64 * 1024
MASK_FAILED = "[masked: mask function failed]"
_NAMESPACE = uuid.UUID("5b0e3f64-3c0f-4c51-9a87-2d7f0c6f1e1a")
_CONTENT_KEYS = schema.CONTENT_PROPERTIES
_RESERVED_PREFIX = "$"
_ERROR_TYPE = re.compile(r"[A-Za-z_][\w.]*")
PRIVATE_ERROR = "error (message hidden by privacy mode)"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EventConfig:
    """Exporter-wide settings the translation needs.

    ``properties`` and ``groups`` must already be JSON-safe (the exporter converts them once).
    """

    privacy_mode: bool = False
    default_distinct_id: str | None = None
    properties: Mapping[str, Any] = field(default_factory=dict)
    groups: Mapping[str, Any] | None = None
    service_name: str | None = None
    mask: Callable[[Any], Any] | None = None
    max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES
    secrets: tuple[str, ...] = ()
    prices: Mapping[str, ModelPrice] = field(default_factory=dict)
    """Custom prices by lowercased model id (``pricing.parse_prices``)."""


_UTC = timezone.utc
_isfinite = math.isfinite


_seconds: dict[int, str] = {}


def _iso(ts: float) -> str:
    # Formatting a datetime costs more than the rest of a small event's header; spans of
    # one burst share their second, so the date-time part is cached per second.
    try:
        second = int(ts)
        if second > ts:  # before 1970: int() rounds toward zero
            second -= 1
        head = _seconds.get(second)
        if head is None:
            # isoformat pads the year to 4 digits (strftime's %Y does not before 1000)
            head = datetime.fromtimestamp(second, _UTC).replace(tzinfo=None).isoformat()
            if len(_seconds) > 4096:
                _seconds.clear()
            _seconds[second] = head
        return f"{head}.{int((ts - second) * 1_000_000):06d}+00:00"
    except (TypeError, ValueError, OverflowError, OSError):
        # A start time that is no time (NaN, infinite, past year 9999, not a number, from
        # a framework or a user's clock): the event is kept, stamped when translated.
        return _iso(time.time())


def _event_uuid(span: FinishedSpan) -> str:
    """The event's uuid (see :func:`_event_uuid_of`)."""
    return _event_uuid_of(span.trace_id, span.span_id, span.parent_id, span.start_time)


def _event_uuid_of(trace_id: str, span_id: str, parent_id: str | None, start: float) -> str:
    # Stable per span, so a retried batch is de-duplicated by PostHog. A root's id is the
    # trace id, which a user may reuse for several runs: its start time tells them apart.
    if parent_id is not None and UUID_TEXT.fullmatch(span_id) is not None:
        return span_id.lower()
    return _uuid5(f"{trace_id}/{span_id}/{start!r}")


_NAMESPACE_BYTES = _NAMESPACE.bytes


def _uuid5(name: str) -> str:
    """``str(uuid.uuid5(_NAMESPACE, name))`` without building a ``UUID`` (a third of a
    small event's translation): the version and variant digits are set in the hex text."""
    h = hashlib.sha1(_NAMESPACE_BYTES + name.encode("utf-8")).hexdigest()
    return f"{h[:8]}-{h[8:12]}-5{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:32]}"


# The first hex digit of the clock sequence with the RFC 4122 variant bits (10xx) set.
_VARIANT = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}


def _identity(
    distinct_id: str | None, trace_id: str, cfg: EventConfig, props: dict[str, Any]
) -> str:
    resolved = distinct_id or cfg.default_distinct_id
    if resolved:
        return str(resolved)
    props[schema.PROCESS_PERSON_PROFILE] = False
    return trace_id  # personless, but one id for the whole trace


def _base(
    span_trace_id: str,
    framework: str,
    session_id: str | None,
    cfg: EventConfig,
    ser: Serializer,
    extra: Mapping[str, Any] | None,
    groups: Mapping[str, Any] | None,
) -> dict[str, Any]:
    props: dict[str, Any] = dict(cfg.properties) if cfg.properties else {}
    if extra:
        props.update(ser.convert(extra))
    props[schema.TRACE_ID] = span_trace_id
    props[schema.LIB] = LIB_NAME
    props[schema.LIB_VERSION] = __version__
    props[schema.FRAMEWORK] = framework
    if cfg.service_name:
        props[schema.SERVICE_NAME] = cfg.service_name
    if session_id:
        props[schema.SESSION_ID] = str(session_id)
    if cfg.groups or groups:
        props[schema.GROUPS] = ser.convert({**(cfg.groups or {}), **(groups or {})})
    return props


def _content(value: Any, cfg: EventConfig, ser: Serializer, recall: bool = False) -> Any:
    data = ser.convert(value, recall)
    if cfg.mask is None:
        return data
    try:
        return ser.convert(cfg.mask(data))
    except Exception:
        log.warning("posthog_callbacks: the mask function raised; content replaced")
        return MASK_FAILED


_MAX_LABEL = 1000


def _text(value: Any, ser: Serializer) -> Any:
    # Names, models and reasons come from user code and provider responses: a key pasted
    # into the wrong field is redacted there too, and junk cannot outgrow the size limit.
    if type(value) is not str:
        value = ser.convert(value)
        if type(value) is not str:
            value = json.dumps(value, ensure_ascii=False)
    if len(value) > _MAX_LABEL:
        value = value[:_MAX_LABEL] + f"…[truncated {len(value) - _MAX_LABEL} chars]"
    return ser.string(value)


def _error_text(text: str, private: bool, cfg: EventConfig, ser: Serializer) -> str:
    # Error messages routinely echo prompts, tool arguments and model output: privacy mode
    # keeps the exception type only (as PostHog's SDK does) and a mask sees the message.
    if private:
        head = text.split(":", 1)[0].strip()
        return head if _ERROR_TYPE.fullmatch(head) else PRIVATE_ERROR
    if cfg.mask is not None:
        masked = _content(text, cfg, ser)
        return masked if isinstance(masked, str) else ser.string(json.dumps(masked))
    return ser.string(text)


def _safe_url(url: str) -> str:
    """``url`` without credentials: no ``user:password@``, secret query values redacted."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            netloc = f"{REDACTED}@{netloc.rsplit('@', 1)[1]}"
        query = parts.query
        if query:
            query = urlencode(
                [
                    (k, REDACTED if is_secret_key(k) else v)
                    for k, v in parse_qsl(query, keep_blank_values=True)
                ],
                safe="[]",
            )
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    except ValueError:
        return REDACTED


def _usage_properties(
    props: dict[str, Any], usage: Usage, provider: str | None, model: str | None
) -> None:
    """Token properties with the semantics PostHog's cost engine expects.

    ``usage`` follows LangChain's convention (input includes cache reads and writes,
    output includes reasoning); PostHog wants, per model: Anthropic input without the
    cache, flagged by ``$ai_cache_reporting_exclusive``; Gemini 2.5/3 output without
    reasoning (PostHog adds ``$ai_reasoning_tokens`` back); a 5m/1h cache-write split only
    as a pair. See docs/events.md, "How PostHog prices these events".
    """
    (input_tokens, output_tokens, total, cache_read, cache_creation, c5, c1, reasoning, web) = usage
    if (
        cache_read is None
        and cache_creation is None
        and c5 is None
        and c1 is None
        and reasoning is None
        and not web
        and (input_tokens is None or (type(input_tokens) is int and input_tokens >= 0))
    ):
        # Plain counts (most calls): nothing to subtract, no cache flag, no split. The
        # same properties as the general rule below (tests/core/test_events.py).
        if input_tokens is not None:
            props[schema.INPUT_TOKENS] = input_tokens
        if output_tokens is not None:
            props[schema.OUTPUT_TOKENS] = output_tokens
        if total is not None:
            props[schema.TOTAL_TOKENS] = total
        return
    _usage_properties_general(props, usage, provider, model)


def _usage_properties_general(
    props: dict[str, Any], usage: Usage, provider: str | None, model: str | None
) -> None:
    """:func:`_usage_properties` for any usage (the reference its fast path is tested
    against)."""
    input_tokens = usage.input_tokens
    output_tokens = usage.output_tokens
    cache_read = usage.cache_read_tokens
    cache_creation = usage.cache_creation_tokens
    reasoning = usage.reasoning_tokens
    anthropic = is_anthropic(provider, model)
    if input_tokens is not None and anthropic:
        input_tokens = max(0, input_tokens - (cache_read or 0) - (cache_creation or 0))
    if output_tokens is not None and reasoning and posthog_adds_reasoning(model):
        output_tokens = max(0, output_tokens - reasoning)
    c5, c1 = usage.cache_creation_5m_tokens, usage.cache_creation_1h_tokens
    if (c5 or 0) + (c1 or 0) == 0:
        c5 = c1 = None  # an all-zero split would make PostHog bill real writes as 0
    elif c5 is None or c1 is None:
        c5, c1 = c5 or 0, c1 or 0  # PostHog uses the split only as a pair
    for key, value in (
        (schema.INPUT_TOKENS, input_tokens),
        (schema.OUTPUT_TOKENS, output_tokens),
        (schema.TOTAL_TOKENS, usage.total_tokens),
        (schema.CACHE_READ_INPUT_TOKENS, cache_read),
        (schema.CACHE_CREATION_INPUT_TOKENS, cache_creation),
        (schema.CACHE_CREATION_5M_INPUT_TOKENS, c5),
        (schema.CACHE_CREATION_1H_INPUT_TOKENS, c1),
        (schema.REASONING_TOKENS, reasoning),
    ):
        if value is not None:
            props[key] = value
    if cache_read is not None or cache_creation is not None:
        # Explicit, so PostHog never guesses (its guess differs from ours for routed ids).
        props[schema.CACHE_REPORTING_EXCLUSIVE] = anthropic
    if usage.web_search_count:
        props[schema.WEB_SEARCH_COUNT] = usage.web_search_count


def _price_properties(props: dict[str, Any], span: FinishedSpan, cfg: EventConfig) -> None:
    """Custom prices: per-call (already in ``props`` from run metadata) > the exporter's
    ``prices=`` > free for a local runtime (Ollama, LM Studio, ...)."""
    if schema.INPUT_TOKEN_PRICE in props and schema.OUTPUT_TOKEN_PRICE in props:
        return
    price = find_price(cfg.prices, span.model)
    if price is None and is_local_provider(span.provider):
        price = FREE
    if price is not None:
        props.update(price.properties())


# String-valued model settings that are enum-like (never end-user text): kept in privacy mode.
_ENUM_PARAMETERS = frozenset(
    {
        "model",
        "model_name",
        "model_id",
        "reasoning_effort",
        "service_tier",
        "verbosity",
        "tool_choice",
        "truncation",
        "_type",
    }
)


def _is_number(value: Any) -> bool:
    return type(value) in (int, float, bool)


def _private_parameters(params: Any) -> dict[str, Any]:
    """Model parameters without free text: numbers, booleans and enum-like settings.

    Stop sequences, system instructions, JSON schemas (their descriptions), OpenAI's
    ``user`` and provider ``metadata`` can all carry end-user content; they are dropped.
    """
    if not isinstance(params, Mapping):
        return {}
    kept: dict[str, Any] = {}
    for key, value in params.items():
        if not isinstance(key, str):
            continue
        enum_like = type(value) is str and key in _ENUM_PARAMETERS and len(value) <= 64
        if value is None or _is_number(value) or enum_like:
            kept[key] = value
    return kept


def _plain_tool_list(tools: Any) -> bool:
    """Whether ``tools`` is a list of plain dicts (no LangChain secret markers), so
    :func:`_private_tools` may read the names without converting every schema first."""
    if type(tools) is not list and type(tools) is not tuple:
        return False
    for item in tools[:_MAX_TAGS]:
        if type(item) is not dict or "lc" in item:
            return False
        function = item.get("function")
        if function is not None and (type(function) is not dict or "lc" in function):
            return False
    return True


def _private_tools(tools: Any) -> list[dict[str, Any]]:
    """Tool definitions reduced to their names (descriptions and schemas are free text)."""
    items = tools if isinstance(tools, (list, tuple)) else [tools]
    names: list[dict[str, Any]] = []
    for item in items[:_MAX_TAGS]:
        if not isinstance(item, Mapping):
            continue
        function = item.get("function")
        name = function.get("name") if isinstance(function, Mapping) else item.get("name")
        if type(name) is str and name:
            names.append({"type": "function", "function": {"name": name}})
    return names


def _metadata(
    metadata: Mapping[str, Any], private: bool, cfg: EventConfig, ser: Serializer
) -> Mapping[str, Any]:
    """Run metadata as sent: in privacy mode only numbers, booleans and LangGraph's own
    ``langgraph_*`` bookkeeping; otherwise everything, through the mask."""
    if private:
        return {
            k: v
            for k, v in metadata.items()
            if isinstance(k, str)
            and (_is_number(v) or (k.startswith("langgraph_") and type(v) in (str, int)))
        }
    if cfg.mask is None:
        return metadata
    masked = _content(dict(metadata), cfg, ser)
    return masked if isinstance(masked, dict) else {}


def _free_text(value: Any, cfg: EventConfig, ser: Serializer) -> Any:
    """A free-text value (feedback, a non-numeric score) as sent, through the mask."""
    if cfg.mask is None:
        return ser.convert(value)
    return _content(value, cfg, ser)


def _model_parameters(
    props: dict[str, Any],
    params: Mapping[str, Any],
    private: bool,
    cfg: EventConfig,
    ser: Serializer,
) -> None:
    if private:
        converted = ser.convert(_private_parameters(params))
    elif cfg.mask is not None:
        converted = _content(params, cfg, ser)
    else:
        converted = ser.convert(params)
    if not isinstance(converted, dict) or not converted:
        return
    props[schema.MODEL_PARAMETERS] = converted
    if isinstance(converted.get("temperature"), (int, float)):
        props[schema.TEMPERATURE] = converted["temperature"]
    for key in ("max_tokens", "max_completion_tokens", "max_output_tokens", "num_predict"):
        if isinstance(converted.get(key), int):
            props[schema.MAX_TOKENS] = converted[key]
            break
    if isinstance(converted.get("stream"), bool):
        props[schema.STREAM] = converted["stream"]


def span_to_event(span: FinishedSpan, cfg: EventConfig | None = None) -> dict[str, Any]:
    """Translate one finished span into a PostHog event dict.

    Args:
        span: The finished span.
        cfg: Exporter-wide settings (defaults when omitted).

    Returns:
        ``{"event", "distinct_id", "properties", "timestamp", "uuid"}``, JSON-safe and
        within ``cfg.max_event_bytes``.
    """
    return _span_to_event_sized(span, cfg or EventConfig())[0]


def _span_to_event_sized(span: FinishedSpan, cfg: EventConfig) -> tuple[dict[str, Any], int]:
    """:func:`span_to_event`, plus an estimate of the event's JSON size in bytes."""
    ser = Serializer(cfg.secrets, cfg.max_event_bytes)
    # One unpack instead of some 60 attribute reads (a tenth of a small event's cost).
    (
        trace_id,
        span_id,
        parent_id,
        kind,
        name,
        start_time,
        end_time,
        framework,
        input_,
        output,
        model,
        provider,
        usage,
        usage_missing_reason,
        model_parameters,
        tools,
        time_to_first_token,
        http_status,
        base_url,
        stop_reason,
        error,
        status,
        metadata,
        properties,
        groups,
        distinct_id,
        session_id,
        tags,
        span_private,
        service_tier,
    ) = span
    # Every identifier a bounded, scrubbed string (Serializer.ident).
    ident = ser.ident
    trace_id = ident(trace_id)
    span_id = ident(span_id)
    if parent_id is not None:
        parent_id = ident(parent_id)
    if distinct_id is not None:
        distinct_id = ident(distinct_id)
    if session_id is not None:
        session_id = ident(session_id)
    private = cfg.privacy_mode or span_private
    extra: dict[str, Any] = {}
    if metadata:
        extra.update(_metadata(metadata, private, cfg, ser))
    if properties:
        # Properties the developer chose to send (posthog_properties, properties=): as given.
        extra.update(properties)
    props = _base(trace_id, framework, session_id, cfg, ser, extra, groups)
    is_root = parent_id is None

    if kind is SpanKind.GENERATION:
        event = schema.GENERATION
    elif kind is SpanKind.EMBEDDING:
        event = schema.EMBEDDING
    elif is_root:
        event = schema.TRACE
    else:
        event = schema.SPAN

    name = _text(name, ser)
    props[schema.SPAN_NAME] = name
    if event == schema.TRACE:
        props[schema.TRACE_NAME] = name
    else:
        props[schema.SPAN_ID] = span_id
        if not is_root:
            props[schema.PARENT_ID] = parent_id
    try:
        latency = end_time - start_time if end_time > start_time else 0.0
        props[schema.LATENCY] = round(latency, 6) if _isfinite(latency) else 0.0
    except TypeError:  # a time that is not a number (see _iso)
        props[schema.LATENCY] = 0.0
    props[schema.IS_ERROR] = error is not None
    if error is not None:
        error = error if type(error) is str else str(_text(error, ser))
        props[schema.ERROR] = _error_text(error, private, cfg, ser)
    if status:
        props[schema.SPAN_STATUS] = _text(status, ser)
    if tags:
        raw_tags = tags if type(tags) in (tuple, list) else ser.convert(tags)
        if type(raw_tags) is not list and type(raw_tags) is not tuple:
            raw_tags = [raw_tags]
        keys = [ser.key(tag) for tag in raw_tags[:_MAX_TAGS]]
        for tag in keys:
            props.setdefault(tag, True)
        props[schema.TAGS] = keys

    if kind is SpanKind.GENERATION or kind is SpanKind.EMBEDDING:
        if model:
            props[schema.MODEL] = _text(model, ser)
        if provider:
            props[schema.PROVIDER] = _text(provider, ser)
        if not private and input_ is not None:
            props[schema.INPUT] = _content(input_, cfg, ser)
        if kind is SpanKind.GENERATION and not private and output is not None:
            props[schema.OUTPUT_CHOICES] = _content(output, cfg, ser)
        if usage is not None and not usage.is_empty():
            _usage_properties(props, usage, provider, model)
        elif error is None:
            props[schema.USAGE_MISSING_REASON] = (
                usage_missing_reason or "the provider reported no token usage"
            )
        _price_properties(props, span, cfg)
        if service_tier:
            props[schema.SERVICE_TIER] = _text(service_tier, ser)
        if model_parameters:
            _model_parameters(props, model_parameters, private, cfg, ser)
        if tools:
            if private:
                plain = tools if _plain_tool_list(tools) else ser.convert(tools)
                props[schema.TOOLS] = ser.convert(_private_tools(plain))
            else:
                # The same definitions come with every call: converted once (serialize.py).
                props[schema.TOOLS] = _content(tools, cfg, ser, recall=True)
        if time_to_first_token is not None:
            props[schema.TIME_TO_FIRST_TOKEN] = round(time_to_first_token, 6)
        props[schema.HTTP_STATUS] = _http_status(http_status, (error is not None))
        if base_url:
            url = base_url if type(base_url) is str else _text(base_url, ser)
            props[schema.BASE_URL] = ser.string(_safe_url(url))
        if stop_reason:
            props[schema.STOP_REASON] = _text(stop_reason, ser)
    elif not private:
        if input_ is not None:
            props[schema.INPUT_STATE] = _content(input_, cfg, ser)
        if output is not None:
            props[schema.OUTPUT_STATE] = _content(output, cfg, ser)

    distinct_id = _identity(distinct_id, trace_id, cfg, props)
    result = {
        "event": event,
        "distinct_id": distinct_id,
        "properties": props,
        "timestamp": _iso(start_time),
        "uuid": _event_uuid_of(trace_id, span_id, parent_id, start_time),
    }
    size = ser.size + 600
    # The estimate counts ASCII escapes and short keys loosely (at worst 12x low): measure
    # exactly (as the posthog SDK encodes, non-ASCII escaped) whenever it could matter.
    if size > cfg.max_event_bytes // 16:
        size = _fit(result, cfg.max_event_bytes)
    return result, size


_MAX_TAGS = 100


def _http_status(value: Any, is_error: bool) -> int:
    # Typed as int, but a provider or user may hand over an Enum, a string or an object.
    if value is None:
        return 500 if is_error else 200
    if type(value) is int and 100 <= value <= 599:
        return value
    if isinstance(value, int) and not isinstance(value, bool) and 100 <= value <= 599:
        return int.__int__(value)
    if type(value) is str and value.isdigit() and len(value) == 3:
        return int(value)
    return 500 if is_error else 200


def _json_size(value: Any) -> int:
    return wire_size(value)


def _fit(event: dict[str, Any], limit: int) -> int:
    """Shrink the largest content properties until the serialised event fits ``limit``.

    Returns:
        The event's serialised size in bytes.
    """
    props: dict[str, Any] = event["properties"]
    for _ in range(len(_CONTENT_KEYS) * 2 + 2):
        size = _json_size(event)
        if size <= limit:
            return size
        sizes = {k: _json_size(props[k]) for k in _CONTENT_KEYS if k in props}
        if not sizes:
            break
        key = max(sizes, key=lambda k: sizes[k])
        keep = max(0, sizes[key] - (size - limit) - 256)
        value = props[key]
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        props[key] = truncate_to_bytes(text, keep)
    # Still too big (huge metadata or groups): the largest properties go, biggest first.
    size = _json_size(event)
    sizes = {k: _json_size(v) for k, v in props.items()}
    for key in sorted(sizes, key=lambda k: -sizes[k]):
        if size <= limit:
            break
        props[key] = _DROPPED
        size -= sizes[key] - len(_DROPPED) - 2
    return _json_size(event)


_DROPPED = "[dropped: event size limit]"


def _trace_event_start(
    trace_id: str, properties: Mapping[str, Any] | None, cfg: EventConfig
) -> tuple[Serializer, str, dict[str, Any]]:
    """Serializer, bounded trace id and base properties of an event about a whole trace."""
    ser = Serializer(cfg.secrets, cfg.max_event_bytes)
    trace_id = ser.ident(trace_id)
    return ser, trace_id, _base(trace_id, "manual", None, cfg, ser, properties, None)


def _trace_event(
    event: str,
    trace_id: str,
    distinct_id: str | None,
    props: dict[str, Any],
    cfg: EventConfig,
    ser: Serializer,
    timestamp: float,
) -> dict[str, Any]:
    """The envelope of an event about a whole trace (``trace_id`` already bounded)."""
    distinct_id = None if distinct_id is None else ser.ident(distinct_id)
    return {
        "event": event,
        "distinct_id": _identity(distinct_id, trace_id, cfg, props),
        "properties": props,
        "timestamp": _iso(timestamp),
        "uuid": str(uuid.uuid4()),
    }


def feedback_event(
    trace_id: str,
    *,
    text: str | None,
    score: Any,
    distinct_id: str | None,
    properties: Mapping[str, Any] | None,
    cfg: EventConfig,
    timestamp: float,
) -> dict[str, Any]:
    """Build a ``$ai_feedback`` event for ``trace_id``."""
    ser, trace_id, props = _trace_event_start(trace_id, properties, cfg)
    private = cfg.privacy_mode
    if text is not None and not private:
        props[schema.FEEDBACK_TEXT] = _free_text(str(text), cfg, ser)
    if score is not None and (_is_number(score) or not private):
        props[schema.FEEDBACK_SCORE] = score if _is_number(score) else _free_text(score, cfg, ser)
    return _trace_event(schema.FEEDBACK, trace_id, distinct_id, props, cfg, ser, timestamp)


def metric_event(
    trace_id: str,
    *,
    name: str,
    value: Any,
    distinct_id: str | None,
    properties: Mapping[str, Any] | None,
    cfg: EventConfig,
    timestamp: float,
) -> dict[str, Any]:
    """Build a ``$ai_metric`` event for ``trace_id``."""
    ser, trace_id, props = _trace_event_start(trace_id, properties, cfg)
    # The name is a label the developer chose (an identifier, like a span name): always sent.
    props[schema.METRIC_NAME] = _text(name, ser)
    if _is_number(value):
        props[schema.METRIC_VALUE] = value
    elif not cfg.privacy_mode:
        props[schema.METRIC_VALUE] = _free_text(value, cfg, ser)
    return _trace_event(schema.METRIC, trace_id, distinct_id, props, cfg, ser, timestamp)
