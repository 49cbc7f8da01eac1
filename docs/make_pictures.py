"""Regenerate the pictures in docs/exploring.md from a real run of the offline demo.

    .venv/bin/python docs/make_pictures.py

Runs ``posthog-callbacks demo`` (LangChain, LangGraph and LlamaIndex apps with fake models,
traced by this library) into a temporary JSONL file, then writes:

* ``docs/exploring-tree.svg``: the LangGraph agent's trace as ``rich.print(trace)`` shows it;
* ``docs/exploring-waterfall.png``: ``trace.plot_waterfall()`` of the same trace;
* ``docs/exploring-cli.svg``: ``posthog-callbacks show FILE --summary`` and ``--errors``.

Ids, times and latencies differ from run to run; the shapes, tokens and costs do not.
Needs the ``[all]`` extras (frameworks, matplotlib, rich, genai-prices).
"""

from __future__ import annotations

import io
import sys
import tempfile
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
from rich.console import Console
from rich.text import Text

from posthog_callbacks import explore
from posthog_callbacks.cli import main

DOCS = Path(__file__).resolve().parent
WIDTH = 150


def cli(*args: str) -> str:
    """Run the command in-process and return what it printed."""
    out = io.StringIO()
    with redirect_stdout(out), redirect_stderr(io.StringIO()):
        code = main(list(args))
    if code not in (0, 1):
        raise SystemExit(f"posthog-callbacks {' '.join(args)} exited with {code}")
    return out.getvalue()


def terminal() -> Console:
    return Console(
        file=io.StringIO(), record=True, width=WIDTH, force_terminal=True, color_system="truecolor"
    )


def main_() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "traces.jsonl"
        cli("demo", "--out", str(path), "--plain")
        traces = explore.load_traces(path)
        agent = traces.get("weather-agent")

        tree = terminal()
        tree.print(agent)
        tree.save_svg(str(DOCS / "exploring-tree.svg"), title="rich.print(trace)")

        ax = agent.plot_waterfall()
        ax.figure.savefig(DOCS / "exploring-waterfall.png", dpi=110, bbox_inches="tight")
        plt.close("all")

        console = terminal()
        for options in ("--summary", "--errors --plain"):
            console.print(Text(f"$ posthog-callbacks show traces.jsonl {options}", style="bold"))
            text = cli("show", str(path), *options.split())
            console.print(Text(text.replace(str(path), "traces.jsonl").rstrip("\n")))
            console.print()
        console.save_svg(str(DOCS / "exploring-cli.svg"), title="posthog-callbacks show")
    print(f"wrote {', '.join(p.name for p in sorted(DOCS.glob('exploring-*')))}", file=sys.stderr)


if __name__ == "__main__":
    main_()
