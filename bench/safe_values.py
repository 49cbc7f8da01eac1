"""Cost of safe values: the caller-side snapshot and the worker's serialisation.

Prints microseconds per call (best of several rounds) for:

* a typical chat input (4 messages, one with a content list): ``snapshot`` on the
  caller's thread, ``Serializer.convert`` and ``span_to_event`` on the worker;
* long prose through the secret scan (``scrub``), 12 KB and 120 KB;
* the adversarial shapes of issue 11: a dict holding itself four times, a 2**60-path DAG,
  a 1,000,000-emoji string in an event. Before the bounded snapshot the first one took
  10-25 s on the caller's thread.

Usage::

    .venv/bin/python bench/safe_values.py
"""

from __future__ import annotations

import timeit
from collections.abc import Callable
from typing import Any

from posthog_callbacks.events import EventConfig, span_to_event
from posthog_callbacks.serialize import Serializer, scrub
from posthog_callbacks.spans import FinishedSpan, SpanKind, snapshot

MESSAGES: list[dict[str, Any]] = [
    {"role": "system", "content": "You are a helpful assistant that answers briefly."},
    {"role": "user", "content": "What is the capital of France? Please answer in one word."},
    {"role": "assistant", "content": "Paris."},
    {"role": "user", "content": [{"type": "text", "text": "And of Germany?"}]},
]
PROSE = " ".join(str(m["content"]) for m in MESSAGES[:3])


def best(fn: Callable[[], Any], number: int, rounds: int = 7) -> float:
    """Best time per call in microseconds."""
    return min(timeit.repeat(fn, number=number, repeat=rounds)) / number * 1e6


def self_holding() -> dict[str, Any]:
    d: dict[str, Any] = {}
    for key in "abcd":
        d[key] = d
    return d


def dag(levels: int) -> Any:
    value: Any = ["leaf"]
    for _ in range(levels):
        value = [value, value]
    return value


def main() -> None:
    gen = FinishedSpan(
        "t", "s", "t", SpanKind.GENERATION, "chat", 1.0, 2.0,
        input=MESSAGES, output=[{"role": "assistant", "content": "Berlin."}],
        model="gpt-4o-mini", provider="openai", model_parameters={"temperature": 0.2},
    )  # fmt: skip
    big = FinishedSpan(
        "t", "s", "t", SpanKind.SPAN, "big", 1.0, 2.0, input="\U0001f600" * 1_000_000
    )  # fmt: skip
    shared, deep = self_holding(), dag(60)
    rows = [
        ("snapshot(chat messages)  [caller]", best(lambda: snapshot(MESSAGES), 20_000)),
        ("Serializer.convert(chat messages)", best(lambda: Serializer().convert(MESSAGES), 9999)),
        ("span_to_event(chat generation)", best(lambda: span_to_event(gen), 5_000)),
        ("scrub(12 KB prose)", best(lambda: scrub((PROSE + " ") * 80 + "x"), 200)),
        ("scrub(120 KB prose)", best(lambda: scrub((PROSE + " ") * 800 + "y"), 20)),
        ("snapshot(dict holding itself 4x)  [caller]", best(lambda: snapshot(shared), 20_000)),
        ("snapshot(2**60-path DAG)  [caller]", best(lambda: snapshot(deep), 2_000)),
        ("Serializer().convert(2**60-path DAG)", best(lambda: Serializer().convert(deep), 5, 3)),
        (
            "span_to_event(1,000,000 emoji, 1 MB limit)",
            best(lambda: span_to_event(big, EventConfig(max_event_bytes=1 << 20)), 2, 3),
        ),
    ]  # fmt: skip
    width = max(len(name) for name, _ in rows)
    for name, us in rows:
        print(f"{name:<{width}}  {us:12.1f} us")


if __name__ == "__main__":
    main()
