"""Reading events: JSONL files, ``MemorySink`` objects, event dicts."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from .model import normalize_event
from .trace import Trace

__all__ = ["NotJsonlError", "Source", "load_events", "read_jsonl"]

log = logging.getLogger(__name__)

Source = Any  # str | os.PathLike | MemorySink | Iterable[Mapping[str, Any]]


class NotJsonlError(ValueError):
    """The file is not a UTF-8 text file (binary data, or another encoding)."""


def load_events(source: Source) -> list[dict[str, Any]]:
    """Event dicts from a JSONL path, a ``MemorySink`` (anything with ``.events``) or an
    iterable of dicts.

    Lines of a JSONL file that are not JSON objects (e.g. a line cut short by a crash) are
    skipped with a warning on the ``posthog_callbacks`` logger.

    Raises:
        FileNotFoundError: The path does not exist.
        IsADirectoryError: The path is a directory.
        NotJsonlError: The file is binary or not UTF-8 (a ``ValueError``).
        TypeError: ``source`` is none of the above.
    """
    if isinstance(source, (str, os.PathLike)):
        return read_jsonl(Path(source))
    events = getattr(source, "events", None)
    if isinstance(events, list):
        return [normalize_event(e) for e in list(events)]
    if isinstance(source, Mapping):
        return [normalize_event(source)]
    if isinstance(source, Iterable):
        out = []
        for item in source:
            if isinstance(item, Trace):
                raise TypeError("load_events takes events; pass traces to to_dataframe")
            if not isinstance(item, Mapping):
                raise TypeError(f"expected event dicts, got {type(item).__name__}")
            out.append(normalize_event(item))
        return out
    raise TypeError(
        "source must be a JSONL path, a MemorySink or a list of event dicts, "
        f"not {type(source).__name__}"
    )


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The JSON-object lines of ``path``; other lines are skipped with one warning.

    Raises:
        NotJsonlError: The file holds NUL bytes or is not valid UTF-8.
        OSError: It cannot be opened or read (missing, a directory, no permission).
    """
    events: list[dict[str, Any]] = []
    bad: list[int] = []
    with path.open("rb") as fh:
        if b"\x00" in fh.read(8192):  # text never holds NUL bytes; images, archives do
            raise NotJsonlError(f"{path} is a binary file, not JSONL text")
        fh.seek(0)
        for lineno, raw in enumerate(fh, 1):
            if b"\x00" in raw:
                raise NotJsonlError(f"{path} is a binary file (NUL byte on line {lineno})")
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise NotJsonlError(
                    f"{path} is not UTF-8 text (line {lineno}, byte 0x{raw[exc.start]:02x})"
                ) from None
            if lineno == 1:
                line = line.removeprefix("\ufeff")
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except ValueError:
                bad.append(lineno)
                continue
            if isinstance(value, dict):
                events.append(normalize_event(value))
            else:
                bad.append(lineno)
    if bad:
        log.warning(
            "posthog_callbacks: skipped %d unreadable line(s) in %s (first: line %d)",
            len(bad),
            path,
            bad[0],
        )
    return events
