"""Each LlamaIndex run's content is measured once, through both doors: the queue gets the
estimate kept from the run's entry into the run table (replaced fields measured again),
and it is the figure measuring the finished span gives (``sizing.estimate_bytes``)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from llama_index.core import Document, Settings, VectorStoreIndex
from llama_index.core.agent.workflow import FunctionAgent
from llama_index.core.callbacks import CallbackManager
from llama_index.core.chat_engine.types import ChatMode
from llama_index.core.llms import MockFunctionCallingLLM
from llama_index.core.tools import FunctionTool

from posthog_callbacks import PosthogExporter
from posthog_callbacks.llama_index import CallbackHandler, instrument, trace_context
from posthog_callbacks.sizing import estimate_bytes
from posthog_callbacks.spans import FinishedSpan
from posthog_callbacks.tracing import RunTable
from support.llama_helpers import UsageLLM


def lookup(city: str = "Paris") -> str:
    """Look a city up."""
    return f"{city}: population 2.1M " * 5


def _spy(exporter: PosthogExporter, monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, Any]]:
    queued: list[tuple[Any, Any]] = []
    enqueue = exporter._batcher.enqueue

    def spy(item: Any, size: int | None = None) -> None:
        queued.append((item, size))
        enqueue(item, size)

    monkeypatch.setattr(exporter._batcher, "enqueue", spy)
    return queued


def _app(door: str, exporter: PosthogExporter) -> Any:
    """Run a RAG app through ``door``: query (retriever, embedding, model), chat engine,
    a streamed query, a failing model call and (instrument) an agent with a tool."""
    docs = [
        Document(text="The answer to everything is forty two. " * 20, id_="doc-42"),
        Document(text="Paris is the capital of France. " * 20, id_="doc-paris"),
    ]
    if door == "callback":
        handler = CallbackHandler(exporter, properties={"team": "geo"})
        Settings.callback_manager = CallbackManager([handler])
        close = None
    else:
        handle = instrument(exporter, properties={"team": "geo"})
        close = handle.uninstrument
    try:
        index = VectorStoreIndex.from_documents(docs)
        with trace_context(user_id="u1", session_id="s1", metadata={"app": "rag"}):
            assert str(index.as_query_engine(similarity_top_k=2).query("What?")) == "forty two"
            chat = index.as_chat_engine(chat_mode=ChatMode.CONDENSE_PLUS_CONTEXT)
            assert str(chat.chat("hi")) == "forty two"
            streamed: Any = index.as_query_engine(streaming=True).query("And Paris?")
            assert "".join(streamed.response_gen) == "forty two"
            Settings.llm = UsageLLM(fail_with="model down " * 10)
            with pytest.raises(RuntimeError, match="model down"):
                index.as_query_engine().query("x" * 500)
            if door == "instrument":
                agent = FunctionAgent(
                    tools=[FunctionTool.from_defaults(lookup)], llm=MockFunctionCallingLLM()
                )

                async def run() -> Any:
                    return await agent.run("look Paris up")

                assert str(asyncio.run(run())) == "Tool calls complete."
    finally:
        if close is not None:
            close()


@pytest.mark.parametrize("door", ["instrument", "callback"])
def test_every_llama_index_run_is_queued_with_the_estimate_of_the_finished_span(
    door: str, exporter: PosthogExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    queued = _spy(exporter, monkeypatch)
    _app(door, exporter)
    assert exporter.flush(timeout=10)
    kinds = {(item.kind.value, item.error is not None) for item, _ in queued}
    assert ("generation", False) in kinds and ("generation", True) in kinds
    assert ("embedding", False) in kinds and ("trace", True) in kinds
    if door == "instrument":  # the streamed model call (the callback door sees no tokens)
        assert any(i.time_to_first_token is not None for i, _ in queued)
        assert "lookup" in {i.name for i, _ in queued}
    assert all(i.properties == {"team": "geo"} for i, _ in queued)
    kept = 0
    for item, size in queued:
        assert isinstance(item, FinishedSpan)
        if item.parent_id is not None:  # a root is finished by the core (RootCompletion)
            assert size is not None, item.name  # every child kept its estimate
        if size is not None:
            kept += 1
            assert size == estimate_bytes(item), item.name
    assert kept > 10
    assert len(exporter.sink.events) == len(queued)  # type: ignore[union-attr]


class _OldRecorder:
    """An exporter-like object whose submit() predates the ``size`` argument."""

    def __init__(self) -> None:
        self.spans: list[FinishedSpan] = []

    def submit(self, span: FinishedSpan) -> None:
        self.spans.append(span)

    def close_runs(self, spans: Any, reason: str) -> None: ...

    def is_sampled(self, trace_id: str) -> bool:
        return True

    def register_runs(self, table: RunTable[Any]) -> None: ...


@pytest.mark.parametrize("door", ["instrument", "callback"])
def test_an_exporter_like_object_without_size_still_gets_every_run(door: str) -> None:
    old = _OldRecorder()
    if door == "callback":
        Settings.callback_manager = CallbackManager([CallbackHandler(old)])
        close = None
    else:
        close = instrument(old).uninstrument  # type: ignore[arg-type]
    try:
        index = VectorStoreIndex.from_documents([Document(text="forty two", id_="d")])
        old.spans.clear()
        assert str(index.as_query_engine().query("What?")) == "forty two"
    finally:
        if close is not None:
            close()
    kinds = sorted({s.kind.value for s in old.spans})
    assert kinds == ["embedding", "generation", "span", "trace"]
