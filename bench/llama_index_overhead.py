"""Overhead of ``posthog_callbacks.llama_index.instrument()`` on a LlamaIndex query engine.

Mock models (no network): a ``VectorStoreIndex`` over 20 documents with ``MockEmbedding``
and a mock LLM that reports usage. Each round runs the same queries without and with
instrumentation (alternating, to share any machine noise) and reports the per-query wall
time and process CPU time (which includes the exporter's worker thread, since it shares
the GIL with the program). Events go to a ``MemorySink``; the exporter is flushed inside
the measured window so translation work is counted.

Run: ``.venv/bin/python bench/llama_index_overhead.py [batch_size] [pairs]``
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
        return CompletionResponse(text="forty two", raw={
            "model": "bench-gpt", "usage": {"prompt_tokens": 100, "completion_tokens": 3}})

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> Any:
        raise NotImplementedError


def run(engine: Any, n: int) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    for i in range(n):
        engine.query(f"question {i}")
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    batch = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    pairs = int(sys.argv[2]) if len(sys.argv) > 2 else 40
    Settings.llm = BenchLLM()
    Settings.embed_model = MockEmbedding(embed_dim=64)
    docs = [Document(text=f"Document {i}: " + "lorem ipsum dolor sit amet " * 20)
            for i in range(20)]
    engine = VectorStoreIndex.from_documents(docs).as_query_engine(similarity_top_k=2)
    sink = MemorySink()
    exporter = PosthogExporter(sink=sink, max_queue_size=1_000_000)
    run(engine, 50)  # warm up

    base_wall: list[float] = []
    base_cpu: list[float] = []
    inst_wall: list[float] = []
    inst_cpu: list[float] = []
    events = 0
    # Short alternating batches: a shared machine's noise hits both sides alike.
    for _ in range(pairs):
        gc.collect()
        wall, cpu = run(engine, batch)
        base_wall.append(wall / batch)
        base_cpu.append(cpu / batch)
        handle = instrument(exporter)
        gc.collect()
        wall0, cpu0 = time.perf_counter(), time.process_time()
        run(engine, batch)
        exporter.flush()  # the worker's translation is part of the cost
        inst_wall.append((time.perf_counter() - wall0) / batch)
        inst_cpu.append((time.process_time() - cpu0) / batch)
        handle.uninstrument()
        events += len(sink.events)
        sink.clear()

    per_query = events / (pairs * batch)
    print(f"{pairs} pairs of {batch}-query batches; events per query: {per_query:.1f}")
    # min: the least-disturbed batch (robust on a shared machine); median: typical.
    for label, pick in (("min", min), ("median", statistics.median)):
        bw, iw = pick(base_wall), pick(inst_wall)
        bc, ic = pick(base_cpu), pick(inst_cpu)
        print(f"[{label:6}] wall/query: none {bw * 1e6:7.0f} us, instrument() {iw * 1e6:7.0f} us"
              f" -> +{(iw / bw - 1) * 100:4.1f} %   CPU/query (incl. worker): none "
              f"{bc * 1e6:7.0f} us, instrument() {ic * 1e6:7.0f} us"
              f" -> +{(ic / bc - 1) * 100:4.1f} %")
    bw, iw = min(base_wall), min(inst_wall)
    print(f"ratio instrumented / none (min wall): {iw / bw:.3f}")
    exporter.shutdown()


if __name__ == "__main__":
    main()
