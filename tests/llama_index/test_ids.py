"""Span and trace ids of the LlamaIndex doors: the core's random version-4 UUIDs."""

from __future__ import annotations

import uuid

import pytest
from llama_index.core import VectorStoreIndex

from posthog_callbacks.llama_index import CallbackHandler, InstrumentHandle
from support.llama_helpers import Events, props


def _ids(got: list[dict[str, object]]) -> list[str]:
    out = []
    for event in got:
        p = props(event)
        out.append(str(p["$ai_trace_id"]))
        if "$ai_span_id" in p:
            out.append(str(p["$ai_span_id"]))
    return out


@pytest.mark.parametrize("door", ["instrument", "callback"])
def test_both_doors_make_version_4_uuids(
    door: str, index: VectorStoreIndex, events: Events, request: pytest.FixtureRequest
) -> None:
    fixture = "instrumented" if door == "instrument" else "handler"
    recorder: InstrumentHandle | CallbackHandler = request.getfixturevalue(fixture)
    assert recorder is not None
    for _ in range(3):
        assert str(index.as_query_engine().query("What is the answer?")) == "forty two"
    got = events()
    ids = _ids(got)
    assert len({str(props(e)["$ai_trace_id"]) for e in got}) == 3  # one trace per query
    for text in ids:
        parsed = uuid.UUID(text)
        assert str(parsed) == text and parsed.version == 4
    spans = [str(props(e)["$ai_span_id"]) for e in got if "$ai_span_id" in props(e)]
    # every event but the three $ai_trace roots has a span id of its own
    assert len(set(spans)) == len(spans) == len(got) - 3
