#!/usr/bin/env python3
"""Set up ``.venv`` and run the project's jobs. Needs only Python 3.10+.

python3 dev.py demo   # offline demo: trace LangChain + LlamaIndex apps into traces.jsonl
python3 dev.py test   # ruff, mypy --strict and the whole test suite
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / ("python.exe" if os.name == "nt" else "python")


def run(*cmd: str | Path) -> None:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    subprocess.run([str(c) for c in cmd], cwd=ROOT, check=True)


def ensure_venv(job: str) -> None:
    """Create .venv and install what ``job`` needs, again whenever pyproject.toml changed.

    The demo needs the package with its framework and notebook extras and the ``demo``
    dependency group (LangGraph, for its agent app); the tests need the ``dev`` group
    (which includes ``demo``: linters, test tools, provider packages for the cassettes).
    """
    group = {"demo": "demo", "test": "dev"}[job]
    wanted = ["-e", ".[all]", "--group", group]
    stamp = VENV / f".installed-{job}"
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if stamp.exists() and stamp.read_text() == digest and PY.exists():
        return
    if not PY.exists():
        print(f"creating {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    # dependency groups (--group) need pip >= 25.1
    run(PY, "-m", "pip", "install", "--quiet", "--upgrade", "pip>=25.1")
    run(PY, "-m", "pip", "install", "--quiet", *wanted)
    stamp.write_text(digest)


def main(argv: list[str]) -> int:
    job = argv[0] if argv else "help"
    if job not in ("demo", "test"):
        print(__doc__)
        return 2
    ensure_venv(job)
    try:
        if job == "demo":
            run(BIN / "posthog-callbacks", "demo", "--out", "traces.jsonl", *argv[1:])
        else:
            run(BIN / "ruff", "check", ".")
            run(BIN / "ruff", "format", "--check", ".")
            run(PY, "-m", "mypy")  # strict on the package; tests and bench checked too
            run(PY, "-m", "pytest", "-q", *argv[1:])
    except subprocess.CalledProcessError as exc:
        return exc.returncode or 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
