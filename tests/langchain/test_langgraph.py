"""LangGraph through the LangChain handler: agent loop, subgraph, interrupt / resume."""

from __future__ import annotations

import warnings
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.tools import tool
from langchain_core.utils.function_calling import convert_to_openai_tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode, tools_condition
from langgraph.types import Command, interrupt

from support.langchain_fakes import ProviderFake
from support.langchain_helpers import Recorder, parent_of, span_id


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def _graph(model: ProviderFake, approve: bool) -> Any:
    def agent(state: MessagesState) -> dict[str, Any]:
        return {"messages": [model.invoke(state["messages"])]}

    sub = StateGraph(MessagesState)
    sub.add_node("summarize", lambda s: {"messages": [AIMessage("summary")]})
    sub.add_edge(START, "summarize")

    def ask(state: MessagesState) -> dict[str, Any]:
        answer = interrupt("approve?")
        return {"messages": [HumanMessage(f"approved: {answer}")]}

    g = StateGraph(MessagesState)
    g.add_node("agent", agent)
    g.add_node("tools", ToolNode([add]))
    g.add_node("sub", sub.compile())
    g.add_edge(START, "agent")
    g.add_conditional_edges("agent", tools_condition, {"tools": "tools", END: "sub"})
    g.add_edge("tools", "agent")
    if approve:
        g.add_node("ask", ask)
        g.add_edge("sub", "ask")
        g.add_edge("ask", END)
    else:
        g.add_edge("sub", END)
    return g.compile(checkpointer=InMemorySaver())


def _model() -> ProviderFake:
    return ProviderFake(
        responses=[
            AIMessage(
                "",
                tool_calls=[{"name": "add", "args": {"a": 2, "b": 3}, "id": "call_7"}],
                usage_metadata={"input_tokens": 10, "output_tokens": 5, "total_tokens": 15},
            ),
            AIMessage(
                "it is 5",
                usage_metadata={"input_tokens": 20, "output_tokens": 3, "total_tokens": 23},
            ),
        ]
    )


def _named(events: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [e for e in events if e["properties"]["$ai_span_name"] == name]


def test_agent_loop_with_tool_calls_and_subgraph(rec: Recorder) -> None:
    app = _graph(_model(), approve=False)
    out = app.invoke(
        {"messages": [HumanMessage("add 2 and 3")]},
        config={
            "callbacks": [rec.handler()],
            "configurable": {"thread_id": "thread-1"},
            "metadata": {"user_id": "alice"},
        },
    )
    assert out["messages"][-1].content == "summary"
    events = rec.events()
    (root,) = [e for e in events if e["event"] == "$ai_trace"]
    trace_id = root["properties"]["$ai_trace_id"]
    assert root["properties"]["$ai_span_name"] == "LangGraph"
    assert {e["properties"]["$ai_trace_id"] for e in events} == {trace_id}
    assert {e["distinct_id"] for e in events} == {"alice"}
    # LangGraph's thread id is the session when none is given
    assert {e["properties"]["$ai_session_id"] for e in events} == {"thread-1"}
    for e in events:
        assert not any(k.startswith(("langgraph_", "checkpoint_")) for k in e["properties"])

    agents = _named(events, "agent")
    assert len(agents) == 2
    assert all(parent_of(a) == trace_id for a in agents)
    gens = [e for e in events if e["event"] == "$ai_generation"]
    assert [parent_of(g) for g in gens] == [span_id(a) for a in agents]
    first, second = (g["properties"] for g in gens)
    assert first["$ai_output_choices"] == [
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {
                    "type": "function",
                    "id": "call_7",
                    "function": {"name": "add", "arguments": '{"a": 2, "b": 3}'},
                }
            ],
        }
    ]
    assert (first["$ai_input_tokens"], second["$ai_input_tokens"]) == (10, 20)
    assert second["$ai_input"][-1] == {
        "role": "tool",
        "content": "5",
        "name": "add",
        "tool_call_id": "call_7",
    }

    (tools_node,) = _named(events, "tools")
    (add_span,) = _named(events, "add")
    assert parent_of(tools_node) == trace_id
    assert parent_of(add_span) == span_id(tools_node)
    assert add_span["properties"]["$ai_output_state"]["tool_call_id"] == "call_7"

    (sub_node,) = _named(events, "sub")
    (summarize,) = _named(events, "summarize")
    subgraph = [e for e in _named(events, "LangGraph") if e is not root]
    assert len(subgraph) == 1
    assert parent_of(sub_node) == trace_id
    assert parent_of(subgraph[0]) == span_id(sub_node)
    assert parent_of(summarize) == span_id(subgraph[0])
    assert not any(e["properties"]["$ai_is_error"] for e in events)


def test_interrupt_and_command_resume_are_not_errors(rec: Recorder) -> None:
    handler = rec.handler(session_id="fallback-session")
    app = _graph(_model(), approve=True)
    cfg: Any = {"callbacks": [handler], "configurable": {"thread_id": "t-9"}}
    first = app.invoke({"messages": [HumanMessage("add 2 and 3")]}, config=cfg)
    assert first["__interrupt__"][0].value == "approve?"
    done = app.invoke(Command(resume="yes"), config=cfg)
    assert done["messages"][-1].content == "approved: yes"
    events = rec.events()
    assert not any(e["properties"]["$ai_is_error"] for e in events)
    roots = [e for e in events if e["event"] == "$ai_trace"]
    assert len(roots) == 2
    asks = _named(events, "ask")
    assert [a["properties"].get("$ai_span_status") for a in asks] == ["interrupted", None]
    assert roots[0]["properties"]["$ai_span_status"] == "interrupted"
    assert "$ai_span_status" not in roots[1]["properties"]
    assert parent_of(asks[1]) == roots[1]["properties"]["$ai_trace_id"]
    assert asks[1]["properties"]["$ai_output_state"] == {
        "messages": [{"role": "user", "content": "approved: yes"}]
    }
    assert {e["properties"]["$ai_session_id"] for e in events} == {"t-9"}
    assert handler.open_runs() == 0


def test_node_error_marks_node_and_graph(rec: Recorder) -> None:
    g = StateGraph(MessagesState)

    def explode(state: MessagesState) -> dict[str, Any]:
        raise RuntimeError("node blew up")

    g.add_node("explode", explode)
    g.add_edge(START, "explode")
    with pytest.raises(RuntimeError):
        g.compile().invoke({"messages": [HumanMessage("x")]}, config={"callbacks": [rec.handler()]})
    events = rec.events()
    (node,) = _named(events, "explode")
    (root,) = [e for e in events if e["event"] == "$ai_trace"]
    for e in (node, root):
        assert e["properties"]["$ai_is_error"] is True
        assert e["properties"]["$ai_error"] == "RuntimeError: node blew up"


def test_command_to_parent_graph_is_not_an_error(rec: Recorder) -> None:
    def hop(state: MessagesState) -> Command[Any]:
        return Command(
            graph=Command.PARENT, goto="done", update={"messages": [AIMessage("hopped")]}
        )

    sub = StateGraph(MessagesState)
    sub.add_node("hop", hop)
    sub.add_edge(START, "hop")
    g = StateGraph(MessagesState)
    g.add_node("inner", sub.compile())
    g.add_node("done", lambda s: {"messages": [AIMessage("end")]})
    g.add_edge(START, "inner")
    g.add_edge("done", END)
    out = g.compile().invoke(
        {"messages": [HumanMessage("x")]}, config={"callbacks": [rec.handler()]}
    )
    assert [m.content for m in out["messages"]] == ["x", "hopped", "end"]
    events = rec.events()
    assert not any(e["properties"]["$ai_is_error"] for e in events)
    statuses = {
        e["properties"]["$ai_span_name"]: e["properties"].get("$ai_span_status")
        for e in events
        if e["event"] == "$ai_span"
    }
    assert statuses == {"hop": "command", "LangGraph": "command", "inner": "command", "done": None}


class _ToolFake(ProviderFake):
    def bind_tools(self, tools: Any, **kwargs: Any) -> Any:
        return self.bind(tools=[convert_to_openai_tool(t) for t in tools], **kwargs)


def test_prebuilt_react_agent(rec: Recorder) -> None:
    model = _ToolFake(
        responses=[
            AIMessage("", tool_calls=[{"name": "add", "args": {"a": 2, "b": 3}, "id": "c1"}]),
            AIMessage("5"),
        ]
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from langgraph.prebuilt import create_react_agent

        agent = create_react_agent(model, [add])
    out = agent.invoke({"messages": [HumanMessage("2+3")]}, config={"callbacks": [rec.handler()]})
    assert out["messages"][-1].content == "5"
    events = rec.events()
    (root,) = [e for e in events if e["event"] == "$ai_trace"]
    trace_id = root["properties"]["$ai_trace_id"]
    ids = {span_id(e) for e in events}
    assert all(parent_of(e) in ids for e in events if e is not root)
    agents = _named(events, "agent")
    assert len(agents) == 2 and all(parent_of(a) == trace_id for a in agents)
    gens = [e["properties"] for e in events if e["event"] == "$ai_generation"]
    assert len(gens) == 2
    for g in gens:
        assert g["$ai_tools"] == [
            {
                "type": "function",
                "function": {
                    "name": "add",
                    "description": "Add two integers.",
                    "parameters": {
                        "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
                        "required": ["a", "b"],
                        "type": "object",
                    },
                },
            }
        ]
    (tool_span,) = _named(events, "add")
    assert tool_span["properties"]["$ai_input_state"] == {"a": 2, "b": 3}
    assert parent_of(tool_span) == span_id(_named(events, "tools")[0])
