"""Fixtures for the explore tests: the recorded JSONL file and the Agg backend."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import pytest

from support.explore_ids import FIXTURE

matplotlib.use("Agg")


@pytest.fixture
def fixture_path() -> Path:
    return FIXTURE
