"""LlamaIndex -> PostHog: a callback-manager handler and an instrumentation hook.

Two front doors feed the same exporter:

* :class:`CallbackHandler` for LlamaIndex's callback manager
  (``Settings.callback_manager = CallbackManager([CallbackHandler(exporter)])``): query,
  retrieve, synthesize, LLM, embedding, tool and agent-step events.
* :func:`instrument` for the instrumentation module (the root dispatcher): everything
  the callback manager sees plus workflows, agents (``FunctionAgent``, ``ReActAgent``,
  ``AgentWorkflow``), workflow steps and tool calls. Prefer it for new code.

One door is enough. When both record into one exporter, the callback handler steps
aside and every model call is recorded once, by :func:`instrument`.
:func:`trace_context` attributes the calls made inside a block to a user or session.

Example:
    >>> from posthog_callbacks import PosthogExporter  # doctest: +SKIP
    >>> from posthog_callbacks.llama_index import instrument, trace_context
    >>> exporter = PosthogExporter()
    >>> handle = instrument(exporter, tags=["rag"])
    >>> with trace_context(user_id="u1", session_id="s1"):
    ...     index.as_query_engine().query("What did the author do?")
    >>> handle.uninstrument()
"""

from __future__ import annotations

try:
    import llama_index.core  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised without the extra installed
    raise ImportError(
        "posthog_callbacks.llama_index needs LlamaIndex: "
        'pip install "posthog-callbacks[llama-index]"'
    ) from exc

from .callback import CallbackHandler
from .instrument import InstrumentHandle, instrument
from .trace import trace_context

__all__ = ["CallbackHandler", "InstrumentHandle", "instrument", "trace_context"]
