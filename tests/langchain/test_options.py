"""Handler options, identity rules, privacy, sampling, orphans, cancellation, instrument()."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import posthog
import pytest
from langchain_core.runnables import RunnableLambda

from posthog_callbacks import MemorySink, PosthogExporter
from posthog_callbacks.langchain import CallbackHandler, instrument, uninstrument
from posthog_callbacks.langchain import model as lm
from support.langchain_fakes import EchoChatModel
from support.langchain_helpers import Recorder, parent_of


def _chain() -> Any:
    return RunnableLambda(lambda x: x).with_config(run_name="prep") | EchoChatModel()


def test_constructor_options_reach_every_event(rec: Recorder) -> None:
    handler = rec.handler(
        distinct_id="d-1",
        session_id="s-1",
        trace_id="fixed-trace",
        trace_name="my pipeline",
        properties={"env": "test"},
        groups={"company": "acme"},
        tags=["nightly"],
    )
    _chain().invoke("hello", config={"callbacks": [handler]})
    events = rec.events()
    assert [e["event"] for e in events] == ["$ai_span", "$ai_generation", "$ai_trace"]
    root = events[-1]["properties"]
    assert root["$ai_trace_id"] == "fixed-trace"
    assert root["$ai_span_name"] == "my pipeline"
    for e in events:
        p = e["properties"]
        assert e["distinct_id"] == "d-1"
        assert p["$ai_trace_id"] == "fixed-trace"
        assert p["$ai_session_id"] == "s-1"
        assert p["env"] == "test"
        assert p["$groups"] == {"company": "acme"}
        assert p["nightly"] is True
    assert parent_of(events[0]) == "fixed-trace"
    assert parent_of(events[1]) == "fixed-trace"


def test_run_metadata_overrides_handler_identity(rec: Recorder) -> None:
    handler = rec.handler(distinct_id="default-user", session_id="default-session")
    _chain().invoke(
        "x",
        config={
            "callbacks": [handler],
            "metadata": {
                "userId": "meta-user",
                "sessionId": "meta-session",
                "thread_id": "th",
                "posthog_properties": {"plan": "pro"},
                "ls_foo": 1,
                "lc_bar": 2,
                "langgraph_node": "n",
                "checkpoint_ns": "c",
                "feature": "search",
            },
            "tags": ["graph:step:3", "map:key:left", "seq:step:9", "keep-me"],
        },
    )
    for e in rec.events():
        p = e["properties"]
        assert e["distinct_id"] == "meta-user"
        assert p["$ai_session_id"] == "meta-session"
        assert p["plan"] == "pro"
        assert p["feature"] == "search"
        assert p["thread_id"] == "th"
        assert p["$ai_tags"] == ["keep-me"]
        for key in (
            "ls_foo",
            "lc_bar",
            "langgraph_node",
            "checkpoint_ns",
            "userId",
            "sessionId",
            "posthog_properties",
            "graph:step:3",
            "map:key:left",
        ):
            assert key not in p


def test_personless_without_any_user(rec: Recorder) -> None:
    _chain().invoke("x", config={"callbacks": [rec.handler()]})
    events = rec.events()
    trace_id = events[-1]["properties"]["$ai_trace_id"]
    for e in events:
        assert e["distinct_id"] == trace_id
        assert e["properties"]["$process_person_profile"] is False


def test_privacy_mode_sends_no_content(rec: Recorder) -> None:
    secret = "my-very-private-prompt"
    _chain().invoke(secret, config={"callbacks": [rec.handler(privacy_mode=True)]})
    events = rec.events()
    assert len(events) == 3
    blob = json.dumps(events)
    assert secret not in blob
    gen = events[1]["properties"]
    assert "$ai_input" not in gen and "$ai_output_choices" not in gen
    assert gen["$ai_input_tokens"] == 1


def test_unsampled_traces_record_nothing() -> None:
    sink = MemorySink()
    exporter = PosthogExporter(sink=sink, sample_rate=0.0)
    handler = CallbackHandler(exporter)
    try:
        _chain().invoke("x", config={"callbacks": [handler]})
        assert exporter.flush(timeout=5)
        assert sink.events == []
        assert handler.open_runs() == 0
    finally:
        exporter.shutdown(timeout=5)


def test_orphaned_child_closed_when_root_ends(rec: Recorder) -> None:
    handler = rec.handler()
    root, child = uuid.uuid4(), uuid.uuid4()
    handler.on_chain_start({"name": "root"}, {"q": 1}, run_id=root)
    handler.on_chat_model_start(
        {"id": ["x", "ChatOpenAI"]},
        [[]],
        run_id=child,
        parent_run_id=root,
        metadata={"ls_provider": "openai"},
    )
    handler.on_chain_end({"a": 2}, run_id=root)
    assert handler.open_runs() == 0
    trace, gen = rec.events()
    assert trace["event"] == "$ai_trace"
    assert gen["event"] == "$ai_generation"
    assert gen["properties"]["$ai_is_error"] is True
    assert gen["properties"]["$ai_error"] == (
        "run never ended: its trace's root run finished first"
    )
    assert parent_of(gen) == str(root)
    # a late end callback for the closed run is ignored
    handler.on_llm_end(None, run_id=child)
    assert len(rec.events()) == 2


def test_unknown_parent_groups_children_under_its_id(rec: Recorder) -> None:
    handler = rec.handler()
    outer = uuid.uuid4()
    a, b = uuid.uuid4(), uuid.uuid4()
    handler.on_tool_start({"name": "t1"}, "in", run_id=a, parent_run_id=outer)
    handler.on_tool_end("out", run_id=a)
    handler.on_tool_start({"name": "t2"}, "in", run_id=b, parent_run_id=outer)
    handler.on_tool_end("out", run_id=b)
    events = rec.events()
    assert [e["properties"]["$ai_trace_id"] for e in events] == [str(outer)] * 2
    assert [parent_of(e) for e in events] == [str(outer)] * 2


async def test_cancelled_ainvoke_is_a_status_not_an_error(rec: Recorder) -> None:
    started = asyncio.Event()

    async def slow(x: str) -> str:
        started.set()
        await asyncio.sleep(10)
        return x

    chain = RunnableLambda(lambda x: x).with_config(run_name="pre") | RunnableLambda(
        slow
    ).with_config(run_name="slow")
    handler = rec.handler()
    task = asyncio.create_task(chain.ainvoke("x", config={"callbacks": [handler]}))
    await asyncio.wait_for(started.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    by = rec.by_name()
    for name in ("slow", "RunnableSequence"):
        p = by[name]["properties"]
        assert p["$ai_span_status"] == "cancelled"
        assert p["$ai_is_error"] is False
    assert "$ai_span_status" not in by["pre"]["properties"]


def test_abandoned_async_stream_closes_open_model_run(rec: Recorder) -> None:
    handler = rec.handler()

    async def consume_one() -> None:
        stream = _chain().astream("a b", config={"callbacks": [handler]})
        await stream.__anext__()
        await stream.aclose()

    # the loop's shutdown finalises LangChain's inner generators (GeneratorExit)
    asyncio.run(consume_one())
    by = rec.by_name()
    assert by["RunnableSequence"]["properties"]["$ai_span_status"] == "abandoned"
    assert by["RunnableSequence"]["properties"]["$ai_is_error"] is False
    gen = by["EchoChatModel"]["properties"]
    assert gen["$ai_is_error"] is True
    assert gen["$ai_error"] == "abandoned: the stream was closed before this run ended"
    assert handler.open_runs() == 0


async def test_runs_left_open_are_closed_at_shutdown(rec: Recorder) -> None:
    handler = rec.handler()
    stream = _chain().astream("a b", config={"callbacks": [handler]})
    await stream.__anext__()
    await stream.aclose()  # LangChain sends no end callback while the loop runs
    assert handler.open_runs() == 2
    rec.exporter.shutdown(timeout=5)
    assert handler.open_runs() == 0
    closed = {e["properties"]["$ai_span_name"]: e["properties"] for e in rec.sink.events}
    assert set(closed) == {"prep", "RunnableSequence", "EchoChatModel"}
    for name in ("RunnableSequence", "EchoChatModel"):
        assert closed[name]["$ai_is_error"] is True
    assert closed["prep"]["$ai_is_error"] is False


def test_non_string_metadata_keys_keep_the_trace(rec: Recorder) -> None:
    handler = rec.handler()
    run = uuid.uuid4()
    handler.on_chain_start({"name": "x"}, {}, run_id=run, metadata={1: "a", "k": "b"})  # type: ignore[dict-item]
    handler.on_chain_end({}, run_id=run)
    (event,) = rec.events()
    assert event["event"] == "$ai_trace"
    assert event["properties"]["1"] == "a"
    assert event["properties"]["k"] == "b"
    assert handler.callback_errors == 0


def test_a_failing_callback_is_counted_and_logged_once(
    rec: Recorder, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(lm, "start_generation", broken)
    handler = rec.handler()
    for _ in range(2):
        handler.on_chat_model_start({"name": "m"}, [[]], run_id=uuid.uuid4())
    assert handler.callback_errors == 2
    assert sum("on_chat_model_start failed" in r.getMessage() for r in caplog.records) == 1


def test_retries_are_counted(rec: Recorder) -> None:
    handler = rec.handler()
    run = uuid.uuid4()
    handler.on_chain_start({"name": "flaky"}, {}, run_id=run)
    handler.on_retry(object(), run_id=run)
    handler.on_retry(object(), run_id=run)
    handler.on_chain_end({}, run_id=run)
    assert rec.events()[0]["properties"]["retries"] == 2


def test_posthog_client_is_wrapped_as_exporter() -> None:
    client = posthog.Posthog(
        "phc_test_key_0123456789abcdef", host="http://127.0.0.1:9", sync_mode=True
    )
    for handler in (CallbackHandler(client), CallbackHandler(client=client)):
        assert isinstance(handler.exporter, PosthogExporter)
        handler.exporter.shutdown(timeout=1)
    with pytest.raises(TypeError):
        CallbackHandler(object())
    with pytest.raises(TypeError):
        CallbackHandler(PosthogExporter(sink=MemorySink()), tags="not-a-list")  # type: ignore[arg-type]


def test_instrument_attaches_everywhere_until_uninstrumented(rec: Recorder) -> None:
    handle = instrument(rec.exporter, distinct_id="global-user")
    try:
        _chain().invoke("main thread")
        worker = threading.Thread(target=lambda: _chain().invoke("other thread"))
        worker.start()
        worker.join()
    finally:
        handle.uninstrument()
    _chain().invoke("after")
    events = rec.events()
    traces = [e for e in events if e["event"] == "$ai_trace"]
    assert len(events) == 6
    assert sorted(t["properties"]["$ai_input_state"] for t in traces) == [
        "main thread",
        "other thread",
    ]
    assert {e["distinct_id"] for e in events} == {"global-user"}
    handle.uninstrument()  # idempotent
    uninstrument()


def test_user_id_set_below_the_root_owns_the_trace(rec: Recorder) -> None:
    inner = EchoChatModel().with_config(metadata={"user_id": "inner-user"})
    chain = RunnableLambda(lambda x: x).with_config(run_name="prep") | inner
    chain.invoke("x", config={"callbacks": [rec.handler(distinct_id="handler-user")]})
    by = rec.by_name()
    assert by["prep"]["distinct_id"] == "handler-user"  # ended before the id was known
    assert by["EchoChatModel"]["distinct_id"] == "inner-user"
    assert by["RunnableSequence"]["distinct_id"] == "inner-user"


def test_runs_past_the_ttl_are_closed_by_the_exporter() -> None:
    sink = MemorySink()
    exporter = PosthogExporter(sink=sink, open_run_ttl=0.2, flush_interval=0.05)
    handler = CallbackHandler(exporter)
    try:
        _chain().invoke("warm", config={"callbacks": [handler]})  # starts the worker
        stuck = uuid.uuid4()
        handler.on_tool_start({"name": "stuck_tool"}, "in", run_id=stuck)
        deadline = time.monotonic() + 10
        while handler.open_runs() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert handler.open_runs() == 0
        assert exporter.flush(timeout=5)
        (closed,) = [e for e in sink.events if e["properties"]["$ai_span_name"] == "stuck_tool"]
        assert closed["properties"]["$ai_is_error"] is True
        assert "never ended" in closed["properties"]["$ai_error"]
        handler.on_tool_end("late", run_id=stuck)  # ignored
        assert exporter.flush(timeout=5)
        assert sum(e["properties"]["$ai_span_name"] == "stuck_tool" for e in sink.events) == 1
    finally:
        exporter.shutdown(timeout=5)


def test_one_handler_from_many_threads(rec: Recorder) -> None:
    handler = rec.handler()
    chain = _chain()

    def work(i: int) -> str:
        return str(chain.invoke(f"t{i} " + "w " * (i % 5), config={"callbacks": [handler]}).content)

    with ThreadPoolExecutor(max_workers=8) as pool:
        outs = list(pool.map(work, range(120)))
    assert all(o.startswith("echo:t") for o in outs)
    events = rec.events()
    assert len(events) == 360
    by_trace: dict[str, list[dict[str, Any]]] = {}
    for e in events:
        by_trace.setdefault(e["properties"]["$ai_trace_id"], []).append(e)
    assert len(by_trace) == 120
    for tid, tree in by_trace.items():
        (root,) = [e for e in tree if e["event"] == "$ai_trace"]
        (gen,) = [e for e in tree if e["event"] == "$ai_generation"]
        (prep,) = [e for e in tree if e["event"] == "$ai_span"]
        assert parent_of(gen) == parent_of(prep) == tid
        text = root["properties"]["$ai_input_state"]
        assert gen["properties"]["$ai_output_choices"][0]["content"] == f"echo:{text}"
    assert handler.open_runs() == 0


class _Hostile:
    """Raises on every attribute access."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        raise RuntimeError(f"no {name}")

    def __repr__(self) -> str:
        return "Hostile()"


@pytest.mark.parametrize(
    "junk",
    [None, 0, "text", [None], {"a": object()}, _Hostile()],
    ids=["none", "int", "str", "list", "dict", "hostile"],
)
def test_every_callback_survives_junk(rec: Recorder, junk: Any) -> None:
    handler = rec.handler()
    run, child = uuid.uuid4(), uuid.uuid4()
    handler.on_chain_start(junk, junk, run_id=run, tags=None, metadata=None)
    handler.on_chat_model_start(
        junk,
        [[junk]],
        run_id=child,
        parent_run_id=run,
        invocation_params=junk,
        metadata={"ls_provider": junk},
    )
    handler.on_llm_new_token(junk, run_id=child)
    handler.on_stream_event(junk, run_id=child)
    handler.on_retry(junk, run_id=child)
    handler.on_custom_event("evt", junk, run_id=run)
    handler.on_agent_action(junk, run_id=run)
    handler.on_agent_finish(junk, run_id=run)
    handler.on_llm_end(junk, run_id=child)
    handler.on_tool_start(junk, junk, run_id=uuid.uuid4(), inputs=junk)
    handler.on_retriever_start(junk, junk, run_id=uuid.uuid4())
    handler.on_llm_error(RuntimeError("x"), run_id=uuid.uuid4())
    handler.on_chain_end(junk, run_id=run, inputs=junk)
    assert handler.open_runs() == 2  # the tool and retriever never ended
    assert rec.exporter.flush(timeout=5)


def test_a_failing_end_callback_still_exports_the_run(rec: Recorder) -> None:
    class BadResult:
        @property
        def generations(self) -> Any:
            raise RuntimeError("broken result object")

    handler = rec.handler()
    run = uuid.uuid4()
    handler.on_chat_model_start(
        {"name": "m"},
        [[]],
        run_id=run,
        metadata={"ls_provider": "openai", "ls_model_name": "gpt-x"},
    )
    handler.on_llm_end(BadResult(), run_id=run)
    (event,) = rec.events()
    assert event["event"] == "$ai_generation"
    assert event["properties"]["$ai_model"] == "gpt-x"
    assert handler.callback_errors == 1
    assert handler.open_runs() == 0


def test_instrument_twice_warns(rec: Recorder, caplog: pytest.LogCaptureFixture) -> None:
    first = instrument(rec.exporter)
    second = instrument(rec.exporter)
    try:
        assert any("recorded once" in r.getMessage() for r in caplog.records)
        _chain().invoke("x")
        assert len(rec.events()) == 3
    finally:
        uninstrument()
    assert not first.active and not second.active
