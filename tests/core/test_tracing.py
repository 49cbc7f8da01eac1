"""The trace-assembly core: owner rule, child spans, root completion, warn-once, run tables
that outlive their owner."""

from __future__ import annotations

import gc
import json
import logging
import threading
import time
import uuid
from typing import Any

import pytest

from posthog_callbacks import MemorySink, PosthogExporter
from posthog_callbacks.spans import FinishedSpan, OpenSpan, SpanKind
from posthog_callbacks.tracing import (
    EVICTED_OVER_BUDGET,
    Recorder,
    RootCompletion,
    RunRegistry,
    RunTable,
    TraceOwner,
    WarnOnce,
    child_span,
    open_span_bytes,
    safe_text,
    trace_owner,
)
from support.forking import fork_while_held


class Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("no")


class FakeRecorder:
    def __init__(self) -> None:
        self.spans: list[FinishedSpan] = []
        self.closed: list[tuple[str, str]] = []
        self.tables: list[RunTable[Any]] = []

    def submit(self, span: FinishedSpan, size: int | None = None) -> None:
        self.spans.append(span)

    def close_runs(self, spans: Any, reason: str) -> None:
        self.closed.extend((s.name, reason) for s in spans)

    def is_sampled(self, trace_id: str) -> bool:
        return True

    def register_runs(self, table: RunTable[Any]) -> None:
        self.tables.append(table)


def root(name: str = "root", trace_id: str = "t1", start: float | None = None) -> OpenSpan:
    span = OpenSpan(trace_id, trace_id, None, SpanKind.TRACE, name)
    if start is not None:
        span.start_time = start
    return span


def test_the_exporter_and_a_fake_are_recorders() -> None:
    assert isinstance(PosthogExporter(sink=MemorySink()), Recorder)
    assert isinstance(FakeRecorder(), Recorder)
    assert not isinstance(object(), Recorder)


@pytest.mark.parametrize(
    ("metadata", "handler_user", "handler_session", "expected"),
    [
        ({"user_id": "u-md", "session_id": "s-md"}, "u-h", "s-h", ("u-md", "s-md")),
        ({"userId": "u-camel", "sessionId": "s-camel"}, "u-h", "s-h", ("u-camel", "s-camel")),
        ({"user_id": "a", "userId": "b"}, None, None, ("a", None)),
        ({"thread_id": "thread-1"}, "u-h", "s-h", ("u-h", "thread-1")),
        ({"session_id": "s", "thread_id": "thread-1"}, None, None, (None, "s")),
        ({}, "u-h", "s-h", ("u-h", "s-h")),
        (None, None, None, (None, None)),
        ({"user_id": ""}, "u-h", None, ("u-h", None)),
        ({"user_id": 42}, None, None, ("42", None)),
        ({"user_id": Unprintable()}, "u-h", None, ("u-h", None)),
        ("not a mapping", "u-h", "s-h", ("u-h", "s-h")),
        ({1: "non-string key", "user_id": "u"}, None, None, ("u", None)),
        ({}, Unprintable(), 7, (None, "7")),
    ],
)
def test_trace_owner_precedence(
    metadata: Any, handler_user: Any, handler_session: Any, expected: tuple[Any, Any]
) -> None:
    owner = trace_owner(metadata, distinct_id=handler_user, session_id=handler_session)
    assert owner == TraceOwner(*expected)


def test_the_exporter_default_distinct_id_applies_when_the_owner_is_unknown() -> None:
    sink = MemorySink()
    exporter = PosthogExporter(sink=sink, default_distinct_id="anon")
    owner = trace_owner({}, distinct_id=None)
    span = root()
    span.distinct_id = owner.distinct_id
    exporter.submit(span.finish())
    exporter.flush()
    assert sink.events[0]["distinct_id"] == "anon"


def test_safe_text() -> None:
    assert safe_text("a") == "a"
    assert safe_text("") is None
    assert safe_text(None) is None
    assert safe_text(3) == "3"
    assert safe_text(Unprintable()) is None


def test_child_span_inherits_identity_not_labels() -> None:
    parent = OpenSpan(
        "t1",
        "p1",
        "t1",
        SpanKind.SPAN,
        "parent",
        framework="llama_index",
        distinct_id="u1",
        session_id="s1",
        properties={"p": 1},
        groups={"company": "acme"},
        privacy_mode=True,
        tags=("beta",),
        metadata={"m": 1},
    )
    child = child_span(parent, "c1", SpanKind.GENERATION, "chat", start_time=5.0)
    assert (child.trace_id, child.span_id, child.parent_id) == ("t1", "c1", "p1")
    assert (child.kind, child.name, child.start_time) == (SpanKind.GENERATION, "chat", 5.0)
    assert child.framework == "llama_index"
    assert (child.distinct_id, child.session_id) == ("u1", "s1")
    assert child.properties == {"p": 1} and child.groups == {"company": "acme"}
    assert child.privacy_mode is True
    assert child.tags == () and child.metadata is None


def test_warn_once_logs_one_warning_per_key(caplog: pytest.LogCaptureFixture) -> None:
    warn = WarnOnce(logging.getLogger("posthog_callbacks.test"))
    with caplog.at_level(logging.DEBUG, logger="posthog_callbacks"):
        assert warn("a", "first %s", 1) is True
        assert warn("a", "again %s", 2) is False
        assert warn("b", "other") is True
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == ["first 1", "other"]
    assert warn.count == 3


def test_root_completion_waits_for_the_last_child_and_stream() -> None:
    rec = FakeRecorder()
    runs: RunTable[str] = RunTable()
    roots = RootCompletion(runs, rec)
    r = root()
    runs.add("root", r)
    c1 = child_span(r, "c1", SpanKind.SPAN, "c1")
    c2 = child_span(r, "c2", SpanKind.SPAN, "c2")
    runs.add("c1", c1)
    runs.add("c2", c2)
    roots.stream_opened(r)
    assert roots.end_root("root", r) is None  # two children and a stream still open
    assert "ended" in r.extra
    runs.pop("c1")
    assert roots.child_ended("root") is None
    runs.pop("c2")
    assert roots.child_ended("root") is None  # the stream is still being read
    assert roots.stream_closed("root", r) is r
    assert [s.name for s in rec.spans] == ["root"]
    assert len(runs) == 0
    assert roots.child_ended("root") is None  # already finished: nothing twice
    assert roots.child_ended(None) is None


def test_root_completion_finishes_at_once_when_nothing_is_open() -> None:
    rec = FakeRecorder()
    runs: RunTable[str] = RunTable()
    roots = RootCompletion(runs, rec)
    r = root()
    runs.add("root", r)
    assert roots.end_root("root", r) is r
    assert [s.name for s in rec.spans] == ["root"]


def test_root_completion_submits_once_under_concurrent_child_ends() -> None:
    for _ in range(50):
        rec = FakeRecorder()
        runs: RunTable[str] = RunTable()
        roots = RootCompletion(runs, rec)
        r = root()
        runs.add("root", r)
        for i in range(8):
            runs.add(f"c{i}", child_span(r, f"c{i}", SpanKind.SPAN, f"c{i}"))
        roots.end_root("root", r)
        barrier = threading.Barrier(8)

        def end(
            i: int, barrier: threading.Barrier, runs: RunTable[str], roots: RootCompletion[str]
        ) -> None:
            barrier.wait()
            runs.pop(f"c{i}")
            roots.child_ended("root")

        threads = [threading.Thread(target=end, args=(i, barrier, runs, roots)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert [s.name for s in rec.spans] == ["root"]


def test_run_table_evicts_the_oldest_beyond_its_bound() -> None:
    runs: RunTable[int] = RunTable(max_runs=2)
    spans = [root(f"r{i}", f"t{i}") for i in range(3)]
    assert runs.add(0, spans[0]) == []
    assert runs.add(1, spans[1]) == []
    assert runs.add(2, spans[2]) == [spans[0]]
    assert len(runs) == 2 and runs.open_in_trace("t0") == 0


def test_run_table_reset_after_fork_does_not_take_a_held_lock() -> None:
    runs: RunTable[str] = RunTable()
    runs.add("a", root())
    runs._lock.acquire()  # as if another thread held it when the process forked
    registry = RunRegistry()
    registry.register(runs)
    registry.reset_after_fork()
    assert len(runs) == 0
    runs.add("b", root())  # the new lock works
    assert runs.pop("b") is not None


class Handler:
    """A per-call handler, as ``config={"callbacks": [Handler(ex)]}`` makes one."""

    def __init__(self, exporter: Recorder) -> None:
        self.runs: RunTable[str] = RunTable()
        exporter.register_runs(self.runs)

    def start(self, name: str, start: float | None = None) -> None:
        self.runs.add(name, root(name, f"trace-{name}", start))


def test_open_runs_outlive_a_collected_handler_and_close_at_shutdown() -> None:
    sink = MemorySink()
    exporter = PosthogExporter(sink=sink)
    Handler(exporter).start("cancelled-ainvoke")
    gc.collect()
    assert exporter.stats().open_runs == 1
    exporter.shutdown()
    [event] = sink.events
    assert event["event"] == "$ai_trace"
    assert event["properties"]["$ai_span_name"] == "cancelled-ainvoke"
    assert event["properties"]["$ai_is_error"] is True
    assert event["properties"]["$ai_error"] == "run still open at shutdown"
    stats = exporter.stats()
    assert (stats.closed_orphans, stats.open_runs, stats.sent) == (1, 0, 1)


def test_open_runs_of_a_collected_handler_are_closed_by_the_ttl_sweep() -> None:
    sink = MemorySink()
    exporter = PosthogExporter(sink=sink, open_run_ttl=0.2, flush_interval=0.05)
    Handler(exporter).start("stale", start=0.0)
    Handler(exporter).start("fresh", start=time.time() + 3600)  # never stale in this test
    gc.collect()
    for _ in range(200):
        exporter.flush()
        if sink.events:
            break
        threading.Event().wait(0.02)
    [event] = sink.events
    assert event["properties"]["$ai_span_name"] == "stale"
    assert event["properties"]["$ai_error"] == "run never ended (closed after 0.2s)"
    stats = exporter.stats()
    assert (stats.closed_orphans, stats.open_runs) == (1, 1)
    exporter.shutdown()
    assert [e["properties"]["$ai_span_name"] for e in sink.events] == ["stale", "fresh"]


def test_a_collected_empty_table_leaves_nothing_behind() -> None:
    registry = RunRegistry()
    for _ in range(100):
        table: RunTable[str] = RunTable()
        registry.register(table)
        table.add("a", root())
        table.pop("a")
    del table
    gc.collect()
    assert len(registry._adopted) == 0
    assert registry.open_runs() == 0
    assert registry.drain() == []


def test_a_fork_while_another_thread_holds_a_run_table_lock_gives_a_working_child() -> None:
    import os

    if not hasattr(os, "fork"):
        pytest.skip("no fork")
    exporter = PosthogExporter(sink=MemorySink())
    handler = Handler(exporter)
    handler.start("parent-run")

    def child() -> bool:  # the at-fork hook replaced the lock and forgot the parent's runs
        handler.start("child-run")
        return len(handler.runs) == 1 and exporter.stats().open_runs == 1

    code = fork_while_held(handler.runs._lock, child)
    assert code is not None, "the child hung on a lock copied held by fork()"
    assert code == 0
    assert [s.name for s in handler.runs.drain()] == ["parent-run"]  # the parent untouched


# -- the byte budget of open runs -------------------------------------------------------


def test_run_table_counts_the_bytes_its_runs_hold_and_gives_them_back() -> None:
    registry = RunRegistry(max_bytes=1 << 40)
    table: RunTable[str] = RunTable()
    registry.register(table)
    sizes = {}
    for i, name in enumerate(["a", "b", "c", "d"]):
        span = root(name, trace_id="t1" if i < 2 else f"t{i}")
        span.input = "x" * (1000 * (i + 1))
        span.metadata = {"k": "v" * 100}
        sizes[name] = open_span_bytes(span)
        assert 1000 * (i + 1) + 100 < sizes[name] < 1000 * (i + 1) + 2048
        assert table.add(name, span) == []
    assert table.held_bytes == registry.held_bytes() == sum(sizes.values())
    table.pop("c")
    assert table.held_bytes == sizes["a"] + sizes["b"] + sizes["d"]
    assert {s.name for s in table.pop_trace("t1")} == {"a", "b"}
    assert table.held_bytes == sizes["d"]
    table.drain()
    assert table.held_bytes == registry.held_bytes() == 0
    stale = root("stale", start=0.0)
    stale.input = "y" * 5000
    table.add("stale", stale)
    assert table.expired(60.0) == [stale]
    assert table.held_bytes == 0


def test_an_input_set_right_after_opening_is_counted_at_the_next_add() -> None:
    # LangChain opens the run, then sets its input: the next add measures it again.
    registry = RunRegistry(max_bytes=1 << 40)
    table: RunTable[str] = RunTable()
    registry.register(table)
    first = root("first")
    table.add("first", first)
    first.input = "x" * 50_000
    assert table.held_bytes < 2048
    table.add("second", root("second", trace_id="t2"))
    assert table.held_bytes == open_span_bytes(first) + open_span_bytes(root("second"))
    table.add("third", root("third", trace_id="t3"))  # measured once more, never twice
    assert table.held_bytes == open_span_bytes(first) + 2 * open_span_bytes(root("x"))


def test_the_run_being_added_is_never_evicted_even_over_the_whole_budget() -> None:
    registry = RunRegistry(max_bytes=10_000)
    table: RunTable[str] = RunTable()
    registry.register(table)
    small = root("small")
    assert table.add("small", small) == []
    huge = root("huge", trace_id="t2")
    huge.input = "x" * 50_000
    assert table.add("huge", huge) == [small]
    assert small.error == EVICTED_OVER_BUDGET
    assert table.get("huge") is huge and len(table) == 1
    assert registry.held_bytes() == open_span_bytes(huge)


def test_open_runs_of_every_front_door_share_one_byte_budget_and_the_oldest_are_evicted() -> None:
    """Runs that never end, with big inputs, through the manual API and a LangChain handler:
    the exporter holds at most its byte budget, the oldest runs (of either front door) are
    closed as errors with the reason, exported and counted; every other run stays intact."""
    pytest.importorskip("langchain_core")
    from posthog_callbacks.langchain import CallbackHandler

    size = 200_000
    budget = 2_000_000  # room for 9 such runs (each ~size + 1 KiB)
    sink = MemorySink()
    exporter = PosthogExporter(sink=sink, max_open_run_bytes=budget)
    handler = CallbackHandler(exporter)
    registry = exporter._registry
    inputs: dict[str, str] = {}
    opened: list[str] = []
    handles = []
    for i in range(40):
        name = f"run-{i:02d}"
        text = f"{name}:" + "x" * size
        inputs[name] = text
        opened.append(name)
        if i % 2:
            handler.on_chain_start({"name": name}, {"question": text}, run_id=uuid.uuid4())
        else:
            handles.append(exporter.trace(name=name, input=text))
        open_spans = [
            span
            for table in (exporter.manual_runs, *registry._tables)
            for span in list(table._runs.values())
        ]
        held = sum(open_span_bytes(span) for span in {id(s): s for s in open_spans}.values())
        # The estimate stays within the budget, and is the sum over the open runs (both
        # front doors add a run with its input set, so each is measured whole at once).
        assert registry.held_bytes() <= budget
        assert held == registry.held_bytes()
        stats = exporter.stats()
        assert stats.open_runs + stats.closed_orphans == i + 1
        assert stats.open_runs == len({id(s) for s in open_spans})
    stats = exporter.stats()
    # 9 runs fit the budget
    assert (stats.closed_orphans, stats.open_runs) == (31, 9)
    evicted_count = stats.closed_orphans
    assert exporter.flush()
    # The oldest were evicted, in the order they were opened, whichever front door.
    names = [e["properties"]["$ai_span_name"] for e in sink.events]
    assert names == opened[:evicted_count]
    for event in sink.events:
        props = event["properties"]
        assert props["$ai_is_error"] is True
        assert props["$ai_error"] == EVICTED_OVER_BUDGET
    for handle in handles:
        handle.end()  # an evicted manual trace ends quietly; one still open ends normally
    exporter.shutdown()
    by_name = {e["properties"]["$ai_span_name"]: e["properties"] for e in sink.events}
    assert sorted(by_name) == opened and len(sink.events) == 40
    for name in opened[evicted_count:]:
        props = by_name[name]
        text = json.dumps(props.get("$ai_input_state", props.get("$ai_input")))
        assert inputs[name] in text  # intact
        if int(name[-2:]) % 2:  # the LangChain runs never ended: closed at shutdown
            assert props["$ai_error"] == "run still open at shutdown"
        else:
            assert props.get("$ai_is_error") is not True
    stats = exporter.stats()
    n_lc_open = sum(1 for name in opened[evicted_count:] if int(name[-2:]) % 2)
    assert stats.closed_orphans == evicted_count + n_lc_open
    assert (stats.open_runs, stats.sent, stats.dropped) == (0, 40, 0)


def test_the_byte_account_stays_exact_while_threads_open_end_and_evict_runs() -> None:
    registry = RunRegistry(max_bytes=200_000)
    tables: list[RunTable[str]] = [RunTable(), RunTable()]
    for table in tables:
        registry.register(table)
    evicted: list[OpenSpan] = []
    ended: list[OpenSpan] = []
    lock = threading.Lock()

    def work(worker: int) -> None:
        table = tables[worker % 2]
        for i in range(300):
            key = f"w{worker}-{i}"
            span = root(key, trace_id=key)
            span.input = "x" * (1000 + 37 * i)
            out = table.add(key, span)
            done = table.pop(f"w{worker}-{i - 1}") if i % 2 else None
            with lock:
                evicted.extend(out)
                if done is not None:
                    ended.append(done)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    still_open = [span for table in tables for span in table._runs.values()]
    names = [s.name for s in evicted] + [s.name for s in ended] + [s.name for s in still_open]
    assert sorted(names) == sorted(f"w{w}-{i}" for w in range(4) for i in range(300))
    assert evicted and all(s.error == EVICTED_OVER_BUDGET for s in evicted)
    assert registry.held_bytes() == sum(open_span_bytes(s) for s in still_open)
    assert registry.held_bytes() <= 200_000 + open_span_bytes(max(still_open, key=open_span_bytes))
    for table in tables:
        table.drain()
    assert registry.held_bytes() == 0


def test_a_table_without_the_trace_index_still_answers_for_a_trace() -> None:
    """The manual API's table keeps no index by trace; pop_trace/open_in_trace scan."""
    for index in (True, False):
        table: RunTable[str] = RunTable(index_traces=index)
        for key, trace in (("a", "t1"), ("b", "t1"), ("c", "t2")):
            table.add(key, OpenSpan(trace, key, None, SpanKind.SPAN, key))
        assert (table.open_in_trace("t1"), table.open_in_trace("t2")) == (2, 1)
        assert table.pop("b") is not None and table.open_in_trace("t1") == 1
        assert [s.span_id for s in table.pop_trace("t1")] == ["a"]
        assert (len(table), table.open_in_trace("t1"), table.pop_trace("t1")) == (1, 0, [])
        assert [s.span_id for s in table.drain()] == ["c"]
