"""Run the posthog-callbacks command: in a subprocess (the real entry point) or in-process
(fast: the frameworks are imported once per test session)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

from posthog_callbacks.cli import main


def run(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m posthog_callbacks.cli ARGS`` in a subprocess, without POSTHOG_* vars."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("POSTHOG_")}
    full_env.update({"PYTHONIOENCODING": "utf-8", **(env or {})})
    return subprocess.run(
        [sys.executable, "-m", "posthog_callbacks.cli", *args],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd,
        timeout=120,
    )


def invoke(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``main(ARGS)`` in this process, with its output captured (same result shape)."""
    out, err = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as mp:
        for key in list(os.environ):
            if key.startswith("POSTHOG_"):
                mp.delenv(key)
        for key, value in (env or {}).items():
            mp.setenv(key, value)
        with redirect_stdout(out), redirect_stderr(err):
            code = main(list(args))
    return subprocess.CompletedProcess(list(args), code, out.getvalue(), err.getvalue())
