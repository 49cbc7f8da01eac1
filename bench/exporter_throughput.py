"""Exporter throughput: events/s from 4 threads into a local PostHog capture server.

Runs ``tests/capture_server.py`` in a separate process (so its JSON parsing does not share
our GIL), then, for ``PosthogExporter`` and for the posthog SDK's own
``Posthog(...).capture_ai`` path, in the same run:

* **caller cost**: CPU time (``time.thread_time``) of the 4 recording threads per span;
* **paced runs**: 4 threads offering ``--rates`` events/s between them for ``--duration``
  seconds; what arrived at the server (counted there), what was dropped, the delivered rate;
* **burst**: ``--events`` spans as fast as 4 threads can record them, queue large enough
  to hold them all; the end-to-end drain rate (first record -> last event at the server).

A "recorded span" is what a handler does per run: build an ``OpenSpan`` (a chat model call
with two short messages, usage and parameters), ``finish()`` it and ``exporter.submit()`` it.
Run ids are pre-generated (the frameworks hand them to us; ``uuid4()`` alone costs ~7 us
on these sandboxed machines).

Usage::

    .venv/bin/python bench/exporter_throughput.py            # full run (~1 min)
    .venv/bin/python bench/exporter_throughput.py --quick    # smaller, for a smoke test
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import posthog  # noqa: E402

from posthog_callbacks import OpenSpan, PosthogExporter, SpanKind, Usage  # noqa: E402

API_KEY = "phc_benchProjectKey0123456789abcdef"
THREADS = 4


class Server:
    """The capture server in its own process."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "tests" / "support" / "capture_server.py")],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().split()
        assert line and line[0] == "URL", line
        self.url = line[1]

    def stats(self) -> dict[str, int]:
        with urllib.request.urlopen(self.url + "/_stats", timeout=5) as res:
            return dict(json.load(res))

    def events(self) -> int:
        return self.stats()["events"]

    def wait_for(self, total: int, timeout: float) -> float:
        """Wait until ``total`` events arrived in all; returns when (perf_counter)."""
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            if self.events() >= total:
                return time.perf_counter()
            time.sleep(0.005)
        return time.perf_counter()

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


@dataclass
class Result:
    name: str
    mode: str
    offered: int
    arrived: int
    dropped: int
    rate: float  # delivered events/s
    caller_us: float  # caller-thread CPU per span
    process_us: float  # CPU of the whole process (callers + worker + senders) per event


def new_ids(n: int) -> tuple[list[str], list[str]]:
    """Trace and span ids (lists of str: not tracked by the garbage collector)."""
    return [str(uuid.uuid4()) for _ in range(n)], [str(uuid.uuid4()) for _ in range(n)]


def record_span(exporter: PosthogExporter, trace_id: str, span_id: str) -> None:
    """What a handler does for one chat-model run."""
    span = OpenSpan(
        trace_id=trace_id,
        span_id=span_id,
        parent_id=trace_id,
        kind=SpanKind.GENERATION,
        name="ChatOpenAI",
        model="gpt-4o-mini",
        provider="openai",
        model_parameters={"temperature": 0.2, "max_tokens": 256},
        input=[
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "What is the capital of France?"},
        ],
    )
    span.output = [{"role": "assistant", "content": "Paris."}]
    span.usage = Usage(input_tokens=21, output_tokens=2, total_tokens=23)
    span.stop_reason = "stop"
    exporter.submit(span.finish())


def sdk_properties(trace_id: str, span_id: str) -> dict[str, Any]:
    """The properties of the same event, as the SDK path would be handed them."""
    return {
        "$ai_trace_id": trace_id,
        "$ai_span_id": span_id,
        "$ai_parent_id": trace_id,
        "$ai_span_name": "ChatOpenAI",
        "$ai_model": "gpt-4o-mini",
        "$ai_provider": "openai",
        "$ai_input": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "What is the capital of France?"},
        ],
        "$ai_output_choices": [{"role": "assistant", "content": "Paris."}],
        "$ai_input_tokens": 21,
        "$ai_output_tokens": 2,
        "$ai_latency": 0.5,
        "$ai_model_parameters": {"temperature": 0.2, "max_tokens": 256},
        "$ai_http_status": 200,
        "$ai_lib": "bench",
        "$process_person_profile": False,
    }


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


def paced(
    n_per_thread: int, rate_per_thread: float, one: Callable[[int, int], None]
) -> Callable[[int], None]:
    """A thread body offering ``rate_per_thread`` calls/s (sleeping between small bursts)."""
    chunk = 50

    def work(t: int) -> None:
        start = time.perf_counter()
        for i in range(n_per_thread):
            one(t, i)
            if i % chunk == chunk - 1:
                ahead = start + (i + 1) / rate_per_thread - time.perf_counter()
                if ahead > 0:
                    time.sleep(ahead)

    return work


def flat_out(n_per_thread: int, one: Callable[[int, int], None]) -> Callable[[int], None]:
    def work(t: int) -> None:
        for i in range(n_per_thread):
            one(t, i)

    return work


def bench_exporter(
    server: Server, mode: str, total: int, rate: float | None, what_if: bool = False
) -> Result:
    per_thread = total // THREADS
    ids = [new_ids(per_thread) for _ in range(THREADS)]
    kwargs: dict[str, Any] = {}
    if rate is None:  # burst: a queue that holds everything, to measure the drain rate
        kwargs["max_queue_size"] = total + 1
    if what_if:
        from posthog_callbacks import PosthogSink

        kwargs["sink"] = PosthogSink(api_key=API_KEY, host=server.url, post=direct_post)
    else:
        kwargs.update(api_key=API_KEY, host=server.url)
    exporter = PosthogExporter(**kwargs)
    before = server.events()

    def one(t: int, i: int) -> None:
        record_span(exporter, ids[t][0][i], ids[t][1][i])

    body = flat_out(per_thread, one) if rate is None else paced(per_thread, rate / THREADS, one)
    process = time.process_time()
    cpu, started = run_threads(body)
    exporter.flush(timeout=120)
    process = time.process_time() - process
    stats = exporter.stats()
    done = server.wait_for(before + stats.sent, timeout=10)
    exporter.shutdown()
    arrived = server.events() - before
    name = "what-if: own encode" if what_if else "posthog-callbacks"
    return Result(
        name,
        mode,
        per_thread * THREADS,
        arrived,
        stats.dropped,
        arrived / (done - started),
        cpu / (per_thread * THREADS) * 1e6,
        process / max(1, arrived) * 1e6,
    )


def direct_post(
    api_key: str,
    host: str | None = None,
    gzip: bool = True,
    timeout: float = 15,
    path: str = "/batch/",
    batch: Any = None,
    **_: Any,
) -> Any:
    """WHAT-IF, not the library's path: ``batch_post`` without the SDK's JSON walk and gzip 9.

    Same request (URL, headers, JSON body, gzip) through the SDK's pooled session and its
    response handling; the body is encoded with plain ``json.dumps`` (events are already
    JSON-safe with finite floats) and gzip level 6. Measures what the SDK's encoding costs.
    """
    import gzip as gz
    from datetime import datetime, timezone

    from posthog import request as sdk

    body = json.dumps(
        {"batch": batch, "sent_at": datetime.now(tz=timezone.utc).isoformat(), "api_key": api_key},
        allow_nan=False,
    ).encode()
    res = sdk._get_session().post(
        (host or "").rstrip("/") + path,
        data=gz.compress(body, compresslevel=6),
        timeout=timeout,
        headers={
            "Content-Type": "application/json",
            "Content-Encoding": "gzip",
            "User-Agent": sdk.USER_AGENT,
        },
    )
    return sdk._process_response(res, success_message="ok", return_json=False)


def bench_sdk(server: Server, mode: str, total: int, rate: float | None) -> Result:
    per_thread = total // THREADS
    ids = [new_ids(per_thread) for _ in range(THREADS)]
    # Burst: a queue that holds everything, as for the exporter; paced: the SDK's defaults.
    client = posthog.Posthog(
        API_KEY, host=server.url, **({"max_queue_size": total + 1} if rate is None else {})
    )
    before = server.events()

    def one(t: int, i: int) -> None:
        trace_id, span_id = ids[t][0][i], ids[t][1][i]
        client.capture_ai(
            "$ai_generation", distinct_id=trace_id, properties=sdk_properties(trace_id, span_id)
        )

    body = flat_out(per_thread, one) if rate is None else paced(per_thread, rate / THREADS, one)
    process = time.process_time()
    cpu, started = run_threads(body)
    client.flush()
    process = time.process_time() - process
    offered = per_thread * THREADS
    done = server.wait_for(before + offered, timeout=3)
    client.shutdown()
    arrived = server.events() - before
    return Result(
        "posthog SDK capture_ai",
        mode,
        offered,
        arrived,
        offered - arrived,
        arrived / (done - started),
        cpu / offered * 1e6,
        process / max(1, arrived) * 1e6,
    )


def micro(n: int = 20_000) -> dict[str, float]:
    """Single-thread caller costs in us, no contention."""
    from posthog_callbacks import MemorySink

    exporter = PosthogExporter(
        sink=MemorySink(), max_queue_size=10 * n, flush_at=10 * n, flush_interval=3600
    )
    trace_ids, span_ids = new_ids(n)
    out: dict[str, float] = {}
    start = time.thread_time()
    for trace_id, span_id in zip(trace_ids, span_ids, strict=True):
        record_span(exporter, trace_id, span_id)
    out["record a span (build + finish + submit)"] = (time.thread_time() - start) / n * 1e6
    span = OpenSpan(trace_id="t", span_id="s", parent_id="t", kind=SpanKind.SPAN, name="x").finish()
    start = time.thread_time()
    for _ in range(n):
        exporter.submit(span)
    out["exporter.submit(span) alone"] = (time.thread_time() - start) / n * 1e6
    start = time.thread_time()
    for _ in range(n // 2):
        with (
            exporter.trace("t") as trace,
            trace.generation(
                "g",
                model="gpt-4o-mini",
                provider="openai",
                input=[{"role": "user", "content": "hi"}],
            ) as gen,
        ):
            gen.update(
                output=[{"role": "assistant", "content": "yo"}],
                usage={"input_tokens": 1, "output_tokens": 1},
            )
    out["manual API, per span (trace + generation)"] = (time.thread_time() - start) / n * 1e6
    start = time.thread_time()
    for _ in range(n):
        str(uuid.uuid4())
    out["str(uuid.uuid4()) (for reference)"] = (time.thread_time() - start) / n * 1e6
    quiet = logging.getLogger("posthog_callbacks")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # only the recording was measured: the queue is discarded
    exporter.shutdown(timeout=0.1)
    quiet.setLevel(level)
    return out


def breakdown(server: Server, n: int = 10_000) -> dict[str, float]:
    """CPU per event of each stage, one thread at a time (us; min of 3 rounds).

    The stages the exporter runs on its worker and sender threads, the posthog SDK's
    ``batch_post`` pieces (its JSON encoding and gzip), and, for comparison, plain
    ``json.dumps`` and gzip at lower levels. ``server`` is the capture server's own CPU.
    """
    import gzip
    import io

    from posthog.request import DatetimeSerializer

    from posthog_callbacks import MemorySink
    from posthog_callbacks.events import _span_to_event_sized
    from posthog_callbacks.sinks import PosthogSink

    exporter = PosthogExporter(
        sink=MemorySink(), max_queue_size=10 * n, flush_at=10 * n, flush_interval=3600
    )
    trace_ids, span_ids = new_ids(n)
    spans = []
    for trace_id, span_id in zip(trace_ids, span_ids, strict=True):
        span = OpenSpan(
            trace_id=trace_id,
            span_id=span_id,
            parent_id=trace_id,
            kind=SpanKind.GENERATION,
            name="ChatOpenAI",
            model="gpt-4o-mini",
            provider="openai",
            model_parameters={"temperature": 0.2, "max_tokens": 256},
            input=[
                {"role": "system", "content": "You are terse."},
                {"role": "user", "content": "What is the capital of France?"},
            ],
        )
        span.output = [{"role": "assistant", "content": "Paris."}]
        span.usage = Usage(input_tokens=21, output_tokens=2, total_tokens=23)
        span.stop_reason = "stop"
        spans.append(span.finish())
    cfg = exporter._config
    batches = [spans[i : i + 1000] for i in range(0, n, 1000)]

    def best(fn: Callable[[], Any]) -> float:
        times = []
        for _ in range(3):
            start = time.thread_time()
            fn()
            times.append(time.thread_time() - start)
        return min(times) / n * 1e6

    out: dict[str, float] = {}
    events = [[_span_to_event_sized(s, cfg)[0] for s in b] for b in batches]
    out["translate (worker)"] = best(
        lambda: [[_span_to_event_sized(s, cfg)[0] for s in b] for b in batches]
    )
    body = {"api_key": API_KEY, "sent_at": "2024-01-01T00:00:00+00:00"}
    out["SDK JSON encode (DatetimeSerializer)"] = best(
        lambda: [json.dumps({**body, "batch": b}, cls=DatetimeSerializer) for b in events]
    )
    out["plain json.dumps (for comparison)"] = best(
        lambda: [json.dumps({**body, "batch": b}) for b in events]
    )
    encoded = [json.dumps({**body, "batch": b}).encode() for b in events]

    def gz(level: int) -> None:
        for data in encoded:
            buf = io.BytesIO()
            with gzip.GzipFile(fileobj=buf, mode="w", compresslevel=level) as f:
                f.write(data)

    out["SDK gzip (level 9, releases the GIL)"] = best(lambda: gz(9))
    out["gzip level 6 (for comparison)"] = best(lambda: gz(6))
    out["gzip level 1 (for comparison)"] = best(lambda: gz(1))
    sink = PosthogSink(api_key=API_KEY, host=server.url)
    before = server.stats()
    out["PosthogSink.send, all included (sender)"] = best(lambda: [sink.send(b) for b in events])
    after = server.stats()
    out["capture server CPU (other process)"] = (after["busy_us"] - before["busy_us"]) / (
        after["events"] - before["events"]
    )
    quiet = logging.getLogger("posthog_callbacks")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    exporter.shutdown(timeout=0.1)
    quiet.setLevel(level)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--rates",
        default="5000,10000,15000",
        help="offered events/s (all threads together) for the paced runs",
    )
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per paced run")
    parser.add_argument("--events", type=int, default=40_000, help="events in the burst run")
    parser.add_argument("--quick", action="store_true", help="small runs (smoke test)")
    parser.add_argument("--skip-sdk", action="store_true", help="do not measure the SDK path")
    parser.add_argument(
        "--what-if",
        action="store_true",
        help="also run the exporter with direct_post (own JSON encoding, "
        "gzip 6) instead of the SDK's batch_post, to price the SDK path",
    )
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    args = parser.parse_args()
    if args.quick:
        args.rates, args.duration, args.events = "10000", 1.0, 8000
    rates = [float(r) for r in args.rates.split(",") if r]

    print(
        f"# {platform.python_implementation()} {platform.python_version()}, "
        f"{os.cpu_count()} CPUs, posthog {posthog.VERSION}, load average before: "
        f"{os.getloadavg()[0]:.2f}"
    )
    results: list[Result] = []
    server = Server()
    try:
        for rate in rates:
            total = int(rate * args.duration) // THREADS * THREADS
            results.append(bench_exporter(server, f"paced {rate:,.0f}/s", total, rate))
            if args.what_if:
                results.append(
                    bench_exporter(server, f"paced {rate:,.0f}/s", total, rate, what_if=True)
                )
            if not args.skip_sdk:
                results.append(bench_sdk(server, f"paced {rate:,.0f}/s", total, rate))
        results.append(bench_exporter(server, "burst", args.events, None))
        if args.what_if:
            results.append(bench_exporter(server, "burst", args.events, None, what_if=True))
        if not args.skip_sdk:
            results.append(bench_sdk(server, "burst", args.events, None))
        server_stats = server.stats()
        stages = breakdown(server)
    finally:
        server.close()

    print(
        f"\n{'path':<24} {'run':<16} {'offered':>8} {'arrived':>8} {'dropped':>8} "
        f"{'events/s':>9} {'caller us/span':>15} {'process us/event':>17}"
    )
    for r in results:
        print(
            f"{r.name:<24} {r.mode:<16} {r.offered:>8} {r.arrived:>8} {r.dropped:>8} "
            f"{r.rate:>9,.0f} {r.caller_us:>15.1f} {r.process_us:>17.1f}"
        )
    print(f"\nserver: {server_stats}; load average after: {os.getloadavg()[0]:.2f}")
    costs = micro()
    print("\nsingle-thread caller costs (us):")
    for name, value in costs.items():
        print(f"  {name:<45} {value:6.1f}")
    print("\nCPU per event by stage, one thread, no contention (us):")
    for name, value in stages.items():
        print(f"  {name:<45} {value:6.1f}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {"results": [r.__dict__ for r in results], "micro": costs, "stages": stages},
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
