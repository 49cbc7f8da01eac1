"""Hypothesis: whatever a user or provider hands us, every event is valid JSON within the
size limit, secrets never survive, and nothing raises."""

from __future__ import annotations

import json
import math
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from posthog_callbacks.events import EventConfig, span_to_event
from posthog_callbacks.spans import FinishedSpan, SpanKind, Usage
from posthog_callbacks.usage import normalize_provider, provider_from_class, usage_from_mapping

SECRET = "sk-live-abcdefghijklmnop0123456789"


class Hostile:
    """An object whose every introspection hook misbehaves."""

    def __repr__(self) -> str:
        raise RuntimeError("repr")

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError(name)


class Slots:
    __slots__ = ("a", "b")

    def __init__(self) -> None:
        self.a = 1


leaves = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=50), st.binary(max_size=20), st.just(SECRET),
    st.just(f"Bearer {SECRET}"), st.just(float("nan")), st.builds(Hostile),
    st.builds(Slots), st.just(object()), st.just(iter([1, 2])), st.just(Usage(1, 2)),
    st.just("x" * 5000), st.just("data:image/png;base64," + "A" * 3000),
)


def containers(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    keys = st.one_of(st.text(max_size=12), st.integers(), st.just("api_key"),
                     st.just("Authorization"), st.just("max_tokens"), st.just(("a", 1)))
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
@given(kind=st.sampled_from(list(SpanKind)), inp=values, out=values, meta=values,
       make_cycle=st.booleans(), privacy=st.booleans(), limit=st.sampled_from([4000, 1 << 20]))
def test_any_span_becomes_a_valid_bounded_event(kind: SpanKind, inp: Any, out: Any, meta: Any,
                                                make_cycle: bool, privacy: bool,
                                                limit: int) -> None:
    if make_cycle:
        inp = cyclic(inp)
    span = FinishedSpan(
        trace_id="t", span_id="s", parent_id="p", kind=kind, name="n", start_time=1.0,
        end_time=2.0, input=inp, output=out,
        metadata=meta if isinstance(meta, dict) else {"m": meta},
        model_parameters={"temperature": math.nan, "api_key": SECRET}, tools=[inp],
        usage=Usage(input_tokens=3))
    cfg = EventConfig(privacy_mode=privacy, max_event_bytes=limit)
    event = span_to_event(span, cfg)
    encoded = json.dumps(event, allow_nan=False, ensure_ascii=False)
    assert len(encoded.encode()) <= limit
    assert SECRET not in encoded
    assert set(event) == {"event", "distinct_id", "properties", "timestamp", "uuid"}
    if privacy:
        for key in ("$ai_input", "$ai_output_choices", "$ai_input_state", "$ai_output_state"):
            assert key not in event["properties"]


malformed_numbers = st.one_of(st.none(), st.text(max_size=5), st.integers(-10, 10**12),
                              st.floats(allow_nan=True), st.booleans(), st.lists(st.integers()))


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(
    st.sampled_from(["input_tokens", "output_tokens", "prompt_tokens", "completion_tokens",
                     "total_tokens", "cache_read_input_tokens", "cache_creation_input_tokens",
                     "input_token_details", "prompt_tokens_details", "cache_creation",
                     "inputTokens", "billed_units", "eval_count"]),
    st.one_of(malformed_numbers, st.dictionaries(st.text(max_size=10), malformed_numbers)),
    max_size=8))
def test_malformed_provider_usage_never_raises_and_never_goes_negative(raw: dict[str, Any]
                                                                       ) -> None:
    usage = usage_from_mapping(raw)
    if usage is not None:
        for count in usage:
            assert count is None or (isinstance(count, int) and count >= 0)
        span = FinishedSpan("t", "s", None, SpanKind.GENERATION, "g", 1.0, 2.0,
                            provider="anthropic", usage=usage)
        props = span_to_event(span)["properties"]
        assert props.get("$ai_input_tokens", 0) >= 0


@given(st.one_of(st.text(max_size=30), st.none(), st.integers()))
def test_unknown_providers_pass_through(raw: Any) -> None:
    result = normalize_provider(raw)
    assert result is None or (isinstance(result, str) and result == result.strip())
    provider_from_class(raw)
