"""Conversion helpers: the fast usage path agrees with the generic parser."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from langchain_core.documents import Document
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.prompt_values import ChatPromptValue, StringPromptValue

from posthog_callbacks.langchain.convert import plain
from posthog_callbacks.usage import _usage_from_mapping, usage_from_mapping

_count = st.one_of(
    st.none(), st.integers(min_value=-3, max_value=10_000), st.just("7"), st.just(1.5)
)


@st.composite
def _usage_metadata(draw: Any) -> dict[str, Any]:
    um: dict[str, Any] = {}
    for key in ("input_tokens", "output_tokens", "total_tokens"):
        value = draw(_count)
        if value is not None or draw(st.booleans()):
            um[key] = value
    if draw(st.booleans()):
        um["input_token_details"] = {
            k: draw(_count)
            for k in (
                "cache_read",
                "cache_creation",
                "ephemeral_5m_input_tokens",
                "ephemeral_1h_input_tokens",
                "audio",
                "cached_tokens",
            )
            if draw(st.booleans())
        }
    if draw(st.booleans()):
        um["output_token_details"] = {"reasoning": draw(_count)}
    return um


@given(_usage_metadata())
def test_fast_usage_path_matches_generic_parser(um: dict[str, Any]) -> None:
    assert usage_from_mapping(um) == _usage_from_mapping(um)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (HumanMessage("hi"), {"role": "user", "content": "hi"}),
        (
            {"docs": [Document(page_content="p", metadata={"a": 1})]},
            {"docs": [{"page_content": "p", "metadata": {"a": 1}}]},
        ),
        (
            ChatPromptValue(messages=[HumanMessage("q"), AIMessage("a")]),
            [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}],
        ),
        (StringPromptValue(text="plain prompt"), "plain prompt"),
        (("a", ["b", {"c": (1, 2)}]), ["a", ["b", {"c": [1, 2]}]]),
    ],
)
def test_plain_converts_langchain_values(value: Any, expected: Any) -> None:
    assert plain(value) == expected


def test_plain_copies_containers() -> None:
    inputs = {"history": ["a"]}
    copied = plain(inputs)
    inputs["history"].append("b")
    assert copied == {"history": ["a"]}


def test_tools_of_every_provider_shape_become_openai_functions() -> None:
    from posthog_callbacks.langchain.model import tools_to_openai

    schema = {"type": "object", "properties": {"city": {"type": "string"}}}
    tools = [
        {"type": "function", "function": {"name": "oa", "parameters": schema}},
        {"name": "anth", "description": "a", "input_schema": schema},
        {"toolSpec": {"name": "bed", "description": "b", "inputSchema": {"json": schema}}},
        {"toolSpec": "not a spec"},
        {"name": "plain", "description": "p", "parameters": schema},
        {"other": 1},
        "opaque",
    ]
    assert tools_to_openai(tools) == [
        {"type": "function", "function": {"name": "oa", "parameters": schema}},
        {
            "type": "function",
            "function": {"name": "anth", "description": "a", "parameters": schema},
        },
        {"type": "function", "function": {"name": "bed", "description": "b", "parameters": schema}},
        {"type": "function", "function": {"name": None, "description": None, "parameters": None}},
        {
            "type": "function",
            "function": {"name": "plain", "description": "p", "parameters": schema},
        },
        {"other": 1},
        "opaque",
    ]
    assert tools_to_openai([]) is None
