"""The dispatcher door's cheaper paths give what the general ones give.

* ``span_input`` reads a query-like span's query in place (no copy of its arguments): the
  same value as the general path, which copies the arguments first (kept here as the
  reference);
* ``DoorRuns`` asks the root completion about a root only when that root has had its own
  end: a root that ends before its children is still exported when the last one ends,
  once, and the door forgets it;
* a model call or an embedding inside a sampled trace is placed inline: the same trace
  and parent ``_place_leaf`` (kept for new and unsampled traces) gives.
"""

from __future__ import annotations

import inspect
import logging
import threading
from collections.abc import Iterable
from typing import Any

import pytest
from llama_index.core import VectorStoreIndex
from llama_index.core.schema import QueryBundle

from posthog_callbacks.llama_index import InstrumentHandle
from posthog_callbacks.llama_index.extract import text_of
from posthog_callbacks.llama_index.nodes import (
    CHAT,
    QUERY,
    RERANK,
    RETRIEVE,
    SYNTH,
    TOOL,
    span_input,
)
from posthog_callbacks.llama_index.runs import DoorRuns, root_key
from posthog_callbacks.spans import FinishedSpan, OpenSpan, SpanKind
from posthog_callbacks.tracing import RunTable, WarnOnce
from support.llama_helpers import Events, props

# -- span_input ---------------------------------------------------------------------------


def _reference_query_input(bound_args: Any) -> Any:
    """span_input's general path for query, retrieve and synthesize spans (the reference)."""
    try:
        args = dict(bound_args.arguments)
    except Exception:
        return None
    args.pop("self", None)
    for key in ("str_or_query_bundle", "query_bundle", "query", "query_str"):
        if key in args:
            return text_of(args[key])
    return span_input(-1, bound_args)  # no query argument: every argument, compacted


def query(self: Any, str_or_query_bundle: Any) -> None: ...


def retrieve(self: Any, query_bundle: Any, **kwargs: Any) -> None: ...


def synthesize(self: Any, query: Any, nodes: Any, additional_source_nodes: Any = None) -> None: ...


def by_str(self: Any, query_str: Any, nodes: Any = None) -> None: ...


def no_query(self: Any, nodes: Any, limit: int = 3) -> None: ...


class Hostile:
    """A query-like object whose attribute raises something other than AttributeError."""

    @property
    def query_str(self) -> str:
        raise RuntimeError("no")


VALUES: list[Any] = [
    "what is the answer?",
    "",
    QueryBundle(query_str="from a bundle"),
    QueryBundle(query_str="x", custom_embedding_strs=["y"]),
    None,
    42,
    ["a", "b"],
    {"k": "v"},
]


@pytest.mark.parametrize("kind", [QUERY, RETRIEVE, SYNTH])
@pytest.mark.parametrize("func", [query, retrieve, synthesize, by_str, no_query])
@pytest.mark.parametrize("value", VALUES, ids=repr)
def test_query_input_read_in_place_equals_the_copy(kind: int, func: Any, value: Any) -> None:
    params = [p for p in inspect.signature(func).parameters if p not in ("self", "kwargs")]
    bound = inspect.signature(func).bind(object(), *([value] * len(params)))
    assert span_input(kind, bound) == _reference_query_input(bound)
    assert bound.arguments[params[0]] is value  # read, not changed


def test_query_input_raises_like_the_general_path() -> None:
    bound = inspect.signature(query).bind(object(), Hostile())
    with pytest.raises(RuntimeError):
        _reference_query_input(bound)
    with pytest.raises(RuntimeError):  # span_enter's own guard logs it, as before
        span_input(QUERY, bound)


class Arguments:
    """Bound arguments whose ``arguments`` is not a dict (an older or foreign shape)."""

    def __init__(self, arguments: Any) -> None:
        self.arguments = arguments


@pytest.mark.parametrize("kind", [QUERY, RETRIEVE, SYNTH, CHAT, TOOL, RERANK])
def test_other_argument_shapes(kind: int) -> None:
    pairs = [("self", object()), ("query_bundle", QueryBundle(query_str="q"))]
    assert span_input(kind, Arguments(pairs)) == span_input(kind, Arguments(dict(pairs)))
    assert span_input(kind, Arguments(None)) is None  # not a mapping: no input
    assert span_input(kind, object()) is None


# -- DoorRuns: roots that end before a child ------------------------------------------------


class Collect:
    """A recorder keeping what it is given."""

    def __init__(self) -> None:
        self.spans: list[FinishedSpan] = []
        self.closed: list[tuple[OpenSpan, str]] = []

    def submit(self, span: FinishedSpan, size: int | None = None) -> None:
        self.spans.append(span)

    def close_runs(self, spans: Iterable[OpenSpan], reason: str) -> None:
        self.closed.extend((span, reason) for span in spans)

    def is_sampled(self, trace_id: str) -> bool:
        return True

    def register_runs(self, table: RunTable[Any]) -> None:
        pass


def _open(runs: DoorRuns, trace: str, children: int) -> tuple[OpenSpan, list[OpenSpan]]:
    root = OpenSpan(trace, trace, None, SpanKind.TRACE, "root")
    runs.add(root_key(trace), root)
    kids = []
    for i in range(children):
        kid = OpenSpan(trace, f"{trace}-{i}", trace, SpanKind.SPAN, f"child {i}")
        kid.extra["root_key"] = root_key(trace)
        runs.add(f"{trace}/{i}", kid)
        kids.append(kid)
    return root, kids


def _runs(recorder: Collect, finished: list[OpenSpan] | None = None) -> DoorRuns:
    on_finished = finished.append if finished is not None else None
    return DoorRuns(recorder, WarnOnce(logging.getLogger(__name__)), on_finished)


def test_children_first_then_root() -> None:
    recorder = Collect()
    finished: list[OpenSpan] = []
    runs = _runs(recorder, finished)
    root, kids = _open(runs, "t1", 2)
    for i, kid in enumerate(kids):
        assert runs.pop(f"t1/{i}") is kid
        runs.submit(kid)
    assert [s.name for s in recorder.spans] == ["child 0", "child 1"]
    assert runs.end_root(root) is True
    assert [s.name for s in recorder.spans] == ["child 0", "child 1", "root"]
    assert len(runs) == 0 and not runs._ended and finished == []


def test_root_ends_before_its_children() -> None:
    recorder = Collect()
    finished: list[OpenSpan] = []
    runs = _runs(recorder, finished)
    root, kids = _open(runs, "t1", 2)
    other_root, other_kids = _open(runs, "t2", 1)
    assert runs.end_root(root) is False  # two children still open
    assert [s.name for s in recorder.spans] == []
    assert runs.pop("t1/0") is kids[0]
    runs.submit(kids[0])
    assert [s.name for s in recorder.spans] == ["child 0"]  # one child still open
    assert runs.pop("t2/0") is other_kids[0]
    runs.submit(other_kids[0])  # another trace's child: its root has not ended
    assert runs.get(root_key("t2")) is other_root
    assert runs.pop("t1/1") is kids[1]
    runs.submit(kids[1])
    assert [s.name for s in recorder.spans] == ["child 0", "child 0", "child 1", "root"]
    assert recorder.spans[-1].span_id == "t1"
    assert finished == [root]
    assert runs.end_root(other_root) is True
    assert len(runs) == 0 and not runs._ended
    assert sum(s.name == "root" for s in recorder.spans) == 2


def test_a_root_closed_elsewhere_is_forgotten(monkeypatch: pytest.MonkeyPatch) -> None:
    import posthog_callbacks.llama_index.runs as runs_module

    monkeypatch.setattr(runs_module, "_MAX_ENDED", 4)
    recorder = Collect()
    runs = _runs(recorder)
    runs._prune_at = 4
    for n in range(4):  # ended, waiting for a child, then drained (a sweep, a shutdown)
        root, _ = _open(runs, f"old{n}", 1)
        assert runs.end_root(root) is False
    runs.table.drain()
    assert len(runs._ended) == 4
    waiting, kids = _open(runs, "new", 1)
    assert runs.end_root(waiting) is False  # over the bound: the drained ones go
    assert runs._ended == {root_key("new")}
    assert runs.pop("new/0") is kids[0]
    runs.submit(kids[0])
    assert [s.name for s in recorder.spans] == ["child 0", "root"]
    assert not runs._ended


def _race_once(trace: str) -> None:
    recorder = Collect()
    runs = _runs(recorder)
    root, kids = _open(runs, trace, 1)
    start = threading.Barrier(2)

    def child() -> None:
        start.wait()
        if runs.pop(f"{trace}/0") is kids[0]:
            runs.submit(kids[0])

    thread = threading.Thread(target=child)
    thread.start()
    start.wait()
    runs.end_root(root)
    thread.join()
    assert sorted(s.name for s in recorder.spans) == ["child 0", "root"], trace
    assert len(runs) == 0 and not runs._ended


def test_a_child_ending_while_its_root_ends_finishes_it_once() -> None:
    """Threads race a root's own end against its last child's end: exported once."""
    for attempt in range(200):
        _race_once(f"t{attempt}")


# -- leaves placed inline --------------------------------------------------------------------


@pytest.mark.parametrize("streaming", [False, True])
def test_leaves_in_a_trace_are_placed_as_place_leaf_places_them(
    index: VectorStoreIndex, instrumented: InstrumentHandle, events: Events, streaming: bool
) -> None:
    # (the index is built before instrument(): only the query's leaves are recorded)
    recorder = instrumented._recorder
    expected: list[tuple[str, str | None]] = []  # (trace id, parent) per leaf, in start order

    def spy(original: Any) -> Any:
        def start(event: Any) -> None:
            node = recorder.nodes.get(event.span_id)
            if node is not None and node.trace is not None and node.trace.sampled:
                placed = recorder._place_leaf(node)  # no side effect in a sampled trace
                assert placed is not None
                expected.append((placed[0].trace_id, placed[2]))
            original(event)

        return start

    for name in ("LLMCompletionStartEvent", "EmbeddingStartEvent"):
        recorder.events[name] = spy(recorder.events[name])
    recorder._by_type.clear()
    response: Any = index.as_query_engine(streaming=streaming).query("What is the answer?")
    if streaming:
        assert "".join(response.response_gen) == "forty two"
    leaves = [props(e) for e in events() if e["event"] in ("$ai_generation", "$ai_embedding")]
    leaves.sort(key=lambda p: 0 if "$ai_embedding" in str(p.get("$ai_span_name")) else 1)
    got = [(str(p["$ai_trace_id"]), p.get("$ai_parent_id")) for p in leaves]
    assert len(expected) == 2
    assert sorted(got, key=str) == sorted(expected, key=str)
