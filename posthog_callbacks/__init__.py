"""LLM observability for LangChain and LlamaIndex in PostHog.

``import posthog_callbacks`` imports no framework: the front doors live in
``posthog_callbacks.langchain`` and ``posthog_callbacks.llama_index``.
"""

from ._version import __version__
from .exporter import ExporterStats, PosthogExporter
from .manual import SpanHandle, TraceHandle
from .pricing import ModelPrice
from .sinks import JsonlSink, MemorySink, PosthogSink, Sink, SinkError
from .spans import FinishedSpan, OpenSpan, SpanKind, Usage

__all__ = [
    "ExporterStats",
    "FinishedSpan",
    "JsonlSink",
    "MemorySink",
    "ModelPrice",
    "OpenSpan",
    "PosthogExporter",
    "PosthogSink",
    "Sink",
    "SinkError",
    "SpanHandle",
    "SpanKind",
    "TraceHandle",
    "Usage",
    "__version__",
]
