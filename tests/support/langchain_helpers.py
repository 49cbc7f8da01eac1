"""Shared helpers for the LangChain handler tests."""

from __future__ import annotations

from typing import Any

from posthog_callbacks import MemorySink, PosthogExporter
from posthog_callbacks.langchain import CallbackHandler


class Recorder:
    """An exporter into memory plus helpers to read what it produced."""

    def __init__(self) -> None:
        self.sink = MemorySink()
        self.exporter = PosthogExporter(sink=self.sink)

    def handler(self, **options: Any) -> CallbackHandler:
        return CallbackHandler(self.exporter, **options)

    def events(self) -> list[dict[str, Any]]:
        assert self.exporter.flush(timeout=10)
        return list(self.sink.events)

    def props(self) -> list[dict[str, Any]]:
        return [e["properties"] for e in self.events()]

    def by_name(self) -> dict[str, dict[str, Any]]:
        """Events keyed by span name (names must be unique in the test)."""
        out: dict[str, dict[str, Any]] = {}
        for e in self.events():
            name = e["properties"]["$ai_span_name"]
            assert name not in out, f"duplicate span name {name}"
            out[name] = e
        return out


def parent_of(event: dict[str, Any]) -> str | None:
    """The span/trace id an event hangs under (None for the trace root)."""
    parent: str | None = event["properties"].get("$ai_parent_id")
    return parent


def span_id(event: dict[str, Any]) -> str:
    props = event["properties"]
    ident: str = props.get("$ai_span_id") or props["$ai_trace_id"]
    return ident
