"""Turn anything into JSON-safe values, redacting secrets and replacing base64 media.

Runs on the exporter's worker. Never raises: whatever cannot be represented becomes a
short placeholder string. One :class:`Serializer` converts one event and bounds its total
work (a node budget, not a per-level cap) and its size as encoded on the wire (bytes, with
non-ASCII counted as the ``\\uXXXX`` escapes the posthog SDK sends). A container reached
twice is converted once: a later reference reuses the converted copy while the byte budget
allows, and a container inside itself becomes ``"<cycle>"``.

Unknown objects are never asked to describe themselves: no ``repr()``, ``str()``,
``__getattr__`` or ``model_dump()`` of user classes runs here, because one hanging or slow
hook on the worker would stall every other trace. Their attributes are read from the
instance ``__dict__`` / ``__slots__`` with ``object.__getattribute__`` (pydantic models and
dataclasses included: their field values live there, so no user serializer or validator
runs), and anything else becomes ``"<ClassName>"``.
"""

from __future__ import annotations

import collections
import datetime as _dt
import decimal
import enum
import gc
import hashlib
import itertools
import json
import logging
import marshal
import math
import operator
import re
import types
import uuid
from collections.abc import Iterable
from typing import Any

import orjson

__all__ = [
    "MAX_EVENT_BYTES",
    "REDACTED",
    "UUID_TEXT",
    "Serializer",
    "is_secret_key",
    "scrub",
    "truncate_to_bytes",
    "wire_size",
]

log = logging.getLogger(__name__)

REDACTED = "[REDACTED]"
MAX_EVENT_BYTES = 8 * 1024 * 1024
MAX_DEPTH = 24
MAX_ITEMS = 5000
MAX_NODES = 200_000
"""Containers, items and references one event may visit in total."""
MAX_KEY_CHARS = 256
MAX_ID_CHARS = 200
"""PostHog rejects distinct ids longer than 200 characters."""
_SCAN_MIN = 8
_BASE64_MIN = 1024
_I64_MIN = -(2**63)
_U64_MAX = 2**64
_MAX_INT_BITS = 14_000  # str(int) refuses more than 4,300 digits (~14,284 bits)

# -- secrets ---------------------------------------------------------------------------
#
# Credential formats, one table. Ported (loosened where a prefix alone is distinctive
# enough: we redact, we do not alert) from gitleaks' default rules
# (cmd/generate/config/rules/*.go -> config/gitleaks.toml, gitleaks v8, config at commit
# 009e025ad4106ab333aa0b9dc4f2a884390d134c; rule ids below) and Yelp detect-secrets'
# plugins (detect_secrets/plugins/basic_auth.py, aws.py, keyword.py, v1.x).
#
# As in gitleaks, a rule runs only on text holding one of its keywords, and each pattern
# starts with a literal (word boundaries are look-behinds placed after it) so the regex
# engine jumps to candidates. One alternation of every rule would be simpler, but
# CPython's ``re`` then tries each branch at every character: measured 100-1000x slower
# on long text. ``lower`` rules are case-insensitive: written in lower case, they run on
# ``text.lower()``. A group named ``v`` marks the part to redact (the rest is kept).
_ASSIGNED = r"['\"]?\s*[=:]\s*(?P<v>\"[^\"\n]{1,256}\"|'[^'\n]{1,256}'|[^\s'\"&,;<>]{3,})"
_QUERY_NAMES = (
    "key",
    "apikey",
    "api_key",
    "api-key",
    "token",
    "access_token",
    "sig",
    "signature",
    "auth",
    "code",
)
_RULES: tuple[tuple[str, tuple[str, ...], bool, str], ...] = (
    # (gitleaks rule id or source, keywords, lower, pattern)
    # gitleaks openai-api-key / anthropic-api-key, prefix only: short keys too
    (
        "openai-anthropic",
        ("sk-",),
        False,
        r"sk-(?<!\wsk-)(?:[\w-]{16,}|(?=[\w-]{0,15}?\d)[\w-]{8,15}\b)",
    ),
    ("posthog", ("phc_", "phx_", "phs_"), False, r"ph[cxs]_(?<!\w.{4})[A-Za-z0-9]{20,}"),
    # gitleaks aws-access-token (its EXAMPLE allowlist dropped: documented keys go too)
    (
        "aws-access-token",
        ("A3T", "AKIA", "ASIA", "ABIA", "ACCA"),
        False,
        r"(?:A3T[A-Z0-9]|AKIA|ASIA|ABIA|ACCA)(?<!\w....)[A-Z2-7]{16}\b",
    ),
    # gitleaks github-pat, github-oauth, github-app-token, github-refresh-token
    (
        "github-token",
        ("ghp_", "gho_", "ghu_", "ghs_", "ghr_"),
        False,
        r"gh[pousr]_(?<!\wgh._)[A-Za-z0-9]{20,}",
    ),
    ("github-fine-grained-pat", ("github_pat_",), False, r"github_pat_(?<!\wgithub_pat_)\w{20,}"),
    ("gcp-api-key", ("AIza",), False, r"AIza(?<!\wAIza)[\w-]{35}"),
    (
        "stripe-access-token",
        ("k_test_", "k_live_", "k_prod_"),
        False,
        r"[sr]k_(?:test|live|prod)_(?<!\w.{8})[A-Za-z0-9]{10,99}",
    ),
    ("huggingface-access-token", ("hf_",), False, r"hf_(?<!\whf_)[A-Za-z]{34}\b"),
    (
        "huggingface-organization-api-token",
        ("api_org_",),
        False,
        r"api_org_(?<!\wapi_org_)[A-Za-z]{34}\b",
    ),
    ("slack-tokens", ("xox",), False, r"xox[abposr]-(?<!\wxox.-)[A-Za-z0-9-]{10,}"),
    # gitleaks jwt (the header segment always starts with eyJ: '{"')
    ("jwt", ("eyJ",), False, r"eyJ(?<!\weyJ)[\w-]{10,}\.[\w-]{8,}\.[\w-]{8,}"),
    # gitleaks private-key, with the body up to its END line
    (
        "private-key",
        ("PRIVATE KEY",),
        False,
        r"-----BEGIN[ A-Z0-9_-]{0,100}PRIVATE KEY[ A-Z0-9_-]{0,100}-----"
        r"[A-Za-z0-9+/=\s\\]{0,20000}"
        r"(?:-----END[ A-Z0-9_-]{0,100}PRIVATE KEY[ A-Z0-9_-]{0,100}-----)?",
    ),
    # detect-secrets basic_auth (URL userinfo), gitleaks database DSNs: the whole userinfo
    ("url-userinfo", ("://",), False, r"://(?P<v>[^\s/?#'\"<>]{1,256})(?=@[^\s/?#@'\"<>]+)"),
    # gitleaks curl-auth-header (Bearer / Basic values), anywhere in text
    (
        "bearer",
        ("bearer",),
        True,
        r"bearer(?<!\wbearer)\s+(?=[\w.~+/-]{0,200}?[\d_~+/-])(?P<v>[\w.~+/-]{12,}=*)",
    ),
    (
        "basic-auth",
        ("basic",),
        True,
        r"basic(?<!\wbasic)\s+(?=[a-z0-9+/]{0,200}?[\d+/])(?P<v>[a-z0-9+/]{8,}={0,2})",
    ),
    # detect-secrets KeywordDetector, gitleaks generic-api-key / database-password: an
    # assignment (quoted or not, JSON too) keeps its name and loses its value
    ("keyword-password", ("pass",), True, r"pass(?:word|wd|phrase)" + _ASSIGNED),
    ("keyword-pwd", ("pwd",), True, r"pwd" + _ASSIGNED),
    ("keyword-secret", ("secret",), True, r"secret" + _ASSIGNED),
    ("keyword-api-key", ("api",), True, r"api[_-]?key" + _ASSIGNED),
    ("keyword-access-key", ("access",), True, r"access[_-]?key" + _ASSIGNED),
    ("keyword-private-key", ("private",), True, r"private[_-]?key" + _ASSIGNED),
    ("keyword-credentials", ("credential",), True, r"credentials?" + _ASSIGNED),
    ("keyword-token", ("token",), True, r"token(?<=[\w-][_-]token)" + _ASSIGNED),
    # query parameters: Google (key=), Azure SAS (sig=), OAuth (access_token=, code=)
    (
        "query-parameter",
        tuple(f"{name}=" for name in _QUERY_NAMES),
        True,
        "=(?:" + "|".join(f"(?<=[?&;]{re.escape(n)}=)" for n in _QUERY_NAMES) + r")"
        r"(?P<v>[^\s'\"&,;<>#]{3,})",
    ),
)
# A character every match of a rule contains (any one of them), where there is one; the
# cheaper test runs first: most prose has none of ``_ - = :``, and then only the rules
# without one (AWS and Google key ids, JWTs, Bearer and Basic values) look for keywords.
# Lower-casing keeps these characters. tests/core/test_scrub_prefilter.py checks that
# skipping a rule this way never changes the result.
_NEEDS = {
    "openai-anthropic": "-",
    "posthog": "_",
    "github-token": "_",
    "github-fine-grained-pat": "_",
    "stripe-access-token": "_",
    "huggingface-access-token": "_",
    "huggingface-organization-api-token": "_",
    "slack-tokens": "-",
    "private-key": "-",
    "url-userinfo": ":",
    "keyword-password": "=:",
    "keyword-pwd": "=:",
    "keyword-secret": "=:",
    "keyword-api-key": "=:",
    "keyword-access-key": "=:",
    "keyword-private-key": "=:",
    "keyword-credentials": "=:",
    "keyword-token": "=:",
    "query-parameter": "=",
}
_NEED_CHARS = "_-=:"


def _need_mask(chars: str) -> int:
    return sum(1 << _NEED_CHARS.index(c) for c in chars)


# Rules whose pattern starts with a literal the regex engine finds at C speed: searching
# with the pattern costs no more than one keyword scan (``in`` on a 1 KB text: ~0.8 us
# here), and the keyword scans of a rule with several (AWS: 5, query parameters: 10) cost
# up to 10x more. These run their pattern without the keyword scan; the others (a
# character class first, or keywords that prose often holds) keep it. Either way the
# result is that of the pattern alone (every match holds a keyword).
_DIRECT = frozenset(
    {
        "openai-anthropic",
        "posthog",
        "aws-access-token",
        "github-token",
        "gcp-api-key",
        "huggingface-access-token",
        "slack-tokens",
        "jwt",
        "url-userinfo",
        "query-parameter",
    }
)

_Compiled = tuple[tuple[str, ...], bool, "re.Pattern[str]", "re.Pattern[str] | None", bool]
"""Keywords (none: run the pattern at once), on lower-cased text, the pattern, the pattern
ignoring case, and whether a match ends in an assignment (``_ASSIGNED``)."""
_COMPILED: tuple[tuple[_Compiled, int], ...] = tuple(
    (
        (
            () if rule in _DIRECT else keywords,
            lower,
            re.compile(pattern),
            re.compile(pattern, re.IGNORECASE) if lower else None,
            pattern.endswith(_ASSIGNED),
        ),
        _need_mask(_NEEDS.get(rule, "")),
    )
    for rule, keywords, lower, pattern in _RULES
)
_RULES_BY_PRESENT: tuple[tuple[_Compiled, ...], ...] = tuple(
    tuple(rule for rule, needs in _COMPILED if not needs or needs & present)
    for present in range(1 << len(_NEED_CHARS))
)
"""The rules that can match a text, by which of ``_ - = :`` it holds (a bit each)."""


# Every format above needs one of these characters, or is an AWS or Google key id or a
# JWT (which may be letters only): text without any (most short prose) is not scanned
# rule by rule. Deleting those characters from the encoded text and comparing lengths is
# one C loop (about 1 ns a character); a regex character-class search costs about 6 ns a
# character. In UTF-8 every byte of a non-ASCII character is >= 0x80, so ASCII bytes stay
# exact. (``~``: a Bearer value may hold no other of them.)
_MAYBE_SECRET_BYTES = b"-_=:/@+~0123456789"
_BARE_KEY_ID = re.compile(r"A(?:3T|KIA|SIA|BIA|CCA|Iza)|eyJ")
_scrub_cache: dict[str, str] = {}


def _maybe_secret(text: str) -> bool:
    raw = text.encode("ascii") if text.isascii() else text.encode("utf-8", "surrogatepass")
    return len(raw.translate(None, _MAYBE_SECRET_BYTES)) != len(raw)


def scrub(text: str, secrets: tuple[str, ...] = ()) -> str:
    """``text`` with every credential format and every literal in ``secrets`` redacted."""
    if len(text) >= _SCAN_MIN and (_maybe_secret(text) or _BARE_KEY_ID.search(text) is not None):
        if len(text) <= 4096:
            cached = _scrub_cache.get(text)
            if cached is None:
                cached = _scrub(text)
                if len(_scrub_cache) >= 4096:
                    _scrub_cache.clear()
                _scrub_cache[text] = cached
            text = cached
        else:
            text = _scrub(text)
    for secret in secrets:
        if secret and secret in text:
            text = text.replace(secret, REDACTED)
    return text


# A keyword rule that ends in an assignment (``password = ...``, ``"api_key": ...``) can
# only match with its keyword just before an ``=`` or ``:`` (at most 12 characters and
# the whitespace there). Long prose (a RAG prompt) holds few of those, so such a rule
# looks for its keyword only there: 8 scans of the whole text (~5 ns a character here)
# against ~1 us per site. Text with more sites than that pays for (JSON, code) is
# scanned whole, as shorter text is.
_SITES_MIN = 2048
_CHARS_PER_SITE = 400
_ASSIGN_SIGNS = _need_mask("=:")


def _assignment_sites(low: str) -> str | None:
    """The stretches of ``low`` just before each ``=`` and ``:`` (whitespace skipped),
    joined; ``None`` when there are too many to pay off, or a whitespace run too long."""
    limit = len(low) // _CHARS_PER_SITE
    ends: list[int] = []
    find = low.find
    for mark in "=:":  # str.find runs at memchr speed (count and a regex class do not)
        end = find(mark)
        while end >= 0:
            ends.append(end)
            if len(ends) > limit:
                return None
            end = find(mark, end + 1)
    pieces = []
    for end in ends:
        head = low[max(0, end - 88) : end]
        kept = head.rstrip()
        if len(head) - len(kept) > 64:
            return None  # a keyword could be further back: scan the whole text
        pieces.append(kept[-24:])
    return "\x00".join(pieces)


def _scrub(text: str, prefilter: bool = True) -> str:
    """``text`` with every credential format redacted; ``prefilter=False`` runs every
    rule's pattern on the whole text (the reference the prefilters are tested against)."""
    spans: list[tuple[int, int]] = []
    low: str | None = None
    sites: str | None = None
    if prefilter:
        present = ("_" in text) | ("-" in text) << 1 | ("=" in text) << 2 | (":" in text) << 3
        rules = _RULES_BY_PRESENT[present]
        if present & _ASSIGN_SIGNS and len(text) >= _SITES_MIN:
            low = text.lower()
            sites = _assignment_sites(low)
    else:
        rules = tuple(((), low_, rx, any_, False) for (_, low_, rx, any_, _), _ in _COMPILED)
    for keywords, lower, rx, rx_any_case, assigned in rules:
        hay = text
        if lower:
            if low is None:
                low = text.lower()
            hay = low
        if keywords:
            probe = sites if assigned and sites is not None else hay
            for keyword in keywords:
                if keyword in probe:
                    break
            else:
                continue
        if lower and len(hay) != len(text):  # lower() moved positions: slow path
            assert rx_any_case is not None
            rx, hay = rx_any_case, text
        for m in rx.finditer(hay):
            if "v" in rx.groupindex:
                start, end = m.span("v")
                if end - start >= 2 and hay[start] in "\"'":
                    start, end = start + 1, end - 1  # a quoted value keeps its quotes
            else:
                start, end = m.span()
            spans.append((start, end))
    if spans:
        spans.sort()
        pieces: list[str] = []
        pos = 0
        for start, end in spans:
            if start < pos:  # overlaps a redaction already made
                pos = max(pos, end)
                continue
            pieces.append(text[pos:start])
            pieces.append(REDACTED)
            pos = end
        pieces.append(text[pos:])
        text = "".join(pieces)
    return text


_SECRET_KEY = re.compile(
    r"api_?key|authorization|secret|passw(or)?d|passphrase|credential|private_?key|"
    r"access_?key|auth_?key|subscription_?key|bearer|cookie|signature",
)
_SECRET_KEY_EXACT = frozenset({"token", "key", "pwd", "auth", "sig", "apikey", "x_api_key"})
# ``*_token`` and ``*_key`` names that are not credentials (tokenizer specials, counts,
# pagination, database and cache keys).
_NOT_SECRET_TOKEN = frozenset(
    {"max", "min", "num", "eos", "bos", "pad", "unk", "sep", "cls", "mask", "stop", "start", "end"}
)
_NOT_SECRET_KEY = frozenset(
    {
        "sort", "primary", "foreign", "partition", "cache", "idempotency", "public", "row",
        "hash", "range", "routing", "lookup", "dict", "group", "object", "s3", "index",
        "shard", "dedup", "state", "file", "doc", "document", "message", "node", "ref",
    }
)  # fmt: skip

_key_cache: dict[str, bool] = {}


def is_secret_key(key: str) -> bool:
    """Whether a mapping key names a credential (``api_key``, ``github_token``, ...)."""
    cached = _key_cache.get(key)
    if cached is None:
        cached = _secret_name(key)
        if len(_key_cache) < 10_000:
            _key_cache[key] = cached
    return cached


def _secret_name(key: str) -> bool:
    k = key.lower().replace("-", "_").replace(" ", "_").strip("_$")
    if k in _SECRET_KEY_EXACT or _SECRET_KEY.search(k) is not None:
        return True
    if k.endswith("token"):
        head = k[:-5].rstrip("_").rsplit("_", 1)[-1]
        return head not in _NOT_SECRET_TOKEN
    if k.endswith("_key"):
        return k[:-4].rsplit("_", 1)[-1] not in _NOT_SECRET_KEY
    return False


# -- sizes -------------------------------------------------------------------------------


def wire_size(value: Any) -> int:
    """Bytes of ``value`` as JSON on the wire, whichever encoder sends it.

    The posthog SDK escapes non-ASCII (6 bytes per BMP character, 12 per astral one) and
    separates items with ``", "`` and ``": "``; compact UTF-8 encoders send fewer bytes,
    so this length bounds both.
    """
    return len(json.dumps(value, default=_never))


def _never(value: Any) -> str:
    return f"<{type(value).__name__}>"


def _str_wire(text: str) -> int:
    """``text``'s JSON string size in bytes, non-ASCII escaped (ASCII escapes not counted)."""
    if text.isascii():
        return len(text) + 2
    return len(json.dumps(text))


def truncate_to_bytes(text: str, limit: int, total: int | None = None) -> str:
    """``text`` cut so that it fits ``limit`` bytes as a JSON string, with a marker.

    The marker (``…[truncated N chars]``, N counted from ``total`` when ``text`` is
    already a prefix of a longer original) is included in the limit.
    """
    exact = len(json.dumps(text))
    n = len(text) if total is None else total
    if exact <= limit and n == len(text):
        return text
    keep = max(0, min(len(text), (limit - 40) * len(text) // max(1, exact)))
    while keep > 0:
        marker = f"…[truncated {n - keep} chars]"
        if len(json.dumps(text[:keep] + marker)) <= limit:
            return text[:keep] + marker
        keep = keep * 7 // 8
    return f"…[truncated {n} chars]"[: max(0, limit - 2)]


def _clean_surrogates(text: str) -> str:
    """Lone surrogates (invalid in UTF-8) become U+FFFD; valid pairs are joined."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def _safe_int(value: int) -> Any:
    # orjson takes 64-bit integers only and str() refuses more than 4,300 digits.
    if _I64_MIN <= value < _U64_MAX:
        return value
    if value.bit_length() <= _MAX_INT_BITS:
        return str(value)
    return f"<int of {value.bit_length()} bits>"


def _type_attr(t: type, name: str) -> bool:
    """Whether ``t`` defines ``name`` (static lookup: runs no user code)."""
    try:
        return any(name in vars(k) for k in t.__mro__)
    except Exception:
        return False


_CONTAINERS = (dict, list, tuple, set, frozenset)
_ITERABLES = frozenset(
    {collections.deque, range, type({}.keys()), type({}.values()), type({}.items())}
)


# Per set of literal secrets: short ASCII texts and mapping keys as converted. Chat apps
# send the same system prompt, tool definitions and history on every call, so a repeated
# text costs one dict lookup instead of the secret scan. Bounded: cleared when full.
_CACHE_MAX = 4096
_Caches = tuple[
    dict[str, str], dict[str, tuple[str, bool, int]], dict[str, str], dict[int, "_Results"]
]
"""Texts, mapping keys (as sent, whether they name a credential, bytes with their quotes,
``": "`` and ``", "``), identifiers, and converted containers by ``max_bytes``."""
_caches_by_secrets: dict[tuple[str, ...], _Caches] = {}


def _caches(secrets: tuple[str, ...]) -> _Caches:
    try:
        caches = _caches_by_secrets.get(secrets)
    except TypeError:  # unhashable secrets: nothing is shared
        return {}, {}, {}, {}
    if caches is None:
        if len(_caches_by_secrets) >= 4:
            _caches_by_secrets.clear()
        caches = _caches_by_secrets.setdefault(secrets, ({}, {}, {}, {}))
    return caches


# -- converted containers, by content ------------------------------------------------------
#
# Chat apps send the same tool definitions with every call: a deep JSON schema per tool
# that the walk below converts in Python (1-2 us a dict with its bookkeeping on this
# machine class). A value converted with ``recall=True`` (events.py does so for tool
# definitions only) is instead looked up by content among the results of earlier walks
# for the same literal secrets and size limit, and copied back with ``orjson.loads``: a
# few C passes (bench/translation.py --compare: a tool list 18 -> 10 us). Only where
# content repeats: the key costs a few us, pure overhead for new content (messages,
# outputs), and a flat dict costs less to walk than to key.
#
# Exact by construction: an entry is the walk's own output (as JSON), its size estimate
# and its node count, stored only when the walk's result did not depend on the state of
# the event (no budget reached, no container met twice, no object other than plain
# data), and used only when the budget left covers it. What a recall does not do is
# register the value's inner containers for reuse by later conversions in the event:
# were one of them referenced again later (tools are the last container an event
# converts) with the event over its size limit, the walk would send "<shared list>"
# where a second walk of it sends its truncated copy. Per-message recall of a history
# was tried and dropped for that reason (a message may share parts with the next ones).
#
# The key is the value as ``marshal`` writes it: exact types (``1``, ``1.0``, ``True``,
# ``-0.0``, a NaN and a tuple all differ), every string as is (lone surrogates too), and
# an object met again as a back reference, so shared references and cycles never expand.
# (Objects referenced from elsewhere are flagged in the stream, so one content may have
# two keys: one more miss, never a wrong result.) Before it, a walk of the value's levels
# (``gc.get_referents`` lists one level of the tree in one C call) bounds its size:
# every object of an exact JSON type (so no user code runs), at most MAX_DEPTH levels,
# and a level is listed only while the lengths of the strings and containers met so far
# (shared ones each time) fit _RESULT_LENGTHS. Its cost is bounded whatever the value
# (``marshal`` then copies each distinct string once, dict keys included).
_RESULT_LENGTHS = 64 * 1024
_RESULT_BYTES = 256 * 1024
_RESULT_MIN_REFS = 24
_RESULTS_HELD = 2 * 1024 * 1024
_RESULTS_MAX = 4096
_PLAIN = frozenset({str, int, float, bool, type(None), dict, list, tuple})
_referents = gc.get_referents
_length = operator.length_hint
_zeros = itertools.repeat(0)


def _content_key(value: Any) -> bytes | None:
    """``value`` (an exact dict, list or tuple) as ``marshal`` writes it, when it is small
    plain JSON data; else ``None``.

    Never runs user code: every object met is of an exact builtin type before ``marshal``
    (which then runs none either) sees it.
    """
    budget = _RESULT_LENGTHS - len(value)
    level: list[Any] = [value]
    depth = refs = 0
    while budget >= 0:
        # Every object in ``level`` is of an exact plain type, and the lengths met so far
        # (strings and containers, shared ones each time) fit the budget: listing the
        # next level costs at most that much.
        level = _referents(*level)
        if not level:
            break
        depth += 1
        if depth > MAX_DEPTH:
            return None  # a cycle, or deeper than any event keeps
        if not _PLAIN.issuperset(map(type, level)):
            return None
        budget -= sum(map(_length, level, _zeros))
        refs += len(level)
    if budget < 0:
        return None
    if depth < 3 and refs < _RESULT_MIN_REFS:
        return None  # one or two flat containers: walking costs less than the key
    try:
        key = marshal.dumps(value)
    except ValueError:  # pragma: no cover - plain data, at most MAX_DEPTH levels
        return None
    return key if len(key) <= _RESULT_BYTES else None


class _Results:
    """Converted containers for one set of secrets and one size limit, by content.

    A content is stored the second time it is converted (one-off texts never take room);
    bounded by entries and bytes held (_RESULTS_MAX, _RESULTS_HELD: at most 4 limits per
    set of secrets and 4 sets are kept), cleared when full.
    """

    __slots__ = ("entries", "held", "seen")

    def __init__(self) -> None:
        self.entries: dict[bytes, tuple[bytes, int, int]] = {}
        """The value as marshal writes it -> (the result as JSON, size, nodes)."""
        self.held = 0
        self.seen: set[int] = set()

    def store(self, key: bytes, out: Any, size: int, nodes: int) -> None:
        seen = self.seen
        mark = hash(key)
        if mark not in seen:
            if len(seen) >= 4 * _RESULTS_MAX:
                seen.clear()
            seen.add(mark)
            return
        try:
            raw = orjson.dumps(out)
        except TypeError:  # pragma: no cover - the walk's output is plain JSON
            return
        entries = self.entries
        held = len(key) + len(raw) + 64
        if self.held + held > _RESULTS_HELD or len(entries) >= _RESULTS_MAX:
            entries.clear()
            self.held = 0
        entries[key] = (raw, size, nodes)
        self.held += held


def _results(by_limit: dict[int, _Results], max_bytes: int) -> _Results:
    results = by_limit.get(max_bytes)
    if results is None:
        if len(by_limit) >= 4:
            by_limit.clear()
        results = by_limit.setdefault(max_bytes, _Results())
    return results


class Serializer:
    """One conversion pass (one event); ``size`` estimates the JSON bytes produced so far.

    Args:
        secrets: Literal strings (e.g. the PostHog API key) to scrub wherever they appear.
        max_bytes: The event's size limit on the wire: strings are cut to a quarter of it,
            and once the output passes it, further values become a marker.
        recall: Recall containers of plain data converted before (same secrets and
            limit) instead of walking them again; ``False`` always walks (the reference
            the recalled results are tested against).
    """

    __slots__ = (
        "_active", "_idents", "_keys", "_memo", "_pure", "_results", "_texts", "max_bytes",
        "nodes", "secrets", "size",
    )  # fmt: skip

    def __init__(
        self, secrets: tuple[str, ...] = (), max_bytes: int = MAX_EVENT_BYTES, recall: bool = True
    ) -> None:
        if type(secrets) is not tuple:
            secrets = tuple(secrets)
        self.secrets = secrets
        self._texts, self._keys, self._idents, results = _caches(secrets)
        self._results = results if recall else None  # by max_bytes, looked up when used
        self._pure = True  # plain data only, no container met twice, since _recall began
        self.max_bytes = max_bytes
        self.size = 0
        self.nodes = 0
        self._memo: dict[int, tuple[Any, Any, int]] = {}
        self._active: set[int] | None = None  # objects being converted (made on first use)

    def convert(self, value: Any, recall: bool = False) -> Any:
        """Return a JSON-safe copy of ``value``.

        Args:
            value: Anything.
            recall: ``value`` is likely sent again and again (tool definitions): a
                container of plain data is looked up by content among the containers
                converted before (same secrets and size limit) and converted once.
        """
        try:
            t = type(value)
            if t is dict or t is list or t is tuple:  # what _convert would do, one call less
                return self._container(value, 0, recall and self._results is not None)
            return self._convert(value, 0)
        except Exception:  # pragma: no cover - defensive: _convert guards each branch
            return "<unserializable>"

    def string(self, text: str) -> str:
        """Scrub one string: credentials and base64 media become placeholders; the result
        is valid UTF-8 and at most a quarter of ``max_bytes`` on the wire."""
        n = len(text)
        if n < _BASE64_MIN and text.isascii():  # the common case: short ASCII text
            if n >= _SCAN_MIN:
                if type(text) is str:  # a subclass's __hash__ is user code
                    texts = self._texts
                    clean = texts.get(text)
                    if clean is None:
                        clean = scrub(text, self.secrets)
                        if len(texts) >= _CACHE_MAX:
                            texts.clear()
                        texts[text] = clean
                    text = clean
                else:
                    text = scrub(text, self.secrets)
            self.size += len(text) + 2
            return text
        cap = self.max_bytes // 4
        if n >= _BASE64_MIN:
            text = self._strip_base64(text)  # one C-speed pass; media placeholders stay exact
            n = len(text)
        if n > cap:  # nothing past ``cap`` characters can be sent: do not scan it
            text = text[: cap + 256]
        if n >= _SCAN_MIN:
            text = scrub(text, self.secrets)
        if not text.isascii():
            text = _clean_surrogates(text)
        size = _str_wire(text)
        cut = n > cap and len(text) > cap  # still the prefix of a longer original
        if size > cap or cut:
            text = truncate_to_bytes(text, cap, n if cut else None)
            size = _str_wire(text)
        self.size += size
        return text

    def key(self, key: Any) -> str:
        """A mapping key or tag as a bounded, scrubbed string (no user ``__str__`` runs)."""
        if type(key) is not str:
            key = self._key_text(key)
        cached = _clean_keys.get(key)
        if cached is None:
            cached = key
            if len(cached) > MAX_KEY_CHARS:
                cached = cached[:MAX_KEY_CHARS] + f"…[truncated {len(key) - MAX_KEY_CHARS} chars]"
            cached = scrub(cached)
            if not cached.isascii():
                cached = _clean_surrogates(cached)
            if len(key) <= 4096:  # the caches hold short texts only
                if len(_clean_keys) >= 10_000:
                    _clean_keys.clear()
                _clean_keys[key] = cached
        for secret in self.secrets:
            if secret and secret in cached:
                cached = cached.replace(secret, REDACTED)
        return cached

    def ident(self, value: Any) -> str:
        """An identifier (distinct, session, trace or span id) as a bounded string.

        Secrets become ``[REDACTED <hash>]`` and long ids keep a prefix plus a hash, so
        different ids stay different and one id always maps to the same text.
        """
        if type(value) is str:
            text = value
        else:
            converted = self._convert(value, MAX_DEPTH - 4)
            text = converted if type(converted) is str else json.dumps(converted)
        if len(text) < _SCAN_MIN and text.isascii():
            return text
        idents = self._idents
        cached = idents.get(text) if type(text) is str else None
        if cached is None:
            if len(text) == 36 and UUID_TEXT.fullmatch(text) and not self._holds_secret(text):
                # Span ids are new on every event: a canonical UUID cannot hold a
                # credential format (no rule's match fits in hex runs of at most 12
                # between dashes), only a literal secret.
                cached = text
            else:
                cached = _ident(text, self.secrets)
            if type(text) is str and len(text) <= 4096:
                if len(idents) >= _CACHE_MAX:
                    idents.clear()
                idents[text] = cached
        return cached

    def _holds_secret(self, text: str) -> bool:
        for secret in self.secrets:  # noqa: SIM110 - any() over a generator costs 3x here
            if secret and secret in text:
                return True
        return False

    @staticmethod
    def _strip_base64(text: str) -> str:
        if "base64," in text:
            out: list[str] = []
            pos = 0
            for m in _DATA_URL.finditer(text):
                body = _BASE64_BODY.match(text, m.end())
                end = body.end() if body else m.end()
                out.append(text[pos : m.start()])
                out.append(_media_placeholder(m.group(1), end - m.end()))
                pos = end
            if out:
                out.append(text[pos:])
                return "".join(out)
        if " " not in text[:256] and _BASE64_BODY.fullmatch(text) is not None:
            return _media_placeholder(None, len(text))
        return text

    def _mark(self, text: str) -> str:
        self.size += len(text) + 2
        return text

    def _convert(self, value: Any, depth: int) -> Any:
        if value is None or value is True or value is False:
            self.size += 5
            return value
        t = type(value)
        if t is str:
            if len(value) < _SCAN_MIN and value.isascii():
                self.size += len(value) + 2
                return value
            clean = self._texts.get(value)
            if clean is not None:
                self.size += len(clean) + 2
                return clean
            return self.string(value)
        if t is int:
            self.size += 8
            return _safe_int(value)
        if t is float:
            self.size += 12
            return value if math.isfinite(value) else str(value)
        if depth >= MAX_DEPTH:
            return self._mark("<max depth>")
        if t is dict or t is list or t is tuple or issubclass(t, _CONTAINERS):
            return self._container(value, depth)
        return self._other(value, depth)

    def _container(self, value: Any, depth: int, recall: bool = False) -> Any:
        ident = id(value)
        seen = self._memo.get(ident)
        if seen is not None:
            self._pure = False
            if seen[2] < 0:
                return self._mark("<cycle>")  # reached again from inside itself
            # A shared container: reuse its converted copy while the budget allows.
            if self.size + seen[2] <= self.max_bytes:
                self.size += seen[2]
                return seen[1]
            return self._mark(f"<shared {type(value).__name__}>")
        if self.nodes >= MAX_NODES or self.size > self.max_bytes:
            return self._mark("<truncated: event size limit>")
        if recall:
            return self._recall(value, depth)
        start = self.size
        try:
            t = type(value)
            if t is dict or (t is not list and issubclass(t, dict)):
                out: Any = self._mapping(value, depth, ident)
            else:
                out = self._sequence(value, depth, ident)
        except Exception:
            self._pure = False
            out = self._mark(f"<unserializable {type(value).__name__}>")
        if ident in self._memo:
            # Registered (it holds containers): later references reuse this copy. The
            # original is kept alive with it so its id cannot be reused meanwhile.
            self._memo[ident] = (value, out, self.size - start)
        return out

    def _recall(self, value: Any, depth: int) -> Any:
        """The walk's result for ``value``, stored for the same content or walked now."""
        key = _content_key(value)
        if key is None:
            return self._container(value, depth)
        assert self._results is not None
        results = _results(self._results, self.max_bytes)
        entry = results.entries.get(key)
        if entry is not None:
            raw, size, nodes = entry
            if self.size + size <= self.max_bytes and self.nodes + nodes < MAX_NODES:
                self.size += size
                self.nodes += nodes
                return orjson.loads(raw)
        pure = self._pure
        self._pure = True
        size, nodes = self.size, self.nodes
        out = self._container(value, depth)
        if self._pure and self.size <= self.max_bytes and self.nodes < MAX_NODES:
            results.store(key, out, self.size - size, self.nodes - nodes)
        self._pure = pure and self._pure
        return out

    def _mapping(self, value: dict[Any, Any], depth: int, ident: int) -> Any:
        get = dict.get
        lc = get(value, "lc")
        if lc is not None and type(lc) is int and lc == 1:
            kind = get(value, "type")
            if type(kind) is str and kind == "secret":
                return REDACTED  # a LangChain-serialized secret
        n = dict.__len__(value)
        self.nodes += (n if n < MAX_ITEMS else MAX_ITEMS) + 1
        out: dict[str, Any] = {}
        key_info = self._keys.get
        text = self._texts.get
        isfinite = math.isfinite
        room = self.max_bytes - self.size  # recomputed after each call that adds to size
        registered = False
        size = 0
        for count, (k, v) in enumerate(dict.items(value)):
            if size > room or count >= MAX_ITEMS:
                out["<truncated>"] = f"{n - count} more keys"
                size += 40
                break
            info = key_info(k) if type(k) is str else None  # a user __hash__ never runs
            if info is None:
                info = self._key_info(k)
            key, hidden, key_size = info
            size += key_size
            tv = type(v)
            if tv is str:
                if hidden:
                    out[key] = REDACTED
                    size += 12
                elif len(v) < _SCAN_MIN and v.isascii():
                    out[key] = v
                    size += len(v) + 2
                else:
                    clean = text(v)
                    if clean is None:
                        out[key] = self.string(v)
                        room = self.max_bytes - self.size
                    else:
                        out[key] = clean
                        size += len(clean) + 2
            elif tv is int:  # numbers stay, even under a secret name
                out[key] = v if _I64_MIN <= v < _U64_MAX else _safe_int(v)
                size += 8
            elif tv is bool or v is None:
                out[key] = v
                size += 5
            elif tv is float:
                out[key] = v if isfinite(v) else str(v)
                size += 12
            elif hidden:
                out[key] = REDACTED
                size += 12
            else:
                if not registered:  # only containers of containers can share or cycle
                    self._memo[ident] = (value, None, -1)
                    registered = True
                if (tv is dict or tv is list) and depth < MAX_DEPTH - 1:
                    out[key] = self._container(v, depth + 1)
                else:
                    out[key] = self._convert(v, depth + 1)
                room = self.max_bytes - self.size
        self.size += size + 2
        return out

    def _key_info(self, k: Any) -> tuple[str, bool, int]:
        key = self.key(k)
        info = (key, is_secret_key(key), len(key) + 6)  # quotes, ": " and ", "
        if type(k) is str and len(k) <= MAX_KEY_CHARS:
            keys = self._keys
            if len(keys) >= _CACHE_MAX:
                keys.clear()
            keys[k] = info
        return info

    def _sequence(self, value: Any, depth: int, ident: int) -> Any:
        # Subclasses are read through the builtin's own methods (their overrides are
        # user code).
        t = type(value)
        if t is list or t is tuple:
            items: Iterable[Any] = value
            n = len(value)
        elif issubclass(t, list):
            items, n = list.__iter__(value), list.__len__(value)
        elif issubclass(t, tuple):
            items, n = tuple.__iter__(value), tuple.__len__(value)
        elif issubclass(t, set):
            items, n = set.__iter__(value), set.__len__(value)
        else:
            items, n = frozenset.__iter__(value), frozenset.__len__(value)
        self.nodes += (n if n < MAX_ITEMS else MAX_ITEMS) + 1
        out: list[Any] = []
        append = out.append
        convert = self._convert
        text = self._texts.get
        limit = self.max_bytes
        registered = False
        size = 2
        for i, item in enumerate(items):
            if i >= MAX_ITEMS or self.size + size > limit:
                append("<truncated: more items>")
                size += 26
                break
            ti = type(item)
            if ti is str and (len(item) < _SCAN_MIN and item.isascii()):
                append(item)
                size += len(item) + 3
            elif ti is str and (clean := text(item)) is not None:
                append(clean)
                size += len(clean) + 3
            elif ti is bool or item is None:
                append(item)
                size += 6
            elif ti is int or ti is float or ti is str:
                append(convert(item, depth + 1))
                size += 1
            else:
                if not registered:
                    self._memo[ident] = (value, None, -1)
                    registered = True
                if (ti is dict or ti is list) and depth < MAX_DEPTH - 1:
                    append(self._container(item, depth + 1))
                else:
                    append(convert(item, depth + 1))
                size += 1
        self.size += size
        return out

    def _other(self, value: Any, depth: int) -> Any:
        self._pure = False  # not plain data: never a recallable result
        ident = id(value)
        active = self._active
        if active is None:
            active = self._active = set()
        elif ident in active:
            return self._mark("<cycle>")
        if self.nodes >= MAX_NODES or self.size > self.max_bytes:
            return self._mark("<truncated: event size limit>")
        self.nodes += 1
        active.add(ident)
        try:
            plain = self._plain(value)
            return plain if plain is value else self._convert(plain, depth + 1)
        except Exception:
            return self._mark(_placeholder(value))
        finally:
            active.discard(ident)

    def _key_text(self, key: Any) -> str:
        t = type(key)
        if t is int:
            converted = _safe_int(key)
            return converted if type(converted) is str else int.__repr__(key)
        if t is float or t is bool or key is None:
            return json.dumps(key) if t is not float or math.isfinite(key) else str(key)
        converted = self._convert(key, MAX_DEPTH - 4)
        if type(converted) is str:
            return converted
        try:
            return json.dumps(converted, separators=(",", ":"))
        except Exception:
            return _placeholder(key)

    def _plain(self, value: Any) -> Any:
        """One step towards plain data, reading only what runs no user code.

        Types are tested with ``issubclass(type(value), ...)``: ``isinstance`` may read a
        user's ``__class__`` through an overridden ``__getattribute__``.

        Raises when the value has no known shape (the caller uses a placeholder).
        """
        t = type(value)
        if issubclass(t, (bytes, bytearray)):
            return f"<{len(value)} bytes>"
        if t is memoryview:
            return f"<{value.nbytes} bytes>"
        if issubclass(t, enum.Enum):
            return object.__getattribute__(value, "_value_")
        if issubclass(t, _dt.datetime):
            return _dt.datetime.isoformat(value)
        if issubclass(t, _dt.date):
            return _dt.date.isoformat(value)
        if issubclass(t, _dt.time):
            return _dt.time.isoformat(value)
        if issubclass(t, _dt.timedelta):
            return _dt.timedelta.total_seconds(value)
        if issubclass(t, uuid.UUID):
            return uuid.UUID.__str__(value)
        if issubclass(t, decimal.Decimal):
            return decimal.Decimal.__str__(value)
        if issubclass(t, str):
            return str.__str__(value)
        if issubclass(t, int):
            return int.__int__(value)
        if issubclass(t, float):
            return float.__float__(value)
        if t is types.MappingProxyType:
            return dict(value)
        if t in _ITERABLES:  # builtin C iterables: iterating them runs no user code
            return list(itertools.islice(value, MAX_ITEMS))
        if issubclass(t, type):
            return f"<class {type.__dict__['__name__'].__get__(value)}>"
        name = t.__name__
        if "Secret" in name:  # pydantic SecretStr / SecretBytes and look-alikes
            return REDACTED
        module = t.__module__ or ""
        if module.startswith(("numpy", "torch", "pandas")):
            return _array(value, name)
        if _type_attr(t, "__next__") or _type_attr(t, "__anext__") or _type_attr(t, "send"):
            return f"<{name}>"  # never consume a user's generator or stream
        return _attributes(value, t, name)


def _array(value: Any, name: str) -> Any:
    # Well-known libraries whose conversions run their own (C) code, not the user's.
    size = getattr(value, "size", 0)
    if callable(size):  # torch: size() is a shape
        numel = getattr(value, "numel", None)
        size = numel() if callable(numel) else 0
    if isinstance(size, int) and size > MAX_ITEMS:
        return f"<{name} of {size} items>"
    tolist = getattr(value, "tolist", None)
    if callable(tolist):
        return tolist()
    item = getattr(value, "item", None)
    if callable(item):
        return item()
    return f"<{name}>"


def _attributes(value: Any, t: type, name: str) -> Any:
    """Public instance attributes, read without ``__getattr__`` / properties."""
    try:
        attrs = dict(object.__getattribute__(value, "__dict__"))
    except Exception:
        attrs = {}
    for klass in t.__mro__:
        slots = vars(klass).get("__slots__", ())
        for slot in (slots,) if isinstance(slots, str) else slots:
            if isinstance(slot, str) and slot not in attrs and not slot.startswith("__"):
                try:
                    attrs[slot] = object.__getattribute__(value, slot)
                except Exception:
                    continue
    public = {k: v for k, v in attrs.items() if type(k) is str and not k.startswith("_")}
    if _type_attr(t, "__pydantic_fields__") or _type_attr(t, "__dataclass_fields__"):
        extra = attrs.get("__pydantic_extra__")
        if isinstance(extra, dict):
            public.update(extra)
        return public
    if public:
        return {"type": name, **public}
    raise TypeError(name)


def _placeholder(value: Any) -> str:
    try:
        return f"<{type(value).__name__}>"
    except Exception:  # pragma: no cover - a metaclass with a hostile __name__
        return "<object>"


def _ident(text: str, secrets: tuple[str, ...]) -> str:
    head = text[: MAX_ID_CHARS + 64]
    if scrub(head, secrets) != head:
        return f"{REDACTED[:-1]} {_digest(text)}]"
    if not head.isascii():
        head = _clean_surrogates(head)
    if len(text) > MAX_ID_CHARS or _str_wire(head) > 6 * MAX_ID_CHARS:
        return f"{head[:128]}…[truncated {_digest(text)}]"
    return head


_clean_keys: dict[str, str] = {}
UUID_TEXT = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")
"""A canonical UUID as text (either case), to ``fullmatch``."""


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]


_DATA_URL = re.compile(r"data:([\w.+\-]+/[\w.+\-]+)?(;[\w=\-]+)*;base64,", re.ASCII)
_BASE64_BODY = re.compile(r"[A-Za-z0-9+/=\r\n]+", re.ASCII)


def _media_placeholder(mime: str | None, chars: int) -> str:
    return f"[base64 {mime or 'data'}, {chars * 3 // 4} bytes]"
