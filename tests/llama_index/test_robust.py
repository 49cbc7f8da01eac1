"""Both front doors: failures stay inside, sampling, privacy, closing open runs."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from llama_index.core import Document, Settings, VectorStoreIndex
from llama_index.core.callbacks import CallbackManager

from posthog_callbacks import MemorySink, PosthogExporter
from posthog_callbacks.llama_index import CallbackHandler, instrument
from posthog_callbacks.llama_index import callback as _llama_callback
from posthog_callbacks.llama_index import dispatcher as _llama_dispatcher
from support.llama_helpers import Events, UsageLLM, check_trees, props

DOCS = [Document(text="The answer to everything is forty two.")]


def _boom(*args: Any, **kwargs: Any) -> None:
    raise RuntimeError("handler bug")


@pytest.mark.parametrize("door", ["instrument", "callback"])
def test_a_handler_failure_never_reaches_the_program(
    door: str,
    exporter: PosthogExporter,
    events: Events,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    module = _llama_dispatcher if door == "instrument" else _llama_callback
    monkeypatch.setattr(module, "fill_generation", _boom)
    handle = None
    if door == "instrument":
        handle = instrument(exporter)
    else:
        Settings.callback_manager = CallbackManager([CallbackHandler(exporter)])
    index = VectorStoreIndex.from_documents(DOCS)
    with caplog.at_level(logging.WARNING, logger="posthog_callbacks"):
        for _ in range(3):
            assert str(index.as_query_engine().query("q")) == "forty two"
    if handle is not None:
        handle.uninstrument()
    warnings = [r for r in caplog.records if r.name.startswith("posthog_callbacks")]
    assert len(warnings) == 1  # logged once, not once per call
    assert "failed" in warnings[0].getMessage()
    # each generation is still sent, once, without what the broken extractor would add
    gens = [e["properties"] for e in events() if e["event"] == "$ai_generation"]
    assert len(gens) == 3
    assert all("$ai_output_choices" not in g and "$ai_input_tokens" not in g for g in gens)


def test_unsampled_traces_record_nothing_and_keep_nothing() -> None:
    exporter = PosthogExporter(sink=MemorySink(), sample_rate=0.0)
    handle = instrument(exporter)
    handler = CallbackHandler(exporter)
    try:
        Settings.callback_manager = CallbackManager([handler])
        index = VectorStoreIndex.from_documents(DOCS)
        index.as_query_engine().query("q")
        stream = UsageLLM().stream_complete("hi")
        assert "".join(r.delta or "" for r in stream) == "forty two"
        assert exporter.flush(timeout=5)
        assert exporter.sink.events == []  # type: ignore[union-attr]
        assert handle.open_runs() == 0
        assert handle.open_nodes() == 0
        assert len(handler.runs) == 0
    finally:
        handle.uninstrument()
        exporter.shutdown(timeout=2)


def test_callback_privacy_mode(exporter: PosthogExporter, events: Events) -> None:
    Settings.callback_manager = CallbackManager([CallbackHandler(exporter, privacy_mode=True)])
    VectorStoreIndex.from_documents(DOCS).as_query_engine().query("secret question")
    got = events()
    check_trees(got)
    assert "secret question" not in repr(got) and "forty two" not in repr(got)
    gen = props(next(e for e in got if e["event"] == "$ai_generation"))
    assert gen["$ai_input_tokens"] == 11


def test_uninstrument_closes_open_streams(exporter: PosthogExporter, events: Events) -> None:
    handle = instrument(exporter)
    stream = UsageLLM().stream_complete("hi")
    next(stream)
    assert handle.open_runs() == 1
    handle.uninstrument()
    got = events()
    assert [e["event"] for e in got] == ["$ai_generation"]
    assert props(got[0])["$ai_is_error"] is True
    assert "removed" in props(got[0])["$ai_error"]
    assert handle.open_runs() == 0
    list(stream)  # reading on after uninstrument is harmless


def test_instrument_twice_records_once(
    exporter: PosthogExporter, events: Events, caplog: pytest.LogCaptureFixture
) -> None:
    first = instrument(exporter)
    with caplog.at_level(logging.WARNING, logger="posthog_callbacks"):
        second = instrument(exporter)
    assert second is first
    assert "already active" in caplog.text
    UsageLLM().complete("hi")
    first.uninstrument()
    assert [e["event"] for e in events()] == ["$ai_generation"]
    third = instrument(exporter)  # after uninstrument() a new one installs
    assert third is not first
    third.uninstrument()
