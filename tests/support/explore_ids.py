"""Ids and paths of the recorded explore fixture (see make_fixture.py)."""

from pathlib import Path

FIXTURE = Path(__file__).parents[1] / "explore" / "fixtures" / "traces.jsonl"
RAG = "00000000-0000-4000-8000-000000000001"
SOLO = "00000000-0000-4000-8000-000000000002"
BROKEN = "00000000-0000-4000-8000-000000000003"
HEADLESS = "00000000-0000-4000-8000-000000000004"
