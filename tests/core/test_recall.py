"""Recalled containers (``Serializer.convert(value, recall=True)``) are exactly what the walk
gives.

The walk (``Serializer(recall=False)``) is the reference: for any value, with any secrets,
size limit and budget already used, converting with recall on a first, second and third
sight (miss, stored, recalled) returns the same JSON, the same size estimate and the same
node count as the walk. The content key declines everything that is not small plain JSON
data, and its own walk is bounded (counted in referents listed, never timed).
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import enum
import functools
import uuid
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from posthog_callbacks import serialize
from posthog_callbacks.events import EventConfig, span_to_event
from posthog_callbacks.serialize import REDACTED, Serializer, _content_key
from posthog_callbacks.spans import FinishedSpan, SpanKind
from support.secret_samples import PROSE, SECRET_TEXTS

LITERAL = "myOwnLiteralSecret42"
BASE64 = base64.b64encode(bytes(range(256)) * 8).decode()  # 2,732 characters


def tool(parameters: Any, name: str = "get_weather") -> dict[str, Any]:
    """A tool definition: three levels above ``parameters``, so it is always keyed."""
    return {"type": "function", "function": {"name": name, "parameters": parameters}}


def exact(value: Any) -> bytes:
    """``value`` as JSON, types exact (``1``, ``1.0`` and ``true`` differ)."""
    return orjson.dumps(value)


def walk(value: Any, secrets: tuple[str, ...], limit: int, used: str) -> tuple[Any, int, int]:
    ser = Serializer(secrets, limit, recall=False)
    ser.convert(used)
    out = ser.convert(value)
    return out, ser.size, ser.nodes


def recalled(value: Any, secrets: tuple[str, ...], limit: int, used: str) -> tuple[Any, int, int]:
    ser = Serializer(secrets, limit)
    ser.convert(used)
    out = ser.convert(value, recall=True)
    return out, ser.size, ser.nodes


def assert_same(value: Any, secrets: tuple[str, ...] = (), limit: int = 100_000) -> None:
    for used in ("", "u" * (limit // 3)):  # budget already used by earlier properties
        ref, size, nodes = walk(value, secrets, limit, used)
        for _ in range(3):  # miss, stored, recalled
            out, out_size, out_nodes = recalled(value, secrets, limit, used)
            assert exact(out) == exact(ref)
            assert out_size == size
            assert out_nodes == nodes
        if not used:
            # The recall was exercised: plain data without shared containers, whose walk
            # stayed within the budget, is stored after its second sight.
            key = _content_key(value) if type(value) in (dict, list, tuple) else None
            entries = serialize._results(serialize._caches(secrets)[3], limit).entries
            if key is not None and size <= limit and not shares(value):
                assert key in entries


def shares(value: Any) -> bool:
    """Whether a container is reached twice in ``value`` (a test oracle: small values)."""
    seen: set[int] = set()

    def visit(v: Any) -> bool:
        if type(v) not in (dict, list, tuple):
            return False
        if id(v) in seen:
            return True
        seen.add(id(v))
        return any(visit(x) for x in (v.values() if type(v) is dict else v))

    return visit(value)


# -- any value: recall or walk, the same result ------------------------------------------

texts = st.one_of(
    st.text(alphabet=st.characters(blacklist_categories=()), max_size=30),  # surrogates too
    st.sampled_from([text for text, _ in SECRET_TEXTS.values()]),
    st.sampled_from(
        [PROSE, BASE64, "data:image/png;base64," + BASE64, "x" * 3000, f"key {LITERAL}"]
    ),
)
keys = st.one_of(
    st.sampled_from(["role", "content", "api_key", "password", "lc", "type", "max_tokens"]),
    st.text(max_size=12),
    texts,
)
leaves = st.one_of(
    texts,
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),  # nan, inf, -0.0 included
    st.booleans(),
    st.none(),
)
values = st.recursive(
    leaves,
    lambda c: st.one_of(
        st.lists(c, max_size=4),
        st.lists(c, max_size=3).map(tuple),
        st.dictionaries(keys, c, max_size=4),
        st.just({"lc": 1, "type": "secret", "id": ["OPENAI_API_KEY"]}),
    ),
    max_leaves=25,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    value=values,
    secrets=st.sampled_from([(), (LITERAL,)]),
    limit=st.sampled_from([3_000, 30_000, 1_000_000]),
)
def test_any_value_is_recalled_exactly_as_walked(
    value: Any, secrets: tuple[str, ...], limit: int
) -> None:
    assert_same([tool(value)], secrets, limit)
    assert_same(value, secrets, limit)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=values, shape=st.sampled_from(["twice", "cycle", "deep"]))
def test_shared_and_cyclic_values_are_recalled_exactly_as_walked(value: Any, shape: str) -> None:
    inner: Any = {"value": value, "more": [value]}
    if shape == "twice":
        outer: Any = [tool(inner), tool(inner), {"same": inner}]
    elif shape == "cycle":
        outer = [tool(inner)]
        inner["back"] = outer
    else:
        outer = inner
        for _ in range(30):  # past MAX_DEPTH, each level holding the one below twice
            outer = [outer, outer]
    assert_same(outer)


def test_a_value_is_stored_on_its_second_sight_and_recalled_without_a_walk(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tools = [tool({"type": "object", "properties": {"city": {"type": "string"}}}, "unique-1")]
    walks: list[int] = []
    original = Serializer._mapping

    def counted(self: Serializer, value: Any, depth: int, ident: int) -> Any:
        walks.append(depth)
        return original(self, value, depth, ident)

    monkeypatch.setattr(Serializer, "_mapping", counted)
    outs = []
    for _ in range(3):
        outs.append(Serializer().convert(tools, recall=True))
    assert len(walks) == 2 * 5  # two walks of 5 dicts each; the third was recalled
    assert outs[0] == outs[1] == outs[2] == tools
    outs[2][0]["function"]["name"] = "changed"  # a recalled result is a fresh copy
    assert Serializer().convert(tools, recall=True) == tools


# -- secrets anywhere are redacted on every sight ----------------------------------------


@pytest.mark.parametrize("kind", sorted(SECRET_TEXTS))
@pytest.mark.parametrize("where", ["description", "enum", "default", "key", "deep"])
def test_a_secret_anywhere_in_a_tool_is_redacted_on_every_sight(kind: str, where: str) -> None:
    text, needle = SECRET_TEXTS[kind]
    prop: dict[str, Any] = {"type": "string", "description": "the city"}
    if where == "description":
        prop["description"] = f"the city. {text}"
    elif where == "enum":
        prop["enum"] = ["metric", text]
    elif where == "default":
        prop["default"] = text
    elif where == "key":
        prop[text] = "x"
    else:
        prop["items"] = {"a": [{"b": text}]}
    tools = [tool({"type": "object", "properties": {"city": prop}}, f"t-{kind}-{where}")]
    ref = Serializer(recall=False).convert(tools)
    for _ in range(3):
        out = Serializer().convert(tools, recall=True)
        assert exact(out) == exact(ref)
        assert needle not in orjson.dumps(out).decode()
        assert REDACTED in orjson.dumps(out).decode()


def test_results_are_kept_apart_by_secrets_and_size_limit() -> None:
    tools = [tool({"description": f"uses {LITERAL} as key " + "y" * 1500}, "apart")]
    for _ in range(3):
        assert LITERAL not in str(Serializer((LITERAL,)).convert(tools, recall=True))
        assert LITERAL in str(Serializer().convert(tools, recall=True))
        small = Serializer(max_bytes=2_000).convert(tools, recall=True)
        assert "…[truncated" in str(small)  # a quarter of 2,000 bytes per string
        assert "…[truncated" not in str(Serializer().convert(tools, recall=True))


def test_recalled_tools_give_the_walked_event(monkeypatch: pytest.MonkeyPatch) -> None:
    schema = {"type": "object", "properties": {"q": {"type": "string"}}}
    tools = [tool(schema, f"e{i}") for i in range(3)]
    span = FinishedSpan(
        "t", "s", "p", SpanKind.GENERATION, "chat", 1.0, 2.0, model="m", tools=tools
    )
    cfg = EventConfig(secrets=(LITERAL,))
    events = [span_to_event(span, cfg) for _ in range(3)]
    monkeypatch.setattr(
        "posthog_callbacks.events.Serializer", functools.partial(Serializer, recall=False)
    )
    assert all(event == span_to_event(span, cfg) for event in events)


# -- the content key declines all but small plain data, in bounded steps ------------------


class Color(enum.Enum):
    RED = "red"


@dataclasses.dataclass
class Point:
    x: int


class Text(str):
    pass


def deep(value: Any) -> Any:
    return {"a": {"b": {"c": value}}}


@pytest.mark.parametrize(
    "leaf",
    [
        Color.RED,
        uuid.UUID(int=1),
        datetime.datetime(2026, 1, 1),
        Point(1),
        Text("x"),
        b"bytes",
        {1, 2},
        frozenset({1}),
        1j,
        "z" * (serialize._RESULT_LENGTHS + 1),
        ["z" * 1000] * 100,  # one string, counted each time it is met
    ],
    ids=lambda leaf: type(leaf).__name__,
)
def test_the_key_declines_anything_but_small_plain_data(leaf: Any) -> None:
    assert _content_key(deep(leaf)) is None
    assert _content_key(deep("plain")) is not None


def test_the_key_declines_str_subclass_keys_cycles_and_small_flat_values() -> None:
    assert _content_key(deep({Text("k"): "x"})) is None
    cycle: list[Any] = []
    cycle.append(deep(cycle))
    assert _content_key(cycle) is None
    assert _content_key({"role": "user", "content": "hi"}) is None  # walking costs less


class Hostile(str):
    """A str whose hash and equality, once armed, are user code that must never run."""

    __slots__ = ()
    armed = False

    def __hash__(self) -> int:
        assert not Hostile.armed, "user __hash__ ran"
        return str.__hash__(self)

    def __eq__(self, other: object) -> bool:
        assert not Hostile.armed, "user __eq__ ran"
        return str.__eq__(self, other)


def test_user_str_subclasses_are_never_hashed_or_compared() -> None:
    values = [deep({"k": Hostile("v" * 20)}), deep({Hostile("k"): "v"}), [tool(Hostile("x"))]]
    refs = [Serializer(recall=False).convert(value) for value in values]
    Hostile.armed = True
    try:
        for value, ref in zip(values, refs, strict=True):
            assert _content_key(value) is None
            for _ in range(3):
                assert Serializer().convert(value, recall=True) == ref
    finally:
        Hostile.armed = False


def test_the_key_tells_apart_what_json_would_not() -> None:
    # orjson would write nan and None alike (null); the walk sends "nan" for one.
    leaves = [1, 1.0, True, 0.0, -0.0, float("nan"), None, "\ud800", "\ufffd", 2**64, (1,), [1]]
    assert len({_content_key(deep(leaf)) for leaf in leaves}) == len(leaves)
    for leaf in leaves:
        assert_same(deep(leaf))


def test_the_key_walk_is_bounded_on_an_exponential_dag(monkeypatch: pytest.MonkeyPatch) -> None:
    listed = [0]
    original = serialize._referents

    def counting(*objects: Any) -> list[Any]:
        found = original(*objects)
        listed[0] += len(found)
        return found

    monkeypatch.setattr(serialize, "_referents", counting)
    value: Any = ["leaf"]
    for _ in range(40):  # 2**40 leaves once expanded
        value = [value, value]
    assert _content_key(value) is None
    # Each level is listed only while the lengths met so far fit the budget.
    assert listed[0] <= serialize._RESULT_LENGTHS + 2
    listed[0] = 0
    assert _content_key(deep(list(range(10**6)))) is None  # a wide container
    assert listed[0] <= serialize._RESULT_LENGTHS + 2
    listed[0] = 0
    assert _content_key(list(range(10**6))) is None
    assert listed[0] == 0
    out = Serializer().convert(value, recall=True)
    assert len(orjson.dumps(out)) <= serialize.MAX_EVENT_BYTES


def test_the_cache_is_bounded_in_entries_and_bytes() -> None:
    results = serialize._Results()
    body = {"x": "y" * 20_000}
    for i in range(400):
        key = orjson.dumps([i, body])
        results.store(key, [i, body], 1, 1)
        results.store(key, [i, body], 1, 1)
        assert results.held <= serialize._RESULTS_HELD
        assert len(results.entries) <= serialize._RESULTS_MAX
    assert results.entries  # cleared when full, then filled again
