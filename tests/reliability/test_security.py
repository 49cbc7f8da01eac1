"""Security and privacy audit at the byte level.

Every byte the capture server receives (headers, raw gzip bodies and decoded bodies) and
every byte of a JSONL file is searched for content that privacy mode or a mask must keep
out, and for credentials placed wherever a user might put them: a model's API key, its
default headers, its base URL, invocation parameters, tool inputs and run metadata. Logs
at INFO and above must not carry payload text or keys either.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import vcr
from langchain_core.runnables import RunnableConfig, RunnableLambda
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from llama_index.core import Document, Settings, VectorStoreIndex
from llama_index.core.callbacks import CallbackManager
from llama_index.core.embeddings import MockEmbedding

from posthog_callbacks import FinishedSpan, JsonlSink, MemorySink, PosthogExporter, SpanKind
from posthog_callbacks.events import PRIVATE_ERROR, EventConfig, span_to_event
from posthog_callbacks.langchain import CallbackHandler
from posthog_callbacks.llama_index import instrument
from support.capture_server import (
    TEST_API_KEY,
    CaptureServer,
    ExporterFactory,
    all_bytes,
    decoded_bodies,
)
from support.reliability_fakes import EchoChat, MockLLM
from support.secret_samples import PROSE, SECRET_TEXTS

CASSETTES = Path(__file__).resolve().parents[1] / "cassettes" / "langchain"
VCR = vcr.VCR(
    cassette_library_dir=str(CASSETTES),
    record_mode="none",
    match_on=["method", "scheme", "host", "port", "path"],
    filter_headers=["authorization", "x-api-key", "api-key"],
)

# Content markers: privacy mode and the mask must keep every one of them off the wire.
Q = "PRIVATE-QUESTION-q7Zx"
TOOL_IN = "PRIVATE-TOOL-ARG-t3Kp"
TOOL_OUT = "PRIVATE-TOOL-RESULT-r8Wm"
DOC = "PRIVATE-DOCUMENT-d5Vn"
LLAMA_Q = "PRIVATE-LLAMA-QUESTION-l2Hs"
ERR = "PRIVATE-ERROR-DETAIL-e4Jc"
CONTENT = (Q, TOOL_IN, TOOL_OUT, DOC, LLAMA_Q, ERR, "echo:", "forty two", "Paris.")

# Credentials, each where a user might put one.
OPENAI_KEY = "sk-proj-Q1w2E3r4T5y6U7i8O9p0AsDfGhJkL"
BEARER_TOKEN = "eyJhbGciOiJIUzI1NiJ9.cGF5bG9hZC1zZWNyZXQ.c2lnbmF0dXJl"
HEADER_KEY = "xk-live-7c1e9a0b3d5f2468ace0"
URL_PASSWORD = "url-pass-5Tg7Yh9Uj"
BODY_PASSWORD = "hunter2-correct-horse-battery"
TOOL_KEY = "sk-ant-api03-ToolArgumentKey1234567890"
META_TOKEN = "ghp_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789"
AWS_KEY = "AKIAIOSFODNN7EXAMPLE"
SECRETS = (
    OPENAI_KEY,
    BEARER_TOKEN,
    HEADER_KEY,
    URL_PASSWORD,
    BODY_PASSWORD,
    TOOL_KEY,
    META_TOKEN,
    AWS_KEY,
)


@tool
def lookup(query: str, api_key: str) -> str:
    """Look something up with a key."""
    return f"{TOOL_OUT} for {query}"


@tool
def explode(query: str) -> str:
    """A tool whose error message echoes its input, as real ones do."""
    raise ValueError(f"cannot parse {query!r}: {ERR}")


def langchain_run(handler: CallbackHandler, *, with_openai: bool) -> None:
    """One trace: a chat model, a tool with a key argument, a failing tool, and (with
    ``with_openai``) a real ChatOpenAI replayed from a cassette, configured with secrets."""

    def agent(question: str, config: RunnableConfig) -> str:
        answer = EchoChat().invoke(question, config=config)
        found = lookup.invoke({"query": TOOL_IN, "api_key": TOOL_KEY}, config=config)
        try:
            explode.invoke({"query": TOOL_IN}, config=config)
        except ValueError:
            pass
        if with_openai:
            model = ChatOpenAI(
                model="o4-mini",
                api_key=OPENAI_KEY,
                max_retries=0,
                base_url=f"https://svc:{URL_PASSWORD}@api.openai.com/v1",
                default_headers={
                    "Authorization": f"Bearer {BEARER_TOKEN}",
                    "X-Api-Key": HEADER_KEY,
                },
                model_kwargs={"user": f"aws {AWS_KEY}"},
            ).bind(extra_body={"password": BODY_PASSWORD})
            with VCR.use_cassette("openai_chat_cached_reasoning.yaml"):
                model.invoke(f"{Q} (model key {OPENAI_KEY})", config=config)
        return f"{answer.content} / {found}"

    RunnableLambda(agent, name="agent").invoke(
        Q,
        config={
            "callbacks": [handler],
            "metadata": {
                "user_id": "u1",
                "openai_api_key": OPENAI_KEY,
                "db_password": BODY_PASSWORD,
                "note": f"deploy with {META_TOKEN}",
                "headers": {"Authorization": f"Bearer {BEARER_TOKEN}"},
            },
        },
    )


def llama_run(exporter: PosthogExporter, **options: Any) -> None:
    saved = (Settings._llm, Settings._embed_model, Settings._callback_manager)
    Settings.llm = MockLLM()
    Settings.embed_model = MockEmbedding(embed_dim=8)
    Settings.callback_manager = CallbackManager([])
    handle = instrument(exporter, **options)
    try:
        index = VectorStoreIndex.from_documents([Document(text=f"{DOC} forty two")])
        assert str(index.as_query_engine().query(LLAMA_Q)) == "forty two"
    finally:
        handle.uninstrument()
        Settings._llm, Settings._embed_model, Settings._callback_manager = saved


def manual_run(exporter: PosthogExporter) -> None:
    with exporter.trace("manual", input={"q": Q}) as trace:
        with trace.generation(
            "g", model="gpt-4o", provider="openai", input=[{"role": "user", "content": Q}]
        ) as gen:
            gen.update(
                output=[{"role": "assistant", "content": TOOL_OUT}],
                usage={"input_tokens": 1, "output_tokens": 1},
            )


def wire_bytes(server: CaptureServer) -> bytes:
    data = all_bytes(server)
    assert len(server.accepted) >= 1
    return data


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> Iterator[Callable[[], str]]:
    """What this library and the posthog SDK it drives logged at INFO or above,
    tracebacks included (captured at DEBUG). Other libraries' logs are the user's own:
    httpx, for one, logs every provider request URL at INFO."""
    caplog.set_level(logging.DEBUG)

    def text() -> str:
        handler = logging.Handler()
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
        return "\n".join(
            handler.format(r)
            for r in caplog.records
            if r.levelno >= logging.INFO
            and r.name.split(".")[0] in ("posthog_callbacks", "posthog")
        )

    yield text


def assert_absent(data: bytes | str, needles: tuple[str, ...]) -> None:
    raw = data.encode() if isinstance(data, str) else data
    found = [n for n in needles if n.encode() in raw]
    assert found == [], f"leaked: {found}"


# -- privacy mode ----------------------------------------------------------------------


@pytest.mark.parametrize("where", ["exporter", "handler"])
def test_privacy_mode_sends_no_input_or_output_in_any_byte(
    where: str,
    capture_server: CaptureServer,
    make_exporter: ExporterFactory,
    logs: Callable[[], str],
) -> None:
    on_exporter = where == "exporter"
    exporter = make_exporter(privacy_mode=on_exporter)
    langchain_run(CallbackHandler(exporter, privacy_mode=not on_exporter), with_openai=False)
    llama_run(exporter, privacy_mode=not on_exporter)
    if on_exporter:
        manual_run(exporter)
    assert exporter.flush(timeout=10)

    sent = wire_bytes(capture_server)
    assert_absent(sent, CONTENT)
    events = capture_server.events
    names = {e["properties"]["$ai_span_name"] for e in events}
    assert {"agent", "EchoChat", "lookup", "explode"} <= names  # the runs did arrive
    failed = next(e for e in events if e["properties"]["$ai_span_name"] == "explode")
    # an error's message may echo inputs: privacy mode keeps its type only
    assert failed["properties"]["$ai_is_error"] is True
    assert failed["properties"]["$ai_error"] == "ValueError"
    gen = next(e for e in events if e["properties"]["$ai_span_name"] == "EchoChat")
    assert (gen["properties"]["$ai_input_tokens"], gen["properties"]["$ai_model"]) == (1, "echo-1")
    assert_absent(logs(), CONTENT)


def test_a_mask_keeps_every_input_and_output_off_the_wire(
    capture_server: CaptureServer, make_exporter: ExporterFactory, logs: Callable[[], str]
) -> None:
    masked: list[Any] = []

    def mask(value: Any) -> Any:
        masked.append(value)
        if isinstance(value, str):
            return "<masked>"
        if isinstance(value, list):
            return [mask(v) for v in value]
        if isinstance(value, dict):
            return {k: mask(v) for k, v in value.items()}
        return value

    exporter = make_exporter(mask=mask)
    langchain_run(CallbackHandler(exporter), with_openai=False)
    llama_run(exporter)
    manual_run(exporter)
    assert exporter.flush(timeout=10)

    sent = wire_bytes(capture_server)
    assert_absent(sent, tuple(c for c in CONTENT if c != ERR))
    gen = next(e for e in capture_server.events if e["properties"]["$ai_span_name"] == "EchoChat")[
        "properties"
    ]
    assert gen["$ai_input"] == [{"role": "<masked>", "content": "<masked>"}]
    assert gen["$ai_input_tokens"] == 1
    assert masked  # the mask saw the content
    assert_absent(logs(), CONTENT)


def test_a_failing_mask_sends_a_placeholder_and_logs_no_content(
    capture_server: CaptureServer, make_exporter: ExporterFactory, logs: Callable[[], str]
) -> None:
    def mask(value: Any) -> Any:
        raise RuntimeError(f"mask broke on {value!r}")  # the message carries content

    exporter = make_exporter(mask=mask)
    langchain_run(CallbackHandler(exporter), with_openai=False)
    manual_run(exporter)
    assert exporter.flush(timeout=10)
    assert_absent(wire_bytes(capture_server), (Q, TOOL_IN, TOOL_OUT, "echo:"))
    text = logs()
    assert "mask function raised" in text  # the warning is there, without the content
    assert_absent(text, CONTENT)


# -- secrets ------------------------------------------------------------------------------


def test_secrets_in_model_kwargs_headers_params_tools_and_metadata_never_leave(
    capture_server: CaptureServer,
    make_exporter: ExporterFactory,
    tmp_path: Path,
    logs: Callable[[], str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for var in ("OPENAI_BASE_URL", "OPENAI_API_BASE"):
        monkeypatch.delenv(var, raising=False)
    capture_server.fail_next(1, status=503)  # a retry: the resent bytes are checked too
    exporter = make_exporter()
    path = tmp_path / "events.jsonl"
    file_exporter = PosthogExporter(sink=JsonlSink(path))
    try:
        for exp in (exporter, file_exporter):
            langchain_run(CallbackHandler(exp), with_openai=True)
            assert exp.flush(timeout=10)
    finally:
        file_exporter.shutdown(timeout=5)

    sent = wire_bytes(capture_server)
    written = path.read_bytes()
    for data in (sent, written):
        assert_absent(
            data, (*SECRETS, TEST_API_KEY.removeprefix("phc_")) if data is written else SECRETS
        )
        assert Q.encode() in data and TOOL_IN.encode() in data  # content is on: not vacuous
    # the project key is the capture API's credential: once per request, in the envelope
    bodies = decoded_bodies(capture_server)
    assert [b.count(TEST_API_KEY.encode()) for b in bodies] == [1] * len(bodies)
    assert sent.count(TEST_API_KEY.encode()) == len(bodies) == 2  # 503, then accepted
    events = {e["properties"]["$ai_span_name"]: e["properties"] for e in capture_server.events}
    openai = events["ChatOpenAI"]
    assert openai["$ai_model"] == "o4-mini-2025-04-16"
    assert openai["$ai_input_tokens"] == 1200  # the replayed call was recorded
    assert "[REDACTED]" in str(events["lookup"]["$ai_input_state"])
    root = events["agent"]
    assert root["openai_api_key"] == "[REDACTED]" and root["db_password"] == "[REDACTED]"
    assert_absent(logs(), SECRETS)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://svc:pw-123@api.openai.com/v1", "https://[REDACTED]@api.openai.com/v1"),
        (
            "https://res.openai.azure.com/openai?api-key=abc&api-version=1",
            "https://res.openai.azure.com/openai?api-key=[REDACTED]&api-version=1",
        ),
        ("http://localhost:11434", "http://localhost:11434"),
    ],
)
def test_base_urls_lose_their_credentials(url: str, expected: str) -> None:
    span = FinishedSpan("t", "s", "t", SpanKind.GENERATION, "g", 1.0, 2.0, base_url=url)
    assert span_to_event(span)["properties"]["$ai_base_url"] == expected


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (f"ValueError: cannot parse {Q!r}", "ValueError"),
        ("openai.RateLimitError: Error code: 429", "openai.RateLimitError"),
        (f"span 'chat' failed: KeyError: {Q}", PRIVATE_ERROR),
    ],
)
def test_privacy_mode_keeps_only_the_error_type(error: str, expected: str) -> None:
    span = FinishedSpan("t", "s", "t", SpanKind.SPAN, "n", 1.0, 2.0, error=error)
    private = span_to_event(span, EventConfig(privacy_mode=True))["properties"]
    assert (private["$ai_is_error"], private["$ai_error"]) == (True, expected)
    assert span_to_event(span)["properties"]["$ai_error"] == error  # full text otherwise
    masked = span_to_event(span, EventConfig(mask=lambda v: "<masked>"))["properties"]
    assert masked["$ai_error"] == "<masked>"


# -- every kind of secret in every position, on the bytes sent (issue 11 item 6) -----------


def record_everywhere(exporter: PosthogExporter, secret: str) -> None:
    """One trace carrying ``secret`` in every position a user or provider might put it."""
    try:
        with exporter.trace(
            "everywhere",
            input={"question": f"use {secret} please", "nested": [secret]},
            distinct_id=secret,
            session_id=secret,
            metadata={secret: "as a key", "note": secret, "api_token": "tok-value-123"},
            tags=[secret, f"tag {secret}"],
        ) as trace:
            with trace.generation(
                "model",
                model="gpt-4o-mini",
                provider="openai",
                input=[{"role": "user", "content": secret}],
                model_parameters={"temperature": 0.2, "stop": [secret], "user": secret},
                tools=[
                    {
                        "type": "function",
                        "function": {
                            "name": "lookup",
                            "description": f"call with {secret}",
                            "parameters": {"properties": {"k": {"default": secret}}},
                        },
                    }
                ],
            ) as gen:
                gen.update(
                    output=[{"role": "assistant", "content": f"here: {secret}"}],
                    metadata={"github_token": "gh-value-456", "Ocp-Apim-Subscription-Key": "ocp-1"},
                )
            with trace.span("fails", input=secret):
                raise RuntimeError(f"request to backend failed: {secret}")
    except RuntimeError:
        pass


KEY_VALUES = ("tok-value-123", "gh-value-456", "ocp-1")


@pytest.mark.parametrize("kind", list(SECRET_TEXTS))
def test_each_kind_of_secret_in_each_position_never_reaches_a_sink(
    kind: str, tmp_path: Path
) -> None:
    text, needle = SECRET_TEXTS[kind]
    memory = PosthogExporter(sink=MemorySink())
    path = tmp_path / "events.jsonl"
    jsonl = PosthogExporter(sink=JsonlSink(path))
    try:
        for exporter in (memory, jsonl):
            record_everywhere(exporter, text)
            assert exporter.flush(timeout=10)
    finally:
        memory.shutdown(timeout=5)
        jsonl.shutdown(timeout=5)
    sink = memory.sink
    assert isinstance(sink, MemorySink)
    events = sink.events
    assert sorted(e["properties"]["$ai_span_name"] for e in events) == [
        "everywhere", "fails", "model",
    ]  # fmt: skip
    sent = (
        json.dumps(events).encode(),  # as the posthog SDK encodes (non-ASCII escaped)
        orjson.dumps(events),  # as our transport encodes
        path.read_bytes(),  # the JSONL file
    )
    for data in sent:
        assert_absent(data, (needle, *KEY_VALUES))
        assert b"[REDACTED" in data
    props = {e["properties"]["$ai_span_name"]: e["properties"] for e in events}
    root, gen, failed = props["everywhere"], props["model"], props["fails"]
    assert root["$ai_input_state"]["question"].startswith("use ")  # content is on
    assert gen["$ai_model_parameters"]["temperature"] == 0.2
    assert failed["$ai_error"].startswith("RuntimeError: request to backend failed: ")
    assert events[0]["distinct_id"].startswith("[REDACTED ")
    assert root["$ai_session_id"].startswith("[REDACTED ")
    assert "[REDACTED]" in root["$ai_tags"][0]


def test_the_exporters_own_key_appears_only_in_the_envelope(
    capture_server: CaptureServer, make_exporter: ExporterFactory
) -> None:
    exporter = make_exporter()
    record_everywhere(exporter, TEST_API_KEY)
    record_everywhere(exporter, f"https://example.com/cb?api_key={TEST_API_KEY}")
    assert exporter.flush(timeout=10)
    bodies = decoded_bodies(capture_server)
    assert bodies and [b.count(TEST_API_KEY.encode()) for b in bodies] == [1] * len(bodies)
    assert_absent(b"".join(bodies), KEY_VALUES)
    assert len(capture_server.events) == 6


def test_prose_passes_through_unredacted(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    exporter = PosthogExporter(sink=JsonlSink(path))
    try:
        with exporter.trace("prose", input=PROSE, metadata={"note": PROSE}, tags=["docs"]):
            pass
        assert exporter.flush(timeout=10)
    finally:
        exporter.shutdown(timeout=5)
    (event,) = [json.loads(line) for line in path.read_bytes().splitlines()]
    assert event["properties"]["$ai_input_state"] == PROSE
    assert event["properties"]["note"] == PROSE
