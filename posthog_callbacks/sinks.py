"""Where finished PostHog event dicts go: PostHog itself, a JSONL file, or memory.

A sink sees only finished event dicts (``PosthogSink`` may be handed them already encoded,
see :meth:`PosthogSink.send_encoded`), so a local file holds exactly what PostHog would
have received. ``send`` is called from the exporter's worker threads only. It returns how
many of the events it could not encode (counted as ``dropped_invalid``: one bad value costs
at most its own event, never the batch), and raises when the whole batch was lost (counted
as ``dropped_sink_error``).
"""

from __future__ import annotations

import functools
import gzip as gzip_module
import logging
import os
import random
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import orjson
import requests
from requests.adapters import HTTPAdapter

__all__ = [
    "DEFAULT_HOST",
    "EncodedBatch",
    "EncodedEvents",
    "JsonlSink",
    "MemorySink",
    "PosthogSink",
    "Sink",
    "SinkError",
    "encode_events",
]

DEFAULT_HOST = "https://us.i.posthog.com"
AI_ENDPOINT = "/i/v0/ai/batch/"
EVENTS_ENDPOINT = "/batch/"  # everything that is not an $ai_* event, e.g. $exception
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
# PostHog's AI endpoint takes events up to 8 MiB as encoded; events.py truncates below it.
MAX_WIRE_EVENT_BYTES = 8 * 1024 * 1024
# gzip level 1 costs ~3 us per short chat event against ~17 us at the SDK's level 9, for
# bodies ~15 % larger (measured in docs/performance.md); zlib releases the GIL meanwhile.
DEFAULT_COMPRESSLEVEL = 1
_SANITIZE_MAX_DEPTH = 100

log = logging.getLogger(__name__)


class SinkError(Exception):
    """A batch could not be delivered (after retries, when the sink retries)."""


@runtime_checkable
class Sink(Protocol):
    """What the exporter needs of a destination."""

    def send(self, events: Sequence[dict[str, Any]], deadline: float | None = None) -> int | None:
        """Deliver ``events``; give up by ``deadline`` (``time.monotonic()``), raising.

        Returns:
            How many events were dropped as invalid (None or 0: all delivered).
        """

    def close(self) -> None:
        """Release resources; called once at exporter shutdown."""


# -- encoding ------------------------------------------------------------------------------


def _default(value: Any) -> Any:
    # orjson calls this only for types it does not know. Never call the object's own
    # __str__/__repr__ (it may hang or raise): a placeholder names its type.
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", "replace")
    return f"<{type(value).__name__}>"


def _clean_str(text: str) -> str:
    # Lone surrogates are not UTF-8: each becomes U+FFFD, valid pairs are joined.
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def _clean_key(key: Any) -> str:
    if isinstance(key, str):
        return _clean_str(key)
    if key is None or isinstance(key, (bool, int, float)):
        return _clean_str(orjson.dumps(_sanitize(key, 0)).decode())
    return f"<{type(key).__name__}>"


def _sanitize(value: Any, depth: int) -> Any:
    """A JSON-safe copy of ``value``: only the values orjson refused are replaced."""
    if depth > _SANITIZE_MAX_DEPTH:
        return "<too deep>"
    if isinstance(value, str):
        return _clean_str(value)
    if isinstance(value, bool) or value is None or isinstance(value, float):
        return value
    if isinstance(value, int):
        if -(2**63) <= value < 2**64:
            return int(value)
        try:
            return str(value)  # beyond 64 bits: as text, like JavaScript's BigInt
        except ValueError:  # over sys.get_int_max_str_digits() digits
            return "<int too large>"
    if isinstance(value, dict):
        return {_clean_key(k): _sanitize(v, depth + 1) for k, v in list(value.items())}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_sanitize(v, depth + 1) for v in list(value)]
    try:
        encoded = orjson.dumps(value, default=_default)
    except TypeError:
        return f"<{type(value).__name__}>"
    return orjson.loads(encoded)


def _encode_one(event: Any) -> bytes | None:
    """One event as JSON bytes, values orjson refused replaced; None if impossible."""
    try:
        return orjson.dumps(event, default=_default, option=orjson.OPT_NON_STR_KEYS)
    except TypeError:
        pass
    try:
        return orjson.dumps(_sanitize(event, 0), default=_default)
    except (TypeError, RecursionError, ValueError):
        return None


class EncodedBatch:
    """Events encoded as one JSON array, and how many could not be.

    Attributes:
        array: ``[event, ...]`` as UTF-8 JSON bytes.
        count: Events in ``array``.
        invalid: Events dropped: not encodable, or over ``max_event_bytes`` encoded.
        rewritten: True when some event was re-encoded with values replaced (so the
            dicts no longer match ``array``).
    """

    __slots__ = ("array", "count", "invalid", "rewritten")

    def __init__(self, array: bytes, count: int, invalid: int, rewritten: bool) -> None:
        self.array = array
        self.count = count
        self.invalid = invalid
        self.rewritten = rewritten


def encode_events(
    events: Sequence[Any], max_event_bytes: int = MAX_WIRE_EVENT_BYTES
) -> EncodedBatch:
    """Encode ``events`` as a JSON array; a bad event costs only itself.

    The whole batch is encoded in one ``orjson`` call (about 1 us per short event). Only
    when that fails, or the array is larger than one event may be, is each event encoded
    on its own: values orjson refuses (an int beyond 64 bits, a lone surrogate, a
    non-string key, an unknown object) are replaced, and an event that still cannot be
    encoded or is over ``max_event_bytes`` is left out and counted.
    """
    try:
        array = orjson.dumps(events, default=_default)
        if len(array) <= max_event_bytes + 2:
            return EncodedBatch(array, len(events), 0, False)
    except TypeError:
        pass
    parts: list[bytes] = []
    invalid = 0
    for event in events:
        encoded = _encode_one(event)
        if encoded is None or len(encoded) > max_event_bytes:
            invalid += 1
            continue
        parts.append(encoded)
    return EncodedBatch(b"[" + b",".join(parts) + b"]", len(parts), invalid, True)


class EncodedEvents:
    """A batch built from chunks encoded one after another (:func:`encode_events` each),
    for :meth:`PosthogSink.send_encoded`. ``len()`` counts every event handed over, the
    ones left out as invalid included (as ``len()`` of the events given to ``send``).

    Attributes:
        arrays: Each chunk's valid events as a JSON array.
        size: Their bytes together.
        count: Valid events in ``arrays``.
        invalid: Events left out: not encodable, or over the endpoint's limit encoded.
    """

    __slots__ = ("arrays", "count", "invalid", "size")

    def __init__(self) -> None:
        self.arrays: list[bytes] = []
        self.size = 0
        self.count = 0
        self.invalid = 0

    def add(self, chunk: EncodedBatch) -> None:
        """Append the events of ``chunk``."""
        self.invalid += chunk.invalid
        if chunk.count:
            self.arrays.append(chunk.array)
            self.size += len(chunk.array)
            self.count += chunk.count

    def __len__(self) -> int:
        return self.count + self.invalid

    def array(self) -> bytes:
        """Every event as one JSON array."""
        if len(self.arrays) == 1:
            return self.arrays[0]
        return b"[" + b",".join(a[1:-1] for a in self.arrays) + b"]"


# -- sinks -----------------------------------------------------------------------------------

# Sinks whose locks (and HTTP sessions) a forked child must replace, never acquire.
_forkable: weakref.WeakSet[Any] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for sink in list(_forkable):
        try:
            sink._after_fork()
        except Exception:  # pragma: no cover - never fail a fork
            pass


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class MemorySink:
    """Keeps every event in memory, in arrival order. For tests and notebooks."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        _forkable.add(self)

    def send(self, events: Sequence[dict[str, Any]], deadline: float | None = None) -> None:
        """Append ``events``."""
        with self._lock:
            self.events.extend(events)

    def clear(self) -> None:
        """Forget every event received so far."""
        with self._lock:
            self.events.clear()

    def close(self) -> None:
        """Nothing to release."""

    def _after_fork(self) -> None:
        self._lock = threading.Lock()


class JsonlSink:
    """Appends one JSON event per line to ``path`` (created with its parent folders).

    Lines are UTF-8 JSON; a value JSON cannot carry (a lone surrogate, an int beyond 64
    bits) is replaced in its field, and an event that still cannot be encoded is left out
    and counted as ``dropped_invalid``.

    Args:
        path: The file to append to.
        truncate: Start with an empty file instead of appending.
    """

    def __init__(self, path: str | os.PathLike[str], *, truncate: bool = False) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if truncate:
            self.path.write_text("", encoding="utf-8")
        self._lock = threading.Lock()
        _forkable.add(self)

    def send(self, events: Sequence[dict[str, Any]], deadline: float | None = None) -> int:
        """Append ``events`` as JSON lines; returns how many could not be encoded."""
        lines: list[bytes] = []
        invalid = 0
        for event in events:
            encoded = _encode_one(event)
            if encoded is None:
                invalid += 1
            else:
                lines.append(encoded)
        if lines:
            data = b"\n".join(lines) + b"\n"
            with self._lock, self.path.open("ab") as fh:
                fh.write(data)
        return invalid

    def close(self) -> None:
        """Nothing held open between batches."""

    def _after_fork(self) -> None:
        # Inherited from a parent thread that may have held it at fork time.
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"JsonlSink({str(self.path)!r})"


PostFn = Callable[..., Any]


class _HTTPStatusError(Exception):
    def __init__(self, status: int, retry_after: float | None) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.retry_after = retry_after


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


def _sdk_user_agent() -> str:
    try:
        from posthog.request import USER_AGENT

        return str(USER_AGENT)
    except ImportError:  # pragma: no cover - posthog is a dependency
        return "posthog-python"


def _sdk_batch_post() -> PostFn:
    from posthog.request import batch_post

    return batch_post


def _new_session(host: str) -> requests.Session:
    session = requests.Session()
    # One attempt per request: the retry policy (statuses, Retry-After, backoff, deadline)
    # is ours. Two senders share the pool.
    adapter = HTTPAdapter(max_retries=0, pool_connections=2, pool_maxsize=4)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    # requests reads the environment (proxies, no_proxy, CA bundle, ~/.netrc) on every
    # request: ~0.5 ms of CPU per request here, as much as the rest of the request. The
    # session reads it once instead, for the one host it posts to (a .netrc entry is not
    # used: PostHog authenticates with the key in the body).
    try:
        proxies = requests.utils.get_environ_proxies(host)
        verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    except Exception:  # pragma: no cover - a broken environment: requests reads it itself
        return session
    session.trust_env = False
    session.proxies.update(proxies)
    if verify:
        session.verify = verify
    return session


class PosthogSink:
    """Sends batches to PostHog's AI capture endpoint (``/i/v0/ai/batch/``).

    With an API key, the sink encodes each batch with ``orjson`` (an event that cannot be
    encoded costs only itself), compresses it with gzip (level ``compresslevel``) and posts
    it through a ``requests.Session`` of its own, with the posthog SDK's user agent. With a
    wrapped ``posthog.Posthog`` client, batches go through the SDK's own poster, so the
    client's gzip and timeout settings, ``disabled``, ``send=False`` and ``before_send``
    hold.

    Either way this sink does the retries: 408, 429 (honouring ``Retry-After``), 5xx and
    network errors, with exponential backoff (``backoff_base`` doubling up to
    ``backoff_max``, with jitter). A batch is given up after at least ``max_retries``
    retries *and* ``retry_window`` seconds, or at the caller's deadline, so an outage
    shorter than ``retry_window`` loses nothing: the exporter keeps queueing meanwhile,
    within its byte budget.

    Args:
        api_key: Project API key (``phc_...``).
        host: Ingestion host, e.g. ``https://eu.i.posthog.com`` or a self-hosted URL.
        client: An existing ``posthog.Posthog`` client whose key, host, gzip and timeout
            settings are reused; its ``disabled`` and ``send=False`` settings and its
            ``before_send`` hook are honoured.
        timeout: Seconds per HTTP request.
        max_retries: Retries per batch at least (after the first attempt).
        gzip: Compress request bodies.
        post: A function performing one request with ``batch_post``'s signature
            (injectable for tests); replaces the sink's own HTTP path.
        backoff_base: First backoff delay in seconds.
        backoff_max: Longest single backoff delay in seconds.
        retry_window: Seconds during which transient failures keep being retried, however
            many retries that takes (0: only ``max_retries`` counts).
        compresslevel: gzip level of the sink's own path (1 fastest, 9 smallest).
        capture_exceptions: Send each failed LLM call, chain or tool to Error Tracking as an
            ``$exception`` event, linked from the ``$ai_*`` event by
            ``$exception_event_id`` (as PostHog's own LangChain handler does). ``None``:
            on when the wrapped client has ``enable_exception_autocapture``, then sent
            through its ``capture_exception``; off for an API key.
    """

    def __init__(
        self,
        api_key: str | None = None,
        host: str | None = None,
        *,
        client: Any = None,
        timeout: float = 10.0,
        max_retries: int = 6,
        gzip: bool = True,
        post: PostFn | None = None,
        backoff_base: float = 0.5,
        backoff_max: float = 10.0,
        retry_window: float = 120.0,
        compresslevel: int = DEFAULT_COMPRESSLEVEL,
        capture_exceptions: bool | None = None,
    ) -> None:
        self.client = client
        if client is not None:
            api_key = api_key or getattr(client, "api_key", None)
            host = host or getattr(client, "host", None)
            gzip = bool(getattr(client, "gzip", gzip) or gzip)
            client_timeout = getattr(client, "timeout", None)
            if isinstance(client_timeout, (int, float)) and client_timeout > 0:
                timeout = float(client_timeout)
        if not api_key or not isinstance(api_key, str):
            raise ValueError(
                "PosthogSink needs a project API key: pass api_key=... or set POSTHOG_API_KEY"
            )
        if not 0 <= compresslevel <= 9:
            raise ValueError(f"compresslevel must be between 0 and 9, got {compresslevel!r}")
        self.api_key = api_key
        self.host = (host or DEFAULT_HOST).rstrip("/")
        self.timeout = timeout
        self.max_retries = max(0, max_retries)
        self.gzip = gzip
        self.compresslevel = compresslevel
        self.endpoint = AI_ENDPOINT
        self.url = self.host + AI_ENDPOINT
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.retry_window = max(0.0, retry_window)
        if post is None and client is not None:
            post = _sdk_batch_post()
        self._post = post
        self.user_agent = _sdk_user_agent()
        self._key_json = orjson.dumps(api_key)
        self.requests = 0
        self.retries = 0
        self.dropped_by_before_send = 0
        self.dropped_invalid = 0
        self.max_concurrent_sends = 2
        self._count_lock = threading.Lock()  # two senders update the counters at once
        if capture_exceptions is None:
            capture_exceptions = client is not None and bool(
                getattr(client, "enable_exception_autocapture", False)
            )
        self.capture_exceptions = bool(capture_exceptions)
        self.exceptions_sent = 0
        self._session = _new_session(self.url)
        _forkable.add(self)

    def _after_fork(self) -> None:
        # The child must not read or write on the parent's pooled keep-alive connections,
        # nor wait for a lock a parent thread held at fork time: replace both, touch neither.
        self._count_lock = threading.Lock()
        self._session = _new_session(self.url)

    @property
    def disabled(self) -> bool:
        """True when the wrapped client is disabled or built with ``send=False``.

        Events are then discarded, as the client itself would.
        """
        client = self.client
        return client is not None and (
            bool(getattr(client, "disabled", False)) or getattr(client, "send", True) is False
        )

    def _before_send(self, events: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """Apply the wrapped client's ``before_send`` hook, as its own ``capture`` would.

        A hook that returns None (or something that is not a dict), or raises, drops the
        event; drops are counted in :attr:`dropped_by_before_send`.
        """
        hook = getattr(self.client, "before_send", None) if self.client is not None else None
        if not callable(hook):
            return list(events)
        kept: list[dict[str, Any]] = []
        for event in events:
            try:
                result = hook(event)
            except Exception:
                log.warning(
                    "posthog_callbacks: the posthog client's before_send raised; event dropped",
                    exc_info=True,
                )
                result = None
            if isinstance(result, dict):
                kept.append(result)
            else:
                with self._count_lock:
                    self.dropped_by_before_send += 1
        return kept

    def send(self, events: Sequence[dict[str, Any]], deadline: float | None = None) -> int:
        """Post ``events`` as one batch, retrying transient failures until ``deadline``.

        Returns:
            How many events were left out because they could not be encoded or were over
            the endpoint's size limit (also added to :attr:`dropped_invalid`).

        Raises:
            SinkError: The batch was rejected or could not be delivered in time.
        """
        if not events or self.disabled:
            return 0
        batch = self._before_send(events) if self.client is not None else events
        if not batch:
            return 0
        encoded = encode_events(batch)
        if encoded.invalid:
            with self._count_lock:
                self.dropped_invalid += encoded.invalid
            log.debug("posthog_callbacks: %d events could not be encoded", encoded.invalid)
        if not encoded.count:
            return encoded.invalid
        exceptions = self._link_exceptions(batch) if self.capture_exceptions else []
        if exceptions:
            encoded = encode_events(batch)  # now with the $exception_event_id links
        attempt_once: Callable[[float], None]
        if self._post is not None:
            if encoded.rewritten:
                batch = orjson.loads(encoded.array)
            attempt_once = functools.partial(self._post_sdk, batch)
        else:
            attempt_once = functools.partial(self._post_own, self._body(encoded.array))
        self._with_retries(attempt_once, encoded.count, deadline)
        if exceptions:
            self._send_exceptions(exceptions, deadline)
        return encoded.invalid

    @property
    def accepts_encoded(self) -> bool:
        """True when batches may come already encoded (:meth:`send_encoded`): the sink's
        own HTTP path, with no ``before_send`` to apply and no ``$exception`` events to
        derive from the dicts."""
        return self._post is None and self.client is None and not self.capture_exceptions

    def send_encoded(self, batch: EncodedEvents, deadline: float | None = None) -> int:
        """Post a batch encoded chunk by chunk as one request, retrying transient failures
        until ``deadline`` (as :meth:`send`; the same request body).

        The exporter encodes events a chunk at a time as it translates them when
        :attr:`accepts_encoded`, so that a batch waiting for a sender or on the wire holds
        bytes, which the garbage collector never visits, instead of event dicts.

        Returns:
            How many events were left out because they could not be encoded or were over
            the endpoint's size limit (also added to :attr:`dropped_invalid`), as
            :meth:`send`.

        Raises:
            SinkError: The batch was rejected or could not be delivered in time.
        """
        if batch.invalid:
            with self._count_lock:
                self.dropped_invalid += batch.invalid
        if batch.count:
            body = self._body(batch.array())
            self._with_retries(functools.partial(self._post_own, body), batch.count, deadline)
        return batch.invalid

    def _link_exceptions(self, batch: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """Give every failed ``$ai_*`` event an ``$exception`` event and link the two.

        With a wrapped client the exception goes through its ``capture_exception`` (its
        own queue and settings) and nothing is returned; otherwise the ``$exception``
        events to post to the events endpoint are returned.
        """
        own: list[dict[str, Any]] = []
        capture = getattr(self.client, "capture_exception", None) if self.client else None
        for event in batch:
            try:
                props = event.get("properties")
                if (
                    not isinstance(props, dict)
                    or props.get("$ai_is_error") is not True
                    or "$exception_event_id" in props
                    or not str(event.get("event", "")).startswith("$ai_")
                ):
                    continue
                kind, message = _split_error(props.get("$ai_error"))
                context = {k: v for k, v in props.items() if k not in _CONTENT_PROPERTIES}
                if callable(capture):
                    linked = capture(
                        _synthetic_exception(kind, message),
                        distinct_id=event.get("distinct_id"),
                        properties=context,
                        groups=props.get("$groups"),
                    )
                else:
                    linked = str(uuid.uuid4())
                    own.append(_exception_event(event, context, kind, message, linked))
                if isinstance(linked, str) and linked:
                    props["$exception_event_id"] = linked
                    with self._count_lock:
                        self.exceptions_sent += 1
            except Exception:  # never cost the $ai_* event itself
                log.debug("posthog_callbacks: could not capture an exception", exc_info=True)
        return own

    def _send_exceptions(self, events: list[dict[str, Any]], deadline: float | None) -> None:
        encoded = encode_events(events)
        body = self._body(encoded.array)
        url = self.host + EVENTS_ENDPOINT
        try:
            self._with_retries(
                functools.partial(self._post_own, body, url=url), encoded.count, deadline
            )
        except SinkError as exc:
            with self._count_lock:
                self.exceptions_sent -= encoded.count
            log.warning("posthog_callbacks: $exception events not delivered: %s", exc)

    def _body(self, array: bytes) -> bytes:
        sent_at = orjson.dumps(datetime.now(timezone.utc).isoformat())
        data = b'{"api_key":%s,"batch":%s,"sent_at":%s}' % (self._key_json, array, sent_at)
        if self.gzip:
            data = gzip_module.compress(data, compresslevel=self.compresslevel, mtime=0)
        return data

    def _post_own(self, body: bytes, timeout: float, url: str | None = None) -> None:
        headers = {"Content-Type": "application/json", "User-Agent": self.user_agent}
        if self.gzip:
            headers["Content-Encoding"] = "gzip"
        response = self._session.post(url or self.url, data=body, headers=headers, timeout=timeout)
        try:
            status = response.status_code
            if status != 200:
                raise _HTTPStatusError(status, _retry_after(response.headers.get("Retry-After")))
        finally:
            response.close()

    def _post_sdk(self, batch: Sequence[dict[str, Any]], timeout: float) -> None:
        assert self._post is not None
        self._post(
            self.api_key,
            self.host,
            gzip=self.gzip,
            timeout=timeout,
            path=self.endpoint,
            batch=batch,
        )

    def _with_retries(
        self, attempt_once: Callable[[float], None], n: int, deadline: float | None
    ) -> None:
        started = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            with self._count_lock:
                self.requests += 1
            timeout = self.timeout
            if deadline is not None:
                timeout = max(0.1, min(timeout, deadline - time.monotonic()))
            try:
                attempt_once(timeout)
                return
            except Exception as exc:
                status = getattr(exc, "status", None)
                exhausted = (
                    attempt > self.max_retries and time.monotonic() - started >= self.retry_window
                )
                if not _is_retryable(exc, status) or exhausted:
                    raise SinkError(
                        f"batch of {n} events not delivered "
                        f"after {attempt} attempt(s): {_describe(exc)}"
                    ) from exc
                delay = self._delay(attempt, getattr(exc, "retry_after", None))
                if deadline is not None and time.monotonic() + delay >= deadline:
                    raise SinkError(
                        f"batch of {n} events not delivered before the deadline: {_describe(exc)}"
                    ) from exc
                with self._count_lock:
                    self.retries += 1
                log.debug("posthog_callbacks: retrying batch in %.2fs (%s)", delay, _describe(exc))
                time.sleep(delay)

    def _delay(self, attempt: int, retry_after: Any) -> float:
        if isinstance(retry_after, (int, float)) and retry_after > 0:
            return float(min(retry_after, 60.0))
        backoff = min(self.backoff_max, self.backoff_base * (2 ** min(attempt - 1, 30)))
        return float(backoff * (0.5 + random.random() / 2))

    def close(self) -> None:
        """Close the sink's HTTP connections."""
        try:
            self._session.close()
        except Exception:  # pragma: no cover - defensive
            log.debug("posthog_callbacks: closing the HTTP session failed", exc_info=True)

    def __repr__(self) -> str:
        return f"PosthogSink(host={self.host!r})"


_CONTENT_PROPERTIES = frozenset(
    {"$ai_input", "$ai_output_choices", "$ai_input_state", "$ai_output_state", "$ai_tools"}
)
_exception_types: dict[str, type[Exception]] = {}


def _split_error(error: Any) -> tuple[str, str]:
    """``"Type: message"`` (a span's error) -> ``("Type", "message")``."""
    text = error if isinstance(error, str) else ""
    kind, sep, message = text.partition(": ")
    kind = kind.strip()
    if not sep and " " in kind:  # free text, not an exception type
        return "Error", text
    return (kind or "Error"), message


def _synthetic_exception(kind: str, message: str) -> Exception:
    # Error Tracking groups by the exception's type name: rebuild one with the original
    # name (the span keeps the error as text, not the exception object).
    cls = _exception_types.get(kind)
    if cls is None:
        cls = _exception_types.setdefault(kind, type(kind, (Exception,), {}))
    return cls(message)


def _exception_event(
    event: dict[str, Any], context: dict[str, Any], kind: str, message: str, event_uuid: str
) -> dict[str, Any]:
    """An ``$exception`` event for Error Tracking, in the shape posthog-python sends."""
    properties = {
        **context,
        "$exception_list": [
            {
                "type": kind,
                "value": message,
                "mechanism": {"type": "generic", "handled": True},
                "stacktrace": {"type": "raw", "frames": []},
            }
        ],
        "$exception_level": "error",
        "$exception_handled": True,
    }
    return {
        "event": "$exception",
        "distinct_id": event.get("distinct_id"),
        "properties": properties,
        "timestamp": event.get("timestamp"),
        "uuid": event_uuid,
    }


def _is_retryable(exc: BaseException, status: Any) -> bool:
    if isinstance(status, int):
        return status in RETRY_STATUSES
    if isinstance(status, str):  # the SDK uses "N/A" for unparseable responses
        return True
    return isinstance(exc, (requests.ConnectionError, requests.Timeout, ConnectionError))


def _describe(exc: BaseException) -> str:
    status = getattr(exc, "status", None)
    if status is not None:
        return f"HTTP {status}"
    return type(exc).__name__
