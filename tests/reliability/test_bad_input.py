"""Hypothesis: whatever a user or provider hands us, every event is valid JSON within the
size limit, secrets never survive, and nothing raises. Then, through the exporter and the
real HTTP path: shared references cost the caller bounded work, a hanging ``__repr__``
stalls nothing, one bad value costs only its own field, and no event exceeds the size
limit as encoded on the wire (issue 11 items 2-5)."""

from __future__ import annotations

import enum
import json
import math
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from langchain_core.messages import AIMessage
from langchain_core.runnables import RunnableLambda

from posthog_callbacks import JsonlSink, MemorySink, PosthogExporter, PosthogSink
from posthog_callbacks.events import EventConfig, span_to_event
from posthog_callbacks.langchain import CallbackHandler as LCHandler
from posthog_callbacks.llama_index import instrument as li_instrument
from posthog_callbacks.spans import FinishedSpan, SpanKind, Usage
from posthog_callbacks.usage import normalize_provider, provider_from_class, usage_from_mapping
from support.capture_server import TEST_API_KEY, CaptureServer
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
    st.just("\U0001f600" * 3000),  # 12 bytes each once escaped
    st.just("lone \ud800 surrogate"),
    st.builds(pow, st.just(10), st.just(5000)),  # str() refuses it: 5,001 digits
    st.just(2**70),
    st.just(f"token=abc123 and {SECRET}"),
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
    assert len(json.dumps(event).encode()) <= limit  # escaped, as the posthog SDK sends it
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
        assert len(json.dumps(event).encode()) <= LIMIT  # escaped, as the posthog SDK sends it
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


# -- shared references (item 4) -------------------------------------------------------------


def self_holding() -> dict[str, Any]:
    d: dict[str, Any] = {}
    for key in "abcd":
        d[key] = d
    return d


def test_a_dict_holding_itself_four_times_is_recorded_at_once() -> None:
    # Before: 10-25 s on the caller's thread (4**12 paths). Now each container is copied
    # once: the copy holds itself, and the worker writes each self-reference as <cycle>.
    exporter = PosthogExporter(sink=MemorySink())
    shared = self_holding()
    with exporter.trace("shared", input={"x": shared, "y": shared}):
        pass
    chain = RunnableLambda(lambda x: x, name="echo")
    chain.invoke(shared, config={"callbacks": [LCHandler(exporter)]})
    assert exporter.flush(timeout=10)
    sink = exporter.sink
    assert isinstance(sink, MemorySink)
    by_name = {e["properties"]["$ai_span_name"]: e["properties"] for e in sink.events}
    cycles = {k: "<cycle>" for k in "abcd"}
    assert by_name["shared"]["$ai_input_state"] == {"x": cycles, "y": cycles}
    assert by_name["echo"]["$ai_input_state"] == cycles
    assert by_name["echo"]["$ai_output_state"] == cycles
    exporter.shutdown(timeout=5)


# -- a hanging __repr__ stalls nothing (item 5) ----------------------------------------------


class Hanging:
    """Every hook the worker might call waits until the test releases it."""

    release = threading.Event()

    def __init__(self) -> None:
        self.label = "hanging"

    def _wait(self) -> None:
        Hanging.release.wait()

    def __repr__(self) -> str:
        self._wait()
        return "Hanging()"

    def __str__(self) -> str:
        self._wait()
        return "Hanging"

    def __getattr__(self, name: str) -> Any:
        self._wait()
        raise AttributeError(name)

    def __iter__(self) -> Iterator[Any]:
        self._wait()
        return iter(())


@pytest.fixture
def hanging() -> Iterator[type[Hanging]]:
    Hanging.release.clear()
    try:
        yield Hanging
    finally:
        Hanging.release.set()  # the test can never hang: a regression fails the flush


def test_a_hanging_repr_does_not_stall_later_traces(hanging: type[Hanging]) -> None:
    exporter = PosthogExporter(sink=MemorySink(), flush_interval=0.05)
    try:
        with exporter.trace("first", input={"obj": hanging()}, metadata={"m": hanging()}) as t:
            with t.generation(
                "gen", model="m", input=[hanging()], model_parameters={"p": hanging()}
            ) as gen:
                gen.update(output=hanging(), tools=[hanging()])
        with exporter.trace("later", input="after the hanging one"):
            pass
        assert exporter.flush(timeout=10)  # the worker never waited on a hook
        sink = exporter.sink
        assert isinstance(sink, MemorySink)
        by_name = {e["properties"]["$ai_span_name"]: e["properties"] for e in sink.events}
        assert set(by_name) == {"first", "gen", "later"}
        assert by_name["first"]["$ai_input_state"] == {
            "obj": {"type": "Hanging", "label": "hanging"}
        }
        assert by_name["later"]["$ai_input_state"] == "after the hanging one"
        assert not hanging.release.is_set()
    finally:
        hanging.release.set()
        exporter.shutdown(timeout=5)


# -- one bad value costs at most its own field (item 2), sizes on the wire (item 3) ----------


class Plain(enum.Enum):
    A = object()


class Status(enum.Enum):
    OK = "ok"


def bad_value_spans() -> list[FinishedSpan]:
    base = FinishedSpan("t-bad", "t-bad", None, SpanKind.TRACE, "root", 1.0, 2.0)
    values: list[Any] = [
        10**5000,
        Plain.A,
        "lone \ud800 surrogate",
        math.nan,
        -math.inf,
        b"\x00\xff",
        {1: "int key", (1, 2): "tuple key", None: "none key"},
        object(),
    ]
    spans = [base]
    for i, value in enumerate(values):
        spans.append(
            FinishedSpan(
                "t-bad",
                f"s{i}",
                "t-bad",
                SpanKind.GENERATION,
                f"g{i}",
                1.0,
                2.0,
                input=value,
                output={"v": value},
                metadata={"m": value},
                status=value,
                http_status=Status.OK if i % 2 else value,  # type: ignore[arg-type]  # hostile
                model_parameters={"temperature": value},
                stop_reason=value,
            )
        )
    return spans


def test_bad_values_cost_only_their_field_through_http_and_jsonl(
    capture_server: CaptureServer, tmp_path: Path
) -> None:
    spans = bad_value_spans()
    path = tmp_path / "events.jsonl"
    http = PosthogExporter(
        sink=PosthogSink(api_key=TEST_API_KEY, host=capture_server.url, backoff_base=0.01),
        flush_at=1000,
    )
    jsonl = PosthogExporter(sink=JsonlSink(path), flush_at=1000)
    try:
        for exporter in (http, jsonl):
            for span in spans:
                exporter.submit(span)
            assert exporter.flush(timeout=30)
            stats = exporter.stats()
            assert (stats.sent, stats.dropped_sink_error, stats.dropped_invalid) == (
                len(spans), 0, 0,
            )  # fmt: skip
    finally:
        http.shutdown(timeout=5)
        jsonl.shutdown(timeout=5)
    lines = path.read_bytes().splitlines()
    for events in (capture_server.events, [json.loads(line) for line in lines]):
        assert sorted(e["properties"]["$ai_span_name"] for e in events) == sorted(
            s.name for s in spans
        )
        for event in events:
            props = event["properties"]
            if event["event"] == "$ai_generation":
                assert type(props["$ai_http_status"]) is int
                assert isinstance(props.get("$ai_span_status", ""), str)


EMOJI = "\U0001f600"


def test_no_event_exceeds_the_limit_on_the_wire_and_ids_are_bounded(
    capture_server: CaptureServer,
) -> None:
    limit = 300_000
    sink = PosthogSink(api_key=TEST_API_KEY, host=capture_server.url, backoff_base=0.01)
    sink.max_event_bytes = limit  # type: ignore[attr-defined]
    exporter = PosthogExporter(sink=sink)
    huge_id = "u" * 9_000_000
    try:
        with exporter.trace(
            "big",
            input=EMOJI * 1_000_000,
            distinct_id=huge_id,
            session_id=EMOJI * 3_000_000,
            metadata={"note": "é" * 1_000_000},
            tags=["t" * 1_000_000],
        ) as trace:
            with trace.span("child", input=[EMOJI * 500_000, "\x00" * 500_000]) as span:
                span.update(output={"o": EMOJI * 500_000})
        assert exporter.flush(timeout=30)
        assert exporter.stats().dropped_sink_error == 0
    finally:
        exporter.shutdown(timeout=5)
    events = capture_server.events
    assert sorted(e["properties"]["$ai_span_name"] for e in events) == ["big", "child"]
    for event in events:
        assert len(json.dumps(event).encode()) <= limit  # as the posthog SDK escapes it
        assert len(orjson.dumps(event)) <= limit  # as UTF-8
        assert len(event["distinct_id"]) <= 200
        assert len(event["properties"]["$ai_session_id"]) <= 200
    ids = {e["distinct_id"] for e in events}
    assert len(ids) == 1 and "[truncated" in ids.pop()  # one person for the whole trace
    root = next(e["properties"] for e in events if e["event"] == "$ai_trace")
    assert "[truncated" in root["$ai_input_state"]
    assert all(len(tag) <= 300 for tag in root["$ai_tags"])


times = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(10**20), 10**20),
    st.sampled_from([None, "2026-11-30", b"1", True]),
)


@settings(max_examples=300, deadline=None)
@given(start=times, end=times)
@example(start=-40_000_000_000.5, end=0.0)  # the year 702: strftime's %Y gave "702"
@example(start=-1.5, end=0.0)  # int() rounds toward zero: "59.-500000"
def test_a_span_with_times_that_are_no_times_still_becomes_an_event(start: Any, end: Any) -> None:
    before = time.time()
    event = span_to_event(FinishedSpan("t", "s", None, SpanKind.SPAN, "n", start, end))
    stamp = datetime.fromisoformat(event["timestamp"])
    latency = event["properties"]["$ai_latency"]
    assert type(latency) in (int, float) and math.isfinite(latency) and latency >= 0
    json.dumps(event, allow_nan=False)
    usable = isinstance(start, (int, float)) and math.isfinite(start)
    if usable and 0 <= start < 253402300799:  # up to the year 9999: kept
        assert abs(stamp.timestamp() - start) < 1e-5 * max(1.0, abs(start))
    elif not usable:
        assert stamp.timestamp() >= before - 1  # stamped when translated
