"""Importing: the package imports no framework; a missing LlamaIndex names the extra."""

from __future__ import annotations

import subprocess
import sys

BLOCK = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name == "llama_index" or name.startswith(("llama_index.", "llama_index_")):
            raise ImportError(f"blocked {name}")
        return None
sys.meta_path.insert(0, Block())
"""


def run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )


def test_package_import_loads_no_framework() -> None:
    result = run(
        "import sys, posthog_callbacks; "
        "print(sorted(m for m in sys.modules if m.startswith(('llama_index', "
        "'langchain'))))"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_missing_llama_index_names_the_extra() -> None:
    result = run(BLOCK + "import posthog_callbacks.llama_index")
    assert result.returncode != 0
    assert 'pip install "posthog-callbacks[llama-index]"' in result.stderr
