"""Exporter throughput: the 80k burst into a local PostHog capture server, ours and the SDK's.

Runs ``tests/support/capture_server.py`` in a separate process (so its JSON parsing does not
share our GIL), then, in the same run:

* **burst**: 4 threads x 10,000 manual traces (``exporter.trace`` with one
  ``trace.generation``: short chat messages in and out, usage), 80,000 events, into one
  ``PosthogExporter`` with **default settings**; the same 80,000 events through the posthog
  SDK's ``Posthog(...).capture_ai`` with its default settings. Reported: what arrived
  (counted by the server), what was dropped, the end-to-end rate (first record -> last
  event at the server), process CPU per event (callers, worker and senders together:
  ``time.process_time``), the recording threads' CPU per span (``time.thread_time``) and,
  for ours, that CPU split by thread (recording threads, the worker that translates and
  encodes, the senders that compress and post);
* **caller cost**, one thread, no contention: what a front door pays per recorded span
  (build an ``OpenSpan``, ``finish()``, ``submit()``) and the manual API per span;
* **stages**, one thread: translation, ``orjson`` encoding (a chunk at a time as the worker
  does for ``PosthogSink``, and a whole batch at once as for a sink taking event dicts),
  gzip, ``PosthogSink.send_encoded`` all included, and the capture server's own CPU.

Usage::

    .venv/bin/python bench/exporter_throughput.py            # the 80k burst (~1 min)
    .venv/bin/python bench/exporter_throughput.py --quick    # 4 x 2,000 traces
    .venv/bin/python bench/exporter_throughput.py --json out.json
    .venv/bin/python bench/exporter_throughput.py --against HEAD~1   # manual API caller A/B
"""

from __future__ import annotations

import argparse
import gc
import gzip
import importlib.metadata
import json
import logging
import os
import platform
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import against
import orjson
import posthog
from capture import Server

from posthog_callbacks import MemorySink, OpenSpan, PosthogExporter, PosthogSink, SpanKind, Usage
from posthog_callbacks.batching import _ENCODE_CHUNK
from posthog_callbacks.events import _span_to_event_sized
from posthog_callbacks.sinks import EncodedEvents, encode_events

API_KEY = "phc_benchProjectKey0123456789abcdef"
THREADS = 4
SYSTEM = {"role": "system", "content": "You are terse."}
QUESTION = "What is the capital of France?"
ANSWER = "Paris."


@dataclass
class Result:
    name: str
    mode: str
    offered: int
    arrived: int
    dropped: int
    rate: float  # delivered events/s, first record -> last arrival
    caller_us: float  # recording threads' CPU per span
    process_us: float  # CPU of the whole process per event offered
    worker_us: float = float("nan")  # our worker thread's CPU per event offered
    senders_us: float = float("nan")  # our sender threads' CPU per event offered


def thread_cpu(name: str) -> float:
    """CPU seconds of the live threads called ``name`` (Linux: per-thread clocks)."""
    total = 0.0
    for thread in threading.enumerate():
        if thread.name == name and thread.ident is not None:
            try:
                total += time.clock_gettime(time.pthread_getcpuclockid(thread.ident))
            except (AttributeError, OSError):  # no per-thread clocks here
                return float("nan")
    return total


def run_threads(work: Callable[[int], None]) -> tuple[float, float]:
    """Run ``work(thread_index)`` on 4 threads; returns (summed thread CPU s, wall start)."""
    cpu = [0.0] * THREADS
    barrier = threading.Barrier(THREADS + 1)

    def body(i: int) -> None:
        barrier.wait()
        start = time.thread_time()
        work(i)
        cpu[i] = time.thread_time() - start

    threads = [threading.Thread(target=body, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    barrier.wait()
    started = time.perf_counter()
    for t in threads:
        t.join()
    return sum(cpu), started


def manual_trace(exporter: PosthogExporter, user: str) -> None:
    """One burst item: a trace with one generation (2 events)."""
    with exporter.trace("answer", input={"q": QUESTION}, distinct_id=user) as trace:
        with trace.generation(
            "chat",
            model="gpt-4o-mini",
            provider="openai",
            input=[SYSTEM, {"role": "user", "content": QUESTION}],
            model_parameters={"temperature": 0.2, "max_tokens": 256},
        ) as gen:
            gen.update(
                output=[{"role": "assistant", "content": ANSWER}],
                usage={"input_tokens": 21, "output_tokens": 2},
            )
        trace.update(output={"answer": ANSWER})


def bench_exporter(
    server: Server, per_thread: int, make: Callable[[], PosthogExporter] | None = None
) -> Result:
    """The burst into one exporter: default settings, or what ``make`` returns."""
    exporter = make() if make else PosthogExporter(api_key=API_KEY, host=server.url)
    before = server.events()
    process = time.process_time()

    def record(t: int) -> None:
        for _ in range(per_thread):
            manual_trace(exporter, f"user-{t}")

    cpu, started = run_threads(record)
    exporter.flush(timeout=600)
    stats = exporter.stats()
    done = server.wait_for(before + stats.sent, timeout=30)
    process = time.process_time() - process
    worker = thread_cpu("posthog-callbacks-exporter")  # read before shutdown ends them
    senders = thread_cpu("posthog-callbacks-sender")
    exporter.shutdown()
    offered = per_thread * THREADS * 2
    arrived = server.events() - before
    return Result(
        "posthog-callbacks",
        "burst",
        offered,
        arrived,
        stats.dropped,
        arrived / (done - started),
        cpu / offered * 1e6,
        process / offered * 1e6,
        worker / offered * 1e6,
        senders / offered * 1e6,
    )


def sdk_events(trace_id: str, span_id: str, user: str) -> list[tuple[str, dict[str, Any]]]:
    """The same two events as the SDK path would be handed them."""
    common = {"$ai_trace_id": trace_id, "$ai_latency": 0.5, "$ai_lib": "bench"}
    return [
        (
            "$ai_generation",
            {
                **common,
                "$ai_span_id": span_id,
                "$ai_parent_id": trace_id,
                "$ai_span_name": "chat",
                "$ai_model": "gpt-4o-mini",
                "$ai_provider": "openai",
                "$ai_input": [SYSTEM, {"role": "user", "content": QUESTION}],
                "$ai_output_choices": [{"role": "assistant", "content": ANSWER}],
                "$ai_input_tokens": 21,
                "$ai_output_tokens": 2,
                "$ai_model_parameters": {"temperature": 0.2, "max_tokens": 256},
                "$ai_http_status": 200,
            },
        ),
        (
            "$ai_trace",
            {
                **common,
                "$ai_span_name": "answer",
                "$ai_input_state": {"q": QUESTION},
                "$ai_output_state": {"answer": ANSWER},
            },
        ),
    ]


def bench_sdk(server: Server, per_thread: int) -> Result:
    client = posthog.Posthog(API_KEY, host=server.url)  # default settings
    logging.getLogger("posthog").disabled = True  # it logs one line per dropped event
    before = server.events()

    def work(t: int) -> None:
        user = f"user-{t}"
        for _ in range(per_thread):
            trace_id, span_id = str(uuid.uuid4()), str(uuid.uuid4())
            for name, props in sdk_events(trace_id, span_id, user):
                client.capture_ai(name, distinct_id=user, properties=props)

    process = time.process_time()
    cpu, started = run_threads(work)
    client.flush()
    offered = per_thread * THREADS * 2
    done = server.wait_for(before + offered, timeout=5)
    process = time.process_time() - process
    client.shutdown()
    arrived = server.events() - before
    return Result(
        "posthog SDK capture_ai",
        "burst",
        offered,
        arrived,
        offered - arrived,
        arrived / (done - started),
        cpu / offered * 1e6,
        process / offered * 1e6,
    )


def chat_span() -> OpenSpan:
    trace_id = str(uuid.uuid4())
    span = OpenSpan(
        trace_id=trace_id,
        span_id=str(uuid.uuid4()),
        parent_id=trace_id,
        kind=SpanKind.GENERATION,
        name="chat",
        model="gpt-4o-mini",
        provider="openai",
        model_parameters={"temperature": 0.2, "max_tokens": 256},
        input=[SYSTEM, {"role": "user", "content": QUESTION}],
    )
    span.output = [{"role": "assistant", "content": ANSWER}]
    span.usage = Usage(input_tokens=21, output_tokens=2, total_tokens=23)
    return span


def micro(n: int = 20_000) -> dict[str, float]:
    """Single-thread caller costs in us, no contention, nothing exported."""
    logging.getLogger("posthog_callbacks").setLevel(logging.ERROR)  # the queue is discarded
    exporter = PosthogExporter(sink=MemorySink(), flush_at=10 * n, flush_interval=3600)
    spans = [chat_span() for _ in range(n)]  # ids come from the framework: not timed
    out: dict[str, float] = {}
    start = time.thread_time()
    for span in spans:
        exporter.submit(span.finish())
    out["front door: finish() + submit() per span"] = (time.thread_time() - start) / n * 1e6
    start = time.thread_time()
    for _ in range(n // 2):
        manual_trace(exporter, "u")
    out["manual API per span (trace + generation)"] = (time.thread_time() - start) / n * 1e6
    exporter.shutdown(timeout=0.1)
    return out


def manual_against(rev: str, n: int = 2_000, rounds: int = 25) -> None:
    """The manual API's caller cost per trace (``manual_trace``, nothing exported): the
    package at git revision ``rev`` against the working tree's, rounds interleaved in one
    process (which side goes first alternates), thread CPU."""
    against.load_revision(rev)
    old = importlib.import_module(against.PACKAGE_AT_REV)
    logging.getLogger("posthog_callbacks").setLevel(logging.ERROR)  # queues are discarded
    logging.getLogger(against.PACKAGE_AT_REV).setLevel(logging.ERROR)
    exporters = {
        side: pkg.PosthogExporter(
            sink=pkg.MemorySink(), flush_at=10**7, flush_interval=3600, max_queue_size=10**7
        )
        for side, pkg in ((rev, old), ("now", sys.modules["posthog_callbacks"]))
    }
    times: dict[str, list[float]] = {side: [] for side in exporters}
    for i in range(rounds):
        for side in list(exporters)[:: 1 if i % 2 else -1]:
            exporter = exporters[side]
            gc.collect()
            start = time.thread_time()
            for _ in range(n):
                manual_trace(exporter, "u")
            times[side].append((time.thread_time() - start) / n * 1e6)
            batcher = exporter._batcher  # nothing is exported: the queue starts empty again
            batcher._queue.clear()
            batcher._sizes.clear()
            batcher._queued_bytes = 0
    for exporter in exporters.values():
        exporter.shutdown(timeout=0.1)
    diffs = [new - old_ for new, old_ in zip(times["now"], times[rev], strict=True)]
    print(
        f"manual API, trace + generation, {n} x {rounds} rounds per side: {rev} "
        f"{statistics.median(times[rev]):.2f}, now {statistics.median(times['now']):.2f} µs "
        f"per trace (median); median of the per-round differences {statistics.median(diffs):+.2f}"
        f" µs, now faster in {sum(d < 0 for d in diffs)} of {rounds} rounds"
    )


def stages(server: Server, n: int = 10_000) -> dict[str, float]:
    """CPU per event of each stage on one thread (us; best of 3 rounds)."""
    exporter = PosthogExporter(sink=MemorySink(), flush_at=10 * n, flush_interval=3600)
    spans = [chat_span().finish() for _ in range(n)]
    config = exporter._config
    batches = [spans[i : i + 1000] for i in range(0, n, 1000)]

    def best(fn: Callable[[], Any]) -> float:
        times = []
        for _ in range(3):
            start = time.thread_time()
            fn()
            times.append(time.thread_time() - start)
        return min(times) / n * 1e6

    out: dict[str, float] = {}
    events = [[_span_to_event_sized(s, config)[0] for s in b] for b in batches]
    out["translate span -> event (worker)"] = best(
        lambda: [[_span_to_event_sized(s, config)[0] for s in b] for b in batches]
    )

    def chunked(batch: list[dict[str, Any]]) -> EncodedEvents:
        encoded = EncodedEvents()  # as the worker encodes for PosthogSink
        for i in range(0, len(batch), _ENCODE_CHUNK):
            encoded.add(encode_events(batch[i : i + _ENCODE_CHUNK]))
        return encoded

    def encode_chunks() -> None:
        for batch in events:  # one batch alive at a time, as on the worker
            encoded = chunked(batch)
            del encoded

    def encode_whole() -> None:
        for batch in events:
            body = orjson.dumps(batch)
            del body

    out["orjson encode, a chunk at a time (worker)"] = best(encode_chunks)
    out["orjson encode, whole batch (a sink taking dicts)"] = best(encode_whole)
    bodies = [orjson.dumps(b) for b in events]
    encoded = [chunked(b) for b in events]
    for level in (1, 6, 9):

        def compress(level: int = level) -> list[bytes]:
            return [gzip.compress(b, compresslevel=level, mtime=0) for b in bodies]

        out[f"gzip level {level}{' (ours)' if level == 1 else ''}"] = best(compress)
    sink = PosthogSink(api_key=API_KEY, host=server.url)
    before = server.stats()
    out["PosthogSink.send_encoded, all included (sender)"] = best(
        lambda: [sink.send_encoded(e) for e in encoded]
    )
    after = server.stats()
    out["capture server CPU (other process)"] = (after["busy_us"] - before["busy_us"]) / max(
        1, after["events"] - before["events"]
    )
    sink.close()
    exporter.shutdown(timeout=0.1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--traces", type=int, default=10_000, help="traces per thread")
    parser.add_argument("--quick", action="store_true", help="4 x 2,000 traces (smoke test)")
    parser.add_argument("--skip-sdk", action="store_true", help="do not measure the SDK path")
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    parser.add_argument(
        "--against",
        metavar="REV",
        help="only the manual API's caller cost: the package at git revision REV vs the "
        "working tree, interleaved",
    )
    args = parser.parse_args()
    if args.against:
        manual_against(args.against)
        return
    per_thread = 2_000 if args.quick else args.traces

    sdk_version = importlib.metadata.version("posthog")
    print(
        f"# {platform.python_implementation()} {platform.python_version()}, "
        f"{os.cpu_count()} CPUs, posthog {sdk_version}, load average before: "
        f"{os.getloadavg()[0]:.2f}"
    )
    results: list[Result] = []
    server = Server()
    try:
        results.append(bench_exporter(server, per_thread))
        if not args.skip_sdk:
            results.append(bench_sdk(server, per_thread))
        server_stats = server.stats()
        stage_costs = stages(server)
    finally:
        server.close()
    costs = micro()

    print(
        f"\n{'path':<24} {'run':<8} {'offered':>8} {'arrived':>8} {'dropped':>8} "
        f"{'events/s':>9} {'caller us/span':>15} {'process us/event':>17}"
    )
    for r in results:
        print(
            f"{r.name:<24} {r.mode:<8} {r.offered:>8} {r.arrived:>8} {r.dropped:>8} "
            f"{r.rate:>9,.0f} {r.caller_us:>15.1f} {r.process_us:>17.1f}"
        )
    ours = results[0]
    print(
        f"\nour process CPU per event by thread (us): recording threads {ours.caller_us:.1f}, "
        f"worker (translation, encoding) {ours.worker_us:.1f}, senders (gzip, HTTP) "
        f"{ours.senders_us:.1f}"
    )
    print(
        f"\ntargets: arrives whole {ours.arrived == ours.offered}; "
        f">= 20,000 events/s: {ours.rate:,.0f}; <= 50 us process CPU/event: "
        f"{ours.process_us:.1f}; caller <= 20 us/span (one thread): "
        f"{costs['front door: finish() + submit() per span']:.1f}"
    )
    if len(results) > 1:
        sdk = results[1]
        print(
            f"ours / SDK: events/s {ours.rate / sdk.rate:.2f}x, process CPU/event "
            f"{ours.process_us / sdk.process_us:.2f}x, caller CPU/span "
            f"{ours.caller_us / sdk.caller_us:.2f}x"
        )
    print(f"\nserver: {server_stats}; load average after: {os.getloadavg()[0]:.2f}")
    print("\nsingle-thread caller costs (us):")
    for name, value in costs.items():
        print(f"  {name:<45} {value:6.1f}")
    print("\nCPU per event by stage, one thread, no contention (us):")
    for name, value in stage_costs.items():
        print(f"  {name:<45} {value:6.1f}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "results": [asdict(r) for r in results],
                    "micro": costs,
                    "stages": stage_costs,
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
