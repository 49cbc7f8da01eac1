"""explore: HTML / text / rich renderings, the waterfall, the DataFrame, lazy imports."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pandas as pd
import pytest

from posthog_callbacks import explore
from support.explore_ids import BROKEN, RAG, SOLO


def test_html_tree_has_one_details_per_span_and_escapes_content(fixture_path: Path) -> None:
    trace = explore.load_traces(fixture_path).get(RAG)
    page = trace._repr_html_()
    kinds = re.findall(r'<details class="phc-span" data-kind="(\w+)"', page)
    assert kinds == ["trace", "span", "embedding", "generation", "span"]
    assert "<code>gpt-4o-mini-2024-07-18 (openai)</code>" in page
    assert "120→30 tok (cache read 100, reasoning 4)" in page
    assert '<span class="phc-cost">~$0.0000285</span>' in page
    assert '<span class="phc-latency">1.20s</span>' in page
    # input/output on demand, escaped: the model's "<b>" must not become markup
    assert "<summary>input</summary>" in page and "<summary>output</summary>" in page
    assert "A product &lt;b&gt;analytics&lt;/b&gt; platform." in page
    assert "<b>analytics</b>" not in page
    assert "Answer from &lt;context&gt;" in page
    assert "5 spans · 125 in / 30 out tokens · 100 cache read" in page


def test_html_marks_errors_and_orphans(fixture_path: Path) -> None:
    page = explore.load_traces(fixture_path).get(BROKEN)._repr_html_()
    assert "orphan: parent missing" in page
    assert '<span class="phc-error" style="color:#dc2626">TimeoutError: search timed out' in page


def test_trace_list_html_is_a_summary_table(fixture_path: Path) -> None:
    page = explore.load_traces(fixture_path)._repr_html_()
    assert page.count("<tr>") == 5  # header + four traces
    assert "<td>rag-chain</td>" in page
    assert "<td>125</td><td>30</td><td>1.50s</td><td>~$0.0000286</td><td>0</td>" in page
    # the fixture's ids share 35 characters: the table shows enough to tell them apart
    assert f"<code>{RAG}</code>" in page
    assert "~ cost estimated locally with genai-prices" in page


def test_plain_text_tree(fixture_path: Path) -> None:
    text = str(explore.load_traces(fixture_path).get(RAG))
    assert text.splitlines() == [
        f"trace {RAG} · user user-1 · session sess-1",
        "5 spans · 125 in / 30 out tokens · 100 cache read · 4 reasoning · 1.50s · "
        "~$0.0000286 (estimated) · models: gpt-4o-mini-2024-07-18, text-embedding-3-small",
        "rag-chain  [trace]  1.50s",
        "├── retriever  [span]  195ms",
        "│   └── OpenAIEmbeddings  [embedding]  text-embedding-3-small (openai)  5 tok  100ms"
        "  ~$0.0000001",
        "├── ChatOpenAI  [generation]  gpt-4o-mini-2024-07-18 (openai)  120→30 tok "
        "(cache read 100, reasoning 4)  1.20s  ~$0.0000285",
        "└── StrOutputParser  [span]  10ms",
    ]
    broken = str(explore.load_traces(fixture_path).get(BROKEN))
    assert "├── lost-step  [span]  100ms  (orphan: parent missing)" in broken
    assert "└── search_tool  [span]  100ms  ERROR: TimeoutError: search timed out" in broken


def test_rich_tree(fixture_path: Path) -> None:
    from rich.console import Console
    from rich.tree import Tree

    trace = explore.load_traces(fixture_path).get(RAG)
    tree = trace.__rich__()
    assert isinstance(tree, Tree)
    console = Console(width=200, record=True, color_system=None)
    console.print(trace)
    out = console.export_text()
    assert "└── rag-chain  [trace]  1.50s" in out
    assert "OpenAIEmbeddings  [embedding]  text-embedding-3-small (openai)  5 tok  100ms" in out


def test_waterfall_draws_one_bar_per_span(fixture_path: Path) -> None:
    import matplotlib.pyplot as plt

    trace = explore.load_traces(fixture_path).get(RAG)
    ax = trace.plot_waterfall()
    bars = [p for p in ax.patches if p.get_height() > 0 and p.get_y() > -5][:5]
    # the tree gutter shows the nesting; labels are left-aligned
    labels = ax.get_yticklabels()
    assert [t.get_text() for t in labels] == [
        "rag-chain",
        "├─ retriever",
        "│  └─ OpenAIEmbeddings (text-embedding-3-small)",
        "├─ ChatOpenAI (gpt-4o-mini-2024-07-18)",
        "└─ StrOutputParser",
    ]
    assert {t.get_horizontalalignment() for t in labels} == {"left"}
    # a 1.5 s trace gets a millisecond axis: starts relative to the trace start, widths
    # are the latencies
    assert ax.get_xlabel() == "milliseconds since trace start"
    assert [round(b.get_x()) for b in bars] == [0, 5, 10, 210, 1420]
    assert [round(b.get_width()) for b in bars] == [1500, 195, 100, 1200, 10]
    # duration on every bar, tokens on model calls
    assert [t.get_text().strip() for t in ax.texts] == [
        "1.50s",
        "195ms",
        "100ms · 5 tok",
        "1.20s · 120→30 tok",
        "10ms",
    ]
    assert ax.get_title(loc="left") == "rag-chain"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "trace",
        "span",
        "generation",
        "embedding",
    ]
    plt.close("all")


def test_waterfall_legend_shows_errors_and_orphans(fixture_path: Path) -> None:
    import matplotlib.pyplot as plt

    ax = explore.load_traces(fixture_path).get(BROKEN).plot_waterfall()
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "trace",
        "span",
        "error",
        "orphan (parent missing)",
    ]
    plt.close("all")


def test_waterfall_of_a_long_trace_is_in_seconds() -> None:
    import matplotlib.pyplot as plt

    events = [
        {
            "event": "$ai_trace",
            "timestamp": 1_767_225_600,
            "properties": {"$ai_trace_id": "t", "$ai_span_name": "slow", "$ai_latency": 12.0},
        }
    ]
    ax = explore.load_traces(events)[0].plot_waterfall()
    assert ax.get_xlabel() == "seconds since trace start"
    assert [round(p.get_width(), 1) for p in ax.patches if p.get_height() > 0][:1] == [12.0]
    plt.close("all")


def test_dataframe_one_row_per_span(fixture_path: Path) -> None:
    df = explore.to_dataframe(fixture_path)
    assert list(df.columns) == list(explore.DATAFRAME_COLUMNS)
    assert list(df.columns[:14]) == [
        "name",
        "kind",
        "model",
        "provider",
        "input_tokens",
        "output_tokens",
        "cache_read_tokens",
        "cache_creation_tokens",
        "reasoning_tokens",
        "latency_ms",
        "cost_usd",
        "cost_estimated",
        "is_error",
        "error",
    ]
    assert list(df.columns[-3:]) == ["trace_id", "span_id", "parent_id"]
    assert len(df) == 11  # 5 + 1 + 3 + 2 spans; feedback, pageview and the bad line skipped
    gen = df[df.name == "ChatOpenAI"].iloc[0]
    assert (gen.trace_id, gen.parent_id, gen.kind, gen.model, gen.provider) == (
        RAG,
        RAG,
        "generation",
        "gpt-4o-mini-2024-07-18",
        "openai",
    )
    assert (gen.input_tokens, gen.output_tokens, gen.cache_read_tokens, gen.reasoning_tokens) == (
        120,
        30,
        100,
        4,
    )
    assert pd.isna(gen.cache_creation_tokens)
    assert gen.cost_usd == pytest.approx(0.0000285) and gen.cost_estimated
    assert gen.latency_ms == pytest.approx(1200) and gen.latency == pytest.approx(1.2)
    assert gen.depth == 1
    assert gen.input_preview == "what is posthog?"
    assert gen.output_preview == "A product <b>analytics</b> platform."
    assert gen.start == pd.Timestamp("2026-01-01T00:00:00.21", tz="UTC")
    assert (gen.distinct_id, gen.session_id) == ("user-1", "sess-1")
    assert str(df.input_tokens.dtype) == "Int64"
    assert df[df.is_orphan].name.tolist() == ["lost-step"]
    assert df[df.is_error].name.tolist() == ["agent", "search_tool"]
    by_model = df.groupby("model")[["input_tokens", "output_tokens"]].sum()
    assert by_model.loc["claude-3-5-haiku-20241022"].tolist() == [20, 7]
    by_user = df.groupby("distinct_id").is_error.mean()
    assert by_user["user-1"] == pytest.approx(2 / 8)
    assert df.cost_usd.sum() == pytest.approx(
        sum(t.totals.cost_usd or 0 for t in explore.load_traces(fixture_path))
    )


def test_dataframe_from_traces_equals_from_events(fixture_path: Path) -> None:
    traces = explore.load_traces(fixture_path)
    from_traces = explore.to_dataframe(traces)
    from_path = explore.to_dataframe(fixture_path)
    from_events = explore.to_dataframe(explore.load_events(fixture_path))
    pd.testing.assert_frame_equal(from_traces, from_path)
    pd.testing.assert_frame_equal(from_traces, from_events)
    assert len(from_traces) == 11
    one = explore.to_dataframe(traces.get(SOLO))
    pd.testing.assert_frame_equal(
        one, from_traces[from_traces.trace_id == SOLO].reset_index(drop=True)
    )


def test_missing_notebooks_extra_names_the_install(
    monkeypatch: pytest.MonkeyPatch, fixture_path: Path
) -> None:
    trace = explore.load_traces(fixture_path).get(RAG)
    for module in ("pandas", "matplotlib", "matplotlib.pyplot", "rich", "rich.tree", "rich.text"):
        monkeypatch.setitem(sys.modules, module, None)  # None: "import" raises ImportError
    extra = r'pip install "posthog-callbacks\[notebooks\]"'
    with pytest.raises(ImportError, match=f"needs pandas for this: {extra}"):
        explore.to_dataframe(fixture_path)
    with pytest.raises(ImportError, match=f"needs matplotlib for this: {extra}"):
        trace.plot_waterfall()
    with pytest.raises(ImportError, match=f"needs rich for this: {extra}"):
        trace.__rich__()
    assert "rag-chain  [trace]" in str(trace)  # plain text needs nothing


def test_importing_explore_and_cli_imports_no_optional_dependency() -> None:
    import subprocess

    code = (
        "import sys, posthog_callbacks.explore, posthog_callbacks.cli; "
        "print([m for m in ('pandas', 'matplotlib', 'rich', 'genai_prices', 'langchain_core', "
        "'llama_index') if m in sys.modules])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"
