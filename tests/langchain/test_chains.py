"""Exact-event tests of the LangChain handler over offline fake models."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from langchain_core.callbacks import dispatch_custom_event
from langchain_core.documents import Document
from langchain_core.language_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import RunnableLambda, RunnableParallel
from langchain_core.tools import tool

from support.langchain_fakes import CompletionFake, EchoChatModel, ProviderFake
from support.langchain_helpers import Recorder, parent_of, span_id

PROMPT = ChatPromptTemplate.from_messages([("system", "be brief"), ("human", "{q}")])


def _chain() -> Any:
    return PROMPT | EchoChatModel() | StrOutputParser()


def _check_tree(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Every event's parent is an event of the same trace; returns events by span id."""
    ids = {span_id(e): e for e in events}
    assert len(ids) == len(events)
    trace_ids = {e["properties"]["$ai_trace_id"] for e in events}
    assert len(trace_ids) == 1
    for e in events:
        parent = parent_of(e)
        if parent is not None:
            assert parent in ids, f"{e['properties']['$ai_span_name']} has a dangling parent"
    return ids


def test_lcel_chain_exact_events(rec: Recorder) -> None:
    handler = rec.handler()
    out = _chain().invoke(
        {"q": "hi there"},
        config={
            "callbacks": [handler],
            "tags": ["beta"],
            "metadata": {"user_id": "u1", "session_id": "s1", "team": "geo"},
        },
    )
    assert out == "echo:hi there"
    events = rec.events()
    assert [e["event"] for e in events] == ["$ai_span", "$ai_generation", "$ai_span", "$ai_trace"]
    prompt, gen, parser, trace = events
    trace_id = trace["properties"]["$ai_trace_id"]
    assert trace["properties"]["$ai_span_name"] == "RunnableSequence"
    assert "$ai_parent_id" not in trace["properties"]
    assert trace["properties"]["$ai_input_state"] == {"q": "hi there"}
    assert trace["properties"]["$ai_output_state"] == "echo:hi there"
    for child in (prompt, gen, parser):
        assert child["properties"]["$ai_parent_id"] == trace_id
        assert child["properties"]["$ai_trace_id"] == trace_id
    assert prompt["properties"]["$ai_span_name"] == "ChatPromptTemplate"
    assert prompt["properties"]["$ai_output_state"] == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hi there"},
    ]
    g = gen["properties"]
    assert g["$ai_span_name"] == "EchoChatModel"
    assert g["$ai_model"] == "echo-1-served"
    assert g["$ai_provider"] == "openai"
    assert g["$ai_input"] == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hi there"},
    ]
    assert g["$ai_output_choices"] == [{"role": "assistant", "content": "echo:hi there"}]
    assert (g["$ai_input_tokens"], g["$ai_output_tokens"]) == (2, 1)
    assert g["$ai_stop_reason"] == "stop"
    assert g["$ai_http_status"] == 200
    assert g["$ai_is_error"] is False
    assert "$ai_time_to_first_token" not in g
    assert parser["properties"]["$ai_input_state"] == {
        "role": "assistant",
        "content": "echo:hi there",
    }
    for e in events:
        p = e["properties"]
        assert e["distinct_id"] == "u1"
        assert p["$ai_session_id"] == "s1"
        assert p["team"] == "geo"
        assert p["beta"] is True
        assert p["$ai_tags"] == ["beta"]
        assert p["$ai_framework"] == "langchain"
        assert not any(k.startswith(("ls_", "lc_")) for k in p)
        assert "user_id" not in p and "session_id" not in p
        assert not any(k.startswith("seq:step") for k in p)
    assert handler.open_runs() == 0


def test_chat_model_alone_is_a_one_generation_trace(rec: Recorder) -> None:
    handler = rec.handler(distinct_id="d1", session_id="s9")
    EchoChatModel().invoke([HumanMessage("yo")], config={"callbacks": [handler]})
    (event,) = rec.events()
    p = event["properties"]
    assert event["event"] == "$ai_generation"
    assert "$ai_parent_id" not in p
    assert p["$ai_span_id"] == p["$ai_trace_id"]
    assert event["distinct_id"] == "d1"
    assert p["$ai_session_id"] == "s9"
    assert p["$ai_output_choices"] == [{"role": "assistant", "content": "echo:yo"}]


def test_stream_takes_real_inputs_and_first_token_time(rec: Recorder) -> None:
    chain = RunnableLambda(lambda x: x["q"]).with_config(run_name="pick") | EchoChatModel()
    chunks = list(chain.stream({"q": "hello"}, config={"callbacks": [rec.handler()]}))
    assert "".join(str(c.content) for c in chunks) == "echohello"
    by = rec.by_name()
    trace = by["RunnableSequence"]["properties"]
    assert trace["$ai_input_state"] == {"q": "hello"}
    gen = by["EchoChatModel"]["properties"]
    assert 0 < gen["$ai_time_to_first_token"] <= gen["$ai_latency"]
    assert gen["$ai_stream"] is True
    assert gen["$ai_model_parameters"]["stream"] is True
    assert (gen["$ai_input_tokens"], gen["$ai_output_tokens"]) == (1, 1)
    assert gen["$ai_model"] == "echo-1-served"
    assert gen["$ai_output_choices"] == [{"role": "assistant", "content": "echohello"}]
    assert gen["$ai_parent_id"] == by["RunnableSequence"]["properties"]["$ai_trace_id"]


async def test_async_invoke_and_astream(rec: Recorder) -> None:
    handler = rec.handler()
    assert await _chain().ainvoke({"q": "a b c"}, config={"callbacks": [handler]}) == "echo:a b c"
    parts = [c async for c in _chain().astream({"q": "x"}, config={"callbacks": [handler]})]
    assert "".join(parts) == "echox"
    events = rec.events()
    traces = {e["properties"]["$ai_trace_id"] for e in events}
    assert len(traces) == 2
    for trace_id in traces:
        tree = [e for e in events if e["properties"]["$ai_trace_id"] == trace_id]
        _check_tree(tree)
        assert sorted(e["event"] for e in tree) == [
            "$ai_generation",
            "$ai_span",
            "$ai_span",
            "$ai_trace",
        ]
    gens = [e["properties"] for e in events if e["event"] == "$ai_generation"]
    assert [g["$ai_input_tokens"] for g in gens] == [3, 1]
    assert handler.open_runs() == 0


def test_batch_gives_one_trace_per_input(rec: Recorder) -> None:
    outs = _chain().batch(
        [{"q": "one"}, {"q": "two two"}, {"q": "three x y"}], config={"callbacks": [rec.handler()]}
    )
    assert outs == ["echo:one", "echo:two two", "echo:three x y"]
    events = rec.events()
    traces = [e for e in events if e["event"] == "$ai_trace"]
    assert len(traces) == 3
    for trace in traces:
        tid = trace["properties"]["$ai_trace_id"]
        tree = [e for e in events if e["properties"]["$ai_trace_id"] == tid]
        _check_tree(tree)
        q = trace["properties"]["$ai_input_state"]["q"]
        (gen,) = [e for e in tree if e["event"] == "$ai_generation"]
        assert gen["properties"]["$ai_output_choices"][0]["content"] == f"echo:{q}"
        assert gen["properties"]["$ai_input_tokens"] == len(q.split())


def test_runnable_parallel_branches_on_threads(rec: Recorder) -> None:
    par = RunnableParallel(
        left=RunnableLambda(lambda x: x + "L").with_config(run_name="left_fn"),
        right=(RunnableLambda(lambda x: x).with_config(run_name="right_fn") | EchoChatModel()),
    )
    out = par.invoke("q", config={"callbacks": [rec.handler()]})
    assert out["left"] == "qL"
    events = rec.events()
    by_id = _check_tree(events)
    by = {e["properties"]["$ai_span_name"]: e for e in events}
    root = by["RunnableParallel<left,right>"]
    assert root["event"] == "$ai_trace"
    root_id = root["properties"]["$ai_trace_id"]
    assert parent_of(by["left_fn"]) == root_id
    seq = by["RunnableSequence"]
    assert parent_of(seq) == root_id
    assert parent_of(by["right_fn"]) == span_id(seq)
    assert parent_of(by["EchoChatModel"]) == span_id(seq)
    assert root["properties"]["$ai_output_state"]["left"] == "qL"
    assert len(by_id) == 5


class _Docs(BaseRetriever):
    def _get_relevant_documents(self, query: str, *, run_manager: Any) -> list[Document]:
        return [Document(page_content=f"about {query}", metadata={"src": "a.txt"}, id="d1")]


def test_retriever_span(rec: Recorder) -> None:
    chain = _Docs() | RunnableLambda(lambda docs: docs[0].page_content).with_config(
        run_name="first"
    )
    assert chain.invoke("cats", config={"callbacks": [rec.handler()]}) == "about cats"
    by = rec.by_name()
    r = by["_Docs"]
    assert r["event"] == "$ai_span"
    assert r["properties"]["$ai_input_state"] == "cats"
    assert r["properties"]["$ai_output_state"] == [
        {"page_content": "about cats", "metadata": {"src": "a.txt"}, "id": "d1"}
    ]
    assert parent_of(r) == by["RunnableSequence"]["properties"]["$ai_trace_id"]


@tool
def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


def test_tool_called_with_tool_call(rec: Recorder) -> None:
    call = {"name": "add", "args": {"a": 2, "b": 3}, "id": "call_1", "type": "tool_call"}
    result = add.invoke(call, config={"callbacks": [rec.handler()]})
    assert isinstance(result, ToolMessage)
    (event,) = rec.events()
    p = event["properties"]
    assert event["event"] == "$ai_trace"
    assert p["$ai_span_name"] == "add"
    assert p["$ai_input_state"] == {"a": 2, "b": 3}
    assert p["$ai_output_state"] == {
        "role": "tool",
        "content": "5",
        "name": "add",
        "tool_call_id": "call_1",
    }


def test_custom_event_is_an_instant_child(rec: Recorder) -> None:
    def step(x: str) -> str:
        dispatch_custom_event("progress", {"done": 1, "of": 2})
        return x

    RunnableLambda(step).with_config(run_name="stepper").invoke(
        "q", config={"callbacks": [rec.handler()]}
    )
    ev, root = rec.events()
    assert ev["event"] == "$ai_span"
    assert ev["properties"]["$ai_span_name"] == "progress"
    assert ev["properties"]["$ai_input_state"] == {"done": 1, "of": 2}
    assert ev["properties"]["$ai_latency"] == 0
    assert parent_of(ev) == root["properties"]["$ai_trace_id"]
    assert root["event"] == "$ai_trace"


class _HTTPError(Exception):
    status_code = 429


def test_errors_mark_failing_span_and_failing_ancestors(rec: Recorder) -> None:
    model = EchoChatModel(fail_with=_HTTPError("rate limited"))
    chain = (RunnableLambda(lambda x: x).with_config(run_name="prep") | model).with_config(
        run_name="outer"
    )
    with pytest.raises(_HTTPError):
        chain.invoke("boom", config={"callbacks": [rec.handler()]})
    by = rec.by_name()
    gen = by["EchoChatModel"]["properties"]
    assert gen["$ai_is_error"] is True
    assert gen["$ai_error"] == "_HTTPError: rate limited"
    assert gen["$ai_http_status"] == 429
    assert "$ai_input_tokens" not in gen and "$ai_usage_missing_reason" not in gen
    root = by["outer"]
    assert root["event"] == "$ai_trace"
    assert root["properties"]["$ai_is_error"] is True
    assert root["properties"]["$ai_error"] == "_HTTPError: rate limited"
    assert by["prep"]["properties"]["$ai_is_error"] is False


def test_tool_error_inside_chain(rec: Recorder) -> None:
    @tool
    def broken(x: str) -> str:
        """Always fails."""
        raise ValueError("no such city")

    chain: Any = RunnableLambda(lambda x: {"x": x}).with_config(run_name="wrap") | broken
    with pytest.raises(ValueError):
        chain.invoke("paris", config={"callbacks": [rec.handler()]})
    by = rec.by_name()
    assert by["broken"]["properties"]["$ai_error"] == "ValueError: no such city"
    assert by["RunnableSequence"]["properties"]["$ai_is_error"] is True
    assert by["wrap"]["properties"]["$ai_is_error"] is False


def test_usage_summed_model_params_tools_and_served_model(rec: Recorder) -> None:
    tools = [
        {"type": "function", "function": {"name": "add", "parameters": {}}},
        {"name": "lookup", "description": "find", "input_schema": {"type": "object"}},
    ]
    model = ProviderFake(
        provider="openai",
        model="gpt-4o-mini",
        responses=[
            AIMessage(
                "ok",
                usage_metadata={
                    "input_tokens": 100,
                    "output_tokens": 30,
                    "total_tokens": 130,
                    "input_token_details": {"cache_read": 40},
                    "output_token_details": {"reasoning": 12},
                },
                response_metadata={
                    "model_name": "gpt-4o-mini-2024-07-18",
                    "finish_reason": "length",
                },
            )
        ],
    )
    model.bind(temperature=0.2, max_tokens=50, tools=tools).invoke(
        "hi", config={"callbacks": [rec.handler()]}
    )
    (event,) = rec.events()
    p = event["properties"]
    assert p["$ai_model"] == "gpt-4o-mini-2024-07-18"
    assert p["$ai_provider"] == "openai"
    assert (p["$ai_input_tokens"], p["$ai_output_tokens"]) == (100, 30)
    assert p["$ai_cache_read_input_tokens"] == 40
    assert p["$ai_reasoning_tokens"] == 12
    assert p["$ai_stop_reason"] == "length"
    assert p["$ai_temperature"] == 0.2
    assert p["$ai_max_tokens"] == 50
    assert p["$ai_model_parameters"]["temperature"] == 0.2
    assert p["$ai_tools"] == [
        {"type": "function", "function": {"name": "add", "parameters": {}}},
        {
            "type": "function",
            "function": {"name": "lookup", "description": "find", "parameters": {"type": "object"}},
        },
    ]


def test_anthropic_cache_tokens_are_subtracted(rec: Recorder) -> None:
    model = ProviderFake(
        provider="anthropic",
        model="claude-sonnet-4-5",
        responses=[
            AIMessage(
                "ok",
                usage_metadata={
                    "input_tokens": 1500,
                    "output_tokens": 20,
                    "total_tokens": 1520,
                    "input_token_details": {"cache_read": 1000, "cache_creation": 400},
                },
                response_metadata={"model_name": "claude-sonnet-4-5-20250929"},
            )
        ],
    )
    model.invoke("hi", config={"callbacks": [rec.handler()]})
    p = rec.events()[0]["properties"]
    assert p["$ai_provider"] == "anthropic"
    assert p["$ai_model"] == "claude-sonnet-4-5-20250929"
    assert p["$ai_input_tokens"] == 100
    assert p["$ai_cache_read_input_tokens"] == 1000
    assert p["$ai_cache_creation_input_tokens"] == 400


def test_missing_usage_says_why(rec: Recorder) -> None:
    model = GenericFakeChatModel(messages=iter(["no usage here"]))
    list(model.stream("hi", config={"callbacks": [rec.handler()]}))
    p = rec.events()[0]["properties"]
    assert not any(k.endswith("_tokens") for k in p)
    assert "stream" in p["$ai_usage_missing_reason"]


def test_messages_with_tool_calls_in_openai_shape(rec: Recorder) -> None:
    history = [
        SystemMessage("sys"),
        HumanMessage("add 2 and 3"),
        AIMessage("", tool_calls=[{"name": "add", "args": {"a": 2, "b": 3}, "id": "c1"}]),
        ToolMessage("5", tool_call_id="c1"),
        HumanMessage(content=[{"type": "text", "text": "and?"}]),
    ]
    ProviderFake(responses=[AIMessage("5!")]).invoke(history, config={"callbacks": [rec.handler()]})
    p = rec.events()[0]["properties"]
    assert p["$ai_input"] == [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "add 2 and 3"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {
                    "type": "function",
                    "id": "c1",
                    "function": {"name": "add", "arguments": '{"a": 2, "b": 3}'},
                }
            ],
        },
        {"role": "tool", "content": "5", "tool_call_id": "c1"},
        {"role": "user", "content": [{"type": "text", "text": "and?"}]},
    ]


async def test_200_concurrent_ainvokes_on_one_handler(rec: Recorder) -> None:
    handler = rec.handler()
    chain = _chain()
    words = [" ".join(["w"] * (i % 7 + 1)) + f" n{i}" for i in range(200)]
    outs = await asyncio.gather(
        *[
            chain.ainvoke(
                {"q": w}, config={"callbacks": [handler], "metadata": {"user_id": f"user{i}"}}
            )
            for i, w in enumerate(words)
        ]
    )
    assert outs == [f"echo:{w}" for w in words]
    events = rec.events()
    assert len(events) == 800
    by_trace: dict[str, list[dict[str, Any]]] = {}
    for e in events:
        by_trace.setdefault(e["properties"]["$ai_trace_id"], []).append(e)
    assert len(by_trace) == 200
    for tree in by_trace.values():
        _check_tree(tree)
        (trace,) = [e for e in tree if e["event"] == "$ai_trace"]
        (gen,) = [e for e in tree if e["event"] == "$ai_generation"]
        q = trace["properties"]["$ai_input_state"]["q"]
        i = int(q.rsplit("n", 1)[1])
        assert gen["properties"]["$ai_output_choices"][0]["content"] == f"echo:{q}"
        assert gen["properties"]["$ai_input_tokens"] == len(q.split())
        assert {e["distinct_id"] for e in tree} == {f"user{i}"}
        assert parent_of(gen) == trace["properties"]["$ai_trace_id"]
    assert handler.open_runs() == 0


def test_stream_events_v3_records_first_token(rec: Recorder) -> None:
    events = list(
        EchoChatModel().stream_events(
            "hi there", version="v3", config={"callbacks": [rec.handler()]}
        )
    )
    assert events[0]["event"] == "message-start"
    (gen,) = rec.events()
    p = gen["properties"]
    assert 0 < p["$ai_time_to_first_token"] <= p["$ai_latency"]
    assert p["$ai_stream"] is True
    assert p["$ai_output_choices"] == [
        {"role": "assistant", "content": [{"type": "text", "text": "echohi there", "index": 0}]}
    ]
    assert (p["$ai_input_tokens"], p["$ai_output_tokens"]) == (2, 1)


async def test_astream_events_v2_alongside_its_own_tracer(rec: Recorder) -> None:
    kinds = [
        e["event"]
        async for e in _chain().astream_events(
            {"q": "x y"}, version="v2", config={"callbacks": [rec.handler()]}
        )
    ]
    assert kinds[0] == "on_chain_start" and kinds[-1] == "on_chain_end"
    events = rec.events()
    _check_tree(events)
    assert sorted(e["event"] for e in events) == [
        "$ai_generation",
        "$ai_span",
        "$ai_span",
        "$ai_trace",
    ]
    (gen,) = [e["properties"] for e in events if e["event"] == "$ai_generation"]
    assert gen["$ai_input_tokens"] == 2


def test_multimodal_base64_is_replaced_by_a_placeholder(rec: Recorder) -> None:
    data = "iVBORw0KGgo" + "A" * 4000
    message = HumanMessage(
        content=[
            {"type": "text", "text": "what is this?"},
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{data}"}},
        ]
    )
    ProviderFake(responses=[AIMessage("a cat")]).invoke(
        [message], config={"callbacks": [rec.handler()]}
    )
    (event,) = rec.events()
    content = event["properties"]["$ai_input"][0]["content"]
    assert content[0] == {"type": "text", "text": "what is this?"}
    url = content[1]["image_url"]["url"]
    assert data not in url
    assert "base64" in url and len(url) < 200


def test_agent_action_and_finish_are_instant_children(rec: Recorder) -> None:
    from langchain_core.agents import AgentAction, AgentFinish

    handler = rec.handler()
    run = uuid.uuid4()
    handler.on_chain_start({"name": "AgentExecutor"}, {"input": "2+3"}, run_id=run)
    handler.on_agent_action(AgentAction("add", {"a": 2, "b": 3}, "I should add"), run_id=run)
    handler.on_agent_finish(AgentFinish({"output": "5"}, "done"), run_id=run)
    handler.on_chain_end({"output": "5"}, run_id=run)
    action, finish, root = rec.events()
    assert action["properties"]["$ai_span_name"] == "agent_action: add"
    assert action["properties"]["$ai_input_state"] == {
        "tool": "add",
        "tool_input": {"a": 2, "b": 3},
        "log": "I should add",
    }
    assert finish["properties"]["$ai_span_name"] == "agent_finish"
    assert finish["properties"]["$ai_output_state"] == {"output": "5"}
    assert parent_of(action) == parent_of(finish) == str(run)
    assert root["event"] == "$ai_trace"


def test_text_completion_model_with_llm_output_usage(rec: Recorder) -> None:
    out = CompletionFake().invoke("write", config={"callbacks": [rec.handler()]})
    assert out == "done: write"
    (event,) = rec.events()
    p = event["properties"]
    assert event["event"] == "$ai_generation"
    assert p["$ai_model"] == "gpt-3.5-turbo-instruct-0914"
    assert p["$ai_provider"] == "openai"
    assert p["$ai_input"] == [{"role": "user", "content": "write"}]
    assert p["$ai_output_choices"] == [{"role": "assistant", "content": "done: write"}]
    assert (p["$ai_input_tokens"], p["$ai_output_tokens"], p["$ai_total_tokens"]) == (7, 4, 11)
    assert p["$ai_stop_reason"] == "length"


def test_response_model_provider_beats_a_class_name_ls_provider(rec: Recorder) -> None:
    # ls_provider falls back to the lowercased class name ("providerfake" here)
    model = ProviderFake(
        provider="providerfake",
        responses=[
            AIMessage(
                "hi",
                response_metadata={
                    "model_provider": "google_genai",
                    "model_name": "gemini-2.5-flash",
                },
            )
        ],
    )
    model.invoke("x", config={"callbacks": [rec.handler()]})
    p = rec.events()[0]["properties"]
    assert p["$ai_provider"] == "gemini"
    assert p["$ai_model"] == "gemini-2.5-flash"
