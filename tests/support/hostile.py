"""Events whose names, ids, models, errors and content carry terminal control sequences."""

from __future__ import annotations

from typing import Any

# clear screen, an OSC-8 hyperlink, a window title, a C1 CSI (0x9b) colour, BEL, a bidi
# override, a DCS string, a backspace and a NUL
ESCAPES = (
    "\x1b[2J\x1b[H",
    "\x1b]8;;https://evil.example/\x07click\x1b]8;;\x07",
    "\x1b]0;pwned\x1b\\",
    "\x9b31m",
    "\x07",
    "\u202etxt.exe",
    "\x1bP1$r0m\x1b\\",
    "\x08\x00",
)
HOSTILE = "name" + "".join(ESCAPES) + "end"
FORBIDDEN = ("\x1b", "\x07", "\x9b", "\x9c", "\x9d", "\u202e", "\x08", "\x00")


def hostile_events() -> list[dict[str, Any]]:
    """One trace: root, a failed tool and a priced generation, all with hostile text."""
    base = {"$ai_trace_id": "hostile-trace", "$ai_session_id": "sess" + ESCAPES[1]}
    return [
        {
            "event": "$ai_trace",
            "distinct_id": "user" + ESCAPES[0],
            "timestamp": "2026-01-01T00:00:00Z",
            "properties": {**base, "$ai_span_name": HOSTILE, "$ai_latency": 1.0},
        },
        {
            "event": "$ai_span",
            "distinct_id": "user" + ESCAPES[0],
            "timestamp": "2026-01-01T00:00:00.1Z",
            "properties": {
                **base,
                "$ai_span_id": "s1",
                "$ai_parent_id": "hostile-trace",
                "$ai_span_name": "tool" + ESCAPES[3],
                "$ai_is_error": True,
                "$ai_error": "Boom" + ESCAPES[2] + ESCAPES[4],
                "$ai_input_state": "in" + ESCAPES[6],
                "$ai_span_status": "st" + ESCAPES[7],
            },
        },
        {
            "event": "$ai_generation",
            "distinct_id": "user" + ESCAPES[0],
            "timestamp": "2026-01-01T00:00:00.2Z",
            "properties": {
                **base,
                "$ai_span_id": "g1",
                "$ai_parent_id": "hostile-trace",
                "$ai_span_name": "chat" + ESCAPES[5],
                "$ai_model": "gpt-4o-mini" + ESCAPES[3],
                "$ai_provider": "openai" + ESCAPES[4],
                "$ai_input_tokens": 10,
                "$ai_output_tokens": 2,
                "$ai_output_choices": [{"role": "assistant", "content": "x" + ESCAPES[0]}],
                "$ai_latency": 0.5,
            },
        },
    ]
