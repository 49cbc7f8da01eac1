"""Every notebook in notebooks/ runs top to bottom, offline, and is committed without outputs."""

from __future__ import annotations

import shutil
from pathlib import Path

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


@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("POSTHOG_API_KEY", "POSTHOG_PERSONAL_API_KEY", "POSTHOG_PROJECT_ID",
                "POSTHOG_HOST", "OPENAI_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.delenv("MPLBACKEND", raising=False)  # Jupyter's inline backend
    shutil.copy(NOTEBOOKS / f"{name}.ipynb", tmp_path)
    nb = nbformat.read(tmp_path / f"{name}.ipynb", as_version=4)
    NotebookClient(nb, timeout=120, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "\n".join(str(o.get("text", "")) + str(o.get("data", {}).get("text/plain", ""))
                     for o in outputs)
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
    elif name == "send_to_posthog":
        assert "skipped: no POSTHOG_API_KEY" in text
        assert "$ai_generation content sent: [] tokens: 5 1" in text
        assert "$ai_trace content sent: [] tokens: None None" in text
