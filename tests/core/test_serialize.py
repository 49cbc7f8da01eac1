"""Safe values: bounded snapshots and serialisation, value-level encodability, wire sizes,
and the secret table (issue 11 items 2-6, at the value level).

Every bound is asserted as a count of steps or bytes, never as a time.
"""

from __future__ import annotations

import enum
import json
import math
from typing import Any

import orjson
import pydantic
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from posthog_callbacks.events import EventConfig, span_to_event
from posthog_callbacks.serialize import (
    MAX_DEPTH,
    MAX_ITEMS,
    MAX_NODES,
    REDACTED,
    Serializer,
    is_secret_key,
    scrub,
    truncate_to_bytes,
    wire_size,
)
from posthog_callbacks.spans import SNAPSHOT_MAX_NODES, FinishedSpan, SpanKind, snapshot
from support.secret_samples import PROSE, SECRET_TEXTS


class Leaf:
    """An opaque leaf: ``snapshot``'s convert hook is called once per reference to one."""


def counting() -> tuple[list[int], Any]:
    calls = [0]

    def convert(value: Any) -> Any:
        calls[0] += 1
        return value

    return calls, convert


def encodes(value: Any) -> bytes:
    """``value`` as every encoder on the way out would write it (all must succeed)."""
    json.dumps(value, allow_nan=False).encode("ascii")  # the posthog SDK: escaped
    json.dumps(value, allow_nan=False, ensure_ascii=False).encode("utf-8")  # JsonlSink
    return orjson.dumps(value)  # our transport


# -- bounded snapshots (item 4) -----------------------------------------------------------


def test_a_dict_holding_itself_four_times_is_copied_once() -> None:
    d: dict[str, Any] = {}
    for key in "abcd":
        d[key] = d
    copy = snapshot({"input": d})
    inner = copy["input"]
    assert inner is not d
    assert all(inner[key] is inner for key in "abcd")  # the copy keeps the shape
    d["e"] = "later"
    assert "e" not in inner  # and is a copy
    out = Serializer().convert(copy)
    assert out == {"input": {k: "<cycle>" for k in "abcd"}}


def test_shared_containers_are_copied_once_and_the_copy_is_reused() -> None:
    shared = [{"role": "user", "content": "hi"}]
    copy = snapshot({"history": shared, "again": shared, "third": (shared, shared)})
    assert copy["history"] is copy["again"] is copy["third"][0] is copy["third"][1]
    assert copy["history"] == shared and copy["history"] is not shared


def test_an_exponential_dag_costs_linear_work() -> None:
    # 2**60 paths, 61 containers: a per-level cap never ends; a memo by id is instant.
    leaf = Leaf()
    dag: Any = [leaf]
    for _ in range(60):
        dag = [dag, dag]
    calls, convert = counting()
    copy = snapshot(dag, convert)  # copied 12 levels deep, the rest kept by reference
    assert calls[0] == 0
    shallow: Any = [leaf]
    for _ in range(10):
        shallow = [shallow, shallow]
    snapshot(shallow, convert)
    assert calls[0] == 1  # the one leaf, reached once through 2**10 paths
    ser = Serializer(max_bytes=100_000)
    out = ser.convert(copy)
    assert ser.nodes <= 61 * 3
    encoded = encodes(out)
    assert len(encoded) <= 100_000 + 64  # reused copies are paid for in bytes
    assert b"<shared list>" in encoded


def test_a_huge_structure_is_cut_at_the_node_budget() -> None:
    calls, convert = counting()
    wide = [[Leaf() for _ in range(300)] for _ in range(300)]  # 90,000 leaves
    copy = snapshot(wide, convert)
    assert calls[0] <= SNAPSHOT_MAX_NODES
    flat = json.dumps(copy, default=lambda _: 0)
    assert "<snapshot limit>" in flat or "<truncated" in flat


def test_snapshot_keeps_scalars_and_converts_unknown_leaves_once() -> None:
    assert snapshot("text") == "text"
    assert snapshot(None) is None
    obj = Leaf()
    assert snapshot({"a": obj})["a"] is obj
    assert snapshot({"a": obj}, lambda v: {"converted": True}) == {"a": {"converted": True}}
    assert snapshot({1, 2}) in ([1, 2], [2, 1])


# Any graph of dicts, lists, tuples and sets, with shared and cyclic references: node i's
# children are chosen by index among all nodes (itself and its ancestors included).
kinds = st.sampled_from(["dict", "list", "tuple", "set"])
graphs = st.lists(
    st.tuples(kinds, st.lists(st.integers(0, 40), max_size=6)), min_size=1, max_size=40
)


def build(spec: list[tuple[str, list[int]]]) -> Any:
    nodes: list[Any] = [{} if kind == "dict" else [] for kind, _ in spec]
    for i, (_, edges) in enumerate(spec):
        for j, edge in enumerate(edges):
            child = nodes[edge % len(nodes)] if edge < 35 else Leaf()
            if isinstance(nodes[i], dict):
                nodes[i][f"k{j}"] = child
            else:
                nodes[i].append(child)
    # Immutable views over the mutable nodes: tuples of them, sets of hashable leaves.
    for i, (kind, _) in enumerate(spec):
        if kind == "tuple" and isinstance(nodes[i], list):
            nodes.append(tuple(nodes[i]))
        elif kind == "set":
            nodes.append(frozenset(x for x in nodes[i] if isinstance(x, Leaf)) | {i, "s"})
    if len(nodes) > 1:
        nodes[0] = {"root": nodes[0], "views": nodes[len(spec) :], "all": nodes[1 : len(spec)]}
    return nodes[0]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=graphs, limit=st.sampled_from([2_000, 100_000]))
def test_any_shared_or_cyclic_structure_snapshots_and_serializes_in_bounded_steps(
    spec: list[tuple[str, list[int]]], limit: int
) -> None:
    value = build(spec)
    calls, convert = counting()
    copy = snapshot(value, convert)
    assert calls[0] <= SNAPSHOT_MAX_NODES  # every leaf reference costs a step
    for source in (value, copy):
        ser = Serializer(max_bytes=limit)
        out = ser.convert(source)
        # Containers are visited once; each visit pays for its items (reused copies O(1)).
        assert ser.nodes <= MAX_NODES + MAX_ITEMS
        # The estimate may overshoot by a closing marker per open level; the event is exact.
        assert len(encodes(out)) <= limit + 64 * MAX_DEPTH
    span = FinishedSpan("t", "s", "t", SpanKind.SPAN, "n", 1.0, 2.0, input=copy, output=value)
    event = span_to_event(span, EventConfig(max_event_bytes=limit))
    assert len(encodes(event)) <= limit


# -- never call user hooks on the worker (item 5) -----------------------------------------


class Tripwire:
    """Records every hook the worker must never call."""

    calls: list[str] = []

    def __init__(self) -> None:
        self.visible = 1

    def __repr__(self) -> str:
        Tripwire.calls.append("repr")
        return "Tripwire()"

    def __str__(self) -> str:
        Tripwire.calls.append("str")
        return "Tripwire"

    def __getattr__(self, name: str) -> Any:
        Tripwire.calls.append(f"getattr {name}")
        raise AttributeError(name)

    @property
    def computed(self) -> int:
        Tripwire.calls.append("property")
        return 1


class Opaque:
    __slots__ = ()

    def __repr__(self) -> str:
        Tripwire.calls.append("repr")
        return "Opaque()"


class Dumped(pydantic.BaseModel):
    name: str
    score: float = 0.5

    @pydantic.field_serializer("name")
    def _ser(self, value: str) -> str:
        Tripwire.calls.append("field_serializer")
        return value.upper()


class Color(enum.Enum):
    RED = "red"


def test_unknown_objects_become_attributes_or_placeholders_without_user_code() -> None:
    Tripwire.calls.clear()
    value = {
        "obj": Tripwire(),
        "opaque": Opaque(),
        "model": Dumped(name="a"),
        Tripwire(): "object key",
        "cls": Tripwire,
        "enum": Color.RED,
    }
    out = Serializer().convert(value)
    assert Tripwire.calls == []
    assert out["obj"] == {"type": "Tripwire", "visible": 1}
    assert out["opaque"] == "<Opaque>"
    assert out["model"] == {"name": "a", "score": 0.5}  # fields, no serializer
    assert out['{"type":"Tripwire","visible":1}'] == "object key"
    assert out["cls"] == "<class Tripwire>"
    assert out["enum"] == "red"
    encodes(out)


class Intercepting:
    """Overrides ``__getattribute__`` (so ``isinstance`` would run it via ``__class__``)."""

    def __init__(self) -> None:
        self.kept = "yes"

    def __getattribute__(self, name: str) -> Any:
        Tripwire.calls.append(f"getattribute {name}")
        return object.__getattribute__(self, name)


class HostileDict(dict[str, Any]):
    def items(self) -> Any:
        Tripwire.calls.append("items")
        return iter(())

    def __iter__(self) -> Any:
        Tripwire.calls.append("iter")
        return iter(())

    def __len__(self) -> int:
        Tripwire.calls.append("len")
        return 0


class HostileList(list[Any]):
    def __iter__(self) -> Any:
        Tripwire.calls.append("iter")
        return iter(())


def test_builtin_subclasses_and_attribute_hooks_are_read_without_user_code() -> None:
    import collections

    Tripwire.calls.clear()
    value = {
        "intercepting": Intercepting(),
        "dict": HostileDict(a=1),
        "list": HostileList([1, 2]),
        "deque": collections.deque([1, 2]),
        "range": range(3),
        "keys": {"k": 1}.keys(),
    }
    out = Serializer().convert(value)
    assert Tripwire.calls == []
    assert out == {
        "intercepting": {"type": "Intercepting", "kept": "yes"},
        "dict": {"a": 1},
        "list": [1, 2],
        "deque": [1, 2],
        "range": [0, 1, 2],
        "keys": ["k"],
    }


# -- value-level encodability (item 2) ----------------------------------------------------


class Plain(enum.Enum):
    A = object()


def test_every_bad_value_costs_at_most_its_own_field() -> None:
    value: dict[Any, Any] = {
        "huge": 10**5000,
        "big": 2**70,
        "neg": -(2**70),
        "ok": 2**63 - 1,
        "enum": Plain.A,
        "surrogate": "a\ud800b",
        "\udc00": "surrogate key",
        "pair": "\ud83d\ude00",
        "nan": math.nan,
        "inf": -math.inf,
        "bytes": b"\x00\xff",
        "mem": memoryview(b"abc"),
        (1, "a"): "tuple key",
        None: "none key",
        10**5000: "huge key",
        1.5: "float key",
        frozenset({1}): "set key",
    }
    out = Serializer().convert(value)
    encodes(out)
    assert out["huge"].startswith("<int of ") and out["big"] == str(2**70)
    assert out["neg"] == str(-(2**70)) and out["ok"] == 2**63 - 1
    assert out["enum"] == "<object>"
    assert out["surrogate"] == "a\ufffdb" and out["pair"] == "\U0001f600"
    assert out["\ufffd"] == "surrogate key"
    assert (out["nan"], out["inf"]) == ("nan", "-inf")
    assert (out["bytes"], out["mem"]) == ("<2 bytes>", "<3 bytes>")
    assert out['[1,"a"]'] == "tuple key" and out["null"] == "none key"
    assert out["1.5"] == "float key" and out["[1]"] == "set key"
    assert [k for k in out if k.startswith("<int of ")] != []


def test_typed_span_fields_with_bad_values_stay_valid() -> None:
    class Status(enum.Enum):
        OK = "ok"

    span = FinishedSpan(
        "t",
        "s",
        "t",
        SpanKind.GENERATION,
        "g",
        1.0,
        2.0,
        status=Status.OK,  # type: ignore[arg-type]
        http_status=Status.OK,  # type: ignore[arg-type]
        model=10**5000,  # type: ignore[arg-type]
        stop_reason="\udcff",
        base_url=Status.OK,  # type: ignore[arg-type]
    )
    props = span_to_event(span)["properties"]
    encodes(props)
    assert props["$ai_span_status"] == "ok"
    assert props["$ai_http_status"] == 200
    assert props["$ai_model"].startswith("<int of ")
    assert props["$ai_stop_reason"] == "\ufffd"
    assert props["$ai_base_url"] == "ok"
    odd = FinishedSpan(
        "t", "s", "t", SpanKind.SPAN, "n", 1.0, 2.0,
        tags=frozenset({Status.OK}), error=Status.OK,  # type: ignore[arg-type]
    )  # fmt: skip
    props = span_to_event(odd)["properties"]
    assert (props["$ai_tags"], props["$ai_error"], props["$ai_is_error"]) == (["ok"], "ok", True)


# -- sizes in bytes on the wire (item 3) --------------------------------------------------

EMOJI = "\U0001f600"


@pytest.mark.parametrize("text", [EMOJI * 1_000_000, "é" * 3_000_000, "\x00" * 3_000_000])
def test_no_event_exceeds_the_limit_as_encoded_on_the_wire(text: str) -> None:
    limit = 1_000_000
    span = FinishedSpan(
        "t", "s", "t", SpanKind.SPAN, "n", 1.0, 2.0, input=[text], output={"o": text}
    )
    event = span_to_event(span, EventConfig(max_event_bytes=limit))
    escaped = json.dumps(event).encode("ascii")  # \uXXXX: 6 or 12 bytes per character
    assert len(escaped) <= limit
    assert len(orjson.dumps(event)) <= limit
    assert "[truncated" in event["properties"]["$ai_input_state"][0]


any_text = st.text(alphabet=st.characters(blacklist_categories=()), max_size=40)  # surrogates too
any_leaf = st.one_of(any_text, st.integers(), st.floats(), st.none(), st.binary(max_size=5))
any_value = st.recursive(
    any_leaf,
    lambda c: st.one_of(
        st.lists(c, max_size=4), st.dictionaries(st.one_of(any_text, st.integers()), c, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    value=any_value,
    meta=any_value,
    ident=any_text,
    tags=st.lists(any_text, max_size=3),
    limit=st.sampled_from([2_000, 5_000, 100_000]),
)
def test_any_text_anywhere_encodes_within_the_limit(
    value: Any, meta: Any, ident: str, tags: list[str], limit: int
) -> None:
    span = FinishedSpan(
        f"t{ident}", "s", None, SpanKind.TRACE, ident, 1.0, 2.0,
        input=value, metadata={"m": meta}, distinct_id=ident or None,
        session_id=ident or None, tags=tuple(tags), error=ident or None,
    )  # fmt: skip
    event = span_to_event(span, EventConfig(max_event_bytes=limit))
    assert len(encodes(event)) <= limit
    assert len(json.dumps(event).encode()) <= limit  # with the SDK's ", " separators


def test_long_ids_are_bounded_deterministic_and_distinct() -> None:
    big = "u" * 9_000_000
    other = "u" * 8_999_999 + "v"
    ser = Serializer()
    a, b, again = ser.ident(big), ser.ident(other), Serializer().ident(big)
    assert len(a) <= 200 and "[truncated" in a
    assert a == again and a != b
    assert ser.ident("user-42") == "user-42"
    span = FinishedSpan(
        big, big[:5_000_000], None, SpanKind.TRACE, "n", 1.0, 2.0,
        distinct_id=big, session_id=EMOJI * 3_000_000,
    )  # fmt: skip
    event = span_to_event(span, EventConfig(max_event_bytes=100_000))
    assert len(json.dumps(event)) <= 100_000
    assert len(event["distinct_id"]) <= 200
    assert len(event["properties"]["$ai_session_id"]) <= 200
    assert len(event["properties"]["$ai_trace_id"]) <= 200


def test_truncate_to_bytes_counts_escaped_bytes() -> None:
    for text in (EMOJI * 1000, "é" * 1000, "a" * 1000, '"' * 1000):
        cut = truncate_to_bytes(text, 500)
        assert wire_size(cut) <= 500 and "[truncated" in cut
    assert truncate_to_bytes("short", 500) == "short"


# -- secrets (item 6), at the value level -------------------------------------------------


@pytest.mark.parametrize("kind", list(SECRET_TEXTS))
def test_each_secret_format_is_redacted(kind: str) -> None:
    text, needle = SECRET_TEXTS[kind]
    out = scrub(f"before {text} after")
    assert needle not in out and REDACTED in out
    assert out.startswith("before ") and out.endswith(" after")


def test_ordinary_prose_is_left_alone() -> None:
    assert scrub(PROSE) == PROSE


@pytest.mark.parametrize(
    "key",
    [
        "api_key", "API-KEY", "apikey", "x-api-key", "Authorization", "password", "db_password",
        "api_token", "github_token", "hf_token", "access_token", "token", "client_secret",
        "Ocp-Apim-Subscription-Key", "secret_key", "private_key", "cookie", "aws_access_key_id",
    ],
)  # fmt: skip
def test_secret_key_names(key: str) -> None:
    assert is_secret_key(key)


@pytest.mark.parametrize(
    "key",
    [
        "max_tokens", "input_tokens", "total_tokens", "token_usage", "tokenizer", "eos_token",
        "session_id", "user_id", "sort_key", "primary_key", "content", "role", "monkey",
    ],
)  # fmt: skip
def test_ordinary_key_names(key: str) -> None:
    assert not is_secret_key(key)


def test_secrets_as_keys_tags_and_ids_are_redacted() -> None:
    secret = SECRET_TEXTS["github ghp"][0]
    ser = Serializer(secrets=("literal-exporter-key-123",))
    out = ser.convert({secret: 1, "note": "key literal-exporter-key-123 here"})
    assert out == {REDACTED: 1, "note": f"key {REDACTED} here"}
    assert ser.key(secret) == REDACTED
    ident = ser.ident(secret)
    assert ident.startswith("[REDACTED ") and secret not in ident
    assert ser.ident(secret) == ident != ser.ident(SECRET_TEXTS["openai"][0])
