"""Concurrency suite: many invocations at once on one handler and one exporter.

Each trace's tree must be exactly right (one root whose id is the trace id, every span's
parent in its own trace, the right spans under the right parents, the right counts), no
span may land in another trace, nothing may be dropped, and the run tables must be empty
afterwards. Fake models answer instantly so this measures our bookkeeping, not sleeps.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import Runnable, RunnableLambda, RunnableParallel
from llama_index.core import Document, Settings, VectorStoreIndex
from llama_index.core.callbacks import CallbackManager
from llama_index.core.embeddings import MockEmbedding

from posthog_callbacks import MemorySink, PosthogExporter
from posthog_callbacks.langchain import CallbackHandler
from posthog_callbacks.llama_index import CallbackHandler as LlamaCallbackHandler
from posthog_callbacks.llama_index import instrument, trace_context
from support.reliability_fakes import EchoChat, MockLLM
from support.reliability_helpers import check_tree, group_by_trace, span_key

# span name -> (event, parent span name) of one invocation of the LangChain chain below
LC_TREE = {
    "root": ("$ai_trace", None),
    "prep": ("$ai_span", "root"),
    "RunnableParallel<answer,echo>": ("$ai_span", "root"),
    "answer": ("$ai_span", "RunnableParallel<answer,echo>"),
    "ChatPromptTemplate": ("$ai_span", "answer"),
    "EchoChat": ("$ai_generation", "answer"),
    "StrOutputParser": ("$ai_span", "answer"),
    "echo": ("$ai_span", "RunnableParallel<answer,echo>"),
}


def lc_chain() -> Runnable[Any, Any]:
    """prep -> parallel(answer: prompt | model | parser, echo); the parallel branches run
    on a thread pool in sync invokes, so parent links cross threads."""
    prompt = ChatPromptTemplate.from_messages([("user", "{q}")])
    answer = (prompt | EchoChat() | StrOutputParser()).with_config(run_name="answer")
    prep: RunnableLambda[dict[str, str], dict[str, str]] = RunnableLambda(
        lambda x: {"q": x["q"]}, name="prep"
    )
    echo = RunnableLambda(lambda d: d["q"], name="echo")
    return prep | RunnableParallel(answer=answer, echo=echo)


@pytest.fixture
def exporter() -> Iterator[PosthogExporter]:
    exp = PosthogExporter(sink=MemorySink(), max_queue_size=200_000)
    yield exp
    exp.shutdown(timeout=5)


def events_of(exporter: PosthogExporter) -> list[dict[str, Any]]:
    assert exporter.flush(timeout=30)
    stats = exporter.stats()
    assert stats.dropped == 0, stats
    return list(exporter.sink.events)  # type: ignore[union-attr]


def check_lc_traces(events: list[dict[str, Any]], expected_questions: set[str]) -> None:
    """Every trace is one invocation, its tree exactly LC_TREE, its content its own."""
    traces = group_by_trace(events)
    assert len(traces) == len(expected_questions)
    seen: set[str] = set()
    for trace_id, group in traces.items():
        spans = check_tree(group, trace_id)
        assert set(spans) == set(LC_TREE)
        ids = {name: span_key(e) for name, e in spans.items()}
        for name, (event, parent) in LC_TREE.items():
            assert spans[name]["event"] == event
            assert spans[name]["properties"].get("$ai_parent_id") == (
                ids[parent] if parent else None
            )
        q = spans["root"]["properties"]["$ai_input_state"]["q"]
        seen.add(q)
        user = q.split()[0]
        # no span of another invocation: content and user are this trace's own
        assert {e["distinct_id"] for e in group} == {user}
        gen = spans["EchoChat"]["properties"]
        assert gen["$ai_input"] == [{"role": "user", "content": q}]
        assert gen["$ai_output_choices"][0]["content"] == f"echo:{q}"
        assert (gen["$ai_input_tokens"], gen["$ai_output_tokens"]) == (len(q.split()), 1)
        assert spans["echo"]["properties"]["$ai_output_state"] == q
    assert seen == expected_questions


def test_8_threads_x_200_sync_invokes_on_one_handler(exporter: PosthogExporter) -> None:
    handler = CallbackHandler(exporter)
    chain = lc_chain()
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            for i in range(200):
                q = f"user{t}-{i} " + "w " * (i % 5)
                out = chain.invoke(
                    {"q": q},
                    config={
                        "callbacks": [handler],
                        "run_name": "root",
                        "metadata": {"user_id": f"user{t}-{i}"},
                    },
                )
                assert out == {"answer": f"echo:{q}", "echo": q}
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    events = events_of(exporter)
    assert len(events) == 8 * 200 * len(LC_TREE)
    check_lc_traces(
        events, {f"user{t}-{i} " + "w " * (i % 5) for t in range(8) for i in range(200)}
    )
    assert handler.open_runs() == 0
    assert exporter.stats().open_runs == 0


async def test_500_concurrent_ainvokes_on_one_handler(exporter: PosthogExporter) -> None:
    handler = CallbackHandler(exporter)
    chain = lc_chain()
    questions = [f"user{i} " + "w " * (i % 7) for i in range(500)]
    outs = await asyncio.gather(
        *(
            chain.ainvoke(
                {"q": q},
                config={
                    "callbacks": [handler],
                    "run_name": "root",
                    "metadata": {"user_id": q.split()[0]},
                },
            )
            for q in questions
        )
    )
    assert outs == [{"answer": f"echo:{q}", "echo": q} for q in questions]
    events = events_of(exporter)
    assert len(events) == 500 * len(LC_TREE)
    check_lc_traces(events, set(questions))
    assert handler.open_runs() == 0
    assert exporter.stats().open_runs == 0


# -- LlamaIndex ---------------------------------------------------------------------------


@pytest.fixture
def llama_settings() -> Iterator[None]:
    saved = (Settings._llm, Settings._embed_model, Settings._callback_manager)
    Settings.llm = MockLLM()
    Settings.embed_model = MockEmbedding(embed_dim=8)
    Settings.callback_manager = CallbackManager([])
    yield
    Settings._llm, Settings._embed_model, Settings._callback_manager = saved


def make_index() -> VectorStoreIndex:
    docs = [
        Document(text="The answer to everything is forty two.", id_="doc-42"),
        Document(text="Paris is the capital of France.", id_="doc-paris"),
    ]
    return VectorStoreIndex.from_documents(docs)


def tree_shape(group: list[dict[str, Any]]) -> Counter[tuple[str, str, str | None]]:
    """(event, span name, parent's span name) for every event of one trace."""
    names = {span_key(e): e["properties"]["$ai_span_name"] for e in group}
    return Counter(
        (
            e["event"],
            e["properties"]["$ai_span_name"],
            names.get(e["properties"].get("$ai_parent_id", "")),
        )
        for e in group
    )


async def ask_100(engine: Any) -> None:
    async def ask(i: int) -> str:
        with trace_context(user_id=f"user-{i}"):
            return str(await engine.aquery(f"question {i}"))

    answers = await asyncio.gather(*(ask(i) for i in range(100)))
    assert answers == ["forty two"] * 100


def check_llama_traces(events: list[dict[str, Any]], shape: dict[Any, int]) -> None:
    traces = group_by_trace(events)
    assert len(traces) == 100
    users = set()
    for trace_id, group in traces.items():
        roots = [e for e in group if "$ai_parent_id" not in e["properties"]]
        assert len(roots) == 1 and span_key(roots[0]) == trace_id
        ids = {span_key(e) for e in group}
        assert len(ids) == len(group)
        assert all(e["properties"].get("$ai_parent_id", trace_id) in ids for e in group)
        assert tree_shape(group) == Counter(shape)
        i = int(str(roots[0]["properties"]["$ai_input_state"]).split()[-1])
        users.add(i)
        assert {e["distinct_id"] for e in group} == {f"user-{i}"}
        (gen,) = [e for e in group if e["event"] == "$ai_generation"]
        assert f"question {i}" in gen["properties"]["$ai_input"][0]["content"]
        assert (gen["properties"]["$ai_input_tokens"], gen["properties"]["$ai_output_tokens"]) == (
            11,
            3,
        )
    assert users == set(range(100))


async def test_100_concurrent_llama_index_aqueries_instrument(
    exporter: PosthogExporter, llama_settings: None
) -> None:
    engine = make_index().as_query_engine()
    handle = instrument(exporter)
    try:
        await ask_100(engine)
        check_llama_traces(
            events_of(exporter),
            {
                ("$ai_trace", "RetrieverQueryEngine.aquery", None): 1,
                ("$ai_span", "VectorIndexRetriever.aretrieve", "RetrieverQueryEngine.aquery"): 1,
                ("$ai_embedding", "embedding.embed", "VectorIndexRetriever.aretrieve"): 1,
                ("$ai_span", "CompactAndRefine.asynthesize", "RetrieverQueryEngine.aquery"): 1,
                ("$ai_generation", "mock-gpt.complete", "CompactAndRefine.asynthesize"): 1,
            },
        )
        assert handle.open_runs() == 0
    finally:
        handle.uninstrument()
    assert exporter.stats().open_runs == 0


async def test_100_concurrent_llama_index_aqueries_callback_handler(
    exporter: PosthogExporter, llama_settings: None
) -> None:
    handler = LlamaCallbackHandler(exporter)
    Settings.callback_manager = CallbackManager([handler])
    engine = make_index().as_query_engine()  # built after the manager: retrieval is seen
    exporter.flush()
    exporter.sink.clear()  # type: ignore[union-attr]  # index building's embeddings
    await ask_100(engine)
    check_llama_traces(
        events_of(exporter),
        {
            ("$ai_trace", "query", None): 1,
            ("$ai_span", "query", "query"): 1,
            ("$ai_span", "retrieve", "query"): 1,
            ("$ai_embedding", "embedding.embed", "retrieve"): 1,
            ("$ai_span", "synthesize", "query"): 1,
            ("$ai_span", "chunking", "synthesize"): 2,
            ("$ai_span", "templating", "synthesize"): 1,
            ("$ai_generation", "llm.complete", "synthesize"): 1,
        },
    )
    assert len(handler.runs) == 0
    assert exporter.stats().open_runs == 0
