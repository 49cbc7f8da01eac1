"""Turn anything into JSON-safe values, redacting secrets and replacing base64 media.

Runs on the exporter's worker. Never raises: whatever cannot be represented becomes a
short placeholder string. Bounded in depth and width so a hostile object cannot make an
event unbounded or the worker loop forever.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import decimal
import enum
import itertools
import math
import re
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["REDACTED", "Serializer", "is_secret_key"]

REDACTED = "[REDACTED]"
MAX_DEPTH = 24
MAX_ITEMS = 5000
_BASE64_MIN = 1024

_SECRET_KEY = re.compile(
    r"api[_-]?key|apikey|authorization|secret|passw(or)?d|credential|private[_-]?key|"
    r"access[_-]?token|refresh[_-]?token|id[_-]?token|auth[_-]?token|session[_-]?token|"
    r"bearer|cookie|x[_-]api[_-]key|signature",
    re.IGNORECASE,
)
_SECRET_KEY_EXACT = frozenset({"token", "key", "pwd", "auth", "api-key"})
# Well-known credential formats: OpenAI/Anthropic keys, PostHog keys, bearer tokens,
# AWS access keys, GitHub and Slack tokens.
_SECRET_VALUE = re.compile(
    r"sk-[A-Za-z0-9_\-]{16,}|ph[cxs]_[A-Za-z0-9]{20,}|(?i:bearer)\s+[A-Za-z0-9._~+/\-]{16,}=*|"
    r"AKIA[0-9A-Z]{16}|gh[pousr]_[A-Za-z0-9]{20,}|xox[abposr]-[A-Za-z0-9\-]{10,}"
)
_DATA_URL = re.compile(r"data:([\w.+\-]+/[\w.+\-]+)?(;[\w=\-]+)*;base64,", re.ASCII)
_BASE64_BODY = re.compile(r"[A-Za-z0-9+/=\r\n]+", re.ASCII)

_key_cache: dict[str, bool] = {}


def is_secret_key(key: str) -> bool:
    """Whether a mapping key names a credential (``api_key``, ``Authorization``, ...)."""
    cached = _key_cache.get(key)
    if cached is None:
        cached = key.lower() in _SECRET_KEY_EXACT or _SECRET_KEY.search(key) is not None
        if len(_key_cache) < 10_000:
            _key_cache[key] = cached
    return cached


def _media_placeholder(mime: str | None, chars: int) -> str:
    return f"[base64 {mime or 'data'}, {chars * 3 // 4} bytes]"


class Serializer:
    """One conversion pass; ``size`` estimates the JSON bytes produced so far.

    Args:
        secrets: Literal strings (e.g. the PostHog API key) to scrub wherever they appear.
    """

    __slots__ = ("secrets", "size")

    def __init__(self, secrets: tuple[str, ...] = ()) -> None:
        self.secrets = secrets
        self.size = 0

    def convert(self, value: Any) -> Any:
        """Return a JSON-safe copy of ``value``."""
        try:
            return self._convert(value, 0, set())
        except Exception:  # pragma: no cover - defensive: _convert guards each branch
            return "<unserializable>"

    def string(self, text: str) -> str:
        """Scrub one string: credentials and base64 media become placeholders."""
        n = len(text)
        if n >= 16:
            if n >= _BASE64_MIN:
                text = self._strip_base64(text)
            if _SECRET_VALUE.search(text) is not None:
                text = _SECRET_VALUE.sub(REDACTED, text)
            for secret in self.secrets:
                if secret in text:
                    text = text.replace(secret, REDACTED)
        self.size += len(text) + 2
        return text

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

    def _convert(self, value: Any, depth: int, seen: set[int]) -> Any:
        if value is None or value is True or value is False:
            self.size += 5
            return value
        t = type(value)
        if t is str:
            return self.string(value)
        if t is int:
            self.size += 8
            return value
        if t is float:
            self.size += 12
            return value if math.isfinite(value) else str(value)
        if depth >= MAX_DEPTH:
            return "<max depth>"
        if t is dict or (t is not list and isinstance(value, Mapping)):
            return self._mapping(value, depth, seen)
        if t is list or t is tuple or isinstance(value, (list, tuple, set, frozenset)):
            return self._sequence(value, depth, seen)
        return self._other(value, depth, seen)

    def _mapping(self, value: Mapping[Any, Any], depth: int, seen: set[int]) -> Any:
        ident = id(value)
        if ident in seen:
            return "<cycle>"
        seen.add(ident)
        try:
            if "lc" in value and value.get("lc") == 1 and value.get("type") == "secret":
                return REDACTED
            out: dict[str, Any] = {}
            secret = _key_cache.get
            convert = self._convert
            string = self.string
            size = 0
            items: Iterable[tuple[Any, Any]] = value.items()
            if len(value) > MAX_ITEMS:
                items = itertools.islice(items, MAX_ITEMS)
                out["<truncated>"] = f"{len(value) - MAX_ITEMS} more keys"
            # Leaves are handled inline: most events are small dicts of short strings and
            # numbers, and a call per leaf is most of the translation cost.
            for k, v in items:
                key = k if type(k) is str else self._key(k)
                size += len(key) + 4
                hidden = secret(key)
                if hidden is None:
                    hidden = is_secret_key(key)
                tv = type(v)
                if hidden and v is not None and tv is not int and tv is not float:
                    out[key] = REDACTED
                elif tv is str:
                    if len(v) < 16:
                        out[key] = v
                        size += len(v) + 2
                    else:
                        out[key] = string(v)
                elif tv is int or tv is bool or v is None:
                    out[key] = v
                    size += 6
                else:
                    out[key] = convert(v, depth + 1, seen)
            self.size += size
            return out
        except Exception:
            return "<unserializable mapping>"
        finally:
            seen.discard(ident)

    def _key(self, key: Any) -> str:
        try:
            if isinstance(key, enum.Enum):
                return str(key.value)
            return str(key)
        except Exception:
            return "<key>"

    def _sequence(self, value: Iterable[Any], depth: int, seen: set[int]) -> Any:
        ident = id(value)
        if ident in seen:
            return "<cycle>"
        seen.add(ident)
        try:
            out: list[Any] = []
            convert = self._convert
            for i, item in enumerate(value):
                if i >= MAX_ITEMS:
                    out.append("<truncated: more items>")
                    break
                ti = type(item)
                if ti is str and len(item) < 16:
                    out.append(item)
                    self.size += len(item) + 2
                elif ti is int or ti is bool or item is None:
                    out.append(item)
                else:
                    out.append(convert(item, depth + 1, seen))
            self.size += 2 + len(out)
            return out
        except Exception:
            return "<unserializable sequence>"
        finally:
            seen.discard(ident)

    def _other(self, value: Any, depth: int, seen: set[int]) -> Any:
        ident = id(value)
        if ident in seen:
            return "<cycle>"
        try:
            seen.add(ident)
            return self._convert(self._plain(value), depth + 1, seen)
        except Exception:
            return self._describe(value)
        finally:
            seen.discard(ident)

    def _plain(self, value: Any) -> Any:
        """One step towards plain data; raises when the value has no known shape."""
        if isinstance(value, (bytes, bytearray, memoryview)):
            return f"<{len(value)} bytes>"
        if isinstance(value, enum.Enum):
            return value.value
        if isinstance(value, (_dt.datetime, _dt.date, _dt.time)):
            return value.isoformat()
        if isinstance(value, _dt.timedelta):
            return value.total_seconds()
        if isinstance(value, (uuid.UUID, decimal.Decimal)):
            return str(value)
        if isinstance(value, (int, float, str)):  # subclasses (IntEnum handled above)
            return (
                int(value)
                if isinstance(value, int)
                else (float(value) if isinstance(value, float) else str(value))
            )
        name = type(value).__name__
        if "Secret" in name:  # pydantic SecretStr / SecretBytes and look-alikes
            return REDACTED
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
        dump = getattr(value, "model_dump", None)
        if callable(dump) and not isinstance(value, type):
            return dump()
        item = getattr(value, "item", None)
        tolist = getattr(value, "tolist", None)
        if callable(tolist) and type(value).__module__.startswith(("numpy", "pandas", "torch")):
            size = getattr(value, "size", 0)
            if isinstance(size, int) and size > MAX_ITEMS:
                return f"<{name} of {size} items>"
            return tolist()
        if callable(item) and type(value).__module__.startswith("numpy"):
            return item()
        if hasattr(value, "__next__") or hasattr(value, "__aiter__") or hasattr(value, "send"):
            return f"<{name}>"  # never consume a user's generator or stream
        to_json = getattr(value, "to_json", None)
        if callable(to_json) and type(value).__module__.startswith("langchain"):
            return to_json()
        if isinstance(value, Mapping):
            return dict(value)
        slots = getattr(type(value), "__slots__", None)
        if hasattr(value, "__dict__") and not isinstance(value, type):
            attrs = {k: v for k, v in vars(value).items() if not k.startswith("_")}
            if attrs:
                return {"type": name, **attrs}
        if slots and not isinstance(value, type):
            return {"type": name, **{s: getattr(value, s) for s in slots if hasattr(value, s)}}
        return self._describe(value)

    def _describe(self, value: Any) -> str:
        try:
            text = repr(value)
        except Exception:
            try:
                return f"<unrepresentable {type(value).__name__}>"
            except Exception:
                return "<unrepresentable>"
        if len(text) > 1000:
            text = text[:1000] + "…"
        return self.string(text)
