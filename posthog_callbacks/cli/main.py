"""The ``posthog-callbacks`` command: ``demo`` (offline demo apps) and ``show FILE``.

``posthog-callbacks demo`` runs a LangChain RAG chain, a LangGraph agent, a LlamaIndex
query engine and a LlamaIndex agent against fake models, traced through this library into
a local JSONL file, and prints each trace. ``posthog-callbacks show traces.jsonl`` renders
a file's traces again: as trees, one line per trace (``--summary``) or JSON (``--json``),
filtered by errors, user, session, model or text.

Every failure is one line on stderr and a non-zero exit status, never a traceback (set
``POSTHOG_CALLBACKS_DEBUG=1`` to see one). Everything printed is stripped of terminal
control sequences: trace content comes from users and models.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from .._version import __version__
from ..explore.text import clean, one_line

if TYPE_CHECKING:
    from ..explore import TraceList

__all__ = ["main"]

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for `... | head`
EXIT_INTERRUPTED = 130


class CliError(Exception):
    """A failure to report as one line (``posthog-callbacks CMD: message``)."""

    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.code = code


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
        self.out.write(clean(text) + "\n")
        self.out.flush()

    def trace(self, trace: Any) -> None:
        if self.console is not None:
            self.console.print(trace)  # a rich Tree of Text objects: no markup parsed
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
        description="Render the traces in a JSONL file written by JsonlSink (or "
        "`posthog-callbacks demo`): as trees, one line per trace (--summary) or JSON "
        "(--json). Filters combine: every one given must match.",
    )
    show.add_argument("file", metavar="FILE", help="a JSONL file of $ai_* events")
    show.add_argument(
        "--trace",
        metavar="REF",
        help="only this trace: its id, a unique prefix of it, or its name",
    )
    show.add_argument("--errors", action="store_true", help="only traces with a failed span")
    show.add_argument("--user", metavar="ID", help="only this distinct id")
    show.add_argument("--session", metavar="ID", help="only this session id")
    show.add_argument("--model", metavar="M", help="only traces using a model whose name has M")
    show.add_argument(
        "--grep", metavar="TEXT", help="only traces with TEXT in a name, input, output or error"
    )
    show.add_argument(
        "--min-latency", type=float, metavar="SECONDS", help="only traces at least this slow"
    )
    show.add_argument(
        "--sort",
        choices=("time", "latency", "cost", "tokens"),
        default="time",
        help="order: time (oldest first, the default), or latency, cost or tokens (largest first)",
    )
    show.add_argument("--limit", type=int, metavar="N", help="at most N traces")
    output = show.add_mutually_exclusive_group()
    output.add_argument("--summary", action="store_true", help="one line per trace")
    output.add_argument(
        "--json", action="store_true", help="one JSON document with the traces and their spans"
    )
    show.add_argument("--plain", action="store_true", help="plain text output (no rich)")
    return parser


def _writable_output(path: Path, append: bool) -> Any:
    """A ``JsonlSink`` for ``path``, or a :class:`CliError` saying why it cannot be."""
    from ..sinks import JsonlSink

    shown = one_line(str(path))
    if path.is_dir():
        raise CliError(f"--out {shown} is a directory; give a file path", EXIT_USAGE)
    try:
        sink = JsonlSink(path, truncate=not append)
        with path.open("ab"):
            pass
    except OSError as exc:
        reason = clean(exc.strerror or str(exc)).lower()
        raise CliError(f"cannot write --out {shown}: {reason}", EXIT_USAGE) from None
    return sink


def _demo(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from .. import explore
    from ..exporter import PosthogExporter
    from ..sinks import PosthogSink
    from .demo import DEMO_APPS, DemoResult, TeeSink, run_demos

    printer = _Printer(out, args.plain)
    apps = list(DEMO_APPS)
    if args.only:
        known = {a.key for a in DEMO_APPS}
        unknown = sorted(set(args.only) - known)
        if unknown:
            raise CliError(
                f"unknown app(s) {one_line(', '.join(unknown))}; "
                f"choose from {', '.join(sorted(known))}",
                EXIT_USAGE,
            )
        apps = [a for a in DEMO_APPS if a.key in args.only]

    path = Path(args.out)
    file_sink = _writable_output(path, args.append)
    sink: Any = file_sink
    tee: TeeSink | None = None
    if args.to_posthog:
        key = (os.environ.get("POSTHOG_API_KEY") or "").strip()
        if key:
            # Few retries: a demo should say quickly that PostHog is unreachable.
            ph = PosthogSink(
                key,
                os.environ.get("POSTHOG_HOST") or None,
                max_retries=2,
                timeout=5.0,
                retry_window=0.0,
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
            err.write(
                clean(f"posthog-callbacks demo: {result.app.key} failed: {result.error}") + "\n"
            )
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
                clean(
                    f"posthog-callbacks demo: {lost} event(s) not delivered to PostHog: "
                    f"{tee.failures[0][2]}"
                )
                + "\n"
            )
        else:
            printer.line(f"Sent {stats.sent} events to PostHog.")
    printer.line(
        f"Explore them: posthog-callbacks show {path}   or, in Python: "
        f"explore.load_traces({str(path)!r})"
    )
    return EXIT_OK if ok else EXIT_FAILED


def _load(path: Path) -> TraceList:
    from .. import explore

    shown = one_line(str(path))
    try:
        return explore.load_traces(path)
    except FileNotFoundError:
        raise CliError(f"no such file: {shown}", EXIT_USAGE) from None
    except IsADirectoryError:
        raise CliError(f"{shown} is a directory, not a JSONL file", EXIT_USAGE) from None
    except explore.NotJsonlError as exc:
        raise CliError(
            f"{one_line(str(exc))}; expected a JSONL file written by JsonlSink", EXIT_USAGE
        ) from None
    except OSError as exc:
        reason = clean(exc.strerror or str(exc)).lower()
        raise CliError(f"cannot read {shown}: {reason}", EXIT_USAGE) from None


def _pick(traces: TraceList, ref: str, path: Path, width: int) -> TraceList:
    from .. import explore
    from ..explore.render import summary_line

    matches = traces.matching(ref)
    if not matches:
        raise CliError(
            f"no trace id, id prefix or name matches {one_line(ref)!r} in {one_line(str(path))}"
        )
    if len(matches) > 1:
        shown = "\n".join("  " + summary_line(t, width) for t in matches[:20])
        more = f"\n  ... and {len(matches) - 20} more" if len(matches) > 20 else ""
        raise CliError(
            f"{len(matches)} traces match {one_line(ref)!r}; give more of the id:\n{shown}{more}"
        )
    return explore.TraceList(matches)


def _show(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from ..explore.render import id_width, summary_line

    if args.limit is not None and args.limit < 1:
        raise CliError("--limit must be at least 1", EXIT_USAGE)
    path = Path(args.file)
    everything = _load(path)
    if not everything:
        raise CliError(f"no $ai_* traces in {one_line(str(path))}")
    width = id_width([t.trace_id for t in everything])
    traces = everything
    if args.trace:
        traces = _pick(traces, args.trace, path, width)
    traces = traces.filter(
        errors=True if args.errors else None,
        user=args.user,
        session=args.session,
        model=args.model,
        text=args.grep,
        min_latency=args.min_latency,
    ).sort_by(args.sort)
    matched = len(traces)
    if args.limit is not None:
        traces = traces[: args.limit]

    if args.json:
        document = {
            "file": str(path),
            "traces_in_file": len(everything),
            "traces_matched": matched,
            "traces": [t.to_dict() for t in traces],
        }
        # ensure_ascii: control characters in trace content leave as \\u escapes
        out.write(json.dumps(document, indent=2, default=str, ensure_ascii=True) + "\n")
        out.flush()
        return EXIT_OK if traces else EXIT_FAILED

    if not traces:
        raise CliError(f"no trace in {one_line(str(path))} matches the filters")
    printer = _Printer(out, args.plain)
    if args.summary:
        for trace in traces:
            printer.line(summary_line(trace, width))
    else:
        for trace in traces:
            printer.trace(trace)
    if not args.trace or args.summary:
        from ..explore import Totals
        from ..explore.render import fmt_cost

        totals = Totals.combine(t.totals for t in traces)
        cost = fmt_cost(totals.cost_usd, totals.cost_estimated)
        shown = f"{len(traces)} of {len(everything)}" if len(traces) != len(everything) else ""
        printer.line(
            f"{shown or len(traces)} trace(s) in {path}"
            + (f" · {totals.errors} error(s)" if totals.errors else "")
            + (f" · {cost}" + (" (estimated)" if totals.cost_estimated else "") if cost else "")
        )
    return EXIT_OK


def _run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if args.command == "demo":
        return _demo(args, sys.stdout, sys.stderr)
    if args.command == "show":
        return _show(args, sys.stdout, sys.stderr)
    parser.print_help()
    return EXIT_USAGE


def _silence_stdout() -> None:
    """After a broken pipe: point stdout at /dev/null so the exit-time flush is quiet."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


class _CleanFormatter(logging.Formatter):
    """``posthog-callbacks: message``, control characters stripped."""

    def format(self, record: logging.LogRecord) -> str:
        text = record.getMessage().removeprefix("posthog_callbacks: ")
        return "posthog-callbacks: " + clean(text).replace("\n", " ")


def _log_to_stderr() -> None:
    """Library warnings (e.g. skipped lines) as clean one-liners, unless logging is set up."""
    package = logging.getLogger("posthog_callbacks")
    if package.handlers or logging.getLogger().handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_CleanFormatter())
    handler.setLevel(logging.WARNING)
    package.addHandler(handler)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``posthog-callbacks`` console script.

    Args:
        argv: Arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit code: 0 on success, 1 when nothing worked or nothing matched, 2 on a
        usage error (bad option, unreadable file), 130 on Ctrl-C, 141 when the reader of
        the output went away (``show ... | head``).
    """
    parser = _parser()
    args = parser.parse_args(argv)
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="replace")  # a non-UTF-8 terminal gets "?", not a crash
    _log_to_stderr()
    command = f"posthog-callbacks {args.command}" if args.command else "posthog-callbacks"
    try:
        return _run(args, parser)
    except CliError as exc:
        sys.stderr.write(f"{command}: {clean(str(exc))}\n")
        return exc.code
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except KeyboardInterrupt:
        sys.stderr.write(f"{command}: interrupted\n")
        return EXIT_INTERRUPTED
    except Exception as exc:  # the promise: one line, never a traceback
        if os.environ.get("POSTHOG_CALLBACKS_DEBUG"):
            traceback.print_exc()
        sys.stderr.write(
            f"{command}: unexpected error: {one_line(f'{type(exc).__name__}: {exc}', 300)} "
            "(set POSTHOG_CALLBACKS_DEBUG=1 for details)\n"
        )
        return EXIT_FAILED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
