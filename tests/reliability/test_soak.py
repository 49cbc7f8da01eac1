"""The soak benchmark, small: it runs end to end, loses nothing and ends with no open runs.

The full run (``bench/soak.py``, 1,000,000 spans) is a benchmark, not a test; its memory
figure is reported in ``docs/reliability.md``. Here only its correctness is asserted (no
RSS threshold: memory on a shared CI machine is not a stable quantity).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

SOAK = Path(__file__).resolve().parents[2] / "bench" / "soak.py"


def test_soak_smoke_run_reports_its_numbers_and_ends_with_no_open_runs() -> None:
    proc = subprocess.run(
        [sys.executable, str(SOAK), "--spans", "4000", "--ttl", "1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert re.search(r"^open-run table size at end: 0 ", out, re.M), out
    assert re.search(r"peak RSS growth -?\d+\.\d MB", out), out
    spans = int(re.search(r"^spans recorded: (\d+)", out, re.M).group(1))  # type: ignore[union-attr]
    assert spans >= 4000
    m = re.search(r"^events: recorded (\d+), sent (\d+), arrived (\d+), dropped (\d+)", out, re.M)
    assert m, out
    recorded, sent, arrived, dropped = map(int, m.groups())
    # every span recorded (never-ended ones closed by the TTL sweep) was sent and arrived
    assert recorded == sent == arrived == spans
    assert dropped == 0
    orphans = int(re.search(r"closed orphans (\d+)", out).group(1))  # type: ignore[union-attr]
    never_ended = int(re.search(r"never ended (\d+)", out).group(1))  # type: ignore[union-attr]
    assert orphans == never_ended > 0
