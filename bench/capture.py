"""The local PostHog capture server (``tests/support/capture_server.py``) in its own process.

The benchmarks post to it so I/O is real but local, and its JSON parsing does not share
the benchmark's GIL. It only counts what arrives (request bodies are not kept).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "tests" / "support" / "capture_server.py"


class Server:
    """The capture server in its own process; ``url`` is where it listens."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(SCRIPT)], stdout=subprocess.PIPE, text=True
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().split()
        assert line and line[0] == "URL", line
        self.url = line[1]

    def stats(self) -> dict[str, int]:
        """The server's counters (``events``, ``requests``, ``busy_us``, ...)."""
        with urllib.request.urlopen(self.url + "/_stats", timeout=5) as res:
            return dict(json.load(res))

    def events(self) -> int:
        """Events accepted so far."""
        return self.stats()["events"]

    def wait_for(self, total: int, timeout: float) -> float:
        """Wait until ``total`` events arrived in all; returns when (``perf_counter``)."""
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            if self.events() >= total:
                break
            time.sleep(0.005)
        return time.perf_counter()

    def close(self) -> None:
        """Stop the server."""
        self.proc.kill()
        self.proc.wait()
