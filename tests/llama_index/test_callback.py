"""CallbackHandler on the callback manager: query and chat engines, streams, errors."""

from __future__ import annotations

import asyncio

import pytest
from llama_index.core import Settings, VectorStoreIndex
from llama_index.core.base.llms.types import ChatMessage
from llama_index.core.base.response.schema import AsyncStreamingResponse, StreamingResponse
from llama_index.core.callbacks import CallbackManager
from llama_index.core.chat_engine.types import ChatMode, StreamingAgentChatResponse

from posthog_callbacks import PosthogExporter
from posthog_callbacks.llama_index import CallbackHandler, trace_context
from support.llama_helpers import Events, UsageLLM, check_trees, one, props, tree

QUERY_TREE = [
    "$ai_trace query",
    "  $ai_span query",
    "    $ai_span retrieve",
    "      $ai_embedding embedding.embed",
    "    $ai_span synthesize",
    "      $ai_span chunking",
    "      $ai_span chunking",
    "      $ai_span templating",
    "      $ai_generation llm.complete",
]


def test_query_engine(
    handler: CallbackHandler, index: VectorStoreIndex, events: Events, exporter: PosthogExporter
) -> None:
    exporter.flush()
    exporter.sink.clear()  # type: ignore[union-attr]
    with trace_context(user_id="u1", session_id="s1"):
        assert str(index.as_query_engine(similarity_top_k=2).query("What?")) == "forty two"
    got = events()
    assert len(check_trees(got)) == 1
    assert tree(got) == QUERY_TREE
    assert {e["distinct_id"] for e in got} == {"u1"}
    assert {props(e)["$ai_session_id"] for e in got} == {"s1"}
    root = props(next(e for e in got if e["event"] == "$ai_trace"))
    assert (root["$ai_input_state"], root["$ai_output_state"]) == ("What?", "forty two")
    retrieved = props(one(got, "retrieve"))["$ai_output_state"]
    assert len(retrieved) == 2
    gen = props(one(got, "llm.complete"))
    assert gen["$ai_model"] == "mock-gpt-0613"
    assert (gen["$ai_input_tokens"], gen["$ai_output_tokens"]) == (11, 3)
    assert gen["$ai_output_choices"] == [{"role": "assistant", "content": "forty two"}]
    assert "What?" in gen["$ai_input"][0]["content"]
    assert handler.open_runs() == 0


def test_index_construction_is_one_trace(handler: CallbackHandler, events: Events) -> None:
    from llama_index.core import Document

    VectorStoreIndex.from_documents([Document(text="a b c"), Document(text="d e f")])
    got = events()
    assert len(check_trees(got)) == 1
    root = props(next(e for e in got if e["event"] == "$ai_trace"))
    assert root["$ai_span_name"] == "index_construction"
    emb = props(one(got, "embedding.embed"))
    assert emb["$ai_input"] == ["a b c", "d e f"]


def test_chat_engine(
    handler: CallbackHandler, index: VectorStoreIndex, events: Events, exporter: PosthogExporter
) -> None:
    exporter.flush()
    exporter.sink.clear()  # type: ignore[union-attr]
    engine = index.as_chat_engine(chat_mode=ChatMode.CONDENSE_PLUS_CONTEXT)
    assert str(engine.chat("hi")) == "forty two"
    got = events()
    assert len(check_trees(got)) == 1
    root = props(next(e for e in got if e["event"] == "$ai_trace"))
    assert root["$ai_span_name"] == "chat"
    assert root["$ai_input_state"] == "hi"
    assert root["$ai_output_state"] == "forty two"
    assert [e["event"] for e in got].count("$ai_generation") == 1


def test_streaming_query_keeps_the_trace_open(
    handler: CallbackHandler, index: VectorStoreIndex, events: Events, exporter: PosthogExporter
) -> None:
    exporter.flush()
    exporter.sink.clear()  # type: ignore[union-attr]
    response = index.as_query_engine(streaming=True).query("What?")
    assert not [e for e in events() if e["event"] in ("$ai_trace", "$ai_generation")]
    assert isinstance(response, (StreamingResponse, StreamingAgentChatResponse))
    assert "".join(response.response_gen) == "forty two"
    got = events()
    assert len(check_trees(got)) == 1  # the lazily started model call joined the query
    gen = props(one(got, "llm.complete"))
    assert gen["$ai_output_choices"] == [{"role": "assistant", "content": "forty two"}]
    assert (gen["$ai_input_tokens"], gen["$ai_output_tokens"]) == (11, 3)
    root = props(next(e for e in got if e["event"] == "$ai_trace"))
    assert root["$ai_output_state"] == "forty two"
    assert handler.open_runs() == 0


def test_model_error(
    handler: CallbackHandler, index: VectorStoreIndex, events: Events, exporter: PosthogExporter
) -> None:
    exporter.flush()
    exporter.sink.clear()  # type: ignore[union-attr]
    Settings.llm = UsageLLM(fail_with="model down")
    with pytest.raises(RuntimeError, match="model down"):
        index.as_query_engine().query("What?")
    got = events()
    check_trees(got)
    gen = props(one(got, "llm.complete"))
    assert gen["$ai_is_error"] is True and gen["$ai_error"] == "RuntimeError: model down"
    root = props(next(e for e in got if e["event"] == "$ai_trace"))
    assert root["$ai_is_error"] is True
    assert handler.open_runs() == 0


def test_custom_llm_chat_is_one_generation(handler: CallbackHandler, events: Events) -> None:
    UsageLLM(callback_manager=Settings.callback_manager).chat(
        [ChatMessage(role="user", content="hello")]
    )
    got = events()
    check_trees(got)
    gens = [e for e in got if e["event"] == "$ai_generation"]
    assert len(gens) == 1
    assert props(gens[0])["$ai_input"] == [{"role": "user", "content": "hello"}]
    assert (props(gens[0])["$ai_input_tokens"], props(gens[0])["$ai_output_tokens"]) == (11, 3)
    root = props(next(e for e in got if e["event"] == "$ai_trace"))
    assert root["$ai_span_name"] == "chat"


async def test_fifty_concurrent_aqueries(
    handler: CallbackHandler, index: VectorStoreIndex, events: Events, exporter: PosthogExporter
) -> None:
    exporter.flush()
    exporter.sink.clear()  # type: ignore[union-attr]
    engine = index.as_query_engine()

    async def ask(i: int) -> object:
        with trace_context(user_id=f"user-{i}"):
            return await engine.aquery(f"question {i}")

    await asyncio.gather(*(ask(i) for i in range(50)))
    traces = check_trees(events())
    assert len(traces) == 50
    for group in traces.values():
        root = next(e for e in group if e["event"] == "$ai_trace")
        i = int(props(root)["$ai_input_state"].split()[-1])
        assert {e["distinct_id"] for e in group} == {f"user-{i}"}
        gen = next(e for e in group if e["event"] == "$ai_generation")
        assert f"question {i}" in props(gen)["$ai_input"][0]["content"]
    assert handler.open_runs() == 0


def test_bad_options_raise_at_construction(exporter: PosthogExporter) -> None:
    with pytest.raises(TypeError):
        CallbackHandler(object())
    with pytest.raises(TypeError):
        CallbackHandler(exporter, tags="not-a-list")
    with pytest.raises(TypeError):
        CallbackHandler(exporter, properties=["x"])  # type: ignore[arg-type]


@pytest.mark.parametrize("mode", ["condense_plus_context", "context", "simple"])
def test_streaming_chat_engine_is_one_trace(
    handler: CallbackHandler,
    index: VectorStoreIndex,
    events: Events,
    exporter: PosthogExporter,
    mode: str,
) -> None:
    exporter.flush()
    exporter.sink.clear()  # type: ignore[union-attr]
    response = index.as_chat_engine(chat_mode=ChatMode(mode)).stream_chat("hi")
    assert isinstance(response, (StreamingResponse, StreamingAgentChatResponse))
    assert "".join(response.response_gen) == "forty two"
    if response.write_response_to_history_thread is not None:
        response.write_response_to_history_thread.join(timeout=5)
    got = events()
    assert len(check_trees(got)) == 1
    gen = props(next(e for e in got if e["event"] == "$ai_generation"))
    assert gen["$ai_output_choices"][0]["content"] == "forty two"
    root = props(next(e for e in got if e["event"] == "$ai_trace"))
    assert (root["$ai_span_name"], root["$ai_input_state"]) == ("chat", "hi")
    assert handler.open_runs() == 0


async def test_async_streaming_query(
    handler: CallbackHandler, index: VectorStoreIndex, events: Events, exporter: PosthogExporter
) -> None:
    exporter.flush()
    exporter.sink.clear()  # type: ignore[union-attr]
    response = await index.as_query_engine(streaming=True).aquery("What?")
    assert isinstance(response, AsyncStreamingResponse)
    assert "".join([t async for t in response.async_response_gen()]) == "forty two"
    got = events()
    assert len(check_trees(got)) == 1
    gens = [props(e) for e in got if e["event"] == "$ai_generation"]
    assert len(gens) == 1
    assert (gens[0]["$ai_input_tokens"], gens[0]["$ai_output_tokens"]) == (11, 3)
    root = props(next(e for e in got if e["event"] == "$ai_trace"))
    assert root["$ai_output_state"] == "forty two"
    assert handler.open_runs() == 0


def test_abandoned_stream_is_closed_by_the_ttl() -> None:
    import time

    from posthog_callbacks import MemorySink

    exporter = PosthogExporter(sink=MemorySink(), open_run_ttl=0.2, flush_interval=0.05)
    handler = CallbackHandler(exporter)
    llm = UsageLLM(callback_manager=CallbackManager([handler]))
    try:
        llm.complete("warm up")  # (the exporter's worker starts with a first event)
        stream = llm.stream_complete("hello")
        assert next(stream).delta == "forty"  # read once, then left hanging
        sink = exporter.sink
        deadline = time.monotonic() + 10
        while len(sink.events) < 3 and time.monotonic() < deadline:  # type: ignore[union-attr]
            time.sleep(0.05)
        late = [props(e) for e in sink.events[1:]]  # type: ignore[union-attr]
        gen = next(p for p in late if p["$ai_span_name"] == "llm.complete")
        assert gen["$ai_is_error"] is True and "never ended" in gen["$ai_error"]
        assert len(handler.runs) == 0
        del stream
    finally:
        exporter.shutdown(timeout=2)
