"""explore: TraceList.filter / sort_by, sessions() and users() over the recorded fixture."""

from __future__ import annotations

from pathlib import Path

import pytest

from posthog_callbacks import explore
from support.explore_ids import BROKEN, HEADLESS, RAG, SOLO


@pytest.fixture
def traces(fixture_path: Path) -> explore.TraceList:
    return explore.load_traces(fixture_path)


def ids(traces: explore.TraceList) -> list[str]:
    return [t.trace_id for t in traces]


def test_filter_errors(traces: explore.TraceList) -> None:
    assert ids(traces.filter(errors=True)) == [BROKEN]
    assert ids(traces.filter(errors=False)) == [RAG, SOLO, HEADLESS]


def test_filter_user_and_session(traces: explore.TraceList) -> None:
    assert ids(traces.filter(user="user-1")) == [RAG, BROKEN]
    assert ids(traces.filter(user="user-2")) == [SOLO]
    assert ids(traces.filter(session="sess-1")) == [RAG]
    assert ids(traces.filter(user="user-1", session="sess-1")) == [RAG]
    assert ids(traces.filter(user="nobody")) == []


def test_filter_model_is_a_case_insensitive_part(traces: explore.TraceList) -> None:
    assert ids(traces.filter(model="GPT-4O")) == [RAG, HEADLESS]
    assert ids(traces.filter(model="gpt-4o-mini")) == [RAG]
    assert ids(traces.filter(model="claude")) == [SOLO]
    assert ids(traces.filter(model="text-embedding")) == [RAG]


def test_filter_text_searches_names_inputs_outputs_and_errors(
    traces: explore.TraceList,
) -> None:
    assert ids(traces.filter(text="StrOutputParser")) == [RAG]  # a span name
    assert ids(traces.filter(text="WHAT IS POSTHOG")) == [RAG]  # an input
    assert ids(traces.filter(text="<b>analytics</b>")) == [RAG]  # an output
    assert ids(traces.filter(text="timed out")) == [BROKEN]  # an error
    assert ids(traces.filter(text="no such words")) == []


def test_filter_min_latency_and_where(traces: explore.TraceList) -> None:
    assert ids(traces.filter(min_latency=1.0)) == [RAG, BROKEN]
    assert ids(traces.filter(min_latency=0.75)) == [RAG, SOLO, BROKEN]
    assert ids(traces.filter(where=lambda t: t.totals.generations == 1)) == [
        RAG,
        SOLO,
        HEADLESS,
    ]


def test_filters_return_trace_lists_that_chain(traces: explore.TraceList) -> None:
    result = traces.filter(user="user-1").filter(errors=False)
    assert isinstance(result, explore.TraceList) and ids(result) == [RAG]
    assert ids(traces) == [RAG, SOLO, BROKEN, HEADLESS]  # the original is untouched


def test_sort_by(traces: explore.TraceList) -> None:
    assert ids(traces.sort_by("latency")) == [RAG, BROKEN, SOLO, HEADLESS]
    assert ids(traces.sort_by("latency", descending=False)) == [HEADLESS, SOLO, BROKEN, RAG]
    # BROKEN has no tokens and no cost: last either way
    assert ids(traces.sort_by("tokens")) == [RAG, SOLO, HEADLESS, BROKEN]
    assert ids(traces.sort_by("tokens", descending=False)) == [HEADLESS, SOLO, RAG, BROKEN]
    assert ids(traces.sort_by("cost")) == [HEADLESS, SOLO, RAG, BROKEN]
    assert ids(traces.sort_by("time")) == [RAG, SOLO, BROKEN, HEADLESS]
    assert ids(traces.sort_by("time", descending=True)) == [HEADLESS, BROKEN, SOLO, RAG]
    with pytest.raises(ValueError, match="latency, cost, tokens, time"):
        traces.sort_by("name")


def test_trace_by_name_or_unique_prefix(traces: explore.TraceList) -> None:
    assert traces.get("rag-chain").trace_id == RAG
    assert traces.get(SOLO[:-1] + "2").trace_id == SOLO
    assert len(traces.matching("00000000-0000")) == 4
    with pytest.raises(KeyError, match="0 traces match 'nope'"):
        traces.get("nope")


def test_sessions_and_users_have_totals(traces: explore.TraceList) -> None:
    by_session = explore.sessions(traces)
    assert [(g.key, len(g.traces)) for g in by_session] == [("sess-1", 1), (None, 3)]
    rag = by_session[0]
    assert rag.users == ("user-1",) and rag.totals.input_tokens == 125
    assert rag.totals.cost_usd == pytest.approx(traces.get(RAG).totals.cost_usd)
    by_user = explore.users(traces)
    # the headless trace is personless (its distinct id is the trace id): no user
    assert [(g.key, ids(g.traces)) for g in by_user] == [
        ("user-1", [RAG, BROKEN]),
        ("user-2", [SOLO]),
        (None, [HEADLESS]),
    ]
    user_1 = by_user[0].totals
    assert (user_1.traces, user_1.errors, user_1.input_tokens, user_1.output_tokens) == (
        2,
        2,
        125,
        30,
    )
    assert user_1.latency == pytest.approx(2.5)  # summed over the user's traces
    assert user_1.cost_usd == pytest.approx(traces.get(RAG).totals.cost_usd)
    assert str(by_user).splitlines()[0].startswith("user user-1 · 2 traces · 125→30 tok · ~$")
    page = by_user._repr_html_()
    assert page.count("<tr>") == 4 and "<th>user</th>" in page
