"""explore: nothing printed carries terminal control sequences (names come from users)."""

from __future__ import annotations

import pytest

from posthog_callbacks import explore
from posthog_callbacks.explore.text import clean, one_line
from support.hostile import ESCAPES, FORBIDDEN, HOSTILE, hostile_events


@pytest.mark.parametrize("escape", ESCAPES)
def test_clean_removes_each_sequence_whole(escape: str) -> None:
    out = clean("a" + escape + "b")
    assert not any(c in out for c in FORBIDDEN)
    # parameters of a sequence do not survive as junk ("[2J", "]8;;https://...")
    assert "[2J" not in out and "evil.example" not in out and "pwned" not in out


def test_clean_keeps_ordinary_text() -> None:
    text = "héllo → wörld 你好 🙂\ttab\nline"
    assert clean(text) == text
    assert clean(HOSTILE) == "nameclicktxt.exeend"
    assert one_line("a\n\n  b\x1b[31m c", 4) == "a b…"


def test_text_and_rich_renderings_are_clean() -> None:
    from rich.console import Console

    (trace,) = explore.load_traces(hostile_events())
    text = str(trace)
    assert "nameclicktxt.exeend  [trace]" in text
    assert "ERROR: Boom" in text
    console = Console(width=300, record=True, color_system=None)
    console.print(trace)
    rich_text = console.export_text()
    for rendered in (
        text,
        rich_text,
        trace._repr_html_(),
        explore.TraceList([trace])._repr_html_(),
    ):
        assert not [c for c in FORBIDDEN if c in rendered]
    assert "chattxt.exe" in rich_text and "gpt-4o-mini (openai)" in rich_text


def test_summaries_and_sessions_are_clean() -> None:
    from posthog_callbacks.explore.render import summary_line

    traces = explore.load_traces(hostile_events())
    for rendered in (
        summary_line(traces[0], 12),
        str(explore.sessions(traces)),
        str(explore.users(traces)),
        explore.sessions(traces)._repr_html_(),
    ):
        assert not [c for c in FORBIDDEN if c in rendered]
