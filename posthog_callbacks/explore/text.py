"""Text safe to print: no terminal control sequences, one line, bounded length.

Span names, models, user ids, errors and inputs come from the traced program and its users;
printed raw they could clear the screen, retitle the terminal, plant OSC-8 links or hide
text (``ESC [ 2 J``, ``ESC ] 8 ;; url BEL``, C1 controls such as ``0x9b``, bidi overrides).
Every text and rich rendering and every line the CLI prints goes through :func:`clean`.
"""

from __future__ import annotations

import logging
import re

__all__ = ["clean", "one_line"]

log = logging.getLogger(__name__)

# Whole escape sequences first, so their parameters do not survive as visible junk:
# CSI (ESC [ or 0x9b) params+intermediates+final; OSC/DCS/SOS/PM/APC strings (ESC ] P X ^ _
# or their C1 forms) up to BEL or ST (ESC \ or 0x9c) or the end; any other two-byte ESC x.
_SEQUENCES = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]?"
    r"|(?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f])[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"
    r"|\x1b[ -/]*[0-~]?"
)
# What is left: C0 and C1 controls, DEL, bidi embeddings/overrides/isolates, line and
# paragraph separators. Tabs and newlines are whitespace; the caller decides about them.
_CONTROLS = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]"
)


def clean(text: str) -> str:
    """``text`` without terminal escape sequences or control characters (tab/newline kept)."""
    if text.isprintable():
        return text
    return _CONTROLS.sub("", _SEQUENCES.sub("", text))


def one_line(text: str, limit: int | None = None) -> str:
    """:func:`clean` text with whitespace runs collapsed, cut to ``limit`` characters."""
    text = " ".join(clean(text).split())
    if limit is not None and len(text) > limit:
        return text[: limit - 1] + "…"
    return text
