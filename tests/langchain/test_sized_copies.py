"""Inputs and outputs measured while they are copied: the copy is the one ``plain`` /
``messages_input`` / ``response_output`` make, and the count is ``sizing.value_bytes`` of it."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from langchain_core.documents import Document
from langchain_core.messages import (
    AIMessage,
    ChatMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.outputs import ChatGeneration, Generation
from langchain_core.prompt_values import ChatPromptValue, StringPromptValue

from posthog_callbacks.langchain import convert as cv
from posthog_callbacks.sizing import value_bytes


class _Text(str):
    pass


_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(max_size=8),
    st.binary(max_size=4),
)
_CONTENT = st.one_of(
    st.text(max_size=20),
    st.lists(
        st.fixed_dictionaries({"type": st.just("text"), "text": st.text(max_size=5)}), max_size=3
    ),
)
_NAMES = st.one_of(st.none(), st.text(max_size=4), st.integers(), st.just(b"n"))


@st.composite
def _messages(draw: Any) -> Any:
    content = draw(_CONTENT)
    kind = draw(st.sampled_from(["human", "ai", "ai_tools", "system", "tool", "chat"]))
    name = draw(_NAMES)
    kw: dict[str, Any] = {"name": name} if isinstance(name, str) else {}
    if kind == "human":
        message: Any = HumanMessage(content, **kw)
    elif kind == "ai":
        extra = draw(st.sampled_from([{}, {"refusal": "no"}, {"reasoning_content": "hm"}]))
        message = AIMessage(content, additional_kwargs=extra, **kw)
    elif kind == "ai_tools":
        message = AIMessage(content, tool_calls=[{"name": "f", "args": {"a": 1}, "id": "c1"}], **kw)
    elif kind == "system":
        message = SystemMessage(content, **kw)
    elif kind == "tool":
        status = draw(st.sampled_from(["success", "error"]))
        message = ToolMessage(content, tool_call_id=draw(st.text(max_size=4)), status=status)
    else:
        message = ChatMessage(content=content, role=draw(st.text(min_size=1, max_size=4)))
    if name is not None and not isinstance(name, str):
        object.__setattr__(message, "name", name)  # a name LangChain would not validate
    return message


def _values() -> Any:
    leaves = st.one_of(_SCALARS, _messages(), st.builds(_Text, st.text(max_size=6)))
    return st.recursive(
        leaves,
        lambda children: st.one_of(
            st.lists(children, max_size=4),
            st.tuples(children, children),
            st.dictionaries(st.one_of(st.text(max_size=4), st.integers()), children, max_size=4),
        ),
        max_leaves=12,
    )


def _check(copy_and_size: tuple[Any, int], reference: Any) -> None:
    copy, size = copy_and_size
    assert copy == reference
    assert type(copy) is type(reference)
    assert size == -1 or size == value_bytes(copy)


@given(value=_values())
def test_plain_sized_copies_as_plain_does_and_counts_value_bytes(value: Any) -> None:
    _check(cv.plain_sized(value), cv.plain(value))


@given(rows=st.lists(st.lists(_messages(), max_size=5), max_size=3))
def test_messages_sized_copies_as_messages_input_does_and_counts_value_bytes(
    rows: list[list[Any]],
) -> None:
    _check(cv.messages_sized(rows), cv.messages_input(rows))


@given(messages=st.lists(st.one_of(st.none(), _messages()), max_size=4))
def test_response_sized_copies_as_response_output_does_and_counts_value_bytes(
    messages: list[Any],
) -> None:
    gens: list[Any] = [
        Generation(text="t") if m is None else ChatGeneration(message=m) for m in messages
    ]
    _check(cv.response_sized(gens), cv.response_output(gens))


def test_the_usual_chat_values_are_counted_on_the_way() -> None:
    chat = [SystemMessage("Be brief."), HumanMessage("Capital of France?", name="bob")]
    answer = AIMessage("Paris.", response_metadata={"finish_reason": "stop"})
    counted = [
        cv.plain_sized({"question": "What is the capital of France?"}),
        cv.plain_sized(ChatPromptValue(messages=chat)),
        cv.plain_sized(answer),
        cv.plain_sized(_Text("Paris.")),
        cv.plain_sized(ToolMessage("42", tool_call_id="c1", status="error")),
        cv.messages_sized([chat]),
        cv.response_sized([ChatGeneration(message=answer)]),
    ]
    for copy, size in counted:
        assert size == value_bytes(copy) > 0
    # 33 messages: sizing no longer counts the list item by item, nor does the copy
    many = cv.messages_sized([[HumanMessage("hi")] * 33])
    assert many[1] == -1 and len(many[0]) == 33


def test_values_not_counted_on_the_way_are_left_to_value_bytes() -> None:
    for value in (
        b"raw",
        Document(page_content="p", metadata={"k": "v"}),
        StringPromptValue(text="t"),
        AIMessage([{"type": "text", "text": "blocks"}]),
        {"deep": {"deeper": {"deepest": 1}}},
    ):
        copy, size = cv.plain_sized(value)
        assert copy == cv.plain(value)
        assert size == -1
