"""instrument(): structured prediction is a span holding its one model call."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from llama_index.core.base.llms.types import ChatMessage
from llama_index.core.llms.mock import MockFunctionCallingLLM
from llama_index.core.prompts import PromptTemplate
from llama_index.core.workflow import StartEvent, StopEvent, Workflow, step
from pydantic import BaseModel

from posthog_callbacks.llama_index import InstrumentHandle
from support.llama_helpers import Events, UsageLLM, check_trees, one, props, tree

PROMPT = PromptTemplate("Make a person named {name}")
PERSON = {"name": "Ada", "age": 36}
TREE = ["$ai_trace structured_predict Person", "  $ai_generation mock-gpt.complete"]


class Person(BaseModel):
    name: str
    age: int = 0


def _llm(answer: str = '{"name": "Ada", "age": 36}') -> UsageLLM:
    return UsageLLM(answer=answer)


def _check_generation(got: list[dict[str, Any]], parent: dict[str, Any]) -> dict[str, Any]:
    gen = props(one(got, "mock-gpt.complete"))
    assert gen["$ai_parent_id"] == (
        props(parent).get("$ai_span_id") or props(parent)["$ai_trace_id"]
    )
    assert gen["$ai_model"] == "mock-gpt-0613"
    assert (gen["$ai_input_tokens"], gen["$ai_output_tokens"]) == (11, 3)
    assert "Make a person named Ada\n" in gen["$ai_input"][0]["content"]
    assert gen["$ai_output_choices"] == [
        {"role": "assistant", "content": '{"name": "Ada", "age": 36}'}
    ]
    return gen


def test_structured_predict(instrumented: InstrumentHandle, events: Events) -> None:
    assert _llm().structured_predict(Person, PROMPT, name="Ada") == Person(**PERSON)
    got = events()
    assert len(check_trees(got)) == 1
    assert tree(got) == TREE  # one generation: the program's complete() call
    root = one(got, "structured_predict Person")
    assert root["event"] == "$ai_trace"
    assert props(root)["$ai_input_state"] == {
        "template": "Make a person named {name}",
        "template_args": {"name": "Ada"},
    }
    assert props(root)["$ai_output_state"] == PERSON
    assert props(root)["$ai_is_error"] is False
    _check_generation(got, root)
    assert instrumented.open_runs() == 0


def test_structured_predict_failure(instrumented: InstrumentHandle, events: Events) -> None:
    with pytest.raises(ValueError):
        _llm(answer="no json here").structured_predict(Person, PROMPT, name="Ada")
    got = events()
    assert len(check_trees(got)) == 1
    assert [e["event"] for e in got].count("$ai_generation") == 1
    root = props(one(got, "structured_predict Person"))
    assert root["$ai_is_error"] is True and root["$ai_error"].startswith("ValueError")
    assert "$ai_output_state" not in root
    assert props(one(got, "mock-gpt.complete"))["$ai_is_error"] is False
    assert instrumented.open_runs() == 0


def test_structured_predict_in_a_workflow_step(
    instrumented: InstrumentHandle, events: Events
) -> None:
    llm = _llm()

    class Extract(Workflow):
        @step
        async def extract(self, ev: StartEvent) -> StopEvent:
            person = await llm.astructured_predict(Person, PROMPT, name="Ada")
            return StopEvent(result=person.name)

    async def run() -> Any:
        return await Extract().run()

    assert asyncio.run(run()) == "Ada"
    got = events()
    assert len(check_trees(got)) == 1
    assert tree(got) == [
        "$ai_trace Extract.run",
        "  $ai_span extract",
        "    $ai_span structured_predict Person",
        "      $ai_generation mock-gpt.complete",
    ]
    span = one(got, "structured_predict Person")
    assert props(span)["$ai_output_state"] == PERSON
    assert props(span)["$ai_parent_id"] == props(one(got, "extract"))["$ai_span_id"]
    _check_generation(got, span)


def test_stream_structured_predict(instrumented: InstrumentHandle, events: Events) -> None:
    stream = _llm().stream_structured_predict(Person, PROMPT, name="Ada")
    parts = list(stream)
    assert parts[-1] == Person(**PERSON)
    assert instrumented.open_runs() == 0
    got = events()
    assert len(check_trees(got)) == 1
    assert tree(got) == TREE
    root = one(got, "structured_predict Person")
    assert props(root)["$ai_output_state"] == PERSON  # the final object, not a partial
    assert props(root)["$ai_input_state"]["template_args"] == {"name": "Ada"}
    gen = _check_generation(got, root)
    assert gen["$ai_stream"] is True


async def test_astream_structured_predict(instrumented: InstrumentHandle, events: Events) -> None:
    last = None
    async for part in await _llm().astream_structured_predict(Person, PROMPT, name="Ada"):
        last = part
    assert last == Person(**PERSON)
    assert instrumented.open_runs() == 0
    got = events()
    assert len(check_trees(got)) == 1
    assert tree(got) == TREE
    root = one(got, "structured_predict Person")
    assert props(root)["$ai_output_state"] == PERSON
    _check_generation(got, root)


@pytest.mark.parametrize("streaming", [False, True])
def test_as_structured_llm(instrumented: InstrumentHandle, events: Events, streaming: bool) -> None:
    sllm = _llm().as_structured_llm(Person)
    messages = [ChatMessage(role="user", content="Make a person named Ada")]
    if streaming:
        response = list(sllm.stream_chat(messages))[-1]
    else:
        response = sllm.chat(messages)
    assert Person.model_validate_json(response.message.content or "") == Person(**PERSON)
    assert instrumented.open_runs() == 0
    got = events()
    assert len(check_trees(got)) == 1
    assert tree(got) == TREE  # the StructuredLLM's own chat() is not a second generation
    root = one(got, "structured_predict Person")
    assert props(root)["$ai_input_state"] == {
        "template_args": {},
        "messages": [{"role": "user", "content": "Make a person named Ada"}],
    }
    assert props(root)["$ai_output_state"] == PERSON
    _check_generation(got, root)


def test_function_calling_structured_predict(
    instrumented: InstrumentHandle, events: Events
) -> None:
    class Named(BaseModel):
        name: str = "x"

    llm = MockFunctionCallingLLM()
    assert llm.structured_predict(Named, PROMPT, name="Ada") == Named(name="x")
    got = events()
    assert len(check_trees(got)) == 1
    assert tree(got) == [  # the program's tool call is a span beside the one model call
        "$ai_trace structured_predict Named",
        "  $ai_generation MockFunctionCallingLLM.chat",
        "  $ai_span Named",
    ]
    root = one(got, "structured_predict Named")
    assert props(root)["$ai_output_state"] == {"name": "x"}
    gen = props(one(got, "MockFunctionCallingLLM.chat"))
    assert gen["$ai_parent_id"] == props(root)["$ai_trace_id"]
    call = gen["$ai_output_choices"][0]["tool_calls"][0]["function"]
    assert (call["name"], call["arguments"]) == ("Named", {"name": "x"})
    assert instrumented.open_runs() == 0
