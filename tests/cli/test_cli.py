"""posthog-callbacks demo (and show basics): in-process where the frameworks are needed,
in a subprocess where the real entry point or a missing framework matters."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from posthog_callbacks import explore
from support.capture_server import TEST_API_KEY, CaptureServer, closed_port_url
from support.cli_run import invoke, run
from support.explore_ids import FIXTURE, RAG


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], Path]:
    out = tmp_path_factory.mktemp("demo") / "traces.jsonl"
    out.write_text("stale line from an earlier run\n")
    return invoke("demo", "--out", str(out), "--plain", "--to-posthog"), out  # no key set


def test_demo_runs_all_four_apps_and_prints_their_trees(
    demo: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    proc, out = demo
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == (
        "posthog-callbacks demo: --to-posthog needs POSTHOG_API_KEY (your "
        "project key, phc_...); writing the local file only\n"
    )
    text = proc.stdout
    for app in ("langchain-rag", "langgraph-agent", "llama-index-query", "llama-index-agent"):
        assert f"  {app:<18} ok " in text
        assert f"── {app} ─" in text
    assert "rag-chain  [trace]" in text
    assert (
        "DemoChatOpenAI  [generation]  gpt-4o-mini-2024-07-18 (openai)  182→24 tok "
        "(cache read 128)" in text
    )
    assert "get_weather  [span]" in text
    # the demo shows a failing tool, and the cost of each model call
    assert (
        "get_air_quality  [span]  " in text
        and "ERROR: TimeoutError: air-quality service did not answer for Paris within 2s" in text
    )
    assert (
        "gpt-4o-mini-2024-07-18.chat  [generation]  gpt-4o-mini-2024-07-18 (openai)  214→19 tok"
        in text
    )
    assert "~$0.0000321" in text  # 182→24 tokens of gpt-4o-mini, 128 of them cached
    assert "multiply  [span]" in text
    assert "4/4 demo apps ran; 37 events in 4 trace(s) written to" in text
    assert f"posthog-callbacks show {out}" in text


def test_demo_file_holds_the_expected_traces(
    demo: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    _, out = demo
    assert "stale line" not in out.read_text()  # started afresh
    traces = explore.load_traces(out)
    by_app = {t.root.properties["demo_app"]: t for t in traces}
    assert list(by_app) == [
        "langchain-rag",
        "langgraph-agent",
        "llama-index-query",
        "llama-index-agent",
    ]
    for trace in traces:
        assert trace.distinct_id == "demo-user" and trace.session_id == "demo-session"
        assert trace.totals.orphans == 0
        assert trace.totals.errors == (trace.name == "weather-agent")
        assert trace.totals.cost_estimated and trace.totals.cost_usd
        assert all(
            s.properties["demo_app"] == trace.root.properties["demo_app"] for s in trace.spans
        )

    rag = by_app["langchain-rag"]
    assert rag.root.event == "$ai_trace" and rag.name == "rag-chain"
    assert rag.root.properties["$ai_framework"] == "langchain"
    (gen,) = [s for s in rag.spans if s.kind == "generation"]
    assert gen.parent_id == rag.trace_id
    assert (gen.model, gen.provider) == ("gpt-4o-mini-2024-07-18", "openai")
    assert (
        gen.tokens("input_tokens"),
        gen.tokens("output_tokens"),
        gen.tokens("cache_read_tokens"),
    ) == (182, 24, 128)
    assert gen.input[0]["role"] == "system" and "PostHog" in gen.input[0]["content"]

    graph = by_app["langgraph-agent"]
    walked = [
        (d, s.name)
        for d, s in graph.walk()
        if s.kind != "span" or s.name in ("agent", "tools", "get_weather", "get_air_quality")
    ]
    # the ToolNode runs both tool calls at once: either may start first
    walked[4:6] = sorted(walked[4:6])
    assert walked == [
        (0, "weather-agent"),
        (1, "agent"),
        (2, "DemoChatOpenAI"),
        (1, "tools"),
        (2, "get_air_quality"),
        (2, "get_weather"),
        (1, "agent"),
        (2, "DemoChatOpenAI"),
    ]
    (failed,) = [s for s in graph.spans if s.is_error]
    assert failed.name == "get_air_quality" and failed.error == (
        "TimeoutError: air-quality service did not answer for Paris within 2s"
    )
    assert not graph.root.is_error  # the agent recovered: the tool error went to the model
    assert (graph.totals.input_tokens, graph.totals.output_tokens) == (254, 39)

    query = by_app["llama-index-query"]
    assert query.root.properties["$ai_framework"] == "llama_index"
    assert {s.kind for s in query.spans} == {"trace", "span", "embedding", "generation"}
    (embed,) = [s for s in query.spans if s.kind == "embedding"]
    assert embed.model == "text-embedding-3-small"
    assert (query.totals.input_tokens, query.totals.output_tokens) == (214, 19)

    agent = by_app["llama-index-agent"]
    gens = [s for s in agent.spans if s.kind == "generation"]
    assert [(g.tokens("input_tokens"), g.tokens("output_tokens")) for g in gens] == [
        (402, 31),
        (455, 22),
    ]
    assert agent.find("multiply")[0].output is not None


def test_show_renders_a_file(tmp_path: Path) -> None:
    proc = run("show", str(FIXTURE), "--plain")
    assert proc.returncode == 0, proc.stderr
    assert "rag-chain  [trace]  1.50s" in proc.stdout
    assert "├── lost-step  [span]  100ms  (orphan: parent missing)" in proc.stdout
    assert proc.stdout.rstrip().endswith(
        f"4 trace(s) in {FIXTURE} · 2 error(s) · ~$0.000142 (estimated)"
    )
    assert proc.stderr == (
        f"posthog-callbacks: skipped 1 unreadable line(s) in {FIXTURE} (first: line 14)\n"
    )

    one = run("show", str(FIXTURE), "--trace", RAG[:-1] + "1", "--plain")
    assert one.returncode == 0
    assert one.stdout.splitlines()[:3] == [
        f"trace {RAG} · user user-1 · session sess-1",
        "5 spans · 125 in / 30 out tokens · 100 cache read · 4 reasoning · 1.50s · "
        "~$0.0000286 (estimated) · models: gpt-4o-mini-2024-07-18, text-embedding-3-small",
        "rag-chain  [trace]  1.50s",
    ]
    assert "ChatAnthropic" not in one.stdout


def test_show_with_rich(tmp_path: Path) -> None:
    proc = run("show", str(FIXTURE), "--trace", RAG)
    assert proc.returncode == 0
    assert "└── rag-chain  [trace]  1.50s" in proc.stdout
    assert "ChatOpenAI  [generation]  gpt-4o-mini-2024-07-18 (openai)  120→30 tok" in proc.stdout


def _shadow(tmp_path: Path, *packages: str) -> dict[str, str]:
    """A PYTHONPATH on which ``packages`` fail to import, as if not installed."""
    for name in packages:
        pkg = tmp_path / "shadow" / name
        pkg.mkdir(parents=True)
        (pkg / "__init__.py").write_text(f'raise ImportError("No module named {name}")\n')
    return {
        "PYTHONPATH": os.pathsep.join([str(tmp_path / "shadow"), os.environ.get("PYTHONPATH", "")])
    }


def test_demo_reports_a_failing_framework_and_shows_the_others(tmp_path: Path) -> None:
    out = tmp_path / "t.jsonl"
    proc = run("demo", "--out", str(out), "--plain", env=_shadow(tmp_path, "llama_index"))
    assert proc.returncode == 0, proc.stderr
    assert "  llama-index-query  FAILED" in proc.stdout
    assert "  langchain-rag      ok " in proc.stdout
    assert (
        "llama-index-query failed: No module named llama_index "
        '(pip install "posthog-callbacks[llama-index]")'
    ) in proc.stderr
    assert "2/4 demo apps ran" in proc.stdout
    assert [t.root.properties["demo_app"] for t in explore.load_traces(out)] == [
        "langchain-rag",
        "langgraph-agent",
    ]


def test_demo_fails_when_nothing_works(tmp_path: Path) -> None:
    proc = run(
        "demo",
        "--out",
        str(tmp_path / "t.jsonl"),
        "--plain",
        env=_shadow(tmp_path, "llama_index", "langchain_core"),
    )
    assert proc.returncode == 1
    assert "0/4 demo apps ran" in proc.stdout
    assert proc.stderr.count(" failed: ") == 4


def test_demo_rejects_unknown_apps() -> None:
    bad = run("demo", "--only", "nope")
    assert bad.returncode == 2 and "unknown app(s) nope" in bad.stderr


def test_demo_to_posthog_sends_what_it_writes(
    tmp_path: Path, capture_server: CaptureServer
) -> None:
    out = tmp_path / "t.jsonl"
    proc = invoke(
        "demo",
        "--out",
        str(out),
        "--plain",
        "--to-posthog",
        "--only",
        "langchain-rag",
        env={"POSTHOG_API_KEY": TEST_API_KEY, "POSTHOG_HOST": capture_server.url},
    )
    assert proc.returncode == 0, proc.stderr
    assert f"Sending to PostHog at {capture_server.url}" in proc.stdout
    assert "Sent 9 events to PostHog." in proc.stdout
    assert capture_server.wait_for_events(9)
    written = explore.load_events(out)
    assert sorted(e["uuid"] for e in capture_server.events) == sorted(e["uuid"] for e in written)
    assert TEST_API_KEY not in out.read_text()


def test_demo_to_unreachable_posthog_still_writes_the_file(tmp_path: Path) -> None:
    out = tmp_path / "t.jsonl"
    proc = invoke(
        "demo",
        "--out",
        str(out),
        "--plain",
        "--to-posthog",
        "--only",
        "langchain-rag",
        env={"POSTHOG_API_KEY": TEST_API_KEY, "POSTHOG_HOST": closed_port_url()},
    )
    assert proc.returncode == 0
    assert "9 event(s) not delivered to PostHog" in proc.stderr
    assert "1/1 demo apps ran; 9 events in 1 trace(s)" in proc.stdout
    assert len(explore.load_events(out)) == 9
