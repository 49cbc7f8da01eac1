"""Dispatcher-span nodes of the instrumentation front door: kinds, names, inputs, outputs.

Every LlamaIndex dispatcher span becomes a :class:`Node`. Only a few kinds are exported
(*visible*); the others are transparent and their children attach to the nearest visible
ancestor, which keeps traces readable.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from llama_index.core.instrumentation.dispatcher import (  # type: ignore[attr-defined]
    active_instrument_tags,
)

from ..spans import snapshot
from .extract import compact, messages_to_dicts, nodes_summary, text_of
from .trace import TraceInfo

__all__ = [
    "EMBED_BATCH_METHODS",
    "HIDE",
    "METHOD_KINDS",
    "MODEL",
    "MODEL_KINDS",
    "SHOW",
    "STEP_INPUT",
    "STEP_TAG",
    "VISIBLE_METHODS",
    "Node",
    "SpanRule",
    "class_table",
    "rule_for",
    "run_input",
    "span_input",
    "span_name",
    "span_output",
    "split_id",
]

# Node kinds.
HIDDEN, ROOTABLE, LLM, EMBED, RUN, STEP, TOOL, QUERY, CHAT, RETRIEVE, SYNTH, RERANK = range(12)

VISIBLE_METHODS: dict[int, frozenset[str]] = {
    TOOL: frozenset({"call", "acall", "__call__"}),
    QUERY: frozenset({"query", "aquery"}),
    CHAT: frozenset({"chat", "achat", "stream_chat", "astream_chat"}),
    RETRIEVE: frozenset({"retrieve", "aretrieve"}),
    SYNTH: frozenset({"synthesize", "asynthesize"}),
    # rerankers and other node postprocessors: only the implementation is a span
    RERANK: frozenset(
        {"_postprocess_nodes", "_apostprocess_nodes", "postprocess_nodes", "apostprocess_nodes"}
    ),
}
# The kinds whose spans' visibility depends on the method (the others: on the class alone).
METHOD_KINDS = frozenset({RUN, *VISIBLE_METHODS})
STEP_TAG = "llamaindex.step.input_event"
STEP_INPUT = "llamaindex.step.input_summary"
MODEL_KINDS = frozenset({LLM, EMBED})
# A top-level batch embedding call is a visible root: it makes one embedding call per batch.
EMBED_BATCH_METHODS = frozenset({"get_text_embedding_batch", "aget_text_embedding_batch"})


def class_table() -> list[tuple[type, int]]:
    table: list[tuple[type, int]] = []

    def add(module: str, name: str, kind: int) -> None:
        try:
            mod = __import__(module, fromlist=[name])
            table.append((getattr(mod, name), kind))
        except Exception:  # an optional part of LlamaIndex is missing: skip it
            pass

    add("llama_index.core.base.llms.base", "BaseLLM", LLM)
    add("llama_index.core.base.embeddings.base", "BaseEmbedding", EMBED)
    add("workflows", "Workflow", RUN)
    add("llama_index.core.tools.types", "BaseTool", TOOL)
    add("llama_index.core.base.base_query_engine", "BaseQueryEngine", QUERY)
    add("llama_index.core.chat_engine.types", "BaseChatEngine", CHAT)
    add("llama_index.core.base.base_retriever", "BaseRetriever", RETRIEVE)
    add("llama_index.core.response_synthesizers.base", "BaseSynthesizer", SYNTH)
    add("llama_index.core.postprocessor.types", "BaseNodePostprocessor", RERANK)
    return table


class Node:
    """One open dispatcher span that matters: visible, a model call, or inside a model call.

    A transparent span elsewhere gets no node of its own: it is recorded as an alias of
    its parent's node (its children attach where the parent's would), so ``li_id`` (the
    dispatcher span that owns the node) tells an alias from the owner.
    """

    __slots__ = (
        "enclosing_gen",
        "gen_key",
        "instance",
        "key",
        "kind",
        "li_id",
        "parent_vis",
        "trace",
        "vis_id",
    )

    def __init__(
        self,
        li_id: str | None,
        trace: TraceInfo | None,
        kind: int,
        parent_vis: str | None,
        enclosing_gen: str | None,
        instance: Any,
    ) -> None:
        self.li_id = li_id
        self.trace = trace
        self.kind = kind
        self.parent_vis = parent_vis  # span id the children of a hidden node attach to
        self.vis_id: str | None = None  # own exported span id when visible
        self.key: str | None = None  # run-table key when visible
        self.gen_key: str | None = None  # generation opened at this node
        self.enclosing_gen = enclosing_gen  # generation open in an ancestor
        self.instance = instance

    @property
    def attach_to(self) -> str | None:
        return self.vis_id or self.parent_vis


# What a dispatcher span inside a trace is, decided once per (class, method): see rule_for.
HIDE, MODEL, SHOW = range(3)


class SpanRule(NamedTuple):
    """What the spans of one class and method are (cached per ``"Class.method"``)."""

    cls_type: type
    action: int  # HIDE, MODEL or SHOW
    kind: int
    name: str | None  # None: depends on the instance
    cls: str
    method: str


def rule_for(kind: int, cls: str, method: str) -> tuple[int, str | None]:
    """Action (``HIDE``, ``MODEL`` or ``SHOW``) and span name for a span inside a trace.

    The name is ``None`` when it depends on the instance (a tool's own name).
    """
    if kind in MODEL_KINDS:
        return MODEL, None
    if kind == RUN:
        return (SHOW, f"{cls}.run") if method == "run" else (HIDE, None)
    methods = VISIBLE_METHODS.get(kind)
    if methods is None or method not in methods:
        return HIDE, None
    return SHOW, None if kind == TOOL else span_name(kind, None, cls, method)


def run_input(tags: Any) -> Any:
    """A workflow run's start event summary (set as instrument tags, not passed)."""
    if not isinstance(tags, dict):
        tags = active_instrument_tags.get()
    return tags.get("llamaindex.start_event") if isinstance(tags, dict) else None


def split_id(id_: str) -> tuple[str, str]:
    """``"Class.method-<uuid4>"`` -> ``("Class", "method")``."""
    base = id_[:-37] if len(id_) > 37 and id_[-37] == "-" else id_
    cls, _, method = base.rpartition(".")
    return cls, method


def span_name(kind: int, instance: Any, cls: str, method: str) -> str:
    """A readable span name: the tool's name, else ``Class.method``."""
    if kind == TOOL:
        try:
            name = instance.metadata.name
            if isinstance(name, str) and name:
                return name
        except Exception:
            pass
    if method.startswith("_") and not method.startswith("__"):
        method = method[1:]  # _postprocess_nodes: the public name reads better
    return f"{cls}.{method}"


_QUERY_KINDS = frozenset({QUERY, RETRIEVE, SYNTH})
_QUERY_KEYS = ("str_or_query_bundle", "query_bundle", "query", "query_str")
_MISSING: Any = object()


def span_input(kind: int, bound_args: Any) -> Any:
    value: Any = _MISSING
    try:
        arguments = bound_args.arguments
        if kind in _QUERY_KINDS and type(arguments) is dict:
            # The query is all these spans show: read in place, the rest is not copied.
            for key in _QUERY_KEYS:
                if key in arguments:
                    value = arguments[key]
                    break
        if value is _MISSING:
            args = dict(arguments)
    except Exception:
        return None
    if value is not _MISSING:
        return value if type(value) is str else text_of(value)
    args.pop("self", None)
    if kind in _QUERY_KINDS:
        for key in _QUERY_KEYS:
            if key in args:
                return text_of(args[key])
    if kind == CHAT:
        message = args.get("message")
        history = args.get("chat_history")
        if history:
            return {"message": text_of(message), "chat_history": messages_to_dicts(history)}
        return text_of(message)
    if kind == TOOL:
        kwargs = args.pop("kwargs", None) or {}
        positional = args.pop("args", None)
        if positional:
            return {"args": snapshot(list(positional)), **snapshot(kwargs)}
        return snapshot(kwargs) if kwargs else snapshot(args) or None
    if kind == RERANK:
        return {
            "query": text_of(args.get("query_bundle") or args.get("query_str")),
            "nodes": nodes_summary(args.get("nodes")),
        }
    return {k: compact(v) for k, v in args.items() if k not in ("kwargs", "args") or v} or None


def span_output(kind: int, result: Any) -> Any:
    if result is None:
        return None
    if kind in (RETRIEVE, RERANK):
        return nodes_summary(result)
    if kind == TOOL:
        content = getattr(result, "content", None)
        return content if content is not None else text_of(result)
    if kind in (RUN, STEP):
        result = getattr(result, "result", result)
        response = getattr(result, "response", None)
        content = getattr(response, "content", None)
        if isinstance(content, str):
            return content
    if kind in (QUERY, CHAT, SYNTH):
        return text_of(result)
    return compact(result)
