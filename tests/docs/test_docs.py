"""The docs site builds strictly, its runnable snippets run, and the reference stays true."""

from __future__ import annotations

import inspect
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from posthog_callbacks import MemorySink, PosthogExporter
from posthog_callbacks.sinks import DEFAULT_HOST

ROOT = Path(__file__).parents[2]
DOCS = ROOT / "docs"
MARKER = re.compile(r"<!-- runnable -->\s*\n```python\n(.*?)\n```", re.DOTALL)
PAGES_WITH_SNIPPETS = [
    "getting-started",
    "langchain",
    "langgraph",
    "llama-index",
    "configuration",
    "events",
    "privacy",
    "serverless",
    "exploring",
    "migrating",
    "troubleshooting",
]


def runnable_blocks(page: Path) -> list[str]:
    """The ```python blocks preceded by an ``<!-- runnable -->`` line."""
    return MARKER.findall(page.read_text(encoding="utf-8"))


@pytest.mark.parametrize("name", PAGES_WITH_SNIPPETS)
def test_page_snippets_run(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = runnable_blocks(DOCS / f"{name}.md")
    assert blocks, f"{name}.md has no runnable snippet"
    for var in (
        "POSTHOG_API_KEY",
        "POSTHOG_HOST",
        "POSTHOG_PERSONAL_API_KEY",
        "POSTHOG_PROJECT_ID",
        "OPENAI_API_KEY",
        "ANTHROPIC_API_KEY",
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": f"docs_{name.replace('-', '_')}"}
    for i, block in enumerate(blocks):
        code = compile(block, f"docs/{name}.md[runnable {i}]", "exec")
        exec(code, namespace)
    for value in list(namespace.values()):
        if isinstance(value, PosthogExporter):
            value.shutdown()


def test_configuration_reference_lists_every_option_with_its_default() -> None:
    text = (DOCS / "configuration.md").read_text(encoding="utf-8")
    rows = dict(re.findall(r"^\| `(\w+)` \|[^|]*\| ([^|]+) \|", text, re.MULTILINE))
    params = inspect.signature(PosthogExporter.__init__).parameters
    options = [p for p in params if p != "self"]
    assert list(rows) == options
    # Presets: the documented defaults must be the ones a real exporter ends up with.
    plain = PosthogExporter(sink=MemorySink())
    serverless = PosthogExporter(sink=MemorySink(), serverless=True)
    try:
        effective = {
            "flush_at": (plain.flush_at, serverless.flush_at),
            "flush_interval": (plain.flush_interval, serverless.flush_interval),
        }
    finally:
        plain.shutdown()
        serverless.shutdown()
    assert rows["flush_at"].strip() == (
        f"`{effective['flush_at'][0]}` (`{effective['flush_at'][1]}` with `serverless`)"
    )
    interval, serverless_interval = effective["flush_interval"]
    assert rows["flush_interval"].strip() == (
        f"`{interval}` s (`{serverless_interval}` with `serverless`)"
    )
    assert rows["host"].strip() == f"`{DEFAULT_HOST}`"
    for name in options:
        if name in ("flush_at", "flush_interval", "host"):
            assert params[name].default is None, name  # resolved from presets / environment
            continue
        documented = rows[name].strip()
        assert documented.strip("`").split("`")[0] == repr(params[name].default), name


def test_mkdocs_builds_strictly(tmp_path: Path) -> None:
    shutil.copytree(DOCS, tmp_path / "docs")
    shutil.copy(ROOT / "mkdocs.yml", tmp_path / "mkdocs.yml")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mkdocs",
            "build",
            "--strict",
            "-q",
            "-f",
            str(tmp_path / "mkdocs.yml"),
            "-d",
            str(tmp_path / "site"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "NO_COLOR": "1"},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    pages = sorted(p.stem for p in DOCS.glob("*.md"))
    for page in pages:
        target = "index.html" if page == "index" else f"{page}/index.html"
        assert (tmp_path / "site" / target).exists(), page
    built = (tmp_path / "site" / "configuration" / "index.html").read_text(encoding="utf-8")
    assert "POSTHOG_API_KEY" in built


def test_every_page_is_in_the_nav() -> None:
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    linked = set(re.findall(r"([\w-]+)\.md", nav))
    assert {p.stem for p in DOCS.glob("*.md")} == linked
