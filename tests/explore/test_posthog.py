"""explore.load_traces_from_posthog against a hand-written cassette of the query API."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import requests
import vcr

from posthog_callbacks import explore
from posthog_callbacks.explore.posthog import app_host, build_query
from support.explore_ids import RAG

CASSETTES = Path(__file__).parents[1] / "cassettes" / "explore"


def json_body(r1: Any, r2: Any) -> None:
    assert json.loads(r1.body) == json.loads(r2.body)


recorder = vcr.VCR(
    cassette_library_dir=str(CASSETTES),
    record_mode="none",
    match_on=["method", "uri", "json_body"],
    filter_headers=["authorization"],
)
recorder.register_matcher("json_body", json_body)


class SpySession(requests.Session):
    def __init__(self) -> None:
        super().__init__()
        self.headers_sent: list[dict[str, str]] = []

    def post(self, url: Any, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        self.headers_sent.append(dict(kwargs.get("headers") or {}))
        return super().post(url, *args, **kwargs)


def test_pages_through_the_query_api_and_builds_traces() -> None:
    spy = SpySession()
    with recorder.use_cassette("posthog_query.yaml") as cassette:
        traces = explore.load_traces_from_posthog(
            12345,
            personal_api_key="phx_test",
            host="https://eu.i.posthog.com",
            since="2026-01-01 00:00:00",
            session_id="sess-1",
            page_size=4,
            max_events=50,
            session=spy,
        )
        assert cassette.play_count == 2
    assert [h["Authorization"] for h in spy.headers_sent] == ["Bearer phx_test"] * 2
    (trace,) = traces
    assert trace.trace_id == RAG and trace.name == "rag-chain"
    assert [(d, n.name) for d, n in trace.walk()] == [
        (0, "rag-chain"),
        (1, "retriever"),
        (2, "OpenAIEmbeddings"),
        (1, "ChatOpenAI"),
        (1, "StrOutputParser"),
    ]
    t = trace.totals
    # PostHog's cost for the generation; the embedding carries none, so it is estimated
    # (5 tokens of text-embedding-3-small at $0.02 per million) and the total says so.
    gen, embed = trace.find("ChatOpenAI")[0], trace.find("OpenAIEmbeddings")[0]
    assert (gen.cost, gen.cost_estimated) == (0.000036, False)
    assert embed.cost == pytest.approx(5 * 0.02 / 1e6) and embed.cost_estimated
    assert (t.input_tokens, t.output_tokens) == (125, 30)
    assert t.cost_usd == pytest.approx(0.000036 + 1e-7) and t.cost_estimated
    assert [s["event"] for s in trace.scores] == ["$ai_feedback"]
    assert trace.find("ChatOpenAI")[0].start == pytest.approx(1_767_225_600.21)


def test_error_answer_is_reported() -> None:
    with (
        recorder.use_cassette("posthog_query.yaml"),
        pytest.raises(
            RuntimeError,
            match="HTTP 401: Personal API key found in request Authorization header is invalid",
        ),
    ):
        explore.load_traces_from_posthog(
            12345,
            personal_api_key="phx_bad",
            host="https://eu.posthog.com",
            since="2026-01-01 00:00:00",
            trace_id="nope",
        )


def test_filters_are_placeholders_not_sql() -> None:
    body = build_query(
        since=None, trace_id="x' OR 1=1 --", session_id=None, distinct_id="u1", limit=10, offset=20
    )
    query = body["query"]
    assert query["kind"] == "HogQLQuery"
    assert "OR 1=1" not in query["query"]
    assert "properties.$ai_trace_id = {trace_id}" in query["query"]
    assert "distinct_id = {distinct_id}" in query["query"]
    assert query["query"].endswith("LIMIT 10 OFFSET 20")
    assert query["values"] == {"trace_id": "x' OR 1=1 --", "distinct_id": "u1"}


def test_configuration_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("POSTHOG_PERSONAL_API_KEY", raising=False)
    monkeypatch.delenv("POSTHOG_PROJECT_ID", raising=False)
    with pytest.raises(ValueError, match="personal API key"):
        explore.load_traces_from_posthog(1)
    with pytest.raises(ValueError, match="project id"):
        explore.load_traces_from_posthog(personal_api_key="phx_x")


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("https://us.i.posthog.com", "https://us.posthog.com"),
        ("https://eu.i.posthog.com/", "https://eu.posthog.com"),
        ("https://posthog.example.com", "https://posthog.example.com"),
    ],
)
def test_ingestion_hosts_map_to_app_hosts(host: str, expected: str) -> None:
    assert app_host(host) == expected


def test_since_accepts_datetimes_timedeltas_and_strings() -> None:
    from datetime import datetime, timedelta, timezone

    def since(value: Any) -> object:
        body = build_query(
            since=value, trace_id=None, session_id=None, distinct_id=None, limit=1, offset=0
        )
        return body["query"]["values"].get("since")

    assert since(datetime(2026, 1, 2, 3, 4, 5)) == "2026-01-02 03:04:05"  # naive = UTC
    eastern = timezone(timedelta(hours=-5))
    assert since(datetime(2026, 1, 2, 3, 4, 5, tzinfo=eastern)) == "2026-01-02 08:04:05"
    assert since("2026-01-01 00:00:00") == "2026-01-01 00:00:00"
    assert since(None) is None
    recent = datetime.strptime(str(since(timedelta(hours=1))), "%Y-%m-%d %H:%M:%S")
    expected = datetime.now(timezone.utc).replace(tzinfo=None) - timedelta(hours=1)
    assert abs((recent - expected).total_seconds()) < 120
