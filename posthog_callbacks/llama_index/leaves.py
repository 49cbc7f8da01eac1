"""Model calls and embeddings of the instrumentation front door (a mixin of its core).

Generations come from ``LLMChat*`` / ``LLMCompletion*`` events and embeddings from
``Embedding*`` events, keyed by the dispatcher span that emitted them, so a stream's
later progress and end events find them after that span has closed. Structured
prediction (``LLMStructuredPredict*`` events) is a ``structured_predict <OutputCls>`` span
around the one model call it makes.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from contextvars import ContextVar
from typing import Any

from ..spans import OpenSpan, SpanKind, snapshot
from ..tracing import RunTable
from .common import HandlerOptions, TraceInfo, describe_error, new_id
from .extract import (
    base_url_of,
    fill_embedding,
    fill_generation,
    messages_to_dicts,
    model_and_provider,
    model_parameters,
    response_fields,
    tools_of,
)
from .nodes import LLM, Node, split_id

__all__ = ["LeafEvents"]


class LeafEvents:
    """Event handlers for model calls and embeddings; mixed into ``InstrumentCore``."""

    exporter: Any
    options: HandlerOptions
    runs: RunTable[str]
    nodes: dict[str, Node]
    _lock: threading.Lock
    _skipped: OrderedDict[str, str]  # inner model call -> the outer one it is part of
    _awaiting_first: dict[int, str]  # LLM instance -> its newest generation
    # A streaming structured prediction of this task or thread: (run key, trace, span id)
    # until its model call claims it, and its run key until its end event.
    _sp_pending: ContextVar[tuple[str, TraceInfo, str] | None]
    _sp_open: ContextVar[str | None]

    def _add(self, key: str, span: OpenSpan) -> None:
        raise NotImplementedError

    def _submit(self, span: OpenSpan, end_time: float | None = None) -> None:
        raise NotImplementedError

    def warn(self, where: str) -> None:
        raise NotImplementedError

    def _open_visible(
        self,
        node: Node,
        id_: str,
        trace: TraceInfo,
        name: str,
        payload: Any,
        parent: str | None,
        *,
        is_root: bool,
    ) -> None:
        raise NotImplementedError

    def _place_leaf(
        self, node: Node | None, hints: Any = None
    ) -> tuple[TraceInfo, str, str | None] | None:
        """Trace, span id and parent of a model call or embedding at ``node``."""
        trace = node.trace if node is not None else None
        parent = node.parent_vis if node is not None else None
        if trace is None:
            trace = self.options.new_trace(self.exporter, hints)
            if node is not None:
                node.trace = trace
            if not trace.sampled:
                return None
            return trace, trace.root_span_id, trace.root_parent_id
        if not trace.sampled:
            return None
        return trace, new_id(), parent or trace.root_span_id

    def _on_llm_start(self, event: Any) -> None:
        li_id = event.span_id
        node = self.nodes.get(li_id) if li_id else None
        if (
            node is not None
            and node.enclosing_gen is not None
            and self.runs.get(node.enclosing_gen) is not None
        ):
            self._skip(li_id, node.enclosing_gen)  # chat() -> complete(): one generation
            return
        instance = node.instance if node is not None else None
        if type(instance).__name__ == "StructuredLLM":
            return  # as_structured_llm(): its structured_predict span holds the model call
        is_chat = type(event).__name__ == "LLMChatStartEvent"
        if is_chat:
            messages = messages_to_dicts(event.messages)
        else:
            messages = [{"role": "user", "content": getattr(event, "prompt", None)}]
        if instance is not None:
            # CustomLLM.astream_complete() returns a generator that calls stream_complete()
            # only when read, outside the outer call's span: same model, same input, no
            # token yet -> the same model call.
            outer_key = self._awaiting_first.get(id(instance))
            outer = self.runs.get(outer_key) if outer_key is not None else None
            if outer is not None and outer.first_token_time is None and outer.input == messages:
                self._skip(li_id, outer_key)  # type: ignore[arg-type]
                return
        placed = self._place_leaf(node, getattr(event, "tags", None))
        if placed is None:
            return
        trace, span_id, parent = placed
        model_dict = getattr(event, "model_dict", None)
        model, provider = model_and_provider(model_dict, instance)
        name = model or (type(instance).__name__ if instance is not None else "llm")
        span = trace.span(
            span_id,
            parent,
            SpanKind.GENERATION,
            f"{name}.chat" if is_chat else f"{name}.complete",
            is_root=parent is None,
        )
        span.model = model
        span.provider = provider
        kwargs = getattr(event, "additional_kwargs", None)
        span.input = messages
        span.model_parameters = model_parameters(model_dict, kwargs, instance)
        span.tools = tools_of(kwargs)
        if instance is not None:
            span.base_url = base_url_of(instance)
        key = "gen:" + (li_id or span_id)
        span.extra["root_key"] = trace.root_key
        span.extra["li_id"] = li_id or span_id
        if node is not None:
            node.gen_key = key
        if instance is not None:
            if len(self._awaiting_first) > 10_000:
                self._awaiting_first.clear()
            self._awaiting_first[id(instance)] = key
            span.extra["instance_id"] = id(instance)
        self._add(key, span)

    def _skip(self, li_id: str | None, outer_key: str) -> None:
        """Remember that the model call at ``li_id`` is part of the one at ``outer_key``."""
        if li_id is None:
            return
        with self._lock:
            self._skipped[li_id] = outer_key
            if len(self._skipped) > 10_000:
                self._skipped.popitem(last=False)

    def _first_token_seen(self, span: OpenSpan) -> None:
        instance_id = span.extra.get("instance_id")
        if instance_id is not None and self._awaiting_first.get(instance_id) == (
            "gen:" + str(span.extra.get("li_id"))
        ):
            self._awaiting_first.pop(instance_id, None)

    def _on_llm_progress(self, event: Any) -> None:
        span = self.runs.get("gen:" + str(event.span_id))
        if span is not None and span.first_token_time is None:
            span.first_token_time = time.time()
            self._first_token_seen(span)
            if span.model_parameters is None or "stream" not in span.model_parameters:
                span.model_parameters = {**(span.model_parameters or {}), "stream": True}

    def _on_llm_end(self, event: Any) -> None:
        li_id = str(event.span_id)
        span = self.runs.pop("gen:" + li_id)
        response = getattr(event, "response", None)
        if span is None:
            outer_key = self._skipped.pop(li_id, None)
            outer = self.runs.get(outer_key) if outer_key is not None else None
            if outer is not None and outer.usage is None and response is not None:
                outer.extra["inner_usage"] = response_fields(response, outer.provider)[0]
            return
        try:
            self._first_token_seen(span)
            fill_generation(span, response, type(event).__name__ == "LLMChatEndEvent")
        except Exception:
            self.warn("LLM end")  # still sent below, with what was read
        self._submit(span)

    def _on_embed_start(self, event: Any) -> None:
        li_id = event.span_id
        node = self.nodes.get(li_id) if li_id else None
        placed = self._place_leaf(node, getattr(event, "tags", None))
        if placed is None:
            return
        trace, span_id, parent = placed
        model_dict = getattr(event, "model_dict", None)
        model, provider = model_and_provider(model_dict, node.instance if node else None)
        span = trace.span(
            span_id,
            parent,
            SpanKind.EMBEDDING,
            f"{model or 'embedding'}.embed",
            is_root=parent is None,
        )
        span.model = model
        span.provider = provider
        span.extra["root_key"] = trace.root_key
        self._add("emb:" + str(li_id or span_id), span)

    def _on_embed_end(self, event: Any) -> None:
        span = self.runs.pop("emb:" + str(event.span_id))
        if span is None:
            return
        try:
            fill_embedding(span, getattr(event, "chunks", None))
        except Exception:
            self.warn("embedding end")  # still sent below, with what was read
        self._submit(span)

    def _on_exception(self, event: Any) -> None:
        li_id = str(event.span_id)
        exc = getattr(event, "exception", None)
        for key in ("gen:" + li_id, "emb:" + li_id):
            span = self.runs.pop(key)
            if span is None:
                continue
            try:
                self._first_token_seen(span)
                if isinstance(exc, GeneratorExit):
                    span.status = "abandoned"
                    span.usage_missing_reason = "the stream was closed before its end"
                else:
                    span.error = describe_error(exc)
            except Exception:
                span.error = span.error or "error"
                self.warn("exception event")
            self._submit(span)

    # -- structured prediction ------------------------------------------------------------

    def _on_structured_start(self, event: Any) -> None:
        """Open a ``structured_predict <OutputCls>`` span around the model call it makes."""
        li_id = event.span_id
        node = self.nodes.get(li_id) if li_id else None
        streaming = (
            node is None
            or node.kind != LLM
            or node.key is not None
            or split_id(li_id)[1] not in ("structured_predict", "astructured_predict")
        )
        if streaming:
            # (a)stream_structured_predict starts when first read, after its dispatcher
            # span closed: the event carries the reader's span, or none.
            node = Node(
                node.trace if node is not None else None,
                LLM,
                node.attach_to if node is not None else None,
                None,
                None,
            )
        assert node is not None
        trace = node.trace
        is_root = trace is None
        if trace is None:
            trace = self.options.new_trace(self.exporter, getattr(event, "tags", None))
            node.trace = trace
        if not trace.sampled:
            return
        output_cls = getattr(event, "output_cls", None)
        cls_name = getattr(output_cls, "__name__", None) or type(output_cls).__name__
        template = getattr(event, "template", None)
        payload: dict[str, Any] = {"template_args": snapshot(getattr(event, "template_args", None))}
        text = getattr(template, "template", None)
        messages = getattr(template, "message_templates", None)
        if isinstance(text, str):
            payload["template"] = text
        elif isinstance(messages, list):
            payload["messages"] = messages_to_dicts(messages)
        key_id = li_id if not streaming else "sp:" + new_id()
        self._open_visible(
            node,
            key_id,
            trace,
            f"structured_predict {cls_name}",
            payload,
            None if is_root else node.parent_vis or trace.root_span_id,
            is_root=is_root,
        )
        assert node.key is not None and node.vis_id is not None
        span = self.runs.get(node.key)
        if span is not None:
            span.extra["structured"] = True
            span.extra["sp_key"] = node.key
            span.extra["sp_stream"] = streaming
        if streaming:
            self._sp_pending.set((node.key, trace, node.vis_id))
            self._sp_open.set(node.key)

    def claim_structured_stream(self, id_: str, kind: int, instance: Any) -> bool:
        """Put the model call of a streaming structured prediction under its span."""
        pending = self._sp_pending.get()
        if pending is None or kind != LLM or type(instance).__name__ == "StructuredLLM":
            return False
        self._sp_pending.set(None)
        key, trace, span_id = pending
        if self.runs.get(key) is None:
            return False
        self.nodes[id_] = Node(trace, LLM, span_id, None, instance)
        return True

    def _structured_span(self, event: Any) -> OpenSpan | None:
        node = self.nodes.get(str(event.span_id)) if event.span_id else None
        key = node.key if node is not None else None
        span = self.runs.get(key) if key is not None else None
        if span is not None and span.extra.get("structured"):
            return span
        key = self._sp_open.get()
        return self.runs.get(key) if key is not None else None

    def _on_structured_progress(self, event: Any) -> None:
        span = self._structured_span(event)
        if span is not None:
            span.output = getattr(event, "output", None)  # the newest partial object

    def _on_structured_end(self, event: Any) -> None:
        span = self._structured_span(event)
        if span is None:
            return
        try:
            output = getattr(event, "output", None)
            copy = getattr(output, "model_copy", None)
            span.output = copy() if callable(copy) else output  # the caller may change it
            span.extra["output"] = True
        except Exception:
            self.warn("structured predict end")  # still ended, with what was read
        if not span.extra.get("sp_stream"):
            return  # ends with its dispatcher span
        self._sp_open.set(None)
        if self.runs.pop(span.extra["sp_key"]) is span:
            self._submit(span)
