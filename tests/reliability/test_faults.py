"""Fault suite: the exporter against a real local capture server that misbehaves.

Every test records through the public API, then states what was sent and what arrived (by
event uuid) and asserts the guarantee of ``docs/reliability.md`` it stands for: nothing that
must arrive is lost, nothing is duplicated, losses that are allowed are counted, and the
program never sees an exception or waits beyond a stated bound.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from posthog_callbacks import JsonlSink, PosthogExporter, PosthogSink
from support.capture_server import TEST_API_KEY, CaptureServer, ExporterFactory, closed_port_url
from support.forking import wait_child
from support.reliability_helpers import Ledger, arrived_uuids, assert_exactly_once

CHILD = Path(__file__).with_name("exit_child.py")
ROOT = Path(__file__).resolve().parents[2]


def record_from_thread(exporter: PosthogExporter, ledger: Ledger, spans: int, traces: int) -> None:
    """Record on a separate thread and fail the test if the caller raised or stalled.

    The worker may be stuck on the network; recording must still return promptly (the
    bound here is a generous correctness bound: recording this much takes milliseconds).
    """
    errors: list[BaseException] = []

    def run() -> None:
        try:
            ledger.spans(exporter, spans)
            for i in range(traces):
                ledger.trace(exporter, f"t{i}")
        except BaseException as exc:  # pragma: no cover - the assertion below reports it
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(10)
    assert not thread.is_alive(), "recording blocked on the exporter"
    assert errors == []


# -- transient server errors: retried, nothing lost, nothing duplicated --------------------


def test_503_burst_is_retried_without_loss_or_duplicates(
    capture_server: CaptureServer, make_exporter: ExporterFactory
) -> None:
    exporter = make_exporter(flush_at=20, flush_interval=60, max_batch_size=20)
    capture_server.fail_next(8, status=503)  # several batches each fail more than once
    ledger = Ledger()
    record_from_thread(exporter, ledger, spans=150, traces=10)
    assert exporter.flush(timeout=20)

    assert_exactly_once(ledger.uuids, arrived_uuids(capture_server.events))
    statuses = [r.status for r in capture_server.requests]
    assert statuses.count(503) == 8
    stats = exporter.stats()
    assert (stats.recorded, stats.sent, stats.dropped) == (180, 180, 0)
    assert isinstance(exporter.sink, PosthogSink) and exporter.sink.retries == 8


def test_429_burst_honours_retry_after_without_loss_or_duplicates(
    capture_server: CaptureServer, make_exporter: ExporterFactory
) -> None:
    exporter = make_exporter(flush_at=10, flush_interval=60, max_batch_size=10, backoff_base=0.001)
    capture_server.fail_next(3, status=429, retry_after=0.3)
    ledger = Ledger()
    record_from_thread(exporter, ledger, spans=40, traces=0)
    assert exporter.flush(timeout=20)

    assert_exactly_once(ledger.uuids, arrived_uuids(capture_server.events))
    rejected = [r for r in capture_server.requests if r.status == 429]
    assert len(rejected) == 3
    for r in rejected:
        # the retry of that batch (same first uuid) came no sooner than Retry-After asked
        first = r.payload["batch"][0]["uuid"]
        retry = next(
            q
            for q in capture_server.requests
            if q.arrived > r.arrived and q.payload["batch"][0]["uuid"] == first
        )
        assert retry.arrived - r.arrived >= 0.29  # backoff alone would be ~1 ms
    assert exporter.stats().dropped == 0


def test_a_hung_server_blocks_no_caller_and_loses_nothing_once_released(
    capture_server: CaptureServer, make_exporter: ExporterFactory
) -> None:
    exporter = make_exporter(flush_at=10, flush_interval=60, timeout=30)
    ledger = Ledger()
    with capture_server.held():
        ledger.spans(exporter, 10)
        assert capture_server.wait_for_inflight(1, timeout=5)  # the sender is stuck
        record_from_thread(exporter, ledger, spans=400, traces=20)
        assert capture_server.events == []
        assert exporter.flush(timeout=0.2) is False  # flush is bounded by its timeout
    assert exporter.flush(timeout=20)
    assert_exactly_once(ledger.uuids, arrived_uuids(capture_server.events))
    assert exporter.stats().dropped == 0


def test_requests_that_time_out_are_resent_with_the_same_uuids(
    capture_server: CaptureServer, make_exporter: ExporterFactory
) -> None:
    # The server holds requests past the client's timeout, then processes them all: the
    # client retried in the meantime, so the server saw some batches more than once.
    # Delivery is at-least-once; each copy carries the same uuids (PostHog de-duplicates).
    exporter = make_exporter(
        flush_at=10, flush_interval=60, timeout=0.3, max_retries=8, backoff_base=0.05
    )
    ledger = Ledger()
    with capture_server.held():
        record_from_thread(exporter, ledger, spans=20, traces=0)
        assert capture_server.wait_for_inflight(2, timeout=5)
        time.sleep(0.8)  # at least one timeout and retry per batch
    assert exporter.flush(timeout=20)
    assert exporter.stats().dropped == 0
    arrived = arrived_uuids(capture_server.events)
    assert set(arrived) == set(ledger.uuids)  # nothing lost
    assert len(arrived) > len(ledger.uuids)  # the timed-out copies were processed too
    copies: dict[str, str] = {}
    for event in capture_server.events:
        text = json.dumps(event, sort_keys=True)
        assert copies.setdefault(event["uuid"], text) == text  # a copy is byte-identical


# -- a server that is down: bounded, counted; one that comes back: nothing lost ----------


def test_a_down_server_costs_the_caller_nothing_and_every_loss_is_counted() -> None:
    sink = PosthogSink(
        api_key=TEST_API_KEY,
        host=closed_port_url(),
        timeout=1,
        max_retries=2,
        backoff_base=0.01,
        retry_window=0,
    )
    exporter = PosthogExporter(sink=sink, flush_at=10, shutdown_timeout=2)
    try:
        ledger = Ledger()
        record_from_thread(exporter, ledger, spans=100, traces=5)
        assert exporter.flush(timeout=20)
        stats = exporter.stats()
        # sent 115, arrived 0 (nothing listens): all 115 counted, none silently lost
        assert (stats.recorded, stats.sent, stats.dropped_sink_error) == (115, 0, 115)
        assert stats.queued == 0
    finally:
        started = time.monotonic()
        exporter.shutdown()
        assert time.monotonic() - started < 2 + 3  # shutdown's bound (+ slack)


def test_a_server_that_comes_back_receives_everything(
    capture_server: CaptureServer, make_exporter: ExporterFactory
) -> None:
    exporter = make_exporter(flush_at=10, flush_interval=60, max_retries=10, backoff_base=0.05)
    ledger = Ledger()
    capture_server.refuse()
    record_from_thread(exporter, ledger, spans=60, traces=5)
    exporter.flush(timeout=0.3)  # batches are now failing and backing off
    capture_server.recover()
    record_from_thread(exporter, ledger, spans=20, traces=0)
    assert exporter.flush(timeout=30)
    assert_exactly_once(ledger.uuids, arrived_uuids(capture_server.events))
    assert exporter.stats().dropped == 0


def test_shutdown_with_a_hung_server_returns_within_its_bound_and_counts_the_rest(
    capture_server: CaptureServer, make_exporter: ExporterFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="posthog_callbacks")
    exporter = make_exporter(flush_at=10, timeout=60, shutdown_timeout=1.0)
    ledger = Ledger()
    with capture_server.held():
        record_from_thread(exporter, ledger, spans=200, traces=0)
        started = time.monotonic()
        exporter.shutdown()
        elapsed = time.monotonic() - started
        stats = exporter.stats()
    assert elapsed < 1.0 + 3  # the bound (+ slack); the request alone could take 60 s
    assert stats.queued == 0 and stats.recorded == 200 and stats.sent == 0
    # Batches that were on the wire before shutdown have no outcome yet: not counted as
    # lost (the server may still apply them), but reported. A request's timeout is cut to
    # the deadline, so on a slow machine it may already have timed out and been counted.
    in_flight = stats.recorded - stats.sent - stats.dropped
    assert in_flight == stats.in_flight
    assert in_flight + stats.dropped_sink_error + stats.dropped_shutdown == 200
    # The log counts what was on the wire when shutdown() gave up; a sender that took a
    # batch just before may still count it as too late to start afterwards.
    if in_flight:
        logged = re.search(r"(\d+) events were still being sent", caplog.text)
        assert logged is not None and int(logged.group(1)) >= in_flight
    # Released: requests that were on the wire complete; every event is in one bucket.
    capture_server.wait_for(lambda: exporter.stats().sent + exporter.stats().dropped == 200)
    stats = exporter.stats()
    assert stats.sent + stats.dropped == 200
    arrived = arrived_uuids(capture_server.events)
    assert len(arrived) == len(set(arrived)) and set(arrived) <= set(ledger.uuids)


# -- process exit -------------------------------------------------------------------------


def run_child(
    url: str, mode: str, n: int, shutdown_timeout: float = 5
) -> tuple[subprocess.Popen[str], float]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, str(CHILD), url, mode, str(n), str(shutdown_timeout)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    return proc, time.monotonic()


_stderr: dict[int, str] = {}


def proc_stderr(proc: subprocess.Popen[str]) -> str:
    return _stderr[proc.pid]


def child_result(proc: subprocess.Popen[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    out, err = proc.communicate(timeout=60)
    _stderr[proc.pid] = err
    assert proc.returncode == 0, err
    assert "Traceback" not in err, err
    sent, report = (json.loads(line) for line in out.strip().splitlines())
    return sent, report


@pytest.mark.parametrize("mode", ["atexit", "shutdown"])
def test_process_exit_delivers_everything_queued(capture_server: CaptureServer, mode: str) -> None:
    proc, _ = run_child(capture_server.url, mode, 50)
    sent, report = child_result(proc)
    # flush_at=1000 and a 60 s interval: nothing was sent before the program ended
    never_ended = [
        e for e in capture_server.events if e["properties"]["$ai_trace_id"] == sent["open"]
    ]
    assert len(never_ended) == 1
    assert never_ended[0]["properties"]["$ai_is_error"] is True
    assert "still open at shutdown" in never_ended[0]["properties"]["$ai_error"]
    arrived = [u for u in arrived_uuids(capture_server.events) if u != never_ended[0]["uuid"]]
    assert_exactly_once(sent["sent"], arrived)
    stats = report["stats"]
    assert (stats["recorded"], stats["sent"], stats["dropped_shutdown"]) == (54, 54, 0)
    assert report["exit_seconds"] < 5  # within shutdown_timeout


def test_process_exit_with_a_hung_server_is_bounded_and_counts_the_loss(
    capture_server: CaptureServer,
) -> None:
    with capture_server.held():
        proc, _ = run_child(capture_server.url, "atexit", 20, shutdown_timeout=1)
        _, report = child_result(proc)
    # The exit hook waited at most its bound, then gave up on the held request.
    assert report["exit_seconds"] < 1 + 2
    # The request started after the exit hook set its deadline, so it timed out at the
    # deadline: the batch is counted as lost, and said so once on stderr.
    stats = report["stats"]
    assert (stats["recorded"], stats["sent"], stats["queued"]) == (24, 0, 0)
    # Normally the request timed out at the deadline (a sink error); on a loaded machine the
    # sender may reach the batch only after the deadline and count it as a shutdown drop.
    assert stats["dropped_sink_error"] + stats["dropped_shutdown"] == 24
    assert re.search(r"24 events (lost|were still)", proc_stderr(proc)) is not None


def test_serverless_short_processes_lose_nothing(capture_server: CaptureServer) -> None:
    procs = [run_child(capture_server.url, "serverless", 5 + i)[0] for i in range(4)]
    sent: list[str] = []
    opened: list[str] = []
    for proc in procs:
        child_sent, report = child_result(proc)
        sent.extend(child_sent["sent"])
        opened.append(child_sent["open"])
        assert report["stats"]["dropped_shutdown"] == 0
    events = capture_server.events
    arrived = [e["uuid"] for e in events if e["properties"]["$ai_trace_id"] not in opened]
    assert_exactly_once(sent, arrived)
    # each process also closed its never-ended trace as an error: one event each
    assert sorted(
        e["properties"]["$ai_trace_id"] for e in events if e["properties"]["$ai_trace_id"] in opened
    ) == sorted(opened)


# -- fork ---------------------------------------------------------------------------------


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork")
def test_fork_child_works_and_does_not_resend_the_parents_queue_or_open_runs(
    capture_server: CaptureServer, make_exporter: ExporterFactory
) -> None:
    exporter = make_exporter(flush_at=1000, flush_interval=60)
    parent = Ledger()
    before = parent.spans(exporter, 5)
    assert exporter.flush(timeout=10)  # a pooled keep-alive connection now exists
    parent.spans(exporter, 10)  # queued, not sent: the worker is alive and idle
    open_trace = exporter.trace("parent-still-running", input="p")
    assert exporter.stats().queued == 10
    requests_before = len(capture_server.requests)

    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report through the pipe, never return into pytest
        code = 1
        try:
            child = Ledger()
            child.spans(exporter, 5)
            child.trace(exporter, "child-trace")
            ok = exporter.flush(timeout=10)
            exporter.shutdown(timeout=5)  # what the exit hook does
            os.write(
                w,
                json.dumps(
                    {"sent": child.uuids, "ok": ok, "stats": exporter.stats().__dict__}
                ).encode(),
            )
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    _, status = os.waitpid(pid, 0)
    with os.fdopen(r) as fh:
        child = json.loads(fh.read())
    assert status == 0 and child["ok"] is True
    # the child's own counters: its 8 events, nothing of the parent's
    assert (
        child["stats"]["recorded"],
        child["stats"]["sent"],
        child["stats"]["closed_orphans"],
    ) == (8, 8, 0)
    child_requests = capture_server.requests[requests_before:]
    # sent by the child 8, arrived from it 8: not the parent's 10 queued, not its open trace
    assert_exactly_once(child["sent"], arrived_uuids(e for q in child_requests for e in q.events))

    open_trace.end(output="done")
    assert exporter.flush(timeout=10)
    root = [
        e for e in capture_server.events if e["properties"]["$ai_trace_id"] == open_trace.trace_id
    ]
    assert len(root) == 1 and root[0]["properties"]["$ai_is_error"] is False
    # everything, once: the parent's 15 and its trace from the parent, the child's 8
    assert_exactly_once(
        parent.uuids + child["sent"] + [root[0]["uuid"]], arrived_uuids(capture_server.events)
    )
    assert set(before) <= {
        e["uuid"] for q in capture_server.requests[:requests_before] for e in q.events
    }
    # the child opened its own connection instead of writing on the parent's pooled one
    parent_peers = {q.peer for q in capture_server.requests if q not in child_requests}
    assert child_requests and not {q.peer for q in child_requests} & parent_peers


def _fork_child(exporter: PosthogExporter, w: int, name: str) -> None:
    """In a forked child: record one trace, flush, shut down, report through ``w``; exit."""
    code = 1
    try:
        ledger = Ledger()
        ledger.trace(exporter, name)
        ok = exporter.flush(timeout=10)
        exporter.shutdown(timeout=5)
        stats = exporter.stats()
        report = {"sent": ledger.uuids, "ok": ok, "stats": stats.__dict__, "lost": stats.dropped}
        os.write(w, json.dumps(report).encode())
        code = 0
    finally:
        os._exit(code)


def fork_while_recording(exporter: PosthogExporter, forks: int) -> tuple[Ledger, list[Any]]:
    """Fork ``forks`` times while 3 threads record; returns the parent's ledger and the
    children's reports (None for a child that hung)."""
    parent = Ledger()
    stop = threading.Event()
    lock = threading.Lock()

    def record(t: int) -> None:
        i = 0
        while not stop.is_set():
            mine = Ledger()
            mine.trace(exporter, f"parent-{t}-{i}")
            with lock:
                parent.uuids.extend(mine.uuids)
            i += 1
            time.sleep(0.001)  # a busy program, not a flood: the queue never fills

    threads = [threading.Thread(target=record, args=(t,)) for t in range(3)]
    for thread in threads:
        thread.start()
    reports: list[Any] = []
    try:
        for n in range(forks):
            r, w = os.pipe()
            pid = os.fork()
            if pid == 0:
                os.close(r)
                _fork_child(exporter, w, f"child-{n}")
            os.close(w)
            status = wait_child(pid, timeout=20)
            with os.fdopen(r) as fh:
                data = fh.read()
            reports.append(json.loads(data) if status == 0 and data else None)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    return parent, reports


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork")
def test_many_forks_while_threads_record_give_working_children_and_an_untouched_parent(
    capture_server: CaptureServer, make_exporter: ExporterFactory
) -> None:
    exporter = make_exporter(flush_at=5, flush_interval=0.05)
    parent, reports = fork_while_recording(exporter, forks=30)
    assert None not in reports, f"{reports.count(None)} of 30 children hung or failed"
    assert all(r["ok"] for r in reports)
    for r in reports:  # each child: its own 3 events, recorded and sent, nothing else
        assert (r["stats"]["recorded"], r["stats"]["sent"], r["lost"]) == (3, 3, 0)
    assert exporter.flush(timeout=20)
    stats = exporter.stats()
    assert (stats.recorded, stats.sent, stats.dropped) == (len(parent.uuids),) * 2 + (0,)
    children = [u for r in reports for u in r["sent"]]
    assert_exactly_once(parent.uuids + children, arrived_uuids(capture_server.events))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork")
def test_many_forks_with_a_jsonl_sink_every_child_writes_its_lines(tmp_path: Path) -> None:
    path = tmp_path / "traces.jsonl"
    exporter = PosthogExporter(sink=JsonlSink(path), flush_at=5, flush_interval=0.05)
    try:
        parent, reports = fork_while_recording(exporter, forks=30)
        assert exporter.flush(timeout=20)
    finally:
        exporter.shutdown(timeout=5)
    assert None not in reports, f"{reports.count(None)} of 30 children hung or failed"
    lines = path.read_text(encoding="utf-8").splitlines()
    children = [u for r in reports for u in r["sent"]]
    assert_exactly_once(parent.uuids + children, [json.loads(line)["uuid"] for line in lines])


# -- outages: events stay queued (within the byte budget) until the server is back --------


def test_an_outage_outlasting_the_retry_count_loses_nothing_once_the_server_is_back(
    capture_server: CaptureServer,
) -> None:
    # The retry window (here 30 s, 120 s by default) keeps a batch alive past max_retries;
    # meanwhile the pipeline stalls and new events wait in the queue.
    sink = PosthogSink(
        api_key=TEST_API_KEY,
        host=capture_server.url,
        timeout=2,
        max_retries=1,
        backoff_base=0.05,
        backoff_max=0.3,
        retry_window=30,
    )
    exporter = PosthogExporter(sink=sink, flush_at=10, flush_interval=0.05)
    try:
        ledger = Ledger()
        capture_server.refuse()
        record_from_thread(exporter, ledger, spans=300, traces=10)
        assert capture_server.wait_for(lambda: sink.retries >= 6, timeout=10)
        record_from_thread(exporter, ledger, spans=100, traces=0)  # still down
        stats = exporter.stats()
        assert (stats.sent, stats.dropped, stats.queued + stats.in_flight) == (0, 0, 430)
        capture_server.recover()
        assert exporter.flush(timeout=30)
        assert_exactly_once(ledger.uuids, arrived_uuids(capture_server.events))
        stats = exporter.stats()
        assert (stats.recorded, stats.sent, stats.dropped) == (430, 430, 0)
        assert sink.retries >= 6  # far beyond max_retries=1: the window kept batches alive
    finally:
        exporter.shutdown(timeout=2)


class FakeClock:
    """``time.monotonic`` / ``time.sleep`` for the sink: sleeping advances the clock."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_the_default_retry_policy_outlasts_a_60_second_outage(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from posthog_callbacks import sinks

    clock = FakeClock()
    monkeypatch.setattr(sinks, "time", clock)
    sink = PosthogSink(api_key=TEST_API_KEY, host="http://127.0.0.1:9")  # default policy
    started = clock.now
    attempts: list[float] = []

    def down_for_61_seconds(body: bytes, timeout: float) -> None:
        attempts.append(clock.now - started)
        clock.now += min(timeout, 0.01)  # a refused connection fails fast
        if clock.now - started < 61:
            raise requests.ConnectionError("connection refused")

    monkeypatch.setattr(sink, "_post_own", down_for_61_seconds)
    assert sink.send([{"event": "$ai_span", "uuid": "u", "properties": {}}]) == 0
    assert attempts[-1] >= 61  # delivered once the outage ended
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    assert max(gaps) <= sink.backoff_max + 0.1  # a recovery is noticed within backoff_max
    # and a batch is given up eventually: after the window (and at least max_retries)
    clock.now, attempts[:] = started, []

    def down_for_good(body: bytes, timeout: float) -> None:
        attempts.append(clock.now - started)
        raise requests.ConnectionError("connection refused")

    monkeypatch.setattr(sink, "_post_own", down_for_good)
    with pytest.raises(sinks.SinkError):
        sink.send([{"event": "$ai_span", "uuid": "u", "properties": {}}])
    assert sink.retry_window <= attempts[-1] <= sink.retry_window + sink.backoff_max + 0.1
