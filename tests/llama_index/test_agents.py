"""instrument(): FunctionAgent, ReActAgent, a custom Workflow, tool errors, abandoned streams."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import pytest
from llama_index.core import Settings
from llama_index.core.agent.workflow import AgentWorkflow, FunctionAgent, ReActAgent
from llama_index.core.base.llms.types import ChatMessage, MessageRole
from llama_index.core.llms import MockFunctionCallingLLM
from llama_index.core.tools import FunctionTool
from llama_index.core.workflow import Context, Event, StartEvent, StopEvent, Workflow, step

from posthog_callbacks import MemorySink, PosthogExporter
from posthog_callbacks.llama_index import InstrumentHandle, instrument, trace_context
from support.llama_helpers import Events, UsageLLM, by_name, check_trees, one, props, tree


def add(a: int = 1, b: int = 2) -> int:
    """Add two numbers."""
    return a + b


def multiply(a: int = 2, b: int = 3) -> int:
    """Multiply two numbers."""
    return a * b


def broken(a: int = 1) -> int:
    """A tool that fails."""
    raise ValueError("tool exploded")


AGENT_TREE_HEAD = [
    "$ai_trace FunctionAgent.run",
    "  $ai_span init_run",
    "  $ai_span setup_agent",
    "  $ai_span run_agent_step",
    "    $ai_generation MockFunctionCallingLLM.chat",
    "  $ai_span parse_agent_output",
]


async def test_function_agent_two_tools(instrumented: InstrumentHandle, events: Events) -> None:
    agent = FunctionAgent(
        tools=[FunctionTool.from_defaults(add), FunctionTool.from_defaults(multiply)],
        llm=MockFunctionCallingLLM(),
    )
    result = await agent.run("compute")
    assert str(result) == "Tool calls complete."
    got = events()
    assert len(check_trees(got)) == 1
    outline = tree(got)
    assert outline[:6] == AGENT_TREE_HEAD
    # the two tool calls run concurrently: compare them as a set
    assert sorted(outline[6:10]) == sorted(
        [
            "  $ai_span call_tool",
            "    $ai_span add",
            "  $ai_span call_tool",
            "    $ai_span multiply",
        ]
    ) or sorted(outline[6:10]) == sorted(
        [
            "  $ai_span call_tool",
            "  $ai_span call_tool",
            "    $ai_span add",
            "    $ai_span multiply",
        ]
    )
    assert outline[-5:] == [
        "  $ai_span aggregate_tool_results",
        "  $ai_span setup_agent",
        "  $ai_span run_agent_step",
        "    $ai_generation MockFunctionCallingLLM.chat",
        "  $ai_span parse_agent_output",
    ]
    assert props(one(got, "add"))["$ai_input_state"] == {"a": 1, "b": 2}
    assert props(one(got, "add"))["$ai_output_state"] == "3"
    assert props(one(got, "multiply"))["$ai_output_state"] == "6"
    first, second = sorted(
        by_name(got, "MockFunctionCallingLLM.chat"), key=lambda e: e["timestamp"]
    )
    calls = props(first)["$ai_output_choices"][0]["tool_calls"]
    assert [c["function"]["name"] for c in calls] == ["add", "multiply"]
    assert [t["function"]["name"] for t in props(first)["$ai_tools"]] == ["add", "multiply"]
    assert props(first)["$ai_stream"] is True  # agents stream their model calls
    assert props(second)["$ai_output_choices"] == [
        {"role": "assistant", "content": "Tool calls complete."}
    ]
    assert props(second)["$ai_usage_missing_reason"]
    root = props(one(got, "FunctionAgent.run"))
    assert "compute" in root["$ai_input_state"]
    assert root["$ai_output_state"] == "Tool calls complete."
    assert instrumented.open_runs() == 0


async def test_tool_error_is_recorded_and_the_agent_goes_on(
    instrumented: InstrumentHandle, events: Events
) -> None:
    agent = FunctionAgent(tools=[FunctionTool.from_defaults(broken)], llm=MockFunctionCallingLLM())
    assert str(await agent.run("try it")) == "Tool calls complete."
    got = events()
    check_trees(got)
    tool = props(one(got, "broken"))
    assert tool["$ai_is_error"] is True
    assert tool["$ai_error"] == "ValueError: tool exploded"
    assert props(one(got, "FunctionAgent.run"))["$ai_is_error"] is False


def _react_llm() -> MockFunctionCallingLLM:
    def respond(messages: Sequence[ChatMessage], **kwargs: Any) -> ChatMessage:
        seen = sum(1 for m in messages if (m.content or "").startswith("Observation:"))
        if seen == 0:
            text = 'Thought: I need to add.\nAction: add\nAction Input: {"a": 20, "b": 1}'
        elif seen == 1:
            text = 'Thought: Now multiply.\nAction: multiply\nAction Input: {"a": 21, "b": 2}'
        else:
            text = "Thought: I can answer without using any more tools.\nAnswer: 42"
        return ChatMessage(role=MessageRole.ASSISTANT, content=text)

    return MockFunctionCallingLLM(response_generator=respond)


async def test_react_agent_two_tools(instrumented: InstrumentHandle, events: Events) -> None:
    agent = ReActAgent(
        tools=[FunctionTool.from_defaults(add), FunctionTool.from_defaults(multiply)],
        llm=_react_llm(),
    )
    result = await agent.run("What is (20 + 1) * 2?")
    assert "42" in str(result)
    got = events()
    assert len(check_trees(got)) == 1
    root = one(got, "ReActAgent.run")
    assert root["event"] == "$ai_trace"
    gens = by_name(got, "MockFunctionCallingLLM.chat")
    assert len(gens) == 3
    assert props(one(got, "add"))["$ai_input_state"] == {"a": 20, "b": 1}
    assert props(one(got, "add"))["$ai_output_state"] == "21"
    assert props(one(got, "multiply"))["$ai_output_state"] == "42"
    steps = {props(e)["$ai_span_name"] for e in got if e["event"] == "$ai_span"}
    assert {"run_agent_step", "call_tool", "parse_agent_output"} <= steps
    for gen in gens:  # every model call sits under an agent step
        parent = props(gen)["$ai_parent_id"]
        assert [
            props(e)["$ai_span_name"] for e in got if props(e).get("$ai_span_id") == parent
        ] == ["run_agent_step"]


class StepEvent(Event):
    topic: str


class TwoSteps(Workflow):
    @step
    async def plan(self, ev: StartEvent) -> StepEvent:
        return StepEvent(topic=ev.topic)

    @step
    async def write(self, ctx: Context, ev: StepEvent) -> StopEvent:
        reply = await Settings.llm.acomplete(f"Write about {ev.topic}")
        return StopEvent(result=reply.text)


async def test_custom_two_step_workflow(instrumented: InstrumentHandle, events: Events) -> None:
    assert await TwoSteps(timeout=10).run(topic="owls") == "forty two"
    got = events()
    assert len(check_trees(got)) == 1
    assert tree(got) == [
        "$ai_trace TwoSteps.run",
        "  $ai_span plan",
        "  $ai_span write",
        "    $ai_generation mock-gpt.complete",
    ]
    assert "owls" in props(one(got, "plan"))["$ai_input_state"]
    assert "StepEvent" in props(one(got, "plan"))["$ai_output_state"]
    gen = props(one(got, "mock-gpt.complete"))
    assert gen["$ai_input"] == [{"role": "user", "content": "Write about owls"}]
    assert (gen["$ai_input_tokens"], gen["$ai_output_tokens"]) == (11, 3)
    assert props(one(got, "TwoSteps.run"))["$ai_output_state"] == "forty two"


def test_stream_closed_early_is_marked_abandoned(
    instrumented: InstrumentHandle, events: Events
) -> None:
    stream = UsageLLM().stream_complete("hello")
    assert next(stream).delta == "forty"
    stream.close()
    got = events()
    check_trees(got)
    gen = props(one(got, "mock-gpt.complete"))
    assert gen["$ai_span_status"] == "abandoned"
    assert gen["$ai_is_error"] is False
    assert 0 < gen["$ai_time_to_first_token"] <= gen["$ai_latency"]
    assert instrumented.open_runs() == 0


def test_abandoned_stream_is_closed_by_the_ttl() -> None:
    sink = MemorySink()
    exporter = PosthogExporter(sink=sink, open_run_ttl=0.2, flush_interval=0.05)
    handle = instrument(exporter)
    try:
        UsageLLM().complete("warm up")  # (the exporter's worker starts with a first event)
        stream = UsageLLM().stream_complete("hello")
        assert next(stream).delta == "forty"  # read once, then left hanging
        assert exporter.flush(timeout=5)
        assert len(sink.events) == 1
        deadline = time.monotonic() + 10
        while len(sink.events) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [e["event"] for e in sink.events] == ["$ai_generation", "$ai_generation"]
        gen = props(sink.events[1])
        assert gen["$ai_input"] == [{"role": "user", "content": "hello"}]
        assert gen["$ai_is_error"] is True
        assert "never ended" in gen["$ai_error"]
        assert handle.open_runs() == 0
        del stream
    finally:
        handle.uninstrument()
        exporter.shutdown(timeout=2)


class Boom(Workflow):
    @step
    async def explode(self, ev: StartEvent) -> StopEvent:
        raise ValueError("step failed")


async def test_failing_step_marks_step_and_run(
    instrumented: InstrumentHandle, events: Events
) -> None:
    with pytest.raises(ValueError, match="step failed"):
        await Boom(timeout=10).run()
    got = events()
    assert len(check_trees(got)) == 1
    assert tree(got) == ["$ai_trace Boom.run", "  $ai_span explode"]
    assert {props(e)["$ai_span_name"]: props(e)["$ai_error"] for e in got} == {
        "Boom.run": "ValueError: step failed",
        "explode": "ValueError: step failed",
    }
    assert instrumented.open_runs() == 0


async def test_agent_workflow(instrumented: InstrumentHandle, events: Events) -> None:
    workflow = AgentWorkflow(
        agents=[
            FunctionAgent(
                name="calc",
                description="Adds numbers",
                tools=[FunctionTool.from_defaults(add)],
                llm=MockFunctionCallingLLM(),
            )
        ]
    )
    assert str(await workflow.run(user_msg="add")) == "Tool calls complete."
    got = events()
    assert len(check_trees(got)) == 1
    outline = tree(got)
    assert outline[0] == "$ai_trace AgentWorkflow.run"
    assert outline.count("    $ai_generation MockFunctionCallingLLM.chat") == 2
    assert "    $ai_span add" in outline  # the tool call sits under its call_tool step


async def test_concurrent_agent_runs_stay_apart(
    instrumented: InstrumentHandle, events: Events
) -> None:
    agent = FunctionAgent(tools=[FunctionTool.from_defaults(add)], llm=MockFunctionCallingLLM())

    async def ask(i: int) -> Any:
        with trace_context(user_id=f"user-{i}", session_id=f"chat-{i}"):
            return await agent.run(f"task {i}")

    await asyncio.gather(*(ask(i) for i in range(10)))
    traces = check_trees(events())
    assert len(traces) == 10
    for group in traces.values():
        root = next(e for e in group if e["event"] == "$ai_trace")
        i = int(props(root)["$ai_input_state"].split("task ")[1].split("'")[0])
        assert {e["distinct_id"] for e in group} == {f"user-{i}"}
        assert {props(e)["$ai_session_id"] for e in group} == {f"chat-{i}"}
        assert sum(e["event"] == "$ai_generation" for e in group) == 2
