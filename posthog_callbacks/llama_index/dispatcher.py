"""The instrumentation-module front door: LlamaIndex dispatcher spans and events -> spans.

LlamaIndex wraps hundreds of methods in dispatcher spans (text splitters, refine
programs, ``_query`` beside ``query``, ``predict`` around ``complete``). Exporting them
all gives an unreadable tree and doubled model calls, so every dispatcher span becomes a
*node*: a few kinds are *visible* (workflow runs and steps, tools, query and chat
engines, retrievers, synthesizers, rerankers, batch embedding calls and any top-level
call) and the rest are transparent, their children attached to the nearest visible
ancestor.

Model calls and embeddings come from the ``LLMChat*`` / ``LLMCompletion*`` /
``Embedding*`` events, keyed by the dispatcher span that emitted them, so a stream's
later progress and end events find them after that span has closed: one generation per
outermost model call, kept open until the stream's end event, and one embedding per
embedding call (a batch call fires several start events, then their end events in the
same order, inside one dispatcher span). Structured prediction
(``LLMStructuredPredict*`` events) is a ``structured_predict <OutputCls>`` span around
the one model call it makes.

What the caller's thread copies (the worker converts the rest later): whatever the program
may still change after a callback returns. Retrieved nodes become ``{id, score, text}``
dicts (postprocessors and programs rescore and rewrite nodes in place), chat messages
become role/content dicts (a chat history is the program's list), tool arguments, model
parameters and tool definitions are snapshots. Strings, numbers and ``Usage`` are
immutable and kept by reference. Everything else a span holds is read once, here.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

from llama_index.core.instrumentation.dispatcher import (  # type: ignore[attr-defined]
    active_instrument_tags,
)
from llama_index.core.instrumentation.span import active_span_id

from ..spans import OpenSpan, SpanKind, new_id, snapshot
from ..tracing import Recorder, WarnOnce
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
from .nodes import (
    EMBED,
    EMBED_BATCH_METHODS,
    HIDE,
    LLM,
    METHOD_KINDS,
    MODEL_KINDS,
    ROOTABLE,
    RUN,
    STEP,
    STEP_INPUT,
    STEP_TAG,
    TOOL,
    VISIBLE_METHODS,
    Node,
    SpanRule,
    class_table,
    rule_for,
    run_input,
    span_input,
    span_name,
    span_output,
    split_id,
)
from .runs import EVICTED, DoorRuns, root_key
from .stream import has_stream
from .trace import HandlerOptions, TraceInfo, describe_error

__all__ = ["DispatcherRecorder"]

log = logging.getLogger(__name__)

# Results that cannot carry a token stream (a retriever's list of nodes, ...).
_PLAIN = frozenset({list, tuple, dict, str, int, float, bool})


_KINDS: dict[type, int] = {}  # an instance's class -> its node kind
_RULES: dict[str, SpanRule] = {}  # "Class.method" -> what its spans are
_CLASSES: tuple[tuple[type, int], ...] | None = None


def _class_table() -> tuple[tuple[type, int], ...]:
    global _CLASSES
    if _CLASSES is None:
        _CLASSES = tuple(class_table())  # two threads may both build it: the same table
    return _CLASSES


class DispatcherRecorder:
    """What one ``instrument()`` records: its span handler and event handler feed it.

    Args:
        exporter: Where finished spans go.
        options: The handler options given to ``instrument()``.
    """

    def __init__(self, exporter: Recorder, options: HandlerOptions) -> None:
        self.exporter = exporter
        self.options = options
        self._warn = WarnOnce(log)
        self.runs = DoorRuns(exporter, self._warn, self._forget_root)
        self.table = self.runs.table  # read and taken from directly on the hot paths
        self.nodes: dict[str, Node] = {}
        self.lingering: dict[str, float] = {}  # roots kept open for a stream or a child
        self._awaiting_first: dict[int, str] = {}  # LLM instance -> its newest generation
        self._embeddings: dict[str, list[str]] = {}  # dispatcher span -> open embeddings
        # What a class and a method are never changes: these caches are the process's, so
        # a new instrument() (a test, a benchmark batch) starts warm.
        self._classes = _class_table()
        self._kind_cache = _KINDS
        self._rules = _RULES
        self._by_type: dict[type, Callable[[Any], None] | None] = {}
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
        # A streaming structured prediction of this task or thread: (run key, trace, span
        # id) until its model call claims it, and its run key until its end event.
        self._sp_pending: ContextVar[tuple[str, TraceInfo, str] | None] = ContextVar(
            f"posthog_llama_sp_{id(self)}", default=None
        )
        self._sp_open: ContextVar[str | None] = ContextVar(
            f"posthog_llama_sp_open_{id(self)}", default=None
        )

    # -- plumbing -------------------------------------------------------------------------

    def warn(self, where: str) -> None:
        """Log a failure once per place; never raise."""
        self._warn(
            where,
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
        if len(self._kind_cache) > 10_000:  # classes made at run time, without end
            self._kind_cache.clear()
        self._kind_cache[type(instance)] = kind
        return kind

    def _forget_root(self, root: OpenSpan) -> None:
        li_id = root.extra.get("li_id")
        if li_id is not None and self.lingering.pop(li_id, None) is not None:
            self.nodes.pop(li_id, None)

    def close(self, reason: str) -> None:
        """Close every open run (used by ``uninstrument()``)."""
        self.runs.close(reason)
        self.nodes.clear()
        self.lingering.clear()
        self._embeddings.clear()

    # -- dispatcher spans -----------------------------------------------------------------

    def span_enter(
        self,
        id_: str,
        bound_args: Any,
        instance: Any = None,
        parent_id: str | None = None,
        tags: Any = None,
        **kwargs: Any,
    ) -> None:
        """A dispatcher span opened: a visible span, a model call, or a transparent alias.

        Called by LlamaIndex's dispatcher as the span handler's own method; never raises.
        """
        # Hot path: ~15 dispatcher spans a query, most of them transparent. The class
        # decides alone for most spans (a model, or a class with no visible method); only
        # the kinds whose method decides look up a rule, cached once per (class, method)
        # under its id's prefix. A transparent span costs a few dict operations and
        # allocates nothing.
        try:
            nodes = self.nodes
            parent = nodes.get(parent_id) if parent_id is not None else None
            if parent is None:
                self._enter_top(id_, instance, bound_args, tags)
                return
            if instance is None:  # a plain function: a workflow step, or transparent
                if type(tags) is dict and STEP_TAG in tags:
                    self._show(id_, parent, STEP, None, split_id(id_)[1], tags.get(STEP_INPUT))
                else:
                    self._hide(id_, parent, ROOTABLE, None)
                return
            kind = self._kind_cache.get(type(instance), -1)
            if kind < 0:
                kind = self._kind_of(instance)
            if kind in MODEL_KINDS:
                if self._sp_pending.get() is None or not self.claim_structured_stream(
                    id_, kind, instance
                ):
                    nodes[id_] = Node(
                        id_,
                        parent.trace,
                        kind,
                        parent.vis_id or parent.parent_vis,
                        parent.gen_key or parent.enclosing_gen,
                        instance,
                    )
                return
            rule = None
            if kind in METHOD_KINDS:
                rule = self._rules.get(id_[:-37])
                if rule is None or rule.cls_type is not type(instance):
                    rule = self._rule(id_, instance, kind)
            if rule is None or rule.action == HIDE:
                if parent.kind in MODEL_KINDS:
                    self._hide(id_, parent, kind, instance)
                else:
                    nodes[id_] = parent  # an alias: children attach where the parent's would
            elif kind == RUN:
                self._show(id_, parent, RUN, instance, rule.name, run_input(tags))
            elif parent.instance is instance:  # query -> aquery, __call__ -> call: one span
                self._hide(id_, parent, kind, instance)
            else:
                name = rule.name or span_name(kind, instance, rule.cls, rule.method)
                self._show(id_, parent, kind, instance, name, span_input(kind, bound_args))
        except Exception:
            self.warn("span_enter")

    def _rule(self, id_: str, instance: Any, kind: int) -> SpanRule:
        """Classify a span by its instance's kind and method, and cache the answer."""
        cls, method = split_id(id_)
        action, name = rule_for(kind, cls, method)
        rule = SpanRule(type(instance), action, kind, name, cls, method)
        if len(id_) > 37 and id_[-37] == "-":  # "Class.method-<uuid4>": the prefix is a key
            if len(self._rules) > 10_000:
                self._rules.clear()
            self._rules[id_[:-37]] = rule
        return rule

    def _hide(self, id_: str, parent: Node, kind: int, instance: Any) -> None:
        if parent.kind in MODEL_KINDS:
            # inside a model call: its own node keeps the enclosing generation's key
            self.nodes[id_] = Node(
                id_,
                parent.trace,
                kind,
                parent.attach_to,
                parent.gen_key or parent.enclosing_gen,
                instance,
            )
        else:
            self.nodes[id_] = parent  # an alias: children attach where the parent's would

    def _show(
        self, id_: str, parent: Node, kind: int, instance: Any, name: str | None, payload: Any
    ) -> None:
        attach = parent.vis_id or parent.parent_vis
        trace = parent.trace
        node = Node(id_, trace, kind, attach, parent.gen_key or parent.enclosing_gen, instance)
        self.nodes[id_] = node
        if trace is None or not trace.sampled or name is None:
            return
        self._open_visible(node, id_, trace, name, payload, attach, is_root=False)

    def _enter_top(self, id_: str, instance: Any, bound_args: Any, tags: Any) -> None:
        """A span without a recorded parent: a new trace, or a direct model call."""
        if instance is None:
            kind = ROOTABLE
        else:
            kind = self._kind_cache.get(type(instance), -1)
            if kind < 0:
                kind = self._kind_of(instance)
        if (
            kind in MODEL_KINDS
            and self._sp_pending.get() is not None
            and self.claim_structured_stream(id_, kind, instance)
        ):
            return
        cls, method = split_id(id_)
        if kind in MODEL_KINDS and not (kind == EMBED and method in EMBED_BATCH_METHODS):
            # A direct model call: its generation (from the events) is the root.
            self.nodes[id_] = Node(id_, None, kind, None, None, instance)
            return
        if tags is None:
            tags = active_instrument_tags.get()
        trace = self.options.new_trace(self.exporter, tags)
        node = Node(id_, trace, kind, None, None, instance)
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
            key = trace.root_key = root_key(span_id)
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
        if is_root:
            span.extra["li_id"] = id_  # how its stream and its end find the dispatcher span
        else:
            span.extra["root_key"] = trace.root_key
        node.vis_id = span_id
        node.key = key
        self._add(key, span)

    def _add(self, key: str, span: OpenSpan) -> None:
        evicted = self.table.add(key, span)
        if evicted:
            self.exporter.close_runs(evicted, EVICTED)

    def span_exit(
        self,
        id_: str,
        bound_args: Any,
        instance: Any = None,
        result: Any = None,
        **kwargs: Any,
    ) -> None:
        """A dispatcher span returned ``result``; never raises."""
        node = self.nodes.pop(id_, None)
        if node is None or node.key is None or node.li_id != id_:
            return  # transparent (or an alias of its parent)
        try:
            key = node.key
            trace = node.trace
            is_root = trace is not None and key == trace.root_key
            # A child is taken from the table at once (it is ours to submit from here on);
            # a root stays there until its trace is done.
            span = self.table.get(key) if is_root else self.table.pop(key)
            if span is None:
                return
            try:
                if node.kind == TOOL and getattr(result, "is_error", False) is True:
                    span.error = str(getattr(result, "content", "") or "tool error")
                if "output" not in span.extra:
                    span.output = span_output(node.kind, result)
            except Exception:
                self.warn("span exit")  # still ended below, with what was read
            if result is not None and trace is not None and type(result) not in _PLAIN:
                try:
                    if has_stream(result):
                        root = self.table.get(trace.root_key)
                        if root is not None:
                            self._wrap_stream(result, root)
                except Exception:
                    self.warn("stream wrap")
            if is_root:
                self._end_root(node, span, id_)
            else:
                self.runs.submit(span)
        except Exception:
            self.warn("span_exit")

    def span_drop(
        self,
        id_: str,
        bound_args: Any,
        instance: Any = None,
        err: BaseException | None = None,
        **kwargs: Any,
    ) -> None:
        """A dispatcher span raised ``err``: its open model calls end with it; never raises."""
        try:
            node = self.nodes.pop(id_, None)
            if node is None:
                return
            leaves = self._take_embeddings(id_)
            if node.li_id != id_:  # an alias of its parent: nothing else is its own
                node = None
            gen = self.table.pop(node.gen_key) if node is not None and node.gen_key else None
            if gen is not None:
                leaves.append(gen)
            for leaf in leaves:  # a model call that raised: no end event follows
                self._mark_error(leaf, err)
                try:
                    self._first_token_seen(leaf)
                except Exception:
                    self.warn("span drop")
                self.runs.submit(leaf)
            if node is None or node.key is None:
                return
            span = self.table.get(node.key)
            if span is None:
                return
            if span.status != "cancelled":
                self._mark_error(span, err)
            self._end(node, span, id_)
        except Exception:
            self.warn("span_drop")

    def _mark_error(self, span: OpenSpan, err: BaseException | None) -> None:
        try:
            span.error = describe_error(err)
        except Exception:
            span.error = type(err).__name__ if err is not None else "error"
            self.warn("span drop")

    def _end(self, node: Node, span: OpenSpan, id_: str) -> None:
        """End the visible span of ``node`` (a root when its trace is done)."""
        trace = node.trace
        if trace is not None and node.key == trace.root_key:
            self._end_root(node, span, id_)
        elif self.table.pop(node.key) is span:  # type: ignore[arg-type]
            self.runs.submit(span)

    def _end_root(self, node: Node, span: OpenSpan, id_: str) -> None:
        # Late children of the trace (a stream's model call) still resolve here while
        # the root waits for them.
        self.nodes[id_] = node
        if self.runs.end_root(span, node.key):
            self.nodes.pop(id_, None)  # done now (the usual case): nothing lingers
            return
        self.lingering[id_] = time.time()
        if self.table.get(node.key) is not span:  # finished meanwhile, by a child or stream
            self._forget_root(span)

    def _purge_lingering(self) -> None:
        with self._lock:
            for li_id in list(self.lingering):
                node = self.nodes.get(li_id)
                if (
                    node is None
                    or node.trace is None
                    or node.trace.root_key is None
                    or (self.table.get(node.trace.root_key) is None)
                ):
                    self.lingering.pop(li_id, None)
                    self.nodes.pop(li_id, None)

    def _wrap_stream(self, result: Any, root: OpenSpan) -> None:
        """Keep the trace open while a returned token stream is read.

        The stream's model call starts lazily, often after the call returned (or in a
        chat engine's writer thread): reading it under the root's dispatcher span id makes
        LlamaIndex parent that call inside this trace.
        """
        li_id = root.extra.get("li_id")
        if li_id is not None:
            self.runs.wrap_stream(
                result, root, lambda: active_span_id.set(li_id), active_span_id.reset
            )

    # -- events ---------------------------------------------------------------------------

    def handle(self, event: Any, **kwargs: Any) -> None:
        """An instrumentation event: model calls, embeddings, step outputs; never raises.

        Called by LlamaIndex's dispatcher as the event handler's own method.
        """
        cls = type(event)
        try:
            handler = self._by_type[cls]
        except KeyError:  # once per event class
            handler = self._by_type[cls] = self.events.get(cls.__name__)
        if handler is not None:
            try:
                handler(event)
            except Exception:
                self.warn(f"event {cls.__name__}")

    def _on_step_output(self, event: Any) -> None:
        li_id = str(event.span_id)
        node = self.nodes.get(li_id)
        if node is None or node.key is None or node.li_id != li_id:
            return
        span = self.table.get(node.key)
        output = getattr(event, "output", None)
        if span is not None and output is not None and node.kind == STEP:
            span.output = output
            span.extra["output"] = True

    def _on_cancelled(self, event: Any) -> None:
        li_id = str(event.span_id)
        node = self.nodes.get(li_id)
        if node is not None and node.key is not None and node.li_id == li_id:
            span = self.table.get(node.key)
            if span is not None:
                span.status = "cancelled"

    def _place_leaf(
        self, node: Node | None, hints: Any = None
    ) -> tuple[TraceInfo, str, str | None] | None:
        """Trace, span id and parent of a model call or embedding at ``node``."""
        trace = node.trace if node is not None else None
        if trace is None:
            trace = self.options.new_trace(self.exporter, hints)
            if node is not None:
                node.trace = trace
            if not trace.sampled:
                return None
            return trace, trace.root_span_id, trace.root_parent_id
        if not trace.sampled:
            return None
        parent = (node.vis_id or node.parent_vis) if node is not None else None
        return trace, new_id(), parent or trace.root_span_id

    # -- model calls ------------------------------------------------------------------------

    def _on_llm_start(self, event: Any) -> None:
        li_id = event.span_id
        node = self.nodes.get(li_id) if li_id else None
        if (
            node is not None
            and node.enclosing_gen is not None
            and self.table.get(node.enclosing_gen) is not None
        ):
            self.runs.skip(li_id, node.enclosing_gen)  # chat() -> complete(): one generation
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
            if outer_key is not None:
                outer = self.table.get(outer_key)
                if outer is not None and outer.first_token_time is None and outer.input == messages:
                    if li_id:
                        self.runs.skip(li_id, outer_key)
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
        if type(kwargs) is not dict or "tools" in kwargs:  # a plain dict without: no tools
            span.tools = tools_of(kwargs)
        if instance is not None:
            span.base_url = base_url_of(instance)
        key = "gen:" + (li_id or span_id)
        extra = span.extra
        extra["root_key"] = trace.root_key
        if node is not None:
            node.gen_key = key
        if instance is not None:
            if len(self._awaiting_first) > 10_000:
                self._awaiting_first.clear()
            self._awaiting_first[id(instance)] = key
            extra["awaiting"] = (id(instance), key)
        self._add(key, span)

    def _first_token_seen(self, span: OpenSpan) -> None:
        """The generation has its first token (or ended): a later call is another one."""
        awaiting = span.extra.get("awaiting")  # (LLM instance id, generation key)
        if awaiting is not None and self._awaiting_first.get(awaiting[0]) == awaiting[1]:
            self._awaiting_first.pop(awaiting[0], None)

    def _on_llm_progress(self, event: Any) -> None:
        span = self.table.get("gen:" + str(event.span_id))
        if span is not None and span.first_token_time is None:
            span.first_token_time = time.time()
            self._first_token_seen(span)
            if span.model_parameters is None or "stream" not in span.model_parameters:
                span.model_parameters = {**(span.model_parameters or {}), "stream": True}

    def _on_llm_end(self, event: Any) -> None:
        li_id = str(event.span_id)
        span = self.table.pop("gen:" + li_id)
        response = getattr(event, "response", None)
        if span is None:
            outer = self.runs.take_skipped(li_id)
            if outer is not None and outer.usage is None and response is not None:
                outer.extra["inner_usage"] = response_fields(response, outer.provider)[0]
            return
        try:
            self._first_token_seen(span)
            fill_generation(span, response, type(event).__name__ == "LLMChatEndEvent")
        except Exception:
            self.warn("LLM end")  # still sent below, with what was read
        self.runs.submit(span)

    # -- embeddings -------------------------------------------------------------------------

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
        key = "emb:" + span_id
        with self._lock:
            # A batch fires every start, then every end in the same order: first in, first out.
            self._embeddings.setdefault(str(li_id), []).append(key)
        self._add(key, span)

    def _take_embedding(self, li_id: str) -> OpenSpan | None:
        """The oldest open embedding of dispatcher span ``li_id``."""
        with self._lock:
            keys = self._embeddings.get(li_id)
            if not keys:
                return None
            key = keys.pop(0)
            if not keys:
                del self._embeddings[li_id]
        return self.table.pop(key)

    def _take_embeddings(self, li_id: str) -> list[OpenSpan]:
        """Every open embedding of dispatcher span ``li_id``."""
        with self._lock:
            keys = self._embeddings.pop(li_id, None)
        if not keys:
            return []
        return [span for key in keys if (span := self.table.pop(key)) is not None]

    def _on_embed_end(self, event: Any) -> None:
        span = self._take_embedding(str(event.span_id))
        if span is None:
            return
        try:
            fill_embedding(span, getattr(event, "chunks", None))
        except Exception:
            self.warn("embedding end")  # still sent below, with what was read
        self.runs.submit(span)

    def _on_exception(self, event: Any) -> None:
        li_id = str(event.span_id)
        exc = getattr(event, "exception", None)
        leaves = self._take_embeddings(li_id)
        gen = self.table.pop("gen:" + li_id)
        if gen is not None:
            leaves.append(gen)
        for span in leaves:
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
            self.runs.submit(span)

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
                None,
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
        span = self.table.get(node.key)
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
        if self.table.get(key) is None:
            return False
        self.nodes[id_] = Node(id_, trace, LLM, span_id, None, instance)
        return True

    def _structured_span(self, event: Any) -> OpenSpan | None:
        li_id = str(event.span_id) if event.span_id else None
        node = self.nodes.get(li_id) if li_id is not None else None
        span = self.table.get(node.key if node is not None and node.li_id == li_id else None)
        if span is not None and span.extra.get("structured"):
            return span
        return self.table.get(self._sp_open.get())

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
        if self.table.pop(span.extra["sp_key"]) is span:
            self.runs.submit(span)
