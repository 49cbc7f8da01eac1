"""Batches held as encoded bytes against batches of event dicts, interleaved in one run.

``PosthogSink``'s own HTTP path takes events encoded a chunk at a time as the worker
translates them (``PosthogSink.accepts_encoded``), so a batch waiting for a sender or on the
wire is bytes, which the garbage collector never visits. A sink that needs the dicts (a wrapped
``posthog.Posthog`` client, ``capture_exceptions=True``) gets batches of event dicts, as
every sink did before. This benchmark runs both paths into the local capture server,
alternating rounds so a busy machine's drift hits both alike:

* **langchain**: the ``prompt | fake chat model | parser`` chain of
  ``bench/langchain_overhead.py`` (4 events per invoke), our handler into a
  ``PosthogExporter`` with default settings: per invoke, wall time and caller-thread CPU of
  the invokes, process CPU (the final flush included) and time spent in the garbage
  collector (``gc.callbacks``, every thread);
* **burst**: the 80k burst of ``bench/exporter_throughput.py`` (smaller by default): end-to-end
  events/s, process CPU per event (and the worker's and senders' share) and time in the
  garbage collector per event.

Usage::

    .venv/bin/python bench/encoded_batches.py                  # ~5 min
    .venv/bin/python bench/encoded_batches.py --quick          # smoke run
    .venv/bin/python bench/encoded_batches.py --invokes 2000 --rounds 16 --burst-traces 10000
"""

from __future__ import annotations

import argparse
import functools
import gc
import statistics
import time
from typing import Any

import exporter_throughput
import langchain_overhead
from capture import Server

from posthog_callbacks import PosthogExporter, PosthogSink
from posthog_callbacks.langchain import CallbackHandler

PATHS = ("encoded", "dicts")


class DictSink(PosthogSink):
    """``PosthogSink`` taking batches of event dicts, as a sink that needs them does."""

    @property
    def accepts_encoded(self) -> bool:
        return False


class GCTime:
    """Seconds spent in garbage collections since :meth:`reset` (any thread)."""

    def __init__(self) -> None:
        self.total = 0.0
        self._started: dict[int, float] = {}
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        key = info["generation"]
        if phase == "start":
            self._started[key] = time.perf_counter()
        elif key in self._started:
            self.total += time.perf_counter() - self._started.pop(key)

    def reset(self) -> None:
        self.total = 0.0


def exporter(path: str, server: Server) -> PosthogExporter:
    """Default settings; only the sink's path differs."""
    api_key = langchain_overhead.API_KEY
    sink = (PosthogSink if path == "encoded" else DictSink)(api_key=api_key, host=server.url)
    return PosthogExporter(sink=sink)


def flush(exporter: PosthogExporter) -> None:
    exporter.flush(timeout=60)


def langchain(server: Server, invokes: int, rounds: int, gc_time: GCTime) -> None:
    chain = langchain_overhead.make_chain()
    rows: dict[str, list[tuple[float, ...]]] = {p: [] for p in PATHS}
    for i in range(rounds):
        for path in PATHS if i % 2 == 0 else PATHS[::-1]:
            ours = exporter(path, server)
            handler = CallbackHandler(ours)
            gc_time.reset()
            wall, caller, process = langchain_overhead.run_round(
                chain, [handler], invokes, functools.partial(flush, ours)
            )
            rows[path].append((wall, caller, process, gc_time.total / invokes * 1e6))
            ours.shutdown()
    print(f"langchain chain, {invokes} invokes x {rounds} rounds per path (median), µs/invoke:")
    print(f"  {'path':8} {'wall':>7} {'caller':>7} {'process':>8} {'gc':>6}")
    for path in PATHS:
        cols = [statistics.median(r[i] for r in rows[path]) for i in range(4)]
        print(f"  {path:8} {cols[0]:7.0f} {cols[1]:7.0f} {cols[2]:8.0f} {cols[3]:6.1f}")
    # Each round ran both paths back to back: the per-round difference is what drifts least.
    pairs = list(zip(rows["encoded"], rows["dicts"], strict=True))
    diffs = [[e[i] - d[i] for e, d in pairs] for i in range(4)]
    wins = sum(1 for e, d in pairs if e[2] < d[2])
    print(
        "  encoded - dicts, median of the per-round differences: "
        + ", ".join(
            f"{name} {statistics.median(diffs[i]):+.0f}"
            for i, name in enumerate(("wall", "caller", "process", "gc"))
        )
        + f" µs/invoke; encoded took less process CPU in {wins} of {len(pairs)} rounds"
    )


def burst(server: Server, traces: int, rounds: int, gc_time: GCTime) -> None:
    results: dict[str, list[exporter_throughput.Result]] = {p: [] for p in PATHS}
    gc_us: dict[str, list[float]] = {p: [] for p in PATHS}
    for i in range(rounds):
        for path in PATHS if i % 2 == 0 else PATHS[::-1]:
            make = functools.partial(exporter, path, server)
            gc_time.reset()
            result = exporter_throughput.bench_exporter(server, traces, make)
            gc_us[path].append(gc_time.total / result.offered * 1e6)
            if result.arrived != result.offered:
                print(f"  {path}: {result.offered - result.arrived} events did not arrive")
            results[path].append(result)
    print(f"burst, 4 threads x {traces} manual traces x {rounds} rounds per path (median):")
    print(
        f"  {'path':8} {'events/s':>9} {'process µs/event':>17} {'worker':>7} {'senders':>8}"
        f" {'gc':>5}"
    )
    for path in PATHS:
        rs = results[path]
        rate = statistics.median(r.rate for r in rs)
        cpu = statistics.median(r.process_us for r in rs)
        worker = statistics.median(r.worker_us for r in rs)
        senders = statistics.median(r.senders_us for r in rs)
        gc_ = statistics.median(gc_us[path])
        print(f"  {path:8} {rate:9,.0f} {cpu:17.1f} {worker:7.1f} {senders:8.1f} {gc_:5.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--invokes", type=int, default=2000, help="LangChain invokes per round")
    parser.add_argument("--rounds", type=int, default=12, help="LangChain rounds per path")
    parser.add_argument("--burst-traces", type=int, default=5000, help="traces per thread")
    parser.add_argument("--burst-rounds", type=int, default=4, help="bursts per path")
    parser.add_argument("--quick", action="store_true", help="small runs of both")
    args = parser.parse_args()
    if args.quick:
        args.invokes, args.rounds, args.burst_traces, args.burst_rounds = 200, 2, 500, 1
    gc_time = GCTime()
    server = Server()
    try:
        langchain(server, args.invokes, args.rounds, gc_time)
        burst(server, args.burst_traces, args.burst_rounds, gc_time)
    finally:
        server.close()


if __name__ == "__main__":
    main()
