"""Soak: a million spans through one exporter into a local capture server; memory stays flat.

Each round records:

* a LangChain ``prompt | fake chat model | parser`` invoke through ``CallbackHandler``
  (4 spans);
* a manual trace with a span and a generation, plus a child span that is never ended
  (closed as an error when its trace ends) (4 spans);
* every 10th round, a LangChain run that starts and never ends (a framework that forgot an
  end callback) and a manual trace that is never ended: both stay in their run tables
  until the exporter's TTL sweep closes them as errors.

The capture server (``tests/support/capture_server.py``) runs in its own process, so its memory is
not ours. The producer paces itself on the exporter's queue (it waits while the queue is
more than 80 % full): the soak measures memory, not drops (any drop is printed).

Prints the peak RSS growth over the baseline taken after warm-up (target < 50 MB) and the
open-run table size at the end, after the TTL (target 0).

Usage::

    .venv/bin/python bench/soak.py                 # 1,000,000 spans (a few minutes)
    .venv/bin/python bench/soak.py --spans 20000   # smoke run
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
import uuid
from typing import Any

from capture import Server
from langchain_core.language_models import FakeMessagesListChatModel
from langchain_core.messages import AIMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate

from posthog_callbacks import PosthogExporter, PosthogSink
from posthog_callbacks.langchain import CallbackHandler

TEST_API_KEY = "phc_testProjectKey0123456789abcdefXYZ"

PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_mb() -> float:
    """Resident set size of this process now, in MB."""
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * PAGE / 1e6


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


class Soak:
    """One exporter, one handler, one chain; counts what it recorded, by kind."""

    def __init__(self, url: str, ttl: float) -> None:
        sink = PosthogSink(api_key=TEST_API_KEY, host=url, timeout=10)
        self.exporter = PosthogExporter(
            sink=sink, open_run_ttl=ttl, flush_at=500, flush_interval=1.0
        )
        self.handler = CallbackHandler(self.exporter)
        self.chain = make_chain()
        self.counts = {"langchain": 0, "manual": 0, "never_ended": 0}

    def round(self, i: int) -> None:
        self.chain.invoke(
            {"question": f"What is the capital of France? #{i}"},
            config={"callbacks": [self.handler], "metadata": {"user_id": f"user-{i % 1000}"}},
        )
        self.counts["langchain"] += 4
        with self.exporter.trace("manual", input={"i": i}, distinct_id="soak") as trace:
            with trace.span("retrieve", input=i) as span:
                span.update(output=["doc"])
            with trace.generation(
                "chat",
                model="gpt-4o-mini",
                provider="openai",
                input=[{"role": "user", "content": f"q{i}"}],
            ) as gen:
                gen.update(
                    output=[{"role": "assistant", "content": "a"}],
                    usage={"input_tokens": 3, "output_tokens": 1},
                )
            trace.span("forgotten", input=i)  # closed as an error when the trace ends
        self.counts["manual"] += 3
        self.counts["never_ended"] += 1
        if i % 10 == 0:
            self.handler.on_chain_start({"name": "stuck"}, {"i": i}, run_id=uuid.uuid4())
            self.exporter.trace("never-ended", input={"i": i})
            self.counts["never_ended"] += 2

    def total(self) -> int:
        return sum(self.counts.values())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--spans", type=int, default=1_000_000, help="spans to record")
    parser.add_argument(
        "--ttl",
        type=float,
        default=2.0,
        help="open_run_ttl: seconds before a never-ended run is closed",
    )
    args = parser.parse_args(argv)

    server = Server()
    soak = Soak(server.url, args.ttl)
    exporter = soak.exporter
    try:
        started = time.perf_counter()
        warmup = max(200, min(5000, args.spans // 400))
        i = 0
        while soak.total() < min(args.spans, warmup * 8):
            soak.round(i)
            i += 1
        exporter.flush(timeout=60)
        gc.collect()
        baseline = peak = rss_mb()
        high_water = 0.8 * exporter.max_queue_size
        max_open = 0
        while soak.total() < args.spans:
            soak.round(i)
            i += 1
            if i % 200 == 0:
                peak = max(peak, rss_mb())
                stats = exporter.stats()
                max_open = max(max_open, stats.open_runs)
                while exporter.stats().queued > high_water:
                    time.sleep(0.005)
        recorded_at = time.perf_counter()
        peak = max(peak, rss_mb())
        exporter.flush(timeout=120)
        # Runs that never ended close after the TTL (the sweep runs every TTL/4).
        deadline = time.monotonic() + args.ttl * 3 + 5
        while exporter.stats().open_runs and time.monotonic() < deadline:
            time.sleep(0.1)
        exporter.flush(timeout=60)
        peak = max(peak, rss_mb())
        stats = exporter.stats()
        open_runs = stats.open_runs
        exporter.shutdown()
        elapsed = time.perf_counter() - started
        arrived = server.stats()["events"]
        final = exporter.stats()

        c = soak.counts
        print(
            f"spans recorded: {soak.total()} (langchain {c['langchain']}, manual {c['manual']}"
            f", never ended {c['never_ended']}) in {i} rounds"
        )
        print(
            f"events: recorded {final.recorded}, sent {final.sent}, arrived {arrived}, "
            f"dropped {final.dropped} (queue full {final.dropped_queue_full}, sink error "
            f"{final.dropped_sink_error}, shutdown {final.dropped_shutdown}), "
            f"closed orphans {final.closed_orphans}"
        )
        print(
            f"rss: baseline {baseline:.1f} MB, peak {peak:.1f} MB, "
            f"peak RSS growth {peak - baseline:.1f} MB (target < 50 MB)"
        )
        print(f"open runs: max during the run {max_open}")
        print(f"open-run table size at end: {open_runs} (target 0)")
        print(
            f"elapsed: {elapsed:.1f} s ({soak.total() / (recorded_at - started):.0f} spans/s "
            "recorded)"
        )
        return 0
    finally:
        server.close()


if __name__ == "__main__":
    sys.exit(main())
