"""Shared fixtures: a real local PostHog capture server and exporters pointed at it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from posthog_callbacks import PosthogExporter, PosthogSink
from support.capture_server import TEST_API_KEY, CaptureServer, ExporterFactory


@pytest.fixture
def capture_server() -> Iterator[CaptureServer]:
    """A capture server on 127.0.0.1 (ephemeral port), stopped after the test."""
    server = CaptureServer()
    yield server
    server.close()


@pytest.fixture
def make_exporter(capture_server: CaptureServer) -> Iterator[ExporterFactory]:
    """Build ``PosthogExporter``s sending to ``capture_server``; shut down after the test.

    Keyword arguments go to the exporter, except ``timeout``, ``max_retries``,
    ``backoff_base`` and ``retry_window`` which configure its ``PosthogSink`` (fast backoff
    and no retry window by default: ``max_retries`` alone decides), and ``host`` which
    overrides the server's URL.
    """
    made: list[PosthogExporter] = []

    def make(**kwargs: Any) -> PosthogExporter:
        sink = kwargs.pop("sink", None)
        if sink is None:
            sink = PosthogSink(
                api_key=kwargs.pop("api_key", TEST_API_KEY),
                host=kwargs.pop("host", capture_server.url),
                timeout=kwargs.pop("timeout", 5.0),
                max_retries=kwargs.pop("max_retries", 6),
                backoff_base=kwargs.pop("backoff_base", 0.01),
                retry_window=kwargs.pop("retry_window", 0.0),
            )
        exporter = PosthogExporter(sink=sink, **kwargs)
        made.append(exporter)
        return exporter

    yield make
    for exporter in made:
        exporter.shutdown(timeout=2)
