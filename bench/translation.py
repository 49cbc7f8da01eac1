"""Worker-side translation cost: microseconds per event of ``span -> $ai_* event dict``.

Times the function the exporter's batch processor calls for every span
(``events._span_to_event_sized``, the ``Translate`` of ``batching.py``; ``span_to_event``
is the same without the size) on realistic spans:

* a LangChain-like chat generation: system + user messages, assistant output with a tool
  call, usage with cache details, model parameters, run metadata and tags;
* a chain span with dict input and output;
* a manual trace root (short string input and output);
* the chat generation with a user message and an answer never seen before (the cleaned
  text caches miss on them);
* the two events of ``bench/exporter_throughput.py``'s burst (a generation with short chat
  messages, usage and model parameters; its ``$ai_trace`` root with dict input/output);

then the mix (one of each) and a cProfile top-20 of the mix. Each figure is the best of
several rounds, in CPU time of the thread (this machine class: 2 cores).

``--compare`` times every row twice in the same run, rounds interleaved: as shipped, and
with the serializer walking every container (``Serializer(recall=False)``: no recall of
containers converted before), and prints the ratio.

Usage::

    .venv/bin/python bench/translation.py
    .venv/bin/python bench/translation.py --no-profile
    .venv/bin/python bench/translation.py --compare --no-profile
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import functools
import pstats
import time
import timeit
from collections.abc import Callable, Iterator
from typing import Any
from unittest import mock

from posthog_callbacks import events
from posthog_callbacks.events import EventConfig, _span_to_event_sized
from posthog_callbacks.serialize import Serializer
from posthog_callbacks.spans import FinishedSpan, SpanKind, Usage

TRACE = "7f3c2a10-5b9e-4c1d-8e2f-0a1b2c3d4e5f"
CHAT = "0b7d3e51-2a4c-4f6e-9d8b-1c2e3f405162"
CHAIN = "9e8d7c6b-5a49-4837-a261-504f3e2d1c0b"

SYSTEM = (
    "You are a helpful travel assistant for Acme Corp. Answer concisely, cite the tool "
    "results you used, and never reveal internal pricing rules. Today is 2026-11-30."
)
QUESTION = "What's the weather like in Paris tomorrow, and should I pack an umbrella?"
ANSWER = "Let me check the forecast for Paris first."

CHAT_INPUT = [
    {"role": "system", "content": SYSTEM},
    {"role": "user", "content": QUESTION},
]
CHAT_OUTPUT = [
    {
        "role": "assistant",
        "content": ANSWER,
        "tool_calls": [
            {
                "type": "function",
                "id": "call_Qm2xN8pLk3Vd7Rt1",
                "function": {
                    "name": "get_weather",
                    "arguments": '{"city": "Paris", "date": "2026-12-01", "units": "metric"}',
                },
            }
        ],
    }
]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather forecast for a city on a date.",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string"},
                    "date": {"type": "string", "description": "ISO date"},
                    "units": {"type": "string", "enum": ["metric", "imperial"]},
                },
                "required": ["city", "date"],
            },
        },
    }
]
METADATA = {
    "ls_provider": "openai",
    "ls_model_name": "gpt-4o-mini",
    "ls_model_type": "chat",
    "ls_temperature": 0.2,
    "user_tier": "pro",
    "request_id": "req_8f2b9c4d1e7a",
}


def chat_generation() -> FinishedSpan:
    return FinishedSpan(
        TRACE, CHAT, CHAIN, SpanKind.GENERATION, "ChatOpenAI", 1_764_470_000.123456,
        1_764_470_001.654321, framework="langchain", input=CHAT_INPUT, output=CHAT_OUTPUT,
        model="gpt-4o-mini-2024-07-18", provider="openai",
        usage=Usage(input_tokens=1234, output_tokens=56, total_tokens=1290,
                    cache_read_tokens=1024, reasoning_tokens=0),
        model_parameters={"temperature": 0.2, "max_tokens": 512, "stream": False,
                          "model_name": "gpt-4o-mini", "n": 1},
        tools=TOOLS, http_status=200, stop_reason="tool_calls", metadata=METADATA,
        tags=("seq:step:2", "travel"), distinct_id="user_42",
        session_id="sess-2026-11-30-abc", time_to_first_token=0.321,
    )  # fmt: skip


def chain_span() -> FinishedSpan:
    return FinishedSpan(
        TRACE, CHAIN, TRACE, SpanKind.SPAN, "RunnableSequence", 1_764_470_000.1,
        1_764_470_002.2, framework="langchain",
        input={"question": QUESTION, "city": "Paris", "history": [], "max_results": 3},
        output={"answer": ANSWER, "sources": ["met.fr", "weather.com"], "confidence": 0.82},
        metadata=METADATA, tags=("travel",), distinct_id="user_42",
        session_id="sess-2026-11-30-abc",
    )  # fmt: skip


def trace_root() -> FinishedSpan:
    return FinishedSpan(
        TRACE, TRACE, None, SpanKind.SPAN, "plan-trip", 1_764_470_000.0, 1_764_470_003.0,
        input=QUESTION, output="Pack an umbrella: rain is likely in Paris tomorrow.",
        distinct_id="user_42",
    )  # fmt: skip


BURST_TRACE = "3d5f6a7b-8c9d-4e0f-a1b2-c3d4e5f60718"
BURST_GEN = "4e6a7b8c-9d0e-4f1a-b2c3-d4e5f6071829"


def burst_generation() -> FinishedSpan:
    """The generation of ``bench/exporter_throughput.py``'s burst (2 short messages in,
    1 out, model parameters, usage), as the manual front door finishes it."""
    return FinishedSpan(
        BURST_TRACE, BURST_GEN, BURST_TRACE, SpanKind.GENERATION, "chat", 1_764_470_000.25,
        1_764_470_000.75, input=[{"role": "system", "content": "You are terse."},
                                 {"role": "user", "content": "What is the capital of France?"}],
        output=[{"role": "assistant", "content": "Paris."}], model="gpt-4o-mini",
        provider="openai", usage=Usage(input_tokens=21, output_tokens=2, total_tokens=23),
        model_parameters={"temperature": 0.2, "max_tokens": 256}, distinct_id="user-1",
    )  # fmt: skip


def burst_root() -> FinishedSpan:
    """The ``$ai_trace`` root of the burst (dict input and output)."""
    return FinishedSpan(
        BURST_TRACE, BURST_TRACE, None, SpanKind.SPAN, "answer", 1_764_470_000.2,
        1_764_470_000.8, input={"q": "What is the capital of France?"},
        output={"answer": "Paris."}, distinct_id="user-1",
    )  # fmt: skip


def fresh_texts(span: FinishedSpan, count: int, tag: str) -> list[FinishedSpan]:
    """``count`` copies of a chat generation whose user message and answer are new text
    (no cache of cleaned text helps with them; the system prompt and tools repeat)."""
    out = []
    for i in range(count):
        user = {"role": "user", "content": f"{QUESTION} ({tag} {i})"}
        answer = dict(CHAT_OUTPUT[0], content=f"{ANSWER} Noted {tag} {i}.")
        out.append(span._replace(input=[CHAT_INPUT[0], user], output=[answer]))
    return out


def best_fresh(span: FinishedSpan, cfg: EventConfig, count: int = 2_000) -> float:
    """Best thread CPU per event over rounds of spans with never-seen texts."""
    results = []
    for r in range(7):
        spans = fresh_texts(span, count, f"round {r}")
        start = time.thread_time()
        for s in spans:
            _span_to_event_sized(s, cfg)
        results.append(time.thread_time() - start)
    return min(results) / count * 1e6


@contextlib.contextmanager
def walking(enabled: bool) -> Iterator[None]:
    """Within the block, events are translated with ``Serializer(recall=False)``."""
    if not enabled:
        yield
        return
    with mock.patch.object(events, "Serializer", functools.partial(Serializer, recall=False)):
        yield


def best(fn: Callable[[], Any], number: int, rounds: int = 7) -> float:
    """Best thread CPU time per call in microseconds (CPU time: other processes on a
    shared 2-core box inflate wall time, not this)."""
    timer = time.thread_time
    return min(timeit.repeat(fn, number=number, repeat=rounds, timer=timer)) / number * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-profile", action="store_true", help="skip the cProfile top-20")
    parser.add_argument(
        "--compare", action="store_true", help="also time every row with recall=False"
    )
    args = parser.parse_args()
    cfg = EventConfig(
        properties={"environment": "production", "app": "travel"},
        secrets=("phc_benchProjectKey0123456789abcdef",),
    )
    private = EventConfig(privacy_mode=True, secrets=cfg.secrets)
    spans = [chat_generation(), chain_span(), trace_root()]
    mix = lambda: [_span_to_event_sized(s, cfg) for s in spans]  # noqa: E731
    burst = [burst_generation(), burst_root()]
    pair = lambda: [_span_to_event_sized(s, cfg) for s in burst]  # noqa: E731

    def per_event(span: FinishedSpan, config: EventConfig) -> float:
        return best(lambda: _span_to_event_sized(span, config), 5_000)

    def table(walk: bool) -> list[tuple[str, float]]:
        with walking(walk):
            return [
                ("chat generation", per_event(spans[0], cfg)),
                ("chat generation, privacy mode", per_event(spans[0], private)),
                ("chat generation, new user text + answer", best_fresh(spans[0], cfg)),
                ("chain span (dict input/output)", per_event(spans[1], cfg)),
                ("manual trace root", per_event(spans[2], cfg)),
                ("burst generation (exporter_throughput)", per_event(burst[0], cfg)),
                ("burst trace root (exporter_throughput)", per_event(burst[1], cfg)),
                ("burst pair, per event", best(pair, 5_000) / len(burst)),
                ("mix, per event", best(mix, 2_000) / len(spans)),
            ]

    width = 40
    print("translation (events._span_to_event_sized), thread CPU, best of 7 rounds")
    if not args.compare:
        for name, us in table(False):
            print(f"  {name:<{width}}  {us:8.1f} us/event")
    else:
        # Alternate whole tables so that load from other processes hits both alike.
        runs = [(table(False), table(True)) for _ in range(2)]
        print(f"  {'':<{width}}  {'shipped':>8}  {'walk':>8}  ratio (us/event, best of runs)")
        for i, (name, _) in enumerate(runs[0][0]):
            shipped = min(run[0][i][1] for run in runs)
            walked = min(run[1][i][1] for run in runs)
            print(f"  {name:<{width}}  {shipped:8.1f}  {walked:8.1f}  {shipped / walked:5.2f}")
    if not args.no_profile:
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(3_000):
            mix()
            pair()
        profiler.disable()
        print("\ncProfile, 3,000 x the mix and the burst pair (5 events), top 20 by own time:")
        pstats.Stats(profiler).sort_stats("tottime").print_stats(20)


if __name__ == "__main__":
    main()
