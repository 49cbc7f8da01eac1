"""Process-wide LangChain instrumentation through langchain-core's configure hooks."""

from __future__ import annotations

import logging
import threading
from contextvars import ContextVar
from typing import Any

from langchain_core.tracers import context as lc_context

from .handler import CallbackHandler

__all__ = ["InstrumentHandle", "instrument", "uninstrument"]

log = logging.getLogger(__name__)
_lock = threading.Lock()
_handles: list[InstrumentHandle] = []


class _InstrumentedHandler(CallbackHandler):
    """The handler :func:`instrument` attaches to every run.

    An explicit ``CallbackHandler`` on the same exporter among a run's callbacks records
    that run instead (its options win); together they still record each run once.
    """

    steps_aside = True


class InstrumentHandle:
    """An active :func:`instrument` call; :meth:`uninstrument` detaches its handler.

    Attributes:
        handler: The ``CallbackHandler`` attached to every LangChain run.
    """

    def __init__(self, handler: Any, var: ContextVar[Any]) -> None:
        self.handler = handler
        self._var = var
        self.active = True

    def uninstrument(self) -> None:
        """Stop attaching the handler to new runs (runs in flight still finish)."""
        with _lock:
            if not self.active:
                return
            self.active = False
            hooks: list[Any] = getattr(lc_context, "_configure_hooks", [])
            for hook in list(hooks):
                if hook[0] is self._var:
                    hooks.remove(hook)
            if self in _handles:
                _handles.remove(self)
        # If langchain-core ever stops letting us remove the hook, the handler goes quiet.
        self.handler.disabled = True


def instrument(exporter: Any = None, **options: Any) -> InstrumentHandle:
    """Attach one ``CallbackHandler`` to every LangChain run in the process.

    Uses langchain-core's ``register_configure_hook`` with a context variable whose default
    is the handler, so runs on any thread or task pick it up. Each run is still recorded
    once per exporter: when an explicit ``CallbackHandler`` on the same exporter is among a
    run's callbacks, that handler records the run (with its own options) instead.

    Args:
        exporter: A ``PosthogExporter`` or ``posthog.Posthog`` client.
        **options: ``CallbackHandler`` options (``distinct_id``, ``privacy_mode``, ...).

    Returns:
        A handle whose ``uninstrument()`` detaches the handler.
    """
    handler = _InstrumentedHandler(exporter, **options)
    var: ContextVar[Any] = ContextVar(f"posthog_callbacks_langchain_{id(handler)}", default=handler)
    handle = InstrumentHandle(handler, var)
    with _lock:
        if any(h.handler.exporter is handler.exporter for h in _handles):
            log.warning(
                "posthog_callbacks: langchain.instrument() called again for the same "
                "exporter: runs are still recorded once, with the first call's options; "
                "call uninstrument() first to change them"
            )
        lc_context.register_configure_hook(var, True)
        _handles.append(handle)
    return handle


def uninstrument() -> None:
    """Detach every handler attached by :func:`instrument`."""
    with _lock:
        handles = list(_handles)
    for handle in handles:
        handle.uninstrument()
