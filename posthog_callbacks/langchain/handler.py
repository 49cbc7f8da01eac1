"""The LangChain callback handler that records runs as parent-linked spans.

Pass ``CallbackHandler(exporter)`` in ``config={"callbacks": [...]}`` of any runnable,
chain, agent or LangGraph graph, or call :func:`instrument` once to attach one handler to
every LangChain run in the process.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any
from uuid import UUID

from langchain_core.callbacks.base import BaseCallbackHandler

from ..spans import OpenSpan, SpanKind
from ..usage import PROVIDER_ALIASES, normalize_provider
from . import convert as cv
from . import model as lm
from .core import (
    HandlerCore,
    error_outcome,
    model_name_from_params,
    provider_for,
)

_KNOWN_PROVIDERS = frozenset(PROVIDER_ALIASES.values())

__all__ = ["CallbackHandler"]


class CallbackHandler(HandlerCore, BaseCallbackHandler):
    """Records LangChain runs (chains, models, tools, retrievers) as PostHog ``$ai_*`` events.

    One instance may serve many concurrent invocations: parent links come only from
    ``run_id`` / ``parent_run_id`` through a thread-safe run table. Callbacks never raise
    into the caller and do only cheap work on its thread; translation and I/O happen on
    the exporter's worker.

    Args:
        exporter: A :class:`~posthog_callbacks.PosthogExporter`, or a ``posthog.Posthog``
            client (wrapped as ``PosthogExporter(sink=client)``). ``None`` builds an
            exporter from the environment (``POSTHOG_API_KEY``).
        client: Alias of ``exporter`` for a ``posthog.Posthog`` client, matching
            ``posthog.ai.langchain.CallbackHandler(client=...)``.
        distinct_id: The user every trace belongs to, unless run metadata says otherwise
            (``user_id`` / ``userId``).
        session_id: Session of every trace, unless run metadata (``session_id`` /
            ``sessionId``) or LangGraph's ``thread_id`` gives one.
        trace_id: A fixed trace id for every run recorded by this handler.
        trace_name: Name of the trace root, instead of the root run's name.
        properties: Extra properties on every event.
        groups: PostHog groups of every event.
        tags: Tags added to every event (``{tag: true}``).
        privacy_mode: Send no inputs or outputs.
    """

    run_inline = True
    raise_error = False

    def __init__(
        self,
        exporter: Any = None,
        *,
        client: Any = None,
        distinct_id: Any = None,
        session_id: Any = None,
        trace_id: Any = None,
        trace_name: str | None = None,
        properties: Mapping[str, Any] | None = None,
        groups: Mapping[str, Any] | None = None,
        tags: Sequence[str] | None = None,
        privacy_mode: bool = False,
    ) -> None:
        BaseCallbackHandler.__init__(self)
        HandlerCore.__init__(
            self,
            exporter if exporter is not None else client,
            distinct_id=distinct_id,
            session_id=session_id,
            trace_id=trace_id,
            trace_name=trace_name,
            properties=properties,
            groups=groups,
            tags=tags,
            privacy_mode=privacy_mode,
        )

    # -- chains -------------------------------------------------------------------

    def on_chain_start(
        self,
        serialized: dict[str, Any] | None,
        inputs: Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """Open a chain span (the trace root when it has no parent)."""
        try:
            self._start(
                run_id,
                parent_run_id,
                SpanKind.SPAN,
                self._name(serialized, kwargs, "chain"),
                cv.plain(inputs),
                tags,
                metadata,
            )
        except Exception as exc:
            self._failed("on_chain_start", exc)

    def on_chain_end(
        self, outputs: Any, *, run_id: UUID, parent_run_id: UUID | None = None, **kwargs: Any
    ) -> None:
        """Close a chain span; streaming chains report their real inputs here."""
        self._end_ok("on_chain_end", run_id, outputs, kwargs.get("inputs"))

    def on_chain_error(
        self,
        error: BaseException,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        """Close a chain span as failed (or interrupted / cancelled: not an error)."""
        self._end_error("on_chain_error", run_id, error, kwargs.get("inputs"))

    # -- models -------------------------------------------------------------------

    def on_chat_model_start(
        self,
        serialized: dict[str, Any] | None,
        messages: list[list[Any]],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """Open a generation span for a chat model call."""
        try:
            self._start_model(
                serialized,
                cv.messages_input(messages),
                run_id,
                parent_run_id,
                tags,
                metadata,
                kwargs,
            )
        except Exception as exc:
            self._failed("on_chat_model_start", exc)

    def on_llm_start(
        self,
        serialized: dict[str, Any] | None,
        prompts: list[str],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """Open a generation span for a text-completion model call."""
        try:
            self._start_model(
                serialized,
                [{"role": "user", "content": p} for p in prompts],
                run_id,
                parent_run_id,
                tags,
                metadata,
                kwargs,
            )
        except Exception as exc:
            self._failed("on_llm_start", exc)

    def _start_model(
        self,
        serialized: dict[str, Any] | None,
        input_: Any,
        run_id: UUID,
        parent_run_id: UUID | None,
        tags: list[str] | None,
        metadata: dict[str, Any] | None,
        kwargs: dict[str, Any],
    ) -> None:
        span = self._start(
            run_id,
            parent_run_id,
            SpanKind.GENERATION,
            self._name(serialized, kwargs, "generation"),
            input_,
            tags,
            metadata,
        )
        if span is None:
            return
        params = kwargs.get("invocation_params")
        if not isinstance(params, dict):
            params = None
        md = metadata or {}
        span.model = md.get("ls_model_name") or model_name_from_params(params)
        span.provider = provider_for(md.get("ls_provider"), serialized)
        span.model_parameters = lm.extract_model_parameters(params, md)
        if params is not None:
            tools = params.get("tools")
            if tools:
                span.tools = lm.tools_to_openai(tools)
        span.base_url = lm.base_url_from_serialized(serialized)

    def on_llm_new_token(self, token: Any, *, run_id: UUID, **kwargs: Any) -> None:
        """Record the time of the first streamed token."""
        try:
            span = self._runs.get(run_id)
            if span is not None and span.first_token_time is None:
                span.first_token_time = time.time()
        except Exception as exc:
            self._failed("on_llm_new_token", exc)

    def on_stream_event(self, event: Any, *, run_id: UUID, **kwargs: Any) -> None:
        """``stream_events(version="v3")``: the first content event is the first token."""
        try:
            span = self._runs.get(run_id)
            if (
                span is not None
                and span.first_token_time is None
                and isinstance(event, dict)
                and event.get("event") in ("content-block-start", "content-block-delta")
            ):
                span.first_token_time = time.time()
        except Exception as exc:
            self._failed("on_stream_event", exc)

    def on_llm_end(
        self, response: Any, *, run_id: UUID, parent_run_id: UUID | None = None, **kwargs: Any
    ) -> None:
        """Close a generation span with output, served model, usage and stop reason."""
        span = None
        try:
            span = self._take(run_id)
            if span is None:
                return
            self._finish_generation(span, response)
            self._submit(span)
        except Exception as exc:
            self._failed("on_llm_end", exc)
            self._rescue(span)

    def _finish_generation(self, span: OpenSpan, response: Any) -> None:
        gens = cv.generations(response)
        span.output = cv.response_output(gens)
        llm_output = getattr(response, "llm_output", None)
        served = lm.extract_served_model(gens, llm_output)
        if served:
            span.model = served
        if span.provider not in _KNOWN_PROVIDERS:
            # ls_provider defaults to the lowercased class name for integrations that do
            # not set it; the response's model_provider says more.
            hint = normalize_provider(lm.extract_provider_hint(gens))
            if hint is not None:
                span.provider = hint
        usage = lm.extract_usage(gens, llm_output)
        params = span.model_parameters
        if span.first_token_time is not None and (
            params is None or params.get("stream") is not True
        ):
            # .stream() on a model whose `streaming` field is False still streams
            span.model_parameters = {**(params or {}), "stream": True}
        if usage is None:
            span.usage_missing_reason = self._usage_missing_reason(span)
        else:
            span.usage = usage
        span.stop_reason = lm.extract_stop_reason(gens)

    @staticmethod
    def _usage_missing_reason(span: OpenSpan) -> str:
        streaming = bool((span.model_parameters or {}).get("stream"))
        if span.provider == "openai" and streaming:
            return (
                "OpenAI streams report usage only when asked: pass stream_usage=True to "
                "ChatOpenAI (or model_kwargs={'stream_options': {'include_usage': True}})"
            )
        if (
            span.base_url
            and span.provider in ("openai", "azure")
            and "openai.com" not in (span.base_url)
        ):
            return (
                f"the OpenAI-compatible server at {span.base_url} returned no usage; "
                "enable usage reporting on that server, or stream_usage=True"
            )
        if streaming:
            return (
                "the streamed response carried no usage; enable usage reporting for "
                "streams on the model (e.g. stream_usage=True)"
            )
        return "the provider response carried no token usage"

    def on_llm_error(
        self,
        error: BaseException,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        """Close a generation span as failed, with the provider's HTTP status."""
        try:
            span = self._runs.get(run_id)
            if span is not None:
                span.http_status = lm.http_status(error)
        except Exception as exc:
            self._failed("on_llm_error", exc)
        self._end_error("on_llm_error", run_id, error, None)

    # -- tools and retrievers -------------------------------------------------------

    def on_tool_start(
        self,
        serialized: dict[str, Any] | None,
        input_str: str,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        inputs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """Open a tool span; structured ``inputs`` win over ``input_str``."""
        try:
            self._start(
                run_id,
                parent_run_id,
                SpanKind.SPAN,
                self._name(serialized, kwargs, "tool"),
                cv.plain(inputs) if inputs is not None else input_str,
                tags,
                metadata,
            )
        except Exception as exc:
            self._failed("on_tool_start", exc)

    def on_tool_end(self, output: Any, *, run_id: UUID, **kwargs: Any) -> None:
        """Close a tool span (a ``ToolMessage`` output becomes a tool message dict)."""
        self._end_ok("on_tool_end", run_id, output)

    def on_tool_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        """Close a tool span as failed."""
        self._end_error("on_tool_error", run_id, error, None)

    def on_retriever_start(
        self,
        serialized: dict[str, Any] | None,
        query: str,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """Open a retriever span."""
        try:
            self._start(
                run_id,
                parent_run_id,
                SpanKind.SPAN,
                self._name(serialized, kwargs, "retriever"),
                query,
                tags,
                metadata,
            )
        except Exception as exc:
            self._failed("on_retriever_start", exc)

    def on_retriever_end(self, documents: Sequence[Any], *, run_id: UUID, **kwargs: Any) -> None:
        """Close a retriever span with its documents."""
        self._end_ok("on_retriever_end", run_id, documents)

    def on_retriever_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        """Close a retriever span as failed."""
        self._end_error("on_retriever_error", run_id, error, None)

    # -- point events -------------------------------------------------------------------

    def on_custom_event(
        self,
        name: str,
        data: Any,
        *,
        run_id: UUID,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """A ``dispatch_custom_event`` becomes an instant span under the run that sent it."""
        try:
            self._point(run_id, str(name), cv.plain(data), None)
        except Exception as exc:
            self._failed("on_custom_event", exc)

    def on_agent_action(self, action: Any, *, run_id: UUID, **kwargs: Any) -> None:
        """An agent's decision to call a tool, as an instant span under the agent run."""
        try:
            self._point(
                run_id,
                f"agent_action: {getattr(action, 'tool', '?')}",
                {
                    "tool": getattr(action, "tool", None),
                    "tool_input": cv.plain(getattr(action, "tool_input", None)),
                    "log": getattr(action, "log", None),
                },
                None,
            )
        except Exception as exc:
            self._failed("on_agent_action", exc)

    def on_agent_finish(self, finish: Any, *, run_id: UUID, **kwargs: Any) -> None:
        """An agent's final answer, as an instant span under the agent run."""
        try:
            self._point(
                run_id,
                "agent_finish",
                getattr(finish, "log", None),
                cv.plain(getattr(finish, "return_values", None)),
            )
        except Exception as exc:
            self._failed("on_agent_finish", exc)

    def on_retry(self, retry_state: Any, *, run_id: UUID, **kwargs: Any) -> None:
        """Count retries of a run (``retries`` property of its event)."""
        try:
            span = self._runs.get(run_id)
            if span is not None:
                span.extra["retries"] = span.extra.get("retries", 0) + 1
        except Exception as exc:
            self._failed("on_retry", exc)

    # -- shared endings -----------------------------------------------------------------

    def _take(self, run_id: UUID, inputs: Any = None) -> OpenSpan | None:
        """Remove the ending run from the table; streaming runs report real inputs here."""
        span = self._runs.pop(run_id)
        if span is None:
            self._forget(run_id)  # a run of a trace that was not sampled
        elif inputs is not None:
            span.input = cv.plain(inputs)
        return span

    def _end_ok(self, callback: str, run_id: UUID, output: Any, inputs: Any = None) -> None:
        span = None
        try:
            span = self._take(run_id, inputs)
            if span is None:
                return
            span.output = cv.plain(output)
            self._submit(span)
        except Exception as exc:
            self._failed(callback, exc)
            self._rescue(span)

    def _end_error(self, callback: str, run_id: UUID, error: BaseException, inputs: Any) -> None:
        span = None
        try:
            span = self._take(run_id, inputs)
            if span is None:
                return
            span.status, span.error = error_outcome(error)
            if span.status == "interrupted":
                self._mark_ancestors(span, "interrupted")
            self._submit(span)
        except Exception as exc:
            self._failed(callback, exc)
            self._rescue(span)

    def _point(self, run_id: UUID, name: str, input_: Any, output: Any) -> None:
        parent = self._runs.get(run_id)
        if parent is None:
            return
        now = time.time()
        span = OpenSpan(
            trace_id=parent.trace_id,
            span_id=str(uuid.uuid4()),
            parent_id=parent.span_id,
            kind=SpanKind.SPAN,
            name=name,
            start_time=now,
            framework="langchain",
            input=input_,
            output=output,
            distinct_id=parent.distinct_id,
            session_id=parent.session_id,
            metadata=parent.metadata,
            properties=parent.properties,
            groups=parent.groups,
            tags=parent.tags,
            privacy_mode=parent.privacy_mode,
        )
        self._exporter.submit(span.finish(now))
