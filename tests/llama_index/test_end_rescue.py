"""An end handler that fails half-way still sends its run, once, with what it read.

Each test breaks one extractor used while a run ends, then checks that the user's call
is untouched, that nothing is left open (so nothing waits for ``uninstrument()`` or the
TTL), and that every event arrives exactly once with the fields read before the failure.
"""

from __future__ import annotations

from typing import Any

import pytest
from llama_index.core import Settings, VectorStoreIndex
from llama_index.core.base.response.schema import StreamingResponse

from posthog_callbacks import PosthogExporter
from posthog_callbacks.llama_index import CallbackHandler, InstrumentHandle
from posthog_callbacks.llama_index import callback as _llama_callback
from posthog_callbacks.llama_index import dispatcher as _llama_dispatcher
from posthog_callbacks.llama_index import extract as _llama_extract
from posthog_callbacks.llama_index import runs as _llama_runs
from support.llama_helpers import Events, UsageLLM, check_trees, one, props, tree

QUERY_TREE = [
    "$ai_trace RetrieverQueryEngine.query",
    "  $ai_span VectorIndexRetriever.retrieve",
    "    $ai_embedding embedding.embed",
    "  $ai_span CompactAndRefine.synthesize",
    "    $ai_generation mock-gpt.complete",
]
ANSWER = [{"role": "assistant", "content": "forty two"}]


def _boom(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError("extractor bug")


def _query(index: VectorStoreIndex) -> None:
    response = index.as_query_engine(similarity_top_k=2).query("What is the answer?")
    assert str(response) == "forty two"


# -- instrument() ------------------------------------------------------------------------


def test_llm_end_failure_still_sends_the_generation(
    index: VectorStoreIndex,
    instrumented: InstrumentHandle,
    events: Events,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_llama_extract, "response_fields", _boom)  # after the output is read
    _query(index)
    assert instrumented.open_runs() == 0  # not left for uninstrument() or the TTL
    got = events()
    assert len(check_trees(got)) == 1
    assert tree(got) == QUERY_TREE  # every run once
    gen = props(one(got, "mock-gpt.complete"))
    assert gen["$ai_model"] == "mock-gpt"  # from the start event: the response's was not read
    assert gen["$ai_output_choices"] == ANSWER
    assert "What is the answer?" in gen["$ai_input"][0]["content"]
    assert "$ai_input_tokens" not in gen and "$ai_output_tokens" not in gen
    assert gen["$ai_is_error"] is False
    root = props(one(got, "RetrieverQueryEngine.query"))
    assert root["$ai_output_state"] == "forty two"


def test_embedding_end_failure_still_sends_the_embedding(
    index: VectorStoreIndex,
    instrumented: InstrumentHandle,
    events: Events,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_llama_dispatcher, "fill_embedding", _boom)
    _query(index)
    assert instrumented.open_runs() == 0
    got = events()
    check_trees(got)
    assert tree(got) == QUERY_TREE
    emb = one(got, "embedding.embed")
    assert (
        props(emb)["$ai_parent_id"]
        == props(one(got, "VectorIndexRetriever.retrieve"))["$ai_span_id"]
    )
    assert "$ai_input" not in props(emb)  # the chunks were never read
    assert props(one(got, "mock-gpt.complete"))["$ai_input_tokens"] == 11


def test_span_exit_failure_still_ends_the_spans(
    index: VectorStoreIndex,
    instrumented: InstrumentHandle,
    events: Events,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_llama_dispatcher, "span_output", _boom)
    _query(index)
    assert instrumented.open_runs() == 0
    assert instrumented.open_nodes() == 0
    got = events()
    check_trees(got)
    assert tree(got) == QUERY_TREE
    root = props(one(got, "RetrieverQueryEngine.query"))
    assert root["$ai_input_state"] == "What is the answer?"
    assert "$ai_output_state" not in root
    assert root["$ai_is_error"] is False
    assert "$ai_output_state" not in props(one(got, "VectorIndexRetriever.retrieve"))
    assert props(one(got, "mock-gpt.complete"))["$ai_output_choices"] == ANSWER


def test_span_drop_failure_still_sends_the_failed_runs(
    index: VectorStoreIndex,
    instrumented: InstrumentHandle,
    events: Events,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_llama_dispatcher, "describe_error", _boom)
    Settings.llm = UsageLLM(fail_with="model down")
    with pytest.raises(RuntimeError, match="model down"):  # the program's own error only
        index.as_query_engine(similarity_top_k=2).query("What is the answer?")
    assert instrumented.open_runs() == 0
    got = events()
    check_trees(got)
    assert tree(got) == QUERY_TREE
    for name in ("mock-gpt.complete", "CompactAndRefine.synthesize", "RetrieverQueryEngine.query"):
        failed = props(one(got, name))
        assert (failed["$ai_is_error"], failed["$ai_error"]) == (True, "RuntimeError"), name
    assert props(one(got, "VectorIndexRetriever.retrieve"))["$ai_is_error"] is False


def test_stream_end_failure_still_finishes_the_trace(
    index: VectorStoreIndex,
    instrumented: InstrumentHandle,
    events: Events,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_llama_runs, "record_stream_end", _boom)
    response = index.as_query_engine(streaming=True).query("What is the answer?")
    assert isinstance(response, StreamingResponse)
    assert "".join(response.response_gen) == "forty two"
    assert instrumented.open_runs() == 0
    got = events()
    assert len(check_trees(got)) == 1
    assert [e["event"] for e in got].count("$ai_trace") == 1
    gen = props(next(e for e in got if e["event"] == "$ai_generation"))
    assert gen["$ai_output_choices"] == ANSWER
    root = props(next(e for e in got if e["event"] == "$ai_trace"))
    assert "$ai_output_state" not in root  # the stream's text was not recorded


# -- CallbackHandler -----------------------------------------------------------------------


def _forget_index_construction(exporter: PosthogExporter) -> None:
    exporter.flush()
    exporter.sink.clear()  # type: ignore[union-attr]


def test_callback_llm_end_failure_still_sends_the_generation(
    handler: CallbackHandler,
    index: VectorStoreIndex,
    events: Events,
    exporter: PosthogExporter,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _forget_index_construction(exporter)
    monkeypatch.setattr(_llama_extract, "response_fields", _boom)
    _query(index)
    assert len(handler.runs) == 0
    got = events()
    assert len(check_trees(got)) == 1
    gens = [props(e) for e in got if e["event"] == "$ai_generation"]
    assert len(gens) == 1
    assert gens[0]["$ai_output_choices"] == ANSWER
    assert "What is the answer?" in gens[0]["$ai_input"][0]["content"]
    assert "$ai_input_tokens" not in gens[0]
    assert gens[0]["$ai_is_error"] is False
    root = props(next(e for e in got if e["event"] == "$ai_trace"))
    assert root["$ai_output_state"] == "forty two"


def test_callback_span_end_failure_still_sends_every_span(
    handler: CallbackHandler,
    index: VectorStoreIndex,
    events: Events,
    exporter: PosthogExporter,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _forget_index_construction(exporter)
    monkeypatch.setattr(_llama_callback, "describe_end", _boom)
    _query(index)
    assert len(handler.runs) == 0
    got = events()
    assert len(check_trees(got)) == 1
    assert tree(got) == [
        "$ai_trace query",
        "  $ai_span query",
        "    $ai_span retrieve",
        "      $ai_embedding embedding.embed",
        "    $ai_span synthesize",
        "      $ai_span chunking",
        "      $ai_span chunking",
        "      $ai_span templating",
        "      $ai_generation llm.complete",
    ]
    retrieve = props(one(got, "retrieve"))
    assert "$ai_output_state" not in retrieve
    assert props(one(got, "llm.complete"))["$ai_input_tokens"] == 11


def test_callback_error_end_failure_still_sends_the_failed_runs(
    handler: CallbackHandler,
    index: VectorStoreIndex,
    events: Events,
    exporter: PosthogExporter,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _forget_index_construction(exporter)
    monkeypatch.setattr(_llama_callback, "describe_error", _boom)
    Settings.llm = UsageLLM(fail_with="model down")
    with pytest.raises(RuntimeError, match="model down"):
        index.as_query_engine().query("What?")
    assert len(handler.runs) == 0
    got = events()
    check_trees(got)
    gens = [e for e in got if e["event"] == "$ai_generation"]
    assert len(gens) == 1
    assert props(gens[0])["$ai_input"][0]["role"] == "user"
