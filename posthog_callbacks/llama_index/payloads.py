"""Callback-manager event payloads -> span kind, name, input and output."""

from __future__ import annotations

from typing import Any

from llama_index.core.callbacks.schema import CBEventType, EventPayload

from ..spans import OpenSpan, SpanKind
from .extract import fill_embedding, messages_to_dicts, nodes_summary, text_of

__all__ = ["describe_end", "describe_start", "last_content"]


def last_content(messages: Any) -> Any:
    """The text of the last message of a ``[{"role", "content"}]`` list."""
    if isinstance(messages, list) and messages and isinstance(messages[-1], dict):
        return messages[-1].get("content")
    return messages


def describe_start(event_type: CBEventType, payload: dict[str, Any]) -> tuple[SpanKind, str, Any]:
    """Kind, name and input of a span from an event start payload."""
    name = event_type.value
    if event_type == CBEventType.LLM:
        messages = payload.get(EventPayload.MESSAGES)
        if messages is not None:
            return SpanKind.GENERATION, "llm.chat", messages_to_dicts(messages)
        prompt = payload.get(EventPayload.PROMPT)
        return SpanKind.GENERATION, "llm.complete", [{"role": "user", "content": prompt}]
    if event_type == CBEventType.EMBEDDING:
        return SpanKind.EMBEDDING, name, None
    query = payload.get(EventPayload.QUERY_STR)
    if event_type == CBEventType.FUNCTION_CALL:
        tool = payload.get(EventPayload.TOOL)
        tool_name = getattr(tool, "name", None)
        return SpanKind.SPAN, tool_name or name, payload.get(EventPayload.FUNCTION_CALL)
    if event_type == CBEventType.TEMPLATING:
        return (
            SpanKind.SPAN,
            name,
            {
                "template": text_of(payload.get(EventPayload.TEMPLATE)),
                "template_vars": payload.get(EventPayload.TEMPLATE_VARS),
            },
        )
    if event_type == CBEventType.RERANKING:
        return (
            SpanKind.SPAN,
            name,
            {
                "query": text_of(query),
                "top_k": payload.get(EventPayload.TOP_K),
                "model": payload.get(EventPayload.MODEL_NAME),
                "nodes": nodes_summary(payload.get(EventPayload.NODES)),
            },
        )
    if event_type == CBEventType.SUB_QUESTION:
        sub = payload.get(EventPayload.SUB_QUESTION)
        sub_q = getattr(sub, "sub_q", None)
        return SpanKind.SPAN, name, getattr(sub_q, "sub_question", None) or text_of(sub)
    if event_type == CBEventType.CHUNKING:
        chunks = payload.get(EventPayload.CHUNKS)
        return SpanKind.SPAN, name, {"chunks": len(chunks)} if isinstance(chunks, list) else None
    if event_type == CBEventType.NODE_PARSING:
        docs = payload.get(EventPayload.DOCUMENTS)
        return (
            SpanKind.SPAN,
            name,
            {"documents": len(docs)} if isinstance(docs, (list, tuple)) else None,
        )
    if event_type == CBEventType.AGENT_STEP:
        messages = payload.get(EventPayload.MESSAGES)
        return (
            SpanKind.SPAN,
            name,
            text_of(messages[0]) if isinstance(messages, list) and messages else None,
        )
    return SpanKind.SPAN, name, text_of(query) if query is not None else None


def describe_end(span: OpenSpan, event_type: CBEventType, payload: dict[str, Any]) -> None:
    """Output of a span (or embedding) from an event end payload."""
    if event_type == CBEventType.EMBEDDING:
        fill_embedding(span, payload.get(EventPayload.CHUNKS))
        return
    if event_type in (CBEventType.RETRIEVE, CBEventType.RERANKING):
        span.output = nodes_summary(payload.get(EventPayload.NODES))
    elif event_type == CBEventType.FUNCTION_CALL:
        output = payload.get(EventPayload.FUNCTION_OUTPUT)
        span.output = getattr(output, "content", output)
    elif event_type == CBEventType.SUB_QUESTION:
        sub = payload.get(EventPayload.SUB_QUESTION)
        span.output = getattr(sub, "answer", None)
    elif event_type == CBEventType.CHUNKING:
        chunks = payload.get(EventPayload.CHUNKS)
        span.output = {"chunks": len(chunks)} if isinstance(chunks, list) else None
    elif event_type == CBEventType.NODE_PARSING:
        nodes = payload.get(EventPayload.NODES)
        span.output = {"nodes": len(nodes)} if isinstance(nodes, (list, tuple)) else None
    elif event_type == CBEventType.TEMPLATING:
        span.output = None
    else:
        response = payload.get(EventPayload.RESPONSE)
        span.output = text_of(response) if response is not None else None
