"""The manual API: shared trace ids under concurrency, and bad arguments never raising."""

from __future__ import annotations

import logging
import random
import threading
import uuid
from collections.abc import Callable
from types import MappingProxyType
from typing import Any

import pytest

from posthog_callbacks import MemorySink, PosthogExporter
from posthog_callbacks.sizing import estimate_bytes, value_bytes
from posthog_callbacks.spans import snapshot_small
from posthog_callbacks.tracing import open_span_bytes
from support.forking import fork_while_held

# -- shared trace ids ---------------------------------------------------------------------


def test_concurrent_traces_sharing_a_trace_id_hang_under_the_first() -> None:
    sink = MemorySink()
    exporter = PosthogExporter(sink=sink)
    started = threading.Barrier(6)
    ending = threading.Barrier(6)
    handles: dict[int, tuple[str, str]] = {}

    def work(i: int) -> None:
        trace = exporter.trace(f"turn-{i}", trace_id="conversation-1", input=i)
        with trace.span(f"step-{i}") as step:
            handles[i] = (trace.span_id, step.span_id)
            started.wait()  # all six traces are open at once
            step.update(output=i)
        ending.wait()
        trace.end(output=i)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert exporter.flush()
    events = sink.events
    assert len(events) == 12
    props = {e["properties"]["$ai_span_name"]: e["properties"] for e in events}
    assert {p["$ai_trace_id"] for p in props.values()} == {"conversation-1"}
    assert not any(p["$ai_is_error"] for p in props.values())  # no "span never ended"
    roots = [e for e in events if e["event"] == "$ai_trace"]
    assert len(roots) == 1  # the first active trace with the id is the root
    owner = roots[0]["properties"]["$ai_span_name"]
    for i in range(6):
        trace_span_id, step_span_id = handles[i]
        step = props[f"step-{i}"]
        assert step["$ai_parent_id"] == trace_span_id and step["$ai_span_id"] == step_span_id
        assert step["$ai_output_state"] == i
        turn = props[f"turn-{i}"]
        assert turn["$ai_output_state"] == i and turn["$ai_input_state"] == i
        if f"turn-{i}" == owner:
            assert trace_span_id == "conversation-1"
        else:
            assert turn["$ai_span_id"] == trace_span_id != "conversation-1"
            assert turn["$ai_parent_id"] == "conversation-1"
    uuids = [e["uuid"] for e in events]
    assert len(set(uuids)) == 12
    assert exporter.stats().closed_orphans == 0 and exporter.stats().open_runs == 0


def test_a_trace_id_reused_after_its_trace_ended_is_a_root_again() -> None:
    sink = MemorySink()
    exporter = PosthogExporter(sink=sink)
    for turn in ("first", "second"):
        with exporter.trace(turn, trace_id="conv"):
            pass
    exporter.flush()
    assert [(e["event"], e["properties"]["$ai_span_name"]) for e in sink.events] == [
        ("$ai_trace", "first"),
        ("$ai_trace", "second"),
    ]
    assert sink.events[0]["uuid"] != sink.events[1]["uuid"]


def test_ending_one_shared_trace_leaves_the_others_children_alone() -> None:
    sink = MemorySink()
    exporter = PosthogExporter(sink=sink)
    a = exporter.trace("a", trace_id="shared")
    b = exporter.trace("b", trace_id="shared")
    b_child = b.span("b-child")
    a.span("a-forgotten")
    a.end()
    b_child.end(output="done")
    b.end()
    exporter.flush()
    props = {e["properties"]["$ai_span_name"]: e["properties"] for e in sink.events}
    assert props["a-forgotten"]["$ai_error"] == "span never ended (its trace ended first)"
    assert props["b-child"]["$ai_is_error"] is False
    assert props["b-child"]["$ai_output_state"] == "done"
    assert exporter.stats().closed_orphans == 1


# -- bad arguments never raise ------------------------------------------------------------


class Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("no str")

    __repr__ = __str__


class Labelled:
    def __str__(self) -> str:
        return "custom"


class ArrayLike:
    """Like a numpy array: its truth value raises."""

    def __bool__(self) -> bool:
        raise ValueError("the truth value of an array is ambiguous")

    def __len__(self) -> int:
        return 2

    def __str__(self) -> str:
        return "[1 2]"


Case = Callable[[PosthogExporter], None]


def root(**kw: Any) -> Case:
    def run(ex: PosthogExporter) -> None:
        with ex.trace("t", input="i", **kw):
            pass

    return run


def root_update(**kw: Any) -> Case:
    def run(ex: PosthogExporter) -> None:
        with ex.trace("t", input="i") as t:
            t.update(**kw)

    return run


def gen_update(**kw: Any) -> Case:
    def run(ex: PosthogExporter) -> None:
        with ex.trace("t") as t, t.generation("g", model="m", provider="openai") as g:
            g.update(**kw)

    return run


def child(kind: str, *args: Any, **kw: Any) -> Case:
    def run(ex: PosthogExporter) -> None:
        with ex.trace("t") as t, getattr(t, kind)(*args, **kw):
            pass

    return run


def end_with(**kw: Any) -> Case:
    def run(ex: PosthogExporter) -> None:
        t = ex.trace("t")
        t.span("s").end(**kw)
        t.end()

    return run


PERSONLESS = {"$process_person_profile": False}
ROOT = {"$ai_is_error": False, "$ai_span_name": "t", "$ai_trace_name": "t", **PERSONLESS}
ROOT_I = {**ROOT, "$ai_input_state": "i"}
GEN = {
    "$ai_http_status": 200,
    "$ai_is_error": False,
    "$ai_model": "m",
    "$ai_provider": "openai",
    "$ai_span_name": "g",
    "$ai_usage_missing_reason": "the provider reported no token usage",
    **PERSONLESS,
}

# case -> (run, [(event, expected properties without ids, latency and library fields)])
CASES: dict[str, tuple[Case, list[tuple[str, dict[str, Any]]]]] = {
    "tags-unprintable-item": (
        root(tags=["ok", Unprintable()]),
        [("$ai_trace", {**ROOT_I, "$ai_tags": ["ok"], "ok": True})],
    ),
    "tags-not-iterable": (root(tags=5), [("$ai_trace", ROOT_I)]),
    "tags-one-string": (
        root(tags="beta"),
        [("$ai_trace", {**ROOT_I, "$ai_tags": ["beta"], "beta": True})],
    ),
    "metadata-string": (root(metadata="abc"), [("$ai_trace", ROOT_I)]),
    "metadata-list": (root(metadata=["a", "b"]), [("$ai_trace", ROOT_I)]),
    "metadata-int-key": (root(metadata={1: "a"}), [("$ai_trace", {**ROOT_I, "1": "a"})]),
    "metadata-unprintable-key": (
        root(metadata={Unprintable(): 1, "k": 2}),
        [("$ai_trace", {**ROOT_I, "k": 2})],
    ),
    "properties-string": (root(properties="x"), [("$ai_trace", ROOT_I)]),
    "trace-id-unprintable": (root(trace_id=Unprintable()), [("$ai_trace", ROOT_I)]),
    "trace-id-int": (root(trace_id=123), [("$ai_trace", ROOT_I)]),
    "distinct-id-unprintable": (root(distinct_id=Unprintable()), [("$ai_trace", ROOT_I)]),
    "session-id-int": (root(session_id=42), [("$ai_trace", {**ROOT_I, "$ai_session_id": "42"})]),
    "name-unprintable": (
        lambda ex: ex.trace(Unprintable()).end(),  # type: ignore[arg-type]
        [("$ai_trace", {**ROOT, "$ai_span_name": "trace", "$ai_trace_name": "trace"})],
    ),
    "status-unprintable": (root_update(status=Unprintable()), [("$ai_trace", ROOT_I)]),
    "status-object": (
        root_update(status=Labelled()),
        [("$ai_trace", {**ROOT_I, "$ai_span_status": "custom"})],
    ),
    "error-unprintable": (
        root_update(error=Unprintable()),
        [("$ai_trace", {**ROOT_I, "$ai_is_error": True, "$ai_error": "<Unprintable>"})],
    ),
    "error-int": (
        root_update(error=123),
        [("$ai_trace", {**ROOT_I, "$ai_is_error": True, "$ai_error": "123"})],
    ),
    "name-array": (
        root_update(name=ArrayLike()),
        [("$ai_trace", {**ROOT_I, "$ai_span_name": "[1 2]", "$ai_trace_name": "[1 2]"})],
    ),
    "name-list": (
        root_update(name=["a"]),
        [("$ai_trace", {**ROOT_I, "$ai_span_name": "['a']", "$ai_trace_name": "['a']"})],
    ),
    "metadata-update-list": (root_update(metadata=[1]), [("$ai_trace", ROOT_I)]),
    "usage-string": (gen_update(usage="junk"), [("$ai_generation", GEN), ("$ai_trace", ROOT)]),
    "usage-int": (gen_update(usage=5), [("$ai_generation", GEN), ("$ai_trace", ROOT)]),
    "http-status-string": (
        gen_update(http_status="201"),
        [("$ai_generation", GEN), ("$ai_trace", ROOT)],
    ),
    "http-status-bool": (
        gen_update(http_status=True),
        [("$ai_generation", GEN), ("$ai_trace", ROOT)],
    ),
    "model-parameters-string": (
        gen_update(model_parameters="hot"),
        [("$ai_generation", GEN), ("$ai_trace", ROOT)],
    ),
    "provider-unprintable": (
        gen_update(provider=Unprintable()),
        [("$ai_generation", GEN), ("$ai_trace", ROOT)],
    ),
    "model-array": (
        gen_update(model=ArrayLike()),
        [("$ai_generation", {**GEN, "$ai_model": "[1 2]"}), ("$ai_trace", ROOT)],
    ),
    "span-name-unprintable": (
        child("span", Unprintable()),
        [
            ("$ai_span", {"$ai_is_error": False, "$ai_span_name": "span", **PERSONLESS}),
            ("$ai_trace", ROOT),
        ],
    ),
    "generation-bad-model-provider": (
        child("generation", "g", model=Unprintable(), provider=7),
        [
            (
                "$ai_generation",
                {k: v for k, v in GEN.items() if k != "$ai_model"} | {"$ai_provider": "7"},
            ),
            ("$ai_trace", ROOT),
        ],
    ),
    "end-error-unprintable": (
        end_with(error=Unprintable()),
        [
            (
                "$ai_span",
                {
                    "$ai_error": "<Unprintable>",
                    "$ai_is_error": True,
                    "$ai_span_name": "s",
                    **PERSONLESS,
                },
            ),
            (
                "$ai_trace",
                {**ROOT, "$ai_is_error": True, "$ai_error": "span 's' failed: <Unprintable>"},
            ),
        ],
    ),
}

_VOLATILE = {
    "$ai_latency",
    "$ai_trace_id",
    "$ai_span_id",
    "$ai_parent_id",
    "$ai_lib",
    "$ai_lib_version",
    "$ai_framework",
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_arguments_never_raise_and_the_rest_is_recorded(
    case: str, caplog: pytest.LogCaptureFixture
) -> None:
    run, expected = CASES[case]
    sink = MemorySink()
    exporter = PosthogExporter(sink=sink)
    with caplog.at_level(logging.WARNING, logger="posthog_callbacks"):
        run(exporter)  # must not raise
        run(exporter)  # the same problem again: not logged again
    assert exporter.flush()
    got = [
        (e["event"], {k: v for k, v in e["properties"].items() if k not in _VOLATILE})
        for e in sink.events
    ]
    assert got == expected * 2
    for event in sink.events:
        props = event["properties"]
        assert props["$ai_lib"] == "posthog-callbacks" and props["$ai_framework"] == "manual"
        assert event["distinct_id"] == props["$ai_trace_id"]  # personless
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == len(set(warnings)) <= 2
    assert all("ignoring an unusable" in w for w in warnings)
    assert exporter.stats().open_runs == 0


def test_bad_trace_ids_are_replaced_or_turned_into_text() -> None:
    sink = MemorySink()
    exporter = PosthogExporter(sink=sink)
    with exporter.trace("a", trace_id=123):  # type: ignore[arg-type]
        pass
    with exporter.trace("b", trace_id=Unprintable()) as t:  # type: ignore[arg-type]
        pass
    exporter.flush()
    assert sink.events[0]["properties"]["$ai_trace_id"] == "123"
    generated = sink.events[1]["properties"]["$ai_trace_id"]
    assert generated == t.trace_id and uuid.UUID(generated)


# -- byte estimates: one walk per span, the same figure as measuring the finished span -----


def test_the_manual_api_queues_each_span_with_the_estimate_of_the_finished_span(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    exporter = PosthogExporter(sink=MemorySink())
    queued: list[tuple[Any, int | None]] = []
    enqueue = exporter._batcher.enqueue

    def spy(item: Any, size: int | None = None) -> None:
        queued.append((item, size))
        enqueue(item, size)

    monkeypatch.setattr(exporter._batcher, "enqueue", spy)
    runs = exporter.manual_runs
    checked: list[str] = []

    def check_open_runs() -> None:
        """The open-run budget's figure for each open span, measured while copying."""
        for key, span in list(runs._runs.items()):
            assert runs._sizes[key][0] == open_span_bytes(span)
            checked.append(key)

    chat = [{"role": "user", "content": "What is the capital of France?"}]
    with exporter.trace("t", input={"q": "x" * 50}, properties={"team": "geo"}) as trace:
        with trace.generation(
            "g", model="m", input=chat, model_parameters={"temperature": 0.2}, tools=["t"]
        ) as gen:
            check_open_runs()
            gen.update(
                output=[{"role": "assistant", "content": "Paris."}], usage={"input_tokens": 3}
            )
        with trace.span("replaced", input="small", metadata={"k": "v"}) as step:
            step.update(input="y" * 10_000, metadata={"more": "z" * 500}, output="done")
        with trace.span("tools later", input=("a", 1, None, b"raw")) as step:
            check_open_runs()
            step.update(tools=[{"name": "search"}], model_parameters={"top_k": 3})
        trace.end(output={"answer": "Paris."})
    assert len(queued) == 4
    assert len(checked) == 4
    for item, size in queued:
        assert size is None or size == estimate_bytes(item)
    sizes = {item.name: size for item, size in queued}
    assert sizes["g"] is not None and sizes["t"] is not None  # kept from the open-run walk
    assert sizes["replaced"] is None and sizes["tools later"] is None  # measured again
    assert exporter.flush() and len(exporter.sink.events) == 4  # type: ignore[union-attr]


def test_mapping_sized_is_mapping_and_its_byte_estimate_in_one_walk() -> None:
    """Metadata and model parameters: the fast path's copy and size equal what mapping()
    and sizing.value_bytes give, and every other shape falls back to them."""
    tracer = PosthogExporter(sink=MemorySink())._manual
    deep = {"a": {"b": {"c": "d"}}}
    values: list[Any] = [
        {},
        {"temperature": 0.2, "max_tokens": 256, "stream": True, "stop": None},
        {"k": "v", "tags": ["a", "b"], "pair": ("x", 1)},
        {"messages": [{"role": "user", "content": "hi"}]},
        {1: "int key", "s": "text"},
        {"raw": b"bytes"},
        deep,
        {f"k{i}": i for i in range(40)},
        {"obj": ClassRaises()},
        MappingProxyType({"proxy": "v"}),
        ["not", "a", "mapping"],
    ]
    rng = random.Random(5)
    for _ in range(300):
        values.append(
            {
                rng.choice(["a", "b", "c", 7]): rng.choice(
                    ["t" * rng.randrange(20), 3, 1.5, None, ["x", 2], {"n": "v"}, b"b"]
                )
                for _ in range(rng.randrange(6))
            }
        )
    fast = 0
    for value in values:
        expected = tracer.mapping("metadata", value)
        got, size = tracer.mapping_sized("metadata", value)
        assert got == expected
        assert size == value_bytes(expected)
        fast += type(value) is dict and snapshot_small(value) is not None
    assert fast > 100  # the fast path was taken, and fell back on the other shapes
    nested = {"inner": ["x"]}
    copy, _ = tracer.mapping_sized("metadata", nested)
    nested["inner"].append("later")  # the caller's later change does not reach the span
    assert copy == {"inner": ["x"]}


class ClassRaises:
    """A proxy-like object: reading its ``__class__`` raises (isinstance() may read it)."""

    @property  # type: ignore[misc]
    def __class__(self) -> type:
        raise ZeroDivisionError("boom")


def test_an_object_whose_class_attribute_raises_is_no_problem_for_any_argument() -> None:
    odd: Any = ClassRaises()
    exporter = PosthogExporter(sink=MemorySink())
    roots: list[dict[str, Any]] = [
        {"metadata": odd},
        {"tags": odd},
        {"properties": odd},
        {"trace_id": odd},
        {"distinct_id": odd},
        {"session_id": odd},
        {"input": odd},
    ]
    for kw in roots:
        exporter.trace("t", **kw).end(output=odd, error=odd)
    trace = exporter.trace(odd)
    children: list[dict[str, Any]] = [
        {"metadata": odd},
        {"model_parameters": odd},
        {"model": odd},
        {"provider": odd},
        {"tools": odd},
        {"input": odd},
    ]
    for kw in children:
        gen = trace.generation(odd, **kw)
        gen.update(
            usage=odd,
            http_status=odd,
            error=odd,
            metadata=odd,
            model_parameters=odd,
            tools=odd,
            input=odd,
            output=odd,
            name=odd,
            status=odd,
        )
        gen.end(error=odd)
    trace.end(error=odd)
    assert exporter.flush()
    stats = exporter.stats()
    assert (stats.sent, stats.dropped, stats.open_runs) == (len(roots) + len(children) + 1, 0, 0)


def test_a_fork_while_another_thread_holds_the_shared_trace_id_lock_gives_a_working_child() -> None:
    import os

    if not hasattr(os, "fork"):
        pytest.skip("no fork")
    exporter = PosthogExporter(sink=MemorySink())
    parent_trace = exporter.trace("parent", trace_id="shared")

    def child() -> bool:  # a fresh lock, and "shared" is not active here
        trace = exporter.trace("child", trace_id="shared")
        trace.end()
        return trace.span_id == "shared"  # a root again, not a span under the parent's

    code = fork_while_held(exporter._manual._lock, child)
    assert code is not None, "the child hung on a lock copied held by fork()"
    assert code == 0
    parent_trace.end()
    assert exporter.flush()
