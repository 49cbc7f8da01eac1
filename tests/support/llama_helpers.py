"""Helpers for the LlamaIndex tests: mock models that report usage, event tree checks."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

from llama_index.core.base.llms.types import (
    CompletionResponse,
    CompletionResponseGen,
    LLMMetadata,
)
from llama_index.core.bridge.pydantic import Field
from llama_index.core.embeddings import MockEmbedding
from llama_index.core.llms import CustomLLM
from llama_index.core.llms.callbacks import llm_completion_callback

Events = Callable[[], list[dict[str, Any]]]
"""The ``events`` fixture: flush the exporter, return every event its sink received."""

USAGE = {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14}


class UsageLLM(CustomLLM):
    """A MockLLM that answers "forty two" and reports OpenAI-shaped usage in ``raw``.

    It counts the model calls it served (``calls``), the oracle for what is exported.
    """

    answer: str = "forty two"
    fail_with: str | None = None
    calls: int = 0

    def served_tokens(self) -> tuple[int, int]:
        """Input and output tokens reported over every call served."""
        return self.calls * USAGE["prompt_tokens"], self.calls * USAGE["completion_tokens"]

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(model_name="mock-gpt", num_output=16, context_window=4096)

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        if self.fail_with:
            raise RuntimeError(self.fail_with)
        self.calls += 1
        return CompletionResponse(
            text=self.answer, raw={"model": "mock-gpt-0613", "usage": dict(USAGE)}
        )

    @llm_completion_callback()
    def stream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseGen:
        self.calls += 1

        def gen() -> CompletionResponseGen:
            text = ""
            words = self.answer.split(" ")
            for i, word in enumerate(words):
                delta = word if i == 0 else " " + word
                text += delta
                last = i == len(words) - 1
                yield CompletionResponse(
                    text=text,
                    delta=delta,
                    raw={"model": "mock-gpt-0613", "usage": dict(USAGE)} if last else {},
                )

        return gen()


def props(event: dict[str, Any]) -> dict[str, Any]:
    return event["properties"]  # type: ignore[no-any-return]


def by_name(events: Sequence[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [e for e in events if props(e).get("$ai_span_name") == name]


def one(events: Sequence[dict[str, Any]], name: str) -> dict[str, Any]:
    found = by_name(events, name)
    assert len(found) == 1, (name, [props(e).get("$ai_span_name") for e in events])
    return found[0]


def span_id(event: dict[str, Any]) -> str:
    p = props(event)
    return p.get("$ai_span_id") or p["$ai_trace_id"]  # type: ignore[no-any-return]


def check_trees(events: Sequence[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Assert every trace has exactly one root and every parent resolves in its trace.

    Returns:
        Events grouped by trace id.
    """
    traces: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for event in events:
        traces[props(event)["$ai_trace_id"]].append(event)
    for trace_id, group in traces.items():
        ids = {span_id(e) for e in group}
        assert len(ids) == len(group), f"duplicate span ids in {trace_id}"
        roots = [e for e in group if "$ai_parent_id" not in props(e)]
        assert len(roots) == 1, (trace_id, [props(e)["$ai_span_name"] for e in roots])
        assert span_id(roots[0]) == trace_id
        for event in group:
            parent = props(event).get("$ai_parent_id")
            if parent is not None:
                assert parent in ids, (props(event)["$ai_span_name"], parent)
        assert all(props(e)["$ai_framework"] == "llama_index" for e in group)
    return dict(traces)


def children(events: Sequence[dict[str, Any]], parent: dict[str, Any]) -> list[str]:
    """Span names of the direct children of ``parent``, in start order."""
    pid = span_id(parent)
    kids = [e for e in events if props(e).get("$ai_parent_id") == pid]
    kids.sort(key=lambda e: e["timestamp"])
    return [props(e)["$ai_span_name"] for e in kids]


def tree(events: Sequence[dict[str, Any]]) -> list[str]:
    """An indented outline (event, name) of one trace, children in start order."""
    root = next(e for e in events if "$ai_parent_id" not in props(e))
    lines: list[str] = []

    def walk(event: dict[str, Any], depth: int) -> None:
        lines.append("  " * depth + f"{event['event']} {props(event)['$ai_span_name']}")
        pid = span_id(event)
        kids = [e for e in events if props(e).get("$ai_parent_id") == pid]
        kids.sort(key=lambda e: (e["timestamp"], props(e)["$ai_span_name"]))
        for kid in kids:
            walk(kid, depth + 1)

    walk(root, 0)
    return lines


class CountingEmbedding(MockEmbedding):
    """A ``MockEmbedding`` that records the texts of every embedding call it served."""

    served: list[list[str]] = Field(default_factory=list)

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        self.served.append(list(texts))
        return [self._get_vector() for _ in texts]

    async def _aget_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        self.served.append(list(texts))
        return [self._get_vector() for _ in texts]

    def _get_query_embedding(self, query: str) -> list[float]:
        self.served.append([query])
        return self._get_vector()

    async def _aget_query_embedding(self, query: str) -> list[float]:
        self.served.append([query])
        return self._get_vector()
