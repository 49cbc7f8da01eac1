"""The instrumentation-module front door: LlamaIndex dispatcher spans and events -> spans.

LlamaIndex wraps hundreds of methods in dispatcher spans (text splitters, refine
programs, ``_query`` beside ``query``, ``predict`` around ``complete``). Exporting them
all gives an unreadable tree and doubled model calls, so every dispatcher span becomes a
*node*: a few kinds are *visible* (workflow runs and steps, tools, query and chat
engines, retrievers, synthesizers, rerankers, and any top-level call) and the rest are
transparent, their children attached to the nearest visible ancestor. Model calls and
embeddings come from the ``LLMChat*`` / ``LLMCompletion*`` / ``Embedding*`` events, one
generation per outermost model call, kept open until the stream's end event.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

from ..spans import OpenSpan, SpanKind
from ..tracing import RunTable
from .common import (
    HandlerOptions,
    TraceInfo,
    describe_error,
    log,
    new_id,
)
from .leaves import LeafEvents
from .nodes import (
    MODEL_KINDS,
    ROOTABLE,
    RUN,
    STEP,
    STEP_TAG,
    TOOL,
    VISIBLE_METHODS,
    Node,
    class_table,
    run_input,
    span_input,
    span_name,
    span_output,
    split_id,
)
from .stream import record_stream_end, wrap_response_stream

__all__ = ["InstrumentCore"]


class InstrumentCore(LeafEvents):
    """State shared by the span handler and the event handler of one ``instrument()``."""

    def __init__(self, exporter: Any, options: HandlerOptions) -> None:
        self.exporter = exporter
        self.options = options
        self.runs: RunTable[str] = RunTable()
        self.nodes: dict[str, Node] = {}
        self.lingering: dict[str, float] = {}  # roots kept open for a stream
        self._skipped: OrderedDict[str, str] = OrderedDict()  # inner model call -> outer
        self._awaiting_first: dict[int, str] = {}  # LLM instance -> its newest generation
        self._classes = class_table()
        self._kind_cache: dict[type, int] = {}
        self._warned: set[str] = set()
        self._lock = threading.Lock()
        self._roots_seen = 0
        self.events: dict[str, Callable[[Any], None]] = {
            "LLMChatStartEvent": self._on_llm_start,
            "LLMCompletionStartEvent": self._on_llm_start,
            "LLMChatInProgressEvent": self._on_llm_progress,
            "LLMCompletionInProgressEvent": self._on_llm_progress,
            "LLMChatEndEvent": self._on_llm_end,
            "LLMCompletionEndEvent": self._on_llm_end,
            "EmbeddingStartEvent": self._on_embed_start,
            "SparseEmbeddingStartEvent": self._on_embed_start,
            "EmbeddingEndEvent": self._on_embed_end,
            "SparseEmbeddingEndEvent": self._on_embed_end,
            "ExceptionEvent": self._on_exception,
            "WorkflowStepOutputEvent": self._on_step_output,
            "WorkflowRunOutputEvent": self._on_step_output,
            "SpanCancelledEvent": self._on_cancelled,
            "LLMStructuredPredictStartEvent": self._on_structured_start,
            "LLMStructuredPredictInProgressEvent": self._on_structured_progress,
            "LLMStructuredPredictEndEvent": self._on_structured_end,
        }
        self._sp_pending = ContextVar(f"posthog_llama_sp_{id(self)}", default=None)
        self._sp_open = ContextVar(f"posthog_llama_sp_open_{id(self)}", default=None)
        exporter.register_runs(self.runs)

    # -- plumbing -------------------------------------------------------------------------

    def warn(self, where: str) -> None:
        """Log a failure once per place; never raise."""
        if where not in self._warned:
            self._warned.add(where)
            log.warning(
                "posthog_callbacks: LlamaIndex instrumentation failed in %s "
                "(further failures there are not logged)",
                where,
                exc_info=True,
            )

    def _kind_of(self, instance: Any) -> int:
        """Classify an instance whose class is not in the cache yet, and cache it."""
        kind = ROOTABLE
        for base, base_kind in self._classes:
            if isinstance(instance, base):
                kind = base_kind
                break
        self._kind_cache[type(instance)] = kind
        return kind

    def _add(self, key: str, span: OpenSpan) -> None:
        evicted = self.runs.add(key, span)
        if evicted:
            self.exporter.close_runs(evicted, "too many open runs (evicted)")

    def _submit(self, span: OpenSpan, end_time: float | None = None) -> None:
        self.exporter.submit(span.finish(end_time))
        root_key = span.extra.get("root_key")
        if root_key is not None:
            self._maybe_finish_root(root_key, span.trace_id)

    def _maybe_finish_root(self, root_key: str, trace_id: str) -> None:
        """Finish a root that ended while a stream of its trace was still open."""
        root = self.runs.get(root_key)
        if root is None or "ended" not in root.extra or root.extra.get("streams"):
            return
        if self.runs.open_in_trace(trace_id) <= 1 and self.runs.pop(root_key) is root:
            self._drop_lingering(root)
            self.exporter.submit(root.finish())

    def _drop_lingering(self, root: OpenSpan) -> None:
        li_id = root.extra.get("li_id")
        if li_id is not None and self.lingering.pop(li_id, None) is not None:
            self.nodes.pop(li_id, None)

    # -- spans ----------------------------------------------------------------------------

    def span_enter(
        self, id_: str, instance: Any, parent_id: str | None, bound_args: Any, tags: Any
    ) -> None:
        # Hot path: ~15 dispatcher spans a query, most of them hidden.
        parent = self.nodes.get(parent_id) if parent_id else None
        if instance is None:
            kind = ROOTABLE
        else:
            kind = self._kind_cache.get(type(instance), -1)
            if kind < 0:
                kind = self._kind_of(instance)
        if (
            kind in MODEL_KINDS
            and self._sp_pending.get() is not None
            and (self.claim_structured_stream(id_, kind, instance))
        ):
            return
        if parent is None:
            if kind in MODEL_KINDS:
                # A direct model call: its generation (from the events) is the root.
                self.nodes[id_] = Node(None, kind, None, None, instance)
                return
            cls, method = split_id(id_)
            self._enter_root(id_, instance, kind, cls, method, bound_args, tags)
            return
        node = Node(
            parent.trace,
            kind,
            parent.vis_id or parent.parent_vis,
            parent.gen_key or parent.enclosing_gen,
            instance,
        )
        self.nodes[id_] = node
        if kind in MODEL_KINDS or (kind == ROOTABLE and instance is not None):
            return
        trace = parent.trace
        if trace is None or not trace.sampled:
            return
        cls, method = split_id(id_)
        if instance is None:
            if type(tags) is not dict or STEP_TAG not in tags:
                return
            kind = STEP  # workflow steps are wrapped as plain functions
            name = method
            payload = tags.get("llamaindex.step.input_summary")
        elif kind == RUN:
            if method != "run":
                return
            name = f"{cls}.run"
            payload = run_input(tags)
        elif method in VISIBLE_METHODS[kind]:
            if parent.instance is instance:
                return  # query -> aquery, __call__ -> call: one span per object and call
            name = span_name(kind, instance, cls, method)
            payload = span_input(kind, bound_args)
        else:
            return
        node.kind = kind
        self._open_visible(node, id_, trace, name, payload, parent.attach_to, is_root=False)

    def _enter_root(
        self, id_: str, instance: Any, kind: int, cls: str, method: str, bound_args: Any, tags: Any
    ) -> None:
        if tags is None:
            from llama_index.core.instrumentation.dispatcher import (  # type: ignore[attr-defined]
                active_instrument_tags,
            )

            tags = active_instrument_tags.get()
        trace = self.options.new_trace(self.exporter, tags)
        node = Node(trace, kind, None, None, instance)
        self.nodes[id_] = node
        self._roots_seen += 1
        if self._roots_seen % 256 == 0:
            self._purge_lingering()
        if not trace.sampled:
            return
        if kind == RUN and method == "run":
            payload = run_input(tags)
            name = f"{cls}.run"
        else:
            name = (
                span_name(kind, instance, cls, method)
                if kind in VISIBLE_METHODS
                else (f"{cls}.{method}" if cls else method)
            )
            payload = span_input(kind, bound_args)
        self._open_visible(node, id_, trace, name, payload, None, is_root=True)

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
        if is_root:
            span_id = trace.root_span_id
            parent = trace.root_parent_id
            key = trace.root_key = "root:" + span_id
        else:
            span_id = new_id()
            key = id_
        span = trace.span(
            span_id,
            parent,
            SpanKind.TRACE if parent is None else SpanKind.SPAN,
            name,
            is_root=is_root,
        )
        span.input = payload
        span.extra["li_id"] = id_
        if not is_root:
            span.extra["root_key"] = trace.root_key
        node.vis_id = span_id
        node.key = key
        self._add(key, span)

    def span_exit(self, id_: str, result: Any) -> None:
        node = self.nodes.pop(id_, None)
        if node is None or node.key is None:
            return
        span = self.runs.get(node.key)
        if span is None:
            return
        try:
            if node.kind == TOOL and getattr(result, "is_error", False) is True:
                span.error = str(getattr(result, "content", "") or "tool error")
            if "output" not in span.extra:
                span.output = span_output(node.kind, result)
        except Exception:
            self.warn("span exit")  # still ended below, with what was read
        self._end(node, span, id_, result)

    def span_drop(self, id_: str, err: BaseException | None) -> None:
        node = self.nodes.pop(id_, None)
        if node is None:
            return
        for key in (node.gen_key, "emb:" + id_):
            leaf = self.runs.pop(key) if key is not None else None
            if leaf is not None:  # a model call that raised: no end event follows
                self._mark_error(leaf, err)
                try:
                    self._first_token_seen(leaf)
                except Exception:
                    self.warn("span drop")
                self._submit(leaf)
        if node.key is None:
            return
        span = self.runs.get(node.key)
        if span is None:
            return
        if span.status != "cancelled":
            self._mark_error(span, err)
        self._end(node, span, id_, None)

    def _mark_error(self, span: OpenSpan, err: BaseException | None) -> None:
        try:
            span.error = describe_error(err)
        except Exception:
            span.error = type(err).__name__ if err is not None else "error"
            self.warn("span drop")

    def _end(self, node: Node, span: OpenSpan, id_: str, result: Any) -> None:
        key = node.key
        assert key is not None
        root_key = node.trace.root_key if node.trace is not None else None
        root = self.runs.get(root_key) if root_key is not None else None
        if root is not None and result is not None:
            try:
                self._wrap_stream(result, root)  # a stream read after this call returns
            except Exception:
                self.warn("stream wrap")
        if key.startswith("root:") and (
            span.extra.get("streams") or self.runs.open_in_trace(span.trace_id) > 1
        ):
            now = time.time()
            span.extra["ended"] = now
            self.nodes[id_] = node  # late children of the trace still resolve here
            self.lingering[id_] = now
            return
        if self.runs.pop(key) is span:
            self._submit(span)

    def _purge_lingering(self) -> None:
        with self._lock:
            for li_id in list(self.lingering):
                node = self.nodes.get(li_id)
                if (
                    node is None
                    or node.trace is None
                    or node.trace.root_key is None
                    or (self.runs.get(node.trace.root_key) is None)
                ):
                    self.lingering.pop(li_id, None)
                    self.nodes.pop(li_id, None)

    # -- streams returned to the caller -----------------------------------------------------

    def _wrap_stream(self, result: Any, root: OpenSpan) -> bool:
        """Keep the trace open while a returned token stream is read.

        The stream's model call starts lazily, often after the call returned (or in a
        chat engine's writer thread): reading it under the root's dispatcher span id makes
        LlamaIndex parent that call inside this trace.
        """
        from llama_index.core.instrumentation.span import active_span_id

        li_id = root.extra.get("li_id")

        def done(err: BaseException | None, complete: bool, text: str) -> None:
            self._stream_done(root, err, complete, text)

        if li_id is None or not wrap_response_stream(
            result, lambda: active_span_id.set(li_id), active_span_id.reset, done
        ):
            return False
        with self._lock:
            root.extra["streams"] = root.extra.get("streams", 0) + 1
        return True

    def _stream_done(
        self, root: OpenSpan, err: BaseException | None, complete: bool, text: str
    ) -> None:
        with self._lock:
            root.extra["streams"] = root.extra.get("streams", 1) - 1
        try:
            record_stream_end(root, err, complete, text)
        except Exception:
            self.warn("stream end")  # the root is still finished below
        try:
            if "ended" in root.extra:
                self._maybe_finish_root("root:" + root.span_id, root.trace_id)
        except Exception:
            self.warn("stream end")

    # -- events ---------------------------------------------------------------------------

    def handle(self, event: Any) -> None:
        handler = self.events.get(type(event).__name__)
        if handler is not None:
            handler(event)

    def _on_step_output(self, event: Any) -> None:
        node = self.nodes.get(str(event.span_id))
        if node is None or node.key is None:
            return
        span = self.runs.get(node.key)
        output = getattr(event, "output", None)
        if span is not None and output is not None and node.kind == STEP:
            span.output = output
            span.extra["output"] = True

    def _on_cancelled(self, event: Any) -> None:
        node = self.nodes.get(str(event.span_id))
        if node is not None and node.key is not None:
            span = self.runs.get(node.key)
            if span is not None:
                span.status = "cancelled"

    def close(self, reason: str) -> None:
        """Close every open run (used by ``uninstrument()``)."""
        self.exporter.close_runs(self.runs.drain(), reason)
        self.nodes.clear()
        self.lingering.clear()
