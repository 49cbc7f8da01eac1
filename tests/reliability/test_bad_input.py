"""Hypothesis: whatever a user or provider hands us, every event is valid JSON within the
size limit, secrets never survive, and nothing raises."""

from __future__ import annotations

import json
import math
from typing import Any

from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from langchain_core.messages import AIMessage
from langchain_core.runnables import RunnableLambda

from posthog_callbacks import MemorySink, PosthogExporter
from posthog_callbacks.events import EventConfig, span_to_event
from posthog_callbacks.langchain import CallbackHandler as LCHandler
from posthog_callbacks.llama_index import instrument as li_instrument
from posthog_callbacks.spans import FinishedSpan, SpanKind, Usage
from posthog_callbacks.usage import normalize_provider, provider_from_class, usage_from_mapping
from support.reliability_fakes import EchoChat, MockLLM

SECRET = "sk-live-abcdefghijklmnop0123456789"


class Hostile:
    """An object whose every introspection hook misbehaves."""

    def __repr__(self) -> str:
        raise RuntimeError("repr")

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError(name)


class Unprintable:
    """Raises from ``str()`` and on every attribute; ``repr`` works (for reports)."""

    def __str__(self) -> str:
        raise RuntimeError("str")

    def __repr__(self) -> str:
        return "Unprintable()"

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError(name)


class Slots:
    __slots__ = ("a", "b")

    def __init__(self) -> None:
        self.a = 1


leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=50),
    st.binary(max_size=20),
    st.just(SECRET),
    st.just(f"Bearer {SECRET}"),
    st.just(float("nan")),
    st.builds(Hostile),
    st.builds(Slots),
    st.just(object()),
    st.just(iter([1, 2])),
    st.just(Usage(1, 2)),
    st.just("x" * 5000),
    st.just("data:image/png;base64," + "A" * 3000),
)


def containers(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    keys = st.one_of(
        st.text(max_size=12),
        st.integers(),
        st.just("api_key"),
        st.just("Authorization"),
        st.just("max_tokens"),
        st.just(("a", 1)),
    )
    return st.one_of(
        st.lists(children, max_size=5),
        st.tuples(children, children),
        st.frozensets(st.integers(), max_size=3),
        st.dictionaries(keys, children, max_size=5),
    )


values = st.recursive(leaves, containers, max_leaves=25)


def cyclic(value: Any) -> Any:
    holder: dict[str, Any] = {"value": value}
    holder["self"] = holder
    return holder


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    kind=st.sampled_from(list(SpanKind)),
    inp=values,
    out=values,
    meta=values,
    make_cycle=st.booleans(),
    privacy=st.booleans(),
    limit=st.sampled_from([4000, 1 << 20]),
)
def test_any_span_becomes_a_valid_bounded_event(
    kind: SpanKind, inp: Any, out: Any, meta: Any, make_cycle: bool, privacy: bool, limit: int
) -> None:
    if make_cycle:
        inp = cyclic(inp)
    span = FinishedSpan(
        trace_id="t",
        span_id="s",
        parent_id="p",
        kind=kind,
        name="n",
        start_time=1.0,
        end_time=2.0,
        input=inp,
        output=out,
        metadata=meta if isinstance(meta, dict) else {"m": meta},
        model_parameters={"temperature": math.nan, "api_key": SECRET},
        tools=[inp],
        usage=Usage(input_tokens=3),
    )
    cfg = EventConfig(privacy_mode=privacy, max_event_bytes=limit)
    event = span_to_event(span, cfg)
    encoded = json.dumps(event, allow_nan=False, ensure_ascii=False)
    assert len(encoded.encode()) <= limit
    assert SECRET not in encoded
    assert set(event) == {"event", "distinct_id", "properties", "timestamp", "uuid"}
    if privacy:
        for key in ("$ai_input", "$ai_output_choices", "$ai_input_state", "$ai_output_state"):
            assert key not in event["properties"]


malformed_numbers = st.one_of(
    st.none(),
    st.text(max_size=5),
    st.integers(-10, 10**12),
    st.floats(allow_nan=True),
    st.booleans(),
    st.lists(st.integers()),
)


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(
            [
                "input_tokens",
                "output_tokens",
                "prompt_tokens",
                "completion_tokens",
                "total_tokens",
                "cache_read_input_tokens",
                "cache_creation_input_tokens",
                "input_token_details",
                "prompt_tokens_details",
                "cache_creation",
                "inputTokens",
                "billed_units",
                "eval_count",
            ]
        ),
        st.one_of(malformed_numbers, st.dictionaries(st.text(max_size=10), malformed_numbers)),
        max_size=8,
    )
)
def test_malformed_provider_usage_never_raises_and_never_goes_negative(raw: dict[str, Any]) -> None:
    usage = usage_from_mapping(raw)
    if usage is not None:
        for count in usage:
            assert count is None or (isinstance(count, int) and count >= 0)
        span = FinishedSpan(
            "t", "s", None, SpanKind.GENERATION, "g", 1.0, 2.0, provider="anthropic", usage=usage
        )
        props = span_to_event(span)["properties"]
        assert props.get("$ai_input_tokens", 0) >= 0


@given(st.one_of(st.text(max_size=30), st.none(), st.integers()))
def test_unknown_providers_pass_through(raw: Any) -> None:
    result = normalize_provider(raw)
    assert result is None or (isinstance(result, str) and result == result.strip())
    provider_from_class(raw)


# -- through the front doors ---------------------------------------------------------------
# The same hostile values, now handed to LangChain and LlamaIndex as a user's chain or a
# provider integration would. The handlers must not fail (``callback_errors`` stays 0: a
# failure would be swallowed by LangChain and silently lose the run) and every event must
# still be valid JSON within the sink's size limit.

LIMIT = 6000


class SmallSink(MemorySink):
    """A MemorySink whose events must fit ``LIMIT`` bytes (the exporter reads the limit)."""

    max_event_bytes = LIMIT


_exporter = PosthogExporter(sink=SmallSink(), max_queue_size=100_000)
_lc_handler = LCHandler(_exporter)


def drain_events(exporter: PosthogExporter = _exporter) -> list[dict[str, Any]]:
    assert exporter.flush(timeout=10)
    sink = exporter.sink
    assert isinstance(sink, MemorySink)
    events = list(sink.events)
    sink.clear()
    assert exporter.stats().dropped_invalid == 0
    for event in events:
        encoded = json.dumps(event, allow_nan=False, ensure_ascii=False)
        assert len(encoded.encode()) <= LIMIT
        assert SECRET not in encoded
    return events


str_keys = st.one_of(st.text(max_size=12), st.just("api_key"), st.just("Authorization"))
metadata = st.dictionaries(str_keys, values, max_size=5)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(inp=values, out=values, meta=metadata, make_cycle=st.booleans())
def test_langchain_chain_with_any_input_output_and_metadata(
    inp: Any, out: Any, meta: dict[str, Any], make_cycle: bool
) -> None:
    if make_cycle:
        out = cyclic(out)
    step = RunnableLambda(lambda _: out, name="step")
    chain = RunnableLambda(lambda x: x, name="first") | step
    before = _lc_handler.callback_errors
    result = chain.invoke(inp, config={"callbacks": [_lc_handler], "metadata": meta})
    assert result is out
    assert _lc_handler.callback_errors == before
    events = drain_events()
    assert sorted(e["properties"]["$ai_span_name"] for e in events) == [
        "RunnableSequence",
        "first",
        "step",
    ]
    assert _lc_handler.open_runs() == 0


junk = st.one_of(values, malformed_numbers)
usage_shapes = st.one_of(
    junk,
    st.dictionaries(
        st.sampled_from(
            [
                "input_tokens",
                "output_tokens",
                "total_tokens",
                "input_token_details",
                "output_token_details",
            ]
        ),
        st.one_of(
            malformed_numbers,
            st.dictionaries(
                st.sampled_from(["cache_read", "cache_creation", "reasoning"]),
                malformed_numbers,
                max_size=3,
            ),
        ),
        max_size=5,
    ),
)
response_shapes = st.one_of(
    st.dictionaries(str_keys, junk, max_size=3),
    st.dictionaries(
        st.sampled_from(
            [
                "model_name",
                "model",
                "finish_reason",
                "stop_reason",
                "token_usage",
                "usage",
                "model_provider",
                "system_fingerprint",
            ]
        ),
        st.one_of(junk, usage_shapes),
        max_size=5,
    ),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    usage=usage_shapes,
    response=response_shapes,
    llm_output=st.one_of(st.none(), response_shapes),
    provider=st.one_of(
        st.none(),
        st.text(max_size=20),
        st.sampled_from(["openai", "anthropic", "Bedrock", "mystery-ai"]),
    ),
)
@example(usage=None, response={"finish_reason": Unprintable()}, llm_output=None, provider=None)
@example(usage=None, response={"model_name": SECRET}, llm_output=None, provider=None)
@example(usage=None, response={"finish_reason": "x" * 20_000}, llm_output=None, provider=SECRET)
def test_langchain_model_with_malformed_usage_and_unknown_provider(
    usage: Any, response: Any, llm_output: Any, provider: Any
) -> None:
    # What a buggy provider integration might produce: built without validation.
    reply = AIMessage.model_construct(
        content="hi",
        usage_metadata=usage,
        response_metadata=response,
        tool_calls=[],
        invalid_tool_calls=[],
        additional_kwargs={},
        type="ai",
    )
    model = EchoChat(reply=reply, provider=provider, llm_output=llm_output)
    try:
        expected = model.invoke("question")
    except Exception:
        assume(False)  # LangChain itself rejects it: nothing for the handler to see
    before = _lc_handler.callback_errors
    assert model.invoke("question", config={"callbacks": [_lc_handler]}) == expected
    assert _lc_handler.callback_errors == before
    (event,) = drain_events()
    props = event["properties"]
    assert event["event"] == "$ai_generation"
    for key in (
        "$ai_input_tokens",
        "$ai_output_tokens",
        "$ai_cache_read_input_tokens",
        "$ai_reasoning_tokens",
    ):
        assert key not in props or (type(props[key]) is int and props[key] >= 0)
    # usage is either reported (some count) or its absence is explained; never a silent 0
    assert "$ai_usage_missing_reason" in props or any(
        k.endswith("_tokens") for k in props if k.startswith("$ai_")
    )
    provider_prop = props.get("$ai_provider")
    assert provider_prop is None or (isinstance(provider_prop, str) and provider_prop)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    raw=st.one_of(
        junk,
        st.fixed_dictionaries({"usage": usage_shapes}, optional={"model": junk, "choices": junk}),
    ),
    prompt=st.text(max_size=200),
    kwargs=st.dictionaries(st.text(max_size=8).map(lambda k: f"kw_{k}"), values, max_size=3),
)
@example(raw=Unprintable(), prompt="p", kwargs={})  # attribute access raises
def test_llama_index_model_with_any_raw_response_and_prompt(
    raw: Any, prompt: str, kwargs: dict[str, Any]
) -> None:
    llm = MockLLM(raw=raw)
    handle = li_instrument(_exporter)
    try:
        response = llm.complete(prompt, **kwargs)
    finally:
        handle.uninstrument()
    assert response.text == "forty two"
    assert handle.open_runs() == 0
    (event,) = drain_events()
    assert event["event"] == "$ai_generation"
    assert event["properties"]["$ai_framework"] == "llama_index"
