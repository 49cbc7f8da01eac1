"""Hostile metadata, tags and inputs never raise into the program and never lose a trace
(issue 11 item 7; item 4 for shared and cyclic containers)."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from langchain_core.runnables import RunnableLambda

from support.langchain_fakes import EchoChatModel
from support.langchain_helpers import Recorder


class Unprintable:
    """Every way of turning it into text raises."""

    def __str__(self) -> str:
        raise RuntimeError("no str")

    def __repr__(self) -> str:
        raise RuntimeError("no repr")

    def __format__(self, spec: str) -> str:
        raise RuntimeError("no format")


class HashableUnprintable(Unprintable):
    def __hash__(self) -> int:
        return 7


def _cyclic() -> dict[str, Any]:
    d: dict[str, Any] = {"name": "loop"}
    d["self"] = d
    d["list"] = [d, d]
    return d


def _shared_fanout(levels: int = 30) -> dict[str, Any]:
    """A dict holding the one below it four times, ``levels`` deep (4**levels paths).

    Converting it costs the caller one visit per dict (it stays shared in the copy).
    """
    node: dict[str, Any] = {"leaf": "x"}
    for _ in range(levels):
        node = {"a": node, "b": node, "c": node, "d": node}
    return node


def _chain() -> Any:
    return RunnableLambda(lambda x: "fixed").with_config(run_name="prep") | EchoChatModel()


HOSTILE_METADATA = [
    pytest.param({1: "int key", (2, 3): "tuple key"}, id="non-string-keys"),
    pytest.param({HashableUnprintable(): "v"}, id="unprintable-key"),
    pytest.param({"feature": Unprintable()}, id="unprintable-value"),
    pytest.param({"user_id": Unprintable(), "session_id": Unprintable()}, id="unprintable-ids"),
    pytest.param({"posthog_properties": "not a dict", "cycle": _cyclic()}, id="cyclic-value"),
]


@pytest.mark.parametrize("metadata", HOSTILE_METADATA)
def test_hostile_metadata_keeps_the_trace(rec: Recorder, metadata: dict[Any, Any]) -> None:
    handler = rec.handler(distinct_id="fallback-user")
    out = _chain().invoke("hello", config={"callbacks": [handler], "metadata": metadata})
    assert out.content == "echo:fixed"
    events = rec.events()
    assert [e["event"] for e in events] == ["$ai_span", "$ai_generation", "$ai_trace"]
    assert {e["properties"]["$ai_trace_id"] for e in events} == {
        events[-1]["properties"]["$ai_trace_id"]
    }
    gen = events[1]["properties"]
    assert gen["$ai_output_choices"] == [{"role": "assistant", "content": "echo:fixed"}]
    assert gen["$ai_input_tokens"] == 1
    if "user_id" in metadata:  # an id that cannot be printed falls back to the handler's
        assert {e["distinct_id"] for e in events} == {"fallback-user"}
    assert handler.callback_errors == 0
    json.dumps(events)  # everything the sink got is plain JSON


def test_metadata_keys_are_text_without_calling_str(rec: Recorder) -> None:
    handler = rec.handler()
    run = uuid.uuid4()
    handler.on_chain_start(
        {"name": "x"},
        {},
        run_id=run,
        metadata={1: "a", 2.5: "b", HashableUnprintable(): "c"},  # type: ignore[dict-item]
    )
    handler.on_chain_end({}, run_id=run)
    (event,) = rec.events()
    p = event["properties"]
    assert (p["1"], p["2.5"], p["<HashableUnprintable>"]) == ("a", "b", "c")


def test_hostile_tags_are_dropped_not_fatal(rec: Recorder) -> None:
    handler = rec.handler(tags=["base"])
    run, child = uuid.uuid4(), uuid.uuid4()
    tags: Any = ["keep", 3, Unprintable(), None, "keep", "seq:step:1"]
    handler.on_chain_start({"name": "root"}, {"q": 1}, run_id=run, tags=tags)
    handler.on_tool_start({"name": "tool"}, "in", run_id=child, parent_run_id=run, tags=tags)
    handler.on_tool_end("out", run_id=child)
    handler.on_chain_end({"a": 1}, run_id=run)
    events = rec.events()
    assert len(events) == 2
    for e in events:
        assert e["properties"]["$ai_tags"] == ["base", "keep"]
    assert handler.callback_errors == 0


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(_cyclic(), id="cyclic"),
        pytest.param(_shared_fanout(), id="shared-4x-30-levels"),
        pytest.param({"obj": Unprintable(), "items": [Unprintable()] * 3}, id="unprintable"),
        pytest.param(list(range(100_000)), id="long-list"),
    ],
)
def test_hostile_inputs_and_outputs_never_raise(rec: Recorder, value: Any) -> None:
    handler = rec.handler()
    chain = RunnableLambda(lambda x: x).with_config(run_name="identity")
    assert chain.invoke(value, config={"callbacks": [handler]}) is value
    # a normal trace recorded after it is intact
    _chain().invoke("after", config={"callbacks": [handler]})
    events = rec.events()
    assert [e["event"] for e in events] == ["$ai_trace", "$ai_span", "$ai_generation", "$ai_trace"]
    assert events[0]["properties"]["$ai_span_name"] == "identity"
    assert "$ai_input_state" in events[0]["properties"]
    assert events[2]["properties"]["$ai_output_choices"][0]["content"] == "echo:fixed"
    assert handler.callback_errors == 0
    json.dumps(events)


def test_a_mutated_input_is_recorded_as_it_was(rec: Recorder) -> None:
    handler = rec.handler()
    state: dict[str, Any] = {"history": ["a"]}

    def step(x: dict[str, Any]) -> str:
        x["history"].append("added by the step")
        return "done"

    RunnableLambda(step).invoke(state, config={"callbacks": [handler]})
    (event,) = rec.events()
    assert event["properties"]["$ai_input_state"] == {"history": ["a"]}
