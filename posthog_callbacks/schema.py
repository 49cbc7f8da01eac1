"""Every PostHog event and property name this library writes or reads.

``events.py`` writes events through these constants and ``explore/`` reads them back
through the same constants, so a name is spelled exactly once. The meanings follow
PostHog's LLM analytics schema and its ingestion-time cost engine
(``nodejs/src/ingestion/pipelines/ai/costs/`` in the PostHog/posthog repository); see
``docs/events.md`` for what PostHog computes from each property.

Stdlib only; importing this module has no side effects.
"""

from __future__ import annotations

import logging
from typing import Final

__all__ = [
    "ALL_EVENTS",
    "CONTENT_PROPERTIES",
    "COST_PROPERTIES",
    "PRICE_PROPERTIES",
    "SCORE_EVENTS",
    "SPAN_EVENTS",
    "TOKEN_PROPERTIES",
]

log = logging.getLogger(__name__)

# --- events -----------------------------------------------------------------------------

TRACE: Final = "$ai_trace"
"""The root of a trace that is not itself a model call."""
SPAN: Final = "$ai_span"
"""A chain, tool, retriever, agent or workflow step inside a trace."""
GENERATION: Final = "$ai_generation"
"""One chat or completion model call (the event PostHog prices)."""
EMBEDDING: Final = "$ai_embedding"
"""One embedding model call (priced like a generation, input tokens only)."""
FEEDBACK: Final = "$ai_feedback"
"""User feedback attached to a trace."""
METRIC: Final = "$ai_metric"
"""A named score attached to a trace."""

SPAN_EVENTS: Final = (TRACE, SPAN, GENERATION, EMBEDDING)
"""Events that are nodes of a trace tree."""
SCORE_EVENTS: Final = (FEEDBACK, METRIC)
"""Events that annotate a trace without being part of its tree."""
ALL_EVENTS: Final = SPAN_EVENTS + SCORE_EVENTS
"""Every event name this library sends."""

# --- identity and tree ------------------------------------------------------------------

TRACE_ID: Final = "$ai_trace_id"
"""On every event: the trace it belongs to (a root's span id equals it)."""
SPAN_ID: Final = "$ai_span_id"
"""The span's own id (not sent on ``$ai_trace``, whose id is the trace id)."""
PARENT_ID: Final = "$ai_parent_id"
"""The parent span's id; children of the root point at the trace id."""
SESSION_ID: Final = "$ai_session_id"
"""Groups traces of one conversation or session."""
SPAN_NAME: Final = "$ai_span_name"
"""Display name of a span, generation or trace."""
TRACE_NAME: Final = "$ai_trace_name"
"""Display name of a trace (on ``$ai_trace`` only)."""
SPAN_STATUS: Final = "$ai_span_status"
"""Non-standard end status, e.g. ``unfinished`` or ``interrupted``."""
TAGS: Final = "$ai_tags"
"""The run's tags as a list (each tag is also sent as its own ``{tag: true}`` property)."""

# --- library ----------------------------------------------------------------------------

LIB: Final = "$ai_lib"
"""``posthog-callbacks``."""
LIB_VERSION: Final = "$ai_lib_version"
"""This library's version."""
FRAMEWORK: Final = "$ai_framework"
"""``langchain``, ``llama_index`` or ``manual``."""
SERVICE_NAME: Final = "$ai_service_name"
"""The exporter's ``service_name`` option."""

# --- timing and outcome -----------------------------------------------------------------

LATENCY: Final = "$ai_latency"
"""Duration in seconds."""
TIME_TO_FIRST_TOKEN: Final = "$ai_time_to_first_token"
"""Seconds from the start of a streamed call to its first token."""
IS_ERROR: Final = "$ai_is_error"
"""True when the run failed."""
ERROR: Final = "$ai_error"
"""The error: ``Type: message``, or only the type in privacy mode."""
EXCEPTION_EVENT_ID: Final = "$exception_event_id"
"""Links an ``$ai_*`` event to the ``$exception`` event sent to Error Tracking."""
HTTP_STATUS: Final = "$ai_http_status"
"""HTTP status of the model call (200, or 500 for an error without one)."""
STOP_REASON: Final = "$ai_stop_reason"
"""Why the model stopped (``stop``, ``length``, ``tool_calls``, ...)."""

# --- content (withheld in privacy mode) -------------------------------------------------

INPUT: Final = "$ai_input"
"""A generation's or embedding's input (role/content messages or texts)."""
OUTPUT_CHOICES: Final = "$ai_output_choices"
"""A generation's output messages."""
INPUT_STATE: Final = "$ai_input_state"
"""A trace's or span's input."""
OUTPUT_STATE: Final = "$ai_output_state"
"""A trace's or span's output."""
TOOLS: Final = "$ai_tools"
"""Tool definitions offered to the model."""
MODEL_PARAMETERS: Final = "$ai_model_parameters"
"""Invocation parameters (temperature, max tokens, ...)."""
FEEDBACK_TEXT: Final = "$ai_feedback_text"
"""Free-text feedback."""

CONTENT_PROPERTIES: Final = (
    INPUT,
    OUTPUT_CHOICES,
    INPUT_STATE,
    OUTPUT_STATE,
    TOOLS,
    ERROR,
    MODEL_PARAMETERS,
)
"""Large properties that may be truncated to fit the event size limit."""

# --- model ------------------------------------------------------------------------------

MODEL: Final = "$ai_model"
"""Model id; PostHog matches it against its price table."""
PROVIDER: Final = "$ai_provider"
"""Provider id (``openai``, ``anthropic``, ``gemini``, ...); part of the price match."""
BASE_URL: Final = "$ai_base_url"
"""The API base URL, without credentials."""
TEMPERATURE: Final = "$ai_temperature"
"""Copied from the model parameters."""
MAX_TOKENS: Final = "$ai_max_tokens"
"""Copied from the model parameters."""
STREAM: Final = "$ai_stream"
"""Whether the call was streamed."""
SERVICE_TIER: Final = "$ai_service_tier"
"""Provider service tier reported with the response (``default``, ``flex``, ``priority``)."""

# --- tokens (PostHog prices these) ------------------------------------------------------

INPUT_TOKENS: Final = "$ai_input_tokens"
"""Prompt tokens; includes cache reads/writes except for Anthropic (see docs/events.md)."""
OUTPUT_TOKENS: Final = "$ai_output_tokens"
"""Completion tokens; excludes reasoning for Gemini 2.5/3 (PostHog adds it back)."""
TOTAL_TOKENS: Final = "$ai_total_tokens"
"""As reported by the provider (informational; PostHog does not price it)."""
CACHE_READ_INPUT_TOKENS: Final = "$ai_cache_read_input_tokens"
"""Prompt tokens served from the provider's cache."""
CACHE_CREATION_INPUT_TOKENS: Final = "$ai_cache_creation_input_tokens"
"""Prompt tokens written to the cache (all TTLs)."""
CACHE_CREATION_5M_INPUT_TOKENS: Final = "$ai_cache_creation_5m_input_tokens"
"""Anthropic 5-minute cache writes (with the 1-hour key, sums to the aggregate)."""
CACHE_CREATION_1H_INPUT_TOKENS: Final = "$ai_cache_creation_1h_input_tokens"
"""Anthropic 1-hour cache writes."""
CACHE_REPORTING_EXCLUSIVE: Final = "$ai_cache_reporting_exclusive"
"""True when ``$ai_input_tokens`` excludes cache tokens (Anthropic), else False."""
REASONING_TOKENS: Final = "$ai_reasoning_tokens"
"""Hidden reasoning ("thinking") tokens."""
WEB_SEARCH_COUNT: Final = "$ai_web_search_count"
"""Server-side web searches the provider billed for this call."""
USAGE_MISSING_REASON: Final = "$ai_usage_missing_reason"
"""Why a generation carries no token properties (this library's own property)."""

TOKEN_PROPERTIES: Final = (
    INPUT_TOKENS,
    OUTPUT_TOKENS,
    TOTAL_TOKENS,
    CACHE_READ_INPUT_TOKENS,
    CACHE_CREATION_INPUT_TOKENS,
    CACHE_CREATION_5M_INPUT_TOKENS,
    CACHE_CREATION_1H_INPUT_TOKENS,
    REASONING_TOKENS,
    WEB_SEARCH_COUNT,
)
"""Every token-count property."""

# --- prices and costs -------------------------------------------------------------------

INPUT_TOKEN_PRICE: Final = "$ai_input_token_price"
"""Custom price in USD per input token; PostHog uses it instead of its table."""
OUTPUT_TOKEN_PRICE: Final = "$ai_output_token_price"
"""Custom price in USD per output token."""
CACHE_READ_TOKEN_PRICE: Final = "$ai_cache_read_token_price"
"""Custom price in USD per cache-read token."""
CACHE_WRITE_TOKEN_PRICE: Final = "$ai_cache_write_token_price"
"""Custom price in USD per cache-write token (Anthropic-style: the 5-minute TTL)."""
CACHE_WRITE_1H_TOKEN_PRICE: Final = "$ai_cache_write_1h_token_price"
"""Custom price in USD per 1-hour cache-write token (defaults to the cache-write price)."""
REQUEST_PRICE: Final = "$ai_request_price"
"""Custom price in USD per request."""
WEB_SEARCH_PRICE: Final = "$ai_web_search_price"
"""Custom price in USD per web search."""
REQUEST_COUNT: Final = "$ai_request_count"
"""Requests billed for the event (PostHog assumes 1 when a model has a request price)."""
INPUT_COST_USD: Final = "$ai_input_cost_usd"
"""Input cost in USD (computed by PostHog, or precomputed by the caller)."""
OUTPUT_COST_USD: Final = "$ai_output_cost_usd"
"""Output cost in USD."""
REQUEST_COST_USD: Final = "$ai_request_cost_usd"
"""Per-request cost in USD."""
WEB_SEARCH_COST_USD: Final = "$ai_web_search_cost_usd"
"""Web-search cost in USD."""
TOTAL_COST_USD: Final = "$ai_total_cost_usd"
"""Total cost in USD: input + output + request + web search."""

PRICE_PROPERTIES: Final = (
    INPUT_TOKEN_PRICE,
    OUTPUT_TOKEN_PRICE,
    CACHE_READ_TOKEN_PRICE,
    CACHE_WRITE_TOKEN_PRICE,
    CACHE_WRITE_1H_TOKEN_PRICE,
    REQUEST_PRICE,
    WEB_SEARCH_PRICE,
)
"""Custom per-unit prices PostHog prefers over its price table."""
COST_PROPERTIES: Final = (
    INPUT_COST_USD,
    OUTPUT_COST_USD,
    REQUEST_COST_USD,
    WEB_SEARCH_COST_USD,
    TOTAL_COST_USD,
)
"""Cost properties PostHog computes at ingestion (or passes through when sent)."""

# --- scores -----------------------------------------------------------------------------

FEEDBACK_SCORE: Final = "$ai_feedback_score"
"""Feedback score (any JSON value)."""
METRIC_NAME: Final = "$ai_metric_name"
"""Name of a metric."""
METRIC_VALUE: Final = "$ai_metric_value"
"""Value of a metric."""

# --- PostHog's generic event properties -------------------------------------------------

PROCESS_PERSON_PROFILE: Final = "$process_person_profile"
"""False on personless events (no user id known)."""
GROUPS: Final = "$groups"
"""Group analytics: ``{group_type: group_key}``."""
