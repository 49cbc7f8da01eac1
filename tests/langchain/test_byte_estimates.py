"""Each LangChain run's content is measured once: the queue gets the estimate kept from
the run's entry into the run table, and it is the figure measuring the finished span gives
(``sizing.estimate_bytes``)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.language_models import FakeListChatModel
from langchain_core.messages import AIMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import RunnableLambda
from langchain_core.tools import tool

from posthog_callbacks.langchain import CallbackHandler
from posthog_callbacks.sizing import estimate_bytes
from posthog_callbacks.spans import FinishedSpan
from posthog_callbacks.tracing import RunTable
from support.langchain_fakes import ProviderFake
from support.langchain_helpers import Recorder


class _Docs(BaseRetriever):
    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun
    ) -> list[Document]:
        return [Document(page_content=f"{query} is in Europe " * 20, metadata={"src": "atlas"})]


@tool
def lookup(city: str) -> str:
    """Look a city up."""
    return f"{city}: population 2.1M"


def _spy(rec: Recorder, monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, int | None]]:
    queued: list[tuple[Any, int | None]] = []
    enqueue = rec.exporter._batcher.enqueue

    def spy(item: Any, size: int | None = None) -> None:
        queued.append((item, size))
        enqueue(item, size)

    monkeypatch.setattr(rec.exporter._batcher, "enqueue", spy)
    return queued


def test_every_langchain_run_is_queued_with_the_estimate_of_the_finished_span(
    rec: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    queued = _spy(rec, monkeypatch)
    handler = rec.handler(properties={"team": "geo"}, tags=["t"])
    model = ProviderFake(
        responses=[AIMessage(content="Paris, " * 30)] * 4,
        model_kwargs={"temperature": 0.2},
    ).bind(tools=[{"type": "function", "function": {"name": "lookup", "parameters": {}}}])
    prompt = ChatPromptTemplate.from_messages([("system", "Be brief."), ("human", "{q}")])
    flaky = {"calls": 0}

    def sometimes(x: str) -> str:
        flaky["calls"] += 1
        if flaky["calls"] == 1:
            raise ValueError("first try fails")
        return x

    chain = (
        prompt
        | model
        | StrOutputParser()
        | RunnableLambda(sometimes).with_retry(wait_exponential_jitter=False)
    )
    config: Any = {
        "callbacks": [handler],
        "metadata": {"posthog_properties": {"plan": "pro"}, "user_id": "u1"},
    }
    assert chain.invoke({"q": "capital of France?"}, config=config).startswith("Paris")
    # Streamed token by token: the model parameters gain "stream": True at the end.
    streaming = prompt | FakeListChatModel(responses=["Madrid " * 40]) | StrOutputParser()
    assert "".join(streaming.stream({"q": "and of Spain?"}, config=config)).startswith("Mad")
    _Docs().invoke("Paris", config=config)
    lookup.invoke({"city": "Paris"}, config=config)

    def broken(x: Any) -> Any:
        raise RuntimeError("boom " * 10)

    with pytest.raises(RuntimeError):
        (prompt | RunnableLambda(broken)).invoke({"q": "x" * 500}, config=config)

    kinds = {(item.kind.value, item.error is not None) for item, _ in queued}
    names = {item.name for item, _ in queued}
    assert {"ProviderFake", "StrOutputParser", "_Docs", "lookup", "broken"} <= names
    assert ("generation", False) in kinds and ("span", True) in kinds and ("trace", True) in kinds
    models = [i for i, _ in queued if i.kind.value == "generation"]
    assert any((i.model_parameters or {}).get("stream") is True for i in models)
    assert any(i.tools for i in models)
    for item, size in queued:
        assert isinstance(item, FinishedSpan)
        assert size is not None, item.name  # every run kept its estimate
        assert size == estimate_bytes(item), item.name
    assert len(rec.events()) == len(queued)


def test_a_streaming_chain_that_reports_its_inputs_at_the_end(
    rec: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    queued = _spy(rec, monkeypatch)
    handler = rec.handler()
    run = uuid.uuid4()
    handler.on_chain_start({"name": "s"}, {"input": ""}, run_id=run)
    handler.on_retry(object(), run_id=run)
    handler.on_chain_end({"out": "y" * 300}, run_id=run, inputs={"input": "z" * 1000})
    [(item, size)] = queued
    assert item.input == {"input": "z" * 1000}
    assert size == estimate_bytes(item) > 1300


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


def test_an_exporter_like_object_without_size_still_gets_every_run() -> None:
    old = _OldRecorder()
    handler = CallbackHandler(old)
    chain = ChatPromptTemplate.from_messages([("human", "{q}")]) | ProviderFake(
        responses=[AIMessage(content="hi")]
    )
    chain.invoke({"q": "hello"}, config={"callbacks": [handler]})
    assert handler.callback_errors == 0
    assert sorted(s.name for s in old.spans) == [
        "ChatPromptTemplate",
        "ProviderFake",
        "RunnableSequence",
    ]
