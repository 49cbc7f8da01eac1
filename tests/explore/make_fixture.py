"""Regenerate ``fixtures/traces.jsonl`` (``python tests/explore/make_fixture.py``).

Fixed ids and times, built through the real translation (``events.span_to_event``), so the
fixture holds exactly what a ``JsonlSink`` would have written. Four traces:

* ``rag``: $ai_trace root > retriever span > embedding, generation (cache tokens), parser.
* ``solo``: a lone Anthropic generation that is its own root (span id == trace id).
* ``broken``: a root, a span whose parent never arrived (orphan), a failed tool.
* ``headless``: spans whose ``$ai_trace`` event never arrived (synthetic root).

Plus a ``$ai_feedback`` for ``rag``, an unrelated ``$pageview`` and a line cut short.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from posthog_callbacks.events import EventConfig, feedback_event, span_to_event
from posthog_callbacks.spans import FinishedSpan, SpanKind, Usage

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
RAG = "00000000-0000-4000-8000-000000000001"
SOLO = "00000000-0000-4000-8000-000000000002"
BROKEN = "00000000-0000-4000-8000-000000000003"
HEADLESS = "00000000-0000-4000-8000-000000000004"


def sid(n: int) -> str:
    return f"00000000-0000-4000-9000-{n:012d}"


def spans() -> list[FinishedSpan]:
    common: dict[str, Any] = {
        "framework": "langchain",
        "distinct_id": "user-1",
        "session_id": "sess-1",
    }
    return [
        # rag: children finish first, as a handler would submit them
        FinishedSpan(
            RAG,
            sid(11),
            sid(10),
            SpanKind.EMBEDDING,
            "OpenAIEmbeddings",
            T0 + 0.01,
            T0 + 0.11,
            model="text-embedding-3-small",
            provider="openai",
            input=["what is posthog?"],
            usage=Usage(input_tokens=5),
            **common,
        ),
        FinishedSpan(
            RAG,
            sid(10),
            RAG,
            SpanKind.SPAN,
            "retriever",
            T0 + 0.005,
            T0 + 0.2,
            input="what is posthog?",
            output=[{"page_content": "PostHog is..."}],
            **common,
        ),
        FinishedSpan(
            RAG,
            sid(12),
            RAG,
            SpanKind.GENERATION,
            "ChatOpenAI",
            T0 + 0.21,
            T0 + 1.41,
            model="gpt-4o-mini-2024-07-18",
            provider="openai",
            input=[
                {"role": "system", "content": "Answer from <context>"},
                {"role": "user", "content": "what is posthog?"},
            ],
            output=[{"role": "assistant", "content": "A product <b>analytics</b> platform."}],
            usage=Usage(
                input_tokens=120,
                output_tokens=30,
                total_tokens=150,
                cache_read_tokens=100,
                reasoning_tokens=4,
            ),
            model_parameters={"temperature": 0.0},
            **common,
        ),
        FinishedSpan(
            RAG,
            sid(13),
            RAG,
            SpanKind.SPAN,
            "StrOutputParser",
            T0 + 1.42,
            T0 + 1.43,
            input="A product analytics platform.",
            output="A product analytics platform.",
            **common,
        ),
        FinishedSpan(
            RAG,
            RAG,
            None,
            SpanKind.TRACE,
            "rag-chain",
            T0,
            T0 + 1.5,
            input={"question": "what is posthog?"},
            output="A product analytics platform.",
            **common,
        ),
        # solo: one Anthropic call, its own root
        FinishedSpan(
            SOLO,
            SOLO,
            None,
            SpanKind.GENERATION,
            "ChatAnthropic",
            T0 + 10,
            T0 + 10.8,
            framework="langchain",
            model="claude-3-5-haiku-20241022",
            provider="anthropic",
            input=[{"role": "user", "content": "hi"}],
            output=[{"role": "assistant", "content": "hello"}],
            usage=Usage(
                input_tokens=50, output_tokens=7, cache_read_tokens=20, cache_creation_tokens=10
            ),
            distinct_id="user-2",
        ),
        # broken: one orphan and one failed tool
        FinishedSpan(
            BROKEN,
            sid(31),
            sid(99),
            SpanKind.SPAN,
            "lost-step",
            T0 + 20.1,
            T0 + 20.2,
            framework="llama_index",
            distinct_id="user-1",
        ),
        FinishedSpan(
            BROKEN,
            sid(32),
            BROKEN,
            SpanKind.SPAN,
            "search_tool",
            T0 + 20.3,
            T0 + 20.4,
            framework="llama_index",
            error="TimeoutError: search timed out",
            distinct_id="user-1",
        ),
        FinishedSpan(
            BROKEN,
            BROKEN,
            None,
            SpanKind.TRACE,
            "agent",
            T0 + 20,
            T0 + 21,
            framework="llama_index",
            distinct_id="user-1",
            error="span 'search_tool' failed: TimeoutError: search timed out",
        ),
        # headless: the root never arrived
        FinishedSpan(
            HEADLESS,
            sid(41),
            HEADLESS,
            SpanKind.GENERATION,
            "OpenAI",
            T0 + 30,
            T0 + 30.5,
            framework="llama_index",
            model="gpt-4o",
            provider="openai",
            usage=Usage(input_tokens=11, output_tokens=3),
        ),
        FinishedSpan(
            HEADLESS,
            sid(42),
            sid(41),
            SpanKind.SPAN,
            "after",
            T0 + 30.6,
            T0 + 30.7,
            framework="llama_index",
        ),
    ]


def main() -> None:
    cfg = EventConfig()
    events = [span_to_event(s, cfg) for s in spans()]
    events.append(
        feedback_event(
            RAG,
            text="great answer",
            score=1,
            distinct_id="user-1",
            properties=None,
            cfg=cfg,
            timestamp=T0 + 60,
        )
    )
    events[-1]["uuid"] = "00000000-0000-4000-a000-000000000001"
    events.append(
        {
            "event": "$pageview",
            "distinct_id": "user-1",
            "properties": {},
            "timestamp": "2026-01-01T00:00:00+00:00",
            "uuid": sid(999),
        }
    )
    lines = [json.dumps(e, ensure_ascii=False) for e in events]
    lines.append('{"event": "$ai_span", "properties": {"$ai_tr')  # cut short by a crash
    out = Path(__file__).parent / "fixtures" / "traces.jsonl"
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
