"""PosthogExporter with in-memory sinks: manual API, configuration, sampling, bounds."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from typing import Any

import pytest

from posthog_callbacks import JsonlSink, MemorySink, PosthogExporter
from posthog_callbacks.sinks import PosthogSink
from posthog_callbacks.spans import FinishedSpan, OpenSpan, SpanKind


def make(**kw: Any) -> tuple[PosthogExporter, MemorySink]:
    sink = MemorySink()
    return PosthogExporter(sink=sink, **kw), sink


def by_name(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {e["properties"]["$ai_span_name"]: e for e in events}


def test_manual_trace_produces_a_parent_linked_tree() -> None:
    exporter, sink = make()
    with exporter.trace(
        "answer",
        input={"q": "hi"},
        distinct_id="u1",
        session_id="s1",
        metadata={"team": "geo"},
        tags=["beta"],
    ) as trace:
        with trace.span("retrieve", input="hi") as span:
            span.update(output=["doc"])
            with span.embedding(
                "embed", model="text-embedding-3-small", provider="openai", input=["hi"]
            ) as emb:
                emb.update(usage={"prompt_tokens": 2})
        with trace.generation(
            "chat",
            model="gpt-4o-mini",
            provider="openai",
            input=[{"role": "user", "content": "hi"}],
        ) as gen:
            gen.update(
                output=[{"role": "assistant", "content": "yo"}],
                usage={"input_tokens": 10, "output_tokens": 2},
            )
        trace.update(output={"answer": "yo"})
    assert exporter.flush()
    events = by_name(sink.events)
    assert [e["event"] for e in sink.events] == [
        "$ai_embedding",
        "$ai_span",
        "$ai_generation",
        "$ai_trace",
    ]
    tid = trace.trace_id
    assert {e["properties"]["$ai_trace_id"] for e in sink.events} == {tid}
    assert {e["distinct_id"] for e in sink.events} == {"u1"}
    assert {e["properties"]["$ai_session_id"] for e in sink.events} == {"s1"}
    assert {e["properties"]["$ai_framework"] for e in sink.events} == {"manual"}
    assert events["retrieve"]["properties"]["$ai_parent_id"] == tid
    assert events["embed"]["properties"]["$ai_parent_id"] == span.span_id
    assert events["embed"]["properties"]["$ai_input_tokens"] == 2
    assert events["chat"]["properties"]["$ai_parent_id"] == tid
    assert events["chat"]["properties"]["$ai_output_tokens"] == 2
    root = events["answer"]["properties"]
    assert root["$ai_output_state"] == {"answer": "yo"}
    assert root["team"] == "geo" and root["beta"] is True
    assert exporter.stats().sent == 4


def test_exception_marks_span_and_trace_and_reraises() -> None:
    exporter, sink = make()
    with pytest.raises(ValueError, match="bad input"):
        with exporter.trace("t") as trace, trace.span("step"):
            raise ValueError("bad input")
    exporter.flush()
    events = by_name(sink.events)
    assert events["step"]["properties"]["$ai_error"] == "ValueError: bad input"
    assert events["t"]["properties"]["$ai_is_error"] is True
    assert events["t"]["properties"]["$ai_error"] == "ValueError: bad input"


def test_handled_child_error_still_marks_the_trace() -> None:
    exporter, sink = make()
    with exporter.trace("t") as trace:
        try:
            with trace.span("flaky"):
                raise KeyError("k")
        except KeyError:
            pass
    exporter.flush()
    root = by_name(sink.events)["t"]["properties"]
    assert root["$ai_is_error"] is True
    assert root["$ai_error"] == "span 'flaky' failed: KeyError: 'k'"


def test_child_left_open_is_closed_as_error_when_trace_ends() -> None:
    exporter, sink = make()
    with exporter.trace("t") as trace:
        trace.span("forgotten")
    exporter.flush()
    events = by_name(sink.events)
    assert events["forgotten"]["properties"]["$ai_error"] == (
        "span never ended (its trace ended first)"
    )
    assert exporter.stats().open_runs == 0
    assert exporter.stats().closed_orphans == 1


def test_manual_api_from_threads_and_tasks() -> None:
    exporter, sink = make()

    def work(i: int) -> None:
        with exporter.trace(f"thread-{i}") as t, t.span(f"child-{i}"):
            pass

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    async def task(i: int) -> None:
        async with exporter.trace(f"task-{i}") as t:
            async with t.span(f"achild-{i}"):
                await asyncio.sleep(0)

    async def main() -> None:
        await asyncio.gather(*(task(i) for i in range(8)))

    asyncio.run(main())
    exporter.flush()
    events = by_name(sink.events)
    for prefix, child in (("thread", "child"), ("task", "achild")):
        for i in range(8):
            root = events[f"{prefix}-{i}"]["properties"]["$ai_trace_id"]
            assert events[f"{child}-{i}"]["properties"]["$ai_parent_id"] == root
            assert events[f"{child}-{i}"]["properties"]["$ai_trace_id"] == root


def test_sampling_keeps_or_drops_whole_traces() -> None:
    exporter, sink = make(sample_rate=0.5)
    for i in range(200):
        with exporter.trace(f"t{i}") as t, t.span("a"), t.span("b"):
            pass
    exporter.flush()
    per_trace: dict[str, int] = {}
    for e in sink.events:
        tid = e["properties"]["$ai_trace_id"]
        per_trace[tid] = per_trace.get(tid, 0) + 1
    assert set(per_trace.values()) == {3}
    assert 50 < len(per_trace) < 150
    assert exporter.stats().not_sampled == (200 - len(per_trace)) * 3
    assert all(exporter.is_sampled(tid) for tid in per_trace)


def test_feedback_and_metric() -> None:
    exporter, sink = make(default_distinct_id="anon")
    exporter.capture_feedback("trace-1", "thumbs up", score=1)
    exporter.capture_metric("trace-1", "relevance", 0.75)
    exporter.flush()
    assert [(e["event"], e["distinct_id"]) for e in sink.events] == [
        ("$ai_feedback", "anon"),
        ("$ai_metric", "anon"),
    ]
    assert sink.events[1]["properties"]["$ai_metric_value"] == 0.75


def test_serverless_preset_and_defaults() -> None:
    assert (make()[0].flush_at, make()[0].flush_interval) == (20, 10.0)
    exporter = make(serverless=True)[0]
    assert (exporter.flush_at, exporter.flush_interval) == (10, 2.0)
    assert make(serverless=True, flush_at=3)[0].flush_at == 3


@pytest.mark.parametrize(
    ("kw", "error", "message"),
    [
        ({"flush_at": 0}, ValueError, "flush_at must be a positive number"),
        ({"flush_interval": -1}, ValueError, "flush_interval"),
        ({"sample_rate": 1.5}, ValueError, "sample_rate must be between 0 and 1"),
        ({"mask": "nope"}, TypeError, "mask must be a callable"),
        ({"sink": 42}, TypeError, "sink must be MemorySink"),
    ],
)
def test_configuration_errors_say_how_to_fix(
    kw: dict[str, Any], error: type[Exception], message: str
) -> None:
    kw.setdefault("sink", MemorySink())
    with pytest.raises(error, match=message):
        PosthogExporter(**kw)


def test_no_key_no_sink_warns_once_and_is_a_no_op(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("POSTHOG_API_KEY", raising=False)
    with caplog.at_level(logging.WARNING, logger="posthog_callbacks"):
        exporter = PosthogExporter()
        with exporter.trace("t") as t, t.span("s"):
            pass
    assert not exporter.enabled
    assert exporter.flush()
    assert exporter.stats().recorded == 0
    assert [r.message for r in caplog.records if "no PostHog API key" in r.message] != []


def test_env_configuration_builds_a_posthog_sink(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POSTHOG_API_KEY", "phc_env_key")
    monkeypatch.setenv("POSTHOG_HOST", "https://eu.i.posthog.com/")
    exporter = PosthogExporter()
    assert isinstance(exporter.sink, PosthogSink)
    assert exporter.sink.api_key == "phc_env_key"
    assert exporter.sink.host == "https://eu.i.posthog.com"
    assert exporter.sink.endpoint == "/i/v0/ai/batch/"
    exporter.shutdown()


def test_queue_bound_drops_are_counted(caplog: pytest.LogCaptureFixture) -> None:
    release, entered = threading.Event(), threading.Event()

    class Blocking(MemorySink):
        def send(self, events: Any, deadline: float | None = None) -> None:
            entered.set()
            release.wait(5)
            super().send(events, deadline)

    sink = Blocking()
    exporter = PosthogExporter(sink=sink, max_queue_size=10, flush_at=1, max_batch_size=1)
    with caplog.at_level(logging.WARNING, logger="posthog_callbacks"):
        for i in range(50):
            exporter.capture_metric(f"t{i}", "m", i)
    assert entered.wait(5)
    stats = exporter.stats()
    release.set()
    exporter.flush()
    final = exporter.stats()
    assert stats.dropped_queue_full > 0
    assert stats.sent == 0 and stats.in_flight >= 1  # the batch held inside sink.send
    assert final.sent + final.dropped_queue_full == 50
    assert (final.in_flight, final.queued) == (0, 0)
    assert len(sink.events) == final.sent
    assert sum("queue full" in r.message for r in caplog.records) == 1


def test_failing_sink_loses_only_its_batch_and_never_raises() -> None:
    class Flaky(MemorySink):
        calls = 0

        def send(self, events: Any, deadline: float | None = None) -> None:
            Flaky.calls += 1
            if Flaky.calls == 1:
                raise OSError("disk full")
            super().send(events, deadline)

    sink = Flaky()
    exporter = PosthogExporter(sink=sink, max_batch_size=2)
    for i in range(4):
        exporter.capture_metric(f"t{i}", "m", i)
    assert exporter.flush()
    stats = exporter.stats()
    assert (stats.dropped_sink_error, stats.sent) == (2, 2)
    assert [e["properties"]["$ai_metric_value"] for e in sink.events] == [2, 3]


def test_shutdown_closes_open_runs_and_later_spans_are_counted() -> None:
    exporter, sink = make()
    trace = exporter.trace("never-ended")
    trace.span("child")
    exporter.shutdown()
    names = {e["properties"]["$ai_span_name"]: e for e in sink.events}
    assert names["never-ended"]["properties"]["$ai_error"] == "run still open at shutdown"
    assert names["child"]["properties"]["$ai_is_error"] is True
    exporter.capture_metric("t", "late", 1)
    assert exporter.stats().dropped_shutdown == 1
    exporter.shutdown()  # idempotent


def test_ttl_sweep_closes_stale_runs() -> None:
    exporter, sink = make(open_run_ttl=0.2, flush_interval=0.05)
    stale = OpenSpan(
        trace_id="t1",
        span_id="t1",
        parent_id=None,
        kind=SpanKind.TRACE,
        name="stale",
        start_time=0.0,
    )
    exporter.manual_runs.add("t1", stale)
    exporter.capture_metric("t0", "wake", 1)  # starts the worker
    for _ in range(100):
        exporter.flush()
        if len(sink.events) >= 2:
            break
        threading.Event().wait(0.05)
    assert (
        by_name([e for e in sink.events if e["event"] != "$ai_metric"])["stale"]["properties"][
            "$ai_error"
        ]
        == "run never ended (closed after 0.2s)"
    )
    assert len(exporter.manual_runs) == 0


def test_jsonl_sink_and_path_sink(tmp_path: Any) -> None:
    path = tmp_path / "out" / "traces.jsonl"
    exporter = PosthogExporter(sink=str(path))
    assert isinstance(exporter.sink, JsonlSink)
    with exporter.trace("t", input="é"):
        pass
    exporter.flush()
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 1
    event = json.loads(lines[0])
    assert set(event) == {"event", "distinct_id", "properties", "timestamp", "uuid"}
    assert event["properties"]["$ai_input_state"] == "é"


def test_fork_child_does_not_inherit_the_queue() -> None:
    import os

    if not hasattr(os, "fork"):
        pytest.skip("no fork")
    exporter, sink = make(flush_at=1000, flush_interval=60)
    exporter.capture_metric("parent", "m", 1)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        try:
            exporter.capture_metric("child", "m", 2)
            exporter.flush(5)
            names = [e["properties"]["$ai_trace_id"] for e in sink.events]
            os.write(w, json.dumps(names).encode())
        finally:
            os._exit(0)
    os.close(w)
    os.waitpid(pid, 0)
    with os.fdopen(r) as fh:
        child_saw = json.loads(fh.read())
    exporter.flush()
    assert child_saw == ["child"]
    assert [e["properties"]["$ai_trace_id"] for e in sink.events] == ["parent"]


def test_registered_table_is_swept_before_any_span_was_submitted() -> None:
    from posthog_callbacks.tracing import RunTable

    exporter, sink = make(open_run_ttl=0.2, flush_interval=0.05)
    table: RunTable[str] = RunTable()
    table.add(
        "r1",
        OpenSpan(
            trace_id="t1",
            span_id="t1",
            parent_id=None,
            kind=SpanKind.TRACE,
            name="stuck",
            start_time=0.0,
        ),
    )
    exporter.register_runs(table)
    for _ in range(100):
        if sink.events:
            break
        threading.Event().wait(0.05)
    exporter.flush()
    assert [e["properties"]["$ai_span_name"] for e in sink.events] == ["stuck"]
    assert len(table) == 0


def test_manual_generation_time_to_first_token() -> None:
    exporter, sink = make()
    with exporter.trace("t") as trace, trace.generation("stream", model="m") as gen:
        threading.Event().wait(0.02)
        gen.mark_first_token()
        first = gen._span.first_token_time
        gen.mark_first_token()  # only the first token counts
        assert gen._span.first_token_time == first
        threading.Event().wait(0.02)
    exporter.flush()
    props = by_name(sink.events)["stream"]["properties"]
    assert 0.01 <= props["$ai_time_to_first_token"] < props["$ai_latency"]


def test_an_unprintable_exception_still_marks_the_span() -> None:
    class Unprintable(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no str")

    exporter, sink = make()
    with pytest.raises(Unprintable):
        with exporter.trace("t") as trace, trace.span("step"):
            raise Unprintable()
    exporter.flush()
    assert by_name(sink.events)["step"]["properties"]["$ai_error"] == (
        "Unprintable: <unprintable error>"
    )


# -- as_exporter and sink resolution -----------------------------------------------------


def test_as_exporter_accepts_what_every_front_door_accepts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import posthog

    from posthog_callbacks.exporter import as_exporter
    from posthog_callbacks.tracing import Recorder

    exporter = PosthogExporter(sink=MemorySink())
    assert as_exporter(exporter) is exporter

    client = posthog.Posthog("phc_client_key", host="http://127.0.0.1:9")
    wrapped = as_exporter(client)
    assert isinstance(wrapped, PosthogExporter)
    assert isinstance(wrapped.sink, PosthogSink) and wrapped.sink.client is client
    assert as_exporter(client) is wrapped  # one exporter per client, not one per handler

    monkeypatch.setenv("POSTHOG_API_KEY", "phc_from_env")
    from_env = as_exporter(None)
    assert isinstance(from_env, PosthogExporter)
    assert isinstance(from_env.sink, PosthogSink) and from_env.sink.api_key == "phc_from_env"
    assert as_exporter(None) is from_env  # per-call handlers share it: no threads per call
    monkeypatch.setenv("POSTHOG_API_KEY", "phc_other_project")
    other = as_exporter(None)
    assert isinstance(other, PosthogExporter) and other is not from_env
    assert isinstance(other.sink, PosthogSink) and other.sink.api_key == "phc_other_project"
    from_env.shutdown(timeout=0.1)
    other.shutdown(timeout=0.1)
    monkeypatch.setenv("POSTHOG_API_KEY", "phc_from_env")
    renewed = as_exporter(None)
    assert isinstance(renewed, PosthogExporter)
    assert renewed is not from_env and not renewed.is_shut_down  # a shut-down one is replaced
    renewed.shutdown(timeout=0.1)

    class Fake:
        def submit(self, span: Any, size: int | None = None) -> None: ...
        def close_runs(self, spans: Any, reason: str) -> None: ...
        def is_sampled(self, trace_id: str) -> bool:
            return True

        def register_runs(self, table: Any) -> None: ...

    fake = Fake()
    assert as_exporter(fake) is fake and isinstance(fake, Recorder)

    for bad in (42, "phc_a_key_is_not_an_exporter", object()):
        with pytest.raises(TypeError) as info:
            as_exporter(bad)
        assert str(info.value) == (
            "expected a PosthogExporter, a posthog.Posthog client, None (an exporter "
            "configured from POSTHOG_API_KEY) or an object with submit(), close_runs(), "
            f"is_sampled() and register_runs(); got {type(bad).__name__}"
        )


def test_a_magicmock_client_is_a_client_not_a_file_path(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from unittest.mock import MagicMock

    from posthog_callbacks.exporter import as_exporter

    monkeypatch.chdir(tmp_path)
    client = MagicMock()
    for exporter in (PosthogExporter(sink=client), as_exporter(client)):
        assert isinstance(exporter, PosthogExporter)
        with exporter.trace("t", input="q", distinct_id="u1") as trace:
            trace.update(output="a")
        assert exporter.flush()
        exporter.shutdown()
    assert list(tmp_path.iterdir()) == []  # no "<MagicMock ...>" file
    assert client.capture.call_count == 2
    for call in client.capture.call_args_list:
        kwargs = call.kwargs
        assert set(kwargs) == {"distinct_id", "event", "properties", "timestamp", "uuid"}
        assert kwargs["event"] == "$ai_trace" and kwargs["distinct_id"] == "u1"
        props = kwargs["properties"]
        assert props["$ai_span_name"] == "t"
        assert props["$ai_input_state"] == "q" and props["$ai_output_state"] == "a"
    client.shutdown.assert_not_called()  # the caller's client is not ours to close


def test_a_wrapped_clients_privacy_mode_is_ours(monkeypatch: pytest.MonkeyPatch) -> None:
    from unittest.mock import MagicMock

    import posthog

    client = posthog.Posthog("phc_client_key", host="http://127.0.0.1:9", privacy_mode=True)
    assert PosthogExporter(sink=client).privacy_mode is True
    assert PosthogExporter(sink=posthog.Posthog("phc_k", host="http://x")).privacy_mode is False

    private = MagicMock()
    private.privacy_mode = True
    exporter = PosthogExporter(sink=private)
    assert exporter.privacy_mode is True
    with exporter.trace("t", input="secret question", metadata={"k": "v"}) as trace:
        with trace.generation(
            "chat", model="gpt-4o-mini", provider="openai", input=[{"role": "user", "content": "q"}]
        ) as gen:
            gen.update(output=[{"role": "assistant", "content": "secret answer"}])
        trace.update(output="secret answer")
    exporter.flush()
    sent = [c.kwargs for c in private.capture.call_args_list]
    assert [e["event"] for e in sent] == ["$ai_generation", "$ai_trace"]
    blob = json.dumps(sent, default=str)
    assert "secret" not in blob and '"q"' not in blob
    gen_props = sent[0]["properties"]
    assert set(gen_props) == {
        "$ai_framework",
        "$ai_http_status",
        "$ai_is_error",
        "$ai_latency",
        "$ai_lib",
        "$ai_lib_version",
        "$ai_model",
        "$ai_parent_id",
        "$ai_provider",
        "$ai_span_id",
        "$ai_span_name",
        "$ai_trace_id",
        "$ai_usage_missing_reason",
        "$process_person_profile",
    }
    assert (gen_props["$ai_model"], gen_props["$ai_provider"]) == ("gpt-4o-mini", "openai")
    assert "$ai_input_state" not in sent[1]["properties"]
    assert "$ai_output_state" not in sent[1]["properties"]
    # A mock's privacy_mode attribute (another MagicMock) is not taken as True.
    assert PosthogExporter(sink=MagicMock()).privacy_mode is False


# -- batching under a burst: the next batch fills up instead of many small requests --------


class CountingSink(MemorySink):
    """A MemorySink that also records the size of each batch it was handed."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[int] = []

    def send(self, events: Any, deadline: float | None = None) -> None:
        self.batches.append(len(events))
        super().send(events, deadline)


def _wait_for(predicate: Any, timeout: float = 30.0) -> bool:
    """Poll ``predicate`` until true (a wait, not an assertion on how long it took)."""
    import time

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def _lingering(
    monkeypatch: pytest.MonkeyPatch, **options: Any
) -> tuple[PosthogExporter, CountingSink, FinishedSpan]:
    """An exporter (``flush_at=5``) whose worker would wait an hour for a fuller batch (a
    burst that never ends), after its first batch of 5, which goes at once (the traffic
    was quiet before)."""
    from posthog_callbacks import batching

    monkeypatch.setattr(batching, "_LINGER_SECONDS", 3600.0)
    sink = CountingSink()
    exporter = PosthogExporter(sink=sink, flush_at=5, **options)
    done = OpenSpan("t", "s", None, SpanKind.SPAN, "n").finish()
    for _ in range(5):
        exporter.submit(done)
    assert _wait_for(lambda: sink.batches == [5])
    return exporter, sink, done


def test_a_burst_lingers_for_a_fuller_batch_and_flush_or_shutdown_end_the_wait(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    exporter, sink, done = _lingering(monkeypatch)
    for _ in range(40):  # flush_at reached 8 times over: still one batch, waiting
        exporter.submit(done)
    assert not _wait_for(lambda: len(sink.batches) > 1, timeout=0.5)
    assert exporter.flush(timeout=30)  # flush ends the wait: one more batch, all of it
    assert sink.batches == [5, 40]
    for _ in range(7):
        exporter.submit(done)
    exporter.shutdown(timeout=30)  # so does shutdown
    assert sink.batches == [5, 40, 7] and exporter.stats().sent == 52


def test_a_full_batch_does_not_linger(monkeypatch: pytest.MonkeyPatch) -> None:
    exporter, sink, done = _lingering(monkeypatch, max_batch_size=10)
    for _ in range(6):  # wakes the worker, which waits for a fuller batch
        exporter.submit(done)
    assert not _wait_for(lambda: len(sink.batches) > 1, timeout=0.3)
    for _ in range(19):
        exporter.submit(done)
    # two full batches go without waiting any longer; the 5 left over wait for more
    assert _wait_for(lambda: sink.batches[:3] == [5, 10, 10])
    assert not _wait_for(lambda: len(sink.batches) > 3, timeout=0.3)
    assert exporter.flush(timeout=30) and sink.batches == [5, 10, 10, 5]
    exporter.shutdown()


def test_a_short_flush_interval_bounds_the_wait_for_a_fuller_batch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    exporter, sink, done = _lingering(monkeypatch, flush_interval=0.2)
    for _ in range(6):  # not a full batch: waits flush_interval, not the hour
        exporter.submit(done)
    assert _wait_for(lambda: sink.batches == [5, 6], timeout=10)
    exporter.shutdown()
