"""Every notebook in notebooks/ runs top to bottom, offline, and is committed without outputs."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).parents[2] / "notebooks"
NAMES = ["langchain_quickstart", "llama_index_quickstart", "explore_traces", "send_to_posthog"]


def test_every_notebook_is_listed() -> None:
    assert sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb")) == sorted(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_committed_without_outputs(name: str) -> None:
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, name


@pytest.fixture(scope="module")
def executed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """All notebooks, executed concurrently (each in its own kernel and folder)."""
    saved = {
        v: os.environ.pop(v)
        for v in (
            "POSTHOG_API_KEY",
            "POSTHOG_PERSONAL_API_KEY",
            "POSTHOG_PROJECT_ID",
            "POSTHOG_HOST",
            "OPENAI_API_KEY",
            "MPLBACKEND",
        )
        if v in os.environ
    }
    notebooks: dict[str, Any] = {}
    clients = []
    for name in NAMES:
        folder = tmp_path_factory.mktemp(name)
        shutil.copy(NOTEBOOKS / f"{name}.ipynb", folder)
        notebooks[name] = nbformat.read(folder / f"{name}.ipynb", as_version=4)
        clients.append(
            NotebookClient(
                notebooks[name],
                timeout=120,
                kernel_name="python3",
                resources={"metadata": {"path": str(folder)}},
            )
        )

    async def run_all() -> list[Any]:
        return await asyncio.gather(*(c.async_execute() for c in clients), return_exceptions=True)

    try:
        results = asyncio.run(run_all())
    finally:
        os.environ.update(saved)
    return {
        name: (nb if not isinstance(res, BaseException) else res)
        for (name, nb), res in zip(notebooks.items(), results, strict=True)
    }


@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs(name: str, executed: dict[str, Any]) -> None:
    nb = executed[name]
    if isinstance(nb, BaseException):
        raise nb
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "\n".join(
        str(o.get("text", "")) + str(o.get("data", {}).get("text/plain", "")) for o in outputs
    )
    html = "\n".join(str(o.get("data", {}).get("text/html", "")) for o in outputs)
    if name == "langchain_quickstart":
        assert "gpt-4o-mini-2024-07-18 42 11" in text
        assert '<details class="phc-span" data-kind="generation"' in html
    elif name == "llama_index_quickstart":
        assert "input_tokens=120, output_tokens=9" in text
        assert html.count('<div class="phc-trace"') == 2
    elif name == "explore_traces":
        assert "4/4 demo apps ran" in text
        assert "skipped: set POSTHOG_PERSONAL_API_KEY" in text
        assert any("image/png" in o.get("data", {}) for o in outputs)
        # cost (estimated offline), a filter, the session table
        assert "cost: $0.0000321 (estimated with genai-prices)" in text
        assert (
            "weather-agent > get_air_quality: TimeoutError: air-quality service did not "
            "answer for Paris within 2s" in text
        )
        assert "~$0.0000321" in html and '<table class="phc-groups">' in html
        assert "<td>rag-chain</td>" in html
    elif name == "send_to_posthog":
        assert "skipped: no POSTHOG_API_KEY" in text
        assert "$ai_generation content sent: [] tokens: 5 1" in text
        assert "$ai_trace content sent: [] tokens: None None" in text
    assert "<Axes" not in text  # charts are assigned, not echoed
