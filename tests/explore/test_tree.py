"""explore: loading, tree shape, totals, orphans (over the recorded JSONL fixture)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from posthog_callbacks import MemorySink, PosthogExporter, explore
from support.explore_ids import BROKEN, HEADLESS, RAG, SOLO


def shape(node: explore.SpanNode) -> tuple[str, list[object]]:
    return (node.name, [shape(c) for c in node.children])


def test_load_jsonl_groups_traces_in_start_order(
    fixture_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="posthog_callbacks"):
        traces = explore.load_traces(fixture_path)
    assert [t.trace_id for t in traces] == [RAG, SOLO, BROKEN, HEADLESS]
    assert "skipped 1 unreadable line(s)" in caplog.text and "line 14" in caplog.text


def test_rag_tree_and_totals(fixture_path: Path) -> None:
    trace = explore.load_traces(fixture_path).get(RAG)
    assert trace.root.event == "$ai_trace" and trace.root.span_id == RAG
    assert shape(trace.root) == (
        "rag-chain",
        [
            ("retriever", [("OpenAIEmbeddings", [])]),
            ("ChatOpenAI", []),
            ("StrOutputParser", []),
        ],
    )
    assert [(d, n.kind) for d, n in trace.walk()] == [
        (0, "trace"),
        (1, "span"),
        (2, "embedding"),
        (1, "generation"),
        (1, "span"),
    ]
    t = trace.totals
    assert (
        t.input_tokens,
        t.output_tokens,
        t.cache_read_tokens,
        t.cache_creation_tokens,
        t.reasoning_tokens,
        t.total_tokens,
    ) == (125, 30, 100, None, 4, 155)
    assert t.latency == pytest.approx(1.5)
    assert (t.spans, t.generations, t.embeddings, t.errors, t.orphans) == (5, 1, 1, 0, 0)
    assert t.models == {"text-embedding-3-small": 1, "gpt-4o-mini-2024-07-18": 1}
    # No PostHog cost in a local file: estimated with genai-prices (checked in test_cost.py).
    assert t.cost_estimated and t.cost_usd == pytest.approx(
        sum(s.cost for s in trace.spans if s.cost is not None)
    )
    assert trace.distinct_id == "user-1" and trace.session_id == "sess-1"
    assert trace.name == "rag-chain"
    assert [s["properties"]["$ai_feedback_text"] for s in trace.scores] == ["great answer"]
    gen = trace.find("ChatOpenAI")[0]
    assert gen.provider == "openai" and gen.input[1] == {
        "role": "user",
        "content": "what is posthog?",
    }
    assert gen.start == pytest.approx(1_767_225_600.21) and gen.end == pytest.approx(
        1_767_225_601.41
    )


def test_lone_generation_is_its_own_root(fixture_path: Path) -> None:
    trace = explore.load_traces(fixture_path).get(SOLO)
    assert trace.root.event == "$ai_generation" and not trace.root.synthetic
    assert trace.root.children == []
    t = trace.totals
    # Anthropic: PostHog's input count is the uncached part (50 - 20 read - 10 written).
    assert (t.input_tokens, t.output_tokens, t.cache_read_tokens, t.cache_creation_tokens) == (
        20,
        7,
        20,
        10,
    )
    assert t.models == {"claude-3-5-haiku-20241022": 1}


def test_orphans_shown_under_root_and_errors_counted(fixture_path: Path) -> None:
    trace = explore.load_traces(fixture_path).get(BROKEN)
    assert shape(trace.root) == ("agent", [("lost-step", []), ("search_tool", [])])
    lost, tool = trace.root.children
    assert lost.orphan and lost.parent_id == "00000000-0000-4000-9000-000000000099"
    assert not tool.orphan and tool.is_error
    assert tool.error == "TimeoutError: search timed out"
    assert (trace.totals.errors, trace.totals.orphans) == (2, 1)


def test_missing_trace_event_gets_a_synthetic_root(fixture_path: Path) -> None:
    trace = explore.load_traces(fixture_path).get(HEADLESS)
    assert trace.root.synthetic and trace.root.span_id == HEADLESS
    assert shape(trace.root) == ("(trace event missing)", [("OpenAI", [("after", [])])])
    assert [s.name for s in trace.spans] == ["OpenAI", "after"]
    assert trace.totals.latency == pytest.approx(0.7, abs=1e-3)


def test_parent_cycle_is_broken_into_orphans() -> None:
    def ev(span: str, parent: str) -> dict[str, object]:
        return {
            "event": "$ai_span",
            "distinct_id": "d",
            "timestamp": f"2026-01-01T00:00:0{span}Z",
            "properties": {
                "$ai_trace_id": "t",
                "$ai_span_id": span,
                "$ai_parent_id": parent,
                "$ai_span_name": f"s{span}",
            },
        }

    (trace,) = explore.load_traces([ev("1", "2"), ev("2", "1")])
    assert shape(trace.root) == ("(trace event missing)", [("s1", [("s2", [])])])
    assert trace.root.children[0].orphan and len(trace.spans) == 2


def test_query_api_rows_with_string_properties_load() -> None:
    rows = [
        {
            "uuid": "u",
            "event": "$ai_generation",
            "distinct_id": "d",
            "timestamp": "2026-01-01T00:00:00.5Z",
            "properties": json.dumps(
                {
                    "$ai_trace_id": "t",
                    "$ai_span_id": "t",
                    "$ai_model": "gpt-4o",
                    "$ai_input_tokens": 3,
                    "$ai_total_cost_usd": 0.25,
                }
            ),
        }
    ]
    (trace,) = explore.load_traces(rows)
    assert trace.root.model == "gpt-4o" and trace.root.start == 1_767_225_600.5
    assert trace.totals.cost_usd == 0.25 and trace.totals.input_tokens == 3


def test_memory_sink_and_event_list_load_the_same(fixture_path: Path) -> None:
    sink = MemorySink()
    exporter = PosthogExporter(sink=sink)
    with exporter.trace("answer", input={"q": "hi"}, distinct_id="u1") as trace:
        with trace.generation(
            "chat",
            model="gpt-4o-mini",
            provider="openai",
            input=[{"role": "user", "content": "hi"}],
        ) as gen:
            gen.update(
                output=[{"role": "assistant", "content": "yo"}],
                usage={"input_tokens": 10, "output_tokens": 2},
            )
    exporter.flush()
    from_sink = explore.load_traces(sink)
    from_list = explore.load_traces(list(sink.events))
    assert [t.trace_id for t in from_sink] == [t.trace_id for t in from_list] == [trace.trace_id]
    assert shape(from_sink[0].root) == ("answer", [("chat", [])])
    assert from_sink[0].totals.input_tokens == 10
    exporter.shutdown()


def test_trace_list_get_and_errors(fixture_path: Path) -> None:
    traces = explore.load_traces(fixture_path)
    assert traces.get("00000000-0000-4000-8000-000000000002").name == "ChatAnthropic"
    with pytest.raises(KeyError, match="4 traces match"):
        traces.get("00000000")
    assert isinstance(traces[1:], explore.TraceList) and len(traces[1:]) == 3
    with pytest.raises(TypeError, match="JSONL path, a MemorySink or a list"):
        explore.load_traces(42)
    with pytest.raises(FileNotFoundError):
        explore.load_traces(fixture_path.with_name("missing.jsonl"))


def test_malformed_events_still_load_and_render() -> None:
    import matplotlib.pyplot as plt

    events: list[dict[str, object]] = [
        {"event": "$ai_generation", "properties": None},  # no trace id: skipped
        {"event": "$ai_span", "properties": "not json", "timestamp": "x"},  # skipped
        {"event": "$pageview", "properties": {"$ai_trace_id": "t"}},  # not an $ai_ span
        {
            "event": "$ai_generation",
            "timestamp": None,
            "properties": {
                "$ai_trace_id": "t",
                "$ai_span_id": "g",
                "$ai_parent_id": "t",
                "$ai_latency": "slow",
                "$ai_input_tokens": "12",
                "$ai_output_tokens": True,
                "$ai_model": "m",
                "$ai_error": {"code": 500},
            },
        },
        {
            "event": "$ai_span",
            "timestamp": 1_767_225_600,
            "properties": {
                "$ai_trace_id": "t",
                "$ai_span_id": "s",
                "$ai_span_name": "<script>x</script>",
            },
        },
    ]
    (trace,) = explore.load_traces(events)
    assert trace.root.synthetic
    gen = trace.find("generation")[0]
    assert (gen.latency, gen.start, gen.tokens("input_tokens"), gen.tokens("output_tokens")) == (
        None,
        None,
        12,
        None,
    )
    assert gen.is_error and gen.error == '{"code": 500}'
    assert [s.span_id for s in trace.spans] == ["s", "g"]  # unknown start sorts last
    assert "&lt;script&gt;" in trace._repr_html_() and "<script>" not in trace._repr_html_()
    assert "generation  [generation]  m  12→? tok" in str(trace)
    assert gen.cost is None and trace.totals.unpriced == 1  # model "m" has no price
    ax = trace.plot_waterfall()
    assert [t.get_text() for t in ax.get_yticklabels()] == ["├─ <script>x</script>"]
    plt.close("all")
    df = explore.to_dataframe(trace)
    assert df.span_id.tolist() == ["s", "g"] and df.start.isna().tolist() == [False, True]
