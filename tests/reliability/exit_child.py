"""A short-lived program for the process-exit fault tests (run as a subprocess).

Usage: ``python exit_child.py URL MODE N``, MODE one of:

* ``atexit``: record N spans and a manual trace (plus one span never ended), then return
  from main without calling shutdown: the exporter's exit hook must deliver;
* ``shutdown``: the same, then ``exporter.shutdown()`` explicitly;
* ``serverless``: ``serverless=True``, one trace of N spans, ``shutdown()``, exit.

Prints one JSON line ``{"sent": [...uuids], "open": uuid_of_the_never_ended_span}`` before
exiting, and (from an exit hook that runs after the exporter's) one line
``{"stats": {...}, "exit_seconds": s}``.
"""

from __future__ import annotations

import atexit
import json
import sys
import time
from pathlib import Path

from posthog_callbacks import PosthogExporter, PosthogSink

_ended_main = 0.0
_exporter: PosthogExporter | None = None


def _report() -> None:
    # Registered before the exporter exists, so it runs after the exporter's exit hook.
    if _exporter is not None:
        stats = _exporter.stats()
        print(
            json.dumps({"stats": stats.__dict__, "exit_seconds": time.monotonic() - _ended_main}),
            flush=True,
        )


def main() -> None:
    global _ended_main, _exporter
    url, mode, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    atexit.register(_report)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from support.reliability_helpers import Ledger

    serverless = mode == "serverless"
    sink = PosthogSink(
        api_key="phc_testProjectKey0123456789abcdefXYZ", host=url, timeout=5, backoff_base=0.01
    )
    exporter = PosthogExporter(
        sink=sink,
        serverless=serverless,
        flush_at=None if serverless else 1000,
        flush_interval=None if serverless else 60,
        shutdown_timeout=float(sys.argv[4]) if len(sys.argv) > 4 else 5,
    )
    _exporter = exporter
    ledger = Ledger()
    ledger.spans(exporter, n)
    ledger.trace(exporter, f"{mode}-trace")
    stuck = exporter.trace("never-ended", input="x")  # closed as an error at exit
    print(json.dumps({"sent": ledger.uuids, "open": stuck.trace_id}), flush=True)
    if mode in ("shutdown", "serverless"):
        exporter.shutdown()
    _ended_main = time.monotonic()


if __name__ == "__main__":
    main()
