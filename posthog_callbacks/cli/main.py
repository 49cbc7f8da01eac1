"""The ``posthog-callbacks`` command: ``demo`` (offline demo apps) and ``show FILE``.

``posthog-callbacks demo`` runs a LangChain RAG chain, a LangGraph agent, a LlamaIndex
query engine and a LlamaIndex agent against fake models, traced through this library into
a local JSONL file, and prints each trace. ``posthog-callbacks show traces.jsonl`` renders
a file's traces again.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from .._version import __version__

__all__ = ["main"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


class _Printer:
    """Prints traces with rich when it is installed, as plain text otherwise."""

    def __init__(self, out: TextIO, plain: bool) -> None:
        self.out = out
        self.console: Any = None
        if not plain:
            try:
                from rich.console import Console

                width = None if out.isatty() else 120
                self.console = Console(file=out, width=width, highlight=False, soft_wrap=False)
            except ImportError:
                self.console = None

    def line(self, text: str = "") -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def trace(self, trace: Any) -> None:
        if self.console is not None:
            self.console.print(trace)
        else:
            self.line(str(trace))
        self.line()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="posthog-callbacks",
        description="LLM traces from LangChain and LlamaIndex, for PostHog.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = sub.add_parser(
        "demo",
        help="run offline demo apps and write their traces to a JSONL file",
        description="Run a LangChain RAG chain, a LangGraph agent, a LlamaIndex query "
        "engine and a LlamaIndex agent with fake models (no network, no keys), "
        "record them with posthog-callbacks and print each trace.",
    )
    demo.add_argument(
        "--out",
        default="traces.jsonl",
        metavar="PATH",
        help="JSONL file to write (default: traces.jsonl)",
    )
    demo.add_argument(
        "--append", action="store_true", help="append to --out instead of starting it afresh"
    )
    demo.add_argument(
        "--to-posthog",
        action="store_true",
        help="also send the events to PostHog (needs POSTHOG_API_KEY; "
        "POSTHOG_HOST for EU / self-hosted)",
    )
    demo.add_argument(
        "--only",
        action="append",
        metavar="APP",
        help="run only this app (repeatable): langchain-rag, langgraph-agent, "
        "llama-index-query, llama-index-agent",
    )
    demo.add_argument("--plain", action="store_true", help="plain text output (no rich)")

    show = sub.add_parser(
        "show",
        help="print the traces of a JSONL file",
        description="Render the traces in a JSONL file written by "
        "JsonlSink (or `posthog-callbacks demo`).",
    )
    show.add_argument("file", metavar="FILE")
    show.add_argument("--trace", metavar="ID", help="only this trace (an id or its prefix)")
    show.add_argument("--plain", action="store_true", help="plain text output (no rich)")
    return parser


def _demo(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from .. import explore
    from ..exporter import PosthogExporter
    from ..sinks import JsonlSink, PosthogSink
    from .demo import DEMO_APPS, DemoResult, TeeSink, run_demos

    printer = _Printer(out, args.plain)
    apps = list(DEMO_APPS)
    if args.only:
        known = {a.key for a in DEMO_APPS}
        unknown = sorted(set(args.only) - known)
        if unknown:
            err.write(
                f"posthog-callbacks demo: unknown app(s) {', '.join(unknown)}; "
                f"choose from {', '.join(sorted(known))}\n"
            )
            return EXIT_USAGE
        apps = [a for a in DEMO_APPS if a.key in args.only]

    path = Path(args.out)
    file_sink = JsonlSink(path, truncate=not args.append)
    sink: Any = file_sink
    tee: TeeSink | None = None
    if args.to_posthog:
        key = (os.environ.get("POSTHOG_API_KEY") or "").strip()
        if key:
            # Few retries: a demo should say quickly that PostHog is unreachable.
            ph = PosthogSink(
                key, os.environ.get("POSTHOG_HOST") or None, max_retries=2, timeout=5.0
            )
            tee = sink = TeeSink(file_sink, ph)
            printer.line(f"Sending to PostHog at {ph.host} as well as to {path}")
        else:
            err.write(
                "posthog-callbacks demo: --to-posthog needs POSTHOG_API_KEY (your "
                "project key, phc_...); writing the local file only\n"
            )
    exporter = PosthogExporter(sink=sink, flush_at=1000, flush_interval=0.5)

    printer.line(f"Running {len(apps)} demo app(s) offline, with fake models; traces go to {path}")

    def progress(result: DemoResult) -> None:
        status = "ok" if result.ok else "FAILED"
        printer.line(
            f"  {result.app.key:<18} {status:<6} {result.seconds:5.2f}s  {result.app.title}"
        )
        if not result.ok:
            err.write(f"posthog-callbacks demo: {result.app.key} failed: {result.error}\n")
            if result.detail and os.environ.get("POSTHOG_CALLBACKS_DEBUG"):
                err.write(result.detail)

    results = run_demos(exporter, apps, on_result=progress)
    exporter.shutdown()
    stats = exporter.stats()

    ran = {r.app.key for r in results if r.ok}
    traces = [
        t
        for t in explore.load_traces(path)
        if not args.append or t.root.properties.get("demo_app") in ran
    ]
    printer.line()
    for trace in traces:
        app = trace.root.properties.get("demo_app")
        if app:
            printer.line(f"── {app} " + "─" * max(0, 60 - len(app)))
        printer.trace(trace)

    ok = sum(r.ok for r in results)
    printer.line(
        f"{ok}/{len(results)} demo apps ran; {stats.sent} events in {len(traces)} "
        f"trace(s) written to {path}"
    )
    if stats.dropped:
        err.write(f"posthog-callbacks demo: {stats.dropped} event(s) were lost ({stats})\n")
    if tee is not None:
        lost = sum(n for _, n, _ in tee.failures)
        if tee.failures:
            err.write(
                f"posthog-callbacks demo: {lost} event(s) not delivered to PostHog: "
                f"{tee.failures[0][2]}\n"
            )
        else:
            printer.line(f"Sent {stats.sent} events to PostHog.")
    printer.line(
        f"Explore them: posthog-callbacks show {path}   or, in Python: "
        f"explore.load_traces({str(path)!r})"
    )
    return EXIT_OK if ok else EXIT_FAILED


def _show(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from .. import explore

    path = Path(args.file)
    if not path.is_file():
        err.write(f"posthog-callbacks show: no such file: {path}\n")
        return EXIT_USAGE
    traces = explore.load_traces(path)
    if args.trace:
        try:
            traces = explore.TraceList([traces.get(args.trace)])
        except KeyError as exc:
            err.write(f"posthog-callbacks show: {exc.args[0]} in {path}\n")
            return EXIT_FAILED
    if not traces:
        err.write(f"posthog-callbacks show: no $ai_* traces in {path}\n")
        return EXIT_FAILED
    printer = _Printer(out, args.plain)
    for trace in traces:
        printer.trace(trace)
    if not args.trace:
        printer.line(f"{len(traces)} trace(s) in {path}")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``posthog-callbacks`` console script.

    Args:
        argv: Arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit code: 0 on success, 1 when nothing worked, 2 on a usage error.
    """
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "demo":
        return _demo(args, sys.stdout, sys.stderr)
    if args.command == "show":
        return _show(args, sys.stdout, sys.stderr)
    parser.print_help()
    return EXIT_USAGE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
