"""Each model call and embedding is exported once, whichever LlamaIndex doors are attached.

Oracles: the mock LLM counts the calls and tokens it served, the counting embedding model
the texts of every embedding call it served; the tests compare them with what was exported.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any
from unittest.mock import MagicMock

import pytest
from llama_index.core import Document, Settings, VectorStoreIndex
from llama_index.core.callbacks import CallbackManager
from llama_index.core.llms import ChatMessage

from posthog_callbacks import MemorySink, PosthogExporter
from posthog_callbacks.llama_index import CallbackHandler, InstrumentHandle, instrument
from support.llama_helpers import CountingEmbedding, Events, UsageLLM, check_trees, props

DOCS = [
    Document(text="The answer to everything is forty two.", id_="doc-42"),
    Document(text="Paris is the capital of France.", id_="doc-paris"),
]


@pytest.fixture
def llm() -> UsageLLM:
    model = UsageLLM()
    Settings.llm = model
    return model


@pytest.fixture
def embed() -> CountingEmbedding:
    model = CountingEmbedding(embed_dim=8, embed_batch_size=10)
    Settings.embed_model = model
    return model


@pytest.fixture(params=["callback first", "instrument first"])
def both_doors(request: pytest.FixtureRequest, exporter: PosthogExporter) -> Iterator[None]:
    """The callback handler and instrument() on one exporter, attached in either order."""
    handle: InstrumentHandle | None = None
    if request.param == "instrument first":
        handle = instrument(exporter)
    Settings.callback_manager = CallbackManager([CallbackHandler(exporter)])
    if handle is None:
        handle = instrument(exporter)
    yield
    handle.uninstrument()


def kinds(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [e for e in events if e["event"] == kind]


def assert_served_once(events: list[dict[str, Any]], llm: UsageLLM) -> None:
    # the model really reports to a CallbackHandler (it takes Settings' manager when built)
    assert any(isinstance(h, CallbackHandler) for h in llm.callback_manager.handlers)
    gens = kinds(events, "$ai_generation")
    assert llm.calls > 0
    assert len(gens) == llm.calls
    exported = (
        sum(props(g)["$ai_input_tokens"] for g in gens),
        sum(props(g)["$ai_output_tokens"] for g in gens),
    )
    assert exported == llm.served_tokens()


@pytest.mark.usefixtures("both_doors")
def test_both_doors_direct_calls_sync(llm: UsageLLM, events: Events) -> None:
    llm.complete("one")
    llm.chat([ChatMessage(role="user", content="two")])  # chat() -> complete(): one call
    "".join(r.delta or "" for r in llm.stream_complete("three"))
    got = events()
    assert_served_once(got, llm)
    assert llm.calls == 3
    check_trees(got)


@pytest.mark.usefixtures("both_doors")
def test_both_doors_direct_calls_async(llm: UsageLLM, events: Events) -> None:
    async def main() -> None:
        await llm.acomplete("one")
        await llm.achat([ChatMessage(role="user", content="two")])
        await asyncio.gather(*(llm.acomplete(f"q{i}") for i in range(5)))

    asyncio.run(main())
    got = events()
    assert llm.calls == 7
    assert_served_once(got, llm)
    check_trees(got)


@pytest.mark.usefixtures("both_doors")
def test_both_doors_query_engine(llm: UsageLLM, embed: CountingEmbedding, events: Events) -> None:
    index = VectorStoreIndex.from_documents(DOCS)
    engine = index.as_query_engine(similarity_top_k=1)
    embed.served.clear()
    events()
    exporter_events_before = len(events())
    engine.query("What is the answer?")
    asyncio.run(engine.aquery("What is the capital?"))
    got = events()[exporter_events_before:]
    assert_served_once(got, llm)
    assert llm.calls == 2
    # one query embedding per query, one retrieval per query
    assert [props(e)["$ai_input"] for e in kinds(got, "$ai_embedding")] == [
        "What is the answer?",
        "What is the capital?",
    ]
    assert embed.served == [["What is the answer?"], ["What is the capital?"]]
    retrievals = [e for e in got if props(e)["$ai_span_name"].endswith((".retrieve", ".aretrieve"))]
    assert len(retrievals) == 2
    traces = check_trees(got)
    assert len(traces) == 2
    assert {props(e)["$ai_span_name"] for e in kinds(got, "$ai_trace")} == {
        "RetrieverQueryEngine.query",
        "RetrieverQueryEngine.aquery",
    }


def test_callback_door_alone_still_records(
    handler: CallbackHandler, llm: UsageLLM, events: Events
) -> None:
    llm.complete("one")
    got = events()
    assert_served_once(got, llm)
    assert handler.open_runs() == 0


def test_callback_door_records_again_after_uninstrument(
    exporter: PosthogExporter, handler: CallbackHandler, llm: UsageLLM, events: Events
) -> None:
    with instrument(exporter):
        llm.complete("one")
    llm.complete("two")
    got = events()
    assert_served_once(got, llm)
    assert [props(g)["$ai_input"][0]["content"] for g in kinds(got, "$ai_generation")] == [
        "one",
        "two",
    ]


def test_doors_on_different_exporters_each_record(exporter: PosthogExporter) -> None:
    other = PosthogExporter(sink=MemorySink())
    Settings.callback_manager = CallbackManager([CallbackHandler(other)])
    llm = UsageLLM()
    try:
        with instrument(exporter):
            llm.complete("one")
        for ex in (exporter, other):
            assert ex.flush(timeout=10)
            gens = kinds(list(ex.sink.events), "$ai_generation")  # type: ignore[union-attr]
            assert len(gens) == 1
    finally:
        other.shutdown(timeout=2)


# -- embedding batches (instrument door) --------------------------------------------------

TEXTS = [f"text number {i}" for i in range(25)]


def assert_one_event_per_call(got: list[dict[str, Any]], embed: CountingEmbedding) -> None:
    embeddings = kinds(got, "$ai_embedding")
    assert len(embed.served) == 3  # 25 texts in batches of 10
    assert len(embeddings) == len(embed.served)
    exported = sorted(
        (
            props(e)["$ai_input"]
            if isinstance(props(e)["$ai_input"], list)
            else [props(e)["$ai_input"]]
        )
        for e in embeddings
    )
    assert exported == sorted(embed.served)
    assert sorted(props(e)["$ai_model_parameters"]["chunks"] for e in embeddings) == [5, 10, 10]


@pytest.mark.usefixtures("instrumented")
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_embedding_batch_one_event_per_call(
    mode: str, embed: CountingEmbedding, events: Events
) -> None:
    if mode == "sync":
        embed.get_text_embedding_batch(TEXTS)
    else:
        asyncio.run(embed.aget_text_embedding_batch(TEXTS))
    got = events()
    assert_one_event_per_call(got, embed)
    traces = check_trees(got)
    assert len(traces) == 1
    (root,) = kinds(got, "$ai_trace")
    assert props(root)["$ai_span_name"] == (
        "CountingEmbedding.get_text_embedding_batch"
        if mode == "sync"
        else "CountingEmbedding.aget_text_embedding_batch"
    )
    assert all(
        props(e)["$ai_parent_id"] == props(root)["$ai_trace_id"] for e in got if e is not root
    )


@pytest.mark.usefixtures("instrumented")
@pytest.mark.parametrize("use_async", [False, True])
def test_index_construction_one_event_per_call(
    use_async: bool, embed: CountingEmbedding, events: Events
) -> None:
    docs = [Document(text=t) for t in TEXTS]
    VectorStoreIndex.from_documents(docs, use_async=use_async)
    got = events()
    assert_one_event_per_call(got, embed)
    check_trees(got)  # every trace has its root


@pytest.mark.usefixtures("both_doors")
def test_embedding_batch_both_doors(embed: CountingEmbedding, events: Events) -> None:
    asyncio.run(embed.aget_text_embedding_batch(TEXTS))
    got = events()
    assert_one_event_per_call(got, embed)
    check_trees(got)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_embedding_batch_callback_door(
    mode: str, handler: CallbackHandler, embed: CountingEmbedding, events: Events
) -> None:
    if mode == "sync":
        embed.get_text_embedding_batch(TEXTS)
    else:
        asyncio.run(embed.aget_text_embedding_batch(TEXTS))
    got = events()
    assert_one_event_per_call(got, embed)
    check_trees(got)


# -- what the doors accept as exporter -----------------------------------------------------


def test_both_doors_accept_a_client_and_share_its_exporter() -> None:
    client = MagicMock()  # how users' test suites stand in for a posthog.Posthog client
    handler = CallbackHandler(client)  # raised TypeError before
    Settings.callback_manager = CallbackManager([handler])
    llm = UsageLLM()
    handle = instrument(client)
    try:
        assert handler.exporter is handle.exporter  # one exporter per client
        llm.complete("one")
    finally:
        handle.uninstrument()
    llm.complete("two")  # the callback door records again
    assert handler.exporter.flush(timeout=10)  # type: ignore[attr-defined]
    handler.exporter.shutdown(timeout=2)  # type: ignore[attr-defined]
    captured = [c.kwargs for c in client.capture.call_args_list]
    gens = [c for c in captured if c["event"] == "$ai_generation"]
    assert [g["properties"]["$ai_input"][0]["content"] for g in gens] == ["one", "two"]
    assert llm.calls == 2


def test_not_an_exporter_raises_at_construction() -> None:
    with pytest.raises(TypeError, match="PosthogExporter"):
        CallbackHandler("not an exporter")
    with pytest.raises(TypeError, match="PosthogExporter"):
        instrument(42)
