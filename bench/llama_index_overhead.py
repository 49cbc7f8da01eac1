"""Overhead of ``posthog_callbacks.llama_index.instrument()`` on a mock RAG query.

The query: a ``VectorStoreIndex`` over 50 documents with ``MockEmbedding`` and a completion
LLM that answers at once and reports OpenAI-shaped usage (no network). Each round runs a
batch of queries in every variant, interleaved so a shared machine's noise hits them alike:

* ``none``: uninstrumented;
* ``no-op handlers``: a span handler and an event handler that do nothing, installed
  like ``instrument()``'s (the dispatcher's own cost of calling handlers: the floor);
* ``recording only``: ``instrument()`` into an exporter created with ``enabled=False``
  (the handlers' cost on the caller's thread; nothing is queued);
* ``instrument()``: ``instrument()`` into an exporter delivering to a ``MemorySink``;
  the exporter is flushed inside the measured window, so its worker's translation work is
  counted (it shares the GIL with the program).

Reported per query: process CPU (all threads, ``time.process_time``), the caller thread's
CPU (``time.thread_time``) and wall time; the headline is the ratio of process CPU with
``instrument()`` to none (target <= 1.10).

Run: ``.venv/bin/python bench/llama_index_overhead.py [batch] [rounds] [--profile] [--replay]``
(``--profile`` prints the caller-side cProfile of the instrumented query instead).

``--replay`` records the dispatcher calls of one query (its span enters and exits and its
events) and sends them again through LlamaIndex's dispatcher, with fresh span ids each
time, to ``instrument()``'s handlers alone: the thread CPU of our handler code without the
query around it (into an exporter created with ``enabled=False``, and into one whose worker
waits for the flush), next to the no-op handlers' floor. It is much steadier than the query
on a busy machine, so it suits A/B comparisons of handler changes; in the query our code
costs about twice as much (LlamaIndex's own code runs between our calls and evicts ours
from the CPU caches).
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import pstats
import statistics
import time
import uuid
from typing import Any

from llama_index.core import Document, Settings, VectorStoreIndex
from llama_index.core.base.llms.types import CompletionResponse, LLMMetadata
from llama_index.core.embeddings import MockEmbedding
from llama_index.core.instrumentation import get_dispatcher  # type: ignore[attr-defined]
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.span import BaseSpan
from llama_index.core.instrumentation.span_handlers import BaseSpanHandler
from llama_index.core.llms import CustomLLM
from llama_index.core.llms.callbacks import llm_completion_callback

from posthog_callbacks import MemorySink, PosthogExporter
from posthog_callbacks.llama_index import instrument


class BenchLLM(CustomLLM):
    """Answers instantly with OpenAI-shaped usage."""

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(model_name="bench-gpt")

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        return CompletionResponse(
            text="forty two",
            raw={"model": "bench-gpt", "usage": {"prompt_tokens": 100, "completion_tokens": 3}},
        )

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> Any:
        raise NotImplementedError


def make_engine() -> Any:
    Settings.llm = BenchLLM()
    Settings.embed_model = MockEmbedding(embed_dim=64)
    docs = [
        Document(text=f"Document {i}: " + "lorem ipsum dolor sit amet " * 20) for i in range(50)
    ]
    return VectorStoreIndex.from_documents(docs).as_query_engine(similarity_top_k=2)


def run(engine: Any, n: int) -> None:
    for i in range(n):
        engine.query(f"question {i}")


VARIANTS = ("none", "no-op handlers", "recording only", "instrument()")


class _NoOpSpans(BaseSpanHandler[BaseSpan]):  # type: ignore[misc]
    def new_span(self, *args: Any, **kwargs: Any) -> None:
        return None

    def prepare_to_exit_span(self, *args: Any, **kwargs: Any) -> None:
        return None

    def prepare_to_drop_span(self, *args: Any, **kwargs: Any) -> None:
        return None


class _NoOpEvents(BaseEventHandler):  # type: ignore[misc]
    @classmethod
    def class_name(cls) -> str:
        return "NoOpEvents"

    def handle(self, event: Any, **kwargs: Any) -> None:
        return None


def _no_op(*args: Any, **kwargs: Any) -> None:
    return None


class NoOpHandlers:
    """Handlers that do nothing, installed (and their calls made) like instrument()'s."""

    def __init__(self) -> None:
        self.spans = _NoOpSpans()
        for name in ("span_enter", "span_exit", "span_drop"):  # as instrument() binds its own
            object.__setattr__(self.spans, name, _no_op)
        self.events = _NoOpEvents()
        self.dispatcher = get_dispatcher()
        self.dispatcher.add_span_handler(self.spans)
        self.dispatcher.add_event_handler(self.events)

    def uninstrument(self) -> None:
        d = self.dispatcher
        d.span_handlers = [h for h in d.span_handlers if h is not self.spans]
        d.event_handlers = [h for h in d.event_handlers if h is not self.events]


def measure(batch: int, rounds: int) -> None:
    engine = make_engine()
    sink = MemorySink()
    exporters = {
        "recording only": PosthogExporter(sink=MemorySink(), enabled=False),
        "instrument()": PosthogExporter(sink=sink, max_queue_size=1_000_000),
    }
    for warm in exporters.values():  # warm up every path
        with instrument(warm):
            run(engine, 20)
        warm.flush()
    run(engine, 20)
    sink.clear()
    gc.collect()  # once: a full collection over the index's objects costs ~100 ms

    process: dict[str, list[float]] = {v: [] for v in VARIANTS}
    thread: dict[str, list[float]] = {v: [] for v in VARIANTS}
    wall: dict[str, list[float]] = {v: [] for v in VARIANTS}
    events = 0
    for _ in range(rounds):
        for variant in VARIANTS:
            exporter: PosthogExporter | None = exporters.get(variant)
            handle: Any = instrument(exporter) if exporter is not None else None
            if variant == "no-op handlers":
                handle = NoOpHandlers()
            w0, p0, t0 = time.perf_counter(), time.process_time(), time.thread_time()
            run(engine, batch)
            if exporter is not None:
                exporter.flush()  # the worker's translation is part of the cost
            process[variant].append((time.process_time() - p0) / batch)
            thread[variant].append((time.thread_time() - t0) / batch)
            wall[variant].append((time.perf_counter() - w0) / batch)
            if handle is not None:
                handle.uninstrument()
        events += len(sink.events)
        sink.clear()
    for exporter in exporters.values():
        exporter.shutdown()

    print(
        f"mock RAG query (VectorStoreIndex over 50 documents, MockEmbedding, completion LLM "
        f"with usage): {rounds} rounds x {batch} queries per variant; "
        f"events per query: {events / (rounds * batch):.1f}"
    )
    # Row and ratio lines keep the format bench/run_all.py parses.
    for label, pick in (("min", min), ("median", statistics.median)):
        base_wall, base = pick(wall["none"]), pick(process["none"])
        for variant in VARIANTS:
            p, t, w = pick(process[variant]), pick(thread[variant]), pick(wall[variant])
            print(
                f"[{label:6}] {variant:15} wall/query {w * 1e6:6.0f} us "
                f"({(w / base_wall - 1) * 100:+5.1f} %)   CPU/query incl. worker "
                f"{p * 1e6:6.0f} us ({(p / base - 1) * 100:+5.1f} %)   "
                f"caller thread {t * 1e6:6.0f} us"
            )
    ratio = min(process["instrument()"]) / min(process["none"])
    median = statistics.median(process["instrument()"]) / statistics.median(process["none"])
    print(f"ratio instrument() / none (min CPU per query): {ratio:.3f}  (target <= 1.10)")
    print(f"ratio instrument() / none (median CPU per query): {median:.3f}")


class _Recording:
    """Span and event handler bodies that keep what the dispatcher passed them."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def span_enter(self, **kwargs: Any) -> None:
        self.calls.append(("span_enter", kwargs))

    def span_exit(self, **kwargs: Any) -> None:
        self.calls.append(("span_exit", kwargs))

    def span_drop(self, **kwargs: Any) -> None:
        self.calls.append(("span_drop", kwargs))

    def handle(self, event: Any, **kwargs: Any) -> None:
        self.calls.append(("event", {"event": event}))


def _fresh(calls: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, dict[str, Any]]]:
    """The calls of one query with new span ids ("Class.method-<uuid4>", as LlamaIndex's)."""
    ids: dict[str, str] = {}

    def new(old: Any) -> Any:
        if not isinstance(old, str):
            return old
        if old not in ids:
            ids[old] = f"{old[:-37]}-{uuid.uuid4()}" if len(old) > 37 else old
        return ids[old]

    out = []
    for name, kwargs in calls:
        if name == "event":
            event = kwargs["event"]
            out.append((name, {"event": event.model_copy(update={"span_id": new(event.span_id)})}))
        else:
            kw = dict(kwargs)
            kw["id_"] = new(kw["id_"])
            if kw.get("parent_id") is not None:
                kw["parent_id"] = new(kw["parent_id"])
            out.append((name, kw))
    return out


def replay(n: int, rounds: int) -> None:
    """Thread CPU of our handlers alone, one query's dispatcher calls replayed (µs/query)."""
    engine = make_engine()
    recording = _Recording()
    handlers = NoOpHandlers()
    for name in ("span_enter", "span_exit", "span_drop"):
        object.__setattr__(handlers.spans, name, getattr(recording, name))
    object.__setattr__(handlers.events, "handle", recording.handle)
    run(engine, 1)
    handlers.uninstrument()
    dispatcher = get_dispatcher()
    send: dict[str, Any] = {
        "span_enter": dispatcher.span_enter,
        "span_exit": dispatcher.span_exit,
        "span_drop": dispatcher.span_drop,
    }
    exporters = {
        "recording only": PosthogExporter(sink=MemorySink(), enabled=False),
        "queued": PosthogExporter(sink=MemorySink(), flush_at=10 * n, flush_interval=3600),
    }
    variants = ("no-op handlers", *exporters)
    times: dict[str, list[float]] = {v: [] for v in variants}

    def one_round(variant: str) -> float:
        prepared = [call for _ in range(n) for call in _fresh(recording.calls)]
        exporter = exporters.get(variant)
        handle: Any = instrument(exporter) if exporter is not None else NoOpHandlers()
        t0 = time.thread_time()
        for name, kwargs in prepared:
            if name == "event":
                dispatcher.event(kwargs["event"])
            else:
                send[name](**kwargs)
        spent = time.thread_time() - t0
        handle.uninstrument()
        if exporter is not None:
            exporter.flush(timeout=60)
        return spent / n * 1e6

    for variant in variants:
        one_round(variant)  # warm up
    gc.collect()
    for _ in range(rounds):
        for variant in variants:
            times[variant].append(one_round(variant))
    for exporter in exporters.values():
        exporter.shutdown()
    print(
        f"one mock RAG query's {len(recording.calls)} dispatcher calls, replayed {n} times x "
        f"{rounds} rounds per variant (thread CPU per query):"
    )
    floor = statistics.median(times["no-op handlers"])
    for variant in variants:
        median = statistics.median(times[variant])
        print(
            f"  {variant:15} min {min(times[variant]):6.1f}  median {median:6.1f} µs"
            + (f"  (+{median - floor:.1f} over the no-op handlers)" if median != floor else "")
        )


def profile(n: int) -> None:
    engine = make_engine()
    exporter = PosthogExporter(sink=MemorySink(), enabled=False)
    with instrument(exporter):
        run(engine, 50)
        prof = cProfile.Profile()
        prof.enable()
        run(engine, n)
        prof.disable()
    exporter.shutdown()
    stats = pstats.Stats(prof)
    stats.sort_stats("tottime").print_stats(r"posthog_callbacks", 25)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("batch", type=int, nargs="?", default=10, help="queries per batch")
    parser.add_argument("rounds", type=int, nargs="?", default=40, help="batches per variant")
    parser.add_argument("--profile", action="store_true", help="cProfile the caller side")
    parser.add_argument(
        "--replay", action="store_true", help="our handlers alone, one query replayed"
    )
    args = parser.parse_args()
    if args.replay:
        replay(100, args.rounds)
    elif args.profile:
        profile(args.batch * args.rounds)
    else:
        measure(args.batch, args.rounds)


if __name__ == "__main__":
    main()
