"""Overhead of ``posthog_callbacks.llama_index.instrument()`` on a LlamaIndex query engine.

Mock models (no network): a ``VectorStoreIndex`` over 20 documents with ``MockEmbedding``
and a mock LLM that reports usage. Each round runs the same queries without and with
instrumentation (alternating, to share any machine noise) and reports the per-query wall
time and process CPU time (which includes the exporter's worker thread, since it shares
the GIL with the program). Events go to a ``MemorySink``; the exporter is flushed inside
the measured window so translation work is counted.

Run: ``.venv/bin/python bench/llama_index_overhead.py [batch_size] [rounds]``
"""

from __future__ import annotations

import gc
import statistics
import sys
import time
from typing import Any

from llama_index.core import Document, Settings, VectorStoreIndex
from llama_index.core.base.llms.types import CompletionResponse, LLMMetadata
from llama_index.core.embeddings import MockEmbedding
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


def run(engine: Any, n: int) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    for i in range(n):
        engine.query(f"question {i}")
    return time.perf_counter() - wall, time.process_time() - cpu


VARIANTS = ("none", "handlers only", "instrument()")


def main() -> None:
    batch = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 40
    Settings.llm = BenchLLM()
    Settings.embed_model = MockEmbedding(embed_dim=64)
    docs = [
        Document(text=f"Document {i}: " + "lorem ipsum dolor sit amet " * 20) for i in range(20)
    ]
    engine = VectorStoreIndex.from_documents(docs).as_query_engine(similarity_top_k=2)
    sink = MemorySink()
    exporters = {
        # the handlers record spans but the exporter drops them: the caller-side cost
        "handlers only": PosthogExporter(sink=MemorySink(), enabled=False),
        # everything: recording, queueing, translation on the worker, the sink
        "instrument()": PosthogExporter(sink=sink, max_queue_size=1_000_000),
    }
    run(engine, 50)  # warm up

    wall: dict[str, list[float]] = {v: [] for v in VARIANTS}
    cpu: dict[str, list[float]] = {v: [] for v in VARIANTS}
    events = 0
    # Short interleaved batches: a shared machine's noise hits every variant alike.
    for _ in range(rounds):
        for variant in VARIANTS:
            exporter = exporters.get(variant)
            handle = instrument(exporter) if exporter is not None else None
            gc.collect()
            wall0, cpu0 = time.perf_counter(), time.process_time()
            run(engine, batch)
            if exporter is not None:
                exporter.flush()  # the worker's translation is part of the cost
            wall[variant].append((time.perf_counter() - wall0) / batch)
            cpu[variant].append((time.process_time() - cpu0) / batch)
            if handle is not None:
                handle.uninstrument()
        events += len(sink.events)
        sink.clear()

    print(
        f"{rounds} rounds of {batch}-query batches per variant; "
        f"events per query: {events / (rounds * batch):.1f}"
    )
    # min: the least-disturbed batch (robust on a shared machine); median: typical.
    for label, pick in (("min", min), ("median", statistics.median)):
        base_wall, base_cpu = pick(wall["none"]), pick(cpu["none"])
        for variant in VARIANTS:
            w, c = pick(wall[variant]), pick(cpu[variant])
            print(
                f"[{label:6}] {variant:14} wall/query {w * 1e6:7.0f} us "
                f"({(w / base_wall - 1) * 100:+5.1f} %)   CPU/query incl. worker "
                f"{c * 1e6:7.0f} us ({(c / base_cpu - 1) * 100:+5.1f} %)"
            )
    ratio = min(cpu["instrument()"]) / min(cpu["none"])
    print(f"ratio instrument() / none (min CPU per query): {ratio:.3f}")
    for exporter in exporters.values():
        exporter.shutdown()


if __name__ == "__main__":
    main()
