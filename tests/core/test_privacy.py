"""Privacy mode and mask= cover every field that can carry end-user content (issue 10 item 16).

Checked at the byte level: the events go through a real ``PosthogSink`` to a local capture
server, and every byte it received (headers, raw and gunzipped bodies) is searched for marker
strings planted in every free-text field the API accepts.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from posthog_callbacks import MemorySink, PosthogExporter
from support.capture_server import CaptureServer, ExporterFactory, all_bytes

MARKERS = {
    "trace input": "MARK-TRACE-IN",
    "trace output": "MARK-TRACE-OUT",
    "span input": "MARK-SPAN-IN",
    "span output": "MARK-SPAN-OUT",
    "prompt": "MARK-PROMPT",
    "completion": "MARK-COMPLETION",
    "embedding input": "MARK-EMBED",
    "error message": "MARK-ERROR",
    "metadata value": "MARK-META",
    "nested metadata": "MARK-NESTED",
    "stop sequence": "MARK-STOP",
    "openai user": "MARK-USER",
    "json schema": "MARK-SCHEMA",
    "system in params": "MARK-SYSTEM",
    "tool description": "MARK-TOOLDESC",
    "tool schema": "MARK-TOOLPARAM",
    "feedback text": "MARK-FEEDBACK",
    "feedback score": "MARK-SCORE",
    "metric value": "MARK-METRIC",
}


def _record_everything(exporter: PosthogExporter) -> str:
    """One trace using every free-text field of the manual API, plus feedback and metrics."""
    tools = [
        {
            "type": "function",
            "function": {
                "name": "lookup_order",
                "description": f"Look up {MARKERS['tool description']}",
                "parameters": {
                    "type": "object",
                    "properties": {"id": {"type": "string", "description": MARKERS["tool schema"]}},
                },
            },
        },
        {"name": "anthropic_style", "description": MARKERS["tool description"], "input_schema": {}},
    ]
    params = {
        "temperature": 0.2,
        "max_tokens": 64,
        "stream": False,
        "reasoning_effort": "low",
        "stop": [MARKERS["stop sequence"]],
        "user": MARKERS["openai user"],
        "response_format": {
            "type": "json_schema",
            "json_schema": {"description": MARKERS["json schema"]},
        },
        "system": MARKERS["system in params"],
    }
    metadata = {
        "ticket": MARKERS["metadata value"],
        "nested": {"x": MARKERS["nested metadata"]},
        "attempt": 2,
        "langgraph_node": "agent",
    }
    with exporter.trace(
        "support", input={"q": MARKERS["trace input"]}, metadata=metadata, distinct_id="u1"
    ) as trace:
        with trace.span("retrieve", input=MARKERS["span input"]) as span:
            span.update(output=[MARKERS["span output"]])
        with trace.generation(
            "chat",
            model="gpt-4o-mini",
            provider="openai",
            input=[{"role": "user", "content": MARKERS["prompt"]}],
            model_parameters=params,
            tools=tools,
            metadata=metadata,
        ) as gen:
            gen.update(
                output=[{"role": "assistant", "content": MARKERS["completion"]}],
                usage={"input_tokens": 12, "output_tokens": 3},
            )
        with trace.embedding(
            "embed", model="text-embedding-3-small", input=[MARKERS["embedding input"]]
        ) as emb:
            emb.update(usage={"input_tokens": 4})
        with pytest.raises(ValueError), trace.span("tool"):
            raise ValueError(f"order {MARKERS['error message']} not found")
        trace.update(output={"a": MARKERS["trace output"]})
        trace_id = trace.trace_id
    exporter.capture_feedback(trace_id, MARKERS["feedback text"], score=MARKERS["feedback score"])
    exporter.capture_feedback(trace_id, score=1)
    exporter.capture_metric(trace_id, "helpfulness", 0.8)
    exporter.capture_metric(trace_id, "judge_label", MARKERS["metric value"])
    return trace_id


def _events(server: CaptureServer) -> list[dict[str, Any]]:
    return [e for r in server.accepted for e in r.events]


def test_privacy_mode_sends_no_marker_on_the_wire(
    make_exporter: ExporterFactory, capture_server: CaptureServer
) -> None:
    exporter = make_exporter(privacy_mode=True)
    _record_everything(exporter)
    assert exporter.flush(timeout=10)
    wire = all_bytes(capture_server)
    leaked = [field for field, marker in MARKERS.items() if marker.encode() in wire]
    assert leaked == []

    # ... while costs, structure and the non-textual facts still work
    events = _events(capture_server)
    by_name = {(e["event"], e["properties"].get("$ai_span_name")): e["properties"] for e in events}
    gen = by_name[("$ai_generation", "chat")]
    assert (gen["$ai_input_tokens"], gen["$ai_output_tokens"]) == (12, 3)
    assert gen["$ai_tools"] == [
        {"type": "function", "function": {"name": "lookup_order"}},
        {"type": "function", "function": {"name": "anthropic_style"}},
    ]
    assert gen["$ai_model_parameters"] == {
        "temperature": 0.2,
        "max_tokens": 64,
        "stream": False,
        "reasoning_effort": "low",
    }
    assert (gen["$ai_temperature"], gen["$ai_max_tokens"]) == (0.2, 64)
    assert gen["attempt"] == 2 and gen["langgraph_node"] == "agent"
    assert "ticket" not in gen and "nested" not in gen
    assert by_name[("$ai_span", "tool")]["$ai_error"] == "ValueError"
    assert by_name[("$ai_embedding", "embed")]["$ai_input_tokens"] == 4
    feedback = [e["properties"] for e in events if e["event"] == "$ai_feedback"]
    assert [("$ai_feedback_text" in f, f.get("$ai_feedback_score")) for f in feedback] == [
        (False, None),
        (False, 1),
    ]
    metrics = {
        e["properties"]["$ai_metric_name"]: e["properties"].get("$ai_metric_value")
        for e in events
        if e["event"] == "$ai_metric"
    }
    assert metrics == {"helpfulness": 0.8, "judge_label": None}


def test_without_privacy_mode_every_marker_is_sent(
    make_exporter: ExporterFactory, capture_server: CaptureServer
) -> None:
    # The control: the fixture really puts each marker where a leak would show.
    exporter = make_exporter()
    _record_everything(exporter)
    assert exporter.flush(timeout=10)
    wire = all_bytes(capture_server)
    missing = [field for field, marker in MARKERS.items() if marker.encode() not in wire]
    assert missing == []


def test_mask_sees_every_free_text_field() -> None:
    seen: list[str] = []

    def mask(value: Any) -> Any:
        if isinstance(value, str):
            seen.append(value)
            return value.replace("MARK-", "masked-")
        if isinstance(value, list):
            return [mask(v) for v in value]
        if isinstance(value, dict):
            return {k: mask(v) for k, v in value.items()}
        return value

    sink = MemorySink()
    exporter = PosthogExporter(sink=sink, mask=mask)
    _record_everything(exporter)
    assert exporter.flush(timeout=10)
    raw = json.dumps(sink.events, ensure_ascii=False)
    leaked = [field for field, marker in MARKERS.items() if marker in raw]
    assert leaked == []
    assert "masked-PROMPT" in raw and "masked-FEEDBACK" in raw and "masked-TOOLDESC" in raw
    by_name = {e["properties"].get("$ai_span_name"): e["properties"] for e in sink.events}
    # identifiers are not free text: names, models, metric names are not masked
    assert by_name["chat"]["$ai_model"] == "gpt-4o-mini"
    assert by_name["chat"]["$ai_temperature"] == 0.2
    exporter.shutdown()


def test_per_trace_privacy_mode_keeps_other_traces_whole() -> None:
    sink = MemorySink()
    exporter = PosthogExporter(sink=sink)
    from posthog_callbacks.spans import FinishedSpan, SpanKind

    private = FinishedSpan(
        "t1",
        "g1",
        "t1",
        SpanKind.GENERATION,
        "chat",
        1.0,
        2.0,
        model_parameters={"stop": ["MARK-STOP"], "temperature": 0.1},
        tools=[{"name": "t", "description": "MARK-TOOLDESC"}],
        metadata={"ticket": "MARK-META"},
        privacy_mode=True,
    )
    exporter.submit(private)
    exporter.submit(
        private._replace(trace_id="t2", span_id="g2", parent_id="t2", privacy_mode=False)
    )
    assert exporter.flush(timeout=10)
    first, second = (json.dumps(e) for e in sink.events)
    assert "MARK-" not in first
    assert all(m in second for m in ("MARK-STOP", "MARK-TOOLDESC", "MARK-META"))
    exporter.shutdown()
