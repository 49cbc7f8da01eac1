"""Transport: the exporter against a real local PostHog capture server.

Covers configuration (env vars, serverless preset), batching, retries, Retry-After,
dead and hung hosts, queue overflow, and what the bytes on the wire may and may not contain.
"""

from __future__ import annotations

import enum
import gzip
import json
import logging
import threading
import time
import uuid
from typing import Any

import posthog
import pytest

from posthog_callbacks import FinishedSpan, MemorySink, PosthogExporter, PosthogSink, SpanKind
from posthog_callbacks.batching import DEFAULT_MAX_QUEUE_BYTES, BatchProcessor, estimate_bytes
from support.capture_server import (
    AI_PATH,
    TEST_API_KEY,
    CaptureServer,
    ExporterFactory,
    all_bytes,
    closed_port_url,
    decoded_bodies,
)


def make_span(i: int = 0, *, trace_id: str | None = None, **fields: Any) -> FinishedSpan:
    """A finished child span with a fresh uuid (which becomes the event's uuid)."""
    tid = trace_id or str(uuid.uuid4())
    return FinishedSpan(
        trace_id=tid,
        span_id=str(uuid.uuid4()),
        parent_id=tid,
        kind=fields.pop("kind", SpanKind.SPAN),
        name=f"step-{i}",
        start_time=1_700_000_000.0 + i,
        end_time=1_700_000_000.5 + i,
        input={"i": i},
        output={"ok": True},
        **fields,
    )


def small_trace(
    exporter: PosthogExporter,
    *,
    input_text: str = "hi",
    output_text: str = "yo",
    metadata: dict[str, Any] | None = None,
) -> str:
    """Record a trace with one span and one generation; returns the trace id."""
    with exporter.trace(
        "answer", input={"q": input_text}, distinct_id="u1", metadata=metadata
    ) as trace:
        with trace.span("retrieve", input=input_text) as span:
            span.update(output=["doc"])
        with trace.generation(
            "chat",
            model="gpt-4o-mini",
            provider="openai",
            input=[{"role": "user", "content": input_text}],
        ) as gen:
            gen.update(
                output=[{"role": "assistant", "content": output_text}],
                usage={"input_tokens": 10, "output_tokens": 2},
            )
        trace.update(output={"answer": output_text})
    return trace.trace_id


def wait_until(predicate: Any, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def request_uuids(server: CaptureServer) -> set[tuple[str, ...]]:
    """The event uuids of each accepted request, in order within the request.

    PosthogSink has two batches on the wire at once, so requests may arrive in any order.
    """
    return {tuple(e["uuid"] for e in r.events) for r in server.accepted}


def chunks(items: list[str], size: int) -> set[tuple[str, ...]]:
    return {tuple(items[i : i + size]) for i in range(0, len(items), size)}


# -- configuration -----------------------------------------------------------------------


def test_env_vars_configure_key_and_host_and_events_arrive_gzipped_on_ai_endpoint(
    capture_server: CaptureServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POSTHOG_API_KEY", TEST_API_KEY)
    monkeypatch.setenv("POSTHOG_HOST", capture_server.url + "/")
    exporter = PosthogExporter()
    try:
        assert isinstance(exporter.sink, PosthogSink)
        trace_id = small_trace(exporter)
        assert exporter.flush(timeout=10)
    finally:
        exporter.shutdown(timeout=2)

    [request] = capture_server.requests
    assert request.method == "POST"
    assert request.path == AI_PATH
    assert request.headers["content-encoding"] == "gzip"
    assert request.headers["content-type"] == "application/json"
    assert request.raw[:2] == b"\x1f\x8b"  # really gzip on the wire
    assert request.status == 200
    assert request.payload["api_key"] == TEST_API_KEY
    events = request.payload["batch"]
    assert [e["event"] for e in events] == ["$ai_span", "$ai_generation", "$ai_trace"]
    assert {e["properties"]["$ai_trace_id"] for e in events} == {trace_id}
    assert {e["distinct_id"] for e in events} == {"u1"}
    assert exporter.stats().sent == 3
    assert exporter.stats().dropped == 0


def _proxy_env(monkeypatch: pytest.MonkeyPatch, **values: str) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    for name, value in values.items():
        monkeypatch.setenv(name, value)


def test_an_http_proxy_from_the_environment_carries_the_batches(
    capture_server: CaptureServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The session reads the environment once (not on every request, as requests does by
    # default): the proxy set when the sink is made is the one every request goes through.
    _proxy_env(monkeypatch, HTTP_PROXY=capture_server.url)
    exporter = PosthogExporter(api_key=TEST_API_KEY, host="http://posthog.proxied.invalid")
    try:
        small_trace(exporter)
        small_trace(exporter)
        assert exporter.flush(timeout=10)
    finally:
        exporter.shutdown(timeout=2)
    assert exporter.stats().sent == 6
    assert [r.path for r in capture_server.requests] == [AI_PATH]
    [request] = capture_server.requests
    assert request.headers["host"] == "posthog.proxied.invalid"  # forwarded, not resolved
    assert len(request.payload["batch"]) == 6


def test_no_proxy_and_the_ca_bundle_from_the_environment_are_honoured(
    capture_server: CaptureServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    _proxy_env(monkeypatch, HTTP_PROXY=closed_port_url(), NO_PROXY="127.0.0.1")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/custom-bundle.pem")
    sink = PosthogSink(api_key=TEST_API_KEY, host=capture_server.url)
    assert sink._session.verify == "/etc/ssl/certs/custom-bundle.pem"
    exporter = PosthogExporter(sink=sink)
    try:
        small_trace(exporter)
        assert exporter.flush(timeout=10)  # straight to the server: the dead proxy is bypassed
    finally:
        exporter.shutdown(timeout=2)
    assert exporter.stats().sent == 3
    assert len(capture_server.requests) == 1


def test_default_host_logs_how_to_pick_eu_or_self_hosted(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("POSTHOG_API_KEY", TEST_API_KEY)
    monkeypatch.delenv("POSTHOG_HOST", raising=False)
    with caplog.at_level(logging.INFO, logger="posthog_callbacks"):
        exporter = PosthogExporter()
    exporter.shutdown(timeout=1)
    assert isinstance(exporter.sink, PosthogSink)
    assert exporter.sink.host == "https://us.i.posthog.com"
    assert "https://eu.i.posthog.com" in caplog.text
    assert "POSTHOG_HOST" in caplog.text


def test_serverless_preset_sends_every_10_events_or_2_seconds(
    capture_server: CaptureServer, make_exporter: ExporterFactory
) -> None:
    exporter = make_exporter(serverless=True)
    assert (exporter.flush_at, exporter.flush_interval) == (10, 2.0)

    for i in range(9):
        exporter.submit(make_span(i))
    time.sleep(0.3)
    assert capture_server.requests == []  # 9 < flush_at, well before the 2 s interval
    exporter.submit(make_span(9))
    assert capture_server.wait_for_events(10, timeout=1.5)  # flush_at reached: no waiting
    assert [len(r.events) for r in capture_server.requests] == [10]
    assert wait_until(lambda: exporter.stats().sent == 10)  # the worker is idle again

    for i in range(3):
        exporter.submit(make_span(10 + i))
    time.sleep(0.5)
    assert len(capture_server.events) == 10  # 3 < flush_at: they wait for the interval
    assert capture_server.wait_for_events(13, timeout=5)  # the 2 s interval, no flush()
    assert [len(r.events) for r in capture_server.requests] == [10, 3]


def test_explicit_flush_at_and_interval_override_the_serverless_preset() -> None:
    exporter = PosthogExporter(sink=MemorySink(), serverless=True, flush_at=3, flush_interval=0.5)
    assert (exporter.flush_at, exporter.flush_interval) == (3, 0.5)
    exporter.shutdown(timeout=1)


# -- batching --------------------------------------------------------------------------


def test_flush_at_triggers_one_batch_and_max_batch_size_splits_requests(
    capture_server: CaptureServer, make_exporter: ExporterFactory
) -> None:
    exporter = make_exporter(flush_at=5, flush_interval=60, max_batch_size=3)
    spans = [make_span(i) for i in range(5)]
    for s in spans[:4]:
        exporter.submit(s)
    time.sleep(0.3)
    assert capture_server.requests == []
    exporter.submit(spans[4])  # the 5th wakes the worker; batches of at most 3
    assert capture_server.wait_for_events(5, timeout=5)
    assert request_uuids(capture_server) == chunks([s.span_id for s in spans], 3)


def test_flush_sends_everything_below_flush_at_in_max_batch_size_chunks(
    capture_server: CaptureServer, make_exporter: ExporterFactory
) -> None:
    exporter = make_exporter(flush_at=100, flush_interval=60, max_batch_size=3)
    spans = [make_span(i) for i in range(7)]
    for s in spans:
        exporter.submit(s)
    assert exporter.flush(timeout=10)
    assert request_uuids(capture_server) == chunks([s.span_id for s in spans], 3)
    stats = exporter.stats()
    assert (stats.recorded, stats.sent, stats.batches, stats.dropped) == (7, 7, 3, 0)


def test_large_events_are_split_so_no_request_body_exceeds_the_request_cap(
    capture_server: CaptureServer, make_exporter: ExporterFactory
) -> None:
    exporter = make_exporter(flush_at=100, flush_interval=60)
    text = "lorem ipsum dolor sit amet " * 60_000  # ~1.6 MB per event, not base64-like
    spans = [make_span(i, kind=SpanKind.GENERATION, model="m") for i in range(5)]
    spans = [s._replace(input=text) for s in spans]
    for s in spans:
        exporter.submit(s)
    assert exporter.flush(timeout=20)
    assert sorted(e["uuid"] for e in capture_server.events) == sorted(s.span_id for s in spans)
    assert len(capture_server.requests) >= 3
    for body in decoded_bodies(capture_server):
        assert len(body) < 5 * 1024 * 1024  # the SDK's own cap; ours is 4 MiB of events
    assert all(e["properties"]["$ai_input"] == text for e in capture_server.events)


def _alive(span_ids: set[str]) -> tuple[int, int]:
    """How many of these spans, and of their event dicts, still exist (the garbage
    collector's view: what its full collections visit)."""
    import gc

    spans = events = 0
    for o in gc.get_objects():
        if type(o) is FinishedSpan and o.span_id in span_ids:
            spans += 1
        elif type(o) is dict and o.get("uuid") in span_ids:
            events += 1
    return spans, events


@pytest.mark.parametrize("accepts", [True, False])
def test_a_batch_on_the_wire_is_bytes_not_event_dicts(
    capture_server: CaptureServer,
    make_exporter: ExporterFactory,
    monkeypatch: pytest.MonkeyPatch,
    accepts: bool,
) -> None:
    if not accepts:  # a sink that needs the dicts (before_send, $exception events)
        monkeypatch.setattr(PosthogSink, "accepts_encoded", property(lambda self: False))
    exporter = make_exporter(flush_at=1000, flush_interval=3600)
    span_ids: set[str] = set()
    for i in range(250):
        span = make_span(i)
        span_ids.add(span.span_id)
        exporter.submit(span)
    del span
    with capture_server.held():
        flushing = threading.Thread(target=exporter.flush, args=(30,))
        flushing.start()
        assert capture_server.wait_for_inflight(1)
        # Translated, and with the sink's own HTTP path encoded as translated: while the
        # request is on the wire, neither the spans nor their event dicts exist.
        assert _alive(span_ids) == (0, 0 if accepts else 250)
    flushing.join()
    assert sorted(e["uuid"] for e in capture_server.events) == sorted(span_ids)
    assert len(capture_server.accepted) == 1 and exporter.stats().sent == 250


def test_encoded_and_dict_batches_put_the_same_events_on_the_wire(
    capture_server: CaptureServer,
    make_exporter: ExporterFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Hostile but translatable content, a generation with usage, and an event dict queued
    # as is (feedback) with values orjson refuses: one bad value costs only its field.
    spans = [
        make_span(0, kind=SpanKind.GENERATION, model="gpt-4o", usage=None),
        make_span(1)._replace(input={"text": "lone \ud800 surrogate", 7: "int key"}),
        make_span(2)._replace(output=[{"big": 10**40}, float("nan"), b"\xff\xfe"]),
    ]
    feedback_props: dict[Any, Any] = {"n": 10**5000, 3: "x", "$ai_trace_id": "t"}
    feedback = {"event": "$ai_feedback", "distinct_id": "u", "uuid": str(uuid.uuid4()),
                "timestamp": "2026-11-30T09:00:00+00:00"}  # fmt: skip
    received = []
    for accepts in (True, False):
        if not accepts:
            monkeypatch.setattr(PosthogSink, "accepts_encoded", property(lambda self: False))
        exporter = make_exporter(flush_at=100, flush_interval=60)
        assert (exporter._batcher._send_encoded is not None) is accepts  # the path under test
        for span in spans:
            exporter.submit(span)
        exporter._batcher.enqueue({**feedback, "properties": dict(feedback_props)})
        assert exporter.flush(timeout=20)
        received.append(capture_server.events)
        capture_server.requests.clear()
    encoded, plain = received
    assert len(encoded) == 4 and encoded == plain
    by_uuid = {e["uuid"]: e["properties"] for e in encoded}
    assert by_uuid[feedback["uuid"]]["n"] == "<int too large>"
    assert by_uuid[feedback["uuid"]]["3"] == "x"


# -- failures and retries --------------------------------------------------------------


def test_retries_after_503_lose_nothing_and_duplicate_nothing(
    capture_server: CaptureServer, make_exporter: ExporterFactory
) -> None:
    exporter = make_exporter(flush_at=10, flush_interval=60, max_batch_size=10)
    capture_server.fail_next(3, status=503)
    spans = [make_span(i) for i in range(25)]
    for s in spans:
        exporter.submit(s)
    assert exporter.flush(timeout=10)

    statuses = [r.status for r in capture_server.requests]
    assert statuses.count(503) == 3
    assert statuses.count(200) == 3  # 10 + 10 + 5
    uuids = [e["uuid"] for e in capture_server.events]
    assert len(uuids) == len(set(uuids)) == 25
    assert set(uuids) == {s.span_id for s in spans}
    # a retried batch is the same batch: same events, same uuids
    failed = [r for r in capture_server.requests if r.status == 503]
    assert {e["uuid"] for e in failed[0].payload["batch"]} <= set(uuids)
    stats = exporter.stats()
    assert (stats.sent, stats.dropped) == (25, 0)
    assert isinstance(exporter.sink, PosthogSink)
    assert exporter.sink.retries == 3


@pytest.mark.parametrize("status", [408, 500, 502, 504])
def test_other_transient_statuses_are_retried(
    status: int, capture_server: CaptureServer, make_exporter: ExporterFactory
) -> None:
    exporter = make_exporter()
    capture_server.fail_next(2, status=status)
    span = make_span()
    exporter.submit(span)
    assert exporter.flush(timeout=10)
    assert [r.status for r in capture_server.requests] == [status, status, 200]
    assert [e["uuid"] for e in capture_server.events] == [span.span_id]


def test_429_retry_after_is_honoured(
    capture_server: CaptureServer, make_exporter: ExporterFactory
) -> None:
    exporter = make_exporter(backoff_base=0.01)
    capture_server.fail_next(1, status=429, retry_after=1)
    span = make_span()
    exporter.submit(span)
    assert exporter.flush(timeout=10)
    first, second = capture_server.requests
    assert (first.status, second.status) == (429, 200)
    # backoff_base=0.01 would retry after ~10 ms; the server asked for 1 s
    assert second.arrived - first.arrived >= 0.95
    assert [e["uuid"] for e in capture_server.events] == [span.span_id]


def test_a_400_is_not_retried_and_the_batch_is_counted_as_lost(
    capture_server: CaptureServer, make_exporter: ExporterFactory, caplog: pytest.LogCaptureFixture
) -> None:
    exporter = make_exporter()
    capture_server.fail_next(1, status=400)
    exporter.submit(make_span())
    with caplog.at_level(logging.WARNING, logger="posthog_callbacks"):
        assert exporter.flush(timeout=10)
    assert [r.status for r in capture_server.requests] == [400]
    stats = exporter.stats()
    assert (stats.sent, stats.dropped_sink_error) == (0, 1)
    assert "1 events lost" in caplog.text


def test_retries_give_up_after_max_retries_and_count_the_loss(
    capture_server: CaptureServer, make_exporter: ExporterFactory
) -> None:
    exporter = make_exporter(max_retries=2)
    capture_server.fail_next(10, status=503)
    exporter.submit(make_span())
    exporter.submit(make_span())
    assert exporter.flush(timeout=10)
    assert [r.status for r in capture_server.requests] == [503, 503, 503]
    stats = exporter.stats()
    assert (stats.sent, stats.dropped_sink_error, stats.dropped) == (0, 2, 2)


def test_connection_refused_then_recovery_delivers_later_batches(
    capture_server: CaptureServer, make_exporter: ExporterFactory
) -> None:
    exporter = make_exporter(max_retries=1)
    capture_server.refuse()
    exporter.submit(make_span(0))
    assert exporter.flush(timeout=10)
    assert exporter.stats().dropped_sink_error == 1  # refused twice (1 retry), then given up
    capture_server.recover()
    later = make_span(1)
    exporter.submit(later)
    assert exporter.flush(timeout=10)
    assert [e["uuid"] for e in capture_server.events] == [later.span_id]
    assert exporter.stats().sent == 1


def test_refused_connections_are_retried_until_the_server_comes_back(
    capture_server: CaptureServer, make_exporter: ExporterFactory
) -> None:
    exporter = make_exporter(max_retries=8, backoff_base=0.05)
    capture_server.refuse()
    span = make_span()
    exporter.submit(span)
    exporter.flush(timeout=0.05)
    time.sleep(0.1)
    capture_server.recover()
    assert exporter.flush(timeout=15)
    assert [e["uuid"] for e in capture_server.events] == [span.span_id]
    assert exporter.stats().dropped == 0


# -- the caller is never blocked -------------------------------------------------------


def test_submit_returns_while_the_worker_is_stuck_on_a_hung_server(
    capture_server: CaptureServer, make_exporter: ExporterFactory
) -> None:
    exporter = make_exporter(flush_at=1, timeout=30)
    spans = [make_span(i) for i in range(200)]
    done = threading.Event()

    def caller() -> None:
        for s in spans[1:]:
            exporter.submit(s)
        small_trace(exporter)  # the manual API too
        done.set()

    with capture_server.held():
        exporter.submit(spans[0])
        assert capture_server.wait_for_inflight(1, timeout=5)  # the worker is now stuck
        thread = threading.Thread(target=caller)
        thread.start()
        assert done.wait(timeout=10), "submit blocked while the worker was stuck"
        assert capture_server.inflight == 1  # still stuck: the caller did not wait for it
        assert capture_server.events == []
    thread.join()
    assert exporter.flush(timeout=10)
    assert len(capture_server.events) == 203
    assert exporter.stats().dropped == 0


def test_a_dead_host_never_blocks_the_caller_and_losses_are_counted() -> None:
    sink = PosthogSink(
        api_key=TEST_API_KEY,
        host=closed_port_url(),
        timeout=1,
        max_retries=1,
        backoff_base=0.01,
        retry_window=0,
    )
    exporter = PosthogExporter(sink=sink, flush_at=1)
    try:
        done = threading.Event()

        def caller() -> None:
            for i in range(100):
                exporter.submit(make_span(i))
            done.set()

        thread = threading.Thread(target=caller)
        thread.start()
        assert done.wait(timeout=10)
        thread.join()
        assert exporter.flush(timeout=20)
        stats = exporter.stats()
        assert stats.recorded == 100
        assert stats.sent == 0
        assert stats.dropped_sink_error == 100
    finally:
        exporter.shutdown(timeout=1)


def test_shutdown_returns_within_its_bound_with_a_hung_server(
    capture_server: CaptureServer, make_exporter: ExporterFactory
) -> None:
    exporter = make_exporter(flush_at=1, timeout=60, shutdown_timeout=1.0)
    with capture_server.held():
        exporter.submit(make_span(0))
        assert capture_server.wait_for_inflight(1, timeout=5)
        for i in range(1, 6):
            exporter.submit(make_span(i))
        started = time.monotonic()
        exporter.shutdown()
        elapsed = time.monotonic() - started
        assert elapsed < 1.0 + 5  # a correctness bound (the request itself would take 60 s)
        stats = exporter.stats()
        assert stats.sent == 0
        assert stats.queued == 0
        exporter.submit(make_span(99))  # after shutdown: dropped and counted, no error
        assert exporter.stats().dropped_shutdown == stats.dropped_shutdown + 1
    # Released: the batches that were in flight complete; every event is in one bucket.
    assert wait_until(lambda: exporter.stats().sent + exporter.stats().dropped == 7)
    # A request our side gave up on (timeout) may still have been processed by the server.
    stats = exporter.stats()
    assert stats.sent <= len(capture_server.events) <= stats.sent + stats.dropped_sink_error


def test_shutdown_delivers_what_is_queued_when_the_server_is_healthy(
    capture_server: CaptureServer, make_exporter: ExporterFactory
) -> None:
    exporter = make_exporter(flush_at=1000, flush_interval=60)
    spans = [make_span(i) for i in range(30)]
    for s in spans:
        exporter.submit(s)
    exporter.shutdown()
    assert [e["uuid"] for e in capture_server.events] == [s.span_id for s in spans]


def test_queue_overflow_drops_are_counted_and_logged_once(
    capture_server: CaptureServer, make_exporter: ExporterFactory, caplog: pytest.LogCaptureFixture
) -> None:
    exporter = make_exporter(flush_at=1, max_queue_size=5)
    assert isinstance(exporter.sink, PosthogSink)
    on_the_wire = exporter.sink.max_concurrent_sends
    with capture_server.held(), caplog.at_level(logging.WARNING, logger="posthog_callbacks"):
        # Stall the pipeline: batches on the wire (held by the server), one handed over to
        # the senders, one in the worker's hands waiting for room. Then the queue is alone.
        for i in range(on_the_wire):
            exporter.submit(make_span(i))
            assert capture_server.wait_for_inflight(i + 1, timeout=5)
        for i in range(on_the_wire, on_the_wire + 2):
            exporter.submit(make_span(i))
            assert wait_until(lambda: exporter.stats().queued == 0)
        # the worker holds the last one until a sender frees up: it takes nothing more
        for i in range(8):
            exporter.submit(make_span(100 + i))
        stats = exporter.stats()
        assert (stats.queued, stats.dropped_queue_full) == (5, 3)
    assert exporter.flush(timeout=10)
    recorded = on_the_wire + 2 + 5
    assert len(capture_server.events) == recorded
    stats = exporter.stats()
    assert (stats.recorded, stats.sent, stats.dropped_queue_full) == (recorded, recorded, 3)
    assert caplog.text.count("queue full") == 1


# -- what the bytes may not contain ----------------------------------------------------


def test_privacy_mode_sends_no_inputs_or_outputs_in_any_byte(
    capture_server: CaptureServer, make_exporter: ExporterFactory
) -> None:
    exporter = make_exporter(privacy_mode=True)
    small_trace(exporter, input_text="PRIVATE-QUESTION-7f3a", output_text="PRIVATE-ANSWER-91c2")
    assert exporter.flush(timeout=10)
    sent = all_bytes(capture_server)
    assert b"PRIVATE-QUESTION-7f3a" not in sent
    assert b"PRIVATE-ANSWER-91c2" not in sent
    events = capture_server.events
    assert [e["event"] for e in events] == ["$ai_span", "$ai_generation", "$ai_trace"]
    gen = events[1]["properties"]
    assert "$ai_input" not in gen and "$ai_output_choices" not in gen
    assert (gen["$ai_model"], gen["$ai_input_tokens"], gen["$ai_output_tokens"]) == (
        "gpt-4o-mini",
        10,
        2,
    )


def test_privacy_mode_off_sends_the_content(
    capture_server: CaptureServer, make_exporter: ExporterFactory
) -> None:
    exporter = make_exporter()
    small_trace(exporter, input_text="PUBLIC-QUESTION-7f3a", output_text="PUBLIC-ANSWER-91c2")
    assert exporter.flush(timeout=10)
    body = b"".join(decoded_bodies(capture_server))
    assert b"PUBLIC-QUESTION-7f3a" in body and b"PUBLIC-ANSWER-91c2" in body


def test_secrets_never_appear_in_any_byte_sent(
    capture_server: CaptureServer, make_exporter: ExporterFactory
) -> None:
    openai_key = "sk-proj-Abcdefghijklmnopqrstuvwxyz0123456789"
    bearer = "Bearer eyJhbGciOiJIUzI1NiJ9.c2VjcmV0LXBheWxvYWQ.sig123456"
    exporter = make_exporter()
    with exporter.trace(
        "t",
        input={"prompt": f"my key is {openai_key}"},
        metadata={"Authorization": bearer, "api_key": openai_key},
    ) as trace:
        with trace.generation(
            "g",
            model="gpt-4o",
            provider="openai",
            input=[{"role": "user", "content": f"project key {TEST_API_KEY} ok"}],
            model_parameters={"api_key": openai_key, "max_tokens": 5},
            metadata={"headers": {"authorization": bearer}},
        ) as gen:
            gen.update(output=[{"role": "assistant", "content": f"echo {openai_key}"}])
    assert exporter.flush(timeout=10)

    sent = all_bytes(capture_server)
    assert openai_key.encode() not in sent
    assert bearer.encode() not in sent
    assert b"eyJhbGciOiJIUzI1NiJ9" not in sent
    # The project key is the capture API's credential: it must be in the envelope's
    # api_key field, and nowhere else.
    [body] = decoded_bodies(capture_server)
    assert body.count(TEST_API_KEY.encode()) == 1
    assert json.loads(body)["api_key"] == TEST_API_KEY
    assert "authorization" not in capture_server.requests[0].headers
    gen_props = capture_server.events[0]["properties"]
    assert gen_props["$ai_model_parameters"] == {"api_key": "[REDACTED]", "max_tokens": 5}
    assert gen_props["$ai_max_tokens"] == 5
    assert "[REDACTED]" in json.dumps(gen_props["$ai_input"])


# -- other sinks and no sink -----------------------------------------------------------


def test_a_posthog_client_as_sink_sends_through_its_key_and_host(
    capture_server: CaptureServer,
) -> None:
    client = posthog.Posthog(TEST_API_KEY, host=capture_server.url, timeout=5)
    exporter = PosthogExporter(sink=client)
    try:
        assert isinstance(exporter.sink, PosthogSink)
        trace_id = small_trace(exporter)
        assert exporter.flush(timeout=10)
    finally:
        exporter.shutdown(timeout=2)
        client.shutdown()
    [request] = capture_server.requests
    assert request.path == AI_PATH
    assert request.payload["api_key"] == TEST_API_KEY
    assert request.headers["content-encoding"] == "gzip"
    assert [e["properties"]["$ai_trace_id"] for e in request.payload["batch"]] == [trace_id] * 3


def test_a_disabled_posthog_client_sends_nothing(capture_server: CaptureServer) -> None:
    client = posthog.Posthog(TEST_API_KEY, host=capture_server.url, disabled=True)
    exporter = PosthogExporter(sink=client)
    try:
        small_trace(exporter)
        assert exporter.flush(timeout=10)
    finally:
        exporter.shutdown(timeout=2)
        client.shutdown()
    assert capture_server.requests == []


def test_a_posthog_client_with_send_false_sends_nothing(capture_server: CaptureServer) -> None:
    client = posthog.Posthog(TEST_API_KEY, host=capture_server.url, send=False)
    exporter = PosthogExporter(sink=client)
    try:
        small_trace(exporter)
        assert exporter.flush(timeout=10)
    finally:
        exporter.shutdown(timeout=2)
        client.shutdown()
    assert capture_server.requests == []


def test_the_posthog_clients_before_send_hook_is_applied(capture_server: CaptureServer) -> None:
    def before_send(event: dict[str, Any]) -> dict[str, Any] | None:
        if event["event"] == "$ai_span":
            return None  # dropped, as the client's own capture() would
        if event["event"] == "$ai_trace":
            raise RuntimeError("hook bug")  # dropped too (the SDK logs and drops)
        event["properties"]["scrubbed_by"] = "before_send"
        event["properties"].pop("$ai_input", None)
        return event

    client = posthog.Posthog(TEST_API_KEY, host=capture_server.url, before_send=before_send)
    exporter = PosthogExporter(sink=client)
    try:
        small_trace(exporter, input_text="HOOK-REMOVES-THIS-d41c")
        assert exporter.flush(timeout=10)
    finally:
        exporter.shutdown(timeout=2)
        client.shutdown()
    [event] = capture_server.events
    assert event["event"] == "$ai_generation"
    assert event["properties"]["scrubbed_by"] == "before_send"
    assert b"HOOK-REMOVES-THIS-d41c" not in b"".join(decoded_bodies(capture_server))
    assert isinstance(exporter.sink, PosthogSink)
    assert exporter.sink.dropped_by_before_send == 2
    stats = exporter.stats()
    assert (stats.recorded, stats.sent, stats.dropped_by_hook, stats.in_flight) == (3, 1, 2, 0)


def test_no_key_and_no_sink_warns_once_and_is_a_no_op(
    capture_server: CaptureServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("POSTHOG_API_KEY", raising=False)
    monkeypatch.setenv("POSTHOG_HOST", capture_server.url)
    with caplog.at_level(logging.WARNING, logger="posthog_callbacks"):
        exporter = PosthogExporter()
        small_trace(exporter)
        exporter.capture_feedback("t1", "great")
        assert exporter.flush(timeout=5)
        exporter.shutdown(timeout=1)
    assert exporter.sink is None
    assert not exporter.enabled
    assert exporter.stats().recorded == 0
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "POSTHOG_API_KEY" in warnings[0].getMessage()
    assert capture_server.requests == []


def test_server_rejects_malformed_batches(capture_server: CaptureServer) -> None:
    import requests

    good = {
        "event": "$ai_span",
        "distinct_id": "d",
        "properties": {},
        "timestamp": "2024-01-01T00:00:00+00:00",
        "uuid": str(uuid.uuid4()),
    }
    url = capture_server.url + AI_PATH
    assert requests.post(url, json={"api_key": "k", "batch": [good]}).status_code == 200
    for bad in (
        {"batch": [good]},
        {"api_key": "k", "batch": []},
        {"api_key": "k", "batch": [{**good, "uuid": "nope"}]},
        {"api_key": "k", "batch": [{k: v for k, v in good.items() if k != "timestamp"}]},
        {"api_key": "k", "batch": [{**good, "properties": []}]},
    ):
        assert requests.post(url, json=bad).status_code == 400, bad
    assert (
        requests.post(
            url, data=b"\x1f\x8bnot gzip", headers={"Content-Encoding": "gzip"}
        ).status_code
        == 400
    )
    zipped = gzip.compress(json.dumps({"api_key": "k", "batch": [good]}).encode())
    assert (
        requests.post(
            capture_server.url + "/batch/", data=zipped, headers={"Content-Encoding": "gzip"}
        ).status_code
        == 200
    )
    assert requests.post(capture_server.url + "/capture/", json={}).status_code == 404
    assert len(capture_server.events) == 2


# -- one bad value costs at most its own field, one bad event at most itself ------------


class _Plain(enum.Enum):
    OK = object()  # orjson cannot encode the value: the field becomes a placeholder


class _Opaque:
    def __repr__(self) -> str:  # never called: it would stall the sender
        raise AssertionError("__repr__ called")

    __str__ = __repr__


def raw_event(i: int, **props: Any) -> dict[str, Any]:
    return {
        "event": "$ai_span",
        "distinct_id": "d",
        "properties": {"$ai_trace_id": "t", "i": i, **props},
        "timestamp": "2024-01-01T00:00:00+00:00",
        "uuid": str(uuid.uuid4()),
    }


def test_values_json_cannot_carry_cost_only_their_field(capture_server: CaptureServer) -> None:
    sink = PosthogSink(api_key=TEST_API_KEY, host=capture_server.url)
    events = [
        raw_event(0, big=10**5000),  # over Python's 4,300-digit str() limit
        raw_event(1, wide=2**70),  # beyond 64 bits, printable
        raw_event(2, status=_Plain.OK),
        raw_event(3, http_status=_Opaque()),
        raw_event(4, text="a\ud800b", **{"\udfff": 1}),  # lone surrogates, value and key
        raw_event(5, keyed={1: "a", None: "b", (1, 2): "c"}),
        raw_event(6, fine="ok"),
    ]
    assert sink.send(events) == 0
    arrived = {e["properties"]["i"]: e for e in capture_server.events}
    assert sorted(arrived) == list(range(7))
    assert [e["uuid"] for e in capture_server.events] == [e["uuid"] for e in events]
    props = {i: e["properties"] for i, e in arrived.items()}
    assert props[0]["big"] == "<int too large>"
    assert props[1]["wide"] == str(2**70)
    assert props[2]["status"] == "<object>"
    assert props[3]["http_status"] == "<_Opaque>"
    assert props[4]["text"] == "a\ufffdb" and props[4]["\ufffd"] == 1
    assert props[5]["keyed"] == {"1": "a", "null": "b", "<tuple>": "c"}
    assert props[6]["fine"] == "ok"
    assert sink.dropped_invalid == 0


def test_an_event_over_the_size_limit_costs_only_itself(capture_server: CaptureServer) -> None:
    sink = PosthogSink(api_key=TEST_API_KEY, host=capture_server.url)
    huge = raw_event(1, blob="x" * (8 * 1024 * 1024))
    events = [raw_event(0), huge, raw_event(2)]
    assert sink.send(events) == 1
    assert [e["properties"]["i"] for e in capture_server.events] == [0, 2]
    assert sink.dropped_invalid == 1


def test_an_event_that_cannot_be_encoded_at_all_costs_only_itself(
    capture_server: CaptureServer,
) -> None:
    sink = PosthogSink(api_key=TEST_API_KEY, host=capture_server.url)
    deep: Any = "leaf"
    for _ in range(400):  # deeper than any encoder goes
        deep = [deep]
    events = [raw_event(0), raw_event(1, deep=deep), raw_event(2)]
    assert sink.send(events) == 0
    arrived = {e["properties"]["i"]: e["properties"] for e in capture_server.events}
    assert sorted(arrived) == [0, 1, 2]
    flat = json.dumps(arrived[1]["deep"])
    assert "<too deep>" in flat and "leaf" not in flat


def test_a_batch_encoded_chunk_by_chunk_is_the_array_of_its_valid_events() -> None:
    from posthog_callbacks.sinks import EncodedEvents, encode_events

    deep: Any = "leaf"
    for _ in range(400):  # deeper than any encoder goes
        deep = [deep]
    events = [
        raw_event(0, text="plain"),
        raw_event(1, big=10**5000),
        raw_event(2, text="lone \ud800"),
        raw_event(3, deep=deep),
        dict(raw_event(4), properties={7: "int key", "$ai_trace_id": "t"}),
        raw_event(5, blob="x" * (8 * 1024 * 1024)),  # over the endpoint's limit encoded
        raw_event(6),
    ]
    whole = encode_events(events)
    assert (whole.count, whole.invalid) == (6, 1)
    for chunk in (1, 2, 3, 7):
        batch = EncodedEvents()
        invalid = 0
        for i in range(0, len(events), chunk):
            encoded = encode_events(events[i : i + chunk])
            invalid += encoded.invalid
            batch.add(encoded)  # a chunk of only the huge event adds nothing
        assert (batch.count, batch.invalid, len(batch), invalid) == (6, 1, 7, 1)
        assert batch.array() == whole.array  # the same bytes, however it was chunked
        assert batch.size == sum(len(a) for a in batch.arrays)
    decoded = json.loads(whole.array)
    assert [d["properties"]["i"] for d in decoded if "i" in d["properties"]] == [0, 1, 2, 3, 6]
    assert decoded[1]["properties"]["big"] == "<int too large>"
    assert decoded[4]["properties"]["7"] == "int key"


def test_jsonl_sink_writes_valid_utf8_lines_and_costs_a_bad_value_only_its_field(
    tmp_path: Any,
) -> None:
    from posthog_callbacks import JsonlSink

    sink = JsonlSink(tmp_path / "out.jsonl")
    events = [raw_event(0, text="lone \ud800"), raw_event(1, big=10**5000), raw_event(2)]
    assert sink.send(events) == 0
    lines = (tmp_path / "out.jsonl").read_bytes().decode("utf-8").splitlines()
    parsed = [json.loads(line) for line in lines]
    assert [p["properties"]["i"] for p in parsed] == [0, 1, 2]
    assert parsed[0]["properties"]["text"] == "lone \ufffd"
    assert parsed[1]["properties"]["big"] == "<int too large>"


def test_the_sdk_path_of_a_wrapped_client_also_costs_a_bad_value_only_its_field(
    capture_server: CaptureServer,
) -> None:
    client = posthog.Posthog(TEST_API_KEY, host=capture_server.url)
    try:
        sink = PosthogSink(client=client)
        assert sink.send([raw_event(0, big=10**5000), raw_event(1, text="\ud800")]) == 0
    finally:
        client.shutdown()
    props = [e["properties"] for e in capture_server.events]
    assert [(p["i"], p.get("big"), p.get("text")) for p in props] == [
        (0, "<int too large>", None),
        (1, None, "\ufffd"),
    ]


def test_an_invalid_event_is_counted_as_invalid_not_as_a_lost_batch(
    capture_server: CaptureServer,
) -> None:
    sink = PosthogSink(api_key=TEST_API_KEY, host=capture_server.url)
    processor = BatchProcessor(
        sink,
        lambda span: ({}, 0),
        flush_at=1000,
        flush_interval=60,
        max_queue_size=100,
        max_batch_size=100,
        shutdown_timeout=2,
    )
    try:
        good = [raw_event(i) for i in range(5)]
        for event in good[:2]:
            processor.enqueue(event)
        processor.enqueue(raw_event(99, blob="x" * (8 * 1024 * 1024)))  # over the limit
        for event in good[2:]:
            processor.enqueue(event)
        assert processor.flush(timeout=20)
        stats = processor.stats(open_runs=0)
    finally:
        processor.shutdown(timeout=2)
    assert [e["uuid"] for e in capture_server.events] == [e["uuid"] for e in good]
    assert (stats.recorded, stats.sent, stats.dropped_invalid, stats.dropped_sink_error) == (
        6,
        5,
        1,
        0,
    )
    assert stats.in_flight == 0
    assert (sink.dropped_invalid, sink.requests) == (1, 1)  # encoded by the worker, one request


def test_a_chunk_that_fails_to_encode_costs_its_events_only(
    capture_server: CaptureServer, make_exporter: ExporterFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    from posthog_callbacks import batching
    from posthog_callbacks.sinks import encode_events as real

    calls: list[int] = []

    def flaky(events: Any) -> Any:
        calls.append(len(events))
        if len(calls) == 2:
            raise RuntimeError("an encoder bug")
        return real(events)

    monkeypatch.setattr(batching, "encode_events", flaky)
    monkeypatch.setattr(batching, "_ENCODE_CHUNK", 2)
    exporter = make_exporter(flush_at=100, flush_interval=60)
    spans = [make_span(i) for i in range(5)]
    for span in spans:
        exporter.submit(span)
    assert exporter.flush(timeout=20)  # the worker survived and counted everything
    stats = exporter.stats()
    assert calls == [2, 2, 1]
    assert (stats.sent, stats.dropped_invalid, stats.in_flight) == (3, 2, 0)
    sent = {e["uuid"] for e in capture_server.events}
    assert sent == {s.span_id for s in spans[:2] + spans[4:]}


# -- memory: the queue is bounded by bytes held -----------------------------------------


def burst_span(i: int) -> FinishedSpan:
    """One generation of the 80k burst (bench/exporter_throughput.py): short chat."""
    tid = str(uuid.uuid4())
    return FinishedSpan(
        trace_id=tid,
        span_id=str(uuid.uuid4()),
        parent_id=tid,
        kind=SpanKind.GENERATION,
        name="chat",
        start_time=1_700_000_000.0 + i,
        end_time=1_700_000_000.5 + i,
        input=[
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "What is the capital of France?"},
        ],
        output=[{"role": "assistant", "content": "Paris."}],
        model="gpt-4o-mini",
        provider="openai",
        model_parameters={"temperature": 0.2, "max_tokens": 256},
    )


def test_the_default_byte_budget_holds_the_80k_burst_and_a_big_input_counts_its_size() -> None:
    assert 80_000 * estimate_bytes(burst_span(0)) <= DEFAULT_MAX_QUEUE_BYTES
    big = burst_span(1)._replace(input="x" * 4_000_000)
    assert 4_000_000 <= estimate_bytes(big) <= 4_000_000 + 2 * 1024
    # values JSON cannot carry, and objects, are still estimated (never by their repr)
    odd = burst_span(2)._replace(input={"n": 10**5000, "o": _Opaque(), 1: "x" * 1000})
    assert 1000 <= estimate_bytes(odd) <= 4000
    # a value sharing one object 2**80 ways (as a snapshot may): each object counted once
    shared: Any = {"leaf": "y" * 100}
    for _ in range(40):
        shared = {"a": shared, "b": shared, "c": [shared, shared]}
    assert 100 <= estimate_bytes(burst_span(3)._replace(input=shared)) <= 10_000


def test_the_queue_is_bounded_by_bytes_and_drops_are_counted_and_logged_once(
    capture_server: CaptureServer, make_exporter: ExporterFactory, caplog: pytest.LogCaptureFixture
) -> None:
    budget = 3_000_000
    exporter = make_exporter(flush_at=1, max_queue_bytes=budget, timeout=30)
    assert isinstance(exporter.sink, PosthogSink)
    text = "lorem ipsum " * 40_000  # ~480 KB per span
    spans = [make_span(i)._replace(input=text) for i in range(40)]
    with capture_server.held(), caplog.at_level(logging.WARNING, logger="posthog_callbacks"):
        exporter.submit(spans[0])
        assert capture_server.wait_for_inflight(1, timeout=5)  # the pipeline is stuck
        for s in spans[1:]:
            exporter.submit(s)
        stats = exporter.stats()
        # a few batches left the queue for the senders; what stayed is within the budget
        assert stats.dropped_queue_full > 0
        assert stats.queued * len(text) <= budget
    assert exporter.flush(timeout=30)
    stats = exporter.stats()
    assert stats.recorded + stats.dropped_queue_full == 40
    assert (stats.sent, stats.dropped) == (stats.recorded, stats.dropped_queue_full)
    assert len(capture_server.events) == stats.recorded
    assert caplog.text.count("queue full") == 1
    assert "max_queue_bytes" in caplog.text


# -- errors to Error Tracking: $exception events linked by $exception_event_id ----------


def failing_trace(exporter: PosthogExporter, secret: str = "PROMPT-TEXT-5e1f") -> str:
    """A trace whose generation raises ``ValueError("rate limit hit")``."""
    with pytest.raises(ValueError):
        with exporter.trace("answer", input={"q": secret}, distinct_id="u1") as trace:
            with trace.generation(
                "chat", model="gpt-4o-mini", provider="openai", input=secret
            ) as gen:
                raise ValueError("rate limit hit")
    assert gen.span_id
    return trace.trace_id


def test_capture_exceptions_sends_linked_exception_events_to_the_events_endpoint(
    capture_server: CaptureServer, make_exporter: ExporterFactory
) -> None:
    exporter = make_exporter(capture_exceptions=True)
    trace_id = failing_trace(exporter)
    assert exporter.flush(timeout=10)
    ai = {r.path for r in capture_server.accepted if r.events[0]["event"].startswith("$ai_")}
    assert ai == {AI_PATH}
    exceptions = [e for r in capture_server.accepted if r.path == "/batch/" for e in r.events]
    by_uuid = {e["uuid"]: e for e in exceptions}
    failed = [e for e in capture_server.events if e["event"].startswith("$ai_")]
    assert [e["event"] for e in failed] == ["$ai_generation", "$ai_trace"]
    assert all(e["properties"]["$ai_is_error"] for e in failed)
    assert len(exceptions) == 2 and all(e["event"] == "$exception" for e in exceptions)
    for event in failed:
        linked = by_uuid[event["properties"]["$exception_event_id"]]
        assert linked["distinct_id"] == event["distinct_id"] == "u1"
        assert linked["properties"]["$ai_trace_id"] == trace_id
        assert linked["properties"]["$exception_level"] == "error"
        assert "$ai_input" not in linked["properties"]
        assert "$ai_input_state" not in linked["properties"]
    gen = by_uuid[failed[0]["properties"]["$exception_event_id"]]
    [item] = gen["properties"]["$exception_list"]
    assert (item["type"], item["value"]) == ("ValueError", "rate limit hit")
    stats = exporter.stats()
    assert (stats.recorded, stats.sent, stats.dropped) == (2, 2, 0)  # $exception not counted


def test_exceptions_are_not_captured_by_default_nor_in_privacy_mode(
    capture_server: CaptureServer, make_exporter: ExporterFactory
) -> None:
    exporters = [make_exporter(), make_exporter(capture_exceptions=True, privacy_mode=True)]
    failing_trace(exporters[0])
    failing_trace(exporters[1], "PRIVATE-9a7c")
    assert all(exporter.flush(timeout=10) for exporter in exporters)
    assert len(capture_server.events) == 4
    assert all(r.path == AI_PATH for r in capture_server.requests)
    assert all("$exception_event_id" not in e["properties"] for e in capture_server.events)
    assert b"PRIVATE-9a7c" not in all_bytes(capture_server)


def test_a_wrapped_client_with_exception_autocapture_gets_them_through_capture_exception(
    capture_server: CaptureServer,
) -> None:
    client = posthog.Posthog(
        TEST_API_KEY, host=capture_server.url, enable_exception_autocapture=True, sync_mode=True
    )
    exporter = PosthogExporter(sink=client)
    try:
        failing_trace(exporter)
        assert exporter.flush(timeout=10)
        client.flush()
    finally:
        exporter.shutdown(timeout=2)
        client.shutdown()
    exceptions = {e["uuid"]: e for e in capture_server.events if e["event"] == "$exception"}
    failed = [e for e in capture_server.events if e["event"].startswith("$ai_")]
    assert len(failed) == 2 and len(exceptions) == 2
    for event in failed:
        linked = exceptions[event["properties"]["$exception_event_id"]]
        assert linked["properties"]["$ai_trace_id"] == event["properties"]["$ai_trace_id"]
    types = sorted(e["properties"]["$exception_list"][0]["type"] for e in exceptions.values())
    assert "ValueError" in types
