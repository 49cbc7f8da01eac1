"""Fixtures for the LlamaIndex tests: an in-memory exporter and clean global Settings."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from llama_index.core import Document, Settings, VectorStoreIndex
from llama_index.core.callbacks import CallbackManager
from llama_index.core.embeddings import MockEmbedding

from posthog_callbacks import MemorySink, PosthogExporter
from posthog_callbacks.llama_index import CallbackHandler, InstrumentHandle, instrument
from support.llama_helpers import Events, UsageLLM


@pytest.fixture
def exporter() -> Iterator[PosthogExporter]:
    exp = PosthogExporter(sink=MemorySink())
    yield exp
    exp.shutdown(timeout=2)


@pytest.fixture
def events(exporter: PosthogExporter) -> Events:
    """Flush the exporter and return every event its sink received so far."""

    def get() -> list[dict[str, Any]]:
        assert exporter.flush(timeout=10)
        return list(exporter.sink.events)  # type: ignore[union-attr]

    return get


@pytest.fixture(autouse=True)
def settings() -> Iterator[None]:
    """Mock models in LlamaIndex's global Settings; restored after each test."""
    saved = (Settings._llm, Settings._embed_model, Settings._callback_manager)
    Settings.llm = UsageLLM()
    Settings.embed_model = MockEmbedding(embed_dim=8)
    Settings.callback_manager = CallbackManager([])
    yield
    Settings._llm, Settings._embed_model, Settings._callback_manager = saved


@pytest.fixture
def instrumented(exporter: PosthogExporter) -> Iterator[InstrumentHandle]:
    handle = instrument(exporter)
    yield handle
    handle.uninstrument()


@pytest.fixture
def handler(exporter: PosthogExporter) -> Iterator[CallbackHandler]:
    h = CallbackHandler(exporter)
    Settings.callback_manager = CallbackManager([h])  # before the index takes its copy
    yield h


@pytest.fixture
def index() -> VectorStoreIndex:
    docs = [
        Document(text="The answer to everything is forty two.", id_="doc-42"),
        Document(text="Paris is the capital of France.", id_="doc-paris"),
    ]
    return VectorStoreIndex.from_documents(docs)
