"""Each run is recorded once per exporter, whichever of our handlers see it (issue 10.1).

Ground truth is the fake model's own count of calls served and tokens reported; the events
must add up to exactly that, with ``instrument()`` and explicit handlers active together.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from langchain_core.callbacks import dispatch_custom_event
from langchain_core.runnables import RunnableLambda

from posthog_callbacks import MemorySink, PosthogExporter
from posthog_callbacks.langchain import CallbackHandler, instrument
from support.langchain_fakes import CountingChatModel
from support.langchain_helpers import Recorder, span_id


@pytest.fixture
def other() -> Iterator[Recorder]:
    r = Recorder()
    yield r
    r.exporter.shutdown(timeout=5)


def _app(model: CountingChatModel) -> Any:
    def step(x: str) -> str:
        dispatch_custom_event("checkpoint", {"x": x})
        return x

    return RunnableLambda(step).with_config(run_name="prep") | model


def _assert_once(rec: Recorder, model: CountingChatModel, traces: int) -> list[dict[str, Any]]:
    events = rec.events()
    gens = [e["properties"] for e in events if e["event"] == "$ai_generation"]
    assert len(gens) == model.served["calls"]
    assert sum(g["$ai_input_tokens"] for g in gens) == model.served["input_tokens"]
    assert sum(g["$ai_output_tokens"] for g in gens) == model.served["output_tokens"]
    assert sum(e["event"] == "$ai_trace" for e in events) == traces
    points = [e for e in events if e["properties"].get("$ai_span_name") == "checkpoint"]
    assert len(points) == traces
    ids = [span_id(e) for e in events]
    assert len(ids) == len(set(ids))
    assert len(events) == 4 * traces  # trace, prep, checkpoint, generation
    return events


def test_instrument_plus_explicit_handler_records_once(rec: Recorder) -> None:
    model = CountingChatModel()
    handle = instrument(rec.exporter, distinct_id="from-instrument")
    try:
        for i in range(5):
            explicit = CallbackHandler(rec.exporter, distinct_id="explicit", tags=["x"])
            _app(model).invoke(f"question {'w ' * i}", config={"callbacks": [explicit]})
    finally:
        handle.uninstrument()
    events = _assert_once(rec, model, traces=5)
    assert model.served["calls"] == 5
    # the explicit handler's options win over instrument()'s
    assert {e["distinct_id"] for e in events} == {"explicit"}
    assert all(e["properties"]["x"] is True for e in events)


def test_explicit_handler_added_after_the_hook_still_wins(rec: Recorder) -> None:
    model = CountingChatModel()
    handle = instrument(rec.exporter, distinct_id="from-instrument")
    try:
        explicit = CallbackHandler(rec.exporter, tags=["explicit"])
        # the hook's handler comes first here: it sees every run before the explicit one
        inner = model.with_config(callbacks=[explicit])
        chain = RunnableLambda(lambda x: x).with_config(run_name="prep") | inner
        chain.invoke("a b c")
    finally:
        handle.uninstrument()
    events = rec.events()
    gens = [e for e in events if e["event"] == "$ai_generation"]
    assert len(gens) == model.served["calls"] == 1
    assert gens[0]["properties"]["$ai_tags"] == ["explicit"]  # recorded by the explicit one
    assert {e["distinct_id"] for e in events} == {"from-instrument"}  # the trace's owner
    assert gens[0]["properties"]["$ai_input_tokens"] == model.served["input_tokens"]
    assert len(events) == 3


async def test_async_instrument_plus_explicit_handler_records_once(rec: Recorder) -> None:
    model = CountingChatModel()
    handle = instrument(rec.exporter)
    try:
        explicit = CallbackHandler(rec.exporter)
        await asyncio.gather(
            *(
                _app(model).ainvoke(f"q{i} " + "w " * i, config={"callbacks": [explicit]})
                for i in range(8)
            )
        )
    finally:
        handle.uninstrument()
    _assert_once(rec, model, traces=8)


def test_two_explicit_handlers_on_one_exporter_record_once(rec: Recorder) -> None:
    model = CountingChatModel()
    first, second = CallbackHandler(rec.exporter), CallbackHandler(rec.exporter)
    for i in range(3):
        _app(model).invoke(f"q {i}", config={"callbacks": [first, second]})
    _assert_once(rec, model, traces=3)


def test_each_exporter_gets_one_copy(rec: Recorder, other: Recorder) -> None:
    model = CountingChatModel()
    handle = instrument(rec.exporter)
    try:
        for i in range(3):
            handlers = [CallbackHandler(rec.exporter), CallbackHandler(other.exporter)]
            _app(model).invoke(f"q {i} x", config={"callbacks": handlers})
    finally:
        handle.uninstrument()
    assert model.served["calls"] == 3
    _assert_once(rec, model, traces=3)
    _assert_once(other, model, traces=3)


async def test_async_each_exporter_gets_one_copy(rec: Recorder, other: Recorder) -> None:
    model = CountingChatModel()
    handle = instrument(other.exporter)
    try:
        handlers = [CallbackHandler(rec.exporter), CallbackHandler(other.exporter)]
        await asyncio.gather(
            *(_app(model).ainvoke(f"q {i}", config={"callbacks": handlers}) for i in range(6))
        )
    finally:
        handle.uninstrument()
    _assert_once(rec, model, traces=6)
    _assert_once(other, model, traces=6)


def test_a_per_call_handler_that_is_gone_leaves_its_runs_to_the_exporter() -> None:
    sink = MemorySink()
    exporter = PosthogExporter(sink=sink)
    try:
        handler = CallbackHandler(exporter)
        handler.on_chain_start({"name": "never_ends"}, {}, run_id=uuid.uuid4())
        del handler
        exporter.shutdown(timeout=5)
        (event,) = sink.events
        assert event["properties"]["$ai_span_name"] == "never_ends"
        assert event["properties"]["$ai_is_error"] is True
    finally:
        exporter.shutdown(timeout=5)


def test_a_forked_child_records_with_new_handlers(rec: Recorder) -> None:
    model = CountingChatModel()
    _app(model).invoke("parent", config={"callbacks": [CallbackHandler(rec.exporter)]})
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            sink = MemorySink()
            exporter = PosthogExporter(sink=sink)
            _app(model).invoke("child", config={"callbacks": [CallbackHandler(exporter)]})
            exporter.flush(timeout=10)
            code = 0 if len(sink.events) == 4 else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    _assert_once(rec, model, traces=1)
