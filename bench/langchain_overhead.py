"""Per-invocation overhead of the LangChain handler, all variants in one run.

The same ``prompt | fake chat model | parser`` chain is invoked with:

* no handler (the baseline);
* a handler that does nothing (LangChain's own callback dispatch);
* ``posthog_callbacks.langchain.CallbackHandler`` (exporter -> local capture server);
* ``posthog.ai.langchain.CallbackHandler`` (posthog client -> the same local server).

Both recording handlers deliver to ``tests/capture_server.py`` running in its own process,
so their I/O is real but local. Cost is measured two ways per invoke: wall time on the
caller's thread, and CPU of the whole process (``time.process_time``: includes the
exporter's / SDK's worker threads, which share the GIL with the caller), including the
final flush. Rounds alternate between variants; the median round is reported.

Usage::

    .venv/bin/python bench/langchain_overhead.py            # ~30 s
    .venv/bin/python bench/langchain_overhead.py --quick
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import posthog  # noqa: E402
from exporter_throughput import API_KEY, Server  # noqa: E402
from langchain_core.callbacks import BaseCallbackHandler  # noqa: E402
from langchain_core.language_models import FakeMessagesListChatModel  # noqa: E402
from langchain_core.messages import AIMessage  # noqa: E402
from langchain_core.output_parsers import StrOutputParser  # noqa: E402
from langchain_core.prompts import ChatPromptTemplate  # noqa: E402
from posthog.ai.langchain import CallbackHandler as PosthogHandler  # noqa: E402

from posthog_callbacks import PosthogExporter  # noqa: E402
from posthog_callbacks.langchain import CallbackHandler  # noqa: E402


class NoopHandler(BaseCallbackHandler):
    """Receives every callback and does nothing."""


def make_chain() -> Any:
    prompt = ChatPromptTemplate.from_messages(
        [("system", "You are terse."), ("human", "{question}")]
    )
    model = FakeMessagesListChatModel(
        responses=[
            AIMessage(
                "Paris.",
                usage_metadata={"input_tokens": 21, "output_tokens": 2, "total_tokens": 23},
                response_metadata={"model_name": "fake-1", "finish_reason": "stop"},
            )
        ]
    )
    return prompt | model | StrOutputParser()


def run_round(
    chain: Any, callbacks: list[Any], n: int, flush: Callable[[], None]
) -> tuple[float, float, float]:
    """µs per invoke: wall and CPU on the caller's thread, process CPU incl. the flush."""
    config: dict[str, Any] = {"callbacks": callbacks}
    cpu0 = time.process_time()
    thread0 = time.thread_time()
    t0 = time.perf_counter()
    for i in range(n):
        chain.invoke({"question": f"What is the capital of France? #{i}"}, config=config)
    wall = time.perf_counter() - t0
    caller = time.thread_time() - thread0
    flush()
    cpu = time.process_time() - cpu0
    return wall / n * 1e6, caller / n * 1e6, cpu / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--invokes", type=int, default=1000, help="invokes per round")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    n, rounds = (200, 3) if args.quick else (args.invokes, args.rounds)

    server = Server()
    try:
        exporter = PosthogExporter(api_key=API_KEY, host=server.url, max_queue_size=100_000)
        ours = CallbackHandler(exporter)
        client = posthog.Posthog(API_KEY, host=server.url, max_queue_size=100_000)
        theirs = PosthogHandler(client)

        def nothing() -> None:
            pass

        variants: dict[str, tuple[list[Any], Callable[[], None]]] = {
            "no handler": ([], nothing),
            "no-op handler": ([NoopHandler()], nothing),
            "posthog_callbacks": ([ours], lambda: exporter.flush(timeout=60) and None),
            "posthog.ai.langchain": ([theirs], client.flush),
        }
        chain = make_chain()
        for callbacks, flush in variants.values():  # warm-up
            run_round(chain, callbacks, max(50, n // 10), flush)
        walls: dict[str, list[float]] = {k: [] for k in variants}
        callers: dict[str, list[float]] = {k: [] for k in variants}
        cpus: dict[str, list[float]] = {k: [] for k in variants}
        for _ in range(rounds):
            for name, (callbacks, flush) in variants.items():
                wall, caller, cpu = run_round(chain, callbacks, n, flush)
                walls[name].append(wall)
                callers[name].append(caller)
                cpus[name].append(cpu)
        sent = server.events()
        exporter.shutdown()
        client.shutdown()
    finally:
        server.close()

    wall = {k: statistics.median(v) for k, v in walls.items()}
    caller = {k: statistics.median(v) for k, v in callers.items()}
    cpu = {k: statistics.median(v) for k, v in cpus.items()}
    base_w, base_t, base_c = wall["no handler"], caller["no handler"], cpu["no handler"]
    print(
        f"prompt | fake chat model | parser, {n} invokes x {rounds} rounds (median), "
        f"4 events per invoke; {sent} events reached the local capture server\n"
    )
    print("| variant | wall µs | overhead | caller CPU µs | overhead | process CPU µs | overhead |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name in variants:
        print(
            f"| {name} | {wall[name]:.0f} | {wall[name] - base_w:+.0f} "
            f"| {caller[name]:.0f} | {caller[name] - base_t:+.0f} "
            f"| {cpu[name]:.0f} | {cpu[name] - base_c:+.0f} |"
        )

    def ratio(a: str, b: str, table: dict[str, float], base: float) -> str:
        num, den = table[a] - base, table[b] - base
        return f"{num / den:.2f}" if den > 0 else "n/a (denominator within noise)"

    print()
    for label, table, base in (
        ("wall", wall, base_w),
        ("caller CPU", caller, base_t),
        ("process CPU", cpu, base_c),
    ):
        print(
            f"{label:>11}: ours / posthog.ai.langchain = "
            f"{ratio('posthog_callbacks', 'posthog.ai.langchain', table, base)} "
            f"(target <= 0.1); ours / no-op = "
            f"{ratio('posthog_callbacks', 'no-op handler', table, base)} (target <= 3)"
        )


if __name__ == "__main__":
    main()
