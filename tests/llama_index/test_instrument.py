"""instrument(): query and chat engines, streams, errors, concurrency (mock models)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from llama_index.core import Settings, VectorStoreIndex
from llama_index.core.base.llms.types import ChatMessage
from llama_index.core.base.response.schema import (
    AsyncStreamingResponse,
    Response,
    StreamingResponse,
)
from llama_index.core.chat_engine.types import ChatMode, StreamingAgentChatResponse

from posthog_callbacks import PosthogExporter
from posthog_callbacks.llama_index import InstrumentHandle, instrument, trace_context
from support.llama_helpers import Events, UsageLLM, by_name, check_trees, one, props, tree

ANSWER_DOCS = {"The answer to everything is forty two.", "Paris is the capital of France."}


def test_query_engine_one_readable_trace(
    index: VectorStoreIndex, instrumented: InstrumentHandle, events: Events
) -> None:
    with trace_context(user_id="u1", session_id="s1"):
        response = index.as_query_engine(similarity_top_k=2).query("What is the answer?")
    assert str(response) == "forty two"
    got = events()
    assert len(check_trees(got)) == 1
    assert tree(got) == [
        "$ai_trace RetrieverQueryEngine.query",
        "  $ai_span VectorIndexRetriever.retrieve",
        "    $ai_embedding embedding.embed",
        "  $ai_span CompactAndRefine.synthesize",
        "    $ai_generation mock-gpt.complete",
    ]
    assert {e["distinct_id"] for e in got} == {"u1"}
    assert {props(e)["$ai_session_id"] for e in got} == {"s1"}

    root = one(got, "RetrieverQueryEngine.query")
    assert props(root)["$ai_input_state"] == "What is the answer?"
    assert props(root)["$ai_output_state"] == "forty two"
    assert props(root)["$ai_is_error"] is False

    retrieved = props(one(got, "VectorIndexRetriever.retrieve"))["$ai_output_state"]
    assert {n["text"] for n in retrieved} == ANSWER_DOCS
    assert all(isinstance(n["score"], float) and n["id"] for n in retrieved)

    gen = props(one(got, "mock-gpt.complete"))
    assert gen["$ai_model"] == "mock-gpt-0613"  # the model the response reports wins
    assert "$ai_provider" not in gen  # a custom LLM class names no provider
    assert (gen["$ai_input_tokens"], gen["$ai_output_tokens"]) == (11, 3)
    assert "$ai_usage_missing_reason" not in gen
    assert gen["$ai_input"][0]["role"] == "user"
    assert "What is the answer?" in gen["$ai_input"][0]["content"]
    assert gen["$ai_output_choices"] == [{"role": "assistant", "content": "forty two"}]

    emb = props(one(got, "embedding.embed"))
    assert emb["$ai_input"] == "What is the answer?"
    assert "$ai_input_tokens" not in emb


def test_one_trace_per_top_level_call(
    index: VectorStoreIndex, instrumented: InstrumentHandle, events: Events
) -> None:
    engine = index.as_query_engine()
    engine.query("one")
    engine.query("two")
    traces = check_trees(events())
    assert len(traces) == 2
    inputs = sorted(
        props(e)["$ai_input_state"] for g in traces.values() for e in g if e["event"] == "$ai_trace"
    )
    assert inputs == ["one", "two"]


def test_chat_engine(
    index: VectorStoreIndex, instrumented: InstrumentHandle, events: Events
) -> None:
    engine = index.as_chat_engine(chat_mode=ChatMode.CONDENSE_PLUS_CONTEXT)
    assert str(engine.chat("hi")) == "forty two"
    got = events()
    check_trees(got)
    assert tree(got) == [
        "$ai_trace CondensePlusContextChatEngine.chat",
        "  $ai_span VectorIndexRetriever.retrieve",
        "    $ai_embedding embedding.embed",
        "  $ai_span CompactAndRefine.synthesize",
        "    $ai_generation mock-gpt.complete",
    ]
    root = props(one(got, "CondensePlusContextChatEngine.chat"))
    assert (root["$ai_input_state"], root["$ai_output_state"]) == ("hi", "forty two")


def test_streaming_query_stays_open_until_the_stream_ends(
    index: VectorStoreIndex, instrumented: InstrumentHandle, events: Events
) -> None:
    response = index.as_query_engine(streaming=True).query("What is the answer?")
    before = events()
    assert [e["event"] for e in before if e["event"] in ("$ai_trace", "$ai_generation")] == []
    assert isinstance(response, (StreamingResponse, StreamingAgentChatResponse))
    assert "".join(response.response_gen) == "forty two"
    got = events()
    check_trees(got)
    assert tree(got) == [
        "$ai_trace RetrieverQueryEngine.query",
        "  $ai_span VectorIndexRetriever.retrieve",
        "    $ai_embedding embedding.embed",
        "  $ai_span CompactAndRefine.synthesize",
        "  $ai_generation mock-gpt.complete",  # started lazily by the caller's read
    ]
    gen = props(one(got, "mock-gpt.complete"))
    assert gen["$ai_output_choices"] == [{"role": "assistant", "content": "forty two"}]
    assert (gen["$ai_input_tokens"], gen["$ai_output_tokens"]) == (11, 3)
    assert 0 < gen["$ai_time_to_first_token"] <= gen["$ai_latency"]
    assert gen["$ai_stream"] is True
    root = props(one(got, "RetrieverQueryEngine.query"))
    assert root["$ai_output_state"] == "forty two"
    assert root["$ai_latency"] >= gen["$ai_latency"]
    assert instrumented.open_runs() == 0


def test_model_error_marks_generation_spans_and_trace(
    index: VectorStoreIndex, instrumented: InstrumentHandle, events: Events
) -> None:
    Settings.llm = UsageLLM(fail_with="model down")
    with pytest.raises(RuntimeError, match="model down"):
        index.as_query_engine().query("What is the answer?")
    got = events()
    check_trees(got)
    errors = {
        props(e)["$ai_span_name"]: props(e).get("$ai_error")
        for e in got
        if props(e)["$ai_is_error"]
    }
    assert errors == {
        "RetrieverQueryEngine.query": "RuntimeError: model down",
        "CompactAndRefine.synthesize": "RuntimeError: model down",
        "mock-gpt.complete": "RuntimeError: model down",
    }
    assert props(one(got, "mock-gpt.complete"))["$ai_http_status"] == 500
    assert instrumented.open_runs() == 0


def test_custom_llm_chat_is_one_generation(instrumented: InstrumentHandle, events: Events) -> None:
    # CustomLLM.chat calls complete(): both fire start/end events; one model call.
    reply = UsageLLM().chat([ChatMessage(role="user", content="hello")])
    assert reply.message.content == "forty two"
    got = events()
    check_trees(got)
    assert [(e["event"], props(e)["$ai_span_name"]) for e in got] == [
        ("$ai_generation", "mock-gpt.chat")
    ]
    gen = props(got[0])
    assert "$ai_parent_id" not in gen  # a lone model call is its own trace
    assert gen["$ai_input"] == [{"role": "user", "content": "hello"}]
    assert (gen["$ai_input_tokens"], gen["$ai_output_tokens"]) == (11, 3)


def test_what_the_program_mutates_after_a_call_is_recorded_as_it_was(
    index: VectorStoreIndex, instrumented: InstrumentHandle, events: Events
) -> None:
    # The spans reach the worker only at the flush below: by then the program has
    # changed the retrieved nodes, the response and the chat messages it passed in.
    response = index.as_query_engine(similarity_top_k=2).query("What is the answer?")
    assert isinstance(response, Response)
    for hit in response.source_nodes:
        hit.score = -1.0
        hit.node.set_content("changed by the program")
    response.response = "changed answer"
    history = [ChatMessage(role="user", content="hello")]
    UsageLLM().chat(history)
    history[0].content = "changed message"
    history.append(ChatMessage(role="user", content="added later"))

    got = events()
    retrieved = props(one(got, "VectorIndexRetriever.retrieve"))["$ai_output_state"]
    assert {n["text"] for n in retrieved} == ANSWER_DOCS
    assert all(n["score"] >= 0 for n in retrieved)
    assert props(one(got, "RetrieverQueryEngine.query"))["$ai_output_state"] == "forty two"
    assert props(one(got, "mock-gpt.chat"))["$ai_input"] == [{"role": "user", "content": "hello"}]


async def test_fifty_concurrent_aqueries(
    index: VectorStoreIndex, instrumented: InstrumentHandle, events: Events
) -> None:
    engine = index.as_query_engine()

    async def ask(i: int) -> Any:
        with trace_context(user_id=f"user-{i}"):
            return await engine.aquery(f"question {i}")

    answers = await asyncio.gather(*(ask(i) for i in range(50)))
    assert {str(a) for a in answers} == {"forty two"}
    traces = check_trees(events())
    assert len(traces) == 50
    for group in traces.values():
        root = next(e for e in group if e["event"] == "$ai_trace")
        i = int(props(root)["$ai_input_state"].split()[-1])
        assert {e["distinct_id"] for e in group} == {f"user-{i}"}
        assert sorted(e["event"] for e in group) == [
            "$ai_embedding",
            "$ai_generation",
            "$ai_span",
            "$ai_span",
            "$ai_trace",
        ]
        gen = next(e for e in group if e["event"] == "$ai_generation")
        assert f"question {i}" in props(gen)["$ai_input"][0]["content"]
    assert instrumented.open_runs() == 0


def test_options_and_uninstrument(
    index: VectorStoreIndex, exporter: PosthogExporter, events: Events
) -> None:
    handle = instrument(
        exporter,
        distinct_id="svc",
        session_id="sess",
        tags=["rag"],
        properties={"team": "geo"},
        metadata={"v": 2},
    )
    index.as_query_engine().query("q")
    handle.uninstrument()
    handle.uninstrument()  # idempotent
    index.as_query_engine().query("not recorded")
    got = events()
    assert len(check_trees(got)) == 1
    assert {e["distinct_id"] for e in got} == {"svc"}
    assert {props(e)["$ai_session_id"] for e in got} == {"sess"}
    assert {props(e)["team"] for e in got} == {"geo"}
    root = props(next(e for e in got if e["event"] == "$ai_trace"))
    assert root["rag"] is True and root["v"] == 2


def test_privacy_mode_sends_no_content(
    index: VectorStoreIndex, exporter: PosthogExporter, events: Events
) -> None:
    with instrument(exporter, privacy_mode=True):
        index.as_query_engine().query("secret question")
    got = events()
    assert len(got) == 5
    assert "secret question" not in repr(got)
    assert props(by_name(got, "mock-gpt.complete")[0])["$ai_input_tokens"] == 11


def test_fixed_trace_id_groups_calls(
    index: VectorStoreIndex, exporter: PosthogExporter, events: Events
) -> None:
    with instrument(exporter), trace_context(trace_id="conversation-1"):
        index.as_query_engine().query("first")
        index.as_query_engine().query("second")
    got = events()
    traces = check_trees(got)
    assert list(traces) == ["conversation-1"]
    roots = by_name(got, "RetrieverQueryEngine.query")
    assert sorted(e["event"] for e in roots) == ["$ai_span", "$ai_trace"]


@pytest.mark.parametrize("mode", ["condense_plus_context", "context", "simple"])
def test_streaming_chat_engine_is_one_trace(
    index: VectorStoreIndex, instrumented: InstrumentHandle, events: Events, mode: str
) -> None:
    # The chat engine's writer thread reads the model stream after stream_chat returned.
    response = index.as_chat_engine(chat_mode=ChatMode(mode)).stream_chat("hi")
    assert isinstance(response, (StreamingResponse, StreamingAgentChatResponse))
    assert "".join(response.response_gen) == "forty two"
    if response.write_response_to_history_thread is not None:
        response.write_response_to_history_thread.join(timeout=5)
    got = events()
    assert len(check_trees(got)) == 1
    gen = props(next(e for e in got if e["event"] == "$ai_generation"))
    assert gen["$ai_output_choices"][0]["content"] == "forty two"
    assert (gen["$ai_input_tokens"], gen["$ai_output_tokens"]) == (11, 3)
    root = next(e for e in got if e["event"] == "$ai_trace")
    assert props(root)["$ai_span_name"].endswith("ChatEngine.stream_chat")
    assert props(root)["$ai_input_state"] == "hi"
    assert instrumented.open_runs() == 0


async def test_async_streaming_query_is_one_trace_with_one_generation(
    index: VectorStoreIndex, instrumented: InstrumentHandle, events: Events
) -> None:
    # CustomLLM.astream_complete() calls stream_complete() lazily, from inside the stream
    response = await index.as_query_engine(streaming=True).aquery("What is the answer?")
    assert isinstance(response, AsyncStreamingResponse)
    assert "".join([t async for t in response.async_response_gen()]) == "forty two"
    got = events()
    assert len(check_trees(got)) == 1
    assert tree(got) == [
        "$ai_trace RetrieverQueryEngine.aquery",
        "  $ai_span VectorIndexRetriever.aretrieve",
        "    $ai_embedding embedding.embed",
        "  $ai_span CompactAndRefine.asynthesize",
        "  $ai_generation mock-gpt.complete",
    ]
    gen = props(one(got, "mock-gpt.complete"))
    assert (gen["$ai_input_tokens"], gen["$ai_output_tokens"]) == (11, 3)
    assert props(one(got, "RetrieverQueryEngine.aquery"))["$ai_output_state"] == "forty two"
    assert instrumented.open_runs() == 0


def test_node_postprocessor_is_a_span(
    index: VectorStoreIndex, instrumented: InstrumentHandle, events: Events
) -> None:
    from llama_index.core.postprocessor import SimilarityPostprocessor

    engine = index.as_query_engine(
        similarity_top_k=2, node_postprocessors=[SimilarityPostprocessor(similarity_cutoff=0.0)]
    )
    assert str(engine.query("What is the answer?")) == "forty two"
    got = events()
    check_trees(got)
    assert tree(got) == [
        "$ai_trace RetrieverQueryEngine.query",
        "  $ai_span VectorIndexRetriever.retrieve",
        "    $ai_embedding embedding.embed",
        "  $ai_span SimilarityPostprocessor.postprocess_nodes",
        "  $ai_span CompactAndRefine.synthesize",
        "    $ai_generation mock-gpt.complete",
    ]
    post = props(one(got, "SimilarityPostprocessor.postprocess_nodes"))
    assert post["$ai_input_state"]["query"] == "What is the answer?"
    assert {n["text"] for n in post["$ai_input_state"]["nodes"]} == ANSWER_DOCS
    assert {n["text"] for n in post["$ai_output_state"]} == ANSWER_DOCS


@pytest.mark.parametrize("door", ["instrument", "callback"])
def test_llama_index_instrument_tags_name_the_user(
    door: str, index: VectorStoreIndex, exporter: PosthogExporter, events: Events
) -> None:
    from llama_index.core.callbacks import CallbackManager
    from llama_index.core.instrumentation import dispatcher as li_dispatcher

    instrument_tags = li_dispatcher.instrument_tags  # type: ignore[attr-defined]  # not in __all__

    from posthog_callbacks.llama_index import CallbackHandler

    handle = instrument(exporter, distinct_id="fallback") if door == "instrument" else None
    if handle is None:
        Settings.callback_manager = CallbackManager(
            [CallbackHandler(exporter, distinct_id="fallback")]
        )
    with instrument_tags({"user_id": "tagged-user", "session_id": "tagged-session"}):
        UsageLLM().complete("hi")
        with trace_context(user_id="explicit"):
            UsageLLM().complete("hi")
    UsageLLM().complete("hi")
    if handle is not None:
        handle.uninstrument()
    got = [e for e in events() if e["event"] != "$ai_trace"]
    assert [e["distinct_id"] for e in got] == ["tagged-user", "explicit", "fallback"]
    assert [props(e).get("$ai_session_id") for e in got] == [
        "tagged-session",
        "tagged-session",
        None,
    ]


@pytest.mark.parametrize("door", ["instrument", "callback"])
def test_identity_falls_back_to_the_exporter_default(door: str) -> None:
    from llama_index.core.callbacks import CallbackManager

    from posthog_callbacks import MemorySink
    from posthog_callbacks.llama_index import CallbackHandler

    exporter = PosthogExporter(sink=MemorySink(), default_distinct_id="exporter-default")
    try:
        for distinct_id in (None, "handler-option"):
            handle = None
            if door == "instrument":
                handle = instrument(exporter, distinct_id=distinct_id)
            else:
                Settings.callback_manager = CallbackManager(
                    [CallbackHandler(exporter, distinct_id=distinct_id)]
                )
            UsageLLM().complete("hi")
            if handle is not None:
                handle.uninstrument()
        assert exporter.flush(timeout=10)
        events = exporter.sink.events  # type: ignore[union-attr]
        got = [e["distinct_id"] for e in events if e["event"] == "$ai_generation"]
        assert got == ["exporter-default", "handler-option"]
    finally:
        exporter.shutdown(timeout=2)
