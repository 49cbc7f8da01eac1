"""Privacy mode through the LangChain door, checked on the wire (issue 10 item 16).

ChatOpenAI with a bound tool replays a cassette; the prompt, the tool's description and
schema, the model's free-text parameters, run metadata, the model's answer (tool arguments)
and a chain's error message must not reach the capture server.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import vcr
from langchain_core.runnables import RunnableLambda
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI

from posthog_callbacks.langchain import CallbackHandler
from support.capture_server import CaptureServer, ExporterFactory, all_bytes

CASSETTES = Path(__file__).resolve().parent.parent / "cassettes" / "langchain"
VCR = vcr.VCR(
    cassette_library_dir=str(CASSETTES),
    record_mode="none",
    match_on=["method", "scheme", "host", "port", "path"],
)


@tool
def get_weather(city: str) -> str:
    """Weather for a city. MARK-TOOLDESC"""
    return "sunny"


@pytest.fixture(autouse=True)
def _no_provider_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("OPENAI_BASE_URL", "OPENAI_API_BASE"):
        monkeypatch.delenv(var, raising=False)


def _fail(_: object) -> None:
    raise ValueError("could not parse MARK-ERROR")


MARKERS = (
    "MARK-PROMPT",
    "MARK-TOOLDESC",
    "MARK-STOP",
    "MARK-META",
    "MARK-INPUT",
    "MARK-ERROR",
    "Paris",  # the city in the model's tool call (the cassette's answer)
)


@pytest.mark.parametrize("where", ["exporter", "handler", "off"])
def test_langchain_privacy_mode_on_the_wire(
    where: str, make_exporter: ExporterFactory, capture_server: CaptureServer
) -> None:
    exporter = make_exporter(privacy_mode=where == "exporter")
    handler = CallbackHandler(exporter, privacy_mode=where == "handler")
    config = {
        "callbacks": [handler],
        "metadata": {"user_id": "u1", "ticket": "MARK-META", "attempt": 2},
    }
    model = ChatOpenAI(
        model="gpt-4o-mini",
        api_key="sk-test",  # type: ignore[arg-type]
        max_retries=0,
        stop=["MARK-STOP"],
        model_kwargs={"user": "MARK-USER"},
    ).bind_tools([get_weather])
    with VCR.use_cassette("openai_tool_call.yaml"):
        model.invoke("Weather in MARK-PROMPT?", config=config)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        RunnableLambda(_fail).invoke("MARK-INPUT", config=config)  # type: ignore[arg-type]
    assert exporter.flush(timeout=10)

    wire = all_bytes(capture_server)
    if where == "off":  # the control: each marker is really placed where a leak would show
        assert [m for m in MARKERS if m.encode() not in wire] == []
        return
    assert [m for m in MARKERS if m.encode() in wire] == []
    events = [e for r in capture_server.accepted for e in r.events]
    gen = next(e["properties"] for e in events if e["event"] == "$ai_generation")
    assert gen["$ai_input_tokens"] == 60 and gen["$ai_output_tokens"] == 16
    assert gen["$ai_tools"] == [{"type": "function", "function": {"name": "get_weather"}}]
    assert gen["attempt"] == 2
    assert {e["distinct_id"] for e in events} == {"u1"}
    error = next(e["properties"] for e in events if e["properties"].get("$ai_is_error"))
    assert error["$ai_error"] == "ValueError"
