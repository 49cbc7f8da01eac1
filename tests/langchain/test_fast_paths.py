"""The handler's cheap paths give what the reference paths give, and stay mutation-safe."""

from __future__ import annotations

import enum
import types
import uuid
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from langchain_core.language_models import FakeMessagesListChatModel
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.runnables import RunnableLambda

from posthog_callbacks.langchain import convert as cv
from posthog_callbacks.langchain import model as lm
from posthog_callbacks.langchain.convert import plain, run_name, user_tags
from posthog_callbacks.langchain.handler import _key
from posthog_callbacks.serialize import Serializer
from posthog_callbacks.tracing import open_span_bytes
from support.langchain_helpers import Recorder

_KEYS = st.sampled_from([*lm._PARAM_KEYS, "model", "stream", "streaming", "_type", "api_key"])
_VALUES = st.one_of(
    st.none(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(max_size=5),
    st.lists(st.text(max_size=3), max_size=3),
    st.booleans(),
)


@given(params=st.dictionaries(_KEYS, _VALUES, max_size=12))
def test_model_parameters_read_from_a_small_dict_equal_every_key_looked_up(
    params: dict[str, Any],
) -> None:
    # A mapping that is not a dict takes the reference path: every known key looked up.
    reference = lm.extract_model_parameters(types.MappingProxyType(params))
    fast = lm.extract_model_parameters(params)
    assert fast == reference
    assert list((fast or {}).items()) == list((reference or {}).items())  # same order


def test_a_run_is_measured_once_with_its_input(rec: Recorder) -> None:
    handler = rec.handler()
    run = uuid.uuid4()
    handler.on_chain_start({"name": "big"}, {"doc": "word " * 20_000}, run_id=run)
    span = handler._runs.get(_key(run))
    assert span is not None
    # The input was set before the run entered the table: the account is exact at once.
    assert handler._runs.held_bytes == open_span_bytes(span) > 100_000
    handler.on_chain_end("ok", run_id=run)
    assert handler._runs.held_bytes == 0
    assert rec.props()[0]["$ai_input_state"] == {"doc": "word " * 20_000}


def test_messages_mutated_after_their_callbacks_are_recorded_as_seen(rec: Recorder) -> None:
    """LangChain messages are pydantic models the user may change after a call (or a later
    step may): the handler converts them to plain dicts in the callback, so events hold
    what the model was given and returned at the time."""
    handler = rec.handler()
    answer = AIMessage(
        [{"type": "text", "text": "Paris."}],
        usage_metadata={"input_tokens": 3, "output_tokens": 2, "total_tokens": 5},
    )
    model = FakeMessagesListChatModel(responses=[answer])
    question = HumanMessage([{"type": "text", "text": "Capital of France?"}])

    def mutate(reply: AIMessage) -> str:
        assert isinstance(reply.content, list)
        reply.content.append({"type": "text", "text": "added later"})
        first = reply.content[0]
        assert isinstance(first, dict)
        first["text"] = "changed"
        assert isinstance(question.content, list)
        asked = question.content[0]
        assert isinstance(asked, dict)
        asked["text"] = "changed too"
        return "done"

    (model | RunnableLambda(mutate)).invoke([question], config={"callbacks": [handler]})
    by_event = {e["event"]: e["properties"] for e in rec.events() if e["event"] != "$ai_span"}
    generation = by_event["$ai_generation"]
    assert generation["$ai_input"] == [
        {"role": "user", "content": [{"type": "text", "text": "Capital of France?"}]}
    ]
    assert generation["$ai_output_choices"] == [
        {"role": "assistant", "content": [{"type": "text", "text": "Paris."}]}
    ]


def test_text_subclasses_become_the_text_the_worker_would_send(rec: Recorder) -> None:
    """An output parser returns a ``str`` subclass (``TextAccessor``): the handler keeps
    plain text, and the event equals the one made from the subclass on the worker."""

    class Text(str):
        def __str__(self) -> str:
            raise AssertionError("no subclass code runs")

    class Colour(str, enum.Enum):
        RED = "red"

    value = {"text": Text("answer"), "colour": Colour.RED, "items": [Text("a")]}
    converted = plain(value)
    assert converted == {"text": "answer", "colour": Colour.RED, "items": ["a"]}
    assert type(converted["text"]) is str and type(converted["items"][0]) is str
    assert type(plain(Text("top"))) is str

    ser_raw = Serializer().convert(value)
    ser_plain = Serializer().convert(converted)
    assert ser_raw == ser_plain == {"text": "answer", "colour": "red", "items": ["a"]}

    handler = rec.handler()
    run = uuid.uuid4()
    handler.on_chain_start({"name": "parser"}, Text("in"), run_id=run)
    handler.on_chain_end(Text("out"), run_id=run)
    (props,) = rec.props()
    assert props["$ai_input_state"] == "in" and props["$ai_output_state"] == "out"


def test_run_ids_match_by_value_whatever_their_uuid_class(rec: Recorder) -> None:
    class MyUUID(uuid.UUID):
        pass

    handler = rec.handler()
    root, child = uuid.uuid4(), uuid.uuid4()
    handler.on_chain_start({"name": "root"}, {}, run_id=MyUUID(int=root.int))
    handler.on_chain_start({"name": "child"}, {}, run_id=child, parent_run_id=root)
    handler.on_chain_end("c", run_id=MyUUID(int=child.int))
    handler.on_chain_end("r", run_id=root)
    events = rec.events()
    assert [e["event"] for e in events] == ["$ai_span", "$ai_trace"]
    assert events[0]["properties"]["$ai_parent_id"] == str(root)
    assert handler.open_runs() == 0


class _Name(str):
    pass


@given(
    name=st.one_of(
        st.none(), st.just(""), st.text(max_size=4), st.integers(), st.builds(_Name, st.text())
    ),
    serialized_name=st.one_of(st.none(), st.text(max_size=4)),
    root=st.booleans(),
    trace_name=st.one_of(st.none(), st.just("pipeline")),
)
def test_the_run_name_read_in_start_is_convert_run_name(
    name: Any, serialized_name: str | None, root: bool, trace_name: str | None
) -> None:
    # _start reads run_name's first choice (name=) itself; the reference is cv.run_name.
    rec = Recorder()
    handler = rec.handler(trace_name=trace_name)
    serialized = {"name": serialized_name, "id": ["x", "MyChain"]}
    parent = uuid.uuid4()
    if not root:
        handler.on_chain_start({}, {}, run_id=parent, name="root")
    run_id = uuid.uuid4()
    handler.on_chain_start(
        serialized, {"q": 1}, run_id=run_id, parent_run_id=None if root else parent, name=name
    )
    handler.on_chain_end({}, run_id=run_id)
    expected = run_name(serialized, {"name": name}, "chain")
    if root and trace_name:
        expected = trace_name
    [event] = rec.events()
    rec.exporter.shutdown()
    assert event["properties"]["$ai_span_name"] == expected


@given(
    base=st.lists(st.sampled_from(["a", "b", "t"]), max_size=3, unique=True),
    tags=st.lists(
        st.one_of(st.sampled_from(["a", "t", "seq:step:1", "map:key:x", "x", "y"]), st.integers()),
        max_size=6,
    ),
)
def test_user_tags_equal_the_comprehension_they_replaced(base: list[str], tags: list[Any]) -> None:
    extra = [
        t
        for t in tags
        if type(t) is str
        and not t.startswith(("seq:step:", "graph:step:", "map:key:", "langsmith:"))
        and t not in base
    ]
    expected = tuple(base) + tuple(dict.fromkeys(extra)) if extra else tuple(base)
    assert user_tags(tuple(base), tags) == expected


def test_span_ids_are_the_run_ids_text_whatever_their_uuid_class(rec: Recorder) -> None:
    # _start writes a UUID's text itself; a subclass goes through its own str().
    class Braced(uuid.UUID):
        def __str__(self) -> str:
            return "{" + super().__str__() + "}"

    handler = rec.handler()
    root = uuid.uuid4()
    handler.on_chain_start({"name": "root"}, {}, run_id=root)
    children = [uuid.UUID(int=i) for i in (0, 1, 2**128 - 1)] + [uuid.uuid4() for _ in range(20)]
    for child in children:
        handler.on_chain_start({"name": "c"}, {}, run_id=child, parent_run_id=root)
        handler.on_chain_end("c", run_id=child)
    braced = Braced(int=uuid.uuid4().int)
    handler.on_chain_start({"name": "b"}, {}, run_id=braced, parent_run_id=root)
    handler.on_chain_end("b", run_id=braced)
    handler.on_chain_end("r", run_id=root)
    events = rec.events()
    assert [e["properties"]["$ai_span_id"] for e in events[:-1]] == [
        *(str(c) for c in children),
        str(braced),
    ]
    assert events[-1]["properties"]["$ai_trace_id"] == str(root)


_META_KEYS = st.one_of(
    st.sampled_from(
        ["user_id", "userId", "session_id", "posthog_properties", "checkpoint_ns", "thread_id"]
    ),
    st.sampled_from(["ls_", "langgraph_", "lc_", "checkpoint_", "__", "l", "ls", "x"]).flatmap(
        lambda prefix: st.text(max_size=3).map(lambda rest: prefix + rest)
    ),
    st.integers(),
)


@given(metadata=st.dictionaries(_META_KEYS, st.integers(), max_size=6))
def test_user_metadata_equals_the_loop_it_remembers_keys_for(metadata: dict[Any, Any]) -> None:
    expected: dict[str, Any] = {}
    for key, value in metadata.items():
        text = key if type(key) is str else cv.safe_name(key, "None")
        if text in cv._IDENTITY_KEYS or text.startswith(cv._INTERNAL_PREFIXES):
            continue
        expected[text] = value
    for _ in range(2):  # the first call fills the cache, the second reads it
        assert cv.user_metadata(metadata) == (expected or None)


@given(
    content=st.one_of(
        st.text(max_size=3),
        st.lists(
            st.fixed_dictionaries(
                {"type": st.sampled_from(["text", "web_search_call", "server_tool_call"])},
                optional={"name": st.sampled_from(["web_search", "other"])},
            ),
            max_size=3,
        ),
    ),
    extra=st.one_of(
        st.just({}),
        st.just({"refusal": "no"}),
        st.lists(st.just({"type": "web_search_call"}), max_size=2).map(
            lambda calls: {"tool_outputs": calls}
        ),
    ),
)
def test_web_searches_of_a_text_answer_skip_the_block_walk(
    content: Any, extra: dict[str, Any]
) -> None:
    message = AIMessage(content=content, additional_kwargs=extra)
    expected = 0
    for blocks in (content, extra.get("tool_outputs")):
        for block in blocks if type(blocks) is list else ():
            kind = block.get("type")
            if kind == "web_search_call" or (
                kind == "server_tool_call" and block.get("name") == "web_search"
            ):
                expected += 1
    assert lm._web_search_blocks(message) == expected
