"""Token usage, model and provider normalisation shared by every front door.

All functions here are small, total and never raise: bad input gives ``None``.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .spans import Usage

__all__ = [
    "LOCAL_PROVIDERS",
    "PROVIDER_ALIASES",
    "is_anthropic",
    "is_local_provider",
    "normalize_provider",
    "posthog_adds_reasoning",
    "provider_from_class",
    "sum_usage",
    "usage_from_mapping",
    "web_search_count",
]

log = logging.getLogger(__name__)

# LangChain ``ls_provider`` ids, LlamaIndex class names and common spellings -> the
# provider name PostHog's own SDKs send (its cost engine matches on these).
PROVIDER_ALIASES: dict[str, str] = {
    "openai": "openai",
    "chatopenai": "openai",
    "azure": "azure",
    "azure_openai": "azure",
    "azureopenai": "azure",
    "azurechatopenai": "azure",
    "azure_ai": "azure",
    "anthropic": "anthropic",
    "chatanthropic": "anthropic",
    "anthropic_chat": "anthropic",
    "amazon_bedrock": "bedrock",
    "bedrock": "bedrock",
    "bedrock_converse": "bedrock",
    "chatbedrock": "bedrock",
    "chatbedrockconverse": "bedrock",
    "bedrockconverse": "bedrock",
    "aws_bedrock": "bedrock",
    "google_vertexai": "vertex_ai",
    "vertexai": "vertex_ai",
    "vertex": "vertex_ai",
    "chatvertexai": "vertex_ai",
    "google_genai": "gemini",
    "google": "gemini",
    "gemini": "gemini",
    "googlegenai": "gemini",
    "chatgooglegenerativeai": "gemini",
    "ollama": "ollama",
    "chatollama": "ollama",
    "mistral": "mistral",
    "mistralai": "mistral",
    "chatmistralai": "mistral",
    "groq": "groq",
    "chatgroq": "groq",
    "cohere": "cohere",
    "chatcohere": "cohere",
    "fireworks": "fireworks",
    "chatfireworks": "fireworks",
    "together": "together",
    "togetherai": "together",
    "chattogether": "together",
    "deepseek": "deepseek",
    "chatdeepseek": "deepseek",
    "xai": "xai",
    "chatxai": "xai",
    "perplexity": "perplexity",
    "chatperplexity": "perplexity",
    "huggingface": "huggingface",
    "chathuggingface": "huggingface",
    "openrouter": "openrouter",
    "cerebras": "cerebras",
    "chatcerebras": "cerebras",
    "nvidia": "nvidia",
    "chatnvidia": "nvidia",
    "litellm": "litellm",
    "chatlitellm": "litellm",
    "openailike": "openai",
    "openaiembedding": "openai",
    "openaiembeddings": "openai",
    "azureopenaiembedding": "azure",
    "azureopenaiembeddings": "azure",
    "lmstudio": "lmstudio",
    "llamacpp": "llamacpp",
    "chatllamacpp": "llamacpp",
    "llamafile": "llamafile",
    "chatllamafile": "llamafile",
    "vllm": "vllm",
    "vllmopenai": "vllm",
    "localai": "localai",
    "gpt4all": "gpt4all",
    "mlx": "mlx",
    "chatmlx": "mlx",
    "mlxlm": "mlx",
}

LOCAL_PROVIDERS: frozenset[str] = frozenset(
    {"ollama", "lmstudio", "llamacpp", "llamafile", "vllm", "localai", "gpt4all", "mlx"}
)
"""Runtimes that serve models on the user's own hardware: no per-token bill. PostHog's
price table would otherwise fuzzily match their tags to hosted rows (``deepseek-r1:8b``
priced as hosted DeepSeek-R1), so events.py sends a zero custom price for them."""

# Class-name fragments, tried in order when the exact name is not in the table.
_CLASS_HINTS: tuple[tuple[str, str], ...] = (
    ("azure", "azure"),
    ("anthropic", "anthropic"),
    ("bedrock", "bedrock"),
    ("vertex", "vertex_ai"),
    ("gemini", "gemini"),
    ("googlegenai", "gemini"),
    ("googlegenerativeai", "gemini"),
    ("ollama", "ollama"),
    ("lmstudio", "lmstudio"),
    ("llamacpp", "llamacpp"),
    ("llamafile", "llamafile"),
    ("vllm", "vllm"),
    ("mistral", "mistral"),
    ("groq", "groq"),
    ("cohere", "cohere"),
    ("fireworks", "fireworks"),
    ("together", "together"),
    ("deepseek", "deepseek"),
    ("perplexity", "perplexity"),
    ("huggingface", "huggingface"),
    ("openrouter", "openrouter"),
    ("openai", "openai"),
)


def normalize_provider(raw: Any) -> str | None:
    """Map a provider id or spelling to PostHog's name; unknown ids pass through lowercased.

    Args:
        raw: ``ls_provider``, ``model_provider`` or a similar provider id.

    Returns:
        The normalised provider, or ``None`` for empty or non-string input.
    """
    if type(raw) is str:
        return _remembered(_NORMALIZED, _normalize, raw)
    return _normalize(raw) if isinstance(raw, str) else None


# Remembered per exact string (a program names a handful of providers and model classes;
# a str subclass may override the methods the rules call): bounded, never cleared.
_NORMALIZED: dict[str, str | None] = {}
_BY_CLASS: dict[str, str | None] = {}
_REMEMBER_MAX = 1024


def _remembered(
    cache: dict[str, str | None], rule: Callable[[str], str | None], raw: str
) -> str | None:
    try:
        return cache[raw]
    except KeyError:
        result = rule(raw)
        if len(cache) < _REMEMBER_MAX:
            cache[raw] = result
        return result


def _normalize(raw: str) -> str | None:
    if not raw.strip():
        return None
    key = raw.strip().lower()
    compact = key.replace("-", "_").replace(" ", "_")
    return PROVIDER_ALIASES.get(compact) or PROVIDER_ALIASES.get(compact.replace("_", "")) or key


def provider_from_class(class_name: Any) -> str | None:
    """Guess the provider from a model class name (``ChatOpenAI``, ``Anthropic``, ...).

    Returns:
        The provider, or ``None`` when the name says nothing known.
    """
    if type(class_name) is str:
        return _remembered(_BY_CLASS, _from_class, class_name)
    return _from_class(class_name) if isinstance(class_name, str) else None


def _from_class(class_name: str) -> str | None:
    if not class_name:
        return None
    key = class_name.lower().replace("_", "")
    if key in PROVIDER_ALIASES:
        return PROVIDER_ALIASES[key]
    for fragment, provider in _CLASS_HINTS:
        if fragment in key:
            return provider
    return None


def is_anthropic(provider: str | None, model: str | None) -> bool:
    """Whether PostHog prices this call as Anthropic (uncached ``$ai_input_tokens``).

    Exactly PostHog's rule (``matchProvider(event, "anthropic")`` in its cost engine's
    ``input-costs.ts``): provider ``anthropic``, or a model id containing ``anthropic``
    (Bedrock's ``us.anthropic.claude-...``) or starting with ``claude`` (Vertex AI's
    ``claude-sonnet-4@...``). A routed id such as ``vertex_ai/claude-...`` is *not*
    Anthropic to PostHog, so it is not to us either: a rule wider than PostHog's would
    subtract the cache on our side and PostHog would subtract it again.
    """
    if provider and provider.lower() == "anthropic":
        return True
    if model:
        m = model.lower()
        return "anthropic" in m or m.startswith("claude")
    return False


# PostHog's REASONING_COST_MODELS (output-costs.ts), matched on the id after its last "/".
_REASONING_ADDED = re.compile(r"gemini-2\.5-|gemini-3(?:\.\d+)?-")


def posthog_adds_reasoning(model: str | None) -> bool:
    """Whether PostHog adds ``$ai_reasoning_tokens`` to the output it bills for ``model``.

    PostHog does this for Gemini 2.5 and 3 (``^gemini-2\\.5-``, ``^gemini-3(\\.\\d+)?-`` on
    the part after the last ``/``), whose API reports thinking tokens beside the
    candidates. For those models ``$ai_output_tokens`` must exclude reasoning, or it is
    billed twice.
    """
    if not model:
        return False
    bare = model.lower().rsplit("/", 1)[-1]
    return _REASONING_ADDED.match(bare) is not None


def is_local_provider(provider: str | None) -> bool:
    """Whether ``provider`` (normalised) is a local runtime in :data:`LOCAL_PROVIDERS`."""
    return provider is not None and provider.lower() in LOCAL_PROVIDERS


def _count(value: Any) -> int | None:
    """A token count, or ``None`` for anything that is not a finite, non-negative number."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, float):
        return int(value) if math.isfinite(value) and value >= 0 else None
    if isinstance(value, str):
        try:
            return _count(float(value.strip()))
        except ValueError:
            return None
    return None


def _get(mapping: Any, *keys: str) -> Any:
    """First present value among ``keys`` of a mapping or object, else ``None``."""
    for key in keys:
        if isinstance(mapping, Mapping):
            value = mapping.get(key)
        else:
            value = getattr(mapping, key, None)
        if value is not None:
            return value
    return None


def _add(*values: int | None) -> int | None:
    present = [v for v in values if v is not None]
    return sum(present) if present else None


def usage_from_mapping(raw: Any) -> Usage | None:
    """Read token usage from any provider's usage shape.

    Understands LangChain ``usage_metadata`` (``input_token_details``), OpenAI
    (``prompt_tokens``, ``*_tokens_details``), Anthropic (``input_tokens`` uncached +
    ``cache_*_input_tokens``), Bedrock (``inputTokens``, ``cacheReadInputTokens``), Gemini
    (``prompt_token_count``), Ollama (``prompt_eval_count``) and Cohere ``billed_units``.
    Objects with those attributes (pydantic usage models) work too.

    Returns:
        A :class:`Usage` whose ``input_tokens`` includes cached tokens, or ``None`` when
        nothing usable was found.
    """
    try:
        fast = (_usage_metadata(raw) or _openai_counts(raw)) if type(raw) is dict else None
        return fast if fast is not None else _usage_from_mapping(raw)
    except Exception:
        return None


_OPENAI_COUNT_KEYS = frozenset({"prompt_tokens", "completion_tokens", "total_tokens"})


def _openai_counts(raw: dict[str, Any]) -> Usage | None:
    """OpenAI's usage without details (OpenAI-compatible servers, LlamaIndex mocks), read
    directly; ``None``: use the generic parser."""
    if not raw.keys() <= _OPENAI_COUNT_KEYS:
        return None
    it, ot, tt = raw.get("prompt_tokens"), raw.get("completion_tokens"), raw.get("total_tokens")
    if not _counts_ok(it, ot, tt) or (it is None and ot is None):
        return None
    return Usage(it, ot, tt)


# LangChain's UsageMetadata, the shape of nearly every model call: read directly, without
# the generic parser's probing (a few µs instead of ~20 on the caller's thread).
_LC_KEYS = frozenset(
    {"input_tokens", "output_tokens", "total_tokens", "input_token_details", "output_token_details"}
)
_LC_INPUT_DETAILS = frozenset(
    {
        "cache_read",
        "cache_creation",
        "ephemeral_5m_input_tokens",
        "ephemeral_1h_input_tokens",
        "audio",
    }
)
_LC_OUTPUT_DETAILS = frozenset({"reasoning", "audio"})


def _counts_ok(*values: Any) -> bool:
    for v in values:  # noqa: SIM110 - all() over a generator costs twice as much here
        if v is not None and (type(v) is not int or v < 0):
            return False
    return True


def _usage_metadata(um: dict[str, Any]) -> Usage | None:
    """A :class:`Usage` from a well-typed ``UsageMetadata`` dict; ``None``: use the generic
    parser (any other shape, or values that need its checks)."""
    if not um.keys() <= _LC_KEYS:
        return None
    it, ot, tt = um.get("input_tokens"), um.get("output_tokens"), um.get("total_tokens")
    if not _counts_ok(it, ot, tt) or (it is None and ot is None):
        return None
    cr = cc = c5 = c1 = rs = None
    details = um.get("input_token_details")
    if details:
        if type(details) is not dict or not details.keys() <= _LC_INPUT_DETAILS:
            return None
        cr, cc = details.get("cache_read"), details.get("cache_creation")
        c5 = details.get("ephemeral_5m_input_tokens")
        c1 = details.get("ephemeral_1h_input_tokens")
        if not _counts_ok(cr, cc, c5, c1):
            return None
        c5, c1, cc = _ttl_split(c5, c1, cc)
    out_details = um.get("output_token_details")
    if out_details:
        if type(out_details) is not dict or not out_details.keys() <= _LC_OUTPUT_DETAILS:
            return None
        rs = out_details.get("reasoning")
        if not _counts_ok(rs):
            return None
    return Usage(it, _with_reasoning(it, ot, tt, rs), tt, cr, cc, c5, c1, rs)


def _ttl_split(
    c5: int | None, c1: int | None, creation: int | None
) -> tuple[int | None, int | None, int | None]:
    """Anthropic's 5-minute / 1-hour cache-write split, made consistent for PostHog.

    PostHog bills the split instead of the aggregate only when both keys are present
    (``hasCacheWriteBreakdown`` in input-costs.ts). So: an all-zero split is dropped (it
    would bill real writes as 0); a single reported key gets the other as 0;
    langchain-anthropic and langchain-aws report ``cache_creation=0`` beside a non-zero
    split, so the split is the write count; a split smaller than a reported aggregate
    is incomplete and dropped, leaving the aggregate (billed at the 5-minute rate).

    Returns:
        ``(five_minute, one_hour, aggregate)``.
    """
    if c5 is None and c1 is None:
        return None, None, creation
    c5, c1 = c5 or 0, c1 or 0
    split = c5 + c1
    if split == 0:
        return None, None, creation
    if creation is None or creation <= split:
        return c5, c1, split
    return None, None, creation


def _with_reasoning(
    input_tokens: int | None, output: int | None, total: int | None, reasoning: int | None
) -> int | None:
    """``output`` including reasoning tokens, whichever way the source counted them.

    LangChain's convention is output *including* reasoning (langchain-google-genai,
    langchain-openai, langchain-aws); langchain-google-vertexai reports Gemini's
    ``candidates_token_count`` alone beside ``reasoning``. Gemini's total counts thoughts
    once, so a total that already holds input + output + reasoning says the output
    excluded them; so does an output smaller than the reasoning it would include.
    """
    if output is None or not reasoning:
        return output
    if output < reasoning or (
        total is not None
        and input_tokens is not None
        and input_tokens + output + reasoning <= total
    ):
        return output + reasoning
    return output


def _usage_from_mapping(raw: Any) -> Usage | None:
    if raw is None or isinstance(raw, (str, bytes, int, float, list, tuple)):
        return None
    if not isinstance(raw, Mapping):
        dump = getattr(raw, "model_dump", None)
        if callable(dump):
            raw = dump()
        elif hasattr(raw, "__dict__"):
            raw = vars(raw)
        else:
            return None
        if not isinstance(raw, Mapping):
            return None
    billed = raw.get("billed_units")
    if isinstance(billed, Mapping) and _get(raw, "input_tokens", "output_tokens") is None:
        raw = billed

    if isinstance(raw.get("input_token_details"), Mapping) or isinstance(
        raw.get("output_token_details"), Mapping
    ):
        return _langchain_usage(raw)

    input_details = _get(raw, "input_token_details", "prompt_tokens_details")
    output_details = _get(raw, "output_token_details", "completion_tokens_details")

    cache_read = _count(
        _get(
            raw,
            "cache_read_input_tokens",
            "cacheReadInputTokens",
            "cache_read_tokens",
            "cached_content_token_count",
        )
    )
    cache_creation = _count(
        _get(
            raw,
            "cache_creation_input_tokens",
            "cacheWriteInputTokens",
            "cache_creation_tokens",
            "cache_write_tokens",
        )
    )
    cache_5m = cache_1h = None
    creation_split = raw.get("cache_creation")
    if isinstance(creation_split, Mapping):
        cache_5m = _count(creation_split.get("ephemeral_5m_input_tokens"))
        cache_1h = _count(creation_split.get("ephemeral_1h_input_tokens"))
    elif isinstance(raw.get("cacheDetails"), list):
        cache_5m, cache_1h = _bedrock_ttl_split(raw["cacheDetails"])
    if input_details is not None:
        cache_read = (
            cache_read
            if cache_read is not None
            else _count(_get(input_details, "cache_read", "cached_tokens"))
        )
        cache_creation = (
            cache_creation
            if cache_creation is not None
            else _count(_get(input_details, "cache_creation", "cache_write_tokens"))
        )
        cache_5m = (
            cache_5m
            if cache_5m is not None
            else _count(_get(input_details, "ephemeral_5m_input_tokens", "cache_creation_5m"))
        )
        cache_1h = (
            cache_1h
            if cache_1h is not None
            else _count(_get(input_details, "ephemeral_1h_input_tokens", "cache_creation_1h"))
        )
    cache_5m, cache_1h, cache_creation = _ttl_split(cache_5m, cache_1h, cache_creation)

    reasoning = _count(_get(raw, "reasoning_tokens", "thoughts_token_count"))
    if reasoning is None and output_details is not None:
        reasoning = _count(_get(output_details, "reasoning", "reasoning_tokens"))

    output = _count(
        _get(
            raw,
            "output_tokens",
            "completion_tokens",
            "outputTokens",
            "candidates_token_count",
            "eval_count",
        )
    )
    total = _count(_get(raw, "total_tokens", "totalTokens", "total_token_count"))

    inclusive_input = _count(_get(raw, "prompt_tokens", "prompt_token_count", "prompt_eval_count"))
    if inclusive_input is None:
        plain_input = _count(_get(raw, "input_tokens", "inputTokens"))
        # Anthropic and Bedrock report cache reads/writes beside an *uncached* input count;
        # LangChain's usage_metadata (with input_token_details) already includes them.
        exclusive = (
            plain_input is not None
            and input_details is None
            and (
                "cache_read_input_tokens" in raw
                or "cache_creation_input_tokens" in raw
                or "cacheReadInputTokens" in raw
                or "cacheWriteInputTokens" in raw
            )
        )
        inclusive_input = (
            _add(plain_input, cache_read, cache_creation) if exclusive else plain_input
        )
    if output is not None and reasoning is not None and "thoughts_token_count" in raw:
        output += reasoning  # Gemini reports thinking tokens beside candidates

    usage = Usage(
        input_tokens=inclusive_input,
        output_tokens=output,
        total_tokens=total,
        cache_read_tokens=cache_read,
        cache_creation_tokens=cache_creation,
        cache_creation_5m_tokens=cache_5m,
        cache_creation_1h_tokens=cache_1h,
        reasoning_tokens=reasoning,
        web_search_count=web_search_count(raw),
    )
    return None if usage.is_empty() else usage


def _bedrock_ttl_split(details: list[Any]) -> tuple[int | None, int | None]:
    """Bedrock Converse ``cacheDetails`` (``[{"ttl": "5m" | "1h", "inputTokens": n}]``)."""
    split: dict[str, int] = {}
    for item in details:
        if isinstance(item, Mapping) and item.get("ttl") in ("5m", "1h"):
            split[item["ttl"]] = split.get(item["ttl"], 0) + (_count(item.get("inputTokens")) or 0)
    return split.get("5m"), split.get("1h")


def _langchain_usage(raw: Mapping[str, Any]) -> Usage | None:
    """LangChain ``UsageMetadata`` with keys the fast path does not take.

    LangChain's rule: ``input_tokens`` counts every input type, cache reads and writes
    live in ``input_token_details`` and reasoning in ``output_token_details``. Raw
    provider keys beside it (``cache_read_input_tokens``, ``prompt_tokens``, ...) are
    never added on top: they count the same tokens again.
    """
    details = raw.get("input_token_details")
    details = details if isinstance(details, Mapping) else {}
    out_details = raw.get("output_token_details")
    out_details = out_details if isinstance(out_details, Mapping) else {}
    it = _count(raw.get("input_tokens"))
    ot = _count(raw.get("output_tokens"))
    tt = _count(raw.get("total_tokens"))
    rs = _count(out_details.get("reasoning"))
    c5, c1, cc = _ttl_split(
        _count(details.get("ephemeral_5m_input_tokens")),
        _count(details.get("ephemeral_1h_input_tokens")),
        _count(details.get("cache_creation")),
    )
    usage = Usage(
        input_tokens=it,
        output_tokens=_with_reasoning(it, ot, tt, rs),
        total_tokens=tt,
        cache_read_tokens=_count(details.get("cache_read")),
        cache_creation_tokens=cc,
        cache_creation_5m_tokens=c5,
        cache_creation_1h_tokens=c1,
        reasoning_tokens=rs,
        web_search_count=web_search_count(raw),
    )
    return None if usage.is_empty() else usage


def web_search_count(raw: Any) -> int | None:
    """Server-side web searches in a usage shape: Anthropic's
    ``server_tool_use.web_search_requests`` (a mapping or an SDK object); ``None`` when
    not reported. Never raises."""
    try:
        server = _get(raw, "server_tool_use")
        if server is None:
            return None
        return _count(_get(server, "web_search_requests"))
    except Exception:
        return None


def sum_usage(usages: Iterable[Usage | None]) -> Usage | None:
    """Sum several usages (e.g. all generations of one call); ``None`` if none reported."""
    total: Usage | None = None
    for usage in usages:
        if usage is None:
            continue
        total = usage if total is None else total + usage
    return total
