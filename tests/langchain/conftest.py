"""Fixtures for the LangChain handler tests: an exporter into a MemorySink."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from support.langchain_helpers import Recorder


@pytest.fixture
def rec() -> Iterator[Recorder]:
    r = Recorder()
    yield r
    r.exporter.shutdown(timeout=5)
