"""Where finished PostHog event dicts go: PostHog itself, a JSONL file, or memory.

A sink sees only finished, JSON-safe event dicts, so a local file holds exactly what
PostHog would have received. ``send`` is called from the exporter's worker only; it may
raise, and the exporter counts the batch as lost.
"""

from __future__ import annotations

import json
import logging
import os
import random
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

__all__ = [
    "DEFAULT_HOST",
    "JsonlSink",
    "MemorySink",
    "PosthogSink",
    "Sink",
    "SinkError",
]

DEFAULT_HOST = "https://us.i.posthog.com"
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})

log = logging.getLogger("posthog_callbacks")


class SinkError(Exception):
    """A batch could not be delivered (after retries, when the sink retries)."""


@runtime_checkable
class Sink(Protocol):
    """What the exporter needs of a destination."""

    def send(self, events: Sequence[dict[str, Any]], deadline: float | None = None) -> None:
        """Deliver ``events``; give up by ``deadline`` (``time.monotonic()``), raising."""

    def close(self) -> None:
        """Release resources; called once at exporter shutdown."""


class MemorySink:
    """Keeps every event in memory, in arrival order. For tests and notebooks."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self._lock = threading.Lock()

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


class JsonlSink:
    """Appends one JSON event per line to ``path`` (created with its parent folders).

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

    def send(self, events: Sequence[dict[str, Any]], deadline: float | None = None) -> None:
        """Append ``events`` as JSON lines."""
        lines = "".join(json.dumps(e, ensure_ascii=False, default=str) + "\n" for e in events)
        with self._lock, self.path.open("a", encoding="utf-8") as fh:
            fh.write(lines)

    def close(self) -> None:
        """Nothing held open between batches."""

    def __repr__(self) -> str:
        return f"JsonlSink({str(self.path)!r})"


PostFn = Callable[..., Any]


def _default_post() -> PostFn:
    from posthog.request import batch_post

    return batch_post


def _reset_sdk_sessions() -> None:
    # A forked child must not write on the parent's pooled keep-alive connections (both
    # processes would read each other's responses). posthog.Client does this for its own
    # users; a PosthogSink built from an API key has no Client, so do it here.
    request = sys.modules.get("posthog.request")
    reset = getattr(request, "reset_sessions", None)
    if callable(reset):
        try:
            reset()
        except Exception:  # pragma: no cover - never fail a fork
            pass


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_sdk_sessions)


def _ai_endpoint() -> str:
    try:
        from posthog.request import AI_EVENTS_ENDPOINT

        return str(AI_EVENTS_ENDPOINT)
    except ImportError:  # an SDK without the AI lane: the classic batch endpoint
        return "/batch/"


class PosthogSink:
    """Sends batches to PostHog's capture API through the ``posthog`` SDK.

    Uses the SDK's own batch poster (``posthog.request.batch_post``, gzip) on the dedicated
    AI endpoint (``/i/v0/ai/batch/``, 8 MiB per event); the exporter does the batching and
    this sink the retries: 408, 429 (honouring ``Retry-After``), 5xx and network errors,
    with exponential backoff and jitter, within ``max_retries`` and the caller's deadline.

    Args:
        api_key: Project API key (``phc_...``).
        host: Ingestion host, e.g. ``https://eu.i.posthog.com`` or a self-hosted URL.
        client: An existing ``posthog.Posthog`` client whose key, host, gzip and timeout
            settings are reused; its ``disabled`` and ``send=False`` settings and its
            ``before_send`` hook are honoured.
        timeout: Seconds per HTTP request.
        max_retries: Retries per batch after the first attempt.
        gzip: Compress request bodies.
        post: The function that performs one request (injectable for tests); defaults to
            ``posthog.request.batch_post``.
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
        backoff_max: float = 30.0,
    ) -> None:
        self.client = client
        if client is not None:
            api_key = api_key or getattr(client, "api_key", None)
            host = host or getattr(client, "host", None)
            gzip = bool(getattr(client, "gzip", gzip) or gzip)
            client_timeout = getattr(client, "timeout", None)
            if isinstance(client_timeout, (int, float)) and client_timeout > 0:
                timeout = float(client_timeout)
        if not api_key:
            raise ValueError(
                "PosthogSink needs a project API key: pass api_key=... or set POSTHOG_API_KEY"
            )
        self.api_key = api_key
        self.host = (host or DEFAULT_HOST).rstrip("/")
        self.timeout = timeout
        self.max_retries = max(0, max_retries)
        self.gzip = gzip
        self.endpoint = _ai_endpoint()
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self._post = post or _default_post()
        self.requests = 0
        self.retries = 0
        self.dropped_by_before_send = 0
        self.max_concurrent_sends = 2
        self._count_lock = threading.Lock()  # two senders update the counters at once

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

    def send(self, events: Sequence[dict[str, Any]], deadline: float | None = None) -> None:
        """Post ``events`` as one batch, retrying transient failures until ``deadline``.

        Raises:
            SinkError: The batch was rejected or could not be delivered in time.
        """
        if not events or self.disabled:
            return
        batch = self._before_send(events)
        if not batch:
            return
        attempt = 0
        while True:
            attempt += 1
            with self._count_lock:
                self.requests += 1
            timeout = self.timeout
            if deadline is not None:
                timeout = max(0.1, min(timeout, deadline - time.monotonic()))
            try:
                self._post(
                    self.api_key,
                    self.host,
                    gzip=self.gzip,
                    timeout=timeout,
                    path=self.endpoint,
                    batch=batch,
                )
                return
            except Exception as exc:
                status = getattr(exc, "status", None)
                retryable = _is_retryable(exc, status)
                if not retryable or attempt > self.max_retries:
                    raise SinkError(
                        f"batch of {len(batch)} events not delivered "
                        f"after {attempt} attempt(s): {_describe(exc)}"
                    ) from exc
                delay = self._delay(attempt, getattr(exc, "retry_after", None))
                if deadline is not None and time.monotonic() + delay >= deadline:
                    raise SinkError(
                        f"batch of {len(batch)} events not delivered before the "
                        f"deadline: {_describe(exc)}"
                    ) from exc
                with self._count_lock:
                    self.retries += 1
                log.debug("posthog_callbacks: retrying batch in %.2fs (%s)", delay, _describe(exc))
                time.sleep(delay)

    def _delay(self, attempt: int, retry_after: Any) -> float:
        if isinstance(retry_after, (int, float)) and retry_after > 0:
            return float(min(retry_after, 60.0))
        backoff = min(self.backoff_max, self.backoff_base * (2 ** (attempt - 1)))
        return float(backoff * (0.5 + random.random() / 2))

    def close(self) -> None:
        """Nothing held open: the SDK's pooled session is shared."""

    def __repr__(self) -> str:
        return f"PosthogSink(host={self.host!r})"


def _is_retryable(exc: BaseException, status: Any) -> bool:
    if isinstance(status, int):
        return status in RETRY_STATUSES
    if isinstance(status, str):  # the SDK uses "N/A" for unparseable responses
        return True
    try:
        import requests

        return isinstance(exc, (requests.ConnectionError, requests.Timeout))
    except ImportError:  # pragma: no cover - requests ships with posthog
        return isinstance(exc, (ConnectionError, TimeoutError))


def _describe(exc: BaseException) -> str:
    status = getattr(exc, "status", None)
    if status is not None:
        return f"HTTP {status}"
    return type(exc).__name__
