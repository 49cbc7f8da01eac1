"""The worker's translation and secret scan of the working tree against a git revision.

Loads the package as it is at ``REV`` (``git archive``, imported under another name) next
to the working tree's, and times both on the same spans and texts, rounds interleaved in
one process (thread CPU, best round): the ratio is what to read on a noisy machine.

* translation (``events._span_to_event_sized``) of the spans of ``bench/translation.py``,
  each with repeated ids and with ids new on every event (as in a real run);
* the secret scan (``serialize._scrub``) of a RAG prompt, a 14 KB prompt, prose, a tool's
  JSON output and code.

Usage::

    .venv/bin/python bench/against.py            # against HEAD (uncommitted changes)
    .venv/bin/python bench/against.py HEAD~5
"""

from __future__ import annotations

import argparse
import functools
import importlib
import io
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import translation

from posthog_callbacks import events, serialize, spans

ROOT = Path(__file__).resolve().parent.parent


PACKAGE_AT_REV = "posthog_callbacks_at_rev"


def load_revision(rev: str) -> Path:
    """Make the package at git revision ``rev`` importable as :data:`PACKAGE_AT_REV`, from
    a temporary copy (its modules import each other relatively, so the copy runs beside
    the working tree's package). Returns the copy's folder (the caller removes it)."""
    archive = subprocess.run(
        ["git", "archive", rev, "posthog_callbacks"], cwd=ROOT, capture_output=True, check=True
    ).stdout
    folder = Path(tempfile.mkdtemp(prefix="posthog-callbacks-at-rev-"))
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(folder, filter="data")
    (folder / "posthog_callbacks").rename(folder / PACKAGE_AT_REV)
    sys.path.insert(0, str(folder))
    return folder


def as_revision(span: spans.FinishedSpan, old_spans: Any) -> Any:
    """``span`` rebuilt from the revision's own classes (its code compares by identity)."""
    values: list[Any] = []
    for value in span:
        if isinstance(value, spans.SpanKind):
            value = old_spans.SpanKind[value.name]
        elif isinstance(value, spans.Usage):
            value = old_spans.Usage(*value)
        values.append(value)
    return old_spans.FinishedSpan(*values)


def new_ids(span: spans.FinishedSpan, i: int) -> spans.FinishedSpan:
    trace = str(uuid.UUID(int=7 * i + 1))
    return span._replace(
        trace_id=trace,
        span_id=str(uuid.UUID(int=7 * i + 2)),
        parent_id=None if span.parent_id is None else str(uuid.UUID(int=7 * i + 3)),
    )


def best(fn: Callable[[Any], Any], args: list[Any], n: int) -> float:
    """Thread CPU of one call (µs) in a round of ``n`` calls of ``fn`` on ``args`` in turn."""
    start = time.thread_time()
    for i in range(n):
        fn(args[i % len(args)])
    return (time.thread_time() - start) / n * 1e6


def compare(
    label: str,
    old: tuple[Callable[[Any], Any], list[Any]],
    new: tuple[Callable[[Any], Any], list[Any]],
    n: int,
) -> None:
    """Print the best round of each, rounds interleaved, and their ratio."""
    rounds: dict[str, list[float]] = {"old": [], "new": []}
    for _ in range(9):
        rounds["old"].append(best(*old, n))
        rounds["new"].append(best(*new, n))
    o, w = min(rounds["old"]), min(rounds["new"])
    print(f"{label:34} {o:8.2f} {w:8.2f} {w / o:7.3f}")


def texts() -> dict[str, str]:
    doc = "lorem ipsum dolor sit amet " * 20
    tool = [
        {"order_id": f"ord_{i}", "status": "shipped", "url": f"https://t.example/p?id={i}"}
        for i in range(12)
    ]
    return {
        "RAG prompt (1.3 KB)": (
            f"Context information is below.\n---\nDocument 14: {doc}\n\nDocument 3: {doc}\n"
            "---\nGiven the context, answer the query.\nQuery: question 12\nAnswer: "
        ),
        "prompt (14 KB prose)": "Context:\n"
        + "The committee reviewed the figures and every region grew. " * 240
        + "\nQuery: what changed?\nAnswer: ",
        "prose (1.2 KB)": "The quick brown fox passes the token to a private secretary. " * 20,
        "tool JSON (1.3 KB)": json.dumps(tool),
        "code (1.4 KB)": "def f(event):\n    user_id = event['user_id']\n    return {'a': 1}\n"
        * 20,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("rev", nargs="?", default="HEAD", help="git revision (HEAD)")
    args = parser.parse_args()
    folder = load_revision(args.rev)
    try:
        old_events, old_spans, old_serialize = (
            importlib.import_module(f"{PACKAGE_AT_REV}.{name}")
            for name in ("events", "spans", "serialize")
        )
        secrets = ("phc_benchProjectKey0123456789abcdef",)
        props = {"environment": "production", "app": "travel"}
        cfg = events.EventConfig(properties=props, secrets=secrets)
        old_cfg = old_events.EventConfig(properties=props, secrets=secrets)
        print(f"{'translation, us/event':34} {args.rev:>8} {'tree':>8} {'ratio':>7}")
        cases = {
            "burst generation": translation.burst_generation(),
            "burst trace root": translation.burst_root(),
            "chat generation": translation.chat_generation(),
            "chain span": translation.chain_span(),
        }
        for name, span in cases.items():
            for fresh in (False, True):
                # 3,000 spans: more ids than the identifier cache holds (4,096)
                made = [new_ids(span, i) if fresh else span for i in range(3000)]
                theirs = [as_revision(s, old_spans) for s in made]
                compare(
                    f"{name}{' (new ids)' if fresh else ''}",
                    (functools.partial(old_events._span_to_event_sized, cfg=old_cfg), theirs),
                    (functools.partial(events._span_to_event_sized, cfg=cfg), made),
                    3000,
                )
        print(f"\n{'secret scan, us/text':34} {args.rev:>8} {'tree':>8} {'ratio':>7}")
        for name, text in texts().items():
            assert old_serialize._scrub(text) == serialize._scrub(text)
            compare(name, (old_serialize._scrub, [text]), (serialize._scrub, [text]), 200)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
