"""Span records on the caller's thread: ids, the snapshot's fast path, byte estimates."""

from __future__ import annotations

import itertools
import os
import random
import uuid
from typing import Any

import pytest

from posthog_callbacks import sizing, spans
from posthog_callbacks.spans import SpanKind, _Copier, new_id, snapshot, snapshot_sized

# -- ids ---------------------------------------------------------------------------------


def test_new_id_is_a_version_4_uuid_as_text() -> None:
    for _ in range(2000):
        text = new_id()
        parsed = uuid.UUID(text)
        assert str(parsed) == text  # lower-case, dashed, 36 characters
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122


def test_new_ids_are_unique_and_ignore_the_programs_own_seeding() -> None:
    random.seed(1234)
    first = [new_id() for _ in range(1000)]
    random.seed(1234)  # a program seeding `random` for its own reproducibility
    second = [new_id() for _ in range(1000)]
    assert len(set(first + second)) == 2000


def test_consecutive_ids_differ_in_their_first_characters() -> None:
    # A unique-prefix lookup (`posthog-callbacks show --trace PREFIX`) must not need the
    # whole id for one trace after another (two random 32-bit prefixes collide with
    # probability 2**-32 per pair).
    ids = [new_id() for _ in range(20_000)]
    assert len(set(ids)) == len(ids)
    assert all(a[:8] != b[:8] for a, b in itertools.pairwise(ids))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork")
def test_a_forked_child_draws_other_ids_than_its_parent() -> None:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: the at-fork hook reseeded the generator
        try:
            os.write(write, ",".join(new_id() for _ in range(50)).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        child = pipe.read().split(",")
    os.waitpid(pid, 0)
    parent = [new_id() for _ in range(50)]  # what the child would repeat without reseeding
    assert len(child) == 50 and not set(child) & set(parent)


# -- snapshot: the small-container fast path gives exactly what the copier gives ------------


class _Leaf:
    pass


def _random_value(rng: random.Random, shared: dict[str, Any], depth: int = 0) -> Any:
    pick = rng.randrange(10)
    if depth > 2 or pick < 4:
        return rng.choice(["", "abc", 1, 2.5, True, None, b"b", _Leaf(), shared, [1], (2,)])
    width = rng.choice([0, 1, 2, 5, 32, 33] if depth < 2 else [0, 1, 3])
    if pick < 7:
        return {
            (rng.choice([1, None]) if rng.random() < 0.1 else f"k{i}"): _random_value(
                rng, shared, depth + 1
            )
            for i in range(width)
        }
    kind = list if rng.random() < 0.8 else tuple
    return kind(_random_value(rng, shared, depth + 1) for _ in range(width))


def test_snapshot_of_small_containers_equals_the_copiers_result() -> None:
    rng = random.Random(7)
    shared = {"s": "x"}
    for _ in range(2000):
        value = _random_value(rng, shared)
        if type(value) not in (dict, list, tuple):
            continue
        fast, reference = snapshot(value), _Copier(None).copy(value, 0)
        assert fast == reference and type(fast) is type(reference)
        assert fast is not value


def test_snapshot_sized_gives_the_snapshot_and_the_byte_estimate_of_the_copy() -> None:
    rng = random.Random(11)
    shared = {"s": "x"}
    exact = 0
    values: list[Any] = ["text", "", None, 3, 2.5, True, b"raw", _Leaf(), {}, [], {"q": "hi"}]
    values += [[{"role": "user", "content": "hi"}, {"role": "assistant", "content": ""}]]
    values += [{"m": {"a": "b"}, "n": ["x", 1]}, ({"a": "b", 1: "c"},), [{"a": b"b"}]]
    values += [_random_value(rng, shared) for _ in range(2000)]
    for value in values:
        copy, size = snapshot_sized(value)
        assert copy == snapshot(value)
        if size >= 0:  # measured on the way: the same figure as measuring the copy
            assert size == sizing.value_bytes(copy)
            exact += 1
    assert exact > 500


def test_snapshot_fast_path_keeps_the_copiers_text_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(spans, "SNAPSHOT_MAX_CHARS", 10)
    messages = [{"a": "x" * 6}, {"b": "y" * 6}, {"c": "z"}, "tail"]
    nested = {"a": ["x" * 11], "b": ["y"], "c": "zz"}
    for value in (messages, nested):
        assert snapshot(value) == _Copier(None).copy(value, 0)
    assert snapshot(messages) == [{"a": "x" * 6}, {"b": "y" * 6}, "<snapshot limit>", "tail"]


def test_snapshot_copies_chat_messages_so_later_mutation_cannot_change_them() -> None:
    message = {"role": "user", "content": "hi"}
    messages = [message]
    assert spans._copy_small(messages) is not None  # the fast path takes chat messages
    copy = snapshot(messages)
    message["content"] = "changed"
    messages.append({"role": "assistant", "content": "late"})
    assert copy == [{"role": "user", "content": "hi"}]


# -- byte estimates ------------------------------------------------------------------------


def test_value_bytes_counts_text_and_leaves_as_documented() -> None:
    chat = [{"role": "user", "content": "hi"}]
    # one item (+1): a dict of two keys, each key len + 3, each string value len + 2
    assert sizing.value_bytes(chat) == 1 + (4 + 3 + 4 + 2) + (7 + 3 + 2 + 2)
    assert sizing.value_bytes({"t": 0.2, "n": None}) == (1 + 3 + 8) * 2
    assert sizing.value_bytes("abc") == 5 and sizing.value_bytes(None) == 0
    assert sizing.value_bytes(7) == 8
    deep = {"a": {"b": {"c": "x" * 100}}}  # past the fast path's depth: the bounded walk
    assert 100 <= sizing.value_bytes(deep) <= 200
    wide = {f"k{i}": i for i in range(100)}  # past the fast path's width
    assert sizing.value_bytes(wide) >= 100 * 8


def test_estimate_bytes_of_a_span_adds_the_overhead_to_each_fields_bytes() -> None:
    span = spans.OpenSpan(
        "t",
        "s",
        "t",
        SpanKind.GENERATION,
        "chat",
        input=[{"role": "user", "content": "hi"}],
        output="yo",
        metadata={"k": "v"},
        model_parameters={"temperature": 0.2},
        tools=["tool"],
    ).finish()
    fields = (span.input, span.output, span.metadata, span.model_parameters, span.tools)
    expected = sizing.ITEM_OVERHEAD_BYTES + sum(sizing.value_bytes(v) for v in fields)
    assert sizing.estimate_bytes(span) == expected


def test_finish_carries_every_field_of_the_open_span_by_name() -> None:
    from dataclasses import fields

    shared = {f.name for f in fields(spans.OpenSpan)} & set(spans.FinishedSpan._fields)
    values: dict[str, Any] = {name: f"value-{name}" for name in shared}
    values.update(kind=SpanKind.GENERATION, start_time=10.0, tags=("a",), privacy_mode=True)
    span = spans.OpenSpan(**values, first_token_time=12.5)
    done = span.finish(end_time=20.0)
    assert type(done) is spans.FinishedSpan and len(done) == len(spans.FinishedSpan._fields)
    assert {name: getattr(done, name) for name in shared} == values
    assert (done.end_time, done.time_to_first_token) == (20.0, 2.5)
    assert set(spans.FinishedSpan._fields) - shared == {"end_time", "time_to_first_token"}


class _LyingClass:
    """Reading its ``__class__`` raises (as a proxy object might); it has attributes."""

    def __init__(self) -> None:
        self.note = "abc"

    @property  # type: ignore[misc]
    def __class__(self) -> type:
        raise ZeroDivisionError("boom")


class _NoItems(dict[str, Any]):
    def items(self) -> Any:
        raise RuntimeError("items")


class _NoIter(list[Any]):
    def __iter__(self) -> Any:
        raise RuntimeError("iter")

    def __getitem__(self, index: Any) -> Any:
        raise RuntimeError("getitem")


class _NoLen(str):
    def __len__(self) -> int:
        raise RuntimeError("len")


def test_byte_estimates_never_run_the_values_own_code_nor_raise() -> None:
    from posthog_callbacks import MemorySink, PosthogExporter

    lying = _LyingClass()
    odd = {
        "lying": [lying, {"again": lying}],
        "dict": _NoItems(a="xyz"),
        "list": _NoIter(["abcd"]),
        "text": _NoLen("hello"),
        "deep": {"a": {"b": {"c": "d"}}},
    }
    # the text of each: "abc" (an attribute), "xyz", "abcd", "hello", "d", keys and leaves
    assert 3 + 3 + 4 + 5 + 1 <= sizing.value_bytes(odd) <= 200
    exporter = PosthogExporter(sink=MemorySink())
    with exporter.trace("t", input=odd, metadata={"m": lying}) as trace:
        with trace.generation("g", input=[lying], tools=[odd]) as gen:
            gen.update(output={"a": [lying]})
    assert exporter.flush() and exporter.stats().sent == 2
