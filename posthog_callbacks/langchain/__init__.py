"""LangChain front door: a callback handler that records runs as parent-linked spans.

Pass ``CallbackHandler(exporter)`` in ``config={"callbacks": [...]}`` of any runnable,
chain, agent or LangGraph graph, or call :func:`instrument` once to attach one handler to
every LangChain run in the process.
"""

from __future__ import annotations

try:
    import langchain_core  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "posthog_callbacks.langchain needs langchain-core: "
        'pip install "posthog-callbacks[langchain]"'
    ) from exc

from .handler import CallbackHandler
from .instrument import InstrumentHandle, instrument, uninstrument

__all__ = ["CallbackHandler", "InstrumentHandle", "instrument", "uninstrument"]
