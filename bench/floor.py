"""The floor: the least an in-process exporter can cost, beside ours, in one run.

A **minimal exporter** does only what any exporter of these runs must do, and nothing of
what ours does besides:

* LangChain: a ``BaseCallbackHandler`` whose start callbacks put ``(start time, parent,
  name, inputs)`` in a dict under the run id and whose end callbacks pop it and queue the
  run with its output. No copy of inputs (the user may mutate them before they are
  encoded), no conversion of LangChain objects on the caller, no model, provider or usage
  extraction, no sampling, privacy mode, run budgets, TTLs, metadata or tags.
* LlamaIndex: a span handler and an event handler installed like ``instrument()``'s. Every
  dispatcher span goes in a dict at ``span_enter`` and out at ``span_exit``; a root span
  and the end events of the embedding, the retrieval, the completion and the synthesis
  are queued: 5 events a query, as ours. No telling visible spans from transparent ones
  by their class and method, no model, usage or node extraction, no parent linking beyond
  the dispatcher's ids.
* Both: one worker thread turns the queued runs into ``$ai_span`` event dicts (a random
  uuid, drawn without a system call, and the start time: the capture API requires them),
  encodes a batch with ``orjson`` (a framework object becomes its class name), compresses
  it with gzip level 1 and posts it to the local capture server's AI endpoint with
  ``requests`` (our transport's own path, minus retries). No secret scrubbing, size
  bounds or base64 stripping.

Measured side by side with no handler, the no-op handlers and ours (rounds interleaved,
median round, as in ``bench/langchain_overhead.py`` and ``bench/llama_index_overhead.py``;
the worker's and the senders' CPU included in "process"), so the targets can be read
against what no Python exporter gets below: LangChain "<= 3x the no-op handler" and
LlamaIndex "<= 1.10x no instrumentation".

Usage::

    .venv/bin/python bench/floor.py            # ~3 min
    .venv/bin/python bench/floor.py --quick    # smoke run
"""

from __future__ import annotations

import argparse
import collections
import gzip
import random
import statistics
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import orjson
import requests
from capture import Server
from langchain_core.callbacks import BaseCallbackHandler
from langchain_overhead import API_KEY, NoopHandler, interleaved, make_chain
from llama_index_overhead import NoOpHandlers, make_engine, run

from posthog_callbacks import PosthogExporter
from posthog_callbacks.langchain import CallbackHandler
from posthog_callbacks.llama_index import instrument

BATCH = 1000
# uuid4() reads os.urandom: a system call per event that lets the GIL go and back (a
# context switch with the caller each time); a Mersenne Twister draw does not.
_random_bits = random.Random().getrandbits
# With the root span, 5 events a query, as many as instrument() exports for it.
SHIPPED_EVENTS = frozenset(
    {"EmbeddingEndEvent", "RetrievalEndEvent", "LLMCompletionEndEvent", "SynthesizeEndEvent"}
)


def _plain(value: Any) -> str:
    """orjson's fallback for framework objects: their class name (the cheapest there is;
    ours converts messages, responses and nodes to their content)."""
    return type(value).__name__


class MinimalShipper:
    """A queue and one worker: event dicts, orjson, gzip level 1, one POST per batch."""

    def __init__(self, host: str) -> None:
        self.url = host + "/i/v0/ai/batch/"
        self.session = requests.Session()
        self.queue: collections.deque[tuple[Any, ...]] = collections.deque()
        self.wake = threading.Event()
        self.idle = threading.Condition()
        self.busy = False
        self.sent = 0
        self.rejected = 0
        threading.Thread(target=self._run, daemon=True, name="minimal-exporter").start()

    def add(self, run: tuple[Any, ...]) -> None:
        self.queue.append(run)
        if len(self.queue) >= BATCH:
            self.wake.set()

    def flush(self) -> None:
        with self.idle:
            self.wake.set()
            while self.queue or self.busy:
                self.idle.wait(0.01)
                self.wake.set()

    def _run(self) -> None:
        while True:
            self.wake.wait(0.5)
            self.wake.clear()
            with self.idle:
                self.busy = True
            try:
                while self.queue:
                    self._ship([self.queue.popleft() for _ in range(min(BATCH, len(self.queue)))])
            finally:
                with self.idle:
                    self.busy = False
                    self.idle.notify_all()

    def _ship(self, runs: list[tuple[Any, ...]]) -> None:
        events = [
            {
                "event": "$ai_span",
                "distinct_id": str(trace),
                "timestamp": datetime.fromtimestamp(start, timezone.utc),
                "uuid": uuid.UUID(int=_random_bits(128)),
                "properties": {
                    "$ai_trace_id": str(trace),
                    "$ai_span_id": str(span),
                    "$ai_parent_id": None if parent is None else str(parent),
                    "$ai_span_name": name,
                    "$ai_latency": end - start,
                    "$ai_input_state": inputs,
                    "$ai_output_state": output,
                },
            }
            for trace, span, parent, name, start, end, inputs, output in runs
        ]
        body = b'{"api_key":"%s","batch":%s}' % (
            API_KEY.encode(),
            orjson.dumps(events, default=_plain),
        )
        response = self.session.post(
            self.url,
            data=gzip.compress(body, compresslevel=1, mtime=0),
            headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
            timeout=10,
        )
        if response.status_code == 200:
            self.sent += len(events)
        else:
            self.rejected += len(events)
        response.close()


class MinimalLangChain(BaseCallbackHandler):
    """Start and end of every chain and model run, nothing else."""

    run_inline = True

    def __init__(self, shipper: MinimalShipper) -> None:
        self.runs: dict[Any, tuple[Any, ...]] = {}
        self.add = shipper.add

    def on_chain_start(
        self, serialized: Any, inputs: Any, *, run_id: Any, parent_run_id: Any = None, **kw: Any
    ) -> None:
        self.runs[run_id] = (time.time(), parent_run_id, kw.get("name"), inputs)

    def on_chat_model_start(
        self, serialized: Any, messages: Any, *, run_id: Any, parent_run_id: Any = None, **kw: Any
    ) -> None:
        self.runs[run_id] = (time.time(), parent_run_id, kw.get("name"), messages)

    def on_chain_end(self, outputs: Any, *, run_id: Any, **kw: Any) -> None:
        self._end(run_id, outputs)

    def on_llm_end(self, response: Any, *, run_id: Any, **kw: Any) -> None:
        self._end(run_id, response)

    def _end(self, run_id: Any, output: Any) -> None:
        run = self.runs.pop(run_id, None)
        if run is not None:
            start, parent, name, inputs = run
            # the trace id: the root's run id (a parent of a parent is not looked up)
            self.add((parent or run_id, run_id, parent, name, start, time.time(), inputs, output))


class MinimalLlamaIndex:
    """Every dispatcher span and event queued as it comes (installed like instrument())."""

    def __init__(self, shipper: MinimalShipper) -> None:
        self.open: dict[str, tuple[float, Any, Any]] = {}
        add = shipper.add
        handlers = NoOpHandlers()

        def span_enter(
            id_: str, bound_args: Any, instance: Any = None, parent_id: Any = None, **kw: Any
        ) -> None:
            self.open[id_] = (time.time(), parent_id, bound_args.arguments)

        def span_exit(id_: str, bound_args: Any, result: Any = None, **kw: Any) -> None:
            run = self.open.pop(id_, None)
            if run is not None and run[1] is None:  # a root
                start, _, inputs = run
                add((id_, id_, None, id_, start, time.time(), inputs, result))

        def span_drop(id_: str, bound_args: Any, err: Any = None, **kw: Any) -> None:
            run = self.open.pop(id_, None)
            if run is not None:
                start, parent, inputs = run
                add((parent or id_, id_, parent, id_, start, time.time(), inputs, repr(err)))

        def handle(event: Any, **kw: Any) -> None:
            name = type(event).__name__
            if name in SHIPPED_EVENTS:
                now = time.time()
                add((event.span_id, event.id_, event.span_id, name, now, now, None, event))

        for name, fn in (("span_enter", span_enter), ("span_exit", span_exit)):
            object.__setattr__(handlers.spans, name, fn)
        object.__setattr__(handlers.spans, "span_drop", span_drop)
        object.__setattr__(handlers.events, "handle", handle)
        self.handlers = handlers

    def uninstrument(self) -> None:
        self.handlers.uninstrument()


def check_delivery(shipper: MinimalShipper, exporter: PosthogExporter) -> None:
    """Both exporters delivered every event they were given (the server accepted them)."""
    stats = exporter.stats()
    if shipper.rejected or stats.dropped:
        raise SystemExit(
            f"events lost: minimal exporter {shipper.rejected} rejected, ours {stats.dropped} "
            "dropped"
        )


def langchain_floor(server: Server, n: int, rounds: int) -> dict[str, list[float]]:
    """Median overheads (wall, caller CPU, process CPU) per invoke over no handler."""
    chain = make_chain()
    exporter = PosthogExporter(api_key=API_KEY, host=server.url, max_queue_size=100_000)
    shipper = MinimalShipper(server.url)

    def nothing() -> None:
        pass

    def flush_ours() -> None:
        exporter.flush(timeout=60)

    variants: dict[str, tuple[list[Any], Callable[[], None]]] = {
        "no handler": ([], nothing),
        "no-op handler": ([NoopHandler()], nothing),
        "minimal exporter": ([MinimalLangChain(shipper)], shipper.flush),
        "posthog_callbacks": ([CallbackHandler(exporter)], flush_ours),
    }
    results = interleaved(chain, variants, n, rounds)
    exporter.shutdown()
    check_delivery(shipper, exporter)
    base = [statistics.median(r[i] for r in results["no handler"]) for i in range(3)]
    return {
        name: [statistics.median(r[i] for r in rows) - base[i] for i in range(3)]
        for name, rows in results.items()
    }


def llama_index_floor(server: Server, batch: int, rounds: int) -> dict[str, list[float]]:
    """Median process CPU per query over none (µs), and the same as a ratio."""
    engine = make_engine()
    exporter = PosthogExporter(api_key=API_KEY, host=server.url, max_queue_size=1_000_000)
    shipper = MinimalShipper(server.url)
    variants = ("none", "no-op handlers", "minimal exporter", "instrument()")

    def flush_ours() -> None:
        exporter.flush(timeout=60)

    def install(variant: str) -> tuple[Any, Callable[[], None]]:
        if variant == "no-op handlers":
            return NoOpHandlers(), lambda: None
        if variant == "minimal exporter":
            return MinimalLlamaIndex(shipper), shipper.flush
        if variant == "instrument()":
            return instrument(exporter), flush_ours
        return None, lambda: None

    for variant in variants:  # warm up every path
        handle, flush = install(variant)
        run(engine, 20)
        flush()
        if handle is not None:
            handle.uninstrument()
    cpu: dict[str, list[float]] = {v: [] for v in variants}
    for _ in range(rounds):
        for variant in variants:
            handle, flush = install(variant)
            p0 = time.process_time()
            run(engine, batch)
            flush()  # the worker's work is part of the cost
            cpu[variant].append((time.process_time() - p0) / batch * 1e6)
            if handle is not None:
                handle.uninstrument()
    exporter.shutdown()
    check_delivery(shipper, exporter)
    base = statistics.median(cpu["none"])
    return {v: [statistics.median(cpu[v]) - base, statistics.median(cpu[v]) / base] for v in cpu}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small runs of both")
    args = parser.parse_args()
    n, rounds, batch, li_rounds = (200, 3, 10, 5) if args.quick else (1000, 7, 100, 12)
    server = Server()
    try:
        lc = langchain_floor(server, n, rounds)
        li = llama_index_floor(server, batch, li_rounds)
    finally:
        server.close()

    print(
        f"LangChain prompt | fake chat model | parser ({n} invokes x {rounds} rounds, median), "
        "overhead per invoke over no handler (µs):\n"
    )
    print("| variant | wall | caller CPU | process CPU | process CPU / no-op's |")
    print("|---|---:|---:|---:|---:|")
    noop = lc["no-op handler"][2]
    for name, (wall, caller, process) in lc.items():
        if name == "no handler":
            continue
        ratio = f"{process / noop:.1f}x" if noop >= 10 else "n/a (no-op < 10 µs)"
        print(f"| {name} | {wall:+.0f} | {caller:+.0f} | {process:+.0f} | {ratio} |")
    print(
        f"\nLlamaIndex mock RAG query ({batch} queries x {li_rounds} rounds, median), "
        "process CPU per query:\n"
    )
    print("| variant | over none (µs) | ratio to none |")
    print("|---|---:|---:|")
    for name, (extra, ratio_) in li.items():
        print(f"| {name} | {extra:+.0f} | {ratio_:.3f}x |")


if __name__ == "__main__":
    main()
