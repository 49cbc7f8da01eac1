"""Per-invoke overhead of LangChain handlers, every variant side by side in one run.

The same ``prompt | fake chat model | parser`` chain (4 runs, so 4 events per invoke) is
invoked with:

* no handler (the baseline);
* a ``BaseCallbackHandler`` that does nothing (LangChain's own callback dispatch);
* ``posthog.ai.langchain.CallbackHandler`` (a ``posthog.Posthog`` client);
* ``posthog_callbacks.langchain.CallbackHandler`` (a ``PosthogExporter``).

Both recording handlers deliver to the local capture server
(``tests/support/capture_server.py``, run in its own process so its parsing does not share
our GIL): their I/O is real but local. Per invoke, three costs are measured: wall time,
CPU of the caller's thread (``time.thread_time``), and CPU of the whole process
(``time.process_time``: the exporter's / SDK's worker threads share the GIL with the
caller), the final flush included. Rounds alternate between variants; the median round is
reported, with the overhead over "no handler" and the ratios the targets are stated in.

Imports only the installed package's public names.

Usage::

    .venv/bin/python bench/langchain_overhead.py            # ~1 min
    .venv/bin/python bench/langchain_overhead.py --quick    # smoke run
    .venv/bin/python bench/langchain_overhead.py --profile  # cProfile of our handler
    .venv/bin/python bench/langchain_overhead.py --replay   # our callbacks alone, replayed
    .venv/bin/python bench/langchain_overhead.py --against HEAD~1           # A/B in the chain
    .venv/bin/python bench/langchain_overhead.py --replay --against HEAD~1  # A/B replayed

``--replay`` records the callbacks of one invoke and calls our handler's methods with them
(fresh run ids each time) into an exporter whose worker waits for the flush: the thread CPU
of our callback code alone, without LangChain around it. It is much steadier than the
chain on a busy machine, so it suits A/B comparisons of handler changes; the chain costs
about twice as much per callback (LangChain's own code runs between our callbacks and
evicts ours from the CPU caches).

``--against REV`` compares the working tree's package with the one at git revision
``REV`` (extracted to a temporary folder and imported under another name) in the same
process, alternating between them on every invoke, so a busy machine's drift hits both
alike: caller-thread CPU per invoke over no handler in the chain (exporters into memory
whose worker runs after each block of invokes), or with ``--replay`` the replayed
callbacks alone. It prints each side's median and trimmed mean (the middle 80%) and the
ratio; a ratio of 1.00 +- 0.02 is noise on a shared 2-core machine.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import importlib
import pstats
import statistics
import time
import uuid
from collections.abc import Callable
from types import ModuleType
from typing import Any

import against
import posthog
from capture import Server
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.language_models import FakeMessagesListChatModel
from langchain_core.messages import AIMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from posthog.ai.langchain import CallbackHandler as PosthogHandler

from posthog_callbacks import MemorySink, PosthogExporter
from posthog_callbacks.langchain import CallbackHandler

API_KEY = "phc_benchProjectKey0123456789abcdef"
OURS, THEIRS, NOOP, NONE = (
    "posthog_callbacks",
    "posthog.ai.langchain",
    "no-op handler",
    "no handler",
)


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
    """µs per invoke: wall, caller-thread CPU, process CPU (the flush included)."""
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


def interleaved(
    chain: Any,
    variants: dict[str, tuple[list[Any], Callable[[], None]]],
    n: int,
    rounds: int,
) -> dict[str, list[tuple[float, float, float]]]:
    """``run_round`` of every variant (its callbacks and flush), rounds interleaved after a
    warm-up round each: per variant, a (wall, caller CPU, process CPU) per round."""
    for callbacks, flush in variants.values():
        run_round(chain, callbacks, max(50, n // 10), flush)
    results: dict[str, list[tuple[float, float, float]]] = {k: [] for k in variants}
    for _ in range(rounds):
        for name, (callbacks, flush) in variants.items():
            results[name].append(run_round(chain, callbacks, n, flush))
    return results


def profile(chain: Any, handler: CallbackHandler, exporter: PosthogExporter, n: int) -> None:
    """cProfile of the caller's thread with our handler (top 25 by own time)."""
    config: dict[str, Any] = {"callbacks": [handler]}
    prof = cProfile.Profile()
    prof.enable()
    for i in range(n):
        chain.invoke({"question": f"What is the capital of France? #{i}"}, config=config)
    prof.disable()
    exporter.flush(timeout=60)
    stats = pstats.Stats(prof)
    stats.sort_stats("tottime").print_stats(25)


class _Recording(BaseCallbackHandler):
    """Keeps every callback it receives, with its arguments."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    def _keep(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self.calls.append((name, args, kwargs))

    def on_chain_start(self, *args: Any, **kwargs: Any) -> None:
        self._keep("on_chain_start", args, kwargs)

    def on_chain_end(self, *args: Any, **kwargs: Any) -> None:
        self._keep("on_chain_end", args, kwargs)

    def on_chat_model_start(self, *args: Any, **kwargs: Any) -> None:
        self._keep("on_chat_model_start", args, kwargs)

    def on_llm_end(self, *args: Any, **kwargs: Any) -> None:
        self._keep("on_llm_end", args, kwargs)


def record(chain: Any) -> _Recording:
    """The callbacks of one invoke of ``chain``."""
    recording = _Recording()
    chain.invoke({"question": "What is the capital of France?"}, config={"callbacks": [recording]})
    return recording


def fresh_calls(recording: _Recording, handler: Any) -> list[tuple[Any, Any, dict[str, Any]]]:
    """``handler``'s methods with the recorded arguments, run ids new (one invoke)."""
    ids: dict[Any, uuid.UUID] = {}
    calls = []
    for name, args, kwargs in recording.calls:
        kw = dict(kwargs)
        for key in ("run_id", "parent_run_id"):
            if kw.get(key) is not None:
                kw[key] = ids.setdefault(kw[key], uuid.uuid4())
        calls.append((getattr(handler, name), args, kw))
    return calls


def replay(chain: Any, n: int, rounds: int) -> None:
    """Thread CPU of our handler's callbacks alone, replayed (µs per invoke)."""
    recording = record(chain)
    exporter = PosthogExporter(sink=MemorySink(), flush_at=10 * n, flush_interval=3600)
    handler = CallbackHandler(exporter)

    def one_round() -> float:
        prepared = [call for _ in range(n) for call in fresh_calls(recording, handler)]
        gc.collect()
        t0 = time.thread_time()
        for method, args, kw in prepared:
            method(*args, **kw)
        spent = time.thread_time() - t0
        exporter.flush(timeout=60)
        return spent / n * 1e6

    one_round()
    times = sorted(one_round() for _ in range(rounds))
    exporter.shutdown()
    print(
        f"our handler's {len(recording.calls)} callbacks of one invoke, replayed {n} times x "
        f"{rounds} rounds: min {times[0]:.1f}, median {statistics.median(times):.1f} µs of "
        "thread CPU per invoke"
    )


def load_revision(rev: str) -> tuple[ModuleType, ModuleType]:
    """The package at git revision ``rev`` and its ``langchain`` door (``against.py``)."""
    against.load_revision(rev)
    return (
        importlib.import_module(against.PACKAGE_AT_REV),
        importlib.import_module(f"{against.PACKAGE_AT_REV}.langchain"),
    )


def _trimmed_mean(samples: list[int]) -> float:
    ordered = sorted(samples)
    cut = len(ordered) // 10
    return statistics.mean(ordered[cut : len(ordered) - cut])


def _print_ab(rev: str, samples: dict[str, list[int]], base: str | None) -> None:
    """µs per invoke of each side (over ``base`` when given) and the ratio REV -> now."""
    zero = {"median": 0.0, "trimmed mean": 0.0}
    if base is not None:
        zero = {
            "median": statistics.median(samples[base]) / 1000,
            "trimmed mean": _trimmed_mean(samples[base]) / 1000,
        }
    for stat, fn in (("median", statistics.median), ("trimmed mean", _trimmed_mean)):
        old = fn(samples[rev]) / 1000 - zero[stat]
        new = fn(samples["now"]) / 1000 - zero[stat]
        over = " over no handler" if base is not None else ""
        print(
            f"{stat:>12}{over}: {rev} {old:.1f} µs, now {new:.1f} µs per invoke "
            f"(ratio {new / old:.3f})"
        )


def _alternating(
    sides: list[str],
    n: int,
    rounds: int,
    one: Callable[[str, int], None],
    exporters: list[Any],
    prepare: Callable[[], None] | None = None,
) -> dict[str, list[int]]:
    """Thread CPU (ns) of ``one(side, i)`` for every side, the order of the sides reversed
    on every other ``i``; a warm-up round first, then ``rounds`` rounds of ``n`` (each after
    ``prepare()``), the exporters flushed after each round and shut down at the end."""
    samples: dict[str, list[int]] = {side: [] for side in sides}
    clock = time.thread_time_ns
    for r in range(rounds + 1):
        if prepare is not None:
            prepare()
        for i in range(n):
            for side in sides if i % 2 else sides[::-1]:
                t0 = clock()
                one(side, i)
                if r:  # the first round warms up
                    samples[side].append(clock() - t0)
        for exporter in exporters:
            exporter.flush(timeout=60)
    for exporter in exporters:
        exporter.shutdown()
    return samples


def replay_against(chain: Any, rev: str, n: int, rounds: int) -> None:
    """Replayed callbacks, this package vs ``rev``, alternating per invoke (thread CPU)."""
    old_pkg, old_lc = load_revision(rev)
    recording = record(chain)
    exporters = {
        rev: old_pkg.PosthogExporter(
            sink=old_pkg.MemorySink(), flush_at=10 * n, flush_interval=3600
        ),
        "now": PosthogExporter(sink=MemorySink(), flush_at=10 * n, flush_interval=3600),
    }
    handlers = {
        rev: old_lc.CallbackHandler(exporters[rev]),
        "now": CallbackHandler(exporters["now"]),
    }
    prepared: dict[str, list[list[tuple[Any, Any, dict[str, Any]]]]] = {}

    def prepare() -> None:  # fresh run ids for every invoke of the round, before timing
        prepared.update(
            {side: [fresh_calls(recording, h) for _ in range(n)] for side, h in handlers.items()}
        )
        gc.collect()

    def one(side: str, i: int) -> None:
        for method, args, kw in prepared[side][i]:
            method(*args, **kw)

    samples = _alternating([rev, "now"], n, rounds, one, list(exporters.values()), prepare)
    print(
        f"our handler's {len(recording.calls)} callbacks of one invoke replayed, {rev} vs now "
        f"alternating, {n} x {rounds} invokes each (thread CPU):"
    )
    _print_ab(rev, samples, None)


def chain_against(chain: Any, rev: str, n: int, rounds: int) -> None:
    """The chain with no handler, ``rev``'s handler and this one, alternating per invoke."""
    old_pkg, old_lc = load_revision(rev)

    def idle(exporter_class: Any, sink_class: Any) -> Any:  # the worker runs after a block
        return exporter_class(
            sink=sink_class(),
            max_queue_size=10 * n,
            flush_at=10 * n,
            max_batch_size=10 * n,
            flush_interval=3600,
        )

    exporters = {
        rev: idle(old_pkg.PosthogExporter, old_pkg.MemorySink),
        "now": idle(PosthogExporter, MemorySink),
    }
    configs: dict[str, dict[str, Any]] = {
        NONE: {"callbacks": []},
        rev: {"callbacks": [old_lc.CallbackHandler(exporters[rev])]},
        "now": {"callbacks": [CallbackHandler(exporters["now"])]},
    }

    def one(side: str, i: int) -> None:
        chain.invoke({"question": f"What is the capital of France? #{i}"}, config=configs[side])

    samples = _alternating(list(configs), n, rounds, one, list(exporters.values()))
    print(
        f"prompt | fake chat model | parser, {rev} vs now, alternating per invoke, "
        f"{n} x {rounds} invokes each (caller thread CPU):"
    )
    _print_ab(rev, samples, NONE)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--invokes", type=int, default=1000, help="invokes per round")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="200 invokes x 3 rounds")
    parser.add_argument("--profile", action="store_true", help="cProfile our handler instead")
    parser.add_argument(
        "--replay", action="store_true", help="our callbacks alone, replayed (thread CPU)"
    )
    parser.add_argument(
        "--against",
        metavar="REV",
        help="A/B: the package at git revision REV vs the working tree, in one process",
    )
    args = parser.parse_args()
    n, rounds = (200, 3) if args.quick else (args.invokes, args.rounds)

    if args.against:
        if args.replay:
            replay_against(make_chain(), args.against, 200, 6 if args.quick else 30)
        else:
            chain_against(make_chain(), args.against, min(n, 500), 3 if args.quick else 10)
        return
    if args.replay:
        replay(make_chain(), 100, 10 if args.quick else 40)
        return
    server = Server()
    try:
        exporter = PosthogExporter(api_key=API_KEY, host=server.url, max_queue_size=100_000)
        ours = CallbackHandler(exporter)
        chain = make_chain()
        if args.profile:
            run_round(chain, [ours], 200, lambda: None)
            profile(chain, ours, exporter, n)
            exporter.shutdown()
            return
        client = posthog.Posthog(API_KEY, host=server.url, max_queue_size=100_000)
        theirs = PosthogHandler(client)

        def nothing() -> None:
            pass

        def flush_ours() -> None:
            exporter.flush(timeout=60)

        variants: dict[str, tuple[list[Any], Callable[[], None]]] = {
            NONE: ([], nothing),
            NOOP: ([NoopHandler()], nothing),
            THEIRS: ([theirs], client.flush),
            OURS: ([ours], flush_ours),
        }
        results = interleaved(chain, variants, n, rounds)
        exporter.shutdown()
        client.shutdown()
        arrived = server.events()
    finally:
        server.close()

    metrics = ("wall", "caller CPU", "process CPU")
    median = {
        name: [statistics.median(r[i] for r in rows) for i in range(3)]
        for name, rows in results.items()
    }
    over = {name: [m[i] - median[NONE][i] for i in range(3)] for name, m in median.items()}
    expected = 4 * (rounds * n + max(50, n // 10)) * 2
    print(
        f"prompt | fake chat model | parser: {n} invokes x {rounds} rounds (median round), "
        f"4 events per invoke; {arrived} of {expected} events reached the capture server\n"
    )
    print("| variant | wall µs | overhead | caller CPU µs | overhead | process CPU µs | overhead |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name in variants:
        cells = " | ".join(f"{median[name][i]:.0f} | {over[name][i]:+.0f}" for i in range(3))
        print(f"| {name} | {cells} |")

    def ratio(a: str, b: str, i: int) -> str:
        den = over[b][i]
        return f"{over[a][i] / den:.2f}" if den > 0 else "n/a"

    print()
    for i, metric in enumerate(metrics):
        print(
            f"{metric:>11} overhead: ours / posthog.ai.langchain = {ratio(OURS, THEIRS, i)} "
            f"(target <= 0.10); ours / no-op = {ratio(OURS, NOOP, i)} (target <= 3)"
        )


if __name__ == "__main__":
    main()
