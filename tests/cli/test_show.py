"""posthog-callbacks show: filters, summary, JSON, trace references, and every failure as
one line with a non-zero exit (never a traceback). In-process unless the real entry point
matters (broken pipe, logging)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from posthog_callbacks import explore
from support.cli_run import invoke, run
from support.explore_ids import BROKEN, FIXTURE, HEADLESS, RAG, SOLO
from support.hostile import FORBIDDEN, hostile_events


def show(*args: str) -> subprocess.CompletedProcess[str]:
    return invoke("show", str(FIXTURE), "--plain", *args)


def summary_ids(proc: subprocess.CompletedProcess[str]) -> list[str]:
    assert proc.returncode == 0, proc.stderr
    return [line.split()[0] for line in proc.stdout.splitlines()[:-1]]


def failed(proc: subprocess.CompletedProcess[str], code: int, message: str) -> None:
    """One line on stderr, the given exit code, nothing on stdout, no traceback."""
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    assert proc.stderr.count("\n") == 1 and message in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ((), [RAG, SOLO, BROKEN, HEADLESS]),
        (("--errors",), [BROKEN]),
        (("--user", "user-1"), [RAG, BROKEN]),
        (("--session", "sess-1"), [RAG]),
        (("--model", "claude"), [SOLO]),
        (("--model", "GPT-4o"), [RAG, HEADLESS]),
        (("--grep", "timed out"), [BROKEN]),
        (("--grep", "what is posthog"), [RAG]),
        (("--min-latency", "0.9"), [RAG, BROKEN]),
        (("--user", "user-1", "--errors"), [BROKEN]),
        (("--sort", "latency"), [RAG, BROKEN, SOLO, HEADLESS]),
        (("--sort", "cost"), [HEADLESS, SOLO, RAG, BROKEN]),
        (("--sort", "tokens", "--limit", "2"), [RAG, SOLO]),
    ],
)
def test_summary_with_filters(args: tuple[str, ...], expected: list[str]) -> None:
    assert summary_ids(show("--summary", *args)) == expected


def test_summary_lines() -> None:
    proc = show("--summary")
    lines = proc.stdout.splitlines()
    # the fixture's ids differ only in their last character: shown whole
    assert lines[0].split() == [
        RAG,
        "2026-01-01",
        "00:00:00",
        "1.50s",
        "125→30",
        "tok",
        "~$0.0000286",
        "rag-chain",
        "user",
        "user-1",
    ]
    assert "2 err  agent  user user-1" in lines[2]
    assert lines[-1] == f"4 trace(s) in {FIXTURE} · 2 error(s) · ~$0.000142 (estimated)"
    filtered = show("--summary", "--errors")
    assert filtered.stdout.splitlines()[-1] == f"1 of 4 trace(s) in {FIXTURE} · 2 error(s)"


def test_tree_output_with_a_filter_and_cost() -> None:
    proc = show("--model", "claude")
    assert proc.returncode == 0
    assert proc.stdout.splitlines()[:3] == [
        f"trace {SOLO} · user user-2",
        "1 span · 20 in / 7 out tokens · 20 cache read · 10 cache write · 800ms · "
        "~$0.0000556 (estimated) · models: claude-3-5-haiku-20241022",
        "ChatAnthropic  [generation]  claude-3-5-haiku-20241022 (anthropic)  20→7 tok "
        "(cache read 20, cache write 10)  800ms  ~$0.0000556",
    ]


def test_json_parses_back_to_the_traces() -> None:
    proc = show("--json", "--user", "user-1")
    assert proc.returncode == 0
    document: dict[str, Any] = json.loads(proc.stdout)
    assert (document["traces_in_file"], document["traces_matched"]) == (4, 2)
    rag, broken = document["traces"]
    expected = explore.load_traces(FIXTURE).get(RAG)
    assert rag == json.loads(json.dumps(expected.to_dict()))
    assert rag["trace_id"] == RAG and rag["start"] == "2026-01-01T00:00:00Z"
    assert rag["totals"]["input_tokens"] == 125 and rag["totals"]["cost_estimated"] is True
    assert rag["totals"]["cost_usd"] == pytest.approx(expected.totals.cost_usd)
    gen = next(s for s in rag["spans"] if s["kind"] == "generation")
    assert (gen["model"], gen["provider"], gen["input_tokens"], gen["latency_ms"]) == (
        "gpt-4o-mini-2024-07-18",
        "openai",
        120,
        1200.0,
    )
    assert gen["input"][1] == {"role": "user", "content": "what is posthog?"}
    assert [s["name"] for s in broken["spans"] if s["is_error"]] == ["agent", "search_tool"]
    assert [s["name"] for s in broken["spans"] if s["orphan"]] == ["lost-step"]
    nothing = show("--json", "--user", "nobody")
    assert nothing.returncode == 1 and json.loads(nothing.stdout)["traces"] == []


def test_trace_by_prefix_or_name(tmp_path: Path) -> None:
    path = tmp_path / "two.jsonl"
    path.write_text(
        "".join(
            json.dumps({"event": "$ai_trace", "properties": {"$ai_trace_id": tid}}) + "\n"
            for tid in ("abc123-one", "abd456-two")
        )
    )
    by_prefix = invoke("show", str(path), "--plain", "--trace", "abd")
    assert by_prefix.returncode == 0 and by_prefix.stdout.startswith("trace abd456-two\n")
    assert "abc123" not in by_prefix.stdout
    ambiguous = invoke("show", str(path), "--plain", "--trace", "ab")
    assert ambiguous.returncode == 1 and "2 traces match 'ab'" in ambiguous.stderr
    by_full_id = show("--trace", SOLO)
    assert by_full_id.returncode == 0 and "ChatAnthropic" in by_full_id.stdout
    by_name = show("--trace", "agent", "--summary")
    assert summary_ids(by_name) == [BROKEN]


def test_ambiguous_trace_lists_the_candidates() -> None:
    proc = show("--trace", "00000000")
    assert proc.returncode == 1 and proc.stdout == "" and "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert lines[0] == "posthog-callbacks show: 4 traces match '00000000'; give more of the id:"
    assert [line.split()[0] for line in lines[1:]] == [RAG, SOLO, BROKEN, HEADLESS]


def test_nothing_matches() -> None:
    failed(show("--user", "nobody"), 1, f"no trace in {FIXTURE} matches the filters")
    failed(show("--trace", "ffff"), 1, "no trace id, id prefix or name matches 'ffff'")
    failed(show("--limit", "0"), 2, "--limit must be at least 1")


def test_missing_file_directory_and_empty_file(tmp_path: Path) -> None:
    failed(invoke("show", str(tmp_path / "nope.jsonl")), 2, "no such file: ")
    failed(invoke("show", str(tmp_path)), 2, f"{tmp_path} is a directory, not a JSONL file")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    failed(invoke("show", str(empty)), 1, f"no $ai_* traces in {empty}")


def test_binary_and_non_utf8_files(tmp_path: Path) -> None:
    binary = tmp_path / "image.jsonl"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    failed(invoke("show", str(binary)), 2, "is a binary file, not JSONL text")
    late_nul = tmp_path / "late.jsonl"
    late_nul.write_bytes(b"{}\n" * 5000 + b"\x00\n")
    failed(invoke("show", str(late_nul)), 2, "is a binary file (NUL byte on line 5001)")
    latin = tmp_path / "latin1.jsonl"
    latin.write_bytes('{"event": "caf\xe9"}\n'.encode("latin-1"))
    failed(invoke("show", str(latin)), 2, "is not UTF-8 text (line 1, byte 0xe9)")
    executable = Path(sys.executable).resolve()
    failed(invoke("show", str(executable)), 2, "expected a JSONL file written by JsonlSink")


def test_unreadable_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    locked = tmp_path / "locked.jsonl"
    locked.write_text("{}\n")
    real_open = Path.open

    def deny(self: Path, *args: Any, **kwargs: Any) -> Any:
        if self == locked:
            raise PermissionError(13, "Permission denied", str(self))
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", deny)  # chmod cannot stop root, who runs CI here
    failed(invoke("show", str(locked)), 2, f"cannot read {locked}: permission denied")


def test_demo_out_must_be_a_writable_file(tmp_path: Path) -> None:
    failed(
        invoke("demo", "--out", str(tmp_path), "--plain"),
        2,
        f"posthog-callbacks demo: --out {tmp_path} is a directory; give a file path",
    )
    a_file = tmp_path / "file.txt"
    a_file.write_text("")
    failed(
        invoke("demo", "--out", str(a_file / "traces.jsonl"), "--plain"),
        2,
        f"cannot write --out {a_file / 'traces.jsonl'}: ",
    )
    failed(
        invoke("demo", "--out", "/proc/version", "--plain"),
        2,
        "cannot write --out /proc/version: ",
    )


def test_real_entry_point_failures_have_no_traceback(tmp_path: Path) -> None:
    proc = run("show", str(tmp_path))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr == f"posthog-callbacks show: {tmp_path} is a directory, not a JSONL file\n"
    usage = run("show", str(FIXTURE), "--limit", "many")
    assert usage.returncode == 2 and "Traceback" not in usage.stderr
    assert "invalid int value: 'many'" in usage.stderr


def test_broken_pipe_is_quiet(tmp_path: Path) -> None:
    big = tmp_path / "big.jsonl"
    events = [
        {
            "event": "$ai_trace",
            "distinct_id": "u",
            "timestamp": 1_767_225_600 + i,
            "properties": {"$ai_trace_id": f"trace-{i:05d}", "$ai_span_name": "x" * 100},
        }
        for i in range(3000)
    ]
    big.write_text("".join(json.dumps(e) + "\n" for e in events))
    proc = subprocess.Popen(
        [sys.executable, "-m", "posthog_callbacks.cli", "show", str(big), "--plain"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.readline()  # like `| head -1`
    proc.stdout.close()
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141
    assert first.startswith(b"trace trace-00000")
    assert stderr == ""


def test_hostile_names_never_reach_the_terminal(tmp_path: Path) -> None:
    path = tmp_path / "hostile.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in hostile_events()))
    outputs = [
        invoke("show", str(path), "--plain"),
        invoke("show", str(path)),
        invoke("show", str(path), "--summary"),
        invoke("show", str(path), "--json"),
        invoke("show", str(path), "--trace", "nomatch\x1b[2J"),
        invoke("show", str(tmp_path / "evil\x1b]0;title\x07.jsonl")),
    ]
    for proc in outputs:
        leaked = [c for c in FORBIDDEN if c in proc.stdout + proc.stderr]
        assert not leaked, (proc.args, leaked)
    plain, _, summary, as_json, no_match, bad_file = outputs
    assert "nameclicktxt.exeend  [trace]" in plain.stdout
    assert "ERROR: Boom" in plain.stdout and "user user · session sessclick" in plain.stdout
    assert "nameclicktxt.exeend" in summary.stdout
    # JSON keeps the data, escaped: it parses back to the original strings
    assert (
        json.loads(as_json.stdout)["traces"][0]["name"]
        == hostile_events()[0]["properties"]["$ai_span_name"]
    )
    assert "matches 'nomatch'" in no_match.stderr
    assert "evil.jsonl" in bad_file.stderr
